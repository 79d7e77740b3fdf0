"""Load benchmark: several client processes against one agent with its
default caps, as a table.

The load of tests/test_load.py (bolt_testing/load.py: Execute of noop and echo
with idempotency keys and retries, GetExecution, ListExecutions, StreamOutput
following executions to their end, connections opened and closed), run for
longer against an agent without [limits] overrides. Reports the sustained
call rate (all kinds), p50/p99 latency of each kind of call, the calls
refused and by which limit, executions accepted vs completed, and the agent's
RSS idle, at its peak and after the load (once the agent has trimmed its
heap). BOLT_AGENT_BIN chooses the agent; BOLT_LOAD_SECONDS (default 20) and
BOLT_LOAD_WORKERS (default 4) size the load. Not a test: it prints numbers.
"""

from __future__ import annotations

import asyncio
import os
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
import conftest  # noqa: E402, F401  (generates the stubs)

from bolt_testing import Agent, agent_bin  # noqa: E402
from bolt_testing.load import Mix, rss, run_load, settle_rss, verify_history  # noqa: E402

MiB = 1024 * 1024


def main() -> None:
    seconds = float(os.environ.get("BOLT_LOAD_SECONDS", "20"))
    workers = int(os.environ.get("BOLT_LOAD_WORKERS", "4"))
    root = Path(tempfile.mkdtemp(prefix="bolt-load-bench-"))
    a = Agent(root, config='[exec]\nkill_grace = "1s"\n[log]\nlevel = "warn"\n').start()
    try:
        pid = a.proc.pid  # type: ignore[union-attr]
        time.sleep(0.5)
        idle = rss(pid)
        rep = run_load(a, workers, Mix(seconds=seconds))
        end = time.monotonic()
        try:
            figures = asyncio.run(verify_history(a, rep))
            completed, problem = figures["listed"], ""
        except AssertionError as e:
            completed, problem = -1, str(e)
        after, waited = settle_rss(pid, 0, since=end, timeout=10.5)
    finally:
        a.stop()

    calls = rep.answered + rep.failure_count
    rows: list[tuple[str, str]] = [
        ("calls answered (all kinds)", f"{calls}"),
        ("sustained call rate", f"{calls / rep.elapsed:.0f} calls/s"),
    ]
    for kind in sorted(rep.lat):
        n = len(rep.lat[kind])
        rows.append((f"{kind} p50 / p99 (n={n})", f"{rep.percentile(kind, 0.5):.1f} / {rep.percentile(kind, 0.99):.1f} ms"))
    by_limit = rep.refused_by_limit()
    rows.append(("refused (RESOURCE_EXHAUSTED)", f"{rep.refused_total}"))
    for setting, n in sorted(by_limit.items()):
        rows.append((f"  {setting}", f"{n}"))
    rows += [
        ("failed calls (other code, deadline)", f"{rep.failure_count}"),
        ("executions accepted", f"{len(rep.accepted)} ({len(rep.accepted) / rep.elapsed:.0f}/s)"),
        ("executions completed (SUCCEEDED)", f"{completed}" if completed >= 0 else "CHECK FAILED"),
        ("retries same id / racing pairs", f"{rep.retries_same} / {rep.races}"),
        ("agent RSS idle", f"{idle / MiB:.1f} MiB"),
        ("agent RSS peak", f"{rep.rss_peak / MiB:.1f} MiB"),
        (f"agent RSS after (+{waited:.0f} s, trimmed)", f"{after / MiB:.1f} MiB"),
    ]
    w = max(len(r[0]) for r in rows)
    print(f"\n{'measure'.ljust(w)}  {'result':>22}")
    print("-" * (w + 24))
    for name, value in rows:
        print(f"{name.ljust(w)}  {value:>22}")
    print(
        f"\n(machine: {os.cpu_count()} cores; agent {agent_bin()}; {workers} client processes x "
        f"(Python grpc.aio, one connection each) for {seconds:.0f} s, default [limits])"
    )
    for f in rep.failures[:10]:
        print(f"failure: {f}")
    if problem:
        print(f"history check failed: {problem}")
    if rep.failure_count or problem:
        sys.exit(1)


if __name__ == "__main__":
    main()
