//! What bounds one query's work: cancellation when its caller stops waiting, and a budget for
//! the bytes it produces.
//!
//! A timeout drops the query's future, which cancels everything async (DataFusion's scan
//! tasks, our partition tasks in a `JoinSet`). Blocking work — the per-entry pipeline on a
//! blocking thread — cannot be dropped, so it polls a flag the dropped future raised.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use crate::QueryError;

/// Held by the query's future; raises the flag when dropped.
#[derive(Debug)]
pub(crate) struct CancelOnDrop(Arc<AtomicBool>);

/// Seen by blocking work.
#[derive(Debug, Clone)]
pub(crate) struct Cancelled(Arc<AtomicBool>);

pub(crate) fn cancellation() -> (CancelOnDrop, Cancelled) {
    let flag = Arc::new(AtomicBool::new(false));
    (CancelOnDrop(flag.clone()), Cancelled(flag))
}

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

impl Cancelled {
    pub(crate) fn check(&self) -> Result<(), QueryError> {
        if self.0.load(Ordering::Relaxed) {
            Err(QueryError::Internal("query cancelled".into()))
        } else {
            Ok(())
        }
    }
}

/// `limits_config.max_query_response_size`, shared by the parallel parts of one query.
#[derive(Debug)]
pub(crate) struct OutputBudget {
    limit: u64,
    used: AtomicU64,
}

impl OutputBudget {
    /// `limit` 0 is no limit.
    pub(crate) fn new(limit: u64) -> Arc<OutputBudget> {
        Arc::new(OutputBudget {
            limit,
            used: AtomicU64::new(0),
        })
    }

    /// Counts `bytes` more output; fails once the total passes the limit.
    pub(crate) fn spend(&self, bytes: usize) -> Result<(), QueryError> {
        if self.limit == 0 {
            return Ok(());
        }
        let used = self.used.fetch_add(bytes as u64, Ordering::Relaxed) + bytes as u64;
        if used > self.limit {
            return Err(QueryError::BadRequest(format!(
                "the query result is larger than the limit of {} bytes \
                 (limits_config.max_query_response_size): lower the query's limit, narrow its \
                 selector or time range, or produce shorter lines and labels",
                self.limit
            )));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dropping_the_guard_cancels() {
        let (guard, seen) = cancellation();
        assert!(seen.check().is_ok());
        drop(guard);
        assert!(seen.check().is_err());
    }

    #[test]
    fn budget_fails_past_its_limit_only() {
        let b = OutputBudget::new(10);
        assert!(b.spend(6).is_ok());
        assert!(b.spend(4).is_ok());
        let err = b.spend(1).unwrap_err().to_string();
        assert!(err.contains("max_query_response_size"), "{err}");
        assert!(OutputBudget::new(0).spend(usize::MAX).is_ok());
    }
}
