"""BoltClient (blocking) against a real agent over real mTLS."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from bolt_client import (
    AlreadyExistsError, BoltClient, DeadlineExceededError, OutputChunk, InvalidArgumentError, NotFoundError, ParamType, ServingStatus, State, Stream,
    TLSConfig, TLSError, TransportError, UnavailableError,
)

from bolt_testing import Agent
from conftest import AgentFactory, free_port, make_certs


def test_list_actions(client: BoltClient) -> None:
    actions = {a.ref: a for a in client.list_actions()}
    assert {"bolt-test/echo", "bolt-test/sleep", "bolt-test/scenario"} <= set(actions)
    echo = actions["bolt-test/echo"]
    assert echo.read_only and echo.timeout is not None and echo.timeout.total_seconds() == 60
    params = {p.name: p for p in echo.params}
    assert params["msg"].required and params["msg"].type is ParamType.STRING and params["msg"].max_length == 4096
    assert params["count"].type is ParamType.INT and params["count"].min == 1 and params["count"].max == 100
    assert params["count"].default == "1"
    assert params["color"].type is ParamType.ENUM and params["color"].values == ("red", "green", "blue")
    assert [a.name for a in client.list_actions("bolt-test")] and client.list_actions("nope") == []


def test_run_streams_output_and_returns_the_final_record(client: BoltClient) -> None:
    seen: list[OutputChunk] = []
    r = client.run("bolt-test", "echo", {"msg": "hello world", "count": 2, "loud": True}, on_output=seen.append)
    assert r.state is State.SUCCEEDED and r.exit_code == 0
    out = r.stdout.decode()
    assert "--msg=hello world" in out and "--count=2" in out and "BOLT_ARG_LOUD=true" in out
    assert f"BOLT_EXECUTION_ID={r.execution.execution_id}" in out
    assert seen == r.chunks and all(c.stream is Stream.STDOUT for c in seen)
    e = r.execution
    assert e.caller == "bolt-client" and e.pack == "bolt-test" and e.action == "echo"
    assert e.args["msg"] == "hello world" and e.args["count"] == "2"
    assert e.created_at and e.started_at and e.ended_at and e.duration is not None
    # offsets are contiguous
    off = 0
    for c in r.chunks:
        assert c.offset == off
        off += len(c.data)


def test_execute_then_get_execution_and_wait(client: BoltClient) -> None:
    started = client.execute("bolt-test", "sleep", {"ticks": 2, "interval": "0.2"})
    assert started.state in (State.PENDING, State.RUNNING) and not started.deduplicated
    assert started.idempotency_key  # generated when not given
    e = client.get_execution(started.execution_id)
    assert e.state in (State.PENDING, State.RUNNING) and not e.done
    final = client.wait(started.execution_id, timeout=20)
    assert final.state is State.SUCCEEDED and final.done
    assert client.get_execution(started.execution_id).ended_at == final.ended_at


def test_tail_is_live(client: BoltClient) -> None:
    started = client.execute("bolt-test", "sleep", {"ticks": 3, "interval": "0.4"})
    t0 = time.monotonic()
    arrivals = []
    final = None
    for c in client.tail(started.execution_id):
        if c.end:
            final = c.execution
            break
        arrivals.append((time.monotonic() - t0, c.text))
    assert final is not None and final.state is State.SUCCEEDED
    text = "".join(t for _, t in arrivals)
    assert "tick 1" in text and "tick 3" in text
    # the first tick arrived well before the end: streamed, not buffered
    assert arrivals[0][0] < arrivals[-1][0] - 0.5
    # tail from an offset after the end replays the rest
    first = arrivals[0][1].encode()
    rest = [c for c in client.tail(started.execution_id, offset=len(first)) if not c.end]
    assert b"".join(c.data for c in rest) == text.encode()[len(first):]


def test_a_following_stream_ends_at_its_timeout(client: BoltClient) -> None:
    s = client.execute("bolt-test", "sleep", {"ticks": 600, "interval": "0.1"})
    t0 = time.monotonic()
    got: list[OutputChunk] = []
    with pytest.raises(DeadlineExceededError):
        for c in client.stream_output(s.execution_id, follow=True, timeout=0.8):
            got.append(c)
    assert 0.7 < time.monotonic() - t0 < 5
    assert got and not any(c.end for c in got), "chunks arrived until the deadline"
    client.kill(s.execution_id)


def test_failed_action_reports_exit_code_and_stderr(client: BoltClient) -> None:
    r = client.run("bolt-test", "fail", {"code": 3})
    assert r.state is State.FAILED and r.exit_code == 3 and r.stderr


def test_idempotent_execute_returns_the_first_execution(client: BoltClient) -> None:
    a = client.execute("bolt-test", "echo", {"msg": "once"}, idempotency_key="test-key-1")
    b = client.execute("bolt-test", "echo", {"msg": "once"}, idempotency_key="test-key-1")
    assert b.execution_id == a.execution_id and b.deduplicated
    with pytest.raises(AlreadyExistsError):
        client.execute("bolt-test", "echo", {"msg": "other"}, idempotency_key="test-key-1")


def test_errors_map_to_the_hierarchy(client: BoltClient) -> None:
    with pytest.raises(NotFoundError) as e1:
        client.execute("bolt-test", "no-such-action")
    assert e1.value.code == "NOT_FOUND" and e1.value.method == "Execute"
    with pytest.raises(InvalidArgumentError):
        client.execute("bolt-test", "echo", {"msg": "x", "color": "purple"})
    with pytest.raises(InvalidArgumentError):
        client.execute("bolt-test", "echo", {})  # msg is required
    with pytest.raises(NotFoundError):
        client.get_execution("0190c1c8-0000-7000-8000-000000000000")


def test_kill_ends_a_running_execution(client: BoltClient) -> None:
    s = client.execute("bolt-test", "sleep", {"ticks": 600, "interval": "0.1"})
    time.sleep(0.3)
    k = client.kill(s.execution_id, grace=1)
    assert not k.already_ended
    final = client.wait(s.execution_id, timeout=15)
    assert final.state is State.KILLED and final.killed_by == "bolt-client"
    assert client.kill(s.execution_id).already_ended


def test_history_filters_and_pages(client: BoltClient) -> None:
    ids = [client.run("bolt-test", "fail", {"code": 0}).execution.execution_id for _ in range(3)]
    page = client.list_executions(page_size=2, action="fail")
    assert len(page.executions) == 2 and page.next_page_token
    got = [e.execution_id for e in client.iter_executions(action="fail", page_size=2)]
    assert got[:3] == list(reversed(ids))  # newest first
    failed = list(client.iter_executions(states=[State.FAILED], limit=50))
    assert all(e.state is State.FAILED for e in failed)
    assert list(client.iter_executions(limit=1))


def test_health_and_agent_info(client: BoltClient) -> None:
    h = client.health()
    assert h.status in (ServingStatus.SERVING, ServingStatus.DEGRADED) and h.ok
    info = client.agent_info()
    assert info.instance.instance_id == "i-shared" and info.instance.availability_zone == "us-east-1a"
    assert info.instance.region == "us-east-1" and info.instance.app == "kafka" and info.instance.stage == "prod"
    assert any(p.name == "bolt-test" and p.origin == "local" for p in info.packs) and info.version
    assert not info.pack_sync.enabled and info.pack_sync.last_error == ""  # no [sync] configured


def test_reattach_after_agent_restart(agents: AgentFactory, tls: TLSConfig) -> None:
    a = agents("i-restart")
    with BoltClient(a.address, tls=tls) as c:
        s = c.execute("bolt-test", "sleep", {"ticks": 8, "interval": "0.25"})
        chunks: list[OutputChunk] = []

        def follow() -> None:
            chunks.extend(c.tail(s.execution_id))

        t = threading.Thread(target=follow)
        t.start()
        time.sleep(0.6)
        a.restart()  # same port; tail reconnects and resumes from its last offset
        t.join(30)
        assert not t.is_alive()
    assert chunks[-1].end and chunks[-1].execution is not None
    assert chunks[-1].execution.state is State.SUCCEEDED
    text = b"".join(c.data for c in chunks).decode()
    assert [ln for ln in text.splitlines() if ln.startswith("tick")] == [f"tick {i}" for i in range(1, 9)]


def test_down_agent_is_unavailable_after_retries(tls: TLSConfig) -> None:
    with BoltClient(f"127.0.0.1:{free_port()}", tls=tls, timeout=3) as c:
        t0 = time.monotonic()
        with pytest.raises(UnavailableError) as e:
            c.health()
        assert not isinstance(e.value, TLSError) and isinstance(e.value, TransportError)
        assert time.monotonic() - t0 < 5


def test_mtls_wrong_ca_is_a_clear_tls_error(agent: Agent, tmp_path: Path, certs: Path) -> None:
    other = make_certs(tmp_path / "other")
    addr = agent.address
    # The agent's certificate is not signed by the CA we trust.
    with BoltClient(addr, ca=other / "ca.crt", cert=certs / "client.crt", key=certs / "client.key", timeout=5) as c:
        t0 = time.monotonic()
        with pytest.raises(TLSError, match="TLS handshake failed: the agent's certificate failed verification") as e:
            c.health()
        assert time.monotonic() - t0 < 2  # never retried
        assert str(e.value).startswith(f"{c.target}: Health failed:") and "\n" not in str(e.value)
    # Our client certificate is not signed by the CA the agent trusts.
    with BoltClient(addr, ca=certs / "ca.crt", cert=other / "client.crt", key=other / "client.key", timeout=5) as c:
        with pytest.raises(TLSError, match="TLS handshake failed: TLS refused") as e:
            c.health()
        assert e.value.target == c.target and e.value.method == "Health"


def test_connection_failures_are_told_by_type_not_by_words(tls: TLSConfig) -> None:
    # An agent whose name holds "tls", "handshake", "alert" and "ssl" is still only unreachable.
    with BoltClient("tls-handshake-alert.ssl.example:7443", tls=tls, timeout=3) as c:
        with pytest.raises(UnavailableError, match="cannot resolve host name") as e:
            c.health()
        assert not isinstance(e.value, TLSError)
        assert str(e.value).startswith("tls-handshake-alert.ssl.example:7443: Health failed: UNAVAILABLE:")
    port = free_port()
    with BoltClient(f"127.0.0.1:{port}", tls=tls, timeout=3) as c:
        with pytest.raises(UnavailableError, match="connection refused") as e:
            c.list_actions()
        assert not isinstance(e.value, TLSError) and e.value.details.startswith("connection refused")


def test_closed_client_refuses_calls(agent: Agent, tls: TLSConfig) -> None:
    c = BoltClient(agent.address, tls=tls)
    c.close()
    with pytest.raises(RuntimeError, match="closed"):
        c.health()


def test_execute_can_name_a_dev_build(client: BoltClient) -> None:
    # The default identity may not run dev builds: the agent read the field
    # and refused it on authorization, before fetching anything.
    from bolt_client import DevBuild, PermissionDeniedError

    with pytest.raises(PermissionDeniedError, match="may not dev"):
        client.execute("bolt-test", "echo", {"message": "x"}, dev_build=DevBuild(version="1.0.0"))


def test_refused_fields_are_named_in_structured_details(client: BoltClient) -> None:
    from bolt_client import FieldViolation, InvalidArgumentError

    with pytest.raises(InvalidArgumentError) as e:
        client.execute("bolt-test", "echo", {"msg": "x", "count": "many"})
    assert [v.field for v in e.value.field_violations] == ["args.count"], e.value.field_violations
    assert "count" in e.value.field_violations[0].description
    with pytest.raises(InvalidArgumentError) as e:
        client.execute("bolt-test", "echo", {"msg": "x", "nope": "1"})
    assert e.value.field_violations == (FieldViolation("args.nope", e.value.details),)
    with pytest.raises(InvalidArgumentError) as e:
        client.execute("Bad_Pack", "echo", {})
    assert [v.field for v in e.value.field_violations] == ["pack"]
    with pytest.raises(InvalidArgumentError) as e:
        client.get_execution("not-an-id")
    assert [v.field for v in e.value.field_violations] == ["execution_id"]
    with pytest.raises(NotFoundError) as nf:
        client.execute("no-such-pack", "echo", {})
    assert nf.value.field_violations == ()  # not about a field: nothing to point at


def test_grpc_retries_a_call_while_the_agent_restarts(agents: AgentFactory, tls: TLSConfig) -> None:
    """Unary calls are retried by gRPC itself (the channel's service config): a
    Health sent while the agent is down succeeds once it is back, and the same
    call with retries off fails."""
    from bolt_client import RetryPolicy

    a = agents("i-retry")
    addr = a.address
    patient = RetryPolicy(attempts=5, initial_backoff=1.0, max_backoff=3.0)
    with BoltClient(addr, tls=tls, timeout=20, retry=patient) as c, \
            BoltClient(addr, tls=tls, timeout=20, retry=RetryPolicy(attempts=1)) as once:
        assert c.health().ok and once.health().ok
        a.stop()
        with pytest.raises(UnavailableError, match="connection refused"):
            once.health()
        restart = threading.Timer(0.3, lambda: a.start(listen=addr))
        restart.start()
        try:
            assert c.health().ok  # retried by gRPC until the agent serves again
        finally:
            restart.join()
