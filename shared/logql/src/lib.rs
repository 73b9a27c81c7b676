//! LogQL for Parquetry: lexer, parser, syntax tree, printer and validation. No I/O.
//!
//! This crate owns the *language*: it turns query text into an [`Expr`] tree that the query
//! engine evaluates, rejects what Loki rejects with Loki's error texts, and prints trees back
//! as canonical LogQL (`Display`, [`format_query`]). It does not evaluate anything, except for
//! the small pure helpers an engine needs to interpret the tree the same way the validator
//! did ([`pattern`], [`ip`], [`regexes`]).
//!
//! Entry points:
//! - [`parse_expr`]: a full query, validated (size limit, syntax, the non-empty selector
//!   rule, range aggregation rules).
//! - [`parse_expr_unvalidated`]: the same without the whole-query rules.
//! - [`parse_selector`]: a lone `{…}` selector (series `match[]`, label `query` parameters);
//!   empty-compatible matchers are allowed, callers decide.
//! - [`format_query`]: parse and pretty-print, for `/loki/api/v1/format_query`.
//!
//! Regular expressions are validated during parsing; the tree stores their source text
//! (stream and label matchers hold compiled [`parquetry_model::Matcher`]s). Compile the
//! others with [`regexes::line_filter_regex`] / [`regexes::anchored_regex`], which then cannot
//! fail. `line_format`/`label_format` templates and `json` path expressions are *not*
//! validated here: the engine owns the template and JSON-path languages.
// Non-test code never panics on a `Result` or `Option`: errors are typed and returned.
#![cfg_attr(not(test), warn(clippy::unwrap_used, clippy::expect_used))]

pub mod ast;
mod error;
pub mod ip;
mod lexer;
mod parser;
pub mod pattern;
mod printer;
pub mod regexes;
mod validate;

#[cfg(test)]
mod tests;

pub use ast::*;
pub use error::ParseError;
pub use lexer::{is_function_word, is_reserved_word};
pub use parser::MAX_DEPTH;
pub use printer::{format_duration, format_number};
pub use validate::EMPTY_COMPATIBLE_MSG;

use parquetry_model::Matcher;

/// Queries must be shorter than this many bytes.
pub const MAX_QUERY_SIZE: usize = 131_072;

fn check_size(input: &str) -> Result<(), ParseError> {
    if input.len() >= MAX_QUERY_SIZE {
        return Err(ParseError::validation(format!(
            "input size too long ({} > {MAX_QUERY_SIZE})",
            input.len()
        )));
    }
    Ok(())
}

/// Parses and validates a full LogQL query.
pub fn parse_expr(input: &str) -> Result<Expr, ParseError> {
    let expr = parse_expr_unvalidated(input)?;
    validate::validate(&expr)?;
    Ok(expr)
}

/// Parses a full LogQL query without the whole-query rules (non-empty selector, range
/// aggregation table). Local checks (regexes, aggregation parameters, operand types) still
/// apply.
pub fn parse_expr_unvalidated(input: &str) -> Result<Expr, ParseError> {
    check_size(input)?;
    parser::parse_query(input)
}

/// Parses a lone stream selector such as `{app="a", env=~"p.*"}`. `{}` and selectors whose
/// matchers all match the empty string are accepted.
pub fn parse_selector(input: &str) -> Result<Vec<Matcher>, ParseError> {
    check_size(input)?;
    parser::parse_selector(input)
}

/// Parses, validates and pretty-prints a query, for `/loki/api/v1/format_query`.
pub fn format_query(input: &str) -> Result<String, ParseError> {
    Ok(printer::pretty(&parse_expr(input)?))
}
