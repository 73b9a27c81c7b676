//! Loki's delete API and per-stream retention over HTTP: a request hides exactly what it
//! matches at once, survives a restart, is removed from the Parquet objects by the next
//! compaction, can be cancelled in time; `retention_stream` removes only the streams it
//! names; bad input gets Loki's status and message.

use std::path::Path;

use parquetry_e2e::{Backend, TestServer, now_ns};
use parquetry_store::Store;
use parquetry_store::compact::Row;
use serde_json::{Value, json};

/// Removal right away: no cancel period, no grace before old objects go.
const NO_WAIT: &str =
    "compactor:\n  delete_request_cancel_period: 0s\n  retention_delete_delay: 0s\n";

/// Query parameters of one request.
type Params = Vec<(&'static str, String)>;

fn client() -> reqwest::Client {
    reqwest::Client::new()
}

async fn call(
    s: &TestServer,
    method: reqwest::Method,
    path: &str,
    params: &[(&str, String)],
) -> (u16, String) {
    let r = client()
        .request(method, s.url(path))
        .query(params)
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

async fn delete_request(s: &TestServer, params: &[(&str, String)]) -> (u16, String) {
    call(s, reqwest::Method::POST, "/loki/api/v1/delete", params).await
}

async fn list(s: &TestServer) -> Vec<Value> {
    let (code, body) = call(s, reqwest::Method::GET, "/loki/api/v1/delete", &[]).await;
    assert_eq!(code, 200, "{body}");
    serde_json::from_str::<Value>(&body)
        .unwrap()
        .as_array()
        .unwrap()
        .clone()
}

fn secs(ns: i64) -> String {
    (ns / 1_000_000_000).to_string()
}

fn window(t0: i64) -> Vec<(&'static str, String)> {
    vec![
        ("start", (t0 - 3_600_000_000_000).to_string()),
        ("end", (t0 + 60_000_000_000).to_string()),
    ]
}

async fn lines(s: &TestServer, q: &str, t0: i64) -> Vec<String> {
    let mut p = window(t0);
    p.push(("query", q.to_string()));
    p.push(("limit", "1000".into()));
    let (code, body) = call(s, reqwest::Method::GET, "/loki/api/v1/query_range", &p).await;
    assert_eq!(code, 200, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    let mut out: Vec<String> = v["data"]["result"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|s| s["values"].as_array().unwrap().iter())
        .map(|e| e[1].as_str().unwrap().to_string())
        .collect();
    out.sort();
    out
}

/// `sum(count_over_time(q[2h]))` at the end of the window.
async fn count(s: &TestServer, q: &str, t0: i64) -> i64 {
    let p = vec![
        ("query", format!("sum(count_over_time({q}[2h]))")),
        ("time", (t0 + 60_000_000_000).to_string()),
    ];
    let (code, body) = call(s, reqwest::Method::GET, "/loki/api/v1/query", &p).await;
    assert_eq!(code, 200, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    v["data"]["result"][0]["value"][1]
        .as_str()
        .map_or(0, |n| n.parse().unwrap())
}

async fn series(s: &TestServer, t0: i64) -> Vec<String> {
    let mut p = window(t0);
    p.push(("match[]", "{env=\"prod\"}".into()));
    let (code, body) = call(s, reqwest::Method::GET, "/loki/api/v1/series", &p).await;
    assert_eq!(code, 200, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    let mut out: Vec<String> = v["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["app"].as_str().unwrap_or_default().to_string())
        .collect();
    out.sort();
    out
}

fn data(t0: i64) -> Value {
    json!({"streams": [
        {"stream": {"app": "web", "env": "prod"},
         "values": [[t0.to_string(), "GET /a token=SECRET123"],
                    [(t0 + 1_000).to_string(), "GET /b ok"],
                    [(t0 + 2_000).to_string(), "POST /c token=SECRET456"]]},
        {"stream": {"app": "db", "env": "prod"},
         "values": [[(t0 + 500).to_string(), "db token=SECRET789"]]},
        {"stream": {"app": "gone", "env": "prod"},
         "values": [[(t0 + 700).to_string(), "whole stream goes"]]}
    ]})
}

/// Every entry stored in Parquet objects, live or not, read back from the files themselves
/// (on S3: a fresh download).
async fn stored_rows(s: &TestServer) -> Vec<Row> {
    if s.backend == Backend::S3 {
        // Downloads are added to; earlier ones must not pass for what S3 holds now.
        remove_parquet(&s.data_dir);
    }
    assert!(!s.parquet_files().is_empty());
    let store = Store::open(s.data_dir.to_str().unwrap(), vec![]).unwrap();
    store.stored_rows().await.unwrap()
}

fn remove_parquet(dir: &Path) {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    for e in rd.flatten() {
        let p = e.path();
        if p.is_dir() {
            remove_parquet(&p);
        } else if p.extension().is_some_and(|x| x == "parquet") {
            let _ = std::fs::remove_file(p);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delete_hides_exactly_its_entries_survives_restart_and_is_compacted_away() {
    let tmp = tempfile::tempdir().unwrap();
    let s = TestServer::start_on(tmp.path(), NO_WAIT).await;
    let t0 = now_ns() - 600_000_000_000;
    s.push(&data(t0)).await;
    let all = r#"{env="prod"}"#;
    assert_eq!(lines(&s, all, t0).await.len(), 5);
    assert_eq!(series(&s, t0).await, ["db", "gone", "web"]);

    // Lines with a secret in app=web only; all of app=gone.
    let start = secs(t0 - 60_000_000_000);
    let (code, body) = delete_request(
        &s,
        &[
            ("query", r#"{app="web"} |= "SECRET""#.into()),
            ("start", start.clone()),
        ],
    )
    .await;
    assert_eq!((code, body.as_str()), (204, ""));
    let (code, _) = delete_request(
        &s,
        &[
            ("query", r#"{app="gone"}"#.into()),
            ("start", start.clone()),
        ],
    )
    .await;
    assert_eq!(code, 204);

    let expected = vec!["GET /b ok".to_string(), "db token=SECRET789".to_string()];
    assert_eq!(lines(&s, all, t0).await, expected);
    assert_eq!(
        lines(&s, r#"{app="web"} |= "token""#, t0).await,
        Vec::<String>::new()
    );
    assert_eq!(count(&s, all, t0).await, 2);
    assert_eq!(count(&s, r#"{app="web"}"#, t0).await, 1);
    // A stream a request removes entirely is gone from catalog-only answers too.
    assert_eq!(series(&s, t0).await, ["db", "web"]);

    let reqs = list(&s).await;
    assert_eq!(reqs.len(), 2, "{reqs:?}");
    for r in &reqs {
        assert_eq!(r["status"], "received");
        assert_eq!(r["request_id"].as_str().unwrap().len(), 8);
        assert_eq!(r["start_time"].as_i64(), Some(start.parse().unwrap()));
        assert!(r["end_time"].as_f64().unwrap() <= r["created_at"].as_f64().unwrap() + 1.0);
    }
    assert_eq!(reqs[0]["query"], r#"{app="web"} |= "SECRET""#);

    // Durable: a new process on the same storage sees the same.
    s.stop().await;
    let s = TestServer::start_on(tmp.path(), NO_WAIT).await;
    assert_eq!(lines(&s, all, t0).await, expected);
    assert_eq!(list(&s).await.len(), 2);

    // Still stored until the compactor runs.
    let before = stored_rows(&s).await;
    assert!(before.iter().any(|r| r.line.contains("SECRET123")));

    // The first pass rewrites and commits; the second deletes the replaced objects.
    s.compact().await;
    s.compact().await;
    let after = stored_rows(&s).await;
    let mut stored_lines: Vec<String> = after.iter().map(|r| r.line.clone()).collect();
    stored_lines.sort();
    assert_eq!(
        stored_lines, expected,
        "the files hold exactly what is left"
    );
    assert!(list(&s).await.iter().all(|r| r["status"] == "processed"));
    assert_eq!(lines(&s, all, t0).await, expected);
    assert_eq!(count(&s, all, t0).await, 2);
    assert_eq!(series(&s, t0).await, ["db", "web"]);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_can_be_cancelled_in_time_and_not_after() {
    // Loki's default cancel period (24h).
    let s = TestServer::start("").await;
    let t0 = now_ns() - 600_000_000_000;
    s.push(&data(t0)).await;
    let all = r#"{env="prod"}"#;
    let (code, _) = delete_request(
        &s,
        &[
            ("query", r#"{app="db"}"#.into()),
            ("start", secs(t0 - 60_000_000_000)),
        ],
    )
    .await;
    assert_eq!(code, 204);
    assert_eq!(lines(&s, all, t0).await.len(), 4);
    let id = list(&s).await[0]["request_id"]
        .as_str()
        .unwrap()
        .to_string();

    // Inside the cancel period the compactor leaves it alone.
    s.compact().await;
    assert_eq!(list(&s).await[0]["status"], "received");

    let (code, body) = call(
        &s,
        reqwest::Method::DELETE,
        "/loki/api/v1/delete",
        &[("request_id", "nope".into())],
    )
    .await;
    assert_eq!(
        (code, body.trim()),
        (404, "could not find delete request with given id")
    );
    let (code, body) = call(
        &s,
        reqwest::Method::DELETE,
        "/loki/api/v1/delete",
        &[("request_id", id.clone())],
    )
    .await;
    assert_eq!((code, body.as_str()), (204, ""));
    assert!(list(&s).await.is_empty());
    assert_eq!(
        lines(&s, all, t0).await.len(),
        5,
        "cancelled: everything is back"
    );
    s.stop().await;

    // With no cancel period, a request is too late to cancel at once, unless forced.
    let s = TestServer::start(NO_WAIT).await;
    s.push(&data(t0)).await;
    let (code, _) = call(
        &s,
        reqwest::Method::PUT,
        "/loki/api/v1/delete",
        &[
            ("query", r#"{app="db"}"#.into()),
            ("start", secs(t0 - 60_000_000_000)),
        ],
    )
    .await;
    assert_eq!(code, 204, "PUT makes a request too");
    let id = list(&s).await[0]["request_id"]
        .as_str()
        .unwrap()
        .to_string();
    let (code, body) = call(
        &s,
        reqwest::Method::DELETE,
        "/loki/api/v1/delete",
        &[("request_id", id.clone())],
    )
    .await;
    assert_eq!(
        (code, body.trim()),
        (
            400,
            "deletion of request which is in process or already processed is not allowed"
        )
    );
    let (code, _) = call(
        &s,
        reqwest::Method::DELETE,
        "/loki/api/v1/delete",
        &[("request_id", id), ("force", "true".into())],
    )
    .await;
    assert_eq!(code, 204);
    assert_eq!(lines(&s, all, t0).await.len(), 5);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_get_lokis_status_and_message() {
    let s = TestServer::start("").await;
    let now = now_ns();
    let ok_start = secs(now - 3_600_000_000_000);
    let cases: Vec<(Params, u16, &str)> = vec![
        (vec![("start", ok_start.clone())], 400, "query not set"),
        (
            vec![("query", "{app=\"a\"".into()), ("start", ok_start.clone())],
            400,
            "invalid query expression",
        ),
        (
            vec![
                ("query", "sum(rate({app=\"a\"}[1m]))".into()),
                ("start", ok_start.clone()),
            ],
            400,
            "invalid query expression",
        ),
        (
            vec![("query", "{app=\"a\"}".into())],
            400,
            "start time not set",
        ),
        (
            vec![("query", "{app=\"a\"}".into()), ("start", "10".into())],
            400,
            "invalid start time: require unix seconds or RFC3339 format",
        ),
        (
            vec![
                ("query", "{app=\"a\"}".into()),
                ("start", (now / 1_000_000).to_string()),
            ],
            400,
            "invalid start time: require unix seconds or RFC3339 format",
        ),
        (
            vec![
                ("query", "{app=\"a\"}".into()),
                ("start", ok_start.clone()),
                ("end", "abc".into()),
            ],
            400,
            "invalid end time: require unix seconds or RFC3339 format",
        ),
        (
            vec![
                ("query", "{app=\"a\"}".into()),
                ("start", ok_start.clone()),
                ("end", secs(now + 3_600_000_000_000)),
            ],
            400,
            "deletes in the future are not allowed",
        ),
        (
            vec![
                ("query", "{app=\"a\"}".into()),
                ("start", ok_start.clone()),
                ("end", ok_start.clone()),
            ],
            400,
            "start time can't be greater than or equal to end time",
        ),
        (
            vec![
                ("query", "{app=\"a\"}".into()),
                ("start", ok_start.clone()),
                ("end", secs(now - 7_200_000_000_000)),
            ],
            400,
            "start time can't be greater than or equal to end time",
        ),
    ];
    for (params, status, message) in cases {
        let (code, body) = delete_request(&s, &params).await;
        assert_eq!((code, body.trim()), (status, message), "{params:?}");
    }
    // All of history, RFC3339 times: accepted as by Loki.
    for params in [
        vec![
            ("query", "{app=\"a\"}".to_string()),
            ("start", "0000000000".into()),
        ],
        vec![
            (
                "query",
                "{app=\"a\"} |= \"x\" != \"y\" |~ \"z+\"".to_string(),
            ),
            ("start", "2024-01-01T00:00:00Z".into()),
            ("end", "2024-01-02T00:00:00Z".into()),
        ],
    ] {
        let (code, body) = delete_request(&s, &params).await;
        assert_eq!(code, 204, "{params:?}: {body}");
    }
    let reqs = list(&s).await;
    assert_eq!(reqs.len(), 2);
    assert_eq!(reqs[0]["start_time"], 0);
    assert_eq!(reqs[1]["start_time"], 1704067200);
    assert_eq!(reqs[1]["end_time"], 1704153600);
    s.stop().await;

    // deletion_mode: disabled refuses the API for that tenant only.
    let s =
        TestServer::start("auth_enabled: true\noverrides:\n  t2:\n    deletion_mode: disabled\n")
            .await;
    let r = client()
        .post(s.url("/loki/api/v1/delete"))
        .header("X-Scope-OrgID", "t2")
        .query(&[("query", "{app=\"a\"}"), ("start", ok_start.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 403);
    assert_eq!(
        r.text().await.unwrap().trim(),
        "deletion is not available for this tenant"
    );
    let r = client()
        .post(s.url("/loki/api/v1/delete"))
        .header("X-Scope-OrgID", "t1")
        .query(&[("query", "{app=\"a\"}"), ("start", ok_start.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 204);
    // Requests are per tenant.
    let r = client()
        .get(s.url("/loki/api/v1/delete"))
        .header("X-Scope-OrgID", "t3")
        .send()
        .await
        .unwrap();
    assert_eq!(r.text().await.unwrap().trim(), "[]");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_stream_removes_only_the_streams_it_names() {
    let yaml = "compactor:\n  retention_enabled: true\n  retention_delete_delay: 0s\n\
                limits_config:\n  retention_stream:\n    - selector: '{app=\"db\"}'\n      priority: 1\n      period: 1h\n";
    let s = TestServer::start(yaml).await;
    // Two hours old: past db's period, inside everyone else's (keep forever).
    let t0 = now_ns() - 2 * 3_600_000_000_000;
    s.push(&data(t0)).await;
    let mut p = vec![
        ("start", (t0 - 60_000_000_000).to_string()),
        ("end", (t0 + 60_000_000_000).to_string()),
        ("query", r#"{env="prod"}"#.to_string()),
    ];
    p.push(("limit", "100".into()));
    let before = {
        let (_, body) = call(&s, reqwest::Method::GET, "/loki/api/v1/query_range", &p).await;
        body
    };
    assert!(before.contains("SECRET789"));
    s.compact().await;
    s.compact().await;
    let (_, body) = call(&s, reqwest::Method::GET, "/loki/api/v1/query_range", &p).await;
    assert!(!body.contains("SECRET789"), "{body}");
    for line in ["SECRET123", "GET /b ok", "SECRET456", "whole stream goes"] {
        assert!(body.contains(line), "{line} must stay: {body}");
    }
    let stored: Vec<String> = stored_rows(&s).await.into_iter().map(|r| r.line).collect();
    assert_eq!(stored.len(), 4, "{stored:?}");
    assert!(!stored.iter().any(|l| l.contains("SECRET789")));
    s.stop().await;
}
