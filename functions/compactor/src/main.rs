//! The compactor function: one compaction pass (and, with `compactor.retention_enabled`, one
//! retention pass) per EventBridge scheduled event. Start-up only; see the library for the
//! wiring and `parquetry_store` for the logic.

fn main() -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(parquetry_lambda_compactor::run())
}
