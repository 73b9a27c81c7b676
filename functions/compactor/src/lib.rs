//! The compactor Lambda function's wiring: an EventBridge scheduled event in, one pass of the
//! store's compactor (and, when `compactor.retention_enabled`, one retention pass) out, with the
//! same configuration-from-environment, JSON logs and store opening as the push and query
//! functions (`parquetry_lambda`). All logic lives in `parquetry_store`.
//!
//! A failed pass is returned as an error so Lambda records a failed invocation (the `Errors`
//! metric); every step of both passes is idempotent, so the next scheduled event finishes
//! whatever this one left.

use std::sync::Arc;

use anyhow::Context as _;
use aws_lambda_events::cloudwatch_events::CloudWatchEvent;
use lambda_runtime::{LambdaEvent, service_fn};
use parquetry_model::Config;
use parquetry_store::compact::NoProgress;
use parquetry_store::lease::LeaseState;
use parquetry_store::{CompactOptions, DeletePassOptions, RetentionOptions, Store, TenantPolicy};
use serde_json::{Value, json};

/// The store and the options of both passes, built once per execution environment.
pub struct Compactor {
    config: Config,
    store: Arc<Store>,
    compact: CompactOptions,
    retention: RetentionOptions,
}

impl Compactor {
    /// Opens the store `config` names.
    pub fn new(config: Config) -> anyhow::Result<Compactor> {
        let url = config.storage_url();
        let store = Arc::new(
            Store::open_config(&url, &config.storage)
                .with_context(|| format!("opening storage {url}"))?,
        );
        Ok(Compactor {
            compact: CompactOptions::from_config(&config.compactor),
            retention: RetentionOptions {
                delete_delay: config.compactor.retention_delete_delay.0,
                dry_run: false,
            },
            config,
            store,
        })
    }

    /// Handles one scheduled event: a compaction pass, then (when enabled) a retention pass.
    /// Returns the JSON summary that is also logged; an error if either pass failed.
    pub async fn handle(&self, event: LambdaEvent<CloudWatchEvent>) -> anyhow::Result<Value> {
        let (event, context) = event.into_parts();
        tracing::info!(
            request_id = %context.request_id,
            event_id = event.id.as_deref().unwrap_or(""),
            detail_type = event.detail_type.as_deref().unwrap_or(""),
            source = event.source.as_deref().unwrap_or(""),
            scheduled_time = %event.time.to_rfc3339(),
            "compactor pass starting"
        );
        let started = std::time::Instant::now();
        // A pass that outlives the schedule, or a `parquetry serve` backend on the same bucket,
        // holds the lease: this invocation then has nothing to add (passes are safe to race,
        // only wasteful). Fifteen minutes is Lambda's longest run.
        let owner = format!("lambda-{}", context.request_id);
        match self
            .store
            .acquire_lease("compactor", &owner, std::time::Duration::from_secs(15 * 60))
            .await
        {
            Ok(LeaseState::Held { .. }) => {}
            Ok(LeaseState::Busy { owner: holder, .. }) => {
                tracing::info!(%holder, "another compactor holds the lease; skipping this pass");
                return Ok(
                    json!({ "storage": self.store.url(), "skipped": format!("lease held by {holder}") }),
                );
            }
            Err(e) => tracing::warn!(error = %e, "compactor lease unavailable; compacting anyway"),
        }
        let result = self.pass(started).await;
        // Hand the lease back at once, so the next holder need not wait for it to expire.
        if let Err(e) = self.store.release_lease("compactor", &owner).await {
            tracing::warn!(error = %e, "releasing the compactor lease failed");
        }
        result
    }

    /// Compaction, deletes and retention, and the summary of all three.
    async fn pass(&self, started: std::time::Instant) -> anyhow::Result<Value> {
        let compaction = self.store.compact(&self.compact, &NoProgress).await;
        // Delete requests past their cancel period and `retention_stream` rules.
        let deletes = self
            .store
            .apply_deletes(
                &DeletePassOptions::from_config(&self.config.compactor),
                |t| TenantPolicy::from_config(&self.config, t),
            )
            .await;
        match &deletes {
            Ok(d) => tracing::info!(
                requests = d.requests_processed.len(),
                objects = d.objects_rewritten,
                entries = d.entries_removed,
                "delete pass done"
            ),
            Err(e) => tracing::warn!(error = %e, "delete pass failed"),
        }
        let retention = if self.config.compactor.retention_enabled {
            Some(
                self.store
                    .retention(|t| self.config.retention_period(t).0, &self.retention)
                    .await,
            )
        } else {
            None
        };

        let mut summary = json!({
            "storage": self.store.url(),
            "elapsed_ms": started.elapsed().as_millis() as u64,
        });
        summary["compaction"] = match &compaction {
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
        summary["retention"] = match &retention {
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

        // The whole summary as one JSON string, and the main counters as fields of their own
        // for CloudWatch metric filters and Logs Insights.
        let field = |pass: &str, key: &str| summary[pass][key].as_u64().unwrap_or(0);
        let (hot_absorbed, cold_written, bytes_written, objects_deleted) = (
            field("compaction", "hot_absorbed"),
            field("compaction", "cold_written"),
            field("compaction", "bytes_written"),
            field("retention", "objects_deleted"),
        );
        if compaction.is_err() || matches!(retention, Some(Err(_))) {
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
        if let Err(e) = compaction {
            return Err(anyhow::Error::new(e).context("compaction pass failed"));
        }
        if let Some(Err(e)) = retention {
            return Err(anyhow::Error::new(e).context("retention pass failed"));
        }
        Ok(summary)
    }
}

/// Start-up: configuration, logging, store, then the runtime loop.
pub async fn run() -> anyhow::Result<()> {
    let env: Vec<(String, String)> = std::env::vars().collect();
    let config = parquetry_lambda::load_config(env)?;
    parquetry_lambda::init_logging(&config)?;
    let compactor = Compactor::new(config)?;
    tracing::info!(
        function = "compactor",
        storage = %compactor.store.url(),
        retention_enabled = compactor.config.compactor.retention_enabled,
        "parquetry lambda is ready"
    );
    let compactor = &compactor;
    lambda_runtime::run(service_fn(
        move |event: LambdaEvent<CloudWatchEvent>| async move {
            compactor
                .handle(event)
                .await
                .map_err(|e| lambda_runtime::Error::from(format!("{e:#}")))
        },
    ))
    .await
    .map_err(|e| anyhow::anyhow!("lambda runtime: {e}"))
}
