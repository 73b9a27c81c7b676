//! Memory under decompression bombs: bodies that inflate far past the decompressed limit must
//! fail while this thread holds little more than the limit, measured by an allocator that
//! tracks each thread's live bytes. (A test binary of its own, so the allocator stays here.)

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::io::Write;

use parquetry_ingest::{DecodeLimits, decode_push};

/// Forwards to the system allocator, keeping per-thread live and peak byte counts. Per thread,
/// so the harness running other tests in parallel does not disturb the measurement.
struct PeakTracking;

thread_local! {
    static LIVE: Cell<isize> = const { Cell::new(0) };
    static PEAK: Cell<isize> = const { Cell::new(0) };
}

fn note(delta: isize) {
    // `try_with`: allocations while the thread is being torn down go untracked.
    let _ = LIVE.try_with(|live| {
        let now = live.get() + delta;
        live.set(now);
        let _ = PEAK.try_with(|peak| peak.set(peak.get().max(now)));
    });
}

unsafe impl GlobalAlloc for PeakTracking {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            note(layout.size() as isize);
        }
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc_zeroed(layout) };
        if !p.is_null() {
            note(layout.size() as isize);
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) };
        note(-(layout.size() as isize));
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            note(new_size as isize - layout.size() as isize);
        }
        p
    }
}

#[global_allocator]
static ALLOCATOR: PeakTracking = PeakTracking;

/// Runs `f`, returning its result and the most bytes this thread held at once meanwhile,
/// beyond what it held before.
fn peak_of<T>(f: impl FnOnce() -> T) -> (T, usize) {
    let base = LIVE.with(Cell::get);
    PEAK.with(|p| p.set(base));
    let out = f();
    let peak = PEAK.with(Cell::get) - base;
    (out, usize::try_from(peak).unwrap_or(0))
}

const MIB: usize = 1 << 20;
const JSON: Option<&str> = Some("application/json");
const PB: Option<&str> = Some("application/x-protobuf");
/// What decoding may hold besides the limit: decompressor state and windows, read buffers.
const SLACK: usize = 512 << 10;

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut w = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    w.write_all(data).unwrap();
    w.finish().unwrap()
}

/// `n` MiB of zeros as `n` concatenated gzip members of 1 MiB, about 1 KiB each.
fn gzip_zeros(n: usize) -> Vec<u8> {
    gzip(&vec![0u8; MIB]).repeat(n)
}

/// A valid v1 prefix opening a line that `n` MiB of `a` then fill: JSON that only the size
/// limit can stop.
fn gzip_string_bomb(n: usize) -> Vec<u8> {
    let mut out = gzip(br#"{"streams":[{"stream":{"app":"bomb"},"values":[["1",""#);
    out.extend(gzip(&vec![b'a'; MIB]).repeat(n));
    out
}

/// `n` MiB of zeros as raw DEFLATE: a sync-flushed block of 1 MiB that only copies earlier
/// zeros, repeated, so building it does not mean compressing `n` MiB.
fn deflate_zeros(n: usize) -> Vec<u8> {
    use flate2::{Compress, Compression, FlushCompress};
    let mut c = Compress::new(Compression::best(), false);
    let zeros = vec![0u8; MIB];
    let mut step = |input: &[u8], flush| {
        let mut out = Vec::with_capacity(MIB);
        c.compress_vec(input, &mut out, flush).unwrap();
        out
    };
    let mut out = step(&zeros, FlushCompress::Sync);
    let block = step(&zeros, FlushCompress::Sync);
    let tail = step(&[], FlushCompress::Finish);
    for _ in 1..n {
        out.extend_from_slice(&block);
    }
    out.extend_from_slice(&tail);
    out
}

fn framed(data: &[u8]) -> Vec<u8> {
    let mut w = snap::write::FrameEncoder::new(Vec::new());
    w.write_all(data).unwrap();
    w.into_inner().unwrap()
}

#[test]
fn a_gzip_zero_bomb_under_the_default_limits_costs_megabytes_not_gigabytes() {
    // The case that cost 1.6-2.6 GB before: about 1 MB of gzip holding 1 GiB of zeros, under
    // the default limit. It is not JSON from its first byte, so it must fail once
    // the JSON buffer (8 MiB) is full, not after inflating it all.
    let bomb = gzip_zeros(1024);
    let (result, peak) =
        peak_of(|| decode_push(&bomb, JSON, Some("gzip"), true, &DecodeLimits::default()));
    let e = result.unwrap_err();
    assert_eq!(
        (e.status(), e.to_string()),
        (
            400,
            "failed to parse push body as v1 JSON: expected value at line 1 column 1".into()
        )
    );
    assert!(peak < 16 * MIB, "peak {peak} bytes");
}

/// Name, body, `Content-Type`, `Content-Encoding`.
type Case = (
    &'static str,
    Vec<u8>,
    Option<&'static str>,
    Option<&'static str>,
);

#[test]
fn every_encoding_stops_at_the_limit() {
    let limit = 4 * MIB;
    let limits = DecodeLimits {
        max_recv_msg_size: 100 << 20,
        max_decompressed_size: limit as u64,
    };
    let cases: Vec<Case> = vec![
        ("gzip JSON zeros", gzip_zeros(1024), JSON, Some("gzip")),
        (
            "gzip JSON string",
            gzip_string_bomb(256),
            JSON,
            Some("gzip"),
        ),
        ("gzip protobuf", gzip_zeros(1024), PB, Some("gzip")),
        ("deflate JSON", deflate_zeros(1024), JSON, Some("deflate")),
        ("deflate protobuf", deflate_zeros(1024), PB, Some("deflate")),
        ("framed snappy", framed(&vec![0u8; 64 * MIB]), PB, None),
        (
            "framed snappy JSON",
            framed(&vec![0u8; 64 * MIB]),
            JSON,
            Some("snappy"),
        ),
    ];
    for (name, body, ct, ce) in cases {
        let (result, peak) = peak_of(|| decode_push(&body, ct, ce, true, &limits));
        let e = result.unwrap_err();
        assert_eq!(
            (e.status(), e.to_string()),
            (
                400,
                format!(
                    "decompressed message size too large than max ({} vs {limit})",
                    limit + 1
                )
            ),
            "{name}"
        );
        assert!(
            peak <= limit + SLACK,
            "{name}: peak {peak} bytes for a {limit}-byte limit"
        );
    }
}

#[test]
fn a_json_string_bomb_past_the_buffer_holds_only_the_limit() {
    // Over the JSON buffer, the syntax check streams; it keeps no strings, so the body's
    // buffer is all that grows.
    let limit = 24 * MIB;
    let limits = DecodeLimits {
        max_recv_msg_size: 100 << 20,
        max_decompressed_size: limit as u64,
    };
    let bomb = gzip_string_bomb(256);
    let (result, peak) = peak_of(|| decode_push(&bomb, JSON, Some("gzip"), true, &limits));
    assert_eq!(
        result.unwrap_err().to_string(),
        format!(
            "decompressed message size too large than max ({} vs {limit})",
            limit + 1
        )
    );
    assert!(
        peak <= limit + SLACK,
        "peak {peak} bytes for a {limit}-byte limit"
    );
}

#[test]
fn a_forged_raw_snappy_header_allocates_nothing() {
    // Almost 4 GiB declared by five bytes, under Loki's 5000 MiB limit: the snappy decoder
    // would allocate the declared size before finding out there is no data.
    let forged = [0xfe, 0xff, 0xff, 0xff, 0x0f];
    let lokis = DecodeLimits {
        max_decompressed_size: 5000 << 20,
        ..DecodeLimits::default()
    };
    let (result, peak) = peak_of(|| decode_push(&forged, PB, None, true, &lokis));
    let e = result.unwrap_err();
    assert_eq!(e.status(), 400);
    assert!(e.to_string().contains("snappy: corrupt input"), "{e}");
    assert!(peak < 64 << 10, "peak {peak} bytes");
}
