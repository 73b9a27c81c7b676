//! The LogQL conformance corpus: `tests/corpus/dataset.json` is pushed once to a real server,
//! then every case of `tests/corpus/*.yaml` runs over HTTP (`query_range` or `query`) and its
//! `data.result` (or `data`, for the label browser) is compared with the expected one, recorded
//! from a reference Loki (see tests/corpus/README.md and `compare_with_reference_loki` below).
//!
//! A case file holds optional `defaults` (merged into each case) and `cases`. A case has:
//! - `name`, `query`, `kind` (`range`, `instant`, or the label browser's `labels`,
//!   `label_values` with its `label`, and `series` whose `query` is the `match[]` selector);
//! - `start`/`end`/`step` (range) or `time` (instant), sent as given; optional `limit`,
//!   `direction`, `interval`; `categorize: true` sends the categorize-labels flag;
//!   `method: POST` sends the parameters as a form body instead of the URL query;
//! - `expect: {resultType, result}`, or `error: {status, contains}` for a failing query;
//! - `ordered: true` to compare the order of result series (sort, topk, …); otherwise series
//!   are matched by their label set;
//! - `known_failure: "<reason>"` for an engine bug: reported, not fatal, and an error if the
//!   case starts passing;
//! - `note`: free text explaining a non-obvious expectation.
//!
//! Unknown keys are rejected, so a misspelt `known_failure` cannot go unnoticed.
//!
//! Log values are compared exactly. Metric values are strings compared as text, except that a
//! non-integral expected value also matches a number within a relative 1e-9.
//!
//! `PARQUETRY_CORPUS_FILTER=json,offset` runs only the cases whose `file/name` contains one of
//! the comma-separated substrings.

use std::path::{Path, PathBuf};

use parquetry_e2e::TestServer;
use serde_json::{Map, Value, json};

/// Loki's defaults (metric ranges aligned to the step grid, as Loki's query splitting does),
/// and the 2024 dataset accepted.
const CONFIG: &str = "limits_config:\n  reject_old_samples: false\n";

/// The keys a case (or a file's `defaults`) may hold.
const CASE_KEYS: &[&str] = &[
    "name",
    "note",
    "query",
    "kind",
    "start",
    "end",
    "step",
    "interval",
    "time",
    "limit",
    "direction",
    "method",
    "categorize",
    "ordered",
    "known_failure",
    "label",
    "expect",
    "error",
];

fn corpus_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus")
}

struct Case {
    file: String,
    name: String,
    spec: Map<String, Value>,
}

impl Case {
    fn id(&self) -> String {
        format!("{}/{}", self.file, self.name)
    }

    fn str(&self, key: &str) -> Option<String> {
        match self.spec.get(key)? {
            Value::String(s) => Some(s.clone()),
            Value::Number(n) => Some(n.to_string()),
            Value::Bool(b) => Some(b.to_string()),
            _ => None,
        }
    }

    fn flag(&self, key: &str) -> bool {
        self.spec.get(key).and_then(Value::as_bool).unwrap_or(false)
    }
}

/// Every case of every corpus file, in file then case order.
fn load_cases() -> Vec<Case> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(corpus_dir())
        .expect("tests/corpus")
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml" || e == "yml"))
        .collect();
    files.sort();
    let mut out = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for path in files {
        let stem = path.file_stem().unwrap().to_string_lossy().to_string();
        let text = std::fs::read_to_string(&path).expect("read corpus file");
        let yaml: serde_yaml::Value = serde_yaml::from_str(&text)
            .unwrap_or_else(|e| panic!("{}: invalid YAML: {e}", path.display()));
        let doc: Value = serde_json::to_value(yaml).expect("YAML as JSON");
        let defaults = doc
            .get("defaults")
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default();
        let cases = doc
            .get("cases")
            .and_then(Value::as_array)
            .unwrap_or_else(|| panic!("{}: no `cases` list", path.display()));
        for c in cases {
            let mut spec = defaults.clone();
            for (k, v) in c.as_object().expect("a case is a mapping") {
                spec.insert(k.clone(), v.clone());
            }
            let name = spec
                .get("name")
                .and_then(Value::as_str)
                .unwrap_or_else(|| panic!("{}: a case without a name", path.display()))
                .to_string();
            assert!(
                seen.insert(format!("{stem}/{name}")),
                "duplicate case {stem}/{name}"
            );
            // A case added without an answer waits for the recorder to fill it in.
            assert!(
                spec.contains_key("expect") != spec.contains_key("error")
                    || recording()
                    || std::env::var("PARQUETRY_REFERENCE_LOKI").is_ok(),
                "{stem}/{name}: exactly one of `expect` and `error`"
            );
            if let Some(k) = spec.keys().find(|k| !CASE_KEYS.contains(&k.as_str())) {
                panic!("{stem}/{name}: unknown key {k:?}");
            }
            out.push(Case {
                file: stem.clone(),
                name,
                spec,
            });
        }
    }
    out
}

fn selected(case: &Case) -> bool {
    match std::env::var("PARQUETRY_CORPUS_FILTER") {
        Ok(f) if !f.trim().is_empty() => {
            let id = case.id();
            f.split(',')
                .map(str::trim)
                .any(|p| !p.is_empty() && id.contains(p))
        }
        _ => true,
    }
}

/// The request parameters of a case.
fn params(case: &Case) -> (String, Vec<(String, String)>) {
    let kind = case.str("kind").unwrap_or_else(|| "range".into());
    let path = match kind.as_str() {
        "range" => "/loki/api/v1/query_range".to_string(),
        "instant" => "/loki/api/v1/query".to_string(),
        "labels" => "/loki/api/v1/labels".to_string(),
        "label_values" => format!(
            "/loki/api/v1/label/{}/values",
            case.str("label")
                .expect("a label_values case names its `label`")
        ),
        "series" => "/loki/api/v1/series".to_string(),
        other => panic!("{}: unknown kind {other:?}", case.id()),
    };
    let keys: &[&str] = match kind.as_str() {
        "range" => &["start", "end", "step", "interval", "limit", "direction"],
        "instant" => &["time", "limit", "direction"],
        _ => &["start", "end"],
    };
    let mut p = Vec::new();
    if let Some(q) = case.str("query") {
        let name = if kind == "series" { "match[]" } else { "query" };
        p.push((name.to_string(), q));
    }
    for k in keys {
        if let Some(v) = case.str(k) {
            p.push((k.to_string(), v));
        }
    }
    (path, p)
}

/// Whether a case asks a metadata endpoint (label browser), whose `data` is a plain list.
fn is_metadata(case: &Case) -> bool {
    matches!(
        case.str("kind").as_deref(),
        Some("labels" | "label_values" | "series")
    )
}

/// Compares an answer (`data` of a 200 response) with the expectation in case form.
fn check(case: &Case, expect: &Value, data: &Value) -> Result<(), String> {
    if is_metadata(case) {
        let want = expect.get("data").cloned().unwrap_or(json!([]));
        let got = data.clone();
        let sorted = |v: &Value| -> Vec<String> {
            let mut k: Vec<String> = v
                .as_array()
                .map(|a| {
                    a.iter()
                        .map(|x| label_key(Some(x)) + &x.to_string())
                        .collect()
                })
                .unwrap_or_default();
            k.sort();
            k
        };
        let same = if case.str("kind").as_deref() == Some("series") {
            sorted(&want) == sorted(&got)
        } else {
            want == got || (want.as_array().is_some_and(|a| a.is_empty()) && got.is_null())
        };
        return if same {
            Ok(())
        } else {
            Err(format!(
                "data differs\n      expected: {want}\n      got:      {got}"
            ))
        };
    }
    let got_type = data["resultType"].as_str().unwrap_or("").to_string();
    let want_type = expect
        .get("resultType")
        .and_then(Value::as_str)
        .unwrap_or(&got_type)
        .to_string();
    let got = &data["result"];
    let want = expect.get("result").cloned().unwrap_or(json!([]));
    let verdict = if want_type != got_type {
        Err(format!(
            "resultType {want_type} expected, {got_type} returned"
        ))
    } else {
        compare(&want_type, &want, got, case.flag("ordered"))
    };
    verdict.map_err(|why| format!("{why}\n      expected: {want}\n      got:      {got}"))
}

/// `{a="1", b="2"}` with sorted names: the identity of a series or stream.
fn label_key(v: Option<&Value>) -> String {
    let Some(Value::Object(m)) = v else {
        return String::new();
    };
    let mut pairs: Vec<(&String, String)> = m
        .iter()
        .map(|(k, v)| (k, v.as_str().map_or_else(|| v.to_string(), str::to_string)))
        .collect();
    pairs.sort();
    let inner: Vec<String> = pairs.iter().map(|(k, v)| format!("{k}={v:?}")).collect();
    format!("{{{}}}", inner.join(", "))
}

fn series_key(v: &Value) -> String {
    label_key(v.get("stream").or_else(|| v.get("metric")))
}

/// Sample values: equal text, or a non-integral expected number matched within 1e-9.
fn value_eq(expected: &str, got: &str) -> bool {
    if expected == got {
        return true;
    }
    match (expected.parse::<f64>(), got.parse::<f64>()) {
        (Ok(e), Ok(g)) if e.is_finite() && e.fract() != 0.0 => {
            (e - g).abs() <= 1e-9 * e.abs().max(1.0)
        }
        _ => false,
    }
}

/// A sample `[ts, "v"]`: the timestamp numerically, the value by [`value_eq`].
fn sample_eq(e: &Value, g: &Value) -> bool {
    let (Some(e), Some(g)) = (e.as_array(), g.as_array()) else {
        return false;
    };
    e.len() == 2
        && g.len() == 2
        && e[0].as_f64().is_some()
        && e[0].as_f64() == g[0].as_f64()
        && matches!((e[1].as_str(), g[1].as_str()), (Some(a), Some(b)) if value_eq(a, b))
}

fn samples_eq(e: Option<&Value>, g: Option<&Value>) -> bool {
    match (e.and_then(Value::as_array), g.and_then(Value::as_array)) {
        (Some(e), Some(g)) => e.len() == g.len() && e.iter().zip(g).all(|(e, g)| sample_eq(e, g)),
        _ => false,
    }
}

/// Compares `data.result`, returning a short reason on mismatch.
fn compare(result_type: &str, expected: &Value, got: &Value, ordered: bool) -> Result<(), String> {
    if result_type == "scalar" {
        return if sample_eq(expected, got) {
            Ok(())
        } else {
            Err("scalar differs".into())
        };
    }
    let (Some(e), Some(g)) = (expected.as_array(), got.as_array()) else {
        return Err("result is not a list".into());
    };
    let mut e: Vec<&Value> = e.iter().collect();
    let mut g: Vec<&Value> = g.iter().collect();
    if e.len() != g.len() {
        return Err(format!("{} series expected, {} returned", e.len(), g.len()));
    }
    if !ordered {
        e.sort_by_key(|v| series_key(v));
        g.sort_by_key(|v| series_key(v));
    }
    for (e, g) in e.iter().zip(&g) {
        let (ek, gk) = (series_key(e), series_key(g));
        if ek != gk {
            return Err(format!("series {ek} expected, {gk} returned"));
        }
        let ok = match result_type {
            "streams" => e.get("values") == g.get("values"),
            "matrix" => samples_eq(e.get("values"), g.get("values")),
            "vector" => sample_eq(&e["value"], &g["value"]),
            other => return Err(format!("unknown resultType {other}")),
        };
        if !ok {
            return Err(format!("values of {ek} differ"));
        }
    }
    Ok(())
}

enum Outcome {
    Pass,
    Fail(String),
}

async fn run_case(client: &reqwest::Client, s: &TestServer, case: &Case) -> Outcome {
    let (path, params) = params(case);
    let mut req = match case.str("method").as_deref() {
        None | Some("GET") => client.get(s.url(&path)).query(&params),
        Some("POST") => client.post(s.url(&path)).form(&params),
        Some(other) => panic!("{}: unknown method {other:?}", case.id()),
    };
    if case.flag("categorize") {
        req = req.header("X-Loki-Response-Encoding-Flags", "categorize-labels");
    }
    let resp = match req.send().await {
        Ok(r) => r,
        Err(e) => return Outcome::Fail(format!("request failed: {e}")),
    };
    let status = resp.status().as_u16();
    let body = resp.text().await.unwrap_or_default();

    if let Some(err) = case.spec.get("error") {
        let want_status = err.get("status").and_then(Value::as_u64).unwrap_or(400) as u16;
        let want_text = err.get("contains").and_then(Value::as_str).unwrap_or("");
        return if status == want_status && body.contains(want_text) {
            Outcome::Pass
        } else {
            Outcome::Fail(format!(
                "expected error {want_status} containing {want_text:?}\n      got {status}: {body}"
            ))
        };
    }

    let expect = &case.spec["expect"];
    if status != 200 {
        return Outcome::Fail(format!(
            "expected 200\n      got {status}: {body}\n      expected: {}",
            expect.get("result").unwrap_or(&Value::Null)
        ));
    }
    let v: Value = match serde_json::from_str(&body) {
        Ok(v) => v,
        Err(e) => return Outcome::Fail(format!("invalid JSON ({e}): {body}")),
    };
    if v["data"]["stats"]["parquetry"]["leaves"]
        .as_u64()
        .is_some_and(|n| n > 0)
    {
        SPLIT_ANSWERS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }
    if v["data"]["stats"]["parquetry"]["timeBlocks"]
        .as_u64()
        .is_some_and(|n| n >= 2)
    {
        BLOCKED_ANSWERS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }
    match check(case, expect, &v["data"]) {
        Ok(()) => Outcome::Pass,
        Err(why) => Outcome::Fail(why),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logql_corpus() {
    run_corpus(CONFIG).await;
}

/// The same corpus with every log and metric query split by stream into up to 8 leaves
/// (`query_range.fanout_leaves`): the answers must not change.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logql_corpus_fanout() {
    run_corpus(&format!("{CONFIG}query_range:\n  fanout_leaves: 8\n")).await;
    // Only queries selecting two or more streams split; they must have been many.
    let split = SPLIT_ANSWERS.load(std::sync::atomic::Ordering::Relaxed);
    eprintln!("corpus answers computed by two or more leaves: {split}");
    assert!(
        split >= 100,
        "only {split} corpus answers were split into leaves"
    );
}

/// Answers whose `stats.parquetry.leaves` is above zero (only the fan-out pass has any).
static SPLIT_ANSWERS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// The same corpus with every metric range query that holds samples or series per line cut
/// into time blocks of one step (`time_block_memory: 1`, `time_block_min_lookbacks: 0`): the
/// answers must not change.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logql_corpus_time_blocks() {
    run_corpus(&format!(
        "{CONFIG}query_range:\n  time_block_memory: 1\n  time_block_min_lookbacks: 0\n"
    ))
    .await;
    let blocked = BLOCKED_ANSWERS.load(std::sync::atomic::Ordering::Relaxed);
    eprintln!("corpus answers evaluated in two or more time blocks: {blocked}");
    assert!(
        blocked >= 20,
        "only {blocked} corpus answers were evaluated in time blocks"
    );
}

/// Answers whose `stats.parquetry.timeBlocks` is two or more (only the time-block pass has any).
static BLOCKED_ANSWERS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

async fn run_corpus(config: &str) {
    let cases: Vec<Case> = load_cases().into_iter().filter(selected).collect();
    assert!(!cases.is_empty(), "no corpus case matches the filter");

    let s = TestServer::start(config).await;
    let client = reqwest::Client::new();
    let dataset: Value = serde_json::from_str(
        &std::fs::read_to_string(corpus_dir().join("dataset.json")).expect("dataset.json"),
    )
    .expect("dataset.json is JSON");
    s.push(&dataset["push"]).await;

    let (mut passed, mut failed, mut known, mut fixed) = (0, Vec::new(), Vec::new(), Vec::new());
    for case in &cases {
        let outcome = run_case(&client, &s, case).await;
        let known_failure = case.str("known_failure");
        let query = case.str("query").unwrap_or_default();
        match (outcome, known_failure) {
            (Outcome::Pass, None) => passed += 1,
            (Outcome::Pass, Some(reason)) => fixed.push(format!(
                "{}  (known_failure: {reason})\n      query: {query}",
                case.id()
            )),
            (Outcome::Fail(why), None) => {
                failed.push(format!("{}\n      query: {query}\n      {why}", case.id()))
            }
            (Outcome::Fail(why), Some(reason)) => known.push(format!(
                "{}: {reason}\n      query: {query}\n      {why}",
                case.id()
            )),
        }
    }
    s.stop().await;

    if !known.is_empty() {
        eprintln!("\n=== known failures ({}) ===", known.len());
        for k in &known {
            eprintln!("  {k}");
        }
    }
    if !fixed.is_empty() {
        eprintln!(
            "\n=== known failures that now pass: remove their known_failure ({}) ===",
            fixed.len()
        );
        for f in &fixed {
            eprintln!("  {f}");
        }
    }
    if !failed.is_empty() {
        eprintln!("\n=== failures ({}) ===", failed.len());
        for f in &failed {
            eprintln!("  {f}\n");
        }
    }
    eprintln!(
        "\ncorpus: {} cases, {passed} passed, {} failed, {} known failures, {} unexpectedly passing",
        cases.len(),
        failed.len(),
        known.len(),
        fixed.len()
    );
    assert!(
        failed.is_empty() && fixed.is_empty(),
        "{} corpus cases failed and {} known failures passed (see above)",
        failed.len(),
        fixed.len()
    );
}

// ---------------------------------------------------------------------------------------------
// Differential run against a reference Loki (docs/compatibility.md): not part of CI.
//
//   PARQUETRY_REFERENCE_LOKI=http://127.0.0.1:3190 \
//     cargo test -p parquetry-e2e --test corpus -- --ignored --nocapture compare_with_reference_loki
//
// Loki only answers from its ingesters for recent data, so the dataset and every time
// parameter are moved by a whole number of hours to the hour before last; both servers get the
// same shifted data and the same requests, and Loki's answer is taken as the expectation
// (compared as `logql_corpus` compares). PARQUETRY_CORPUS_FILTER applies;
// PARQUETRY_REFERENCE_REPORT=<file> writes every differing case with both answers.

/// Seconds from 1970-01-01 to the civil date `y-m-d` (proleptic Gregorian).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (m + if m > 2 { -3 } else { 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

/// A time parameter moved by `shift` seconds, in the format it was written in: RFC 3339
/// (`2024-01-01T00:01:40Z`), nanoseconds, or (fractional) seconds.
fn shift_time(v: &str, shift: i64) -> String {
    if let Some(rest) = v.strip_suffix('Z')
        && let [date, time] = rest.split('T').collect::<Vec<_>>()[..]
    {
        let d: Vec<i64> = date.split('-').filter_map(|x| x.parse().ok()).collect();
        let (hms, frac) = time.split_once('.').unwrap_or((time, ""));
        let t: Vec<i64> = hms.split(':').filter_map(|x| x.parse().ok()).collect();
        if d.len() == 3 && t.len() == 3 {
            let secs =
                days_from_civil(d[0], d[1], d[2]) * 86_400 + t[0] * 3600 + t[1] * 60 + t[2] + shift;
            let (y, m, dd) = civil_from_days(secs.div_euclid(86_400));
            let s = secs.rem_euclid(86_400);
            let frac = if frac.is_empty() {
                String::new()
            } else {
                format!(".{frac}")
            };
            return format!(
                "{y:04}-{m:02}-{dd:02}T{:02}:{:02}:{:02}{frac}Z",
                s / 3600,
                s / 60 % 60,
                s % 60
            );
        }
    }
    if v.len() >= 16
        && v.bytes().all(|b| b.is_ascii_digit())
        && let Ok(ns) = v.parse::<i64>()
    {
        return (ns + shift * 1_000_000_000).to_string();
    }
    match v.split_once('.') {
        Some((s, f)) if s.bytes().all(|b| b.is_ascii_digit()) && !s.is_empty() => {
            match s.parse::<i64>() {
                Ok(s) => format!("{}.{f}", s + shift),
                Err(_) => v.to_string(),
            }
        }
        _ => match v.parse::<i64>() {
            Ok(s) => (s + shift).to_string(),
            Err(_) => v.to_string(),
        },
    }
}

/// The corpus push body with every entry `shift` seconds later.
fn shifted_dataset(push: &Value, shift: i64) -> Value {
    let mut push = push.clone();
    if let Some(streams) = push["streams"].as_array_mut() {
        for s in streams {
            if let Some(values) = s["values"].as_array_mut() {
                for v in values {
                    if let Some(ts) = v[0].as_str() {
                        v[0] = Value::String(shift_time(ts, shift));
                    }
                }
            }
        }
    }
    push
}

async fn answer(client: &reqwest::Client, base: &str, case: &Case, shift: i64) -> (u16, String) {
    let (path, mut params) = params(case);
    for (k, v) in params.iter_mut() {
        if matches!(k.as_str(), "start" | "end" | "time") {
            *v = shift_time(v, shift);
        }
    }
    let url = format!("{base}{path}");
    let mut req = match case.str("method").as_deref() {
        Some("POST") => client.post(url).form(&params),
        _ => client.get(url).query(&params),
    };
    if case.flag("categorize") {
        req = req.header("X-Loki-Response-Encoding-Flags", "categorize-labels");
    }
    match req.send().await {
        Ok(r) => {
            let status = r.status().as_u16();
            (status, r.text().await.unwrap_or_default())
        }
        Err(e) => (0, format!("request failed: {e}")),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a running reference Loki (PARQUETRY_REFERENCE_LOKI)"]
async fn compare_with_reference_loki() {
    let Ok(loki) = std::env::var("PARQUETRY_REFERENCE_LOKI") else {
        eprintln!("PARQUETRY_REFERENCE_LOKI is not set: nothing to compare with");
        return;
    };
    let loki = loki.trim_end_matches('/').to_string();
    let cases: Vec<Case> = load_cases().into_iter().filter(selected).collect();
    let dataset: Value = serde_json::from_str(
        &std::fs::read_to_string(corpus_dir().join("dataset.json")).expect("dataset.json"),
    )
    .expect("dataset.json is JSON");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs() as i64;
    // The corpus starts at 2024-01-01T00:00:00Z; move it to the start of the hour before last.
    let shift = (now / 3600 - 1) * 3600 - 1_704_067_200;
    let push = shifted_dataset(&dataset["push"], shift);

    // Parquetry with its defaults (step-aligned ranges, as Loki), old samples accepted.
    let s = TestServer::start("limits_config:\n  reject_old_samples: false\n").await;
    let pq = s.url("");
    let pq = pq.trim_end_matches('/').to_string();
    let client = reqwest::Client::new();
    for base in [&loki, &pq] {
        let r = client
            .post(format!("{base}/loki/api/v1/push"))
            .header("Content-Type", "application/json")
            .body(push.to_string())
            .send()
            .await
            .expect("push");
        let status = r.status().as_u16();
        assert_eq!(
            status,
            204,
            "push to {base}: {}",
            r.text().await.unwrap_or_default()
        );
    }

    let (mut same, mut report) = (0usize, String::new());
    let mut differing = Vec::new();
    let mut recorder = recording().then(Recorder::default);
    for case in &cases {
        let (ls, lb) = answer(&client, &loki, case, shift).await;
        let (ps, pb) = answer(&client, &pq, case, shift).await;
        let verdict = if ls != ps {
            Err(format!("status {ls} from Loki, {ps} from Parquetry"))
        } else if ls != 200 {
            if pb.contains(&error_text(&lb)) {
                Ok(())
            } else {
                Err(format!("error text {:?} from Loki", lb.trim()))
            }
        } else {
            match (
                serde_json::from_str::<Value>(&lb),
                serde_json::from_str::<Value>(&pb),
            ) {
                (Ok(l), Ok(p)) => check(case, &expect_form(case, &l["data"], 0), &p["data"]),
                _ => Err("an answer is not JSON".into()),
            }
        };
        if let Some(rec) = recorder.as_mut() {
            rec.record(case, ls, &lb, shift, verdict.as_ref().err());
        }
        match verdict {
            Ok(()) => same += 1,
            Err(why) => {
                differing.push(format!("{}: {why}", case.id()));
                report.push_str(&format!(
                    "== {}\nquery: {}\n{why}\nloki ({ls}): {}\nparquetry ({ps}): {}\n\n",
                    case.id(),
                    case.str("query").unwrap_or_default(),
                    lb.chars().take(4000).collect::<String>(),
                    pb.chars().take(4000).collect::<String>(),
                ));
            }
        }
    }
    s.stop().await;
    if let Some(rec) = recorder {
        rec.write();
    }
    for d in &differing {
        eprintln!("  {d}");
    }
    if let Ok(path) = std::env::var("PARQUETRY_REFERENCE_REPORT") {
        std::fs::write(&path, &report).expect("write the report");
        eprintln!("details in {path}");
    }
    eprintln!(
        "\nreference Loki: {} cases, {same} answered as Loki, {} differently",
        cases.len(),
        differing.len()
    );
}

// ---------------------------------------------------------------------------------------------
// Recording: with PARQUETRY_RECORD=1 the comparison above also writes Loki's answer into each
// case's `expect` (or `error`) in its corpus file, timestamps moved back to 2024, and keeps a
// `known_failure` only on the cases where Parquetry still answers differently (a new one gets a
// placeholder reason to be replaced by the real one, see docs/compatibility.md). Comments,
// notes and queries are left as written: only those keys of each case are rewritten.

fn recording() -> bool {
    std::env::var("PARQUETRY_RECORD").is_ok_and(|v| v == "1")
}

/// A timestamp of Loki's answer moved back by `shift` seconds: nanosecond strings, second
/// numbers (possibly fractional) and the millisecond numbers of instant scalars.
fn unshift_ts(v: &Value, shift: i64) -> Value {
    match v {
        Value::String(ns) => match ns.parse::<i128>() {
            Ok(n) => Value::String((n - i128::from(shift) * 1_000_000_000).to_string()),
            Err(_) => v.clone(),
        },
        Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                let unit = if i > 100_000_000_000 { 1000 } else { 1 };
                json!(i - shift * unit)
            } else if let Some(f) = n.as_f64() {
                let unit = if f > 1e11 { 1000.0 } else { 1.0 };
                let x = f - shift as f64 * unit;
                // Fractions are steps of at most milliseconds: keep the written digits clean.
                let x = (x * 1000.0).round() / 1000.0;
                if x.fract() == 0.0 {
                    json!(x as i64)
                } else {
                    json!(x)
                }
            } else {
                v.clone()
            }
        }
        _ => v.clone(),
    }
}

/// A log line that is only a timestamp (`line_format "{{ __timestamp__ | unixEpoch }}"`), in
/// seconds, milliseconds or nanoseconds, moved back by `shift` seconds.
fn unshift_line(line: &Value, shift: i64) -> Value {
    let Some(n) = line.as_str().and_then(|t| t.parse::<i128>().ok()) else {
        return line.clone();
    };
    let unit: i128 = match line.as_str().map_or(0, str::len) {
        10 => 1,
        13 => 1_000,
        19 => 1_000_000_000,
        _ => return line.clone(),
    };
    Value::String((n - i128::from(shift) * unit).to_string())
}

/// Loki's `data.result` with its timestamps moved back to the dataset's time.
fn unshift_result(result_type: &str, result: &Value, shift: i64) -> Value {
    let pair = |p: &Value| -> Value {
        match p.as_array() {
            Some(a) if !a.is_empty() => {
                let mut a = a.clone();
                a[0] = unshift_ts(&a[0], shift);
                Value::Array(a)
            }
            _ => p.clone(),
        }
    };
    if result_type == "scalar" {
        return pair(result);
    }
    let Some(series) = result.as_array() else {
        return result.clone();
    };
    Value::Array(
        series
            .iter()
            .map(|s| {
                let mut s = s.clone();
                if let Some(values) = s.get("values").and_then(Value::as_array) {
                    let streams = s.get("stream").is_some();
                    s["values"] = Value::Array(
                        values
                            .iter()
                            .map(|v| {
                                let mut v = pair(v);
                                if streams {
                                    v[1] = unshift_line(&v[1], shift);
                                }
                                v
                            })
                            .collect(),
                    );
                }
                if let Some(v) = s.get("value") {
                    s["value"] = pair(v);
                }
                s
            })
            .collect(),
    )
}

/// A YAML scalar: plain when that reads back as the same string, else a JSON string (valid YAML).
fn yaml_str(s: &str) -> String {
    let plain = !s.is_empty()
        && s.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | '/'))
        && !matches!(
            s.to_ascii_lowercase().as_str(),
            "true" | "false" | "null" | "yes" | "no" | "on" | "off" | "y" | "n" | "nan" | "inf"
        );
    if plain {
        s.to_string()
    } else {
        Value::String(s.to_string()).to_string()
    }
}

/// One line of YAML flow style for a JSON value.
fn yaml_flow(v: &Value) -> String {
    match v {
        Value::String(s) => yaml_str(s),
        Value::Array(a) => format!(
            "[{}]",
            a.iter().map(yaml_flow).collect::<Vec<_>>().join(", ")
        ),
        Value::Object(m) => {
            let inner: Vec<String> = m
                .iter()
                .map(|(k, v)| format!("{}: {}", yaml_str(k), yaml_flow(v)))
                .collect();
            format!("{{{}}}", inner.join(", "))
        }
        other => other.to_string(),
    }
}

/// The part of an error body an answer must contain. A pipeline error names one failing
/// series, which Loki picks in map iteration order (any errored series of the failing step),
/// so only the text before the series is Loki's contract.
fn error_text(body: &str) -> String {
    let body = body.trim();
    match body.find("for series: '") {
        Some(i) if body.starts_with("pipeline error: '") => body[..i + 13].to_string(),
        _ => body.to_string(),
    }
}

/// Loki's `data` as a case's `expect`, timestamps moved back by `shift` seconds.
fn expect_form(case: &Case, data: &Value, shift: i64) -> Value {
    if is_metadata(case) {
        return json!({"data": data.as_array().cloned().unwrap_or_default()});
    }
    let rt = data["resultType"].as_str().unwrap_or("").to_string();
    json!({"resultType": rt, "result": unshift_result(&rt, &data["result"], shift)})
}

/// The `expect:` or `error:` block of a case (indented for a top-level list item).
fn answer_block(case: &Case, status: u16, body: &str, shift: i64) -> Vec<String> {
    let parsed = serde_json::from_str::<Value>(body).ok();
    let Some(v) = parsed.filter(|_| status == 200) else {
        return vec![
            "  error:".into(),
            format!("    status: {status}"),
            format!("    contains: {}", yaml_str(&error_text(body))),
        ];
    };
    let expect = expect_form(case, &v["data"], shift);
    let mut out = vec!["  expect:".to_string()];
    if let Some(rt) = expect.get("resultType").and_then(Value::as_str) {
        out.push(format!("    resultType: {rt}"));
    }
    let (key, list) = match expect.get("data") {
        Some(d) => ("data", d),
        None => ("result", &expect["result"]),
    };
    match list {
        Value::Array(items) if !items.is_empty() => {
            out.push(format!("    {key}:"));
            for s in items {
                let labels = s
                    .get("stream")
                    .map(|l| ("stream", l))
                    .or(s.get("metric").map(|l| ("metric", l)));
                let Some((lk, labels)) = labels else {
                    out.push(format!("    - {}", yaml_flow(s)));
                    continue;
                };
                out.push(format!("    - {lk}: {}", yaml_flow(labels)));
                if let Some(values) = s.get("values").and_then(Value::as_array) {
                    out.push("      values:".into());
                    for p in values {
                        out.push(format!("      - {}", yaml_flow(p)));
                    }
                }
                if let Some(p) = s.get("value") {
                    out.push(format!("      value: {}", yaml_flow(p)));
                }
            }
        }
        Value::Array(_) => out.push(format!("    {key}: []")),
        other => out.push(format!("    {key}: {}", yaml_flow(other))),
    }
    out
}

/// Rewrites the keys `expect`, `error` and `known_failure` of the named case in a corpus file.
fn rewrite_case(text: &str, name: &str, block: &[String], known: Option<&str>) -> String {
    let lines: Vec<&str> = text.lines().collect();
    let case_name = |l: &str| -> Option<String> {
        let rest = l.strip_prefix("- ")?;
        let m: serde_yaml::Value = serde_yaml::from_str(rest).ok()?;
        m.get("name")?.as_str().map(str::to_string)
    };
    let Some(begin) = lines
        .iter()
        .position(|l| case_name(l).as_deref() == Some(name))
    else {
        panic!("case {name} not found when recording");
    };
    let end = lines[begin + 1..]
        .iter()
        .position(|l| !l.starts_with(' ') && !l.trim().is_empty())
        .map_or(lines.len(), |i| begin + 1 + i);
    let mut kept: Vec<String> = Vec::new();
    let mut skipping = false;
    for l in &lines[begin..end] {
        let top_key = l
            .strip_prefix("  ")
            .filter(|r| !r.starts_with(' '))
            .and_then(|r| r.split(':').next());
        if let Some(k) = top_key {
            skipping = matches!(k, "expect" | "error" | "known_failure");
        }
        if !skipping {
            kept.push(l.to_string());
        }
    }
    while kept.last().is_some_and(|l| l.trim().is_empty()) {
        kept.pop();
    }
    if let Some(reason) = known {
        kept.push(format!("  known_failure: {}", yaml_str(reason)));
    }
    kept.extend(block.iter().cloned());
    kept.push(String::new());
    let mut out: Vec<String> = lines[..begin].iter().map(|l| l.to_string()).collect();
    out.extend(kept);
    out.extend(lines[end..].iter().map(|l| l.to_string()));
    let mut text = out.join("\n");
    text.push('\n');
    text
}

#[derive(Default)]
struct Recorder {
    files: std::collections::BTreeMap<String, String>,
    recorded: usize,
}

impl Recorder {
    fn record(
        &mut self,
        case: &Case,
        status: u16,
        body: &str,
        shift: i64,
        differs: Option<&String>,
    ) {
        if status == 0 {
            return;
        }
        let text = self.files.entry(case.file.clone()).or_insert_with(|| {
            std::fs::read_to_string(corpus_dir().join(format!("{}.yaml", case.file)))
                .expect("read corpus file")
        });
        let block = answer_block(case, status, body, shift);
        // An existing reason is kept; a new difference gets a placeholder to be explained.
        let known = differs.map(|why| {
            case.str("known_failure").unwrap_or_else(|| {
                format!(
                    "differs from the reference Loki: {}",
                    why.lines().next().unwrap_or("")
                )
            })
        });
        *text = rewrite_case(text, &case.name, &block, known.as_deref());
        self.recorded += 1;
    }

    fn write(self) {
        for (file, text) in &self.files {
            std::fs::write(corpus_dir().join(format!("{file}.yaml")), text)
                .expect("write corpus file");
        }
        eprintln!("recorded {} answers from the reference Loki", self.recorded);
    }
}

#[test]
fn recording_rewrites_only_the_answer() {
    let text = "# head\ncases:\n\n- name: a\n  query: '{x=\"1\"}'\n  known_failure: old\n  expect:\n    resultType: streams\n    result: []\n\n- name: b\n  query: q\n  error:\n    status: 400\n    contains: x\n";
    let case = |kind: &str| Case {
        file: "t".into(),
        name: "a".into(),
        spec: json!({"kind": kind})
            .as_object()
            .cloned()
            .unwrap_or_default(),
    };
    let block = answer_block(&case("range"), 400, "parse error : boom\n", 0);
    let out = rewrite_case(text, "b", &block, None);
    assert!(
        out.starts_with(
            "# head\ncases:\n\n- name: a\n  query: '{x=\"1\"}'\n  known_failure: old\n"
        )
    );
    assert!(out.ends_with(
        "- name: b\n  query: q\n  error:\n    status: 400\n    contains: \"parse error : boom\"\n\n"
    ));
    let body = r#"{"status":"success","data":{"resultType":"matrix","result":[{"metric":{"app":"api","true":"yes"},"values":[[3610.5,"1"],[3620,"2"]]}]}}"#;
    let block = answer_block(&case("range"), 200, body, 3600);
    let out = rewrite_case(text, "a", &block, Some("differs"));
    let doc: serde_yaml::Value = serde_yaml::from_str(&out).expect("valid YAML");
    let a: Value = serde_json::to_value(&doc["cases"][0]).expect("JSON");
    assert_eq!(a["known_failure"], "differs");
    assert_eq!(
        a["expect"],
        json!({"resultType": "matrix", "result": [{"metric": {"app": "api", "true": "yes"}, "values": [[10.5, "1"], [20, "2"]]}]})
    );
    assert_eq!(
        unshift_ts(&json!("7200000000000"), 3600),
        json!("3600000000000")
    );
    assert_eq!(
        unshift_ts(&json!(1_795_988_400_000_i64), 3600),
        json!(1_795_984_800_000_i64)
    );
}

#[test]
fn time_shifting() {
    assert_eq!(
        shift_time("2024-01-01T00:01:40Z", 3600),
        "2024-01-01T01:01:40Z"
    );
    assert_eq!(
        shift_time("2024-01-01T00:00:00Z", 86_400 * 366 + 7200),
        "2025-01-01T02:00:00Z"
    );
    assert_eq!(
        shift_time("2024-01-01T00:00:00.5Z", 60),
        "2024-01-01T00:01:00.5Z"
    );
    assert_eq!(shift_time("1704067260000000000", 10), "1704067270000000000");
    assert_eq!(shift_time("1704067246.25", 10), "1704067256.25");
    assert_eq!(shift_time("1704067246", 10), "1704067256");
    assert_eq!(shift_time("now", 10), "now");
}
