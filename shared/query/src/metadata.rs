//! `labels`, `label/<name>/values`, `series` and `index/stats`: answered from stream catalogs
//! alone, never from line bytes.

use std::collections::{BTreeMap, BTreeSet};

use parquetry_model::{Labels, Matcher};

use crate::stats::QueryStats;
use crate::{QueryEngine, Result};

/// `index/stats` figures.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IndexStats {
    pub streams: u64,
    /// Objects holding a matching stream (Loki counts chunks).
    pub chunks: u64,
    pub bytes: u64,
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
        let sel = self
            .select(tenant, matcher_sets, start, end, &mut stats)
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
        let sets = matchers.map(|m| vec![m.to_vec()]).unwrap_or_default();
        let mut stats = QueryStats::default();
        let sel = self.select(tenant, &sets, start, end, &mut stats).await?;
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
        let sets = matchers.map(|m| vec![m.to_vec()]).unwrap_or_default();
        let mut stats = QueryStats::default();
        let sel = self.select(tenant, &sets, start, end, &mut stats).await?;
        let values: BTreeSet<String> = sel
            .streams()
            .into_iter()
            .filter_map(|s| s.labels.get(name).cloned())
            .collect();
        Ok(values.into_iter().collect())
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
        let sel = self
            .select(tenant, &[matchers.to_vec()], start, end, &mut stats)
            .await?;
        let mut out = IndexStats {
            chunks: sel.objects.len() as u64,
            ..Default::default()
        };
        let mut streams: BTreeMap<u64, ()> = BTreeMap::new();
        for o in &sel.objects {
            for s in &o.streams {
                streams.insert(s.fingerprint, ());
                out.bytes += s.bytes;
                out.entries += s.entries;
            }
        }
        out.streams = streams.len() as u64;
        Ok(out)
    }
}
