"""Small helpers for the end-to-end tests, on the Python client (``bolt_client``).

The tests talk to agents as users do, through :class:`bolt_client.BoltClient`
(``client_for``); only tests that send raw or malformed requests on purpose use
the generated stubs (``stub_for``).
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any, Callable, Iterable

import grpc
from bolt.v1 import bolt_pb2_grpc

from bolt_client import BoltClient, BoltError, Execution, OutputChunk, State, Stream, TLSConfig
from bolt_testing import Agent

#: Every final state (an execution in one of them has ended).
FINAL = frozenset(s for s in State if s.is_final)


def tls_for(a: Agent, cert: Path | None = None, key: Path | None = None) -> TLSConfig:
    """The agent's CA and a client identity (bolt-client unless given); the agent
    certificates of ``certs init`` name localhost."""
    return TLSConfig(a.ca, cert or a.client_cert, key or a.client_key, server_name="localhost")


def client_for(a: Agent, cert: Path | None = None, key: Path | None = None) -> BoltClient:
    return BoltClient(f"127.0.0.1:{a.port}", tls=tls_for(a, cert, key), timeout=10)


def stub_for(a: Agent, cert: Path | None = None, key: Path | None = None) -> bolt_pb2_grpc.BoltStub:
    """A raw stub, for requests the client would not send (malformed, hostile)."""
    from conftest import channel_for

    return bolt_pb2_grpc.BoltStub(channel_for(a, cert, key))


def execute(client: BoltClient, action: str, timeout: float | None = None, key: str | None = None, **args: Any) -> str:
    """Starts ``bolt-test/<action>``; returns the execution id."""
    return client.execute("bolt-test", action, args, idempotency_key=key, action_timeout=timeout).execution_id


def get(client: BoltClient, eid: str) -> Execution:
    return client.get_execution(eid)


def wait_until(pred: Callable[[], Any], timeout: float = 20.0, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = pred()
        if v:
            return v
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def wait_state(client: BoltClient, eid: str, states: Iterable[State] = FINAL, timeout: float = 20.0) -> Execution:
    wanted = set(states)

    def check() -> Execution | None:
        e = get(client, eid)
        return e if e.state in wanted else None

    return wait_until(check, timeout, f"{eid} to reach {sorted(s.value for s in wanted)}")


def follow(client: BoltClient, eid: str, offset: int = 0, timeout: float = 30.0) -> tuple[list[OutputChunk], OutputChunk | None]:
    """One following stream from ``offset``: the output chunks and the closing message."""
    chunks, end = [], None
    for c in client.stream_output(eid, offset=offset, follow=True, timeout=timeout):
        if c.end:
            end = c
        else:
            chunks.append(c)
    return chunks, end


def text(chunks: Iterable[OutputChunk], stream: Stream | None = Stream.STDOUT) -> str:
    return b"".join(c.data for c in chunks if stream is None or c.stream is stream).decode()


def pid_alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
        return state not in ("Z", "X")
    except FileNotFoundError:
        return False


def code_of(call: Callable[[], Any]) -> tuple[grpc.StatusCode, str]:
    """The status code and the agent's message of a call that must fail, made
    with the client (a BoltError) or a raw stub (a grpc.RpcError)."""
    try:
        call()
    except BoltError as e:
        assert e.code, f"not a call error: {e!r}"
        return grpc.StatusCode[e.code], e.details
    except grpc.RpcError as e:
        return e.code(), e.details() or ""
    raise AssertionError("the call succeeded")


def healthy(client: BoltClient) -> bool:
    return client.health(timeout=5).ok


def files_under(root: Path) -> set[str]:
    return {str(p) for p in root.rglob("*")} if root.exists() else set()


def env_flag(name: str) -> bool:
    return os.environ.get(name, "") not in ("", "0")


def pid_file(agent: Agent, eid: str, name: str, timeout: float = 10.0) -> int:
    """The pid in an execution's `child.pid` or `supervisor.pid`, once it exists."""
    path = agent.data_dir / "executions" / eid / name
    wait_until(path.exists, timeout, name)
    return int(path.read_text().split()[0])
