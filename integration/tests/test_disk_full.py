"""A full data folder: new executions are refused with a clear error, output
is truncated and marked, nothing earlier is lost, and the agent recovers by
itself once space returns. The data folder is a small tmpfs."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import grpc
import pytest

from bolt_client import ServingStatus, State, Stream
from util import client_for, code_of, execute, follow, get, healthy, text, wait_until

MiB = 1024 * 1024


@pytest.fixture
def small_disk(tmp_path: Path):
    mnt = tmp_path / "small"
    mnt.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=24m,mode=0700", "tmpfs", str(mnt)], capture_output=True)
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root): {r.stderr.decode().strip()}")
    yield mnt
    subprocess.run(["umount", "-l", str(mnt)], capture_output=True)


def free(path: Path) -> int:
    st = os.statvfs(path)
    return st.f_bavail * st.f_frsize


def fill(path: Path, leave: int) -> Path:
    filler = path / "filler"
    with open(filler, "wb") as f:
        f.write(b"\0" * max(0, free(path) - leave))
    return filler


def test_full_data_folder(make_agent, small_disk):
    a = make_agent(start=False, config='[limits]\nmin_free_bytes = "4MiB"\n[caps]\nenabled = false\n')
    a.data_dir = small_disk / "data"
    a.start()
    s = client_for(a)
    earlier = [execute(s, "echo", msg=f"before {i}") for i in range(3)]
    for eid in earlier:
        assert follow(s, eid)[1].execution.state is State.SUCCEEDED

    # Nearly full: new executions are refused at once, with the limit named.
    filler = fill(small_disk, 2 * MiB)
    code, msg = code_of(lambda: execute(s, "echo", msg="refused"))
    assert code == grpc.StatusCode.RESOURCE_EXHAUSTED and "limits.min_free_bytes" in msg, msg
    assert healthy(s)
    assert any("free" in p for p in s.health().problems)
    filler.unlink()

    # Space for a start, not for the output: it is cut, the action finishes,
    # and its end waits for space rather than being lost.
    filler = fill(small_disk, 10 * MiB)
    eid = execute(s, "flood", bytes=30 * MiB)
    wait_until(lambda: free(small_disk) < 64 * 1024, 20, "the data folder to fill up")
    assert healthy(s)
    for e in earlier:
        assert get(s, e).state is State.SUCCEEDED
    code, _ = code_of(lambda: execute(s, "echo", msg="refused while full"))
    assert code == grpc.StatusCode.RESOURCE_EXHAUSTED
    filler.unlink()

    e = wait_until(lambda: (x := get(s, eid)).state is State.SUCCEEDED and x, 30, "the flood to be recorded")
    assert e.output_truncated and e.stdout_bytes == 30 * MiB
    chunks, end = follow(s, eid)
    assert "data folder was full" in text(chunks, Stream.SYSTEM)
    assert end.execution.state is State.SUCCEEDED

    # Recovered by itself: new executions run, and nothing earlier was lost,
    # across a restart too.
    assert follow(s, execute(s, "echo", msg="after"))[1].execution.state is State.SUCCEEDED
    a.restart()
    s = client_for(a)
    for e in [*earlier, eid]:
        assert get(s, e).state is State.SUCCEEDED
    assert len(s.list_executions().executions) == 5


def test_the_agent_starts_on_a_full_data_disk_and_serves_reads_and_kills(make_agent, small_disk):
    a = make_agent(start=False, config='[limits]\nmin_free_bytes = "1MiB"\n[caps]\nenabled = false\n[exec]\nkill_grace = "1s"\n')
    a.data_dir = small_disk / "data"
    a.start()
    s = client_for(a)
    done = execute(s, "echo", msg="before the disk filled")
    assert follow(s, done)[1].execution.state is State.SUCCEEDED
    running = execute(s, "sleep", ticks=600, interval="0.1")
    wait_until(lambda: get(s, running).state is State.RUNNING, 10, "the action to run")
    port = a.port
    a.stop()
    filler = fill(small_disk, 0)
    try:
        with open(filler, "ab") as f:  # the last blocks too
            while True:
                f.write(b"\0" * 4096)
                f.flush()
    except OSError:
        pass
    assert free(small_disk) < 64 * 1024

    a.start(listen=f"127.0.0.1:{port}")
    s = client_for(a)
    health = s.health()
    assert health.status is ServingStatus.DEGRADED and any("free" in p for p in health.problems), health
    assert get(s, done).state is State.SUCCEEDED
    assert "before the disk filled" in text(follow(s, done)[0])
    code, msg = code_of(lambda: execute(s, "echo", msg="refused"))
    assert code == grpc.StatusCode.RESOURCE_EXHAUSTED, msg
    assert s.kill(running).state is State.RUNNING
    filler.unlink()  # the end is recorded once there is room
    e = wait_until(lambda: (x := get(s, running)).state is State.KILLED and x, 30, "the kill to be recorded")
    assert e.state is State.KILLED
