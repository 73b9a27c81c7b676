//! `parquetry`: the all-in-one server and command line. Start-up only: read the
//! configuration, open the store, build the router, serve until a signal.

use std::io::IsTerminal;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::Context;
use clap::{Parser, Subcommand};
use parquetry_api::{AppState, router};
use parquetry_model::Config;
use parquetry_store::compact::{NoProgress, Progress};
use parquetry_store::{CompactOptions, RetentionOptions, Store};
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
    /// Merge small pushed objects into large sorted ones (every compactor.compaction_interval,
    /// or one pass with --once).
    Compact(CompactArgs),
    /// Delete tenant-days outside their retention period (limits_config.retention_period,
    /// overrides.<tenant>.retention_period).
    Retention(RetentionArgs),
}

/// Where the configuration and the data are: shared by every subcommand.
#[derive(clap::Args, Debug)]
struct StoreArgs {
    /// YAML configuration in Loki's vocabulary. Without it, the defaults apply.
    #[arg(
        long = "config",
        alias = "config.file",
        value_name = "FILE",
        env = "PARQUETRY_CONFIG"
    )]
    config: Option<PathBuf>,
    /// Storage URL or directory; overrides storage.url.
    #[arg(long, value_name = "URL")]
    data: Option<String>,
}

#[derive(clap::Args, Debug)]
struct CompactArgs {
    #[command(flatten)]
    store: StoreArgs,
    /// One pass, then exit.
    #[arg(long)]
    once: bool,
}

#[derive(clap::Args, Debug)]
struct RetentionArgs {
    #[command(flatten)]
    store: StoreArgs,
    /// List what would be deleted, delete nothing.
    #[arg(long)]
    dry_run: bool,
}

#[derive(clap::Args, Debug)]
struct ServeArgs {
    #[command(flatten)]
    store: StoreArgs,
    /// Address to listen on; overrides server.http_listen_address/port.
    #[arg(long, value_name = "ADDR")]
    listen: Option<SocketAddr>,
    /// debug, info, warn or error; overrides server.log_level.
    #[arg(long = "log.level", value_name = "LEVEL")]
    log_level: Option<String>,
}

fn main() -> anyhow::Result<()> {
    limit_malloc_arenas();
    let cli = Cli::parse();
    match cli.command {
        Command::Serve(args) => serve(args),
        Command::Compact(args) => compact(args),
        Command::Retention(args) => retention(args),
    }
}

/// glibc gives each thread that allocates under contention its own arena, up to 8 per core,
/// and keeps what they freed: the compactor's merges on blocking threads measured 1.75 GiB
/// resident for a 161 MB heap, 328 MiB with two arenas (docs/benchmarks.md).
/// `MALLOC_ARENA_MAX` in the environment still decides.
fn limit_malloc_arenas() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    if std::env::var_os("MALLOC_ARENA_MAX").is_none() {
        // SAFETY: called first thing in `main`, before any other thread exists; mallopt only
        // changes an allocator tunable.
        unsafe {
            libc::mallopt(libc::M_ARENA_MAX, 2);
        }
    }
}

/// Configuration, logging, runtime and store for the maintenance subcommands.
fn maintenance(
    config: Option<&std::path::Path>,
    data: Option<String>,
) -> anyhow::Result<(Config, tokio::runtime::Runtime, Arc<Store>)> {
    let mut config = Config::load(config, std::env::vars())?;
    if let Some(data) = data {
        config.storage.url = Some(data);
    }
    init_logging(&config)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let url = config.storage_url();
    let store = Arc::new(
        Store::open_config(&url, &config.storage)
            .with_context(|| format!("opening storage {url}"))?,
    );
    Ok((config, runtime, store))
}

fn compact(args: CompactArgs) -> anyhow::Result<()> {
    let (config, runtime, store) = maintenance(args.store.config.as_deref(), args.store.data)?;
    let opts = CompactOptions::from_config(&config.compactor);
    let interval = config.compactor.compaction_interval.0;
    runtime.block_on(async move {
        loop {
            let progress = TerminalProgress::new();
            let result = store.compact(&opts, &progress).await;
            progress.finish();
            match result {
                Ok(summary) => tracing::info!(?summary, "compaction pass done"),
                // One pass: the exit status says it failed.
                Err(e) if args.once || interval.is_zero() => return Err(e.into()),
                // Repeating: the next pass finishes what this one left (every step is
                // idempotent).
                Err(e) => {
                    tracing::warn!(error = %e, "compaction pass failed; retrying next interval")
                }
            }
            if args.once || interval.is_zero() {
                return anyhow::Ok(());
            }
            tokio::select! {
                _ = tokio::time::sleep(interval) => {}
                _ = shutdown_signal() => return anyhow::Ok(()),
            }
        }
    })
}

fn retention(args: RetentionArgs) -> anyhow::Result<()> {
    let (config, runtime, store) = maintenance(args.store.config.as_deref(), args.store.data)?;
    let opts = RetentionOptions {
        delete_delay: config.compactor.retention_delete_delay.0,
        dry_run: args.dry_run,
    };
    runtime.block_on(async move {
        let summary = store
            .retention(|t| config.retention_period(t).0, &opts)
            .await?;
        for d in &summary.expired {
            let what = if args.dry_run {
                "would delete"
            } else if d.deleted {
                "deleted"
            } else {
                "marked, deleting after retention_delete_delay"
            };
            println!(
                "{what}\ttenant={}\tday={}\tobjects={}\tbytes={}",
                d.tenant, d.day, d.objects, d.bytes
            );
        }
        anyhow::Ok(())
    })
}

/// The compaction (and, when enabled, retention) timer of `parquetry serve`.
async fn maintenance_timer(config: Config, store: Arc<Store>) {
    let interval = config.compactor.compaction_interval.0;
    if interval.is_zero() {
        return;
    }
    let opts = CompactOptions::from_config(&config.compactor);
    let ropts = RetentionOptions {
        delete_delay: config.compactor.retention_delete_delay.0,
        dry_run: false,
    };
    loop {
        tokio::time::sleep(interval).await;
        match store.compact(&opts, &NoProgress).await {
            Ok(s) => tracing::info!(?s, "compaction pass done"),
            Err(e) => tracing::warn!(error = %e, "compaction pass failed; retrying next interval"),
        }
        if config.compactor.retention_enabled {
            match store
                .retention(|t| config.retention_period(t).0, &ropts)
                .await
            {
                Ok(s) => tracing::info!(
                    days = s.expired.len(),
                    objects = s.objects_deleted,
                    "retention pass done"
                ),
                Err(e) => {
                    tracing::warn!(error = %e, "retention pass failed; retrying next interval")
                }
            }
        }
    }
}

/// A one-line progress bar on stderr, only when stderr is a terminal.
struct TerminalProgress {
    tty: bool,
    planned: AtomicU64,
    done: AtomicU64,
}

impl TerminalProgress {
    fn new() -> Self {
        TerminalProgress {
            tty: std::io::stderr().is_terminal(),
            planned: AtomicU64::new(0),
            done: AtomicU64::new(0),
        }
    }

    fn draw(&self) {
        if !self.tty {
            return;
        }
        let (done, planned) = (
            self.done.load(Ordering::Relaxed),
            self.planned.load(Ordering::Relaxed).max(1),
        );
        let width = 30;
        let filled = ((done as f64 / planned as f64) * width as f64) as usize;
        eprint!(
            "\rcompacting [{}{}] {:.1}/{:.1} MB",
            "#".repeat(filled.min(width)),
            " ".repeat(width - filled.min(width)),
            done as f64 / 1e6,
            planned as f64 / 1e6
        );
    }

    fn finish(&self) {
        if self.tty && self.planned.load(Ordering::Relaxed) > 0 {
            eprintln!();
        }
    }
}

impl Progress for TerminalProgress {
    fn planned(&self, bytes: u64) {
        self.planned.fetch_add(bytes, Ordering::Relaxed);
        self.draw();
    }
    fn advanced(&self, bytes: u64) {
        self.done.fetch_add(bytes, Ordering::Relaxed);
        self.draw();
    }
}

fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let mut config = Config::load(args.store.config.as_deref(), std::env::vars())?;
    if let Some(data) = args.store.data {
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
        tokio::spawn(maintenance_timer(config.clone(), store.clone()));
        let state = AppState::new(config.clone(), store);
        let shutting_down = state.shutting_down.clone();
        let app = router(state);
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("listening on {addr}"))?;
        tracing::info!(%addr, storage = %url, "parquetry is ready");
        parquetry_api::serve(listener, app, &config, async move {
            shutdown_signal().await;
            // /ready answers 503 from here on, while in-flight pushes finish and become
            // durable before the process exits.
            shutting_down.store(true, Ordering::Relaxed);
            tracing::info!("shutting down");
        })
        .await;
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
