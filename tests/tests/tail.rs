//! Live tail over a real WebSocket: history then live entries, the pipeline, Loki's refusals
//! and close frames, the per-tenant limit, exactly-once delivery, storage polling for other
//! writers, and the reference `logcli query --tail` as a client.

use std::collections::HashSet;
use std::time::Duration;

use futures::StreamExt;
use parquetry_e2e::{NO_PARAMS, TestServer, now_ns};
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream, connect_async};

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

const WAIT: Duration = Duration::from_secs(10);

fn client() -> reqwest::Client {
    reqwest::Client::new()
}

fn ws_url(s: &TestServer, path: &str, params: &[(&str, String)]) -> String {
    let url = reqwest::Url::parse_with_params(&s.url(path), params).unwrap();
    url.as_str().replacen("http://", "ws://", 1)
}

async fn connect(s: &TestServer, params: &[(&str, String)], headers: &[(&str, &str)]) -> Ws {
    let mut req = ws_url(s, "/loki/api/v1/tail", params)
        .into_client_request()
        .unwrap();
    for (k, v) in headers {
        req.headers_mut().insert(
            tokio_tungstenite::tungstenite::http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
            HeaderValue::from_str(v).unwrap(),
        );
    }
    let (ws, resp) = connect_async(req).await.expect("WebSocket handshake");
    assert_eq!(resp.status().as_u16(), 101);
    ws
}

/// What the server sent next, pings skipped.
#[derive(Debug)]
enum Frame {
    Json(Value),
    Close(u16, String),
    Ended,
}

async fn next(ws: &mut Ws, wait: Duration) -> Option<Frame> {
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        let msg = match tokio::time::timeout_at(deadline, ws.next()).await {
            Err(_) => return None,
            Ok(None) | Ok(Some(Err(_))) => return Some(Frame::Ended),
            Ok(Some(Ok(m))) => m,
        };
        match msg {
            Message::Text(t) => return Some(Frame::Json(serde_json::from_str(&t).unwrap())),
            Message::Close(c) => {
                return Some(match c {
                    Some(c) => Frame::Close(u16::from(c.code), c.reason.to_string()),
                    None => Frame::Close(1005, String::new()),
                });
            }
            _ => continue,
        }
    }
}

async fn next_json(ws: &mut Ws) -> Value {
    match next(ws, WAIT).await {
        Some(Frame::Json(v)) => v,
        other => panic!("expected a message, got {other:?}"),
    }
}

/// `(ts, line, stream)` of every entry of a message, in message order.
fn entries(v: &Value) -> Vec<(i64, String, Value)> {
    v["streams"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|s| {
            s["values"].as_array().unwrap().iter().map(move |e| {
                (
                    e[0].as_str().unwrap().parse().unwrap(),
                    e[1].as_str().unwrap().to_string(),
                    s["stream"].clone(),
                )
            })
        })
        .collect()
}

/// Reads messages until `n` entries arrived (or the wait ran out).
async fn collect(ws: &mut Ws, n: usize, wait: Duration) -> Vec<(i64, String, Value)> {
    let deadline = tokio::time::Instant::now() + wait;
    let mut out = Vec::new();
    while out.len() < n {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        match next(ws, left).await {
            Some(Frame::Json(v)) => out.extend(entries(&v)),
            None => break,
            Some(other) => panic!("tail ended early: {other:?}"),
        }
    }
    out
}

async fn push(s: &TestServer, tenant: Option<&str>, stream: Value, values: Vec<Value>) {
    let body = json!({"streams": [{"stream": stream, "values": values}]});
    s.push_as(tenant, &body).await;
}

fn v(ts: i64, line: &str) -> Value {
    json!([ts.to_string(), line])
}

#[tokio::test]
async fn history_then_live_entries_through_the_pipeline() {
    let s = TestServer::start("").await;
    let t0 = now_ns() - 10_000_000_000;
    push(
        &s,
        None,
        json!({"app": "shop"}),
        vec![
            v(t0, "level=info msg=keep-1 <b>"),
            v(t0 + 1, "level=info msg=skip"),
            v(t0 + 2, "level=warn msg=keep-2"),
        ],
    )
    .await;
    push(
        &s,
        None,
        json!({"app": "other"}),
        vec![v(t0 + 3, "level=info msg=keep-x")],
    )
    .await;
    let q = r#"{app="shop"} |= "keep" | logfmt | level != "debug""#;
    let mut ws = connect(&s, &[("query", q.into())], &[]).await;

    let history = next_json(&mut ws).await;
    assert!(history.get("dropped_entries").is_none(), "{history}");
    let got = entries(&history);
    let lines: Vec<&str> = got.iter().map(|e| e.1.as_str()).collect();
    assert_eq!(
        lines,
        ["level=info msg=keep-1 <b>", "level=warn msg=keep-2"]
    );
    assert_eq!(got[0].0, t0);
    // Parsed labels and service_name are part of the stream map, as from Loki.
    assert_eq!(got[1].2["level"], "warn");
    assert_eq!(got[1].2["msg"], "keep-2");
    assert_eq!(got[1].2["service_name"], "shop");

    let t1 = now_ns();
    push(
        &s,
        None,
        json!({"app": "shop", "pod": "a"}),
        vec![
            v(t1, "level=info msg=keep-3"),
            v(t1 + 1, "level=debug msg=keep-debug"),
            v(t1 + 2, "level=info msg=skip"),
        ],
    )
    .await;
    push(
        &s,
        None,
        json!({"app": "other"}),
        vec![v(t1 + 3, "level=info msg=keep-y")],
    )
    .await;
    let live = collect(&mut ws, 1, WAIT).await;
    assert_eq!(live.len(), 1, "{live:?}");
    assert_eq!(live[0].0, t1);
    assert_eq!(live[0].1, "level=info msg=keep-3");
    assert_eq!(live[0].2["pod"], "a");
    assert_eq!(live[0].2["msg"], "keep-3");
    // Nothing else matches: no further entry within a second.
    let extra = next(&mut ws, Duration::from_secs(1)).await;
    assert!(extra.is_none(), "unexpected: {extra:?}");
    s.stop().await;
}

#[tokio::test]
async fn frames_are_lokis_text_json_with_html_escaping() {
    let s = TestServer::start("").await;
    let t0 = now_ns() - 5_000_000_000;
    let body = json!({"streams": [{"stream": {"app": "esc"}, "values": [[t0.to_string(), "a <b> & c", {"trace_id": "t1"}]]}]});
    s.push(&body).await;
    let url = ws_url(
        &s,
        "/loki/api/v1/tail",
        &[("query", r#"{app="esc"}"#.into())],
    );
    let (mut ws, _) = connect_async(url).await.unwrap();
    let raw = loop {
        match ws.next().await.unwrap().unwrap() {
            Message::Text(t) => break t.to_string(),
            _ => continue,
        }
    };
    // History entries carry structured metadata in the stream map; the line is escaped as Go's
    // encoder does.
    assert_eq!(
        raw,
        format!(
            r#"{{"streams":[{{"stream":{{"app":"esc","detected_level":"unknown","service_name":"esc","trace_id":"t1"}},"values":[["{t0}","a \u003cb\u003e \u0026 c"]]}}]}}"#
        )
    );

    // Categorized: the stream keeps only the stream labels, the rest is the third element.
    let mut ws = connect(
        &s,
        &[("query", r#"{app="esc"}"#.into())],
        &[("X-Loki-Response-Encoding-Flags", "categorize-labels")],
    )
    .await;
    let m = next_json(&mut ws).await;
    assert_eq!(m["encodingFlags"], json!(["categorize-labels"]));
    assert_eq!(
        m["streams"][0]["stream"],
        json!({"app": "esc", "service_name": "esc"})
    );
    assert_eq!(
        m["streams"][0]["values"][0][2],
        json!({"structuredMetadata": {"detected_level": "unknown", "trace_id": "t1"}})
    );

    // The legacy route: label strings and RFC 3339 times.
    let url = ws_url(&s, "/api/prom/tail", &[("query", r#"{app="esc"}"#.into())]);
    let (mut legacy, _) = connect_async(url).await.unwrap();
    let m = next_json(&mut legacy).await;
    assert_eq!(
        m["streams"][0]["labels"],
        r#"{app="esc", detected_level="unknown", service_name="esc", trace_id="t1"}"#
    );
    assert_eq!(m["streams"][0]["entries"][0]["line"], "a <b> & c");
    assert!(
        m["streams"][0]["entries"][0]["ts"]
            .as_str()
            .unwrap()
            .ends_with('Z')
    );
    s.stop().await;
}

#[tokio::test]
async fn history_is_the_newest_limit_oldest_first_since_start() {
    let s = TestServer::start("").await;
    let t0 = now_ns() - 20_000_000_000;
    let values = (0..5)
        .map(|i| v(t0 + i * 1_000_000_000, &format!("line {i}")))
        .collect();
    push(&s, None, json!({"app": "hist"}), values).await;
    let mut ws = connect(
        &s,
        &[("query", r#"{app="hist"}"#.into()), ("limit", "2".into())],
        &[],
    )
    .await;
    let lines: Vec<String> = entries(&next_json(&mut ws).await)
        .into_iter()
        .map(|e| e.1)
        .collect();
    assert_eq!(lines, ["line 3", "line 4"]);

    let start = (t0 + 2_500_000_000).to_string();
    let mut ws = connect(
        &s,
        &[("query", r#"{app="hist"}"#.into()), ("start", start)],
        &[],
    )
    .await;
    let lines: Vec<String> = entries(&next_json(&mut ws).await)
        .into_iter()
        .map(|e| e.1)
        .collect();
    assert_eq!(lines, ["line 3", "line 4"]);
    s.stop().await;
}

#[tokio::test]
async fn bad_input_gets_lokis_400_before_the_upgrade() {
    let s = TestServer::start("").await;
    let sel = || ("query", r#"{app="x"}"#.to_string());
    let cases: Vec<(Vec<(&str, String)>, &str)> = vec![
        (
            vec![sel(), ("delay_for", "6".into())],
            "delay_for can't be greater than 5",
        ),
        (
            vec![sel(), ("delay_for", "-1".into())],
            "delay_for value -1 is out of range [0, 4294967295]",
        ),
        (
            vec![sel(), ("delay_for", "abc".into())],
            r#"strconv.Atoi: parsing "abc": invalid syntax"#,
        ),
        (
            vec![sel(), ("limit", "0".into())],
            "limit must be a positive value",
        ),
        (
            vec![sel(), ("limit", "99999999999".into())],
            "limit value 99999999999 is out of range [0, 4294967295]",
        ),
        (
            vec![("query", r#"{app="x""#.into())],
            "parse error at line 1, col 9: syntax error: unexpected $end, expecting } or ,",
        ),
        // Valid parameters but no WebSocket handshake.
        (vec![sel()], "Bad Request"),
    ];
    for (params, want) in cases {
        let (code, body) = s.get("/loki/api/v1/tail", &params).await;
        assert_eq!((code, body.trim_end()), (400, want), "{params:?}");
    }
    let (code, body) = s.get("/loki/api/v1/tail", NO_PARAMS).await;
    assert_eq!(code, 400);
    assert!(body.starts_with("parse error"), "{body}");
    // Loki checks the limit before the start; the start's message is the query endpoints'.
    let (code, body) = s
        .get(
            "/loki/api/v1/tail",
            &[sel(), ("start", "abc".into()), ("limit", "0".into())],
        )
        .await;
    assert_eq!(
        (code, body.trim_end()),
        (400, "limit must be a positive value")
    );
    let (code, body) = s
        .get("/loki/api/v1/tail", &[sel(), ("start", "abc".into())])
        .await;
    assert_eq!(code, 400);
    assert!(
        body.starts_with("could not parse 'start' parameter: "),
        "{body}"
    );
    // The handshake itself is refused for the same reasons.
    let url = ws_url(&s, "/loki/api/v1/tail", &[sel(), ("delay_for", "6".into())]);
    let err = connect_async(url).await.unwrap_err();
    assert!(err.to_string().contains("400"), "{err}");
    s.stop().await;
}

#[tokio::test]
async fn metric_queries_and_tenancy() {
    let s = TestServer::start("auth_enabled: true\n").await;
    let (code, body) = s
        .get("/loki/api/v1/tail", &[("query", r#"{app="x"}"#)])
        .await;
    assert_eq!((code, body.trim_end()), (401, "no org id"));

    let metric = r#"sum(rate({app="x"}[1m]))"#;
    let mut ws = connect(&s, &[("query", metric.into())], &[("X-Scope-OrgID", "a")]).await;
    match next(&mut ws, WAIT).await {
        Some(Frame::Close(1011, reason)) => assert_eq!(reason, "only log selector is supported"),
        other => panic!("{other:?}"),
    }

    let mut a = connect(
        &s,
        &[("query", r#"{app="x"}"#.into())],
        &[("X-Scope-OrgID", "a")],
    )
    .await;
    let t = now_ns();
    push(&s, Some("b"), json!({"app": "x"}), vec![v(t, "for b")]).await;
    push(&s, Some("a"), json!({"app": "x"}), vec![v(t + 1, "for a")]).await;
    let got = collect(&mut a, 2, Duration::from_secs(2)).await;
    let lines: Vec<&str> = got.iter().map(|e| e.1.as_str()).collect();
    assert_eq!(lines, ["for a"]);
    s.stop().await;
}

#[tokio::test]
async fn eleventh_tail_is_refused_and_a_disconnect_frees_its_slot() {
    let s = TestServer::start("").await;
    push(
        &s,
        None,
        json!({"app": "lim"}),
        vec![v(now_ns() - 1_000_000_000, "seed")],
    )
    .await;
    let q = || vec![("query", r#"{app="lim"}"#.to_string())];
    let mut tails = Vec::new();
    for _ in 0..10 {
        let mut ws = connect(&s, &q(), &[]).await;
        // The history arrives once the tail holds its slot.
        next_json(&mut ws).await;
        tails.push(ws);
    }
    let mut refused = connect(&s, &q(), &[]).await;
    match next(&mut refused, WAIT).await {
        Some(Frame::Close(1011, reason)) => assert_eq!(
            reason,
            "rpc error: code = Code(400) desc = max concurrent tail requests limit exceeded, count > limit (11 > 10)"
        ),
        other => panic!("{other:?}"),
    }
    // A client that closes frees its slot.
    let mut gone = tails.pop().unwrap();
    gone.close(None).await.unwrap();
    drop(gone);
    let mut admitted = false;
    for _ in 0..50 {
        let mut ws = connect(&s, &q(), &[]).await;
        match next(&mut ws, WAIT).await {
            Some(Frame::Json(_)) => {
                admitted = true;
                break;
            }
            Some(Frame::Close(1011, _)) => tokio::time::sleep(Duration::from_millis(100)).await,
            other => panic!("{other:?}"),
        }
    }
    assert!(admitted, "the closed tail's slot was never freed");
    // A client that vanishes without a close frame frees its slot too.
    drop(tails.pop());
    let mut admitted = false;
    for _ in 0..50 {
        let mut ws = connect(&s, &q(), &[]).await;
        if let Some(Frame::Json(_)) = next(&mut ws, WAIT).await {
            admitted = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(admitted, "the dropped tail's slot was never freed");
    s.stop().await;
}

#[tokio::test]
async fn hundreds_of_entries_arrive_once_each_in_order_per_stream() {
    let s = TestServer::start("").await;
    let mut ws = connect(&s, &[("query", r#"{app="bulk"}"#.into())], &[]).await;
    let t0 = now_ns();
    let mut want = HashSet::new();
    let mut pushes = Vec::new();
    let server = &s;
    for p in 0..30i64 {
        let values: Vec<Value> = (0..10i64)
            .map(|i| {
                let n = p * 10 + i;
                want.insert(format!("entry {n}"));
                v(t0 + n, &format!("entry {n}"))
            })
            .collect();
        let pod = format!("pod-{}", p % 3);
        pushes.push(
            async move { push(server, None, json!({"app": "bulk", "pod": pod}), values).await },
        );
    }
    // Ten pushes in flight at a time.
    let mut it = pushes.into_iter();
    loop {
        let batch: Vec<_> = it.by_ref().take(10).collect();
        if batch.is_empty() {
            break;
        }
        futures::future::join_all(batch).await;
    }
    let got = collect(&mut ws, 300, Duration::from_secs(20)).await;
    let lines: Vec<String> = got.iter().map(|e| e.1.clone()).collect();
    let unique: HashSet<String> = lines.iter().cloned().collect();
    assert_eq!(lines.len(), unique.len(), "duplicates");
    assert_eq!(unique, want);
    let extra = next(&mut ws, Duration::from_millis(500)).await;
    assert!(extra.is_none(), "unexpected: {extra:?}");
    drop(it);
    s.stop().await;
}

#[tokio::test]
async fn delay_for_holds_entries_back() {
    let s = TestServer::start("").await;
    let mut ws = connect(
        &s,
        &[
            ("query", r#"{app="late"}"#.into()),
            ("delay_for", "2".into()),
        ],
        &[],
    )
    .await;
    let pushed = std::time::Instant::now();
    push(&s, None, json!({"app": "late"}), vec![v(now_ns(), "held")]).await;
    let got = collect(&mut ws, 1, WAIT).await;
    assert_eq!(got.len(), 1);
    assert!(
        pushed.elapsed() >= Duration::from_secs(2),
        "{:?}",
        pushed.elapsed()
    );
    assert!(
        pushed.elapsed() < Duration::from_secs(4),
        "{:?}",
        pushed.elapsed()
    );
    s.stop().await;
}

#[tokio::test]
async fn tails_end_at_the_max_duration() {
    let s = TestServer::start("querier:\n  tail_max_duration: 2s\n").await;
    let mut ws = connect(&s, &[("query", r#"{app="x"}"#.into())], &[]).await;
    let started = std::time::Instant::now();
    match next(&mut ws, WAIT).await {
        Some(Frame::Close(1011, reason)) => assert_eq!(reason, "reached tail max duration limit"),
        other => panic!("{other:?}"),
    }
    assert!(started.elapsed() >= Duration::from_millis(1500));
    s.stop().await;
}

#[tokio::test]
async fn pings_keep_the_socket_alive_past_the_server_timeouts() {
    let s = TestServer::start(
        "server:\n  http_server_read_timeout: 1s\n  http_server_write_timeout: 1s\n  http_server_idle_timeout: 1s\n",
    )
    .await;
    let mut ws = connect(&s, &[("query", r#"{app="alive"}"#.into())], &[]).await;
    let mut pings = 0;
    let deadline = tokio::time::Instant::now() + Duration::from_millis(3500);
    while let Ok(Some(Ok(m))) = tokio::time::timeout_at(deadline, ws.next()).await {
        match m {
            Message::Ping(_) => pings += 1,
            other => panic!("{other:?}"),
        }
    }
    assert!(pings >= 3, "{pings} pings");
    push(
        &s,
        None,
        json!({"app": "alive"}),
        vec![v(now_ns(), "still here")],
    )
    .await;
    let got = collect(&mut ws, 1, WAIT).await;
    assert_eq!(got[0].1, "still here");
    s.stop().await;
}

#[tokio::test]
async fn a_tail_sees_entries_other_writers_pushed_by_polling_storage() {
    let dir = tempfile::tempdir().unwrap();
    let writer = TestServer::start_on(dir.path(), "").await;
    let reader = TestServer::start_on(
        dir.path(),
        "querier:\n  tail_storage_poll_interval: 500ms\n",
    )
    .await;
    let mut ws = connect(&reader, &[("query", r#"{app="multi"}"#.into())], &[]).await;
    let t = now_ns();
    push(
        &writer,
        None,
        json!({"app": "multi"}),
        vec![v(t, "from the writer")],
    )
    .await;
    push(
        &reader,
        None,
        json!({"app": "multi"}),
        vec![v(t + 1, "from the reader")],
    )
    .await;
    let started = std::time::Instant::now();
    let got = collect(&mut ws, 2, WAIT).await;
    let mut lines: Vec<&str> = got.iter().map(|e| e.1.as_str()).collect();
    lines.sort();
    assert_eq!(lines, ["from the reader", "from the writer"]);
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    // Seen through both the broadcast and the poll, each is still sent once.
    let extra = next(&mut ws, Duration::from_millis(1500)).await;
    assert!(extra.is_none(), "unexpected: {extra:?}");
    writer.stop().await;
    reader.stop().await;
}

#[tokio::test]
async fn reference_logcli_tails_pushed_lines() {
    let Some(home) = std::env::var_os("HOME") else {
        println!("skipped: no HOME, so no reference logcli");
        return;
    };
    let logcli = std::path::Path::new(&home).join(".cache/reference-loki/bin/logcli");
    if !logcli.exists() {
        println!(
            "skipped: {} is absent (no reference Loki build)",
            logcli.display()
        );
        return;
    }
    let s = TestServer::start("").await;
    push(
        &s,
        None,
        json!({"app": "cli"}),
        vec![v(now_ns() - 1_000_000_000, "before the tail")],
    )
    .await;
    let mut child = tokio::process::Command::new(&logcli)
        .args([
            "query",
            "--tail",
            "--quiet",
            "--output=raw",
            r#"{app="cli"}"#,
        ])
        .env("LOKI_ADDR", &s.base)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut lines = tokio::io::AsyncBufReadExt::lines(tokio::io::BufReader::new(stdout));
    let mut seen = Vec::new();
    let read = async {
        while let Ok(Some(l)) = lines.next_line().await {
            seen.push(l);
            if seen.len() == 1 {
                push(
                    &s,
                    None,
                    json!({"app": "cli"}),
                    vec![v(now_ns(), "after the tail")],
                )
                .await;
            }
            if seen.len() == 2 {
                break;
            }
        }
    };
    let _ = tokio::time::timeout(WAIT, read).await;
    let _ = child.kill().await;
    assert_eq!(seen, ["before the tail", "after the tail"]);
    s.stop().await;
}

#[tokio::test]
async fn a_large_push_goes_through_the_pipeline_whole() {
    let s = TestServer::start("").await;
    let q = r#"{app="big"} | logfmt | n > 99"#;
    let mut ws = connect(&s, &[("query", q.into())], &[]).await;
    let t0 = now_ns();
    let values = (0..1000i64)
        .map(|n| v(t0 + n, &format!("n={n} msg=hello")))
        .collect();
    push(&s, None, json!({"app": "big"}), values).await;
    let mut got = Vec::new();
    while got.len() < 900 {
        let m = entries(&next_json(&mut ws).await);
        // At most 100 entries per message, as Loki sends them.
        assert!(m.len() <= 100, "{} entries in one message", m.len());
        got.extend(m);
    }
    let ns: Vec<i64> = got
        .iter()
        .map(|e| e.2["n"].as_str().unwrap().parse().unwrap())
        .collect();
    assert_eq!(ns, (100..1000).collect::<Vec<i64>>());
    s.stop().await;
}

/// OTLP pushes take the Loki push's write path, live tails included.
#[tokio::test]
async fn otlp_pushes_reach_live_tails() {
    let s = TestServer::start("").await;
    let mut ws = connect(&s, &[("query", r#"{service_name="otlp-svc"}"#.into())], &[]).await;
    // The (empty) history frame comes first.
    let _ = next(&mut ws, Duration::from_secs(2)).await;
    let now = now_ns();
    let body = json!({"resourceLogs": [{
        "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "otlp-svc"}}]},
        "scopeLogs": [{"logRecords": [
            {"timeUnixNano": now.to_string(), "body": {"stringValue": "from otlp"}}
        ]}]
    }]});
    let r = client()
        .post(s.url("/otlp/v1/logs"))
        .header("Content-Type", "application/json")
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let got = collect(&mut ws, 1, Duration::from_secs(5)).await;
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got[0].1, "from otlp");
    s.stop().await;
}
