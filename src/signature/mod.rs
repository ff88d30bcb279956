//! Signature verification (SPEC §5): pure functions over the raw body bytes,
//! the request headers, a secret and the current time — and, for the
//! schemes that sign it (Twilio, HubSpot), the method and the public URL
//! the sender used ([`Signed`]). Comparisons are constant-time
//! (`Mac::verify_slice`, or digests compared with `subtle` for GitLab's
//! plain token). Reasons never contain a secret.
//!
//! A header value that lacks its scheme's prefix (`sha256=`, `v0=`, `v1=`
//! in Stripe's list, `v1,` in Standard Webhooks' list, a configured
//! `prefix`) is a [`Rejection::Mismatch`]: the prefix names the algorithm,
//! and a value without it was not made the way the scheme signs.

use base64::Engine as _;
use hmac::{Hmac, Mac};
use sha2::{Sha256, Sha512};
use std::time::Duration;

/// A signature scheme with its settings (secret supplied per call).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scheme {
    Stripe {
        tolerance: Duration,
    },
    Github,
    Shopify,
    Slack {
        tolerance: Duration,
    },
    Standard {
        tolerance: Duration,
    },
    Hmac {
        header: String,
        algorithm: Algorithm,
        encoding: Encoding,
        prefix: String,
    },
    /// GitLab: `X-Gitlab-Token` holds the secret token itself.
    Gitlab,
    /// Twilio: `X-Twilio-Signature`, base64 HMAC-SHA1 of the public URL
    /// followed by the form parameters sorted by name, each as name then
    /// value. A JSON body is signed through the URL's `bodySHA256`
    /// parameter (hex SHA-256 of the body) instead.
    Twilio,
    /// Linear: `Linear-Signature`, hex HMAC-SHA256 of the body, whose
    /// `webhookTimestamp` (milliseconds) must be within the tolerance.
    Linear {
        tolerance: Duration,
    },
    /// HubSpot v3: `X-HubSpot-Signature-v3`, base64 HMAC-SHA256 of method,
    /// URI, body and `X-HubSpot-Request-Timestamp` (milliseconds), which
    /// must be within the tolerance.
    Hubspot {
        tolerance: Duration,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Algorithm {
    Sha1,
    Sha256,
    Sha512,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    Hex,
    Base64,
}

pub const DEFAULT_TOLERANCE: Duration = Duration::from_secs(300);
/// Linear asks receivers to refuse deliveries whose `webhookTimestamp`
/// is more than a minute away.
pub const LINEAR_TOLERANCE: Duration = Duration::from_secs(60);

/// A request as the sender signed it.
pub struct Signed<'a> {
    pub method: &'a str,
    /// The URL the sender used, as it sent it (Twilio and HubSpot sign it):
    /// the workflow's `verify.url`, or one built from the `Host` header and
    /// the path.
    pub url: &'a str,
    pub headers: &'a dyn Headers,
    pub body: &'a [u8],
}

/// Why a request was refused; shown to the sender and stored.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Rejection {
    #[error("missing signature header `{0}`")]
    MissingHeader(&'static str),
    #[error("missing signature header `{0}`")]
    MissingCustomHeader(String),
    #[error("malformed signature header `{0}`")]
    Malformed(&'static str),
    #[error("signature timestamp is outside the allowed tolerance")]
    Stale,
    #[error("signature does not match")]
    Mismatch,
    #[error("the signed body has no `{0}`")]
    MissingField(&'static str),
}

/// Headers by lower-case name.
pub trait Headers {
    fn get(&self, name: &str) -> Option<&str>;
}

impl Headers for std::collections::BTreeMap<String, String> {
    fn get(&self, name: &str) -> Option<&str> {
        std::collections::BTreeMap::get(self, name).map(String::as_str)
    }
}

impl Scheme {
    /// Whether `name` (lowercase, as requests' headers are kept) is a
    /// header that carries this scheme's signatures (redacted from history).
    pub fn carries_signature(&self, name: &str) -> bool {
        let names: &[&str] = match self {
            Scheme::Stripe { .. } => &["stripe-signature"],
            Scheme::Github => &["x-hub-signature-256", "x-hub-signature"],
            Scheme::Shopify => &["x-shopify-hmac-sha256"],
            Scheme::Slack { .. } => &["x-slack-signature"],
            Scheme::Standard { .. } => &["webhook-signature"],
            Scheme::Hmac { header, .. } => return header.eq_ignore_ascii_case(name),
            Scheme::Gitlab => &[GITLAB_TOKEN],
            Scheme::Twilio => &[TWILIO_SIGNATURE],
            Scheme::Linear { .. } => &[LINEAR_SIGNATURE],
            Scheme::Hubspot { .. } => &[HUBSPOT_SIGNATURE_V3, "x-hubspot-signature"],
        };
        names.contains(&name)
    }

    /// Whether the scheme signs the URL the sender used (so the server
    /// must know its public URL).
    pub fn signs_url(&self) -> bool {
        match self {
            Scheme::Twilio | Scheme::Hubspot { .. } => true,
            Scheme::Stripe { .. }
            | Scheme::Github
            | Scheme::Shopify
            | Scheme::Slack { .. }
            | Scheme::Standard { .. }
            | Scheme::Hmac { .. }
            | Scheme::Gitlab
            | Scheme::Linear { .. } => false,
        }
    }

    /// Verify `body` as signed with `secret`, for schemes that sign only
    /// headers and body (a URL-signing scheme sees a POST to an empty URL).
    /// `now` is seconds since the epoch.
    pub fn verify(
        &self,
        secret: &[u8],
        headers: &dyn Headers,
        body: &[u8],
        now: u64,
    ) -> Result<(), Rejection> {
        self.verify_request(
            secret,
            &Signed {
                method: "POST",
                url: "",
                headers,
                body,
            },
            now,
        )
    }

    /// Verify a request as signed with `secret`. `now` is seconds since
    /// the epoch.
    pub fn verify_request(&self, secret: &[u8], req: &Signed, now: u64) -> Result<(), Rejection> {
        let (headers, body) = (req.headers, req.body);
        match self {
            Scheme::Stripe { tolerance } => {
                const H: &str = "stripe-signature";
                let header = headers.get(H).ok_or(Rejection::MissingHeader(H))?;
                let mut t = None;
                let mut sigs = Vec::new();
                for part in header.split(',') {
                    match part.trim().split_once('=') {
                        Some(("t", v)) => t = Some(v),
                        Some(("v1", v)) => sigs.push(v),
                        _ => {}
                    }
                }
                let t = t.ok_or(Rejection::Malformed(H))?;
                let ts: u64 = t.parse().map_err(|_| Rejection::Malformed(H))?;
                check_time(ts, now, *tolerance)?;
                if sigs.is_empty() {
                    // No `v1=` entry: nothing signed the way Stripe signs.
                    return Err(Rejection::Mismatch);
                }
                any_matches(
                    Algorithm::Sha256,
                    secret,
                    &[t.as_bytes(), b".", body],
                    sigs.iter().map(|s| hex::decode(s).ok()),
                )
            }
            Scheme::Github => {
                const H: &str = "x-hub-signature-256";
                let header = headers.get(H).ok_or(Rejection::MissingHeader(H))?;
                let hexsig = header
                    .trim()
                    .strip_prefix("sha256=")
                    .ok_or(Rejection::Mismatch)?;
                any_matches(
                    Algorithm::Sha256,
                    secret,
                    &[body],
                    [hex::decode(hexsig).ok()],
                )
            }
            Scheme::Shopify => {
                const H: &str = "x-shopify-hmac-sha256";
                let header = headers.get(H).ok_or(Rejection::MissingHeader(H))?;
                any_matches(Algorithm::Sha256, secret, &[body], [b64(header.trim())])
            }
            Scheme::Slack { tolerance } => {
                const H: &str = "x-slack-signature";
                const T: &str = "x-slack-request-timestamp";
                let header = headers.get(H).ok_or(Rejection::MissingHeader(H))?;
                let t = headers.get(T).ok_or(Rejection::MissingHeader(T))?.trim();
                let ts: u64 = t.parse().map_err(|_| Rejection::Malformed(T))?;
                check_time(ts, now, *tolerance)?;
                let hexsig = header
                    .trim()
                    .strip_prefix("v0=")
                    .ok_or(Rejection::Mismatch)?;
                let msg = [b"v0:", t.as_bytes(), b":", body];
                any_matches(Algorithm::Sha256, secret, &msg, [hex::decode(hexsig).ok()])
            }
            Scheme::Standard { tolerance } => {
                const I: &str = "webhook-id";
                const T: &str = "webhook-timestamp";
                const S: &str = "webhook-signature";
                let id = headers.get(I).ok_or(Rejection::MissingHeader(I))?.trim();
                let t = headers.get(T).ok_or(Rejection::MissingHeader(T))?.trim();
                let sigs = headers.get(S).ok_or(Rejection::MissingHeader(S))?;
                let ts: u64 = t.parse().map_err(|_| Rejection::Malformed(T))?;
                check_time(ts, now, *tolerance)?;
                let key = standard_secret(secret);
                let msg = [id.as_bytes(), b".", t.as_bytes(), b".", body];
                let candidates: Vec<_> = sigs
                    .split_whitespace()
                    .filter_map(|s| s.strip_prefix("v1,"))
                    .map(b64)
                    .collect();
                if candidates.is_empty() {
                    // No `v1,` entry: nothing signed the way the scheme signs.
                    return Err(Rejection::Mismatch);
                }
                any_matches(Algorithm::Sha256, &key, &msg, candidates)
            }
            Scheme::Hmac {
                header,
                algorithm,
                encoding,
                prefix,
            } => {
                let value = headers
                    .get(&header.to_ascii_lowercase())
                    .ok_or_else(|| Rejection::MissingCustomHeader(header.clone()))?
                    .trim();
                // An empty prefix strips nothing; a configured one must be there.
                let value = value
                    .strip_prefix(prefix.as_str())
                    .ok_or(Rejection::Mismatch)?;
                let sig = match encoding {
                    Encoding::Hex => hex::decode(value).ok(),
                    Encoding::Base64 => b64(value),
                };
                any_matches(*algorithm, secret, &[body], [sig])
            }
            Scheme::Gitlab => {
                let token = headers
                    .get(GITLAB_TOKEN)
                    .ok_or(Rejection::MissingHeader(GITLAB_TOKEN))?;
                // Digests of equal length, compared in constant time: the
                // comparison tells nothing about the token, not even its
                // length.
                use sha2::Digest;
                use subtle::ConstantTimeEq;
                let got = Sha256::digest(token.trim().as_bytes());
                let want = Sha256::digest(secret);
                if bool::from(got.ct_eq(&want)) {
                    Ok(())
                } else {
                    Err(Rejection::Mismatch)
                }
            }
            Scheme::Twilio => {
                let header = headers
                    .get(TWILIO_SIGNATURE)
                    .ok_or(Rejection::MissingHeader(TWILIO_SIGNATURE))?;
                let msg = twilio_message(req.url, body)?;
                any_matches(Algorithm::Sha1, secret, &[&msg], [b64(header.trim())])
            }
            Scheme::Linear { tolerance } => {
                let header = headers
                    .get(LINEAR_SIGNATURE)
                    .ok_or(Rejection::MissingHeader(LINEAR_SIGNATURE))?;
                any_matches(
                    Algorithm::Sha256,
                    secret,
                    &[body],
                    [hex::decode(header.trim()).ok()],
                )?;
                // Only a body known to be Linear's is read for its time.
                const T: &str = "webhookTimestamp";
                let ms = serde_json::from_slice::<serde_json::Value>(body)
                    .ok()
                    .and_then(|v| v.get(T).and_then(serde_json::Value::as_u64))
                    .ok_or(Rejection::MissingField(T))?;
                check_time(ms / 1000, now, *tolerance)
            }
            Scheme::Hubspot { tolerance } => {
                const H: &str = HUBSPOT_SIGNATURE_V3;
                const T: &str = "x-hubspot-request-timestamp";
                let header = headers.get(H).ok_or(Rejection::MissingHeader(H))?;
                let t = headers.get(T).ok_or(Rejection::MissingHeader(T))?.trim();
                let ms: u64 = t.parse().map_err(|_| Rejection::Malformed(T))?;
                check_time(ms / 1000, now, *tolerance)?;
                let uri = hubspot_uri(req.url);
                let msg = [req.method.as_bytes(), uri.as_bytes(), body, t.as_bytes()];
                any_matches(Algorithm::Sha256, secret, &msg, [b64(header.trim())])
            }
        }
    }
}

pub const GITLAB_TOKEN: &str = "x-gitlab-token";
pub const TWILIO_SIGNATURE: &str = "x-twilio-signature";
pub const LINEAR_SIGNATURE: &str = "linear-signature";
pub const HUBSPOT_SIGNATURE_V3: &str = "x-hubspot-signature-v3";

/// What Twilio signs: the URL, then each form parameter of the body sorted
/// by name (then value), name and value with no delimiter. A URL carrying
/// `bodySHA256` (Twilio's JSON webhooks) signs the URL alone, and the
/// body must have that hex SHA-256.
fn twilio_message(url: &str, body: &[u8]) -> Result<Vec<u8>, Rejection> {
    let query = url.split_once('?').map(|(_, q)| q).unwrap_or("");
    let body_hash = serde_urlencoded::from_str::<Vec<(String, String)>>(query)
        .unwrap_or_default()
        .into_iter()
        .find(|(k, _)| k == "bodySHA256")
        .map(|(_, v)| v);
    if let Some(want) = body_hash {
        use sha2::Digest;
        use subtle::ConstantTimeEq;
        let got = hex::encode(Sha256::digest(body));
        if !bool::from(got.as_bytes().ct_eq(want.to_ascii_lowercase().as_bytes())) {
            return Err(Rejection::Mismatch);
        }
        return Ok(url.as_bytes().to_vec());
    }
    let mut params: Vec<(String, String)> =
        serde_urlencoded::from_bytes(body).map_err(|_| Rejection::Mismatch)?;
    params.sort();
    let mut msg = url.as_bytes().to_vec();
    for (k, v) in params {
        msg.extend_from_slice(k.as_bytes());
        msg.extend_from_slice(v.as_bytes());
    }
    Ok(msg)
}

/// The request URI as HubSpot signs it: these percent-encoded characters
/// decoded (in either hex case), everything else as sent.
fn hubspot_uri(url: &str) -> String {
    const DECODED: [(&str, char); 12] = [
        ("3A", ':'),
        ("2F", '/'),
        ("3F", '?'),
        ("40", '@'),
        ("21", '!'),
        ("24", '$'),
        ("27", '\''),
        ("28", '('),
        ("29", ')'),
        ("2A", '*'),
        ("2C", ','),
        ("3B", ';'),
    ];
    let mut out = String::with_capacity(url.len());
    let mut rest = url;
    while let Some(i) = rest.find('%') {
        out.push_str(&rest[..i]);
        let code = rest.get(i + 1..i + 3).map(str::to_ascii_uppercase);
        match code.and_then(|c| DECODED.iter().find(|(k, _)| *k == c)) {
            Some((_, ch)) => {
                out.push(*ch);
                rest = &rest[i + 3..];
            }
            None => {
                out.push('%');
                rest = &rest[i + 1..];
            }
        }
    }
    out.push_str(rest);
    out
}

/// Standard Webhooks secrets are `whsec_` + base64 of the key bytes.
fn standard_secret(secret: &[u8]) -> Vec<u8> {
    match secret.strip_prefix(b"whsec_") {
        Some(rest) => base64::engine::general_purpose::STANDARD
            .decode(rest)
            .unwrap_or_else(|_| secret.to_vec()),
        None => secret.to_vec(),
    }
}

fn b64(s: &str) -> Option<Vec<u8>> {
    base64::engine::general_purpose::STANDARD.decode(s).ok()
}

fn check_time(ts: u64, now: u64, tolerance: Duration) -> Result<(), Rejection> {
    if ts.abs_diff(now) > tolerance.as_secs() {
        Err(Rejection::Stale)
    } else {
        Ok(())
    }
}

/// Whether any candidate is the MAC of the message, given as its parts in
/// order (so the body is not copied to put a prefix before it).
fn any_matches(
    algorithm: Algorithm,
    key: &[u8],
    msg: &[&[u8]],
    candidates: impl IntoIterator<Item = Option<Vec<u8>>>,
) -> Result<(), Rejection> {
    // Every candidate is checked, so timing does not tell which one matched.
    let mut ok = false;
    for sig in candidates.into_iter().flatten() {
        ok |= mac_matches(algorithm, key, msg, &sig);
    }
    if ok {
        Ok(())
    } else {
        Err(Rejection::Mismatch)
    }
}

fn mac_matches(algorithm: Algorithm, key: &[u8], msg: &[&[u8]], sig: &[u8]) -> bool {
    fn check<M: Mac + hmac::digest::KeyInit>(key: &[u8], msg: &[&[u8]], sig: &[u8]) -> bool {
        let mut m = <M as Mac>::new_from_slice(key).expect("HMAC takes any key length");
        for part in msg {
            m.update(part);
        }
        m.verify_slice(sig).is_ok()
    }
    match algorithm {
        Algorithm::Sha1 => check::<Hmac<sha1::Sha1>>(key, msg, sig),
        Algorithm::Sha256 => check::<Hmac<Sha256>>(key, msg, sig),
        Algorithm::Sha512 => check::<Hmac<Sha512>>(key, msg, sig),
    }
}

/// Sign `msg` the way a sender would (used by tests, benchmarks and docs).
pub fn sign(algorithm: Algorithm, key: &[u8], msg: &[u8]) -> Vec<u8> {
    match algorithm {
        Algorithm::Sha1 => {
            let mut m = Hmac::<sha1::Sha1>::new_from_slice(key).expect("HMAC takes any key length");
            m.update(msg);
            m.finalize().into_bytes().to_vec()
        }
        Algorithm::Sha256 => {
            let mut m = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes any key length");
            m.update(msg);
            m.finalize().into_bytes().to_vec()
        }
        Algorithm::Sha512 => {
            let mut m = Hmac::<Sha512>::new_from_slice(key).expect("HMAC takes any key length");
            m.update(msg);
            m.finalize().into_bytes().to_vec()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn headers(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn github_published_vector() {
        // From GitHub's "Validating webhook deliveries" documentation.
        let h = headers(&[(
            "x-hub-signature-256",
            "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17",
        )]);
        assert_eq!(
            Scheme::Github.verify(b"It's a Secret to Everybody", &h, b"Hello, World!", 0),
            Ok(())
        );
        assert_eq!(
            Scheme::Github.verify(b"It's a Secret to Everybody", &h, b"Hello, World?", 0),
            Err(Rejection::Mismatch)
        );
    }

    /// Twilio's published example (Twilio's "Webhooks security" page and
    /// its SDKs' tests): the URL with its query, the form parameters sorted
    /// by name, auth token `12345`.
    #[test]
    fn twilio_published_vector() {
        let url = "https://mycompany.com/myapp.php?foo=1&bar=2";
        let body = b"CallSid=CA1234567890ABCDE&Caller=%2B12349013030&Digits=1234&From=%2B12349013030&To=%2B18005551212";
        let h = headers(&[("x-twilio-signature", "0/KCTR6DLpKmkAf8muzZqo1nDgQ=")]);
        let signed = |url, body| Signed {
            method: "POST",
            url,
            headers: &h,
            body,
        };
        assert_eq!(
            Scheme::Twilio.verify_request(b"12345", &signed(url, body), 0),
            Ok(())
        );
        // The URL and every parameter are part of what is signed.
        let other_url = "https://mycompany.com/myapp.php?foo=1&bar=3";
        assert_eq!(
            Scheme::Twilio.verify_request(b"12345", &signed(other_url, body), 0),
            Err(Rejection::Mismatch)
        );
        let tampered: &[u8] = b"CallSid=CA1234567890ABCDE&Caller=%2B12349013030&Digits=9999&From=%2B12349013030&To=%2B18005551212";
        assert_eq!(
            Scheme::Twilio.verify_request(b"12345", &signed(url, tampered), 0),
            Err(Rejection::Mismatch)
        );
        // The parameters' order in the body does not matter.
        let reordered: &[u8] = b"To=%2B18005551212&Digits=1234&From=%2B12349013030&Caller=%2B12349013030&CallSid=CA1234567890ABCDE";
        assert_eq!(
            Scheme::Twilio.verify_request(b"12345", &signed(url, reordered), 0),
            Ok(())
        );
        assert_eq!(
            Scheme::Twilio.verify_request(
                b"12345",
                &Signed {
                    method: "POST",
                    url,
                    headers: &headers(&[]),
                    body
                },
                0
            ),
            Err(Rejection::MissingHeader("x-twilio-signature"))
        );
    }

    /// Twilio's JSON webhooks sign the URL, whose `bodySHA256` is the
    /// body's hex SHA-256.
    #[test]
    fn twilio_json_bodies_are_signed_through_body_sha256() {
        use sha2::Digest;
        let body = br#"{"status":"delivered"}"#;
        let url = format!(
            "https://hooks.example.com/hooks/sms?bodySHA256={}",
            hex::encode(Sha256::digest(body))
        );
        let sig = base64::engine::general_purpose::STANDARD.encode(sign(
            Algorithm::Sha1,
            b"token",
            url.as_bytes(),
        ));
        let h = headers(&[("x-twilio-signature", &sig)]);
        let req = |body: &'static [u8]| Signed {
            method: "POST",
            url: &url,
            headers: &h,
            body,
        };
        assert_eq!(
            Scheme::Twilio.verify_request(b"token", &req(body), 0),
            Ok(())
        );
        assert_eq!(
            Scheme::Twilio.verify_request(b"token", &req(br#"{"status":"failed"}"#), 0),
            Err(Rejection::Mismatch)
        );
    }

    #[test]
    fn gitlab_token_is_compared_whole() {
        let ok = headers(&[("x-gitlab-token", "s3cr3t-token")]);
        assert_eq!(
            Scheme::Gitlab.verify(b"s3cr3t-token", &ok, b"{}", 0),
            Ok(())
        );
        for wrong in ["s3cr3t-toke", "s3cr3t-token2", "", "S3CR3T-TOKEN"] {
            let h = headers(&[("x-gitlab-token", wrong)]);
            assert_eq!(
                Scheme::Gitlab.verify(b"s3cr3t-token", &h, b"{}", 0),
                Err(Rejection::Mismatch),
                "{wrong}"
            );
        }
        assert_eq!(
            Scheme::Gitlab.verify(b"s3cr3t-token", &headers(&[]), b"{}", 0),
            Err(Rejection::MissingHeader("x-gitlab-token"))
        );
    }

    #[test]
    fn linear_signature_and_its_timestamp_window() {
        let scheme = Scheme::Linear {
            tolerance: LINEAR_TOLERANCE,
        };
        let body = br#"{"action":"create","type":"Issue","webhookTimestamp":1700000000123}"#;
        let sig = hex::encode(sign(Algorithm::Sha256, b"lin_wh_k", body));
        let h = headers(&[("linear-signature", &sig)]);
        assert_eq!(scheme.verify(b"lin_wh_k", &h, body, 1700000030), Ok(()));
        assert_eq!(
            scheme.verify(b"lin_wh_k", &h, body, 1700000061),
            Err(Rejection::Stale)
        );
        assert_eq!(
            scheme.verify(b"other", &h, body, 1700000000),
            Err(Rejection::Mismatch)
        );
        let untimed = br#"{"action":"create"}"#;
        let sig = hex::encode(sign(Algorithm::Sha256, b"lin_wh_k", untimed));
        let h = headers(&[("linear-signature", &sig)]);
        assert_eq!(
            scheme.verify(b"lin_wh_k", &h, untimed, 0),
            Err(Rejection::MissingField("webhookTimestamp"))
        );
    }

    /// HubSpot v3 as its "Validating requests" page describes it (HubSpot
    /// publishes no v3 example): method + URI + body + timestamp, with
    /// some percent-encoded characters of the URI decoded first.
    #[test]
    fn hubspot_v3_signature() {
        let scheme = Scheme::Hubspot {
            tolerance: DEFAULT_TOLERANCE,
        };
        let body = br#"[{"subscriptionType":"contact.creation","objectId":123}]"#;
        let ts = "1700000000000";
        let msg = [
            b"POST".as_slice(),
            b"https://hooks.example.com/hooks/hubspot?portal=62515&x=a:b",
            body,
            ts.as_bytes(),
        ]
        .concat();
        let sig = base64::engine::general_purpose::STANDARD.encode(sign(
            Algorithm::Sha256,
            b"client-secret",
            &msg,
        ));
        let h = headers(&[
            ("x-hubspot-signature-v3", &sig),
            ("x-hubspot-request-timestamp", ts),
        ]);
        let req = |method, url| Signed {
            method,
            url,
            headers: &h,
            body,
        };
        let sent = "https://hooks.example.com/hooks/hubspot?portal=62515&x=a%3Ab";
        assert_eq!(
            scheme.verify_request(b"client-secret", &req("POST", sent), 1700000100),
            Ok(())
        );
        assert_eq!(
            scheme.verify_request(b"client-secret", &req("POST", sent), 1700000301),
            Err(Rejection::Stale)
        );
        assert_eq!(
            scheme.verify_request(b"client-secret", &req("PUT", sent), 1700000100),
            Err(Rejection::Mismatch)
        );
        assert_eq!(
            scheme.verify_request(
                b"client-secret",
                &req("POST", "https://hooks.example.com/hooks/other"),
                1700000100
            ),
            Err(Rejection::Mismatch)
        );
        assert_eq!(hubspot_uri("/a%2fb%3F%25%2a"), "/a/b?%25*");
    }

    #[test]
    fn standard_webhooks_published_vector() {
        // From the Standard Webhooks specification's reference test.
        let h = headers(&[
            ("webhook-id", "msg_p5jXN8AQM9LWM0D4loKWxJek"),
            ("webhook-timestamp", "1614265330"),
            (
                "webhook-signature",
                "v1,bad v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=",
            ),
        ]);
        let scheme = Scheme::Standard {
            tolerance: DEFAULT_TOLERANCE,
        };
        let secret = b"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
        assert_eq!(
            scheme.verify(secret, &h, br#"{"test": 2432232314}"#, 1614265330),
            Ok(())
        );
        assert_eq!(
            scheme.verify(secret, &h, br#"{"test": 2432232314}"#, 1614265330 + 301),
            Err(Rejection::Stale)
        );
        assert_eq!(
            scheme.verify(secret, &h, br#"{"test": 1}"#, 1614265330),
            Err(Rejection::Mismatch)
        );
    }

    #[test]
    fn stripe_rotation_and_tolerance() {
        let body = br#"{"id":"evt_1"}"#;
        let sig = hex::encode(sign(
            Algorithm::Sha256,
            b"whsec_new",
            b"1700000000.{\"id\":\"evt_1\"}",
        ));
        let old = hex::encode(sign(
            Algorithm::Sha256,
            b"whsec_old",
            b"1700000000.{\"id\":\"evt_1\"}",
        ));
        let scheme = Scheme::Stripe {
            tolerance: DEFAULT_TOLERANCE,
        };
        let h = headers(&[(
            "stripe-signature",
            &format!("t=1700000000,v1={old},v1={sig},v0=zz"),
        )]);
        assert_eq!(scheme.verify(b"whsec_new", &h, body, 1700000010), Ok(()));
        assert_eq!(scheme.verify(b"whsec_old", &h, body, 1700000010), Ok(()));
        assert_eq!(
            scheme.verify(b"whsec_new", &h, body, 1700000400),
            Err(Rejection::Stale)
        );
        assert_eq!(
            scheme.verify(b"whsec_new", &h, body, 1699999600),
            Err(Rejection::Stale)
        );
        assert_eq!(
            scheme.verify(b"other", &h, body, 1700000010),
            Err(Rejection::Mismatch)
        );
        assert_eq!(
            scheme.verify(b"x", &headers(&[]), body, 0),
            Err(Rejection::MissingHeader("stripe-signature"))
        );
        assert_eq!(
            scheme.verify(b"x", &headers(&[("stripe-signature", "garbage")]), body, 0),
            Err(Rejection::Malformed("stripe-signature"))
        );
    }

    /// SPEC §5: a header that lacks the scheme's prefix is a mismatch, even
    /// when the digest after it is right.
    #[test]
    fn a_header_without_the_schemes_prefix_is_a_mismatch() {
        let body = b"payload";
        let t = 1_700_000_000u64;
        let hex_of = |msg: &[u8]| hex::encode(sign(Algorithm::Sha256, b"k", msg));
        let b64_of = |alg, msg: &[u8]| {
            base64::engine::general_purpose::STANDARD.encode(sign(alg, b"k", msg))
        };
        let stripe_msg = [format!("{t}.").as_bytes(), body].concat();
        let slack_msg = [format!("v0:{t}:").as_bytes(), body].concat();
        let standard_msg = [format!("msg_1.{t}.").as_bytes(), body].concat();
        let tol = DEFAULT_TOLERANCE;
        let hmac = |prefix: &str, encoding| Scheme::Hmac {
            header: "X-Sig".into(),
            algorithm: Algorithm::Sha256,
            encoding,
            prefix: prefix.into(),
        };
        let ts = t.to_string();
        // (scheme, headers with the right digest but no prefix, the same with it)
        type Pairs<'a> = Vec<(&'a str, String)>;
        let cases: Vec<(&str, Scheme, Pairs, Pairs)> = vec![
            (
                "github",
                Scheme::Github,
                vec![("x-hub-signature-256", hex_of(body))],
                vec![("x-hub-signature-256", format!("sha256={}", hex_of(body)))],
            ),
            (
                "slack",
                Scheme::Slack { tolerance: tol },
                vec![
                    ("x-slack-signature", hex_of(&slack_msg)),
                    ("x-slack-request-timestamp", ts.clone()),
                ],
                vec![
                    ("x-slack-signature", format!("v0={}", hex_of(&slack_msg))),
                    ("x-slack-request-timestamp", ts.clone()),
                ],
            ),
            (
                "stripe",
                Scheme::Stripe { tolerance: tol },
                vec![("stripe-signature", format!("t={t},{}", hex_of(&stripe_msg)))],
                vec![(
                    "stripe-signature",
                    format!("t={t},v1={}", hex_of(&stripe_msg)),
                )],
            ),
            (
                "standard",
                Scheme::Standard { tolerance: tol },
                vec![
                    ("webhook-id", "msg_1".into()),
                    ("webhook-timestamp", ts.clone()),
                    (
                        "webhook-signature",
                        b64_of(Algorithm::Sha256, &standard_msg),
                    ),
                ],
                vec![
                    ("webhook-id", "msg_1".into()),
                    ("webhook-timestamp", ts.clone()),
                    (
                        "webhook-signature",
                        format!("v1,{}", b64_of(Algorithm::Sha256, &standard_msg)),
                    ),
                ],
            ),
            (
                "hmac hex",
                hmac("sha256=", Encoding::Hex),
                vec![("x-sig", hex_of(body))],
                vec![("x-sig", format!("sha256={}", hex_of(body)))],
            ),
            (
                "hmac base64",
                hmac("v1=", Encoding::Base64),
                vec![("x-sig", b64_of(Algorithm::Sha256, body))],
                vec![("x-sig", format!("v1={}", b64_of(Algorithm::Sha256, body)))],
            ),
            (
                // Shopify has no prefix: a prefixed value is not its signature.
                "shopify",
                Scheme::Shopify,
                vec![(
                    "x-shopify-hmac-sha256",
                    format!("sha256={}", b64_of(Algorithm::Sha256, body)),
                )],
                vec![("x-shopify-hmac-sha256", b64_of(Algorithm::Sha256, body))],
            ),
        ];
        for (name, scheme, bare, prefixed) in cases {
            let as_map = |pairs: &[(&str, String)]| -> BTreeMap<String, String> {
                pairs
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.clone()))
                    .collect()
            };
            assert_eq!(
                scheme.verify(b"k", &as_map(&prefixed), body, t),
                Ok(()),
                "{name}: the prefixed header verifies"
            );
            assert_eq!(
                scheme.verify(b"k", &as_map(&bare), body, t),
                Err(Rejection::Mismatch),
                "{name}: the header without its prefix"
            );
        }
    }

    #[test]
    fn shopify_slack_and_generic() {
        let body = b"payload";
        let b64sig =
            base64::engine::general_purpose::STANDARD.encode(sign(Algorithm::Sha256, b"k", body));
        assert_eq!(
            Scheme::Shopify.verify(
                b"k",
                &headers(&[("x-shopify-hmac-sha256", &b64sig)]),
                body,
                0
            ),
            Ok(())
        );
        let slack_sig = hex::encode(sign(Algorithm::Sha256, b"k", b"v0:1700000000:payload"));
        let h = headers(&[
            ("x-slack-signature", &format!("v0={slack_sig}")),
            ("x-slack-request-timestamp", "1700000000"),
        ]);
        let slack = Scheme::Slack {
            tolerance: DEFAULT_TOLERANCE,
        };
        assert_eq!(slack.verify(b"k", &h, body, 1700000001), Ok(()));
        assert_eq!(
            slack.verify(b"k", &h, body, 1800000000),
            Err(Rejection::Stale)
        );
        for (alg, enc) in [
            (Algorithm::Sha1, Encoding::Hex),
            (Algorithm::Sha512, Encoding::Base64),
            (Algorithm::Sha256, Encoding::Hex),
        ] {
            let raw = sign(alg, b"k", body);
            let text = match enc {
                Encoding::Hex => hex::encode(raw),
                Encoding::Base64 => base64::engine::general_purpose::STANDARD.encode(raw),
            };
            let scheme = Scheme::Hmac {
                header: "X-Sig".into(),
                algorithm: alg,
                encoding: enc,
                prefix: "sig=".into(),
            };
            assert_eq!(
                scheme.verify(
                    b"k",
                    &headers(&[("x-sig", &format!("sig={text}"))]),
                    body,
                    0
                ),
                Ok(()),
                "{alg:?}"
            );
            assert_eq!(
                scheme.verify(
                    b"j",
                    &headers(&[("x-sig", &format!("sig={text}"))]),
                    body,
                    0
                ),
                Err(Rejection::Mismatch)
            );
        }
    }
}
