"""Exceptions raised by bolt_client, and the one place gRPC statuses become them.

Hierarchy::

    BoltError                       every error this package raises
    ├── ConfigError                 bad or missing client configuration (certificate files, target)
    ├── TransportError              the call may not have reached the agent, or got no answer
    │   ├── UnavailableError        UNAVAILABLE: agent down, unreachable or shutting down
    │   │   └── TLSError            the mTLS handshake failed (wrong CA, unknown client certificate)
    │   └── DeadlineExceededError   DEADLINE_EXCEEDED: no answer within the deadline
    ├── RequestError                the agent answered and refused the call
    │   ├── InvalidArgumentError    INVALID_ARGUMENT: malformed call or arguments
    │   ├── NotFoundError           NOT_FOUND: unknown pack, action or execution
    │   ├── PermissionDeniedError   PERMISSION_DENIED: identity refused by the authorization rules
    │   ├── UnauthenticatedError    UNAUTHENTICATED: no usable client certificate
    │   ├── AlreadyExistsError      ALREADY_EXISTS: idempotency key reused with another request
    │   └── ResourceExhaustedError  RESOURCE_EXHAUSTED: beyond a configured limit
    └── ServerError                 any other status (INTERNAL, UNKNOWN, UNIMPLEMENTED, ...)

The map is shared with the Java client as data (``integration/scenarios/helpers/
errors.json``). Every error from a call says which agent (``target``), which RPC
(``method``), the status (``code``) and why (``details``: the agent's words, or,
when the call never reached it, what a plain connection showed, see ``_probe``).
Only :class:`UnavailableError` is ever retried (never :class:`TLSError`), and only
for idempotent calls.
"""

from __future__ import annotations

from dataclasses import dataclass

import grpc

__all__ = [
    "AlreadyExistsError",
    "BoltError",
    "ConfigError",
    "DeadlineExceededError",
    "FailedPreconditionError",
    "FieldViolation",
    "InvalidArgumentError",
    "NotFoundError",
    "PermissionDeniedError",
    "RequestError",
    "ResourceExhaustedError",
    "ServerError",
    "TLSError",
    "TransportError",
    "UnauthenticatedError",
    "UnavailableError",
]


@dataclass(frozen=True)
class FieldViolation:
    """One refused request field (``google.rpc.BadRequest``): its path, such as
    ``args.count``, ``pack`` or ``grace``, and why."""

    field: str
    description: str


class BoltError(Exception):
    """Base class of every error raised by bolt_client.

    ``code`` is the gRPC status name (``"NOT_FOUND"``) or ``""`` for errors not
    from a call; ``details`` the agent's message; ``target`` and ``method``
    say which agent and RPC the error came from, when known;
    ``field_violations`` which request fields the agent refused, when it said.
    """

    def __init__(
        self,
        message: str,
        *,
        code: str = "",
        details: str = "",
        target: str = "",
        method: str = "",
        field_violations: tuple[FieldViolation, ...] = (),
    ) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.details = details
        self.target = target
        self.method = method
        self.field_violations = field_violations


class ConfigError(BoltError):
    """The client configuration is unusable (missing certificate file, bad target, ...)."""


class TransportError(BoltError):
    """The call did not get an answer from the agent."""


class UnavailableError(TransportError):
    """The agent is down, unreachable or shutting down (UNAVAILABLE)."""


class TLSError(UnavailableError):
    """The mTLS handshake failed: the agent's certificate is not signed by the
    configured CA, or the agent refused the client certificate."""


class DeadlineExceededError(TransportError):
    """No answer within the call's deadline (DEADLINE_EXCEEDED)."""


class RequestError(BoltError):
    """The agent refused the call."""


class InvalidArgumentError(RequestError):
    """Malformed call or arguments (INVALID_ARGUMENT)."""


class NotFoundError(RequestError):
    """Unknown pack, action or execution (NOT_FOUND)."""


class PermissionDeniedError(RequestError):
    """The caller's identity may not do this (PERMISSION_DENIED)."""


class UnauthenticatedError(RequestError):
    """No usable client certificate (UNAUTHENTICATED)."""


class AlreadyExistsError(RequestError):
    """The idempotency key was used before with a different request (ALREADY_EXISTS)."""


class ResourceExhaustedError(RequestError):
    """The call is beyond a configured limit (RESOURCE_EXHAUSTED)."""


class FailedPreconditionError(RequestError):
    """The agent cannot do this as it is configured (FAILED_PRECONDITION): the run-as
    user is missing, root is refused, dev builds are not set up, ..."""


class ServerError(BoltError):
    """Any other gRPC status (INTERNAL, UNKNOWN, UNIMPLEMENTED, DATA_LOSS, ...)."""


_STATUS_TO_ERROR: dict[grpc.StatusCode, type[BoltError]] = {
    grpc.StatusCode.UNAVAILABLE: UnavailableError,
    grpc.StatusCode.DEADLINE_EXCEEDED: DeadlineExceededError,
    grpc.StatusCode.INVALID_ARGUMENT: InvalidArgumentError,
    grpc.StatusCode.OUT_OF_RANGE: InvalidArgumentError,
    grpc.StatusCode.FAILED_PRECONDITION: FailedPreconditionError,
    grpc.StatusCode.NOT_FOUND: NotFoundError,
    grpc.StatusCode.PERMISSION_DENIED: PermissionDeniedError,
    grpc.StatusCode.UNAUTHENTICATED: UnauthenticatedError,
    grpc.StatusCode.ALREADY_EXISTS: AlreadyExistsError,
    grpc.StatusCode.RESOURCE_EXHAUSTED: ResourceExhaustedError,
}


def is_retryable(err: BoltError) -> bool:
    """Whether an idempotent call may be tried again after ``err``."""
    return isinstance(err, UnavailableError) and not isinstance(err, TLSError)


def from_status(
    code: grpc.StatusCode,
    details: str,
    *,
    target: str = "",
    method: str = "",
    field_violations: tuple[FieldViolation, ...] = (),
) -> BoltError:
    """The public exception for a status: ``"{target}: {method} failed: {CODE}: {details}"``."""
    cls = _STATUS_TO_ERROR.get(code, ServerError)
    where = f"{target}: {method or 'call'} failed: " if target else ""
    return cls(
        f"{where}{code.name}: {details}",
        code=code.name,
        details=details,
        target=target,
        method=method,
        field_violations=field_violations,
    )


_DETAILS_KEY = "grpc-status-details-bin"


def field_violations(exc: grpc.RpcError) -> tuple[FieldViolation, ...]:
    """The ``google.rpc.BadRequest`` field violations a status carries, if any."""
    trailing = getattr(exc, "trailing_metadata", None)
    try:
        metadata = trailing() if callable(trailing) else None
    except Exception:  # noqa: BLE001 - a call that never got trailers has none
        return ()
    raw = next((v for k, v in (metadata or ()) if k == _DETAILS_KEY), None)
    if not isinstance(raw, bytes):
        return ()
    from google.protobuf.message import DecodeError
    from google.rpc import error_details_pb2, status_pb2

    status = status_pb2.Status()
    try:
        status.ParseFromString(raw)
    except DecodeError:
        return ()
    out: list[FieldViolation] = []
    for any_ in status.details:
        if any_.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad = error_details_pb2.BadRequest()
            if any_.Unpack(bad):
                out.extend(FieldViolation(v.field, v.description) for v in bad.field_violations)
    return tuple(out)


def from_rpc_error(exc: grpc.RpcError, *, target: str = "", method: str = "") -> BoltError:
    """The public exception for a failed call (the one status → exception map)."""
    code_fn = getattr(exc, "code", None)
    details_fn = getattr(exc, "details", None)
    code = code_fn() if callable(code_fn) else grpc.StatusCode.UNKNOWN
    details = (details_fn() if callable(details_fn) else str(exc)) or ""
    if not isinstance(code, grpc.StatusCode):
        code = grpc.StatusCode.UNKNOWN
    return from_status(code, details, target=target, method=method, field_violations=field_violations(exc))


def tls_error(target: str, method: str, cause: str) -> TLSError:
    """A failed mTLS handshake, as a plain connection showed it (see ``_probe``)."""
    return TLSError(
        f"{target}: {method} failed: TLS handshake failed: {cause}; check that the agent's "
        "certificate is signed by the configured CA and names this host, and that the client "
        "certificate is signed by a CA the agent trusts",
        code="UNAVAILABLE",
        details=cause,
        target=target,
        method=method,
    )

