//! OAuth2 access tokens for connectors (SPEC §9): fetched with the
//! refresh-token grant (or client credentials when there is no refresh
//! token), cached in the store until shortly before they expire, and
//! shared by every run.
//!
//! - The cache is the per-workflow state store under a namespace no
//!   workflow can name (`connector:<name>`; workflow names have no `:`),
//!   keyed by a digest of what identifies the grant (token URL, client,
//!   refresh token, scopes), so a changed credential starts afresh.
//! - One refresh at a time *per process*: an async lock per grant. Runs
//!   that need a token while one is being fetched wait for it and then
//!   read the cache. (Several processes on one store may each refresh
//!   once; the last token written wins, and every token fetched stays
//!   valid until it expires.)
//! - Every token handed out is marked as a learnt secret
//!   ([`crate::secret::learnt`]), so records and logs never show it.
//! - Tests and dry runs (a canned sender) fetch nothing: requests carry a
//!   placeholder token.

use super::http::{Prepared, Response, Sender};
use super::StepEnv;
use crate::record::Timestamp;
use crate::secret::Secret;
use serde_json::Value;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

/// A cached token is used until this long before it expires.
pub const REFRESH_MARGIN: Duration = Duration::from_secs(60);
/// A token answer without `expires_in` is taken to last this long.
const DEFAULT_LIFETIME: Duration = Duration::from_secs(3600);
/// The token request's own timeout.
const TOKEN_TIMEOUT: Duration = Duration::from_secs(10);
/// What a request carries instead of a token when nothing is sent.
pub const PLACEHOLDER: &str = "[oauth2 access token]";

/// How the client authenticates to the token endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientAuth {
    /// `client_id` and `client_secret` as form fields.
    Body,
    /// HTTP Basic with the client id and secret.
    Basic,
}

/// Where one connector's tokens come from. Built when a workflow that
/// uses the connector is compiled; its values are known then.
pub struct TokenSource {
    /// The connector, for the cache's namespace and messages.
    pub connector: String,
    pub token_url: reqwest::Url,
    pub client_id: Secret,
    pub client_secret: Secret,
    /// Without one, the client-credentials grant.
    pub refresh_token: Option<Secret>,
    pub scopes: Vec<String>,
    pub client_auth: ClientAuth,
    /// The cache key: a digest of what identifies the grant.
    key: String,
}

impl std::fmt::Debug for TokenSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenSource")
            .field("connector", &self.connector)
            .field("token_url", &self.token_url.origin().ascii_serialization())
            .field("grant", &self.grant())
            .finish_non_exhaustive()
    }
}

/// Why no token could be had.
#[derive(Debug)]
pub struct TokenError {
    pub message: String,
    /// An outage (connection, timeout, 408, 429, 5xx): worth retrying.
    pub retryable: bool,
    /// The token request, when one was made: the step records it.
    pub exchange: Option<Exchange>,
}

#[derive(Debug)]
pub struct Exchange {
    pub request: Prepared,
    pub result: Result<Response, String>,
    pub started_at: Timestamp,
    pub duration_ms: u64,
}

/// The token as the store keeps it.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct Cached {
    access_token: String,
    /// Milliseconds since the epoch.
    expires_at: u64,
    /// A refresh token the provider rotated to, used from then on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    refresh_token: Option<String>,
}

impl TokenSource {
    pub fn new(
        connector: &str,
        token_url: reqwest::Url,
        client_id: Secret,
        client_secret: Secret,
        refresh_token: Option<Secret>,
        scopes: Vec<String>,
        client_auth: ClientAuth,
    ) -> TokenSource {
        let mut h = Sha256::new();
        for part in [
            token_url.as_str(),
            client_id.expose(),
            refresh_token.as_ref().map(Secret::expose).unwrap_or(""),
            &scopes.join(" "),
        ] {
            h.update(part.as_bytes());
            h.update([0]);
        }
        let key = format!("oauth2:{}", hex::encode(&h.finalize()[..12]));
        TokenSource {
            connector: connector.to_string(),
            token_url,
            client_id,
            client_secret,
            refresh_token,
            scopes,
            client_auth,
            key,
        }
    }

    fn grant(&self) -> &'static str {
        match self.refresh_token {
            Some(_) => "refresh_token",
            None => "client_credentials",
        }
    }

    fn namespace(&self) -> String {
        format!("connector:{}", self.connector)
    }

    /// A token to use now. `refused`: the token the provider just refused
    /// (`401`), which must not be handed out again.
    pub async fn token(
        &self,
        env: &StepEnv<'_>,
        refused: Option<&Secret>,
    ) -> Result<Secret, TokenError> {
        if let Sender::Canned(_) = env.http {
            return Ok(Secret::from(PLACEHOLDER));
        }
        let usable = |c: &Cached| {
            Timestamp::now().plus(REFRESH_MARGIN).0 < c.expires_at
                && refused.is_none_or(|r| r.expose() != c.access_token)
        };
        if refused.is_none() {
            if let Some(c) = self.cached(env).await.filter(|c| usable(c)) {
                return Ok(self.hand_out(c.access_token));
            }
        }
        let lock = refresh_lock(&self.key);
        let _one_at_a_time = lock.lock().await;
        // Another run may have refreshed while this one waited.
        let cached = self.cached(env).await;
        if let Some(c) = cached.as_ref().filter(|c| usable(c)) {
            return Ok(self.hand_out(c.access_token.clone()));
        }
        let rotated = cached.and_then(|c| c.refresh_token).map(Secret::from);
        let fresh = self.fetch(env, rotated.as_ref()).await?;
        // Both tokens are secrets from the moment they arrive: learnt
        // before the cache write, so nothing that write logs (a database
        // driver's statement log, say) can show them.
        let token = self.hand_out(fresh.access_token.clone());
        if let Some(r) = &fresh.refresh_token {
            crate::secret::learnt().mark(&self.key, &Secret::from(r.as_str()));
        }
        self.store(env, &fresh).await;
        Ok(token)
    }

    fn hand_out(&self, token: String) -> Secret {
        let token = Secret::from(token);
        crate::secret::learnt().mark(&self.key, &token);
        token
    }

    async fn cached(&self, env: &StepEnv<'_>) -> Option<Cached> {
        let (state, ns, key) = (env.state.clone(), self.namespace(), self.key.clone());
        let got = tokio::task::spawn_blocking(move || state.get(&ns, &key))
            .await
            .ok()?;
        match got {
            Ok(v) => v.and_then(|v| serde_json::from_value(v).ok()),
            Err(e) => {
                tracing::warn!(connector = %self.connector, error = %e, "cannot read the cached OAuth2 token; fetching a new one");
                None
            }
        }
    }

    async fn store(&self, env: &StepEnv<'_>, c: &Cached) {
        let Ok(value) = serde_json::to_value(c) else {
            return;
        };
        let (state, ns, key) = (env.state.clone(), self.namespace(), self.key.clone());
        let put = tokio::task::spawn_blocking(move || state.set(&ns, &key, &value)).await;
        if let Ok(Err(e)) = put {
            tracing::warn!(connector = %self.connector, error = %e, "cannot cache the OAuth2 token; the next run fetches another");
        }
    }

    /// Ask the token endpoint.
    async fn fetch(
        &self,
        env: &StepEnv<'_>,
        rotated: Option<&Secret>,
    ) -> Result<Cached, TokenError> {
        let request = self.request(rotated);
        let started_at = Timestamp::now();
        let clock = Instant::now();
        let result = env.http.send(&self.connector, &[], &request).await;
        let duration_ms = clock.elapsed().as_millis() as u64;
        let fail =
            |message: String, retryable: bool, result: Result<Response, String>| TokenError {
                message,
                retryable,
                exchange: Some(Exchange {
                    request: request.clone(),
                    result,
                    started_at,
                    duration_ms,
                }),
            };
        let resp = match &result {
            Err(e) => {
                let message =
                    format!("oauth2: cannot get an access token from the token endpoint: {e}");
                return Err(fail(message, true, result));
            }
            Ok(r) => r,
        };
        let body: Value = serde_json::from_slice(&resp.body).unwrap_or(Value::Null);
        if !(200..300).contains(&resp.status) {
            let why = match (
                body.get("error").and_then(Value::as_str),
                body.get("error_description").and_then(Value::as_str),
            ) {
                (Some(e), Some(d)) => format!(": {e} ({d})"),
                (Some(e), None) => format!(": {e}"),
                _ => String::new(),
            };
            let retryable = matches!(resp.status, 408 | 429 | 500..=599);
            let message = format!(
                "oauth2: the token endpoint answered HTTP {}{why}",
                resp.status
            );
            return Err(fail(message, retryable, result));
        }
        let Some(token) = body.get("access_token").and_then(Value::as_str) else {
            let message = "oauth2: the token endpoint's answer has no `access_token`".to_string();
            return Err(fail(message, false, result));
        };
        let lifetime = match body.get("expires_in") {
            Some(Value::Number(n)) => n.as_u64().map(Duration::from_secs),
            Some(Value::String(s)) => s.parse().ok().map(Duration::from_secs),
            _ => None,
        }
        .unwrap_or(DEFAULT_LIFETIME);
        let rotated = body
            .get("refresh_token")
            .and_then(Value::as_str)
            .filter(|r| {
                self.refresh_token
                    .as_ref()
                    .is_some_and(|own| own.expose() != *r)
            })
            .map(str::to_string);
        Ok(Cached {
            access_token: token.to_string(),
            expires_at: Timestamp::now().plus(lifetime).0,
            refresh_token: rotated,
        })
    }

    /// The token request (RFC 6749 §4.4 and §6): a form POST.
    fn request(&self, rotated: Option<&Secret>) -> Prepared {
        let mut form: Vec<(&str, &str)> = vec![("grant_type", self.grant())];
        if let Some(r) = rotated.or(self.refresh_token.as_ref()) {
            form.push(("refresh_token", r.expose()));
        }
        let scope = self.scopes.join(" ");
        if !scope.is_empty() {
            form.push(("scope", &scope));
        }
        let mut headers = vec![
            (
                "Content-Type".to_string(),
                "application/x-www-form-urlencoded".to_string(),
            ),
            ("Accept".to_string(), "application/json".to_string()),
        ];
        match self.client_auth {
            ClientAuth::Body => {
                form.push(("client_id", self.client_id.expose()));
                form.push(("client_secret", self.client_secret.expose()));
            }
            ClientAuth::Basic => {
                use base64::Engine as _;
                // RFC 6749 §2.3.1: each form-encoded, then joined.
                let enc = |s: &str| {
                    serde_urlencoded::to_string([("", s)])
                        .map(|p| p.trim_start_matches('=').to_string())
                        .unwrap_or_default()
                };
                let pair = format!(
                    "{}:{}",
                    enc(self.client_id.expose()),
                    enc(self.client_secret.expose())
                );
                headers.push((
                    "Authorization".to_string(),
                    format!(
                        "Basic {}",
                        base64::engine::general_purpose::STANDARD.encode(pair)
                    ),
                ));
            }
        }
        let body = serde_urlencoded::to_string(&form).unwrap_or_default();
        Prepared {
            method: reqwest::Method::POST,
            url: self.token_url.clone(),
            headers,
            body: body.into_bytes(),
            timeout: TOKEN_TIMEOUT,
            follow_redirects: false,
        }
    }
}

/// The lock that keeps one grant to one refresh at a time in this process.
/// A process-wide table, since every executor and workflow version of the
/// process that uses the grant must wait on the same lock.
fn refresh_lock(key: &str) -> Arc<tokio::sync::Mutex<()>> {
    static LOCKS: OnceLock<Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>> = OnceLock::new();
    let table = LOCKS.get_or_init(Mutex::default);
    let mut table = table.lock().unwrap_or_else(|p| p.into_inner());
    Arc::clone(table.entry(key.to_string()).or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn source(refresh: Option<&str>, auth: ClientAuth) -> TokenSource {
        TokenSource::new(
            "sheets",
            reqwest::Url::parse("https://oauth2.example.com/token").expect("url"),
            Secret::from("client id"),
            Secret::from("s3cret&="),
            refresh.map(Secret::from),
            vec!["a".into(), "b".into()],
            auth,
        )
    }

    #[test]
    fn the_token_request_follows_rfc_6749() {
        let s = source(Some("rt-1"), ClientAuth::Body);
        let r = s.request(None);
        let form: Vec<(String, String)> = serde_urlencoded::from_bytes(&r.body).expect("a form");
        let get = |k: &str| form.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
        assert_eq!(get("grant_type"), Some("refresh_token"));
        assert_eq!(get("refresh_token"), Some("rt-1"));
        assert_eq!(get("client_id"), Some("client id"));
        assert_eq!(get("client_secret"), Some("s3cret&="));
        assert_eq!(get("scope"), Some("a b"));
        // A rotated refresh token is used in place of the configured one.
        let r = s.request(Some(&Secret::from("rt-2")));
        let form: Vec<(String, String)> = serde_urlencoded::from_bytes(&r.body).expect("a form");
        assert!(form.contains(&("refresh_token".into(), "rt-2".into())));

        let s = source(None, ClientAuth::Basic);
        let r = s.request(None);
        let form: Vec<(String, String)> = serde_urlencoded::from_bytes(&r.body).expect("a form");
        assert!(form.contains(&("grant_type".into(), "client_credentials".into())));
        assert!(!form.iter().any(|(k, _)| k == "client_secret"));
        let auth = r
            .headers
            .iter()
            .find(|(k, _)| k == "Authorization")
            .map(|(_, v)| v.clone())
            .expect("basic auth");
        use base64::Engine as _;
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(auth.trim_start_matches("Basic "))
            .expect("b64");
        assert_eq!(decoded, b"client+id:s3cret%26%3D");
        // The debug print shows no secret.
        let shown = format!("{s:?} {r:?}");
        assert!(!shown.contains("s3cret"), "{shown}");
    }

    #[test]
    fn the_key_changes_with_the_credentials() {
        let a = source(Some("rt-1"), ClientAuth::Body);
        let b = source(Some("rt-2"), ClientAuth::Body);
        assert_ne!(a.key, b.key);
        assert!(!a.key.contains("rt-1"));
    }
}
