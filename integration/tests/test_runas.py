"""Run-as: an action declares its user (and group) in pack.toml; the supervisor
drops supplementary groups, gid and uid before exec. Root can be forbidden."""

from __future__ import annotations

import grp
import os
import pwd
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Callable, Iterator

import grpc
import pytest

from bolt_client import State
from bolt_testing import Agent, agent_bin
from util import client_for, code_of, follow, text, wait_state

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="run-as needs the agent to run as root")

SCRIPT = '#!/bin/sh\necho "uid=$(id -u) gid=$(id -g) groups=$(id -G) home=$HOME user=$USER"\n'

def make_pack(root: Path, actions: str, name: str = "who") -> Path:
    d = root / name
    d.mkdir(parents=True)
    (d / "pack.toml").write_text(f'name = "{name}"\nversion = "1"\n{actions}')
    s = d / "who.sh"
    s.write_text(SCRIPT)
    s.chmod(0o755)
    return d

def action(name: str, extra: str = "") -> str:
    return f'[[actions]]\nname = "{name}"\nentrypoint = "who.sh"\n{extra}\n'

def run(client, pack: str, act: str) -> str:  # type: ignore[no-untyped-def]
    eid = client.execute(pack, act).execution_id
    e = wait_state(client, eid)
    assert e.state is State.SUCCEEDED, e
    chunks, _ = follow(client, eid)
    return text(chunks).strip()

@pytest.fixture
def nobody() -> pwd.struct_passwd:
    return pwd.getpwnam("nobody")


@pytest.fixture
def make_agent(tmp_path: Path) -> Iterator[Callable[..., Agent]]:
    """Agents whose folders other users may traverse (pytest's tmp dir is
    0700), as packs folders are on a real host."""
    agents: list[Agent] = []
    base = Path(tempfile.mkdtemp(prefix="bolt-runas-"))
    base.chmod(0o755)

    def make(config: str = "", packs: list[Path] | None = None) -> Agent:
        root = base / f"agent{len(agents)}"
        root.mkdir(mode=0o755)
        a = Agent(root, packs=packs, config=config)
        a.packs_dir.chmod(0o755)
        agents.append(a)
        return a.start()

    yield make
    for a in agents:
        a.stop()
    shutil.rmtree(base, ignore_errors=True)

def test_actions_run_as_their_user_with_no_supplementary_groups(
    tmp_path: Path, make_agent: Callable[..., Agent], nobody: pwd.struct_passwd
) -> None:
    daemon = grp.getgrnam("daemon")
    pack = make_pack(
        tmp_path,
        action("as-nobody", 'user = "nobody"')
        + action("as-nobody-daemon", 'user = "nobody"\ngroup = "daemon"')
        + action("as-agent"),
    )
    a = make_agent(packs=[pack])

    s = client_for(a)
    assert run(s, "who", "as-nobody") == (
        f"uid={nobody.pw_uid} gid={nobody.pw_gid} groups={nobody.pw_gid} home={nobody.pw_dir} user=nobody"
    )
    assert run(s, "who", "as-nobody-daemon") == (
        f"uid={nobody.pw_uid} gid={daemon.gr_gid} groups={daemon.gr_gid} home={nobody.pw_dir} user=nobody"
    )
    assert run(s, "who", "as-agent").startswith("uid=0 gid=0")

def test_an_unknown_user_is_a_lint_error_and_the_pack_is_skipped(
    tmp_path: Path, make_agent: Callable[..., Agent]
) -> None:
    pack = make_pack(tmp_path, action("ghost", 'user = "no-such-user-bolt"\ngroup = "no-such-group-bolt"'))
    lint = subprocess.run([str(agent_bin()), "pack", "lint", str(pack)], capture_output=True, text=True)
    assert lint.returncode == 1
    assert 'actions[0].user: user "no-such-user-bolt" does not exist on this host' in lint.stdout
    assert 'actions[0].group: group "no-such-group-bolt" does not exist on this host' in lint.stdout
    a = make_agent(packs=[pack])

    s = client_for(a)
    health = s.health()
    assert any("no-such-user-bolt" in e.error for e in health.pack_errors), health
    code, _ = code_of(lambda: s.execute("who", "ghost"))
    assert code == grpc.StatusCode.NOT_FOUND

def test_root_can_be_forbidden_to_all_packs_or_allowed_to_some(
    tmp_path: Path, make_agent: Callable[..., Agent]
) -> None:
    who = make_pack(tmp_path, action("as-root") + action("as-nobody", 'user = "nobody"'))
    ops = make_pack(tmp_path, action("as-root"), name="ops")
    a = make_agent(packs=[who, ops], config='[exec]\nroot_packs = ["ops"]\n')

    s = client_for(a)
    code, msg = code_of(lambda: s.execute("who", "as-root"))
    assert code == grpc.StatusCode.FAILED_PRECONDITION
    assert "exec.root_packs" in msg and "who" in msg
    assert run(s, "who", "as-nobody").startswith(f"uid={pwd.getpwnam('nobody').pw_uid} ")
    assert run(s, "ops", "as-root").startswith("uid=0 ")
