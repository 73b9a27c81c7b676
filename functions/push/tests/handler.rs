//! The push function's handler fed with recorded API Gateway events (HTTP API payload 2.0):
//! Promtail's base64-encoded snappy protobuf, JSON, and gzip-compressed JSON, against a real
//! store in a temporary directory.

use lambda_http::Service;
use lambda_http::lambda_runtime::{Context, LambdaEvent};
use lambda_http::request::LambdaRequest;
use parquetry_lambda::{HostSettings, LambdaHandler, Role, app, load_config};
use serde_json::Value;

const PROTOBUF: &str = include_str!("events/apigw-v2-push-protobuf-snappy.json");
const JSON: &str = include_str!("events/apigw-v2-push-json.json");
const GZIP: &str = include_str!("events/apigw-v2-push-json-gzip.json");

fn env(dir: &std::path::Path, extra: &[(&str, &str)]) -> Vec<(String, String)> {
    let mut env = vec![
        (
            "PARQUETRY__STORAGE__URL".to_string(),
            format!("file://{}", dir.display()),
        ),
        ("PARQUETRY__AUTH_ENABLED".into(), "true".into()),
        // The recorded events carry fixed timestamps that age.
        (
            "PARQUETRY__LIMITS_CONFIG__REJECT_OLD_SAMPLES".into(),
            "false".into(),
        ),
    ];
    env.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    env
}

fn handler(dir: &std::path::Path, extra: &[(&str, &str)]) -> LambdaHandler {
    let env = env(dir, extra);
    let settings = HostSettings::from_env(Role::Push, env.clone()).unwrap();
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

fn with_header(event: &str, name: &str, value: Option<&str>) -> String {
    let mut v: Value = serde_json::from_str(event).unwrap();
    let headers = v["headers"].as_object_mut().unwrap();
    match value {
        Some(value) => headers.insert(name.into(), value.into()),
        None => headers.remove(name),
    };
    v.to_string()
}

fn parquet_files(dir: &std::path::Path) -> Vec<String> {
    fn walk(d: &std::path::Path, out: &mut Vec<String>) {
        for e in std::fs::read_dir(d).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                walk(&p, out);
            } else if p.extension().is_some_and(|x| x == "parquet") {
                out.push(p.display().to_string());
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, &mut out);
    out
}

#[tokio::test]
async fn recorded_pushes_are_stored_under_the_tenant() {
    let dir = tempfile::tempdir().unwrap();
    let mut h = handler(dir.path(), &[]);
    for (name, event) in [("protobuf", PROTOBUF), ("json", JSON), ("gzip", GZIP)] {
        let resp = invoke(&mut h, event).await;
        assert_eq!(resp["statusCode"], 204, "{name}: {resp}");
    }
    let files = parquet_files(dir.path());
    // protobuf: checkout + payments partitions; json: frontend; gzip: worker.
    assert_eq!(files.len(), 4, "{files:?}");
    assert!(
        files.iter().all(|f| f.contains("tenant=team-a")),
        "{files:?}"
    );
}

#[tokio::test]
async fn tenant_header_is_required_with_auth_enabled() {
    let dir = tempfile::tempdir().unwrap();
    let mut h = handler(dir.path(), &[]);
    let resp = invoke(&mut h, &with_header(JSON, "x-scope-orgid", None)).await;
    assert_eq!(resp["statusCode"], 401, "{resp}");
    assert!(parquet_files(dir.path()).is_empty());
}

#[tokio::test]
async fn oversized_body_is_a_clear_413() {
    let dir = tempfile::tempdir().unwrap();
    let mut h = handler(
        dir.path(),
        &[("PARQUETRY__DISTRIBUTOR__MAX_RECV_MSG_SIZE", "100")],
    );
    let resp = invoke(&mut h, PROTOBUF).await;
    assert_eq!(resp["statusCode"], 413, "{resp}");
    let body = resp["body"].as_str().unwrap();
    assert!(body.contains("message size too large"), "{body}");
}

#[tokio::test]
async fn query_routes_are_not_served_by_the_push_function() {
    let dir = tempfile::tempdir().unwrap();
    let mut h = handler(dir.path(), &[]);
    let mut v: Value = serde_json::from_str(JSON).unwrap();
    v["rawPath"] = "/loki/api/v1/labels".into();
    v["requestContext"]["http"]["method"] = "GET".into();
    v["requestContext"]["http"]["path"] = "/loki/api/v1/labels".into();
    v.as_object_mut().unwrap().remove("body");
    let resp = invoke(&mut h, &v.to_string()).await;
    assert_eq!(resp["statusCode"], 404, "{resp}");
    let body = resp["body"].as_str().unwrap();
    assert!(body.contains("query function"), "{body}");
}

#[tokio::test]
async fn shared_secret_guards_the_url() {
    let dir = tempfile::tempdir().unwrap();
    let secret = "s3cr3t-token-for-tests-0123456789";
    let mut h = handler(dir.path(), &[("PARQUETRY_AUTH_TOKEN", secret)]);

    let resp = invoke(&mut h, JSON).await;
    assert_eq!(resp["statusCode"], 401, "{resp}");
    assert!(resp["headers"]["www-authenticate"].is_string(), "{resp}");
    let wrong = with_header(
        JSON,
        "authorization",
        Some("Bearer not-the-secret-0123456789"),
    );
    assert_eq!(invoke(&mut h, &wrong).await["statusCode"], 401);
    assert!(parquet_files(dir.path()).is_empty());

    let bearer = format!("Bearer {secret}");
    let resp = invoke(&mut h, &with_header(JSON, "authorization", Some(&bearer))).await;
    assert_eq!(resp["statusCode"], 204, "{resp}");
    assert_eq!(parquet_files(dir.path()).len(), 1);
}
