//! The compiled query tree. Range aggregations are evaluated over the whole grid up front
//! (they own the raw samples); everything above them runs one step at a time on `(id, value)`
//! vectors, the way Loki's step evaluators do, so errors surface at the same step as in Loki.

use std::collections::HashMap;

use parquetry_logql::{BinOp, LabelReplace, SampleExpr, regexes::anchored_regex};
use regex::Regex;

use crate::RangeInput;
use crate::binop::{VectorBinOp, scalar_binop};
use crate::error::EvalError;
use crate::intern::{Id, Interner, filter_labels};
use crate::range::{ERROR_LABEL, Grid, RangeOutput, evaluate_range};
use crate::vector::{FoldedAgg, VectorAgg};

pub(crate) enum Node {
    Range(RangeOutput),
    /// A vector aggregation computed with the range aggregation under it (see [`FoldedAgg`]).
    Folded(FoldedAgg),
    /// `vector(N)`, or a literal where a vector is expected: one sample with no labels.
    Constant(f64),
    VectorAgg(VectorAgg, Box<Node>),
    BinOp(VectorBinOp, Box<Node>, Box<Node>),
    ScalarBinOp {
        op: BinOp,
        return_bool: bool,
        literal: f64,
        literal_left: bool,
        child: Box<Node>,
    },
    LabelReplace(LabelReplacer, Box<Node>),
}

/// Builds the tree, evaluating each range aggregation against its input (taken from `inputs`
/// in source order, the order of `SampleExpr::range_aggregations`).
pub(crate) fn compile(
    expr: &SampleExpr,
    inputs: &mut impl Iterator<Item = RangeInput>,
    grid: &Grid,
    interner: &mut Interner,
) -> Result<Node, EvalError> {
    Ok(match expr {
        SampleExpr::RangeAggregation(ra) => {
            let input = inputs.next().unwrap_or_default();
            if let Some(d) = &input.collapsed.direct {
                // Only the aggregation the scan folded them for can take them.
                return Err(EvalError::UnfoldedDirect {
                    folded: d.op_name(),
                });
            }
            Node::Range(evaluate_range(ra, input, grid, interner))
        }
        SampleExpr::Literal(v) | SampleExpr::Vector(v) => Node::Constant(*v),
        SampleExpr::VectorAggregation(va) if let Some(ra) = FoldedAgg::folds(va) => {
            let input = inputs.next().unwrap_or_default();
            Node::Folded(FoldedAgg::new(va, ra, input, grid, interner)?)
        }
        SampleExpr::VectorAggregation(va) => {
            let child = compile(&va.expr, inputs, grid, interner)?;
            Node::VectorAgg(
                VectorAgg::new(va.op, va.param, va.grouping.clone()),
                Box::new(child),
            )
        }
        SampleExpr::BinOp(b) => {
            let lhs = compile(&b.lhs, inputs, grid, interner)?;
            let rhs = compile(&b.rhs, inputs, grid, interner)?;
            match (&*b.lhs, &*b.rhs) {
                (SampleExpr::Literal(v), _) => Node::ScalarBinOp {
                    op: b.op,
                    return_bool: b.return_bool,
                    literal: *v,
                    literal_left: true,
                    child: Box::new(rhs),
                },
                (_, SampleExpr::Literal(v)) => Node::ScalarBinOp {
                    op: b.op,
                    return_bool: b.return_bool,
                    literal: *v,
                    literal_left: false,
                    child: Box::new(lhs),
                },
                _ => Node::BinOp(
                    VectorBinOp::new(b.op, b.return_bool, b.matching.clone()),
                    Box::new(lhs),
                    Box::new(rhs),
                ),
            }
        }
        SampleExpr::LabelReplace(lr) => {
            let child = compile(&lr.expr, inputs, grid, interner)?;
            Node::LabelReplace(LabelReplacer::new(lr)?, Box::new(child))
        }
    })
}

impl Node {
    /// The instant vector at step `k`.
    pub(crate) fn eval(
        &mut self,
        k: usize,
        interner: &mut Interner,
    ) -> Result<Vec<(Id, f64)>, EvalError> {
        match self {
            Node::Range(out) => {
                failed_by(out.first_error, k, interner)?;
                Ok(out.step(k).to_vec())
            }
            Node::Folded(agg) => {
                failed_by(agg.first_error, k, interner)?;
                Ok(agg.step(k))
            }
            Node::Constant(v) => Ok(vec![(interner.intern(Default::default()), *v)]),
            Node::VectorAgg(agg, child) => {
                let input = child.eval(k, interner)?;
                Ok(agg.apply(input, interner))
            }
            Node::BinOp(op, lhs, rhs) => {
                // Loki advances the right leg first, so its errors win at a shared step.
                let r = rhs.eval(k, interner)?;
                let l = lhs.eval(k, interner)?;
                op.apply(l, r, interner)
            }
            Node::ScalarBinOp {
                op,
                return_bool,
                literal,
                literal_left,
                child,
            } => scalar_binop(
                *op,
                *return_bool,
                *literal,
                *literal_left,
                child.eval(k, interner)?,
            ),
            Node::LabelReplace(lr, child) => {
                let input = child.eval(k, interner)?;
                Ok(input
                    .into_iter()
                    .map(|(id, v)| (lr.replace(id, interner), v))
                    .collect())
            }
        }
    }
}

/// Loki fails a metric query once evaluation reaches the first step of a series that
/// carries a pipeline error.
fn failed_by(
    first_error: Option<(usize, Id)>,
    k: usize,
    interner: &Interner,
) -> Result<(), EvalError> {
    match first_error {
        Some((ek, id)) if ek <= k => {
            let labels = interner.get(id).clone();
            let err_type = labels.get(ERROR_LABEL).unwrap_or_default().to_string();
            Err(EvalError::PipelineError { err_type, labels })
        }
        _ => Ok(()),
    }
}

/// `label_replace(v, dst, replacement, src, regex)` with Prometheus semantics: when the fully
/// anchored regex matches the value of `src` (empty if missing), `dst` is set to the expanded
/// replacement, or removed if that is empty; otherwise the series is unchanged.
pub(crate) struct LabelReplacer {
    dst: String,
    replacement: String,
    src: String,
    regex: Regex,
    cache: HashMap<Id, Id>,
}

impl LabelReplacer {
    fn new(lr: &LabelReplace) -> Result<Self, EvalError> {
        let regex = anchored_regex(&lr.regex)
            .map_err(|e| EvalError::Unsupported(format!("invalid regex in label_replace: {e}")))?;
        Ok(LabelReplacer {
            dst: lr.dst.clone(),
            replacement: lr.replacement.clone(),
            src: lr.src.clone(),
            regex,
            cache: HashMap::new(),
        })
    }

    fn replace(&mut self, id: Id, interner: &mut Interner) -> Id {
        if let Some(&out) = self.cache.get(&id) {
            return out;
        }
        let labels = interner.get(id);
        let src = labels.get(&self.src).unwrap_or("");
        let out = match self.regex.captures(src) {
            None => id,
            Some(caps) => {
                let mut value = String::new();
                caps.expand(&self.replacement, &mut value);
                let mut next = filter_labels(labels, |n| n != self.dst);
                if !value.is_empty() {
                    next.set(&self.dst, &value);
                }
                interner.intern(next)
            }
        };
        self.cache.insert(id, out);
        out
    }
}
