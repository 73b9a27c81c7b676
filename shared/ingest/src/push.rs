//! The decoded push request, independent of the wire format it arrived in.
//!
//! Protobuf, v1 JSON and v0 JSON all decode into these types, so validation is written once.
//! Labels stay as raw text here because every format carries them as text in the end (v1 JSON
//! maps are rendered to it) and Loki reports label parse failures against that text.

use parquetry_model::ByteString;

/// One push request after body decoding, before validation.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PushRequest {
    /// The streams, in request order.
    pub streams: Vec<PushStream>,
    /// Text fields that arrived as invalid UTF-8 and were repaired (protobuf only: JSON
    /// parsing refuses invalid UTF-8).
    pub invalid_utf8: InvalidUtf8,
}

/// How many text fields of one push held invalid UTF-8, by kind. Each invalid byte was replaced
/// with U+FFFD, which is what Loki's query API shows for such bytes; a stream whose labels
/// were invalid is then refused by label parsing, as Loki refuses it (see
/// [`crate::labels::parse_labels`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct InvalidUtf8 {
    /// Streams whose label text was invalid.
    pub labels: usize,
    /// Entries whose line was invalid.
    pub lines: usize,
    /// Structured metadata names and values that were invalid.
    pub structured_metadata: usize,
}

impl InvalidUtf8 {
    /// Invalid fields of every kind.
    pub fn total(&self) -> usize {
        self.labels + self.lines + self.structured_metadata
    }
}

/// One stream as sent: label text such as `{app="web"}` and its entries.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PushStream {
    /// Prometheus series text, not yet parsed.
    pub labels: String,
    /// Its entries, in request order.
    pub entries: Vec<Entry>,
}

/// One log entry.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Entry {
    /// Unix nanoseconds. Protobuf timestamps outside the `i64` nanosecond range (before 1677 or
    /// after 2262) are clamped to its ends; validation then rejects them as too old or too new.
    pub ts_ns: i64,
    /// The log line (a slice of the decoded body where the format allows).
    pub line: ByteString,
    /// Structured metadata pairs in the order sent.
    pub structured_metadata: Vec<(ByteString, ByteString)>,
}

/// Metadata pairs as [`Entry`] holds them (the strings are moved, not copied).
pub(crate) fn text_pairs(pairs: Vec<(String, String)>) -> Vec<(ByteString, ByteString)> {
    pairs
        .into_iter()
        .map(|(n, v)| (n.into(), v.into()))
        .collect()
}

impl Entry {
    /// Bytes of structured metadata as Loki counts them: names plus values.
    pub fn structured_metadata_size(&self) -> usize {
        self.structured_metadata
            .iter()
            .map(|(n, v)| n.len() + v.len())
            .sum()
    }
}
