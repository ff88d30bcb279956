//! Signature verification (SPEC §5): pure functions over the raw body bytes,
//! the request headers, a secret and the current time. Comparisons are
//! constant-time (`Mac::verify_slice`). Reasons never contain a secret.
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
    /// Headers that carry signatures for this scheme (redacted from history).
    pub fn signature_headers(&self) -> Vec<String> {
        match self {
            Scheme::Stripe { .. } => vec!["stripe-signature".into()],
            Scheme::Github => vec!["x-hub-signature-256".into(), "x-hub-signature".into()],
            Scheme::Shopify => vec!["x-shopify-hmac-sha256".into()],
            Scheme::Slack { .. } => vec!["x-slack-signature".into()],
            Scheme::Standard { .. } => vec!["webhook-signature".into()],
            Scheme::Hmac { header, .. } => vec![header.to_ascii_lowercase()],
        }
    }

    /// Verify `body` as signed with `secret`. `now` is seconds since the epoch.
    pub fn verify(
        &self,
        secret: &[u8],
        headers: &dyn Headers,
        body: &[u8],
        now: u64,
    ) -> Result<(), Rejection> {
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
                let msg = [t.as_bytes(), b".", body].concat();
                any_matches(
                    Algorithm::Sha256,
                    secret,
                    &msg,
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
                any_matches(Algorithm::Sha256, secret, body, [hex::decode(hexsig).ok()])
            }
            Scheme::Shopify => {
                const H: &str = "x-shopify-hmac-sha256";
                let header = headers.get(H).ok_or(Rejection::MissingHeader(H))?;
                any_matches(Algorithm::Sha256, secret, body, [b64(header.trim())])
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
                let msg = [b"v0:", t.as_bytes(), b":", body].concat();
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
                let msg = [id.as_bytes(), b".", t.as_bytes(), b".", body].concat();
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
                any_matches(*algorithm, secret, body, [sig])
            }
        }
    }
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

fn any_matches(
    algorithm: Algorithm,
    key: &[u8],
    msg: &[u8],
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

fn mac_matches(algorithm: Algorithm, key: &[u8], msg: &[u8], sig: &[u8]) -> bool {
    match algorithm {
        Algorithm::Sha1 => {
            let mut m = Hmac::<sha1::Sha1>::new_from_slice(key).expect("HMAC takes any key length");
            m.update(msg);
            m.verify_slice(sig).is_ok()
        }
        Algorithm::Sha256 => {
            let mut m = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes any key length");
            m.update(msg);
            m.verify_slice(sig).is_ok()
        }
        Algorithm::Sha512 => {
            let mut m = Hmac::<Sha512>::new_from_slice(key).expect("HMAC takes any key length");
            m.update(msg);
            m.verify_slice(sig).is_ok()
        }
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
