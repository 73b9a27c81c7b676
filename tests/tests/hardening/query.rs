//! Queries count a retried push once, stay within their output budget and their deadline.

use std::time::{Duration, Instant};

use parquetry_e2e::{TestServer, now_ns};
use serde_json::{Value, json};

use crate::around;

fn hundred(t0: i64) -> Value {
    let values: Vec<Value> = (0..100)
        .map(|i| {
            json!([
                (t0 + i * 1_000).to_string(),
                format!("entry {i} level=info")
            ])
        })
        .collect();
    json!({"streams": [{"stream": {"service_name": "retry", "env": "prod"}, "values": values}]})
}

fn instant(t0: i64, q: &str) -> Vec<(&'static str, String)> {
    vec![
        ("query", q.to_string()),
        ("time", (t0 + 30_000_000_000).to_string()),
    ]
}

fn scalar_of(v: &Value) -> String {
    v["data"]["result"][0]["value"][1]
        .as_str()
        .unwrap_or_else(|| panic!("no sample: {v}"))
        .to_string()
}

#[tokio::test]
async fn a_push_retried_three_times_counts_once_everywhere() {
    let s = TestServer::start("").await;
    let t0 = now_ns() - 10_000_000_000;
    let body = hundred(t0);
    for _ in 0..3 {
        let (code, msg) = s.push_json(None, &body).await;
        assert_eq!(code, 204, "{msg}");
    }
    // And one batch that repeats its own entries.
    let mut twice = hundred(t0);
    let again = twice["streams"][0]["values"].clone();
    if let (Some(v), Some(a)) = (
        twice["streams"][0]["values"].as_array_mut(),
        again.as_array(),
    ) {
        v.extend(a.iter().cloned());
    }
    let (code, msg) = s.push_json(None, &twice).await;
    assert_eq!(code, 204, "{msg}");

    counted_once(&s, t0).await;
    // Compaction keeps one of each and its catalog says so.
    let summary = s.compact().await;
    assert_eq!(summary.entries, 100, "{summary:?}");
    counted_once(&s, t0).await;
}

async fn counted_once(s: &TestServer, t0: i64) {
    let logs = s
        .get_ok(
            None,
            "/loki/api/v1/query_range",
            &[
                around(t0, r#"{service_name="retry"}"#),
                vec![("limit", "1000".into())],
            ]
            .concat(),
        )
        .await;
    assert_eq!(
        logs["data"]["result"][0]["values"].as_array().map(Vec::len),
        Some(100),
        "{logs}"
    );
    for q in [
        r#"sum(count_over_time({service_name="retry"}[1m]))"#,
        r#"sum(count_over_time({service_name="retry"} |= "entry" [1m]))"#,
        r#"sum(count_over_time({service_name="retry"} | logfmt [1m]))"#,
        r#"sum by (level) (count_over_time({service_name="retry"} | logfmt [1m]))"#,
    ] {
        let v = s.get_ok(None, "/loki/api/v1/query", &instant(t0, q)).await;
        assert_eq!(scalar_of(&v), "100", "{q}: {v}");
    }
    let bytes = s
        .get_ok(
            None,
            "/loki/api/v1/query",
            &instant(t0, r#"sum(bytes_over_time({service_name="retry"}[1m]))"#),
        )
        .await;
    let line_bytes: usize = (0..100)
        .map(|i| format!("entry {i} level=info").len())
        .sum();
    assert_eq!(scalar_of(&bytes), line_bytes.to_string(), "{bytes}");

    let stats = s
        .get_ok(
            None,
            "/loki/api/v1/index/stats",
            &around(t0, r#"{service_name="retry"}"#),
        )
        .await;
    assert_eq!(stats["entries"], json!(100), "{stats}");
    assert_eq!(stats["bytes"], json!(line_bytes), "{stats}");
    assert_eq!(stats["streams"], json!(1), "{stats}");

    let volume = s
        .get_ok(
            None,
            "/loki/api/v1/index/volume",
            &around(t0, r#"{service_name="retry"}"#),
        )
        .await;
    assert_eq!(
        volume["data"]["result"][0]["value"][1],
        json!(line_bytes.to_string()),
        "{volume}"
    );
}

/// `n` short entries of `{service_name="big"}`; at 200, a 1 MiB label_format output each is
/// 200 MiB of labels.
async fn pushed_for_big_output(s: &TestServer, n: i64) -> i64 {
    let t0 = now_ns() - 10_000_000_000;
    let values: Vec<Value> = (0..n)
        .map(|i| json!([(t0 + i).to_string(), format!("line {i}")]))
        .collect();
    let body = json!({"streams": [{"stream": {"service_name": "big"}, "values": values}]});
    let (code, msg) = s.push_json(None, &body).await;
    assert_eq!(code, 204, "{msg}");
    t0
}

#[tokio::test]
async fn output_past_the_response_limit_is_a_clear_400_with_default_settings() {
    let s = TestServer::start("").await;
    let t0 = pushed_for_big_output(&s, 200).await;
    for q in [
        r#"{service_name="big"} | label_format x=`{{ repeat 1048576 "y" }}`"#,
        r#"{service_name="big"} | line_format `{{ repeat 1048576 "y" }}`"#,
        r#"count_over_time({service_name="big"} | label_format x=`{{ repeat 100000 __line__ }}` [1m])"#,
    ] {
        let params = if q.starts_with("count") {
            instant(t0, q)
        } else {
            [around(t0, q), vec![("limit", "1000".into())]].concat()
        };
        let path = if q.starts_with("count") {
            "/loki/api/v1/query"
        } else {
            "/loki/api/v1/query_range"
        };
        let (code, body) = s.get_as(None, path, &params).await;
        assert_eq!(code, 400, "{q}: {}", &body[..body.len().min(300)]);
        assert!(body.contains("max_query_response_size"), "{q}: {body}");
    }
    // Under the limit the same query answers.
    let ok = s
        .get_ok(
            None,
            "/loki/api/v1/query_range",
            &[
                around(
                    t0,
                    r#"{service_name="big"} | label_format x=`{{ repeat 1048576 "y" }}`"#,
                ),
                vec![("limit", "10".into())],
            ]
            .concat(),
        )
        .await;
    assert_eq!(
        ok["data"]["result"][0]["values"].as_array().map(Vec::len),
        Some(10)
    );
}

#[tokio::test]
async fn a_query_past_its_timeout_answers_504_promptly() {
    let s =
        TestServer::start("limits_config:\n  query_timeout: 1s\n  max_query_response_size: 0\n")
            .await;
    let t0 = pushed_for_big_output(&s, 20_000).await;
    let started = Instant::now();
    // Seconds of CPU and little memory: every line becomes 1 MiB, then is dropped.
    let (code, body) = s
        .get_as(
            None,
            "/loki/api/v1/query_range",
            &[
                around(
                    t0,
                    r#"{service_name="big"} | line_format `{{ repeat 1048576 "y" }}` |= "z""#,
                ),
                vec![("limit", "1000".into())],
            ]
            .concat(),
        )
        .await;
    let took = started.elapsed();
    assert_eq!(code, 504, "{}", &body[..body.len().min(300)]);
    assert!(took < Duration::from_secs(5), "answered after {took:?}");
    // The cancelled work does not hold the server: a cheap query answers at once.
    let quick = Instant::now();
    let v = s
        .get_ok(
            None,
            "/loki/api/v1/query_range",
            &around(t0, r#"{service_name="big"}"#),
        )
        .await;
    assert!(
        v["data"]["result"]
            .as_array()
            .is_some_and(|r| !r.is_empty())
    );
    assert!(
        quick.elapsed() < Duration::from_secs(3),
        "{:?}",
        quick.elapsed()
    );
}

#[tokio::test]
async fn a_query_over_the_memory_pool_is_a_clear_400() {
    let s = TestServer::start("query_range:\n  max_memory: 4KB\n").await;
    let t0 = pushed_for_big_output(&s, 2_000).await;
    let (code, body) = s
        .get_as(
            None,
            "/loki/api/v1/query_range",
            &[
                around(t0, r#"{service_name="big"}"#),
                vec![("limit", "1000".into())],
            ]
            .concat(),
        )
        .await;
    assert_eq!(code, 400, "{}", &body[..body.len().min(300)]);
    assert!(body.contains("query_range.max_memory"), "{body}");
}
