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

/// Where a [`TestServer`] keeps its objects: chosen for the whole run by
/// `PARQUETRY_TEST_BACKEND` (`local`, the default, or `s3`), so scripts/test.sh runs the same
/// end-to-end tests once per backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Local,
    S3,
}

impl Backend {
    /// The backend of this run. `s3` without the `PARQUETRY_TEST_S3_*` variables is a failure,
    /// never a silent fallback to the local directory.
    pub fn current() -> Backend {
        match std::env::var("PARQUETRY_TEST_BACKEND").as_deref() {
            Err(_) | Ok("") | Ok("local") => Backend::Local,
            Ok("s3") => Backend::S3,
            Ok(other) => panic!("PARQUETRY_TEST_BACKEND={other:?}: expected local or s3"),
        }
    }
}

/// The S3 test server's coordinates, exported by scripts/test.sh from scripts/s3-server.sh.
#[derive(Clone)]
struct S3Target {
    endpoint: String,
    bucket: String,
    region: String,
    access_key_id: String,
    secret_access_key: String,
}

impl S3Target {
    fn from_env() -> S3Target {
        let var = |k: &str| {
            let name = format!("PARQUETRY_TEST_S3_{k}");
            std::env::var(&name).unwrap_or_else(|_| {
                panic!(
                    "PARQUETRY_TEST_BACKEND=s3 needs {name}: run the suite with scripts/test.sh, \
                     which starts scripts/s3-server.sh and exports it"
                )
            })
        };
        S3Target {
            endpoint: var("ENDPOINT"),
            bucket: var("BUCKET"),
            region: var("REGION"),
            access_key_id: var("ACCESS_KEY_ID"),
            secret_access_key: var("SECRET_ACCESS_KEY"),
        }
    }

    /// The storage settings as environment overrides, the way a deployment would pass them.
    fn overrides(&self, prefix: &str) -> Vec<(String, String)> {
        [
            ("URL", format!("s3://{}/{prefix}", self.bucket)),
            ("S3__ENDPOINT", self.endpoint.clone()),
            ("S3__REGION", self.region.clone()),
            ("S3__ACCESS_KEY_ID", self.access_key_id.clone()),
            ("S3__SECRET_ACCESS_KEY", self.secret_access_key.clone()),
        ]
        .into_iter()
        .map(|(k, v)| (format!("PARQUETRY__STORAGE__{k}"), v))
        .collect()
    }
}

/// A key prefix no other test (or earlier run) uses, named after the test for debugging.
fn fresh_prefix() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    let test = std::thread::current()
        .name()
        .unwrap_or("test")
        .rsplit("::")
        .next()
        .unwrap_or("test")
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect::<String>();
    format!(
        "e2e/{test}-{}-{}-{}",
        std::process::id(),
        now_ns(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// A server running in this process, serving the real router over real TCP.
pub struct TestServer {
    pub base: String,
    /// The store's directory on the local backend. On S3, [`TestServer::parquet_files`]
    /// downloads the objects here, under their keys, so both backends read alike.
    pub data_dir: PathBuf,
    pub backend: Backend,
    /// The storage URL the server runs on (`s3://bucket/prefix` on S3).
    pub storage_url: String,
    config: Config,
    _tmp: Option<tempfile::TempDir>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl TestServer {
    /// Starts on fresh, empty storage (a temporary directory, or a new S3 prefix) with the
    /// defaults plus `yaml`.
    pub async fn start(yaml: &str) -> TestServer {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path().to_path_buf();
        let mut s = Self::start_on(&dir, yaml).await;
        s._tmp = Some(tmp);
        s
    }

    /// Starts on the storage that belongs to `dir` (to test restarts): the directory itself,
    /// or on S3 the prefix recorded in it by the first start.
    pub async fn start_on(dir: &Path, yaml: &str) -> TestServer {
        let backend = Backend::current();
        let overrides = match backend {
            Backend::Local => vec![],
            Backend::S3 => S3Target::from_env().overrides(&s3_prefix_of(dir)),
        };
        let mut config = Config::from_yaml_and_env(yaml, overrides).expect("config");
        if backend == Backend::Local {
            config.storage.url = Some(dir.to_str().expect("utf-8 path").to_string());
        }
        let storage_url = config.storage_url();
        // No ambient AWS_* variables: the configuration alone decides.
        let store =
            Arc::new(Store::open_with_env(&storage_url, &config.storage, []).expect("store"));
        let app = router(AppState::new(config.clone(), store));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let (tx, rx) = oneshot::channel::<()>();
        let serve_config = config.clone();
        let task = tokio::spawn(async move {
            parquetry_api::serve(listener, app, &serve_config, async {
                let _ = rx.await;
            })
            .await;
        });
        TestServer {
            base: format!("http://{addr}"),
            data_dir: dir.to_path_buf(),
            backend,
            storage_url,
            config,
            _tmp: None,
            stop: Some(tx),
            task: Some(task),
        }
    }

    /// The configuration the server runs with (storage as resolved for the backend).
    pub fn config(&self) -> &Config {
        &self.config
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

    /// Runs one compaction pass over the server's storage, as `parquetry compact` would, with
    /// no minimum age so every hot object is merged. Returns the pass's summary.
    pub async fn compact(&self) -> parquetry_store::CompactSummary {
        let store =
            Store::open_with_env(&self.storage_url, &self.config.storage, []).expect("store");
        let opts = parquetry_store::CompactOptions {
            hot_min_age: std::time::Duration::ZERO,
            ..parquetry_store::CompactOptions::from_config(&self.config.compactor)
        };
        let summary = store
            .compact(&opts, &parquetry_store::compact::NoProgress)
            .await
            .expect("compaction pass");
        // Delete requests and `retention_stream` rules, as `parquetry compact` applies them.
        store
            .apply_deletes(
                &parquetry_store::DeletePassOptions::from_config(&self.config.compactor),
                |t| parquetry_store::TenantPolicy::from_config(&self.config, t),
            )
            .await
            .expect("delete pass");
        summary
    }

    /// Every Parquet object written so far, as local files (on S3: fresh downloads into
    /// `data_dir`, so external readers such as pyarrow read what S3 holds).
    pub fn parquet_files(&self) -> Vec<PathBuf> {
        if self.backend == Backend::S3 {
            self.download_objects();
        }
        let mut out = Vec::new();
        walk(&self.data_dir, &mut out);
        out.retain(|p| p.extension().is_some_and(|e| e == "parquet"));
        out.sort();
        out
    }

    /// Copies every object under the server's S3 prefix to `data_dir`/key. Runs on its own
    /// thread and runtime with its own client, since the caller's runtime may be the
    /// single-threaded one of the test, blocked in this call.
    fn download_objects(&self) {
        let url = self.storage_url.clone();
        let storage = self.config.storage.clone();
        let dir = self.data_dir.clone();
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(async move {
                let store = Store::open_with_env(&url, &storage, []).expect("store");
                for (key, _) in store.list_keys("").await.expect("list S3 objects") {
                    let bytes = store.read_key(&key).await.expect("read S3 object");
                    let file = dir.join(&key);
                    if let Some(parent) = file.parent() {
                        std::fs::create_dir_all(parent).expect("mkdir");
                    }
                    std::fs::write(&file, &bytes[..]).expect("write download");
                }
            })
        })
        .join()
        .expect("download thread");
    }
}

/// The S3 prefix that belongs to `dir`: recorded in it on first use, so a restart on the same
/// directory finds the same objects.
fn s3_prefix_of(dir: &Path) -> String {
    let marker = dir.join(".parquetry-test-s3-prefix");
    if let Ok(p) = std::fs::read_to_string(&marker) {
        return p.trim().to_string();
    }
    let p = fresh_prefix();
    std::fs::create_dir_all(dir).expect("mkdir");
    std::fs::write(&marker, &p).expect("record the S3 prefix");
    p
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
