"""AsyncBoltClient (grpc.aio): the same calls as the blocking twin, awaited."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from bolt_client import (
    AsyncBoltClient, InvalidArgumentError, NotFoundError, State, TLSConfig, TLSError, UnavailableError,
)

from bolt_testing import Agent
from conftest import make_certs


async def test_async_round_trip(agent: Agent, tls: TLSConfig) -> None:
    async with AsyncBoltClient(agent.address, tls=tls) as c:
        assert any(a.ref == "bolt-test/echo" for a in await c.list_actions())
        assert (await c.health()).ok
        assert (await c.agent_info()).instance.instance_id == "i-shared"
        r = await c.run("bolt-test", "echo", {"msg": "async hi"})
        assert r.state is State.SUCCEEDED and b"--msg=async hi" in r.stdout
        e = await c.get_execution(r.execution.execution_id)
        assert e.state is State.SUCCEEDED
        page = await c.list_executions(page_size=1)
        assert len(page.executions) == 1
        assert [x async for x in c.iter_executions(limit=2)]
        with pytest.raises(NotFoundError):
            await c.execute("bolt-test", "missing")
        with pytest.raises(InvalidArgumentError):
            await c.execute("bolt-test", "sleep", {"ticks": -1})


async def test_async_tail_wait_kill(agent: Agent, tls: TLSConfig) -> None:
    async with AsyncBoltClient(agent.address, tls=tls) as c:
        s = await c.execute("bolt-test", "sleep", {"ticks": 2, "interval": "0.2"})
        chunks = [ch async for ch in c.tail(s.execution_id)]
        assert chunks[-1].end and chunks[-1].execution and chunks[-1].execution.state is State.SUCCEEDED
        assert b"tick 2" in b"".join(ch.data for ch in chunks)

        k = await c.execute("bolt-test", "sleep", {"ticks": 600, "interval": "0.1"})
        waiter = asyncio.create_task(c.wait(k.execution_id, timeout=20))
        await asyncio.sleep(0.3)
        await c.kill(k.execution_id, grace=1)
        assert (await waiter).state is State.KILLED

        # many concurrent calls on one channel
        results = await asyncio.gather(*(c.run("bolt-test", "noop") for _ in range(10)))
        assert all(r.state is State.SUCCEEDED for r in results)


async def test_async_tls_error(agent: Agent, tmp_path: Path, certs: Path) -> None:
    other = make_certs(tmp_path / "other")
    c = AsyncBoltClient(agent.address, ca=other / "ca.crt", cert=certs / "client.crt", key=certs / "client.key", timeout=5)
    async with c:
        with pytest.raises(TLSError, match="the agent's certificate failed verification"):
            await c.health()
    c = AsyncBoltClient(agent.address, ca=certs / "ca.crt", cert=other / "client.crt", key=other / "client.key", timeout=5)
    async with c:
        with pytest.raises(TLSError, match="TLS refused"):
            await c.health()


async def test_async_unreachable_agent_named_like_tls_is_not_a_tls_error(tls: TLSConfig) -> None:
    async with AsyncBoltClient("tls-agent-7.example:7443", tls=tls, timeout=3) as c:
        with pytest.raises(UnavailableError, match="cannot resolve host name") as e:
            await c.health()
        assert not isinstance(e.value, TLSError)


async def test_a_cancelled_tail_never_reconnects_even_when_the_stream_ends_quietly(
    agent: Agent, tls: TLSConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    """grpc.aio can end a stream without an error when the reading task is
    cancelled (Ctrl-C in `bolt fleet run`): the tail must stop, not reconnect."""
    calls = 0

    async def quiet_stream(self: AsyncBoltClient, execution_id: str, **_: object):  # type: ignore[no-untyped-def]
        nonlocal calls
        calls += 1
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            return  # swallowed, as the library may
        yield  # an async generator

    monkeypatch.setattr(AsyncBoltClient, "stream_output", quiet_stream)
    async with AsyncBoltClient(agent.address, tls=tls) as c:
        async def consume() -> None:
            async for _ in c.tail("any"):
                pass

        task = asyncio.create_task(consume())
        await asyncio.sleep(0.2)
        task.cancel()
        done, _ = await asyncio.wait({task}, timeout=5)
        assert task in done, "the tail reconnected after its task was cancelled"
        assert task.cancelled() and calls == 1
