//! `loadtest`: a bounded load and exactly-once test against a real `parquetry serve` process.
//!
//! Starts the given (release) `parquetry` binary on a temporary directory and a free loopback
//! port, with the compaction timer at a short interval, then for `--duration` seconds:
//!
//! - `--pushers` clients push snappy protobuf like Promtail: batches of `--batch` entries over
//!   `--streams` streams, every line carrying a unique id, `--rate` pushes per second each
//!   (0: as fast as answered). A push answered with a 5xx, a 429, a transport error or a
//!   timeout is retried with the same body until it gets 204; only then do its entries count
//!   as acknowledged;
//! - two query clients loop over `query_range` log queries, `count_over_time` range queries
//!   and an all-time count whose result must lie between the entries acknowledged before it
//!   was sent and the entries sent before it returned (acknowledged data never disappears,
//!   not even during compaction);
//! - `parquetry compact --once` runs against the same directory halfway through, beside the
//!   server's own compaction timer;
//! - with `--kill-every N`, the server is SIGKILLed every N seconds and restarted on the same
//!   directory and port.
//!
//! Then the server is stopped (SIGTERM, or SIGKILL in the kill variant) and started again
//! (compaction timer off unless `--compact-during-check`), every acknowledged entry must be
//! returned exactly once, with its timestamp and stream, by log queries paging over time
//! windows, and `sum(count_over_time(...))` must equal the number of distinct acknowledged
//! entries (a push stored twice by a retry is one entry). The report gives pushes/s,
//! entries/s, push and query latency percentiles and the server's peak RSS (VmHWM, read before
//! every stop or kill, and VmRSS sampled every 200 ms). The exit status is 0 only when nothing
//! was lost, duplicated or invented, and no query or push got an unexpected error answer;
//! 1 otherwise, 2 when the harness itself failed. A failed run keeps its directory.
//!
//! `scripts/loadtest.sh` builds and runs both variants; by hand:
//!
//! ```sh
//! export CARGO_TARGET_DIR=$HOME/.cache/parquetry-release
//! cargo build --release -p parquetry -p parquetry-e2e --bin parquetry --bin loadtest
//! $CARGO_TARGET_DIR/release/loadtest --parquetry $CARGO_TARGET_DIR/release/parquetry
//! $CARGO_TARGET_DIR/release/loadtest --parquetry $CARGO_TARGET_DIR/release/parquetry --kill-every 10
//! ```

use std::borrow::Cow;
use std::collections::{HashMap, VecDeque};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::Parser;
use parquetry_e2e::{TestEntry, now_ns, protobuf_body};
use serde::Deserialize;
use serde_json::Value;
use tokio::process::{Child, Command};

#[derive(Parser, Debug, Clone)]
#[command(
    name = "loadtest",
    about = "Bounded load test of `parquetry serve`: concurrent pushes, queries and compaction (optionally kill -9), then an exactly-once check of every acknowledged entry"
)]
struct Args {
    /// The `parquetry` binary to test (a release build).
    #[arg(long, env = "PARQUETRY_BIN", value_name = "PATH")]
    parquetry: PathBuf,
    /// Seconds of load.
    #[arg(long, default_value_t = 60)]
    duration: u64,
    /// Concurrent pushing clients.
    #[arg(long, default_value_t = 8)]
    pushers: usize,
    /// Entries per push.
    #[arg(long, default_value_t = 500)]
    batch: usize,
    /// Pushes per second per pusher; 0 pushes as fast as the server answers. The default
    /// (8 x 12 x 500 = 48,000 entries/s) is a load the 2-core reference machine can also
    /// compact and read back within the two-minute bound; 0 measures saturation.
    #[arg(long, default_value_t = 12.0)]
    rate: f64,
    /// Streams (`pod` values, over 4 `service_name` partitions) each push spreads over.
    #[arg(long, default_value_t = 20)]
    streams: usize,
    /// SIGKILL the server every this many seconds and restart it on the same data.
    #[arg(long, value_name = "SECS")]
    kill_every: Option<f64>,
    /// `compactor.compaction_interval` of the server, in seconds (0 turns the timer off).
    /// Default 10, or 4 with --kill-every, so that kills also land in compaction passes
    /// (the timer waits one interval after each start).
    #[arg(long)]
    compaction_interval: Option<u64>,
    /// Seconds into the load at which `parquetry compact --once` runs against the same data
    /// (default: halfway); negative for never.
    #[arg(long, allow_hyphen_values = true)]
    compact_at: Option<f64>,
    /// Client timeout of one push, as Promtail's `timeout` (default 10s).
    #[arg(long, default_value_t = 10)]
    push_timeout: u64,
    /// Seconds the pushers may spend getting their last batch acknowledged after the load.
    #[arg(long, default_value_t = 30)]
    drain: u64,
    /// Query clients during the load (0, 1 or 2): the first runs log queries, the second
    /// metric queries and the all-time consistency count.
    #[arg(long, default_value_t = 2)]
    queriers: usize,
    /// Entries per log query of the final check: `limits_config.max_entries_limit_per_query`
    /// is raised to this (Loki's default 5000 makes the check take minutes).
    #[arg(long, default_value_t = 100_000)]
    page_limit: usize,
    /// Log queries in flight at once during the final check.
    #[arg(long, default_value_t = 2)]
    verify_concurrency: usize,
    /// Measure the load only: no restart and no exactly-once check (for diagnosis).
    #[arg(long)]
    skip_check: bool,
    /// Keep the compaction timer running on the server of the final check (slower: it
    /// competes with the check's queries).
    #[arg(long)]
    compact_during_check: bool,
    /// Keep the data directory and the server log (always kept when the check fails).
    #[arg(long)]
    keep: bool,
}

// ---------------------------------------------------------------------------------------------
// Entries

/// Service names (the partition label): stream `s` belongs to `svc-{s % SERVICES}`.
const SERVICES: usize = 4;

fn stream_labels(s: usize) -> String {
    format!(
        r#"{{job="loadtest", service_name="svc-{}", pod="pod-{s:02}"}}"#,
        s % SERVICES
    )
}

fn pod(s: usize) -> String {
    format!("pod-{s:02}")
}

fn level(seq: u64) -> &'static str {
    match seq % 10 {
        0 => "error",
        1 | 2 => "warn",
        _ => "info",
    }
}

/// A Promtail-ish logfmt line of ~150 bytes carrying the entry's id `<pusher>-<seq>`.
fn entry_line(p: usize, seq: u64, s: usize) -> String {
    let mut x = ((p as u64) << 40) ^ seq ^ 0x9e37_79b9_7f4a_7c15;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    format!(
        "level={} id={p}-{seq} pusher={p} stream={s:02} msg=\"load test entry\" trace_id={x:016x}{:016x} duration={}ms",
        level(seq),
        x.rotate_left(29),
        x % 997
    )
}

/// The id in a line written by [`entry_line`].
fn parse_id(line: &str) -> Option<(usize, u64)> {
    let rest = &line[line.find(" id=")? + 4..];
    let id = rest.split(' ').next()?;
    let (p, seq) = id.split_once('-')?;
    Some((p.parse().ok()?, seq.parse().ok()?))
}

/// A timestamp unique across all pushers: pusher `p` of `n` only uses times ≡ p (mod n), and
/// each pusher's times increase. Close to the wall clock, so the server accepts them.
fn next_ts(last: &mut i64, p: usize, n: usize) -> i64 {
    let n = n as i64;
    let mut t = now_ns().max(*last + 1);
    t = t - t.rem_euclid(n) + p as i64;
    if t <= *last {
        t += n;
    }
    *last = t;
    t
}

// ---------------------------------------------------------------------------------------------
// Shared state

#[derive(Default)]
struct Shared {
    /// The running server's pid, 0 while it is down.
    server_pid: AtomicU32,
    /// The running `parquetry compact` pid, 0 when none.
    compact_pid: AtomicU32,
    /// Set at the end of the load: no new batches, no new queries.
    stop: AtomicBool,
    /// Set once the final check starts: the sampler stops.
    done: AtomicBool,
    /// Distinct entries acknowledged (each batch counts once, at its first 204).
    acked_entries: AtomicU64,
    /// Distinct entries sent at least once.
    sent_entries: AtomicU64,
    kills: AtomicU64,
    peaks: Mutex<Peaks>,
    /// (when, server VmRSS KiB) of every sample during the load.
    timeline: Mutex<Vec<(Instant, u64)>>,
}

#[derive(Default, Clone, Copy)]
struct Peaks {
    /// Largest VmHWM of any server process (KiB).
    server_hwm_kb: u64,
    /// Largest sampled VmRSS of any server process (KiB).
    server_rss_kb: u64,
    /// The same during the final check only.
    verify_hwm_kb: u64,
    compact_hwm_kb: u64,
}

fn proc_kb(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find(|l| l.starts_with(field))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

impl Shared {
    /// Folds the server's (or compactor's) current VmHWM and VmRSS into the peaks.
    fn sample(&self, verifying: bool) {
        let server = self.server_pid.load(Ordering::SeqCst);
        let compact = self.compact_pid.load(Ordering::SeqCst);
        let Ok(mut peaks) = self.peaks.lock() else {
            return;
        };
        if server != 0 {
            let hwm = proc_kb(server, "VmHWM:").unwrap_or(0);
            let rss = proc_kb(server, "VmRSS:").unwrap_or(0);
            if !verifying && let Ok(mut t) = self.timeline.lock() {
                t.push((Instant::now(), rss));
            }
            if verifying {
                peaks.verify_hwm_kb = peaks.verify_hwm_kb.max(hwm);
            } else {
                peaks.server_hwm_kb = peaks.server_hwm_kb.max(hwm);
            }
            peaks.server_rss_kb = peaks.server_rss_kb.max(rss);
        }
        if compact != 0 {
            peaks.compact_hwm_kb = peaks
                .compact_hwm_kb
                .max(proc_kb(compact, "VmHWM:").unwrap_or(0));
        }
    }

    fn peaks(&self) -> Peaks {
        self.peaks.lock().map(|p| *p).unwrap_or_default()
    }
}

// ---------------------------------------------------------------------------------------------
// The server process

struct Harness {
    bin: PathBuf,
    config: PathBuf,
    /// The configuration of the server the final check runs on.
    check_config: PathBuf,
    data: PathBuf,
    log: PathBuf,
    port: u16,
    base: String,
    http: reqwest::Client,
    shared: Arc<Shared>,
    t0: Instant,
}

struct Server {
    child: Child,
    pid: u32,
}

impl Harness {
    fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    fn log_file(&self) -> Result<std::fs::File> {
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .with_context(|| format!("opening {}", self.log.display()))
    }

    /// Starts `parquetry serve` and waits until `/ready` answers 200.
    async fn start(&self) -> Result<Server> {
        self.start_with(&self.config).await
    }

    async fn start_with(&self, config: &Path) -> Result<Server> {
        let mut last_err = None;
        // The port may still be held for a moment after a SIGKILL: try a few times.
        for _ in 0..20 {
            let mut child = Command::new(&self.bin)
                .arg("serve")
                .arg("--config")
                .arg(config)
                .arg("--data")
                .arg(&self.data)
                .arg("--listen")
                .arg(format!("127.0.0.1:{}", self.port))
                .stdin(Stdio::null())
                .stdout(Stdio::from(self.log_file()?))
                .stderr(Stdio::from(self.log_file()?))
                .kill_on_drop(true)
                .spawn()
                .with_context(|| format!("starting {}", self.bin.display()))?;
            let pid = child.id().context("server pid")?;
            let deadline = Instant::now() + Duration::from_secs(30);
            while Instant::now() < deadline {
                if let Some(status) = child.try_wait()? {
                    last_err = Some(format!("server exited at start-up: {status}"));
                    break;
                }
                let ready = self
                    .http
                    .get(self.url("/ready"))
                    .timeout(Duration::from_secs(1))
                    .send()
                    .await;
                if ready.is_ok_and(|r| r.status().is_success()) {
                    self.shared.server_pid.store(pid, Ordering::SeqCst);
                    return Ok(Server { child, pid });
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            if last_err.is_none() {
                bail!("server not ready within 30 s (log: {})", self.log.display());
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        bail!(
            "{} (log: {})",
            last_err.unwrap_or_default(),
            self.log.display()
        )
    }

    /// SIGKILL; the peak RSS is read first.
    async fn kill(&self, mut server: Server) -> Result<()> {
        self.shared.sample(false);
        self.shared.server_pid.store(0, Ordering::SeqCst);
        server.child.start_kill()?;
        server.child.wait().await?;
        Ok(())
    }

    /// SIGTERM and wait for a graceful exit (SIGKILL after 30 s). Returns whether it exited
    /// on its own, successfully.
    async fn terminate(&self, mut server: Server, verifying: bool) -> Result<bool> {
        self.shared.sample(verifying);
        Command::new("kill")
            .args(["-TERM", &server.pid.to_string()])
            .status()
            .await?;
        let graceful =
            match tokio::time::timeout(Duration::from_secs(30), server.child.wait()).await {
                Ok(status) => status?.success(),
                Err(_) => {
                    server.child.start_kill()?;
                    server.child.wait().await?;
                    false
                }
            };
        self.shared.server_pid.store(0, Ordering::SeqCst);
        Ok(graceful)
    }

    fn elapsed(&self) -> f64 {
        self.t0.elapsed().as_secs_f64()
    }
}

// ---------------------------------------------------------------------------------------------
// Pushers

/// One batch as sent: entries `first_seq .. first_seq + len` of its pusher.
struct Batch {
    first_seq: u64,
    len: u64,
    /// Seconds since the start of the load: first attempt, and the 204 (if any).
    sent_at: f64,
    acked_at: Option<f64>,
    attempts: u32,
    /// A 4xx: the server refused the batch (never expected here); its entries may be
    /// partially stored.
    rejected: bool,
}

#[derive(Default)]
struct PushLog {
    /// Timestamp and stream of each entry, by sequence number.
    ts: Vec<i64>,
    stream: Vec<u8>,
    batches: Vec<Batch>,
    /// Latency of each push answered 204, and of each batch from first send to its 204.
    ok_latency: Vec<Duration>,
    ack_latency: Vec<Duration>,
    transport_errors: u64,
    timeouts: u64,
    retryable_status: u64,
    rejections: Vec<String>,
}

async fn pusher(
    h: Arc<Harness>,
    args: Args,
    p: usize,
    drain_deadline: Arc<Mutex<Instant>>,
) -> PushLog {
    let mut log = PushLog::default();
    let url = h.url("/loki/api/v1/push");
    let mut last_ts = 0i64;
    let mut ticks = (args.rate > 0.0).then(|| {
        let mut t = tokio::time::interval(Duration::from_secs_f64(1.0 / args.rate));
        t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        t
    });
    loop {
        if let Some(t) = ticks.as_mut() {
            t.tick().await;
        }
        if h.shared.stop.load(Ordering::SeqCst) {
            break;
        }
        let first_seq = log.ts.len() as u64;
        let mut per_stream: Vec<Vec<(i64, String)>> = vec![Vec::new(); args.streams];
        for i in 0..args.batch {
            let seq = first_seq + i as u64;
            let s = i % args.streams;
            let ts = next_ts(&mut last_ts, p, args.pushers);
            per_stream[s].push((ts, entry_line(p, seq, s)));
            log.ts.push(ts);
            log.stream.push(s as u8);
        }
        let labels: Vec<String> = (0..args.streams).map(stream_labels).collect();
        let streams: Vec<(&str, Vec<TestEntry<'_>>)> = per_stream
            .iter()
            .enumerate()
            .filter(|(_, e)| !e.is_empty())
            .map(|(s, e)| {
                (
                    labels[s].as_str(),
                    e.iter().map(|(ts, l)| (*ts, l.as_str(), vec![])).collect(),
                )
            })
            .collect();
        let body = protobuf_body(&streams);

        h.shared
            .sent_entries
            .fetch_add(args.batch as u64, Ordering::SeqCst);
        let mut batch = Batch {
            first_seq,
            len: args.batch as u64,
            sent_at: h.elapsed(),
            acked_at: None,
            attempts: 0,
            rejected: false,
        };
        let first_send = Instant::now();
        let mut backoff = Duration::from_millis(50);
        loop {
            batch.attempts += 1;
            let t = Instant::now();
            let res = h
                .http
                .post(&url)
                .header("Content-Type", "application/x-protobuf")
                .timeout(Duration::from_secs(args.push_timeout))
                .body(body.clone())
                .send()
                .await;
            match res {
                Ok(r) if r.status().as_u16() == 204 => {
                    log.ok_latency.push(t.elapsed());
                    log.ack_latency.push(first_send.elapsed());
                    batch.acked_at = Some(h.elapsed());
                    h.shared
                        .acked_entries
                        .fetch_add(batch.len, Ordering::SeqCst);
                    break;
                }
                Ok(r) if r.status().is_client_error() && r.status().as_u16() != 429 => {
                    // Promtail drops a batch the server refuses; so do we, and report it.
                    let status = r.status();
                    let text = r.text().await.unwrap_or_default();
                    log.rejections.push(format!(
                        "{status}: {}",
                        text.chars().take(300).collect::<String>()
                    ));
                    batch.rejected = true;
                    break;
                }
                Ok(r) => {
                    log.retryable_status += 1;
                    let _ = r.bytes().await;
                }
                Err(e) if e.is_timeout() => log.timeouts += 1,
                Err(_) => log.transport_errors += 1,
            }
            let give_up = drain_deadline
                .lock()
                .map(|d| *d)
                .unwrap_or_else(|_| Instant::now());
            if h.shared.stop.load(Ordering::SeqCst) && Instant::now() >= give_up {
                break;
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_secs(1));
        }
        log.batches.push(batch);
    }
    log
}

// ---------------------------------------------------------------------------------------------
// Queries

#[derive(Debug)]
enum QueryError {
    Transport(String),
    Timeout(String),
    Status(u16, String),
    Decode(String),
}

impl std::fmt::Display for QueryError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            QueryError::Transport(e) => write!(f, "transport: {e}"),
            QueryError::Timeout(e) => write!(f, "client timeout: {e}"),
            QueryError::Status(s, t) => write!(f, "HTTP {s}: {t}"),
            QueryError::Decode(e) => write!(f, "bad JSON: {e}"),
        }
    }
}

fn transport(e: reqwest::Error) -> QueryError {
    if e.is_timeout() {
        QueryError::Timeout(e.to_string())
    } else {
        QueryError::Transport(e.to_string())
    }
}

async fn get_json(
    http: &reqwest::Client,
    url: &str,
    params: &[(&str, String)],
) -> std::result::Result<Value, QueryError> {
    let text = get_text(http, url, params).await?;
    serde_json::from_str(&text).map_err(|e| QueryError::Decode(e.to_string()))
}

async fn get_text(
    http: &reqwest::Client,
    url: &str,
    params: &[(&str, String)],
) -> std::result::Result<String, QueryError> {
    let r = http
        .get(url)
        .query(params)
        .timeout(Duration::from_secs(70))
        .send()
        .await
        .map_err(transport)?;
    let status = r.status();
    let text = r.text().await.map_err(transport)?;
    if !status.is_success() {
        return Err(QueryError::Status(
            status.as_u16(),
            text.chars().take(300).collect(),
        ));
    }
    Ok(text)
}

/// The single value of `sum(...)` as an instant query (0 for an empty vector).
fn instant_sum(v: &Value) -> std::result::Result<u64, QueryError> {
    let result = v["data"]["result"]
        .as_array()
        .ok_or_else(|| QueryError::Decode(format!("no data.result in {v}")))?;
    match result.first() {
        None => Ok(0),
        Some(sample) => sample["value"][1]
            .as_str()
            .and_then(|s| s.parse::<f64>().ok())
            .map(|f| f as u64)
            .ok_or_else(|| QueryError::Decode(format!("no value in {sample}"))),
    }
}

const ALL: &str = r#"{job="loadtest"}"#;

/// `sum(count_over_time({job="loadtest"}[2h]))` at `time`: every entry of the run.
async fn count_all(h: &Harness, time: i64) -> std::result::Result<u64, QueryError> {
    let v = get_json(
        &h.http,
        &h.url("/loki/api/v1/query"),
        &[
            ("query", format!("sum(count_over_time({ALL}[2h]))")),
            ("time", time.to_string()),
        ],
    )
    .await?;
    instant_sum(&v)
}

#[derive(Default)]
struct QueryLog {
    /// (kind, latency) of each successful query.
    latencies: Vec<(&'static str, Duration)>,
    /// Transport errors (expected while the server is down in the kill variant).
    transport_errors: Vec<String>,
    /// Error statuses and undecodable answers: never expected.
    failures: Vec<String>,
    /// 504 answers (the server's `query_timeout`) and client timeouts: overload, reported.
    timeouts: Vec<String>,
    /// All-time counts outside [acknowledged before, sent after].
    violations: Vec<String>,
    consistency_checks: u64,
    /// The query running when the load ended (kind, start), abandoned if the task is aborted.
    in_flight: Option<(&'static str, f64)>,
}

impl QueryLog {
    fn record<T>(
        &mut self,
        kind: &'static str,
        t: Instant,
        at: f64,
        r: std::result::Result<T, QueryError>,
    ) -> Option<T> {
        match r {
            Ok(v) => {
                self.latencies.push((kind, t.elapsed()));
                Some(v)
            }
            Err(QueryError::Timeout(e)) | Err(QueryError::Status(504, e)) => {
                self.timeouts.push(format!("{at:.1}s {kind}: {e}"));
                None
            }
            Err(QueryError::Transport(e)) => {
                self.transport_errors.push(format!("{at:.1}s {kind}: {e}"));
                None
            }
            Err(e) => {
                self.failures.push(format!("{at:.1}s {kind}: {e}"));
                None
            }
        }
    }
}

/// Querier 0 runs log queries, querier 1 metric queries and the all-time consistency count.
/// Results go to `log` as they come, so the task can be aborted at the end of the load.
async fn querier(
    h: Arc<Harness>,
    args: Args,
    q: usize,
    run_start_ns: i64,
    log: Arc<Mutex<QueryLog>>,
) {
    let range_url = h.url("/loki/api/v1/query_range");
    let mut i = 0usize;
    while !h.shared.stop.load(Ordering::SeqCst) {
        i += 1;
        let now = now_ns();
        let at = h.elapsed();
        let t = Instant::now();
        let (kind, params): (&'static str, Vec<(&str, String)>) = match (q % 2, i % 2) {
            (0, 0) => (
                "log: one pod, |= filter, 30s, limit 100",
                vec![
                    (
                        "query",
                        format!(
                            r#"{{job="loadtest", pod="{}"}} |= "level=error""#,
                            pod(i % args.streams)
                        ),
                    ),
                    ("start", (now - 30_000_000_000).to_string()),
                    ("end", now.to_string()),
                    ("limit", "100".into()),
                ],
            ),
            (0, _) => (
                "log: all streams, 10s, limit 1000",
                vec![
                    ("query", ALL.to_string()),
                    ("start", (now - 10_000_000_000).to_string()),
                    ("end", now.to_string()),
                    ("limit", "1000".into()),
                ],
            ),
            (_, 0) => (
                "metric: sum by service count_over_time[10s], 60s",
                vec![
                    (
                        "query",
                        format!("sum by (service_name) (count_over_time({ALL}[10s]))"),
                    ),
                    ("start", (now - 60_000_000_000).to_string()),
                    ("end", now.to_string()),
                    ("step", "5s".into()),
                ],
            ),
            (_, _) => {
                // Everything acknowledged before the query must be counted; nothing that was
                // not yet sent when it returned can be.
                let kind = "metric: all-time sum(count_over_time)";
                let acked_before = h.shared.acked_entries.load(Ordering::SeqCst);
                let kills_before = h.shared.kills.load(Ordering::SeqCst);
                if let Ok(mut l) = log.lock() {
                    l.in_flight = Some((kind, at));
                }
                let r = count_all(&h, now_ns().max(run_start_ns) + 600_000_000_000).await;
                let sent_after = h.shared.sent_entries.load(Ordering::SeqCst);
                let Ok(mut l) = log.lock() else { return };
                l.in_flight = None;
                if let Some(n) = l.record(kind, t, at, r) {
                    l.consistency_checks += 1;
                    if n < acked_before || n > sent_after {
                        l.violations.push(format!(
                            "at {at:.1}s: counted {n}, but {acked_before} were acknowledged \
                             before the query and {sent_after} sent by its end (kills so far: \
                             {kills_before})"
                        ));
                    }
                }
                continue;
            }
        };
        if let Ok(mut l) = log.lock() {
            l.in_flight = Some((kind, at));
        }
        let r = get_json(&h.http, &range_url, &params).await;
        let down = matches!(r, Err(QueryError::Transport(_)));
        {
            let Ok(mut l) = log.lock() else { return };
            l.in_flight = None;
            l.record(kind, t, at, r);
        }
        if down {
            // The server is restarting: do not spin.
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The final check

/// Per pusher and sequence number: 0 = never sent, 1 = acknowledged, 2 = sent, unacknowledged.
const ACKED: u8 = 1;
const MAYBE: u8 = 2;

struct Expected {
    logs: Vec<PushLog>,
    state: Vec<Vec<u8>>,
    acked: u64,
    maybe: u64,
}

impl Expected {
    fn new(logs: Vec<PushLog>) -> Expected {
        let (mut acked, mut maybe) = (0, 0);
        let state = logs
            .iter()
            .map(|l| {
                let mut st = vec![0u8; l.ts.len()];
                for b in &l.batches {
                    let v = if b.acked_at.is_some() { ACKED } else { MAYBE };
                    if v == ACKED {
                        acked += b.len;
                    } else {
                        maybe += b.len;
                    }
                    st[b.first_seq as usize..(b.first_seq + b.len) as usize].fill(v);
                }
                st
            })
            .collect();
        Expected {
            logs,
            state,
            acked,
            maybe,
        }
    }

    fn batch_of(&self, p: usize, seq: u64) -> Option<&Batch> {
        self.logs[p]
            .batches
            .iter()
            .find(|b| (b.first_seq..b.first_seq + b.len).contains(&seq))
    }
}

#[derive(Default)]
struct Seen {
    count: Vec<Vec<u8>>,
    /// Entries returned whose id, timestamp or stream is not one we sent.
    invented: Vec<String>,
    /// Windows whose page was full (held more entries than expected).
    full_windows: u64,
    queries: u64,
    latencies: Vec<Duration>,
    errors: Vec<String>,
}

/// A log query's answer, borrowing from the body (a page holds up to 100,000 entries).
#[derive(Deserialize)]
struct LogAnswer<'a> {
    #[serde(borrow)]
    data: LogData<'a>,
}

#[derive(Deserialize)]
struct LogData<'a> {
    #[serde(borrow)]
    result: Vec<LogStream<'a>>,
}

#[derive(Deserialize)]
struct LogStream<'a> {
    #[serde(borrow)]
    stream: HashMap<Cow<'a, str>, Cow<'a, str>>,
    #[serde(borrow)]
    values: Vec<(Cow<'a, str>, Cow<'a, str>)>,
}

impl LogAnswer<'_> {
    fn entries(&self) -> usize {
        self.data.result.iter().map(|s| s.values.len()).sum()
    }
}

/// Counts the entries of one page, checking each against what was sent.
fn tally(page: &LogAnswer<'_>, exp: &Expected, seen: &mut Seen) {
    let pods: Vec<String> = (0..=u8::MAX as usize).map(pod).collect();
    for stream in &page.data.result {
        let pod_label = stream.stream.get("pod").map_or("", |p| p.as_ref());
        for (ts, line) in &stream.values {
            let ts: i64 = ts.parse().unwrap_or(-1);
            let known = parse_id(line).filter(|(p, seq)| {
                *p < exp.logs.len()
                    && (*seq as usize) < exp.logs[*p].ts.len()
                    && exp.state[*p][*seq as usize] != 0
            });
            let Some((p, seq)) = known else {
                seen.invented.push(format!("unknown id: ts {ts} {line:?}"));
                continue;
            };
            let (want_ts, want_pod) = (
                exp.logs[p].ts[seq as usize],
                &pods[exp.logs[p].stream[seq as usize] as usize],
            );
            if ts != want_ts || pod_label != want_pod {
                seen.invented.push(format!(
                    "id {p}-{seq}: got ts {ts} pod {pod_label:?}, sent ts {want_ts} pod {want_pod:?}"
                ));
                continue;
            }
            let c = &mut seen.count[p][seq as usize];
            *c = c.saturating_add(1);
        }
    }
}

/// Pages over [first, last] sent timestamp with log queries of `--page-limit` entries, over
/// windows expected to hold 80% of that: a window that fills its page holds more entries than
/// were sent (duplicated or invented ones), and is split in two.
async fn page_everything(h: &Arc<Harness>, args: &Args, exp: Arc<Expected>) -> Seen {
    let page_limit = args.page_limit.max(10);
    let window_entries = page_limit * 4 / 5;
    let mut all_ts: Vec<i64> = exp
        .logs
        .iter()
        .zip(&exp.state)
        .flat_map(|(l, st)| {
            l.ts.iter()
                .zip(st)
                .filter(|(_, s)| **s != 0)
                .map(|(t, _)| *t)
        })
        .collect();
    all_ts.sort_unstable();
    let mut windows = VecDeque::new();
    if let (Some(first), Some(last)) = (all_ts.first(), all_ts.last()) {
        // Nothing before the first entry or after the last one (an hour either side).
        windows.push_back((first - 3_600_000_000_000, *first));
        let mut i = 0;
        while i < all_ts.len() {
            let j = (i + window_entries).min(all_ts.len());
            let end = all_ts.get(j).copied().unwrap_or(last + 1);
            windows.push_back((all_ts[i], end));
            i = j;
        }
        windows.push_back((last + 1, last + 3_600_000_000_000));
    }
    drop(all_ts);
    let total = windows.len();
    let queue = Arc::new(Mutex::new(windows));
    let seen = Arc::new(Mutex::new(Seen {
        count: exp.logs.iter().map(|l| vec![0u8; l.ts.len()]).collect(),
        ..Seen::default()
    }));
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..args.verify_concurrency.max(1) {
        let (h, exp, queue, seen) = (h.clone(), exp.clone(), queue.clone(), seen.clone());
        tasks.spawn(async move {
            let url = h.url("/loki/api/v1/query_range");
            loop {
                let next = queue.lock().ok().and_then(|mut q| q.pop_front());
                let Some((start, end)) = next else { break };
                let t = Instant::now();
                let mut result = Err(String::new());
                for attempt in 0..3 {
                    result = get_text(
                        &h.http,
                        &url,
                        &[
                            ("query", ALL.to_string()),
                            ("start", start.to_string()),
                            ("end", end.to_string()),
                            ("limit", page_limit.to_string()),
                            ("direction", "forward".into()),
                        ],
                    )
                    .await
                    .map_err(|e| format!("window [{start}, {end}) attempt {attempt}: {e}"));
                    if result.is_ok() {
                        break;
                    }
                }
                let elapsed = t.elapsed();
                let body = match result {
                    Ok(body) => body,
                    Err(e) => {
                        if let Ok(mut seen) = seen.lock() {
                            seen.queries += 1;
                            seen.errors.push(e);
                        }
                        continue;
                    }
                };
                let page = serde_json::from_str::<LogAnswer<'_>>(&body);
                let Ok(mut seen) = seen.lock() else { break };
                seen.queries += 1;
                match page {
                    Err(e) => seen.errors.push(format!(
                        "window [{start}, {end}): {e}: {}",
                        body.chars().take(300).collect::<String>()
                    )),
                    Ok(page) => {
                        let entries = page.entries();
                        seen.latencies.push(elapsed);
                        // A full page may have cut entries off: count nothing, split.
                        if entries >= page_limit && end - start > 1 {
                            seen.full_windows += 1;
                            let mid = start + (end - start) / 2;
                            if let Ok(mut q) = queue.lock() {
                                q.push_back((start, mid));
                                q.push_back((mid, end));
                            }
                            continue;
                        }
                        tally(&page, &exp, &mut seen);
                    }
                }
            }
        });
    }
    let progress = {
        let seen = seen.clone();
        let shared = h.shared.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_secs(10)).await;
                shared.sample(true);
                let done = seen.lock().map(|s| s.queries).unwrap_or(0);
                eprintln!("  check: {done} of ~{total} windows queried");
            }
        })
    };
    while tasks.join_next().await.is_some() {}
    progress.abort();
    let mut seen = seen
        .lock()
        .map(|mut s| std::mem::take(&mut *s))
        .unwrap_or_default();
    if seen.count.is_empty() {
        seen.errors.push("internal: lost the tally".into());
    }
    seen
}

// ---------------------------------------------------------------------------------------------
// Reporting

fn pct(v: &mut [Duration], p: f64) -> Duration {
    if v.is_empty() {
        return Duration::ZERO;
    }
    v.sort_unstable();
    let i = ((p * v.len() as f64).ceil() as usize).clamp(1, v.len()) - 1;
    v[i]
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1e3)
}

fn mib(kb: u64) -> String {
    format!("{:.0} MiB", kb as f64 / 1024.0)
}

/// What a data directory holds.
#[derive(Default)]
struct DirStats {
    files: u64,
    bytes: u64,
    parquet: u64,
    /// Staging files (`<key>#<n>`) of writes a kill interrupted: evidence that a kill landed
    /// in a push or a compaction (the compactor removes them later).
    staging: u64,
}

fn dir_stats(p: &Path, stats: &mut DirStats) {
    let Ok(rd) = std::fs::read_dir(p) else { return };
    for e in rd.flatten() {
        let path = e.path();
        if path.is_dir() {
            dir_stats(&path, stats);
        } else if let Ok(m) = e.metadata() {
            stats.files += 1;
            stats.bytes += m.len();
            if path.extension().is_some_and(|x| x == "parquet") {
                stats.parquet += 1;
            }
            if e.file_name().to_string_lossy().contains('#') {
                stats.staging += 1;
            }
        }
    }
}

/// The `compaction pass done` lines of a log, with their summaries added up.
#[derive(Default)]
struct Passes {
    done: u64,
    /// Field name of `CompactSummary` and its sum over the passes.
    totals: Vec<(String, u64)>,
}

impl Passes {
    fn totals(&self) -> String {
        self.totals
            .iter()
            .filter(|(k, _)| k != "days")
            .map(|(k, v)| format!("{k} {v}"))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

fn compaction_passes(log: &Path) -> Passes {
    let mut passes = Passes::default();
    let text = std::fs::read_to_string(log).unwrap_or_default();
    for line in text.lines().filter(|l| l.contains("compaction pass done")) {
        passes.done += 1;
        let Some(fields) = line
            .split_once("CompactSummary {")
            .and_then(|(_, rest)| rest.split_once('}'))
            .map(|(fields, _)| fields)
        else {
            continue;
        };
        for field in fields.split(',') {
            let Some((k, v)) = field.split_once(':') else {
                continue;
            };
            let (k, v) = (k.trim(), v.trim().parse::<u64>().unwrap_or(0));
            match passes.totals.iter_mut().find(|(name, _)| name == k) {
                Some((_, total)) => *total += v,
                None => passes.totals.push((k.to_string(), v)),
            }
        }
    }
    passes
}

/// Warnings and errors of the compactor in a log, without terminal colours.
fn compaction_failures(log: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    text.lines()
        .filter(|l| {
            l.contains("compaction pass failed") || l.contains("compaction of a day failed")
        })
        .map(|l| {
            let mut plain = String::new();
            let mut chars = l.chars();
            while let Some(c) = chars.next() {
                if c == '\u{1b}' {
                    // Skip an escape sequence: ESC [ ... letter.
                    for c in chars.by_ref() {
                        if c.is_ascii_alphabetic() {
                            break;
                        }
                    }
                } else {
                    plain.push(c);
                }
            }
            plain
        })
        .collect()
}

fn count_log_lines(log: &Path, needle: &str) -> usize {
    std::fs::read_to_string(log)
        .map(|s| s.lines().filter(|l| l.contains(needle)).count())
        .unwrap_or(0)
}

// ---------------------------------------------------------------------------------------------

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> std::process::ExitCode {
    match run(Args::parse()).await {
        Ok(true) => std::process::ExitCode::SUCCESS,
        Ok(false) => std::process::ExitCode::from(1),
        Err(e) => {
            eprintln!("loadtest: {e:#}");
            std::process::ExitCode::from(2)
        }
    }
}

async fn run(args: Args) -> Result<bool> {
    if args.pushers == 0 || args.batch == 0 || !(1..=255).contains(&args.streams) {
        bail!("--pushers and --batch must be positive, --streams within 1..=255");
    }
    let bin = std::fs::canonicalize(&args.parquetry)
        .with_context(|| format!("the parquetry binary {}", args.parquetry.display()))?;
    let tmp = tempfile::Builder::new()
        .prefix("parquetry-loadtest-")
        .tempdir()?;
    let data = tmp.path().join("data");
    std::fs::create_dir_all(&data)?;
    let config = tmp.path().join("parquetry.yaml");
    let compaction_interval = args
        .compaction_interval
        .unwrap_or(if args.kill_every.is_some() { 4 } else { 10 });
    // Defaults everywhere, except a compaction timer short enough to run several passes
    // during the load, on objects a few seconds old, deleting absorbed objects soon after;
    // and log queries large enough for the final check to page quickly.
    let yaml = format!(
        "compactor:\n  compaction_interval: {}s\n  hot_object_min_age: 2s\n  retention_delete_delay: 30s\n\
         limits_config:\n  max_entries_limit_per_query: {}\n",
        compaction_interval,
        args.page_limit.max(5000)
    );
    std::fs::write(&config, &yaml)?;
    // The check reads what the load left: the same settings without the compaction timer
    // (unless asked for), which would otherwise compete with it for the two cores.
    let check_config = tmp.path().join("check.yaml");
    if args.compact_during_check {
        std::fs::write(&check_config, &yaml)?;
    } else {
        std::fs::write(
            &check_config,
            yaml.replace(
                &format!("compaction_interval: {}s", compaction_interval),
                "compaction_interval: 0s",
            ),
        )?;
    }
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let h = Arc::new(Harness {
        bin: bin.clone(),
        config: config.clone(),
        check_config,
        data: data.clone(),
        log: tmp.path().join("server.log"),
        port,
        base: format!("http://127.0.0.1:{port}"),
        http: reqwest::Client::builder()
            .pool_idle_timeout(Duration::from_secs(20))
            .build()?,
        shared: Arc::new(Shared::default()),
        t0: Instant::now(),
    });
    let kill_every = args.kill_every.filter(|s| *s > 0.0);
    let variant = if kill_every.is_some() {
        "kill -9"
    } else {
        "steady"
    };
    eprintln!(
        "loadtest ({variant}): {} s, {} pushers x {} entries over {} streams, server {} on port {port}, data {}",
        args.duration,
        args.pushers,
        args.batch,
        args.streams,
        bin.display(),
        data.display()
    );

    let server = h.start().await?;
    let server = Arc::new(tokio::sync::Mutex::new(Some(server)));
    let run_start_ns = now_ns();
    let load_start = Instant::now();
    let duration = Duration::from_secs(args.duration);

    // RSS sampler.
    let sampler = {
        let shared = h.shared.clone();
        tokio::spawn(async move {
            while !shared.done.load(Ordering::SeqCst) {
                shared.sample(false);
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        })
    };

    let drain_deadline = Arc::new(Mutex::new(Instant::now() + duration * 10));
    let pushers: Vec<_> = (0..args.pushers)
        .map(|p| tokio::spawn(pusher(h.clone(), args.clone(), p, drain_deadline.clone())))
        .collect();
    let qlogs: Vec<Arc<Mutex<QueryLog>>> =
        (0..args.queriers.min(2)).map(|_| Arc::default()).collect();
    let queriers: Vec<_> = qlogs
        .iter()
        .enumerate()
        .map(|(q, log)| {
            tokio::spawn(querier(
                h.clone(),
                args.clone(),
                q,
                run_start_ns,
                log.clone(),
            ))
        })
        .collect();

    // `parquetry compact --once` against the same directory, beside the server's timer.
    let compact_at = args.compact_at.unwrap_or(args.duration as f64 / 2.0);
    let compactor = {
        let h = h.clone();
        tokio::spawn(async move {
            if compact_at < 0.0 {
                return Ok::<_, anyhow::Error>(None);
            }
            tokio::time::sleep(Duration::from_secs_f64(compact_at)).await;
            let started = h.elapsed();
            let mut child = Command::new(&h.bin)
                .arg("compact")
                .arg("--once")
                .arg("--config")
                .arg(&h.config)
                .arg("--data")
                .arg(&h.data)
                .stdin(Stdio::null())
                .stdout(Stdio::from(h.log_file()?))
                .stderr(Stdio::from(h.log_file()?))
                .kill_on_drop(true)
                .spawn()?;
            h.shared
                .compact_pid
                .store(child.id().unwrap_or(0), Ordering::SeqCst);
            // Sample its memory until it exits (VmHWM is gone once it has).
            let status = loop {
                h.shared.sample(false);
                if let Some(s) = child.try_wait()? {
                    break s;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            };
            h.shared.compact_pid.store(0, Ordering::SeqCst);
            Ok(Some((started, h.elapsed() - started, status)))
        })
    };

    // The killer: SIGKILL and restart every `kill_every` seconds.
    let mut kills: Vec<(f64, Duration)> = Vec::new();
    let kill_loop = async {
        let Some(every) = kill_every else {
            tokio::time::sleep(duration).await;
            return Ok::<_, anyhow::Error>(());
        };
        let every = Duration::from_secs_f64(every);
        let mut next = load_start + every;
        while next < load_start + duration {
            tokio::time::sleep_until(next.into()).await;
            let mut guard = server.lock().await;
            let at = h.elapsed();
            let t = Instant::now();
            if let Some(s) = guard.take() {
                h.kill(s).await?;
            }
            h.shared.kills.fetch_add(1, Ordering::SeqCst);
            *guard = Some(h.start().await?);
            kills.push((at, t.elapsed()));
            next += every;
        }
        tokio::time::sleep_until((load_start + duration).into()).await;
        Ok(())
    };
    let kill_result = kill_loop.await;

    // End of the load: no new batches or queries; the last batches get `drain` seconds.
    let load_secs = load_start.elapsed().as_secs_f64();
    if let Ok(mut d) = drain_deadline.lock() {
        *d = Instant::now() + Duration::from_secs(args.drain);
    }
    h.shared.stop.store(true, Ordering::SeqCst);
    let mut logs = Vec::new();
    for t in pushers {
        logs.push(t.await?);
    }
    let drain_secs = load_start.elapsed().as_secs_f64() - load_secs;
    // Queries still running 5 s after the load are abandoned (and reported).
    let grace = tokio::time::Instant::now() + Duration::from_secs(5);
    for mut t in queriers {
        if tokio::time::timeout_at(grace, &mut t).await.is_err() {
            t.abort();
        }
    }
    let qlogs: Vec<QueryLog> = qlogs
        .iter()
        .map(|l| {
            l.lock()
                .map(|mut l| std::mem::take(&mut *l))
                .unwrap_or_default()
        })
        .collect();
    let abandoned: Vec<String> = qlogs
        .iter()
        .filter_map(|q| q.in_flight)
        .map(|(kind, at)| format!("{kind} sent at {at:.1}s"))
        .collect();
    let compact_result = compactor.await?;
    kill_result?;

    // Stop the server the way the variant dictates, then start it again for the check.
    let final_server = server.lock().await.take();
    let stopping = Instant::now();
    let graceful = match final_server {
        Some(s) if kill_every.is_some() => {
            h.kill(s).await?;
            None
        }
        Some(s) => Some(h.terminate(s, false).await?),
        None => None,
    };
    let stop_secs = stopping.elapsed().as_secs_f64();
    h.shared.done.store(true, Ordering::SeqCst);
    sampler.await?;
    let load_peaks = h.shared.peaks();

    let exp = Arc::new(Expected::new(logs));
    let rejections: Vec<String> = exp.logs.iter().flat_map(|l| l.rejections.clone()).collect();
    let query_failures: Vec<String> = qlogs.iter().flat_map(|q| q.failures.clone()).collect();
    let query_transport: Vec<String> = qlogs
        .iter()
        .flat_map(|q| q.transport_errors.clone())
        .collect();
    let violations: Vec<String> = qlogs.iter().flat_map(|q| q.violations.clone()).collect();
    let query_timeouts: Vec<String> = qlogs.iter().flat_map(|q| q.timeouts.clone()).collect();
    let load_ok = violations.is_empty()
        && rejections.is_empty()
        && query_failures.is_empty()
        && (kill_every.is_some() || query_transport.is_empty());

    // ----- The load figures -----
    let mut out = String::new();
    let acked_batches: u64 = exp
        .logs
        .iter()
        .map(|l| l.batches.iter().filter(|b| b.acked_at.is_some()).count() as u64)
        .sum();
    let unacked_batches: u64 = exp
        .logs
        .iter()
        .map(|l| l.batches.iter().filter(|b| b.acked_at.is_none()).count() as u64)
        .sum();
    let attempts: u64 = exp
        .logs
        .iter()
        .flat_map(|l| &l.batches)
        .map(|b| b.attempts as u64)
        .sum();
    let mut ok_lat: Vec<Duration> = exp.logs.iter().flat_map(|l| l.ok_latency.clone()).collect();
    let mut ack_lat: Vec<Duration> = exp
        .logs
        .iter()
        .flat_map(|l| l.ack_latency.clone())
        .collect();
    let (timeouts, transport, retry_status) = exp.logs.iter().fold((0, 0, 0), |a, l| {
        (
            a.0 + l.timeouts,
            a.1 + l.transport_errors,
            a.2 + l.retryable_status,
        )
    });
    let acked_secs = load_secs + drain_secs;
    let _ = writeln!(out, "\n== parquetry load test: {variant} ==");
    let _ = writeln!(
        out,
        "shape          {} pushers x {} entries/push over {} streams ({} service_name partitions), ~150-byte logfmt lines, {}; {} query clients",
        args.pushers,
        args.batch,
        args.streams,
        SERVICES,
        if args.rate > 0.0 {
            format!("{} pushes/s per pusher", args.rate)
        } else {
            "pushes as fast as answered".into()
        },
        args.queriers.min(2)
    );
    let _ = writeln!(
        out,
        "config         defaults, plus {}",
        yaml.trim().replace(":\n ", ":").replace('\n', ";")
    );
    let _ = writeln!(
        out,
        "load           {load_secs:.1} s (+{drain_secs:.1} s for the last batches to be acknowledged)"
    );
    let _ = writeln!(
        out,
        "pushes         {acked_batches} acknowledged ({:.1}/s), {attempts} attempts: {retry_status} retryable statuses, {transport} transport errors, {timeouts} timeouts; {} rejected (4xx); {unacked_batches} never acknowledged",
        acked_batches as f64 / acked_secs,
        rejections.len()
    );
    let _ = writeln!(
        out,
        "entries        {} acknowledged ({:.0}/s), {} sent but unacknowledged",
        exp.acked,
        exp.acked as f64 / acked_secs,
        exp.maybe
    );
    let _ = writeln!(
        out,
        "push latency   p50 {} p99 {} max {} (204 answers); acknowledgement incl. retries p50 {} p99 {} max {}",
        ms(pct(&mut ok_lat, 0.5)),
        ms(pct(&mut ok_lat, 0.99)),
        ms(pct(&mut ok_lat, 1.0)),
        ms(pct(&mut ack_lat, 0.5)),
        ms(pct(&mut ack_lat, 0.99)),
        ms(pct(&mut ack_lat, 1.0)),
    );
    let mut all_q: Vec<Duration> = qlogs
        .iter()
        .flat_map(|q| q.latencies.iter().map(|(_, d)| *d))
        .collect();
    let _ = writeln!(
        out,
        "query latency  {} queries: p50 {} p99 {} max {}",
        all_q.len(),
        ms(pct(&mut all_q, 0.5)),
        ms(pct(&mut all_q, 0.99)),
        ms(pct(&mut all_q, 1.0)),
    );
    let mut kinds: Vec<&'static str> = qlogs
        .iter()
        .flat_map(|q| q.latencies.iter().map(|(k, _)| *k))
        .collect();
    kinds.sort_unstable();
    kinds.dedup();
    for kind in kinds {
        let mut v: Vec<Duration> = qlogs
            .iter()
            .flat_map(|q| {
                q.latencies
                    .iter()
                    .filter(|(k, _)| *k == kind)
                    .map(|(_, d)| *d)
            })
            .collect();
        let _ = writeln!(
            out,
            "  {kind:<52} n={:<5} p50 {} p99 {}",
            v.len(),
            ms(pct(&mut v, 0.5)),
            ms(pct(&mut v, 0.99))
        );
    }
    let _ = writeln!(
        out,
        "query errors   {} timed out (504 after query_timeout, or no answer in 70 s), {} abandoned at the end of the load, {} transport errors (server down{}), {} other error answers",
        query_timeouts.len(),
        abandoned.len(),
        query_transport.len(),
        if kill_every.is_some() {
            ": expected"
        } else {
            ": none expected"
        },
        query_failures.len()
    );
    let _ = writeln!(
        out,
        "consistency    {} all-time counts during the load, {} outside [acked before, sent after]",
        qlogs.iter().map(|q| q.consistency_checks).sum::<u64>(),
        violations.len()
    );
    let _ = writeln!(
        out,
        "peak RSS       server {} (VmHWM; sampled VmRSS max {}); `parquetry compact --once` {}",
        mib(load_peaks.server_hwm_kb),
        mib(load_peaks.server_rss_kb),
        mib(load_peaks.compact_hwm_kb)
    );
    let timeline = h
        .shared
        .timeline
        .lock()
        .map(|t| t.clone())
        .unwrap_or_default();
    let mut buckets: Vec<u64> = Vec::new();
    for (at, kb) in timeline {
        let b = (at.saturating_duration_since(load_start).as_secs() / 5) as usize;
        if buckets.len() <= b {
            buckets.resize(b + 1, 0);
        }
        buckets[b] = buckets[b].max(kb);
    }
    let _ = writeln!(
        out,
        "RSS timeline   server VmRSS max per 5 s, MiB: {}",
        buckets
            .iter()
            .map(|kb| (kb / 1024).to_string())
            .collect::<Vec<_>>()
            .join(" ")
    );
    let passes = compaction_passes(&h.log);
    let cli = match &compact_result {
        Ok(Some((at, secs, status))) => {
            format!("`parquetry compact --once` at {at:.1}s took {secs:.1}s ({status})")
        }
        Ok(None) => "no `parquetry compact` run".into(),
        Err(e) => format!("`parquetry compact` failed to run: {e:#}"),
    };
    let _ = writeln!(
        out,
        "compaction     {cli}; passes logged (server timer and CLI): {} done, {} failed; {}",
        passes.done,
        count_log_lines(&h.log, "compaction pass failed"),
        passes.totals()
    );
    if kill_every.is_some() {
        let mut downtime: Vec<Duration> = kills.iter().map(|(_, d)| *d).collect();
        let _ = writeln!(
            out,
            "kills          {} SIGKILLs during the load at {} s, restart to ready p50 {} max {}; final stop SIGKILL",
            kills.len(),
            kills
                .iter()
                .map(|(t, _)| format!("{t:.1}"))
                .collect::<Vec<_>>()
                .join(", "),
            ms(pct(&mut downtime, 0.5)),
            ms(pct(&mut downtime, 1.0)),
        );
    } else {
        let _ = writeln!(
            out,
            "stop           SIGTERM: {} after {stop_secs:.1} s (in-flight requests finish first)",
            if graceful == Some(true) {
                "graceful exit"
            } else {
                "NOT graceful"
            }
        );
    }
    let load_compaction_failures = compaction_failures(&h.log);
    list(&mut out, "COMPACTION FAILURES", &load_compaction_failures);
    list(&mut out, "CONSISTENCY VIOLATIONS", &violations);
    list(&mut out, "PUSH REJECTIONS", &rejections);
    list(&mut out, "QUERY ERROR ANSWERS", &query_failures);
    list(&mut out, "QUERY TIMEOUTS", &query_timeouts);
    list(
        &mut out,
        "QUERIES ABANDONED AT THE END OF THE LOAD",
        &abandoned,
    );
    if kill_every.is_none() {
        list(&mut out, "QUERY TRANSPORT ERRORS", &query_transport);
    }

    let pass = if args.skip_check {
        let _ = writeln!(out, "check          skipped (--skip-check)");
        load_ok
    } else {
        eprintln!(
            "load done: {} entries acknowledged, {} sent but unacknowledged; checking",
            exp.acked, exp.maybe
        );
        // Always checked, whatever happened during the load.
        let checked = check(
            &h,
            &args,
            &exp,
            &kills,
            run_start_ns,
            load_compaction_failures.len(),
            &mut out,
        )
        .await?;
        load_ok && checked
    };
    let _ = writeln!(
        out,
        "RESULT         {}",
        match (pass, args.skip_check) {
            (true, false) => "PASS: every acknowledged entry present exactly once",
            (true, true) => "PASS (load only: not checked)",
            (false, _) => "FAIL",
        }
    );
    if args.keep || !pass {
        let dir = tmp.keep();
        let _ = writeln!(
            out,
            "kept           {} (data/, server.log, parquetry.yaml)",
            dir.display()
        );
    }
    println!("{out}");
    Ok(pass)
}

fn list(out: &mut String, title: &str, items: &[String]) {
    if items.is_empty() {
        return;
    }
    let _ = writeln!(out, "{title} ({}; first 20):", items.len());
    for i in items.iter().take(20) {
        let _ = writeln!(out, "  {i}");
    }
}

/// The exactly-once check on a freshly started server: the all-time count, every entry by
/// paging, the all-time count again. Appends its report to `out`; true when it passed.
async fn check(
    h: &Arc<Harness>,
    args: &Args,
    exp: &Arc<Expected>,
    kills: &[(f64, Duration)],
    run_start_ns: i64,
    load_compaction_failures: usize,
    out: &mut String,
) -> Result<bool> {
    let check_start = Instant::now();
    let server = h.start_with(&h.check_config).await?;
    let max_ts = exp
        .logs
        .iter()
        .filter_map(|l| l.ts.last())
        .max()
        .copied()
        .unwrap_or(run_start_ns);
    let count_time = max_ts + 1;
    let count_before = count_all(h, count_time).await;
    let seen = page_everything(h, args, exp.clone()).await;
    let count_after = count_all(h, count_time).await;
    h.shared.sample(true);
    let check_secs = check_start.elapsed().as_secs_f64();
    let graceful_end = h.terminate(server, true).await?;
    let peaks = h.shared.peaks();

    let mut lost = Vec::new();
    let mut duplicated = Vec::new();
    let (mut distinct_found, mut maybe_found) = (0u64, 0u64);
    for (p, counts) in seen.count.iter().enumerate() {
        for (seq, &c) in counts.iter().enumerate() {
            let st = exp.state[p][seq];
            if c > 0 {
                distinct_found += 1;
                if st == MAYBE {
                    maybe_found += 1;
                }
            }
            if c > 1 {
                duplicated.push((p, seq as u64, c));
            }
            if st == ACKED && c == 0 {
                lost.push((p, seq as u64));
            }
        }
    }
    let count_ok = |c: &std::result::Result<u64, QueryError>| {
        c.as_ref()
            .is_ok_and(|n| *n >= exp.acked && *n <= exp.acked + exp.maybe && *n == distinct_found)
    };
    let pass = lost.is_empty()
        && duplicated.is_empty()
        && seen.invented.is_empty()
        && seen.errors.is_empty()
        && count_ok(&count_before)
        && count_ok(&count_after);

    let mut dir = DirStats::default();
    dir_stats(&h.data, &mut dir);
    let mut vlat = seen.latencies.clone();
    let _ = writeln!(
        out,
        "check          {check_secs:.1} s after a restart (compaction timer {}): {} log queries (limit {}, p50 {} p99 {}), {} windows split; server peak RSS {}; store holds {} Parquet objects ({:.1} MB, {} files, {} staging files of interrupted writes)",
        if args.compact_during_check {
            "on"
        } else {
            "off"
        },
        seen.queries,
        args.page_limit,
        ms(pct(&mut vlat, 0.5)),
        ms(pct(&mut vlat, 0.99)),
        seen.full_windows,
        mib(peaks.verify_hwm_kb),
        dir.parquet,
        dir.bytes as f64 / 1e6,
        dir.files,
        dir.staging
    );
    let show = |c: &std::result::Result<u64, QueryError>| match c {
        Ok(n) => n.to_string(),
        Err(e) => format!("error ({e})"),
    };
    let _ = writeln!(
        out,
        "exactly once   {distinct_found} distinct entries returned by log queries ({maybe_found} of them unacknowledged), {} acknowledged; lost {}, duplicated {}, invented/mismatched {}, query errors {}",
        exp.acked,
        lost.len(),
        duplicated.len(),
        seen.invented.len(),
        seen.errors.len()
    );
    let _ = writeln!(
        out,
        "count check    sum(count_over_time) = {} before paging, {} after (want {} acknowledged{})",
        show(&count_before),
        show(&count_after),
        exp.acked,
        if exp.maybe > 0 {
            format!(" .. +{} unacknowledged", exp.maybe)
        } else {
            String::new()
        }
    );
    let _ = writeln!(
        out,
        "final stop     {}",
        if graceful_end {
            "graceful"
        } else {
            "NOT graceful"
        }
    );

    // Where each lost or duplicated entry came from, and which kills were near its push.
    let describe = |p: usize, seq: u64| -> String {
        let Some(b) = exp.batch_of(p, seq) else {
            return format!("id {p}-{seq}: no batch");
        };
        let near: Vec<String> = kills
            .iter()
            .map(|(k, _)| *k)
            .filter(|k| *k >= b.sent_at - 1.0 && *k <= b.acked_at.unwrap_or(f64::MAX) + 1.0)
            .map(|k| format!("{k:.1}s"))
            .collect();
        format!(
            "id {p}-{seq} ts {} pod {}: batch {}..{} sent {:.2}s, acked {}, {} attempts{}",
            exp.logs[p].ts[seq as usize],
            pod(exp.logs[p].stream[seq as usize] as usize),
            b.first_seq,
            b.first_seq + b.len,
            b.sent_at,
            match (b.acked_at, b.rejected) {
                (Some(a), _) => format!("{a:.2}s"),
                (None, true) => "never (rejected)".into(),
                (None, false) => "never".into(),
            },
            b.attempts,
            if near.is_empty() {
                String::new()
            } else {
                format!(", kills nearby at {}", near.join(", "))
            }
        )
    };
    let lost_s: Vec<String> = lost.iter().map(|(p, s)| describe(*p, *s)).collect();
    let dup_s: Vec<String> = duplicated
        .iter()
        .map(|(p, s, c)| format!("{c}x {}", describe(*p, *s)))
        .collect();
    let passes = compaction_passes(&h.log);
    let _ = writeln!(
        out,
        "compaction     whole run (load and check): {} passes done, {} failed; {}",
        passes.done,
        count_log_lines(&h.log, "compaction pass failed"),
        passes.totals()
    );
    let failures = compaction_failures(&h.log);
    list(
        out,
        "COMPACTION FAILURES DURING THE CHECK",
        failures.get(load_compaction_failures..).unwrap_or_default(),
    );
    list(out, "LOST", &lost_s);
    list(out, "DUPLICATED", &dup_s);
    list(out, "INVENTED OR MISMATCHED", &seen.invented);
    list(out, "CHECK QUERY ERRORS", &seen.errors);
    Ok(pass)
}
