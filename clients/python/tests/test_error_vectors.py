"""The shared error vectors (integration/scenarios/helpers/errors.json): one status →
exception map, the same in the Java client. Pure logic, no agent."""

from __future__ import annotations

import json
from typing import Any

import grpc
import pytest

import bolt_client
from bolt_client import BoltError, TLSError, from_rpc_error
from bolt_client._exceptions import is_retryable, tls_error

from conftest import SCENARIOS

ERRORS: dict[str, Any] = json.loads((SCENARIOS / "helpers" / "errors.json").read_text(encoding="utf-8"))


class StatusError(grpc.RpcError):
    """What grpcio raises for a finished call: an RpcError with code() and details()."""

    def __init__(self, code: grpc.StatusCode, details: str) -> None:
        self._code, self._details = code, details

    def code(self) -> grpc.StatusCode:
        return self._code

    def details(self) -> str:
        return self._details


@pytest.mark.parametrize("v", ERRORS["vectors"], ids=[f"{v['code']}-{v['target']}" for v in ERRORS["vectors"]])
def test_status_maps_to_the_shared_exception(v: dict[str, Any]) -> None:
    err = from_rpc_error(StatusError(grpc.StatusCode[v["code"]], v["details"]), target=v["target"], method=v["method"])
    assert type(err).__name__ == v["python"]
    assert type(err) is getattr(bolt_client, v["python"])
    assert isinstance(err, getattr(bolt_client, ERRORS["families"][v["family"]]["python"]))
    assert isinstance(err, getattr(bolt_client, ERRORS["base"]["python"]))
    assert (err.code, err.target, err.method, err.details) == (v["code"], v["target"], v["method"], v["details"])
    assert str(err) == v["message"]
    assert is_retryable(err) is v["retryable"]
    assert not isinstance(err, TLSError)  # words in an address or a message never make a TLS error


def test_every_status_code_has_a_vector() -> None:
    codes = {v["code"] for v in ERRORS["vectors"]}
    assert codes == {c.name for c in grpc.StatusCode if c is not grpc.StatusCode.OK}


def test_tls_error_class_and_retry() -> None:
    t = ERRORS["tls"]
    err = tls_error("a:1", "Health", "the agent's certificate failed verification: unable to get local issuer certificate")
    assert type(err).__name__ == t["python"] and isinstance(err, getattr(bolt_client, t["parent"]["python"]))
    assert is_retryable(err) is t["retryable"] and isinstance(err, BoltError)
    assert str(err).startswith("a:1: Health failed: TLS handshake failed: the agent's certificate failed verification")
