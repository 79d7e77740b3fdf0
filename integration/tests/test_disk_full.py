"""A full data folder: new executions are refused with a clear error, output
is truncated and marked, nothing earlier is lost, and the agent recovers by
itself once space returns. The data folder is a small tmpfs."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import grpc
import pytest
from bolt.v1 import bolt_pb2 as pb
from util import code_of, execute, follow, get, healthy, stub_for, text, wait_until

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
    s = stub_for(a)
    earlier = [execute(s, "echo", msg=f"before {i}") for i in range(3)]
    for eid in earlier:
        assert follow(s, eid)[1].execution.state == pb.STATE_SUCCEEDED

    # Nearly full: new executions are refused at once, with the limit named.
    filler = fill(small_disk, 2 * MiB)
    code, msg = code_of(lambda: execute(s, "echo", msg="refused"))
    assert code == grpc.StatusCode.RESOURCE_EXHAUSTED and "limits.min_free_bytes" in msg, msg
    assert healthy(s)
    assert any("free" in p for p in s.Health(pb.HealthRequest()).problems)
    filler.unlink()

    # Space for a start, not for the output: it is cut, the action finishes,
    # and its end waits for space rather than being lost.
    filler = fill(small_disk, 10 * MiB)
    eid = execute(s, "flood", bytes=30 * MiB)
    wait_until(lambda: free(small_disk) < 64 * 1024, 20, "the data folder to fill up")
    assert healthy(s)
    for e in earlier:
        assert get(s, e).state == pb.STATE_SUCCEEDED
    code, _ = code_of(lambda: execute(s, "echo", msg="refused while full"))
    assert code == grpc.StatusCode.RESOURCE_EXHAUSTED
    filler.unlink()

    e = wait_until(lambda: (x := get(s, eid)).state == pb.STATE_SUCCEEDED and x, 30, "the flood to be recorded")
    assert e.output_truncated and e.stdout_bytes == 30 * MiB
    chunks, end = follow(s, eid)
    assert "data folder was full" in text(chunks, pb.STREAM_SYSTEM)
    assert end.execution.state == pb.STATE_SUCCEEDED

    # Recovered by itself: new executions run, and nothing earlier was lost,
    # across a restart too.
    assert follow(s, execute(s, "echo", msg="after"))[1].execution.state == pb.STATE_SUCCEEDED
    a.restart()
    s = stub_for(a)
    for e in [*earlier, eid]:
        assert get(s, e).state == pb.STATE_SUCCEEDED
    assert len(s.ListExecutions(pb.ListExecutionsRequest()).executions) == 5
