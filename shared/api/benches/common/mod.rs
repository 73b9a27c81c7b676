//! What the API benches share: generated streams in the form the push path stores them.

use parquetry_ingest::level::apply_detected_level;
use parquetry_loggen::GenStream;
use parquetry_model::Labels;
use std::time::{Duration, Instant};

use parquetry_store::compact::NoProgress;
use parquetry_store::{CompactOptions, LogEntry, Store, StreamEntries};

/// `s` with the metadata the push path attaches to every entry (`trace_id`, `detected_level`),
/// counting its raw line bytes into `raw` and its entries into `entries`.
pub(crate) fn stream_entries(s: GenStream, raw: &mut u64, entries: &mut u64) -> StreamEntries {
    let labels = Labels::from_pairs(s.labels.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    let entries_of = s
        .entries
        .into_iter()
        .map(|e| {
            *raw += e.line.len() as u64;
            *entries += 1;
            let mut structured_metadata = vec![("trace_id".into(), e.trace_id.into())];
            apply_detected_level(&labels, &mut structured_metadata, &e.line);
            LogEntry {
                ts_ns: e.ts_ns,
                line: e.line.into(),
                structured_metadata,
            }
        })
        .collect();
    StreamEntries {
        labels,
        entries: entries_of,
    }
}

/// One compaction pass over everything written, at once (no minimum age or delete delay), as a
/// day looks after the compactor has run; prints how long it took.
pub(crate) async fn compact_all(store: &Store) {
    let opts = CompactOptions {
        hot_min_age: Duration::ZERO,
        target_size: 256 << 20,
        delete_delay: Duration::ZERO,
        max_inputs: 2000,
    };
    let t = Instant::now();
    let summary = store.compact(&opts, &NoProgress).await.expect("compact");
    println!(
        "compacted in {:.1}s: {summary:?}",
        t.elapsed().as_secs_f64()
    );
}
