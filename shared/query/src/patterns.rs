//! The lines `/loki/api/v1/patterns` mines: every line of the selected streams in the range
//! when there are at most `max_lines` of them, else a deterministic sample of about
//! `max_lines` chosen by a hash of the timestamp, so counts scale back by one factor.
//!
//! The sample is decided inside the Parquet scan on the `timestamp` and `stream` columns,
//! before `line` and `structured_metadata` are decoded. Decompressing those pages is most of
//! the cost of a sampled query, and a page is decompressed whole as soon as one of its rows
//! is kept, so a sample of single rows spread over the range decompresses every page. The
//! sample is therefore drawn in two stages: first whole units, a stream's entries over a
//! time slice holding about a data page of line text, so the pages of units left out are
//! never decompressed; then single rows inside the kept units. Counts scale back by the
//! product of the two shares, the first estimated from the catalogs for the units actually
//! kept.

use std::sync::Arc;

use arrow::array::{Array, AsArray, MapArray, RecordBatch};
use arrow::compute::cast;
use arrow::datatypes::DataType;
use datafusion::logical_expr::{Expr, and, cast as cast_expr, col, lit};
use datafusion::physical_plan::collect;
use parquetry_model::Matcher;
use parquetry_store::StreamInfo;
use parquetry_store::schema::{COL_LINE, COL_METADATA, COL_STREAM, COL_TIMESTAMP};

use crate::logs::{session, ts_lit, ts_stream_line};
use crate::stats::QueryStats;
use crate::table::LogTable;
use crate::trace::{self, Stage};
use crate::{QueryEngine, QueryError, Result};

/// The structured-metadata key holding a line's level.
const LEVEL_KEY: &str = "detected_level";

/// A prime modulus for the timestamp hash: coprime with every power of ten, so timestamps
/// rounded to µs, ms or s still spread over all residues.
const SAMPLE_MODULUS: i64 = 1_000_003;

/// Line text in one sampling unit: a few Parquet data pages of `line` (1 MiB each, the
/// writer's default), so that a unit left out is whole pages not decompressed even though
/// units and pages do not share boundaries.
const UNIT_BYTES: f64 = 4.0 * 1_048_576.0;

/// Share of the units read when sampling. Smaller reads less but makes counts depend on
/// fewer units; a quarter keeps the patterns and counts of a full-range row sample
/// (docs/benchmarks.md, "Patterns").
const UNIT_SHARE: f64 = 0.25;

/// Units kept at least, so a count never rests on a handful of streams or slices.
const MIN_KEPT_UNITS: f64 = 64.0;

/// Multipliers (below the modulus, so products fit in an `i64`) that spread successive
/// fingerprint buckets and successive slices over the residues: the units kept are scattered
/// rather than one run of neighbours.
const BUCKET_SPREAD: i64 = 611_953;
const SLICE_SPREAD: i64 = 386_093;

/// The first sampling stage: units are (`stream >> shift`, `ts / width`), kept when their
/// hash is below `keep`. Rows are sorted by stream, so streams whose fingerprints share the
/// high bits are neighbours in an object: a shift groups light streams into one contiguous
/// unit, a width cuts a heavy stream into time slices. Mirrors the predicate the scan
/// evaluates.
#[derive(Debug, Clone, Copy)]
struct UnitSample {
    shift: u32,
    width: i64,
    keep: i64,
}

impl UnitSample {
    fn kept(&self, fingerprint: u64, slice: i64) -> bool {
        let bucket = ((fingerprint >> self.shift) % SAMPLE_MODULUS as u64) as i64;
        let h = (bucket * BUCKET_SPREAD + slice.rem_euclid(SAMPLE_MODULUS) * SLICE_SPREAD)
            % SAMPLE_MODULUS;
        h < self.keep
    }

    /// The same test as a DataFusion expression over `stream` and `timestamp`.
    fn predicate(&self) -> Expr {
        let stream = cast_expr(
            (col(COL_STREAM) / lit(1u64 << self.shift)) % lit(SAMPLE_MODULUS as u64),
            DataType::Int64,
        );
        let slice = cast_expr(col(COL_TIMESTAMP), DataType::Int64) / lit(self.width);
        let h = stream * lit(BUCKET_SPREAD) + (slice % lit(SAMPLE_MODULUS)) * lit(SLICE_SPREAD);
        (h % lit(SAMPLE_MODULUS)).lt(lit(self.keep))
    }

    /// Estimated lines of `streams` in `[start, end)` that fall in kept units, with every
    /// stream's lines spread evenly over its `[min_ts, max_ts]`.
    fn kept_lines<'a>(
        &self,
        streams: impl Iterator<Item = &'a StreamInfo>,
        start: i64,
        end: i64,
    ) -> f64 {
        let mut kept = 0f64;
        for s in streams {
            let (lo, hi) = (s.min_ts.max(start), s.max_ts.min(end.saturating_sub(1)));
            if hi < lo {
                continue;
            }
            let per_ns = s.entries as f64 / ((s.max_ts - s.min_ts).max(0) as f64 + 1.0);
            let mut slice = lo.div_euclid(self.width);
            while slice * self.width <= hi {
                let a = (slice * self.width).max(lo);
                let b = ((slice + 1) * self.width - 1).min(hi);
                if self.kept(s.fingerprint, slice) {
                    kept += per_ns * ((b - a) as f64 + 1.0);
                }
                slice += 1;
            }
        }
        kept
    }
}

/// The unit stage for `streams` when `rate` of their `lines` are to be mined, or `None` when
/// the units would be too few (or the sample too large) for it to save anything.
fn unit_sample<'a>(
    streams: impl Iterator<Item = &'a StreamInfo> + Clone,
    start: i64,
    end: i64,
    rate: f64,
) -> Option<UnitSample> {
    // Slice width: each stream's span per unit of line text, the median over the bytes (the
    // heavy streams are the pages that cost), at least a second.
    let mut widths: Vec<(f64, u64)> = Vec::new();
    let mut bytes = 0u64;
    let mut units = 0f64;
    for s in streams.clone() {
        let (lo, hi) = (s.min_ts.max(start), s.max_ts.min(end.saturating_sub(1)));
        if hi < lo || s.bytes == 0 {
            continue;
        }
        let span = (s.max_ts - s.min_ts).max(0) as f64 + 1.0;
        widths.push((span * UNIT_BYTES / s.bytes as f64, s.bytes));
        bytes += s.bytes;
    }
    widths.sort_by(|a, b| a.0.total_cmp(&b.0));
    let mut seen = 0u64;
    let width = widths
        .iter()
        .find(|(_, b)| {
            seen += b;
            seen * 2 >= bytes
        })
        .map(|(w, _)| (*w as i64).max(1_000_000_000))?;
    let mut fingerprints = std::collections::HashSet::new();
    for s in streams {
        let (lo, hi) = (s.min_ts.max(start), s.max_ts.min(end.saturating_sub(1)));
        if hi >= lo {
            units += (hi.div_euclid(width) - lo.div_euclid(width) + 1) as f64;
            fingerprints.insert(s.fingerprint);
        }
    }
    // Streams per unit so a unit holds about `UNIT_BYTES`, as a power of two of fingerprint
    // buckets (fingerprints are hashes, so buckets hold alike shares of the streams).
    let group = (UNIT_BYTES * units / bytes as f64).max(1.0);
    let buckets = (fingerprints.len() as f64 / group).max(1.0);
    let shift = 64 - (buckets.log2().round() as u32).min(64);
    units /= group;
    let share = UNIT_SHARE.max(MIN_KEPT_UNITS / units).max(rate);
    if share >= 0.5 {
        return None;
    }
    Some(UnitSample {
        shift: shift.min(63),
        width,
        keep: ((share * SAMPLE_MODULUS as f64).ceil() as i64).max(1),
    })
}

/// One sampled line.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct SampledLine {
    /// The stream fingerprint.
    pub stream: u64,
    /// Entry time (Unix ns).
    pub ts: i64,
    /// The line.
    pub line: String,
    /// Its `detected_level` metadata, if any.
    pub level: Option<String>,
}

/// The lines to mine and how they relate to all lines in the range.
#[derive(Debug, Clone, Default)]
pub struct LineSample {
    /// Sorted by stream then time, duplicates (retried pushes) removed.
    pub lines: Vec<SampledLine>,
    /// The share of lines kept: 1.0 when every line was read. Counts mined from the sample
    /// estimate the real ones when divided by it.
    pub rate: f64,
    /// Lines of the selected streams in the range, estimated from the stream catalogs.
    pub lines_in_range: u64,
    /// What sampling read.
    pub stats: QueryStats,
}

impl QueryEngine {
    /// The lines of the streams matching `matchers` in `[start, end)`: all of them when the
    /// catalogs say there are at most `max_lines`, else a sample of about that many.
    pub async fn sample_lines(
        &self,
        tenant: &str,
        matchers: &[Matcher],
        start: i64,
        end: i64,
        max_lines: usize,
    ) -> Result<LineSample> {
        self.checking_damage(tenant, &[matchers.to_vec()], start, end, || {
            self.sample_lines_once(tenant, matchers, start, end, max_lines)
        })
        .await
    }

    async fn sample_lines_once(
        &self,
        tenant: &str,
        matchers: &[Matcher],
        start: i64,
        end: i64,
        max_lines: usize,
    ) -> Result<LineSample> {
        let mut stats = QueryStats::default();
        let selection = trace::stage(
            Stage::Plan,
            self.select(tenant, &[matchers.to_vec()], start, end, &mut stats),
        )
        .await?;
        // A stream's entries are spread over its [min_ts, max_ts]: count the share that
        // falls inside the range.
        let mut estimate = 0f64;
        for o in &selection.objects {
            for s in &o.streams {
                let span = (s.max_ts - s.min_ts).max(0) as f64 + 1.0;
                let lo = s.min_ts.max(start);
                let hi = s.max_ts.min(end.saturating_sub(1));
                let overlap = ((hi - lo).max(-1) as f64 + 1.0).clamp(0.0, span);
                estimate += s.entries as f64 * overlap / span;
            }
        }
        let lines_in_range = estimate.ceil() as u64;
        let rate = if lines_in_range as f64 <= max_lines as f64 {
            1.0
        } else {
            max_lines as f64 / estimate
        };
        let mut out = LineSample {
            lines: Vec::new(),
            rate,
            lines_in_range,
            stats,
        };
        if selection.objects.is_empty() || max_lines == 0 {
            return Ok(out);
        }
        let ctx = session(self)?;
        let objects = selection.objects.iter().map(|o| o.object.clone()).collect();
        let fps: Vec<Expr> = selection.fingerprints().into_iter().map(lit).collect();
        let mut predicate = and(
            and(
                col(COL_TIMESTAMP).gt_eq(ts_lit(start)),
                col(COL_TIMESTAMP).lt(ts_lit(end)),
            ),
            col(COL_STREAM).in_list(fps, false),
        );
        if rate < 1.0 {
            let streams = selection.objects.iter().flat_map(|o| o.streams.iter());
            let mut row_rate = rate;
            let mut unit_rate = 1.0;
            if let Some(units) = unit_sample(streams.clone(), start, end, rate) {
                let kept = units.kept_lines(streams, start, end);
                if kept > 0.0 {
                    unit_rate = (kept / estimate).min(1.0);
                    row_rate = (max_lines as f64 / kept).min(1.0);
                    predicate = and(predicate, units.predicate());
                }
            }
            let keep = ((row_rate * SAMPLE_MODULUS as f64).ceil() as i64).max(1);
            if keep < SAMPLE_MODULUS {
                let hash = cast_expr(col(COL_TIMESTAMP), DataType::Int64) % lit(SAMPLE_MODULUS);
                predicate = and(predicate, hash.lt(lit(keep)));
            }
            out.rate = unit_rate * keep.min(SAMPLE_MODULUS) as f64 / SAMPLE_MODULUS as f64;
        }
        let df = ctx
            .read_table(Arc::new(LogTable::new(objects)))?
            .filter(predicate)?
            .select_columns(&[COL_TIMESTAMP, COL_STREAM, COL_LINE, COL_METADATA])?;
        let (plan, batches) = trace::stage(Stage::Scan, async {
            let plan = df.create_physical_plan().await?;
            let batches = collect(plan.clone(), ctx.task_ctx()).await?;
            Ok::<_, QueryError>((plan, batches))
        })
        .await?;
        out.stats.bytes_scanned = crate::logs::scan_metrics(plan.as_ref()).bytes_scanned;
        out.stats.objects_scanned = selection.objects.len() as u64;
        for b in &batches {
            read_lines(b, &mut out.lines)?;
        }
        out.lines.sort_unstable();
        out.lines
            .dedup_by(|b, a| a.stream == b.stream && a.ts == b.ts && a.line == b.line);
        Ok(out)
    }
}

fn read_lines(batch: &RecordBatch, out: &mut Vec<SampledLine>) -> Result<()> {
    let (ts, stream, line) = ts_stream_line(batch)?;
    let line = line.as_string::<i32>();
    let meta = batch.column(3).as_map_opt();
    for i in 0..batch.num_rows() {
        out.push(SampledLine {
            stream: stream.value(i),
            ts: ts.value(i),
            line: line.value(i).to_string(),
            level: meta.map(|m| level(m, i)).transpose()?.flatten(),
        });
    }
    Ok(())
}

fn level(m: &MapArray, i: usize) -> Result<Option<String>> {
    if m.is_null(i) {
        return Ok(None);
    }
    let entries = m.value(i);
    let keys = cast(entries.column(0), &DataType::Utf8)?;
    let keys = keys.as_string::<i32>();
    let Some(j) = (0..entries.len()).find(|&j| keys.value(j) == LEVEL_KEY) else {
        return Ok(None);
    };
    let values = cast(entries.column(1), &DataType::Utf8)?;
    let values = values.as_string::<i32>();
    if values.is_null(j) {
        return Ok(None);
    }
    Ok(Some(values.value(j).to_string()))
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use arrow::array::{TimestampNanosecondArray, UInt64Array};
    use arrow::datatypes::{Field, Schema, TimeUnit};
    use datafusion::datasource::MemTable;
    use datafusion::prelude::SessionContext;

    use super::*;

    fn stream(fingerprint: u64, min_ts: i64, max_ts: i64, bytes: u64) -> StreamInfo {
        StreamInfo {
            fingerprint,
            labels: BTreeMap::new(),
            entries: bytes / 100,
            bytes,
            min_ts,
            max_ts,
        }
    }

    /// The scan's predicate keeps exactly the rows [`UnitSample::kept`] says, and about the
    /// planned share of units.
    #[tokio::test]
    async fn predicate_matches_the_catalog_estimate() {
        const S: i64 = 1_000_000_000;
        let day = 86_400 * S;
        let start = 20_000 * day;
        let mut x = 0x9E37_79B9_7F4A_7C15u64;
        let mut fps = Vec::new();
        for _ in 0..400 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            fps.push(x);
        }
        // 400 light streams (1 MB a day) and one heavy one (2 GB a day).
        let mut streams: Vec<StreamInfo> = fps
            .iter()
            .map(|&f| stream(f, start, start + day - 1, 1 << 20))
            .collect();
        streams.push(stream(7, start, start + day - 1, 2 << 30));
        let units = unit_sample(streams.iter(), start, start + day, 0.01).unwrap();
        let share = units.keep as f64 / SAMPLE_MODULUS as f64;
        assert!((0.2..0.5).contains(&share), "{units:?}");

        let (mut ts, mut st) = (Vec::new(), Vec::new());
        for (i, s) in streams.iter().enumerate() {
            let n = if s.fingerprint == 7 { 20_000 } else { 20 };
            for j in 0..n {
                st.push(s.fingerprint);
                ts.push(start + (j * day / n) + i as i64);
            }
        }
        let want: Vec<bool> = st
            .iter()
            .zip(&ts)
            .map(|(f, t)| units.kept(*f, t.div_euclid(units.width)))
            .collect();
        let kept_rows = want.iter().filter(|k| **k).count() as f64;
        let heavy_kept = st
            .iter()
            .zip(&want)
            .filter(|(f, k)| **f == 7 && **k)
            .count() as f64;
        // A share of the heavy stream's slices, not all or none of it.
        assert!(
            (0.1..0.6).contains(&(heavy_kept / 20_000.0)),
            "{heavy_kept}"
        );
        assert!((0.1..0.6).contains(&(kept_rows / want.len() as f64)));

        let schema = Arc::new(Schema::new(vec![
            Field::new(
                COL_TIMESTAMP,
                DataType::Timestamp(TimeUnit::Nanosecond, Some("UTC".into())),
                false,
            ),
            Field::new(COL_STREAM, DataType::UInt64, false),
        ]));
        let batch = RecordBatch::try_new(
            schema.clone(),
            vec![
                Arc::new(TimestampNanosecondArray::from(ts).with_timezone("UTC")),
                Arc::new(UInt64Array::from(st)),
            ],
        )
        .unwrap();
        let ctx = SessionContext::new();
        let table = MemTable::try_new(schema, vec![vec![batch]]).unwrap();
        let got = ctx
            .read_table(Arc::new(table))
            .unwrap()
            .filter(units.predicate())
            .unwrap()
            .count()
            .await
            .unwrap();
        assert_eq!(got as f64, kept_rows);
    }
}
