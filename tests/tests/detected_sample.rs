//! Which lines `detected_fields` samples: the newest `line_limit` entries of the query, over
//! HTTP, whatever objects and days they are spread over and whatever the stream catalogs
//! suggest about where they are (duplicates from retried pushes, filters that drop lines).

use std::collections::BTreeMap;

use parquetry_e2e::{TestEntry, TestServer, now_ns};
use serde_json::Value;

const CONFIG: &str = "limits_config:\n  reject_old_samples: false\n";
const SEC: i64 = 1_000_000_000;
const DAY: i64 = 86_400 * SEC;

/// `detected_fields` as `label -> field`.
async fn fields(s: &TestServer, params: &[(&str, String)]) -> BTreeMap<String, Value> {
    let resp = reqwest::Client::new()
        .get(s.url("/loki/api/v1/detected_fields"))
        .query(params)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    let v: Value = serde_json::from_str(&resp.text().await.unwrap()).unwrap();
    v["fields"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|f| (f["label"].as_str().unwrap().to_string(), f.clone()))
                .collect()
        })
        .unwrap_or_default()
}

fn params(query: &str, start: i64, end: i64, line_limit: usize) -> Vec<(&'static str, String)> {
    vec![
        ("query", query.to_string()),
        ("start", start.to_string()),
        ("end", end.to_string()),
        ("line_limit", line_limit.to_string()),
    ]
}

/// A stream stored in one object per day: the sample is the newest day's lines, not the
/// newest lines of whichever object lists first.
#[tokio::test]
async fn newest_lines_across_days() {
    let s = TestServer::start(CONFIG).await;
    let today = now_ns().div_euclid(DAY) * DAY;
    let (old_day, new_day) = (today - 2 * DAY, today - DAY);
    let old: Vec<String> = (0..5).map(|i| format!("old_key={i} msg=before")).collect();
    let new: Vec<String> = (0..5).map(|i| format!("{{\"new_key\":{i}}}")).collect();
    let labels = r#"{service_name="days"}"#;
    s.push_protobuf(&[(
        labels,
        old.iter()
            .enumerate()
            .map(|(i, l)| (old_day + 3600 * SEC + i as i64 * SEC, l.as_str(), vec![]))
            .collect(),
    )])
    .await;
    s.push_protobuf(&[(
        labels,
        new.iter()
            .enumerate()
            .map(|(i, l)| (new_day + 3600 * SEC + i as i64 * SEC, l.as_str(), vec![]))
            .collect(),
    )])
    .await;
    let f = fields(&s, &params(labels, old_day, today, 5)).await;
    assert!(
        f.contains_key("new_key") && !f.contains_key("old_key"),
        "{f:?}"
    );
    assert_eq!(f["new_key"]["cardinality"], 5);
    // Ten lines reach back into the older day.
    let f = fields(&s, &params(labels, old_day, today, 10)).await;
    assert_eq!(f["old_key"]["cardinality"], 5, "{f:?}");
    s.stop().await;
}

/// Every entry pushed twice (a retried push, two objects): the catalogs count each newest
/// entry twice, so a window sized from them holds too few distinct entries and the sample
/// must reach further back; with a line filter the newest lines are not the sampled ones.
#[tokio::test]
async fn duplicates_and_filters_still_sample_the_newest_lines() {
    let s = TestServer::start(CONFIG).await;
    let base = (now_ns() / SEC - 3600) * SEC;
    let names: Vec<String> = (0..20)
        .map(|i| format!(r#"{{service_name="dup", pod="p{i}"}}"#))
        .collect();
    let new_lines: Vec<String> = (0..20).map(|i| format!("n=new{i} kind=a")).collect();
    let old_lines: Vec<String> = (0..20).map(|i| format!("n=old{i} kind=b")).collect();
    let new_push: Vec<(&str, Vec<TestEntry<'_>>)> = names
        .iter()
        .zip(&new_lines)
        .enumerate()
        .map(|(i, (n, l))| {
            (
                n.as_str(),
                vec![(base + i as i64 * SEC, l.as_str(), vec![])],
            )
        })
        .collect();
    let old_push: Vec<(&str, Vec<TestEntry<'_>>)> = names
        .iter()
        .zip(&old_lines)
        .enumerate()
        .map(|(i, (n, l))| {
            (
                n.as_str(),
                vec![(base - 600 * SEC + i as i64 * SEC, l.as_str(), vec![])],
            )
        })
        .collect();
    s.push_protobuf(&old_push).await;
    s.push_protobuf(&new_push).await;
    s.push_protobuf(&new_push).await;
    let (start, end) = (base - 3600 * SEC, base + 3600 * SEC);
    let q = r#"{service_name="dup"}"#;

    // 20 distinct new entries, then the 10 newest old ones.
    let f = fields(&s, &params(q, start, end, 30)).await;
    assert_eq!(f["n"]["cardinality"], 30, "{f:?}");
    assert_eq!(f["kind"]["cardinality"], 2, "{f:?}");
    let f = fields(&s, &params(q, start, end, 20)).await;
    assert_eq!(f["n"]["cardinality"], 20, "{f:?}");
    assert_eq!(f["kind"]["cardinality"], 1, "only new lines: {f:?}");

    // Filters drop the newest lines: the sample is the newest lines that pass.
    let f = fields(
        &s,
        &params(r#"{service_name="dup"} |= "kind=b""#, start, end, 5),
    )
    .await;
    assert_eq!(f["n"]["cardinality"], 5, "{f:?}");
    assert_eq!(f["kind"]["cardinality"], 1, "{f:?}");
    let f = fields(
        &s,
        &params(
            r#"{service_name="dup"} | logfmt | kind="b""#,
            start,
            end,
            50,
        ),
    )
    .await;
    assert_eq!(f["n"]["cardinality"], 20, "{f:?}");
    s.stop().await;
}
