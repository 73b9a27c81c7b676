//! [`LogTable`]: a DataFusion table over exactly the objects a query selected.
//!
//! This is the `parquet_index` pattern: our own index (key layout + stream catalogs) decides
//! which files to open; DataFusion's Parquet scan does the rest, with every filter the plan
//! pushes down applied inside the scan (row-group and page pruning by statistics, then a row
//! filter that decodes `line` only for rows that survive the cheaper predicates).

use std::sync::Arc;

use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use async_trait::async_trait;
use datafusion::catalog::Session;
use datafusion::common::DFSchema;
use datafusion::datasource::TableType;
use datafusion::datasource::listing::PartitionedFile;
use datafusion::datasource::physical_plan::parquet::{
    DefaultParquetFileReaderFactory, ParquetRowSelection,
};
use datafusion::datasource::physical_plan::{
    FileGroup, FileGroupPartitioner, FileScanConfigBuilder, ParquetFileReaderFactory, ParquetSource,
};
use datafusion::datasource::source::DataSourceExec;
use datafusion::execution::object_store::ObjectStoreUrl;
use datafusion::logical_expr::utils::conjunction;
use datafusion::logical_expr::{Expr, TableProviderFilterPushDown};
use datafusion::parquet::arrow::arrow_reader::RowSelection;
use datafusion::physical_plan::ExecutionPlan;
use object_store::ObjectMeta;
use parquetry_store::DataObject;
use parquetry_store::schema::{COL_LINE, log_schema};

use crate::named::NamingReaderFactory;

/// The URL under which the store is registered with DataFusion. Object paths are relative to
/// the store root, so the same plan works on any backend.
pub const STORE_URL: &str = "parquetry://store/";

/// A DataFusion table over a chosen set of log objects.
#[derive(Debug)]
pub struct LogTable {
    objects: Vec<DataObject>,
    schema: SchemaRef,
    /// Per object, the only rows to read (see `newest`); same order as `objects`.
    rows: Option<Vec<RowSelection>>,
    /// Spread the objects' bytes evenly over this many scan partitions instead of one
    /// partition per object.
    partitions: Option<usize>,
}

impl LogTable {
    /// A table over `objects`.
    pub fn new(objects: Vec<DataObject>) -> Self {
        LogTable {
            objects,
            schema: log_schema(),
            rows: None,
            partitions: None,
        }
    }

    /// Reads only `rows[i]` of `objects[i]`.
    pub fn with_rows(objects: Vec<DataObject>, rows: Vec<RowSelection>) -> Self {
        LogTable {
            rows: Some(rows),
            ..LogTable::new(objects)
        }
    }

    /// Cuts the objects into `n` scan partitions of about equal size (byte ranges: each row
    /// group is read by the partition holding its middle), so a query over few large objects
    /// still keeps `n` cores busy, and `n = 1` runs it on one.
    pub fn with_partitions(mut self, n: usize) -> Self {
        self.partitions = Some(n.max(1));
        self
    }

    /// Reads `line` as `Utf8View`: each batch's lines are views into the decompressed
    /// pages rather than a copy of every line into one buffer grown by reallocation, for a
    /// scan that only reads its lines in place (a metric query's fold). That copy was 7 % of
    /// a per-line parser query's CPU and its fresh memory 40 % of the query's page faults
    /// (docs/benchmarks.md, "… lines read in place …").
    pub fn with_line_views(mut self) -> Self {
        let fields: Vec<Field> = self
            .schema
            .fields()
            .iter()
            .map(|f| match f.name().as_str() {
                COL_LINE => f.as_ref().clone().with_data_type(DataType::Utf8View),
                _ => f.as_ref().clone(),
            })
            .collect();
        self.schema = Arc::new(Schema::new_with_metadata(
            fields,
            self.schema.metadata().clone(),
        ));
        self
    }
}

#[async_trait]
impl datafusion::catalog::TableProvider for LogTable {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    fn supports_filters_pushdown(
        &self,
        filters: &[&Expr],
    ) -> datafusion::error::Result<Vec<TableProviderFilterPushDown>> {
        // Inexact: the scan prunes and filters with them, and DataFusion keeps a FilterExec
        // above, so correctness never depends on how much the scan managed to apply.
        Ok(vec![TableProviderFilterPushDown::Inexact; filters.len()])
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> datafusion::error::Result<Arc<dyn ExecutionPlan>> {
        let mut options = state.table_options().parquet.clone();
        if self.rows.is_some() {
            // Parquet's predicate cache decodes whole batches (8,192 rows) around every
            // selected row: 1,000 newest-first candidates, about one per stream, in six
            // compacted objects decoded all their 1 M rows' timestamps, streams and lines
            // (3 M records; the top-k's dynamic filter brings `line` into the predicate).
            // Without it the predicate reads the selected rows only.
            options.global.max_predicate_cache_size = Some(0);
        }
        let mut source =
            ParquetSource::new(self.schema.clone()).with_table_parquet_options(options);
        let runtime = state.runtime_env();
        let store = runtime.object_store(ObjectStoreUrl::parse(STORE_URL)?)?;
        // DataFusion's own default, unless row selections need the page index.
        let readers: Arc<dyn ParquetFileReaderFactory> = if self.rows.is_some() {
            Arc::new(crate::newest::IndexedReaderFactory::new(
                store,
                runtime.cache_manager.get_file_metadata_cache(),
            ))
        } else {
            Arc::new(DefaultParquetFileReaderFactory::new(store))
        };
        source =
            source.with_parquet_file_reader_factory(Arc::new(NamingReaderFactory::new(readers)));
        if let Some(pred) = conjunction(filters.iter().cloned()) {
            let df_schema = DFSchema::try_from(self.schema.as_ref().clone())?;
            let physical = state.create_physical_expr(pred, &df_schema)?;
            source = source.with_predicate(physical);
        }
        // One file group per object lets DataFusion spread objects over its target partitions.
        let mut groups: Vec<FileGroup> = self
            .objects
            .iter()
            .enumerate()
            .map(|(i, o)| {
                let mut f = partitioned_file(o);
                if let Some(rows) = self.rows.as_ref().and_then(|r| r.get(i)) {
                    f = f.with_extension(ParquetRowSelection::new(rows.clone()));
                }
                FileGroup::new(vec![f])
            })
            .collect();
        if let Some(n) = self.partitions {
            groups = FileGroupPartitioner::new()
                .with_target_partitions(n)
                .with_repartition_file_min_size(0)
                .repartition_file_groups(&groups)
                .unwrap_or(groups);
        }
        let config =
            FileScanConfigBuilder::new(ObjectStoreUrl::parse(STORE_URL)?, Arc::new(source))
                .with_file_groups(groups)
                .with_projection_indices(projection.cloned())?
                .with_limit(limit)
                .build();
        Ok(DataSourceExec::from_data_source(config))
    }
}

/// The object as DataFusion's scan opens it. The key goes over as a `Path` as is:
/// `PartitionedFile::new` takes a string and escapes it again, so every key holding a `%`
/// (any partition value outside `[A-Za-z0-9._-]`) would name an object that does not exist.
fn partitioned_file(o: &DataObject) -> PartitionedFile {
    PartitionedFile::new_from_meta(ObjectMeta {
        location: o.path.clone(),
        last_modified: chrono::DateTime::UNIX_EPOCH,
        size: o.size,
        e_tag: None,
        version: None,
    })
}
