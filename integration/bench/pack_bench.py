"""Pack sync at fleet scale, as a table (docs/packs.md).

Against a real S3 server (moto, on loopback) and 50 real agents following stage
prod (app kafka, sync every 2 s, no jitter):
- promotion latency: from `pack promote bench 2.0.0 --to prod` starting to
  each agent listing 2.0.0 in ListActions (p50 and slowest agent);
- idle cost: S3 requests per agent per hour while nothing changes, read from
  AgentInfo.pack_sync.requests over about a minute, and the same scaled to the
  default 120 s interval.
Not a test: it prints numbers and the targets beside them. Uses the release
build when there is one (BOLT_AGENT_BIN overrides). About 2 minutes.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
import conftest  # noqa: E402,F401  (generates the stubs)
import grpc  # noqa: E402
from bolt.v1 import bolt_pb2 as pb  # noqa: E402
from bolt.v1 import bolt_pb2_grpc  # noqa: E402

from bolt_testing import REPO, Agent, agent_bin, make_certs  # noqa: E402
from bolt_testing.s3 import MotoServer  # noqa: E402

AGENTS = int(os.environ.get("BOLT_BENCH_AGENTS", "50"))
INTERVAL = 2.0  # seconds between syncs in this bench
DEFAULT_INTERVAL = 120.0  # sync.interval's default
IDLE = float(os.environ.get("BOLT_BENCH_IDLE", "60"))
PREFIX = "bolt"
MiB = 1024 * 1024


def agent_config(s3: MotoServer, trusted: Path) -> str:
    return f"""
[instance]
stage = "prod"
app = "kafka"
[sync]
enabled = true
bucket = "{s3.bucket}"
prefix = "{PREFIX}"
endpoint = "{s3.endpoint}"
region = "us-east-1"
path_style = true
interval = "{INTERVAL:g}s"
jitter = 0.0
trusted_keys = ["{trusted}"]
[log]
level = "warn"
"""


def make_pack(root: Path, version: str) -> Path:
    d = root / f"src-{version}" / "bench"
    d.mkdir(parents=True)
    (d / "pack.toml").write_text(
        f'name = "bench"\nversion = "{version}"\n[[actions]]\nname = "show"\nentrypoint = "show.sh"\n'
    )
    (d / "show.sh").write_text(f'#!/bin/sh\necho "version {version}"\n')
    (d / "show.sh").chmod(0o755)
    return d


class Cli:
    def __init__(self, s3: MotoServer, key: Path) -> None:
        self.env = {**os.environ, **s3.env}
        self.s3 = ["--bucket", s3.bucket, "--prefix", PREFIX, "--endpoint", s3.endpoint, "--region", "us-east-1", "--path-style"]
        self.signing = ["--key", str(key), "--identity", "bench"]

    def argv(self, *args: str) -> list[str]:
        return [str(agent_bin()), *args, *self.signing, *self.s3]

    def __call__(self, *args: str) -> None:
        p = subprocess.run(self.argv(*args), env=self.env, capture_output=True, text=True)
        if p.returncode != 0:
            raise RuntimeError(f"{' '.join(args)} failed:\n{p.stderr}")


def channel(a: Agent) -> grpc.aio.Channel:
    creds = grpc.ssl_channel_credentials(a.ca.read_bytes(), a.client_key.read_bytes(), a.client_cert.read_bytes())
    return grpc.aio.secure_channel(f"127.0.0.1:{a.port}", creds, options=[("grpc.ssl_target_name_override", "localhost")])


async def has(stub: bolt_pb2_grpc.BoltStub, version: str) -> bool:
    actions = (await stub.ListActions(pb.ListActionsRequest(pack="bench"))).actions
    return bool(actions) and all(a.pack_version == version for a in actions)


async def wait_all(stubs: list[bolt_pb2_grpc.BoltStub], version: str, t0: float, timeout: float = 60.0) -> list[float]:
    """Seconds from t0 until each agent lists `version`."""
    async def one(stub: bolt_pb2_grpc.BoltStub) -> float:
        while not await has(stub, version):
            await asyncio.sleep(0.05)
        return time.perf_counter() - t0

    return list(await asyncio.wait_for(asyncio.gather(*(one(s) for s in stubs)), timeout))


async def promote(cli: Cli, stubs: list[bolt_pb2_grpc.BoltStub], version: str) -> tuple[float, list[float]]:
    """Promote to prod while polling every agent; (CLI seconds, per-agent seconds)."""
    t0 = time.perf_counter()
    proc = await asyncio.create_subprocess_exec(
        *cli.argv("pack", "promote", "bench", version, "--to", "prod"),
        env=cli.env, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
    )
    waiting = asyncio.ensure_future(wait_all(stubs, version, t0))
    _, err = await proc.communicate()
    took = time.perf_counter() - t0
    if proc.returncode != 0:
        waiting.cancel()
        raise RuntimeError(f"promote {version} failed:\n{err.decode()}")
    return took, await waiting


async def sync_states(stubs: list[bolt_pb2_grpc.BoltStub]) -> list[pb.PackSync]:
    infos = await asyncio.gather(*(s.GetAgentInfo(pb.GetAgentInfoRequest()) for s in stubs))
    return [i.pack_sync for i in infos]


def rss(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


async def measure(root: Path, s3: MotoServer, agents: list[Agent]) -> list[tuple[str, str, str, bool]]:
    cli = Cli(s3, root / "keys" / "release.key")
    channels = [channel(a) for a in agents]
    stubs = [bolt_pb2_grpc.BoltStub(c) for c in channels]
    await asyncio.gather(*(s.Health(pb.HealthRequest()) for s in stubs))

    cli("pack", "publish", str(make_pack(root, "1.0.0")), "--stage", "test")
    _, first = await promote(cli, stubs, "1.0.0")
    cli("pack", "publish", str(make_pack(root, "2.0.0")), "--stage", "test")
    await asyncio.sleep(INTERVAL)  # the test index changed; prod's did not
    cli_time, second = await promote(cli, stubs, "2.0.0")

    await asyncio.sleep(INTERVAL + 0.5)  # every agent past its post-install sync
    before, t0 = await sync_states(stubs), time.monotonic()
    await asyncio.sleep(IDLE)
    after, elapsed = await sync_states(stubs), time.monotonic() - t0
    idle_rss = statistics.mean(rss(a.proc.pid) for a in agents if a.proc)
    for c in channels:
        await c.close()

    per_agent = [(b2.requests - b1.requests) / elapsed * 3600 for b1, b2 in zip(before, after)]
    per_hour = statistics.mean(per_agent)
    at_default = per_hour * INTERVAL / DEFAULT_INTERVAL
    failures = sum(b2.failures - b1.failures for b1, b2 in zip(before, after))
    second.sort()
    p50, worst = statistics.median(second), second[-1]
    ideal = 3600 / INTERVAL
    return [
        (f"first install, {len(agents)} agents (slowest)", f"{max(first):.2f} s", f"<= {2 * INTERVAL:g} s", max(first) <= 2 * INTERVAL),
        ("pack promote (CLI run)", f"{cli_time:.2f} s", "", True),
        ("promote -> agent lists v2, p50", f"{p50:.2f} s", "", True),
        ("promote -> all agents list v2", f"{worst:.2f} s", f"<= {2 * INTERVAL:g} s", worst <= 2 * INTERVAL),
        (f"S3 requests/agent/hour idle ({INTERVAL:g} s)", f"{per_hour:.0f}", f"<= {ideal:.0f}", per_hour <= ideal * 1.05),
        ("  slowest agent", f"{max(per_agent):.0f}", "", True),
        (f"S3 requests/agent/hour idle ({DEFAULT_INTERVAL:g} s)", f"{at_default:.1f}", f"<= {3600 / DEFAULT_INTERVAL:.0f}",
         at_default <= 3600 / DEFAULT_INTERVAL * 1.05),
        (f"  fleet of 10,000 agents, per hour ({DEFAULT_INTERVAL:g} s)", f"{at_default * 10_000:,.0f}", "", True),
        ("sync failures while idle", f"{failures}", "0", failures == 0),
        ("agent RSS idle, mean", f"{idle_rss / MiB:.1f} MiB", "", True),
    ]


def main() -> None:
    release = REPO / "target" / "release" / "bolt-agent"
    if "BOLT_AGENT_BIN" not in os.environ and release.exists():
        os.environ["BOLT_AGENT_BIN"] = str(release)
    root = Path(tempfile.mkdtemp(prefix="bolt-pack-bench-"))
    (root / "keys").mkdir()
    subprocess.run([str(agent_bin()), "keys", "gen", "--out", str(root / "keys"), "--name", "release"], check=True, capture_output=True)
    certs = make_certs(root / "certs")
    started = time.monotonic()
    with MotoServer(log_dir=root) as s3, ThreadPoolExecutor(16) as pool:
        config = agent_config(s3, root / "keys" / "release.pub")
        agents = [Agent(root / f"agent{i:02d}", packs=[], config=config, certs=certs, env=s3.env) for i in range(AGENTS)]
        try:
            list(pool.map(lambda a: a.start(timeout=60), agents))
            rows = asyncio.run(measure(root, s3, agents))
        finally:
            list(pool.map(lambda a: a.stop(), agents))
    w = max(len(r[0]) for r in rows)
    print(f"\n{'measure'.ljust(w)}  {'result':>14}  {'target':>14}  ok")
    print("-" * (w + 36))
    for name, value, target, ok in rows:
        print(f"{name.ljust(w)}  {value:>14}  {target:>14}  {'yes' if ok else 'NO'}")
    print(f"\n({AGENTS} agents, sync every {INTERVAL:g} s, idle window {IDLE:g} s, run {time.monotonic() - started:.0f} s;"
          f" {os.cpu_count()} cores; S3: moto on loopback; agents: {agent_bin()})")


if __name__ == "__main__":
    main()
