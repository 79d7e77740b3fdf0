"""Fleet orchestration over an inventory, on asyncio (private).

One task per *running* instance, never a thread: a fleet of thousands is a few
thousand grpc.aio streams in one event loop.

Semantics (shared with the Java client, specified once in
integration/scenarios/README.md and pinned by its vectors, the helper ones
included: idempotency keys, strategy names, failure budgets, option names):

- The inventory is split into ordered groups by the strategy:
  ``one-at-a-time`` (each instance alone, inventory order; the default), ``az``
  (one group per availability zone, in order of first appearance), ``region``
  (per region), ``parallel`` (everything). A group starts only once every
  execution of the previous one has ended; inside a group at most
  ``max_concurrency`` instances run at once (always 1 for one-at-a-time).
- Each instance ends in one :class:`Outcome`: the execution's final state, or
  SKIPPED (never started: the failure budget was exceeded), UNHEALTHY (the
  optional health gate failed; nothing was executed) or ERROR (a call failed).
- Every outcome other than SUCCEEDED and SKIPPED is an error. ``max_errors``
  (a count, or ``"P%"``: floor(P × instances / 100), exactly; default 0) errors
  are allowed; once exceeded no new instance starts, running ones finish, and
  the report says ``stopped``.
- ``instance_timeout`` is sent as the execution's timeout (the agent ends it
  TIMED_OUT); if no end is seen ``timeout_grace`` seconds after it, the client
  kills the execution and reports TIMED_OUT.
- Each instance's idempotency key is :func:`idempotency_key` of the run id and
  the instance id, so running again with the same run id re-attaches.
- Fire-and-check-back: :meth:`Fleet.submit` returns :class:`Handle` objects
  (serialisable with ``to_dict``) that :meth:`Fleet.status`, ``wait``, ``tail``
  and ``kill`` accept later, from any process.
"""

from __future__ import annotations

import asyncio
import enum
import hashlib
import re
import time
import uuid
import warnings
from contextlib import aclosing
from collections.abc import AsyncGenerator, Callable, Iterable, Mapping, Sequence
from dataclasses import InitVar, dataclass, field
from datetime import datetime
from typing import Any


from ._client import AsyncBoltClient, PathLike
from ._config import Config, RetryPolicy, TLSConfig
from ._exceptions import BoltError, ConfigError
from ._inventory import Instance, InventoryProvider
from ._models import Execution, Health, KillResult, OutputChunk, State

__all__ = [
    "Fleet",
    "FleetOptions",
    "FleetProgress",
    "FleetReport",
    "Handle",
    "InstanceReport",
    "Outcome",
    "Strategy",
    "allowed_errors",
    "concurrency_limit",
    "idempotency_key",
    "plan_groups",
    "run_fleet",
]


#: Accepted spellings besides the canonical names (the Java client has the same).
_STRATEGY_ALIASES = {"serial": "one-at-a-time", "one": "one-at-a-time", "zone": "az", "all": "parallel"}


class Strategy(str, enum.Enum):
    """How a rollout walks the inventory."""

    ONE_AT_A_TIME = "one-at-a-time"
    AZ = "az"
    REGION = "region"
    PARALLEL = "parallel"

    @classmethod
    def parse(cls, value: "str | Strategy") -> "Strategy":
        """A canonical name or alias (serial, one, zone, all), in any case, ``_``
        for ``-``, surrounding spaces ignored."""
        if isinstance(value, Strategy):
            return value
        v = value.strip().lower().replace("_", "-")
        try:
            return cls(_STRATEGY_ALIASES.get(v, v))
        except ValueError:
            raise ConfigError(
                f"unknown strategy {value!r}: one of one-at-a-time, az, region, parallel"
            ) from None

    def __str__(self) -> str:
        return self.value


class Outcome(str, enum.Enum):
    """What happened on one instance of a rollout."""

    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    TIMED_OUT = "TIMED_OUT"
    KILLED = "KILLED"
    OOM_KILLED = "OOM_KILLED"
    LOST = "LOST"
    SKIPPED = "SKIPPED"
    UNHEALTHY = "UNHEALTHY"
    ERROR = "ERROR"
    # Live values, seen only in status() of handles and in progress counts.
    WAITING = "WAITING"
    PENDING = "PENDING"
    RUNNING = "RUNNING"

    @property
    def is_error(self) -> bool:
        return self not in (Outcome.SUCCEEDED, Outcome.SKIPPED, Outcome.WAITING, Outcome.PENDING, Outcome.RUNNING)

    @classmethod
    def of(cls, state: State) -> "Outcome":
        try:
            return cls(state.value)
        except ValueError:
            return cls.ERROR

    def __str__(self) -> str:
        return self.value


@dataclass(frozen=True)
class FleetOptions:
    """How a rollout runs (the same names as the Java client's ``RolloutOptions``)."""

    strategy: Strategy = Strategy.ONE_AT_A_TIME
    #: Most instances running at once inside a group: a count, or "P%" of the
    #: group (at least 1); None = unlimited.
    max_concurrency: int | str | None = None
    #: Errors allowed before the rollout stops: a count, or "P%" of the inventory.
    max_errors: int | str = 0
    #: Call Health before each instance; skip it (UNHEALTHY) unless SERVING or DEGRADED.
    health_gate: bool = False
    health_timeout: float = 3.0
    #: Run time limit of each execution, in seconds (sent with Execute).
    instance_timeout: float | None = None
    #: Extra seconds to wait past instance_timeout before killing from the client.
    timeout_grace: float = 5.0
    #: Bytes of the end of the output kept in each report.
    excerpt_bytes: int = 2048
    #: Deprecated name of ``timeout_grace`` (it is not the agent's kill grace).
    kill_grace: InitVar[float | None] = None

    def __post_init__(self, kill_grace: float | None) -> None:
        if kill_grace is not None:
            warnings.warn("FleetOptions: kill_grace is deprecated, use timeout_grace", DeprecationWarning, stacklevel=3)
            object.__setattr__(self, "timeout_grace", kill_grace)
        object.__setattr__(self, "strategy", Strategy.parse(self.strategy))
        if self.max_concurrency is not None:
            concurrency_limit(self.max_concurrency, 1)  # validates
        allowed_errors(self.max_errors, 1)  # validates


_COUNT = re.compile(r"[0-9]+")
_PERCENT = re.compile(r"([0-9]+)(?:\.([0-9]{1,6}))?\s*%")


def allowed_errors(max_errors: int | str, total: int) -> int:
    """How many errors a budget allows for ``total`` instances: a count N (an int
    or its digits), or ``"P%"`` (0 <= P <= 100, at most 6 decimals), which allows
    floor(P × total / 100) computed exactly (never more than asked)."""
    if isinstance(max_errors, str):
        s = max_errors.strip()
        frac = _percent(s, "max_errors")
        if frac is not None:
            p, scale = frac
            return p * total // (100 * scale)
        if not _COUNT.fullmatch(s):
            raise ConfigError(f"bad max_errors {max_errors!r}: a count like 3 or a percentage like 10%")
        return int(s)
    if isinstance(max_errors, bool) or not isinstance(max_errors, int):
        raise ConfigError(f"bad max_errors {max_errors!r}: a count like 3 or a percentage like 10%")
    if max_errors < 0:
        raise ConfigError("max_errors must not be negative")
    return max_errors


def _percent(spec: str, what: str) -> tuple[int, int] | None:
    """``"P%"`` as the exact fraction (P × scale, scale); None when not a percentage."""
    pct = _PERCENT.fullmatch(spec.strip())
    if not pct:
        return None
    whole, frac = pct.group(1), pct.group(2) or ""
    scale: int = 10 ** len(frac)
    p = int(whole) * scale + int(frac or "0")
    if p > 100 * scale:
        raise ConfigError(f"{what} percentage out of range: {spec!r}")
    return p, scale


def _canonical(spec: int | str | None, what: str) -> int | str | None:
    """An option as the rollout understood it: a count as an int, a percentage as
    ``"P%"`` without spaces or trailing zeros (the JSON of a report)."""
    if spec is None or isinstance(spec, bool) or not isinstance(spec, str):
        return spec
    frac = _percent(spec, what)
    if frac is None:
        return int(spec.strip())
    p, scale = frac
    whole, rest = divmod(p, scale)
    decimals = f"{rest:0{len(str(scale)) - 1}d}".rstrip("0") if scale > 1 else ""
    return f"{whole}.{decimals}%" if decimals else f"{whole}%"


def concurrency_limit(max_concurrency: int | str, group_size: int) -> int:
    """How many instances of a group of ``group_size`` may run at once: a count N
    >= 1 (an int or its digits), or ``"P%"`` (0 < P <= 100), which allows
    max(1, floor(P × group_size / 100)) computed exactly."""
    bad = f"bad max_concurrency {max_concurrency!r}: a count like 5 or a percentage like 10%"
    if isinstance(max_concurrency, str):
        frac = _percent(max_concurrency, "max_concurrency")
        if frac is not None:
            p, scale = frac
            if p == 0:
                raise ConfigError(f"{bad} (0% would run nothing; leave it unset for no limit)")
            return max(1, p * group_size // (100 * scale))
        if not _COUNT.fullmatch(max_concurrency.strip()):
            raise ConfigError(bad)
        n = int(max_concurrency.strip())
    elif isinstance(max_concurrency, bool) or not isinstance(max_concurrency, int):
        raise ConfigError(bad)
    else:
        n = max_concurrency
    if n < 1:
        raise ConfigError(f"max_concurrency must be at least 1, got {max_concurrency!r} (leave it unset for no limit)")
    return n


def _check_run_id(run_id: str) -> None:
    if not run_id or ":" in run_id:
        raise ConfigError(f"bad run id {run_id!r}: it must be non-empty and hold no ':'")


def idempotency_key(run_id: str, instance_id: str) -> str:
    """The Execute idempotency key of one instance of a run: ``run_id:instance_id``,
    or, when that is over 128 UTF-8 bytes (the agent's limit), ``sha256:`` and the
    hex SHA-256 of it, so long keys stay distinct. ``run_id`` must be non-empty
    and hold no ``:``, so that no two (run, instance) pairs share a key."""
    _check_run_id(run_id)
    key = f"{run_id}:{instance_id}".encode()
    if len(key) <= 128:
        return key.decode()
    return "sha256:" + hashlib.sha256(key).hexdigest()


#: Label of the group of instances without a zone (or region).
UNKNOWN_GROUP = "(unknown)"


def plan_groups(instances: Sequence[Instance], strategy: Strategy | str) -> list[tuple[str, list[Instance]]]:
    """The ordered groups a strategy walks, each with its label."""
    strategy = Strategy.parse(strategy)
    if strategy is Strategy.ONE_AT_A_TIME:
        return [(i.id, [i]) for i in instances]
    if strategy is Strategy.PARALLEL:
        return [("all", list(instances))] if instances else []
    groups: dict[str, list[Instance]] = {}
    for i in instances:
        k = i.availability_zone if strategy is Strategy.AZ else i.region
        groups.setdefault(k or UNKNOWN_GROUP, []).append(i)
    return list(groups.items())


@dataclass
class InstanceReport:
    """The result of one instance of a rollout (or the status of a handle)."""

    instance: Instance
    outcome: Outcome
    execution_id: str = ""
    exit_code: int | None = None
    #: Seconds from start to end, from the agent's record when it has one.
    duration: float | None = None
    output_excerpt: str = ""
    error: str = ""
    group: str = ""
    execution: Execution | None = None

    @property
    def started_at(self) -> datetime | None:
        e = self.execution
        return (e.started_at or e.created_at) if e else None

    @property
    def ended_at(self) -> datetime | None:
        return self.execution.ended_at if self.execution else None

    def to_dict(self) -> dict[str, Any]:
        return {
            "instance": self.instance.to_dict(),
            "outcome": self.outcome.value,
            "execution_id": self.execution_id,
            "exit_code": self.exit_code,
            "duration": self.duration,
            "output_excerpt": self.output_excerpt,
            "error": self.error,
            "group": self.group,
            "started_at": self.started_at.isoformat() if self.started_at else None,
            "ended_at": self.ended_at.isoformat() if self.ended_at else None,
        }


@dataclass
class FleetReport:
    run_id: str
    pack: str
    action: str
    options: FleetOptions
    reports: list[InstanceReport]
    stopped: bool
    errors: int
    allowed_errors: int
    duration: float

    @property
    def ok(self) -> bool:
        return self.errors == 0 and not self.stopped

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for r in self.reports:
            out[r.outcome.value] = out.get(r.outcome.value, 0) + 1
        return out

    def by_id(self) -> dict[str, InstanceReport]:
        return {r.instance.id: r for r in self.reports}

    def to_dict(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "action": f"{self.pack}/{self.action}",
            "strategy": self.options.strategy.value,
            "max_concurrency": _canonical(self.options.max_concurrency, "max_concurrency"),
            "max_errors": _canonical(self.options.max_errors, "max_errors"),
            "stopped": self.stopped,
            "errors": self.errors,
            "allowed_errors": self.allowed_errors,
            "duration": self.duration,
            "counts": self.counts(),
            "instances": [r.to_dict() for r in self.reports],
        }


@dataclass
class FleetProgress:
    """A snapshot given to ``on_progress`` after every change."""

    total: int
    counts: dict[str, int]
    group: str = ""
    group_index: int = 0
    groups: int = 0
    errors: int = 0
    allowed_errors: int = 0
    stopped: bool = False
    last: InstanceReport | None = None
    #: Ids of the instances running now (PENDING or RUNNING), in start order (at most 100).
    running: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Handle:
    """A started execution on one instance: enough to check back from anywhere."""

    instance: Instance
    execution_id: str
    pack: str = ""
    action: str = ""
    idempotency_key: str = ""
    #: Why Execute failed (then execution_id is empty).
    error: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "instance": self.instance.to_dict(),
            "execution_id": self.execution_id,
            "pack": self.pack,
            "action": self.action,
            "idempotency_key": self.idempotency_key,
            "error": self.error,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "Handle":
        return cls(
            instance=Instance.from_dict(d["instance"]),
            execution_id=str(d.get("execution_id", "")),
            pack=str(d.get("pack", "")),
            action=str(d.get("action", "")),
            idempotency_key=str(d.get("idempotency_key", "")),
            error=str(d.get("error", "")),
        )


@dataclass
class _RunState:
    errors: int = 0
    stopped: bool = False
    group: str = ""
    group_index: int = 0


#: Starts an output excerpt that lost its beginning.
EXCERPT_MARK = "…"


class _Excerpt:
    """The last ``limit`` bytes of an output (the rules are shared with Java:
    integration/scenarios/README.md, "Output excerpt")."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.buf = bytearray()
        self.dropped = False

    def add(self, data: bytes) -> None:
        self.buf += data
        if len(self.buf) > self.limit:
            del self.buf[: len(self.buf) - self.limit]
            self.dropped = True

    def text(self) -> str:
        """The kept bytes as text; after a cut, ``…`` and no partial first character."""
        if self.limit <= 0:
            return ""
        data = bytes(self.buf)
        if not self.dropped:
            return data.decode("utf-8", errors="replace")
        start = 0
        while start < len(data) and data[start] & 0xC0 == 0x80:  # UTF-8 continuation bytes
            start += 1
        return EXCERPT_MARK + data[start:].decode("utf-8", errors="replace")


async def _health_gate(client: AsyncBoltClient, timeout: float) -> str | None:
    """Why an instance fails the health gate (it must be SERVING or DEGRADED), or None."""
    try:
        h = await client.health(timeout=timeout)
    except BoltError as exc:
        return str(exc)
    if h.ok:
        return None
    return f"agent {h.status.value}: {'; '.join(h.problems) or 'no problem listed'}"


def _duration(e: Execution | None) -> float | None:
    d = e.duration if e else None
    return d.total_seconds() if d is not None else None


class Fleet:
    """Async orchestration of many agents with one mTLS identity.

    ``async with Fleet(ca=..., cert=..., key=...) as fleet: report = await
    fleet.run(inventory, "pack", "action", {"k": "v"}, strategy="az")``.
    One channel per agent address, opened on first use, closed by :meth:`close`.
    """

    def __init__(
        self,
        *,
        tls: TLSConfig | None = None,
        ca: PathLike | None = None,
        cert: PathLike | None = None,
        key: PathLike | None = None,
        server_name: str | None = None,
        timeout: float | None = None,
        retry: RetryPolicy | None = None,
        config_file: PathLike | None = None,
        profile: str | None = None,
    ) -> None:
        cfg = Config.load(
            ca=ca, cert=cert, key=key, server_name=server_name, timeout=timeout, config_file=config_file, profile=profile
        )
        self.tls = tls if tls is not None else cfg.tls()
        self.timeout = cfg.timeout if timeout is None else timeout
        self.port = cfg.port
        self._config = cfg
        self.retry = retry
        self._credentials = self.tls.credentials()
        self._clients: dict[str, AsyncBoltClient] = {}

    async def __aenter__(self) -> "Fleet":
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        clients, self._clients = list(self._clients.values()), {}
        await asyncio.gather(*(c.close() for c in clients), return_exceptions=True)

    def client(self, address: str) -> AsyncBoltClient:
        """The (cached) client of one agent address."""
        c = self._clients.get(address)
        if c is None:
            c = AsyncBoltClient(
                address, tls=self.tls, timeout=self.timeout, retry=self.retry, credentials=self._credentials,
                config=self._config,
            )
            self._clients[address] = c
        return c

    @staticmethod
    async def _resolve(inventory: Sequence[Instance] | InventoryProvider) -> list[Instance]:
        if isinstance(inventory, InventoryProvider) and not isinstance(inventory, (list, tuple)):
            return await asyncio.to_thread(inventory.instances)
        return list(inventory)

    # --- rollout --------------------------------------------------------------

    async def run(
        self,
        inventory: Sequence[Instance] | InventoryProvider,
        pack: str,
        action: str,
        args: Mapping[str, Any] | None = None,
        *,
        options: FleetOptions | None = None,
        on_progress: Callable[[FleetProgress], None] | None = None,
        run_id: str | None = None,
        instance_args: Mapping[str, Mapping[str, Any]] | None = None,
        **option_kwargs: Any,
    ) -> FleetReport:
        """Roll ``pack/action`` over the inventory; see the module docstring.

        Options come as ``options=FleetOptions(...)`` or keywords (``strategy="az"``,
        ``max_errors="10%"``, ...). ``run_id`` makes the idempotency keys: running
        again with the same ``run_id`` re-attaches to executions already started
        instead of starting them twice. ``instance_args`` overrides args per instance id.
        """
        opts = options or FleetOptions(**option_kwargs)
        instances = await self._resolve(inventory)
        ids = [i.id for i in instances]
        if len(set(ids)) != len(ids):
            raise ConfigError("inventory has duplicate instance ids")
        run_id = run_id or "fleet-" + uuid.uuid4().hex[:16]
        _check_run_id(run_id)
        groups = plan_groups(instances, opts.strategy)
        allowed = allowed_errors(opts.max_errors, len(instances))
        reports: dict[str, InstanceReport] = {}
        live: dict[str, Outcome] = {i.id: Outcome.WAITING for i in instances}
        # Kept incrementally so that progress costs O(1) per event, not O(fleet).
        counts: dict[str, int] = {Outcome.WAITING.value: len(instances)} if instances else {}
        active: dict[str, None] = {}  # PENDING or RUNNING, in start order
        st = _RunState()
        t0 = time.monotonic()

        def set_state(iid: str, o: Outcome) -> None:
            old = live[iid]
            counts[old.value] -= 1
            if not counts[old.value]:
                del counts[old.value]
            counts[o.value] = counts.get(o.value, 0) + 1
            live[iid] = o
            if o in (Outcome.PENDING, Outcome.RUNNING):
                active[iid] = None
            else:
                active.pop(iid, None)

        def emit(last: InstanceReport | None = None) -> None:
            if on_progress is None:
                return
            on_progress(
                FleetProgress(
                    total=len(instances),
                    counts=dict(counts),
                    group=st.group,
                    group_index=st.group_index,
                    groups=len(groups),
                    errors=st.errors,
                    allowed_errors=allowed,
                    stopped=st.stopped,
                    last=last,
                    running=list(active)[:100],
                )
            )

        def finish(r: InstanceReport) -> None:
            reports[r.instance.id] = r
            set_state(r.instance.id, r.outcome)
            if r.outcome.is_error:
                st.errors += 1
                if st.errors > allowed:
                    st.stopped = True
            emit(r)

        def running(i: Instance, o: Outcome) -> None:
            set_state(i.id, o)
            emit()

        for gi, (label, members) in enumerate(groups):
            if st.stopped:
                for i in members:
                    finish(InstanceReport(i, Outcome.SKIPPED, group=label, error="failure budget exceeded"))
                continue
            st.group, st.group_index = label, gi + 1
            emit()
            if opts.strategy is Strategy.ONE_AT_A_TIME:
                limit = 1
            elif opts.max_concurrency is None:
                limit = len(members)
            else:
                limit = concurrency_limit(opts.max_concurrency, len(members))
            sem = asyncio.Semaphore(limit)
            tasks: list[asyncio.Task[None]] = []

            async def one(i: Instance, label: str = label, sem: asyncio.Semaphore = sem) -> None:
                try:
                    a = dict(args or {})
                    a.update((instance_args or {}).get(i.id, {}))
                    r = await self._run_one(i, pack, action, a, opts, idempotency_key(run_id, i.id), running)
                    r.group = label
                    finish(r)
                finally:
                    sem.release()

            for i in members:
                await sem.acquire()
                if st.stopped:
                    sem.release()
                    finish(InstanceReport(i, Outcome.SKIPPED, group=label, error="failure budget exceeded"))
                    continue
                set_state(i.id, Outcome.PENDING)
                tasks.append(asyncio.create_task(one(i)))
            if tasks:
                await asyncio.gather(*tasks)

        return FleetReport(
            run_id=run_id,
            pack=pack,
            action=action,
            options=opts,
            reports=[reports[i.id] for i in instances],
            stopped=st.stopped,
            errors=st.errors,
            allowed_errors=allowed,
            duration=time.monotonic() - t0,
        )

    async def _run_one(
        self,
        inst: Instance,
        pack: str,
        action: str,
        args: dict[str, Any],
        opts: FleetOptions,
        key: str,
        running: Callable[[Instance, Outcome], None],
    ) -> InstanceReport:
        t0 = time.monotonic()
        try:
            client = self.client(inst.address)
        except BoltError as exc:
            return InstanceReport(inst, Outcome.ERROR, error=str(exc))
        if opts.health_gate and (refused := await _health_gate(client, opts.health_timeout)):
            return InstanceReport(inst, Outcome.UNHEALTHY, error=refused, duration=time.monotonic() - t0)
        try:
            started = await client.execute(
                pack, action, args, idempotency_key=key, action_timeout=opts.instance_timeout
            )
        except BoltError as exc:
            return InstanceReport(inst, Outcome.ERROR, error=str(exc), duration=time.monotonic() - t0)
        eid = started.execution_id
        running(inst, Outcome.RUNNING)
        excerpt = _Excerpt(opts.excerpt_bytes)

        async def follow() -> Execution | None:
            async with aclosing(client.tail(eid)) as chunks:
                async for c in chunks:
                    if c.end:
                        return c.execution
                    excerpt.add(c.data)
            return None

        limit = None if opts.instance_timeout is None else opts.instance_timeout + opts.timeout_grace
        timed_out = False
        try:
            try:
                final = await asyncio.wait_for(follow(), limit)
            except asyncio.TimeoutError:
                timed_out = True
                await client.kill(eid)
                final = await client.wait(eid, timeout=max(opts.timeout_grace, 5.0) + 10.0)
            if final is None:
                final = await client.get_execution(eid)
        except BoltError as exc:
            return InstanceReport(
                inst, Outcome.ERROR, execution_id=eid, error=str(exc),
                output_excerpt=excerpt.text(), duration=time.monotonic() - t0,
            )
        outcome = Outcome.of(final.state) if final.state.is_final else Outcome.ERROR
        error = final.error
        if timed_out:
            outcome = Outcome.TIMED_OUT
            error = error or f"no end within {limit}s; killed by the client"
        elif not final.state.is_final:
            error = f"stream ended while {final.state}"
        return InstanceReport(
            inst,
            outcome,
            execution_id=eid,
            exit_code=final.exit_code,
            duration=_duration(final) or (time.monotonic() - t0),
            output_excerpt=excerpt.text(),
            error=error,
            execution=final,
        )

    # --- fire and check back ------------------------------------------------------

    async def submit(
        self,
        inventory: Sequence[Instance] | InventoryProvider,
        pack: str,
        action: str,
        args: Mapping[str, Any] | None = None,
        *,
        options: FleetOptions | None = None,
        action_timeout: float | None = None,
        run_id: str | None = None,
    ) -> list[Handle]:
        """Start ``pack/action`` on every instance (no strategy, no waiting); one
        handle per instance, in inventory order, as the Java client's ``submit``.
        From ``options``: ``health_gate`` (an instance that fails it gets a handle
        with ``error`` and no execution), ``max_concurrency`` (Executes in flight at
        once; a percentage is of all the instances; unset = all at once) and
        ``instance_timeout`` (the run limit, unless ``action_timeout`` is given). A
        failed Execute gives a handle with ``error`` set and no execution id. The
        same ``run_id`` twice returns the same executions (idempotency keys)."""
        opts = options or FleetOptions()
        instances = await self._resolve(inventory)
        run_id = run_id or "submit-" + uuid.uuid4().hex[:16]
        _check_run_id(run_id)
        limit = len(instances) if opts.max_concurrency is None else concurrency_limit(opts.max_concurrency, len(instances))
        sem = asyncio.Semaphore(max(1, limit))
        run_limit = action_timeout if action_timeout is not None else opts.instance_timeout

        async def one(i: Instance) -> Handle:
            key = idempotency_key(run_id, i.id)
            async with sem:
                try:
                    client = self.client(i.address)
                    if opts.health_gate and (refused := await _health_gate(client, opts.health_timeout)):
                        return Handle(i, "", pack, action, key, error=refused)
                    r = await client.execute(pack, action, dict(args or {}), idempotency_key=key, action_timeout=run_limit)
                except BoltError as exc:
                    return Handle(i, "", pack, action, key, error=str(exc))
            return Handle(i, r.execution_id, pack, action, key)

        return list(await asyncio.gather(*(one(i) for i in instances)))

    async def _each(
        self, handles: Iterable[Handle], fn: Callable[[Handle], Any], max_concurrency: int
    ) -> list[Any]:
        sem = asyncio.Semaphore(max_concurrency)

        async def one(h: Handle) -> Any:
            async with sem:
                return await fn(h)

        return list(await asyncio.gather(*(one(h) for h in handles)))

    def _report(self, h: Handle, e: Execution) -> InstanceReport:
        return InstanceReport(
            h.instance,
            Outcome.of(e.state) if e.state is not State.UNSPECIFIED else Outcome.ERROR,
            execution_id=e.execution_id,
            exit_code=e.exit_code,
            duration=_duration(e),
            error=e.error,
            execution=e,
        )

    async def status(self, handles: Iterable[Handle], *, max_concurrency: int = 256) -> list[InstanceReport]:
        """The current state of each handle's execution (one GetExecution each)."""

        async def one(h: Handle) -> InstanceReport:
            if not h.execution_id:
                return InstanceReport(h.instance, Outcome.ERROR, error=h.error)
            try:
                return self._report(h, await self.client(h.instance.address).get_execution(h.execution_id))
            except BoltError as exc:
                return InstanceReport(h.instance, Outcome.ERROR, execution_id=h.execution_id, error=str(exc))

        return await self._each(handles, one, max_concurrency)

    async def wait(
        self, handles: Iterable[Handle], *, timeout: float | None = None, excerpt_bytes: int = 2048, max_concurrency: int = 1024
    ) -> list[InstanceReport]:
        """Wait for every handle's execution to end (following its output for the excerpt).
        With ``timeout``, executions still live then are reported with their live state."""

        async def one(h: Handle) -> InstanceReport:
            if not h.execution_id:
                return InstanceReport(h.instance, Outcome.ERROR, error=h.error)
            client = self.client(h.instance.address)
            excerpt = _Excerpt(excerpt_bytes)

            async def follow() -> Execution:
                async with aclosing(client.tail(h.execution_id)) as chunks:
                    async for c in chunks:
                        if c.end and c.execution is not None:
                            return c.execution
                        excerpt.add(c.data)
                return await client.get_execution(h.execution_id)

            try:
                try:
                    e = await asyncio.wait_for(follow(), timeout)
                except asyncio.TimeoutError:
                    e = await client.get_execution(h.execution_id)
            except BoltError as exc:
                return InstanceReport(h.instance, Outcome.ERROR, execution_id=h.execution_id, error=str(exc))
            r = self._report(h, e)
            r.output_excerpt = excerpt.text()
            return r

        return await self._each(handles, one, max_concurrency)

    async def kill(
        self, handles: Iterable[Handle], *, grace: float | None = None, max_concurrency: int = 256
    ) -> list[KillResult | BoltError | None]:
        """Kill each handle's execution: its KillResult, the error of the call, or None
        for a handle that never started (its Execute failed: nothing to kill)."""

        async def one(h: Handle) -> KillResult | BoltError | None:
            if not h.execution_id:
                return None
            try:
                return await self.client(h.instance.address).kill(h.execution_id, grace=grace)
            except BoltError as exc:
                return exc

        return await self._each(handles, one, max_concurrency)

    def tail(self, handle: Handle, *, offset: int = 0, follow: bool = True) -> AsyncGenerator[OutputChunk, None]:
        return self.client(handle.instance.address).tail(handle.execution_id, offset=offset, follow=follow)

    async def health(
        self, inventory: Sequence[Instance] | InventoryProvider, *, timeout: float = 3.0, max_concurrency: int = 256
    ) -> dict[str, Health | BoltError]:
        instances = await self._resolve(inventory)
        sem = asyncio.Semaphore(max_concurrency)

        async def one(i: Instance) -> Health | BoltError:
            async with sem:
                try:
                    return await self.client(i.address).health(timeout=timeout)
                except BoltError as exc:
                    return exc

        results = await asyncio.gather(*(one(i) for i in instances))
        return {i.id: r for i, r in zip(instances, results)}


def run_fleet(
    inventory: Sequence[Instance] | InventoryProvider,
    pack: str,
    action: str,
    args: Mapping[str, Any] | None = None,
    *,
    tls: TLSConfig | None = None,
    on_progress: Callable[[FleetProgress], None] | None = None,
    **options: Any,
) -> FleetReport:
    """Blocking convenience: ``asyncio.run`` of :meth:`Fleet.run` with a fresh Fleet."""

    async def main() -> FleetReport:
        async with Fleet(tls=tls) as fleet:
            return await fleet.run(inventory, pack, action, args, on_progress=on_progress, **options)

    return asyncio.run(main())


