"""Fixtures: real bolt-agent processes (integration/bolt_testing) and clients of them."""

from __future__ import annotations

import os
import shutil
import socket
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(REPO / "integration"))

from bolt_testing import TEST_PACKS, Agent, agent_bin, make_certs  # noqa: E402

__all__ = ["SCENARIOS", "AgentFactory", "agent_config", "bolt_cmd", "free_port", "make_certs"]

from bolt_client import BoltClient, TLSConfig  # noqa: E402

SCENARIOS = REPO / "integration" / "scenarios"


def agent_config(instance_id: str, az: str = "us-east-1a", region: str = "us-east-1", app: str = "kafka") -> str:
    return (
        "[instance]\n"
        f'id = "{instance_id}"\n'
        f'app = "{app}"\n'
        f'availability_zone = "{az}"\n'
        f'region = "{region}"\n'
        'stage = "prod"\n'
    )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="session")
def agent_binary() -> Path:
    try:
        path = agent_bin()
    except RuntimeError as exc:
        pytest.fail(f"{exc} (these tests run real agents)")
    if not path.exists():
        pytest.fail(f"bolt-agent binary {path} does not exist (set BOLT_AGENT_BIN)")
    return path


@pytest.fixture(scope="session")
def certs(agent_binary: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One dev CA + agent + client certificates shared by every agent of the session."""
    return make_certs(tmp_path_factory.mktemp("certs"))


@pytest.fixture(scope="session")
def tls(certs: Path) -> TLSConfig:
    return TLSConfig(certs / "ca.crt", certs / "client.crt", certs / "client.key")


class AgentFactory:
    def __init__(self, certs: Path, base: Path) -> None:
        self.certs = certs
        self.base = base
        self.agents: list[Agent] = []

    def __call__(self, instance_id: str = "i-test", az: str = "us-east-1a", region: str = "us-east-1",
                 *, start: bool = True, app: str = "kafka") -> Agent:
        root = self.base / f"{len(self.agents)}-{instance_id}"
        a = Agent(root, packs=[TEST_PACKS / "bolt-test"], config=agent_config(instance_id, az, region, app),
                  certs=self.certs)
        self.agents.append(a)
        if start:
            a.start()
        return a

    def stop_all(self) -> None:
        for a in self.agents:
            try:
                a.stop()
            except Exception:  # pragma: no cover - best effort cleanup
                pass


@pytest.fixture
def agents(certs: Path, tmp_path: Path) -> Iterator[AgentFactory]:
    f = AgentFactory(certs, tmp_path)
    yield f
    f.stop_all()


@pytest.fixture(scope="session")
def agent(certs: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Agent]:
    """One agent shared by the tests that do not change its state."""
    f = AgentFactory(certs, tmp_path_factory.mktemp("shared-agent"))
    a = f("i-shared", "us-east-1a", "us-east-1")
    yield a
    f.stop_all()


@pytest.fixture
def client(agent: Agent, tls: TLSConfig) -> Iterator[BoltClient]:
    with BoltClient(agent.address, tls=tls) as c:
        yield c


@pytest.fixture
def bolt_env(certs: Path) -> dict[str, str]:
    """Environment for running the `bolt` command with the session's client identity."""
    env = dict(os.environ)
    env.update(BOLT_CA=str(certs / "ca.crt"), BOLT_CERT=str(certs / "client.crt"), BOLT_KEY=str(certs / "client.key"))
    env.pop("BOLT_CLIENT_CONFIG", None)
    return env


def bolt_cmd() -> list[str]:
    exe = shutil.which("bolt", path=str(Path(sys.executable).parent))
    return [exe] if exe else [sys.executable, "-m", "bolt_client"]
