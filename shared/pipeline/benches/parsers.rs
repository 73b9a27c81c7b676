//! What a parser pipeline costs per line, apart from the scan and the series around it: the
//! metric query's per-row work in `parquetry_query::metric` (reset the entry, run the stages,
//! unwrap, drop the unwrapped label) on generated lines shaped like the ingest bench's.
//!
//! ```sh
//! CARGO_TARGET_DIR=$HOME/.cache/parquetry-release cargo bench -p parquetry-pipeline --bench parsers
//! ```
//!
//! Env: `PARSERS_BENCH_LINES` (default 200000) lines per case, each case run three times
//! (best kept).

use std::hint::black_box;
use std::time::Instant;

use parquetry_logql::{Expr, SampleExpr, parse_expr};
use parquetry_model::Labels;
use parquetry_pipeline::{EntryLabels, Pipeline, Unwrapper};

/// A small xorshift generator: the same lines on every run.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

const LEVELS: [&str; 4] = ["debug", "info", "warn", "error"];
const PATHS: [&str; 4] = ["/api/orders", "/api/users", "/healthz", "/api/cart/items"];
const MESSAGES: [&str; 3] = [
    "request served",
    "inventory reserved for order",
    "cache miss, loading from db",
];

/// One generated entry's fields.
struct Fields {
    ts: u64,
    level: &'static str,
    msg: &'static str,
    path: &'static str,
    status: u16,
    ms: u64,
    user: u64,
    trace: u128,
}

impl Fields {
    fn new(r: &mut Rng, i: u64) -> Fields {
        Fields {
            ts: 1_796_174_255_679 + i,
            level: LEVELS[r.below(4) as usize],
            msg: MESSAGES[r.below(3) as usize],
            path: PATHS[r.below(4) as usize],
            status: [200, 201, 404, 500][r.below(4) as usize],
            ms: r.below(2000),
            user: r.below(100_000),
            trace: u128::from(r.below(u64::MAX)) << 64 | u128::from(r.below(u64::MAX)),
        }
    }

    /// The entry as a JSON line, or as a logfmt line.
    fn line(&self, json: bool) -> String {
        let Fields {
            ts,
            level,
            msg,
            path,
            status,
            ms,
            user,
            trace,
        } = self;
        if json {
            format!(
                r#"{{"ts":{ts},"level":"{level}","msg":"{msg}","path":"{path}","status":{status},"ms":{ms},"user":{user},"trace_id":"{trace:032x}"}}"#
            )
        } else {
            format!(
                "ts={ts} level={level} msg=\"{msg}\" path={path} status={status} duration={ms}ms user={user} trace_id={trace:032x}"
            )
        }
    }
}

/// The pipeline and unwrap of the metric query `q`'s range aggregation.
fn compile(q: &str) -> (Pipeline, Option<Unwrapper>) {
    let Ok(Expr::Sample(SampleExpr::RangeAggregation(ra))) = parse_expr(q) else {
        panic!("not a range aggregation: {q}");
    };
    let pipeline = Pipeline::new(&ra.range.log.pipeline).expect("pipeline compiles");
    let unwrapper = ra
        .range
        .unwrap
        .as_ref()
        .map(|u| Unwrapper::new(u).expect("unwrap compiles"));
    (pipeline, unwrapper)
}

/// Nanoseconds per line, best of three passes over `lines`.
fn run(q: &str, lines: &[String], metadata: &[(&str, String)]) -> f64 {
    let (pipeline, unwrapper) = compile(q);
    let stream = Labels::from_pairs([("service_name", "inventory"), ("namespace", "shop")]);
    let mut entry = EntryLabels::default();
    let mut best = f64::INFINITY;
    for _ in 0..3 {
        let started = Instant::now();
        let mut kept = 0u64;
        for (i, line) in lines.iter().enumerate() {
            let meta: Vec<(&str, &str)> = metadata
                .get(i % metadata.len().max(1))
                .map(|(k, v)| (*k, v.as_str()))
                .into_iter()
                .collect();
            entry.reset_keyed(1, &stream, &meta);
            if pipeline.process(i as i64, line, &mut entry).is_none() {
                continue;
            }
            if let Some(u) = &unwrapper {
                let Some(v) = u.extract(&mut entry) else {
                    continue;
                };
                u.remove_unwrapped_label(&mut entry);
                black_box(v);
            }
            kept += 1;
            black_box(entry.iter().count());
        }
        black_box(kept);
        best = best.min(started.elapsed().as_nanos() as f64 / lines.len() as f64);
    }
    best
}

fn main() {
    let n: u64 = std::env::var("PARSERS_BENCH_LINES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200_000);
    let mut r = Rng(42);
    let logfmt: Vec<String> = (0..n).map(|i| Fields::new(&mut r, i).line(false)).collect();
    let json: Vec<String> = (0..n).map(|i| Fields::new(&mut r, i).line(true)).collect();
    let traces: Vec<(&str, String)> = (0..1024)
        .map(|i| {
            (
                "trace_id",
                format!("{:032x}", u128::from(r.below(u64::MAX)) << 8 | i),
            )
        })
        .collect();
    let cases: [(&str, &str, &[String]); 4] = [
        (
            "logfmt | unwrap duration",
            r#"avg_over_time({service_name="inventory"} | logfmt | unwrap duration(duration) | __error__="" [5m])"#,
            &logfmt,
        ),
        (
            "logfmt | level filter",
            r#"count_over_time({service_name="inventory"} | logfmt | level="error" [5m])"#,
            &logfmt,
        ),
        (
            "json | status >= 500",
            r#"count_over_time({service_name="inventory"} | json | status >= 500 [5m])"#,
            &json,
        ),
        (
            "json | unwrap ms",
            r#"avg_over_time({service_name="inventory"} | json | unwrap ms | __error__="" [5m])"#,
            &json,
        ),
    ];
    println!("{n} lines per case, trace_id metadata on every line; ns per line (best of 3)");
    for (name, q, lines) in cases {
        let bytes: usize = lines.iter().map(String::len).sum();
        let ns = run(q, lines, &traces);
        let mbs = bytes as f64 / lines.len() as f64 / ns * 1e3;
        println!("{name:<28} {ns:>8.0} ns/line  {mbs:>6.0} MB/s of lines");
    }
}
