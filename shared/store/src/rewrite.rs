//! The compactor's delete pass: rewrites the objects that hold entries removed by a delete
//! request (past its cancel period) or by a `retention_stream` rule, without those entries.
//!
//! It follows compaction's protocol, so every step is safe to crash at and to repeat:
//!
//! 1. Each affected live object is read and written again, minus the removed entries, under a
//!    fresh cold id (`c_<uuid>`), footer catalog recounted. An object losing nothing is not
//!    written; one losing everything becomes an object with no rows, so the manifest has
//!    something to name in its place. Until a manifest names them the new objects are
//!    orphans, which compaction deletes after the grace period.
//! 2. One manifest version per day swaps them in: each new object absorbs the object it
//!    replaces (and what that one absorbed), so the old one leaves the live set at once and
//!    is deleted after `delete_delay` by compaction's garbage collection, like any absorbed
//!    object. A lost race or a day now being deleted discards the new objects.
//! 3. Once every day of the tenant went through, each request handled gets its `processed`
//!    marker (create-only). A crash before that repeats the pass, which then finds nothing
//!    left to remove in the objects already rewritten.
//!
//! Whole days outside the tenant's retention period stay with `retention` (the fast path:
//! no object is read).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow::array::{AsArray, BooleanBuilder};
use arrow::datatypes::{TimestampNanosecondType, UInt64Type};
use bytes::Bytes;
use object_store::{ObjectStoreExt, PutMode, PutOptions, PutPayload};
use parquet::arrow::ArrowWriter;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquetry_model::{Labels, Matcher};

use crate::catalog::{StreamCatalog, StreamInfo};
use crate::deletes::{DeleteFilter, DeleteQueryError, StoredRequest};
use crate::layout::{DataObject, ObjectKey};
use crate::manifest::{self, ColdObject, Replacement};
use crate::schema::{CATALOG_KEY, log_schema};
use crate::writer::{Tier, writer_properties};
use crate::{At, DAY_NS, Result, Store, StoreError};
use parquetry_model::now_ns;

/// Index of `line` in [`log_schema`].
const LINE_COLUMN: usize = 3;
const COMMIT_ATTEMPTS: usize = 16;

/// One `retention_stream` rule, parsed.
#[derive(Debug, Clone)]
pub struct StreamRule {
    /// The selector as configured, for reports.
    pub text: String,
    /// The selector's matchers.
    pub selector: Vec<Matcher>,
    /// Among matching rules the highest priority wins.
    pub priority: u32,
    /// How long matching streams are kept.
    pub period: Duration,
}

impl StreamRule {
    /// Parses a configured `retention_stream` rule.
    pub fn parse(
        selector: &str,
        priority: u32,
        period: Duration,
    ) -> Result<StreamRule, DeleteQueryError> {
        let matchers =
            parquetry_logql::parse_selector(selector).map_err(|_| DeleteQueryError::Invalid)?;
        Ok(StreamRule {
            text: selector.to_string(),
            selector: matchers,
            priority,
            period,
        })
    }
}

/// The rule that applies to a stream: highest priority, then shortest period (Loki's choice).
pub fn rule_for<'a>(rules: &'a [StreamRule], labels: &Labels) -> Option<(usize, &'a StreamRule)> {
    rules
        .iter()
        .enumerate()
        .filter(|(_, r)| parquetry_model::matcher::matches_all(&r.selector, labels))
        .max_by(|(_, a), (_, b)| {
            a.priority
                .cmp(&b.priority)
                .then_with(|| b.period.cmp(&a.period))
        })
}

/// What the pass may do for one tenant.
#[derive(Debug, Clone, Default)]
pub struct TenantPolicy {
    /// `deletion_mode: filter-and-delete`: requests are applied to storage.
    pub physical_deletes: bool,
    /// `retention_stream`: per-stream retention rules.
    pub stream_rules: Vec<StreamRule>,
}

/// How a delete pass runs.
#[derive(Debug, Clone)]
pub struct DeletePassOptions {
    /// `compactor.delete_request_cancel_period`: younger requests wait.
    pub cancel_period: Duration,
    /// `compactor.retention_delete_delay`: a pass slower than half of it does not commit.
    pub delete_delay: Duration,
    /// Count what would go; write nothing.
    pub dry_run: bool,
}

impl DeletePassOptions {
    /// The options the `compactor` block sets.
    pub fn from_config(c: &parquetry_model::config::CompactorConfig) -> Self {
        DeletePassOptions {
            cancel_period: c.delete_request_cancel_period.0,
            delete_delay: c.retention_delete_delay.0,
            dry_run: false,
        }
    }
}

impl TenantPolicy {
    /// `deletion_mode` and, when `compactor.retention_enabled` (as in Loki),
    /// `retention_stream` of `tenant` (overrides first).
    pub fn from_config(config: &parquetry_model::Config, tenant: &str) -> TenantPolicy {
        use parquetry_model::config::DeletionMode;
        TenantPolicy {
            physical_deletes: config.deletion_mode(tenant) == DeletionMode::FilterAndDelete,
            stream_rules: if config.compactor.retention_enabled {
                Self::stream_rules(config, tenant)
            } else {
                Vec::new()
            },
        }
    }

    /// The `retention_stream` rules of `tenant`, whatever `retention_enabled` says. A rule
    /// whose selector does not parse is skipped with a warning rather than stopping the pass.
    pub fn stream_rules(config: &parquetry_model::Config, tenant: &str) -> Vec<StreamRule> {
        config
            .retention_stream(tenant)
            .iter()
            .filter_map(
                |r| match StreamRule::parse(&r.selector, r.priority, r.period.0) {
                    Ok(rule) => Some(rule),
                    Err(_) => {
                        tracing::warn!(
                            tenant,
                            selector = r.selector,
                            "retention_stream: bad selector"
                        );
                        None
                    }
                },
            )
            .collect()
    }
}

/// What one `retention_stream` rule removed (or would remove) in a pass.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RuleReport {
    /// The tenant.
    pub tenant: String,
    /// The rule's selector as configured.
    pub selector: String,
    /// The rule's retention period.
    pub period: Duration,
    /// Streams it removed entries from.
    pub streams: u64,
    /// Entries it removed.
    pub entries: u64,
    /// Bytes of line text.
    pub bytes: u64,
}

/// What one delete pass (delete requests and `retention_stream`) did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeletePassSummary {
    /// `(tenant, request id)` marked processed in this pass.
    pub requests_processed: Vec<(String, String)>,
    /// Objects rewritten without the removed entries.
    pub objects_rewritten: u64,
    /// Entries removed.
    pub entries_removed: u64,
    /// Bytes of line text removed.
    pub bytes_removed: u64,
    /// Rewrites discarded because another writer changed the manifest first.
    pub races_lost: u64,
    /// Per `retention_stream` rule.
    pub rules: Vec<RuleReport>,
}

/// Per rule index: the streams it removed entries of, entries and line bytes removed.
type RuleCounts = HashMap<usize, (HashSet<u64>, u64, u64)>;

/// What to remove from one stream of one object.
#[derive(Debug, Default, Clone)]
struct StreamDrop {
    requests: Vec<Arc<DeleteFilter>>,
    /// Entries older than this go, by rule index.
    cutoff: Option<(i64, usize)>,
}

/// Result of filtering one object.
struct Filtered {
    data: Vec<u8>,
    catalog: StreamCatalog,
    removed_entries: u64,
    removed_bytes: u64,
    /// Per rule index: (fingerprints, entries, bytes) removed by it.
    by_rule: RuleCounts,
}

fn nanos(d: Duration) -> i64 {
    d.as_nanos().min(i64::MAX as u128) as i64
}

impl Store {
    /// One delete pass over every tenant. `policy_of(tenant)` says what applies to it.
    #[tracing::instrument(name = "delete_pass", skip_all)]
    pub async fn apply_deletes(
        &self,
        opts: &DeletePassOptions,
        policy_of: impl Fn(&str) -> TenantPolicy,
    ) -> Result<DeletePassSummary> {
        let mut summary = DeletePassSummary::default();
        let mut first_error = None;
        for tenant in self.tenants().await? {
            let policy = policy_of(&tenant);
            if let Err(e) = self
                .apply_deletes_tenant(&tenant, &policy, opts, &mut summary)
                .await
            {
                tracing::warn!(tenant, error = %e, "delete pass of a tenant failed");
                first_error.get_or_insert(e);
            }
        }
        match first_error {
            Some(e) => Err(e),
            None => Ok(summary),
        }
    }

    async fn apply_deletes_tenant(
        &self,
        tenant: &str,
        policy: &TenantPolicy,
        opts: &DeletePassOptions,
        summary: &mut DeletePassSummary,
    ) -> Result<()> {
        let now = now_ns();
        let due: Vec<StoredRequest> = if policy.physical_deletes {
            self.delete_requests(tenant)
                .await?
                .into_iter()
                .filter(|r| {
                    !r.processed
                        && r.request
                            .created_ns
                            .saturating_add(nanos(opts.cancel_period))
                            <= now
                })
                .collect()
        } else {
            Vec::new()
        };
        let rules = &policy.stream_rules;
        let mut reports: Vec<RuleReport> = rules
            .iter()
            .map(|r| RuleReport {
                tenant: tenant.to_string(),
                selector: r.text.clone(),
                period: r.period,
                ..Default::default()
            })
            .collect();
        let mut rule_streams: Vec<HashSet<u64>> = vec![HashSet::new(); rules.len()];
        if due.is_empty() && rules.is_empty() {
            return Ok(());
        }
        let oldest_cutoff = rules
            .iter()
            .map(|r| now.saturating_sub(nanos(r.period)))
            .max();
        let mut complete = true;
        let mut first_error = None;
        for day in self.days(tenant).await? {
            let Some(day_end) = crate::retention::day_end_ns(&day) else {
                continue;
            };
            let day_start = day_end - DAY_NS;
            let relevant = due
                .iter()
                .any(|r| r.filter.overlaps(day_start, day_end - 1))
                || oldest_cutoff.is_some_and(|c| c > day_start);
            if !relevant {
                continue;
            }
            match self
                .rewrite_day(tenant, &day, &due, rules, now, opts, summary)
                .await
            {
                Ok((done, by_rule)) => {
                    complete &= done;
                    for (i, (fps, entries, bytes)) in by_rule {
                        rule_streams[i].extend(fps);
                        reports[i].entries += entries;
                        reports[i].bytes += bytes;
                    }
                }
                Err(e) => {
                    tracing::warn!(tenant, day, error = %e, "delete pass of a day failed");
                    complete = false;
                    first_error.get_or_insert(e);
                }
            }
        }
        for (report, fps) in reports.iter_mut().zip(rule_streams) {
            report.streams = fps.len() as u64;
        }
        summary.rules.extend(reports);
        if let Some(e) = first_error {
            return Err(e);
        }
        if complete && !opts.dry_run {
            for r in &due {
                self.mark_processed(tenant, &r.request.request_id).await?;
                tracing::info!(
                    tenant,
                    request = r.request.request_id,
                    "delete request processed"
                );
                summary
                    .requests_processed
                    .push((tenant.to_string(), r.request.request_id.clone()));
            }
        }
        Ok(())
    }

    /// Rewrites the affected objects of one day and commits them. Returns whether the day is
    /// done (false: a lost race or a slow pass; the next pass repeats it) and what each rule
    /// removed.
    #[allow(clippy::too_many_arguments)]
    #[tracing::instrument(skip_all, fields(tenant = %tenant, day = %day, requests = due.len()))]
    async fn rewrite_day(
        &self,
        tenant: &str,
        day: &str,
        due: &[StoredRequest],
        rules: &[StreamRule],
        now: i64,
        opts: &DeletePassOptions,
        summary: &mut DeletePassSummary,
    ) -> Result<(bool, RuleCounts)> {
        let started = Instant::now();
        let mut by_rule: RuleCounts = HashMap::new();
        let objects = self.live_objects(tenant, day).await?;
        // An object that cannot be decoded cannot be rewritten either: rewrite the others,
        // and keep the day pending so its requests stay applied at query time.
        let (readable, unreadable) = self.readable_catalogs(objects).await?;
        let mut written: Vec<(String, bool, ColdObject)> = Vec::new();
        for (obj, catalog) in readable {
            let mut drops: HashMap<u64, StreamDrop> = HashMap::new();
            for s in &catalog.streams {
                let labels = s.labels();
                let requests: Vec<Arc<DeleteFilter>> = due
                    .iter()
                    .filter(|r| {
                        r.filter.matches_stream(&labels) && r.filter.overlaps(s.min_ts, s.max_ts)
                    })
                    .map(|r| r.filter.clone())
                    .collect();
                let cutoff = rule_for(rules, &labels)
                    .map(|(i, r)| (now.saturating_sub(nanos(r.period)), i))
                    .filter(|(c, _)| *c > s.min_ts);
                if !requests.is_empty() || cutoff.is_some() {
                    drops.insert(s.fingerprint, StreamDrop { requests, cutoff });
                }
            }
            if drops.is_empty() {
                continue;
            }
            let Some(filtered) = self.filter_object(&obj, &catalog, drops).await? else {
                continue;
            };
            for (i, (fps, entries, bytes)) in &filtered.by_rule {
                let r = by_rule.entry(*i).or_default();
                r.0.extend(fps.iter().copied());
                r.1 += entries;
                r.2 += bytes;
            }
            summary.entries_removed += filtered.removed_entries;
            summary.bytes_removed += filtered.removed_bytes;
            if opts.dry_run {
                continue;
            }
            let cold = self.put_rewritten(tenant, day, &obj, filtered).await?;
            let rel = manifest::relative_key(tenant, day, &obj.path).unwrap_or_default();
            written.push((rel, manifest::is_cold_id(&obj.key.id), cold));
        }
        let done = unreadable.is_empty();
        if written.is_empty() {
            return Ok((done, by_rule));
        }
        let discard = |written: Vec<(String, bool, ColdObject)>| async move {
            for (_, _, c) in written {
                let path = manifest::absolute_path(tenant, day, &c.key);
                match self.store.delete(&path).await {
                    Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                    Err(e) => return Err(e).at(&path),
                }
            }
            Ok(())
        };
        if !opts.delete_delay.is_zero() && started.elapsed() > opts.delete_delay / 2 {
            tracing::warn!(
                tenant,
                day,
                "delete pass too slow to commit safely; discarding"
            );
            discard(written).await?;
            return Ok((false, by_rule));
        }
        let created_ns = now_ns();
        let replacements: Vec<Replacement> = written
            .iter()
            .map(|(rel, cold, new)| {
                let inputs = vec![rel.clone()];
                let (hot, cold) = if *cold {
                    (Vec::new(), inputs)
                } else {
                    (inputs, Vec::new())
                };
                Replacement {
                    object: ColdObject {
                        created_ns,
                        ..new.clone()
                    },
                    hot,
                    cold,
                }
            })
            .collect();
        let committed = manifest::commit_replacements(
            self.store.as_ref(),
            tenant,
            day,
            COMMIT_ATTEMPTS,
            &replacements,
        )
        .await?;
        match committed {
            Some(m) => {
                tracing::info!(
                    tenant,
                    day,
                    version = m.version,
                    objects = written.len(),
                    "objects rewritten without deleted entries"
                );
                summary.objects_rewritten += written.len() as u64;
                Ok((done, by_rule))
            }
            None => {
                tracing::info!(
                    tenant,
                    day,
                    "delete pass lost a race; discarding its objects"
                );
                summary.races_lost += 1;
                discard(written).await?;
                Ok((false, by_rule))
            }
        }
    }

    /// Reads `obj` and encodes it again without the entries `drops` removes; `None` when
    /// nothing is removed.
    async fn filter_object(
        &self,
        obj: &DataObject,
        catalog: &StreamCatalog,
        drops: HashMap<u64, StreamDrop>,
    ) -> Result<Option<Filtered>> {
        let bytes = self
            .store
            .get(&obj.path)
            .await
            .at(&obj.path)?
            .bytes()
            .await
            .at(&obj.path)?;
        let catalog = catalog.clone();
        let name = obj.path.to_string();
        tokio::task::spawn_blocking(move || filter_bytes(bytes, &catalog, &drops, &name))
            .await
            .map_err(StoreError::Join)?
    }

    async fn put_rewritten(
        &self,
        tenant: &str,
        day: &str,
        obj: &DataObject,
        f: Filtered,
    ) -> Result<ColdObject> {
        let (min_ts, max_ts) = f
            .catalog
            .streams
            .iter()
            .fold((i64::MAX, i64::MIN), |(lo, hi), s| {
                (lo.min(s.min_ts), hi.max(s.max_ts))
            });
        // An emptied object keeps its predecessor's range: the key needs one.
        let (min_ts, max_ts) = if min_ts > max_ts {
            (obj.key.min_ts, obj.key.max_ts)
        } else {
            (min_ts, max_ts)
        };
        let key = ObjectKey {
            tenant: tenant.to_string(),
            day: day.to_string(),
            partition: obj.key.partition.clone(),
            min_ts,
            max_ts,
            id: manifest::new_cold_id(),
        };
        let path = key.to_path();
        let size = f.data.len() as u64;
        let opts = PutOptions {
            mode: PutMode::Create,
            ..Default::default()
        };
        self.store
            .put_opts(&path, PutPayload::from(f.data), opts)
            .await
            .at(&path)?;
        Ok(ColdObject::written(
            manifest::relative_key(tenant, day, &path).unwrap_or_default(),
            size,
            f.catalog.streams.iter().map(|s| s.entries).sum(),
            min_ts,
            max_ts,
        ))
    }
}

impl Store {
    /// Every entry of every data object in storage, live or not (sorted): what a delete
    /// must leave no trace in. For tools and tests; it reads everything.
    pub async fn stored_rows(&self) -> Result<Vec<crate::compact::Row>> {
        let mut objects = Vec::new();
        for (k, size) in self.list_keys("").await? {
            let Ok(path) = object_store::path::Path::parse(&k) else {
                continue;
            };
            if let Some(key) = ObjectKey::parse(&path) {
                objects.push(DataObject { key, path, size });
            }
        }
        crate::compact::read_all_rows(self, &objects).await
    }
}

/// The blocking half of [`Store::filter_object`].
fn filter_bytes(
    bytes: Bytes,
    catalog: &StreamCatalog,
    drops: &HashMap<u64, StreamDrop>,
    name: &str,
) -> Result<Option<Filtered>> {
    let reader = ParquetRecordBatchReaderBuilder::try_new(bytes)
        .and_then(|b| b.build())
        .at(name)?;
    let props = writer_properties(catalog, false, Tier::Cold)?;
    let mut data = Vec::new();
    let mut writer = ArrowWriter::try_new(&mut data, log_schema(), Some(props)).at(name)?;
    // Per stream: (entries, bytes, min, max) kept.
    let mut kept: HashMap<u64, (u64, u64, i64, i64)> = HashMap::new();
    let (mut removed_entries, mut removed_bytes) = (0u64, 0u64);
    let mut by_rule: RuleCounts = HashMap::new();
    let bad = |what: &str| StoreError::Corrupt {
        path: name.to_string(),
        reason: format!("unexpected {what} column"),
    };
    for batch in reader {
        let batch = batch.at(name)?;
        let ts = batch
            .column(0)
            .as_primitive_opt::<TimestampNanosecondType>()
            .ok_or_else(|| bad("timestamp"))?;
        let fp = batch
            .column(1)
            .as_primitive_opt::<UInt64Type>()
            .ok_or_else(|| bad("stream"))?;
        let line = batch
            .column(LINE_COLUMN)
            .as_string_opt::<i32>()
            .ok_or_else(|| bad("line"))?;
        let mut keep = BooleanBuilder::with_capacity(batch.num_rows());
        for row in 0..batch.num_rows() {
            let (f, t, l) = (fp.value(row), ts.value(row), line.value(row));
            let gone = match drops.get(&f) {
                None => None,
                Some(d) => match d.cutoff {
                    Some((cutoff, rule)) if t < cutoff => Some(Some(rule)),
                    _ => d
                        .requests
                        .iter()
                        .any(|r| r.matches_entry(t, l))
                        .then_some(None),
                },
            };
            match gone {
                Some(rule) => {
                    removed_entries += 1;
                    removed_bytes += l.len() as u64;
                    if let Some(i) = rule {
                        let r = by_rule.entry(i).or_default();
                        r.0.insert(f);
                        r.1 += 1;
                        r.2 += l.len() as u64;
                    }
                    keep.append_value(false);
                }
                None => {
                    let k = kept.entry(f).or_insert((0, 0, i64::MAX, i64::MIN));
                    k.0 += 1;
                    k.1 += l.len() as u64;
                    k.2 = k.2.min(t);
                    k.3 = k.3.max(t);
                    keep.append_value(true);
                }
            }
        }
        let mask = keep.finish();
        if mask.true_count() > 0 {
            let rows = arrow::compute::filter_record_batch(&batch, &mask).at(name)?;
            writer.write(&rows).at(name)?;
        }
    }
    if removed_entries == 0 {
        return Ok(None);
    }
    let streams: Vec<StreamInfo> = catalog
        .streams
        .iter()
        .filter_map(|s| {
            let (entries, bytes, min_ts, max_ts) = kept.get(&s.fingerprint).copied()?;
            Some(StreamInfo {
                entries,
                bytes,
                min_ts,
                max_ts,
                ..s.clone()
            })
        })
        .collect();
    let catalog = StreamCatalog { streams };
    writer.append_key_value_metadata(parquet::file::metadata::KeyValue::new(
        CATALOG_KEY.to_string(),
        catalog.to_json(),
    ));
    writer.close().at(name)?;
    Ok(Some(Filtered {
        data,
        catalog,
        removed_entries,
        removed_bytes,
        by_rule,
    }))
}
