//! [`LogTable`]: a DataFusion table over exactly the objects a query selected.
//!
//! This is the `parquet_index` pattern: our own index (key layout + stream catalogs) decides
//! which files to open; DataFusion's Parquet scan does the rest, with every filter the plan
//! pushes down applied inside the scan (row-group and page pruning by statistics, then a row
//! filter that decodes `line` only for rows that survive the cheaper predicates).

use std::sync::Arc;

use arrow::datatypes::SchemaRef;
use async_trait::async_trait;
use datafusion::catalog::Session;
use datafusion::common::DFSchema;
use datafusion::datasource::TableType;
use datafusion::datasource::listing::PartitionedFile;
use datafusion::datasource::physical_plan::{FileGroup, FileScanConfigBuilder, ParquetSource};
use datafusion::datasource::source::DataSourceExec;
use datafusion::execution::object_store::ObjectStoreUrl;
use datafusion::logical_expr::utils::conjunction;
use datafusion::logical_expr::{Expr, TableProviderFilterPushDown};
use datafusion::physical_plan::ExecutionPlan;
use object_store::ObjectMeta;
use parquetry_store::DataObject;
use parquetry_store::schema::log_schema;

/// The URL under which the store is registered with DataFusion. Object paths are relative to
/// the store root, so the same plan works on any backend.
pub const STORE_URL: &str = "parquetry://store/";

#[derive(Debug)]
pub struct LogTable {
    objects: Vec<DataObject>,
    schema: SchemaRef,
}

impl LogTable {
    pub fn new(objects: Vec<DataObject>) -> Self {
        LogTable {
            objects,
            schema: log_schema(),
        }
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
        let mut source = ParquetSource::new(self.schema.clone())
            .with_table_parquet_options(state.table_options().parquet.clone());
        if let Some(pred) = conjunction(filters.iter().cloned()) {
            let df_schema = DFSchema::try_from(self.schema.as_ref().clone())?;
            let physical = state.create_physical_expr(pred, &df_schema)?;
            source = source.with_predicate(physical);
        }
        // One file group per object lets DataFusion spread objects over its target partitions.
        let groups: Vec<FileGroup> = self
            .objects
            .iter()
            .map(|o| FileGroup::new(vec![partitioned_file(o)]))
            .collect();
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
