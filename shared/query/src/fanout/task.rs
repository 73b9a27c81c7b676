//! A leaf task: what a leaf is asked to compute, in a form that travels as JSON (a Lambda
//! event), and how a leaf computes it.

use serde::{Deserialize, Serialize};

use super::wire;
use crate::logs::{Direction, LogQuery};
use crate::metric::MetricQuery;
use crate::{QueryEngine, QueryError, Result};

/// One leaf of a query: the whole query, restricted to `streams`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LeafTask {
    /// Tenant whose objects the leaf reads.
    pub tenant: String,
    /// The query's canonical LogQL text (printing and parsing again gives an equal tree).
    pub query: String,
    /// Fingerprints of the streams this leaf owns.
    pub streams: Vec<u64>,
    /// Log or metric, with the query's parameters.
    #[serde(flatten)]
    pub kind: LeafKind,
}

/// The query's parameters besides its text.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum LeafKind {
    /// A log query's parameters ([`LogQuery`]); `backward` is the default direction.
    #[allow(missing_docs)]
    Log {
        start: i64,
        end: i64,
        limit: usize,
        backward: bool,
        max_response_bytes: u64,
    },
    /// A metric query's parameters ([`MetricQuery`]).
    #[allow(missing_docs)]
    Metric {
        start: i64,
        end: i64,
        step: i64,
        instant: bool,
        max_series: usize,
        max_response_bytes: u64,
        /// The root sums count-like samples, so the leaf may fold lines into step cells.
        /// Absent from a root that predates the fold (it counts samples): during a rolling
        /// upgrade such a root still gets one sample per line from a newer leaf, and an older
        /// leaf's per-line samples sum correctly at a newer root.
        #[serde(default)]
        fold_cells: bool,
    },
}

impl LeafTask {
    pub(crate) fn log(q: &LogQuery, streams: Vec<u64>) -> LeafTask {
        LeafTask {
            tenant: q.tenant.clone(),
            query: q.expr.to_string(),
            streams,
            kind: LeafKind::Log {
                start: q.start,
                end: q.end,
                limit: q.limit,
                backward: q.direction == Direction::Backward,
                max_response_bytes: q.max_response_bytes,
            },
        }
    }

    pub(crate) fn metric(q: &MetricQuery, streams: Vec<u64>) -> LeafTask {
        LeafTask {
            tenant: q.tenant.clone(),
            query: q.expr.to_string(),
            streams,
            kind: LeafKind::Metric {
                start: q.start,
                end: q.end,
                step: q.step,
                instant: q.instant,
                max_series: q.max_series,
                max_response_bytes: q.max_response_bytes,
                fold_cells: true,
            },
        }
    }

    /// Runs this task on `engine` (restricted to the task's streams) and returns the partial
    /// result in the [`wire`] form.
    pub async fn run(self, engine: &QueryEngine) -> Result<bytes::Bytes> {
        let started = std::time::Instant::now();
        let expr = parquetry_logql::parse_expr_unvalidated(&self.query)
            .map_err(|e| QueryError::BadRequest(e.to_string()))?;
        let mut leaf = engine.leaf_engine(&self.streams);
        let mut partial = match (self.kind, expr) {
            (
                LeafKind::Log {
                    start,
                    end,
                    limit,
                    backward,
                    max_response_bytes,
                },
                parquetry_logql::Expr::Log(expr),
            ) => {
                let q = LogQuery {
                    tenant: self.tenant,
                    expr,
                    start,
                    end,
                    limit,
                    direction: if backward {
                        Direction::Backward
                    } else {
                        Direction::Forward
                    },
                    interval_ns: None,
                    max_response_bytes,
                };
                // A leaf in another process meets damaged pages itself: it leaves them out
                // as a whole query does, and its warnings travel in its stats.
                let (entries, stats) = leaf
                    .checking_damage(
                        &q.tenant,
                        std::slice::from_ref(&q.expr.selector),
                        q.start,
                        q.end,
                        || leaf.log_entries(&q),
                    )
                    .await?;
                wire::Partial {
                    stats,
                    result: wire::PartialResult::Log(entries),
                }
            }
            (
                LeafKind::Metric {
                    start,
                    end,
                    step,
                    instant,
                    max_series,
                    max_response_bytes,
                    fold_cells,
                },
                parquetry_logql::Expr::Sample(expr),
            ) => {
                leaf.fold_cells = fold_cells;
                let q = MetricQuery {
                    tenant: self.tenant,
                    expr,
                    start,
                    end,
                    step,
                    instant,
                    max_series,
                    max_response_bytes,
                };
                let (start, end) = q.scan_range();
                let (inputs, stats) = leaf
                    .checking_damage(&q.tenant, &q.selectors(), start, end, || async {
                        let mut stats = crate::stats::QueryStats::default();
                        let inputs = leaf.metric_inputs(&q, None, &mut stats).await?;
                        Ok((inputs, stats))
                    })
                    .await?;
                wire::Partial {
                    stats,
                    result: wire::PartialResult::Metric(inputs),
                }
            }
            _ => {
                return Err(QueryError::BadRequest(
                    "leaf task: the query's kind does not match its parameters".into(),
                ));
            }
        };
        // One leaf answered, in this long: the root counts leaves that ran (a leaf split for
        // size is two) and prices the ones billed apart (`Transport::bills_leaves`).
        partial.stats.cost.leaves = 1;
        partial.stats.exec_time_s = started.elapsed().as_secs_f64();
        tokio::task::spawn_blocking(move || wire::encode(&partial))
            .await
            .map_err(|e| QueryError::Internal(format!("leaf encode task failed: {e}")))?
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn task_json_round_trips() {
        let task = LeafTask {
            tenant: "t".into(),
            query: r#"sum(rate({app="a"}[1m]))"#.into(),
            streams: vec![u64::MAX, 7],
            kind: LeafKind::Metric {
                start: 1,
                end: 2,
                step: 3,
                instant: false,
                max_series: 500,
                max_response_bytes: 0,
                fold_cells: true,
            },
        };
        let json = serde_json::to_string(&task).unwrap();
        assert!(json.contains(r#""kind":"metric""#), "{json}");
        assert_eq!(serde_json::from_str::<LeafTask>(&json).unwrap(), task);
        // A root from before the fold sends no flag: its leaves keep one sample per line.
        let old = json.replace(r#","fold_cells":true"#, "");
        assert_ne!(old, json);
        let LeafKind::Metric { fold_cells, .. } =
            serde_json::from_str::<LeafTask>(&old).unwrap().kind
        else {
            panic!("a metric task")
        };
        assert!(!fold_cells);
    }
}
