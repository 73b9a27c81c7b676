//! Range aggregations: slide each series' window over the evaluation grid and reduce the
//! samples in it to one value.
//!
//! This is the hot path (the engine may hand over tens of millions of samples), so every
//! series is walked once with two pointers: the window `(t - range - offset, t - offset]` only
//! ever moves forward, and stretches of steps with empty windows are skipped arithmetically.
//! Counts (whose samples may stand for several lines, see [`StepCells`]) and sums over
//! integral values (byte sizes, most unwrapped numbers) come from exact prefix sums, so those
//! cost O(1) per step. The other functions reduce the window directly, in the same order Loki does,
//! so their floating-point results match Loki's to the last bit.

use std::cmp::Ordering;
use std::ops::DerefMut;

use parquetry_logql::{Grouping, RangeAggregation, RangeOp};
use parquetry_model::{Labels, MatchOp, Matcher};

use crate::intern::{Id, Interner, filter_labels};
use crate::{
    Collapsed, CollapsedSeries, FastMap, IDENTITY_LABEL, RangeInput, SampleSeries,
    collapsed_labels, hex_id,
};

/// The label a failed pipeline stage sets.
pub(crate) const ERROR_LABEL: &str = "__error__";
/// Loki's escape hatch: a series with `__preserve_error__="true"` may keep `__error__`.
const PRESERVE_ERROR_LABEL: &str = "__preserve_error__";

/// Raw `(timestamp ns, value)` samples of one series.
type Points = Vec<(i64, f64)>;

/// The evaluation grid: `t_k = start + k * step` for `k < steps`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Grid {
    pub start: i64,
    pub step: i64,
    pub steps: usize,
}

impl Grid {
    /// The grid `params` evaluate on: one point for an instant query, else `start, start +
    /// step, …, end`, rejected as Loki rejects it ([`crate::check_points`]).
    pub(crate) fn of(params: &crate::EvalParams) -> Result<Grid, crate::EvalError> {
        if params.instant {
            return Ok(Grid {
                start: params.start,
                step: 1,
                steps: 1,
            });
        }
        crate::check_points(params.start, params.end, params.step)?;
        let steps = if params.end < params.start {
            0
        } else {
            usize::try_from((params.end - params.start) / params.step + 1).unwrap_or(0)
        };
        Ok(Grid {
            start: params.start,
            step: params.step,
            steps,
        })
    }

    pub(crate) fn t(&self, k: usize) -> i64 {
        self.start + k as i64 * self.step
    }

    /// The first step `k` with `t_k >= x`, or `steps` if there is none.
    fn first_step_at_or_after(&self, x: i64) -> usize {
        if x <= self.start {
            return 0;
        }
        // The common case without 128-bit division (a scan folding a series per line asks
        // this for every line).
        if let Some(k) = x
            .checked_sub(self.start)
            .and_then(|d| d.checked_add(self.step - 1))
            .map(|d| d / self.step)
        {
            return usize::try_from(k).map_or(self.steps, |k| k.min(self.steps));
        }
        let d = i128::from(x) - i128::from(self.start);
        let step = i128::from(self.step);
        let k = (d + step - 1) / step;
        usize::try_from(k).map_or(self.steps, |k| k.min(self.steps))
    }
}

/// The cells of the time axis that one range aggregation's windows cut it into: two
/// timestamps in one cell lie in exactly the same windows of the grid.
///
/// Functions that only add up what their window holds (`count_over_time`, `rate` without
/// unwrap, `bytes_*`, `absent_over_time`) give the same answer when a cell's lines are one
/// sample carrying their count (or byte total) at the cell's canonical timestamp, so a scan
/// may fold lines into cells as it reads them: its memory then follows series × cells (at
/// most two per step) instead of the lines, and a fan-out leaf ships cells. Sums of integral
/// values are exact, so the answer is bit for bit the unfolded one.
#[derive(Debug, Clone, Copy)]
pub struct StepCells {
    grid: Grid,
    range: i64,
    offset: i64,
}

impl StepCells {
    /// The cells of a range aggregation's windows `(t - range - offset, t - offset]` over the
    /// grid of `params`.
    pub fn new(
        params: &crate::EvalParams,
        range: i64,
        offset: i64,
    ) -> Result<StepCells, crate::EvalError> {
        Ok(StepCells {
            grid: Grid::of(params)?,
            range,
            offset,
        })
    }

    /// Whether a range function may read folded samples: it only sums what its window holds.
    pub fn fold(op: RangeOp, unwrapped: bool) -> bool {
        match op {
            RangeOp::CountOverTime
            | RangeOp::BytesOverTime
            | RangeOp::BytesRate
            | RangeOp::AbsentOverTime => true,
            RangeOp::Rate => !unwrapped,
            _ => false,
        }
    }

    /// The canonical timestamp of the cell holding `ts` (its last instant, which lies in the
    /// same windows as `ts`), or `None` when `ts` lies in no window.
    pub fn cell(&self, ts: i64) -> Option<i64> {
        // Window k holds ts iff t_k - offset >= ts (k >= first_end) and
        // t_k - range - offset < ts (k < first_begin).
        let u = ts.saturating_add(self.offset);
        let first_end = self.grid.first_step_at_or_after(u);
        let first_begin = self
            .grid
            .first_step_at_or_after(u.saturating_add(self.range));
        if first_end >= first_begin {
            return None;
        }
        let end = self.grid.t(first_end) - self.offset;
        if first_begin >= self.grid.steps {
            return Some(end);
        }
        Some(end.min(self.grid.t(first_begin) - self.range - self.offset))
    }
}

/// One range aggregation's points for a series of one sample: what a scan folding such
/// series straight into the aggregation above ([`crate::Direct`]) adds for each, computed by
/// the same code as for every series.
#[derive(Debug, Clone, Copy)]
pub struct SinglePoints {
    window: Window,
    grid: Grid,
    offset: i64,
}

impl SinglePoints {
    /// The points of `ra` on the grid of `params`.
    pub fn new(
        ra: &RangeAggregation,
        params: &crate::EvalParams,
    ) -> Result<SinglePoints, crate::EvalError> {
        Ok(SinglePoints {
            window: Window::of(ra),
            grid: Grid::of(params)?,
            offset: ra.range.offset,
        })
    }

    /// `(step, value)` of the series whose one sample is `(t, v)`, into `out` (cleared).
    pub fn points(&self, t: i64, v: f64, out: &mut Vec<(u32, f64)>) {
        out.clear();
        self.window.points(&[(t, v)], &self.grid, self.offset, out);
    }

    /// The same points as [`SinglePoints::points`] without listing them: the steps whose
    /// windows hold `t`, and the one value all those windows give. `None` for `rate_counter`,
    /// whose value depends on where its window ends.
    pub fn span(&self, t: i64, v: f64) -> Option<(std::ops::Range<usize>, f64)> {
        if self.window.op == RangeOp::RateCounter {
            return None;
        }
        // Window k holds t iff t_k - offset >= t and t_k - offset - range < t.
        let u = t.saturating_add(self.offset);
        let first = self.grid.first_step_at_or_after(u);
        let past = self
            .grid
            .first_step_at_or_after(u.saturating_add(self.window.range));
        if first >= past {
            return Some((first..first, 0.0));
        }
        let end = self.grid.t(first) - self.offset;
        Some((first..past, self.window.value(&[(t, v)], 0, 1, None, end)))
    }
}

/// The result of one range aggregation over the whole grid, stored by step (CSR): the
/// samples of step `k` are `entries[offsets[k]..offsets[k + 1]]`.
#[derive(Debug, Default)]
pub(crate) struct RangeOutput {
    pub offsets: Vec<usize>,
    pub entries: Vec<(Id, f64)>,
    /// The first step at which an output series carries `__error__`, and that series. Loki
    /// fails the query when evaluation reaches that step, so the caller checks it per step.
    pub first_error: Option<(usize, Id)>,
}

impl RangeOutput {
    pub(crate) fn step(&self, k: usize) -> &[(Id, f64)] {
        match (self.offsets.get(k), self.offsets.get(k + 1)) {
            (Some(&a), Some(&b)) => &self.entries[a..b],
            _ => &[],
        }
    }
}

/// The `__error__` value of a series that must fail a metric query, if any.
pub(crate) fn pipeline_error(labels: &Labels) -> Option<&str> {
    let err = labels.get(ERROR_LABEL).filter(|e| !e.is_empty())?;
    (labels.get(PRESERVE_ERROR_LABEL) != Some("true")).then_some(err)
}

/// Evaluates one range aggregation over the grid.
pub(crate) fn evaluate_range(
    ra: &RangeAggregation,
    input: RangeInput,
    grid: &Grid,
    interner: &mut Interner,
) -> RangeOutput {
    // Every series is interned: room for as many as came in, not a rehash per doubling.
    interner.reserve(input.len());
    let mut per_series: Vec<(Id, Vec<(u32, f64)>)> = Vec::new();
    let first_error = walk_range(
        ra,
        input,
        grid,
        interner,
        Tags {
            tag: |_: &Labels, _: &mut Interner| 0,
            // Each output series is interned by its label set.
            per_group: false,
        },
        |name, groups, _, points, interner| {
            per_series.push((interner.intern(name.into_labels(groups)), points.to_vec()));
        },
    );

    if ra.op == RangeOp::AbsentOverTime {
        let mut present = vec![false; grid.steps];
        for (_, points) in &per_series {
            for &(k, _) in points {
                present[k as usize] = true;
            }
        }
        let id = interner.intern(absent_labels(&ra.range.log.selector));
        let absent: Vec<(u32, f64)> = (0..grid.steps)
            .filter(|&k| !present[k])
            .map(|k| (k as u32, 1.0))
            .collect();
        per_series = vec![(id, absent)];
    }

    let mut out = transpose(per_series, grid.steps);
    out.first_error = first_error;
    out
}

/// How [`walk_range`] tags series: `tag(labels)` of each series' label set, or, with
/// `per_group`, of a collapsed series' group alone (computed once per group), which the caller
/// vouches gives the same tag as the whole set.
pub(crate) struct Tags<F> {
    pub tag: F,
    pub per_group: bool,
}

/// Computes one range aggregation series by series, in [`group_series`] order, handing each
/// series with at least one point to `emit` with its name, its tag and its `(step, value)`
/// points. Tags are computed for every series in input order, where the series' label sets
/// still lie in memory in the order the scan made them (a million per-line label sets visited
/// in sorted order miss the cache on each one). A series carrying a pipeline error is interned
/// and not emitted: the returned first error (its step and series) fails the query from that
/// step on, so its values are never read.
pub(crate) fn walk_range<F>(
    ra: &RangeAggregation,
    input: RangeInput,
    grid: &Grid,
    interner: &mut Interner,
    tags: Tags<F>,
    mut emit: impl FnMut(Name, &[Labels], Id, &[(u32, f64)], &mut Interner),
) -> Option<(usize, Id)>
where
    F: FnMut(&Labels, &mut Interner) -> Id,
{
    let mut tag = tags.tag;
    let (sorted, groups) = group_series(ra, input, tags.per_group, |labels| tag(labels, interner));
    let window = Window::of(ra);
    let mut first_error: Option<(usize, Id)> = None;
    let mut points = Vec::new();
    let mut visit = |name: Name, samples: &[(i64, f64)], errored: bool, tag: Id| {
        points.clear();
        window.points(samples, grid, ra.range.offset, &mut points);
        let Some(&(k, _)) = points.first() else {
            return;
        };
        if errored {
            let k = k as usize;
            let labels = name.into_labels(&groups);
            // On a tie the smallest label set is reported.
            if first_error.is_none_or(|(fk, id)| k < fk || (k == fk && labels < *interner.get(id)))
            {
                first_error = Some((k, interner.intern(labels)));
            }
            return;
        }
        emit(name, &groups, tag, &points, interner);
    };
    match sorted {
        Sorted::General(series) => {
            for g in series {
                visit(g.name, &g.samples, g.errored, g.tag);
            }
        }
        Sorted::Collapsed { series, tags } => {
            for s in series {
                let tag = tags.get(s.group as usize).copied().unwrap_or(0);
                let name = Name::Collapsed {
                    group: s.group,
                    id: s.id,
                };
                visit(name, &s.samples, false, tag);
            }
        }
    }
    first_error
}

/// Series in the order [`walk_range`] visits them.
enum Sorted {
    General(Vec<Grouped>),
    /// Every series collapsed: sorted as they came, by ranks and identity (half the memory
    /// of the general form, where a parser query may hold a series per line), with each
    /// group's tag.
    Collapsed {
        series: Vec<CollapsedSeries>,
        tags: Vec<Id>,
    },
}

/// A series' label set while it is grouped: its own, or a collapsed series' group and
/// identity (see [`crate::Collapsed`]).
#[derive(Debug)]
pub(crate) enum Name {
    Full(Labels),
    Collapsed { group: u32, id: u128 },
}

impl Name {
    /// The label set it stands for.
    pub(crate) fn into_labels(self, groups: &[Labels]) -> Labels {
        match self {
            Name::Full(labels) => labels,
            Name::Collapsed { group, id } => collapsed_labels(groups.get(group as usize), id),
        }
    }

    /// The `(name, value)` pairs of its label set in order, a collapsed series' identity
    /// spelled into `hex`.
    fn pairs<'a>(
        &'a self,
        groups: &'a [Labels],
        hex: &'a mut [u8; 32],
    ) -> impl Iterator<Item = (&'a [u8], &'a [u8])> {
        let (labels, identity) = match self {
            Name::Full(labels) => (labels, None),
            Name::Collapsed { group, id } => {
                *hex = hex_id(*id);
                let empty = const { &Labels::new() };
                (groups.get(*group as usize).unwrap_or(empty), Some(&hex[..]))
            }
        };
        // The identity goes where its name sorts among the group's labels.
        let at = match identity {
            Some(_) => labels
                .iter()
                .take_while(|l| l.name.as_str() < IDENTITY_LABEL)
                .count(),
            None => usize::MAX,
        };
        let bytes = |l: &'a parquetry_model::Label| (l.name.as_bytes(), l.value.as_bytes());
        labels
            .iter()
            .take(at)
            .map(bytes)
            .chain(identity.map(|h| (IDENTITY_LABEL.as_bytes(), h)))
            .chain(labels.iter().skip(at).map(bytes))
    }

    /// The order of the label sets `self` and `other` stand for.
    fn cmp(&self, other: &Name, groups: &[Labels]) -> Ordering {
        match (self, other) {
            (Name::Full(a), Name::Full(b)) => a.cmp(b),
            // One group: the identities, spelled in fixed-width hex, decide.
            (Name::Collapsed { group: g, id: a }, Name::Collapsed { group: h, id: b })
                if g == h =>
            {
                a.cmp(b)
            }
            _ => {
                let (mut x, mut y) = ([0u8; 32], [0u8; 32]);
                self.pairs(groups, &mut x).cmp(other.pairs(groups, &mut y))
            }
        }
    }
}

/// One series of a range aggregation once grouped.
struct Grouped {
    /// The first sort key: see [`group_series`].
    order: (u128, u128),
    name: Name,
    samples: Points,
    /// It carries a pipeline error that fails the query.
    errored: bool,
    /// See [`walk_range`]; unset for an errored series.
    tag: Id,
}

/// Merges the input series by their output label set: the range-level `by`/`without` where the
/// function allows it, else the full label set (two inputs with equal labels are one series).
/// Series carrying a pipeline error keep all their labels, as in Loki, so that the error is
/// reported instead of being grouped away. Returns the series and the groups their collapsed
/// names index.
///
/// The result is sorted by labels: that fixes the order in which the aggregations above add
/// values up, independently of how the scan split its work (and of whether it collapsed
/// series: a collapsed series sorts as the label set it stands for), and it is the order whose
/// sums match Loki's answers to the last bit in the conformance corpus. The sort compares a
/// cheap key first and the label sets only on a tie: with one series per line (a parser query
/// with a unique id per line), comparing a million label sets directly took as long as the
/// rest of the evaluation. The key is a 32-byte prefix of each set's order-preserving encoding
/// ([`order_key`], computed in input order where the sets lie in memory as the scan made
/// them), or, when every series is collapsed, [`collapsed_ranks`] and the identity.
fn group_series(
    ra: &RangeAggregation,
    input: RangeInput,
    per_group: bool,
    mut tag: impl FnMut(&Labels) -> Id,
) -> (Sorted, Vec<Labels>) {
    let grouping = ra.grouping.as_ref().filter(|_| ra.op.allows_grouping());
    let RangeInput {
        series,
        collapsed:
            Collapsed {
                groups,
                series: collapsed,
                // Taken by the folded aggregation before (and refused by plain range nodes).
                direct: _,
            },
    } = input;
    // Equal groups listed twice are one group, so that equal names compare equal.
    let mut first: FastMap<&Labels, u32> = FastMap::default();
    let canonical: Vec<u32> = (0..groups.len())
        .map(|i| *first.entry(&groups[i]).or_insert(i as u32))
        .collect();
    drop(first);
    let errored: Vec<bool> = groups.iter().map(|g| pipeline_error(g).is_some()).collect();
    let mut group_tags: Vec<Option<Id>> = vec![None; groups.len()];
    // A collapsed series' tag is its group's, computed once.
    fn group_tag(
        g: usize,
        groups: &[Labels],
        tags: &mut [Option<Id>],
        tag: &mut impl FnMut(&Labels) -> Id,
    ) -> Id {
        match tags.get(g).copied().flatten() {
            Some(t) => t,
            None => {
                let t = tag(groups.get(g).unwrap_or(const { &Labels::new() }));
                if let Some(slot) = tags.get_mut(g) {
                    *slot = Some(t);
                }
                t
            }
        }
    }
    // Series given their label sets below are ordered by their encoding, which ranks do not
    // compare with: ranks only when every series stays collapsed.
    let materialize = grouping.is_some() || !per_group;
    if series.is_empty() && !materialize && !errored.contains(&true) {
        let mut series = collapsed;
        for (i, s) in series.iter_mut().enumerate() {
            s.group = canonical.get(s.group as usize).copied().unwrap_or(s.group);
            group_tag(s.group as usize, &groups, &mut group_tags, &mut tag);
            // Below 2^32 series: each holds 48 bytes, and the memory pool bounds them far
            // below 192 GiB.
            s.seq = i as u32;
        }
        let tags = group_tags
            .into_iter()
            .map(Option::unwrap_or_default)
            .collect();
        let ranks = collapsed_ranks(&groups);
        let key = |s: &CollapsedSeries| {
            let (before, after) = ranks.get(s.group as usize).copied().unwrap_or_default();
            (before, s.id, after, s.seq)
        };
        // As a stable sort by the rest of the key: equal series stay in input order, and so
        // do their samples when merged.
        series.sort_unstable_by_key(key);
        merge_runs(
            &mut series,
            |a, b| (a.group, a.id) == (b.group, b.id),
            |s| &mut s.samples,
        );
        return (Sorted::Collapsed { series, tags }, groups);
    }

    let full = |s: SampleSeries, tag: &mut dyn FnMut(&Labels) -> Id| {
        let errored = pipeline_error(&s.labels).is_some();
        let labels = match grouping {
            Some(g) if !errored => reduce_labels(&s.labels, g),
            _ => s.labels,
        };
        let tag = if errored { 0 } else { tag(&labels) };
        let name = Name::Full(labels);
        Grouped {
            order: order_key(name.pairs(&[], &mut [0; 32])),
            errored,
            tag,
            name,
            samples: s.samples,
        }
    };
    let mut out: Vec<Grouped> = Vec::with_capacity(series.len() + collapsed.len());
    out.extend(series.into_iter().map(|s| full(s, &mut tag)));
    for s in collapsed {
        let g = canonical.get(s.group as usize).copied().unwrap_or(s.group);
        let gi = g as usize;
        // A range grouping reduces the whole set, and a series that fails the query is
        // reported by its set: both need the set itself.
        if materialize || errored.get(gi).copied().unwrap_or(false) {
            let labels = collapsed_labels(groups.get(gi), s.id);
            out.push(full(
                SampleSeries {
                    labels,
                    samples: s.samples.into_vec(),
                },
                &mut tag,
            ));
            continue;
        }
        let name = Name::Collapsed { group: g, id: s.id };
        let mut hex = [0u8; 32];
        let order = order_key(name.pairs(&groups, &mut hex));
        let tag = group_tag(gi, &groups, &mut group_tags, &mut tag);
        out.push(Grouped {
            order,
            name,
            samples: s.samples.into_vec(),
            errored: false,
            tag,
        });
    }
    // Stable: equal label sets stay in input order, and so do their samples when merged.
    out.sort_by(|a, b| {
        a.order
            .cmp(&b.order)
            .then_with(|| a.name.cmp(&b.name, &groups))
    });
    merge_runs(
        &mut out,
        |a, b| a.name.cmp(&b.name, &groups) == Ordering::Equal,
        |g| &mut g.samples,
    );
    (Sorted::General(out), groups)
}

/// Merges neighbours that `same` calls one series, appending their samples in order, then
/// puts each series' samples in time order: stably, so equal timestamps keep input order, and
/// cheaply when they already are.
fn merge_runs<T, P>(
    sorted: &mut Vec<T>,
    same: impl Fn(&T, &T) -> bool,
    samples: impl Fn(&mut T) -> &mut P,
) where
    P: Default
        + Extend<(i64, f64)>
        + IntoIterator<Item = (i64, f64)>
        + DerefMut<Target = [(i64, f64)]>,
{
    sorted.dedup_by(|next, kept| {
        let one = same(next, kept);
        if one {
            let more = std::mem::take(samples(next));
            samples(kept).extend(more);
        }
        one
    });
    for s in sorted.iter_mut().map(samples) {
        if !s.is_sorted_by_key(|s| s.0) {
            s.sort_by_key(|s| s.0);
        }
    }
}

/// For each group, its rank among the groups by the labels that sort before
/// [`IDENTITY_LABEL`] (groups with equal such labels share a rank), and its rank by the
/// labels after it. The label sets collapsed series stand for are ordered by the first rank,
/// then the identity, then the second: up to the identity label, one set is a prefix of the
/// other only if it lacks a label the other has there, and the identity's name then sorts
/// after that label.
fn collapsed_ranks(groups: &[Labels]) -> Vec<(u32, u32)> {
    type Part<'a> = Vec<(&'a str, &'a str)>;
    fn split(g: &Labels) -> (Part<'_>, Part<'_>) {
        g.iter()
            .map(|l| (l.name.as_str(), l.value.as_str()))
            .partition(|(n, _)| *n < IDENTITY_LABEL)
    }
    let parts: Vec<(Part<'_>, Part<'_>)> = groups.iter().map(split).collect();
    let rank = |cmp: &dyn Fn(usize, usize) -> Ordering| -> Vec<u32> {
        let mut order: Vec<usize> = (0..groups.len()).collect();
        order.sort_by(|&a, &b| cmp(a, b));
        let mut ranks = vec![0u32; groups.len()];
        let mut r = 0u32;
        for (i, w) in order.iter().enumerate() {
            if i > 0 && cmp(order[i - 1], *w) != Ordering::Equal {
                r += 1;
            }
            ranks[*w] = r;
        }
        ranks
    };
    // A shorter run of labels before the identity is the greater one (see above).
    let before = rank(&|a, b| {
        let (x, y) = (&parts[a].0, &parts[b].0);
        x.iter()
            .zip(y)
            .map(|(p, q)| p.cmp(q))
            .find(|o| o.is_ne())
            .unwrap_or_else(|| y.len().cmp(&x.len()))
    });
    let after = rank(&|a, b| parts[a].1.cmp(&parts[b].1));
    before.into_iter().zip(after).collect()
}

/// The first 32 bytes of an encoding of a label set (its `(name, value)` pairs in order)
/// whose byte order is the sets' order: each name and value followed by a 0 byte, with 0 and
/// 1 inside them escaped as `1 1` and `1 2` so that an end always sorts before a continuation.
/// Two sets whose keys differ are ordered by their keys; equal keys say nothing, and the sets
/// are compared.
fn order_key<'a>(pairs: impl Iterator<Item = (&'a [u8], &'a [u8])>) -> (u128, u128) {
    let encoded = pairs.flat_map(|(n, v)| [n, v]).flat_map(|part| {
        let escaped = part.iter().flat_map(|b| match b {
            0 => &[1, 1][..],
            1 => &[1, 2][..],
            _ => std::slice::from_ref(b),
        });
        // The end of a name or value.
        escaped.copied().chain([0])
    });
    let mut key = [0u8; 32];
    for (slot, b) in key.iter_mut().zip(encoded) {
        *slot = b;
    }
    let word = |b: &[u8]| u128::from_be_bytes(b.try_into().unwrap_or([0; 16]));
    (word(&key[..16]), word(&key[16..]))
}

/// Applies a `by`/`without` grouping to a label set.
pub(crate) fn reduce_labels(labels: &Labels, g: &Grouping) -> Labels {
    filter_labels(labels, |n| keeps(g, n))
}

/// Whether a `by`/`without` grouping keeps the label `name`.
pub(crate) fn keeps(g: &Grouping, name: &str) -> bool {
    g.labels.iter().any(|l| l == name) != g.without
}

/// The labels of `absent_over_time`: the selector's equality matchers, minus any name that is
/// also constrained by another matcher (its value would be ambiguous), as in Prometheus.
fn absent_labels(selector: &[Matcher]) -> Labels {
    let mut pairs: Vec<(&str, &str)> = Vec::new();
    let mut ambiguous: Vec<&str> = Vec::new();
    for m in selector {
        if m.name == "__name__" {
            continue;
        }
        if m.op == MatchOp::Eq && !pairs.iter().any(|(n, _)| *n == m.name) {
            pairs.push((&m.name, &m.value));
        } else {
            ambiguous.push(&m.name);
        }
    }
    pairs.retain(|(n, _)| !ambiguous.contains(n));
    Labels::from_pairs(pairs)
}

/// Turns per-series points into per-step vectors with a counting sort.
fn transpose(per_series: Vec<(Id, Vec<(u32, f64)>)>, steps: usize) -> RangeOutput {
    let mut offsets = vec![0usize; steps + 1];
    for (_, points) in &per_series {
        for &(k, _) in points {
            offsets[k as usize + 1] += 1;
        }
    }
    for k in 0..steps {
        offsets[k + 1] += offsets[k];
    }
    let mut fill = offsets.clone();
    let mut entries = vec![(0, 0.0); offsets[steps]];
    for (id, points) in per_series {
        for (k, v) in points {
            let slot = &mut fill[k as usize];
            entries[*slot] = (id, v);
            *slot += 1;
        }
    }
    RangeOutput {
        offsets,
        entries,
        first_error: None,
    }
}

/// Go's `Duration.Seconds()`, which the range functions divide by; splitting seconds and
/// nanoseconds the way Go does keeps the divisor identical to Loki's.
fn go_seconds(ns: i64) -> f64 {
    (ns / 1_000_000_000) as f64 + (ns % 1_000_000_000) as f64 / 1e9
}

/// One range function with its parameters.
#[derive(Debug, Clone, Copy)]
struct Window {
    op: RangeOp,
    param: f64,
    range: i64,
    range_secs: f64,
}

impl Window {
    fn of(ra: &RangeAggregation) -> Window {
        Window {
            op: ra.op,
            param: ra.param.unwrap_or(f64::NAN),
            range: ra.range.range,
            range_secs: go_seconds(ra.range.range),
        }
    }

    /// Appends `(step, value)` for every step whose window over `samples` is non-empty.
    fn points(&self, samples: &[(i64, f64)], grid: &Grid, offset: i64, out: &mut Vec<(u32, f64)>) {
        let n = samples.len();
        if n == 0 {
            return;
        }
        // A window of one sample sums nothing: no prefix sums (and no allocation) for it.
        let prefix = (n > 1 && self.needs_sum())
            .then(|| exact_prefix_sums(samples))
            .flatten();
        let (mut lo, mut hi) = (0usize, 0usize);
        let mut k = grid.first_step_at_or_after(samples[0].0.saturating_add(offset));
        while k < grid.steps {
            let end = grid.t(k) - offset;
            let begin = end - self.range;
            while hi < n && samples[hi].0 <= end {
                hi += 1;
            }
            while lo < hi && samples[lo].0 <= begin {
                lo += 1;
            }
            if lo < hi {
                out.push((
                    k as u32,
                    self.value(samples, lo, hi, prefix.as_deref(), end),
                ));
                k += 1;
            } else if hi >= n {
                break;
            } else {
                // Nothing in this window: jump to the first step whose window reaches the
                // next sample instead of walking the empty steps one by one.
                let next = grid.first_step_at_or_after(samples[hi].0.saturating_add(offset));
                k = next.max(k + 1);
            }
        }
    }

    fn needs_sum(&self) -> bool {
        matches!(
            self.op,
            RangeOp::CountOverTime
                | RangeOp::Rate
                | RangeOp::BytesOverTime
                | RangeOp::BytesRate
                | RangeOp::SumOverTime
        )
    }

    /// The aggregate of `samples[lo..hi]`, the window ending at `end` (nanoseconds).
    fn value(
        &self,
        samples: &[(i64, f64)],
        lo: usize,
        hi: usize,
        prefix: Option<&[f64]>,
        end: i64,
    ) -> f64 {
        let w = &samples[lo..hi];
        let sum = || match prefix {
            Some(p) => p[hi] - p[lo],
            None => w.iter().map(|s| s.1).sum::<f64>(),
        };
        match self.op {
            // A count's samples carry the lines they stand for (see `StepCells`).
            RangeOp::CountOverTime | RangeOp::BytesOverTime | RangeOp::SumOverTime => sum(),
            RangeOp::Rate | RangeOp::BytesRate => sum() / self.range_secs,
            RangeOp::AvgOverTime => avg_over_time(w),
            RangeOp::MinOverTime => extreme(w, |v, cur| v < cur),
            RangeOp::MaxOverTime => extreme(w, |v, cur| v > cur),
            RangeOp::StdvarOverTime => stdvar(w),
            RangeOp::StddevOverTime => stdvar(w).sqrt(),
            RangeOp::QuantileOverTime => {
                let mut values: Vec<f64> = w.iter().map(|s| s.1).collect();
                quantile(self.param, &mut values)
            }
            RangeOp::FirstOverTime => w[0].1,
            RangeOp::LastOverTime => w[w.len() - 1].1,
            RangeOp::RateCounter => rate_counter(w, end, self.range, self.range_secs),
            RangeOp::AbsentOverTime => 1.0,
        }
    }
}

/// Prefix sums, but only when they are exact: every value integral and the running total below
/// 2^53. Then `p[hi] - p[lo]` equals the sequential sum bit for bit.
fn exact_prefix_sums(samples: &[(i64, f64)]) -> Option<Vec<f64>> {
    const EXACT: f64 = 9_007_199_254_740_992.0; // 2^53
    let mut abs = 0.0f64;
    let mut p = Vec::with_capacity(samples.len() + 1);
    p.push(0.0);
    let mut acc = 0.0f64;
    for &(_, v) in samples {
        if !v.is_finite() || v.fract() != 0.0 {
            return None;
        }
        abs += v.abs();
        if abs >= EXACT {
            return None;
        }
        acc += v;
        p.push(acc);
    }
    Some(p)
}

/// Loki's `avg_over_time`: an incremental mean that keeps an infinite mean instead of turning
/// it into NaN when finite values follow.
fn avg_over_time(w: &[(i64, f64)]) -> f64 {
    let (mut mean, mut count) = (0.0f64, 0.0f64);
    for &(_, v) in w {
        count += 1.0;
        if mean.is_infinite() {
            if v.is_infinite() && (mean > 0.0) == (v > 0.0) {
                continue;
            }
            if !v.is_infinite() && !v.is_nan() {
                continue;
            }
        }
        mean += v / count - mean / count;
    }
    mean
}

/// `min`/`max` as Loki computes them: NaN only if every value is NaN.
fn extreme(w: &[(i64, f64)], better: impl Fn(f64, f64) -> bool) -> f64 {
    let mut cur = w[0].1;
    for &(_, v) in w {
        if better(v, cur) || cur.is_nan() {
            cur = v;
        }
    }
    cur
}

/// Population variance with Welford's method.
fn stdvar(w: &[(i64, f64)]) -> f64 {
    let (mut aux, mut count, mut mean) = (0.0f64, 0.0f64, 0.0f64);
    for &(_, v) in w {
        count += 1.0;
        let delta = v - mean;
        mean += delta / count;
        aux += delta * (v - mean);
    }
    aux / count
}

/// Orders NaN before every number, as Loki's quantile sort does.
pub(crate) fn nan_first(a: f64, b: f64) -> Ordering {
    match (a.is_nan(), b.is_nan()) {
        (true, true) => Ordering::Equal,
        (true, false) => Ordering::Less,
        (false, true) => Ordering::Greater,
        _ => a.partial_cmp(&b).unwrap_or(Ordering::Equal),
    }
}

/// The Prometheus φ-quantile with linear interpolation between the closest ranks.
pub(crate) fn quantile(q: f64, values: &mut [f64]) -> f64 {
    if values.is_empty() || q.is_nan() {
        return f64::NAN;
    }
    if q < 0.0 {
        return f64::NEG_INFINITY;
    }
    if q > 1.0 {
        return f64::INFINITY;
    }
    values.sort_by(|a, b| nan_first(*a, *b));
    let n = values.len() as f64;
    let rank = q * (n - 1.0);
    let lower = rank.floor().max(0.0);
    let upper = (lower + 1.0).min(n - 1.0);
    let weight = rank - rank.floor();
    values[lower as usize] * (1.0 - weight) + values[upper as usize] * weight
}

/// `rate_counter`: Prometheus' `extrapolatedRate` with counter-reset handling, as Loki runs
/// it: nanosecond timestamps, and the range boundaries of the query window `(end - range,
/// end]` rather than ones guessed from the samples. Fewer than two samples give 0 (a point,
/// not a gap).
fn rate_counter(w: &[(i64, f64)], end: i64, range_ns: i64, range_secs: f64) -> f64 {
    if w.len() < 2 {
        return 0.0;
    }
    let (first, last) = (w[0], w[w.len() - 1]);
    let mut result = last.1 - first.1;
    let mut prev = 0.0f64;
    for &(_, v) in w {
        if v < prev {
            result += prev;
        }
        prev = v;
    }
    let start = end - range_ns;
    let mut to_start = (first.0 - start) as f64 / 1e9;
    let mut to_end = (end - last.0) as f64 / 1e9;
    let sampled = (last.0 - first.0) as f64 / 1e9;
    let avg_gap = sampled / (w.len() - 1) as f64;
    let threshold = avg_gap * 1.1;
    if to_start >= threshold {
        to_start = avg_gap / 2.0;
    }
    // A counter cannot go below zero: extrapolate to its zero point at the furthest.
    if result > 0.0 && first.1 >= 0.0 {
        to_start = to_start.min(sampled * (first.1 / result));
    }
    if to_end >= threshold {
        to_end = avg_gap / 2.0;
    }
    result * ((sampled + to_start + to_end) / sampled) / range_secs
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantile_edges() {
        assert_eq!(quantile(-0.5, &mut [1.0, 2.0]), f64::NEG_INFINITY);
        assert_eq!(quantile(1.5, &mut [1.0, 2.0]), f64::INFINITY);
        assert!(quantile(0.5, &mut []).is_nan());
        assert!(quantile(f64::NAN, &mut [1.0]).is_nan());
        assert_eq!(quantile(0.25, &mut [4.0, 1.0, 3.0, 2.0]), 1.75);
    }

    #[test]
    fn grid_first_step() {
        let g = Grid {
            start: 100,
            step: 10,
            steps: 5,
        };
        assert_eq!(g.first_step_at_or_after(50), 0);
        assert_eq!(g.first_step_at_or_after(100), 0);
        assert_eq!(g.first_step_at_or_after(101), 1);
        assert_eq!(g.first_step_at_or_after(110), 1);
        assert_eq!(g.first_step_at_or_after(1_000), 5);
        assert_eq!(g.first_step_at_or_after(i64::MAX), 5);
    }

    #[test]
    fn prefix_sums_only_when_exact() {
        assert_eq!(
            exact_prefix_sums(&[(0, 1.0), (1, 2.0)]),
            Some(vec![0.0, 1.0, 3.0])
        );
        assert_eq!(exact_prefix_sums(&[(0, 0.5)]), None);
        assert_eq!(exact_prefix_sums(&[(0, f64::INFINITY)]), None);
        assert_eq!(exact_prefix_sums(&[(0, 9.0e15), (1, 9.0e15)]), None);
    }

    #[test]
    fn order_keys_never_contradict_the_label_order() {
        let sets: Vec<Labels> = [
            vec![],
            vec![("a", "")],
            vec![("a", ""), ("b", "x")],
            vec![("a", "\u{0}")],
            vec![("a", "\u{1}")],
            vec![("a", "\u{1}\u{0}z")],
            vec![("a", "\u{2}")],
            vec![("a", "p")],
            vec![("a", "p"), ("y", "1")],
            vec![("a", "p\u{1}")],
            vec![("a", "p\u{0}")],
            vec![("a", "pp")],
            vec![("ab", "")],
            vec![("__parquetry_series__", "00000000000000000000000000000001")],
            vec![("__parquetry_series__", "00000000000000000000000000000002")],
            vec![("__parquetry_series__", "000000000000000000000000000000010")],
            vec![("a_very_long_label_name_over_thirty_two_bytes", "v1")],
            vec![("a_very_long_label_name_over_thirty_two_bytes", "v0")],
        ]
        .into_iter()
        .map(Labels::from_pairs)
        .collect();
        let key = |l: &Labels| order_key(l.iter().map(|l| (l.name.as_bytes(), l.value.as_bytes())));
        for a in &sets {
            for b in &sets {
                if key(a) < key(b) {
                    assert!(a < b, "{a} / {b}");
                }
            }
        }
    }

    #[test]
    fn equal_collapsed_series_merge_in_input_order() {
        // Many series, a few identities, every sample at one instant with its input position
        // as value: after sorting and merging, each identity's samples must still be in input
        // order (what `first_over_time` and float sums of one instant see), as a stable sort
        // keeps them. An unstable sort without the position as a tie-break reorders them.
        let groups: Vec<Labels> = vec![Labels::from_pairs([("g", "a")])];
        let series: Vec<CollapsedSeries> = (0..5_000u32)
            .map(|i| {
                let id = u128::from(i.wrapping_mul(2_654_435_761) % 7);
                CollapsedSeries::new(id, 0, [(1_000, f64::from(i))].into_iter().collect())
            })
            .collect();
        let ra = match parquetry_logql::parse_expr(r#"first_over_time({a="b"} | unwrap x [1m])"#) {
            Ok(parquetry_logql::Expr::Sample(parquetry_logql::SampleExpr::RangeAggregation(
                ra,
            ))) => ra,
            other => panic!("{other:?}"),
        };
        let input = RangeInput {
            series: Vec::new(),
            collapsed: Collapsed {
                groups,
                series,
                direct: None,
            },
        };
        let Sorted::Collapsed { series, .. } = group_series(&ra, input, true, |_| 0).0 else {
            panic!("every series stays collapsed");
        };
        assert_eq!(series.len(), 7);
        for s in &series {
            assert!(s.samples.len() > 600);
            assert!(
                s.samples.is_sorted_by(|a, b| a.1 < b.1),
                "{:?}",
                &s.samples[..5]
            );
        }
    }

    #[test]
    fn collapsed_series_sort_and_merge_as_the_label_sets_they_stand_for() {
        let groups: Vec<Labels> = [
            vec![],
            vec![("A", "1")],
            vec![("A", "1"), ("b", "x")],
            vec![("A", "2")],
            vec![("A", "1"), ("B", "")],
            vec![("b", "x")],
            vec![("b", "y")],
            vec![("__error__", "e"), ("__preserve_error__", "true")],
            vec![("__a", "1"), ("b", "x")],
        ]
        .into_iter()
        .map(Labels::from_pairs)
        .collect();
        let ids = [0u128, 1, 0xff, 1 << 100, u128::MAX];
        let mut series = Vec::new();
        for g in 0..groups.len() {
            for (j, &id) in ids.iter().enumerate() {
                // Every name twice, samples in reverse order of their entries.
                for t in [2 * j as i64 + 1, 2 * j as i64] {
                    series.push(CollapsedSeries::new(
                        id,
                        g as u32,
                        [(t, 1.0)].into_iter().collect(),
                    ));
                }
            }
        }
        series.reverse();
        let ra = match parquetry_logql::parse_expr(r#"count_over_time({a="b"}[1m])"#) {
            Ok(parquetry_logql::Expr::Sample(parquetry_logql::SampleExpr::RangeAggregation(
                ra,
            ))) => ra,
            other => panic!("{other:?}"),
        };
        let mut expected: Vec<Labels> = series
            .iter()
            .map(|s| collapsed_labels(groups.get(s.group as usize), s.id))
            .collect();
        expected.sort();
        expected.dedup();
        // All collapsed (ranks), and with a series of its own among them (encoded keys).
        for own in [None, Some(Labels::from_pairs([("A", "1"), ("zz", "1")]))] {
            let input = RangeInput {
                series: own
                    .iter()
                    .map(|l| SampleSeries {
                        labels: l.clone(),
                        samples: vec![(0, 1.0)],
                    })
                    .collect(),
                collapsed: Collapsed {
                    groups: groups.clone(),
                    series: series.clone(),
                    direct: None,
                },
            };
            let (out, groups) = group_series(&ra, input, true, |_| 0);
            let named: Vec<(Name, Points)> = match out {
                Sorted::General(out) => out.into_iter().map(|g| (g.name, g.samples)).collect(),
                Sorted::Collapsed { series, .. } => series
                    .into_iter()
                    .map(|s| {
                        let name = Name::Collapsed {
                            group: s.group,
                            id: s.id,
                        };
                        (name, s.samples.into_vec())
                    })
                    .collect(),
            };
            let got: Vec<Labels> = named
                .into_iter()
                .map(|(name, samples)| {
                    assert!(samples.is_sorted_by_key(|s| s.0));
                    if let Name::Collapsed { .. } = name {
                        assert_eq!(samples.len(), 2);
                    }
                    name.into_labels(&groups)
                })
                .collect();
            let mut want = expected.clone();
            want.extend(own);
            want.sort();
            assert_eq!(got, want);
        }
    }

    #[test]
    fn go_seconds_matches_go() {
        assert_eq!(go_seconds(1_500_000_000), 1.5);
        assert_eq!(go_seconds(60_000_000_000), 60.0);
        assert_eq!(go_seconds(100_000_000), 0.1);
    }
}
