//! Query fan-out (`query_range.fanout_leaves`): a server that splits every log and metric
//! query by stream into leaves answers exactly as one that runs them whole, over the same
//! stored objects, and says how many leaves it used in `stats.parquetry.leaves`; likewise a
//! server that evaluates metric range queries in time blocks (`query_range.time_block_memory`).

use parquetry_e2e::{TestServer, now_ns};
use serde_json::{Value, json};

const NS_PER_S: i64 = 1_000_000_000;
const STREAMS: usize = 6;

/// Entries of six streams over ten minutes. Every fifth second all streams log at the same
/// nanosecond, so the order of ties across streams (and leaves) is exercised.
fn dataset(end: i64) -> Value {
    let start = end - 600 * NS_PER_S;
    let streams: Vec<Value> = (0..STREAMS)
        .map(|s| {
            let values: Vec<Value> = (0..120)
                .map(|i: i64| {
                    let ts = if i % 5 == 0 {
                        start + i * 5 * NS_PER_S
                    } else {
                        start + i * 5 * NS_PER_S + (s as i64 + 1) * 1_000
                    };
                    let level = ["info", "warn", "error"][(i as usize + s) % 3];
                    let line = format!(
                        "level={level} latency_ms={} route=/r{} msg=\"event {i}\"",
                        (i * 7 + s as i64 * 13) % 250,
                        i % 4
                    );
                    json!([ts.to_string(), line])
                })
                .collect();
            json!({
                "stream": {
                    "service_name": format!("svc{}", s % 3),
                    "pod": format!("pod-{s}"),
                    "env": "fan",
                },
                "values": values,
            })
        })
        .collect();
    json!({ "streams": streams })
}

const LOG_QUERIES: &[&str] = &[
    r#"{env="fan"}"#,
    r#"{env="fan"} |= "error""#,
    r#"{service_name=~"svc[01]"} | logfmt | latency_ms > 100"#,
    r#"{env="fan"} | logfmt | line_format "{{.route}} {{.level}}""#,
];

const METRIC_QUERIES: &[&str] = &[
    r#"sum by (service_name) (count_over_time({env="fan"}[1m]))"#,
    r#"count_over_time({env="fan"} |= "warn" [2m])"#,
    r#"avg by (route) (avg_over_time({env="fan"} | logfmt | unwrap latency_ms [5m]))"#,
    r#"quantile_over_time(0.9, {env="fan"} | logfmt | unwrap latency_ms [5m]) by (level)"#,
    r#"topk(2, sum by (pod) (rate({env="fan"}[1m])))"#,
    r#"stddev by (service_name) (sum_over_time({env="fan"} | logfmt | unwrap latency_ms [1m]))"#,
    r#"bottomk(1, min by (pod) (count_over_time({env="fan"}[1m])))"#,
    r#"sum(rate({env="fan"} | logfmt | level="error" [1m])) / sum(rate({env="fan"}[1m]))"#,
    r#"max by (level) (last_over_time({env="fan"} | logfmt | unwrap latency_ms [1m]))"#,
];

fn leaves(v: &Value) -> u64 {
    v["data"]["stats"]["parquetry"]["leaves"]
        .as_u64()
        .unwrap_or_else(|| panic!("no stats.parquetry.leaves in {v}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fanout_answers_as_a_whole_query_does() {
    let whole = TestServer::start("").await;
    let end = now_ns() / NS_PER_S * NS_PER_S - 60 * NS_PER_S;
    whole.push(&dataset(end)).await;
    let split = TestServer::start_on(
        &whole.data_dir,
        "query_range:\n  fanout_leaves: 4\n  fanout_concurrency: 2\n",
    )
    .await;
    let (start_s, end_s) = (
        (end - 700 * NS_PER_S).to_string(),
        (end + NS_PER_S).to_string(),
    );

    for q in LOG_QUERIES {
        for direction in ["backward", "forward"] {
            for limit in ["7", "1000"] {
                let params = [
                    ("query", *q),
                    ("start", &start_s),
                    ("end", &end_s),
                    ("limit", limit),
                    ("direction", direction),
                ];
                let (sa, a) = whole.get_json("/loki/api/v1/query_range", &params).await;
                let (sb, b) = split.get_json("/loki/api/v1/query_range", &params).await;
                assert_eq!((sa, sb), (200, 200), "{q}: {a} / {b}");
                let result = &a["data"]["result"];
                assert!(
                    result.as_array().is_some_and(|r| !r.is_empty()),
                    "{q}: empty answer {a}"
                );
                assert_eq!(result, &b["data"]["result"], "{q} {direction} {limit}");
                assert_eq!(leaves(&a), 0, "{q}");
                assert!(leaves(&b) >= 2, "{q}: {}", b["data"]["stats"]["parquetry"]);
            }
        }
    }

    for q in METRIC_QUERIES {
        let params = [
            ("query", *q),
            ("start", start_s.as_str()),
            ("end", end_s.as_str()),
            ("step", "30s"),
        ];
        let (sa, a) = whole.get_json("/loki/api/v1/query_range", &params).await;
        let (sb, b) = split.get_json("/loki/api/v1/query_range", &params).await;
        assert_eq!((sa, sb), (200, 200), "{q}: {a} / {b}");
        let result = &a["data"]["result"];
        assert!(
            result.as_array().is_some_and(|r| !r.is_empty()),
            "{q}: empty answer {a}"
        );
        assert_eq!(result, &b["data"]["result"], "{q}");
        assert_eq!(leaves(&a), 0, "{q}");
        assert_eq!(leaves(&b), 4, "{q}");
        // Instant queries split too.
        let params = [("query", *q), ("time", end_s.as_str())];
        let (_, a) = whole.get_json("/loki/api/v1/query", &params).await;
        let (_, b) = split.get_json("/loki/api/v1/query", &params).await;
        assert_eq!(a["data"]["result"], b["data"]["result"], "instant {q}");
    }

    // A pipeline error found in a leaf fails the whole query as it fails a whole scan.
    let params = [
        (
            "query",
            r#"sum(rate({env="fan"} | logfmt | unwrap msg [1m]))"#,
        ),
        ("start", start_s.as_str()),
        ("end", end_s.as_str()),
        ("step", "30s"),
    ];
    let (sa, a) = whole.get("/loki/api/v1/query_range", &params).await;
    let (sb, b) = split.get("/loki/api/v1/query_range", &params).await;
    assert_eq!(sa, 400, "{a}");
    assert_eq!((sb, b), (sa, a));

    split.stop().await;
    whole.stop().await;
}

/// `fanout_transport: peers`: a replica sends its leaves over HTTP to the replicas it names,
/// which answer them from the storage they share; a peer that does not answer is skipped, and
/// with none left the leaf runs in the root. The answers are the whole query's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leaves_on_peer_replicas_answer_as_a_whole_query_does() {
    let whole = TestServer::start("").await;
    let end = now_ns() / NS_PER_S * NS_PER_S - 60 * NS_PER_S;
    whole.push(&dataset(end)).await;
    let peer = whole.url("").trim_start_matches("http://").to_string();
    // A port nobody listens on: a replica that went away.
    let dead = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr").to_string()
    };
    let root_config = |peers: &str| {
        format!(
            "query_range:\n  fanout_leaves: 4\n  fanout_transport: peers\n  fanout_peers: [{peers}]\n"
        )
    };
    let root = TestServer::start_on(
        &whole.data_dir,
        &root_config(&format!("\"{dead}\", \"{peer}\"")),
    )
    .await;
    let alone = TestServer::start_on(&whole.data_dir, &root_config(&format!("\"{dead}\""))).await;
    let (start_s, end_s) = (
        (end - 700 * NS_PER_S).to_string(),
        (end + NS_PER_S).to_string(),
    );
    let leaf_requests = |metrics: &str| -> u64 {
        metrics
            .lines()
            .filter(|l| {
                l.starts_with("parquetry_request_total")
                    && l.contains("route=\"/parquetry/v1/leaf\"")
                    && l.contains("status_code=\"200\"")
            })
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum::<f64>() as u64
    };
    let (_, before) = whole.get("/metrics", &[] as &[(&str, &str)]).await;

    let mut checked = 0;
    for (path, q) in LOG_QUERIES
        .iter()
        .map(|q| ("log", *q))
        .chain(METRIC_QUERIES.iter().map(|q| ("metric", *q)))
    {
        let params: Vec<(&str, &str)> = if path == "log" {
            vec![
                ("query", q),
                ("start", &start_s),
                ("end", &end_s),
                ("limit", "50"),
            ]
        } else {
            vec![
                ("query", q),
                ("start", &start_s),
                ("end", &end_s),
                ("step", "30s"),
            ]
        };
        let (sa, a) = whole.get_json("/loki/api/v1/query_range", &params).await;
        assert_eq!(sa, 200, "{q}: {a}");
        for server in [&root, &alone] {
            let (sb, b) = server.get_json("/loki/api/v1/query_range", &params).await;
            assert_eq!(sb, 200, "{q}: {b}");
            assert_eq!(a["data"]["result"], b["data"]["result"], "{q}");
            assert!(leaves(&b) >= 2, "{q}: {}", b["data"]["stats"]["parquetry"]);
        }
        checked += 1;
    }
    assert_eq!(checked, LOG_QUERIES.len() + METRIC_QUERIES.len());
    // The peer answered the root's leaves (the dead address only cost a refused connect).
    let (_, after) = whole.get("/metrics", &[] as &[(&str, &str)]).await;
    let served = leaf_requests(&after) - leaf_requests(&before);
    assert!(
        served >= 2 * checked as u64,
        "leaves answered by the peer: {served}"
    );

    // A leaf task names its tenant; it must be the request's own.
    let task = json!({
        "tenant": "someone-else",
        "query": "{env=\"fan\"}",
        "streams": [1],
        "kind": "log",
        "start": 0,
        "end": 1,
        "limit": 1,
        "backward": true,
        "max_response_bytes": 0,
    });
    let resp = reqwest::Client::new()
        .post(whole.url("/parquetry/v1/leaf"))
        .header("content-type", "application/json")
        .body(task.to_string())
        .send()
        .await
        .expect("leaf request");
    let status = resp.status().as_u16();
    let body = resp.text().await.unwrap_or_default();
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("tenant"), "{body}");

    alone.stop().await;
    root.stop().await;
    whole.stop().await;
}

fn time_blocks(v: &Value) -> u64 {
    v["data"]["stats"]["parquetry"]["timeBlocks"]
        .as_u64()
        .unwrap_or_else(|| panic!("no stats.parquetry.timeBlocks in {v}"))
}

/// `query_range.time_block_memory`: a metric range query that holds samples or series per line
/// is evaluated block of steps by block of steps; the answer is the whole query's to the last
/// digit, errors and limits included. Ranges here are short next to the 5 s step, so the
/// smallest blocks the policy allows (four lookbacks) still cut the 12 minutes many times.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn time_blocks_answer_as_a_whole_query_does() {
    let whole = TestServer::start("query_range:\n  time_block_memory: 0\n").await;
    let end = now_ns() / NS_PER_S * NS_PER_S - 60 * NS_PER_S;
    whole.push(&dataset(end)).await;
    let blocked = TestServer::start_on(
        &whole.data_dir,
        "query_range:\n  time_block_memory: 1\n  fanout_leaves: 2\n",
    )
    .await;
    let (start_s, end_s) = (
        (end - 700 * NS_PER_S).to_string(),
        (end + NS_PER_S).to_string(),
    );
    let range = |q: &str| {
        vec![
            ("query", q.to_string()),
            ("start", start_s.clone()),
            ("end", end_s.clone()),
            ("step", "5s".to_string()),
        ]
    };

    let split_queries = [
        r#"avg by (route) (avg_over_time({env="fan"} | logfmt | unwrap latency_ms [1m]))"#,
        r#"quantile_over_time(0.9, {env="fan"} | logfmt | unwrap latency_ms [30s]) by (level)"#,
        r#"stddev by (service_name) (sum_over_time({env="fan"} | logfmt | unwrap latency_ms [20s]))"#,
        r#"max by (level) (last_over_time({env="fan"} | logfmt | unwrap latency_ms [15s] offset 10s))"#,
        r#"max by (service_name) (count_over_time({env="fan"} | logfmt [30s]))"#,
        r#"sum(rate({env="fan"} | logfmt | level="error" [20s])) / sum(avg_over_time({env="fan"} | logfmt | unwrap latency_ms [20s]))"#,
    ];
    for q in split_queries {
        let (sa, a) = whole.get_json("/loki/api/v1/query_range", &range(q)).await;
        let (sb, b) = blocked
            .get_json("/loki/api/v1/query_range", &range(q))
            .await;
        assert_eq!((sa, sb), (200, 200), "{q}: {a} / {b}");
        let result = &a["data"]["result"];
        assert!(
            result.as_array().is_some_and(|r| !r.is_empty()),
            "{q}: empty answer {a}"
        );
        // Values as text: equal text is the same float to the last bit.
        assert_eq!(result, &b["data"]["result"], "{q}");
        assert_eq!(time_blocks(&a), 0, "{q}");
        assert!(
            time_blocks(&b) >= 2,
            "{q}: {}",
            b["data"]["stats"]["parquetry"]
        );
        // Blocks fan out like whole queries.
        assert!(leaves(&b) >= 2, "{q}: {}", b["data"]["stats"]["parquetry"]);
        // What the range holds is counted once, however many blocks read it.
        for key in ["totalBytesProcessed", "totalLinesProcessed"] {
            let (x, y) = (
                &a["data"]["stats"]["summary"][key],
                &b["data"]["stats"]["summary"][key],
            );
            assert!(x.as_u64().is_some_and(|n| n > 0), "{q}: {key} {x}");
            assert_eq!(x, y, "{q}: {key}");
        }
    }

    // Count-like functions folded per group hold the answer's size already: never split.
    let q = r#"sum by (level) (count_over_time({env="fan"} | logfmt [30s]))"#;
    let (_, b) = blocked
        .get_json("/loki/api/v1/query_range", &range(q))
        .await;
    assert_eq!(time_blocks(&b), 0, "{q}");

    // A pipeline error fails a blocked query as it fails the whole one, with the same text.
    let q = r#"sum(rate({env="fan"} | logfmt | unwrap msg [20s]))"#;
    let (sa, a) = whole.get("/loki/api/v1/query_range", &range(q)).await;
    let (sb, b) = blocked.get("/loki/api/v1/query_range", &range(q)).await;
    assert_eq!(sa, 400, "{a}");
    assert_eq!((sb, b), (sa, a));

    // So does passing `max_query_series`: a series per line, more than the 500 allowed
    // (720 lines), counted over all blocks.
    let q = r#"avg_over_time({env="fan"} | logfmt | unwrap latency_ms [20s])"#;
    let (sa, a) = whole.get("/loki/api/v1/query_range", &range(q)).await;
    let (sb, b) = blocked.get("/loki/api/v1/query_range", &range(q)).await;
    assert_eq!(sa, 400, "{a}");
    assert!(a.contains("maximum number of series (500)"), "{a}");
    assert_eq!((sb, b), (sa, a));

    blocked.stop().await;
    whole.stop().await;
}
