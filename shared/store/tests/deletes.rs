//! The compactor's delete pass (delete requests and `retention_stream`): content after a
//! rewrite, and a crash at every store operation of it.

use std::sync::Arc;
use std::time::Duration;

use object_store::ObjectStore;
use object_store::local::LocalFileSystem;
use parquetry_model::Labels;
use parquetry_store::compact::{NoProgress, Row, read_all_rows};
use parquetry_store::faulty::FaultyStore;
use parquetry_store::rewrite::StreamRule;
use parquetry_store::{
    CompactOptions, DeletePassOptions, LogEntry, Store, StreamEntries, TenantPolicy,
};

use parquetry_test_support::{DAY_NS, early_yesterday as base};

fn labels(svc: &str, pod: usize) -> Labels {
    Labels::from_pairs([
        ("service_name", svc.to_string()),
        ("pod", format!("p{pod}")),
    ])
}

fn push(seq: i64, base: i64, n: i64) -> Vec<StreamEntries> {
    ["api", "web"]
        .iter()
        .flat_map(|svc| {
            (0..2).map(move |pod| StreamEntries {
                labels: labels(svc, pod),
                entries: (0..n)
                    .map(|i| LogEntry {
                        ts_ns: base + seq * 1_000_000 + i * 1_000,
                        line: format!("{svc} p{pod} push {seq} line {i}").into(),
                        structured_metadata: Vec::new(),
                    })
                    .collect(),
            })
        })
        .collect()
}

fn compact_opts() -> CompactOptions {
    CompactOptions {
        hot_min_age: Duration::ZERO,
        target_size: 256 << 20,
        delete_delay: Duration::ZERO,
        max_inputs: 1000,
    }
}

fn pass(dry_run: bool) -> DeletePassOptions {
    DeletePassOptions {
        cancel_period: Duration::ZERO,
        delete_delay: Duration::ZERO,
        dry_run,
    }
}

fn deletes_only(_: &str) -> TenantPolicy {
    TenantPolicy {
        physical_deletes: true,
        stream_rules: Vec::new(),
    }
}

async fn visible(store: &Store, base: i64) -> Vec<Row> {
    let objs = store
        .list("fake", base - DAY_NS, base + DAY_NS, |_| true)
        .await
        .unwrap();
    read_all_rows(store, &objs).await.unwrap()
}

fn local() -> (tempfile::TempDir, Arc<dyn ObjectStore>) {
    let dir = tempfile::tempdir().unwrap();
    let inner: Arc<dyn ObjectStore> =
        Arc::new(LocalFileSystem::new_with_prefix(dir.path()).unwrap());
    (dir, inner)
}

/// For every k: fail the k-th put/delete/list of a delete pass and everything after it. The
/// live content is then either all of it or all of it minus the deleted entries, never a
/// mix; a clean pass leaves exactly everything except the deleted entries, the request
/// processed, and after garbage collection no stored byte of a deleted entry.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_pass_survives_a_crash_at_every_step() {
    let mut k = 1;
    loop {
        let (_dir, inner) = local();
        let faulty = Arc::new(FaultyStore::new(inner));
        let store = Store::from_object_store(faulty.clone(), "faulty", vec!["service_name".into()]);
        let base = base();
        for seq in 0..3 {
            store.write("fake", push(seq, base, 3)).await.unwrap();
        }
        // Cold objects, plus a hot one: both kinds get rewritten.
        store.compact(&compact_opts(), &NoProgress).await.unwrap();
        store.write("fake", push(3, base, 3)).await.unwrap();
        let before = visible(&store, base).await;
        let target = labels("api", 0).fingerprint();
        let expected: Vec<Row> = before
            .iter()
            .filter(|r| !(r.stream == target && r.line.contains("line 1")))
            .cloned()
            .collect();
        assert!(expected.len() < before.len());
        let req = store
            .add_delete_request(
                "fake",
                r#"{service_name="api", pod="p0"} |= "line 1""#,
                base - DAY_NS / 2,
                base + DAY_NS / 2,
            )
            .await
            .unwrap();

        faulty.crash_at(k);
        let crashed = store.apply_deletes(&pass(false), deletes_only).await;
        let reached = faulty.ops() >= k;
        faulty.heal();
        let now = visible(&store, base).await;
        assert!(
            now == before || now == expected,
            "crash at {k}: a mix of old and rewritten objects is live"
        );
        store
            .apply_deletes(&pass(false), deletes_only)
            .await
            .unwrap_or_else(|e| panic!("clean pass after crash at {k}: {e}"));
        assert_eq!(visible(&store, base).await, expected, "crash at {k}");
        let requests = store.delete_requests("fake").await.unwrap();
        assert!(
            requests
                .iter()
                .any(|r| r.request.request_id == req.request_id && r.processed),
            "crash at {k}: request not processed"
        );
        // A further pass has nothing to do.
        let again = store
            .apply_deletes(&pass(false), deletes_only)
            .await
            .unwrap();
        assert_eq!(again.objects_rewritten, 0);
        // Garbage collection (two passes: orphans are collected once seen) removes the old
        // objects: no stored byte of a deleted entry remains.
        for _ in 0..2 {
            store.compact(&compact_opts(), &NoProgress).await.unwrap();
        }
        assert_eq!(visible(&store, base).await, expected, "crash at {k}");
        let all = store.stored_rows().await.unwrap();
        assert!(
            !all.iter()
                .any(|r| r.stream == target && r.line.contains("line 1")),
            "crash at {k}: deleted entries still stored"
        );
        if !reached {
            assert!(crashed.is_ok());
            eprintln!("delete pass crash-tested at all {} operations", k - 1);
            break;
        }
        assert!(crashed.is_err(), "crash at {k} not reported");
        k += 1;
    }
    assert!(k > 5, "too few operations to be a meaningful test: {k}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_wait_for_their_cancel_period_and_filter_only_keeps_storage() {
    let (_dir, inner) = local();
    let store = Store::from_object_store(inner, "local", vec!["service_name".into()]);
    let base = base();
    store.write("fake", push(0, base, 3)).await.unwrap();
    let before = visible(&store, base).await;
    store
        .add_delete_request(
            "fake",
            r#"{service_name="web"}"#,
            base - DAY_NS,
            base + DAY_NS,
        )
        .await
        .unwrap();
    let waiting = DeletePassOptions {
        cancel_period: Duration::from_secs(3600),
        ..pass(false)
    };
    let s = store.apply_deletes(&waiting, deletes_only).await.unwrap();
    assert_eq!(s.objects_rewritten, 0);
    assert!(s.requests_processed.is_empty());
    let filter_only = |_: &str| TenantPolicy::default();
    let s = store
        .apply_deletes(&pass(false), filter_only)
        .await
        .unwrap();
    assert_eq!(s.objects_rewritten, 0);
    assert_eq!(visible(&store, base).await, before);
    let s = store
        .apply_deletes(&pass(false), deletes_only)
        .await
        .unwrap();
    assert_eq!(s.objects_rewritten, 1, "{s:?}");
    assert_eq!(s.requests_processed.len(), 1);
    let after = visible(&store, base).await;
    let web: Vec<u64> = (0..2).map(|p| labels("web", p).fingerprint()).collect();
    assert!(after.iter().all(|r| !web.contains(&r.stream)));
    assert_eq!(after.len(), before.len() - 6);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_stream_removes_only_the_streams_it_names() {
    let (_dir, inner) = local();
    let store = Store::from_object_store(inner, "local", vec!["service_name".into()]);
    let base = base();
    for seq in 0..2 {
        store.write("fake", push(seq, base, 4)).await.unwrap();
    }
    let before = visible(&store, base).await;
    let rules = |_: &str| TenantPolicy {
        physical_deletes: true,
        stream_rules: vec![
            StreamRule::parse(
                r#"{service_name="api", pod="p1"}"#,
                1,
                Duration::from_secs(3600),
            )
            .unwrap(),
            // Lower priority: the rule above wins for api/p1, this one for nothing else.
            StreamRule::parse(
                r#"{service_name="api"}"#,
                0,
                Duration::from_secs(400 * 86_400),
            )
            .unwrap(),
        ],
    };
    let dry = store.apply_deletes(&pass(true), rules).await.unwrap();
    assert_eq!(dry.rules.len(), 2);
    assert_eq!(
        (dry.rules[0].streams, dry.rules[0].entries),
        (1, 8),
        "{dry:?}"
    );
    assert!(dry.rules[0].bytes > 0);
    assert_eq!((dry.rules[1].streams, dry.rules[1].entries), (0, 0));
    assert_eq!(
        visible(&store, base).await,
        before,
        "a dry run changes nothing"
    );
    let done = store.apply_deletes(&pass(false), rules).await.unwrap();
    assert_eq!(done.rules[0].entries, 8);
    let gone = labels("api", 1).fingerprint();
    let expected: Vec<Row> = before
        .iter()
        .filter(|r| r.stream != gone)
        .cloned()
        .collect();
    assert_eq!(visible(&store, base).await, expected);
}
