//! The query function's leaf side of fan-out: an invocation whose payload is a leaf task
//! (`{"parquetry_leaf": <LeafTask>}`, sent by [`crate::invoke::LambdaTransport`]) is answered
//! with the task's partial result; every other payload is an HTTP event for the router.
//!
//! The partial result (Arrow IPC) travels zstd-compressed and base64-encoded in a JSON object,
//! since a synchronous invocation's response is JSON text: metric partials (one row per
//! sample) compress several times over, which is that many more samples under Lambda's 6 MB. Failures the root must see as a query's
//! failure (a bad query, a result over the response limit) are answered as a successful
//! invocation carrying `parquetry_error`, so the root does not retry them as it retries
//! function errors.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use base64::Engine as _;
use lambda_http::request::LambdaRequest;
use lambda_http::{LambdaEvent, Service};
use parquetry_query::fanout::LeafTask;
use parquetry_query::{QueryEngine, QueryError};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::response::LambdaHandler;

/// The key of a leaf-task payload.
pub const LEAF_EVENT_KEY: &str = "parquetry_leaf";

/// A leaf-task payload.
#[derive(Debug, Serialize, Deserialize)]
pub struct LeafEvent {
    /// The task the leaf runs.
    pub parquetry_leaf: LeafTask,
}

/// What a leaf answers: the partial result, or why there is none.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LeafResponse {
    /// The partial result, Arrow IPC (`parquetry_query::fanout::wire`), zstd, base64.
    #[serde(rename = "parquetry_partial")]
    Partial(String),
    /// The task failed in a way retrying cannot fix.
    #[serde(rename = "parquetry_error")]
    Error(LeafError),
}

/// A leaf's failure, as the root rebuilds it into a [`QueryError`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LeafError {
    /// Which kind of failure.
    pub kind: LeafErrorKind,
    /// What the leaf said.
    pub message: String,
}

/// The kinds of [`LeafError`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LeafErrorKind {
    /// The query is not acceptable ([`QueryError::BadRequest`]).
    BadRequest,
    /// The query uses what the engine does not evaluate ([`QueryError::Unsupported`]).
    Unsupported,
    /// The partial result exceeds the function's response limit; fewer streams may fit.
    TooLarge,
    /// Anything else.
    Internal,
}

impl From<QueryError> for LeafError {
    fn from(e: QueryError) -> Self {
        let kind = match &e {
            QueryError::BadRequest(_) => LeafErrorKind::BadRequest,
            QueryError::Unsupported(_) => LeafErrorKind::Unsupported,
            _ => LeafErrorKind::Internal,
        };
        LeafError {
            kind,
            message: e.to_string(),
        }
    }
}

impl From<LeafError> for QueryError {
    fn from(e: LeafError) -> Self {
        match e.kind {
            LeafErrorKind::BadRequest | LeafErrorKind::TooLarge => {
                QueryError::BadRequest(e.message)
            }
            LeafErrorKind::Unsupported => QueryError::Unsupported(e.message),
            LeafErrorKind::Internal => QueryError::Internal(format!("leaf: {}", e.message)),
        }
    }
}

/// Runs `task` on `engine` and returns the response text, at most `max_response_bytes` long.
pub async fn answer(engine: &QueryEngine, task: LeafTask, max_response_bytes: usize) -> String {
    let streams = task.streams.len();
    let response = match task.run(engine).await {
        Ok(bytes) => {
            let text = match tokio::task::spawn_blocking(move || pack(&bytes)).await {
                Ok(Ok(b64)) => response_text(&LeafResponse::Partial(b64)),
                Ok(Err(e)) => return response_text(&LeafResponse::Error(e.into())),
                Err(e) => {
                    return response_text(&LeafResponse::Error(LeafError {
                        kind: LeafErrorKind::Internal,
                        message: format!("leaf compression task failed: {e}"),
                    }));
                }
            };
            if text.len() <= max_response_bytes {
                // One line per leaf invocation: what fan-out costs shows in the function's logs.
                tracing::info!(streams, bytes = text.len(), "fan-out leaf task answered");
                return text;
            }
            tracing::warn!(
                size = text.len(),
                max = max_response_bytes,
                streams,
                "leaf result exceeds the Lambda response limit"
            );
            LeafResponse::Error(LeafError {
                kind: LeafErrorKind::TooLarge,
                message: format!(
                    "a fan-out leaf's result of {} bytes ({streams} streams) exceeds the AWS \
                     Lambda response limit of {max_response_bytes} bytes; narrow the query \
                     (shorter time range, lower limit, fewer series) or raise \
                     query_range.fanout_leaves",
                    text.len()
                ),
            })
        }
        Err(e) => {
            tracing::warn!(error = %e, streams, "leaf task failed");
            LeafResponse::Error(e.into())
        }
    };
    response_text(&response)
}

/// Level 3: most of what zstd's higher levels gain on samples, at a few hundred MB/s.
const ZSTD_LEVEL: i32 = 3;

/// A partial result as it travels: zstd, then base64.
pub fn pack(ipc: &[u8]) -> Result<String, QueryError> {
    let z = zstd::bulk::compress(ipc, ZSTD_LEVEL)
        .map_err(|e| QueryError::Internal(format!("compressing the leaf result: {e}")))?;
    Ok(base64::engine::general_purpose::STANDARD.encode(z))
}

/// The Arrow IPC bytes back from [`pack`]'s text.
pub fn unpack(text: &str) -> Result<Vec<u8>, QueryError> {
    let z = base64::engine::general_purpose::STANDARD
        .decode(text)
        .map_err(|e| QueryError::Internal(format!("leaf result base64: {e}")))?;
    zstd::stream::decode_all(&z[..])
        .map_err(|e| QueryError::Internal(format!("leaf result zstd: {e}")))
}

fn response_text(r: &LeafResponse) -> String {
    // Serializing a string or two plain fields cannot fail; the fallback keeps the type honest.
    serde_json::to_string(r).unwrap_or_else(|e| {
        format!(r#"{{"parquetry_error":{{"kind":"internal","message":"{e}"}}}}"#)
    })
}

/// The payload's `parquetry_leaf` member, if it has one.
fn leaf_task(payload: &RawValue) -> Option<Result<LeafTask, serde_json::Error>> {
    #[derive(Deserialize)]
    struct Probe<'a> {
        #[serde(borrow)]
        parquetry_leaf: Option<&'a RawValue>,
    }
    // An HTTP event that is not a JSON object is no leaf either; the router's parse says why.
    let probe: Probe<'_> = serde_json::from_str(payload.get()).ok()?;
    probe
        .parquetry_leaf
        .map(|raw| serde_json::from_str(raw.get()))
}

/// `Service` over any invocation payload of the query function: leaf tasks answered from the
/// engine, everything else handed to the HTTP handler.
#[derive(Clone)]
pub struct FunctionHandler {
    http: LambdaHandler,
    engine: QueryEngine,
    max_response_bytes: usize,
    serves_leaves: bool,
}

impl FunctionHandler {
    /// A handler answering HTTP events with `http` and, if `serves_leaves` (the query
    /// function), leaf tasks from `engine`.
    pub fn new(
        http: LambdaHandler,
        engine: QueryEngine,
        max_response_bytes: usize,
        serves_leaves: bool,
    ) -> Self {
        FunctionHandler {
            http,
            engine,
            max_response_bytes,
            serves_leaves,
        }
    }
}

type HandlerFuture =
    Pin<Box<dyn Future<Output = Result<Box<RawValue>, lambda_http::Error>> + Send>>;

impl Service<LambdaEvent<Box<RawValue>>> for FunctionHandler {
    type Response = Box<RawValue>;
    type Error = lambda_http::Error;
    type Future = HandlerFuture;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.http.poll_ready(cx)
    }

    fn call(&mut self, event: LambdaEvent<Box<RawValue>>) -> Self::Future {
        let LambdaEvent { payload, context } = event;
        let leaf = if self.serves_leaves {
            leaf_task(&payload)
        } else {
            None
        };
        match leaf {
            Some(Ok(task)) => {
                let (engine, max) = (self.engine.clone(), self.max_response_bytes);
                Box::pin(
                    async move { Ok(RawValue::from_string(answer(&engine, task, max).await)?) },
                )
            }
            Some(Err(e)) => {
                let text = response_text(&LeafResponse::Error(LeafError {
                    kind: LeafErrorKind::BadRequest,
                    message: format!("malformed leaf task: {e}"),
                }));
                Box::pin(async move { Ok(RawValue::from_string(text)?) })
            }
            None => match serde_json::from_str::<LambdaRequest>(payload.get()) {
                Ok(request) => self.http.call(LambdaEvent::new(request, context)),
                Err(e) => Box::pin(async move {
                    Err(format!(
                        "the query function got an event that is neither an HTTP request \
                         (API Gateway, function URL, ALB) nor a leaf task: {e}"
                    )
                    .into())
                }),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use parquetry_model::Labels;
    use parquetry_query::QueryStats;
    use parquetry_query::fanout::wire::{self, Partial, PartialResult};

    use super::*;

    /// A `count_over_time` leaf's samples: one per line, value 1, irregular timestamps.
    #[test]
    fn packed_metric_partials_are_several_times_smaller() {
        let mut ts = 1_795_867_140_000_000_000i64;
        let series: Vec<parquetry_eval::SampleSeries> = (0..4)
            .map(|s| parquetry_eval::SampleSeries {
                labels: Labels::from_pairs([("level", ["info", "warn", "error", "debug"][s])]),
                samples: (0..50_000)
                    .map(|i| {
                        ts += 1_000_000 + (i * 7919 % 1_000_000);
                        (ts, 1.0)
                    })
                    .collect(),
            })
            .collect();
        let ipc = wire::encode(&Partial {
            stats: QueryStats::default(),
            result: PartialResult::Metric(vec![series.into()]),
        })
        .unwrap();
        let text = pack(&ipc).unwrap();
        assert_eq!(unpack(&text).unwrap(), ipc.to_vec());
        let ratio = (ipc.len() * 4 / 3) as f64 / text.len() as f64;
        eprintln!(
            "200,000 samples: {} bytes of IPC, {} bytes packed ({ratio:.1}x fewer than base64 IPC)",
            ipc.len(),
            text.len()
        );
        assert!(ratio > 2.0, "{ratio}");
    }
}
