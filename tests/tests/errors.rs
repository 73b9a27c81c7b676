//! Storage failures name the object they concern, by key, so an operator knows which file to
//! look at; the server's own directory or endpoint never appears in the body. A query that
//! meets a vanished object answers 500 (as Loki does for a chunk it cannot fetch); one that
//! meets an object that cannot be decoded leaves it out and names it in `warnings`
//! (hardening/unreadable.rs has the rest of that case).

use object_store::ObjectStoreExt;
use parquetry_e2e::{TestServer, now_ns};
use parquetry_store::Store;
use serde_json::json;

/// Pushes a few lines of `app` and returns the key of the one object they landed in.
async fn one_object(s: &TestServer, app: &str, t0: i64) -> (Store, String) {
    let values: Vec<_> = (0..3)
        .map(|i| json!([(t0 + i).to_string(), format!("line {i}")]))
        .collect();
    s.push(&json!({"streams": [{"stream": {"app": app}, "values": values}]}))
        .await;
    let store = Store::open_with_env(&s.storage_url, &s.config().storage, []).expect("store");
    let keys: Vec<String> = store
        .list_keys("")
        .await
        .expect("listing")
        .into_iter()
        .map(|(k, _)| k)
        .filter(|k| k.ends_with(".parquet"))
        .collect();
    assert_eq!(keys.len(), 1, "{keys:?}");
    (store, keys[0].clone())
}

async fn query(s: &TestServer, app: &str, t0: i64) -> (u16, String) {
    s.get(
        "/loki/api/v1/query_range",
        &[
            ("query", format!(r#"{{app="{app}"}}"#)),
            ("start", (t0 - 1_000).to_string()),
            ("end", (t0 + 1_000).to_string()),
        ],
    )
    .await
}

fn assert_names_only_the_key(body: &str, key: &str, s: &TestServer) {
    assert!(body.contains(key), "the key {key} is missing from: {body}");
    let dir = s.data_dir.to_string_lossy();
    assert!(
        !body.contains(dir.as_ref()),
        "server directory leaked: {body}"
    );
    assert!(!body.contains(&s.storage_url), "storage URL leaked: {body}");
}

#[tokio::test]
async fn an_object_that_is_not_parquet_is_named_in_a_warning() {
    let s = TestServer::start("").await;
    let t0 = now_ns() - 60_000_000_000;
    let (store, key) = one_object(&s, "torn", t0).await;
    // Overwritten before any query read its footer: a torn or foreign file under a data key.
    let path = object_store::path::Path::parse(&key).expect("key parses");
    store
        .object_store()
        .put(&path, b"definitely not parquet".to_vec().into())
        .await
        .expect("overwrite");

    let (status, body) = query(&s, "torn", t0).await;
    assert_eq!(status, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).expect("JSON body");
    assert_eq!(v["data"]["result"], json!([]), "{body}");
    let warnings = v["warnings"].to_string();
    assert!(warnings.contains("cannot be read"), "{body}");
    assert_names_only_the_key(&warnings, &key, &s);
}

#[tokio::test]
async fn a_compacted_object_missing_from_storage_is_named_in_the_500() {
    let s = TestServer::start("").await;
    let t0 = now_ns() - 60_000_000_000;
    // Two pushes, two objects: the compactor merges them into one cold object.
    for i in 0..2 {
        s.push(&json!({"streams": [{"stream": {"app": "gone"}, "values": [
            [(t0 + i).to_string(), format!("push {i}")]
        ]}]}))
        .await;
    }
    let summary = s.compact().await;
    assert_eq!(summary.cold_written, 1, "{summary:?}");
    let store = Store::open_with_env(&s.storage_url, &s.config().storage, []).expect("store");
    let cold: Vec<String> = store
        .list_keys("")
        .await
        .expect("listing")
        .into_iter()
        .map(|(k, _)| k)
        .filter(|k| k.ends_with(".parquet") && k.contains("-c_"))
        .collect();
    assert_eq!(cold.len(), 1, "{cold:?}");
    // The day's manifest still names it: an operator's mistake or a lifecycle rule removed
    // it behind the server's back.
    let path = object_store::path::Path::parse(&cold[0]).expect("key parses");
    store.object_store().delete(&path).await.expect("delete");

    let (status, body) = query(&s, "gone", t0).await;
    assert_eq!(status, 500, "{body}");
    assert_names_only_the_key(&body, &cold[0], &s);
}
