//! OpenTelemetry logs (OTLP/HTTP, `POST /otlp/v1/logs`) turned into a [`PushRequest`], with
//! Loki's attribute mapping, so that validation, `service_name` and `detected_level` then run
//! exactly as for a Loki push.
//!
//! Owns: the body (`application/x-protobuf` or OTLP's JSON mapping, optionally gzip, with the
//! push path's size limits), the mapping of resources, scopes and records to streams and
//! structured metadata under `limits_config.otlp_config`, and the encoding of OTLP responses
//! (`ExportLogsServiceResponse`, `google.rpc.Status`). The message types are the official OTLP
//! definitions from `opentelemetry-proto`, re-exported as [`proto`].
//!
//! The mapping (as Loki 3 does it):
//! * resource attributes picked by the `index_label` rules (by default
//!   [`DEFAULT_INDEX_LABEL_ATTRIBUTES`](parquetry_model::otlp::DEFAULT_INDEX_LABEL_ATTRIBUTES))
//!   become stream labels; `service_name` comes from `service.name`, else the first
//!   `discover_service_name` label among them, else `unknown_service`;
//! * every other resource, scope and record attribute is structured metadata, after the record's
//!   own fields: `observed_timestamp` (when the record also has a timestamp),
//!   `severity_number`, `severity_text`, `dropped_attributes_count`, `flags`, `trace_id`,
//!   `span_id` (hex), `event_name`, then resource attributes, then scope attributes with
//!   `scope_name`, `scope_version`, `scope_dropped_attributes_count`;
//! * attribute names are normalised as Prometheus' OTLP translator does (every run of
//!   characters outside `[a-zA-Z0-9]` becomes one `_`, a leading digit gets `key_`), map
//!   values are flattened to `parent_child` names, other values are rendered as text as the
//!   OpenTelemetry Collector renders them (arrays and maps as JSON, bytes as base64);
//! * the body is the line, rendered the same way; the timestamp falls back to the observed
//!   time, then to now.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::Read;

use base64::Engine as _;
use opentelemetry_proto::tonic::collector::logs::v1::{
    ExportLogsPartialSuccess, ExportLogsServiceRequest, ExportLogsServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::{
    AnyValue, ArrayValue, InstrumentationScope, KeyValue, KeyValueList, any_value::Value,
};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::resource::v1::Resource;
use parquetry_model::Labels;
use parquetry_model::otlp::{OtlpAction, OtlpConfig};
use prost::Message as _;
use serde_json::Value as Json;

use crate::decode::DecodeLimits;
use crate::error::IngestError;
use crate::push::{Entry, PushRequest, PushStream, text_pairs};
use crate::validate::{SERVICE_NAME_LABEL, UNKNOWN_SERVICE};

/// The OTLP message types (prost), for clients, tests and benchmarks that encode requests.
pub use opentelemetry_proto::tonic as proto;

/// The structured-metadata name of the record's severity number, which `detected_level` reads.
pub const SEVERITY_NUMBER: &str = "severity_number";
const SEVERITY_TEXT: &str = "severity_text";
const EVENT_NAME: &str = "event_name";

/// How an OTLP body (and its responses) are encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OtlpFormat {
    /// `application/x-protobuf`.
    Protobuf,
    /// `application/json`.
    Json,
}

impl OtlpFormat {
    /// The format named by a `Content-Type`: `application/x-protobuf` or `application/json`,
    /// parameters ignored. Anything else is refused with Loki's text (400).
    pub fn from_content_type(content_type: Option<&str>) -> Result<OtlpFormat, IngestError> {
        let media = content_type
            .and_then(|ct| ct.split(';').next())
            .map(str::trim)
            .unwrap_or("");
        if media.eq_ignore_ascii_case("application/x-protobuf") {
            Ok(OtlpFormat::Protobuf)
        } else if media.eq_ignore_ascii_case("application/json") {
            Ok(OtlpFormat::Json)
        } else {
            Err(IngestError::Decode(format!(
                "content type: {} is not supported",
                content_type.unwrap_or("")
            )))
        }
    }

    /// The `Content-Type` of responses in this format.
    pub fn content_type(self) -> &'static str {
        match self {
            OtlpFormat::Protobuf => "application/x-protobuf",
            OtlpFormat::Json => "application/json",
        }
    }
}

/// Decodes an OTLP logs body: size limits, `Content-Encoding` (none or `gzip`), then protobuf
/// or JSON.
pub fn decode_otlp(
    body: &[u8],
    format: OtlpFormat,
    content_encoding: Option<&str>,
    limits: &DecodeLimits,
) -> Result<ExportLogsServiceRequest, IngestError> {
    limits.check_received(body)?;
    let max = limits.decompressed_limit();
    let inflated;
    let bytes = match content_encoding.unwrap_or("") {
        "" => body,
        "gzip" => {
            // Streamed and stopped one byte past the limit: a small bomb costs at most `max`.
            let mut out = Vec::with_capacity(body.len().saturating_mul(4).min(max as usize));
            flate2::read::MultiGzDecoder::new(body)
                .take(max.saturating_add(1))
                .read_to_end(&mut out)
                .map_err(|e| IngestError::Decode(format!("failed to decompress gzip body: {e}")))?;
            if out.len() as u64 > max {
                return Err(IngestError::DecompressedTooLarge {
                    size: out.len() as u64,
                    max,
                });
            }
            inflated = out;
            &inflated[..]
        }
        other => {
            return Err(IngestError::Decode(format!(
                "unsupported content encoding {other}: only gzip is supported"
            )));
        }
    };
    match format {
        OtlpFormat::Protobuf => ExportLogsServiceRequest::decode(bytes)
            .map_err(|e| IngestError::Decode(format!("failed to parse OTLP protobuf body: {e}"))),
        OtlpFormat::Json => {
            let v: Json = serde_json::from_slice(bytes)
                .map_err(|e| IngestError::Decode(format!("failed to parse OTLP JSON body: {e}")))?;
            json::request(&v)
                .map_err(|e| IngestError::Decode(format!("failed to parse OTLP JSON body: {e}")))
        }
    }
}

/// Number of log records in a request.
pub fn record_count(req: &ExportLogsServiceRequest) -> usize {
    req.resource_logs
        .iter()
        .flat_map(|r| &r.scope_logs)
        .map(|s| s.log_records.len())
        .sum()
}

/// Maps a decoded request to streams, as Loki does before its distributor validates them.
/// `discover_service_name` is `limits_config.discover_service_name`; `now_ns` stamps records
/// that carry neither timestamp.
pub fn otlp_to_push(
    req: ExportLogsServiceRequest,
    config: &OtlpConfig,
    discover_service_name: &[String],
    now_ns: i64,
) -> Result<PushRequest, IngestError> {
    // Label text → position in `streams`, so records with equal labels share a stream.
    let mut index: BTreeMap<String, usize> = BTreeMap::new();
    let mut streams: Vec<PushStream> = Vec::new();
    for rl in req.resource_logs {
        let ResourceLogs {
            resource,
            scope_logs,
            ..
        } = rl;
        let resource = resource.unwrap_or_default();
        let (stream_labels, resource_metadata) =
            resource_labels(&resource, config, discover_service_name)?;
        let resource_metadata = text_pairs(resource_metadata);
        // Most records add no labels of their own: their stream is the resource's.
        let resource_text = labels_text(&stream_labels);
        for sl in scope_logs {
            let ScopeLogs {
                scope, log_records, ..
            } = sl;
            let scope_metadata = text_pairs(scope_metadata(scope.as_ref(), config)?);
            for record in log_records {
                let (record_labels, entry) = record_entry(record, config, now_ns)?;
                let mut entry = entry;
                entry
                    .structured_metadata
                    .extend(resource_metadata.iter().cloned());
                entry
                    .structured_metadata
                    .extend(scope_metadata.iter().cloned());
                let own;
                let text = if record_labels.is_empty() {
                    &resource_text
                } else {
                    let mut all = stream_labels.clone();
                    all.extend(record_labels);
                    own = labels_text(&all);
                    &own
                };
                let i = match index.get(text) {
                    Some(&i) => i,
                    None => {
                        streams.push(PushStream {
                            labels: text.clone(),
                            entries: Vec::new(),
                        });
                        index.insert(text.clone(), streams.len() - 1);
                        streams.len() - 1
                    }
                };
                streams[i].entries.push(entry);
            }
        }
    }
    Ok(PushRequest {
        streams,
        invalid_utf8: Default::default(),
    })
}

/// Series text for a label set (`{}` when empty, which validation then refuses as Loki does).
fn labels_text(labels: &BTreeMap<String, String>) -> String {
    Labels::from_pairs(labels.iter().map(|(n, v)| (n.as_str(), v.as_str()))).to_string()
}

type Pairs = Vec<(String, String)>;

fn resource_labels(
    resource: &Resource,
    config: &OtlpConfig,
    discover: &[String],
) -> Result<(BTreeMap<String, String>, Pairs), IngestError> {
    let mut labels = BTreeMap::new();
    let mut metadata = Vec::new();
    let mut has_service_name = resource
        .attributes
        .iter()
        .find(|kv| kv.key == "service.name")
        .is_some_and(|kv| !as_string(kv.value.as_ref()).is_empty());
    for kv in &resource.attributes {
        match config.resource_action(&kv.key) {
            OtlpAction::Drop => {}
            OtlpAction::IndexLabel => {
                let mut pairs = Vec::new();
                attribute_pairs(&kv.key, kv.value.as_ref(), "", &mut pairs)?;
                labels.extend(pairs);
            }
            OtlpAction::StructuredMetadata => {
                attribute_pairs(&kv.key, kv.value.as_ref(), "", &mut metadata)?;
            }
        }
    }
    if !discover.is_empty() && !has_service_name {
        if let Some(v) = discover
            .iter()
            .find_map(|n| labels.get(n).filter(|v| !v.is_empty()))
        {
            let v = v.clone();
            labels.insert(SERVICE_NAME_LABEL.to_string(), v);
            has_service_name = true;
        }
        if !has_service_name {
            labels.insert(SERVICE_NAME_LABEL.to_string(), UNKNOWN_SERVICE.to_string());
        }
    }
    Ok((labels, metadata))
}

fn scope_metadata(
    scope: Option<&InstrumentationScope>,
    config: &OtlpConfig,
) -> Result<Pairs, IngestError> {
    let mut out = Vec::new();
    let Some(scope) = scope else {
        return Ok(out);
    };
    for kv in &scope.attributes {
        if config.scope_action(&kv.key) == OtlpAction::StructuredMetadata {
            attribute_pairs(&kv.key, kv.value.as_ref(), "", &mut out)?;
        }
    }
    if !scope.name.is_empty() {
        out.push(("scope_name".into(), scope.name.clone()));
    }
    if !scope.version.is_empty() {
        out.push(("scope_version".into(), scope.version.clone()));
    }
    if scope.dropped_attributes_count != 0 {
        out.push((
            "scope_dropped_attributes_count".into(),
            scope.dropped_attributes_count.to_string(),
        ));
    }
    Ok(out)
}

/// A record's index labels (log attributes with `index_label`, and `severity_text` when so
/// configured) and its entry, structured metadata in Loki's order.
fn record_entry(
    r: LogRecord,
    config: &OtlpConfig,
    now_ns: i64,
) -> Result<(BTreeMap<String, String>, Entry), IngestError> {
    let mut labels = BTreeMap::new();
    let mut md = Vec::with_capacity(r.attributes.len() + 8);
    for kv in &r.attributes {
        let action = config.log_action(&kv.key);
        // The record's own event name wins over an attribute of the same name.
        if action == OtlpAction::Drop || (kv.key == EVENT_NAME && !r.event_name.is_empty()) {
            continue;
        }
        if action == OtlpAction::IndexLabel {
            let mut pairs = Vec::new();
            attribute_pairs(&kv.key, kv.value.as_ref(), "", &mut pairs)?;
            labels.extend(pairs);
        } else {
            attribute_pairs(&kv.key, kv.value.as_ref(), "", &mut md)?;
        }
    }
    // Go's conversion of the unsigned nanoseconds, as Loki stores them.
    let ts = r.time_unix_nano as i64;
    let observed = r.observed_time_unix_nano as i64;
    if ts != 0 && observed != 0 {
        md.push(("observed_timestamp".into(), observed.to_string()));
    }
    if r.severity_number != 0 {
        md.push((SEVERITY_NUMBER.into(), r.severity_number.to_string()));
    }
    if !r.severity_text.is_empty() {
        if config.severity_text_as_label {
            labels.insert(SEVERITY_TEXT.into(), r.severity_text.clone());
        }
        md.push((SEVERITY_TEXT.into(), r.severity_text.clone()));
    }
    if r.dropped_attributes_count != 0 {
        md.push((
            "dropped_attributes_count".into(),
            r.dropped_attributes_count.to_string(),
        ));
    }
    if r.flags != 0 {
        md.push(("flags".into(), r.flags.to_string()));
    }
    if let Some(id) = trace_context_id(&r.trace_id, 16, "TraceID")? {
        md.push(("trace_id".into(), id));
    }
    if let Some(id) = trace_context_id(&r.span_id, 8, "SpanID")? {
        md.push(("span_id".into(), id));
    }
    if !r.event_name.is_empty() {
        md.push((EVENT_NAME.into(), r.event_name));
    }
    let ts_ns = if ts != 0 {
        ts
    } else if observed != 0 {
        observed
    } else {
        now_ns
    };
    Ok((
        labels,
        Entry {
            ts_ns,
            line: as_string(r.body.as_ref()).into(),
            structured_metadata: text_pairs(md),
        },
    ))
}

/// Lower-case hex of a trace or span id; none when absent or all zeros. Any other length
/// fails the request, as the OTLP decoder in Loki does.
fn trace_context_id(id: &[u8], len: usize, what: &str) -> Result<Option<String>, IngestError> {
    if id.is_empty() {
        return Ok(None);
    }
    if id.len() != len {
        return Err(IngestError::Decode(format!("invalid length for {what}")));
    }
    if id.iter().all(|&b| b == 0) {
        return Ok(None);
    }
    let mut s = String::with_capacity(len * 2);
    for b in id {
        let _ = write!(s, "{b:02x}");
    }
    Ok(Some(s))
}

/// An attribute as `(name, text)` pairs: a map value flattens into one pair per leaf, named
/// `parent_child`.
fn attribute_pairs(
    key: &str,
    value: Option<&AnyValue>,
    prefix: &str,
    out: &mut Pairs,
) -> Result<(), IngestError> {
    let full;
    let raw = if prefix.is_empty() {
        key
    } else {
        full = format!("{prefix}_{key}");
        &full
    };
    let name = label_name(raw)?;
    match value.and_then(|v| v.value.as_ref()) {
        Some(Value::KvlistValue(KeyValueList { values })) => {
            for kv in values {
                attribute_pairs(&kv.key, kv.value.as_ref(), &name, out)?;
            }
        }
        _ => out.push((name, as_string(value))),
    }
    Ok(())
}

/// An attribute name as a Prometheus label name: each run of characters outside
/// `[a-zA-Z0-9]` becomes one `_` (a `__name__`-style name keeps its double underscores), and a
/// leading digit gets `key_`. A name that would be empty or only underscores fails the
/// request, with Loki's text.
pub fn label_name(name: &str) -> Result<String, IngestError> {
    if name.is_empty() {
        return Err(IngestError::Decode(
            "symbolizer lookup: normalization for label name \"\" resulted in empty name".into(),
        ));
    }
    let fast = name.bytes().enumerate().all(|(i, c)| {
        c.is_ascii_alphanumeric() || (c == b'_' && i > 0 && name.as_bytes()[i - 1] != b'_')
    }) && !name.as_bytes()[0].is_ascii_digit()
        && name.as_bytes()[0] != b'_';
    if fast {
        return Ok(name.to_string());
    }
    let reserved = name.len() >= 4 && name.starts_with("__") && name.ends_with("__");
    let inner = if reserved {
        &name[2..name.len() - 2]
    } else {
        name
    };
    let mut out = String::with_capacity(name.len() + 4);
    if reserved {
        out.push_str("__");
    }
    let mut prev_underscore = false;
    for c in inner.chars() {
        if c.is_ascii_alphanumeric() {
            out.push(c);
            prev_underscore = false;
        } else if !prev_underscore {
            out.push('_');
            prev_underscore = true;
        }
    }
    if reserved {
        out.push_str("__");
    }
    if out.as_bytes().first().is_some_and(u8::is_ascii_digit) {
        out.insert_str(0, "key_");
    }
    if out.is_empty() || (out != name && out.bytes().all(|c| c == b'_')) {
        let mut quoted_name = String::new();
        let mut quoted_out = String::new();
        let _ = parquetry_model::labels::write_quoted(&mut quoted_name, name);
        let _ = parquetry_model::labels::write_quoted(&mut quoted_out, &out);
        return Err(IngestError::Decode(format!(
            "symbolizer lookup: normalization for label name {quoted_name} resulted in invalid name {quoted_out}"
        )));
    }
    Ok(out)
}

/// A value as text, as the OpenTelemetry Collector's `AsString` renders it: strings as they
/// are, numbers and booleans as JSON would print them, bytes as base64, arrays and maps as
/// JSON (map keys sorted), nothing as the empty string.
pub fn as_string(v: Option<&AnyValue>) -> String {
    match v.and_then(|v| v.value.as_ref()) {
        None | Some(Value::StringValueStrindex(_)) => String::new(),
        Some(Value::StringValue(s)) => s.clone(),
        Some(Value::BoolValue(b)) => b.to_string(),
        Some(Value::IntValue(i)) => i.to_string(),
        Some(Value::DoubleValue(f)) => go_float(*f),
        Some(Value::BytesValue(b)) => base64::engine::general_purpose::STANDARD.encode(b),
        Some(other) => {
            let mut s = String::new();
            write_json(&mut s, Some(other));
            s
        }
    }
}

/// A float as Go's JSON encoder prints it (ECMAScript's number formatting): shortest
/// round-trip digits, exponent form below 1e-6 and from 1e21 on.
fn go_float(f: f64) -> String {
    if f.is_nan() {
        return "NaN".into();
    }
    if f.is_infinite() {
        return if f > 0.0 {
            "+Inf".into()
        } else {
            "-Inf".into()
        };
    }
    let abs = f.abs();
    if abs != 0.0 && !(1e-6..1e21).contains(&abs) {
        // Rust prints `1e21` and `1.5e-7`; Go writes the exponent's sign always.
        let s = format!("{f:e}");
        match s.split_once('e') {
            Some((m, e)) if !e.starts_with('-') => format!("{m}e+{e}"),
            _ => s,
        }
    } else {
        // `Display` for f64 is shortest round-trip without an exponent; drop a `.0`.
        let s = f.to_string();
        s.strip_suffix(".0").map(str::to_string).unwrap_or(s)
    }
}

fn write_json(out: &mut String, v: Option<&Value>) {
    match v {
        // A string-table index means nothing outside the profiles signal.
        None | Some(Value::StringValueStrindex(_)) => out.push_str("null"),
        Some(Value::StringValue(s)) => write_json_str(out, s),
        Some(Value::BoolValue(b)) => {
            let _ = write!(out, "{b}");
        }
        Some(Value::IntValue(i)) => {
            let _ = write!(out, "{i}");
        }
        Some(Value::DoubleValue(f)) => {
            if f.is_finite() {
                out.push_str(&go_float(*f));
            } else {
                out.push_str("null");
            }
        }
        Some(Value::BytesValue(b)) => {
            write_json_str(out, &base64::engine::general_purpose::STANDARD.encode(b))
        }
        Some(Value::ArrayValue(ArrayValue { values })) => {
            out.push('[');
            for (i, v) in values.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_json(out, v.value.as_ref());
            }
            out.push(']');
        }
        Some(Value::KvlistValue(KeyValueList { values })) => {
            // A later duplicate key wins, and keys are sorted, as Go's map encoding does.
            let map: BTreeMap<&str, Option<&Value>> = values
                .iter()
                .map(|kv| {
                    (
                        kv.key.as_str(),
                        kv.value.as_ref().and_then(|v| v.value.as_ref()),
                    )
                })
                .collect();
            out.push('{');
            for (i, (k, v)) in map.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_json_str(out, k);
                out.push(':');
                write_json(out, v);
            }
            out.push('}');
        }
    }
}

fn write_json_str(out: &mut String, s: &str) {
    // Serialising a &str into a String cannot fail.
    if let Ok(q) = serde_json::to_string(s) {
        out.push_str(&q);
    }
}

/// The body of a successful export: empty, or `partial_success` when `rejected` records were
/// dropped, with `message` saying why.
pub fn export_response(format: OtlpFormat, rejected: usize, message: &str) -> Vec<u8> {
    let partial = (rejected > 0).then(|| ExportLogsPartialSuccess {
        rejected_log_records: rejected as i64,
        error_message: message.to_string(),
    });
    match format {
        OtlpFormat::Protobuf => ExportLogsServiceResponse {
            partial_success: partial,
        }
        .encode_to_vec(),
        OtlpFormat::Json => {
            let v = match partial {
                // int64 as a string, as OTLP's JSON mapping writes it.
                Some(p) => serde_json::json!({"partialSuccess": {
                    "rejectedLogRecords": p.rejected_log_records.to_string(),
                    "errorMessage": p.error_message,
                }}),
                None => serde_json::json!({}),
            };
            v.to_string().into_bytes()
        }
    }
}

/// `google.rpc.Status`, the body of every OTLP/HTTP error response. `code` is left 0, as Loki
/// leaves it: the HTTP status carries it.
#[derive(Clone, PartialEq, prost::Message)]
struct RpcStatus {
    #[prost(int32, tag = "1")]
    code: i32,
    #[prost(string, tag = "2")]
    message: String,
}

/// The body of an error response.
pub fn error_response(format: OtlpFormat, message: &str) -> Vec<u8> {
    match format {
        OtlpFormat::Protobuf => RpcStatus {
            code: 0,
            message: message.to_string(),
        }
        .encode_to_vec(),
        OtlpFormat::Json => serde_json::json!({ "message": message })
            .to_string()
            .into_bytes(),
    }
}

/// OTLP's JSON mapping read into the protobuf types: field names in lowerCamelCase or as in
/// the `.proto`, 64-bit integers as numbers or strings, enums by number or name, trace and
/// span ids in hex, bytes in base64. Unknown fields are ignored, as the mapping requires.
mod json {
    use super::*;

    type R<T> = Result<T, FieldError>;

    /// Why a JSON body does not map onto the protobuf types: the first field found wrong.
    #[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
    #[error("{field}: {problem}")]
    pub(super) struct FieldError {
        /// The field's lowerCamelCase name.
        field: String,
        problem: Problem,
    }

    /// What is wrong with a field.
    #[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
    enum Problem {
        #[error("expected an array")]
        ExpectedArray,
        #[error("expected an object")]
        ExpectedObject,
        #[error("expected a string")]
        ExpectedString,
        #[error("expected a number")]
        ExpectedNumber,
        #[error("expected a number or name")]
        ExpectedNumberOrName,
        #[error("expected a boolean")]
        ExpectedBoolean,
        #[error("invalid number")]
        InvalidNumber,
        #[error("out of range")]
        OutOfRange,
        #[error("invalid hex")]
        InvalidHex,
        #[error("unknown value {0:?}")]
        UnknownValue(String),
        #[error("{0}")]
        Base64(base64::DecodeError),
    }

    fn bad(field: &str, problem: Problem) -> FieldError {
        FieldError {
            field: field.to_string(),
            problem,
        }
    }

    fn field<'a>(o: &'a Json, camel: &str, snake: &str) -> Option<&'a Json> {
        o.get(camel)
            .or_else(|| o.get(snake))
            .filter(|v| !v.is_null())
    }

    fn array<'a>(o: &'a Json, camel: &str, snake: &str) -> R<&'a [Json]> {
        match field(o, camel, snake) {
            None => Ok(&[]),
            Some(Json::Array(a)) => Ok(a),
            Some(_) => Err(bad(camel, Problem::ExpectedArray)),
        }
    }

    fn object<'a>(v: &'a Json, what: &str) -> R<&'a Json> {
        if v.is_object() {
            Ok(v)
        } else {
            Err(bad(what, Problem::ExpectedObject))
        }
    }

    fn string(o: &Json, camel: &str, snake: &str) -> R<String> {
        match field(o, camel, snake) {
            None => Ok(String::new()),
            Some(Json::String(s)) => Ok(s.clone()),
            Some(_) => Err(bad(camel, Problem::ExpectedString)),
        }
    }

    fn u64_field(o: &Json, camel: &str, snake: &str) -> R<u64> {
        match field(o, camel, snake) {
            None => Ok(0),
            Some(Json::Number(n)) => n.as_u64().ok_or_else(|| bad(camel, Problem::InvalidNumber)),
            Some(Json::String(s)) => s.parse().map_err(|_| bad(camel, Problem::InvalidNumber)),
            Some(_) => Err(bad(camel, Problem::ExpectedNumber)),
        }
    }

    fn i64_value(v: &Json, what: &str) -> R<i64> {
        match v {
            Json::Number(n) => n.as_i64().ok_or_else(|| bad(what, Problem::InvalidNumber)),
            Json::String(s) => s.parse().map_err(|_| bad(what, Problem::InvalidNumber)),
            _ => Err(bad(what, Problem::ExpectedNumber)),
        }
    }

    fn u32_field(o: &Json, camel: &str, snake: &str) -> R<u32> {
        u32::try_from(u64_field(o, camel, snake)?).map_err(|_| bad(camel, Problem::OutOfRange))
    }

    fn hex_id(o: &Json, camel: &str, snake: &str) -> R<Vec<u8>> {
        let s = string(o, camel, snake)?;
        if s.len() % 2 != 0 {
            return Err(bad(camel, Problem::InvalidHex));
        }
        (0..s.len())
            .step_by(2)
            .map(|i| {
                s.get(i..i + 2)
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
                    .ok_or_else(|| bad(camel, Problem::InvalidHex))
            })
            .collect()
    }

    fn severity(o: &Json) -> R<i32> {
        match field(o, "severityNumber", "severity_number") {
            None => Ok(0),
            Some(Json::Number(n)) => n
                .as_i64()
                .and_then(|n| i32::try_from(n).ok())
                .ok_or_else(|| bad("severityNumber", Problem::InvalidNumber)),
            Some(Json::String(s)) => proto::logs::v1::SeverityNumber::from_str_name(s)
                .map(|n| n as i32)
                .or_else(|| s.parse().ok())
                .ok_or_else(|| bad("severityNumber", Problem::UnknownValue(s.clone()))),
            Some(_) => Err(bad("severityNumber", Problem::ExpectedNumberOrName)),
        }
    }

    pub(super) fn request(v: &Json) -> R<ExportLogsServiceRequest> {
        let v = object(v, "request")?;
        let resource_logs = array(v, "resourceLogs", "resource_logs")?
            .iter()
            .map(resource_logs)
            .collect::<R<_>>()?;
        Ok(ExportLogsServiceRequest { resource_logs })
    }

    fn resource_logs(v: &Json) -> R<ResourceLogs> {
        let v = object(v, "resourceLogs")?;
        let resource = match field(v, "resource", "resource") {
            None => None,
            Some(r) => {
                let r = object(r, "resource")?;
                Some(Resource {
                    attributes: attributes(r)?,
                    dropped_attributes_count: u32_field(
                        r,
                        "droppedAttributesCount",
                        "dropped_attributes_count",
                    )?,
                    ..Default::default()
                })
            }
        };
        let scope_logs = array(v, "scopeLogs", "scope_logs")?
            .iter()
            .map(scope_logs)
            .collect::<R<_>>()?;
        Ok(ResourceLogs {
            resource,
            scope_logs,
            schema_url: string(v, "schemaUrl", "schema_url")?,
        })
    }

    fn scope_logs(v: &Json) -> R<ScopeLogs> {
        let v = object(v, "scopeLogs")?;
        let scope = match field(v, "scope", "scope") {
            None => None,
            Some(s) => {
                let s = object(s, "scope")?;
                Some(InstrumentationScope {
                    name: string(s, "name", "name")?,
                    version: string(s, "version", "version")?,
                    attributes: attributes(s)?,
                    dropped_attributes_count: u32_field(
                        s,
                        "droppedAttributesCount",
                        "dropped_attributes_count",
                    )?,
                })
            }
        };
        let log_records = array(v, "logRecords", "log_records")?
            .iter()
            .map(log_record)
            .collect::<R<_>>()?;
        Ok(ScopeLogs {
            scope,
            log_records,
            schema_url: string(v, "schemaUrl", "schema_url")?,
        })
    }

    fn log_record(v: &Json) -> R<LogRecord> {
        let v = object(v, "logRecords")?;
        Ok(LogRecord {
            time_unix_nano: u64_field(v, "timeUnixNano", "time_unix_nano")?,
            observed_time_unix_nano: u64_field(
                v,
                "observedTimeUnixNano",
                "observed_time_unix_nano",
            )?,
            severity_number: severity(v)?,
            severity_text: string(v, "severityText", "severity_text")?,
            body: field(v, "body", "body").map(any_value).transpose()?,
            attributes: attributes(v)?,
            dropped_attributes_count: u32_field(
                v,
                "droppedAttributesCount",
                "dropped_attributes_count",
            )?,
            flags: u32_field(v, "flags", "flags")?,
            trace_id: hex_id(v, "traceId", "trace_id")?,
            span_id: hex_id(v, "spanId", "span_id")?,
            event_name: string(v, "eventName", "event_name")?,
        })
    }

    fn attributes(o: &Json) -> R<Vec<KeyValue>> {
        array(o, "attributes", "attributes")?
            .iter()
            .map(key_value)
            .collect()
    }

    fn key_value(v: &Json) -> R<KeyValue> {
        let v = object(v, "attribute")?;
        Ok(KeyValue {
            key: string(v, "key", "key")?,
            value: field(v, "value", "value").map(any_value).transpose()?,
            ..Default::default()
        })
    }

    fn any_value(v: &Json) -> R<AnyValue> {
        let v = object(v, "value")?;
        let value = if let Some(s) = field(v, "stringValue", "string_value") {
            Some(Value::StringValue(
                s.as_str()
                    .ok_or_else(|| bad("stringValue", Problem::ExpectedString))?
                    .into(),
            ))
        } else if let Some(b) = field(v, "boolValue", "bool_value") {
            Some(Value::BoolValue(
                b.as_bool()
                    .ok_or_else(|| bad("boolValue", Problem::ExpectedBoolean))?,
            ))
        } else if let Some(i) = field(v, "intValue", "int_value") {
            Some(Value::IntValue(i64_value(i, "intValue")?))
        } else if let Some(d) = field(v, "doubleValue", "double_value") {
            Some(Value::DoubleValue(match d {
                Json::Number(n) => n
                    .as_f64()
                    .ok_or_else(|| bad("doubleValue", Problem::InvalidNumber))?,
                Json::String(s) => match s.as_str() {
                    "NaN" => f64::NAN,
                    "Infinity" => f64::INFINITY,
                    "-Infinity" => f64::NEG_INFINITY,
                    s => s
                        .parse()
                        .map_err(|_| bad("doubleValue", Problem::InvalidNumber))?,
                },
                _ => return Err(bad("doubleValue", Problem::ExpectedNumber)),
            }))
        } else if let Some(b) = field(v, "bytesValue", "bytes_value") {
            let s = b
                .as_str()
                .ok_or_else(|| bad("bytesValue", Problem::ExpectedString))?;
            Some(Value::BytesValue(
                base64::engine::general_purpose::STANDARD
                    .decode(s)
                    .map_err(|e| bad("bytesValue", Problem::Base64(e)))?,
            ))
        } else if let Some(a) = field(v, "arrayValue", "array_value") {
            let values = array(object(a, "arrayValue")?, "values", "values")?
                .iter()
                .map(any_value)
                .collect::<R<_>>()?;
            Some(Value::ArrayValue(ArrayValue { values }))
        } else if let Some(m) = field(v, "kvlistValue", "kvlist_value") {
            let values = array(object(m, "kvlistValue")?, "values", "values")?
                .iter()
                .map(key_value)
                .collect::<R<_>>()?;
            Some(Value::KvlistValue(KeyValueList { values }))
        } else {
            None
        };
        Ok(AnyValue { value })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &str) -> AnyValue {
        AnyValue {
            value: Some(Value::StringValue(v.into())),
        }
    }

    #[test]
    fn label_names_as_loki_normalises_them() {
        for (raw, want) in [
            ("service.name", "service_name"),
            ("custom.attr-x", "custom_attr_x"),
            ("1st", "key_1st"),
            ("_private", "_private"),
            ("__dunder", "_dunder"),
            ("__reserved.x__", "__reserved_x__"),
            ("ünï", "_n_"),
            ("a..b", "a_b"),
            ("plain", "plain"),
            ("_", "_"),
        ] {
            assert_eq!(label_name(raw).unwrap(), want, "{raw}");
        }
        assert!(label_name("").is_err());
        assert!(label_name("..").is_err());
    }

    #[test]
    fn values_render_as_the_collector_renders_them() {
        let cases = [
            (Value::IntValue(-3), "-3"),
            (Value::DoubleValue(0.25), "0.25"),
            (Value::DoubleValue(3.0), "3"),
            (Value::DoubleValue(1e21), "1e+21"),
            (Value::DoubleValue(1.5e-7), "1.5e-7"),
            (Value::BoolValue(true), "true"),
            (Value::BytesValue(vec![0, 1, b'h', b'i']), "AAFoaQ=="),
        ];
        for (v, want) in cases {
            assert_eq!(as_string(Some(&AnyValue { value: Some(v) })), want);
        }
        let map = AnyValue {
            value: Some(Value::KvlistValue(KeyValueList {
                values: vec![
                    KeyValue {
                        key: "msg".into(),
                        value: Some(s("a <b>")),
                        ..Default::default()
                    },
                    KeyValue {
                        key: "code".into(),
                        value: Some(AnyValue {
                            value: Some(Value::ArrayValue(ArrayValue {
                                values: vec![
                                    AnyValue {
                                        value: Some(Value::IntValue(1)),
                                    },
                                    s("two"),
                                ],
                            })),
                        }),
                        ..Default::default()
                    },
                ],
            })),
        };
        assert_eq!(as_string(Some(&map)), r#"{"code":[1,"two"],"msg":"a <b>"}"#);
        assert_eq!(as_string(None), "");
    }

    #[test]
    fn json_mapping() {
        let body = r#"{"resourceLogs":[{"resource":{"attributes":[
            {"key":"service.name","value":{"stringValue":"api"}},
            {"key":"host.name","value":{"stringValue":"h"}}]},
          "scopeLogs":[{"scope":{"name":"sc"},"logRecords":[
            {"timeUnixNano":"1700000000000000001","severityNumber":"SEVERITY_NUMBER_ERROR",
             "body":{"stringValue":"boom"},"traceId":"5B8EFFF798038103D269B633813FC60C",
             "span_id":"eee19b7ec3c1b174",
             "attributes":[{"key":"n","value":{"intValue":"42"}}]},
            {"observed_time_unix_nano":1700000000000000002,"severityNumber":9,
             "body":{"kvlistValue":{"values":[{"key":"k","value":{"doubleValue":1.0}}]}}}
          ]}]}]}"#;
        let req = decode_otlp(
            body.as_bytes(),
            OtlpFormat::Json,
            None,
            &DecodeLimits::default(),
        )
        .unwrap();
        assert_eq!(record_count(&req), 2);
        let push = otlp_to_push(req, &OtlpConfig::default(), &["app".into()], 7).unwrap();
        assert_eq!(push.streams.len(), 1);
        assert_eq!(push.streams[0].labels, r#"{service_name="api"}"#);
        let e = &push.streams[0].entries;
        assert_eq!(e[0].ts_ns, 1_700_000_000_000_000_001);
        assert_eq!(e[0].line, "boom");
        let md: BTreeMap<_, _> = e[0].structured_metadata.iter().cloned().collect();
        assert_eq!(md["n"], "42");
        assert_eq!(md["severity_number"], "17");
        assert_eq!(md["trace_id"], "5b8efff798038103d269b633813fc60c");
        assert_eq!(md["span_id"], "eee19b7ec3c1b174");
        assert_eq!(md["host_name"], "h");
        assert_eq!(md["scope_name"], "sc");
        assert_eq!(e[1].ts_ns, 1_700_000_000_000_000_002);
        assert_eq!(e[1].line, r#"{"k":1}"#);
    }

    #[test]
    fn detected_level_from_severity_number_after_level_fields() {
        let md = |pairs: &[(&str, &str)]| -> Vec<(String, String)> {
            pairs
                .iter()
                .map(|(n, v)| (n.to_string(), v.to_string()))
                .collect()
        };
        let labels = Labels::default();
        for (meta, line, want) in [
            (md(&[("severity_number", "13")]), "error here", "warn"),
            (md(&[("severity_number", "24")]), "", "fatal"),
            (md(&[("severity_number", "2")]), "", "trace"),
            (md(&[("severity_number", "x")]), "", "info"),
            (md(&[("severity_number", "99")]), "", "unknown"),
            (
                md(&[("level", "error"), ("severity_number", "5")]),
                "",
                "error",
            ),
            (md(&[]), "level=warn", "warn"),
        ] {
            let got = crate::level::detect_level(&labels, &meta, line);
            assert_eq!(got, want, "{meta:?} {line}");
        }
    }

    /// Decode, mapping and validation of one OTLP request next to the same entries as a Loki
    /// protobuf push (no HTTP, no storage): the CPU the OTLP path adds.
    /// `cargo test --release -p parquetry-ingest --lib otlp::tests::throughput -- --ignored --nocapture`
    #[test]
    #[ignore]
    fn throughput() {
        use crate::proto as loki;
        let (n_streams, per_stream) = (200usize, 25usize);
        let now = 1_700_000_000_000_000_000i64;
        let line = |s: usize, i: usize| {
            format!(
                "ts=2024-01-01T00:00:00Z level=info msg=\"request served\" stream={s} seq={i} path=/api/v1/items/{i} status=200 duration={}ms trace_id=5b8efff798038103d269b633813fc60c",
                i % 97
            )
        };
        let mut raw = 0usize;
        let otlp_req = ExportLogsServiceRequest {
            resource_logs: (0..n_streams)
                .map(|s| ResourceLogs {
                    resource: Some(Resource {
                        attributes: vec![
                            KeyValue {
                                key: "service.name".into(),
                                value: Some(s_val(&format!("svc-{}", s % 6))),
                                ..Default::default()
                            },
                            KeyValue {
                                key: "k8s.pod.name".into(),
                                value: Some(s_val(&format!("pod-{s}"))),
                                ..Default::default()
                            },
                        ],
                        ..Default::default()
                    }),
                    scope_logs: vec![ScopeLogs {
                        log_records: (0..per_stream)
                            .map(|i| {
                                let l = line(s, i);
                                raw += l.len();
                                LogRecord {
                                    time_unix_nano: (now + i as i64) as u64,
                                    body: Some(s_val(&l)),
                                    trace_id: vec![7; 16],
                                    severity_number: 9,
                                    ..Default::default()
                                }
                            })
                            .collect(),
                        ..Default::default()
                    }],
                    ..Default::default()
                })
                .collect(),
        };
        let otlp_body = otlp_req.encode_to_vec();
        let loki_body = snap::raw::Encoder::new()
            .compress_vec(
                &loki::PushRequest {
                    streams: (0..n_streams)
                        .map(|s| loki::StreamAdapter {
                            labels: format!(
                                "{{k8s_pod_name=\"pod-{s}\", service_name=\"svc-{}\"}}",
                                s % 6
                            ),
                            entries: (0..per_stream)
                                .map(|i| loki::EntryAdapter {
                                    timestamp: Some(loki::Timestamp::from_unix_nanos(
                                        now + i as i64,
                                    )),
                                    line: line(s, i),
                                    structured_metadata: vec![loki::LabelPairAdapter {
                                        name: "trace_id".into(),
                                        value: "07".repeat(16),
                                    }],
                                    parsed: vec![],
                                })
                                .collect(),
                            hash: 0,
                        })
                        .collect(),
                    format: String::new(),
                }
                .encode_to_vec(),
            )
            .unwrap();
        let limits = parquetry_model::Limits {
            reject_old_samples: false,
            ..Default::default()
        };
        let config = OtlpConfig::default();
        let dl = DecodeLimits::default();
        let time = |name: &str, f: &dyn Fn() -> usize| {
            let start = std::time::Instant::now();
            let mut rounds = 0;
            while start.elapsed().as_secs_f64() < 2.0 {
                assert_eq!(f(), n_streams * per_stream);
                rounds += 1;
            }
            let secs = start.elapsed().as_secs_f64();
            println!(
                "{name:<26} {:>7.1} MB/s raw line bytes, {:>9.0} entries/s (one core)",
                (raw * rounds) as f64 / secs / 1e6,
                (n_streams * per_stream * rounds) as f64 / secs
            );
        };
        println!(
            "{n_streams} streams x {per_stream} entries, {:.2} MB of lines; OTLP body {:.2} MB, Loki protobuf+snappy {:.2} MB",
            raw as f64 / 1e6,
            otlp_body.len() as f64 / 1e6,
            loki_body.len() as f64 / 1e6
        );
        time("Loki push (protobuf)", &|| {
            let req = crate::decode_push(&loki_body, None, None, true, &dl).unwrap();
            crate::validate(req, &limits, now).unwrap().accepted_entries
        });
        time("OTLP (protobuf)", &|| {
            let req = decode_otlp(&otlp_body, OtlpFormat::Protobuf, None, &dl).unwrap();
            let push = otlp_to_push(req, &config, &limits.discover_service_name, now).unwrap();
            crate::validate(push, &limits, now)
                .unwrap()
                .accepted_entries
        });
    }

    fn s_val(v: &str) -> AnyValue {
        s(v)
    }

    #[test]
    fn bad_bodies() {
        let l = DecodeLimits {
            max_recv_msg_size: 100,
            max_decompressed_size: 1000,
        };
        let e = OtlpFormat::from_content_type(Some("text/plain")).unwrap_err();
        assert_eq!(e.to_string(), "content type: text/plain is not supported");
        let e = decode_otlp(&[0u8; 101], OtlpFormat::Protobuf, None, &l).unwrap_err();
        assert_eq!(e.status(), 413);
        // A truncated length-delimited field.
        let e = decode_otlp(&[0x0a, 0x05, 0x0a], OtlpFormat::Protobuf, None, &l).unwrap_err();
        assert_eq!(e.status(), 400);
        let e = decode_otlp(b"{}", OtlpFormat::Json, Some("br"), &l).unwrap_err();
        assert_eq!(e.status(), 400);
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        std::io::Write::write_all(&mut gz, &[b' '; 5000]).unwrap();
        let bomb = gz.finish().unwrap();
        let e = decode_otlp(&bomb, OtlpFormat::Json, Some("gzip"), &l).unwrap_err();
        assert!(matches!(e, IngestError::DecompressedTooLarge { .. }), "{e}");
    }
}
