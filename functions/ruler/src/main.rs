//! The ruler function: one evaluation pass of every tenant's rule groups per EventBridge
//! scheduled event. Start-up only; see the library for the wiring and `parquetry_ruler` for
//! the logic.

fn main() -> anyhow::Result<()> {
    parquetry_host::runtime()?.block_on(parquetry_lambda_ruler::run())
}
