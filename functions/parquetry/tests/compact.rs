//! `parquetry compact --once` as an operator runs it: one maintenance pass over a directory,
//! the outcome in the exit status and the log.

use std::process::{Command, Output};

use parquetry_model::Labels;
use parquetry_store::{LogEntry, Store, StreamEntries};

use parquetry_test_support::{DAY_NS, early_yesterday as yesterday};

async fn write_pushes(dir: &std::path::Path, pushes: i64) {
    let store = Store::open(dir.to_str().unwrap(), vec!["service_name".into()]).unwrap();
    for seq in 0..pushes {
        let streams = vec![StreamEntries {
            labels: Labels::from_pairs([("service_name", "api")]),
            entries: (0..3)
                .map(|i| LogEntry {
                    ts_ns: yesterday() + seq * 1_000_000 + i,
                    line: format!("push {seq} line {i}").into(),
                    structured_metadata: Vec::new(),
                })
                .collect(),
        }];
        store.write("fake", streams).await.unwrap();
    }
}

fn parquet_files(d: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(d).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(parquet_files(&p));
        } else if p.extension().is_some_and(|x| x == "parquet") {
            out.push(p);
        }
    }
    out
}

fn compact_once(dir: &std::path::Path) -> (Output, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_parquetry"))
        .args(["compact", "--once", "--data"])
        .arg(dir)
        .env("PARQUETRY__COMPACTOR__HOT_OBJECT_MIN_AGE", "0s")
        .env("RUST_LOG", "info")
        .output()
        .unwrap();
    let log = String::from_utf8_lossy(&out.stderr).into_owned();
    (out, log)
}

#[tokio::test]
async fn one_pass_compacts_and_runs_the_delete_pass() {
    let dir = tempfile::tempdir().unwrap();
    write_pushes(dir.path(), 4).await;
    assert_eq!(parquet_files(dir.path()).len(), 4);

    let (out, log) = compact_once(dir.path());
    assert!(out.status.success(), "{log}");
    assert!(
        log.lines()
            .any(|l| l.contains("compaction pass done") && l.contains("hot_absorbed: 4,")),
        "{log}"
    );
    assert!(log.contains("delete pass done"), "{log}");
    // Retention is `parquetry retention`'s: not part of this pass.
    assert!(!log.contains("retention pass"), "{log}");
    let store = Store::open(dir.path().to_str().unwrap(), vec!["service_name".into()]).unwrap();
    let live = store
        .list("fake", yesterday() - DAY_NS, yesterday() + DAY_NS, |_| true)
        .await
        .unwrap();
    assert_eq!(live.len(), 1, "{live:?}");
}

#[tokio::test]
async fn a_failed_pass_fails_the_exit_status() {
    let dir = tempfile::tempdir().unwrap();
    write_pushes(dir.path(), 2).await;
    // A manifest that does not parse: the day cannot be compacted safely. (A damaged data
    // object would not do: the merge leaves it out and goes on.)
    let victim = parquet_files(dir.path()).remove(0);
    let manifests = victim
        .parent()
        .and_then(|partition| partition.parent())
        .unwrap()
        .join(parquetry_store::manifest::MANIFEST_DIR);
    std::fs::create_dir_all(&manifests).unwrap();
    std::fs::write(manifests.join(format!("{:020}.json", 1)), b"not a manifest").unwrap();

    let (out, log) = compact_once(dir.path());
    assert!(!out.status.success(), "{log}");
    assert!(log.contains("compaction pass failed"), "{log}");
    // The delete pass still ran: steps do not depend on each other.
    assert!(log.contains("delete pass done"), "{log}");
}
