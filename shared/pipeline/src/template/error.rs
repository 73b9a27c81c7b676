//! The template engine's two error types, one per phase. Their texts are Go's
//! `text/template` messages byte for byte: Loki returns a parse error in its 400 body and puts
//! an execution error in `__error_details__`, a label that is part of a series' identity, so
//! the text is the contract and a caller has nothing to branch on but the phase.

/// Why a template does not compile (Go's parse message, without the `template: name:line:`
/// prefix the caller adds).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ParseError(String);

/// Why a template failed on one entry (Go's execution message).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ExecError(String);

impl From<String> for ParseError {
    fn from(message: String) -> Self {
        ParseError(message)
    }
}

impl From<&str> for ParseError {
    fn from(message: &str) -> Self {
        ParseError(message.to_string())
    }
}

impl From<String> for ExecError {
    fn from(message: String) -> Self {
        ExecError(message)
    }
}

impl From<&str> for ExecError {
    fn from(message: &str) -> Self {
        ExecError(message.to_string())
    }
}

/// A [`ParseError`] with a `format!` message.
macro_rules! parse_error {
    ($($arg:tt)*) => {
        $crate::template::ParseError::from(format!($($arg)*))
    };
}

/// An [`ExecError`] with a `format!` message.
macro_rules! exec_error {
    ($($arg:tt)*) => {
        $crate::template::ExecError::from(format!($($arg)*))
    };
}

pub(crate) use {exec_error, parse_error};
