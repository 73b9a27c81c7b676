//! Fan-out to peer replicas: with `query_range.fanout_transport: peers`, a `parquetry serve`
//! that splits a query ([`parquetry_query::fanout`]) sends its leaves to the replicas named in
//! `query_range.fanout_peers` over HTTP, and every replica answers leaves at
//! `POST /parquetry/v1/leaf` from the storage they all share.
//!
//! The leaf's answer is the same Arrow IPC partial the in-process and Lambda transports
//! carry, so the merge cannot tell them apart. A peer entry is a `host:port` resolved at query
//! time (cached a few seconds) to every address it has, so a Kubernetes headless Service names
//! all read replicas at once and scaling them needs no configuration change. A peer that
//! cannot be reached or answers 5xx/404/429 is skipped for the next one; when none answers,
//! the leaf runs in this process, so a replica lost mid-query costs time, not the answer. A
//! 4xx from a peer is the query's fault (a limit, a bad parameter) and fails it as it would
//! have here.

use std::net::SocketAddr;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use parquetry_query::fanout::{LeafTask, Transport};
use parquetry_query::{QueryEngine, QueryError};

use crate::AppState;
use crate::error::{ApiError, ApiResult, within_query_timeout};
use crate::request::{TENANT_HEADER, tenant};

/// Where replicas answer leaf tasks.
pub const LEAF_PATH: &str = "/parquetry/v1/leaf";

/// The media type of a partial result: an Arrow IPC stream.
const ARROW_STREAM: &str = "application/vnd.apache.arrow.stream";

/// How long resolved peer addresses are reused before the names are looked up again.
const RESOLVE_TTL: Duration = Duration::from_secs(5);

/// Peers tried for one leaf before it runs in this process.
const ATTEMPTS: usize = 2;

/// `POST /parquetry/v1/leaf`: runs one leaf task of a query another replica split, against
/// this replica's view of the shared storage. The task names its tenant; it must be the
/// request's own, so the endpoint reads nothing the request's tenant could not query.
pub async fn leaf(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<Response> {
    let tenant = tenant(&state, &headers)?;
    let task: LeafTask = serde_json::from_slice(&body)
        .map_err(|e| ApiError::BadRequest(format!("leaf task: {e}")))?;
    if task.tenant != tenant {
        return Err(ApiError::BadRequest(format!(
            "leaf task: its tenant {:?} is not the request's ({tenant:?})",
            task.tenant
        )));
    }
    let timeout = state.config.limits_config.query_timeout.0;
    let partial = within_query_timeout(timeout, task.run(&state.engine)).await?;
    Ok(([(header::CONTENT_TYPE, ARROW_STREAM)], partial).into_response())
}

/// Why a peer could not set up.
#[derive(Debug, thiserror::Error)]
pub enum PeerSetupError {
    /// `fanout_transport: peers` without a peer.
    #[error("query_range.fanout_transport is peers, but query_range.fanout_peers is empty")]
    NoPeers,
    /// The HTTP client could not be built.
    #[error("fan-out peer client: {0}")]
    Client(#[from] reqwest::Error),
}

/// Runs leaves on peer replicas over HTTP.
#[derive(Debug)]
pub struct PeerTransport {
    client: reqwest::Client,
    /// `host:port` entries as configured (any `http://` prefix removed).
    peers: Vec<String>,
    resolved: Mutex<Option<(Instant, Vec<SocketAddr>)>>,
    next: AtomicUsize,
}

/// What one attempt at a peer gave.
enum Attempt {
    Answered(Bytes),
    /// The peer is unavailable; another may answer.
    Skip(String),
    /// The query itself was refused: trying elsewhere would be refused too.
    Refused(QueryError),
}

impl PeerTransport {
    /// A transport to `peers` (`host:port`, optionally `http://host:port`), each request
    /// bounded by `timeout` (zero: none).
    pub fn new(peers: &[String], timeout: Duration) -> Result<PeerTransport, PeerSetupError> {
        let peers: Vec<String> = peers
            .iter()
            .map(|p| {
                p.trim()
                    .trim_start_matches("http://")
                    .trim_end_matches('/')
                    .to_string()
            })
            .filter(|p| !p.is_empty())
            .collect();
        if peers.is_empty() {
            return Err(PeerSetupError::NoPeers);
        }
        // A dead peer must not hold a leaf for long: connecting is quick inside a cluster.
        let mut client = reqwest::Client::builder().connect_timeout(Duration::from_secs(2));
        if !timeout.is_zero() {
            client = client.timeout(timeout);
        }
        Ok(PeerTransport {
            client: client.build()?,
            peers,
            resolved: Mutex::new(None),
            next: AtomicUsize::new(0),
        })
    }

    /// Every address the peer entries resolve to, in a stable order.
    async fn addresses(&self) -> Vec<SocketAddr> {
        if let Ok(cache) = self.resolved.lock()
            && let Some((at, addrs)) = cache.as_ref()
            && at.elapsed() < RESOLVE_TTL
        {
            return addrs.clone();
        }
        let mut addrs = Vec::new();
        for peer in &self.peers {
            match tokio::net::lookup_host(peer.as_str()).await {
                Ok(found) => addrs.extend(found),
                Err(e) => tracing::warn!(peer, error = %e, "fan-out peer does not resolve"),
            }
        }
        addrs.sort();
        addrs.dedup();
        if let Ok(mut cache) = self.resolved.lock() {
            *cache = Some((Instant::now(), addrs.clone()));
        }
        addrs
    }

    async fn attempt(&self, addr: SocketAddr, task: &LeafTask, body: &Bytes) -> Attempt {
        let sent = self
            .client
            .post(format!("http://{addr}{LEAF_PATH}"))
            .header(TENANT_HEADER, &task.tenant)
            .header(header::CONTENT_TYPE, "application/json")
            .body(body.clone())
            .send()
            .await;
        let resp = match sent {
            Ok(r) => r,
            Err(e) => return Attempt::Skip(e.to_string()),
        };
        let status = resp.status();
        let body = match resp.bytes().await {
            Ok(b) => b,
            Err(e) => return Attempt::Skip(e.to_string()),
        };
        if status.is_success() {
            return Attempt::Answered(body);
        }
        let text = String::from_utf8_lossy(&body).trim().to_string();
        match status {
            // Not serving leaves (another role, an older version) or shedding load.
            StatusCode::NOT_FOUND | StatusCode::TOO_MANY_REQUESTS => {
                Attempt::Skip(format!("{status}: {text}"))
            }
            s if s.is_client_error() => Attempt::Refused(QueryError::BadRequest(text)),
            s => Attempt::Skip(format!("{s}: {text}")),
        }
    }
}

#[async_trait::async_trait]
impl Transport for PeerTransport {
    async fn run(&self, engine: &QueryEngine, task: LeafTask) -> parquetry_query::Result<Bytes> {
        let addrs = self.addresses().await;
        let body = serde_json::to_vec(&task)
            .map(Bytes::from)
            .map_err(|e| QueryError::Internal(format!("leaf task encoding: {e}")))?;
        if !addrs.is_empty() {
            let first = self.next.fetch_add(1, Ordering::Relaxed);
            for i in 0..addrs.len().min(ATTEMPTS) {
                let addr = addrs[(first + i) % addrs.len()];
                match self.attempt(addr, &task, &body).await {
                    Attempt::Answered(b) => return Ok(b),
                    Attempt::Refused(e) => return Err(e),
                    Attempt::Skip(why) => {
                        tracing::warn!(%addr, error = why, "fan-out peer did not answer a leaf");
                    }
                }
            }
        }
        tracing::warn!(
            streams = task.streams.len(),
            "no fan-out peer answered; the leaf runs in this process"
        );
        task.run(engine).await
    }
}

/// The engine of a server whose configuration sends leaves to peers, or `engine` unchanged.
/// A transport that cannot be set up is logged and leaves run in this process: the answers
/// are the same, only slower.
pub fn with_peers(engine: QueryEngine, config: &parquetry_model::Config) -> QueryEngine {
    use parquetry_model::config::FanoutTransport;
    let qr = &config.query_range;
    if qr.fanout_transport != FanoutTransport::Peers {
        return engine;
    }
    match PeerTransport::new(&qr.fanout_peers, config.limits_config.query_timeout.0) {
        Ok(t) => {
            tracing::info!(peers = ?t.peers, "fan-out leaves run on peer replicas");
            engine.with_fanout(parquetry_query::fanout::FanoutSettings {
                transport: Some(std::sync::Arc::new(t)),
                ..parquetry_query::fanout::FanoutSettings::from_config(qr)
            })
        }
        Err(e) => {
            tracing::error!(error = %e, "fan-out peers not set up; leaves run in this process");
            engine
        }
    }
}
