//! The process's `tracing` subscriber. `RUST_LOG` wins over `server.log_level`; the chatty
//! dependencies (hyper, DataFusion, the Lambda runtime) are held at `warn` otherwise.

use parquetry_model::Config;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::format::FmtSpan;

use crate::HostError;

/// Where and how log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogOutput {
    /// JSON lines on stdout, which CloudWatch Logs stores as structured events. Each line
    /// carries its spans, so the runtime's invocation span (with the request id) stays on every
    /// line inside a maintenance pass's own spans.
    Lambda,
    /// The command line and server: stderr, text, or JSON with `server.log_format: json`.
    Cli,
}

/// Installs the global subscriber; an error if one is installed already.
pub fn init_logging(config: &Config, output: LogOutput) -> Result<(), HostError> {
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| {
            EnvFilter::try_new(format!(
                "{},hyper=warn,datafusion=warn,lambda_runtime=warn",
                config.server.log_level
            ))
        })
        .map_err(|e| HostError::LogFilter(e.to_string()))?;
    let span_events = if config.server.log_spans {
        FmtSpan::CLOSE
    } else {
        FmtSpan::NONE
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_span_events(span_events);
    let installed = match output {
        LogOutput::Lambda => builder
            .json()
            .with_ansi(false)
            .with_current_span(true)
            .with_span_list(true)
            .with_writer(std::io::stdout)
            .try_init(),
        LogOutput::Cli if config.server.log_format == "json" => {
            builder.json().with_writer(std::io::stderr).try_init()
        }
        LogOutput::Cli => builder.with_writer(std::io::stderr).try_init(),
    };
    installed.map_err(|e| HostError::Logging(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bad_level_is_reported_and_a_second_subscriber_refused() {
        // SAFETY: no other test of this crate reads RUST_LOG, and this is the only one that
        // touches the process environment.
        unsafe { std::env::remove_var("RUST_LOG") };
        let mut config = Config::default();
        config.server.log_level = "info,=bad=level".into();
        let err = init_logging(&config, LogOutput::Cli)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(err.starts_with("server.log_level: "), "{err}");
        config.server.log_level = "info".into();
        init_logging(&config, LogOutput::Lambda).unwrap();
        let again = init_logging(&config, LogOutput::Cli)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(again.starts_with("initialising logging: "), "{again}");
    }
}
