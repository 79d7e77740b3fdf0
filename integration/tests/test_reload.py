"""SIGHUP: the agent re-reads its config and certificates without dropping a
connection; what cannot change live is named in the log."""

from __future__ import annotations

import signal
import threading
from typing import Callable

import grpc

from bolt_client import State
from bolt_testing import Agent
from util import client_for, code_of, execute, healthy, wait_state, wait_until

READ_ONLY = '[[authz.rules]]\nidentities = ["bolt-client"]\nallow = ["read"]\n'
READ_EXECUTE = '[[authz.rules]]\nidentities = ["bolt-client"]\nallow = ["read", "execute"]\n'


def test_sighup_reloads_rules_and_certificates_on_open_connections(make_agent: Callable[..., Agent]) -> None:
    a = make_agent(config='[log]\nlevel = "info"\n' + READ_EXECUTE)
    s = client_for(a)
    # A follower whose stream must survive the reload.
    eid = execute(s, "sleep", ticks=6, interval="0.5")
    lines: list[bytes] = []
    ended = threading.Event()

    def follow() -> None:
        for c in s.stream_output(eid, follow=True, timeout=30):
            if c.end:
                ended.set()
            else:
                lines.append(c.data)

    t = threading.Thread(target=follow, daemon=True)
    t.start()
    wait_until(lambda: lines, 10, "the follower's first chunk")

    a.config_path.write_text('[log]\nlevel = "debug"\n[limits]\nmax_running = 7\n' + READ_ONLY)
    assert a.proc is not None
    a.proc.send_signal(signal.SIGHUP)
    wait_until(lambda: "SIGHUP: reloaded" in a.log(), 10, "the reload")
    log = a.log()
    assert "TLS certificates reloaded" in log
    assert "limits" in log.split("SIGHUP: reloaded", 1)[1].split("\n", 1)[0], "limits need a restart"
    # The rules changed on the same channel: execute is now denied.
    code, msg = code_of(lambda: execute(s, "noop"))
    assert code == grpc.StatusCode.PERMISSION_DENIED, msg
    # The debug level is in force (authorization decisions log at debug).
    wait_until(lambda: '"authorization"' in a.log(), 5, "debug lines after the new log level")
    t.join(20)
    assert ended.is_set(), "the follower's stream lived through the reload"
    assert b"".join(lines).decode().count("tick") == 6
    assert wait_state(s, eid).state is State.SUCCEEDED

    # A config that does not load changes nothing.
    a.config_path.write_text("[limits\n")
    a.proc.send_signal(signal.SIGHUP)
    wait_until(lambda: "the config does not load" in a.log(), 10, "the refused reload")
    code, _ = code_of(lambda: execute(s, "noop"))
    assert code == grpc.StatusCode.PERMISSION_DENIED
    assert a.alive()


def test_a_configured_revoked_serial_is_refused_after_sighup(make_agent: Callable[..., Agent]) -> None:
    import subprocess

    from bolt_testing import agent_bin

    a = make_agent()
    subprocess.run([str(agent_bin()), "certs", "issue", "--dir", str(a.certs), "--name", "mallory"], check=True, capture_output=True)
    mallory = client_for(a, a.certs / "mallory.crt", a.certs / "mallory.key")
    assert healthy(mallory)
    out = subprocess.run(
        ["openssl", "x509", "-in", str(a.certs / "mallory.crt"), "-noout", "-serial"], check=True, capture_output=True, text=True
    ).stdout
    serial = out.strip().split("=", 1)[1]
    # With colons and in lower case: the agent normalises both.
    pretty = ":".join(serial[i : i + 2] for i in range(0, len(serial), 2)).lower()
    a.config_path.write_text(f'[tls]\nrevoked_serials = ["{pretty}"]\n')
    assert a.proc is not None
    a.proc.send_signal(signal.SIGHUP)
    wait_until(lambda: "SIGHUP: reloaded" in a.log(), 10, "the reload")
    code, _ = code_of(lambda: client_for(a, a.certs / "mallory.crt", a.certs / "mallory.key").health())
    assert code == grpc.StatusCode.UNAVAILABLE, "a new handshake with the revoked certificate fails"
    assert healthy(client_for(a)), "other identities are unaffected"
    wait_until(lambda: "revoked" in a.log().lower(), 5, "the refused handshake to be logged")


def test_an_invalid_revoked_serial_is_refused_at_start(tmp_path) -> None:  # type: ignore[no-untyped-def]
    import subprocess

    from bolt_testing import agent_bin

    cfg = tmp_path / "agent.toml"
    cfg.write_text('[tls]\nrevoked_serials = ["not-hex"]\n')
    r = subprocess.run([str(agent_bin()), "run", "--config", str(cfg), "--data-dir", str(tmp_path / "d")], capture_output=True, text=True, timeout=20)
    assert r.returncode != 0 and "tls.revoked_serials" in r.stderr, r.stderr


def _reload(a: Agent, *extra: str) -> "subprocess.CompletedProcess[str]":
    import subprocess

    from bolt_testing import agent_bin

    return subprocess.run(
        [str(agent_bin()), "reload", "--config", str(a.config_path), "--data-dir", str(a.data_dir), "--wait", "10s", *extra],
        capture_output=True, text=True, timeout=30,
    )


def test_bolt_agent_reload_waits_for_the_verdict(make_agent: Callable[..., Agent]) -> None:
    """`bolt-agent reload` (the unit's ExecReload=) returns once the agent has
    reloaded, and fails when the new config does not load."""
    import json
    import os

    a = make_agent(config=READ_EXECUTE)
    s = client_for(a)
    a.config_path.write_text(READ_ONLY + "[limits]\nmax_running = 3\n")
    r = _reload(a)
    assert r.returncode == 0, r.stderr
    assert "reloaded: certificates, authz" in r.stdout and "at the next restart: limits" in r.stdout, r.stdout
    # In force when the command returns: no waiting here.
    code, _ = code_of(lambda: execute(s, "noop"))
    assert code == grpc.StatusCode.PERMISSION_DENIED
    status = json.loads((a.data_dir / "reload.json").read_text())
    assert a.proc is not None and status["pid"] == a.proc.pid and status["generation"] == 1 and status["ok"] is True

    a.config_path.write_text("[limits\n")
    bad = _reload(a)
    assert bad.returncode == 1 and "the agent was not asked to reload" in bad.stderr, bad.stderr
    assert "unclosed table" in bad.stderr
    # A config that loads but certificates that do not: the agent says so.
    a.config_path.write_text(READ_ONLY)
    cert = a.certs / "agent.crt"
    good = cert.read_bytes()
    cert.write_text("-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n")
    try:
        bad = _reload(a)
    finally:
        cert.write_bytes(good)
    assert bad.returncode == 1 and "reload 2 of pid" in bad.stderr, bad.stderr
    assert "certificates cannot be loaded; keeping the previous ones" in bad.stderr
    assert healthy(s)

    # A stale pid file naming another process: refused, nothing signalled.
    (a.data_dir / "agent.pid").write_text(str(os.getpid()))
    stale = _reload(a)
    assert stale.returncode == 1 and "is not a serving bolt-agent" in stale.stderr, stale.stderr
    assert json.loads((a.data_dir / "reload.json").read_text())["generation"] == 2
    # With the pid given (systemd's $MAINPID), the file is not read.
    a.config_path.write_text(READ_EXECUTE)
    assert _reload(a, "--pid", str(a.proc.pid)).returncode == 0
    assert wait_state(s, execute(s, "noop")).state is State.SUCCEEDED


def test_systemd_watchdog_and_reload_notifications(make_agent: Callable[..., Agent]) -> None:
    """With WatchdogSec= (WATCHDOG_USEC), WATCHDOG=1 keeps coming three times a
    period; a reload says RELOADING=1 then READY=1, as Type=notify expects."""
    import os
    import socket
    import tempfile
    import time

    path = os.path.join(tempfile.mkdtemp(prefix="bolt-wd-", dir="/tmp"), "notify")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    sock.settimeout(0.2)
    seen: list[tuple[float, str]] = []

    def drain(seconds: float) -> None:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            try:
                data = sock.recv(4096)
            except TimeoutError:
                continue
            seen.extend((time.monotonic(), line) for line in data.decode().splitlines() if line)

    try:
        a = make_agent(env={"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "900000"})
        drain(3.0)
        states = [s for _, s in seen]
        assert "READY=1" in states, states
        pings = [t for t, s in seen if s == "WATCHDOG=1"]
        assert len(pings) >= 6, states  # every 0.3 s
        assert max(b - a for a, b in zip(pings, pings[1:])) < 0.9, pings
        seen.clear()
        assert a.proc is not None
        a.proc.send_signal(signal.SIGHUP)
        drain(2.0)
        states = [s for _, s in seen if s != "WATCHDOG=1"]
        assert "RELOADING=1" in states and any(s.startswith("MONOTONIC_USEC=") for s in states), states
        assert states.index("READY=1") > states.index("RELOADING=1"), states
        assert any(s.startswith("STATUS=reloaded") for s in states), states
    finally:
        sock.close()
        os.unlink(path)
