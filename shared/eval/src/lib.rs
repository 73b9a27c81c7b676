//! LogQL metric evaluation over sample series: the evaluation grid, range windows, vector
//! aggregations, binary operators and `label_replace`, with Loki's semantics.
//!
//! The query engine scans storage and runs each range aggregation's log pipeline; what it hands
//! this crate is, per range aggregation (in [`SampleExpr::range_aggregations`] order), the
//! extracted sample series: full post-pipeline labels and `(timestamp ns, value)` pairs sorted
//! by time. [`evaluate`] turns those into Loki's result value. No I/O happens here, so every
//! rule of metric evaluation can be tested with hand-written samples.
//!
//! How it works, and why:
//! - **Range aggregations** are computed per series over the whole grid in one forward pass
//!   (two pointers per series), so the cost is O(samples + steps), not O(samples × steps).
//!   See `range.rs`.
//! - **Everything above them** (vector aggregations, binary operators, `label_replace`) runs
//!   step by step over `(series id, value)` vectors, like Loki's step evaluators, so errors
//!   such as many-to-many matching surface exactly when Loki's would. Label sets are interned
//!   once; per-series results of grouping and matching are cached, so the per-step work is
//!   hashing small integers.
//! - **An aggregation right above a range aggregation** (`sum`, `avg`, `min`, `max`, `count`,
//!   `stddev`, `stdvar`) is computed while the range aggregation walks its series, in the
//!   same order, so values are bit for bit the step-by-step ones while the inner series (one
//!   per line in a parser query with unique ids) are never interned. See `vector.rs`.
//! - **Limits** follow Loki: [`check_points`] (11,000 points), and `max_series` counted over
//!   distinct output series as steps are evaluated.
//!
//! Every [`EvalError`] is a client error: the API answers it with HTTP 400 and its text.
//!
//! ```
//! use parquetry_eval::{EvalParams, SampleSeries, Value, evaluate};
//! use parquetry_logql::{Expr, parse_expr};
//! use parquetry_model::Labels;
//!
//! let Ok(Expr::Sample(expr)) = parse_expr(r#"sum(count_over_time({app="a"}[1m]))"#) else {
//!     panic!("a metric query");
//! };
//! let s = 1_000_000_000i64; // one second in ns
//! let t0 = 1_700_000_000 * s;
//! let series = SampleSeries {
//!     labels: Labels::from_pairs([("app", "a"), ("pod", "p1")]),
//!     samples: vec![(t0 - 30 * s, 1.0), (t0 - 10 * s, 1.0)],
//! };
//! let params = EvalParams { start: t0, end: t0, step: s, instant: true, max_series: 500 };
//! let Value::Vector(v) = evaluate(&expr, &params, vec![vec![series]]).unwrap() else {
//!     panic!("instant queries give vectors");
//! };
//! assert_eq!((v.len(), v[0].v), (1, 2.0));
//! ```
// Non-test code never panics on a `Result` or `Option`: errors are typed and returned.
#![cfg_attr(not(test), warn(clippy::unwrap_used, clippy::expect_used))]

mod binop;
mod error;
mod exact;
mod intern;
mod node;
mod range;
mod vector;

#[cfg(test)]
mod tests;

use parquetry_logql::{SampleExpr, VectorOp};
use parquetry_model::Labels;

pub use error::EvalError;
pub use exact::ExactSum;
pub use range::{SinglePoints, StepCells};
pub use vector::{Direct, DirectCell};

use intern::Interner;
use range::Grid;

/// Hash maps of the evaluator: keyed by label sets and ids, one lookup per series and step.
/// foldhash (randomly seeded per process) instead of SipHash: interning 1.6 M per-line label
/// sets spent most of its time hashing.
pub(crate) type FastMap<K, V> = std::collections::HashMap<K, V, foldhash::quality::RandomState>;

/// Loki's cap on points per series: `(end - start) / step` may not exceed it.
pub const MAX_POINTS: i64 = 11_000;

const SECOND: i64 = 1_000_000_000;

/// The samples one series contributes to one range aggregation.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct SampleSeries {
    /// The full post-pipeline label set (stream labels, structured metadata, parsed labels;
    /// the unwrapped label already removed).
    pub labels: Labels,
    /// `(timestamp ns, value)` in any order: scans hand them over as they read them, and
    /// evaluation sorts each series by timestamp (stably, so samples at the same time keep
    /// their order; free when already sorted). The value is the number of lines a sample
    /// stands for in `count_over_time`/`rate`/`absent_over_time` without unwrap (1 per line,
    /// or a cell's count, see [`StepCells`]), the lines' byte length for `bytes_*`, the
    /// unwrapped value otherwise. Only samples in `[start - range - offset, end - offset]`
    /// matter.
    pub samples: Vec<(i64, f64)>,
}

/// The label a collapsed series stands for besides its group's: its identity as 32 lowercase
/// hex digits. No `by` list that lets the scan collapse series names it.
pub const IDENTITY_LABEL: &str = "__parquetry_series__";

/// The sample series of one range aggregation: series with label sets of their own, and
/// series collapsed onto a group.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct RangeInput {
    /// Series with their whole label sets.
    pub series: Vec<SampleSeries>,
    /// Series kept as a group and an identity.
    pub collapsed: Collapsed,
}

impl From<Vec<SampleSeries>> for RangeInput {
    fn from(series: Vec<SampleSeries>) -> Self {
        RangeInput {
            series,
            collapsed: Collapsed::default(),
        }
    }
}

impl RangeInput {
    /// Every series with a label set of its own (collapsed ones as [`Collapsed::labels`]
    /// names them): what a transport that knows only label sets carries. Evaluating the
    /// result gives the same answer, to the last bit. Series folded into
    /// [`Collapsed::direct`] are no longer series: an input with them is not for transports.
    pub fn into_series(self) -> Vec<SampleSeries> {
        let mut series = self.series;
        let Collapsed {
            groups, series: c, ..
        } = self.collapsed;
        series.extend(c.into_iter().map(|s| SampleSeries {
            labels: collapsed_labels(groups.get(s.group as usize), s.id),
            samples: s.samples.into_vec(),
        }));
        series
    }

    /// `other`'s series after these, its collapsed series moved into the groups here with
    /// the same labels: what two scans of one range aggregation found together (equal series
    /// are merged by evaluation, in this order).
    pub fn append(&mut self, other: RangeInput) {
        self.series.extend(other.series);
        self.collapsed.append(other.collapsed);
    }

    /// Number of series, collapsed ones included.
    pub fn len(&self) -> usize {
        self.series.len() + self.collapsed.series.len()
    }

    /// No series at all.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Series that the aggregation right above the range aggregation tells apart only by some of
/// their labels (a parser query with a unique id per line has one series per line, all
/// reduced to a few groups): each is held as the index of its group's label set and a 128-bit
/// identity of its whole label set instead of the set. A collapsed series stands for the
/// label set `groups[group]` plus [`IDENTITY_LABEL`]`="<id, 32 hex digits>"`; evaluation
/// orders and merges it as that set, so the answer is the one those sets give, while a series
/// costs tens of bytes instead of a label set's strings.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Collapsed {
    /// The groups' label sets ([`IDENTITY_LABEL`] never among them).
    pub groups: Vec<Labels>,
    /// The series, in any order; two with one group and identity are one series.
    pub series: Vec<CollapsedSeries>,
    /// Series of these groups the scan folded into the aggregation above instead of keeping
    /// them (see [`Direct`]); only a `sum`, `avg`, `count`, `min` or `max` right above the
    /// range aggregation takes them.
    pub direct: Option<Direct>,
}

impl Collapsed {
    /// `other`'s series after these, each in the group here with its group's labels (added
    /// if new). A series naming a group `other` does not list keeps naming none, which
    /// [`evaluate`] reports.
    pub fn append(&mut self, other: Collapsed) {
        let mut index: std::collections::HashMap<Labels, u32> = self
            .groups
            .iter()
            .enumerate()
            .map(|(i, g)| (g.clone(), i as u32))
            .collect();
        let mapped: Vec<u32> = other
            .groups
            .into_iter()
            .map(|g| match index.get(&g) {
                Some(&i) => i,
                None => {
                    let i = self.groups.len() as u32;
                    index.insert(g.clone(), i);
                    self.groups.push(g);
                    i
                }
            })
            .collect();
        if let Some(d) = other.direct {
            self.direct
                .get_or_insert_with(|| d.like())
                .append(d, &mapped);
        }
        self.series.reserve(other.series.len());
        self.series.extend(other.series.into_iter().map(|mut s| {
            s.group = mapped.get(s.group as usize).copied().unwrap_or(u32::MAX);
            s
        }));
    }
}

/// One collapsed series (see [`Collapsed`]).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct CollapsedSeries {
    /// 128 bits of the series' whole label set.
    pub id: u128,
    /// Index into [`Collapsed::groups`].
    pub group: u32,
    /// The series' place in evaluation's input, set just before evaluation sorts them: the
    /// sort is unstable (a stable one over a series per line took twice as long) and this
    /// breaks its ties as a stable sort would. It fills the struct's padding.
    pub(crate) seq: u32,
    /// As [`SampleSeries::samples`].
    pub samples: CollapsedSamples,
}

// A series per line: the tie-break must stay in the padding.
const _: () = assert!(size_of::<CollapsedSeries>() == 48);

impl CollapsedSeries {
    /// The series `id` of group `group`.
    pub fn new(id: u128, group: u32, samples: CollapsedSamples) -> Self {
        CollapsedSeries {
            id,
            group,
            seq: 0,
            samples,
        }
    }
}

/// The samples of a collapsed series, the first of them held in place: a parser query with a
/// unique id per line makes a series per line, each with one sample, and an allocation of its
/// own per series cost an allocation and a free per line and, when evaluation visits series
/// in identity order, a cache miss per series.
pub type CollapsedSamples = smallvec::SmallVec<[(i64, f64); 1]>;

/// The label set a collapsed series stands for.
pub fn collapsed_labels(group: Option<&Labels>, id: u128) -> Labels {
    let mut labels = group.cloned().unwrap_or_default();
    let hex = hex_id(id);
    labels.set(
        IDENTITY_LABEL,
        std::str::from_utf8(&hex).unwrap_or_default(),
    );
    labels
}

/// An identity as 32 lowercase hex digits: fixed width, so their byte order is the
/// identities' order.
pub(crate) fn hex_id(id: u128) -> [u8; 32] {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = [0u8; 32];
    for (i, b) in out.iter_mut().enumerate() {
        *b = DIGITS[((id >> (124 - 4 * i)) & 0xf) as usize];
    }
    out
}

/// When and how to evaluate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EvalParams {
    /// First evaluation time, ns.
    pub start: i64,
    /// Last evaluation time (inclusive), ns. Equal to `start` for instant queries.
    pub end: i64,
    /// Step between evaluation times, ns, > 0 for range queries (ignored for instant ones).
    pub step: i64,
    /// An instant query: one evaluation at `start`, returning a vector (or scalar).
    pub instant: bool,
    /// Loki's `max_query_series`; 0 means unlimited.
    pub max_series: usize,
}

/// One element of an instant vector.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// The series' labels.
    pub labels: Labels,
    /// Evaluation time, ns.
    pub t: i64,
    /// The value.
    pub v: f64,
}

/// One series of a range query result.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    /// The series' labels.
    pub labels: Labels,
    /// `(evaluation time ns, value)`, ascending; steps without a value are absent.
    pub points: Vec<(i64, f64)>,
}

/// A metric query result.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// An instant query over a bare literal.
    Scalar {
        /// Evaluation time, ns.
        t: i64,
        /// The value.
        v: f64,
    },
    /// An instant query: sorted by labels, or in value order when the outermost operation is
    /// `sort`, `sort_desc`, `topk` or `bottomk`.
    Vector(Vec<Sample>),
    /// A range query: series sorted by labels.
    Matrix(Vec<Series>),
}

/// Loki's default step for a range query without `step`: `max(floor((end - start) / 250 s),
/// 1 s)`, in whole seconds, returned in ns.
///
/// ```
/// let s = 1_000_000_000;
/// assert_eq!(parquetry_eval::default_step(0, 3600 * s), 14 * s);
/// assert_eq!(parquetry_eval::default_step(0, 60 * s), s);
/// ```
pub fn default_step(start: i64, end: i64) -> i64 {
    let secs = end.saturating_sub(start).div_euclid(250 * SECOND);
    secs.max(1).saturating_mul(SECOND)
}

/// Rejects a range query grid that Loki would reject: a non-positive step, or more than
/// [`MAX_POINTS`] intervals (`(end - start) / step`, truncated, as Go divides durations).
///
/// ```
/// let s = 1_000_000_000;
/// assert!(parquetry_eval::check_points(0, 11_000 * s, s).is_ok());
/// assert!(parquetry_eval::check_points(0, 11_001 * s, s).is_err());
/// ```
pub fn check_points(start: i64, end: i64, step: i64) -> Result<(), EvalError> {
    if step <= 0 {
        return Err(EvalError::NonPositiveStep);
    }
    if end.saturating_sub(start) / step > MAX_POINTS {
        return Err(EvalError::TooManyPoints);
    }
    Ok(())
}

/// Evaluates a metric query.
///
/// `inputs[i]` holds the sample series of the `i`-th range aggregation in
/// [`SampleExpr::range_aggregations`] order. Range queries (`params.instant == false`) are
/// checked with [`check_points`] first. See the crate docs for an example.
pub fn evaluate<I: Into<RangeInput>>(
    expr: &SampleExpr,
    params: &EvalParams,
    inputs: Vec<I>,
) -> Result<Value, EvalError> {
    let expected = expr.range_aggregations().len();
    if inputs.len() != expected {
        return Err(EvalError::InputMismatch {
            expected,
            got: inputs.len(),
        });
    }
    let inputs: Vec<RangeInput> = inputs.into_iter().map(Into::into).collect();
    for c in inputs.iter().map(|i| &i.collapsed) {
        if let Some(s) = c.series.iter().find(|s| s.group as usize >= c.groups.len()) {
            return Err(EvalError::UnknownGroup {
                group: s.group,
                groups: c.groups.len(),
            });
        }
    }
    let grid = Grid::of(params)?;

    if let SampleExpr::Literal(v) = expr {
        // Loki answers a bare literal without touching the step evaluators: a scalar for an
        // instant query, one label-less series with a point at every step otherwise.
        return Ok(if params.instant {
            Value::Scalar {
                t: params.start,
                v: *v,
            }
        } else {
            Value::Matrix(vec![Series {
                labels: Labels::default(),
                points: (0..grid.steps).map(|k| (grid.t(k), *v)).collect(),
            }])
        });
    }

    let mut interner = Interner::default();
    let mut inputs = inputs.into_iter();
    let mut root = node::compile(expr, &mut inputs, &grid, &mut interner)?;
    let limit = match params.max_series {
        0 => usize::MAX,
        n => n,
    };

    if params.instant {
        let mut vec = root.eval(0, &mut interner)?;
        if vec.len() > limit {
            return Err(EvalError::TooManySeries { limit });
        }
        if !keeps_value_order(expr) {
            vec.sort_by(|a, b| interner.get(a.0).cmp(interner.get(b.0)));
        }
        return Ok(Value::Vector(
            vec.into_iter()
                .map(|(id, v)| Sample {
                    labels: interner.get(id).clone(),
                    t: params.start,
                    v,
                })
                .collect(),
        ));
    }

    const NONE: u32 = u32::MAX;
    let mut slot: Vec<u32> = Vec::new();
    let mut series: Vec<(intern::Id, Vec<(i64, f64)>)> = Vec::new();
    for k in 0..grid.steps {
        let t = grid.t(k);
        let vec = root.eval(k, &mut interner)?;
        if vec.len() > limit {
            return Err(EvalError::TooManySeries { limit });
        }
        for (id, v) in vec {
            let i = id as usize;
            if slot.len() <= i {
                slot.resize(interner.len().max(i + 1), NONE);
            }
            if slot[i] == NONE {
                slot[i] = series.len() as u32;
                series.push((id, Vec::new()));
            }
            let points = &mut series[slot[i] as usize].1;
            // Two samples with one label set in one step (possible after label_replace):
            // a series has one value per time, so the first wins.
            if points.last().is_none_or(|p| p.0 != t) {
                points.push((t, v));
            }
        }
        if series.len() > limit {
            return Err(EvalError::TooManySeries { limit });
        }
    }
    series.sort_by(|a, b| interner.get(a.0).cmp(interner.get(b.0)));
    Ok(Value::Matrix(
        series
            .into_iter()
            .map(|(id, points)| Series {
                labels: interner.get(id).clone(),
                points,
            })
            .collect(),
    ))
}

/// Instant vectors keep the value order produced by an outermost `sort`, `sort_desc`, `topk`
/// or `bottomk`; everything else is sorted by labels.
fn keeps_value_order(expr: &SampleExpr) -> bool {
    matches!(
        expr,
        SampleExpr::VectorAggregation(va) if matches!(
            va.op,
            VectorOp::Sort | VectorOp::SortDesc | VectorOp::Topk | VectorOp::Bottomk
                | VectorOp::ApproxTopk
        )
    )
}
