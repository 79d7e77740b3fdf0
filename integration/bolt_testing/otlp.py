"""An OTLP/gRPC collector for tests and benchmarks, built on the published
OTLP protobuf definitions (the opentelemetry-proto package): it keeps the
spans and the metric names it is sent."""

from __future__ import annotations

import threading
from concurrent import futures
from typing import Any

import grpc
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2 as mpb
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2_grpc as mgrpc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2 as tpb
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2_grpc as tgrpc

__all__ = ["OtlpReceiver"]


class OtlpReceiver:
    """Serves TraceService and MetricsService on a loopback port."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.spans: list[Any] = []
        self.metric_names: set[str] = set()
        self.resources: list[dict[str, str]] = []
        self.server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
        tgrpc.add_TraceServiceServicer_to_server(_Traces(self), self.server)
        mgrpc.add_MetricsServiceServicer_to_server(_Metrics(self), self.server)
        self.port = self.server.add_insecure_port("127.0.0.1:0")
        self.endpoint = f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> "OtlpReceiver":
        self.server.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.stop(0)

    def take_traces(self, request: Any) -> None:
        with self.lock:
            for rs in request.resource_spans:
                self.resources.append({kv.key: kv.value.string_value for kv in rs.resource.attributes})
                for ss in rs.scope_spans:
                    self.spans.extend(ss.spans)

    def take_metrics(self, request: Any) -> None:
        with self.lock:
            for rm in request.resource_metrics:
                for sm in rm.scope_metrics:
                    self.metric_names.update(m.name for m in sm.metrics)


class _Traces(tgrpc.TraceServiceServicer):
    def __init__(self, r: OtlpReceiver) -> None:
        self.r = r

    def Export(self, request: Any, context: grpc.ServicerContext) -> Any:  # noqa: N802
        self.r.take_traces(request)
        return tpb.ExportTraceServiceResponse()


class _Metrics(mgrpc.MetricsServiceServicer):
    def __init__(self, r: OtlpReceiver) -> None:
        self.r = r

    def Export(self, request: Any, context: grpc.ServicerContext) -> Any:  # noqa: N802
        self.r.take_metrics(request)
        return mpb.ExportMetricsServiceResponse()
