//! What one ruler pass costs: 20 alerting rules (one per service, a 5-minute error count)
//! and 5 recording rules over 200,000 lines pushed in the last 5 minutes, evaluated on a
//! local directory. Prints the mean pass time and the time per rule.
//!
//! `cargo bench -p parquetry-ruler --bench pass`

use std::sync::Arc;
use std::time::Instant;

use parquetry_model::{Config, Labels};
use parquetry_query::QueryEngine;
use parquetry_ruler::{RuleStore, Ruler, rules::parse_group};
use parquetry_store::{LogEntry, Store, StreamEntries};

const LINES: i64 = 200_000;
const SERVICES: i64 = 20;
const PASSES: u32 = 5;

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(run());
}

async fn run() {
    let dir = tempfile::tempdir().expect("tempdir");
    let url = dir.path().display().to_string();
    let config = Config::default();
    let store = Arc::new(Store::open_config(&url, &config.storage).expect("store"));
    let now = parquetry_ruler::now_ns();
    let start = now - 290_000_000_000;
    let step = 290_000_000_000 / LINES;
    // Ten pushes, as an agent would send them over five minutes.
    for batch in 0..10 {
        let mut streams = Vec::new();
        for svc in 0..SERVICES {
            let entries = (0..LINES / SERVICES / 10)
                .map(|i| {
                    let n = batch * (LINES / 10) + svc * (LINES / SERVICES / 10) + i;
                    LogEntry {
                        ts_ns: start + n * step,
                        line: format!(
                            "level={} msg=\"request {n} handled\" duration_ms={}",
                            if n % 50 == 0 { "error" } else { "info" },
                            n % 997
                        )
                        .into(),
                        structured_metadata: Vec::new(),
                    }
                })
                .collect();
            streams.push(StreamEntries {
                labels: Labels::from_pairs([("service_name", format!("svc{svc}"))]),
                entries,
            });
        }
        store.write("fake", streams).await.expect("write");
    }
    let mut yaml = String::from("name: bench\nrules:\n");
    for svc in 0..SERVICES {
        yaml.push_str(&format!(
            "- alert: Errors{svc}\n  expr: sum by (service_name) (count_over_time({{service_name=\"svc{svc}\"}} |= \"level=error\" [5m])) > 0\n  annotations:\n    summary: '{{{{ $labels.service_name }}}}: {{{{ $value }}}}'\n"
        ));
    }
    for svc in 0..5 {
        yaml.push_str(&format!(
            "- record: svc:lines:rate5m_{svc}\n  expr: sum by (service_name) (rate({{service_name=\"svc{svc}\"}}[5m]))\n"
        ));
    }
    let group = parse_group(&yaml).expect("group");
    let rules = group.rules.len();
    RuleStore::bucket(store.object_store())
        .set_group("fake", "bench", &group)
        .await
        .expect("store group");
    let engine = QueryEngine::new(store.clone());
    let ruler = Ruler::new(Arc::new(config), store, engine);
    // One pass to warm the catalog caches, as a running server has them.
    let s = ruler.run_pass(parquetry_ruler::now_ns(), false).await;
    assert_eq!(s.rule_errors, 0, "{s:?}");
    assert_eq!(s.alerts_firing, SERVICES as usize, "{s:?}");
    let t = Instant::now();
    for _ in 0..PASSES {
        ruler.run_pass(parquetry_ruler::now_ns(), false).await;
    }
    let per_pass = t.elapsed().as_secs_f64() / f64::from(PASSES);
    println!(
        "ruler pass: {rules} rules over {LINES} lines (5 min, {SERVICES} services): {:.1} ms per pass, {:.1} ms per rule",
        per_pass * 1e3,
        per_pass * 1e3 / rules as f64
    );
}
