//! A metric query's samples are held in the process's memory pool (`query_range.max_memory`):
//! under a pool too small for them the query is a clear 400 naming the key, never a process
//! that grows, and under a pool large enough the same query answers exactly. Counts fold
//! lines into step cells, so they fit a pool far smaller than their lines.

use parquetry_e2e::{TestServer, now_ns};
use serde_json::{Value, json};

const ENTRIES: i64 = 30_000;
const PODS: [&str; 3] = ["a", "b", "c"];
const NS_PER_S: i64 = 1_000_000_000;

/// Pushes `ENTRIES` lines over three streams, spread over the ten minutes before now; returns
/// the newest timestamp.
async fn pushed(s: &TestServer) -> i64 {
    let t0 = now_ns() - 10 * 60 * NS_PER_S;
    let gap = 10 * 60 * NS_PER_S / ENTRIES;
    let streams: Vec<Value> = PODS
        .iter()
        .enumerate()
        .map(|(p, pod)| {
            let values: Vec<Value> = (0..ENTRIES)
                .filter(|i| i % PODS.len() as i64 == p as i64)
                .map(|i| json!([(t0 + i * gap).to_string(), format!("level=info n={i}")]))
                .collect();
            json!({"stream": {"service_name": "mem", "pod": pod}, "values": values})
        })
        .collect();
    let (code, msg) = s.push_json(None, &json!({ "streams": streams })).await;
    assert_eq!(code, 204, "{msg}");
    t0 + (ENTRIES - 1) * gap
}

fn range_params(end: i64, query: &str) -> Vec<(&'static str, String)> {
    vec![
        ("query", query.to_string()),
        ("start", (end - 11 * 60 * NS_PER_S).to_string()),
        ("end", (end + NS_PER_S).to_string()),
        ("step", "15".to_string()),
    ]
}

#[tokio::test]
async fn metric_samples_past_the_pool_are_a_clear_400_and_fit_a_larger_one() {
    // 30,000 unwrapped samples are ~470 KiB: well past a 64 KiB pool, far below 64 MiB.
    let small = TestServer::start("query_range:\n  max_memory: 64KiB\n").await;
    let end = pushed(&small).await;
    for q in [
        r#"max_over_time({service_name="mem"} | logfmt | unwrap n [1m])"#,
        // Pre-grouped in the scan: three series, still one sample per line.
        r#"sum by (pod) (sum_over_time({service_name="mem"} |= "level" | logfmt | unwrap n [1m]))"#,
    ] {
        let (code, body) = small
            .get_as(None, "/loki/api/v1/query_range", &range_params(end, q))
            .await;
        assert_eq!(code, 400, "{q}: {}", &body[..body.len().min(300)]);
        assert!(body.contains("query_range.max_memory"), "{q}: {body}");
        // Refused for its samples, not for some other buffer of the plan.
        assert!(body.contains("metric samples"), "{q}: {body}");
    }

    // Counts fold lines into step cells in the scan, so their memory follows the answer
    // (series x steps), not the lines: the same pool holds them.
    let counts = |v: &Value| -> f64 {
        v["data"]["result"]
            .as_array()
            .expect("a vector")
            .iter()
            .map(|s| {
                s["value"][1]
                    .as_str()
                    .and_then(|x| x.parse::<f64>().ok())
                    .expect("a value")
            })
            .sum()
    };
    let total = [(
        "query",
        r#"sum by (pod) (count_over_time({service_name="mem"}[1h]))"#.to_string(),
    )];
    let at = ("time", (end + NS_PER_S).to_string());
    let v = small
        .get_ok(None, "/loki/api/v1/query", &[total[0].clone(), at.clone()])
        .await;
    assert_eq!(counts(&v), ENTRIES as f64, "{v}");
    for q in [
        r#"count_over_time({service_name="mem"}[1m])"#,
        r#"sum by (pod) (rate({service_name="mem"} |= "level" [1m]))"#,
    ] {
        let (code, body) = small
            .get_as(None, "/loki/api/v1/query_range", &range_params(end, q))
            .await;
        assert_eq!(code, 200, "{q}: {}", &body[..body.len().min(300)]);
    }

    // The same storage under a pool that holds the samples: exact answers.
    let large = TestServer::start_on(&small.data_dir, "query_range:\n  max_memory: 64MiB\n").await;
    let v = large
        .get_ok(
            None,
            "/loki/api/v1/query",
            &[
                (
                    "query",
                    r#"sum by (pod) (count_over_time({service_name="mem"} | logfmt | n != "" [1h]))"#
                        .to_string(),
                ),
                at.clone(),
            ],
        )
        .await;
    assert_eq!(counts(&v), ENTRIES as f64, "{v}");
    let (code, body) = large
        .get_as(
            None,
            "/loki/api/v1/query_range",
            &range_params(
                end,
                r#"max_over_time({service_name="mem"} | logfmt | unwrap n [1m])"#,
            ),
        )
        .await;
    assert_eq!(code, 200, "{}", &body[..body.len().min(300)]);
    let v: Value = serde_json::from_str(&body).expect("json");
    assert_eq!(
        v["data"]["result"].as_array().map(Vec::len),
        Some(PODS.len()),
        "{v}"
    );
    large.stop().await;
    small.stop().await;
}
