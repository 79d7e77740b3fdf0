"""BoltClient (blocking) and AsyncBoltClient (grpc.aio): one agent, every RPC.

``_BaseClient`` holds configuration and builds requests; the twins add only
I/O with the same method names and keyword-only options. Unary calls get a
deadline (``timeout``) and is retried on UNAVAILABLE by gRPC itself, under the
channel's service config (``RetryPolicy``, with retry throttling). Every method
is idempotent: Execute always carries an idempotency key (a random one when the
caller gives none), so its retries never start a second run. ``tail`` reconnects
after a broken stream and resumes from the last byte it delivered.
"""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from contextlib import aclosing
from dataclasses import dataclass
from collections.abc import AsyncGenerator, Awaitable, Callable, Iterable, Iterator
from datetime import datetime, timedelta
from typing import Any, TypeVar

import grpc
import grpc.aio

from . import _convert as conv
from ._config import Config, RetryPolicy, TLSConfig, channel_options, normalize_target
from ._exceptions import BoltError, UnavailableError, from_rpc_error, from_status, is_retryable, tls_error
from ._models import (
    Action,
    AgentInfo,
    Execution,
    ExecutionPage,
    ExecuteResult,
    Health,
    KillResult,
    OutputChunk,
    RunResult,
    State,
)
from ._probe import Diagnosis, diagnose, diagnose_async
from ._proto import bolt_pb2 as pb
from ._proto import bolt_pb2_grpc as pb_grpc
from ._tracing import trace_metadata

__all__ = ["AsyncBoltClient", "BoltClient", "DevBuild", "new_idempotency_key", "parse_action_ref"]


@dataclass(frozen=True)
class DevBuild:
    """A published release to run instead of the installed pack: by version,
    by archive sha256, or both (then they must agree)."""

    version: str = ""
    sha256: str = ""

T = TypeVar("T")
PathLike = str | os.PathLike[str]
#: How long ``tail``/``wait`` keep reconnecting a broken output stream.
RECONNECT_FOR = 30.0


def new_idempotency_key() -> str:
    return "bolt-" + uuid.uuid4().hex


def parse_action_ref(ref: str) -> tuple[str, str]:
    """``"pack/action"`` → ``("pack", "action")``."""
    pack, sep, action = ref.partition("/")
    if not sep or not pack or not action or "/" in action:
        raise ValueError(f"expected PACK/ACTION, got {ref!r}")
    return pack, action


def _cancelling() -> bool:
    """Whether the current task has been asked to stop (Python 3.11+ tracks
    it; on 3.10 a swallowed cancellation cannot be seen)."""
    task = asyncio.current_task()
    cancelling = getattr(task, "cancelling", None)
    return bool(cancelling()) if callable(cancelling) else False


def _explained(err: BoltError, diagnosis: Diagnosis | None) -> BoltError:
    """``err`` reworded with what a plain connection showed (see ``_probe``)."""
    if diagnosis is None:
        return err
    if diagnosis.tls:
        return tls_error(err.target, err.method, diagnosis.cause)
    return from_status(grpc.StatusCode.UNAVAILABLE, diagnosis.cause, target=err.target, method=err.method)


class _BaseClient:
    """Configuration and request building shared by the twins."""

    def __init__(
        self,
        target: str,
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
        credentials: grpc.ChannelCredentials | None = None,
        config: Config | None = None,
    ) -> None:
        # ``config``: settings a Fleet resolved once for all its agents (port, profile).
        cfg = config or Config.load(
            ca=ca, cert=cert, key=key, server_name=server_name, timeout=timeout, config_file=config_file, profile=profile
        )
        self.target = normalize_target(target, cfg.port)
        self.tls = tls if tls is not None else cfg.tls()
        # Read the files now so that a bad path fails here; a fleet shares one credentials object.
        self._credentials = credentials if credentials is not None else self.tls.credentials()
        self.timeout = timeout if timeout is not None else cfg.timeout
        self.retry = retry or RetryPolicy()
        self._closed = False

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.target}>"

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError(f"{type(self).__name__} for {self.target} is closed")

    def _err(self, exc: grpc.RpcError, method: str) -> BoltError:
        return from_rpc_error(exc, target=self.target, method=method)


    def _stream_timeout(self, follow: bool, timeout: float | None) -> float | None:
        if timeout is not None:
            return timeout
        return None if follow else self.timeout

    # --- request builders ---------------------------------------------------

    @staticmethod
    def _execute_request(
        pack: str,
        action: str,
        args: dict[str, Any] | None,
        idempotency_key: str | None,
        timeout: float | timedelta | None,
        dev_build: DevBuild | None = None,
    ) -> tuple[Any, str]:
        key = idempotency_key or new_idempotency_key()
        req = pb.ExecuteRequest(
            pack=pack,
            action=action,
            args={str(k): _arg_text(v) for k, v in (args or {}).items()},
            idempotency_key=key,
        )
        if dev_build is not None:
            req.dev_build.CopyFrom(pb.DevBuild(version=dev_build.version, sha256=dev_build.sha256))
        if timeout is not None:
            req.timeout.CopyFrom(conv.dur_to_pb(timeout))
        return req, key

    @staticmethod
    def _list_executions_request(
        page_size: int,
        page_token: str,
        pack: str,
        action: str,
        states: Iterable[State | str] | None,
        since: datetime | None,
        until: datetime | None,
        caller: str,
    ) -> Any:
        req = pb.ListExecutionsRequest(
            page_size=page_size, page_token=page_token, pack=pack, action=action, caller=caller
        )
        req.states.extend([conv.state_to_pb(s) for s in (states or ())])  # type: ignore[misc]
        if since is not None:
            req.since.CopyFrom(conv.ts_to_pb(since))
        if until is not None:
            req.until.CopyFrom(conv.ts_to_pb(until))
        return req

    @staticmethod
    def _kill_request(execution_id: str, grace: float | timedelta | None) -> Any:
        req = pb.KillRequest(execution_id=execution_id)
        if grace is not None:
            req.grace.CopyFrom(conv.dur_to_pb(grace))
        return req


def _arg_text(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    return str(v)


class _StreamState:
    """Offset bookkeeping and reconnect budget of one tail."""

    def __init__(self, offset: int, retry: RetryPolicy) -> None:
        self.offset = offset
        self.retry = retry
        self.failures = 0
        self.failing_since: float | None = None

    def delivered(self, c: OutputChunk) -> None:
        if c.data:
            self.offset = c.offset + len(c.data)
        self.failures = 0
        self.failing_since = None

    def backoff_or_raise(self, err: BoltError) -> float:
        """Delay before reconnecting, or raise ``err`` when the budget is spent."""
        now = time.monotonic()
        if self.failing_since is None:
            self.failing_since = now
        self.failures += 1
        if not is_retryable(err) or now - self.failing_since > RECONNECT_FOR:
            raise err
        return self.retry.backoff(self.failures)


class BoltClient(_BaseClient):
    """Blocking client of one agent.

    ``BoltClient("10.0.0.7", ca=..., cert=..., key=...)``; paths default to
    ``BOLT_CA``/``BOLT_CERT``/``BOLT_KEY`` and then the config file. Use as a
    context manager or call :meth:`close`.
    """

    def __init__(self, target: str, **kwargs: Any) -> None:
        super().__init__(target, **kwargs)
        self._channel = grpc.secure_channel(self.target, self._credentials, options=channel_options(self.tls, self.retry))
        self._stub = pb_grpc.BoltStub(self._channel)

    def __enter__(self) -> "BoltClient":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._channel.close()

    def _unary(self, method: str, request: Any, *, timeout: float | None = None) -> Any:
        """One call; gRPC itself retries UNAVAILABLE (the channel's service config,
        from ``RetryPolicy``). A failure that never reached the agent is then
        explained by one probe connection (``_probe``)."""
        self._check_open()
        fn = getattr(self._stub, method)
        try:
            return fn(request, timeout=timeout if timeout is not None else self.timeout, metadata=trace_metadata())
        except grpc.RpcError as exc:
            raise self._failure(exc, method) from exc

    def _failure(self, exc: grpc.RpcError, method: str) -> BoltError:
        """The error for a failed call; one that never reached the agent is
        explained by one probe connection (``_probe``)."""
        err = self._err(exc, method)
        if err.code != "UNAVAILABLE":
            return err
        return _explained(err, diagnose(self.target, self.tls, self.timeout))

    # --- RPCs -----------------------------------------------------------------

    def list_actions(self, pack: str = "", *, timeout: float | None = None) -> list[Action]:
        resp = self._unary("ListActions", pb.ListActionsRequest(pack=pack), timeout=timeout)
        return [conv.action(a) for a in resp.actions]

    def execute(
        self,
        pack: str,
        action: str,
        args: dict[str, Any] | None = None,
        *,
        idempotency_key: str | None = None,
        action_timeout: float | timedelta | None = None,
        dev_build: DevBuild | None = None,
        timeout: float | None = None,
    ) -> ExecuteResult:
        """Start an action; returns at once. ``action_timeout`` is the action's run time
        limit (default: the action's own); ``dev_build`` runs a published release instead
        of the installed pack (needs the ``dev`` permission); ``timeout`` is this call's
        deadline, as on every method."""
        req, key = self._execute_request(pack, action, args, idempotency_key, action_timeout, dev_build)
        resp = self._unary("Execute", req, timeout=timeout)
        return ExecuteResult(resp.execution_id, conv.state(resp.state), resp.deduplicated, key)

    def get_execution(self, execution_id: str, *, timeout: float | None = None) -> Execution:
        req = pb.GetExecutionRequest(execution_id=execution_id)
        return conv.execution(self._unary("GetExecution", req, timeout=timeout))

    def list_executions(
        self,
        *,
        page_size: int = 0,
        page_token: str = "",
        pack: str = "",
        action: str = "",
        states: Iterable[State | str] | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        caller: str = "",
        timeout: float | None = None,
    ) -> ExecutionPage:
        req = self._list_executions_request(page_size, page_token, pack, action, states, since, until, caller)
        resp = self._unary("ListExecutions", req, timeout=timeout)
        return ExecutionPage([conv.execution(e) for e in resp.executions], resp.next_page_token)

    def iter_executions(self, *, limit: int | None = None, **filters: Any) -> Iterator[Execution]:
        """Every execution matching the filters, newest first, across pages."""
        token, n = "", 0
        while True:
            page = self.list_executions(page_token=token, **filters)
            for e in page.executions:
                if limit is not None and n >= limit:
                    return
                n += 1
                yield e
            token = page.next_page_token
            if not token:
                return

    def stream_output(
        self, execution_id: str, *, offset: int = 0, follow: bool = False, timeout: float | None = None
    ) -> Iterator[OutputChunk]:
        """One StreamOutput call, no reconnects (see :meth:`tail`). ``timeout`` bounds
        the whole stream (default: the client's timeout, none when following)."""
        self._check_open()
        call = self._stub.StreamOutput(
            pb.StreamOutputRequest(execution_id=execution_id, offset=offset, follow=follow),
            timeout=self._stream_timeout(follow, timeout),
            metadata=trace_metadata(),
        )
        try:
            for msg in call:
                yield conv.chunk(msg)
        except grpc.RpcError as exc:
            raise self._failure(exc, "StreamOutput") from exc
        finally:
            call.cancel()

    def tail(self, execution_id: str, *, offset: int = 0, follow: bool = True) -> Iterator[OutputChunk]:
        """Output chunks as they arrive; with ``follow`` the last one has ``end=True``
        and the final :class:`Execution`. Reconnects from the last offset when the
        stream breaks (an agent restart, say)."""
        st = _StreamState(offset, self.retry)
        while True:
            try:
                for c in self.stream_output(execution_id, offset=st.offset, follow=follow):
                    st.delivered(c)
                    yield c
                    if c.end:
                        return
                if not follow:
                    return
                # A follow stream that closed without its end message was cut short.
                err: BoltError = UnavailableError(
                    f"{self.target}: output stream closed early", code="UNAVAILABLE", target=self.target
                )
            except BoltError as e:
                err = e
            time.sleep(st.backoff_or_raise(err))

    def wait(self, execution_id: str, *, timeout: float | None = None) -> Execution:
        """Block until the execution ends; ``timeout`` raises DeadlineExceededError."""
        deadline = None if timeout is None else time.monotonic() + timeout
        if deadline is None:
            for c in self.tail(execution_id):
                if c.end and c.execution is not None:
                    return c.execution
            return self.get_execution(execution_id)
        delay = 0.05
        while True:
            e = self.get_execution(execution_id)
            if e.done:
                return e
            if time.monotonic() + delay > deadline:
                from ._exceptions import DeadlineExceededError

                raise DeadlineExceededError(
                    f"{self.target}: execution {execution_id} still {e.state} after {timeout}s",
                    code="DEADLINE_EXCEEDED",
                    target=self.target,
                )
            time.sleep(delay)
            delay = min(delay * 1.5, 0.5)

    def run(
        self,
        pack: str,
        action: str,
        args: dict[str, Any] | None = None,
        *,
        idempotency_key: str | None = None,
        action_timeout: float | timedelta | None = None,
        on_output: Callable[[OutputChunk], None] | None = None,
    ) -> RunResult:
        """Execute, follow the output as it arrives, and return the final record with it."""
        started = self.execute(pack, action, args, idempotency_key=idempotency_key, action_timeout=action_timeout)
        chunks: list[OutputChunk] = []
        final: Execution | None = None
        for c in self.tail(started.execution_id):
            if c.end:
                final = c.execution
                break
            chunks.append(c)
            if on_output is not None:
                on_output(c)
        if final is None:
            final = self.get_execution(started.execution_id)
        return RunResult(final, chunks)

    def kill(
        self, execution_id: str, *, grace: float | timedelta | None = None, timeout: float | None = None
    ) -> KillResult:
        return conv.kill(self._unary("Kill", self._kill_request(execution_id, grace), timeout=timeout))

    def health(self, *, timeout: float | None = None) -> Health:
        return conv.health(self._unary("Health", pb.HealthRequest(), timeout=timeout))

    def agent_info(self, *, timeout: float | None = None) -> AgentInfo:
        return conv.agent_info(self._unary("GetAgentInfo", pb.GetAgentInfoRequest(), timeout=timeout))


class AsyncBoltClient(_BaseClient):
    """The asyncio twin of :class:`BoltClient` (grpc.aio): same methods, awaited.

    The channel is opened on first use inside the running event loop; use
    ``async with`` or ``await client.close()``.
    """

    def __init__(self, target: str, **kwargs: Any) -> None:
        super().__init__(target, **kwargs)
        self._channel: grpc.aio.Channel | None = None
        self._stub_: Any = None

    def _stub(self) -> Any:
        self._check_open()
        if self._stub_ is None:
            self._channel = grpc.aio.secure_channel(self.target, self._credentials, options=channel_options(self.tls, self.retry))
            self._stub_ = pb_grpc.BoltStub(self._channel)
        return self._stub_

    async def __aenter__(self) -> "AsyncBoltClient":
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        if not self._closed:
            self._closed = True
            if self._channel is not None:
                await self._channel.close(None)

    async def _unary(self, method: str, request: Any, *, timeout: float | None = None) -> Any:
        fn = getattr(self._stub(), method)
        try:
            return await fn(request, timeout=timeout if timeout is not None else self.timeout, metadata=trace_metadata())
        except grpc.RpcError as exc:
            raise await self._failure(exc, method) from exc

    async def _failure(self, exc: grpc.RpcError, method: str) -> BoltError:
        """:meth:`BoltClient._failure`, with the probe on the event loop."""
        err = self._err(exc, method)
        if err.code != "UNAVAILABLE":
            return err
        return _explained(err, await diagnose_async(self.target, self.tls, self.timeout))

    async def list_actions(self, pack: str = "", *, timeout: float | None = None) -> list[Action]:
        resp = await self._unary("ListActions", pb.ListActionsRequest(pack=pack), timeout=timeout)
        return [conv.action(a) for a in resp.actions]

    async def execute(
        self,
        pack: str,
        action: str,
        args: dict[str, Any] | None = None,
        *,
        idempotency_key: str | None = None,
        action_timeout: float | timedelta | None = None,
        dev_build: DevBuild | None = None,
        timeout: float | None = None,
    ) -> ExecuteResult:
        req, key = self._execute_request(pack, action, args, idempotency_key, action_timeout, dev_build)
        resp = await self._unary("Execute", req, timeout=timeout)
        return ExecuteResult(resp.execution_id, conv.state(resp.state), resp.deduplicated, key)

    async def get_execution(self, execution_id: str, *, timeout: float | None = None) -> Execution:
        req = pb.GetExecutionRequest(execution_id=execution_id)
        return conv.execution(await self._unary("GetExecution", req, timeout=timeout))

    async def list_executions(
        self,
        *,
        page_size: int = 0,
        page_token: str = "",
        pack: str = "",
        action: str = "",
        states: Iterable[State | str] | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        caller: str = "",
        timeout: float | None = None,
    ) -> ExecutionPage:
        req = self._list_executions_request(page_size, page_token, pack, action, states, since, until, caller)
        resp = await self._unary("ListExecutions", req, timeout=timeout)
        return ExecutionPage([conv.execution(e) for e in resp.executions], resp.next_page_token)

    async def iter_executions(self, *, limit: int | None = None, **filters: Any) -> AsyncGenerator[Execution, None]:
        token, n = "", 0
        while True:
            page = await self.list_executions(page_token=token, **filters)
            for e in page.executions:
                if limit is not None and n >= limit:
                    return
                n += 1
                yield e
            token = page.next_page_token
            if not token:
                return

    async def stream_output(
        self, execution_id: str, *, offset: int = 0, follow: bool = False, timeout: float | None = None
    ) -> AsyncGenerator[OutputChunk, None]:
        call = self._stub().StreamOutput(
            pb.StreamOutputRequest(execution_id=execution_id, offset=offset, follow=follow),
            timeout=self._stream_timeout(follow, timeout),
            metadata=trace_metadata(),
        )
        try:
            async for msg in call:
                yield conv.chunk(msg)
        except grpc.RpcError as exc:
            raise await self._failure(exc, "StreamOutput") from exc
        finally:
            call.cancel()

    async def tail(self, execution_id: str, *, offset: int = 0, follow: bool = True) -> AsyncGenerator[OutputChunk, None]:
        st = _StreamState(offset, self.retry)
        while True:
            try:
                async with aclosing(self.stream_output(execution_id, offset=st.offset, follow=follow)) as stream:
                    async for c in stream:
                        st.delivered(c)
                        yield c
                        if c.end:
                            return
                if not follow:
                    return
                err: BoltError = UnavailableError(
                    f"{self.target}: output stream closed early", code="UNAVAILABLE", target=self.target
                )
            except BoltError as e:
                err = e
            # grpc.aio may end a stream quietly when the task reading it is
            # cancelled (Ctrl-C): never reconnect past a cancellation.
            if _cancelling():
                raise asyncio.CancelledError()
            await asyncio.sleep(st.backoff_or_raise(err))

    async def wait(self, execution_id: str, *, timeout: float | None = None) -> Execution:
        async def follow() -> Execution:
            async with aclosing(self.tail(execution_id)) as chunks:
                async for c in chunks:
                    if c.end and c.execution is not None:
                        return c.execution
            return await self.get_execution(execution_id)

        return await _with_timeout(follow(), timeout, self.target, execution_id)

    async def run(
        self,
        pack: str,
        action: str,
        args: dict[str, Any] | None = None,
        *,
        idempotency_key: str | None = None,
        action_timeout: float | timedelta | None = None,
        on_output: Callable[[OutputChunk], None] | None = None,
    ) -> RunResult:
        started = await self.execute(pack, action, args, idempotency_key=idempotency_key, action_timeout=action_timeout)
        chunks: list[OutputChunk] = []
        final: Execution | None = None
        async with aclosing(self.tail(started.execution_id)) as stream:
            async for c in stream:
                if c.end:
                    final = c.execution
                    break
                chunks.append(c)
                if on_output is not None:
                    on_output(c)
        if final is None:
            final = await self.get_execution(started.execution_id)
        return RunResult(final, chunks)

    async def kill(
        self, execution_id: str, *, grace: float | timedelta | None = None, timeout: float | None = None
    ) -> KillResult:
        return conv.kill(await self._unary("Kill", self._kill_request(execution_id, grace), timeout=timeout))

    async def health(self, *, timeout: float | None = None) -> Health:
        return conv.health(await self._unary("Health", pb.HealthRequest(), timeout=timeout))

    async def agent_info(self, *, timeout: float | None = None) -> AgentInfo:
        return conv.agent_info(await self._unary("GetAgentInfo", pb.GetAgentInfoRequest(), timeout=timeout))


async def _with_timeout(aw: Awaitable[T], timeout: float | None, target: str, execution_id: str) -> T:
    if timeout is None:
        return await aw
    try:
        return await asyncio.wait_for(aw, timeout)
    except asyncio.TimeoutError:
        from ._exceptions import DeadlineExceededError

        raise DeadlineExceededError(
            f"{target}: execution {execution_id} did not end within {timeout}s",
            code="DEADLINE_EXCEEDED",
            target=target,
        ) from None
