"""grpcurl works with only the client certificate; packs are loaded, and a
broken one is reported without hiding the others."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from bolt_client import ServingStatus, State
from bolt_testing import EXAMPLE_PACKS, TEST_PACKS
from util import client_for, follow, text, wait_state, wait_until

GRPCURL = os.environ.get("GRPCURL") or shutil.which("grpcurl") or ""


def grpcurl(agent, *args: str) -> str:
    if not GRPCURL or not Path(GRPCURL).exists():
        pytest.skip("grpcurl is not installed (needs Go): skipping the grpcurl checks")
    cmd = [GRPCURL, "-cacert", str(agent.ca), "-cert", str(agent.client_cert), "-key", str(agent.client_key), *args]
    return subprocess.run(cmd, check=True, capture_output=True, text=True, timeout=30).stdout


def test_grpcurl_list_health_and_execute(agent, client):
    services = grpcurl(agent, agent.address, "list").split()
    assert {"bolt.v1.Bolt", "grpc.health.v1.Health"} <= set(services)
    health = json.loads(grpcurl(agent, agent.address, "grpc.health.v1.Health/Check"))
    assert health["status"] == "SERVING"
    out = json.loads(grpcurl(agent, "-d", '{"pack":"bolt-test","action":"echo","args":{"msg":"from grpcurl"}}',
                             agent.address, "bolt.v1.Bolt/Execute"))
    eid = out["executionId"]
    e = wait_state(client, eid)
    assert e.state is State.SUCCEEDED
    got = json.loads(grpcurl(agent, "-d", json.dumps({"execution_id": eid}), agent.address, "bolt.v1.Bolt/GetExecution"))
    assert got["state"] == "STATE_SUCCEEDED" and got["args"]["msg"] == "from grpcurl"
    desc = grpcurl(agent, agent.address, "describe", "bolt.v1.ExecuteRequest")
    assert "idempotency_key" in desc


def test_a_malformed_pack_is_reported_and_skipped(make_agent, tmp_path):
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "pack.toml").write_text('name = "broken"\n[[actions]]\nname = "x"\nentrypoint = "missing.sh"\n')
    a = make_agent(packs=[TEST_PACKS / "bolt-test", broken])
    s = client_for(a)
    h = s.health()
    assert h.status is ServingStatus.DEGRADED
    assert len(h.pack_errors) == 1 and "missing.sh" in h.pack_errors[0].error
    assert any("broken" in p for p in h.problems)
    info = s.agent_info()
    assert [p.name for p in info.packs] == ["bolt-test"]
    assert "pack skipped" in a.log()
    eid = s.execute("bolt-test", "echo", {"msg": "still works"}).execution_id
    assert wait_state(s, eid).state is State.SUCCEEDED


def test_packs_are_rescanned(make_agent):
    a = make_agent(config='[packs]\nrescan_interval = "200ms"\n')
    s = client_for(a)
    shutil.copytree(EXAMPLE_PACKS / "disk-usage", a.packs_dir / "disk-usage")
    wait_until(lambda: any(x.pack == "disk-usage" for x in s.list_actions()), 10, "the new pack")


def test_agent_info_reports_the_instance(make_agent):
    a = make_agent(config='[instance]\nid = "i-123"\napp = "kafka"\navailability_zone = "us-east-1a"\nregion = "us-east-1"\nstage = "test"\n')
    info = client_for(a).agent_info()
    assert (info.instance.instance_id, info.instance.app, info.instance.availability_zone, info.instance.region, info.instance.stage) == (
        "i-123", "kafka", "us-east-1a", "us-east-1", "test")
    assert info.version and info.data_disk_total_bytes > 0 and info.agent_rss_bytes > 0
    assert info.status is ServingStatus.SERVING


@pytest.mark.parametrize("pack", sorted(p.name for p in EXAMPLE_PACKS.iterdir() if (p / "pack.toml").exists()))
def test_example_packs_load(make_agent, pack):
    a = make_agent(packs=[EXAMPLE_PACKS / pack])
    s = client_for(a)
    assert s.health().pack_errors == ()
    assert any(x.pack == pack for x in s.list_actions())


def test_disk_usage_example_runs(make_agent, tmp_path):
    a = make_agent(packs=[EXAMPLE_PACKS / "disk-usage"])
    s = client_for(a)
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "f").write_bytes(b"x" * 100_000)
    eid = s.execute("disk-usage", "top-dirs", {"path": str(tmp_path), "count": 5}).execution_id
    chunks, end = follow(s, eid)
    assert end.execution.state is State.SUCCEEDED, text(chunks, None)
    assert str(tmp_path / "d") in text(chunks)


def test_an_agent_certificate_near_expiry_shows_in_health(make_agent, tmp_path):
    from bolt_testing import agent_bin

    certs = tmp_path / "short"
    subprocess.run([str(agent_bin()), "certs", "init", "--dir", str(certs), "--days", "5"], check=True, capture_output=True)
    a = make_agent(certs=certs)
    h = client_for(a).health()
    assert h.status is ServingStatus.DEGRADED
    assert any("certificate" in p and ("expires in 4 days" in p or "expires in 5 days" in p) for p in h.problems), h.problems
    ok = make_agent()
    assert not any("certificate" in p for p in client_for(ok).health().problems)
