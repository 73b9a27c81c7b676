//! The query function: every `/loki/api/v1/*` route except push behind API Gateway.
//! Start-up only; see `parquetry_lambda` for the wiring and the library crates for the logic.

/// mimalloc instead of glibc's malloc: glibc keeps what threads free in per-thread arenas, which
/// held a compaction pass at several times its heap (docs/benchmarks.md, "Compaction").
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> anyhow::Result<()> {
    parquetry_lambda::start(parquetry_lambda::Role::Query)
}
