//! No template text may panic the Go text/template interpreter of `line_format` and
//! `label_format`, at compile time or rendering. The first line is the template, the rest
//! the log line it renders.
#![no_main]

use libfuzzer_sys::fuzz_target;
use parquetry_model::Labels;
use parquetry_pipeline::EntryLabels;
use parquetry_pipeline::template::Template;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let (src, line) = text.split_once('\n').unwrap_or((text, ""));
    let Ok(t) = Template::compile(src) else {
        return;
    };
    let stream = Labels::from_pairs([("app", "shop"), ("level", "info"), ("n", "42")]);
    let entry = EntryLabels::new(&stream, &[("trace_id", "0af7651916cd43dd")]);
    let _ = t.fields();
    let _ = t.render(&entry, line, 1_700_000_000_000_000_000);
});
