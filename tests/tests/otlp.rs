//! `POST /otlp/v1/logs`: the OpenTelemetry Python SDK's OTLP/HTTP exporter pushes, and the
//! labels, series and structured metadata read back are what the reference Loki showed for the
//! same export (recorded below); then JSON bodies, gzip, partial success and bad bodies.

use std::collections::BTreeMap;

use parquetry_e2e::{TestServer, gzip, now_ns, python, run_client};
use parquetry_ingest::otlp::proto::collector::logs::v1::{
    ExportLogsServiceRequest, ExportLogsServiceResponse,
};
use parquetry_ingest::otlp::proto::common::v1::{AnyValue, KeyValue, any_value::Value};
use parquetry_ingest::otlp::proto::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use parquetry_ingest::otlp::proto::resource::v1::Resource;
use prost::Message;
use serde_json::{Value as Json, json};

const RUN: &str = "e2e";

/// What the reference Loki (3.x, default `otlp_config`) answered to `series` for the export of
/// `tests/clients/otlp_export.py`, with the run id as `{run}`.
const LOKI_SERIES: &str = r#"[
  {"k8s_namespace_name":"shop-ns","k8s_pod_name":"checkout-7d9f","service_name":"checkout-{run}","service_namespace":"shop","deployment_environment":"prod"},
  {"service_name":"unknown_service"},
  {"cloud_region":"eu-west-1","container_name":"web-{run}","service_name":"web-{run}"}
]"#;

const LOKI_LABELS: &str = r#"["cloud_region","container_name","deployment_environment","k8s_namespace_name","k8s_pod_name","service_name","service_namespace"]"#;

/// Loki's categorize-labels log query over the same export: per stream, each entry as
/// `[offset from the export's base time, line, structured metadata]`. `@base+N` is the base
/// time plus N ns; `@any` is a value the SDK set from its clock (checked present).
const LOKI_STREAMS: &str = r#"[
 {"stream":{"cloud_region":"eu-west-1","container_name":"web-{run}","service_name":"web-{run}"},
  "values":[[5000000000,"level=info msg=\"ignored for the level: severity wins\"",
    {"detected_level":"fatal","observed_timestamp":"@any","os_type":"linux","run":"{run}","scope_name":"web","severity_number":"21","severity_text":"FATAL"}]]},
 {"stream":{"deployment_environment":"prod","k8s_namespace_name":"shop-ns","k8s_pod_name":"checkout-7d9f","service_name":"checkout-{run}","service_namespace":"shop"},
  "values":[
   [0,"payment declined",
    {"_dunder":"double","_n_":"utf8","_private":"underscore","big":"1e+21","custom_attr_x":"x","dash_name":"dash","detected_level":"warn","event_name":"payment.declined","flags":"1","host_name":"node-1","http_route":"/pay","http_status_code":"402","key_1st":"digit","nested_deeper_n":"7","nested_inner_key":"v","observed_timestamp":"@base+500000000","process_pid":"4242","ratio":"0.25","raw":"AAFoaQ==","retry":"true","scope_attr":"s","scope_name":"checkout.scope","scope_version":"1.2.3","severity_number":"13","severity_text":"Warning","span_id":"eee19b7ec3c1b174","tags":"[\"a\",1,true]","tiny":"1.5e-7","trace_id":"5b8efff798038103d269b633813fc60c","whole":"3"}],
   [1000000000,"{\"code\":7,\"f\":1.5,\"list\":[1,\"two\"],\"msg\":\"structured <body>\",\"ok\":false}",
    {"custom_attr_x":"x","detected_level":"error","host_name":"node-1","observed_timestamp":"@base+1500000000","process_pid":"4242","scope_attr":"s","scope_name":"checkout.scope","scope_version":"1.2.3","severity_number":"18"}],
   [2000000000,"12345",
    {"custom_attr_x":"x","detected_level":"error","host_name":"node-1","level":"error","observed_timestamp":"@any","process_pid":"4242","scope_attr":"s","scope_name":"checkout.scope","scope_version":"1.2.3","severity_number":"5"}],
   [3000000000,"[\"x\",2,{\"k\":\"v\"}]",
    {"custom_attr_x":"x","detected_level":"unknown","host_name":"node-1","observed_timestamp":"@any","process_pid":"4242","scope_attr":"s","scope_name":"checkout.scope","scope_version":"1.2.3"}],
   [4500000000,"no timestamp",
    {"custom_attr_x":"x","detected_level":"info","host_name":"node-1","process_pid":"4242","scope_attr":"s","scope_name":"checkout.scope","scope_version":"1.2.3","severity_number":"9"}]]},
 {"stream":{"service_name":"unknown_service"},
  "values":[[6000000000,"level=warn msg=\"from the line\"",
    {"detected_level":"warn","host_name":"node-2","observed_timestamp":"@any","run":"{run}"}]]}
]"#;

fn expected(text: &str) -> Json {
    serde_json::from_str(&text.replace("{run}", RUN)).unwrap()
}

async fn get(s: &TestServer, path: &str, params: &[(&str, &str)], categorize: bool) -> Json {
    let mut req = reqwest::Client::new().get(s.url(path)).query(params);
    if categorize {
        req = req.header("X-Loki-Response-Encoding-Flags", "categorize-labels");
    }
    let r = req.send().await.unwrap();
    assert_eq!(r.status().as_u16(), 200);
    serde_json::from_str(&r.text().await.unwrap()).unwrap()
}

fn sorted_series(mut v: Vec<Json>) -> Vec<Json> {
    v.sort_by_key(|s| s.to_string());
    v
}

/// The categorize-labels streams as `stream labels → [(offset, line, metadata)]`, checking
/// `@any` / `@base+N` placeholders against the expectation.
fn check_streams(got: &Json, want: &Json, base_ns: i64) {
    let by_labels = |v: &Json| -> BTreeMap<String, Vec<Json>> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|s| {
                (
                    s["stream"].to_string(),
                    s["values"].as_array().unwrap().clone(),
                )
            })
            .collect()
    };
    let got = by_labels(got);
    let want = by_labels(want);
    assert_eq!(
        got.keys().collect::<Vec<_>>(),
        want.keys().collect::<Vec<_>>(),
        "streams"
    );
    for (stream, want_entries) in &want {
        let got_entries = &got[stream];
        assert_eq!(got_entries.len(), want_entries.len(), "entries of {stream}");
        for (g, w) in got_entries.iter().zip(want_entries) {
            let ts: i64 = g[0].as_str().unwrap().parse().unwrap();
            assert_eq!(ts - base_ns, w[0].as_i64().unwrap(), "timestamp of {g}");
            assert_eq!(g[1], w[1], "line");
            assert!(
                g[2].get("parsed").is_none(),
                "no parsed labels at ingest: {g}"
            );
            let got_md = g[2]["structuredMetadata"].as_object().unwrap();
            let want_md = w[2].as_object().unwrap();
            assert_eq!(
                got_md.keys().collect::<Vec<_>>(),
                want_md.keys().collect::<Vec<_>>(),
                "metadata names of {g}"
            );
            for (k, wv) in want_md {
                let wv = wv.as_str().unwrap();
                let gv = got_md[k].as_str().unwrap();
                if wv == "@any" {
                    assert!(gv.parse::<i64>().is_ok(), "{k}={gv}");
                } else if let Some(off) = wv.strip_prefix("@base+") {
                    let off: i64 = off.parse().unwrap();
                    assert_eq!(gv, (base_ns + off).to_string(), "{k}");
                } else {
                    assert_eq!(gv, wv, "{k} of {g}");
                }
            }
        }
    }
}

#[tokio::test]
async fn sdk_export_reads_back_as_reference_loki_shows_it() {
    let s = TestServer::start("").await;
    let out = run_client(&python(), &["otlp_export.py", &s.base, RUN]).await;
    let printed: Json = serde_json::from_str(out.trim()).unwrap();
    let base_ns = printed["base_ns"].as_i64().unwrap();

    let series = get(
        &s,
        "/loki/api/v1/series",
        &[("match[]", r#"{service_name=~".+"}"#), ("since", "1h")],
        false,
    )
    .await;
    assert_eq!(
        sorted_series(series["data"].as_array().unwrap().clone()),
        sorted_series(expected(LOKI_SERIES).as_array().unwrap().clone())
    );

    let labels = get(&s, "/loki/api/v1/labels", &[("since", "1h")], false).await;
    assert_eq!(labels["data"], expected(LOKI_LABELS));

    let logs = get(
        &s,
        "/loki/api/v1/query_range",
        &[
            ("query", r#"{service_name=~".+"}"#),
            ("since", "1h"),
            ("limit", "100"),
            ("direction", "forward"),
        ],
        true,
    )
    .await;
    check_streams(&logs["data"]["result"], &expected(LOKI_STREAMS), base_ns);
    s.stop().await;
}

/// A tenant's `otlp_config` override, the same as `limits_config.otlp_config` of the reference
/// Loki whose answers are below: `host.name` indexed, `process.*` and `scope.attr` dropped,
/// the `http.route` log attribute indexed, `nested*` and `tags` dropped, `severity_text` indexed.
const TENANT_CONFIG: &str = r#"auth_enabled: true
overrides:
  team-otel:
    otlp_config:
      resource_attributes:
        attributes_config:
          - action: index_label
            attributes: [host.name]
          - action: drop
            regex: process\..*
      scope_attributes:
        - action: drop
          attributes: [scope.attr]
      log_attributes:
        - action: index_label
          attributes: [http.route]
        - action: drop
          regex: nested.*|tags
      severity_text_as_label: true
"#;

const LOKI_TENANT_SERIES: &str = r#"[
  {"deployment_environment":"prod","host_name":"node-1","k8s_namespace_name":"shop-ns","k8s_pod_name":"checkout-7d9f","service_name":"checkout-{run}","service_namespace":"shop"},
  {"severity_text":"Warning","deployment_environment":"prod","host_name":"node-1","http_route":"/pay","k8s_namespace_name":"shop-ns","k8s_pod_name":"checkout-7d9f","service_name":"checkout-{run}","service_namespace":"shop"},
  {"host_name":"node-2","service_name":"unknown_service"},
  {"service_name":"web-{run}","severity_text":"FATAL","cloud_region":"eu-west-1","container_name":"web-{run}"}
]"#;

const LOKI_TENANT_LABELS: &str = r#"["cloud_region","container_name","deployment_environment","host_name","http_route","k8s_namespace_name","k8s_pod_name","service_name","service_namespace","severity_text"]"#;

/// Loki renames structured metadata that collides with a stream label (`severity_text`) to
/// `severity_text_extracted` in query results.
const LOKI_TENANT_STREAMS: &str = r#"[
 {"stream":{"cloud_region":"eu-west-1","container_name":"web-{run}","service_name":"web-{run}","severity_text":"FATAL"},
  "values":[
   [5000000000,"level=info msg=\"ignored for the level: severity wins\"",{"detected_level":"fatal","observed_timestamp":"@any","os_type":"linux","run":"{run}","scope_name":"web","severity_number":"21","severity_text_extracted":"FATAL"}]]},
 {"stream":{"deployment_environment":"prod","host_name":"node-1","http_route":"/pay","k8s_namespace_name":"shop-ns","k8s_pod_name":"checkout-7d9f","service_name":"checkout-{run}","service_namespace":"shop","severity_text":"Warning"},
  "values":[
   [0,"payment declined",{"_dunder":"double","_n_":"utf8","_private":"underscore","big":"1e+21","custom_attr_x":"x","dash_name":"dash","detected_level":"warn","event_name":"payment.declined","flags":"1","http_status_code":"402","key_1st":"digit","observed_timestamp":"@base+500000000","ratio":"0.25","raw":"AAFoaQ==","retry":"true","scope_name":"checkout.scope","scope_version":"1.2.3","severity_number":"13","severity_text_extracted":"Warning","span_id":"eee19b7ec3c1b174","tiny":"1.5e-7","trace_id":"5b8efff798038103d269b633813fc60c","whole":"3"}]]},
 {"stream":{"deployment_environment":"prod","host_name":"node-1","k8s_namespace_name":"shop-ns","k8s_pod_name":"checkout-7d9f","service_name":"checkout-{run}","service_namespace":"shop"},
  "values":[
   [1000000000,"{\"code\":7,\"f\":1.5,\"list\":[1,\"two\"],\"msg\":\"structured <body>\",\"ok\":false}",{"custom_attr_x":"x","detected_level":"error","observed_timestamp":"@base+1500000000","scope_name":"checkout.scope","scope_version":"1.2.3","severity_number":"18"}],
   [2000000000,"12345",{"custom_attr_x":"x","detected_level":"error","level":"error","observed_timestamp":"@any","scope_name":"checkout.scope","scope_version":"1.2.3","severity_number":"5"}],
   [3000000000,"[\"x\",2,{\"k\":\"v\"}]",{"custom_attr_x":"x","detected_level":"unknown","observed_timestamp":"@any","scope_name":"checkout.scope","scope_version":"1.2.3"}],
   [4500000000,"no timestamp",{"custom_attr_x":"x","detected_level":"info","scope_name":"checkout.scope","scope_version":"1.2.3","severity_number":"9"}]]},
 {"stream":{"host_name":"node-2","service_name":"unknown_service"},
  "values":[
   [6000000000,"level=warn msg=\"from the line\"",{"detected_level":"warn","observed_timestamp":"@any","run":"{run}"}]]}
]"#;

#[tokio::test]
async fn tenant_otlp_config_reads_back_as_reference_loki_shows_it() {
    let s = TestServer::start(TENANT_CONFIG).await;
    let out = run_client(&python(), &["otlp_export.py", &s.base, RUN, "team-otel"]).await;
    let printed: Json = serde_json::from_str(out.trim()).unwrap();
    let base_ns = printed["base_ns"].as_i64().unwrap();
    let get_as = |path: &'static str, params: Vec<(&'static str, &'static str)>, cat: bool| {
        let url = s.url(path);
        async move {
            let mut req = reqwest::Client::new()
                .get(url)
                .query(&params)
                .header("X-Scope-OrgID", "team-otel");
            if cat {
                req = req.header("X-Loki-Response-Encoding-Flags", "categorize-labels");
            }
            let r = req.send().await.unwrap();
            assert_eq!(r.status().as_u16(), 200);
            serde_json::from_str::<Json>(&r.text().await.unwrap()).unwrap()
        }
    };
    let series = get_as(
        "/loki/api/v1/series",
        vec![("match[]", r#"{service_name=~".+"}"#), ("since", "1h")],
        false,
    )
    .await;
    assert_eq!(
        sorted_series(series["data"].as_array().unwrap().clone()),
        sorted_series(expected(LOKI_TENANT_SERIES).as_array().unwrap().clone())
    );
    let labels = get_as("/loki/api/v1/labels", vec![("since", "1h")], false).await;
    assert_eq!(labels["data"], expected(LOKI_TENANT_LABELS));
    let logs = get_as(
        "/loki/api/v1/query_range",
        vec![
            ("query", r#"{service_name=~".+"}"#),
            ("since", "1h"),
            ("limit", "100"),
            ("direction", "forward"),
        ],
        true,
    )
    .await;
    check_streams(
        &logs["data"]["result"],
        &expected(LOKI_TENANT_STREAMS),
        base_ns,
    );
    s.stop().await;
}

fn kv(k: &str, v: &str) -> KeyValue {
    KeyValue {
        key: k.into(),
        value: Some(AnyValue {
            value: Some(Value::StringValue(v.into())),
        }),
        ..Default::default()
    }
}

fn request(service: &str, lines: &[(i64, &str)]) -> ExportLogsServiceRequest {
    ExportLogsServiceRequest {
        resource_logs: vec![ResourceLogs {
            resource: Some(Resource {
                attributes: vec![kv("service.name", service)],
                ..Default::default()
            }),
            scope_logs: vec![ScopeLogs {
                log_records: lines
                    .iter()
                    .map(|(ts, line)| LogRecord {
                        time_unix_nano: *ts as u64,
                        body: Some(AnyValue {
                            value: Some(Value::StringValue(line.to_string())),
                        }),
                        ..Default::default()
                    })
                    .collect(),
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

async fn post(
    s: &TestServer,
    content_type: &str,
    encoding: Option<&str>,
    body: Vec<u8>,
) -> (u16, String, Vec<u8>) {
    let mut req = reqwest::Client::new()
        .post(s.url("/otlp/v1/logs"))
        .header("Content-Type", content_type)
        .body(body);
    if let Some(e) = encoding {
        req = req.header("Content-Encoding", e);
    }
    let r = req.send().await.unwrap();
    let status = r.status().as_u16();
    let ct = r
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    (status, ct, r.bytes().await.unwrap().to_vec())
}

async fn lines(s: &TestServer, service: &str) -> Vec<String> {
    let v = get(
        s,
        "/loki/api/v1/query_range",
        &[
            ("query", &format!(r#"{{service_name="{service}"}}"#)),
            ("since", "1h"),
            ("direction", "forward"),
        ],
        false,
    )
    .await;
    v["data"]["result"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|s| s["values"].as_array().unwrap().clone())
        .map(|e| e[1].as_str().unwrap().to_string())
        .collect()
}

/// The `message` of a `google.rpc.Status` error body.
fn status_message(body: &[u8]) -> String {
    #[derive(Clone, PartialEq, prost::Message)]
    struct Status {
        #[prost(int32, tag = "1")]
        code: i32,
        #[prost(string, tag = "2")]
        message: String,
    }
    Status::decode(body).unwrap().message
}

#[tokio::test]
async fn json_gzip_and_partial_success() {
    let s = TestServer::start("").await;
    let now = now_ns();
    // OTLP JSON: int64 as strings or numbers, enum by name, snake_case names, hex ids.
    let body = json!({"resourceLogs": [{
        "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "json-svc"}}]},
        "scopeLogs": [{"scope": {"name": "js"}, "logRecords": [
            {"timeUnixNano": (now - 2_000_000_000).to_string(), "severityNumber": "SEVERITY_NUMBER_ERROR",
             "body": {"stringValue": "json one"}, "traceId": "5B8EFFF798038103D269B633813FC60C",
             "attributes": [{"key": "n", "value": {"intValue": "42"}}]},
            {"time_unix_nano": now - 1_000_000_000, "severity_number": 9,
             "body": {"stringValue": "json two"}}
        ]}]
    }]});
    let (status, ct, resp) =
        post(&s, "application/json", None, body.to_string().into_bytes()).await;
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&resp));
    assert_eq!(ct, "application/json");
    assert_eq!(serde_json::from_slice::<Json>(&resp).unwrap(), json!({}));
    assert_eq!(lines(&s, "json-svc").await, ["json one", "json two"]);
    let v = get(
        &s,
        "/loki/api/v1/query_range",
        &[
            ("query", r#"{service_name="json-svc"} | n="42""#),
            ("since", "1h"),
        ],
        true,
    )
    .await;
    let md = &v["data"]["result"][0]["values"][0][2]["structuredMetadata"];
    assert_eq!(md["trace_id"], "5b8efff798038103d269b633813fc60c");
    assert_eq!(md["severity_number"], "17");
    assert_eq!(md["detected_level"], "error");
    assert_eq!(md["scope_name"], "js");

    // Gzip'd JSON.
    let body = json!({"resourceLogs": [{
        "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "gz-svc"}}]},
        "scopeLogs": [{"logRecords": [{"timeUnixNano": now.to_string(), "body": {"stringValue": "gz line"}}]}]
    }]});
    let (status, _, _) = post(
        &s,
        "application/json",
        Some("gzip"),
        gzip(body.to_string().as_bytes()),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(lines(&s, "gz-svc").await, ["gz line"]);

    // One record too long for max_line_size (256 KiB): stored the rest, partial success.
    let long = "x".repeat(300 * 1024);
    let req = request(
        "partial-svc",
        &[(now - 3_000_000_000, "kept"), (now - 2_000_000_000, &long)],
    );
    let (status, ct, resp) = post(&s, "application/x-protobuf", None, req.encode_to_vec()).await;
    assert_eq!(status, 200);
    assert_eq!(ct, "application/x-protobuf");
    let partial = ExportLogsServiceResponse::decode(&resp[..])
        .unwrap()
        .partial_success
        .expect("partial_success");
    assert_eq!(partial.rejected_log_records, 1);
    assert!(
        partial.error_message.starts_with(
            "max entry size '262144' bytes exceeded for stream '{service_name=\"partial-svc\"}'"
        ),
        "{}",
        partial.error_message
    );
    assert_eq!(lines(&s, "partial-svc").await, ["kept"]);
    s.stop().await;
}

#[tokio::test]
async fn bad_bodies_are_refused_whole() {
    let s = TestServer::start(
        "distributor:\n  max_recv_msg_size: 16KB\n  max_decompressed_size: 64KB\n",
    )
    .await;
    let good = request("bad-svc", &[(now_ns(), "never stored")]).encode_to_vec();

    // Truncated protobuf.
    let (status, ct, body) = post(
        &s,
        "application/x-protobuf",
        None,
        good[..good.len() - 3].to_vec(),
    )
    .await;
    assert_eq!(status, 400);
    assert_eq!(ct, "application/x-protobuf");
    assert!(
        status_message(&body).starts_with("failed to parse OTLP protobuf body"),
        "{}",
        status_message(&body)
    );

    // Wrong content type: Loki's text.
    let (status, _, body) = post(&s, "text/plain", None, good.clone()).await;
    assert_eq!(status, 400);
    assert_eq!(
        status_message(&body),
        "content type: text/plain is not supported"
    );

    // Unsupported encoding.
    let (status, _, body) = post(&s, "application/x-protobuf", Some("br"), good.clone()).await;
    assert_eq!(status, 400);
    assert!(status_message(&body).starts_with("unsupported content encoding br"));

    // Over max_recv_msg_size: 413.
    let big = request("bad-svc", &[(now_ns(), &"y".repeat(20 * 1024))]).encode_to_vec();
    let (status, _, body) = post(&s, "application/x-protobuf", None, big).await;
    assert_eq!(status, 413, "{}", status_message(&body));

    // A gzip bomb: stopped at the decompressed limit.
    let bomb = gzip(&vec![b' '; 1 << 20]);
    let (status, ct, body) = post(&s, "application/json", Some("gzip"), bomb).await;
    assert_eq!(status, 400, "{}", String::from_utf8_lossy(&body));
    assert_eq!(ct, "application/json");
    let msg: Json = serde_json::from_slice(&body).unwrap();
    assert!(
        msg["message"]
            .as_str()
            .unwrap()
            .starts_with("decompressed message size too large than max"),
        "{msg}"
    );

    // An attribute name that normalises to nothing: Loki's text, nothing stored.
    let mut req = request("bad-svc", &[(now_ns(), "never stored")]);
    req.resource_logs[0]
        .resource
        .as_mut()
        .unwrap()
        .attributes
        .push(kv(".", "dot"));
    let (status, _, body) = post(&s, "application/x-protobuf", None, req.encode_to_vec()).await;
    assert_eq!(status, 400);
    assert_eq!(
        status_message(&body),
        r#"symbolizer lookup: normalization for label name "." resulted in invalid name "_""#
    );

    // No records at all: 422 as Loki.
    let (status, _, _) = post(
        &s,
        "application/json",
        None,
        br#"{"resourceLogs":[]}"#.to_vec(),
    )
    .await;
    assert_eq!(status, 422);

    assert!(lines(&s, "bad-svc").await.is_empty());
    s.stop().await;
}
