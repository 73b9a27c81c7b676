//! Encoding validated streams into Parquet objects.
//!
//! This is the CPU-heavy half of a push: callers run [`encode_objects`] on a blocking thread.

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow::array::{
    ArrayRef, MapBuilder, MapFieldNames, StringBuilder, TimestampNanosecondArray, UInt64Array,
};
use arrow::record_batch::RecordBatch;
use bytes::Bytes;
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::metadata::{KeyValue, SortingColumn};
use parquet::file::properties::{EnabledStatistics, WriterProperties};
use parquet::schema::types::ColumnPath;
use parquetry_model::Labels;

use crate::catalog::{StreamCatalog, StreamInfo};
use crate::layout::{ObjectKey, day_of};
use crate::schema::{self, CATALOG_KEY, FORMAT_KEY, FORMAT_VERSION, log_schema};
use crate::{DAY_NS, Result};

/// One log entry as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogEntry {
    pub ts_ns: i64,
    pub line: String,
    pub structured_metadata: Vec<(String, String)>,
}

/// A validated stream and its entries, ready to store.
#[derive(Debug, Clone)]
pub struct StreamEntries {
    pub labels: Labels,
    pub entries: Vec<LogEntry>,
}

/// An encoded object waiting to be put.
pub struct EncodedObject {
    pub key: ObjectKey,
    pub data: Bytes,
    pub entries: u64,
}

/// Rows per row group. Row groups are the unit of pruning by statistics; small enough that a
/// selective stream or time predicate skips most of a large compacted object, big enough that
/// footers stay small.
const ROW_GROUP_ROWS: usize = 64 * 1024;

pub(crate) fn writer_properties(catalog: &StreamCatalog) -> Result<WriterProperties> {
    Ok(WriterProperties::builder()
        .set_compression(Compression::ZSTD(ZstdLevel::try_new(3)?))
        .set_statistics_enabled(EnabledStatistics::Page)
        .set_max_row_group_row_count(Some(ROW_GROUP_ROWS))
        .set_column_bloom_filter_enabled(ColumnPath::from(schema::COL_STREAM), true)
        .set_column_bloom_filter_max_ndv(
            ColumnPath::from(schema::COL_STREAM),
            catalog.streams.len().max(1) as u64,
        )
        // Lines rarely repeat; a dictionary would be built and then thrown away.
        .set_column_dictionary_enabled(ColumnPath::from(schema::COL_LINE), false)
        .set_sorting_columns(Some(vec![
            SortingColumn {
                column_idx: 1,
                descending: false,
                nulls_first: false,
            },
            SortingColumn {
                column_idx: 0,
                descending: false,
                nulls_first: false,
            },
        ]))
        .set_key_value_metadata(Some(vec![
            KeyValue::new(FORMAT_KEY.to_string(), FORMAT_VERSION.to_string()),
            KeyValue::new(CATALOG_KEY.to_string(), catalog.to_json()),
        ]))
        .build())
}

/// The partition an entry's stream belongs to: the value of each configured label, empty when
/// absent.
fn partition_of(labels: &Labels, partition_labels: &[String]) -> Vec<(String, String)> {
    partition_labels
        .iter()
        .map(|n| (n.clone(), labels.get(n).unwrap_or("").to_string()))
        .collect()
}

/// Groups streams into one object per (UTC day, partition) and encodes each. `id` makes keys
/// unique per write; the caller provides it so encoding stays deterministic.
pub fn encode_objects(
    tenant: &str,
    streams: Vec<StreamEntries>,
    partition_labels: &[String],
    id: &str,
) -> Result<Vec<EncodedObject>> {
    // (day, partition) -> fingerprint -> (labels, entries). BTreeMaps give the row order the
    // format promises: by stream fingerprint, then time.
    type Group = BTreeMap<u64, (Labels, Vec<LogEntry>)>;
    let mut groups: BTreeMap<(i64, Vec<(String, String)>), Group> = BTreeMap::new();
    for s in streams {
        let fp = s.labels.fingerprint();
        let part = partition_of(&s.labels, partition_labels);
        for e in s.entries {
            let day = e.ts_ns.div_euclid(DAY_NS);
            groups
                .entry((day, part.clone()))
                .or_default()
                .entry(fp)
                .or_insert_with(|| (s.labels.clone(), Vec::new()))
                .1
                .push(e);
        }
    }
    let mut out = Vec::with_capacity(groups.len());
    for ((_, partition), mut group) in groups {
        for (_, entries) in group.values_mut() {
            entries.sort_by_key(|e| e.ts_ns);
        }
        out.push(encode_group(tenant, partition, group, id)?);
    }
    Ok(out)
}

fn encode_group(
    tenant: &str,
    partition: Vec<(String, String)>,
    group: BTreeMap<u64, (Labels, Vec<LogEntry>)>,
    id: &str,
) -> Result<EncodedObject> {
    let rows: usize = group.values().map(|(_, e)| e.len()).sum();
    let line_bytes: usize = group
        .values()
        .flat_map(|(_, e)| e.iter().map(|x| x.line.len()))
        .sum();
    let mut ts = Vec::with_capacity(rows);
    let mut fps = Vec::with_capacity(rows);
    let mut labels_col = StringBuilder::with_capacity(rows, rows * 16);
    let mut lines = StringBuilder::with_capacity(rows, line_bytes);
    let names = MapFieldNames {
        entry: "key_value".into(),
        key: "key".into(),
        value: "value".into(),
    };
    let mut meta = MapBuilder::new(Some(names), StringBuilder::new(), StringBuilder::new());
    let mut catalog = StreamCatalog::default();
    let (mut min_ts, mut max_ts) = (i64::MAX, i64::MIN);

    for (fp, (labels, entries)) in &group {
        let label_text = labels.to_string();
        let mut info = StreamInfo {
            fingerprint: *fp,
            labels: labels
                .iter()
                .map(|l| (l.name.clone(), l.value.clone()))
                .collect(),
            entries: entries.len() as u64,
            bytes: 0,
            min_ts: i64::MAX,
            max_ts: i64::MIN,
        };
        for e in entries {
            ts.push(e.ts_ns);
            fps.push(*fp);
            labels_col.append_value(&label_text);
            lines.append_value(&e.line);
            for (k, v) in &e.structured_metadata {
                meta.keys().append_value(k);
                meta.values().append_value(v);
            }
            meta.append(true)?;
            info.bytes += e.line.len() as u64;
            info.min_ts = info.min_ts.min(e.ts_ns);
            info.max_ts = info.max_ts.max(e.ts_ns);
        }
        min_ts = min_ts.min(info.min_ts);
        max_ts = max_ts.max(info.max_ts);
        catalog.streams.push(info);
    }

    let columns: Vec<ArrayRef> = vec![
        Arc::new(TimestampNanosecondArray::from(ts).with_timezone("UTC")),
        Arc::new(UInt64Array::from(fps)),
        Arc::new(labels_col.finish()),
        Arc::new(lines.finish()),
        Arc::new(meta.finish()),
    ];
    let batch = RecordBatch::try_new(log_schema(), columns)?;
    let props = writer_properties(&catalog)?;
    let mut buf = Vec::with_capacity(line_bytes / 4 + 4096);
    let mut writer = ArrowWriter::try_new(&mut buf, log_schema(), Some(props))?;
    writer.write(&batch)?;
    writer.close()?;

    let key = ObjectKey {
        tenant: tenant.to_string(),
        day: day_of(min_ts),
        partition,
        min_ts,
        max_ts,
        id: id.to_string(),
    };
    Ok(EncodedObject {
        key,
        data: Bytes::from(buf),
        entries: rows as u64,
    })
}
