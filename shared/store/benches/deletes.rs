//! Delete benchmark: the cost of delete requests on a compacted day in a local directory.
//!
//! - query side: finding a tenant's delete requests (what every query adds when none exist):
//!   one LIST uncached, nothing cached;
//! - compactor side: one pass applying a request, by selector width: one stream, one whole
//!   partition (`service_name`), one partition with a line filter. Reports objects rewritten,
//!   bytes read and written, entries removed and the wall time.
//!
//! `cargo bench -p parquetry-store --bench deletes`
//! (PARQUETRY_BENCH_STREAMS, default 2000; PARQUETRY_BENCH_PUSHES, default 100).

mod common;

use std::time::{Duration, Instant};

use parquetry_loggen::LogGen;
use parquetry_store::compact::NoProgress;
use parquetry_store::{CompactOptions, DeletePassOptions, Store, StreamEntries, TenantPolicy};
use parquetry_test_support::bench::{env_or, median};
use parquetry_test_support::{DAY_NS, now_ns};

async fn stored_bytes(store: &Store) -> u64 {
    store
        .list_keys("")
        .await
        .expect("keys")
        .iter()
        .map(|(_, s)| s)
        .sum()
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let n_streams = env_or("PARQUETRY_BENCH_STREAMS", 2000);
    let pushes = env_or("PARQUETRY_BENCH_PUSHES", 100);
    let dir = tempfile::tempdir().expect("tempdir");
    let url = dir.path().display().to_string();
    let store = Store::open(&url, vec!["service_name".into()]).expect("store");
    let now = now_ns();
    let day_start = (now.div_euclid(DAY_NS) - 2) * DAY_NS;
    let step = DAY_NS / (pushes as i64 * 3 / 2 + 2);
    let mut generator = LogGen::new(42, n_streams, day_start, step);
    let (mut raw, mut entries) = (0u64, 0u64);
    let mut first_labels = Vec::new();
    for _ in 0..pushes {
        let streams: Vec<StreamEntries> = generator
            .batch(1)
            .into_iter()
            .map(|s| {
                if first_labels.is_empty() {
                    first_labels = s.labels.clone();
                }
                common::stream_entries(s, &mut raw, &mut entries)
            })
            .collect();
        store.write("fake", streams).await.expect("write");
    }
    let copts = CompactOptions {
        hot_min_age: Duration::ZERO,
        target_size: 256 << 20,
        delete_delay: Duration::ZERO,
        max_inputs: 2000,
    };
    store.compact(&copts, &NoProgress).await.expect("compact");
    store.compact(&copts, &NoProgress).await.expect("compact");
    let objects = store
        .list("fake", day_start, day_start + DAY_NS, |_| true)
        .await
        .expect("list");
    println!(
        "day: {entries} entries of {n_streams} streams, {:.1} MB of lines, {} live objects ({:.1} MB)",
        raw as f64 / 1e6,
        objects.len(),
        objects.iter().map(|o| o.size).sum::<u64>() as f64 / 1e6
    );

    // Query side with no request: a fresh store (one LIST), then the cached listing.
    let mut uncached = Vec::new();
    let mut cached = Vec::new();
    for _ in 0..9 {
        let fresh = Store::open(&url, vec!["service_name".into()]).expect("store");
        let t = Instant::now();
        assert!(
            fresh
                .query_deletes("fake")
                .await
                .expect("deletes")
                .is_empty()
        );
        uncached.push(t.elapsed());
        let t = Instant::now();
        fresh.query_deletes("fake").await.expect("deletes");
        cached.push(t.elapsed());
    }
    println!(
        "query side, no delete request: {:.1} µs uncached (one LIST), {:.2} µs cached",
        median(uncached).as_secs_f64() * 1e6,
        median(cached).as_secs_f64() * 1e6
    );

    let svc = first_labels
        .iter()
        .find(|(k, _)| k == "service_name")
        .map(|(_, v)| v.clone())
        .unwrap_or_default();
    let one_stream = format!(
        "{{{}}}",
        first_labels
            .iter()
            .map(|(k, v)| format!("{k}=\"{v}\""))
            .collect::<Vec<_>>()
            .join(",")
    );
    let cases = [
        ("one stream", one_stream),
        (
            "one service, line filter",
            format!("{{service_name=\"{svc}\"}} |= \"error\""),
        ),
        ("one whole service", format!("{{service_name=\"{svc}\"}}")),
    ];
    let opts = DeletePassOptions {
        cancel_period: Duration::ZERO,
        delete_delay: Duration::ZERO,
        dry_run: false,
    };
    let policy = |_: &str| TenantPolicy {
        physical_deletes: true,
        stream_rules: Vec::new(),
    };
    for (name, query) in cases {
        store
            .add_delete_request("fake", &query, day_start, day_start + DAY_NS)
            .await
            .expect("request");
        let before = stored_bytes(&store).await;
        let t = Instant::now();
        let s = store.apply_deletes(&opts, policy).await.expect("pass");
        let wall = t.elapsed();
        let written = stored_bytes(&store).await.saturating_sub(before);
        // Collect the replaced objects before the next case.
        store.compact(&copts, &NoProgress).await.expect("compact");
        store.compact(&copts, &NoProgress).await.expect("compact");
        println!(
            "{name}: {} objects rewritten ({:.1} MB written), {} entries ({:.2} MB of lines) removed in {:.2} s",
            s.objects_rewritten,
            written as f64 / 1e6,
            s.entries_removed,
            s.bytes_removed as f64 / 1e6,
            wall.as_secs_f64()
        );
    }
}
