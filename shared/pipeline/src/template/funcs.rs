//! Template functions: Go's built-ins, Loki's own and the Sprig subset Loki exposes.
//!
//! Functions are resolved by name when the template is compiled, so an unknown name is a
//! query error rather than a per-line failure.

use super::ExecError;
use super::error::exec_error;
use std::borrow::Cow;
use std::fmt::Write;

use base64::Engine;
use regex::Regex;

use super::exec::{Ctx, field};
use super::value::{Value, format_time, parse_time, sprintf, write_value};

/// A resolved function (an index into [`FUNCS`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Func(usize);

/// What a function call can see besides its arguments.
pub(crate) struct Call<'c, 'a> {
    pub(crate) ctx: &'c Ctx<'a>,
    /// The first argument compiled at template compile time, for regex functions.
    pub(crate) regex: Option<&'c Regex>,
    pub(crate) name: &'static str,
}

type R<'a> = Result<Value<'a>, ExecError>;
type F = for<'c, 'a> fn(&Call<'c, 'a>, Vec<Value<'a>>) -> R<'a>;

static FUNCS: &[(&str, F)] = &[
    // Go built-ins (`and`/`or` are evaluated lazily by the executor).
    ("and", |_, _| Ok(Value::Nil)),
    ("or", |_, _| Ok(Value::Nil)),
    ("not", |c, a| {
        arity(c, &a, 1)?;
        Ok(Value::Bool(!a[0].truth()))
    }),
    ("len", f_len),
    ("index", f_index),
    ("slice", f_slice),
    ("print", |c, a| Ok(Value::str(sprint(c, &a, false)))),
    ("println", |c, a| Ok(Value::str(sprint(c, &a, true)))),
    ("printf", |c, a| {
        if a.is_empty() {
            return Err("wrong number of args for printf: want at least 1 got 0".into());
        }
        let f = s(c, &a, 0)?;
        let ctx = c.ctx;
        Ok(Value::str(sprintf(f, &a[1..], &|o| ctx.write_root(o))))
    }),
    ("eq", |c, a| {
        if a.len() < 2 {
            return Err("missing argument for comparison".into());
        }
        for b in &a[1..] {
            if compare(c, &a[0], b)? == std::cmp::Ordering::Equal {
                return Ok(Value::Bool(true));
            }
        }
        Ok(Value::Bool(false))
    }),
    ("ne", |c, a| cmp_fn(c, a, |o| o.is_ne())),
    ("lt", |c, a| cmp_fn(c, a, |o| o.is_lt())),
    ("le", |c, a| cmp_fn(c, a, |o| o.is_le())),
    ("gt", |c, a| cmp_fn(c, a, |o| o.is_gt())),
    ("ge", |c, a| cmp_fn(c, a, |o| o.is_ge())),
    ("html", |c, a| {
        Ok(Value::str(html_escape(&sprint(c, &a, false))))
    }),
    ("js", |c, a| {
        Ok(Value::str(js_escape(&sprint(c, &a, false))))
    }),
    ("urlquery", |c, a| {
        Ok(Value::str(query_escape(&sprint(c, &a, false))))
    }),
    // Loki.
    ("__line__", |c, a| {
        arity(c, &a, 0)?;
        Ok(Value::Str(Cow::Borrowed(c.ctx.line)))
    }),
    ("__timestamp__", |c, a| {
        arity(c, &a, 0)?;
        Ok(Value::Time(c.ctx.ts, 0))
    }),
    ("ToLower", |c, a| str1(c, a, |s| s.to_lowercase())),
    ("ToUpper", |c, a| str1(c, a, |s| s.to_uppercase())),
    ("lower", |c, a| str1(c, a, |s| s.to_lowercase())),
    ("upper", |c, a| str1(c, a, |s| s.to_uppercase())),
    ("title", |c, a| str1(c, a, title)),
    ("TrimSpace", |c, a| str1(c, a, |s| s.trim().to_string())),
    ("trim", |c, a| str1(c, a, |s| s.trim().to_string())),
    ("Replace", |c, a| {
        arity(c, &a, 4)?;
        let n = int(c, &a, 3)?;
        let (src, old, new) = (s(c, &a, 0)?, s(c, &a, 1)?, s(c, &a, 2)?);
        Ok(Value::str(if n < 0 {
            src.replace(old, new)
        } else {
            src.replacen(old, new, n as usize)
        }))
    }),
    ("replace", |c, a| {
        arity(c, &a, 3)?;
        Ok(Value::str(s(c, &a, 2)?.replace(s(c, &a, 0)?, s(c, &a, 1)?)))
    }),
    ("Trim", |c, a| {
        cut(c, a, false, |s, set| s.trim_matches(|ch| set.contains(ch)))
    }),
    ("TrimLeft", |c, a| {
        cut(c, a, false, |s, set| {
            s.trim_start_matches(|ch| set.contains(ch))
        })
    }),
    ("TrimRight", |c, a| {
        cut(c, a, false, |s, set| {
            s.trim_end_matches(|ch| set.contains(ch))
        })
    }),
    ("TrimPrefix", |c, a| {
        cut(c, a, false, |s, p| s.strip_prefix(p).unwrap_or(s))
    }),
    ("TrimSuffix", |c, a| {
        cut(c, a, false, |s, p| s.strip_suffix(p).unwrap_or(s))
    }),
    ("trimAll", |c, a| {
        cut(c, a, true, |s, set| s.trim_matches(|ch| set.contains(ch)))
    }),
    ("trimPrefix", |c, a| {
        cut(c, a, true, |s, p| s.strip_prefix(p).unwrap_or(s))
    }),
    ("trimSuffix", |c, a| {
        cut(c, a, true, |s, p| s.strip_suffix(p).unwrap_or(s))
    }),
    ("regexReplaceAll", |c, a| regex_replace(c, a, false)),
    ("regexReplaceAllLiteral", |c, a| regex_replace(c, a, true)),
    ("count", |c, a| {
        arity(c, &a, 2)?;
        let re = regex(c, &a)?;
        Ok(Value::Int(re.find_iter(s(c, &a, 1)?).count() as i64))
    }),
    ("urlencode", |c, a| str1(c, a, query_escape)),
    ("urldecode", |c, a| {
        arity(c, &a, 1)?;
        query_unescape(s(c, &a, 0)?).map(Value::str)
    }),
    ("b64enc", |c, a| {
        str1(c, a, |s| {
            base64::engine::general_purpose::STANDARD.encode(s)
        })
    }),
    ("b64dec", |c, a| {
        str1(c, a, |s| {
            match base64::engine::general_purpose::STANDARD.decode(s) {
                Ok(b) => String::from_utf8_lossy(&b).into_owned(),
                // Sprig returns the error text as the value.
                Err(e) => e.to_string(),
            }
        })
    }),
    ("bytes", |c, a| {
        arity(c, &a, 1)?;
        let v = s(c, &a, 0)?;
        crate::label_filter::go_parse_bytes(v)
            .map(|b| Value::Float(b as f64))
            .map_err(|e| ExecError::from(e.to_string()))
    }),
    ("duration", f_duration),
    ("duration_seconds", f_duration),
    ("unixEpochMillis", |c, a| {
        arity(c, &a, 1)?;
        Ok(Value::Int(time(c, &a, 0)?.div_euclid(1_000_000)))
    }),
    ("unixEpochNanos", |c, a| {
        arity(c, &a, 1)?;
        Ok(Value::Int(time(c, &a, 0)?))
    }),
    ("unixEpoch", |c, a| {
        arity(c, &a, 1)?;
        Ok(Value::Int(time(c, &a, 0)?.div_euclid(1_000_000_000)))
    }),
    ("unixToTime", |c, a| {
        arity(c, &a, 1)?;
        let e = s(c, &a, 0)?;
        let i: i64 = e
            .parse()
            .map_err(|err| exec_error!("unable to parse time '{e}': {err}"))?;
        let ns = match e.len() {
            5 => i.checked_mul(86_400_000_000_000),
            10 => i.checked_mul(1_000_000_000),
            13 => i.checked_mul(1_000_000),
            16 => i.checked_mul(1_000),
            19 => Some(i),
            l => {
                return Err(exec_error!(
                    "unable to parse time '{e}' length '{l}' not supported"
                ));
            }
        };
        ns.map(|n| Value::Time(n, 0))
            .ok_or_else(|| exec_error!("time '{e}' out of range"))
    }),
    ("toDateInZone", |c, a| {
        arity(c, &a, 3)?;
        let off = zone_offset(s(c, &a, 1)?)?;
        let (ns, o) = parse_time(s(c, &a, 0)?, s(c, &a, 2)?, off)?;
        Ok(Value::Time(ns, o))
    }),
    ("toDate", |c, a| {
        arity(c, &a, 2)?;
        let (ns, o) = parse_time(s(c, &a, 0)?, s(c, &a, 1)?, 0)?;
        Ok(Value::Time(ns, o))
    }),
    ("date", |c, a| {
        arity(c, &a, 2)?;
        let layout = s(c, &a, 0)?;
        let (ns, off) = match &a[1] {
            Value::Time(ns, off) => (*ns, *off),
            Value::Int(secs) => (secs.saturating_mul(1_000_000_000), 0),
            Value::Float(secs) => ((secs * 1e9) as i64, 0),
            other => {
                return Err(exec_error!(
                    "date: unsupported argument type {}",
                    other.type_name()
                ));
            }
        };
        Ok(Value::str(format_time(layout, ns, off)))
    }),
    ("now", |c, a| {
        arity(c, &a, 0)?;
        let ns = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as i64)
            .unwrap_or(0);
        Ok(Value::Time(ns, 0))
    }),
    ("alignLeft", |c, a| {
        arity(c, &a, 2)?;
        let n = int(c, &a, 0)?.max(0) as usize;
        let src = s(c, &a, 1)?;
        let len = src.chars().count();
        Ok(Value::str(if len >= n {
            src.chars().take(n).collect::<String>()
        } else {
            format!("{src}{}", " ".repeat(n - len))
        }))
    }),
    ("alignRight", |c, a| {
        arity(c, &a, 2)?;
        let n = int(c, &a, 0)?.max(0) as usize;
        let src = s(c, &a, 1)?;
        let len = src.chars().count();
        Ok(Value::str(if len >= n {
            src.chars().skip(len - n).collect::<String>()
        } else {
            format!("{}{src}", " ".repeat(n - len))
        }))
    }),
    // Sprig.
    ("trunc", |c, a| {
        arity(c, &a, 2)?;
        let n = int(c, &a, 0)?;
        let src = s(c, &a, 1)?;
        let len = src.len() as i64;
        Ok(Value::str(if n < 0 && len + n > 0 {
            src[floor_boundary(src, (len + n) as usize)..].to_string()
        } else if n >= 0 && len > n {
            src[..floor_boundary(src, n as usize)].to_string()
        } else {
            src.to_string()
        }))
    }),
    ("substr", |c, a| {
        arity(c, &a, 3)?;
        let (start, end, src) = (int(c, &a, 0)?, int(c, &a, 1)?, s(c, &a, 2)?);
        let len = src.len() as i64;
        let (from, to) = if start < 0 {
            (0, end)
        } else if end < 0 || end > len {
            (start, len)
        } else {
            (start, end)
        };
        if from > to || from > len || to < 0 {
            return Err(exec_error!("slice bounds out of range [{from}:{to}]"));
        }
        let (from, to) = (
            floor_boundary(src, from as usize),
            floor_boundary(src, to as usize),
        );
        Ok(Value::str(src[from..to].to_string()))
    }),
    ("contains", |c, a| {
        arity(c, &a, 2)?;
        Ok(Value::Bool(s(c, &a, 1)?.contains(s(c, &a, 0)?)))
    }),
    ("hasPrefix", |c, a| {
        arity(c, &a, 2)?;
        Ok(Value::Bool(s(c, &a, 1)?.starts_with(s(c, &a, 0)?)))
    }),
    ("hasSuffix", |c, a| {
        arity(c, &a, 2)?;
        Ok(Value::Bool(s(c, &a, 1)?.ends_with(s(c, &a, 0)?)))
    }),
    ("repeat", |c, a| {
        arity(c, &a, 2)?;
        let n = int(c, &a, 0)?;
        let src = s(c, &a, 1)?;
        if n < 0 {
            return Err("negative Repeat count".into());
        }
        if (n as usize).saturating_mul(src.len()) > 1 << 20 {
            return Err("repeat result too large".into());
        }
        Ok(Value::str(src.repeat(n as usize)))
    }),
    ("indent", |c, a| {
        arity(c, &a, 2)?;
        Ok(Value::str(indent(int(c, &a, 0)?, s(c, &a, 1)?)))
    }),
    ("nindent", |c, a| {
        arity(c, &a, 2)?;
        Ok(Value::str(format!(
            "\n{}",
            indent(int(c, &a, 0)?, s(c, &a, 1)?)
        )))
    }),
    ("default", |c, a| {
        if a.is_empty() || a.len() > 2 {
            return Err(exec_error!(
                "wrong number of args for {}: want 1 or 2 got {}",
                c.name,
                a.len()
            ));
        }
        let mut a = a;
        let given = if a.len() == 2 { a.pop() } else { None };
        Ok(match given {
            Some(g) if g.truth() => g,
            _ => a.swap_remove(0),
        })
    }),
    ("int", |c, a| {
        arity(c, &a, 1)?;
        Ok(Value::Int(to_i64(&a[0])))
    }),
    ("float64", |c, a| {
        arity(c, &a, 1)?;
        Ok(Value::Float(to_f64(&a[0])))
    }),
    ("add", |_, a| {
        Ok(Value::Int(
            a.iter().map(to_i64).fold(0i64, i64::wrapping_add),
        ))
    }),
    ("mul", |c, a| {
        min_args(c, &a, 1)?;
        Ok(Value::Int(
            a.iter().map(to_i64).fold(1i64, i64::wrapping_mul),
        ))
    }),
    ("sub", |c, a| {
        arity(c, &a, 2)?;
        Ok(Value::Int(to_i64(&a[0]).wrapping_sub(to_i64(&a[1]))))
    }),
    ("div", |c, a| {
        arity(c, &a, 2)?;
        let d = to_i64(&a[1]);
        if d == 0 {
            return Err("runtime error: integer divide by zero".into());
        }
        Ok(Value::Int(to_i64(&a[0]).wrapping_div(d)))
    }),
    ("mod", |c, a| {
        arity(c, &a, 2)?;
        let d = to_i64(&a[1]);
        if d == 0 {
            return Err("runtime error: integer divide by zero".into());
        }
        Ok(Value::Int(to_i64(&a[0]).wrapping_rem(d)))
    }),
    ("max", |c, a| {
        min_args(c, &a, 1)?;
        Ok(Value::Int(a.iter().map(to_i64).max().unwrap_or(0)))
    }),
    ("min", |c, a| {
        min_args(c, &a, 1)?;
        Ok(Value::Int(a.iter().map(to_i64).min().unwrap_or(0)))
    }),
    ("addf", |_, a| Ok(Value::Float(a.iter().map(to_f64).sum()))),
    ("subf", |c, a| {
        min_args(c, &a, 1)?;
        Ok(Value::Float(
            a[1..].iter().map(to_f64).fold(to_f64(&a[0]), |x, y| x - y),
        ))
    }),
    ("mulf", |c, a| {
        min_args(c, &a, 1)?;
        Ok(Value::Float(a.iter().map(to_f64).product()))
    }),
    ("divf", |c, a| {
        min_args(c, &a, 1)?;
        Ok(Value::Float(
            a[1..].iter().map(to_f64).fold(to_f64(&a[0]), |x, y| x / y),
        ))
    }),
    ("maxf", |c, a| {
        min_args(c, &a, 1)?;
        Ok(Value::Float(
            a.iter().map(to_f64).fold(f64::NEG_INFINITY, f64::max),
        ))
    }),
    ("minf", |c, a| {
        min_args(c, &a, 1)?;
        Ok(Value::Float(
            a.iter().map(to_f64).fold(f64::INFINITY, f64::min),
        ))
    }),
    ("ceil", |c, a| {
        arity(c, &a, 1)?;
        Ok(Value::Float(to_f64(&a[0]).ceil()))
    }),
    ("floor", |c, a| {
        arity(c, &a, 1)?;
        Ok(Value::Float(to_f64(&a[0]).floor()))
    }),
    ("round", |c, a| {
        if a.len() < 2 || a.len() > 3 {
            return Err(exec_error!(
                "wrong number of args for round: want 2 or 3 got {}",
                a.len()
            ));
        }
        let _ = c;
        let on = a.get(2).map(to_f64).unwrap_or(0.5);
        let pow = 10f64.powf(to_f64(&a[1]));
        let digit = pow * to_f64(&a[0]);
        let frac = digit.fract();
        let r = if frac >= on {
            digit.ceil()
        } else {
            digit.floor()
        };
        Ok(Value::Float(r / pow))
    }),
    ("fromJson", |c, a| {
        arity(c, &a, 1)?;
        // Sprig ignores errors and yields an empty map.
        Ok(
            match serde_json::from_str::<serde_json::Value>(s(c, &a, 0)?) {
                Ok(v) => from_json(v),
                Err(_) => Value::Map(Vec::new()),
            },
        )
    }),
];

pub(crate) fn lookup(name: &str) -> Option<Func> {
    FUNCS.iter().position(|(n, _)| *n == name).map(Func)
}

pub(crate) fn name(f: Func) -> &'static str {
    FUNCS.get(f.0).map_or("?", |(n, _)| n)
}

pub(crate) fn call<'c, 'a>(f: Func, c: &Call<'c, 'a>, args: Vec<Value<'a>>) -> R<'a> {
    match FUNCS.get(f.0) {
        Some((_, func)) => func(c, args),
        None => Err("unknown function".into()),
    }
}

/// Functions whose first argument is a regex worth compiling once.
pub(crate) fn takes_regex(f: Func) -> bool {
    matches!(
        name(f),
        "regexReplaceAll" | "regexReplaceAllLiteral" | "count"
    )
}

// ---- argument helpers ----

fn arity(c: &Call<'_, '_>, a: &[Value<'_>], n: usize) -> Result<(), ExecError> {
    if a.len() == n {
        Ok(())
    } else {
        Err(exec_error!(
            "wrong number of args for {}: want {n} got {}",
            c.name,
            a.len()
        ))
    }
}

fn min_args(c: &Call<'_, '_>, a: &[Value<'_>], n: usize) -> Result<(), ExecError> {
    if a.len() >= n {
        Ok(())
    } else {
        Err(exec_error!(
            "wrong number of args for {}: want at least {n} got {}",
            c.name,
            a.len()
        ))
    }
}

/// A string parameter: Go does not convert other kinds to string.
fn s<'v>(c: &Call<'_, '_>, a: &'v [Value<'_>], i: usize) -> Result<&'v str, ExecError> {
    match a.get(i) {
        Some(Value::Str(s)) => Ok(s),
        Some(other) => Err(exec_error!(
            "wrong type for value; expected string; got {} (argument {} of {})",
            other.type_name(),
            i + 1,
            c.name
        )),
        None => Err(exec_error!("missing argument {} of {}", i + 1, c.name)),
    }
}

/// An `int` parameter.
fn int(c: &Call<'_, '_>, a: &[Value<'_>], i: usize) -> Result<i64, ExecError> {
    match a.get(i) {
        Some(Value::Int(n)) => Ok(*n),
        Some(Value::Float(f)) if f.fract() == 0.0 => Ok(*f as i64),
        Some(other) => Err(exec_error!(
            "wrong type for value; expected int; got {} (argument {} of {})",
            other.type_name(),
            i + 1,
            c.name
        )),
        None => Err(exec_error!("missing argument {} of {}", i + 1, c.name)),
    }
}

fn time(c: &Call<'_, '_>, a: &[Value<'_>], i: usize) -> Result<i64, ExecError> {
    match a.get(i) {
        Some(Value::Time(ns, _)) => Ok(*ns),
        Some(other) => Err(exec_error!(
            "wrong type for value; expected time.Time; got {} (argument {} of {})",
            other.type_name(),
            i + 1,
            c.name
        )),
        None => Err(exec_error!("missing argument {} of {}", i + 1, c.name)),
    }
}

fn str1<'a>(c: &Call<'_, 'a>, a: Vec<Value<'a>>, f: impl Fn(&str) -> String) -> R<'a> {
    arity(c, &a, 1)?;
    Ok(Value::str(f(s(c, &a, 0)?)))
}

/// Two-string functions; Go's `strings` order is `(s, arg)`, Sprig's is `(arg, s)`.
fn cut<'a>(
    c: &Call<'_, 'a>,
    a: Vec<Value<'a>>,
    sprig: bool,
    f: impl for<'x> Fn(&'x str, &str) -> &'x str,
) -> R<'a> {
    arity(c, &a, 2)?;
    let (src, arg) = if sprig { (1, 0) } else { (0, 1) };
    Ok(Value::str(f(s(c, &a, src)?, s(c, &a, arg)?).to_string()))
}

/// `cast.ToInt64`-style conversion, as Sprig's math functions use: strings are parsed
/// (`"5"`, `"5.0"`, `"0x1f"`), anything unparsable is 0.
pub(crate) fn to_i64(v: &Value<'_>) -> i64 {
    match v {
        Value::Int(i) => *i,
        Value::Float(f) => *f as i64,
        Value::Bool(b) => i64::from(*b),
        Value::Str(s) => {
            let t = s.strip_suffix(".0").unwrap_or(s);
            let (neg, body) = match t.strip_prefix('-') {
                Some(r) => (true, r),
                None => (false, t.strip_prefix('+').unwrap_or(t)),
            };
            let v = if let Some(h) = body.strip_prefix("0x").or_else(|| body.strip_prefix("0X")) {
                i64::from_str_radix(h, 16).ok()
            } else if body.len() > 1 && body.starts_with('0') {
                i64::from_str_radix(&body[1..], 8).ok()
            } else {
                body.parse().ok()
            };
            v.map(|v| if neg { -v } else { v }).unwrap_or(0)
        }
        Value::Time(ns, _) => ns / 1_000_000_000,
        _ => 0,
    }
}

pub(crate) fn to_f64(v: &Value<'_>) -> f64 {
    match v {
        Value::Int(i) => *i as f64,
        Value::Float(f) => *f,
        Value::Bool(b) => f64::from(u8::from(*b)),
        Value::Str(s) => s.parse().unwrap_or(0.0),
        _ => 0.0,
    }
}

fn floor_boundary(s: &str, mut i: usize) -> usize {
    i = i.min(s.len());
    while !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

fn regex<'r>(c: &Call<'r, '_>, a: &[Value<'_>]) -> Result<Cow<'r, Regex>, ExecError> {
    match c.regex {
        Some(r) => Ok(Cow::Borrowed(r)),
        None => Regex::new(s(c, a, 0)?)
            .map(Cow::Owned)
            .map_err(|e| ExecError::from(e.to_string())),
    }
}

fn regex_replace<'a>(c: &Call<'_, 'a>, a: Vec<Value<'a>>, literal: bool) -> R<'a> {
    arity(c, &a, 3)?;
    let re = regex(c, &a)?;
    let (src, repl) = (s(c, &a, 1)?, s(c, &a, 2)?);
    Ok(Value::str(if literal {
        re.replace_all(src, regex::NoExpand(repl)).into_owned()
    } else {
        re.replace_all(src, repl).into_owned()
    }))
}

fn f_duration<'a>(c: &Call<'_, 'a>, a: Vec<Value<'a>>) -> R<'a> {
    arity(c, &a, 1)?;
    let v = s(c, &a, 0)?;
    parquetry_model::duration::parse_go(v)
        .map(|ns| Value::Float(ns as f64 / 1e9))
        .map_err(|e| ExecError::from(e.to_string()))
}

fn f_len<'a>(c: &Call<'_, 'a>, a: Vec<Value<'a>>) -> R<'a> {
    arity(c, &a, 1)?;
    Ok(Value::Int(match &a[0] {
        Value::Str(s) => s.len() as i64,
        Value::List(l) => l.len() as i64,
        Value::Map(m) => m.len() as i64,
        Value::Root => c.ctx.labels.iter().count() as i64,
        other => return Err(exec_error!("len of type {}", other.type_name())),
    }))
}

fn f_index<'a>(c: &Call<'_, 'a>, a: Vec<Value<'a>>) -> R<'a> {
    min_args(c, &a, 1)?;
    let mut it = a.into_iter();
    let mut v = it.next().unwrap_or(Value::Nil);
    for key in it {
        v = match (v, key) {
            (m @ (Value::Root | Value::Map(_)), Value::Str(k)) => field(c.ctx, m, &k)?,
            (Value::List(l), Value::Int(i)) => l
                .into_iter()
                .nth(usize::try_from(i).map_err(|_| exec_error!("index out of range: {i}"))?)
                .ok_or_else(|| exec_error!("index out of range: {i}"))?,
            (Value::Str(s), Value::Int(i)) => Value::Int(i64::from(
                *usize::try_from(i)
                    .ok()
                    .and_then(|i| s.as_bytes().get(i))
                    .ok_or_else(|| exec_error!("index out of range: {i}"))?,
            )),
            (Value::Nil, _) => return Err("index of untyped nil".into()),
            (v, k) => {
                return Err(exec_error!(
                    "cannot index {} with {}",
                    v.type_name(),
                    k.type_name()
                ));
            }
        };
    }
    Ok(v)
}

fn f_slice<'a>(c: &Call<'_, 'a>, a: Vec<Value<'a>>) -> R<'a> {
    if a.is_empty() || a.len() > 3 {
        return Err(exec_error!(
            "wrong number of args for slice: want 1 to 3 got {}",
            a.len()
        ));
    }
    let src = s(c, &a, 0)?;
    let from = if a.len() > 1 { int(c, &a, 1)? } else { 0 };
    let to = if a.len() > 2 {
        int(c, &a, 2)?
    } else {
        src.len() as i64
    };
    if from < 0 || to < from || to > src.len() as i64 {
        return Err(exec_error!("slice index out of range [{from}:{to}]"));
    }
    src.get(from as usize..to as usize)
        .map(|x| Value::str(x.to_string()))
        .ok_or_else(|| "slice splits a UTF-8 character".into())
}

/// `fmt.Sprint` (spaces only between two non-string operands) or `fmt.Sprintln`.
fn sprint(c: &Call<'_, '_>, a: &[Value<'_>], ln: bool) -> String {
    let mut out = String::new();
    let ctx = c.ctx;
    for (i, v) in a.iter().enumerate() {
        if i > 0 && (ln || !(matches!(v, Value::Str(_)) || matches!(a[i - 1], Value::Str(_)))) {
            out.push(' ');
        }
        write_value(&mut out, v, &|o| ctx.write_root(o));
    }
    if ln {
        out.push('\n');
    }
    out
}

/// Go's comparison rules: same basic kind only (ints with ints, strings with strings…).
fn compare(
    c: &Call<'_, '_>,
    x: &Value<'_>,
    y: &Value<'_>,
) -> Result<std::cmp::Ordering, ExecError> {
    use std::cmp::Ordering;
    match (x, y) {
        (Value::Str(a), Value::Str(b)) => Ok(a.as_ref().cmp(b.as_ref())),
        (Value::Int(a), Value::Int(b)) => Ok(a.cmp(b)),
        (Value::Float(a), Value::Float(b)) => Ok(a.partial_cmp(b).unwrap_or(Ordering::Less)),
        (Value::Bool(a), Value::Bool(b)) if matches!(c.name, "eq" | "ne") => Ok(a.cmp(b)),
        (Value::Time(a, _), Value::Time(b, _)) if matches!(c.name, "eq" | "ne") => Ok(a.cmp(b)),
        (a, b) if std::mem::discriminant(a) == std::mem::discriminant(b) => {
            Err("invalid type for comparison".into())
        }
        _ => Err("incompatible types for comparison".into()),
    }
}

fn cmp_fn<'a>(c: &Call<'_, 'a>, a: Vec<Value<'a>>, f: fn(std::cmp::Ordering) -> bool) -> R<'a> {
    arity(c, &a, 2)?;
    let o = compare(c, &a[0], &a[1])?;
    // NaN compares false for everything but `ne`.
    if let (Value::Float(x), Value::Float(y)) = (&a[0], &a[1])
        && (x.is_nan() || y.is_nan())
    {
        return Ok(Value::Bool(c.name == "ne"));
    }
    Ok(Value::Bool(f(o)))
}

fn title(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut prev_letter = false;
    for ch in s.chars() {
        let letter = ch.is_alphanumeric() || ch == '_' || ch == '\'';
        if letter && !prev_letter {
            out.extend(ch.to_uppercase());
        } else {
            out.push(ch);
        }
        prev_letter = letter;
    }
    out
}

fn indent(n: i64, s: &str) -> String {
    let pad = " ".repeat(n.clamp(0, 1024) as usize);
    format!("{pad}{}", s.replace('\n', &format!("\n{pad}")))
}

fn html_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for ch in s.chars() {
        match ch {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '\'' => out.push_str("&#39;"),
            '"' => out.push_str("&#34;"),
            '\0' => out.push('\u{FFFD}'),
            c => out.push(c),
        }
    }
    out
}

// Go's `template.JSEscapeString`: JavaScript, not JSON (`'` and `=` escaped, upper-case hex),
// so it stays apart from the JSON string writer.
fn js_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for ch in s.chars() {
        match ch {
            '\\' => out.push_str("\\\\"),
            '\'' => out.push_str("\\'"),
            '"' => out.push_str("\\\""),
            '<' => out.push_str("\\u003C"),
            '>' => out.push_str("\\u003E"),
            '&' => out.push_str("\\u0026"),
            '=' => out.push_str("\\u003D"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04X}", c as u32);
            }
            c => out.push(c),
        }
    }
    out
}

/// Go's `url.QueryEscape`.
pub(crate) fn query_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char)
            }
            b' ' => out.push('+'),
            _ => {
                let _ = write!(out, "%{b:02X}");
            }
        }
    }
    out
}

/// Go's `url.QueryUnescape`.
pub(crate) fn query_unescape(s: &str) -> Result<String, ExecError> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' => {
                let hex = s
                    .get(i + 1..i + 3)
                    .filter(|h| h.bytes().all(|c| c.is_ascii_hexdigit()))
                    .ok_or_else(|| {
                        exec_error!(
                            "invalid URL escape {:?}",
                            s.get(i..(i + 3).min(s.len())).unwrap_or("%")
                        )
                    })?;
                out.push(u8::from_str_radix(hex, 16).map_err(|e| e.to_string())?);
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    Ok(String::from_utf8_lossy(&out).into_owned())
}

/// Time zone names without a tz database: UTC and fixed offsets (`+02:00`).
fn zone_offset(zone: &str) -> Result<i32, ExecError> {
    match zone {
        "" | "UTC" | "Local" | "GMT" | "Etc/UTC" | "Z" => Ok(0),
        z => {
            let neg = z.starts_with('-');
            let body = z
                .strip_prefix(['+', '-'])
                .ok_or_else(|| exec_error!("unknown time zone {z}"))?;
            let (h, m) = body.split_once(':').unwrap_or((body, "0"));
            let (h, m): (i32, i32) = (
                h.parse()
                    .map_err(|_| exec_error!("unknown time zone {z}"))?,
                m.parse()
                    .map_err(|_| exec_error!("unknown time zone {z}"))?,
            );
            let o = h * 3600 + m * 60;
            Ok(if neg { -o } else { o })
        }
    }
}

fn from_json(v: serde_json::Value) -> Value<'static> {
    match v {
        serde_json::Value::Null => Value::Nil,
        serde_json::Value::Bool(b) => Value::Bool(b),
        // encoding/json decodes every number as float64.
        serde_json::Value::Number(n) => Value::Float(n.as_f64().unwrap_or(0.0)),
        serde_json::Value::String(s) => Value::Str(Cow::Owned(s)),
        serde_json::Value::Array(a) => Value::List(a.into_iter().map(from_json).collect()),
        serde_json::Value::Object(o) => {
            let mut m: Vec<(String, Value<'static>)> =
                o.into_iter().map(|(k, v)| (k, from_json(v))).collect();
            m.sort_by(|a, b| a.0.cmp(&b.0));
            Value::Map(m)
        }
    }
}
