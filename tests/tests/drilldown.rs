//! Grafana Logs Drilldown over HTTP: `detected_fields`, `detected_field/<name>/values`,
//! `detected_labels`, `drilldown-limits`, and the exact requests Drilldown sends to the query
//! API (ISO and nanosecond times, `step=<n>ms`, `X-Query-Tags`, the landing-page volume, the
//! level tiles and field breakdowns).
//!
//! `tests/corpus/drilldown/` holds the dataset, the requests and a reference Loki's answers to
//! them (`loki.json`, recorded by `record.py`). [`replay_against_lokis_answers`] sends every
//! request here and compares the answers with Loki's: same status, same error text, and the
//! same fields, types, parsers, JSON paths, cardinalities, values, labels and samples (order
//! aside, since Loki's order is random).

use std::collections::BTreeMap;
use std::path::PathBuf;

use parquetry_e2e::{NO_PARAMS, TestServer, now_ns};
use serde_json::{Value, json};

const CONFIG: &str = "limits_config:\n  reject_old_samples: false\n";

fn corpus() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("corpus/drilldown")
}

fn read_json(name: &str) -> Value {
    let text = std::fs::read_to_string(corpus().join(name)).expect(name);
    serde_json::from_str(&text).expect(name)
}

/// A whole minute about 15 minutes ago, in seconds: metric buckets of a minute fall alike
/// relative to it on every run, here and when Loki's answers were recorded.
fn pick_base() -> i64 {
    (now_ns() / 1_000_000_000 - 900) / 60 * 60
}

/// `YYYY-MM-DDTHH:MM:SS.000Z`, as JavaScript's `toISOString()` writes it.
fn iso(secs: i64) -> String {
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.000Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Pushes the dataset with its offsets turned into times after `base`.
async fn push_dataset(s: &TestServer, base: i64) {
    let mut push = read_json("dataset.json")["push"].clone();
    for stream in push["streams"].as_array_mut().unwrap() {
        for v in stream["values"].as_array_mut().unwrap() {
            let off: i64 = v[0].as_str().unwrap().parse().unwrap();
            v[0] = json!(((base + off) * 1_000_000_000).to_string());
        }
    }
    s.push(&push).await;
}

fn substitute(v: &str, base: i64) -> String {
    match v {
        "{start_iso}" => iso(base),
        "{end_iso}" => iso(base + 300),
        "{start_ns}" => (base * 1_000_000_000).to_string(),
        "{end_ns}" => ((base + 300) * 1_000_000_000).to_string(),
        other => other.to_string(),
    }
}

/// Sends one request of `requests.json`; the body as JSON when it is JSON, else as a string.
async fn send(s: &TestServer, req: &Value, base: i64) -> (u16, Value) {
    let params: Vec<(String, String)> = req["params"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.clone(), substitute(v.as_str().unwrap(), base)))
        .collect();
    let mut r = reqwest::Client::new()
        .get(s.url(req["path"].as_str().unwrap()))
        .query(&params);
    if let Some(h) = req["headers"].as_object() {
        for (k, v) in h {
            r = r.header(k.as_str(), v.as_str().unwrap());
        }
    }
    let resp = r.send().await.unwrap();
    let status = resp.status().as_u16();
    let text = resp.text().await.unwrap();
    let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
    (status, body)
}

/// An answer made comparable: lists Loki returns in random order sorted, times made relative
/// to the dataset's base, query statistics dropped.
fn normalize(mut v: Value, base: i64) -> Value {
    if let Some(o) = v.as_object_mut() {
        if let Some(fields) = o.get_mut("fields").and_then(Value::as_array_mut) {
            fields.sort_by_key(|f| f["label"].as_str().unwrap_or_default().to_string());
        }
        if let Some(labels) = o.get_mut("detectedLabels").and_then(Value::as_array_mut) {
            labels.sort_by_key(|f| f["label"].as_str().unwrap_or_default().to_string());
        }
        if let Some(values) = o.get_mut("values").and_then(Value::as_array_mut) {
            values.sort_by_key(|x| x.to_string());
        }
        if let Some(data) = o.get_mut("data").and_then(Value::as_object_mut) {
            data.remove("stats");
            // A vector's order means something (volume: largest first); a matrix's or streams'
            // order does not.
            let ordered = data["resultType"] == "vector";
            if let Some(result) = data.get_mut("result").and_then(Value::as_array_mut) {
                for series in result.iter_mut() {
                    relative_times(series, base);
                }
                if !ordered {
                    result.sort_by_key(|x| x["metric"].to_string() + &x["stream"].to_string());
                }
            }
        }
    }
    v
}

fn relative_times(series: &mut Value, base: i64) {
    let shift = |p: &mut Value| {
        if let Some(t) = p[0].as_i64() {
            p[0] = json!(t - base);
        } else if let Some(t) = p[0].as_str().and_then(|t| t.parse::<i64>().ok()) {
            p[0] = json!((t - base * 1_000_000_000).to_string());
        }
    };
    if let Some(points) = series["values"].as_array_mut() {
        points.iter_mut().for_each(shift);
    }
    if series["value"].is_array() {
        shift(&mut series["value"]);
    }
}

/// The keys of an object, recursively for objects, to compare shapes whose values differ.
fn shape(v: &Value) -> Value {
    match v {
        Value::Object(o) => Value::Object(o.iter().map(|(k, v)| (k.clone(), shape(v))).collect()),
        Value::Array(_) => json!("array"),
        Value::String(_) => json!("string"),
        Value::Number(_) => json!("number"),
        Value::Bool(_) => json!("bool"),
        Value::Null => json!("null"),
    }
}

/// The label sets of a result, in answer order (volume is sorted by size, largest first).
fn series(v: &Value) -> Vec<Value> {
    v["data"]["result"]
        .as_array()
        .map(|r| r.iter().map(|s| s["metric"].clone()).collect())
        .unwrap_or_default()
}

fn count(v: &Value) -> (usize, Value) {
    let n = v["fields"]
        .as_array()
        .or(v["values"].as_array())
        .map_or(0, Vec::len);
    (n, v["limit"].clone())
}

/// Requests whose answer deliberately differs from Loki's, with the reason (also listed in
/// docs/grafana.md). The replay checks these still get a 200 with the expected keys.
const DIFFERENCES: &[(&str, &str)] = &[(
    "limits",
    "our own limits and version: compared by shape (Loki's keys, their JSON types)",
)];

#[tokio::test]
async fn replay_against_lokis_answers() {
    let s = TestServer::start(CONFIG).await;
    let base = pick_base();
    push_dataset(&s, base).await;
    let loki = read_json("loki.json");
    let loki_base = loki["base"].as_i64().unwrap();
    let mut failures = Vec::new();
    let requests = read_json("requests.json");
    for req in requests.as_array().unwrap() {
        let name = req["name"].as_str().unwrap();
        let want = &loki[name];
        let (status, body) = send(&s, req, base).await;
        let want_status = want["status"].as_u64().unwrap() as u16;
        if status != want_status {
            failures.push(format!(
                "{name}: status {status}, Loki {want_status}: {body}"
            ));
            continue;
        }
        let got = normalize(body, base);
        let expected = normalize(want["body"].clone(), loki_base);
        let same = match req["compare"].as_str().unwrap() {
            "count" => count(&got) == count(&expected),
            "shape" => shape(&got) == shape(&expected),
            "series" => series(&got) == series(&expected),
            // Error bodies are text; Loki's may end in a newline.
            _ if got.is_string() => got.as_str().map(str::trim) == expected.as_str().map(str::trim),
            _ => got == expected,
        };
        if !same && !DIFFERENCES.iter().any(|(n, _)| *n == name) {
            failures.push(format!("{name}:\n  ours: {got}\n  Loki: {expected}"));
        }
    }
    s.stop().await;
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[tokio::test]
async fn fields_labels_and_values_on_the_dataset() {
    let s = TestServer::start(CONFIG).await;
    let base = pick_base();
    push_dataset(&s, base).await;
    let (start, end) = (iso(base), iso(base + 300));
    let range = [("start", start.as_str()), ("end", end.as_str())];

    let mut p = range.to_vec();
    p.push(("query", r#"{service_name="api"}"#));
    let (code, v) = s.get_json("/loki/api/v1/detected_fields", &p).await;
    assert_eq!(code, 200, "{v}");
    let fields: BTreeMap<String, Value> = v["fields"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| (f["label"].as_str().unwrap().to_string(), f.clone()))
        .collect();
    assert_eq!(
        fields["status"],
        json!({"label":"status","type":"int","cardinality":5,"parsers":["json","logfmt"],"jsonPath":["status"]})
    );
    assert_eq!(
        fields["trace_id"],
        json!({"label":"trace_id","type":"string","cardinality":13,"parsers":null})
    );
    assert_eq!(fields["user_id"]["jsonPath"], json!(["user", "id"]));
    assert_eq!(fields["bytes"]["type"], "bytes");
    assert_eq!(fields["duration"]["type"], "duration");
    assert_eq!(fields["ok"]["type"], "boolean");
    assert_eq!(fields["latency"]["type"], "float");
    assert_eq!(fields["env_extracted"]["parsers"], json!(["logfmt"]));
    assert!(!fields.contains_key("tags"), "arrays are not fields");
    assert_eq!(v["limit"], 1000);

    // Only the newest lines are sampled: the three newest are JSON lines.
    let mut p2 = p.clone();
    p2.push(("line_limit", "3"));
    let (_, v) = s.get_json("/loki/api/v1/detected_fields", &p2).await;
    let labels: Vec<&str> = v["fields"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["label"].as_str().unwrap())
        .collect();
    assert!(
        !labels.contains(&"msg") && labels.contains(&"user_id"),
        "{labels:?}"
    );

    let (_, v) = s
        .get_json("/loki/api/v1/detected_field/bytes/values", &p)
        .await;
    assert_eq!(v, json!({"values":["1.5kB"],"limit":1000}));

    let mut p3 = range.to_vec();
    p3.push(("query", ""));
    let (code, v) = s.get_json("/loki/api/v1/detected_labels", &p3).await;
    assert_eq!(code, 200);
    assert_eq!(
        v,
        json!({"detectedLabels":[
            {"label":"canary","cardinality":2},
            {"label":"env","cardinality":2},
            {"label":"pod","cardinality":2},
            {"label":"service_name","cardinality":2}]}),
        "session (UUIDs) and shard (numbers) are left out, pod (static) and canary (0/1) kept"
    );
    s.stop().await;
}

#[tokio::test]
async fn bad_input_gets_lokis_status_and_text() {
    let s = TestServer::start(CONFIG).await;
    for (path, params, want) in [
        (
            "/loki/api/v1/detected_fields",
            vec![("query", r#"{a="b"}"#), ("line_limit", "-5")],
            "limit must be a positive value",
        ),
        (
            "/loki/api/v1/detected_fields",
            vec![("query", r#"{a="b"}"#), ("line_limit", "5001")],
            "max entries limit per query exceeded, limit > max_entries_limit_per_query (5001 > 5000)",
        ),
        (
            "/loki/api/v1/detected_fields",
            vec![("query", r#"{a="b"} | json"#), ("step", "0")],
            "zero or negative query resolution step widths are not accepted. Try a positive integer",
        ),
        (
            "/loki/api/v1/detected_field/x/values",
            vec![("query", r#"sum(rate({a="b"}[1m]))"#)],
            "only log selector is supported",
        ),
    ] {
        let (code, body) = s.get_json(path, &params).await;
        assert_eq!((code, body.as_str().map(str::trim)), (400, Some(want)));
    }
    // Empty storage: Loki's empty answers.
    let (code, v) = s
        .get_json("/loki/api/v1/detected_fields", &[("query", r#"{a="b"}"#)])
        .await;
    assert_eq!((code, v), (200, json!({})));
    let (code, v) = s.get_json("/loki/api/v1/detected_labels", NO_PARAMS).await;
    assert_eq!((code, v), (200, json!({})));
    s.stop().await;
}

#[tokio::test]
async fn drilldown_limits_shape() {
    let s = TestServer::start(CONFIG).await;
    let (code, v) = s.get_json("/loki/api/v1/drilldown-limits", NO_PARAMS).await;
    assert_eq!(code, 200, "{v}");
    assert_eq!(v["limits"]["max_entries_limit_per_query"], 5000);
    assert_eq!(v["limits"]["max_query_length"], "30d1h");
    assert_eq!(v["limits"]["query_timeout"], "1m");
    assert_eq!(v["limits"]["volume_enabled"], true);
    // Drilldown shows its Patterns tab on this flag: it must say whether the route answers.
    let (patterns, _) = s
        .get_json(
            "/loki/api/v1/patterns",
            &[("query", r#"{service_name="api"}"#)],
        )
        .await;
    assert_eq!(v["pattern_ingester_enabled"], json!(patterns != 404));
    assert!(v["version"].is_string());
    s.stop().await;
}

/// Loki's own client against this server. Skipped, with a message, without the binary.
#[tokio::test]
async fn logcli_detected_fields() {
    let Some(home) = std::env::var_os("HOME") else {
        eprintln!("skipped: HOME is not set");
        return;
    };
    let logcli = PathBuf::from(home).join(".cache/reference-loki/bin/logcli");
    if !logcli.exists() {
        eprintln!("skipped: no logcli at {}", logcli.display());
        return;
    }
    let s = TestServer::start(CONFIG).await;
    let base = pick_base();
    push_dataset(&s, base).await;
    let out = tokio::process::Command::new(&logcli)
        .args([
            "--quiet",
            &format!("--addr={}", s.base),
            "detected-fields",
            "--since=1h",
            r#"{service_name="api"}"#,
        ])
        .output()
        .await
        .expect("run logcli");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("label: status\t\ttype: int\t\tcardinality: 5"),
        "{stdout}"
    );
    assert!(
        stdout.contains("label: duration\t\ttype: duration\t\tcardinality: 20"),
        "{stdout}"
    );
    let out = tokio::process::Command::new(&logcli)
        .args([
            "--quiet",
            &format!("--addr={}", s.base),
            "detected-fields",
            "--since=1h",
            r#"{service_name="api"}"#,
            "bytes",
        ])
        .output()
        .await
        .expect("run logcli");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("1.5kB"), "{stdout}");
    s.stop().await;
}
