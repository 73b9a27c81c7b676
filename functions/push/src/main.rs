//! The push function: `POST /loki/api/v1/push` and `POST /api/prom/push` behind API Gateway.
//! Start-up only; see `parquetry_lambda` for the wiring and the library crates for the logic.

fn main() -> anyhow::Result<()> {
    parquetry_lambda::start(parquetry_lambda::Role::Push)
}
