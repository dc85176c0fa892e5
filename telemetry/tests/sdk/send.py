#!/usr/bin/env python3
"""Sends traces, metrics and logs to an OTLP endpoint with the official OpenTelemetry Python
SDK (PyPI), over gRPC or HTTP/protobuf, then flushes and shuts the providers down.

Used by telemetry/tests/sdk_python.rs. Packages: telemetry/tests/sdk/requirements.txt.

Exit status: 0 sent, 2 usage, 3 a package is missing (the message says which), 1 an export
failed.
"""

import argparse
import logging
import sys

SERVICE = "python-sdk-test"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--protocol", choices=["grpc", "http"], required=True)
    parser.add_argument(
        "--endpoint",
        required=True,
        help="gRPC: http://HOST:PORT; HTTP: http://HOST:PORT (the /v1/<signal> paths are added)",
    )
    parser.add_argument("--service-name", default=SERVICE)
    parser.add_argument("--spans", type=int, default=3)
    parser.add_argument("--logs", type=int, default=2)
    args = parser.parse_args()

    try:
        from opentelemetry.sdk._logs import LoggerProvider, LoggingHandler
        from opentelemetry.sdk._logs.export import BatchLogRecordProcessor
        from opentelemetry.sdk.metrics import MeterProvider
        from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor

        if args.protocol == "grpc":
            from opentelemetry.exporter.otlp.proto.grpc._log_exporter import OTLPLogExporter
            from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import (
                OTLPMetricExporter,
            )
            from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

            kwargs = {"endpoint": args.endpoint, "insecure": True}
            span_exporter = OTLPSpanExporter(**kwargs)
            metric_exporter = OTLPMetricExporter(**kwargs)
            log_exporter = OTLPLogExporter(**kwargs)
        else:
            from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
            from opentelemetry.exporter.otlp.proto.http.metric_exporter import (
                OTLPMetricExporter,
            )
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

            base = args.endpoint.rstrip("/")
            span_exporter = OTLPSpanExporter(endpoint=f"{base}/v1/traces")
            metric_exporter = OTLPMetricExporter(endpoint=f"{base}/v1/metrics")
            log_exporter = OTLPLogExporter(endpoint=f"{base}/v1/logs")
    except ImportError as error:
        print(
            f"MISSING: {error}; install: python3 -m pip install -r telemetry/tests/sdk/requirements.txt",
            file=sys.stderr,
        )
        return 3

    resource = Resource.create(
        {"service.name": args.service_name, "service.instance.id": f"py-{args.protocol}"}
    )

    tracer_provider = TracerProvider(resource=resource)
    tracer_provider.add_span_processor(BatchSpanProcessor(span_exporter))
    tracer = tracer_provider.get_tracer("sdk-python-test")
    for i in range(args.spans):
        with tracer.start_as_current_span(f"python-span-{i}") as span:
            span.set_attribute("protocol", args.protocol)

    # A long interval: the reader exports on force_flush / shutdown, not on a timer.
    reader = PeriodicExportingMetricReader(metric_exporter, export_interval_millis=60_000)
    meter_provider = MeterProvider(resource=resource, metric_readers=[reader])
    meter = meter_provider.get_meter("sdk-python-test")
    counter = meter.create_counter("sdk_python_requests", unit="1", description="requests")
    counter.add(3, {"protocol": args.protocol})
    histogram = meter.create_histogram("sdk_python_latency", unit="ms", description="latency")
    for value in (1.0, 5.0, 20.0):
        histogram.record(value, {"protocol": args.protocol})

    logger_provider = LoggerProvider(resource=resource)
    logger_provider.add_log_record_processor(BatchLogRecordProcessor(log_exporter))
    handler = LoggingHandler(level=logging.INFO, logger_provider=logger_provider)
    log = logging.getLogger("sdk-python-test")
    log.propagate = False
    log.setLevel(logging.INFO)
    log.addHandler(handler)
    for i in range(args.logs):
        log.info("python sdk log %d over %s", i, args.protocol)

    ok = True
    ok &= tracer_provider.force_flush() is not False
    ok &= meter_provider.force_flush() is not False
    ok &= logger_provider.force_flush() is not False
    log.removeHandler(handler)
    tracer_provider.shutdown()
    meter_provider.shutdown()
    logger_provider.shutdown()
    if not ok:
        print("an export did not flush", file=sys.stderr)
        return 1
    print(f"sent over {args.protocol} to {args.endpoint}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
