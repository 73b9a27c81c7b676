#!/usr/bin/env python3
"""Writes the recorded event fixtures used by the push and query handler tests.

The events have the exact shape API Gateway (HTTP API payload 2.0, REST API payload 1.0) and
an ALB target group hand to Lambda. Push bodies are what the agents send: Promtail's
snappy-compressed protobuf (base64-encoded by API Gateway because it is binary), Alloy/
Fluent Bit style JSON, and gzip-compressed JSON. Run with a Python that has pyarrow (for
snappy): `~/.cache/parquetry-venv/bin/python functions/push/tests/events/generate.py`.
"""
import base64
import gzip
import json
import os
import urllib.parse

import pyarrow as pa

HERE = os.path.dirname(os.path.abspath(__file__))
QUERY_EVENTS = os.path.join(HERE, "..", "..", "..", "query", "tests", "events")
HOST = "a1b2c3d4e5.execute-api.us-east-1.amazonaws.com"
# 2026-11-28T12:00:00Z
T0 = 1795867200


def varint(n):
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def field(tag, wire, payload):
    key = varint((tag << 3) | wire)
    if wire == 0:
        return key + varint(payload)
    return key + varint(len(payload)) + payload


def s(tag, text):
    return field(tag, 2, text.encode())


def push_request_proto(streams):
    body = b""
    for labels, entries in streams:
        stream = s(1, labels)
        for ts_ns, line, meta in entries:
            ts = field(1, 0, ts_ns // 1_000_000_000) + field(2, 0, ts_ns % 1_000_000_000)
            entry = field(1, 2, ts) + s(2, line)
            for k, v in meta:
                entry += field(3, 2, s(1, k) + s(2, v))
            stream += field(2, 2, entry)
        body += field(1, 2, stream)
    return body


def v2_event(method, path, query, headers, body, is_b64):
    hdrs = {
        "accept-encoding": "gzip",
        "content-length": str(len(body)) if body else "0",
        "host": HOST,
        "x-amzn-trace-id": "Root=1-674a1c00-1b2c3d4e5f60718293a4b5c6",
        "x-forwarded-for": "203.0.113.7",
        "x-forwarded-port": "443",
        "x-forwarded-proto": "https",
    }
    hdrs.update(headers)
    ev = {
        "version": "2.0",
        "routeKey": f"{method} {path}" if "push" in path else "ANY /loki/api/v1/{proxy+}",
        "rawPath": path,
        "rawQueryString": query,
        "headers": hdrs,
        "requestContext": {
            "accountId": "123456789012",
            "apiId": "a1b2c3d4e5",
            "domainName": HOST,
            "domainPrefix": "a1b2c3d4e5",
            "http": {
                "method": method,
                "path": path,
                "protocol": "HTTP/1.1",
                "sourceIp": "203.0.113.7",
                "userAgent": hdrs.get("user-agent", ""),
            },
            "requestId": "Cq3vTjZxoAMEVSg=",
            "routeKey": f"{method} {path}" if "push" in path else "ANY /loki/api/v1/{proxy+}",
            "stage": "$default",
            "time": "28/Nov/2026:12:00:05 +0000",
            "timeEpoch": (T0 + 5) * 1000,
        },
        "isBase64Encoded": is_b64,
    }
    if query:
        ev["queryStringParameters"] = dict(urllib.parse.parse_qsl(query))
    if "push" not in path:
        ev["pathParameters"] = {"proxy": path.split("/loki/api/v1/", 1)[1]}
    if body:
        ev["body"] = base64.b64encode(body).decode() if is_b64 else body.decode()
    return ev


def write(dirname, name, ev):
    os.makedirs(dirname, exist_ok=True)
    with open(os.path.join(dirname, name), "w") as f:
        json.dump(ev, f, indent=2)
        f.write("\n")


def main():
    ns = T0 * 1_000_000_000
    # Promtail: snappy-compressed protobuf.
    proto = push_request_proto([
        ('{job="varlogs", service_name="checkout", level="info"}', [
            (ns + 1_000_000, "order 1001 placed total=12.50", [("trace_id", "4bf92f3577b34da6")]),
            (ns + 2_000_000, "order 1002 placed total=99.00", []),
        ]),
        ('{job="varlogs", service_name="payments", level="error"}', [
            (ns + 3_000_000, "card declined order=1002 code=51", []),
        ]),
    ])
    snappy = pa.compress(proto, codec="snappy", asbytes=True)
    write(HERE, "apigw-v2-push-protobuf-snappy.json", v2_event(
        "POST", "/loki/api/v1/push", "",
        {"content-type": "application/x-protobuf", "user-agent": "promtail/3.5.1",
         "x-scope-orgid": "team-a"},
        snappy, True))

    # Alloy / Fluent Bit: JSON, as text.
    js = json.dumps({"streams": [{
        "stream": {"service_name": "frontend", "env": "prod"},
        "values": [[str(ns + 4_000_000), "GET /cart 200 12ms"],
                   [str(ns + 5_000_000), "GET /checkout 500 80ms", {"trace_id": "0af7651916cd43dd"}]],
    }]}, separators=(",", ":")).encode()
    write(HERE, "apigw-v2-push-json.json", v2_event(
        "POST", "/loki/api/v1/push", "",
        {"content-type": "application/json", "user-agent": "Alloy/v1.9.1 (linux; binary)",
         "x-scope-orgid": "team-a"},
        js, False))

    # gzip-compressed JSON (Fluent Bit `compress gzip`, Vector `compression = "gzip"`): binary.
    gz_body = json.dumps({"streams": [{
        "stream": {"service_name": "worker"},
        "values": [[str(ns + 6_000_000), "job 77 finished in 3.2s"]],
    }]}, separators=(",", ":")).encode()
    gz = gzip.compress(gz_body, mtime=0)
    write(HERE, "apigw-v2-push-json-gzip.json", v2_event(
        "POST", "/loki/api/v1/push", "",
        {"content-type": "application/json", "content-encoding": "gzip",
         "user-agent": "Fluent-Bit/4.0.3", "x-scope-orgid": "team-a"},
        gz, True))

    # Query side: Grafana's data source through the HTTP API.
    q = urllib.parse.urlencode({
        "query": '{service_name=~"checkout|frontend|worker"}',
        "start": str(ns - 60_000_000_000), "end": str(ns + 60_000_000_000),
        "limit": "100", "direction": "backward",
    }, quote_via=urllib.parse.quote)
    write(QUERY_EVENTS, "apigw-v2-query-range.json", v2_event(
        "GET", "/loki/api/v1/query_range", q,
        {"accept": "application/json", "user-agent": "Grafana/12.1.0", "x-scope-orgid": "team-a"},
        b"", False))

    # REST API (payload 1.0): label names.
    rest = {
        "resource": "/loki/api/v1/{proxy+}",
        "path": "/loki/api/v1/labels",
        "httpMethod": "GET",
        "headers": {"Accept": "application/json", "Host": HOST, "User-Agent": "logcli/3.5.1",
                    "X-Scope-OrgID": "team-a", "X-Forwarded-Proto": "https"},
        "multiValueHeaders": {"Accept": ["application/json"], "Host": [HOST],
                              "User-Agent": ["logcli/3.5.1"], "X-Scope-OrgID": ["team-a"],
                              "X-Forwarded-Proto": ["https"]},
        "queryStringParameters": {"start": str(ns - 3_600_000_000_000), "end": str(ns + 3_600_000_000_000)},
        "multiValueQueryStringParameters": {"start": [str(ns - 3_600_000_000_000)],
                                            "end": [str(ns + 3_600_000_000_000)]},
        "pathParameters": {"proxy": "labels"},
        "stageVariables": None,
        "requestContext": {
            "accountId": "123456789012", "apiId": "a1b2c3d4e5", "resourceId": "abc123",
            "resourcePath": "/loki/api/v1/{proxy+}", "httpMethod": "GET",
            "path": "/prod/loki/api/v1/labels", "protocol": "HTTP/1.1", "stage": "prod",
            "domainName": HOST, "domainPrefix": "a1b2c3d4e5", "requestId": "c6af9ac6-7b61-11e6-9a41-93e8deadbeef",
            "requestTime": "28/Nov/2026:12:00:05 +0000", "requestTimeEpoch": (T0 + 5) * 1000,
            "identity": {"sourceIp": "203.0.113.7", "userAgent": "logcli/3.5.1"},
        },
        "body": None,
        "isBase64Encoded": False,
    }
    write(QUERY_EVENTS, "apigw-v1-labels.json", rest)

    # ALB target group (multi-value headers off): values of a label.
    alb = {
        "requestContext": {"elb": {"targetGroupArn":
            "arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/parquetry-query/6d0ecf831eec9f09"}},
        "httpMethod": "GET",
        "path": "/loki/api/v1/label/service_name/values",
        "queryStringParameters": {"start": str(ns - 3_600_000_000_000), "end": str(ns + 3_600_000_000_000)},
        "headers": {"accept": "application/json", "host": "parquetry.internal.example.com",
                    "user-agent": "Grafana/12.1.0", "x-scope-orgid": "team-a",
                    "x-amzn-trace-id": "Root=1-674a1c00-6a1b2c3d4e5f60718293a4b5",
                    "x-forwarded-for": "10.0.0.12", "x-forwarded-port": "443", "x-forwarded-proto": "https"},
        "body": "",
        "isBase64Encoded": False,
    }
    write(QUERY_EVENTS, "alb-label-values.json", alb)


if __name__ == "__main__":
    main()
