//! What a query stage span costs: the time [`parquetry_query::trace::stage`] adds around one
//! awaited future, with no subscriber, with a subscriber that records spans but logs no span
//! events (the default), and with span close events written (`server.log_spans: true`).
//!
//! A query runs 5 to 10 stages, so the figure times ten is the per-query overhead.
//!
//! ```sh
//! CARGO_TARGET_DIR=$HOME/.cache/parquetry-release cargo bench -p parquetry-query --bench trace
//! ```
//!
//! Env: `TRACE_BENCH_ITERS` (default 200000) awaited stages per case.

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use parquetry_query::trace::{Stage, StageTimings, stage};
use tracing_subscriber::fmt::format::FmtSpan;

fn iterations() -> u32 {
    std::env::var("TRACE_BENCH_ITERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200_000)
}

/// Nanoseconds per awaited future: `wrapped` in a stage span, or bare.
fn run(rt: &tokio::runtime::Runtime, n: u32, wrapped: bool) -> f64 {
    let timings = Arc::new(StageTimings::default());
    let started = Instant::now();
    rt.block_on(timings.clone().scope(async {
        for i in 0..n {
            let fut = async move { black_box(i) };
            let v = if wrapped {
                stage(Stage::Scan, fut).await
            } else {
                fut.await
            };
            black_box(v);
        }
    }));
    let per = started.elapsed().as_nanos() as f64 / f64::from(n);
    assert!(!wrapped || timings.get(Stage::Scan) > Duration::ZERO);
    per
}

fn main() {
    let n = iterations();
    let rt = match tokio::runtime::Builder::new_current_thread().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("runtime: {e}");
            std::process::exit(1);
        }
    };
    let report = |case: &str| {
        // Warm-up, then the measured runs.
        run(&rt, n / 10, true);
        let bare = run(&rt, n, false);
        let staged = run(&rt, n, true);
        println!(
            "{case:<40} bare {bare:>7.1} ns  staged {staged:>7.1} ns  overhead {:>7.1} ns/stage",
            staged - bare
        );
    };
    report("no subscriber");
    let quiet = tracing_subscriber::fmt()
        .with_env_filter("info")
        .with_writer(std::io::sink)
        .finish();
    tracing::subscriber::with_default(quiet, || report("fmt subscriber, no span events"));
    let closing = tracing_subscriber::fmt()
        .with_env_filter("info")
        .with_span_events(FmtSpan::CLOSE)
        .with_writer(std::io::sink)
        .finish();
    tracing::subscriber::with_default(closing, || {
        report("fmt subscriber, close events (log_spans)")
    });
}
