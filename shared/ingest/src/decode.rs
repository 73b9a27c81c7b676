//! Turning a push body into a [`PushRequest`]: size limits, `Content-Encoding`, the choice
//! between JSON and snappy-compressed protobuf, and protobuf conversion (JSON bodies are
//! parsed in the private `json` module).
//!
//! Every decompression is bounded: gzip and deflate output is read through a limit of
//! `max_decompressed_size + 1` bytes, and raw snappy's declared length is checked before any
//! output is allocated, so a small hostile body cannot make us allocate gigabytes.

use std::borrow::Cow;
use std::io::Read;

use parquetry_model::config::DistributorConfig;

use crate::error::IngestError;
use crate::json;
use crate::proto::lenient;
use crate::push::{Entry, PushRequest, PushStream};

/// The size limits applied while decoding a body (Loki's `distributor` settings).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DecodeLimits {
    /// Largest body accepted as received, before any decompression.
    pub max_recv_msg_size: u64,
    /// Largest body accepted after decompression.
    pub max_decompressed_size: u64,
}

impl From<&DistributorConfig> for DecodeLimits {
    fn from(c: &DistributorConfig) -> Self {
        DecodeLimits {
            max_recv_msg_size: c.max_recv_msg_size.0,
            max_decompressed_size: c.max_decompressed_size.0,
        }
    }
}

impl Default for DecodeLimits {
    fn default() -> Self {
        DecodeLimits::from(&DistributorConfig::default())
    }
}

/// The first bytes of a framed (streaming-format) snappy body: the stream identifier chunk.
const SNAPPY_FRAMED_MAGIC: &[u8] = b"\xff\x06\x00\x00sNaPpY";

/// Decodes a push body.
///
/// * `content_type`, `content_encoding`: the request headers, if present.
/// * `v1_path`: whether the request path contains `/loki/api/v1`; selects v1 over v0 JSON.
///
/// `Content-Encoding` must be absent, empty, `snappy`, `gzip` or `deflate` (raw DEFLATE, or
/// zlib-wrapped, which is sniffed). A media type of `application/json` selects JSON; anything
/// else, including no `Content-Type` at all, selects snappy-compressed protobuf (block format,
/// or the framed format, recognised by its stream identifier).
pub fn decode_push(
    body: &[u8],
    content_type: Option<&str>,
    content_encoding: Option<&str>,
    v1_path: bool,
    limits: &DecodeLimits,
) -> Result<PushRequest, IngestError> {
    if body.len() as u64 > limits.max_recv_msg_size {
        return Err(IngestError::BodyTooLarge {
            size: body.len() as u64,
            max: limits.max_recv_msg_size,
        });
    }
    let encoding = content_encoding.unwrap_or("");
    let body: Cow<'_, [u8]> = match encoding {
        "" | "snappy" => Cow::Borrowed(body),
        "gzip" => Cow::Owned(inflate_gzip(body, limits.max_decompressed_size)?),
        "deflate" => Cow::Owned(inflate_deflate(body, limits.max_decompressed_size)?),
        other => return Err(IngestError::UnsupportedEncoding(other.to_string())),
    };
    if is_json(content_type) {
        let body = unsnappy_json(&body, encoding, limits)?;
        if v1_path {
            json::decode_v1(&body)
        } else {
            json::decode_v0(&body)
        }
    } else {
        let raw = unsnappy(&body, limits)?;
        decode_protobuf(&raw)
    }
}

/// Whether the media type, parameters stripped, is `application/json` (case-insensitive).
fn is_json(content_type: Option<&str>) -> bool {
    content_type
        .and_then(|ct| ct.split(';').next())
        .is_some_and(|mt| mt.trim().eq_ignore_ascii_case("application/json"))
}

/// Loki treats `Content-Encoding: snappy` as a no-op for JSON, so plain JSON must pass. A body
/// that cannot be JSON but is snappy data is decompressed as a courtesy to misconfigured
/// shippers; anything else goes to the JSON parser unchanged and fails there with its message.
fn unsnappy_json<'a>(
    body: &'a [u8],
    encoding: &str,
    limits: &DecodeLimits,
) -> Result<Cow<'a, [u8]>, IngestError> {
    let looks_like_json = body
        .iter()
        .find(|c| !c.is_ascii_whitespace())
        .is_none_or(|&c| c == b'{');
    if encoding == "snappy" && !looks_like_json {
        match unsnappy(body, limits) {
            Ok(v) => return Ok(Cow::Owned(v)),
            Err(e @ IngestError::DecompressedTooLarge { .. }) => return Err(e),
            Err(_) => {}
        }
    }
    Ok(Cow::Borrowed(body))
}

/// Reads `r` to the end, failing with 413 as soon as more than `max` bytes come out.
fn read_bounded(
    r: impl Read,
    max: u64,
    size_hint: usize,
    what: &str,
) -> Result<Vec<u8>, IngestError> {
    // The hint avoids a few reallocations; the cap keeps a lying hint from reserving much.
    let cap = size_hint
        .min(usize::try_from(max).unwrap_or(usize::MAX))
        .min(64 << 20);
    let mut out = Vec::with_capacity(cap);
    r.take(max.saturating_add(1))
        .read_to_end(&mut out)
        .map_err(|e| IngestError::Decode(format!("failed to decompress {what} body: {e}")))?;
    if out.len() as u64 > max {
        return Err(IngestError::DecompressedTooLarge {
            size: out.len() as u64,
            max,
        });
    }
    Ok(out)
}

fn inflate_gzip(body: &[u8], max: u64) -> Result<Vec<u8>, IngestError> {
    // Multi-member, like Go's gzip reader: concatenated gzip files are one body.
    let r = flate2::bufread::MultiGzDecoder::new(body);
    read_bounded(r, max, body.len().saturating_mul(4), "gzip")
}

/// Go's `compress/flate` (what Loki uses) reads raw DEFLATE, but many HTTP clients send zlib
/// for `deflate`, so a valid zlib header selects zlib, falling back to raw if that fails.
fn inflate_deflate(body: &[u8], max: u64) -> Result<Vec<u8>, IngestError> {
    let hint = body.len().saturating_mul(4);
    if has_zlib_header(body) {
        match read_bounded(flate2::bufread::ZlibDecoder::new(body), max, hint, "zlib") {
            Ok(v) => return Ok(v),
            Err(e @ IngestError::DecompressedTooLarge { .. }) => return Err(e),
            Err(_) => {}
        }
    }
    read_bounded(
        flate2::bufread::DeflateDecoder::new(body),
        max,
        hint,
        "deflate",
    )
}

/// RFC 1950: method 8 (deflate), window ≤ 32 KiB, no preset dictionary, header checksum.
fn has_zlib_header(b: &[u8]) -> bool {
    match b {
        [cmf, flg, ..] => {
            cmf & 0x0f == 8
                && cmf >> 4 <= 7
                && flg & 0x20 == 0
                && (u16::from(*cmf) << 8 | u16::from(*flg)) % 31 == 0
        }
        _ => false,
    }
}

/// Undoes the snappy compression of a protobuf body: framed if it starts with the stream
/// identifier, block format otherwise.
fn unsnappy(body: &[u8], limits: &DecodeLimits) -> Result<Vec<u8>, IngestError> {
    let max = limits.max_decompressed_size;
    if body.starts_with(SNAPPY_FRAMED_MAGIC) {
        let r = snap::read::FrameDecoder::new(body);
        return read_bounded(r, max, body.len().saturating_mul(3), "framed snappy");
    }
    let hint = |e: snap::Error| {
        IngestError::Decode(format!(
            "failed to decode push body as snappy-compressed protobuf ({e}); \
             protobuf bodies must be snappy-compressed, and JSON bodies need \
             Content-Type: application/json"
        ))
    };
    let len = snap::raw::decompress_len(body).map_err(hint)?;
    if len as u64 > max {
        return Err(IngestError::DecompressedTooLarge {
            size: len as u64,
            max,
        });
    }
    snap::raw::Decoder::new().decompress_vec(body).map_err(hint)
}

fn decode_protobuf(raw: &[u8]) -> Result<PushRequest, IngestError> {
    let msg = <lenient::PushRequest as prost::Message>::decode(raw)
        .map_err(|e| IngestError::Decode(format!("failed to decode protobuf PushRequest: {e}")))?;
    let mut streams = Vec::with_capacity(msg.streams.len());
    for (si, s) in msg.streams.into_iter().enumerate() {
        let mut entries = Vec::with_capacity(s.entries.len());
        for (ei, e) in s.entries.into_iter().enumerate() {
            let ts_ns = proto_ts_ns(e.timestamp, si, ei)?;
            entries.push(Entry {
                ts_ns,
                line: lossy(e.line),
                structured_metadata: e
                    .structured_metadata
                    .into_iter()
                    .map(|p| (lossy(p.name), lossy(p.value)))
                    .collect(),
            });
        }
        streams.push(PushStream {
            labels: lossy(s.labels),
            entries,
        });
    }
    Ok(PushRequest { streams })
}

/// `0001-01-01T00:00:00Z` in Unix seconds: the lower bound of a valid protobuf timestamp.
const MIN_PROTO_SECONDS: i64 = -62_135_596_800;
/// `10000-01-01T00:00:00Z` in Unix seconds: the exclusive upper bound.
const MAX_PROTO_SECONDS: i64 = 253_402_300_800;

/// A missing timestamp is the zero value (the epoch), as in Loki's non-nullable Go field.
fn proto_ts_ns(
    ts: Option<lenient::Timestamp>,
    stream: usize,
    entry: usize,
) -> Result<i64, IngestError> {
    let ts = ts.unwrap_or_default();
    if !(MIN_PROTO_SECONDS..MAX_PROTO_SECONDS).contains(&ts.seconds)
        || !(0..1_000_000_000).contains(&ts.nanos)
    {
        return Err(IngestError::Decode(format!(
            "invalid timestamp in stream {stream} entry {entry}: seconds {} nanos {}; seconds must \
             lie in [0001-01-01, 10000-01-01) and nanos in [0, 1000000000)",
            ts.seconds, ts.nanos
        )));
    }
    Ok(ts
        .seconds
        .checked_mul(1_000_000_000)
        .and_then(|s| s.checked_add(i64::from(ts.nanos)))
        .unwrap_or(if ts.seconds < 0 { i64::MIN } else { i64::MAX }))
}

/// Takes ownership without copying when the bytes are valid UTF-8.
fn lossy(v: Vec<u8>) -> String {
    match String::from_utf8(v) {
        Ok(s) => s,
        Err(e) => String::from_utf8_lossy(e.as_bytes()).into_owned(),
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;
    use crate::proto;
    use prost::Message;

    /// One stream `{a="b"}` with one entry at 1700000000s + 5ns, line `hi`, metadata `k=v`,
    /// encoded by hand from the field numbers (tag byte = field << 3 | wire type).
    const GOLDEN: &[u8] = &[
        0x0a, 0x21, // PushRequest.streams (1, LEN) 33 bytes
        0x0a, 0x07, b'{', b'a', b'=', b'"', b'b', b'"', b'}', // StreamAdapter.labels (1, LEN)
        0x12, 0x16, // StreamAdapter.entries (2, LEN) 22 bytes
        0x0a, 0x08, // EntryAdapter.timestamp (1, LEN) 8 bytes
        0x08, 0x80, 0xe2, 0xcf, 0xaa, 0x06, // Timestamp.seconds (1, VARINT) 1700000000
        0x10, 0x05, // Timestamp.nanos (2, VARINT) 5
        0x12, 0x02, b'h', b'i', // EntryAdapter.line (2, LEN)
        0x1a, 0x06, // EntryAdapter.structuredMetadata (3, LEN) 6 bytes
        0x0a, 0x01, b'k', // LabelPairAdapter.name (1, LEN)
        0x12, 0x01, b'v', // LabelPairAdapter.value (2, LEN)
    ];

    fn golden_model() -> PushRequest {
        PushRequest {
            streams: vec![PushStream {
                labels: r#"{a="b"}"#.into(),
                entries: vec![Entry {
                    ts_ns: 1_700_000_000_000_000_005,
                    line: "hi".into(),
                    structured_metadata: vec![("k".into(), "v".into())],
                }],
            }],
        }
    }

    fn golden_struct() -> proto::PushRequest {
        proto::PushRequest {
            streams: vec![proto::StreamAdapter {
                labels: r#"{a="b"}"#.into(),
                entries: vec![proto::EntryAdapter {
                    timestamp: Some(proto::Timestamp::from_unix_nanos(1_700_000_000_000_000_005)),
                    line: "hi".into(),
                    structured_metadata: vec![proto::LabelPairAdapter {
                        name: "k".into(),
                        value: "v".into(),
                    }],
                    parsed: vec![],
                }],
                hash: 0,
            }],
            format: String::new(),
        }
    }

    fn snappy(b: &[u8]) -> Vec<u8> {
        snap::raw::Encoder::new().compress_vec(b).unwrap()
    }

    fn framed(b: &[u8]) -> Vec<u8> {
        let mut w = snap::write::FrameEncoder::new(Vec::new());
        w.write_all(b).unwrap();
        w.into_inner().unwrap()
    }

    fn gzip(b: &[u8]) -> Vec<u8> {
        let mut w = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        w.write_all(b).unwrap();
        w.finish().unwrap()
    }

    fn zlib(b: &[u8]) -> Vec<u8> {
        let mut w = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
        w.write_all(b).unwrap();
        w.finish().unwrap()
    }

    fn raw_deflate(b: &[u8]) -> Vec<u8> {
        let mut w = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::default());
        w.write_all(b).unwrap();
        w.finish().unwrap()
    }

    const PB: Option<&str> = Some("application/x-protobuf");
    const JSON: Option<&str> = Some("application/json");

    fn dec(body: &[u8], ct: Option<&str>, ce: Option<&str>) -> Result<PushRequest, IngestError> {
        decode_push(body, ct, ce, true, &DecodeLimits::default())
    }

    fn err(body: &[u8], ct: Option<&str>, ce: Option<&str>) -> (u16, String) {
        let e = dec(body, ct, ce).unwrap_err();
        (e.status(), e.to_string())
    }

    #[test]
    fn golden_bytes_match_the_field_numbers() {
        assert_eq!(golden_struct().encode_to_vec(), GOLDEN);
        assert_eq!(dec(&snappy(GOLDEN), PB, None).unwrap(), golden_model());
        let back = proto::PushRequest::decode(GOLDEN).unwrap();
        assert_eq!(back, golden_struct());
    }

    #[test]
    fn ignored_fields_are_skipped() {
        let mut req = golden_struct();
        req.format = "loki".into();
        req.streams[0].hash = 12345;
        req.streams[0].entries[0].parsed = vec![proto::LabelPairAdapter {
            name: "p".into(),
            value: "q".into(),
        }];
        let body = snappy(&req.encode_to_vec());
        assert_eq!(dec(&body, PB, None).unwrap(), golden_model());
    }

    #[test]
    fn snappy_variants_and_content_types() {
        let raw = snappy(GOLDEN);
        for ct in [
            PB,
            None,
            Some(""),
            Some("text/plain"),
            Some("application/json-seq"),
        ] {
            assert_eq!(dec(&raw, ct, None).unwrap(), golden_model(), "{ct:?}");
        }
        // Vector: protobuf with Content-Encoding: snappy, a no-op before the snappy step.
        assert_eq!(dec(&raw, PB, Some("snappy")).unwrap(), golden_model());
        assert_eq!(dec(&raw, PB, Some("")).unwrap(), golden_model());
        assert_eq!(dec(&framed(GOLDEN), PB, None).unwrap(), golden_model());
        // gzip, then snappy, then protobuf.
        assert_eq!(dec(&gzip(&raw), PB, Some("gzip")).unwrap(), golden_model());
        assert_eq!(
            dec(&zlib(&raw), PB, Some("deflate")).unwrap(),
            golden_model()
        );
        assert_eq!(
            dec(&raw_deflate(&raw), PB, Some("deflate")).unwrap(),
            golden_model()
        );
    }

    const V1: &str =
        r#"{"streams":[{"stream":{"a":"b"},"values":[["1700000000000000005","hi",{"k":"v"}]]}]}"#;

    #[test]
    fn json_with_every_encoding() {
        for ct in [
            JSON,
            Some("Application/JSON; charset=utf-8"),
            Some(" application/json ;x=y"),
        ] {
            assert_eq!(
                dec(V1.as_bytes(), ct, None).unwrap(),
                golden_model(),
                "{ct:?}"
            );
        }
        assert_eq!(
            dec(&gzip(V1.as_bytes()), JSON, Some("gzip")).unwrap(),
            golden_model()
        );
        assert_eq!(
            dec(&zlib(V1.as_bytes()), JSON, Some("deflate")).unwrap(),
            golden_model()
        );
        assert_eq!(
            dec(&raw_deflate(V1.as_bytes()), JSON, Some("deflate")).unwrap(),
            golden_model()
        );
        // snappy is a no-op for JSON in Loki; snappy-compressed JSON is accepted as a courtesy.
        assert_eq!(
            dec(V1.as_bytes(), JSON, Some("snappy")).unwrap(),
            golden_model()
        );
        assert_eq!(
            dec(&snappy(V1.as_bytes()), JSON, Some("snappy")).unwrap(),
            golden_model()
        );
    }

    #[test]
    fn v1_json_details() {
        let body = r#"{"streams":[
            {"stream":{"app":"web","env":"prod"},"values":[["1","a"],null,["2","b",{"t":"x"},"extra"],["3","c",null]],"unknown":1},
            {"values":null},
            {"stream":{"x.y":"q\"\\","n":"1","n":"2"},"values":[]}
        ],"other":true}"#;
        let r = dec(body.as_bytes(), JSON, None).unwrap();
        assert_eq!(r.streams.len(), 3);
        assert_eq!(r.streams[0].labels, r#"{app="web", env="prod"}"#);
        let e = &r.streams[0].entries;
        assert_eq!(e.len(), 3);
        assert_eq!((e[0].ts_ns, e[0].line.as_str()), (1, "a"));
        assert_eq!(e[1].structured_metadata, vec![("t".into(), "x".into())]);
        assert!(e[2].structured_metadata.is_empty());
        assert_eq!(r.streams[1].labels, "{}");
        assert!(r.streams[1].entries.is_empty());
        // A repeated name keeps its last value; odd names are quoted so they parse back.
        assert_eq!(r.streams[2].labels, r#"{n="2", "x.y"="q\"\\"}"#);
        let l = crate::parse_labels(&r.streams[2].labels).unwrap();
        assert_eq!(l.get("x.y"), Some("q\"\\"));

        assert!(
            dec(br#"{"streams":null}"#, JSON, None)
                .unwrap()
                .streams
                .is_empty()
        );
        assert!(dec(b"{}", JSON, None).unwrap().streams.is_empty());
    }

    #[test]
    fn v1_json_errors() {
        let cases = [
            (
                r#"{"streams":[{"stream":{},"values":[[1700000000000000000,"x"]]}]}"#,
                "invalid type: integer `1700000000000000000`, expected a string holding integer Unix nanoseconds",
            ),
            (
                r#"{"streams":[{"stream":{},"values":[["1.5","x"]]}]}"#,
                r#"invalid timestamp "1.5": expected a string holding integer Unix nanoseconds"#,
            ),
            (
                r#"{"streams":[{"stream":{},"values":[["1",5]]}]}"#,
                "invalid type: integer `5`, expected a string",
            ),
            (
                r#"{"streams":[{"stream":{},"values":[["1","x",{"k":1}]]}]}"#,
                "invalid type: integer `1`, expected a string",
            ),
            (
                r#"{"streams":[{"stream":{},"values":[["1","x",["k"]]]}]}"#,
                "expected a structured metadata object of string values",
            ),
            (
                r#"{"streams":[{"stream":{"a":1},"values":[]}]}"#,
                "invalid type: integer `1`, expected a string",
            ),
            (
                r#"{"streams":[{"stream":{},"values":[["1"]]}]}"#,
                "invalid length 1",
            ),
            (
                r#"{"streams":[{"stream":{},"values":{}}]}"#,
                "expected an array of [timestamp, line] entries",
            ),
            (
                r#"{"streams":[{"stream":{},"values":[{"ts":"1"}]}]}"#,
                "expected an entry array",
            ),
            (
                "{not json",
                "failed to parse push body as v1 JSON: key must be a string at line 1 column 2",
            ),
            (
                "",
                "failed to parse push body as v1 JSON: EOF while parsing a value",
            ),
        ];
        for (body, want) in cases {
            let (status, text) = err(body.as_bytes(), JSON, None);
            assert_eq!(status, 400, "{body}");
            assert!(
                text.starts_with("failed to parse push body as v1 JSON: "),
                "{text}"
            );
            assert!(text.contains(want), "{body}: {text}");
        }
    }

    #[test]
    fn v0_json() {
        let body = r#"{"streams":[{"labels":"{app=\"web\"}","entries":[
            {"ts":"2023-11-14T22:13:20.000000001Z","line":"a"},
            {"ts":"2023-11-14T23:13:20+01:00","line":"b"},
            null]}]}"#;
        let r = decode_push(body.as_bytes(), JSON, None, false, &DecodeLimits::default()).unwrap();
        assert_eq!(r.streams[0].labels, r#"{app="web"}"#);
        let e = &r.streams[0].entries;
        assert_eq!(e.len(), 2);
        assert_eq!(
            (e[0].ts_ns, e[0].line.as_str()),
            (1_700_000_000_000_000_001, "a")
        );
        assert_eq!(e[1].ts_ns, 1_700_000_000_000_000_000);

        let bad = r#"{"streams":[{"labels":"{}","entries":[{"ts":"yesterday","line":"a"}]}]}"#;
        let e =
            decode_push(bad.as_bytes(), JSON, None, false, &DecodeLimits::default()).unwrap_err();
        assert_eq!(e.status(), 400);
        assert!(
            e.to_string().starts_with(
                r#"failed to parse push body as v0 JSON: invalid timestamp "yesterday""#
            ),
            "{e}"
        );
        let missing = r#"{"streams":[{"labels":"{}","entries":[{"line":"a"}]}]}"#;
        let e = decode_push(
            missing.as_bytes(),
            JSON,
            None,
            false,
            &DecodeLimits::default(),
        )
        .unwrap_err();
        assert!(e.to_string().contains("missing field `ts`"), "{e}");
    }

    #[test]
    fn unsupported_encoding() {
        assert_eq!(
            err(b"x", PB, Some("br")),
            (400, r#"Content-Encoding "br" not supported"#.into())
        );
        assert_eq!(
            err(b"x", PB, Some("GZIP")),
            (400, r#"Content-Encoding "GZIP" not supported"#.into())
        );
    }

    #[test]
    fn body_size_limit() {
        let limits = DecodeLimits {
            max_recv_msg_size: 10,
            max_decompressed_size: 100,
        };
        let e = decode_push(&[0u8; 11], PB, None, true, &limits).unwrap_err();
        assert_eq!(e.status(), 413);
        assert_eq!(
            e.to_string(),
            "request body too large: message size too large than max (11 vs 10)"
        );
        assert!(decode_push(&snappy(b""), PB, None, true, &limits).is_ok());
    }

    #[test]
    fn gzip_bomb_is_not_inflated() {
        // 1 GiB of zeros as 1024 concatenated gzip members of 1 MiB each: about 1 MB on the
        // wire. Inflating it all would take seconds and a gigabyte; the limit stops at 1 MiB.
        let member = gzip(&vec![0u8; 1 << 20]);
        let bomb = member.repeat(1024);
        let limits = DecodeLimits {
            max_recv_msg_size: 100 << 20,
            max_decompressed_size: 1 << 20,
        };
        let start = std::time::Instant::now();
        let e = decode_push(&bomb, JSON, Some("gzip"), true, &limits).unwrap_err();
        assert_eq!(e.status(), 413);
        assert_eq!(
            e.to_string(),
            "decompressed message size too large than max (1048577 vs 1048576)"
        );
        assert!(start.elapsed() < std::time::Duration::from_secs(5));

        let e = decode_push(
            &zlib(&vec![0u8; 2 << 20]),
            PB,
            Some("deflate"),
            true,
            &limits,
        )
        .unwrap_err();
        assert_eq!(e.status(), 413);
        let e = decode_push(
            &raw_deflate(&vec![0u8; 2 << 20]),
            PB,
            Some("deflate"),
            true,
            &limits,
        )
        .unwrap_err();
        assert_eq!(e.status(), 413);
    }

    #[test]
    fn snappy_size_limits() {
        let limits = DecodeLimits {
            max_recv_msg_size: 100 << 20,
            max_decompressed_size: 1000,
        };
        // A raw snappy header claiming 1 GiB: refused before allocating.
        let e = decode_push(&[0x80, 0x80, 0x80, 0x80, 0x04], PB, None, true, &limits).unwrap_err();
        assert_eq!(
            e.to_string(),
            "decompressed message size too large than max (1073741824 vs 1000)"
        );
        let e = decode_push(&framed(&[0u8; 5000]), PB, None, true, &limits).unwrap_err();
        assert_eq!(
            e.to_string(),
            "decompressed message size too large than max (1001 vs 1000)"
        );
        let e = decode_push(&snappy(&[0u8; 5000]), PB, None, true, &limits).unwrap_err();
        assert_eq!(e.status(), 413);
    }

    #[test]
    fn decoder_failures_say_what_was_wrong() {
        let (s, t) = err(b"\xff\xff\xff\xff\xff\xff", PB, None);
        assert_eq!(s, 400);
        assert!(
            t.starts_with("failed to decode push body as snappy-compressed protobuf (snappy: "),
            "{t}"
        );
        assert!(t.contains("Content-Type: application/json"), "{t}");
        // Valid snappy, broken protobuf (a LEN field running past the end).
        let (s, t) = err(&snappy(b"\x0a\x10\x0a"), PB, None);
        assert_eq!(s, 400);
        assert!(
            t.starts_with("failed to decode protobuf PushRequest: "),
            "{t}"
        );
        let (s, t) = err(b"not gzip", PB, Some("gzip"));
        assert_eq!(s, 400);
        assert!(t.starts_with("failed to decompress gzip body: "), "{t}");
        let (s, t) = err(b"\xff\xff\xff", PB, Some("deflate"));
        assert_eq!(s, 400);
        assert!(t.starts_with("failed to decompress deflate body: "), "{t}");
        let mut bad_frame = framed(b"hello world");
        let n = bad_frame.len();
        bad_frame[n - 1] ^= 0xff;
        let (s, t) = err(&bad_frame, PB, None);
        assert_eq!(s, 400);
        assert!(
            t.starts_with("failed to decompress framed snappy body: "),
            "{t}"
        );
    }

    fn one_entry(ts: Option<proto::Timestamp>, line: &[u8]) -> Vec<u8> {
        // Built with the lenient mirror so the line may hold invalid UTF-8.
        let req = lenient::PushRequest {
            streams: vec![lenient::StreamAdapter {
                labels: b"{a=\"b\"}".to_vec(),
                entries: vec![lenient::EntryAdapter {
                    timestamp: ts,
                    line: line.to_vec(),
                    structured_metadata: vec![],
                }],
            }],
        };
        snappy(&req.encode_to_vec())
    }

    #[test]
    fn protobuf_timestamps() {
        let ts = |seconds, nanos| Some(proto::Timestamp { seconds, nanos });
        let ok = |t| dec(&one_entry(t, b"x"), PB, None).map(|r| r.streams[0].entries[0].ts_ns);
        assert_eq!(ok(None).unwrap(), 0);
        assert_eq!(ok(ts(-1, 999_999_999)).unwrap(), -1);
        assert_eq!(ok(ts(MIN_PROTO_SECONDS, 0)).unwrap(), i64::MIN);
        assert_eq!(
            ok(ts(MAX_PROTO_SECONDS - 1, 999_999_999)).unwrap(),
            i64::MAX
        );
        for (s, n) in [
            (MIN_PROTO_SECONDS - 1, 0),
            (MAX_PROTO_SECONDS, 0),
            (0, -1),
            (0, 1_000_000_000),
        ] {
            let e = ok(ts(s, n)).unwrap_err();
            assert_eq!(e.status(), 400);
            assert_eq!(
                e.to_string(),
                format!(
                    "invalid timestamp in stream 0 entry 0: seconds {s} nanos {n}; seconds must \
                     lie in [0001-01-01, 10000-01-01) and nanos in [0, 1000000000)"
                )
            );
        }
    }

    #[test]
    fn invalid_utf8_is_replaced_not_rejected() {
        let r = dec(&one_entry(None, b"caf\xe9"), PB, None).unwrap();
        assert_eq!(r.streams[0].entries[0].line, "caf\u{fffd}");
    }

    #[test]
    fn timestamp_split() {
        let t = proto::Timestamp::from_unix_nanos(-1);
        assert_eq!((t.seconds, t.nanos), (-1, 999_999_999));
    }

    #[test]
    fn garbage_never_panics() {
        let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        let valid = snappy(GOLDEN);
        for round in 0..2000 {
            let len = (next() % 64) as usize;
            let mut body: Vec<u8> = (0..len).map(|_| next() as u8).collect();
            if round % 2 == 0 {
                // Mutations of a valid body reach deeper into the decoders.
                body = valid.clone();
                let i = (next() as usize) % body.len();
                body[i] = next() as u8;
            }
            for (ct, ce) in [
                (PB, None),
                (JSON, None),
                (PB, Some("gzip")),
                (PB, Some("deflate")),
            ] {
                let _ = dec(&body, ct, ce);
                let _ = decode_push(&body, ct, ce, false, &DecodeLimits::default());
            }
        }
    }
}
