"""Bad input gets the right error and the agent stays healthy. The bad requests
go through raw stubs (the client would refuse some of them itself); the rest
through the client."""

from __future__ import annotations

import subprocess

import grpc
import pytest
from bolt.v1 import bolt_pb2 as pb
from bolt.v1 import bolt_pb2_grpc
from bolt_client import State
from bolt_testing import agent_bin, make_certs
from util import client_for, code_of, execute, files_under, follow, healthy, text

INVALID = grpc.StatusCode.INVALID_ARGUMENT
NOT_FOUND = grpc.StatusCode.NOT_FOUND


def ex(stub, pack="bolt-test", action="echo", **args):
    return lambda: stub.Execute(pb.ExecuteRequest(pack=pack, action=action, args=args), timeout=10)


@pytest.mark.parametrize(
    "pack,action,args,code,needle",
    [
        ("nope", "echo", {"msg": "x"}, NOT_FOUND, 'no pack "nope"'),
        ("bolt-test", "nope", {"msg": "x"}, NOT_FOUND, 'has no action "nope"'),
        ("../bolt-test", "echo", {"msg": "x"}, INVALID, "invalid pack name"),
        ("bolt-test", "../../bin/sh", {}, INVALID, "invalid action name"),
        ("/etc", "passwd", {}, INVALID, "invalid pack name"),
        ("bolt-test", "echo", {}, INVALID, 'missing required argument "msg"'),
        ("bolt-test", "echo", {"msg": "x", "extra": "1"}, INVALID, 'unknown argument "extra"'),
        ("bolt-test", "echo", {"msg": "x", "count": "two"}, INVALID, "not an integer"),
        ("bolt-test", "echo", {"msg": "x", "count": "0"}, INVALID, "below the minimum"),
        ("bolt-test", "echo", {"msg": "x", "count": "1; id"}, INVALID, "not an integer"),
        ("bolt-test", "echo", {"msg": "x", "loud": "yes"}, INVALID, "not true or false"),
        ("bolt-test", "echo", {"msg": "x", "color": "$(id)"}, INVALID, "not one of"),
        ("bolt-test", "sleep", {"ticks": "1", "interval": "1; rm -rf /"}, INVALID, "does not match"),
        ("bolt-test", "sleep", {"ticks": "1", "interval": "`id`"}, INVALID, "does not match"),
        ("bolt-test", "echo", {"msg": "x" * 5000}, INVALID, "max_length"),
        ("bolt-test", "echo", {"msg": "nul\x00byte"}, INVALID, "NUL"),
    ],
)
def test_refused_with_the_right_code(stub, client, pack, action, args, code, needle):
    got, msg = code_of(ex(stub, pack, action, **args))
    assert got == code, msg
    assert needle in msg, msg
    assert healthy(client)


def test_a_10mb_argument_is_refused_naming_the_limit(stub, client):
    got, msg = code_of(ex(stub, msg="x" * (10 * 1024 * 1024)))
    assert got == grpc.StatusCode.RESOURCE_EXHAUSTED, msg
    assert "limits.max_message_bytes" in msg
    assert healthy(client)


def test_a_large_argument_within_the_message_limit_names_the_argument_limit(stub):
    got, msg = code_of(ex(stub, msg="x" * (100 * 1024)))
    assert got == grpc.StatusCode.RESOURCE_EXHAUSTED, msg
    assert "limits.max_arg_bytes" in msg and '"msg"' in msg


def test_a_message_beyond_the_decoding_limit_is_refused(stub, client):
    got, msg = code_of(ex(stub, msg="x" * (5 * 1024 * 1024), other="y" * 10))
    assert got == grpc.StatusCode.RESOURCE_EXHAUSTED, msg
    assert "limits.max_message_bytes" in msg
    assert healthy(client)


def test_bad_execution_ids(stub, client):
    for bad in ["../../etc/passwd", "", "x" * 500, "01a225ce-7fa6-7612-aa06-d13e1477b87e/../.."]:
        got, _ = code_of(lambda: stub.GetExecution(pb.GetExecutionRequest(execution_id=bad)))
        assert got == INVALID
        got, _ = code_of(lambda: list(stub.StreamOutput(pb.StreamOutputRequest(execution_id=bad))))
        assert got == INVALID
        got, _ = code_of(lambda: stub.Kill(pb.KillRequest(execution_id=bad)))
        assert got == INVALID
    unknown = "01a225ce-7fa6-7612-aa06-d13e1477b87e"
    got, _ = code_of(lambda: stub.GetExecution(pb.GetExecutionRequest(execution_id=unknown)))
    assert got == NOT_FOUND
    got, _ = code_of(lambda: list(stub.StreamOutput(pb.StreamOutputRequest(execution_id=unknown))))
    assert got == NOT_FOUND
    assert healthy(client)


def test_injection_strings_harm_nothing(agent, client, tmp_path):
    canary = tmp_path / "canary"
    before = files_under(tmp_path)
    for value in [f"; touch {canary}", f"$(touch {canary})", f"`touch {canary}`", f"\ntouch {canary}\n", f"| touch {canary}"]:
        eid = execute(client, "echo", msg=value)
        chunks, end = follow(client, eid)
        assert end.execution.state is State.SUCCEEDED
        assert f"--msg={value}" in text(chunks)
    assert not canary.exists()
    assert {p for p in files_under(tmp_path) - before if not p.startswith(str(agent.root))} == set()


def _call_health(agent, cert=None, key=None, ca=None):
    creds = grpc.ssl_channel_credentials(
        root_certificates=(ca or agent.ca).read_bytes(),
        private_key=key.read_bytes() if key else None,
        certificate_chain=cert.read_bytes() if cert else None,
    )
    ch = grpc.secure_channel(f"127.0.0.1:{agent.port}", creds)
    try:
        return code_of(lambda: bolt_pb2_grpc.BoltStub(ch).Health(pb.HealthRequest(), timeout=5))
    finally:
        ch.close()


def test_no_client_certificate_is_unauthenticated(agent, client):
    code, msg = _call_health(agent)
    assert code == grpc.StatusCode.UNAUTHENTICATED and "client certificate" in msg
    assert healthy(client)


def test_a_certificate_from_another_ca_is_refused(agent, client, tmp_path):
    other = make_certs(tmp_path / "other")
    code, _ = _call_health(agent, other / "client.crt", other / "client.key")
    assert code == grpc.StatusCode.UNAVAILABLE
    assert "handshake failed" in agent.log()
    assert healthy(client)


def test_an_expired_certificate_is_refused(agent, client):
    subprocess.run([str(agent_bin()), "certs", "issue", "--dir", str(agent.certs), "--name", "old", "--days", "-1"], check=True, capture_output=True)
    code, _ = _call_health(agent, agent.certs / "old.crt", agent.certs / "old.key")
    assert code == grpc.StatusCode.UNAVAILABLE
    from util import wait_until

    # The agent logs the refused handshake just after the client sees it.
    wait_until(lambda: "expired" in agent.log().lower(), 5, "the refused handshake to be logged")
    assert healthy(client)


def test_authorization_rules(make_agent):
    a = make_agent(config="""
[[authz.rules]]
identities = ["bolt-client"]
allow = ["execute", "read", "kill"]
[[authz.rules]]
identities = ["auditor"]
allow = ["read"]
[[authz.rules]]
identities = ["ops-*"]
allow = ["execute", "read"]
packs = ["other-*"]
""")
    for name in ("auditor", "ops-bob"):
        subprocess.run([str(agent_bin()), "certs", "issue", "--dir", str(a.certs), "--name", name], check=True, capture_output=True)
    admin = client_for(a)
    auditor = client_for(a, a.certs / "auditor.crt", a.certs / "auditor.key")
    ops = client_for(a, a.certs / "ops-bob.crt", a.certs / "ops-bob.key")
    eid = execute(admin, "sleep", ticks=50, interval="0.2")
    code, msg = code_of(lambda: execute(auditor, "echo", msg="x"))
    assert code == grpc.StatusCode.PERMISSION_DENIED and '"auditor" may not execute' in msg
    assert auditor.get_execution(eid).caller == "bolt-client"
    code, _ = code_of(lambda: auditor.kill(eid))
    assert code == grpc.StatusCode.PERMISSION_DENIED
    code, _ = code_of(lambda: execute(ops, "echo", msg="x"))
    assert code == grpc.StatusCode.PERMISSION_DENIED
    admin.kill(eid)


def test_a_revoked_certificate_is_refused_and_certificates_reload(make_agent):
    a = make_agent(config='[limits]\ntls_reload_interval = "200ms"\n')
    subprocess.run([str(agent_bin()), "certs", "issue", "--dir", str(a.certs), "--name", "mallory"], check=True, capture_output=True)
    mallory = client_for(a, a.certs / "mallory.crt", a.certs / "mallory.key")
    assert healthy(mallory)
    subprocess.run([str(agent_bin()), "certs", "revoke", "--dir", str(a.certs), "--name", "mallory"], check=True, capture_output=True)
    assert (a.certs / "crl.pem").exists()
    from util import wait_until

    def refused() -> bool:
        try:
            code, _ = _call_health(a, a.certs / "mallory.crt", a.certs / "mallory.key")
        except AssertionError:  # the call succeeded: not reloaded yet
            return False
        return code == grpc.StatusCode.UNAVAILABLE

    wait_until(refused, 10, "the revocation to be loaded")
    assert "TLS certificates reloaded" in a.log()
    # The agent logs the refused handshake just after the client sees it.
    wait_until(lambda: "revoked" in a.log().lower(), 5, "the refused handshake to be logged")
    # Other clients, old and new connections alike, are unaffected.
    assert healthy(client_for(a))
