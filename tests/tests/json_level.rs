//! One JSON scanner: the `detected_level` the push path attaches to a JSON line is the `level`
//! that `| json` extracts from it, including on lines a validating parser rejects (Loki reads
//! both with its lenient scanner). Every expected level was recorded from a reference Loki.
//! (An escaped level *value* is the one deliberate gap: Loki matches the value as written, so
//! `"\u0044EBUG"` is no level at ingest though `| json` extracts `DEBUG`; a unit test in
//! `parquetry-ingest` pins that.)

use parquetry_e2e::{TestServer, now_ns};
use serde_json::json;

/// Lines whose level only a lenient read finds, each with the `detected_level` expected.
const LINES: [(&str, &str); 6] = [
    // An invalid escape in an earlier value: a validating parser stops before `level`.
    (r#"{"msg":"bad \q escape","level":"WRN"}"#, "warn"),
    // A number a validating parser refuses (`1e`), then the level.
    (r#"{"took":1e,"level":"trc"}"#, "trace"),
    // An escaped key, unescaped alike.
    (r#"{"le\u0076el":"DBG","msg":"x"}"#, "debug"),
    // Nested under `log`.
    (
        r#"{"log":{"level":"Information"},"stream":"stdout"}"#,
        "info",
    ),
    // A trailing comma.
    (r#"{"severity":"critical",}"#, "critical"),
    // A malformed value after the level: what came before still counts.
    (r#"{"lvl":"err","n":tru}"#, "error"),
];

#[tokio::test]
async fn detected_level_is_what_json_extracts() {
    let s = TestServer::start("").await;
    let t0 = now_ns() - 60_000_000_000;
    let values: Vec<_> = LINES
        .iter()
        .enumerate()
        .map(|(i, (line, _))| json!([(t0 + i as i64).to_string(), line]))
        .collect();
    s.push(&json!({"streams": [{"stream": {"app": "jl"}, "values": values}]}))
        .await;

    let (status, body) = s
        .get_json(
            "/loki/api/v1/query_range",
            &[
                ("query", r#"{app="jl"} | json"#),
                ("start", &(t0 - 1).to_string()),
                ("end", &(t0 + 1_000).to_string()),
                ("direction", "forward"),
                ("limit", "100"),
            ],
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let mut seen = 0;
    for stream in body["data"]["result"].as_array().expect("streams") {
        let labels = &stream["stream"];
        for v in stream["values"].as_array().expect("values") {
            let line = v[1].as_str().expect("line");
            let (_, want) = LINES
                .iter()
                .find(|(l, _)| *l == line)
                .unwrap_or_else(|| panic!("unexpected line {line}"));
            assert_eq!(labels["detected_level"], *want, "{line}: {labels}");
            // The level field `| json` extracted normalises to the detected level.
            let field = ["level", "severity", "lvl", "log_level"]
                .iter()
                .find_map(|f| labels[*f].as_str())
                .unwrap_or_else(|| panic!("{line}: no level label in {labels}"));
            let normalised = match field.to_ascii_lowercase().as_str() {
                "wrn" | "warn" | "warning" => "warn",
                "trc" | "trace" => "trace",
                "dbg" | "debug" => "debug",
                "inf" | "info" | "information" => "info",
                "err" | "error" => "error",
                other => other.to_string().leak(),
            };
            assert_eq!(normalised, *want, "{line}: {labels}");
            seen += 1;
        }
    }
    assert_eq!(seen, LINES.len(), "{body}");
    s.stop().await;
}
