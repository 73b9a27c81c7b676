//! Fan-out benchmark: a leaf's throughput in MB/s of raw lines read from the storage the
//! tests run on (the S3-compatible server with `PARQUETRY_TEST_BACKEND=s3`), and the same
//! queries split into N leaves (`query_range.fanout_leaves`), run one leaf at a time
//! (`fanout_concurrency: 1`, so the wall time is the sum of the leaves' times) and all at once.
//!
//! ```text
//! eval "$(scripts/s3-server.sh env)"
//! PARQUETRY_TEST_BACKEND=s3 cargo run --release -p parquetry-e2e --bin fanoutbench
//! # PARQUETRY_BENCH_MB: raw line volume (default 128); PARQUETRY_BENCH_STREAMS (default 200)
//! ```
//!
//! Bounded: generates, pushes and compacts once, then runs each query once per setting.

use std::time::Instant;

use parquetry_e2e::{TestEntry, TestServer, now_ns};
use parquetry_loggen::LogGen;
use parquetry_test_support::bench::env_or;
use serde_json::Value;

const NS_PER_S: i64 = 1_000_000_000;

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    let mb: usize = env_or("PARQUETRY_BENCH_MB", 128);
    let n_streams: usize = env_or("PARQUETRY_BENCH_STREAMS", 200);
    let config = "limits_config:\n  reject_old_samples: false\n  max_query_length: 0\n";
    let writer = TestServer::start(config).await;
    println!("storage: {}", writer.storage_url);

    let span = 6 * 3600 * NS_PER_S;
    let lines = mb * 1_000_000 / 200;
    let per_stream = (lines / n_streams).max(10);
    // Lines average under 200 bytes, so more entries than planned may be generated: start
    // early enough that twice the planned span still ends in the past.
    let start = now_ns() - 2 * span - 3600 * NS_PER_S;
    let mut generator = LogGen::new(42, n_streams, start, span / per_stream as i64);
    let (mut raw, mut pushed) = (0usize, 0usize);
    let t = Instant::now();
    while raw < mb * 1_000_000 {
        let batch = generator.batch(50);
        let streams: Vec<(String, Vec<TestEntry<'_>>)> = batch
            .iter()
            .map(|s| {
                let entries = s
                    .entries
                    .iter()
                    .map(|e| {
                        raw += e.line.len();
                        pushed += 1;
                        (
                            e.ts_ns,
                            e.line.as_str(),
                            vec![("trace_id", e.trace_id.as_str())],
                        )
                    })
                    .collect();
                (s.label_text(), entries)
            })
            .collect();
        let refs: Vec<(&str, Vec<TestEntry<'_>>)> = streams
            .iter()
            .map(|(l, e)| (l.as_str(), e.clone()))
            .collect();
        writer.push_protobuf(&refs).await;
    }
    println!(
        "pushed {:.1} MB raw, {pushed} entries, {n_streams} streams in {:.1} s",
        raw as f64 / 1e6,
        t.elapsed().as_secs_f64()
    );
    let t = Instant::now();
    let summary = writer.compact().await;
    println!(
        "compacted in {:.1} s: {summary:?}",
        t.elapsed().as_secs_f64()
    );

    let (qs, qe) = ((start - NS_PER_S).to_string(), (now_ns()).to_string());
    let queries: [(&str, &str); 3] = [
        (
            "needle (log, every line)",
            r#"{namespace="shop"} |= "no-such-token""#,
        ),
        (
            "count by level (metric)",
            r#"sum by (detected_level) (count_over_time({namespace="shop"}[5m]))"#,
        ),
        (
            "json | status >= 500 (metric, parser)",
            r#"sum by (path) (count_over_time({service_name=~"checkout|payments"} | json | status >= 500 [5m]))"#,
        ),
    ];
    println!(
        "\n| query | leaves | concurrency | wall ms | lines MB | MB/s | leaf MB/s | GETs | fetched MB |"
    );
    println!("|---|---|---|---|---|---|---|---|---|");
    for (leaves, concurrency) in [(0, 0), (4, 1), (8, 1), (8, 0)] {
        let cfg = format!(
            "{config}query_range:\n  fanout_leaves: {leaves}\n  fanout_concurrency: {concurrency}\n"
        );
        let s = TestServer::start_on(&writer.data_dir, &cfg).await;
        for (name, q) in queries {
            let params = [
                ("query", q),
                ("start", qs.as_str()),
                ("end", qe.as_str()),
                ("limit", "100"),
                ("step", "300s"),
            ];
            // A warm-up run fills the footer and catalog caches, as a warm process has them.
            let _ = s.get("/loki/api/v1/query_range", &params).await;
            let t = Instant::now();
            let (status, body) = s.get("/loki/api/v1/query_range", &params).await;
            let wall = t.elapsed().as_secs_f64();
            assert_eq!(status, 200, "{q}: {body}");
            let v: Value = serde_json::from_str(&body).expect("json");
            let st = &v["data"]["stats"];
            let bytes = st["summary"]["totalBytesProcessed"].as_f64().unwrap_or(0.0);
            let p = &st["parquetry"];
            let n = p["leaves"].as_u64().unwrap_or(0);
            // One leaf at a time (or the whole query): wall time is the leaves' time.
            let leaf_rate = if concurrency == 1 || n == 0 {
                format!("{:.0}", bytes / 1e6 / wall)
            } else {
                String::new()
            };
            println!(
                "| {name} | {n} | {} | {:.0} | {:.1} | {:.0} | {leaf_rate} | {} | {:.1} |",
                if concurrency == 0 {
                    "all".to_string()
                } else {
                    concurrency.to_string()
                },
                wall * 1e3,
                bytes / 1e6,
                bytes / 1e6 / wall,
                p["getRequests"],
                p["bytesFetched"].as_f64().unwrap_or(0.0) / 1e6,
            );
        }
        s.stop().await;
    }
    writer.stop().await;
}
