//! How the process's allocator (mimalloc) gives freed memory back to the system.
//!
//! mimalloc 3 keeps freed pages committed for a second (`purge_delay`, 1,000 ms) in case they
//! are reused. A metric query grows and frees large buffers (sample vectors, decoded pages,
//! Arrow batches) many times a second on every scan thread, so with four concurrent metric
//! queries over 1 GB the server held 785–1,087 MiB where glibc's malloc held 453 MiB and
//! heaptrack saw a heap under 100 MiB per query (docs/benchmarks.md, "Memory under four
//! concurrent metric queries"). Purging freed pages (`MADV_DONTNEED`) after 10 ms keeps the
//! resident set near the heap: 441–629 MiB for the same four. Purging at once held 373–415 MiB
//! but cost up to 30 % more CPU in page faults; 100 ms let the peak wander up to 721 MiB.
//!
//! A `MIMALLOC_PURGE_DELAY` set in the environment wins, so the trade (page faults for memory)
//! can be moved without a build.

use std::ffi::{c_int, c_long};

// mimalloc 3's `mi_option_purge_delay` (include/mimalloc.h); the crate exposes no option API
// without its `extended` feature, and this value is all this module needs.
const MI_OPTION_PURGE_DELAY: c_int = 15;

unsafe extern "C" {
    fn mi_option_set(option: c_int, value: c_long);
}

/// Milliseconds freed pages stay committed.
const PURGE_DELAY_MS: c_long = 10;

/// Purge freed memory after [`PURGE_DELAY_MS`], unless the environment says otherwise. Call
/// first in `main`.
pub(crate) fn return_freed_memory() {
    if std::env::var_os("MIMALLOC_PURGE_DELAY").is_none() {
        // SAFETY: mimalloc reads its options with atomic loads, and its API allows setting
        // one at any time.
        unsafe { mi_option_set(MI_OPTION_PURGE_DELAY, PURGE_DELAY_MS) };
    }
}
