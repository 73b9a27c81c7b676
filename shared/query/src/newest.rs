//! Newest (or oldest) first: the rows that can be among a log query's first `k`, found from
//! the `timestamp` column alone.
//!
//! Objects are sorted by (stream, timestamp) and their stream catalog lists every stream with
//! its entry count in fingerprint order, so each stream's rows are a known contiguous run whose
//! newest entries sit at its end. One pass reads only the `timestamp` pages of the selected
//! streams' runs (the offset index skips every other page), keeps each stream's `k` best rows
//! inside the time range, and takes the `k`-th best of all objects as the bound: every row that
//! can be among the first `k` is at least that good, and is a candidate. The scan that follows
//! reads only the candidates, through a row selection per object, so `line` and metadata pages
//! are fetched only where a candidate lives.
//!
//! The run layout is checked against each object's row count and row-group statistics of the
//! `stream` column; an object that does not match it makes the caller scan the ordinary way.

use std::collections::HashSet;
use std::sync::Arc;

use arrow::array::AsArray;
use arrow::datatypes::TimestampNanosecondType;
use datafusion::datasource::listing::PartitionedFile;
use datafusion::datasource::physical_plan::ParquetFileReaderFactory;
use datafusion::datasource::physical_plan::parquet::DefaultParquetFileReaderFactory;
use datafusion::datasource::physical_plan::parquet::metadata::DFParquetMetadata;
use datafusion::error::DataFusionError;
use datafusion::execution::cache::cache_manager::FileMetadataCache;
use datafusion::parquet::arrow::ProjectionMask;
use datafusion::parquet::arrow::arrow_reader::{
    ArrowReaderMetadata, ArrowReaderOptions, RowSelection,
};
use datafusion::parquet::arrow::async_reader::{AsyncFileReader, ParquetRecordBatchStreamBuilder};
use datafusion::parquet::errors::ParquetError;
use datafusion::parquet::file::metadata::{PageIndexPolicy, ParquetMetaData};
use datafusion::parquet::file::statistics::Statistics;
use datafusion::physical_plan::metrics::ExecutionPlanMetricsSet;
use futures::StreamExt;
use futures::future::BoxFuture;
use object_store::{ObjectMeta, ObjectStore};
use parquetry_store::schema::{COL_STREAM, COL_TIMESTAMP};
use parquetry_store::{DataObject, StreamCatalog};

use crate::cost::IoCounters;
use crate::select::Selection;
use crate::{QueryError, Result};

/// What the scan of a newest-first query needs to read.
#[derive(Debug)]
pub(crate) struct Candidates {
    /// Per selected object (selection order), the rows to read; `None`: nothing to read there.
    pub(crate) rows: Vec<Option<RowSelection>>,
    /// Every in-range row at least this new (this old, oldest first) is a candidate; `None`
    /// when the candidates are every in-range row of the selected streams.
    pub(crate) bound: Option<i64>,
    /// How many candidates there are.
    pub(crate) count: usize,
    /// Compressed bytes this pass read.
    pub(crate) bytes_scanned: u64,
}

fn parquet_error(e: ParquetError) -> QueryError {
    DataFusionError::from(e).into()
}

/// DataFusion's reader (its byte counting, the query's counted store) as the Parquet
/// stream builder takes it.
struct Reader(Box<dyn AsyncFileReader + Send>);

impl AsyncFileReader for Reader {
    fn get_bytes(
        &mut self,
        range: std::ops::Range<u64>,
    ) -> BoxFuture<'_, datafusion::parquet::errors::Result<bytes::Bytes>> {
        self.0.get_bytes(range)
    }

    fn get_byte_ranges(
        &mut self,
        ranges: Vec<std::ops::Range<u64>>,
    ) -> BoxFuture<'_, datafusion::parquet::errors::Result<Vec<bytes::Bytes>>> {
        self.0.get_byte_ranges(ranges)
    }

    fn get_metadata<'a>(
        &'a mut self,
        options: Option<&'a ArrowReaderOptions>,
    ) -> BoxFuture<'a, datafusion::parquet::errors::Result<Arc<ParquetMetaData>>> {
        self.0.get_metadata(options)
    }
}

/// A row's rank key: larger is better in query order, whatever the direction.
fn key(ts: i64, asc: bool) -> i64 {
    // `!ts` reverses the order without overflow.
    if asc { !ts } else { ts }
}

fn ts_of(key: i64, asc: bool) -> i64 {
    if asc { !key } else { key }
}

/// The object as DataFusion's Parquet scan knows it, so both share the metadata cache entry.
pub(crate) fn object_meta(o: &DataObject) -> ObjectMeta {
    ObjectMeta {
        location: o.path.clone(),
        last_modified: chrono::DateTime::UNIX_EPOCH,
        size: o.size,
        e_tag: None,
        version: None,
    }
}

/// Inputs of one newest-first pass.
pub(crate) struct NewestPass<'a> {
    pub(crate) store: Arc<dyn ObjectStore>,
    pub(crate) cache: Arc<FileMetadataCache>,
    pub(crate) counters: Arc<IoCounters>,
    pub(crate) selection: &'a Selection,
    /// Each selected object's whole catalog (every stream, selected or not).
    pub(crate) catalogs: &'a [Arc<StreamCatalog>],
    pub(crate) start: i64,
    pub(crate) end: i64,
    pub(crate) asc: bool,
    pub(crate) parallelism: usize,
}

/// The best `(key, row)` pairs of one object, and whether any in-range row was left out.
struct ObjectBest {
    rows: Vec<(i64, u64)>,
    total_rows: usize,
    bytes_scanned: u64,
}

impl NewestPass<'_> {
    /// The candidates for the first `k` rows in query order; `None` when an object's layout is
    /// not the one this relies on.
    pub(crate) async fn candidates(&self, k: usize) -> Result<Option<Candidates>> {
        if k == 0 {
            return Ok(None);
        }
        // Each object's selected streams with the best key any of their rows in range can have
        // (from the catalog's time bounds), and the best of those for the object.
        let wanted: Vec<Vec<(u64, i64)>> = self
            .selection
            .objects
            .iter()
            .map(|o| {
                o.streams
                    .iter()
                    .filter(|s| s.min_ts < self.end && s.max_ts >= self.start)
                    .map(|s| {
                        let best = if self.asc {
                            key(s.min_ts.max(self.start), true)
                        } else {
                            key(s.max_ts.min(self.end - 1), false)
                        };
                        (s.fingerprint, best)
                    })
                    .collect()
            })
            .collect();
        let mut order: Vec<(usize, i64)> = wanted
            .iter()
            .enumerate()
            .filter_map(|(i, w)| w.iter().map(|s| s.1).max().map(|best| (i, best)))
            .collect();
        // Most promising objects first: once `k` rows are known, an object (or a stream) whose
        // best possible row is worse than the `k`-th is never read. Objects are time slices
        // (a day, a compaction pass, a push), so most of a long range is skipped this way.
        order.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        let mut per_object: Vec<Option<ObjectBest>> = (0..wanted.len())
            .map(|_| {
                Some(ObjectBest {
                    rows: Vec::new(),
                    total_rows: 0,
                    bytes_scanned: 0,
                })
            })
            .collect();
        let mut keys: Vec<i64> = Vec::new();
        let mut bound: Option<i64> = None;
        // `parallelism` objects at a time, each on its own task: their reads overlap and
        // their decoding spreads over the runtime's threads. A JoinSet aborts its tasks when
        // dropped, so a query that timed out stops here too.
        for chunk in order.chunks(self.parallelism.max(1)) {
            let mut set = tokio::task::JoinSet::new();
            for &(i, best) in chunk {
                if bound.is_some_and(|b| best < b) {
                    continue;
                }
                let o = &self.selection.objects[i];
                let job = ObjectJob {
                    store: self.store.clone(),
                    cache: self.cache.clone(),
                    counters: self.counters.clone(),
                    object: o.object.clone(),
                    catalog: self.catalogs[i].clone(),
                    wanted: wanted[i]
                        .iter()
                        .filter(|s| bound.is_none_or(|b| s.1 >= b))
                        .map(|s| s.0)
                        .collect(),
                    start: self.start,
                    end: self.end,
                    asc: self.asc,
                    k,
                };
                set.spawn(async move { (i, job.run().await) });
            }
            while let Some(r) = set.join_next().await {
                let (i, best) =
                    r.map_err(|e| QueryError::Internal(format!("newest-first task failed: {e}")))?;
                let best = best?;
                if let Some(b) = &best {
                    keys.extend(b.rows.iter().map(|r| r.0));
                }
                per_object[i] = best;
            }
            if keys.len() >= k {
                let (_, kth, _) = keys.select_nth_unstable_by(k - 1, |a, b| b.cmp(a));
                bound = Some(*kth);
            }
        }
        let Some(per_object) = per_object.into_iter().collect::<Option<Vec<_>>>() else {
            return Ok(None);
        };

        let total: usize = per_object.iter().map(|o| o.rows.len()).sum();
        let bytes_scanned = per_object.iter().map(|o| o.bytes_scanned).sum();
        // `total == k` does not mean every row was seen: each object keeps at most its best
        // `k` rows, so one object holding exactly `k` candidates may have left others out. A
        // cut at the k-th key keeps every candidate and tells the caller to widen if needed.
        let bound_key = if total >= k {
            let mut keys: Vec<i64> = per_object
                .iter()
                .flat_map(|o| o.rows.iter().map(|r| r.0))
                .collect();
            let (_, kth, _) = keys.select_nth_unstable_by(k - 1, |a, b| b.cmp(a));
            Some(*kth)
        } else {
            None
        };
        let mut count = 0;
        let rows = per_object
            .into_iter()
            .map(|best| {
                let mut rows: Vec<u64> = best
                    .rows
                    .into_iter()
                    .filter(|(key, _)| bound_key.is_none_or(|b| *key >= b))
                    .map(|(_, row)| row)
                    .collect();
                if rows.is_empty() {
                    return None;
                }
                count += rows.len();
                rows.sort_unstable();
                Some(selection_of(&rows, best.total_rows))
            })
            .collect();
        Ok(Some(Candidates {
            rows,
            bound: bound_key.map(|b| ts_of(b, self.asc)),
            count,
            bytes_scanned,
        }))
    }
}

/// Readers for the scan of candidates: their metadata always carries the page index (from
/// the shared cache, where the first pass left it), so only the pages holding candidates are
/// fetched. DataFusion's own readers ask for the footer alone and load the index only when a
/// predicate can prune pages with it; without the index a row selection still fetches every
/// whole column chunk it touches.
#[derive(Debug)]
pub(crate) struct IndexedReaderFactory {
    store: Arc<dyn ObjectStore>,
    cache: Arc<FileMetadataCache>,
}

impl IndexedReaderFactory {
    pub(crate) fn new(store: Arc<dyn ObjectStore>, cache: Arc<FileMetadataCache>) -> Self {
        IndexedReaderFactory { store, cache }
    }
}

impl ParquetFileReaderFactory for IndexedReaderFactory {
    fn create_reader(
        &self,
        partition_index: usize,
        partitioned_file: PartitionedFile,
        metadata_size_hint: Option<usize>,
        metrics: &ExecutionPlanMetricsSet,
    ) -> datafusion::error::Result<Box<dyn AsyncFileReader + Send>> {
        let meta = partitioned_file.object_meta.clone();
        let inner = DefaultParquetFileReaderFactory::new(self.store.clone()).create_reader(
            partition_index,
            partitioned_file,
            metadata_size_hint,
            metrics,
        )?;
        Ok(Box::new(IndexedReader {
            inner,
            store: self.store.clone(),
            cache: self.cache.clone(),
            meta,
        }))
    }
}

struct IndexedReader {
    inner: Box<dyn AsyncFileReader + Send>,
    store: Arc<dyn ObjectStore>,
    cache: Arc<FileMetadataCache>,
    meta: ObjectMeta,
}

impl AsyncFileReader for IndexedReader {
    fn get_bytes(
        &mut self,
        range: std::ops::Range<u64>,
    ) -> BoxFuture<'_, datafusion::parquet::errors::Result<bytes::Bytes>> {
        self.inner.get_bytes(range)
    }

    fn get_byte_ranges(
        &mut self,
        ranges: Vec<std::ops::Range<u64>>,
    ) -> BoxFuture<'_, datafusion::parquet::errors::Result<Vec<bytes::Bytes>>> {
        self.inner.get_byte_ranges(ranges)
    }

    fn get_metadata<'a>(
        &'a mut self,
        _options: Option<&'a ArrowReaderOptions>,
    ) -> BoxFuture<'a, datafusion::parquet::errors::Result<Arc<ParquetMetaData>>> {
        Box::pin(async move {
            DFParquetMetadata::new(self.store.as_ref(), &self.meta)
                .with_file_metadata_cache(Some(self.cache.clone()))
                .with_page_index_policy(Some(PageIndexPolicy::Optional))
                .fetch_metadata()
                .await
                .map_err(|e| ParquetError::External(Box::new(e)))
        })
    }
}

/// One object's share of a pass, owned so that it can run on any of the runtime's threads.
struct ObjectJob {
    store: Arc<dyn ObjectStore>,
    cache: Arc<FileMetadataCache>,
    counters: Arc<IoCounters>,
    object: DataObject,
    catalog: Arc<StreamCatalog>,
    wanted: HashSet<u64>,
    start: i64,
    end: i64,
    asc: bool,
    k: usize,
}

impl ObjectJob {
    async fn run(self) -> Result<Option<ObjectBest>> {
        let (object, catalog, wanted, k) =
            (&self.object, self.catalog.as_ref(), &self.wanted, self.k);
        let meta = object_meta(object);
        let md = DFParquetMetadata::new(self.store.as_ref(), &meta)
            .with_file_metadata_cache(Some(self.cache.clone()))
            .with_page_index_policy(Some(PageIndexPolicy::Optional))
            .fetch_metadata()
            .await?;
        let Some(runs) = runs(catalog, &md) else {
            tracing::debug!(object = %object.path, "layout not as expected: no newest-first pass");
            return Ok(None);
        };
        let selected: Vec<&Run> = runs.iter().filter(|r| wanted.contains(&r.fp)).collect();
        if selected.is_empty() {
            return Ok(Some(ObjectBest {
                rows: Vec::new(),
                total_rows: 0,
                bytes_scanned: 0,
            }));
        }
        let total_rows = md.file_metadata().num_rows() as usize;
        let schema = md.file_metadata().schema_descr_ptr();
        let Some(ts_col) = schema
            .columns()
            .iter()
            .position(|c| c.path().string() == COL_TIMESTAMP)
        else {
            return Ok(None);
        };
        let selection = RowSelection::from_consecutive_ranges(
            selected
                .iter()
                .map(|r| r.first as usize..(r.first + r.len) as usize),
            total_rows,
        );
        // Row groups holding at least one selected row: the ones this pass decodes.
        let mut opened = 0u64;
        let mut rg_start = 0u64;
        let mut sel = selected.iter().peekable();
        for rg in md.row_groups() {
            let rg_end = rg_start + rg.num_rows() as u64;
            while sel.next_if(|r| r.first + r.len <= rg_start).is_some() {}
            if sel.peek().is_some_and(|r| r.first < rg_end) {
                opened += 1;
            }
            rg_start = rg_end;
        }
        self.counters.add_row_groups(opened);

        let reader_meta = ArrowReaderMetadata::try_new(md.clone(), ArrowReaderOptions::new())
            .map_err(parquet_error)?;
        let metrics = ExecutionPlanMetricsSet::new();
        let reader = DefaultParquetFileReaderFactory::new(self.store.clone()).create_reader(
            0,
            PartitionedFile::new_from_meta(meta),
            None,
            &metrics,
        )?;
        let mut stream =
            ParquetRecordBatchStreamBuilder::new_with_metadata(Reader(reader), reader_meta)
                .with_projection(ProjectionMask::leaves(&schema, [ts_col]))
                .with_row_selection(selection)
                .with_batch_size(64 * 1024)
                .build()
                .map_err(parquet_error)?;
        let mut values: Vec<i64> =
            Vec::with_capacity(selected.iter().map(|r| r.len as usize).sum());
        while let Some(batch) = stream.next().await {
            let batch = batch.map_err(parquet_error)?;
            let ts = batch
                .column(0)
                .as_primitive_opt::<TimestampNanosecondType>()
                .ok_or_else(|| QueryError::Internal("unexpected timestamp column type".into()))?;
            values.extend_from_slice(ts.values());
        }
        if values.len() != selected.iter().map(|r| r.len as usize).sum::<usize>() {
            return Ok(None);
        }

        let mut rows = Vec::new();
        let mut at = 0usize;
        for run in selected {
            let slice = &values[at..at + run.len as usize];
            at += run.len as usize;
            let (a, b) = best_of_run(slice, self.start, self.end, self.asc, k);
            rows.extend((a..b).map(|i| (key(slice[i], self.asc), run.first + i as u64)));
        }
        if rows.len() > k {
            let (_, kth, _) = rows.select_nth_unstable_by(k - 1, |a, b| b.0.cmp(&a.0));
            let kth = kth.0;
            rows.retain(|r| r.0 >= kth);
        }
        let bytes_scanned = metrics
            .clone_inner()
            .sum_by_name("bytes_scanned")
            .map_or(0, |v| v.as_usize() as u64);
        Ok(Some(ObjectBest {
            rows,
            total_rows,
            bytes_scanned,
        }))
    }
}

/// The rows of one stream in an object.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Run {
    fp: u64,
    first: u64,
    len: u64,
}

/// Each stream's run of rows, from the catalog; `None` unless the object's row count and the
/// `stream` statistics of every row group agree with the catalog.
fn runs(catalog: &StreamCatalog, md: &ParquetMetaData) -> Option<Vec<Run>> {
    let mut streams: Vec<(u64, u64)> = catalog
        .streams
        .iter()
        .map(|s| (s.fingerprint, s.entries))
        .collect();
    streams.sort_unstable();
    let mut runs = Vec::with_capacity(streams.len());
    let mut first = 0u64;
    for (fp, len) in streams {
        if len > 0 {
            runs.push(Run { fp, first, len });
        }
        first += len;
    }
    if first != u64::try_from(md.file_metadata().num_rows()).ok()? {
        return None;
    }
    let col = md
        .file_metadata()
        .schema_descr()
        .columns()
        .iter()
        .position(|c| c.path().string() == COL_STREAM)?;
    let fp_at = |row: u64| {
        let i = runs.partition_point(|r| r.first + r.len <= row);
        runs.get(i).map(|r| r.fp)
    };
    let mut row = 0u64;
    for rg in md.row_groups() {
        let n = rg.num_rows() as u64;
        if n == 0 {
            continue;
        }
        let Some(Statistics::Int64(s)) = rg.column(col).statistics() else {
            return None;
        };
        // The column is unsigned: its statistics are u64 values in i64 bits.
        let (min, max) = (*s.min_opt()? as u64, *s.max_opt()? as u64);
        if fp_at(row) != Some(min) || fp_at(row + n - 1) != Some(max) {
            return None;
        }
        row += n;
    }
    Some(runs)
}

/// The index range of a stream's best `k` rows within `[start, end)` (rows sorted by time),
/// widened over ties at the cut so that no row as good as a kept one is left out.
fn best_of_run(ts: &[i64], start: i64, end: i64, asc: bool, k: usize) -> (usize, usize) {
    let lo = ts.partition_point(|&t| t < start);
    let hi = ts.partition_point(|&t| t < end);
    if lo >= hi {
        return (lo, lo);
    }
    if asc {
        let b = hi.min(lo + k);
        let t = ts[b - 1];
        (lo, ts.partition_point(|&x| x <= t).min(hi))
    } else {
        let a = lo.max(hi.saturating_sub(k));
        let t = ts[a];
        (ts.partition_point(|&x| x < t).max(lo), hi)
    }
}

/// Sorted row numbers as a row selection over the whole object of `total` rows.
fn selection_of(rows: &[u64], total: usize) -> RowSelection {
    let mut ranges = Vec::new();
    let mut it = rows.iter().copied();
    if let Some(first) = it.next() {
        let (mut s, mut e) = (first, first + 1);
        for r in it {
            if r == e {
                e += 1;
            } else {
                ranges.push(s as usize..e as usize);
                (s, e) = (r, r + 1);
            }
        }
        ranges.push(s as usize..e as usize);
    }
    RowSelection::from_consecutive_ranges(ranges.into_iter(), total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn best_rows_of_a_run_keep_ties() {
        let ts = [1, 2, 3, 3, 3, 4, 9];
        // Newest 2 below 9: 4 and the three 3s tie with the second.
        assert_eq!(best_of_run(&ts, 0, 9, false, 2), (2, 6));
        assert_eq!(best_of_run(&ts, 0, 100, false, 1), (6, 7));
        // Oldest 3 from 2 on: 2, then the 3s.
        assert_eq!(best_of_run(&ts, 2, 100, true, 2), (1, 5));
        assert_eq!(best_of_run(&ts, 5, 9, true, 2), (6, 6));
        assert_eq!(best_of_run(&ts, 0, 100, true, 100), (0, 7));
    }

    #[test]
    fn keys_order_both_directions() {
        assert!(key(5, false) > key(4, false));
        assert!(key(4, true) > key(5, true));
        assert_eq!(ts_of(key(-7, true), true), -7);
        assert!(key(i64::MIN, true) > key(i64::MAX, true));
    }

    #[test]
    fn row_selection_from_rows() {
        let s = selection_of(&[2, 3, 4, 8], 10);
        assert_eq!(s.row_count(), 4);
        let ranges: Vec<_> = s.iter().map(|r| (r.skip, r.row_count)).collect();
        assert_eq!(
            ranges,
            vec![(true, 2), (false, 3), (true, 3), (false, 1), (true, 1)]
        );
    }
}
