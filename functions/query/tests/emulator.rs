//! Lambda fan-out end to end under the local Lambda emulator (`cargo lambda watch`, which
//! serves the Invoke API and the runtime API on loopback): three instances of the built query
//! function poll the emulator; a Grafana query_range event invoked through the Invoke API
//! reaches one of them, which splits the query and invokes its leaves through the same API
//! (the `lambda` fan-out transport, SigV4-signed). The answers must equal the whole query's,
//! `stats.parquetry.leaves` must count the leaves, and the instances must have answered that
//! many leaf invocations.
//!
//! Needs `cargo-lambda` (`PARQUETRY_CARGO_LAMBDA`, the test venv's, or on `PATH`); without it
//! the test is skipped with a note, unless `PARQUETRY_TEST_REQUIRE_CARGO_LAMBDA=1` (CI).

mod common;

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{QUERY_RANGE, env, http_handler, invoke, seeded};
use parquetry_lambda::Role;
use serde_json::Value;

const QUERY_BIN: &str = env!("CARGO_BIN_EXE_query");
const INSTANCES: usize = 3;
const LEAVES: usize = 2;

/// A child process killed (by its own id) when the test ends, however it ends.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn cargo_lambda() -> Option<PathBuf> {
    if let Ok(p) = std::env::var("PARQUETRY_CARGO_LAMBDA") {
        return Some(PathBuf::from(p));
    }
    let venv = std::env::var("PARQUETRY_VENV")
        .map(PathBuf::from)
        .ok()
        .or_else(|| {
            std::env::var("HOME")
                .ok()
                .map(|h| Path::new(&h).join(".cache/parquetry-venv"))
        });
    if let Some(p) = venv.map(|v| v.join("bin/cargo-lambda"))
        && p.is_file()
    {
        return Some(p);
    }
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join("cargo-lambda"))
            .find(|p| p.is_file())
    })
}

fn wait_for_port(port: u16, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "{what} did not listen on {port}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The body of an API Gateway v2 response, as JSON.
fn body(resp: &Value) -> Value {
    assert_eq!(resp["isBase64Encoded"], false, "{resp}");
    serde_json::from_str(resp["body"].as_str().unwrap_or_default())
        .unwrap_or_else(|e| panic!("{e}: {resp}"))
}

/// The recorded Grafana event with `query` (and `step` for a metric query), uncompressed.
fn event(query: &str, step: Option<&str>) -> String {
    let mut v: Value = serde_json::from_str(QUERY_RANGE).unwrap();
    v["headers"]
        .as_object_mut()
        .unwrap()
        .remove("accept-encoding");
    let params = v["queryStringParameters"].as_object_mut().unwrap();
    params.insert("query".into(), query.into());
    if let Some(step) = step {
        params.insert("step".into(), step.into());
    }
    let raw: Vec<String> = params
        .iter()
        .map(|(k, v)| {
            format!(
                "{k}={}",
                percent_encoding::utf8_percent_encode(
                    v.as_str().unwrap_or_default(),
                    percent_encoding::NON_ALPHANUMERIC
                )
            )
        })
        .collect();
    v["rawQueryString"] = raw.join("&").into();
    v.to_string()
}

fn leaf_answers(logs: &[PathBuf]) -> usize {
    logs.iter()
        .map(|p| {
            std::fs::read_to_string(p)
                .unwrap_or_default()
                .matches("fan-out leaf task answered")
                .count()
        })
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lambda_fanout_under_the_emulator_answers_as_the_whole_query() {
    let Some(cargo_lambda) = cargo_lambda() else {
        assert!(
            std::env::var("PARQUETRY_TEST_REQUIRE_CARGO_LAMBDA").as_deref() != Ok("1"),
            "PARQUETRY_TEST_REQUIRE_CARGO_LAMBDA=1 but cargo-lambda was not found \
             (pip install cargo-lambda into the test venv, as .ci/run does)"
        );
        eprintln!(
            "skipped: cargo-lambda not found (set PARQUETRY_CARGO_LAMBDA or pip install \
             cargo-lambda into $HOME/.cache/parquetry-venv)"
        );
        return;
    };
    let started = Instant::now();
    let dir = seeded().await;
    let logs_dir = tempfile::tempdir().unwrap();

    let port = parquetry_test_support::free_port();
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let emulator_log = std::fs::File::create(logs_dir.path().join("emulator.log")).unwrap();
    let _emulator = Proc(
        Command::new(&cargo_lambda)
            .args(["lambda", "watch", "--only-lambda-apis", "-A", "127.0.0.1"])
            .args(["-P", &port.to_string()])
            .current_dir(&workspace)
            .stdin(Stdio::null())
            .stdout(emulator_log.try_clone().unwrap())
            .stderr(emulator_log)
            .spawn()
            .expect("start cargo lambda watch"),
    );
    wait_for_port(port, "cargo lambda watch");

    let endpoint = format!("http://127.0.0.1:{port}");
    let runtime_api = format!("{endpoint}/.rt/query");
    // Signed as in AWS (the emulator does not check the signature). The store reads the same
    // variables, as it does in Lambda where the role's credentials serve both: on S3 they are
    // the test server's keys.
    let (key_id, secret) = match parquetry_test_support::s3::Backend::current() {
        parquetry_test_support::s3::Backend::S3 => {
            let s3 = parquetry_test_support::s3::S3Env::required();
            (s3.access_key_id, s3.secret_access_key)
        }
        parquetry_test_support::s3::Backend::Local => (
            "AKIDEXAMPLE".into(),
            "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY".into(),
        ),
    };
    let function_env = env(
        dir.path(),
        &[
            ("PARQUETRY__QUERY_RANGE__FANOUT_LEAVES", &LEAVES.to_string()),
            ("PARQUETRY__QUERY_RANGE__FANOUT_TRANSPORT", "lambda"),
            ("PARQUETRY_LAMBDA_ENDPOINT", &endpoint),
            ("AWS_LAMBDA_RUNTIME_API", &runtime_api),
            ("AWS_LAMBDA_FUNCTION_NAME", "query"),
            ("AWS_LAMBDA_FUNCTION_VERSION", "1"),
            ("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "1024"),
            ("AWS_REGION", "us-east-1"),
            ("AWS_ACCESS_KEY_ID", &key_id),
            ("AWS_SECRET_ACCESS_KEY", &secret),
        ],
    );
    let mut instance_logs = Vec::new();
    let mut _instances = Vec::new();
    for i in 0..INSTANCES {
        let log = logs_dir.path().join(format!("instance-{i}.log"));
        let file = std::fs::File::create(&log).unwrap();
        instance_logs.push(log);
        _instances.push(Proc(
            Command::new(QUERY_BIN)
                .env_clear()
                .envs(function_env.iter().cloned())
                .env("PATH", std::env::var("PATH").unwrap_or_default())
                .stdin(Stdio::null())
                .stdout(file.try_clone().unwrap())
                .stderr(file)
                .spawn()
                .expect("start the query function"),
        ));
    }

    let client = reqwest::Client::new();
    let invoke_url = format!("{endpoint}/2015-03-31/functions/query/invocations");
    let mut whole = http_handler(dir.path(), Role::Query);
    let queries = [
        (r#"{service_name=~"checkout|frontend|worker"}"#, None),
        (
            r#"sum by (service_name) (count_over_time({service_name=~"checkout|frontend|worker"}[1m]))"#,
            Some("60"),
        ),
    ];
    for (n, (query, step)) in queries.into_iter().enumerate() {
        let event = event(query, step);
        let t0 = Instant::now();
        let want = body(&invoke(&mut whole, &event).await);
        let whole_time = t0.elapsed();
        assert_eq!(want["status"], "success", "{want}");
        assert!(
            !want["data"]["result"].as_array().unwrap().is_empty(),
            "{want}"
        );

        let t0 = Instant::now();
        let resp = client
            .post(&invoke_url)
            .body(event)
            .timeout(Duration::from_secs(60))
            .send()
            .await
            .unwrap();
        let status = resp.status();
        let text = resp.text().await.unwrap();
        // The cost of the transport, for docs/benchmarks.md: the root's invocation (with its
        // leaves' invocations inside) against the same query answered whole in this process.
        eprintln!(
            "{query}: whole in-process {whole_time:?}, root invocation with {LEAVES} leaf \
             invocations {:?}",
            t0.elapsed()
        );
        let diagnostics = || {
            instance_logs
                .iter()
                .chain([&logs_dir.path().join("emulator.log")])
                .map(|p| std::fs::read_to_string(p).unwrap_or_default())
                .collect::<Vec<_>>()
                .join("\n----\n")
        };
        assert_eq!(status, 200, "{text}\n{}", diagnostics());
        let resp: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(resp["statusCode"], 200, "{resp}\n{}", diagnostics());
        let got = body(&resp);
        assert_eq!(got["status"], "success", "{got}");
        assert_eq!(got["data"]["result"], want["data"]["result"], "{query}");
        assert_eq!(
            got["data"]["stats"]["parquetry"]["leaves"], LEAVES,
            "{query}: {got}"
        );
        assert_eq!(want["data"]["stats"]["parquetry"]["leaves"], 0);
        // The instances' logs are written as they answer; the root answered after its leaves.
        assert_eq!(
            leaf_answers(&instance_logs),
            LEAVES * (n + 1),
            "{}",
            diagnostics()
        );
    }
    assert!(
        started.elapsed() < Duration::from_secs(120),
        "took {:?}",
        started.elapsed()
    );
}
