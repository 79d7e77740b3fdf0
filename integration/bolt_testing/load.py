"""Load from several client processes against one real agent.

:func:`run_load` starts ``workers`` child processes (``python -m
bolt_testing.load``), each with its own gRPC channel (its own TCP connection),
lets them connect, starts them all at once and merges what they report. Each
worker runs asyncio lanes for a fixed time:

- Execute lanes: ``noop`` or ``echo`` with a unique idempotency key; some are
  retried at once with the same key (the answer must name the same
  execution), some are sent twice at the same time (both answers must agree),
  and some refused ones are retried later with the same key, as a client would;
- GetExecution lanes: the record of an execution this worker started (and now
  and then a ListExecutions page);
- StreamOutput lanes: follow an execution to its end (its final state must be
  SUCCEEDED, an echo's output must hold its message);
- connection churn lanes: a fresh connection, one Health call, closed.

Every call has a deadline. An answer is either OK or RESOURCE_EXHAUSTED whose
message names a ``limits.*`` setting ("refused"); anything else (another code,
a deadline exceeded, a missing end of stream, a wrong answer) is recorded as a
failure. Used by ``tests/test_load.py`` and ``bench/load_bench.py``.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import re
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
INTEGRATION = HERE.parent
GEN = INTEGRATION / ".gen"

LIMIT = re.compile(r"limits\.[a-z_]+")


@dataclass
class Mix:
    """What each worker process runs, and for how long."""

    seconds: float = 10.0
    # Executions each worker may have accepted; its Execute lanes stop there.
    max_accepted: int = 1_000_000
    exec_lanes: int = 6
    get_lanes: int = 2
    stream_lanes: int = 10
    churn_lanes: int = 4
    echo_share: float = 0.3
    # Share of executions of a second pack's "noop" (0 when there is none).
    other_pack: str = ""
    other_share: float = 0.0
    retry_share: float = 0.15  # accepted, then sent again at once
    race_share: float = 0.05  # sent twice at the same time
    retry_refused_share: float = 0.3  # refused, then retried with the same key
    unary_deadline: float = 10.0
    stream_deadline: float = 20.0
    # The longest a lane waits after a refusal before its next call.
    backoff: float = 0.01


# ----------------------------------------------------------------- worker side


class Worker:
    def __init__(self, spec: dict[str, Any]) -> None:
        import grpc
        from bolt.v1 import bolt_pb2 as pb
        from bolt.v1 import bolt_pb2_grpc

        self.grpc, self.pb, self.pb_grpc = grpc, pb, bolt_pb2_grpc
        self.spec = spec
        self.mix = Mix(**spec["mix"])
        self.rnd = random.Random(spec["seed"])
        self.prefix = spec["prefix"]
        self.creds = grpc.ssl_channel_credentials(
            Path(spec["ca"]).read_bytes(), Path(spec["key"]).read_bytes(), Path(spec["cert"]).read_bytes()
        )
        self.n = 0
        self.stop_at = 0.0
        # kind -> latencies (ms) of OK answers
        self.lat: dict[str, list[float]] = {}
        # kind -> limit setting -> count
        self.refused: dict[str, dict[str, int]] = {}
        self.refused_samples: dict[str, str] = {}
        self.failures: list[str] = []
        self.failure_count = 0
        # key -> [id, action, msg, pack]
        self.accepted: dict[str, list[str]] = {}
        self.ids: list[str] = []
        self.retries_same = 0
        self.races = 0
        self.streams_checked = 0
        self.max_ms: dict[str, float] = {}

    def channel(self) -> Any:
        return self.grpc.aio.secure_channel(
            self.spec["target"],
            self.creds,
            options=[("grpc.ssl_target_name_override", "localhost"), ("grpc.use_local_subchannel_pool", 1)],
        )

    def fail(self, what: str) -> None:
        self.failure_count += 1
        if len(self.failures) < 40:
            self.failures.append(what)

    def ok(self, kind: str, t0: float) -> None:
        ms = (time.perf_counter() - t0) * 1000
        self.lat.setdefault(kind, []).append(round(ms, 3))
        if ms > self.max_ms.get(kind, 0.0):
            self.max_ms[kind] = ms

    def answered_error(self, kind: str, e: Any, t0: float) -> None:
        """A call ended with a status: a refusal naming a limit, or a failure."""
        code, details = e.code(), e.details() or ""
        ms = (time.perf_counter() - t0) * 1000
        m = LIMIT.search(details)
        if code == self.grpc.StatusCode.RESOURCE_EXHAUSTED and m:
            per = self.refused.setdefault(kind, {})
            per[m.group(0)] = per.get(m.group(0), 0) + 1
            self.refused_samples.setdefault(m.group(0), details)
        else:
            self.fail(f"{kind}: {code.name} after {ms:.0f} ms: {details}")

    async def unary(self, kind: str, method: Any, req: Any) -> Any:
        t0 = time.perf_counter()
        try:
            resp = await method(req, timeout=self.mix.unary_deadline)
        except self.grpc.RpcError as e:
            self.answered_error(kind, e, t0)
            return None
        self.ok(kind, t0)
        return resp

    def running(self) -> bool:
        return time.monotonic() < self.stop_at

    async def backoff(self) -> None:
        await asyncio.sleep(self.rnd.uniform(0, self.mix.backoff))

    def accept(self, key: str, eid: str, action: str, msg: str, pack: str) -> None:
        have = self.accepted.get(key)
        if have is None:
            self.accepted[key] = [eid, action, msg, pack]
            self.ids.append(eid)
        elif have[0] != eid:
            self.fail(f"Execute: key {key} gave {eid}, earlier {have[0]}")

    async def exec_lane(self, stub: Any) -> None:
        pb, mix = self.pb, self.mix
        while self.running() and len(self.accepted) < mix.max_accepted:
            self.n += 1
            key = f"{self.prefix}-{self.n}"
            echo = self.rnd.random() < mix.echo_share
            action, msg = ("echo", f"m-{key}") if echo else ("noop", "")
            pack = mix.other_pack if not echo and self.rnd.random() < mix.other_share else "bolt-test"
            req = pb.ExecuteRequest(pack=pack, action=action, args={"msg": msg} if echo else {}, idempotency_key=key)
            roll = self.rnd.random()
            if roll < mix.race_share:
                both = await asyncio.gather(self.unary("Execute", stub.Execute, req), self.unary("Execute", stub.Execute, req))
                got = [r for r in both if r is not None]
                self.races += 1
                if len({r.execution_id for r in got}) > 1:
                    self.fail(f"Execute: racing duplicates of {key} gave {[r.execution_id for r in got]}")
                if len(got) == 2 and sum(r.deduplicated for r in got) != 1:
                    self.fail(f"Execute: racing duplicates of {key}: deduplicated flags {[r.deduplicated for r in got]}")
                for r in got:
                    self.accept(key, r.execution_id, action, msg, pack)
                if not got:
                    await self.backoff()
                continue
            resp = await self.unary("Execute", stub.Execute, req)
            if resp is None:
                await self.backoff()
                if self.rnd.random() < mix.retry_refused_share:
                    resp = await self.unary("Execute", stub.Execute, req)
                    if resp is not None:
                        self.accept(key, resp.execution_id, action, msg, pack)
                continue
            if resp.deduplicated:
                self.fail(f"Execute: a new key {key} was answered as deduplicated")
            self.accept(key, resp.execution_id, action, msg, pack)
            if roll < mix.race_share + mix.retry_share:
                again = await self.unary("Execute (retry)", stub.Execute, req)
                if again is not None:
                    if again.execution_id != resp.execution_id or not again.deduplicated:
                        self.fail(f"Execute: retry of {key} gave {again.execution_id} dedup={again.deduplicated}, first {resp.execution_id}")
                    else:
                        self.retries_same += 1

    async def get_lane(self, stub: Any) -> None:
        pb = self.pb
        while self.running():
            if not self.ids:
                await asyncio.sleep(0.01)
                continue
            if self.rnd.random() < 0.03:
                r = await self.unary("ListExecutions", stub.ListExecutions, pb.ListExecutionsRequest(page_size=50))
                if r is not None and not r.executions:
                    self.fail("ListExecutions: an empty first page while executions exist")
                continue
            eid = self.rnd.choice(self.ids)
            e = await self.unary("GetExecution", stub.GetExecution, pb.GetExecutionRequest(execution_id=eid))
            if e is not None and e.execution_id != eid:
                self.fail(f"GetExecution: asked {eid}, got {e.execution_id}")
            if e is None:
                await self.backoff()

    async def stream_lane(self, stub: Any) -> None:
        pb = self.pb
        while self.running():
            if not self.ids:
                await asyncio.sleep(0.01)
                continue
            # Mostly recent ones (often still live), sometimes any.
            eid = self.ids[-1 - self.rnd.randrange(min(8, len(self.ids)))] if self.rnd.random() < 0.8 else self.rnd.choice(self.ids)
            t0 = time.perf_counter()
            out, end = [], None
            try:
                call = stub.StreamOutput(pb.StreamOutputRequest(execution_id=eid, follow=True), timeout=self.mix.stream_deadline)
                async for c in call:
                    if c.end:
                        end = c
                    else:
                        out.append(c.data)
            except self.grpc.RpcError as e:
                self.answered_error("StreamOutput", e, t0)
                await self.backoff()
                continue
            self.ok("StreamOutput", t0)
            if end is None:
                self.fail(f"StreamOutput: the stream of {eid} ended without its end message")
                continue
            if end.execution.state != pb.STATE_SUCCEEDED:
                self.fail(f"StreamOutput: {eid} ended {pb.State.Name(end.execution.state)}: {end.execution.error}")
            if end.execution.action == "echo":
                msg = end.execution.args.get("msg", "")
                if f"argv:--msg={msg}" not in b"".join(out).decode(errors="replace"):
                    self.fail(f"StreamOutput: echo {eid} output lacks its message {msg!r}")
            self.streams_checked += 1

    async def churn_lane(self) -> None:
        pb = self.pb
        while self.running():
            ch = self.channel()
            try:
                r = await self.unary("Health (new connection)", self.pb_grpc.BoltStub(ch).Health, pb.HealthRequest())
                if r is None:
                    await self.backoff()
            finally:
                await ch.close()

    async def run(self) -> dict[str, Any]:
        ch = self.channel()
        stub = self.pb_grpc.BoltStub(ch)
        # Connect before the start: the churn of the others must not take
        # this worker's place. A refused first try is retried.
        deadline = time.monotonic() + 20
        while True:
            try:
                await stub.Health(self.pb.HealthRequest(), timeout=10)
                break
            except self.grpc.RpcError:
                if time.monotonic() > deadline:
                    raise
                await ch.close()
                ch = self.channel()
                stub = self.pb_grpc.BoltStub(ch)
                await asyncio.sleep(0.1)
        print("ready", flush=True)
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, sys.stdin.readline)
        self.stop_at = time.monotonic() + self.mix.seconds
        t0 = time.perf_counter()
        m = self.mix
        lanes = (
            [self.exec_lane(stub) for _ in range(m.exec_lanes)]
            + [self.get_lane(stub) for _ in range(m.get_lanes)]
            + [self.stream_lane(stub) for _ in range(m.stream_lanes)]
            + [self.churn_lane() for _ in range(m.churn_lanes)]
        )
        await asyncio.gather(*lanes)
        elapsed = time.perf_counter() - t0
        await ch.close()
        return {
            "elapsed": elapsed,
            "lat": self.lat,
            "max_ms": self.max_ms,
            "refused": self.refused,
            "refused_samples": self.refused_samples,
            "failures": self.failures,
            "failure_count": self.failure_count,
            "accepted": self.accepted,
            "retries_same": self.retries_same,
            "races": self.races,
            "streams_checked": self.streams_checked,
        }


def worker_main() -> None:
    sys.path.insert(0, str(GEN))
    spec = json.loads(sys.argv[1])
    result = asyncio.run(Worker(spec).run())
    print(json.dumps(result), flush=True)


# ----------------------------------------------------------------- parent side


def rss(pid: int) -> int:
    """VmRSS of a process in bytes."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


@dataclass
class Report:
    workers: int
    elapsed: float
    lat: dict[str, list[float]] = field(default_factory=dict)
    max_ms: dict[str, float] = field(default_factory=dict)
    refused: dict[str, dict[str, int]] = field(default_factory=dict)
    refused_samples: dict[str, str] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)
    failure_count: int = 0
    # key -> [id, action, msg, pack], all workers
    accepted: dict[str, list[str]] = field(default_factory=dict)
    retries_same: int = 0
    races: int = 0
    streams_checked: int = 0
    rss_peak: int = 0

    @property
    def answered(self) -> int:
        return sum(len(v) for v in self.lat.values()) + self.refused_total

    @property
    def refused_total(self) -> int:
        return sum(n for per in self.refused.values() for n in per.values())

    def refused_by_limit(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for per in self.refused.values():
            for k, n in per.items():
                out[k] = out.get(k, 0) + n
        return out

    def percentile(self, kind: str, q: float) -> float:
        xs = sorted(self.lat.get(kind, []))
        if not xs:
            return float("nan")
        return xs[min(len(xs) - 1, max(0, int(round(q * len(xs))) - 1))]

    def summary(self) -> str:
        calls = self.answered + self.failure_count
        by = ", ".join(f"{k.removeprefix('limits.')}={n}" for k, n in sorted(self.refused_by_limit().items()))
        kinds = ", ".join(f"{k}={len(v)}" for k, v in sorted(self.lat.items()))
        return (
            f"load: {self.workers} processes, {calls} calls in {self.elapsed:.1f} s = {calls / self.elapsed:.0f}/s; "
            f"ok: {kinds}; refused {self.refused_total} ({by or 'none'}); "
            f"accepted {len(self.accepted)} executions; failures {self.failure_count}"
        )


def run_load(agent: Any, workers: int, mix: Mix, seed: int = 1) -> Report:
    """Runs ``workers`` client processes against ``agent`` (a started
    :class:`bolt_testing.Agent`) and merges their reports."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(INTEGRATION), str(GEN), os.environ.get("PYTHONPATH", "")])}
    prefix = f"load{int(time.time() * 1000) % 10**9}"
    procs = []
    for i in range(workers):
        spec = {
            "target": f"127.0.0.1:{agent.port}",
            "ca": str(agent.ca),
            "cert": str(agent.client_cert),
            "key": str(agent.client_key),
            "seed": seed * 1000 + i,
            "prefix": f"{prefix}-w{i}",
            "mix": mix.__dict__,
        }
        procs.append(
            subprocess.Popen(
                [sys.executable, "-m", "bolt_testing.load", json.dumps(spec)],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                cwd=INTEGRATION,
                env=env,
                text=True,
            )
        )
    try:
        for p in procs:
            line = p.stdout.readline()  # type: ignore[union-attr]
            if line.strip() != "ready":
                raise RuntimeError(f"load worker did not start: {line}{p.stderr.read()}")  # type: ignore[union-attr]
        peak = [0]
        done = threading.Event()
        pid = agent.proc.pid

        def sample() -> None:
            while not done.is_set():
                try:
                    peak[0] = max(peak[0], rss(pid))
                except OSError:
                    pass
                done.wait(0.05)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        t0 = time.perf_counter()
        for p in procs:
            p.stdin.write("go\n")  # type: ignore[union-attr]
            p.stdin.flush()  # type: ignore[union-attr]
        timeout = mix.seconds + mix.stream_deadline + 30
        outs = []
        for p in procs:
            out, err = p.communicate(timeout=max(1.0, timeout - (time.perf_counter() - t0)))
            if p.returncode != 0:
                raise RuntimeError(f"load worker failed ({p.returncode}):\n{err[-4000:]}")
            outs.append(json.loads(out.strip().splitlines()[-1]))
        elapsed = time.perf_counter() - t0
        done.set()
        sampler.join()
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    rep = Report(workers=workers, elapsed=elapsed, rss_peak=peak[0])
    for o in outs:
        for k, v in o["lat"].items():
            rep.lat.setdefault(k, []).extend(v)
        for k, v in o["max_ms"].items():
            rep.max_ms[k] = max(rep.max_ms.get(k, 0.0), v)
        for kind, per in o["refused"].items():
            mine = rep.refused.setdefault(kind, {})
            for lim, n in per.items():
                mine[lim] = mine.get(lim, 0) + n
        for k, v in o["refused_samples"].items():
            rep.refused_samples.setdefault(k, v)
        rep.failures += o["failures"]
        rep.failure_count += o["failure_count"]
        rep.accepted.update(o["accepted"])
        rep.retries_same += o["retries_same"]
        rep.races += o["races"]
        rep.streams_checked += o["streams_checked"]
    return rep


async def verify_history(agent: Any, rep: Report, settle: float = 30.0) -> dict[str, Any]:
    """Checks the agent's history against what the workers were told:
    ListExecutions (paged through everything) holds each accepted execution
    exactly once and nothing else, each reaches SUCCEEDED, GetExecution of
    each agrees, and retries sent now return the first execution. Returns
    figures; raises AssertionError on the first problem."""
    import grpc
    from bolt.v1 import bolt_pb2 as pb
    from bolt.v1 import bolt_pb2_grpc

    creds = grpc.ssl_channel_credentials(agent.ca.read_bytes(), agent.client_key.read_bytes(), agent.client_cert.read_bytes())
    ch = grpc.aio.secure_channel(f"127.0.0.1:{agent.port}", creds, options=[("grpc.ssl_target_name_override", "localhost")])
    stub = bolt_pb2_grpc.BoltStub(ch)
    want = {v[0]: k for k, v in rep.accepted.items()}
    assert len(want) == len(rep.accepted), "two idempotency keys were given the same execution id"
    terminal = {pb.STATE_SUCCEEDED, pb.STATE_FAILED, pb.STATE_TIMED_OUT, pb.STATE_KILLED, pb.STATE_OOM_KILLED, pb.STATE_LOST}
    try:
        t0 = time.monotonic()
        while True:
            listed: list[Any] = []
            token, pages = "", 0
            while True:
                r = await stub.ListExecutions(pb.ListExecutionsRequest(page_size=1000, page_token=token), timeout=30)
                listed += r.executions
                pages += 1
                token = r.next_page_token
                if not token:
                    break
            live = [e for e in listed if e.state not in terminal]
            if not live or time.monotonic() - t0 > settle:
                break
            await asyncio.sleep(0.2)
        list_s = time.monotonic() - t0
        ids = [e.execution_id for e in listed]
        dupes = {i for i in ids if ids.count(i) > 1} if len(set(ids)) != len(ids) else set()
        assert not dupes, f"ids listed twice: {sorted(dupes)[:5]}"
        missing = set(want) - set(ids)
        extra = set(ids) - set(want)
        assert not missing, f"{len(missing)} accepted executions missing from the history, e.g. {sorted(missing)[:3]}"
        assert not extra, f"{len(extra)} executions in the history that no Execute answer named, e.g. {sorted(extra)[:3]}"
        assert not live, f"{len(live)} executions still live {settle:.0f} s after the load, e.g. {live[0]}"
        bad = [e for e in listed if e.state != pb.STATE_SUCCEEDED]
        assert not bad, f"{len(bad)} executions did not succeed, e.g. {bad[0]}"
        for e in listed:
            key = want[e.execution_id]
            assert e.idempotency_key == key, (e.execution_id, e.idempotency_key, key)
            assert (e.action, e.pack) == (rep.accepted[key][1], rep.accepted[key][3]), e
        # Newest first, strictly.
        assert all(a.execution_id > b.execution_id for a, b in zip(listed, listed[1:])), "ListExecutions is not newest first"

        sem = asyncio.Semaphore(16)

        async def one(eid: str) -> Any:
            async with sem:
                return await stub.GetExecution(pb.GetExecutionRequest(execution_id=eid), timeout=10)

        t1 = time.monotonic()
        got = await asyncio.gather(*(one(i) for i in want))
        get_s = time.monotonic() - t1
        for e in got:
            assert e.execution_id in want and e.state == pb.STATE_SUCCEEDED, e
        # A retry now, with no load, returns the first execution. (Few at a
        # time: a retry is admitted like a new execution, so many at once
        # would meet limits.max_pending.)
        few = asyncio.Semaphore(2)
        keys = sorted(rep.accepted)
        sample = random.Random(7).sample(keys, min(200, len(keys)))

        async def retry(key: str) -> None:
            eid, action, msg, pack = rep.accepted[key]
            req = pb.ExecuteRequest(pack=pack, action=action, args={"msg": msg} if action == "echo" else {}, idempotency_key=key)
            async with few:
                r = await stub.Execute(req, timeout=10)
            assert r.execution_id == eid and r.deduplicated, (key, eid, r)

        await asyncio.gather(*(retry(k) for k in sample))
        h = await stub.Health(pb.HealthRequest(), timeout=5)
        assert h.status == pb.SERVING_STATUS_SERVING, h
        assert h.running == 0, h
        return {"listed": len(listed), "pages": pages, "list_s": list_s, "get_s": get_s, "retried_after": len(sample)}
    finally:
        await ch.close()


def settle_rss(pid: int, bound: int, since: float, trim: float = 10.5, timeout: float = 15.0) -> tuple[int, float]:
    """The RSS of ``pid`` once it has had the time of one allocator trim (the
    agent trims every 10 s) after ``since`` (a time.monotonic() figure, the
    end of the load), waiting up to ``timeout`` after ``since`` for it to come
    down to ``bound``. Returns the figure and when it was taken (s after
    ``since``)."""
    while time.monotonic() - since < trim:
        time.sleep(0.1)
    while True:
        now = rss(pid)
        waited = time.monotonic() - since
        if now <= bound or waited >= timeout:
            return now, waited
        time.sleep(0.25)


if __name__ == "__main__":
    worker_main()
