//! The ruler end to end: rule groups through Loki's ruler API, evaluated by the ruler's timer
//! against pushed logs, alerts delivered to a real Alertmanager and recorded series to a real
//! Prometheus (remote-write receiver), both on loopback. Bad rules are refused with Loki's
//! codes and messages (recorded from a reference Loki) and, in a local rule directory,
//! reported without stopping the good ones.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parquetry_e2e::{TestServer, now_ns};
use parquetry_query::QueryEngine;
use parquetry_store::Store;
use parquetry_test_support::free_port;
use serde_json::Value;

/// JSON bodies without reqwest's `json` feature.
trait JsonBody {
    fn json(self) -> impl Future<Output = Result<Value, String>>;
}

impl JsonBody for reqwest::Response {
    async fn json(self) -> Result<Value, String> {
        let text = self.text().await.map_err(|e| e.to_string())?;
        serde_json::from_str(&text).map_err(|e| format!("{e}: {text}"))
    }
}

/// A child process killed when the test ends, however it ends.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn find_binary(names: &[&str]) -> Option<String> {
    for n in names {
        for dir in ["/usr/bin", "/usr/local/bin", "/bin"] {
            let p = Path::new(dir).join(n);
            if p.is_file() {
                return Some(p.display().to_string());
            }
        }
    }
    None
}

/// Alertmanager and Prometheus, or `None` to skip; with `PARQUETRY_TEST_REQUIRE_RULER_DEPS=1`
/// (CI) missing binaries fail the test.
fn deps() -> Option<(String, String)> {
    let am = find_binary(&["prometheus-alertmanager", "alertmanager"]);
    let prom = find_binary(&["prometheus"]);
    match (am, prom) {
        (Some(a), Some(p)) => Some((a, p)),
        _ => {
            assert!(
                std::env::var("PARQUETRY_TEST_REQUIRE_RULER_DEPS").as_deref() != Ok("1"),
                "PARQUETRY_TEST_REQUIRE_RULER_DEPS=1 but prometheus-alertmanager or prometheus is not installed (apt-get install prometheus prometheus-alertmanager)"
            );
            eprintln!("skipping: prometheus-alertmanager and prometheus are not installed");
            None
        }
    }
}

async fn wait_ready(client: &reqwest::Client, url: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        if let Ok(r) = client.get(url).send().await
            && r.status().is_success()
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    panic!("{url} did not become ready");
}

fn start_alertmanager(bin: &str, dir: &Path) -> (Proc, String) {
    let port = free_port();
    let cfg = dir.join("alertmanager.yml");
    std::fs::write(
        &cfg,
        "route:\n  receiver: blackhole\n  group_wait: 0s\nreceivers:\n- name: blackhole\n",
    )
    .unwrap();
    let child = Command::new(bin)
        .arg(format!("--config.file={}", cfg.display()))
        .arg(format!("--storage.path={}", dir.join("am-data").display()))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .arg("--cluster.listen-address=")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start alertmanager");
    (Proc(child), format!("http://127.0.0.1:{port}"))
}

fn start_prometheus(bin: &str, dir: &Path) -> (Proc, String) {
    let port = free_port();
    let cfg = dir.join("prometheus.yml");
    std::fs::write(&cfg, "global:\n  scrape_interval: 1m\nscrape_configs: []\n").unwrap();
    let child = Command::new(bin)
        .arg(format!("--config.file={}", cfg.display()))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.join("prom-data").display()
        ))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .arg("--web.enable-remote-write-receiver")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start prometheus");
    (Proc(child), format!("http://127.0.0.1:{port}"))
}

/// Starts the ruler's timer of `server`, as `parquetry serve` does in the backend role.
fn start_ruler(server: &TestServer) -> tokio::task::JoinHandle<()> {
    let config = server.config().clone();
    let store =
        Arc::new(Store::open_with_env(&server.storage_url, &config.storage, []).expect("store"));
    let engine = QueryEngine::new(store.clone());
    parquetry_ruler::spawn(Arc::new(config), store, engine)
}

async fn push_errors(server: &TestServer, n: usize) {
    let now = now_ns();
    let lines: Vec<String> = (0..n)
        .map(|i| format!("level=error request {i} failed"))
        .collect();
    let entries = lines
        .iter()
        .enumerate()
        .map(|(i, l)| (now + i as i64, l.as_str(), vec![]))
        .collect();
    server
        .push_protobuf(&[("{service_name=\"api\"}", entries)])
        .await;
}

async fn am_alerts(client: &reqwest::Client, am: &str) -> Vec<Value> {
    let r = client
        .get(format!("{am}/api/v2/alerts"))
        .send()
        .await
        .unwrap();
    let v: Value = r.json().await.unwrap_or(Value::Null);
    v.as_array().cloned().unwrap_or_default()
}

const GROUP: &str = r#"name: api-errors
interval: 1s
rules:
- alert: ApiErrors
  expr: sum by (service_name) (count_over_time({service_name="api"} |= "error" [8s])) > 0
  for: 2s
  labels:
    severity: page
  annotations:
    summary: '{{ $labels.service_name }} is failing ({{ $value }} errors)'
- record: api:error_lines:count8s
  expr: sum by (service_name) (count_over_time({service_name="api"} |= "error" [8s]))
  labels:
    source: parquetry
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alerts_reach_alertmanager_resolve_and_recordings_reach_prometheus() {
    let Some((am_bin, prom_bin)) = deps() else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let (_am, am) = start_alertmanager(&am_bin, tmp.path());
    let (_prom, prom) = start_prometheus(&prom_bin, tmp.path());
    let client = reqwest::Client::new();
    wait_ready(&client, &format!("{am}/-/ready")).await;
    wait_ready(&client, &format!("{prom}/-/ready")).await;

    let yaml = format!(
        "ruler:\n  alertmanager_url: {am}\n  external_url: http://grafana.example\n  poll_interval: 1s\n  evaluation_interval: 1s\n  remote_write:\n    enabled: true\n    client:\n      url: {prom}/api/v1/write\n"
    );
    let server = TestServer::start(&yaml).await;
    let r = client
        .post(server.url("/loki/api/v1/rules/team-a"))
        .header("Content-Type", "application/yaml")
        .body(GROUP)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let ruler = start_ruler(&server);

    // Errors keep coming until Alertmanager lists the alert.
    let deadline = Instant::now() + Duration::from_secs(90);
    let alert = loop {
        assert!(Instant::now() < deadline, "no alert reached Alertmanager");
        push_errors(&server, 3).await;
        tokio::time::sleep(Duration::from_millis(700)).await;
        let alerts = am_alerts(&client, &am).await;
        if let Some(a) = alerts
            .into_iter()
            .find(|a| a["labels"]["alertname"] == "ApiErrors")
        {
            break a;
        }
    };
    assert_eq!(alert["labels"]["severity"], "page", "{alert}");
    assert_eq!(alert["labels"]["service_name"], "api", "{alert}");
    let summary = alert["annotations"]["summary"].as_str().unwrap_or_default();
    assert!(summary.starts_with("api is failing ("), "{alert}");
    assert!(
        alert["generatorURL"]
            .as_str()
            .unwrap_or_default()
            .starts_with("http://grafana.example/graph?g0.expr="),
        "{alert}"
    );
    assert_eq!(alert["status"]["state"], "active", "{alert}");

    // The Prometheus-compatible views show it firing.
    let v: Value = client
        .get(server.url("/prometheus/api/v1/alerts"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let listed = v["data"]["alerts"].as_array().cloned().unwrap_or_default();
    assert!(
        listed
            .iter()
            .any(|a| a["labels"]["alertname"] == "ApiErrors" && a["state"] == "firing"),
        "{v}"
    );
    let v: Value = client
        .get(server.url("/prometheus/api/v1/rules"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let g = &v["data"]["groups"][0];
    assert_eq!(g["name"], "api-errors", "{v}");
    assert_eq!(g["file"], "team-a", "{v}");
    assert_eq!(g["rules"][0]["health"], "ok", "{v}");
    assert_eq!(g["rules"][0]["type"], "alerting", "{v}");
    assert_eq!(g["rules"][1]["type"], "recording", "{v}");

    // The recording rule's series is in Prometheus.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let v: Value = client
            .get(format!("{prom}/api/v1/query"))
            .query(&[("query", "api:error_lines:count8s")])
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap_or(Value::Null);
        let result = v["data"]["result"].as_array().cloned().unwrap_or_default();
        if let Some(s) = result.first() {
            assert_eq!(s["metric"]["service_name"], "api", "{v}");
            assert_eq!(s["metric"]["source"], "parquetry", "{v}");
            let value: f64 = s["value"][1].as_str().unwrap_or("0").parse().unwrap_or(0.0);
            assert!(value > 0.0, "{v}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no recorded series in Prometheus: {v}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }

    // No more errors: the count falls out of its 8 s window, the alert resolves, and the
    // resolve reaches Alertmanager (the alert was sent valid for minutes, so only a resolve
    // makes it leave the active list this soon).
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let alerts = am_alerts(&client, &am).await;
        let active = alerts
            .iter()
            .any(|a| a["labels"]["alertname"] == "ApiErrors" && a["status"]["state"] == "active");
        if !active {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "alert never resolved: {alerts:?}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let v: Value = client
        .get(server.url("/prometheus/api/v1/alerts"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let listed = v["data"]["alerts"].as_array().cloned().unwrap_or_default();
    assert!(listed.iter().all(|a| a["state"] == "inactive"), "{v}");
    ruler.abort();
    server.stop().await;
}

async fn text(r: reqwest::Response) -> (u16, String) {
    let s = r.status().as_u16();
    // Loki's bodies end in a newline (Go's http.Error); only the text is compared.
    (s, r.text().await.unwrap_or_default().trim_end().to_string())
}

/// Status codes and messages as the reference Loki answers them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rules_api_refuses_bad_groups_with_lokis_messages() {
    let server = TestServer::start("").await;
    let c = reqwest::Client::new();
    let post = |body: &'static str| {
        c.post(server.url("/loki/api/v1/rules/ns1"))
            .header("Content-Type", "application/yaml")
            .body(body)
            .send()
    };
    assert_eq!(
        text(
            c.get(server.url("/loki/api/v1/rules"))
                .send()
                .await
                .unwrap()
        )
        .await,
        (404, "no rule groups found".into())
    );
    let (s, b) = text(
        post("name: g1\nrules:\n- alert: A\n  expr: sum(rate({app=\"x\"[1m])) > 0\n")
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(s, 400);
    assert_eq!(
        b.trim_end(),
        "could not parse expression for alert 'A' in group 'g1': parse error at line 0, col 18: syntax error: unexpected RANGE, expecting } or ,"
    );
    assert_eq!(
        text(post("name: [g1\n").await.unwrap()).await,
        (400, "unable to decoded rule group".into())
    );
    let (s, b) = text(
        post("name: g1\nrules:\n- record: a-b\n  expr: sum(rate({app=\"x\"}[1m]))\n")
            .await
            .unwrap(),
    )
    .await;
    assert_eq!((s, b.trim_end()), (400, "invalid recording rule name: a-b"));
    let (s, b) = text(post("rules: []\n").await.unwrap()).await;
    assert_eq!(
        (s, b.trim_end()),
        (400, "group 0: Groupname must not be empty")
    );

    // A good group is stored, listed and read back; deleting twice is a 404.
    let (s, b) = text(
        post("name: g1\nrules:\n- record: x:y\n  expr: sum(rate({app=\"x\"}[1m]))\n")
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(s, 202, "{b}");
    let v: Value = serde_json::from_str(&b).unwrap();
    assert_eq!(v["status"], "success");
    let (s, b) = text(
        c.get(server.url("/loki/api/v1/rules"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(s, 200);
    let listed: serde_yaml::Value = serde_yaml::from_str(&b).unwrap();
    assert_eq!(listed["ns1"][0]["name"].as_str(), Some("g1"), "{b}");
    assert_eq!(
        listed["ns1"][0]["rules"][0]["record"].as_str(),
        Some("x:y"),
        "{b}"
    );
    let (s, b) = text(
        c.get(server.url("/loki/api/v1/rules/ns1/g1"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(s, 200);
    assert!(b.starts_with("name: g1\n"), "{b}");
    assert_eq!(
        text(
            c.get(server.url("/loki/api/v1/rules/ns1/nope"))
                .send()
                .await
                .unwrap()
        )
        .await,
        (404, "group does not exist".into())
    );
    let (s, _) = text(
        c.delete(server.url("/loki/api/v1/rules/ns1/g1"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(s, 202);
    assert_eq!(
        text(
            c.delete(server.url("/loki/api/v1/rules/ns1/g1"))
                .send()
                .await
                .unwrap()
        )
        .await,
        (404, "group does not exist".into())
    );
    assert_eq!(
        text(
            c.delete(server.url("/loki/api/v1/rules/ns1"))
                .send()
                .await
                .unwrap()
        )
        .await,
        (404, "group namespace does not exist".into())
    );
    server.stop().await;
}

/// A local rule directory (Loki's `ruler.storage.type: local`): bad files are reported by the
/// API with Loki's messages and skipped by the evaluator, which runs the good ones; writes
/// answer Loki's "unsupported in rule local store".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_rule_files_bad_ones_reported_not_fatal() {
    let rules = tempfile::tempdir().unwrap();
    let dir = rules.path().join("fake");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("good.yaml"),
        "groups:\n- name: g1\n  rules:\n  - record: api:lines:count1m\n    expr: sum(count_over_time({service_name=\"api\"}[1m]))\n",
    )
    .unwrap();
    let yaml = format!(
        "ruler:\n  evaluation_interval: 1s\n  storage:\n    type: local\n    local:\n      directory: {}\n",
        rules.path().display()
    );
    let server = TestServer::start(&yaml).await;
    let c = reqwest::Client::new();
    let (s, b) = text(
        c.get(server.url("/loki/api/v1/rules"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(s, 200, "{b}");
    assert!(b.contains("good.yaml:"), "{b}");

    for (name, body, msg) in [
        (
            "badq.yaml",
            "groups:\n- name: g1\n  rules:\n  - alert: A\n    expr: sum(rate({app=\"x\"[1m]))\n",
            "could not parse expression for alert 'A' in group 'g1': parse error at line 0, col 18: syntax error: unexpected RANGE, expecting } or ,",
        ),
        (
            "dup.yaml",
            "groups:\n- name: g1\n  rules: []\n- name: g1\n  rules: []\n",
            "groupname: \"g1\" is repeated in the same file",
        ),
        ("bady.yaml", "groups:\n- name: g1\n  rules: [\n", ""),
    ] {
        let path = dir.join(name);
        std::fs::write(&path, body).unwrap();
        let (s, b) = text(
            c.get(server.url("/loki/api/v1/rules"))
                .send()
                .await
                .unwrap(),
        )
        .await;
        assert_eq!(s, 400, "{b}");
        let prefix = format!(
            "failed to list rule group for user fake and namespace {name}: error parsing {p}: {p}: ",
            p = path.display()
        );
        assert!(b.starts_with(&prefix), "{b}");
        assert!(b.trim_end().ends_with(msg), "{b}");
        if name != "bady.yaml" {
            std::fs::remove_file(&path).unwrap();
        }
    }
    // The bad YAML file stays: the ruler starts anyway and evaluates the good group.
    let ruler = start_ruler(&server);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let v: Value = c
            .get(server.url("/prometheus/api/v1/rules"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap_or(Value::Null);
        if v["data"]["groups"][0]["rules"][0]["health"] == "ok" {
            break;
        }
        assert!(Instant::now() < deadline, "good group never evaluated: {v}");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let (s, b) = text(
        c.post(server.url("/loki/api/v1/rules/ns1"))
            .header("Content-Type", "application/yaml")
            .body("name: g1\nrules: []\n")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(
        (s, b.trim_end()),
        (500, "SetRuleGroup unsupported in rule local store")
    );
    let (s, b) = text(
        c.delete(server.url("/loki/api/v1/rules/good.yaml/g1"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(s, 500);
    let v: Value = serde_json::from_str(&b).unwrap();
    assert_eq!(v["errorType"], "server_error");
    assert_eq!(
        v["error"],
        "DeleteRuleGroup unsupported in rule local store"
    );
    ruler.abort();
    server.stop().await;
}
