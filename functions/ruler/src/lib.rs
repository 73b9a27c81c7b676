//! The ruler Lambda function's wiring: an EventBridge scheduled event in, one evaluation pass
//! of every rule group out (alerts to Alertmanager, recorded samples by remote write), with
//! the configuration-from-environment, JSON logs and store opening of the other functions
//! (`parquetry_host`).
//!
//! Rules and alert state live in the bucket, so each invocation starts from what the last
//! one (or a `parquetry serve` backend) left: the schedule is the evaluation interval.
// Non-test code never panics on a `Result` or `Option`: errors are typed and returned.
#![cfg_attr(not(test), warn(clippy::unwrap_used, clippy::expect_used))]

use std::sync::Arc;

use aws_lambda_events::cloudwatch_events::CloudWatchEvent;
use lambda_runtime::LambdaEvent;
use parquetry_host::scheduled::run_scheduled;
use parquetry_model::Config;
use parquetry_query::QueryEngine;
use parquetry_ruler::Ruler;
use serde_json::Value;

/// The ruler function's state, kept across invocations.
pub struct RulerFunction {
    ruler: Ruler,
    url: String,
}

impl RulerFunction {
    /// Opens the store and the ruler `config` describes.
    pub fn new(config: Config) -> anyhow::Result<RulerFunction> {
        let url = config.storage_url();
        let store = parquetry_host::open_store(&config)?;
        let engine = QueryEngine::with_memory_limit(store.clone(), config.query_range.max_memory.0);
        // Another invocation may have run since this environment's last one: read rules and
        // state afresh each time.
        let ruler = Ruler::new(Arc::new(config), store, engine).stateless();
        Ok(RulerFunction { ruler, url })
    }

    /// Handles one scheduled event: evaluates every group at the current time. Returns the
    /// pass summary (also logged); an error when rules could not be read or a notification
    /// or write failed, so Lambda counts a failed invocation.
    pub async fn handle(&self, _event: LambdaEvent<CloudWatchEvent>) -> anyhow::Result<Value> {
        let started = std::time::Instant::now();
        let summary = self.ruler.run_pass(parquetry_ruler::now_ns(), false).await;
        let mut out = serde_json::to_value(&summary)?;
        out["storage"] = Value::from(self.url.clone());
        out["elapsed_ms"] = Value::from(started.elapsed().as_millis() as u64);
        if summary.errors.is_empty() {
            tracing::info!(
                summary = %out,
                groups = summary.groups_evaluated,
                alerts_sent = summary.alerts_sent,
                samples_written = summary.samples_written,
                "ruler pass done"
            );
            Ok(out)
        } else {
            tracing::error!(summary = %out, "ruler pass had errors");
            Err(anyhow::anyhow!(
                "ruler pass had errors: {}",
                summary.errors.join("; ")
            ))
        }
    }
}

/// Start-up: configuration, logging, store, then the runtime loop.
pub async fn run() -> anyhow::Result<()> {
    let env: Vec<(String, String)> = std::env::vars().collect();
    let config = parquetry_host::load_lambda_config(env)?;
    parquetry_host::init_logging(&config, parquetry_host::LogOutput::Lambda)?;
    let f = RulerFunction::new(config)?;
    tracing::info!(function = "ruler", storage = %f.url, "parquetry lambda is ready");
    run_scheduled("ruler", |event| f.handle(event)).await?;
    Ok(())
}
