//! No push body may panic the decoder or make it allocate past its limits, whatever the
//! headers claim: the first byte picks the content type and encoding, the rest is the body.
#![no_main]

use libfuzzer_sys::fuzz_target;
use parquetry_ingest::decode::{DecodeLimits, decode_push};

const TYPES: [Option<&str>; 3] = [None, Some("application/json"), Some("application/x-protobuf")];
const ENCODINGS: [Option<&str>; 5] = [None, Some("snappy"), Some("gzip"), Some("deflate"), Some("br")];

fuzz_target!(|data: &[u8]| {
    let Some((&selector, body)) = data.split_first() else {
        return;
    };
    let limits = DecodeLimits {
        max_recv_msg_size: 1 << 20,
        max_decompressed_size: 4 << 20,
    };
    let content_type = TYPES[selector as usize % TYPES.len()];
    let encoding = ENCODINGS[(selector as usize / TYPES.len()) % ENCODINGS.len()];
    let v1 = selector & 0x80 == 0;
    if let Ok(push) = decode_push(body, content_type, encoding, v1, &limits) {
        // Whatever decodes stays within the decompressed limit (invalid UTF-8 repaired with
        // U+FFFD may triple a line's bytes).
        let bytes: usize = push
            .streams
            .iter()
            .flat_map(|s| s.entries.iter())
            .map(|e| e.line.len())
            .sum();
        assert!(bytes as u64 <= 3 * limits.decompressed_limit());
    }
});
