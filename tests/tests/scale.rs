//! Queries that scale: newest-first log queries read only the rows they can return yet answer
//! exactly as a full sort would; metric queries give the same answer on one scan partition
//! as on several; every answer's `stats.parquetry` reports what storage the query touched.

use std::collections::BTreeSet;

use parquetry_e2e::{TestServer, now_ns};
use serde_json::{Value, json};

const NS_PER_S: i64 = 1_000_000_000;
const DAY: i64 = 86_400 * NS_PER_S;

/// One pushed entry, as the test remembers it.
#[derive(Debug, Clone)]
struct Entry {
    stream: usize,
    ts: i64,
    line: String,
}

fn labels(stream: usize) -> Value {
    json!({
        "service_name": format!("svc{}", stream % 3),
        "pod": format!("pod-{stream}"),
        "env": "scale",
    })
}

async fn push(s: &TestServer, entries: &[Entry]) {
    let mut by_stream: std::collections::BTreeMap<usize, Vec<&Entry>> = Default::default();
    for e in entries {
        by_stream.entry(e.stream).or_default().push(e);
    }
    let streams: Vec<Value> = by_stream
        .into_iter()
        .map(|(stream, es)| {
            json!({
                "stream": labels(stream),
                "values": es.iter().map(|e| json!([e.ts.to_string(), e.line])).collect::<Vec<_>>(),
            })
        })
        .collect();
    s.push(&json!({ "streams": streams })).await;
}

/// `(ts, line)` of every entry of a streams answer.
fn returned(v: &Value) -> Vec<(i64, String)> {
    let mut out = Vec::new();
    for s in v["data"]["result"].as_array().expect("result") {
        for e in s["values"].as_array().expect("values") {
            out.push((
                e[0].as_str().unwrap().parse().unwrap(),
                e[1].as_str().unwrap().to_string(),
            ));
        }
    }
    out
}

/// `n` entries per stream, spread over `span` ns ending at `end`. Timestamps are unique across
/// streams (so the order between streams never depends on tie-breaking), and stream 0 repeats
/// some timestamps with different lines, so ties inside a stream are exercised.
fn generate(streams: usize, n: usize, end: i64, span: i64) -> Vec<Entry> {
    let step = span / (streams * n) as i64;
    let mut out = Vec::new();
    for i in 0..n {
        for s in 0..streams {
            let ts = end - span + ((i * streams + s) as i64) * step;
            let word = if (i + s) % 7 == 0 { "needle" } else { "hay" };
            out.push(Entry {
                stream: s,
                ts,
                line: format!("{word} s={s} i={i} level=info"),
            });
            if s == 0 && i % 50 == 0 {
                out.push(Entry {
                    stream: s,
                    ts,
                    line: format!("{word} s={s} i={i} tie"),
                });
            }
        }
    }
    out
}

/// The first `limit` entries in query order among those `keep` accepts, as a full sort gives
/// them: time, then line within a stream.
fn expected(
    all: &[Entry],
    keep: impl Fn(&Entry) -> bool,
    start: i64,
    end: i64,
    forward: bool,
    limit: usize,
) -> BTreeSet<(i64, String)> {
    let mut v: Vec<&Entry> = all
        .iter()
        .filter(|e| e.ts >= start && e.ts < end && keep(e))
        .collect();
    v.sort_by(|a, b| {
        let t = if forward {
            a.ts.cmp(&b.ts)
        } else {
            b.ts.cmp(&a.ts)
        };
        t.then_with(|| a.line.cmp(&b.line))
    });
    v.into_iter()
        .take(limit)
        .map(|e| (e.ts, e.line.clone()))
        .collect()
}

/// A log query case: LogQL, which entries it keeps, forward?, limit, start, end.
type Case = (
    &'static str,
    Box<dyn Fn(&Entry) -> bool>,
    bool,
    usize,
    i64,
    i64,
);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn newest_first_answers_exactly_what_a_full_sort_gives() {
    let s = TestServer::start("").await;
    let now = now_ns();
    let end = now - 60 * NS_PER_S;
    let span = 3_600 * NS_PER_S;
    let streams = 24;
    let all = generate(streams, 3_000, end, span);
    // Two pushes, compacted into one object per service with more than one row group, then a
    // third push that stays a hot object next to it.
    let (first, rest) = all.split_at(all.len() / 2);
    let (second, third) = rest.split_at(rest.len() * 4 / 5);
    push(&s, first).await;
    push(&s, second).await;
    s.compact().await;
    push(&s, third).await;

    let start = end - span;
    let cases: Vec<Case> = vec![
        (
            r#"{env="scale"}"#,
            Box::new(|_| true),
            false,
            1000,
            start,
            end,
        ),
        (
            r#"{env="scale"}"#,
            Box::new(|_| true),
            true,
            700,
            start,
            end,
        ),
        (
            r#"{env="scale"}"#,
            Box::new(|_| true),
            false,
            5000,
            start,
            end,
        ),
        // A window in the middle: rows newer than the range must not take the places.
        (
            r#"{env="scale"}"#,
            Box::new(|_| true),
            false,
            300,
            start + span / 3,
            start + span / 2,
        ),
        (
            r#"{pod="pod-0"}"#,
            Box::new(|e| e.stream == 0),
            false,
            150,
            start,
            end,
        ),
        (
            r#"{service_name="svc1"}"#,
            Box::new(|e| e.stream % 3 == 1),
            true,
            400,
            start,
            end,
        ),
        // Line filters: few candidates pass, so the candidates must widen until enough do.
        (
            r#"{env="scale"} |= "needle""#,
            Box::new(|e| e.line.contains("needle")),
            false,
            800,
            start,
            end,
        ),
        (
            r#"{env="scale"} |= "i=2999 ""#,
            Box::new(|e| e.line.contains("i=2999 ")),
            false,
            100,
            start,
            end,
        ),
        (
            r#"{env="scale"} |= "i=3 ""#,
            Box::new(|e| e.line.contains("i=3 ")),
            false,
            100,
            start,
            end,
        ),
    ];
    for (query, keep, forward, limit, from, to) in cases {
        let want = expected(&all, keep, from, to, forward, limit);
        let (code, v) = s
            .get_json(
                "/loki/api/v1/query_range",
                &[
                    ("query", query.to_string()),
                    ("start", from.to_string()),
                    ("end", to.to_string()),
                    ("limit", limit.to_string()),
                    (
                        "direction",
                        if forward { "forward" } else { "backward" }.to_string(),
                    ),
                ],
            )
            .await;
        assert_eq!(code, 200, "{query}: {v}");
        let got = returned(&v);
        assert_eq!(got.len(), want.len(), "{query} limit {limit}: count");
        let got: BTreeSet<(i64, String)> = got.into_iter().collect();
        assert_eq!(
            got, want,
            "{query} limit {limit} forward={forward}: entries"
        );
    }
    s.stop().await;
}

/// `stats.querier.store.chunk.compressedBytes` of an answer: the Parquet pages the scan asked for.
fn pages_read(v: &Value) -> f64 {
    v["data"]["stats"]["querier"]["store"]["chunk"]["compressedBytes"]
        .as_f64()
        .expect("compressedBytes")
}

/// About one newest row per stream, inside a compacted object whose streams span several
/// `line` pages each: the scan reads the candidates' pages, not every page around them.
/// (Parquet's predicate cache read whole 8,192-row batches around each candidate, i.e. the
/// whole object here.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn newest_first_inside_a_compacted_object_reads_only_the_candidates_pages() {
    let s = TestServer::start("").await;
    let end = now_ns() - 60 * NS_PER_S;
    let span = 3_600 * NS_PER_S;
    let streams = 32;
    // ~125-byte lines that do not compress away: 1,500 per stream is about six 32 KiB pages.
    let mut all = generate(streams, 1_500, end, span);
    for (i, e) in all.iter_mut().enumerate() {
        let noise: String = (0..6)
            .map(|k| {
                format!(
                    "{:016x}",
                    (i as u64 * 7 + k).wrapping_mul(0x9E37_79B9_7F4A_7C15)
                )
            })
            .collect();
        e.line = format!("{} {noise}", e.line);
    }
    push(&s, &all[..all.len() / 2]).await;
    push(&s, &all[all.len() / 2..]).await;
    s.compact().await;

    let start = end - span;
    let mid = start + span / 2;
    let query = |q: &'static str, to: i64, limit: usize| {
        let params = vec![
            ("query", q.to_string()),
            ("start", start.to_string()),
            ("end", to.to_string()),
            ("limit", limit.to_string()),
        ];
        let s = &s;
        async move {
            let (code, v) = s.get_json("/loki/api/v1/query_range", &params).await;
            assert_eq!(code, 200, "{q}: {v}");
            v
        }
    };
    let newest = query(r#"{env="scale"}"#, mid, streams).await;
    let want = expected(&all, |_| true, start, mid, false, streams);
    let got: BTreeSet<(i64, String)> = returned(&newest).into_iter().collect();
    assert_eq!(got, want, "newest {streams} before the middle");
    // Every page of the same columns: a line filter that matches nothing reads them all.
    let whole = query(r#"{env="scale"} |= "no-such-line""#, end, 100).await;
    let (newest, whole) = (pages_read(&newest), pages_read(&whole));
    assert!(
        newest * 2.0 < whole,
        "newest-first read {newest} bytes of pages, a full scan {whole}"
    );
    s.stop().await;
}

fn metric_samples(v: &Value) -> Vec<(String, Vec<(f64, String)>)> {
    let mut out: Vec<(String, Vec<(f64, String)>)> = v["data"]["result"]
        .as_array()
        .expect("result")
        .iter()
        .map(|s| {
            (
                s["metric"].to_string(),
                s["values"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|p| (p[0].as_f64().unwrap(), p[1].as_str().unwrap().to_string()))
                    .collect(),
            )
        })
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parser_queries_answer_the_same_on_one_partition_and_on_many() {
    let one = TestServer::start("query_range: {parallelism: 1}").await;
    let many = TestServer::start("query_range: {parallelism: 4}").await;
    let now = now_ns();
    let end = now - 60 * NS_PER_S;
    let mut all = Vec::new();
    for i in 0..6_000usize {
        let s = i % 9;
        let status = [200, 200, 404, 500, 503][i % 5];
        let line = if s % 2 == 0 {
            json!({"status": status, "path": format!("/p{}", i % 4), "duration": format!("{}ms", i % 97)}).to_string()
        } else {
            format!("status={status} path=/p{} duration={}ms", i % 4, i % 97)
        };
        all.push(Entry {
            stream: s,
            ts: end - 1_800 * NS_PER_S + i as i64 * 300_000_000,
            line,
        });
    }
    for s in [&one, &many] {
        push(s, &all[..3_000]).await;
        push(s, &all[3_000..]).await;
        s.compact().await;
    }
    let queries = [
        r#"sum by (path) (count_over_time({env="scale"} | json | status >= 500 [5m]))"#,
        r#"avg_over_time({env="scale"} | logfmt | unwrap duration(duration) | __error__="" [5m]) by (service_name)"#,
        r#"sum(rate({env="scale"} |= "status=5" [1m]))"#,
    ];
    for q in queries {
        let start = end - 1_800 * NS_PER_S;
        let (c1, a) = metric_range(&one, q.to_string(), start, end).await;
        let (c2, b) = metric_range(&many, q.to_string(), start, end).await;
        assert_eq!((c1, c2), (200, 200), "{q}: {a} {b}");
        let (sa, sb) = (metric_samples(&a), metric_samples(&b));
        assert!(!sa.is_empty(), "{q}: no series");
        assert_eq!(sa, sb, "{q}: one partition and four differ");
        let parts = |v: &Value| {
            v["data"]["stats"]["parquetry"]["partitions"]
                .as_u64()
                .unwrap()
        };
        assert_eq!(parts(&a), 1, "{q}: {}", a["data"]["stats"]["parquetry"]);
        assert!(parts(&b) > 1, "{q}: {}", b["data"]["stats"]["parquetry"]);
    }
    one.stop().await;
    many.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stats_report_what_storage_a_query_touched_and_its_cost() {
    // A price per GET high enough that requests dominate the estimate.
    let s =
        TestServer::start("query_range: {cost_s3_get_per_1000: 1000, cost_lambda_gb_second: 0}")
            .await;
    // Two UTC days: the last second of yesterday and the last second before now. A query
    // from two minutes into today must not reach back into yesterday, even with its `[1m]`
    // range: right after midnight, wait until that holds.
    let mut now = now_ns();
    let today = now - now.rem_euclid(DAY);
    if now - today < 150 * NS_PER_S {
        let wait = (today + 150 * NS_PER_S - now) as u64;
        tokio::time::sleep(std::time::Duration::from_nanos(wait)).await;
        now = now_ns();
    }
    let mut all = Vec::new();
    for (day_end, tag) in [(today - NS_PER_S, "yesterday"), (now - NS_PER_S, "today")] {
        for i in 0..500i64 {
            all.push(Entry {
                stream: (i % 3) as usize,
                ts: day_end - i * 1_000_000,
                line: format!("{tag} entry {i}"),
            });
        }
    }
    push(&s, &all).await;

    let stats_of = |v: &Value| v["data"]["stats"].clone();
    let run = |q: &'static str, start: i64| {
        let params = vec![
            ("query", q.to_string()),
            ("start", start.to_string()),
            ("end", now.to_string()),
            ("step", "60".to_string()),
            ("limit", "100".to_string()),
        ];
        let s = &s;
        async move {
            let (code, v) = s.get_json("/loki/api/v1/query_range", &params).await;
            assert_eq!(code, 200, "{q}: {v}");
            v
        }
    };
    for q in [
        r#"sum(count_over_time({env="scale"}[1m]))"#,
        r#"{env="scale"} |= "entry""#,
    ] {
        let one_day = stats_of(&run(q, today + 120 * NS_PER_S).await);
        let two_days = stats_of(&run(q, today - DAY + 120 * NS_PER_S).await);
        // Loki's own keys are still there, as Grafana reads them.
        for k in ["summary", "querier", "ingester", "cache", "index"] {
            assert!(two_days.get(k).is_some(), "{q}: stats.{k} missing");
        }
        let p1 = &one_day["parquetry"];
        let p2 = &two_days["parquetry"];
        let n = |v: &Value, k: &str| {
            v[k].as_f64()
                .unwrap_or_else(|| panic!("{q}: stats.parquetry.{k} missing in {v}"))
        };
        // Three services: three objects a day.
        assert_eq!(n(p1, "objectsOpened"), 3.0, "{q}: one day {p1}");
        assert!(n(p1, "rowGroupsOpened") >= 3.0, "{q}: {p1}");
        if q.starts_with("sum") {
            // A metric query reads every object in range.
            assert_eq!(n(p2, "objectsOpened"), 6.0, "{q}: two days {p2}");
            assert!(n(p2, "rowGroupsOpened") > n(p1, "rowGroupsOpened"), "{q}");
            assert!(
                n(p2, "getRequests") > n(p1, "getRequests"),
                "{q}: {p1} {p2}"
            );
            assert!(
                n(p2, "bytesFetched") > n(p1, "bytesFetched"),
                "{q}: {p1} {p2}"
            );
        } else {
            // The newest 100 are all today's: yesterday's objects may be skipped once enough
            // newer rows are known, so at most all six are opened.
            let opened = n(p2, "objectsOpened");
            assert!((3.0..=6.0).contains(&opened), "{q}: two days {p2}");
            assert!(n(p2, "getRequests") >= 3.0, "{q}: {p2}");
        }
        assert!(n(p1, "partitions") >= 1.0, "{q}: {p1}");
        // At $1 per GET and nothing for compute, the estimate is the request count.
        let cost = n(p2, "estimatedCostUsd");
        assert!(
            (cost - n(p2, "getRequests")).abs() < 1e-9,
            "{q}: cost {cost} for {p2}"
        );
        assert!(n(p2, "lambdaGbSeconds") >= 0.0);
    }
    s.stop().await;
}

async fn metric_range(s: &TestServer, query: String, start: i64, end: i64) -> (u16, Value) {
    let params = vec![
        ("query", query),
        ("start", start.to_string()),
        ("end", end.to_string()),
        ("step", "60".to_string()),
    ];
    s.get_json("/loki/api/v1/query_range", &params).await
}

/// An aggregation over a range aggregation whose series are one per line (a unique id among
/// the parsed labels): the scan keeps each series as the aggregation's groups plus an
/// identity, so the answer is the one the full label sets give (the same query with a no-op
/// `label_replace` in between, which keeps every label) and the per-line labels no longer
/// count against `max_query_response_size`, which is for the answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_line_series_under_an_aggregation_answer_within_the_response_limit() {
    let small = TestServer::start(
        "limits_config: {max_query_response_size: 64KB}\nquery_range: {parallelism: 3}",
    )
    .await;
    let big = TestServer::start("").await;
    let end = now_ns() - 60 * NS_PER_S;
    let start = end - 1_800 * NS_PER_S;
    let all: Vec<Entry> = (0..4_000usize)
        .map(|i| Entry {
            stream: i % 6,
            ts: start + i as i64 * 400_000_000,
            line: format!(
                "id={i:08} path=/p{} duration={}ms status={}",
                i % 3,
                (i * 37) % 1000,
                [200, 500][i % 2]
            ),
        })
        .collect();
    for s in [&small, &big] {
        push(s, &all[..2_000]).await;
        s.compact().await;
        push(s, &all[2_000..]).await;
    }

    let inner =
        r#"avg_over_time({env="scale"} | logfmt | unwrap duration(duration) | __error__="" [5m])"#;
    let query = |s, q: String| metric_range(s, q, start, end);
    // Each line its own series: their labels alone are over the small limit.
    let (code, v) = query(&small, inner.to_string()).await;
    assert_eq!(code, 400, "{v}");
    assert!(v.to_string().contains("max_query_response_size"), "{v}");
    for op in [
        "avg by (service_name)",
        "max by (path)",
        "count",
        "stddev by (status)",
    ] {
        let uncollapsed = format!(r#"{op} (label_replace({inner}, "kept", "all", "", ""))"#);
        let (code, got) = query(&small, format!("{op} ({inner})")).await;
        assert_eq!(code, 200, "{op}: {got}");
        // The uncollapsed form holds every per-line label set: only the larger limit answers.
        let (code, v) = query(&small, uncollapsed.clone()).await;
        assert_eq!(code, 400, "{op}: {v}");
        let (code, want) = query(&big, uncollapsed).await;
        assert_eq!(code, 200, "{op}: {want}");
        let (g, w) = (metric_samples(&got), metric_samples(&want));
        assert!(!g.is_empty(), "{op}: no series");
        // Series meet the aggregation in another order: sums may differ in the last bits, as
        // the corpus allows against Loki.
        let close = |a: &str, b: &str| {
            let (a, b): (f64, f64) = (a.parse().unwrap(), b.parse().unwrap());
            a == b || (a - b).abs() <= 1e-9 * b.abs().max(1.0)
        };
        assert_eq!(g.len(), w.len(), "{op}: series");
        for ((gl, gp), (wl, wp)) in g.iter().zip(&w) {
            assert_eq!(gl, wl, "{op}: labels");
            assert_eq!(gp.len(), wp.len(), "{op} {gl}: points");
            for ((gt, gv), (wt, wv)) in gp.iter().zip(wp) {
                assert!(
                    gt == wt && close(gv, wv),
                    "{op} {gl}: {gt} {gv} vs {wt} {wv}"
                );
            }
        }
    }
    small.stop().await;
    big.stop().await;
}

/// Series of one line folded into the aggregation as the scan reads them (enough lines that
/// each partition's identity probe gives up on merging): the answer is, to the bit, the one
/// the same query gives with every series kept (a no-op `label_replace` in between keeps
/// every label, so nothing is collapsed or folded), on compacted objects and on hot ones that
/// overlap them, with some ids repeating within a range.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn series_folded_as_they_are_read_answer_as_kept_ones_do() {
    let s = TestServer::start(
        "query_range: {parallelism: 2}\nlimits_config: {ingestion_rate_mb: 1000, ingestion_burst_size_mb: 1000}",
    )
    .await;
    let end = now_ns() - 60 * NS_PER_S;
    let start = end - 7_200 * NS_PER_S;
    let n = 170_000usize;
    let all: Vec<Entry> = (0..n)
        .map(|i| {
            // One line in 50 repeats its stream's previous id (0.25 s before it): rare enough
            // for the scan to stop merging series by identity.
            let id = if i % 50 == 49 { i - 6 } else { i };
            Entry {
                stream: i % 6,
                ts: start + i as i64 * 42_000_000,
                line: format!(
                    "id={id:08} path=/p{} duration={}ms",
                    i % 3,
                    (i * 37) % 1000 + i % 7
                ),
            }
        })
        .collect();
    for chunk in all[..150_000].chunks(10_000) {
        push(&s, chunk).await;
    }
    s.compact().await;
    // Hot objects: the rest, and a few lines again inside the compacted span (a stream in two
    // objects whose spans overlap).
    for chunk in all[150_000..].chunks(10_000) {
        push(&s, chunk).await;
    }
    let again: Vec<Entry> = all[70_000..70_060]
        .iter()
        .map(|e| Entry {
            ts: e.ts + 1,
            ..e.clone()
        })
        .collect();
    push(&s, &again).await;

    let inner =
        r#"avg_over_time({env="scale"} | logfmt | unwrap duration(duration) | __error__="" [1m])"#;
    let folded = |v: &Value| v["data"]["stats"]["parquetry"]["foldedLines"].as_u64();
    for op in ["avg by (path)", "max"] {
        let (code, got) = metric_range(&s, format!("{op} ({inner})"), start, end).await;
        assert_eq!(code, 200, "{op}: {got}");
        let kept = format!(r#"{op} (label_replace({inner}, "kept", "all", "", ""))"#);
        let (code, want) = metric_range(&s, kept, start, end).await;
        assert_eq!(code, 200, "{op}: {want}");
        assert!(
            folded(&got).is_some_and(|f| f > 10_000),
            "{op}: {}",
            got["data"]["stats"]["parquetry"]
        );
        assert_eq!(folded(&want), Some(0), "{op}");
        assert!(!got["data"]["result"].as_array().unwrap().is_empty());
        assert_eq!(got["data"]["result"], want["data"]["result"], "{op}");
    }
    s.stop().await;
}
