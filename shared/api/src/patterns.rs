//! `GET|POST /loki/api/v1/patterns`: log patterns of the selected streams, mined with Drain
//! at query time (Parquetry has no pattern ingester).
//!
//! The lines of the range are read once (all of them up to [`SAMPLE_LINES`], else a
//! deterministic sample of about that many, see `parquetry_query::patterns`), mined per stream
//! and `detected_level` like Loki's pattern ingester, re-bucketed to `step`, scaled back by
//! the sampling rate, then pruned like Loki's querier (total < 30 dropped, largest 300 kept).

use axum::extract::State;
use axum::response::Response;
use parquetry_logql::{Expr, parse_expr};
use parquetry_model::Matcher;
use parquetry_patterns::{
    Config, MAX_PATTERNS, MIN_CLUSTER_SIZE, Miner, PatternSeries, normalize_level, prune,
};
use std::collections::{BTreeMap, HashMap};

use parquetry_query::patterns::{LineSample, SampledLine};
use parquetry_query::trace::{self, Stage, in_stage};

use crate::AppState;
use crate::error::{ApiError, ApiResult, within_query_timeout};
use crate::json;
use crate::params::{Params, now_ns, step_param, time_range};
use crate::request::QueryRequest;

/// Lines mined per request at most: above this the lines are sampled and counts scaled. Sized
/// so that a day of one busy service answers within two seconds on two cores
/// (docs/benchmarks.md).
pub const SAMPLE_LINES: usize = 200_000;

/// Stream matchers only, as Loki's `syntax.ParseMatchers`: a pipeline or a metric query is
/// `only label matchers are supported`.
fn matchers(p: &Params) -> ApiResult<Vec<Matcher>> {
    let q = p.get("query").unwrap_or_default();
    match parse_expr(q).map_err(|e| ApiError::BadRequest(e.to_string()))? {
        Expr::Log(l) if l.pipeline.is_empty() => Ok(l.selector),
        _ => Err(ApiError::BadRequest(
            "only label matchers are supported".into(),
        )),
    }
}

/// `step` as Loki's `ParsePatternsQuery` validates it. Nanoseconds.
fn step(p: &Params, start: i64, end: i64) -> ApiResult<i64> {
    step_param(p, start, end, false)
}

/// `GET /loki/api/v1/patterns`.
pub async fn patterns(State(state): State<AppState>, req: QueryRequest) -> ApiResult<Response> {
    // Loki's order: bounds, step, then the query.
    let range = match time_range(&req.params, now_ns()) {
        Ok(r) => Some(r),
        // Loki answers an inverted range with no patterns rather than an error.
        Err(ApiError::BadRequest(m)) if m.starts_with("end timestamp must not be before") => None,
        Err(e) => return Err(e),
    };
    let (start, end) = range.unwrap_or((0, 0));
    let step = step(&req.params, start, end)?;
    let m = in_stage(Stage::Plan, || matchers(&req.params))?;
    if range.is_none() || end <= start {
        return Ok(encode(&[]));
    }
    let sample = within_query_timeout(
        state.config.limits_config.query_timeout.0,
        state
            .engine
            .sample_lines(&req.tenant, &m, start, end, SAMPLE_LINES),
    )
    .await?;
    // Mining is this endpoint's pipeline: what turns the lines read into the answer.
    let series = trace::blocking(Stage::Pipeline, move || mine(&sample, start, end, step))
        .await
        .map_err(|e| ApiError::Internal(format!("pattern mining task failed: {e}")))?;
    Ok(in_stage(Stage::Encode, || encode(&series)))
}

/// Mines the sample and turns counts back into estimates of all lines in the range.
///
/// Streams are mined independently (one Drain per stream and level, as Loki's ingester), so
/// the sample is cut at stream boundaries into one share per core, mined in parallel, and the
/// series merged by (pattern, level): the same answer as one miner over every line.
pub fn mine(sample: &LineSample, start: i64, end: i64, step: i64) -> Vec<PatternSeries> {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let shares = stream_shares(&sample.lines, threads);
    let mined: Vec<(Vec<PatternSeries>, u64, u64)> = std::thread::scope(|scope| {
        let handles: Vec<_> = shares
            .iter()
            .map(|lines| scope.spawn(move || mine_share(lines, start, end, step)))
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or_else(|e| std::panic::resume_unwind(e)))
            .collect()
    });
    let (mut trained, mut skipped) = (0, 0);
    let mut merged: HashMap<(String, String), BTreeMap<i64, u64>> = HashMap::new();
    for (series, t, s) in mined {
        trained += t;
        skipped += s;
        for s in series {
            let out = merged.entry((s.pattern, s.level)).or_default();
            for (ts, n) in s.samples {
                *out.entry(ts).or_default() += n;
            }
        }
    }
    let mut series: Vec<PatternSeries> = merged
        .into_iter()
        .map(|((pattern, level), samples)| PatternSeries {
            pattern,
            level,
            samples: samples.into_iter().collect(),
        })
        .collect();
    if sample.rate < 1.0 && sample.rate > 0.0 {
        for s in &mut series {
            for (_, v) in &mut s.samples {
                *v = (*v as f64 / sample.rate).round() as u64;
            }
        }
    }
    tracing::debug!(
        lines = sample.lines.len(),
        rate = sample.rate,
        trained,
        skipped,
        patterns = series.len(),
        "patterns mined"
    );
    prune(series, MIN_CLUSTER_SIZE, MAX_PATTERNS)
}

/// `lines` (sorted by stream) cut into at most `n` runs of about equal length, never inside a
/// stream.
fn stream_shares(lines: &[SampledLine], n: usize) -> Vec<&[SampledLine]> {
    let target = lines.len().div_ceil(n.max(1)).max(1);
    let mut out = Vec::new();
    let mut rest = lines;
    while !rest.is_empty() {
        let mut cut = target.min(rest.len());
        while cut < rest.len() && rest[cut].stream == rest[cut - 1].stream {
            cut += 1;
        }
        let (share, tail) = rest.split_at(cut);
        out.push(share);
        rest = tail;
    }
    out
}

/// One share's unscaled series, and its trained and skipped line counts.
fn mine_share(
    lines: &[SampledLine],
    start: i64,
    end: i64,
    step: i64,
) -> (Vec<PatternSeries>, u64, u64) {
    let mut miner = Miner::new(Config::default());
    for l in lines {
        miner.train(
            l.stream,
            Some(normalize_level(l.level.as_deref())),
            &l.line,
            l.ts,
        );
    }
    (
        miner.series(start, end, step),
        miner.trained(),
        miner.skipped(),
    )
}

/// `{"status":"success","data":[{"pattern":…,"level":…,"samples":[[sec,count],…]},…]}`.
pub fn encode(series: &[PatternSeries]) -> Response {
    let mut out = String::from("{\"status\":\"success\",\"data\":[");
    for (i, s) in series.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str("{\"pattern\":");
        json::push_str(&mut out, &s.pattern);
        out.push_str(",\"level\":");
        json::push_str(&mut out, &s.level);
        out.push_str(",\"samples\":[");
        for (j, (ms, n)) in s.samples.iter().enumerate() {
            if j > 0 {
                out.push(',');
            }
            out.push_str(&format!("[{},{}]", ms.div_euclid(1000), n));
        }
        out.push_str("]}");
    }
    out.push_str("]}");
    json::response(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: i64 = 1_000_000_000;

    fn sample(n: i64, rate: f64) -> LineSample {
        LineSample {
            lines: (0..n)
                .map(|i| SampledLine {
                    stream: 1,
                    ts: i * S,
                    line: format!("request {i} done in {i}ms"),
                    level: Some("INFO".into()),
                })
                .collect(),
            rate,
            ..LineSample::default()
        }
    }

    #[test]
    fn parallel_shares_answer_as_one_miner() {
        // Five streams of different lengths, each with its own rare and common lines.
        let mut lines = Vec::new();
        for stream in 0..5u64 {
            for i in 0..(40 + stream as i64 * 13) {
                let line = if i % 7 == 0 {
                    format!("stream {stream} slow query took {i} ms on shard {}", i % 3)
                } else {
                    format!("GET /items/{i} status {} from {stream}", 200 + i % 2)
                };
                lines.push(SampledLine {
                    stream,
                    ts: i * S,
                    line,
                    level: Some(if i % 5 == 0 { "warn" } else { "info" }.into()),
                });
            }
        }
        let sample = LineSample {
            lines: lines.clone(),
            rate: 1.0,
            ..LineSample::default()
        };
        let (one, _, _) = mine_share(&lines, 0, 200 * S, 30 * S);
        let one = prune(one, MIN_CLUSTER_SIZE, MAX_PATTERNS);
        assert!(!one.is_empty());
        assert_eq!(mine(&sample, 0, 200 * S, 30 * S), one);
        for n in 1..7 {
            let shares = stream_shares(&lines, n);
            assert!(shares.len() <= n);
            assert_eq!(shares.iter().map(|s| s.len()).sum::<usize>(), lines.len());
            for w in shares.windows(2) {
                assert_ne!(
                    w[0].last().map(|l| l.stream),
                    w[1].first().map(|l| l.stream)
                );
            }
        }
    }

    #[test]
    fn sampled_counts_scale_back_and_prune_after_scaling() {
        // 20 sampled lines at a quarter: an estimated 80, kept although 20 < 30.
        let got = mine(&sample(20, 0.25), 0, 60 * S, 10 * S);
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].pattern, "request <_> done in <_>");
        assert_eq!(got[0].level, "info");
        assert_eq!(got[0].samples, [(0, 40), (10_000, 40)]);
        // Every line read: exact counts, and 20 < 30 is pruned.
        assert!(mine(&sample(20, 1.0), 0, 60 * S, 10 * S).is_empty());
    }
}
