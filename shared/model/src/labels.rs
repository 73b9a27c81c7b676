//! Stream label sets: canonical order, Loki's text form and a stable fingerprint.

use std::fmt;
use std::hash::Hasher;

/// One label pair.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Label {
    /// The label name.
    pub name: String,
    /// The label value.
    pub value: String,
}

/// A label set kept sorted by name, so equal sets compare, print and hash the same.
#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Labels(Vec<Label>);

impl Labels {
    /// The empty set.
    pub const fn new() -> Self {
        Labels(Vec::new())
    }

    /// Builds a set from pairs in any order. Later duplicates of a name are kept; callers that
    /// must reject duplicates check [`Labels::duplicate_name`] first.
    pub fn from_pairs<I, N, V>(pairs: I) -> Self
    where
        I: IntoIterator<Item = (N, V)>,
        N: Into<String>,
        V: Into<String>,
    {
        let mut v: Vec<Label> = pairs
            .into_iter()
            .map(|(n, v)| Label {
                name: n.into(),
                value: v.into(),
            })
            .collect();
        // Stable so that a duplicate name keeps its input order for error messages.
        v.sort_by(|a, b| a.name.cmp(&b.name));
        Labels(v)
    }

    /// The labels, sorted by name.
    pub fn iter(&self) -> impl Iterator<Item = &Label> {
        self.0.iter()
    }

    /// How many labels there are.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether there are no labels.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The value of label `name`, if set.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .binary_search_by(|l| l.name.as_str().cmp(name))
            .ok()
            .map(|i| self.0[i].value.as_str())
    }

    /// Sets `name` to `value`, replacing any existing value.
    pub fn set(&mut self, name: &str, value: &str) {
        match self.0.binary_search_by(|l| l.name.as_str().cmp(name)) {
            Ok(i) => self.0[i].value = value.to_string(),
            Err(i) => self.0.insert(
                i,
                Label {
                    name: name.to_string(),
                    value: value.to_string(),
                },
            ),
        }
    }

    /// The first name that appears twice, if any.
    pub fn duplicate_name(&self) -> Option<&str> {
        self.0
            .windows(2)
            .find(|w| w[0].name == w[1].name)
            .map(|w| w[0].name.as_str())
    }

    /// Drops labels whose value is empty, as Loki does on ingest.
    pub fn retain_non_empty(&mut self) {
        self.0.retain(|l| !l.value.is_empty());
    }

    /// A stable 64-bit identity of the set. It is part of the storage format (the `stream`
    /// column), so it must never change: xxHash64 (seed 0) over `name 0xff value 0xff` per pair
    /// in name order.
    pub fn fingerprint(&self) -> u64 {
        self.hash_with_seed(0)
    }

    /// xxHash64 of the set as [`Labels::fingerprint`] computes it, under another seed.
    pub fn hash_with_seed(&self, seed: u64) -> u64 {
        hash_pairs(
            self.0.iter().map(|l| (l.name.as_str(), l.value.as_str())),
            seed,
        )
    }

    /// The labels, sorted by name.
    pub fn into_vec(self) -> Vec<Label> {
        self.0
    }
}

impl<'a> IntoIterator for &'a Labels {
    type Item = &'a Label;
    type IntoIter = std::slice::Iter<'a, Label>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.iter()
    }
}

/// Loki's text form, `{a="b", c="d"}`, with values quoted the way Go's `%q` does for the
/// characters that matter (`\`, `"`, control characters).
impl fmt::Display for Labels {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("{")?;
        for (i, l) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            f.write_str(&l.name)?;
            f.write_str("=")?;
            write_quoted(f, &l.value)?;
        }
        f.write_str("}")
    }
}

/// Writes `s` as a double-quoted string with Go-style escapes.
pub fn write_quoted(f: &mut impl fmt::Write, s: &str) -> fmt::Result {
    f.write_char('"')?;
    for c in s.chars() {
        match c {
            '"' => f.write_str("\\\"")?,
            '\\' => f.write_str("\\\\")?,
            '\n' => f.write_str("\\n")?,
            '\r' => f.write_str("\\r")?,
            '\t' => f.write_str("\\t")?,
            c if (c as u32) < 0x20 || c == '\u{7f}' => write!(f, "\\x{:02x}", c as u32)?,
            c => f.write_char(c)?,
        }
    }
    f.write_char('"')
}

/// [`Labels::hash_with_seed`] of the set `pairs` lists in name order, without building it.
pub fn hash_pairs<'a>(pairs: impl Iterator<Item = (&'a str, &'a str)>, seed: u64) -> u64 {
    let mut h = twox_hash::XxHash64::with_seed(seed);
    for (name, value) in pairs {
        h.write(name.as_bytes());
        h.write(&[0xff]);
        h.write(value.as_bytes());
        h.write(&[0xff]);
    }
    h.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sorted_display_and_lookup() {
        let l = Labels::from_pairs([("job", "x"), ("app", "a\"b")]);
        assert_eq!(l.to_string(), r#"{app="a\"b", job="x"}"#);
        assert_eq!(l.get("job"), Some("x"));
        assert_eq!(l.get("nope"), None);
    }

    const PINNED_A1_B2: u64 = 14_719_918_290_853_119_255;

    #[test]
    fn fingerprint_is_order_independent_and_stable() {
        let a = Labels::from_pairs([("a", "1"), ("b", "2")]);
        let b = Labels::from_pairs([("b", "2"), ("a", "1")]);
        assert_eq!(a.fingerprint(), b.fingerprint());
        // Pinned: the fingerprint is part of the on-disk format.
        assert_eq!(a.fingerprint(), PINNED_A1_B2);
        assert_ne!(
            a.fingerprint(),
            Labels::from_pairs([("a", "12")]).fingerprint()
        );
    }

    #[test]
    fn duplicates_and_empty_values() {
        let mut l = Labels::from_pairs([("a", "1"), ("a", "2"), ("b", "")]);
        assert_eq!(l.duplicate_name(), Some("a"));
        l.retain_non_empty();
        assert_eq!(l.len(), 2);
    }
}
