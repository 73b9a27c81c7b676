//! The Loki HTTP API as one axum [`Router`], whatever hosts it: the all-in-one server serves
//! all of it, and a Lambda function can serve the part it owns. A request behaves the same
//! wherever it lands.
//!
//! One module per endpoint group, each with its parameter parsing, execution and encoding side
//! by side: [`push`], [`query`] (log and metric queries), [`metadata`] (labels, series,
//! index stats), [`status`] (ready, build info, metrics). Errors map to Loki's status codes and
//! text bodies in [`error`] only.

pub mod error;
pub mod json;
pub mod metadata;
pub mod metrics;
pub mod params;
pub mod push;
pub mod query;
pub mod request;
pub mod serve;
pub mod status;

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
    pub config: Arc<Config>,
    pub store: Arc<Store>,
    pub engine: QueryEngine,
    pub metrics: Arc<metrics::Metrics>,
    /// Set once the server is shutting down, so `/ready` turns 503 first.
    pub shutting_down: Arc<std::sync::atomic::AtomicBool>,
}

impl AppState {
    pub fn new(config: Config, store: Arc<Store>) -> AppState {
        let engine = QueryEngine::with_memory_limit(store.clone(), config.query_range.max_memory.0);
        AppState {
            config: Arc::new(config),
            engine,
            store,
            metrics: Arc::new(metrics::Metrics::new()),
            shutting_down: Default::default(),
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
    app.layer(axum::middleware::from_fn_with_state(
        state,
        metrics::track_requests,
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
        .route(&format!("{v1}/status/buildinfo"), get(status::buildinfo))
        .route("/ready", get(status::ready))
        .route("/metrics", get(status::metrics))
        .with_state(state)
}
