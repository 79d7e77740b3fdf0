"""The supervisor spawner: one small process of the agent's binary that forks
every supervisor. It dies with the agent, never takes running actions with it,
and when it is gone the agent starts supervisors directly and then a new one.
Also: output followers share one inotify instance."""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from pathlib import Path

from bolt_client import State
from bolt_testing import agent_bin
from util import client_for, execute, follow, pid_alive, pid_file, text, wait_state, wait_until


def ppid_of(pid: int) -> int:
    stat = Path(f"/proc/{pid}/stat").read_text()
    return int(stat[stat.rindex(")") + 2 :].split()[1])


def open_files(pid: int) -> list[str]:
    out = []
    for f in Path(f"/proc/{pid}/fd").iterdir():
        try:
            out.append(os.readlink(f))
        except OSError:
            pass  # closed meanwhile
    return out


def supervisor_of(agent, eid: str) -> int:
    return pid_file(agent, eid, "supervisor.pid")


def test_supervisors_are_forked_by_one_spawner_in_sessions_of_their_own(agent):
    s = client_for(agent)
    spawner = wait_until(agent.spawners, 10, "the spawner")
    assert len(spawner) == 1, spawner
    # One execution first: it waits for the spawner to answer, so the ones
    # below cannot race its start (and fall back to a direct supervisor).
    assert wait_state(s, execute(s, "noop")).state is State.SUCCEEDED
    ids = [execute(s, "sleep", ticks=4, interval="0.5") for _ in range(3)]
    for eid in ids:
        sup = supervisor_of(agent, eid)
        assert ppid_of(sup) == spawner[0]
        assert Path(f"/proc/{sup}/comm").read_text().strip() == "bolt-supervise"
        assert os.getsid(sup) == sup, "a session of its own"
        # The spawner's socket is not among the supervisor's files.
        assert os.readlink(f"/proc/{spawner[0]}/fd/0") not in open_files(sup)
    for eid in ids:
        assert wait_state(s, eid).state is State.SUCCEEDED
    assert agent.spawners() == spawner, "one spawner serves every execution"


def test_a_dead_spawner_costs_no_execution(agent):
    s = client_for(agent)
    first = wait_until(agent.spawners, 10, "the spawner")[0]
    running = execute(s, "sleep", ticks=6, interval="0.5")
    wait_until(lambda: (agent.data_dir / "executions" / running / "child.pid").exists(), 10, "the action")
    os.kill(first, signal.SIGKILL)
    wait_until(lambda: first not in agent.spawners(), 10, "the spawner gone")
    # The next executions start anyway (directly at first, then from a new spawner).
    ids = [execute(s, "echo", msg=f"after {i}") for i in range(5)]
    for i, eid in enumerate(ids):
        chunks, end = follow(s, eid)
        assert end is not None and end.execution.state is State.SUCCEEDED
        assert f"after {i}" in text(chunks)
    # The action started before the spawner died was not its to lose.
    chunks, end = follow(s, running)
    assert end.execution.state is State.SUCCEEDED and text(chunks).endswith("done\n")
    assert wait_until(agent.spawners, 20, "a new spawner")[0] != first


def test_the_spawner_ends_with_the_agent_and_the_actions_do_not(agent):
    s = client_for(agent)
    spawner = wait_until(agent.spawners, 10, "the spawner")[0]
    eid = execute(s, "sleep", ticks=4, interval="0.5")
    child = agent.data_dir / "executions" / eid / "child.pid"
    wait_until(child.exists, 10, "the action")
    action = int(child.read_text().split()[0])
    agent.kill9()
    wait_until(lambda: not pid_alive(spawner), 10, "the spawner to end")
    assert pid_alive(action), "the action outlives the agent and its spawner"
    agent.start()
    e = wait_state(client_for(agent), eid)
    assert e.state is State.SUCCEEDED


def test_followers_share_one_inotify_instance(agent):
    s = client_for(agent)
    eids = [execute(s, "sleep", ticks=6, interval="0.3") for _ in range(4)]
    results: dict[int, str] = {}

    def one(i: int) -> None:
        chunks, end = follow(client_for(agent), eids[i % len(eids)])
        results[i] = text(chunks) if end is not None and end.execution.state is State.SUCCEEDED else "?"

    threads = [threading.Thread(target=one, args=(i,)) for i in range(40)]
    for t in threads:
        t.start()
    time.sleep(1.0)

    during = open_files(agent.proc.pid).count("anon_inode:inotify")
    for t in threads:
        t.join(30)
    assert during == 1, f"{during} inotify instances for 40 followers"
    expected = "".join(f"tick {i}\n" for i in range(1, 7)) + "done\n"
    assert len(results) == 40 and all(v == expected for v in results.values()), results


def test_a_second_supervisor_for_one_execution_steps_aside(agent):
    s = client_for(agent)
    eid = execute(s, "sleep", ticks=3, interval="0.5")
    folder = agent.data_dir / "executions" / eid
    first = supervisor_of(agent, eid)
    wait_until(lambda: (folder / "child.pid").exists(), 10, "the action")
    before = {p.name: p.stat().st_mtime_ns for p in folder.iterdir()}
    # What a spawner lost in the middle of a request could lead to.
    done = subprocess.run([str(agent_bin()), "supervise", str(folder)], timeout=10)
    assert done.returncode == 0
    assert int((folder / "supervisor.pid").read_text().split()[0]) == first
    after = {p.name: p.stat().st_mtime_ns for p in folder.iterdir()}
    assert set(after) == set(before) and after["supervisor.pid"] == before["supervisor.pid"]
    chunks, end = follow(s, eid)
    assert end.execution.state is State.SUCCEEDED
    assert text(chunks) == "tick 1\ntick 2\ntick 3\ndone\n", "the action ran once"
