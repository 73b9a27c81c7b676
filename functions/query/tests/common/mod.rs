//! What the leaf and emulator tests share: the function's environment on the run's backend
//! and a store seeded with the recorded pushes.

use std::sync::Once;

use lambda_http::Service;
use lambda_http::lambda_runtime::{Context, LambdaEvent};
use lambda_http::request::LambdaRequest;
use parquetry_lambda::{HostSettings, LambdaHandler, Role, app, load_config};
use serde_json::Value;

pub(crate) const PUSHES: [&str; 3] = [
    include_str!("../../../push/tests/events/apigw-v2-push-protobuf-snappy.json"),
    include_str!("../../../push/tests/events/apigw-v2-push-json.json"),
    include_str!("../../../push/tests/events/apigw-v2-push-json-gzip.json"),
];
pub(crate) const QUERY_RANGE: &str = include_str!("../events/apigw-v2-query-range.json");

/// What `main` does before anything else.
pub(crate) fn prepare() {
    static ONCE: Once = Once::new();
    ONCE.call_once(parquetry_lambda::prepare_process);
}

/// The function's environment: storage on the run's backend for `dir`, plus `extra`.
pub(crate) fn env(dir: &std::path::Path, extra: &[(&str, &str)]) -> Vec<(String, String)> {
    prepare();
    let mut env = parquetry_test_support::s3::storage_env_for_run(dir, "lambda-leaf");
    env.push(("PARQUETRY__AUTH_ENABLED".into(), "true".into()));
    env.push((
        "PARQUETRY__LIMITS_CONFIG__REJECT_OLD_SAMPLES".into(),
        "false".into(),
    ));
    env.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    env
}

/// The HTTP handler of `role` over `dir`'s store, without fan-out.
pub(crate) fn http_handler(dir: &std::path::Path, role: Role) -> LambdaHandler {
    let env = env(dir, &[]);
    let settings = HostSettings::from_env(role, env.clone()).unwrap();
    LambdaHandler::new(
        app(load_config(env).unwrap(), &settings).unwrap(),
        settings.max_response_bytes,
    )
}

/// The handler's answer to an HTTP event.
pub(crate) async fn invoke(h: &mut LambdaHandler, event: &str) -> Value {
    let request: LambdaRequest = serde_json::from_str(event).unwrap();
    let resp = h
        .call(LambdaEvent::new(request, Context::default()))
        .await
        .unwrap();
    serde_json::from_str(resp.get()).unwrap()
}

/// A store holding the recorded pushes (tenant `team-a`).
pub(crate) async fn seeded() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let mut push = http_handler(dir.path(), Role::Push);
    for event in PUSHES {
        let resp = invoke(&mut push, event).await;
        assert_eq!(resp["statusCode"], 204, "{resp}");
    }
    dir
}
