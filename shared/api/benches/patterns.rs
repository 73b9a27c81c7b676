//! `patterns` benchmark: one day of one generated service written to a local directory and
//! compacted, then the work behind `/loki/api/v1/patterns` over that day (select the streams,
//! read the sampled lines, mine them with Drain, scale and prune) timed end to end in
//! process. With `PARQUETRY_BENCH_EXACT=1` it also mines every line of the day, to show how
//! far the sampled counts are from the exact ones.
//!
//! `cargo bench -p parquetry-api --bench patterns`
//! (PARQUETRY_BENCH_MB: raw line volume of the service, default 1024;
//! PARQUETRY_BENCH_SERVICE: frontend (nginx-shaped, default), checkout (JSON) or auth (logfmt);
//! PARQUETRY_BENCH_DATA=<dir>: keep the generated store there and reuse it on the next run;
//! PARQUETRY_BENCH_LINES=<n>: time only this sample size instead of the endpoint's and two
//! smaller ones).

mod common;

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Instant;

use parquetry_api::patterns::{SAMPLE_LINES, mine};
use parquetry_loggen::LogGen;
use parquetry_model::{MatchOp, Matcher};
use parquetry_patterns::PatternSeries;
use parquetry_query::QueryEngine;
use parquetry_store::{Store, StreamEntries};
use parquetry_test_support::bench::env_or;
use parquetry_test_support::{DAY_NS, now_ns};

/// Streams of the measured service.
const STREAMS: usize = 1000;
const PER_STREAM_PER_PUSH: usize = 50;
/// Where a reused data directory records the day it was generated for.
const RANGE_FILE: &str = "bench-day";

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let mb: u64 = env_or("PARQUETRY_BENCH_MB", 1024);
    let service: String = env_or("PARQUETRY_BENCH_SERVICE", "frontend".to_string());
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir: PathBuf = std::env::var("PARQUETRY_BENCH_DATA")
        .map(PathBuf::from)
        .unwrap_or_else(|_| tmp.path().to_path_buf());
    std::fs::create_dir_all(&dir).expect("data dir");
    let url = dir.display().to_string();
    let store = std::sync::Arc::new(Store::open(&url, vec!["service_name".into()]).expect("store"));
    let range_file = dir.join(RANGE_FILE);
    let recorded = std::fs::read_to_string(&range_file)
        .ok()
        .and_then(|s| s.trim().parse::<i64>().ok());
    let day_start = match recorded {
        Some(d) => {
            println!("reusing the data in {url}");
            d
        }
        None => {
            let now = now_ns();
            let d = (now.div_euclid(DAY_NS) - 2) * DAY_NS;
            generate(&store, mb, &service, d).await;
            std::fs::write(&range_file, d.to_string()).expect("range file");
            d
        }
    };
    let (start, end) = (day_start, day_start + DAY_NS);
    query(&store, &service, start, end).await;
}

/// Writes one day of `service` from `day_start`, compacted.
async fn generate(store: &Store, mb: u64, service: &str, day_start: i64) {
    // About 180 bytes a line: enough pushes for `mb`, spread evenly over the day.
    let pushes = ((mb * 1_000_000) / 180 / (STREAMS * PER_STREAM_PER_PUSH) as u64).max(1);
    let entries_per_stream = pushes as i64 * PER_STREAM_PER_PUSH as i64;
    let step = DAY_NS / (entries_per_stream * 3 / 2 + 2);
    // Six services round-robin over the streams: keep the measured one's.
    let mut generator = LogGen::new(42, STREAMS * 6, day_start, step);
    let (mut raw, mut entries) = (0u64, 0u64);
    let t = Instant::now();
    while raw < mb * 1_000_000 {
        let streams: Vec<StreamEntries> = generator
            .batch(PER_STREAM_PER_PUSH)
            .into_iter()
            .filter(|s| {
                s.labels
                    .iter()
                    .any(|(k, v)| k == "service_name" && *v == service)
            })
            .map(|s| common::stream_entries(s, &mut raw, &mut entries))
            .filter(|s| !s.entries.is_empty())
            .collect();
        store.write("fake", streams).await.expect("write");
    }
    println!(
        "generated {entries} entries of {service}, {:.1} MB of lines, in {:.1}s",
        raw as f64 / 1e6,
        t.elapsed().as_secs_f64()
    );
    common::compact_all(store).await;
}

/// Times the patterns work over the day at three sample sizes, the endpoint's last.
async fn query(store: &std::sync::Arc<Store>, service: &str, start: i64, end: i64) {
    let engine = QueryEngine::new(store.clone());
    let matchers =
        vec![Matcher::new("service_name", MatchOp::Eq, service.to_string()).expect("matcher")];
    let step_ns = 60 * 1_000_000_000 * 6; // Drilldown's panel interval for a day
    // The endpoint's sample size last, so its answer is the one compared with the exact one.
    let mut last = Vec::new();
    let sizes = match env_or("PARQUETRY_BENCH_LINES", 0usize) {
        0 => vec![SAMPLE_LINES / 4, SAMPLE_LINES / 2, SAMPLE_LINES],
        n => vec![n],
    };
    for max_lines in sizes {
        let mut runs = Vec::new();
        for _ in 0..3 {
            let t = Instant::now();
            let sample = engine
                .sample_lines("fake", &matchers, start, end, max_lines)
                .await
                .expect("sample");
            let read = t.elapsed();
            let (s, st, e) = (start, end, step_ns);
            let n = sample.lines.len();
            let rate = sample.rate;
            let scanned = sample.stats.bytes_scanned as f64 / 1e6;
            let mined = tokio::task::spawn_blocking(move || mine(&sample, s, st, e))
                .await
                .expect("mine");
            let total = t.elapsed();
            println!(
                "max {max_lines}: {:.0} ms ({:.0} ms reading {n} sampled lines at rate {rate:.4}, {scanned:.1} MB read, {:.0} ms mining); {} patterns",
                total.as_secs_f64() * 1e3,
                read.as_secs_f64() * 1e3,
                (total - read).as_secs_f64() * 1e3,
                mined.len()
            );
            runs.push(total);
            last = mined;
        }
        runs.sort();
        println!(
            "max {max_lines}: best {:.0} ms, median {:.0} ms",
            runs[0].as_secs_f64() * 1e3,
            runs[1].as_secs_f64() * 1e3
        );
    }
    for s in last.iter().take(5) {
        println!("  {:>9} {} {}", s.total(), s.level, s.pattern);
    }

    if env_or("PARQUETRY_BENCH_EXACT", 0) == 1 {
        let t = Instant::now();
        let all = engine
            .sample_lines("fake", &matchers, start, end, usize::MAX)
            .await
            .expect("all lines");
        let read = t.elapsed();
        let n = all.lines.len();
        let exact = tokio::task::spawn_blocking(move || mine(&all, start, end, step_ns))
            .await
            .expect("mine");
        let total = t.elapsed();
        println!(
            "exact (every line): {:.0} ms ({:.0} ms reading {n} lines, {:.0} ms mining: {:.0} k lines/s)",
            total.as_secs_f64() * 1e3,
            read.as_secs_f64() * 1e3,
            (total - read).as_secs_f64() * 1e3,
            n as f64 / (total - read).as_secs_f64() / 1e3
        );
        let est: HashMap<(&str, &str), u64> = last
            .iter()
            .map(|s| ((s.pattern.as_str(), s.level.as_str()), s.total()))
            .collect();
        let (mut matched, mut worst) = (0, 0f64);
        // Absolute error and exact lines over the matched patterns, exact lines over all.
        let (mut abs_err, mut matched_lines, mut exact_lines) = (0f64, 0f64, 0f64);
        for s in &exact {
            exact_lines += s.total() as f64;
            if let Some(e) = est.get(&(s.pattern.as_str(), s.level.as_str())) {
                matched += 1;
                let err = (*e as f64 - s.total() as f64).abs() / s.total() as f64;
                worst = worst.max(err);
                abs_err += (*e as f64 - s.total() as f64).abs();
                matched_lines += s.total() as f64;
            }
        }
        let exact_keys: std::collections::HashSet<(&str, &str)> = exact
            .iter()
            .map(|s| (s.pattern.as_str(), s.level.as_str()))
            .collect();
        let extra: Vec<&PatternSeries> = last
            .iter()
            .filter(|s| !exact_keys.contains(&(s.pattern.as_str(), s.level.as_str())))
            .collect();
        let sampled_lines: f64 = last.iter().map(|s| s.total() as f64).sum();
        let extra_lines: f64 = extra.iter().map(|s| s.total() as f64).sum();
        println!(
            "sampled vs exact: {} of {} exact patterns found by the sample ({:.1} % of the exact lines), worst total error {:.1} %, weighted error {:.1} %; {} sampled patterns not in the exact answer ({:.1} % of the sampled lines)",
            matched,
            exact.len(),
            matched_lines / exact_lines.max(1.0) * 100.0,
            worst * 100.0,
            abs_err / matched_lines.max(1.0) * 100.0,
            extra.len(),
            extra_lines / sampled_lines.max(1.0) * 100.0
        );
        for s in exact.iter().take(5) {
            println!("  {:>9} {} {}", s.total(), s.level, s.pattern);
        }
    }
}
