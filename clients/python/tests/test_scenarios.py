"""Run the shared scenario vectors (integration/scenarios/*.json) against real agents.

The format and the checks are specified in integration/scenarios/README.md; the
Java client runs the same files.
"""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from bolt_client import AsyncBoltClient, Fleet, FleetOptions, FleetReport, Instance, TLSConfig

from conftest import SCENARIOS, AgentFactory

FILES = sorted(SCENARIOS.glob("*.json"))


def intervals(report: FleetReport) -> dict[str, tuple[datetime, datetime]]:
    out = {}
    for r in report.reports:
        if r.execution is not None:
            assert r.started_at is not None and r.ended_at is not None, r
            out[r.instance.id] = (r.started_at, r.ended_at)
    return out


def peak_overlap(spans: list[tuple[datetime, datetime]]) -> int:
    # The agent may record started_at a millisecond after a fast action's ended_at.
    events = [(s, 1) for s, _ in spans] + [(max(s, e), -1) for s, e in spans]
    events.sort(key=lambda ev: (ev[0], ev[1]))  # an end before a start at the same instant
    peak = cur = 0
    for _, d in events:
        cur += d
        peak = max(peak, cur)
    return peak


def check(spec: dict[str, Any], report: FleetReport) -> None:
    exp = spec["expect"]
    outcomes = {r.instance.id: r.outcome.value for r in report.reports}
    details = {r.instance.id: (r.outcome.value, r.error, r.output_excerpt[-200:]) for r in report.reports}
    if outcomes != exp["outcomes"]:
        pytest.fail(f"outcomes {outcomes} != expected {exp['outcomes']}; details: {json.dumps(details, indent=1)}")
    spans = intervals(report)
    if "order" in exp:
        assert sorted(spans, key=lambda k: spans[k][0]) == exp["order"]
    if "groups" in exp:
        groups = exp["groups"]
        assert set(spans) == {i for g in groups for i in g}
        for g, nxt in zip(groups, groups[1:]):
            last_end = max(spans[i][1] for i in g)
            first_start = min(spans[i][0] for i in nxt)
            assert last_end <= first_start, f"group {nxt} started before {g} ended"
    peak = peak_overlap(list(spans.values()))
    if "max_running" in exp:
        assert peak <= exp["max_running"], f"{peak} running at once"
    if "min_peak_running" in exp:
        assert peak >= exp["min_peak_running"], f"only {peak} ran at once"
    assert report.stopped is exp["stopped"]


@pytest.mark.parametrize("path", FILES, ids=[p.stem for p in FILES])
async def test_scenario(path: Path, agents: AgentFactory, tls: TLSConfig) -> None:
    spec = json.loads(path.read_text())
    assert spec["name"] == path.stem
    inventory: list[Instance] = []
    instance_args: dict[str, dict[str, str]] = {}
    for d in spec["instances"]:
        a = agents(d["id"], d["availability_zone"], d["region"], app="scenario")
        if d.get("fail"):
            (a.packs_dir / "bolt-test" / "FAIL").write_text("")
        if d.get("args"):
            instance_args[d["id"]] = d["args"]
        if d.get("down"):
            a.stop()
            inventory.append(Instance(d["id"], a.address, "scenario", d["availability_zone"], d["region"]))
            continue
        # The inventory is what the agents say about themselves (their config labels).
        async with AsyncBoltClient(a.address, tls=tls) as c:
            info = (await c.agent_info()).instance
        assert (info.instance_id, info.availability_zone, info.region) == (d["id"], d["availability_zone"], d["region"])
        inventory.append(Instance(info.instance_id, a.address, info.app, info.availability_zone, info.region))

    o = spec.get("options", {})
    opts = FleetOptions(
        strategy=o.get("strategy", "one-at-a-time"),
        max_concurrency=o.get("max_concurrency"),
        max_errors=o.get("max_errors", 0),
        health_gate=o.get("health_gate", False),
        instance_timeout=o.get("instance_timeout_seconds"),
    )
    act = spec["action"]
    async with Fleet(tls=tls) as fleet:
        report = await fleet.run(inventory, act["pack"], act["action"], act.get("args", {}), options=opts,
                                 instance_args=instance_args)
    check(spec, report)
    for r in report.reports:
        if r.outcome.value == "SUCCEEDED":
            assert r.exit_code == 0 and "ok" in r.output_excerpt and r.duration is not None
        if r.outcome.value == "FAILED":
            assert r.exit_code == 1 and "FAIL marker present" in r.output_excerpt
        if r.outcome.value == "SKIPPED":
            assert r.execution_id == ""


def test_scenario_files_are_well_formed() -> None:
    assert len(FILES) >= 10
    strategies = set()
    for p in FILES:
        spec = json.loads(p.read_text())
        ids = [d["id"] for d in spec["instances"]]
        assert len(set(ids)) == len(ids), p
        assert set(spec["expect"]["outcomes"]) == set(ids), p
        strategies.add(spec.get("options", {}).get("strategy", "one-at-a-time"))
    assert strategies == {"one-at-a-time", "az", "region", "parallel"}
