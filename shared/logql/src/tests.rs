//! Crate-level tables: queries that must parse and round-trip, queries that must fail with
//! Loki's message, precedence and keyword cases, and a garbage-input fuzz loop.

use parquetry_model::{MatchOp, Matcher};

use crate::*;

/// Parses, prints, parses the print and checks the trees are equal and printing is stable.
fn round_trip(q: &str) -> Expr {
    let e = parse_expr(q).unwrap_or_else(|err| panic!("{q}\n  -> {err}"));
    let printed = e.to_string();
    let again = parse_expr(&printed)
        .unwrap_or_else(|err| panic!("{q}\n  printed as {printed}\n  -> {err}"));
    assert_eq!(e, again, "{q}\n  printed as {printed}");
    assert_eq!(printed, again.to_string(), "unstable print for {q}");
    // The pretty form must parse back to the same tree too.
    let pretty = format_query(q).unwrap_or_else(|err| panic!("{q}\n  -> {err}"));
    assert_eq!(
        parse_expr(&pretty).unwrap_or_else(|err| panic!("{pretty}\n  -> {err}")),
        e,
        "pretty form of {q}:\n{pretty}"
    );
    e
}

fn err(q: &str) -> String {
    match parse_expr(q) {
        Ok(e) => panic!("{q} parsed as {e}"),
        Err(e) => e.to_string(),
    }
}

fn m(name: &str, op: MatchOp, v: &str) -> Matcher {
    Matcher::new(name, op, v).unwrap()
}

fn log(q: &str) -> LogExpr {
    match parse_expr(q).unwrap_or_else(|e| panic!("{q}: {e}")) {
        Expr::Log(l) => l,
        e => panic!("{q} is not a log query: {e:?}"),
    }
}

fn sample(q: &str) -> SampleExpr {
    match parse_expr(q).unwrap_or_else(|e| panic!("{q}: {e}")) {
        Expr::Sample(s) => s,
        e => panic!("{q} is not a metric query: {e:?}"),
    }
}

const LOG_QUERIES: &[&str] = &[
    // Selectors.
    r#"{app="a"}"#,
    r#"{app="a",env="prod"}"#,
    r#"{ app = "a" , env != "dev" }"#,
    r#"{app=~"web.+"}"#,
    r#"{app=~"a|b", env!~"dev|test"}"#,
    r#"{app="a", env=""}"#,
    r#"{app=~".+", env=~".*"}"#,
    "{app=`a\\b`}",
    r#"{app="a\"b\\c\n\t"}"#,
    r#"{app="\x41\u00e9\101"}"#,
    r#"{app="日本語"}"#,
    r#"{__name__="x"}"#,
    r#"{_a1="x"}"#,
    // Function keywords are identifiers unless called.
    r#"{rate="x"}"#,
    r#"{sum="x", count="y", bytes="z", duration="d", vector="v", ip="1.2.3.4"}"#,
    r#"{count_over_time="x", label_replace="y", topk="z", sort_desc="s"}"#,
    r#"{RATE="x"}"#,
    // Comments.
    "{app=\"a\"} # trailing comment",
    "# leading comment\n{app=\"a\"}",
    "{app=\"a\", # inside\n env=\"b\"}",
    // Line filters.
    r#"{app="a"} |= "error""#,
    r#"{app="a"} != "debug""#,
    r#"{app="a"} |~ "err(or)?""#,
    r#"{app="a"} !~ "(?i)debug""#,
    r#"{app="a"} |= "a" |= "b" != "c" |~ "d" !~ "e""#,
    r#"{app="a"} |= "a" or "b""#,
    r#"{app="a"} |= "a" or "b" or "c" != "d" or "e""#,
    r#"{app="a"} |~ "a.*" or "b+""#,
    r#"{app="a"} |> "<_> error <_>""#,
    r#"{app="a"} !> "<_> debug <_>""#,
    r#"{app="a"} |> "<_> a" or "<_> b""#,
    r#"{app="a"} |= ip("10.0.0.0/8")"#,
    r#"{app="a"} != ip("192.168.0.1-192.168.0.10")"#,
    r#"{app="a"} |= ip("::1") or ip("2001:db8::/32")"#,
    r#"{app="a"} |= "x" or ip("1.2.3.4")"#,
    r#"{app="a"}|="x"!="y""#,
    "{app=\"a\"} |= `raw \\d string`",
    r#"{app="a"} |= """#,
    r#"({app="a"})"#,
    r#"(({app="a"} |= "x"))"#,
    r#"{app="a"} |= "a" OR "b""#,
    // Parsers.
    r#"{app="a"} | json"#,
    r#"{app="a"} | json a"#,
    r#"{app="a"} | json a="x.y", b="z[0]", c"#,
    r#"{app="a"} | json ua="request.headers[\"User-Agent\"]""#,
    r#"{app="a"} | logfmt"#,
    r#"{app="a"} | logfmt --strict"#,
    r#"{app="a"} | logfmt --keep-empty"#,
    r#"{app="a"} | logfmt --strict --keep-empty"#,
    r#"{app="a"} | logfmt --strict a, b="c""#,
    r#"{app="a"} | logfmt a"#,
    r#"{app="a"} | regexp "(?P<method>\\w+) (?P<path>\\S+)""#,
    r#"{app="a"} | regexp `(?P<x>.*)`"#,
    r#"{app="a"} | pattern "<ip> - <_> [<ts>] \"<method> <path>\"""#,
    r#"{app="a"} | unpack"#,
    r#"{app="a"} | JSON | LOGFMT | Unpack"#,
    // Label filters.
    r#"{app="a"} | json | level="error""#,
    r#"{app="a"} | json | level!="debug""#,
    r#"{app="a"} | json | level=~"err.*""#,
    r#"{app="a"} | json | level!~"debug|info""#,
    r#"{app="a"} | json | status >= 500"#,
    r#"{app="a"} | json | status > 400 and status < 500"#,
    r#"{app="a"} | json | status == 200"#,
    r#"{app="a"} | json | status = 200"#,
    r#"{app="a"} | json | status != 200"#,
    r#"{app="a"} | json | x <= -1.5"#,
    r#"{app="a"} | json | x > +2"#,
    r#"{app="a"} | json | x > 1e3"#,
    r#"{app="a"} | logfmt | latency > 250ms"#,
    r#"{app="a"} | logfmt | latency >= 1.5s"#,
    r#"{app="a"} | logfmt | latency < 1h30m"#,
    r#"{app="a"} | logfmt | latency < 300us"#,
    r#"{app="a"} | logfmt | latency == 2d"#,
    r#"{app="a"} | logfmt | size >= 20MB"#,
    r#"{app="a"} | logfmt | size < 1.5KiB"#,
    r#"{app="a"} | logfmt | size > 10B"#,
    r#"{app="a"} | logfmt | addr = ip("10.0.0.0/8")"#,
    r#"{app="a"} | logfmt | addr != ip("10.0.0.1")"#,
    r#"{app="a"} | logfmt | a="1", b="2""#,
    r#"{app="a"} | logfmt | a="1" b="2""#,
    r#"{app="a"} | logfmt | a="1" and b="2" or c="3""#,
    r#"{app="a"} | logfmt | a="1" or b="2" and c="3""#,
    r#"{app="a"} | logfmt | (a="1" or b="2") and c="3""#,
    r#"{app="a"} | logfmt | a="1" and (b="2" or c="3")"#,
    r#"{app="a"} | logfmt | ((a="1"))"#,
    r#"{app="a"} | logfmt | a="1" or b="2" or c="3""#,
    r#"{app="a"} | logfmt | a="1" and (b="2" and c="3")"#,
    r#"{app="a"} | logfmt | latency >= 250ms or ( status_code < 500 and status_code > 200)"#,
    r#"{app="a"} | json | __error__="""#,
    r#"{app="a"} | json | __error__!="JSONParserErr""#,
    r#"{app="a"} | logfmt | rate > 5"#,
    r#"{app="a"} | logfmt | count="x", sum="y""#,
    r#"{app="a"} | logfmt | bytes > 5KB"#,
    r#"{app="a"} | logfmt | duration > 5s"#,
    r#"{app="a"} | logfmt | ip = ip("1.2.3.4")"#,
    r#"{app="a"} | logfmt | x > 1 | y < 2"#,
    r#"{app="a"} | logfmt | x > 1 AND y > 2 OR z="1" "#,
    // Formatting.
    r#"{app="a"} | line_format "{{.msg}}""#,
    r#"{app="a"} | line_format `{{ .level | ToUpper }} {{.msg}}`"#,
    r#"{app="a"} | label_format a=b"#,
    r#"{app="a"} | label_format a="{{.b}}-x""#,
    r#"{app="a"} | label_format a=b, c="{{.d}}", e=f"#,
    r#"{app="a"} | drop a"#,
    r#"{app="a"} | drop a, b="v", c=~"re.*", d!="x", e!~"y""#,
    r#"{app="a"} | drop __error__, __error_details__"#,
    r#"{app="a"} | keep a, b"#,
    r#"{app="a"} | keep a, b="v""#,
    r#"{app="a"} | decolorize"#,
    r#"{app="a"} |= "x" | json | level="error" | line_format "{{.msg}}" | drop a | decolorize"#,
    "{app=\"a\"}\n  |= \"x\"\n  | logfmt\n  | level = \"error\"",
];

const METRIC_QUERIES: &[&str] = &[
    // Range aggregations, every function and placement.
    r#"count_over_time({app="a"}[5m])"#,
    r#"rate({app="a"}[1m])"#,
    r#"bytes_over_time({app="a"}[1h])"#,
    r#"bytes_rate({app="a"}[30s])"#,
    r#"absent_over_time({app="a"}[5m])"#,
    r#"rate({app="a"} | logfmt | unwrap x [1m])"#,
    r#"rate_counter({app="a"} | logfmt | unwrap x [1m])"#,
    r#"sum_over_time({app="a"} | logfmt | unwrap x [1m])"#,
    r#"avg_over_time({app="a"} | logfmt | unwrap x [1m])"#,
    r#"min_over_time({app="a"} | logfmt | unwrap x [1m])"#,
    r#"max_over_time({app="a"} | logfmt | unwrap x [1m])"#,
    r#"stddev_over_time({app="a"} | logfmt | unwrap x [1m])"#,
    r#"stdvar_over_time({app="a"} | logfmt | unwrap x [1m])"#,
    r#"first_over_time({app="a"} | logfmt | unwrap x [1m])"#,
    r#"last_over_time({app="a"} | logfmt | unwrap x [1m])"#,
    r#"quantile_over_time(0.99, {app="a"} | logfmt | unwrap x [1m])"#,
    r#"quantile_over_time(0.5, {app="a"} | logfmt | unwrap duration(x) [1m]) by (host)"#,
    r#"avg_over_time({app="a"} | logfmt | unwrap bytes(size) [1m]) without (pod)"#,
    r#"max_over_time({app="a"} | logfmt | unwrap duration_seconds(x) [1m]) by ()"#,
    r#"absent_over_time({app="a"} | logfmt | unwrap x [1m])"#,
    r#"count_over_time({app="a"} |= "x" [5m])"#,
    r#"count_over_time({app="a"}[5m] |= "x")"#,
    r#"count_over_time(({app="a"} |= "x")[5m])"#,
    r#"count_over_time(({app="a"})[5m])"#,
    r#"count_over_time(({app="a"}[5m]))"#,
    r#"count_over_time((({app="a"} | json [5m])))"#,
    r#"count_over_time({app="a"}[5m] offset 1h)"#,
    r#"count_over_time({app="a"}[5m] offset -1m)"#,
    r#"count_over_time({app="a"} | json [5m] offset 1h)"#,
    r#"count_over_time({app="a"}[5m] offset 1h | json)"#,
    r#"count_over_time(({app="a"} | json)[5m] offset 1.5h)"#,
    r#"sum_over_time({app="a"} | logfmt | unwrap x [5m] offset 1h)"#,
    r#"sum_over_time({app="a"}[5m] offset 1h | logfmt | unwrap x)"#,
    r#"sum_over_time({app="a"}[5m] | logfmt | unwrap x)"#,
    r#"sum_over_time({app="a"} | unwrap x [5m])"#,
    r#"sum_over_time(({app="a"} | logfmt | unwrap x)[5m])"#,
    r#"sum_over_time({app="a"} | logfmt | unwrap x | __error__="" [5m])"#,
    r#"sum_over_time({app="a"} | logfmt | unwrap x | __error__="" | x > 1 [5m])"#,
    r#"sum_over_time({app="a"} | logfmt | unwrap latency | latency > 1s or latency < 1ms [5m])"#,
    r#"count_over_time({app="a"} | drop __error__[1m])"#,
    r#"count_over_time({app="a"}[1h30m])"#,
    r#"count_over_time({app="a"}[2d])"#,
    r#"count_over_time({app="a"}[500ms])"#,
    r#"count_over_time({app="a"}[1w])"#,
    r#"count_over_time({app="a"}[0s])"#,
    r#"COUNT_OVER_TIME({app="a"}[5m])"#,
    r#"rate ( {app="a"} [5m] )"#,
    // Vector aggregations.
    r#"sum(rate({app="a"}[1m]))"#,
    r#"sum by (host) (rate({app="a"}[1m]))"#,
    r#"sum(rate({app="a"}[1m])) by (host)"#,
    r#"sum without (host) (rate({app="a"}[1m]))"#,
    r#"sum(rate({app="a"}[1m])) without (host, pod)"#,
    r#"sum by () (rate({app="a"}[1m]))"#,
    r#"sum(rate({app="a"}[1m])) by ()"#,
    r#"avg(rate({app="a"}[1m]))"#,
    r#"min(rate({app="a"}[1m]))"#,
    r#"max(rate({app="a"}[1m]))"#,
    r#"count(rate({app="a"}[1m]))"#,
    r#"stddev(rate({app="a"}[1m]))"#,
    r#"stdvar(rate({app="a"}[1m]))"#,
    r#"topk(5, rate({app="a"}[1m]))"#,
    r#"bottomk(3, rate({app="a"}[1m])) by (host)"#,
    r#"topk by (host) (2, rate({app="a"}[1m]))"#,
    r#"sort(rate({app="a"}[1m]))"#,
    r#"sort_desc(sum by (a) (rate({app="a"}[1m])))"#,
    r#"approx_topk(10, rate({app="a"}[1m]))"#,
    r#"sum by (count) (count_over_time({app="a"}[1m]))"#,
    r#"sum by (rate, sum, bytes) (count_over_time({app="a"}[1m]))"#,
    r#"SUM BY (a) (rate({app="a"}[1m]))"#,
    r#"sum by (level, detected_level) (count_over_time({app="a"} | drop __error__[1m]))"#,
    r#"max(sum by (a) (rate({app="a"}[1m])))"#,
    r#"sum(sum(sum(rate({app="a"}[1m]))))"#,
    // Binary operators.
    r#"sum(rate({app="a"}[1m])) * 100"#,
    r#"100 * sum(rate({app="a"}[1m]))"#,
    r#"sum(rate({app="a"}[1m])) / sum(rate({app="b"}[1m]))"#,
    r#"rate({app="a"}[1m]) + rate({app="b"}[1m]) * 2"#,
    r#"(rate({app="a"}[1m]) + rate({app="b"}[1m])) * 2"#,
    r#"rate({app="a"}[1m]) - rate({app="b"}[1m]) - rate({app="c"}[1m])"#,
    r#"rate({app="a"}[1m]) - (rate({app="b"}[1m]) - rate({app="c"}[1m]))"#,
    r#"rate({app="a"}[1m]) ^ 2 ^ 3"#,
    r#"(rate({app="a"}[1m]) ^ 2) ^ 3"#,
    r#"rate({app="a"}[1m]) % 7"#,
    r#"rate({app="a"}[1m]) > 1"#,
    r#"rate({app="a"}[1m]) >= 1"#,
    r#"rate({app="a"}[1m]) < 1"#,
    r#"rate({app="a"}[1m]) <= 1"#,
    r#"rate({app="a"}[1m]) == 1"#,
    r#"rate({app="a"}[1m]) != 1"#,
    r#"rate({app="a"}[1m]) > bool 1"#,
    r#"1 < bool rate({app="a"}[1m])"#,
    r#"rate({app="a"}[1m]) and rate({app="b"}[1m])"#,
    r#"rate({app="a"}[1m]) or rate({app="b"}[1m])"#,
    r#"rate({app="a"}[1m]) unless rate({app="b"}[1m])"#,
    r#"rate({app="a"}[1m]) or rate({app="b"}[1m]) and rate({app="c"}[1m])"#,
    r#"rate({app="a"}[1m]) and on (host) rate({app="b"}[1m])"#,
    r#"rate({app="a"}[1m]) unless ignoring (pod) rate({app="b"}[1m])"#,
    r#"rate({app="a"}[1m]) * on (host) group_left rate({app="b"}[1m])"#,
    r#"rate({app="a"}[1m]) * on (host) group_left (pod, ns) rate({app="b"}[1m])"#,
    r#"rate({app="a"}[1m]) * ignoring (pod) group_right () rate({app="b"}[1m])"#,
    r#"rate({app="a"}[1m]) * on () rate({app="b"}[1m])"#,
    r#"rate({app="a"}[1m]) * on (host) group_left () (rate({app="b"}[1m]) + 1)"#,
    r#"rate({app="a"}[1m]) > bool on (host) rate({app="b"}[1m])"#,
    r#"count_over_time({app="a"}[1m]) or vector(0)"#,
    r#"sum(count_over_time({app="a"}[1m])) / sum(count_over_time({app="a"}[1m] offset 1d)) - 1"#,
    r#"-1 * rate({app="a"}[1m])"#,
    r#"rate({app="a"}[1m]) - -1"#,
    r#"-2 ^ rate({app="a"}[1m])"#,
    r#"rate({app="a"}[1m]) * (2 + 3)"#,
    r#"rate({app="a"}[1m])*2"#,
    // Literals, vector(), label_replace.
    "1",
    "1.5",
    "-1",
    "+1",
    ".5",
    "1e3",
    "2.5e-3",
    "1 + 2",
    "2 * 3 + 4",
    "2 ^ 3 ^ 2",
    "10 / 4",
    "1 > 2",
    "2 > bool 1",
    "1 + 2 > 2",
    "1e999",
    "vector(1)",
    "vector(0.5) * 2",
    "(((vector(1))))",
    "vector(1) + vector(2)",
    r#"label_replace(rate({app="a"}[1m]), "dst", "$1", "src", "(.*)")"#,
    r#"label_replace(sum by (a) (rate({app="a"}[1m])), "b", "x-$1", "a", "a-(.+)")"#,
    r#"label_replace(vector(1), "x", "y", "", "")"#,
    // Line breaks and comments inside metric queries.
    "sum by (a) (\n  rate({app=\"a\"} # c\n  [5m])\n)",
];

#[test]
fn round_trips() {
    let n = LOG_QUERIES.len() + METRIC_QUERIES.len();
    assert!(n >= 150, "only {n} cases");
    for q in LOG_QUERIES {
        assert!(matches!(round_trip(q), Expr::Log(_)), "{q}");
    }
    for q in METRIC_QUERIES {
        assert!(matches!(round_trip(q), Expr::Sample(_)), "{q}");
    }
}

const EMPTY: &str = "parse error : queries require at least one regexp or equality matcher that does not have an empty-compatible value. For instance, app=~\".*\" does not meet this requirement, but app=~\".+\" will";

/// (query, exact `Display` of the error).
const FAILURES: &[(&str, &str)] = &[
    // Empty-compatible selectors.
    ("{}", EMPTY),
    (r#"{app=~".*"}"#, EMPTY),
    (r#"{app=""}"#, EMPTY),
    (r#"{app!="x"}"#, EMPTY),
    (r#"{app!~"x", b=""}"#, EMPTY),
    (r#"rate({app=~".*"}[5m])"#, EMPTY),
    (
        r#"sum(rate({app="a"}[5m])) + sum(rate({app=""}[5m]))"#,
        EMPTY,
    ),
    // Selector syntax.
    (
        "foo",
        "parse error at line 1, col 1: syntax error: unexpected IDENTIFIER",
    ),
    (
        "",
        "parse error at line 1, col 1: syntax error: unexpected $end",
    ),
    (
        r#"{foo="bar""#,
        "parse error at line 1, col 11: syntax error: unexpected $end, expecting } or ,",
    ),
    (
        r#"{foo="bar}"#,
        "parse error at line 1, col 6: literal not terminated",
    ),
    (
        r#"{foo="bar"} |~"#,
        "parse error at line 1, col 15: syntax error: unexpected $end, expecting STRING or ip",
    ),
    (
        r#"{foo="bar"} |= ident"#,
        "parse error at line 1, col 16: syntax error: unexpected IDENTIFIER, expecting STRING or ip",
    ),
    (
        r#"{a b="c"}"#,
        "parse error at line 1, col 4: syntax error: unexpected IDENTIFIER, expecting = or =~ or !~ or !=",
    ),
    (
        r#"{a="b",}"#,
        "parse error at line 1, col 8: syntax error: unexpected }, expecting IDENTIFIER",
    ),
    (
        r#"{a=b}"#,
        "parse error at line 1, col 4: syntax error: unexpected IDENTIFIER, expecting STRING",
    ),
    (
        r#"{by="x"}"#,
        "parse error at line 1, col 2: syntax error: unexpected by, expecting IDENTIFIER or }",
    ),
    (
        r#"{json="x"}"#,
        "parse error at line 1, col 2: syntax error: unexpected json, expecting IDENTIFIER or }",
    ),
    (
        r#"{a="b"} foo"#,
        "parse error at line 1, col 9: syntax error: unexpected IDENTIFIER",
    ),
    (
        "{a=\"b\"}\n  |= \"x\"\n  | foo bar",
        "parse error at line 3, col 9: syntax error: unexpected IDENTIFIER",
    ),
    (
        "{a=\"b\"}\n  | json |",
        "parse error at line 2, col 11: syntax error: unexpected $end",
    ),
    (
        "{a=\"b\"}\u{a0}",
        "parse error at line 1, col 8: syntax error: unexpected IDENTIFIER",
    ),
    (
        r#"{a="\q"}"#,
        "parse error at line 1, col 4: invalid char escape",
    ),
    (
        r#"{a="\xff"}"#,
        "parse error at line 1, col 4: invalid UTF-8 rune",
    ),
    (
        "{a=`b}",
        "parse error at line 1, col 4: literal not terminated",
    ),
    (
        r#"{a=~"("}"#,
        "parse error : error parsing regexp: missing closing ): `(`",
    ),
    // Ranges.
    (
        r#"min({ foo = "bar" }[5m])"#,
        "parse error at line 0, col 20: syntax error: unexpected RANGE",
    ),
    (
        r#"{ foo = "bar" }[5m]"#,
        "parse error at line 0, col 16: syntax error: unexpected RANGE",
    ),
    (
        r#"rate({ foo = "bar" }[5)"#,
        "parse error at line 0, col 21: missing closing ']' in duration",
    ),
    (
        r#"rate({app="a"}[5minutes])"#,
        r#"parse error at line 0, col 15: unknown unit "minutes" in duration "5minutes""#,
    ),
    (
        r#"rate({app="a"}[1.5h])"#,
        r#"parse error at line 0, col 15: not a valid duration string: "1.5h""#,
    ),
    (
        r#"rate({app="a"})"#,
        "parse error at line 1, col 15: syntax error: unexpected )",
    ),
    (
        r#"rate({app="a"}[5m] | json [5m])"#,
        "parse error at line 0, col 27: syntax error: unexpected RANGE",
    ),
    (
        r#"rate({app="a"}[5m] offset 5)"#,
        "parse error at line 1, col 27: syntax error: unexpected NUMBER, expecting DURATION",
    ),
    (
        r#"rate(({app="a"}) | json [5m])"#,
        "parse error at line 1, col 18: syntax error: unexpected |, expecting RANGE",
    ),
    // Range aggregation rules.
    (
        r#"count_over_time({app="a"} | logfmt | unwrap x [5m])"#,
        "parse error : invalid aggregation count_over_time with unwrap",
    ),
    (
        r#"bytes_rate({app="a"} | logfmt | unwrap x [5m])"#,
        "parse error : invalid aggregation bytes_rate with unwrap",
    ),
    (
        r#"sum_over_time({app="a"}[5m])"#,
        "parse error : invalid aggregation sum_over_time without unwrap",
    ),
    (
        r#"rate_counter({app="a"}[5m])"#,
        "parse error : invalid aggregation rate_counter without unwrap",
    ),
    (
        r#"avg_over_time({app="a"}[5m])"#,
        "parse error : invalid aggregation avg_over_time without unwrap",
    ),
    (
        r#"count_over_time({app="a"}[5m]) by (x)"#,
        "parse error : grouping not allowed for count_over_time aggregation",
    ),
    (
        r#"rate({app="a"}[5m]) by (x)"#,
        "parse error : grouping not allowed for rate aggregation",
    ),
    (
        r#"sum_over_time({app="a"} | unwrap x [5m]) by (x)"#,
        "parse error : grouping not allowed for sum_over_time aggregation",
    ),
    (
        r#"quantile_over_time({app="a"} | unwrap x [5m])"#,
        "parse error : parameter required for operation quantile_over_time",
    ),
    (
        r#"rate(5, {app="a"}[5m])"#,
        "parse error : parameter 5 not supported for operation rate",
    ),
    (
        r#"count_over_time by (a) ({app="a"}[5m])"#,
        "parse error at line 1, col 17: syntax error: unexpected by, expecting (",
    ),
    // Vector aggregation rules.
    (
        r#"sum(3 ,count_over_time({ foo !~ "bar" }[5h]))"#,
        "parse error : unsupported parameter for operation sum(3,",
    ),
    (
        r#"topk(rate({app="a"}[5m]))"#,
        "parse error : parameter required for operation topk",
    ),
    (
        r#"topk(1.5, rate({app="a"}[5m]))"#,
        "parse error : invalid parameter topk(1.5,",
    ),
    (
        r#"bottomk(0, rate({app="a"}[5m]))"#,
        "parse error : invalid parameter (must be greater than 0) bottomk(0",
    ),
    (
        r#"sort by (a) (rate({app="a"}[5m]))"#,
        "parse error : sort and sort_desc doesn't allow grouping by ",
    ),
    (
        r#"sort_desc(rate({app="a"}[5m])) by (a)"#,
        "parse error : sort and sort_desc doesn't allow grouping by ",
    ),
    (
        r#"approx_topk(5, rate({app="a"}[5m])) by (a)"#,
        "parse error : grouping not allowed for approx_topk aggregation",
    ),
    (
        r#"sum by (a) (rate({app="a"}[5m])) by (b)"#,
        "parse error at line 1, col 34: syntax error: unexpected by",
    ),
    (
        r#"sum({app="a"})"#,
        "parse error at line 1, col 14: syntax error: unexpected )",
    ),
    (
        r#"sum by (a b) (rate({app="a"}[5m]))"#,
        "parse error at line 1, col 11: syntax error: unexpected IDENTIFIER, expecting , or )",
    ),
    (
        r#"sum by (a) rate({app="a"}[5m])"#,
        "parse error at line 1, col 12: syntax error: unexpected RATE, expecting (",
    ),
    (
        r#"sum by (a) x"#,
        "parse error at line 1, col 12: syntax error: unexpected IDENTIFIER, expecting (",
    ),
    // Binary operators.
    (
        r#"1 and rate({app="a"}[5m])"#,
        "parse error : unexpected literal for left leg of logical/set binary operation (and): 1.000000",
    ),
    (
        r#"rate({app="a"}[5m]) unless 2"#,
        "parse error : unexpected literal for right leg of logical/set binary operation (unless): 2.000000",
    ),
    (
        r#"{app="a"} + 1"#,
        "parse error : unexpected type for left leg of binary operation (+): *syntax.MatchersExpr",
    ),
    (
        r#"1 + {app="a"} |= "x""#,
        "parse error : unexpected type for right leg of binary operation (+): *syntax.PipelineExpr",
    ),
    (
        r#"rate({app="a"}[5m]) + bool 1"#,
        "parse error : bool modifier can only be used on comparison operators",
    ),
    (
        r#"rate({app="a"}[5m]) and on (a) group_left rate({app="b"}[5m])"#,
        "parse error : no grouping allowed for \"and\" operation",
    ),
    (
        r#"rate({app="a"}[5m]) +"#,
        "parse error at line 1, col 22: syntax error: unexpected $end",
    ),
    (
        "-vector(1)",
        "parse error at line 1, col 2: syntax error: unexpected VECTOR, expecting NUMBER",
    ),
    (
        "1m",
        "parse error at line 0, col 1: syntax error: unexpected DURATION",
    ),
    // Pipelines.
    (
        r#"{app="a"} | unwrap x"#,
        "parse error at line 1, col 13: syntax error: unexpected unwrap",
    ),
    (
        r#"{app="a"} | json | x > "s""#,
        "parse error at line 1, col 24: syntax error: unexpected STRING",
    ),
    (
        r#"{app="a"} | logfmt | x =~ 5"#,
        "parse error at line 1, col 27: syntax error: unexpected NUMBER, expecting STRING",
    ),
    (
        r#"{app="a"} | label_format x"#,
        "parse error at line 1, col 27: syntax error: unexpected $end, expecting =",
    ),
    (
        r#"{app="a"} | label_format x="a","#,
        "parse error at line 1, col 32: syntax error: unexpected $end, expecting IDENTIFIER",
    ),
    (
        r#"{app="a"} | label_format a=b, a="{{.c}}""#,
        r#"parse error : stage '| label_format a=b,a="{{.c}}"' : multiple label name 'a' not allowed in a single format operation"#,
    ),
    (
        r#"{app="a"} | drop"#,
        "parse error at line 1, col 17: syntax error: unexpected $end, expecting IDENTIFIER",
    ),
    (
        r#"{app="a"} | regexp "(.*)""#,
        "parse error : invalid regexp parser: at least one named capture must be supplied",
    ),
    (
        r#"{app="a"} | regexp "abc""#,
        "parse error : invalid regexp parser: at least one named capture must be supplied",
    ),
    (
        r#"{app="a"} | pattern "<_> foo""#,
        "parse error : invalid pattern parser: at least one capture is required",
    ),
    (
        r#"{app="a"} | pattern "<a><b>""#,
        "parse error : invalid pattern parser: found consecutive capture 'b': invalid expression",
    ),
    (
        r#"{app="a"} |> "<a> foo""#,
        r#"parse error : stage '|> "<a> foo"' : named captures are not allowed: found '<a>'"#,
    ),
    (
        r#"{app="a"} |~ "(""#,
        r#"parse error : stage '|~ "("' : error parsing regexp: missing closing ): `(`"#,
    ),
    (
        r#"{app="a"} |= ip("foo")"#,
        r#"parse error : stage '|= ip("foo")' : ip: invalid pattern: "foo""#,
    ),
    (
        r#"{app="a"} |~ ip("1.2.3.4")"#,
        "parse error : ip: invalid operation |~: only |= and != are allowed",
    ),
    (
        r#"{app="a"} | logfmt | x = ip("1.2.3.4/99")"#,
        r#"parse error : ip: invalid pattern: "1.2.3.4/99""#,
    ),
    (
        r#"{app="a"} | json | by="x""#,
        "parse error at line 1, col 20: syntax error: unexpected by",
    ),
    (
        r#"{app="a"} |= "x" or"#,
        "parse error at line 1, col 20: syntax error: unexpected $end, expecting STRING or ip",
    ),
    (
        r#"sum_over_time({app="a"} | unwrap [5m])"#,
        "parse error at line 0, col 34: syntax error: unexpected RANGE, expecting IDENTIFIER or bytes or duration or duration_seconds",
    ),
    (
        r#"sum_over_time({app="a"} | unwrap x | json [5m])"#,
        "parse error at line 1, col 38: syntax error: unexpected json, expecting IDENTIFIER or (",
    ),
    // label_replace.
    (
        r#"label_replace(rate({app="a"}[5m]), "dst", "x", "src", "(")"#,
        "parse error : invalid regex in label_replace: error parsing regexp: missing closing ): `^(?:()$`",
    ),
    (
        r#"label_replace(rate({app="a"}[5m]), "1dst", "x", "src", "a")"#,
        "parse error : invalid destination label name in label_replace: 1dst",
    ),
    (
        r#"label_replace(rate({app="a"}[5m]), "dst", "x", "src")"#,
        "parse error at line 1, col 53: syntax error: unexpected ), expecting ,",
    ),
];

#[test]
fn failures() {
    assert!(FAILURES.len() >= 40, "only {} cases", FAILURES.len());
    for (q, want) in FAILURES {
        assert_eq!(&err(q), want, "query: {q}");
    }
}

#[test]
fn size_limit() {
    let q = format!(r#"{{app="a"}} |= "{}""#, "x".repeat(MAX_QUERY_SIZE));
    assert_eq!(
        err(&q),
        format!("parse error : input size too long ({} > 131072)", q.len())
    );
    // 131072 bytes exactly is already too long; one less is fine.
    let base = r#"{app="a"} |= """#;
    let fill = MAX_QUERY_SIZE - base.len();
    let exact = format!(r#"{{app="a"}} |= "{}""#, "x".repeat(fill));
    assert_eq!(exact.len(), MAX_QUERY_SIZE);
    assert!(parse_expr(&exact).is_err());
    let below = format!(r#"{{app="a"}} |= "{}""#, "x".repeat(fill - 1));
    assert!(parse_expr(&below).is_ok());
    assert!(parse_selector(&format!("{{a=\"{}\"}}", "x".repeat(MAX_QUERY_SIZE))).is_err());
}

#[test]
fn selector_entry_point() {
    assert_eq!(
        parse_selector(r#"{app="a", env=~"p.*"}"#).unwrap(),
        vec![m("app", MatchOp::Eq, "a"), m("env", MatchOp::Re, "p.*")]
    );
    // Empty-compatible matchers are the caller's business here.
    assert_eq!(parse_selector("{}").unwrap(), vec![]);
    assert_eq!(
        parse_selector(r#" {app=~".*"} # c"#).unwrap(),
        vec![m("app", MatchOp::Re, ".*")]
    );
    assert_eq!(
        parse_selector(r#"{app="a"} |= "x""#)
            .unwrap_err()
            .to_string(),
        "parse error at line 0, col 11: syntax error: unexpected |="
    );
    assert_eq!(
        parse_selector("app").unwrap_err().to_string(),
        "parse error at line 1, col 1: syntax error: unexpected IDENTIFIER, expecting {"
    );
    assert!(parse_selector(r#"{a=~"("}"#).is_err());
}

#[test]
fn log_query_shapes() {
    let l = log(r#"{app="a", env!~"dev"} |= "x" or "y" != ip("10.0.0.0/8") |> "<_> z""#);
    assert_eq!(
        l.selector,
        vec![m("app", MatchOp::Eq, "a"), m("env", MatchOp::Nre, "dev")]
    );
    assert_eq!(
        l.pipeline,
        vec![
            Stage::LineFilter(LineFilter {
                op: LineFilterOp::Contains,
                values: vec![
                    LineFilterValue::Str("x".into()),
                    LineFilterValue::Str("y".into())
                ],
            }),
            Stage::LineFilter(LineFilter {
                op: LineFilterOp::NotContains,
                values: vec![LineFilterValue::Ip("10.0.0.0/8".into())],
            }),
            Stage::LineFilter(LineFilter {
                op: LineFilterOp::Pattern,
                values: vec![LineFilterValue::Str("<_> z".into())],
            }),
        ]
    );
    assert_eq!(
        log(r#"({app="a"} |~ "x")"#).pipeline,
        vec![Stage::LineFilter(LineFilter {
            op: LineFilterOp::Regex,
            values: vec![LineFilterValue::Str("x".into())],
        })]
    );
    // Raw strings keep backslashes; quoted strings decode escapes.
    assert_eq!(
        log(r#"{app="a"} |= `\d` |= "\\d""#).pipeline,
        vec![
            Stage::LineFilter(LineFilter {
                op: LineFilterOp::Contains,
                values: vec![LineFilterValue::Str(r"\d".into())],
            }),
            Stage::LineFilter(LineFilter {
                op: LineFilterOp::Contains,
                values: vec![LineFilterValue::Str(r"\d".into())],
            }),
        ]
    );
}

#[test]
fn pipeline_stage_shapes() {
    let l = log(
        r#"{app="a"} | json a="b.c", d | logfmt --keep-empty e | label_format x=y, z="{{.q}}" | keep f, g="h" | unpack"#,
    );
    assert_eq!(
        l.pipeline,
        vec![
            Stage::Json(vec![
                LabelExtraction {
                    name: "a".into(),
                    expression: Some("b.c".into())
                },
                LabelExtraction {
                    name: "d".into(),
                    expression: None
                },
            ]),
            Stage::Logfmt(LogfmtParser {
                strict: false,
                keep_empty: true,
                extractions: vec![LabelExtraction {
                    name: "e".into(),
                    expression: None
                }],
            }),
            Stage::LabelFormat(vec![
                LabelFormat::Rename {
                    dst: "x".into(),
                    src: "y".into()
                },
                LabelFormat::Template {
                    dst: "z".into(),
                    template: "{{.q}}".into()
                },
            ]),
            Stage::Keep(vec![
                LabelRef::Name("f".into()),
                LabelRef::Matcher(m("g", MatchOp::Eq, "h")),
            ]),
            Stage::Unpack,
        ]
    );
}

fn filter(q: &str) -> LabelFilter {
    let l = log(&format!(r#"{{app="a"}} | {q}"#));
    match l.pipeline.as_slice() {
        [Stage::LabelFilter(f)] => f.clone(),
        p => panic!("{q}: {p:?}"),
    }
}

fn num(name: &str, op: CmpOp, value: f64) -> LabelFilter {
    LabelFilter::Number {
        name: name.into(),
        op,
        value,
    }
}

fn and(a: LabelFilter, b: LabelFilter) -> LabelFilter {
    LabelFilter::And(Box::new(a), Box::new(b))
}

fn or(a: LabelFilter, b: LabelFilter) -> LabelFilter {
    LabelFilter::Or(Box::new(a), Box::new(b))
}

#[test]
fn label_filter_precedence() {
    let (a, b, c) = (
        num("a", CmpOp::Gt, 1.0),
        num("b", CmpOp::Gt, 2.0),
        num("c", CmpOp::Gt, 3.0),
    );
    assert_eq!(
        filter("a > 1 and b > 2 or c > 3"),
        or(and(a.clone(), b.clone()), c.clone())
    );
    assert_eq!(
        filter("a > 1 or b > 2 and c > 3"),
        or(a.clone(), and(b.clone(), c.clone()))
    );
    assert_eq!(
        filter("a > 1 or b > 2, c > 3"),
        or(a.clone(), and(b.clone(), c.clone()))
    );
    assert_eq!(
        filter("a > 1 or b > 2 c > 3"),
        or(a.clone(), and(b.clone(), c.clone()))
    );
    assert_eq!(
        filter("(a > 1 or b > 2) c > 3"),
        and(or(a.clone(), b.clone()), c.clone())
    );
    assert_eq!(
        filter("a > 1 and b > 2 and c > 3"),
        and(and(a.clone(), b.clone()), c.clone())
    );
    assert_eq!(filter("x == -2"), num("x", CmpOp::Eq, -2.0));
    assert_eq!(filter("x = 2"), num("x", CmpOp::Eq, 2.0));
    assert_eq!(
        filter("x < 1m"),
        LabelFilter::Duration {
            name: "x".into(),
            op: CmpOp::Lt,
            value: 60_000_000_000
        }
    );
    assert_eq!(
        filter("x >= 1KB"),
        LabelFilter::Bytes {
            name: "x".into(),
            op: CmpOp::Gte,
            value: 1000
        }
    );
    assert_eq!(
        filter("x >= 1KiB"),
        LabelFilter::Bytes {
            name: "x".into(),
            op: CmpOp::Gte,
            value: 1024
        }
    );
    assert_eq!(
        filter(r#"x != ip("1.2.3.4")"#),
        LabelFilter::Ip {
            name: "x".into(),
            negated: true,
            pattern: "1.2.3.4".into()
        }
    );
    assert_eq!(
        filter(r#"x =~ "a.*""#),
        LabelFilter::Matcher(m("x", MatchOp::Re, "a.*"))
    );
}

fn lit(v: f64) -> SampleExpr {
    SampleExpr::Literal(v)
}

fn bin(op: BinOp, l: SampleExpr, r: SampleExpr) -> SampleExpr {
    SampleExpr::BinOp(BinOpExpr {
        op,
        return_bool: false,
        matching: None,
        lhs: Box::new(l),
        rhs: Box::new(r),
    })
}

#[test]
fn binary_precedence_and_folding() {
    let v = |n: f64| SampleExpr::Vector(n);
    assert_eq!(
        sample("vector(1) + vector(2) * vector(3)"),
        bin(BinOp::Add, v(1.0), bin(BinOp::Mul, v(2.0), v(3.0)))
    );
    assert_eq!(
        sample("vector(1) - vector(2) - vector(3)"),
        bin(BinOp::Sub, bin(BinOp::Sub, v(1.0), v(2.0)), v(3.0))
    );
    assert_eq!(
        sample("vector(1) ^ vector(2) ^ vector(3)"),
        bin(BinOp::Pow, v(1.0), bin(BinOp::Pow, v(2.0), v(3.0)))
    );
    assert_eq!(
        sample("vector(1) or vector(2) and vector(3) > vector(4) + vector(5)"),
        bin(
            BinOp::Or,
            v(1.0),
            bin(
                BinOp::And,
                v(2.0),
                bin(BinOp::Gt, v(3.0), bin(BinOp::Add, v(4.0), v(5.0)))
            )
        )
    );
    assert_eq!(
        sample("vector(1) unless vector(2) and vector(3)"),
        bin(BinOp::And, bin(BinOp::Unless, v(1.0), v(2.0)), v(3.0))
    );
    assert_eq!(
        sample("vector(1) == vector(2) != vector(3)"),
        bin(BinOp::Neq, bin(BinOp::Eq, v(1.0), v(2.0)), v(3.0))
    );
    // Literal folding.
    assert_eq!(sample("1 + 2 * 3"), lit(7.0));
    assert_eq!(sample("2 ^ 3 ^ 2"), lit(512.0));
    assert_eq!(sample("(2 ^ 3) ^ 2"), lit(64.0));
    assert_eq!(sample("1 > 2"), lit(0.0));
    assert_eq!(sample("2 > 1"), lit(1.0));
    assert_eq!(sample("2 >= bool 3"), lit(0.0));
    assert_eq!(sample("1 == 1"), lit(1.0));
    assert_eq!(sample("7 % 4"), lit(3.0));
    assert_eq!(sample("-7 % 4"), lit(-3.0));
    assert_eq!(sample("-2 ^ 2"), lit(4.0));
    assert_eq!(sample("1 - -1"), lit(2.0));
    assert!(matches!(sample("1 / 0"), SampleExpr::Literal(x) if x.is_nan()));
    assert!(matches!(sample("1 % 0"), SampleExpr::Literal(x) if x.is_nan()));
    assert_eq!(sample("1e999"), lit(f64::INFINITY));
    // Folding stops at non-literals.
    assert_eq!(
        sample("vector(1) * 2 * 3"),
        bin(BinOp::Mul, bin(BinOp::Mul, v(1.0), lit(2.0)), lit(3.0))
    );
    assert_eq!(
        sample("vector(1) * (2 * 3)"),
        bin(BinOp::Mul, v(1.0), lit(6.0))
    );
    // NaN prints as a foldable expression.
    assert_eq!(
        sample("vector(1) + 0 / 0").to_string(),
        "vector(1) + (0 / 0)"
    );
}

#[test]
fn modifiers() {
    let SampleExpr::BinOp(b) =
        sample(r#"rate({app="a"}[1m]) > bool ignoring (a, b) group_right (c) rate({app="b"}[1m])"#)
    else {
        panic!()
    };
    assert!(b.return_bool);
    assert_eq!(
        b.matching,
        Some(VectorMatching {
            on: false,
            labels: vec!["a".into(), "b".into()],
            group: Some(GroupModifier::Right(vec!["c".into()])),
        })
    );
    let SampleExpr::BinOp(b) =
        sample(r#"rate({app="a"}[1m]) * on (a) group_left rate({app="b"}[1m])"#)
    else {
        panic!()
    };
    assert_eq!(
        b.matching,
        Some(VectorMatching {
            on: true,
            labels: vec!["a".into()],
            group: Some(GroupModifier::Left(vec![])),
        })
    );
}

#[test]
fn range_shapes() {
    let forms = [
        r#"sum_over_time({app="a"} | logfmt | unwrap x [5m] offset 1h)"#,
        r#"sum_over_time({app="a"}[5m] offset 1h | logfmt | unwrap x)"#,
        r#"sum_over_time(({app="a"} | logfmt | unwrap x)[5m] offset 1h)"#,
        r#"sum_over_time(({app="a"} | logfmt | unwrap x [5m] offset 1h))"#,
    ];
    let first = sample(forms[0]);
    for f in forms {
        assert_eq!(sample(f), first, "{f}");
    }
    let SampleExpr::RangeAggregation(r) = first else {
        panic!()
    };
    assert_eq!(r.op, RangeOp::SumOverTime);
    assert_eq!(r.range.range, 300_000_000_000);
    assert_eq!(r.range.offset, 3_600_000_000_000);
    assert_eq!(r.range.log.selector, vec![m("app", MatchOp::Eq, "a")]);
    assert_eq!(
        r.range.log.pipeline,
        vec![Stage::Logfmt(LogfmtParser::default())]
    );
    assert_eq!(
        r.range.unwrap,
        Some(Unwrap {
            label: "x".into(),
            conversion: None,
            post_filters: vec![],
        })
    );
    let SampleExpr::RangeAggregation(r) = sample(
        r#"quantile_over_time(0.9, {app="a"} | unwrap duration(d) | __error__="" [1m]) by (h)"#,
    ) else {
        panic!()
    };
    assert_eq!(r.param, Some(0.9));
    assert_eq!(
        r.grouping,
        Some(Grouping {
            without: false,
            labels: vec!["h".into()]
        })
    );
    let u = r.range.unwrap.unwrap();
    assert_eq!(u.conversion, Some(UnwrapConversion::Duration));
    assert_eq!(
        u.post_filters,
        vec![LabelFilter::Matcher(m("__error__", MatchOp::Eq, ""))]
    );
    // `bytes` is the conversion only when called; otherwise it is the label name.
    let SampleExpr::RangeAggregation(r) = sample(r#"sum_over_time({app="a"} | unwrap bytes [1m])"#)
    else {
        panic!()
    };
    let u = r.range.unwrap.unwrap();
    assert_eq!((u.label.as_str(), u.conversion), ("bytes", None));
}

#[test]
fn vector_aggregation_shapes() {
    let a = sample(r#"topk by (h) (3, rate({app="a"}[1m]))"#);
    let b = sample(r#"topk(3, rate({app="a"}[1m])) by (h)"#);
    assert_eq!(a, b);
    let SampleExpr::VectorAggregation(v) = a else {
        panic!()
    };
    assert_eq!((v.op, v.param), (VectorOp::Topk, Some(3)));
    let SampleExpr::VectorAggregation(v) = sample(r#"sum(rate({app="a"}[1m]))"#) else {
        panic!()
    };
    assert_eq!(v.grouping, None);
    let SampleExpr::VectorAggregation(v) = sample(r#"sum without () (rate({app="a"}[1m]))"#) else {
        panic!()
    };
    assert_eq!(
        v.grouping,
        Some(Grouping {
            without: true,
            labels: vec![]
        })
    );
}

#[test]
fn keywords_as_identifiers() {
    // Function keywords used as label names everywhere a label name goes.
    for q in [
        r#"sum by (count) (count_over_time({rate="x"}[1m]))"#,
        r#"sum(count_over_time({app="a"} | logfmt | sum > 1 [1m])) by (avg, topk)"#,
        r#"sum_over_time({app="a"} | logfmt | unwrap rate [1m])"#,
        r#"{app="a"} | json count, rate="x" | label_format sum=max | drop vector, ip"#,
        r#"{app="a"} | logfmt | ip != ip("1.2.3.4")"#,
        r#"rate({app="a"}[1m]) * on (sum) group_left (min) rate({app="b"}[1m])"#,
    ] {
        round_trip(q);
    }
    assert!(is_reserved_word("BY"));
    assert!(is_reserved_word("json"));
    assert!(!is_reserved_word("rate"));
    assert!(is_function_word("Rate"));
    assert!(!is_function_word("app"));
}

#[test]
fn log_exprs_collects_every_selector() {
    let e = parse_expr(
        r#"sum(rate({a="1"}[1m])) / label_replace(count_over_time({b="2"}[1m]), "x", "y", "z", "w")"#,
    )
    .unwrap();
    let sels: Vec<String> = e
        .log_exprs()
        .iter()
        .map(|l| l.selector[0].name.clone())
        .collect();
    assert_eq!(sels, vec!["a", "b"]);
    let Expr::Sample(s) = e else { panic!() };
    assert_eq!(s.range_aggregations().len(), 2);
}

#[test]
fn canonical_printing() {
    for (q, want) in [
        (r#"{ app = "a" }"#, r#"{app="a"}"#),
        (r#"{app="a"}|="x"or"y""#, r#"{app="a"} |= "x" or "y""#),
        ("{app=`a\"b`}", r#"{app="a\"b"}"#),
        (
            r#"count_over_time({app="a"}[5m] offset 1h | json)"#,
            r#"count_over_time({app="a"} | json [5m] offset 1h)"#,
        ),
        (
            r#"SUM(rate({app="a"}[1m])) BY (x)"#,
            r#"sum by (x) (rate({app="a"}[1m]))"#,
        ),
        ("1 + 2", "3"),
        (
            r#"(rate({app="a"}[1m]) + 1) * 2"#,
            r#"(rate({app="a"}[1m]) + 1) * 2"#,
        ),
        (
            r#"rate({app="a"}[1m]) ^ (2 ^ vector(3))"#,
            r#"rate({app="a"}[1m]) ^ 2 ^ vector(3)"#,
        ),
        (
            r#"{app="a"} | logfmt | x > 1.5h, y = 1500us, z >= 1MiB"#,
            r#"{app="a"} | logfmt | x > 1h30m and y == 1ms500us and z >= 1048576B"#,
        ),
        (
            r#"count_over_time({app="a"}[90s] offset 1500us)"#,
            r#"count_over_time({app="a"}[1m30s] offset 1ms500us)"#,
        ),
        (
            r#"rate({app="a"}[1m]) * on(a) group_left rate({app="b"}[1m])"#,
            r#"rate({app="a"}[1m]) * on (a) group_left () rate({app="b"}[1m])"#,
        ),
    ] {
        assert_eq!(parse_expr(q).unwrap().to_string(), want, "{q}");
    }
}

#[test]
fn format_query_breaks_long_queries() {
    let q = r#"sum by (namespace, pod) (rate({namespace="production", app="checkout"} |= "error" | json | level="error" [5m])) / sum by (namespace, pod) (rate({namespace="production", app="checkout"}[5m]))"#;
    let pretty = format_query(q).unwrap();
    assert!(pretty.lines().count() > 1, "{pretty}");
    assert!(pretty.lines().all(|l| l.len() <= 120), "{pretty}");
    assert_eq!(parse_expr(&pretty).unwrap(), parse_expr(q).unwrap());
    assert_eq!(format_query(r#"{ app = "a" }"#).unwrap(), r#"{app="a"}"#);
    assert_eq!(
        format_query("{app=").unwrap_err().to_string(),
        "parse error at line 1, col 6: syntax error: unexpected $end, expecting STRING"
    );
}

#[test]
fn duration_and_number_formatting() {
    assert_eq!(format_duration(0), "0s");
    assert_eq!(format_duration(90_000_000_000), "1m30s");
    assert_eq!(format_duration(-300_000_000_000), "-5m");
    assert_eq!(format_duration(1_500), "1us500ns");
    assert_eq!(format_duration(86_400_000_000_000), "1d");
    assert_eq!(format_number(0.1), "0.1");
    assert_eq!(format_number(1e300), "1e300");
    assert_eq!(format_number(-1.5e-30), "-1.5e-30");
    assert_eq!(format_number(f64::NEG_INFINITY), "-1e999");
}

/// Deep nesting is refused before it can exhaust the stack, and everything up to the limit
/// parses, prints, compares and drops on a test thread's small stack.
#[test]
fn nesting_limit() {
    let d = MAX_DEPTH - 8;
    let deep_ok = [
        format!("{}1{}", "(".repeat(d), ")".repeat(d)),
        format!("vector(1){}", " ^ vector(1)".repeat(d)),
        format!("vector(1){}", " + vector(1)".repeat(d)),
        format!(
            "{}count_over_time({{a=\"b\"}}[1m]){}",
            "sum(".repeat(d / 2),
            ")".repeat(d / 2)
        ),
        format!(r#"{{a="b"}} | x > 1{}"#, " or x > 1".repeat(d)),
        format!(r#"{{a="b"}} | x > 1{}"#, ", x > 1".repeat(d)),
        format!(r#"{{a="b"}} | {}x > 1{}"#, "(".repeat(d), ")".repeat(d)),
    ];
    for q in &deep_ok {
        let e = parse_expr(q).unwrap_or_else(|e| panic!("{}: {e}", &q[..40]));
        let again = parse_expr(&e.to_string()).unwrap();
        assert_eq!(e, again);
        let _ = format_query(q).unwrap();
    }
    let too_deep =
        format!("parse error : query is nested too deeply (more than {MAX_DEPTH} levels)");
    let n = 60_000;
    for q in [
        format!("{}1{}", "(".repeat(n), ")".repeat(n)),
        "(".repeat(n),
        format!("vector(1){}", " ^ vector(1)".repeat(n / 10)),
        format!("vector(1){}", " + vector(1)".repeat(n / 10)),
        format!(r#"{{a="b"}} | x > 1{}"#, " or x > 1".repeat(n / 10)),
        format!(r#"{{a="b"}} | x > 1{}"#, " x > 1".repeat(n / 10)),
        format!(r#"{{a="b"}} | {}x > 1"#, "(".repeat(n)),
        format!("count_over_time({}{{a=\"b\"}}", "(".repeat(n)),
    ] {
        assert_eq!(err(&q), too_deep, "{}", &q[..30]);
    }
}
