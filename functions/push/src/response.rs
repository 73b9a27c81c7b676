//! The Lambda handler: an API Gateway (REST v1, HTTP API v2) or ALB event in, the router's
//! response out, with Lambda's synchronous response limit enforced before the runtime hits it.
//!
//! `lambda_http` turns the event into an `http::Request` (decoding a base64 body, so
//! protobuf+snappy and gzip pushes arrive as the bytes the agent sent; `Content-Encoding` is left
//! for the push decoder) and the router's response back into the event source's response shape
//! (binary bodies, including gzip-encoded ones, as base64). A serialized response larger than
//! the limit would make the runtime's post fail and API Gateway answer a bare 502/500; instead
//! the client gets a 413 that says what happened and what to change.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use axum::Router;
use lambda_http::request::{LambdaRequest, RequestOrigin};
use lambda_http::{Adapter, LambdaEvent, Service};
use serde_json::value::RawValue;

pub use parquetry_host::lambda::{LAMBDA_MAX_RESPONSE_BYTES, MAX_RESPONSE_ENV};

/// `Service<LambdaEvent<LambdaRequest>>` around the router; what `lambda_runtime::run` drives
/// and what the handler tests call with recorded events.
#[derive(Clone)]
pub struct LambdaHandler {
    adapter: Adapter<'static, axum::response::Response, Router>,
    max_response_bytes: usize,
}

impl LambdaHandler {
    /// A handler serving `app`, answering 413 past `max_response_bytes`.
    pub fn new(app: Router, max_response_bytes: usize) -> LambdaHandler {
        LambdaHandler {
            adapter: Adapter::from(app),
            max_response_bytes,
        }
    }
}

type HandlerFuture =
    Pin<Box<dyn Future<Output = Result<Box<RawValue>, lambda_http::Error>> + Send>>;

impl Service<LambdaEvent<LambdaRequest>> for LambdaHandler {
    type Response = Box<RawValue>;
    type Error = lambda_http::Error;
    type Future = HandlerFuture;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.adapter
            .poll_ready(cx)
            .map_err(|e: Infallible| match e {})
    }

    fn call(&mut self, event: LambdaEvent<LambdaRequest>) -> Self::Future {
        let origin = event.payload.request_origin();
        let response = self.adapter.call(event);
        let max = self.max_response_bytes;
        Box::pin(async move {
            let response = match response.await {
                Ok(r) => r,
                Err(never) => match never {},
            };
            let text = serde_json::to_string(&response)?;
            if text.len() <= max {
                return Ok(RawValue::from_string(text)?);
            }
            tracing::warn!(
                size = text.len(),
                max,
                "response exceeds the Lambda response limit; answering 413"
            );
            Ok(too_large(&origin, text.len(), max)?)
        })
    }
}

/// The 413 in the response shape the event source expects.
fn too_large(
    origin: &RequestOrigin,
    size: usize,
    max: usize,
) -> Result<Box<RawValue>, serde_json::Error> {
    let message = format!(
        "response too large: {size} bytes exceeds the AWS Lambda response limit of {max} bytes; \
         narrow the query (shorter time range, lower limit, more selective selector) or send \
         Accept-Encoding: gzip\n"
    );
    let content_type = "text/plain; charset=utf-8";
    let value = match origin {
        // REST APIs merge `headers` into `multiValueHeaders`; ALBs read whichever the target
        // group is configured for.
        RequestOrigin::ApiGatewayV1 => serde_json::json!({
            "statusCode": 413,
            "headers": {},
            "multiValueHeaders": { "content-type": [content_type] },
            "body": message,
            "isBase64Encoded": false,
        }),
        RequestOrigin::Alb => serde_json::json!({
            "statusCode": 413,
            "statusDescription": "413 Payload Too Large",
            "headers": { "content-type": content_type },
            "multiValueHeaders": { "content-type": [content_type] },
            "body": message,
            "isBase64Encoded": false,
        }),
        _ => serde_json::json!({
            "statusCode": 413,
            "headers": { "content-type": content_type },
            "multiValueHeaders": {},
            "body": message,
            "isBase64Encoded": false,
            "cookies": [],
        }),
    };
    RawValue::from_string(serde_json::to_string(&value)?)
}
