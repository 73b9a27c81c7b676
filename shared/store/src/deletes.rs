//! Delete requests (Loki's delete API): the request objects, their listing (cached for
//! queries) and [`DeleteFilter`], the one definition of "this entry is deleted" that query
//! paths and the compactor's rewrite ([`crate::rewrite`]) share.
//!
//! ```text
//! v1/tenant=<t>/_deletes/<request_id>.json        the request, written once (create-only)
//! v1/tenant=<t>/_deletes/<request_id>.processed   the compactor removed its entries
//! ```
//!
//! A request object is put with a create-only put before the API answers 204, so it survives
//! any process ending right after; cancelling deletes it. `_deletes` has no `=`, so it is
//! never mistaken for a day directory.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::TryStreamExt;
use object_store::path::Path;
use object_store::{ObjectMeta, ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload};
use parquetry_logql::{Expr, LineFilter, LineFilterOp, LineFilterValue, Stage};
use parquetry_model::matcher::matches_all;
use parquetry_model::{Labels, Matcher};
use regex::Regex;
use serde::{Deserialize, Serialize};

use crate::layout::tenant_prefix;
use crate::{At, Result, Store, StoreError};

/// Directory (under a tenant prefix) holding the tenant's delete requests.
pub const DELETES_DIR: &str = "_deletes";
/// Version of the stored request's JSON.
pub const REQUEST_FORMAT: u32 = 1;
const PROCESSED_SUFFIX: &str = ".processed";
/// How long a query reuses a tenant's listing of requests. A request made through another
/// process takes at most this long to show in this one's queries; this process's own
/// requests and cancellations drop the cached listing at once.
const LISTING_TTL: Duration = Duration::from_secs(10);

/// One delete request as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeleteRequest {
    /// [`REQUEST_FORMAT`] when written.
    pub format: u32,
    /// Loki's 8-hex-digit request id.
    pub request_id: String,
    /// The tenant whose entries go.
    pub tenant: String,
    /// The LogQL the request was made with: a selector and optional line filters.
    pub query: String,
    /// Entries with `start_ns <= ts <= end_ns` are deleted (Loki's bounds are inclusive).
    pub start_ns: i64,
    /// End of the range (inclusive, Unix ns).
    pub end_ns: i64,
    /// When the request was made (Unix ns); the cancel period runs from here.
    pub created_ns: i64,
}

/// A stored request and whether the compactor has finished with it.
#[derive(Debug, Clone)]
pub struct StoredRequest {
    /// The request as stored.
    pub request: DeleteRequest,
    /// The compactor has removed its entries from storage.
    pub processed: bool,
    /// The request compiled for matching entries.
    pub filter: Arc<DeleteFilter>,
}

/// Why a delete query is not acceptable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DeleteQueryError {
    /// Not a log selector with a pipeline (Loki's text).
    #[error("invalid query expression")]
    Invalid,
    /// Valid LogQL, but a stage other than a plain line filter.
    #[error(
        "unsupported delete query: only line filters (|=, !=, |~, !~ with strings) may follow the selector"
    )]
    Unsupported,
}

/// One compiled line filter (`|=`, `!=`, `|~`, `!~`, alternatives joined by `or`).
#[derive(Debug)]
enum LineTest {
    Contains(Vec<String>),
    NotContains(Vec<String>),
    Regex(Vec<Regex>),
    NotRegex(Vec<Regex>),
}

/// The entries one request deletes: streams matching `selector`, times in
/// `[start_ns, end_ns]`, lines passing every line filter.
#[derive(Debug)]
pub struct DeleteFilter {
    /// The stream selector's matchers.
    pub selector: Vec<Matcher>,
    /// The line filters as parsed, for query engines that turn them into scan predicates.
    pub line_filters: Vec<LineFilter>,
    /// Start of the range (inclusive, Unix ns).
    pub start_ns: i64,
    /// End of the range (inclusive, Unix ns).
    pub end_ns: i64,
    tests: Vec<LineTest>,
}

/// Parses a delete query into its selector and line filters.
pub fn parse_delete_query(
    query: &str,
) -> Result<(Vec<Matcher>, Vec<LineFilter>), DeleteQueryError> {
    let expr =
        parquetry_logql::parse_expr_unvalidated(query).map_err(|_| DeleteQueryError::Invalid)?;
    let Expr::Log(log) = expr else {
        return Err(DeleteQueryError::Invalid);
    };
    let mut filters = Vec::new();
    for stage in log.pipeline {
        let Stage::LineFilter(f) = stage else {
            return Err(DeleteQueryError::Unsupported);
        };
        let plain = matches!(
            f.op,
            LineFilterOp::Contains
                | LineFilterOp::NotContains
                | LineFilterOp::Regex
                | LineFilterOp::NotRegex
        ) && f
            .values
            .iter()
            .all(|v| matches!(v, LineFilterValue::Str(_)));
        if !plain {
            return Err(DeleteQueryError::Unsupported);
        }
        filters.push(f);
    }
    Ok((log.selector, filters))
}

impl DeleteFilter {
    /// Compiles a request's query and range.
    pub fn new(query: &str, start_ns: i64, end_ns: i64) -> Result<DeleteFilter, DeleteQueryError> {
        let (selector, line_filters) = parse_delete_query(query)?;
        let mut tests = Vec::with_capacity(line_filters.len());
        for f in &line_filters {
            let strs: Vec<String> = f
                .values
                .iter()
                .filter_map(|v| match v {
                    LineFilterValue::Str(s) => Some(s.clone()),
                    LineFilterValue::Ip(_) => None,
                })
                .collect();
            let regexes = || -> Result<Vec<Regex>, DeleteQueryError> {
                strs.iter()
                    .map(|s| {
                        parquetry_logql::regexes::line_filter_regex(s)
                            .map_err(|_| DeleteQueryError::Invalid)
                    })
                    .collect()
            };
            tests.push(match f.op {
                LineFilterOp::Contains => LineTest::Contains(strs.clone()),
                LineFilterOp::NotContains => LineTest::NotContains(strs.clone()),
                LineFilterOp::Regex => LineTest::Regex(regexes()?),
                LineFilterOp::NotRegex => LineTest::NotRegex(regexes()?),
                _ => return Err(DeleteQueryError::Unsupported),
            });
        }
        Ok(DeleteFilter {
            selector,
            line_filters,
            start_ns,
            end_ns,
            tests,
        })
    }

    /// True when the request applies to a stream with these labels.
    pub fn matches_stream(&self, labels: &Labels) -> bool {
        matches_all(&self.selector, labels)
    }

    /// True when the request's time range meets `[min_ts, max_ts]`.
    pub fn overlaps(&self, min_ts: i64, max_ts: i64) -> bool {
        self.start_ns <= max_ts && min_ts <= self.end_ns
    }

    /// True when every entry in `[min_ts, max_ts]` is deleted whatever its line.
    pub fn covers(&self, min_ts: i64, max_ts: i64) -> bool {
        self.tests.is_empty() && self.start_ns <= min_ts && max_ts <= self.end_ns
    }

    /// True when an entry of a matching stream is deleted.
    pub fn matches_entry(&self, ts: i64, line: &str) -> bool {
        if ts < self.start_ns || ts > self.end_ns {
            return false;
        }
        self.tests.iter().all(|t| match t {
            LineTest::Contains(v) => v.iter().any(|s| line.contains(s.as_str())),
            LineTest::NotContains(v) => !v.iter().any(|s| line.contains(s.as_str())),
            LineTest::Regex(v) => v.iter().any(|r| r.is_match(line)),
            LineTest::NotRegex(v) => !v.iter().any(|r| r.is_match(line)),
        })
    }
}

/// Where `tenant`'s delete requests are stored.
pub fn deletes_dir(tenant: &str) -> Path {
    tenant_prefix(tenant).join(DELETES_DIR)
}

fn request_path(tenant: &str, id: &str) -> Path {
    deletes_dir(tenant).join(format!("{id}.json"))
}

fn processed_path(tenant: &str, id: &str) -> Path {
    deletes_dir(tenant).join(format!("{id}{PROCESSED_SUFFIX}"))
}

fn corrupt(path: &Path, reason: impl ToString) -> StoreError {
    StoreError::Corrupt {
        path: path.to_string(),
        reason: reason.to_string(),
    }
}

/// A tenant's requests and when they were listed.
type CachedListing = (Instant, Arc<Vec<StoredRequest>>);

/// Per-tenant cache of parsed requests: the listing for [`LISTING_TTL`], request bodies for
/// good (a request object never changes).
#[derive(Debug, Default)]
pub(crate) struct RequestCache {
    listings: Mutex<HashMap<String, CachedListing>>,
    bodies: Mutex<HashMap<Path, (DeleteRequest, Arc<DeleteFilter>)>>,
}

/// Outcome of cancelling a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cancel {
    /// The request was removed.
    Cancelled,
    /// No request with that id.
    NotFound,
    /// Processed, or past its cancel period without `force`.
    TooLate,
}

impl Store {
    /// Stores a new request (create-only) and returns it.
    pub async fn add_delete_request(
        &self,
        tenant: &str,
        query: &str,
        start_ns: i64,
        end_ns: i64,
    ) -> Result<DeleteRequest> {
        let created_ns = chrono::Utc::now().timestamp_nanos_opt().unwrap_or(i64::MAX);
        for _ in 0..8 {
            // Loki's ids are 8 hex digits; a collision only costs another try.
            let id = uuid::Uuid::new_v4().simple().to_string()[..8].to_string();
            let req = DeleteRequest {
                format: REQUEST_FORMAT,
                request_id: id.clone(),
                tenant: tenant.to_string(),
                query: query.to_string(),
                start_ns,
                end_ns,
                created_ns,
            };
            let body =
                serde_json::to_vec(&req).map_err(|e| corrupt(&request_path(tenant, &id), e))?;
            let opts = PutOptions {
                mode: PutMode::Create,
                ..Default::default()
            };
            match self
                .store
                .put_opts(&request_path(tenant, &id), PutPayload::from(body), opts)
                .await
            {
                Ok(_) => {
                    self.forget_delete_listing(tenant);
                    return Ok(req);
                }
                Err(object_store::Error::AlreadyExists { .. }) => continue,
                Err(e) => return Err(e).at(request_path(tenant, &id)),
            }
        }
        Err(StoreError::Conflict("no free delete request id".into()))
    }

    /// Every request of `tenant`, oldest first, read fresh from the store.
    pub async fn delete_requests(&self, tenant: &str) -> Result<Vec<StoredRequest>> {
        let dir = deletes_dir(tenant);
        let metas: Vec<ObjectMeta> = self.store.list(Some(&dir)).try_collect().await.at(&dir)?;
        let processed: std::collections::HashSet<String> = metas
            .iter()
            .filter_map(|m| m.location.filename())
            .filter_map(|f| f.strip_suffix(PROCESSED_SUFFIX))
            .map(str::to_string)
            .collect();
        let mut out = Vec::new();
        for m in metas {
            let Some(id) = m.location.filename().and_then(|f| f.strip_suffix(".json")) else {
                continue;
            };
            let id = id.to_string();
            let (request, filter) = self.request_body(&m.location).await?;
            out.push(StoredRequest {
                processed: processed.contains(&id),
                request,
                filter,
            });
        }
        out.sort_by(|a, b| {
            (a.request.created_ns, &a.request.request_id)
                .cmp(&(b.request.created_ns, &b.request.request_id))
        });
        Ok(out)
    }

    async fn request_body(&self, path: &Path) -> Result<(DeleteRequest, Arc<DeleteFilter>)> {
        if let Some(hit) = self
            .deletes
            .bodies
            .lock()
            .ok()
            .and_then(|b| b.get(path).cloned())
        {
            return Ok(hit);
        }
        let bytes = self
            .store
            .get(path)
            .await
            .at(path)?
            .bytes()
            .await
            .at(path)?;
        let req: DeleteRequest = serde_json::from_slice(&bytes).map_err(|e| corrupt(path, e))?;
        let filter = DeleteFilter::new(&req.query, req.start_ns, req.end_ns)
            .map_err(|e| corrupt(path, e))?;
        let entry = (req, Arc::new(filter));
        if let Ok(mut b) = self.deletes.bodies.lock() {
            b.insert(path.clone(), entry.clone());
        }
        Ok(entry)
    }

    /// The requests queries apply (cached for a few seconds): all of them, processed ones
    /// too, so an entry never reappears between the compactor's commit and the end of the
    /// grace period in which queries may still read the old objects.
    pub async fn query_deletes(&self, tenant: &str) -> Result<Arc<Vec<StoredRequest>>> {
        if let Some((at, list)) = self
            .deletes
            .listings
            .lock()
            .ok()
            .and_then(|l| l.get(tenant).cloned())
            && at.elapsed() < LISTING_TTL
        {
            return Ok(list);
        }
        let list = Arc::new(self.delete_requests(tenant).await?);
        if let Ok(mut l) = self.deletes.listings.lock() {
            if l.len() > 10_000 {
                l.clear();
            }
            l.insert(tenant.to_string(), (Instant::now(), list.clone()));
        }
        Ok(list)
    }

    fn forget_delete_listing(&self, tenant: &str) {
        if let Ok(mut l) = self.deletes.listings.lock() {
            l.remove(tenant);
        }
    }

    /// Cancels a request: within `cancel_period` of its creation, or later with `force`, as
    /// long as the compactor has not processed it.
    pub async fn cancel_delete_request(
        &self,
        tenant: &str,
        id: &str,
        cancel_period: Duration,
        force: bool,
    ) -> Result<Cancel> {
        let all = self.delete_requests(tenant).await?;
        let Some(found) = all.iter().find(|r| r.request.request_id == id) else {
            return Ok(Cancel::NotFound);
        };
        let now = chrono::Utc::now().timestamp_nanos_opt().unwrap_or(i64::MAX);
        let period = cancel_period.as_nanos().min(i64::MAX as u128) as i64;
        let in_time = found.request.created_ns.saturating_add(period) > now;
        if found.processed || !(in_time || force) {
            return Ok(Cancel::TooLate);
        }
        let path = request_path(tenant, id);
        match self.store.delete(&path).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
            Err(e) => return Err(e).at(path),
        }
        self.forget_delete_listing(tenant);
        Ok(Cancel::Cancelled)
    }

    /// Records that the compactor removed a request's entries (create-only, repeatable).
    pub(crate) async fn mark_processed(&self, tenant: &str, id: &str) -> Result<()> {
        let opts = PutOptions {
            mode: PutMode::Create,
            ..Default::default()
        };
        let path = processed_path(tenant, id);
        match self
            .store
            .put_opts(&path, PutPayload::from_static(b"{}"), opts)
            .await
        {
            Ok(_) | Err(object_store::Error::AlreadyExists { .. }) => {
                self.forget_delete_listing(tenant);
                Ok(())
            }
            Err(e) => Err(e).at(path),
        }
    }

    /// The object store, for tests that inspect request objects.
    pub fn deletes_store(&self) -> Arc<dyn ObjectStore> {
        self.store.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queries_and_entries() {
        assert_eq!(
            DeleteFilter::new("{a=", 0, 1).unwrap_err(),
            DeleteQueryError::Invalid
        );
        assert_eq!(
            DeleteFilter::new("sum(rate({a=\"b\"}[1m]))", 0, 1).unwrap_err(),
            DeleteQueryError::Invalid
        );
        assert_eq!(
            DeleteFilter::new("{a=\"b\"} | json", 0, 1).unwrap_err(),
            DeleteQueryError::Unsupported
        );
        let f = DeleteFilter::new(r#"{a="b"} |= "secret" != "keep" |~ "x[0-9]""#, 10, 20).unwrap();
        assert!(f.matches_stream(&Labels::from_pairs([("a", "b"), ("c", "d")])));
        assert!(!f.matches_stream(&Labels::from_pairs([("a", "c")])));
        assert!(f.matches_entry(10, "a secret x1"));
        assert!(f.matches_entry(20, "a secret x1"));
        assert!(!f.matches_entry(21, "a secret x1"));
        assert!(!f.matches_entry(15, "a secret x1 keep"));
        assert!(!f.matches_entry(15, "a secret y"));
        assert!(!f.covers(10, 20));
        let all = DeleteFilter::new(r#"{a="b"}"#, 10, 20).unwrap();
        assert!(all.covers(10, 20) && !all.covers(9, 20));
    }

    #[tokio::test]
    async fn requests_are_stored_listed_and_cancelled() {
        let store = Store::open("memory://", vec![]).unwrap();
        let r = store
            .add_delete_request("t", r#"{a="b"}"#, 1, 2)
            .await
            .unwrap();
        assert_eq!(r.request_id.len(), 8);
        let all = store.query_deletes("t").await.unwrap();
        assert_eq!(all.len(), 1);
        assert!(!all[0].processed);
        assert!(store.query_deletes("other").await.unwrap().is_empty());
        assert_eq!(
            store
                .cancel_delete_request("t", "nope", Duration::from_secs(60), false)
                .await
                .unwrap(),
            Cancel::NotFound
        );
        assert_eq!(
            store
                .cancel_delete_request("t", &r.request_id, Duration::ZERO, false)
                .await
                .unwrap(),
            Cancel::TooLate
        );
        store.mark_processed("t", &r.request_id).await.unwrap();
        assert!(store.query_deletes("t").await.unwrap()[0].processed);
        assert_eq!(
            store
                .cancel_delete_request("t", &r.request_id, Duration::from_secs(60), true)
                .await
                .unwrap(),
            Cancel::TooLate
        );
        let r2 = store
            .add_delete_request("t", r#"{a="c"}"#, 1, 2)
            .await
            .unwrap();
        assert_eq!(
            store
                .cancel_delete_request("t", &r2.request_id, Duration::from_secs(60), false)
                .await
                .unwrap(),
            Cancel::Cancelled
        );
        assert_eq!(store.query_deletes("t").await.unwrap().len(), 1);
    }
}
