//! Binary operators between two instant vectors, and between a scalar literal and a vector,
//! with PromQL matching semantics as Loki implements them.

use std::collections::{HashMap, HashSet};

use parquetry_logql::{BinOp, GroupModifier, VectorMatching};

use crate::error::EvalError;
use crate::intern::{Id, Interner, filter_labels};

/// Matching cardinality, with the `group_x(…)` labels copied from the "one" side.
enum Card {
    OneToOne,
    ManyToOne(Vec<String>),
    OneToMany(Vec<String>),
}

/// A vector-vector operator with its caches: matching signatures and result label sets are
/// computed once per series (pair), not once per step.
pub(crate) struct VectorBinOp {
    op: BinOp,
    return_bool: bool,
    /// `Some((on, labels))` when `on(…)`/`ignoring(…)` was written.
    matching: Option<(bool, Vec<String>)>,
    card: Card,
    sigs: HashMap<Id, Id>,
    metrics: HashMap<(Id, Id), Id>,
}

impl VectorBinOp {
    pub(crate) fn new(op: BinOp, return_bool: bool, matching: Option<VectorMatching>) -> Self {
        let (matching, card) = match matching {
            None => (None, Card::OneToOne),
            Some(m) => {
                let card = match m.group {
                    None => Card::OneToOne,
                    Some(GroupModifier::Left(l)) => Card::ManyToOne(l),
                    Some(GroupModifier::Right(l)) => Card::OneToMany(l),
                };
                (Some((m.on, m.labels)), card)
            }
        };
        VectorBinOp {
            op,
            return_bool,
            matching,
            card,
            sigs: HashMap::new(),
            metrics: HashMap::new(),
        }
    }

    /// The matching signature: the label set restricted by `on`/`ignoring`, interned. Without
    /// a matching clause it is the series itself.
    fn sig(&mut self, id: Id, interner: &mut Interner) -> Id {
        let Some((on, names)) = &self.matching else {
            return id;
        };
        if let Some(&s) = self.sigs.get(&id) {
            return s;
        }
        let listed = |n: &str| names.iter().any(|l| l == n);
        let labels = if *on {
            filter_labels(interner.get(id), listed)
        } else {
            filter_labels(interner.get(id), |n| !listed(n))
        };
        let s = interner.intern(labels);
        self.sigs.insert(id, s);
        s
    }

    /// The labels of a result: the "many" (or left) side's, reduced by `on`/`ignoring` for
    /// one-to-one matching, plus the `group_x(…)` labels taken from the "one" side.
    fn result_metric(&mut self, many: Id, one: Id, interner: &mut Interner) -> Id {
        if let Some(&m) = self.metrics.get(&(many, one)) {
            return m;
        }
        let mut labels = match (&self.card, &self.matching) {
            (Card::OneToOne, Some((true, names))) => {
                filter_labels(interner.get(many), |n| names.iter().any(|l| l == n))
            }
            (Card::OneToOne, Some((false, names))) => {
                filter_labels(interner.get(many), |n| !names.iter().any(|l| l == n))
            }
            _ => interner.get(many).clone(),
        };
        if let Card::ManyToOne(include) | Card::OneToMany(include) = &self.card {
            for name in include {
                match interner.get(one).get(name) {
                    Some(v) if !v.is_empty() => {
                        let v = v.to_string();
                        labels.set(name, &v);
                    }
                    _ => labels = filter_labels(&labels, |n| n != name),
                }
            }
        }
        let m = interner.intern(labels);
        self.metrics.insert((many, one), m);
        m
    }

    /// Applies the operator to one step's vectors.
    pub(crate) fn apply(
        &mut self,
        lhs: Vec<(Id, f64)>,
        rhs: Vec<(Id, f64)>,
        interner: &mut Interner,
    ) -> Result<Vec<(Id, f64)>, EvalError> {
        match self.op {
            BinOp::And | BinOp::Or | BinOp::Unless => Ok(self.set_op(lhs, rhs, interner)),
            _ => self.arithmetic(lhs, rhs, interner),
        }
    }

    fn set_op(
        &mut self,
        lhs: Vec<(Id, f64)>,
        rhs: Vec<(Id, f64)>,
        interner: &mut Interner,
    ) -> Vec<(Id, f64)> {
        match self.op {
            BinOp::And if lhs.is_empty() || rhs.is_empty() => Vec::new(),
            BinOp::Or if lhs.is_empty() => rhs,
            BinOp::Or if rhs.is_empty() => lhs,
            BinOp::Unless if lhs.is_empty() || rhs.is_empty() => lhs,
            BinOp::Or => {
                let left: HashSet<Id> = lhs.iter().map(|s| self.sig(s.0, interner)).collect();
                let mut out = lhs;
                for s in rhs {
                    if !left.contains(&self.sig(s.0, interner)) {
                        out.push(s);
                    }
                }
                out
            }
            _ => {
                let right: HashSet<Id> = rhs.iter().map(|s| self.sig(s.0, interner)).collect();
                let keep_matched = self.op == BinOp::And;
                lhs.into_iter()
                    .filter(|s| right.contains(&self.sig(s.0, interner)) == keep_matched)
                    .collect()
            }
        }
    }

    fn arithmetic(
        &mut self,
        lhs: Vec<(Id, f64)>,
        rhs: Vec<(Id, f64)>,
        interner: &mut Interner,
    ) -> Result<Vec<(Id, f64)>, EvalError> {
        // group_right is group_left with the sides swapped; values are swapped back below.
        let swapped = matches!(self.card, Card::OneToMany(_));
        let (many, one) = if swapped { (rhs, lhs) } else { (lhs, rhs) };
        let mut one_by_sig: HashMap<Id, (Id, f64)> = HashMap::with_capacity(one.len());
        for (id, v) in one {
            let sig = self.sig(id, interner);
            if one_by_sig.insert(sig, (id, v)).is_some() {
                let side = if swapped { "left" } else { "right" };
                return Err(EvalError::DuplicateSeries { side });
            }
        }
        let one_to_one = matches!(self.card, Card::OneToOne);
        let mut matched: HashSet<Id> = HashSet::new();
        let mut produced: HashSet<(Id, Id)> = HashSet::new();
        let mut out = Vec::new();
        for (id, v) in many {
            let sig = self.sig(id, interner);
            let Some(&(one_id, one_v)) = one_by_sig.get(&sig) else {
                continue;
            };
            let metric = self.result_metric(id, one_id, interner);
            if one_to_one {
                if !matched.insert(sig) {
                    return Err(EvalError::ManyToOneNotExplicit);
                }
            } else if !produced.insert((sig, metric)) {
                return Err(EvalError::GroupingNotUnique);
            }
            let (l, r) = if swapped { (one_v, v) } else { (v, one_v) };
            if let Some(v) = merge(self.op, self.return_bool, l, r, l) {
                out.push((metric, v));
            }
        }
        Ok(out)
    }
}

/// One arithmetic or comparison result. A comparison without `bool` filters: it keeps
/// `keep` (the vector side's value) when true and drops the sample when false.
fn merge(op: BinOp, return_bool: bool, l: f64, r: f64, keep: f64) -> Option<f64> {
    let v = op.apply_scalar(l, r)?;
    if op.is_comparison() && !return_bool {
        return (v == 1.0).then_some(keep);
    }
    Some(v)
}

/// `literal op vector` (`literal_left`) or `vector op literal`: the literal meets every sample
/// and the result keeps the sample's labels.
pub(crate) fn scalar_binop(
    op: BinOp,
    return_bool: bool,
    literal: f64,
    literal_left: bool,
    vector: Vec<(Id, f64)>,
) -> Result<Vec<(Id, f64)>, EvalError> {
    if op.is_set() {
        return Err(EvalError::Unsupported(format!(
            "literal operand of logical/set binary operation ({})",
            op.as_str()
        )));
    }
    Ok(vector
        .into_iter()
        .filter_map(|(id, v)| {
            let (l, r) = if literal_left {
                (literal, v)
            } else {
                (v, literal)
            };
            merge(op, return_bool, l, r, v).map(|x| (id, x))
        })
        .collect())
}
