//! Hand-ordered JSON for responses.
//!
//! Grafana's streaming parser needs `resultType` and `encodingFlags` before `result`, and
//! label maps are written with keys in ascending byte order, so the envelope is written by
//! hand rather than through a map whose order we do not control.

use std::fmt::Write;

use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use parquetry_query::QueryStats;

pub use parquetry_json::push_str;

/// Appends a JSON object of string pairs, keys in ascending byte order.
pub fn push_map<'a>(out: &mut String, pairs: impl IntoIterator<Item = (&'a str, &'a str)>) {
    push_map_with(out, pairs, push_str);
}

/// [`push_map`] with another string encoder (the tail's legacy stream escapes HTML too).
pub(crate) fn push_map_with<'a>(
    out: &mut String,
    pairs: impl IntoIterator<Item = (&'a str, &'a str)>,
    push_str: fn(&mut String, &str),
) {
    let mut v: Vec<(&str, &str)> = pairs.into_iter().collect();
    v.sort_by(|a, b| a.0.cmp(b.0));
    v.dedup_by(|b, a| a.0 == b.0);
    out.push('{');
    for (i, (k, val)) in v.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        push_str(out, k);
        out.push(':');
        push_str(out, val);
    }
    out.push('}');
}

/// Appends one value of a `streams` result, `["<ts>",<line>]`; categorized, with a third
/// element `{"structuredMetadata":{…},"parsed":{…}}` that leaves out the empty maps.
pub(crate) fn push_entry(
    out: &mut String,
    ts: i64,
    line: &str,
    structured_metadata: &[(String, String)],
    parsed: &[(String, String)],
    categorize: bool,
    push_str: fn(&mut String, &str),
) {
    fn pairs(v: &[(String, String)]) -> impl Iterator<Item = (&str, &str)> {
        v.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }
    let _ = write!(out, "[\"{ts}\",");
    push_str(out, line);
    if categorize {
        out.push_str(",{");
        if !structured_metadata.is_empty() {
            out.push_str("\"structuredMetadata\":");
            push_map_with(out, pairs(structured_metadata), push_str);
        }
        if !parsed.is_empty() {
            if !structured_metadata.is_empty() {
                out.push(',');
            }
            out.push_str("\"parsed\":");
            push_map_with(out, pairs(parsed), push_str);
        }
        out.push('}');
    }
    out.push(']');
}

/// Appends a JSON array of strings.
pub fn push_str_array<'a>(out: &mut String, items: impl IntoIterator<Item = &'a str>) {
    out.push('[');
    for (i, s) in items.into_iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        push_str(out, s);
    }
    out.push(']');
}

/// A finished JSON body with Loki's content type and trailing newline.
pub fn response(mut body: String) -> Response {
    body.push('\n');
    let mut resp = body.into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json; charset=UTF-8"),
    );
    resp
}

/// Opens a successful query response up to its `data` value: `{"status":"success",` then
/// Loki's top-level `warnings` (only when there are some), then `"data":`.
pub fn push_success_start(out: &mut String, warnings: &[String]) {
    out.push_str("{\"status\":\"success\",");
    if !warnings.is_empty() {
        out.push_str("\"warnings\":");
        push_str_array(out, warnings.iter().map(String::as_str));
        out.push(',');
    }
    out.push_str("\"data\":");
}

/// Appends Loki's full `stats` tree: every key present, `summary` filled with true figures.
pub fn push_stats(out: &mut String, s: &QueryStats) {
    let exec = if s.exec_time_s > 0.0 {
        s.exec_time_s
    } else {
        0.0
    };
    let per_sec = |v: u64| {
        if exec > 0.0 {
            (v as f64 / exec) as u64
        } else {
            0
        }
    };
    let cache = r#"{"entriesFound":0,"entriesRequested":0,"entriesStored":0,"bytesReceived":0,"bytesSent":0,"requests":0,"downloadTime":0,"queryLengthServed":0}"#;
    let store = |chunks_ref: u64,
                 downloaded: u64,
                 compressed: u64,
                 decompressed_bytes: u64,
                 decompressed_lines: u64,
                 post_filter: u64| {
        format!(
            r#"{{"totalChunksRef":{chunks_ref},"totalChunksDownloaded":{downloaded},"chunksDownloadTime":0,"queryReferencedStructuredMetadata":false,"queryUsedV2Engine":false,"chunk":{{"headChunkBytes":0,"headChunkLines":0,"decompressedBytes":{decompressed_bytes},"decompressedLines":{decompressed_lines},"compressedBytes":{compressed},"totalDuplicates":0,"postFilterLines":{post_filter},"headChunkStructuredMetadataBytes":0,"decompressedStructuredMetadataBytes":0}},"chunkRefsFetchTime":0,"congestionControlLatency":0,"pipelineWrapperFilteredLines":0,"dataobj":{{"prePredicateDecompressedRows":0,"prePredicateDecompressedBytes":0,"prePredicateDecompressedStructuredMetadataBytes":0,"postPredicateRows":0,"postPredicateDecompressedBytes":0,"postPredicateStructuredMetadataBytes":0,"postFilterRows":0,"pagesScanned":0,"pagesDownloaded":0,"pagesDownloadedBytes":0,"pageBatches":0,"totalRowsAvailable":0,"totalPageDownloadTime":0,"wireBytesTransferred":0}}}}"#
        )
    };
    let _ = write!(
        out,
        r#"{{"summary":{{"bytesProcessedPerSecond":{},"linesProcessedPerSecond":{},"totalBytesProcessed":{},"totalLinesProcessed":{},"execTime":{},"queueTime":0,"subqueries":0,"totalEntriesReturned":{},"splits":0,"shards":0,"totalPostFilterLines":{},"totalStructuredMetadataBytesProcessed":0}},"querier":{{"store":{},"querierExecTime":{}}},"ingester":{{"totalReached":0,"totalChunksMatched":0,"totalBatches":0,"totalLinesSent":0,"store":{}}},"cache":{{"chunk":{cache},"index":{cache},"result":{cache},"statsResult":{cache},"volumeResult":{cache},"seriesResult":{cache},"labelResult":{cache},"instantMetricResult":{cache},"logResult":{cache},"taskResult":{cache}}},"index":{{"totalChunks":{},"postFilterChunks":{},"shardsDuration":0,"usedBloomFilters":false,"totalStreams":{},"chunkRefsLookupTime":0,"bloomFilterTime":0}},"parquetry":{}}}"#,
        per_sec(s.bytes_processed),
        per_sec(s.lines_processed),
        s.bytes_processed,
        s.lines_processed,
        format_float(exec),
        s.entries_returned,
        s.post_filter_lines,
        store(
            s.objects_considered,
            s.objects_scanned,
            s.bytes_scanned,
            s.bytes_processed,
            s.lines_processed,
            s.post_filter_lines
        ),
        format_float(exec),
        store(0, 0, 0, 0, 0, 0),
        s.objects_considered,
        s.objects_scanned,
        s.streams,
        cost_json(s),
    );
}

/// Parquetry's own figures, next to Loki's keys (which stay as Loki writes them): what the
/// query read from storage and what that is estimated to cost.
fn cost_json(s: &QueryStats) -> String {
    let c = &s.cost;
    format!(
        r#"{{"objectsOpened":{},"rowGroupsOpened":{},"getRequests":{},"bytesFetched":{},"partitions":{},"leaves":{},"timeBlocks":{},"foldedLines":{},"lambdaGbSeconds":{},"estimatedCostUsd":{}}}"#,
        c.objects_opened,
        c.row_groups_opened,
        c.get_requests,
        c.bytes_fetched,
        c.partitions,
        c.leaves,
        c.time_blocks,
        c.folded_lines,
        format_float(c.lambda_gb_seconds),
        format_float(c.estimated_cost_usd),
    )
}

/// NaN and the infinities as Prometheus spells them; `None` for a finite value.
pub(crate) fn non_finite(v: f64) -> Option<&'static str> {
    if v.is_nan() {
        Some("NaN")
    } else if v.is_infinite() {
        Some(if v > 0.0 { "+Inf" } else { "-Inf" })
    } else {
        None
    }
}

/// Go's `FormatFloat(v, 'f', -1, 64)`: shortest round-trip, never an exponent; NaN and
/// infinities spelled as Prometheus does.
pub fn format_float(v: f64) -> String {
    if let Some(s) = non_finite(v) {
        return s.into();
    }
    // Rust's Display for f64 is shortest round-trip and never uses an exponent.
    format!("{v}")
}

/// `[1700000000.123,"42"]`: seconds with millisecond precision, as Prometheus renders them,
/// and the value as a string.
pub fn push_point(out: &mut String, t_ns: i64, v: f64) {
    push_point_str(out, t_ns, &format_float(v));
}

/// The one point of a `scalar` result. Loki writes its time in whole milliseconds
/// (`[1795988400000,"2"]`), unlike every other point, which is in seconds; clients written
/// against Loki read it that way.
pub fn push_scalar_point(out: &mut String, t_ns: i64, v: f64) {
    out.push('[');
    out.push_str(&t_ns.div_euclid(1_000_000).to_string());
    out.push_str(",\"");
    out.push_str(&format_float(v));
    out.push_str("\"]");
}

/// Appends a `[seconds, "value"]` sample pair with an already formatted value.
pub fn push_point_str(out: &mut String, t_ns: i64, v: &str) {
    let ms = t_ns.div_euclid(1_000_000);
    out.push('[');
    out.push_str(&ms.div_euclid(1000).to_string());
    let frac = ms.rem_euclid(1000);
    if frac != 0 {
        let s = format!("{frac:03}");
        out.push('.');
        out.push_str(s.trim_end_matches('0'));
    }
    out.push_str(",\"");
    out.push_str(v);
    out.push_str("\"]");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_maps_and_floats() {
        let mut s = String::new();
        push_map(&mut s, [("b", "x\"y"), ("a", "1\n")]);
        assert_eq!(s, r#"{"a":"1\n","b":"x\"y"}"#);
        assert_eq!(format_float(2.0), "2");
        let mut p = String::new();
        push_scalar_point(&mut p, 1_795_997_100_250_999_999, 2.0);
        assert_eq!(p, r#"[1795997100250,"2"]"#);
        assert_eq!(format_float(0.1), "0.1");
        assert_eq!(format_float(1e21), "1000000000000000000000");
        assert_eq!(format_float(f64::INFINITY), "+Inf");
    }

    #[test]
    fn stats_is_valid_json_with_every_section() {
        let mut s = String::new();
        push_stats(
            &mut s,
            &QueryStats {
                lines_processed: 3,
                exec_time_s: 0.5,
                ..Default::default()
            },
        );
        let v: serde_json::Value = serde_json::from_str(&s).unwrap();
        for k in ["summary", "querier", "ingester", "cache", "index"] {
            assert!(v.get(k).is_some(), "{k}");
        }
        assert_eq!(v["summary"]["totalLinesProcessed"], 3);
        assert_eq!(v["summary"]["linesProcessedPerSecond"], 6);
        assert_eq!(v["cache"]["logResult"]["requests"], 0);
        assert_eq!(v["querier"]["store"]["chunk"]["decompressedLines"], 3);
        assert_eq!(v["parquetry"]["getRequests"], 0);
    }
}
