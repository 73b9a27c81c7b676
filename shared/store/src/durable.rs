//! Durable writes on a local directory.
//!
//! `object_store`'s `LocalFileSystem` writes each object to a staging file `<key>#<n>` and
//! links or renames it into place, without fsync: after a power loss an acknowledged push could
//! be missing, empty or torn. [`DurableStore`] wraps it so that every put, completed multipart
//! upload, copy, rename and delete returns only once the new file and every directory whose
//! entries changed are on stable storage. S3 needs nothing of the kind: an object is durable
//! when its PUT answers 200.
//!
//! Why a wrapper rather than explicit calls after each write: every mutation the store makes
//! (pushes, the compactor's objects and manifests, retention's marker and deletions, and any
//! added later) is covered without its call site having to remember. Each object is synced on
//! its own blocking thread right after it is stored, so the objects of one push (one per
//! partition) are synced concurrently: the filesystem then folds their flushes into one journal
//! commit, measured several times faster than syncing them one after the other.
//!
//! Which directories: the file's parent always (it gained the file and lost the staging name),
//! and each ancestor up to the store root whose child may be new. A directory whose own entry
//! this process has already made durable is remembered, so the steady state is one fsync of
//! the file and one of its directory; each fsync of an unchanged directory still costs a disk
//! cache flush.
//!
//! It also finds the staging files a killed process leaves behind, which `LocalFileSystem`'s
//! listing never shows ([`DurableStore::remove_stale_temp_files`]).

use std::collections::{BTreeSet, HashSet};
use std::fmt;
use std::fs::File;
use std::io;
use std::path::{Path as FsPath, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use futures::StreamExt;
use futures::stream::BoxStream;
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use object_store::{
    CopyOptions, MultipartUpload, PutMultipartOptions, PutOptions, PutPayload, PutResult,
    RenameOptions, UploadPart,
};

/// Staging files younger than this are never deleted: a push or compaction may still be
/// writing one. Pushes write theirs in one go and a compaction appends a part every few
/// seconds, so an hour without a write means the writer is gone.
pub const TEMP_FILE_MIN_AGE: Duration = Duration::from_secs(3600);

/// Directories remembered as durable; past this the memory is dropped, which costs only one
/// extra round of ancestor fsyncs per directory.
const DURABLE_DIRS_MAX: usize = 100_000;

/// See the module documentation.
#[derive(Debug)]
pub struct DurableStore {
    inner: LocalFileSystem,
    state: Arc<SyncState>,
}

#[derive(Debug)]
struct SyncState {
    root: PathBuf,
    /// Directories whose own entry in their parent is known to be on stable storage.
    durable_dirs: Mutex<HashSet<PathBuf>>,
    /// Every path fsynced, in order: fsync cannot be observed from outside, so tests look here.
    #[cfg(test)]
    synced: Mutex<Vec<PathBuf>>,
}

impl DurableStore {
    /// Opens (creating it if needed) the directory `dir` as a store root. Directories created
    /// here are made durable too, so the root survives a power loss along with what is in it.
    pub fn open(dir: &FsPath) -> io::Result<DurableStore> {
        let created = create_dir_all_durably(dir)?;
        let root = std::fs::canonicalize(dir)?;
        let inner = LocalFileSystem::new_with_prefix(&root).map_err(io::Error::other)?;
        let state = SyncState {
            root,
            durable_dirs: Mutex::new(HashSet::new()),
            #[cfg(test)]
            synced: Mutex::new(Vec::new()),
        };
        for dir in &created {
            state.record(dir);
        }
        Ok(DurableStore {
            inner,
            state: Arc::new(state),
        })
    }

    /// The store's root directory (canonical).
    pub fn root(&self) -> &FsPath {
        &self.state.root
    }

    fn fs_path(&self, location: &Path) -> object_store::Result<PathBuf> {
        self.inner.path_to_filesystem(location)
    }

    /// Deletes the staging files (`<name>#<digits>`, the names `LocalFileSystem` writes before
    /// linking an object into place, which its listing hides) under `prefix` that were last
    /// modified at least `min_age` ago. Returns how many were deleted. Nothing that is listed
    /// as an object is ever touched.
    pub async fn remove_stale_temp_files(
        &self,
        prefix: &Path,
        min_age: Duration,
    ) -> io::Result<u64> {
        let dir = self
            .inner
            .path_to_filesystem(prefix)
            .map_err(io::Error::other)?;
        let root = self.state.root.clone();
        blocking(move || {
            if !dir.starts_with(&root) {
                return Err(io::Error::other(format!(
                    "{} is outside the store root",
                    dir.display()
                )));
            }
            remove_stale_temp_files(&dir, min_age)
        })
        .await
    }

    /// Paths fsynced since the store was opened.
    #[cfg(test)]
    pub(crate) fn synced_paths(&self) -> Vec<PathBuf> {
        lock(&self.state.synced).clone()
    }
}

/// Runs `f` on a blocking thread when inside a runtime, inline otherwise (as `LocalFileSystem`
/// itself does).
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> io::Result<T> + Send + 'static,
) -> io::Result<T> {
    match tokio::runtime::Handle::try_current() {
        Ok(handle) => handle
            .spawn_blocking(f)
            .await
            .map_err(|e| io::Error::other(e.to_string()))?,
        Err(_) => f(),
    }
}

/// A poisoned lock only means a sync panicked; the set it guards is still valid.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn sync_error(e: io::Error) -> object_store::Error {
    object_store::Error::Generic {
        store: "DurableStore",
        source: Box::new(e),
    }
}

impl SyncState {
    /// Makes `files` and their new directory entries durable, and the removal of entries
    /// from each of `shrunk` (directories that only lost entries).
    async fn sync(
        self: &Arc<Self>,
        files: Vec<PathBuf>,
        shrunk: Vec<PathBuf>,
    ) -> object_store::Result<()> {
        let state = self.clone();
        blocking(move || state.sync_blocking(&files, &shrunk))
            .await
            .map_err(sync_error)
    }

    fn sync_blocking(&self, files: &[PathBuf], shrunk: &[PathBuf]) -> io::Result<()> {
        for f in files {
            File::open(f)?.sync_all()?;
            self.record(f);
        }
        let mut dirs: BTreeSet<PathBuf> = shrunk.iter().cloned().collect();
        let mut newly_durable = Vec::new();
        {
            let known = lock(&self.durable_dirs);
            for parent in files.iter().filter_map(|f| f.parent()) {
                dirs.insert(parent.to_path_buf());
                // While a directory may itself be new, its parent changed too.
                let mut dir = parent;
                while dir != self.root && dir.starts_with(&self.root) && !known.contains(dir) {
                    let Some(up) = dir.parent() else { break };
                    newly_durable.push(dir.to_path_buf());
                    dirs.insert(up.to_path_buf());
                    dir = up;
                }
            }
        }
        for d in &dirs {
            sync_dir(d)?;
            self.record(d);
        }
        // Only after every fsync succeeded: a directory in the set must really be durable.
        let mut known = lock(&self.durable_dirs);
        if known.len() + newly_durable.len() > DURABLE_DIRS_MAX {
            known.clear();
        }
        known.extend(newly_durable);
        Ok(())
    }

    #[cfg(test)]
    fn record(&self, path: &FsPath) {
        lock(&self.synced).push(path.to_path_buf());
    }

    #[cfg(not(test))]
    fn record(&self, _path: &FsPath) {}
}

#[cfg(unix)]
fn sync_dir(dir: &FsPath) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Only Unix lets a directory be opened and fsynced; elsewhere (never a production target)
/// directory entries are as durable as the filesystem makes them.
#[cfg(not(unix))]
fn sync_dir(_dir: &FsPath) -> io::Result<()> {
    Ok(())
}

/// `create_dir_all`, then fsync the parent of each directory it created. Returns the
/// directories synced.
fn create_dir_all_durably(dir: &FsPath) -> io::Result<Vec<PathBuf>> {
    let mut missing = Vec::new();
    let mut probe = Some(dir);
    while let Some(p) = probe {
        if p.as_os_str().is_empty() || p.exists() {
            break;
        }
        missing.push(p.to_path_buf());
        probe = p.parent();
    }
    std::fs::create_dir_all(dir)?;
    let mut synced = Vec::new();
    for created in &missing {
        let parent = match created.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        sync_dir(&parent)?;
        synced.push(parent);
    }
    Ok(synced)
}

/// True for `LocalFileSystem`'s staging names, `<name>#<digits>`: exactly the names its
/// listing hides (it splits at the first `#`), so no object it would list is ever taken for
/// one. Object keys never contain `#` (key components escape it).
pub fn is_temp_file_name(name: &str) -> bool {
    name.split_once('#')
        .is_some_and(|(_, n)| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
}

fn remove_stale_temp_files(dir: &FsPath, min_age: Duration) -> io::Result<u64> {
    let now = SystemTime::now();
    let mut removed = 0;
    let mut pending = vec![dir.to_path_buf()];
    while let Some(d) = pending.pop() {
        let entries = match std::fs::read_dir(&d) {
            Ok(e) => e,
            // Nothing stored there (yet), or another pass removed it meanwhile.
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        };
        for entry in entries {
            let entry = entry?;
            // Not following symlinks: nothing outside the store is ever deleted.
            let kind = entry.file_type()?;
            if kind.is_dir() {
                pending.push(entry.path());
                continue;
            }
            if !kind.is_file() || !entry.file_name().to_str().is_some_and(is_temp_file_name) {
                continue;
            }
            let modified = match entry.metadata().and_then(|m| m.modified()) {
                Ok(m) => m,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(e),
            };
            // A clock that went backwards makes the file look new: kept.
            if now.duration_since(modified).is_ok_and(|age| age >= min_age) {
                match std::fs::remove_file(entry.path()) {
                    Ok(()) => {
                        tracing::info!(path = %entry.path().display(), "removed stale staging file");
                        removed += 1;
                    }
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                    Err(e) => return Err(e),
                }
            }
        }
    }
    Ok(removed)
}

impl fmt::Display for DurableStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Durable({})", self.inner)
    }
}

crate::delegating_object_store! {
    impl ObjectStore for DurableStore => self.inner;
    delegate { get_opts, get_ranges, list, list_with_offset, list_with_delimiter }

    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> object_store::Result<PutResult> {
        let file = self.fs_path(location)?;
        let put = self.inner.put_opts(location, payload, opts).await?;
        self.state.sync(vec![file], Vec::new()).await?;
        Ok(put)
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> object_store::Result<Box<dyn MultipartUpload>> {
        let file = self.fs_path(location)?;
        let inner = self.inner.put_multipart_opts(location, opts).await?;
        Ok(Box::new(DurableUpload {
            inner,
            file,
            state: self.state.clone(),
        }))
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, object_store::Result<Path>>,
    ) -> BoxStream<'static, object_store::Result<Path>> {
        // A delete that is lost in a power loss could bring back an object whose removal a
        // later (durable) manifest relies on; so the directories are synced, once per
        // directory for the whole stream, before any result is reported.
        let deleted = self.inner.delete_stream(locations);
        let inner = self.inner.clone();
        let state = self.state.clone();
        futures::stream::once(async move {
            let results: Vec<object_store::Result<Path>> = deleted.collect().await;
            let dirs: BTreeSet<PathBuf> = results
                .iter()
                .filter_map(|r| r.as_ref().ok())
                .filter_map(|p| inner.path_to_filesystem(p).ok())
                .filter_map(|p| p.parent().map(FsPath::to_path_buf))
                .collect();
            if dirs.is_empty() {
                return results;
            }
            match state.sync(Vec::new(), dirs.into_iter().collect()).await {
                Ok(()) => results,
                Err(e) => {
                    let msg = e.to_string();
                    results
                        .into_iter()
                        .map(|r| {
                            r.and_then(|_| {
                                Err(object_store::Error::Generic {
                                    store: "DurableStore",
                                    source: msg.clone().into(),
                                })
                            })
                        })
                        .collect()
                }
            }
        })
        .flat_map(futures::stream::iter)
        .boxed()
    }

    async fn copy_opts(
        &self,
        from: &Path,
        to: &Path,
        options: CopyOptions,
    ) -> object_store::Result<()> {
        let file = self.fs_path(to)?;
        self.inner.copy_opts(from, to, options).await?;
        self.state.sync(vec![file], Vec::new()).await
    }

    async fn rename_opts(
        &self,
        from: &Path,
        to: &Path,
        options: RenameOptions,
    ) -> object_store::Result<()> {
        let file = self.fs_path(to)?;
        let source_dir = self
            .fs_path(from)?
            .parent()
            .map(FsPath::to_path_buf)
            .into_iter()
            .collect();
        self.inner.rename_opts(from, to, options).await?;
        self.state.sync(vec![file], source_dir).await
    }
}

/// A multipart upload whose completion is durable.
#[derive(Debug)]
struct DurableUpload {
    inner: Box<dyn MultipartUpload>,
    file: PathBuf,
    state: Arc<SyncState>,
}

#[async_trait::async_trait]
impl MultipartUpload for DurableUpload {
    fn put_part(&mut self, data: PutPayload) -> UploadPart {
        self.inner.put_part(data)
    }

    async fn complete(&mut self) -> object_store::Result<PutResult> {
        let done = self.inner.complete().await?;
        self.state.sync(vec![self.file.clone()], Vec::new()).await?;
        Ok(done)
    }

    async fn abort(&mut self) -> object_store::Result<()> {
        self.inner.abort().await
    }
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use bytes::Bytes;
    use object_store::{ObjectStore, ObjectStoreExt, PutMode};
    use parquetry_model::Labels;

    use super::*;
    use crate::compact::NoProgress;
    use crate::writer::{LogEntry, StreamEntries};
    use crate::{CompactOptions, Store};

    const T0: i64 = 1_700_000_000_000_000_000;

    fn push(svc: &str, n: i64) -> Vec<StreamEntries> {
        vec![StreamEntries {
            labels: Labels::from_pairs([("service_name", svc)]),
            entries: (0..n)
                .map(|i| LogEntry {
                    ts_ns: T0 + i * 1_000,
                    line: format!("line {i}").into(),
                    structured_metadata: Vec::new(),
                })
                .collect(),
        }]
    }

    fn durable(store: &Store) -> &DurableStore {
        store.local.as_deref().expect("a local store is durable")
    }

    /// Every regular file under `dir`, recursively.
    fn files_under(dir: &FsPath) -> Vec<PathBuf> {
        let mut out = Vec::new();
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                out.extend(files_under(&p));
            } else {
                out.push(p);
            }
        }
        out.sort();
        out
    }

    /// `dir` and its ancestors up to and including `root`.
    fn chain(dir: &FsPath, root: &FsPath) -> Vec<PathBuf> {
        dir.ancestors()
            .take_while(|d| d.starts_with(root))
            .map(FsPath::to_path_buf)
            .collect()
    }

    #[tokio::test]
    async fn a_push_syncs_its_file_and_every_new_directory_up_to_the_root() {
        let tmp = tempfile::tempdir().unwrap();
        let store = Store::open(tmp.path().to_str().unwrap(), vec!["service_name".into()]).unwrap();
        let d = durable(&store);
        let root = d.root().to_path_buf();
        let before = d.synced_paths().len();

        store.write("fake", push("api", 3)).await.unwrap();
        let first = files_under(&root);
        assert_eq!(first.len(), 1, "{first:?}");
        let synced: Vec<PathBuf> = d.synced_paths()[before..].to_vec();
        // The file, then its directory and every ancestor up to the root (all new).
        let dir = first[0].parent().unwrap();
        assert_eq!(synced[0], first[0]);
        let dirs: BTreeSet<_> = synced[1..].iter().cloned().collect();
        let want: BTreeSet<_> = chain(dir, &root).into_iter().collect();
        assert_eq!(dirs, want);
        // v1 / tenant / day / partition, and the root itself.
        assert_eq!(dirs.len(), 5, "{dirs:?}");

        // A second push into the same directory: its file and that directory only, since the
        // directories above it are already durable.
        let before = d.synced_paths().len();
        store.write("fake", push("api", 2)).await.unwrap();
        let new: Vec<PathBuf> = files_under(&root)
            .into_iter()
            .filter(|f| !first.contains(f))
            .collect();
        assert_eq!(new.len(), 1);
        assert_eq!(
            d.synced_paths()[before..],
            [new[0].clone(), dir.to_path_buf()]
        );

        // A new partition: its directory is new, so the day directory is synced too.
        let before = d.synced_paths().len();
        store.write("fake", push("web", 2)).await.unwrap();
        let synced = d.synced_paths()[before..].to_vec();
        let day = dir.parent().unwrap();
        let web = files_under(&day.join("service_name=web"));
        assert_eq!(
            synced,
            [
                web[0].clone(),
                day.to_path_buf(),
                day.join("service_name=web")
            ]
        );
    }

    #[tokio::test]
    async fn compaction_objects_manifests_and_deletes_are_synced() {
        let tmp = tempfile::tempdir().unwrap();
        let store = Store::open(tmp.path().to_str().unwrap(), vec!["service_name".into()]).unwrap();
        for _ in 0..3 {
            store.write("fake", push("api", 5)).await.unwrap();
        }
        let d = durable(&store);
        let before = d.synced_paths().len();
        let opts = CompactOptions {
            hot_min_age: Duration::ZERO,
            target_size: 1 << 30,
            delete_delay: Duration::ZERO,
            max_inputs: 100,
        };
        let s = store.compact(&opts, &NoProgress).await.unwrap();
        assert_eq!((s.cold_written, s.absorbed_deleted), (1, 3), "{s:?}");
        let synced = d.synced_paths()[before..].to_vec();
        let files = files_under(d.root());
        let cold = files
            .iter()
            .find(|f| f.extension().is_some_and(|e| e == "parquet"))
            .unwrap();
        let manifests: Vec<_> = files
            .iter()
            .filter(|f| f.extension().is_some_and(|e| e == "json"))
            .collect();
        assert!(!manifests.is_empty());
        assert!(synced.contains(cold), "{synced:?}");
        for m in manifests {
            assert!(synced.contains(m), "{m:?} not in {synced:?}");
            assert!(synced.contains(&m.parent().unwrap().to_path_buf()));
        }
        // The deletes of the absorbed objects: their directory, after the cold object.
        let partition = cold.parent().unwrap().to_path_buf();
        let first_cold = synced.iter().position(|p| p == cold).unwrap();
        assert!(synced[first_cold + 1..].contains(&partition), "{synced:?}");
    }

    #[tokio::test]
    async fn copies_renames_and_create_conflicts() {
        let tmp = tempfile::tempdir().unwrap();
        let d = DurableStore::open(&tmp.path().join("new/root")).unwrap();
        let root = d.root().to_path_buf();
        // Opening created two directories: their parents were synced.
        assert_eq!(
            d.synced_paths(),
            [tmp.path().join("new"), tmp.path().to_path_buf()]
        );
        let a = Path::from("a/x");
        let create = || PutOptions {
            mode: PutMode::Create,
            ..Default::default()
        };
        d.put_opts(&a, PutPayload::from_static(b"1"), create())
            .await
            .unwrap();
        // A failed create syncs nothing and leaves no staging file.
        let n = d.synced_paths().len();
        let again = d
            .put_opts(&a, PutPayload::from_static(b"2"), create())
            .await;
        assert!(matches!(
            again,
            Err(object_store::Error::AlreadyExists { .. })
        ));
        assert_eq!(d.synced_paths().len(), n);
        d.copy(&a, &Path::from("b/y")).await.unwrap();
        assert!(d.synced_paths().contains(&root.join("b/y")));
        d.rename(&Path::from("b/y"), &Path::from("c/z"))
            .await
            .unwrap();
        // The new name and its new directory, and the directory the old name left.
        let synced = d.synced_paths();
        for p in ["c/z", "c", "b"] {
            assert!(synced.contains(&root.join(p)), "{p} not in {synced:?}");
        }
        assert_eq!(
            d.get(&Path::from("c/z"))
                .await
                .unwrap()
                .bytes()
                .await
                .unwrap(),
            Bytes::from_static(b"1")
        );
        assert_eq!(files_under(&root), [root.join("a/x"), root.join("c/z")]);
    }

    #[tokio::test]
    async fn stale_staging_files_are_found_and_old_ones_removed() {
        let tmp = tempfile::tempdir().unwrap();
        let d = DurableStore::open(tmp.path()).unwrap();
        let root = d.root().to_path_buf();
        std::fs::create_dir_all(root.join("p/q")).unwrap();
        let old = SystemTime::now() - Duration::from_secs(7200);
        for name in ["p/x.parquet#1", "p/q/y.json#12"] {
            let f = File::create(root.join(name)).unwrap();
            f.set_modified(old).unwrap();
        }
        // Fresh staging file, and old files that are not staging files.
        File::create(root.join("p/z.parquet#2")).unwrap();
        for name in ["p/a#b", "p/c#", "p/d.parquet"] {
            File::create(root.join(name))
                .unwrap()
                .set_modified(old)
                .unwrap();
        }
        // The listing does not show staging files: why the sweep walks the directory.
        let listed: Vec<String> = d
            .list(None)
            .map(|m| m.unwrap().location.to_string())
            .collect()
            .await;
        assert_eq!(listed.len(), 3, "{listed:?}");
        assert!(!listed.iter().any(|l| is_temp_file_name(l)), "{listed:?}");
        let n = d
            .remove_stale_temp_files(&Path::from("p"), TEMP_FILE_MIN_AGE)
            .await
            .unwrap();
        assert_eq!(n, 2);
        assert_eq!(
            files_under(&root.join("p")),
            ["p/a#b", "p/c#", "p/d.parquet", "p/z.parquet#2"].map(|n| root.join(n))
        );
        // A prefix with nothing stored yet is not an error.
        let none = d
            .remove_stale_temp_files(&Path::from("nothing/here"), Duration::ZERO)
            .await
            .unwrap();
        assert_eq!(none, 0);
    }

    #[test]
    fn temp_file_names() {
        assert!(is_temp_file_name("1-2-abc.parquet#1"));
        assert!(is_temp_file_name("00000000000000000001.json#42"));
        assert!(!is_temp_file_name("x.parquet"));
        assert!(!is_temp_file_name("x#"));
        assert!(!is_temp_file_name("x#1a"));
        // LocalFileSystem lists this one as an object: it must never be deleted as staging.
        assert!(!is_temp_file_name("x#a#1"));
    }

    /// Push throughput with and without fsync, for docs/benchmarks.md:
    /// `cargo test --release -p parquetry-store --lib durable::tests::push_throughput -- \
    ///  --ignored --nocapture`. Three shapes: big and medium batches (10,000 or 1,000 streams
    /// of six services, one entry each: six objects of ~500 or ~50 KB) and a trickle (one
    /// entry of one stream: one object), each from 1 and 4 concurrent clients
    /// (PARQUETRY_BENCH_PUSHES per client, default 50, 300 and 1,000).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    #[ignore]
    async fn push_throughput() {
        let pushes = |default: usize| {
            std::env::var("PARQUETRY_BENCH_PUSHES")
                .ok()
                .and_then(|v| v.parse().ok())
                .unwrap_or(default)
        };
        for (shape, streams, per_client) in [
            ("10000x1", 10_000, pushes(50)),
            ("1000x1", 1_000, pushes(300)),
            ("1x1", 1, pushes(1_000)),
        ] {
            let mut generator = parquetry_loggen::LogGen::new(42, streams, T0, 1_000_000);
            let bodies: Vec<(Vec<StreamEntries>, u64)> = (0..per_client * 4)
                .map(|_| {
                    let mut raw = 0;
                    let streams = generator
                        .batch(1)
                        .into_iter()
                        .map(|s| StreamEntries {
                            labels: Labels::from_pairs(
                                s.labels.iter().map(|(k, v)| (k.as_str(), v.as_str())),
                            ),
                            entries: s
                                .entries
                                .into_iter()
                                .map(|e| {
                                    raw += e.line.len() as u64;
                                    LogEntry {
                                        ts_ns: e.ts_ns,
                                        line: e.line.into(),
                                        structured_metadata: vec![(
                                            "trace_id".into(),
                                            e.trace_id.into(),
                                        )],
                                    }
                                })
                                .collect(),
                        })
                        .collect();
                    (streams, raw)
                })
                .collect();
            for clients in [1usize, 4] {
                for fsync in [false, true] {
                    let tmp = tempfile::tempdir().unwrap();
                    let url = tmp.path().to_str().unwrap().to_string();
                    let store = Arc::new(if fsync {
                        Store::open(&url, vec!["service_name".into()]).unwrap()
                    } else {
                        let plain = LocalFileSystem::new_with_prefix(tmp.path()).unwrap();
                        Store::from_object_store(Arc::new(plain), &url, vec!["service_name".into()])
                    });
                    let work = &bodies[..per_client * clients];
                    let raw: u64 = work.iter().map(|(_, r)| r).sum();
                    let t = Instant::now();
                    let tasks: Vec<_> = work
                        .chunks(per_client)
                        .map(|chunk| {
                            let (store, chunk) = (store.clone(), chunk.to_vec());
                            tokio::spawn(async move {
                                let mut objects = 0;
                                for (streams, _) in chunk {
                                    objects += store.write("fake", streams).await.unwrap().objects;
                                }
                                objects
                            })
                        })
                        .collect();
                    let mut objects = 0;
                    for t in tasks {
                        objects += t.await.unwrap();
                    }
                    let secs = t.elapsed().as_secs_f64();
                    let n = work.len() as f64;
                    println!(
                        "shape={shape} clients={clients} fsync={fsync}: {} pushes, {objects} \
                         objects, {:.1} MB raw in {secs:.2}s: {:.0} pushes/s, {:.0} objects/s, \
                         {:.1} MB/s raw, {:.2} ms per push per client",
                        work.len(),
                        raw as f64 / 1e6,
                        n / secs,
                        objects as f64 / secs,
                        raw as f64 / 1e6 / secs,
                        secs * 1e3 * clients as f64 / n,
                    );
                }
            }
        }
    }
}
