//! `parquetry`: the all-in-one server and command line. Start-up only: read the
//! configuration, open the store, build the router, serve until a signal. Configuration
//! loading, logging, store opening and the maintenance pass come from `parquetry_host`.

mod alloc;

use std::io::IsTerminal;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::Context;
use clap::{Parser, Subcommand};
use parquetry_api::{AppState, router};
use parquetry_host::{FailOn, Lease, Leased, LogOutput, Maintenance, init_logging};
use parquetry_model::Config;
use parquetry_model::config::Role;
use parquetry_store::compact::{NoProgress, Progress};
use parquetry_store::{DeletePassOptions, RetentionOptions, Store, TenantPolicy};

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
    /// Exit 0 when a server answers `/ready` with 200: a container health check for images
    /// without a shell or curl.
    Healthcheck(HealthcheckArgs),
}

#[derive(clap::Args, Debug)]
struct HealthcheckArgs {
    /// The server to ask.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:3100")]
    addr: SocketAddr,
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
    /// Replace `${VAR}` and `${VAR:-default}` in the file from the environment (Loki's
    /// `-config.expand-env`).
    #[arg(long = "config.expand-env", num_args = 0..=1, default_missing_value = "true", default_value = "false", value_name = "BOOL")]
    expand_env: bool,
}

impl StoreArgs {
    /// The configuration these arguments name, with `--data` applied.
    fn load(&self) -> anyhow::Result<Config> {
        let env: Vec<(String, String)> = std::env::vars().collect();
        let mut config = parquetry_host::load_config(self.config.as_deref(), self.expand_env, env)?;
        if let Some(data) = &self.data {
            config.storage.url = Some(data.clone());
        }
        Ok(config)
    }
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
    /// Roles to run: all, or a comma list of write, read, backend (Loki's `-target`,
    /// component names accepted). Overrides `target`.
    #[arg(long, value_name = "TARGETS")]
    target: Option<String>,
    /// Check the configuration, print what it turned into, and exit (Loki's
    /// `-verify-config`).
    #[arg(long = "verify-config", num_args = 0..=1, default_missing_value = "true", default_value = "false", value_name = "BOOL")]
    verify_config: bool,
    /// Loki's `-server.http-listen-port`; overrides server.http_listen_port.
    #[arg(long = "server.http-listen-port", value_name = "PORT")]
    http_listen_port: Option<u16>,
    /// Loki's `-server.http-listen-address`; overrides server.http_listen_address.
    #[arg(long = "server.http-listen-address", value_name = "ADDR")]
    http_listen_address: Option<String>,
    /// Loki's `-auth.enabled`; overrides auth_enabled.
    #[arg(long = "auth.enabled", num_args = 0..=1, default_missing_value = "true", value_name = "BOOL")]
    auth_enabled: Option<bool>,
    /// Loki's `-log.format` (`logfmt` or `json`); overrides server.log_format.
    #[arg(long = "log.format", value_name = "FORMAT")]
    log_format: Option<String>,
    /// Print the effective configuration to stderr at start-up (Loki's
    /// `-print-config-stderr`).
    #[arg(long = "print-config-stderr", num_args = 0..=1, default_missing_value = "true", default_value = "false", value_name = "BOOL")]
    print_config_stderr: bool,
}

/// mimalloc instead of glibc's malloc: glibc keeps what threads free in per-thread arenas, which
/// held a compaction pass at several times its heap (docs/benchmarks.md, "Compaction").
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse_from(loki_flags(std::env::args_os()));
    // Only the server has pushes to serve between its memory-bound work.
    alloc::return_freed_memory(!matches!(cli.command, Command::Serve(_)));
    match cli.command {
        Command::Serve(args) => serve(args),
        Command::Compact(args) => compact(args),
        Command::Retention(args) => retention(args),
        Command::Healthcheck(args) => healthcheck(args),
    }
}

/// Accepts Loki's command line as it is written in unit files and manifests:
/// single-dash flags (`-config.file=/etc/loki/config.yaml -target=read`) become clap's
/// double-dash ones, and a command line that starts with a flag runs `serve`, as `loki` does.
fn loki_flags(args: impl IntoIterator<Item = std::ffi::OsString>) -> Vec<std::ffi::OsString> {
    let mut args: Vec<std::ffi::OsString> = args.into_iter().collect();
    for a in args.iter_mut().skip(1) {
        let Some(s) = a.to_str() else { continue };
        // `-x` short flags stay; `-name...` with a letter after the dash is Loki's spelling.
        if s.len() > 2 && s.starts_with('-') && s.as_bytes()[1].is_ascii_alphabetic() {
            *a = format!("-{s}").into();
        }
    }
    if let Some(first) = args.get(1).and_then(|a| a.to_str())
        && first.starts_with("--")
        && !matches!(first, "--help" | "--version")
    {
        args.insert(1, "serve".into());
    }
    args
}

fn healthcheck(args: HealthcheckArgs) -> anyhow::Result<()> {
    use std::io::{Read, Write};
    let timeout = std::time::Duration::from_secs(3);
    let mut conn = std::net::TcpStream::connect_timeout(&args.addr, timeout)
        .with_context(|| format!("connecting to {}", args.addr))?;
    conn.set_read_timeout(Some(timeout))?;
    conn.set_write_timeout(Some(timeout))?;
    conn.write_all(b"GET /ready HTTP/1.0\r\nHost: localhost\r\n\r\n")?;
    let mut head = [0u8; 12];
    conn.read_exact(&mut head)?;
    // "HTTP/1.x 200"
    if &head[9..12] != b"200" {
        anyhow::bail!("not ready: {}", String::from_utf8_lossy(&head));
    }
    Ok(())
}

/// Configuration, logging, runtime and store for the maintenance subcommands.
fn maintenance(args: &StoreArgs) -> anyhow::Result<(Config, tokio::runtime::Runtime, Arc<Store>)> {
    let config = args.load()?;
    init_logging(&config, LogOutput::Cli)?;
    report_loki_keys(&config);
    let runtime = parquetry_host::runtime()?;
    let store = parquetry_host::open_store(&config)?;
    Ok((config, runtime, store))
}

fn compact(args: CompactArgs) -> anyhow::Result<()> {
    let (config, runtime, store) = maintenance(&args.store)?;
    let interval = config.compactor.compaction_interval.0;
    let once = args.once || interval.is_zero();
    // Retention is `parquetry retention`'s to run, whatever `retention_enabled` says.
    let pass = Maintenance::new(Arc::new(config), store).without_retention();
    runtime.block_on(async move {
        loop {
            let progress = TerminalProgress::new();
            let report = pass.run(&progress).await;
            progress.finish();
            match report.into_result(FailOn::AnyStep) {
                Ok(_) => {}
                // One pass: the exit status says it failed.
                Err(e) if once => return Err(e.into()),
                // Repeating: the next pass finishes what this one left (every step is
                // idempotent).
                Err(e) => {
                    tracing::warn!(error = %e, "maintenance pass failed; retrying next interval")
                }
            }
            if once {
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
    let (config, runtime, store) = maintenance(&args.store)?;
    let opts = RetentionOptions {
        delete_delay: config.compactor.retention_delete_delay.0,
        dry_run: args.dry_run,
    };
    runtime.block_on(async move {
        let summary = store
            .retention(|t| config.retention_period(t).0, &opts)
            .await?;
        // Per-stream retention: what each `retention_stream` rule removes (or would).
        let dopts = DeletePassOptions {
            dry_run: args.dry_run,
            ..DeletePassOptions::from_config(&config.compactor)
        };
        let rules = store
            .apply_deletes(&dopts, |t| TenantPolicy {
                physical_deletes: false,
                stream_rules: TenantPolicy::stream_rules(&config, t),
            })
            .await?;
        for r in &rules.rules {
            let what = if args.dry_run {
                "would remove"
            } else {
                "removed"
            };
            println!(
                "{what}	tenant={}	retention_stream={}	period={}s	streams={}	entries={}	bytes={}",
                r.tenant,
                r.selector,
                r.period.as_secs(),
                r.streams,
                r.entries,
                r.bytes
            );
        }
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

/// The maintenance timer of `parquetry serve`: compaction, deletes and, when enabled,
/// retention, every `compaction_interval`.
async fn maintenance_timer(pass: Maintenance) {
    let interval = pass.config().compactor.compaction_interval.0;
    if interval.is_zero() {
        return;
    }
    // Several processes may run this timer over one bucket (backend replicas in a rolling
    // upgrade, a second server): the lease keeps them from repeating each other's work.
    let lease = Lease::for_timer(interval);
    loop {
        tokio::time::sleep(interval).await;
        // Failed steps are logged by the pass; the next tick finishes what this one left.
        let _bounded = alloc::BoundedMemory::enter();
        if let Leased::Skipped { holder } = pass.run_leased(&lease, &NoProgress).await {
            tracing::debug!(%holder, "another process holds the compactor lease; skipping this pass");
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
    let mut config = args.store.load()?;
    if let Some(level) = args.log_level {
        config.server.log_level = level;
    }
    if let Some(port) = args.http_listen_port {
        config.server.http_listen_port = port;
    }
    if let Some(addr) = args.http_listen_address {
        config.server.http_listen_address = addr;
    }
    if let Some(on) = args.auth_enabled {
        config.auth_enabled = on;
    }
    if let Some(format) = args.log_format {
        config.server.log_format = format;
    }
    if let Some(target) = args.target {
        config.target = parquetry_model::config::Target::parse(&target)?;
    }
    if args.verify_config || args.print_config_stderr {
        eprint!("{}", effective_config(&config)?);
    }
    if args.verify_config {
        return Ok(());
    }
    init_logging(&config, LogOutput::Cli)?;
    report_loki_keys(&config);
    let addr: SocketAddr = match args.listen {
        Some(a) => a,
        None => format!(
            "{}:{}",
            config.server.http_listen_address, config.server.http_listen_port
        )
        .parse()
        .context("server.http_listen_address / http_listen_port")?,
    };
    let runtime = parquetry_host::runtime()?;
    runtime.block_on(async move {
        let url = config.storage_url();
        let store = parquetry_host::open_store(&config)?;
        // Compaction and retention belong to the backend role: in a split deployment exactly
        // one process should run them (the manifests tolerate a race, but it wastes work).
        if config.target.runs(Role::Backend) {
            let pass = Maintenance::new(Arc::new(config.clone()), store.clone());
            tokio::spawn(maintenance_timer(pass));
        }
        if config.query_range.fanout_transport == parquetry_model::config::FanoutTransport::Lambda {
            tracing::warn!(
                "query_range.fanout_transport lambda is the query function's; this server runs \
                 leaves in its own process (use peers to spread them over replicas)"
            );
        }
        let state = AppState::new(config.clone(), store);
        // Rules run where Loki's ruler does: in the backend role.
        if config.target.runs(Role::Backend) {
            parquetry_ruler::spawn(
                state.config.clone(),
                state.store.clone(),
                state.engine.clone(),
            );
        }
        let shutting_down = state.shutting_down.clone();
        let app = router(state).layer(axum::middleware::from_fn(
            async |req: axum::extract::Request, next: axum::middleware::Next| {
                let _bounded =
                    alloc::is_query_path(req.uri().path()).then(alloc::BoundedMemory::enter);
                next.run(req).await
            },
        ));
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("listening on {addr}"))?;
        tracing::info!(%addr, storage = %url, target = %config.target.0, "parquetry is ready");
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

/// The effective configuration as YAML, with what a Loki file's keys turned into.
fn effective_config(config: &Config) -> anyhow::Result<String> {
    let mut text = serde_yaml::to_string(config)?;
    for t in &config.loki.translated {
        text.push_str(&format!("# translated: {t}\n"));
    }
    for i in &config.loki.ignored {
        text.push_str(&format!("# ignored (no effect in Parquetry): {i}\n"));
    }
    Ok(text)
}

/// One line for the Loki keys that were honoured, one warning for those that were not.
fn report_loki_keys(config: &Config) {
    if !config.loki.translated.is_empty() {
        tracing::info!(keys = %config.loki.translated.join(", "), "Loki configuration keys translated");
    }
    if !config.loki.ignored.is_empty() {
        tracing::warn!(
            keys = %config.loki.ignored.join(", "),
            "Loki configuration keys that have no effect in Parquetry are ignored"
        );
    }
}
