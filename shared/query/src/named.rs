//! Scan reads that name their object: every byte range and footer DataFusion's Parquet scan
//! reads goes through [`NamingReaderFactory`], so a failed read or an unreadable footer says
//! which object (and so which tenant and day, from its key) it came from.

use std::fmt;
use std::ops::Range;
use std::sync::Arc;

use datafusion::datasource::listing::PartitionedFile;
use datafusion::datasource::physical_plan::ParquetFileReaderFactory;
use datafusion::parquet::arrow::arrow_reader::ArrowReaderOptions;
use datafusion::parquet::arrow::async_reader::AsyncFileReader;
use datafusion::parquet::errors::{ParquetError, Result as ParquetResult};
use datafusion::parquet::file::metadata::ParquetMetaData;
use datafusion::physical_plan::metrics::ExecutionPlanMetricsSet;
use futures::FutureExt;
use futures::future::BoxFuture;

/// A read of one object that failed, with the object's key.
#[derive(Debug, thiserror::Error)]
#[error("object {key}: {source}")]
pub(crate) struct ObjectReadError {
    /// The object's key (`v1/tenant=…/day=…/…`).
    key: String,
    /// What the read or the footer decode said.
    #[source]
    source: ParquetError,
}

/// Wraps another reader factory; only the errors change.
#[derive(Debug)]
pub(crate) struct NamingReaderFactory {
    inner: Arc<dyn ParquetFileReaderFactory>,
}

impl NamingReaderFactory {
    pub(crate) fn new(inner: Arc<dyn ParquetFileReaderFactory>) -> Self {
        NamingReaderFactory { inner }
    }
}

impl ParquetFileReaderFactory for NamingReaderFactory {
    fn create_reader(
        &self,
        partition_index: usize,
        partitioned_file: PartitionedFile,
        metadata_size_hint: Option<usize>,
        metrics: &ExecutionPlanMetricsSet,
    ) -> datafusion::error::Result<Box<dyn AsyncFileReader + Send>> {
        let key = partitioned_file.object_meta.location.to_string();
        let inner = self.inner.create_reader(
            partition_index,
            partitioned_file,
            metadata_size_hint,
            metrics,
        )?;
        Ok(Box::new(NamingReader { key, inner }))
    }
}

struct NamingReader {
    key: String,
    inner: Box<dyn AsyncFileReader + Send>,
}

impl NamingReader {
    fn named(&self) -> impl FnOnce(ParquetError) -> ParquetError + use<> {
        let key = self.key.clone();
        move |source| ParquetError::External(Box::new(ObjectReadError { key, source }))
    }
}

impl fmt::Debug for NamingReader {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NamingReader")
            .field("key", &self.key)
            .finish_non_exhaustive()
    }
}

impl AsyncFileReader for NamingReader {
    fn get_bytes(&mut self, range: Range<u64>) -> BoxFuture<'_, ParquetResult<bytes::Bytes>> {
        let named = self.named();
        self.inner
            .get_bytes(range)
            .map(|r| r.map_err(named))
            .boxed()
    }

    fn get_byte_ranges(
        &mut self,
        ranges: Vec<Range<u64>>,
    ) -> BoxFuture<'_, ParquetResult<Vec<bytes::Bytes>>> {
        let named = self.named();
        self.inner
            .get_byte_ranges(ranges)
            .map(|r| r.map_err(named))
            .boxed()
    }

    fn get_metadata<'a>(
        &'a mut self,
        options: Option<&'a ArrowReaderOptions>,
    ) -> BoxFuture<'a, ParquetResult<Arc<ParquetMetaData>>> {
        let named = self.named();
        self.inner
            .get_metadata(options)
            .map(|r| r.map_err(named))
            .boxed()
    }
}

#[cfg(test)]
mod tests {
    use datafusion::datasource::physical_plan::parquet::DefaultParquetFileReaderFactory;
    use object_store::memory::InMemory;
    use object_store::path::Path;
    use object_store::{ObjectStore, ObjectStoreExt, PutPayload};

    use super::*;

    #[tokio::test]
    async fn a_bad_footer_and_a_missing_object_name_their_key() {
        let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
        let key = "v1/tenant=fake/day=2024-01-01/service_name=api/1-2-x.parquet";
        store
            .put(
                &Path::from(key),
                PutPayload::from_static(b"not a parquet file"),
            )
            .await
            .unwrap();
        let factory =
            NamingReaderFactory::new(Arc::new(DefaultParquetFileReaderFactory::new(store)));
        let metrics = ExecutionPlanMetricsSet::new();
        let file = |size| {
            PartitionedFile::new_from_meta(object_store::ObjectMeta {
                location: Path::from(key),
                last_modified: chrono::DateTime::UNIX_EPOCH,
                size,
                e_tag: None,
                version: None,
            })
        };

        let mut reader = factory.create_reader(0, file(18), None, &metrics).unwrap();
        let err = reader.get_metadata(None).await.unwrap_err().to_string();
        assert!(err.contains(&format!("object {key}: ")), "{err}");

        // The object is shorter than its listed size: the read fails, and says where.
        let mut reader = factory
            .create_reader(0, file(1000), None, &metrics)
            .unwrap();
        let err = reader.get_bytes(900..1000).await.unwrap_err().to_string();
        assert!(err.contains(&format!("object {key}: ")), "{err}");
    }
}
