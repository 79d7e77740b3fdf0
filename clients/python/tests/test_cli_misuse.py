"""Every documented misuse of `bolt`, run as a user would: a clear one-line error,
the documented exit status, and never a Python traceback."""

from __future__ import annotations

import json
import signal
import subprocess
import time
from pathlib import Path

import pytest
from bolt_testing import Agent

from bolt_client import BoltClient, TLSConfig

from conftest import AgentFactory, bolt_cmd, free_port


def bolt(env: dict[str, str], *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    r = subprocess.run(bolt_cmd() + list(args), env=env, capture_output=True, text=True, timeout=timeout)
    assert "Traceback" not in r.stderr, r.stderr
    return r


@pytest.mark.parametrize(
    "args,words",
    [
        (["exec", "HOST", "bolt-test/echo", "-a", "novalue"], "bad argument 'novalue'"),
        (["exec", "HOST", "bolt-test/echo", "-a", "=x"], "bad argument '=x'"),
        (["exec", "HOST", "no-slash"], "expected PACK/ACTION"),
        (["exec", "HOST", "bolt-test/echo", "--no-such-flag"], "unrecognized arguments"),
        (["history", "HOST", "--limit", "many"], "invalid int value"),
        (["fleet", "status", "/nonexistent/handles.json"], "cannot read handles file /nonexistent/handles.json"),
        (["fleet", "wait", "HANDLES_GARBAGE"], "is not a handles file"),
        (["fleet", "kill", "HANDLES_NOT_A_LIST"], "is not a handles file"),
        (["fleet", "run", "-i", "hosts:", "bolt-test/noop"], "lists no instances"),
        (["fleet", "submit", "-i", "EMPTY_FILE", "bolt-test/noop"], "lists no instances"),
        (["fleet", "health", "-i", "hosts:"], "lists no instances"),
        (["fleet", "run", "-i", "hosts:HOST", "-s", "parallel", "-c", "0", "bolt-test/noop"], "max_concurrency"),
        (["fleet", "run", "-i", "hosts:HOST", "-s", "parallel", "-c", "ten", "bolt-test/noop"], "max_concurrency"),
        (["fleet", "run", "-i", "hosts:HOST", "-s", "parallel", "-c", "0%", "bolt-test/noop"], "max_concurrency"),
        (["fleet", "run", "-i", "hosts:HOST", "-e", "lots", "bolt-test/noop"], "max_errors"),
        (["fleet", "run", "-i", "hosts:HOST", "-s", "zig-zag", "bolt-test/noop"], "strategy"),
        (["fleet", "run", "-i", "nosuch:spec", "bolt-test/noop"], "inventory"),
    ],
)
def test_usage_errors_exit_2_with_one_line(
    args: list[str], words: str, agent: Agent, bolt_env: dict[str, str], tmp_path: Path
) -> None:
    files = {
        "HANDLES_GARBAGE": "{not json",
        "HANDLES_NOT_A_LIST": '{"handles": 7}',
        "EMPTY_FILE": "instances: []\n",
    }
    argv = []
    for a in args:
        if a in files:
            f = tmp_path / ("inv.yaml" if a == "EMPTY_FILE" else "h.json")
            f.write_text(files[a])
            a = str(f)
        argv.append(a.replace("HOST", agent.address))
    r = bolt(bolt_env, *argv)
    assert r.returncode == 2, (r.returncode, r.stderr)
    assert words in r.stderr, r.stderr
    assert len([ln for ln in r.stderr.splitlines() if ln.startswith("bolt") and ": error:" in ln]) == 1, r.stderr


def test_an_empty_inventory_is_fine_when_allowed(bolt_env: dict[str, str]) -> None:
    r = bolt(bolt_env, "fleet", "run", "-i", "hosts:", "--allow-empty", "--json", "bolt-test/noop")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["instances"] == []


def test_client_errors_exit_125_and_name_the_agent(bolt_env: dict[str, str], agent: Agent) -> None:
    down = f"127.0.0.1:{free_port()}"
    r = bolt(bolt_env, "health", down, "--timeout", "3")
    assert r.returncode == 125 and down in r.stderr and "connection refused" in r.stderr, r.stderr
    # A host name full of TLS words is still only unreachable, not a TLS failure.
    r = bolt(bolt_env, "health", "tls-handshake-alert.example:7443", "--timeout", "3")
    assert r.returncode == 125 and "cannot resolve host name" in r.stderr and "TLS" not in r.stderr, r.stderr
    r = bolt(bolt_env, "kill", agent.address, "no-such-execution")
    assert r.returncode == 125 and "INVALID_ARGUMENT" in r.stderr and "is not an execution id" in r.stderr, r.stderr


def test_exit_status_follows_how_the_action_ended(agent: Agent, bolt_env: dict[str, str]) -> None:
    own = bolt(bolt_env, "exec", agent.address, "bolt-test/fail", "-a", "code=3", "-f")
    assert own.returncode == 3, own.stderr
    slow = bolt(bolt_env, "exec", agent.address, "bolt-test/sleep", "-a", "ticks=100", "-a", "interval=0.1",
                "--action-timeout", "1", "-f")
    assert slow.returncode == 124 and "TIMED_OUT" in slow.stderr, slow.stderr
    eid = bolt(bolt_env, "exec", agent.address, "bolt-test/sleep", "-a", "ticks=600", "-a", "interval=0.1").stdout.strip()
    assert bolt(bolt_env, "kill", agent.address, eid, "--grace", "1").returncode == 0
    killed = bolt(bolt_env, "tail", agent.address, eid)
    assert killed.returncode == 128 + signal.SIGTERM and "KILLED" in killed.stderr, killed.stderr


def test_version(bolt_env: dict[str, str]) -> None:
    r = bolt(bolt_env, "--version")
    assert r.returncode == 0 and r.stdout.startswith("bolt 0."), r.stdout


def test_tail_json_is_one_object_per_line(agent: Agent, bolt_env: dict[str, str]) -> None:
    eid = bolt(bolt_env, "exec", agent.address, "bolt-test/echo", "-a", "msg=a\nb", "-a", "count=3").stdout.strip()
    r = bolt(bolt_env, "tail", agent.address, eid, "--json")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    docs = [json.loads(ln) for ln in lines]
    assert len(lines) >= 2 and docs[-1]["end"] is True and docs[-1]["execution"]["state"] == "SUCCEEDED"


def test_fleet_kill_skips_handles_that_never_started(
    agents: AgentFactory, bolt_env: dict[str, str], tmp_path: Path
) -> None:
    up = agents("i-up").address
    down = f"127.0.0.1:{free_port()}"
    s = bolt(bolt_env, "fleet", "submit", "-i", f"hosts:{up},{down}", "--timeout", "3",
             "bolt-test/sleep", "-a", "ticks=600", "-a", "interval=0.1")
    assert s.returncode == 1  # one handle has no execution
    handles = tmp_path / "h.json"
    handles.write_text(s.stdout)
    k = bolt(bolt_env, "fleet", "kill", str(handles))
    assert k.returncode == 0, k.stdout + k.stderr
    rows = {ln.split()[0]: ln for ln in k.stdout.splitlines()[1:]}
    assert "kill sent" in rows[up] and "never started" in rows[down], k.stdout


def test_ctrl_c_in_fleet_wait_is_not_a_traceback(agents: AgentFactory, bolt_env: dict[str, str], tmp_path: Path,
                                                 tls: TLSConfig) -> None:
    a = agents("i-wait").address
    s = bolt(bolt_env, "fleet", "submit", "-i", f"hosts:{a}", "bolt-test/sleep", "-a", "ticks=600", "-a", "interval=0.1")
    handles = tmp_path / "h.json"
    handles.write_text(s.stdout)
    eid = json.loads(s.stdout)["handles"][0]["execution_id"]
    p = subprocess.Popen(
        bolt_cmd() + ["fleet", "wait", str(handles)], env=bolt_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True, preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    time.sleep(1.5)  # the CLI is waiting on the stream by now
    p.send_signal(signal.SIGINT)
    _, err = p.communicate(timeout=20)
    assert p.returncode == 130 and "Traceback" not in err, err
    assert f"bolt fleet kill {handles}" in err
    with BoltClient(a, tls=tls) as c:
        assert not c.get_execution(eid).done  # waiting stopped; the execution did not
        c.kill(eid, grace=1)


def test_profiles_pick_certificates_and_port(agent: Agent, bolt_env: dict[str, str], tmp_path: Path, certs: Path) -> None:
    import yaml

    host, port = agent.address.rsplit(":", 1)
    cfg = tmp_path / "config.yaml"
    cfg.write_text(yaml.safe_dump({
        "ca": "/nonexistent/ca.crt", "cert": "/nonexistent/c.crt", "key": "/nonexistent/c.key",
        "profiles": {
            "prod": {"ca": str(certs / "ca.crt"), "cert": str(certs / "client.crt"), "key": str(certs / "client.key"),
                     "port": int(port)},
        },
    }))
    env = {k: v for k, v in bolt_env.items() if k not in ("BOLT_CA", "BOLT_CERT", "BOLT_KEY")}
    env["BOLT_CLIENT_CONFIG"] = str(cfg)
    ok = bolt(env, "health", host, "--profile", "prod")  # the profile's port, not 7443
    assert ok.returncode == 0 and "SERVING" in ok.stdout, ok.stderr
    assert bolt({**env, "BOLT_PROFILE": "prod"}, "health", host).returncode == 0
    # A fleet's agents get the profile's port too (the address names no port).
    flags_only = {k: v for k, v in env.items() if k != "BOLT_CLIENT_CONFIG"}
    fleet = bolt(flags_only, "fleet", "health", "--config", str(cfg), "--profile", "prod", "-i", f"hosts:{host}")
    assert fleet.returncode == 0 and "SERVING" in fleet.stdout, fleet.stdout + fleet.stderr
    top = bolt(env, "health", agent.address)  # top-level keys: unreadable files
    assert top.returncode == 2 and "cannot read CA certificate /nonexistent/ca.crt" in top.stderr, top.stderr
    nope = bolt(env, "health", host, "--profile", "staging")
    assert nope.returncode == 2 and "no profile 'staging' (profiles: prod)" in nope.stderr, nope.stderr


def test_bash_completion_completes_commands(bolt_env: dict[str, str], tmp_path: Path) -> None:
    script = bolt(bolt_env, "completion", "bash")
    assert script.returncode == 0, script.stderr
    (tmp_path / "bolt.bash").write_text(script.stdout)
    probe = (
        f"source {tmp_path / 'bolt.bash'}\n"
        'COMP_WORDS=(bolt fl); COMP_CWORD=1; COMP_LINE="bolt fl"; COMP_POINT=7; _shtab_bolt; echo "${COMPREPLY[@]}"\n'
        'COMP_WORDS=(bolt fleet ""); COMP_CWORD=2; COMP_LINE="bolt fleet "; COMP_POINT=11; _shtab_bolt; '
        'echo "${COMPREPLY[@]}"\n'
    )
    out = subprocess.run(["bash", "-c", probe], capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    first, second = out.stdout.splitlines()[:2]
    assert first.split() == ["fleet"] and set(second.split()) == {"run", "submit", "status", "wait", "kill", "health"}
    bad = bolt(bolt_env, "completion", "fish")
    assert bad.returncode == 2 and "invalid choice" in bad.stderr
