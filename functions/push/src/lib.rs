//! What the push and query Lambda functions share: the host wiring around the library router.
//! Start-up (configuration from the environment, JSON logs on stdout, the store, the host's own
//! settings) comes from `parquetry_host`; everything with logic lives in the library crates.
//! This crate only puts the router behind `lambda_http` and adds what only a public Lambda URL
//! needs:
//!
//! * [`Role`]: each function answers only the routes it is deployed for, so a mis-routed
//!   request gets a clear 404 instead of being served by the wrong function.
//! * [`auth`]: an optional shared secret (bearer token or basic-auth password) for the public
//!   URL, from the `PARQUETRY_AUTH_TOKEN` environment variable.
//! * [`response`]: Lambda's 6 MiB synchronous response limit answered with a clear 413 instead of
//!   a failed invocation, and gzip for query responses when the client accepts it.
//! * [`leaf`] and [`invoke`]: the query function as a fan-out leaf (a leaf-task payload
//!   instead of an HTTP event) and as the root that invokes its leaves.
// Non-test code never panics on a `Result` or `Option`: errors are typed and returned.
#![cfg_attr(not(test), warn(clippy::unwrap_used, clippy::expect_used))]

pub mod auth;
pub mod invoke;
pub mod leaf;
pub mod response;

use axum::Router;
use axum::extract::Request;
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use parquetry_api::{AppState, router};
use parquetry_host::LogOutput;
use parquetry_model::Config;

pub use parquetry_host::config::CONFIG_FILE_ENV;
pub use parquetry_host::lambda::{HostSettings, Role};
pub use response::{LAMBDA_MAX_RESPONSE_BYTES, LambdaHandler};

/// The configuration: `PARQUETRY_CONFIG` (optional file) plus `PARQUETRY__…` overrides; storage
/// must be named (see [`parquetry_host::load_lambda_config`]).
pub fn load_config(env: Vec<(String, String)>) -> anyhow::Result<Config> {
    Ok(parquetry_host::load_lambda_config(env)?)
}

/// The library router for `role`, over the store the configuration names, with the host layers.
pub fn app(config: Config, settings: &HostSettings) -> anyhow::Result<Router> {
    let store = parquetry_host::open_store(&config)?;
    Ok(wrap(router(AppState::new(config, store)), settings))
}

/// The handler of every invocation the function gets: HTTP events for the router and, in the
/// query function, fan-out leaf tasks; with `query_range.fanout_transport: lambda`, a split
/// query's leaves are invocations of the function `env` names ([`invoke::LambdaTransport`]).
pub fn handler(
    config: Config,
    settings: &HostSettings,
    env: Vec<(String, String)>,
) -> anyhow::Result<leaf::FunctionHandler> {
    let store = parquetry_host::open_store(&config)?;
    let mut state = AppState::new(config.clone(), store);
    let qr = &config.query_range;
    if settings.role == Role::Query
        && qr.fanout_transport == parquetry_model::config::FanoutTransport::Lambda
    {
        let transport = invoke::LambdaTransport::from_env(&qr.fanout_lambda_function, env)?;
        tracing::info!(
            url = transport.url(),
            "fan-out leaves run as Lambda invocations"
        );
        let fanout = parquetry_query::fanout::FanoutSettings {
            transport: Some(std::sync::Arc::new(transport)),
            ..parquetry_query::fanout::FanoutSettings::from_config(qr)
        };
        state.engine = state.engine.with_fanout(fanout);
    }
    let engine = state.engine.clone();
    let http = LambdaHandler::new(wrap(router(state), settings), settings.max_response_bytes);
    Ok(leaf::FunctionHandler::new(
        http,
        engine,
        settings.max_response_bytes,
        settings.role == Role::Query,
    ))
}

/// Adds the host layers to a router: role filter inside, shared-secret check outside, gzip for
/// query responses.
pub fn wrap(app: Router, settings: &HostSettings) -> Router {
    let role = settings.role;
    let mut app = app.layer(axum::middleware::from_fn(
        move |req: Request, next: Next| serve_role(role, req, next),
    ));
    if role == Role::Query {
        // Grafana and logcli send Accept-Encoding: gzip; compressed responses stretch Lambda's
        // response limit roughly tenfold for log queries.
        app = app.layer(tower_http::compression::CompressionLayer::new());
    }
    if !settings.auth_tokens.is_empty() {
        app = auth::protect(app, settings.auth_tokens.clone());
    }
    app
}

fn is_tail_path(path: &str) -> bool {
    path.ends_with("/loki/api/v1/tail") || path.ends_with("/api/prom/tail")
}

/// API Gateway's HTTP APIs and function URLs cannot upgrade a request to a WebSocket, so a
/// live tail is refused with what to use instead, rather than failing as a bad handshake.
fn tail_unavailable() -> Response {
    plain_text(
        StatusCode::BAD_REQUEST,
        "live tail (/loki/api/v1/tail) needs a WebSocket, which the Lambda query function \
         cannot serve: poll /loki/api/v1/query_range instead (logcli query without --tail, \
         Grafana without Live), or run parquetry serve for live tailing\n"
            .into(),
    )
}

/// A host-level refusal: plain text, as clients print it.
pub(crate) fn plain_text(status: StatusCode, message: String) -> Response {
    let mut resp = (status, message).into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    resp
}

fn is_push_path(path: &str) -> bool {
    path.ends_with("/loki/api/v1/push")
        || path.ends_with("/api/prom/push")
        || path.ends_with("/otlp/v1/logs")
}

async fn serve_role(role: Role, req: Request, next: Next) -> Response {
    let path = req.uri().path();
    let allowed = match role {
        Role::Push => is_push_path(path) || path.ends_with("/ready"),
        Role::Query => !is_push_path(path),
    };
    if role == Role::Query && is_tail_path(path) {
        return tail_unavailable();
    }
    if allowed {
        return next.run(req).await;
    }
    let other = match role {
        Role::Push => "query",
        Role::Query => "push",
    };
    plain_text(
        StatusCode::NOT_FOUND,
        format!(
            "{path} is not served by the {} function; route it to the {other} function\n",
            role.name()
        ),
    )
}

/// `lambda_http` puts a REST API's stage name in front of the path (`/prod/loki/api/v1/...`)
/// unless this is set; Loki's paths never contain it.
pub const IGNORE_STAGE_ENV: &str = "AWS_LAMBDA_HTTP_IGNORE_STAGE_IN_PATH";

/// Process set-up that must happen before any other thread exists.
pub fn prepare_process() {
    if std::env::var_os(IGNORE_STAGE_ENV).is_none() {
        // SAFETY: called first thing in `main`, before the Tokio runtime or any other thread
        // exists, so nothing can read the environment concurrently.
        unsafe { std::env::set_var(IGNORE_STAGE_ENV, "true") };
    }
}

/// `main` of either function: process set-up, the runtime, then [`run`].
pub fn start(role: Role) -> anyhow::Result<()> {
    prepare_process();
    parquetry_host::runtime()?.block_on(run(role))
}

/// Start-up of either function: configuration, logging, store, router, then the runtime loop.
pub async fn run(role: Role) -> anyhow::Result<()> {
    let env: Vec<(String, String)> = std::env::vars().collect();
    let config = parquetry_host::load_lambda_config(env.clone())?;
    parquetry_host::init_logging(&config, LogOutput::Lambda)?;
    let settings = HostSettings::from_env(role, env.clone())?;
    let storage = config.storage_url();
    let auth_enabled = config.auth_enabled;
    let handler = handler(config, &settings, env)?;
    tracing::info!(
        function = role.name(),
        %storage,
        auth_enabled,
        shared_secret = !settings.auth_tokens.is_empty(),
        "parquetry lambda is ready"
    );
    lambda_http::lambda_runtime::run(handler)
        .await
        .map_err(|e| anyhow::anyhow!("lambda runtime: {e}"))
}
