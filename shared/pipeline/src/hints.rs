//! What a metric query needs from the parsers: Loki's parser hints.
//!
//! In a metric query Loki does not extract every label a parser could find, only those the
//! query can see: the grouping a `sum` pushes into its range aggregation, the labels of label
//! filters and templates, and the unwrapped label. That is visible in answers, not only in
//! speed: under `sum(count_over_time({…} | json [5m]))` no label is needed, so the parser does
//! not run and a line that is not JSON counts instead of failing the query; a JSON parser stops
//! once it has every label it needs, so a line broken after them raises no error; and under
//! `sum by (__error__) (…)` parser errors are kept and counted instead of failing the query.
//! [`ParserHints::for_range`] derives the hints of one range aggregation exactly as Loki does;
//! the parsers consult them entry by entry.

use parquetry_logql::{
    LabelFilter, LabelFormat, RangeAggregation, RangeOp, SampleExpr, Stage, Unwrap, VectorOp,
};

use crate::labels::{ERROR_DETAILS_LABEL, ERROR_LABEL, EntryLabels};
use crate::template::Template;

/// Set on an entry whose parser error the query asked to see (`by (__error__)`): such series
/// do not fail the query.
pub const PRESERVE_ERROR_LABEL: &str = "__preserve_error__";

const EXTRACTED: &str = "_extracted";

/// The grouping Loki hands the extractor of one range aggregation: the aggregation's own
/// `by`/`without`, or that of a `sum` directly around `count_over_time`, `rate`, `bytes_*`
/// or `sum_over_time`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SampleGrouping {
    /// The labels of `by (…)` or `without (…)`.
    pub groups: Vec<String>,
    /// `without` rather than `by`.
    pub without: bool,
    /// The result has no labels at all (`sum(…)`, `absent_over_time`).
    pub no_labels: bool,
}

impl SampleGrouping {
    /// One grouping per range aggregation of `expr`, in the order of
    /// [`SampleExpr::range_aggregations`].
    pub fn of(expr: &SampleExpr) -> Vec<SampleGrouping> {
        let mut out = Vec::new();
        collect(expr, None, &mut out);
        out
    }
}

fn collect(
    expr: &SampleExpr,
    pushed: Option<&parquetry_logql::Grouping>,
    out: &mut Vec<SampleGrouping>,
) {
    match expr {
        SampleExpr::RangeAggregation(r) => out.push(grouping_of(r, pushed)),
        SampleExpr::VectorAggregation(v) => {
            let inject = v.op == VectorOp::Sum
                && matches!(
                    &*v.expr,
                    SampleExpr::RangeAggregation(r) if r.grouping.is_none() && matches!(
                        r.op,
                        RangeOp::BytesOverTime
                            | RangeOp::BytesRate
                            | RangeOp::SumOverTime
                            | RangeOp::Rate
                            | RangeOp::CountOverTime
                    )
                );
            if inject {
                // A `sum` without `by`/`without` groups into one series.
                let singleton = parquetry_logql::Grouping {
                    without: false,
                    labels: Vec::new(),
                };
                collect(
                    &v.expr,
                    Some(v.grouping.as_ref().unwrap_or(&singleton)),
                    out,
                );
            } else {
                collect(&v.expr, None, out);
            }
        }
        SampleExpr::BinOp(b) => {
            collect(&b.lhs, None, out);
            collect(&b.rhs, None, out);
        }
        SampleExpr::LabelReplace(l) => collect(&l.expr, None, out),
        SampleExpr::Literal(_) | SampleExpr::Vector(_) => {}
    }
}

fn grouping_of(r: &RangeAggregation, pushed: Option<&parquetry_logql::Grouping>) -> SampleGrouping {
    let mut g = SampleGrouping::default();
    // The pushed-down grouping wins over the aggregation's own, as in Loki.
    for grp in [r.grouping.as_ref(), pushed].into_iter().flatten() {
        g.groups = grp.labels.clone();
        g.without = grp.without;
        g.no_labels = grp.labels.is_empty() && !grp.without;
    }
    if r.op == RangeOp::AbsentOverTime {
        g.no_labels = true;
    }
    g.groups.sort();
    g
}

/// The labels one range aggregation's parsers must extract.
#[derive(Debug, Clone, Default)]
pub struct ParserHints {
    /// Only these are extracted; empty means every label.
    required: Vec<String>,
    /// No parser runs.
    no_labels: bool,
    /// Parser errors also set [`PRESERVE_ERROR_LABEL`].
    preserve_error: bool,
}

impl ParserHints {
    /// The hints of a range aggregation over `stages` (after [`sample_stages`]), with
    /// `grouping` from [`SampleGrouping::of`].
    pub fn for_range(
        stages: &[Stage],
        unwrap: Option<&Unwrap>,
        grouping: &SampleGrouping,
    ) -> ParserHints {
        let unwrap_label = unwrap.map(|u| u.label.as_str());
        let mut groups = grouping.groups.clone();
        let mut without = grouping.without;
        // An unwrapped range without a grouping drops the unwrapped label from every series:
        // Loki expresses that as `without (label)`.
        if let Some(u) = unwrap_label
            && (groups.is_empty() || without)
        {
            without = true;
            groups.push(u.to_string());
        }
        let mut names = Vec::new();
        for s in stages {
            required_names(s, &mut names);
        }
        for f in unwrap.iter().flat_map(|u| &u.post_filters) {
            filter_names(f, &mut names);
        }
        names.extend(groups.iter().cloned());
        names.extend(unwrap_label.map(str::to_string));
        let mut required: Vec<String> = Vec::new();
        for n in names {
            // A parser adds `_extracted` only once it sees the clash, so the plain name is
            // wanted as well.
            let plain = n.strip_suffix(EXTRACTED).map(str::to_string);
            for n in std::iter::once(n).chain(plain) {
                if !n.is_empty() && !required.contains(&n) {
                    required.push(n);
                }
            }
        }
        let preserve_error = required.iter().any(|n| n == ERROR_LABEL);
        if grouping.no_labels {
            return if required.is_empty() {
                ParserHints {
                    no_labels: true,
                    ..ParserHints::default()
                }
            } else {
                ParserHints {
                    required,
                    no_labels: false,
                    preserve_error,
                }
            };
        }
        if without || groups.is_empty() {
            return ParserHints::default();
        }
        ParserHints {
            required,
            no_labels: false,
            preserve_error,
        }
    }

    /// Whether a parser should skip the entry entirely: nothing is needed, or everything
    /// needed is already extracted.
    pub(crate) fn skip_parsers(&self, entry: &EntryLabels) -> bool {
        self.no_labels || self.all_extracted(entry)
    }

    /// Every label is wanted, none stops a parser and errors are not preserved: the same
    /// as no hints.
    pub(crate) fn wants_everything(&self) -> bool {
        self.required.is_empty() && !self.no_labels && !self.preserve_error
    }

    /// Whether a parser should extract `name`.
    pub(crate) fn wants(&self, name: &str) -> bool {
        self.required.is_empty() || self.required.iter().any(|r| r == name)
    }

    /// Whether some wanted label starts with `prefix` (nested JSON objects are only walked
    /// when it does).
    pub(crate) fn wants_prefix(&self, prefix: &str) -> bool {
        self.required.is_empty() || self.required.iter().any(|r| r.starts_with(prefix))
    }

    /// Every wanted label has been extracted for this entry: parsers may stop reading.
    pub(crate) fn all_extracted(&self, entry: &EntryLabels) -> bool {
        // The error labels live among the parsed ones here, but no parser extracts them:
        // wanting `__error__` means reading on.
        !self.required.is_empty()
            && self
                .required
                .iter()
                .all(|r| r != ERROR_LABEL && r != ERROR_DETAILS_LABEL && entry.is_parsed(r))
    }

    pub(crate) fn preserve_error(&self) -> bool {
        self.preserve_error
    }
}

/// The labels a stage reads, as Loki counts them: label filter names, the fields templates
/// reference with `.name`, and the sources of `label_format` renames.
fn required_names(stage: &Stage, out: &mut Vec<String>) {
    match stage {
        Stage::LabelFilter(f) => filter_names(f, out),
        Stage::LineFormat(t) => {
            if let Ok(t) = Template::compile(t) {
                out.extend(t.fields());
            }
        }
        Stage::LabelFormat(ops) => {
            for op in ops {
                match op {
                    LabelFormat::Rename { src, .. } => out.push(src.clone()),
                    LabelFormat::Template { template, .. } => {
                        if let Ok(t) = Template::compile(template) {
                            out.extend(t.fields());
                        }
                    }
                }
            }
        }
        _ => {}
    }
}

fn filter_names(f: &LabelFilter, out: &mut Vec<String>) {
    match f {
        LabelFilter::Matcher(m) => out.push(m.name.clone()),
        LabelFilter::Number { name, .. }
        | LabelFilter::Duration { name, .. }
        | LabelFilter::Bytes { name, .. }
        | LabelFilter::Ip { name, .. } => out.push(name.clone()),
        LabelFilter::And(l, r) | LabelFilter::Or(l, r) => {
            filter_names(l, out);
            filter_names(r, out);
        }
    }
}

/// The stages a range aggregation runs, as Loki plans them: a `line_format` that no later
/// parser or line filter reads is dropped, since the line it writes is never seen (except by
/// `bytes_over_time`/`bytes_rate`, which measure it). Its template errors then cannot fail
/// the query either.
pub fn sample_stages(stages: &[Stage], op: RangeOp) -> Vec<Stage> {
    if matches!(op, RangeOp::BytesOverTime | RangeOp::BytesRate) {
        return stages.to_vec();
    }
    stages
        .iter()
        .enumerate()
        .filter(|(i, s)| {
            !matches!(s, Stage::LineFormat(_))
                || stages[*i..].iter().any(|later| {
                    matches!(
                        later,
                        Stage::LineFilter(_)
                            | Stage::Json(_)
                            | Stage::Logfmt(_)
                            | Stage::Regexp(_)
                            | Stage::Pattern(_)
                            | Stage::Unpack
                    )
                })
        })
        .map(|(_, s)| s.clone())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(q: &str) -> SampleExpr {
        match parquetry_logql::parse_expr(q).unwrap_or_else(|e| panic!("{q}: {e}")) {
            parquetry_logql::Expr::Sample(s) => s,
            parquetry_logql::Expr::Log(_) => panic!("not a metric query"),
        }
    }

    fn hints(q: &str) -> ParserHints {
        let e = sample(q);
        let g = SampleGrouping::of(&e);
        let r = e.range_aggregations()[0];
        let stages = sample_stages(&r.range.log.pipeline, r.op);
        ParserHints::for_range(&stages, r.range.unwrap.as_ref(), &g[0])
    }

    #[test]
    fn groupings_pushed_by_sum_only() {
        let g = SampleGrouping::of(&sample(
            r#"sum by (b, a) (rate({x="y"}[1m])) / max by (c) (count_over_time({x="y"}[1m]))"#,
        ));
        assert_eq!(g[0].groups, vec!["a", "b"]);
        assert!(!g[0].no_labels);
        assert_eq!(g[1], SampleGrouping::default());
        let g = SampleGrouping::of(&sample(r#"sum(count_over_time({x="y"}[1m]))"#));
        assert!(g[0].no_labels);
        let g = SampleGrouping::of(&sample(r#"absent_over_time({x="y"}[1m])"#));
        assert!(g[0].no_labels);
    }

    #[test]
    fn required_labels() {
        let h = hints(r#"sum(count_over_time({x="y"} | json [1m]))"#);
        assert!(h.no_labels);
        let h = hints(r#"sum(count_over_time({x="y"} | json | latency_ms > 500 [1m]))"#);
        assert!(!h.no_labels);
        assert_eq!(h.required, vec!["latency_ms"]);
        let h = hints(r#"sum by (app_extracted) (rate({x="y"} | logfmt [1m]))"#);
        assert_eq!(h.required, vec!["app_extracted", "app"]);
        let h = hints(r#"sum by (__error__) (count_over_time({x="y"} | json [1m]))"#);
        assert!(h.preserve_error);
        // No grouping: every label is part of the series, so everything is extracted.
        let h = hints(r#"count_over_time({x="y"} | json | a="b" [1m])"#);
        assert!(h.required.is_empty() && !h.no_labels);
        let h = hints(r#"sum_over_time({x="y"} | json | unwrap v [1m])"#);
        assert!(h.required.is_empty() && !h.no_labels);
        let h = hints(
            r#"sum by (a) (sum_over_time({x="y"} | json | line_format "{{.b}}" | logfmt | unwrap v [1m]))"#,
        );
        assert_eq!(h.required, vec!["b", "a", "v"]);
    }

    /// Run `line` through the pipeline of the first range aggregation of `q`, with its hints.
    fn run(q: &str, line: &str) -> Option<String> {
        let e = sample(q);
        let g = SampleGrouping::of(&e);
        let r = e.range_aggregations()[0];
        let stages = sample_stages(&r.range.log.pipeline, r.op);
        let h = ParserHints::for_range(&stages, r.range.unwrap.as_ref(), &g[0]);
        let p = crate::Pipeline::new(&stages).unwrap().with_hints(h);
        let stream = parquetry_model::Labels::from_pairs([("app", "a")]);
        let mut entry = EntryLabels::of_stream(&stream);
        p.process(0, line, &mut entry)
            .map(|_| entry.parsed().to_string())
    }

    /// Recorded from Loki 3.8: what the parsers do for the lines of a metric query.
    #[test]
    fn parsers_follow_the_hints() {
        // Nothing needed: the parser does not run, so nothing fails.
        let q = r#"sum(count_over_time({app="a"} | json [1m]))"#;
        assert_eq!(run(q, "not json").as_deref(), Some("{}"));
        // Only latency_ms needed: reading stops once it is there, before the broken part.
        let q = r#"sum(count_over_time({app="a"} | json | latency_ms > 500 [1m]))"#;
        assert_eq!(
            run(q, r#"{"latency_ms":800,"amount":2,"#).as_deref(),
            Some(r#"{latency_ms="800"}"#)
        );
        assert_eq!(run(q, "not json"), None);
        // Grouped by __error__: the error is kept, marked to be counted.
        let q = r#"sum by (__error__) (count_over_time({app="a"} | json [1m]))"#;
        assert_eq!(
            run(q, "not json").as_deref(),
            Some(
                r#"{__error__="JSONParserErr", __error_details__="Value looks like object, but can't find closing '}' symbol", __preserve_error__="true"}"#
            )
        );
        // Nested objects no wanted name starts with are not read.
        let q = r#"sum by (user_id) (count_over_time({app="a"} | json [1m]))"#;
        assert_eq!(
            run(q, r#"{"meta":{"x":tru},"user":{"id":7,"name":"ann"}}"#).as_deref(),
            Some(r#"{user_id="7"}"#)
        );
        // Same for logfmt, and for an unread line_format.
        let q = r#"sum by (a) (count_over_time({app="a"} | logfmt | line_format "{{ bytes .x }}" [1m]))"#;
        assert_eq!(run(q, "b=1 a=2 c=3").as_deref(), Some(r#"{a="2"}"#));
    }

    #[test]
    fn unread_line_format_is_dropped() {
        let e = sample(r#"count_over_time({x="y"} | json | line_format "{{.a}}" | a="b" [1m])"#);
        let r = e.range_aggregations()[0];
        assert_eq!(sample_stages(&r.range.log.pipeline, r.op).len(), 2);
        let e = sample(r#"bytes_over_time({x="y"} | line_format "{{.a}}" [1m])"#);
        let r = e.range_aggregations()[0];
        assert_eq!(sample_stages(&r.range.log.pipeline, r.op).len(), 1);
        let e = sample(r#"count_over_time({x="y"} | line_format "{{.a}}" |= "x" [1m])"#);
        let r = e.range_aggregations()[0];
        assert_eq!(sample_stages(&r.range.log.pipeline, r.op).len(), 2);
    }
}
