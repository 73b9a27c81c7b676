//! `/loki/api/v1/patterns` over HTTP: known generated lines give the expected patterns, levels
//! and per-step counts; bad input gives Loki's statuses and messages; and the pattern set
//! matches what a reference Loki's pattern ingester answered for the same lines — the
//! hand-made families below and `parquetry-loggen`'s realistic services
//! (`tests/fixtures/loki/patterns.json`).
//!
//! Re-record the fixture against a reference Loki with its pattern ingester enabled:
//! `PARQUETRY_RECORD_LOKI=http://127.0.0.1:3100 cargo test -p parquetry-e2e --test patterns
//! record_loki_patterns -- --ignored`.

use std::collections::BTreeMap;

use parquetry_e2e::{TestEntry, TestServer, now_ns, protobuf_body};
use serde_json::{Value, json};

const S: i64 = 1_000_000_000;
const FIXTURE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/loki/patterns.json");

/// One generated line: its stream, time, text, and the pattern family it belongs to.
struct Line {
    stream: &'static str,
    ts: i64,
    text: String,
    family: &'static str,
}

const WEB_1: &str = r#"{service_name="shop", app="web", pod="web-1"}"#;
const WEB_2: &str = r#"{service_name="shop", app="web", pod="web-2"}"#;
const API: &str = r#"{service_name="shop", app="api", pod="api-1"}"#;
const WORKER: &str = r#"{service_name="shop", app="worker", pod="worker-1"}"#;

/// The expected pattern of each family, its level, and the family's line count.
const FAMILIES: [(&str, &str, &str, u64); 6] = [
    ("items", "INFO GET <_> completed in <_>", "info", 75),
    (
        "declined",
        "ERROR payment <_> declined: card expired",
        "error",
        35,
    ),
    // Ten lines: pruned (fewer than 30).
    ("cache", "WARN cache miss for key <_>", "warn", 10),
    (
        "orders",
        r#"level=info msg="request done" method=GET path=<_> status=200 duration=<_>"#,
        "info",
        50,
    ),
    (
        "upstream",
        r#"level=error msg="upstream failed" upstream=inventory attempt=<_>"#,
        "error",
        30,
    ),
    ("jobs", "<_>job <_> retried after <_>", "warn", 40),
];

/// Deterministic lines from `t0` (ns, minute-aligned), two seconds apart per stream, so they
/// span several minutes and the per-step counts differ between buckets.
fn dataset(t0: i64) -> Vec<Line> {
    let mut out = Vec::new();
    let mut push = |stream, i: i64, text: String, family| {
        out.push(Line {
            stream,
            ts: t0 + i * 2 * S + 1_000_000,
            text,
            family,
        })
    };
    let (mut w1, mut w2, mut api, mut worker) = (0i64, 0i64, 0i64, 0i64);
    for i in 0..45 {
        push(
            WEB_1,
            w1,
            format!(
                "INFO GET /api/items/{} completed in {}ms",
                1000 + i * 7,
                i % 17 + 1
            ),
            "items",
        );
        w1 += 1;
    }
    for i in 0..35 {
        push(
            WEB_1,
            w1,
            format!("ERROR payment {} declined: card expired", 70_000 + i * 13),
            "declined",
        );
        w1 += 1;
    }
    for i in 0..10 {
        push(
            WEB_1,
            w1,
            format!("WARN cache miss for key session:{}", 500 + i),
            "cache",
        );
        w1 += 1;
    }
    for i in 0..30 {
        push(
            WEB_2,
            w2,
            format!(
                "INFO GET /api/items/{} completed in {}ms",
                5000 + i * 3,
                i % 9 + 2
            ),
            "items",
        );
        w2 += 1;
    }
    for i in 0..50 {
        push(
            API,
            api,
            format!(
                r#"level=info msg="request done" method=GET path=/v1/orders/{} status=200 duration={}ms"#,
                300 + i,
                i % 23 + 1
            ),
            "orders",
        );
        api += 1;
    }
    for i in 0..30 {
        push(
            API,
            api,
            format!(
                r#"level=error msg="upstream failed" upstream=inventory attempt={}"#,
                i % 3 + 1
            ),
            "upstream",
        );
        api += 1;
    }
    for i in 0..40 {
        push(
            WORKER,
            worker,
            format!(
                r#"{{"level":"warn","msg":"job {} retried after {}s","queue":"emails"}}"#,
                9000 + i,
                i % 5 + 1
            ),
            "jobs",
        );
        worker += 1;
    }
    out
}

fn body(lines: &[Line]) -> Vec<u8> {
    let mut by_stream: BTreeMap<&str, Vec<TestEntry<'_>>> = BTreeMap::new();
    for l in lines {
        by_stream
            .entry(l.stream)
            .or_default()
            .push((l.ts, l.text.as_str(), vec![]));
    }
    let streams: Vec<_> = by_stream.into_iter().collect();
    protobuf_body(&streams)
}

async fn push(base: &str, lines: &[Line]) {
    push_body(base, body(lines)).await;
}

async fn push_body(base: &str, body: Vec<u8>) {
    let r = reqwest::Client::new()
        .post(format!("{base}/loki/api/v1/push"))
        .header("Content-Type", "application/x-protobuf")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 204, "{}", r.text().await.unwrap());
}

/// Realistic lines: `parquetry-loggen`'s six services (nginx-, JSON- and logfmt-shaped, with
/// levels, paths, statuses, durations and trace ids), 12 streams of 300 lines a second apart.
fn loggen_body(t0: i64) -> Vec<u8> {
    let streams = parquetry_loggen::LogGen::new(7, 12, t0, S).batch(300);
    let labels: Vec<String> = streams.iter().map(|s| s.label_text()).collect();
    let entries: Vec<Vec<TestEntry<'_>>> = streams
        .iter()
        .map(|s| {
            s.entries
                .iter()
                .map(|e| (e.ts_ns, e.line.as_str(), vec![]))
                .collect()
        })
        .collect();
    let streams: Vec<(&str, Vec<_>)> = labels.iter().map(String::as_str).zip(entries).collect();
    protobuf_body(&streams)
}

fn loggen_params(t0: i64) -> Vec<(&'static str, String)> {
    vec![
        ("query", r#"{namespace="shop"}"#.to_string()),
        ("start", (t0 - 60 * S).to_string()),
        ("end", (t0 + 10 * 60 * S).to_string()),
        ("step", "60s".to_string()),
    ]
}

async fn patterns(base: &str, params: &[(&str, String)]) -> (u16, String) {
    let r = reqwest::Client::new()
        .get(format!("{base}/loki/api/v1/patterns"))
        .query(params)
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

/// Ten minutes ago, on a minute boundary: recent enough for a pattern ingester.
fn minute_aligned_t0() -> i64 {
    let t = now_ns() - 10 * 60 * S;
    t - t.rem_euclid(60 * S)
}

fn query_params(t0: i64, step: &str) -> Vec<(&'static str, String)> {
    vec![
        ("query", r#"{service_name="shop"}"#.to_string()),
        ("start", (t0 - 60 * S).to_string()),
        ("end", (t0 + 10 * 60 * S).to_string()),
        ("step", step.to_string()),
    ]
}

/// `(pattern, level) → [(seconds, count)]` of an answer, checking its shape on the way.
fn series(body: &str) -> BTreeMap<(String, String), Vec<(i64, u64)>> {
    let v: Value = serde_json::from_str(body).unwrap();
    assert_eq!(v["status"], "success", "{body}");
    let mut out = BTreeMap::new();
    for s in v["data"].as_array().unwrap() {
        let samples = s["samples"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| (p[0].as_i64().unwrap(), p[1].as_u64().unwrap()))
            .collect();
        let key = (
            s["pattern"].as_str().unwrap().to_string(),
            s["level"].as_str().unwrap().to_string(),
        );
        assert!(
            out.insert(key, samples).is_none(),
            "duplicate series: {body}"
        );
    }
    out
}

#[tokio::test]
async fn generated_lines_give_expected_patterns_and_counts_per_step() {
    let s = TestServer::start("").await;
    let t0 = minute_aligned_t0();
    let lines = dataset(t0);
    push(&s.base, &lines).await;

    let (code, body) = patterns(&s.base, &query_params(t0, "60s")).await;
    assert_eq!(code, 200, "{body}");
    let got = series(&body);
    // Data order: largest total first.
    let v: Value = serde_json::from_str(&body).unwrap();
    let totals: Vec<u64> = v["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            s["samples"]
                .as_array()
                .unwrap()
                .iter()
                .map(|p| p[1].as_u64().unwrap())
                .sum()
        })
        .collect();
    assert!(totals.windows(2).all(|w| w[0] >= w[1]), "{totals:?}");

    for (family, pattern, level, n) in FAMILIES {
        // Expected per-minute counts straight from the generator.
        let mut want: BTreeMap<i64, u64> = BTreeMap::new();
        for l in lines.iter().filter(|l| l.family == family) {
            let sec = l.ts / S;
            *want.entry(sec - sec.rem_euclid(60)).or_default() += 1;
        }
        let want: Vec<(i64, u64)> = want.into_iter().collect();
        assert_eq!(want.iter().map(|(_, c)| c).sum::<u64>(), n);
        let key = (pattern.to_string(), level.to_string());
        if n < 30 {
            assert!(!got.contains_key(&key), "{family} should be pruned: {body}");
        } else {
            assert_eq!(got.get(&key), Some(&want), "{family}: {body}");
        }
    }
    assert_eq!(got.len(), 5, "{body}");

    // Another step re-buckets the same counts: 10 s steps (the minimum), and 5 s clamps to 10 s.
    for step in ["10s", "5s", "10"] {
        let (code, body) = patterns(&s.base, &query_params(t0, step)).await;
        assert_eq!(code, 200, "{body}");
        let got = series(&body);
        let key = (
            "ERROR payment <_> declined: card expired".to_string(),
            "error".to_string(),
        );
        let samples = &got[&key];
        assert!(samples.iter().all(|(t, _)| t % 10 == 0), "{samples:?}");
        assert_eq!(samples.iter().map(|(_, c)| c).sum::<u64>(), 35);
        assert!(samples.iter().all(|(_, c)| *c <= 5), "{samples:?}");
    }

    // A narrower selector sees only its streams; a range with no lines has no patterns.
    let mut p = query_params(t0, "60s");
    p[0].1 = r#"{service_name="shop", app="api"}"#.into();
    let (code, body) = patterns(&s.base, &p).await;
    assert_eq!(code, 200);
    let keys: Vec<String> = series(&body).into_keys().map(|(p, _)| p).collect();
    assert_eq!(keys.len(), 2, "{body}");
    assert!(keys.iter().all(|k| k.starts_with("level=")), "{keys:?}");
    let p = vec![
        ("query", r#"{service_name="shop"}"#.to_string()),
        ("start", (t0 - 3600 * S).to_string()),
        ("end", (t0 - 1800 * S).to_string()),
    ];
    let (code, body) = patterns(&s.base, &p).await;
    assert_eq!(
        (code, body.trim_end()),
        (200, r#"{"status":"success","data":[]}"#)
    );
    s.stop().await;
}

#[tokio::test]
async fn bad_input_answers_like_loki() {
    let s = TestServer::start("").await;
    let q = |query: &str, extra: &[(&'static str, &str)]| {
        let mut p = vec![("query", query.to_string())];
        p.extend(extra.iter().map(|(k, v)| (*k, v.to_string())));
        p
    };
    let empty_compatible = "parse error : queries require at least one regexp or equality matcher that does not have an empty-compatible value. For instance, app=~\".*\" does not meet this requirement, but app=~\".+\" will";
    type Case<'a> = (Vec<(&'a str, String)>, u16, &'a str);
    let cases: Vec<Case<'_>> = vec![
        (q("{}", &[]), 400, empty_compatible),
        (q(r#"{app=~".*"}"#, &[]), 400, empty_compatible),
        (
            q(r#"{app="x"} |= "a""#, &[]),
            400,
            "only label matchers are supported",
        ),
        (
            q(r#"sum(rate({app="x"}[1m]))"#, &[]),
            400,
            "only label matchers are supported",
        ),
        (
            q(r#"{app="x"}"#, &[("step", "0")]),
            400,
            "zero or negative query resolution step widths are not accepted. Try a positive integer",
        ),
        (
            q(
                r#"{app="x"}"#,
                &[("start", "0"), ("end", "100000"), ("step", "1")],
            ),
            400,
            "exceeded maximum resolution of 11,000 points per time series. Try increasing the value of the step parameter",
        ),
        (
            q(r#"{app="x"}"#, &[("step", "abc")]),
            400,
            "cannot parse \"abc\" to a valid duration",
        ),
        // Loki answers an inverted range with no patterns, not an error.
        (
            q(r#"{app="x"}"#, &[("start", "20"), ("end", "10")]),
            200,
            r#"{"status":"success","data":[]}"#,
        ),
        (
            q(r#"{app="x"}"#, &[]),
            200,
            r#"{"status":"success","data":[]}"#,
        ),
    ];
    for (params, status, want) in cases {
        let (code, body) = patterns(&s.base, &params).await;
        assert_eq!((code, body.trim_end()), (status, want), "{params:?}");
    }
    // Missing query and unparsable times: 400 with the parser's or Loki's message prefix.
    let (code, body) = patterns(&s.base, &[]).await;
    assert_eq!(code, 400, "{body}");
    assert!(body.starts_with("parse error"), "{body}");
    let (code, body) = patterns(&s.base, &q(r#"{app="x"}"#, &[("start", "abc")])).await;
    assert_eq!(code, 400, "{body}");
    assert!(
        body.starts_with("could not parse 'start' parameter: "),
        "{body}"
    );
    s.stop().await;
}

/// Loki's answer, as recorded: `(pattern, level) → total`.
fn loki_fixture(key: &str) -> Vec<(String, String, u64)> {
    let text = std::fs::read_to_string(FIXTURE).expect("fixture");
    let v: Value = serde_json::from_str(&text).unwrap();
    v[key]["answer"]["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["pattern"].as_str().unwrap().to_string(),
                s["level"].as_str().unwrap().to_string(),
                s["samples"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|p| p[1].as_u64().unwrap())
                    .sum(),
            )
        })
        .collect()
}

/// Token similarity of two patterns: the share of aligned space-separated tokens that are
/// equal, where `<_>` inside a token matches any text. Different token counts score 0.
fn similarity(a: &str, b: &str) -> f64 {
    let (ta, tb): (Vec<&str>, Vec<&str>) = (a.split(' ').collect(), b.split(' ').collect());
    if ta.len() != tb.len() {
        return 0.0;
    }
    let same = ta
        .iter()
        .zip(&tb)
        .filter(|(x, y)| x == y || token_match(x, y) || token_match(y, x))
        .count();
    same as f64 / ta.len() as f64
}

/// `pattern` (with `<_>` wildcards) matches all of `text`.
fn token_match(pattern: &str, text: &str) -> bool {
    let parts: Vec<&str> = pattern.split("<_>").collect();
    if parts.len() == 1 {
        return pattern == text;
    }
    let mut rest = text;
    for (i, p) in parts.iter().enumerate() {
        if i == 0 {
            let Some(r) = rest.strip_prefix(p) else {
                return false;
            };
            rest = r;
        } else if i == parts.len() - 1 {
            return rest.ends_with(p);
        } else {
            let Some(at) = rest.find(p) else {
                return false;
            };
            rest = &rest[at + p.len()..];
        }
    }
    true
}

/// The comparison rule: the same number of series; every Loki series has a Parquetry series
/// of the same level whose pattern is at least 80 % token-similar and whose total is within
/// 10 % (the lines are the same and nothing is sampled, so in practice both are exact).
#[tokio::test]
async fn pattern_set_matches_reference_loki() {
    let s = TestServer::start("").await;
    let t0 = minute_aligned_t0();
    push(&s.base, &dataset(t0)).await;
    let (code, body) = patterns(&s.base, &query_params(t0, "60s")).await;
    assert_eq!(code, 200, "{body}");
    compare_with_loki(&loki_fixture("generated"), &body);

    push_body(&s.base, loggen_body(t0)).await;
    let (code, body) = patterns(&s.base, &loggen_params(t0)).await;
    assert_eq!(code, 200, "{body}");
    compare_with_loki(&loki_fixture("loggen"), &body);
    s.stop().await;
}

fn compare_with_loki(loki: &[(String, String, u64)], body: &str) {
    assert!(!loki.is_empty(), "the fixture holds Loki's patterns");
    let ours: Vec<(String, String, u64)> = series(body)
        .into_iter()
        .map(|((p, l), s)| (p, l, s.iter().map(|(_, c)| c).sum()))
        .collect();
    assert_eq!(ours.len(), loki.len(), "ours {ours:?}\nloki {loki:?}");
    for (lp, ll, lt) in loki {
        // The identical pattern if there is one, else the most similar of the level.
        let best = ours
            .iter()
            .find(|(p, l, _)| p == lp && l == ll)
            .or_else(|| {
                ours.iter()
                    .filter(|(_, l, _)| l == ll)
                    .max_by(|a, b| similarity(&a.0, lp).total_cmp(&similarity(&b.0, lp)))
            });
        let Some((p, _, t)) = best else {
            panic!("no {ll} pattern for Loki's {lp:?}: {ours:?}");
        };
        assert!(similarity(p, lp) >= 0.8, "Loki {lp:?} vs ours {p:?}");
        let diff = (*t as f64 - *lt as f64).abs() / *lt as f64;
        assert!(diff <= 0.1, "{lp:?}: Loki counted {lt}, we counted {t}");
    }
}

/// Pushes both datasets to a reference Loki and records its answers as the fixture.
#[tokio::test]
#[ignore = "needs a reference Loki: set PARQUETRY_RECORD_LOKI"]
async fn record_loki_patterns() {
    let base = std::env::var("PARQUETRY_RECORD_LOKI").expect("PARQUETRY_RECORD_LOKI");
    let t0 = minute_aligned_t0();
    push(&base, &dataset(t0)).await;
    push_body(&base, loggen_body(t0)).await;
    let generated = settled_answer(&base, &query_params(t0, "60s")).await;
    let loggen = settled_answer(&base, &loggen_params(t0)).await;
    let fixture = json!({
        "recorded_from": "reference Loki, pattern_ingester.enabled: true",
        "note": "the lines are dataset() and loggen_body() of tests/tests/patterns.rs, pushed ten minutes before the recording; timestamps are relative to that push",
        "generated": {"query": r#"{service_name="shop"}"#, "step": "60s", "answer": generated},
        "loggen": {"query": r#"{namespace="shop"}"#, "step": "60s", "answer": loggen},
    });
    std::fs::create_dir_all(std::path::Path::new(FIXTURE).parent().unwrap()).unwrap();
    std::fs::write(
        FIXTURE,
        serde_json::to_string_pretty(&fixture).unwrap() + "\n",
    )
    .unwrap();
}

/// The pattern ingester is fed asynchronously: poll until two answers agree.
async fn settled_answer(base: &str, params: &[(&str, String)]) -> Value {
    let mut answer = String::new();
    for _ in 0..30 {
        tokio::time::sleep(std::time::Duration::from_secs(2)).await;
        let (code, body) = patterns(base, params).await;
        assert_eq!(code, 200, "{body}");
        if body == answer && !series(&answer).is_empty() {
            break;
        }
        answer = body;
    }
    serde_json::from_str(&answer).unwrap()
}
