//! One object that cannot be decoded (a torn copy, a file that is not Parquet) must not make
//! the acknowledged entries around it unreadable: queries leave it out and say so in Loki's
//! `warnings`, compaction merges the rest of its partition and keeps it where it is.

use object_store::{ObjectStoreExt, PutPayload};
use parquetry_e2e::{NO_PARAMS, TestServer, now_ns};
use parquetry_store::{ObjectKey, Store};
use serde_json::{Value, json};

use crate::around;

fn push_body(t0: i64, from: i64, n: i64) -> Value {
    push_body_over(t0, from, n, &["prod"])
}

/// Entries `from..from + n`, dealt in turn to one stream per `env` value.
fn push_body_over(t0: i64, from: i64, n: i64, envs: &[&str]) -> Value {
    let streams: Vec<Value> = envs
        .iter()
        .enumerate()
        .map(|(k, env)| {
            let values: Vec<Value> = (from..from + n)
                .filter(|i| *i as usize % envs.len() == k)
                .map(|i| json!([(t0 + i * 1_000).to_string(), format!("entry {i}")]))
                .collect();
            json!({"stream": {"service_name": "torn", "env": env}, "values": values})
        })
        .collect();
    json!({ "streams": streams })
}

/// Puts two undecodable objects next to the pushed ones: the first half of a real object
/// (what a copy cut short leaves) and bytes that are not Parquet at all. Returns their keys.
async fn plant(s: &TestServer, t0: i64) -> Vec<String> {
    let store = Store::open_with_env(&s.storage_url, &s.config().storage, []).expect("store");
    let objects = store
        .list("fake", t0 - 60_000_000_000, t0 + 60_000_000_000, |_| true)
        .await
        .expect("list");
    let real = objects.first().expect("a pushed object");
    let bytes = store
        .read_key(real.path.as_ref())
        .await
        .expect("read pushed object");
    let mut planted = Vec::new();
    for (id, body) in [
        ("torncopy", bytes.slice(..bytes.len() / 2).to_vec()),
        (
            "notparquet",
            b"PAR1 this was never a Parquet file PAR1".to_vec(),
        ),
    ] {
        let key = ObjectKey {
            id: id.into(),
            ..real.key.clone()
        };
        let path = key.to_path();
        store
            .object_store()
            .put(&path, PutPayload::from(body))
            .await
            .expect("plant object");
        planted.push(path.to_string());
    }
    planted
}

fn warned_about(v: &Value, planted: &[String]) {
    let warnings: Vec<&str> = v["warnings"]
        .as_array()
        .unwrap_or_else(|| panic!("no warnings in {v}"))
        .iter()
        .filter_map(Value::as_str)
        .collect();
    for key in planted {
        assert!(
            warnings
                .iter()
                .any(|w| w.contains(key.as_str()) && w.contains("left out")),
            "no warning names {key}: {warnings:?}"
        );
    }
}

/// A log query and a count over the pushed entries answer `n` entries, warning about each
/// planted object.
async fn queries_answer(s: &TestServer, t0: i64, planted: &[String], n: usize) {
    let logs = s
        .get_ok(
            None,
            "/loki/api/v1/query_range",
            &[
                around(t0, r#"{service_name="torn"}"#),
                vec![("limit", "1000".into())],
            ]
            .concat(),
        )
        .await;
    let entries: usize = logs["data"]["result"]
        .as_array()
        .unwrap_or_else(|| panic!("streams: {logs}"))
        .iter()
        .map(|s| s["values"].as_array().map_or(0, Vec::len))
        .sum();
    assert_eq!(entries, n, "{logs}");
    warned_about(&logs, planted);

    let count = s
        .get_ok(
            None,
            "/loki/api/v1/query",
            &[
                (
                    "query",
                    r#"sum(count_over_time({service_name="torn"}[5m]))"#.to_string(),
                ),
                ("time", (t0 + 60_000_000_000).to_string()),
            ],
        )
        .await;
    assert_eq!(
        count["data"]["result"][0]["value"][1],
        n.to_string().as_str(),
        "{count}"
    );
    warned_about(&count, planted);
}

async fn all_entries_readable(s: &TestServer, t0: i64, planted: &[String]) {
    queries_answer(s, t0, planted, 60).await;
    let labels = s
        .get_ok(None, "/loki/api/v1/label/env/values", NO_PARAMS)
        .await;
    assert_eq!(labels["data"], json!(["prod"]), "{labels}");
}

#[tokio::test]
async fn undecodable_objects_are_left_out_with_a_warning_and_compaction_goes_on() {
    let s = TestServer::start("").await;
    let t0 = now_ns() - 30_000_000_000;
    for half in 0..2 {
        let (code, msg) = s.push_json(None, &push_body(t0, half * 30, 30)).await;
        assert_eq!(code, 204, "{msg}");
    }
    let planted = plant(&s, t0).await;

    all_entries_readable(&s, t0, &planted).await;

    // The two pushed objects merge; the planted ones are left where they are.
    let summary = s.compact().await;
    assert_eq!(summary.hot_absorbed, 2, "{summary:?}");
    assert_eq!(summary.unreadable_left_out, 2, "{summary:?}");
    all_entries_readable(&s, t0, &planted).await;

    let (code, metrics) = s.get("/metrics", NO_PARAMS).await;
    assert_eq!(code, 200);
    let seen: f64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("parquetry_store_unreadable_objects_total "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no unreadable-object counter in {metrics}"));
    assert!(seen >= 2.0, "{seen}");
}

/// Objects whose footer reads but whose pages are damaged (zeroed in place, as a bad disk or
/// a broken copy leaves them) fail the first scan without naming themselves; the query then
/// checks the range's objects page by page, leaves the damaged ones out with a warning and
/// answers with every other entry, and later queries skip them from the start. One object
/// loses everything between its magic and its footer (data pages and page index), one only
/// the first half of its data pages.
#[tokio::test]
async fn objects_with_damaged_pages_are_found_and_left_out() {
    let s = TestServer::start("").await;
    let t0 = now_ns() - 30_000_000_000;
    for third in 0..3 {
        // Two streams, so a query can be split into leaves.
        let body = push_body_over(t0, third * 20, 20, &["prod", "staging"]);
        let (code, msg) = s.push_json(None, &body).await;
        assert_eq!(code, 204, "{msg}");
    }
    let store = Store::open_with_env(&s.storage_url, &s.config().storage, []).expect("store");
    let objects = store
        .list("fake", t0 - 60_000_000_000, t0 + 60_000_000_000, |_| true)
        .await
        .expect("list");
    assert_eq!(objects.len(), 3, "{objects:?}");
    let mut planted = Vec::new();
    for (victim, whole) in [(&objects[0], true), (&objects[1], false)] {
        let bytes = store
            .read_key(victim.path.as_ref())
            .await
            .expect("read pushed object");
        // The footer (its length and the magic are the last 8 bytes) stays, so the object's
        // stream catalog still reads.
        let n = bytes.len();
        let footer = u32::from_le_bytes(bytes[n - 8..n - 4].try_into().expect("4 bytes")) as usize;
        let end = if whole {
            n - 8 - footer
        } else {
            (n - 8 - footer) / 2
        };
        let mut damaged = bytes.to_vec();
        damaged[4..end].fill(0);
        store
            .object_store()
            .put(&victim.path, PutPayload::from(damaged))
            .await
            .expect("damage object");
        planted.push(victim.path.to_string());
    }

    for _ in 0..2 {
        queries_answer(&s, t0, &planted, 20).await;
    }

    // Compaction's merge names the input whose pages fail, and leaves it out as well.
    let summary = s.compact().await;
    assert_eq!(summary.unreadable_left_out, 2, "{summary:?}");

    // A fresh process knows nothing of them yet: a metric query finds them itself.
    let fresh = TestServer::start_on(&s.data_dir, "").await;
    let count = fresh
        .get_ok(
            None,
            "/loki/api/v1/query_range",
            &[
                around(t0, r#"sum(count_over_time({service_name="torn"}[5m]))"#),
                vec![("step", "60".into())],
            ]
            .concat(),
        )
        .await;
    let points = count["data"]["result"][0]["values"]
        .as_array()
        .unwrap_or_else(|| panic!("a matrix: {count}"));
    assert!(points.iter().any(|p| p[1] == "20"), "{count}");
    assert!(
        points.iter().all(|p| p[1] != "60" && p[1] != "40"),
        "{count}"
    );
    warned_about(&count, &planted);
    // Split into leaves on a peer replica that has not met the damage yet: each leaf finds
    // it in its own scan and leaves it out (a leaf that failed instead would answer 500).
    let peer = TestServer::start_on(&s.data_dir, "").await;
    let split = TestServer::start_on(
        &s.data_dir,
        &format!(
            "query_range:\n  fanout_leaves: 2\n  fanout_transport: peers\n  fanout_peers: [\"{}\"]\n",
            peer.url("").trim_start_matches("http://")
        ),
    )
    .await;
    queries_answer(&split, t0, &planted, 20).await;
    let (_, v) = split
        .get_json(
            "/loki/api/v1/query_range",
            &[
                around(t0, r#"{service_name="torn"}"#),
                vec![("limit", "1000".into())],
            ]
            .concat(),
        )
        .await;
    assert_eq!(v["data"]["stats"]["parquetry"]["leaves"], 2, "{v}");
    let (_, metrics) = peer.get("/metrics", NO_PARAMS).await;
    let leaf_answers: Vec<&str> = metrics
        .lines()
        .filter(|l| {
            l.starts_with("parquetry_request_total") && l.contains("route=\"/parquetry/v1/leaf\"")
        })
        .collect();
    assert!(
        !leaf_answers.is_empty()
            && leaf_answers
                .iter()
                .all(|l| l.contains("status_code=\"200\"")),
        "{leaf_answers:?}"
    );
    split.stop().await;
    peer.stop().await;

    // The Drilldown endpoints read lines too; a fresh process each, so each finds them itself.
    for path in ["/loki/api/v1/detected_fields", "/loki/api/v1/patterns"] {
        let drill = TestServer::start_on(&s.data_dir, "").await;
        let (code, body) = drill
            .get(path, &around(t0, r#"{service_name="torn"}"#))
            .await;
        assert_eq!(code, 200, "{path}: {body}");
        drill.stop().await;
    }
    fresh.stop().await;
    s.stop().await;
}
