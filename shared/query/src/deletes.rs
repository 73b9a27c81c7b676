//! Delete requests at query time: entries a request matches are hidden from every query as
//! soon as it is made (as in Loki), long before the compactor removes them.
//!
//! Selection (step 2) drops every stream of an object that a request without line filters
//! covers entirely, so catalog-only answers (`labels`, `series`, `index/stats`, volumes) lose
//! those streams too. What a request covers only in part is hidden from log and metric queries
//! by a predicate ANDed into the scan ([`deleted_predicate`]); catalog-only answers still count
//! it until the compactor rewrites the objects.

use std::sync::Arc;

use datafusion::logical_expr::{Expr, and, col, lit, not, or};
use parquetry_logql::Stage;
use parquetry_store::StreamInfo;
use parquetry_store::deletes::DeleteFilter;
use parquetry_store::schema::{COL_STREAM, COL_TIMESTAMP};

use crate::logs::ts_lit;
use crate::pushdown::Pushdown;
use crate::select::Selection;

/// A request that deletes part of the selected streams.
#[derive(Debug, Clone)]
pub struct AppliedDelete {
    /// The request compiled for matching entries.
    pub filter: Arc<DeleteFilter>,
    /// Fingerprints of the selected streams it applies to.
    pub streams: Vec<u64>,
}

/// True when `filter` deletes every entry of `s` (so the stream is not selected at all).
pub(crate) fn covers_stream(filter: &DeleteFilter, s: &StreamInfo) -> bool {
    filter.covers(s.min_ts, s.max_ts) && filter.matches_stream(&s.labels())
}

/// `NOT (deleted by any request)`, or `None` when no request touches the selection.
pub(crate) fn deleted_predicate(sel: &Selection) -> Option<Expr> {
    let mut any: Option<Expr> = None;
    for d in &sel.deletes {
        let f = &d.filter;
        let mut e = and(
            col(COL_STREAM).in_list(d.streams.iter().map(|fp| lit(*fp)).collect(), false),
            and(
                col(COL_TIMESTAMP).gt_eq(ts_lit(f.start_ns)),
                col(COL_TIMESTAMP).lt_eq(ts_lit(f.end_ns)),
            ),
        );
        let stages: Vec<Stage> = f
            .line_filters
            .iter()
            .cloned()
            .map(Stage::LineFilter)
            .collect();
        // Delete queries only hold filters the scan evaluates exactly (see
        // `parse_delete_query`), so the predicate is the whole request.
        if let Some(lines) = Pushdown::of(&stages).predicate {
            e = and(e, lines);
        }
        any = Some(match any {
            Some(a) => or(a, e),
            None => e,
        });
    }
    any.map(not)
}

/// The requests that delete some (not all) of the selected streams' entries.
pub(crate) fn applicable(
    requests: &[parquetry_store::deletes::StoredRequest],
    sel: &Selection,
) -> Vec<AppliedDelete> {
    requests
        .iter()
        .filter_map(|r| {
            let mut streams: Vec<u64> = sel
                .objects
                .iter()
                .flat_map(|o| o.streams.iter())
                .filter(|s| r.filter.overlaps(s.min_ts, s.max_ts))
                .filter(|s| r.filter.matches_stream(&s.labels()))
                .map(|s| s.fingerprint)
                .collect();
            streams.sort_unstable();
            streams.dedup();
            (!streams.is_empty()).then(|| AppliedDelete {
                filter: r.filter.clone(),
                streams,
            })
        })
        .collect()
}
