//! Bytes at rest, like for like with Loki: the same generated logs, as the same snappy-protobuf
//! push bodies, go to a Parquetry server (in this process, local directory) and to one or more
//! running Loki instances; then Parquetry compacts once and each Loki flushes its chunks, and
//! the bin prints what each stores.
//!
//! ```text
//! cargo run --release -p parquetry-e2e --bin atrest
//! # PARQUETRY_BENCH_MB (200), PARQUETRY_BENCH_STREAMS (400), PARQUETRY_BENCH_PUSH_KB (1024),
//! # PARQUETRY_BENCH_METADATA (1: the trace id also as structured metadata, 0: lines only),
//! # PARQUETRY_ATREST_LOKI="name=http://127.0.0.1:3190=/path/to/loki/data,…" (each Loki's
//! #   push URL and data directory; see docs/benchmarks.md for how they were started)
//! ```
//!
//! The data is the format bench's (`parquetry-loggen`, seed 42, 40 minutes ending two days
//! ago), so the figures line up with `cargo bench -p parquetry-store --bench format`.

use std::path::Path;
use std::time::{Duration, Instant};

use parquetry_e2e::{TestServer, protobuf_body};
use parquetry_test_support::bench::{AtRestData, dir_size};

fn mb(b: u64) -> f64 {
    b as f64 / 1e6
}

/// A Loki to compare with: its name in the table, push base URL and data directory.
struct Loki {
    name: String,
    url: String,
    data: String,
}

fn lokis() -> Vec<Loki> {
    std::env::var("PARQUETRY_ATREST_LOKI")
        .unwrap_or_default()
        .split(',')
        .filter(|s| !s.trim().is_empty())
        .map(|spec| {
            let (name, rest) = spec.split_once('=').expect("name=url=dir");
            let (url, data) = rest.rsplit_once('=').expect("name=url=dir");
            Loki {
                name: name.trim().into(),
                url: url.trim().trim_end_matches('/').into(),
                data: data.trim().into(),
            }
        })
        .collect()
}

/// Bytes of regular files under `dir` whose path contains `part` (all when empty).
fn bytes_under(dir: &Path, part: &str) -> u64 {
    let mut total = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.to_string_lossy().contains(part) {
                total += e.metadata().map(|m| m.len()).unwrap_or(0);
            }
        }
    }
    total
}

async fn post(client: &reqwest::Client, url: &str, body: Vec<u8>) {
    let resp = client
        .post(url)
        .header("Content-Type", "application/x-protobuf")
        .body(body)
        .send()
        .await
        .unwrap_or_else(|e| panic!("push to {url}: {e}"));
    let status = resp.status();
    if !status.is_success() {
        let text = resp.text().await.unwrap_or_default();
        panic!("push to {url}: {status} {text}");
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let data = AtRestData::from_env();
    let (target, n_streams, with_metadata) = (data.target_bytes, data.streams, data.with_metadata);
    let lokis = lokis();

    let mut generator = data.generator();
    let per_stream = data.per_stream();
    let mut bodies = Vec::new();
    let (mut raw, mut entries) = (0u64, 0usize);
    while raw < target {
        let batch = generator.batch(per_stream);
        let labels: Vec<String> = batch.iter().map(|s| s.label_text()).collect();
        let streams: Vec<(&str, Vec<parquetry_e2e::TestEntry<'_>>)> = batch
            .iter()
            .zip(&labels)
            .map(|(s, l)| {
                let es = s
                    .entries
                    .iter()
                    .map(|e| {
                        raw += e.line.len() as u64;
                        let meta = if with_metadata {
                            vec![("trace_id", e.trace_id.as_str())]
                        } else {
                            Vec::new()
                        };
                        (e.ts_ns, e.line.as_str(), meta)
                    })
                    .collect::<Vec<_>>();
                entries += es.len();
                (l.as_str(), es)
            })
            .collect();
        bodies.push(protobuf_body(&streams));
    }
    println!(
        "data: {:.1} MB of lines, {entries} entries, {n_streams} streams, {} pushes ({:.1} MB of snappy protobuf), trace id as structured metadata: {with_metadata}",
        mb(raw),
        bodies.len(),
        mb(bodies.iter().map(|b| b.len() as u64).sum())
    );
    // No lossless store holds the data in fewer bytes than its information content, so a
    // ratio target against Loki is only meaningful above it.
    let floor = (generator.information_bits() / 8.0) as u64;
    println!(
        "information content of the data: {:.1} MB ({:.3} of raw): the floor for any store",
        mb(floor),
        floor as f64 / raw as f64
    );

    let client = reqwest::Client::new();
    let dir = tempfile::tempdir().expect("tempdir");
    let server = TestServer::start_on(dir.path(), "").await;
    let t = Instant::now();
    for b in &bodies {
        post(&client, &server.url("/loki/api/v1/push"), b.clone()).await;
    }
    let pushed = t.elapsed();
    let hot = bytes_under(dir.path(), ".parquet");
    let summary = server.compact().await;
    // Merged hot objects stay until their grace period ends: count what remains live.
    let cold = bytes_under(dir.path(), "-c_");
    let (all, _) = dir_size(dir.path());
    println!(
        "parquetry: pushed in {:.1}s; hot {:.1} MB; after one compaction pass ({} cold objects): {:.1} MB of objects ({:.3} of raw), {:.1} MB in the directory with manifests",
        pushed.as_secs_f64(),
        mb(hot),
        summary.cold_written,
        mb(cold),
        cold as f64 / raw as f64,
        mb(all)
    );
    server.stop().await;

    for loki in &lokis {
        let t = Instant::now();
        for b in &bodies {
            post(
                &client,
                &format!("{}/loki/api/v1/push", loki.url),
                b.clone(),
            )
            .await;
        }
        let pushed = t.elapsed();
        let flush = client
            .post(format!("{}/flush", loki.url))
            .send()
            .await
            .expect("flush");
        assert!(flush.status().is_success(), "flush: {}", flush.status());
        // The flush is asynchronous: wait until the ingester holds no chunk in memory (its
        // own gauge), then until the chunk directory stops growing.
        let data = Path::new(&loki.data);
        loop {
            tokio::time::sleep(Duration::from_secs(1)).await;
            let metrics = client
                .get(format!("{}/metrics", loki.url))
                .send()
                .await
                .expect("metrics")
                .text()
                .await
                .expect("metrics body");
            let in_memory: f64 = metrics
                .lines()
                .find_map(|l| l.strip_prefix("loki_ingester_memory_chunks "))
                .and_then(|v| v.trim().parse().ok())
                .expect("loki_ingester_memory_chunks");
            if in_memory == 0.0 {
                break;
            }
        }
        let mut last = 0;
        let mut stable = 0;
        while stable < 3 {
            tokio::time::sleep(Duration::from_secs(1)).await;
            let now = bytes_under(&data.join("chunks"), "");
            if now == last {
                stable += 1;
            } else {
                stable = 0;
                last = now;
            }
        }
        let chunks = bytes_under(&data.join("chunks"), "");
        let index = bytes_under(data, "tsdb") + bytes_under(data, "index_");
        println!(
            "{}: pushed in {:.1}s; chunks and index in the chunk store {:.1} MB ({:.3} of raw); tsdb files anywhere under its data directory {:.1} MB; parquetry / {} = {:.2}; half of it is {:.2} × the information content",
            loki.name,
            pushed.as_secs_f64(),
            mb(chunks),
            chunks as f64 / raw as f64,
            mb(index),
            loki.name,
            cold as f64 / chunks as f64,
            chunks as f64 / 2.0 / floor as f64
        );
    }
}
