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

Only :class:`TransportError` is ever retried, and only for idempotent calls.
"""

from __future__ import annotations

import grpc

__all__ = [
    "AlreadyExistsError",
    "BoltError",
    "ConfigError",
    "DeadlineExceededError",
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


class BoltError(Exception):
    """Base class of every error raised by bolt_client.

    ``code`` is the gRPC status name (``"NOT_FOUND"``) or ``""`` for errors not
    from a call; ``details`` the agent's message; ``target`` and ``method``
    say which agent and RPC the error came from, when known.
    """

    def __init__(
        self, message: str, *, code: str = "", details: str = "", target: str = "", method: str = ""
    ) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.details = details
        self.target = target
        self.method = method


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


class ServerError(BoltError):
    """Any other gRPC status (INTERNAL, UNKNOWN, UNIMPLEMENTED, DATA_LOSS, ...)."""


_STATUS_TO_ERROR: dict[grpc.StatusCode, type[BoltError]] = {
    grpc.StatusCode.UNAVAILABLE: UnavailableError,
    grpc.StatusCode.DEADLINE_EXCEEDED: DeadlineExceededError,
    grpc.StatusCode.INVALID_ARGUMENT: InvalidArgumentError,
    grpc.StatusCode.OUT_OF_RANGE: InvalidArgumentError,
    grpc.StatusCode.FAILED_PRECONDITION: InvalidArgumentError,
    grpc.StatusCode.NOT_FOUND: NotFoundError,
    grpc.StatusCode.PERMISSION_DENIED: PermissionDeniedError,
    grpc.StatusCode.UNAUTHENTICATED: UnauthenticatedError,
    grpc.StatusCode.ALREADY_EXISTS: AlreadyExistsError,
    grpc.StatusCode.RESOURCE_EXHAUSTED: ResourceExhaustedError,
}

# Fragments of grpc-core's messages for a failed TLS handshake.
_TLS_MARKERS = (
    "handshake",
    "ssl",
    "tls",
    "certificate",
    "cert verify",
    "tsi_",
    "unwrap failed",
    "alert",
)


def from_rpc_error(exc: grpc.RpcError, *, target: str = "", method: str = "") -> BoltError:
    """The public exception for a failed call (the one status → exception map)."""
    code_fn = getattr(exc, "code", None)
    details_fn = getattr(exc, "details", None)
    code = code_fn() if callable(code_fn) else grpc.StatusCode.UNKNOWN
    details = (details_fn() if callable(details_fn) else str(exc)) or ""
    if not isinstance(code, grpc.StatusCode):
        code = grpc.StatusCode.UNKNOWN
    cls = _STATUS_TO_ERROR.get(code, ServerError)
    name = code.name
    if cls is UnavailableError and any(m in details.lower() for m in _TLS_MARKERS):
        cls = TLSError
        message = (
            f"{target}: TLS handshake failed ({details}); check that the agent's certificate "
            "is signed by the configured CA and that the client certificate and key are "
            "signed by the CA the agent trusts"
        )
    else:
        message = f"{target}: {method} failed: {name}: {details}" if target else f"{name}: {details}"
    return cls(message, code=name, details=details, target=target, method=method)
