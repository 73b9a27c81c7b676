//! The runtime loop of a Lambda function driven by EventBridge schedules (the compactor and the
//! ruler): each scheduled event is logged and handed to the function's handler, whose JSON
//! summary becomes the invocation's response and whose error fails the invocation (Lambda's
//! `Errors` metric), with the error and its causes as the message.

use std::future::Future;

use aws_lambda_events::cloudwatch_events::CloudWatchEvent;
use lambda_runtime::{LambdaEvent, service_fn};
use serde_json::Value;

use crate::{HostError, error_chain};

/// Serves scheduled events with `handler` until the runtime stops. `function` names the
/// function in the line logged for each event.
pub async fn run_scheduled<H, Fut, E>(function: &'static str, handler: H) -> Result<(), HostError>
where
    H: Fn(LambdaEvent<CloudWatchEvent>) -> Fut,
    Fut: Future<Output = Result<Value, E>>,
    E: Into<lambda_runtime::Error>,
{
    let handler = &handler;
    lambda_runtime::run(service_fn(
        move |event: LambdaEvent<CloudWatchEvent>| async move {
            let payload = &event.payload;
            tracing::info!(
                function,
                request_id = %event.context.request_id,
                event_id = payload.id.as_deref().unwrap_or(""),
                detail_type = payload.detail_type.as_deref().unwrap_or(""),
                source = payload.source.as_deref().unwrap_or(""),
                scheduled_time = %payload.time.to_rfc3339(),
                "scheduled pass starting"
            );
            handler(event).await.map_err(|e| {
                let e: lambda_runtime::Error = e.into();
                lambda_runtime::Error::from(error_chain(&*e))
            })
        },
    ))
    .await
    .map_err(|e| HostError::Runtime(e.to_string()))
}
