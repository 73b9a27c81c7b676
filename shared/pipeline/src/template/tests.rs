use super::*;
use parquetry_model::Labels;

/// 2024-02-29T13:04:05.123Z
const TS: i64 = 1_709_211_845_123_000_000;

fn entry() -> EntryLabels {
    EntryLabels::of_stream(&Labels::from_pairs([
        ("app", "Web-App"),
        ("status", "503"),
        ("method", "get"),
        ("lat", "1.5s"),
        ("size", "2KB"),
        ("path", "/api/v1/users?id=7&x=a b"),
        ("pad", "  hi  "),
        ("empty", ""),
        ("n", "7"),
        ("f", "2.5"),
        ("json", r#"{"a":{"b":[1,"two"]},"s":"x"}"#),
    ]))
}

fn render(t: &str) -> String {
    Template::compile(t)
        .unwrap_or_else(|e| panic!("compile {t:?}: {e}"))
        .render(&entry(), "the line", TS)
        .unwrap_or_else(|e| panic!("render {t:?}: {e}"))
}

fn render_err(t: &str) -> String {
    Template::compile(t)
        .unwrap_or_else(|e| panic!("compile {t:?}: {e}"))
        .render(&entry(), "the line", TS)
        .expect_err(t)
        .to_string()
}

#[test]
fn fields_text_and_specials() {
    assert_eq!(render("plain"), "plain");
    assert_eq!(render(""), "");
    assert_eq!(render("{{.app}} {{ .status }}"), "Web-App 503");
    assert_eq!(render("[{{.missing}}]"), "[]");
    assert_eq!(render("{{__line__}}!"), "the line!");
    assert_eq!(
        render("{{ __timestamp__ }}"),
        "2024-02-29 13:04:05.123 +0000 UTC"
    );
    assert_eq!(render("{{ .app }}/{{ $.app }}"), "Web-App/Web-App");
    assert_eq!(render("{{ index . \"app\" }}"), "Web-App");
    assert_eq!(render("a {{- \" b \" -}} c"), "a b c");
    assert_eq!(render("a  {{- /* comment */ -}}  c"), "ac");
    assert_eq!(
        render("{{ 3 }} {{ -2 }} {{ 1.5 }} {{ true }} {{ 'a' }} {{ 0x10 }}"),
        "3 -2 1.5 true 97 16"
    );
    assert_eq!(render(r#"{{ `raw\n` }}{{ "esc\t" }}"#), "raw\\nesc\t");
}

#[test]
fn pipelines_and_control() {
    assert_eq!(render("{{ .app | ToUpper }}"), "WEB-APP");
    assert_eq!(render("{{ .app | lower | title }}"), "Web-App");
    assert_eq!(
        render("{{ if eq .status \"503\" }}bad{{ else }}ok{{ end }}"),
        "bad"
    );
    assert_eq!(
        render("{{ if .empty }}x{{ else if .n }}n={{.n}}{{ end }}"),
        "n=7"
    );
    assert_eq!(render("{{ if and .n .empty }}a{{ else }}b{{ end }}"), "b");
    assert_eq!(render("{{ or .empty .missing \"dflt\" }}"), "dflt");
    assert_eq!(render("{{ if not .empty }}y{{ end }}"), "y");
    assert_eq!(render("{{ with .method }}m={{ . }}{{ end }}"), "m=get");
    assert_eq!(render("{{ with .empty }}m{{ else }}none{{ end }}"), "none");
    assert_eq!(
        render("{{ $x := .n }}{{ $x }}-{{ $x = \"8\" }}{{ $x }}"),
        "7-8"
    );
    assert_eq!(
        render("{{ (printf \"%s-%s\" .app .n) | upper }}"),
        "WEB-APP-7"
    );
    assert_eq!(
        render("{{ range $i, $v := (fromJson .json).a.b }}{{$i}}={{$v}};{{ end }}"),
        "0=1;1=two;"
    );
    assert_eq!(render("{{ (fromJson .json).s }}"), "x");
    assert_eq!(render("{{ range 3 }}{{ . }}{{ end }}"), "012");
    assert_eq!(
        render("{{ len .app }} {{ slice .app 0 3 }} {{ print 1 2 \"a\" 3 }}"),
        "7 Web 1 2a3"
    );
    assert_eq!(
        render("{{ lt 1 2 }} {{ ge .n \"7\" }} {{ ne 1.5 2.5 }}"),
        "true true true"
    );
}

#[test]
fn string_functions() {
    assert_eq!(
        render(r#"{{ Replace .path "/" "_" -1 }}"#),
        "_api_v1_users?id=7&x=a b"
    );
    assert_eq!(
        render(r#"{{ Replace .path "/" "_" 1 }}"#),
        "_api/v1/users?id=7&x=a b"
    );
    assert_eq!(render(r#"{{ replace "-" "+" .app }}"#), "Web+App");
    assert_eq!(
        render(r#"[{{ TrimSpace .pad }}][{{ trim .pad }}]"#),
        "[hi][hi]"
    );
    assert_eq!(
        render(r#"{{ Trim "xxhixx" "x" }} {{ TrimLeft "xxhi" "x" }} {{ TrimRight "hixx" "x" }}"#),
        "hi hi hi"
    );
    assert_eq!(
        render(r#"{{ TrimPrefix .app "Web-" }} {{ TrimSuffix .app "-App" }}"#),
        "App Web"
    );
    assert_eq!(
        render(
            r#"{{ trimPrefix "Web-" .app }} {{ trimSuffix "-App" .app }} {{ trimAll "W" .app }}"#
        ),
        "App Web eb-App"
    );
    assert_eq!(
        render(r#"{{ regexReplaceAll "(\\d+)" .path "<$1>" }}"#),
        "/api/v<1>/users?id=<7>&x=a b"
    );
    assert_eq!(
        render(r#"{{ regexReplaceAllLiteral "\\d" .path "$1" }}"#),
        "/api/v$1/users?id=$1&x=a b"
    );
    let dynamic = r#"{{ regexReplaceAll (printf "%s" "[aeiou]") .app "" }}"#;
    assert_eq!(render(dynamic), "Wb-App");
    assert_eq!(render(r#"{{ count "[a-z]" .app }}"#), "4");
    assert_eq!(
        render("{{ trunc 3 .app }} {{ trunc -3 .app }} {{ substr 1 3 .app }}"),
        "Web App eb"
    );
    assert_eq!(
        render(r#"{{ contains "App" .app }} {{ hasPrefix "Web" .app }} {{ hasSuffix "x" .app }}"#),
        "true true false"
    );
    assert_eq!(
        render(r#"{{ repeat 3 "ab" }}|{{ indent 2 "a\nb" }}|{{ nindent 1 "c" }}"#),
        "ababab|  a\n  b|\n c"
    );
    assert_eq!(
        render(
            r#"[{{ alignLeft 5 "ab" }}][{{ alignRight 5 "ab" }}][{{ alignLeft 2 "abcd" }}][{{ alignRight 2 "abcd" }}]"#
        ),
        "[ab   ][   ab][ab][cd]"
    );
    assert_eq!(
        render(r#"{{ .path | urlencode }}"#),
        "%2Fapi%2Fv1%2Fusers%3Fid%3D7%26x%3Da+b"
    );
    assert_eq!(render(r#"{{ urldecode "a%20b+c" }}"#), "a b c");
    assert_eq!(
        render(r#"{{ b64enc "hello" }} {{ b64dec "aGVsbG8=" }}"#),
        "aGVsbG8= hello"
    );
    assert_eq!(
        render(r#"{{ .missing | default "none" }} {{ .n | default "none" }}"#),
        "none 7"
    );
    assert_eq!(
        render(r#"{{ html "<a&b>" }} {{ js "it's" }} {{ urlquery "a b" }}"#),
        "&lt;a&amp;b&gt; it\\'s a+b"
    );
    assert_eq!(
        render(r#"{{ printf "%05.1f|%-3d|%q" 3.14159 7 "x" }}"#),
        "003.1|7  |\"x\""
    );
    assert_eq!(render(r#"{{ println "a" "b" }}"#), "a b\n");
}

#[test]
fn math_and_conversions() {
    assert_eq!(
        render("{{ add .n 3 }} {{ sub .n 10 }} {{ mul .n 2 3 }} {{ div .n 2 }} {{ mod .n 4 }}"),
        "10 -3 42 3 3"
    );
    assert_eq!(
        render("{{ addf .f 1 }} {{ subf .f 0.5 }} {{ mulf .f 2 }} {{ divf .f 2 }}"),
        "3.5 2 5 1.25"
    );
    assert_eq!(
        render("{{ max 1 .n 3 }} {{ min 1 .n }} {{ maxf 1.5 .f }} {{ minf 1.5 .f }}"),
        "7 1 2.5 1.5"
    );
    assert_eq!(
        render("{{ ceil .f }} {{ floor .f }} {{ round 2.345 2 }} {{ round .f 0 }}"),
        "3 2 2.35 3"
    );
    // Like Sprig's cast, a fractional string is not an int.
    assert_eq!(
        render("{{ int .f }} {{ int 2.5 }} {{ int \"12\" }} {{ float64 .n }} {{ int \"x\" }}"),
        "0 2 12 7 0"
    );
    assert_eq!(
        render("{{ duration .lat }} {{ duration_seconds \"1m\" }} {{ bytes .size }}"),
        "1.5 60 2000"
    );
    assert_eq!(render("{{ mulf 1000000 1 }}"), "1e+06");
    assert!(render_err("{{ div 1 0 }}").contains("divide by zero"));
}

#[test]
fn time_functions() {
    assert_eq!(
        render("{{ __timestamp__ | unixEpochMillis }}"),
        "1709211845123"
    );
    assert_eq!(
        render("{{ __timestamp__ | unixEpochNanos }}"),
        "1709211845123000000"
    );
    assert_eq!(render("{{ __timestamp__ | unixEpoch }}"), "1709211845");
    assert_eq!(
        render(r#"{{ __timestamp__ | date "2006-01-02T15:04:05Z07:00" }}"#),
        "2024-02-29T13:04:05Z"
    );
    assert_eq!(render(r#"{{ date "15:04" 3600 }}"#), "01:00");
    assert_eq!(
        render(r#"{{ (unixToTime "1709211845") | unixEpochMillis }}"#),
        "1709211845000"
    );
    assert_eq!(
        render(r#"{{ (unixToTime "1709211845123") | unixEpochNanos }}"#),
        "1709211845123000000"
    );
    assert_eq!(
        render(r#"{{ (toDate "2006-01-02" "2024-02-29") | unixEpoch }}"#),
        "1709164800"
    );
    assert_eq!(
        render(
            r#"{{ (toDateInZone "2006-01-02 15:04" "+01:00" "2024-02-29 01:00") | unixEpoch }}"#
        ),
        "1709164800"
    );
    assert!(render_err(r#"{{ unixToTime "123" }}"#).contains("not supported"));
    assert!(
        render_err(r#"{{ toDateInZone "2006" "Mars/Base" "2024" }}"#).contains("unknown time zone")
    );
}

#[test]
fn execution_errors() {
    // Go does not convert between kinds.
    assert!(render_err("{{ ToUpper 5 }}").contains("expected string"));
    assert!(render_err("{{ gt .status 400 }}").contains("incompatible types"));
    assert!(render_err("{{ .app.x }}").contains("can't evaluate field x"));
    assert!(render_err("{{ $nope }}").contains("undefined variable"));
    assert!(render_err("{{ nil }}").contains("nil is not a command"));
    assert_eq!(render(r#"{{ default "d" nil }}"#), "d");
    assert!(render_err("{{ Replace .app \"a\" }}").contains("wrong number of args"));
    assert!(
        render_err(r#"{{ regexReplaceAll "(" .app "" }}"#)
            .contains("error calling regexReplaceAll")
    );
}

#[test]
fn compile_errors() {
    for (t, want) in [
        ("{{ nope .a }}", "function \"nope\" not defined"),
        ("{{ .a ", "unclosed action"),
        ("{{ if .a }}x", "missing {{end}}"),
        ("{{ end }}", "unexpected {{end}}"),
        ("{{ .a .b }}", "can't give argument to non-function"),
        ("{{ .a | .b }}", "non executable command"),
        ("{{ define \"x\" }}{{ end }}", "not supported"),
        ("{{ \"abc }}", "unterminated quoted string"),
        ("{{ ( .a }}", "unclosed left paren"),
        ("{{}}", "missing value for command"),
        (
            &format!("{{{{ {}1{} }}}}", "(".repeat(200), ")".repeat(200)),
            "nested deeper",
        ),
        (&"{{ if 1 }}".repeat(200), "nested deeper"),
    ] {
        let e = Template::compile(t).expect_err(t).to_string();
        assert!(e.contains(want), "{t}: {e}");
    }
}
