//! The ruler Lambda function's wiring: an EventBridge scheduled event in, one evaluation pass
//! of every rule group out (alerts to Alertmanager, recorded samples by remote write), with
//! the configuration-from-environment, JSON logs and store opening of the other functions.
//!
//! Rules and alert state live in the bucket, so each invocation starts from what the last
//! one (or a `parquetry serve` backend) left: the schedule is the evaluation interval.

use std::sync::Arc;

use anyhow::Context as _;
use aws_lambda_events::cloudwatch_events::CloudWatchEvent;
use lambda_runtime::{LambdaEvent, service_fn};
use parquetry_model::Config;
use parquetry_query::QueryEngine;
use parquetry_ruler::Ruler;
use parquetry_store::Store;
use serde_json::Value;

pub struct RulerFunction {
    ruler: Ruler,
    url: String,
}

impl RulerFunction {
    pub fn new(config: Config) -> anyhow::Result<RulerFunction> {
        let url = config.storage_url();
        let store = Arc::new(
            Store::open_config(&url, &config.storage)
                .with_context(|| format!("opening storage {url}"))?,
        );
        let engine = QueryEngine::with_memory_limit(store.clone(), config.query_range.max_memory.0);
        // Another invocation may have run since this environment's last one: read rules and
        // state afresh each time.
        let ruler = Ruler::new(Arc::new(config), store, engine).stateless();
        Ok(RulerFunction { ruler, url })
    }

    /// Handles one scheduled event: evaluates every group at the current time. Returns the
    /// pass summary (also logged); an error when rules could not be read or a notification
    /// or write failed, so Lambda counts a failed invocation.
    pub async fn handle(&self, event: LambdaEvent<CloudWatchEvent>) -> anyhow::Result<Value> {
        let (event, context) = event.into_parts();
        tracing::info!(
            request_id = %context.request_id,
            event_id = event.id.as_deref().unwrap_or(""),
            scheduled_time = %event.time.to_rfc3339(),
            "ruler pass starting"
        );
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
    let config = parquetry_lambda::load_config(env)?;
    parquetry_lambda::init_logging(&config)?;
    let f = RulerFunction::new(config)?;
    tracing::info!(function = "ruler", storage = %f.url, "parquetry lambda is ready");
    let f = &f;
    lambda_runtime::run(service_fn(
        move |event: LambdaEvent<CloudWatchEvent>| async move {
            f.handle(event)
                .await
                .map_err(|e| lambda_runtime::Error::from(format!("{e:#}")))
        },
    ))
    .await
    .map_err(|e| anyhow::anyhow!("lambda runtime: {e}"))
}
