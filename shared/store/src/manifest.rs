//! The per-tenant-day manifest: which compacted ("cold") objects are live and which objects
//! they absorbed.
//!
//! ```text
//! v1/tenant=<t>/day=<d>/_manifest/<version:020>.json   one immutable object per version
//! v1/tenant=<t>/day=<d>/_manifest/deleting.json        retention marker: the day is going
//! ```
//!
//! `LocalFileSystem` in object_store 0.13 does not implement `PutMode::Update`, so a manifest is
//! never overwritten: each change creates the next version number with a create-only put
//! (`PutMode::Create`, atomic `If-None-Match: *` on S3, a hard link on a directory), and the
//! highest version wins. Two compactors racing for the same version cannot both win; the loser
//! re-reads the newest version and re-applies its change or gives up.
//!
//! Readers take cold objects from the manifest, never from the listing, and hide every object
//! a manifest says was absorbed. They read the manifest *before* listing the day, which is
//! what makes pruning absorbed keys (after their objects are deleted) safe.

use std::collections::HashSet;

use futures::TryStreamExt;
use object_store::path::Path;
use object_store::{ObjectMeta, ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload};
use serde::{Deserialize, Serialize};

use crate::layout::day_prefix;
use crate::{At, Result, StoreError};

/// Directory (under a day prefix) holding manifest versions and the retention marker. It has
/// no `=`, so it can never be mistaken for a partition directory.
pub const MANIFEST_DIR: &str = "_manifest";
/// The retention marker's file name inside [`MANIFEST_DIR`].
pub const DELETING_MARKER: &str = "deleting.json";
/// Prefix of the id of every object the compactor writes. Hot ids are UUID hex, which never
/// contains `_`, so the id alone tells a cold object from a hot one.
pub const COLD_ID_PREFIX: &str = "c_";
/// Version of the manifest's JSON.
pub const MANIFEST_FORMAT: u32 = 1;

/// One compacted object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ColdObject {
    /// Key relative to the day prefix (`service_name=api/<min>-<max>-c_<id>.parquet`).
    pub key: String,
    /// Size in bytes.
    pub size: u64,
    /// Entries it holds.
    pub entries: u64,
    /// Its oldest entry (Unix ns).
    pub min_ts: i64,
    /// Its newest entry (Unix ns).
    pub max_ts: i64,
    /// When it was recorded (Unix ns): absorbed objects may be deleted from
    /// `created_ns + retention_delete_delay` on.
    pub created_ns: i64,
    /// Keys (relative to the day prefix) of the hot objects whose entries this object holds
    /// and which may still exist. Emptied once they are deleted.
    #[serde(default)]
    pub absorbed: Vec<String>,
    /// How many absorbed objects have been deleted already (informational).
    #[serde(default)]
    pub absorbed_deleted: u64,
}

impl ColdObject {
    /// A just-written object, not yet committed: no inputs absorbed, no creation time (both
    /// are set when a manifest takes it in, see [`Manifest::replaced`]).
    pub fn written(key: String, size: u64, entries: u64, min_ts: i64, max_ts: i64) -> Self {
        ColdObject {
            key,
            size,
            entries,
            min_ts,
            max_ts,
            created_ns: 0,
            absorbed: Vec::new(),
            absorbed_deleted: 0,
        }
    }
}

/// One version of a tenant-day manifest.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// [`MANIFEST_FORMAT`] when written.
    pub format: u32,
    /// Increases by one per commit; the object name.
    pub version: u64,
    /// The tenant.
    pub tenant: String,
    /// The UTC day, `YYYY-MM-DD`.
    pub day: String,
    /// The live compacted objects.
    pub cold: Vec<ColdObject>,
}

impl Manifest {
    /// Version 0: no compacted objects yet.
    pub fn empty(tenant: &str, day: &str) -> Manifest {
        Manifest {
            format: MANIFEST_FORMAT,
            version: 0,
            tenant: tenant.to_string(),
            day: day.to_string(),
            cold: Vec::new(),
        }
    }

    /// Relative keys a reader must not show from the listing: every cold object (they come
    /// from the manifest) and everything absorbed.
    pub fn absorbed(&self) -> HashSet<&str> {
        self.cold
            .iter()
            .flat_map(|c| c.absorbed.iter().map(String::as_str))
            .collect()
    }
}

/// A new cold object and the live objects (keys relative to the day prefix) whose entries it
/// now holds: what a compaction or a delete pass commits.
#[derive(Debug, Clone)]
pub struct Replacement {
    /// The new object; its `absorbed` list is rebuilt from the inputs when committed.
    pub object: ColdObject,
    /// Hot inputs: objects from the listing that no manifest has absorbed yet.
    pub hot: Vec<String>,
    /// Cold inputs: objects the manifest lists as live.
    pub cold: Vec<String>,
}

impl Manifest {
    /// The next manifest with each replacement's object live and its inputs absorbed, or
    /// `None` when any input is no longer live here (someone else replaced it first).
    pub fn replaced(&self, replacements: &[Replacement]) -> Option<Manifest> {
        let taken = self.absorbed();
        let live = replacements.iter().all(|r| {
            r.hot.iter().all(|k| !taken.contains(k.as_str()))
                && r.cold.iter().all(|k| self.cold.iter().any(|c| &c.key == k))
        });
        if !live {
            return None;
        }
        let mut next = self.clone();
        for r in replacements {
            let mut entry = r.object.clone();
            entry.absorbed = r.hot.iter().chain(&r.cold).cloned().collect();
            // Replaced cold objects leave the live set now and are deleted after the grace
            // period like absorbed hot objects; what they absorbed stays hidden.
            for c in next.cold.iter().filter(|c| r.cold.contains(&c.key)) {
                entry.absorbed.extend(c.absorbed.iter().cloned());
                entry.absorbed_deleted += c.absorbed_deleted;
            }
            next.cold.retain(|c| !r.cold.contains(&c.key));
            next.cold.push(entry);
        }
        Some(next)
    }
}

/// What a LIST of a day's manifest directory says.
#[derive(Debug, Clone, Default)]
pub struct ManifestListing {
    /// (version, meta) in ascending version order.
    pub versions: Vec<(u64, ObjectMeta)>,
    /// The retention marker, when the day is being deleted.
    pub deleting: Option<ObjectMeta>,
}

impl ManifestListing {
    /// The highest version listed.
    pub fn newest(&self) -> Option<&(u64, ObjectMeta)> {
        self.versions.last()
    }
}

/// Where a tenant-day's manifest versions live.
pub fn manifest_dir(tenant: &str, day: &str) -> Path {
    day_prefix(tenant, day).join(MANIFEST_DIR)
}

/// The path of one manifest version.
pub fn version_path(tenant: &str, day: &str, version: u64) -> Path {
    manifest_dir(tenant, day).join(format!("{version:020}.json"))
}

/// The marker retention writes before deleting a day.
pub fn marker_path(tenant: &str, day: &str) -> Path {
    manifest_dir(tenant, day).join(DELETING_MARKER)
}

/// True when `path` is inside a day's manifest directory.
pub fn is_manifest_path(path: &Path) -> bool {
    path.parts().any(|p| p.as_ref() == MANIFEST_DIR)
}

/// True for an id the compactor wrote.
pub fn is_cold_id(id: &str) -> bool {
    id.starts_with(COLD_ID_PREFIX)
}

/// A fresh id for an object the compactor or a delete pass writes.
pub fn new_cold_id() -> String {
    format!("{COLD_ID_PREFIX}{}", uuid::Uuid::new_v4().simple())
}

/// The key of `path` relative to the day prefix of `tenant`/`day`.
pub fn relative_key(tenant: &str, day: &str, path: &Path) -> Option<String> {
    let prefix = day_prefix(tenant, day);
    path.prefix_match(&prefix).map(|parts| {
        parts
            .map(|p| p.as_ref().to_string())
            .collect::<Vec<_>>()
            .join("/")
    })
}

/// The full path of a key relative to a day prefix.
pub fn absolute_path(tenant: &str, day: &str, relative: &str) -> Path {
    let base = day_prefix(tenant, day);
    Path::parse(format!("{base}/{relative}")).unwrap_or_else(|_| Path::from(relative))
}

/// The manifest versions of a tenant-day and its deletion marker, if any.
pub async fn list_manifests(
    store: &dyn ObjectStore,
    tenant: &str,
    day: &str,
) -> Result<ManifestListing> {
    let dir = manifest_dir(tenant, day);
    let metas: Vec<ObjectMeta> = store.list(Some(&dir)).try_collect().await.at(&dir)?;
    let mut out = ManifestListing::default();
    for m in metas {
        let Some(name) = m.location.filename() else {
            continue;
        };
        if name == DELETING_MARKER {
            out.deleting = Some(m);
        } else if let Some(v) = name
            .strip_suffix(".json")
            .and_then(|v| v.parse::<u64>().ok())
        {
            out.versions.push((v, m));
        }
    }
    out.versions.sort_by_key(|(v, _)| *v);
    Ok(out)
}

/// Reads one manifest version, checking it belongs to its key.
pub async fn read_version(
    store: &dyn ObjectStore,
    tenant: &str,
    day: &str,
    version: u64,
) -> Result<Manifest> {
    let path = version_path(tenant, day, version);
    let bytes = store.get(&path).await.at(&path)?.bytes().await.at(&path)?;
    let m: Manifest = serde_json::from_slice(&bytes).map_err(|e| StoreError::Corrupt {
        path: path.to_string(),
        reason: e.to_string(),
    })?;
    if m.format != MANIFEST_FORMAT || m.version != version || m.tenant != tenant || m.day != day {
        return Err(StoreError::Corrupt {
            path: path.to_string(),
            reason: "manifest does not match its key".into(),
        });
    }
    Ok(m)
}

/// The newest manifest of a day (an empty version 0 when there is none) and the listing it
/// came from.
pub async fn read_newest(
    store: &dyn ObjectStore,
    tenant: &str,
    day: &str,
) -> Result<(Manifest, ManifestListing)> {
    let listing = list_manifests(store, tenant, day).await?;
    let manifest = match listing.newest() {
        Some((v, _)) => read_version(store, tenant, day, *v).await?,
        None => Manifest::empty(tenant, day),
    };
    Ok((manifest, listing))
}

/// Outcome of a conditional manifest write.
#[derive(Debug)]
pub enum Commit {
    /// Written: the new manifest.
    Committed(Manifest),
    /// Someone else created that version first; re-read and try again.
    Lost,
}

/// Creates `next` as version `base.version + 1`, failing cleanly if that version exists.
pub async fn try_commit(
    store: &dyn ObjectStore,
    base: &Manifest,
    mut next: Manifest,
) -> Result<Commit> {
    next.format = MANIFEST_FORMAT;
    next.version = base.version + 1;
    next.tenant = base.tenant.clone();
    next.day = base.day.clone();
    let path = version_path(&next.tenant, &next.day, next.version);
    let body = serde_json::to_vec(&next).map_err(|e| StoreError::Corrupt {
        path: path.to_string(),
        reason: e.to_string(),
    })?;
    let opts = PutOptions {
        mode: PutMode::Create,
        ..Default::default()
    };
    match store.put_opts(&path, PutPayload::from(body), opts).await {
        Ok(_) => Ok(Commit::Committed(next)),
        Err(object_store::Error::AlreadyExists { .. }) => Ok(Commit::Lost),
        Err(source) => Err(StoreError::Object {
            path: path.to_string(),
            source,
        }),
    }
}

/// Applies `change` to the newest manifest and commits it, re-reading and re-applying after a
/// lost race, at most `attempts` times. `change` returns `None` to give up (its change no
/// longer applies), which ends with `Ok(None)`, as does a day marked for deletion.
pub async fn update<F>(
    store: &dyn ObjectStore,
    tenant: &str,
    day: &str,
    attempts: usize,
    mut change: F,
) -> Result<Option<Manifest>>
where
    F: FnMut(&Manifest) -> Option<Manifest>,
{
    for attempt in 0..attempts.max(1) {
        let (base, listing) = read_newest(store, tenant, day).await?;
        if listing.deleting.is_some() {
            // Retention is deleting the day: nothing may be added to it.
            return Ok(None);
        }
        let Some(next) = change(&base) else {
            return Ok(None);
        };
        match try_commit(store, &base, next).await? {
            Commit::Committed(m) => return Ok(Some(m)),
            Commit::Lost => {
                tracing::debug!(tenant, day, attempt, "manifest race lost, retrying");
            }
        }
    }
    Err(StoreError::Conflict(format!(
        "manifest of tenant {tenant:?} day {day}: too many concurrent updates"
    )))
}

/// Commits `replacements` to the newest manifest of a tenant-day with [`update`]: `Ok(None)`
/// when an input stopped being live (a lost race) or the day is being deleted.
pub async fn commit_replacements(
    store: &dyn ObjectStore,
    tenant: &str,
    day: &str,
    attempts: usize,
    replacements: &[Replacement],
) -> Result<Option<Manifest>> {
    update(store, tenant, day, attempts, |base| {
        base.replaced(replacements)
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use object_store::memory::InMemory;

    #[tokio::test]
    async fn versions_are_create_only_and_newest_wins() {
        let store = InMemory::new();
        let (m0, _) = read_newest(&store, "t", "2024-01-01").await.unwrap();
        assert_eq!(m0.version, 0);
        let mut a = m0.clone();
        a.cold.push(ColdObject {
            key: "service_name=a/x.parquet".into(),
            size: 1,
            entries: 1,
            min_ts: 0,
            max_ts: 0,
            created_ns: 0,
            absorbed: vec!["service_name=a/h.parquet".into()],
            absorbed_deleted: 0,
        });
        let Commit::Committed(m1) = try_commit(&store, &m0, a.clone()).await.unwrap() else {
            panic!("first commit lost");
        };
        assert_eq!(m1.version, 1);
        // A second writer from the same base loses instead of overwriting.
        assert!(matches!(
            try_commit(&store, &m0, Manifest::empty("t", "2024-01-01"))
                .await
                .unwrap(),
            Commit::Lost
        ));
        let (newest, listing) = read_newest(&store, "t", "2024-01-01").await.unwrap();
        assert_eq!(newest, m1);
        assert_eq!(listing.versions.len(), 1);
        assert!(newest.absorbed().contains("service_name=a/h.parquet"));
        // update() rebases on the newest version.
        let m2 = update(&store, "t", "2024-01-01", 3, |b| {
            let mut n = b.clone();
            n.cold.clear();
            Some(n)
        })
        .await
        .unwrap()
        .unwrap();
        assert_eq!(m2.version, 2);
        assert!(
            update(&store, "t", "2024-01-01", 3, |_| None)
                .await
                .unwrap()
                .is_none()
        );
    }

    fn cold(key: &str, absorbed: &[&str], absorbed_deleted: u64) -> ColdObject {
        ColdObject {
            key: key.into(),
            size: 1,
            entries: 1,
            min_ts: 0,
            max_ts: 0,
            created_ns: 0,
            absorbed: absorbed.iter().map(|s| s.to_string()).collect(),
            absorbed_deleted,
        }
    }

    #[test]
    fn a_replacement_absorbs_its_inputs_and_what_they_absorbed() {
        let mut base = Manifest::empty("t", "2024-01-01");
        base.cold.push(cold("p/c_old", &["p/h0"], 2));
        base.cold.push(cold("p/c_keep", &["p/h9"], 0));
        let r = Replacement {
            object: cold("p/c_new", &["stale"], 1),
            hot: vec!["p/h1".into()],
            cold: vec!["p/c_old".into()],
        };
        let next = base.replaced(std::slice::from_ref(&r)).unwrap();
        let keys: Vec<&str> = next.cold.iter().map(|c| c.key.as_str()).collect();
        assert_eq!(keys, ["p/c_keep", "p/c_new"]);
        let new = &next.cold[1];
        assert_eq!(new.absorbed, ["p/h1", "p/c_old", "p/h0"]);
        assert_eq!(new.absorbed_deleted, 3);

        // Inputs someone else took: a hot object already absorbed, a cold one gone.
        let taken_hot = Replacement {
            hot: vec!["p/h9".into()],
            cold: Vec::new(),
            ..r.clone()
        };
        assert!(base.replaced(&[taken_hot]).is_none());
        assert!(next.replaced(std::slice::from_ref(&r)).is_none());
        // All or nothing: one stale replacement voids the batch.
        let fine = Replacement {
            object: cold("p/c_other", &[], 0),
            hot: vec!["p/h2".into()],
            cold: Vec::new(),
        };
        assert!(next.replaced(&[fine.clone(), r]).is_none());
        assert_eq!(next.replaced(&[fine]).unwrap().cold.len(), 3);
    }

    #[test]
    fn relative_keys_round_trip() {
        let p = absolute_path("a/b", "2024-01-01", "service_name=x/1-2-c_1.parquet");
        assert_eq!(
            p.as_ref(),
            "v1/tenant=a%2Fb/day=2024-01-01/service_name=x/1-2-c_1.parquet"
        );
        assert_eq!(
            relative_key("a/b", "2024-01-01", &p).as_deref(),
            Some("service_name=x/1-2-c_1.parquet")
        );
        assert!(is_manifest_path(&version_path("a", "2024-01-01", 3)));
        assert!(!is_manifest_path(&p));
    }
}
