//! Group commit of pushes: writes of one tenant that arrive while earlier ones are being
//! encoded and put wait, and are then stored together as one write.
//!
//! Every write costs the same fixed work whatever it holds: an object per (day, partition),
//! each with its Parquet writer and footer, the stream catalog of every stream in it, a file
//! created, fsynced and renamed (or a PUT), and later an input for the compactor to open.
//! Agents push small batches often and many at once, so a busy tenant's pushes are mostly
//! that fixed work. Combining what queued up during one write spreads it over all of them.
//! Nothing waits for a batch to fill: a write that finds a free slot starts at once, so a
//! lone push is stored exactly as before, and only pushes that would otherwise run
//! alongside one another are combined.
//!
//! Each caller still returns only when its own entries are durable, with the write's error
//! if it failed (every caller of a failed write gets it and retries; a retry duplicates
//! nothing a query can see, since identical entries of a stream are stored once). The write
//! itself runs in a task of its own, so a caller that goes away (a client that disconnects)
//! cannot abandon the entries of the others in its batch.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::oneshot;

use crate::store::WriteSummary;
use crate::writer::StreamEntries;
use crate::{Result, StoreError};

/// Raw line bytes one combined write takes from the queue at most; the first waiting write
/// is always taken, however large. Bounds the memory and the latency of one write: 16 MiB
/// of lines encode in well under a second.
const MAX_BATCH_LINE_BYTES: usize = 16 << 20;

/// The queues of writes waiting, per tenant.
#[derive(Debug)]
pub(crate) struct Commits {
    /// Writes per tenant that may run at once. More than one keeps several cores encoding
    /// when one tenant pushes far more than one write can take; each running write combines
    /// whatever queued up while it was busy.
    max_in_flight: usize,
    /// See [`MAX_BATCH_LINE_BYTES`].
    max_batch_line_bytes: usize,
    tenants: Mutex<HashMap<String, Tenant>>,
}

#[derive(Debug, Default)]
struct Tenant {
    in_flight: usize,
    waiting: Vec<Waiting>,
}

#[derive(Debug)]
struct Waiting {
    streams: Vec<StreamEntries>,
    entries: u64,
    line_bytes: usize,
    done: oneshot::Sender<Result<WriteSummary>>,
}

impl Commits {
    pub(crate) fn new(max_in_flight: usize) -> Commits {
        Commits {
            max_in_flight: max_in_flight.max(1),
            max_batch_line_bytes: MAX_BATCH_LINE_BYTES,
            tenants: Mutex::new(HashMap::new()),
        }
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<String, Tenant>> {
        // Nothing panics while holding the lock, and the map stays consistent if it did.
        self.tenants.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Stores `streams` of `tenant` with `write`, alone or together with other writes that
    /// queue up meanwhile; returns once they are durable. The summary's `entries` are this
    /// call's entries (before identical ones are dropped); `objects` and `bytes_written` are
    /// the whole write's, shared out by entries.
    pub(crate) async fn write<W, F>(
        self: &Arc<Self>,
        tenant: &str,
        streams: Vec<StreamEntries>,
        write: W,
    ) -> Result<WriteSummary>
    where
        W: Fn(String, Vec<StreamEntries>) -> F + Send + Sync + 'static,
        F: Future<Output = Result<WriteSummary>> + Send + 'static,
    {
        let (done, result) = oneshot::channel();
        let entries = streams.iter().map(|s| s.entries.len() as u64).sum();
        let line_bytes = streams
            .iter()
            .flat_map(|s| s.entries.iter().map(|e| e.line.len()))
            .sum();
        let start = {
            let mut tenants = self.lock();
            let t = tenants.entry(tenant.to_string()).or_default();
            t.waiting.push(Waiting {
                streams,
                entries,
                line_bytes,
                done,
            });
            let start = t.in_flight < self.max_in_flight;
            if start {
                t.in_flight += 1;
            }
            start
        };
        if start {
            tokio::spawn(self.clone().drain(tenant.to_string(), write));
        }
        result.await.map_err(|_| StoreError::WriteAbandoned)?
    }

    /// Writes batches of `tenant`'s queue until it is empty.
    async fn drain<W, F>(self: Arc<Self>, tenant: String, write: W)
    where
        W: Fn(String, Vec<StreamEntries>) -> F,
        F: Future<Output = Result<WriteSummary>>,
    {
        let mut slot = Slot {
            commits: &self,
            tenant: &tenant,
            held: true,
        };
        while let Some(batch) = slot.next_batch() {
            let mut streams = Vec::new();
            let mut done = Vec::with_capacity(batch.len());
            for w in batch {
                streams.extend(w.streams);
                done.push((w.entries, w.done));
            }
            let result = write(tenant.clone(), streams).await;
            share(result, done);
        }
    }
}

/// One running writer of a tenant. Should its task end early (a panic), dropping it gives the
/// slot back and refuses what waits, so those callers get an error instead of waiting forever.
struct Slot<'a> {
    commits: &'a Commits,
    tenant: &'a str,
    held: bool,
}

impl Slot<'_> {
    /// The next writes to combine, or `None` (and the slot given back) when none wait.
    fn next_batch(&mut self) -> Option<Vec<Waiting>> {
        let mut tenants = self.commits.lock();
        let t = tenants.get_mut(self.tenant)?;
        if t.waiting.is_empty() {
            self.held = false;
            t.in_flight -= 1;
            if t.in_flight == 0 {
                tenants.remove(self.tenant);
            }
            return None;
        }
        let (mut take, mut bytes) = (0, 0);
        for w in &t.waiting {
            if take > 0 && bytes + w.line_bytes > self.commits.max_batch_line_bytes {
                break;
            }
            bytes += w.line_bytes;
            take += 1;
        }
        Some(t.waiting.drain(..take).collect())
    }
}

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        if !self.held {
            return;
        }
        let mut tenants = self.commits.lock();
        if let Some(t) = tenants.get_mut(self.tenant) {
            t.in_flight -= 1;
            // With no writer left, what waits would wait forever: dropping it answers its
            // callers with an error.
            if t.in_flight == 0 {
                tenants.remove(self.tenant);
            }
        }
    }
}

/// Hands each caller of a combined write its result.
fn share(result: Result<WriteSummary>, done: Vec<(u64, oneshot::Sender<Result<WriteSummary>>)>) {
    match result {
        Ok(total) => {
            let all: u64 = done.iter().map(|(n, _)| n).sum::<u64>().max(1);
            for (entries, tx) in done {
                let part = |x: u64| (x as u128 * entries as u128 / all as u128) as u64;
                // A caller that went away needs no answer.
                let _ = tx.send(Ok(WriteSummary {
                    objects: part(total.objects as u64) as usize,
                    entries,
                    bytes_written: part(total.bytes_written),
                }));
            }
        }
        Err(e) => {
            let e = Arc::new(e);
            for (_, tx) in done {
                let _ = tx.send(Err(StoreError::Shared(e.clone())));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use parquetry_model::Labels;

    use super::*;
    use crate::Store;
    use crate::writer::LogEntry;

    fn push(pod: &str, n: usize, line_len: usize) -> Vec<StreamEntries> {
        vec![StreamEntries {
            labels: Labels::from_pairs([("service_name", "api"), ("pod", pod)]),
            entries: (0..n)
                .map(|i| LogEntry {
                    ts_ns: 1_700_000_000_000_000_000 + i as i64,
                    line: format!("{pod} {i:0line_len$}").into(),
                    structured_metadata: vec![],
                })
                .collect(),
        }]
    }

    /// Records the entries of every write it is handed.
    #[derive(Clone, Default)]
    struct Recorder {
        writes: Arc<Mutex<Vec<usize>>>,
    }

    impl Recorder {
        fn write(
            &self,
        ) -> impl Fn(String, Vec<StreamEntries>) -> futures::future::Ready<Result<WriteSummary>>
        + Send
        + Sync
        + 'static {
            let writes = self.writes.clone();
            move |_tenant, streams| {
                let entries: usize = streams.iter().map(|s| s.entries.len()).sum();
                writes.lock().unwrap().push(entries);
                futures::future::ready(Ok(WriteSummary {
                    objects: 2,
                    entries: entries as u64,
                    bytes_written: 1000,
                }))
            }
        }

        fn writes(&self) -> Vec<usize> {
            self.writes.lock().unwrap().clone()
        }
    }

    #[tokio::test]
    async fn writes_that_queue_up_are_stored_together_and_each_caller_gets_its_share() {
        let commits = Arc::new(Commits::new(1));
        let rec = Recorder::default();
        // All ten are queued before the writer task first runs (one thread).
        let results = futures::future::join_all(
            (1..=10).map(|i| commits.write("t", push(&format!("p{i}"), i, 8), rec.write())),
        )
        .await;
        assert_eq!(rec.writes(), vec![55]);
        for (i, r) in results.into_iter().enumerate() {
            let s = r.unwrap();
            assert_eq!(s.entries, i as u64 + 1);
            assert_eq!(s.bytes_written, 1000 * (i as u64 + 1) / 55);
        }
        // The slot was given back: a later write runs, alone.
        commits
            .write("t", push("p", 3, 8), rec.write())
            .await
            .unwrap();
        assert_eq!(rec.writes(), vec![55, 3]);
        assert!(commits.lock().is_empty());
    }

    #[tokio::test]
    async fn tenants_are_never_combined() {
        let commits = Arc::new(Commits::new(1));
        let rec = Recorder::default();
        let writes = ["a", "b", "a", "b"].map(|t| commits.write(t, push("p", 2, 8), rec.write()));
        for r in futures::future::join_all(writes).await {
            r.unwrap();
        }
        assert_eq!(rec.writes(), vec![4, 4]);
    }

    #[tokio::test]
    async fn a_combined_write_stops_at_its_byte_limit_but_always_takes_one() {
        let mut commits = Commits::new(1);
        // Each push below holds 10 lines of 102 bytes.
        commits.max_batch_line_bytes = 2_500;
        let commits = Arc::new(commits);
        let rec = Recorder::default();
        let writes = (0..5).map(|_| commits.write("t", push("p", 10, 100), rec.write()));
        for r in futures::future::join_all(writes).await {
            r.unwrap();
        }
        assert_eq!(rec.writes(), vec![20, 20, 10]);
    }

    #[tokio::test]
    async fn several_writers_of_one_tenant_share_what_queues() {
        let commits = Arc::new(Commits::new(2));
        let running = Arc::new(AtomicUsize::new(0));
        let most = Arc::new(AtomicUsize::new(0));
        let stored = Arc::new(AtomicUsize::new(0));
        let write = {
            let (running, most, stored) = (running.clone(), most.clone(), stored.clone());
            move |_tenant: String, streams: Vec<StreamEntries>| {
                let (running, most, stored) = (running.clone(), most.clone(), stored.clone());
                async move {
                    let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                    most.fetch_max(now, Ordering::SeqCst);
                    tokio::task::yield_now().await;
                    let n: usize = streams.iter().map(|s| s.entries.len()).sum();
                    stored.fetch_add(n, Ordering::SeqCst);
                    running.fetch_sub(1, Ordering::SeqCst);
                    Ok(WriteSummary::default())
                }
            }
        };
        let tasks: Vec<_> = (0..40)
            .map(|i| {
                let commits = commits.clone();
                let write = write.clone();
                tokio::spawn(
                    async move { commits.write("t", push("p", i % 3 + 1, 8), write).await },
                )
            })
            .collect();
        for t in tasks {
            t.await.unwrap().unwrap();
        }
        let want: usize = (0..40).map(|i| i % 3 + 1).sum();
        assert_eq!(stored.load(Ordering::SeqCst), want);
        assert!(most.load(Ordering::SeqCst) <= 2);
        assert!(commits.lock().is_empty());
    }

    #[tokio::test]
    async fn a_failed_combined_write_fails_every_caller_and_the_next_write_runs() {
        let faulty = Arc::new(crate::faulty::FaultyStore::new(Arc::new(
            object_store::memory::InMemory::new(),
        )));
        let store =
            Store::from_object_store(faulty.clone(), "memory://", vec!["service_name".into()]);
        faulty.crash_at(1);
        let results = futures::future::join_all(
            (0..3).map(|i| store.write("t", push(&format!("p{i}"), 2, 8))),
        )
        .await;
        for r in results {
            let e = r.unwrap_err();
            assert!(matches!(e, StoreError::Shared(_)), "{e}");
        }
        faulty.heal();
        let s = store.write("t", push("p9", 2, 8)).await.unwrap();
        assert_eq!((s.objects, s.entries), (1, 2));
    }

    #[tokio::test]
    async fn combined_pushes_are_one_object_per_partition_and_every_entry_reads_back() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path().to_str().unwrap(), vec!["service_name".into()]).unwrap();
        let results = futures::future::join_all(
            (0..8).map(|i| store.write("t", push(&format!("p{i}"), 5, 8))),
        )
        .await;
        for r in results {
            assert_eq!(r.unwrap().entries, 5);
        }
        let objects = store.list("t", 0, i64::MAX, |_| true).await.unwrap();
        assert_eq!(
            objects.len(),
            1,
            "eight pushes of one partition, one object"
        );
        let catalog = store.catalog(&objects[0]).await.unwrap();
        assert_eq!(catalog.streams.len(), 8);
        assert_eq!(catalog.streams.iter().map(|s| s.entries).sum::<u64>(), 40);
    }
}
