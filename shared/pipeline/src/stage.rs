//! The compiled pipeline and the stages that need no module of their own.

use std::borrow::Cow;

use parquetry_logql::{LabelFormat, LabelRef, Stage};
use regex::Regex;

use crate::PipelineError;
use crate::filter::{CompiledLineFilter, Pattern};
use crate::hints::{PRESERVE_ERROR_LABEL, ParserHints};
use crate::json::{self, JsonExtract};
use crate::label_filter::CompiledLabelFilter;
use crate::labels::{Category, ERROR_DETAILS_LABEL, ERROR_LABEL, EntryLabels};
use crate::logfmt::Logfmt;
use crate::template::{ExecError, Template};

/// `__error__` of a failed `line_format`/`label_format` template.
pub const TEMPLATE_FORMAT_ERR: &str = "TemplateFormatErr";

#[derive(Debug)]
enum Compiled {
    LineFilter(CompiledLineFilter),
    JsonAll,
    Json(JsonExtract),
    Logfmt(Logfmt),
    Regexp {
        re: Regex,
        /// `(group index, label name)` of the named groups.
        names: Vec<(usize, String)>,
    },
    Pattern {
        pattern: Pattern,
        /// Label name per capture, `None` for `<_>`.
        names: Vec<Option<String>>,
    },
    Unpack,
    LabelFilter(CompiledLabelFilter),
    LineFormat(Template),
    LabelFormat(Vec<LabelFormatOp>),
    Drop(Vec<LabelRef>),
    Keep(Vec<LabelRef>),
    Decolorize,
}

#[derive(Debug)]
enum LabelFormatOp {
    Rename { dst: String, src: String },
    Template { dst: String, template: Template },
}

/// A compiled log pipeline. Build it once per query; it is `Send + Sync` so that scan
/// partitions can share it.
#[derive(Debug)]
pub struct Pipeline {
    stages: Vec<Compiled>,
    /// Set for metric queries: which labels the parsers must extract.
    hints: Option<ParserHints>,
}

impl Pipeline {
    /// Compiles regexes, templates, patterns and IP matchers. Errors carry a message a user
    /// can act on (the engine answers them with 400).
    pub fn new(stages: &[Stage]) -> Result<Pipeline, PipelineError> {
        let stages = stages.iter().map(compile).collect::<Result<Vec<_>, _>>()?;
        Ok(Pipeline {
            stages,
            hints: None,
        })
    }

    /// Limits the parsers to what a metric query needs, as Loki does (see [`ParserHints`]).
    pub fn with_hints(mut self, hints: ParserHints) -> Pipeline {
        // Hints that want every label and stop nothing are no hints: parsers then skip
        // consulting them per key.
        self.hints = Some(hints).filter(|h| !h.wants_everything());
        self
    }

    /// No stages at all.
    pub fn is_empty(&self) -> bool {
        self.stages.is_empty()
    }

    /// True if the pipeline only has line filters (engine fast path: no labels change).
    pub fn only_line_filters(&self) -> bool {
        self.stages
            .iter()
            .all(|s| matches!(s, Compiled::LineFilter(_)))
    }

    /// Runs the line filters only, for engines that evaluate them ahead of the rest (valid
    /// when [`Pipeline::only_line_filters`] holds).
    pub fn line_filters_keep(&self, line: &str) -> bool {
        self.stages.iter().all(|s| match s {
            Compiled::LineFilter(f) => f.keep(line),
            _ => true,
        })
    }

    /// Runs one entry. Returns `None` when a stage drops it, otherwise the (possibly
    /// rewritten) line. `entry` carries the categorised labels in and out.
    pub fn process<'l>(
        &self,
        ts_ns: i64,
        line: &'l str,
        entry: &mut EntryLabels,
    ) -> Option<Cow<'l, str>> {
        let mut line: Cow<'l, str> = Cow::Borrowed(line);
        let hints = self.hints.as_ref();
        let skip = |entry: &EntryLabels| hints.is_some_and(|h| h.skip_parsers(entry));
        let wants = |name: &str| hints.is_none_or(|h| h.wants(name));
        for stage in &self.stages {
            let errors = entry.error_count();
            match stage {
                Compiled::LineFilter(f) => {
                    if !f.keep(&line) {
                        return None;
                    }
                }
                Compiled::JsonAll if !skip(entry) => json::parse_all(&line, entry, hints),
                Compiled::Json(j) if !skip(entry) => j.process(&line, entry),
                Compiled::Logfmt(l) if !skip(entry) => l.process(&line, entry, hints),
                Compiled::JsonAll | Compiled::Json(_) | Compiled::Logfmt(_) => {}
                Compiled::Regexp { re, names } => {
                    if let Some(caps) = re.captures(&line) {
                        for (i, name) in names {
                            let v = caps.get(*i).map_or("", |m| m.as_str());
                            let name = entry.parsed_name(name);
                            if wants(&name) {
                                entry.add_parsed_exact(&name, v);
                            }
                        }
                    }
                }
                Compiled::Pattern { pattern, names } => {
                    if !skip(entry) {
                        pattern.run(&line, |i, v| {
                            if let Some(Some(name)) = names.get(i) {
                                let name = entry.parsed_name(name);
                                if wants(&name) {
                                    entry.add_parsed_exact(&name, v);
                                }
                            }
                        });
                    }
                }
                Compiled::Unpack => {
                    if !skip(entry)
                        && let Some(new) = json::unpack(&line, entry, hints)
                    {
                        line = Cow::Owned(new.into_owned());
                    }
                }
                Compiled::LabelFilter(f) => {
                    if !f.keep(entry) {
                        return None;
                    }
                }
                Compiled::LineFormat(t) => match t.render(entry, &line, ts_ns) {
                    Ok(s) => line = Cow::Owned(s),
                    Err(e) => entry.set_error(TEMPLATE_FORMAT_ERR, &e.to_string()),
                },
                Compiled::LabelFormat(ops) => label_format(ops, entry, &line, ts_ns),
                Compiled::Drop(refs) => drop_labels(refs, entry),
                Compiled::Keep(refs) => entry.retain(|name, value| {
                    name == ERROR_LABEL
                        || name == ERROR_DETAILS_LABEL
                        || name == PRESERVE_ERROR_LABEL
                        || refs.iter().any(|r| match r {
                            LabelRef::Name(n) => n == name,
                            LabelRef::Matcher(m) => m.name == name && m.matches_value(value),
                        })
                }),
                Compiled::Decolorize => {
                    if line.contains('\x1b') {
                        line = Cow::Owned(decolorize(&line));
                    }
                }
            }
            // A parser failure the query groups by (`by (__error__)`) is marked so that it
            // is counted rather than failing the query.
            if hints.is_some_and(ParserHints::preserve_error)
                && entry.error_count() > errors
                && is_parser(stage)
            {
                entry.set_parsed(PRESERVE_ERROR_LABEL, "true");
            }
        }
        Some(line)
    }
}

fn is_parser(stage: &Compiled) -> bool {
    matches!(
        stage,
        Compiled::JsonAll | Compiled::Json(_) | Compiled::Logfmt(_) | Compiled::Unpack
    )
}

fn compile(stage: &Stage) -> Result<Compiled, PipelineError> {
    Ok(match stage {
        Stage::LineFilter(f) => Compiled::LineFilter(CompiledLineFilter::new(f)?),
        Stage::Json(ex) if ex.is_empty() => Compiled::JsonAll,
        Stage::Json(ex) => Compiled::Json(JsonExtract::new(ex)?),
        Stage::Logfmt(p) => Compiled::Logfmt(Logfmt::new(p)),
        Stage::Regexp(re) => {
            let re = parquetry_logql::regexes::line_filter_regex(re)?;
            let names = re
                .capture_names()
                .enumerate()
                .filter_map(|(i, n)| n.map(|n| (i, n.to_string())))
                .collect();
            Compiled::Regexp { re, names }
        }
        Stage::Pattern(p) => {
            let parts = parquetry_logql::pattern::parse_parser_pattern(p)?;
            let pattern = Pattern::new(parts, false);
            let names = pattern.captures().map(|c| c.map(str::to_string)).collect();
            Compiled::Pattern { pattern, names }
        }
        Stage::Unpack => Compiled::Unpack,
        Stage::LabelFilter(f) => Compiled::LabelFilter(CompiledLabelFilter::new(f)?),
        Stage::LineFormat(t) => Compiled::LineFormat(Template::compile(t).map_err(|reason| {
            PipelineError::LineTemplate {
                template: t.clone(),
                reason,
            }
        })?),
        Stage::LabelFormat(ops) => Compiled::LabelFormat(
            ops.iter()
                .map(|op| {
                    Ok(match op {
                        LabelFormat::Rename { dst, src } => LabelFormatOp::Rename {
                            dst: dst.clone(),
                            src: src.clone(),
                        },
                        LabelFormat::Template { dst, template } => LabelFormatOp::Template {
                            dst: dst.clone(),
                            template: Template::compile(template).map_err(|reason| {
                                PipelineError::LabelTemplate {
                                    label: dst.clone(),
                                    template: template.clone(),
                                    reason,
                                }
                            })?,
                        },
                    })
                })
                .collect::<Result<_, PipelineError>>()?,
        ),
        Stage::Drop(r) => Compiled::Drop(r.clone()),
        Stage::Keep(r) => Compiled::Keep(r.clone()),
        Stage::Decolorize => Compiled::Decolorize,
    })
}

/// `drop`. Dropping `__error__` also drops `__error_details__`: the details are meaningless
/// without the error, and leaving them would split series by error text (Loki documents
/// `| json | drop __error__` as leaving no error labels).
fn drop_labels(refs: &[LabelRef], entry: &mut EntryLabels) {
    for r in refs {
        let dropped = match r {
            LabelRef::Name(n) => entry.discard(n),
            LabelRef::Matcher(m) => {
                entry.get(&m.name).is_some_and(|v| m.matches_value(v)) && entry.discard(&m.name)
            }
        };
        if dropped && r.name() == ERROR_LABEL {
            entry.discard(ERROR_DETAILS_LABEL);
        }
    }
}

/// Every template of the stage sees the labels as they were before the stage, as in Loki;
/// renames then apply in order on the live labels and keep the source label's category.
fn label_format(ops: &[LabelFormatOp], entry: &mut EntryLabels, line: &str, ts_ns: i64) {
    let rendered: Vec<Option<Result<String, ExecError>>> = ops
        .iter()
        .map(|op| match op {
            LabelFormatOp::Template { template, .. } => Some(template.render(entry, line, ts_ns)),
            LabelFormatOp::Rename { .. } => None,
        })
        .collect();
    for (op, r) in ops.iter().zip(rendered) {
        match (op, r) {
            (LabelFormatOp::Rename { dst, src }, _) => {
                if dst == src {
                    continue;
                }
                // Loki files every label_format result as a parsed label, whatever the
                // category of its source or of a label it replaces.
                if let Some((_, v)) = entry.remove(src) {
                    entry.set(Category::Parsed, dst, &v);
                }
            }
            (LabelFormatOp::Template { dst, .. }, Some(Ok(v))) => {
                entry.set(Category::Parsed, dst, &v)
            }
            (LabelFormatOp::Template { .. }, Some(Err(e))) => {
                entry.set_error(TEMPLATE_FORMAT_ERR, &e.to_string());
            }
            (LabelFormatOp::Template { .. }, None) => {}
        }
    }
}

/// Removes ANSI escape sequences: CSI (`ESC [ … final`), OSC (`ESC ] … BEL` or `ESC \`),
/// character set designations and two-byte escapes.
pub(crate) fn decolorize(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = String::with_capacity(s.len());
    let mut i = 0;
    let mut last = 0;
    while i < b.len() {
        if b[i] != 0x1b {
            i += 1;
            continue;
        }
        out.push_str(&s[last..i]);
        i += 1;
        match b.get(i) {
            Some(b'[') => {
                i += 1;
                // Parameter and intermediate bytes, then one final byte in 0x40..=0x7e.
                while i < b.len() && (0x20..=0x3f).contains(&b[i]) {
                    i += 1;
                }
                if i < b.len() && (0x40..=0x7e).contains(&b[i]) {
                    i += 1;
                }
            }
            Some(b']') => {
                i += 1;
                while i < b.len() {
                    if b[i] == 0x07 {
                        i += 1;
                        break;
                    }
                    if b[i] == 0x1b && b.get(i + 1) == Some(&b'\\') {
                        i += 2;
                        break;
                    }
                    i += 1;
                }
            }
            // Character set designations: `ESC ( B` and friends.
            Some(b'(' | b')' | b'*' | b'+' | b'#') => {
                i += 1;
                if i < b.len() && b[i].is_ascii() {
                    i += 1;
                }
            }
            Some(c) if (0x40..=0x5f).contains(c) => i += 1,
            _ => {}
        }
        last = i;
    }
    out.push_str(&s[last.min(s.len())..]);
    out
}

#[cfg(test)]
mod tests;
