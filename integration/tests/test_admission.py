"""Admission caps: executions at once per pack, output streams and connections
per identity. Beyond a cap the call gets RESOURCE_EXHAUSTED at once, with a
message naming the setting, and the agent stays healthy."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path
from typing import Callable, Iterator

import grpc
import pytest
from bolt.v1 import bolt_pb2 as pb
from bolt.v1 import bolt_pb2_grpc

from bolt_client import BoltClient, BoltError, OutputChunk
from bolt_testing import TEST_PACKS, Agent, agent_bin
from util import client_for, code_of, execute, healthy, wait_state


def status_of(call: Callable[[], object]) -> grpc.StatusCode:
    try:
        call()
    except BoltError as e:
        return grpc.StatusCode[e.code]
    except grpc.RpcError as e:
        return e.code()
    return grpc.StatusCode.OK


def second_pack(root: Path) -> Path:
    d = root / "other"
    d.mkdir()
    (d / "pack.toml").write_text('name = "other"\n[[actions]]\nname = "nap"\nentrypoint = "nap.sh"\n')
    (d / "nap.sh").write_text("#!/bin/sh\nsleep 30\n")
    (d / "nap.sh").chmod(0o755)
    return d


def test_running_executions_are_capped_per_pack(tmp_path: Path, make_agent: Callable[..., Agent]) -> None:
    a = make_agent(
        config='[limits]\nmax_running_per_pack = 2\n[exec]\nkill_grace = "1s"\n',
        packs=[TEST_PACKS / "bolt-test", second_pack(tmp_path)],
    )
    s = client_for(a)
    ids = [execute(s, "sleep", ticks=30) for _ in range(2)]
    code, msg = code_of(lambda: execute(s, "sleep", ticks=30))
    assert code == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "limits.max_running_per_pack" in msg and "bolt-test" in msg, msg
    other = s.execute("other", "nap").execution_id
    s.kill(ids[0])
    wait_state(s, ids[0])
    execute(s, "noop")  # a place was given back
    for eid in (ids[1], other):
        s.kill(eid)
    assert healthy(s)


def test_output_streams_are_capped_per_identity(make_agent: Callable[..., Agent]) -> None:
    a = make_agent(config='[limits]\nmax_streams_per_identity = 2\n[exec]\nkill_grace = "1s"\n')
    s = client_for(a)
    eid = execute(s, "sleep", ticks=30, interval="0.2")

    def stream(c: BoltClient) -> Iterator[OutputChunk]:
        return c.stream_output(eid, follow=True, timeout=30)

    held = [stream(s) for _ in range(2)]
    for it in held:
        assert next(it).data.startswith(b"tick"), "each held stream is open and admitted"
    code, msg = code_of(lambda: next(stream(s)))
    assert code == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "limits.max_streams_per_identity" in msg and "bolt-client" in msg, msg
    # Another identity has places of its own.
    subprocess.run([str(agent_bin()), "certs", "issue", "--dir", str(a.certs), "--name", "reader"], check=True, capture_output=True)
    r = client_for(a, a.certs / "reader.crt", a.certs / "reader.key")
    assert next(stream(r)).data.startswith(b"tick")
    held[0].close()
    deadline = time.monotonic() + 10
    while True:
        code = status_of(lambda: next(stream(s)))
        if code == grpc.StatusCode.OK or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert code == grpc.StatusCode.OK, "a closed stream gives its place back"
    s.kill(eid)
    assert healthy(s)


def fresh_channel(a: Agent) -> grpc.Channel:
    creds = grpc.ssl_channel_credentials(
        root_certificates=a.ca.read_bytes(),
        private_key=a.client_key.read_bytes(),
        certificate_chain=a.client_cert.read_bytes(),
    )
    # A local subchannel pool: every channel makes its own connection.
    return grpc.secure_channel(
        f"127.0.0.1:{a.port}",
        creds,
        options=[("grpc.ssl_target_name_override", "localhost"), ("grpc.use_local_subchannel_pool", 1)],
    )


def test_connections_are_capped_per_identity(make_agent: Callable[..., Agent]) -> None:
    a = make_agent(config="[limits]\nmax_connections_per_identity = 2\n")
    channels = [fresh_channel(a) for _ in range(2)]
    for ch in channels:
        bolt_pb2_grpc.BoltStub(ch).Health(pb.HealthRequest(), timeout=10)
    extra = fresh_channel(a)
    code, msg = code_of(lambda: bolt_pb2_grpc.BoltStub(extra).Health(pb.HealthRequest(), timeout=10))
    assert code == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "limits.max_connections_per_identity" in msg, msg
    extra.close()
    channels[0].close()
    deadline = time.monotonic() + 10
    while True:
        ch = fresh_channel(a)
        code = status_of(lambda: bolt_pb2_grpc.BoltStub(ch).Health(pb.HealthRequest(), timeout=10))
        if code == grpc.StatusCode.OK or time.monotonic() > deadline:
            break
        ch.close()
        time.sleep(0.2)
    assert code == grpc.StatusCode.OK, "a closed connection gives its place back"
    status = bolt_pb2_grpc.BoltStub(channels[1]).Health(pb.HealthRequest(), timeout=10).status
    assert status in (pb.SERVING_STATUS_SERVING, pb.SERVING_STATUS_DEGRADED)


@pytest.mark.parametrize("setting", ["max_running_per_pack", "max_pending", "max_streams_per_identity", "max_connections_per_identity"])
def test_zero_caps_are_refused_at_start(tmp_path: Path, setting: str) -> None:
    cfg = tmp_path / "agent.toml"
    cfg.write_text(f"[limits]\n{setting} = 0\n")
    r = subprocess.run([str(agent_bin()), "run", "--config", str(cfg), "--data-dir", str(tmp_path / "d")], capture_output=True, text=True, timeout=20)
    assert r.returncode != 0 and f"limits.{setting} must be at least 1" in r.stderr, r.stderr
