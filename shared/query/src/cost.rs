//! What a query cost in storage requests, and that cost priced.
//!
//! Every scan of a query reads its objects through a [`CountingStore`] of its own, so the
//! figures are the query's alone even while other queries run: GET requests as S3 would see
//! them (ranges are coalesced exactly as `object_store` coalesces them for S3), bytes fetched,
//! objects opened. Prices come from `query_range` in the configuration (AWS list prices by
//! default) and turn the figures into an estimate of what the query would cost as one Lambda
//! invocation reading S3.

use std::collections::HashSet;
use std::fmt;
use std::ops::Range;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use object_store::path::Path;
use object_store::{GetOptions, GetResult, ObjectStore};

/// Prices used for [`CostStats::estimated_cost_usd`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Prices {
    /// US dollars per 1,000 GET requests.
    pub s3_get_per_1000: f64,
    /// US dollars per GB-second of Lambda compute.
    pub lambda_gb_second: f64,
    /// Memory of the function a query would run in, bytes.
    pub lambda_memory_bytes: u64,
}

impl Default for Prices {
    /// AWS list prices (us-east-1, x86): S3 Standard GET $0.0004 per 1,000 requests, Lambda
    /// $0.0000166667 per GB-second; the query function's default memory, 2 GiB.
    fn default() -> Self {
        Prices {
            s3_get_per_1000: 0.0004,
            lambda_gb_second: 0.000_016_666_7,
            lambda_memory_bytes: 2048 << 20,
        }
    }
}

/// Storage figures of one query, and their price.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CostStats {
    /// Objects at least one byte was read from by the scans.
    pub objects_opened: u64,
    /// Row groups the scans decoded (not pruned away by statistics or the index).
    pub row_groups_opened: u64,
    /// GET requests (ranged reads after coalescing).
    pub get_requests: u64,
    /// Bytes those requests returned.
    pub bytes_fetched: u64,
    /// Scan partitions the query's scans ran in (at most `query_range.parallelism`).
    pub partitions: u64,
    /// Leaves that ran for the query (at most `query_range.fanout_leaves`, more when a leaf's
    /// result had to be split for Lambda's response limit; 0 when it ran whole).
    pub leaves: u64,
    /// Consecutive time blocks a metric range query was evaluated in (`blocks`); 0 when it
    /// ran whole.
    pub time_blocks: u64,
    /// Lines a metric scan folded straight into the aggregation above their range
    /// aggregation instead of keeping them as series (series of one line; see
    /// `metric::DirectPlan`).
    pub folded_lines: u64,
    /// Wall time × the function's memory in GB: the root's, plus each leaf's when leaves are
    /// Lambda invocations of their own.
    pub lambda_gb_seconds: f64,
    /// GET requests and GB-seconds at the configured prices, US dollars.
    pub estimated_cost_usd: f64,
}

impl CostStats {
    /// Adds the counted figures of another scan of the same query.
    pub fn add(&mut self, other: &CostStats) {
        self.objects_opened += other.objects_opened;
        self.row_groups_opened += other.row_groups_opened;
        self.get_requests += other.get_requests;
        self.bytes_fetched += other.bytes_fetched;
        self.partitions += other.partitions;
        self.leaves += other.leaves;
        self.time_blocks += other.time_blocks;
        self.folded_lines += other.folded_lines;
        self.lambda_gb_seconds += other.lambda_gb_seconds;
    }

    /// Fills the priced fields from the counted ones and the query's wall time.
    pub fn price(&mut self, prices: &Prices, exec_time_s: f64) {
        let gb = prices.lambda_memory_bytes as f64 / (1u64 << 30) as f64;
        self.lambda_gb_seconds += exec_time_s.max(0.0) * gb;
        self.estimated_cost_usd = self.get_requests as f64 / 1000.0 * prices.s3_get_per_1000
            + self.lambda_gb_seconds * prices.lambda_gb_second;
    }
}

/// Request counters shared by the scans of one query.
#[derive(Debug, Default)]
pub struct IoCounters {
    gets: AtomicU64,
    bytes: AtomicU64,
    row_groups: AtomicU64,
    partitions: AtomicU64,
    objects: Mutex<HashSet<Path>>,
}

impl IoCounters {
    fn get(&self, location: &Path, bytes: u64) {
        self.gets.fetch_add(1, Ordering::Relaxed);
        self.bytes.fetch_add(bytes, Ordering::Relaxed);
        if let Ok(mut seen) = self.objects.lock()
            && !seen.contains(location)
        {
            seen.insert(location.clone());
        }
    }

    pub(crate) fn add_row_groups(&self, n: u64) {
        self.row_groups.fetch_add(n, Ordering::Relaxed);
    }

    pub(crate) fn add_partitions(&self, n: u64) {
        self.partitions.fetch_add(n, Ordering::Relaxed);
    }

    /// The counted figures so far (prices not applied).
    pub fn snapshot(&self) -> CostStats {
        CostStats {
            objects_opened: self.objects.lock().map_or(0, |s| s.len() as u64),
            row_groups_opened: self.row_groups.load(Ordering::Relaxed),
            get_requests: self.gets.load(Ordering::Relaxed),
            bytes_fetched: self.bytes.load(Ordering::Relaxed),
            partitions: self.partitions.load(Ordering::Relaxed),
            ..Default::default()
        }
    }
}

/// An object store that counts the reads going through it. Writes, lists and deletes pass
/// through uncounted: queries make none through this store.
#[derive(Debug)]
pub struct CountingStore {
    inner: Arc<dyn ObjectStore>,
    counters: Arc<IoCounters>,
}

impl CountingStore {
    /// Wraps `inner`, adding every request's figures to `counters`.
    pub fn new(inner: Arc<dyn ObjectStore>, counters: Arc<IoCounters>) -> CountingStore {
        CountingStore { inner, counters }
    }
}

impl fmt::Display for CountingStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Counting({})", self.inner)
    }
}

parquetry_store::delegating_object_store! {
    impl ObjectStore for CountingStore => self.inner;
    delegate {
        put_opts, put_multipart_opts, delete_stream, list, list_with_offset,
        list_with_delimiter, copy_opts,
    }

    async fn get_opts(
        &self,
        location: &Path,
        options: GetOptions,
    ) -> object_store::Result<GetResult> {
        let head = options.head;
        let r = self.inner.get_opts(location, options).await?;
        if !head {
            self.counters.get(location, r.range.end - r.range.start);
        }
        Ok(r)
    }

    async fn get_ranges(
        &self,
        location: &Path,
        ranges: &[Range<u64>],
    ) -> object_store::Result<Vec<Bytes>> {
        // Coalesced the way the S3 client coalesces them, whatever the backend, so a local
        // directory reports the requests S3 would have received.
        object_store::coalesce_ranges(
            ranges,
            |range| async move {
                let opts = GetOptions {
                    range: Some(range.into()),
                    ..Default::default()
                };
                self.get_opts(location, opts).await?.bytes().await
            },
            object_store::OBJECT_STORE_COALESCE_DEFAULT,
        )
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prices_apply_to_requests_and_time() {
        let mut c = CostStats {
            get_requests: 2000,
            ..Default::default()
        };
        let prices = Prices {
            s3_get_per_1000: 0.0004,
            lambda_gb_second: 0.00001,
            lambda_memory_bytes: 2 << 30,
        };
        c.price(&prices, 1.5);
        assert!((c.lambda_gb_seconds - 3.0).abs() < 1e-12);
        assert!((c.estimated_cost_usd - (0.0008 + 0.00003)).abs() < 1e-12);
    }
}
