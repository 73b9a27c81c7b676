//! An [`ObjectStore`] that fails on demand, for crash tests: every put (plain or multipart),
//! delete and list is counted, and from the k-th one on every such operation fails, as if the
//! process had died there. Reads (get, head) always pass, so what the failed run left behind
//! can be inspected and a later run can recover.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use futures::StreamExt;
use futures::stream::BoxStream;
use object_store::path::Path;
use object_store::{
    CopyOptions, ListResult, MultipartUpload, ObjectMeta, ObjectStore, PutMultipartOptions,
    PutOptions, PutPayload, PutResult,
};

/// See the module documentation.
#[derive(Debug)]
pub struct FaultyStore {
    inner: Arc<dyn ObjectStore>,
    counters: Arc<Counters>,
}

#[derive(Debug)]
struct Counters {
    ops: AtomicU64,
    /// Operations numbered from 1; `u64::MAX` never fails.
    fail_from: AtomicU64,
}

impl FaultyStore {
    /// Wraps `inner`, failing nothing until told to.
    pub fn new(inner: Arc<dyn ObjectStore>) -> Self {
        FaultyStore {
            inner,
            counters: Arc::new(Counters {
                ops: AtomicU64::new(0),
                fail_from: AtomicU64::new(u64::MAX),
            }),
        }
    }

    /// Fails the `k`-th counted operation from now (1-based) and every one after it.
    pub fn crash_at(&self, k: u64) {
        self.counters.ops.store(0, Ordering::SeqCst);
        self.counters.fail_from.store(k.max(1), Ordering::SeqCst);
    }

    /// Stops failing and restarts the count.
    pub fn heal(&self) {
        self.counters.ops.store(0, Ordering::SeqCst);
        self.counters.fail_from.store(u64::MAX, Ordering::SeqCst);
    }

    /// Counted operations since the last `crash_at`/`heal`.
    pub fn ops(&self) -> u64 {
        self.counters.ops.load(Ordering::SeqCst)
    }
}

impl Counters {
    fn check(&self, what: &str, path: Option<&Path>) -> object_store::Result<()> {
        let n = self.ops.fetch_add(1, Ordering::SeqCst) + 1;
        if n >= self.fail_from.load(Ordering::SeqCst) {
            return Err(object_store::Error::Generic {
                store: "faulty",
                source: format!(
                    "injected failure at operation {n} ({what} {})",
                    path.map(|p| p.to_string()).unwrap_or_default()
                )
                .into(),
            });
        }
        Ok(())
    }
}

impl fmt::Display for FaultyStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Faulty({})", self.inner)
    }
}

crate::delegating_object_store! {
    impl ObjectStore for FaultyStore => self.inner;
    delegate { get_opts, get_ranges }

    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> object_store::Result<PutResult> {
        self.counters.check("put", Some(location))?;
        self.inner.put_opts(location, payload, opts).await
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> object_store::Result<Box<dyn MultipartUpload>> {
        self.counters.check("put_multipart", Some(location))?;
        self.inner.put_multipart_opts(location, opts).await
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, object_store::Result<Path>>,
    ) -> BoxStream<'static, object_store::Result<Path>> {
        // Each path is one counted delete; a failing one never reaches the inner store.
        let counters = self.counters.clone();
        let inner = self.inner.clone();
        locations
            .then(move |p| {
                let counters = counters.clone();
                let inner = inner.clone();
                async move {
                    let p = p?;
                    counters.check("delete", Some(&p))?;
                    let mut one = inner.delete_stream(futures::stream::iter([Ok(p)]).boxed());
                    match one.next().await {
                        Some(r) => r,
                        None => Err(object_store::Error::Generic {
                            store: "faulty",
                            source: "delete yielded nothing".into(),
                        }),
                    }
                }
            })
            .boxed()
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        match self.counters.check("list", prefix) {
            Ok(()) => self.inner.list(prefix),
            Err(e) => futures::stream::once(async move { Err(e) }).boxed(),
        }
    }

    fn list_with_offset(
        &self,
        prefix: Option<&Path>,
        offset: &Path,
    ) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        match self.counters.check("list", prefix) {
            Ok(()) => self.inner.list_with_offset(prefix, offset),
            Err(e) => futures::stream::once(async move { Err(e) }).boxed(),
        }
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> object_store::Result<ListResult> {
        self.counters.check("list", prefix)?;
        self.inner.list_with_delimiter(prefix).await
    }

    async fn copy_opts(
        &self,
        from: &Path,
        to: &Path,
        options: CopyOptions,
    ) -> object_store::Result<()> {
        self.counters.check("copy", Some(to))?;
        self.inner.copy_opts(from, to, options).await
    }
}
