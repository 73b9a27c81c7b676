//! Every label value and tenant id that a push accepts stays readable: partition values and
//! tenants that need escaping, values too long for a file name, and one push with thousands of
//! partition values. Once, one such push made every query of its tenant answer 500.

use parquetry_e2e::{TestServer, now_ns};
use serde_json::{Value, json};

use crate::around;

/// Values of `service_name` (a partition label) that need escaping or are too long for a key
/// component as is.
fn awkward_values() -> Vec<String> {
    let mut v: Vec<String> = [
        "My App",
        "a:b",
        "a/b",
        "a.b",
        "..",
        "100%",
        "%2520",
        "héllo wörld",
        "日本語のサービス",
        "__HIVE_DEFAULT_PARTITION__",
        "__MIXED__",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    v.push("x".repeat(243));
    v.push("é".repeat(1000)); // 2,000 bytes, under Loki's 2,048 limit
    v.push(format!("{}-a", "y".repeat(300)));
    v.push(format!("{}-b", "y".repeat(300)));
    v
}

fn count(v: &Value) -> usize {
    v["data"]["result"]
        .as_array()
        .expect("result")
        .iter()
        .map(|s| s["values"].as_array().expect("values").len())
        .sum()
}

#[tokio::test]
async fn awkward_partition_values_are_readable_and_do_not_break_the_tenant() {
    let s = TestServer::start("").await;
    let t0 = now_ns() - 5_000_000_000;
    let values = awkward_values();
    // Two pushes, so compaction has two objects per partition to merge.
    for (offset, suffix) in [(0, ""), (1_000, " b")] {
        let streams: Vec<Value> = values
            .iter()
            .enumerate()
            .map(|(i, v)| {
                json!({"stream": {"service_name": v, "job": "web", "env": "prod"},
                       "values": [[(t0 + offset + i as i64).to_string(), format!("line {i}{suffix}")]]})
            })
            .collect();
        let (code, body) = s.push_json(None, &json!({ "streams": streams })).await;
        assert_eq!(code, 204, "{body}");
    }

    // Before and after compaction, which rewrites every key.
    for pass in ["hot", "compacted"] {
        if pass == "compacted" {
            let summary = s.compact().await;
            assert!(summary.cold_written > 0, "{summary:?}");
        }
        check_awkward(&s, t0, &values).await;
    }
    // Every key component fits a file name (the local backend would have failed the push).
    for f in s.parquet_files() {
        let rel = f.strip_prefix(&s.data_dir).expect("under data dir");
        for c in rel.components() {
            assert!(c.as_os_str().len() <= 255, "{}", rel.display());
        }
    }
}

async fn check_awkward(s: &TestServer, t0: i64, values: &[String]) {
    // Tenant-wide queries see every entry.
    let all = s
        .get_ok(
            None,
            "/loki/api/v1/query_range",
            &around(t0, r#"{job="web"}"#),
        )
        .await;
    assert_eq!(count(&all), 2 * values.len(), "{all}");
    let metric = s
        .get_ok(
            None,
            "/loki/api/v1/query",
            &[
                (
                    "query",
                    r#"sum(count_over_time({env="prod"}[1h]))"#.to_string(),
                ),
                ("time", (t0 + 1_000_000_000).to_string()),
            ],
        )
        .await;
    assert_eq!(
        metric["data"]["result"][0]["value"][1],
        json!((2 * values.len()).to_string()),
        "{metric}"
    );

    // Each value by equality (the partition is pruned from the key) and by regex (it is not).
    for (i, v) in values.iter().enumerate() {
        let sel = format!("{{service_name={}}}", json!(v));
        let got = s
            .get_ok(None, "/loki/api/v1/query_range", &around(t0, &sel))
            .await;
        assert_eq!(count(&got), 2, "{sel}: {got}");
        assert_eq!(
            got["data"]["result"][0]["values"][0][1],
            json!(format!("line {i} b"))
        );
        assert_eq!(got["data"]["result"][0]["stream"]["service_name"], json!(v));
    }
    let re = s
        .get_ok(
            None,
            "/loki/api/v1/query_range",
            &around(t0, r#"{service_name=~"y+-(a|b)"}"#),
        )
        .await;
    assert_eq!(count(&re), 4, "{re}");
    let values_api = s
        .get_ok(
            None,
            "/loki/api/v1/label/service_name/values",
            &around(t0, "")[..2],
        )
        .await;
    let mut listed: Vec<String> = values_api["data"]
        .as_array()
        .expect("data")
        .iter()
        .map(|v| v.as_str().expect("str").to_string())
        .collect();
    let mut want = values.to_vec();
    listed.sort();
    want.sort();
    assert_eq!(listed, want);
    let stats = s
        .get_ok(
            None,
            "/loki/api/v1/index/stats",
            &around(t0, r#"{job="web"}"#),
        )
        .await;
    assert_eq!(stats["entries"], json!(2 * values.len()), "{stats}");
}

#[tokio::test]
async fn tenant_ids_that_need_escaping_are_readable() {
    let s = TestServer::start("auth_enabled: true\n").await;
    let t0 = now_ns() - 5_000_000_000;
    let long = "*".repeat(150);
    let tenants = ["a*b", "a'b", "(a)", "x!y.z_w-v", long.as_str()];
    for tenant in tenants {
        for (offset, word) in [(0, "hello"), (1, "hi")] {
            let body = json!({"streams": [{"stream": {"service_name": "My App", "job": "web"},
                              "values": [[(t0 + offset).to_string(), format!("{word} {tenant}")]]}]});
            let (code, msg) = s.push_json(Some(tenant), &body).await;
            assert_eq!(code, 204, "{tenant}: {msg}");
        }
    }
    for pass in ["hot", "compacted"] {
        if pass == "compacted" {
            let summary = s.compact().await;
            assert_eq!(summary.cold_written, tenants.len() as u64, "{summary:?}");
        }
        for tenant in tenants {
            let got = s
                .get_ok(
                    Some(tenant),
                    "/loki/api/v1/query_range",
                    &around(t0, r#"{job="web"}"#),
                )
                .await;
            assert_eq!(count(&got), 2, "{pass} {tenant}: {got}");
            assert_eq!(
                got["data"]["result"][0]["values"][0][1],
                json!(format!("hi {tenant}"))
            );
        }
    }
}

#[tokio::test]
async fn thousands_of_partitions_in_one_push_stay_few_objects_and_queryable() {
    let s = TestServer::start("").await;
    let t0 = now_ns() - 5_000_000_000;
    let n = 3_000;
    let streams: Vec<Value> = (0..n)
        .map(|i| {
            json!({"stream": {"service_name": format!("svc-{i}"), "job": "many"},
                   "values": [[(t0 + i as i64).to_string(), format!("entry {i}")]]})
        })
        .collect();
    let (code, body) = s.push_json(None, &json!({ "streams": streams })).await;
    assert_eq!(code, 204, "{body}");
    let objects = s.parquet_files().len();
    assert!(objects <= 100, "{objects} objects for one push");

    let metric = s
        .get_ok(
            None,
            "/loki/api/v1/query",
            &[
                (
                    "query",
                    r#"sum(count_over_time({job="many"}[1h]))"#.to_string(),
                ),
                ("time", (t0 + 1_000_000_000).to_string()),
            ],
        )
        .await;
    assert_eq!(
        metric["data"]["result"][0]["value"][1],
        json!(n.to_string()),
        "{metric}"
    );
    let one = s
        .get_ok(
            None,
            "/loki/api/v1/query_range",
            &around(t0, r#"{service_name="svc-2999"}"#),
        )
        .await;
    assert_eq!(count(&one), 1, "{one}");
}
