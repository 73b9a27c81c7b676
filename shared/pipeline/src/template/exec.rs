//! Executes a parsed template against one entry.

use super::ExecError;
use super::error::exec_error;
use std::borrow::Cow;

use super::funcs::{self, Call};
use super::parse::{Arg, Cmd, Node, Pipe, Tree};
use super::value::{Value, write_value};
use crate::labels::EntryLabels;

/// What a template can see: the labels, the current line and the entry time.
pub(crate) struct Ctx<'a> {
    pub(crate) labels: &'a EntryLabels,
    pub(crate) line: &'a str,
    pub(crate) ts: i64,
}

impl<'a> Ctx<'a> {
    /// Prints the data map as Go prints a `map[string]string`.
    pub(crate) fn write_root(&self, out: &mut String) {
        let mut all: Vec<(&str, &str)> = self.labels.iter().map(|(_, n, v)| (n, v)).collect();
        all.sort_unstable();
        out.push_str("map[");
        for (i, (n, v)) in all.iter().enumerate() {
            if i > 0 {
                out.push(' ');
            }
            out.push_str(n);
            out.push(':');
            out.push_str(v);
        }
        out.push(']');
    }
}

/// Loops over `range` are bounded so a template cannot stall a query.
const MAX_RANGE: usize = 10_000;

struct State<'c, 'a, 't> {
    ctx: &'c Ctx<'a>,
    vars: Vec<(&'t str, Value<'a>)>,
}

pub(crate) fn execute<'a>(tree: &Tree, ctx: &Ctx<'a>, out: &mut String) -> Result<(), ExecError> {
    let mut st = State {
        ctx,
        vars: Vec::new(),
    };
    st.walk(&tree.nodes, &Value::Root, out)
}

impl<'c, 'a, 't> State<'c, 'a, 't> {
    fn walk(
        &mut self,
        nodes: &'t [Node],
        dot: &Value<'a>,
        out: &mut String,
    ) -> Result<(), ExecError> {
        for n in nodes {
            match n {
                Node::Text(t) => out.push_str(t),
                Node::Action(p) => {
                    let v = self.pipe(p, dot)?;
                    // An action that only declares a variable prints nothing.
                    if p.decl.is_none() {
                        self.print(out, &v);
                    }
                }
                Node::If { pipe, then, els } | Node::With { pipe, then, els } => {
                    let mark = self.vars.len();
                    let v = self.pipe(pipe, dot)?;
                    let is_with = matches!(n, Node::With { .. });
                    let r = if v.truth() {
                        if is_with {
                            self.walk(then, &v, out)
                        } else {
                            self.walk(then, dot, out)
                        }
                    } else {
                        self.walk(els, dot, out)
                    };
                    self.vars.truncate(mark);
                    r?;
                }
                Node::Range {
                    vars,
                    pipe,
                    body,
                    els,
                } => {
                    let mark = self.vars.len();
                    let v = self.pipe(pipe, dot)?;
                    let items: Vec<(Value<'a>, Value<'a>)> = match v {
                        Value::List(l) => l
                            .into_iter()
                            .enumerate()
                            .map(|(i, x)| (Value::Int(i as i64), x))
                            .collect(),
                        Value::Map(m) => m
                            .into_iter()
                            .map(|(k, x)| (Value::Str(Cow::Owned(k)), x))
                            .collect(),
                        Value::Root => {
                            let mut all: Vec<(&'a str, &'a str)> =
                                self.ctx.labels.iter().map(|(_, n, v)| (n, v)).collect();
                            all.sort_unstable();
                            all.into_iter()
                                .map(|(n, v)| (Value::str(n), Value::str(v)))
                                .collect()
                        }
                        Value::Int(n) => (0..n.max(0))
                            .map(|i| (Value::Int(i), Value::Int(i)))
                            .collect(),
                        Value::Nil => Vec::new(),
                        other => {
                            return Err(exec_error!(
                                "range can't iterate over {}",
                                other.type_name()
                            ));
                        }
                    };
                    if items.len() > MAX_RANGE {
                        return Err(exec_error!("range over more than {MAX_RANGE} items"));
                    }
                    if items.is_empty() {
                        self.walk(els, dot, out)?;
                    }
                    for (k, x) in items {
                        let inner = self.vars.len();
                        match vars.as_slice() {
                            [v] => self.vars.push((v.as_str(), x.clone())),
                            [a, b] => {
                                self.vars.push((a.as_str(), k));
                                self.vars.push((b.as_str(), x.clone()));
                            }
                            _ => {}
                        }
                        let r = self.walk(body, &x, out);
                        self.vars.truncate(inner);
                        r?;
                    }
                    self.vars.truncate(mark);
                }
            }
        }
        Ok(())
    }

    fn print(&self, out: &mut String, v: &Value<'a>) {
        let ctx = self.ctx;
        write_value(out, v, &|o| ctx.write_root(o));
    }

    fn pipe(&mut self, p: &'t Pipe, dot: &Value<'a>) -> Result<Value<'a>, ExecError> {
        let mut v: Option<Value<'a>> = None;
        for c in &p.cmds {
            v = Some(self.cmd(c, dot, v)?);
        }
        let v = v.unwrap_or(Value::Nil);
        if let Some((name, declare)) = &p.decl {
            if *declare {
                self.vars.push((name.as_str(), v.clone()));
            } else {
                let slot = self
                    .vars
                    .iter_mut()
                    .rev()
                    .find(|(n, _)| *n == name.as_str())
                    .ok_or_else(|| exec_error!("undefined variable: ${name}"))?;
                slot.1 = v.clone();
            }
        }
        Ok(v)
    }

    fn cmd(
        &mut self,
        c: &'t Cmd,
        dot: &Value<'a>,
        piped: Option<Value<'a>>,
    ) -> Result<Value<'a>, ExecError> {
        let Some(Arg::Func(f)) = c.args.first() else {
            // Single operand (the parser guarantees no extra arguments).
            return match c.args.first() {
                Some(Arg::Nil) => Err("nil is not a command".into()),
                Some(a) => self.arg(a, dot),
                None => Ok(Value::Nil),
            };
        };
        let name = funcs::name(*f);
        // `and`/`or` evaluate their arguments lazily, as Go does.
        if name == "and" || name == "or" {
            let want = name == "or";
            let mut last = Value::Nil;
            let n = c.args.len() - 1 + usize::from(piped.is_some());
            if n == 0 {
                return Err(exec_error!(
                    "wrong number of args for {name}: want at least 1 got 0"
                ));
            }
            for a in &c.args[1..] {
                last = self.arg(a, dot)?;
                if last.truth() == want {
                    return Ok(last);
                }
            }
            if let Some(p) = piped {
                last = p;
            }
            return Ok(last);
        }
        let mut args = Vec::with_capacity(c.args.len());
        for a in &c.args[1..] {
            args.push(self.arg(a, dot)?);
        }
        if let Some(p) = piped {
            args.push(p);
        }
        let call = Call {
            ctx: self.ctx,
            regex: c.regex.as_ref(),
            name,
        };
        funcs::call(*f, &call, args).map_err(|e| exec_error!("error calling {name}: {e}"))
    }

    fn arg(&mut self, a: &'t Arg, dot: &Value<'a>) -> Result<Value<'a>, ExecError> {
        Ok(match a {
            Arg::Dot => dot.clone(),
            Arg::Field(path) => self.fields(dot.clone(), path)?,
            Arg::Var(name, path) => {
                let base = if name.is_empty() {
                    Value::Root
                } else {
                    self.vars
                        .iter()
                        .rev()
                        .find(|(n, _)| *n == name.as_str())
                        .map(|(_, v)| v.clone())
                        .ok_or_else(|| exec_error!("undefined variable: ${name}"))?
                };
                self.fields(base, path)?
            }
            Arg::Chain(p, path) => {
                let v = self.pipe(p, dot)?;
                self.fields(v, path)?
            }
            Arg::Str(s) => Value::Str(Cow::Owned(s.clone())),
            Arg::Int(i) => Value::Int(*i),
            Arg::Float(f) => Value::Float(*f),
            Arg::Bool(b) => Value::Bool(*b),
            Arg::Nil => Value::Nil,
            Arg::Func(f) => {
                let call = Call {
                    ctx: self.ctx,
                    regex: None,
                    name: funcs::name(*f),
                };
                funcs::call(*f, &call, Vec::new())?
            }
            Arg::Pipe(p) => {
                let mark = self.vars.len();
                let v = self.pipe(p, dot);
                self.vars.truncate(mark);
                v?
            }
        })
    }

    fn fields(&self, mut v: Value<'a>, path: &[String]) -> Result<Value<'a>, ExecError> {
        for f in path {
            v = field(self.ctx, v, f)?;
        }
        Ok(v)
    }
}

/// `.name` on a value. Missing labels are empty strings (Loki's `missingkey=zero`).
pub(crate) fn field<'a>(ctx: &Ctx<'a>, v: Value<'a>, name: &str) -> Result<Value<'a>, ExecError> {
    match v {
        Value::Root => Ok(Value::Str(Cow::Borrowed(
            ctx.labels.get(name).unwrap_or(""),
        ))),
        Value::Map(m) => Ok(m
            .into_iter()
            .find(|(k, _)| k == name)
            .map(|(_, x)| x)
            .unwrap_or(Value::Nil)),
        Value::Nil => Err(exec_error!("nil pointer evaluating interface {{}}.{name}")),
        other => Err(exec_error!(
            "can't evaluate field {name} in type {}",
            other.type_name()
        )),
    }
}
