"""Fixtures for the end-to-end tests: real agents, real certificates, real
child processes, stubs generated from proto/ at session start."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Callable, Iterator

import grpc
import pytest

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from bolt_testing import REPO, TEST_PACKS, Agent, agent_bin  # noqa: E402

GEN = HERE / ".gen"


def _generate_stubs() -> None:
    from grpc_tools import protoc

    GEN.mkdir(exist_ok=True)
    protos = sorted(str(p.relative_to(REPO / "proto")) for p in (REPO / "proto").rglob("*.proto"))
    import grpc_tools

    wkt = Path(grpc_tools.__file__).parent / "_proto"
    code = protoc.main(
        ["protoc", f"-I{REPO / 'proto'}", f"-I{wkt}", f"--python_out={GEN}", f"--grpc_python_out={GEN}", *protos]
    )
    if code != 0:
        raise RuntimeError("protoc failed")


_generate_stubs()
sys.path.insert(0, str(GEN))


def pytest_configure(config: pytest.Config) -> None:
    if not Path(os.environ.get("BOLT_AGENT_BIN", "")).exists():
        os.environ["BOLT_AGENT_BIN"] = str(agent_bin())


@pytest.fixture
def make_agent(tmp_path: Path) -> Iterator[Callable[..., Agent]]:
    """Factory of started agents; all are stopped at teardown and their
    folders kept in pytest's tmp dir for a post-mortem."""
    agents: list[Agent] = []

    def make(config: str = "", packs: list[Path] | None = None, start: bool = True, **kw: object) -> Agent:
        a = Agent(tmp_path / f"agent{len(agents)}", packs=packs, config=config, **kw)  # type: ignore[arg-type]
        agents.append(a)
        return a.start() if start else a

    yield make
    for a in agents:
        a.stop()


@pytest.fixture
def agent(make_agent: Callable[..., Agent]) -> Agent:
    return make_agent(config='[exec]\nkill_grace = "2s"\n')


def channel_for(a: Agent, cert: Path | None = None, key: Path | None = None, ca: Path | None = None) -> grpc.Channel:
    creds = grpc.ssl_channel_credentials(
        root_certificates=(ca or a.ca).read_bytes(),
        private_key=key.read_bytes() if key else (a.client_key.read_bytes() if cert is None else None),
        certificate_chain=cert.read_bytes() if cert else a.client_cert.read_bytes(),
    )
    return grpc.secure_channel(f"127.0.0.1:{a.port}", creds, options=[("grpc.ssl_target_name_override", "localhost")])


@pytest.fixture
def stub(agent: Agent):  # type: ignore[no-untyped-def]
    from bolt.v1 import bolt_pb2_grpc

    ch = channel_for(agent)
    yield bolt_pb2_grpc.BoltStub(ch)
    ch.close()


