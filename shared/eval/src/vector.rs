//! Vector aggregations (`sum by (…) (…)` and friends), one step at a time.

use std::cmp::Ordering;
use std::collections::hash_map::Entry;

use parquetry_logql::{
    Grouping, RangeAggregation, RangeOp, SampleExpr, VectorAggregation, VectorOp,
};
use parquetry_model::{Labels, hash_pairs};

use crate::error::EvalError;
use crate::exact::ExactSum;
use crate::intern::{Id, Interner};
use crate::range::{Grid, Tags, keeps, reduce_labels, walk_range};
use crate::{EvalParams, FastMap, IDENTITY_LABEL, RangeInput};

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
    /// `max`/`min`'s extreme; `stddev`/`stdvar`'s running sum of squared deviations.
    value: f64,
    /// `stddev`/`stdvar`'s running mean.
    mean: f64,
    /// `sum`'s and `avg`'s sum, exact so that it does not depend on the order of the series
    /// (see [`ExactSum`]).
    sum: ExactSum,
    count: usize,
    members: Vec<(Id, f64)>,
}

impl Acc {
    /// A group's state after its first sample in a step.
    fn first(op: VectorOp, group: Id, v: f64, members: Vec<(Id, f64)>) -> Acc {
        let mut sum = ExactSum::default();
        if matches!(op, VectorOp::Sum | VectorOp::Avg) {
            sum.add(v);
        }
        Acc {
            group,
            value: if matches!(op, VectorOp::Stddev | VectorOp::Stdvar) {
                0.0
            } else {
                v
            },
            mean: v,
            sum,
            count: 1,
            members,
        }
    }

    /// A group's state from the cell of series folded in the scan ([`Direct`]).
    fn of_cell(group: Id, cell: &DirectCell) -> Acc {
        Acc {
            group,
            value: cell.extreme,
            mean: 0.0,
            sum: cell.sum.clone(),
            count: cell.count as usize,
            members: Vec::new(),
        }
    }

    /// Folds in the group's next sample of the step (not for the ranking operations).
    fn add(&mut self, op: VectorOp, v: f64) {
        match op {
            VectorOp::Sum => self.sum.add(v),
            VectorOp::Avg => {
                self.count += 1;
                self.sum.add(v);
            }
            VectorOp::Max | VectorOp::Min => self.value = extreme(op, self.value, v),
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

    /// Folds in a cell of series folded in the scan (an op [`Direct::serves`]).
    fn absorb(&mut self, op: VectorOp, cell: &DirectCell) {
        self.count += cell.count as usize;
        match op {
            VectorOp::Sum | VectorOp::Avg => self.sum.merge(&cell.sum),
            VectorOp::Max | VectorOp::Min => self.value = extreme(op, self.value, cell.extreme),
            _ => {}
        }
    }

    /// The group's value for the step.
    fn value(&self, op: VectorOp) -> f64 {
        let n = self.count as f64;
        match op {
            VectorOp::Sum => self.sum.value(),
            VectorOp::Avg => self.sum.value() / n,
            VectorOp::Count => n,
            VectorOp::Stddev => (self.value / n).sqrt(),
            VectorOp::Stdvar => self.value / n,
            _ => self.value,
        }
    }
}

/// `max`/`min` of the extreme so far and `v`: a NaN gives way to any number, so the result
/// does not depend on the order (NaN only when every value was).
fn extreme(op: VectorOp, cur: f64, v: f64) -> f64 {
    let better = match op {
        VectorOp::Max => cur < v,
        _ => cur > v,
    };
    if better || cur.is_nan() { v } else { cur }
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

    /// Walks `input`'s series (see [`walk_range`]), then adds the cells of series the scan
    /// folded itself ([`Collapsed::direct`](crate::Collapsed::direct)).
    pub(crate) fn new(
        va: &VectorAggregation,
        ra: &RangeAggregation,
        mut input: RangeInput,
        grid: &Grid,
        interner: &mut Interner,
    ) -> Result<FoldedAgg, EvalError> {
        let op = va.op;
        let grouping = va.grouping.clone().unwrap_or_default();
        let direct = input.collapsed.direct.take();
        let direct_groups: Vec<(Labels, Vec<DirectCell>)> = match direct {
            None => Vec::new(),
            Some(d) if d.op != op || d.steps != grid.steps => {
                return Err(EvalError::UnfoldedDirect {
                    folded: d.op_name(),
                });
            }
            Some(d) => d
                .cells
                .into_iter()
                .enumerate()
                .filter(|(_, cells)| !cells.is_empty())
                .map(|(g, cells)| {
                    let labels = input.collapsed.groups.get(g).cloned();
                    labels.map(|l| (l, cells)).ok_or(EvalError::UnknownGroup {
                        group: g as u32,
                        groups: input.collapsed.groups.len(),
                    })
                })
                .collect::<Result<_, _>>()?,
        };
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
        // Cells are exact sums, counts and extremes: adding them after the series gives the
        // value any order would.
        for (labels, cells) in direct_groups {
            let g = group_id(&labels, &grouping, &mut groups, interner);
            for (k, cell) in cells.iter().enumerate() {
                if cell.count == 0 {
                    continue;
                }
                let Some(accs) = steps.get_mut(k) else {
                    continue;
                };
                match slot.entry((k as u32, g)) {
                    Entry::Occupied(i) => accs[*i.get() as usize].absorb(op, cell),
                    Entry::Vacant(e) => {
                        e.insert(accs.len() as u32);
                        accs.push(Acc::of_cell(g, cell));
                    }
                }
            }
        }
        Ok(FoldedAgg {
            op,
            steps,
            first_error,
        })
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

/// One group's share, at one step, of the series a scan folded straight into the aggregation
/// above their range aggregation ([`Direct`]).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DirectCell {
    sum: ExactSum,
    count: u64,
    extreme: f64,
}

impl DirectCell {
    fn add(&mut self, op: VectorOp, v: f64) {
        match op {
            VectorOp::Sum | VectorOp::Avg => self.sum.add(v),
            VectorOp::Max | VectorOp::Min if self.count > 0 => {
                self.extreme = extreme(op, self.extreme, v);
            }
            VectorOp::Max | VectorOp::Min => self.extreme = v,
            _ => {}
        }
        self.count += 1;
    }

    fn merge(&mut self, op: VectorOp, other: &DirectCell) {
        if other.count == 0 {
            return;
        }
        match op {
            VectorOp::Sum | VectorOp::Avg => self.sum.merge(&other.sum),
            VectorOp::Max | VectorOp::Min if self.count > 0 => {
                self.extreme = extreme(op, self.extreme, other.extreme);
            }
            VectorOp::Max | VectorOp::Min => self.extreme = other.extreme,
            _ => {}
        }
        self.count += other.count;
    }
}

/// Series a scan folded into the `sum`, `avg`, `count`, `min` or `max` right above their range
/// aggregation instead of keeping them: per group of [`Collapsed::groups`](crate::Collapsed),
/// one cell per step. A scan may fold a series whose points it knows all of and whose
/// aggregation it can compute alone, e.g. a series of one line that no other line of its
/// label set comes within a range of (a parser query with a unique id per line): what it keeps
/// is then the size of the answer, not one series per line. The cells hold exact sums, so the
/// answer is the one the series kept would give, whichever the scan folded.
#[derive(Debug, Clone, PartialEq)]
pub struct Direct {
    op: VectorOp,
    steps: usize,
    /// By group index; a group with no folded series has none.
    cells: Vec<Vec<DirectCell>>,
}

impl Direct {
    /// Whether series may be folded for the aggregation `op` (its value follows from exact
    /// sums, counts and extremes of the values).
    pub fn serves(op: VectorOp) -> bool {
        matches!(
            op,
            VectorOp::Sum | VectorOp::Avg | VectorOp::Count | VectorOp::Min | VectorOp::Max
        )
    }

    /// No series folded yet for `op` on the grid of `params`.
    pub fn new(op: VectorOp, params: &EvalParams) -> Result<Direct, EvalError> {
        if !Self::serves(op) {
            return Err(EvalError::UnfoldedDirect {
                folded: format!("{op:?}"),
            });
        }
        Ok(Direct {
            op,
            steps: Grid::of(params)?.steps,
            cells: Vec::new(),
        })
    }

    /// An empty fold like this one.
    pub(crate) fn like(&self) -> Direct {
        Direct {
            op: self.op,
            steps: self.steps,
            cells: Vec::new(),
        }
    }

    /// Folds a series of `group` whose range aggregation gave `points` (`(step, value)`, as
    /// [`crate::SinglePoints`] gives them). Returns the bytes newly allocated.
    pub fn add(&mut self, group: u32, points: &[(u32, f64)]) -> usize {
        if points.is_empty() {
            return 0;
        }
        let op = self.op;
        let (cells, grown) = self.cells_of(group);
        for &(k, v) in points {
            if let Some(c) = cells.get_mut(k as usize) {
                c.add(op, v);
            }
        }
        grown
    }

    /// [`Direct::add`] for a series whose points are `v` at each of `steps` (as
    /// [`crate::SinglePoints::span`] gives them).
    pub fn add_span(&mut self, group: u32, steps: std::ops::Range<usize>, v: f64) -> usize {
        if steps.is_empty() {
            return 0;
        }
        let op = self.op;
        let (cells, grown) = self.cells_of(group);
        let end = steps.end.min(cells.len());
        for c in cells.get_mut(steps.start..end).unwrap_or_default() {
            c.add(op, v);
        }
        grown
    }

    /// The cells of `group`, a step's worth allocated on its first series, and the bytes that
    /// allocated.
    fn cells_of(&mut self, group: u32) -> (&mut [DirectCell], usize) {
        let g = group as usize;
        if self.cells.len() <= g {
            self.cells.resize_with(g + 1, Vec::new);
        }
        let steps = self.steps;
        let cells = &mut self.cells[g];
        let mut grown = 0;
        if cells.is_empty() {
            cells.resize(steps, DirectCell::default());
            grown = steps * size_of::<DirectCell>();
        }
        (cells, grown)
    }

    /// Folds in `other`, whose group `g` is group `mapped[g]` here.
    pub(crate) fn append(&mut self, other: Direct, mapped: &[u32]) {
        let op = self.op;
        for (g, cells) in other.cells.into_iter().enumerate() {
            let Some(&to) = mapped.get(g) else {
                continue;
            };
            if cells.is_empty() {
                continue;
            }
            let to = to as usize;
            if self.cells.len() <= to {
                self.cells.resize_with(to + 1, Vec::new);
            }
            let mine = &mut self.cells[to];
            if mine.is_empty() {
                *mine = cells;
            } else {
                for (a, b) in mine.iter_mut().zip(&cells) {
                    a.merge(op, b);
                }
            }
        }
    }

    /// The aggregation folded for, for messages.
    pub(crate) fn op_name(&self) -> String {
        format!("{:?}", self.op).to_lowercase()
    }

    /// Nothing folded.
    pub fn is_empty(&self) -> bool {
        self.cells.iter().all(Vec::is_empty)
    }
}
