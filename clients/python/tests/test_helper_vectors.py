"""The shared helper vectors (integration/scenarios/helpers/fleet-helpers.json):
idempotency keys, strategy names, failure budgets and option names, as the Java
client checks them too. Pure logic, no agent."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import pytest

from bolt_client import ConfigError, FleetOptions, Strategy, allowed_errors, concurrency_limit, idempotency_key

from conftest import SCENARIOS

VECTORS: dict[str, Any] = json.loads((SCENARIOS / "helpers" / "fleet-helpers.json").read_text(encoding="utf-8"))
KEYS = VECTORS["idempotency_key"]
STRATEGIES = VECTORS["strategy"]
BUDGETS = VECTORS["failure_budget"]
OPTIONS = VECTORS["options"]
CONCURRENCY = VECTORS["concurrency"]
EXCERPT = VECTORS["excerpt"]
GROUPS = VECTORS["groups"]
REPORT_OPTIONS = VECTORS["report_options"]


@pytest.mark.parametrize("v", KEYS["vectors"], ids=[v["name"] for v in KEYS["vectors"]])
def test_idempotency_key(v: dict[str, Any]) -> None:
    key = idempotency_key(v["run_id"], v["instance_id"])
    assert key == v["key"]
    assert len(key.encode()) <= KEYS["max_bytes"]


def test_idempotency_keys_of_the_vectors_are_distinct() -> None:
    keys = [v["key"] for v in KEYS["vectors"]]
    assert len(set(keys)) == len(keys)


@pytest.mark.parametrize("run_id", KEYS["rejected_run_ids"])
def test_idempotency_key_rejects_run_id(run_id: str) -> None:
    with pytest.raises(ConfigError, match="run id"):
        idempotency_key(run_id, "i-1")


@pytest.mark.parametrize("name,canonical", STRATEGIES["accepted"].items())
def test_strategy_accepted(name: str, canonical: str) -> None:
    assert Strategy.parse(name).value == canonical
    assert FleetOptions(strategy=name).strategy.value == canonical  # type: ignore[arg-type]


@pytest.mark.parametrize("name", STRATEGIES["rejected"])
def test_strategy_rejected(name: str) -> None:
    with pytest.raises(ConfigError, match="unknown strategy"):
        Strategy.parse(name)


def test_every_strategy_has_a_vector() -> None:
    assert {s.value for s in Strategy} == set(STRATEGIES["accepted"].values())


@pytest.mark.parametrize(
    "v", BUDGETS["vectors"], ids=[f"{v['max_errors']!r} of {v['instances']}" for v in BUDGETS["vectors"]]
)
def test_failure_budget(v: dict[str, Any]) -> None:
    assert allowed_errors(v["max_errors"], v["instances"]) == v["allowed"]


@pytest.mark.parametrize("budget", BUDGETS["rejected"], ids=repr)
def test_failure_budget_rejected(budget: int | str) -> None:
    with pytest.raises(ConfigError):
        allowed_errors(budget, 10)
    with pytest.raises(ConfigError):
        FleetOptions(max_errors=budget)


def _plain(v: Any) -> Any:
    return v.value if isinstance(v, Strategy) else v


def test_option_names_and_defaults() -> None:
    fields = {f.name for f in dataclasses.fields(FleetOptions)}
    expected = {o["name"]: o["default"] for o in OPTIONS["vectors"]}
    assert fields == set(expected), "FleetOptions has exactly the shared option names"
    defaults = FleetOptions()
    for name, default in expected.items():
        assert _plain(getattr(defaults, name)) == default, name


@pytest.mark.parametrize("n", OPTIONS["rejected_max_concurrency"])
def test_max_concurrency_rejected(n: int) -> None:
    with pytest.raises(ConfigError, match="max_concurrency"):
        FleetOptions(max_concurrency=n)


@pytest.mark.parametrize("old,new", OPTIONS["deprecated"]["python"].items())
def test_deprecated_option_names_still_work(old: str, new: str) -> None:
    with pytest.deprecated_call():
        opts = FleetOptions(**{old: 42})  # type: ignore[arg-type]
    assert getattr(opts, new) == 42


@pytest.mark.parametrize(
    "v", CONCURRENCY["vectors"], ids=[f"{v['max_concurrency']!r}-of-{v['group_size']}" for v in CONCURRENCY["vectors"]]
)
def test_concurrency_limit(v: dict[str, Any]) -> None:
    assert concurrency_limit(v["max_concurrency"], v["group_size"]) == v["limit"]
    assert FleetOptions(strategy=Strategy.PARALLEL, max_concurrency=v["max_concurrency"]).max_concurrency == v["max_concurrency"]


@pytest.mark.parametrize("spec", CONCURRENCY["rejected"], ids=[repr(s) for s in CONCURRENCY["rejected"]])
def test_concurrency_limit_rejects(spec: Any) -> None:
    with pytest.raises(ConfigError, match="max_concurrency"):
        concurrency_limit(spec, 10)
    with pytest.raises(ConfigError, match="max_concurrency"):
        FleetOptions(max_concurrency=spec)


@pytest.mark.parametrize("v", EXCERPT["vectors"], ids=[v["name"] for v in EXCERPT["vectors"]])
def test_output_excerpt(v: dict[str, Any]) -> None:
    from bolt_client._fleet import EXCERPT_MARK, _Excerpt

    assert EXCERPT_MARK == EXCERPT["mark"]
    e = _Excerpt(v["limit"])
    for chunk in v["chunks"]:
        e.add(chunk.encode())
    assert e.text() == v["text"]


@pytest.mark.parametrize("v", GROUPS["vectors"], ids=[v["strategy"] for v in GROUPS["vectors"]])
def test_groups_and_their_labels(v: dict[str, Any]) -> None:
    from bolt_client import Instance, plan_groups
    from bolt_client._fleet import UNKNOWN_GROUP

    assert UNKNOWN_GROUP == GROUPS["unknown_label"]
    inventory = [Instance(i["id"], f"h-{i['id']}", availability_zone=i["availability_zone"], region=i["region"])
                 for i in GROUPS["instances"]]
    got = [{"label": label, "members": [i.id for i in members]} for label, members in plan_groups(inventory, v["strategy"])]
    assert got == v["groups"]


@pytest.mark.parametrize("option", ["max_errors", "max_concurrency"])
def test_report_json_has_the_options_as_understood(option: str) -> None:
    from bolt_client import FleetReport

    for v in REPORT_OPTIONS[option]:
        opts = FleetOptions(strategy=Strategy.PARALLEL, **{option: v[option]})
        report = FleetReport("run-1", "p", "a", opts, [], False, 0, 0, 0.0)
        assert report.to_dict()[option] == v["json"], v
