"""Kill and timeout end every process of an action, checked in /proc."""

from __future__ import annotations

import re
import time
from datetime import timedelta

from bolt_client import State, Stream
from util import execute, follow, get, pid_alive, text, wait_state, wait_until


def tree_pids(client, eid: str) -> list[int]:
    def ready() -> str | None:
        out = text(client.stream_output(eid))
        return out if "ready" in out else None

    out = wait_until(ready, 10, "the tree to start")
    pids = [int(p) for p in re.findall(r"(?:child|grandchild|session) (\d+)", out)]
    assert len(pids) == 4, out
    return pids


def test_kill_ends_the_whole_tree(client):
    eid = execute(client, "tree")
    pids = tree_pids(client, eid)
    assert all(pid_alive(p) for p in pids)
    r = client.kill(eid)
    assert r.state is State.RUNNING and not r.already_ended
    e = wait_state(client, eid, timeout=10)
    assert e.state is State.KILLED and e.killed_by == "bolt-client"
    # Grandchildren included, even the one that escaped into its own session.
    wait_until(lambda: not any(pid_alive(p) for p in pids), 5, "every process of the tree to end")
    again = client.kill(eid)
    assert again.already_ended and again.state is State.KILLED


def test_sigkill_follows_an_ignored_sigterm(client):
    eid = execute(client, "stubborn")
    wait_until(lambda: "ready" in text(client.stream_output(eid)), 10, "ready")
    t0 = time.monotonic()
    client.kill(eid, grace=0.7)
    chunks, end = follow(client, eid)
    elapsed = time.monotonic() - t0
    assert end.execution.state is State.KILLED and end.execution.signal == 9
    assert 0.6 < elapsed < 5, elapsed
    assert "got TERM, ignoring" in text(chunks)
    assert "killed by bolt-client" in text(chunks, Stream.SYSTEM)


def test_timeout_ends_in_timed_out(client):
    t0 = time.monotonic()
    eid = execute(client, "tree", timeout=1.0)
    pids = tree_pids(client, eid)
    e = wait_state(client, eid, timeout=10)
    assert e.state is State.TIMED_OUT
    assert 0.9 < time.monotonic() - t0 < 6
    assert e.timeout == timedelta(seconds=1)
    wait_until(lambda: not any(pid_alive(p) for p in pids), 5, "the tree to end")
    _, end = follow(client, eid)
    assert end.execution.state is State.TIMED_OUT


def test_requested_timeout_is_capped_by_the_action(client):
    eid = execute(client, "echo", timeout=99999, msg="x")
    assert get(client, eid).timeout == timedelta(seconds=60)


def test_leftover_background_processes_end_with_the_action(client, tmp_path):
    # echo exits at once; nothing it could have left behind may survive it.
    eid = execute(client, "echo", msg="x")
    e = wait_state(client, eid)
    assert e.state is State.SUCCEEDED
    assert e.supervisor_pid == 0


def test_a_kill_right_after_execute_is_never_lost(client):
    # The kill may reach the agent before the supervisor is ready for it:
    # it must still end KILLED, never LOST.
    ids = []
    for _ in range(20):
        eid = execute(client, "sleep", ticks=100, interval="0.1")
        client.kill(eid)
        ids.append(eid)
    states = [wait_state(client, eid, timeout=20).state for eid in ids]
    assert states == [State.KILLED] * 20, states
