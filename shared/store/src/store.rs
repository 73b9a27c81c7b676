//! [`Store`]: the handle the API and query layers hold.

use std::sync::Arc;

use futures::TryStreamExt;
use object_store::memory::InMemory;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload};
use parquet::arrow::async_reader::MetadataFetch;
use parquet::file::metadata::ParquetMetaDataReader;
use parquetry_model::config::StorageConfig;

use crate::catalog::StreamCatalog;
use crate::commit::Commits;
use crate::durable::DurableStore;
use crate::layout::{DataObject, ObjectKey, PartValue, day_of, day_prefix};
use crate::manifest::{self, Manifest};
use crate::schema::CATALOG_KEY;
use crate::writer::{StreamEntries, encode_objects};
use crate::{At, DAY_NS, Result, StoreError, Unreadable};

/// What one write stored.
#[derive(Debug, Clone, Default)]
pub struct WriteSummary {
    /// Objects put.
    pub objects: usize,
    /// Entries stored.
    pub entries: u64,
    /// Bytes of the objects put.
    pub bytes_written: u64,
}

/// Writes of one tenant stored at once: half the cores, so combined writes keep the others
/// for decoding and validating the pushes that queue up meanwhile.
fn writes_in_flight() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get() / 2)
}

/// Encodes `streams` into one object per (day, partition) on a blocking thread and puts them
/// all (see [`Store::write`]).
async fn write_objects(
    store: Arc<dyn ObjectStore>,
    tenant: String,
    streams: Vec<StreamEntries>,
    labels: Arc<[String]>,
    max_partitions: usize,
) -> Result<WriteSummary> {
    let id = uuid::Uuid::new_v4().simple().to_string();
    let objects = tokio::task::spawn_blocking(move || {
        encode_objects(&tenant, streams, &labels, max_partitions, &id)
    })
    .await
    .map_err(StoreError::Join)??;

    let mut summary = WriteSummary {
        objects: objects.len(),
        ..Default::default()
    };
    let puts = objects.into_iter().map(|o| {
        summary.entries += o.entries;
        summary.bytes_written += o.data.len() as u64;
        let path = o.key.to_path();
        let store = store.clone();
        async move {
            // Create-only: keys are unique per write, so an existing key means a bug or a
            // collision, and overwriting acknowledged data is never right.
            let opts = PutOptions {
                mode: PutMode::Create,
                ..Default::default()
            };
            store
                .put_opts(&path, PutPayload::from_bytes(o.data), opts)
                .await
                .at(&path)
        }
    });
    futures::future::try_join_all(puts).await?;
    Ok(summary)
}

/// Objects are immutable once written, so a footer read once is good forever; the cache
/// keeps the most used catalogs within this many bytes (their JSON size, about what they hold
/// in memory), evicting the rest (S3-FIFO).
const CATALOG_CACHE_BYTES: u64 = 128 << 20;
/// Manifest versions are immutable too; the newest one of each recently queried day is all
/// that matters.
const MANIFEST_CACHE_BYTES: u64 = 32 << 20;

/// A cached value and what it weighs, for [`ByteWeighter`].
#[derive(Clone)]
struct Weighed<T> {
    value: Arc<T>,
    bytes: u64,
}

/// Weighs cache entries by their approximate size in bytes, so the bound is memory, not a
/// count (one catalog of 10,000 streams weighs as much as thousands of small ones).
#[derive(Clone, Default)]
struct ByteWeighter;

impl<K, T> quick_cache::Weighter<K, Weighed<T>> for ByteWeighter {
    fn weight(&self, _key: &K, v: &Weighed<T>) -> u64 {
        v.bytes.max(1)
    }
}

type ByteCache<T> = quick_cache::sync::Cache<Path, Weighed<T>, ByteWeighter>;

/// Undecodable objects remembered (see `Store::unreadable`): a handful in any healthy store.
const UNREADABLE_CACHE_OBJECTS: usize = 1024;

fn byte_cache<T: Clone>(bytes: u64) -> ByteCache<T> {
    // Estimated item count only sizes the table; the weight bounds it.
    quick_cache::sync::Cache::with_weighter((bytes / 4096) as usize, bytes, ByteWeighter)
}

/// The storage handle: an object store plus the layout rules.
pub struct Store {
    pub(crate) store: Arc<dyn ObjectStore>,
    url: String,
    partition_labels: Arc<[String]>,
    /// `storage.max_partitions_per_push` (see `writer::fold_partitions`).
    max_partitions_per_push: usize,
    catalogs: ByteCache<StreamCatalog>,
    manifests: ByteCache<Manifest>,
    /// Objects known not to decode, by path and size: objects are immutable, so one that did
    /// not decode never will, and its footer need not be fetched (nor its error logged) by
    /// every query. The size is part of the key so an object restored in place under the same
    /// key is read again.
    unreadable: quick_cache::sync::Cache<(Path, u64), Unreadable>,
    /// The same store as `store` when it is a local directory opened by URL: the compactor
    /// reaches the files behind it (staging files the listing hides).
    pub(crate) local: Option<Arc<DurableStore>>,
    /// Delete requests as queries see them (see `deletes`).
    pub(crate) deletes: crate::deletes::RequestCache,
    /// Pushes waiting to be stored together (see `commit`).
    commits: Arc<Commits>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").field("url", &self.url).finish()
    }
}

impl Store {
    /// Opens a store by URL: a directory path, `file:///abs/dir`, `memory://` or
    /// `s3://bucket[/prefix]`, the last configured from the process's `AWS_*` variables only.
    pub fn open(url: &str, partition_labels: Vec<String>) -> Result<Store> {
        let storage = StorageConfig {
            partition_labels,
            ..StorageConfig::default()
        };
        Self::open_with_env(url, &storage, std::env::vars())
    }

    /// Opens `url` (normally `Config::storage_url()`) with the partition labels and S3
    /// settings of `storage`, over the process's `AWS_*` variables.
    pub fn open_config(url: &str, storage: &StorageConfig) -> Result<Store> {
        Self::open_with_env(url, storage, std::env::vars())
    }

    /// [`Store::open_config`] with an explicit environment; only its `AWS_*` variables count.
    pub fn open_with_env(
        url: &str,
        storage: &StorageConfig,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Store> {
        let bad = |reason: String| StoreError::BadUrl {
            url: url.to_string(),
            reason,
        };
        let labels = storage.partition_labels.clone();
        let mut local = None;
        let store: Arc<dyn ObjectStore> = if url == "memory://" || url == "memory:" {
            Arc::new(InMemory::new())
        } else if let Some(parsed) = crate::s3::parse_url(url) {
            let (bucket, prefix) = parsed?;
            crate::s3::open(url, &bucket, &prefix, &storage.s3, env)?
        } else {
            let dir = match url.strip_prefix("file://") {
                Some(rest) => rest,
                None if url.contains("://") => {
                    return Err(bad(
                        "supported schemes are file://, s3:// and memory://".into()
                    ));
                }
                None => url,
            };
            // A push is acknowledged when `write` returns: on a local directory that needs the
            // fsyncs `LocalFileSystem` does not do (see `durable`).
            let durable = Arc::new(
                DurableStore::open(std::path::Path::new(dir)).map_err(|e| bad(e.to_string()))?,
            );
            local = Some(durable.clone());
            durable
        };
        let mut opened = Self::from_object_store(store, url, labels);
        opened.local = local;
        opened.max_partitions_per_push = storage.max_partitions_per_push;
        Ok(opened)
    }

    /// A store over an existing object store (tests, tools).
    pub fn from_object_store(
        store: Arc<dyn ObjectStore>,
        url: &str,
        partition_labels: Vec<String>,
    ) -> Store {
        Store {
            store,
            url: url.to_string(),
            partition_labels: partition_labels.into(),
            max_partitions_per_push: parquetry_model::config::DEFAULT_MAX_PARTITIONS_PER_PUSH,
            catalogs: byte_cache(CATALOG_CACHE_BYTES),
            manifests: byte_cache(MANIFEST_CACHE_BYTES),
            unreadable: quick_cache::sync::Cache::new(UNREADABLE_CACHE_OBJECTS),
            local: None,
            deletes: Default::default(),
            commits: Arc::new(Commits::new(writes_in_flight())),
        }
    }

    /// The object store underneath.
    pub fn object_store(&self) -> Arc<dyn ObjectStore> {
        self.store.clone()
    }

    /// The storage URL it was opened with.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The labels objects are partitioned by, in key order.
    pub fn partition_labels(&self) -> &[String] {
        &self.partition_labels
    }

    /// Every object under `prefix` (a key prefix relative to the store's root, `""` for all),
    /// as (key, size), sorted by key. For tools and tests: queries use [`Store::list`].
    pub async fn list_keys(&self, prefix: &str) -> Result<Vec<(String, u64)>> {
        let prefix = Path::parse(prefix).map_err(object_store::Error::from)?;
        let mut out: Vec<(String, u64)> = self
            .store
            .list(Some(&prefix))
            .map_ok(|m| (m.location.to_string(), m.size))
            .try_collect()
            .await
            .at(&prefix)?;
        out.sort();
        Ok(out)
    }

    /// Tenants with anything stored, from a delimited LIST of the format prefix.
    pub async fn tenants(&self) -> Result<Vec<String>> {
        let root = Path::from(crate::layout::FORMAT_PREFIX);
        self.child_values(&root, "tenant=").await
    }

    /// Days (`YYYY-MM-DD`) with anything stored for `tenant`.
    pub async fn days(&self, tenant: &str) -> Result<Vec<String>> {
        let prefix = crate::layout::tenant_prefix(tenant);
        self.child_values(&prefix, "day=").await
    }

    async fn child_values(&self, prefix: &Path, name: &str) -> Result<Vec<String>> {
        let listing = self
            .store
            .list_with_delimiter(Some(prefix))
            .await
            .at(prefix)?;
        let mut out: Vec<String> = listing
            .common_prefixes
            .iter()
            .filter_map(|p| p.filename())
            .filter_map(|f| f.strip_prefix(name))
            .filter_map(crate::layout::decode_tenant)
            .collect();
        out.sort();
        Ok(out)
    }

    /// The bytes of the object at `key` (as [`Store::list_keys`] names it).
    pub async fn read_key(&self, key: &str) -> Result<bytes::Bytes> {
        let path = Path::parse(key).map_err(object_store::Error::from)?;
        self.read_path(&path).await
    }

    /// A whole stored object; errors name it.
    pub async fn read_path(&self, path: &Path) -> Result<bytes::Bytes> {
        self.store.get(path).await.at(path)?.bytes().await.at(path)
    }

    /// Stores validated streams: encodes one object per (day, partition) on a blocking thread,
    /// then puts them all. Returns only when every object is durable (S3: its PUT answered; a
    /// local directory: `DurableStore` fsynced the file and its directories; the puts run
    /// concurrently so their flushes overlap). A failure part-way leaves whole objects only,
    /// and a retried push is deduplicated at query time. Writes of one tenant that arrive
    /// while others are being stored are stored together (see `commit`).
    pub async fn write(&self, tenant: &str, streams: Vec<StreamEntries>) -> Result<WriteSummary> {
        if streams.iter().all(|s| s.entries.is_empty()) {
            return Ok(WriteSummary::default());
        }
        let store = self.store.clone();
        let labels = self.partition_labels.clone();
        let max_partitions = self.max_partitions_per_push;
        self.commits
            .write(tenant, streams, move |tenant, streams| {
                write_objects(
                    store.clone(),
                    tenant,
                    streams,
                    labels.clone(),
                    max_partitions,
                )
            })
            .await
    }

    /// The live objects of `tenant` that may hold entries in `[start, end)`, pruned by the key
    /// alone. `keep_partition` sees each object's partition values and can reject it.
    ///
    /// Live means what the day's manifest says (principle 4: readers trust the manifest over
    /// the listing): its cold objects, plus the listed hot objects it has not absorbed. A cold
    /// object not yet in a manifest (a compaction in progress or one that crashed) is never
    /// shown, nor is any object of a day that retention has marked for deletion. So every
    /// acknowledged entry is in exactly one returned object, whatever the compactor is doing.
    pub async fn list(
        &self,
        tenant: &str,
        start: i64,
        end: i64,
        keep_partition: impl Fn(&[(String, PartValue)]) -> bool,
    ) -> Result<Vec<DataObject>> {
        let mut out = Vec::new();
        if end <= start {
            return Ok(out);
        }
        use futures::StreamExt;
        let first_day = start.div_euclid(DAY_NS);
        let last_day = (end - 1).div_euclid(DAY_NS);
        let days: Vec<String> = (first_day..=last_day).map(|d| day_of(d * DAY_NS)).collect();
        let tenant_owned = tenant.to_string();
        // Days are independent: a month-long query costs a few round trips, not ninety.
        // Owned arguments keep the futures `Send` (see `catalogs`).
        let mut per_day = futures::stream::iter(days)
            .map(move |day| {
                let tenant = tenant_owned.clone();
                async move { self.live_objects(&tenant, &day).await }
            })
            .buffered(8);
        while let Some(objects) = per_day.next().await {
            for obj in objects? {
                if obj.overlaps(start, end) && keep_partition(&obj.key.partition) {
                    out.push(obj);
                }
            }
        }
        out.sort_by(|a, b| a.path.cmp(&b.path));
        Ok(out)
    }

    /// Every live object of one tenant-day (see [`Store::list`]).
    pub async fn live_objects(&self, tenant: &str, day: &str) -> Result<Vec<DataObject>> {
        // The manifest first, then the listing: an absorbed object is only deleted (and then
        // dropped from later manifests) a grace period after the manifest that absorbed it,
        // so whatever this listing shows, the manifest read before it accounts for.
        let listing = manifest::list_manifests(self.store.as_ref(), tenant, day).await?;
        if listing.deleting.is_some() {
            return Ok(Vec::new());
        }
        let manifest = match listing.newest() {
            Some((v, _)) => self.manifest_version(tenant, day, *v).await?,
            None => Arc::new(Manifest::empty(tenant, day)),
        };
        let absorbed = manifest.absorbed();
        let mut out = Vec::new();
        for c in &manifest.cold {
            let path = manifest::absolute_path(tenant, day, &c.key);
            let Some(key) = ObjectKey::parse(&path) else {
                return Err(StoreError::Corrupt {
                    path: path.to_string(),
                    reason: "manifest names a key that is not a data object key".into(),
                });
            };
            out.push(DataObject {
                key,
                path,
                size: c.size,
            });
        }
        let prefix = day_prefix(tenant, day);
        let mut objects = self.store.list(Some(&prefix));
        while let Some(meta) = objects.try_next().await.at(&prefix)? {
            if manifest::is_manifest_path(&meta.location) {
                continue;
            }
            let Some(key) = ObjectKey::parse(&meta.location) else {
                continue;
            };
            // The key must say what the prefix says: never trust a foreign file.
            if key.tenant != tenant || key.day != day || manifest::is_cold_id(&key.id) {
                continue;
            }
            let hidden = manifest::relative_key(tenant, day, &meta.location)
                .is_some_and(|rel| absorbed.contains(rel.as_str()));
            if !hidden {
                out.push(DataObject {
                    key,
                    path: meta.location,
                    size: meta.size,
                });
            }
        }
        Ok(out)
    }

    /// One manifest version (cached: versions are immutable).
    async fn manifest_version(
        &self,
        tenant: &str,
        day: &str,
        version: u64,
    ) -> Result<Arc<Manifest>> {
        let path = manifest::version_path(tenant, day, version);
        if let Some(m) = self.manifests.get(&path) {
            return Ok(m.value);
        }
        let m = Arc::new(manifest::read_version(self.store.as_ref(), tenant, day, version).await?);
        // About what a cold object's record holds: its key, the absorbed keys, the numbers.
        let bytes = m
            .cold
            .iter()
            .map(|c| 96 + c.key.len() + c.absorbed.iter().map(|a| 24 + a.len()).sum::<usize>())
            .sum::<usize>() as u64;
        self.manifests.insert(
            path,
            Weighed {
                value: m.clone(),
                bytes,
            },
        );
        Ok(m)
    }

    /// The stream catalog of an object, from its footer (cached: objects are immutable).
    pub async fn catalog(&self, obj: &DataObject) -> Result<Arc<StreamCatalog>> {
        if let Some(c) = self.cached(&obj.path) {
            return Ok(c);
        }
        let fetch = RangeFetch {
            store: self.store.as_ref(),
            path: &obj.path,
        };
        let meta = ParquetMetaDataReader::new()
            .with_prefetch_hint(Some(64 * 1024))
            .load_and_finish(fetch, obj.size)
            .await
            .at(&obj.path)?;
        let corrupt = |reason: String| StoreError::Corrupt {
            path: obj.path.to_string(),
            reason,
        };
        let json = meta
            .file_metadata()
            .key_value_metadata()
            .and_then(|kv| kv.iter().find(|k| k.key == CATALOG_KEY))
            .and_then(|k| k.value.clone())
            .ok_or_else(|| corrupt("no stream catalog in footer".into()))?;
        let catalog =
            Arc::new(StreamCatalog::from_json(&json).map_err(|e| corrupt(e.to_string()))?);
        self.catalogs.insert(
            obj.path.clone(),
            Weighed {
                value: catalog.clone(),
                bytes: json.len() as u64,
            },
        );
        Ok(catalog)
    }

    fn cached(&self, path: &Path) -> Option<Arc<StreamCatalog>> {
        self.catalogs.get(path).map(|w| w.value)
    }

    /// Catalogs of many objects, read concurrently, leaving out the objects whose bytes cannot
    /// be decoded: a reader that failed on them would make every acknowledged entry of their
    /// day unreadable because of one bad object. Those come back in the second list (see
    /// [`StoreError::unreadable_object`]); a store that fails to deliver bytes still fails the
    /// call, since retrying may work.
    pub async fn readable_catalogs(
        &self,
        objects: Vec<DataObject>,
    ) -> Result<(Vec<(DataObject, Arc<StreamCatalog>)>, Vec<Unreadable>)> {
        use futures::StreamExt;
        let (mut ok, mut bad) = (Vec::new(), Vec::new());
        let mut unknown = Vec::with_capacity(objects.len());
        for o in objects {
            match self.unreadable.get(&(o.path.clone(), o.size)) {
                Some(u) => bad.push(u),
                None => unknown.push(o),
            }
        }
        let mut read = futures::stream::iter(unknown)
            .map(|o| async move {
                let c = self.catalog(&o).await;
                (o, c)
            })
            .buffered(32);
        while let Some((object, catalog)) = read.next().await {
            match catalog {
                Ok(c) => ok.push((object, c)),
                Err(e) => match e.unreadable_object() {
                    Some(u) => bad.push(self.mark_unreadable(&object, u)),
                    None => return Err(e),
                },
            }
        }
        crate::UNREADABLE_SEEN.fetch_add(bad.len() as u64, std::sync::atomic::Ordering::Relaxed);
        Ok((ok, bad))
    }

    /// Decodes every page of `objects`, one object at a time (memory stays one object's
    /// batches), after a scan failed to decode something it did not name: a data page of an
    /// object whose footer reads fine. Objects that fail are remembered as unreadable, exactly
    /// like a bad footer, so [`Store::readable_catalogs`] leaves them out from then on; they
    /// are returned, with the objects of the list already known to be unreadable (not checked
    /// again): all of them are left out of a retried read. At most `budget` bytes of objects
    /// are checked (the rest are not), since this runs inside a query's time limit; a store
    /// that fails to deliver bytes fails the call.
    pub async fn find_undecodable(
        &self,
        objects: Vec<DataObject>,
        budget: u64,
    ) -> Result<Vec<Unreadable>> {
        let mut found = Vec::new();
        let mut spent = 0u64;
        for o in objects {
            // Known already (another query, or another leaf of this one, may have found it
            // a moment ago): it is left out of the next read all the same.
            if let Some(u) = self.unreadable.get(&(o.path.clone(), o.size)) {
                found.push(u);
                continue;
            }
            spent = spent.saturating_add(o.size);
            if spent > budget {
                tracing::warn!(
                    budget,
                    "stopped checking objects for undecodable pages at the byte budget"
                );
                break;
            }
            let bytes = self.read_path(&o.path).await?;
            let decoded = tokio::task::spawn_blocking(move || decode_every_page(bytes)).await?;
            if let Err(reason) = decoded {
                let u = Unreadable {
                    path: o.path.to_string(),
                    reason,
                };
                crate::UNREADABLE_SEEN.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                found.push(self.mark_unreadable(&o, u));
            }
        }
        Ok(found)
    }

    /// Remembers `object` as unreadable (left out of reads from now on) and says so once.
    fn mark_unreadable(&self, object: &DataObject, u: Unreadable) -> Unreadable {
        tracing::error!(
            object = %u.path,
            reason = %u.reason,
            "object cannot be decoded; left out of reads until it is repaired or removed"
        );
        self.unreadable
            .insert((object.path.clone(), object.size), u.clone());
        u
    }

    /// Catalogs of many objects, read concurrently.
    pub async fn catalogs(&self, objects: &[DataObject]) -> Result<Vec<Arc<StreamCatalog>>> {
        use futures::StreamExt;
        // Owned objects keep the futures free of a borrowed argument, which would make the
        // whole request future fail to be `Send` for any lifetime.
        futures::stream::iter(objects.to_vec())
            .map(|o| async move { self.catalog(&o).await })
            .buffered(32)
            .try_collect()
            .await
    }
}

/// Reads every row of a whole object; the decoder's message when any page fails.
fn decode_every_page(bytes: bytes::Bytes) -> std::result::Result<(), String> {
    let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(bytes)
        .and_then(|b| b.build())
        .map_err(|e| e.to_string())?;
    for batch in reader {
        batch.map_err(|e| e.to_string())?;
    }
    Ok(())
}

/// Byte ranges of one object, for the footer reader.
struct RangeFetch<'a> {
    store: &'a dyn ObjectStore,
    path: &'a Path,
}

impl MetadataFetch for RangeFetch<'_> {
    fn fetch(
        &mut self,
        range: std::ops::Range<u64>,
    ) -> futures::future::BoxFuture<'_, parquet::errors::Result<bytes::Bytes>> {
        Box::pin(async move {
            self.store
                .get_range(self.path, range)
                .await
                .map_err(|e| parquet::errors::ParquetError::External(Box::new(e)))
        })
    }
}

#[cfg(test)]
mod tests {
    use parquetry_model::Labels;

    use super::*;
    use crate::writer::LogEntry;

    const T0: i64 = 1_700_000_000_000_000_000;

    fn stream(svc: &str, n: i64, day_offset: i64) -> StreamEntries {
        StreamEntries {
            labels: Labels::from_pairs([("service_name", svc), ("env", "prod")]),
            entries: (0..n)
                .map(|i| LogEntry {
                    ts_ns: T0 + day_offset * DAY_NS + (n - i) * 1_000,
                    line: format!("line {i} of {svc}").into(),
                    structured_metadata: vec![("trace_id".into(), format!("t{i}").into())],
                })
                .collect(),
        }
    }

    #[tokio::test]
    async fn write_list_and_read_catalogs() {
        let store = Store::open("memory://", vec!["service_name".into()]).unwrap();
        write_list_and_read(&store).await;
    }

    async fn write_list_and_read(store: &Store) {
        let s = store
            .write(
                "fake",
                vec![
                    stream("api", 5, 0),
                    stream("web", 3, 0),
                    stream("api", 2, 1),
                ],
            )
            .await
            .unwrap();
        // (day 0, api), (day 0, web), (day 1, api)
        assert_eq!(s.objects, 3);
        assert_eq!(s.entries, 10);

        let all = store
            .list("fake", T0 - DAY_NS, T0 + 2 * DAY_NS, |_| true)
            .await
            .unwrap();
        assert_eq!(all.len(), 3);
        let api_day0 = store
            .list("fake", T0, T0 + DAY_NS / 2, |p| {
                p[0].1.exact() == Some("api")
            })
            .await
            .unwrap();
        assert_eq!(api_day0.len(), 1);
        let cat = store.catalog(&api_day0[0]).await.unwrap();
        assert_eq!(cat.streams.len(), 1);
        assert_eq!(cat.streams[0].entries, 5);
        assert_eq!(cat.streams[0].labels["service_name"], "api");
        assert_eq!(cat.streams[0].min_ts, T0 + 1_000);
        // Other tenants see nothing; time ranges outside see nothing.
        assert!(
            store
                .list("other", T0 - DAY_NS, T0 + 2 * DAY_NS, |_| true)
                .await
                .unwrap()
                .is_empty()
        );
        assert!(
            store
                .list("fake", T0 + 10 * DAY_NS, T0 + 11 * DAY_NS, |_| true)
                .await
                .unwrap()
                .is_empty()
        );
    }

    #[tokio::test]
    async fn local_directory_keeps_escaped_keys_inside_the_tenant() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path().to_str().unwrap(), vec!["service_name".into()]).unwrap();
        store
            .write("../evil", vec![stream("a/../../b", 2, 0)])
            .await
            .unwrap();
        let found = store
            .list("../evil", T0 - DAY_NS, T0 + DAY_NS, |_| true)
            .await
            .unwrap();
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].key.partition[0].1.exact(), Some("a/../../b"));
        assert_eq!(
            store.catalog(&found[0]).await.unwrap().streams[0].entries,
            2
        );
        // Everything landed under the v1 tree of the store's directory.
        let top: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(top, vec![std::ffi::OsString::from("v1")]);
    }

    use parquetry_test_support::s3::S3Env;

    fn unique_prefix(name: &str) -> String {
        parquetry_test_support::unique_prefix(&format!("store-tests/{name}"))
    }

    fn s3_storage(e: &S3Env) -> StorageConfig {
        StorageConfig {
            s3: parquetry_model::config::S3Config {
                endpoint: Some(e.endpoint.clone()),
                region: Some(e.region.clone()),
                access_key_id: Some(e.access_key_id.clone()),
                secret_access_key: Some(parquetry_model::config::Secret::new(&e.secret_access_key)),
                ..Default::default()
            },
            ..StorageConfig::default()
        }
    }

    #[tokio::test]
    async fn s3_write_list_and_read_catalogs_with_config_keys() {
        let Some(e) = S3Env::optional() else { return };
        let url = format!("s3://{}/{}", e.bucket, unique_prefix("config"));
        let store = Store::open_with_env(&url, &s3_storage(&e), []).unwrap();
        write_list_and_read(&store).await;
        // The prefix isolates: the same bucket under another prefix holds nothing.
        let other = format!("s3://{}/{}", e.bucket, unique_prefix("other"));
        let other = Store::open_with_env(&other, &s3_storage(&e), []).unwrap();
        assert!(
            other
                .list("fake", T0 - DAY_NS, T0 + 2 * DAY_NS, |_| true)
                .await
                .unwrap()
                .is_empty()
        );
    }

    #[tokio::test]
    async fn s3_from_the_aws_environment_alone() {
        let Some(e) = S3Env::optional() else { return };
        // What Lambda provides, plus the endpoint of an S3-compatible server.
        let aws_env = |secret: &str| {
            vec![
                ("AWS_ACCESS_KEY_ID".to_string(), e.access_key_id.clone()),
                ("AWS_SECRET_ACCESS_KEY".to_string(), secret.to_string()),
                ("AWS_REGION".to_string(), e.region.clone()),
                ("AWS_ENDPOINT_URL".to_string(), e.endpoint.clone()),
            ]
        };
        let url = format!("s3://{}/{}", e.bucket, unique_prefix("env"));
        let storage = StorageConfig::default();
        let store = Store::open_with_env(&url, &storage, aws_env(&e.secret_access_key)).unwrap();
        let s = store
            .write("fake", vec![stream("api", 3, 0)])
            .await
            .unwrap();
        assert_eq!(s.objects, 1);
        let found = store
            .list("fake", T0 - DAY_NS, T0 + DAY_NS, |_| true)
            .await
            .unwrap();
        assert_eq!(found.len(), 1);
        assert_eq!(
            store.catalog(&found[0]).await.unwrap().streams[0].entries,
            3
        );

        // Signatures are checked: a wrong secret is refused, not ignored.
        let wrong = Store::open_with_env(&url, &storage, aws_env("not-the-secret")).unwrap();
        let err = wrong
            .write("fake", vec![stream("api", 1, 0)])
            .await
            .unwrap_err()
            .to_string();
        assert!(!err.contains("not-the-secret"), "{err}");
    }

    #[tokio::test]
    async fn s3_create_only_puts_never_overwrite() {
        let Some(e) = S3Env::optional() else { return };
        let url = format!("s3://{}/{}", e.bucket, unique_prefix("create"));
        let store = Store::open_with_env(&url, &s3_storage(&e), []).unwrap();
        let os = store.object_store();
        let path = Path::from("v1/once");
        let create = || PutOptions {
            mode: PutMode::Create,
            ..Default::default()
        };
        os.put_opts(&path, PutPayload::from_static(b"first"), create())
            .await
            .unwrap();
        let again = os
            .put_opts(&path, PutPayload::from_static(b"second"), create())
            .await;
        assert!(
            matches!(again, Err(object_store::Error::AlreadyExists { .. })),
            "{again:?}"
        );
        let got = os.get(&path).await.unwrap().bytes().await.unwrap();
        assert_eq!(&got[..], b"first");
    }
}
