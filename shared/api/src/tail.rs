//! Live tail: `GET /loki/api/v1/tail` and the legacy `/api/prom/tail`, over WebSocket.
//!
//! A tail first sends the newest `limit` entries since `start` (oldest first, from storage),
//! then every newly pushed entry that matches its query. New entries reach it two ways:
//!
//! * **In process** ([`TailHub`]): the push handler hands each durable push to the tails of
//!   its tenant whose selector matches, through one bounded channel per tail. A tail that
//!   cannot keep up never blocks a push: what does not fit is reported to it as
//!   `dropped_entries`, as Loki reports entries dropped for a slow client.
//! * **From storage** (`querier.tail_storage_poll_interval` > 0): for deployments where other
//!   processes write (several `serve` replicas, the push Lambda), each tail also re-reads the
//!   last [`POLL_LOOKBACK`] of entries from storage on that interval. Both paths feed one
//!   de-duplicating sender, so an entry seen both ways is sent once.
//!
//! Parameters are validated before the upgrade (plain-text 400s as Loki); what fails after it
//! closes the socket with 1011 and Loki's reason text.

use std::borrow::Cow;
use std::collections::{HashMap, HashSet, VecDeque};
use std::fmt::Write as _;
use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade, close_code};
use axum::extract::{FromRequestParts, State};
use axum::http::HeaderMap;
use axum::http::request::Parts;
use axum::response::Response;
use parquetry_json::push_str_html;
use parquetry_logql::{Expr, LogExpr, parse_expr};
use parquetry_model::config::Role;
use parquetry_model::duration::parse_prometheus;
use parquetry_model::matcher::matches_all;
use parquetry_model::{Config, Labels, Matcher};
use parquetry_pipeline::{EntryLabels, Pipeline, metadata_name};
use parquetry_query::pushdown::compile_pipeline;
use parquetry_query::{Direction, LogQuery, ResultEntry};
use parquetry_store::StreamEntries;
use tokio::sync::mpsc;

use crate::AppState;
use crate::error::{ApiError, ApiResult, within_query_timeout};
use crate::params::{Params, limit, now_ns, parse_timestamp};
use crate::request::{FLAGS_HEADER, tenant};

/// Loki's `maxEntriesPerTailResponse`.
const MAX_ENTRIES_PER_MESSAGE: usize = 100;
/// Loki's `maxDroppedEntriesPerTailResponse`: dropped entries kept between two sends.
const MAX_DROPPED_KEPT: usize = 1000;
/// Pushed streams queued for one tail before further ones count as dropped.
const TAIL_QUEUE: usize = 256;
/// Loki's `wsPingPeriod`.
const PING_PERIOD: Duration = Duration::from_secs(1);
/// How often entries held back by `delay_for` (or stamped in the future) are re-checked.
const RELEASE_PERIOD: Duration = Duration::from_millis(100);
/// How far back each storage poll reads: an entry from another writer whose timestamp is
/// older than this when it becomes durable is not shown live (it is still in queries).
pub const POLL_LOOKBACK: Duration = Duration::from_secs(30);
/// The storage poll of a process that takes no pushes and has no interval configured.
pub const DEFAULT_POLL: Duration = Duration::from_secs(1);
/// Most entries one storage poll reads.
const POLL_LIMIT: usize = 10_000;
/// Hashes of sent entries kept to drop the same entry arriving again (history/live overlap,
/// broadcast/poll overlap, a retried push): for this long, and at most this many.
const SEEN_WINDOW: Duration = Duration::from_secs(120);
const SEEN_MAX: usize = 200_000;
/// Live entries run through a pipeline on the tail's own task up to this many per batch;
/// more go to a blocking thread.
const INLINE_PIPELINE_ENTRIES: usize = 256;
/// Largest `delay_for`, in seconds.
const MAX_DELAY_FOR: i64 = 5;
/// LogQL longer than this is refused before parsing, as on the query endpoints.
const MAX_QUERY_BYTES: usize = 131_072;

/// Live tails of this process, by tenant: the push handler publishes into it.
#[derive(Default)]
pub struct TailHub {
    tails: Mutex<HashMap<String, Vec<Arc<Subscriber>>>>,
    next_id: AtomicU64,
}

/// One tail as the push side sees it.
struct Subscriber {
    id: u64,
    selector: Vec<Matcher>,
    tx: mpsc::Sender<Arc<StreamEntries>>,
    /// Entries that did not fit in the queue, reported with the next message.
    dropped: Mutex<Vec<(i64, Labels)>>,
}

impl TailHub {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Vec<Arc<Subscriber>>>> {
        // Plain maps, consistent after any panic.
        self.tails.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// True if `tenant` has a live tail, so a push need not copy its entries otherwise.
    pub fn has_tails(&self, tenant: &str) -> bool {
        self.lock().get(tenant).is_some_and(|v| !v.is_empty())
    }

    /// Live tails of `tenant` right now.
    pub fn count(&self, tenant: &str) -> usize {
        self.lock().get(tenant).map_or(0, Vec::len)
    }

    /// Hands durable streams to the matching tails of `tenant`. Never waits: a full queue
    /// turns the stream's entries into that tail's dropped entries.
    pub fn publish(&self, tenant: &str, streams: Vec<StreamEntries>) {
        let tails = self.lock();
        let Some(subs) = tails.get(tenant) else {
            return;
        };
        for stream in streams.into_iter().map(Arc::new) {
            for sub in subs {
                if !matches_all(&sub.selector, &stream.labels) {
                    continue;
                }
                if sub.tx.try_send(stream.clone()).is_err() {
                    let mut dropped = sub.dropped.lock().unwrap_or_else(PoisonError::into_inner);
                    for e in &stream.entries {
                        if dropped.len() >= MAX_DROPPED_KEPT {
                            break;
                        }
                        dropped.push((e.ts_ns, stream.labels.clone()));
                    }
                }
            }
        }
    }

    /// Registers a tail unless `tenant` is at `limit`; on refusal, the count it would have made.
    fn subscribe(
        self: &Arc<Self>,
        tenant: &str,
        selector: Vec<Matcher>,
        limit: usize,
    ) -> Result<(Subscription, mpsc::Receiver<Arc<StreamEntries>>), usize> {
        let mut tails = self.lock();
        let subs = tails.entry(tenant.to_string()).or_default();
        if limit > 0 && subs.len() >= limit {
            return Err(subs.len() + 1);
        }
        let (tx, rx) = mpsc::channel(TAIL_QUEUE);
        let sub = Arc::new(Subscriber {
            id: self.next_id.fetch_add(1, Ordering::Relaxed),
            selector,
            tx,
            dropped: Mutex::new(Vec::new()),
        });
        subs.push(sub.clone());
        Ok((
            Subscription {
                hub: self.clone(),
                tenant: tenant.to_string(),
                sub,
            },
            rx,
        ))
    }
}

/// A registered tail; dropping it (the socket task ending, however) frees the slot.
struct Subscription {
    hub: Arc<TailHub>,
    tenant: String,
    sub: Arc<Subscriber>,
}

impl Subscription {
    fn take_dropped(&self) -> Vec<(i64, Labels)> {
        std::mem::take(
            &mut *self
                .sub
                .dropped
                .lock()
                .unwrap_or_else(PoisonError::into_inner),
        )
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        let mut tails = self.hub.lock();
        if let Some(subs) = tails.get_mut(&self.tenant) {
            subs.retain(|s| s.id != self.sub.id);
            if subs.is_empty() {
                tails.remove(&self.tenant);
            }
        }
    }
}

/// A validated tail request.
struct TailRequest {
    tenant: String,
    /// Exactly as parsed; a metric query is refused after the upgrade, as Loki does.
    expr: Expr,
    limit: u32,
    start: i64,
    delay_for: Duration,
    categorize: bool,
    legacy: bool,
}

fn parse_request(
    state: &AppState,
    headers: &HeaderMap,
    query: Option<&str>,
    legacy: bool,
) -> ApiResult<TailRequest> {
    let tenant = tenant(state, headers)?;
    let p = Params::from_parts(query, None)?;
    let mut q = p.get("query").unwrap_or_default().to_string();
    if let Some(re) = p.get("regexp").filter(|r| !r.is_empty()) {
        // The legacy `regexp` parameter is a regexp line filter appended to the query.
        let quoted = serde_json::to_string(re)
            .map_err(|e| ApiError::Internal(format!("quoting regexp: {e}")))?;
        q = format!("{q} |~ {quoted}");
    }
    if q.len() > MAX_QUERY_BYTES {
        return Err(ApiError::BadRequest(format!(
            "parse error : input size too long ({} > {MAX_QUERY_BYTES})",
            q.len()
        )));
    }
    let expr = parse_expr(&q).map_err(|e| ApiError::BadRequest(e.to_string()))?;
    let limit = limit(&p)?;
    let now = now_ns();
    let start = match p.get("start") {
        Some(s) => parse_timestamp(s)
            .map_err(|e| ApiError::BadRequest(format!("could not parse 'start' parameter: {e}")))?,
        None => {
            let since = match p.get("since") {
                Some(s) => parse_prometheus(s).map_err(|e| {
                    ApiError::BadRequest(format!("could not parse 'since' parameter: {e}"))
                })?,
                None => Duration::from_secs(3600),
            };
            now.saturating_sub(since.as_nanos() as i64)
        }
    };
    let delay_for = match p.get("delay_for") {
        None | Some("") => 0,
        Some(s) => {
            let v: i128 = s.parse().map_err(|_| {
                ApiError::BadRequest(format!("strconv.Atoi: parsing {s:?}: invalid syntax"))
            })?;
            if v < 0 || v > i128::from(u32::MAX) {
                return Err(ApiError::BadRequest(format!(
                    "delay_for value {v} is out of range [0, 4294967295]"
                )));
            }
            if v > i128::from(MAX_DELAY_FOR) {
                return Err(ApiError::BadRequest(format!(
                    "delay_for can't be greater than {MAX_DELAY_FOR}"
                )));
            }
            v as u64
        }
    };
    let categorize = headers
        .get_all(FLAGS_HEADER)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|f| f.trim() == "categorize-labels");
    Ok(TailRequest {
        tenant,
        expr,
        limit,
        start,
        delay_for: Duration::from_secs(delay_for),
        categorize,
        legacy,
    })
}

/// The upgrade, or why there is none: without WebSocket headers Loki answers a bare 400.
pub struct Upgrade(Option<WebSocketUpgrade>);

impl<S: Send + Sync> FromRequestParts<S> for Upgrade {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        Ok(Upgrade(
            WebSocketUpgrade::from_request_parts(parts, state)
                .await
                .ok(),
        ))
    }
}

/// `GET /loki/api/v1/tail` (WebSocket).
pub async fn tail_v1(
    State(state): State<AppState>,
    headers: HeaderMap,
    uri: axum::http::Uri,
    upgrade: Upgrade,
) -> ApiResult<Response> {
    start_tail(state, headers, uri, upgrade, false)
}

/// `GET /api/prom/tail` (WebSocket).
pub async fn tail_legacy(
    State(state): State<AppState>,
    headers: HeaderMap,
    uri: axum::http::Uri,
    upgrade: Upgrade,
) -> ApiResult<Response> {
    start_tail(state, headers, uri, upgrade, true)
}

fn start_tail(
    state: AppState,
    headers: HeaderMap,
    uri: axum::http::Uri,
    upgrade: Upgrade,
    legacy: bool,
) -> ApiResult<Response> {
    let req = parse_request(&state, &headers, uri.query(), legacy)?;
    let Some(ws) = upgrade.0 else {
        return Err(ApiError::BadRequest("Bad Request".into()));
    };
    Ok(ws.on_upgrade(move |socket| async move {
        let tenant = req.tenant.clone();
        if let Err(e) = run(socket, state, req).await {
            tracing::debug!(tenant, error = %e, "tail ended");
        }
    }))
}

/// Why a tail ended early; sent as the 1011 close reason.
#[derive(Debug, thiserror::Error)]
enum TailError {
    #[error("{0}")]
    Closed(String),
    #[error("client went away")]
    Gone,
}

/// The reason text of a close frame: Loki's WebSocket library refuses reasons over 123
/// bytes, so longer ones are cut at a character boundary.
fn close_reason(text: &str) -> String {
    let mut end = text.len().min(123);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text[..end].to_string()
}

async fn close(socket: &mut WebSocket, reason: &str) {
    let frame = CloseFrame {
        code: close_code::ERROR,
        reason: close_reason(reason).into(),
    };
    let _ = socket.send(Message::Close(Some(frame))).await;
}

async fn run(mut socket: WebSocket, state: AppState, req: TailRequest) -> Result<(), TailError> {
    let log = match &req.expr {
        Expr::Log(l) => l.clone(),
        Expr::Sample(_) => {
            close(&mut socket, "only log selector is supported").await;
            return Ok(());
        }
    };
    let pipeline = if log.pipeline.is_empty() {
        None
    } else {
        match compile_pipeline(&log.pipeline) {
            Ok(p) => Some(Arc::new(p)),
            Err(e) => {
                close(&mut socket, &e.to_string()).await;
                return Ok(());
            }
        }
    };
    let limit = state.config.limits_config.max_concurrent_tail_requests;
    // Subscribed before the history is read, so nothing pushed meanwhile is missed; what
    // arrives both ways is dropped by the sender's de-duplication.
    let (sub, mut live) = match state
        .tail_hub
        .subscribe(&req.tenant, log.selector.clone(), limit)
    {
        Ok(s) => s,
        Err(count) => {
            // Loki's text, including the gRPC wrapping its querier adds.
            close(
                &mut socket,
                &format!(
                    "rpc error: code = Code(400) desc = max concurrent tail requests limit exceeded, count > limit ({count} > {limit})"
                ),
            )
            .await;
            return Ok(());
        }
    };
    let mut sender = Sender::new(&req, log.pipeline.is_empty());
    let result = tail_loop(
        &mut socket,
        &state,
        &req,
        &log,
        pipeline.as_ref(),
        &sub,
        &mut live,
        &mut sender,
    )
    .await;
    drop(sub);
    match result {
        Err(TailError::Closed(reason)) => {
            close(&mut socket, &reason).await;
            Err(TailError::Closed(reason))
        }
        other => other,
    }
}

#[allow(clippy::too_many_arguments)]
async fn tail_loop(
    socket: &mut WebSocket,
    state: &AppState,
    req: &TailRequest,
    log: &LogExpr,
    pipeline: Option<&Arc<Pipeline>>,
    sub: &Subscription,
    live: &mut mpsc::Receiver<Arc<StreamEntries>>,
    sender: &mut Sender,
) -> Result<(), TailError> {
    let max_duration = state.config.querier.tail_max_duration.0;
    let deadline = (!max_duration.is_zero()).then(|| tokio::time::Instant::now() + max_duration);
    let history = read_history(state, req, log).await?;
    sender.queue_results(history, false);
    sender.flush(socket, sub, true).await?;

    let poll_every = poll_interval(&state.config);
    let mut poll = (!poll_every.is_zero()).then(|| {
        let mut t = tokio::time::interval(poll_every);
        t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        t
    });
    let mut ping = tokio::time::interval_at(tokio::time::Instant::now() + PING_PERIOD, PING_PERIOD);
    let mut release = tokio::time::interval(RELEASE_PERIOD);
    release.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let until_deadline = async {
        match deadline {
            Some(d) => tokio::time::sleep_until(d).await,
            None => std::future::pending().await,
        }
    };
    tokio::pin!(until_deadline);
    loop {
        tokio::select! {
            () = &mut until_deadline => {
                return Err(TailError::Closed("reached tail max duration limit".into()));
            }
            msg = socket.recv() => match msg {
                // The client's frames are read only to notice it leaving.
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return Err(TailError::Gone),
                Some(Ok(_)) => {}
            },
            stream = live.recv() => {
                let Some(stream) = stream else { return Err(TailError::Gone) };
                let mut batch = vec![stream];
                // Everything already queued goes into the same message.
                while batch.len() < MAX_ENTRIES_PER_MESSAGE {
                    match live.try_recv() {
                        Ok(s) => batch.push(s),
                        Err(_) => break,
                    }
                }
                let entries: usize = batch.iter().map(|s| s.entries.len()).sum();
                let processed = match pipeline {
                    // A large push through a pipeline is CPU work: off the I/O threads.
                    Some(p) if entries > INLINE_PIPELINE_ENTRIES => {
                        let p = p.clone();
                        tokio::task::spawn_blocking(move || run_pipeline(&p, &batch))
                            .await
                            .map_err(|e| TailError::Closed(format!("pipeline task failed: {e}")))?
                    }
                    Some(p) => run_pipeline(p, &batch),
                    None => batch.iter().flat_map(|s| no_pipeline(s)).collect(),
                };
                sender.queue_results(processed, true);
                sender.flush(socket, sub, false).await?;
            }
            _ = release.tick(), if sender.holding() || sender.has_dropped(sub) => {
                sender.flush(socket, sub, false).await?;
            }
            _ = async { match poll.as_mut() { Some(p) => p.tick().await, None => std::future::pending().await } } => {
                match poll_storage(state, req, log).await {
                    Ok(entries) => {
                        sender.queue_results(entries, true);
                        sender.flush(socket, sub, false).await?;
                    }
                    // A failed poll is retried on the next tick; the broadcast path goes on.
                    Err(e) => tracing::warn!(error = %e, "tail: reading storage failed"),
                }
            }
            _ = ping.tick() => {
                socket
                    .send(Message::Ping(Default::default()))
                    .await
                    .map_err(|_| TailError::Gone)?;
            }
        }
    }
}

/// How often a tail reads storage: as configured, else every [`DEFAULT_POLL`] in a process
/// that takes no pushes itself (`target` without `write`), else never.
pub fn poll_interval(config: &Config) -> Duration {
    let set = config.querier.tail_storage_poll_interval.0;
    if !set.is_zero() {
        set
    } else if !config.target.runs(Role::Write) {
        DEFAULT_POLL
    } else {
        Duration::ZERO
    }
}

/// An entry ready to send: its display labels, the labels that identify it, time and line.
struct Outgoing {
    ts: i64,
    line: String,
    /// The stream map sent (or, categorized, the stored stream labels).
    labels: Labels,
    structured_metadata: Vec<(String, String)>,
    parsed: Vec<(String, String)>,
}

/// Entries from the live path as they come out of the pipeline: stream labels plus
/// structured metadata and parsed labels, as a log query sees them.
type Processed = (Labels, ResultEntry);

/// Queues, de-duplicates, holds back for `delay_for`, and writes Loki's messages.
struct Sender {
    delay_ns: i64,
    categorize: bool,
    legacy: bool,
    /// Loki's live path leaves structured metadata out of the stream map when the query has
    /// no pipeline stage; the history includes it.
    live_without_metadata: bool,
    /// Sorted by time when released.
    held: Vec<Outgoing>,
    seen: HashSet<u64>,
    seen_order: VecDeque<(Instant, u64)>,
}

impl Sender {
    fn new(req: &TailRequest, no_pipeline: bool) -> Sender {
        Sender {
            delay_ns: req.delay_for.as_nanos() as i64,
            categorize: req.categorize,
            legacy: req.legacy,
            live_without_metadata: no_pipeline,
            held: Vec::new(),
            seen: HashSet::new(),
            seen_order: VecDeque::new(),
        }
    }

    fn holding(&self) -> bool {
        !self.held.is_empty()
    }

    fn has_dropped(&self, sub: &Subscription) -> bool {
        !sub.sub
            .dropped
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .is_empty()
    }

    /// Queues entries not sent before. `history` entries are sent at once; others wait
    /// until `now > ts + delay_for`, as Loki's tailer releases them.
    fn queue_results(&mut self, entries: Vec<Processed>, live: bool) {
        let now = Instant::now();
        while let Some((t, h)) = self.seen_order.front().copied() {
            if now.duration_since(t) < SEEN_WINDOW && self.seen_order.len() <= SEEN_MAX {
                break;
            }
            self.seen_order.pop_front();
            self.seen.remove(&h);
        }
        for (labels, e) in entries {
            let mut merged = labels.clone();
            for (k, v) in e.structured_metadata.iter().chain(&e.parsed) {
                merged.set(k, v);
            }
            let key = entry_hash(e.ts, &e.line, &merged);
            if !self.seen.insert(key) {
                continue;
            }
            self.seen_order.push_back((now, key));
            let shown = if self.categorize || (live && self.live_without_metadata) {
                labels
            } else {
                merged
            };
            self.held.push(Outgoing {
                ts: e.ts,
                line: e.line,
                labels: shown,
                structured_metadata: e.structured_metadata,
                parsed: e.parsed,
            });
        }
    }

    /// Writes every releasable entry (all of them for the history), 100 per message, with
    /// the dropped entries recorded since the last message.
    async fn flush(
        &mut self,
        socket: &mut WebSocket,
        sub: &Subscription,
        all: bool,
    ) -> Result<(), TailError> {
        self.held.sort_by_key(|o| o.ts);
        let cutoff = now_ns().saturating_sub(self.delay_ns);
        let ready = if all {
            self.held.len()
        } else {
            self.held.partition_point(|o| o.ts < cutoff)
        };
        let ready: Vec<Outgoing> = self.held.drain(..ready).collect();
        let mut dropped = sub.take_dropped();
        if ready.is_empty() && dropped.is_empty() {
            return Ok(());
        }
        let mut chunks = ready.chunks(MAX_ENTRIES_PER_MESSAGE).peekable();
        if chunks.peek().is_none() {
            let text = self.encode(&[], &dropped);
            return send_text(socket, text).await;
        }
        for chunk in chunks {
            let text = self.encode(chunk, &dropped);
            dropped.clear();
            send_text(socket, text).await?;
        }
        Ok(())
    }

    fn encode(&self, entries: &[Outgoing], dropped: &[(i64, Labels)]) -> String {
        let mut out = String::with_capacity(256 + entries.len() * 128);
        out.push_str("{\"streams\":[");
        for (i, e) in entries.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            if self.legacy {
                out.push_str("{\"labels\":");
                push_str_html(&mut out, &e.labels.to_string());
                out.push_str(",\"entries\":[{\"ts\":\"");
                out.push_str(&rfc3339_nano(e.ts));
                out.push_str("\",\"line\":");
                push_str_html(&mut out, &e.line);
                out.push_str("}]}");
                continue;
            }
            out.push_str("{\"stream\":");
            push_html_map(
                &mut out,
                e.labels.iter().map(|l| (l.name.as_str(), l.value.as_str())),
            );
            out.push_str(",\"values\":[");
            crate::json::push_entry(
                &mut out,
                e.ts,
                &e.line,
                &e.structured_metadata,
                &e.parsed,
                self.categorize,
                push_str_html,
            );
            out.push_str("]}");
        }
        out.push(']');
        if !dropped.is_empty() {
            out.push_str(",\"dropped_entries\":[");
            for (i, (ts, labels)) in dropped.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                if self.legacy {
                    out.push_str("{\"Timestamp\":\"");
                    out.push_str(&rfc3339_nano(*ts));
                    out.push_str("\",\"Labels\":");
                    push_str_html(&mut out, &labels.to_string());
                } else {
                    let _ = write!(out, "{{\"timestamp\":\"{ts}\",\"labels\":");
                    push_html_map(
                        &mut out,
                        labels.iter().map(|l| (l.name.as_str(), l.value.as_str())),
                    );
                }
                out.push('}');
            }
            out.push(']');
        }
        if self.categorize && !self.legacy {
            out.push_str(",\"encodingFlags\":[\"categorize-labels\"]");
        }
        out.push('}');
        out
    }
}

async fn send_text(socket: &mut WebSocket, text: String) -> Result<(), TailError> {
    socket
        .send(Message::Text(text.into()))
        .await
        .map_err(|_| TailError::Gone)
}

fn entry_hash(ts: i64, line: &str, labels: &Labels) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    ts.hash(&mut h);
    line.hash(&mut h);
    for l in labels.iter() {
        l.name.hash(&mut h);
        l.value.hash(&mut h);
    }
    h.finish()
}

/// The newest `limit` entries since `start`, oldest first.
async fn read_history(
    state: &AppState,
    req: &TailRequest,
    log: &LogExpr,
) -> Result<Vec<Processed>, TailError> {
    let end = now_ns().saturating_add(1);
    if req.start >= end {
        return Ok(Vec::new());
    }
    let q = LogQuery {
        tenant: req.tenant.clone(),
        expr: log.clone(),
        start: req.start,
        end,
        limit: req.limit as usize,
        direction: Direction::Backward,
        interval_ns: None,
        max_response_bytes: state.config.limits_config.max_query_response_size.0,
    };
    let mut out = run_query(state, &q).await?;
    out.sort_by_key(|(_, e)| e.ts);
    Ok(out)
}

/// Entries of the last [`POLL_LOOKBACK`] in storage, for entries other processes wrote.
async fn poll_storage(
    state: &AppState,
    req: &TailRequest,
    log: &LogExpr,
) -> Result<Vec<Processed>, TailError> {
    let end = now_ns().saturating_add(1);
    let start = end
        .saturating_sub(POLL_LOOKBACK.as_nanos() as i64)
        .max(req.start);
    let q = LogQuery {
        tenant: req.tenant.clone(),
        expr: log.clone(),
        start,
        end,
        limit: POLL_LIMIT,
        direction: Direction::Forward,
        interval_ns: None,
        max_response_bytes: state.config.limits_config.max_query_response_size.0,
    };
    run_query(state, &q).await
}

async fn run_query(state: &AppState, q: &LogQuery) -> Result<Vec<Processed>, TailError> {
    let result = within_query_timeout(
        state.config.limits_config.query_timeout.0,
        state.engine.log_query(q),
    )
    .await
    .map_err(|e: ApiError| TailError::Closed(e.to_string()))?;
    Ok(result
        .streams
        .into_iter()
        .flat_map(|(labels, entries)| entries.into_iter().map(move |e| (labels.clone(), e)))
        .collect())
}

/// A pushed stream's entries as a query without pipeline returns them.
fn no_pipeline(stream: &StreamEntries) -> Vec<Processed> {
    stream
        .entries
        .iter()
        .map(|e| {
            let structured_metadata = e
                .structured_metadata
                .iter()
                .map(|(k, v)| match metadata_name(&stream.labels, k) {
                    Cow::Owned(n) => (n, v.to_string()),
                    Cow::Borrowed(_) => (k.to_string(), v.to_string()),
                })
                .collect();
            (
                stream.labels.clone(),
                ResultEntry {
                    ts: e.ts_ns,
                    line: e.line.to_string(),
                    structured_metadata,
                    parsed: Vec::new(),
                },
            )
        })
        .collect()
}

/// Pushed streams through the query's pipeline.
fn run_pipeline(p: &Pipeline, batch: &[Arc<StreamEntries>]) -> Vec<Processed> {
    let mut out = Vec::new();
    for stream in batch {
        for e in &stream.entries {
            let mut entry = EntryLabels::new(&stream.labels, &e.structured_metadata);
            let Some(line) = p.process(e.ts_ns, &e.line, &mut entry) else {
                continue;
            };
            out.push((
                entry.stream(),
                ResultEntry {
                    ts: e.ts_ns,
                    line: line.into_owned(),
                    structured_metadata: pairs(entry.structured_metadata()),
                    parsed: pairs(entry.parsed()),
                },
            ));
        }
    }
    out
}

fn pairs(l: Labels) -> Vec<(String, String)> {
    l.into_vec()
        .into_iter()
        .map(|l| (l.name, l.value))
        .collect()
}

/// A label map, keys in ascending byte order.
fn push_html_map<'a>(out: &mut String, pairs: impl IntoIterator<Item = (&'a str, &'a str)>) {
    crate::json::push_map_with(out, pairs, push_str_html);
}

/// Go's RFC 3339 with nanoseconds, trailing zeros of the fraction trimmed (legacy format).
fn rfc3339_nano(ts: i64) -> String {
    let secs = ts.div_euclid(1_000_000_000);
    let nanos = ts.rem_euclid(1_000_000_000) as u32;
    let Some(t) = chrono::DateTime::from_timestamp(secs, 0) else {
        return ts.to_string();
    };
    let mut s = t.format("%Y-%m-%dT%H:%M:%S").to_string();
    if nanos > 0 {
        let frac = format!("{nanos:09}");
        s.push('.');
        s.push_str(frac.trim_end_matches('0'));
    }
    s.push('Z');
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn read_only_processes_poll_storage() {
        let mut c = Config::default();
        assert_eq!(poll_interval(&c), Duration::ZERO);
        c.target = parquetry_model::config::Target("read".into());
        assert_eq!(poll_interval(&c), DEFAULT_POLL);
        c.querier.tail_storage_poll_interval.0 = Duration::from_millis(250);
        assert_eq!(poll_interval(&c), Duration::from_millis(250));
    }

    #[test]
    fn go_json_escapes_html() {
        let mut s = String::new();
        push_str_html(&mut s, "a<b>&\"\n\u{1}");
        assert_eq!(s, r#""a\u003cb\u003e\u0026\"\n\u0001""#);
    }

    #[test]
    fn legacy_time_trims_fraction() {
        assert_eq!(
            rfc3339_nano(1_796_004_334_754_256_769),
            "2026-11-30T02:05:34.754256769Z"
        );
        assert_eq!(
            rfc3339_nano(1_796_004_334_500_000_000),
            "2026-11-30T02:05:34.5Z"
        );
        assert_eq!(
            rfc3339_nano(1_796_004_334_000_000_000),
            "2026-11-30T02:05:34Z"
        );
    }

    #[test]
    fn close_reason_fits_a_control_frame() {
        let long = "é".repeat(100);
        let r = close_reason(&long);
        assert!(r.len() <= 123);
        assert!(long.starts_with(&r));
    }

    #[tokio::test]
    async fn full_queue_counts_dropped_entries_and_frees_on_drop() {
        let hub = Arc::new(TailHub::default());
        let sel = vec![
            Matcher::new("app", parquetry_model::MatchOp::Eq, "a")
                .unwrap_or_else(|e| panic!("{e}")),
        ];
        let (sub, _rx) = hub
            .subscribe("t", sel.clone(), 1)
            .unwrap_or_else(|_| panic!("subscribe"));
        assert_eq!(hub.subscribe("t", sel, 1).err(), Some(2));
        let stream = StreamEntries {
            labels: Labels::from_pairs([("app", "a")]),
            entries: vec![parquetry_store::LogEntry {
                ts_ns: 7,
                line: "x".into(),
                structured_metadata: vec![],
            }],
        };
        for _ in 0..TAIL_QUEUE + 3 {
            hub.publish("t", vec![stream.clone()]);
        }
        assert_eq!(sub.take_dropped().len(), 3);
        assert_eq!(hub.count("t"), 1);
        drop(sub);
        assert_eq!(hub.count("t"), 0);
    }
}
