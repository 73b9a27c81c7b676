//! Ingest benchmark: the release `parquetry serve` binary in its own process, fed snappy
//! protobuf pushes over loopback HTTP, storing Parquet in a local directory; then metadata and
//! query latency on what it stored.
//!
//! `cargo bench -p parquetry --bench ingest` (PARQUETRY_BENCH_MB sets the raw line volume,
//! default 256; PARQUETRY_BENCH_STREAMS the stream count, default 1000;
//! PARQUETRY_BENCH_PUSH=otlp pushes the same entries as OTLP/HTTP protobuf, gzip, to
//! `/otlp/v1/logs` instead, each stream a resource whose labels are resource attributes).
//!
//! Reports raw line MB/s, entries/s, MB/s per core of server CPU actually used (and with the
//! compactor's CPU added), bytes stored per raw byte, the server's peak RSS, and
//! metadata/query latencies.
//!
//! Repeated query measurements need not ingest again: with `PARQUETRY_BENCH_DATA=<dir>` the
//! compacted data is kept in `<dir>` (with `bench.json` describing it) and a later run with the
//! same variable skips generation, ingest and compaction and goes straight to the queries.
//! `PARQUETRY_BENCH_QUERY=<text>` runs only the query and Drilldown cases whose name contains
//! it; `PARQUETRY_BENCH_RUNS` sets how many times each is run (best kept, default 2). The
//! server inherits the environment, so `PARQUETRY__…` variables configure it
//! (`PARQUETRY__QUERY_RANGE__PARALLELISM=1` fixes the scan partitions, for example).
//!
//! Side by side with Loki: `PARQUETRY_BENCH_LOKI=<pid>@<base url>` (a running Loki, e.g. the
//! reference build on loopback) pushes the same bodies to it afterwards, the same way, and
//! prints its push CPU per raw MB next to the server's (protobuf pushes only).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use parquetry_ingest::proto;
use parquetry_loggen::{GenStream, LogGen};
use parquetry_test_support::bench::{Proc, dir_size, env_or};
use prost::Message;

const SEED: u64 = 42;

fn body(streams: &[GenStream]) -> Vec<u8> {
    let req = proto::PushRequest {
        streams: streams
            .iter()
            .map(|s| proto::StreamAdapter {
                labels: s.label_text(),
                entries: s
                    .entries
                    .iter()
                    .map(|e| proto::EntryAdapter {
                        timestamp: Some(proto::Timestamp {
                            seconds: e.ts_ns / 1_000_000_000,
                            nanos: (e.ts_ns % 1_000_000_000) as i32,
                        }),
                        line: e.line.clone(),
                        structured_metadata: vec![proto::LabelPairAdapter {
                            name: "trace_id".into(),
                            value: e.trace_id.clone(),
                        }],
                        parsed: vec![],
                    })
                    .collect(),
                hash: 0,
            })
            .collect(),
        format: String::new(),
    };
    snap::raw::Encoder::new()
        .compress_vec(&req.encode_to_vec())
        .expect("snappy")
}

/// The same entries as an OTLP export, as the OpenTelemetry SDKs and Collector send it: one
/// resource per stream (its labels as attributes, every one indexed), the trace id as the
/// record's own field, protobuf then gzip.
fn otlp_body(streams: &[GenStream]) -> Vec<u8> {
    use parquetry_ingest::otlp::proto::collector::logs::v1::ExportLogsServiceRequest;
    use parquetry_ingest::otlp::proto::common::v1::{AnyValue, KeyValue, any_value::Value};
    use parquetry_ingest::otlp::proto::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
    use parquetry_ingest::otlp::proto::resource::v1::Resource;
    let text = |s: &str| {
        Some(AnyValue {
            value: Some(Value::StringValue(s.to_string())),
        })
    };
    let req = ExportLogsServiceRequest {
        resource_logs: streams
            .iter()
            .map(|s| ResourceLogs {
                resource: Some(Resource {
                    attributes: s
                        .labels
                        .iter()
                        .map(|(k, v)| KeyValue {
                            // OTLP's name for it; it maps back to `service_name`.
                            key: if k == "service_name" {
                                "service.name".to_string()
                            } else {
                                k.to_string()
                            },
                            value: text(v),
                            ..Default::default()
                        })
                        .collect(),
                    ..Default::default()
                }),
                scope_logs: vec![ScopeLogs {
                    log_records: s
                        .entries
                        .iter()
                        .map(|e| LogRecord {
                            time_unix_nano: e.ts_ns as u64,
                            body: text(&e.line),
                            trace_id: (0..16)
                                .map(|i| {
                                    u8::from_str_radix(
                                        e.trace_id.get(2 * i..2 * i + 2).unwrap_or("00"),
                                        16,
                                    )
                                    .unwrap_or(0)
                                })
                                .collect(),
                            ..Default::default()
                        })
                        .collect(),
                    ..Default::default()
                }],
                ..Default::default()
            })
            .collect(),
    };
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    std::io::Write::write_all(&mut gz, &req.encode_to_vec()).expect("gzip");
    gz.finish().expect("gzip")
}

/// What a kept data directory holds, so a later run can query it without ingesting.
#[derive(Debug, Clone, Copy, PartialEq)]
struct BenchData {
    /// First entry time minus nothing: the start of the generated span, ns.
    start: i64,
    /// When the data was generated (every entry is older), ns.
    now: i64,
    raw_bytes: u64,
    entries: u64,
}

const BENCH_META: &str = "bench.json";

impl BenchData {
    fn load(dir: &Path) -> Option<BenchData> {
        let text = std::fs::read_to_string(dir.join(BENCH_META)).ok()?;
        let v: serde_json::Value = serde_json::from_str(&text).ok()?;
        Some(BenchData {
            start: v["start"].as_i64()?,
            now: v["now"].as_i64()?,
            raw_bytes: v["raw_bytes"].as_u64()?,
            entries: v["entries"].as_u64()?,
        })
    }

    fn save(&self, dir: &Path) {
        let v = serde_json::json!({
            "start": self.start,
            "now": self.now,
            "raw_bytes": self.raw_bytes,
            "entries": self.entries,
        });
        std::fs::write(dir.join(BENCH_META), v.to_string()).expect("write bench.json");
    }
}

/// Name, LogQL, extra query parameters.
type QueryCase = (&'static str, &'static str, Vec<(&'static str, String)>);

struct Server(Child);
impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

async fn timed_get(c: &reqwest::Client, url: &str, q: &[(&str, String)]) -> (Duration, String) {
    let t = Instant::now();
    let r = c.get(url).query(q).send().await.expect("get");
    assert!(r.status().is_success(), "{url}: {}", r.status());
    let text = r.text().await.expect("body");
    (t.elapsed(), text)
}

/// Pushes every body to `url`, four at a time, and insists on each one's success.
async fn push_all(c: &reqwest::Client, url: &str, bodies: Vec<Vec<u8>>, otlp: bool) {
    let queue = std::sync::Arc::new(std::sync::Mutex::new(bodies));
    let mut tasks = Vec::new();
    for _ in 0..4 {
        let (c, url, queue) = (c.clone(), url.to_string(), queue.clone());
        tasks.push(tokio::spawn(async move {
            loop {
                let next = queue.lock().expect("queue").pop();
                let Some(b) = next else { break };
                let mut req = c
                    .post(&url)
                    .header("Content-Type", "application/x-protobuf")
                    .body(b);
                if otlp {
                    req = req.header("Content-Encoding", "gzip");
                }
                let r = req.send().await.expect("push");
                assert_eq!(
                    r.status().as_u16(),
                    if otlp { 200 } else { 204 },
                    "{}",
                    r.text().await.unwrap_or_default()
                );
            }
        }));
    }
    for t in tasks {
        t.await.expect("task");
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 1)]
async fn main() {
    let target_mb = env_or("PARQUETRY_BENCH_MB", 256);
    let n_streams = env_or("PARQUETRY_BENCH_STREAMS", 1000);
    let per_stream_per_push = 5;
    let otlp = std::env::var("PARQUETRY_BENCH_PUSH").is_ok_and(|v| v == "otlp");
    let data_dir = std::env::var_os("PARQUETRY_BENCH_DATA").map(PathBuf::from);
    let kept = data_dir.as_deref().and_then(BenchData::load);
    let only = std::env::var("PARQUETRY_BENCH_QUERY").unwrap_or_default();
    let runs = env_or("PARQUETRY_BENCH_RUNS", 2).max(1);

    // Generate every body up front so the client costs almost nothing while we measure.
    let now = kept.map_or_else(
        || {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .expect("clock")
                .as_nanos() as i64
        },
        |k| k.now,
    );
    let approx_line = 200usize;
    let total_lines = target_mb * 1_000_000 / approx_line;
    let per_stream_total = (total_lines / n_streams).max(per_stream_per_push);
    let span = 6 * 3_600 * 1_000_000_000i64;
    // Lines average under `approx_line`, so more entries than planned may be generated: start
    // early enough that even twice the planned span stays behind the creation grace period.
    let start = kept.map_or(now - 2 * span - 600 * 1_000_000_000, |k| k.start);
    let mut generator = LogGen::new(SEED, n_streams, start, span / per_stream_total as i64);
    let (mut bodies, mut raw_bytes, mut entries, mut proto_bytes) = (Vec::new(), 0u64, 0u64, 0u64);
    if let Some(k) = kept {
        (raw_bytes, entries) = (k.raw_bytes, k.entries);
    }
    while kept.is_none() && (raw_bytes as usize) < target_mb * 1_000_000 {
        let batch = generator.batch(per_stream_per_push);
        for s in &batch {
            for e in &s.entries {
                raw_bytes += e.line.len() as u64;
                entries += 1;
            }
        }
        let b = if otlp {
            otlp_body(&batch)
        } else {
            body(&batch)
        };
        proto_bytes += b.len() as u64;
        bodies.push(b);
    }

    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = data_dir.unwrap_or_else(|| tmp.path().to_path_buf());
    std::fs::create_dir_all(&dir).expect("data directory");
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("port");
        l.local_addr().expect("addr").port()
    };
    let child = Command::new(env!("CARGO_BIN_EXE_parquetry"))
        .args(["serve", "--listen", &format!("127.0.0.1:{port}"), "--data"])
        .arg(&dir)
        .arg("--log.level=warn")
        // OTLP: every resource attribute indexed, so the streams are the push case's.
        .env(
            "PARQUETRY__LIMITS_CONFIG__OTLP_CONFIG",
            "{resource_attributes: {attributes_config: [{action: index_label, regex: '.*'}]}}",
        )
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start parquetry");
    let pid = child.id();
    let _server = Server(child);
    let base = format!("http://127.0.0.1:{port}");
    let c = reqwest::Client::new();
    for _ in 0..100 {
        if c.get(format!("{base}/ready")).send().await.is_ok() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // Metadata over the whole stored range: first call reads footers, later ones hit the
    // catalog cache.
    let range = vec![("start", (start - 1).to_string()), ("end", now.to_string())];
    let labels_url = format!("{base}/loki/api/v1/labels");
    let values_url = format!("{base}/loki/api/v1/label/pod/values");
    let metadata = |when: &'static str| {
        let (c, labels_url, values_url, range) = (
            c.clone(),
            labels_url.clone(),
            values_url.clone(),
            range.clone(),
        );
        async move {
            let (cold, body) = timed_get(&c, &labels_url, &range).await;
            let mut warm = Duration::MAX;
            for _ in 0..5 {
                warm = warm.min(timed_get(&c, &labels_url, &range).await.0);
            }
            let (values_warm, values) = timed_get(&c, &values_url, &range).await;
            let n_values = serde_json::from_str::<serde_json::Value>(&values)
                .ok()
                .and_then(|v| v["data"].as_array().map(|a| a.len()))
                .unwrap_or(0);
            println!(
                "labels ({when})   cold {:.1} ms, warm {:.1} ms ({body:.60})",
                cold.as_secs_f64() * 1e3,
                warm.as_secs_f64() * 1e3
            );
            println!(
                "label/pod/values ({when}) warm {:.1} ms ({n_values} values)",
                values_warm.as_secs_f64() * 1e3
            );
        }
    };

    if let Some(k) = kept {
        println!(
            "## kept data in {} ({:.1} MB raw, {} entries): no ingest, no compaction",
            dir.display(),
            k.raw_bytes as f64 / 1e6,
            k.entries
        );
        metadata("compacted, kept").await;
    } else {
        let cpu0 = Proc::Pid(pid).cpu_seconds();
        let t0 = Instant::now();
        let push_url = if otlp {
            format!("{base}/otlp/v1/logs")
        } else {
            format!("{base}/loki/api/v1/push")
        };
        let loki = std::env::var("PARQUETRY_BENCH_LOKI")
            .ok()
            .filter(|_| !otlp)
            .and_then(|v| {
                let (pid, url) = v.split_once('@')?;
                Some((
                    pid.parse::<u32>().ok()?,
                    url.trim_end_matches('/').to_string(),
                ))
            });
        // Oldest first: `push_all` takes bodies from the end, and Loki refuses a stream's
        // entries more than an hour behind its newest.
        let loki_bodies = loki
            .as_ref()
            .map(|_| bodies.iter().rev().cloned().collect::<Vec<_>>());
        push_all(&c, &push_url, bodies, otlp).await;
        let wall = t0.elapsed().as_secs_f64();
        let cpu = Proc::Pid(pid).cpu_seconds() - cpu0;
        let (stored, files) = dir_size(&dir);
        let rss = Proc::Pid(pid).peak_rss_mib();
        let mb = raw_bytes as f64 / 1e6;

        println!(
            "## ingest (seed {SEED}, {n_streams} streams, {} pushes of {} entries)",
            (entries as usize) / (n_streams * per_stream_per_push),
            n_streams * per_stream_per_push
        );
        println!(
            "raw line bytes        {mb:.1} MB ({entries} entries, {} on the wire {:.1} MB)",
            if otlp {
                "OTLP protobuf+gzip"
            } else {
                "protobuf+snappy"
            },
            proto_bytes as f64 / 1e6
        );
        println!("wall                  {wall:.2} s");
        println!(
            "throughput            {:.1} MB/s raw, {:.0} entries/s",
            mb / wall,
            entries as f64 / wall
        );
        println!(
            "server CPU            {cpu:.2} s ({:.2} cores busy)",
            cpu / wall
        );
        println!(
            "per core              {:.1} MB/s raw per core-second of server CPU",
            mb / cpu.max(1e-9)
        );
        println!(
            "stored                {:.1} MB in {files} objects = {:.3} bytes per raw byte",
            stored as f64 / 1e6,
            stored as f64 / raw_bytes as f64
        );
        println!("peak RSS (server)     {rss:.0} MiB");
        if let (Some((loki_pid, loki_url)), Some(bodies)) = (loki, loki_bodies) {
            let cpu0 = Proc::Pid(loki_pid).cpu_seconds();
            let t0 = Instant::now();
            push_all(&c, &format!("{loki_url}/loki/api/v1/push"), bodies, false).await;
            let loki_wall = t0.elapsed().as_secs_f64();
            let loki_cpu = Proc::Pid(loki_pid).cpu_seconds() - cpu0;
            println!(
                "Loki push             {loki_wall:.2} s wall, {loki_cpu:.2} CPU-s = {:.1} MB/s raw per core-second; Parquetry {:.2}x",
                mb / loki_cpu.max(1e-9),
                loki_cpu / cpu.max(1e-9)
            );
        }
        metadata("hot objects").await;

        // What the server's compactor timer does every 10 minutes, run now on everything.
        let t_compact = Instant::now();
        let children0 = Proc::This.children_cpu_seconds();
        let out = Command::new(env!("CARGO_BIN_EXE_parquetry"))
            .args(["compact", "--once", "--data"])
            .arg(&dir)
            .env("PARQUETRY__COMPACTOR__HOT_OBJECT_MIN_AGE", "0s")
            .stderr(Stdio::inherit())
            .output()
            .expect("run compactor");
        assert!(out.status.success(), "compactor failed");
        let compact_wall = t_compact.elapsed().as_secs_f64();
        let compact_cpu = Proc::This.children_cpu_seconds() - children0;
        // The objects queries now see, as the server counts them (`chunks` = live objects).
        let mut sq = range.clone();
        sq.push(("query", r#"{namespace="shop"}"#.to_string()));
        let (_, stats) = timed_get(&c, &format!("{base}/loki/api/v1/index/stats"), &sq).await;
        let stats: serde_json::Value = serde_json::from_str(&stats).unwrap_or_default();
        let (total, _) = dir_size(&dir);
        println!(
            "compaction            {compact_wall:.1} s wall, {:.1} MB/s raw; objects {files} -> {} live",
            mb / compact_wall,
            stats["chunks"],
        );
        println!(
            "compaction CPU        {compact_cpu:.2} s = {:.1} MB/s raw per core-second",
            mb / compact_cpu.max(1e-9)
        );
        println!(
            "push + compaction     {:.1} MB/s raw per core-second (server push CPU + compactor CPU)",
            mb / (cpu + compact_cpu).max(1e-9)
        );
        // Absorbed hot objects stay until their grace period ends: the growth is the new objects.
        let cold = total.saturating_sub(stored);
        println!(
            "stored (compacted)    {:.1} MB = {:.3} bytes per raw byte",
            cold as f64 / 1e6,
            cold as f64 / raw_bytes as f64
        );
        metadata("compacted").await;
        BenchData {
            start,
            now,
            raw_bytes,
            entries,
        }
        .save(&dir);
    }

    let qurl = format!("{base}/loki/api/v1/query_range");
    let step = ("step", "60".to_string());
    let cases: Vec<QueryCase> = vec![
        (
            "needle miss, 1 service",
            r#"{service_name="checkout"} |= "no-such-token""#,
            vec![("limit", "100".into())],
        ),
        (
            "needle miss, all",
            r#"{namespace="shop"} |= "no-such-token""#,
            vec![("limit", "100".into())],
        ),
        (
            "newest 1000, all",
            r#"{namespace="shop"}"#,
            vec![("limit", "1000".into())],
        ),
        // The same over the newer half of the range: half the data, the same answer size.
        (
            "newest 1000, half",
            r#"{namespace="shop"}"#,
            vec![
                ("limit", "1000".into()),
                ("start", (now - (now - start) / 2).to_string()),
            ],
        ),
        // A range ending in the middle of the data: the newest rows sit inside compacted
        // objects, about one per stream, not at the end of each stream's run.
        (
            "newest 1000, mid-data 3 h",
            r#"{namespace="shop"}"#,
            vec![
                ("limit", "1000".into()),
                ("start", start.to_string()),
                ("end", (start + span / 2).to_string()),
            ],
        ),
        (
            "newest 1000, 1 service",
            r#"{service_name="checkout"}"#,
            vec![("limit", "1000".into())],
        ),
        (
            "newest 100, needle",
            r#"{namespace="shop"} |= "error""#,
            vec![("limit", "100".into())],
        ),
        (
            "oldest 1000, all",
            r#"{namespace="shop"}"#,
            vec![("limit", "1000".into()), ("direction", "forward".into())],
        ),
        (
            "volume by level (1m)",
            r#"sum by (detected_level) (count_over_time({namespace="shop"}[1m]))"#,
            vec![step.clone()],
        ),
        (
            "count by service (5m)",
            r#"sum by (service_name) (count_over_time({namespace="shop"}[5m]))"#,
            vec![step.clone()],
        ),
        (
            "json | status>=500",
            r#"sum by (path) (count_over_time({service_name=~"checkout|payments"} | json | status >= 500 [5m]))"#,
            vec![step.clone()],
        ),
        (
            "logfmt | unwrap",
            r#"avg_over_time({service_name=~"inventory|auth"} | logfmt | unwrap duration(duration) | __error__="" [5m]) by (service_name)"#,
            vec![step.clone()],
        ),
        // The same reduced by an aggregation above the range aggregation: each line's unique
        // `id` makes it a series of its own until the `avg` (the costly intermediate series).
        (
            "logfmt | unwrap, series per line",
            r#"avg by (service_name) (avg_over_time({service_name=~"inventory|auth"} | logfmt | unwrap duration(duration) | __error__="" [5m]))"#,
            vec![step.clone()],
        ),
        // Each line's trace id (structured metadata) makes it a series of its own.
        (
            "count, series per line",
            r#"max by (service_name) (count_over_time({service_name=~"inventory|auth"}[5m]))"#,
            vec![step.clone()],
        ),
    ];
    println!();
    println!(
        "## queries over the whole range (best of 2; MB/s = line bytes in range / wall / cores)"
    );
    for (name, query, extra) in cases.into_iter().filter(|c| c.0.contains(&only)) {
        let mut q = range.clone();
        q.push(("query", query.to_string()));
        // A case's own `start` replaces the whole range's.
        q.retain(|(k, _)| !extra.iter().any(|(e, _)| e == k));
        q.extend(extra);
        let mut best = Duration::MAX;
        let mut best_cpu = 0.0;
        let mut body = String::new();
        Proc::Pid(pid).reset_peak_rss();
        for _ in 0..runs {
            let cpu0 = Proc::Pid(pid).cpu_seconds();
            let (lat, b) = timed_get(&c, &qurl, &q).await;
            if lat < best {
                best = lat;
                best_cpu = Proc::Pid(pid).cpu_seconds() - cpu0;
            }
            body = b;
        }
        let v: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
        let processed = v["data"]["stats"]["summary"]["totalBytesProcessed"]
            .as_f64()
            .unwrap_or(0.0);
        let scanned = v["data"]["stats"]["querier"]["store"]["chunk"]["compressedBytes"]
            .as_f64()
            .unwrap_or(0.0);
        let n = v["data"]["result"].as_array().map_or(0, |a| a.len());
        let secs = best.as_secs_f64();
        println!(
            "{name:<24} {:>7.0} ms  {:>7.1} MB lines in range  {:>7.1} MB read  {:>6.0} MB/s  {:>6.0} MB/s per core  ({n} result series/streams)",
            secs * 1e3,
            processed / 1e6,
            scanned / 1e6,
            processed / 1e6 / secs,
            processed / 1e6 / best_cpu.max(1e-9),
        );
        println!(
            "{:<24} {best_cpu:.2} CPU-s, server peak RSS {:.0} MiB; stats.parquetry {}",
            "",
            Proc::Pid(pid).peak_rss_mib(),
            v["data"]["stats"]["parquetry"]
        );
    }

    // Logs Drilldown: the fields of the newest lines (Loki's default sample of 100, and the
    // 1,000 some callers ask for) and the stream labels of the whole range.
    let fields = || vec![("query", r#"{namespace="shop"}"#.to_string())];
    /// (name, endpoint, parameters).
    type Case<'a> = (&'a str, &'a str, Vec<(&'a str, String)>);
    let drilldown: Vec<Case<'_>> = vec![
        (
            "detected_fields, 1 service",
            "detected_fields",
            vec![("query", r#"{service_name="checkout"}"#.to_string())],
        ),
        ("detected_fields, all", "detected_fields", fields()),
        (
            "detected_fields, all, 1000",
            "detected_fields",
            [fields(), vec![("line_limit", "1000".to_string())]].concat(),
        ),
        ("detected_labels, all", "detected_labels", vec![]),
        (
            "detected_labels, 1 service",
            "detected_labels",
            vec![("query", r#"{service_name="checkout"}"#.to_string())],
        ),
    ];
    println!();
    println!("## Logs Drilldown over the whole range (best of 3)");
    for (name, path, extra) in drilldown.into_iter().filter(|c| c.0.contains(&only)) {
        let mut q = range.clone();
        // A case's own `start` replaces the whole range's.
        q.retain(|(k, _)| !extra.iter().any(|(e, _)| e == k));
        q.extend(extra);
        let url = format!("{base}/loki/api/v1/{path}");
        let mut best = Duration::MAX;
        let mut body = String::new();
        for _ in 0..runs.max(3) {
            let (lat, b) = timed_get(&c, &url, &q).await;
            best = best.min(lat);
            body = b;
        }
        let v: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
        let n = v["fields"]
            .as_array()
            .or(v["detectedLabels"].as_array())
            .map_or(0, |a| a.len());
        println!(
            "{name:<28} {:>7.0} ms  ({n} fields/labels)",
            best.as_secs_f64() * 1e3
        );
    }
}
