//! Serving the router on a TCP listener with the limits a port open to anyone needs: the
//! timeouts of Go's `http.Server` (which Loki's server runs on) under Loki's key names, a
//! connection limit, an accept loop that survives running out of file descriptors, and a
//! graceful shutdown that lets in-flight requests finish. `parquetry serve` and the end-to-end
//! tests' server both serve through [`serve`], so the tests see what production runs.
//!
//! Every connection has a clock with Go's phases:
//!
//! | phase | the clock starts at | limit |
//! |---|---|---|
//! | waiting for a connection's first request, and reading its head | the accept | `http_server_read_header_timeout` |
//! | waiting for the next request on a kept-alive connection | the end of the previous response | `http_server_idle_timeout` |
//! | reading a later request's head | its first byte | `http_server_read_header_timeout` |
//! | reading the whole request, head and body | as for its head | `http_server_read_timeout` |
//! | handling the request and writing its response | the head being read | `http_server_write_timeout`, never less than `limits_config.query_timeout` + 10s |
//!
//! A read or write past its deadline fails, which closes the connection, except for the body:
//! a body that stops arriving is answered 408 (the handler's own answer to a failed body
//! would blame the client for something else, such as its size).

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::pin::{Pin, pin};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll, Waker, ready};
use std::time::Duration;

use axum::Router;
use axum::body::Body as AxumBody;
use axum::http::{HeaderValue, Request, Response, header};
use axum::response::IntoResponse;
use bytes::Bytes;
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use parquetry_model::Config;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};
use tokio::time::{Instant, Sleep};

use crate::error::ApiError;

/// How long past `limits_config.query_timeout` a response may still take to be written, so a
/// query that runs into its timeout gets its 504 out (and one that finishes just in time, its
/// result) before the write timeout closes the connection.
const QUERY_RESPONSE_MARGIN: Duration = Duration::from_secs(10);

/// Pause after an accept error. Out of descriptors (EMFILE, ENFILE), accept fails at once
/// every time: retrying without a pause would spin a core, while connections closing is what
/// frees descriptors, and that takes a moment.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(100);

/// At most one warning per this interval while accept keeps failing, so a descriptor shortage
/// does not also flood the log.
const ACCEPT_WARNING_INTERVAL: Duration = Duration::from_secs(5);

/// The connection timeouts in effect; `None` is no limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// Time allowed for a request's headers.
    pub header: Option<Duration>,
    /// Time allowed for a whole request, body included.
    pub read: Option<Duration>,
    /// Time allowed for writing a response.
    pub write: Option<Duration>,
    /// How long a kept-alive connection may wait for its next request.
    pub idle: Option<Duration>,
}

impl Timeouts {
    /// `server.http_server_*_timeout`, with Go's fallbacks: a zero header or idle timeout
    /// means the read timeout.
    pub fn from_config(config: &Config) -> Timeouts {
        fn limit(d: Duration) -> Option<Duration> {
            (!d.is_zero()).then_some(d)
        }
        let server = &config.server;
        let read = limit(server.http_server_read_timeout.0);
        let query = limit(config.limits_config.query_timeout.0);
        // Loki keeps the two independent: with its defaults (write 30s, query_timeout 1m) a
        // query running past 30s loses its connection before its own timeout can answer 504,
        // and Loki's documentation says to raise both together. Here the write timeout is
        // raised to cover the query timeout instead, so the 504 always gets out. Without a
        // query timeout the write timeout is the only bound and applies as configured.
        let write = limit(server.http_server_write_timeout.0).map(|w| match query {
            Some(q) => w.max(q.saturating_add(QUERY_RESPONSE_MARGIN)),
            None => w,
        });
        Timeouts {
            header: limit(server.http_server_read_header_timeout.0).or(read),
            read,
            write,
            idle: limit(server.http_server_idle_timeout.0).or(read),
        }
    }
}

/// Serves `router` on `listener` until `shutdown` completes, then stops accepting and returns
/// once every in-flight request has been answered. Connections beyond
/// `server.http_listen_conn_limit` wait in the listen backlog until one closes (as Loki's
/// `http_listen_conn_limit` does), rather than being refused.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    config: &Config,
    shutdown: impl Future<Output = ()>,
) {
    let timeouts = Timeouts::from_config(config);
    let limit = config.server.http_listen_conn_limit;
    let slots = (limit > 0).then(|| Arc::new(Semaphore::new(limit.min(Semaphore::MAX_PERMITS))));
    // `stop` tells connections to finish; `open` has one receiver per live connection, so
    // `open_tx.closed()` completes when the last one ends.
    let (stop_tx, stop_rx) = watch::channel(false);
    let (open_tx, open_rx) = watch::channel(());
    let mut shutdown = pin!(shutdown);
    let mut accept_errors = AcceptErrors::default();
    loop {
        // The slot is taken before the accept, so a full server leaves new connections in
        // the kernel's backlog instead of holding a descriptor for each.
        let slot = match &slots {
            None => None,
            Some(slots) => tokio::select! {
                biased;
                () = &mut shutdown => break,
                slot = slots.clone().acquire_owned() => slot.ok(),
            },
        };
        let stream = tokio::select! {
            biased;
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _peer)) => stream,
                Err(e) => {
                    accept_errors.pause(e).await;
                    continue;
                }
            },
        };
        tokio::spawn(serve_connection(
            stream,
            router.clone(),
            timeouts,
            slot,
            open_rx.clone(),
            stop_rx.clone(),
        ));
    }
    // Closing the listener first refuses new connections at once while the others finish.
    drop(listener);
    let _ = stop_tx.send(true);
    drop(open_rx);
    open_tx.closed().await;
}

/// Rate-limited warnings and a pause for a failing accept.
#[derive(Default)]
struct AcceptErrors {
    last_warning: Option<Instant>,
    suppressed: u64,
}

impl AcceptErrors {
    async fn pause(&mut self, e: io::Error) {
        // A client that gave up between its handshake and our accept: the listener is fine.
        if matches!(
            e.kind(),
            io::ErrorKind::ConnectionAborted
                | io::ErrorKind::ConnectionReset
                | io::ErrorKind::Interrupted
        ) {
            return;
        }
        let now = Instant::now();
        if self
            .last_warning
            .is_none_or(|t| now.duration_since(t) >= ACCEPT_WARNING_INTERVAL)
        {
            tracing::warn!(
                error = %e,
                suppressed = self.suppressed,
                "cannot accept connections, retrying; if out of file descriptors, raise the \
                 process limit (ulimit -n) or lower server.http_listen_conn_limit"
            );
            self.last_warning = Some(now);
            self.suppressed = 0;
        } else {
            self.suppressed += 1;
        }
        tokio::time::sleep(ACCEPT_ERROR_PAUSE).await;
    }
}

async fn serve_connection(
    stream: TcpStream,
    router: Router,
    timeouts: Timeouts,
    _slot: Option<OwnedSemaphorePermit>,
    _open: watch::Receiver<()>,
    mut stop: watch::Receiver<bool>,
) {
    let clock = Arc::new(Clock::new(timeouts));
    let io = TokioIo::new(TimedIo {
        stream,
        clock: clock.clone(),
        read_timer: Timer::default(),
        write_timer: Timer::default(),
    });
    let service = TowerToHyperService::new(ConnectionService { router, clock });
    let mut builder = auto::Builder::new(TokioExecutor::new()).http1_only();
    // hyper's own header timeout starts when a kept-alive connection goes idle, so it would
    // cut idle connections at the header timeout and make http_server_idle_timeout moot; the
    // connection's clock times heads from their first byte instead, as Go does.
    builder.http1().header_read_timeout(None);
    // With upgrades, so a live tail can take the connection over as a WebSocket.
    let mut conn = pin!(builder.serve_connection_with_upgrades(io, service));
    let mut stopping = pin!(async move {
        let _ = stop.wait_for(|stopping| *stopping).await;
    });
    let mut stopped = false;
    let result = loop {
        tokio::select! {
            result = conn.as_mut() => break result,
            () = &mut stopping, if !stopped => {
                stopped = true;
                // An idle connection closes now; a busy one after its response.
                conn.as_mut().graceful_shutdown();
            }
        }
    };
    if let Err(e) = result {
        tracing::debug!(error = %e, "connection closed");
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// No byte of the next request yet.
    Waiting,
    /// Reading a request head.
    Head,
    /// The head is parsed: the handler runs and the response is written.
    Request,
    /// Switched protocols (a live tail's WebSocket), which keeps its own time: no deadlines.
    Upgraded,
}

struct ClockState {
    phase: Phase,
    /// The first byte of the current request (the accept for a connection's first request).
    request_start: Instant,
    /// For reads while waiting for or reading a head.
    read_deadline: Option<Instant>,
    /// For writes; for reads too while a request is handled, so a connection whose response
    /// is overdue closes even while its handler is still at work.
    write_deadline: Option<Instant>,
    /// Heads parsed so far: names the request a response belongs to.
    requests: u64,
    /// The task of the last read left waiting. hyper does not read again after a response
    /// until woken, so it sleeps until the deadline armed before; when the idle deadline
    /// replaces that one it must be woken to arm the new one.
    reader: Option<Waker>,
}

/// One connection's deadlines, moved along by its IO (bytes arriving) and its service (a head
/// parsed, a response written).
struct Clock {
    timeouts: Timeouts,
    state: Mutex<ClockState>,
}

impl Clock {
    fn new(timeouts: Timeouts) -> Clock {
        let now = Instant::now();
        Clock {
            timeouts,
            state: Mutex::new(ClockState {
                phase: Phase::Waiting,
                request_start: now,
                read_deadline: timeouts.header.map(|d| now + d),
                write_deadline: None,
                requests: 0,
                reader: None,
            }),
        }
    }

    fn state(&self) -> MutexGuard<'_, ClockState> {
        // The state is a handful of plain values, consistent after any panic.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn bytes_received(&self) {
        let mut s = self.state();
        if s.phase != Phase::Waiting {
            return;
        }
        s.phase = Phase::Head;
        s.write_deadline = None;
        // A connection's first request keeps the deadline counted from the accept.
        if s.requests > 0 {
            let now = Instant::now();
            s.request_start = now;
            s.read_deadline = self.timeouts.header.map(|d| now + d);
        }
    }

    /// Returns the request's number and the deadline for its body.
    fn head_received(&self) -> (u64, Option<Instant>) {
        let mut s = self.state();
        let now = Instant::now();
        if s.phase == Phase::Waiting && s.requests > 0 {
            // Pipelined: the head arrived with the previous request, so it starts now.
            s.request_start = now;
        }
        s.phase = Phase::Request;
        s.requests += 1;
        s.read_deadline = None;
        s.write_deadline = self.timeouts.write.map(|d| now + d);
        (s.requests, self.timeouts.read.map(|d| s.request_start + d))
    }

    fn response_written(&self, request: u64) {
        let reader = {
            let mut s = self.state();
            if s.phase != Phase::Request || s.requests != request {
                return;
            }
            s.phase = Phase::Waiting;
            s.read_deadline = self.timeouts.idle.map(|d| Instant::now() + d);
            s.reader.take()
        };
        if let Some(reader) = reader {
            reader.wake();
        }
    }

    fn upgraded(&self) {
        let mut s = self.state();
        s.phase = Phase::Upgraded;
        s.read_deadline = None;
        s.write_deadline = None;
    }

    fn reader_waiting(&self, waker: &Waker) {
        let mut s = self.state();
        if !s.reader.as_ref().is_some_and(|w| w.will_wake(waker)) {
            s.reader = Some(waker.clone());
        }
    }

    fn read_deadline(&self) -> Option<Instant> {
        let s = self.state();
        match s.phase {
            Phase::Waiting | Phase::Head => s.read_deadline,
            Phase::Request => s.write_deadline,
            Phase::Upgraded => None,
        }
    }

    fn write_deadline(&self) -> Option<Instant> {
        self.state().write_deadline
    }
}

/// A sleep reused across polls, re-armed when the deadline moves.
#[derive(Default)]
struct Timer {
    sleep: Option<Pin<Box<Sleep>>>,
}

impl Timer {
    /// Ready once `deadline` has passed; until then the task is woken at the deadline.
    fn poll_expired(&mut self, cx: &mut Context<'_>, deadline: Option<Instant>) -> Poll<()> {
        let Some(deadline) = deadline else {
            return Poll::Pending;
        };
        let sleep = self
            .sleep
            .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
        if sleep.deadline() != deadline {
            sleep.as_mut().reset(deadline);
        }
        sleep.as_mut().poll(cx)
    }
}

fn timed_out(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::TimedOut, format!("timed out {what}"))
}

/// The socket under its connection's deadlines. Data already there is always taken: only a
/// read or write that has to wait can time out.
struct TimedIo {
    stream: TcpStream,
    clock: Arc<Clock>,
    read_timer: Timer,
    write_timer: Timer,
}

impl TimedIo {
    fn poll_write_with<T>(
        &mut self,
        cx: &mut Context<'_>,
        op: impl FnOnce(Pin<&mut TcpStream>, &mut Context<'_>) -> Poll<io::Result<T>>,
    ) -> Poll<io::Result<T>> {
        match op(Pin::new(&mut self.stream), cx) {
            Poll::Pending => {
                let deadline = self.clock.write_deadline();
                ready!(self.write_timer.poll_expired(cx, deadline));
                Poll::Ready(Err(timed_out("writing the response")))
            }
            done => done,
        }
    }
}

impl AsyncRead for TimedIo {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        match Pin::new(&mut this.stream).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                if buf.filled().len() > before {
                    this.clock.bytes_received();
                }
                Poll::Ready(Ok(()))
            }
            Poll::Pending => {
                this.clock.reader_waiting(cx.waker());
                let deadline = this.clock.read_deadline();
                ready!(this.read_timer.poll_expired(cx, deadline));
                Poll::Ready(Err(timed_out("waiting for the client")))
            }
            failed => failed,
        }
    }
}

impl AsyncWrite for TimedIo {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.get_mut()
            .poll_write_with(cx, |s, cx| s.poll_write(cx, buf))
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        self.get_mut()
            .poll_write_with(cx, |s, cx| s.poll_write_vectored(cx, bufs))
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.get_mut().poll_write_with(cx, |s, cx| s.poll_flush(cx))
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_shutdown(cx)
    }
}

/// The router for one connection: starts each request's clock, bounds its body and notes
/// when its response is written.
#[derive(Clone)]
struct ConnectionService {
    router: Router,
    clock: Arc<Clock>,
}

impl tower::Service<Request<Incoming>> for ConnectionService {
    type Response = Response<ResponseBody>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        tower::Service::<Request<AxumBody>>::poll_ready(&mut self.router, cx)
    }

    fn call(&mut self, req: Request<Incoming>) -> Self::Future {
        let (request, body_deadline) = self.clock.head_received();
        let body_timed_out = Arc::new(AtomicBool::new(false));
        let req = req.map(|body| {
            AxumBody::new(RequestBody {
                body,
                deadline: body_deadline,
                timer: Timer::default(),
                timed_out: body_timed_out.clone(),
            })
        });
        let response = tower::Service::call(&mut self.router, req);
        let clock = self.clock.clone();
        Box::pin(async move {
            let Ok(response) = response.await;
            if response.status() == axum::http::StatusCode::SWITCHING_PROTOCOLS {
                clock.upgraded();
            }
            let response = if body_timed_out.load(Ordering::Relaxed) {
                body_timeout_response()
            } else {
                response
            };
            Ok(response.map(|body| ResponseBody {
                body,
                clock,
                request,
            }))
        })
    }
}

fn body_timeout_response() -> Response<AxumBody> {
    let mut response = ApiError::RequestTimeout.into_response();
    // The rest of the body may still be on its way: the connection cannot carry another
    // request.
    response
        .headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    response
}

/// A request body that fails once its deadline passes while the handler waits for more.
struct RequestBody {
    body: Incoming,
    deadline: Option<Instant>,
    timer: Timer,
    timed_out: Arc<AtomicBool>,
}

impl Body for RequestBody {
    type Data = Bytes;
    type Error = Box<dyn std::error::Error + Send + Sync>;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = self.get_mut();
        match Pin::new(&mut this.body).poll_frame(cx) {
            Poll::Ready(frame) => Poll::Ready(frame.map(|f| f.map_err(Into::into))),
            Poll::Pending => {
                ready!(this.timer.poll_expired(cx, this.deadline));
                this.timed_out.store(true, Ordering::Relaxed);
                Poll::Ready(Some(Err(timed_out("reading the request body").into())))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

/// A response body that moves its connection to waiting for the next request once hyper is
/// done with it (at its end, or when dropped).
struct ResponseBody {
    body: AxumBody,
    clock: Arc<Clock>,
    request: u64,
}

impl Body for ResponseBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = self.get_mut();
        let frame = ready!(Pin::new(&mut this.body).poll_frame(cx));
        if frame.is_none() {
            this.clock.response_written(this.request);
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

impl Drop for ResponseBody {
    fn drop(&mut self) {
        self.clock.response_written(self.request);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(yaml: &str) -> Config {
        Config::from_yaml_and_env(yaml, []).unwrap()
    }

    #[test]
    fn timeouts_follow_go_fallbacks_and_cover_the_query_timeout() {
        let d = Timeouts::from_config(&config(""));
        assert_eq!(d.read, Some(Duration::from_secs(30)));
        assert_eq!(d.header, Some(Duration::from_secs(30)));
        assert_eq!(d.idle, Some(Duration::from_secs(120)));
        // Loki's 30s write timeout, raised over the 1m query timeout.
        assert_eq!(d.write, Some(Duration::from_secs(70)));

        let t = Timeouts::from_config(&config(
            "server:\n  http_server_read_timeout: 5s\n  http_server_read_header_timeout: 2s\n  http_server_idle_timeout: 0\n  http_server_write_timeout: 10m\nlimits_config:\n  query_timeout: 0\n",
        ));
        assert_eq!(t.header, Some(Duration::from_secs(2)));
        assert_eq!(t.idle, Some(Duration::from_secs(5)));
        assert_eq!(t.write, Some(Duration::from_secs(600)));

        let none = Timeouts::from_config(&config(
            "server:\n  http_server_read_timeout: 0\n  http_server_write_timeout: 0\n  http_server_idle_timeout: 0\n",
        ));
        assert_eq!(
            none,
            Timeouts {
                header: None,
                read: None,
                write: None,
                idle: None
            }
        );
    }

    #[tokio::test(start_paused = true)]
    async fn accept_pauses_when_out_of_descriptors_and_not_for_a_client_gone() {
        let mut errors = AcceptErrors::default();
        let start = Instant::now();
        // EMFILE, then ENFILE: a pause each, so the loop neither spins nor exits.
        errors.pause(io::Error::from_raw_os_error(24)).await;
        errors.pause(io::Error::from_raw_os_error(23)).await;
        assert_eq!(start.elapsed(), 2 * ACCEPT_ERROR_PAUSE);
        assert_eq!(errors.suppressed, 1);
        let start = Instant::now();
        errors.pause(io::ErrorKind::ConnectionAborted.into()).await;
        assert_eq!(start.elapsed(), Duration::ZERO);
    }

    #[tokio::test(start_paused = true)]
    async fn clock_phases() {
        let t = Timeouts {
            header: Some(Duration::from_secs(2)),
            read: Some(Duration::from_secs(5)),
            write: Some(Duration::from_secs(60)),
            idle: Some(Duration::from_secs(100)),
        };
        let start = Instant::now();
        let clock = Clock::new(t);
        // The first request's head is timed from the accept, its body too.
        assert_eq!(clock.read_deadline(), Some(start + Duration::from_secs(2)));
        tokio::time::advance(Duration::from_secs(1)).await;
        clock.bytes_received();
        assert_eq!(clock.read_deadline(), Some(start + Duration::from_secs(2)));
        let (n, body) = clock.head_received();
        assert_eq!((n, body), (1, Some(start + Duration::from_secs(5))));
        let head_at = Instant::now();
        assert_eq!(
            clock.write_deadline(),
            Some(head_at + Duration::from_secs(60))
        );
        // While handled, reads are bounded by the write deadline, not the idle one.
        assert_eq!(clock.read_deadline(), clock.write_deadline());
        // A stale response does not move the clock.
        clock.response_written(0);
        assert_eq!(clock.read_deadline(), clock.write_deadline());
        tokio::time::advance(Duration::from_secs(3)).await;
        clock.response_written(1);
        let done_at = Instant::now();
        assert_eq!(
            clock.read_deadline(),
            Some(done_at + Duration::from_secs(100))
        );
        // The next request is timed from its first byte.
        tokio::time::advance(Duration::from_secs(50)).await;
        clock.bytes_received();
        let next_at = Instant::now();
        assert_eq!(
            clock.read_deadline(),
            Some(next_at + Duration::from_secs(2))
        );
        assert_eq!(clock.write_deadline(), None);
        let (n, body) = clock.head_received();
        assert_eq!((n, body), (2, Some(next_at + Duration::from_secs(5))));
    }
}
