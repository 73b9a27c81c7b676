//! JSON push bodies: v1 (`/loki/api/v1/push`) and legacy v0 (`/api/prom/push`).
//!
//! Deserialised straight into the neutral model with hand-written visitors, without an
//! intermediate `serde_json::Value`, because this is the hot path for Fluent Bit and Vector.
//! Errors keep serde_json's text, which names the offending value and its line and column.

use std::fmt;

use serde::Deserialize;
use serde::de::{self, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

use crate::error::IngestError;
use crate::labels::render_labels;
use crate::push::{Entry, PushRequest, PushStream, text_pairs};

/// Which JSON push format a body is in: v1 on `/loki/api/v1/push`, v0 on `/api/prom/push`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Version {
    V0,
    V1,
}

/// Decodes a whole body held in memory.
pub(crate) fn decode_slice(
    body: &[u8],
    version: Version,
) -> Result<PushRequest, serde_json::Error> {
    match version {
        Version::V1 => serde_json::from_slice(body).map(v1_model),
        Version::V0 => serde_json::from_slice(body).map(v0_model),
    }
}

/// The 400 for a body that is not valid JSON of its version. serde_json's text names the
/// offending value and its line and column.
pub(crate) fn parse_error(e: &serde_json::Error, version: Version) -> IngestError {
    let v = match version {
        Version::V0 => "v0",
        Version::V1 => "v1",
    };
    IngestError::Decode(format!("failed to parse push body as {v} JSON: {e}"))
}

/// v1: `{"streams":[{"stream":{…},"values":[["<ns>","<line>",{…}?],…]}]}`.
fn v1_model(req: V1Request) -> PushRequest {
    PushRequest {
        streams: req
            .streams
            .unwrap_or_default()
            .into_iter()
            .map(|s| PushStream {
                labels: s.stream.map_or_else(|| "{}".to_string(), |l| l.0),
                entries: s.values.0,
            })
            .collect(),
        ..PushRequest::default()
    }
}

/// v0: `{"streams":[{"labels":"{…}","entries":[{"ts":"<RFC3339Nano>","line":"…"}]}]}`.
fn v0_model(req: V0Request) -> PushRequest {
    PushRequest {
        streams: req
            .streams
            .unwrap_or_default()
            .into_iter()
            .map(|s| PushStream {
                labels: s.labels.unwrap_or_default(),
                entries: s
                    .entries
                    .unwrap_or_default()
                    .into_iter()
                    .flatten()
                    .map(|e| Entry {
                        ts_ns: e.ts.0,
                        line: e.line.unwrap_or_default().into(),
                        structured_metadata: Vec::new(),
                    })
                    .collect(),
            })
            .collect(),
        ..PushRequest::default()
    }
}

#[derive(Deserialize)]
struct V1Request {
    #[serde(default)]
    streams: Option<Vec<V1Stream>>,
}

#[derive(Deserialize)]
struct V1Stream {
    #[serde(default)]
    stream: Option<LabelText>,
    #[serde(default)]
    values: Values,
}

/// A v1 `stream` object rendered to series text.
struct LabelText(String);

impl<'de> Deserialize<'de> for LabelText {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let mut pairs = d.deserialize_map(StringMap("a label object of string values"))?;
        // Go decodes the object into a map, so a repeated name keeps its last value. Reversing
        // before the stable sort puts the last occurrence first, which dedup then keeps.
        pairs.reverse();
        pairs.sort_by(|a, b| a.0.cmp(&b.0));
        pairs.dedup_by(|a, b| a.0 == b.0);
        let mut text = String::with_capacity(
            pairs
                .iter()
                .map(|(n, v)| n.len() + v.len() + 5)
                .sum::<usize>()
                + 2,
        );
        render_labels(&mut text, &pairs);
        Ok(LabelText(text))
    }
}

/// A flat JSON object whose values must all be strings, kept as pairs in input order.
struct StringMap(&'static str);

impl<'de> Visitor<'de> for StringMap {
    type Value = Vec<(String, String)>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut out = Vec::with_capacity(map.size_hint().unwrap_or(4));
        while let Some((k, v)) = map.next_entry::<String, String>()? {
            out.push((k, v));
        }
        Ok(out)
    }
}

/// `values`: entries with `null` skipped; `null` or absent means none.
#[derive(Default)]
struct Values(Vec<Entry>);

impl<'de> Deserialize<'de> for Values {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Values;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an array of [timestamp, line] entries")
            }
            fn visit_unit<E: de::Error>(self) -> Result<Values, E> {
                Ok(Values::default())
            }
            fn visit_none<E: de::Error>(self) -> Result<Values, E> {
                Ok(Values::default())
            }
            fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Values, D::Error> {
                d.deserialize_seq(V)
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Values, A::Error> {
                let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(16));
                while let Some(e) = seq.next_element::<Option<V1Entry>>()? {
                    if let Some(e) = e {
                        out.push(e.0);
                    }
                }
                Ok(Values(out))
            }
        }
        d.deserialize_option(V)
    }
}

/// One v1 entry: `["<ns>", "<line>"]` or `["<ns>", "<line>", {"k": "v", …}]`. Extra elements
/// are ignored, as Loki does.
struct V1Entry(Entry);

impl<'de> Deserialize<'de> for V1Entry {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = V1Entry;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(
                    "an entry array [\"<unix ns>\", \"<line>\"] with optional metadata object",
                )
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<V1Entry, A::Error> {
                let ts: NanosString = seq
                    .next_element()?
                    .ok_or_else(|| de::Error::invalid_length(0, &self))?;
                let line: String = seq
                    .next_element()?
                    .ok_or_else(|| de::Error::invalid_length(1, &self))?;
                let structured_metadata = match seq.next_element::<Option<Metadata>>()? {
                    Some(Some(m)) => m.0,
                    _ => Vec::new(),
                };
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                Ok(V1Entry(Entry {
                    ts_ns: ts.0,
                    line: line.into(),
                    structured_metadata: text_pairs(structured_metadata),
                }))
            }
        }
        d.deserialize_seq(V)
    }
}

/// The optional third element of a v1 entry.
struct Metadata(Vec<(String, String)>);

impl<'de> Deserialize<'de> for Metadata {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_map(StringMap("a structured metadata object of string values"))
            .map(Metadata)
    }
}

/// A v1 timestamp: a JSON *string* holding integer Unix nanoseconds. A JSON number is refused,
/// as Loki refuses it, so clients learn early rather than lose precision silently.
struct NanosString(i64);

impl<'de> Deserialize<'de> for NanosString {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        timestamp_str(d, "a string holding integer Unix nanoseconds", |v| {
            v.parse::<i64>().map_err(|_| {
                format!(
                    "invalid timestamp {v:?}: expected a string holding integer Unix nanoseconds"
                )
            })
        })
        .map(NanosString)
    }
}

/// A timestamp that must be a JSON string, read with `parse`; `expecting` names what a value
/// of another JSON type should have been.
fn timestamp_str<'de, D: Deserializer<'de>, M: fmt::Display>(
    d: D,
    expecting: &'static str,
    parse: fn(&str) -> Result<i64, M>,
) -> Result<i64, D::Error> {
    struct V<M> {
        expecting: &'static str,
        parse: fn(&str) -> Result<i64, M>,
    }
    impl<M: fmt::Display> Visitor<'_> for V<M> {
        type Value = i64;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str(self.expecting)
        }
        fn visit_str<E: de::Error>(self, v: &str) -> Result<i64, E> {
            (self.parse)(v).map_err(E::custom)
        }
    }
    d.deserialize_str(V { expecting, parse })
}

#[derive(Deserialize)]
struct V0Request {
    #[serde(default)]
    streams: Option<Vec<V0Stream>>,
}

#[derive(Deserialize)]
struct V0Stream {
    #[serde(default)]
    labels: Option<String>,
    #[serde(default)]
    entries: Option<Vec<Option<V0Entry>>>,
}

#[derive(Deserialize)]
struct V0Entry {
    ts: Rfc3339Nanos,
    #[serde(default)]
    line: Option<String>,
}

/// A v0 timestamp: an RFC3339 string, fractional seconds optional.
struct Rfc3339Nanos(i64);

impl<'de> Deserialize<'de> for Rfc3339Nanos {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        timestamp_str(d, "an RFC3339 timestamp string", |v| {
            let t = chrono::DateTime::parse_from_rfc3339(v)
                .map_err(|e| format!("invalid timestamp {v:?}: {e}"))?;
            t.timestamp_nanos_opt().ok_or_else(|| {
                format!("timestamp {v:?} is outside the range of Unix nanoseconds (1677-2262)")
            })
        })
        .map(Rfc3339Nanos)
    }
}
