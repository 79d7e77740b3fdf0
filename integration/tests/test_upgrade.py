"""Upgrades interrupt nothing: SIGTERM the agent while 20 actions print, start
a different build (a newer version string) on the same data folder, and every
action ends SUCCEEDED with its whole output; followers resume where they were.

The "newer" build is a copy of the binary under test stamped with the build
label "next" (version <crate version>+next, see scripts/stamp-build.py);
`make test-integration` makes it (`make agent-next`) and passes its path as
BOLT_AGENT_NEXT_BIN."""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

import grpc
import pytest

from bolt_client import BoltError, OutputChunk, State
from util import client_for, execute, follow, get, wait_state, wait_until

NEXT_BIN = os.environ.get("BOLT_AGENT_NEXT_BIN", "")

pytestmark = pytest.mark.skipif(
    not NEXT_BIN or not Path(NEXT_BIN).is_file(),
    reason="BOLT_AGENT_NEXT_BIN is not set to a built agent (`make agent-next` builds "
    "target/upgrade/bolt-agent-next; `make test-integration` sets it)",
)

ACTIONS = 20
TICKS = 40  # one line every 0.5 s: about 20 s each
INTERVAL = "0.5"
FOLLOWED = range(0, ACTIONS, 3)  # 7 of the 20 have a follower
EXPECTED = "".join(f"tick {i}\n" for i in range(1, TICKS + 1)) + "done\n"


class Follower(threading.Thread):
    """StreamOutput(follow=True) from an offset until the stream ends; keeps
    the chunks, checks they are contiguous, and records how the stream ended."""

    def __init__(self, client, eid: str, offset: int = 0) -> None:  # type: ignore[no-untyped-def]
        super().__init__(daemon=True)
        self.client, self.eid, self.start_offset = client, eid, offset
        self.data = b""
        self.reached = offset  # the last chunk's offset + len(data)
        self.end: OutputChunk | None = None
        self.error: grpc.StatusCode | None = None
        self.problem = ""

    def run(self) -> None:
        try:
            for c in self.client.stream_output(self.eid, offset=self.start_offset, follow=True, timeout=90):
                if c.end:
                    self.end = c
                    continue
                if c.offset != self.reached and not self.problem:
                    self.problem = f"chunk at offset {c.offset}, expected {self.reached}"
                self.data += c.data
                self.reached = c.offset + len(c.data)
        except BoltError as e:
            self.error = grpc.StatusCode[e.code]


def test_an_upgrade_to_another_build_interrupts_nothing(make_agent):
    agent = make_agent(config='[exec]\nkill_grace = "2s"\n')
    s = client_for(agent)
    old_version = s.agent_info().version
    assert old_version and not old_version.endswith("+next"), old_version

    eids = [execute(s, "sleep", ticks=TICKS, interval=INTERVAL) for _ in range(ACTIONS)]
    followers = {i: Follower(s, eids[i]) for i in FOLLOWED}
    for f in followers.values():
        f.start()
    # Every action is printing and every follower has seen a few lines.
    wait_until(lambda: all(b"tick 3\n" in f.data for f in followers.values()), 20, "the followers' first lines")
    for eid in eids:
        assert get(s, eid).state is State.RUNNING

    # The old agent stops gracefully; its followers' streams end UNAVAILABLE.
    assert agent.stop(signal.SIGTERM) == 0
    for i, f in followers.items():
        f.join(10)
        assert not f.is_alive(), f"follower of #{i} still streaming from a stopped agent"
        assert f.error == grpc.StatusCode.UNAVAILABLE, (i, f.error, f.end)
        assert not f.problem, (i, f.problem)
        assert f.reached > 0 and f.end is None
    time.sleep(1.0)  # the actions keep printing while no agent runs

    # The newer build starts on the same data folder (and port).
    agent.binary = Path(NEXT_BIN)
    agent.start(f"127.0.0.1:{agent.port}")
    s = client_for(agent)
    new_version = s.agent_info().version
    assert new_version != old_version and new_version.endswith("+next"), (old_version, new_version)
    for eid in eids:
        assert get(s, eid).state is State.RUNNING, "the new agent re-attaches to every running action"

    # The followers reconnect from the offset they reached and get the rest.
    resumed = {i: Follower(s, eids[i], offset=f.reached) for i, f in followers.items()}
    for f in resumed.values():
        f.start()

    for i, eid in enumerate(eids):
        e = wait_state(s, eid, timeout=60)
        assert e.state is State.SUCCEEDED and e.exit_code == 0, (i, e.state, e.error)
        assert e.stdout_bytes == len(EXPECTED), (i, e.stdout_bytes)
    for i, f in resumed.items():
        f.join(30)
        assert not f.is_alive(), f"resumed follower of #{i} did not end"
        assert f.error is None and not f.problem, (i, f.error, f.problem)
        assert f.end is not None and f.end.execution.state is State.SUCCEEDED, i
        assert f.end.offset == len(EXPECTED), (i, f.end.offset)
        whole = (followers[i].data + f.data).decode()
        assert whole == EXPECTED, f"#{i}: the stream before and after the upgrade, together:\n{whole}"

    # Read again from offset 0: complete, in order, no gap, no duplicate.
    for i, eid in enumerate(eids):
        chunks, end = follow(s, eid)
        assert end is not None and end.execution.state is State.SUCCEEDED, i
        offset = 0
        for c in chunks:
            assert c.offset == offset, (i, c.offset, offset)
            offset += len(c.data)
        assert b"".join(c.data for c in chunks).decode() == EXPECTED, i

    # The history agrees: all 20 SUCCEEDED, none LOST.
    listed = s.list_executions(page_size=1000, pack="bolt-test").executions
    states = {e.execution_id: e.state for e in listed}
    assert all(states.get(eid) is State.SUCCEEDED for eid in eids), states
    assert not s.list_executions(states=[State.LOST]).executions
