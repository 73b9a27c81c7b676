//! The compactor Lambda function's wiring: an EventBridge scheduled event in, one maintenance
//! pass out (compaction, the delete pass and, when `compactor.retention_enabled`, retention),
//! under the compactor lease. Configuration, logging, store opening and the pass itself come
//! from `parquetry_host`; the logic from `parquetry_store`. This crate links neither the HTTP
//! router nor the query engine.
//!
//! A failed compaction or retention step is returned as an error so Lambda records a failed
//! invocation (the `Errors` metric); every step is idempotent, so the next scheduled event
//! finishes whatever this one left.
// Non-test code never panics on a `Result` or `Option`: errors are typed and returned.
#![cfg_attr(not(test), warn(clippy::unwrap_used, clippy::expect_used))]

use std::sync::Arc;

use aws_lambda_events::cloudwatch_events::CloudWatchEvent;
use lambda_runtime::LambdaEvent;
use parquetry_host::scheduled::run_scheduled;
use parquetry_host::{FailOn, HostError, Lease, Leased, LogOutput, Maintenance};
use parquetry_model::Config;
use parquetry_store::compact::NoProgress;
use serde_json::{Value, json};

/// The store and the pass, built once per execution environment.
pub struct Compactor {
    maintenance: Maintenance,
}

impl Compactor {
    /// Opens the store `config` names.
    pub fn new(config: Config) -> Result<Compactor, HostError> {
        let store = parquetry_host::open_store(&config)?;
        Ok(Compactor {
            maintenance: Maintenance::new(Arc::new(config), store),
        })
    }

    /// Handles one scheduled event: one pass under the lease. Returns the JSON summary that is
    /// also logged; an error if compaction or retention failed.
    pub async fn handle(&self, event: LambdaEvent<CloudWatchEvent>) -> Result<Value, HostError> {
        let storage = self.maintenance.store().url();
        // A pass that outlives the schedule, or a `parquetry serve` backend on the same bucket,
        // holds the lease: this invocation then has nothing to add.
        let lease = Lease::for_invocation(&event.context.request_id);
        match self.maintenance.run_leased(&lease, &NoProgress).await {
            Leased::Skipped { holder } => {
                tracing::info!(%holder, "another compactor holds the lease; skipping this pass");
                Ok(json!({ "storage": storage, "skipped": format!("lease held by {holder}") }))
            }
            Leased::Ran(report) => {
                let summary = report.log_summary(storage);
                report.into_result(FailOn::CompactionOrRetention)?;
                Ok(summary)
            }
        }
    }
}

/// Start-up: configuration, logging, store, then the runtime loop.
pub async fn run() -> anyhow::Result<()> {
    let env: Vec<(String, String)> = std::env::vars().collect();
    let config = parquetry_host::load_lambda_config(env)?;
    parquetry_host::init_logging(&config, LogOutput::Lambda)?;
    let compactor = Compactor::new(config)?;
    tracing::info!(
        function = "compactor",
        storage = %compactor.maintenance.store().url(),
        retention_enabled = compactor.maintenance.retention_enabled(),
        "parquetry lambda is ready"
    );
    run_scheduled("compactor", |event| compactor.handle(event)).await?;
    Ok(())
}
