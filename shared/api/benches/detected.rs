//! `detected_fields` benchmark: the ingest benchmark's data shape (1,000 streams over six
//! services, 6 h of entries, `trace_id` and `detected_level` metadata as the push path stores
//! them) written to a local directory and compacted, then the work behind
//! `/loki/api/v1/detected_fields` over the whole range timed in process: sample the newest
//! `line_limit` entries, parse them, collect the fields.
//!
//! `cargo bench -p parquetry-api --bench detected`
//! (PARQUETRY_BENCH_MB: raw line volume, default 1024; PARQUETRY_BENCH_STREAMS, default 1000;
//! PARQUETRY_BENCH_DATA=<dir>: keep the generated store there and reuse it on the next run).

mod common;

use std::path::PathBuf;
use std::time::Instant;

use parquetry_loggen::LogGen;
use parquetry_logql::{Expr, parse_expr};
use parquetry_query::QueryEngine;
use parquetry_query::detected::DetectedFieldsQuery;
use parquetry_store::{Store, StreamEntries};
use parquetry_test_support::bench::env_or;
use parquetry_test_support::now_ns;

const SEED: u64 = 42;
const TENANT: &str = "fake";
/// Where a reused data directory records the range it was generated for.
const RANGE_FILE: &str = "bench-range";

/// Writes the data set into `dir` and returns its query range.
async fn generate(store: &Store, mb: u64, n_streams: usize) -> (i64, i64) {
    let now = now_ns();
    let approx_line = 200u64;
    let per_stream_total = ((mb * 1_000_000 / approx_line) as usize / n_streams).max(5);
    let span = 6 * 3_600 * 1_000_000_000i64;
    let start = now - 2 * span - 600 * 1_000_000_000;
    let mut generator = LogGen::new(SEED, n_streams, start, span / per_stream_total as i64);
    let (mut raw, mut entries) = (0u64, 0u64);
    let t = Instant::now();
    while raw < mb * 1_000_000 {
        let streams: Vec<StreamEntries> = generator
            .batch(50)
            .into_iter()
            .map(|s| common::stream_entries(s, &mut raw, &mut entries))
            .collect();
        store.write(TENANT, streams).await.expect("write");
    }
    println!(
        "generated {entries} entries, {:.1} MB of lines, in {:.1}s",
        raw as f64 / 1e6,
        t.elapsed().as_secs_f64()
    );
    common::compact_all(store).await;
    (start - 1, now)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let mb: u64 = env_or("PARQUETRY_BENCH_MB", 1024);
    let n_streams: usize = env_or("PARQUETRY_BENCH_STREAMS", 1000);
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir: PathBuf = std::env::var("PARQUETRY_BENCH_DATA")
        .map(PathBuf::from)
        .unwrap_or_else(|_| tmp.path().to_path_buf());
    std::fs::create_dir_all(&dir).expect("data dir");
    let url = dir.display().to_string();
    let store = std::sync::Arc::new(Store::open(&url, vec!["service_name".into()]).expect("store"));
    let range_file = dir.join(RANGE_FILE);
    let recorded = std::fs::read_to_string(&range_file).ok().and_then(|s| {
        let mut it = s.split_whitespace().map(|v| v.parse::<i64>().ok());
        Some((it.next()??, it.next()??))
    });
    let (start, end) = match recorded {
        Some(r) => {
            println!("reusing the data in {url}");
            r
        }
        None => {
            let r = generate(&store, mb, n_streams).await;
            std::fs::write(&range_file, format!("{} {}", r.0, r.1)).expect("range file");
            r
        }
    };

    let engine = QueryEngine::new(store.clone());
    let cases: [(&str, &str, usize); 3] = [
        ("1 service, 100 lines", r#"{service_name="checkout"}"#, 100),
        ("all, 100 lines", r#"{namespace="shop"}"#, 100),
        ("all, 1000 lines", r#"{namespace="shop"}"#, 1000),
    ];
    for (name, query, line_limit) in cases {
        let Ok(Expr::Log(expr)) = parse_expr(query) else {
            panic!("bad query {query}");
        };
        let q = DetectedFieldsQuery {
            tenant: TENANT.into(),
            expr,
            start,
            end,
            line_limit,
            limit: 1000,
            max_response_bytes: 0,
        };
        let mut runs = Vec::new();
        let mut fields = 0;
        for _ in 0..5 {
            let t = Instant::now();
            fields = engine.detected_fields(&q).await.expect("fields").len();
            runs.push(t.elapsed());
        }
        runs.sort();
        println!(
            "detected_fields {name:<22} best {:>6.0} ms, median {:>6.0} ms ({fields} fields)",
            runs[0].as_secs_f64() * 1e3,
            runs[2].as_secs_f64() * 1e3
        );
    }
}
