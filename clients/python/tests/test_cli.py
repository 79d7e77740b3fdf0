"""The `bolt` command, run as a user would (a subprocess) against real agents."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

from bolt_testing import Agent

from bolt_client import TLSConfig

from conftest import AgentFactory, bolt_cmd


def bolt(env: dict[str, str], *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(bolt_cmd() + list(args), env=env, capture_output=True, text=True, timeout=timeout)


def test_actions_table_and_json(agent: Agent, bolt_env: dict[str, str]) -> None:
    r = bolt(bolt_env, "actions", agent.address)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0].split()[:4] == ["ACTION", "VERSION", "READ-ONLY", "TIMEOUT"]
    assert any(ln.startswith("bolt-test/echo ") and "msg:string" in ln and "count?:int" in ln for ln in lines)
    j = json.loads(bolt(bolt_env, "actions", agent.address, "--json").stdout)
    assert {a["name"] for a in j} >= {"echo", "sleep", "fail"}


def test_exec_follow_prints_live_output_and_exits_with_the_action_code(agent: Agent, bolt_env: dict[str, str]) -> None:
    r = bolt(bolt_env, "exec", agent.address, "bolt-test/echo", "-a", "msg=from cli", "-a", "count=2", "--follow")
    assert r.returncode == 0, r.stderr
    assert "--msg=from cli" in r.stdout and "--count=2" in r.stdout
    assert "SUCCEEDED exit code 0" in r.stderr
    f = bolt(bolt_env, "exec", agent.address, "bolt-test/fail", "-a", "code=7", "--follow")
    assert f.returncode == 7 and "FAILED exit code 7" in f.stderr

    # Live: the first tick is on stdout long before the action ends.
    cmd = bolt_cmd() + ["exec", agent.address, "bolt-test/sleep", "-a", "ticks=4", "-a", "interval=0.5", "-f"]
    p = subprocess.Popen(cmd, env=bolt_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert p.stdout is not None
    t0 = time.monotonic()
    first = p.stdout.readline()
    first_at = time.monotonic() - t0
    rest, _ = p.communicate(timeout=30)
    total = time.monotonic() - t0
    assert first.strip() == "tick 1" and "tick 4" in rest
    assert first_at < total - 1.0, (first_at, total)


def test_exec_status_tail_kill_history(agent: Agent, bolt_env: dict[str, str]) -> None:
    r = bolt(bolt_env, "exec", agent.address, "bolt-test/sleep", "-a", "ticks=600", "-a", "interval=0.1")
    assert r.returncode == 0, r.stderr
    eid = r.stdout.strip()
    s = bolt(bolt_env, "status", agent.address, eid)
    assert s.returncode == 0 and f"execution:    {eid}" in s.stdout and "state:" in s.stdout
    assert json.loads(bolt(bolt_env, "status", agent.address, eid, "--json").stdout)["state"] in ("PENDING", "RUNNING")
    k = bolt(bolt_env, "kill", agent.address, eid, "--grace", "1")
    assert k.returncode == 0 and "kill sent" in k.stdout
    t = bolt(bolt_env, "tail", agent.address, eid)
    assert "KILLED" in t.stderr and t.returncode != 0
    h = bolt(bolt_env, "history", agent.address, "--action", "sleep", "--limit", "5")
    assert h.returncode == 0 and eid in h.stdout and "KILLED" in h.stdout
    hj = json.loads(bolt(bolt_env, "history", agent.address, "--state", "killed", "--json").stdout)
    assert eid in [e["execution_id"] for e in hj] and all(e["state"] == "KILLED" for e in hj)


def test_health_info_and_errors(agent: Agent, bolt_env: dict[str, str], tmp_path: Path) -> None:
    h = bolt(bolt_env, "health", agent.address)
    assert h.returncode == 0 and ("SERVING" in h.stdout or "DEGRADED" in h.stdout)
    i = bolt(bolt_env, "info", agent.address)
    assert "i-shared" in i.stdout and "az=us-east-1a" in i.stdout
    nf = bolt(bolt_env, "exec", agent.address, "bolt-test/nope")
    assert nf.returncode == 125 and "NOT_FOUND" in nf.stderr and agent.address in nf.stderr
    env = {k: v for k, v in bolt_env.items() if k not in ("BOLT_CA", "BOLT_CERT", "BOLT_KEY")}
    env["BOLT_CLIENT_CONFIG"] = str(tmp_path / "absent.yaml")
    missing = bolt(env, "health", agent.address)
    assert missing.returncode == 2 and "BOLT_CA" in missing.stderr
    # certificates from flags and from a config file
    flags = bolt(env, "health", agent.address, "--ca", bolt_env["BOLT_CA"], "--cert", bolt_env["BOLT_CERT"], "--key", bolt_env["BOLT_KEY"])
    assert flags.returncode == 0, flags.stderr
    cfg = tmp_path / "bolt.yaml"
    cfg.write_text(f"ca: {bolt_env['BOLT_CA']}\ncert: {bolt_env['BOLT_CERT']}\nkey: {bolt_env['BOLT_KEY']}\n")
    env["BOLT_CLIENT_CONFIG"] = str(cfg)
    assert bolt(env, "health", agent.address).returncode == 0


def test_fleet_run_progress_and_summary(agents: AgentFactory, bolt_env: dict[str, str], tmp_path: Path) -> None:
    rows = []
    for n, az in enumerate(["us-east-1a", "us-east-1b", "us-east-1a"]):
        a = agents(f"i-{n}", az, "us-east-1")
        if n == 1:
            (a.packs_dir / "bolt-test" / "FAIL").write_text("")
        rows.append({"id": f"i-{n}", "address": a.address, "availability_zone": az, "region": "us-east-1"})
    inv = tmp_path / "fleet.yaml"
    import yaml

    inv.write_text(yaml.safe_dump({"instances": rows}))
    r = bolt(bolt_env, "fleet", "run", "--inventory", str(inv), "--strategy", "az", "--max-errors", "0",
             "bolt-test/scenario", "-a", "seconds=0.1")
    assert r.returncode == 1, r.stderr
    # progress on stderr, one line per finished instance, with the counts
    prog = [ln for ln in r.stderr.splitlines() if ln.startswith("[")]
    assert len(prog) == 3
    assert {prog[0].split()[1], prog[1].split()[1]} == {"i-0", "i-2"} and "SUCCEEDED" in prog[0]
    assert prog[2].split()[1] == "i-1" and "FAILED" in prog[2] and "STOPPED" in prog[2]
    # summary table on stdout: AZ a first (both), then b fails; budget stops
    table = {ln.split()[0]: ln.split() for ln in r.stdout.splitlines() if ln.startswith("i-")}
    assert table["i-0"][4] == "SUCCEEDED" and table["i-2"][4] == "SUCCEEDED" and table["i-1"][4] == "FAILED"
    assert "STOPPED by failure budget" in r.stdout
    j = bolt(bolt_env, "fleet", "run", "-i", str(inv), "-s", "parallel", "-e", "50%", "--json",
             "bolt-test/scenario", "-a", "seconds=0.1")
    report = json.loads(j.stdout)
    assert report["counts"] == {"SUCCEEDED": 2, "FAILED": 1} and report["stopped"] is False
    assert j.returncode == 1


def test_fleet_submit_status_wait(agents: AgentFactory, bolt_env: dict[str, str], tmp_path: Path) -> None:
    addrs = [agents(f"i-{n}").address for n in range(2)]
    s = bolt(bolt_env, "fleet", "submit", "-i", "hosts:" + ",".join(addrs), "bolt-test/sleep", "-a", "ticks=2", "-a", "interval=0.2")
    assert s.returncode == 0, s.stderr
    hfile = tmp_path / "h.json"
    hfile.write_text(s.stdout)
    assert len(json.loads(s.stdout)["handles"]) == 2
    st = bolt(bolt_env, "fleet", "status", str(hfile))
    assert st.returncode == 0 and ("RUNNING" in st.stdout or "PENDING" in st.stdout or "SUCCEEDED" in st.stdout)
    w = bolt(bolt_env, "fleet", "wait", str(hfile), "--json")
    assert w.returncode == 0 and [r["outcome"] for r in json.loads(w.stdout)] == ["SUCCEEDED", "SUCCEEDED"]
    fh = bolt(bolt_env, "fleet", "health", "-i", "hosts:" + ",".join(addrs))
    assert fh.returncode == 0 and fh.stdout.count("SERVING") >= 2


def test_tail_without_follow_and_json_chunks(agent: Agent, bolt_env: dict[str, str]) -> None:
    eid = bolt(bolt_env, "exec", agent.address, "bolt-test/echo", "-a", "msg=tailme").stdout.strip()
    w = bolt(bolt_env, "tail", agent.address, eid)  # follows to the end
    assert w.returncode == 0 and "--msg=tailme" in w.stdout and "SUCCEEDED" in w.stderr
    j = bolt(bolt_env, "tail", agent.address, eid, "--no-follow", "--json", "--offset", "3")
    docs = [json.loads(line) for line in j.stdout.splitlines()]  # one object per line
    assert docs[0]["offset"] == 3 and docs[-1]["end"] is True
    assert "".join(d.get("data", "") for d in docs[:-1]) == w.stdout[3:]


def test_fleet_run_interrupted_then_resumed_with_its_run_id(agents: AgentFactory, bolt_env: dict[str, str], tls: TLSConfig) -> None:
    import signal

    from bolt_client import BoltClient

    a = agents("i-int")
    args = ["fleet", "run", "-i", f"hosts:{a.address}", "--run-id", "rid-1", "bolt-test/sleep", "-a", "ticks=6", "-a", "interval=0.5"]
    # Ctrl-C must reach the CLI even when this test runs from a background
    # job, whose children inherit SIGINT ignored.
    p = subprocess.Popen(
        bolt_cmd() + args, env=bolt_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    with BoltClient(a.address, tls=tls) as c:
        deadline = time.monotonic() + 20
        while not c.list_executions(action="sleep").executions:
            assert time.monotonic() < deadline and p.poll() is None
            time.sleep(0.05)
        p.send_signal(signal.SIGINT)
        _, err = p.communicate(timeout=20)
        assert p.returncode == 130 and "--run-id rid-1" in err
        first = c.list_executions(action="sleep").executions
        assert len(first) == 1 and not first[0].done  # still running on the agent
        r = bolt(bolt_env, *args, "--json")
        assert r.returncode == 0, r.stderr
        rep = json.loads(r.stdout)
        assert rep["instances"][0]["execution_id"] == first[0].execution_id  # re-attached, not re-run
        assert rep["instances"][0]["outcome"] == "SUCCEEDED"
        assert len(c.list_executions(action="sleep").executions) == 1
