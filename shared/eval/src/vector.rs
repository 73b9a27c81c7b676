//! Vector aggregations (`sum by (…) (…)` and friends), one step at a time.

use std::cmp::Ordering;
use std::collections::hash_map::Entry;

use parquetry_logql::{
    Grouping, RangeAggregation, RangeOp, SampleExpr, VectorAggregation, VectorOp,
};
use parquetry_model::{Labels, hash_pairs};

use crate::intern::{Id, Interner};
use crate::range::{Grid, Tags, keeps, reduce_labels, walk_range};
use crate::{FastMap, IDENTITY_LABEL, RangeInput};

/// One vector aggregation with its label cache: the group of an input series is computed once
/// per query, not once per step.
pub(crate) struct VectorAgg {
    op: VectorOp,
    k: usize,
    grouping: Grouping,
    group_of: FastMap<Id, Id>,
}

/// Running state of one group within one step.
struct Acc {
    group: Id,
    value: f64,
    mean: f64,
    count: usize,
    members: Vec<(Id, f64)>,
}

impl Acc {
    /// A group's state after its first sample in a step.
    fn first(op: VectorOp, group: Id, v: f64, members: Vec<(Id, f64)>) -> Acc {
        Acc {
            group,
            value: if matches!(op, VectorOp::Stddev | VectorOp::Stdvar) {
                0.0
            } else {
                v
            },
            mean: v,
            count: 1,
            members,
        }
    }

    /// Folds in the group's next sample of the step (not for the ranking operations).
    fn add(&mut self, op: VectorOp, v: f64) {
        match op {
            VectorOp::Sum => self.value += v,
            VectorOp::Avg => {
                self.count += 1;
                self.mean += (v - self.mean) / self.count as f64;
            }
            VectorOp::Max => {
                if self.value < v || self.value.is_nan() {
                    self.value = v;
                }
            }
            VectorOp::Min => {
                if self.value > v || self.value.is_nan() {
                    self.value = v;
                }
            }
            VectorOp::Count => self.count += 1,
            VectorOp::Stddev | VectorOp::Stdvar => {
                self.count += 1;
                let delta = v - self.mean;
                self.mean += delta / self.count as f64;
                self.value += delta * (v - self.mean);
            }
            VectorOp::Topk
            | VectorOp::Bottomk
            | VectorOp::ApproxTopk
            | VectorOp::Sort
            | VectorOp::SortDesc => {}
        }
    }

    /// The group's value for the step.
    fn value(&self, op: VectorOp) -> f64 {
        let n = self.count as f64;
        match op {
            VectorOp::Avg => self.mean,
            VectorOp::Count => n,
            VectorOp::Stddev => (self.value / n).sqrt(),
            VectorOp::Stdvar => self.value / n,
            _ => self.value,
        }
    }
}

impl VectorAgg {
    pub(crate) fn new(op: VectorOp, k: Option<usize>, grouping: Option<Grouping>) -> Self {
        VectorAgg {
            op,
            k: k.unwrap_or(0),
            // No grouping means one group with no labels, exactly like `by ()`.
            grouping: grouping.unwrap_or_default(),
            group_of: FastMap::default(),
        }
    }

    fn group(&mut self, id: Id, interner: &mut Interner) -> Id {
        if let Some(&g) = self.group_of.get(&id) {
            return g;
        }
        let labels = reduce_labels(interner.get(id), &self.grouping);
        let g = interner.intern(labels);
        self.group_of.insert(id, g);
        g
    }

    fn ranks(&self) -> bool {
        matches!(
            self.op,
            VectorOp::Topk
                | VectorOp::Bottomk
                | VectorOp::ApproxTopk
                | VectorOp::Sort
                | VectorOp::SortDesc
        )
    }

    /// Aggregates one step's vector.
    pub(crate) fn apply(
        &mut self,
        input: Vec<(Id, f64)>,
        interner: &mut Interner,
    ) -> Vec<(Id, f64)> {
        let mut index: FastMap<Id, usize> = FastMap::default();
        let mut accs: Vec<Acc> = Vec::new();
        let ranks = self.ranks();
        for (id, v) in input {
            let g = if matches!(self.op, VectorOp::Sort | VectorOp::SortDesc) {
                // sort/sort_desc take no grouping: the whole vector is one group.
                Id::MAX
            } else {
                self.group(id, interner)
            };
            let Some(&i) = index.get(&g) else {
                index.insert(g, accs.len());
                let members = if ranks { vec![(id, v)] } else { Vec::new() };
                accs.push(Acc::first(self.op, g, v, members));
                continue;
            };
            let a = &mut accs[i];
            if ranks {
                a.members.push((id, v));
            } else {
                a.add(self.op, v);
            }
        }

        if ranks {
            return self.rank(accs, interner);
        }
        accs.into_iter()
            .map(|a| (a.group, a.value(self.op)))
            .collect()
    }

    /// topk/bottomk/sort/sort_desc: the members themselves, in value order (NaN last; bottomk's
    /// kept members then reversed, as Loki lists them), groups
    /// ordered by their labels. Ties are broken by labels so the output is deterministic where
    /// Loki's heap order is not.
    fn rank(&self, mut accs: Vec<Acc>, interner: &Interner) -> Vec<(Id, f64)> {
        let descending = matches!(
            self.op,
            VectorOp::Topk | VectorOp::ApproxTopk | VectorOp::SortDesc
        );
        let limit = match self.op {
            VectorOp::Sort | VectorOp::SortDesc => usize::MAX,
            _ => self.k,
        };
        if accs.len() > 1 {
            accs.sort_by(|a, b| interner.get(a.group).cmp(interner.get(b.group)));
        }
        let mut out = Vec::new();
        for mut a in accs {
            a.members.sort_by(|x, y| {
                let by_value = match (x.1.is_nan(), y.1.is_nan()) {
                    (true, true) => Ordering::Equal,
                    (true, false) => Ordering::Greater,
                    (false, true) => Ordering::Less,
                    _ if descending => y.1.partial_cmp(&x.1).unwrap_or(Ordering::Equal),
                    _ => x.1.partial_cmp(&y.1).unwrap_or(Ordering::Equal),
                };
                by_value.then_with(|| interner.get(x.0).cmp(interner.get(y.0)))
            });
            let start = out.len();
            out.extend(a.members.into_iter().take(limit));
            // Loki lists the series bottomk keeps highest value first (the order of its heap).
            if self.op == VectorOp::Bottomk {
                out[start..].reverse();
            }
        }
        out
    }
}

/// A `sum`, `avg`, `min`, `max`, `count`, `stddev` or `stdvar` right above a range
/// aggregation, computed while the range aggregation is: each input series' points go
/// straight into the accumulators of their group at each step.
///
/// Series are walked in the order the step vectors would list them in, so every
/// accumulator sees its values in the same order as the step-by-step path and the results are
/// the same to the last bit. What it saves is what a parser query with a unique id per line
/// spends most on: the input series are neither interned nor transposed into step vectors,
/// and what stays after the walk is one accumulator per group and step, the size of the
/// answer.
pub(crate) struct FoldedAgg {
    op: VectorOp,
    /// Per step, the groups' accumulators in order of first appearance.
    steps: Vec<Vec<Acc>>,
    /// As [`crate::range::RangeOutput::first_error`].
    pub(crate) first_error: Option<(usize, Id)>,
}

impl FoldedAgg {
    /// The range aggregation `va` folds, when it is one of the above directly over one.
    pub(crate) fn folds(va: &VectorAggregation) -> Option<&RangeAggregation> {
        match &*va.expr {
            // `absent_over_time` makes its one series from what the others did not cover.
            SampleExpr::RangeAggregation(ra)
                if va.op.reduces_groups() && ra.op != RangeOp::AbsentOverTime =>
            {
                Some(ra)
            }
            _ => None,
        }
    }

    pub(crate) fn new(
        va: &VectorAggregation,
        ra: &RangeAggregation,
        input: RangeInput,
        grid: &Grid,
        interner: &mut Interner,
    ) -> FoldedAgg {
        let op = va.op;
        let grouping = va.grouping.clone().unwrap_or_default();
        let mut steps: Vec<Vec<Acc>> = (0..grid.steps).map(|_| Vec::new()).collect();
        let mut slot: FastMap<(u32, Id), u32> = FastMap::default();
        let mut groups: FastMap<u64, Id> = FastMap::default();
        let tags = Tags {
            tag: |labels: &Labels, interner: &mut Interner| {
                group_id(labels, &grouping, &mut groups, interner)
            },
            // A collapsed series' group holds every label the grouping keeps, unless it keeps
            // the identity.
            per_group: !keeps(&grouping, IDENTITY_LABEL),
        };
        let first_error = walk_range(ra, input, grid, interner, tags, |_, _, g, points, _| {
            for &(k, v) in points {
                let Some(accs) = steps.get_mut(k as usize) else {
                    continue;
                };
                match slot.entry((k, g)) {
                    Entry::Occupied(i) => accs[*i.get() as usize].add(op, v),
                    Entry::Vacant(e) => {
                        e.insert(accs.len() as u32);
                        accs.push(Acc::first(op, g, v, Vec::new()));
                    }
                }
            }
        });
        FoldedAgg {
            op,
            steps,
            first_error,
        }
    }

    /// The aggregation's vector at step `k`.
    pub(crate) fn step(&self, k: usize) -> Vec<(Id, f64)> {
        self.steps.get(k).map_or_else(Vec::new, |accs| {
            accs.iter().map(|a| (a.group, a.value(self.op))).collect()
        })
    }
}

/// The interned group of `labels` under `grouping`, found by a hash of the labels it keeps:
/// most series fall into a group already seen, and then nothing is allocated.
fn group_id(
    labels: &Labels,
    grouping: &Grouping,
    seen: &mut FastMap<u64, Id>,
    interner: &mut Interner,
) -> Id {
    let kept = || {
        labels
            .iter()
            .filter(|l| keeps(grouping, &l.name))
            .map(|l| (l.name.as_str(), l.value.as_str()))
    };
    let h = hash_pairs(kept(), 0);
    if let Some(&id) = seen.get(&h) {
        let known = interner
            .get(id)
            .iter()
            .map(|l| (l.name.as_str(), l.value.as_str()));
        if known.eq(kept()) {
            return id;
        }
    }
    let id = interner.intern(reduce_labels(labels, grouping));
    seen.entry(h).or_insert(id);
    id
}
