"""Kill and timeout end every process of an action, checked in /proc."""

from __future__ import annotations

import re
import time

from bolt.v1 import bolt_pb2 as pb
from util import execute, follow, get, pid_alive, text, wait_state, wait_until


def tree_pids(stub, eid: str) -> list[int]:
    def ready() -> str | None:
        out = text(stub.StreamOutput(pb.StreamOutputRequest(execution_id=eid)))
        return out if "ready" in out else None

    out = wait_until(ready, 10, "the tree to start")
    pids = [int(p) for p in re.findall(r"(?:child|grandchild|session) (\d+)", out)]
    assert len(pids) == 4, out
    return pids


def test_kill_ends_the_whole_tree(stub):
    eid = execute(stub, "tree")
    pids = tree_pids(stub, eid)
    assert all(pid_alive(p) for p in pids)
    r = stub.Kill(pb.KillRequest(execution_id=eid))
    assert r.state == pb.STATE_RUNNING and not r.already_ended
    e = wait_state(stub, eid, timeout=10)
    assert e.state == pb.STATE_KILLED and e.killed_by == "bolt-client"
    # Grandchildren included, even the one that escaped into its own session.
    wait_until(lambda: not any(pid_alive(p) for p in pids), 5, "every process of the tree to end")
    again = stub.Kill(pb.KillRequest(execution_id=eid))
    assert again.already_ended and again.state == pb.STATE_KILLED


def test_sigkill_follows_an_ignored_sigterm(stub):
    eid = execute(stub, "stubborn")
    wait_until(lambda: "ready" in text(stub.StreamOutput(pb.StreamOutputRequest(execution_id=eid))), 10, "ready")
    t0 = time.monotonic()
    grace = pb.KillRequest(execution_id=eid)
    grace.grace.FromMilliseconds(700)
    stub.Kill(grace)
    chunks, end = follow(stub, eid)
    elapsed = time.monotonic() - t0
    assert end.execution.state == pb.STATE_KILLED and end.execution.signal == 9
    assert 0.6 < elapsed < 5, elapsed
    assert "got TERM, ignoring" in text(chunks)
    assert "killed by bolt-client" in text(chunks, pb.STREAM_SYSTEM)


def test_timeout_ends_in_timed_out(stub):
    t0 = time.monotonic()
    eid = execute(stub, "tree", timeout=1.0)
    pids = tree_pids(stub, eid)
    e = wait_state(stub, eid, timeout=10)
    assert e.state == pb.STATE_TIMED_OUT
    assert 0.9 < time.monotonic() - t0 < 6
    assert e.timeout.ToMilliseconds() == 1000
    wait_until(lambda: not any(pid_alive(p) for p in pids), 5, "the tree to end")
    _, end = follow(stub, eid)
    assert end.execution.state == pb.STATE_TIMED_OUT


def test_requested_timeout_is_capped_by_the_action(stub):
    eid = execute(stub, "echo", timeout=99999, msg="x")
    assert get(stub, eid).timeout.seconds == 60


def test_leftover_background_processes_end_with_the_action(stub, tmp_path):
    # echo exits at once; nothing it could have left behind may survive it.
    eid = execute(stub, "echo", msg="x")
    e = wait_state(stub, eid)
    assert e.state == pb.STATE_SUCCEEDED
    assert e.supervisor_pid == 0


def test_a_kill_right_after_execute_is_never_lost(stub):
    # The kill may reach the agent before the supervisor is ready for it:
    # it must still end KILLED, never LOST.
    ids = []
    for _ in range(20):
        eid = execute(stub, "sleep", ticks=100, interval="0.1")
        stub.Kill(pb.KillRequest(execution_id=eid))
        ids.append(eid)
    states = [wait_state(stub, eid, timeout=20).state for eid in ids]
    assert states == [pb.STATE_KILLED] * 20, [pb.State.Name(s) for s in states]
