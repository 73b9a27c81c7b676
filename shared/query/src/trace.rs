//! Query stages as `tracing` spans, and their timings for the slow-query log.
//!
//! Every query runs through the same five stages: **plan** (LogQL parsing, object and stream
//! selection, the DataFusion plan), **scan** (the Parquet read), **pipeline** (the log pipeline
//! over the rows read), **eval** (metric evaluation over the sample series) and **encode** (the
//! JSON answer). Each stage is a span (`plan`, `scan`, …) under whatever span is current, the
//! HTTP request's in the server. The time spent in each is also added to the request's
//! [`StageTimings`], when the caller runs the request inside [`StageTimings::scope`], so one
//! log line can carry every stage's figure whatever the subscriber's span settings are.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures::FutureExt;
use tracing::{Instrument, Span};

/// A stage of a query, in the order a query runs them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// Parsing the request and choosing objects and streams.
    Plan,
    /// Reading rows from storage.
    Scan,
    /// Running the log pipeline on entries.
    Pipeline,
    /// Evaluating the metric expression.
    Eval,
    /// Writing the response.
    Encode,
}

impl Stage {
    /// Every stage, in order.
    pub const ALL: [Stage; 5] = [
        Stage::Plan,
        Stage::Scan,
        Stage::Pipeline,
        Stage::Eval,
        Stage::Encode,
    ];

    /// The span's name and the slow-query log's field name.
    pub fn name(self) -> &'static str {
        match self {
            Stage::Plan => "plan",
            Stage::Scan => "scan",
            Stage::Pipeline => "pipeline",
            Stage::Eval => "eval",
            Stage::Encode => "encode",
        }
    }

    /// A new span for this stage, a child of the current span. Span names must be constants,
    /// hence one macro call per stage.
    pub fn span(self) -> Span {
        match self {
            Stage::Plan => tracing::info_span!("plan"),
            Stage::Scan => tracing::info_span!("scan"),
            Stage::Pipeline => tracing::info_span!("pipeline"),
            Stage::Eval => tracing::info_span!("eval"),
            Stage::Encode => tracing::info_span!("encode"),
        }
    }
}

/// Wall time per stage of one request. A stage that runs several times (a log query that
/// fetches again when the pipeline drops rows, one scan per range aggregation) adds up.
#[derive(Debug, Default)]
pub struct StageTimings {
    nanos: [AtomicU64; 5],
}

tokio::task_local! {
    static CURRENT: Arc<StageTimings>;
}

impl StageTimings {
    /// Runs `fut` with `self` as the request's timings: stages awaited inside it add to them.
    pub fn scope<F: Future>(self: Arc<Self>, fut: F) -> impl Future<Output = F::Output> {
        CURRENT.scope(self, fut)
    }

    /// The timings of the request being served on this task, if any.
    pub fn current() -> Option<Arc<StageTimings>> {
        CURRENT.try_with(Arc::clone).ok()
    }

    /// Adds `elapsed` to `stage`'s time.
    pub fn add(&self, stage: Stage, elapsed: Duration) {
        let ns = u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX);
        self.nanos[stage as usize].fetch_add(ns, Ordering::Relaxed);
    }

    /// The time spent in `stage` so far.
    pub fn get(&self, stage: Stage) -> Duration {
        Duration::from_nanos(self.nanos[stage as usize].load(Ordering::Relaxed))
    }
}

/// Adds `elapsed` to the current request's `stage`, if a request is being timed.
pub fn record(stage: Stage, elapsed: Duration) {
    if let Some(t) = StageTimings::current() {
        t.add(stage, elapsed);
    }
}

/// Awaits `fut` inside `stage`'s span and adds its wall time to the request's timings.
///
/// A plain function returning combinators rather than an `async fn`: a generic `async fn`
/// wrapper around a future that borrows makes the caller's future fail the `Send` check
/// axum's handlers need ("implementation of `Send` is not general enough").
pub fn stage<F: Future>(stage: Stage, fut: F) -> impl Future<Output = F::Output> {
    let started = Instant::now();
    fut.instrument(stage.span()).map(move |out| {
        record(stage, started.elapsed());
        out
    })
}

/// Runs `f` synchronously inside `stage`'s span and adds its time to the request's timings.
pub fn in_stage<T>(stage: Stage, f: impl FnOnce() -> T) -> T {
    let started = Instant::now();
    let out = stage.span().in_scope(f);
    record(stage, started.elapsed());
    out
}

/// Runs `f` on a blocking thread inside `stage`'s span. The span is created here, so it is a
/// child of the caller's span even though the thread has no span of its own; the wall time,
/// queueing for a blocking thread included, goes to the request's timings.
pub async fn blocking<T, F>(stage: Stage, f: F) -> Result<T, tokio::task::JoinError>
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    let started = Instant::now();
    let span = stage.span();
    let out = tokio::task::spawn_blocking(move || span.in_scope(f)).await;
    record(stage, started.elapsed());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn stages_add_to_the_scoped_timings_only() {
        let timings = Arc::new(StageTimings::default());
        timings
            .clone()
            .scope(async {
                stage(Stage::Scan, tokio::time::sleep(Duration::from_millis(5))).await;
                stage(Stage::Scan, tokio::time::sleep(Duration::from_millis(5))).await;
                let n = blocking(Stage::Eval, || {
                    std::thread::sleep(Duration::from_millis(5));
                    7
                })
                .await;
                assert_eq!(n.ok(), Some(7));
                in_stage(Stage::Encode, || {
                    std::thread::sleep(Duration::from_millis(2))
                });
            })
            .await;
        assert!(timings.get(Stage::Scan) >= Duration::from_millis(10));
        assert!(timings.get(Stage::Eval) >= Duration::from_millis(5));
        assert!(timings.get(Stage::Encode) >= Duration::from_millis(2));
        assert_eq!(timings.get(Stage::Plan), Duration::ZERO);
        assert_eq!(timings.get(Stage::Pipeline), Duration::ZERO);
        // Outside a scope nothing is recorded and nothing fails.
        stage(Stage::Plan, async {}).await;
        assert!(StageTimings::current().is_none());
    }
}
