//! Label-set interning: every distinct label set gets a small id once, so per-step vectors are
//! `(id, value)` pairs and no label set is cloned or hashed again on the hot path.

use std::sync::Arc;

use parquetry_model::Labels;

use crate::FastMap;

/// Id of an interned label set.
pub(crate) type Id = u32;

/// Each set is held once, shared by the list and the index: a per-line series (a parser query
/// with a unique id per line) interns a set per line.
#[derive(Debug, Default)]
pub(crate) struct Interner {
    sets: Vec<Arc<Labels>>,
    index: FastMap<Arc<Labels>, Id>,
}

impl Interner {
    pub(crate) fn intern(&mut self, labels: Labels) -> Id {
        if let Some(&id) = self.index.get(&labels) {
            return id;
        }
        let id = Id::try_from(self.sets.len()).unwrap_or(Id::MAX);
        let labels = Arc::new(labels);
        self.sets.push(labels.clone());
        self.index.insert(labels, id);
        id
    }

    /// Room for `n` more label sets without rehashing every one interned so far.
    pub(crate) fn reserve(&mut self, n: usize) {
        self.sets.reserve(n);
        self.index.reserve(n);
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
