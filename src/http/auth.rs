//! Admin access (SPEC §8): when `HOOKFLOW_API_TOKEN` is set, `/api/*` and
//! `/ui/*` need it, as `Authorization: Bearer <token>` or HTTP Basic with
//! the token as the password. Both sides are hashed before a constant-time
//! comparison, so neither the content nor the length of the token leaks
//! through timing. `/hooks/*` stays public (protected per workflow by
//! `verify`).

use super::error::ApiError;
use super::AppState;
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

pub async fn require_token(State(state): State<AppState>, req: Request, next: Next) -> Response {
    match &state.api_token {
        Some(token) if !authorized(req.headers(), token.expose()) => {
            let mut resp = ApiError::new(
                StatusCode::UNAUTHORIZED,
                "this needs the API token: `Authorization: Bearer <token>`, or Basic with the token as password",
            )
            .into_response();
            resp.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                header::HeaderValue::from_static("Basic realm=\"hookflow\", charset=\"UTF-8\""),
            );
            resp
        }
        _ => next.run(req).await,
    }
}

/// Does the request carry `token`?
pub fn authorized(headers: &HeaderMap, token: &str) -> bool {
    let Some(value) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    let (scheme, rest) = value.trim().split_once(' ').unwrap_or((value, ""));
    let offered = if scheme.eq_ignore_ascii_case("bearer") {
        rest.trim().to_string()
    } else if scheme.eq_ignore_ascii_case("basic") {
        let Ok(decoded) = base64::engine::general_purpose::STANDARD.decode(rest.trim()) else {
            return false;
        };
        let text = String::from_utf8_lossy(&decoded).into_owned();
        match text.split_once(':') {
            Some((_, password)) => password.to_string(),
            None => return false,
        }
    } else {
        return false;
    };
    let a = Sha256::digest(offered.as_bytes());
    let b = Sha256::digest(token.as_bytes());
    a.ct_eq(&b).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(value: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::AUTHORIZATION, value.parse().expect("valid header"));
        h
    }

    #[test]
    fn bearer_and_basic() {
        let basic = base64::engine::general_purpose::STANDARD.encode("admin:s3cret-token");
        assert!(authorized(&with("Bearer s3cret-token"), "s3cret-token"));
        assert!(authorized(&with(&format!("Basic {basic}")), "s3cret-token"));
        assert!(!authorized(&with("Bearer s3cret-tokeN"), "s3cret-token"));
        assert!(!authorized(&with("Bearer "), "s3cret-token"));
        assert!(!authorized(&with("Digest x"), "s3cret-token"));
        assert!(!authorized(&with("Basic !!!"), "s3cret-token"));
        assert!(!authorized(&HeaderMap::new(), "s3cret-token"));
    }
}
