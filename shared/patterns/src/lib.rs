//! Log pattern mining for `/loki/api/v1/patterns`: the Drain algorithm with the tokenizers,
//! parameters, per-stream/per-level grouping, 10-second counts, step bucketing and pruning of
//! Loki's pattern ingester. Pure computation: the caller feeds lines, this crate does no I/O.
//!
//! [`Miner`] keeps one [`drain::Drain`] per stream and `detected_level` (a stream's format is
//! guessed from its first line), and [`Miner::series`] merges equal (pattern, level) pairs
//! across streams into step-aligned count series; [`prune`] then drops rare patterns and caps
//! the answer as Loki's querier does.
// Non-test code never panics on a `Result` or `Option`: errors are typed and returned.
#![cfg_attr(not(test), warn(clippy::unwrap_used, clippy::expect_used))]

pub mod drain;
pub mod tokenize;

use std::collections::HashMap;

use drain::{Drain, SAMPLE_INTERVAL_MS};
use tokenize::Format;

/// Loki's `DefaultConfig()` for the pattern ingester.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Config {
    /// Prefix tree depth; the tree descends `depth − 2` token levels below the length layer.
    pub log_cluster_depth: usize,
    /// A line joins the most similar cluster when at least this share of positions match.
    pub sim_th: f64,
    /// Children per tree node before new tokens go to the `<_>` child.
    pub max_children: usize,
    /// LRU cap on clusters per Drain (0: none).
    pub max_clusters: usize,
    /// Training pauses when evictions exceed this share of trained lines.
    pub max_eviction_ratio: f64,
    /// Longer lines (bytes) are skipped.
    pub max_line_length: usize,
    /// Lines with fewer tokens are skipped.
    pub min_tokens: usize,
    /// Lines with more tokens are skipped.
    pub max_tokens: usize,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            log_cluster_depth: 30,
            sim_th: 0.3,
            max_children: 15,
            max_clusters: 300,
            max_eviction_ratio: 0.25,
            max_line_length: 3000,
            min_tokens: 4,
            max_tokens: 80,
        }
    }
}

impl Config {
    fn max_node_depth(&self) -> usize {
        self.log_cluster_depth.saturating_sub(2)
    }
}

/// Series with fewer lines than this in the queried range are dropped.
pub const MIN_CLUSTER_SIZE: u64 = 30;
/// At most this many series are returned, the largest first.
pub const MAX_PATTERNS: usize = 300;
/// The smallest step: counts are only kept at this resolution.
pub const MIN_STEP_MS: i64 = SAMPLE_INTERVAL_MS;

/// The levels Loki keeps a Drain for; anything else counts as `unknown`.
const LEVELS: [&str; 8] = [
    "unknown", "debug", "info", "warn", "error", "fatal", "critical", "trace",
];

/// A `detected_level` value as the pattern ingester files it: lowercased, known or `unknown`.
pub fn normalize_level(level: Option<&str>) -> &'static str {
    let Some(l) = level else {
        return "unknown";
    };
    LEVELS
        .iter()
        .find(|k| k.eq_ignore_ascii_case(l))
        .copied()
        .unwrap_or("unknown")
}

/// One answer series: a pattern at one level, counts per step (`(ms, lines)`, ascending).
#[derive(Debug, Clone, PartialEq)]
pub struct PatternSeries {
    /// The pattern, `<_>` for the variable parts.
    pub pattern: String,
    /// The `detected_level` of its lines.
    pub level: String,
    /// `(ms, lines)` per step, ascending.
    pub samples: Vec<(i64, u64)>,
}

impl PatternSeries {
    /// Lines over all steps.
    pub fn total(&self) -> u64 {
        self.samples.iter().map(|(_, v)| v).sum()
    }
}

#[derive(Debug)]
struct StreamDrains {
    format: Format,
    by_level: HashMap<&'static str, Drain>,
}

/// Lines in, pattern series out. Feed each stream's lines in time order.
#[derive(Debug, Default)]
pub struct Miner {
    config: Config,
    streams: HashMap<u64, StreamDrains>,
    trained: u64,
    skipped: u64,
}

impl Miner {
    /// A miner with no lines yet.
    pub fn new(config: Config) -> Miner {
        Miner {
            config,
            ..Miner::default()
        }
    }

    /// Lines that joined or made a cluster.
    pub fn trained(&self) -> u64 {
        self.trained
    }

    /// Lines skipped (untokenizable, too few or many tokens, throttled).
    pub fn skipped(&self) -> u64 {
        self.skipped
    }

    /// Trains `line` of `stream` (any stable stream id) at `ts` (ns).
    pub fn train(&mut self, stream: u64, level: Option<&str>, line: &str, ts: i64) {
        let config = self.config;
        let s = self.streams.entry(stream).or_insert_with(|| StreamDrains {
            format: Format::detect(line),
            by_level: HashMap::new(),
        });
        let format = s.format;
        let d = s
            .by_level
            .entry(normalize_level(level))
            .or_insert_with(|| Drain::new(config, format));
        match d.train(line, ts) {
            Ok(()) => self.trained += 1,
            Err(_) => self.skipped += 1,
        }
    }

    /// Every (pattern, level) with counts in `[start, end)` (ns), summed across streams and
    /// re-bucketed to `step` (ns, at least 10 s): each 10-second count lands in the step
    /// bucket its start truncates to. Unpruned and unordered.
    pub fn series(&self, start: i64, end: i64, step: i64) -> Vec<PatternSeries> {
        let (start_ms, end_ms) = (start.div_euclid(1_000_000), end.div_euclid(1_000_000));
        let step_ms = (step / 1_000_000).max(MIN_STEP_MS);
        let mut merged: HashMap<(String, &'static str), std::collections::BTreeMap<i64, u64>> =
            HashMap::new();
        for s in self.streams.values() {
            for (level, d) in &s.by_level {
                for (pattern, c) in d.patterns() {
                    let mut in_range = c.samples.range(start_ms..end_ms).peekable();
                    if in_range.peek().is_none() {
                        continue;
                    }
                    let out = merged.entry((pattern, level)).or_default();
                    for (ts, n) in in_range {
                        *out.entry(ts - ts.rem_euclid(step_ms)).or_default() += n;
                    }
                }
            }
        }
        merged
            .into_iter()
            .map(|((pattern, level), samples)| PatternSeries {
                pattern,
                level: level.to_string(),
                samples: samples.into_iter().collect(),
            })
            .collect()
    }
}

/// Loki's querier pruning: drop series whose total is below `min_total`, order the rest by
/// total (largest first; ties by pattern then level, for stable answers), keep `max`.
pub fn prune(mut series: Vec<PatternSeries>, min_total: u64, max: usize) -> Vec<PatternSeries> {
    series.retain(|s| s.total() >= min_total);
    series.sort_by(|a, b| {
        b.total()
            .cmp(&a.total())
            .then_with(|| a.pattern.cmp(&b.pattern))
            .then_with(|| a.level.cmp(&b.level))
    });
    series.truncate(max);
    series
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: i64 = 1_000_000_000;

    #[test]
    fn per_level_series_merge_across_streams_and_bucket_by_step() {
        let mut m = Miner::new(Config::default());
        for i in 0..60i64 {
            let stream = (i % 3) as u64;
            m.train(
                stream,
                Some("INFO"),
                &format!("GET /items/{i} status=200 took {i}ms"),
                i * S,
            );
        }
        for i in 0..5i64 {
            m.train(
                9,
                Some("error"),
                &format!("db timeout after {i}s retrying"),
                i * S,
            );
        }
        m.train(9, Some("verbose"), "something odd happened here", 0);
        let mut got = m.series(0, 60 * S, 30 * S);
        got.sort_by(|a, b| a.pattern.cmp(&b.pattern));
        assert_eq!(
            got,
            [
                PatternSeries {
                    pattern: "GET <_> status=200 took <_>".into(),
                    level: "info".into(),
                    samples: vec![(0, 30), (30_000, 30)],
                },
                PatternSeries {
                    pattern: "db timeout after <_> retrying".into(),
                    level: "error".into(),
                    samples: vec![(0, 5)],
                },
                PatternSeries {
                    pattern: "something odd happened here".into(),
                    level: "unknown".into(),
                    samples: vec![(0, 1)],
                },
            ]
        );
        // The range cuts at sample buckets: [20 s, 40 s) holds the 20 s and 30 s buckets.
        let got = m.series(20 * S, 40 * S, 10 * S);
        let info = got.iter().find(|s| s.level == "info").unwrap();
        assert_eq!(info.samples, [(20_000, 10), (30_000, 10)]);
        // Steps under 10 s count at 10 s.
        let got = m.series(0, 20 * S, S);
        let info = got.iter().find(|s| s.level == "info").unwrap();
        assert_eq!(info.samples, [(0, 10), (10_000, 10)]);
    }

    #[test]
    fn pruning_drops_rare_and_caps() {
        let s = |p: &str, n: u64| PatternSeries {
            pattern: p.into(),
            level: "info".into(),
            samples: vec![(0, n)],
        };
        let out = prune(vec![s("a", 29), s("b", 30), s("c", 100), s("d", 50)], 30, 2);
        let names: Vec<_> = out.iter().map(|s| s.pattern.as_str()).collect();
        assert_eq!(names, ["c", "d"]);
    }

    #[test]
    fn levels_normalize() {
        assert_eq!(normalize_level(Some("WARN")), "warn");
        assert_eq!(normalize_level(Some("warning")), "unknown");
        assert_eq!(normalize_level(None), "unknown");
    }
}
