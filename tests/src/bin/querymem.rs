//! Query memory benchmark: peak RSS (`VmHWM`) of a release `parquetry serve` while it answers
//! the four metric queries of docs/benchmarks.md, each alone on a fresh server and then all
//! four at once, over data kept by the ingest bench.
//!
//! ```text
//! CARGO_TARGET_DIR=$HOME/.cache/parquetry-release PARQUETRY_BENCH_MB=1024 \
//!   PARQUETRY_BENCH_DATA=/tmp/qmem-data cargo bench -p parquetry --bench ingest
//! cargo run -p parquetry-e2e --bin querymem -- \
//!   --server $HOME/.cache/parquetry-release/release/parquetry --data /tmp/qmem-data \
//!   --max-rss-mib 768
//! ```
//!
//! Bounded: one server per case, each query once (the concurrent case `--rounds` times). Exits
//! non-zero when a query fails or answers nothing, or when the peak of the concurrent case
//! passes `--max-rss-mib`. The server inherits the environment, so `PARQUETRY__…` variables
//! configure it (`PARQUETRY__QUERY_RANGE__MAX_MEMORY=256MiB`, say).

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Parser;
use serde_json::Value;

#[derive(Parser)]
struct Args {
    /// The `parquetry` binary to serve with.
    #[arg(long)]
    server: PathBuf,
    /// Data kept by the ingest bench (`PARQUETRY_BENCH_DATA`), with its `bench.json`.
    #[arg(long)]
    data: PathBuf,
    #[arg(long, default_value_t = 3921)]
    port: u16,
    /// Rounds of the four-at-once case on one server.
    #[arg(long, default_value_t = 2)]
    rounds: usize,
    /// Fail when the four-at-once peak RSS passes this many MiB (0: report only).
    #[arg(long, default_value_t = 0)]
    max_rss_mib: u64,
    /// Only the cases whose name contains this.
    #[arg(long)]
    only: Option<String>,
}

const QUERIES: [(&str, &str); 4] = [
    (
        "count by level",
        r#"sum by (detected_level) (count_over_time({namespace="shop"}[5m]))"#,
    ),
    (
        "json status by path",
        r#"sum by (path) (count_over_time({service_name=~"checkout|payments"} | json | status >= 500 [5m]))"#,
    ),
    (
        "logfmt unwrap avg",
        r#"avg_over_time({service_name=~"inventory|auth"} | logfmt | unwrap duration(duration) | __error__="" [5m]) by (service_name)"#,
    ),
    (
        "rate of error lines",
        r#"sum by (service_name) (rate({namespace="shop"} |= "error" [5m]))"#,
    ),
];

/// A server process, killed when dropped.
struct Server {
    child: Child,
    base: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Server {
    async fn start(args: &Args, client: &reqwest::Client) -> anyhow::Result<Server> {
        let child = Command::new(&args.server)
            .args(["serve", "--listen", &format!("127.0.0.1:{}", args.port)])
            .arg("--data")
            .arg(&args.data)
            .arg("--log.level=warn")
            // Compaction would read and write the data under the queries.
            .env("PARQUETRY__COMPACTOR__COMPACTION_INTERVAL", "0")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .context("start the server")?;
        let server = Server {
            child,
            base: format!("http://127.0.0.1:{}", args.port),
        };
        for _ in 0..200 {
            if let Ok(r) = client.get(format!("{}/ready", server.base)).send().await
                && r.status().is_success()
            {
                return Ok(server);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        bail!("the server did not become ready")
    }

    /// CPU seconds (user + system) the server has used so far: on a shared machine a fairer
    /// figure than wall time.
    fn cpu_s(&self) -> anyhow::Result<f64> {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.child.id()))?;
        // Fields after the command name, which is in parentheses and may hold spaces.
        let rest = stat.rsplit_once(')').context("no stat")?.1;
        let f: Vec<&str> = rest.split_whitespace().collect();
        let ticks: f64 = f.get(11).context("no utime")?.parse::<f64>()?
            + f.get(12).context("no stime")?.parse::<f64>()?;
        // USER_HZ is 100 on every Linux this runs on.
        Ok(ticks / 100.0)
    }

    /// Peak resident set size so far, MiB.
    fn peak_mib(&self) -> anyhow::Result<f64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))?;
        let kb: f64 = status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .context("no VmHWM")?;
        Ok(kb / 1024.0)
    }
}

/// Runs one query over the whole kept range at step 60 s; its series count.
async fn query(
    client: &reqwest::Client,
    base: &str,
    range: (i64, i64),
    q: &str,
) -> anyhow::Result<usize> {
    let r = client
        .get(format!("{base}/loki/api/v1/query_range"))
        .query(&[
            ("query", q.to_string()),
            ("start", range.0.to_string()),
            ("end", range.1.to_string()),
            ("step", "60".into()),
        ])
        .send()
        .await?;
    let status = r.status();
    let body = r.text().await?;
    if !status.is_success() {
        bail!("{q}: {status}: {}", &body[..body.len().min(300)]);
    }
    let v: Value = serde_json::from_str(&body)?;
    let n = v["data"]["result"].as_array().map_or(0, Vec::len);
    if n == 0 {
        bail!("{q}: no series");
    }
    Ok(n)
}

#[tokio::main(flavor = "multi_thread")]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let meta: Value = serde_json::from_str(
        &std::fs::read_to_string(args.data.join("bench.json")).context("bench.json")?,
    )?;
    let range = (
        meta["start"].as_i64().context("start")? - 60_000_000_000,
        meta["now"].as_i64().context("now")?,
    );
    let client = reqwest::Client::new();
    let wanted = |name: &str| args.only.as_deref().is_none_or(|o| name.contains(o));
    println!("| queries | wall | server CPU | series | peak RSS (VmHWM) |");
    println!("|---|---|---|---|---|");

    if wanted("idle") {
        let s = Server::start(&args, &client).await?;
        tokio::time::sleep(Duration::from_secs(1)).await;
        println!(
            "| idle server after start | — | — | — | {:.0} MiB |",
            s.peak_mib()?
        );
    }
    for (name, q) in QUERIES {
        if !wanted(name) {
            continue;
        }
        let s = Server::start(&args, &client).await?;
        let (t, cpu) = (Instant::now(), s.cpu_s()?);
        let n = query(&client, &s.base, range, q).await?;
        println!(
            "| {name} alone | {:.2} s | {:.2} s | {n} | {:.0} MiB |",
            t.elapsed().as_secs_f64(),
            s.cpu_s()? - cpu,
            s.peak_mib()?
        );
    }
    if wanted("four") {
        let s = Server::start(&args, &client).await?;
        let mut peak = 0.0;
        for round in 1..=args.rounds {
            let (t, cpu) = (Instant::now(), s.cpu_s()?);
            let runs = QUERIES.map(|(_, q)| query(&client, &s.base, range, q));
            let answers = futures::future::join_all(runs).await;
            for a in answers {
                a?;
            }
            peak = s.peak_mib()?;
            println!(
                "| the four at once, round {round} | {:.2} s | {:.2} s | — | {peak:.0} MiB |",
                t.elapsed().as_secs_f64(),
                s.cpu_s()? - cpu
            );
        }
        if args.max_rss_mib > 0 && peak > args.max_rss_mib as f64 {
            bail!(
                "peak RSS {peak:.0} MiB passes the limit of {} MiB",
                args.max_rss_mib
            );
        }
    }
    Ok(())
}
