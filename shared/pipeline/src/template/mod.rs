//! A Go `text/template` interpreter for `line_format` and `label_format`.
//!
//! Loki runs these templates with Go's engine, so users write Go syntax: `{{ .label }}`,
//! pipelines, `if`/`else`/`with`/`range`, variables and the function set of Loki's
//! template documentation. This is a purpose-built subset interpreter: parsing (and function name
//! resolution) happens once per query, execution once per entry. Not supported:
//! `define`/`template`/`block`, `break`/`continue`, method calls and `call`.

mod error;
mod exec;
mod funcs;
mod parse;
pub(crate) mod value;

pub use error::{ExecError, ParseError};

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
    pub fn compile(src: &str) -> Result<Template, ParseError> {
        let tree = parse::parse(src)?;
        let constant = match tree.nodes.as_slice() {
            [] => Some(String::new()),
            [parse::Node::Text(t)] => Some(t.clone()),
            _ => None,
        };
        Ok(Template { tree, constant })
    }

    /// The names the template reads as fields of dot (`.name`, and each part of `.a.b`),
    /// as Loki lists the labels a template requires: variables and `(pipe).field` chains do
    /// not count.
    pub fn fields(&self) -> Vec<String> {
        let mut out = Vec::new();
        nodes_fields(&self.tree.nodes, &mut out);
        out
    }

    /// Renders against an entry's labels, the current line and the entry time (ns).
    pub fn render(
        &self,
        labels: &EntryLabels,
        line: &str,
        ts_ns: i64,
    ) -> Result<String, ExecError> {
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
    ) -> Result<(), ExecError> {
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

fn nodes_fields(nodes: &[parse::Node], out: &mut Vec<String>) {
    for n in nodes {
        match n {
            parse::Node::Text(_) => {}
            parse::Node::Action(p) => pipe_fields(p, out),
            parse::Node::If { pipe, then, els } | parse::Node::With { pipe, then, els } => {
                pipe_fields(pipe, out);
                nodes_fields(then, out);
                nodes_fields(els, out);
            }
            parse::Node::Range {
                pipe, body, els, ..
            } => {
                pipe_fields(pipe, out);
                nodes_fields(body, out);
                nodes_fields(els, out);
            }
        }
    }
}

fn pipe_fields(p: &parse::Pipe, out: &mut Vec<String>) {
    for c in &p.cmds {
        for a in &c.args {
            match a {
                parse::Arg::Field(f) => out.extend(f.iter().cloned()),
                parse::Arg::Pipe(p) => pipe_fields(p, out),
                _ => {}
            }
        }
    }
}

#[cfg(test)]
mod tests;
