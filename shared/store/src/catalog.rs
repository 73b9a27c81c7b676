//! The stream catalog: which streams an object holds, with counts and time bounds.
//!
//! It lives in the Parquet footer (key-value metadata `parquetry.streams`), so `labels`,
//! `series` and `index/stats` are answered from footers alone and a query can decide which
//! streams (and so which row groups, via statistics and the bloom filter) to read before it
//! touches a line.

use std::collections::BTreeMap;

use parquetry_model::Labels;
use serde::{Deserialize, Serialize};

/// One stream's summary inside one object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamInfo {
    /// [`Labels::fingerprint`] of `labels`; the value of the `stream` column.
    pub fingerprint: u64,
    /// The stream's labels.
    pub labels: BTreeMap<String, String>,
    /// Entries of the stream in the object.
    pub entries: u64,
    /// Bytes of line text.
    pub bytes: u64,
    /// Its oldest entry (Unix ns).
    pub min_ts: i64,
    /// Its newest entry (Unix ns).
    pub max_ts: i64,
}

impl StreamInfo {
    /// The labels as a label set.
    pub fn labels(&self) -> Labels {
        Labels::from_pairs(self.labels.iter().map(|(k, v)| (k.as_str(), v.as_str())))
    }
}

/// All streams of one object, in fingerprint order (the row order of the object).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamCatalog {
    /// One entry per stream, in fingerprint order (the object's row order).
    pub streams: Vec<StreamInfo>,
}

impl StreamCatalog {
    /// The footer's JSON form.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_else(|_| "{\"streams\":[]}".into())
    }

    /// Reads the footer's JSON form.
    pub fn from_json(s: &str) -> Result<Self, serde_json::Error> {
        serde_json::from_str(s)
    }
}
