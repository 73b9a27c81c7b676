"""Exports a fixed set of log records with the OpenTelemetry Python SDK's OTLP/HTTP (protobuf)
exporter, as an instrumented application would.

Usage: python otlp_export.py <base-url> <run-id> [tenant]

Three resources: one with indexed attributes (service.name, k8s.*, deployment.environment)
and attributes left as structured metadata, one without service.name (service_name is
discovered from container.name), one with nothing indexed (service_name unknown_service).
Records cover every body and attribute type, severities, trace context, event names and a
record without a timestamp. Prints {"base_ns": ..., "observed_ns": ...} so the caller can check
timestamps.
"""
import json
import sys
import time

from opentelemetry._logs import SeverityNumber
from opentelemetry.exporter.otlp.proto.http import Compression
from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import LogRecordExportResult, SimpleLogRecordProcessor
from opentelemetry.sdk.resources import Resource
from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags, set_span_in_context

base, run_id = sys.argv[1], sys.argv[2]
headers = {"X-Scope-OrgID": sys.argv[3]} if len(sys.argv) > 3 else {}

# Whole seconds a minute ago, so both stores accept them and they print exactly.
base_ns = (time.time_ns() // 1_000_000_000 - 60) * 1_000_000_000
observed_ns = base_ns + 500_000_000
trace_ctx = set_span_in_context(
    NonRecordingSpan(
        SpanContext(
            trace_id=0x5B8EFFF798038103D269B633813FC60C,
            span_id=0xEEE19B7EC3C1B174,
            is_remote=False,
            trace_flags=TraceFlags(TraceFlags.SAMPLED),
        )
    )
)


failures = []


class CheckedExporter(OTLPLogExporter):
    """The SDK logs export failures and carries on; a test must see them."""

    def export(self, batch):
        result = super().export(batch)
        if result != LogRecordExportResult.SUCCESS:
            failures.append(f"export of {len(batch)} records failed")
        return result


def provider(attrs, compression=Compression.NoCompression):
    # Resource(...) rather than Resource.create(...): no SDK or environment defaults, so the
    # attributes are exactly these on every machine.
    p = LoggerProvider(resource=Resource(attrs))
    exporter = CheckedExporter(
        endpoint=f"{base}/otlp/v1/logs", headers=headers, compression=compression, timeout=10
    )
    p.add_log_record_processor(SimpleLogRecordProcessor(exporter))
    return p


# 1: indexed resource attributes, a scope with attributes, every body and attribute type.
p = provider(
    {
        "service.name": f"checkout-{run_id}",
        "service.namespace": "shop",
        "deployment.environment": "prod",
        "k8s.pod.name": "checkout-7d9f",
        "k8s.namespace.name": "shop-ns",
        "host.name": "node-1",
        "process.pid": 4242,
        "custom.attr-x": "x",
    },
    Compression.Gzip,
)
log = p.get_logger("checkout.scope", "1.2.3", attributes={"scope.attr": "s"})
log.emit(
    timestamp=base_ns,
    observed_timestamp=observed_ns,
    context=trace_ctx,
    severity_number=SeverityNumber.WARN,
    severity_text="Warning",
    body="payment declined",
    attributes={
        "http.status_code": 402,
        "http.route": "/pay",
        "retry": True,
        "ratio": 0.25,
        "big": 1e21,
        "tiny": 1.5e-7,
        "whole": 3.0,
        "tags": ["a", 1, True],
        "nested": {"inner.key": "v", "deeper": {"n": 7}},
        "1st": "digit",
        "_private": "underscore",
        "__dunder": "double",
        "dash-name": "dash",
        "ünï": "utf8",
        "raw": b"\x00\x01hi",
    },
    event_name="payment.declined",
)
log.emit(
    timestamp=base_ns + 1_000_000_000,
    observed_timestamp=observed_ns + 1_000_000_000,
    severity_number=SeverityNumber.ERROR2,
    body={"msg": "structured <body>", "code": 7, "ok": False, "f": 1.5, "list": [1, "two"]},
)
log.emit(
    timestamp=base_ns + 2_000_000_000,
    severity_number=SeverityNumber.DEBUG,
    body=12345,
    attributes={"level": "error"},
)
log.emit(timestamp=base_ns + 3_000_000_000, body=["x", 2, {"k": "v"}])
# No timestamp: stored at the observed time.
log.emit(
    observed_timestamp=observed_ns + 4_000_000_000,
    severity_number=SeverityNumber.INFO,
    body="no timestamp",
)
if not p.force_flush():
    failures.append("flush 1")
p.shutdown()

# 2: no service.name; container.name is indexed and service_name is discovered from it.
p = provider({"container.name": f"web-{run_id}", "cloud.region": "eu-west-1", "os.type": "linux"})
log = p.get_logger("web")
log.emit(
    timestamp=base_ns + 5_000_000_000,
    severity_number=SeverityNumber.FATAL,
    severity_text="FATAL",
    body="level=info msg=\"ignored for the level: severity wins\"",
    attributes={"run": run_id},
)
if not p.force_flush():
    failures.append("flush 2")
p.shutdown()

# 3: nothing indexed: service_name=unknown_service.
p = provider({"host.name": "node-2", "run": run_id})
log = p.get_logger("")
log.emit(
    timestamp=base_ns + 6_000_000_000,
    body="level=warn msg=\"from the line\"",
)
if not p.force_flush():
    failures.append("flush 3")
p.shutdown()

if failures:
    print("export failed:", failures, file=sys.stderr)
    sys.exit(1)
print(json.dumps({"base_ns": base_ns, "observed_ns": observed_ns}))
