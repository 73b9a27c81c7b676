//! The Arrow schema of a log object. Column order and names are part of the format.

use std::sync::{Arc, LazyLock};

use arrow::datatypes::{DataType, Field, Fields, Schema, SchemaRef, TimeUnit};

/// Entry time, nanosecond timestamp.
pub const COL_TIMESTAMP: &str = "timestamp";
/// Stream fingerprint.
pub const COL_STREAM: &str = "stream";
/// Stream labels.
pub const COL_LABELS: &str = "labels";
/// The log line.
pub const COL_LINE: &str = "line";
/// The entry's structured metadata.
pub const COL_METADATA: &str = "structured_metadata";

/// Key in the Parquet footer's key-value metadata that holds the stream catalog (JSON).
pub const CATALOG_KEY: &str = "parquetry.streams";
/// Key naming the format version of the object.
pub const FORMAT_KEY: &str = "parquetry.format";
/// Version of the object format, in each footer.
pub const FORMAT_VERSION: &str = "1";

/// The map type of `structured_metadata`: a `map<string, string>` any Parquet reader knows.
pub fn metadata_field() -> Field {
    let entries = Field::new(
        "key_value",
        DataType::Struct(Fields::from(vec![
            Field::new("key", DataType::Utf8, false),
            Field::new("value", DataType::Utf8, true),
        ])),
        false,
    );
    Field::new(COL_METADATA, DataType::Map(Arc::new(entries), false), true)
}

static SCHEMA: LazyLock<SchemaRef> = LazyLock::new(|| {
    Arc::new(Schema::new(vec![
        Field::new(
            COL_TIMESTAMP,
            DataType::Timestamp(TimeUnit::Nanosecond, Some("UTC".into())),
            false,
        ),
        Field::new(COL_STREAM, DataType::UInt64, false),
        Field::new(COL_LABELS, DataType::Utf8, false),
        Field::new(COL_LINE, DataType::Utf8, false),
        metadata_field(),
    ]))
});

/// The schema every v1 object is written with.
pub fn log_schema() -> SchemaRef {
    SCHEMA.clone()
}
