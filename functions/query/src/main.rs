//! The query function: every `/loki/api/v1/*` route except push behind API Gateway.
//! Start-up only; see `parquetry_lambda` for the wiring and the library crates for the logic.

fn main() -> anyhow::Result<()> {
    parquetry_lambda::start(parquetry_lambda::Role::Query)
}
