//! Whole-query semantic rules that Loki checks after parsing: the non-empty selector rule
//! and the range aggregation table (parameter, grouping, unwrap). All errors are
//! position-less (`parse error : <msg>`).

use crate::ast::*;
use crate::error::ParseError;

/// Loki's exact text for a selector whose matchers all match the empty string.
pub const EMPTY_COMPATIBLE_MSG: &str = "queries require at least one regexp or equality matcher that does not have an empty-compatible value. For instance, app=~\".*\" does not meet this requirement, but app=~\".+\" will";

pub(crate) fn validate(expr: &Expr) -> Result<(), ParseError> {
    match expr {
        Expr::Log(l) => validate_log(l),
        Expr::Sample(s) => validate_sample(s),
    }
}

fn validate_sample(s: &SampleExpr) -> Result<(), ParseError> {
    match s {
        SampleExpr::RangeAggregation(r) => {
            validate_range_aggregation(r)?;
            validate_log(&r.range.log)
        }
        SampleExpr::VectorAggregation(v) => validate_sample(&v.expr),
        SampleExpr::BinOp(b) => {
            validate_sample(&b.lhs)?;
            validate_sample(&b.rhs)
        }
        SampleExpr::LabelReplace(l) => validate_sample(&l.expr),
        SampleExpr::Literal(_) | SampleExpr::Vector(_) => Ok(()),
    }
}

/// At least one matcher must reject the empty string, so a query never selects "every
/// stream that lacks a label".
fn validate_log(l: &LogExpr) -> Result<(), ParseError> {
    if l.selector.iter().all(|m| m.matches_empty()) {
        return Err(ParseError::validation(EMPTY_COMPATIBLE_MSG));
    }
    Ok(())
}

fn validate_range_aggregation(r: &RangeAggregation) -> Result<(), ParseError> {
    let op = r.op.as_str();
    match (r.op, r.param) {
        (RangeOp::QuantileOverTime, None) => {
            return Err(ParseError::validation(format!(
                "parameter required for operation {op}"
            )));
        }
        (RangeOp::QuantileOverTime, Some(_)) | (_, None) => {}
        (_, Some(p)) => {
            return Err(ParseError::validation(format!(
                "parameter {p} not supported for operation {op}"
            )));
        }
    }
    if r.grouping.is_some() && !r.op.allows_grouping() {
        return Err(ParseError::validation(format!(
            "grouping not allowed for {op} aggregation"
        )));
    }
    match (r.op.unwrap_rule(), r.range.unwrap.is_some()) {
        (UnwrapRule::Forbidden, true) => Err(ParseError::validation(format!(
            "invalid aggregation {op} with unwrap"
        ))),
        (UnwrapRule::Required, false) => Err(ParseError::validation(format!(
            "invalid aggregation {op} without unwrap"
        ))),
        _ => Ok(()),
    }
}
