//! The query function as a fan-out leaf: recorded leaf-task payloads (as a root sends them,
//! checked against what a root sends for the same data) answered with the partial result, a
//! result over the response limit refused with the limit named, and HTTP events still served.
//! Runs on the backend of the run (`PARQUETRY_TEST_BACKEND`).

mod common;

use std::sync::{Arc, Mutex};

use base64::Engine as _;
use common::{QUERY_RANGE, env, seeded};
use lambda_http::Service;
use lambda_http::lambda_runtime::{Context, LambdaEvent};
use parquetry_lambda::leaf::FunctionHandler;
use parquetry_lambda::{HostSettings, Role, handler, load_config};
use parquetry_query::fanout::wire::{self, PartialResult};
use parquetry_query::fanout::{FanoutSettings, LeafTask, Transport};
use parquetry_query::{Direction, LogQuery, MetricQuery, QueryEngine};
use serde_json::Value;
use serde_json::value::RawValue;

const LEAF_LOG: &str = include_str!("events/leaf-log.json");
const LEAF_METRIC: &str = include_str!("events/leaf-metric.json");

const SELECTOR: &str = r#"{service_name=~"checkout|frontend|worker"}"#;
const METRIC: &str =
    r#"sum by (service_name) (count_over_time({service_name=~"checkout|frontend|worker"}[1m]))"#;
const START: i64 = 1_795_867_140_000_000_000;
const END: i64 = 1_795_867_260_000_000_000;

fn function(dir: &std::path::Path, extra: &[(&str, &str)]) -> FunctionHandler {
    let env = env(dir, extra);
    let settings = HostSettings::from_env(Role::Query, env.clone()).unwrap();
    handler(load_config(env.clone()).unwrap(), &settings, env).unwrap()
}

async fn call(h: &mut FunctionHandler, payload: &str) -> Value {
    let raw = RawValue::from_string(payload.to_string()).unwrap();
    let response = h
        .call(LambdaEvent::new(raw, Context::default()))
        .await
        .unwrap();
    serde_json::from_str(response.get()).unwrap()
}

/// Runs leaves in this process and keeps the tasks a root sent.
#[derive(Debug, Default)]
struct Recorder(Mutex<Vec<LeafTask>>);

#[async_trait::async_trait]
impl Transport for Recorder {
    async fn run(
        &self,
        engine: &QueryEngine,
        task: LeafTask,
    ) -> parquetry_query::Result<bytes::Bytes> {
        self.0.lock().unwrap().push(task.clone());
        task.run(engine).await
    }
}

fn engine(dir: &std::path::Path, transport: Option<Arc<dyn Transport>>) -> QueryEngine {
    let config = load_config(env(dir, &[])).unwrap();
    let store = parquetry_host::open_store(&config).unwrap();
    QueryEngine::configured(store, &config.query_range).with_fanout(FanoutSettings {
        leaves: 2,
        transport,
        ..Default::default()
    })
}

/// The leaf tasks a root with two leaves sends for the recorded log and metric queries.
async fn tasks_a_root_sends(dir: &std::path::Path) -> Vec<LeafTask> {
    let recorder = Arc::new(Recorder::default());
    let root = engine(dir, Some(recorder.clone()));
    let parquetry_logql::Expr::Log(expr) = parquetry_logql::parse_expr(SELECTOR).unwrap() else {
        panic!("log query")
    };
    root.log_query(&LogQuery {
        tenant: "team-a".into(),
        expr,
        start: START,
        end: END,
        limit: 100,
        direction: Direction::Backward,
        interval_ns: None,
        max_response_bytes: 0,
    })
    .await
    .unwrap();
    let parquetry_logql::Expr::Sample(expr) = parquetry_logql::parse_expr(METRIC).unwrap() else {
        panic!("metric query")
    };
    root.metric_query(&MetricQuery {
        tenant: "team-a".into(),
        expr,
        start: START,
        end: END,
        step: 60_000_000_000,
        instant: false,
        max_series: 500,
        max_response_bytes: 0,
    })
    .await
    .unwrap();
    let tasks = recorder.0.lock().unwrap().clone();
    assert!(tasks.len() >= 4, "two leaves per query: {tasks:?}");
    tasks
}

fn partial(resp: &Value) -> wire::Partial {
    let text = resp["parquetry_partial"]
        .as_str()
        .unwrap_or_else(|| panic!("no partial result: {resp}"));
    // zstd-compressed Arrow IPC in base64.
    let z = base64::engine::general_purpose::STANDARD
        .decode(text)
        .unwrap();
    wire::decode(&parquetry_lambda::leaf::unpack(text).unwrap())
        .unwrap_or_else(|e| panic!("{e}: {} compressed bytes", z.len()))
}

fn event_task(event: &str) -> LeafTask {
    let v: Value = serde_json::from_str(event).unwrap();
    serde_json::from_value(v["parquetry_leaf"].clone()).unwrap()
}

#[tokio::test]
async fn recorded_leaf_events_are_answered_with_their_partial_results() {
    let dir = seeded().await;
    let sent = tasks_a_root_sends(dir.path()).await;
    let mut h = function(dir.path(), &[]);
    let local = engine(dir.path(), None);

    // The log leaf: the recorded payload is one a root sends for this data.
    let task = event_task(LEAF_LOG);
    assert!(
        sent.contains(&task),
        "the recorded leaf event is not what a root sends now; sent: {}",
        serde_json::to_string(&sent).unwrap()
    );
    let got = partial(&call(&mut h, LEAF_LOG).await);
    let want = wire::decode(&task.clone().run(&local).await.unwrap()).unwrap();
    let (PartialResult::Log(got), PartialResult::Log(want)) = (got.result, want.result) else {
        panic!("log results expected")
    };
    assert!(!got.is_empty(), "the leaf's streams hold lines");
    assert_eq!(got, want);
    // Only the leaf's own streams.
    assert!(got.iter().all(|e| task.streams.contains(&e.0)), "{got:?}");

    // The metric leaf: sample series of the leaf's streams.
    let task = event_task(LEAF_METRIC);
    assert!(
        sent.contains(&task),
        "the recorded leaf event is not what a root sends now; sent: {}",
        serde_json::to_string(&sent).unwrap()
    );
    let got = partial(&call(&mut h, LEAF_METRIC).await);
    assert!(got.stats.lines_processed > 0, "{:?}", got.stats);
    let want = wire::decode(&task.clone().run(&local).await.unwrap()).unwrap();
    let (PartialResult::Metric(got), PartialResult::Metric(want)) = (got.result, want.result)
    else {
        panic!("metric results expected")
    };
    assert_eq!(got.len(), 1, "one range aggregation");
    assert!(!got[0].is_empty(), "the leaf's streams hold samples");
    assert_eq!(got, want);

    // A root from before the step-cell fold sends no `fold_cells` and counts samples: the
    // leaf answers it one sample per line, holding the same count per series as the cells.
    let mut old: Value = serde_json::from_str(LEAF_METRIC).unwrap();
    old["parquetry_leaf"]
        .as_object_mut()
        .unwrap()
        .remove("fold_cells");
    let PartialResult::Metric(per_line) = partial(&call(&mut h, &old.to_string()).await).result
    else {
        panic!("metric results expected")
    };
    let totals = |input: &parquetry_eval::RangeInput| {
        let mut t: Vec<(String, f64, usize)> = input
            .clone()
            .into_series()
            .iter()
            .map(|s| {
                let sum = s.samples.iter().map(|x| x.1).sum();
                (s.labels.to_string(), sum, s.samples.len())
            })
            .collect();
        t.sort_by(|a, b| a.0.cmp(&b.0));
        t
    };
    let (cells, lines) = (totals(&got[0]), totals(&per_line[0]));
    assert!(
        per_line[0]
            .clone()
            .into_series()
            .iter()
            .all(|s| s.samples.iter().all(|x| x.1 == 1.0))
    );
    assert_eq!(
        cells.iter().map(|c| (&c.0, c.1)).collect::<Vec<_>>(),
        lines.iter().map(|c| (&c.0, c.1)).collect::<Vec<_>>()
    );
    assert!(
        cells.iter().map(|c| c.2).sum::<usize>() < lines.iter().map(|c| c.2).sum::<usize>(),
        "cells {cells:?}, lines {lines:?}"
    );
}

#[tokio::test]
async fn a_leaf_result_over_the_response_limit_names_the_limit() {
    let dir = seeded().await;
    let mut h = function(
        dir.path(),
        &[("PARQUETRY_LAMBDA_MAX_RESPONSE_BYTES", "300")],
    );
    let resp = call(&mut h, LEAF_LOG).await;
    assert_eq!(resp["parquetry_error"]["kind"], "too_large", "{resp}");
    let message = resp["parquetry_error"]["message"].as_str().unwrap();
    assert!(
        message.contains("exceeds the AWS Lambda response limit of 300 bytes"),
        "{message}"
    );
}

#[tokio::test]
async fn bad_leaf_tasks_are_refused_and_http_events_still_served() {
    let dir = seeded().await;
    let mut h = function(dir.path(), &[]);

    let mut v: Value = serde_json::from_str(LEAF_LOG).unwrap();
    v["parquetry_leaf"]["query"] = r#"{service_name=~"checkout""#.into();
    let resp = call(&mut h, &v.to_string()).await;
    assert_eq!(resp["parquetry_error"]["kind"], "bad_request", "{resp}");

    let resp = call(&mut h, r#"{"parquetry_leaf": {"tenant": "team-a"}}"#).await;
    assert_eq!(resp["parquetry_error"]["kind"], "bad_request", "{resp}");
    assert!(
        resp["parquetry_error"]["message"]
            .as_str()
            .unwrap()
            .starts_with("malformed leaf task"),
        "{resp}"
    );

    // Neither an HTTP event nor a leaf task: a function error saying so.
    let raw = RawValue::from_string(r#"{"hello": 1}"#.into()).unwrap();
    let err = h
        .call(LambdaEvent::new(raw, Context::default()))
        .await
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(err.contains("neither an HTTP request"), "{err}");

    let resp = call(&mut h, QUERY_RANGE).await;
    assert_eq!(resp["statusCode"], 200, "{resp}");
}
