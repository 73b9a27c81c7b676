//! The labels of one entry, kept apart by origin.
//!
//! Loki answers categorised queries with stream labels, structured metadata and parsed labels
//! as three separate sets, so the pipeline must remember where each label came from. A name
//! lives in at most one category: a later stage that sets a name moves it, which keeps lookups
//! unambiguous and makes [`EntryLabels::all`] a plain union.

use parquetry_model::Labels;

/// `__error__`: the error category of the first failing stage (Loki's error categories, e.g. `JSONParserErr`).
pub const ERROR_LABEL: &str = "__error__";
/// `__error_details__`: the underlying message of `__error__`.
pub const ERROR_DETAILS_LABEL: &str = "__error_details__";

/// Where a label came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Category {
    /// A label of the stream selector's stream.
    Stream,
    /// Structured metadata of the entry.
    StructuredMetadata,
    /// Set by a pipeline stage (parser, `label_format`, errors).
    Parsed,
}

/// One category's labels, sorted by name so lookups are binary searches.
#[derive(Debug, Clone, Default)]
struct Set(Vec<(String, String)>);

impl Set {
    fn find(&self, name: &str) -> Result<usize, usize> {
        self.0.binary_search_by(|(n, _)| n.as_str().cmp(name))
    }

    fn get(&self, name: &str) -> Option<&str> {
        self.find(name).ok().map(|i| self.0[i].1.as_str())
    }

    fn contains(&self, name: &str) -> bool {
        self.find(name).is_ok()
    }

    fn set(&mut self, name: &str, value: &str) {
        self.set_pooled(name, value, &mut Vec::new());
    }

    /// Like `set`, taking the strings for a new pair from `pool` when it has some.
    fn set_pooled(&mut self, name: &str, value: &str, pool: &mut Vec<(String, String)>) {
        match self.find(name) {
            Ok(i) => {
                let v = &mut self.0[i].1;
                v.clear();
                v.push_str(value);
            }
            Err(i) => {
                let pair = match pool.pop() {
                    Some((mut n, mut v)) => {
                        n.clear();
                        n.push_str(name);
                        v.clear();
                        v.push_str(value);
                        (n, v)
                    }
                    None => (name.to_string(), value.to_string()),
                };
                self.0.insert(i, pair);
            }
        }
    }

    fn remove(&mut self, name: &str) -> Option<String> {
        self.find(name).ok().map(|i| self.0.remove(i).1)
    }

    /// Replaces the content with `pairs`, reusing the existing strings' buffers.
    fn assign<'a>(&mut self, pairs: impl Iterator<Item = (&'a str, &'a str)>) {
        let mut n = 0;
        for (name, value) in pairs {
            if let Some((dn, dv)) = self.0.get_mut(n) {
                dn.clear();
                dn.push_str(name);
                dv.clear();
                dv.push_str(value);
            } else {
                self.0.push((name.to_string(), value.to_string()));
            }
            n += 1;
        }
        self.0.truncate(n);
        // Stream labels arrive sorted; structured metadata may not.
        if !self.0.is_sorted_by(|a, b| a.0 <= b.0) {
            self.0.sort_by(|a, b| a.0.cmp(&b.0));
        }
        self.0.dedup_by(|later, earlier| later.0 == earlier.0);
    }

    fn to_labels(&self) -> Labels {
        Labels::from_pairs(self.0.iter().map(|(n, v)| (n.as_str(), v.as_str())))
    }
}

/// The name structured metadata `name` goes by next to `stream`: Loki keeps metadata named
/// like a stream label as `<name>_extracted` rather than letting either hide the other.
pub fn metadata_name<'a>(stream: &Labels, name: &'a str) -> std::borrow::Cow<'a, str> {
    if stream.get(name).is_some() {
        std::borrow::Cow::Owned(format!("{name}_extracted"))
    } else {
        std::borrow::Cow::Borrowed(name)
    }
}

/// Labels of one entry by origin, as Loki categorises them: stream labels, structured
/// metadata and parsed (extracted) labels, including `__error__`/`__error_details__`.
///
/// ```
/// use parquetry_model::Labels;
/// use parquetry_pipeline::{Category, EntryLabels};
///
/// let stream = Labels::from_pairs([("app", "api")]);
/// let mut e = EntryLabels::new(&stream, &[("trace_id", "abc")]);
/// e.set(Category::Parsed, "status", "500");
/// assert_eq!(e.get("trace_id"), Some("abc"));
/// assert_eq!(e.all().to_string(), r#"{app="api", status="500", trace_id="abc"}"#);
/// assert_eq!(e.parsed().to_string(), r#"{status="500"}"#);
/// ```
#[derive(Debug, Clone, Default)]
pub struct EntryLabels {
    stream: Set,
    metadata: Set,
    parsed: Set,
    /// Names of the stream labels the entry started with. Parsers rename clashing keys with
    /// `_extracted` based on these even after `drop`/`label_format` changed `stream`.
    original_stream: Vec<String>,
    /// Parsed pairs of earlier entries, kept so that parsing the next entry reuses their
    /// buffers instead of allocating two strings per label.
    pool: Vec<(String, String)>,
    /// Stage failures recorded for this entry, so a stage can tell whether it failed.
    errors: u32,
}

impl EntryLabels {
    /// Starts an entry from its stream labels and structured metadata. Metadata named like a
    /// stream label is kept as `<name>_extracted`, as Loki shows it.
    pub fn new<S: AsRef<str>>(stream: &Labels, structured_metadata: &[(S, S)]) -> Self {
        let mut e = EntryLabels::default();
        e.reset(stream, structured_metadata);
        e
    }

    /// The labels of an entry without structured metadata.
    pub fn of_stream(stream: &Labels) -> Self {
        EntryLabels::new::<&str>(stream, &[])
    }

    /// Reinitialises the labels for the next entry, reusing allocations. The engine calls
    /// this once per entry, so it must not allocate when the shapes repeat.
    pub fn reset<S: AsRef<str>>(&mut self, stream: &Labels, structured_metadata: &[(S, S)]) {
        self.stream
            .assign(stream.iter().map(|l| (l.name.as_str(), l.value.as_str())));
        let mut n = 0;
        for l in stream.iter() {
            if let Some(s) = self.original_stream.get_mut(n) {
                s.clear();
                s.push_str(&l.name);
            } else {
                self.original_stream.push(l.name.clone());
            }
            n += 1;
        }
        self.original_stream.truncate(n);
        self.original_stream.sort();
        if structured_metadata
            .iter()
            .any(|(n, _)| self.stream.contains(n.as_ref()))
        {
            let renamed: Vec<(String, String)> = structured_metadata
                .iter()
                .map(|(n, v)| {
                    let name = metadata_name(stream, n.as_ref()).into_owned();
                    (name, v.as_ref().to_string())
                })
                .collect();
            self.metadata
                .assign(renamed.iter().map(|(n, v)| (n.as_str(), v.as_str())));
        } else {
            self.metadata.assign(
                structured_metadata
                    .iter()
                    .map(|(n, v)| (n.as_ref(), v.as_ref())),
            );
        }
        self.pool.append(&mut self.parsed.0);
        self.errors = 0;
    }

    /// Stream labels as modified by the pipeline.
    pub fn stream(&self) -> Labels {
        self.stream.to_labels()
    }

    /// Structured metadata, minus what a parser or `drop`/`keep` replaced or removed.
    pub fn structured_metadata(&self) -> Labels {
        self.metadata.to_labels()
    }

    /// Parsed labels, including `__error__` and `__error_details__`.
    pub fn parsed(&self) -> Labels {
        self.parsed.to_labels()
    }

    /// Everything merged: the series labels of a metric query and the stream of a 2-tuple
    /// log result.
    pub fn all(&self) -> Labels {
        Labels::from_pairs(self.iter().map(|(_, n, v)| (n.to_string(), v.to_string())))
    }

    /// Every label with its category, stream labels first.
    pub fn iter(&self) -> impl Iterator<Item = (Category, &str, &str)> {
        let s = self
            .stream
            .0
            .iter()
            .map(|(n, v)| (Category::Stream, n.as_str(), v.as_str()));
        let m = self
            .metadata
            .0
            .iter()
            .map(|(n, v)| (Category::StructuredMetadata, n.as_str(), v.as_str()));
        let p = self
            .parsed
            .0
            .iter()
            .map(|(n, v)| (Category::Parsed, n.as_str(), v.as_str()));
        s.chain(m).chain(p)
    }

    /// A label's value, whatever its category.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.parsed
            .get(name)
            .or_else(|| self.metadata.get(name))
            .or_else(|| self.stream.get(name))
    }

    /// Which category holds `name`.
    pub fn category(&self, name: &str) -> Option<Category> {
        if self.parsed.contains(name) {
            Some(Category::Parsed)
        } else if self.metadata.contains(name) {
            Some(Category::StructuredMetadata)
        } else if self.stream.contains(name) {
            Some(Category::Stream)
        } else {
            None
        }
    }

    /// True if a stage already failed on this entry.
    pub fn has_error(&self) -> bool {
        self.parsed.contains(ERROR_LABEL)
    }

    /// Records a stage failure. A later failure replaces an earlier one, as in Loki.
    pub fn set_error(&mut self, kind: &str, details: &str) {
        self.set(Category::Parsed, ERROR_LABEL, kind);
        self.set(Category::Parsed, ERROR_DETAILS_LABEL, details);
        self.errors += 1;
    }

    /// How many stage failures were recorded for this entry so far.
    pub(crate) fn error_count(&self) -> u32 {
        self.errors
    }

    /// Sets `name` in `category`, removing it from any other category.
    pub fn set(&mut self, category: Category, name: &str, value: &str) {
        for c in [
            Category::Stream,
            Category::StructuredMetadata,
            Category::Parsed,
        ] {
            if c != category {
                self.set_mut(c).remove(name);
            }
        }
        self.set_mut(category).set(name, value);
    }

    /// Sets `name` where it already lives, or as a parsed label if it is new.
    pub fn set_in_place(&mut self, name: &str, value: &str) {
        let c = self.category(name).unwrap_or(Category::Parsed);
        self.set_mut(c).set(name, value);
    }

    /// Removes `name` from whichever category holds it.
    pub fn remove(&mut self, name: &str) -> Option<(Category, String)> {
        for c in [
            Category::Parsed,
            Category::StructuredMetadata,
            Category::Stream,
        ] {
            if let Some(v) = self.set_mut(c).remove(name) {
                return Some((c, v));
            }
        }
        None
    }

    /// Keeps only the labels for which `keep` returns true.
    pub(crate) fn retain(&mut self, mut keep: impl FnMut(&str, &str) -> bool) {
        for c in [
            Category::Stream,
            Category::StructuredMetadata,
            Category::Parsed,
        ] {
            self.set_mut(c).0.retain(|(n, v)| keep(n, v));
        }
    }

    /// Adds a label produced by a parser, applying Loki's clash rules: a name that is a
    /// stream label or structured metadata gets the `_extracted` suffix (both values stay
    /// visible, in every kind of query), and a name some parser already extracted for this
    /// entry keeps its first value. (Parsers call [`EntryLabels::parsed_name`] and
    /// [`EntryLabels::add_parsed_exact`] themselves, to consult the metric hints between.)
    #[cfg(test)]
    pub(crate) fn add_parsed(&mut self, name: &str, value: &str) {
        let name = self.parsed_name(name).into_owned();
        self.add_parsed_exact(&name, value);
    }

    /// True if a parser must rename `name` with `_extracted`: the entry's stream had that
    /// label (even if `drop` or `label_format` removed it since), or it is structured
    /// metadata now.
    pub(crate) fn clashes(&self, name: &str) -> bool {
        self.original_stream
            .binary_search_by(|n| n.as_str().cmp(name))
            .is_ok()
            || self.stream.contains(name)
            || self.metadata.contains(name)
    }

    /// True if a stage already set `name` as a parsed label for this entry.
    pub(crate) fn is_parsed(&self, name: &str) -> bool {
        self.parsed.contains(name)
    }

    /// Adds a parsed label whose name the caller already checked for clashes, unless a
    /// parser already extracted that name for this entry.
    pub(crate) fn add_parsed_exact(&mut self, name: &str, value: &str) {
        if self.parsed.contains(name) {
            return;
        }
        self.metadata.remove(name);
        self.parsed.set_pooled(name, value, &mut self.pool);
    }

    /// Sets a parsed label, replacing an earlier value: the extraction parsers
    /// (`json a="x"`, `logfmt a`) and `unpack` overwrite where the others keep the first.
    pub(crate) fn set_parsed(&mut self, name: &str, value: &str) {
        self.set(Category::Parsed, name, value);
    }

    /// Records a stage failure without a message, leaving any earlier `__error_details__`.
    pub(crate) fn set_error_kind(&mut self, kind: &str) {
        self.set(Category::Parsed, ERROR_LABEL, kind);
        self.errors += 1;
    }

    /// The name a parser gives key `name`: with `_extracted` when it clashes.
    pub(crate) fn parsed_name<'a>(&self, name: &'a str) -> std::borrow::Cow<'a, str> {
        if self.clashes(name) {
            std::borrow::Cow::Owned(format!("{name}_extracted"))
        } else {
            std::borrow::Cow::Borrowed(name)
        }
    }

    fn set_mut(&mut self, c: Category) -> &mut Set {
        match c {
            Category::Stream => &mut self.stream,
            Category::StructuredMetadata => &mut self.metadata,
            Category::Parsed => &mut self.parsed,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn categories_and_moves() {
        let stream = Labels::from_pairs([("app", "a"), ("env", "p")]);
        let sm = vec![
            ("trace_id".to_string(), "t".to_string()),
            ("app".to_string(), "dup".to_string()),
        ];
        let mut e = EntryLabels::new(&stream, &sm);
        assert_eq!(e.get("app"), Some("a"));
        // Metadata named like a stream label shows as `_extracted` (recorded from Loki 3.8).
        assert_eq!(
            e.structured_metadata().to_string(),
            r#"{app_extracted="dup", trace_id="t"}"#
        );
        // A parsed name clashing with either a stream label or metadata is renamed too,
        // and the parsed value replaces metadata of the renamed name.
        e.add_parsed("app", "x");
        e.add_parsed("app", "y");
        e.add_parsed("trace_id", "parsed");
        assert_eq!(e.get("app_extracted"), Some("x"));
        assert_eq!(e.category("app_extracted"), Some(Category::Parsed));
        assert_eq!(e.category("trace_id"), Some(Category::StructuredMetadata));
        assert_eq!(e.get("trace_id_extracted"), Some("parsed"));
        assert_eq!(
            e.all().to_string(),
            r#"{app="a", app_extracted="x", env="p", trace_id="t", trace_id_extracted="parsed"}"#
        );
        e.set_error("JSONParserErr", "bad");
        assert!(e.has_error());
        assert_eq!(e.remove("app"), Some((Category::Stream, "a".into())));
        assert_eq!(e.stream().to_string(), r#"{env="p"}"#);
        // Still renamed after the stream label went away.
        e.add_parsed("app", "z");
        assert_eq!(e.get("app"), None);
        e.reset(&stream, &[] as &[(&str, &str)]);
        assert_eq!(e.all(), stream);
    }
}
