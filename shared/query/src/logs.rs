//! Log queries: the newest (or oldest) `limit` entries matching a selector and line filters.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::Instant;

use arrow::array::{Array, AsArray, MapArray, RecordBatch};
use arrow::compute::cast;
use arrow::datatypes::{DataType, TimestampNanosecondType, UInt64Type};
use datafusion::common::ScalarValue;
use datafusion::execution::object_store::ObjectStoreUrl;
use datafusion::logical_expr::expr::Like;
use datafusion::logical_expr::{Expr, Operator, and, binary_expr, col, lit, not, or};
use datafusion::physical_plan::{ExecutionPlan, collect};
use datafusion::prelude::{SessionConfig, SessionContext};
use parquetry_logql::{LineFilter, LineFilterOp, LineFilterValue, LogExpr, Stage};
use parquetry_model::Labels;
use parquetry_store::schema::{COL_LINE, COL_METADATA, COL_STREAM, COL_TIMESTAMP};

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
        let line_filter = line_filter_expr(&q.expr.pipeline)?;
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

        let mut rows = Vec::new();
        if !selection.objects.is_empty() && q.limit > 0 {
            // Duplicates (a retried push) and interval thinning can make the first `limit`
            // rows yield fewer entries; fetch more only in that rare case.
            let mut fetch = q.limit;
            loop {
                let (fetched, scan) = self
                    .scan_rows(&selection, q, line_filter.clone(), fetch)
                    .await?;
                let exhausted = fetched.len() < fetch;
                stats.bytes_scanned = scan.bytes_scanned;
                stats.objects_scanned = selection.objects.len() as u64;
                stats.post_filter_lines = fetched.len() as u64;
                rows = thin(dedup(fetched), q.interval_ns);
                if exhausted || rows.len() >= q.limit {
                    break;
                }
                fetch = fetch.saturating_mul(4);
            }
            rows.truncate(q.limit);
        }
        stats.entries_returned = rows.len() as u64;

        // Group by stream; within a stream the direction order is already right.
        let mut grouped: BTreeMap<String, (Labels, Vec<ResultEntry>)> = BTreeMap::new();
        for r in rows {
            let Some(labels) = labels_by_fp.get(&r.stream) else {
                continue;
            };
            grouped
                .entry(labels.to_string())
                .or_insert_with(|| (labels.clone(), Vec::new()))
                .1
                .push(ResultEntry {
                    ts: r.ts,
                    line: r.line,
                    structured_metadata: r.metadata,
                });
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
fn account_selection(sel: &Selection, start: i64, end: i64, stats: &mut QueryStats) {
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
struct ScanMetrics {
    bytes_scanned: u64,
}

/// Sums the scan's own counters over the executed plan.
fn scan_metrics(plan: &dyn ExecutionPlan) -> ScanMetrics {
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

/// Identical (stream, time, line) entries are one entry: a retried push may have stored twice.
/// Rows arrive sorted by time then stream then line, so duplicates are adjacent.
fn dedup(mut rows: Vec<Row>) -> Vec<Row> {
    rows.dedup_by(|b, a| a.ts == b.ts && a.stream == b.stream && a.line == b.line);
    rows
}

fn thin(rows: Vec<Row>, interval: Option<i64>) -> Vec<Row> {
    let Some(iv) = interval.filter(|i| *i > 0) else {
        return rows;
    };
    let mut last: Option<i64> = None;
    rows.into_iter()
        .filter(|r| {
            let keep = last.is_none_or(|l| (r.ts - l).abs() >= iv);
            if keep {
                last = Some(r.ts);
            }
            keep
        })
        .collect()
}

/// The line filters of a pipeline as one DataFusion predicate on `line`. Other stages are not
/// evaluated by this engine yet and are refused rather than ignored.
fn line_filter_expr(pipeline: &[Stage]) -> Result<Option<Expr>> {
    let mut acc: Option<Expr> = None;
    for stage in pipeline {
        let e = match stage {
            Stage::LineFilter(f) => one_line_filter(f)?,
            #[allow(unreachable_patterns)]
            other => {
                return Err(QueryError::Unsupported(format!(
                    "pipeline stage `{other}` is not supported yet; only line filters are"
                )));
            }
        };
        acc = Some(match acc {
            Some(a) => and(a, e),
            None => e,
        });
    }
    Ok(acc)
}

fn one_line_filter(f: &LineFilter) -> Result<Expr> {
    let mut alternatives = Vec::with_capacity(f.values.len());
    for v in &f.values {
        let LineFilterValue::Str(s) = v else {
            return Err(QueryError::Unsupported(
                "ip() line filters are not supported yet".into(),
            ));
        };
        alternatives.push(match f.op {
            LineFilterOp::Contains | LineFilterOp::NotContains => contains(s),
            LineFilterOp::Regex | LineFilterOp::NotRegex => {
                binary_expr(col(COL_LINE), Operator::RegexMatch, lit(s.clone()))
            }
            LineFilterOp::Pattern | LineFilterOp::NotPattern => binary_expr(
                col(COL_LINE),
                Operator::RegexMatch,
                lit(pattern_to_regex(s)),
            ),
        });
    }
    let any = alternatives
        .into_iter()
        .reduce(or)
        .ok_or_else(|| QueryError::BadRequest("empty line filter".into()))?;
    Ok(match f.op {
        LineFilterOp::Contains | LineFilterOp::Regex | LineFilterOp::Pattern => any,
        // `!= "a" or "b"` keeps lines containing neither.
        _ => not(any),
    })
}

/// Substring match as SQL LIKE, which DataFusion evaluates with a fast memchr-based kernel.
fn contains(s: &str) -> Expr {
    if s.is_empty() {
        return lit(true);
    }
    let mut pat = String::with_capacity(s.len() + 2);
    pat.push('%');
    for c in s.chars() {
        if matches!(c, '%' | '_' | '\\') {
            pat.push('\\');
        }
        pat.push(c);
    }
    pat.push('%');
    Expr::Like(Like::new(
        false,
        Box::new(col(COL_LINE)),
        Box::new(lit(pat)),
        Some('\\'),
        false,
    ))
}

/// A pattern filter (`|> "<_> error <_>"`) as an anchored regex: literals must match in
/// order, each `<…>` capture matches anything.
fn pattern_to_regex(p: &str) -> String {
    let mut out = String::from("^(?s)");
    let mut rest = p;
    while let Some(open) = rest.find('<') {
        let close = rest[open..].find('>').map(|c| open + c);
        let is_capture = close.is_some_and(|c| {
            let name = &rest[open + 1..c];
            !name.is_empty()
                && name
                    .chars()
                    .all(|ch| ch == '_' || ch.is_ascii_alphanumeric())
        });
        match (close, is_capture) {
            (Some(c), true) => {
                out.push_str(&regex::escape(&rest[..open]));
                out.push_str(".*");
                rest = &rest[c + 1..];
            }
            _ => {
                out.push_str(&regex::escape(&rest[..=open]));
                rest = &rest[open + 1..];
            }
        }
    }
    out.push_str(&regex::escape(rest));
    out.push('$');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns() {
        let re = regex::Regex::new(&pattern_to_regex("<_> error <code>")).unwrap();
        assert!(re.is_match("ts=1 error 500"));
        assert!(!re.is_match("ts=1 warn 500"));
        let re = regex::Regex::new(&pattern_to_regex("a <b")).unwrap();
        assert!(re.is_match("a <b"));
    }

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
