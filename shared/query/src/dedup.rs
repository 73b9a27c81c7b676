//! Identical entries stored twice count once, on every read path.
//!
//! An agent retries a push after any 5xx or timeout, so the same entries can be stored in two
//! objects. Loki counts identical (stream, timestamp, line) entries once; so do we. A push
//! never stores a duplicate inside one object (the writer drops them), so a duplicate can only
//! exist where one stream's time ranges in two selected objects overlap — which the stream
//! catalogs say without reading a line. Only those streams pay for deduplication: the common
//! case (no retries, or compacted data) costs one pass over the catalogs.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use arrow::array::AsArray;
use datafusion::logical_expr::{Expr, and, col, lit};
use datafusion::physical_plan::collect;
use parquetry_store::schema::{COL_LINE, COL_STREAM, COL_TIMESTAMP};

use crate::logs::{session, ts_lit, ts_stream_line};
use crate::select::Selection;
use crate::table::LogTable;
use crate::{QueryEngine, Result};

/// Per stream, the time intervals (inclusive) that two or more selected objects both cover:
/// only entries inside them can have a copy elsewhere. Sequential pushes of one stream touch
/// at most at their boundaries, so the intervals stay narrow unless writers really overlap.
pub(crate) type Overlaps = HashMap<u64, Vec<(i64, i64)>>;

pub(crate) fn overlapping_streams(sel: &Selection) -> Overlaps {
    let spans = sel.objects.iter().flat_map(|o| &o.streams);
    overlaps_by_stream(spans.map(|s| (s.fingerprint, s.min_ts, s.max_ts)), 0)
}

/// Per stream, the times where two or more of its spans `(fp, oldest, newest)`, each widened
/// by `widen` on both sides, overlap.
pub(crate) fn overlaps_by_stream(
    spans: impl Iterator<Item = (u64, i64, i64)>,
    widen: i64,
) -> Overlaps {
    let mut ranges: HashMap<u64, Vec<(i64, i64)>> = HashMap::new();
    for (fp, lo, hi) in spans {
        ranges
            .entry(fp)
            .or_default()
            .push((lo.saturating_sub(widen), hi.saturating_add(widen)));
    }
    ranges
        .into_iter()
        .filter_map(|(fp, mut r)| {
            let overlaps = overlaps_of(&mut r);
            (!overlaps.is_empty()).then_some((fp, overlaps))
        })
        .collect()
}

/// The merged intervals covered by at least two of `ranges`.
fn overlaps_of(ranges: &mut [(i64, i64)]) -> Vec<(i64, i64)> {
    ranges.sort_unstable();
    let mut out: Vec<(i64, i64)> = Vec::new();
    let mut reach = i64::MIN;
    for &(lo, hi) in ranges.iter() {
        if lo <= reach {
            let both = (lo, hi.min(reach));
            match out.last_mut() {
                Some(last) if both.0 <= last.1 => last.1 = last.1.max(both.1),
                _ => out.push(both),
            }
        }
        reach = reach.max(hi);
    }
    out
}

/// The identity of an entry: stream, time and a 64-bit hash of the line (a collision needs
/// two different lines of one stream at the same nanosecond).
type EntryKey = (u64, i64, u64);

fn line_hash(line: &str) -> u64 {
    twox_hash::XxHash64::oneshot(0, line.as_bytes())
}

/// Most entries one scan tracks (~40 bytes each). Overlaps are large only where writers
/// interleave one stream, and only until the compactor, which removes duplicates for good,
/// has merged them (`compactor.hot_object_min_age` plus a pass); past the cap further entries
/// count as first seen, so memory stays bounded and an answer may count a repeat once more.
const MAX_TRACKED: usize = 2_000_000;

/// Entries already seen, shared by the parallel partitions of one scan.
#[derive(Debug, Default)]
pub(crate) struct Seen {
    streams: Overlaps,
    seen: Mutex<HashSet<EntryKey>>,
}

/// True when `ts` is inside one of the stream's overlaps.
fn in_overlap(streams: &Overlaps, fp: u64, ts: i64) -> bool {
    streams
        .get(&fp)
        .is_some_and(|iv| iv.iter().any(|&(lo, hi)| lo <= ts && ts <= hi))
}

impl Seen {
    pub(crate) fn new(streams: Overlaps) -> Arc<Seen> {
        Arc::new(Seen {
            streams,
            seen: Mutex::default(),
        })
    }

    /// True when nothing needs deduplicating.
    pub(crate) fn is_empty(&self) -> bool {
        self.streams.is_empty()
    }

    /// False when this entry was already counted.
    pub(crate) fn first(&self, fp: u64, ts: i64, line: &str) -> bool {
        if !in_overlap(&self.streams, fp, ts) {
            return true;
        }
        // A poisoned lock means another partition panicked; counting twice is then the
        // lesser harm than failing, and the query fails on that panic anyway.
        match self.seen.lock() {
            Ok(mut s) => {
                let key = (fp, ts, line_hash(line));
                if s.len() >= MAX_TRACKED {
                    return !s.contains(&key);
                }
                s.insert(key)
            }
            Err(_) => true,
        }
    }
}

/// Entries and line bytes of one stream in one object that repeat an entry counted elsewhere.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Repeats {
    pub(crate) entries: u64,
    pub(crate) bytes: u64,
}

impl QueryEngine {
    /// For each (object index in `sel`, stream) that holds repeats, how many: the catalogs'
    /// figures minus these are the distinct entries. Reads timestamps and lines of the
    /// overlapping streams only.
    pub(crate) async fn repeats(
        &self,
        sel: &Selection,
        start: i64,
        end: i64,
    ) -> Result<HashMap<(usize, u64), Repeats>> {
        let streams = overlapping_streams(sel);
        let mut out = HashMap::new();
        if streams.is_empty() {
            return Ok(out);
        }
        let ctx = session(self)?;
        let mut seen: HashSet<EntryKey> = HashSet::new();
        for (i, o) in sel.objects.iter().enumerate() {
            let fps: Vec<Expr> = o
                .streams
                .iter()
                .filter(|s| streams.contains_key(&s.fingerprint))
                .map(|s| lit(s.fingerprint))
                .collect();
            if fps.is_empty() {
                continue;
            }
            let predicate = and(
                and(
                    col(COL_TIMESTAMP).gt_eq(ts_lit(start)),
                    col(COL_TIMESTAMP).lt(ts_lit(end)),
                ),
                col(COL_STREAM).in_list(fps, false),
            );
            let plan = ctx
                .read_table(Arc::new(LogTable::new(vec![o.object.clone()])))?
                .filter(predicate)?
                .select_columns(&[COL_TIMESTAMP, COL_STREAM, COL_LINE])?
                .create_physical_plan()
                .await?;
            for batch in collect(plan, ctx.task_ctx()).await? {
                let (ts, fp, line) = ts_stream_line(&batch)?;
                let line = line.as_string::<i32>();
                for row in 0..batch.num_rows() {
                    if !in_overlap(&streams, fp.value(row), ts.value(row)) {
                        continue;
                    }
                    let text = line.value(row);
                    let key = (fp.value(row), ts.value(row), line_hash(text));
                    let repeat = if seen.len() >= MAX_TRACKED {
                        seen.contains(&key)
                    } else {
                        !seen.insert(key)
                    };
                    if repeat {
                        let r: &mut Repeats = out.entry((i, key.0)).or_default();
                        r.entries += 1;
                        r.bytes += text.len() as u64;
                    }
                }
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use parquetry_store::layout::{ObjectKey, PartValue};
    use parquetry_store::{DataObject, StreamInfo};

    use super::*;
    use crate::select::SelectedObject;

    fn object(streams: &[(u64, i64, i64)]) -> SelectedObject {
        let key = ObjectKey {
            tenant: "t".into(),
            day: "2024-01-01".into(),
            partition: vec![("service_name".into(), PartValue::of("a"))],
            min_ts: 0,
            max_ts: 0,
            id: "x".into(),
        };
        SelectedObject {
            object: DataObject {
                path: key.to_path(),
                key,
                size: 0,
            },
            streams: streams
                .iter()
                .map(|&(fingerprint, min_ts, max_ts)| StreamInfo {
                    fingerprint,
                    labels: Default::default(),
                    entries: 1,
                    bytes: 1,
                    min_ts,
                    max_ts,
                })
                .collect(),
        }
    }

    #[test]
    fn only_overlapping_ranges_of_one_stream_need_deduplication() {
        let sel = Selection {
            objects: vec![
                object(&[(1, 0, 10), (2, 0, 10), (3, 0, 10)]),
                object(&[(1, 10, 20), (2, 11, 20)]),
                object(&[(3, 50, 60)]),
            ],
            ..Default::default()
        };
        assert_eq!(
            overlapping_streams(&sel),
            HashMap::from([(1, vec![(10, 10)])])
        );
    }

    #[test]
    fn overlaps_are_the_times_two_ranges_share() {
        assert_eq!(overlaps_of(&mut [(0, 10), (20, 30)]), vec![]);
        assert_eq!(
            overlaps_of(&mut [(0, 10), (5, 30), (25, 40)]),
            vec![(5, 10), (25, 30)]
        );
        assert_eq!(
            overlaps_of(&mut [(0, 100), (10, 20), (15, 30)]),
            vec![(10, 30)]
        );
        assert_eq!(overlaps_of(&mut [(0, 10), (0, 10), (0, 10)]), vec![(0, 10)]);
    }

    #[test]
    fn seen_counts_first_occurrences_of_tracked_streams_only() {
        let seen = Seen::new(HashMap::from([(1, vec![(0, 10)]), (3, vec![(0, 1)])]));
        assert!(seen.first(1, 5, "a"));
        assert!(!seen.first(1, 5, "a"));
        assert!(seen.first(1, 5, "b"));
        assert!(seen.first(2, 5, "a"));
        assert!(seen.first(2, 5, "a"));
        // Outside its overlaps a stream's entries cannot repeat and are not tracked.
        assert!(seen.first(3, 5, "a"));
        assert!(seen.first(3, 5, "a"));
    }
}
