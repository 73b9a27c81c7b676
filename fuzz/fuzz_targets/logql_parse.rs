//! No input may panic the LogQL parser or printer, and whatever parses must print to text that
//! parses back to a tree that prints the same.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(expr) = parquetry_logql::parse_expr(text) {
        let printed = expr.to_string();
        let again = parquetry_logql::parse_expr(&printed)
            .unwrap_or_else(|e| panic!("printed form does not parse: {printed:?}: {e}"));
        // Compared as text: folded literals can be NaN, which is never equal to itself.
        assert_eq!(printed, again.to_string(), "round trip changed the tree");
        let _ = parquetry_logql::format_query(text);
    }
    let _ = parquetry_logql::parse_selector(text);
});
