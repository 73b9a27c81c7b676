//! An optional shared secret in front of the whole API, for a public Lambda URL.
//!
//! `PARQUETRY_AUTH_TOKEN` holds one secret, or several separated by commas so a secret can be
//! rotated without downtime. A request passes with either
//!
//! * `Authorization: Bearer <secret>` (Promtail `bearer_token`, Alloy `bearer_token`), or
//! * `Authorization: Basic base64(<any user>:<secret>)` (Promtail/Alloy `basic_auth`, Grafana's
//!   Loki data source "Basic auth"); the user name is free, conventionally the tenant id.
//!
//! Anything else gets 401 before the router sees the request. The check runs in constant time
//! over the secret's bytes. It authenticates the caller, not the tenant: with `auth_enabled`
//! the router still requires `X-Scope-OrgID`.

use std::sync::Arc;
use subtle::ConstantTimeEq;

use axum::Router;
use axum::extract::Request;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::Response;
use base64::Engine as _;

pub use parquetry_host::lambda::{AUTH_TOKEN_ENV, MIN_TOKEN_LEN, parse_tokens};

/// Puts the secret check in front of `app`.
pub fn protect(app: Router, tokens: Vec<String>) -> Router {
    let tokens: Arc<[String]> = tokens.into();
    app.layer(axum::middleware::from_fn(
        move |req: Request, next: Next| {
            let tokens = tokens.clone();
            async move {
                if accepts(&tokens, req.headers()) {
                    next.run(req).await
                } else {
                    unauthorized()
                }
            }
        },
    ))
}

/// True if the request carries one of `tokens` as a bearer token or basic-auth password.
pub fn accepts(tokens: &[String], headers: &HeaderMap) -> bool {
    let Some(value) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    let Some((scheme, rest)) = value.trim().split_once(' ') else {
        return false;
    };
    let presented: Vec<u8> = if scheme.eq_ignore_ascii_case("bearer") {
        rest.trim().as_bytes().to_vec()
    } else if scheme.eq_ignore_ascii_case("basic") {
        let Ok(decoded) = base64::engine::general_purpose::STANDARD.decode(rest.trim()) else {
            return false;
        };
        match decoded.iter().position(|&b| b == b':') {
            Some(i) => decoded[i + 1..].to_vec(),
            None => return false,
        }
    } else {
        return false;
    };
    // Check every secret, so the time taken does not tell which one nearly matched.
    let mut ok = subtle::Choice::from(0);
    for t in tokens {
        ok |= t.as_bytes().ct_eq(&presented);
    }
    ok.into()
}

fn unauthorized() -> Response {
    let mut resp = crate::plain_text(
        StatusCode::UNAUTHORIZED,
        "missing or invalid credentials: send Authorization: Bearer <token> or basic auth\n".into(),
    );
    resp.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static("Basic realm=\"parquetry\""),
    );
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(auth: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::AUTHORIZATION, HeaderValue::from_str(auth).unwrap());
        h
    }

    #[test]
    fn bearer_and_basic_are_accepted() {
        let tokens = parse_tokens("old-secret-0123456789, new-secret-0123456789").unwrap();
        assert!(accepts(&tokens, &headers("Bearer new-secret-0123456789")));
        assert!(accepts(&tokens, &headers("bearer old-secret-0123456789")));
        let basic =
            base64::engine::general_purpose::STANDARD.encode("team-a:old-secret-0123456789");
        assert!(accepts(&tokens, &headers(&format!("Basic {basic}"))));
    }

    #[test]
    fn anything_else_is_refused() {
        let tokens = parse_tokens("the-secret-0123456789").unwrap();
        assert!(!accepts(&tokens, &HeaderMap::new()));
        assert!(!accepts(&tokens, &headers("Bearer the-secret-012345678")));
        assert!(!accepts(&tokens, &headers("Bearer the-secret-0123456789x")));
        assert!(!accepts(&tokens, &headers("Token the-secret-0123456789")));
        assert!(!accepts(&tokens, &headers("Basic !!!")));
        let no_colon = base64::engine::general_purpose::STANDARD.encode("the-secret-0123456789");
        assert!(!accepts(&tokens, &headers(&format!("Basic {no_colon}"))));
    }
}
