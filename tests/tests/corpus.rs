//! The LogQL conformance corpus: `tests/corpus/dataset.json` is pushed once to a real server,
//! then every case of `tests/corpus/*.yaml` runs over HTTP (`query_range` or `query`) and its
//! `data.result` is compared with the expected one, derived from Loki's documented semantics
//! (see tests/corpus/README.md).
//!
//! A case file holds optional `defaults` (merged into each case) and `cases`. A case has:
//! - `name`, `query`, `kind` (`range` or `instant`);
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

/// Raw step grid (so results follow `start + k·step <= end`), and the 2024 dataset accepted.
const CONFIG: &str =
    "limits_config:\n  reject_old_samples: false\nquery_range:\n  align_to_step_grid: false\n";

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
            assert!(
                spec.contains_key("expect") != spec.contains_key("error"),
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
        "range" => "/loki/api/v1/query_range",
        "instant" => "/loki/api/v1/query",
        other => panic!("{}: unknown kind {other:?}", case.id()),
    };
    let keys: &[&str] = if kind == "range" {
        &["start", "end", "step", "interval", "limit", "direction"]
    } else {
        &["time", "limit", "direction"]
    };
    let mut p = vec![("query".to_string(), case.str("query").expect("query"))];
    for k in keys {
        if let Some(v) = case.str(k) {
            p.push((k.to_string(), v));
        }
    }
    (path.to_string(), p)
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
    let got_type = v["data"]["resultType"].as_str().unwrap_or("").to_string();
    let want_type = expect
        .get("resultType")
        .and_then(Value::as_str)
        .unwrap_or(&got_type)
        .to_string();
    let got = &v["data"]["result"];
    let want = expect.get("result").cloned().unwrap_or(json!([]));
    let verdict = if want_type != got_type {
        Err(format!(
            "resultType {want_type} expected, {got_type} returned"
        ))
    } else {
        compare(&want_type, &want, got, case.flag("ordered"))
    };
    match verdict {
        Ok(()) => Outcome::Pass,
        Err(why) => Outcome::Fail(format!(
            "{why}\n      expected: {want}\n      got:      {got}"
        )),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logql_corpus() {
    let cases: Vec<Case> = load_cases().into_iter().filter(selected).collect();
    assert!(!cases.is_empty(), "no corpus case matches the filter");

    let s = TestServer::start(CONFIG).await;
    let client = reqwest::Client::new();
    let dataset: Value = serde_json::from_str(
        &std::fs::read_to_string(corpus_dir().join("dataset.json")).expect("dataset.json"),
    )
    .expect("dataset.json is JSON");
    let r = client
        .post(s.url("/loki/api/v1/push"))
        .header("Content-Type", "application/json")
        .body(dataset["push"].to_string())
        .send()
        .await
        .expect("push");
    let status = r.status().as_u16();
    assert_eq!(status, 204, "push: {}", r.text().await.unwrap_or_default());

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
    for case in &cases {
        let (ls, lb) = answer(&client, &loki, case, shift).await;
        let (ps, pb) = answer(&client, &pq, case, shift).await;
        let verdict = if ls != ps {
            Err(format!("status {ls} from Loki, {ps} from Parquetry"))
        } else if ls != 200 {
            Ok(())
        } else {
            match (
                serde_json::from_str::<Value>(&lb),
                serde_json::from_str::<Value>(&pb),
            ) {
                (Ok(l), Ok(p)) => {
                    let lt = l["data"]["resultType"].as_str().unwrap_or("");
                    let pt = p["data"]["resultType"].as_str().unwrap_or("");
                    if lt != pt {
                        Err(format!("resultType {lt} from Loki, {pt} from Parquetry"))
                    } else {
                        compare(
                            lt,
                            &l["data"]["result"],
                            &p["data"]["result"],
                            case.flag("ordered"),
                        )
                    }
                }
                _ => Err("an answer is not JSON".into()),
            }
        };
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
