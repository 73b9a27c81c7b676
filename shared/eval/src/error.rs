//! Evaluation errors. Every variant is a client error: the API layer answers all of them with
//! HTTP 400 and the `Display` text as a `text/plain` body, as Loki does.

use parquetry_model::Labels;

/// Why a metric query could not be evaluated.
///
/// All variants map to **HTTP 400** (Loki's `bad_data` / client errors); none of them is an
/// internal failure. The `Display` texts are Loki's, byte for byte where Loki has one.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum EvalError {
    /// An output series of a range aggregation still carries `__error__` (Loki's
    /// `logqlmodel.PipelineError`, including its trailing newline).
    #[error(
        "pipeline error: '{err_type}' for series: '{labels}'.\n\
         Use a label filter to intentionally skip this error. (e.g | __error__!=\"{err_type}\").\n\
         To skip all potential errors you can match empty errors.(e.g __error__=\"\")\n\
         The label filter can also be specified after unwrap. (e.g | unwrap latency | __error__=\"\" )\n"
    )]
    PipelineError {
        /// The `__error__` value.
        err_type: String,
        /// The series carrying it.
        labels: Labels,
    },

    /// More distinct series than `max_query_series` (Loki's `NewSeriesLimitError`, current
    /// wording).
    #[error(
        "maximum number of series ({limit}) reached for a single query; consider reducing query \
         cardinality by adding more specific stream selectors, reducing the time range, or \
         aggregating results with functions like sum(), count() or topk()"
    )]
    TooManySeries {
        /// `max_query_series`.
        limit: usize,
    },

    /// `(end - start) / step > 11000`.
    #[error(
        "exceeded maximum resolution of 11,000 points per timeseries. Try decreasing the query resolution (?step=XX)"
    )]
    TooManyPoints,

    /// `step <= 0` for a range query.
    #[error(
        "zero or negative query resolution step widths are not accepted. Try a positive integer"
    )]
    NonPositiveStep,

    /// The "one" side of a vector match has two series with the same matching labels.
    #[error(
        "found duplicate series on the {side} hand-side;many-to-many matching not allowed: matching labels must be unique on one side"
    )]
    DuplicateSeries {
        /// `left` or `right`.
        side: &'static str,
    },

    /// One-to-one matching found several left series for one right series.
    #[error(
        "multiple matches for labels: many-to-one matching must be explicit (group_left/group_right)"
    )]
    ManyToOneNotExplicit,

    /// `group_left`/`group_right` produced two results with the same label set.
    #[error("multiple matches for labels: grouping labels must ensure unique matches")]
    GroupingNotUnique,

    /// The engine handed over a different number of input vectors than the query has range
    /// aggregations. A bug in the caller, but still reported rather than panicking.
    #[error("expected sample inputs for {expected} range aggregations, got {got}")]
    InputMismatch {
        /// Range aggregations in the query.
        expected: usize,
        /// Input vectors handed over.
        got: usize,
    },

    /// A collapsed series names a group its input does not list. A bug in the caller, but
    /// still reported rather than panicking.
    #[error("a collapsed sample series names group {group} of {groups}")]
    UnknownGroup {
        /// The index named.
        group: u32,
        /// Groups listed.
        groups: usize,
    },

    /// Series folded in the scan ([`crate::Direct`]) reached a range aggregation whose
    /// aggregation above does not take them, or one of another operation. A bug in the
    /// caller, but still reported rather than answered wrong.
    #[error("series folded for {folded} reached an evaluation that cannot take them")]
    UnfoldedDirect {
        /// The operation they were folded for.
        folded: String,
    },

    /// A tree the parser should have rejected (for example a literal operand of `and`).
    #[error("unsupported expression: {0}")]
    Unsupported(String),
}
