//! A user's session over HTTP: push in every wire format, query back with exact shapes.

use parquetry_e2e::{NO_PARAMS, TestServer, gzip, now_ns, protobuf_body};
use serde_json::{Value, json};

fn client() -> reqwest::Client {
    reqwest::Client::new()
}

fn range(t0: i64) -> Vec<(&'static str, String)> {
    vec![
        ("start", (t0 - 60_000_000_000).to_string()),
        ("end", (t0 + 60_000_000_000).to_string()),
    ]
}

async fn query_range(s: &TestServer, q: &str, extra: &[(&'static str, String)], t0: i64) -> Value {
    let mut p = range(t0);
    p.push(("query", q.to_string()));
    p.extend_from_slice(extra);
    let (code, body) = s.get("/loki/api/v1/query_range", &p).await;
    assert_eq!(code, 200, "{q}: {body}");
    serde_json::from_str(&body).unwrap()
}

/// All lines of a streams result, in response order.
fn lines(v: &Value) -> Vec<String> {
    v["data"]["result"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|s| s["values"].as_array().unwrap().iter())
        .map(|e| e[1].as_str().unwrap().to_string())
        .collect()
}

fn web_and_db(t0: i64) -> Value {
    json!({"streams": [
        {"stream": {"app": "web", "env": "prod"},
         "values": [[(t0).to_string(), "GET /a 200 level=info"],
                    [(t0 + 1_000).to_string(), "GET /b 500 level=error", {"trace_id": "abc123"}],
                    [(t0 + 2_000).to_string(), "POST /c 201 level=info"]]},
        {"stream": {"app": "db", "env": "prod"},
         "values": [[(t0 + 500).to_string(), "slow query took 2s"]]}
    ]})
}

#[tokio::test]
async fn json_push_and_log_query_with_exact_shapes() {
    let s = TestServer::start("").await;
    let t0 = now_ns() - 5_000_000_000;
    let (code, body) = s.push_json(None, &web_and_db(t0)).await;
    assert_eq!((code, body.as_str()), (204, ""));

    // Without categorize-labels: structured metadata (detected_level, trace_id) is merged into
    // the stream labels, splitting the stored stream.
    let v = query_range(&s, r#"{app="web"}"#, &[], t0).await;
    assert_eq!(v["status"], "success");
    assert_eq!(v["data"]["resultType"], "streams");
    let result = v["data"]["result"].as_array().unwrap();
    assert_eq!(result.len(), 2, "{v}");
    assert_eq!(
        result[0]["stream"],
        json!({"app":"web","detected_level":"error","env":"prod","service_name":"web","trace_id":"abc123"})
    );
    assert_eq!(
        result[0]["values"],
        json!([[(t0 + 1_000).to_string(), "GET /b 500 level=error"]])
    );
    assert_eq!(
        result[1]["stream"],
        json!({"app":"web","detected_level":"info","env":"prod","service_name":"web"})
    );
    // Newest first within a stream for the default backward direction.
    assert_eq!(
        result[1]["values"],
        json!([
            [(t0 + 2_000).to_string(), "POST /c 201 level=info"],
            [t0.to_string(), "GET /a 200 level=info"]
        ])
    );
    let stats = &v["data"]["stats"];
    assert_eq!(stats["summary"]["totalEntriesReturned"], 3);
    assert_eq!(stats["summary"]["totalLinesProcessed"], 3);
    assert!(stats["summary"]["execTime"].as_f64().unwrap() > 0.0);
    assert!(
        stats["querier"]["store"]["chunk"]["compressedBytes"]
            .as_u64()
            .unwrap()
            > 0
    );
}

#[tokio::test]
async fn categorize_labels_gives_three_tuples_and_flags_before_result() {
    let s = TestServer::start("").await;
    let t0 = now_ns() - 5_000_000_000;
    assert_eq!(s.push_json(None, &web_and_db(t0)).await.0, 204);
    let mut p = range(t0);
    p.push(("query", r#"{env="prod"}"#.into()));
    p.push(("limit", "3".into()));
    let r = client()
        .get(s.url("/loki/api/v1/query_range"))
        .query(&p)
        .header("X-Loki-Response-Encoding-Flags", "categorize-labels")
        .send()
        .await
        .unwrap();
    let (code, body) = (r.status().as_u16(), r.text().await.unwrap());
    assert_eq!(code, 200, "{body}");
    let flags_at = body.find("\"encodingFlags\"").unwrap();
    let type_at = body.find("\"resultType\"").unwrap();
    let result_at = body.find("\"result\"").unwrap();
    assert!(type_at < result_at && flags_at < result_at, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["data"]["encodingFlags"], json!(["categorize-labels"]));
    let result = v["data"]["result"].as_array().unwrap();
    // limit=3 across streams: the newest three entries overall (db's entry is at t0+500).
    assert_eq!(result.len(), 2);
    assert_eq!(
        result[0]["stream"],
        json!({"app":"db","env":"prod","service_name":"db"})
    );
    assert_eq!(
        result[0]["values"],
        json!([[(t0 + 500).to_string(), "slow query took 2s", {"structuredMetadata": {"detected_level": "unknown"}}]])
    );
    assert_eq!(
        result[1]["stream"],
        json!({"app":"web","env":"prod","service_name":"web"})
    );
    assert_eq!(
        result[1]["values"],
        json!([
            [(t0 + 2_000).to_string(), "POST /c 201 level=info", {"structuredMetadata": {"detected_level": "info"}}],
            [(t0 + 1_000).to_string(), "GET /b 500 level=error", {"structuredMetadata": {"detected_level": "error", "trace_id": "abc123"}}]
        ])
    );
}

#[tokio::test]
async fn protobuf_snappy_gzip_and_legacy_pushes() {
    let s = TestServer::start("").await;
    let t0 = now_ns() - 5_000_000_000;
    let c = client();
    // Promtail / Alloy: raw snappy protobuf.
    let body = protobuf_body(&[(
        r#"{job="promtail", host="h1"}"#,
        vec![(t0, "from promtail", vec![("trace_id", "t1")])],
    )]);
    let r = c
        .post(s.url("/loki/api/v1/push"))
        .header("Content-Type", "application/x-protobuf")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 204, "{}", r.text().await.unwrap());
    // Vector: protobuf with Content-Encoding: snappy.
    let body = protobuf_body(&[(r#"{job="vector"}"#, vec![(t0 + 1, "from vector", vec![])])]);
    let r = c
        .post(s.url("/loki/api/v1/push"))
        .header("Content-Type", "application/x-protobuf")
        .header("Content-Encoding", "snappy")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 204);
    // Fluent Bit: gzip JSON.
    let body = json!({"streams":[{"stream":{"job":"fluentbit"},"values":[[(t0 + 2).to_string(), "from fluent bit"]]}]});
    let r = c
        .post(s.url("/loki/api/v1/push"))
        .header("Content-Type", "application/json")
        .header("Content-Encoding", "gzip")
        .body(gzip(body.to_string().as_bytes()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 204);
    // Legacy endpoint with protobuf.
    let body = protobuf_body(&[(r#"{job="legacy"}"#, vec![(t0 + 3, "from legacy", vec![])])]);
    let r = c
        .post(s.url("/api/prom/push"))
        .header("Content-Type", "application/x-protobuf")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 204);

    let v = query_range(&s, r#"{job=~".+"}"#, &[("direction", "FORWARD".into())], t0).await;
    assert_eq!(lines(&v).len(), 4);
    let mut all = lines(&v);
    all.sort();
    assert_eq!(
        all,
        [
            "from fluent bit",
            "from legacy",
            "from promtail",
            "from vector"
        ]
    );
    // service_name discovered from job.
    let (code, body) = s
        .get("/loki/api/v1/label/service_name/values", &range(t0))
        .await;
    assert_eq!(code, 200);
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        v["data"],
        json!(["fluentbit", "legacy", "promtail", "vector"])
    );
}

#[tokio::test]
async fn line_filters_limits_and_directions() {
    let s = TestServer::start("").await;
    let t0 = now_ns() - 10_000_000_000;
    let values: Vec<Value> = (0..20)
        .map(|i| {
            json!([
                (t0 + i * 1_000_000).to_string(),
                format!(
                    "req={i} status={} path=/api/{}",
                    if i % 5 == 0 { 500 } else { 200 },
                    i % 3
                )
            ])
        })
        .collect();
    assert_eq!(
        s.push_json(
            None,
            &json!({"streams":[{"stream":{"app":"api"},"values":values}]})
        )
        .await
        .0,
        204
    );

    let q = |sel: &str| format!(r#"{{app="api"}} {sel}"#);
    let v = query_range(&s, &q(r#"|= "status=500""#), &[], t0).await;
    assert_eq!(
        lines(&v),
        [
            "req=15 status=500 path=/api/0",
            "req=10 status=500 path=/api/1",
            "req=5 status=500 path=/api/2",
            "req=0 status=500 path=/api/0"
        ]
    );
    let v = query_range(&s, &q(r#"|= "status=500" != "path=/api/0""#), &[], t0).await;
    assert_eq!(
        lines(&v),
        [
            "req=10 status=500 path=/api/1",
            "req=5 status=500 path=/api/2"
        ]
    );
    let v = query_range(
        &s,
        &q(r#"|~ `req=1[0-2] ` or "req=3 ""#),
        &[("direction", "forward".into())],
        t0,
    )
    .await;
    assert_eq!(
        lines(&v),
        [
            "req=3 status=200 path=/api/0",
            "req=10 status=500 path=/api/1",
            "req=11 status=200 path=/api/2",
            "req=12 status=200 path=/api/0"
        ]
    );
    let v = query_range(
        &s,
        &q(r#"!~ "status=200""#),
        &[("limit", "2".into()), ("direction", "forward".into())],
        t0,
    )
    .await;
    assert_eq!(
        lines(&v),
        [
            "req=0 status=500 path=/api/0",
            "req=5 status=500 path=/api/2"
        ]
    );
    let v = query_range(
        &s,
        &q(r#"|> "req=<_> status=500 <_>""#),
        &[("limit", "1".into())],
        t0,
    )
    .await;
    assert_eq!(lines(&v), ["req=15 status=500 path=/api/0"]);
    // [start, end): an entry exactly at end is excluded, at start included.
    let p = vec![
        ("query", q("")),
        ("start", (t0 + 2_000_000).to_string()),
        ("end", (t0 + 4_000_000).to_string()),
    ];
    let (code, body) = s.get("/loki/api/v1/query_range", &p).await;
    assert_eq!(code, 200);
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        lines(&v),
        [
            "req=3 status=200 path=/api/0",
            "req=2 status=200 path=/api/2"
        ]
    );
    // Interval thinning: first entry, then only entries at least 5ms after the last emitted.
    let v = query_range(
        &s,
        &q(""),
        &[
            ("direction", "forward".into()),
            ("interval", "0.005".into()),
        ],
        t0,
    )
    .await;
    assert_eq!(lines(&v).len(), 4);
    // POST with a form body gives the same answer as GET.
    let mut form = range(t0);
    form.push(("query", q(r#"|= "req=7 ""#)));
    let r = client()
        .post(s.url("/loki/api/v1/query_range"))
        .form(&form)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let v: Value = serde_json::from_str(&r.text().await.unwrap()).unwrap();
    assert_eq!(lines(&v), ["req=7 status=200 path=/api/1"]);
}

#[tokio::test]
async fn labels_series_and_index_stats_come_from_catalogs() {
    let s = TestServer::start("").await;
    let t0 = now_ns() - 5_000_000_000;
    assert_eq!(s.push_json(None, &web_and_db(t0)).await.0, 204);
    let (code, body) = s.get("/loki/api/v1/labels", &range(t0)).await;
    assert_eq!(
        (code, body.as_str()),
        (
            200,
            "{\"status\":\"success\",\"data\":[\"app\",\"env\",\"service_name\"]}\n"
        )
    );
    let mut p = range(t0);
    p.push(("query", r#"{app="db"}"#.into()));
    let (_, body) = s.get("/loki/api/v1/label/app/values", &p).await;
    assert_eq!(body, "{\"status\":\"success\",\"data\":[\"db\"]}\n");
    let (_, body) = s.get("/loki/api/v1/label/nope/values", &range(t0)).await;
    assert_eq!(body, "{\"status\":\"success\"}\n");

    // series: match[] (Grafana) and match (logcli) are united.
    let mut p = range(t0);
    p.push(("match[]", r#"{app="web"}"#.into()));
    p.push(("match", r#"{app="db"}"#.into()));
    let (code, body) = s.get("/loki/api/v1/series", &p).await;
    assert_eq!(code, 200);
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        v["data"],
        json!([
            {"app":"db","env":"prod","service_name":"db"},
            {"app":"web","env":"prod","service_name":"web"}
        ])
    );
    let mut p = range(t0);
    p.push(("match[]", r#"{app="nothing"}"#.into()));
    let (_, body) = s.get("/loki/api/v1/series", &p).await;
    assert_eq!(body, "{\"status\":\"success\",\"data\":[]}\n");

    let mut p = range(t0);
    p.push(("query", r#"{env="prod"}"#.into()));
    let (code, body) = s.get("/loki/api/v1/index/stats", &p).await;
    assert_eq!(code, 200);
    let v: Value = serde_json::from_str(&body).unwrap();
    let line_bytes = [
        "GET /a 200 level=info",
        "GET /b 500 level=error",
        "POST /c 201 level=info",
        "slow query took 2s",
    ]
    .iter()
    .map(|l| l.len())
    .sum::<usize>();
    assert_eq!(
        v,
        json!({"streams": 2, "chunks": 2, "bytes": line_bytes, "entries": 4})
    );
}

#[tokio::test]
async fn status_endpoints() {
    let s = TestServer::start("").await;
    let (code, body) = s.get("/ready", NO_PARAMS).await;
    assert_eq!((code, body.as_str()), (200, "ready\n"));
    let (code, body) = s.get("/loki/api/v1/status/buildinfo", NO_PARAMS).await;
    assert_eq!(code, 200);
    let v: Value = serde_json::from_str(&body).unwrap();
    assert!(v["version"].as_str().unwrap().starts_with('3'));
    let t0 = now_ns() - 5_000_000_000;
    assert_eq!(s.push_json(None, &web_and_db(t0)).await.0, 204);
    let (code, body) = s.get("/metrics", NO_PARAMS).await;
    assert_eq!(code, 200);
    assert!(
        body.contains("parquetry_distributor_lines_received_total 4"),
        "{body}"
    );
    assert!(body.contains("route=\"/loki/api/v1/push\""), "{body}");
}

#[tokio::test]
async fn restart_keeps_everything() {
    let dir = tempfile::tempdir().unwrap();
    let t0 = now_ns() - 5_000_000_000;
    let s = TestServer::start_on(dir.path(), "").await;
    assert_eq!(s.push_json(None, &web_and_db(t0)).await.0, 204);
    let before = query_range(&s, r#"{env="prod"}"#, &[], t0).await;
    s.stop().await;
    let s = TestServer::start_on(dir.path(), "").await;
    let after = query_range(&s, r#"{env="prod"}"#, &[], t0).await;
    assert_eq!(lines(&before), lines(&after));
    assert_eq!(lines(&after).len(), 4);
}

#[tokio::test]
async fn tenants_are_isolated_with_auth_on() {
    let s = TestServer::start("auth_enabled: true\n").await;
    let t0 = now_ns() - 5_000_000_000;
    let body = web_and_db(t0).to_string();
    let c = client();
    let r = c
        .post(s.url("/loki/api/v1/push"))
        .header("Content-Type", "application/json")
        .body(body.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 401);
    assert_eq!(r.text().await.unwrap(), "no org id");
    let r = c
        .post(s.url("/loki/api/v1/push"))
        .header("Content-Type", "application/json")
        .header("X-Scope-OrgID", "team-a")
        .body(body.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 204);
    let r = c
        .post(s.url("/loki/api/v1/push"))
        .header("Content-Type", "application/json")
        .header("X-Scope-OrgID", "../team-a")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 400);
    assert_eq!(
        r.text().await.unwrap(),
        "tenant ID '../team-a' contains unsupported character '/'"
    );

    let mut p = range(t0);
    p.push(("query", r#"{env="prod"}"#.into()));
    let (code, body) = s
        .get_as(Some("team-a"), "/loki/api/v1/query_range", &p)
        .await;
    assert_eq!(code, 200);
    assert_eq!(lines(&serde_json::from_str(&body).unwrap()).len(), 4);
    let (code, body) = s
        .get_as(Some("team-b"), "/loki/api/v1/query_range", &p)
        .await;
    assert_eq!(code, 200);
    assert!(lines(&serde_json::from_str(&body).unwrap()).is_empty());
    let (code, _) = s.get("/loki/api/v1/labels", &range(t0)).await;
    assert_eq!(code, 401);
}

/// The newest (oldest) `limit` entries are found in two passes, the second bounded by the
/// time of the `limit`-th entry: entries that tie on that time must all stay candidates, on
/// both directions, before and after compaction (cold objects hold whole days).
#[tokio::test]
async fn limit_boundary_keeps_ties_on_both_directions() {
    let s = TestServer::start("").await;
    let t0 = now_ns() - 10_000_000_000;
    let mut streams = vec![];
    // Stream a: ten entries one second apart; b and c: one entry each, at a's sixth second.
    let a: Vec<Value> = (0..10)
        .map(|i| json!([(t0 + i * 1_000_000_000).to_string(), format!("a{i}")]))
        .collect();
    streams.push(json!({"stream": {"service_name": "svc", "s": "a"}, "values": a}));
    for name in ["b", "c"] {
        streams.push(json!({"stream": {"service_name": "svc", "s": name}, "values": [[(t0 + 5_000_000_000).to_string(), format!("{name}5")]]}));
    }
    assert_eq!(s.push_json(None, &json!({"streams": streams})).await.0, 204);
    for compacted in [false, true] {
        if compacted {
            s.compact().await;
        }
        let back = query_range(&s, r#"{service_name="svc"}"#, &[("limit", "5".into())], t0).await;
        let mut got = lines(&back);
        got.sort();
        // a9..a6 are newer than the tie at second 5; exactly one of the three tied entries
        // completes the five.
        assert_eq!(got.len(), 5, "{got:?}");
        for l in ["a6", "a7", "a8", "a9"] {
            assert!(got.contains(&l.to_string()), "{got:?}");
        }
        assert_eq!(
            got.iter().filter(|l| l.ends_with('5')).count(),
            1,
            "{got:?}"
        );
        let fwd = query_range(
            &s,
            r#"{service_name="svc"}"#,
            &[("limit", "7".into()), ("direction", "forward".into())],
            t0,
        )
        .await;
        let mut got = lines(&fwd);
        got.sort();
        // a0..a4, then two of the three entries at second 5.
        assert_eq!(got.len(), 7, "{got:?}");
        for l in ["a0", "a1", "a2", "a3", "a4"] {
            assert!(got.contains(&l.to_string()), "{got:?}");
        }
        assert_eq!(
            got.iter().filter(|l| l.ends_with('5')).count(),
            2,
            "{got:?}"
        );
    }
    s.stop().await;
}

/// Many clients pushing at once (group commit): every push is acknowledged, every entry reads
/// back, and pushes that queued behind one another were stored together, in fewer objects
/// than there were pushes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_pushes_are_all_stored_and_share_objects() {
    let s = TestServer::start("").await;
    let t0 = now_ns() - 5_000_000_000;
    let pushes = 48;
    let bodies: Vec<Value> = (0..pushes)
        .map(|i| {
            json!({"streams": [{
                "stream": {"app": "fan", "client": format!("c{}", i % 8)},
                "values": [[(t0 + i).to_string(), format!("line {i}")]]
            }]})
        })
        .collect();
    let codes = futures::future::join_all(bodies.iter().map(|b| s.push_json(None, b))).await;
    assert!(codes.iter().all(|(code, _)| *code == 204), "{codes:?}");

    let v = query_range(&s, r#"{app="fan"}"#, &[("limit", "1000".into())], t0).await;
    let mut got = lines(&v);
    got.sort();
    let mut want: Vec<String> = (0..pushes).map(|i| format!("line {i}")).collect();
    want.sort();
    assert_eq!(got, want);

    let mut p = range(t0);
    p.push(("query", r#"{app="fan"}"#.into()));
    let (code, body) = s.get("/loki/api/v1/index/stats", &p).await;
    assert_eq!(code, 200);
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        (v["streams"].as_u64(), v["entries"].as_u64()),
        (Some(8), Some(pushes as u64))
    );
    let objects = v["chunks"].as_u64().unwrap();
    assert!(
        objects < pushes as u64,
        "{objects} objects for {pushes} pushes"
    );
}
