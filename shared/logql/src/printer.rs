//! Canonical LogQL text for every tree node (`Display`), and the `format_query` pretty
//! printer.
//!
//! The canonical form is chosen so that printing and parsing again gives an equal tree:
//! strings are always double-quoted with Go escapes, durations use units both duration
//! grammars accept, the `[range]` goes after the pipeline and unwrap, binary expressions get
//! parentheses exactly where precedence or associativity needs them, and `group_left`/
//! `group_right` always carry their (possibly empty) label list so that a parenthesised
//! right-hand side is never mistaken for it.

use std::fmt::{self, Display, Formatter, Write};

use parquetry_model::duration::{Nanos, format_prometheus};
use parquetry_model::labels::write_quoted;

use crate::ast::*;

/// Formats a number so that the LogQL lexer reads it back as the same `f64`: shortest
/// round-trip digits, exponent form for very large or small magnitudes, `1e999` for
/// infinity. NaN has no literal form and is printed as `NaN`; use [`SampleExpr`]'s printer,
/// which writes `(0 / 0)`.
pub fn format_number(v: f64) -> String {
    if v.is_nan() {
        return "NaN".into();
    }
    if v.is_infinite() {
        return if v > 0.0 { "1e999" } else { "-1e999" }.into();
    }
    let plain = v.to_string();
    if plain.len() > 21 {
        format!("{v:e}")
    } else {
        plain
    }
}

/// Formats signed nanoseconds as a duration the LogQL lexer reads back exactly: Prometheus
/// form (`1h30m`, `2d`, `500ms`) for whole milliseconds, Go form (`1m2s3us4ns`) otherwise.
pub fn format_duration(ns: Nanos) -> String {
    if ns < 0 {
        return format!(
            "-{}",
            format_duration(ns.checked_neg().unwrap_or(Nanos::MAX))
        );
    }
    if ns % 1_000_000 == 0 {
        return format_prometheus(ns);
    }
    let mut out = String::new();
    let mut rest = ns;
    for (unit, size) in [
        ("h", 3_600_000_000_000),
        ("m", 60_000_000_000),
        ("s", 1_000_000_000),
        ("ms", 1_000_000),
        ("us", 1_000),
        ("ns", 1),
    ] {
        if rest >= size {
            let _ = write!(out, "{}{unit}", rest / size);
            rest %= size;
        }
    }
    out
}

fn quoted(f: &mut Formatter<'_>, s: &str) -> fmt::Result {
    write_quoted(f, s)
}

fn join<T: Display>(f: &mut Formatter<'_>, items: &[T], sep: &str) -> fmt::Result {
    for (i, it) in items.iter().enumerate() {
        if i > 0 {
            f.write_str(sep)?;
        }
        write!(f, "{it}")?;
    }
    Ok(())
}

fn label_list(f: &mut Formatter<'_>, labels: &[String]) -> fmt::Result {
    f.write_char('(')?;
    join(f, labels, ", ")?;
    f.write_char(')')
}

impl Display for Expr {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        match self {
            Expr::Log(l) => l.fmt(f),
            Expr::Sample(s) => s.fmt(f),
        }
    }
}

/// A selector as `{a="b", c=~"d"}`.
struct Selector<'a>(&'a [parquetry_model::Matcher]);

impl Display for Selector<'_> {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        f.write_char('{')?;
        join(f, self.0, ", ")?;
        f.write_char('}')
    }
}

impl Display for LogExpr {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        Selector(&self.selector).fmt(f)?;
        for s in &self.pipeline {
            write!(f, " {s}")?;
        }
        Ok(())
    }
}

impl Display for LineFilterOp {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Display for LineFilterValue {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        match self {
            LineFilterValue::Str(s) => quoted(f, s),
            LineFilterValue::Ip(s) => {
                f.write_str("ip(")?;
                quoted(f, s)?;
                f.write_char(')')
            }
        }
    }
}

impl Display for LineFilter {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        write!(f, "{} ", self.op)?;
        join(f, &self.values, " or ")
    }
}

impl Display for LabelExtraction {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name)?;
        if let Some(e) = &self.expression {
            f.write_char('=')?;
            quoted(f, e)?;
        }
        Ok(())
    }
}

impl Display for LabelFormat {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        match self {
            LabelFormat::Rename { dst, src } => write!(f, "{dst}={src}"),
            LabelFormat::Template { dst, template } => {
                write!(f, "{dst}=")?;
                quoted(f, template)
            }
        }
    }
}

impl Display for LabelRef {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        match self {
            LabelRef::Name(n) => f.write_str(n),
            LabelRef::Matcher(m) => m.fmt(f),
        }
    }
}

impl Display for Stage {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        match self {
            Stage::LineFilter(l) => l.fmt(f),
            Stage::Json(ex) => {
                f.write_str("| json")?;
                if !ex.is_empty() {
                    f.write_char(' ')?;
                    join(f, ex, ", ")?;
                }
                Ok(())
            }
            Stage::Logfmt(p) => {
                f.write_str("| logfmt")?;
                if p.strict {
                    f.write_str(" --strict")?;
                }
                if p.keep_empty {
                    f.write_str(" --keep-empty")?;
                }
                if !p.extractions.is_empty() {
                    f.write_char(' ')?;
                    join(f, &p.extractions, ", ")?;
                }
                Ok(())
            }
            Stage::Regexp(re) => {
                f.write_str("| regexp ")?;
                quoted(f, re)
            }
            Stage::Pattern(p) => {
                f.write_str("| pattern ")?;
                quoted(f, p)
            }
            Stage::Unpack => f.write_str("| unpack"),
            Stage::LabelFilter(l) => write!(f, "| {l}"),
            Stage::LineFormat(t) => {
                f.write_str("| line_format ")?;
                quoted(f, t)
            }
            Stage::LabelFormat(ops) => {
                f.write_str("| label_format ")?;
                join(f, ops, ", ")
            }
            Stage::Drop(refs) => {
                f.write_str("| drop ")?;
                join(f, refs, ", ")
            }
            Stage::Keep(refs) => {
                f.write_str("| keep ")?;
                join(f, refs, ", ")
            }
            Stage::Decolorize => f.write_str("| decolorize"),
        }
    }
}

impl Display for CmpOp {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Display for LabelFilter {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        // `and` binds tighter than `or` and both associate to the left, so a child needs
        // parentheses when it is looser than its parent, or equal and on the right.
        let paren = |f: &mut Formatter<'_>, child: &LabelFilter, needed: bool| {
            if needed {
                write!(f, "({child})")
            } else {
                write!(f, "{child}")
            }
        };
        match self {
            LabelFilter::Matcher(m) => m.fmt(f),
            LabelFilter::Number { name, op, value } => {
                write!(f, "{name} {op} {}", format_number(*value))
            }
            LabelFilter::Duration { name, op, value } => {
                write!(f, "{name} {op} {}", format_duration(*value))
            }
            LabelFilter::Bytes { name, op, value } => write!(f, "{name} {op} {value}B"),
            LabelFilter::Ip {
                name,
                negated,
                pattern,
            } => {
                write!(f, "{name} {} ip(", if *negated { "!=" } else { "=" })?;
                quoted(f, pattern)?;
                f.write_char(')')
            }
            LabelFilter::And(l, r) => {
                paren(f, l, matches!(**l, LabelFilter::Or(..)))?;
                f.write_str(" and ")?;
                paren(
                    f,
                    r,
                    matches!(**r, LabelFilter::Or(..) | LabelFilter::And(..)),
                )
            }
            LabelFilter::Or(l, r) => {
                paren(f, l, false)?;
                f.write_str(" or ")?;
                paren(f, r, matches!(**r, LabelFilter::Or(..)))
            }
        }
    }
}

impl Display for Grouping {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        f.write_str(if self.without { "without " } else { "by " })?;
        label_list(f, &self.labels)
    }
}

impl Display for Unwrap {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        match self.conversion {
            Some(c) => write!(f, "| unwrap {}({})", c.as_str(), self.label)?,
            None => write!(f, "| unwrap {}", self.label)?,
        }
        for p in &self.post_filters {
            write!(f, " | {p}")?;
        }
        Ok(())
    }
}

impl Display for LogRange {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        self.log.fmt(f)?;
        if let Some(u) = &self.unwrap {
            write!(f, " {u}")?;
        }
        // Ranges are Prometheus durations, so whole milliseconds. `{a="b"}[5m]` reads best
        // glued; after a pipeline a space keeps the range apart from the last operand.
        if !self.log.pipeline.is_empty() || self.unwrap.is_some() {
            f.write_char(' ')?;
        }
        write!(f, "[{}]", format_prometheus(self.range))?;
        if self.offset != 0 {
            write!(f, " offset {}", format_duration(self.offset))?;
        }
        Ok(())
    }
}

impl Display for RangeOp {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Display for VectorOp {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Display for BinOp {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Display for RangeAggregation {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        write!(f, "{}(", self.op)?;
        if let Some(p) = self.param {
            write!(f, "{}, ", format_number(p))?;
        }
        write!(f, "{})", self.range)?;
        if let Some(g) = &self.grouping {
            write!(f, " {g}")?;
        }
        Ok(())
    }
}

impl Display for VectorAggregation {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.op)?;
        if let Some(g) = &self.grouping {
            write!(f, " {g} ")?;
        }
        f.write_char('(')?;
        if let Some(k) = self.param {
            write!(f, "{k}, ")?;
        }
        write!(f, "{})", self.expr)
    }
}

impl Display for VectorMatching {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        f.write_str(if self.on { "on " } else { "ignoring " })?;
        label_list(f, &self.labels)?;
        match &self.group {
            Some(GroupModifier::Left(l)) => {
                f.write_str(" group_left ")?;
                label_list(f, l)
            }
            Some(GroupModifier::Right(l)) => {
                f.write_str(" group_right ")?;
                label_list(f, l)
            }
            None => Ok(()),
        }
    }
}

/// The operator and modifiers between the two operands: `+`, `> bool`, `* on (a) group_left ()`.
fn write_operator(f: &mut impl Write, b: &BinOpExpr) -> fmt::Result {
    f.write_str(b.op.as_str())?;
    if b.return_bool {
        f.write_str(" bool")?;
    }
    if let Some(m) = &b.matching {
        write!(f, " {m}")?;
    }
    Ok(())
}

/// Whether an operand of `parent` must be parenthesised to parse back the same way.
fn needs_parens(parent: BinOp, child: &SampleExpr, is_rhs: bool) -> bool {
    let SampleExpr::BinOp(c) = child else {
        return false;
    };
    let (pp, cp) = (parent.precedence(), c.op.precedence());
    cp < pp || (cp == pp && (is_rhs != parent.is_right_assoc()))
}

impl Display for BinOpExpr {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        let side = |f: &mut Formatter<'_>, e: &SampleExpr, is_rhs: bool| {
            if needs_parens(self.op, e, is_rhs) {
                write!(f, "({e})")
            } else {
                write!(f, "{e}")
            }
        };
        side(f, &self.lhs, false)?;
        f.write_char(' ')?;
        write_operator(f, self)?;
        f.write_char(' ')?;
        side(f, &self.rhs, true)
    }
}

impl Display for LabelReplace {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        write!(f, "label_replace({}", self.expr)?;
        for s in [&self.dst, &self.replacement, &self.src, &self.regex] {
            f.write_str(", ")?;
            quoted(f, s)?;
        }
        f.write_char(')')
    }
}

impl Display for SampleExpr {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        match self {
            SampleExpr::RangeAggregation(r) => r.fmt(f),
            SampleExpr::VectorAggregation(v) => v.fmt(f),
            SampleExpr::BinOp(b) => b.fmt(f),
            // NaN has no literal; `0 / 0` folds back to it.
            SampleExpr::Literal(v) if v.is_nan() => f.write_str("(0 / 0)"),
            SampleExpr::Literal(v) => f.write_str(&format_number(*v)),
            SampleExpr::Vector(v) => write!(f, "vector({})", format_number(*v)),
            SampleExpr::LabelReplace(l) => l.fmt(f),
        }
    }
}

/// Lines longer than this are broken up by the pretty printer.
const MAX_LINE: usize = 100;
const INDENT: &str = "  ";

/// `format_query` output: the canonical form when it fits on one line, otherwise metric
/// expressions are broken at aggregation arguments and binary operators, one level of
/// indentation per nesting level. Log queries and log ranges always stay on one line.
pub(crate) fn pretty(e: &Expr) -> String {
    match e {
        Expr::Log(l) => l.to_string(),
        Expr::Sample(s) => {
            let mut out = String::new();
            pretty_sample(&mut out, s, 0);
            out
        }
    }
}

fn pretty_sample(out: &mut String, s: &SampleExpr, depth: usize) {
    let pad = INDENT.repeat(depth);
    let flat = s.to_string();
    if pad.len() + flat.len() <= MAX_LINE {
        out.push_str(&pad);
        out.push_str(&flat);
        return;
    }
    match s {
        SampleExpr::RangeAggregation(r) => {
            let _ = writeln!(out, "{pad}{}(", r.op);
            if let Some(p) = r.param {
                let _ = writeln!(out, "{pad}{INDENT}{},", format_number(p));
            }
            let _ = write!(out, "{pad}{INDENT}{}\n{pad})", r.range);
            if let Some(g) = &r.grouping {
                let _ = write!(out, " {g}");
            }
        }
        SampleExpr::VectorAggregation(v) => {
            let _ = write!(out, "{pad}{}", v.op);
            if let Some(g) = &v.grouping {
                let _ = write!(out, " {g} ");
            }
            out.push_str("(\n");
            if let Some(k) = v.param {
                let _ = writeln!(out, "{pad}{INDENT}{k},");
            }
            pretty_sample(out, &v.expr, depth + 1);
            let _ = write!(out, "\n{pad})");
        }
        SampleExpr::BinOp(b) => {
            let operand = |out: &mut String, e: &SampleExpr, is_rhs: bool| {
                if needs_parens(b.op, e, is_rhs) {
                    let _ = writeln!(out, "{pad}(");
                    pretty_sample(out, e, depth + 1);
                    let _ = write!(out, "\n{pad})");
                } else {
                    pretty_sample(out, e, depth);
                }
            };
            operand(out, &b.lhs, false);
            out.push('\n');
            out.push_str(&pad);
            let _ = write_operator(out, b);
            out.push('\n');
            operand(out, &b.rhs, true);
        }
        SampleExpr::LabelReplace(l) => {
            let _ = writeln!(out, "{pad}label_replace(");
            pretty_sample(out, &l.expr, depth + 1);
            for s in [&l.dst, &l.replacement, &l.src, &l.regex] {
                out.push_str(",\n");
                out.push_str(&pad);
                out.push_str(INDENT);
                let _ = write_quoted(out, s);
            }
            let _ = write!(out, "\n{pad})");
        }
        SampleExpr::Literal(_) | SampleExpr::Vector(_) => {
            out.push_str(&pad);
            out.push_str(&flat);
        }
    }
}
