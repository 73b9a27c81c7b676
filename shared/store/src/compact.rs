//! The compactor: merges small pushed ("hot") objects into large sorted ("cold") ones and
//! records them in the tenant-day manifest, then deletes what they absorbed after a grace
//! period.
//!
//! Every step is safe to crash at and to repeat:
//!
//! 1. A cold object is written under a fresh `c_<uuid>` id. Until a manifest names it, readers
//!    ignore it (an orphan); orphans older than `delete_delay` are deleted by later runs.
//! 2. The manifest's next version is created with a create-only put naming the cold object and
//!    the hot objects it absorbed. From that instant readers use the cold object and hide the
//!    hot ones. A compactor that loses the race re-reads; if someone else absorbed any of its
//!    inputs it deletes its own (never referenced) cold object and gives up.
//! 3. Absorbed objects are deleted once `delete_delay` has passed since the manifest recorded
//!    them (queries that listed them earlier have finished), then a later version drops them
//!    from the manifest. A crash in between only repeats deletes.
//! 4. Manifest versions older than the newest are deleted `delete_delay` after their successor.
//!
//! A compactor that has been running longer than half of `delete_delay` does not commit: the
//! grace period is what keeps concurrent runs from deleting each other's work.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, HashSet};
use std::io::Write;
use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow::array::{Array, ArrayRef, AsArray, RecordBatch};
use arrow::datatypes::{TimestampNanosecondType, UInt64Type};
use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use object_store::WriteMultipart;
use object_store::{ObjectMeta, ObjectStore, ObjectStoreExt};
use parquet::arrow::ArrowWriter;
use parquet::arrow::arrow_reader::{
    ArrowReaderMetadata, ArrowReaderOptions, ParquetRecordBatchReaderBuilder,
};
use parquet::file::metadata::{FileMetaData, ParquetMetaDataBuilder, ParquetMetaDataReader};
use parquetry_model::config::CompactorConfig;
use tracing::field::Empty;

use crate::catalog::StreamCatalog;
use crate::layout::{ObjectKey, PartValue, day_prefix};
use crate::manifest::{self, ColdObject, Manifest, Replacement};
use crate::merge_input::{self, Input, LabelTexts, Opening};
use crate::schema::{CATALOG_KEY, log_schema};
use crate::writer::{Tier, writer_properties};
use crate::{At, Result, Store, StoreError};
use parquetry_model::now_ns;

/// How the compactor behaves; see `compactor.*` in docs/configuration.md.
#[derive(Debug, Clone)]
pub struct CompactOptions {
    /// Hot objects younger than this (by their store modification time) wait.
    pub hot_min_age: Duration,
    /// A cold object takes inputs until their sizes add up to this.
    pub target_size: u64,
    /// Grace between an object leaving the live set and its deletion.
    pub delete_delay: Duration,
    /// Most inputs merged into one cold object.
    pub max_inputs: usize,
}

impl CompactOptions {
    /// The options the `compactor` block sets.
    pub fn from_config(c: &CompactorConfig) -> Self {
        CompactOptions {
            hot_min_age: c.hot_object_min_age.0,
            target_size: c.target_object_size.0.max(1),
            delete_delay: c.retention_delete_delay.0,
            max_inputs: c.max_objects_per_merge.max(2),
        }
    }
}

/// What one compaction pass did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CompactSummary {
    /// Tenant-days examined.
    pub days: u64,
    /// Push objects merged into cold objects.
    pub hot_absorbed: u64,
    /// Cold objects written.
    pub cold_written: u64,
    /// Small cold objects merged again into a bigger one.
    pub cold_rewritten: u64,
    /// Bytes of the merged inputs.
    pub bytes_read: u64,
    /// Bytes of the objects written.
    pub bytes_written: u64,
    /// Entries written (after dropping repeated pushes).
    pub entries: u64,
    /// Merged inputs deleted once their grace period passed.
    pub absorbed_deleted: u64,
    /// Cold objects no manifest names (a compactor killed before committing), deleted.
    pub orphans_deleted: u64,
    /// Superseded manifest versions deleted.
    pub manifests_deleted: u64,
    /// Merges discarded because another writer changed the manifest first.
    pub races_lost: u64,
    /// Staging files of a killed writer removed (local directory only).
    pub temp_files_deleted: u64,
    /// Inputs that could not be decoded, left out of their merge and kept as they are.
    pub unreadable_left_out: u64,
}

/// Progress callbacks (a progress bar on a terminal, nothing elsewhere).
pub trait Progress: Send + Sync {
    /// More input bytes are planned.
    fn planned(&self, _bytes: u64) {}
    /// Input bytes done.
    fn advanced(&self, _bytes: u64) {}
}

/// No progress reporting.
pub struct NoProgress;
impl Progress for NoProgress {}

/// Output batches: big enough to amortise interleaving, small against a row group.
const OUT_BATCH_ROWS: usize = 8192;
/// Decoded rows held across the streamed inputs of a merge at once; each one's batch size is
/// this divided by the number of inputs, so memory does not grow with the fan-in. About 650
/// bytes a row with the readers' buffers: 256 Ki rows held 174 MB of a 200-input merge on the
/// compaction bench, 64 Ki rows hold ~45 MB for the same CPU (docs/benchmarks.md,
/// "Compaction").
const DECODED_ROWS_BUDGET: usize = 64 * 1024;
/// Bytes of a merge's inputs decoded whole when they are opened (Parquet's uncompressed size
/// of the columns read); inputs past it are streamed. A day's partition of pushed objects
/// within `target_object_size: 256MiB` fits (~70 MB on the compaction bench), so its merge
/// holds no reader state at all (docs/benchmarks.md, "Compactor memory and the allocator").
const WHOLE_DECODE_BUDGET: u64 = 160 << 20;
/// Inputs fetched at once (and fetched inputs waiting to be opened).
const FETCH_CONCURRENCY: usize = 16;
/// Multipart part size for cold objects.
const PART_SIZE: usize = 8 << 20;
/// Manifest commit attempts before a pass gives up on a busy day.
const COMMIT_ATTEMPTS: usize = 16;
/// Most merges running at once (bounded by the cores too). Each holds up to `target_size` of
/// input plus per-input decoding state, so memory grows with this; measured on 2 cores, a
/// second merge bought under 10% of wall time, so one at a time it is.
const MAX_MERGE_CONCURRENCY: usize = 1;
/// Small cold objects of one partition-day that trigger merging them again.
const COLD_FANIN: usize = 8;
/// Deletes in flight at once.
pub(crate) const DELETE_CONCURRENCY: usize = 16;

fn older_than(meta: &ObjectMeta, age: Duration) -> bool {
    let age = chrono::Duration::from_std(age).unwrap_or(chrono::Duration::MAX);
    chrono::Utc::now()
        .checked_sub_signed(age)
        .is_some_and(|cutoff| meta.last_modified <= cutoff)
}

/// Merge candidates by partition values.
type ByPartition = BTreeMap<Vec<(String, PartValue)>, Vec<(ObjectKey, ObjectMeta)>>;

/// One tenant-day as a compactor sees it.
struct DayScan {
    manifest: Manifest,
    /// Hot objects not absorbed by the manifest.
    hot: Vec<(ObjectKey, ObjectMeta)>,
    /// Cold objects in the listing (live or orphan).
    cold_listed: Vec<ObjectMeta>,
}

impl Store {
    /// One compaction pass over every tenant and day.
    #[tracing::instrument(
        name = "compaction",
        skip_all,
        fields(days = Empty, objects_written = Empty, bytes_read = Empty, bytes_written = Empty)
    )]
    pub async fn compact(
        &self,
        opts: &CompactOptions,
        progress: &dyn Progress,
    ) -> Result<CompactSummary> {
        let mut summary = CompactSummary::default();
        // One bad day (an unreadable object, a busy manifest) must not starve the others: go
        // on, and report the first failure at the end.
        let mut first_error = None;
        for tenant in self.tenants().await? {
            for day in self.days(&tenant).await? {
                if let Err(e) = self
                    .compact_day(&tenant, &day, opts, progress, &mut summary)
                    .await
                {
                    tracing::warn!(tenant, day, error = %e, "compaction of a day failed");
                    first_error.get_or_insert(e);
                }
            }
        }
        let span = tracing::Span::current();
        span.record("days", summary.days);
        span.record("objects_written", summary.cold_written);
        span.record("bytes_read", summary.bytes_read);
        span.record("bytes_written", summary.bytes_written);
        match first_error {
            Some(e) => Err(e),
            None => Ok(summary),
        }
    }

    /// One compaction pass over one tenant-day.
    #[tracing::instrument(skip_all, fields(tenant = %tenant, day = %day))]
    pub async fn compact_day(
        &self,
        tenant: &str,
        day: &str,
        opts: &CompactOptions,
        progress: &dyn Progress,
        summary: &mut CompactSummary,
    ) -> Result<()> {
        let started = Instant::now();
        self.remove_stale_temp_files(tenant, day, summary).await;
        let Some(scan) = self.scan_day(tenant, day).await? else {
            return Ok(());
        };
        summary.days += 1;

        // Eligible hot objects by partition, oldest entries first so cold objects cover
        // narrow time ranges.
        let mut by_partition = ByPartition::new();
        for (key, meta) in scan.hot {
            if older_than(&meta, opts.hot_min_age) {
                by_partition
                    .entry(key.partition.clone())
                    .or_default()
                    .push((key, meta));
            }
        }
        // Small cold objects are merged again, tier by tier: once a partition has
        // COLD_FANIN of them, or when its day is over. Each byte is so rewritten about
        // log_COLD_FANIN(objects per day) times, and a finished day ends with few objects.
        let min_age_ns = opts.hot_min_age.as_nanos().min(i64::MAX as u128) as i64;
        let day_closed = crate::retention::day_end_ns(day)
            .is_some_and(|end| end.saturating_add(min_age_ns) <= now_ns());
        let mut small_cold = ByPartition::new();
        let mut replaceable = HashSet::new();
        for c in &scan.manifest.cold {
            if c.size >= opts.target_size / 2 {
                continue;
            }
            let location = manifest::absolute_path(tenant, day, &c.key);
            let Some(key) = ObjectKey::parse(&location) else {
                continue;
            };
            let meta = ObjectMeta {
                location,
                last_modified: chrono::Utc::now(),
                size: c.size,
                e_tag: None,
                version: None,
            };
            small_cold
                .entry(key.partition.clone())
                .or_default()
                .push((key, meta));
        }
        for (partition, colds) in small_cold {
            if colds.len() >= COLD_FANIN || day_closed {
                replaceable.extend(colds.iter().map(|(_, m)| m.location.clone()));
                by_partition.entry(partition).or_default().extend(colds);
            }
        }
        let mut groups = Vec::new();
        for (_, mut objs) in by_partition {
            objs.sort_by(|a, b| (a.0.min_ts, &a.1.location).cmp(&(b.0.min_ts, &b.1.location)));
            let mut group: Vec<(ObjectKey, ObjectMeta)> = Vec::new();
            let mut size = 0;
            for o in objs {
                if !group.is_empty()
                    && (size + o.1.size > opts.target_size || group.len() >= opts.max_inputs)
                {
                    groups.push(std::mem::take(&mut group));
                    size = 0;
                }
                size += o.1.size;
                group.push(o);
            }
            groups.push(group);
        }
        // Merging one object into one object gains nothing.
        groups.retain(|g| g.len() >= 2);
        progress.planned(groups.iter().flatten().map(|(_, m)| m.size).sum());

        // Merges of different groups run side by side (one blocking thread each); commits
        // happen one at a time, in completion order.
        let concurrency = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
            .clamp(1, MAX_MERGE_CONCURRENCY);
        let mut merges = futures::stream::iter(groups.into_iter().map(|group| {
            let (tenant, day) = (tenant.to_string(), day.to_string());
            async move { self.merge_readable(&tenant, &day, group).await }
        }))
        .buffer_unordered(concurrency);
        while let Some((group, merged, unreadable)) = merges.next().await {
            summary.unreadable_left_out += unreadable.len() as u64;
            let Some(cold) = merged? else {
                continue;
            };
            let bytes_in: u64 = group.iter().map(|(_, m)| m.size).sum();
            summary.bytes_read += bytes_in;
            let cold_path = manifest::absolute_path(tenant, day, &cold.key);
            if !opts.delete_delay.is_zero() && started.elapsed() > opts.delete_delay / 2 {
                // Too slow: another run may already treat our inputs or output as garbage.
                tracing::warn!(
                    tenant,
                    day,
                    "compaction too slow to commit safely; discarding"
                );
                self.store.delete(&cold_path).await.at(&cold_path)?;
                return Ok(());
            }
            let (mut hot_inputs, mut cold_inputs) = (Vec::new(), Vec::new());
            for (_, m) in &group {
                let rel = manifest::relative_key(tenant, day, &m.location).unwrap_or_default();
                if replaceable.contains(&m.location) {
                    cold_inputs.push(rel);
                } else {
                    hot_inputs.push(rel);
                }
            }
            let (hot_absorbed, cold_rewritten) = (hot_inputs.len(), cold_inputs.len());
            let replacement = Replacement {
                object: ColdObject {
                    created_ns: now_ns(),
                    ..cold.clone()
                },
                hot: hot_inputs,
                cold: cold_inputs,
            };
            let committed = manifest::commit_replacements(
                self.store.as_ref(),
                tenant,
                day,
                COMMIT_ATTEMPTS,
                std::slice::from_ref(&replacement),
            )
            .await?;
            match committed {
                Some(m) => {
                    tracing::info!(
                        tenant,
                        day,
                        version = m.version,
                        object = %cold.key,
                        inputs = group.len(),
                        entries = cold.entries,
                        bytes = cold.size,
                        "compacted"
                    );
                    summary.cold_written += 1;
                    summary.hot_absorbed += hot_absorbed as u64;
                    summary.cold_rewritten += cold_rewritten as u64;
                    summary.bytes_written += cold.size;
                    summary.entries += cold.entries;
                }
                None => {
                    // Someone else absorbed (some of) our inputs first; our object was never
                    // referenced, so it can go at once.
                    tracing::info!(tenant, day, "lost a compaction race; discarding our object");
                    summary.races_lost += 1;
                    self.store.delete(&cold_path).await.at(&cold_path)?;
                }
            }
            progress.advanced(bytes_in);
        }

        self.collect_garbage(tenant, day, opts, &scan.cold_listed, summary)
            .await
    }

    /// Removes what killed writers left in a local day directory: `LocalFileSystem` writes
    /// each object to a staging file `<name>#<n>` first, and its listing never shows those, so
    /// nothing else would ever delete them. Only files untouched for
    /// [`TEMP_FILE_MIN_AGE`](crate::durable::TEMP_FILE_MIN_AGE) go, never one still being
    /// written. Housekeeping only: a failure is logged, and the pass goes on.
    async fn remove_stale_temp_files(&self, tenant: &str, day: &str, summary: &mut CompactSummary) {
        let Some(local) = &self.local else {
            return;
        };
        let prefix = day_prefix(tenant, day);
        match local
            .remove_stale_temp_files(&prefix, crate::durable::TEMP_FILE_MIN_AGE)
            .await
        {
            Ok(n) => summary.temp_files_deleted += n,
            Err(e) => {
                tracing::warn!(tenant, day, error = %e, "could not remove stale staging files")
            }
        }
    }

    /// The day's newest manifest, then its listing (in that order: see `Store::live_objects`).
    /// `None` when retention is deleting the day.
    async fn scan_day(&self, tenant: &str, day: &str) -> Result<Option<DayScan>> {
        let (manifest, listing) = manifest::read_newest(self.store.as_ref(), tenant, day).await?;
        if listing.deleting.is_some() {
            return Ok(None);
        }
        let absorbed = manifest.absorbed();
        let prefix = day_prefix(tenant, day);
        let metas: Vec<ObjectMeta> = self
            .store
            .list(Some(&prefix))
            .try_collect()
            .await
            .at(&prefix)?;
        let mut hot = Vec::new();
        let mut cold_listed = Vec::new();
        for meta in metas {
            if manifest::is_manifest_path(&meta.location) {
                continue;
            }
            let Some(key) = ObjectKey::parse(&meta.location) else {
                continue;
            };
            if key.tenant != tenant || key.day != day {
                continue;
            }
            if manifest::is_cold_id(&key.id) {
                cold_listed.push(meta);
                continue;
            }
            let rel = manifest::relative_key(tenant, day, &meta.location).unwrap_or_default();
            if !absorbed.contains(rel.as_str()) {
                hot.push((key, meta));
            }
        }
        drop(absorbed);
        Ok(Some(DayScan {
            manifest,
            hot,
            cold_listed,
        }))
    }

    /// Deletes absorbed objects and superseded manifest versions past the grace period, and
    /// orphaned cold objects.
    async fn collect_garbage(
        &self,
        tenant: &str,
        day: &str,
        opts: &CompactOptions,
        cold_listed: &[ObjectMeta],
        summary: &mut CompactSummary,
    ) -> Result<()> {
        let store = self.store.as_ref();
        let delay_ns = opts.delete_delay.as_nanos().min(i64::MAX as u128) as i64;
        let now = now_ns();
        // Re-read: the manifest may have moved since the scan (our commits, or others').
        let (current, listing) = manifest::read_newest(store, tenant, day).await?;
        if listing.deleting.is_some() {
            return Ok(());
        }

        // 1. Absorbed objects whose grace period is over.
        let due: Vec<String> = current
            .cold
            .iter()
            .filter(|c| !c.absorbed.is_empty() && c.created_ns.saturating_add(delay_ns) <= now)
            .flat_map(|c| c.absorbed.iter().cloned())
            .collect();
        let mut gone = HashSet::new();
        if !due.is_empty() {
            // Concurrent: on a local directory each delete waits for a directory fsync, and
            // overlapping ones share the disk flush.
            // Owned futures: borrowed ones would make the pass's future not `Send`.
            let deletes: Vec<_> = due
                .iter()
                .map(|rel| {
                    let (store, rel) = (self.store.clone(), rel.clone());
                    let path = manifest::absolute_path(tenant, day, &rel);
                    async move {
                        let result = store.delete(&path).await;
                        (rel, result)
                    }
                })
                .collect();
            let mut deletes = futures::stream::iter(deletes).buffer_unordered(DELETE_CONCURRENCY);
            while let Some((rel, result)) = deletes.next().await {
                match result {
                    Ok(()) | Err(object_store::Error::NotFound { .. }) => {
                        gone.insert(rel);
                    }
                    Err(e) => return Err(e).at(manifest::absolute_path(tenant, day, &rel)),
                }
            }
            drop(deletes);
            let updated = manifest::update(store, tenant, day, COMMIT_ATTEMPTS, |base| {
                let mut next = base.clone();
                let mut changed = false;
                for c in &mut next.cold {
                    let before = c.absorbed.len();
                    c.absorbed.retain(|k| !gone.contains(k));
                    let removed = (before - c.absorbed.len()) as u64;
                    c.absorbed_deleted += removed;
                    changed |= removed > 0;
                }
                changed.then_some(next)
            })
            .await?;
            if updated.is_some() {
                summary.absorbed_deleted += gone.len() as u64;
            }
        }

        // 2. Orphans: cold objects no manifest names, old enough that no running compactor
        // can still commit them (it would have to have started more than delay/2 ago).
        let (current, listing) = manifest::read_newest(store, tenant, day).await?;
        let live: HashSet<&str> = current.cold.iter().map(|c| c.key.as_str()).collect();
        // Replaced cold objects are absorbed, not orphans: they wait out their own grace.
        let absorbed = current.absorbed();
        for meta in cold_listed {
            let rel = manifest::relative_key(tenant, day, &meta.location).unwrap_or_default();
            if !live.contains(rel.as_str())
                && !absorbed.contains(rel.as_str())
                && !gone.contains(&rel)
                && older_than(meta, opts.delete_delay)
            {
                match store.delete(&meta.location).await {
                    Ok(()) | Err(object_store::Error::NotFound { .. }) => {
                        summary.orphans_deleted += 1;
                    }
                    Err(e) => return Err(e).at(&meta.location),
                }
            }
        }

        // 3. Superseded manifest versions: a reader that listed one of them as the newest has
        // had the grace period to read it.
        for pair in listing.versions.windows(2) {
            let (old, successor) = (&pair[0], &pair[1]);
            if older_than(&successor.1, opts.delete_delay) {
                match store.delete(&old.1.location).await {
                    Ok(()) | Err(object_store::Error::NotFound { .. }) => {
                        summary.manifests_deleted += 1;
                    }
                    Err(e) => return Err(e).at(&old.1.location),
                }
            }
        }
        Ok(())
    }

    /// Merges one group of hot objects of one partition into a new cold object (not yet in
    /// any manifest). Inputs are fetched concurrently; merging and encoding run on a blocking
    /// thread that streams the output to a multipart upload.
    #[tracing::instrument(
        name = "merge",
        skip_all,
        fields(
            partition = %partition_of(group),
            inputs = group.len(),
            bytes_in = group.iter().map(|(_, m)| m.size).sum::<u64>(),
            output = Empty,
            bytes_out = Empty,
        )
    )]
    async fn merge_group(
        &self,
        tenant: &str,
        day: &str,
        group: &[(ObjectKey, ObjectMeta)],
    ) -> Result<ColdObject> {
        let Some(first) = group.first() else {
            return Err(StoreError::Conflict("empty merge group".into()));
        };
        // Inputs are fetched concurrently and handed to one blocking thread that opens them
        // as they arrive (dropping the compressed bytes of those decoded whole), then merges.
        // Opening and merging on one thread is what keeps the allocator's resident memory
        // near the merge's heap: batches decoded on many pool threads and freed on another
        // stay resident in their threads' heaps long after (docs/benchmarks.md, "Compactor
        // memory and the allocator").
        let (tx, mut rx) = tokio::sync::mpsc::channel(FETCH_CONCURRENCY);
        let store = self.store.clone();
        let paths: Vec<object_store::path::Path> =
            group.iter().map(|(_, m)| m.location.clone()).collect();
        let fetch = async move {
            let mut fetched = futures::stream::iter(paths.into_iter().map(move |path| {
                let store = store.clone();
                async move {
                    let bytes = store.get(&path).await.at(&path)?.bytes().await.at(&path)?;
                    Ok::<_, StoreError>((path, bytes))
                }
            }))
            .buffered(FETCH_CONCURRENCY);
            while let Some(input) = fetched.next().await {
                let failed = input.is_err();
                // A closed channel: the merge failed and says why.
                if tx.send(input).await.is_err() || failed {
                    break;
                }
            }
        };
        let streamed_rows = (DECODED_ROWS_BUDGET / group.len().max(1)).clamp(64, OUT_BATCH_ROWS);
        let (tenant_owned, day_owned) = (tenant.to_string(), day.to_string());
        let partition = first.0.partition.clone();
        let store = self.store.clone();
        let handle = tokio::runtime::Handle::current();
        let merge = tokio::task::spawn_blocking(move || {
            let _guard = handle.enter();
            // The catalogs are merged first: the output's key (time range) and its bloom
            // filter size come from the catalog.
            let mut opening = Opening::new(WHOLE_DECODE_BUDGET, streamed_rows);
            let mut inputs = Vec::new();
            while let Some(input) = rx.blocking_recv() {
                let (path, bytes) = input?;
                inputs.push(opening.open(bytes, path.as_ref())?);
            }
            let catalog = opening.into_catalog();
            let (min_ts, max_ts) = catalog
                .streams
                .iter()
                .fold((i64::MAX, i64::MIN), |(lo, hi), s| {
                    (lo.min(s.min_ts), hi.max(s.max_ts))
                });
            let entries: u64 = catalog.streams.iter().map(|s| s.entries).sum();
            let key = ObjectKey {
                tenant: tenant_owned,
                day: day_owned,
                partition,
                min_ts,
                max_ts,
                id: manifest::new_cold_id(),
            };
            let path = key.to_path();
            let upload = WriteMultipart::new_with_chunk_size(
                handle.block_on(store.put_multipart(&path)).at(&path)?,
                PART_SIZE,
            );
            let mut sink = UploadSink {
                upload: Some(upload),
                handle: handle.clone(),
                written: 0,
            };
            let merged = merge_into(inputs, &catalog, &mut sink);
            let upload = sink.upload.take();
            let repeats = match (merged, upload) {
                (Ok(repeats), Some(up)) => {
                    handle.block_on(up.finish()).at(&path)?;
                    repeats
                }
                (Ok(_), None) => return Err(StoreError::Conflict("upload closed early".into())),
                (Err(e), up) => {
                    if let Some(up) = up {
                        let _ = handle.block_on(up.abort());
                    }
                    return Err(e);
                }
            };
            Ok(MergedObject {
                path,
                size: sink.written,
                entries: entries.saturating_sub(repeats),
                min_ts,
                max_ts,
            })
        });
        let ((), merged) = tokio::join!(fetch, merge);
        let MergedObject {
            path,
            size,
            entries,
            min_ts,
            max_ts,
        } = merged.map_err(StoreError::Join)??;
        let span = tracing::Span::current();
        span.record("output", tracing::field::display(&path));
        span.record("bytes_out", size);
        Ok(ColdObject::written(
            manifest::relative_key(tenant, day, &path).unwrap_or_default(),
            size,
            entries,
            min_ts,
            max_ts,
        ))
    }
}

impl Store {
    /// [`Store::merge_group`], leaving out inputs that cannot be decoded: one torn or foreign
    /// object must not keep the rest of its partition from being compacted. A left-out object
    /// stays where it is, unabsorbed, so nothing is lost by leaving it out; readers skip it too
    /// and say so. Returns the group actually merged (`None` when fewer than two inputs were
    /// left) and the objects left out.
    ///
    /// The merge starts over without the bad input rather than stepping past it: a decode
    /// failure can come after the input's catalog was folded into the output's, or in the
    /// middle of the streamed merge, and only a fresh start is right in every case. It costs
    /// the group's fetches again, once per bad input — a rare case.
    async fn merge_readable(
        &self,
        tenant: &str,
        day: &str,
        mut group: Vec<(ObjectKey, ObjectMeta)>,
    ) -> (
        Vec<(ObjectKey, ObjectMeta)>,
        Result<Option<ColdObject>>,
        Vec<crate::Unreadable>,
    ) {
        let mut left_out = Vec::new();
        loop {
            let err = match self.merge_group(tenant, day, &group).await {
                Ok(cold) => return (group, Ok(Some(cold)), left_out),
                Err(e) => e,
            };
            let bad = err.unreadable_object().and_then(|u| {
                let i = group
                    .iter()
                    .position(|(_, m)| m.location.as_ref() == u.path)?;
                Some((i, u))
            });
            let Some((i, u)) = bad else {
                return (group, Err(err), left_out);
            };
            tracing::error!(
                tenant,
                day,
                object = %u.path,
                reason = %u.reason,
                "compaction input cannot be decoded; left out of the merge and kept as it is"
            );
            crate::UNREADABLE_SEEN.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            group.remove(i);
            left_out.push(u);
            if group.len() < 2 {
                return (group, Ok(None), left_out);
            }
        }
    }
}

/// What a merge wrote: the object and what its manifest entry records.
struct MergedObject {
    path: object_store::path::Path,
    size: u64,
    /// Entries written (after dropping repeated pushes).
    entries: u64,
    min_ts: i64,
    max_ts: i64,
}

/// A merge group's partition as its keys spell it (`service_name=api`), for the merge span.
fn partition_of(group: &[(ObjectKey, ObjectMeta)]) -> String {
    group
        .first()
        .map(|(k, _)| k.partition_components().collect::<Vec<_>>().join("/"))
        .unwrap_or_default()
}

/// An input's reader metadata without its stream catalog, and the catalog. A reader keeps its
/// footer until the merge ends, and a pushed object's catalog (every stream of its partition)
/// is most of its footer: 70 MB over the 200 inputs of a merge on the compaction bench.
pub(crate) fn without_catalog(
    bytes: &Bytes,
) -> parquet::errors::Result<(ArrowReaderMetadata, Option<String>)> {
    let metadata = ParquetMetaDataReader::new().parse_and_finish(bytes)?;
    let file = metadata.file_metadata();
    let mut catalog = None;
    let kv = file.key_value_metadata().map(|kv| {
        let (found, rest): (Vec<_>, Vec<_>) =
            kv.iter().cloned().partition(|k| k.key == CATALOG_KEY);
        catalog = found.into_iter().find_map(|k| k.value);
        rest
    });
    let file = FileMetaData::new(
        file.version(),
        file.num_rows(),
        file.created_by().map(str::to_string),
        kv,
        file.schema_descr_ptr(),
        file.column_orders().cloned(),
    );
    let row_groups = metadata.into_builder().take_row_groups();
    let metadata = ParquetMetaDataBuilder::new(file)
        .set_row_groups(row_groups)
        .build();
    let metadata = ArrowReaderMetadata::try_new(Arc::new(metadata), ArrowReaderOptions::new())?;
    Ok((metadata, catalog))
}

/// One input of the k-way merge: its current batch and position.
struct Cursor {
    input: Input,
    batch: RecordBatch,
    row: usize,
    /// Index of `batch` in the merge's held batches.
    held: usize,
}

impl Cursor {
    fn key(&self, row: usize) -> (u64, i64) {
        let stream = self
            .batch
            .column(merge_input::STREAM)
            .as_primitive::<UInt64Type>()
            .value(row);
        let ts = self
            .batch
            .column(0)
            .as_primitive::<TimestampNanosecondType>()
            .value(row);
        (stream, ts)
    }
}

/// K-way merge of inputs sorted by (stream, timestamp) into one sorted Parquet file written to
/// `sink`. Memory: one decoded batch per input plus one output batch and the row group being
/// encoded.
/// K-way merge of inputs sorted by (stream, timestamp) into one sorted Parquet file written to
/// `sink`, keeping one of each set of identical entries (same stream, time and line: a retried
/// push stored twice). Returns how many it dropped; the footer's catalog counts the rest.
pub(crate) fn merge_into<W: Write + Send>(
    inputs: Vec<Input>,
    catalog: &StreamCatalog,
    sink: &mut W,
) -> Result<u64> {
    // The catalog goes in at the end, once the repeats are known.
    let props = writer_properties(catalog, false, Tier::Cold)?;
    let mut writer = ArrowWriter::try_new(sink, log_schema(), Some(props))?;
    let labels = LabelTexts::new(catalog);
    let mut held: Vec<RecordBatch> = Vec::new();
    let mut cursors: Vec<Option<Cursor>> = Vec::new();
    let mut heap = BinaryHeap::new();
    for mut input in inputs {
        if let Some(batch) = input.next_batch()? {
            held.push(batch.clone());
            let c = Cursor {
                input,
                batch,
                row: 0,
                held: held.len() - 1,
            };
            heap.push(Reverse((c.key(0), cursors.len())));
            cursors.push(Some(c));
        }
    }
    let mut indices: Vec<(usize, usize)> = Vec::with_capacity(OUT_BATCH_ROWS);
    let mut dedup = Dedup::default();
    while let Some(Reverse((_, i))) = heap.pop() {
        let bound = heap.peek().map(|Reverse((k, _))| *k);
        let Some(c) = cursors[i].as_mut() else {
            continue;
        };
        // Take the run of rows that sort before every other input's next row.
        loop {
            if dedup.keep(c.key(c.row), &held, c.held, c.row)? {
                indices.push((c.held, c.row));
            }
            c.row += 1;
            if c.row >= c.batch.num_rows() || indices.len() >= OUT_BATCH_ROWS {
                break;
            }
            if bound.is_some_and(|b| c.key(c.row) > b) {
                break;
            }
        }
        if c.row >= c.batch.num_rows() {
            match c.input.next_batch()? {
                Some(batch) => {
                    held.push(batch.clone());
                    c.batch = batch;
                    c.row = 0;
                    c.held = held.len() - 1;
                }
                None => cursors[i] = None,
            }
        }
        if let Some(c) = cursors[i].as_ref() {
            heap.push(Reverse((c.key(c.row), i)));
        }
        if indices.len() >= OUT_BATCH_ROWS {
            flush(&mut writer, &held, &mut indices, &labels)?;
            // Only the batches cursors still point into stay held.
            dedup.settle(&held)?;
            held.clear();
            for c in cursors.iter_mut().flatten() {
                held.push(c.batch.clone());
                c.held = held.len() - 1;
            }
        }
    }
    flush(&mut writer, &held, &mut indices, &labels)?;
    let mut kept = catalog.clone();
    for s in &mut kept.streams {
        if let Some((entries, bytes)) = dedup.removed.get(&s.fingerprint) {
            s.entries = s.entries.saturating_sub(*entries);
            s.bytes = s.bytes.saturating_sub(*bytes);
        }
    }
    writer.append_key_value_metadata(parquet::file::metadata::KeyValue::new(
        CATALOG_KEY.to_string(),
        kept.to_json(),
    ));
    writer.finish()?;
    Ok(dedup.removed.values().map(|(entries, _)| entries).sum())
}

/// Drops entries identical to one already merged. Rows arrive in (stream, time) order, so
/// identical entries are among the rows of one (stream, time): only when a second row of the
/// same key shows up are lines read and hashed, so the common case costs one comparison.
#[derive(Default)]
struct Dedup {
    key: Option<(u64, i64)>,
    /// The first row of the current key, `(held batch, row)`, not yet hashed.
    first: Option<(usize, usize)>,
    /// Line hashes seen at the current key (xxHash64: a collision needs two different lines
    /// of one stream at the same nanosecond).
    lines: Vec<u64>,
    /// Per stream: entries and line bytes dropped.
    removed: BTreeMap<u64, (u64, u64)>,
}

impl Dedup {
    fn keep(
        &mut self,
        key: (u64, i64),
        held: &[RecordBatch],
        batch: usize,
        row: usize,
    ) -> Result<bool> {
        if self.key != Some(key) {
            self.key = Some(key);
            self.first = Some((batch, row));
            self.lines.clear();
            return Ok(true);
        }
        self.settle(held)?;
        let line = line_at(held, batch, row)?;
        let h = twox_hash::XxHash64::oneshot(0, line.as_bytes());
        if self.lines.contains(&h) {
            let r = self.removed.entry(key.0).or_default();
            r.0 += 1;
            r.1 += line.len() as u64;
            return Ok(false);
        }
        self.lines.push(h);
        Ok(true)
    }

    /// Hashes the pending first row while its batch is still held.
    fn settle(&mut self, held: &[RecordBatch]) -> Result<()> {
        if let Some((batch, row)) = self.first.take() {
            let line = line_at(held, batch, row)?;
            self.lines
                .push(twox_hash::XxHash64::oneshot(0, line.as_bytes()));
        }
        Ok(())
    }
}

fn line_at(held: &[RecordBatch], batch: usize, row: usize) -> Result<&str> {
    held.get(batch)
        .and_then(|b| b.column(merge_input::LINE).as_string_opt::<i32>())
        .filter(|l| row < l.len())
        .map(|l| l.value(row))
        .ok_or_else(|| StoreError::Corrupt {
            path: String::new(),
            reason: "line column is not text".into(),
        })
}

fn flush<W: Write + Send>(
    writer: &mut ArrowWriter<W>,
    held: &[RecordBatch],
    indices: &mut Vec<(usize, usize)>,
    labels: &LabelTexts,
) -> Result<()> {
    if indices.is_empty() {
        return Ok(());
    }
    let schema = log_schema();
    let width = held.first().map_or(0, |b| b.num_columns());
    let mut columns: Vec<ArrayRef> = Vec::with_capacity(schema.fields().len());
    for col in 0..width {
        let arrays: Vec<&dyn Array> = held.iter().map(|b| b.column(col).as_ref()).collect();
        columns.push(arrow::compute::interleave(&arrays, indices)?);
    }
    // The merge's batches have every column but `labels`, which goes back in its place.
    let label_column = labels.column(&columns[merge_input::STREAM])?;
    columns.insert(2, label_column);
    writer.write(&RecordBatch::try_new(schema, columns)?)?;
    indices.clear();
    Ok(())
}

/// `Write` into a multipart upload, from a blocking thread: parts upload in the background
/// while encoding continues, at most a few at a time.
struct UploadSink {
    upload: Option<WriteMultipart>,
    handle: tokio::runtime::Handle,
    written: u64,
}

impl Write for UploadSink {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let Some(up) = self.upload.as_mut() else {
            return Err(std::io::Error::other("upload already finished"));
        };
        up.write(buf);
        self.written += buf.len() as u64;
        self.handle
            .block_on(up.wait_for_capacity(4))
            .map_err(std::io::Error::other)?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Shared for tests: the entries of live objects, for comparing content.
pub async fn read_all_rows(store: &Store, objects: &[crate::DataObject]) -> Result<Vec<Row>> {
    let mut rows = Vec::new();
    for o in objects {
        let bytes = store.read_path(&o.path).await?;
        let reader = ParquetRecordBatchReaderBuilder::try_new(bytes)
            .and_then(|b| b.build())
            .at(&o.path)?;
        for batch in reader {
            let batch = batch.at(&o.path)?;
            let ts = batch.column(0).as_primitive::<TimestampNanosecondType>();
            let stream = batch.column(1).as_primitive::<UInt64Type>();
            let line = batch.column(3).as_string::<i32>();
            for r in 0..batch.num_rows() {
                rows.push(Row {
                    stream: stream.value(r),
                    ts_ns: ts.value(r),
                    line: line.value(r).to_string(),
                });
            }
        }
    }
    rows.sort();
    Ok(rows)
}

/// One stored entry, as the content comparisons of tests see it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Row {
    /// The stream fingerprint.
    pub stream: u64,
    /// The entry time (Unix ns).
    pub ts_ns: i64,
    /// The log line.
    pub line: String,
}

#[cfg(test)]
mod tests {
    use std::time::SystemTime;

    use parquetry_model::Labels;

    use super::*;
    use crate::writer::{LogEntry, StreamEntries};

    #[tokio::test]
    async fn a_pass_removes_stale_staging_files_and_keeps_fresh_ones() {
        let tmp = tempfile::tempdir().unwrap();
        let store = Store::open(tmp.path().to_str().unwrap(), vec!["service_name".into()]).unwrap();
        let t0 = 1_700_000_000_000_000_000;
        let push = vec![StreamEntries {
            labels: Labels::from_pairs([("service_name", "api")]),
            entries: vec![LogEntry {
                ts_ns: t0,
                line: "hello".into(),
                structured_metadata: Vec::new(),
            }],
        }];
        store.write("fake", push).await.unwrap();
        let root = tmp.path().canonicalize().unwrap();
        let day = root.join(day_prefix("fake", &crate::layout::day_of(t0)).as_ref());
        let partition = day.join("service_name=api");
        // What a push and a compaction killed mid-write leave: the first an hour and a half
        // ago, so gone; the others still being written for all anyone knows.
        let old = SystemTime::now() - Duration::from_secs(5400);
        let stale = [
            partition.join("1-2-abc.parquet#1"),
            day.join("_manifest/00000000000000000001.json#1"),
        ];
        std::fs::create_dir_all(day.join("_manifest")).unwrap();
        for p in &stale {
            std::fs::File::create(p).unwrap().set_modified(old).unwrap();
        }
        let fresh = partition.join("3-4-def.parquet#1");
        std::fs::write(&fresh, b"partial").unwrap();

        let opts = CompactOptions {
            hot_min_age: Duration::from_secs(3600),
            target_size: 1 << 30,
            delete_delay: Duration::from_secs(3600),
            max_inputs: 100,
        };
        let s = store.compact(&opts, &NoProgress).await.unwrap();
        assert_eq!(s.temp_files_deleted, 2, "{s:?}");
        for p in &stale {
            assert!(!p.exists(), "{p:?}");
        }
        assert!(fresh.exists());
        // The object itself is untouched.
        assert_eq!(store.list_keys("").await.unwrap().len(), 1);
    }
}
