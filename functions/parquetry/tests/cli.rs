//! The real binary, as an operator runs it: start, push, stop with SIGTERM, start again on
//! the same directory, and everything acknowledged is still there.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use parquetry_test_support::{free_port, now_ns};

struct Proc(Child);
impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

async fn start(dir: &std::path::Path, port: u16, extra_env: &[(&str, &str)]) -> Proc {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_parquetry"));
    cmd.args(["serve", "--listen", &format!("127.0.0.1:{port}"), "--data"])
        .arg(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    for (k, v) in extra_env {
        cmd.env(k, v);
    }
    let p = Proc(cmd.spawn().unwrap());
    let c = reqwest::Client::new();
    for _ in 0..200 {
        if let Ok(r) = c.get(format!("http://127.0.0.1:{port}/ready")).send().await
            && r.status().is_success()
        {
            return p;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("server did not become ready");
}

async fn count(port: u16) -> usize {
    let r = reqwest::Client::new()
        .get(format!("http://127.0.0.1:{port}/loki/api/v1/query_range"))
        .query(&[("query", r#"{app="cli"}"#), ("since", "1h")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let v: serde_json::Value = serde_json::from_str(&r.text().await.unwrap()).unwrap();
    v["data"]["result"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["values"].as_array().unwrap().len())
        .sum()
}

#[tokio::test]
async fn sigterm_and_restart_keep_every_acknowledged_entry() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut server = start(dir.path(), port, &[]).await;
    let t = now_ns() - 1_000_000_000;
    let c = reqwest::Client::new();
    for i in 0..5 {
        let body = serde_json::json!({"streams":[{"stream":{"app":"cli"},"values":[[(t + i).to_string(), format!("entry {i}")]]}]});
        let r = c
            .post(format!("http://127.0.0.1:{port}/loki/api/v1/push"))
            .header("Content-Type", "application/json")
            .body(body.to_string())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 204);
    }
    assert_eq!(count(port).await, 5);

    // Graceful stop: SIGTERM, and the process exits by itself, successfully.
    let pid = server.0.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    let mut exited = None;
    for _ in 0..200 {
        if let Some(s) = server.0.try_wait().unwrap() {
            exited = Some(s);
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert!(exited.expect("exits after SIGTERM").success());

    let port = free_port();
    let _server = start(dir.path(), port, &[]).await;
    assert_eq!(count(port).await, 5);
}

#[tokio::test]
async fn environment_overrides_and_bad_config_are_reported() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let _server = start(dir.path(), port, &[("PARQUETRY__AUTH_ENABLED", "true")]).await;
    let r = reqwest::Client::new()
        .get(format!("http://127.0.0.1:{port}/loki/api/v1/labels"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 401);

    let out = Command::new(env!("CARGO_BIN_EXE_parquetry"))
        .args(["serve", "--data"])
        .arg(dir.path())
        .env("PARQUETRY__LIMITS_CONFIG__NO_SUCH_LIMIT", "1")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("no_such_limit"), "{err}");
}

/// The server turns transparent huge pages off for itself (`alloc.rs`: they cost the push path
/// page zeroing and doubled its memory), unless `MIMALLOC_ALLOW_THP` in the environment says
/// otherwise. The kernel reports the process's switch in `/proc/<pid>/status`.
#[cfg(target_os = "linux")]
#[tokio::test]
async fn transparent_huge_pages_are_off_unless_the_environment_allows_them() {
    let thp = |p: &Proc| {
        std::fs::read_to_string(format!("/proc/{}/status", p.0.id()))
            .unwrap()
            .lines()
            .find_map(|l| l.strip_prefix("THP_enabled:").map(|v| v.trim().to_string()))
    };
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path(), free_port(), &[]).await;
    assert_eq!(thp(&server).as_deref(), Some("0"));
    drop(server);
    let server = start(dir.path(), free_port(), &[("MIMALLOC_ALLOW_THP", "1")]).await;
    assert_eq!(thp(&server).as_deref(), Some("1"));
}
