//! The JSON scanner against the crate alternatives, on generated JSON log lines: `serde_json`
//! (validating; derive into borrowed fields, or a `Value` tree) and `jiter` (iterating, or a
//! `JsonValue` tree). Two tasks, each what a caller of this crate does per line:
//!
//! - **level**: the `level` string of the object, else `log.level` (push-time `detected_level`);
//! - **all fields**: every member flattened to `(name, text)` pairs (`| json` without
//!   parameters).
//!
//! Every implementation must find the same answers on every line (the bench panics
//! otherwise), so the figures compare equal work. One thread; "per CPU-second" divides by
//! this process's CPU time, steadier than wall time on a shared machine.
//!
//! `cargo bench -p parquetry-json --bench scan`
//! (PARQUETRY_BENCH_LINES, default 200000; PARQUETRY_BENCH_RUNS, default 3, best kept)

use std::borrow::Cow;
use std::hint::black_box;
use std::time::Instant;

use jiter::{Jiter, JsonValue, Peek};
use parquetry_json::{JErr, Kind, Val, object_each, scalar_text, string_value};
use parquetry_test_support::bench::{Proc, env_or};
use serde::Deserialize;

/// A small deterministic generator (xorshift), so the bench needs no other crate.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[(self.next() % items.len() as u64) as usize]
    }
}

/// Application-log JSON as agents ship it: half flat (`level` at the top), half wrapped the way
/// Kubernetes log shippers wrap it (`log.level` one level down), a few escaped strings.
fn lines(n: usize) -> Vec<String> {
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let levels = ["info", "info", "info", "debug", "warn", "error"];
    let msgs = [
        "request served",
        "cache miss for key \\\"user:42\\\"",
        "upstream timed out after 3 retries",
        "payment authorised",
        "GET /api/v1/items?limit=50 \\u00e9t\\u00e9",
    ];
    let paths = [
        "/api/v1/items",
        "/api/v1/cart",
        "/healthz",
        "/api/v1/checkout",
    ];
    (0..n)
        .map(|i| {
            let inner = format!(
                r#"{{"ts":{},"level":"{}","msg":"{}","path":"{}","status":{},"duration_ms":{},"user_id":{},"trace_id":"{:016x}{:016x}"}}"#,
                1_700_000_000_000u64 + i as u64,
                rng.pick(&levels),
                rng.pick(&msgs),
                rng.pick(&paths),
                [200, 201, 404, 500][(rng.next() % 4) as usize],
                rng.next() % 2000,
                rng.next() % 100_000,
                rng.next(),
                rng.next()
            );
            if i % 2 == 0 {
                inner
            } else {
                let pod = format!("checkout-{:x}", rng.next() % 4096);
                let msg = rng.pick(&msgs);
                // The level inside `log`, the message beside it.
                let inner = inner.replace(&format!(r#","msg":"{msg}""#), "");
                format!(
                    r#"{{"kubernetes":{{"namespace":"shop","pod":"{pod}","container":"app"}},"stream":"stdout","log":{inner},"msg":"{msg}"}}"#
                )
            }
        })
        .collect()
}

// ---- task 1: the level ----

fn level_scanner(line: &str) -> Option<Cow<'_, str>> {
    fn member<'a>(best: &mut Option<(u8, Cow<'a, str>)>, k: &[u8], v: Val<'a>, depth: u8) {
        match (k, v.kind) {
            (b"level", Kind::String) if best.as_ref().is_none_or(|(d, _)| depth < *d) => {
                *best = Some((depth, string_value(v.raw)));
            }
            (b"log", Kind::Object) if depth == 1 => {
                let _ = object_each::<JErr>(v.raw, |k, v| {
                    member(best, &k, v, 2);
                    Ok(())
                });
            }
            _ => {}
        }
    }
    let mut best = None;
    let _ = object_each::<JErr>(line.as_bytes(), |k, v| {
        member(&mut best, &k, v, 1);
        Ok(())
    });
    best.map(|(_, v)| v)
}

#[derive(Deserialize)]
struct Outer<'a> {
    #[serde(borrow)]
    level: Option<Cow<'a, str>>,
    #[serde(borrow)]
    log: Option<Inner<'a>>,
}

#[derive(Deserialize)]
struct Inner<'a> {
    #[serde(borrow)]
    level: Option<Cow<'a, str>>,
}

fn level_serde(line: &str) -> Option<Cow<'_, str>> {
    let o: Outer<'_> = serde_json::from_str(line).ok()?;
    o.level.or_else(|| o.log.and_then(|l| l.level))
}

fn level_jiter(line: &str) -> Option<String> {
    #[derive(PartialEq)]
    enum Key {
        Level,
        Log,
        Other,
    }
    // Keys borrow the iterator, so each is classified before the value is read.
    fn key(k: Option<&str>) -> Option<Key> {
        k.map(|k| match k {
            "level" => Key::Level,
            "log" => Key::Log,
            _ => Key::Other,
        })
    }
    fn object(j: &mut Jiter<'_>, first: Option<Key>, depth: u8) -> Option<(u8, String)> {
        let mut best: Option<(u8, String)> = None;
        let mut k = first;
        while let Some(this) = k {
            let peek = j.peek().ok()?;
            match (this, peek) {
                (Key::Level, Peek::String) => {
                    let v = j.known_str().ok()?;
                    if best.as_ref().is_none_or(|(d, _)| depth < *d) {
                        best = Some((depth, v.to_string()));
                    }
                }
                (Key::Log, Peek::Object) if depth == 1 => {
                    let first = key(j.known_object().ok()?);
                    if let Some(found) = object(j, first, 2)
                        && best.is_none()
                    {
                        best = Some(found);
                    }
                }
                _ => j.known_skip(peek).ok()?,
            }
            k = key(j.next_key().ok()?);
        }
        best
    }
    let mut j = Jiter::new(line.as_bytes());
    let first = key(j.next_object().ok()?);
    object(&mut j, first, 1).map(|(_, v)| v)
}

// ---- task 2: every member, flattened ----

/// What the all-fields task produces for a line: (pairs, bytes of names and values).
type Fields = (usize, usize);

fn all_scanner(line: &str) -> Fields {
    fn walk(d: &[u8], prefix: &str, out: &mut Fields) -> Result<(), JErr> {
        object_each::<JErr>(d, |k, v| {
            let name = format!("{prefix}{}", String::from_utf8_lossy(&k));
            match v.kind {
                Kind::Object => walk(v.raw, &format!("{name}_"), out),
                Kind::Array => Ok(()),
                _ => {
                    out.0 += 1;
                    out.1 += name.len() + scalar_text(&v).len();
                    Ok(())
                }
            }
        })
    }
    let mut out = (0, 0);
    let _ = walk(line.as_bytes(), "", &mut out);
    out
}

fn all_serde(line: &str) -> Fields {
    fn walk(o: &serde_json::Map<String, serde_json::Value>, prefix: &str, out: &mut Fields) {
        for (k, v) in o {
            let name = format!("{prefix}{k}");
            match v {
                serde_json::Value::Object(o) => walk(o, &format!("{name}_"), out),
                serde_json::Value::Array(_) => {}
                serde_json::Value::String(s) => {
                    out.0 += 1;
                    out.1 += name.len() + s.len();
                }
                serde_json::Value::Null => out.0 += 1,
                other => {
                    out.0 += 1;
                    out.1 += name.len() + other.to_string().len();
                }
            }
        }
    }
    let mut out = (0, 0);
    if let Ok(serde_json::Value::Object(o)) = serde_json::from_str(line) {
        walk(&o, "", &mut out);
    }
    out
}

fn all_jiter(line: &str) -> Fields {
    fn walk(o: &jiter::JsonObject<'_>, prefix: &str, out: &mut Fields) {
        for (k, v) in o.iter() {
            let name = format!("{prefix}{k}");
            match v {
                JsonValue::Object(o) => walk(o, &format!("{name}_"), out),
                JsonValue::Array(_) => {}
                JsonValue::Str(s) => {
                    out.0 += 1;
                    out.1 += name.len() + s.len();
                }
                JsonValue::Int(i) => {
                    out.0 += 1;
                    out.1 += name.len() + i.to_string().len();
                }
                JsonValue::Float(f) => {
                    out.0 += 1;
                    out.1 += name.len() + f.to_string().len();
                }
                JsonValue::Bool(b) => {
                    out.0 += 1;
                    out.1 += name.len() + b.to_string().len();
                }
                JsonValue::Null => out.0 += 1,
            }
        }
    }
    let mut out = (0, 0);
    if let Ok(JsonValue::Object(o)) = JsonValue::parse(line.as_bytes(), false) {
        walk(&o, "", &mut out);
    }
    out
}

/// Best of `runs`: (CPU seconds, wall seconds) of one pass of `f` over `lines`.
fn measure(runs: usize, lines: &[String], f: impl Fn(&str) -> usize) -> (f64, f64) {
    let mut best = (f64::MAX, f64::MAX);
    for _ in 0..runs {
        let (c, t) = (Proc::This.cpu_seconds(), Instant::now());
        let mut acc = 0usize;
        for l in lines {
            acc = acc.wrapping_add(f(black_box(l)));
        }
        black_box(acc);
        let run = (Proc::This.cpu_seconds() - c, t.elapsed().as_secs_f64());
        if run.1 < best.1 {
            best = run;
        }
    }
    best
}

fn main() {
    let n: usize = env_or("PARQUETRY_BENCH_LINES", 200_000);
    let runs: usize = env_or("PARQUETRY_BENCH_RUNS", 3);
    let lines = lines(n);
    let bytes: usize = lines.iter().map(String::len).sum();

    // Equal work: every implementation finds the same level and the same fields on every line.
    let mut levels = std::collections::BTreeMap::<String, usize>::new();
    for l in &lines {
        let a = level_scanner(l).map(Cow::into_owned);
        let b = level_serde(l).map(Cow::into_owned);
        let c = level_jiter(l);
        assert!(
            a.is_some() && a == b && b == c,
            "levels differ on {l}: {a:?} {b:?} {c:?}"
        );
        *levels.entry(a.unwrap_or_default()).or_default() += 1;
        let (x, y, z) = (all_scanner(l), all_serde(l), all_jiter(l));
        assert!(x == y && y == z, "fields differ on {l}: {x:?} {y:?} {z:?}");
    }
    println!(
        "{n} JSON lines, {:.1} MB, levels {levels:?}; best of {runs} runs, one thread",
        bytes as f64 / 1e6
    );
    println!(
        "{:<12} {:<28} {:>10} {:>14} {:>10}",
        "task", "implementation", "ns/line", "MB/CPU-second", "wall MB/s"
    );
    let report = |task: &str, name: &str, (cpu, wall): (f64, f64)| {
        println!(
            "{task:<12} {name:<28} {:>10.0} {:>14.1} {:>10.1}",
            wall * 1e9 / n as f64,
            bytes as f64 / 1e6 / cpu.max(0.01),
            bytes as f64 / 1e6 / wall
        );
    };
    let len = |v: Option<Cow<'_, str>>| v.map_or(0, |v| v.len());
    report(
        "level",
        "parquetry-json (scanner)",
        measure(runs, &lines, |l| len(level_scanner(l))),
    );
    report(
        "level",
        "serde_json (derive)",
        measure(runs, &lines, |l| len(level_serde(l))),
    );
    report(
        "level",
        "jiter (iterator)",
        measure(runs, &lines, |l| level_jiter(l).map_or(0, |v| v.len())),
    );
    let sum = |(a, b): Fields| a + b;
    report(
        "all fields",
        "parquetry-json (scanner)",
        measure(runs, &lines, |l| sum(all_scanner(l))),
    );
    report(
        "all fields",
        "serde_json (Value)",
        measure(runs, &lines, |l| sum(all_serde(l))),
    );
    report(
        "all fields",
        "jiter (JsonValue)",
        measure(runs, &lines, |l| sum(all_jiter(l))),
    );
}
