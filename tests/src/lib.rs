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

pub use parquetry_test_support::now_ns;
/// Where a [`TestServer`] keeps its objects: chosen for the whole run by
/// `PARQUETRY_TEST_BACKEND` (`local`, the default, or `s3`), so scripts/test.sh runs the same
/// end-to-end tests once per backend.
pub use parquetry_test_support::s3::Backend;
use parquetry_test_support::s3::{S3Env, prefix_for_dir};

/// A server running in this process, serving the real router over real TCP.
pub struct TestServer {
    /// The server's base URL (`http://127.0.0.1:<port>`).
    pub base: String,
    /// The store's directory on the local backend. On S3, [`TestServer::parquet_files`]
    /// downloads the objects here, under their keys, so both backends read alike.
    pub data_dir: PathBuf,
    /// The backend the server stores on.
    pub backend: Backend,
    /// The storage URL the server runs on (`s3://bucket/prefix` on S3).
    pub storage_url: String,
    config: Config,
    client: reqwest::Client,
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
            Backend::S3 => S3Env::required().storage_env(&prefix_for_dir(dir, "e2e")),
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
            client: reqwest::Client::new(),
            _tmp: None,
            stop: Some(tx),
            task: Some(task),
        }
    }

    /// The configuration the server runs with (storage as resolved for the backend).
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The server's URL for `path`.
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

/// No query parameters, for [`TestServer::get`].
pub const NO_PARAMS: &[(&str, &str)] = &[];

/// HTTP as a client speaks it: pushes that must be accepted, and queries whose status and body
/// the test checks. `tenant` is the `X-Scope-OrgID` header (none: the default tenant).
impl TestServer {
    /// POSTs `body` to `path` and returns the status and body, whatever they are.
    pub async fn post(
        &self,
        path: &str,
        tenant: Option<&str>,
        content_type: &str,
        body: impl Into<reqwest::Body>,
    ) -> (u16, String) {
        let mut req = self
            .client
            .post(self.url(path))
            .header("Content-Type", content_type)
            .body(body);
        if let Some(t) = tenant {
            req = req.header("X-Scope-OrgID", t);
        }
        let r = req.send().await.expect("POST");
        (r.status().as_u16(), r.text().await.expect("response body"))
    }

    /// Pushes a Loki JSON body and returns the status and body, for tests of refusals.
    pub async fn push_json(&self, tenant: Option<&str>, body: &serde_json::Value) -> (u16, String) {
        self.post(
            "/loki/api/v1/push",
            tenant,
            "application/json",
            body.to_string(),
        )
        .await
    }

    /// Pushes a Loki JSON body to the default tenant; anything but 204 fails the test.
    pub async fn push(&self, body: &serde_json::Value) {
        self.push_as(None, body).await;
    }

    /// Pushes a Loki JSON body for `tenant`; anything but 204 fails the test.
    pub async fn push_as(&self, tenant: Option<&str>, body: &serde_json::Value) {
        let (status, text) = self.push_json(tenant, body).await;
        assert_eq!(status, 204, "push refused: {text}");
    }

    /// Pushes streams as snappy protobuf (Promtail's and Alloy's format); anything but 204
    /// fails the test.
    pub async fn push_protobuf(&self, streams: &[(&str, Vec<TestEntry<'_>>)]) {
        self.push_bytes("application/x-protobuf", protobuf_body(streams))
            .await;
    }

    /// Pushes an already encoded body of `content_type`; anything but 204 fails the test.
    pub async fn push_bytes(&self, content_type: &str, body: Vec<u8>) {
        let (status, text) = self
            .post("/loki/api/v1/push", None, content_type, body)
            .await;
        assert_eq!(status, 204, "push refused: {text}");
    }

    /// GETs `path` with query `params` and returns the status and body.
    pub async fn get<P: serde::Serialize + ?Sized>(&self, path: &str, params: &P) -> (u16, String) {
        self.get_as(None, path, params).await
    }

    /// GETs `path` with query `params` as `tenant` and returns the status and body.
    pub async fn get_as<P: serde::Serialize + ?Sized>(
        &self,
        tenant: Option<&str>,
        path: &str,
        params: &P,
    ) -> (u16, String) {
        let mut req = self.client.get(self.url(path)).query(params);
        if let Some(t) = tenant {
            req = req.header("X-Scope-OrgID", t);
        }
        let r = req.send().await.expect("GET");
        (r.status().as_u16(), r.text().await.expect("response body"))
    }

    /// GETs `path` as `tenant` and returns the parsed JSON answer; anything but a 200 with a
    /// JSON body fails the test.
    pub async fn get_ok<P: serde::Serialize + std::fmt::Debug + ?Sized>(
        &self,
        tenant: Option<&str>,
        path: &str,
        params: &P,
    ) -> serde_json::Value {
        let (status, text) = self.get_as(tenant, path, params).await;
        assert_eq!(status, 200, "{path} {params:?}: {text}");
        serde_json::from_str(&text).expect("a JSON answer")
    }

    /// GETs `path` and parses the body as JSON; a body that is not JSON comes back as a JSON
    /// string, so error texts can be compared too.
    pub async fn get_json<P: serde::Serialize + ?Sized>(
        &self,
        path: &str,
        params: &P,
    ) -> (u16, serde_json::Value) {
        let (status, text) = self.get(path, params).await;
        let v = serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text));
        (status, v)
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

/// The Node.js binary the client tests run (`PARQUETRY_TEST_NODE`, else `node`).
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
