//! No stream-label text may panic the push path's label parser, and labels that pass
//! validation (valid names: quoted UTF-8 names parse, but validation refuses them) print back
//! to text that parses to the same labels.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(labels) = parquetry_ingest::parse_labels(text)
        && labels
            .iter()
            .all(|l| parquetry_ingest::labels::is_valid_label_name(&l.name))
    {
        let printed = labels.to_string();
        let again = parquetry_ingest::parse_labels(&printed)
            .unwrap_or_else(|e| panic!("printed labels do not parse: {printed:?}: {e}"));
        assert_eq!(labels, again, "round trip changed the labels of {text:?}");
    }
    let _ = parquetry_ingest::labels::parse_stream_labels(text);
});
