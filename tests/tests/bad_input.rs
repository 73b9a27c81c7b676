//! Bad input gets the right 4xx with a message a person can act on, and loses nothing: the
//! valid part of a partially bad push is stored, nothing of a rejected one is.

use parquetry_e2e::{TestServer, now_ns};
use serde_json::{Value, json};

struct Case {
    name: &'static str,
    path: &'static str,
    content_type: &'static str,
    encoding: Option<&'static str>,
    body: Vec<u8>,
    status: u16,
    /// The body must start with this.
    message: &'static str,
}

fn push_case(name: &'static str, body: Value, status: u16, message: &'static str) -> Case {
    Case {
        name,
        path: "/loki/api/v1/push",
        content_type: "application/json",
        encoding: None,
        body: body.to_string().into_bytes(),
        status,
        message,
    }
}

#[tokio::test]
async fn push_errors_table() {
    let s = TestServer::start("distributor:\n  max_recv_msg_size: 4KB\n").await;
    let now = now_ns();
    let ts = |d: i64| (now + d).to_string();
    let cases = vec![
        push_case("malformed json", json!("nope"), 400, ""),
        Case { body: b"{\"streams\": [".to_vec(), ..push_case("truncated json", json!(null), 400, "") },
        push_case("numeric timestamp", json!({"streams":[{"stream":{"a":"b"},"values":[[1, "x"]]}]}), 400, ""),
        push_case("zero streams", json!({"streams":[]}), 422, "error at least one valid stream is required for ingestion"),
        push_case(
            "bad label name",
            json!({"streams":[{"stream":{"a-b":"c"},"values":[[ts(0), "x"]]}]}),
            400,
            "",
        ),
        push_case(
            "too old",
            json!({"streams":[{"stream":{"app":"old"},"values":[[ts(-8 * 86_400 * 1_000_000_000), "x"]]}]}),
            400,
            "entry for stream '{app=\"old\", service_name=\"old\"}' has timestamp too old",
        ),
        push_case(
            "too new",
            json!({"streams":[{"stream":{"app":"new"},"values":[[ts(3_600 * 1_000_000_000), "x"]]}]}),
            400,
            "entry for stream '{app=\"new\", service_name=\"new\"}' has timestamp too new",
        ),
        Case {
            encoding: Some("br"),
            ..push_case("unsupported encoding", json!({"streams":[]}), 400, "Content-Encoding \"br\" not supported")
        },
        Case {
            body: vec![b' '; 5000],
            ..push_case("oversize", json!(null), 413, "request body too large: message size too large than max")
        },
        Case {
            content_type: "application/x-protobuf",
            body: b"definitely not snappy".to_vec(),
            ..push_case("garbage protobuf", json!(null), 400, "")
        },
        Case {
            path: "/api/prom/push",
            body: json!({"streams":[{"labels":"{app=\"x\"","entries":[{"ts":"2024-01-01T00:00:00Z","line":"x"}]}]}).to_string().into_bytes(),
            ..push_case("legacy bad labels", json!(null), 400, "couldn't parse labels")
        },
    ];
    let c = reqwest::Client::new();
    for case in cases {
        let mut req = c
            .post(s.url(case.path))
            .header("Content-Type", case.content_type)
            .body(case.body.clone());
        if let Some(e) = case.encoding {
            req = req.header("Content-Encoding", e);
        }
        let r = req.send().await.unwrap();
        let status = r.status().as_u16();
        let ct = r
            .headers()
            .get("content-type")
            .map(|v| v.to_str().unwrap().to_string());
        let text = r.text().await.unwrap();
        assert_eq!(status, case.status, "{}: {text}", case.name);
        assert!(text.starts_with(case.message), "{}: {text:?}", case.name);
        assert!(!text.is_empty(), "{}: an error needs a message", case.name);
        assert_eq!(
            ct.as_deref(),
            Some("text/plain; charset=utf-8"),
            "{}",
            case.name
        );
    }
    // Nothing of the rejected pushes is visible.
    let r = c
        .get(s.url("/loki/api/v1/series"))
        .query(&[
            ("start", (now - 30 * 86_400 * 1_000_000_000).to_string()),
            ("end", (now + 7_200 * 1_000_000_000).to_string()),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.text().await.unwrap(),
        "{\"status\":\"success\",\"data\":[]}\n"
    );
}

#[tokio::test]
async fn partial_push_stores_the_valid_entries() {
    let s = TestServer::start("").await;
    let now = now_ns();
    let body = json!({"streams":[
        {"stream":{"app":"mixed"},"values":[[(now - 1_000).to_string(), "good one"], [(now - 9 * 86_400 * 1_000_000_000).to_string(), "too old"], [(now - 2_000).to_string(), "good two"]]},
        {"stream":{"bad-name":"x"},"values":[[(now - 1_000).to_string(), "bad stream"]]}
    ]});
    let (status, text) = s.push_json(None, &body).await;
    assert_eq!(status, 400);
    assert!(text.contains("timestamp too old"), "{text}");
    let r = reqwest::Client::new()
        .get(s.url("/loki/api/v1/query_range"))
        .query(&[("query", r#"{app="mixed"}"#), ("since", "1h")])
        .send()
        .await
        .unwrap();
    let v: Value = serde_json::from_str(&r.text().await.unwrap()).unwrap();
    let lines: Vec<&str> = v["data"]["result"][0]["values"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e[1].as_str().unwrap())
        .collect();
    assert_eq!(lines, ["good one", "good two"]);
}

/// Path, query parameters, expected status, expected message fragment.
type QueryCase<'a> = (&'a str, Vec<(&'a str, &'a str)>, u16, &'a str);

#[tokio::test]
async fn query_errors_table() {
    let s = TestServer::start("").await;
    let c = reqwest::Client::new();
    let cases: Vec<QueryCase<'_>> = vec![
        (
            "/loki/api/v1/query_range",
            vec![("query", r#"{app="x""#)],
            400,
            "parse error at line 1, col ",
        ),
        (
            "/loki/api/v1/query_range",
            vec![("query", r#"{app=~".*"}"#)],
            400,
            "parse error : queries require at least one regexp or equality matcher that does not have an empty-compatible value. For instance, app=~\".*\" does not meet this requirement, but app=~\".+\" will",
        ),
        (
            "/loki/api/v1/query_range",
            vec![("query", r#"{app="x"}"#), ("start", "20"), ("end", "10")],
            400,
            "end timestamp must not be before or equal to start time",
        ),
        (
            "/loki/api/v1/query_range",
            vec![("query", r#"{app="x"}"#), ("limit", "0")],
            400,
            "limit must be a positive value",
        ),
        (
            "/loki/api/v1/query_range",
            vec![("query", r#"{app="x"}"#), ("limit", "6000")],
            400,
            "max entries limit per query exceeded, limit > max_entries_limit_per_query (6000 > 5000)",
        ),
        (
            "/loki/api/v1/query_range",
            vec![("query", r#"{app="x"}"#), ("direction", "up")],
            400,
            "invalid direction 'up'",
        ),
        (
            "/loki/api/v1/query_range",
            vec![("query", r#"{app="x"}"#), ("start", "soon")],
            400,
            "could not parse 'start' parameter: ",
        ),
        (
            "/loki/api/v1/query_range",
            vec![("query", r#"{app="x"}"#), ("step", "-1")],
            400,
            "zero or negative query resolution step widths are not accepted. Try a positive integer",
        ),
        (
            "/loki/api/v1/query_range",
            vec![("query", r#"{app="x"}"#), ("since", "5minutes")],
            400,
            "could not parse 'since' parameter: ",
        ),
        (
            "/loki/api/v1/query_range",
            vec![
                ("query", r#"{app="x"}"#),
                ("start", "1"),
                ("end", "3000000"),
            ],
            400,
            "the query time range exceeds the limit (query length: ",
        ),
        (
            "/loki/api/v1/query",
            vec![("query", r#"{app="x"}"#)],
            400,
            "log queries are not supported as an instant query type, please change your query to a range query type",
        ),
        (
            "/loki/api/v1/series",
            vec![("match[]", "{app=")],
            400,
            "parse error at line 1, col ",
        ),
        (
            "/loki/api/v1/labels",
            vec![("start", "x")],
            400,
            "could not parse 'start' parameter: ",
        ),
        (
            "/loki/api/v1/index/stats",
            vec![],
            400,
            "query parameter is required",
        ),
    ];
    for (path, params, status, prefix) in cases {
        let r = c.get(s.url(path)).query(&params).send().await.unwrap();
        let code = r.status().as_u16();
        let text = r.text().await.unwrap();
        assert_eq!(code, status, "{path} {params:?}: {text}");
        assert!(text.starts_with(prefix), "{path} {params:?}: {text:?}");
    }
}
