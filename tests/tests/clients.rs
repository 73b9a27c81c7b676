//! Real Loki clients maintained by others push to Parquetry; an independent Parquet reader
//! reads what it wrote.

use parquetry_e2e::{TestServer, node, python, run_client};
use serde_json::Value;

async fn lines_of(s: &TestServer, query: &str) -> Vec<(String, Value)> {
    let r = reqwest::Client::new()
        .get(s.url("/loki/api/v1/query_range"))
        .query(&[("query", query), ("since", "1h"), ("limit", "1000")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let v: Value = serde_json::from_str(&r.text().await.unwrap()).unwrap();
    v["data"]["result"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|s| {
            let labels = s["stream"].clone();
            s["values"]
                .as_array()
                .unwrap()
                .iter()
                .map(move |e| (e[1].as_str().unwrap().to_string(), labels.clone()))
        })
        .collect()
}

#[tokio::test]
async fn winston_loki_pushes_snappy_protobuf() {
    let s = TestServer::start("").await;
    run_client(&node(), &["winston_push.js", &s.base, "w1", "25"]).await;
    let got = lines_of(&s, r#"{app="winston-e2e", run="w1"}"#).await;
    assert_eq!(got.len(), 25);
    assert!(
        got.iter()
            .any(|(l, _)| l.contains("winston line 24 run=w1"))
    );
    // winston-loki sends the level as a stream label; service_name comes from app.
    let (_, labels) = &got[0];
    assert_eq!(labels["service_name"], "winston-e2e");
    assert!(labels.get("level").is_some(), "{labels}");
}

#[tokio::test]
async fn python_logging_loki_pushes_json() {
    let s = TestServer::start("").await;
    run_client(&python(), &["logging_loki_push.py", &s.base, "p1", "12"]).await;
    let got = lines_of(&s, r#"{app="python-e2e", run="p1"}"#).await;
    assert_eq!(got.len(), 12);
    assert!(got.iter().any(|(l, _)| l == "python line 11 run=p1"));
    let (_, labels) = &got[0];
    assert_eq!(labels["component"], "worker");
    assert_eq!(labels["severity"], "warning");
}

#[tokio::test]
async fn pyarrow_reads_the_objects() {
    let s = TestServer::start("").await;
    run_client(&python(), &["logging_loki_push.py", &s.base, "pa", "7"]).await;
    let files = s.parquet_files();
    assert_eq!(files.len(), 7, "one object per push request: {files:?}");
    let args: Vec<String> = std::iter::once("read_parquet.py".to_string())
        .chain(files.iter().map(|f| f.display().to_string()))
        .collect();
    let argv: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = run_client(&python(), &argv).await;
    let v: Value = serde_json::from_str(&out).unwrap();
    let first = &v[0];
    assert_eq!(first["rows"], 1);
    assert_eq!(
        first["columns"],
        serde_json::json!([
            "timestamp",
            "stream",
            "labels",
            "line",
            "structured_metadata"
        ])
    );
    assert_eq!(first["types"][0], "timestamp[ns, tz=UTC]");
    assert_eq!(first["has_catalog"], true);
    assert_eq!(first["compression"], "ZSTD");
    let all_lines: Vec<String> = v
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|f| {
            f["lines"]
                .as_array()
                .unwrap()
                .iter()
                .map(|l| l.as_str().unwrap().to_string())
        })
        .collect();
    assert!(all_lines.contains(&"python line 3 run=pa".to_string()));
    assert!(
        first["labels"][0]
            .as_str()
            .unwrap()
            .contains("service_name=\"python-e2e\"")
    );
    // Every object sits under the tenant / day / partition layout.
    let rel = files[0]
        .strip_prefix(&s.data_dir)
        .unwrap()
        .display()
        .to_string();
    assert!(rel.starts_with("v1/tenant=fake/day="), "{rel}");
    assert!(rel.contains("/service_name=python-e2e/"), "{rel}");
}
