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
//! The push path is the opposite case: every push allocates and frees the same few buffers
//! (the decompressed body, Arrow builders, the Parquet output, zstd contexts), and purging
//! them between pushes made the kernel fault in and zero them again for each — 10–12 % of the
//! push path's CPU. So the delay depends on what the process is doing ([`BoundedMemory`]):
//! 10 ms while a query or a maintenance pass runs, 1 s otherwise (push CPU per byte +21–28 %
//! on the ingest bench, peak RSS while pushing 154 → 257 MiB).
//!
//! A `MIMALLOC_PURGE_DELAY` or `MIMALLOC_ALLOW_THP` set in the environment wins (and fixes the
//! delay), so either trade can be moved without a build.

use std::ffi::{c_int, c_long};
use std::sync::Mutex;

// mimalloc 3's `mi_option_purge_delay` and `mi_option_allow_thp` (include/mimalloc.h); the
// crate exposes no option API without its `extended` feature, and these are all this module
// needs.
const MI_OPTION_PURGE_DELAY: c_int = 15;
const MI_OPTION_ALLOW_THP: c_int = 43;

// Linux's `PR_SET_THP_DISABLE` (linux/prctl.h).
const PR_SET_THP_DISABLE: c_int = 41;

unsafe extern "C" {
    fn mi_option_set(option: c_int, value: c_long);
    #[cfg(test)]
    fn mi_option_get(option: c_int) -> c_long;
    fn prctl(option: c_int, ...) -> c_int;
}

/// Milliseconds freed pages stay committed while memory-bound work runs.
const BOUNDED_PURGE_DELAY_MS: c_long = 10;
/// Milliseconds freed pages stay committed otherwise.
const IDLE_PURGE_DELAY_MS: c_long = 1_000;

/// How many [`BoundedMemory`] guards are alive; `None` when the environment fixed the delay.
/// A mutex rather than an atomic counter: the count and the option must change together, or
/// a guard dropped as another is taken could leave the long delay set under a running query.
static BOUNDED: Mutex<Option<usize>> = Mutex::new(Some(0));

fn set_purge_delay(ms: c_long) {
    // SAFETY: mimalloc reads its options with atomic loads, and its API allows setting one at
    // any time.
    unsafe { mi_option_set(MI_OPTION_PURGE_DELAY, ms) };
}

/// While alive, freed memory is purged after [`BOUNDED_PURGE_DELAY_MS`]: queries and
/// maintenance passes grow and free large buffers many times a second, and their resident set
/// must stay near their heap.
pub(crate) struct BoundedMemory(());

impl BoundedMemory {
    pub(crate) fn enter() -> BoundedMemory {
        let mut n = BOUNDED.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = n.as_mut() {
            if *n == 0 {
                set_purge_delay(BOUNDED_PURGE_DELAY_MS);
            }
            *n += 1;
        }
        BoundedMemory(())
    }
}

impl Drop for BoundedMemory {
    fn drop(&mut self) {
        let mut n = BOUNDED.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = n.as_mut() {
            *n -= 1;
            if *n == 0 {
                set_purge_delay(IDLE_PURGE_DELAY_MS);
            }
        }
    }
}

/// Whether a request to the server is memory-bound work (a query, a fan-out leaf) rather than
/// a push or a probe; `path` may carry the server's path prefix.
pub(crate) fn is_query_path(path: &str) -> bool {
    let push = path.ends_with("/push") || path.ends_with("/otlp/v1/logs");
    !push
        && (path.contains("/loki/api/")
            || path.contains("/api/prom/")
            || path.ends_with(parquetry_api::peers::LEAF_PATH))
}

/// Purge freed memory after [`IDLE_PURGE_DELAY_MS`] outside memory-bound work (and after
/// [`BOUNDED_PURGE_DELAY_MS`] for the whole life of a command that is nothing else, when
/// `bounded`), and use no transparent huge pages, unless the environment says otherwise. Call
/// first in `main`.
pub(crate) fn return_freed_memory(bounded: bool) {
    if std::env::var_os("MIMALLOC_PURGE_DELAY").is_some() {
        *BOUNDED.lock().unwrap_or_else(|e| e.into_inner()) = None;
    } else if bounded {
        set_purge_delay(BOUNDED_PURGE_DELAY_MS);
        *BOUNDED.lock().unwrap_or_else(|e| e.into_inner()) = None;
    } else {
        set_purge_delay(IDLE_PURGE_DELAY_MS);
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

#[cfg(test)]
mod tests {
    use super::*;

    fn delay() -> c_long {
        // SAFETY: reading an option is an atomic load.
        unsafe { mi_option_get(MI_OPTION_PURGE_DELAY) }
    }

    #[test]
    fn the_short_delay_holds_while_any_bounded_work_runs() {
        set_purge_delay(IDLE_PURGE_DELAY_MS);
        let a = BoundedMemory::enter();
        assert_eq!(delay(), BOUNDED_PURGE_DELAY_MS);
        let b = BoundedMemory::enter();
        drop(a);
        assert_eq!(delay(), BOUNDED_PURGE_DELAY_MS, "one query still runs");
        drop(b);
        assert_eq!(delay(), IDLE_PURGE_DELAY_MS);
    }

    #[test]
    fn queries_and_leaves_are_bounded_pushes_and_probes_are_not() {
        for p in [
            "/loki/api/v1/query_range",
            "/loki/api/v1/labels",
            "/prefix/loki/api/v1/query",
            "/api/prom/tail",
            "/parquetry/v1/leaf",
        ] {
            assert!(is_query_path(p), "{p}");
        }
        for p in [
            "/loki/api/v1/push",
            "/api/prom/push",
            "/prefix/loki/api/v1/push",
            "/otlp/v1/logs",
            "/ready",
            "/metrics",
        ] {
            assert!(!is_query_path(p), "{p}");
        }
    }
}
