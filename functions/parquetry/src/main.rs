//! `parquetry`: the all-in-one server and command line. Start-up only: read the
//! configuration, open the store, build the router, serve until a signal.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use anyhow::Context;
use clap::{Parser, Subcommand};
use parquetry_api::{AppState, router};
use parquetry_model::Config;
use parquetry_store::Store;
use tracing_subscriber::EnvFilter;

#[derive(Parser, Debug)]
#[command(
    name = "parquetry",
    version,
    about = "A Loki-compatible log store on Parquet and object storage"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Serve the whole Loki HTTP API (push and query) in one process.
    Serve(ServeArgs),
}

#[derive(clap::Args, Debug)]
struct ServeArgs {
    /// YAML configuration in Loki's vocabulary. Without it, the defaults apply.
    #[arg(
        long = "config",
        alias = "config.file",
        value_name = "FILE",
        env = "PARQUETRY_CONFIG"
    )]
    config: Option<PathBuf>,
    /// Address to listen on; overrides server.http_listen_address/port.
    #[arg(long, value_name = "ADDR")]
    listen: Option<SocketAddr>,
    /// Storage URL or directory; overrides storage.url.
    #[arg(long, value_name = "URL")]
    data: Option<String>,
    /// debug, info, warn or error; overrides server.log_level.
    #[arg(long = "log.level", value_name = "LEVEL")]
    log_level: Option<String>,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve(args) => serve(args),
    }
}

fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let mut config = Config::load(args.config.as_deref(), std::env::vars())?;
    if let Some(data) = args.data {
        config.storage.url = Some(data);
    }
    if let Some(level) = args.log_level {
        config.server.log_level = level;
    }
    init_logging(&config)?;
    let addr: SocketAddr = match args.listen {
        Some(a) => a,
        None => format!(
            "{}:{}",
            config.server.http_listen_address, config.server.http_listen_port
        )
        .parse()
        .context("server.http_listen_address / http_listen_port")?,
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let url = config.storage_url();
        let store = Arc::new(
            Store::open_config(&url, &config.storage)
                .with_context(|| format!("opening storage {url}"))?,
        );
        let state = AppState::new(config, store);
        let shutting_down = state.shutting_down.clone();
        let app = router(state);
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("listening on {addr}"))?;
        tracing::info!(%addr, storage = %url, "parquetry is ready");
        axum::serve(listener, app)
            .with_graceful_shutdown(async move {
                shutdown_signal().await;
                // /ready answers 503 from here on, while in-flight pushes finish and become
                // durable before the process exits.
                shutting_down.store(true, Ordering::Relaxed);
                tracing::info!("shutting down");
            })
            .await?;
        anyhow::Ok(())
    })
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
}

fn init_logging(config: &Config) -> anyhow::Result<()> {
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| {
            EnvFilter::try_new(format!(
                "{},hyper=warn,datafusion=warn",
                config.server.log_level
            ))
        })
        .context("server.log_level")?;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if config.server.log_format == "json" {
        builder.json().init();
    } else {
        builder.init();
    }
    Ok(())
}
