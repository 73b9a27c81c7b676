//! Query fan-out: a log or metric query cut by stream into leaf tasks, each run by a leaf
//! (in this process or in another Lambda invocation), and their partial results merged.
//!
//! Objects are sorted by stream and every range aggregation reads one stream's entries in one
//! place, so a leaf that owns a set of whole streams computes exactly what the whole query
//! would compute for them:
//! - **Log queries**: each leaf returns its first `limit` entries in the query's direction;
//!   the root keeps the first `limit` of their union, ordered as a single scan orders them
//!   (time, then stream fingerprint, then the leaf's own order).
//! - **Metric queries**: each leaf returns the sample series of every range aggregation for
//!   its streams (already projected onto a `sum by` grouping where the single scan does the
//!   same); the root concatenates series of equal labels and evaluates the whole expression,
//!   so every operator merges exactly.
//!
//! A partial result travels as Arrow IPC ([`wire`]), whichever the transport: the in-process
//! one encodes and decodes as the Lambda one does, so the corpus run with fan-out on checks
//! the wire format too.

mod plan;
pub mod task;
pub mod wire;

use std::collections::HashMap;
use std::sync::Arc;

use parquetry_eval::RangeInput;

use crate::logs::{Direction, KeyedEntry, LogQuery};
use crate::metric::MetricQuery;
use crate::select::Selection;
use crate::stats::QueryStats;
use crate::{QueryEngine, QueryError, Result};

pub use plan::Plan;
pub use task::{LeafKind, LeafTask};

/// How queries are split (`query_range.fanout_*`).
#[derive(Debug, Clone, Default)]
pub struct FanoutSettings {
    /// Most leaves per query; below 2 no query is split.
    pub leaves: usize,
    /// Catalog line bytes per leaf (0: always `leaves`).
    pub target_bytes: u64,
    /// Leaves of one query running at once (0: all).
    pub concurrency: usize,
    /// Where leaves run.
    pub transport: Option<Arc<dyn Transport>>,
}

impl FanoutSettings {
    /// The `query_range.fanout_*` keys, leaves in this process.
    pub fn from_config(c: &parquetry_model::config::QueryRangeConfig) -> Self {
        FanoutSettings {
            leaves: c.fanout_leaves,
            target_bytes: c.fanout_target_bytes.0,
            concurrency: c.fanout_concurrency,
            transport: None,
        }
    }

    fn enabled(&self) -> bool {
        self.leaves > 1
    }
}

/// Runs one leaf task and returns its partial result in the [`wire`] form.
#[async_trait::async_trait]
pub trait Transport: Send + Sync + std::fmt::Debug {
    /// The partial result of `task`, computed against `engine`'s storage.
    async fn run(&self, engine: &QueryEngine, task: LeafTask) -> Result<bytes::Bytes>;

    /// Whether each leaf is billed on its own (a Lambda invocation), so a query's
    /// GB-seconds add the leaves' time to the root's. In-process leaves run inside the
    /// root's time.
    fn bills_leaves(&self) -> bool {
        false
    }
}

/// Leaves run as tasks of this process's runtime.
#[derive(Debug, Default)]
pub struct LocalTransport;

#[async_trait::async_trait]
impl Transport for LocalTransport {
    async fn run(&self, engine: &QueryEngine, task: LeafTask) -> Result<bytes::Bytes> {
        task.run(engine).await
    }
}

impl QueryEngine {
    /// This engine with queries split into leaves as `settings` say.
    pub fn with_fanout(mut self, settings: FanoutSettings) -> Self {
        self.fanout = settings;
        self
    }

    /// The engine a leaf runs on: only `streams` are selected, and nothing is split again.
    pub(crate) fn leaf_engine(&self, streams: &[u64]) -> QueryEngine {
        let mut leaf = self.clone();
        leaf.fanout = FanoutSettings::default();
        leaf.only_streams = Some(Arc::new(streams.iter().copied().collect()));
        leaf
    }

    fn transport(&self) -> Arc<dyn Transport> {
        self.fanout
            .transport
            .clone()
            .unwrap_or_else(|| Arc::new(LocalTransport))
    }
}

/// The leaves of a log query, or `None` when it runs whole.
pub(crate) async fn plan_log(engine: &QueryEngine, q: &LogQuery) -> Result<Option<Plan>> {
    // Thinning keeps an entry by its distance to the last one kept across all streams: a
    // leaf cannot know which that is.
    if !engine.fanout.enabled()
        || engine.only_streams.is_some()
        || q.limit == 0
        || q.interval_ns.is_some_and(|i| i > 0)
    {
        return Ok(None);
    }
    let mut scratch = QueryStats::default();
    let selection = engine
        .select(
            &q.tenant,
            std::slice::from_ref(&q.expr.selector),
            q.start,
            q.end,
            &mut scratch,
        )
        .await?;
    let mut bytes = HashMap::new();
    plan::add_stream_bytes(&selection, q.start, q.end, &mut bytes);
    Ok(Plan::split(&engine.fanout, bytes))
}

/// The leaves of a metric query, or `None` when it runs whole.
pub(crate) async fn plan_metric(
    engine: &QueryEngine,
    q: &MetricQuery,
    selected: Option<&[Selection]>,
) -> Result<Option<Plan>> {
    if !engine.fanout.enabled() || engine.only_streams.is_some() {
        return Ok(None);
    }
    let mut scratch = QueryStats::default();
    let mut bytes = HashMap::new();
    // The same windows `range_samples` selects.
    for ((start, end), selection) in engine.select_windows_in(q, selected, &mut scratch).await? {
        plan::add_stream_bytes(&selection, start, end, &mut bytes);
    }
    Ok(Plan::split(&engine.fanout, bytes))
}

/// Runs every leaf of `plan` through the engine's transport, at most
/// `fanout_concurrency` at once, and returns the decoded partial results in leaf order.
async fn run_leaves(
    engine: &QueryEngine,
    plan: Plan,
    task: impl Fn(Vec<u64>) -> LeafTask,
) -> Result<Vec<wire::Partial>> {
    let n = plan.leaves.len();
    let limit = match engine.fanout.concurrency {
        0 => n,
        c => c.min(n),
    };
    let permits = Arc::new(tokio::sync::Semaphore::new(limit.max(1)));
    let transport = engine.transport();
    let leaf_gb = transport
        .bills_leaves()
        .then(|| engine.prices().lambda_memory_bytes as f64 / (1u64 << 30) as f64);
    // A JoinSet aborts its leaves when dropped: a query that timed out stops them all.
    let mut tasks = tokio::task::JoinSet::new();
    for (i, streams) in plan.leaves.into_iter().enumerate() {
        let (engine, transport, permits) = (engine.clone(), transport.clone(), permits.clone());
        let task = task(streams);
        tasks.spawn(async move {
            let _permit = permits
                .acquire_owned()
                .await
                .map_err(|e| QueryError::Internal(format!("leaf permits: {e}")))?;
            let bytes = transport.run(&engine, task).await?;
            let mut partial = tokio::task::spawn_blocking(move || wire::decode(&bytes))
                .await
                .map_err(|e| QueryError::Internal(format!("leaf decode task failed: {e}")))??;
            partial.stats.cost.lambda_gb_seconds = match leaf_gb {
                Some(gb) => partial.stats.exec_time_s * gb,
                None => 0.0,
            };
            Ok::<_, QueryError>((i, partial))
        });
    }
    let mut done = Vec::with_capacity(n);
    while let Some(t) = tasks.join_next().await {
        done.push(t.map_err(|e| QueryError::Internal(format!("leaf task failed: {e}")))??);
    }
    done.sort_by_key(|(i, _)| *i);
    tracing::debug!(leaves = n, concurrency = limit, "fan-out leaves done");
    Ok(done.into_iter().map(|(_, p)| p).collect())
}

/// Runs a log query as leaves and merges their entries.
pub(crate) async fn run_log(
    engine: &QueryEngine,
    q: &LogQuery,
    plan: Plan,
) -> Result<(Vec<KeyedEntry>, QueryStats)> {
    let partials = run_leaves(engine, plan, |streams| LeafTask::log(q, streams)).await?;
    let mut stats = QueryStats::default();
    let mut entries = Vec::new();
    for p in partials {
        stats.add(&p.stats);
        match p.result {
            wire::PartialResult::Log(e) => entries.extend(e),
            wire::PartialResult::Metric(_) => {
                return Err(QueryError::Internal(
                    "a log leaf answered with samples".into(),
                ));
            }
        }
    }
    // A stream lives in one leaf, which already ordered its entries as a single scan would:
    // a stable sort on (time, stream) keeps that order for the rest of the key.
    match q.direction {
        Direction::Backward => entries.sort_by(|a, b| b.2.ts.cmp(&a.2.ts).then(a.0.cmp(&b.0))),
        Direction::Forward => entries.sort_by(|a, b| a.2.ts.cmp(&b.2.ts).then(a.0.cmp(&b.0))),
    }
    entries.truncate(q.limit);
    Ok((entries, stats))
}

/// Runs the range aggregations of a metric query as leaves and merges their series (equal
/// ones are merged by evaluation, in leaf order).
pub(crate) async fn run_metric(
    engine: &QueryEngine,
    q: &MetricQuery,
    plan: Plan,
    stats: &mut QueryStats,
) -> Result<Vec<RangeInput>> {
    let inputs = q.expr.range_aggregations().len();
    let partials = run_leaves(engine, plan, |streams| LeafTask::metric(q, streams)).await?;
    let mut merged: Vec<RangeInput> = vec![RangeInput::default(); inputs];
    for p in partials {
        stats.add(&p.stats);
        let wire::PartialResult::Metric(leaf_inputs) = p.result else {
            return Err(QueryError::Internal(
                "a metric leaf answered with entries".into(),
            ));
        };
        if leaf_inputs.len() != inputs {
            return Err(QueryError::Internal(format!(
                "a metric leaf answered {} range aggregations, {inputs} expected",
                leaf_inputs.len()
            )));
        }
        for (all, leaf) in merged.iter_mut().zip(leaf_inputs) {
            all.append(leaf);
        }
    }
    Ok(merged)
}
