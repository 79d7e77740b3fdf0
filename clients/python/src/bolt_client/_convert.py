"""Conversions between generated protobuf messages and the public models (private)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

from google.protobuf import duration_pb2, timestamp_pb2

from ._models import (
    Action,
    AgentInfo,
    Execution,
    Health,
    InstanceInfo,
    KillResult,
    OutputChunk,
    PackError,
    PackInfo,
    PackSync,
    Param,
    ParamType,
    ServingStatus,
    State,
    Stream,
)
from ._proto import bolt_pb2 as pb


def _enum(cls: Any, pb_enum: Any, value: int, prefix: str) -> Any:
    try:
        name = pb_enum.Name(value)
    except ValueError:
        return cls("UNSPECIFIED")
    return cls(name[len(prefix):])


def state(value: int) -> State:
    s: State = _enum(State, pb.State, value, "STATE_")
    return s


def state_to_pb(s: State | str) -> int:
    v: int = pb.State.Value("STATE_" + State(str(s).upper()).value)
    return v


def ts(msg: Any, present: bool) -> datetime | None:
    if not present:
        return None
    return datetime.fromtimestamp(msg.seconds + msg.nanos / 1e9, tz=timezone.utc)


def ts_to_pb(dt: datetime) -> timestamp_pb2.Timestamp:
    t = timestamp_pb2.Timestamp()
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=timezone.utc)
    t.FromDatetime(dt.astimezone(timezone.utc))
    return t


def dur(msg: Any, present: bool) -> timedelta | None:
    if not present:
        return None
    return timedelta(seconds=msg.seconds, microseconds=msg.nanos / 1000)


def dur_to_pb(seconds: float | timedelta) -> duration_pb2.Duration:
    d = duration_pb2.Duration()
    if isinstance(seconds, timedelta):
        seconds = seconds.total_seconds()
    d.FromNanoseconds(int(round(seconds * 1e9)))
    return d


def param(p: Any) -> Param:
    return Param(
        name=p.name,
        type=_enum(ParamType, pb.ParamType, p.type, "PARAM_TYPE_"),
        description=p.description,
        required=p.required,
        default=p.default if p.HasField("default") else None,
        min=p.min if p.HasField("min") else None,
        max=p.max if p.HasField("max") else None,
        pattern=p.pattern,
        values=tuple(p.values),
        max_length=p.max_length,
    )


def action(a: Any) -> Action:
    return Action(
        pack=a.pack,
        name=a.name,
        pack_version=a.pack_version,
        description=a.description,
        timeout=dur(a.timeout, a.HasField("timeout")),
        read_only=a.read_only,
        params=tuple(param(p) for p in a.params),
        memory_max_bytes=a.memory_max_bytes,
        cpu_max=a.cpu_max,
    )


def execution(e: Any) -> Execution:
    return Execution(
        execution_id=e.execution_id,
        pack=e.pack,
        action=e.action,
        state=state(e.state),
        exit_code=e.exit_code if e.HasField("exit_code") else None,
        signal=e.signal if e.HasField("signal") else None,
        pack_version=e.pack_version,
        args=dict(e.args),
        caller=e.caller,
        idempotency_key=e.idempotency_key,
        timeout=dur(e.timeout, e.HasField("timeout")),
        created_at=ts(e.created_at, e.HasField("created_at")),
        started_at=ts(e.started_at, e.HasField("started_at")),
        ended_at=ts(e.ended_at, e.HasField("ended_at")),
        cpu_time=dur(e.cpu_time, e.HasField("cpu_time")),
        peak_memory_bytes=e.peak_memory_bytes,
        stdout_bytes=e.stdout_bytes,
        stderr_bytes=e.stderr_bytes,
        output_truncated=e.output_truncated,
        error=e.error,
        killed_by=e.killed_by,
        supervisor_pid=e.supervisor_pid,
    )


def chunk(c: Any) -> OutputChunk:
    return OutputChunk(
        stream=_enum(Stream, pb.Stream, c.stream, "STREAM_"),
        offset=c.offset,
        data=bytes(c.data),
        time=ts(c.time, c.HasField("time")),
        end=c.end,
        execution=execution(c.execution) if c.HasField("execution") else None,
    )


def kill(k: Any) -> KillResult:
    return KillResult(state=state(k.state), already_ended=k.already_ended)


def _serving(v: int) -> ServingStatus:
    s: ServingStatus = _enum(ServingStatus, pb.ServingStatus, v, "SERVING_STATUS_")
    return s


def _pack_errors(errs: Any) -> tuple[PackError, ...]:
    return tuple(PackError(source=e.source, error=e.error) for e in errs)


def health(h: Any) -> Health:
    return Health(
        status=_serving(h.status),
        problems=tuple(h.problems),
        running=h.running,
        caps_enforced=h.caps_enforced,
        pack_errors=_pack_errors(h.pack_errors),
    )


def agent_info(a: Any) -> AgentInfo:
    i = a.instance
    return AgentInfo(
        version=a.version,
        instance=InstanceInfo(
            instance_id=i.instance_id,
            app=i.app,
            availability_zone=i.availability_zone,
            region=i.region,
            stage=i.stage,
            hostname=i.hostname,
        ),
        started_at=ts(a.started_at, a.HasField("started_at")),
        uptime=dur(a.uptime, a.HasField("uptime")),
        packs=tuple(
            PackInfo(
                name=p.name, version=p.version, description=p.description, source=p.source, actions=p.actions,
                sha256=p.sha256, origin=p.origin,
            )
            for p in a.packs
        ),
        pack_errors=_pack_errors(a.pack_errors),
        last_pack_sync=ts(a.last_pack_sync, a.HasField("last_pack_sync")),
        data_disk_free_bytes=a.data_disk_free_bytes,
        data_disk_total_bytes=a.data_disk_total_bytes,
        running=a.running,
        caps_enforced=a.caps_enforced,
        caps_mode=a.caps_mode,
        agent_rss_bytes=a.agent_rss_bytes,
        status=_serving(a.status),
        problems=tuple(a.problems),
        pack_sync=pack_sync(a.pack_sync),
    )


def pack_sync(s: Any) -> PackSync:
    return PackSync(
        enabled=s.enabled,
        stage=s.stage,
        last_attempt=ts(s.last_attempt, s.HasField("last_attempt")),
        last_success=ts(s.last_success, s.HasField("last_success")),
        last_error=s.last_error,
        failures=s.failures,
        requests=s.requests,
        generation=s.generation,
        index_expires_at=ts(s.index_expires_at, s.HasField("index_expires_at")),
    )
