"""Fan-out benchmark: one read-only action on N real agents, all in parallel, async client.

    python bench/fanout.py --agents 100 [--rounds 3] [--action bolt-test/noop]

Starts N bolt-agent processes on loopback (shared dev certificates), then runs
the action on all of them with ``Fleet.run(strategy="parallel")``: one cold
round (new channels: TCP + TLS handshakes included) and warm rounds (channels
reused). Prints a table of wall time, per-instance overhead (wall / N), the
client's CPU time, and the run time the agents recorded (run p50/max).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(REPO / "integration"))

from bolt_testing import TEST_PACKS, Agent, make_certs  # noqa: E402

from bolt_client import Fleet, Instance, TLSConfig  # noqa: E402


def start_agents(n: int, base: Path, certs: Path) -> list[Agent]:
    zones = ["us-east-1a", "us-east-1b", "us-east-1c"]

    def one(k: int) -> Agent:
        az = zones[k % 3]
        cfg = f'[instance]\nid = "i-{k}"\napp = "bench"\navailability_zone = "{az}"\nregion = "us-east-1"\nstage = "prod"\n'
        return Agent(base / f"a{k}", packs=[TEST_PACKS / "bolt-test"], config=cfg, certs=certs).start(timeout=120)

    with ThreadPoolExecutor(16) as pool:
        return list(pool.map(one, range(n)))


async def rounds(inv: list[Instance], tls: TLSConfig, pack: str, action: str, n_rounds: int) -> list[tuple[str, float, float, list[float], dict[str, int]]]:
    out = []
    async with Fleet(tls=tls) as fleet:
        for r in range(n_rounds):
            t0, c0 = time.perf_counter(), time.process_time()
            report = await fleet.run(inv, pack, action, strategy="parallel", max_errors="100%")
            wall = time.perf_counter() - t0
            cpu = time.process_time() - c0
            durations = [max(0.0, x.duration or 0.0) for x in report.reports]  # agent-recorded run time
            out.append(("cold" if r == 0 else f"warm {r}", wall, cpu, durations, report.counts()))
    return out


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--agents", type=int, default=100)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--action", default="bolt-test/noop")
    ns = ap.parse_args()
    pack, action = ns.action.split("/", 1)
    base = Path(tempfile.mkdtemp(prefix="bolt-bench-"))
    certs = make_certs(base / "certs")
    tls = TLSConfig(certs / "ca.crt", certs / "client.crt", certs / "client.key")
    t0 = time.perf_counter()
    agents = start_agents(ns.agents, base, certs)
    print(f"started {len(agents)} agents in {time.perf_counter() - t0:.1f}s", file=sys.stderr)
    try:
        inv = [Instance(f"i-{k}", a.address, "bench", "", "us-east-1") for k, a in enumerate(agents)]
        results = asyncio.run(rounds(inv, tls, pack, action, ns.rounds))
    finally:
        with ThreadPoolExecutor(16) as pool:
            list(pool.map(lambda a: a.stop(), agents))
    print(f"\nfan-out of {ns.action} to {ns.agents} agents, all in parallel (async client, 1 process)\n")
    print(f"{'round':<8} {'wall':>8} {'per instance':>13} {'client CPU':>11} {'CPU/inst':>9} {'run p50':>9} {'run max':>9}  outcomes")
    for name, wall, cpu, durs, counts in results:
        print(
            f"{name:<8} {wall:>7.3f}s {wall / ns.agents * 1000:>10.2f} ms {cpu:>10.3f}s {cpu / ns.agents * 1000:>6.2f} ms "
            f"{statistics.median(durs) * 1000:>7.1f}ms {max(durs) * 1000:>7.1f}ms  {counts}"
        )
    ok = all(c == {"SUCCEEDED": ns.agents} for *_, c in results)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
