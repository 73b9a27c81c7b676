//! The Lambda fan-out transport: each leaf task of a split query is a synchronous invocation
//! (`RequestResponse`) of the query function (normally itself) through the Lambda Invoke
//! API, SigV4-signed with the credentials Lambda puts in the environment.
//!
//! - **Retries**: throttling (429), service errors (5xx), transport errors and function errors
//!   (`X-Amz-Function-Error`: a leaf that crashed, ran out of memory or timed out) are retried
//!   with exponential backoff, [`MAX_ATTEMPTS`] attempts in all. A leaf's own answer that the
//!   query failed (`parquetry_error`) is final.
//! - **Response limit**: a leaf whose result exceeds Lambda's 6 MB response limit answers
//!   `too_large`; the transport then runs its streams as two leaves, halving again as needed,
//!   and merges their results. A single stream whose result is still too large fails the
//!   query with the leaf's message.
//! - Concurrency is capped by the fan-out itself (`query_range.fanout_concurrency`): a split
//!   leaf runs its halves one after the other, within the one slot the leaf held.

use std::time::{Duration, SystemTime};

use aws_credential_types::Credentials;
use aws_sigv4::http_request::{SignableBody, SignableRequest, SigningSettings, sign};
use aws_sigv4::sign::v4;
use bytes::Bytes;
use parquetry_query::fanout::wire::{self, Partial, PartialResult};
use parquetry_query::fanout::{LeafTask, Transport};
use parquetry_query::{QueryEngine, QueryError, Result};

use crate::leaf::{LeafErrorKind, LeafEvent, LeafResponse};

/// Overrides the Invoke API endpoint (`https://lambda.{region}.amazonaws.com`), e.g. for a
/// local Lambda emulator.
pub const ENDPOINT_ENV: &str = "PARQUETRY_LAMBDA_ENDPOINT";

/// Invocations of one leaf before its query fails.
pub const MAX_ATTEMPTS: u32 = 4;

/// First retry delay; doubled for each further attempt.
const BACKOFF: Duration = Duration::from_millis(200);

/// How long a leaf may take: under the root's own 29 s function timeout, itself under API
/// Gateway's 30 s, so a stuck leaf fails its query with a message rather than the gateway
/// cutting the request. Not retried: a second try could not finish in time either.
pub const LEAF_TIMEOUT: Duration = Duration::from_secs(25);

/// Invokes leaf tasks as synchronous invocations of a Lambda function.
#[derive(Debug, Clone)]
pub struct LambdaTransport {
    client: reqwest::Client,
    url: String,
    region: String,
    credentials: Option<Credentials>,
}

/// Why the transport cannot be set up.
#[derive(Debug, thiserror::Error)]
pub enum InvokeSetupError {
    /// A setting the transport needs is absent.
    #[error("query_range.fanout_transport is lambda, but {0}")]
    Missing(&'static str),
    /// The HTTP client could not be built.
    #[error("Lambda invoke client: {0}")]
    Client(#[from] reqwest::Error),
}

impl LambdaTransport {
    /// A transport invoking `function` (empty: `AWS_LAMBDA_FUNCTION_NAME`), with the endpoint,
    /// region and credentials from `env` (the process environment in a function).
    pub fn from_env(
        function: &str,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> std::result::Result<LambdaTransport, InvokeSetupError> {
        let env: std::collections::HashMap<String, String> = env.into_iter().collect();
        let get = |k: &str| env.get(k).filter(|v| !v.is_empty()).cloned();
        let function = match function {
            "" => get("AWS_LAMBDA_FUNCTION_NAME").ok_or(InvokeSetupError::Missing(
                "neither query_range.fanout_lambda_function nor AWS_LAMBDA_FUNCTION_NAME names \
                 the function to invoke",
            ))?,
            f => f.to_string(),
        };
        let region = get("AWS_REGION")
            .or_else(|| get("AWS_DEFAULT_REGION"))
            .ok_or(InvokeSetupError::Missing("AWS_REGION is not set"))?;
        let endpoint = get(ENDPOINT_ENV);
        let credentials = match (get("AWS_ACCESS_KEY_ID"), get("AWS_SECRET_ACCESS_KEY")) {
            (Some(id), Some(secret)) => Some(Credentials::new(
                id,
                secret,
                get("AWS_SESSION_TOKEN"),
                None,
                "environment",
            )),
            // An emulator does not check signatures; AWS does.
            _ if endpoint.is_some() => None,
            _ => {
                return Err(InvokeSetupError::Missing(
                    "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY are not set",
                ));
            }
        };
        let endpoint = endpoint.unwrap_or_else(|| format!("https://lambda.{region}.amazonaws.com"));
        let url = format!(
            "{}/2015-03-31/functions/{}/invocations",
            endpoint.trim_end_matches('/'),
            percent_encode(&function)
        );
        let client = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .build()?;
        Ok(LambdaTransport {
            client,
            url,
            region,
            credentials,
        })
    }

    /// The Invoke API URL leaves are posted to.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// One invocation: the leaf's answer, or why it should be retried.
    async fn invoke_once(&self, body: &Bytes) -> std::result::Result<LeafResponse, Attempt> {
        let mut req = self
            .client
            .post(&self.url)
            .header("content-type", "application/json")
            .body(body.clone());
        if let Some(credentials) = &self.credentials {
            for (name, value) in self.signature(credentials, body).map_err(Attempt::Fatal)? {
                req = req.header(name, value);
            }
        }
        let resp = req.timeout(LEAF_TIMEOUT).send().await.map_err(|e| {
            if e.is_timeout() {
                Attempt::Fatal(format!("no answer within {LEAF_TIMEOUT:?}"))
            } else {
                Attempt::Retry(format!("invoke request failed: {e}"))
            }
        })?;
        let status = resp.status();
        let function_error = resp
            .headers()
            .get("x-amz-function-error")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let text = resp
            .text()
            .await
            .map_err(|e| Attempt::Retry(format!("reading the invoke response failed: {e}")))?;
        if status.as_u16() == 429 || status.is_server_error() {
            return Err(Attempt::Retry(format!(
                "Invoke API answered {status}: {text}"
            )));
        }
        if !status.is_success() {
            return Err(Attempt::Fatal(format!(
                "Invoke API answered {status}: {text}"
            )));
        }
        if let Some(kind) = function_error {
            return Err(Attempt::Retry(format!("function error ({kind}): {text}")));
        }
        serde_json::from_str(&text).map_err(|e| {
            Attempt::Fatal(format!(
                "the leaf answered something else than a leaf result: {e}"
            ))
        })
    }

    fn signature(
        &self,
        credentials: &Credentials,
        body: &[u8],
    ) -> std::result::Result<Vec<(String, String)>, String> {
        let identity = credentials.clone().into();
        let params = v4::SigningParams::builder()
            .identity(&identity)
            .region(&self.region)
            .name("lambda")
            .time(SystemTime::now())
            .settings(SigningSettings::default())
            .build()
            .map_err(|e| format!("SigV4 parameters: {e}"))?
            .into();
        let request = SignableRequest::new(
            "POST",
            self.url.as_str(),
            std::iter::once(("content-type", "application/json")),
            SignableBody::Bytes(body),
        )
        .map_err(|e| format!("SigV4 request: {e}"))?;
        let (instructions, _) = sign(request, &params)
            .map_err(|e| format!("SigV4 signing: {e}"))?
            .into_parts();
        Ok(instructions
            .headers()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect())
    }

    /// The leaf's answer, after the retries [`MAX_ATTEMPTS`] allows.
    async fn invoke(&self, task: &LeafTask) -> Result<LeafResponse> {
        let body = serde_json::to_vec(&LeafEvent {
            parquetry_leaf: task.clone(),
        })
        .map(Bytes::from)
        .map_err(|e| QueryError::Internal(format!("leaf task: {e}")))?;
        let mut attempt = 1;
        loop {
            match self.invoke_once(&body).await {
                Ok(r) => return Ok(r),
                Err(Attempt::Retry(why)) if attempt < MAX_ATTEMPTS => {
                    let delay = BACKOFF * 2u32.pow(attempt - 1);
                    tracing::warn!(attempt, ?delay, %why, "leaf invocation failed; retrying");
                    tokio::time::sleep(delay).await;
                    attempt += 1;
                }
                Err(Attempt::Retry(why) | Attempt::Fatal(why)) => {
                    return Err(QueryError::Internal(format!(
                        "leaf invocation of {} failed after {attempt} attempt(s): {why}",
                        self.url
                    )));
                }
            }
        }
    }

    /// Runs `task`, splitting it while its result is too large for one response.
    fn run_split(
        &self,
        task: LeafTask,
    ) -> std::pin::Pin<Box<dyn Future<Output = Result<Bytes>> + Send + '_>> {
        Box::pin(async move {
            match self.invoke(&task).await? {
                LeafResponse::Partial(text) => {
                    tokio::task::spawn_blocking(move || crate::leaf::unpack(&text).map(Bytes::from))
                        .await
                        .map_err(|e| QueryError::Internal(format!("leaf unpack task: {e}")))?
                }
                LeafResponse::Error(e)
                    if e.kind == LeafErrorKind::TooLarge && task.streams.len() > 1 =>
                {
                    let mut first = task;
                    let second_streams = first.streams.split_off(first.streams.len() / 2);
                    tracing::info!(
                        streams = first.streams.len() + second_streams.len(),
                        "leaf result too large for one response; splitting the leaf"
                    );
                    let second = LeafTask {
                        streams: second_streams,
                        ..first.clone()
                    };
                    let a = self.run_split(first).await?;
                    let b = self.run_split(second).await?;
                    tokio::task::spawn_blocking(move || merge(&a, &b))
                        .await
                        .map_err(|e| QueryError::Internal(format!("leaf merge task: {e}")))?
                }
                LeafResponse::Error(e) => Err(e.into()),
            }
        })
    }
}

/// One invocation's failure: worth another attempt or not.
enum Attempt {
    Retry(String),
    Fatal(String),
}

/// Two partial results of one query as one (the root orders and merges their contents).
fn merge(a: &[u8], b: &[u8]) -> Result<Bytes> {
    let (a, b) = (wire::decode(a)?, wire::decode(b)?);
    let mut stats = a.stats;
    stats.add(&b.stats);
    // Both halves ran, and are billed, one after the other.
    stats.exec_time_s += b.stats.exec_time_s;
    let result = match (a.result, b.result) {
        (PartialResult::Log(mut x), PartialResult::Log(y)) => {
            x.extend(y);
            PartialResult::Log(x)
        }
        (PartialResult::Metric(mut x), PartialResult::Metric(y)) if x.len() == y.len() => {
            for (xs, ys) in x.iter_mut().zip(y) {
                xs.append(ys);
            }
            PartialResult::Metric(x)
        }
        _ => {
            return Err(QueryError::Internal(
                "the halves of a split leaf answered different kinds of results".into(),
            ));
        }
    };
    wire::encode(&Partial { stats, result })
}

fn percent_encode(s: &str) -> String {
    // Function names and ARNs hold only letters, digits, `-`, `_`, `:` and `.`; `:` is the one
    // to escape in a path segment for SigV4's canonical URI to match what is sent.
    s.replace(':', "%3A")
}

#[async_trait::async_trait]
impl Transport for LambdaTransport {
    async fn run(&self, _engine: &QueryEngine, task: LeafTask) -> Result<Bytes> {
        self.run_split(task).await
    }

    fn bills_leaves(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use axum::extract::State;
    use axum::http::{HeaderMap, StatusCode};
    use axum::response::IntoResponse;
    use parquetry_model::Labels;
    use parquetry_query::QueryStats;
    use parquetry_query::fanout::LeafKind;
    use parquetry_query::logs::ResultEntry;

    use super::*;
    use crate::leaf::LeafError;

    /// What the fake Invoke API answers each call with, in order; the last one repeats.
    type Script = Arc<Mutex<(Vec<(u16, Option<&'static str>, String)>, Vec<HeaderMap>)>>;

    async fn fake(State(script): State<Script>, headers: HeaderMap) -> axum::response::Response {
        let mut s = script.lock().unwrap();
        s.1.push(headers);
        let (status, function_error, body) = if s.0.len() > 1 {
            s.0.remove(0)
        } else {
            s.0[0].clone()
        };
        let mut resp = (StatusCode::from_u16(status).unwrap(), body).into_response();
        if let Some(e) = function_error {
            resp.headers_mut()
                .insert("x-amz-function-error", e.parse().unwrap());
        }
        resp
    }

    async fn serve(script: Script) -> String {
        let app = axum::Router::new()
            .route(
                "/2015-03-31/functions/{name}/invocations",
                axum::routing::post(fake),
            )
            .with_state(script);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        format!("http://{addr}")
    }

    fn transport(endpoint: &str) -> LambdaTransport {
        let env = [
            ("AWS_LAMBDA_FUNCTION_NAME", "stack-query"),
            ("AWS_REGION", "eu-west-1"),
            ("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE"),
            ("AWS_SECRET_ACCESS_KEY", "secret"),
            ("AWS_SESSION_TOKEN", "token"),
            (ENDPOINT_ENV, endpoint),
        ];
        LambdaTransport::from_env("", env.map(|(k, v)| (k.to_string(), v.to_string()))).unwrap()
    }

    fn task(streams: Vec<u64>) -> LeafTask {
        LeafTask {
            tenant: "t".into(),
            query: r#"{app="a"}"#.into(),
            streams,
            kind: LeafKind::Log {
                start: 0,
                end: 10,
                limit: 100,
                backward: true,
                max_response_bytes: 0,
            },
        }
    }

    fn partial_json(stream: u64, line: &str) -> String {
        let p = Partial {
            stats: QueryStats {
                lines_processed: 1,
                exec_time_s: 0.25,
                cost: parquetry_query::cost::CostStats {
                    leaves: 1,
                    ..Default::default()
                },
                ..Default::default()
            },
            result: PartialResult::Log(vec![(
                stream,
                Labels::from_pairs([("app", "a")]),
                ResultEntry {
                    ts: 1,
                    line: line.into(),
                    structured_metadata: vec![],
                    parsed: vec![],
                },
            )]),
        };
        let bytes = wire::encode(&p).unwrap();
        serde_json::to_string(&LeafResponse::Partial(crate::leaf::pack(&bytes).unwrap())).unwrap()
    }

    fn error_json(kind: LeafErrorKind) -> String {
        serde_json::to_string(&LeafResponse::Error(LeafError {
            kind,
            message: "nope".into(),
        }))
        .unwrap()
    }

    /// The transport never touches the engine: any will do.
    fn engine() -> QueryEngine {
        let dir = std::env::temp_dir();
        let store = parquetry_store::Store::open(&format!("file://{}", dir.display()), vec![]);
        QueryEngine::new(Arc::new(store.unwrap()))
    }

    #[tokio::test]
    async fn throttles_and_function_errors_are_retried_signed() {
        let script: Script = Arc::new(Mutex::new((
            vec![
                (429, None, "slow down".into()),
                (
                    200,
                    Some("Unhandled"),
                    r#"{"errorType":"Runtime.ExitError"}"#.into(),
                ),
                (200, None, partial_json(7, "hello")),
            ],
            vec![],
        )));
        let t = transport(&serve(script.clone()).await);
        assert!(
            t.url()
                .ends_with("/2015-03-31/functions/stack-query/invocations")
        );
        let got = wire::decode(&t.run(&engine(), task(vec![7])).await.unwrap()).unwrap();
        let PartialResult::Log(entries) = got.result else {
            panic!("log")
        };
        assert_eq!(entries[0].2.line, "hello");
        let calls = script.lock().unwrap().1.clone();
        assert_eq!(calls.len(), 3);
        let auth = calls[0]["authorization"].to_str().unwrap();
        assert!(
            auth.starts_with("AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/")
                && auth.contains("/eu-west-1/lambda/aws4_request"),
            "{auth}"
        );
        assert_eq!(calls[0]["x-amz-security-token"], "token");
    }

    #[tokio::test]
    async fn retries_are_bounded_and_client_errors_final() {
        let script: Script = Arc::new(Mutex::new((vec![(503, None, "down".into())], vec![])));
        let t = transport(&serve(script.clone()).await);
        let err = t.run(&engine(), task(vec![1])).await.unwrap_err();
        assert!(err.to_string().contains("after 4 attempt(s)"), "{err}");
        assert_eq!(script.lock().unwrap().1.len(), MAX_ATTEMPTS as usize);

        let script: Script = Arc::new(Mutex::new((vec![(403, None, "denied".into())], vec![])));
        let t = transport(&serve(script.clone()).await);
        let err = t.run(&engine(), task(vec![1])).await.unwrap_err();
        assert!(err.to_string().contains("403"), "{err}");
        assert_eq!(script.lock().unwrap().1.len(), 1);

        // A leaf's own refusal is the query's answer, not retried.
        let script: Script = Arc::new(Mutex::new((
            vec![(200, None, error_json(LeafErrorKind::BadRequest))],
            vec![],
        )));
        let t = transport(&serve(script.clone()).await);
        let err = t.run(&engine(), task(vec![1])).await.unwrap_err();
        assert!(
            matches!(err, QueryError::BadRequest(ref m) if m == "nope"),
            "{err}"
        );
        assert_eq!(script.lock().unwrap().1.len(), 1);
    }

    #[tokio::test]
    async fn a_leaf_too_large_is_split_until_it_fits() {
        let script: Script = Arc::new(Mutex::new((
            vec![
                (200, None, error_json(LeafErrorKind::TooLarge)),
                (200, None, partial_json(1, "first half")),
                (200, None, partial_json(2, "second half")),
                (200, None, error_json(LeafErrorKind::TooLarge)),
            ],
            vec![],
        )));
        let t = transport(&serve(script.clone()).await);
        let got = wire::decode(&t.run(&engine(), task(vec![1, 2])).await.unwrap()).unwrap();
        assert_eq!(got.stats.lines_processed, 2);
        // Two leaves answered, one after the other: both count, and both are billed.
        assert_eq!(got.stats.cost.leaves, 2);
        assert_eq!(got.stats.exec_time_s, 0.5);
        let PartialResult::Log(entries) = got.result else {
            panic!("log")
        };
        let lines: Vec<&str> = entries.iter().map(|e| e.2.line.as_str()).collect();
        assert_eq!(lines, ["first half", "second half"]);
        // One stream still too large: the query fails, naming the limit's kind.
        let err = t.run(&engine(), task(vec![3])).await.unwrap_err();
        assert!(matches!(err, QueryError::BadRequest(_)), "{err}");
    }
}
