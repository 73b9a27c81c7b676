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
// Non-test code never panics on a `Result` or `Option`: errors are typed and returned.
#![cfg_attr(not(test), warn(clippy::unwrap_used, clippy::expect_used))]

mod blocks;
pub mod cost;
mod dedup;
pub mod deletes;
pub mod detected;
pub mod fanout;
mod limits;
pub mod logs;
pub mod metadata;
pub mod metric;
mod named;
mod newest;
pub mod patterns;
pub mod pushdown;
pub mod select;
pub mod stats;
pub mod table;
pub mod trace;

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
    /// The storage layer failed.
    #[error("storage: {0}")]
    Store(#[from] parquetry_store::StoreError),
    /// The DataFusion scan failed.
    #[error("execution: {0}")]
    DataFusion(datafusion::error::DataFusionError),
    /// A bug or an environment failure, not the caller's fault.
    #[error("internal: {0}")]
    Internal(String),
    /// An Arrow operation on scanned rows failed.
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

impl QueryError {
    /// Whether stored bytes failed to decode (a damaged data page), as opposed to a store
    /// that failed to deliver them, a limit or a bad query: only then can leaving an object
    /// out help. Any object-store or I/O error in the chain says the store failed.
    pub(crate) fn is_undecodable_data(&self) -> bool {
        let root: &(dyn std::error::Error + 'static) = match self {
            QueryError::DataFusion(e) => e,
            QueryError::Arrow(e) => e,
            _ => return false,
        };
        let mut decode = false;
        let mut cur = Some(root);
        while let Some(e) = cur {
            if e.is::<object_store::Error>() || e.is::<std::io::Error>() {
                return false;
            }
            if let Some(p) = e.downcast_ref::<datafusion::parquet::errors::ParquetError>() {
                decode |= !matches!(p, datafusion::parquet::errors::ParquetError::External(_));
            }
            if let Some(a) = e.downcast_ref::<arrow::error::ArrowError>() {
                use arrow::error::ArrowError;
                decode |= !matches!(
                    a,
                    ArrowError::ExternalError(_)
                        | ArrowError::IoError(..)
                        | ArrowError::MemoryError(_)
                );
            }
            cur = e.source();
        }
        decode
    }
}

/// Bytes of objects a query checks page by page after a decode failure it cannot place.
const UNDECODABLE_CHECK_BUDGET: u64 = 1 << 30;

impl QueryEngine {
    /// After a scan could not decode stored bytes and did not say whose: checks the objects of
    /// `tenant` in `[start, end)` whose partitions the query's `selectors` may read, page by
    /// page, and leaves out the ones that fail (see
    /// [`Store::find_undecodable`]). Whether any is now left out (found, or known already: a
    /// concurrent leaf of the same query may have found it first), i.e. whether running the query
    /// again can answer.
    pub(crate) async fn quarantine_undecodable(
        &self,
        tenant: &str,
        selectors: &[Vec<parquetry_model::Matcher>],
        start: i64,
        end: i64,
    ) -> Result<bool> {
        // By key, not through the stream catalogs: an object marked a moment ago by another
        // leaf of the same query must still count as found.
        let objects = self
            .store()
            .list(tenant, start, end, self.partition_filter(selectors))
            .await?;
        let found = self
            .store()
            .find_undecodable(objects, UNDECODABLE_CHECK_BUDGET)
            .await?;
        Ok(!found.is_empty())
    }

    /// Runs `run`; when it fails to decode stored bytes without saying whose, leaves out the
    /// damaged objects of `tenant` in `[start, end)` that `selectors` may read
    /// ([`QueryEngine::quarantine_undecodable`]) and runs it once more, so the answer carries
    /// a warning instead of failing.
    pub(crate) async fn checking_damage<T, Fut>(
        &self,
        tenant: &str,
        selectors: &[Vec<parquetry_model::Matcher>],
        start: i64,
        end: i64,
        run: impl Fn() -> Fut,
    ) -> Result<T>
    where
        Fut: Future<Output = Result<T>>,
    {
        match run().await {
            Err(e) if e.is_undecodable_data() => {
                if self
                    .quarantine_undecodable(tenant, selectors, start, end)
                    .await?
                {
                    run().await
                } else {
                    Err(e)
                }
            }
            r => r,
        }
    }
}

/// The query engine's result.
pub type Result<T, E = QueryError> = std::result::Result<T, E>;

/// The query side of Parquetry: cheap to clone, shared by every request.
#[derive(Clone, Debug)]
pub struct QueryEngine {
    store: Arc<Store>,
    /// One memory pool and metadata cache for every query of the process.
    runtime: Arc<RuntimeEnv>,
    /// Scan partitions per query (`query_range.parallelism`; the core count when unset).
    parallelism: usize,
    /// Memory a time block of a metric range query should hold
    /// (`query_range.time_block_memory`, see `blocks`; 0: never split).
    time_block_memory: u64,
    /// The shortest time block in lookbacks (`query_range.time_block_min_lookbacks`).
    time_block_min_lookbacks: u32,
    /// What [`cost::CostStats`] prices requests and compute at.
    prices: cost::Prices,
    /// How log and metric queries are split into leaves (off by default).
    fanout: fanout::FanoutSettings,
    /// Set on a leaf's engine: only these stream fingerprints are selected.
    only_streams: Option<Arc<std::collections::HashSet<u64>>>,
    /// Whether metric scans fold count-like samples into step cells (see `metric`). Off only
    /// on a leaf whose root did not ask for it: a root from before the fold counts samples.
    fold_cells: bool,
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
        QueryEngine {
            store,
            runtime,
            parallelism: std::thread::available_parallelism().map_or(1, |n| n.get()),
            time_block_memory: parquetry_model::config::QueryRangeConfig::default()
                .time_block_memory
                .0,
            time_block_min_lookbacks: parquetry_model::config::QueryRangeConfig::default()
                .time_block_min_lookbacks,
            prices: cost::Prices::default(),
            fanout: fanout::FanoutSettings::default(),
            only_streams: None,
            fold_cells: true,
        }
    }

    /// An engine set up from the `query_range` block: memory pool, parallelism, prices.
    pub fn configured(store: Arc<Store>, c: &parquetry_model::config::QueryRangeConfig) -> Self {
        // Inside Lambda the function's own memory is what its GB-seconds are billed on.
        let lambda_mb = std::env::var("AWS_LAMBDA_FUNCTION_MEMORY_SIZE")
            .ok()
            .and_then(|v| v.parse::<u64>().ok());
        Self::with_memory_limit(store, c.max_memory.0)
            .with_parallelism(c.parallelism)
            .with_time_blocks(c.time_block_memory.0, c.time_block_min_lookbacks)
            .with_prices(cost::Prices {
                s3_get_per_1000: c.cost_s3_get_per_1000,
                lambda_gb_second: c.cost_lambda_gb_second,
                lambda_memory_bytes: lambda_mb.map_or(c.cost_lambda_memory.0, |mb| mb << 20),
            })
            .with_fanout(fanout::FanoutSettings::from_config(c))
    }

    /// Runs each query's scans in `n` partitions (0: one per core).
    pub fn with_parallelism(mut self, n: usize) -> Self {
        if n > 0 {
            self.parallelism = n;
        }
        self
    }

    /// Evaluates metric range queries that hold something per line in time blocks holding
    /// about `memory` bytes each (0: never), each at least `min_lookbacks` of the query's
    /// longest range long.
    pub fn with_time_blocks(mut self, memory: u64, min_lookbacks: u32) -> Self {
        self.time_block_memory = memory;
        self.time_block_min_lookbacks = min_lookbacks;
        self
    }

    /// Prices for the cost estimate in every query's stats.
    pub fn with_prices(mut self, prices: cost::Prices) -> Self {
        self.prices = prices;
        self
    }

    pub(crate) fn runtime(&self) -> Arc<RuntimeEnv> {
        self.runtime.clone()
    }

    pub(crate) fn parallelism(&self) -> usize {
        self.parallelism
    }

    pub(crate) fn prices(&self) -> &cost::Prices {
        &self.prices
    }

    /// A runtime sharing the process's memory pool and caches whose object store counts
    /// what one query reads into `counters`.
    pub(crate) fn counted_runtime(&self, counters: &Arc<cost::IoCounters>) -> Arc<RuntimeEnv> {
        let registry =
            Arc::new(datafusion::execution::object_store::DefaultObjectStoreRegistry::new());
        let runtime = RuntimeEnv {
            object_store_registry: registry,
            ..RuntimeEnv::clone(&self.runtime)
        };
        if let Ok(url) =
            datafusion::execution::object_store::ObjectStoreUrl::parse(table::STORE_URL)
        {
            runtime.register_object_store(
                url.as_ref(),
                Arc::new(cost::CountingStore::new(
                    self.store.object_store(),
                    counters.clone(),
                )),
            );
        }
        Arc::new(runtime)
    }

    /// The store queries read.
    pub fn store(&self) -> &Arc<Store> {
        &self.store
    }
}

#[cfg(test)]
mod tests {
    use datafusion::error::DataFusionError;
    use datafusion::parquet::errors::ParquetError;

    use super::QueryError;

    #[test]
    fn only_decode_failures_send_a_query_looking_for_damaged_objects() {
        let decode = QueryError::from(DataFusionError::ParquetError(Box::new(
            ParquetError::General("Required field type is missing".into()),
        )));
        assert!(decode.is_undecodable_data());
        let utf8 = QueryError::Arrow(arrow::error::ArrowError::ParseError("invalid utf-8".into()));
        assert!(utf8.is_undecodable_data());
        // The store failed to deliver: retrying elsewhere is the caller's business.
        let fetch = QueryError::from(DataFusionError::ParquetError(Box::new(
            ParquetError::External(Box::new(object_store::Error::NotFound {
                path: "v1/x".into(),
                source: "gone".into(),
            })),
        )));
        assert!(!fetch.is_undecodable_data());
        let io = QueryError::from(DataFusionError::ObjectStore(Box::new(
            object_store::Error::Generic {
                store: "S3",
                source: "timeout".into(),
            },
        )));
        assert!(!io.is_undecodable_data());
        assert!(!QueryError::BadRequest("no".into()).is_undecodable_data());
    }
}
