//! Vector aggregations (`sum by (…) (…)` and friends), one step at a time.

use std::cmp::Ordering;

use parquetry_logql::{Grouping, VectorOp};

use crate::FastMap;
use crate::intern::{Id, Interner};
use crate::range::reduce_labels;

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
                accs.push(Acc {
                    group: g,
                    value: if matches!(self.op, VectorOp::Stddev | VectorOp::Stdvar) {
                        0.0
                    } else {
                        v
                    },
                    mean: v,
                    count: 1,
                    members: if ranks { vec![(id, v)] } else { Vec::new() },
                });
                continue;
            };
            let a = &mut accs[i];
            match self.op {
                VectorOp::Sum => a.value += v,
                VectorOp::Avg => {
                    a.count += 1;
                    a.mean += (v - a.mean) / a.count as f64;
                }
                VectorOp::Max => {
                    if a.value < v || a.value.is_nan() {
                        a.value = v;
                    }
                }
                VectorOp::Min => {
                    if a.value > v || a.value.is_nan() {
                        a.value = v;
                    }
                }
                VectorOp::Count => a.count += 1,
                VectorOp::Stddev | VectorOp::Stdvar => {
                    a.count += 1;
                    let delta = v - a.mean;
                    a.mean += delta / a.count as f64;
                    a.value += delta * (v - a.mean);
                }
                VectorOp::Topk
                | VectorOp::Bottomk
                | VectorOp::ApproxTopk
                | VectorOp::Sort
                | VectorOp::SortDesc => a.members.push((id, v)),
            }
        }

        if ranks {
            return self.rank(accs, interner);
        }
        accs.into_iter()
            .map(|a| {
                let n = a.count as f64;
                let v = match self.op {
                    VectorOp::Avg => a.mean,
                    VectorOp::Count => n,
                    VectorOp::Stddev => (a.value / n).sqrt(),
                    VectorOp::Stdvar => a.value / n,
                    _ => a.value,
                };
                (a.group, v)
            })
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
