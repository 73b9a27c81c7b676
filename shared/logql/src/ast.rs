//! The LogQL syntax tree.
//!
//! The tree is what a query engine evaluates, so it is normalised where the surface syntax has
//! several spellings of one thing: parentheses are dropped, a `[range]` is stored once however
//! it was placed, binary expressions between two literals are already folded, durations are
//! signed nanoseconds and byte sizes are plain byte counts. `Display` (in `printer.rs`) prints a
//! canonical form that parses back to an equal tree.
//!
//! Regular expressions are validated by the parser but stored as source text (except in
//! [`Matcher`], which compiles its anchored regex once). Engines compile them again with the
//! helpers in [`crate::regexes`]; compilation is then guaranteed to succeed.

use parquetry_model::Matcher;
use parquetry_model::duration::Nanos;

/// A whole query: either a log query or a metric (sample) query.
#[derive(Debug, Clone, PartialEq)]
pub enum Expr {
    /// A log query: a selector and its pipeline.
    Log(LogExpr),
    /// A metric query.
    Sample(SampleExpr),
}

/// `{selector} pipeline…`: selects streams, then runs each line through the stages in order.
#[derive(Debug, Clone, PartialEq)]
pub struct LogExpr {
    /// Stream matchers, in query order. Validation guarantees (for [`crate::parse_expr`]) that
    /// at least one of them does not match the empty string.
    pub selector: Vec<Matcher>,
    /// The stages after the selector, in order.
    pub pipeline: Vec<Stage>,
}

/// One pipeline stage. Stages run in order; a line dropped by a stage goes no further.
#[derive(Debug, Clone, PartialEq)]
pub enum Stage {
    /// `|= "a" or "b"`, `!~ "re"`, `|> "<_> x"`, `|= ip("10.0.0.0/8")`.
    LineFilter(LineFilter),
    /// `| json` (no extractions: flatten everything) or `| json a="x.y", b`.
    Json(Vec<LabelExtraction>),
    /// `| logfmt [--strict] [--keep-empty] [extractions]`.
    Logfmt(LogfmtParser),
    /// `| regexp "re"`: named groups become labels. The regex is unanchored and validated to
    /// compile and to have at least one named group with a valid label name.
    Regexp(String),
    /// `| pattern "<ip> - <_>"`: validated; see [`crate::pattern::parse_pattern`].
    Pattern(String),
    /// `| unpack`.
    Unpack,
    /// `| <label filter expression>`.
    LabelFilter(LabelFilter),
    /// `| line_format "template"` (Go template; not validated here).
    LineFormat(String),
    /// `| label_format a=b, c="{{.x}}"`. Destination names are unique within one stage.
    LabelFormat(Vec<LabelFormat>),
    /// `| drop a, b="v"`.
    Drop(Vec<LabelRef>),
    /// `| keep a, b="v"`.
    Keep(Vec<LabelRef>),
    /// `| decolorize`.
    Decolorize,
}

/// A line filter with its `or` alternatives. Every alternative uses `op`; for the negative
/// operators the filter keeps a line only if **none** of the alternatives match (De Morgan).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LineFilter {
    /// How the line is tested.
    pub op: LineFilterOp,
    /// At least one value. Values after the first came from `or`.
    pub values: Vec<LineFilterValue>,
}

/// The six line filter operators: `|=` `!=` `|~` `!~` `|>` `!>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LineFilterOp {
    /// `|=`: the line contains the value.
    Contains,
    /// `!=`: the line does not contain the value.
    NotContains,
    /// Unanchored RE2-style regex; validated at parse time, compile with
    /// [`crate::regexes::line_filter_regex`].
    Regex,
    /// `!~`: the regex matches nowhere in the line.
    NotRegex,
    /// Pattern with `<_>` wildcards; validated at parse time (no named captures allowed in
    /// filters). Parse with [`crate::pattern::parse_pattern`].
    Pattern,
    /// `!>`: the pattern does not match the line.
    NotPattern,
}

impl LineFilterOp {
    /// The operator as LogQL spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            LineFilterOp::Contains => "|=",
            LineFilterOp::NotContains => "!=",
            LineFilterOp::Regex => "|~",
            LineFilterOp::NotRegex => "!~",
            LineFilterOp::Pattern => "|>",
            LineFilterOp::NotPattern => "!>",
        }
    }

    /// True for `!=`, `!~` and `!>`.
    pub fn is_negative(self) -> bool {
        matches!(
            self,
            LineFilterOp::NotContains | LineFilterOp::NotRegex | LineFilterOp::NotPattern
        )
    }
}

/// One operand of a line filter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LineFilterValue {
    /// A string, regex or pattern, depending on the operator.
    Str(String),
    /// `ip("…")`: an address, CIDR or `a-b` range, validated with [`crate::ip::IpPattern`].
    /// Only allowed with `|=` and `!=`.
    Ip(String),
}

/// One `json`/`logfmt` extraction: `name="expression"` or a bare `name`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LabelExtraction {
    /// The label to create.
    pub name: String,
    /// The JSON path (`json`) or key (`logfmt`); `None` for the bare form, where the path is
    /// the name itself.
    pub expression: Option<String>,
}

impl LabelExtraction {
    /// The path or key to look up: the explicit expression, or the name for the bare form.
    pub fn path(&self) -> &str {
        self.expression.as_deref().unwrap_or(&self.name)
    }
}

/// `| logfmt` options.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LogfmtParser {
    /// `--strict`: stop at the first malformed pair and set `__error__`.
    pub strict: bool,
    /// `--keep-empty`: keep bare keys as `""`.
    pub keep_empty: bool,
    /// Empty means "extract every key".
    pub extractions: Vec<LabelExtraction>,
}

/// One `label_format` operation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LabelFormat {
    /// `dst=src`: copy `src` to `dst` and remove `src`.
    Rename {
        /// The new name.
        dst: String,
        /// The label renamed.
        src: String,
    },
    /// `dst="{{ template }}"`: set `dst` to the rendered Go template.
    Template {
        /// The label set.
        dst: String,
        /// The Go template, as written.
        template: String,
    },
}

impl LabelFormat {
    /// The label the operation sets.
    pub fn dst(&self) -> &str {
        match self {
            LabelFormat::Rename { dst, .. } | LabelFormat::Template { dst, .. } => dst,
        }
    }
}

/// A `drop`/`keep` operand: a bare label name or a matcher on the label's value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LabelRef {
    /// A bare label name.
    Name(String),
    /// A matcher (`name="v"`, `name=~"re"`…) on the label's value.
    Matcher(Matcher),
}

impl LabelRef {
    /// The label name referred to.
    pub fn name(&self) -> &str {
        match self {
            LabelRef::Name(n) => n,
            LabelRef::Matcher(m) => &m.name,
        }
    }
}

/// Comparison operators of numeric, duration and bytes label filters.
/// `=` and `==` both parse to [`CmpOp::Eq`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CmpOp {
    /// `==` (or `=`).
    Eq,
    /// `!=`.
    Neq,
    /// `>`.
    Gt,
    /// `>=`.
    Gte,
    /// `<`.
    Lt,
    /// `<=`.
    Lte,
}

impl CmpOp {
    /// The operator as LogQL spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            CmpOp::Eq => "==",
            CmpOp::Neq => "!=",
            CmpOp::Gt => ">",
            CmpOp::Gte => ">=",
            CmpOp::Lt => "<",
            CmpOp::Lte => "<=",
        }
    }

    /// Applies the comparison.
    pub fn compare<T: PartialOrd>(self, left: T, right: T) -> bool {
        match self {
            CmpOp::Eq => left == right,
            CmpOp::Neq => left != right,
            CmpOp::Gt => left > right,
            CmpOp::Gte => left >= right,
            CmpOp::Lt => left < right,
            CmpOp::Lte => left <= right,
        }
    }
}

/// A label filter expression. `and` (also spelled `,` or by juxtaposition) binds tighter than
/// `or`; parentheses are not kept.
#[derive(Debug, Clone, PartialEq)]
pub enum LabelFilter {
    /// `name = "v"`, `!=`, `=~`, `!~` (regexes fully anchored, as for stream selectors). The
    /// only kind that can test `__error__`.
    Matcher(Matcher),
    /// `name > 5`: the label value must parse as a float, else `__error__="LabelFilterErr"`.
    Number {
        /// The label tested.
        name: String,
        /// The comparison.
        op: CmpOp,
        /// The number compared with.
        value: f64,
    },
    /// `name > 250ms`: the label value is parsed as a Go duration. Nanoseconds.
    Duration {
        /// The label tested.
        name: String,
        /// The comparison.
        op: CmpOp,
        /// The duration compared with.
        value: Nanos,
    },
    /// `name >= 20MB`: the label value is parsed as a byte size. Bytes.
    Bytes {
        /// The label tested.
        name: String,
        /// The comparison.
        op: CmpOp,
        /// The byte size compared with.
        value: u64,
    },
    /// `name = ip("…")` (`negated: false`) or `name != ip("…")` (`negated: true`).
    Ip {
        /// The label tested.
        name: String,
        /// `!=` rather than `=`.
        negated: bool,
        /// The address, CIDR or range, as written.
        pattern: String,
    },
    /// Both filters must pass (both always run).
    And(Box<LabelFilter>, Box<LabelFilter>),
    /// Either filter passes.
    Or(Box<LabelFilter>, Box<LabelFilter>),
}

/// A metric query.
#[derive(Debug, Clone, PartialEq)]
pub enum SampleExpr {
    /// `rate({…}[5m])` and friends.
    RangeAggregation(RangeAggregation),
    /// `sum by (a) (…)` and friends.
    VectorAggregation(VectorAggregation),
    /// `a + b`, `a > bool 1`, `a and on (x) b`. Never between two literals (those are folded).
    BinOp(BinOpExpr),
    /// A number. Division and modulo by zero fold to NaN, comparisons to 0/1.
    Literal(f64),
    /// `vector(N)`: one series with no labels.
    Vector(f64),
    /// `label_replace(expr, "dst", "replacement", "src", "regex")`.
    LabelReplace(LabelReplace),
}

/// `op([param,] logRange) [grouping]`.
#[derive(Debug, Clone, PartialEq)]
pub struct RangeAggregation {
    /// The range function.
    pub op: RangeOp,
    /// φ of `quantile_over_time`; `None` for every other function (validated).
    pub param: Option<f64>,
    /// The log query and range it aggregates.
    pub range: LogRange,
    /// Only for the functions where [`RangeOp::allows_grouping`] holds (validated).
    pub grouping: Option<Grouping>,
}

/// The log side of a range aggregation: selector, pipeline, optional unwrap, `[range]` and
/// `offset`. The window at evaluation time `t` is `(t - range - offset, t - offset]`.
#[derive(Debug, Clone, PartialEq)]
pub struct LogRange {
    /// The log query the samples come from.
    pub log: LogExpr,
    /// `| unwrap label`, for functions over label values.
    pub unwrap: Option<Unwrap>,
    /// The `[range]`, a Prometheus duration, in nanoseconds (multiple of 1ms, may be 0).
    pub range: Nanos,
    /// The `offset`, in nanoseconds; 0 when absent.
    pub offset: Nanos,
}

/// `| unwrap [conv(]label[)] {| labelFilter}`.
#[derive(Debug, Clone, PartialEq)]
pub struct Unwrap {
    /// The label whose value becomes the sample.
    pub label: String,
    /// `duration(…)`, `duration_seconds(…)` or `bytes(…)`; `None` reads a float.
    pub conversion: Option<UnwrapConversion>,
    /// Label filters written after the unwrap; they run after the conversion.
    pub post_filters: Vec<LabelFilter>,
}

/// How an unwrapped label value becomes a sample value. Without one the value is a float.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum UnwrapConversion {
    /// `bytes(l)`: a byte size such as `1.5KiB`.
    Bytes,
    /// `duration(l)`: a Go duration, in seconds.
    Duration,
    /// `duration_seconds(l)`: the same as `duration`.
    DurationSeconds,
}

impl UnwrapConversion {
    /// The conversion's LogQL name.
    pub fn as_str(self) -> &'static str {
        match self {
            UnwrapConversion::Bytes => "bytes",
            UnwrapConversion::Duration => "duration",
            UnwrapConversion::DurationSeconds => "duration_seconds",
        }
    }
}

/// Range aggregation functions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RangeOp {
    /// `count_over_time`.
    CountOverTime,
    /// `rate`.
    Rate,
    /// `rate_counter`.
    RateCounter,
    /// `bytes_over_time`.
    BytesOverTime,
    /// `bytes_rate`.
    BytesRate,
    /// `avg_over_time`.
    AvgOverTime,
    /// `sum_over_time`.
    SumOverTime,
    /// `min_over_time`.
    MinOverTime,
    /// `max_over_time`.
    MaxOverTime,
    /// `stdvar_over_time`.
    StdvarOverTime,
    /// `stddev_over_time`.
    StddevOverTime,
    /// `quantile_over_time`.
    QuantileOverTime,
    /// `first_over_time`.
    FirstOverTime,
    /// `last_over_time`.
    LastOverTime,
    /// `absent_over_time`.
    AbsentOverTime,
}

/// Whether a range function needs `| unwrap`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UnwrapRule {
    /// The function counts lines or bytes: an `unwrap` is an error.
    Forbidden,
    /// `rate` counts lines, or sums unwrapped values when given one.
    Optional,
    /// The function reads values: an `unwrap` is required.
    Required,
}

impl RangeOp {
    /// Every range function.
    pub const ALL: [RangeOp; 15] = [
        RangeOp::CountOverTime,
        RangeOp::Rate,
        RangeOp::RateCounter,
        RangeOp::BytesOverTime,
        RangeOp::BytesRate,
        RangeOp::AvgOverTime,
        RangeOp::SumOverTime,
        RangeOp::MinOverTime,
        RangeOp::MaxOverTime,
        RangeOp::StdvarOverTime,
        RangeOp::StddevOverTime,
        RangeOp::QuantileOverTime,
        RangeOp::FirstOverTime,
        RangeOp::LastOverTime,
        RangeOp::AbsentOverTime,
    ];

    /// The function's LogQL name.
    pub fn as_str(self) -> &'static str {
        match self {
            RangeOp::CountOverTime => "count_over_time",
            RangeOp::Rate => "rate",
            RangeOp::RateCounter => "rate_counter",
            RangeOp::BytesOverTime => "bytes_over_time",
            RangeOp::BytesRate => "bytes_rate",
            RangeOp::AvgOverTime => "avg_over_time",
            RangeOp::SumOverTime => "sum_over_time",
            RangeOp::MinOverTime => "min_over_time",
            RangeOp::MaxOverTime => "max_over_time",
            RangeOp::StdvarOverTime => "stdvar_over_time",
            RangeOp::StddevOverTime => "stddev_over_time",
            RangeOp::QuantileOverTime => "quantile_over_time",
            RangeOp::FirstOverTime => "first_over_time",
            RangeOp::LastOverTime => "last_over_time",
            RangeOp::AbsentOverTime => "absent_over_time",
        }
    }

    /// Looks a function name up (already lower-cased).
    pub fn from_name(name: &str) -> Option<RangeOp> {
        RangeOp::ALL.into_iter().find(|op| op.as_str() == name)
    }

    /// Whether the function takes an `unwrap`.
    pub fn unwrap_rule(self) -> UnwrapRule {
        match self {
            RangeOp::CountOverTime | RangeOp::BytesOverTime | RangeOp::BytesRate => {
                UnwrapRule::Forbidden
            }
            RangeOp::Rate | RangeOp::AbsentOverTime => UnwrapRule::Optional,
            _ => UnwrapRule::Required,
        }
    }

    /// `by`/`without` are allowed only for the functions that keep one sample value per series
    /// meaningful after grouping.
    pub fn allows_grouping(self) -> bool {
        matches!(
            self,
            RangeOp::AvgOverTime
                | RangeOp::MinOverTime
                | RangeOp::MaxOverTime
                | RangeOp::StddevOverTime
                | RangeOp::StdvarOverTime
                | RangeOp::QuantileOverTime
                | RangeOp::FirstOverTime
                | RangeOp::LastOverTime
        )
    }
}

/// `by (…)` or `without (…)`. An empty list is allowed and distinct from no grouping.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Grouping {
    /// `without` rather than `by`.
    pub without: bool,
    /// The labels listed.
    pub labels: Vec<String>,
}

/// `op [grouping] ([param,] expr) [grouping]`.
#[derive(Debug, Clone, PartialEq)]
pub struct VectorAggregation {
    /// The aggregation.
    pub op: VectorOp,
    /// `k` of `topk`, `bottomk` and `approx_topk` (required, > 0); `None` otherwise.
    pub param: Option<usize>,
    /// `by (…)` / `without (…)`, if given.
    pub grouping: Option<Grouping>,
    /// The aggregated expression.
    pub expr: Box<SampleExpr>,
}

/// Vector aggregation functions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum VectorOp {
    /// `sum`.
    Sum,
    /// `avg`.
    Avg,
    /// `min`.
    Min,
    /// `max`.
    Max,
    /// `count`.
    Count,
    /// `stddev`.
    Stddev,
    /// `stdvar`.
    Stdvar,
    /// `topk`.
    Topk,
    /// `bottomk`.
    Bottomk,
    /// `sort`.
    Sort,
    /// `sort_desc`.
    SortDesc,
    /// `approx_topk`.
    ApproxTopk,
}

impl VectorOp {
    /// Every vector aggregation.
    pub const ALL: [VectorOp; 12] = [
        VectorOp::Sum,
        VectorOp::Avg,
        VectorOp::Min,
        VectorOp::Max,
        VectorOp::Count,
        VectorOp::Stddev,
        VectorOp::Stdvar,
        VectorOp::Topk,
        VectorOp::Bottomk,
        VectorOp::Sort,
        VectorOp::SortDesc,
        VectorOp::ApproxTopk,
    ];

    /// The aggregation's LogQL name.
    pub fn as_str(self) -> &'static str {
        match self {
            VectorOp::Sum => "sum",
            VectorOp::Avg => "avg",
            VectorOp::Min => "min",
            VectorOp::Max => "max",
            VectorOp::Count => "count",
            VectorOp::Stddev => "stddev",
            VectorOp::Stdvar => "stdvar",
            VectorOp::Topk => "topk",
            VectorOp::Bottomk => "bottomk",
            VectorOp::Sort => "sort",
            VectorOp::SortDesc => "sort_desc",
            VectorOp::ApproxTopk => "approx_topk",
        }
    }

    /// Looks a function name up (already lower-cased).
    pub fn from_name(name: &str) -> Option<VectorOp> {
        VectorOp::ALL.into_iter().find(|op| op.as_str() == name)
    }

    /// True for the functions that take `k`.
    pub fn takes_param(self) -> bool {
        matches!(
            self,
            VectorOp::Topk | VectorOp::Bottomk | VectorOp::ApproxTopk
        )
    }

    /// True for the functions that reduce each group to one value labelled with the group
    /// alone (`sum`, `avg`, `min`, `max`, `count`, `stddev`, `stdvar`), as opposed to those
    /// that answer with some of their input series.
    pub fn reduces_groups(self) -> bool {
        matches!(
            self,
            VectorOp::Sum
                | VectorOp::Avg
                | VectorOp::Min
                | VectorOp::Max
                | VectorOp::Count
                | VectorOp::Stddev
                | VectorOp::Stdvar
        )
    }
}

/// Binary operators.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BinOp {
    /// `or`.
    Or,
    /// `and`.
    And,
    /// `unless`.
    Unless,
    /// `==`.
    Eq,
    /// `!=`.
    Neq,
    /// `>`.
    Gt,
    /// `>=`.
    Gte,
    /// `<`.
    Lt,
    /// `<=`.
    Lte,
    /// `+`.
    Add,
    /// `-`.
    Sub,
    /// `*`.
    Mul,
    /// `/`.
    Div,
    /// `%`.
    Mod,
    /// `^`.
    Pow,
}

impl BinOp {
    /// The operator as LogQL spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            BinOp::Or => "or",
            BinOp::And => "and",
            BinOp::Unless => "unless",
            BinOp::Eq => "==",
            BinOp::Neq => "!=",
            BinOp::Gt => ">",
            BinOp::Gte => ">=",
            BinOp::Lt => "<",
            BinOp::Lte => "<=",
            BinOp::Add => "+",
            BinOp::Sub => "-",
            BinOp::Mul => "*",
            BinOp::Div => "/",
            BinOp::Mod => "%",
            BinOp::Pow => "^",
        }
    }

    /// PromQL precedence, 1 (loosest, `or`) to 6 (tightest, `^`).
    pub fn precedence(self) -> u8 {
        match self {
            BinOp::Or => 1,
            BinOp::And | BinOp::Unless => 2,
            BinOp::Eq | BinOp::Neq | BinOp::Gt | BinOp::Gte | BinOp::Lt | BinOp::Lte => 3,
            BinOp::Add | BinOp::Sub => 4,
            BinOp::Mul | BinOp::Div | BinOp::Mod => 5,
            BinOp::Pow => 6,
        }
    }

    /// Only `^` is right-associative.
    pub fn is_right_assoc(self) -> bool {
        self == BinOp::Pow
    }

    /// `==`, `!=`, `>`, `>=`, `<` or `<=`.
    pub fn is_comparison(self) -> bool {
        matches!(
            self,
            BinOp::Eq | BinOp::Neq | BinOp::Gt | BinOp::Gte | BinOp::Lt | BinOp::Lte
        )
    }

    /// `and`, `or`, `unless`.
    pub fn is_set(self) -> bool {
        matches!(self, BinOp::Or | BinOp::And | BinOp::Unless)
    }

    /// Applies the operator to two scalars with LogQL semantics: division and modulo by zero
    /// give NaN, comparisons give 1 or 0, `%` is Go's `math.Mod` (sign of the dividend).
    /// Returns `None` for the set operators, which have no scalar meaning.
    pub fn apply_scalar(self, l: f64, r: f64) -> Option<f64> {
        let b = |v: bool| if v { 1.0 } else { 0.0 };
        Some(match self {
            BinOp::Add => l + r,
            BinOp::Sub => l - r,
            BinOp::Mul => l * r,
            BinOp::Div => {
                if r == 0.0 {
                    f64::NAN
                } else {
                    l / r
                }
            }
            BinOp::Mod => {
                if r == 0.0 {
                    f64::NAN
                } else {
                    l % r
                }
            }
            BinOp::Pow => l.powf(r),
            BinOp::Eq => b(l == r),
            BinOp::Neq => b(l != r),
            BinOp::Gt => b(l > r),
            BinOp::Gte => b(l >= r),
            BinOp::Lt => b(l < r),
            BinOp::Lte => b(l <= r),
            BinOp::Or | BinOp::And | BinOp::Unless => return None,
        })
    }
}

/// `lhs op [bool] [on|ignoring (…) [group_left|group_right (…)]] rhs`.
#[derive(Debug, Clone, PartialEq)]
pub struct BinOpExpr {
    /// The operator.
    pub op: BinOp,
    /// `bool`: comparisons return 0/1 instead of filtering. Only on comparison operators.
    pub return_bool: bool,
    /// `on`/`ignoring` and group modifiers; `None` when absent (one-to-one on all labels).
    pub matching: Option<VectorMatching>,
    /// The left operand.
    pub lhs: Box<SampleExpr>,
    /// The right operand.
    pub rhs: Box<SampleExpr>,
}

/// `on (…)` / `ignoring (…)` with an optional `group_left`/`group_right`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VectorMatching {
    /// `true` for `on`, `false` for `ignoring`.
    pub on: bool,
    /// The labels listed in `on`/`ignoring`.
    pub labels: Vec<String>,
    /// `group_left`/`group_right`, if given.
    pub group: Option<GroupModifier>,
}

/// Many-to-one (`group_left`) or one-to-many (`group_right`) matching, with the extra labels
/// to copy from the "one" side.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GroupModifier {
    /// `group_left (…)`: many on the left to one on the right.
    Left(Vec<String>),
    /// `group_right (…)`: one on the left to many on the right.
    Right(Vec<String>),
}

/// `label_replace(expr, "dst", "replacement", "src", "regex")`. The regex is fully anchored
/// (compile with [`crate::regexes::anchored_regex`]) and validated at parse time.
#[derive(Debug, Clone, PartialEq)]
pub struct LabelReplace {
    /// The expression whose series are relabelled.
    pub expr: Box<SampleExpr>,
    /// The label written.
    pub dst: String,
    /// The value written, with `$1`-style references to the regex's groups.
    pub replacement: String,
    /// The label matched.
    pub src: String,
    /// The regex matched against `src`'s value.
    pub regex: String,
}

impl Expr {
    /// Every log selector/pipeline in the query, in source order.
    pub fn log_exprs(&self) -> Vec<&LogExpr> {
        let mut out = Vec::new();
        match self {
            Expr::Log(l) => out.push(l),
            Expr::Sample(s) => s.collect_log_exprs(&mut out),
        }
        out
    }
}

impl LabelFilter {
    /// Nesting depth of `and`/`or` (a single predicate is 1). Bounded by
    /// [`crate::MAX_DEPTH`] for parsed trees.
    pub fn depth(&self) -> usize {
        match self {
            LabelFilter::And(l, r) | LabelFilter::Or(l, r) => 1 + l.depth().max(r.depth()),
            _ => 1,
        }
    }
}

impl SampleExpr {
    /// Nesting depth of the metric tree (a leaf is 1; label filters inside range
    /// aggregations are not counted). Bounded by [`crate::MAX_DEPTH`] for parsed trees.
    pub fn depth(&self) -> usize {
        match self {
            SampleExpr::BinOp(b) => 1 + b.lhs.depth().max(b.rhs.depth()),
            SampleExpr::VectorAggregation(v) => 1 + v.expr.depth(),
            SampleExpr::LabelReplace(l) => 1 + l.expr.depth(),
            SampleExpr::RangeAggregation(_) | SampleExpr::Literal(_) | SampleExpr::Vector(_) => 1,
        }
    }

    fn collect_log_exprs<'a>(&'a self, out: &mut Vec<&'a LogExpr>) {
        match self {
            SampleExpr::RangeAggregation(r) => out.push(&r.range.log),
            SampleExpr::VectorAggregation(v) => v.expr.collect_log_exprs(out),
            SampleExpr::BinOp(b) => {
                b.lhs.collect_log_exprs(out);
                b.rhs.collect_log_exprs(out);
            }
            SampleExpr::LabelReplace(l) => l.expr.collect_log_exprs(out),
            SampleExpr::Literal(_) | SampleExpr::Vector(_) => {}
        }
    }

    /// Every range aggregation in the query, in source order.
    pub fn range_aggregations(&self) -> Vec<&RangeAggregation> {
        let mut out = Vec::new();
        self.collect_ranges(&mut out);
        out
    }

    fn collect_ranges<'a>(&'a self, out: &mut Vec<&'a RangeAggregation>) {
        match self {
            SampleExpr::RangeAggregation(r) => out.push(r),
            SampleExpr::VectorAggregation(v) => v.expr.collect_ranges(out),
            SampleExpr::BinOp(b) => {
                b.lhs.collect_ranges(out);
                b.rhs.collect_ranges(out);
            }
            SampleExpr::LabelReplace(l) => l.expr.collect_ranges(out),
            SampleExpr::Literal(_) | SampleExpr::Vector(_) => {}
        }
    }
}
