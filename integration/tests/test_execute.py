"""Execute, output and history against a real agent over real mTLS."""

from __future__ import annotations

import concurrent.futures
import threading
import time

from datetime import timedelta

import pytest
from bolt.v1 import bolt_pb2 as pb

from bolt_client import AlreadyExistsError, ParamType, State, Stream
from util import client_for, execute, follow, get, text, wait_state


def test_list_actions_shows_declared_parameters(client):
    actions = {a.name: a for a in client.list_actions("bolt-test")}
    assert {"echo", "sleep", "fail", "tree", "stubborn", "flood"} <= set(actions)
    echo = actions["echo"]
    assert [p.name for p in echo.params] == ["msg", "count", "loud", "color"]
    assert echo.params[0].required and echo.params[0].type is ParamType.STRING
    assert echo.params[1].min == 1 and echo.params[1].max == 100 and echo.params[1].default == "1"
    assert list(echo.params[3].values) == ["red", "green", "blue"]
    assert echo.timeout == timedelta(seconds=60) and echo.read_only
    assert echo.pack_version == "1.0.0"


def test_execute_returns_at_once_and_completes(client):
    t0 = time.monotonic()
    eid = execute(client, "sleep", ticks=2, interval="0.5")
    assert time.monotonic() - t0 < 0.4, "Execute must not wait for the action"
    e = get(client, eid)
    assert e.state in (State.PENDING, State.RUNNING)
    e = wait_state(client, eid)
    assert e.state is State.SUCCEEDED and e.exit_code == 0
    assert e.caller == "bolt-client"
    assert e.stdout_bytes == len("tick 1\ntick 2\ndone\n")
    assert e.duration >= timedelta(milliseconds=900)
    assert e.cpu_time > timedelta(0) and e.peak_memory_bytes > 0


def test_arguments_arrive_verbatim_as_argv_and_env(client):
    hostile = "; rm -rf / $(id) `id` 'q' \"dq\" \\ | & > /tmp/x\nsecond line *"
    eid = execute(client, "echo", msg=hostile, count=3, loud="true", color="blue")
    chunks, end = follow(client, eid)
    assert end is not None and end.execution.state is State.SUCCEEDED
    out = text(chunks)
    lines = out.split("\n")
    argv = [l[len("argv:"):] for l in lines if l.startswith("argv:")]
    # --msg=... spans two lines because the value holds a newline.
    assert argv[0] == "--msg=; rm -rf / $(id) `id` 'q' \"dq\" \\ | & > /tmp/x"
    assert "second line *" in lines
    assert "--count=3" in argv and "--loud=true" in argv and "--color=blue" in argv
    assert f"env:BOLT_EXECUTION_ID={eid}" in lines
    assert "env:BOLT_ARG_COLOR=blue" in lines and "env:BOLT_ARG_COUNT=3" in lines
    assert any(l.startswith("cwd:") and l.endswith("/bolt-test") for l in lines)
    how = next(l for l in lines if l.startswith("pid:")).split()
    pid, pgid, nice = (int(f.split(":")[1]) for f in how)
    assert pgid == pid, "the action leads its own process group"
    assert nice == 1, "actions run at niceness 1"
    names = set(next(l for l in lines if l.startswith("envnames:"))[len("envnames:"):].split())
    assert names <= {"PATH", "LANG", "HOME", "PWD", "SHLVL", "_", "OLDPWD"}, names
    assert dict(end.execution.args) == {"msg": hostile, "count": "3", "loud": "true", "color": "blue"}


def test_stream_while_running_then_final_state(client):
    eid = execute(client, "sleep", ticks=4, interval="0.4")
    seen: list[tuple[float, bytes]] = []
    final = None
    for c in client.stream_output(eid, follow=True, timeout=30):
        if c.end:
            final = c
        else:
            seen.append((time.monotonic(), c.data))
    assert final is not None and final.execution.state is State.SUCCEEDED
    assert b"".join(d for _, d in seen) == b"tick 1\ntick 2\ntick 3\ntick 4\ndone\n"
    # Chunks arrived as they were written, not all at the end.
    assert seen[-1][0] - seen[0][0] > 1.0


def test_offsets_are_stable_and_resumable(client):
    eid = execute(client, "echo", msg="abcdefghij")
    chunks, end = follow(client, eid)
    full = b"".join(c.data for c in chunks)
    pos = 0
    for c in chunks:
        assert c.offset == pos
        pos += len(c.data)
    assert end.offset == len(full), "the closing message carries the end offset"
    for start in (0, 1, 7, len(full) - 1, len(full)):
        rest, end2 = follow(client, eid, offset=start)
        assert b"".join(c.data for c in rest) == full[start:]
        assert end2 is not None and end2.execution.state is State.SUCCEEDED
    beyond, _ = follow(client, eid, offset=len(full) + 100)
    assert beyond == []


def test_several_followers_get_the_same_output(client):
    eid = execute(client, "sleep", ticks=3, interval="0.3")
    results: list[bytes] = []
    lock = threading.Lock()

    def one() -> None:
        chunks, end = follow(client, eid)
        assert end is not None
        with lock:
            results.append(text(chunks).encode())

    threads = [threading.Thread(target=one) for _ in range(5)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert results == [b"tick 1\ntick 2\ntick 3\ndone\n"] * 5


def test_stream_without_follow_stops_at_current_end(client):
    eid = execute(client, "sleep", ticks=20, interval="0.2")
    time.sleep(0.7)
    t0 = time.monotonic()
    got = list(client.stream_output(eid, follow=False))
    assert time.monotonic() - t0 < 2
    assert got and not any(c.end for c in got)
    assert text(got).startswith("tick 1\n")
    client.kill(eid)


def test_failure_and_stderr(client):
    eid = execute(client, "fail", code=7)
    chunks, end = follow(client, eid)
    assert end.execution.state is State.FAILED and end.execution.exit_code == 7
    assert text(chunks, Stream.STDERR) == "failing with 7\n"
    assert end.execution.stderr_bytes == len("failing with 7\n")


def test_idempotency_key_returns_the_first_execution(client):
    first = client.execute("bolt-test", "echo", {"msg": "x"}, idempotency_key="k-1")
    again = client.execute("bolt-test", "echo", {"msg": "x"}, idempotency_key="k-1")
    assert again.execution_id == first.execution_id and again.deduplicated and not first.deduplicated
    with pytest.raises(AlreadyExistsError) as refused:
        client.execute("bolt-test", "echo", {"msg": "y"}, idempotency_key="k-1")
    assert "k-1" in refused.value.details
    wait_state(client, first.execution_id)
    listed = client.list_executions(action="echo").executions
    assert [e.execution_id for e in listed].count(first.execution_id) == 1
    assert len([e for e in listed if e.idempotency_key == "k-1"]) == 1


def test_concurrent_retries_start_one_execution(client):
    def start(_: int) -> str:
        return execute(client, "sleep", key="burst", ticks=1, interval="0.1")

    with concurrent.futures.ThreadPoolExecutor(10) as pool:
        ids = set(pool.map(start, range(20)))
    assert len(ids) == 1
    wait_state(client, ids.pop())
    assert len(client.list_executions(action="sleep").executions) == 1


def test_an_execute_without_idempotency_key_is_accepted(stub):
    # The client always sends a key; the agent must not require one.
    eid = stub.Execute(pb.ExecuteRequest(pack="bolt-test", action="echo", args={"msg": "x"}), timeout=10).execution_id
    stream = stub.StreamOutput(pb.StreamOutputRequest(execution_id=eid, follow=True), timeout=30)
    end = [c for c in stream if c.end]
    assert [c.execution.state for c in end] == [pb.STATE_SUCCEEDED]
    assert end[0].execution.idempotency_key == ""


def test_history_pages_and_filters(client):
    ids = [execute(client, "fail", code=i % 2) for i in range(7)]
    for eid in ids:
        wait_state(client, eid)
    page1 = client.list_executions(page_size=3)
    assert [e.execution_id for e in page1.executions] == ids[::-1][:3]
    assert page1.next_page_token
    page2 = client.list_executions(page_size=3, page_token=page1.next_page_token)
    page3 = client.list_executions(page_size=3, page_token=page2.next_page_token)
    assert [e.execution_id for e in [*page1.executions, *page2.executions, *page3.executions]] == ids[::-1]
    assert not page3.next_page_token
    assert [e.execution_id for e in client.iter_executions()] == ids[::-1]
    failed = client.list_executions(states=[State.FAILED]).executions
    assert {e.execution_id for e in failed} == {ids[i] for i in (1, 3, 5)}
    first = get(client, ids[0])
    since = client.list_executions(since=first.created_at).executions
    assert ids[0] in {e.execution_id for e in since}
    none = client.list_executions(pack="other").executions
    assert none == []


def test_output_cap_marks_truncation_and_keeps_running(make_agent):
    a = make_agent(config='[exec]\noutput_max = "64KiB"\n')
    with client_for(a) as c:
        eid = execute(c, "flood", bytes=1_000_000)
        chunks, end = follow(c, eid)
    e = end.execution
    assert e.state is State.SUCCEEDED and e.output_truncated
    assert e.stdout_bytes == 1_000_000
    kept = len(text(chunks)) + len(text(chunks, Stream.STDERR))
    assert 60 * 1024 < kept <= 64 * 1024  # the cap counts the 16-byte record headers too
    notice = text(chunks, Stream.SYSTEM)
    assert "output truncated" in notice and "65536" in notice
    on_disk = (a.data_dir / "executions" / eid / "output.log").stat().st_size
    assert on_disk <= 64 * 1024 + 8 + 16 + len(notice.encode()), on_disk
