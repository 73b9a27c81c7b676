//! Push bodies built to hurt: decompression bombs are refused with Loki's 400 at the
//! decompressed limit (or, when garbage, at their first bad byte) without inflating them, and
//! invalid UTF-8 ends as it does in Loki; the server then serves ordinary pushes as before.

use std::io::Write;

use parquetry_e2e::{TestServer, gzip, now_ns, protobuf_body};
use serde_json::json;

const MIB: usize = 1 << 20;

/// The server's decompressed limit in the bomb tests: small, so each bomb can be small too.
const LIMIT_YAML: &str = "distributor:\n  max_decompressed_size: 1MiB\n";

fn too_large(size: usize) -> String {
    format!("decompressed message size too large than max ({size} vs {MIB})")
}

async fn post(
    s: &TestServer,
    content_type: &str,
    encoding: Option<&str>,
    body: Vec<u8>,
) -> (u16, String) {
    let mut req = reqwest::Client::new()
        .post(s.url("/loki/api/v1/push"))
        .header("Content-Type", content_type)
        .body(body);
    if let Some(e) = encoding {
        req = req.header("Content-Encoding", e);
    }
    let r = req.send().await.unwrap();
    let status = r.status().as_u16();
    (status, r.text().await.unwrap())
}

/// The lines of `{app="<app>"}` over the last hour, oldest first.
async fn lines(s: &TestServer, app: &str) -> Vec<String> {
    let v = s
        .get_ok(
            None,
            "/loki/api/v1/query_range",
            &[
                ("query", format!("{{app=\"{app}\"}}")),
                ("since", "1h".to_string()),
                ("direction", "forward".to_string()),
            ],
        )
        .await;
    v["data"]["result"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|s| s["values"].as_array().unwrap().iter())
        .map(|e| e[1].as_str().unwrap().to_string())
        .collect()
}

/// An ordinary JSON push must still be stored and found.
async fn normal_json_push_works(s: &TestServer, app: &str) {
    let body = json!({"streams":[{"stream":{"app":app},"values":[[(now_ns() - 1_000).to_string(), "still fine"]]}]});
    let (status, text) = post(s, "application/json", None, body.to_string().into_bytes()).await;
    assert_eq!(status, 204, "{text}");
    assert_eq!(lines(s, app).await, ["still fine"]);
}

/// `n` MiB of `byte` as `n` concatenated gzip members of 1 MiB (a few KiB each for a repeated
/// byte); Go's gzip reader, like ours, reads them as one body.
fn gzip_repeat(byte: u8, n: usize) -> Vec<u8> {
    gzip(&vec![byte; MIB]).repeat(n)
}

fn framed(data: &[u8]) -> Vec<u8> {
    let mut w = snap::write::FrameEncoder::new(Vec::new());
    w.write_all(data).unwrap();
    w.into_inner().unwrap()
}

#[tokio::test]
async fn gzip_json_bombs_are_refused_without_inflating() {
    let s = TestServer::start(LIMIT_YAML).await;
    // Valid JSON opening a line that 64 MiB of `a` then fill: only the limit stops it.
    let prefix = format!(
        r#"{{"streams":[{{"stream":{{"app":"bomb"}},"values":[["{}",""#,
        now_ns()
    );
    let mut bomb = gzip(prefix.as_bytes());
    bomb.extend(gzip_repeat(b'a', 64));
    let (status, text) = post(&s, "application/json", Some("gzip"), bomb).await;
    assert_eq!(status, 400, "{text}");
    assert!(text.starts_with(&too_large(MIB + 1)), "{text:?}");
    normal_json_push_works(&s, "after-gzip-bomb").await;
    assert!(lines(&s, "bomb").await.is_empty());
    s.stop().await;

    // The default limit with 1 GiB of zeros in about 5 MB: past the limit, but not JSON from the first byte, so refused as such after a few MiB.
    let s = TestServer::start("").await;
    let (status, text) = post(&s, "application/json", Some("gzip"), gzip_repeat(0, 1024)).await;
    assert_eq!(status, 400, "{text}");
    assert!(
        text.starts_with("failed to parse push body as v1 JSON: expected value at line 1 column 1"),
        "{text:?}"
    );
    normal_json_push_works(&s, "after-zero-bomb").await;
    s.stop().await;
}

#[tokio::test]
async fn snappy_protobuf_bombs_are_refused_without_inflating() {
    let s = TestServer::start(LIMIT_YAML).await;
    // A real protobuf push of one 8 MiB line: its raw snappy header declares the size, and
    // that is what the message reports, as Loki's does.
    let line = "x".repeat(8 * MIB);
    let body = protobuf_body(&[(r#"{app="bomb"}"#, vec![(now_ns(), line.as_str(), vec![])])]);
    let declared = snap::raw::decompress_len(&body).unwrap();
    assert!(declared > 8 * MIB);
    let (status, text) = post(&s, "application/x-protobuf", None, body).await;
    assert_eq!(status, 400, "{text}");
    assert!(text.starts_with(&too_large(declared)), "{text:?}");

    // Framed snappy holds no total size: it is cut off one byte past the limit.
    let bomb = framed(&vec![0u8; 16 * MIB]);
    let (status, text) = post(&s, "application/x-protobuf", None, bomb.clone()).await;
    assert_eq!(status, 400, "{text}");
    assert!(text.starts_with(&too_large(MIB + 1)), "{text:?}");
    // Vector's way of sending it changes nothing.
    let (status, text) = post(&s, "application/x-protobuf", Some("snappy"), bomb).await;
    assert_eq!(status, 400, "{text}");
    assert!(text.starts_with(&too_large(MIB + 1)), "{text:?}");

    let ok = protobuf_body(&[(
        r#"{app="after-snappy-bomb"}"#,
        vec![(now_ns() - 1_000, "protobuf still fine", vec![])],
    )]);
    let (status, text) = post(&s, "application/x-protobuf", None, ok).await;
    assert_eq!(status, 204, "{text}");
    assert_eq!(
        lines(&s, "after-snappy-bomb").await,
        ["protobuf still fine"]
    );
    assert!(lines(&s, "bomb").await.is_empty());
    s.stop().await;

    // Under Loki's 5000 MiB limit, five bytes declaring almost 4 GiB: no snappy data can hold
    // that, so it is refused as corrupt before the decoder would allocate it.
    let s = TestServer::start("distributor:\n  max_decompressed_size: 5000MiB\n").await;
    let forged = vec![0xfe, 0xff, 0xff, 0xff, 0x0f];
    let (status, text) = post(&s, "application/x-protobuf", None, forged).await;
    assert_eq!(status, 400, "{text}");
    assert!(text.contains("snappy: corrupt input"), "{text:?}");
    normal_json_push_works(&s, "after-forged-header").await;
    s.stop().await;
}

/// A snappy protobuf body whose text holds `raw` where `placeholder` was: protobuf strings are
/// length-prefixed, so a same-length swap keeps the message well formed.
fn with_raw_bytes(
    streams: &[(&str, Vec<parquetry_e2e::TestEntry<'_>>)],
    placeholder: &str,
    raw: &[u8],
) -> Vec<u8> {
    assert_eq!(placeholder.len(), raw.len());
    let mut msg = snap::raw::Decoder::new()
        .decompress_vec(&protobuf_body(streams))
        .unwrap();
    let at = msg
        .windows(placeholder.len())
        .position(|w| w == placeholder.as_bytes())
        .unwrap();
    msg[at..at + raw.len()].copy_from_slice(raw);
    snap::raw::Encoder::new().compress_vec(&msg).unwrap()
}

#[tokio::test]
async fn invalid_utf8_in_protobuf_ends_as_in_loki() {
    let s = TestServer::start("").await;
    // A line keeps its entry, each invalid byte shown as U+FFFD, as Loki's query API shows it.
    let body = with_raw_bytes(
        &[(
            r#"{app="latin1"}"#,
            vec![(now_ns() - 1_000, "caf#!", vec![])],
        )],
        "caf#!",
        b"caf\xe9!",
    );
    let (status, text) = post(&s, "application/x-protobuf", None, body).await;
    assert_eq!(status, 204, "{text}");
    assert_eq!(lines(&s, "latin1").await, ["caf\u{fffd}!"]);

    // In stream labels it is refused with the Prometheus parser's message, as Loki refuses it.
    let body = with_raw_bytes(
        &[(r#"{app="caf#"}"#, vec![(now_ns() - 1_000, "x", vec![])])],
        "caf#",
        b"caf\xe9",
    );
    let (status, text) = post(&s, "application/x-protobuf", None, body).await;
    assert_eq!(status, 400, "{text}");
    assert!(
        text.starts_with("couldn't parse labels: 1:6: parse error: invalid UTF-8 rune"),
        "{text:?}"
    );
    // Never silent: both repairs are counted.
    let metrics = reqwest::get(s.url("/metrics"))
        .await
        .expect("metrics")
        .text()
        .await
        .expect("metrics body");
    for kind in ["lines", "labels"] {
        assert!(
            metrics.contains(&format!(
                "parquetry_push_invalid_utf8_fields_total{{kind=\"{kind}\"}} 1"
            )),
            "{kind}: {metrics}"
        );
    }
    s.stop().await;
}
