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

/// One bit of a 64-bit summary of a set of names (a one-hash Bloom filter): a parser looks up
/// each of a line's keys in three categories, and almost none is there, so most lookups end
/// at this bit instead of a binary search of string comparisons.
fn name_bit(name: &str) -> u64 {
    let b = name.as_bytes();
    let (first, last) = (b.first().copied(), b.last().copied());
    let h = (b.len() as u64)
        ^ (u64::from(first.unwrap_or(0)) << 8)
        ^ (u64::from(last.unwrap_or(0)) << 16)
        ^ (u64::from(b.get(b.len() / 2).copied().unwrap_or(0)) << 24);
    1 << (h.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 58)
}

/// The first eight bytes of a name as a big-endian integer, zero-padded: ordering two names
/// by it agrees with ordering them as strings wherever it tells them apart, so a lookup
/// compares integers and calls `memcmp` only for names sharing their first eight bytes.
#[inline]
fn name_prefix(name: &str) -> u64 {
    let b = name.as_bytes();
    if let Some(head) = b.first_chunk::<8>() {
        return u64::from_be_bytes(*head);
    }
    // Shorter names byte by byte: a copy of a variable length would call `memcpy`.
    b.iter()
        .enumerate()
        .fold(0, |p, (i, &c)| p | u64::from(c) << (56 - 8 * i))
}

/// The bytes at `(start, len)` of a [`Set`]'s buffer.
#[inline]
fn text(buf: &str, (start, len): (u32, u32)) -> &str {
    let start = start as usize;
    buf.get(start..start + len as usize).unwrap_or_default()
}

/// How pair `p` orders against the name `name` whose [`name_prefix`] is `prefix`: by the
/// prefixes, then, only when they tie, by the strings.
#[inline]
fn order(buf: &str, p: &Pair, prefix: u64, name: &str) -> std::cmp::Ordering {
    p.prefix
        .cmp(&prefix)
        .then_with(|| text(buf, p.name).cmp(name))
}

/// One pair of a [`Set`]: its name's [`name_prefix`] and where name and value lie in the
/// set's buffer.
#[derive(Debug, Clone, Copy)]
struct Pair {
    prefix: u64,
    name: (u32, u32),
    value: (u32, u32),
}

/// One category's labels.
///
/// Names and values are bytes of one buffer rather than a `String` each: a parser adds a
/// handful of pairs per line, and copying them into one buffer (cleared per entry) costs a
/// fraction of filling two strings per pair. Replaced values and removed pairs leave their
/// bytes behind until the next [`Set::assign`] or [`Set::clear`], which every entry starts
/// with.
///
/// A small set keeps its pairs in the order they came: a parser's new key (its name bit
/// clear, the common case) is appended without a search, and a look-up scans a few 24-byte
/// records comparing 8-byte prefixes. From [`Set::SCAN`] pairs on the set is sorted by name
/// and looked up by binary search, so a JSON line of hundreds of keys does not scan
/// quadratically. Nothing reads a set's order: every consumer builds [`Labels`] (which
/// sort) or hashes the pairs order-free.
#[derive(Debug, Clone)]
struct Set {
    buf: String,
    pairs: Vec<Pair>,
    /// [`name_bit`] of every name added since the last [`Set::clear`]: a superset of the
    /// names present (removals leave their bit), so a clear bit proves absence.
    bits: u64,
    /// The pairs are in name order (always so from [`Set::SCAN`] pairs on).
    sorted: bool,
}

impl Default for Set {
    fn default() -> Self {
        Set {
            buf: String::new(),
            pairs: Vec::new(),
            bits: 0,
            sorted: true,
        }
    }
}

impl Set {
    #[inline]
    fn text(&self, at: (u32, u32)) -> &str {
        text(&self.buf, at)
    }

    #[inline]
    fn name(&self, p: &Pair) -> &str {
        self.text(p.name)
    }

    #[inline]
    fn value(&self, p: &Pair) -> &str {
        self.text(p.value)
    }

    /// Appends `s` to the buffer. The buffer holds one entry's labels, and an entry is a
    /// line of at most a few MiB (Arrow's 32-bit offsets bound a batch below 2 GiB), so its
    /// offsets fit 32 bits.
    fn push(&mut self, s: &str) -> (u32, u32) {
        let start = self.buf.len() as u32;
        self.buf.push_str(s);
        (start, s.len() as u32)
    }

    #[inline]
    fn may_contain(&self, name: &str) -> bool {
        self.bits & name_bit(name) != 0
    }

    /// Pairs up to which a set is scanned rather than sorted (see [`Set`]).
    const SCAN: usize = 16;

    /// Where `name` is, or (in a sorted set) where it would go.
    #[inline]
    fn find(&self, name: &str) -> Result<usize, usize> {
        self.find_prefixed(name_prefix(name), name)
    }

    /// [`Set::find`] with the name's [`name_prefix`] already known.
    #[inline]
    fn find_prefixed(&self, prefix: u64, name: &str) -> Result<usize, usize> {
        if self.sorted {
            return self
                .pairs
                .binary_search_by(|p| order(&self.buf, p, prefix, name));
        }
        self.pairs
            .iter()
            .position(|p| p.prefix == prefix && text(&self.buf, p.name) == name)
            .ok_or(self.pairs.len())
    }

    fn get(&self, name: &str) -> Option<&str> {
        if !self.may_contain(name) {
            return None;
        }
        self.find(name).ok().map(|i| self.value(&self.pairs[i]))
    }

    fn contains(&self, name: &str) -> bool {
        self.may_contain(name) && self.find(name).is_ok()
    }

    fn set(&mut self, name: &str, value: &str) {
        let bit = name_bit(name);
        let found = if self.bits & bit != 0 {
            self.find(name).ok()
        } else {
            None
        };
        self.bits |= bit;
        if let Some(i) = found {
            let value = self.push(value);
            self.pairs[i].value = value;
            return;
        }
        self.insert_absent(name, name_prefix(name), value);
    }

    /// Adds a pair whose name the set does not have (its bit already set).
    #[inline]
    fn insert_absent(&mut self, name: &str, prefix: u64, value: &str) {
        let pair = Pair {
            prefix,
            name: self.push(name),
            value: self.push(value),
        };
        if self.pairs.len() < Self::SCAN {
            // Appending keeps a sorted set sorted only when the name goes last.
            if self.sorted
                && let Some(last) = self.pairs.last()
            {
                self.sorted = order(&self.buf, last, pair.prefix, name).is_lt();
            }
            self.pairs.push(pair);
            return;
        }
        if !self.sorted {
            let buf = &self.buf;
            self.pairs
                .sort_unstable_by(|a, b| order(buf, a, b.prefix, text(buf, b.name)));
            self.sorted = true;
        }
        let at = self.find(name).unwrap_or_else(|at| at);
        self.pairs.insert(at, pair);
    }

    /// Removes `name`; its value stays readable in the buffer until the set is cleared.
    /// The others keep their order.
    fn remove(&mut self, name: &str) -> Option<Pair> {
        if !self.may_contain(name) {
            return None;
        }
        self.find(name).ok().map(|i| self.pairs.remove(i))
    }

    /// Replaces the content with `pairs`.
    fn assign<'a>(&mut self, pairs: impl Iterator<Item = (&'a str, &'a str)>) {
        self.clear();
        for (name, value) in pairs {
            self.bits |= name_bit(name);
            let pair = Pair {
                prefix: name_prefix(name),
                name: self.push(name),
                value: self.push(value),
            };
            self.pairs.push(pair);
        }
        // Stream labels arrive sorted (a stable sort only checks that); structured metadata
        // may not.
        let buf = &self.buf;
        self.pairs
            .sort_by(|a, b| order(buf, a, b.prefix, text(buf, b.name)));
        self.pairs
            .dedup_by(|later, earlier| text(buf, later.name) == text(buf, earlier.name));
    }

    fn clear(&mut self) {
        self.buf.clear();
        self.pairs.clear();
        self.bits = 0;
        self.sorted = true;
    }

    /// Keeps the pairs for which `keep` returns true; returns whether any went.
    fn retain(&mut self, mut keep: impl FnMut(&str, &str) -> bool) -> bool {
        let before = self.pairs.len();
        let buf = &self.buf;
        self.pairs
            .retain(|p| keep(text(buf, p.name), text(buf, p.value)));
        self.pairs.len() != before
    }

    fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.pairs.iter().map(|p| (self.name(p), self.value(p)))
    }

    fn to_labels(&self) -> Labels {
        Labels::from_pairs(self.iter())
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

/// The label a parser makes of one key: its name after sanitising and clash renaming, or
/// none (the key sanitises to nothing, or the hints do not want it), with what adding it
/// needs to know.
#[derive(Debug, Clone, Default)]
pub(crate) struct KeyName {
    key: String,
    /// Empty when the key gives no label.
    name: String,
    bit: u64,
    prefix: u64,
    /// The name is structured metadata, which adding it as a parsed label moves.
    in_metadata: bool,
}

/// `a == b` for the short strings keys mostly are, without a call to `memcmp`.
#[inline]
fn same_key(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    if a.len() != b.len() {
        return false;
    }
    let rest_eq = |a: &[u8], b: &[u8]| a.iter().zip(b).all(|(x, y)| x == y);
    match (a.split_first_chunk::<8>(), b.split_first_chunk::<8>()) {
        (Some((x, a)), Some((y, b))) => x == y && rest_eq(a, b),
        _ => rest_eq(a, b),
    }
}

/// The names a parser stage gave each position's key in the lines it read last.
///
/// A key's label name depends on the key, the hints and the entry's clash rules, which read
/// only the stream (its original and current names) and the structured metadata names.
/// Lines of one stream nearly always share their keys and metadata names, so under an
/// unchanged stream key and the same metadata names a key equal to the one last seen at its
/// position takes the name found then: one string comparison instead of sanitising, three
/// clash look-ups and hashing the name (a quarter of `| logfmt`'s cost per pair).
#[derive(Debug, Clone, Default)]
pub(crate) struct KeyNames {
    owner: usize,
    stream_key: Option<u64>,
    /// The metadata names the names were found under.
    metadata: Vec<String>,
    keys: Vec<KeyName>,
    /// Where a key is named when it is not kept.
    spare: KeyName,
    /// Whether this line may use and keep names.
    usable: bool,
}

impl KeyNames {
    /// Positions remembered: a line of hundreds of keys names the rest afresh.
    const KEYS: usize = 64;

    fn begin(&mut self, owner: usize, entry: &EntryLabels) {
        let stream_key = entry.stream_key.filter(|_| !entry.stream_changed);
        self.usable = stream_key.is_some();
        if !self.usable
            || (self.owner == owner
                && self.stream_key == stream_key
                && self.metadata_is(&entry.metadata))
        {
            return;
        }
        self.owner = owner;
        self.stream_key = stream_key;
        self.keys.clear();
        self.metadata = entry.metadata.iter().map(|(n, _)| n.to_string()).collect();
    }

    fn metadata_is(&self, set: &Set) -> bool {
        set.pairs.len() == self.metadata.len()
            && set.iter().zip(&self.metadata).all(|((n, _), m)| n == m)
    }

    /// The rest of the line is named afresh: a stage moved a metadata label.
    pub(crate) fn forget_line(&mut self) {
        self.usable = false;
    }

    /// The label of the key at position `at` of the line: the one found for the same key
    /// there before, or `label(entry, key)` (the name before [`KeyName`]'s bookkeeping).
    pub(crate) fn name(
        &mut self,
        entry: &EntryLabels,
        at: usize,
        key: &str,
        label: impl FnOnce(&EntryLabels, &str) -> Option<String>,
    ) -> Option<&KeyName> {
        let keep = self.usable && at <= self.keys.len() && at < Self::KEYS;
        if keep && self.keys.get(at).is_some_and(|k| same_key(&k.key, key)) {
            return self.keys.get(at).filter(|k| !k.name.is_empty());
        }
        let name = label(entry, key).unwrap_or_default();
        let named = KeyName {
            key: if keep { key.to_string() } else { String::new() },
            bit: name_bit(&name),
            prefix: name_prefix(&name),
            in_metadata: entry.metadata.contains(&name),
            name,
        };
        let slot = if !keep {
            self.spare = named;
            &self.spare
        } else if at < self.keys.len() {
            self.keys[at] = named;
            &self.keys[at]
        } else {
            self.keys.push(named);
            &self.keys[at]
        };
        Some(slot).filter(|k| !k.name.is_empty())
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
    /// Stage failures recorded for this entry, so a stage can tell whether it failed.
    errors: u32,
    /// The caller's key for the stream of the last [`EntryLabels::reset_keyed`].
    stream_key: Option<u64>,
    /// Set when a stage changed the stream labels since the last reset.
    stream_changed: bool,
    /// The names a parser gave the keys of earlier lines (see [`KeyNames`]); boxed, as it
    /// is taken out and put back for every line.
    key_names: Option<Box<KeyNames>>,
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
        self.stream_key = None;
        self.reset_stream(stream);
        self.reset_entry(stream, structured_metadata);
    }

    /// [`EntryLabels::reset`] for a caller that names each stream by `key` (equal keys, equal
    /// labels): consecutive entries of one stream keep its labels instead of copying them
    /// again, unless a stage changed them.
    pub fn reset_keyed<S: AsRef<str>>(
        &mut self,
        key: u64,
        stream: &Labels,
        structured_metadata: &[(S, S)],
    ) {
        if self.stream_key != Some(key) || self.stream_changed {
            self.reset_stream(stream);
            self.stream_key = Some(key);
        }
        self.reset_entry(stream, structured_metadata);
    }

    /// True if no stage changed the stream labels of this entry: they are its stream's.
    pub fn stream_unchanged(&self) -> bool {
        !self.stream_changed
    }

    fn reset_stream(&mut self, stream: &Labels) {
        self.stream_changed = false;
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
    }

    fn reset_entry<S: AsRef<str>>(&mut self, stream: &Labels, structured_metadata: &[(S, S)]) {
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
        self.parsed.clear();
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
        let s = self.stream.iter().map(|(n, v)| (Category::Stream, n, v));
        let m = self
            .metadata
            .iter()
            .map(|(n, v)| (Category::StructuredMetadata, n, v));
        let p = self.parsed.iter().map(|(n, v)| (Category::Parsed, n, v));
        s.chain(m).chain(p)
    }

    /// The labels other than the stream's: structured metadata, then parsed ones.
    pub fn own_labels(&self) -> impl Iterator<Item = (&str, &str)> {
        self.metadata.iter().chain(self.parsed.iter())
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
                self.take(c, name);
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
        self.delete(name)
            .map(|(c, value)| (c, self.set_of(c).text(value).to_string()))
    }

    /// [`EntryLabels::remove`] without the removed value: true if `name` was there.
    pub fn discard(&mut self, name: &str) -> bool {
        self.delete(name).is_some()
    }

    /// Removes `name` from whichever category holds it: the category and where the value
    /// still lies in that category's buffer.
    fn delete(&mut self, name: &str) -> Option<(Category, (u32, u32))> {
        [
            Category::Parsed,
            Category::StructuredMetadata,
            Category::Stream,
        ]
        .into_iter()
        .find_map(|c| self.take(c, name).map(|p| (c, p.value)))
    }

    /// Removes `name` from category `c`.
    fn take(&mut self, c: Category, name: &str) -> Option<Pair> {
        let v = self.set_mut_unchanged(c).remove(name);
        self.stream_changed |= c == Category::Stream && v.is_some();
        v
    }

    /// Keeps only the labels for which `keep` returns true.
    pub(crate) fn retain(&mut self, mut keep: impl FnMut(&str, &str) -> bool) {
        self.stream_changed |= self.stream.retain(&mut keep);
        self.metadata.retain(&mut keep);
        self.parsed.retain(&mut keep);
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
        // The stream set's bits cover the original stream's names: only a reset clears them.
        if !self.stream.may_contain(name) && !self.metadata.may_contain(name) {
            return false;
        }
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
        self.add_parsed_first(name, name_bit(name), name_prefix(name), true, value);
    }

    /// [`EntryLabels::add_parsed_exact`] for a name whose [`name_bit`] and [`name_prefix`]
    /// the caller knows, and which is not structured metadata unless `maybe_metadata`. True
    /// when adding it moved a metadata label.
    #[inline]
    fn add_parsed_first(
        &mut self,
        name: &str,
        bit: u64,
        prefix: u64,
        maybe_metadata: bool,
        value: &str,
    ) -> bool {
        if self.parsed.bits & bit != 0 && self.parsed.find_prefixed(prefix, name).is_ok() {
            return false;
        }
        let moved = maybe_metadata && self.metadata.remove(name).is_some();
        self.parsed.bits |= bit;
        self.parsed.insert_absent(name, prefix, value);
        moved
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

    /// Runs `f` with the key names of parser stage `owner` (any number that tells stages
    /// apart, e.g. its address), forgotten first unless they were named under this entry's
    /// stream and structured metadata names.
    pub(crate) fn with_key_names<R>(
        &mut self,
        owner: usize,
        f: impl FnOnce(&mut Self, &mut KeyNames) -> R,
    ) -> R {
        let mut names = self.key_names.take().unwrap_or_default();
        names.begin(owner, self);
        let r = f(self, &mut names);
        self.key_names = Some(names);
        r
    }

    /// Adds parsed label `named` (from [`KeyNames::name`]) as [`EntryLabels::add_parsed_exact`]
    /// does. True when that moved a structured metadata label, which changes how later keys
    /// of the line are named (see [`KeyNames::forget_line`]).
    pub(crate) fn add_parsed_named(&mut self, named: &KeyName, value: &str) -> bool {
        self.add_parsed_first(
            &named.name,
            named.bit,
            named.prefix,
            named.in_metadata,
            value,
        )
    }

    /// The stream set, for a change: later entries of the stream cannot reuse it as is.
    fn stream_mut(&mut self) -> &mut Set {
        self.stream_changed = true;
        &mut self.stream
    }

    fn set_mut(&mut self, c: Category) -> &mut Set {
        match c {
            Category::Stream => self.stream_mut(),
            _ => self.set_mut_unchanged(c),
        }
    }

    fn set_of(&self, c: Category) -> &Set {
        match c {
            Category::Stream => &self.stream,
            Category::StructuredMetadata => &self.metadata,
            Category::Parsed => &self.parsed,
        }
    }

    /// Category `c`'s set, for a caller that tracks stream changes itself.
    fn set_mut_unchanged(&mut self, c: Category) -> &mut Set {
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
    fn keyed_resets_reuse_a_stream_until_a_stage_changes_it() {
        let a = Labels::from_pairs([("app", "a"), ("env", "p")]);
        let b = Labels::from_pairs([("app", "b")]);
        let none: &[(&str, &str)] = &[];
        let mut e = EntryLabels::default();
        e.reset_keyed(1, &a, &[("trace_id", "t1")]);
        e.add_parsed("env", "parsed");
        e.add_parsed("level", "info");
        assert!(e.stream_unchanged());
        assert_eq!(
            e.all().to_string(),
            r#"{app="a", env="p", env_extracted="parsed", level="info", trace_id="t1"}"#
        );
        // Parsed and metadata labels go with the entry; the stream stays.
        e.reset_keyed(1, &a, none);
        assert_eq!(e.all(), a);
        // Setting or removing anything but a stream label leaves the stream as it was.
        e.set_parsed("level", "x");
        e.set_error("JSONParserErr", "bad");
        assert_eq!(e.remove("nope"), None);
        assert!(e.stream_unchanged());
        // A stage that changes the stream makes the next reset copy it again, even with
        // the same key; and a name dropped from the stream still renames a parsed one.
        assert_eq!(e.remove("env"), Some((Category::Stream, "p".into())));
        assert!(!e.stream_unchanged());
        assert_eq!(e.get("env"), None);
        e.add_parsed("env", "v");
        assert_eq!(e.get("env_extracted"), Some("v"));
        e.reset_keyed(1, &a, none);
        assert!(e.stream_unchanged());
        assert_eq!(e.all(), a);
        e.retain(|n, _| n != "app");
        assert!(!e.stream_unchanged());
        e.reset_keyed(1, &a, none);
        assert_eq!(e.all(), a);
        // Another key is another stream.
        e.reset_keyed(2, &b, none);
        assert_eq!(e.all(), b);
        assert!(!e.clashes("env"));
        e.reset(&a, none);
        assert_eq!(e.all(), a);
    }

    #[test]
    fn name_bits_never_hide_a_present_name() {
        // Many names share a bit; a set must still find each of them, and removals must
        // not clear a bit another name needs.
        let names: Vec<String> = (0..300).map(|i| format!("k{i}")).collect();
        let mut s = Set::default();
        for n in &names {
            s.set(n, n);
        }
        for n in names.iter().step_by(3) {
            let removed = s.remove(n).map(|p| s.value(&p).to_string());
            assert_eq!(removed.as_deref(), Some(n.as_str()));
        }
        for (i, n) in names.iter().enumerate() {
            assert_eq!(s.get(n), (i % 3 != 0).then_some(n.as_str()), "{n}");
        }
        assert!(!s.contains("absent"));
        assert_eq!(s.pairs.len(), 200);
        assert!(s.iter().is_sorted());
    }

    #[test]
    fn name_prefixes_order_names_as_strings_do() {
        let names = [
            "",
            "a",
            "a\0",
            "a\0b",
            "ab",
            "abcdefgh",
            "abcdefgh\0",
            "abcdefghi",
            "abcdefgi",
            "b",
            "\u{ff}",
            "trace_id",
            "trace_id_extracted",
        ];
        for a in names {
            for b in names {
                let (pa, pb) = (name_prefix(a), name_prefix(b));
                assert!(pa == pb || pa.cmp(&pb) == a.cmp(b), "{a:?} {b:?}");
            }
        }
        let mut sorted = names;
        sorted.sort_unstable();
        // Filled in reverse: kept as it came while small, sorted once it grows past the scan
        // limit, and every name found either way.
        let mut s = Set::default();
        for n in names.iter().rev() {
            s.set(n, "v");
        }
        assert!(s.iter().map(|(n, _)| n).eq(names.iter().rev().copied()));
        for n in names {
            assert_eq!(s.get(n), Some("v"), "{n:?}");
        }
        let more: Vec<String> = (0..Set::SCAN).map(|i| format!("z{i:02}")).collect();
        for n in more.iter().rev() {
            s.set(n, "w");
        }
        let mut all: Vec<&str> = sorted
            .iter()
            .copied()
            .chain(more.iter().map(String::as_str))
            .collect();
        all.sort_unstable();
        assert!(s.iter().map(|(n, _)| n).eq(all.iter().copied()));
        for n in &all {
            assert!(s.contains(n), "{n:?}");
        }
    }

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
