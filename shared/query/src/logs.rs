//! Log queries: the newest (or oldest) `limit` entries matching a selector and line filters.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::Instant;

use arrow::array::{Array, AsArray, MapArray, RecordBatch};
use arrow::compute::cast;
use arrow::datatypes::{DataType, TimestampNanosecondType, UInt64Type};
use datafusion::common::ScalarValue;
use datafusion::execution::object_store::ObjectStoreUrl;
use datafusion::logical_expr::{Expr, and, col, lit};
use datafusion::physical_plan::{ExecutionPlan, collect};
use datafusion::prelude::{SessionConfig, SessionContext};
use parquetry_logql::LogExpr;
use parquetry_model::Labels;
use parquetry_pipeline::{EntryLabels, Pipeline};
use parquetry_store::schema::{COL_LINE, COL_METADATA, COL_STREAM, COL_TIMESTAMP};

use crate::pushdown::{Pushdown, compile_pipeline};
use crate::select::Selection;
use crate::stats::QueryStats;
use crate::table::{LogTable, STORE_URL};
use crate::{QueryEngine, QueryError, Result};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// Newest first (Loki's default).
    Backward,
    /// Oldest first.
    Forward,
}

/// A log query, parameters already validated.
#[derive(Debug, Clone)]
pub struct LogQuery {
    pub tenant: String,
    pub expr: LogExpr,
    /// Inclusive, ns.
    pub start: i64,
    /// Exclusive, ns.
    pub end: i64,
    pub limit: usize,
    pub direction: Direction,
    /// Thinning: after the first entry, emit only entries at least this far (ns) from the
    /// last emitted one, in query direction.
    pub interval_ns: Option<i64>,
}

/// One entry of a result.
#[derive(Debug, Clone, PartialEq)]
pub struct ResultEntry {
    pub ts: i64,
    pub line: String,
    pub structured_metadata: Vec<(String, String)>,
    /// Labels the pipeline extracted (parsers, `label_format`), with `__error__` if any.
    pub parsed: Vec<(String, String)>,
}

/// Entries grouped by stream, streams sorted by their label text, entries in query direction.
#[derive(Debug, Clone, Default)]
pub struct LogResult {
    pub streams: Vec<(Labels, Vec<ResultEntry>)>,
    pub stats: QueryStats,
}

/// A row as read back, before grouping.
struct Row {
    ts: i64,
    stream: u64,
    line: String,
    metadata: Vec<(String, String)>,
}

impl QueryEngine {
    pub async fn log_query(&self, q: &LogQuery) -> Result<LogResult> {
        let started = Instant::now();
        let mut stats = QueryStats::default();
        let push = Pushdown::of(&q.expr.pipeline);
        let pipeline = if push.exact {
            None
        } else {
            Some(compile_pipeline(&q.expr.pipeline)?)
        };
        let selection = self
            .select(
                &q.tenant,
                std::slice::from_ref(&q.expr.selector),
                q.start,
                q.end,
                &mut stats,
            )
            .await?;
        account_selection(&selection, q.start, q.end, &mut stats);
        let labels_by_fp: HashMap<u64, Labels> = selection
            .streams()
            .into_iter()
            .map(|s| (s.fingerprint, s.labels()))
            .collect();

        let mut out = Vec::new();
        if !selection.objects.is_empty() && q.limit > 0 {
            // Duplicates (a retried push), the pipeline and interval thinning can make the
            // first `limit` rows yield fewer entries; fetch more only in that case.
            let mut fetch = q.limit;
            loop {
                let (fetched, scan) = self
                    .scan_rows(&selection, q, push.predicate.clone(), fetch)
                    .await?;
                let exhausted = fetched.len() < fetch;
                stats.bytes_scanned = scan.bytes_scanned;
                stats.objects_scanned = selection.objects.len() as u64;
                let processed = run_pipeline(dedup(fetched), pipeline.as_ref(), &labels_by_fp);
                stats.post_filter_lines = processed.len() as u64;
                out = thin(processed, q.interval_ns);
                if exhausted || out.len() >= q.limit {
                    break;
                }
                fetch = fetch.saturating_mul(4);
            }
            out.truncate(q.limit);
        }
        stats.entries_returned = out.len() as u64;

        // Group by stream; within a stream the direction order is already right.
        let mut grouped: BTreeMap<String, (Labels, Vec<ResultEntry>)> = BTreeMap::new();
        for (labels, entry) in out {
            grouped
                .entry(labels.to_string())
                .or_insert_with(|| (labels, Vec::new()))
                .1
                .push(entry);
        }
        stats.exec_time_s = started.elapsed().as_secs_f64();
        Ok(LogResult {
            streams: grouped.into_values().collect(),
            stats,
        })
    }

    async fn scan_rows(
        &self,
        selection: &Selection,
        q: &LogQuery,
        line_filter: Option<Expr>,
        fetch: usize,
    ) -> Result<(Vec<Row>, ScanMetrics)> {
        let ctx = session(self)?;
        let objects = selection.objects.iter().map(|o| o.object.clone()).collect();
        let mut predicate = and(
            col(COL_TIMESTAMP).gt_eq(ts_lit(q.start)),
            col(COL_TIMESTAMP).lt(ts_lit(q.end)),
        );
        let fps: Vec<Expr> = selection.fingerprints().into_iter().map(lit).collect();
        predicate = and(predicate, col(COL_STREAM).in_list(fps, false));
        if let Some(f) = line_filter {
            predicate = and(predicate, f);
        }
        let asc = q.direction == Direction::Forward;
        let df = ctx
            .read_table(Arc::new(LogTable::new(objects)))?
            .filter(predicate)?
            .select_columns(&[COL_TIMESTAMP, COL_STREAM, COL_LINE, COL_METADATA])?
            // Ties on time are broken by stream then line so results are deterministic.
            .sort(vec![
                col(COL_TIMESTAMP).sort(asc, false),
                col(COL_STREAM).sort(true, false),
                col(COL_LINE).sort(true, false),
            ])?
            .limit(0, Some(fetch))?;
        let plan = df.create_physical_plan().await?;
        let batches = collect(plan.clone(), ctx.task_ctx()).await?;
        let mut rows = Vec::new();
        for b in &batches {
            read_rows(b, &mut rows)?;
        }
        Ok((rows, scan_metrics(plan.as_ref())))
    }
}

/// Per-query DataFusion session with the store registered and Parquet pushdown on.
pub(crate) fn session(engine: &QueryEngine) -> Result<SessionContext> {
    let mut config = SessionConfig::new();
    let opts = config.options_mut();
    opts.execution.parquet.pushdown_filters = true;
    opts.execution.parquet.reorder_filters = true;
    opts.execution.parquet.enable_page_index = true;
    opts.execution.parquet.bloom_filter_on_read = true;
    let ctx = SessionContext::new_with_config(config);
    let url = ObjectStoreUrl::parse(STORE_URL)?;
    ctx.register_object_store(url.as_ref(), engine.store().object_store());
    Ok(ctx)
}

pub(crate) fn ts_lit(ns: i64) -> Expr {
    lit(ScalarValue::TimestampNanosecond(
        Some(ns),
        Some("UTC".into()),
    ))
}

/// Catalog-based figures: what the selected streams hold inside the time range.
pub(crate) fn account_selection(sel: &Selection, start: i64, end: i64, stats: &mut QueryStats) {
    let mut streams = HashSet::new();
    for o in &sel.objects {
        for s in &o.streams {
            streams.insert(s.fingerprint);
            if s.min_ts < end && s.max_ts >= start {
                stats.lines_processed += s.entries;
                stats.bytes_processed += s.bytes;
            }
        }
    }
    stats.streams = streams.len() as u64;
}

#[derive(Debug, Default)]
pub(crate) struct ScanMetrics {
    pub(crate) bytes_scanned: u64,
}

/// Sums the scan's own counters over the executed plan.
pub(crate) fn scan_metrics(plan: &dyn ExecutionPlan) -> ScanMetrics {
    let mut m = ScanMetrics::default();
    if let Some(v) = plan
        .metrics()
        .and_then(|metrics| metrics.sum_by_name("bytes_scanned"))
    {
        m.bytes_scanned += v.as_usize() as u64;
    }
    for child in plan.children() {
        let c = scan_metrics(child.as_ref());
        m.bytes_scanned += c.bytes_scanned;
    }
    m
}

fn read_rows(batch: &RecordBatch, out: &mut Vec<Row>) -> Result<()> {
    let ts = batch
        .column(0)
        .as_primitive_opt::<TimestampNanosecondType>()
        .ok_or_else(|| QueryError::BadRequest("unexpected timestamp column type".into()))?;
    let stream = batch
        .column(1)
        .as_primitive_opt::<UInt64Type>()
        .ok_or_else(|| QueryError::BadRequest("unexpected stream column type".into()))?;
    let line = cast(batch.column(2), &DataType::Utf8)?;
    let line = line.as_string::<i32>();
    let meta = batch.column(3).as_map_opt();
    for i in 0..batch.num_rows() {
        out.push(Row {
            ts: ts.value(i),
            stream: stream.value(i),
            line: line.value(i).to_string(),
            metadata: meta
                .map(|m| map_entries(m, i))
                .transpose()?
                .unwrap_or_default(),
        });
    }
    Ok(())
}

fn map_entries(m: &MapArray, i: usize) -> Result<Vec<(String, String)>> {
    if m.is_null(i) {
        return Ok(Vec::new());
    }
    let entries = m.value(i);
    let keys = cast(entries.column(0), &DataType::Utf8)?;
    let values = cast(entries.column(1), &DataType::Utf8)?;
    let (keys, values) = (keys.as_string::<i32>(), values.as_string::<i32>());
    Ok((0..entries.len())
        .map(|j| (keys.value(j).to_string(), values.value(j).to_string()))
        .collect())
}

trait HasTs {
    fn ts(&self) -> i64;
}

impl HasTs for Row {
    fn ts(&self) -> i64 {
        self.ts
    }
}

impl HasTs for (Labels, ResultEntry) {
    fn ts(&self) -> i64 {
        self.1.ts
    }
}

/// Identical (stream, time, line) entries are one entry: a retried push may have stored twice.
/// Rows arrive sorted by time then stream then line, so duplicates are adjacent.
fn dedup(mut rows: Vec<Row>) -> Vec<Row> {
    rows.dedup_by(|b, a| a.ts == b.ts && a.stream == b.stream && a.line == b.line);
    rows
}

/// Runs the per-entry pipeline (when the scan could not do it all) and attaches each entry's
/// result-stream labels.
fn run_pipeline(
    rows: Vec<Row>,
    pipeline: Option<&Pipeline>,
    labels_by_fp: &HashMap<u64, Labels>,
) -> Vec<(Labels, ResultEntry)> {
    let mut out = Vec::with_capacity(rows.len());
    for r in rows {
        let Some(stream) = labels_by_fp.get(&r.stream) else {
            continue;
        };
        let Some(p) = pipeline else {
            out.push((
                stream.clone(),
                ResultEntry {
                    ts: r.ts,
                    line: r.line,
                    structured_metadata: r.metadata,
                    parsed: Vec::new(),
                },
            ));
            continue;
        };
        let mut entry = EntryLabels::new(stream, &r.metadata);
        let Some(line) = p.process(r.ts, &r.line, &mut entry) else {
            continue;
        };
        let line = line.into_owned();
        out.push((
            entry.stream(),
            ResultEntry {
                ts: r.ts,
                line,
                structured_metadata: pairs(entry.structured_metadata()),
                parsed: pairs(entry.parsed()),
            },
        ));
    }
    out
}

fn pairs(l: Labels) -> Vec<(String, String)> {
    l.into_vec()
        .into_iter()
        .map(|l| (l.name, l.value))
        .collect()
}

fn thin<T: HasTs>(rows: Vec<T>, interval: Option<i64>) -> Vec<T> {
    let Some(iv) = interval.filter(|i| *i > 0) else {
        return rows;
    };
    let mut last: Option<i64> = None;
    rows.into_iter()
        .filter(|r| {
            let ts = r.ts();
            let keep = last.is_none_or(|l| (ts - l).abs() >= iv);
            if keep {
                last = Some(ts);
            }
            keep
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thinning_keeps_first_and_spaced() {
        let rows = [0, 5, 10, 15, 30]
            .map(|ts| Row {
                ts,
                stream: 1,
                line: String::new(),
                metadata: vec![],
            })
            .into_iter()
            .collect();
        let kept: Vec<i64> = thin(rows, Some(10)).into_iter().map(|r| r.ts).collect();
        assert_eq!(kept, vec![0, 10, 30]);
    }
}
