//! A Go `text/template` interpreter for `line_format` and `label_format`.
//!
//! Loki runs these templates with Go's engine, so users write Go syntax: `{{ .label }}`,
//! pipelines, `if`/`else`/`with`/`range`, variables and the function set listed in
//! LOKI-API.md §7.3. This is a purpose-built subset interpreter: parsing (and function name
//! resolution) happens once per query, execution once per entry. Not supported:
//! `define`/`template`/`block`, `break`/`continue`, method calls and `call`.

mod exec;
mod funcs;
mod parse;
mod value;

use crate::labels::EntryLabels;

/// A compiled template.
#[derive(Debug)]
pub struct Template {
    tree: parse::Tree,
    /// Set when the template has no actions: rendering is then a copy.
    constant: Option<String>,
}

impl Template {
    /// Parses `src`; the error text says what is wrong and where a user can fix it.
    pub fn compile(src: &str) -> Result<Template, String> {
        let tree = parse::parse(src)?;
        let constant = match tree.nodes.as_slice() {
            [] => Some(String::new()),
            [parse::Node::Text(t)] => Some(t.clone()),
            _ => None,
        };
        Ok(Template { tree, constant })
    }

    /// Renders against an entry's labels, the current line and the entry time (ns).
    pub fn render(&self, labels: &EntryLabels, line: &str, ts_ns: i64) -> Result<String, String> {
        let mut out = String::new();
        self.render_into(labels, line, ts_ns, &mut out)?;
        Ok(out)
    }

    /// Like [`Template::render`], appending to `out` (which may hold partial output on error).
    pub fn render_into(
        &self,
        labels: &EntryLabels,
        line: &str,
        ts_ns: i64,
        out: &mut String,
    ) -> Result<(), String> {
        if let Some(c) = &self.constant {
            out.push_str(c);
            return Ok(());
        }
        let ctx = exec::Ctx {
            labels,
            line,
            ts: ts_ns,
        };
        exec::execute(&self.tree, &ctx, out)
    }
}

#[cfg(test)]
mod tests;
