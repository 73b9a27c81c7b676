//! A leaf's partial result as Arrow IPC (one stream, one batch), with the leaf's figures in
//! the schema's metadata.
//!
//! - Log entries: `stream` (fingerprint), `labels`, `ts`, `line`, `metadata`, `parsed`; label
//!   sets and pairs as JSON arrays of `[name, value]`.
//! - Metric samples: one row per sample, `input` (which range aggregation), `labels`
//!   (dictionary-encoded, so a series' labels travel once), `ts`, `value`, and for a
//!   collapsed series ([`parquetry_eval::Collapsed`]) its identity in `id_hi`/`id_lo`, its
//!   `labels` then being its group's (a few groups for a million per-line series). A leaf
//!   from before collapsed series sends no identity columns, and all its series are whole.

use std::collections::HashMap;
use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, AsArray, Float64Array, Int64Array, RecordBatch, StringArray,
    StringDictionaryBuilder, UInt32Array, UInt64Array,
};
use arrow::datatypes::{DataType, Field, Float64Type, Int64Type, Schema, UInt32Type, UInt64Type};
use arrow::ipc::reader::StreamReader;
use arrow::ipc::writer::StreamWriter;
use bytes::Bytes;
use parquetry_eval::{CollapsedSeries, RangeInput, SampleSeries};
use parquetry_model::Labels;
use serde_json::{Value, json};

use crate::cost::CostStats;
use crate::logs::{KeyedEntry, ResultEntry};
use crate::stats::QueryStats;
use crate::{QueryError, Result};

const KIND: &str = "parquetry.kind";
const STATS: &str = "parquetry.stats";
const INPUTS: &str = "parquetry.inputs";

/// What one leaf computed.
#[derive(Debug, Clone)]
pub struct Partial {
    /// The leaf's figures, not priced.
    pub stats: QueryStats,
    /// Entries or sample series.
    pub result: PartialResult,
}

/// A leaf's entries or sample series.
#[derive(Debug, Clone)]
pub enum PartialResult {
    /// The leaf's first `limit` entries in query order.
    Log(Vec<KeyedEntry>),
    /// Sample series per range aggregation.
    Metric(Vec<RangeInput>),
}

fn bad(what: impl std::fmt::Display) -> QueryError {
    QueryError::Internal(format!("leaf result: {what}"))
}

/// `p` as one Arrow IPC stream.
pub fn encode(p: &Partial) -> Result<Bytes> {
    let mut meta = HashMap::from([(STATS.to_string(), stats_json(&p.stats).to_string())]);
    let batch = match &p.result {
        PartialResult::Log(entries) => {
            meta.insert(KIND.into(), "log".into());
            log_batch(entries)?
        }
        PartialResult::Metric(inputs) => {
            meta.insert(KIND.into(), "metric".into());
            meta.insert(INPUTS.into(), inputs.len().to_string());
            metric_batch(inputs)?
        }
    };
    let schema = Arc::new(batch.schema().as_ref().clone().with_metadata(meta));
    let batch = batch.with_schema(schema.clone())?;
    let mut w = StreamWriter::try_new(Vec::new(), &schema)?;
    w.write(&batch)?;
    w.finish()?;
    Ok(Bytes::from(w.into_inner()?))
}

/// A partial result back from [`encode`]'s bytes.
pub fn decode(bytes: &[u8]) -> Result<Partial> {
    let reader = StreamReader::try_new(std::io::Cursor::new(bytes), None)?;
    let meta = reader.schema().metadata().clone();
    let stats = meta
        .get(STATS)
        .ok_or_else(|| bad("no stats"))
        .and_then(|s| serde_json::from_str::<Value>(s).map_err(bad))
        .map(|v| stats_from_json(&v))?;
    let batches = reader.collect::<std::result::Result<Vec<_>, _>>()?;
    let result = match meta.get(KIND).map(String::as_str) {
        Some("log") => {
            let mut entries = Vec::new();
            for b in &batches {
                read_log(b, &mut entries)?;
            }
            PartialResult::Log(entries)
        }
        Some("metric") => {
            let n: usize = meta
                .get(INPUTS)
                .and_then(|s| s.parse().ok())
                .ok_or_else(|| bad("no input count"))?;
            let mut inputs: Vec<RangeInput> = vec![RangeInput::default(); n];
            for b in &batches {
                read_metric(b, &mut inputs)?;
            }
            PartialResult::Metric(inputs)
        }
        other => return Err(bad(format!("unknown kind {other:?}"))),
    };
    Ok(Partial { stats, result })
}

fn labels_json(l: &Labels) -> String {
    Value::Array(
        l.iter()
            .map(|l| json!([l.name, l.value]))
            .collect::<Vec<_>>(),
    )
    .to_string()
}

fn pairs_json(p: &[(String, String)]) -> String {
    Value::Array(p.iter().map(|(k, v)| json!([k, v])).collect()).to_string()
}

fn pairs_from_json(s: &str) -> Result<Vec<(String, String)>> {
    let v: Vec<(String, String)> = serde_json::from_str(s).map_err(bad)?;
    Ok(v)
}

fn log_batch(entries: &[KeyedEntry]) -> Result<RecordBatch> {
    let col = |f: &dyn Fn(&KeyedEntry) -> String| -> ArrayRef {
        Arc::new(entries.iter().map(|e| Some(f(e))).collect::<StringArray>())
    };
    let columns: Vec<ArrayRef> = vec![
        Arc::new(entries.iter().map(|e| e.0).collect::<UInt64Array>()),
        col(&|e| labels_json(&e.1)),
        Arc::new(entries.iter().map(|e| e.2.ts).collect::<Int64Array>()),
        col(&|e| e.2.line.clone()),
        col(&|e| pairs_json(&e.2.structured_metadata)),
        col(&|e| pairs_json(&e.2.parsed)),
    ];
    let schema = Schema::new(vec![
        Field::new("stream", DataType::UInt64, false),
        Field::new("labels", DataType::Utf8, false),
        Field::new("ts", DataType::Int64, false),
        Field::new("line", DataType::Utf8, false),
        Field::new("metadata", DataType::Utf8, false),
        Field::new("parsed", DataType::Utf8, false),
    ]);
    Ok(RecordBatch::try_new(Arc::new(schema), columns)?)
}

fn read_log(b: &RecordBatch, out: &mut Vec<KeyedEntry>) -> Result<()> {
    let column = |i: usize| {
        b.columns()
            .get(i)
            .ok_or_else(|| bad(format!("log batch without column {i}")))
    };
    let stream = column(0)?
        .as_primitive_opt::<UInt64Type>()
        .ok_or_else(|| bad("stream"))?;
    let labels = column(1)?
        .as_string_opt::<i32>()
        .ok_or_else(|| bad("labels"))?;
    let ts = column(2)?
        .as_primitive_opt::<Int64Type>()
        .ok_or_else(|| bad("ts"))?;
    let line = column(3)?
        .as_string_opt::<i32>()
        .ok_or_else(|| bad("line"))?;
    let meta = column(4)?
        .as_string_opt::<i32>()
        .ok_or_else(|| bad("metadata"))?;
    let parsed = column(5)?
        .as_string_opt::<i32>()
        .ok_or_else(|| bad("parsed"))?;
    // Consecutive entries mostly share a label set: parse it once per run.
    let mut last: Option<(&str, Labels)> = None;
    for i in 0..b.num_rows() {
        let text = labels.value(i);
        let l = match &last {
            Some((t, l)) if *t == text => l.clone(),
            _ => {
                let l = Labels::from_pairs(pairs_from_json(text)?);
                last = Some((text, l.clone()));
                l
            }
        };
        out.push((
            stream.value(i),
            l,
            ResultEntry {
                ts: ts.value(i),
                line: line.value(i).to_string(),
                structured_metadata: pairs_from_json(meta.value(i))?,
                parsed: pairs_from_json(parsed.value(i))?,
            },
        ));
    }
    Ok(())
}

fn metric_batch(inputs: &[RangeInput]) -> Result<RecordBatch> {
    let rows: usize = inputs
        .iter()
        .flat_map(|i| {
            let whole = i.series.iter().map(|s| s.samples.len());
            whole.chain(i.collapsed.series.iter().map(|s| s.samples.len()))
        })
        .sum();
    let mut input = Vec::with_capacity(rows);
    let mut labels = StringDictionaryBuilder::<UInt32Type>::new();
    let mut ts = Vec::with_capacity(rows);
    let mut value = Vec::with_capacity(rows);
    let mut id_hi: Vec<Option<u64>> = Vec::with_capacity(rows);
    let mut id_lo: Vec<Option<u64>> = Vec::with_capacity(rows);
    for (i, range) in inputs.iter().enumerate() {
        for s in &range.series {
            let text = labels_json(&s.labels);
            for &(t, v) in &s.samples {
                input.push(i as u32);
                labels.append(&text)?;
                ts.push(t);
                value.push(v);
                id_hi.push(None);
                id_lo.push(None);
            }
        }
        if range.collapsed.direct.is_some() {
            // A leaf never folds series (its root merges them by identity).
            return Err(bad("a leaf's series were folded into its aggregation"));
        }
        let groups: Vec<String> = range.collapsed.groups.iter().map(labels_json).collect();
        for s in &range.collapsed.series {
            let text = groups
                .get(s.group as usize)
                .ok_or_else(|| bad(format!("collapsed series of unknown group {}", s.group)))?;
            for &(t, v) in &s.samples {
                input.push(i as u32);
                labels.append(text)?;
                ts.push(t);
                value.push(v);
                id_hi.push(Some((s.id >> 64) as u64));
                id_lo.push(Some(s.id as u64));
            }
        }
    }
    let columns: Vec<ArrayRef> = vec![
        Arc::new(UInt32Array::from(input)),
        Arc::new(labels.finish()),
        Arc::new(Int64Array::from(ts)),
        Arc::new(Float64Array::from(value)),
        Arc::new(UInt64Array::from(id_hi)),
        Arc::new(UInt64Array::from(id_lo)),
    ];
    let schema = Schema::new(vec![
        Field::new("input", DataType::UInt32, false),
        Field::new(
            "labels",
            DataType::Dictionary(Box::new(DataType::UInt32), Box::new(DataType::Utf8)),
            false,
        ),
        Field::new("ts", DataType::Int64, false),
        Field::new("value", DataType::Float64, false),
        Field::new("id_hi", DataType::UInt64, true),
        Field::new("id_lo", DataType::UInt64, true),
    ]);
    Ok(RecordBatch::try_new(Arc::new(schema), columns)?)
}

fn read_metric(b: &RecordBatch, inputs: &mut [RangeInput]) -> Result<()> {
    let column = |i: usize| {
        b.columns()
            .get(i)
            .ok_or_else(|| bad(format!("metric batch without column {i}")))
    };
    let input = column(0)?
        .as_primitive_opt::<UInt32Type>()
        .ok_or_else(|| bad("input"))?;
    let labels = column(1)?
        .as_dictionary_opt::<UInt32Type>()
        .ok_or_else(|| bad("labels"))?;
    let label_text = labels
        .values()
        .as_string_opt::<i32>()
        .ok_or_else(|| bad("label values"))?;
    let ts = column(2)?
        .as_primitive_opt::<Int64Type>()
        .ok_or_else(|| bad("ts"))?;
    let value = column(3)?
        .as_primitive_opt::<Float64Type>()
        .ok_or_else(|| bad("value"))?;
    let identity = match (b.columns().get(4), b.columns().get(5)) {
        (Some(hi), Some(lo)) => Some((
            hi.as_primitive_opt::<UInt64Type>()
                .ok_or_else(|| bad("id_hi"))?,
            lo.as_primitive_opt::<UInt64Type>()
                .ok_or_else(|| bad("id_lo"))?,
        )),
        _ => None,
    };
    let mut parsed: Vec<Option<Labels>> = vec![None; label_text.len()];
    let mut label_set = |key: u32| -> Result<Labels> {
        let cached = parsed
            .get_mut(key as usize)
            .ok_or_else(|| bad("label key out of range"))?;
        Ok(match cached {
            Some(l) => l.clone(),
            None => {
                let l = Labels::from_pairs(pairs_from_json(label_text.value(key as usize))?);
                *cached = Some(l.clone());
                l
            }
        })
    };
    let mut slots: HashMap<(u32, u32), usize> = HashMap::new();
    let mut groups: HashMap<(u32, u32), u32> = HashMap::new();
    for row in 0..b.num_rows() {
        let i = input.value(row);
        let key = labels.keys().value(row);
        let range = inputs
            .get_mut(i as usize)
            .ok_or_else(|| bad(format!("input {i} out of range")))?;
        let sample = (ts.value(row), value.value(row));
        let id = identity.and_then(|(hi, lo)| {
            (hi.is_valid(row) && lo.is_valid(row))
                .then(|| (u128::from(hi.value(row)) << 64) | u128::from(lo.value(row)))
        });
        if let Some(id) = id {
            let group = match groups.get(&(i, key)) {
                Some(&g) => g,
                None => {
                    let g = range.collapsed.groups.len() as u32;
                    range.collapsed.groups.push(label_set(key)?);
                    groups.insert((i, key), g);
                    g
                }
            };
            // A series' samples are written together: a new series starts where the
            // identity or group changes (a repeat would only be merged by evaluation).
            let series = &mut range.collapsed.series;
            match series.last_mut() {
                Some(last) if (last.id, last.group) == (id, group) => last.samples.push(sample),
                _ => series.push(CollapsedSeries::new(
                    id,
                    group,
                    [sample].into_iter().collect(),
                )),
            }
            continue;
        }
        let series = &mut range.series;
        let slot = match slots.get(&(i, key)) {
            Some(&s) => s,
            None => {
                series.push(SampleSeries {
                    labels: label_set(key)?,
                    samples: Vec::new(),
                });
                slots.insert((i, key), series.len() - 1);
                series.len() - 1
            }
        };
        series[slot].samples.push(sample);
    }
    Ok(())
}

fn stats_json(s: &QueryStats) -> Value {
    let c = &s.cost;
    json!({
        "objects_considered": s.objects_considered,
        "objects_scanned": s.objects_scanned,
        "streams": s.streams,
        "bytes_scanned": s.bytes_scanned,
        "bytes_processed": s.bytes_processed,
        "lines_processed": s.lines_processed,
        "post_filter_lines": s.post_filter_lines,
        "entries_returned": s.entries_returned,
        "exec_time_s": s.exec_time_s,
        "objects_opened": c.objects_opened,
        "row_groups_opened": c.row_groups_opened,
        "get_requests": c.get_requests,
        "bytes_fetched": c.bytes_fetched,
        "partitions": c.partitions,
        "leaves": c.leaves,
        "time_blocks": c.time_blocks,
        "folded_lines": c.folded_lines,
        "lambda_gb_seconds": c.lambda_gb_seconds,
        "warnings": s.warnings,
    })
}

fn stats_from_json(v: &Value) -> QueryStats {
    let n = |k: &str| v.get(k).and_then(Value::as_u64).unwrap_or(0);
    let f = |k: &str| v.get(k).and_then(Value::as_f64).unwrap_or(0.0);
    QueryStats {
        objects_considered: n("objects_considered"),
        objects_scanned: n("objects_scanned"),
        streams: n("streams"),
        bytes_scanned: n("bytes_scanned"),
        bytes_processed: n("bytes_processed"),
        lines_processed: n("lines_processed"),
        post_filter_lines: n("post_filter_lines"),
        entries_returned: n("entries_returned"),
        exec_time_s: f("exec_time_s"),
        cost: CostStats {
            objects_opened: n("objects_opened"),
            row_groups_opened: n("row_groups_opened"),
            get_requests: n("get_requests"),
            bytes_fetched: n("bytes_fetched"),
            partitions: n("partitions"),
            leaves: n("leaves"),
            time_blocks: n("time_blocks"),
            folded_lines: n("folded_lines"),
            lambda_gb_seconds: f("lambda_gb_seconds"),
            estimated_cost_usd: 0.0,
        },
        warnings: v
            .get("warnings")
            .and_then(Value::as_array)
            .map(|w| {
                w.iter()
                    .filter_map(|s| s.as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_entries_round_trip() {
        let entries = vec![(
            u64::MAX,
            Labels::from_pairs([("app", "a\"b"), ("env", "")]),
            ResultEntry {
                ts: -5,
                line: "line\nwith\u{0}nul".into(),
                structured_metadata: vec![("trace_id".into(), "x".into())],
                parsed: vec![],
            },
        )];
        let p = Partial {
            stats: QueryStats {
                lines_processed: 3,
                ..Default::default()
            },
            result: PartialResult::Log(entries.clone()),
        };
        let back = decode(&encode(&p).unwrap()).unwrap();
        assert_eq!(back.stats.lines_processed, 3);
        let PartialResult::Log(got) = back.result else {
            panic!("log")
        };
        assert_eq!(got, entries);
    }

    #[test]
    fn metric_series_round_trip() {
        let s = |l: &str, samples: Vec<(i64, f64)>| SampleSeries {
            labels: Labels::from_pairs([("l", l)]),
            samples,
        };
        let collapsed = |group: u32, id: u128, samples: Vec<(i64, f64)>| {
            CollapsedSeries::new(id, group, samples.into())
        };
        let mut inputs: Vec<RangeInput> = vec![
            vec![
                s("a", vec![(1, 1.0), (2, f64::INFINITY)]),
                s("b", vec![(3, 0.5)]),
            ]
            .into(),
            RangeInput::default(),
            vec![s("a", vec![(4, -1.0)])].into(),
        ];
        // Collapsed series, one of them in a group whose labels a whole series also has.
        inputs[2].collapsed = parquetry_eval::Collapsed {
            groups: vec![
                Labels::from_pairs([("l", "a")]),
                Labels::from_pairs([("l", "c")]),
            ],
            series: vec![
                collapsed(0, u128::MAX, vec![(5, 2.0), (6, 3.0)]),
                collapsed(1, 1 << 64, vec![(7, 4.0)]),
                collapsed(0, 7, vec![(8, 5.0)]),
            ],
            direct: None,
        };
        let p = Partial {
            stats: QueryStats::default(),
            result: PartialResult::Metric(inputs.clone()),
        };
        let PartialResult::Metric(got) = decode(&encode(&p).unwrap()).unwrap().result else {
            panic!("metric")
        };
        assert_eq!(got, inputs);
    }
}
