//! What of a log pipeline the Parquet scan can evaluate itself.
//!
//! Line filters that come before anything rewriting the line are turned into DataFusion
//! predicates on `line`, so the scan skips rows (and, with late materialisation, line bytes)
//! that cannot match. A filter is pushed *exactly* when the predicate means the same as the
//! LogQL filter; pattern filters are pushed as a superset (a regex that accepts at least
//! what the pattern accepts) and then re-checked by the pipeline.

use datafusion::logical_expr::expr::Like;
use datafusion::logical_expr::{Expr, Operator, and, binary_expr, col, lit, not, or};
use parquetry_logql::{LineFilter, LineFilterOp, LineFilterValue, Stage};
use parquetry_pipeline::Pipeline;

use crate::QueryError;

/// Compiles a pipeline; a stage that does not compile (a bad template, say) is reported the
/// way Loki reports it: `parse error : stage '<stage>' : <reason>`.
pub fn compile_pipeline(stages: &[Stage]) -> Result<Pipeline, QueryError> {
    Pipeline::new(stages).map_err(|e| {
        let stage = stages
            .iter()
            .find(|s| Pipeline::new(std::slice::from_ref(*s)).is_err());
        match stage {
            Some(s) => QueryError::BadRequest(format!("parse error : stage '{s}' : {e}")),
            None => QueryError::BadRequest(e.to_string()),
        }
    })
}
use parquetry_store::schema::COL_LINE;

/// The scan predicate for a pipeline, and whether it is the whole pipeline.
#[derive(Debug, Clone, Default)]
pub struct Pushdown {
    /// Conjunction of the pushed line filters, if any.
    pub predicate: Option<Expr>,
    /// True when the predicate alone is the pipeline: no stage is left to run per entry.
    pub exact: bool,
}

impl Pushdown {
    /// What of `pipeline` the scan can evaluate.
    pub fn of(pipeline: &[Stage]) -> Pushdown {
        let mut acc: Option<Expr> = None;
        let mut exact = true;
        for stage in pipeline {
            match stage {
                Stage::LineFilter(f) => match one_line_filter(f) {
                    Some((e, is_exact)) => {
                        exact &= is_exact;
                        acc = Some(match acc {
                            Some(a) => and(a, e),
                            None => e,
                        });
                    }
                    None => exact = false,
                },
                // These rewrite the line: later filters see a different line than the scan.
                Stage::LineFormat(_) | Stage::Decolorize | Stage::Unpack => {
                    return Pushdown {
                        predicate: acc,
                        exact: false,
                    };
                }
                // Parsers, label filters and label edits leave the line alone.
                _ => exact = false,
            }
        }
        Pushdown {
            predicate: acc,
            exact,
        }
    }
}

/// One line filter as a predicate, with its exactness; `None` if it cannot be pushed.
fn one_line_filter(f: &LineFilter) -> Option<(Expr, bool)> {
    let mut alternatives = Vec::with_capacity(f.values.len());
    for v in &f.values {
        let LineFilterValue::Str(s) = v else {
            return None;
        };
        alternatives.push(match f.op {
            LineFilterOp::Contains | LineFilterOp::NotContains => contains(s),
            LineFilterOp::Regex | LineFilterOp::NotRegex => {
                binary_expr(col(COL_LINE), Operator::RegexMatch, lit(s.clone()))
            }
            LineFilterOp::Pattern => binary_expr(
                col(COL_LINE),
                Operator::RegexMatch,
                lit(pattern_to_regex(s)),
            ),
            // The negation of a superset is a subset: never push.
            LineFilterOp::NotPattern => return None,
        });
    }
    let any = alternatives.into_iter().reduce(or)?;
    Some(match f.op {
        LineFilterOp::Contains | LineFilterOp::Regex => (any, true),
        LineFilterOp::Pattern => (any, false),
        // `!= "a" or "b"` keeps lines containing neither.
        _ => (not(any), true),
    })
}

/// Substring match as SQL LIKE, which DataFusion evaluates with a fast memchr-based kernel.
fn contains(s: &str) -> Expr {
    if s.is_empty() {
        return lit(true);
    }
    let mut pat = String::with_capacity(s.len() + 2);
    pat.push('%');
    for c in s.chars() {
        if matches!(c, '%' | '_' | '\\') {
            pat.push('\\');
        }
        pat.push(c);
    }
    pat.push('%');
    Expr::Like(Like::new(
        false,
        Box::new(col(COL_LINE)),
        Box::new(lit(pat)),
        Some('\\'),
        false,
    ))
}

/// A pattern filter (`|> "<_> error <_>"`) as an anchored regex: literals must match in
/// order, each `<…>` capture matches anything.
fn pattern_to_regex(p: &str) -> String {
    let mut out = String::from("^(?s)");
    let mut rest = p;
    while let Some(open) = rest.find('<') {
        let close = rest[open..].find('>').map(|c| open + c);
        let is_capture = close.is_some_and(|c| {
            let name = &rest[open + 1..c];
            !name.is_empty()
                && name
                    .chars()
                    .all(|ch| ch == '_' || ch.is_ascii_alphanumeric())
        });
        match (close, is_capture) {
            (Some(c), true) => {
                out.push_str(&regex::escape(&rest[..open]));
                out.push_str(".*");
                rest = &rest[c + 1..];
            }
            _ => {
                out.push_str(&regex::escape(&rest[..=open]));
                rest = &rest[open + 1..];
            }
        }
    }
    out.push_str(&regex::escape(rest));
    out.push('$');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns() {
        let re = regex::Regex::new(&pattern_to_regex("<_> error <code>")).unwrap();
        assert!(re.is_match("ts=1 error 500"));
        assert!(!re.is_match("ts=1 warn 500"));
        let re = regex::Regex::new(&pattern_to_regex("a <b")).unwrap();
        assert!(re.is_match("a <b"));
    }
}
