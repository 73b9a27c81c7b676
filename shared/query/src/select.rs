//! Steps 1 and 2 of every query: which objects, and which streams inside them.

use std::collections::{BTreeSet, HashSet};

use parquetry_model::{Matcher, matcher::matches_all};
use parquetry_store::layout::PartValue;
use parquetry_store::{DataObject, StreamInfo};

use crate::stats::QueryStats;
use crate::{QueryEngine, Result};

/// One object to scan and the streams wanted from it.
#[derive(Debug, Clone)]
pub struct SelectedObject {
    /// The object.
    pub object: DataObject,
    /// Its streams that match the selector.
    pub streams: Vec<StreamInfo>,
}

/// The outcome of selection.
#[derive(Debug, Clone, Default)]
pub struct Selection {
    /// The objects with a matching stream, by path.
    pub objects: Vec<SelectedObject>,
    /// Delete requests hiding part of the selected entries (see `deletes`).
    pub deletes: Vec<crate::deletes::AppliedDelete>,
}

impl Selection {
    /// Fingerprints of every selected stream.
    pub fn fingerprints(&self) -> BTreeSet<u64> {
        self.objects
            .iter()
            .flat_map(|o| o.streams.iter().map(|s| s.fingerprint))
            .collect()
    }

    /// What selecting `[start, end)` would have chosen, from a selection of a range holding
    /// it: the objects and streams overlapping it. The delete requests stay as they are (a
    /// request names a time range of its own, so one that reaches no entry here hides none).
    pub(crate) fn within(&self, start: i64, end: i64) -> Selection {
        let objects = self
            .objects
            .iter()
            .filter(|o| o.object.overlaps(start, end))
            .filter_map(|o| {
                let streams: Vec<StreamInfo> = o
                    .streams
                    .iter()
                    .filter(|s| in_range(s, start, end))
                    .cloned()
                    .collect();
                (!streams.is_empty()).then(|| SelectedObject {
                    object: o.object.clone(),
                    streams,
                })
            })
            .collect();
        Selection {
            objects,
            deletes: self.deletes.clone(),
        }
    }

    /// Distinct selected streams, first occurrence wins.
    pub fn streams(&self) -> Vec<&StreamInfo> {
        let mut seen = HashSet::new();
        self.objects
            .iter()
            .flat_map(|o| o.streams.iter())
            .filter(|s| seen.insert(s.fingerprint))
            .collect()
    }
}

impl QueryEngine {
    /// Whether an object's partition (from its key) may hold streams matching one of
    /// `matcher_sets`. A partition value is the label's value (empty when absent), so a
    /// matcher on a partition label can be decided from the key alone.
    pub(crate) fn partition_filter<'a>(
        &self,
        matcher_sets: &'a [Vec<Matcher>],
    ) -> impl Fn(&[(String, PartValue)]) -> bool + 'a {
        let partition_labels = self.store().partition_labels().to_vec();
        move |part: &[(String, PartValue)]| {
            matcher_sets.is_empty()
                || matcher_sets.iter().any(|set| {
                    set.iter()
                        .all(|m| match part.iter().find(|(n, _)| *n == m.name) {
                            Some((_, v)) if partition_labels.contains(&m.name) => v.may_match(m),
                            _ => true,
                        })
                })
        }
    }

    /// Objects of `tenant` overlapping `[start, end)` and the streams in them that match every
    /// matcher of at least one of `matcher_sets` (an empty list of sets selects everything).
    pub async fn select(
        &self,
        tenant: &str,
        matcher_sets: &[Vec<Matcher>],
        start: i64,
        end: i64,
        stats: &mut QueryStats,
    ) -> Result<Selection> {
        let objects = self
            .store()
            .list(tenant, start, end, self.partition_filter(matcher_sets))
            .await?;
        stats.objects_considered += objects.len() as u64;
        let (readable, unreadable) = self.store().readable_catalogs(objects).await?;
        for u in unreadable {
            stats.warn(format!(
                "object {} cannot be read and was left out of this answer: {}",
                u.path, u.reason
            ));
        }
        let requests = self.store().query_deletes(tenant).await?;
        let mut out = Selection::default();
        for (object, catalog) in readable {
            let streams: Vec<StreamInfo> = catalog
                .streams
                .iter()
                .filter(|s| in_range(s, start, end))
                .filter(|s| {
                    self.only_streams
                        .as_ref()
                        .is_none_or(|only| only.contains(&s.fingerprint))
                })
                .filter(|s| {
                    let labels = s.labels();
                    matcher_sets.is_empty()
                        || matcher_sets.iter().any(|set| matches_all(set, &labels))
                })
                .filter(|s| {
                    !requests
                        .iter()
                        .any(|r| crate::deletes::covers_stream(&r.filter, s))
                })
                .cloned()
                .collect();
            if !streams.is_empty() {
                out.objects.push(SelectedObject { object, streams });
            }
        }
        if !requests.is_empty() {
            out.deletes = crate::deletes::applicable(&requests, &out);
        }
        Ok(out)
    }
}

/// Whether stream `s` of an object has an entry that may lie in `[start, end)`.
fn in_range(s: &StreamInfo, start: i64, end: i64) -> bool {
    s.min_ts < end && s.max_ts >= start
}
