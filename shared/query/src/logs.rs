//! Log queries: the newest (or oldest) `limit` entries matching a selector and line filters.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::Instant;

use arrow::array::{
    Array, ArrayRef, AsArray, MapArray, RecordBatch, TimestampNanosecondArray, UInt64Array,
};
use arrow::compute::cast;
use arrow::datatypes::{DataType, TimestampNanosecondType, UInt64Type};
use datafusion::common::ScalarValue;
use datafusion::logical_expr::{Expr, and, col, lit};
use datafusion::physical_plan::{ExecutionPlan, collect};
use datafusion::prelude::{SessionConfig, SessionContext};
use parquetry_logql::LogExpr;
use parquetry_model::Labels;
use parquetry_pipeline::{EntryLabels, Pipeline, metadata_name};
use parquetry_store::DataObject;
use parquetry_store::schema::{COL_STREAM, COL_TIMESTAMP};

use crate::cost::IoCounters;
use crate::limits::{Cancelled, OutputBudget, cancellation};
use crate::pushdown::{Pushdown, compile_pipeline};
use crate::select::Selection;
use crate::stats::QueryStats;
use crate::table::LogTable;
use crate::trace::{self, Stage};
use crate::{QueryEngine, QueryError, Result};

mod scan;
use scan::top_rows;

/// The order a log query returns entries in.
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
    /// The tenant.
    pub tenant: String,
    /// The selector and pipeline.
    pub expr: LogExpr,
    /// Inclusive, ns.
    pub start: i64,
    /// Exclusive, ns.
    pub end: i64,
    /// Most entries returned.
    pub limit: usize,
    /// Newest or oldest first.
    pub direction: Direction,
    /// Thinning: after the first entry, emit only entries at least this far (ns) from the
    /// last emitted one, in query direction.
    pub interval_ns: Option<i64>,
    /// `limits_config.max_query_response_size` in bytes; 0 = unlimited.
    pub max_response_bytes: u64,
}

/// One entry of a result.
#[derive(Debug, Clone, PartialEq)]
pub struct ResultEntry {
    /// Entry time (Unix ns).
    pub ts: i64,
    /// The line after the pipeline.
    pub line: String,
    /// Structured metadata, `(name, value)`.
    pub structured_metadata: Vec<(String, String)>,
    /// Labels the pipeline extracted (parsers, `label_format`), with `__error__` if any.
    pub parsed: Vec<(String, String)>,
}

/// Entries grouped by stream, streams sorted by their label text, entries in query direction.
#[derive(Debug, Clone, Default)]
pub struct LogResult {
    /// Streams with their entries, in answer order.
    pub streams: Vec<(Labels, Vec<ResultEntry>)>,
    /// What the query read.
    pub stats: QueryStats,
}

/// A row as read back, before grouping.
struct Row {
    ts: i64,
    stream: u64,
    line: String,
    metadata: Vec<(String, String)>,
}

/// An entry with the fingerprint of the stream it was read from: the tie-break of the result
/// order (time, then stream, then line), which a fan-out merge has to reproduce.
pub(crate) type KeyedEntry = (u64, Labels, ResultEntry);

impl QueryEngine {
    /// Runs a log query. A page that does not decode fails the first try; the objects of the
    /// range that hold such pages are then left out (with a warning) and the query runs again.
    pub async fn log_query(&self, q: &LogQuery) -> Result<LogResult> {
        let selectors = std::slice::from_ref(&q.expr.selector);
        self.checking_damage(&q.tenant, selectors, q.start, q.end, || {
            self.log_query_once(q)
        })
        .await
    }

    async fn log_query_once(&self, q: &LogQuery) -> Result<LogResult> {
        let started = Instant::now();
        let (out, mut stats) = match crate::fanout::plan_log(self, q).await? {
            Some(plan) => crate::fanout::run_log(self, q, plan).await?,
            None => self.log_entries(q).await?,
        };
        stats.entries_returned = out.len() as u64;
        let streams = group_entries(out);
        stats.exec_time_s = started.elapsed().as_secs_f64();
        stats.cost.price(self.prices(), stats.exec_time_s);
        Ok(LogResult { streams, stats })
    }

    /// The first `limit` entries of a log query in its direction, ungrouped, with the
    /// query's figures (not priced).
    pub(crate) async fn log_entries(&self, q: &LogQuery) -> Result<(Vec<KeyedEntry>, QueryStats)> {
        let mut stats = QueryStats::default();
        let counters = Arc::new(IoCounters::default());
        let push = Pushdown::of(&q.expr.pipeline);
        let pipeline = if push.exact {
            None
        } else {
            Some(compile_pipeline(&q.expr.pipeline)?)
        };
        let selection = trace::stage(
            Stage::Plan,
            self.select(
                &q.tenant,
                std::slice::from_ref(&q.expr.selector),
                q.start,
                q.end,
                &mut stats,
            ),
        )
        .await?;
        account_selection(&selection, q.start, q.end, &mut stats);
        let labels_by_fp: Arc<HashMap<u64, Labels>> = Arc::new(
            selection
                .streams()
                .into_iter()
                .map(|s| (s.fingerprint, s.labels()))
                .collect(),
        );
        let pipeline = pipeline.map(Arc::new);
        // Dropped with this future (a timeout), it stops the pipeline's blocking thread.
        let (_cancel_on_drop, cancelled) = cancellation();

        let mut out = Vec::new();
        if !selection.objects.is_empty() && q.limit > 0 {
            // Duplicates (a retried push), the pipeline and interval thinning can make the
            // first `limit` rows yield fewer entries; fetch more only in that case.
            let mut fetch = q.limit;
            loop {
                let (fetched, scan) = trace::stage(
                    Stage::Scan,
                    self.scan_rows(&selection, q, push.predicate.clone(), fetch, &counters),
                )
                .await?;
                let exhausted = fetched.len() < fetch;
                stats.bytes_scanned = scan.bytes_scanned;
                counters.add_row_groups(scan.row_groups);
                stats.objects_scanned = selection.objects.len() as u64;
                let job = PipelineJob {
                    pipeline: pipeline.clone(),
                    labels_by_fp: labels_by_fp.clone(),
                    budget: OutputBudget::new(q.max_response_bytes),
                    cancelled: cancelled.clone(),
                };
                let rows = dedup(fetched);
                let processed = trace::blocking(Stage::Pipeline, move || job.run(rows))
                    .await
                    .map_err(|e| QueryError::Internal(format!("pipeline task failed: {e}")))??;
                stats.post_filter_lines = processed.len() as u64;
                out = thin(processed, q.interval_ns);
                if exhausted || out.len() >= q.limit {
                    break;
                }
                fetch = fetch.saturating_mul(4);
            }
            out.truncate(q.limit);
        }
        stats.cost = counters.snapshot();
        Ok((out, stats))
    }

    async fn scan_rows(
        &self,
        selection: &Selection,
        q: &LogQuery,
        line_filter: Option<Expr>,
        fetch: usize,
        counters: &Arc<IoCounters>,
    ) -> Result<(Vec<Row>, ScanMetrics)> {
        let ctx = counted_session(self, counters)?;
        let objects: Vec<DataObject> = selection.objects.iter().map(|o| o.object.clone()).collect();
        let mut predicate = and(
            col(COL_TIMESTAMP).gt_eq(ts_lit(q.start)),
            col(COL_TIMESTAMP).lt(ts_lit(q.end)),
        );
        let fps: Vec<Expr> = selection.fingerprints().into_iter().map(lit).collect();
        predicate = and(predicate, col(COL_STREAM).in_list(fps, false));
        // Whether the predicate reads `line` (line filters, deletes with line filters).
        let mut reads_line = false;
        if let Some(f) = line_filter {
            predicate = and(predicate, f);
            reads_line = true;
        }
        if let Some(d) = crate::deletes::deleted_predicate(selection) {
            predicate = and(predicate, d);
            reads_line = true;
        }
        let asc = q.direction == Direction::Forward;
        if let Some(found) = self
            .newest_rows(&ctx, selection, q, &predicate, reads_line, fetch, counters)
            .await?
        {
            return Ok(found);
        }
        counters.add_partitions(objects.len() as u64);
        let table = Arc::new(LogTable::new(objects));
        // Newest (oldest) first in two passes when the predicate is on time and stream only
        // (Grafana's default log query). The first pass reads just `timestamp` and `stream` to
        // find the time of the `fetch`-th entry; the second adds that bound, so statistics and
        // the page index skip every page older than it and `line` is decoded only for the
        // entries returned. Without the bound, DataFusion's top-k decodes `line` for every
        // selected row (objects are sorted by stream, so no row group is newer than another).
        // Same predicate in both passes, so the bound only removes rows that cannot be among
        // the first `fetch`: the same answer. With a line filter the first pass would read
        // every line too, so one pass is cheaper.
        let (bound, bound_scan) = if reads_line {
            (None, ScanMetrics::default())
        } else {
            self.fetch_bound(&ctx, table.clone(), predicate.clone(), asc, fetch)
                .await?
        };
        if let Some(bound) = bound {
            let cut = if asc {
                col(COL_TIMESTAMP).lt_eq(ts_lit(bound))
            } else {
                col(COL_TIMESTAMP).gt_eq(ts_lit(bound))
            };
            predicate = and(predicate, cut);
        }
        let (rows, mut metrics) = top_rows(&ctx, table, predicate, asc, fetch).await?;
        metrics.bytes_scanned += bound_scan.bytes_scanned;
        metrics.row_groups += bound_scan.row_groups;
        Ok((rows, metrics))
    }
}

impl QueryEngine {
    /// The timestamp of the `fetch`-th entry in query order under `predicate`, or `None` when
    /// fewer entries match (then every match is returned anyway). Reads no `line` unless the
    /// predicate filters on it.
    async fn fetch_bound(
        &self,
        ctx: &SessionContext,
        table: Arc<LogTable>,
        predicate: Expr,
        asc: bool,
        fetch: usize,
    ) -> Result<(Option<i64>, ScanMetrics)> {
        let Some(skip) = fetch.checked_sub(1) else {
            return Ok((None, ScanMetrics::default()));
        };
        let df = ctx
            .read_table(table)?
            .filter(predicate)?
            .select_columns(&[COL_TIMESTAMP])?
            .sort(vec![col(COL_TIMESTAMP).sort(asc, false)])?
            .limit(skip, Some(1))?;
        let plan = df.create_physical_plan().await?;
        let batches = collect(plan.clone(), ctx.task_ctx()).await?;
        let metrics = scan_metrics(plan.as_ref());
        for b in &batches {
            if b.num_rows() == 0 {
                continue;
            }
            let ts = b
                .column(0)
                .as_primitive_opt::<TimestampNanosecondType>()
                .ok_or_else(|| QueryError::Internal("unexpected timestamp column type".into()))?;
            return Ok((Some(ts.value(0)), metrics));
        }
        Ok((None, metrics))
    }
}

/// Entries grouped by stream labels, groups sorted by their label text; within a group the
/// direction order is kept.
pub(crate) fn group_entries(out: Vec<KeyedEntry>) -> Vec<(Labels, Vec<ResultEntry>)> {
    let mut grouped: BTreeMap<String, (Labels, Vec<ResultEntry>)> = BTreeMap::new();
    for (_, labels, entry) in out {
        grouped
            .entry(labels.to_string())
            .or_insert_with(|| (labels, Vec::new()))
            .1
            .push(entry);
    }
    grouped.into_values().collect()
}

/// Per-query DataFusion session with the store registered and Parquet pushdown on.
pub(crate) fn session(engine: &QueryEngine) -> Result<SessionContext> {
    Ok(SessionContext::new_with_config_rt(
        session_config(),
        engine.runtime(),
    ))
}

/// [`session`] whose reads are counted into `counters`, with `query_range.parallelism`
/// target partitions.
pub(crate) fn counted_session(
    engine: &QueryEngine,
    counters: &Arc<IoCounters>,
) -> Result<SessionContext> {
    let config = session_config().with_target_partitions(engine.parallelism());
    Ok(SessionContext::new_with_config_rt(
        config,
        engine.counted_runtime(counters),
    ))
}

fn session_config() -> SessionConfig {
    let mut config = SessionConfig::new();
    let opts = config.options_mut();
    opts.execution.parquet.pushdown_filters = true;
    opts.execution.parquet.reorder_filters = true;
    opts.execution.parquet.enable_page_index = true;
    opts.execution.parquet.bloom_filter_on_read = true;
    config
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
    /// Row groups the Parquet scans read (after pruning by statistics, bloom filters, limit).
    pub(crate) row_groups: u64,
}

/// Sums the scan's own counters over the executed plan.
pub(crate) fn scan_metrics(plan: &dyn ExecutionPlan) -> ScanMetrics {
    use datafusion::physical_plan::metrics::MetricValue;
    let mut m = ScanMetrics::default();
    if let Some(metrics) = plan.metrics() {
        if let Some(v) = metrics.sum_by_name("bytes_scanned") {
            m.bytes_scanned += v.as_usize() as u64;
        }
        // Statistics pruning sees every row group the access plan left; bloom filters and
        // the limit prune some of its matches further.
        let (mut matched, mut pruned_later) = (0usize, 0usize);
        for metric in metrics.iter() {
            if let MetricValue::PruningMetrics {
                name,
                pruning_metrics,
            } = metric.value()
            {
                match name.as_ref() {
                    "row_groups_pruned_statistics" => matched += pruning_metrics.matched(),
                    "row_groups_pruned_bloom_filter" | "limit_pruned_row_groups" => {
                        pruned_later += pruning_metrics.pruned()
                    }
                    _ => {}
                }
            }
        }
        m.row_groups += matched.saturating_sub(pruned_later) as u64;
    }
    for child in plan.children() {
        let c = scan_metrics(child.as_ref());
        m.bytes_scanned += c.bytes_scanned;
        m.row_groups += c.row_groups;
    }
    m
}

/// The first three columns of a `timestamp, stream, line, …` batch.
pub(crate) fn ts_stream_line(
    batch: &RecordBatch,
) -> Result<(&TimestampNanosecondArray, &UInt64Array, ArrayRef)> {
    let ts = batch
        .column(0)
        .as_primitive_opt::<TimestampNanosecondType>()
        .ok_or_else(|| QueryError::Internal("unexpected timestamp column type".into()))?;
    let stream = batch
        .column(1)
        .as_primitive_opt::<UInt64Type>()
        .ok_or_else(|| QueryError::Internal("unexpected stream column type".into()))?;
    // Lines may come back as views or dictionaries depending on the scan's settings.
    let line = cast(batch.column(2), &DataType::Utf8)?;
    Ok((ts, stream, line))
}

fn read_rows(batch: &RecordBatch, out: &mut Vec<Row>) -> Result<()> {
    let (ts, stream, line) = ts_stream_line(batch)?;
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

impl HasTs for KeyedEntry {
    fn ts(&self) -> i64 {
        self.2.ts
    }
}

/// Identical (stream, time, line) entries are one entry: a retried push may have stored twice.
/// Rows arrive sorted by time then stream then line, so duplicates are adjacent.
fn dedup(mut rows: Vec<Row>) -> Vec<Row> {
    rows.dedup_by(|b, a| a.ts == b.ts && a.stream == b.stream && a.line == b.line);
    rows
}

/// The per-entry pipeline (when the scan could not do it all) over fetched rows, with each
/// entry's labels attached. CPU-bound, so it runs on a blocking thread.
struct PipelineJob {
    pipeline: Option<Arc<Pipeline>>,
    labels_by_fp: Arc<HashMap<u64, Labels>>,
    budget: Arc<OutputBudget>,
    cancelled: Cancelled,
}

impl PipelineJob {
    fn run(&self, rows: Vec<Row>) -> Result<Vec<KeyedEntry>> {
        let mut out = Vec::with_capacity(rows.len());
        // Reset per row rather than made anew: the entry's label strings are reused.
        let mut entry = EntryLabels::default();
        for (i, r) in rows.into_iter().enumerate() {
            if i % 256 == 0 {
                self.cancelled.check()?;
            }
            let Some(stream) = self.labels_by_fp.get(&r.stream) else {
                continue;
            };
            let Some(p) = self.pipeline.as_deref() else {
                self.budget
                    .spend(r.line.len() + metadata_bytes(&r.metadata))?;
                let mut metadata = r.metadata;
                // Loki shows metadata named like a stream label as `<name>_extracted`,
                // with or without a pipeline.
                for (name, _) in metadata.iter_mut() {
                    if let std::borrow::Cow::Owned(n) = metadata_name(stream, name) {
                        *name = n;
                    }
                }
                out.push((
                    r.stream,
                    stream.clone(),
                    ResultEntry {
                        ts: r.ts,
                        line: r.line,
                        structured_metadata: metadata,
                        parsed: Vec::new(),
                    },
                ));
                continue;
            };
            entry.reset_keyed(r.stream, stream, &r.metadata);
            let Some(line) = p.process(r.ts, &r.line, &mut entry) else {
                continue;
            };
            let line = line.into_owned();
            let labels = entry.stream();
            let structured_metadata = pairs(entry.structured_metadata());
            let parsed = pairs(entry.parsed());
            // Labels are written once per stream in a response, but every distinct value
            // makes a stream: counting them per entry bounds both.
            self.budget.spend(
                line.len()
                    + labels
                        .iter()
                        .map(|l| l.name.len() + l.value.len())
                        .sum::<usize>()
                    + metadata_bytes(&structured_metadata)
                    + metadata_bytes(&parsed),
            )?;
            out.push((
                r.stream,
                labels,
                ResultEntry {
                    ts: r.ts,
                    line,
                    structured_metadata,
                    parsed,
                },
            ));
        }
        Ok(out)
    }
}

fn metadata_bytes(pairs: &[(String, String)]) -> usize {
    pairs.iter().map(|(k, v)| k.len() + v.len()).sum()
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
