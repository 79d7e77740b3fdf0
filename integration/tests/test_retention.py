"""History upkeep: outputs compressed after a while and served the same,
executions pruned after the retention, live ones never."""

from __future__ import annotations

from bolt_client import NotFoundError, State
from util import client_for, execute, follow, get, text, wait_until


def test_outputs_are_compressed_and_served_transparently(make_agent):
    a = make_agent(config='[history]\ncompress_after = "300ms"\nsweep_interval = "100ms"\n')
    s = client_for(a)
    eid = execute(s, "flood", bytes=300_000)
    chunks, end = follow(s, eid)
    plain = b"".join(c.data for c in chunks)
    folder = a.data_dir / "executions" / eid
    wait_until(lambda: (folder / "output.log.zst").exists() and not (folder / "output.log").exists(), 10, "compression")
    assert (folder / "output.log.zst").stat().st_size * 20 < len(plain)
    for offset in (0, 17, 150_000, len(plain)):
        again, end2 = follow(s, eid, offset=offset)
        assert b"".join(c.data for c in again) == plain[offset:]
        assert end2.execution.state is State.SUCCEEDED and end2.offset == len(plain)
    # Across a restart too.
    a.restart()
    again, _ = follow(client_for(a), eid)
    assert b"".join(c.data for c in again) == plain
    assert "history sweep" in a.log()


def test_old_executions_are_pruned_but_live_ones_stay(make_agent):
    a = make_agent(config='[history]\nretention = "1s"\nsweep_interval = "200ms"\nbatch = 2\n')
    s = client_for(a)
    live = execute(s, "sleep", ticks=30, interval="0.2")
    done = [execute(s, "echo", msg=f"m{i}", key=f"k{i}") for i in range(5)]
    for eid in done:
        follow(s, eid)
    def gone(eid: str) -> bool:
        try:
            get(s, eid)
            return False
        except NotFoundError:
            return True

    wait_until(lambda: all(gone(e) for e in done), 15, "pruning")
    for eid in done:
        assert not (a.data_dir / "executions" / eid).exists()
    assert get(s, live).state is State.RUNNING
    wait_until(lambda: "tick 1" in text(s.stream_output(live)), 10, "live output")
    listed = {e.execution_id for e in s.list_executions().executions}
    assert live in listed and not (set(done) & listed)
    # A pruned execution's idempotency key starts a new execution.
    again = s.execute("bolt-test", "echo", {"msg": "m0"}, idempotency_key="k0")
    assert again.execution_id not in done and not again.deduplicated
    s.kill(live)
