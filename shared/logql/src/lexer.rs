//! A hand-written LogQL lexer reproducing the token boundaries of Loki's lexer (which is built
//! on Go's `text/scanner`):
//!
//! - whitespace is exactly space, tab, `\n` and `\r`; `#` starts a comment up to the newline;
//! - `"…"` strings take Go escapes, `` `…` `` strings are raw (carriage returns dropped);
//! - a number directly followed by duration runes is a DURATION, by byte-unit runes a BYTES;
//! - `[` … `]` is one RANGE token holding a Prometheus duration;
//! - function keywords (`rate`, `sum`, `bytes`, `ip`, …) are keywords only when followed by
//!   `(`, or by `by`/`without` and then `(`; otherwise they are identifiers;
//! - structural keywords (`by`, `json`, `or`, …) are always keywords; all keyword matching is
//!   case-insensitive;
//! - any other character becomes a one-character token that Loki reports as IDENTIFIER.
//!
//! Lexing errors do not abort immediately: they become an [`Tok::Error`] token so that the
//! parser reports whichever error comes first in the input, as Loki's on-demand lexer does.

use parquetry_model::duration::{Nanos, parse_bytes, parse_prometheus, parse_prometheus_or_go};

use crate::ast::{RangeOp, VectorOp};
use crate::error::ParseError;

/// Keywords. Function keywords only exist when followed by `(` (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kw {
    // Reserved everywhere.
    By,
    Without,
    Bool,
    On,
    Ignoring,
    GroupLeft,
    GroupRight,
    Offset,
    Or,
    And,
    Unless,
    Json,
    Logfmt,
    Regexp,
    Unpack,
    Pattern,
    LineFormat,
    LabelFormat,
    Decolorize,
    Drop,
    Keep,
    Unwrap,
    // Function keywords.
    Range(RangeOp),
    Vector(VectorOp),
    LabelReplace,
    VectorFn,
    BytesConv,
    DurationConv,
    DurationSecondsConv,
    Ip,
}

const RESERVED: [(&str, Kw); 22] = [
    ("by", Kw::By),
    ("without", Kw::Without),
    ("bool", Kw::Bool),
    ("on", Kw::On),
    ("ignoring", Kw::Ignoring),
    ("group_left", Kw::GroupLeft),
    ("group_right", Kw::GroupRight),
    ("offset", Kw::Offset),
    ("or", Kw::Or),
    ("and", Kw::And),
    ("unless", Kw::Unless),
    ("json", Kw::Json),
    ("logfmt", Kw::Logfmt),
    ("regexp", Kw::Regexp),
    ("unpack", Kw::Unpack),
    ("pattern", Kw::Pattern),
    ("line_format", Kw::LineFormat),
    ("label_format", Kw::LabelFormat),
    ("decolorize", Kw::Decolorize),
    ("drop", Kw::Drop),
    ("keep", Kw::Keep),
    ("unwrap", Kw::Unwrap),
];

impl Kw {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Kw::Range(op) => op.as_str(),
            Kw::Vector(op) => op.as_str(),
            Kw::LabelReplace => "label_replace",
            Kw::VectorFn => "vector",
            Kw::BytesConv => "bytes",
            Kw::DurationConv => "duration",
            Kw::DurationSecondsConv => "duration_seconds",
            Kw::Ip => "ip",
            other => RESERVED
                .iter()
                .find(|(_, k)| *k == other)
                .map_or("?", |(s, _)| s),
        }
    }

    /// The name Loki's parser gives the token in syntax errors: its grammar's upper-case name
    /// for function names (`COUNT_OVER_TIME`, `SUM`, `BYTES_CONV`), the text for the rest.
    pub(crate) fn token_name(self) -> &'static str {
        match self {
            Kw::Range(op) => match op.as_str() {
                "rate" => "RATE",
                "rate_counter" => "RATE_COUNTER",
                "count_over_time" => "COUNT_OVER_TIME",
                "bytes_rate" => "BYTES_RATE",
                "bytes_over_time" => "BYTES_OVER_TIME",
                "avg_over_time" => "AVG_OVER_TIME",
                "sum_over_time" => "SUM_OVER_TIME",
                "min_over_time" => "MIN_OVER_TIME",
                "max_over_time" => "MAX_OVER_TIME",
                "stdvar_over_time" => "STDVAR_OVER_TIME",
                "stddev_over_time" => "STDDEV_OVER_TIME",
                "quantile_over_time" => "QUANTILE_OVER_TIME",
                "first_over_time" => "FIRST_OVER_TIME",
                "last_over_time" => "LAST_OVER_TIME",
                "absent_over_time" => "ABSENT_OVER_TIME",
                other => other,
            },
            Kw::Vector(op) => match op.as_str() {
                "sum" => "SUM",
                "avg" => "AVG",
                "max" => "MAX",
                "min" => "MIN",
                "count" => "COUNT",
                "stddev" => "STDDEV",
                "stdvar" => "STDVAR",
                "bottomk" => "BOTTOMK",
                "topk" => "TOPK",
                "sort" => "SORT",
                "sort_desc" => "SORT_DESC",
                "approx_topk" => "APPROX_TOPK",
                other => other,
            },
            Kw::VectorFn => "VECTOR",
            Kw::BytesConv => "BYTES_CONV",
            Kw::DurationConv => "DURATION_CONV",
            Kw::DurationSecondsConv => "DURATION_SECONDS_CONV",
            other => other.as_str(),
        }
    }

    fn reserved(lower: &str) -> Option<Kw> {
        RESERVED.iter().find(|(s, _)| *s == lower).map(|(_, k)| *k)
    }

    fn function(lower: &str) -> Option<Kw> {
        if let Some(op) = RangeOp::from_name(lower) {
            return Some(Kw::Range(op));
        }
        if let Some(op) = VectorOp::from_name(lower) {
            return Some(Kw::Vector(op));
        }
        Some(match lower {
            "label_replace" => Kw::LabelReplace,
            "vector" => Kw::VectorFn,
            "bytes" => Kw::BytesConv,
            "duration" => Kw::DurationConv,
            "duration_seconds" => Kw::DurationSecondsConv,
            "ip" => Kw::Ip,
            _ => return None,
        })
    }
}

/// True if `word` (any case) is a reserved keyword and so cannot be a label name.
pub fn is_reserved_word(word: &str) -> bool {
    Kw::reserved(&word.to_ascii_lowercase()).is_some()
}

/// True if `word` (any case) is a function keyword: an identifier unless followed by `(`.
pub fn is_function_word(word: &str) -> bool {
    Kw::function(&word.to_ascii_lowercase()).is_some()
}

/// Punctuation and operators.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Sym {
    LBrace,
    RBrace,
    LParen,
    RParen,
    RBracket,
    Comma,
    Dot,
    Eq,
    Neq,
    Re,
    Nre,
    PipeExact,
    PipeMatch,
    PipePattern,
    Npa,
    Pipe,
    Add,
    Sub,
    Mul,
    Div,
    Mod,
    Pow,
    CmpEq,
    Gt,
    Gte,
    Lt,
    Lte,
}

impl Sym {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Sym::LBrace => "{",
            Sym::RBrace => "}",
            Sym::LParen => "(",
            Sym::RParen => ")",
            Sym::RBracket => "]",
            Sym::Comma => ",",
            Sym::Dot => ".",
            Sym::Eq => "=",
            Sym::Neq => "!=",
            Sym::Re => "=~",
            Sym::Nre => "!~",
            Sym::PipeExact => "|=",
            Sym::PipeMatch => "|~",
            Sym::PipePattern => "|>",
            Sym::Npa => "!>",
            Sym::Pipe => "|",
            Sym::Add => "+",
            Sym::Sub => "-",
            Sym::Mul => "*",
            Sym::Div => "/",
            Sym::Mod => "%",
            Sym::Pow => "^",
            Sym::CmpEq => "==",
            Sym::Gt => ">",
            Sym::Gte => ">=",
            Sym::Lt => "<",
            Sym::Lte => "<=",
        }
    }
}

const TWO_CHAR: [(char, char, Sym); 10] = [
    ('!', '=', Sym::Neq),
    ('!', '~', Sym::Nre),
    ('!', '>', Sym::Npa),
    ('=', '~', Sym::Re),
    ('=', '=', Sym::CmpEq),
    ('|', '=', Sym::PipeExact),
    ('|', '~', Sym::PipeMatch),
    ('|', '>', Sym::PipePattern),
    ('>', '=', Sym::Gte),
    ('<', '=', Sym::Lte),
];

fn one_char(c: char) -> Option<Sym> {
    Some(match c {
        '{' => Sym::LBrace,
        '}' => Sym::RBrace,
        '(' => Sym::LParen,
        ')' => Sym::RParen,
        ']' => Sym::RBracket,
        ',' => Sym::Comma,
        '.' => Sym::Dot,
        '=' => Sym::Eq,
        '|' => Sym::Pipe,
        '+' => Sym::Add,
        '-' => Sym::Sub,
        '*' => Sym::Mul,
        '/' => Sym::Div,
        '%' => Sym::Mod,
        '^' => Sym::Pow,
        '>' => Sym::Gt,
        '<' => Sym::Lt,
        _ => return None,
    })
}

/// A token's payload.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Tok {
    Ident(String),
    Str(String),
    /// Source text of a plain number (`5`, `0.25`, `1e3`).
    Number(String),
    Duration(Nanos),
    Bytes(u64),
    /// A `[…]` range, in nanoseconds.
    Range(Nanos),
    /// `--strict`, `--keep-empty`.
    Flag(&'static str),
    Kw(Kw),
    Sym(Sym),
    /// A character that starts no token; Loki reports these as IDENTIFIER.
    Unknown(char),
    Eof,
    /// A lexing error, reported when the parser reaches it.
    Error(ParseError),
}

impl Tok {
    /// The name used in `unexpected X` messages, as Loki's parser prints it.
    pub(crate) fn name(&self) -> &'static str {
        match self {
            Tok::Ident(_) | Tok::Unknown(_) => "IDENTIFIER",
            Tok::Str(_) => "STRING",
            Tok::Number(_) => "NUMBER",
            Tok::Duration(_) => "DURATION",
            Tok::Bytes(_) => "BYTES",
            Tok::Range(_) => "RANGE",
            Tok::Flag(_) => "PARSER_FLAG",
            Tok::Kw(k) => k.token_name(),
            Tok::Sym(s) => s.as_str(),
            Tok::Eof | Tok::Error(_) => "$end",
        }
    }
}

/// A token with the position Loki would report for it (see [`ParseError`] for line 0).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Token {
    pub tok: Tok,
    pub line: usize,
    pub col: usize,
}

const DURATION_RUNES: &[char] = &['n', 's', 'u', 'µ', 'μ', 'm', 'h', 'd', 'w', 'y'];
const BYTES_RUNES: &[char] = &['B', 'i', 'k', 'K', 'M', 'G', 'T', 'P'];
const FLAGS: [&str; 2] = ["--strict", "--keep-empty"];

fn is_space(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\n' | '\r')
}

fn is_ident_start(c: char) -> bool {
    c == '_' || c.is_alphabetic()
}

fn is_ident_char(c: char) -> bool {
    c == '_' || c.is_alphanumeric()
}

/// Splits `input` into tokens. The last token is always [`Tok::Eof`] or [`Tok::Error`].
pub(crate) fn tokenize(input: &str) -> Vec<Token> {
    let mut lx = Lexer {
        chars: input.chars().collect(),
        pos: 0,
        line: 1,
        col: 1,
    };
    let mut out = Vec::new();
    loop {
        let t = lx.next_token();
        let end = matches!(t.tok, Tok::Eof | Tok::Error(_));
        out.push(t);
        if end {
            return out;
        }
    }
}

struct Lexer {
    chars: Vec<char>,
    pos: usize,
    /// Position of `chars[pos]`.
    line: usize,
    col: usize,
}

impl Lexer {
    fn peek(&self) -> Option<char> {
        self.chars.get(self.pos).copied()
    }

    fn peek_at(&self, n: usize) -> Option<char> {
        self.chars.get(self.pos + n).copied()
    }

    fn bump(&mut self) -> Option<char> {
        let c = self.peek()?;
        self.pos += 1;
        if c == '\n' {
            self.line += 1;
            self.col = 1;
        } else {
            self.col += 1;
        }
        Some(c)
    }

    fn bump_n(&mut self, n: usize) {
        for _ in 0..n {
            self.bump();
        }
    }

    fn skip_space_and_comments(&mut self) {
        while let Some(c) = self.peek() {
            if is_space(c) {
                self.bump();
            } else if c == '#' {
                while let Some(c) = self.peek() {
                    if c == '\n' {
                        break;
                    }
                    self.bump();
                }
            } else {
                break;
            }
        }
    }

    fn next_token(&mut self) -> Token {
        self.skip_space_and_comments();
        let (line, col) = (self.line, self.col);
        // Tokens Loki's lexer reads rune by rune report line 0 (see `ParseError`).
        let at = |tok| Token { tok, line, col };
        let at_line0 = |tok| Token { tok, line: 0, col };
        let err = |msg: String, line: usize| Token {
            tok: Tok::Error(ParseError::new(msg, line, col)),
            line,
            col,
        };
        let Some(c) = self.peek() else {
            return at(Tok::Eof);
        };

        if c == '"' || c == '`' {
            return match self.string(c) {
                Ok(s) => at(Tok::Str(s)),
                Err(e) => err(e.to_string(), line),
            };
        }
        if c.is_ascii_digit() || (c == '.' && self.peek_at(1).is_some_and(|d| d.is_ascii_digit())) {
            let num = self.number();
            if let Some(ns) = self.try_suffix(&num, DURATION_RUNES, true, |s| {
                parse_prometheus_or_go(s).ok()
            }) {
                return at_line0(Tok::Duration(ns));
            }
            if let Some(b) = self.try_suffix(&num, BYTES_RUNES, false, |s| parse_bytes(s).ok()) {
                return at_line0(Tok::Bytes(b));
            }
            return at(Tok::Number(num));
        }
        if is_ident_start(c) {
            let start = self.pos;
            while self.peek().is_some_and(is_ident_char) {
                self.bump();
            }
            let word: String = self.chars[start..self.pos].iter().collect();
            let lower = word.to_lowercase();
            if let Some(kw) = Kw::reserved(&lower) {
                return at(Tok::Kw(kw));
            }
            if let Some(kw) = Kw::function(&lower)
                && self.followed_by_call()
            {
                return at(Tok::Kw(kw));
            }
            return at(Tok::Ident(word));
        }
        if c == '[' {
            self.bump();
            let start = self.pos;
            while let Some(c) = self.peek() {
                if c == ']' {
                    let text: String = self.chars[start..self.pos].iter().collect();
                    self.bump();
                    return match parse_prometheus(&text) {
                        Ok(d) => at_line0(Tok::Range(
                            Nanos::try_from(d.as_nanos()).unwrap_or(Nanos::MAX),
                        )),
                        Err(e) => err(e.to_string(), 0),
                    };
                }
                self.bump();
            }
            return err("missing closing ']' in duration".into(), 0);
        }
        if c == '-' {
            for flag in FLAGS {
                if self.starts_with(flag)
                    && !self
                        .peek_at(flag.chars().count())
                        .is_some_and(|c| is_ident_char(c) || c == '-')
                {
                    self.bump_n(flag.chars().count());
                    return at_line0(Tok::Flag(flag));
                }
            }
        }
        if let Some(next) = self.peek_at(1)
            && let Some((_, _, sym)) = TWO_CHAR.iter().find(|(a, b, _)| *a == c && *b == next)
        {
            self.bump_n(2);
            return at_line0(Tok::Sym(*sym));
        }
        self.bump();
        match one_char(c) {
            Some(sym) => at(Tok::Sym(sym)),
            None => at(Tok::Unknown(c)),
        }
    }

    fn starts_with(&self, s: &str) -> bool {
        s.chars()
            .enumerate()
            .all(|(i, c)| self.peek_at(i) == Some(c))
    }

    /// Decimal integer or float: `12`, `1.5`, `.5`, `5.`, `1e3`, `2.5E-3`.
    fn number(&mut self) -> String {
        let start = self.pos;
        while self.peek().is_some_and(|c| c.is_ascii_digit()) {
            self.bump();
        }
        if self.peek() == Some('.') {
            self.bump();
            while self.peek().is_some_and(|c| c.is_ascii_digit()) {
                self.bump();
            }
        }
        if matches!(self.peek(), Some('e' | 'E')) {
            let sign = usize::from(matches!(self.peek_at(1), Some('+' | '-')));
            if self.peek_at(1 + sign).is_some_and(|c| c.is_ascii_digit()) {
                self.bump_n(1 + sign);
                while self.peek().is_some_and(|c| c.is_ascii_digit()) {
                    self.bump();
                }
            }
        }
        self.chars[start..self.pos].iter().collect()
    }

    /// After a number, greedily reads digits, `.` and the given unit runes up to the next
    /// space; if at least one rune was read and `parse` accepts number+suffix, consumes them.
    /// This mirrors Loki's try-then-commit scanning, so `5minutes` lexes as DURATION `5m`
    /// followed by IDENTIFIER `inutes`.
    fn try_suffix<T>(
        &mut self,
        num: &str,
        runes: &[char],
        allow_unicode_digits: bool,
        parse: impl Fn(&str) -> Option<T>,
    ) -> Option<T> {
        let mut text = num.to_string();
        let mut n = 0;
        while let Some(c) = self.peek_at(n) {
            let digit = if allow_unicode_digits {
                c.is_numeric()
            } else {
                c.is_ascii_digit()
            };
            if is_space(c) || !(digit || c == '.' || runes.contains(&c)) {
                break;
            }
            text.push(c);
            n += 1;
        }
        if n == 0 {
            return None;
        }
        let v = parse(&text)?;
        self.bump_n(n);
        Some(v)
    }

    /// Whether the identifier just read is followed by `(`, or by `by`/`without` then `(`.
    fn followed_by_call(&self) -> bool {
        let mut i = self.pos;
        let skip = |mut i: usize| {
            while self.chars.get(i).copied().is_some_and(is_space) {
                i += 1;
            }
            i
        };
        i = skip(i);
        match self.chars.get(i) {
            Some('(') => true,
            Some(c) if is_ident_start(*c) => {
                let start = i;
                while self.chars.get(i).copied().is_some_and(is_ident_char) {
                    i += 1;
                }
                let word: String = self.chars[start..i].iter().collect();
                let word = word.to_lowercase();
                (word == "by" || word == "without") && self.chars.get(skip(i)) == Some(&'(')
            }
            _ => false,
        }
    }

    /// Reads a `"…"` or `` `…` `` string starting at the opening quote.
    fn string(&mut self, quote: char) -> Result<String, StringError> {
        self.bump();
        if quote == '`' {
            let mut s = String::new();
            loop {
                match self.bump() {
                    None => return Err(StringError::Unterminated),
                    Some('`') => return Ok(s),
                    // Go's strconv.Unquote drops carriage returns from raw strings.
                    Some('\r') => {}
                    Some(c) => s.push(c),
                }
            }
        }
        // Escapes such as `\xff` can produce bytes that are not UTF-8 on their own, so decode
        // into bytes and check the whole value at the end.
        let mut buf: Vec<u8> = Vec::new();
        loop {
            let c = match self.peek() {
                None | Some('\n') => return Err(StringError::Unterminated),
                Some(c) => c,
            };
            self.bump();
            match c {
                '"' => break,
                '\\' => self.escape(&mut buf)?,
                c => {
                    let mut tmp = [0u8; 4];
                    buf.extend_from_slice(c.encode_utf8(&mut tmp).as_bytes());
                }
            }
        }
        String::from_utf8(buf).map_err(|_| StringError::InvalidUtf8)
    }

    /// Decodes one Go escape sequence (the backslash is already consumed).
    fn escape(&mut self, buf: &mut Vec<u8>) -> Result<(), StringError> {
        let bad = || StringError::BadEscape;
        let c = self.peek().ok_or_else(bad)?;
        let simple = match c {
            'a' => Some(0x07),
            'b' => Some(0x08),
            'f' => Some(0x0c),
            'n' => Some(b'\n'),
            'r' => Some(b'\r'),
            't' => Some(b'\t'),
            'v' => Some(0x0b),
            '\\' => Some(b'\\'),
            '"' => Some(b'"'),
            _ => None,
        };
        if let Some(b) = simple {
            self.bump();
            buf.push(b);
            return Ok(());
        }
        let (digits, radix) = match c {
            '0'..='7' => (3, 8),
            'x' => (2, 16),
            'u' => (4, 16),
            'U' => (8, 16),
            _ => return Err(bad()),
        };
        if radix == 16 {
            self.bump();
        }
        let mut v: u32 = 0;
        for _ in 0..digits {
            let d = self
                .peek()
                .and_then(|c| c.to_digit(radix))
                .ok_or_else(bad)?;
            self.bump();
            v = v * radix + d;
        }
        match c {
            // Octal and \x escapes are single bytes; octal above 0o377 is invalid in Go.
            '0'..='7' | 'x' => {
                let b = u8::try_from(v).map_err(|_| StringError::Syntax)?;
                buf.push(b);
            }
            _ => {
                let ch = char::from_u32(v).ok_or(StringError::Syntax)?;
                let mut tmp = [0u8; 4];
                buf.extend_from_slice(ch.encode_utf8(&mut tmp).as_bytes());
            }
        }
        Ok(())
    }
}

/// Why a quoted string literal cannot be read; the texts are Go's `strconv.Unquote` ones, as
/// Loki reports them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
enum StringError {
    #[error("literal not terminated")]
    Unterminated,
    #[error("invalid UTF-8 rune")]
    InvalidUtf8,
    #[error("invalid char escape")]
    BadEscape,
    /// An escape whose value is out of range (octal above 0o377, a non-scalar code point).
    #[error("invalid syntax")]
    Syntax,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn toks(s: &str) -> Vec<Tok> {
        tokenize(s).into_iter().map(|t| t.tok).collect()
    }

    fn ident(s: &str) -> Tok {
        Tok::Ident(s.into())
    }

    #[test]
    fn selector_and_filters() {
        assert_eq!(
            toks(r#"{a="b", c=~`x\y`} |= "q" != "r" |~ "s" !~ "t" |> "u" !> "v" | x"#),
            vec![
                Tok::Sym(Sym::LBrace),
                ident("a"),
                Tok::Sym(Sym::Eq),
                Tok::Str("b".into()),
                Tok::Sym(Sym::Comma),
                ident("c"),
                Tok::Sym(Sym::Re),
                Tok::Str(r"x\y".into()),
                Tok::Sym(Sym::RBrace),
                Tok::Sym(Sym::PipeExact),
                Tok::Str("q".into()),
                Tok::Sym(Sym::Neq),
                Tok::Str("r".into()),
                Tok::Sym(Sym::PipeMatch),
                Tok::Str("s".into()),
                Tok::Sym(Sym::Nre),
                Tok::Str("t".into()),
                Tok::Sym(Sym::PipePattern),
                Tok::Str("u".into()),
                Tok::Sym(Sym::Npa),
                Tok::Str("v".into()),
                Tok::Sym(Sym::Pipe),
                ident("x"),
                Tok::Eof,
            ]
        );
    }

    #[test]
    fn escapes() {
        assert_eq!(
            toks(r#""a\"b\\c\n\t\x41\u00e9\U0001F600\101""#)[0],
            Tok::Str("a\"b\\c\n\tAé😀A".into())
        );
        assert_eq!(toks("`a\r\nb`")[0], Tok::Str("a\nb".into()));
        for bad in [r#""\q""#, r#""\x4""#, r#""\u12""#] {
            match &toks(bad)[0] {
                Tok::Error(e) => assert_eq!(e.message(), "invalid char escape", "{bad}"),
                t => panic!("{bad}: {t:?}"),
            }
        }
        match &toks(r#""\xff""#)[0] {
            Tok::Error(e) => assert_eq!(e.message(), "invalid UTF-8 rune"),
            t => panic!("{t:?}"),
        }
        match &toks("{a=\"b\nc\"}")[3] {
            Tok::Error(e) => {
                assert_eq!(
                    e.to_string(),
                    "parse error at line 1, col 4: literal not terminated"
                )
            }
            t => panic!("{t:?}"),
        }
    }

    #[test]
    fn numbers_durations_bytes() {
        assert_eq!(
            toks("5 1.5 .5 1e3 5m 1h30m 1.5h 300us 5MB 1.5KiB 10B 5minutes"),
            vec![
                Tok::Number("5".into()),
                Tok::Number("1.5".into()),
                Tok::Number(".5".into()),
                Tok::Number("1e3".into()),
                Tok::Duration(300_000_000_000),
                Tok::Duration(5_400_000_000_000),
                Tok::Duration(5_400_000_000_000),
                Tok::Duration(300_000),
                Tok::Bytes(5_000_000),
                Tok::Bytes(1536),
                Tok::Bytes(10),
                Tok::Duration(300_000_000_000),
                ident("inutes"),
                Tok::Eof,
            ]
        );
    }

    #[test]
    fn ranges() {
        assert_eq!(toks("[5m]")[0], Tok::Range(300_000_000_000));
        match toks("rate({a=\"b\"}[5minutes])").last() {
            Some(Tok::Error(e)) => assert_eq!(
                e.to_string(),
                r#"parse error at line 0, col 13: unknown unit "minutes" in duration "5minutes""#
            ),
            t => panic!("{t:?}"),
        }
        match toks("x[5m").last() {
            Some(Tok::Error(e)) => assert_eq!(e.message(), "missing closing ']' in duration"),
            t => panic!("{t:?}"),
        }
    }

    #[test]
    fn function_keywords_only_before_call() {
        assert_eq!(toks("rate (")[0], Tok::Kw(Kw::Range(RangeOp::Rate)));
        assert_eq!(toks("RATE(")[0], Tok::Kw(Kw::Range(RangeOp::Rate)));
        assert_eq!(toks("rate=")[0], ident("rate"));
        assert_eq!(toks("sum by (a) (")[0], Tok::Kw(Kw::Vector(VectorOp::Sum)));
        assert_eq!(
            toks("sum without(a)")[0],
            Tok::Kw(Kw::Vector(VectorOp::Sum))
        );
        assert_eq!(toks("sum by a")[0], ident("sum"));
        assert_eq!(toks("count)")[0], ident("count"));
        assert_eq!(toks("bytes(x)")[0], Tok::Kw(Kw::BytesConv));
        assert_eq!(toks("ip = ip(")[0], ident("ip"));
        assert_eq!(toks("ip = ip(")[2], Tok::Kw(Kw::Ip));
        assert_eq!(toks("JSON")[0], Tok::Kw(Kw::Json));
        assert_eq!(toks("By")[0], Tok::Kw(Kw::By));
    }

    #[test]
    fn flags_comments_and_positions() {
        let t = tokenize("| logfmt --strict --keep-empty # c\n  x --y");
        let kinds: Vec<_> = t.iter().map(|t| t.tok.clone()).collect();
        assert_eq!(
            kinds,
            vec![
                Tok::Sym(Sym::Pipe),
                Tok::Kw(Kw::Logfmt),
                Tok::Flag("--strict"),
                Tok::Flag("--keep-empty"),
                ident("x"),
                Tok::Sym(Sym::Sub),
                Tok::Sym(Sym::Sub),
                ident("y"),
                Tok::Eof,
            ]
        );
        assert_eq!((t[0].line, t[0].col), (1, 1));
        assert_eq!((t[2].line, t[2].col), (0, 10));
        assert_eq!((t[4].line, t[4].col), (2, 3));
        assert_eq!((t[8].line, t[8].col), (2, 8));
        // Unknown characters and unicode spaces become one-character tokens.
        assert_eq!(toks("\u{a0}")[0], Tok::Unknown('\u{a0}'));
    }
}
