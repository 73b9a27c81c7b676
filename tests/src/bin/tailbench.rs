//! `tailbench`: push-to-tail latency of a real `parquetry serve` process.
//!
//! Starts the given (release) `parquetry` binary on a temporary directory and a free loopback
//! port, opens one live tail (`/loki/api/v1/tail`, the defaults Grafana uses) and pushes
//! `--entries` single-entry JSON pushes at `--rate` per second, one client, each line
//! carrying its sequence number. The latency of an entry runs from just before its push is
//! sent to the arrival of the tail message holding it, so it includes the push's own durable
//! write. Reports p50/p99/max, and exits 1 if an entry was lost or duplicated or the p99 is
//! over `--max-p99-ms`; 2 when the harness itself failed.
//!
//! ```sh
//! export CARGO_TARGET_DIR=$HOME/.cache/parquetry-release
//! cargo build --release -p parquetry -p parquetry-e2e --bin parquetry --bin tailbench
//! $CARGO_TARGET_DIR/release/tailbench --parquetry $CARGO_TARGET_DIR/release/parquetry
//! ```

use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::Parser;
use futures::StreamExt;
use parquetry_e2e::now_ns;
use serde_json::{Value, json};
use tokio::process::Command;
use tokio_tungstenite::tungstenite::Message;

#[derive(Parser, Debug)]
#[command(
    name = "tailbench",
    about = "Push-to-tail latency of `parquetry serve`: one tail, paced single-entry pushes"
)]
struct Args {
    /// The `parquetry` binary to measure (a release build).
    #[arg(long, env = "PARQUETRY_BIN", value_name = "PATH")]
    parquetry: PathBuf,
    /// Entries pushed, one per push.
    #[arg(long, default_value_t = 1000)]
    entries: usize,
    /// Pushes per second.
    #[arg(long, default_value_t = 100.0)]
    rate: f64,
    /// Fail when the p99 latency is above this.
    #[arg(long, default_value_t = 1000)]
    max_p99_ms: u64,
}

#[tokio::main]
async fn main() {
    match run(Args::parse()).await {
        Ok(true) => {}
        Ok(false) => std::process::exit(1),
        Err(e) => {
            eprintln!("tailbench: {e:#}");
            std::process::exit(2);
        }
    }
}

async fn run(args: Args) -> Result<bool> {
    let dir = tempfile::tempdir()?;
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let base = format!("http://127.0.0.1:{port}");
    let log = std::fs::File::create(dir.path().join("server.log"))?;
    let mut server = Command::new(&args.parquetry)
        .arg("serve")
        .arg("--data")
        .arg(dir.path().join("data"))
        .arg("--listen")
        .arg(format!("127.0.0.1:{port}"))
        .stdin(Stdio::null())
        .stdout(Stdio::from(log.try_clone()?))
        .stderr(Stdio::from(log))
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("starting {}", args.parquetry.display()))?;
    let http = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(status) = server.try_wait()? {
            bail!("server exited at start-up: {status}");
        }
        let ready = http.get(format!("{base}/ready")).send().await;
        if ready.is_ok_and(|r| r.status().is_success()) {
            break;
        }
        if Instant::now() > deadline {
            bail!("server not ready within 30 s");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let push_url = format!("{base}/loki/api/v1/push");
    let push_http = http.clone();
    let push = move |line: String| {
        let http = push_http.clone();
        let url = push_url.clone();
        async move {
            let body = json!({"streams": [{"stream": {"app": "tailbench"}, "values": [[now_ns().to_string(), line]]}]});
            let r = http
                .post(url)
                .header("Content-Type", "application/json")
                .body(body.to_string())
                .send()
                .await?;
            if r.status().as_u16() != 204 {
                bail!("push answered {}", r.status());
            }
            anyhow::Ok(())
        }
    };
    // Pushed before the tail opens: it comes back as the history, which proves the tail is
    // subscribed (it subscribes before reading the history).
    push("warm-up".into()).await?;
    let url = reqwest::Url::parse_with_params(
        &format!("{base}/loki/api/v1/tail"),
        &[("query", r#"{app="tailbench"}"#)],
    )?;
    let (mut ws, _) =
        tokio_tungstenite::connect_async(url.as_str().replacen("http://", "ws://", 1)).await?;
    loop {
        match tokio::time::timeout(Duration::from_secs(10), ws.next()).await {
            Ok(Some(Ok(Message::Text(t)))) if t.contains("warm-up") => break,
            Ok(Some(Ok(_))) => continue,
            other => bail!("no history from the tail: {other:?}"),
        }
    }

    let n = args.entries;
    let sent: Arc<Mutex<Vec<Option<Instant>>>> = Arc::new(Mutex::new(vec![None; n]));
    let pusher = {
        let sent = sent.clone();
        let period = Duration::from_secs_f64(1.0 / args.rate.max(0.001));
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(period);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
            // Each push on its own task, so a slow answer does not lower the offered rate.
            let mut pushes = Vec::with_capacity(n);
            for i in 0..n {
                tick.tick().await;
                if let Ok(mut s) = sent.lock() {
                    s[i] = Some(Instant::now());
                }
                pushes.push(tokio::spawn(push.clone()(format!("seq={i}"))));
            }
            for p in pushes {
                p.await??;
            }
            anyhow::Ok(())
        })
    };

    let mut latencies: Vec<Duration> = Vec::with_capacity(n);
    let mut seen = vec![0u32; n];
    let mut dropped = 0usize;
    let end = Instant::now()
        + Duration::from_secs_f64(n as f64 / args.rate.max(0.001))
        + Duration::from_secs(15);
    while latencies.len() < n && Instant::now() < end {
        let msg = match tokio::time::timeout_at(end.into(), ws.next()).await {
            Ok(Some(Ok(m))) => m,
            Ok(other) => bail!("tail ended: {other:?}"),
            Err(_) => break,
        };
        let Message::Text(text) = msg else { continue };
        let arrived = Instant::now();
        let v: Value = serde_json::from_str(&text)?;
        dropped += v["dropped_entries"].as_array().map_or(0, Vec::len);
        for s in v["streams"].as_array().into_iter().flatten() {
            for e in s["values"].as_array().into_iter().flatten() {
                let Some(i) = e[1]
                    .as_str()
                    .and_then(|l| l.strip_prefix("seq="))
                    .and_then(|i| i.parse::<usize>().ok())
                    .filter(|i| *i < n)
                else {
                    continue;
                };
                seen[i] += 1;
                let sent_at = sent.lock().ok().and_then(|s| s[i]);
                if let Some(t) = sent_at
                    && seen[i] == 1
                {
                    latencies.push(arrived.duration_since(t));
                }
            }
        }
    }
    pusher.await??;
    let _ = server.start_kill();
    let _ = server.wait().await;

    let lost = seen.iter().filter(|c| **c == 0).count();
    let duplicated = seen.iter().filter(|c| **c > 1).count();
    latencies.sort();
    let pct = |p: f64| -> f64 {
        if latencies.is_empty() {
            return f64::NAN;
        }
        let i = ((latencies.len() as f64 * p).ceil() as usize).clamp(1, latencies.len()) - 1;
        latencies[i].as_secs_f64() * 1000.0
    };
    let (p50, p99) = (pct(0.50), pct(0.99));
    let max = latencies
        .last()
        .map_or(f64::NAN, |d| d.as_secs_f64() * 1000.0);
    println!(
        "entries={n} rate={}/s received={} lost={lost} duplicated={duplicated} dropped_entries={dropped} \
         latency_ms p50={p50:.1} p99={p99:.1} max={max:.1}",
        args.rate,
        latencies.len()
    );
    Ok(lost == 0 && duplicated == 0 && p99 <= args.max_p99_ms as f64)
}
