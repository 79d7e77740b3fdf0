"""Public data types: plain dataclasses and enums (generated protobuf types are never public)."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import datetime, timedelta

__all__ = [
    "Action",
    "AgentInfo",
    "Execution",
    "ExecutionPage",
    "ExecuteResult",
    "Health",
    "InstanceInfo",
    "KillResult",
    "OutputChunk",
    "PackError",
    "PackInfo",
    "PackSync",
    "Param",
    "ParamType",
    "RunResult",
    "ServingStatus",
    "State",
    "Stream",
]


class State(str, enum.Enum):
    """Life cycle of an execution (``bolt.v1.State`` without the ``STATE_`` prefix)."""

    UNSPECIFIED = "UNSPECIFIED"
    PENDING = "PENDING"
    RUNNING = "RUNNING"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    TIMED_OUT = "TIMED_OUT"
    KILLED = "KILLED"
    OOM_KILLED = "OOM_KILLED"
    LOST = "LOST"

    @property
    def is_final(self) -> bool:
        """True for every state but PENDING, RUNNING (and UNSPECIFIED)."""
        return self not in (State.UNSPECIFIED, State.PENDING, State.RUNNING)

    def __str__(self) -> str:
        return self.value


class Stream(str, enum.Enum):
    """Where a chunk of output came from."""

    UNSPECIFIED = "UNSPECIFIED"
    STDOUT = "STDOUT"
    STDERR = "STDERR"
    SYSTEM = "SYSTEM"

    def __str__(self) -> str:
        return self.value


class ServingStatus(str, enum.Enum):
    UNSPECIFIED = "UNSPECIFIED"
    SERVING = "SERVING"
    DEGRADED = "DEGRADED"
    NOT_SERVING = "NOT_SERVING"

    def __str__(self) -> str:
        return self.value


class ParamType(str, enum.Enum):
    UNSPECIFIED = "UNSPECIFIED"
    STRING = "STRING"
    INT = "INT"
    BOOL = "BOOL"
    ENUM = "ENUM"

    def __str__(self) -> str:
        return self.value


@dataclass(frozen=True)
class Param:
    """One declared parameter of an action."""

    name: str
    type: ParamType
    description: str = ""
    required: bool = False
    default: str | None = None
    min: int | None = None
    max: int | None = None
    pattern: str = ""
    values: tuple[str, ...] = ()
    max_length: int = 0


@dataclass(frozen=True)
class Action:
    """One whitelisted action of an agent."""

    pack: str
    name: str
    pack_version: str = ""
    description: str = ""
    timeout: timedelta | None = None
    read_only: bool = False
    params: tuple[Param, ...] = ()
    memory_max_bytes: int = 0
    cpu_max: float = 0.0

    @property
    def ref(self) -> str:
        """``pack/action``."""
        return f"{self.pack}/{self.name}"


@dataclass(frozen=True)
class ExecuteResult:
    """The answer to Execute."""

    execution_id: str
    state: State
    deduplicated: bool
    idempotency_key: str


@dataclass(frozen=True)
class Execution:
    """The record of one execution in an agent's history."""

    execution_id: str
    pack: str
    action: str
    state: State
    exit_code: int | None = None
    signal: int | None = None
    pack_version: str = ""
    args: dict[str, str] = field(default_factory=dict)
    caller: str = ""
    idempotency_key: str = ""
    timeout: timedelta | None = None
    created_at: datetime | None = None
    started_at: datetime | None = None
    ended_at: datetime | None = None
    cpu_time: timedelta | None = None
    peak_memory_bytes: int = 0
    stdout_bytes: int = 0
    stderr_bytes: int = 0
    output_truncated: bool = False
    error: str = ""
    killed_by: str = ""
    supervisor_pid: int = 0

    @property
    def done(self) -> bool:
        return self.state.is_final

    @property
    def succeeded(self) -> bool:
        return self.state is State.SUCCEEDED

    @property
    def duration(self) -> timedelta | None:
        """Run time from start (or creation) to end; None while live."""
        start = self.started_at or self.created_at
        if start is None or self.ended_at is None:
            return None
        return self.ended_at - start


@dataclass(frozen=True)
class ExecutionPage:
    """One page of ListExecutions (newest first)."""

    executions: list[Execution]
    next_page_token: str = ""


@dataclass(frozen=True)
class OutputChunk:
    """A piece of output, or (``end=True``) the closing message carrying the final record."""

    stream: Stream
    offset: int
    data: bytes
    time: datetime | None = None
    end: bool = False
    execution: Execution | None = None

    @property
    def text(self) -> str:
        return self.data.decode("utf-8", errors="replace")


@dataclass(frozen=True)
class KillResult:
    state: State
    already_ended: bool


@dataclass(frozen=True)
class PackError:
    source: str
    error: str


@dataclass(frozen=True)
class Health:
    status: ServingStatus
    problems: tuple[str, ...] = ()
    running: int = 0
    caps_enforced: bool = False
    pack_errors: tuple[PackError, ...] = ()

    @property
    def ok(self) -> bool:
        """True when the agent can execute (SERVING or DEGRADED)."""
        return self.status in (ServingStatus.SERVING, ServingStatus.DEGRADED)


@dataclass(frozen=True)
class InstanceInfo:
    """Where an agent runs, from its own configuration."""

    instance_id: str = ""
    app: str = ""
    availability_zone: str = ""
    region: str = ""
    stage: str = ""
    hostname: str = ""


@dataclass(frozen=True)
class PackInfo:
    name: str
    version: str
    description: str = ""
    source: str = ""
    actions: int = 0
    #: sha256 of the archive it was installed from; empty for a hand-laid pack.
    sha256: str = ""
    #: "local" (the packs folder) or "s3" (installed by pack sync).
    origin: str = ""


@dataclass(frozen=True)
class PackSync:
    """The agent's pack synchronisation from S3 (``[sync]``)."""

    enabled: bool = False
    #: The stage followed.
    stage: str = ""
    last_attempt: datetime | None = None
    last_success: datetime | None = None
    #: Why the last attempt failed; empty when it succeeded.
    last_error: str = ""
    #: Failed attempts since the agent started.
    failures: int = 0
    #: Requests made to S3 since the agent started.
    requests: int = 0
    #: Generation of the stage index in use.
    generation: int = 0
    #: When the stage index in use expires (no update is taken past it).
    index_expires_at: datetime | None = None


@dataclass(frozen=True)
class AgentInfo:
    version: str
    instance: InstanceInfo
    started_at: datetime | None = None
    uptime: timedelta | None = None
    packs: tuple[PackInfo, ...] = ()
    pack_errors: tuple[PackError, ...] = ()
    last_pack_sync: datetime | None = None
    data_disk_free_bytes: int = 0
    data_disk_total_bytes: int = 0
    running: int = 0
    caps_enforced: bool = False
    caps_mode: str = ""
    agent_rss_bytes: int = 0
    status: ServingStatus = ServingStatus.UNSPECIFIED
    problems: tuple[str, ...] = ()
    pack_sync: PackSync = field(default_factory=PackSync)


@dataclass(frozen=True)
class RunResult:
    """What :meth:`BoltClient.run` returns: the final record and the output it streamed."""

    execution: Execution
    chunks: list[OutputChunk]

    def _join(self, *streams: Stream) -> bytes:
        return b"".join(c.data for c in self.chunks if c.stream in streams)

    @property
    def stdout(self) -> bytes:
        return self._join(Stream.STDOUT)

    @property
    def stderr(self) -> bytes:
        return self._join(Stream.STDERR)

    @property
    def output(self) -> bytes:
        """Every stream, in the order the agent recorded it."""
        return b"".join(c.data for c in self.chunks)

    @property
    def state(self) -> State:
        return self.execution.state

    @property
    def exit_code(self) -> int | None:
        return self.execution.exit_code
