"""Executions outlive the agent: kill -9, restart, re-attach, LOST, history,
graceful stop, and a broken or busy history database."""

from __future__ import annotations

import os
import signal
import subprocess
import time

from bolt_client import State, UnavailableError
from bolt_testing import agent_bin
from util import client_for, execute, follow, get, pid_alive, pid_file, text, wait_state, wait_until


def child_pid(agent, eid: str) -> int:
    return pid_file(agent, eid, "child.pid")


def test_kill9_of_the_agent_interrupts_nothing(agent):
    s = client_for(agent)
    eid = execute(s, "sleep", ticks=6, interval="0.5")
    wait_until(lambda: "tick 1" in text(s.stream_output(eid)), 10, "tick 1")
    pid = child_pid(agent, eid)
    agent.kill9()
    time.sleep(0.8)
    assert pid_alive(pid), "the action must survive the agent"
    agent.start()
    s = client_for(agent)
    assert get(s, eid).state is State.RUNNING
    chunks, end = follow(s, eid)
    assert text(chunks) == "".join(f"tick {i}\n" for i in range(1, 7)) + "done\n"
    assert end.execution.state is State.SUCCEEDED
    # The history has it after yet another restart.
    agent.restart()
    e = get(client_for(agent), eid)
    assert e.state is State.SUCCEEDED and e.stdout_bytes == len(text(chunks))


def test_an_action_that_ends_while_the_agent_is_down_is_recorded(agent):
    s = client_for(agent)
    eid = execute(s, "sleep", ticks=1, interval="0.5")
    wait_until((agent.data_dir / "executions" / eid / "supervisor.pid").exists, 10, "the supervisor")
    agent.kill9()
    time.sleep(1.0)
    agent.start()
    e = wait_state(client_for(agent), eid)
    assert e.state is State.SUCCEEDED and e.exit_code == 0
    s = client_for(agent)
    eid = execute(s, "fail", code=3)
    wait_until((agent.data_dir / "executions" / eid / "child.pid").exists, 10, "the action")
    agent.kill9()
    time.sleep(0.5)
    agent.start()
    e = wait_state(client_for(agent), eid)
    assert e.state is State.FAILED and e.exit_code == 3


def test_a_dead_supervisor_means_lost(agent):
    s = client_for(agent)
    eid = execute(s, "sleep", ticks=100, interval="0.2")
    pid = child_pid(agent, eid)
    sup = int((agent.data_dir / "executions" / eid / "supervisor.pid").read_text().split()[0])
    agent.kill9()
    os.kill(sup, signal.SIGKILL)
    os.killpg(pid, signal.SIGKILL)
    wait_until(lambda: not pid_alive(sup), 5, "the supervisor to die")
    agent.start()
    e = wait_state(client_for(agent), eid)
    assert e.state is State.LOST and "supervisor" in e.error
    _, end = follow(client_for(agent), eid)
    assert end.execution.state is State.LOST


def test_sigterm_stops_the_agent_gracefully_and_leaves_actions_running(agent):
    s = client_for(agent)
    eid = execute(s, "sleep", ticks=3, interval="0.5")
    pid = child_pid(agent, eid)
    assert agent.stop(signal.SIGTERM) == 0
    assert pid_alive(pid)
    assert "shutting down" in agent.log()
    agent.start()
    _, end = follow(client_for(agent), eid)
    assert end.execution.state is State.SUCCEEDED


def test_followers_get_unavailable_on_shutdown_and_resume(agent):
    s = client_for(agent)
    eid = execute(s, "sleep", ticks=8, interval="0.3")
    got = b""
    try:
        for c in s.stream_output(eid, follow=True, timeout=30):
            got += c.data
            if b"tick 2" in got:
                agent.stop(signal.SIGTERM)
    except UnavailableError:
        pass
    agent.start()
    rest, end = follow(client_for(agent), eid, offset=len(got))
    assert (got + b"".join(c.data for c in rest)).decode() == "".join(f"tick {i}\n" for i in range(1, 9)) + "done\n"
    assert end.execution.state is State.SUCCEEDED


def _run_agent(agent, timeout=10):
    return subprocess.run(
        [str(agent_bin()), "run", "--listen", "127.0.0.1:0", "--tls-dir", str(agent.certs),
         "--packs-dir", str(agent.packs_dir), "--data-dir", str(agent.data_dir)],
        capture_output=True, text=True, timeout=timeout,
    )


def test_a_second_agent_on_the_same_data_folder_is_refused(agent):
    r = _run_agent(agent)
    assert r.returncode != 0
    assert "in use by another process" in r.stderr
    assert agent.alive()


def test_a_corrupt_history_gives_a_clear_error(make_agent):
    a = make_agent(start=False)
    a.data_dir.mkdir(parents=True)
    (a.data_dir / "history.redb").write_bytes(b"\x00garbage" * 2000)
    r = _run_agent(a)
    assert r.returncode != 0
    assert "history database" in r.stderr and "history.redb" in r.stderr
    assert (a.data_dir / "history.redb").read_bytes() == b"\x00garbage" * 2000, "the file must be left as it was"
