//! A lease in the bucket, so that of several processes that could run the compactor (backend
//! replicas during a rolling upgrade, a second `serve`, the Lambda compactor next to a
//! server) one works at a time.
//!
//! Correctness never depends on it: manifests are create-only numbered versions and a
//! compactor that loses a race re-reads and retries or drops its output. The lease only
//! saves the repeated work. It therefore needs no fencing: a holder whose lease ran out
//! mid-pass finishes its pass safely.
//!
//! A lease is a sequence of create-only objects `leases/<name>/<seq>.json` (the manifests'
//! trick, which works on every backend, including a local directory without conditional
//! updates). The newest one names the holder and its expiry. A process may take the next
//! number when the newest is its own or has expired; of two that try at once, the
//! create-only put lets exactly one win.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures::TryStreamExt;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload};
use serde::{Deserialize, Serialize};

use crate::{At, Result, Store};

/// Lease objects older than this many numbers are deleted by the holder.
const KEEP: u64 = 8;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Record {
    owner: String,
    /// Milliseconds since the Unix epoch.
    expires_ms: u64,
}

/// Who holds a lease, as [`Store::acquire_lease`] found it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LeaseState {
    /// This process holds it until the given time.
    Held {
        /// When the lease runs out unless renewed.
        until: SystemTime,
    },
    /// Another process holds it.
    Busy {
        /// The holder's owner name.
        owner: String,
        /// When its lease runs out.
        until: SystemTime,
    },
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or_default()
}

fn at(ms: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(ms)
}

impl Store {
    /// Takes or renews the lease `name` for `owner` for `ttl`, unless another owner holds an
    /// unexpired one.
    pub async fn acquire_lease(
        &self,
        name: &str,
        owner: &str,
        ttl: Duration,
    ) -> Result<LeaseState> {
        let store = self.object_store();
        let dir = Path::from(format!("leases/{name}"));
        let mut seqs: Vec<u64> = store
            .list(Some(&dir))
            .map_ok(|m| m.location)
            .try_collect::<Vec<_>>()
            .await
            .at(&dir)?
            .iter()
            .filter_map(|p| p.filename()?.strip_suffix(".json")?.parse().ok())
            .collect();
        seqs.sort_unstable();
        let newest = seqs.last().copied();
        if let Some(seq) = newest {
            let path = Path::from(format!("leases/{name}/{seq:020}.json"));
            let bytes = store.get(&path).await.at(&path)?.bytes().await.at(&path)?;
            // An unreadable record (a torn write on a crashed local disk) counts as expired.
            if let Ok(r) = serde_json::from_slice::<Record>(&bytes)
                && r.owner != owner
                && r.expires_ms > now_ms()
            {
                return Ok(LeaseState::Busy {
                    owner: r.owner,
                    until: at(r.expires_ms),
                });
            }
        }
        let next = newest.map_or(0, |s| s + 1);
        let record = Record {
            owner: owner.to_string(),
            expires_ms: now_ms().saturating_add(ttl.as_millis() as u64),
        };
        let path = Path::from(format!("leases/{name}/{next:020}.json"));
        let body = serde_json::to_vec(&record).map_err(|e| crate::StoreError::Corrupt {
            path: path.to_string(),
            reason: e.to_string(),
        })?;
        let put = store
            .put_opts(
                &path,
                PutPayload::from(body),
                PutOptions {
                    mode: PutMode::Create,
                    ..Default::default()
                },
            )
            .await;
        match put {
            Ok(_) => {}
            Err(object_store::Error::AlreadyExists { .. }) => {
                // Someone took this number first: they hold it now.
                return Ok(LeaseState::Busy {
                    owner: "another process".into(),
                    until: at(record.expires_ms),
                });
            }
            Err(e) => return Err(e).at(&path),
        }
        for old in seqs.iter().filter(|s| **s + KEEP < next) {
            // Best effort: a leftover record is only a few bytes.
            let _ = store
                .delete(&Path::from(format!("leases/{name}/{old:020}.json")))
                .await;
        }
        Ok(LeaseState::Held {
            until: at(record.expires_ms),
        })
    }

    /// Lets the lease `name` go at once if `owner` holds it, so another process need not wait
    /// for it to expire (on shutdown).
    pub async fn release_lease(&self, name: &str, owner: &str) -> Result<()> {
        // Renewing with a zero TTL writes an already-expired record.
        match self.acquire_lease(name, owner, Duration::ZERO).await? {
            LeaseState::Held { .. } | LeaseState::Busy { .. } => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn one_holder_at_a_time_and_expiry_hands_over() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path().to_str().unwrap(), vec![]).unwrap();
        let ttl = Duration::from_millis(300);
        assert!(matches!(
            store.acquire_lease("compactor", "a", ttl).await.unwrap(),
            LeaseState::Held { .. }
        ));
        // Renewal by the holder, refusal for anyone else.
        assert!(matches!(
            store.acquire_lease("compactor", "a", ttl).await.unwrap(),
            LeaseState::Held { .. }
        ));
        match store.acquire_lease("compactor", "b", ttl).await.unwrap() {
            LeaseState::Busy { owner, .. } => assert_eq!(owner, "a"),
            other => panic!("{other:?}"),
        }
        tokio::time::sleep(Duration::from_millis(350)).await;
        assert!(matches!(
            store.acquire_lease("compactor", "b", ttl).await.unwrap(),
            LeaseState::Held { .. }
        ));
        // Released: the other takes over at once.
        store.release_lease("compactor", "b").await.unwrap();
        assert!(matches!(
            store.acquire_lease("compactor", "a", ttl).await.unwrap(),
            LeaseState::Held { .. }
        ));
        // Lease objects live outside the format prefix: no tenant appears.
        assert!(store.tenants().await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn racing_processes_get_one_winner() {
        let dir = tempfile::tempdir().unwrap();
        let store = std::sync::Arc::new(Store::open(dir.path().to_str().unwrap(), vec![]).unwrap());
        let ttl = Duration::from_secs(60);
        let tasks: Vec<_> = (0..8)
            .map(|i| {
                let s = store.clone();
                tokio::spawn(
                    async move { s.acquire_lease("compactor", &format!("p{i}"), ttl).await },
                )
            })
            .collect();
        let mut held = 0;
        for t in tasks {
            if matches!(t.await.unwrap().unwrap(), LeaseState::Held { .. }) {
                held += 1;
            }
        }
        // Several may each win a different number in turn only if the previous holder's
        // record expired; with a 60 s TTL exactly one process holds it.
        assert_eq!(held, 1);
    }
}
