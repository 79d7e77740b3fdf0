"""Small helpers for the end-to-end tests."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any, Callable, Iterable

import grpc
from bolt.v1 import bolt_pb2 as pb
from bolt.v1 import bolt_pb2_grpc

from bolt_testing import Agent

TERMINAL = {pb.STATE_SUCCEEDED, pb.STATE_FAILED, pb.STATE_TIMED_OUT, pb.STATE_KILLED, pb.STATE_OOM_KILLED, pb.STATE_LOST}


def stub_for(a: Agent, cert: Path | None = None, key: Path | None = None) -> bolt_pb2_grpc.BoltStub:
    from conftest import channel_for

    return bolt_pb2_grpc.BoltStub(channel_for(a, cert, key))


def execute(stub: bolt_pb2_grpc.BoltStub, action: str, timeout: float | None = None, key: str = "", **args: Any) -> str:
    req = pb.ExecuteRequest(pack="bolt-test", action=action, args={k: str(v) for k, v in args.items()}, idempotency_key=key)
    if timeout is not None:
        req.timeout.FromMilliseconds(int(timeout * 1000))
    return stub.Execute(req, timeout=10).execution_id


def get(stub: bolt_pb2_grpc.BoltStub, eid: str) -> pb.Execution:
    return stub.GetExecution(pb.GetExecutionRequest(execution_id=eid), timeout=10)


def wait_until(pred: Callable[[], Any], timeout: float = 20.0, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = pred()
        if v:
            return v
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def wait_state(stub: bolt_pb2_grpc.BoltStub, eid: str, states: Iterable[int] = TERMINAL, timeout: float = 20.0) -> pb.Execution:
    states = set(states)

    def check() -> pb.Execution | None:
        e = get(stub, eid)
        return e if e.state in states else None

    return wait_until(check, timeout, f"{eid} to reach {states}")


def follow(stub: bolt_pb2_grpc.BoltStub, eid: str, offset: int = 0, timeout: float = 30.0) -> tuple[list[pb.OutputChunk], pb.OutputChunk | None]:
    chunks, end = [], None
    for c in stub.StreamOutput(pb.StreamOutputRequest(execution_id=eid, offset=offset, follow=True), timeout=timeout):
        if c.end:
            end = c
        else:
            chunks.append(c)
    return chunks, end


def text(chunks: Iterable[pb.OutputChunk], stream: int | None = pb.STREAM_STDOUT) -> str:
    return b"".join(c.data for c in chunks if stream is None or c.stream == stream).decode()


def pid_alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
        return state not in ("Z", "X")
    except FileNotFoundError:
        return False


def code_of(call: Callable[[], Any]) -> tuple[grpc.StatusCode, str]:
    try:
        call()
    except grpc.RpcError as e:
        return e.code(), e.details() or ""
    raise AssertionError("the call succeeded")


def healthy(stub: bolt_pb2_grpc.BoltStub) -> bool:
    return stub.Health(pb.HealthRequest(), timeout=5).status in (pb.SERVING_STATUS_SERVING, pb.SERVING_STATUS_DEGRADED)


def files_under(root: Path) -> set[str]:
    return {str(p) for p in root.rglob("*")} if root.exists() else set()


def env_flag(name: str) -> bool:
    return os.environ.get(name, "") not in ("", "0")


def pid_file(agent: Agent, eid: str, name: str, timeout: float = 10.0) -> int:
    """The pid in an execution's `child.pid` or `supervisor.pid`, once it exists."""
    path = agent.data_dir / "executions" / eid / name
    wait_until(path.exists, timeout, name)
    return int(path.read_text().split()[0])
