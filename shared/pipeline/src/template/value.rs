//! Template values and how Go prints them (`fmt`'s `%v` and `Printf` verbs, `time.Time`).

use super::ExecError;
use super::error::exec_error;
use std::borrow::Cow;
use std::fmt::Write;

/// A value during template execution. Label values borrow from the entry.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Value<'a> {
    Str(Cow<'a, str>),
    Int(i64),
    Float(f64),
    Bool(bool),
    /// A `time.Time`: Unix nanoseconds plus a fixed UTC offset in seconds.
    Time(i64, i32),
    /// A small list (only produced by a few functions, iterable with `range`).
    List(Vec<Value<'a>>),
    /// A string map (`fromJson`, `dict`), sorted by key.
    Map(Vec<(String, Value<'a>)>),
    Nil,
    /// The template data: the entry's labels.
    Root,
}

impl<'a> Value<'a> {
    pub(crate) fn str(s: impl Into<Cow<'a, str>>) -> Self {
        Value::Str(s.into())
    }

    /// Go's kind name, for error messages.
    pub(crate) fn type_name(&self) -> &'static str {
        match self {
            Value::Str(_) => "string",
            Value::Int(_) => "int",
            Value::Float(_) => "float64",
            Value::Bool(_) => "bool",
            Value::Time(..) => "time.Time",
            Value::List(_) => "[]interface {}",
            Value::Map(_) | Value::Root => "map[string]interface {}",
            Value::Nil => "<nil>",
        }
    }

    /// Go template truth: zero values are false.
    pub(crate) fn truth(&self) -> bool {
        match self {
            Value::Str(s) => !s.is_empty(),
            Value::Int(i) => *i != 0,
            Value::Float(f) => *f != 0.0,
            Value::Bool(b) => *b,
            Value::Time(..) | Value::Root => true,
            Value::List(l) => !l.is_empty(),
            Value::Map(m) => !m.is_empty(),
            Value::Nil => false,
        }
    }
}

/// Appends `v` as Go's `fmt.Sprint` (`%v`) would print it. `root` prints the label map.
pub(crate) fn write_value(out: &mut String, v: &Value<'_>, root: &dyn Fn(&mut String)) {
    match v {
        Value::Str(s) => out.push_str(s),
        Value::Int(i) => {
            let _ = write!(out, "{i}");
        }
        Value::Float(f) => out.push_str(&format_float_g(*f, None, false)),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Time(ns, off) => out.push_str(&time_string(*ns, *off)),
        Value::List(l) => {
            out.push('[');
            for (i, x) in l.iter().enumerate() {
                if i > 0 {
                    out.push(' ');
                }
                write_value(out, x, root);
            }
            out.push(']');
        }
        Value::Map(m) => {
            out.push_str("map[");
            for (i, (k, x)) in m.iter().enumerate() {
                if i > 0 {
                    out.push(' ');
                }
                out.push_str(k);
                out.push(':');
                write_value(out, x, root);
            }
            out.push(']');
        }
        Value::Nil => out.push_str("<nil>"),
        Value::Root => root(out),
    }
}

/// `strconv.FormatFloat(f, 'g', prec, 64)`; `None` is the shortest representation, which
/// is what `%v` prints. `upper` selects `E`.
pub(crate) fn format_float_g(f: f64, prec: Option<usize>, upper: bool) -> String {
    if let Some(s) = special(f) {
        return s.to_string();
    }
    if f == 0.0 {
        return if f.is_sign_negative() { "-0" } else { "0" }.to_string();
    }
    let (neg, digits, exp) = decimal_digits(f, prec.map(|p| p.max(1)));
    // `exp` is the exponent of the first digit (d.ddd × 10^exp).
    let eprec: i32 = match prec {
        None => {
            // Shortest: Go decides with precision 6, unless the digits are fewer and all
            // before the point.
            let nd = digits.len() as i32;
            if 6 > nd && nd > exp { nd } else { 6 }
        }
        Some(p) => p.max(1) as i32,
    };
    let mut out = String::new();
    if neg {
        out.push('-');
    }
    if exp < -4 || exp >= eprec {
        out.push_str(&digits[..1]);
        if digits.len() > 1 {
            out.push('.');
            out.push_str(&digits[1..]);
        }
        out.push(if upper { 'E' } else { 'e' });
        out.push(if exp < 0 { '-' } else { '+' });
        let _ = write!(out, "{:02}", exp.abs());
    } else if exp < 0 {
        out.push_str("0.");
        for _ in 0..(-exp - 1) {
            out.push('0');
        }
        out.push_str(&digits);
    } else {
        let int_len = (exp + 1) as usize;
        if digits.len() <= int_len {
            out.push_str(&digits);
            for _ in digits.len()..int_len {
                out.push('0');
            }
        } else {
            out.push_str(&digits[..int_len]);
            out.push('.');
            out.push_str(&digits[int_len..]);
        }
    }
    out
}

fn special(f: f64) -> Option<&'static str> {
    if f.is_nan() {
        Some("NaN")
    } else if f == f64::INFINITY {
        Some("+Inf")
    } else if f == f64::NEG_INFINITY {
        Some("-Inf")
    } else {
        None
    }
}

/// Significant decimal digits (trailing zeros removed) and decimal exponent of `f`.
fn decimal_digits(f: f64, sig: Option<usize>) -> (bool, String, i32) {
    let s = match sig {
        None => format!("{:e}", f.abs()),
        Some(p) => format!("{:.*e}", p - 1, f.abs()),
    };
    let (mant, exp) = s.split_once('e').unwrap_or((&s, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let mut digits: String = mant.chars().filter(char::is_ascii_digit).collect();
    while digits.len() > 1 && digits.ends_with('0') {
        digits.pop();
    }
    (f.is_sign_negative(), digits, exp)
}

/// `%e` with `prec` digits after the point, Go style (`1.500000e+03`).
fn format_float_e(f: f64, prec: usize, upper: bool) -> String {
    if let Some(s) = special(f) {
        return s.to_string();
    }
    let s = format!("{:.*e}", prec, f);
    let (mant, exp) = s.split_once('e').unwrap_or((&s, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    format!(
        "{mant}{}{}{:02}",
        if upper { 'E' } else { 'e' },
        if exp < 0 { '-' } else { '+' },
        exp.abs()
    )
}

/// Go's `strconv.Quote`. Not JSON: Go string syntax has `\a`, `\b`, `\f`, `\v` and `\xNN`
/// escapes, which templates print as Go does, so it stays apart from the JSON string writer.
pub(crate) fn go_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{7}' => out.push_str("\\a"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '\u{b}' => out.push_str("\\v"),
            c if (c as u32) < 0x20 || c == '\u{7f}' => {
                let _ = write!(out, "\\x{:02x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Go's `fmt.Sprintf` for the verbs templates use: `v s q d f F e E g G x X o b t c %`, with
/// flags `- + 0 space #`, width and precision (`*` is not supported).
pub(crate) fn sprintf(format: &str, args: &[Value<'_>], root: &dyn Fn(&mut String)) -> String {
    let mut out = String::with_capacity(format.len() + 16);
    let mut chars = format.char_indices().peekable();
    let mut argi = 0;
    while let Some((_, c)) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        let (mut minus, mut plus, mut zero, mut space, mut sharp) =
            (false, false, false, false, false);
        while let Some(&(_, f)) = chars.peek() {
            match f {
                '-' => minus = true,
                '+' => plus = true,
                '0' => zero = true,
                ' ' => space = true,
                '#' => sharp = true,
                _ => break,
            }
            chars.next();
        }
        // Go's fmt gives up on a width or precision above 10^6 ("crazy long number") and
        // swallows the rest of the format as a missing verb; it also keeps `%9999999999d`
        // from asking for terabytes of padding.
        const TOO_LARGE: usize = 1_000_000;
        let mut width: Option<usize> = None;
        let mut crazy = false;
        while let Some(&(_, d)) = chars.peek() {
            let Some(d) = d.to_digit(10) else { break };
            if width.unwrap_or(0) > TOO_LARGE {
                crazy = true;
                break;
            }
            width = Some(width.unwrap_or(0) * 10 + d as usize);
            chars.next();
        }
        let mut prec: Option<usize> = None;
        if !crazy && let Some(&(_, '.')) = chars.peek() {
            chars.next();
            prec = Some(0);
            while let Some(&(_, d)) = chars.peek() {
                let Some(d) = d.to_digit(10) else { break };
                if prec.unwrap_or(0) > TOO_LARGE {
                    crazy = true;
                    break;
                }
                prec = Some(prec.unwrap_or(0) * 10 + d as usize);
                chars.next();
            }
        }
        if crazy {
            out.push_str("%!(NOVERB)");
            break;
        }
        let Some((_, verb)) = chars.next() else {
            out.push_str("%!(NOVERB)");
            break;
        };
        if verb == '%' {
            out.push('%');
            continue;
        }
        let Some(arg) = args.get(argi) else {
            let _ = write!(out, "%!{verb}(MISSING)");
            continue;
        };
        argi += 1;
        let bad = |out: &mut String| {
            let mut v = String::new();
            write_value(&mut v, arg, root);
            let _ = write!(out, "%!{verb}({}={v})", arg.type_name());
        };
        let body: String = match (verb, arg) {
            ('v', Value::Float(f)) | ('g', Value::Float(f)) | ('G', Value::Float(f)) => {
                let mut s = format_float_g(*f, prec, verb == 'G');
                if plus && !s.starts_with('-') && !s.starts_with('+') {
                    s.insert(0, '+');
                }
                s
            }
            ('v', _) | ('s', Value::Str(_)) => {
                let mut s = String::new();
                write_value(&mut s, arg, root);
                if let (Some(p), Value::Str(_)) = (prec, arg) {
                    s = s.chars().take(p).collect();
                }
                s
            }
            ('s', Value::Time(..)) => {
                let mut s = String::new();
                write_value(&mut s, arg, root);
                s
            }
            ('q', Value::Str(s)) => go_quote(s),
            ('d', Value::Int(i)) => {
                let mut s = i.unsigned_abs().to_string();
                if let Some(p) = prec {
                    while s.len() < p {
                        s.insert(0, '0');
                    }
                }
                sign(*i < 0, plus, space, s)
            }
            ('x' | 'X', Value::Int(i)) => {
                let s = if verb == 'x' {
                    format!("{:x}", i.unsigned_abs())
                } else {
                    format!("{:X}", i.unsigned_abs())
                };
                let s = if sharp { format!("0{verb}{s}") } else { s };
                sign(*i < 0, plus, space, s)
            }
            ('o', Value::Int(i)) => sign(*i < 0, plus, space, format!("{:o}", i.unsigned_abs())),
            ('b', Value::Int(i)) => sign(*i < 0, plus, space, format!("{:b}", i.unsigned_abs())),
            ('c', Value::Int(i)) => u32::try_from(*i)
                .ok()
                .and_then(char::from_u32)
                .unwrap_or('\u{FFFD}')
                .to_string(),
            ('x' | 'X', Value::Str(s)) => s
                .bytes()
                .map(|b| {
                    if verb == 'x' {
                        format!("{b:02x}")
                    } else {
                        format!("{b:02X}")
                    }
                })
                .collect(),
            ('f' | 'F', Value::Float(f)) => {
                let s = match special(*f) {
                    Some(s) => s.trim_start_matches('+').to_string(),
                    None => format!("{:.*}", prec.unwrap_or(6), f.abs()),
                };
                sign(f.is_sign_negative() && !f.is_nan(), plus, space, s)
            }
            ('e' | 'E', Value::Float(f)) => {
                let s = format_float_e(f.abs(), prec.unwrap_or(6), verb == 'E');
                sign(f.is_sign_negative(), plus, space, s)
            }
            ('t', Value::Bool(b)) => b.to_string(),
            _ => {
                bad(&mut out);
                continue;
            }
        };
        let len = body.chars().count();
        match width {
            Some(w) if w > len => {
                let pad = w - len;
                if minus {
                    out.push_str(&body);
                    out.extend(std::iter::repeat_n(' ', pad));
                } else if zero
                    && matches!(
                        verb,
                        'd' | 'f' | 'F' | 'e' | 'E' | 'g' | 'G' | 'x' | 'X' | 'o' | 'b'
                    )
                {
                    let (s, rest) = match body.strip_prefix(['-', '+', ' ']) {
                        Some(r) => (&body[..1], r),
                        None => ("", body.as_str()),
                    };
                    out.push_str(s);
                    out.extend(std::iter::repeat_n('0', pad));
                    out.push_str(rest);
                } else {
                    out.extend(std::iter::repeat_n(' ', pad));
                    out.push_str(&body);
                }
            }
            _ => out.push_str(&body),
        }
    }
    if argi < args.len() {
        out.push_str("%!(EXTRA ");
        for (i, a) in args[argi..].iter().enumerate() {
            if i > 0 {
                out.push_str(", ");
            }
            let _ = write!(out, "{}=", a.type_name());
            write_value(&mut out, a, root);
        }
        out.push(')');
    }
    out
}

fn sign(neg: bool, plus: bool, space: bool, s: String) -> String {
    if neg {
        format!("-{s}")
    } else if plus {
        format!("+{s}")
    } else if space {
        format!(" {s}")
    } else {
        s
    }
}

// ---- time ----

/// Civil date from days since 1970-01-01 (proleptic Gregorian).
pub(crate) fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

pub(crate) fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let m = i64::from(m);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

struct Parts {
    year: i64,
    month: u32,
    day: u32,
    hour: u32,
    min: u32,
    sec: u32,
    nanos: u32,
    weekday: usize,
    yday: u32,
}

fn parts(ns: i64, offset: i32) -> Parts {
    let local = i128::from(ns) + i128::from(offset) * 1_000_000_000;
    let secs = local.div_euclid(1_000_000_000) as i64;
    let nanos = local.rem_euclid(1_000_000_000) as u32;
    let days = secs.div_euclid(86_400);
    let sod = secs.rem_euclid(86_400) as u32;
    let (year, month, day) = civil_from_days(days);
    Parts {
        year,
        month,
        day,
        hour: sod / 3600,
        min: sod / 60 % 60,
        sec: sod % 60,
        nanos,
        weekday: (days + 4).rem_euclid(7) as usize,
        yday: (days - days_from_civil(year, 1, 1) + 1) as u32,
    }
}

const MONTHS: [&str; 12] = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
];
const DAYS: [&str; 7] = [
    "Sunday",
    "Monday",
    "Tuesday",
    "Wednesday",
    "Thursday",
    "Friday",
    "Saturday",
];

/// `time.Time.String()`: `2006-01-02 15:04:05.999999999 -0700 MST`.
pub(crate) fn time_string(ns: i64, offset: i32) -> String {
    format_time("2006-01-02 15:04:05.999999999 -0700 MST", ns, offset)
}

/// Formats with a Go reference layout (`2006-01-02T15:04:05Z07:00`).
pub(crate) fn format_time(layout: &str, ns: i64, offset: i32) -> String {
    let p = parts(ns, offset);
    let mut out = String::with_capacity(layout.len() + 8);
    let mut rest = layout;
    let zone = |out: &mut String, colon: bool, secs: bool, z: bool| {
        if z && offset == 0 {
            out.push('Z');
            return;
        }
        let a = offset.unsigned_abs();
        out.push(if offset < 0 { '-' } else { '+' });
        let _ = write!(out, "{:02}", a / 3600);
        if colon {
            out.push(':');
        }
        let _ = write!(out, "{:02}", a / 60 % 60);
        if secs {
            if colon {
                out.push(':');
            }
            let _ = write!(out, "{:02}", a % 60);
        }
    };
    while !rest.is_empty() {
        // Longest tokens first, as Go's layout scanner does.
        let tokens: &[&str] = &[
            "January",
            "Monday",
            "2006",
            "Z07:00:00",
            "-07:00:00",
            "Z070000",
            "-070000",
            "Z07:00",
            "-07:00",
            "Z0700",
            "-0700",
            "Z07",
            "-07",
            "Jan",
            "Mon",
            "MST",
            "002",
            "__2",
            "_2",
            "01",
            "02",
            "03",
            "04",
            "05",
            "06",
            "15",
            "PM",
            "pm",
            "1",
            "2",
            "3",
            "4",
            "5",
        ];
        if let Some(frac) = fraction_at(rest) {
            let (digits, trim, len) = frac;
            let s = format!("{:09}", p.nanos);
            let mut d = s[..digits].to_string();
            if trim {
                while d.ends_with('0') {
                    d.pop();
                }
                if !d.is_empty() {
                    out.push(rest.as_bytes()[0] as char);
                    out.push_str(&d);
                }
            } else {
                out.push(rest.as_bytes()[0] as char);
                out.push_str(&d);
            }
            rest = &rest[len..];
            continue;
        }
        let Some(tok) = tokens.iter().find(|t| rest.starts_with(**t)) else {
            let c = rest.chars().next().unwrap_or(' ');
            out.push(c);
            rest = &rest[c.len_utf8()..];
            continue;
        };
        let h12 = if p.hour.is_multiple_of(12) {
            12
        } else {
            p.hour % 12
        };
        match *tok {
            "January" => out.push_str(MONTHS[(p.month - 1) as usize]),
            "Jan" => out.push_str(&MONTHS[(p.month - 1) as usize][..3]),
            "Monday" => out.push_str(DAYS[p.weekday]),
            "Mon" => out.push_str(&DAYS[p.weekday][..3]),
            "2006" => {
                let _ = write!(out, "{:04}", p.year);
            }
            "06" => {
                let _ = write!(out, "{:02}", p.year.rem_euclid(100));
            }
            "01" => {
                let _ = write!(out, "{:02}", p.month);
            }
            "1" => {
                let _ = write!(out, "{}", p.month);
            }
            "02" => {
                let _ = write!(out, "{:02}", p.day);
            }
            "_2" => {
                let _ = write!(out, "{:>2}", p.day);
            }
            "2" => {
                let _ = write!(out, "{}", p.day);
            }
            "002" => {
                let _ = write!(out, "{:03}", p.yday);
            }
            "__2" => {
                let _ = write!(out, "{:>3}", p.yday);
            }
            "15" => {
                let _ = write!(out, "{:02}", p.hour);
            }
            "03" => {
                let _ = write!(out, "{h12:02}");
            }
            "3" => {
                let _ = write!(out, "{h12}");
            }
            "04" => {
                let _ = write!(out, "{:02}", p.min);
            }
            "4" => {
                let _ = write!(out, "{}", p.min);
            }
            "05" => {
                let _ = write!(out, "{:02}", p.sec);
            }
            "5" => {
                let _ = write!(out, "{}", p.sec);
            }
            "PM" => out.push_str(if p.hour >= 12 { "PM" } else { "AM" }),
            "pm" => out.push_str(if p.hour >= 12 { "pm" } else { "am" }),
            "MST" => {
                if offset == 0 {
                    out.push_str("UTC");
                } else {
                    zone(&mut out, false, false, false);
                }
            }
            "Z07:00:00" => zone(&mut out, true, true, true),
            "-07:00:00" => zone(&mut out, true, true, false),
            "Z070000" => zone(&mut out, false, true, true),
            "-070000" => zone(&mut out, false, true, false),
            "Z07:00" => zone(&mut out, true, false, true),
            "-07:00" => zone(&mut out, true, false, false),
            "Z0700" => zone(&mut out, false, false, true),
            "-0700" => zone(&mut out, false, false, false),
            "Z07" | "-07" => {
                if *tok == "Z07" && offset == 0 {
                    out.push('Z');
                } else {
                    out.push(if offset < 0 { '-' } else { '+' });
                    let _ = write!(out, "{:02}", offset.unsigned_abs() / 3600);
                }
            }
            _ => out.push_str(tok),
        }
        rest = &rest[tok.len()..];
    }
    out
}

/// A fractional-second token at the start of `s` (`.000`, `,999`), only when it follows
/// seconds: returns (digits, trim trailing zeros, length).
fn fraction_at(s: &str) -> Option<(usize, bool, usize)> {
    let b = s.as_bytes();
    if b.len() < 2 || !(b[0] == b'.' || b[0] == b',') || !(b[1] == b'0' || b[1] == b'9') {
        return None;
    }
    let d = b[1];
    let n = b[1..].iter().take_while(|c| **c == d).count();
    if b.get(1 + n).is_some_and(u8::is_ascii_digit) || n > 9 {
        return None;
    }
    Some((n, d == b'9', 1 + n))
}

/// Parses `value` with a Go reference layout. Supports the numeric tokens, month and day
/// names, fractions and numeric zones; a layout without a zone is read in `default_offset`.
pub(crate) fn parse_time(
    layout: &str,
    value: &str,
    default_offset: i32,
) -> Result<(i64, i32), ExecError> {
    let err = || exec_error!("parsing time {value:?} as {layout:?}: cannot parse");
    let (mut year, mut month, mut day, mut hour, mut min, mut sec, mut nanos) =
        (1i64, 1u32, 1u32, 0u32, 0u32, 0u32, 0u32);
    let mut pm: Option<bool> = None;
    let mut offset: Option<i32> = None;
    let mut l = layout;
    let mut v = value;
    let num = |v: &mut &str, min_len: usize, max_len: usize| -> Option<i64> {
        let n = v
            .bytes()
            .take(max_len)
            .take_while(u8::is_ascii_digit)
            .count();
        if n < min_len {
            return None;
        }
        let x = v[..n].parse().ok()?;
        *v = &v[n..];
        Some(x)
    };
    while !l.is_empty() {
        if let Some((_, _, len)) = fraction_at(l) {
            if let Some(r) = v.strip_prefix(['.', ',']) {
                v = r;
                let n = v.bytes().take_while(u8::is_ascii_digit).count();
                let digits = &v[..n.min(9)];
                nanos = format!("{digits:0<9}").parse().map_err(|_| err())?;
                v = &v[n..];
            }
            l = &l[len..];
            continue;
        }
        let tokens: &[&str] = &[
            "January", "Monday", "2006", "Z07:00", "-07:00", "Z0700", "-0700", "Jan", "Mon", "MST",
            "01", "02", "_2", "03", "04", "05", "06", "15", "PM", "pm", "1", "2", "3", "4", "5",
        ];
        let Some(tok) = tokens.iter().find(|t| l.starts_with(**t)) else {
            let c = l.chars().next().unwrap_or(' ');
            v = v.strip_prefix(c).ok_or_else(err)?;
            l = &l[c.len_utf8()..];
            continue;
        };
        match *tok {
            "2006" => year = num(&mut v, 4, 4).ok_or_else(err)?,
            "06" => year = 2000 + num(&mut v, 2, 2).ok_or_else(err)?,
            "01" => month = num(&mut v, 2, 2).ok_or_else(err)? as u32,
            "1" => month = num(&mut v, 1, 2).ok_or_else(err)? as u32,
            "02" => day = num(&mut v, 2, 2).ok_or_else(err)? as u32,
            "_2" => {
                v = v.trim_start_matches(' ');
                day = num(&mut v, 1, 2).ok_or_else(err)? as u32;
            }
            "2" => day = num(&mut v, 1, 2).ok_or_else(err)? as u32,
            "15" => hour = num(&mut v, 1, 2).ok_or_else(err)? as u32,
            "03" => hour = num(&mut v, 2, 2).ok_or_else(err)? as u32,
            "3" => hour = num(&mut v, 1, 2).ok_or_else(err)? as u32,
            "04" => min = num(&mut v, 2, 2).ok_or_else(err)? as u32,
            "4" => min = num(&mut v, 1, 2).ok_or_else(err)? as u32,
            "05" => sec = num(&mut v, 2, 2).ok_or_else(err)? as u32,
            "5" => sec = num(&mut v, 1, 2).ok_or_else(err)? as u32,
            "PM" | "pm" => {
                let s = v.get(..2).ok_or_else(err)?.to_ascii_uppercase();
                pm = Some(match s.as_str() {
                    "PM" => true,
                    "AM" => false,
                    _ => return Err(err()),
                });
                v = &v[2..];
            }
            "January" | "Jan" => {
                let i = MONTHS
                    .iter()
                    .position(|m| {
                        let m = if *tok == "Jan" { &m[..3] } else { m };
                        v.get(..m.len()).is_some_and(|p| p.eq_ignore_ascii_case(m))
                    })
                    .ok_or_else(err)?;
                let len = if *tok == "Jan" { 3 } else { MONTHS[i].len() };
                month = i as u32 + 1;
                v = &v[len..];
            }
            "Monday" | "Mon" => {
                let i = DAYS
                    .iter()
                    .position(|d| {
                        let d = if *tok == "Mon" { &d[..3] } else { d };
                        v.get(..d.len()).is_some_and(|p| p.eq_ignore_ascii_case(d))
                    })
                    .ok_or_else(err)?;
                v = &v[if *tok == "Mon" { 3 } else { DAYS[i].len() }..];
            }
            "MST" => {
                let n = v.bytes().take_while(u8::is_ascii_uppercase).count();
                if n < 3 {
                    return Err(err());
                }
                if &v[..n] == "UTC" || &v[..n] == "GMT" {
                    offset = Some(0);
                }
                v = &v[n..];
            }
            "Z07:00" | "Z0700" if v.starts_with('Z') => {
                offset = Some(0);
                v = &v[1..];
            }
            _ => {
                // Numeric zone: ±hh[:]mm
                let neg = match v.as_bytes().first() {
                    Some(b'+') => false,
                    Some(b'-') => true,
                    _ => return Err(err()),
                };
                v = &v[1..];
                let h = num(&mut v, 2, 2).ok_or_else(err)?;
                if tok.contains(':') {
                    v = v.strip_prefix(':').ok_or_else(err)?;
                }
                let m = num(&mut v, 2, 2).ok_or_else(err)?;
                let o = (h * 3600 + m * 60) as i32;
                offset = Some(if neg { -o } else { o });
            }
        }
        l = &l[tok.len()..];
    }
    if !v.is_empty() {
        return Err(exec_error!("parsing time {value:?}: extra text: {v:?}"));
    }
    if let Some(pm) = pm {
        if hour > 12 {
            return Err(err());
        }
        hour = match (pm, hour) {
            (true, 12) => 12,
            (true, h) => h + 12,
            (false, 12) => 0,
            (false, h) => h,
        };
    }
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) || hour > 23 || min > 59 || sec > 59 {
        return Err(exec_error!("parsing time {value:?}: value out of range"));
    }
    let offset = offset.unwrap_or(default_offset);
    let days = days_from_civil(year, month, day);
    let secs = days * 86_400 + i64::from(hour) * 3600 + i64::from(min) * 60 + i64::from(sec)
        - i64::from(offset);
    let ns = secs
        .checked_mul(1_000_000_000)
        .and_then(|s| s.checked_add(i64::from(nanos)))
        .ok_or_else(|| exec_error!("parsing time {value:?}: out of range"))?;
    Ok((ns, offset))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no_root(_: &mut String) {}

    #[test]
    fn floats_like_go() {
        assert_eq!(format_float_g(1.5, None, false), "1.5");
        assert_eq!(format_float_g(21.0, None, false), "21");
        assert_eq!(format_float_g(100000.0, None, false), "100000");
        assert_eq!(format_float_g(1e6, None, false), "1e+06");
        assert_eq!(format_float_g(123456789.0, None, false), "1.23456789e+08");
        assert_eq!(format_float_g(0.0001, None, false), "0.0001");
        assert_eq!(format_float_g(0.00001, None, false), "1e-05");
        assert_eq!(format_float_g(-2.25, None, false), "-2.25");
        assert_eq!(format_float_g(f64::NAN, None, false), "NaN");
        assert_eq!(format_float_g(1.23456, Some(3), false), "1.23");
    }

    /// Found by the `template` fuzz target: the width overflowed `usize` (a panic in debug
    /// builds, terabytes of padding in release ones).
    #[test]
    fn printf_crazy_width_is_a_missing_verb_as_in_go() {
        let s = |f: &str, a: Vec<Value<'_>>| sprintf(f, &a, &no_root);
        assert_eq!(
            s("a%33333333333333333333333d b", vec![Value::Int(1)]),
            "a%!(NOVERB)%!(EXTRA int=1)"
        );
        assert_eq!(
            s("%.99999999999f", vec![Value::Float(1.0)]),
            "%!(NOVERB)%!(EXTRA float64=1)"
        );
        assert_eq!(s("%8d|", vec![Value::Int(7)]), "       7|");
    }

    #[test]
    fn printf_verbs() {
        let s = |f: &str, a: Vec<Value<'_>>| sprintf(f, &a, &no_root);
        assert_eq!(s("%s-%d", vec![Value::str("a"), Value::Int(5)]), "a-5");
        assert_eq!(
            s(
                "%05d|%-4s|%4s",
                vec![Value::Int(-42), Value::str("ab"), Value::str("ab")]
            ),
            "-0042|ab  |  ab"
        );
        assert_eq!(
            s("%.2f %e", vec![Value::Float(1.23456), Value::Float(1500.0)]),
            "1.23 1.500000e+03"
        );
        assert_eq!(
            s(
                "%v %t %q",
                vec![Value::Float(2.0), Value::Bool(true), Value::str("x\"")]
            ),
            "2 true \"x\\\"\""
        );
        assert_eq!(s("%d", vec![Value::str("5")]), "%!d(string=5)");
        assert_eq!(s("%s %s", vec![Value::str("a")]), "a %!s(MISSING)");
        assert_eq!(
            s("%x %X %%", vec![Value::Int(255), Value::str("hi")]),
            "ff 6869 %"
        );
        assert_eq!(s("a", vec![Value::Int(1)]), "a%!(EXTRA int=1)");
        assert_eq!(s("%.3s", vec![Value::str("abcdef")]), "abc");
    }

    #[test]
    fn time_formats() {
        // 2024-02-29T13:04:05.123Z
        let ns = 1_709_211_845_123_000_000;
        assert_eq!(time_string(ns, 0), "2024-02-29 13:04:05.123 +0000 UTC");
        assert_eq!(
            format_time("2006-01-02T15:04:05.000Z07:00", ns, 0),
            "2024-02-29T13:04:05.123Z"
        );
        assert_eq!(format_time("Mon Jan _2 3:04PM", ns, 0), "Thu Feb 29 1:04PM");
        assert_eq!(format_time("15:04 -07:00", ns, 3600), "14:04 +01:00");
        assert_eq!(
            parse_time(
                "2006-01-02T15:04:05.000Z07:00",
                "2024-02-29T13:04:05.123Z",
                0
            )
            .unwrap(),
            (ns, 0)
        );
        assert_eq!(
            parse_time("2006-01-02 15:04:05 -0700", "2024-02-29 14:04:05 +0100", 0)
                .unwrap()
                .0,
            ns - 123_000_000
        );
        assert!(parse_time("2006-01-02", "2024-13-01", 0).is_err());
        assert!(parse_time("2006-01-02", "nope", 0).is_err());
        for d in [-1_000_000i64, 0, 19_000, 60_000] {
            let (y, m, dd) = civil_from_days(d);
            assert_eq!(days_from_civil(y, m, dd), d);
        }
    }
}
