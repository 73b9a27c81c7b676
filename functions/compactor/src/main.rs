//! The compactor function: one maintenance pass (compaction, deletes and, with
//! `compactor.retention_enabled`, retention) per EventBridge scheduled event. Start-up only; see
//! the library for the wiring, `parquetry_host` for the pass and `parquetry_store` for the logic.

/// mimalloc instead of glibc's malloc: glibc keeps what threads free in per-thread arenas, which
/// held a compaction pass at several times its heap (docs/benchmarks.md, "Compaction").
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> anyhow::Result<()> {
    parquetry_host::runtime()?.block_on(parquetry_lambda_compactor::run())
}
