//! Which routes a process serves, from its `target` (Loki's simple-scalable roles).
//!
//! One router for every role keeps a request's behaviour identical wherever it lands; this
//! layer only refuses what the role does not own, with Loki's 404, so a load balancer that
//! routes by path (push → write, queries → read) never reaches a process that cannot answer.

use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use parquetry_model::config::{Role, Target};

/// The role that owns `path` (already stripped of any `http_path_prefix`), or `None` for
/// what every role serves (health, metrics, configuration, build info).
pub fn owner(path: &str) -> Option<Role> {
    let p = path.trim_end_matches('/');
    if p.ends_with("/ready")
        || p.ends_with("/metrics")
        || p.ends_with("/config")
        || p.ends_with("/status/buildinfo")
        || p.ends_with("/drilldown-limits")
    {
        return None;
    }
    if p.ends_with("/loki/api/v1/push")
        || p.ends_with("/api/prom/push")
        || p.ends_with("/otlp/v1/logs")
    {
        return Some(Role::Write);
    }
    if p.ends_with("/loki/api/v1/delete") || p.ends_with("/loki/api/admin/delete") {
        // Loki's compactor owns delete requests; they are stored in the bucket, so every
        // reader sees them anyway.
        return Some(Role::Backend);
    }
    // Loki's ruler is a backend component; its API reads and writes the rule store there.
    if p.contains("/loki/api/v1/rules")
        || p.ends_with("/prometheus/api/v1/rules")
        || p.ends_with("/prometheus/api/v1/alerts")
    {
        return Some(Role::Backend);
    }
    Some(Role::Read)
}

/// Answers 404 for routes this process's target does not run.
pub async fn filter(State(target): State<Target>, req: Request, next: Next) -> Response {
    match owner(req.uri().path()) {
        Some(role) if !target.runs(role) => {
            (StatusCode::NOT_FOUND, "404 page not found\n").into_response()
        }
        _ => next.run(req).await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owners() {
        assert_eq!(owner("/loki/api/v1/push"), Some(Role::Write));
        assert_eq!(owner("/prefix/loki/api/v1/push"), Some(Role::Write));
        assert_eq!(owner("/otlp/v1/logs"), Some(Role::Write));
        assert_eq!(owner("/loki/api/v1/query_range"), Some(Role::Read));
        assert_eq!(owner("/loki/api/v1/tail"), Some(Role::Read));
        assert_eq!(owner("/loki/api/v1/delete"), Some(Role::Backend));
        assert_eq!(owner("/loki/api/v1/rules/ns/g"), Some(Role::Backend));
        assert_eq!(owner("/prometheus/api/v1/alerts"), Some(Role::Backend));
        assert_eq!(owner("/ready"), None);
        assert_eq!(owner("/config"), None);
    }
}
