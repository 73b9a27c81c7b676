//! The split planner: selected streams cut into runs of consecutive fingerprints of about
//! equal catalog bytes, one run per leaf.

use std::collections::HashMap;

use super::FanoutSettings;
use crate::select::Selection;

/// The stream fingerprints each leaf owns; every selected stream is in exactly one leaf.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// Per leaf, its streams' fingerprints in ascending order.
    pub leaves: Vec<Vec<u64>>,
}

/// Adds the line bytes each selected stream holds in `[start, end)` (per the catalogs, an
/// object's whole stream when it overlaps) to `bytes`.
pub(super) fn add_stream_bytes(
    selection: &Selection,
    start: i64,
    end: i64,
    bytes: &mut HashMap<u64, u64>,
) {
    for o in &selection.objects {
        for s in &o.streams {
            let b = bytes.entry(s.fingerprint).or_default();
            if s.min_ts < end && s.max_ts >= start {
                *b += s.bytes;
            }
        }
    }
}

impl Plan {
    /// Streams (with their bytes) cut into leaves: as many as `target_bytes` asks for, at
    /// most `leaves` and at most one per stream. `None` when that is fewer than two.
    ///
    /// Each leaf owns a run of consecutive fingerprints, cut where the running byte total
    /// crosses the next multiple of `total / n`. Objects are sorted by stream fingerprint, so
    /// a leaf reads one contiguous run of rows in every object and shares at most the pages
    /// at its run's two ends with its neighbours; streams dealt out by size instead would put
    /// every leaf in every page (measured: 8 such leaves fetched 5.6 times the bytes of the
    /// whole query).
    pub fn split(settings: &FanoutSettings, bytes: HashMap<u64, u64>) -> Option<Plan> {
        let total: u64 = bytes.values().sum();
        let mut n = settings.leaves.min(bytes.len());
        if settings.target_bytes > 0 {
            n = n.min(total.div_ceil(settings.target_bytes) as usize);
        }
        if n < 2 {
            return None;
        }
        let mut streams: Vec<(u64, u64)> = bytes.into_iter().collect();
        streams.sort_unstable();
        let count = streams.len();
        let mut leaves: Vec<Vec<u64>> = vec![Vec::new()];
        let mut acc = 0u128;
        for (i, (fp, b)) in streams.into_iter().enumerate() {
            let current = leaves.len();
            // Start the next leaf once this one holds its share, keeping at least one stream
            // for every leaf still to come.
            let share_done = acc * n as u128 >= total as u128 * current as u128;
            let must_start = count - i == n - current;
            let open = leaves.last().is_some_and(|l| !l.is_empty());
            if current < n && open && (share_done || must_start) {
                leaves.push(Vec::new());
            }
            if let Some(l) = leaves.last_mut() {
                l.push(fp);
            }
            acc += u128::from(b);
        }
        Some(Plan { leaves })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(leaves: usize, target_bytes: u64) -> FanoutSettings {
        FanoutSettings {
            leaves,
            target_bytes,
            ..Default::default()
        }
    }

    #[test]
    fn balances_bytes_and_covers_every_stream() {
        let bytes: HashMap<u64, u64> = [(1, 100), (2, 60), (3, 50), (4, 40), (5, 10)].into();
        let plan = Plan::split(&settings(2, 0), bytes.clone()).unwrap();
        assert_eq!(plan.leaves, vec![vec![1, 2], vec![3, 4, 5]]);
        let plan = Plan::split(&settings(3, 0), bytes).unwrap();
        assert_eq!(plan.leaves, vec![vec![1], vec![2, 3], vec![4, 5]]);
        // Bytes all in the first stream: every leaf still gets one.
        let skewed: HashMap<u64, u64> = [(1, 1000), (2, 0), (3, 0)].into();
        let plan = Plan::split(&settings(3, 0), skewed).unwrap();
        assert_eq!(plan.leaves, vec![vec![1], vec![2], vec![3]]);
    }

    #[test]
    fn never_more_leaves_than_streams_or_target_asks() {
        let bytes: HashMap<u64, u64> = [(1, 10), (2, 10), (3, 10)].into();
        assert_eq!(
            Plan::split(&settings(8, 0), bytes.clone())
                .unwrap()
                .leaves
                .len(),
            3
        );
        assert_eq!(
            Plan::split(&settings(8, 15), bytes.clone())
                .unwrap()
                .leaves
                .len(),
            2
        );
        assert!(Plan::split(&settings(8, 100), bytes.clone()).is_none());
        assert!(Plan::split(&settings(1, 0), bytes).is_none());
    }
}
