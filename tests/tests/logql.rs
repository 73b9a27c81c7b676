//! LogQL beyond selectors over HTTP: pipelines in log queries, metric queries in range and
//! instant form, and the queries Grafana itself sends. Exact result shapes; the broad
//! semantics live in the corpus (`tests/corpus`).

use parquetry_e2e::TestServer;
use serde_json::{Value, json};

const SEC: i64 = 1_000_000_000;
/// 2024-01-01T00:00:00Z: fixed so windows and steps are easy to reason about.
const T0: i64 = 1_704_067_200 * SEC;

const CONFIG: &str =
    "limits_config:\n  reject_old_samples: false\nquery_range:\n  align_to_step_grid: false\n";

async fn get(s: &TestServer, path: &str, params: &[(&str, String)]) -> (u16, Value, String) {
    let (code, text) = s.get(path, params).await;
    let v = serde_json::from_str(&text).unwrap_or(Value::Null);
    (code, v, text)
}

fn ts(offset_s: i64) -> String {
    (T0 + offset_s * SEC).to_string()
}

fn api_lines() -> Vec<(i64, String)> {
    (0..6)
        .map(|i| {
            let level = if i % 2 == 0 { "info" } else { "error" };
            let line = format!("level={level} status={} took={}ms", 200 + i * 100, i * 5);
            (i * 10, line)
        })
        .collect()
}

fn web_lines() -> Vec<(i64, String)> {
    (0..3)
        .map(|i| {
            let line = format!(r#"{{"status":{},"path":"/p{i}"}}"#, 200 + 150 * i);
            (i * 20 + 5, line)
        })
        .collect()
}

/// api: one line every 10 s for a minute, alternating levels; web: JSON lines.
async fn dataset(s: &TestServer) {
    let values = |lines: Vec<(i64, String)>| -> Vec<Value> {
        lines.into_iter().map(|(o, l)| json!([ts(o), l])).collect()
    };
    let (api, web) = (values(api_lines()), values(web_lines()));
    s.push(&json!({"streams": [
        {"stream": {"app": "api"}, "values": api},
        {"stream": {"app": "web"}, "values": web},
    ]}))
    .await;
}

async fn range(s: &TestServer, q: &str, start: i64, end: i64, step: &str) -> Value {
    let (code, v, text) = get(
        s,
        "/loki/api/v1/query_range",
        &[
            ("query", q.to_string()),
            ("start", ts(start)),
            ("end", ts(end)),
            ("step", step.to_string()),
        ],
    )
    .await;
    assert_eq!(code, 200, "{q}: {text}");
    v["data"]["result"].clone()
}

async fn instant(s: &TestServer, q: &str, at: i64) -> Value {
    let (code, v, text) = get(
        s,
        "/loki/api/v1/query",
        &[("query", q.to_string()), ("time", ts(at))],
    )
    .await;
    assert_eq!(code, 200, "{q}: {text}");
    json!({"type": v["data"]["resultType"], "result": v["data"]["result"]})
}

#[tokio::test]
async fn metric_queries_over_http() {
    let s = TestServer::start(CONFIG).await;
    dataset(&s).await;
    let t = |o: i64| T0 / SEC + o;

    // Windows (t-30s, t]: at t=30 the api lines at 10 (error), 20 (info), 30 (error); at
    // t=60 those at 40 (info) and 50 (error). detected_level is structured metadata, so it
    // splits the series as in Loki.
    let r = range(&s, r#"count_over_time({app="api"}[30s])"#, 30, 60, "30").await;
    assert_eq!(
        r,
        json!([
            {"metric": {"app": "api", "detected_level": "error", "service_name": "api"},
             "values": [[t(30), "2"], [t(60), "1"]]},
            {"metric": {"app": "api", "detected_level": "info", "service_name": "api"},
             "values": [[t(30), "1"], [t(60), "1"]]},
        ])
    );

    let r = range(
        &s,
        r#"sum by (level) (count_over_time({app="api"} | logfmt [1m]))"#,
        59,
        59,
        "1",
    )
    .await;
    assert_eq!(
        r,
        json!([
            {"metric": {"level": "error"}, "values": [[t(59), "3"]]},
            {"metric": {"level": "info"}, "values": [[t(59), "3"]]},
        ])
    );

    // status >= 400 keeps the api lines with status 400, 500, 600, 700 -> at 10..50 except 0..20.
    let r = instant(
        &s,
        r#"sum(count_over_time({app="api"} | logfmt | status >= 400 [1m]))"#,
        59,
    )
    .await;
    assert_eq!(
        r,
        json!({"type": "vector", "result": [{"metric": {}, "value": [t(59), "4"]}]})
    );

    let r = instant(
        &s,
        r#"max_over_time({app="api"} | logfmt | unwrap duration(took) [1m]) by (app)"#,
        59,
    )
    .await;
    assert_eq!(
        r,
        json!({"type": "vector", "result": [{"metric": {"app": "api"}, "value": [t(59), "0.025"]}]})
    );

    let r = instant(
        &s,
        r#"sum by (status) (count_over_time({app="web"} | json | status > 300 [1m]))"#,
        59,
    )
    .await;
    assert_eq!(
        r,
        json!({"type": "vector", "result": [
            {"metric": {"status": "350"}, "value": [t(59), "1"]},
            {"metric": {"status": "500"}, "value": [t(59), "1"]},
        ]})
    );

    // Grafana's "Save & test".
    let r = instant(&s, "vector(1)+vector(1)", 0).await;
    assert_eq!(
        r,
        json!({"type": "vector", "result": [{"metric": {}, "value": [t(0), "2"]}]})
    );
    // A scalar's time is in milliseconds in Loki's answer (recorded from Loki 3.8).
    let r = instant(&s, "1 + 1", 0).await;
    assert_eq!(r, json!({"type": "scalar", "result": [t(0) * 1000, "2"]}));

    // A pipeline error that reaches the output series fails the query, as in Loki.
    let (code, _, text) = get(
        &s,
        "/loki/api/v1/query",
        &[
            (
                "query",
                r#"count_over_time({app="api"} | json [1m])"#.to_string(),
            ),
            ("time", ts(59)),
        ],
    )
    .await;
    assert_eq!(code, 400, "{text}");
    assert!(
        text.starts_with("pipeline error: 'JSONParserErr'"),
        "{text}"
    );

    // Dropping the error labels is Grafana's way out.
    let r = instant(
        &s,
        r#"sum by (app) (count_over_time({app=~".+"} | json | drop __error__ [1m]))"#,
        59,
    )
    .await;
    assert_eq!(
        r,
        json!({"type": "vector", "result": [
            {"metric": {"app": "api"}, "value": [t(59), "6"]},
            {"metric": {"app": "web"}, "value": [t(59), "3"]},
        ]})
    );
    s.stop().await;
}

#[tokio::test]
async fn log_queries_with_pipelines() {
    let s = TestServer::start(CONFIG).await;
    dataset(&s).await;
    let (code, v, text) = get(
        &s,
        "/loki/api/v1/query_range",
        &[
            (
                "query",
                r#"{app="api"} | logfmt | level="error" | status >= 500 | line_format "{{.status}} {{.took | ToUpper}}""#
                    .to_string(),
            ),
            ("start", ts(0)),
            ("end", ts(60)),
            ("direction", "forward".to_string()),
        ],
    )
    .await;
    assert_eq!(code, 200, "{text}");
    let result = &v["data"]["result"];
    // 2-tuple mode: parsed labels join the stream labels.
    assert_eq!(result.as_array().unwrap().len(), 2, "{result}");
    let lines: Vec<&str> = result
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|s| s["values"].as_array().unwrap().iter())
        .map(|v| v[1].as_str().unwrap())
        .collect();
    assert_eq!(lines, ["500 15MS", "700 25MS"]);
    assert_eq!(result[0]["stream"]["level"], "error");
    assert_eq!(result[0]["stream"]["app"], "api");

    // Categorized: stream labels stay the stored ones; parsed labels ride along per entry.
    let r = reqwest::Client::new()
        .get(s.url("/loki/api/v1/query_range"))
        .header("X-Loki-Response-Encoding-Flags", "categorize-labels")
        .query(&[
            ("query", r#"{app="web"} | json | status = 350"#.to_string()),
            ("start", ts(0)),
            ("end", ts(60)),
        ])
        .send()
        .await
        .unwrap();
    let v: Value = serde_json::from_str(&r.text().await.unwrap()).unwrap();
    assert_eq!(
        v["data"]["result"],
        json!([{"stream": {"app": "web", "service_name": "web"},
                "values": [[ts(25), r#"{"status":350,"path":"/p1"}"#,
                            {"structuredMetadata": {"detected_level": "unknown"},
                             "parsed": {"path": "/p1", "status": "350"}}]]}])
    );
    s.stop().await;
}

#[tokio::test]
async fn volume_from_catalogs() {
    let s = TestServer::start(CONFIG).await;
    dataset(&s).await;
    let bytes = |lines: Vec<(i64, String)>| {
        lines
            .iter()
            .map(|(_, l)| l.len())
            .sum::<usize>()
            .to_string()
    };
    let (code, v, text) = get(
        &s,
        "/loki/api/v1/index/volume",
        &[
            ("query", r#"{app=~".+"}"#.to_string()),
            ("start", ts(0)),
            ("end", ts(60)),
        ],
    )
    .await;
    assert_eq!(code, 200, "{text}");
    let end = T0 / SEC + 60;
    assert_eq!(v["data"]["resultType"], "vector");
    assert_eq!(
        v["data"]["result"],
        json!([
            {"metric": {"app": "api"}, "value": [end, bytes(api_lines())]},
            {"metric": {"app": "web"}, "value": [end, bytes(web_lines())]},
        ])
    );
    let (code, v, _) = get(
        &s,
        "/loki/api/v1/index/volume",
        &[
            ("query", r#"{app="web"}"#.to_string()),
            ("aggregateBy", "labels".to_string()),
            ("targetLabels", "app,service_name".to_string()),
            ("start", ts(0)),
            ("end", ts(60)),
        ],
    )
    .await;
    assert_eq!(code, 200);
    assert_eq!(
        v["data"]["result"],
        json!([
            {"metric": {"app": ""}, "value": [end, bytes(web_lines())]},
            {"metric": {"service_name": ""}, "value": [end, bytes(web_lines())]},
        ])
    );
    let (code, _, text) = get(
        &s,
        "/loki/api/v1/index/volume",
        &[
            ("query", r#"{app="web"}"#.to_string()),
            ("aggregateBy", "x".to_string()),
        ],
    )
    .await;
    assert_eq!((code, text.trim()), (400, "invalid aggregation option"));
    s.stop().await;
}

#[tokio::test]
async fn format_query_endpoint() {
    let s = TestServer::start(CONFIG).await;
    let (code, v, _) = get(
        &s,
        "/loki/api/v1/format_query",
        &[("query", r#"sum by(a)(rate({x="y"}|="z"[5m]))"#.to_string())],
    )
    .await;
    assert_eq!(code, 200);
    assert_eq!(v["status"], "success");
    let pretty = v["data"].as_str().unwrap();
    assert!(pretty.contains("rate("), "{pretty}");
    let (code, v, _) = get(
        &s,
        "/loki/api/v1/format_query",
        &[("query", "{x=".to_string())],
    )
    .await;
    assert_eq!(code, 400);
    assert_eq!(v["status"], "invalid-query");
    assert!(v["error"].as_str().unwrap().starts_with("parse error"));
    s.stop().await;
}
