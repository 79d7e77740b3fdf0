"""Why a call got no answer, told by the type of the error a plain TLS connection raises.

grpc-core reports every failed connection as UNAVAILABLE with a line of text,
and that text holds the agent's address: classifying it by words turns an
agent named ``tls-agent-7`` into a TLS failure. So when a call ends UNAVAILABLE
the client opens one connection of its own, with Python's ``ssl`` and the same
certificates, says the HTTP/2 preface, and reads the type of what fails:
``ssl.SSLCertVerificationError`` (the agent's certificate), an ``ssl.SSLError``
alert (the agent refused ours), ``ConnectionRefusedError``, ``socket.gaierror``,
a timeout. When the connection works, the UNAVAILABLE came from the agent itself
(it is shutting down, say) and its own words stand.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
from dataclasses import dataclass

from ._config import TLSConfig

__all__ = ["Diagnosis", "diagnose", "diagnose_async"]

# The client's side of an HTTP/2 connection start: the preface and an empty
# SETTINGS frame. The agent answers with its own SETTINGS once TLS is done, and a
# TLS 1.3 server that refuses the client certificate says so only then.
_H2_START = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + b"\x00\x00\x00\x04\x00\x00\x00\x00\x00"
#: Longest a diagnosis may take: it only words an error the caller already has.
MAX_PROBE_SECONDS = 3.0


@dataclass(frozen=True)
class Diagnosis:
    """What a plain connection to the agent showed: ``tls`` when TLS itself failed."""

    tls: bool
    cause: str


def _split(target: str) -> tuple[str, int]:
    host, _, port = target.rpartition(":")
    return host.strip("[]"), int(port)


def _context(tls: TLSConfig) -> ssl.SSLContext:
    ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(tls.ca))
    ctx.load_cert_chain(str(tls.cert), str(tls.key))
    ctx.set_alpn_protocols(["h2"])
    return ctx


def classify(exc: BaseException, host: str, timeout: float) -> Diagnosis:
    """The diagnosis for what a connection attempt raised (by type, never by text)."""
    if isinstance(exc, ssl.SSLCertVerificationError):
        return Diagnosis(True, f"the agent's certificate failed verification: {exc.verify_message}")
    if isinstance(exc, (ssl.SSLEOFError, ssl.SSLZeroReturnError)):
        return Diagnosis(False, "the agent closed the connection during the TLS handshake")
    if isinstance(exc, ssl.SSLError):
        return Diagnosis(True, f"TLS refused: {exc.reason or exc}")
    if isinstance(exc, ConnectionRefusedError):
        return Diagnosis(False, "connection refused: nothing listens on that port (is the agent running?)")
    if isinstance(exc, socket.gaierror):
        return Diagnosis(False, f"cannot resolve host name {host!r}: {exc.strerror or exc}")
    if isinstance(exc, (TimeoutError, asyncio.TimeoutError, socket.timeout)):
        return Diagnosis(False, f"no answer within {timeout:g}s (host down, or a firewall drops the packets)")
    if isinstance(exc, OSError):
        return Diagnosis(False, f"cannot connect: {exc.strerror or exc}")
    return Diagnosis(False, f"cannot connect: {type(exc).__name__}: {exc}")


@dataclass(frozen=True)
class _Probe:
    host: str
    port: int
    server_name: str
    ctx: ssl.SSLContext
    timeout: float


def _probe(target: str, tls: TLSConfig, timeout: float) -> _Probe | None:
    """What a probe connection needs; None when it cannot be set up (e.g.
    unreadable certificate files: the caller's error stands as it is)."""
    try:
        host, port = _split(target)
        return _Probe(host, port, tls.server_name or host, _context(tls), min(timeout, MAX_PROBE_SECONDS))
    except (ValueError, OSError, ssl.SSLError):
        return None


def diagnose(target: str, tls: TLSConfig, timeout: float = MAX_PROBE_SECONDS) -> Diagnosis | None:
    """Connect once and say what failed; None when the connection works."""
    p = _probe(target, tls, timeout)
    if p is None:
        return None
    try:
        with socket.create_connection((p.host, p.port), timeout=p.timeout) as raw:
            with p.ctx.wrap_socket(raw, server_hostname=p.server_name) as s:
                s.sendall(_H2_START)
                s.recv(1)
    except Exception as exc:  # noqa: BLE001 - every failure is classified by its type
        return classify(exc, p.host, p.timeout)
    return None


async def diagnose_async(target: str, tls: TLSConfig, timeout: float = MAX_PROBE_SECONDS) -> Diagnosis | None:
    """:func:`diagnose` on the event loop (no thread per probe in a fleet)."""
    p = _probe(target, tls, timeout)
    if p is None:
        return None

    async def attempt() -> None:
        reader, writer = await asyncio.open_connection(p.host, p.port, ssl=p.ctx, server_hostname=p.server_name)
        try:
            writer.write(_H2_START)
            await writer.drain()
            await reader.read(1)
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(writer.wait_closed(), 1)

    try:
        await asyncio.wait_for(attempt(), p.timeout)
    except Exception as exc:  # noqa: BLE001 - every failure is classified by its type
        return classify(exc, p.host, p.timeout)
    return None
