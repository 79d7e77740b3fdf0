"""Pure logic: strategies, budgets, targets, configuration precedence, the status map."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bolt_client import (
    Config, ConfigError, FleetOptions, Instance, State, Strategy, allowed_errors, parse_action_ref, plan_groups,
)
from bolt_client._config import normalize_target

FLEET = [
    Instance("a1", "h1", availability_zone="us-east-1a", region="us-east-1"),
    Instance("b1", "h2", availability_zone="us-east-1b", region="us-east-1"),
    Instance("w1", "h3", availability_zone="us-west-2a", region="us-west-2"),
    Instance("a2", "h4", availability_zone="us-east-1a", region="us-east-1"),
]


def ids(groups: list[tuple[str, list[Instance]]]) -> list[tuple[str, list[str]]]:
    return [(label, [i.id for i in members]) for label, members in groups]


def test_plan_groups_per_strategy() -> None:
    assert ids(plan_groups(FLEET, "one-at-a-time")) == [("a1", ["a1"]), ("b1", ["b1"]), ("w1", ["w1"]), ("a2", ["a2"])]
    assert ids(plan_groups(FLEET, "az")) == [
        ("us-east-1a", ["a1", "a2"]), ("us-east-1b", ["b1"]), ("us-west-2a", ["w1"]),
    ]
    assert ids(plan_groups(FLEET, Strategy.REGION)) == [("us-east-1", ["a1", "b1", "a2"]), ("us-west-2", ["w1"])]
    assert ids(plan_groups(FLEET, "parallel")) == [("all", ["a1", "b1", "w1", "a2"])]
    assert plan_groups([], "parallel") == []


def test_strategy_aliases_and_errors() -> None:
    assert Strategy.parse("serial") is Strategy.ONE_AT_A_TIME
    assert Strategy.parse("ONE_AT_A_TIME") is Strategy.ONE_AT_A_TIME
    assert Strategy.parse("all") is Strategy.PARALLEL
    with pytest.raises(ConfigError, match="unknown strategy"):
        Strategy.parse("random")
    assert FleetOptions(strategy="az").strategy is Strategy.AZ  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "budget,total,allowed",
    [(0, 10, 0), (3, 10, 3), ("3", 10, 3), ("25%", 4, 1), ("10%", 9, 0), ("10%", 10, 1), ("100%", 7, 7), ("33%", 100, 33)],
)
def test_allowed_errors(budget: int | str, total: int, allowed: int) -> None:
    assert allowed_errors(budget, total) == allowed


@pytest.mark.parametrize("bad", [-1, "x", "150%", "-5%"])
def test_bad_budgets(bad: int | str) -> None:
    with pytest.raises(ConfigError):
        allowed_errors(bad, 10)
    with pytest.raises(ConfigError):
        FleetOptions(max_errors=bad)


def test_normalize_target() -> None:
    assert normalize_target("10.0.0.7") == "10.0.0.7:7443"
    assert normalize_target("host:9000") == "host:9000"
    assert normalize_target("[::1]:9000") == "[::1]:9000"
    assert normalize_target("::1") == "[::1]:7443"
    with pytest.raises(ConfigError):
        normalize_target("host:abc")


def test_parse_action_ref() -> None:
    assert parse_action_ref("bolt-test/echo") == ("bolt-test", "echo")
    for bad in ("echo", "/echo", "a/b/c", "pack/"):
        with pytest.raises(ValueError):
            parse_action_ref(bad)


def test_state_finality() -> None:
    assert not State.RUNNING.is_final and not State.PENDING.is_final
    assert all(s.is_final for s in (State.SUCCEEDED, State.FAILED, State.TIMED_OUT, State.KILLED, State.OOM_KILLED, State.LOST))


def test_config_precedence(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = tmp_path / "bolt.yaml"
    cfg.write_text("ca: certs/ca.crt\ncert: /abs/client.crt\nkey: k.key\ntimeout: 4\nport: 9443\n")
    monkeypatch.delenv("BOLT_CA", raising=False)
    monkeypatch.delenv("BOLT_CERT", raising=False)
    monkeypatch.setenv("BOLT_KEY", "/env/key.pem")
    c = Config.load(cert="/flag/c.crt", config_file=cfg)
    assert c.ca == str(tmp_path / "certs" / "ca.crt")  # file, relative to the file
    assert c.cert == "/flag/c.crt"  # flag beats file
    assert c.key == "/env/key.pem"  # env beats file
    assert c.timeout == 4.0 and c.port == 9443
    monkeypatch.setenv("BOLT_CLIENT_CONFIG", str(cfg))
    assert Config.load().ca == str(tmp_path / "certs" / "ca.crt")


def test_the_agents_bolt_config_does_not_reach_the_client(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    agent_toml = tmp_path / "agent.toml"
    agent_toml.write_text('listen = "127.0.0.1:7443"\n[exec]\nnice = 2\n')
    monkeypatch.setenv("BOLT_CONFIG", str(agent_toml))
    monkeypatch.delenv("BOLT_CLIENT_CONFIG", raising=False)
    monkeypatch.delenv("BOLT_CA", raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "empty"))
    c = Config.load()  # the agent's TOML is neither read nor an error
    assert c.port == 7443 and c.ca is None


def test_missing_tls_material_is_a_clear_config_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for v in ("BOLT_CA", "BOLT_CERT", "BOLT_KEY"):
        monkeypatch.delenv(v, raising=False)
    monkeypatch.setenv("BOLT_CLIENT_CONFIG", str(tmp_path / "none.yaml"))
    with pytest.raises(ConfigError, match=r"ca \(--ca or BOLT_CA\)"):
        Config.load().tls()
    from bolt_client import BoltClient

    with pytest.raises(ConfigError, match="cannot read CA certificate"):
        BoltClient("localhost", ca=tmp_path / "nope.crt", cert=tmp_path / "c", key=tmp_path / "k")


def test_instance_from_dict_and_round_trip() -> None:
    i = Instance.from_dict({"id": "i-1", "address": "10.0.0.1:7443", "az": "eu-west-1b", "app": "kafka"})
    assert i.region == "eu-west-1" and i.availability_zone == "eu-west-1b"
    assert Instance.from_dict(json.loads(json.dumps(i.to_dict()))) == i


def test_trace_metadata_carries_the_current_span_only() -> None:
    from opentelemetry.sdk.trace import TracerProvider

    from bolt_client._tracing import trace_metadata

    assert trace_metadata() is None, "no span, no traceparent"
    tracer = TracerProvider().get_tracer("test")
    with tracer.start_as_current_span("outer") as span:
        md = dict(trace_metadata() or [])
        ctx = span.get_span_context()
    version, trace_id, span_id, flags = md["traceparent"].split("-")
    assert version == "00" and int(flags, 16) & 1, "sampled"
    assert trace_id == format(ctx.trace_id, "032x") and span_id == format(ctx.span_id, "016x")
