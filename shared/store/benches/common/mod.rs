//! What the store benches share: generated streams in the form the store writes.

use parquetry_loggen::GenStream;
use parquetry_model::Labels;
use parquetry_store::{LogEntry, StreamEntries};

/// `s` as the push path hands it to the store (its trace id as structured metadata), counting
/// its raw line bytes into `raw` and its entries into `entries`.
pub(crate) fn stream_entries(s: GenStream, raw: &mut u64, entries: &mut u64) -> StreamEntries {
    StreamEntries {
        labels: Labels::from_pairs(s.labels.iter().map(|(k, v)| (k.as_str(), v.as_str()))),
        entries: s
            .entries
            .into_iter()
            .map(|e| {
                *raw += e.line.len() as u64;
                *entries += 1;
                LogEntry {
                    ts_ns: e.ts_ns,
                    line: e.line.into(),
                    structured_metadata: vec![("trace_id".into(), e.trace_id.into())],
                }
            })
            .collect(),
    }
}
