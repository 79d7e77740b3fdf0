"""Fleet orchestration beyond the vectors: progress, fire-and-check-back, reattach from
another process, resumable run ids, no thread per instance."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from bolt_client import AsyncBoltClient, Fleet, FleetOptions, FleetProgress, Handle, Instance, Outcome, State, TLSConfig

from conftest import AgentFactory


def fleet_of(agents: AgentFactory, n: int) -> list[Instance]:
    zones = ["us-east-1a", "us-east-1b", "us-west-2a"]
    out = []
    for i in range(n):
        az = zones[i % len(zones)]
        a = agents(f"i-{i}", az, az[:-1])
        out.append(Instance(f"i-{i}", a.address, "kafka", az, az[:-1]))
    return out


async def test_progress_reports_counts_and_current_group(agents: AgentFactory, tls: TLSConfig) -> None:
    inv = fleet_of(agents, 3)
    seen: list[FleetProgress] = []
    async with Fleet(tls=tls) as fleet:
        report = await fleet.run(inv, "bolt-test", "echo", {"msg": "p"}, strategy="az", on_progress=seen.append)
    assert report.ok and report.counts() == {"SUCCEEDED": 3}
    groups = [p.group for p in seen]
    assert groups[0] == "us-east-1a" and groups[-1] == "us-west-2a"
    assert any(p.counts.get("RUNNING") for p in seen)
    assert ["i-0"] in [p.running for p in seen] and seen[-1].running == []
    assert seen[-1].counts == {"SUCCEEDED": 3} and seen[-1].group_index == seen[-1].groups == 3
    assert all(r.output_excerpt.count("--msg=p") == 1 for r in report.reports)
    d = report.to_dict()
    assert json.loads(json.dumps(d))["instances"][0]["outcome"] == "SUCCEEDED"


async def test_submit_then_check_back_from_another_process(agents: AgentFactory, tls: TLSConfig, tmp_path: Path) -> None:
    inv = fleet_of(agents, 2)
    async with Fleet(tls=tls) as fleet:
        handles = await fleet.submit(inv, "bolt-test", "sleep", {"ticks": 3, "interval": "0.3"})
        assert all(h.execution_id and not h.error for h in handles)
        live = await fleet.status(handles)
        assert {r.outcome for r in live} <= {Outcome.PENDING, Outcome.RUNNING}
    path = tmp_path / "handles.json"
    path.write_text(json.dumps([h.to_dict() for h in handles]))

    # Another process re-attaches with nothing but the ids and waits for the end.
    script = f"""
import asyncio, json
from bolt_client import Fleet, Handle, TLSConfig
tls = TLSConfig({str(tls.ca)!r}, {str(tls.cert)!r}, {str(tls.key)!r})
handles = [Handle.from_dict(d) for d in json.load(open({str(path)!r}))]
async def main():
    async with Fleet(tls=tls) as f:
        return await f.wait(handles, timeout=30)
print(json.dumps([r.to_dict() for r in asyncio.run(main())]))
"""
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=True)
    reports = json.loads(out.stdout)
    assert [r["outcome"] for r in reports] == ["SUCCEEDED", "SUCCEEDED"]
    assert [r["execution_id"] for r in reports] == [h.execution_id for h in handles]
    assert all("tick 3" in r["output_excerpt"] for r in reports)


async def test_kill_handles_later(agents: AgentFactory, tls: TLSConfig) -> None:
    inv = fleet_of(agents, 2)
    async with Fleet(tls=tls) as fleet:
        handles = await fleet.submit(inv, "bolt-test", "sleep", {"ticks": 600, "interval": "0.1"})
    again = [Handle.from_dict(json.loads(json.dumps(h.to_dict()))) for h in handles]
    async with Fleet(tls=tls) as fleet:
        results = await fleet.kill(again, grace=1)
        assert all(r is not None and not isinstance(r, Exception) and not r.already_ended for r in results)
        done = await fleet.wait(again, timeout=20)
        assert [r.outcome for r in done] == [Outcome.KILLED, Outcome.KILLED]
        chunks = [c async for c in fleet.tail(again[0])]
        assert chunks[-1].end and chunks[-1].execution is not None
        assert chunks[-1].execution.state is State.KILLED


async def test_same_run_id_does_not_run_twice(agents: AgentFactory, tls: TLSConfig) -> None:
    inv = fleet_of(agents, 2)
    async with Fleet(tls=tls) as fleet:
        first = await fleet.run(inv, "bolt-test", "echo", {"msg": "x"}, strategy="parallel", run_id="run-42")
        second = await fleet.run(inv, "bolt-test", "echo", {"msg": "x"}, strategy="parallel", run_id="run-42")
        assert [r.execution_id for r in first.reports] == [r.execution_id for r in second.reports]
        page = await fleet.client(inv[0].address).list_executions(action="echo")
        assert len(page.executions) == 1


async def test_fan_out_uses_no_thread_per_instance(agents: AgentFactory, tls: TLSConfig) -> None:
    base = fleet_of(agents, 3)
    # 90 instances served by 3 agents: one task per instance, one channel per address.
    inv = [Instance(f"v-{k}", base[k % 3].address, availability_zone=base[k % 3].availability_zone) for k in range(90)]
    peak_threads = 0

    def progress(p: FleetProgress) -> None:
        nonlocal peak_threads
        peak_threads = max(peak_threads, threading.active_count())

    before = threading.active_count()
    t0 = time.monotonic()
    async with Fleet(tls=tls) as fleet:
        report = await fleet.run(inv, "bolt-test", "noop", strategy="parallel", on_progress=progress, max_errors="100%")
        assert len(fleet._clients) == 3
    assert report.counts() == {"SUCCEEDED": 90}, report.counts()
    assert peak_threads - before < 10, (before, peak_threads)
    assert time.monotonic() - t0 < 60


def test_run_fleet_blocking_with_a_provider_file(agents: AgentFactory, tls: TLSConfig, tmp_path: Path) -> None:
    from bolt_client import StaticInventory, run_fleet

    a, b = agents("i-a", "us-east-1a"), agents("i-b", "us-west-2a", "us-west-2")
    f = tmp_path / "inv.json"
    f.write_text(json.dumps([
        {"id": "i-a", "address": a.address, "availability_zone": "us-east-1a"},
        {"id": "i-b", "address": b.address, "availability_zone": "us-west-2a"},
        {"id": "i-bad", "address": "127.0.0.1:notaport", "availability_zone": "us-west-2a"},
    ]))
    report = run_fleet(StaticInventory(path=f), "bolt-test", "echo", {"msg": "prov"}, tls=tls,
                       strategy="region", max_errors=1)
    by = report.by_id()
    assert by["i-a"].outcome is Outcome.SUCCEEDED and by["i-b"].outcome is Outcome.SUCCEEDED
    assert by["i-bad"].outcome is Outcome.ERROR and "bad target" in by["i-bad"].error
    assert [r.group for r in report.reports] == ["us-east-1", "us-west-2", "us-west-2"]
    assert report.errors == 1 and not report.stopped and not report.ok


async def test_health_gate_lets_degraded_agents_through(agents: AgentFactory, tls: TLSConfig) -> None:
    from bolt_client import ServingStatus

    a = agents("i-deg", start=False)
    (a.packs_dir / "broken").mkdir()
    (a.packs_dir / "broken" / "pack.toml").write_text("name = 'broken'\n[[actions]]\nname = 'x'\n")
    a.start()
    down = agents("i-down")
    down.stop()
    inv = [Instance("i-deg", a.address), Instance("i-down", down.address)]
    async with Fleet(tls=tls) as fleet:
        health = await fleet.health(inv, timeout=2)
        deg = health["i-deg"]
        assert not isinstance(deg, Exception) and deg.status is ServingStatus.DEGRADED and deg.pack_errors
        assert isinstance(health["i-down"], Exception)
        report = await fleet.run(inv, "bolt-test", "noop", health_gate=True, max_errors=1)
    by = report.by_id()
    assert by["i-deg"].outcome is Outcome.SUCCEEDED
    assert by["i-down"].outcome is Outcome.UNHEALTHY and by["i-down"].execution_id == ""
    assert "UNAVAILABLE" in by["i-down"].error or "connect" in by["i-down"].error


async def test_submit_takes_the_rollout_options_as_java_does(agents: AgentFactory, tls: TLSConfig) -> None:
    """submit(options=...): the health gate keeps a down agent from getting an
    Execute attempt, and max_concurrency (a percentage of all the instances)
    bounds the Executes in flight."""
    ids = [f"i-up{n}" for n in range(4)]
    up = [agents(i) for i in ids]
    down = agents("i-down")
    down.stop()
    inv = [Instance(i, a.address) for i, a in zip(ids, up)] + [Instance("i-down", down.address)]
    async with Fleet(tls=tls) as fleet:
        in_flight = peak = 0
        real_execute = AsyncBoltClient.execute

        async def counting(self: AsyncBoltClient, *args: Any, **kwargs: Any) -> Any:
            nonlocal in_flight, peak
            in_flight += 1
            peak = max(peak, in_flight)
            try:
                await asyncio.sleep(0.2)  # long enough for the others to pile up if they may
                return await real_execute(self, *args, **kwargs)
            finally:
                in_flight -= 1

        AsyncBoltClient.execute = counting  # type: ignore[method-assign]
        try:
            handles = await fleet.submit(inv, "bolt-test", "noop",
                                         options=FleetOptions(health_gate=True, max_concurrency="40%"))
        finally:
            AsyncBoltClient.execute = real_execute  # type: ignore[method-assign]
    by = {h.instance.id: h for h in handles}
    assert all(by[i].execution_id for i in ids)
    assert by["i-down"].execution_id == "" and "Health failed" in by["i-down"].error, by["i-down"].error
    assert peak == 2, peak  # 40% of 5 instances
