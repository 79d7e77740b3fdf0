"""W3C trace context for calls: with the ``otel`` extra installed (the
OpenTelemetry API) and a span current, each call carries a ``traceparent`` so
the agent's spans join the caller's trace. Without it, nothing is sent."""

from __future__ import annotations

try:
    from opentelemetry import propagate as _propagate
except ImportError:  # the extra is not installed
    _propagate = None  # type: ignore[assignment]


def trace_metadata() -> list[tuple[str, str]] | None:
    """gRPC metadata carrying the current trace context, or None."""
    if _propagate is None:
        return None
    carrier: dict[str, str] = {}
    _propagate.inject(carrier)
    return [(k.lower(), v) for k, v in carrier.items()] or None
