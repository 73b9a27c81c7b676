use super::*;
use parquetry_logql::{Expr, parse_expr};
use parquetry_model::Labels;

fn stages(q: &str) -> Vec<Stage> {
    match parse_expr(&format!(r#"{{app="a"}} {q}"#)).unwrap_or_else(|e| panic!("{q}: {e}")) {
        Expr::Log(l) => l.pipeline,
        Expr::Sample(_) => panic!("not a log query"),
    }
}

fn pipe(q: &str) -> Pipeline {
    Pipeline::new(&stages(q)).unwrap_or_else(|e| panic!("{q}: {e}"))
}

fn stream() -> Labels {
    Labels::from_pairs([("app", "a"), ("level", "info")])
}

/// Runs `line` through `q`; returns the output line and the merged labels.
fn run(q: &str, line: &str) -> Option<(String, EntryLabels)> {
    let p = pipe(q);
    let mut e = EntryLabels::new(&stream(), &[("trace", "t1")]);
    p.process(1_000_000_000, line, &mut e)
        .map(|l| (l.into_owned(), e))
}

fn labels(q: &str, line: &str) -> String {
    run(q, line).map_or("<dropped>".into(), |(_, e)| e.all().to_string())
}

#[test]
fn shape() {
    fn send_sync<T: Send + Sync>() {}
    send_sync::<Pipeline>();
    send_sync::<crate::Unwrapper>();
    assert!(pipe("").is_empty());
    assert!(pipe(r#"|= "a" != "b" |~ "c""#).only_line_filters());
    assert!(!pipe(r#"|= "a" | json"#).only_line_filters());
    assert!(pipe(r#"|= "a" != "b""#).line_filters_keep("xa"));
}

#[test]
fn line_filters_chain() {
    let q = r#"|= "GET" != "health" |~ "status=(4|5)\\d\\d""#;
    assert!(run(q, "GET /x status=503").is_some());
    assert!(run(q, "GET /health status=503").is_none());
    assert!(run(q, "POST /x status=503").is_none());
    assert!(run(q, "GET /x status=200").is_none());
    assert!(run(r#"|= "x" or "y""#, "has y").is_some());
    assert!(run(r#"!= "x" or "y""#, "has y").is_none());
    assert!(run(r#"|> "<_> /x <_>""#, "GET /x 200").is_some());
    assert!(run(r#"|= ip("10.0.0.0/8")"#, "from 10.2.3.4").is_some());
    assert!(run(r#"!= ip("10.0.0.0/8")"#, "from 10.2.3.4").is_none());
}

#[test]
fn json_then_numeric_filter() {
    let q = "| json | status >= 500";
    let (line, e) = run(q, r#"{"status":503,"msg":"boom"}"#).unwrap();
    assert_eq!(line, r#"{"status":503,"msg":"boom"}"#);
    assert_eq!(e.get("msg"), Some("boom"));
    assert_eq!(e.parsed().to_string(), r#"{msg="boom", status="503"}"#);
    assert_eq!(e.stream(), stream());
    assert_eq!(e.structured_metadata().to_string(), r#"{trace="t1"}"#);
    assert!(run(q, r#"{"status":200}"#).is_none());
    assert!(run(q, r#"{"other":1}"#).is_none(), "missing label drops");
    // Not JSON: no `status`, so the numeric filter drops the line whatever the error.
    assert!(run(q, "plain text").is_none());
    // The error still shows where no typed filter on an absent label follows.
    let (_, e) = run("| json", "plain text").unwrap();
    assert_eq!(e.get("__error__"), Some("JSONParserErr"));
    assert!(run(r#"| json | __error__="" | status >= 500"#, "plain text").is_none());
    assert!(run(r#"| json | __error__!="JSONParserErr""#, "plain").is_none());
    let (_, e) = run(q, r#"{"status":"abc"}"#).unwrap();
    assert_eq!(e.get("__error__"), Some("LabelFilterErr"));
    // `drop __error__` clears the error, as Grafana's volume query does.
    let (_, e) = run("| json | drop __error__", "plain").unwrap();
    assert!(!e.has_error());
    assert_eq!(
        e.all(),
        Labels::from_pairs([("app", "a"), ("level", "info"), ("trace", "t1")])
    );
}

#[test]
fn extracted_suffix_and_first_wins() {
    assert_eq!(
        labels("| json", r#"{"level":"error","app":"b","k":"1","k":"2"}"#),
        r#"{app="a", app_extracted="b", k="1", level="info", level_extracted="error", trace="t1"}"#
    );
    // A later parser does not overwrite what an earlier one extracted.
    let (_, e) = run(r#"| regexp "\"(?P<k>k)\"" | json"#, r#"{"k":"json"}"#).unwrap();
    assert_eq!(e.get("k"), Some("k"));
    let (_, e) = run(r#"| regexp "k=(?P<k>\\w+)" | logfmt"#, "k=first k=second").unwrap();
    assert_eq!(e.get("k"), Some("first"));
    // A key named like structured metadata is renamed, as for stream labels, so both
    // values stay (Loki 3.8 answers `trace="t1", trace_extracted="t2"`).
    let (_, e) = run("| json", r#"{"trace":"t2"}"#).unwrap();
    assert_eq!(e.parsed().to_string(), r#"{trace_extracted="t2"}"#);
    assert_eq!(e.structured_metadata().to_string(), r#"{trace="t1"}"#);
}

#[test]
fn json_params() {
    let q = r#"| json s="a.b", first="list[0]", obj="a", q="[\"x y\"]", gone="nope.x", level"#;
    let (_, e) = run(
        q,
        r#"{"a":{"b":"v"},"list":[1,2],"x y":"sp","level":"warn"}"#,
    )
    .unwrap();
    assert_eq!(e.get("s"), Some("v"));
    assert_eq!(e.get("first"), Some("1"));
    assert_eq!(e.get("obj"), Some(r#"{"b":"v"}"#));
    assert_eq!(e.get("q"), Some("sp"));
    assert_eq!(e.get("gone"), Some(""));
    assert_eq!(e.get("level_extracted"), Some("warn"));
    // Recorded from Loki 3.8: a line that does not start with `{`, `[` or `"` fails
    // without `__error_details__`; one that does is searched leniently, missing paths
    // giving empty labels; a value the scanner cannot read fails with its message.
    let q = r#"| json a="a", b="b""#;
    let (_, e) = run(q, "not json").unwrap();
    assert_eq!(e.parsed().to_string(), r#"{__error__="JSONParserErr"}"#);
    let (_, e) = run(q, r#"   {"a":1}"#).unwrap();
    assert_eq!(e.parsed().to_string(), r#"{__error__="JSONParserErr"}"#);
    let (_, e) = run(q, "{bad").unwrap();
    assert_eq!(e.parsed().to_string(), r#"{a="", b=""}"#);
    let (_, e) = run(q, r#"{"a":"ok","b":nul}"#).unwrap();
    assert_eq!(
        e.parsed().to_string(),
        r#"{__error__="JSONParserErr", __error_details__="Unknown value type", a="ok", b=""}"#
    );
    let err = Pipeline::new(&stages(r#"| json x="a[" "#)).unwrap_err();
    assert!(err.to_string().contains("invalid JSON expression"), "{err}");
}

#[test]
fn logfmt_regexp_pattern_unpack() {
    let (_, e) = run("| logfmt", r#"level=warn msg="a b" dur=5ms"#).unwrap();
    assert_eq!(e.get("level_extracted"), Some("warn"));
    assert_eq!(e.get("msg"), Some("a b"));
    let (_, e) = run("| logfmt --strict", "a=1 =x").unwrap();
    assert_eq!(e.get("__error__"), Some("LogfmtParserErr"));
    let (_, e) = run(
        r#"| regexp "(?P<method>\\w+) (?P<path>\\S+)(?: (?P<opt>\\d+))?""#,
        "GET /x",
    )
    .unwrap();
    assert_eq!(e.get("method"), Some("GET"));
    assert_eq!(e.get("path"), Some("/x"));
    assert_eq!(e.get("opt"), Some(""));
    let (_, e) = run(r#"| regexp "(?P<n>\\d+)""#, "no digits").unwrap();
    assert_eq!(e.get("n"), None);
    let (_, e) = run(
        r#"| pattern "<ip> - <_> \"<method> <path> <_>\" <status>""#,
        r#"1.2.3.4 - - "GET /a HTTP/1.1" 200"#,
    )
    .unwrap();
    assert_eq!(e.get("ip"), Some("1.2.3.4"));
    assert_eq!(e.get("method"), Some("GET"));
    assert_eq!(e.get("path"), Some("/a"));
    assert_eq!(e.get("status"), Some("200"));
    let (line, e) = run("| unpack", r#"{"_entry":"original","pod":"p1","app":"x"}"#).unwrap();
    assert_eq!(line, "original");
    assert_eq!(e.get("pod"), Some("p1"));
    assert_eq!(e.get("app_extracted"), Some("x"));
    let (line, e) = run("| unpack", "not json").unwrap();
    assert_eq!(line, "not json");
    assert_eq!(e.get("__error__"), Some("JSONParserErr"));
}

#[test]
fn formatting() {
    let (line, _) = run(
        r#"| logfmt | line_format "{{.msg | ToUpper}} ({{__line__}})""#,
        "msg=hi",
    )
    .unwrap();
    assert_eq!(line, "HI (msg=hi)");
    let (line, e) = run(r#"| line_format "{{ div 1 0 }}""#, "orig").unwrap();
    assert_eq!(line, "orig");
    assert_eq!(e.get("__error__"), Some("TemplateFormatErr"));
    assert!(
        e.get("__error_details__")
            .is_some_and(|d| d.contains("divide by zero"))
    );
    // Rename removes the source; templates keep what they reference and see the labels as
    // they were before the stage.
    let (_, e) = run(
        r#"| logfmt | label_format dst=src, t="{{.src}}-{{.level}}""#,
        "src=v",
    )
    .unwrap();
    assert_eq!(e.get("dst"), Some("v"));
    assert_eq!(e.get("src"), None);
    assert_eq!(e.get("t"), Some("v-info"));
    // Every label_format result is a parsed label, as in Loki, even from or over a stream
    // label.
    let (_, e) = run("| label_format svc=app", "x").unwrap();
    assert_eq!(e.stream().to_string(), r#"{level="info"}"#);
    assert_eq!(e.parsed().get("svc"), Some("a"));
    let (_, e) = run(r#"| label_format level="{{ .level | upper }}""#, "x").unwrap();
    assert_eq!(e.stream().get("level"), None);
    assert_eq!(e.parsed().get("level"), Some("INFO"));
    let (_, e) = run(r#"| label_format x="{{ ToUpper 1 }}""#, "x").unwrap();
    assert_eq!(e.get("__error__"), Some("TemplateFormatErr"));
    assert_eq!(e.get("x"), None);
    let err = Pipeline::new(&stages(r#"| line_format "{{ nope }}""#)).unwrap_err();
    assert!(
        err.to_string().contains(r#"function "nope" not defined"#),
        "{err}"
    );
    let err = Pipeline::new(&stages(r#"| label_format a="{{ .x""#)).unwrap_err();
    assert_eq!(
        err.to_string(),
        "invalid template for label 'a': template: label:1: unclosed action"
    );
}

#[test]
fn drop_keep_decolorize() {
    let line = "a=1 b=2 c=3";
    assert_eq!(
        labels(r#"| logfmt | drop a, b="9", c=~"\\d", level"#, line),
        r#"{app="a", b="2", trace="t1"}"#
    );
    assert_eq!(
        labels(r#"| logfmt | keep a, b="9", app"#, line),
        r#"{a="1", app="a"}"#
    );
    let (_, e) = run("| json | keep app", "not json").unwrap();
    assert_eq!(
        e.all().to_string(),
        format!(
            r#"{{__error__="JSONParserErr", __error_details__={:?}, app="a"}}"#,
            e.get("__error_details__").unwrap_or("")
        )
    );
    let (line, _) = run(
        "| decolorize",
        "\x1b[31mred\x1b[0m plain \x1b]0;title\x07é\x1b(B\x1b[1;32;40mx\x1bM",
    )
    .unwrap();
    assert_eq!(line, "red plain éx");
    let (_, e) = run(r#"| json | drop __error__="JSONParserErr""#, "x").unwrap();
    assert!(e.get("__error_details__").is_none());
    assert_eq!(decolorize("no escapes"), "no escapes");
}

#[test]
fn label_filter_combinations() {
    let q = r#"| logfmt | (status >= 500 and method="GET") or latency > 1s , size < 1KB"#;
    assert!(run(q, "status=503 method=GET size=10").is_some());
    assert!(run(q, "status=503 method=POST latency=2s size=10B").is_some());
    assert!(run(q, "status=503 method=POST latency=2s size=10KB").is_none());
    assert!(run(q, "status=200 method=GET latency=10ms size=1").is_none());
    assert!(run(r#"| logfmt | addr = ip("10.0.0.0/8")"#, "addr=10.1.1.1").is_some());
    assert!(run(r#"| logfmt | addr != ip("10.0.0.0/8")"#, "addr=10.1.1.1").is_none());
}

#[test]
fn entry_reuse_and_timestamp() {
    let p = pipe(r#"| logfmt | line_format "{{ __timestamp__ | unixEpochMillis }} {{ .k }}""#);
    let mut e = EntryLabels::default();
    for (i, k) in ["x", "y"].iter().enumerate() {
        e.reset(&stream(), &[] as &[(&str, &str)]);
        let out = p
            .process(i as i64 * 1_000_000, &format!("k={k}"), &mut e)
            .unwrap()
            .into_owned();
        assert_eq!(out, format!("{i} {k}"));
        assert_eq!(e.all().len(), 3);
    }
}

/// Guards against accidental quadratic work on the hottest path. Generous enough for debug
/// builds on a loaded machine: 20k entries must take well under two seconds.
#[test]
fn json_numeric_filter_is_fast() {
    let p = pipe("| json | status >= 500");
    let line = r#"{"ts":"2024-02-29T13:04:05.123Z","level":"error","status":503,"method":"GET","path":"/api/v1/users/12345/orders","duration_ms":123.4,"user":{"id":42,"name":"someone"},"tags":["a","b"],"msg":"upstream timed out"}"#;
    assert!((180..260).contains(&line.len()), "{}", line.len());
    let s = stream();
    let mut e = EntryLabels::of_stream(&s);
    let start = std::time::Instant::now();
    let mut kept = 0;
    for _ in 0..20_000 {
        e.reset(&s, &[] as &[(&str, &str)]);
        if p.process(0, line, &mut e).is_some() {
            kept += 1;
        }
    }
    assert_eq!(kept, 20_000);
    let took = start.elapsed();
    assert!(took < std::time::Duration::from_secs(2), "{took:?}");
}

#[test]
fn categories_after_pipeline() {
    let p = pipe(r#"| logfmt | label_format svc=app | drop trace"#);
    let sm = [
        ("trace".to_string(), "t1".to_string()),
        ("detected_level".to_string(), "warn".to_string()),
    ];
    let mut e = EntryLabels::new(&stream(), &sm);
    p.process(0, "user=bob level=debug", &mut e).unwrap();
    assert_eq!(e.stream().to_string(), r#"{level="info"}"#);
    assert_eq!(
        e.structured_metadata().to_string(),
        r#"{detected_level="warn"}"#
    );
    assert_eq!(
        e.parsed().to_string(),
        r#"{level_extracted="debug", svc="a", user="bob"}"#
    );
    assert_eq!(e.category("user"), Some(Category::Parsed));
    assert_eq!(e.all().len(), 5);
}

#[test]
fn unwrap_after_pipeline() {
    let expr = parse_expr(
        r#"sum_over_time({app="a"} | logfmt | unwrap duration(lat) | __error__="" [1m])"#,
    )
    .unwrap();
    let Expr::Sample(parquetry_logql::SampleExpr::RangeAggregation(r)) = expr else {
        panic!("not a range aggregation");
    };
    let p = Pipeline::new(&r.range.log.pipeline).unwrap();
    let u = crate::Unwrapper::new(r.range.unwrap.as_ref().unwrap()).unwrap();
    let sample = |line: &str| {
        let mut e = EntryLabels::of_stream(&stream());
        p.process(0, line, &mut e)?;
        let v = u.extract(&mut e)?;
        u.remove_unwrapped_label(&mut e);
        Some((v, e.all().to_string()))
    };
    assert_eq!(
        sample("lat=1.5s x=1"),
        Some((1.5, r#"{app="a", level="info", x="1"}"#.to_string()))
    );
    assert_eq!(
        sample("lat=abc"),
        None,
        "conversion error filtered by the post filter"
    );
    assert_eq!(sample("x=1"), None, "missing label skipped");
}
