//! End-to-end tests of [`crate::evaluate`]: queries are parsed from LogQL text and fed
//! hand-written samples, so each test reads like the behaviour it pins down.

use parquetry_logql::{Expr, SampleExpr, parse_expr};
use parquetry_model::Labels;

use crate::{
    Collapsed, CollapsedSeries, EvalError, EvalParams, RangeInput, Sample, SampleSeries, Series,
    Value, check_points, default_step, evaluate,
};

const S: i64 = 1_000_000_000;
const T0: i64 = 1_700_000_000 * S;

fn q(query: &str) -> SampleExpr {
    match parse_expr(query) {
        Ok(Expr::Sample(e)) => e,
        other => panic!("{query}: {other:?}"),
    }
}

fn ls(pairs: &[(&str, &str)]) -> Labels {
    Labels::from_pairs(pairs.iter().copied())
}

/// A series with samples at `T0 + secs`.
fn ser(pairs: &[(&str, &str)], samples: &[(i64, f64)]) -> SampleSeries {
    SampleSeries {
        labels: ls(pairs),
        samples: samples.iter().map(|&(t, v)| (T0 + t * S, v)).collect(),
    }
}

fn ones(pairs: &[(&str, &str)], secs: &[i64]) -> SampleSeries {
    let samples: Vec<(i64, f64)> = secs.iter().map(|&t| (t, 1.0)).collect();
    ser(pairs, &samples)
}

fn instant_params(at: i64) -> EvalParams {
    EvalParams {
        start: T0 + at * S,
        end: T0 + at * S,
        step: S,
        instant: true,
        max_series: 500,
    }
}

fn range_params(start: i64, end: i64, step: i64) -> EvalParams {
    EvalParams {
        start: T0 + start * S,
        end: T0 + end * S,
        step: step * S,
        instant: false,
        max_series: 500,
    }
}

fn instant(query: &str, at: i64, inputs: Vec<Vec<SampleSeries>>) -> Result<Vec<Sample>, EvalError> {
    match evaluate(&q(query), &instant_params(at), inputs)? {
        Value::Vector(v) => Ok(v),
        other => panic!("expected a vector, got {other:?}"),
    }
}

fn range(
    query: &str,
    (start, end, step): (i64, i64, i64),
    inputs: Vec<Vec<SampleSeries>>,
) -> Result<Vec<Series>, EvalError> {
    match evaluate(&q(query), &range_params(start, end, step), inputs)? {
        Value::Matrix(m) => Ok(m),
        other => panic!("expected a matrix, got {other:?}"),
    }
}

/// `(labels text, value)` pairs of an instant vector, in result order.
fn flat(v: &[Sample]) -> Vec<(String, f64)> {
    v.iter().map(|s| (s.labels.to_string(), s.v)).collect()
}

/// `(seconds after T0, value)` of one series.
fn pts(s: &Series) -> Vec<(i64, f64)> {
    s.points.iter().map(|&(t, v)| ((t - T0) / S, v)).collect()
}

fn one(query: &str, at: i64, inputs: Vec<Vec<SampleSeries>>) -> f64 {
    let v = instant(query, at, inputs).unwrap();
    assert_eq!(v.len(), 1, "{query}: {v:?}");
    v[0].v
}

/// A matrix with its values as bits: equal only if equal to the last bit.
fn bits(m: &[Series]) -> Vec<(String, Vec<(i64, u64)>)> {
    m.iter()
        .map(|s| {
            let p = s.points.iter().map(|&(t, v)| (t, v.to_bits())).collect();
            (s.labels.to_string(), p)
        })
        .collect()
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-12 * b.abs().max(1.0)
}

// ---- grid and windows -------------------------------------------------------------------

#[test]
fn window_excludes_its_start_and_includes_its_end() {
    let s = ser(&[("app", "a")], &[(-10, 1.0), (-5, 1.0), (0, 1.0)]);
    assert_eq!(
        one(
            r#"count_over_time({app="a"}[10s])"#,
            0,
            vec![vec![s.clone()]]
        ),
        2.0
    );
    // One nanosecond past the evaluation time is outside.
    let late = SampleSeries {
        labels: ls(&[("app", "a")]),
        samples: vec![(T0 + 1, 1.0)],
    };
    assert!(
        instant(r#"count_over_time({app="a"}[10s])"#, 0, vec![vec![late]])
            .unwrap()
            .is_empty()
    );
    // One nanosecond after the exclusive start is inside.
    let early = SampleSeries {
        labels: ls(&[("app", "a")]),
        samples: vec![(T0 - 10 * S + 1, 1.0)],
    };
    assert_eq!(
        one(r#"count_over_time({app="a"}[10s])"#, 0, vec![vec![early]]),
        1.0
    );
}

#[test]
fn offset_shifts_the_window_but_not_the_timestamp() {
    let s = ones(&[("app", "a")], &[-15, -12, -3]);
    let v = instant(
        r#"count_over_time({app="a"}[10s] offset 10s)"#,
        0,
        vec![vec![s]],
    )
    .unwrap();
    assert_eq!(flat(&v), vec![(r#"{app="a"}"#.to_string(), 2.0)]);
    assert_eq!(v[0].t, T0);
}

#[test]
fn range_grid_is_inclusive_and_empty_windows_have_no_point() {
    let s = ones(&[("app", "a")], &[1, 2, 25]);
    let m = range(
        r#"count_over_time({app="a"}[5s])"#,
        (0, 30, 5),
        vec![vec![s]],
    )
    .unwrap();
    assert_eq!(m.len(), 1);
    // Steps 0,5,…,30: the window (t-5, t] holds 1 and 2 at t=5 only, 25 at t=25 only.
    assert_eq!(pts(&m[0]), vec![(5, 2.0), (25, 1.0)]);
    // end exactly on the grid is evaluated; an end between steps is not rounded up.
    let s = ones(&[("app", "a")], &[29]);
    let m = range(
        r#"count_over_time({app="a"}[5s])"#,
        (0, 29, 5),
        vec![vec![s]],
    )
    .unwrap();
    assert!(m.is_empty(), "{m:?}");
}

#[test]
fn range_query_with_offset_reports_evaluation_times() {
    let s = ones(&[("app", "a")], &[-1, 4]);
    let m = range(
        r#"count_over_time({app="a"}[5s] offset 5s)"#,
        (0, 10, 5),
        vec![vec![s]],
    )
    .unwrap();
    // t=0 looks at (-10, -5]: empty; t=5 at (-5, 0]; t=10 at (0, 5].
    assert_eq!(pts(&m[0]), vec![(5, 1.0), (10, 1.0)]);
}

// ---- range functions ---------------------------------------------------------------------

fn values() -> SampleSeries {
    ser(
        &[("app", "a")],
        &[(-50, 3.0), (-40, 1.0), (-30, 4.0), (-20, 1.0), (-10, 5.0)],
    )
}

fn f(query: &str) -> f64 {
    one(query, 0, vec![vec![values()]])
}

#[test]
fn counting_and_summing_functions() {
    // A count's samples carry the lines they stand for: one each as a scan reads them.
    let lines = |q: &str| {
        one(
            q,
            0,
            vec![vec![ones(&[("app", "a")], &[-50, -40, -30, -20, -10])]],
        )
    };
    assert_eq!(lines(r#"count_over_time({app="a"}[1m])"#), 5.0);
    assert_eq!(lines(r#"rate({app="a"}[1m])"#), 5.0 / 60.0);
    // Folded into step cells, a sample stands for as many lines as its value says.
    assert_eq!(f(r#"count_over_time({app="a"}[1m])"#), 14.0);
    assert_eq!(f(r#"rate({app="a"}[1m])"#), 14.0 / 60.0);
    assert_eq!(f(r#"rate({app="a"} | unwrap x [1m])"#), 14.0 / 60.0);
    assert_eq!(f(r#"bytes_over_time({app="a"}[1m])"#), 14.0);
    assert_eq!(f(r#"bytes_rate({app="a"}[1m])"#), 14.0 / 60.0);
    assert_eq!(f(r#"sum_over_time({app="a"} | unwrap x [1m])"#), 14.0);
    // (-30s, 0]: the sample at -30s is out.
    assert_eq!(f(r#"sum_over_time({app="a"} | unwrap x [30s])"#), 6.0);
}

#[test]
fn sums_of_fractions_match_sequential_addition() {
    let s = ser(&[("app", "a")], &[(-3, 0.1), (-2, 0.2), (-1, 0.3)]);
    let v = one(
        r#"sum_over_time({app="a"} | unwrap x [10s])"#,
        0,
        vec![vec![s]],
    );
    assert_eq!(v, 0.1 + 0.2 + 0.3);
}

#[test]
fn statistical_functions() {
    assert_eq!(f(r#"avg_over_time({app="a"} | unwrap x [1m])"#), 2.8);
    assert_eq!(f(r#"min_over_time({app="a"} | unwrap x [1m])"#), 1.0);
    assert_eq!(f(r#"max_over_time({app="a"} | unwrap x [1m])"#), 5.0);
    assert_eq!(f(r#"first_over_time({app="a"} | unwrap x [1m])"#), 3.0);
    assert_eq!(f(r#"last_over_time({app="a"} | unwrap x [1m])"#), 5.0);
    // mean 2.8; squared deviations 0.04+3.24+1.44+3.24+4.84 = 12.8; /5 = 2.56
    assert!(close(
        f(r#"stdvar_over_time({app="a"} | unwrap x [1m])"#),
        2.56
    ));
    assert!(close(
        f(r#"stddev_over_time({app="a"} | unwrap x [1m])"#),
        1.6
    ));
    // sorted 1 1 3 4 5
    assert_eq!(
        f(r#"quantile_over_time(0.5, {app="a"} | unwrap x [1m])"#),
        3.0
    );
    assert_eq!(
        f(r#"quantile_over_time(0.75, {app="a"} | unwrap x [1m])"#),
        4.0
    );
    assert_eq!(
        f(r#"quantile_over_time(0.9, {app="a"} | unwrap x [1m])"#),
        4.6
    );
    assert_eq!(
        f(r#"quantile_over_time(0, {app="a"} | unwrap x [1m])"#),
        1.0
    );
    assert_eq!(
        f(r#"quantile_over_time(1, {app="a"} | unwrap x [1m])"#),
        5.0
    );
    assert_eq!(
        f(r#"quantile_over_time(1.5, {app="a"} | unwrap x [1m])"#),
        f64::INFINITY
    );
}

#[test]
fn nan_and_infinity_handling() {
    let nan_first = ser(&[("app", "a")], &[(-3, f64::NAN), (-2, 2.0), (-1, 1.0)]);
    let g = |query: &str, s: &SampleSeries| one(query, 0, vec![vec![s.clone()]]);
    assert_eq!(
        g(r#"max_over_time({app="a"} | unwrap x [10s])"#, &nan_first),
        2.0
    );
    assert_eq!(
        g(r#"min_over_time({app="a"} | unwrap x [10s])"#, &nan_first),
        1.0
    );
    let all_nan = ser(&[("app", "a")], &[(-3, f64::NAN), (-2, f64::NAN)]);
    assert!(g(r#"max_over_time({app="a"} | unwrap x [10s])"#, &all_nan).is_nan());
    // An infinite mean stays infinite when finite values follow (no Inf - Inf).
    let inf = ser(
        &[("app", "a")],
        &[(-3, f64::INFINITY), (-2, 2.0), (-1, f64::INFINITY)],
    );
    assert_eq!(
        g(r#"avg_over_time({app="a"} | unwrap x [10s])"#, &inf),
        f64::INFINITY
    );
    let mixed = ser(
        &[("app", "a")],
        &[(-3, f64::INFINITY), (-2, f64::NEG_INFINITY)],
    );
    assert!(g(r#"avg_over_time({app="a"} | unwrap x [10s])"#, &mixed).is_nan());
    // NaN sorts first for quantiles.
    assert!(
        g(
            r#"quantile_over_time(0, {app="a"} | unwrap x [10s])"#,
            &nan_first
        )
        .is_nan()
    );
    assert_eq!(
        g(
            r#"quantile_over_time(1, {app="a"} | unwrap x [10s])"#,
            &nan_first
        ),
        2.0
    );
}

#[test]
fn rate_counter_follows_lokis_extrapolation() {
    let g = |samples: &[(i64, f64)]| {
        let s = ser(&[("app", "a")], samples);
        one(
            r#"rate_counter({app="a"} | unwrap x [1m])"#,
            0,
            vec![vec![s]],
        )
    };
    // Counter starting at zero: the zero point caps extrapolation to the start; the end is
    // 10 s away, within 1.1 average gaps, so it extrapolates all the way.
    assert!(close(
        g(&[(-30, 0.0), (-20, 10.0), (-10, 20.0)]),
        20.0 * (30.0 / 20.0) / 60.0
    ));
    // A reset adds the value before it (increase 7); both boundaries are far (30 s and 10 s
    // against an average gap of 10 s: the start is cut to half a gap).
    let want = 7.0 * ((20.0 + 5.0 + 10.0) / 20.0) / 60.0;
    assert!(close(g(&[(-30, 5.0), (-20, 10.0), (-10, 2.0)]), want));
    // Two samples 10 s apart in a 2-minute window ending 68 s after the last (the corpus'
    // `email` job, as the reference Loki answers it): 1/60.
    let s = ser(&[("app", "a")], &[(-78, 2.0), (-68, 3.0)]);
    let v = one(
        r#"rate_counter({app="a"} | unwrap x [2m])"#,
        0,
        vec![vec![s]],
    );
    assert!(close(v, 1.0 / 60.0), "{v}");
    // One sample is a zero, not a gap.
    assert_eq!(g(&[(-10, 5.0)]), 0.0);
}

#[test]
fn absent_over_time_marks_only_empty_steps() {
    let s = ones(&[("app", "a"), ("pod", "x")], &[12]);
    let query = r#"absent_over_time({app="a", env=~"p.*", job="j", job!="k"}[5s])"#;
    let m = range(query, (0, 30, 5), vec![vec![s]]).unwrap();
    assert_eq!(m.len(), 1);
    // job has two matchers, so only app survives.
    assert_eq!(m[0].labels, ls(&[("app", "a")]));
    assert_eq!(
        pts(&m[0]),
        vec![
            (0, 1.0),
            (5, 1.0),
            (10, 1.0),
            (20, 1.0),
            (25, 1.0),
            (30, 1.0)
        ]
    );
    let none = instant(r#"absent_over_time({app="a"}[1m])"#, 0, vec![vec![]]).unwrap();
    assert_eq!(flat(&none), vec![(r#"{app="a"}"#.to_string(), 1.0)]);
}

#[test]
fn range_grouping_merges_series_before_the_function() {
    let a = ser(&[("app", "a"), ("pod", "1")], &[(-3, 1.0), (-1, 10.0)]);
    let b = ser(&[("app", "a"), ("pod", "2")], &[(-2, 4.0)]);
    let by = instant(
        r#"avg_over_time({app="a"} | unwrap x [10s]) by (app)"#,
        0,
        vec![vec![a.clone(), b.clone()]],
    );
    assert_eq!(flat(&by.unwrap()), vec![(r#"{app="a"}"#.to_string(), 5.0)]);
    let first = instant(
        r#"first_over_time({app="a"} | unwrap x [10s]) without (pod)"#,
        0,
        vec![vec![a.clone(), b.clone()]],
    );
    assert_eq!(
        flat(&first.unwrap()),
        vec![(r#"{app="a"}"#.to_string(), 1.0)]
    );
    let last = instant(
        r#"last_over_time({app="a"} | unwrap x [10s]) by ()"#,
        0,
        vec![vec![a, b]],
    );
    assert_eq!(flat(&last.unwrap()), vec![("{}".to_string(), 10.0)]);
}

#[test]
fn identical_label_sets_are_one_series_and_unsorted_input_is_tolerated() {
    let a = ser(&[("app", "a")], &[(-1, 1.0), (-3, 1.0)]);
    let b = ser(&[("app", "a")], &[(-2, 1.0)]);
    let v = instant(r#"count_over_time({app="a"}[10s])"#, 0, vec![vec![a, b]]).unwrap();
    assert_eq!(flat(&v), vec![(r#"{app="a"}"#.to_string(), 3.0)]);
}

/// The query layer hands over samples in scan order: per partition, then concatenated, so a
/// series' samples are neither sorted nor in one piece. Evaluation sorts them itself; this
/// fails if it stops doing so (the windows are found by walking sorted samples).
#[test]
fn samples_in_scan_order_give_the_sorted_answer() {
    let times: Vec<i64> = (-59..=0).collect();
    let sorted = ser(
        &[("app", "a")],
        &times.iter().map(|&t| (t, t as f64)).collect::<Vec<_>>(),
    );
    // Two "partitions" of the same series, each in reverse, interleaved by parity.
    let part = |odd: bool| {
        let mut v: Vec<(i64, f64)> = times
            .iter()
            .filter(|t| (t.rem_euclid(2) == 1) == odd)
            .map(|&t| (t, t as f64))
            .collect();
        v.reverse();
        ser(&[("app", "a")], &v)
    };
    let scanned = vec![part(true), part(false)];
    for query in [
        r#"count_over_time({app="a"}[10s])"#,
        r#"last_over_time({app="a"} | unwrap v [10s])"#,
        r#"first_over_time({app="a"} | unwrap v [10s])"#,
        r#"rate_counter({app="a"} | unwrap v [20s])"#,
    ] {
        let want = range(query, (-40, 0, 10), vec![vec![sorted.clone()]]).unwrap();
        let got = range(query, (-40, 0, 10), vec![scanned.clone()]).unwrap();
        assert_eq!(got, want, "{query}");
    }
    let last = range(
        r#"last_over_time({app="a"} | unwrap v [10s])"#,
        (-40, 0, 10),
        vec![scanned],
    )
    .unwrap();
    assert_eq!(
        pts(&last[0]),
        [
            (-40, -40.0),
            (-30, -30.0),
            (-20, -20.0),
            (-10, -10.0),
            (0, 0.0)
        ]
    );
}

/// A brute-force reference: every step, scan every sample and reduce the window with `f`.
fn reference(
    samples: &[(i64, f64)],
    (start, end, step): (i64, i64, i64),
    (r, o): (i64, i64),
    f: impl Fn(&[f64]) -> f64,
) -> Vec<(i64, f64)> {
    let mut out = Vec::new();
    let mut t = start;
    while t <= end {
        let w: Vec<f64> = samples
            .iter()
            .filter(|s| s.0 > t - r - o && s.0 <= t - o)
            .map(|s| s.1)
            .collect();
        if !w.is_empty() {
            out.push((t, f(&w)));
        }
        t += step;
    }
    out
}

#[test]
fn sliding_window_matches_brute_force() {
    // Deterministic pseudo-random samples with gaps, bursts and duplicate timestamps.
    let mut x: u64 = 0x2545_f491_4f6c_dd1d;
    let mut next = || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    type Reduce = fn(&[f64]) -> f64;
    let functions: [(&str, Reduce); 5] = [
        // A count's samples carry the lines they stand for (`StepCells`).
        ("count_over_time({app=\"a\"}", |w| w.iter().sum()),
        ("sum_over_time({app=\"a\"} | unwrap x", |w| w.iter().sum()),
        ("first_over_time({app=\"a\"} | unwrap x", |w| w[0]),
        ("last_over_time({app=\"a\"} | unwrap x", |w| w[w.len() - 1]),
        ("max_over_time({app=\"a\"} | unwrap x", |w| {
            w.iter().copied().fold(f64::MIN, f64::max)
        }),
    ];
    for round in 0..80 {
        let mut ts = T0 - 100 * S;
        let mut samples = Vec::new();
        for _ in 0..(next() % 60) {
            ts += match next() % 4 {
                0 => 0,
                1 => (next() % 3) as i64 * S,
                2 => (next() % 1000) as i64 * 1_000_000,
                _ => (next() % 40) as i64 * S,
            };
            let v = (next() % 7) as f64;
            samples.push((ts, if round % 2 == 0 { v } else { v / 4.0 }));
        }
        let step = [1, 3, 7, 20][round % 4] * S;
        let r = [2, 5, 10, 30][(round / 4) % 4] * S;
        let o = [0, 4][(round / 16) % 2] * S;
        let (start, end) = (T0 - 90 * S, T0 + 60 * S);
        let params = EvalParams {
            start,
            end,
            step,
            instant: false,
            max_series: 0,
        };
        let input = SampleSeries {
            labels: ls(&[("app", "a")]),
            samples: samples.clone(),
        };
        let (name, reduce) = functions[round % functions.len()];
        let query = format!("{name} [{}s] offset {}s)", r / S, o / S);
        let got = match evaluate(&q(&query), &params, vec![vec![input]]).unwrap() {
            Value::Matrix(m) => m.into_iter().next().map(|s| s.points).unwrap_or_default(),
            other => panic!("{other:?}"),
        };
        let want = reference(&samples, (start, end, step), (r, o), reduce);
        assert_eq!(got, want, "round {round}: {query}");
    }
}

#[test]
fn samples_folded_into_step_cells_give_the_unfolded_answer() {
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let functions = [
        "count_over_time({app=\"a\"}",
        "rate({app=\"a\"}",
        "bytes_over_time({app=\"a\"}",
        "bytes_rate({app=\"a\"}",
        "absent_over_time({app=\"a\"}",
    ];
    let mut folded_away = 0;
    for round in 0..200 {
        let mut ts = T0 - 100 * S;
        let mut samples = Vec::new();
        for _ in 0..(next() % 80) {
            ts += match next() % 4 {
                0 => 0,
                1 => (next() % 3) as i64 * S,
                2 => (next() % 1000) as i64 * 1_000_000,
                _ => (next() % 40) as i64 * S,
            };
            // One per line for counts, a line's length for bytes.
            let v = if round % functions.len() < 2 {
                1.0
            } else {
                (next() % 300) as f64
            };
            samples.push((ts, v));
        }
        let step = [1, 3, 7, 20][round % 4] * S;
        let r = [2, 5, 10, 30][(round / 4) % 4] * S;
        let o = [0, 4, -4][(round / 16) % 3] * S;
        let params = if round % 3 == 0 {
            EvalParams {
                start: T0 - 20 * S,
                end: T0 - 20 * S,
                step,
                instant: true,
                max_series: 0,
            }
        } else {
            EvalParams {
                start: T0 - 90 * S,
                end: T0 + 60 * S,
                step,
                instant: false,
                max_series: 0,
            }
        };
        let query = q(&format!(
            "{} [{}s] offset {}s)",
            functions[round % functions.len()],
            r / S,
            o / S
        ));
        let SampleExpr::RangeAggregation(ra) = &query else {
            panic!("a range aggregation")
        };
        assert!(crate::StepCells::fold(ra.op, ra.range.unwrap.is_some()));
        let cells = crate::StepCells::new(&params, r, o).unwrap();
        // Fold as a scan does: consecutive lines of one cell become one sample.
        let mut folded: Vec<(i64, f64)> = Vec::new();
        for &(t, v) in &samples {
            let Some(c) = cells.cell(t) else { continue };
            match folded.last_mut() {
                Some(last) if last.0 == c => last.1 += v,
                _ => folded.push((c, v)),
            }
        }
        folded_away += samples.len() - folded.len();
        let series = |samples: Vec<(i64, f64)>| {
            vec![vec![SampleSeries {
                labels: ls(&[("app", "a")]),
                samples,
            }]]
        };
        let want = evaluate(&query, &params, series(samples.clone())).unwrap();
        let got = evaluate(&query, &params, series(folded)).unwrap();
        assert_eq!(got, want, "round {round}: {query:?}");
    }
    assert!(
        folded_away > 1_000,
        "the rounds folded {folded_away} samples away"
    );
}

// ---- pipeline errors ---------------------------------------------------------------------

#[test]
fn pipeline_error_has_lokis_text() {
    let bad = ones(&[("__error__", "JSONParserErr"), ("app", "a")], &[-1]);
    let err = instant(
        r#"count_over_time({app="a"} | json [1m])"#,
        0,
        vec![vec![bad]],
    )
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        "pipeline error: 'JSONParserErr' for series: '{__error__=\"JSONParserErr\", app=\"a\"}'.\n\
         Use a label filter to intentionally skip this error. (e.g | __error__!=\"JSONParserErr\").\n\
         To skip all potential errors you can match empty errors.(e.g __error__=\"\")\n\
         The label filter can also be specified after unwrap. (e.g | unwrap latency | __error__=\"\" )\n"
    );
}

#[test]
fn pipeline_error_only_when_the_series_has_a_point_and_survives_grouping() {
    let bad = ser(
        &[("__error__", "SampleExtractionErr"), ("app", "a")],
        &[(-100, 1.0)],
    );
    let good = ser(&[("app", "a")], &[(-1, 2.0)]);
    let v = instant(
        r#"sum_over_time({app="a"} | unwrap x [10s])"#,
        0,
        vec![vec![bad.clone(), good.clone()]],
    );
    assert_eq!(v.unwrap().len(), 1);
    let near = ser(
        &[("__error__", "SampleExtractionErr"), ("app", "a")],
        &[(-1, 1.0)],
    );
    // A range-level `by` does not hide the error.
    let err = instant(
        r#"max_over_time({app="a"} | unwrap x [10s]) by (app)"#,
        0,
        vec![vec![near.clone(), good]],
    );
    assert!(
        matches!(err, Err(EvalError::PipelineError { ref err_type, .. }) if err_type == "SampleExtractionErr")
    );
    // Nor does an outer aggregation.
    let err = instant(
        r#"sum by (app) (count_over_time({app="a"}[10s]))"#,
        0,
        vec![vec![near]],
    );
    assert!(matches!(err, Err(EvalError::PipelineError { .. })));
    // A range query fails too, at the step where the series appears.
    let late = ones(&[("__error__", "LogfmtParserErr"), ("app", "a")], &[50]);
    let err = range(
        r#"count_over_time({app="a"}[10s])"#,
        (0, 60, 10),
        vec![vec![late]],
    );
    assert!(matches!(err, Err(EvalError::PipelineError { .. })));
    let kept = ones(
        &[
            ("__error__", "X"),
            ("__preserve_error__", "true"),
            ("app", "a"),
        ],
        &[-1],
    );
    assert_eq!(
        instant(r#"count_over_time({app="a"}[10s])"#, 0, vec![vec![kept]])
            .unwrap()
            .len(),
        1
    );
}

// ---- vector aggregations -----------------------------------------------------------------

fn pods() -> Vec<SampleSeries> {
    vec![
        ser(&[("app", "a"), ("pod", "1")], &[(-1, 1.0)]),
        ser(&[("app", "a"), ("pod", "2")], &[(-1, 3.0)]),
        ser(&[("app", "b"), ("pod", "3")], &[(-1, 8.0)]),
        ser(&[("app", "b"), ("pod", "4")], &[(-1, f64::NAN)]),
    ]
}

fn agg(query: &str) -> Vec<(String, f64)> {
    flat(&instant(query, 0, vec![pods()]).unwrap())
}

fn lv(items: &[(&str, f64)]) -> Vec<(String, f64)> {
    items.iter().map(|(l, v)| (l.to_string(), *v)).collect()
}

#[test]
fn sum_count_avg_min_max_with_groupings() {
    let x = r#"last_over_time({app=~".+"} | unwrap x [1m])"#;
    let sum = agg(&format!("sum by (app) ({x})"));
    assert_eq!(sum[0], (r#"{app="a"}"#.to_string(), 4.0));
    assert!(sum[1].1.is_nan());
    assert_eq!(
        agg(&format!("count without (pod) ({x})")),
        lv(&[(r#"{app="a"}"#, 2.0), (r#"{app="b"}"#, 2.0)])
    );
    assert_eq!(agg(&format!("count({x})")), lv(&[("{}", 4.0)]));
    assert_eq!(agg(&format!("count by () ({x})")), lv(&[("{}", 4.0)]));
    assert_eq!(agg(&format!("avg by (app) ({x})"))[0].1, 2.0);
    // NaN is replaced by any value in min/max.
    assert_eq!(agg(&format!("max by (app) ({x})"))[1].1, 8.0);
    assert_eq!(agg(&format!("min by (app) ({x})"))[1].1, 8.0);
    assert_eq!(agg(&format!("stdvar by (app) ({x})"))[0].1, 1.0);
    assert_eq!(agg(&format!("stddev by (app) ({x})"))[0].1, 1.0);
    // Grouping labels missing from a series group it with the empty value.
    assert_eq!(agg(&format!("count by (nope) ({x})")), lv(&[("{}", 4.0)]));
}

/// Many series with fractional values, in several groups, some groups not at every step.
fn noisy() -> Vec<SampleSeries> {
    let mut out = Vec::new();
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    for i in 0..60 {
        let mut samples = Vec::new();
        for j in 0..40 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            if x.is_multiple_of(3) {
                continue;
            }
            let v = (x % 10_000) as f64 / 7.0 - 300.0;
            samples.push((j * 7 - 10 + (i % 5), v));
        }
        let (app, id) = (format!("a{}", i % 4), format!("{i}"));
        out.push(ser(&[("app", &app), ("id", &id), ("zone", "z")], &samples));
    }
    out
}

#[test]
fn aggregations_folded_with_their_range_aggregation_match_the_step_by_step_answer() {
    // A no-op label_replace in between keeps the step-by-step path: the folded one must give
    // the same series and the same values to the last bit, for every grouping form.
    for op in ["sum", "avg", "min", "max", "count", "stddev", "stdvar"] {
        for grouping in ["by (app)", "without (id)", "", "by (nope)", "by (id)"] {
            for inner in [
                r#"avg_over_time({zone="z"} | unwrap v [30s])"#,
                r#"rate({zone="z"}[20s] offset 5s)"#,
                r#"quantile_over_time(0.9, {zone="z"} | unwrap v [1m])"#,
            ] {
                let folded = format!("{op} {grouping} ({inner})");
                let stepwise = format!(
                    r#"{op} {grouping} (label_replace({inner}, "none", "", "nothing", ""))"#
                );
                let a = range(&folded, (0, 300, 15), vec![noisy()]).unwrap();
                let b = range(&stepwise, (0, 300, 15), vec![noisy()]).unwrap();
                assert!(!a.is_empty(), "{folded}");
                assert_eq!(bits(&a), bits(&b), "{folded}");
                let a = instant(&folded, 100, vec![noisy()]).unwrap();
                let b = instant(&stepwise, 100, vec![noisy()]).unwrap();
                assert_eq!(format!("{a:?}"), format!("{b:?}"), "{folded}");
            }
        }
    }
    // A series that fails the query still fails it at the step it first has a point.
    let mut input = noisy();
    input.push(ones(
        &[("__error__", "LogfmtParserErr"), ("zone", "z")],
        &[203],
    ));
    let q = r#"sum by (app) (count_over_time({zone="z"}[10s]))"#;
    assert!(matches!(
        range(q, (0, 300, 15), vec![input.clone()]),
        Err(EvalError::PipelineError { .. })
    ));
    assert!(range(q, (0, 195, 15), vec![input]).is_ok());
}

/// `noisy()` with each series collapsed onto the labels `by` names (plus labels around the
/// identity's place: `Zone` sorts before it, `app` and `zone` after), every fifth series kept
/// whole when `mixed`, each group listed twice, and some series split in two entries.
fn collapsed_noisy(by: &[&str], mixed: bool) -> RangeInput {
    let mut input = RangeInput::default();
    let Collapsed { groups, series, .. } = &mut input.collapsed;
    for (i, s) in noisy().into_iter().enumerate() {
        let mut labels = s.labels.clone();
        labels.set("Zone", "Z");
        if mixed && i % 5 == 0 {
            input.series.push(SampleSeries {
                labels,
                samples: s.samples,
            });
            continue;
        }
        let group = Labels::from_pairs(
            labels
                .iter()
                .filter(|l| by.contains(&l.name.as_str()))
                .map(|l| (l.name.as_str(), l.value.as_str())),
        );
        let g = match groups.iter().position(|x| *x == group) {
            Some(g) => g,
            None => {
                groups.push(group.clone());
                groups.push(group);
                groups.len() - 2
            }
        };
        // Identities in no particular order, and one group's index or its twin's.
        let id = (i as u128).wrapping_mul(0x9e37_79b9_7f4a_7c15_f39c_c060_5ced_c834);
        let group = (g + i % 2) as u32;
        let (a, b) = s.samples.split_at(s.samples.len() / 3);
        for samples in [a, b] {
            series.push(CollapsedSeries::new(
                id,
                group,
                samples.iter().copied().collect(),
            ));
        }
    }
    input
}

#[test]
fn collapsed_series_give_the_answer_of_the_label_sets_they_stand_for() {
    let groupings = [
        ("by (app)", &["app"][..]),
        ("by (Zone, app)", &["Zone", "app"][..]),
        ("", &[][..]),
        ("without (id)", &["app", "zone", "Zone"][..]),
        ("by (__parquetry_series__)", &[][..]),
    ];
    for (grouping, by) in groupings {
        for mixed in [false, true] {
            let input = collapsed_noisy(by, mixed);
            let labelled = input.clone().into_series();
            for op in ["sum", "avg", "max", "stddev"] {
                for inner in [
                    r#"avg_over_time({zone="z"} | unwrap v [30s])"#,
                    r#"rate({zone="z"}[20s] offset 5s)"#,
                ] {
                    // The outer sum adds the groups up in the order the walk met them.
                    for query in [
                        format!("{op} {grouping} ({inner})"),
                        format!("sum({op} {grouping} ({inner}))"),
                        inner.to_string(),
                    ] {
                        let params = range_params(0, 300, 15);
                        let a = evaluate(&q(&query), &params, vec![input.clone()]);
                        let b = evaluate(&q(&query), &params, vec![labelled.clone()]);
                        let (Ok(Value::Matrix(a)), Ok(Value::Matrix(b))) = (a, b) else {
                            panic!("{query}: not two matrices");
                        };
                        assert!(!a.is_empty(), "{query}");
                        assert_eq!(bits(&a), bits(&b), "{query}, mixed: {mixed}");
                    }
                }
            }
        }
    }
    // A group carrying a pipeline error fails the query, naming the set the series stands for.
    let mut input = collapsed_noisy(&["app"], false);
    input.collapsed.groups[0].set("__error__", "LogfmtParserErr");
    let query = q(r#"sum by (app) (count_over_time({zone="z"}[10s]))"#);
    let err = evaluate(&query, &range_params(0, 300, 15), vec![input]).unwrap_err();
    let EvalError::PipelineError { labels, .. } = err else {
        panic!("{err:?}");
    };
    assert!(labels.get(crate::IDENTITY_LABEL).is_some(), "{labels}");
    // A group index out of range is the caller's bug, reported rather than a panic.
    let mut input = collapsed_noisy(&["app"], false);
    input.collapsed.series[3].group = 99;
    assert!(matches!(
        evaluate(&query, &range_params(0, 300, 15), vec![input]),
        Err(EvalError::UnknownGroup { group: 99, .. })
    ));
}

#[test]
fn topk_bottomk_sort_keep_value_order_when_outermost() {
    let x = r#"last_over_time({app=~".+"} | unwrap x [1m])"#;
    let top = agg(&format!("topk(2, {x})"));
    assert_eq!(
        top,
        lv(&[
            (r#"{app="b", pod="3"}"#, 8.0),
            (r#"{app="a", pod="2"}"#, 3.0)
        ])
    );
    // bottomk keeps the lowest, listed highest first as Loki lists them.
    let bottom = agg(&format!("bottomk(2, {x})"));
    assert_eq!(
        bottom,
        lv(&[
            (r#"{app="a", pod="2"}"#, 3.0),
            (r#"{app="a", pod="1"}"#, 1.0)
        ])
    );
    let per_app = agg(&format!("topk by (app) (1, {x})"));
    assert_eq!(
        per_app,
        lv(&[
            (r#"{app="a", pod="2"}"#, 3.0),
            (r#"{app="b", pod="3"}"#, 8.0)
        ])
    );
    let sorted = agg(&format!("sort({x})"));
    assert_eq!(
        sorted.iter().map(|s| s.1).take(3).collect::<Vec<_>>(),
        vec![1.0, 3.0, 8.0]
    );
    assert!(sorted[3].1.is_nan(), "NaN last: {sorted:?}");
    let desc = agg(&format!("sort_desc({x})"));
    assert_eq!(
        desc.iter().map(|s| s.1).take(3).collect::<Vec<_>>(),
        vec![8.0, 3.0, 1.0]
    );
    assert!(desc[3].1.is_nan());
    // Not outermost: the result is sorted by labels again.
    let wrapped = agg(&format!("topk(2, {x}) * 1"));
    assert_eq!(
        wrapped,
        lv(&[
            (r#"{app="a", pod="2"}"#, 3.0),
            (r#"{app="b", pod="3"}"#, 8.0)
        ])
    );
}

#[test]
fn instant_vectors_are_sorted_by_labels() {
    let v = agg(r#"last_over_time({app=~".+"} | unwrap x [1m]) > 0"#);
    assert_eq!(
        v.iter().map(|s| s.0.as_str()).collect::<Vec<_>>(),
        vec![
            r#"{app="a", pod="1"}"#,
            r#"{app="a", pod="2"}"#,
            r#"{app="b", pod="3"}"#
        ]
    );
}

// ---- binary operators --------------------------------------------------------------------

#[test]
fn scalar_vector_arithmetic_and_comparisons_in_both_orders() {
    let x = r#"last_over_time({app=~".+"} | unwrap x [1m])"#;
    let vals = |q: String| agg(&q).into_iter().map(|s| s.1).collect::<Vec<_>>();
    assert_eq!(vals(format!("{x} - 1"))[..3], [0.0, 2.0, 7.0]);
    assert_eq!(vals(format!("10 - {x}"))[..3], [9.0, 7.0, 2.0]);
    assert_eq!(vals(format!("2 ^ {x}"))[..3], [2.0, 8.0, 256.0]);
    assert!(vals(format!("{x} / 0"))[..3].iter().all(|v| v.is_nan()));
    assert!(vals(format!("{x} % 0"))[0].is_nan());
    assert_eq!(vals(format!("{x} > 2")), vec![3.0, 8.0]);
    // The vector side's value is kept whichever side the literal is on.
    assert_eq!(vals(format!("2 < {x}")), vec![3.0, 8.0]);
    assert_eq!(vals(format!("{x} > bool 2")), vec![0.0, 1.0, 1.0, 0.0]);
    assert_eq!(vals(format!("2 >= bool {x}")), vec![1.0, 0.0, 0.0, 0.0]);
}

fn bin(
    query: &str,
    lhs: Vec<SampleSeries>,
    rhs: Vec<SampleSeries>,
) -> Result<Vec<(String, f64)>, EvalError> {
    instant(query, 0, vec![lhs, rhs]).map(|v| flat(&v))
}

const L: &str = r#"last_over_time({side="l"} | unwrap x [1m])"#;
const R: &str = r#"last_over_time({side="r"} | unwrap x [1m])"#;

fn s1(pairs: &[(&str, &str)], v: f64) -> SampleSeries {
    ser(pairs, &[(-1, v)])
}

#[test]
fn one_to_one_matching_on_all_labels_on_and_ignoring() {
    let lhs = vec![
        s1(&[("a", "1"), ("b", "x")], 10.0),
        s1(&[("a", "2"), ("b", "x")], 20.0),
    ];
    let rhs = vec![
        s1(&[("a", "1"), ("b", "x")], 2.0),
        s1(&[("a", "3"), ("b", "y")], 5.0),
    ];
    assert_eq!(
        bin(&format!("{L} / {R}"), lhs.clone(), rhs.clone()).unwrap(),
        lv(&[(r#"{a="1", b="x"}"#, 5.0)])
    );
    let rhs_on = vec![
        s1(&[("a", "1"), ("c", "z")], 2.0),
        s1(&[("a", "2"), ("c", "z")], 4.0),
    ];
    assert_eq!(
        bin(&format!("{L} * on (a) {R}"), lhs.clone(), rhs_on.clone()).unwrap(),
        lv(&[(r#"{a="1"}"#, 20.0), (r#"{a="2"}"#, 80.0)])
    );
    let rhs_ign = vec![s1(&[("a", "1"), ("b", "other")], 1.0)];
    assert_eq!(
        bin(&format!("{L} - ignoring (b) {R}"), lhs.clone(), rhs_ign).unwrap(),
        lv(&[(r#"{a="1"}"#, 9.0)])
    );
    // Comparison filters and keeps the left value; with bool it keeps everything matched.
    assert_eq!(
        bin(
            &format!("{L} > on (a) {R}"),
            lhs.clone(),
            vec![s1(&[("a", "1")], 50.0), s1(&[("a", "2")], 1.0)]
        )
        .unwrap(),
        lv(&[(r#"{a="2"}"#, 20.0)])
    );
    assert_eq!(
        bin(
            &format!("{L} > bool on (a) {R}"),
            lhs,
            vec![s1(&[("a", "1")], 50.0), s1(&[("a", "2")], 1.0)]
        )
        .unwrap(),
        lv(&[(r#"{a="1"}"#, 0.0), (r#"{a="2"}"#, 1.0)])
    );
}

#[test]
fn group_left_and_group_right_copy_extra_labels() {
    let many = vec![
        s1(&[("app", "a"), ("pod", "1")], 10.0),
        s1(&[("app", "a"), ("pod", "2")], 30.0),
    ];
    let one = vec![s1(&[("app", "a"), ("team", "t1")], 2.0)];
    assert_eq!(
        bin(
            &format!("{L} / on (app) group_left (team) {R}"),
            many.clone(),
            one.clone()
        )
        .unwrap(),
        lv(&[
            (r#"{app="a", pod="1", team="t1"}"#, 5.0),
            (r#"{app="a", pod="2", team="t1"}"#, 15.0)
        ])
    );
    // group_right: the many side is the right one; the operand order is kept.
    assert_eq!(
        bin(&format!("{L} - on (app) group_right {R}"), one, many).unwrap(),
        lv(&[
            (r#"{app="a", pod="1"}"#, -8.0),
            (r#"{app="a", pod="2"}"#, -28.0)
        ])
    );
}

#[test]
fn matching_errors() {
    let two = vec![
        s1(&[("app", "a"), ("pod", "1")], 1.0),
        s1(&[("app", "a"), ("pod", "2")], 2.0),
    ];
    let single = vec![s1(&[("app", "a")], 1.0)];
    let err = bin(&format!("{L} + on (app) {R}"), single.clone(), two.clone()).unwrap_err();
    assert_eq!(
        err.to_string(),
        "found duplicate series on the right hand-side;many-to-many matching not allowed: matching labels must be unique on one side"
    );
    let err = bin(
        &format!("{L} + on (app) group_right {R}"),
        two.clone(),
        single.clone(),
    )
    .unwrap_err();
    assert_eq!(err, EvalError::DuplicateSeries { side: "left" });
    let err = bin(&format!("{L} + on (app) {R}"), two.clone(), single.clone()).unwrap_err();
    assert_eq!(
        err.to_string(),
        "multiple matches for labels: many-to-one matching must be explicit (group_left/group_right)"
    );
    // ignoring(pod) leaves {app="a"} on both sides: many-to-one, explicit, fine.
    let ok = bin(&format!("{L} + ignoring (pod) group_left {R}"), two, single);
    assert_eq!(ok.map(|v| v.len()), Ok(2));
}

#[test]
fn group_left_rejects_duplicate_results() {
    let many = vec![
        s1(&[("app", "a"), ("pod", "1")], 1.0),
        s1(&[("app", "a"), ("pod", "2")], 2.0),
    ];
    let one = vec![s1(&[("app", "a")], 1.0)];
    // label_replace rewrites pod to one value, so both results get the same labels.
    let query =
        format!(r#"label_replace({L}, "pod", "same", "pod", ".*") + on (app) group_left {R}"#);
    assert_eq!(
        bin(&query, many, one).unwrap_err(),
        EvalError::GroupingNotUnique
    );
}

#[test]
fn set_operators() {
    let lhs = vec![s1(&[("a", "1")], 1.0), s1(&[("a", "2")], 2.0)];
    let rhs = vec![s1(&[("a", "2")], 20.0), s1(&[("a", "3")], 30.0)];
    assert_eq!(
        bin(&format!("{L} and {R}"), lhs.clone(), rhs.clone()).unwrap(),
        lv(&[(r#"{a="2"}"#, 2.0)])
    );
    assert_eq!(
        bin(&format!("{L} or {R}"), lhs.clone(), rhs.clone()).unwrap(),
        lv(&[
            (r#"{a="1"}"#, 1.0),
            (r#"{a="2"}"#, 2.0),
            (r#"{a="3"}"#, 30.0)
        ])
    );
    assert_eq!(
        bin(&format!("{L} unless {R}"), lhs.clone(), rhs.clone()).unwrap(),
        lv(&[(r#"{a="1"}"#, 1.0)])
    );
    assert_eq!(
        bin(&format!("{L} and on () {R}"), lhs.clone(), rhs.clone())
            .unwrap()
            .len(),
        2
    );
    assert_eq!(
        bin(&format!("{L} unless on () {R}"), lhs.clone(), rhs)
            .unwrap()
            .len(),
        0
    );
    assert_eq!(
        bin(&format!("{L} or {R}"), vec![], lhs.clone())
            .unwrap()
            .len(),
        2
    );
    assert_eq!(bin(&format!("{L} and {R}"), lhs, vec![]).unwrap().len(), 0);
}

#[test]
fn vector_literal_matches_only_label_less_series() {
    let x = vec![s1(&[("a", "1")], 5.0)];
    let v = instant(&format!("{L} + vector(1)"), 0, vec![x.clone()]).unwrap();
    assert!(v.is_empty());
    let v = instant(&format!("sum({L}) + vector(1)"), 0, vec![x]).unwrap();
    assert_eq!(flat(&v), lv(&[("{}", 6.0)]));
}

// ---- literals, vector(), label_replace -----------------------------------------------------

#[test]
fn literals_and_vector() {
    let v = evaluate(&q("1 + 2"), &instant_params(0), Vec::<RangeInput>::new()).unwrap();
    assert_eq!(v, Value::Scalar { t: T0, v: 3.0 });
    let m = range("2 * 3", (0, 10, 5), vec![]).unwrap();
    assert_eq!(m.len(), 1);
    assert!(m[0].labels.is_empty());
    assert_eq!(pts(&m[0]), vec![(0, 6.0), (5, 6.0), (10, 6.0)]);
    let v = instant("vector(4)", 0, vec![]).unwrap();
    assert_eq!(flat(&v), lv(&[("{}", 4.0)]));
    let m = range("vector(4)", (0, 10, 5), vec![]).unwrap();
    assert_eq!(pts(&m[0]).len(), 3);
}

#[test]
fn label_replace_sets_and_removes_labels() {
    let x = vec![s1(&[("app", "api-7"), ("pod", "p")], 1.0)];
    let query = format!(r#"label_replace({L}, "svc", "$1-$2", "app", "(.*)-(\\d+)")"#);
    let v = instant(&query, 0, vec![x.clone()]).unwrap();
    assert_eq!(
        v[0].labels,
        ls(&[("app", "api-7"), ("pod", "p"), ("svc", "api-7")])
    );
    let named = format!(r#"label_replace({L}, "svc", "${{name}}", "app", "(?P<name>[a-z]+)-.*")"#);
    assert_eq!(
        instant(&named, 0, vec![x.clone()]).unwrap()[0]
            .labels
            .get("svc"),
        Some("api")
    );
    // The regex is anchored: a partial match is no match.
    let partial = format!(r#"label_replace({L}, "svc", "x", "app", "api")"#);
    assert_eq!(
        instant(&partial, 0, vec![x.clone()]).unwrap()[0]
            .labels
            .get("svc"),
        None
    );
    // An empty replacement removes the destination.
    let remove = format!(r#"label_replace({L}, "pod", "", "app", ".*")"#);
    assert_eq!(
        instant(&remove, 0, vec![x.clone()]).unwrap()[0].labels,
        ls(&[("app", "api-7")])
    );
    // A missing source label is the empty string.
    let missing = format!(r#"label_replace({L}, "env", "none", "nope", "")"#);
    assert_eq!(
        instant(&missing, 0, vec![x]).unwrap()[0].labels.get("env"),
        Some("none")
    );
}

// ---- result shape and limits -------------------------------------------------------------

#[test]
fn matrix_series_are_sorted_by_labels() {
    let input = vec![
        ones(&[("app", "b")], &[1]),
        ones(&[("app", "a"), ("z", "1")], &[1]),
        ones(&[("app", "a")], &[6]),
    ];
    let m = range(
        r#"count_over_time({app=~".+"}[5s])"#,
        (0, 10, 5),
        vec![input],
    )
    .unwrap();
    let names: Vec<String> = m.iter().map(|s| s.labels.to_string()).collect();
    assert_eq!(
        names,
        vec![r#"{app="a"}"#, r#"{app="a", z="1"}"#, r#"{app="b"}"#]
    );
}

#[test]
fn series_limit_counts_distinct_series_across_steps() {
    let input = vec![
        ones(&[("pod", "1")], &[1]),
        ones(&[("pod", "2")], &[6]),
        ones(&[("pod", "3")], &[11]),
    ];
    let mut p = range_params(0, 15, 5);
    p.max_series = 2;
    let err = evaluate(
        &q(r#"count_over_time({app="a"}[5s])"#),
        &p,
        vec![input.clone()],
    )
    .unwrap_err();
    assert_eq!(err, EvalError::TooManySeries { limit: 2 });
    assert!(
        err.to_string()
            .starts_with("maximum number of series (2) reached for a single query")
    );
    p.max_series = 3;
    assert!(
        evaluate(
            &q(r#"count_over_time({app="a"}[5s])"#),
            &p,
            vec![input.clone()]
        )
        .is_ok()
    );
    let mut i = instant_params(20);
    i.max_series = 2;
    let wide = evaluate(
        &q(r#"count_over_time({app="a"}[1m])"#),
        &i,
        vec![input.clone()],
    );
    assert_eq!(wide.unwrap_err(), EvalError::TooManySeries { limit: 2 });
    // Aggregating below the limit is fine.
    assert!(
        evaluate(
            &q(r#"sum(count_over_time({app="a"}[1m]))"#),
            &i,
            vec![input]
        )
        .is_ok()
    );
}

#[test]
fn steps_and_points() {
    assert_eq!(default_step(0, 3600 * S), 14 * S);
    assert_eq!(default_step(0, 249 * S), S);
    assert_eq!(default_step(0, 500 * S), 2 * S);
    assert_eq!(default_step(10 * S, 0), S);
    assert!(check_points(0, 11_000 * S, S).is_ok());
    assert!(check_points(0, 11_001 * S - 1, S).is_ok());
    assert_eq!(
        check_points(0, 11_001 * S, S),
        Err(EvalError::TooManyPoints)
    );
    assert_eq!(check_points(0, S, 0), Err(EvalError::NonPositiveStep));
    assert_eq!(
        EvalError::TooManyPoints.to_string(),
        "exceeded maximum resolution of 11,000 points per timeseries. Try decreasing the query resolution (?step=XX)"
    );
    let err = evaluate(
        &q(r#"count_over_time({app="a"}[1m])"#),
        &range_params(0, 20_000, 1),
        vec![vec![]],
    );
    assert_eq!(err.unwrap_err(), EvalError::TooManyPoints);
}

#[test]
fn input_count_must_match_range_aggregations() {
    let err = evaluate(
        &q(r#"count_over_time({app="a"}[1m]) / count_over_time({app="b"}[1m])"#),
        &instant_params(0),
        vec![vec![]],
    );
    assert_eq!(
        err.unwrap_err(),
        EvalError::InputMismatch {
            expected: 2,
            got: 1
        }
    );
}

#[test]
fn inputs_are_taken_in_source_order() {
    let a = vec![ones(&[("app", "a")], &[-1, -2])];
    let b = vec![ones(&[("app", "a")], &[-1])];
    let v = instant(
        r#"count_over_time({app="a"}[1m]) - count_over_time({app="b"}[1m])"#,
        0,
        vec![a, b],
    );
    assert_eq!(flat(&v.unwrap()), lv(&[(r#"{app="a"}"#, 1.0)]));
}

/// Throughput check for the engine-sized case: `cargo test --release -p parquetry-eval --
/// --ignored ten_million`.
#[test]
#[ignore]
fn ten_million_samples() {
    let series: Vec<SampleSeries> = (0..1000)
        .map(|i| SampleSeries {
            labels: ls(&[
                ("app", if i % 2 == 0 { "a" } else { "b" }),
                ("pod", &i.to_string()),
            ]),
            samples: (0..10_000i64)
                .map(|j| (T0 - 6 * 3600 * S + j * 2_160_000_000 + i, (j % 17) as f64))
                .collect(),
        })
        .collect();
    for query in [
        r#"sum by (app) (rate({app=~".+"}[5m]))"#,
        r#"sum by (app) (sum_over_time({app=~".+"} | unwrap x [5m]))"#,
        r#"max by (app) (avg_over_time({app=~".+"} | unwrap x [5m]))"#,
        r#"topk(5, count_over_time({app=~".+"}[1m]))"#,
    ] {
        let started = std::time::Instant::now();
        let m = range(query, (-6 * 3600, 0, 60), vec![series.clone()]).unwrap();
        eprintln!("{query}: {} series in {:?}", m.len(), started.elapsed());
        assert!(!m.is_empty());
    }
}

/// Series of one sample each, collapsed onto `app`; with `fold`, half of them folded into
/// the cells of the aggregation above (as two scan partitions fold them, then appended)
/// instead of kept.
fn single_sample_series(query: &SampleExpr, params: &EvalParams, fold: bool) -> RangeInput {
    let (SampleExpr::VectorAggregation(va), Some(ra)) =
        (query, query.range_aggregations().first().copied())
    else {
        panic!("an aggregation over a range aggregation");
    };
    let groups = vec![
        Labels::from_pairs([("app", "a")]),
        Labels::from_pairs([("app", "b")]),
    ];
    let mut input = RangeInput::default();
    input.collapsed.groups = groups.clone();
    // The second partition lists its groups the other way round.
    let mut other = RangeInput::default();
    other.collapsed.groups = groups.into_iter().rev().collect();
    let points = crate::SinglePoints::new(ra, params).unwrap();
    let mut direct = [
        crate::Direct::new(va.op, params).unwrap(),
        crate::Direct::new(va.op, params).unwrap(),
    ];
    let mut out = Vec::new();
    let mut x = 0x2545_f491_4f6c_dd1du64;
    for i in 0..400u32 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        // Some on a window's edge, to the nanosecond.
        let nanos = if i % 5 == 0 { 0 } else { (x % 997) as i64 };
        let t = T0 + (x % 300) as i64 * S + nanos;
        // Values with fractions of every size, so sums in another order would differ.
        let v = (x % 100_000) as f64 / 7.0 * if i % 3 == 0 { 1e-3 } else { 1.0 };
        let group = i % 2;
        if fold && i % 4 >= 2 {
            let part = (i % 8 >= 4) as usize;
            let group = if part == 1 { 1 - group } else { group };
            // Both ways of adding a series' points.
            match points.span(t, v).filter(|_| i % 3 != 0) {
                Some((steps, v)) => direct[part].add_span(group, steps, v),
                None => {
                    points.points(t, v, &mut out);
                    direct[part].add(group, &out)
                }
            };
        } else {
            let id = u128::from(x) << 64 | u128::from(i);
            let series = CollapsedSeries::new(id, group, [(t, v)].into_iter().collect());
            input.collapsed.series.push(series);
        }
    }
    if fold {
        let [mine, theirs] = direct;
        input.collapsed.direct = Some(mine);
        other.collapsed.direct = Some(theirs);
        input.append(other);
    }
    input
}

#[test]
fn folded_series_answer_as_kept_ones_do() {
    let params = range_params(0, 300, 15);
    for op in ["sum", "avg", "count", "min", "max"] {
        for inner in [
            r#"avg_over_time({zone="z"} | unwrap v [30s])"#,
            r#"max_over_time({zone="z"} | unwrap v [20s] offset 5s)"#,
            r#"sum_over_time({zone="z"} | unwrap v [45s])"#,
            r#"rate({zone="z"}[20s])"#,
        ] {
            let query = q(&format!("{op} by (app) ({inner})"));
            let kept = single_sample_series(&query, &params, false);
            let folded = single_sample_series(&query, &params, true);
            assert!(
                folded
                    .collapsed
                    .direct
                    .as_ref()
                    .is_some_and(|d| !d.is_empty())
            );
            let a = evaluate(&query, &params, vec![kept]);
            let b = evaluate(&query, &params, vec![folded.clone()]);
            let (Ok(Value::Matrix(a)), Ok(Value::Matrix(b))) = (a, b) else {
                panic!("{op} {inner}: not two matrices");
            };
            assert_eq!(a.len(), 2, "{op} {inner}");
            assert_eq!(bits(&a), bits(&b), "{op} {inner}");
            // Only the aggregation they were folded for takes them.
            let other = if op == "sum" { "max" } else { "sum" };
            let wrong = q(&format!("{other} by (app) ({inner})"));
            assert!(matches!(
                evaluate(&wrong, &params, vec![folded.clone()]),
                Err(EvalError::UnfoldedDirect { .. })
            ));
            assert!(matches!(
                evaluate(&q(inner), &params, vec![folded]),
                Err(EvalError::UnfoldedDirect { .. })
            ));
        }
    }
}

#[test]
fn a_single_samples_span_lists_its_points() {
    let params = range_params(0, 300, 15);
    for inner in [
        "avg_over_time({a=\"b\"} | unwrap v [30s])",
        "max_over_time({a=\"b\"} | unwrap v [20s] offset 5s)",
        "min_over_time({a=\"b\"} | unwrap v [45s] offset -10s)",
        "sum_over_time({a=\"b\"} | unwrap v [15s])",
        "stddev_over_time({a=\"b\"} | unwrap v [1m])",
        "quantile_over_time(0.9, {a=\"b\"} | unwrap v [1m])",
        "quantile_over_time(1.5, {a=\"b\"} | unwrap v [1m])",
        "last_over_time({a=\"b\"} | unwrap v [1m])",
        "rate({a=\"b\"}[20s])",
        "bytes_rate({a=\"b\"}[7s])",
        "count_over_time({a=\"b\"}[1m])",
    ] {
        let query = q(inner);
        let ra = query.range_aggregations()[0];
        let points = crate::SinglePoints::new(ra, &params).unwrap();
        let mut out = Vec::new();
        for i in -100..400i64 {
            // Every offset from the grid, and the edges to the nanosecond.
            let t = T0 + i * S + [0, 1, -1, 500_000_000][(i % 4).unsigned_abs() as usize];
            let v = i as f64 * 1.25;
            points.points(t, v, &mut out);
            let (steps, value) = points.span(t, v).unwrap();
            let listed: Vec<(u32, f64)> = steps.map(|k| (k as u32, value)).collect();
            assert_eq!(listed, out, "{inner} at {t}");
        }
    }
    let counter = q("rate_counter({a=\"b\"} | unwrap v [1m])");
    let points = crate::SinglePoints::new(counter.range_aggregations()[0], &params).unwrap();
    assert!(points.span(T0, 1.0).is_none());
}
