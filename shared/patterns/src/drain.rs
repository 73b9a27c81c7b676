//! One Drain: a fixed-depth prefix tree over token sequences whose leaves hold clusters
//! (templates with `<_>` where lines differed), with an LRU cap on clusters. Counts are kept
//! per 10-second sample bucket, as Loki's pattern ingester keeps them.

use std::collections::{BTreeMap, HashMap};

use crate::Config;
use crate::tokenize::{Format, PARAM, Tokens, join, tokenize};

/// Count resolution: samples are bucketed by this many milliseconds.
pub const SAMPLE_INTERVAL_MS: i64 = 10_000;

/// A template and its counts.
#[derive(Debug, Clone)]
pub struct Cluster {
    /// The pattern's tokens, `<_>` where lines differ.
    pub template: Tokens,
    /// Sample bucket start (ms, a multiple of [`SAMPLE_INTERVAL_MS`]) → lines.
    pub samples: BTreeMap<i64, u64>,
    last_used: u64,
}

#[derive(Debug, Default)]
struct Node {
    children: Vec<(String, usize)>,
    clusters: Vec<usize>,
}

impl Node {
    fn child(&self, key: &str) -> Option<usize> {
        self.children
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, n)| *n)
    }
}

/// Throttles training of a Drain whose clusters churn (evictions above the configured share
/// of lines), for ten minutes of log time.
#[derive(Debug, Default)]
struct Limiter {
    added: u64,
    evicted: u64,
    blocked_until: Option<i64>,
}

const BLOCK_NS: i64 = 600_000_000_000;

impl Limiter {
    fn allow(&mut self, ts: i64, max_ratio: f64) -> bool {
        if let Some(until) = self.blocked_until {
            if ts < until {
                return false;
            }
            *self = Limiter::default();
        }
        if self.added > 0 && self.evicted as f64 / self.added as f64 > max_ratio {
            self.blocked_until = Some(ts.saturating_add(BLOCK_NS));
            return false;
        }
        self.added += 1;
        true
    }
}

/// Why a line did not train: the same reasons Loki counts as skipped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Skip {
    /// Too long, no tokenizable JSON field, or malformed logfmt.
    Untokenizable,
    /// Fewer tokens than `min_tokens`.
    TooFewTokens,
    /// More tokens than `max_tokens`.
    TooManyTokens,
    /// Training paused because too many clusters were being evicted.
    Throttled,
}

/// One Drain tree: the clusters mined from lines of one format.
#[derive(Debug)]
pub struct Drain {
    config: Config,
    format: Format,
    nodes: Vec<Node>,
    clusters: HashMap<usize, Cluster>,
    next_id: usize,
    tick: u64,
    limiter: Limiter,
    evicted: u64,
}

impl Drain {
    /// An empty tree for lines of `format`.
    pub fn new(config: Config, format: Format) -> Drain {
        Drain {
            config,
            format,
            nodes: vec![Node::default()],
            clusters: HashMap::new(),
            next_id: 0,
            tick: 0,
            limiter: Limiter::default(),
            evicted: 0,
        }
    }

    /// The format of the lines this tree tokenizes.
    pub fn format(&self) -> Format {
        self.format
    }

    /// Clusters evicted by the LRU cap so far (their counts are gone, as in Loki).
    pub fn evicted(&self) -> u64 {
        self.evicted
    }

    /// Every live cluster with its pattern string.
    pub fn patterns(&self) -> impl Iterator<Item = (String, &Cluster)> {
        self.clusters
            .values()
            .map(|c| (join(self.format, &c.template), c))
    }

    /// Adds one line at `ts` (ns) to the best cluster, or makes a new one.
    pub fn train(&mut self, line: &str, ts: i64) -> Result<(), Skip> {
        if !self.limiter.allow(ts, self.config.max_eviction_ratio) {
            return Err(Skip::Throttled);
        }
        let tokens =
            tokenize(self.format, line, self.config.max_line_length).ok_or(Skip::Untokenizable)?;
        let n = tokens.tokens.len();
        if n < self.config.min_tokens {
            return Err(Skip::TooFewTokens);
        }
        if n > self.config.max_tokens {
            return Err(Skip::TooManyTokens);
        }
        self.tick += 1;
        let bucket = ts.div_euclid(1_000_000) / SAMPLE_INTERVAL_MS * SAMPLE_INTERVAL_MS;
        let tick = self.tick;
        match self.tree_search(&tokens.tokens) {
            Some(id) => {
                if let Some(c) = self.clusters.get_mut(&id) {
                    for (t, new) in c.template.tokens.iter_mut().zip(&tokens.tokens) {
                        if t != new {
                            *t = PARAM.to_string();
                        }
                    }
                    *c.samples.entry(bucket).or_default() += 1;
                    c.last_used = tick;
                }
            }
            None => {
                self.next_id += 1;
                let id = self.next_id;
                let mut samples = BTreeMap::new();
                samples.insert(bucket, 1);
                self.clusters.insert(
                    id,
                    Cluster {
                        template: tokens,
                        samples,
                        last_used: tick,
                    },
                );
                self.evict_over_cap();
                self.add_to_tree(id);
            }
        }
        Ok(())
    }

    fn evict_over_cap(&mut self) {
        while self.config.max_clusters > 0 && self.clusters.len() > self.config.max_clusters {
            // The cap is a few hundred: a scan for the least recently used is cheap next to
            // the bookkeeping an ordered LRU would need on every match.
            let Some(oldest) = self
                .clusters
                .iter()
                .min_by_key(|(_, c)| c.last_used)
                .map(|(id, _)| *id)
            else {
                return;
            };
            self.clusters.remove(&oldest);
            self.evicted += 1;
            self.limiter.evicted += 1;
        }
    }

    /// Descend one level per leading token (exact child, else the `<_>` child), then pick the
    /// most similar cluster of the leaf.
    fn tree_search(&mut self, tokens: &[String]) -> Option<usize> {
        let count = tokens.len();
        let mut node = self.nodes[0].child(&count.to_string())?;
        let max_depth = self.config.max_node_depth();
        for (depth, tok) in (1..).zip(tokens) {
            if depth >= max_depth || depth == count {
                break;
            }
            let n = &self.nodes[node];
            node = n.child(tok).or_else(|| n.child(PARAM))?;
        }
        self.fast_match(node, tokens)
    }

    fn fast_match(&mut self, node: usize, tokens: &[String]) -> Option<usize> {
        let mut best: Option<usize> = None;
        let mut max_sim = -1.0f64;
        let mut max_params: i64 = -1;
        for &id in &self.nodes[node].clusters {
            let Some(c) = self.clusters.get_mut(&id) else {
                continue;
            };
            // Loki's LRU lookup refreshes every candidate it looks at.
            c.last_used = self.tick;
            let (mut same, mut params) = (0usize, 0i64);
            for (a, b) in c.template.tokens.iter().zip(tokens) {
                if a == PARAM {
                    params += 1;
                } else if a == b {
                    same += 1;
                }
            }
            let sim = same as f64 / c.template.tokens.len() as f64;
            if sim > max_sim || (sim == max_sim && params > max_params) {
                max_sim = sim;
                max_params = params;
                best = Some(id);
            }
        }
        best.filter(|_| max_sim >= self.config.sim_th)
    }

    fn new_node(&mut self) -> usize {
        self.nodes.push(Node::default());
        self.nodes.len() - 1
    }

    fn set_child(&mut self, parent: usize, key: &str) -> usize {
        let n = self.new_node();
        self.nodes[parent].children.push((key.to_string(), n));
        n
    }

    fn add_to_tree(&mut self, id: usize) {
        let Some(tokens) = self.clusters.get(&id).map(|c| c.template.tokens.clone()) else {
            return;
        };
        let count = tokens.len();
        let key = count.to_string();
        let mut node = match self.nodes[0].child(&key) {
            Some(n) => n,
            None => self.set_child(0, &key),
        };
        if count == 0 {
            self.nodes[node].clusters.push(id);
            return;
        }
        let max_depth = self.config.max_node_depth();
        let max_children = self.config.max_children;
        for (depth, tok) in (1..).zip(&tokens) {
            if depth >= max_depth || depth >= count {
                let live = &self.clusters;
                let leaf = &mut self.nodes[node];
                leaf.clusters.retain(|c| live.contains_key(c));
                leaf.clusters.push(id);
                break;
            }
            node = match self.nodes[node].child(tok) {
                Some(n) => n,
                None => {
                    let param = self.nodes[node].child(PARAM);
                    let children = self.nodes[node].children.len();
                    if tok.chars().any(char::is_numeric) {
                        // Variable-looking tokens share the wildcard branch.
                        match param {
                            Some(p) => p,
                            None => self.set_child(node, PARAM),
                        }
                    } else if let Some(p) = param {
                        if children < max_children {
                            self.set_child(node, tok)
                        } else {
                            p
                        }
                    } else if children + 1 < max_children {
                        self.set_child(node, tok)
                    } else if children + 1 == max_children {
                        self.set_child(node, PARAM)
                    } else {
                        // Unreachable with a wildcard-less full node in Loki too: it would
                        // follow a nil node. Keep the line in this node instead.
                        let leaf = &mut self.nodes[node];
                        leaf.clusters.push(id);
                        return;
                    }
                }
            };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn drain() -> Drain {
        Drain::new(Config::default(), Format::Unknown)
    }

    fn patterns(d: &Drain) -> Vec<(String, u64)> {
        let mut v: Vec<_> = d
            .patterns()
            .map(|(p, c)| (p, c.samples.values().sum()))
            .collect();
        v.sort();
        v
    }

    #[test]
    fn similar_lines_share_a_template() {
        let mut d = drain();
        for i in 0..10 {
            d.train(
                &format!("user {i} logged in from host-{i}"),
                i * 1_000_000_000,
            )
            .unwrap();
        }
        d.train("disk full on volume sda", 0).unwrap();
        assert_eq!(
            patterns(&d),
            [
                ("disk full on volume sda".to_string(), 1),
                ("user <_> logged in from <_>".to_string(), 10),
            ]
        );
    }

    #[test]
    fn counts_land_in_ten_second_buckets() {
        let mut d = drain();
        for s in [0i64, 5, 9, 10, 25] {
            d.train("a b c d", s * 1_000_000_000).unwrap();
        }
        let (_, c) = d.patterns().next().unwrap();
        let got: Vec<_> = c.samples.iter().map(|(k, v)| (*k, *v)).collect();
        assert_eq!(got, [(0, 3), (10_000, 1), (20_000, 1)]);
    }

    #[test]
    fn token_limits_skip_lines() {
        let mut d = drain();
        assert_eq!(d.train("a b c", 0), Err(Skip::TooFewTokens));
        let long = vec!["x"; 81].join(" ");
        assert_eq!(d.train(&long, 0), Err(Skip::TooManyTokens));
        assert_eq!(d.train(&vec!["x"; 80].join(" "), 0), Ok(()));
    }

    #[test]
    fn below_similarity_threshold_makes_a_new_cluster() {
        let mut d = drain();
        // Tokens with digits share the `<_>` branch, so these meet in one leaf, where 1 of 5
        // equal positions (0.2 < 0.3) keeps them apart.
        d.train("alpha 1 2 3 x", 0).unwrap();
        d.train("alpha 4 5 6 y", 0).unwrap();
        assert_eq!(patterns(&d).len(), 2);
        // 3 of 5 equal (0.6): joins the first.
        d.train("alpha 1 2 7 z", 0).unwrap();
        let p = patterns(&d);
        assert!(p.contains(&("alpha 1 2 <_> <_>".to_string(), 2)), "{p:?}");
        // Distinct leading words take distinct branches and never merge.
        d.train("beta gamma delta epsilon zeta", 0).unwrap();
        d.train("beta gamma delta epsilon eta", 0).unwrap();
        assert!(
            patterns(&d).contains(&("beta gamma delta epsilon <_>".to_string(), 2)),
            "{p:?}"
        );
    }

    #[test]
    fn lru_cap_evicts_oldest() {
        let mut d = Drain::new(
            Config {
                max_clusters: 2,
                max_eviction_ratio: 1.0,
                ..Config::default()
            },
            Format::Unknown,
        );
        d.train("a a a a", 0).unwrap();
        d.train("b b b b", 0).unwrap();
        d.train("c c c c", 0).unwrap();
        assert_eq!(d.evicted(), 1);
        let p: Vec<String> = patterns(&d).into_iter().map(|(p, _)| p).collect();
        assert_eq!(p, ["b b b b", "c c c c"]);
    }

    #[test]
    fn churn_throttles_training() {
        let mut d = Drain::new(
            Config {
                max_clusters: 1,
                ..Config::default()
            },
            Format::Unknown,
        );
        d.train("a a a a", 0).unwrap();
        // Evicts the first cluster: one eviction per two lines is above 0.25.
        d.train("b b b b", 1).unwrap();
        assert_eq!(d.train("c c c c", 2), Err(Skip::Throttled));
        assert_eq!(d.train("c c c c", 3), Err(Skip::Throttled));
        assert_eq!(d.train("c c c c", 2 + BLOCK_NS), Ok(()));
    }
}
