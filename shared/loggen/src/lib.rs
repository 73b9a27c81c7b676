//! A deterministic, seeded generator of realistic logs for benchmarks and tests.
//!
//! Same seed, same logs, on every machine: several services, each with a few pods and a line
//! shape of its own (nginx access logs, JSON application logs, logfmt), skewed levels, trace ids,
//! and timestamps that advance steadily. No dependencies, so it builds in a second.
// Non-test code never panics on a `Result` or `Option`: errors are typed and returned.
#![cfg_attr(not(test), warn(clippy::unwrap_used, clippy::expect_used))]

/// xorshift64*: small, fast and good enough for synthetic data.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator seeded with `seed`.
    pub fn new(seed: u64) -> Self {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    /// The next pseudo-random number.
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    /// A number in `0..n`.
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }
    /// One of `items`.
    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len() as u64) as usize]
    }
}

/// How a service writes its lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    /// nginx access log lines.
    Nginx,
    /// JSON objects.
    Json,
    /// logfmt pairs.
    Logfmt,
}

/// One generated entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GenEntry {
    /// Entry time (Unix ns).
    pub ts_ns: i64,
    /// The line.
    pub line: String,
    /// A trace id, for structured metadata.
    pub trace_id: String,
}

/// One generated stream: its labels and entries in time order.
#[derive(Debug, Clone)]
pub struct GenStream {
    /// The stream's labels.
    pub labels: Vec<(String, String)>,
    /// Its entries, oldest first.
    pub entries: Vec<GenEntry>,
}

impl GenStream {
    /// Loki's text form of the labels, for protobuf pushes.
    pub fn label_text(&self) -> String {
        let inner: Vec<String> = self
            .labels
            .iter()
            .map(|(k, v)| format!("{k}=\"{v}\""))
            .collect();
        format!("{{{}}}", inner.join(", "))
    }
}

const SERVICES: [(&str, Shape); 6] = [
    ("frontend", Shape::Nginx),
    ("checkout", Shape::Json),
    ("payments", Shape::Json),
    ("inventory", Shape::Logfmt),
    ("auth", Shape::Logfmt),
    ("gateway", Shape::Nginx),
];
const LEVELS: [&str; 10] = [
    "info", "info", "info", "info", "info", "info", "debug", "debug", "warn", "error",
];
const PATHS: [&str; 8] = [
    "/",
    "/api/cart",
    "/api/checkout",
    "/api/items/42",
    "/login",
    "/static/app.js",
    "/api/search?q=shoes",
    "/healthz",
];
const METHODS: [&str; 4] = ["GET", "GET", "POST", "PUT"];
const STATUSES: [u16; 10] = [200, 200, 200, 200, 200, 201, 304, 404, 500, 503];
const MESSAGES: [&str; 6] = [
    "request completed",
    "cache miss, loading from database",
    "payment authorised",
    "retrying upstream call",
    "user session refreshed",
    "inventory reserved for order",
];

/// A stream's labels, line shape and last timestamp.
type StreamState = (Vec<(String, String)>, Shape, i64);

/// A generator of `streams` streams (spread over the services) whose entries start at
/// `start_ns` and advance by about `step_ns`.
#[derive(Debug, Clone)]
pub struct LogGen {
    rng: Rng,
    streams: Vec<StreamState>,
    step_ns: i64,
}

impl LogGen {
    /// `streams` streams from `start_ns`, one entry per `step_ns`, seeded with `seed`.
    pub fn new(seed: u64, streams: usize, start_ns: i64, step_ns: i64) -> Self {
        let mut rng = Rng::new(seed);
        let streams = (0..streams.max(1))
            .map(|i| {
                let (svc, shape) = SERVICES[i % SERVICES.len()];
                let labels = vec![
                    ("cluster".to_string(), format!("eu-{}", i % 3)),
                    ("namespace".to_string(), "shop".to_string()),
                    (
                        "pod".to_string(),
                        format!("{svc}-{:05x}", rng.below(1 << 20)),
                    ),
                    ("service_name".to_string(), svc.to_string()),
                ];
                (labels, shape, start_ns)
            })
            .collect();
        LogGen {
            rng,
            streams,
            step_ns: step_ns.max(1),
        }
    }

    /// The next batch: `per_stream` entries for every stream.
    pub fn batch(&mut self, per_stream: usize) -> Vec<GenStream> {
        let step = self.step_ns;
        let mut out = Vec::with_capacity(self.streams.len());
        for i in 0..self.streams.len() {
            let (labels, shape, mut ts) = self.streams[i].clone();
            let mut entries = Vec::with_capacity(per_stream);
            for _ in 0..per_stream {
                ts += step / 2 + self.rng.below(step as u64) as i64;
                let trace_id = format!("{:016x}{:016x}", self.rng.next_u64(), self.rng.next_u64());
                let line = self.line(shape, ts, &trace_id);
                entries.push(GenEntry {
                    ts_ns: ts,
                    line,
                    trace_id,
                });
            }
            self.streams[i].2 = ts;
            out.push(GenStream { labels, entries });
        }
        out
    }

    fn line(&mut self, shape: Shape, ts: i64, trace: &str) -> String {
        let level = *self.rng.pick(&LEVELS);
        let path = *self.rng.pick(&PATHS);
        let status = *self.rng.pick(&STATUSES);
        let ms = self.rng.below(2000);
        let user = self.rng.below(100_000);
        match shape {
            Shape::Nginx => format!(
                "10.{}.{}.{} - - [{}] \"{} {} HTTP/1.1\" {} {} \"-\" \"Mozilla/5.0 (X11; Linux x86_64)\" rt={}.{:03} trace_id={}",
                self.rng.below(256),
                self.rng.below(256),
                self.rng.below(256),
                ts / 1_000_000_000,
                self.rng.pick(&METHODS),
                path,
                status,
                200 + self.rng.below(50_000),
                ms / 1000,
                ms % 1000,
                trace
            ),
            Shape::Json => format!(
                "{{\"ts\":{},\"level\":\"{}\",\"msg\":\"{}\",\"path\":\"{}\",\"status\":{},\"duration_ms\":{},\"user_id\":{},\"trace_id\":\"{}\"}}",
                ts / 1_000_000,
                level,
                self.rng.pick(&MESSAGES),
                path,
                status,
                ms,
                user,
                trace
            ),
            Shape::Logfmt => format!(
                "ts={} level={} msg=\"{}\" path={} status={} duration={}ms user={} trace_id={}",
                ts / 1_000_000,
                level,
                self.rng.pick(&MESSAGES),
                path,
                status,
                ms,
                user,
                trace
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deterministic_and_varied() {
        let a = LogGen::new(7, 12, 1_700_000_000_000_000_000, 1_000_000).batch(50);
        let b = LogGen::new(7, 12, 1_700_000_000_000_000_000, 1_000_000).batch(50);
        assert_eq!(a[3].entries, b[3].entries);
        assert_eq!(a.len(), 12);
        let all: Vec<&str> = a
            .iter()
            .flat_map(|s| s.entries.iter().map(|e| e.line.as_str()))
            .collect();
        assert!(all.iter().any(|l| l.starts_with('{')));
        assert!(all.iter().any(|l| l.contains("HTTP/1.1")));
        assert!(all.iter().any(|l| l.starts_with("ts=")));
        assert!(
            all.iter()
                .any(|l| l.contains("level=error") || l.contains("\"level\":\"error\""))
        );
        // Time advances within a stream.
        assert!(a[0].entries.windows(2).all(|w| w[0].ts_ns < w[1].ts_ns));
    }
}
