//! Metric queries: each range aggregation's samples read in one columnar scan, then the
//! metric tree evaluated by `parquetry-eval`.
//!
//! The scan reads only the columns the query needs (`line` only when the pipeline or a
//! `bytes_*` function looks at it), pushes the time window, the stream set and the leading
//! line filters into Parquet, and runs once per DataFusion partition in parallel. Each
//! partition folds its rows into sample series; a row becomes a `(ts, value)` pair in the
//! series of its post-pipeline label set.
//!
//! `sum by (…)` over `count_over_time`, `rate`, `bytes_*` or `sum_over_time` is folded into
//! the scan: summing per-series counts equals counting per group, so rows go straight into
//! one series per group instead of one per stream (and per structured-metadata value), which
//! keeps memory flat when entries carry high-cardinality metadata such as trace ids.
//!
//! Functions that only add up their window (`count_over_time`, `rate` without unwrap,
//! `bytes_*`, `absent_over_time`) also fold time: a series' consecutive rows in one step cell
//! ([`StepCells`]) become one sample carrying their count or byte total. A series then holds
//! at most two samples per step instead of one per line, so a count over a day at `step=60`
//! keeps thousands of samples, not millions, and fan-out leaves ship cells, not lines.

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use arrow::array::{Array, ArrayRef, AsArray, RecordBatch, StringArray, StringViewArray};
use arrow::compute::cast;
use arrow::datatypes::{DataType, TimestampNanosecondType, UInt64Type};
use datafusion::execution::memory_pool::MemoryConsumer;
use datafusion::logical_expr::{Expr, and, col, lit};
use datafusion::physical_plan::execute_stream_partitioned;
use futures::StreamExt;
use parquetry_eval::{
    Collapsed, CollapsedSamples, CollapsedSeries, Direct, EvalParams, IDENTITY_LABEL, RangeInput,
    SampleSeries, SinglePoints, StepCells, Value,
};
use parquetry_logql::{
    RangeAggregation, RangeOp, SampleExpr, Stage as LogStage, VectorAggregation, VectorOp,
};
use parquetry_model::Labels;
use parquetry_pipeline::{
    ERROR_DETAILS_LABEL, ERROR_LABEL, EntryLabels, PRESERVE_ERROR_LABEL, ParserHints, Pipeline,
    SampleGrouping, Unwrapper, sample_stages,
};
use parquetry_store::schema::{COL_LINE, COL_METADATA, COL_STREAM, COL_TIMESTAMP};
use tracing::Instrument;

use crate::cost::IoCounters;
use crate::dedup::{Overlaps, Seen, overlapping_streams, overlaps_by_stream};
use crate::limits::OutputBudget;
use crate::logs::{account_selection, counted_session, scan_metrics, ts_lit};
use crate::pushdown::{Pushdown, compile_pipeline};
use crate::select::Selection;
use crate::stats::QueryStats;
use crate::table::LogTable;
use crate::trace::{self, Stage, StageTimings};
use crate::{QueryEngine, QueryError, Result};

/// A metric query, parameters already validated.
#[derive(Debug, Clone)]
pub struct MetricQuery {
    /// The tenant.
    pub tenant: String,
    /// The metric expression.
    pub expr: SampleExpr,
    /// First evaluation time, ns.
    pub start: i64,
    /// Last evaluation time (inclusive), ns.
    pub end: i64,
    /// Step, ns (> 0). Ignored for instant queries.
    pub step: i64,
    /// An instant query (`query`) rather than a range query.
    pub instant: bool,
    /// `max_query_series`; 0 = unlimited.
    pub max_series: usize,
    /// `limits_config.max_query_response_size` in bytes, spent on series labels; 0 = unlimited.
    pub max_response_bytes: u64,
}

impl MetricQuery {
    /// The stream selectors of its range aggregations.
    pub(crate) fn selectors(&self) -> Vec<Vec<parquetry_model::Matcher>> {
        self.expr
            .range_aggregations()
            .iter()
            .map(|ra| ra.range.log.selector.clone())
            .collect()
    }

    /// The time range `ra`'s scan reads, `[start, end)`: the union of its windows
    /// `(t - range - offset, t - offset]` over the evaluation times (an offset may be
    /// negative).
    pub(crate) fn window_range(&self, ra: &RangeAggregation) -> (i64, i64) {
        let lo = self
            .start
            .saturating_sub(ra.range.range)
            .saturating_sub(ra.range.offset);
        let hi = self.end.saturating_sub(ra.range.offset);
        (lo.saturating_add(1), hi.saturating_add(1))
    }

    /// The time range all its scans read: the union of [`MetricQuery::window_range`].
    pub(crate) fn scan_range(&self) -> (i64, i64) {
        let windows: Vec<(i64, i64)> = self
            .expr
            .range_aggregations()
            .into_iter()
            .map(|ra| self.window_range(ra))
            .collect();
        let start = windows.iter().map(|w| w.0).min();
        let end = windows.iter().map(|w| w.1).max();
        (
            start.unwrap_or(self.start.saturating_add(1)),
            end.unwrap_or(self.end.saturating_add(1)),
        )
    }
}

/// A metric query's answer.
#[derive(Debug, Clone)]
pub struct MetricResult {
    /// The vector, matrix or scalar.
    pub value: Value,
    /// What the query read.
    pub stats: QueryStats,
}

impl QueryEngine {
    /// Runs a metric query; a page that does not decode is handled as in
    /// [`QueryEngine::log_query`].
    pub async fn metric_query(&self, q: &MetricQuery) -> Result<MetricResult> {
        let (start, end) = q.scan_range();
        self.checking_damage(&q.tenant, &q.selectors(), start, end, || {
            self.metric_query_once(q)
        })
        .await
    }

    async fn metric_query_once(&self, q: &MetricQuery) -> Result<MetricResult> {
        let started = Instant::now();
        let mut stats = QueryStats::default();
        if !q.instant {
            parquetry_eval::check_points(q.start, q.end, q.step)
                .map_err(|e| QueryError::BadRequest(e.to_string()))?;
        }
        let blocks = self.time_blocks(q).await?;
        let value = if let [_] = blocks.spans.as_slice() {
            self.evaluated(q, None, &mut stats).await?
        } else {
            stats.cost.time_blocks = blocks.spans.len() as u64;
            for w in &blocks.whole.warnings {
                stats.warn(w.clone());
            }
            let mut joined = crate::blocks::Joined::default();
            for &(start, end) in &blocks.spans {
                let block = MetricQuery {
                    start,
                    end,
                    ..q.clone()
                };
                let value = self
                    .evaluated(&block, Some(&blocks.selections), &mut stats)
                    .await?;
                joined.append(value, q.max_series)?;
            }
            // What the range holds is counted once; what was read (objects, bytes, GETs,
            // lines through the pipeline) is the blocks' sum, lookbacks read twice included.
            stats.streams = blocks.whole.streams;
            stats.lines_processed = blocks.whole.lines_processed;
            stats.bytes_processed = blocks.whole.bytes_processed;
            joined.finish()
        };
        stats.exec_time_s = started.elapsed().as_secs_f64();
        stats.cost.price(self.prices(), stats.exec_time_s);
        Ok(MetricResult { value, stats })
    }

    /// `q` scanned (by leaves when it fans out) and evaluated in one piece; `selected`, what
    /// each range aggregation selects over a range holding `q`'s (see `Blocks::selections`).
    async fn evaluated(
        &self,
        q: &MetricQuery,
        selected: Option<&[Selection]>,
        stats: &mut QueryStats,
    ) -> Result<Value> {
        let inputs = match crate::fanout::plan_metric(self, q, selected).await? {
            Some(plan) => crate::fanout::run_metric(self, q, plan, stats).await?,
            None => self.metric_inputs(q, selected, stats).await?,
        };
        let params = eval_params(q);
        let expr = q.expr.clone();
        trace::blocking(Stage::Eval, move || {
            parquetry_eval::evaluate(&expr, &params, inputs)
        })
        .await
        .map_err(|e| QueryError::Internal(format!("evaluation task failed: {e}")))?
        .map_err(|e| QueryError::BadRequest(e.to_string()))
    }

    /// Each range aggregation's window ([`MetricQuery::window_range`]) and what it selects
    /// there, in [`SampleExpr::range_aggregations`] order: what planning looks at before the
    /// scans (fan-out leaves, time blocks).
    pub(crate) async fn select_windows(
        &self,
        q: &MetricQuery,
        stats: &mut QueryStats,
    ) -> Result<Vec<((i64, i64), Selection)>> {
        self.select_windows_in(q, None, stats).await
    }

    /// [`QueryEngine::select_windows`], each window's part of `selected[i]` when given.
    pub(crate) async fn select_windows_in(
        &self,
        q: &MetricQuery,
        selected: Option<&[Selection]>,
        stats: &mut QueryStats,
    ) -> Result<Vec<((i64, i64), Selection)>> {
        let mut out = Vec::new();
        for (i, ra) in q.expr.range_aggregations().into_iter().enumerate() {
            let (start, end) = q.window_range(ra);
            let selection = match selected.and_then(|s| s.get(i)) {
                Some(s) => s.within(start, end),
                None => {
                    let selector = std::slice::from_ref(&ra.range.log.selector);
                    let select = self.select(&q.tenant, selector, start, end, stats);
                    trace::stage(Stage::Plan, select).await?
                }
            };
            out.push(((start, end), selection));
        }
        Ok(out)
    }

    /// The sample series of every range aggregation of `q`, in
    /// [`SampleExpr::range_aggregations`] order: what [`parquetry_eval::evaluate`] takes.
    pub(crate) async fn metric_inputs(
        &self,
        q: &MetricQuery,
        selected: Option<&[Selection]>,
        stats: &mut QueryStats,
    ) -> Result<Vec<RangeInput>> {
        let windows = self.select_windows_in(q, selected, stats).await?;
        let ranges = q.expr.range_aggregations();
        let hints = pregroup_hints(&q.expr);
        let collapse = collapse_hints(&q.expr);
        // A leaf's series travel to its root, which cannot take folded ones.
        let direct = match self.only_streams {
            None => direct_hints(&q.expr),
            Some(_) => vec![None; ranges.len()],
        };
        let groupings = SampleGrouping::of(&q.expr);
        let mut inputs = Vec::with_capacity(ranges.len());
        for (((((ra, hint), collapse), direct), grouping), window) in ranges
            .iter()
            .zip(&hints)
            .zip(&collapse)
            .zip(direct)
            .zip(&groupings)
            .zip(windows)
        {
            let shape = SeriesShape {
                group_by: hint.as_deref(),
                collapse: collapse.as_deref(),
                direct,
            };
            inputs.push(
                self.range_samples(q, ra, window, shape, grouping, stats)
                    .await?,
            );
        }
        Ok(inputs)
    }

    /// The raw sample series of one range aggregation over every window the query evaluates.
    async fn range_samples(
        &self,
        q: &MetricQuery,
        ra: &RangeAggregation,
        ((start, end), selection): ((i64, i64), Selection),
        shape: SeriesShape<'_>,
        grouping: &SampleGrouping,
        stats: &mut QueryStats,
    ) -> Result<RangeInput> {
        let log = &ra.range.log;
        account_selection(&selection, start, end, stats);
        if selection.objects.is_empty() {
            return Ok(RangeInput::default());
        }

        // Loki plans the stages of a metric query leaner than a log query's, and that shows
        // in answers (see `parquetry_pipeline::ParserHints`).
        let stages = sample_stages(&log.pipeline, ra.op);
        let push = Pushdown::of(&stages);
        let bad = |e: parquetry_pipeline::PipelineError| QueryError::BadRequest(e.to_string());
        let pipeline = if push.exact {
            None
        } else {
            let hints = ParserHints::for_range(&stages, ra.range.unwrap.as_ref(), grouping);
            Some(compile_pipeline(&stages)?.with_hints(hints))
        };
        let unwrapper = ra
            .range
            .unwrap
            .as_ref()
            .map(Unwrapper::new)
            .transpose()
            .map_err(bad)?;
        let keep_unwrapped = match (&ra.grouping, &unwrapper) {
            (Some(g), Some(u)) => !g.without && g.labels.iter().any(|l| l == u.label()),
            _ => false,
        };
        let value = match ra.op {
            RangeOp::BytesOverTime | RangeOp::BytesRate => SampleValue::LineBytes,
            _ if unwrapper.is_some() => SampleValue::Unwrapped,
            _ => SampleValue::One,
        };
        let cells = if self.fold_cells && StepCells::fold(ra.op, unwrapper.is_some()) {
            let cells = StepCells::new(&eval_params(q), ra.range.range, ra.range.offset)
                .map_err(|e| QueryError::BadRequest(e.to_string()))?;
            Some(cells)
        } else {
            None
        };
        // `direct_hints` only names collapsed, not pre-grouped, series.
        let direct = match shape.direct {
            Some(op) => DirectPlan::new(op, ra, &eval_params(q), &stages, &selection)?,
            None => None,
        };
        let seen = Seen::new(overlapping_streams(&selection));
        let need_line = pipeline.is_some() || value == SampleValue::LineBytes || !seen.is_empty();

        let streams: HashMap<u64, Labels> = selection
            .streams()
            .into_iter()
            .map(|s| (s.fingerprint, s.labels()))
            .collect();
        let mut fold = Fold {
            streams,
            pipeline,
            unwrapper,
            keep_unwrapped,
            value,
            group_by: shape.group_by.map(|g| g.to_vec()),
            collapse: match shape.group_by {
                None => shape.collapse.map(|g| g.to_vec()),
                Some(_) => None,
            },
            seen,
            budget: OutputBudget::new(q.max_response_bytes),
            cells,
            direct,
        };

        let counters = Arc::new(IoCounters::default());
        let ctx = counted_session(self, &counters)?;
        let objects = selection.objects.iter().map(|o| o.object.clone()).collect();
        let fps: Vec<Expr> = selection.fingerprints().into_iter().map(lit).collect();
        let mut predicate = and(
            and(
                col(COL_TIMESTAMP).gt_eq(ts_lit(start)),
                col(COL_TIMESTAMP).lt(ts_lit(end)),
            ),
            col(COL_STREAM).in_list(fps, false),
        );
        if let Some(f) = push.predicate {
            predicate = and(predicate, f);
        }
        if let Some(d) = crate::deletes::deleted_predicate(&selection) {
            predicate = and(predicate, d);
        }
        let mut columns = vec![COL_TIMESTAMP, COL_STREAM, COL_METADATA];
        if need_line {
            columns.push(COL_LINE);
        }
        let df = ctx
            .read_table(Arc::new(
                LogTable::new(objects)
                    .with_partitions(self.parallelism())
                    .with_line_views(),
            ))?
            .filter(predicate)?
            .select_columns(&columns)?;
        // The scan stage covers planning and every partition's read and fold; the pipeline
        // runs inside the fold, so its time (summed over partitions) is also counted apart.
        let scan_started = Instant::now();
        let scan_span = Stage::Scan.span();
        let timings = StageTimings::current();
        let plan = df
            .create_physical_plan()
            .instrument(scan_span.clone())
            .await?;
        if !in_storage_order(plan.as_ref()) {
            // Folding rows needs each partition's rows in the objects' order.
            fold.direct = None;
        }
        let fold = Arc::new(fold);
        let parts = execute_stream_partitioned(plan.clone(), ctx.task_ctx())?;
        counters.add_partitions(parts.len() as u64);
        let pool = self.runtime().memory_pool.clone();
        // A JoinSet aborts its tasks when dropped: a query that timed out stops scanning.
        let mut tasks = tokio::task::JoinSet::new();
        for (i, mut part) in parts.into_iter().enumerate() {
            let fold = fold.clone();
            let timings = timings.clone();
            // The samples a partition gathers are the part of a metric query that grows with
            // the data (one per matching line until evaluation), so they are held in the
            // process's memory pool with DataFusion's own buffers: a query that would pass
            // `query_range.max_memory` fails instead of growing the process.
            let reservation = MemoryConsumer::new(format!("metric samples[{i}]")).register(&pool);
            tasks.spawn(
                async move {
                    let mut acc = Acc::default();
                    let mut rows = 0u64;
                    while let Some(batch) = part.next().await {
                        let batch = batch?;
                        rows += batch.num_rows() as u64;
                        let folding = Instant::now();
                        fold.batch(&batch, &mut acc)?;
                        reservation.try_resize(acc.bytes)?;
                        if let Some(t) = &timings {
                            t.add(Stage::Pipeline, folding.elapsed());
                        }
                    }
                    fold.finish(&mut acc);
                    reservation.try_resize(acc.bytes)?;
                    Ok::<_, QueryError>((i, acc, rows, reservation))
                }
                .instrument(scan_span.clone()),
            );
        }
        let mut done = Vec::with_capacity(tasks.len());
        while let Some(t) = tasks.join_next().await {
            let done_part =
                t.map_err(|e| QueryError::Internal(format!("scan task failed: {e}")))??;
            done.push(done_part);
        }
        trace::record(Stage::Scan, scan_started.elapsed());
        // Partition order, so results never depend on which task finished first.
        done.sort_by_key(|(i, _, _, _)| *i);
        let mut total = Acc::default();
        // Room for every partition's collapsed series at once (one per line in a parser
        // query with a unique id per line): growing step by step would copy them again and
        // again and, for a moment, hold twice their memory.
        total
            .collapsed
            .series
            .reserve_exact(done.iter().map(|d| d.1.collapsed.series.len()).sum());
        for (_, acc, _, _) in &mut done {
            // Lookups are over: the maps go before the merge needs its memory.
            acc.by_identity = FastMap::default();
            acc.index = FastMap::default();
        }
        // The partitions' reservations are released only once their samples are merged.
        let mut held = Vec::with_capacity(done.len());
        for (_, acc, rows, reservation) in done {
            held.push(reservation);
            stats.post_filter_lines += rows;
            stats.cost.folded_lines += acc.folded;
            total.merge(acc);
        }
        drop(held);
        let scanned = scan_metrics(plan.as_ref());
        stats.bytes_scanned += scanned.bytes_scanned;
        counters.add_row_groups(scanned.row_groups);
        stats.cost.add(&counters.snapshot());
        stats.objects_scanned += selection.objects.len() as u64;
        Ok(RangeInput {
            series: total.series,
            collapsed: total.collapsed,
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SampleValue {
    One,
    LineBytes,
    Unwrapped,
}

/// What turns rows into samples; shared by the partition tasks.
struct Fold {
    streams: HashMap<u64, Labels>,
    pipeline: Option<Pipeline>,
    unwrapper: Option<Unwrapper>,
    keep_unwrapped: bool,
    value: SampleValue,
    group_by: Option<Vec<String>>,
    /// The `by` labels of the aggregation right above, when its answer keeps only those: each
    /// series is kept as those labels plus an identity ([`collapsed`]).
    collapse: Option<Vec<String>>,
    /// Entries of streams that may be stored twice (see `dedup`).
    seen: Arc<Seen>,
    /// Label bytes of every series made: a pipeline can make one per row.
    budget: Arc<OutputBudget>,
    /// Set when the range function only sums its window: rows fold into step cells.
    cells: Option<StepCells>,
    /// Set when collapsed series of one line may fold into the aggregation above.
    direct: Option<DirectPlan>,
}

/// Maps looked up once per row: foldhash (randomly seeded per process), not SipHash.
type FastMap<K, V> = HashMap<K, V, foldhash::quality::RandomState>;

/// Sample series under construction, indexed by label set, with a per-stream shortcut for
/// rows whose labels are their stream's alone, and collapsed series by identity.
#[derive(Default)]
struct Acc {
    index: FastMap<Labels, usize>,
    by_stream: FastMap<u64, usize>,
    /// Pre-grouped series by stream and a hash of the grouped labels not the stream's.
    by_group: FastMap<(u64, u64), usize>,
    series: Vec<SampleSeries>,
    /// Collapsed series (see [`parquetry_eval::Collapsed`]): a group index and an identity
    /// each, no label set of their own.
    collapsed: Collapsed,
    /// Indexes of `collapsed.series` by identity, while it pays (see [`Acc::probe`]).
    by_identity: FastMap<u128, usize>,
    /// Lookups of `by_identity` and how many found a series, over its first
    /// [`IDENTITY_PROBE`] lookups.
    identity_probe: (u32, u32),
    /// The probe found that rows almost never share a series: each row's sample goes into a
    /// series of its own, and evaluation merges equal identities as it sorts them (as it
    /// does for partitions' series).
    unmapped: bool,
    /// Indexes of `collapsed.groups` by a hash of the group's labels.
    group_index: FastMap<u64, u32>,
    /// The group of a collapsed series whose kept labels are all its stream's, by stream.
    stream_groups: FastMap<u64, u32>,
    /// Where [`identity`] spells each pair it hashes.
    scratch: Vec<u8>,
    /// The rows of the stream run being read, held back until it is known whether another
    /// row of their series comes within a range (see [`DirectPlan`]).
    /// Boxed: it is taken out and put back for every held row.
    run: Option<Box<Run>>,
    /// Where a folded row's points are computed.
    points: Vec<(u32, f64)>,
    /// Rows folded into [`Collapsed::direct`].
    folded: u64,
    /// About what the series hold on the heap (sample capacity and labels), for the pool.
    bytes: usize,
}

/// Collapsed-series lookups an [`Acc`] makes before it decides whether its identity map pays.
pub(crate) const IDENTITY_PROBE: u32 = 1 << 16;

/// Where a row's sample goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Slot {
    Series(usize),
    Collapsed(usize),
}

impl Acc {
    fn slot(&mut self, labels: Labels) -> Slot {
        if let Some(&i) = self.index.get(&labels) {
            return Slot::Series(i);
        }
        let i = self.series.len();
        // The label set twice (index key and series) plus the map and vector slots.
        self.bytes += 2 * label_bytes(&labels) + 128;
        self.index.insert(labels.clone(), i);
        self.series.push(SampleSeries {
            labels,
            samples: Vec::new(),
        });
        Slot::Series(i)
    }

    /// Appends a sample to series `slot`, counting what its vector grows by; with `cells`,
    /// adds it to the series' last sample instead when both lie in one cell.
    fn push(&mut self, slot: Slot, t: i64, v: f64, cells: Option<&StepCells>) {
        self.bytes += match slot {
            Slot::Series(i) => push_sample(&mut self.series[i].samples, t, v, cells),
            Slot::Collapsed(i) => push_sample(&mut self.collapsed.series[i].samples, t, v, cells),
        };
    }

    /// The slot of the collapsed series `id`; a new one goes into the group labelled by the
    /// pairs `group` lists (in name order).
    fn identity_slot<'a, I>(&mut self, id: u128, group: impl FnOnce() -> I) -> Slot
    where
        I: Iterator<Item = (&'a str, &'a str)> + Clone,
    {
        self.identity_slot_in(id, |acc| acc.group(group()))
    }

    /// [`Acc::identity_slot`] with the group of a new series chosen by `group`.
    fn identity_slot_in(&mut self, id: u128, group: impl FnOnce(&mut Self) -> u32) -> Slot {
        if !self.unmapped {
            let found = self.by_identity.get(&id).copied();
            self.probe(found.is_some());
            if let Some(i) = found {
                return Slot::Collapsed(i);
            }
        }
        let group = group(self);
        let i = self.collapsed.series.len();
        self.bytes += size_of::<CollapsedSeries>();
        if !self.unmapped {
            // The map slot.
            self.bytes += 32;
            self.by_identity.insert(id, i);
        }
        self.collapsed
            .series
            .push(CollapsedSeries::new(id, group, CollapsedSamples::new()));
        Slot::Collapsed(i)
    }

    /// Counts one lookup of `by_identity` while the probe lasts. When fewer than one in 16
    /// found a series (a unique id per line), the map is dropped: looking up and inserting
    /// an identity per row in a table of one entry per row cost more than the rare merge it
    /// saves, and the table itself a third of a series' memory.
    fn probe(&mut self, hit: bool) {
        let (lookups, hits) = &mut self.identity_probe;
        if *lookups >= IDENTITY_PROBE {
            return;
        }
        *lookups += 1;
        *hits += u32::from(hit);
        if *lookups == IDENTITY_PROBE && *hits < IDENTITY_PROBE / 16 {
            self.unmapped = true;
            self.by_identity = FastMap::default();
        }
    }

    /// The index of the group labelled by `pairs` (in name order), added if new.
    fn group<'a>(&mut self, pairs: impl Iterator<Item = (&'a str, &'a str)> + Clone) -> u32 {
        let groups = &mut self.collapsed.groups;
        let h = parquetry_model::hash_pairs(pairs.clone(), 0);
        let same = |g: &Labels| {
            let mut p = pairs.clone();
            g.iter().all(|l| p.next() == Some(pair(l))) && p.next().is_none()
        };
        if let Some(&g) = self.group_index.get(&h)
            && groups.get(g as usize).is_some_and(same)
        {
            return g;
        }
        // Two groups whose hashes collide: found by looking, which is as rare as that.
        if let Some(g) = groups.iter().position(same) {
            return g as u32;
        }
        let g = groups.len() as u32;
        let labels = Labels::from_pairs(pairs);
        self.bytes += label_bytes(&labels) + 64;
        groups.push(labels);
        self.group_index.entry(h).or_insert(g);
        g
    }

    /// The group of stream `fp`'s series when they keep stream labels alone (`pairs`, the
    /// stream's): looked up once per stream, not hashed and compared per series.
    fn stream_group<'a, I>(&mut self, fp: u64, pairs: impl FnOnce() -> I) -> u32
    where
        I: Iterator<Item = (&'a str, &'a str)> + Clone,
    {
        if let Some(&g) = self.stream_groups.get(&fp) {
            return g;
        }
        let g = self.group(pairs());
        self.stream_groups.insert(fp, g);
        g
    }

    /// The slot for a row labelled `labels`, collapsed onto `by` when set.
    fn row_slot(&mut self, labels: Labels, collapse: Option<&[String]>) -> Slot {
        match collapse {
            Some(by) if !fails_query(|name| labels.get(name)) => {
                let id = identity(labels.iter().map(pair), &mut self.scratch);
                self.identity_slot(id, || kept(labels.iter().map(pair), by))
            }
            _ => self.slot(labels),
        }
    }

    fn stream_slot(&mut self, fp: u64, labels: impl FnOnce() -> Labels) -> Slot {
        if let Some(&i) = self.by_stream.get(&fp) {
            return Slot::Series(i);
        }
        let slot = self.slot(labels());
        if let Slot::Series(i) = slot {
            self.by_stream.insert(fp, i);
        }
        slot
    }

    /// The pre-grouped series of stream `fp` whose grouped labels that are not the stream's
    /// hash to `h` (64 bits, as stream fingerprints are): rows of one group find it without
    /// building `labels`, which only a new key needs.
    fn group_slot(&mut self, fp: u64, h: u64, labels: impl FnOnce() -> Labels) -> Slot {
        if let Some(&i) = self.by_group.get(&(fp, h)) {
            return Slot::Series(i);
        }
        let slot = self.slot(labels());
        if let Slot::Series(i) = slot {
            // The map slot.
            self.bytes += 32;
            self.by_group.insert((fp, h), i);
        }
        slot
    }

    /// Whether rows may still be folded: not once the probe found that series repeat (then
    /// every row is kept, and holding rows back would only cost).
    fn may_fold(&self) -> bool {
        self.unmapped || self.identity_probe.0 < IDENTITY_PROBE
    }

    /// Takes a row of a collapsed series under a [`DirectPlan`]: held back in its stream's
    /// run until the rows within a range of it are known, then settled ([`Acc::settle`]).
    fn hold(&mut self, plan: &DirectPlan, fp: u64, row: Pending, cells: Option<&StepCells>) {
        // Rows of one stream in one object come in time order; a step back is another
        // object's run of the stream.
        if self
            .run
            .as_ref()
            .is_none_or(|r| r.fp != fp || row.t < r.last)
        {
            self.end_run(plan, cells);
            self.run = Some(Box::new(Run::new(fp, row.t, plan.zones(fp))));
        }
        let Some(mut run) = self.run.take() else {
            return;
        };
        run.last = row.t;
        // Rows a range or more older than this one meet no later row of their series here.
        while let Some(q) = run.queue.front().copied()
            && row.t.saturating_sub(q.t) >= plan.range
        {
            run.queue.pop_front();
            self.bytes = self.bytes.saturating_sub(PENDING_BYTES);
            let alone = run.release(q.id);
            let fold = q.foldable && alone && run.inside(q.t, plan.range, false);
            self.settle(plan, q, fold, cells);
        }
        // A dense stream holds many rows within a range: they count against the pool as the
        // series they would otherwise be did.
        self.bytes += PENDING_BYTES;
        run.admit(row);
        self.run = Some(run);
    }

    /// Settles every row of the run being read: its end is known.
    fn end_run(&mut self, plan: &DirectPlan, cells: Option<&StepCells>) {
        let Some(mut run) = self.run.take() else {
            return;
        };
        while let Some(q) = run.queue.pop_front() {
            self.bytes = self.bytes.saturating_sub(PENDING_BYTES);
            let alone = run.release(q.id);
            let fold = q.foldable && alone && run.inside(q.t, plan.range, true);
            self.settle(plan, q, fold, cells);
        }
    }

    /// A held row: folded into its group's cells when `fold` and the probe found that series
    /// almost never repeat, else kept as a collapsed series like any other.
    fn settle(&mut self, plan: &DirectPlan, q: Pending, fold: bool, cells: Option<&StepCells>) {
        if fold && self.unmapped {
            let direct = self
                .collapsed
                .direct
                .get_or_insert_with(|| plan.empty.clone());
            self.folded += 1;
            self.bytes += match plan.points.span(q.t, q.v) {
                Some((steps, v)) => direct.add_span(q.group, steps, v),
                None => {
                    plan.points.points(q.t, q.v, &mut self.points);
                    direct.add(q.group, &self.points)
                }
            };
            return;
        }
        let slot = self.identity_slot_in(q.id, |_| q.group);
        self.push(slot, q.t, q.v, cells);
    }

    /// Appends `other`'s samples: a series' samples stay in scan order, unsorted, since
    /// evaluation sorts each series once after grouping anyway ([`SampleSeries::samples`]).
    /// Collapsed series are appended without looking their identity up: evaluation merges
    /// equal ones as it sorts them, keeping this order.
    fn merge(&mut self, other: Acc) {
        for SampleSeries { labels, samples } in other.series {
            let Slot::Series(i) = self.slot(labels) else {
                continue;
            };
            let mine = &mut self.series[i].samples;
            // A series' first part is moved, not copied: that saves a copy (and the page
            // faults of fresh memory) of every sample a partition holds alone.
            if mine.is_empty() {
                *mine = samples;
            } else {
                mine.extend(samples);
            }
        }
        // The merged groups are not looked up by hash again: merging is the last step.
        self.collapsed.append(other.collapsed);
    }
}

impl Fold {
    /// What a partition does after its last batch: the rows it still holds are settled.
    fn finish(&self, acc: &mut Acc) {
        if let Some(plan) = &self.direct {
            acc.end_run(plan, self.cells.as_ref());
        }
    }

    fn batch(&self, batch: &RecordBatch, acc: &mut Acc) -> Result<()> {
        let schema = batch.schema();
        let column = |name: &str| {
            schema
                .index_of(name)
                .map(|i| batch.column(i).clone())
                .map_err(QueryError::Arrow)
        };
        let ts = column(COL_TIMESTAMP)?;
        let ts = ts
            .as_primitive_opt::<TimestampNanosecondType>()
            .ok_or_else(|| QueryError::Internal("unexpected timestamp column type".into()))?;
        let fp = column(COL_STREAM)?;
        let fp = fp
            .as_primitive_opt::<UInt64Type>()
            .ok_or_else(|| QueryError::Internal("unexpected stream column type".into()))?;
        let meta = Metadata::new(&column(COL_METADATA)?)?;
        let line = match schema.index_of(COL_LINE) {
            Ok(i) => Some(Lines::of(batch.column(i))?),
            Err(_) => None,
        };

        // No pipeline and no unwrap: a row's labels are its stream's plus its metadata.
        let simple = self.pipeline.is_none() && self.unwrapper.is_none();
        // One entry for the batch, reset per row: its label strings are reused, not
        // allocated again for every line.
        let mut entry = EntryLabels::default();
        let mut sm: Vec<(&str, &str)> = Vec::new();
        // The identity of the last stream's labels: rows come in runs of one stream, and a
        // collapsed series' identity is that plus its own pairs' (see [`identity`]).
        let mut stream_identity: Option<(u64, u128)> = None;
        // A row's metadata under the names a metric series gives it (see [`metadata_pairs`]).
        let mut own: Vec<(Cow<'_, str>, &str)> = Vec::new();
        // The last row's stream (rows come in runs of one stream): its labels, and whether
        // they hold an `__error__`, which may fail the query.
        let mut last: Option<(u64, Option<(&Labels, bool)>)> = None;
        for row in 0..batch.num_rows() {
            let t = ts.value(row);
            let f = fp.value(row);
            let stream = match last {
                Some((k, s)) if k == f => s,
                _ => {
                    let s = self
                        .streams
                        .get(&f)
                        .map(|l| (l, l.get(ERROR_LABEL).is_some()));
                    last = Some((f, s));
                    s
                }
            };
            let Some((stream, stream_errored)) = stream else {
                continue;
            };
            let text = line.as_ref().map_or("", |l| l.value(row));
            if !self.seen.first(f, t, text) {
                continue;
            }
            if simple {
                let v = match self.value {
                    SampleValue::LineBytes => text.len() as f64,
                    _ => 1.0,
                };
                let slot = match &self.group_by {
                    None if meta.is_empty(row) => acc.stream_slot(f, || stream.clone()),
                    None => match self.collapse.as_deref() {
                        // The row's labels are its stream's plus its metadata's: the identity
                        // is the stream's plus the metadata's, and so is the group, without a
                        // label set built per row (a trace id makes every row a series).
                        Some(by)
                            if !stream_errored
                                && metadata_pairs(stream, meta.pairs(row), &mut own) =>
                        {
                            let sid = stream_id(&mut stream_identity, f, stream, &mut acc.scratch);
                            let pairs = || own.iter().map(|(n, v)| (&**n, *v));
                            let id = sid.wrapping_add(identity(pairs(), &mut acc.scratch));
                            acc.identity_slot_in(id, |acc| {
                                if pairs().any(|(k, v)| projected(k, v, by)) {
                                    acc.group(kept(stream.iter().map(pair).chain(pairs()), by))
                                } else {
                                    acc.stream_group(f, || kept(stream.iter().map(pair), by))
                                }
                            })
                        }
                        collapse => acc.row_slot(merged(stream, meta.pairs(row)), collapse),
                    },
                    Some(by) if !meta.any_key_in(row, by) => {
                        acc.stream_slot(f, || project(stream.iter().map(pair), by))
                    }
                    Some(by) => {
                        // Rows of one stream differ only in their metadata values: key the
                        // series by (stream, hash of the grouped metadata) so the common case
                        // allocates nothing.
                        let h = meta.hash_keys_in(row, by);
                        acc.group_slot(f, h, || {
                            project(stream.iter().map(pair).chain(meta.pairs(row)), by)
                        })
                    }
                };
                acc.push(slot, t, v, self.cells.as_ref());
                continue;
            }

            sm.clear();
            sm.extend(meta.pairs(row));
            entry.reset_keyed(f, stream, &sm);
            let bytes = match &self.pipeline {
                Some(p) => match p.process(t, text, &mut entry) {
                    Some(l) => l.len(),
                    None => continue,
                },
                None => text.len(),
            };
            let v = match (&self.unwrapper, self.value) {
                (Some(u), _) => {
                    let Some(v) = u.extract(&mut entry) else {
                        continue;
                    };
                    if !self.keep_unwrapped {
                        u.remove_unwrapped_label(&mut entry);
                    }
                    v
                }
                (None, SampleValue::LineBytes) => bytes as f64,
                (None, _) => 1.0,
            };
            let made = acc.series.len();
            // A sample that fails the query keeps all its labels: Loki's pipeline error names
            // the whole series, not its group.
            let fails = fails_query(|name| entry.get(name));
            let pairs = || entry.iter().map(|(_, n, v)| (n, v));
            // The row's labels other than its stream's.
            let own = || entry.own_labels();
            let slot = match (&self.group_by, &self.collapse) {
                (Some(by), _) if !fails && entry.stream_unchanged() => {
                    // The stream's labels are the row's: the series is known by the stream
                    // and a hash of the other labels it keeps, as in the pipeline-free case,
                    // so a row of a group seen before builds no label set.
                    let h =
                        parquetry_model::hash_pairs(own().filter(|(k, v)| projected(k, v, by)), 0);
                    acc.group_slot(f, h, || project(pairs(), by))
                }
                (Some(by), _) if !fails => acc.slot(project(pairs(), by)),
                (None, Some(by)) if !fails && entry.stream_unchanged() => {
                    // The stream's labels are the row's: their part of the identity is the
                    // stream's, and so is the group unless another label is kept.
                    let sid = stream_id(&mut stream_identity, f, stream, &mut acc.scratch);
                    let plan = self.direct.as_ref().filter(|_| acc.may_fold());
                    // One pass over the row's own labels: its identity, whether its group
                    // keeps one of them, and (when folding) whether one is named like
                    // another stream's label, which could make this row's label set another
                    // stream's row's: such rows are never folded.
                    let (mut keeps, mut like_stream) = (false, false);
                    let own_labels = own().inspect(|&(k, v)| {
                        keeps |= projected(k, v, by);
                        like_stream |= plan.is_some_and(|p| p.stream_name(k));
                    });
                    let id = sid.wrapping_add(identity(own_labels, &mut acc.scratch));
                    let group = |acc: &mut Acc| {
                        if keeps {
                            acc.group(kept(pairs(), by))
                        } else {
                            acc.stream_group(f, || kept(stream.iter().map(pair), by))
                        }
                    };
                    if let Some(plan) = plan {
                        let row = Pending {
                            id,
                            group: group(acc),
                            t,
                            v,
                            foldable: !like_stream,
                        };
                        acc.hold(plan, f, row, self.cells.as_ref());
                        continue;
                    }
                    acc.identity_slot_in(id, group)
                }
                (None, Some(by)) if !fails => {
                    // The identity of the whole set without building it: most such rows
                    // belong to a series already made (or are its only row).
                    let id = identity(pairs(), &mut acc.scratch);
                    acc.identity_slot(id, || kept(pairs(), by))
                }
                _ => acc.slot(entry.all()),
            };
            // Collapsed series never reach the answer (the aggregation above keeps only its
            // groups); their memory is the pool's to bound.
            if let Slot::Series(i) = slot
                && acc.series.len() > made
            {
                self.budget.spend(label_bytes(&acc.series[i].labels))?;
            }
            acc.push(slot, t, v, self.cells.as_ref());
        }
        Ok(())
    }
}

/// A batch's `line` column: views into the scan's pages (see [`LogTable::with_line_views`]),
/// or, from a scan that copied them, a plain string array.
enum Lines {
    Views(StringViewArray),
    Plain(StringArray),
}

impl Lines {
    fn of(col: &ArrayRef) -> Result<Lines> {
        Ok(match col.data_type() {
            DataType::Utf8View => Lines::Views(col.as_string_view().clone()),
            _ => Lines::Plain(cast(col, &DataType::Utf8)?.as_string::<i32>().clone()),
        })
    }

    #[inline]
    fn value(&self, row: usize) -> &str {
        match self {
            Lines::Views(a) => a.value(row),
            Lines::Plain(a) => a.value(row),
        }
    }
}

/// A series' samples: a whole series' `Vec` or a collapsed series' inline first sample.
trait Samples {
    fn capacity(&self) -> usize;
    fn last_mut(&mut self) -> Option<&mut (i64, f64)>;
    fn reserve_exact(&mut self, n: usize);
    fn push(&mut self, sample: (i64, f64));
}

/// Both sample vectors have these as inherent methods of the same names.
macro_rules! impl_samples {
    ($($t:ty),*) => {$(
        impl Samples for $t {
            fn capacity(&self) -> usize {
                self.capacity()
            }
            fn last_mut(&mut self) -> Option<&mut (i64, f64)> {
                self.as_mut_slice().last_mut()
            }
            fn reserve_exact(&mut self, n: usize) {
                self.reserve_exact(n);
            }
            fn push(&mut self, sample: (i64, f64)) {
                self.push(sample);
            }
        }
    )*};
}

impl_samples!(Vec<(i64, f64)>, CollapsedSamples);

/// Appends a sample to `samples`; with `cells`, adds it to the last sample instead when both
/// lie in one cell. Returns the bytes the samples' heap part grew by.
fn push_sample(samples: &mut impl Samples, t: i64, v: f64, cells: Option<&StepCells>) -> usize {
    let t = match cells {
        None => t,
        Some(cells) => {
            let Some(cell) = cells.cell(t) else {
                return 0;
            };
            if let Some(last) = samples.last_mut().filter(|last| last.0 == cell) {
                last.1 += v;
                return 0;
            }
            cell
        }
    };
    let before = samples.capacity();
    if before == 0 {
        // A series' first sample gets room for itself alone, not the four a `Vec` starts
        // with: a parser query with a unique id per line makes a series per line.
        samples.reserve_exact(1);
    }
    samples.push((t, v));
    (samples.capacity() - before) * size_of::<(i64, f64)>()
}

/// Which labels the series of one range aggregation keep.
#[derive(Clone, Copy)]
struct SeriesShape<'a> {
    /// Pre-grouped onto these (see [`pregroup_hints`]).
    group_by: Option<&'a [String]>,
    /// Collapsed onto these (see [`collapse_hints`]) unless pre-grouped.
    collapse: Option<&'a [String]>,
    /// The aggregation above, when collapsed series may fold into it (see
    /// [`direct_hints`]).
    direct: Option<VectorOp>,
}

/// How a scan folds collapsed series straight into the aggregation above ([`Direct`]).
///
/// A parser query with a unique id per line makes a series per line, which the scan would
/// hold until evaluation. A series whose rows are all more than a range apart gives each
/// step the value of the one row in its window, exactly what a series of that row alone
/// gives: such a row can be folded into its group's cells as it is read (its points from
/// [`SinglePoints`], the same code evaluation runs), and nothing of it is held. The scan
/// knows a row is alone within a range when
/// - no row of the same label set lies within a range of it in the stream's run it reads
///   (rows of one stream in one object come in time order: the run holds the rows of the
///   last range back in a queue, [`Run`]);
/// - it lies a range or more inside the run's ends: the stream's other rows in the same
///   object, read by other partitions, lie beyond them;
/// - it lies outside the stream's spans in other objects, widened by a range
///   ([`DirectPlan::zones`]);
/// - its label set cannot be another stream's row's: no pipeline stage changes stream labels
///   and none of its own labels is named like a selected stream's label.
///
/// Every other row is kept as a series, as before. The cells' sums are exact
/// ([`parquetry_eval::ExactSum`]), so the answer does not depend on which rows were folded (on
/// the partitions, time blocks or leaves): it is, to the bit, the one of every series kept.
/// The first [`IDENTITY_PROBE`] settled rows of a partition are kept whatever they are, as
/// the identity map needs them to decide whether series repeat; folding starts once it found
/// they almost never do.
struct DirectPlan {
    points: SinglePoints,
    /// The range aggregation's range, ns.
    range: i64,
    /// Per stream, the times where its spans in two or more selected objects, each widened
    /// by a range, overlap: a row there may have a row of its series in another object.
    shared: Overlaps,
    /// Label names of the selected streams.
    stream_names: Vec<String>,
    /// Bit `n` set when a name in `stream_names` is `n` bytes long (or 64 or more).
    name_lengths: u64,
    /// Bit `b` set (of 256) when a name in `stream_names` starts with byte `b`.
    first_bytes: [u64; 4],
    /// An empty fold, cloned into each partition's first.
    empty: Direct,
}

impl DirectPlan {
    /// The plan for range aggregation `ra` under aggregation `op` over `selection`, or none
    /// when its pipeline may change stream labels.
    fn new(
        op: VectorOp,
        ra: &RangeAggregation,
        params: &EvalParams,
        stages: &[LogStage],
        selection: &Selection,
    ) -> Result<Option<DirectPlan>> {
        let relabels = stages.iter().any(|s| {
            matches!(
                s,
                LogStage::LabelFormat(_) | LogStage::Drop(_) | LogStage::Keep(_)
            )
        });
        if relabels || ra.range.range <= 0 {
            return Ok(None);
        }
        let bad = |e: parquetry_eval::EvalError| QueryError::BadRequest(e.to_string());
        let range = ra.range.range;
        let streams = || selection.objects.iter().flat_map(|o| &o.streams);
        let names: std::collections::BTreeSet<&String> =
            streams().flat_map(|st| st.labels.keys()).collect();
        let spans = streams().map(|st| (st.fingerprint, st.min_ts, st.max_ts));
        let shared = overlaps_by_stream(spans, range);
        Ok(Some(DirectPlan::with_names(
            SinglePoints::new(ra, params).map_err(bad)?,
            range,
            shared,
            names.into_iter().cloned().collect(),
            Direct::new(op, params).map_err(bad)?,
        )))
    }

    fn with_names(
        points: SinglePoints,
        range: i64,
        shared: Overlaps,
        stream_names: Vec<String>,
        empty: Direct,
    ) -> DirectPlan {
        let mut name_lengths = 0u64;
        let mut first_bytes = [0u64; 4];
        for n in &stream_names {
            name_lengths |= 1 << n.len().min(63);
            let b = n.as_bytes().first().copied().unwrap_or(0);
            first_bytes[usize::from(b >> 6)] |= 1 << (b & 63);
        }
        DirectPlan {
            points,
            range,
            shared,
            stream_names,
            name_lengths,
            first_bytes,
            empty,
        }
    }

    fn zones(&self, fp: u64) -> Vec<(i64, i64)> {
        self.shared.get(&fp).cloned().unwrap_or_default()
    }

    /// Whether `name` is a selected stream's label name: asked for every pair of every row,
    /// so most names are turned away by their length and first byte alone.
    fn stream_name(&self, name: &str) -> bool {
        let len = name.len();
        let first = name.as_bytes().first().copied().unwrap_or(0);
        if self.name_lengths & (1 << len.min(63)) == 0
            || self.first_bytes[usize::from(first >> 6)] & (1 << (first & 63)) == 0
        {
            return false;
        }
        self.stream_names.iter().any(|n| n == name)
    }
}

/// What a held row costs: its queue entry and its identity's map entry.
const PENDING_BYTES: usize = size_of::<Pending>() + 32;

/// Whether every partition of `plan` yields the rows of its byte ranges of the objects in
/// their stored order: only scans, filters, projections and batch coalescing, no operator
/// that spreads batches over partitions (a round-robin repartition when there are fewer
/// byte ranges than cores) or merges them.
fn in_storage_order(plan: &dyn datafusion::physical_plan::ExecutionPlan) -> bool {
    matches!(
        plan.name(),
        "DataSourceExec" | "FilterExec" | "ProjectionExec" | "CoalesceBatchesExec"
    ) && plan
        .children()
        .into_iter()
        .all(|c| in_storage_order(c.as_ref()))
}

/// A row of a collapsed series held back in its [`Run`].
#[derive(Debug, Clone, Copy)]
struct Pending {
    id: u128,
    group: u32,
    t: i64,
    v: f64,
    /// False when its label set might be another stream's row's.
    foldable: bool,
}

/// The rows of one stream's run (consecutive rows of one stream in time order) within a
/// range of the last, and how many of each series they hold.
struct Run {
    fp: u64,
    /// Times of the run's first and last rows.
    first: i64,
    last: i64,
    /// As [`DirectPlan::shared`], for this stream.
    zones: Vec<(i64, i64)>,
    queue: std::collections::VecDeque<Pending>,
    /// Per identity in the queue: its rows there, and whether two of its rows ever met
    /// within a range while it had any there (then each of those rows has a neighbour).
    held: FastMap<u128, (u32, bool)>,
}

impl Run {
    fn new(fp: u64, t: i64, zones: Vec<(i64, i64)>) -> Run {
        Run {
            fp,
            first: t,
            last: t,
            zones,
            queue: Default::default(),
            held: FastMap::default(),
        }
    }

    /// Queues `row`; every queued row lies within a range before it, so a queued row of its
    /// series is its neighbour.
    fn admit(&mut self, row: Pending) {
        self.held
            .entry(row.id)
            .and_modify(|(n, met)| {
                *n += 1;
                *met = true;
            })
            .or_insert((1, false));
        self.queue.push_back(row);
    }

    /// Takes one row of series `id` off the books; true when no row of its series came
    /// within a range of it.
    fn release(&mut self, id: u128) -> bool {
        let Some((n, met)) = self.held.get_mut(&id) else {
            return false;
        };
        let alone = !*met;
        *n -= 1;
        if *n == 0 {
            self.held.remove(&id);
        }
        alone
    }

    /// Whether a row at `t` lies a range inside the run's start and, once the run has
    /// `ended`, its end (before, a later row of the run came a range after it), and outside
    /// the stream's shared zones.
    fn inside(&self, t: i64, range: i64, ended: bool) -> bool {
        let from_start = t.saturating_sub(self.first) >= range;
        let from_end = !ended || self.last.saturating_sub(t) >= range;
        let i = self.zones.partition_point(|z| z.1 < t);
        let shared = self.zones.get(i).is_some_and(|z| z.0 <= t);
        from_start && from_end && !shared
    }
}

/// A collapsed series' identity: 128 bits of its whole label set, so equal sets meet in one
/// series and different ones, for any practical count, never do. It is the sum of each
/// pair's XXH3-128 (of `name 0xff value`, spelled in `scratch`), so `pairs` may list the set
/// in any order: a parsed entry's labels are hashed as they lie, not sorted first. One
/// short hash per pair costs a fraction of a streaming hash fed piece by piece.
fn identity<'a>(pairs: impl Iterator<Item = (&'a str, &'a str)>, scratch: &mut Vec<u8>) -> u128 {
    pairs.fold(0u128, |sum, (name, value)| {
        scratch.clear();
        scratch.extend_from_slice(name.as_bytes());
        scratch.push(0xff);
        scratch.extend_from_slice(value.as_bytes());
        sum.wrapping_add(twox_hash::XxHash3_128::oneshot(scratch))
    })
}

/// The group of a series an aggregation `by (by)` right above it reduces: its `by` labels (and
/// error labels, as [`project`] keeps them). With its identity that is all a collapsed series
/// keeps, so that series the aggregation tells apart stay apart while their other labels (a
/// per-line id parsed out of each line) are not held for the whole query.
/// The pairs come in any order and go out in name order.
fn kept<'a>(
    pairs: impl Iterator<Item = (&'a str, &'a str)>,
    by: &[String],
) -> std::vec::IntoIter<(&'a str, &'a str)> {
    let mut kept: Vec<(&str, &str)> = pairs.filter(|(k, v)| projected(k, v, by)).collect();
    kept.sort_unstable();
    kept.into_iter()
}

fn label_bytes(l: &Labels) -> usize {
    l.iter().map(|l| l.name.len() + l.value.len()).sum()
}

fn pair(l: &parquetry_model::Label) -> (&str, &str) {
    (l.name.as_str(), l.value.as_str())
}

/// A stream's labels plus an entry's structured metadata; metadata named like a stream label
/// goes by `<name>_extracted`, as in Loki.
fn merged<'a>(stream: &'a Labels, extra: impl Iterator<Item = (&'a str, &'a str)>) -> Labels {
    let mut l = stream.clone();
    for (k, v) in extra {
        let name = parquetry_pipeline::metadata_name(stream, k);
        if l.get(&name).is_none() {
            l.set(&name, v);
        }
    }
    l
}

/// The identity of stream `f`'s labels, computed once per run of the stream's rows.
fn stream_id(
    last: &mut Option<(u64, u128)>,
    f: u64,
    stream: &Labels,
    scratch: &mut Vec<u8>,
) -> u128 {
    match *last {
        Some((k, id)) if k == f => id,
        _ => {
            let id = identity(stream.iter().map(pair), scratch);
            *last = Some((f, id));
            id
        }
    }
}

/// The pairs [`merged`] adds to `stream` for a row's metadata `extra`, into `own`: renamed
/// where they clash with a stream label, the first of a name kept. False when a name starts
/// with `__`: such a row may fail the query, which the caller decides on the whole set (as
/// for a stream with an `__error__` label, which the caller checks once per stream).
fn metadata_pairs<'a>(
    stream: &Labels,
    extra: impl Iterator<Item = (&'a str, &'a str)>,
    own: &mut Vec<(Cow<'a, str>, &'a str)>,
) -> bool {
    own.clear();
    for (k, v) in extra {
        if k.starts_with("__") {
            return false;
        }
        // `metadata_name`, with one look-up of the stream for a name that is not its.
        let name = if stream.get(k).is_none() {
            Cow::Borrowed(k)
        } else {
            let renamed = format!("{k}_extracted");
            if stream.get(&renamed).is_some() {
                continue;
            }
            Cow::Owned(renamed)
        };
        if !own.iter().any(|(n, _)| *n == name) {
            own.push((name, v));
        }
    }
    true
}

/// Whether a sample whose labels `get` looks up carries an `__error__` that fails a metric
/// query.
fn fails_query<'a>(get: impl Fn(&str) -> Option<&'a str>) -> bool {
    get(ERROR_LABEL).is_some_and(|e| !e.is_empty()) && get(PRESERVE_ERROR_LABEL) != Some("true")
}

/// The labels a pre-grouped series keeps: the `by` labels, plus the error labels so a
/// pipeline error still fails the query exactly as it would without pre-grouping.
fn project<'a>(pairs: impl Iterator<Item = (&'a str, &'a str)>, by: &[String]) -> Labels {
    Labels::from_pairs(pairs.filter(|(k, v)| projected(k, v, by)))
}

/// Whether [`project`] keeps the label `k="v"`.
fn projected(k: &str, v: &str, by: &[String]) -> bool {
    !v.is_empty()
        && (by.iter().any(|b| b == k)
            || k == ERROR_LABEL
            || k == ERROR_DETAILS_LABEL
            || k == PRESERVE_ERROR_LABEL)
}

/// The structured-metadata column of one batch, read without copying strings.
struct Metadata {
    offsets: Vec<i32>,
    nulls: Option<arrow::buffer::NullBuffer>,
    keys: StringArray,
    values: StringArray,
}

impl Metadata {
    fn new(col: &ArrayRef) -> Result<Metadata> {
        let m = col
            .as_map_opt()
            .ok_or_else(|| QueryError::Internal("unexpected metadata column type".into()))?;
        let keys = cast(m.keys(), &DataType::Utf8)?.as_string::<i32>().clone();
        let values = cast(m.values(), &DataType::Utf8)?
            .as_string::<i32>()
            .clone();
        Ok(Metadata {
            offsets: m.value_offsets().to_vec(),
            nulls: m.nulls().cloned(),
            keys,
            values,
        })
    }

    fn range(&self, row: usize) -> std::ops::Range<usize> {
        if self.nulls.as_ref().is_some_and(|n| n.is_null(row)) {
            return 0..0;
        }
        self.offsets[row] as usize..self.offsets[row + 1] as usize
    }

    fn is_empty(&self, row: usize) -> bool {
        self.range(row).is_empty()
    }

    fn pairs(&self, row: usize) -> impl Iterator<Item = (&str, &str)> {
        self.range(row)
            .map(|j| (self.keys.value(j), self.values.value(j)))
    }

    /// A hash of the `(key, value)` pairs of `row` whose key is in `names`, in stored order.
    fn hash_keys_in(&self, row: usize, names: &[String]) -> u64 {
        use std::hash::Hasher;
        let mut h = twox_hash::XxHash64::with_seed(0);
        for j in self.range(row) {
            let k = self.keys.value(j);
            if names.iter().any(|n| n == k) {
                h.write(k.as_bytes());
                h.write_u8(0xff);
                h.write(self.values.value(j).as_bytes());
                h.write_u8(0xff);
            }
        }
        h.finish()
    }

    fn any_key_in(&self, row: usize, names: &[String]) -> bool {
        self.range(row)
            .any(|j| names.iter().any(|n| n == self.keys.value(j)))
    }
}

/// The grid a metric query evaluates on; the scan folds rows into its cells.
fn eval_params(q: &MetricQuery) -> EvalParams {
    EvalParams {
        start: q.start,
        end: q.end,
        step: if q.instant { 1 } else { q.step },
        instant: q.instant,
        max_series: q.max_series,
    }
}

/// For each range aggregation (in [`SampleExpr::range_aggregations`] order), `f` of it and of
/// the vector aggregation directly above it, if any.
fn per_range_aggregation<T>(
    expr: &SampleExpr,
    f: impl Fn(&RangeAggregation, Option<&VectorAggregation>) -> T,
) -> Vec<T> {
    fn walk<T>(
        e: &SampleExpr,
        parent: Option<&VectorAggregation>,
        f: &impl Fn(&RangeAggregation, Option<&VectorAggregation>) -> T,
        out: &mut Vec<T>,
    ) {
        match e {
            SampleExpr::RangeAggregation(ra) => out.push(f(ra, parent)),
            SampleExpr::VectorAggregation(v) => walk(&v.expr, Some(v), f, out),
            SampleExpr::BinOp(b) => {
                walk(&b.lhs, None, f, out);
                walk(&b.rhs, None, f, out);
            }
            SampleExpr::LabelReplace(l) => walk(&l.expr, None, f, out),
            SampleExpr::Literal(_) | SampleExpr::Vector(_) => {}
        }
    }
    let mut out = Vec::new();
    walk(expr, None, &f, &mut out);
    out
}

/// The `by` labels of `v`, or none for an aggregation without grouping; `None` for `without`.
fn by_labels(v: &VectorAggregation) -> Option<&[String]> {
    match &v.grouping {
        Some(g) if !g.without => Some(&g.labels),
        Some(_) => None,
        None => Some(&[]),
    }
}

/// For each range aggregation without a grouping of its own, the `by` labels of an
/// aggregation directly above it whose answer keeps only those labels and the values of its
/// series: the scan may then keep each series as those labels plus an identity. `topk`,
/// `bottomk` and the sorts answer with their series' own labels and `without` keeps all but
/// some, so none of them collapses.
pub(crate) fn collapse_hints(expr: &SampleExpr) -> Vec<Option<Vec<String>>> {
    per_range_aggregation(expr, |ra, parent| {
        let v = parent.filter(|_| ra.grouping.is_none())?;
        let keeps_groups_only = v.op.reduces_groups();
        by_labels(v)
            .filter(|_| keeps_groups_only)
            .filter(|by| !by.iter().any(|l| l == IDENTITY_LABEL))
            .map(<[String]>::to_vec)
    })
}

/// For each range aggregation whose series collapse (see [`collapse_hints`]), the aggregation
/// directly above it when series may fold into it ([`Direct::serves`]; see [`DirectPlan`]).
pub(crate) fn direct_hints(expr: &SampleExpr) -> Vec<Option<VectorOp>> {
    let collapse = collapse_hints(expr);
    let pregroup = pregroup_hints(expr);
    per_range_aggregation(expr, |ra, parent| {
        parent
            .filter(|v| Direct::serves(v.op) && ra.op != RangeOp::AbsentOverTime)
            .map(|v| v.op)
    })
    .into_iter()
    .zip(collapse.iter().zip(&pregroup))
    .map(|(op, (c, p))| op.filter(|_| c.is_some() && p.is_none()))
    .collect()
}

/// For each range aggregation, the `by` labels of a `sum` directly above it when summing
/// per-series results equals aggregating per group.
pub(crate) fn pregroup_hints(expr: &SampleExpr) -> Vec<Option<Vec<String>>> {
    per_range_aggregation(expr, |ra, parent| {
        // `op(...) by (g)` merges the samples of every series in a group before the function
        // runs, so projecting each row onto `g` in the scan is exact for every function.
        if let Some(g) = ra.grouping.as_ref().filter(|g| !g.without) {
            return Some(g.labels.clone());
        }
        let foldable = matches!(
            ra.op,
            RangeOp::CountOverTime
                | RangeOp::Rate
                | RangeOp::BytesOverTime
                | RangeOp::BytesRate
                | RangeOp::SumOverTime
        ) && ra.grouping.is_none();
        let v = parent.filter(|v| v.op == VectorOp::Sum && foldable)?;
        by_labels(v).map(<[String]>::to_vec)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hints(q: &str) -> Vec<Option<Vec<String>>> {
        match parquetry_logql::parse_expr(q).unwrap() {
            parquetry_logql::Expr::Sample(s) => pregroup_hints(&s),
            _ => panic!("not a metric query"),
        }
    }

    #[test]
    fn scan_range_covers_every_window_including_negative_offsets() {
        let q = |expr: &str| {
            let parquetry_logql::Expr::Sample(expr) = parquetry_logql::parse_expr(expr).unwrap()
            else {
                panic!("not a metric query")
            };
            MetricQuery {
                tenant: "t".into(),
                expr,
                start: 1_000_000_000_000,
                end: 2_000_000_000_000,
                step: 1_000_000_000,
                instant: false,
                max_series: 0,
                max_response_bytes: 0,
            }
        };
        let m = 60_000_000_000;
        let a = q(r#"count_over_time({a="b"}[1m] offset -1m)"#).scan_range();
        assert_eq!(a, (1_000_000_000_000 + 1, 2_000_000_000_000 + m + 1));
        let b = q(r#"count_over_time({a="b"}[1m]) / count_over_time({a="b"}[5m] offset 1m)"#)
            .scan_range();
        assert_eq!(b, (1_000_000_000_000 - 6 * m + 1, 2_000_000_000_000 + 1));
    }

    #[test]
    fn range_grouping_projects_in_the_scan() {
        assert_eq!(
            hints(r#"avg_over_time({a="b"} | unwrap v [1m]) by (x)"#),
            vec![Some(vec!["x".to_string()])]
        );
        assert_eq!(
            hints(r#"avg_over_time({a="b"} | unwrap v [1m]) without (x)"#),
            vec![None]
        );
    }

    #[test]
    fn pregrouping_only_where_sum_commutes() {
        assert_eq!(
            hints(r#"sum by (level) (count_over_time({a="b"}[1m]))"#),
            vec![Some(vec!["level".to_string()])]
        );
        assert_eq!(
            hints(r#"count by (level) (count_over_time({a="b"}[1m]))"#),
            vec![None]
        );
        assert_eq!(
            hints(r#"sum without (level) (rate({a="b"}[1m]))"#),
            vec![None]
        );
        assert_eq!(
            hints(r#"sum by (x) (max_over_time({a="b"} | unwrap v [1m]))"#),
            vec![None]
        );
        assert_eq!(
            hints(r#"sum by (x) (rate({a="b"}[1m])) / sum(count_over_time({a="b"}[1m]))"#),
            vec![Some(vec!["x".to_string()]), Some(vec![])]
        );
    }

    #[test]
    fn series_collapse_under_aggregations_that_answer_with_their_groups_only() {
        let collapse = |q: &str| match parquetry_logql::parse_expr(q).unwrap() {
            parquetry_logql::Expr::Sample(s) => collapse_hints(&s),
            _ => panic!("not a metric query"),
        };
        let by = |l: &[&str]| Some(l.iter().map(|s| s.to_string()).collect::<Vec<_>>());
        let inner = r#"avg_over_time({a="b"} | logfmt | unwrap d [5m])"#;
        for op in ["sum", "avg", "min", "max", "count", "stddev", "stdvar"] {
            assert_eq!(
                collapse(&format!("{op} by (svc) ({inner})")),
                vec![by(&["svc"])]
            );
        }
        assert_eq!(collapse(&format!("avg({inner})")), vec![by(&[])]);
        // Answers that carry the series' own labels, or all but some.
        for q in [
            format!("topk(2, {inner})"),
            format!("sort({inner})"),
            format!("avg without (id) ({inner})"),
            inner.to_string(),
            format!("avg by (svc) (label_replace({inner}, \"x\", \"y\", \"\", \"\"))"),
            format!("{inner} > 1"),
            format!("avg by ({IDENTITY_LABEL}) ({inner})"),
        ] {
            assert_eq!(collapse(&q), vec![None], "{q}");
        }
        // A range aggregation grouped itself keeps its own grouping.
        assert_eq!(
            collapse(r#"avg by (svc) (avg_over_time({a="b"} | unwrap d [5m]) by (pod))"#),
            vec![None]
        );
        assert_eq!(
            collapse(&format!(
                "max({inner}) / sum by (x) (rate({{a=\"b\"}}[1m]))"
            )),
            vec![by(&[]), by(&["x"])]
        );
    }

    #[test]
    fn a_collapsed_series_keeps_its_groups_errors_and_an_identity_of_all_its_labels() {
        let a = Labels::from_pairs([("svc", "api"), ("id", "1"), ("pod", "p")]);
        let b = Labels::from_pairs([("svc", "api"), ("id", "2"), ("pod", "p")]);
        let by = ["svc".to_string()];
        let scratch = &mut Vec::new();
        let id = |l: &Labels, scratch: &mut Vec<u8>| identity(l.iter().map(pair), scratch);
        assert_ne!(id(&a, scratch), id(&b, scratch));
        // A name's bytes never run into its value's.
        assert_ne!(
            id(&Labels::from_pairs([("ab", "c")]), scratch),
            id(&Labels::from_pairs([("a", "bc")]), scratch)
        );
        let unsorted = [("pod", "p"), ("svc", "api"), ("id", "1")];
        assert_eq!(
            kept(unsorted.into_iter(), &by).collect::<Vec<_>>(),
            [("svc", "api")]
        );
        // The pipeline path hashes the pairs of an entry it never turns into a label set, in
        // the entry's order: the same identity as the set's.
        let mut parsed = EntryLabels::of_stream(&Labels::from_pairs([("svc", "api")]));
        parsed.set(parquetry_pipeline::Category::Parsed, "pod", "p");
        parsed.set(parquetry_pipeline::Category::Parsed, "id", "1");
        let entry_order: Vec<(&str, &str)> = parsed.iter().map(|(_, n, v)| (n, v)).collect();
        assert!(!entry_order.is_sorted());
        assert_eq!(identity(entry_order.into_iter(), scratch), id(&a, scratch));
        let mut acc = Acc::default();
        let one = acc.row_slot(a.clone(), Some(&by));
        assert_eq!(acc.row_slot(a, Some(&by)), one);
        assert_ne!(acc.row_slot(b.clone(), Some(&by)), one);
        // Both in one group, which holds the `by` labels alone.
        assert_eq!(acc.collapsed.groups, [Labels::from_pairs([("svc", "api")])]);
        assert_eq!(acc.collapsed.series.len(), 2);
        // A series that fails the query keeps every label, so the error names it.
        let failed = Labels::from_pairs([("svc", "api"), ("id", "3"), (ERROR_LABEL, "x")]);
        let Slot::Series(slot) = acc.row_slot(failed.clone(), Some(&by)) else {
            panic!("a failing series is collapsed");
        };
        assert_eq!(acc.series[slot].labels, failed);
        // Partitions merged: groups are matched by labels, collapsed series appended.
        let mut other = Acc::default();
        let c = Labels::from_pairs([("svc", "web"), ("id", "1")]);
        other.row_slot(c, Some(&by));
        other.row_slot(b.clone(), Some(&by));
        acc.merge(other);
        assert_eq!(acc.collapsed.groups.len(), 2);
        let groups: Vec<u32> = acc.collapsed.series.iter().map(|s| s.group).collect();
        assert_eq!(groups, [0, 0, 1, 0]);
    }

    #[test]
    fn an_identity_map_that_never_hits_is_dropped_and_one_that_does_is_kept() {
        let group = |acc: &mut Acc| acc.group(std::iter::once(("svc", "api")));
        let probe = u128::from(IDENTITY_PROBE);
        // A new identity per row: after the probe, rows go into series of their own, even
        // when an identity repeats (evaluation merges those).
        let mut unique = Acc::default();
        for id in 0..probe {
            unique.identity_slot_in(id, group);
        }
        assert!(unique.unmapped);
        assert!(unique.by_identity.is_empty());
        let a = unique.identity_slot_in(7, group);
        assert_ne!(unique.identity_slot_in(7, group), a);
        assert_eq!(unique.collapsed.series.len(), IDENTITY_PROBE as usize + 2);
        // Identities that repeat (each four times): the map stays and merges them.
        let mut shared = Acc::default();
        for row in 0..probe * 2 {
            shared.identity_slot_in(row / 4, group);
        }
        assert!(!shared.unmapped);
        assert_eq!(shared.collapsed.series.len(), (probe / 2) as usize);
        assert_eq!(shared.identity_slot_in(3, group), Slot::Collapsed(3));
    }

    /// Rows of collapsed series, each `(stream, t, id, value, foldable)`, with some of them
    /// repeating an identity within a range, some beyond it; one stream split over two
    /// partitions; one stream in two objects whose spans overlap.
    #[test]
    fn folded_series_answer_as_kept_ones_do() {
        const S: i64 = 1_000_000_000;
        let t0 = 1_700_000_000 * S;
        let params = EvalParams {
            start: t0,
            end: t0 + 600 * S,
            step: 15 * S,
            instant: false,
            max_series: 0,
        };
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        // Partitions of rows in scan order: (stream, t, id, value, foldable).
        type Row = (u64, i64, u128, f64, bool);
        let mut parts: Vec<Vec<Row>> = vec![Vec::new(); 4];
        // Series of one stream only (a label set holds its stream's labels): `(t, id,
        // segment)` of each stream's rows.
        let mut made: HashMap<u64, Vec<(i64, u128, usize)>> = HashMap::new();
        for (segment, (stream, part, from, to)) in [
            (1u64, 0usize, 0, 600),
            (2, 0, 0, 300),
            (2, 1, 300, 600),
            // Stream 3 in two objects: 0–400 s and 250–600 s, read by other partitions.
            (3, 2, 0, 400),
            (3, 3, 250, 600),
        ]
        .into_iter()
        .enumerate()
        {
            let mut t = t0 - 30 * S + from * S;
            while t < t0 - 30 * S + to * S {
                t += (next() % 3_000_000_000) as i64;
                let r = next();
                let made = made.entry(stream).or_default();
                let id = match r % 10 {
                    // Another row of a recent series (often within a range).
                    0 => made.iter().rev().nth((r % 7) as usize).map(|m| m.1),
                    // Another row of an old one.
                    1 => made.get((r % 50) as usize).map(|m| m.1),
                    // A row of the same stream within a range, read by another partition.
                    2 | 3 => made
                        .iter()
                        .find(|m| m.2 != segment && (m.0 - t).abs() < 20 * S)
                        .map(|m| m.1),
                    _ => None,
                }
                .unwrap_or(u128::from(r) << 32 | made.len() as u128);
                made.push((t, id, segment));
                let v = (r % 100_000) as f64 / 7.0;
                parts[part].push((stream, t, id, v, r % 19 != 0));
            }
        }
        let shared = overlaps_by_stream(
            [
                (3, t0 - 30 * S, t0 + 370 * S),
                (3, t0 + 220 * S, t0 + 570 * S),
            ]
            .into_iter(),
            30 * S,
        );
        assert_eq!(shared[&3], [(t0 + 190 * S, t0 + 400 * S)]);
        for op in ["sum", "avg", "count", "min", "max"] {
            let query = format!(
                "{op} by (g) (avg_over_time({{a=\"b\"}} | logfmt | unwrap d [30s] offset 5s))"
            );
            let parquetry_logql::Expr::Sample(expr) = parquetry_logql::parse_expr(&query).unwrap()
            else {
                panic!("not a metric query")
            };
            let ra = expr.range_aggregations()[0].clone();
            let plan = DirectPlan::with_names(
                SinglePoints::new(&ra, &params).unwrap(),
                30 * S,
                shared.clone(),
                vec!["pod".into(), "service_name".into()],
                Direct::new(direct_hints(&expr)[0].unwrap(), &params).unwrap(),
            );
            for (name, stream) in [("pod", true), ("service_name", true), ("path", false)] {
                assert_eq!(plan.stream_name(name), stream, "{name}");
            }
            assert!(!plan.stream_name("service_nam") && !plan.stream_name(""));
            let answer = |fold: bool| {
                let mut total = Acc::default();
                for rows in &parts {
                    let mut acc = Acc::default();
                    for g in ["a", "b"] {
                        acc.group(std::iter::once(("g", g)));
                    }
                    acc.unmapped = true;
                    for &(fp, t, id, v, foldable) in rows {
                        let group = (id % 2) as u32;
                        if fold {
                            let row = Pending {
                                id,
                                group,
                                t,
                                v,
                                foldable,
                            };
                            acc.hold(&plan, fp, row, None);
                        } else {
                            let slot = acc.identity_slot_in(id, |_| group);
                            acc.push(slot, t, v, None);
                        }
                    }
                    acc.end_run(&plan, None);
                    total.merge(acc);
                }
                let kept = total.collapsed.series.len();
                let input = RangeInput {
                    series: Vec::new(),
                    collapsed: total.collapsed,
                };
                let Value::Matrix(m) =
                    parquetry_eval::evaluate(&expr, &params, vec![input]).unwrap()
                else {
                    panic!("a matrix")
                };
                let bits: Vec<Vec<(i64, u64)>> = m
                    .iter()
                    .map(|s| s.points.iter().map(|p| (p.0, p.1.to_bits())).collect())
                    .collect();
                (bits, kept)
            };
            let (want, all) = answer(false);
            let (got, kept) = answer(true);
            assert_eq!(want.len(), 2);
            assert_eq!(got, want, "{op}");
            // Many rows folded, not all.
            assert!(kept > 0 && kept * 4 < all * 3, "{op}: {kept} of {all} kept");
        }
    }

    #[test]
    fn metadata_named_like_a_stream_label_is_extracted() {
        let stream = Labels::from_pairs([("app", "api"), ("trace_id", "stream")]);
        let l = merged(&stream, [("trace_id", "meta"), ("user", "u1")].into_iter());
        assert_eq!(
            l,
            Labels::from_pairs([
                ("app", "api"),
                ("trace_id", "stream"),
                ("trace_id_extracted", "meta"),
                ("user", "u1"),
            ])
        );
    }

    #[test]
    fn metadata_pairs_are_what_merging_adds() {
        let stream = Labels::from_pairs([("app", "api"), ("trace_id", "stream")]);
        let mut own = Vec::new();
        let mut scratch = Vec::new();
        for extra in [
            vec![("trace_id", "meta"), ("user", "u1")],
            // The first of a name stays, renamed or not; an empty value is a pair too.
            vec![
                ("user", "u1"),
                ("user", "u2"),
                ("trace_id", "a"),
                ("trace_id", "b"),
            ],
            vec![
                ("trace_id_extracted", "x"),
                ("trace_id", "y"),
                ("empty", ""),
            ],
            vec![("app", "again")],
        ] {
            assert!(metadata_pairs(&stream, extra.iter().copied(), &mut own));
            let whole = merged(&stream, extra.iter().copied());
            let split = identity(stream.iter().map(pair), &mut scratch)
                .wrapping_add(identity(own.iter().map(|(n, v)| (&**n, *v)), &mut scratch));
            assert_eq!(
                split,
                identity(whole.iter().map(pair), &mut scratch),
                "{extra:?}"
            );
            let mut names: Vec<&str> = stream
                .iter()
                .map(|l| l.name.as_str())
                .chain(own.iter().map(|(n, _)| &**n))
                .collect();
            names.sort_unstable();
            assert!(
                names
                    .iter()
                    .copied()
                    .eq(whole.iter().map(|l| l.name.as_str()))
            );
        }
        // Names that may carry a pipeline error are left to the whole set.
        assert!(!metadata_pairs(
            &stream,
            [("__error__", "x")].into_iter(),
            &mut own
        ));
        assert!(!metadata_pairs(
            &stream,
            [("a", "b"), ("__preserve_error__", "true")].into_iter(),
            &mut own
        ));
    }
}
