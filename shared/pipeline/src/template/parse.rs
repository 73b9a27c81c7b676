//! Lexer and parser for the Go `text/template` subset used by `line_format`/`label_format`.

use super::ParseError;
use super::error::parse_error;
use regex::Regex;

use super::funcs::{self, Func};

/// A parsed template.
#[derive(Debug)]
pub(crate) struct Tree {
    pub(crate) nodes: Vec<Node>,
}

#[derive(Debug)]
pub(crate) enum Node {
    Text(String),
    Action(Pipe),
    If {
        pipe: Pipe,
        then: Vec<Node>,
        els: Vec<Node>,
    },
    With {
        pipe: Pipe,
        then: Vec<Node>,
        els: Vec<Node>,
    },
    Range {
        /// `range $i, $v := …` or `range $v := …`.
        vars: Vec<String>,
        pipe: Pipe,
        body: Vec<Node>,
        els: Vec<Node>,
    },
}

#[derive(Debug)]
pub(crate) struct Pipe {
    /// `$x := …` (declare) or `$x = …` (assign).
    pub(crate) decl: Option<(String, bool)>,
    pub(crate) cmds: Vec<Cmd>,
}

#[derive(Debug)]
pub(crate) struct Cmd {
    pub(crate) args: Vec<Arg>,
    /// A regex literal passed to a regex function, compiled once here instead of per entry.
    pub(crate) regex: Option<Regex>,
}

#[derive(Debug)]
pub(crate) enum Arg {
    /// `.`
    Dot,
    /// `.a.b`: fields of dot.
    Field(Vec<String>),
    /// `$x.a.b` (`$` is the root).
    Var(String, Vec<String>),
    /// `(pipe).a.b`
    Chain(Box<Pipe>, Vec<String>),
    Str(String),
    Int(i64),
    Float(f64),
    Bool(bool),
    Nil,
    Func(Func),
    Pipe(Box<Pipe>),
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Pipe,
    LParen,
    RParen,
    Declare,
    Assign,
    Comma,
    Str(String),
    Int(i64),
    Float(f64),
    Dot,
    Field(String),
    Var(String),
    Ident(String),
}

/// A token and whether whitespace preceded it (field chains must be contiguous).
#[derive(Debug, Clone)]
struct Spanned {
    tok: Tok,
    spaced: bool,
}

/// Nesting bound for parentheses and blocks: parsing and execution recurse, and a query is
/// allowed to be large enough to overflow the stack otherwise.
const MAX_NESTING: usize = 100;

pub(crate) fn parse(src: &str) -> Result<Tree, ParseError> {
    let items = split(src)?;
    let mut p = Parser {
        items,
        pos: 0,
        depth: 0,
    };
    let (nodes, end) = p.list()?;
    match end {
        End::Eof => Ok(Tree { nodes }),
        End::Close => Err("unexpected {{end}}".into()),
        End::Else(_) => Err("unexpected {{else}}".into()),
    }
}

/// Template text split into literal text and action token lists.
enum Item {
    Text(String),
    Action(Vec<Spanned>),
}

fn split(src: &str) -> Result<Vec<Item>, ParseError> {
    let mut items = Vec::new();
    let mut rest = src;
    let mut trim_next = false;
    while !rest.is_empty() {
        let Some(open) = rest.find("{{") else {
            let t = if trim_next { rest.trim_start() } else { rest };
            if !t.is_empty() {
                items.push(Item::Text(t.to_string()));
            }
            break;
        };
        let mut text = &rest[..open];
        if trim_next {
            text = text.trim_start();
        }
        let mut inner = &rest[open + 2..];
        // `{{- ` trims the text before; the space is required so `{{-3}}` stays a number.
        if inner.starts_with("- ") || inner.starts_with("-\t") || inner.starts_with("-\n") {
            text = text.trim_end();
            inner = &inner[1..];
        }
        if !text.is_empty() {
            items.push(Item::Text(text.to_string()));
        }
        let (toks, consumed, trim) = lex_action(inner)?;
        trim_next = trim;
        if let Some(t) = toks {
            items.push(Item::Action(t));
        }
        rest = &inner[consumed..];
    }
    Ok(items)
}

/// Lexes one action body. Returns the tokens (`None` for a comment), the bytes consumed
/// including `}}`, and whether `-}}` asked to trim the following text.
#[allow(clippy::type_complexity)]
fn lex_action(s: &str) -> Result<(Option<Vec<Spanned>>, usize, bool), ParseError> {
    let b = s.as_bytes();
    let mut i = 0;
    let ws = |c: u8| c == b' ' || c == b'\t' || c == b'\n' || c == b'\r';
    while i < b.len() && ws(b[i]) {
        i += 1;
    }
    if s[i..].starts_with("/*") {
        let end = s[i..].find("*/").ok_or("unclosed comment")? + i + 2;
        let mut j = end;
        while j < b.len() && ws(b[j]) {
            j += 1;
        }
        if s[j..].starts_with("-}}") {
            return Ok((None, j + 3, true));
        }
        if s[j..].starts_with("}}") {
            return Ok((None, j + 2, false));
        }
        return Err("comment ends before closing delimiter".into());
    }
    let mut toks = Vec::new();
    let mut spaced = true;
    let mut parens = 0usize;
    loop {
        let before = i;
        while i < b.len() && ws(b[i]) {
            i += 1;
        }
        if i > before {
            spaced = true;
        }
        if i >= b.len() {
            return Err("unclosed action".into());
        }
        if s[i..].starts_with("}}") {
            return Ok((Some(toks), i + 2, false));
        }
        if i > before && s[i..].starts_with("-}}") {
            return Ok((Some(toks), i + 3, true));
        }
        let c = b[i];
        let tok = match c {
            b'|' => {
                i += 1;
                Tok::Pipe
            }
            b'(' => {
                i += 1;
                parens += 1;
                if parens > MAX_NESTING {
                    return Err(parse_error!("parentheses nested deeper than {MAX_NESTING}"));
                }
                Tok::LParen
            }
            b')' => {
                i += 1;
                parens = parens.saturating_sub(1);
                Tok::RParen
            }
            b',' => {
                i += 1;
                Tok::Comma
            }
            b':' if b.get(i + 1) == Some(&b'=') => {
                i += 2;
                Tok::Declare
            }
            b'=' => {
                i += 1;
                Tok::Assign
            }
            b'"' => {
                let (v, n) = lex_quoted(&s[i..])?;
                i += n;
                Tok::Str(v)
            }
            b'`' => {
                let end = s[i + 1..]
                    .find('`')
                    .ok_or("unterminated raw quoted string")?;
                let v = s[i + 1..i + 1 + end].to_string();
                i += end + 2;
                Tok::Str(v)
            }
            b'\'' => {
                let rest = &s[i + 1..];
                let mut chars = rest.chars();
                let ch = match chars.next() {
                    Some('\\') => match chars.next() {
                        Some('n') => '\n',
                        Some('t') => '\t',
                        Some('\\') => '\\',
                        Some('\'') => '\'',
                        _ => return Err("unsupported character escape".into()),
                    },
                    Some(c) => c,
                    None => return Err("unterminated character constant".into()),
                };
                if chars.next() != Some('\'') {
                    return Err("unterminated character constant".into());
                }
                i = s.len() - chars.as_str().len();
                Tok::Int(ch as i64)
            }
            b'.' if !b.get(i + 1).is_some_and(|c| c.is_ascii_digit()) => {
                i += 1;
                let start = i;
                while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_') {
                    i += 1;
                }
                if i == start {
                    Tok::Dot
                } else {
                    Tok::Field(s[start..i].to_string())
                }
            }
            b'$' => {
                i += 1;
                let start = i;
                while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_') {
                    i += 1;
                }
                Tok::Var(s[start..i].to_string())
            }
            b'0'..=b'9' | b'-' | b'+' | b'.' => {
                let start = i;
                i += 1;
                while i < b.len()
                    && (b[i].is_ascii_alphanumeric()
                        || b[i] == b'.'
                        || b[i] == b'_'
                        || ((b[i] == b'-' || b[i] == b'+')
                            && matches!(b[i - 1], b'e' | b'E' | b'p' | b'P')))
                {
                    i += 1;
                }
                parse_number(&s[start..i])?
            }
            c if c.is_ascii_alphabetic() || c == b'_' => {
                let start = i;
                while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_') {
                    i += 1;
                }
                Tok::Ident(s[start..i].to_string())
            }
            _ => {
                let ch = s[i..].chars().next().unwrap_or('?');
                return Err(parse_error!("unexpected {ch:?} in command"));
            }
        };
        toks.push(Spanned { tok, spaced });
        spaced = false;
    }
}

fn parse_number(t: &str) -> Result<Tok, ParseError> {
    let bad = || parse_error!("bad number syntax: {t:?}");
    let clean = t.replace('_', "");
    let (neg, body) = match clean.as_bytes().first() {
        Some(b'-') => (true, &clean[1..]),
        Some(b'+') => (false, &clean[1..]),
        _ => (false, clean.as_str()),
    };
    let radix = |p: &str| {
        body.strip_prefix(p)
            .or_else(|| body.strip_prefix(&p.to_uppercase()))
    };
    let int = if let Some(h) = radix("0x") {
        i64::from_str_radix(h, 16).ok()
    } else if let Some(o) = radix("0o") {
        i64::from_str_radix(o, 8).ok()
    } else if let Some(bn) = radix("0b") {
        i64::from_str_radix(bn, 2).ok()
    } else if body.len() > 1 && body.starts_with('0') && body.bytes().all(|c| c.is_ascii_digit()) {
        i64::from_str_radix(&body[1..], 8).ok()
    } else {
        body.parse::<i64>().ok()
    };
    if let Some(v) = int {
        return Ok(Tok::Int(if neg { -v } else { v }));
    }
    let f: f64 = body.parse().map_err(|_| bad())?;
    if !body
        .bytes()
        .all(|c| c.is_ascii_digit() || matches!(c, b'.' | b'e' | b'E' | b'+' | b'-'))
    {
        return Err(bad());
    }
    Ok(Tok::Float(if neg { -f } else { f }))
}

/// A Go interpreted string literal; returns the value and the bytes consumed.
fn lex_quoted(s: &str) -> Result<(String, usize), ParseError> {
    let mut out = String::new();
    let mut chars = s.char_indices().skip(1);
    while let Some((i, c)) = chars.next() {
        match c {
            '"' => return Ok((out, i + 1)),
            '\n' => break,
            '\\' => {
                let Some((_, e)) = chars.next() else { break };
                match e {
                    'n' => out.push('\n'),
                    't' => out.push('\t'),
                    'r' => out.push('\r'),
                    '\\' => out.push('\\'),
                    '"' => out.push('"'),
                    '\'' => out.push('\''),
                    'a' => out.push('\u{7}'),
                    'b' => out.push('\u{8}'),
                    'f' => out.push('\u{c}'),
                    'v' => out.push('\u{b}'),
                    'x' | 'u' | 'U' => {
                        let n = match e {
                            'x' => 2,
                            'u' => 4,
                            _ => 8,
                        };
                        let hex: String = (0..n)
                            .filter_map(|_| chars.next().map(|(_, c)| c))
                            .collect();
                        let v = u32::from_str_radix(&hex, 16)
                            .map_err(|_| "invalid escape in string")?;
                        out.push(char::from_u32(v).ok_or("invalid escape in string")?);
                    }
                    _ => return Err(parse_error!("unknown escape sequence: \\{e}")),
                }
            }
            c => out.push(c),
        }
    }
    Err("unterminated quoted string".into())
}

enum End {
    Eof,
    Close,
    /// `{{else}}` or `{{else if …}}` / `{{else with …}}` (the remaining tokens).
    Else(Vec<Spanned>),
}

struct Parser {
    items: Vec<Item>,
    pos: usize,
    depth: usize,
}

impl Parser {
    fn list(&mut self) -> Result<(Vec<Node>, End), ParseError> {
        self.depth += 1;
        if self.depth > MAX_NESTING {
            return Err(parse_error!("blocks nested deeper than {MAX_NESTING}"));
        }
        let r = self.list_inner();
        self.depth -= 1;
        r
    }

    fn list_inner(&mut self) -> Result<(Vec<Node>, End), ParseError> {
        let mut nodes = Vec::new();
        while self.pos < self.items.len() {
            let item = std::mem::replace(&mut self.items[self.pos], Item::Text(String::new()));
            self.pos += 1;
            match item {
                Item::Text(t) => nodes.push(Node::Text(t)),
                Item::Action(toks) => {
                    let first = toks.first().map(|t| &t.tok);
                    match first {
                        None => return Err("missing value for command".into()),
                        Some(Tok::Ident(k)) if k == "end" => {
                            if toks.len() > 1 {
                                return Err("unexpected tokens after end".into());
                            }
                            return Ok((nodes, End::Close));
                        }
                        Some(Tok::Ident(k)) if k == "else" => {
                            return Ok((nodes, End::Else(toks[1..].to_vec())));
                        }
                        Some(Tok::Ident(k)) if k == "if" || k == "with" => {
                            let is_if = k == "if";
                            nodes.push(self.branch(is_if, &toks[1..])?);
                        }
                        Some(Tok::Ident(k)) if k == "range" => {
                            nodes.push(self.range(&toks[1..])?);
                        }
                        Some(Tok::Ident(k))
                            if matches!(
                                k.as_str(),
                                "define" | "template" | "block" | "break" | "continue"
                            ) =>
                        {
                            return Err(parse_error!("{{{{{k}}}}} is not supported"));
                        }
                        _ => nodes.push(Node::Action(pipeline(&toks, true)?)),
                    }
                }
            }
        }
        Ok((nodes, End::Eof))
    }

    fn branch(&mut self, is_if: bool, toks: &[Spanned]) -> Result<Node, ParseError> {
        let pipe = pipeline(toks, true)?;
        let (then, end) = self.list()?;
        let els = match end {
            End::Eof => return Err("unexpected EOF: missing {{end}}".into()),
            End::Close => Vec::new(),
            End::Else(rest) => self.else_part(rest)?,
        };
        Ok(if is_if {
            Node::If { pipe, then, els }
        } else {
            Node::With { pipe, then, els }
        })
    }

    /// After `{{else …}}`: a plain else runs to `{{end}}`; `else if`/`else with` nest a
    /// branch that shares the single closing `{{end}}`.
    fn else_part(&mut self, rest: Vec<Spanned>) -> Result<Vec<Node>, ParseError> {
        match rest.first().map(|t| &t.tok) {
            None => {
                let (els, end) = self.list()?;
                match end {
                    End::Close => Ok(els),
                    End::Eof => Err("unexpected EOF: missing {{end}}".into()),
                    End::Else(_) => Err("expected end; found {{else}}".into()),
                }
            }
            Some(Tok::Ident(k)) if k == "if" || k == "with" => {
                let is_if = k == "if";
                Ok(vec![self.branch(is_if, &rest[1..])?])
            }
            _ => Err("unexpected tokens after else".into()),
        }
    }

    fn range(&mut self, toks: &[Spanned]) -> Result<Node, ParseError> {
        let mut vars = Vec::new();
        let mut toks = toks;
        // `$i, $v :=` or `$v :=`
        let decl_at = toks.iter().position(|t| t.tok == Tok::Declare);
        if let Some(d) = decl_at {
            for t in &toks[..d] {
                match &t.tok {
                    Tok::Var(v) => vars.push(v.clone()),
                    Tok::Comma => {}
                    _ => return Err("bad range variable declaration".into()),
                }
            }
            if vars.is_empty() || vars.len() > 2 {
                return Err("too many declarations in range".into());
            }
            toks = &toks[d + 1..];
        }
        let pipe = pipeline(toks, false)?;
        let (body, end) = self.list()?;
        let els = match end {
            End::Eof => return Err("unexpected EOF: missing {{end}}".into()),
            End::Close => Vec::new(),
            End::Else(rest) if rest.is_empty() => {
                let (els, end) = self.list()?;
                if !matches!(end, End::Close) {
                    return Err("missing {{end}} after range else".into());
                }
                els
            }
            End::Else(_) => return Err("unexpected tokens after else in range".into()),
        };
        Ok(Node::Range {
            vars,
            pipe,
            body,
            els,
        })
    }
}

/// Parses a whole pipeline from `toks` (which must all be consumed).
fn pipeline(toks: &[Spanned], allow_decl: bool) -> Result<Pipe, ParseError> {
    let mut pos = 0;
    let p = parse_pipe(toks, &mut pos, allow_decl)?;
    if pos != toks.len() {
        return Err(parse_error!("unexpected {:?} in operand", toks[pos].tok));
    }
    Ok(p)
}

fn parse_pipe(toks: &[Spanned], pos: &mut usize, allow_decl: bool) -> Result<Pipe, ParseError> {
    let mut decl = None;
    if allow_decl
        && let (Some(Tok::Var(v)), Some(op @ (Tok::Declare | Tok::Assign))) = (
            toks.get(*pos).map(|t| &t.tok),
            toks.get(*pos + 1).map(|t| &t.tok),
        )
    {
        decl = Some((v.clone(), *op == Tok::Declare));
        *pos += 2;
    }
    let mut cmds = Vec::new();
    loop {
        let cmd = parse_cmd(toks, pos)?;
        cmds.push(cmd);
        match toks.get(*pos).map(|t| &t.tok) {
            Some(Tok::Pipe) => *pos += 1,
            _ => break,
        }
    }
    for c in &cmds[1..] {
        if !matches!(c.args.first(), Some(Arg::Func(_))) {
            return Err("non executable command in pipeline stage".into());
        }
    }
    Ok(Pipe { decl, cmds })
}

fn parse_cmd(toks: &[Spanned], pos: &mut usize) -> Result<Cmd, ParseError> {
    let mut args = Vec::new();
    while let Some(t) = toks.get(*pos) {
        if matches!(t.tok, Tok::Pipe | Tok::RParen) {
            break;
        }
        if !args.is_empty() && !t.spaced && !matches!(t.tok, Tok::LParen) {
            return Err(parse_error!("missing space before {:?}", t.tok));
        }
        args.push(parse_operand(toks, pos)?);
    }
    if args.is_empty() {
        return Err("missing value for command".into());
    }
    if args.len() > 1 && !matches!(args[0], Arg::Func(_)) {
        return Err("can't give argument to non-function".into());
    }
    let regex = match (&args[0], args.get(1)) {
        (Arg::Func(f), Some(Arg::Str(re))) if funcs::takes_regex(*f) => Regex::new(re).ok(),
        _ => None,
    };
    Ok(Cmd { args, regex })
}

fn parse_operand(toks: &[Spanned], pos: &mut usize) -> Result<Arg, ParseError> {
    let t = toks[*pos].tok.clone();
    *pos += 1;
    let mut arg = match t {
        Tok::Dot => Arg::Dot,
        Tok::Field(f) => Arg::Field(vec![f]),
        Tok::Var(v) => Arg::Var(v, Vec::new()),
        Tok::Str(s) => Arg::Str(s),
        Tok::Int(i) => Arg::Int(i),
        Tok::Float(f) => Arg::Float(f),
        Tok::Ident(id) => match id.as_str() {
            "true" => Arg::Bool(true),
            "false" => Arg::Bool(false),
            "nil" => Arg::Nil,
            _ => Arg::Func(
                funcs::lookup(&id).ok_or_else(|| parse_error!("function {id:?} not defined"))?,
            ),
        },
        Tok::LParen => {
            let p = parse_pipe(toks, pos, true)?;
            if toks.get(*pos).map(|t| &t.tok) != Some(&Tok::RParen) {
                return Err("unclosed left paren".into());
            }
            *pos += 1;
            Arg::Pipe(Box::new(p))
        }
        other => return Err(parse_error!("unexpected {other:?} in operand")),
    };
    // Contiguous `.x` tokens chain onto the operand.
    while let Some(Spanned {
        tok: Tok::Field(f),
        spaced: false,
    }) = toks.get(*pos)
    {
        let f = f.clone();
        *pos += 1;
        arg = match arg {
            Arg::Field(mut v) => {
                v.push(f);
                Arg::Field(v)
            }
            Arg::Var(name, mut v) => {
                v.push(f);
                Arg::Var(name, v)
            }
            Arg::Pipe(p) => Arg::Chain(p, vec![f]),
            Arg::Chain(p, mut v) => {
                v.push(f);
                Arg::Chain(p, v)
            }
            Arg::Dot => Arg::Field(vec![f]),
            _ => return Err(parse_error!("unexpected . after term {f:?}")),
        };
    }
    Ok(arg)
}
