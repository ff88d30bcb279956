//! How a request body becomes the run context's `event` (SPEC §3.1): JSON
//! as JSON, form fields as an object of strings, anything else as text. The
//! kind is decided once, from the content type, and kept with the bytes
//! ([`RawBody`]), so a stored body is read back exactly as it was first
//! read.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BodyKind {
    Json,
    Form,
    Text,
}

/// A body's bytes as received, with the kind they were read as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawBody {
    pub kind: BodyKind,
    pub bytes: bytes::Bytes,
}

impl RawBody {
    /// The value the bytes read as (what [`parse`] gave when they arrived).
    pub fn value(&self) -> Result<Value, String> {
        parse_as(self.kind, &self.bytes)
    }
}

pub fn kind(content_type: Option<&str>, body: &[u8]) -> BodyKind {
    let mime = content_type
        .and_then(|c| c.split(';').next())
        .map(|m| m.trim().to_ascii_lowercase());
    match mime.as_deref() {
        Some("application/json") => BodyKind::Json,
        Some(m) if m.ends_with("+json") => BodyKind::Json,
        Some("application/x-www-form-urlencoded") => BodyKind::Form,
        Some(_) => BodyKind::Text,
        // No content type: a body that looks like JSON is taken as JSON.
        None => match body.iter().find(|b| !b.is_ascii_whitespace()) {
            Some(b'{') | Some(b'[')
                if serde_json::from_slice::<serde::de::IgnoredAny>(body).is_ok() =>
            {
                BodyKind::Json
            }
            _ => BodyKind::Text,
        },
    }
}

/// Parse the body; the error says why it is not what its type claims.
pub fn parse(content_type: Option<&str>, body: &[u8]) -> Result<Value, String> {
    parse_as(kind(content_type, body), body)
}

/// Parse the body as `kind`.
pub fn parse_as(kind: BodyKind, body: &[u8]) -> Result<Value, String> {
    match kind {
        BodyKind::Json => {
            if body.iter().all(u8::is_ascii_whitespace) {
                return Ok(Value::Null);
            }
            super::json::from_slice(body).map_err(|e| format!("body is not valid JSON: {e}"))
        }
        BodyKind::Form => {
            check_form(body).map_err(|e| format!("body is {e}"))?;
            let pairs: Vec<(String, String)> = serde_urlencoded::from_bytes(body)
                .map_err(|e| format!("body is not a valid form: {e}"))?;
            let mut map = Map::new();
            for (k, v) in pairs {
                map.insert(k, Value::String(v));
            }
            Ok(Value::Object(map))
        }
        BodyKind::Text => match std::str::from_utf8(body) {
            Ok(s) => Ok(Value::String(s.to_string())),
            Err(_) => Err("body is not valid UTF-8 text".to_string()),
        },
    }
}

/// Form decoding is lenient by design (bad escapes pass through, bad
/// UTF-8 becomes U+FFFD); a webhook body that is not a well-formed form is
/// refused instead, so the event is exactly what was sent.
pub fn check_form(body: &[u8]) -> Result<(), String> {
    let bad = |why: &str| Err(format!("not valid form encoding: {why}"));
    let mut i = 0;
    while i < body.len() {
        if body[i] == b'%' {
            let hex = |b: Option<&u8>| b.is_some_and(u8::is_ascii_hexdigit);
            if !hex(body.get(i + 1)) || !hex(body.get(i + 2)) {
                return bad(&format!(
                    "`%` at byte {i} is not followed by two hex digits"
                ));
            }
            i += 3;
        } else {
            i += 1;
        }
    }
    if std::str::from_utf8(body).is_err() {
        return bad("it is not UTF-8 text");
    }
    for (k, v) in form_pairs_raw(body) {
        let decoded = percent_encoding::percent_decode(&k.replace('+', " ").into_bytes())
            .decode_utf8()
            .is_ok()
            && percent_encoding::percent_decode(&v.replace('+', " ").into_bytes())
                .decode_utf8()
                .is_ok();
        if !decoded {
            return bad("a field does not decode to UTF-8 text");
        }
    }
    Ok(())
}

fn form_pairs_raw(body: &[u8]) -> impl Iterator<Item = (String, String)> + '_ {
    body.split(|b| *b == b'&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let text = String::from_utf8_lossy(p);
            match text.split_once('=') {
                Some((k, v)) => (k.to_string(), v.to_string()),
                None => (text.into_owned(), String::new()),
            }
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn bodies_by_type() {
        assert_eq!(
            parse(Some("application/json; charset=utf-8"), b"{\"a\":1}"),
            Ok(json!({"a": 1}))
        );
        assert_eq!(
            parse(Some("application/vnd.api+json"), b"[1]"),
            Ok(json!([1]))
        );
        assert_eq!(
            parse(Some("application/x-www-form-urlencoded"), b"a=1&b=x+y%21"),
            Ok(json!({"a": "1", "b": "x y!"}))
        );
        assert_eq!(parse(Some("text/plain"), b"hello"), Ok(json!("hello")));
        assert_eq!(parse(None, b" {\"a\":1}"), Ok(json!({"a": 1})));
        assert_eq!(parse(None, b"{not json"), Ok(json!("{not json")));
        assert_eq!(parse(Some("application/json"), b""), Ok(Value::Null));
        assert!(parse(Some("application/json"), b"{").is_err());
        assert!(parse(Some("text/plain"), &[0xff, 0xfe]).is_err());
        assert!(parse(Some("application/x-www-form-urlencoded"), b"a=%zz").is_err());
        assert!(parse(Some("application/x-www-form-urlencoded"), b"a=%FF%FE").is_err());
        assert!(parse(Some("application/x-www-form-urlencoded"), b"a=1%").is_err());
        let deep = "[".repeat(10_000);
        assert!(parse(Some("application/json"), deep.as_bytes()).is_err());
    }
}
