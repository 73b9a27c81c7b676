//! Label-set interning: every distinct label set gets a small id once, so per-step vectors are
//! `(id, value)` pairs and no label set is cloned or hashed again on the hot path.

use std::collections::HashMap;

use parquetry_model::Labels;

/// Id of an interned label set.
pub(crate) type Id = u32;

#[derive(Debug, Default)]
pub(crate) struct Interner {
    sets: Vec<Labels>,
    index: HashMap<Labels, Id>,
}

impl Interner {
    pub(crate) fn intern(&mut self, labels: Labels) -> Id {
        if let Some(&id) = self.index.get(&labels) {
            return id;
        }
        let id = Id::try_from(self.sets.len()).unwrap_or(Id::MAX);
        self.sets.push(labels.clone());
        self.index.insert(labels, id);
        id
    }

    pub(crate) fn get(&self, id: Id) -> &Labels {
        &self.sets[id as usize]
    }

    pub(crate) fn len(&self) -> usize {
        self.sets.len()
    }
}

/// A copy of `labels` keeping only the names `keep` accepts. The input is already sorted, so
/// the result is too.
pub(crate) fn filter_labels(labels: &Labels, keep: impl Fn(&str) -> bool) -> Labels {
    Labels::from_pairs(
        labels
            .iter()
            .filter(|l| keep(&l.name))
            .map(|l| (l.name.clone(), l.value.clone())),
    )
}
