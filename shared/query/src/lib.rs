//! Query execution: LogQL planned onto Apache DataFusion over the stored Parquet objects.
//!
//! A query runs in three steps, each narrowing what the next one reads:
//! 1. **Objects** — the key layout prunes by tenant, day, partition and time from a LIST alone.
//! 2. **Streams** — the stream catalogs in the objects' footers are matched against the
//!    selector, so only objects holding a matching stream remain, each with the exact set of
//!    stream fingerprints to read.
//! 3. **Rows** — a DataFusion plan over just those objects ([`table::LogTable`]) with the
//!    stream, time and line-filter predicates pushed into the Parquet scan, so row groups and
//!    pages are skipped by statistics and line bytes are decoded only for rows that pass the
//!    cheap predicates. Log queries end in a top-k by time, never a full sort.
//!
//! Metadata endpoints (`labels`, `series`, `index/stats`) stop after step 2 and never read a
//! line.

mod dedup;
pub mod deletes;
pub mod detected;
mod limits;
pub mod logs;
pub mod metadata;
pub mod metric;
pub mod patterns;
pub mod pushdown;
pub mod select;
pub mod stats;
pub mod table;

use std::sync::Arc;

use datafusion::execution::runtime_env::{RuntimeEnv, RuntimeEnvBuilder};
use parquetry_store::Store;

pub use logs::{Direction, LogQuery, LogResult, ResultEntry};
pub use metric::{MetricQuery, MetricResult};
pub use parquetry_eval::{Sample, Series, Value};
pub use stats::QueryStats;

/// Errors a query can end with. The API layer maps them to HTTP statuses in one place.
#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    /// The query is valid LogQL but uses something this engine does not evaluate yet.
    #[error("{0}")]
    Unsupported(String),
    /// The query is well-formed but not acceptable (limits, semantics).
    #[error("{0}")]
    BadRequest(String),
    #[error("storage: {0}")]
    Store(#[from] parquetry_store::StoreError),
    #[error("execution: {0}")]
    DataFusion(datafusion::error::DataFusionError),
    /// A bug or an environment failure, not the caller's fault.
    #[error("internal: {0}")]
    Internal(String),
    #[error("arrow: {0}")]
    Arrow(#[from] arrow::error::ArrowError),
}

impl From<datafusion::error::DataFusionError> for QueryError {
    fn from(e: datafusion::error::DataFusionError) -> Self {
        use datafusion::error::DataFusionError;
        match e.find_root() {
            // The memory pool said no: the query is too big for `query_range.max_memory`, not
            // broken, and the caller can act on it.
            DataFusionError::ResourcesExhausted(what) => QueryError::BadRequest(format!(
                "the query needs more memory than query_range.max_memory allows ({what}): \
                 narrow the selector or the time range"
            )),
            _ => QueryError::DataFusion(e),
        }
    }
}

pub type Result<T, E = QueryError> = std::result::Result<T, E>;

/// The query side of Parquetry: cheap to clone, shared by every request.
#[derive(Clone, Debug)]
pub struct QueryEngine {
    store: Arc<Store>,
    /// One memory pool and object-store registry for every query of the process.
    runtime: Arc<RuntimeEnv>,
}

impl QueryEngine {
    /// An engine without a memory limit.
    pub fn new(store: Arc<Store>) -> Self {
        Self::with_memory_limit(store, 0)
    }

    /// An engine whose queries together hold at most `max_memory` bytes in sorts and
    /// aggregations (0: no limit).
    pub fn with_memory_limit(store: Arc<Store>, max_memory: u64) -> Self {
        let mut builder = RuntimeEnvBuilder::new();
        if max_memory > 0 {
            builder =
                builder.with_memory_limit(usize::try_from(max_memory).unwrap_or(usize::MAX), 1.0);
        }
        // Building a runtime env only fails on a bad disk-manager setting, which we never make;
        // fall back to the default one rather than refuse to start.
        let runtime = builder.build_arc().unwrap_or_default();
        if let Ok(url) =
            datafusion::execution::object_store::ObjectStoreUrl::parse(table::STORE_URL)
        {
            runtime.register_object_store(url.as_ref(), store.object_store());
        }
        QueryEngine { store, runtime }
    }

    pub(crate) fn runtime(&self) -> Arc<RuntimeEnv> {
        self.runtime.clone()
    }

    pub fn store(&self) -> &Arc<Store> {
        &self.store
    }
}
