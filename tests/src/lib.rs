//! Helpers shared by the end-to-end tests: a real Parquetry server on a random loopback
//! port, clients that speak the Loki wire formats, and the paths of the external client
//! libraries the tests drive.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use parquetry_api::{AppState, router};
use parquetry_model::Config;
use parquetry_store::Store;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// A server running in this process, serving the real router over real TCP.
pub struct TestServer {
    pub base: String,
    pub data_dir: PathBuf,
    _tmp: Option<tempfile::TempDir>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl TestServer {
    /// Starts on a fresh temporary directory with the defaults plus `yaml`.
    pub async fn start(yaml: &str) -> TestServer {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path().to_path_buf();
        let mut s = Self::start_on(&dir, yaml).await;
        s._tmp = Some(tmp);
        s
    }

    /// Starts on an existing directory (to test restarts).
    pub async fn start_on(dir: &Path, yaml: &str) -> TestServer {
        let config = Config::from_yaml_and_env(yaml, []).expect("config");
        let store = Arc::new(
            Store::open(
                dir.to_str().expect("utf-8 path"),
                config.storage.partition_labels.clone(),
            )
            .expect("store"),
        );
        let app = router(AppState::new(config, store));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let (tx, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(async {
                    let _ = rx.await;
                })
                .await;
        });
        TestServer {
            base: format!("http://{addr}"),
            data_dir: dir.to_path_buf(),
            _tmp: None,
            stop: Some(tx),
            task: Some(task),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    /// Stops the server and waits until it has finished every in-flight request.
    pub async fn stop(mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.task.take() {
            let _ = t.await;
        }
    }

    /// Every Parquet object written so far.
    pub fn parquet_files(&self) -> Vec<PathBuf> {
        let mut out = Vec::new();
        walk(&self.data_dir, &mut out);
        out.retain(|p| p.extension().is_some_and(|e| e == "parquet"));
        out.sort();
        out
    }
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    for e in rd.flatten() {
        let p = e.path();
        if p.is_dir() {
            walk(&p, out);
        } else {
            out.push(p);
        }
    }
}

/// Nanoseconds since the epoch, now.
pub fn now_ns() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as i64)
        .unwrap_or(0)
}

/// One entry for [`protobuf_body`]: timestamp (ns), line, structured metadata.
pub type TestEntry<'a> = (i64, &'a str, Vec<(&'a str, &'a str)>);

/// Snappy-compressed protobuf push body, as Promtail and Alloy send.
pub fn protobuf_body(streams: &[(&str, Vec<TestEntry<'_>>)]) -> Vec<u8> {
    use parquetry_ingest::proto;
    use prost::Message;
    let req = proto::PushRequest {
        streams: streams
            .iter()
            .map(|(labels, entries)| proto::StreamAdapter {
                labels: labels.to_string(),
                entries: entries
                    .iter()
                    .map(|(ts, line, meta)| proto::EntryAdapter {
                        timestamp: Some(proto::Timestamp {
                            seconds: ts.div_euclid(1_000_000_000),
                            nanos: ts.rem_euclid(1_000_000_000) as i32,
                        }),
                        line: line.to_string(),
                        structured_metadata: meta
                            .iter()
                            .map(|(k, v)| proto::LabelPairAdapter {
                                name: k.to_string(),
                                value: v.to_string(),
                            })
                            .collect(),
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

/// Gzip of `data`.
pub fn gzip(data: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(data).expect("gzip");
    e.finish().expect("gzip")
}

/// The directory holding the client scripts and their installed libraries.
pub fn clients_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("clients")
}

/// The Python with python-logging-loki and pyarrow (set up by scripts/test.sh).
pub fn python() -> String {
    std::env::var("PARQUETRY_TEST_PYTHON").unwrap_or_else(|_| "python3".into())
}

pub fn node() -> String {
    std::env::var("PARQUETRY_TEST_NODE").unwrap_or_else(|_| "node".into())
}

/// Runs an external client to completion and fails the test with its output if it fails.
pub async fn run_client(program: &str, args: &[&str]) -> String {
    let out = tokio::process::Command::new(program)
        .args(args)
        .current_dir(clients_dir())
        .output()
        .await
        .unwrap_or_else(|e| {
            panic!("cannot run {program}: {e}; run the suite with scripts/test.sh, which installs the clients")
        });
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "{program} {args:?} failed ({}):\nstdout: {stdout}\nstderr: {}\n(run the suite with scripts/test.sh, which installs the clients)",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}
