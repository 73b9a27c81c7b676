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
use futures::TryStreamExt;
use object_store::{ObjectMeta, ObjectStoreExt, PutMode, PutOptions, PutPayload};

use crate::layout::day_prefix;
use crate::manifest;
use crate::{DAY_NS, Result, Store};

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
    pub tenant: String,
    pub day: String,
    pub objects: u64,
    pub bytes: u64,
    /// Deleted in this run (false: dry run, or still inside the grace period).
    pub deleted: bool,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RetentionSummary {
    pub expired: Vec<ExpiredDay>,
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

    async fn expire_day(
        &self,
        tenant: &str,
        day: &str,
        opts: &RetentionOptions,
    ) -> Result<ExpiredDay> {
        let store = self.object_store();
        let prefix = day_prefix(tenant, day);
        let metas: Vec<ObjectMeta> = store.list(Some(&prefix)).try_collect().await?;
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
                    Err(e) => return Err(e.into()),
                }
                tracing::info!(tenant, day, "retention: day marked for deletion");
                store.head(&marker).await?
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
        let metas: Vec<ObjectMeta> = store.list(Some(&prefix)).try_collect().await?;
        for r in 0..3 {
            for m in metas.iter().filter(|m| rank(m) == r) {
                match store.delete(&m.location).await {
                    Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                    Err(e) => return Err(e.into()),
                }
            }
        }
        if metas.iter().all(|m| m.location != marker) {
            // The marker was created above but not listed (a listing racing our put).
            match store.delete(&marker).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => return Err(e.into()),
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
}
