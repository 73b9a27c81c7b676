//! The lines `/loki/api/v1/patterns` mines: every line of the selected streams in the range
//! when there are at most `max_lines` of them, else a deterministic sample of about
//! `max_lines` chosen by a hash of the timestamp, so counts scale back by one factor.
//!
//! The sample is decided inside the Parquet scan on the `timestamp` column, before `line` and
//! `structured_metadata` are decoded, so a sampled query pays for decompressing the line
//! pages but not for copying or mining every line.

use std::sync::Arc;

use arrow::array::{Array, AsArray, MapArray, RecordBatch};
use arrow::compute::cast;
use arrow::datatypes::DataType;
use datafusion::logical_expr::{Expr, and, cast as cast_expr, col, lit};
use datafusion::physical_plan::collect;
use parquetry_model::Matcher;
use parquetry_store::schema::{COL_LINE, COL_METADATA, COL_STREAM, COL_TIMESTAMP};

use crate::logs::{session, ts_lit, ts_stream_line};
use crate::stats::QueryStats;
use crate::table::LogTable;
use crate::{QueryEngine, Result};

/// The structured-metadata key holding a line's level.
const LEVEL_KEY: &str = "detected_level";

/// A prime modulus for the timestamp hash: coprime with every power of ten, so timestamps
/// rounded to µs, ms or s still spread over all residues.
const SAMPLE_MODULUS: i64 = 1_000_003;

/// One sampled line.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct SampledLine {
    pub stream: u64,
    pub ts: i64,
    pub line: String,
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
        let mut stats = QueryStats::default();
        let selection = self
            .select(tenant, &[matchers.to_vec()], start, end, &mut stats)
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
            let keep = ((rate * SAMPLE_MODULUS as f64).ceil() as i64).max(1);
            let hash = cast_expr(col(COL_TIMESTAMP), DataType::Int64) % lit(SAMPLE_MODULUS);
            predicate = and(predicate, hash.lt(lit(keep)));
            out.rate = keep as f64 / SAMPLE_MODULUS as f64;
        }
        let df = ctx
            .read_table(Arc::new(LogTable::new(objects)))?
            .filter(predicate)?
            .select_columns(&[COL_TIMESTAMP, COL_STREAM, COL_LINE, COL_METADATA])?;
        let plan = df.create_physical_plan().await?;
        let batches = collect(plan.clone(), ctx.task_ctx()).await?;
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
