//! Retention: deletes whole tenant-days that lie entirely outside a tenant's retention period.
//!
//! A day goes in two steps, each safe to crash at and to repeat:
//!
//! 1. **Mark**: a create-only put of `_manifest/deleting.json`. From then on readers and the
//!    compactor treat the day as empty, so nothing a query might still read is deleted under
//!    it without warning.
//! 2. **Delete**, once the marker is `delete_delay` old: every data object of the day, then the
//!    manifest versions, then the marker itself, last, so a crash anywhere leaves a marked
//!    (invisible) day that the next run finishes.
//!
//! Only days whose end is before `now - retention_period` are touched, so nothing inside the
//! period is ever deleted; retention is a day coarser than the period (Loki's index period).

use std::time::Duration;

use chrono::NaiveDate;
use futures::{StreamExt, TryStreamExt};
use object_store::{ObjectMeta, ObjectStoreExt, PutMode, PutOptions, PutPayload};

use crate::layout::day_prefix;
use crate::manifest;
use crate::{At, DAY_NS, Result, Store};

/// How a retention pass runs.
#[derive(Debug, Clone)]
pub struct RetentionOptions {
    /// Grace between marking a day and deleting it (`compactor.retention_delete_delay`).
    pub delete_delay: Duration,
    /// Only report what would go.
    pub dry_run: bool,
}

/// One tenant-day outside its retention period.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExpiredDay {
    /// The tenant.
    pub tenant: String,
    /// The UTC day, `YYYY-MM-DD`.
    pub day: String,
    /// Objects stored under the day.
    pub objects: u64,
    /// Their bytes.
    pub bytes: u64,
    /// Deleted in this run (false: dry run, or still inside the grace period).
    pub deleted: bool,
}

/// What one retention pass found and did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RetentionSummary {
    /// Every tenant-day outside its retention period.
    pub expired: Vec<ExpiredDay>,
    /// Objects deleted in this pass.
    pub objects_deleted: u64,
}

/// First instant (Unix ns) of the day after `day`, or `None` if `day` is not `YYYY-MM-DD`.
pub(crate) fn day_end_ns(day: &str) -> Option<i64> {
    let date = NaiveDate::parse_from_str(day, "%Y-%m-%d").ok()?;
    let start = date.and_hms_opt(0, 0, 0)?.and_utc().timestamp_nanos_opt()?;
    start.checked_add(DAY_NS)
}

fn older_than(meta: &ObjectMeta, age: Duration) -> bool {
    let age = chrono::Duration::from_std(age).unwrap_or(chrono::Duration::MAX);
    chrono::Utc::now()
        .checked_sub_signed(age)
        .is_some_and(|cutoff| meta.last_modified <= cutoff)
}

impl Store {
    /// One retention pass. `period_of(tenant)` is the tenant's retention period; zero keeps
    /// everything.
    #[tracing::instrument(name = "retention", skip_all)]
    pub async fn retention(
        &self,
        period_of: impl Fn(&str) -> Duration,
        opts: &RetentionOptions,
    ) -> Result<RetentionSummary> {
        let now = chrono::Utc::now().timestamp_nanos_opt().unwrap_or(i64::MAX);
        let mut summary = RetentionSummary::default();
        let mut first_error = None;
        for tenant in self.tenants().await? {
            let period = period_of(&tenant);
            if period.is_zero() {
                continue;
            }
            let period_ns = period.as_nanos().min(i64::MAX as u128) as i64;
            let cutoff = now.saturating_sub(period_ns);
            for day in self.days(&tenant).await? {
                if day_end_ns(&day).is_some_and(|end| end <= cutoff) {
                    // One failing day must not keep the others: go on, report the first
                    // failure at the end.
                    match self.expire_day(&tenant, &day, opts).await {
                        Ok(expired) => {
                            if expired.deleted {
                                summary.objects_deleted += expired.objects;
                            }
                            summary.expired.push(expired);
                        }
                        Err(e) => {
                            tracing::warn!(tenant, day, error = %e, "retention of a day failed");
                            first_error.get_or_insert(e);
                        }
                    }
                }
            }
        }
        match first_error {
            Some(e) => Err(e),
            None => Ok(summary),
        }
    }

    /// Staging files a killed writer left in the day (local directory only): the listing that
    /// drives the deletion above never shows them. Those younger than
    /// [`TEMP_FILE_MIN_AGE`](crate::durable::TEMP_FILE_MIN_AGE) may still be written to and
    /// stay; the compactor's passes remove them later. Housekeeping only: a failure is
    /// logged and does not hold up the day's deletion.
    async fn remove_expired_temp_files(&self, tenant: &str, day: &str) {
        let Some(local) = &self.local else {
            return;
        };
        let prefix = day_prefix(tenant, day);
        match local
            .remove_stale_temp_files(&prefix, crate::durable::TEMP_FILE_MIN_AGE)
            .await
        {
            Ok(0) => {}
            Ok(removed) => {
                tracing::info!(
                    tenant,
                    day,
                    removed,
                    "retention: stale staging files removed"
                )
            }
            Err(e) => {
                tracing::warn!(tenant, day, error = %e, "could not remove stale staging files")
            }
        }
    }

    #[tracing::instrument(skip_all, fields(tenant = %tenant, day = %day))]
    async fn expire_day(
        &self,
        tenant: &str,
        day: &str,
        opts: &RetentionOptions,
    ) -> Result<ExpiredDay> {
        let store = self.object_store();
        let prefix = day_prefix(tenant, day);
        let metas: Vec<ObjectMeta> = store.list(Some(&prefix)).try_collect().await.at(&prefix)?;
        let mut out = ExpiredDay {
            tenant: tenant.to_string(),
            day: day.to_string(),
            objects: metas.len() as u64,
            bytes: metas.iter().map(|m| m.size).sum(),
            deleted: false,
        };
        if opts.dry_run {
            return Ok(out);
        }
        let marker = manifest::marker_path(tenant, day);
        let marker_meta = match metas.iter().find(|m| m.location == marker) {
            Some(m) => m.clone(),
            None => {
                let put = PutOptions {
                    mode: PutMode::Create,
                    ..Default::default()
                };
                let body = format!(
                    "{{\"marked_ns\":{}}}",
                    chrono::Utc::now().timestamp_nanos_opt().unwrap_or(0)
                );
                match store.put_opts(&marker, PutPayload::from(body), put).await {
                    Ok(_) | Err(object_store::Error::AlreadyExists { .. }) => {}
                    Err(e) => return Err(e).at(&marker),
                }
                tracing::info!(tenant, day, "retention: day marked for deletion");
                store.head(&marker).await.at(&marker)?
            }
        };
        if !older_than(&marker_meta, opts.delete_delay) {
            return Ok(out);
        }
        // Data first, manifests next, the marker last: until the marker goes, the day stays
        // invisible however far this got.
        let rank = |m: &ObjectMeta| {
            if m.location == marker {
                2
            } else if manifest::is_manifest_path(&m.location) {
                1
            } else {
                0
            }
        };
        let metas: Vec<ObjectMeta> = store.list(Some(&prefix)).try_collect().await.at(&prefix)?;
        for r in 0..3 {
            // Within a rank the order does not matter, so deletes overlap (on a local
            // directory each waits for a directory fsync); a rank ends before the next begins.
            // Owned futures: borrowed ones would make the pass's future not `Send`.
            let deletes: Vec<_> = metas
                .iter()
                .filter(|m| rank(m) == r)
                .map(|m| {
                    let (store, path) = (store.clone(), m.location.clone());
                    async move { store.delete(&path).await.map_err(|e| (path, e)) }
                })
                .collect();
            let mut deletes =
                futures::stream::iter(deletes).buffer_unordered(crate::compact::DELETE_CONCURRENCY);
            while let Some(result) = deletes.next().await {
                match result {
                    Ok(()) | Err((_, object_store::Error::NotFound { .. })) => {}
                    Err((path, e)) => return Err(e).at(path),
                }
            }
            drop(deletes);
            if r == 0 {
                self.remove_expired_temp_files(tenant, day).await;
            }
        }
        if metas.iter().all(|m| m.location != marker) {
            // The marker was created above but not listed (a listing racing our put).
            match store.delete(&marker).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => return Err(e).at(&marker),
            }
        }
        tracing::info!(tenant, day, objects = metas.len(), "retention: day deleted");
        out.objects = metas.len() as u64;
        out.deleted = true;
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn day_ends() {
        assert_eq!(day_end_ns("1970-01-01"), Some(DAY_NS));
        assert_eq!(day_end_ns("1970-01-02"), Some(2 * DAY_NS));
        assert_eq!(day_end_ns("garbage"), None);
    }

    #[tokio::test]
    async fn deleting_a_day_removes_its_stale_staging_files() {
        use parquetry_model::Labels;

        use crate::writer::{LogEntry, StreamEntries};

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
        let partition = root
            .join(day_prefix("fake", &crate::layout::day_of(t0)).as_ref())
            .join("service_name=api");
        let stale = partition.join("1-2-abc.parquet#1");
        let old = std::time::SystemTime::now() - Duration::from_secs(7200);
        std::fs::File::create(&stale)
            .unwrap()
            .set_modified(old)
            .unwrap();
        let fresh = partition.join("3-4-def.parquet#2");
        std::fs::write(&fresh, b"partial").unwrap();

        let opts = RetentionOptions {
            delete_delay: Duration::ZERO,
            dry_run: false,
        };
        let s = store
            .retention(|_| Duration::from_secs(86_400), &opts)
            .await
            .unwrap();
        assert!(s.expired.iter().all(|d| d.deleted), "{s:?}");
        assert_eq!(s.objects_deleted, 2, "{s:?}"); // the object and the marker
        assert!(store.list_keys("").await.unwrap().is_empty());
        assert!(!stale.exists());
        assert!(fresh.exists());
    }
}
