//! The server's own observability, read from its log lines as an operator would: the
//! `request` span with tenant, route, query and status; the query stage spans under it; the
//! slow-query line (`frontend.log_queries_longer_than`) with each stage's time; the
//! compaction and merge spans.
//!
//! The server runs in this process, so the tests install one subscriber for the whole binary
//! that writes every line into a buffer (with span close events on, as `server.log_spans`
//! does) and look for their own lines by a marker no other test uses.

use std::io::Write;
use std::sync::{Mutex, Once};
use std::time::Duration;

use parquetry_e2e::{TestServer, now_ns};
use serde_json::json;

static LOGS: Mutex<Vec<u8>> = Mutex::new(Vec::new());
static INIT: Once = Once::new();

struct Sink;

impl Write for Sink {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        LOGS.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn capture_logs() {
    INIT.call_once(|| {
        tracing_subscriber::fmt()
            .with_env_filter("info")
            .with_ansi(false)
            .with_span_events(tracing_subscriber::fmt::format::FmtSpan::CLOSE)
            .with_writer(|| Sink)
            .init();
    });
}

/// Every captured line containing all of `needles`.
fn lines_with(needles: &[&str]) -> Vec<String> {
    let logs = LOGS.lock().unwrap();
    String::from_utf8_lossy(&logs)
        .lines()
        .filter(|l| needles.iter().all(|n| l.contains(n)))
        .map(str::to_string)
        .collect()
}

/// A marker unique to one test run, to find that test's lines among everyone's.
fn marker(name: &str) -> String {
    format!("{name}{}", now_ns() % 1_000_000_007)
}

/// The value of `key=` in a log line (up to the next space; quoted values are not needed).
fn field<'a>(line: &'a str, key: &str) -> Option<&'a str> {
    let at = line.find(&format!(" {key}="))? + key.len() + 2;
    let rest = &line[at..];
    Some(rest.split(' ').next().unwrap_or(rest))
}

/// A duration as Rust's `Debug` (and Go) print it: `812ns`, `3.2µs`, `14.5ms`, `1.2s`.
fn duration(text: &str) -> Duration {
    let units = [("ns", 1e-9), ("µs", 1e-6), ("ms", 1e-3), ("s", 1.0)];
    for (unit, scale) in units {
        if let Some(n) = text.strip_suffix(unit)
            && let Ok(v) = n.parse::<f64>()
        {
            return Duration::from_secs_f64(v * scale);
        }
    }
    panic!("not a duration: {text:?}")
}

async fn push(s: &TestServer, tenant: Option<&str>, app: &str, lines: &[String]) {
    let t0 = now_ns();
    let values: Vec<_> = lines
        .iter()
        .enumerate()
        .map(|(i, l)| json!([(t0 + i as i64).to_string(), l]))
        .collect();
    let body = json!({"streams": [{"stream": {"app": app}, "values": values}]});
    s.push_as(tenant, &body).await;
}

fn range_params(query: &str) -> Vec<(&'static str, String)> {
    let now = now_ns();
    vec![
        ("query", query.to_string()),
        ("start", (now - 600_000_000_000).to_string()),
        ("end", (now + 60_000_000_000).to_string()),
    ]
}

fn logged_lines(n: usize, m: &str) -> Vec<String> {
    (0..n)
        .map(|i| format!("level=info msg=\"{m} line {i}\" status={}", 200 + i % 3))
        .collect()
}

#[tokio::test]
async fn slow_query_line_carries_query_tenant_range_and_stage_timings() {
    capture_logs();
    let s =
        TestServer::start("auth_enabled: true\nfrontend:\n  log_queries_longer_than: -1s\n").await;
    let m = marker("slowlog");
    push(&s, Some("team-a"), &m, &logged_lines(50, &m)).await;

    // A log query whose pipeline is not pushed into the scan (a parser), so every stage runs.
    let log_query = format!("{{app=\"{m}\"}} |= \"{m}\" | logfmt | status >= 201");
    let (code, body) = s
        .get_as(
            Some("team-a"),
            "/loki/api/v1/query_range",
            &range_params(&log_query),
        )
        .await;
    assert_eq!(code, 200, "{body}");
    let found = lines_with(&["slow query detected", &m, "| logfmt"]);
    assert_eq!(found.len(), 1, "one slow-query line per query: {found:#?}");
    let line = &found[0];
    assert!(line.contains(" tenant=team-a "), "{line}");
    assert!(line.contains(" path=/loki/api/v1/query_range "), "{line}");
    assert!(line.contains("status=200"), "{line}");
    assert_eq!(field(line, "length"), Some("11m0s"), "{line}");
    for key in ["start", "end"] {
        let v = field(line, key).unwrap_or_else(|| panic!("no {key} in {line}"));
        assert!(v.ends_with('Z') && v.contains('T'), "{key}={v} in {line}");
    }
    let total = duration(field(line, "duration").expect("duration"));
    for stage in ["plan", "scan", "pipeline", "encode"] {
        let d = duration(field(line, stage).unwrap_or_else(|| panic!("no {stage} in {line}")));
        assert!(d > Duration::ZERO, "{stage} ran, so it took time: {line}");
        assert!(d <= total, "{stage} within the request: {line}");
    }
    assert_eq!(
        field(line, "eval"),
        Some("0ns"),
        "a log query evaluates nothing: {line}"
    );

    // A metric query: evaluation time is reported too.
    let metric_query = format!("sum by (status) (count_over_time({{app=\"{m}\"}} | logfmt [1m]))");
    let (code, body) = s
        .get_as(
            Some("team-a"),
            "/loki/api/v1/query_range",
            &range_params(&metric_query),
        )
        .await;
    assert_eq!(code, 200, "{body}");
    let found = lines_with(&["slow query detected", &m, "count_over_time"]);
    assert_eq!(found.len(), 1, "{found:#?}");
    let line = &found[0];
    for stage in ["plan", "scan", "pipeline", "eval", "encode"] {
        let d = duration(field(line, stage).unwrap_or_else(|| panic!("no {stage} in {line}")));
        assert!(d > Duration::ZERO, "{stage} ran, so it took time: {line}");
    }
    assert!(
        field(line, "step").is_some_and(|s| s.ends_with('s')),
        "{line}"
    );

    // An instant query is logged at its time, with no length.
    let (code, body) = s
        .get_as(
            Some("team-a"),
            "/loki/api/v1/query",
            &[("query", format!("count_over_time({{app=\"{m}\"}}[5m])"))],
        )
        .await;
    assert_eq!(code, 200, "{body}");
    let found = lines_with(&["slow query detected", &m, " path=/loki/api/v1/query "]);
    assert_eq!(found.len(), 1, "{found:#?}");
    assert_eq!(field(&found[0], "length"), Some("0s"), "{}", found[0]);

    // A query the API refuses is still a query that took time; its status says how it ended.
    let bad = format!("{{app=\"{m}\"}} | unknownparser");
    let (code, _) = s
        .get_as(
            Some("team-a"),
            "/loki/api/v1/query_range",
            &range_params(&bad),
        )
        .await;
    assert_eq!(code, 400);
    let found = lines_with(&["slow query detected", &m, "unknownparser"]);
    assert_eq!(found.len(), 1, "{found:#?}");
    assert!(found[0].contains("status=400"), "{}", found[0]);
    s.stop().await;
}

#[tokio::test]
async fn request_and_stage_spans_close_with_their_fields() {
    capture_logs();
    let s = TestServer::start("").await;
    let m = marker("spans");
    push(&s, None, &m, &logged_lines(20, &m)).await;
    let q = format!("{{app=\"{m}\"}} | logfmt");
    let (code, body) = s
        .get_as(None, "/loki/api/v1/query_range", &range_params(&q))
        .await;
    assert_eq!(code, 200, "{body}");

    // The request span: route template, tenant, query, status and latency.
    let request = lines_with(&["request{", &m, "}: parquetry_api::trace: close"]);
    assert_eq!(request.len(), 1, "{request:#?}");
    let line = &request[0];
    for needle in [
        "method=GET",
        "route=/loki/api/v1/query_range",
        "tenant=fake",
        "status=200",
        "latency=",
        "step=",
    ] {
        assert!(line.contains(needle), "{needle} missing: {line}");
    }
    // Stage spans are its children (the span list prefixes each close line).
    for stage in ["plan", "scan", "pipeline", "encode"] {
        let closed = lines_with(&[&m, &format!("}}:{stage}: "), "close time.busy="]);
        assert!(!closed.is_empty(), "no {stage} span under the request");
    }
    // With the default threshold (0, Loki's) no slow-query line is written.
    assert!(lines_with(&["slow query detected", &m]).is_empty());

    // The push is a request too, with its route and status, but no query.
    let pushes = lines_with(&["request{", "route=/loki/api/v1/push", "status=204"]);
    assert!(!pushes.is_empty());
    s.stop().await;
}

#[tokio::test]
async fn queries_under_the_threshold_are_not_logged() {
    capture_logs();
    let s = TestServer::start("frontend:\n  log_queries_longer_than: 1h\n").await;
    let m = marker("fastq");
    push(&s, None, &m, &logged_lines(5, &m)).await;
    let (code, body) = s
        .get_as(
            None,
            "/loki/api/v1/query_range",
            &range_params(&format!("{{app=\"{m}\"}}")),
        )
        .await;
    assert_eq!(code, 200, "{body}");
    // The request ran (its span closed), it was just not slow.
    assert_eq!(
        lines_with(&["request{", &m, "}: parquetry_api::trace: close"]).len(),
        1
    );
    assert!(lines_with(&["slow query detected", &m]).is_empty());
    s.stop().await;
}

#[tokio::test]
async fn a_compaction_pass_and_each_merge_are_spans() {
    capture_logs();
    let s = TestServer::start("").await;
    let m = marker("compactspan");
    // Two pushes: two hot objects of one partition, one merge.
    push(&s, None, &m, &logged_lines(10, &m)).await;
    push(&s, None, &m, &logged_lines(10, &m)).await;
    let summary = s.compact().await;
    assert!(summary.cold_written >= 1, "{summary:?}");
    let merges = lines_with(&[
        &format!("merge{{partition=service_name={m}"),
        "inputs=2",
        "close time.busy=",
    ]);
    assert_eq!(merges.len(), 1, "{merges:#?}");
    let merge = &merges[0];
    assert!(merge.contains("compaction"), "under the pass span: {merge}");
    assert!(merge.contains("compact_day{tenant=fake day="), "{merge}");
    let bytes_in: u64 = field(merge, "bytes_in").unwrap().parse().unwrap();
    let bytes_out: u64 = field(merge, "bytes_out")
        .unwrap()
        .trim_end_matches(['}', ':'])
        .parse()
        .unwrap();
    assert!(bytes_in > 0 && bytes_out > 0, "{merge}");
    assert!(
        field(merge, "output").is_some_and(|o| o.ends_with(".parquet")),
        "{merge}"
    );
    s.stop().await;
}

#[tokio::test]
async fn patterns_and_catalog_endpoints_report_their_stages() {
    capture_logs();
    let s = TestServer::start("frontend:\n  log_queries_longer_than: -1s\n").await;
    let m = marker("patternstage");
    push(&s, None, &m, &logged_lines(40, &m)).await;
    let selector = format!("{{app=\"{m}\"}}");

    let (code, body) = s
        .get_as(None, "/loki/api/v1/patterns", &range_params(&selector))
        .await;
    assert_eq!(code, 200, "{body}");
    let found = lines_with(&["slow query detected", &m, "path=/loki/api/v1/patterns "]);
    assert_eq!(found.len(), 1, "{found:#?}");
    let line = &found[0];
    let total = duration(field(line, "duration").expect("duration"));
    // Selection, the read, the mining and the answer each took time.
    for stage in ["plan", "scan", "pipeline", "encode"] {
        let d = duration(field(line, stage).unwrap_or_else(|| panic!("no {stage} in {line}")));
        assert!(d > Duration::ZERO, "{stage} ran, so it took time: {line}");
        assert!(d <= total, "{stage} within the request: {line}");
    }

    // `index/stats` reads catalogs only: its time is selection.
    let (code, body) = s
        .get_as(None, "/loki/api/v1/index/stats", &range_params(&selector))
        .await;
    assert_eq!(code, 200, "{body}");
    let found = lines_with(&["slow query detected", &m, "path=/loki/api/v1/index/stats "]);
    assert_eq!(found.len(), 1, "{found:#?}");
    let line = &found[0];
    assert!(
        duration(field(line, "plan").expect("plan")) > Duration::ZERO,
        "{line}"
    );
    assert_eq!(field(line, "scan"), Some("0ns"), "{line}");
    s.stop().await;
}

#[test]
fn the_threshold_follows_loki_convention() {
    use parquetry_model::Config;
    use parquetry_model::frontend_config::SlowQueryThreshold;
    let t = |yaml: &str| {
        Config::from_yaml_and_env(yaml, []).map(|c| c.frontend.log_queries_longer_than)
    };
    assert_eq!(t("").ok(), Some(SlowQueryThreshold::Off));
    assert_eq!(
        t("frontend:\n  log_queries_longer_than: -1s\n").ok(),
        Some(SlowQueryThreshold::All)
    );
    assert_eq!(
        t("frontend:\n  log_queries_longer_than: 250ms\n").ok(),
        Some(SlowQueryThreshold::Over(Duration::from_millis(250)))
    );
    // Loki's other frontend keys are accepted and have no effect here.
    assert!(t("frontend:\n  log_queries_longer_than: 5s\n  compress_responses: true\n").is_ok());
    let err = t("frontend:\n  log_queries_longer_than: slow\n")
        .unwrap_err()
        .to_string();
    assert!(err.contains("\"slow\"") && err.contains("-1s"), "{err}");
}
