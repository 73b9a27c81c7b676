//! `labels`, `label/<name>/values`, `series` and `index/stats`: answered from stream catalogs
//! alone, never from line bytes.

use std::collections::{BTreeMap, BTreeSet};

use parquetry_model::{Labels, Matcher};

use crate::select::Selection;
use crate::stats::QueryStats;
use crate::trace::{self, Stage};
use crate::{QueryEngine, Result};

/// `index/stats` figures.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IndexStats {
    /// Matching streams.
    pub streams: u64,
    /// Objects holding a matching stream (Loki counts chunks).
    pub chunks: u64,
    /// Bytes of line text in range.
    pub bytes: u64,
    /// Entries in range.
    pub entries: u64,
}

impl QueryEngine {
    /// Distinct label sets of the streams matching any of `matcher_sets` (all streams when
    /// empty), sorted.
    pub async fn series(
        &self,
        tenant: &str,
        matcher_sets: &[Vec<Matcher>],
        start: i64,
        end: i64,
    ) -> Result<Vec<Labels>> {
        let mut stats = QueryStats::default();
        let sel = trace::stage(
            Stage::Plan,
            self.select(tenant, matcher_sets, start, end, &mut stats),
        )
        .await?;
        let set: BTreeSet<Labels> = sel.streams().into_iter().map(|s| s.labels()).collect();
        Ok(set.into_iter().collect())
    }

    /// Sorted distinct label names of matching streams.
    pub async fn label_names(
        &self,
        tenant: &str,
        matchers: Option<&[Matcher]>,
        start: i64,
        end: i64,
    ) -> Result<Vec<String>> {
        let sel = self.select_optional(tenant, matchers, start, end).await?;
        let names: BTreeSet<String> = sel
            .streams()
            .into_iter()
            .flat_map(|s| s.labels.keys().cloned())
            .collect();
        Ok(names.into_iter().collect())
    }

    /// Sorted distinct values of `name` among matching streams.
    pub async fn label_values(
        &self,
        tenant: &str,
        name: &str,
        matchers: Option<&[Matcher]>,
        start: i64,
        end: i64,
    ) -> Result<Vec<String>> {
        let sel = self.select_optional(tenant, matchers, start, end).await?;
        let values: BTreeSet<String> = sel
            .streams()
            .into_iter()
            .filter_map(|s| s.labels.get(name).cloned())
            .collect();
        Ok(values.into_iter().collect())
    }

    /// Selection for the endpoints whose `query` selector is optional (all streams without).
    async fn select_optional(
        &self,
        tenant: &str,
        matchers: Option<&[Matcher]>,
        start: i64,
        end: i64,
    ) -> Result<Selection> {
        let sets = matchers.map(|m| vec![m.to_vec()]).unwrap_or_default();
        trace::stage(
            Stage::Plan,
            self.select(tenant, &sets, start, end, &mut QueryStats::default()),
        )
        .await
    }

    /// Streams, objects, bytes and entries matching `matchers` in `[start, end)`.
    pub async fn index_stats(
        &self,
        tenant: &str,
        matchers: &[Matcher],
        start: i64,
        end: i64,
    ) -> Result<IndexStats> {
        let mut stats = QueryStats::default();
        let sel = trace::stage(
            Stage::Plan,
            self.select(tenant, &[matchers.to_vec()], start, end, &mut stats),
        )
        .await?;
        let mut out = IndexStats {
            chunks: sel.objects.len() as u64,
            ..Default::default()
        };
        // Catalog figures are per whole object, so repeats are counted over whole objects.
        let repeats = self.repeats(&sel, i64::MIN, i64::MAX).await?;
        let mut streams: BTreeMap<u64, ()> = BTreeMap::new();
        for (i, o) in sel.objects.iter().enumerate() {
            for s in &o.streams {
                let r = repeats
                    .get(&(i, s.fingerprint))
                    .copied()
                    .unwrap_or_default();
                streams.insert(s.fingerprint, ());
                out.bytes += s.bytes.saturating_sub(r.bytes);
                out.entries += s.entries.saturating_sub(r.entries);
            }
        }
        out.streams = streams.len() as u64;
        Ok(out)
    }
}

/// `(bucket end ns, bytes)` points of one volume series.
pub type VolumePoints = Vec<(i64, u64)>;

/// `index/volume` and `index/volume_range` parameters, validated.
#[derive(Debug, Clone)]
pub struct VolumeQuery {
    /// The tenant.
    pub tenant: String,
    /// The selector's matchers.
    pub matchers: Vec<Matcher>,
    /// Range start (inclusive, ns).
    pub start: i64,
    /// Range end (exclusive, ns).
    pub end: i64,
    /// Bucket width for `volume_range`; `None` gives one bucket ending at `end`.
    pub step: Option<i64>,
    /// Labels to group by; empty means the labels the selector names.
    pub target_labels: Vec<String>,
    /// `aggregateBy=labels`: one series per label *name* (`{"<name>": ""}`).
    pub by_label_names: bool,
    /// Most series returned.
    pub limit: usize,
}

impl QueryEngine {
    /// Bytes of log lines per label combination (or per label name) and time bucket, from the
    /// stream catalogs: each stream's bytes in an object count in the bucket holding its
    /// newest entry, as chunk-level volumes do in Loki. Series sorted by total volume
    /// (descending) then labels, at most `limit`; bucket timestamps are bucket ends.
    pub async fn volume(&self, q: &VolumeQuery) -> Result<Vec<(Labels, VolumePoints)>> {
        let mut stats = QueryStats::default();
        let sel = self
            .select(
                &q.tenant,
                std::slice::from_ref(&q.matchers),
                q.start,
                q.end,
                &mut stats,
            )
            .await?;
        let targets: Vec<String> = if q.target_labels.is_empty() {
            let mut names: Vec<String> = q.matchers.iter().map(|m| m.name.clone()).collect();
            names.sort();
            names.dedup();
            names
        } else {
            q.target_labels.clone()
        };
        let bucket_end = |ts: i64| -> i64 {
            match q.step {
                Some(step) if step > 0 => {
                    // Buckets (start + (k-1)·step, start + k·step], the last one clamped to end.
                    let k = (ts - q.start).max(0) / step + 1;
                    (q.start + k * step).min(q.end)
                }
                _ => q.end,
            }
        };
        let repeats = self.repeats(&sel, i64::MIN, i64::MAX).await?;
        let mut acc: BTreeMap<Labels, BTreeMap<i64, u64>> = BTreeMap::new();
        for (i, o) in sel.objects.iter().enumerate() {
            for s in &o.streams {
                let bytes = s.bytes.saturating_sub(
                    repeats
                        .get(&(i, s.fingerprint))
                        .map_or(0, |r: &crate::dedup::Repeats| r.bytes),
                );
                let t = bucket_end(s.max_ts.clamp(q.start, q.end));
                let keys: Vec<Labels> = if q.by_label_names {
                    s.labels
                        .keys()
                        .filter(|k| targets.is_empty() || targets.contains(k))
                        .map(|k| Labels::from_pairs([(k.as_str(), "")]))
                        .collect()
                } else {
                    vec![Labels::from_pairs(targets.iter().filter_map(|t| {
                        s.labels.get(t).map(|v| (t.as_str(), v.as_str()))
                    }))]
                };
                for k in keys {
                    *acc.entry(k).or_default().entry(t).or_default() += bytes;
                }
            }
        }
        let mut out: Vec<(Labels, VolumePoints, u64)> = acc
            .into_iter()
            .map(|(l, points)| {
                let total = points.values().sum();
                (l, points.into_iter().collect(), total)
            })
            .collect();
        out.sort_by(|a, b| b.2.cmp(&a.2).then_with(|| a.0.cmp(&b.0)));
        out.truncate(q.limit);
        Ok(out.into_iter().map(|(l, p, _)| (l, p)).collect())
    }
}
