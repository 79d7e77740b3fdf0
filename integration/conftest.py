"""Fixtures for the end-to-end tests: real agents, real certificates, real
child processes, the Python client (clients/python) to talk to them, and raw
stubs generated from proto/ at session start for the requests it would not send."""

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

# The VM suite runs over a read-only checkout and points this elsewhere.
GEN = Path(os.environ.get("BOLT_TEST_STUBS_DIR") or HERE / ".gen")


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
def client(agent: Agent):  # type: ignore[no-untyped-def]
    """A BoltClient of `agent` with the bolt-client identity: how tests talk to an agent."""
    from util import client_for

    with client_for(agent) as c:
        yield c


@pytest.fixture
def stub(agent: Agent):  # type: ignore[no-untyped-def]
    """A raw stub of `agent`, for tests that send requests the client would not."""
    from bolt.v1 import bolt_pb2_grpc

    ch = channel_for(agent)
    yield bolt_pb2_grpc.BoltStub(ch)
    ch.close()




# --- nothing outlives the session ------------------------------------------------------


def _descendants(root: int) -> list[int]:
    """Pids whose parent chain leads to `root` (orphans reparent to it: the
    session is a child subreaper)."""
    parents: dict[int, int] = {}
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                stat = (d / "stat").read_text()
            except OSError:
                continue
            parents[int(d.name)] = int(stat[stat.rindex(")") + 2 :].split()[1])
    out = []
    for pid in parents:
        p, seen = pid, 0
        while p in parents and seen < 64:
            p, seen = parents[p], seen + 1
            if p == root:
                out.append(pid)
                break
    return out


def _comm(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return ""


@pytest.fixture(scope="session", autouse=True)
def _no_process_left_behind() -> Iterator[None]:
    """The session adopts every orphan (PR_SET_CHILD_SUBREAPER), so the
    supervisors and actions that tests leave running stay its descendants; at
    the end it ends them all, then checks that no agent, spawner or
    supervisor of its own is left."""
    import ctypes
    import signal
    import time

    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(36, 1, 0, 0, 0)  # PR_SET_CHILD_SUBREAPER
    yield
    me = os.getpid()
    ours = [p for p in _descendants(me) if p != me]
    bolt = {p: _comm(p) for p in ours if _comm(p).startswith(("bolt-agent", "bolt-supervise"))}
    for pid in ours:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            while os.waitpid(-1, os.WNOHANG)[0] > 0:
                pass
        except ChildProcessError:
            pass
        left = [p for p in _descendants(me) if _comm(p).startswith(("bolt-agent", "bolt-supervise"))]
        if not left:
            break
        time.sleep(0.05)
    if bolt:
        names = sorted(set(bolt.values()))
        print(f"\nsession end: ended {len(bolt)} processes tests left running ({', '.join(names)})")
    assert not left, f"processes of the session still alive after SIGKILL: {left}"
