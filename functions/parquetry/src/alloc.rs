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
//! mimalloc also asks the kernel for transparent huge pages on its arenas (`MADV_HUGEPAGE`,
//! which the kernel honours in its default `madvise` mode). Each first touch of such a region
//! then faults in and zeroes 2 MiB, and every purge splits one again. On the push path that
//! was the single largest item of the profile (kernel page zeroing 7–10 % of its CPU): with
//! huge pages off, the ingest bench's push path took 5–10 % less CPU per byte and its peak
//! RSS halved (209–331 → 134–167 MiB); queries on the 1 GB bench data were unchanged
//! (docs/benchmarks.md, "Where the push path's CPU goes").
//!
//! A `MIMALLOC_PURGE_DELAY` or `MIMALLOC_ALLOW_THP` set in the environment wins, so either
//! trade can be moved without a build.

use std::ffi::{c_int, c_long};

// mimalloc 3's `mi_option_purge_delay` and `mi_option_allow_thp` (include/mimalloc.h); the
// crate exposes no option API without its `extended` feature, and these are all this module
// needs.
const MI_OPTION_PURGE_DELAY: c_int = 15;
const MI_OPTION_ALLOW_THP: c_int = 43;

// Linux's `PR_SET_THP_DISABLE` (linux/prctl.h).
const PR_SET_THP_DISABLE: c_int = 41;

unsafe extern "C" {
    fn mi_option_set(option: c_int, value: c_long);
    fn prctl(option: c_int, ...) -> c_int;
}

/// Milliseconds freed pages stay committed.
const PURGE_DELAY_MS: c_long = 10;

/// Purge freed memory after [`PURGE_DELAY_MS`] and use no transparent huge pages, unless the
/// environment says otherwise. Call first in `main`.
pub(crate) fn return_freed_memory() {
    if std::env::var_os("MIMALLOC_PURGE_DELAY").is_none() {
        // SAFETY: mimalloc reads its options with atomic loads, and its API allows setting
        // one at any time.
        unsafe { mi_option_set(MI_OPTION_PURGE_DELAY, PURGE_DELAY_MS) };
    }
    if std::env::var_os("MIMALLOC_ALLOW_THP").is_none() {
        // SAFETY: as above. mimalloc reads this option when it maps memory, but its first
        // arena was mapped (and advised) before `main`; the process-wide switch covers that
        // one too, since the kernel checks it at every fault.
        unsafe { mi_option_set(MI_OPTION_ALLOW_THP, 0) };
        #[cfg(target_os = "linux")]
        // SAFETY: `prctl` with this option takes one integer argument and touches no memory
        // of ours; a failure (an old kernel) only leaves huge pages on.
        unsafe {
            prctl(
                PR_SET_THP_DISABLE,
                1 as std::ffi::c_ulong,
                0 as std::ffi::c_ulong,
                0 as std::ffi::c_ulong,
                0 as std::ffi::c_ulong,
            )
        };
    }
}
