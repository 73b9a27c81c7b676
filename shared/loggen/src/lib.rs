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

/// Shannon entropy, in bits, of one uniform pick from `items` (repeated items are likelier).
fn pick_entropy<T: PartialEq>(items: &[T]) -> f64 {
    let n = items.len() as f64;
    let mut bits = 0.0;
    for (i, item) in items.iter().enumerate() {
        if items[..i].contains(item) {
            continue;
        }
        let p = items.iter().filter(|x| *x == item).count() as f64 / n;
        bits -= p * p.log2();
    }
    bits
}

/// Bits in a uniform draw from `0..n`.
fn below_entropy(n: u64) -> f64 {
    (n.max(1) as f64).log2()
}

/// A generator of `streams` streams (spread over the services) whose entries start at
/// `start_ns` and advance by about `step_ns`.
#[derive(Debug, Clone)]
pub struct LogGen {
    rng: Rng,
    streams: Vec<StreamState>,
    step_ns: i64,
    info_bits: f64,
}

impl LogGen {
    /// `streams` streams from `start_ns`, one entry per `step_ns`, seeded with `seed`.
    pub fn new(seed: u64, streams: usize, start_ns: i64, step_ns: i64) -> Self {
        let mut rng = Rng::new(seed);
        let n_streams = streams.max(1);
        let streams = (0..n_streams)
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
            info_bits: n_streams as f64 * below_entropy(1 << 20),
        }
    }

    /// The information content, in bits, of everything generated so far: the entropy of the
    /// random draws that reach the output (the pods' names, each entry's time step, trace id and
    /// the fields its line shows; draws a shape does not print are not counted). The output
    /// determines those draws, so no lossless encoding of it — any store, any codec — is
    /// smaller than this on average: the floor a size target on this data must respect.
    pub fn information_bits(&self) -> f64 {
        self.info_bits
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
                self.info_bits += below_entropy(step as u64) + 128.0 + Self::line_bits(shape);
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

    /// What `line` draws and prints of `shape`, besides the trace id (the timestamps it shows
    /// repeat the entry's own).
    fn line_bits(shape: Shape) -> f64 {
        let common = pick_entropy(&PATHS) + pick_entropy(&STATUSES) + below_entropy(2000);
        match shape {
            Shape::Nginx => {
                common + 3.0 * below_entropy(256) + pick_entropy(&METHODS) + below_entropy(50_000)
            }
            Shape::Json | Shape::Logfmt => {
                common + pick_entropy(&LEVELS) + pick_entropy(&MESSAGES) + below_entropy(100_000)
            }
        }
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

    #[test]
    fn information_content_counts_what_the_lines_show() {
        // Hand-computed: statuses 200 ×5 and five others once in ten = 0.5 + 0.5·log2 10;
        // levels info 6, debug 2, warn 1, error 1 in ten; methods GET ×2, POST, PUT.
        let status = 0.5 + 0.5 * 10f64.log2();
        let level = 0.6 * (10.0f64 / 6.0).log2() + 0.2 * 5f64.log2() + 0.2 * 10f64.log2();
        assert!((pick_entropy(&STATUSES) - status).abs() < 1e-12);
        assert!((pick_entropy(&LEVELS) - level).abs() < 1e-12);
        assert!((pick_entropy(&METHODS) - 1.5).abs() < 1e-12);

        let common = 3.0 + status + 2000f64.log2();
        let nginx = common + 24.0 + 1.5 + 50_000f64.log2();
        let app = common + level + 6f64.log2() + 100_000f64.log2();
        let per_entry_fixed = 1_000_000f64.log2() + 128.0;
        // Six streams, one per service: two nginx, four JSON/logfmt.
        let mut g = LogGen::new(1, 6, 0, 1_000_000);
        let pods = 6.0 * 20.0;
        assert!((g.information_bits() - pods).abs() < 1e-9);
        g.batch(10);
        let expected = pods + 10.0 * (6.0 * per_entry_fixed + 2.0 * nginx + 4.0 * app);
        assert!(
            (g.information_bits() - expected).abs() < 1e-6,
            "{} vs {expected}",
            g.information_bits()
        );
        // About 24 bytes of randomness an entry, its time included: ~165 bytes of line and a
        // timestamp cannot compress past ~7× whatever the codec.
        let per_line = (expected - pods) / 60.0 / 8.0;
        assert!((20.0..26.0).contains(&per_line), "{per_line}");
    }
}
