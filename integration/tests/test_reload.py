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
