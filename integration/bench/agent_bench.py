"""`make bench`: the agent's speed and memory on this machine, as a table.

Measures, against a real release-build agent over real mTLS:
- Execute -> RUNNING latency (p50, p99) on a warm channel;
- short-action throughput: a trivial action run to completion, 64 callers;
- output throughput: 1 GiB of stdout written to disk and streamed to one follower;
- agent RSS idle and with 100 running actions; supervisor PSS;
- a soak: after 3,000 executions of warm-up, 10,000 short executions (each
  followed to its end) and 1,000 more streams, with the agent's RSS (and
  its anonymous part: code pages come and go) before and after;
- the zstd compression ratio of a typical service log.
Not a test: it prints numbers and the targets beside them.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
import conftest  # noqa: E402  (generates the stubs)
import grpc  # noqa: E402
from bolt.v1 import bolt_pb2 as pb  # noqa: E402
from bolt.v1 import bolt_pb2_grpc  # noqa: E402

from bolt_testing import Agent  # noqa: E402

MiB = 1024 * 1024


def status(pid: int) -> dict[str, int]:
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        k, _, v = line.partition(":")
        if v.strip().endswith("kB"):
            out[k] = int(v.split()[0]) * 1024
    return out


def rss(pid: int) -> int:
    return status(pid).get("VmRSS", 0)


def cgroup_kernel_memory(pid: int) -> int | None:
    """Kernel memory (slab: inodes, dentries, ...) charged to `pid`'s memory cgroup."""
    for line in Path(f"/proc/{pid}/cgroup").read_text().splitlines():
        _, controllers, path = line.split(":", 2)
        if "memory" in controllers.split(","):
            f = Path("/sys/fs/cgroup/memory") / path.lstrip("/") / "memory.kmem.usage_in_bytes"
            return int(f.read_text()) if f.exists() else None
        if controllers == "":
            stat = Path("/sys/fs/cgroup") / path.lstrip("/") / "memory.stat"
            if stat.exists():
                for row in stat.read_text().splitlines():
                    if row.startswith("kernel "):
                        return int(row.split()[1])
    return None


def smaps(pid: int) -> dict[str, int]:
    out = {}
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()[1:]:
        k, v = line.split(":", 1)
        out[k] = int(v.split()[0]) * 1024
    return out


def channel(a: Agent) -> grpc.aio.Channel:
    creds = grpc.ssl_channel_credentials(a.ca.read_bytes(), a.client_key.read_bytes(), a.client_cert.read_bytes())
    return grpc.aio.secure_channel(f"127.0.0.1:{a.port}", creds, options=[("grpc.ssl_target_name_override", "localhost")])


def req(action: str, **args: object) -> pb.ExecuteRequest:
    return pb.ExecuteRequest(pack="bolt-test", action=action, args={k: str(v) for k, v in args.items()})


async def wait_end(stub: bolt_pb2_grpc.BoltStub, eid: str) -> pb.Execution:
    async for c in stub.StreamOutput(pb.StreamOutputRequest(execution_id=eid, follow=True)):
        if c.end:
            return c.execution
    raise RuntimeError("stream ended without a final state")


async def latency(stub: bolt_pb2_grpc.BoltStub, n: int = 300) -> list[float]:
    out = []
    for _ in range(n):
        t0 = time.perf_counter()
        eid = (await stub.Execute(req("noop"))).execution_id
        while (await stub.GetExecution(pb.GetExecutionRequest(execution_id=eid))).state == pb.STATE_PENDING:
            pass
        out.append((time.perf_counter() - t0) * 1000)
        await wait_end(stub, eid)
    return out


async def throughput(stub: bolt_pb2_grpc.BoltStub, total: int = 3000, workers: int = 64) -> float:
    left = total

    async def worker() -> None:
        nonlocal left
        while left > 0:
            left -= 1
            eid = (await stub.Execute(req("noop"))).execution_id
            e = await wait_end(stub, eid)
            assert e.state == pb.STATE_SUCCEEDED, e

    t0 = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(workers)))
    return total / (time.perf_counter() - t0)


async def output(stub: bolt_pb2_grpc.BoltStub, size: int) -> float:
    t0 = time.perf_counter()
    eid = (await stub.Execute(req("flood", bytes=size))).execution_id
    got = 0
    async for c in stub.StreamOutput(pb.StreamOutputRequest(execution_id=eid, follow=True)):
        if c.stream == pb.STREAM_STDOUT:
            got += len(c.data)
        if c.end:
            assert c.execution.state == pb.STATE_SUCCEEDED, c.execution
    assert got == size, (got, size)
    return size / MiB / (time.perf_counter() - t0)


async def many_running(a: Agent, stub: bolt_pb2_grpc.BoltStub, n: int = 100) -> tuple[int, dict[str, int]]:
    ids = [(await stub.Execute(req("sleep", ticks=60, interval="0.5"))).execution_id for _ in range(n)]
    for eid in ids:
        while (await stub.GetExecution(pb.GetExecutionRequest(execution_id=eid))).state != pb.STATE_RUNNING:
            await asyncio.sleep(0.01)
    await asyncio.sleep(1.0)
    agent_rss = rss(a.proc.pid)
    sup_pid = int((a.data_dir / "executions" / ids[0] / "supervisor.pid").read_text().split()[0])
    sup = smaps(sup_pid)
    for eid in ids:
        await stub.Kill(pb.KillRequest(execution_id=eid))
    for eid in ids:
        await wait_end(stub, eid)
    return agent_rss, sup


async def soak(a: Agent, stub: bolt_pb2_grpc.BoltStub, executions: int, streams: int) -> tuple[dict[str, int], dict[str, int]]:
    # Warm up until the bounded caches (redb's 1 MiB, allocator pools, span
    # slabs) are full: the soak then shows what keeps growing.
    await throughput(stub, total=3000)
    # Both measures idle alike: past two memory trim rounds (every 10 s; code
    # pages are released in a round that saw no work).
    await asyncio.sleep(21.0)
    before = status(a.proc.pid)
    before["kernel"] = cgroup_kernel_memory(a.proc.pid) or 0
    await throughput(stub, total=executions)
    before["kernel_per_exec"] = ((cgroup_kernel_memory(a.proc.pid) or 0) - before["kernel"]) // executions
    eid = (await stub.Execute(req("flood", bytes=200_000))).execution_id
    await wait_end(stub, eid)
    sem = asyncio.Semaphore(50)

    async def one() -> None:
        async with sem:
            n = 0
            async for c in stub.StreamOutput(pb.StreamOutputRequest(execution_id=eid, follow=True)):
                n += len(c.data)
            assert n >= 200_000

    await asyncio.gather(*(one() for _ in range(streams)))
    await asyncio.sleep(21.0)
    return before, status(a.proc.pid)


async def compression(stub: bolt_pb2_grpc.BoltStub, a: Agent) -> tuple[int, int]:
    eid = (await stub.Execute(req("applog", lines=200_000))).execution_id
    await wait_end(stub, eid)
    folder = a.data_dir / "executions" / eid
    deadline = time.monotonic() + 60
    while not (folder / "output.log.zst").exists() and time.monotonic() < deadline:
        await asyncio.sleep(0.2)
    plain = 0
    async for c in stub.StreamOutput(pb.StreamOutputRequest(execution_id=eid)):
        plain += len(c.data)
    return plain, (folder / "output.log.zst").stat().st_size


async def telemetry_cost(rounds: int = 12, n: int = 100) -> tuple[float, float, int]:
    """Execute p50 with metrics (Prometheus endpoint) and OTLP export (to a
    local receiver) on versus both off, measured in alternating rounds on two
    agents so that drift hits both alike; and the idle RSS with them on."""
    from bolt_testing.otlp import OtlpReceiver

    base = '[exec]\nkill_grace = "1s"\n[log]\nlevel = "warn"\n'
    with OtlpReceiver() as receiver:
        on_cfg = base + f'[telemetry]\notlp_endpoint = "{receiver.endpoint}"\notlp_interval = "5s"\n'
        off = Agent(Path(tempfile.mkdtemp(prefix="bolt-bench-off-")), config=base, env={"BOLT_METRICS_LISTEN": ""}).start()
        on = Agent(Path(tempfile.mkdtemp(prefix="bolt-bench-on-")), config=on_cfg).start()
        try:
            chs = [channel(off), channel(on)]
            stubs = [bolt_pb2_grpc.BoltStub(c) for c in chs]
            for st in stubs:
                await st.Health(pb.HealthRequest())
            await asyncio.sleep(1.0)
            idle_on = rss(on.proc.pid)
            samples: list[list[float]] = [[], []]
            for _ in range(rounds):
                for i, st in enumerate(stubs):
                    samples[i] += await latency(st, n)
            # Spans leave in batches every few seconds: wait for one.
            deadline = time.monotonic() + 15
            while not receiver.spans and time.monotonic() < deadline:
                await asyncio.sleep(0.2)
            assert receiver.spans, "the agent exported spans during the benchmark"
            for c in chs:
                await c.close()
        finally:
            off.stop()
            on.stop()
    return statistics.median(samples[0]), statistics.median(samples[1]), idle_on


async def main() -> None:
    root = Path(tempfile.mkdtemp(prefix="bolt-bench-"))
    config = '[exec]\noutput_max = "2GiB"\nkill_grace = "1s"\n[log]\nlevel = "warn"\n'
    config += '[history]\ncompress_after = "2s"\nsweep_interval = "1s"\n'
    # 100 running actions of one pack is the point of one measure.
    config += '[limits]\nmax_running_per_pack = 256\nmax_pending = 256\n'
    # Telemetry off here; its cost is measured on its own below.
    a = Agent(root, config=config, env={"BOLT_METRICS_LISTEN": ""}).start()
    try:
        ch = channel(a)
        stub = bolt_pb2_grpc.BoltStub(ch)
        await stub.Health(pb.HealthRequest())
        # Idle: past the first memory trim round (1 s after start, then every 10 s).
        await asyncio.sleep(2.0)
        idle_status = status(a.proc.pid)
        idle = idle_status["VmRSS"]
        spawner = a.spawners()
        spawner_mem = smaps(spawner[0]) if spawner else {}
        lat = await latency(stub)
        tput = await throughput(stub)
        size = int(os.environ.get("BOLT_BENCH_OUTPUT_BYTES", str(1024 * MiB)))
        mbps = await output(stub, size)
        busy, sup = await many_running(a, stub)
        n_soak = int(os.environ.get("BOLT_BENCH_SOAK", "10000"))
        soak_before, soak_after = await soak(a, stub, n_soak, n_soak // 10)
        plain, packed = await compression(stub, a)
        await ch.close()
    finally:
        a.stop()
    t_off, t_on, idle_telemetry = await telemetry_cost()
    apart = (t_on - t_off) / t_off * 100
    grown = soak_after["VmRSS"] - soak_before["VmRSS"]
    grown_anon = soak_after["RssAnon"] - soak_before["RssAnon"]
    lat.sort()
    p50 = statistics.median(lat)
    p99 = lat[int(len(lat) * 0.99) - 1]
    rows = [
        ("Execute -> RUNNING p50", f"{p50:.2f} ms", "<= 5 ms", p50 <= 5),
        ("Execute -> RUNNING p99", f"{p99:.2f} ms", "", True),
        ("short-action throughput", f"{tput:.0f} exec/s", ">= 300 exec/s", tput >= 300),
        (f"output streamed ({size // MiB} MiB)", f"{mbps:.0f} MB/s", ">= 200 MB/s", mbps >= 200),
        ("agent RSS idle", f"{idle / MiB:.1f} MiB", "<= 10 MiB", idle <= 10 * MiB),
        ("  of which anonymous / file", f"{idle_status.get('RssAnon', 0) / MiB:.1f} / {idle_status.get('RssFile', 0) / MiB:.1f} MiB", "", True),
        ("spawner RSS / PSS idle", f"{spawner_mem.get('Rss', 0) / MiB:.1f} / {spawner_mem.get('Pss', 0) / MiB:.1f} MiB", "", True),
        ("agent RSS, 100 running", f"{busy / MiB:.1f} MiB", "<= 40 MiB", busy <= 40 * MiB),
        ("supervisor PSS", f"{sup.get('Pss', 0) / 1024:.0f} KiB", "< 1 MiB", sup.get("Pss", 0) < MiB),
        ("supervisor private", f"{(sup.get('Private_Clean', 0) + sup.get('Private_Dirty', 0)) / 1024:.0f} KiB", "< 1 MiB",
         sup.get("Private_Clean", 0) + sup.get("Private_Dirty", 0) < MiB),
        (f"soak: RSS before {n_soak} execs", f"{soak_before['VmRSS'] / MiB:.1f} MiB", "", True),
        (f"soak: RSS after (+{n_soak // 10} streams)", f"{soak_after['VmRSS'] / MiB:.1f} MiB", "", True),
        ("soak: RSS growth", f"{grown / MiB:+.2f} MiB", "", True),
        ("  of which anonymous (a leak would show here)", f"{grown_anon / MiB:+.2f} MiB", "<= 2 MiB", grown_anon <= 2 * MiB),
        ("kernel memory in agent cgroup / exec", f"{soak_before['kernel_per_exec']} B", "", True),
        ("Execute p50, metrics+OTLP off", f"{t_off:.2f} ms", "", True),
        ("Execute p50, metrics+OTLP on", f"{t_on:.2f} ms", "", True),
        ("  telemetry cost", f"{apart:+.1f} %", "<= 5 %", apart <= 5),
        ("agent RSS idle, metrics+OTLP on", f"{idle_telemetry / MiB:.1f} MiB", "", True),
        ("zstd ratio, typical service log", f"{plain / packed:.1f}x", "", True),
        ("  (plain -> compressed)", f"{plain / MiB:.1f}->{packed / MiB:.2f} MiB", "", True),
    ]
    w = max(len(r[0]) for r in rows)
    print(f"\n{'measure'.ljust(w)}  {'result':>14}  {'target':>14}  ok")
    print("-" * (w + 36))
    for name, value, target, ok in rows:
        print(f"{name.ljust(w)}  {value:>14}  {target:>14}  {'yes' if ok else 'NO'}")
    print(f"\n(machine: {os.cpu_count()} cores; client: Python grpc.aio in one process on the same machine)")


if __name__ == "__main__":
    asyncio.run(main())
