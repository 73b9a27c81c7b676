//! What a Lambda function reads from its environment besides the configuration: which routes
//! it serves, the optional shared secrets of a public URL, and the response limit. Parsing
//! only; the HTTP side (the secret check, the 413) lives with the router in the push function's
//! crate.

use crate::HostError;

/// `PARQUETRY_AUTH_TOKEN`: one secret, or several separated by commas so a secret can be
/// rotated without downtime.
pub const AUTH_TOKEN_ENV: &str = "PARQUETRY_AUTH_TOKEN";

/// Shortest secret accepted: a guessable secret would be worse than none, because it looks safe.
pub const MIN_TOKEN_LEN: usize = 16;

/// Lambda's limit on a synchronous invocation's response payload (6 MB, that is 6 MiB; the
/// service adds a small allowance on top that we do not rely on).
pub const LAMBDA_MAX_RESPONSE_BYTES: usize = 6 * 1024 * 1024;

/// Overrides [`LAMBDA_MAX_RESPONSE_BYTES`] (tests, or a front end with a smaller limit).
pub const MAX_RESPONSE_ENV: &str = "PARQUETRY_LAMBDA_MAX_RESPONSE_BYTES";

/// Which part of the API a function serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// `POST /loki/api/v1/push`, `POST /api/prom/push`, `POST /otlp/v1/logs` (and `/ready`).
    Push,
    /// Every other route: queries, metadata, status.
    Query,
}

impl Role {
    /// The function's name, as logs and error messages say it.
    pub fn name(self) -> &'static str {
        match self {
            Role::Push => "push",
            Role::Query => "query",
        }
    }
}

/// Settings of the Lambda host itself (not of the Loki API, which stay in the configuration).
#[derive(Debug, Clone)]
pub struct HostSettings {
    /// Which routes the function serves.
    pub role: Role,
    /// Accepted shared secrets; empty means the URL is protected by API Gateway (IAM) or not at all.
    pub auth_tokens: Vec<String>,
    /// Largest serialized Lambda response; larger ones become a 413.
    pub max_response_bytes: usize,
}

impl HostSettings {
    /// Reads `PARQUETRY_AUTH_TOKEN` and `PARQUETRY_LAMBDA_MAX_RESPONSE_BYTES` from `env`.
    pub fn from_env(
        role: Role,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<HostSettings, HostError> {
        let mut settings = HostSettings {
            role,
            auth_tokens: Vec::new(),
            max_response_bytes: LAMBDA_MAX_RESPONSE_BYTES,
        };
        for (k, v) in env {
            match k.as_str() {
                AUTH_TOKEN_ENV => settings.auth_tokens = parse_tokens(&v)?,
                MAX_RESPONSE_ENV => {
                    settings.max_response_bytes =
                        v.trim().parse().map_err(|e| HostError::Setting {
                            message: format!("expected a number of bytes, got {v:?}: {e}"),
                            key: k,
                        })?;
                }
                _ => {}
            }
        }
        Ok(settings)
    }
}

/// Splits the `PARQUETRY_AUTH_TOKEN` value into secrets. Empty means no check.
pub fn parse_tokens(value: &str) -> Result<Vec<String>, HostError> {
    let tokens: Vec<String> = value
        .split(',')
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .map(str::to_string)
        .collect();
    if let Some(short) = tokens.iter().find(|t| t.len() < MIN_TOKEN_LEN) {
        return Err(HostError::Setting {
            key: AUTH_TOKEN_ENV.into(),
            message: format!(
                "a secret of {} characters is too short (at least {MIN_TOKEN_LEN})",
                short.len()
            ),
        });
    }
    Ok(tokens)
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::test_env as env;

    #[test]
    fn short_secrets_are_rejected_at_start_up() {
        let err = parse_tokens("short").err().map(|e| e.to_string());
        assert_eq!(
            err.as_deref(),
            Some("PARQUETRY_AUTH_TOKEN: a secret of 5 characters is too short (at least 16)")
        );
        assert!(parse_tokens("").unwrap().is_empty());
        assert!(parse_tokens(" , ").unwrap().is_empty());
        assert_eq!(
            parse_tokens("old-secret-0123456789, new-secret-0123456789").unwrap(),
            ["old-secret-0123456789", "new-secret-0123456789"]
        );
    }

    #[test]
    fn settings_from_the_environment() {
        let s = HostSettings::from_env(Role::Query, env(&[])).unwrap();
        assert_eq!(s.max_response_bytes, LAMBDA_MAX_RESPONSE_BYTES);
        assert!(s.auth_tokens.is_empty());
        let s = HostSettings::from_env(
            Role::Push,
            env(&[
                (MAX_RESPONSE_ENV, " 1000 "),
                (AUTH_TOKEN_ENV, "the-secret-0123456789"),
                ("OTHER", "x"),
            ]),
        )
        .unwrap();
        assert_eq!((s.role, s.max_response_bytes), (Role::Push, 1000));
        assert_eq!(s.auth_tokens, ["the-secret-0123456789"]);
        let err = HostSettings::from_env(Role::Query, env(&[(MAX_RESPONSE_ENV, "6MB")]))
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(
            err.starts_with(
                "PARQUETRY_LAMBDA_MAX_RESPONSE_BYTES: expected a number of bytes, got \"6MB\""
            ),
            "{err}"
        );
    }
}
