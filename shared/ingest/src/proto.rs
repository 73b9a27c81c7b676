//! The logproto push messages as hand-written `prost` structs (schema in `proto/push.proto`).
//!
//! Written by hand so the build needs neither `protoc` nor a build script. The public types use
//! `String` for every text field and are meant for *encoding* (tests, benchmarks, clients).
//! Decoding goes through the crate-private `lenient` mirrors, which read the same fields as
//! bytes so that invalid UTF-8 can be handled as Loki handles it (see `decode::repair_utf8`):
//! Go's protobuf runtime used by Loki does not check UTF-8, and Promtail forwards whatever
//! bytes a file held, so rejecting a whole batch for one Latin-1 line would lose data that Loki
//! keeps.

/// `logproto.PushRequest`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct PushRequest {
    /// The pushed streams.
    #[prost(message, repeated, tag = "1")]
    pub streams: Vec<StreamAdapter>,
    /// Set inside Loki; ignored on input.
    #[prost(string, tag = "2")]
    pub format: String,
}

/// `logproto.StreamAdapter`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct StreamAdapter {
    /// Prometheus series text, `{a="b", c="d"}`.
    #[prost(string, tag = "1")]
    pub labels: String,
    /// The stream's entries.
    #[prost(message, repeated, tag = "2")]
    pub entries: Vec<EntryAdapter>,
    /// Computed inside Loki; ignored on input.
    #[prost(uint64, tag = "3")]
    pub hash: u64,
}

/// `logproto.EntryAdapter`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct EntryAdapter {
    /// The entry time.
    #[prost(message, optional, tag = "1")]
    pub timestamp: Option<Timestamp>,
    /// The log line.
    #[prost(string, tag = "2")]
    pub line: String,
    /// The entry's structured metadata.
    #[prost(message, repeated, tag = "3")]
    pub structured_metadata: Vec<LabelPairAdapter>,
    /// Query-side field that lambda-promtail fills; ignored on input.
    #[prost(message, repeated, tag = "4")]
    pub parsed: Vec<LabelPairAdapter>,
}

/// `logproto.LabelPairAdapter`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct LabelPairAdapter {
    /// The name.
    #[prost(string, tag = "1")]
    pub name: String,
    /// The value.
    #[prost(string, tag = "2")]
    pub value: String,
}

/// `google.protobuf.Timestamp`.
#[derive(Clone, Copy, PartialEq, Eq, prost::Message)]
pub struct Timestamp {
    /// Seconds since the Unix epoch.
    #[prost(int64, tag = "1")]
    pub seconds: i64,
    /// Nanoseconds within the second.
    #[prost(int32, tag = "2")]
    pub nanos: i32,
}

impl Timestamp {
    /// Splits Unix nanoseconds the way protobuf wants them: `nanos` is never negative.
    pub fn from_unix_nanos(ns: i64) -> Self {
        Timestamp {
            seconds: ns.div_euclid(1_000_000_000),
            // In [0, 1e9), so the narrowing cannot lose anything.
            nanos: ns.rem_euclid(1_000_000_000) as i32,
        }
    }
}

/// Decode-side mirrors of the messages above, named like them so prost's error messages read
/// `StreamAdapter.entries: …`. Fields this crate ignores (`format`, `hash`, `parsed`) are left
/// out so prost skips them without allocating.
pub(crate) mod lenient {
    pub(crate) use super::Timestamp;

    #[derive(Clone, PartialEq, prost::Message)]
    pub(crate) struct PushRequest {
        #[prost(message, repeated, tag = "1")]
        pub streams: Vec<StreamAdapter>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub(crate) struct StreamAdapter {
        #[prost(bytes = "vec", tag = "1")]
        pub labels: Vec<u8>,
        #[prost(message, repeated, tag = "2")]
        pub entries: Vec<EntryAdapter>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub(crate) struct EntryAdapter {
        #[prost(message, optional, tag = "1")]
        pub timestamp: Option<Timestamp>,
        #[prost(bytes = "bytes", tag = "2")]
        pub line: bytes::Bytes,
        #[prost(message, repeated, tag = "3")]
        pub structured_metadata: Vec<LabelPairAdapter>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub(crate) struct LabelPairAdapter {
        #[prost(bytes = "bytes", tag = "1")]
        pub name: bytes::Bytes,
        #[prost(bytes = "bytes", tag = "2")]
        pub value: bytes::Bytes,
    }
}
