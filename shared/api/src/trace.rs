//! The request span and the slow-query log.
//!
//! Every request runs inside a `request` span carrying its method, route template, tenant,
//! and, once the response is ready, status and latency; query endpoints add the LogQL query
//! and its range (recorded by [`QueryRequest`](crate::request::QueryRequest) as it parses the
//! parameters, so GET and form POST alike). The query stages (`plan`, `scan`, `pipeline`,
//! `eval`, `encode`, see [`parquetry_query::trace`]) are its children.
//!
//! A query that takes longer than `frontend.log_queries_longer_than` (Loki's key and
//! convention: `0` off, negative every query) is logged as one line at info level with the
//! query, tenant, range, status, duration and the time spent in each stage.

use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::Response;
use parquetry_model::duration::format_go;
use parquetry_query::trace::{Stage, StageTimings};
use tracing::Instrument;
use tracing::field::Empty;

use crate::AppState;
use crate::params::{Params, default_step, now_ns, parse_step, parse_timestamp, time_range};

/// What one request's log lines need beyond its span: the query it ran and its stage times.
struct RequestTrace {
    /// The route answers instant queries (`time`, not `start`/`end`).
    instant: bool,
    timings: Arc<StageTimings>,
    query: OnceLock<QueryNote>,
}

/// A query as the request asked for it, times in ns.
struct QueryNote {
    query: String,
    start: i64,
    end: i64,
    /// Range queries only.
    step: Option<i64>,
}

tokio::task_local! {
    static REQUEST: Arc<RequestTrace>;
}

/// Middleware: the `request` span around everything the request does, and the slow-query
/// line after it.
pub async fn trace_requests(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "other".into());
    // The tenant as the handler will resolve it; an invalid one is the handler's error to
    // report, the span just stays without it.
    let tenant = crate::request::tenant(&state, req.headers()).unwrap_or_default();
    let method = req.method().clone();
    let span = tracing::info_span!(
        "request",
        %method,
        route = %route,
        tenant = %tenant,
        query = Empty,
        start = Empty,
        end = Empty,
        step = Empty,
        status = Empty,
        latency = Empty,
    );
    let trace = Arc::new(RequestTrace {
        instant: route.ends_with("/query"),
        timings: Arc::default(),
        query: OnceLock::new(),
    });
    let started = Instant::now();
    let resp = REQUEST
        .scope(trace.clone(), trace.timings.clone().scope(next.run(req)))
        .instrument(span.clone())
        .await;
    let elapsed = started.elapsed();
    let status = resp.status().as_u16();
    span.record("status", status);
    span.record("latency", tracing::field::debug(elapsed));
    if let Some(q) = trace.query.get()
        && is_query_route(&route)
        && state
            .config
            .frontend
            .log_queries_longer_than
            .is_slow(elapsed)
    {
        log_slow_query(&route, &tenant, status, elapsed, q, &trace.timings);
    }
    resp
}

/// Routes that read logs. The delete API also takes a `query` (the selector of what to
/// delete) but is not a query; Loki serves it from the compactor, not the query frontend.
fn is_query_route(route: &str) -> bool {
    !route.ends_with("/delete")
}

fn log_slow_query(
    route: &str,
    tenant: &str,
    status: u16,
    elapsed: Duration,
    q: &QueryNote,
    timings: &StageTimings,
) {
    let stage = |s: Stage| tracing::field::debug(timings.get(s));
    tracing::info!(
        path = %route,
        tenant = %tenant,
        query = q.query.as_str(),
        start = %rfc3339(q.start),
        end = %rfc3339(q.end),
        length = %format_go(q.end.saturating_sub(q.start)),
        step = %q.step.map(format_go).unwrap_or_default(),
        status,
        duration = ?elapsed,
        plan = stage(Stage::Plan),
        scan = stage(Stage::Scan),
        pipeline = stage(Stage::Pipeline),
        eval = stage(Stage::Eval),
        encode = stage(Stage::Encode),
        "slow query detected"
    );
}

fn rfc3339(ns: i64) -> String {
    chrono::DateTime::from_timestamp_nanos(ns).to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)
}

/// Called once the request's parameters are parsed: puts the query and its range on the
/// request span and keeps them for the slow-query line. Parameters the handler will refuse
/// are left out; the handler reports them.
pub(crate) fn note_query(params: &Params) {
    let Some(query) = params.get("query") else {
        return;
    };
    let Ok(trace) = REQUEST.try_with(Arc::clone) else {
        return;
    };
    let now = now_ns();
    let (start, end, step) = if trace.instant {
        let t = params
            .get("time")
            .and_then(|t| parse_timestamp(t).ok())
            .unwrap_or(now);
        (t, t, None)
    } else {
        let Ok((start, end)) = time_range(params, now) else {
            return;
        };
        let step = match params.get("step") {
            Some(s) => parse_step(s).ok(),
            None => Some(default_step(start, end)),
        };
        (start, end, step)
    };
    let span = tracing::Span::current();
    span.record("query", query);
    span.record("start", tracing::field::display(rfc3339(start)));
    span.record("end", tracing::field::display(rfc3339(end)));
    if let Some(step) = step {
        span.record("step", tracing::field::display(format_go(step)));
    }
    let _ = trace.query.set(QueryNote {
        query: query.to_string(),
        start,
        end,
        step,
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_read_as_utc() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_500_000_000), "1970-01-01T00:00:01.500Z");
    }

    #[test]
    fn deletes_are_not_queries() {
        assert!(!is_query_route("/loki/api/v1/delete"));
        assert!(is_query_route("/loki/api/v1/query_range"));
        assert!(is_query_route("/prefix/loki/api/v1/query"));
    }
}
