"""Load at and beyond the admission caps, from several client processes.

One agent with small caps; four client processes (each its own gRPC
connection, see bolt_testing/load.py) send Execute (noop and echo, unique
idempotency keys, some retried, some sent twice at once), GetExecution,
ListExecutions and StreamOutput (follow) calls for a fixed time, and open and
close extra connections beyond the per-identity cap. Every call must be
answered within its deadline with OK or RESOURCE_EXHAUSTED naming a limit.
Afterwards the history must hold exactly the executions the answers named,
each once and SUCCEEDED, and the agent must be healthy with its memory back
near its idle figure. Last, long executions started one by one fill the
per-pack and agent-wide running caps, which a slow machine never reaches
under the load (its pending executions meet max_pending first).
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Callable

import grpc

from bolt_client import BoltClient, State
from bolt_testing import TEST_PACKS, Agent
from bolt_testing.load import Mix, rss, run_load, settle_rss, verify_history
from util import client_for, code_of, execute, healthy, wait_state

MiB = 1024 * 1024

# bolt-test may hold 12 of the 16 places, so both the agent-wide and the
# per-pack caps are met; 4 clients x 12 followers exceed 24 streams; 4 clients
# x (1 + 4 churning) connections, plus this test's, exceed 16 connections.
CAPS = """
[limits]
max_running = 16
max_running_per_pack = 12
max_pending = 8
max_streams_per_identity = 24
max_connections_per_identity = 16
[exec]
kill_grace = "1s"
"""

WORKERS = 4
MIX = Mix(seconds=12.0, max_accepted=250, exec_lanes=6, get_lanes=2, stream_lanes=12, churn_lanes=4, other_pack="other", other_share=0.3)

# Agent RSS after the load and one allocator trim, over the idle figure. On
# a 2-core machine with the debug build the load (~750 executions, ~7000
# calls, ~600 connections, ~3000 streams) leaves +3.4..4.3 MiB after a trim:
# most of it redb's page cache (4 MiB at most) filling with the new history,
# which is why the executions are counted (max_accepted) as well as timed.
# A leak of ~300 bytes a call, ~700 a stream or ~3 KiB a connection would
# show.
RSS_GROWTH_MAX = 6 * MiB


def other_pack(root: Path) -> Path:
    d = root / "other"
    d.mkdir()
    (d / "pack.toml").write_text(
        'name = "other"\n[[actions]]\nname = "noop"\nentrypoint = "noop.sh"\ntimeout = "1m"\n'
        '[[actions]]\nname = "wait"\nentrypoint = "wait.sh"\ntimeout = "1m"\n'
    )
    (d / "wait.sh").write_text("#!/bin/sh\nexec sleep 60\n")
    (d / "wait.sh").chmod(0o755)
    (d / "noop.sh").write_text("#!/bin/sh\nexit 0\n")
    (d / "noop.sh").chmod(0o755)
    return d


def test_load_beyond_the_caps_from_several_processes(tmp_path: Path, make_agent: Callable[..., Agent]) -> None:
    t_start = time.monotonic()
    a = make_agent(config=CAPS, packs=[TEST_PACKS / "bolt-test", other_pack(tmp_path)])
    s = client_for(a)
    assert healthy(s)
    time.sleep(0.3)
    pid = a.proc.pid  # type: ignore[union-attr]
    idle = rss(pid)

    rep = run_load(a, WORKERS, MIX)
    load_end = time.monotonic()
    print(f"\n{rep.summary()}; agent RSS idle {idle / MiB:.1f} MiB, peak {rep.rss_peak / MiB:.1f} MiB")
    assert rep.failure_count == 0, f"{rep.failure_count} failed calls, e.g.:\n" + "\n".join(rep.failures)
    assert a.alive(), a.log()

    # The load did reach these caps (else it tests less than it claims); the
    # running caps, which a slow machine reaches only through max_pending,
    # are filled one by one at the end.
    by_limit = rep.refused_by_limit()
    for setting in ("max_pending", "max_connections_per_identity", "max_streams_per_identity"):
        assert by_limit.get(f"limits.{setting}", 0) > 0, f"limits.{setting} was never met: {by_limit}"
    # Enough for the history check below to mean something; how many more
    # depends on the machine's speed, which benchmarks measure, not this test.
    assert len(rep.accepted) >= 100 and rep.answered >= 1000, rep.summary()
    assert rep.retries_same > 0 and rep.races > 0 and rep.streams_checked > 0

    figures = asyncio.run(verify_history(a, rep))
    assert healthy(s)

    after, waited = settle_rss(pid, idle + RSS_GROWTH_MAX, since=load_end)
    print(
        f"history: {figures['listed']} executions in {figures['pages']} page(s), all SUCCEEDED; "
        f"agent RSS after {after / MiB:.1f} MiB ({(after - idle) / MiB:+.1f} MiB, {waited:.1f} s after the load); "
        f"test wall {time.monotonic() - t_start:.1f} s"
    )
    assert after <= idle + RSS_GROWTH_MAX, (
        f"agent RSS {after / MiB:.1f} MiB after the load, idle {idle / MiB:.1f} MiB: "
        f"more than {RSS_GROWTH_MAX / MiB:.0f} MiB kept"
    )
    fill_the_running_caps(s)


def fill_the_running_caps(c: BoltClient) -> None:
    """Started one at a time, each RUNNING before the next (so max_pending never
    answers first): bolt-test up to its per-pack cap, then another pack up to
    the agent-wide cap; one more of each is refused naming its cap."""
    started = []
    try:
        for _ in range(12):
            started.append(execute(c, "sleep", ticks=600))
            wait_state(c, started[-1], {State.RUNNING})
        code, msg = code_of(lambda: execute(c, "sleep", ticks=600))
        assert code == grpc.StatusCode.RESOURCE_EXHAUSTED and "limits.max_running_per_pack" in msg, msg
        for _ in range(4):
            started.append(c.execute("other", "wait", {}).execution_id)
            wait_state(c, started[-1], {State.RUNNING})
        code, msg = code_of(lambda: c.execute("other", "wait", {}))
        assert code == grpc.StatusCode.RESOURCE_EXHAUSTED and "limits.max_running" in msg, msg
        assert "per_pack" not in msg, msg
    finally:
        for eid in started:
            c.kill(eid)
        for eid in started:
            wait_state(c, eid)
