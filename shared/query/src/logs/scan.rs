//! The newest-first scan of log queries: candidates from [`NewestPass`], then the first rows
//! among them.

use std::sync::Arc;

use datafusion::execution::object_store::ObjectStoreUrl;
use datafusion::logical_expr::{Expr, and, col};
use datafusion::physical_plan::collect;
use datafusion::prelude::SessionContext;
use parquetry_store::DataObject;
use parquetry_store::schema::{COL_LINE, COL_METADATA, COL_STREAM, COL_TIMESTAMP};

use super::{Direction, LogQuery, Row, ScanMetrics, read_rows, scan_metrics, ts_lit};
use crate::cost::IoCounters;
use crate::newest::NewestPass;
use crate::select::Selection;
use crate::table::{LogTable, STORE_URL};
use crate::{QueryEngine, Result};

impl QueryEngine {
    /// The first `fetch` rows read through [`NewestPass`] candidates: `None` when some
    /// object's layout rules that out (then the caller scans the ordinary way).
    ///
    /// Without a line filter the candidates for `fetch` rows hold the answer. A line filter
    /// (or a delete request) may reject candidates, so fewer than `fetch` can come back while
    /// older rows would have passed: then eight times as many candidates are taken once more,
    /// and if that is still short the caller scans the ordinary way.
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn newest_rows(
        &self,
        ctx: &SessionContext,
        selection: &Selection,
        q: &LogQuery,
        predicate: &Expr,
        reads_line: bool,
        fetch: usize,
        counters: &Arc<IoCounters>,
    ) -> Result<Option<(Vec<Row>, ScanMetrics)>> {
        let asc = q.direction == Direction::Forward;
        let objects: Vec<DataObject> = selection.objects.iter().map(|o| o.object.clone()).collect();
        let catalogs = self.store().catalogs(&objects).await?;
        let runtime = ctx.runtime_env();
        let pass = NewestPass {
            store: runtime.object_store(ObjectStoreUrl::parse(STORE_URL)?)?,
            cache: runtime.cache_manager.get_file_metadata_cache(),
            counters: counters.clone(),
            selection,
            catalogs: &catalogs,
            start: q.start,
            end: q.end,
            asc,
            parallelism: self.parallelism(),
        };
        // A filter rejects an unknown share of the candidates: start with some to spare.
        let mut k = if reads_line {
            fetch.saturating_mul(4)
        } else {
            fetch
        };
        let mut metrics = ScanMetrics::default();
        loop {
            let Some(c) = pass.candidates(k).await? else {
                return Ok(None);
            };
            metrics.bytes_scanned += c.bytes_scanned;
            let mut predicate = predicate.clone();
            if let Some(bound) = c.bound {
                let cut = if asc {
                    col(COL_TIMESTAMP).lt_eq(ts_lit(bound))
                } else {
                    col(COL_TIMESTAMP).gt_eq(ts_lit(bound))
                };
                predicate = and(predicate, cut);
            }
            let (objects, rows): (Vec<DataObject>, Vec<_>) = objects
                .iter()
                .zip(c.rows)
                .filter_map(|(o, r)| r.map(|r| (o.clone(), r)))
                .unzip();
            tracing::debug!(
                k,
                candidates = c.count,
                objects = objects.len(),
                "newest-first candidates"
            );
            if objects.is_empty() {
                return Ok(Some((Vec::new(), metrics)));
            }
            counters.add_partitions(objects.len() as u64);
            let table = Arc::new(LogTable::with_rows(objects, rows));
            let (found, m) = top_rows(ctx, table, predicate, asc, fetch).await?;
            metrics.bytes_scanned += m.bytes_scanned;
            metrics.row_groups += m.row_groups;
            if found.len() >= fetch || c.bound.is_none() {
                return Ok(Some((found, metrics)));
            }
            // Each round reads the candidates' pages again, and line pages are large (a
            // candidate costs its whole page): after one wider round, the ordinary scan
            // costs less than more rounds would.
            if k >= fetch.saturating_mul(32) {
                return Ok(None);
            }
            k = k.saturating_mul(8);
        }
    }
}

/// The first `fetch` rows of `table` under `predicate` in query order, with the scan's
/// figures.
pub(super) async fn top_rows(
    ctx: &SessionContext,
    table: Arc<LogTable>,
    predicate: Expr,
    asc: bool,
    fetch: usize,
) -> Result<(Vec<Row>, ScanMetrics)> {
    let df = ctx
        .read_table(table)?
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
