//! No log line may panic a LogQL parser stage: `json` (all keys and paths), `logfmt` (lenient
//! and strict), `unpack`, `pattern`, `regexp`, `decolorize`, pattern and `ip()` line filters, and the formatters over what
//! they extracted.
#![no_main]

use std::sync::LazyLock;

use libfuzzer_sys::fuzz_target;
use parquetry_model::Labels;
use parquetry_pipeline::{EntryLabels, Pipeline};

const QUERIES: &[&str] = &[
    r#"{a="b"} | json"#,
    r#"{a="b"} | json first="a.b", second="list[0]", third="[\"x y\"]""#,
    r#"{a="b"} | logfmt"#,
    r#"{a="b"} | logfmt --strict --keep-empty"#,
    r#"{a="b"} | logfmt x="msg", y="level""#,
    r#"{a="b"} | unpack"#,
    r#"{a="b"} | pattern "<ip> - <_> [<ts>] \"<method> <path> <_>\" <status> <size>""#,
    r#"{a="b"} | regexp "(?P<first>\\w+)\\s+(?P<rest>.*)""#,
    r#"{a="b"} | decolorize | logfmt | line_format "{{.msg}} {{ .level | upper }}""#,
    r#"{a="b"} | json | label_format joined="{{.a}}-{{.b}}" | drop __error__"#,
    r#"{a="b"} |> "<_>a<_>" != "x""#,
    r#"{a="b"} |= ip("10.0.0.0/8")"#,
];

static PIPELINES: LazyLock<Vec<Pipeline>> = LazyLock::new(|| {
    QUERIES
        .iter()
        .map(|q| match parquetry_logql::parse_expr(q) {
            Ok(parquetry_logql::Expr::Log(log)) => Pipeline::new(&log.pipeline).expect(q),
            other => panic!("{q}: {other:?}"),
        })
        .collect()
});

fuzz_target!(|data: &[u8]| {
    let line = String::from_utf8_lossy(data);
    let stream = Labels::from_pairs([("a", "b"), ("msg", "stream")]);
    let metadata = [("trace_id".to_string(), "abc".to_string())];
    for p in PIPELINES.iter() {
        let mut entry = EntryLabels::new(&stream, &metadata);
        let _ = p.process(0, &line, &mut entry);
    }
});
