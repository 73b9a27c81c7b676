//! The `parquetry` binary as a migrating Loki user runs it: Loki's command line and
//! configuration files, and the simple-scalable roles as three processes over one bucket.
//!
//! With the `PARQUETRY_TEST_S3_*` variables set (scripts/test.sh starts SeaweedFS), the
//! processes share an S3 bucket; otherwise a local directory.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use parquetry_test_support::s3::S3Env;
use parquetry_test_support::{free_port, now_ns, unique_prefix};

const BIN: &str = env!("CARGO_BIN_EXE_parquetry");

/// A running `parquetry` whose stderr is collected, killed on drop.
struct Proc {
    child: Child,
    port: u16,
    stderr: Arc<Mutex<String>>,
}

impl Proc {
    fn start(args: &[&str], env: &[(String, String)]) -> Proc {
        let port = free_port();
        let mut cmd = Command::new(BIN);
        cmd.args(args)
            .env("PARQUETRY__SERVER__HTTP_LISTEN_ADDRESS", "127.0.0.1")
            .env("PARQUETRY__SERVER__HTTP_LISTEN_PORT", port.to_string())
            .env("PARQUETRY__SERVER__LOG_FORMAT", "logfmt")
            .env_remove("RUST_LOG")
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("spawn parquetry");
        let stderr = Arc::new(Mutex::new(String::new()));
        let pipe = child.stderr.take().expect("stderr");
        let sink = stderr.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                let mut s = sink.lock().expect("lock");
                s.push_str(&line);
                s.push('\n');
            }
        });
        Proc {
            child,
            port,
            stderr,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    fn log(&self) -> String {
        self.stderr.lock().expect("lock").clone()
    }

    async fn ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(r) = reqwest::get(self.url("/ready")).await
                && r.status() == 200
            {
                return;
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("parquetry exited with {status}: {}", self.log());
            }
            assert!(Instant::now() < deadline, "not ready: {}", self.log());
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Where the processes keep their data: a fresh S3 prefix when the test server runs, else a
/// directory. Returns the `storage` YAML and the environment it needs.
fn storage(dir: &Path) -> (String, Vec<(String, String)>) {
    match S3Env::optional() {
        Some(e) => {
            // Parquetry's own keys: a Loki `storage_config.aws` block has no prefix, and each
            // test needs its own (the translation of Loki's block is unit-tested).
            let yaml = format!(
                "storage:\n  url: {url}\n  s3:\n    endpoint: {endpoint}\n    region: {region}\n    access_key_id: {id}\n    secret_access_key: ${{S3_SECRET}}\n",
                url = e.url(&unique_prefix("deploy")),
                endpoint = e.endpoint,
                region = e.region,
                id = e.access_key_id,
            );
            (yaml, vec![("S3_SECRET".to_string(), e.secret_access_key)])
        }
        None => (
            format!(
                "storage_config:\n  filesystem:\n    directory: {}\n",
                dir.join("data").display()
            ),
            vec![],
        ),
    }
}

async fn push(url: &str, lines: &[&str]) -> reqwest::StatusCode {
    let t = now_ns() - 60_000_000_000;
    let values: Vec<serde_json::Value> = lines
        .iter()
        .enumerate()
        .map(|(i, l)| serde_json::json!([(t + i as i64).to_string(), l]))
        .collect();
    let body = serde_json::json!({"streams": [{"stream": {"service_name": "shop", "env": "prod"}, "values": values}]});
    reqwest::Client::new()
        .post(url)
        .header("content-type", "application/json")
        .body(body.to_string())
        .send()
        .await
        .expect("push")
        .status()
}

async fn count(url: &str) -> (reqwest::StatusCode, usize) {
    let start = now_ns() - 3_600_000_000_000;
    let r = reqwest::Client::new()
        .get(url)
        .query(&[
            ("query", "{service_name=\"shop\"}"),
            ("start", &start.to_string()),
            ("limit", "1000"),
        ])
        .send()
        .await
        .expect("query");
    let status = r.status();
    let text = r.text().await.unwrap_or_default();
    let n = serde_json::from_str::<serde_json::Value>(&text)
        .ok()
        .and_then(|v| {
            v["data"]["result"].as_array().map(|streams| {
                streams
                    .iter()
                    .map(|s| s["values"].as_array().map_or(0, Vec::len))
                    .sum()
            })
        })
        .unwrap_or(0);
    (status, n)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn write_read_and_backend_processes_over_one_bucket() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (storage_yaml, env) = storage(tmp.path());
    let config = tmp.path().join("loki.yaml");
    std::fs::write(
        &config,
        format!(
            "auth_enabled: false\n{storage_yaml}compactor:\n  compaction_interval: 1s\n  hot_object_min_age: 0s\n"
        ),
    )
    .expect("config");
    let file = format!("-config.file={}", config.display());
    let start = |target: &str| {
        Proc::start(
            &[
                &file,
                "-config.expand-env=true",
                &format!("-target={target}"),
            ],
            &env,
        )
    };
    let mut write = start("write");
    let mut read = start("read");
    let mut backend = start("backend");
    write.ready().await;
    read.ready().await;
    backend.ready().await;

    let lines: Vec<String> = (0..50).map(|i| format!("order {i} placed")).collect();
    let refs: Vec<&str> = lines.iter().map(String::as_str).collect();
    // Three pushes: three objects for the backend to merge.
    for chunk in refs.chunks(20) {
        assert_eq!(push(&write.url("/loki/api/v1/push"), chunk).await, 204);
    }
    // Each role refuses what it does not own, as a Loki of that target would.
    assert_eq!(push(&read.url("/loki/api/v1/push"), &["x"]).await, 404);
    assert_eq!(count(&write.url("/loki/api/v1/query_range")).await.0, 404);
    assert_eq!(count(&backend.url("/loki/api/v1/query_range")).await.0, 404);
    // Another process's pushes are visible to the read role at once.
    assert_eq!(
        count(&read.url("/loki/api/v1/query_range")).await,
        (reqwest::StatusCode::OK, 50)
    );

    // The backend compacts on its timer; the readers see the same entries afterwards.
    let deadline = Instant::now() + Duration::from_secs(60);
    let absorbed = |log: &str| {
        log.lines()
            .any(|l| l.contains("compaction pass done") && !l.contains("hot_absorbed: 0,"))
    };
    while !absorbed(&backend.log()) {
        assert!(
            Instant::now() < deadline,
            "backend never compacted: {}",
            backend.log()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(
        count(&read.url("/loki/api/v1/query_range")).await,
        (reqwest::StatusCode::OK, 50)
    );
    // Only the backend runs compaction.
    assert!(!write.log().contains("compaction pass"), "{}", write.log());
    assert!(!read.log().contains("compaction pass"), "{}", read.log());
    // Every role shows its effective configuration.
    let shown = reqwest::get(read.url("/config"))
        .await
        .expect("config")
        .text()
        .await
        .expect("text");
    assert!(shown.contains("target: read"), "{shown}");
    assert!(!shown.contains("parquetry-test-secret"), "{shown}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_loki_single_binary_file_runs_as_it_is() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let fixture = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../tests/fixtures/loki/single-binary.yaml"
    );
    let data = tmp.path().join("data");
    let mut p = Proc::start(
        &[
            &format!("-config.file={fixture}"),
            &format!("--data={}", data.display()),
        ],
        &[],
    );
    p.ready().await;
    let log = p.log();
    assert!(
        log.contains("Loki configuration keys that have no effect in Parquetry are ignored"),
        "{log}"
    );
    for key in [
        "server.grpc_listen_port",
        "common.ring",
        "pattern_ingester",
        "schema_config",
    ] {
        assert!(log.contains(key), "{key} not in the warning: {log}");
    }
    assert_eq!(push(&p.url("/loki/api/v1/push"), &["hello"]).await, 204);
    assert_eq!(
        count(&p.url("/loki/api/v1/query_range")).await,
        (reqwest::StatusCode::OK, 1)
    );
    let shown = reqwest::get(p.url("/config?mode=diff"))
        .await
        .expect("config")
        .text()
        .await
        .expect("text");
    assert!(shown.contains("max_query_series: 1000"), "{shown}");
    assert!(
        shown.contains("# ignored (no effect in Parquetry): pattern_ingester"),
        "{shown}"
    );
    assert!(
        !shown.contains("max_line_size"),
        "diff shows only changed keys: {shown}"
    );
}

#[test]
fn a_typo_fails_with_the_key_named_and_verify_config_checks_only() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let bad = tmp.path().join("bad.yaml");
    std::fs::write(
        &bad,
        "server:\n  http_listen_port: 3100\n  grpc_listen_prot: 9095\n",
    )
    .expect("write");
    let out = Command::new(BIN)
        .arg(format!("-config.file={}", bad.display()))
        .arg("-verify-config")
        .output()
        .expect("run");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("server.grpc_listen_prot"), "{err}");

    let fixture = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../tests/fixtures/loki/loki2-table-manager.yaml"
    );
    let out = Command::new(BIN)
        .args([
            &format!("-config.file={fixture}"),
            "-verify-config",
            "-server.http-listen-port=3999",
            "-auth.enabled",
        ])
        .output()
        .expect("run");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let shown = String::from_utf8_lossy(&out.stderr);
    assert!(
        shown.contains("retention_period: 48h") || shown.contains("retention_period: 2d"),
        "{shown}"
    );
    assert!(shown.contains("retention_enabled: true"), "{shown}");
    assert!(shown.contains("http_listen_port: 3999"), "{shown}");
    assert!(shown.contains("auth_enabled: true"), "{shown}");
    assert!(
        shown.contains(
            "translated: table_manager.retention_period → limits_config.retention_period"
        ),
        "{shown}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_backends_take_turns_through_the_lease() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (storage_yaml, env) = storage(tmp.path());
    let config = tmp.path().join("config.yaml");
    std::fs::write(
        &config,
        format!(
            "{storage_yaml}compactor:\n  compaction_interval: 500ms\n  hot_object_min_age: 0s\n"
        ),
    )
    .expect("config");
    let file = format!("-config.file={}", config.display());
    let args = [file.as_str(), "-config.expand-env=true", "-target=backend"];
    let mut a = Proc::start(&args, &env);
    let mut b = Proc::start(&args, &env);
    a.ready().await;
    b.ready().await;
    // Ten ticks each: one process holds the lease throughout and renews it every tick.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let passes = |p: &Proc| p.log().matches("compaction pass done").count();
    let (pa, pb) = (passes(&a), passes(&b));
    assert!(
        (pa > 0) != (pb > 0),
        "exactly one backend compacts: {pa} and {pb} passes\n{}\n{}",
        a.log(),
        b.log()
    );
}
