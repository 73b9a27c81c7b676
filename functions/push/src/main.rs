//! The push function: `POST /loki/api/v1/push` and `POST /api/prom/push` behind API Gateway.
//! Start-up only; see `parquetry_lambda` for the wiring and the library crates for the logic.

fn main() -> anyhow::Result<()> {
    parquetry_lambda::prepare_process();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(parquetry_lambda::run(parquetry_lambda::Role::Push))
}
