//! Prometheus metrics of the API: requests by route and status, latency, ingest volume.

use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::Response;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::AppState;

/// Labels of the request counter.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteLabels {
    /// The matched route.
    pub route: String,
    /// The HTTP method.
    pub method: String,
    /// The response status.
    pub status_code: String,
}

/// Labels of the request duration histogram.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteOnly {
    /// The matched route.
    pub route: String,
}

/// Labels of the invalid UTF-8 counter.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct FieldKind {
    /// What held the invalid bytes (line, label, metadata).
    pub kind: &'static str,
}

/// The process's own Prometheus metrics, served on `/metrics`.
pub struct Metrics {
    registry: Registry,
    requests: Family<RouteLabels, Counter>,
    duration: Family<RouteOnly, Histogram>,
    ingested_entries: Counter,
    ingested_bytes: Counter,
    stored_bytes: Counter,
    invalid_utf8: Family<FieldKind, Counter>,
    sanitized_metadata: Counter,
    unreadable_objects: Counter,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Every metric at zero.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("parquetry");
        let requests = Family::<RouteLabels, Counter>::default();
        let duration = Family::<RouteOnly, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.001, 2.0, 16))
        });
        let ingested_entries = Counter::default();
        let ingested_bytes = Counter::default();
        let stored_bytes = Counter::default();
        let invalid_utf8 = Family::<FieldKind, Counter>::default();
        let sanitized_metadata = Counter::default();
        let unreadable_objects = Counter::default();
        registry.register(
            "store_unreadable_objects",
            "Times a read or a compaction left out a stored object that cannot be decoded \
             (a torn or foreign file); the log names each object",
            unreadable_objects.clone(),
        );
        registry.register(
            "push_invalid_utf8_fields",
            "Pushed labels, lines and structured metadata that were not UTF-8: labels are \
             refused, the rest stored with U+FFFD for each invalid byte, as Loki answers them",
            invalid_utf8.clone(),
        );
        registry.register(
            "push_structured_metadata_sanitized",
            "Structured metadata values whose U+FFFD characters became spaces, as in Loki",
            sanitized_metadata.clone(),
        );
        registry.register(
            "request",
            "HTTP requests by route and status",
            requests.clone(),
        );
        registry.register(
            "request_duration_seconds",
            "HTTP request latency by route",
            duration.clone(),
        );
        registry.register(
            "distributor_lines_received",
            "Log entries accepted and stored",
            ingested_entries.clone(),
        );
        registry.register(
            "distributor_bytes_received",
            "Log line bytes accepted and stored",
            ingested_bytes.clone(),
        );
        registry.register(
            "store_bytes_written",
            "Bytes of Parquet objects written",
            stored_bytes.clone(),
        );
        Metrics {
            registry,
            requests,
            duration,
            ingested_entries,
            ingested_bytes,
            stored_bytes,
            invalid_utf8,
            sanitized_metadata,
            unreadable_objects,
        }
    }

    /// Counts what a push's decoding repaired (see `parquetry_ingest::InvalidUtf8`).
    pub fn record_repairs(&self, invalid: &parquetry_ingest::InvalidUtf8, sanitized: usize) {
        for (kind, n) in [
            ("labels", invalid.labels),
            ("lines", invalid.lines),
            ("structured_metadata", invalid.structured_metadata),
        ] {
            if n > 0 {
                self.invalid_utf8
                    .get_or_create(&FieldKind { kind })
                    .inc_by(n as u64);
            }
        }
        self.sanitized_metadata.inc_by(sanitized as u64);
    }

    /// Counts a stored push: entries, line bytes received and bytes written.
    pub fn record_ingest(&self, entries: u64, line_bytes: u64, stored: u64) {
        self.ingested_entries.inc_by(entries);
        self.ingested_bytes.inc_by(line_bytes);
        self.stored_bytes.inc_by(stored);
    }

    /// The metrics in Prometheus's text format.
    pub fn encode(&self) -> String {
        // The store counts in a process-wide atomic (it knows no registry); a maximum, not an
        // addition, so two scrapes at once cannot count twice.
        self.unreadable_objects.inner().fetch_max(
            parquetry_store::unreadable_objects_seen(),
            std::sync::atomic::Ordering::Relaxed,
        );
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }
}

/// Middleware: counts and times every request by its route template (never the raw path, so
/// label values stay bounded).
pub async fn track_requests(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "other".into());
    let method = req.method().to_string();
    let started = Instant::now();
    let resp = next.run(req).await;
    state
        .metrics
        .duration
        .get_or_create(&RouteOnly {
            route: route.clone(),
        })
        .observe(started.elapsed().as_secs_f64());
    state
        .metrics
        .requests
        .get_or_create(&RouteLabels {
            route,
            method,
            status_code: resp.status().as_u16().to_string(),
        })
        .inc();
    resp
}
