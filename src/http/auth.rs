//! Admin access (SPEC §8). When `HOOKFLOW_API_TOKEN` is set, `/api/*` and
//! `/ui/*` need it, as `Authorization: Bearer <token>` or HTTP Basic with
//! the token as the password; the token alone decides. Both sides are
//! hashed before a constant-time comparison, so neither the content nor
//! the length of the token leaks through timing.
//!
//! Without a token, the admin surface is open to anything that can reach
//! the listener, which on loopback means this machine, but also every web
//! page its browsers open. Two rules keep those pages out ([`local_only`]):
//!
//! - **Host.** A page cannot read our answers unless it is same-origin
//!   with us; DNS rebinding gets there by pointing a name the attacker owns
//!   at 127.0.0.1, and the browser then sends that name as `Host`. So only
//!   the listen address itself, `localhost` and loopback IPs are answered.
//! - **Content-Type.** A page can still *send* a request it cannot read:
//!   a cross-site form post (no preflight) carries a form or `text/plain`
//!   type. A state-changing `/api` request must say `application/json`,
//!   which a browser sends cross-site only after a CORS preflight that we
//!   never grant.
//!
//! With a token, Bearer needs nothing more: a page cannot make a browser
//! send that header cross-site without a preflight. Basic can: a browser
//! that was given the credentials once (the UI's login prompt) resends them
//! by itself with every request to us, a cross-site form post included. So
//! a state-changing `/api` request authorized by Basic must say
//! `application/json` too (stricter than SPEC §8, which states the rule
//! for the tokenless case only; the UI always sends that type).
//!
//! `/hooks/*` stays public (protected per workflow by `verify`).

use super::error::ApiError;
use super::AppState;
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use sha2::{Digest, Sha256};
use std::net::{IpAddr, SocketAddr};
use subtle::ConstantTimeEq;

/// The one media type a state-changing `/api` request may carry without a token.
pub const JSON_TYPE: &str = "application/json";
/// The environment variable that turns token access on.
const TOKEN_VAR: &str = "HOOKFLOW_API_TOKEN";

/// The admin routes' gate: the token when one is set, else [`local_only`].
pub async fn guard(State(state): State<AppState>, req: Request, next: Next) -> Response {
    match &state.api_token {
        Some(token) => match authorized(req.headers(), token.expose()) {
            Some(Scheme::Basic) if cross_site_form_shaped(&req) => forbidden(format!(
                "a {} to /api authorized with Basic (which browsers resend by themselves) must carry \
                 `Content-Type: {JSON_TYPE}` (this keeps cross-site form posts out); send that header, \
                 or use `Authorization: Bearer <token>`",
                req.method()
            ))
            .into_response(),
            Some(_) => next.run(req).await,
            None => unauthorized(),
        },
        None => match local_only(&req, state.listen) {
            Ok(()) => next.run(req).await,
            Err(e) => e.into_response(),
        },
    }
}

/// 401 with the Basic challenge (the UI's login prompt).
fn unauthorized() -> Response {
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

/// A state-changing `/api` request without the JSON type: what a
/// cross-site form post looks like.
fn cross_site_form_shaped(req: &Request) -> bool {
    changes_state(req.method()) && req.uri().path().starts_with("/api/") && !is_json(req.headers())
}

/// The tokenless rules: a local `Host`, and a JSON `Content-Type` on every
/// state-changing `/api` request.
pub fn local_only(req: &Request, listen: SocketAddr) -> Result<(), ApiError> {
    // An absolute-form request line names the host too; both must be local.
    let named = [
        req.uri().authority().map(|a| a.as_str().to_string()),
        req.headers()
            .get(header::HOST)
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned()),
    ];
    let mut seen = false;
    for host in named.iter().flatten() {
        seen = true;
        if !is_local_host(host, listen) {
            return Err(forbidden(format!(
                "this server has no API token, so /api and /ui answer only requests addressed to {listen}, \
                 localhost or a loopback IP; Host `{host}` is none of them (this keeps web pages out through \
                 DNS rebinding). Use one of those addresses, or set {TOKEN_VAR} to allow other names."
            )));
        }
    }
    if !seen {
        return Err(forbidden(format!(
            "this server has no API token, so /api and /ui need a Host header naming {listen}, localhost \
             or a loopback IP; send one, or set {TOKEN_VAR}"
        )));
    }
    if cross_site_form_shaped(req) {
        return Err(forbidden(format!(
            "this server has no API token, so a {} to /api must carry `Content-Type: {JSON_TYPE}` \
             (this keeps cross-site form posts out); send that header, or set {TOKEN_VAR}",
            req.method()
        )));
    }
    Ok(())
}

fn forbidden(message: String) -> ApiError {
    ApiError::new(StatusCode::FORBIDDEN, message)
}

/// Methods a browser form or a simple request could use to change state.
fn changes_state(method: &Method) -> bool {
    !matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
}

/// `Content-Type: application/json`, parameters allowed.
fn is_json(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|essence| essence.trim().eq_ignore_ascii_case(JSON_TYPE))
}

/// Does `host` (a `Host` value: name or IP, optional port) name this
/// server from this machine? `localhost` and loopback IPs with any port,
/// and the listen address itself. When listening on every interface
/// (0.0.0.0 or ::), any IP literal with the listen port counts as its
/// address: a name is what DNS rebinding needs, and an IP literal is not
/// one.
pub fn is_local_host(host: &str, listen: SocketAddr) -> bool {
    let Some((name, port)) = split_host(host) else {
        return false;
    };
    if name.eq_ignore_ascii_case("localhost") {
        return true;
    }
    let Ok(ip) = name.parse::<IpAddr>() else {
        return false;
    };
    if ip.is_loopback() {
        return true;
    }
    // Without a port, a browser went to the scheme's default.
    let port = port.unwrap_or(80);
    port == listen.port() && (ip == listen.ip() || listen.ip().is_unspecified())
}

/// `name[:port]` or `[v6][:port]` → (name without brackets, port). `None`
/// for anything else (userinfo, a path, a bad port, an empty name).
fn split_host(host: &str) -> Option<(&str, Option<u16>)> {
    let (name, port) = if let Some(rest) = host.strip_prefix('[') {
        let (v6, after) = rest.split_once(']')?;
        v6.parse::<std::net::Ipv6Addr>().ok()?;
        match after {
            "" => (v6, None),
            p => (v6, Some(p.strip_prefix(':')?)),
        }
    } else {
        match host.split_once(':') {
            Some((n, p)) => (n, Some(p)),
            None => (host, None),
        }
    };
    let valid_name = !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b':'));
    if !valid_name {
        return None;
    }
    let port = match port {
        None => None,
        Some(p) if !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) => Some(p.parse().ok()?),
        Some(_) => return None,
    };
    Some((name, port))
}

/// How a request carried the token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    /// `Authorization: Bearer <token>`: never sent by a browser on its own.
    Bearer,
    /// HTTP Basic with the token as password: resent by browsers that
    /// were given it once.
    Basic,
}

/// Does the request carry `token`, and how?
pub fn authorized(headers: &HeaderMap, token: &str) -> Option<Scheme> {
    let value = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())?;
    let (scheme, rest) = value.trim().split_once(' ').unwrap_or((value, ""));
    let (how, offered) = if scheme.eq_ignore_ascii_case("bearer") {
        (Scheme::Bearer, rest.trim().to_string())
    } else if scheme.eq_ignore_ascii_case("basic") {
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(rest.trim())
            .ok()?;
        let text = String::from_utf8_lossy(&decoded).into_owned();
        let (_, password) = text.split_once(':')?;
        (Scheme::Basic, password.to_string())
    } else {
        return None;
    };
    let a = Sha256::digest(offered.as_bytes());
    let b = Sha256::digest(token.as_bytes());
    bool::from(a.ct_eq(&b)).then_some(how)
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
        let t = "s3cret-token";
        assert_eq!(
            authorized(&with("Bearer s3cret-token"), t),
            Some(Scheme::Bearer)
        );
        assert_eq!(
            authorized(&with(&format!("Basic {basic}")), t),
            Some(Scheme::Basic)
        );
        assert_eq!(authorized(&with("Bearer s3cret-tokeN"), t), None);
        assert_eq!(authorized(&with("Bearer "), t), None);
        assert_eq!(authorized(&with("Digest x"), t), None);
        assert_eq!(authorized(&with("Basic !!!"), t), None);
        assert_eq!(authorized(&HeaderMap::new(), t), None);
    }

    #[test]
    fn local_hosts() {
        let on = |a: &str| a.parse::<SocketAddr>().expect("addr");
        let lo = on("127.0.0.1:8080");
        for host in [
            "127.0.0.1:8080",
            "127.0.0.1",
            "127.9.9.9:1",
            "localhost",
            "localhost:8080",
            "LOCALHOST:9",
            "[::1]",
            "[::1]:8080",
        ] {
            assert!(is_local_host(host, lo), "{host}");
        }
        for host in [
            "",
            ":8080",
            "evil.example",
            "evil.example:8080",
            "localhost.evil.example",
            "127.0.0.1.nip.io:8080",
            "localhost:8080@evil.example",
            "user@localhost",
            "localhost:",
            "localhost:99999",
            "localhost:80x",
            "[::1",
            "[::1]x",
            "[evil.example]:8080",
            "10.0.0.1:8080",
            "0.0.0.0:8080",
            "::1",
        ] {
            assert!(!is_local_host(host, lo), "{host}");
        }
        // The listen address itself, by IP; port 80 may be left out.
        assert!(is_local_host("192.168.1.5:8080", on("192.168.1.5:8080")));
        assert!(!is_local_host("192.168.1.5:8081", on("192.168.1.5:8080")));
        assert!(is_local_host("192.168.1.5", on("192.168.1.5:80")));
        assert!(is_local_host("[fd00::5]:8080", on("[fd00::5]:8080")));
        // Every interface: any IP literal on the port, never a name.
        assert!(is_local_host("10.1.2.3:8080", on("0.0.0.0:8080")));
        assert!(is_local_host("[fd00::5]:8080", on("[::]:8080")));
        assert!(!is_local_host("10.1.2.3:9090", on("0.0.0.0:8080")));
        assert!(!is_local_host("box.example:8080", on("0.0.0.0:8080")));
    }

    #[test]
    fn json_content_types() {
        let typed = |v: &str| {
            let mut h = HeaderMap::new();
            h.insert(header::CONTENT_TYPE, v.parse().expect("valid header"));
            h
        };
        for ok in [
            "application/json",
            "application/json; charset=utf-8",
            "Application/JSON",
            " application/json ;x=y",
        ] {
            assert!(is_json(&typed(ok)), "{ok}");
        }
        for no in [
            "text/plain",
            "application/x-www-form-urlencoded",
            "multipart/form-data; boundary=x",
            "application/jsonp",
            "application/json-patch+json",
            "text/plain; application/json",
            "",
        ] {
            assert!(!is_json(&typed(no)), "{no}");
        }
        assert!(!is_json(&HeaderMap::new()));
    }
}
