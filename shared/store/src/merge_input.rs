//! The inputs of a compaction merge: each fetched object is opened, its stream catalog folded
//! into the merge's, and its rows either decoded whole at once (its bytes, footer, Parquet
//! reader and zstd contexts freed right away) or, once the merge's decoded-bytes budget is
//! spent, left to a streaming reader that decodes a batch at a time.
//!
//! Why: a pushed object is small (a few thousand rows), and a merge takes hundreds of them. A
//! streaming reader per input holds, for every column, a zstd decompression context, the
//! current decompressed page and the object's compressed bytes until the merge ends — about
//! 300 MB for a 200-input merge on the compaction bench, against 73–82 MB for all of its rows
//! decoded. Inputs are opened one after the other on the merge's own thread (see
//! `Store::merge_group`).
//!
//! The `labels` column is never read: it is a function of the stream fingerprint, and the
//! output's is rebuilt from the catalog (see [`LabelTexts`]).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use arrow::array::{ArrayRef, AsArray, RecordBatch, StringBuilder};
use arrow::datatypes::UInt64Type;
use arrow::error::ArrowError;
use bytes::Bytes;
use parquet::arrow::ProjectionMask;
use parquet::arrow::arrow_reader::{ParquetRecordBatchReader, ParquetRecordBatchReaderBuilder};
use parquet::errors::ParquetError;

use crate::catalog::{StreamCatalog, StreamInfo};
use crate::compact::without_catalog;
use crate::{At, Result, StoreError};

/// Root columns a merge reads, in [`log_schema`](crate::schema::log_schema) order: all but
/// `labels` (2).
const READ_COLUMNS: [usize; 4] = [0, 1, 3, 4];
/// Index of `stream` in the merge's batches.
pub(crate) const STREAM: usize = 1;
/// Index of `line` in the merge's batches.
pub(crate) const LINE: usize = 2;
/// Rows per batch of an input decoded whole: a pushed object is one batch; a larger input
/// (a small cold object merged again) is several, each freed once the merge has passed it.
const WHOLE_BATCH_ROWS: usize = 8192;

/// One input's rows, in (stream, timestamp) order.
pub(crate) enum Input {
    /// Decoded at open; nothing of the object is held but these batches.
    Decoded(std::vec::IntoIter<RecordBatch>),
    /// Decoded as the merge reaches it (the budget was spent); with the object's key, which
    /// names it in a decoding error.
    Streamed(Box<ParquetRecordBatchReader>, String),
}

impl Input {
    /// The next non-empty batch.
    pub(crate) fn next_batch(&mut self) -> Result<Option<RecordBatch>> {
        match self {
            Input::Decoded(batches) => Ok(batches.find(|b| b.num_rows() > 0)),
            Input::Streamed(reader, name) => {
                for batch in reader.by_ref() {
                    let batch = batch.map_err(undecodable).at(name.as_str())?;
                    if batch.num_rows() > 0 {
                        return Ok(Some(batch));
                    }
                }
                Ok(None)
            }
        }
    }
}

/// The inputs of one merge being opened, one after the other on the merge's own thread: the
/// decoded-bytes budget left, and the catalog being merged.
pub(crate) struct Opening {
    /// Bytes that inputs decoded whole may still take (Parquet's uncompressed size of the
    /// columns read, a close estimate of their Arrow size).
    budget: u64,
    /// Rows per batch of a streamed input.
    streamed_batch_rows: usize,
    streams: BTreeMap<u64, StreamInfo>,
}

impl Opening {
    pub(crate) fn new(decoded_budget: u64, streamed_batch_rows: usize) -> Self {
        Opening {
            budget: decoded_budget,
            streamed_batch_rows,
            streams: BTreeMap::new(),
        }
    }

    /// Takes `bytes` from the budget if it has that much left.
    fn reserve(&mut self, bytes: u64) -> bool {
        match self.budget.checked_sub(bytes) {
            Some(left) => {
                self.budget = left;
                true
            }
            None => false,
        }
    }

    /// Opens one fetched input (CPU work: call it from a blocking thread).
    pub(crate) fn open(&mut self, bytes: Bytes, name: &str) -> Result<Input> {
        let (metadata, json) = without_catalog(&bytes).at(name)?;
        let json = json.ok_or_else(|| StoreError::Corrupt {
            path: name.to_string(),
            reason: "no stream catalog in footer".into(),
        })?;
        let catalog = StreamCatalog::from_json(&json).map_err(|e| StoreError::Corrupt {
            path: name.to_string(),
            reason: e.to_string(),
        })?;
        drop(json);
        self.fold(catalog);

        let parquet = metadata.metadata().clone();
        let schema = parquet.file_metadata().schema_descr();
        let decoded_size: u64 = parquet
            .row_groups()
            .iter()
            .flat_map(|rg| rg.columns().iter().enumerate())
            .filter(|(leaf, _)| READ_COLUMNS.contains(&schema.get_column_root_idx(*leaf)))
            .map(|(_, c)| c.uncompressed_size().max(0) as u64)
            .sum();
        let mask = ProjectionMask::roots(schema, READ_COLUMNS);
        let whole = self.reserve(decoded_size);
        let rows = if whole {
            WHOLE_BATCH_ROWS
        } else {
            self.streamed_batch_rows
        };
        let reader = ParquetRecordBatchReaderBuilder::new_with_metadata(bytes, metadata)
            .with_projection(mask)
            .with_batch_size(rows)
            .build()
            .at(name)?;
        if !whole {
            return Ok(Input::Streamed(Box::new(reader), name.to_string()));
        }
        let batches = reader
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(undecodable)
            .at(name)?;
        Ok(Input::Decoded(batches.into_iter()))
    }

    fn fold(&mut self, catalog: StreamCatalog) {
        for s in catalog.streams {
            match self.streams.get_mut(&s.fingerprint) {
                Some(have) => {
                    have.entries += s.entries;
                    have.bytes += s.bytes;
                    have.min_ts = have.min_ts.min(s.min_ts);
                    have.max_ts = have.max_ts.max(s.max_ts);
                }
                None => {
                    self.streams.insert(s.fingerprint, s);
                }
            }
        }
    }

    /// The merged catalog of every input opened.
    pub(crate) fn into_catalog(self) -> StreamCatalog {
        StreamCatalog {
            streams: self.streams.into_values().collect(),
        }
    }
}

/// Each stream's `labels` column text, from the merged catalog: the same text the push path
/// wrote for it (`Labels`' display form of the catalog's labels).
pub(crate) struct LabelTexts(HashMap<u64, String>);

impl LabelTexts {
    pub(crate) fn new(catalog: &StreamCatalog) -> Self {
        LabelTexts(
            catalog
                .streams
                .iter()
                .map(|s| (s.fingerprint, s.labels().to_string()))
                .collect(),
        )
    }

    /// The `labels` column for the rows whose `stream` column is `streams`.
    pub(crate) fn column(&self, streams: &ArrayRef) -> Result<ArrayRef> {
        let streams = streams
            .as_primitive_opt::<UInt64Type>()
            .ok_or_else(|| corrupt("stream column is not u64"))?;
        let mut out = StringBuilder::with_capacity(streams.len(), streams.len() * 64);
        for fp in streams.values() {
            let text = self
                .0
                .get(fp)
                .ok_or_else(|| corrupt("a row's stream is missing from the catalog"))?;
            out.append_value(text);
        }
        Ok(Arc::new(out.finish()))
    }
}

/// A decoding failure of an input's rows as the Parquet error it is, so that the merge names
/// the object as undecodable (see `StoreError::unreadable_object`).
fn undecodable(e: ArrowError) -> ParquetError {
    match e {
        ArrowError::ParquetError(reason) => ParquetError::General(reason),
        other => ParquetError::ArrowError(other.to_string()),
    }
}

fn corrupt(reason: &str) -> StoreError {
    StoreError::Corrupt {
        path: String::new(),
        reason: reason.into(),
    }
}

#[cfg(test)]
mod tests {
    use arrow::array::AsArray;
    use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
    use parquetry_model::Labels;

    use super::*;
    use crate::compact::merge_into;
    use crate::writer::{LogEntry, StreamEntries, encode_objects};

    /// Pushed objects of one partition: `pushes` of them, each one entry of every stream, with
    /// one push stored twice (a retried push the merge drops).
    fn pushed_objects(pushes: i64) -> Vec<Bytes> {
        let t0 = 1_700_000_000_000_000_000;
        let mut out = Vec::new();
        for p in 0..pushes {
            let streams = (0..40)
                .map(|s| StreamEntries {
                    labels: Labels::from_pairs([
                        ("service_name", "api"),
                        ("pod", &format!("pod-{s}")),
                        ("note", &format!("quote \" and \\ {s}")),
                    ]),
                    entries: vec![LogEntry {
                        ts_ns: t0 + p * 1_000_000 + s,
                        line: format!("push {p} stream {s} {}", "x".repeat((s * 7) as usize))
                            .into(),
                        structured_metadata: if s % 3 == 0 {
                            vec![("trace_id".into(), format!("t{p}{s}").into())]
                        } else {
                            Vec::new()
                        },
                    }],
                })
                .collect();
            let labels = vec!["service_name".to_string()];
            for o in encode_objects("t", streams, &labels, 5, &format!("id{p}")).unwrap() {
                if p == 1 {
                    out.push(o.data.clone());
                }
                out.push(o.data);
            }
        }
        out
    }

    fn merged(inputs: &[Bytes], budget: u64) -> (Vec<u8>, u64) {
        let mut opening = Opening::new(budget, 64);
        let opened: Vec<Input> = inputs
            .iter()
            .enumerate()
            .map(|(i, b)| opening.open(b.clone(), &format!("in{i}")).unwrap())
            .collect();
        assert_eq!(
            opened
                .iter()
                .filter(|i| matches!(i, Input::Decoded(_)))
                .count(),
            if budget == 0 { 0 } else { inputs.len() }
        );
        let catalog = opening.into_catalog();
        let mut out = Vec::new();
        let repeats = merge_into(opened, &catalog, &mut out).unwrap();
        (out, repeats)
    }

    #[test]
    fn decoded_whole_and_streamed_inputs_merge_into_the_same_object() {
        let inputs = pushed_objects(12);
        let (whole, repeats) = merged(&inputs, u64::MAX);
        let (streamed, streamed_repeats) = merged(&inputs, 0);
        assert_eq!(
            repeats, 40,
            "the push stored twice is dropped once per stream"
        );
        assert_eq!(streamed_repeats, repeats);
        assert!(
            whole == streamed,
            "the two ways of reading give different objects"
        );
    }

    #[test]
    fn the_labels_column_is_rebuilt_as_the_push_wrote_it() {
        let inputs = pushed_objects(3);
        // What the pushed objects hold, by stream.
        let mut pushed = HashMap::new();
        for b in &inputs {
            let reader = ParquetRecordBatchReaderBuilder::try_new(b.clone())
                .unwrap()
                .build()
                .unwrap();
            for batch in reader {
                let batch = batch.unwrap();
                let fps = batch.column(1).as_primitive::<UInt64Type>();
                let labels = batch.column(2).as_string::<i32>();
                for r in 0..batch.num_rows() {
                    pushed.insert(fps.value(r), labels.value(r).to_string());
                }
            }
        }
        let (out, _) = merged(&inputs, u64::MAX);
        let reader = ParquetRecordBatchReaderBuilder::try_new(Bytes::from(out))
            .unwrap()
            .build()
            .unwrap();
        let mut rows = 0;
        for batch in reader {
            let batch = batch.unwrap();
            let fps = batch.column(1).as_primitive::<UInt64Type>();
            let labels = batch.column(2).as_string::<i32>();
            for r in 0..batch.num_rows() {
                assert_eq!(labels.value(r), pushed[&fps.value(r)]);
                rows += 1;
            }
        }
        assert_eq!(rows, 3 * 40);
    }
}
