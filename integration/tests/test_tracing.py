"""Traces and metrics over OTLP: a receiver built on the published OTLP
protobuf definitions (the opentelemetry-proto package) gets the agent's spans
and metrics; an Execute that carries a W3C traceparent is continued."""

from __future__ import annotations

import secrets
from typing import Any, Callable, Iterator

import pytest
from bolt.v1 import bolt_pb2 as pb

from bolt_client import State
from bolt_testing import Agent
from bolt_testing.otlp import OtlpReceiver
from util import client_for, stub_for, wait_state, wait_until


@pytest.fixture
def receiver() -> Iterator[tuple[OtlpOtlpReceiver, int]]:
    with OtlpReceiver() as r:
        yield r, r.port


def test_an_execute_with_a_traceparent_is_continued_by_the_agent(
    make_agent: Callable[..., Agent], receiver: tuple[OtlpReceiver, int]
) -> None:
    r, port = receiver
    a = make_agent(
        config=f'[telemetry]\notlp_endpoint = "http://127.0.0.1:{port}"\notlp_interval = "500ms"\n'
        '[instance]\nid = "traced-agent"\n'
        # Quiet logs must not silence the traces.
        '[log]\nlevel = "warn"\n'
    )
    # Raw: a traceparent written by hand (the client sends OpenTelemetry's, below).
    s = stub_for(a)
    trace_id = secrets.token_hex(16)
    parent_span = secrets.token_hex(8)
    md = [("traceparent", f"00-{trace_id}-{parent_span}-01")]
    eid = s.Execute(pb.ExecuteRequest(pack="bolt-test", action="noop"), timeout=10, metadata=md).execution_id
    with client_for(a) as c:
        assert wait_state(c, eid).state is State.SUCCEEDED
        # Another call without a traceparent starts a trace of its own.
        c.health()

    def ours() -> list[Any]:
        with r.lock:
            got = [sp for sp in r.spans if sp.trace_id.hex() == trace_id]
        names = {sp.name for sp in got}
        return got if {"bolt.v1.Bolt/Execute", "execution", "validate", "start", "run", "end"} <= names else []

    spans = wait_until(ours, 30, "the agent's spans under the caller's trace id")
    by_name = {sp.name: sp for sp in spans}
    rpc = by_name["bolt.v1.Bolt/Execute"]
    assert rpc.parent_span_id.hex() == parent_span, "the RPC span is a child of the caller's span"
    assert rpc.kind == 2  # SPAN_KIND_SERVER
    ids = {sp.span_id for sp in spans}
    for name in ("execution", "validate", "start", "run", "end"):
        assert by_name[name].parent_span_id in ids, f"{name} hangs under the Execute's trace"
    with r.lock:
        others = {sp.trace_id.hex() for sp in r.spans if sp.name == "bolt.v1.Bolt/Health"}
        resources = list(r.resources)
    assert others and trace_id not in others
    assert any(res.get("service.name") == "bolt-agent" and res.get("service.instance.id") == "traced-agent" for res in resources)

    def metrics() -> bool:
        with r.lock:
            return {"bolt_executions_started", "bolt_executions_finished", "bolt_rpc_duration", "bolt_agent_resident_memory"} <= r.metric_names

    wait_until(metrics, 30, "the agent's metrics over OTLP")


def test_the_python_client_sends_the_current_trace(
    make_agent: Callable[..., Agent], receiver: tuple[OtlpReceiver, int]
) -> None:
    from opentelemetry import trace
    from opentelemetry.sdk.trace import TracerProvider

    from bolt_client import BoltClient

    r, port = receiver
    a = make_agent(config=f'[telemetry]\notlp_endpoint = "http://127.0.0.1:{port}"\notlp_interval = "500ms"\n')
    provider = TracerProvider()
    tracer = provider.get_tracer("orchestrator")
    with BoltClient(f"127.0.0.1:{a.port}", ca=a.ca, cert=a.client_cert, key=a.client_key, server_name="localhost") as c:
        with tracer.start_as_current_span("remediate") as span:
            result = c.run("bolt-test", "noop")
            ctx = span.get_span_context()
    assert result.execution.state.name == "SUCCEEDED"
    trace_id = format(ctx.trace_id, "032x")

    def joined() -> bool:
        with r.lock:
            return any(sp.trace_id.hex() == trace_id and sp.name == "bolt.v1.Bolt/Execute" for sp in r.spans)

    wait_until(joined, 30, "the agent's Execute span in the orchestrator's trace")
    assert trace.get_current_span().get_span_context().is_valid is False
