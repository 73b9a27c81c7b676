//! The query function's handler fed with recorded events (HTTP API payload 2.0 from Grafana,
//! REST API payload 1.0 from logcli, an ALB target group), after the push function's handler
//! stored the recorded pushes in a real store in a temporary directory.

use std::io::Read;
use std::sync::Once;

use base64::Engine as _;
use lambda_http::Service;
use lambda_http::lambda_runtime::{Context, LambdaEvent};
use lambda_http::request::LambdaRequest;
use parquetry_lambda::{HostSettings, LambdaHandler, Role, app, load_config};
use serde_json::Value;

const PUSHES: [&str; 3] = [
    include_str!("../../push/tests/events/apigw-v2-push-protobuf-snappy.json"),
    include_str!("../../push/tests/events/apigw-v2-push-json.json"),
    include_str!("../../push/tests/events/apigw-v2-push-json-gzip.json"),
];
const QUERY_RANGE: &str = include_str!("events/apigw-v2-query-range.json");
const REST_LABELS: &str = include_str!("events/apigw-v1-labels.json");
const ALB_LABEL_VALUES: &str = include_str!("events/alb-label-values.json");

/// What `main` does before anything else (the REST event carries the stage `prod`).
fn prepare() {
    static ONCE: Once = Once::new();
    ONCE.call_once(parquetry_lambda::prepare_process);
}

fn handler(dir: &std::path::Path, role: Role, extra: &[(&str, &str)]) -> LambdaHandler {
    prepare();
    let mut env = vec![
        (
            "PARQUETRY__STORAGE__URL".to_string(),
            format!("file://{}", dir.display()),
        ),
        ("PARQUETRY__AUTH_ENABLED".into(), "true".into()),
        (
            "PARQUETRY__LIMITS_CONFIG__REJECT_OLD_SAMPLES".into(),
            "false".into(),
        ),
    ];
    env.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    let settings = HostSettings::from_env(role, env.clone()).unwrap();
    let config = load_config(env).unwrap();
    LambdaHandler::new(app(config, &settings).unwrap(), settings.max_response_bytes)
}

async fn invoke(h: &mut LambdaHandler, event: &str) -> Value {
    let request: LambdaRequest = serde_json::from_str(event).unwrap();
    let response = h
        .call(LambdaEvent::new(request, Context::default()))
        .await
        .unwrap();
    serde_json::from_str(response.get()).unwrap()
}

/// The body as the client receives it: base64 and gzip undone.
fn body(resp: &Value) -> String {
    let raw = resp["body"].as_str().unwrap_or_default();
    let bytes = if resp["isBase64Encoded"] == true {
        base64::engine::general_purpose::STANDARD
            .decode(raw)
            .unwrap()
    } else {
        raw.as_bytes().to_vec()
    };
    let gzipped = resp["headers"]["content-encoding"] == "gzip"
        || resp["multiValueHeaders"]["content-encoding"][0] == "gzip";
    if gzipped {
        let mut out = String::new();
        flate2::read::GzDecoder::new(&bytes[..])
            .read_to_string(&mut out)
            .unwrap();
        out
    } else {
        String::from_utf8(bytes).unwrap()
    }
}

async fn seeded() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let mut push = handler(dir.path(), Role::Push, &[]);
    for event in PUSHES {
        let resp = invoke(&mut push, event).await;
        assert_eq!(resp["statusCode"], 204, "{resp}");
    }
    dir
}

fn with_header(event: &str, name: &str, value: Option<&str>) -> String {
    let mut v: Value = serde_json::from_str(event).unwrap();
    let headers = v["headers"].as_object_mut().unwrap();
    match value {
        Some(value) => headers.insert(name.into(), value.into()),
        None => headers.remove(name),
    };
    v.to_string()
}

#[tokio::test]
async fn grafana_query_range_reads_back_every_pushed_line_gzipped() {
    let dir = seeded().await;
    let mut h = handler(dir.path(), Role::Query, &[]);
    let resp = invoke(&mut h, QUERY_RANGE).await;
    assert_eq!(resp["statusCode"], 200, "{resp}");
    // Grafana sends Accept-Encoding: gzip; the body goes back compressed, as base64.
    assert_eq!(resp["headers"]["content-encoding"], "gzip", "{resp}");
    assert_eq!(resp["isBase64Encoded"], true);
    let json: Value = serde_json::from_str(&body(&resp)).unwrap();
    assert_eq!(json["status"], "success", "{json}");
    let mut lines: Vec<String> = json["data"]["result"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|s| s["values"].as_array().unwrap().iter())
        .map(|v| v[1].as_str().unwrap().to_string())
        .collect();
    lines.sort();
    assert_eq!(
        lines,
        [
            "GET /cart 200 12ms",
            "GET /checkout 500 80ms",
            "job 77 finished in 3.2s",
            "order 1001 placed total=12.50",
            "order 1002 placed total=99.00",
        ]
    );
}

#[tokio::test]
async fn uncompressed_when_the_client_does_not_ask() {
    let dir = seeded().await;
    let mut h = handler(dir.path(), Role::Query, &[]);
    let event = with_header(QUERY_RANGE, "accept-encoding", None);
    let resp = invoke(&mut h, &event).await;
    assert_eq!(resp["statusCode"], 200, "{resp}");
    assert_eq!(resp["isBase64Encoded"], false);
    assert!(body(&resp).contains("order 1001 placed"));
}

#[tokio::test]
async fn tenants_are_isolated_and_required() {
    let dir = seeded().await;
    let mut h = handler(dir.path(), Role::Query, &[]);
    let other = with_header(QUERY_RANGE, "x-scope-orgid", Some("team-b"));
    let resp = invoke(&mut h, &other).await;
    assert_eq!(resp["statusCode"], 200, "{resp}");
    let json: Value = serde_json::from_str(&body(&resp)).unwrap();
    assert_eq!(
        json["data"]["result"].as_array().unwrap().len(),
        0,
        "{json}"
    );

    let none = with_header(QUERY_RANGE, "x-scope-orgid", None);
    assert_eq!(invoke(&mut h, &none).await["statusCode"], 401);
}

#[tokio::test]
async fn rest_api_v1_event_lists_labels() {
    let dir = seeded().await;
    let mut h = handler(dir.path(), Role::Query, &[]);
    let resp = invoke(&mut h, REST_LABELS).await;
    assert_eq!(resp["statusCode"], 200, "{resp}");
    let json: Value = serde_json::from_str(&body(&resp)).unwrap();
    let names: Vec<&str> = json["data"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    for want in ["env", "job", "level", "service_name"] {
        assert!(names.contains(&want), "{want} missing from {names:?}");
    }
}

#[tokio::test]
async fn alb_event_lists_label_values() {
    let dir = seeded().await;
    let mut h = handler(dir.path(), Role::Query, &[]);
    let resp = invoke(&mut h, ALB_LABEL_VALUES).await;
    assert_eq!(resp["statusCode"], 200, "{resp}");
    assert!(resp["statusDescription"].is_string(), "{resp}");
    let json: Value = serde_json::from_str(&body(&resp)).unwrap();
    assert_eq!(
        json["data"],
        serde_json::json!(["checkout", "frontend", "payments", "worker"])
    );
}

#[tokio::test]
async fn response_over_the_lambda_limit_is_a_clear_413() {
    let dir = seeded().await;
    let mut h = handler(
        dir.path(),
        Role::Query,
        &[("PARQUETRY_LAMBDA_MAX_RESPONSE_BYTES", "600")],
    );
    let event = with_header(QUERY_RANGE, "accept-encoding", None);
    let resp = invoke(&mut h, &event).await;
    assert_eq!(resp["statusCode"], 413, "{resp}");
    assert_eq!(resp["isBase64Encoded"], false);
    let text = body(&resp);
    assert!(
        text.contains("AWS Lambda response limit of 600 bytes"),
        "{text}"
    );

    let rest = invoke(&mut h, REST_LABELS).await;
    assert_eq!(rest["statusCode"], 200, "small responses pass: {rest}");
}

#[tokio::test]
async fn push_routes_are_not_served_by_the_query_function() {
    let dir = tempfile::tempdir().unwrap();
    let mut h = handler(dir.path(), Role::Query, &[]);
    let resp = invoke(&mut h, PUSHES[1]).await;
    assert_eq!(resp["statusCode"], 404, "{resp}");
    assert!(body(&resp).contains("push function"));
}

#[tokio::test]
async fn live_tail_is_refused_with_the_alternatives() {
    let dir = tempfile::tempdir().unwrap();
    let mut h = handler(dir.path(), Role::Query, &[]);
    let mut event: Value = serde_json::from_str(QUERY_RANGE).unwrap();
    event["rawPath"] = "/loki/api/v1/tail".into();
    event["requestContext"]["http"]["path"] = "/loki/api/v1/tail".into();
    let resp = invoke(&mut h, &event.to_string()).await;
    assert_eq!(resp["statusCode"], 400, "{resp}");
    let text = body(&resp);
    assert!(text.contains("query_range"), "{text}");
    assert!(text.contains("parquetry serve"), "{text}");
}
