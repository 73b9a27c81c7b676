//! The Loki HTTP API as one axum [`Router`], whatever hosts it: the all-in-one server serves
//! all of it, and a Lambda function can serve the part it owns. A request behaves the same
//! wherever it lands.
//!
//! One module per endpoint group, each with its parameter parsing, execution and encoding side
//! by side: [`push`], [`query`] (log and metric queries), [`metadata`] (labels, series,
//! index stats), [`status`] (ready, build info, metrics). Errors map to Loki's status codes and
//! text bodies in [`error`] only.
// Non-test code never panics on a `Result` or `Option`: errors are typed and returned.
#![cfg_attr(not(test), warn(clippy::unwrap_used, clippy::expect_used))]

pub mod deletes;
pub mod detected;
pub mod error;
pub mod json;
pub mod metadata;
pub mod metrics;
pub mod otlp;
pub mod params;
pub mod patterns;
pub mod peers;
pub mod push;
pub mod query;
pub mod request;
pub mod roles;
pub mod rules;
pub mod serve;
pub mod status;
pub mod tail;
pub mod trace;

use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};
use parquetry_model::Config;
use parquetry_query::QueryEngine;
use parquetry_store::Store;

pub use error::{ApiError, ApiResult};
pub use serve::serve;

/// Shared by every request.
#[derive(Clone)]
pub struct AppState {
    /// The configuration the process started with.
    pub config: Arc<Config>,
    /// The log store.
    pub store: Arc<Store>,
    /// The query engine over the store.
    pub engine: QueryEngine,
    /// The process's Prometheus metrics.
    pub metrics: Arc<metrics::Metrics>,
    /// Set once the server is shutting down, so `/ready` turns 503 first.
    pub shutting_down: Arc<std::sync::atomic::AtomicBool>,
    /// Live tails of this process; pushes are handed to them once durable.
    pub tail_hub: Arc<tail::TailHub>,
}

impl AppState {
    /// The state of a server over `store`.
    pub fn new(config: Config, store: Arc<Store>) -> AppState {
        let engine = peers::with_peers(
            QueryEngine::configured(store.clone(), &config.query_range),
            &config,
        );
        AppState {
            config: Arc::new(config),
            engine,
            store,
            metrics: Arc::new(metrics::Metrics::new()),
            shutting_down: Default::default(),
            tail_hub: Default::default(),
        }
    }
}

/// The whole API. Served at `/` and, when `server.http_path_prefix` is set, under it too.
pub fn router(state: AppState) -> Router {
    let api = api_routes(state.clone());
    let prefix = state
        .config
        .server
        .http_path_prefix
        .trim_end_matches('/')
        .to_string();
    let app = if prefix.is_empty() || prefix == "/" {
        api
    } else {
        let p = if prefix.starts_with('/') {
            prefix
        } else {
            format!("/{prefix}")
        };
        api.clone().nest(&p, api)
    };
    let target = state.config.target.clone();
    app.layer(axum::middleware::from_fn_with_state(target, roles::filter))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            metrics::track_requests,
        ))
        .layer(axum::middleware::from_fn_with_state(
            state,
            trace::trace_requests,
        ))
}

fn api_routes(state: AppState) -> Router {
    let v1 = "/loki/api/v1";
    let push_limit = state.config.distributor.max_recv_msg_size.0 as usize;
    Router::new()
        .route(
            &format!("{v1}/push"),
            post(push::push_v1).layer(DefaultBodyLimit::max(push_limit.saturating_add(1))),
        )
        .route(
            "/api/prom/push",
            post(push::push_legacy).layer(DefaultBodyLimit::max(push_limit.saturating_add(1))),
        )
        .route(
            "/otlp/v1/logs",
            post(otlp::logs).layer(DefaultBodyLimit::max(push_limit.saturating_add(1))),
        )
        .route(
            &format!("{v1}/query_range"),
            get(query::query_range).post(query::query_range),
        )
        .route(
            &format!("{v1}/query"),
            get(query::query_instant).post(query::query_instant),
        )
        .route(
            &format!("{v1}/format_query"),
            get(query::format_query).post(query::format_query),
        )
        .route(
            &format!("{v1}/labels"),
            get(metadata::labels).post(metadata::labels),
        )
        .route(
            &format!("{v1}/label"),
            get(metadata::labels).post(metadata::labels),
        )
        .route(
            &format!("{v1}/label/{{name}}/values"),
            get(metadata::label_values).post(metadata::label_values),
        )
        .route(
            &format!("{v1}/series"),
            get(metadata::series).post(metadata::series),
        )
        .route(
            &format!("{v1}/index/stats"),
            get(metadata::index_stats).post(metadata::index_stats),
        )
        .route(
            &format!("{v1}/index/volume"),
            get(metadata::volume).post(metadata::volume),
        )
        .route(
            &format!("{v1}/index/volume_range"),
            get(metadata::volume_range).post(metadata::volume_range),
        )
        .route(
            &format!("{v1}/tail"),
            get(tail::tail_v1).post(tail::tail_v1),
        )
        .route(
            "/api/prom/tail",
            get(tail::tail_legacy).post(tail::tail_legacy),
        )
        .route(
            &format!("{v1}/delete"),
            get(deletes::list)
                .post(deletes::create)
                .put(deletes::create)
                .delete(deletes::cancel),
        )
        .route(
            &format!("{v1}/detected_fields"),
            get(detected::detected_fields).post(detected::detected_fields),
        )
        .route(
            &format!("{v1}/detected_field/{{name}}/values"),
            get(detected::detected_field_values).post(detected::detected_field_values),
        )
        .route(
            &format!("{v1}/detected_labels"),
            get(detected::detected_labels).post(detected::detected_labels),
        )
        .route(
            &format!("{v1}/drilldown-limits"),
            get(detected::drilldown_limits),
        )
        .route(
            &format!("{v1}/patterns"),
            get(patterns::patterns).post(patterns::patterns),
        )
        .route(peers::LEAF_PATH, post(peers::leaf))
        .route(&format!("{v1}/rules"), get(rules::list_all))
        .route(
            &format!("{v1}/rules/{{namespace}}"),
            get(rules::list_namespace)
                .post(rules::create_group)
                .delete(rules::delete_namespace),
        )
        .route(
            &format!("{v1}/rules/{{namespace}}/{{group}}"),
            get(rules::get_group).delete(rules::delete_group),
        )
        .route("/prometheus/api/v1/rules", get(rules::prometheus_rules))
        .route("/prometheus/api/v1/alerts", get(rules::prometheus_alerts))
        .route(&format!("{v1}/status/buildinfo"), get(status::buildinfo))
        .route("/ready", get(status::ready))
        .route("/config", get(status::config))
        .route("/metrics", get(status::metrics))
        .with_state(state)
}
