//! The maintenance pass: compaction, then the delete pass (delete requests past their cancel
//! period and `retention_stream` rules), then, with `compactor.retention_enabled`, retention.
//! The `parquetry serve` timer, `parquetry compact` and the compactor Lambda function all run
//! this one pass; they differ only in how they hold the compactor lease ([`Lease`]), whether
//! retention runs, and which failures fail the pass ([`FailOn`]).
//!
//! Every step is idempotent and a later step does not depend on an earlier one succeeding, so
//! each step runs even when the one before failed, and the next pass finishes whatever this one
//! left.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use parquetry_model::Config;
use parquetry_store::compact::{CompactSummary, Progress};
use parquetry_store::lease::LeaseState;
use parquetry_store::{
    CompactOptions, DeletePassOptions, DeletePassSummary, RetentionOptions, RetentionSummary,
    Store, StoreError, TenantPolicy,
};
use serde_json::{Value, json};
use tracing::Instrument as _;

use crate::HostError;

/// The lease object's name in the bucket (`leases/compactor/…`).
pub const LEASE_NAME: &str = "compactor";

/// Lambda's longest run: an invocation's lease covers any pass it can make.
const INVOCATION_LEASE: Duration = Duration::from_secs(15 * 60);

/// How a process holds the compactor lease around its pass.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    /// Who the lease names; unique per process (or per invocation).
    pub owner: String,
    /// How long the lease lasts unless renewed.
    pub ttl: Duration,
    /// Hand the lease back when the pass ends (an invocation); otherwise keep it and renew it
    /// at the next pass (a timer).
    pub release: bool,
}

impl Lease {
    /// A repeating timer's lease: long enough to cover a pass and the next tick (three
    /// intervals, at least a minute), renewed every tick, never released, so one process keeps
    /// the work while it lives and another takes over once it expires.
    pub fn for_timer(interval: Duration) -> Lease {
        let host = std::fs::read_to_string("/etc/hostname")
            .map(|h| h.trim().to_string())
            .unwrap_or_default();
        let started = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default();
        Lease {
            owner: format!("{host}-{}-{started}", std::process::id()),
            ttl: interval.saturating_mul(3).max(Duration::from_secs(60)),
            release: false,
        }
    }

    /// A Lambda invocation's lease: fifteen minutes, released when the pass ends, so the next
    /// holder need not wait for it to expire.
    pub fn for_invocation(request_id: &str) -> Lease {
        Lease {
            owner: format!("lambda-{request_id}"),
            ttl: INVOCATION_LEASE,
            release: true,
        }
    }
}

/// Which failed steps make [`PassReport::into_result`] an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailOn {
    /// Compaction or retention. A failed delete pass is logged and left to the next pass: the
    /// compactor function, whose failed invocations Lambda retries and counts as `Errors`.
    CompactionOrRetention,
    /// Any step, the delete pass included: `parquetry compact --once`, whose exit status is
    /// all a caller sees.
    AnyStep,
}

/// The outcome of a pass under the lease.
#[derive(Debug)]
pub enum Leased {
    // Boxed: the report is a few hundred bytes, the skip a name.
    /// The pass ran: what each step did.
    Ran(Box<PassReport>),
    /// Another process holds the lease: passes are safe to race, but this one would only
    /// repeat its work.
    Skipped {
        /// The lease's holder.
        holder: String,
    },
}

/// What each step of one pass did.
#[derive(Debug)]
pub struct PassReport {
    /// The compaction step.
    pub compaction: Result<CompactSummary, StoreError>,
    /// The delete step (requests and `retention_stream`).
    pub deletes: Result<DeletePassSummary, StoreError>,
    /// `None` when retention is not part of this pass.
    pub retention: Option<Result<RetentionSummary, StoreError>>,
    /// How long the pass took.
    pub elapsed: Duration,
}

impl PassReport {
    /// The summary the compactor function returns and logs: one object per step with its
    /// counters, or `ok: false` and the error.
    pub fn summary(&self, storage: &str) -> Value {
        let mut summary = json!({
            "storage": storage,
            "elapsed_ms": self.elapsed.as_millis() as u64,
        });
        summary["compaction"] = match &self.compaction {
            Ok(s) => json!({
                "ok": true,
                "days": s.days,
                "hot_absorbed": s.hot_absorbed,
                "cold_written": s.cold_written,
                "cold_rewritten": s.cold_rewritten,
                "bytes_read": s.bytes_read,
                "bytes_written": s.bytes_written,
                "entries": s.entries,
                "absorbed_deleted": s.absorbed_deleted,
                "orphans_deleted": s.orphans_deleted,
                "manifests_deleted": s.manifests_deleted,
                "races_lost": s.races_lost,
            }),
            Err(e) => json!({ "ok": false, "error": e.to_string() }),
        };
        summary["retention"] = match &self.retention {
            None => json!({ "enabled": false }),
            Some(Ok(s)) => json!({
                "enabled": true,
                "ok": true,
                "days_expired": s.expired.len(),
                "days_deleted": s.expired.iter().filter(|d| d.deleted).count(),
                "objects_deleted": s.objects_deleted,
            }),
            Some(Err(e)) => json!({ "enabled": true, "ok": false, "error": e.to_string() }),
        };
        summary
    }

    /// Logs [`PassReport::summary`] as one line: the whole summary as a JSON string, and the
    /// main counters as fields of their own for CloudWatch metric filters and Logs Insights.
    /// `error` level when compaction or retention failed.
    pub fn log_summary(&self, storage: &str) -> Value {
        let summary = self.summary(storage);
        let field = |pass: &str, key: &str| summary[pass][key].as_u64().unwrap_or(0);
        let (hot_absorbed, cold_written, bytes_written, objects_deleted) = (
            field("compaction", "hot_absorbed"),
            field("compaction", "cold_written"),
            field("compaction", "bytes_written"),
            field("retention", "objects_deleted"),
        );
        if self.failed_step(FailOn::CompactionOrRetention).is_some() {
            tracing::error!(
                summary = %summary,
                hot_absorbed,
                cold_written,
                bytes_written,
                objects_deleted,
                "compactor pass failed"
            );
        } else {
            tracing::info!(
                summary = %summary,
                hot_absorbed,
                cold_written,
                bytes_written,
                objects_deleted,
                "compactor pass done"
            );
        }
        summary
    }

    /// The first step that failed and counts under `fail_on`.
    pub fn failed_step(&self, fail_on: FailOn) -> Option<&'static str> {
        if self.compaction.is_err() {
            Some("compaction")
        } else if fail_on == FailOn::AnyStep && self.deletes.is_err() {
            Some("delete")
        } else if matches!(self.retention, Some(Err(_))) {
            Some("retention")
        } else {
            None
        }
    }

    /// The report, or the error of the first step that failed and counts under `fail_on`.
    pub fn into_result(self, fail_on: FailOn) -> Result<PassReport, HostError> {
        let failed = |step| move |source| HostError::Pass { step, source };
        let PassReport {
            compaction,
            deletes,
            retention,
            elapsed,
        } = self;
        let compaction = compaction.map_err(failed("compaction"))?;
        let deletes = match deletes {
            Err(source) if fail_on == FailOn::AnyStep => return Err(failed("delete")(source)),
            deletes => deletes,
        };
        let retention = match retention {
            Some(Err(source)) => return Err(failed("retention")(source)),
            retention => retention,
        };
        Ok(PassReport {
            compaction: Ok(compaction),
            deletes,
            retention,
            elapsed,
        })
    }
}

/// The store and the options of every step, built once per process.
pub struct Maintenance {
    config: Arc<Config>,
    store: Arc<Store>,
    compact: CompactOptions,
    deletes: DeletePassOptions,
    /// `None`: this pass does not run retention.
    retention: Option<RetentionOptions>,
}

impl Maintenance {
    /// The pass `config` describes: retention only with `compactor.retention_enabled`.
    pub fn new(config: Arc<Config>, store: Arc<Store>) -> Maintenance {
        let retention = config
            .compactor
            .retention_enabled
            .then(|| RetentionOptions {
                delete_delay: config.compactor.retention_delete_delay.0,
                dry_run: false,
            });
        Maintenance {
            compact: CompactOptions::from_config(&config.compactor),
            deletes: DeletePassOptions::from_config(&config.compactor),
            retention,
            config,
            store,
        }
    }

    /// The same pass without retention (`parquetry compact`; `parquetry retention` is the
    /// command that deletes days).
    pub fn without_retention(mut self) -> Maintenance {
        self.retention = None;
        self
    }

    /// The configuration the pass runs with.
    pub fn config(&self) -> &Arc<Config> {
        &self.config
    }

    /// The store it maintains.
    pub fn store(&self) -> &Arc<Store> {
        &self.store
    }

    /// Whether the pass includes retention.
    pub fn retention_enabled(&self) -> bool {
        self.retention.is_some()
    }

    /// One pass under `lease`: skipped when another process holds it; run anyway when the
    /// lease cannot be read, because the lease only saves work and passes are safe to race.
    pub async fn run_leased(&self, lease: &Lease, progress: &dyn Progress) -> Leased {
        match self
            .store
            .acquire_lease(LEASE_NAME, &lease.owner, lease.ttl)
            .await
        {
            Ok(LeaseState::Held { .. }) => {}
            Ok(LeaseState::Busy { owner, .. }) => return Leased::Skipped { holder: owner },
            Err(e) => tracing::warn!(error = %e, "compactor lease unavailable; compacting anyway"),
        }
        let report = self.run(progress).await;
        if lease.release
            && let Err(e) = self.store.release_lease(LEASE_NAME, &lease.owner).await
        {
            tracing::warn!(error = %e, "releasing the compactor lease failed");
        }
        Leased::Ran(Box::new(report))
    }

    /// One pass without the lease. Each step logs its own outcome.
    pub async fn run(&self, progress: &dyn Progress) -> PassReport {
        let span = tracing::info_span!("maintenance_pass", storage = %self.store.url());
        async {
            let started = Instant::now();
            let compaction = self.compaction(progress).await;
            let deletes = self.delete_pass().await;
            let retention = match &self.retention {
                Some(opts) => Some(self.retention(opts).await),
                None => None,
            };
            PassReport {
                compaction,
                deletes,
                retention,
                elapsed: started.elapsed(),
            }
        }
        .instrument(span)
        .await
    }

    async fn compaction(&self, progress: &dyn Progress) -> Result<CompactSummary, StoreError> {
        let compact = self.store.compact(&self.compact, progress);
        // Log readers (and the deployment tests) look for this line and its `Debug` form.
        step("compaction", compact, |summary| {
            tracing::info!(?summary, "compaction pass done");
        })
        .await
    }

    async fn delete_pass(&self) -> Result<DeletePassSummary, StoreError> {
        let config = &self.config;
        let deletes = self
            .store
            .apply_deletes(&self.deletes, |t| TenantPolicy::from_config(config, t));
        step("delete", deletes, |d| {
            tracing::info!(
                requests = d.requests_processed.len(),
                objects = d.objects_rewritten,
                entries = d.entries_removed,
                bytes = d.bytes_removed,
                races_lost = d.races_lost,
                "delete pass done"
            );
        })
        .await
    }

    async fn retention(&self, opts: &RetentionOptions) -> Result<RetentionSummary, StoreError> {
        let config = &self.config;
        let retention = self.store.retention(|t| config.retention_period(t).0, opts);
        step("retention", retention, |s| {
            tracing::info!(
                days = s.expired.len(),
                objects = s.objects_deleted,
                "retention pass done"
            );
        })
        .await
    }
}

/// Awaits one step of the pass (the store gives each its own span) and logs its outcome:
/// `done` a success, a failure here.
async fn step<T>(
    name: &'static str,
    work: impl Future<Output = Result<T, StoreError>>,
    done: impl FnOnce(&T),
) -> Result<T, StoreError> {
    let result = work.await;
    match &result {
        Ok(summary) => done(summary),
        Err(e) => tracing::warn!(error = %e, "{name} pass failed"),
    }
    result
}
