//! Hardening: every case here was once a way to lose acknowledged data or take the server
//! down. Each replays over HTTP against a real server, on the local directory and (with
//! `PARQUETRY_TEST_BACKEND=s3`) on the S3 server scripts/test.sh starts.

mod http;
mod keys;
mod push;
mod query;

use parquetry_e2e::TestServer;
use serde_json::Value;

/// Pushes a JSON body for `tenant` (no header for `None`) and returns (status, body).
pub(crate) async fn push_json(s: &TestServer, tenant: Option<&str>, body: &Value) -> (u16, String) {
    let mut req = reqwest::Client::new()
        .post(s.url("/loki/api/v1/push"))
        .header("Content-Type", "application/json")
        .body(body.to_string());
    if let Some(t) = tenant {
        req = req.header("X-Scope-OrgID", t);
    }
    let r = req.send().await.expect("push");
    (r.status().as_u16(), r.text().await.expect("body"))
}

/// GETs `path` with `params` for `tenant`; returns (status, body).
pub(crate) async fn get(
    s: &TestServer,
    tenant: Option<&str>,
    path: &str,
    params: &[(&str, String)],
) -> (u16, String) {
    let mut req = reqwest::Client::new().get(s.url(path)).query(params);
    if let Some(t) = tenant {
        req = req.header("X-Scope-OrgID", t);
    }
    let r = req.send().await.expect("get");
    (r.status().as_u16(), r.text().await.expect("body"))
}

/// A successful JSON answer of `path`, parsed.
pub(crate) async fn get_json(
    s: &TestServer,
    tenant: Option<&str>,
    path: &str,
    params: &[(&str, String)],
) -> Value {
    let (code, body) = get(s, tenant, path, params).await;
    assert_eq!(code, 200, "{path} {params:?}: {body}");
    serde_json::from_str(&body).expect("json")
}

/// `start`/`end` one minute either side of `t0` plus `query`.
pub(crate) fn around(t0: i64, query: &str) -> Vec<(&'static str, String)> {
    vec![
        ("start", (t0 - 60_000_000_000).to_string()),
        ("end", (t0 + 60_000_000_000).to_string()),
        ("query", query.to_string()),
    ]
}
