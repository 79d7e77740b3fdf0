"""Resource caps: per-execution cgroups on whatever the host offers.

Each test that needs a controller skips, naming it, when the agent reports
that caps are not enforced on this host."""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest

from bolt_client import State, Stream
from util import client_for, execute, follow, healthy, pid_alive, text, wait_until


def own_cgroup_dirs() -> list[Path]:
    """This process's cgroup folders: v1 hierarchies and the v2 one."""
    dirs = []
    for line in Path("/proc/self/cgroup").read_text().splitlines():
        _, controllers, path = line.split(":", 2)
        for c in controllers.split(",") if controllers else [""]:
            base = Path("/sys/fs/cgroup") / (c or "unified" if Path("/sys/fs/cgroup/unified").exists() else "")
            if c == "" and not Path("/sys/fs/cgroup/unified").exists():
                base = Path("/sys/fs/cgroup")
            d = base / path.lstrip("/")
            if d.exists():
                dirs.append(d)
    return dirs


@pytest.fixture
def capped(make_agent):
    a = make_agent(config='[exec]\nkill_grace = "1s"\n')
    s = client_for(a)
    info = s.agent_info()
    if not info.caps_enforced:
        s.close()
        pytest.skip(f"no cgroup could be created here (caps_mode={info.caps_mode}): memory, cpu and pids controllers unavailable")
    yield a, s, info
    s.close()


def test_health_reports_caps(capped):
    _, s, info = capped
    assert info.caps_mode in ("cgroup1", "cgroup2")
    assert s.health().caps_enforced


def test_memory_cap_ends_in_oom_killed(capped):
    _, s, _ = capped
    eid = execute(s, "hog", mib=256)
    chunks, end = follow(s, eid)
    e = end.execution
    assert e.state is State.OOM_KILLED, (e, text(chunks, None))
    assert "holding 8 MiB" in text(chunks)
    assert "done" not in text(chunks)
    assert "memory cap" in text(chunks, Stream.SYSTEM)
    assert 32 << 20 <= e.peak_memory_bytes <= 80 << 20
    assert healthy(s)
    # Within its cap the same action succeeds.
    _, end = follow(s, execute(s, "hog", mib=16))
    assert end.execution.state is State.SUCCEEDED


def test_cpu_cap_limits_a_busy_loop(capped):
    _, s, _ = capped
    eid = execute(s, "spin", seconds=3)
    chunks, end = follow(s, eid)
    assert end.execution.state is State.SUCCEEDED
    share = float(re.search(r"share=([0-9.]+)", text(chunks)).group(1))
    print(f"measured CPU share of a busy loop capped at 0.25 CPU: {share:.3f}")
    assert 0.1 < share <= 0.32, share
    cpu = end.execution.cpu_time.total_seconds()
    assert 0.3 < cpu < 1.1, cpu


def test_fork_bomb_stops_at_the_pids_limit(capped):
    a, s, _ = capped
    t0 = time.monotonic()
    eid = execute(s, "forkbomb", timeout=3)
    chunks, end = follow(s, eid, timeout=30)
    e = end.execution
    # The bomb fizzles at the limit (its forks fail and it unwinds) or
    # outlives its timeout; either way it ends and takes nothing with it.
    assert e.state in (State.SUCCEEDED, State.FAILED, State.TIMED_OUT), e
    print(f"fork bomb capped at 32 pids ended {e.state} after {time.monotonic() - t0:.1f}s")
    assert "going off" in text(chunks)
    assert re.search(r"[Cc]an.?t fork|Resource temporarily unavailable|fork", text(chunks, Stream.STDERR))
    assert time.monotonic() - t0 < 15
    assert healthy(s)
    # The agent kept serving, and the bomb left nothing behind.
    _, end = follow(s, execute(s, "echo", msg="after the bomb"))
    assert end.execution.state is State.SUCCEEDED


def test_execution_cgroups_are_removed(capped):
    a, s, _ = capped
    eid = execute(s, "sleep", ticks=1, interval="0.2")
    wait_until(lambda: any((d / "bolt" / eid).exists() for d in own_cgroup_dirs()), 10, "the execution's cgroup")
    follow(s, eid)
    wait_until(lambda: not any((d / "bolt" / eid).exists() for d in own_cgroup_dirs()), 10, "the cgroup to go")


def test_kill_uses_the_cgroup(capped):
    _, s, _ = capped
    eid = execute(s, "tree")
    wait_until(lambda: "ready" in text(s.stream_output(eid)), 10, "ready")
    dirs = [d / "bolt" / eid for d in own_cgroup_dirs() if (d / "bolt" / eid / "cgroup.procs").exists()]
    assert dirs
    pids = {int(p) for d in dirs for p in (d / "cgroup.procs").read_text().split()}
    assert len(pids) >= 5, pids
    s.kill(eid)
    _, end = follow(s, eid)
    assert end.execution.state is State.KILLED
    wait_until(lambda: not any(pid_alive(p) for p in pids), 5, "every process of the cgroup to end")


def test_caps_can_be_disabled(make_agent):
    a = make_agent(config="[caps]\nenabled = false\n")
    s = client_for(a)
    info = s.agent_info()
    assert not info.caps_enforced and info.caps_mode == "none"
    # The memory cap falls back to an address-space rlimit: the hog cannot grow.
    _, end = follow(s, execute(s, "hog", mib=256))
    assert end.execution.state is State.FAILED


def cgroup_of(pid: int) -> dict[str, str]:
    out = {}
    for line in Path(f"/proc/{pid}/cgroup").read_text().splitlines():
        _, controllers, path = line.split(":", 2)
        for c in controllers.split(",") if controllers else [""]:
            out[c] = path
    return out


def test_the_agent_caps_itself_apart_from_its_actions(capped):
    a, s, info = capped
    mine = cgroup_of(a.proc.pid)
    mem = mine.get("memory") or mine.get("")
    assert mem.endswith("/bolt-agent"), mine
    root = Path("/sys/fs/cgroup/memory") if "memory" in mine else Path("/sys/fs/cgroup")
    limit_file = "memory.limit_in_bytes" if info.caps_mode == "cgroup1" else "memory.max"
    assert int((root / mem.lstrip("/") / limit_file).read_text()) == 256 * 1024 * 1024
    nice = int(Path(f"/proc/{a.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()[16])
    assert nice == 1, "the agent runs niced"
    eid = execute(s, "sleep", ticks=3, interval="0.2")
    folder = a.data_dir / "executions" / eid
    wait_until((folder / "child.pid").exists, 10, "the action")
    sup = int((folder / "supervisor.pid").read_text().split()[0])
    child = int((folder / "child.pid").read_text().split()[0])
    key = "memory" if "memory" in mine else ""
    assert cgroup_of(sup)[key].endswith("/bolt-supervisors"), "supervisors are not counted against the agent's cap"
    assert cgroup_of(child)[key].endswith(f"/bolt/{eid}")
    follow(s, eid)
