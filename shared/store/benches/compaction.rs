//! Compaction benchmark: a generated day of pushed ("hot") objects in a local directory,
//! compacted once; reports compaction throughput per core of CPU actually used, the object
//! count before and after, and the latency of the storage half of `labels` / `series` (list the
//! day's live objects, read their stream catalogs, build label names and the series set)
//! before and after compaction.
//!
//! `cargo bench -p parquetry-store --bench compaction`
//! (PARQUETRY_BENCH_STREAMS, default 10000; PARQUETRY_BENCH_PUSHES, default 200: pushes spread
//! over the day, each carrying one entry of every stream; PARQUETRY_BENCH_HOT_COPY=<dir>: copy
//! the generated hot day there before compacting, for `parquetry compact --once` or a profiler
//! to run on later).

mod common;

use std::collections::{BTreeSet, HashSet};
use std::time::{Duration, Instant};

use parquetry_loggen::LogGen;
use parquetry_store::compact::NoProgress;
use parquetry_store::{CompactOptions, Store, StreamEntries};
use parquetry_test_support::bench::{Proc, env_or, median};
use parquetry_test_support::{DAY_NS, now_ns};

/// The allocator the binaries link (functions/*/src/main.rs), so the compaction child's peak RSS
/// is what `parquetry compact` shows.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The storage work of `labels` and `series` over `[start, end)`: live objects, their
/// catalogs, label names and distinct series. `fresh` opens a new store (no footer cache).
async fn metadata_query(
    url: &str,
    warm: Option<&Store>,
    start: i64,
    end: i64,
) -> (Duration, usize, usize) {
    let fresh;
    let store = match warm {
        Some(s) => s,
        None => {
            fresh = Store::open(url, vec!["service_name".into()]).expect("store");
            &fresh
        }
    };
    let t = Instant::now();
    let objs = store
        .list("fake", start, end, |_| true)
        .await
        .expect("list");
    let cats = store.catalogs(&objs).await.expect("catalogs");
    let mut names = BTreeSet::new();
    let mut series = HashSet::new();
    for c in &cats {
        for s in &c.streams {
            if series.insert(s.fingerprint) {
                names.extend(s.labels.keys().cloned());
            }
        }
    }
    (t.elapsed(), names.len(), series.len())
}

async fn latency(url: &str, store: &Store, start: i64, end: i64) -> (Duration, Duration, usize) {
    let mut cold = Vec::new();
    let mut warm = Vec::new();
    let mut series = 0;
    for _ in 0..5 {
        let (d, _, n) = metadata_query(url, None, start, end).await;
        cold.push(d);
        series = n;
        let (d, _, _) = metadata_query(url, Some(store), start, end).await;
        warm.push(d);
    }
    (median(cold), median(warm), series)
}

const CHILD_ENV: &str = "PARQUETRY_BENCH_COMPACT_URL";

/// The compaction child: one pass over `url`; prints its CPU seconds, peak RSS and summary.
async fn compact_child(url: &str) {
    let store = Store::open(url, vec!["service_name".into()]).expect("store");
    let opts = CompactOptions {
        hot_min_age: Duration::ZERO,
        target_size: 256 << 20,
        delete_delay: Duration::ZERO,
        max_inputs: 2000,
    };
    let summary = store.compact(&opts, &NoProgress).await.expect("compact");
    println!(
        "{} {} {summary:?}",
        Proc::This.cpu_seconds(),
        Proc::This.peak_rss_mib()
    );
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    if let Ok(url) = std::env::var(CHILD_ENV) {
        compact_child(&url).await;
        return;
    }
    let n_streams = env_or("PARQUETRY_BENCH_STREAMS", 10_000);
    let pushes = env_or("PARQUETRY_BENCH_PUSHES", 200);
    let dir = tempfile::tempdir().expect("tempdir");
    let url = dir.path().display().to_string();
    let store = Store::open(&url, vec!["service_name".into()]).expect("store");

    let now = now_ns();
    let day_start = (now.div_euclid(DAY_NS) - 2) * DAY_NS;
    let (start, end) = (day_start, day_start + DAY_NS);
    // Entries advance by 0.5 to 1.5 steps: keep even the fastest stream inside the day.
    let step = DAY_NS / (pushes as i64 * 3 / 2 + 2);
    let mut generator = LogGen::new(42, n_streams, day_start, step);
    let (mut raw_bytes, mut entries) = (0u64, 0u64);
    let t = Instant::now();
    for _ in 0..pushes {
        let streams: Vec<StreamEntries> = generator
            .batch(1)
            .into_iter()
            .map(|s| common::stream_entries(s, &mut raw_bytes, &mut entries))
            .collect();
        store.write("fake", streams).await.expect("write");
    }
    let before = store.list_keys("").await.expect("keys");
    let hot_bytes: u64 = before.iter().map(|(_, s)| s).sum();
    println!(
        "generated {entries} entries of {n_streams} streams, {:.1} MB of lines, in {} hot objects ({:.1} MB) in {:.1}s",
        raw_bytes as f64 / 1e6,
        before.len(),
        hot_bytes as f64 / 1e6,
        t.elapsed().as_secs_f64()
    );

    if let Ok(copy) = std::env::var("PARQUETRY_BENCH_HOT_COPY") {
        let status = std::process::Command::new("cp")
            .args(["-a", "--", &format!("{url}/."), &copy])
            .status()
            .expect("cp");
        assert!(status.success(), "copying the hot day to {copy}");
        println!("hot day copied to {copy}");
    }

    let (cold_b, warm_b, series_b) = latency(&url, &store, start, end).await;
    println!(
        "labels/series storage work before compaction: {:.1} ms uncached, {:.1} ms cached ({series_b} series)",
        cold_b.as_secs_f64() * 1e3,
        warm_b.as_secs_f64() * 1e3
    );

    // The compaction runs in a child process of its own, so its CPU time and peak memory
    // are its own, not the generator's or the queries' above.
    drop(store);
    let t = Instant::now();
    let out = std::process::Command::new(std::env::current_exe().expect("exe"))
        .env(CHILD_ENV, &url)
        .output()
        .expect("compaction child");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let wall = t.elapsed().as_secs_f64();
    let child = String::from_utf8_lossy(&out.stdout).to_string();
    let mut fields = child.split_whitespace();
    let cpu: f64 = fields.next().and_then(|v| v.parse().ok()).unwrap_or(1e-3);
    let rss: f64 = fields.next().and_then(|v| v.parse().ok()).unwrap_or(0.0);
    let summary = fields.collect::<Vec<_>>().join(" ");
    let store = Store::open(&url, vec!["service_name".into()]).expect("store");
    let after = store.list_keys("").await.expect("keys");
    let data_after = after
        .iter()
        .filter(|(k, _)| k.ends_with(".parquet"))
        .count();
    let cold_bytes: u64 = after.iter().map(|(_, s)| s).sum();
    println!(
        "compaction: {:.1}s wall, {:.1}s CPU ({:.2} cores busy); {:.1} MB/s of lines per core, {:.1} MB/s of stored input per core",
        wall,
        cpu,
        cpu / wall,
        raw_bytes as f64 / 1e6 / cpu,
        hot_bytes as f64 / 1e6 / cpu
    );
    println!(
        "objects: {} hot -> {} cold ({:.0}x fewer); {:.1} MB -> {:.1} MB; compactor peak RSS {rss:.0} MiB; {summary}",
        before.len(),
        data_after,
        before.len() as f64 / data_after.max(1) as f64,
        hot_bytes as f64 / 1e6,
        cold_bytes as f64 / 1e6,
    );
    let (cold_a, warm_a, series_a) = latency(&url, &store, start, end).await;
    assert_eq!(series_a, series_b);
    println!(
        "labels/series storage work after compaction: {:.1} ms uncached, {:.1} ms cached ({series_a} series)",
        cold_a.as_secs_f64() * 1e3,
        warm_a.as_secs_f64() * 1e3
    );
}
