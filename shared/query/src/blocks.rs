//! Time blocks: a metric range query whose samples grow with the lines it reads is evaluated
//! block of steps by block of steps, so that what it holds follows one block, not the range.
//!
//! Two shapes hold something per line until evaluation: a range function over every value
//! (`avg_over_time`, `quantile_over_time`, … of an `unwrap`) keeps one sample per line, and an
//! aggregation right above a range function whose series may be one per line (a parser or
//! structured metadata with an id per line) keeps one collapsed series per line. Both are
//! bounded by cutting the query's steps into consecutive blocks, each run as a query of its
//! own (scan, then evaluation) with its answer appended to the whole's.
//!
//! The answer is the whole query's to the last bit: a step's value depends only on the samples
//! of its windows, which its block reads in full (a block's scan reaches back by the range
//! like the whole query's does), and evaluation orders a step's series by their labels, an
//! order a subset keeps. The price is reading each block's lookback twice; blocks span at
//! least `time_block_min_lookbacks` (4) lookbacks so that stays under a quarter of the rows.

use std::collections::BTreeMap;

use parquetry_eval::{EvalError, Series, StepCells, Value};
use parquetry_logql::SampleExpr;
use parquetry_model::Labels;
use parquetry_store::StreamInfo;

use crate::logs::account_selection;
use crate::metric::{IDENTITY_PROBE, MetricQuery, collapse_hints, direct_hints, pregroup_hints};
use crate::select::Selection;
use crate::stats::QueryStats;
use crate::{QueryEngine, QueryError, Result};

/// What a collapsed series costs until evaluation: 48 bytes with its first sample, held twice
/// for a moment while the partitions' series are appended into one, and an identity map
/// entry while the scan still probes whether series repeat. On the ingest bench's
/// one-series-per-line query, peak RSS grew by 52–76 bytes a line over the scan's own
/// buffers (1, 2 and 4 blocks over 2.09 M lines): this rounds that up.
const SERIES_BYTES: u64 = 100;
/// What one sample of a range function over every value costs: `(ts, value)`.
const SAMPLE_BYTES: u64 = 16;

/// For each range aggregation of `expr`, the bytes it may hold per line read until evaluation:
/// a series when its series may be one per line, a sample when it keeps every value, nothing
/// when its samples fold into step cells of a bounded set of series.
pub(crate) fn bytes_per_line(expr: &SampleExpr) -> Vec<u64> {
    let collapse = collapse_hints(expr);
    let pregroup = pregroup_hints(expr);
    expr.range_aggregations()
        .iter()
        .zip(collapse.iter().zip(&pregroup))
        .map(|(ra, (collapse, pregroup))| {
            // Projected onto the groups in the scan (`pregroup`), the series are the groups.
            if collapse.is_some() && pregroup.is_none() {
                SERIES_BYTES
            } else if !StepCells::fold(ra.op, ra.range.unwrap.is_some()) {
                SAMPLE_BYTES
            } else {
                0
            }
        })
        .collect()
}

/// Rows of `s` estimated to lie in `[start, end)`, assuming its entries spread evenly between
/// its oldest and newest.
fn rows_within(s: &StreamInfo, start: i64, end: i64) -> f64 {
    if s.max_ts < start || s.min_ts >= end {
        return 0.0;
    }
    let span = s.max_ts.saturating_sub(s.min_ts);
    if span <= 0 {
        return s.entries as f64;
    }
    let covered = s
        .max_ts
        .min(end - 1)
        .saturating_sub(s.min_ts.max(start))
        .max(0);
    s.entries as f64 * (covered as f64 + 1.0) / (span as f64 + 1.0)
}

/// What a scan that folds series of one line into the aggregation above ([`DirectPlan`]
/// (crate::metric)) holds: each partition's first [`IDENTITY_PROBE`] series, and the series
/// of the rows within a range of a stream's run ends (about four ranges of each stream's
/// span in an object: its two ends, and a cut between partitions), weighed no lighter than
/// a sample, which every row of a series that repeats keeps.
fn folding_bytes<'a>(
    streams: impl Iterator<Item = &'a StreamInfo>,
    range: i64,
    start: i64,
    end: i64,
    partitions: usize,
) -> f64 {
    let probe = (partitions as u64 * u64::from(IDENTITY_PROBE) * SERIES_BYTES) as f64;
    let rows: f64 = streams
        .map(|s| {
            let span = s.max_ts.saturating_sub(s.min_ts).max(1) as f64;
            let kept = (4.0 * range as f64 / span).min(1.0);
            let weight = (SERIES_BYTES as f64 * kept).max(SAMPLE_BYTES as f64);
            rows_within(s, start, end) * weight
        })
        .sum();
    probe + rows
}

/// `a / b` rounded up, for `a >= 0` (`i64::div_ceil` is not stable); `b` below 1 counts as 1.
fn ceil_div(a: i64, b: i64) -> i64 {
    let b = b.max(1);
    a / b + i64::from(a % b > 0)
}

/// `(first, last)` evaluation times of each block: `steps` steps from `start`, `step` apart,
/// cut into `n` blocks of equal step counts, none shorter than `min_steps`. One block when
/// that leaves fewer than two.
pub(crate) fn cut(start: i64, step: i64, steps: i64, n: i64, min_steps: i64) -> Vec<(i64, i64)> {
    let per_block = ceil_div(steps, n).max(min_steps).max(1);
    let t = |k: i64| start.saturating_add(k.saturating_mul(step));
    if per_block >= steps {
        return vec![(start, t(steps - 1))];
    }
    (0..steps)
        .step_by(per_block as usize)
        .map(|k0| (t(k0), t((k0 + per_block).min(steps) - 1)))
        .collect()
}

/// How a metric query is cut in time.
pub(crate) struct Blocks {
    /// `(first, last)` evaluation times of each block; one block when the query runs whole.
    pub(crate) spans: Vec<(i64, i64)>,
    /// The whole query's catalog figures (streams, lines and bytes in range), which the
    /// blocks' own would count once per block for objects that several blocks overlap.
    pub(crate) whole: QueryStats,
    /// With several blocks, what each range aggregation selects over the whole query
    /// ([`QueryEngine::select_windows`]): each block takes its part of it
    /// ([`crate::select::Selection::within`]) instead of listing and reading the catalogs
    /// again, and every block sees the same objects.
    pub(crate) selections: Vec<Selection>,
}

impl QueryEngine {
    /// The blocks `q` is evaluated in.
    pub(crate) async fn time_blocks(&self, q: &MetricQuery) -> Result<Blocks> {
        let mut scratch = QueryStats::default();
        let whole = |whole: QueryStats| Blocks {
            spans: vec![(q.start, q.end)],
            whole,
            selections: Vec::new(),
        };
        // A leaf runs the streams its root gave it over the root's block.
        if q.instant || q.step <= 0 || self.time_block_memory == 0 || self.only_streams.is_some() {
            return Ok(whole(scratch));
        }
        let steps = (q.end - q.start) / q.step + 1;
        if steps < 2 {
            return Ok(whole(scratch));
        }
        let weights = bytes_per_line(&q.expr);
        if weights.iter().all(|w| *w == 0) {
            return Ok(whole(scratch));
        }
        let mut held = 0.0;
        let mut lookback = 0i64;
        // Every range aggregation is accounted, weighted or not: these figures replace the
        // blocks' own for the whole query.
        let windows = self.select_windows(q, &mut scratch).await?;
        let ranges = q.expr.range_aggregations();
        let direct = direct_hints(&q.expr);
        for (((ra, weight), direct), ((start, end), selection)) in
            ranges.iter().zip(weights).zip(direct).zip(&windows)
        {
            let (start, end) = (*start, *end);
            account_selection(selection, start, end, &mut scratch);
            if weight == 0 {
                continue;
            }
            lookback = lookback.max(ra.range.range);
            let streams = selection.objects.iter().flat_map(|o| &o.streams);
            if direct.is_some() && weight == SERIES_BYTES {
                held += folding_bytes(streams, ra.range.range, start, end, self.parallelism());
                continue;
            }
            let rows: f64 = streams.map(|s| rows_within(s, start, end)).sum();
            held += rows * weight as f64;
        }
        let n = (held / self.time_block_memory as f64).ceil() as i64;
        if n < 2 {
            return Ok(whole(scratch));
        }
        let min_steps = ceil_div(
            lookback.saturating_mul(i64::from(self.time_block_min_lookbacks)),
            q.step,
        );
        Ok(Blocks {
            spans: cut(q.start, q.step, steps, n, min_steps),
            whole: scratch,
            selections: windows.into_iter().map(|(_, s)| s).collect(),
        })
    }
}

/// A range query's answer put together from its blocks' answers, in time order.
#[derive(Default)]
pub(crate) struct Joined {
    series: BTreeMap<Labels, Vec<(i64, f64)>>,
}

impl Joined {
    /// Appends the next block's answer; fails when the series so far pass `max_series`, as
    /// the whole query would have (0: no limit).
    pub(crate) fn append(&mut self, block: Value, max_series: usize) -> Result<()> {
        let Value::Matrix(part) = block else {
            return Err(QueryError::Internal(
                "a time block of a range query answered with something other than a matrix".into(),
            ));
        };
        for s in part {
            self.series.entry(s.labels).or_default().extend(s.points);
        }
        if max_series > 0 && self.series.len() > max_series {
            let e = EvalError::TooManySeries { limit: max_series };
            return Err(QueryError::BadRequest(e.to_string()));
        }
        Ok(())
    }

    /// The whole answer: series in label order, as one evaluation sorts them.
    pub(crate) fn finish(self) -> Value {
        Value::Matrix(
            self.series
                .into_iter()
                .map(|(labels, points)| Series { labels, points })
                .collect(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn expr(q: &str) -> SampleExpr {
        match parquetry_logql::parse_expr(q) {
            Ok(parquetry_logql::Expr::Sample(s)) => s,
            other => panic!("not a metric query: {other:?}"),
        }
    }

    #[test]
    fn folding_scans_weigh_their_probe_and_the_rows_near_span_ends() {
        const MIN: i64 = 60_000_000_000;
        let stream = |span_minutes: i64| StreamInfo {
            fingerprint: 1,
            labels: Default::default(),
            entries: 1_000_000,
            bytes: 0,
            min_ts: 0,
            max_ts: span_minutes * MIN,
        };
        let probe = 2.0 * f64::from(IDENTITY_PROBE) * SERIES_BYTES as f64;
        let weigh = |s: &StreamInfo| folding_bytes(std::iter::once(s), 5 * MIN, 0, i64::MAX, 2);
        // Twelve hours at a 5m range: rows near the ends are under 3 %, so every row
        // weighs what a sample would.
        assert_eq!(weigh(&stream(720)), probe + 1e6 * SAMPLE_BYTES as f64);
        // A span of four ranges or less: every row may be kept as a series.
        assert_eq!(weigh(&stream(20)), probe + 1e6 * SERIES_BYTES as f64);
        assert!(weigh(&stream(100)) < weigh(&stream(40)));
    }

    #[test]
    fn only_queries_holding_something_per_line_are_split() {
        let grows = |q: &str| bytes_per_line(&expr(q)).iter().any(|w| *w > 0);
        assert_eq!(
            bytes_per_line(&expr(
                r#"max by (s) (count_over_time({a="b"}[1m])) / avg_over_time({a="b"} | unwrap d [1m]) by (s) / sum by (s) (rate({a="b"}[1m]))"#
            )),
            vec![SERIES_BYTES, SAMPLE_BYTES, 0]
        );
        for q in [
            r#"avg_over_time({a="b"} | logfmt | unwrap d [5m]) by (svc)"#,
            r#"quantile_over_time(0.9, {a="b"} | unwrap d [1m])"#,
            r#"avg by (svc) (avg_over_time({a="b"} | logfmt | unwrap d [5m]))"#,
            r#"max by (svc) (count_over_time({a="b"} [5m]))"#,
            r#"sum(rate({a="b"}[1m])) / sum(max_over_time({a="b"} | unwrap d [1m]))"#,
        ] {
            assert!(grows(q), "{q}");
        }
        for q in [
            r#"sum by (level) (count_over_time({a="b"} | json [5m]))"#,
            r#"rate({a="b"}[1m])"#,
            r#"sum by (svc) (count_over_time({a="b"} | logfmt [5m]))"#,
            r#"sum(bytes_over_time({a="b"}[1m]))"#,
            r#"sum by (detected_level) (count_over_time({a="b"}[5m]))"#,
        ] {
            assert!(!grows(q), "{q}");
        }
    }

    #[test]
    fn blocks_cover_every_step_once_and_respect_the_shortest_block() {
        // 10 steps into 3 blocks of at least 2: 4 + 4 + 2.
        assert_eq!(
            cut(100, 10, 10, 3, 2),
            vec![(100, 130), (140, 170), (180, 190)]
        );
        // The shortest block wins over the count asked for.
        assert_eq!(cut(0, 1, 10, 5, 4), vec![(0, 3), (4, 7), (8, 9)]);
        // Blocks as long as the query: one.
        assert_eq!(cut(0, 1, 10, 2, 10), vec![(0, 9)]);
        assert_eq!(cut(0, 1, 10, 1, 1), vec![(0, 9)]);
        for (steps, n, min) in [(11_001, 7, 3), (2, 2, 1), (97, 13, 0)] {
            let blocks = cut(5, 3, steps, n, min);
            let mut k = 0;
            for (a, b) in &blocks {
                assert_eq!(*a, 5 + 3 * k);
                assert!(b >= a);
                k = (b - 5) / 3 + 1;
            }
            assert_eq!(k, steps, "{steps} {n} {min}: {blocks:?}");
        }
    }

    #[test]
    fn rows_are_estimated_from_the_part_of_a_stream_in_range() {
        let s = StreamInfo {
            fingerprint: 1,
            labels: Default::default(),
            entries: 1000,
            bytes: 0,
            min_ts: 0,
            max_ts: 999,
        };
        assert_eq!(rows_within(&s, 0, 1000), 1000.0);
        assert_eq!(rows_within(&s, 500, 2000), 500.0);
        assert_eq!(rows_within(&s, 1000, 2000), 0.0);
        assert_eq!(rows_within(&s, -10, 0), 0.0);
        let point = StreamInfo {
            min_ts: 7,
            max_ts: 7,
            ..s
        };
        assert_eq!(rows_within(&point, 7, 8), 1000.0);
    }
}
