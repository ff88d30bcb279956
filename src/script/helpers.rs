//! Functions scripts may call beyond Rhai's standard library (SPEC §6):
//! `state_get`, `state_set`, `now`, `parse_json`, `to_json`, `jsonpath`,
//! `hmac_sha256`, `sha256`, `base64_encode`, `base64_decode`, `url_encode`,
//! `uuid`, `log`.

use super::CALL;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use rhai::{Dynamic, EvalAltResult, Position};
use serde_json::Value;
use sha2::{Digest, Sha256};

type Res<T> = Result<T, Box<EvalAltResult>>;

fn fail<T>(msg: impl Into<String>) -> Res<T> {
    Err(Box::new(EvalAltResult::ErrorRuntime(
        Dynamic::from(msg.into()),
        Position::NONE,
    )))
}

pub(super) fn push_log(line: String) {
    CALL.with(|c| {
        if let Some(call) = c.borrow_mut().as_mut() {
            // A chatty script must not grow a step record without bound.
            if call.logs.len() < 1000 {
                call.logs.push(line);
            }
        }
    });
}

fn to_json(d: &Dynamic) -> Res<Value> {
    match super::from_dynamic(d) {
        Ok(v) => Ok(v),
        Err(e) => fail(e),
    }
}

fn from_json(v: &Value) -> Res<Dynamic> {
    Ok(super::to_dynamic(v))
}

fn state_get(key: &str) -> Res<Dynamic> {
    let value = CALL.with(|c| {
        let c = c.borrow();
        match c.as_ref().and_then(|c| c.state.as_ref()) {
            Some((store, wf)) => store.get(wf, key).map_err(|e| e.to_string()),
            None => Err("state_get is not available here".to_string()),
        }
    });
    match value {
        Ok(Some(v)) => from_json(&v),
        Ok(None) => Ok(Dynamic::UNIT),
        Err(e) => fail(e),
    }
}

fn state_set(key: &str, value: Dynamic) -> Res<()> {
    let value = to_json(&value)?;
    let result = CALL.with(|c| {
        let mut c = c.borrow_mut();
        if c.as_mut().is_some_and(|c| c.give_up_inline()) {
            // A write must happen exactly once: only in the full run.
            return Err("moved off the async runtime".to_string());
        }
        match c.as_ref().and_then(|c| c.state.as_ref()) {
            Some((store, wf)) => store.set(wf, key, &value).map_err(|e| e.to_string()),
            None => Err("state_set is not available here".to_string()),
        }
    });
    match result {
        Ok(()) => Ok(()),
        Err(e) => fail(e),
    }
}

pub(super) fn register(e: &mut rhai::Engine) {
    e.register_fn("log", |msg: Dynamic| push_log(msg.to_string()));
    e.register_fn("state_get", state_get);
    e.register_fn("state_set", state_set);
    e.register_fn("now", || crate::record::Timestamp::now().to_rfc3339());
    e.register_fn("parse_json", |s: &str| -> Res<Dynamic> {
        match serde_json::from_str::<Value>(s) {
            Ok(v) => from_json(&v),
            Err(e) => fail(format!("parse_json: {e}")),
        }
    });
    e.register_fn("to_json", |d: Dynamic| -> Res<String> {
        Ok(to_json(&d)?.to_string())
    });
    e.register_fn("jsonpath", |d: Dynamic, query: &str| -> Res<Dynamic> {
        let v = to_json(&d)?;
        match crate::jsonpath::JsonPath::parse(query) {
            Ok(q) => from_json(&q.value(&v).unwrap_or(Value::Null)),
            Err(e) => fail(e.to_string()),
        }
    });
    e.register_fn("hmac_sha256", |key: &str, msg: &str| -> String {
        let mut mac = Hmac::<Sha256>::new_from_slice(key.as_bytes())
            .expect("HMAC accepts keys of any length");
        mac.update(msg.as_bytes());
        hex::encode(mac.finalize().into_bytes())
    });
    e.register_fn("sha256", |msg: &str| {
        hex::encode(Sha256::digest(msg.as_bytes()))
    });
    e.register_fn("base64_encode", |s: &str| {
        base64::engine::general_purpose::STANDARD.encode(s.as_bytes())
    });
    e.register_fn("base64_decode", |s: &str| -> Res<String> {
        match base64::engine::general_purpose::STANDARD.decode(s.trim()) {
            Ok(bytes) => Ok(String::from_utf8_lossy(&bytes).into_owned()),
            Err(e) => fail(format!("base64_decode: {e}")),
        }
    });
    e.register_fn("url_encode", |s: &str| {
        percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC).to_string()
    });
    e.register_fn("uuid", || uuid::Uuid::new_v4().to_string());
}

#[cfg(test)]
mod tests {
    use crate::script::Engine;
    use serde_json::json;

    fn eval(src: &str) -> serde_json::Value {
        Engine::default()
            .compile_script(src)
            .expect("compiles")
            .run(&json!({}), None)
            .result
            .expect("runs")
    }

    #[test]
    fn helpers_work() {
        // RFC 4231 test case 2.
        assert_eq!(
            eval("hmac_sha256(\"Jefe\", \"what do ya want for nothing?\")"),
            json!("5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843")
        );
        assert_eq!(
            eval("sha256(\"abc\")"),
            json!("ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
        );
        assert_eq!(
            eval("base64_decode(base64_encode(\"hi there\"))"),
            json!("hi there")
        );
        assert_eq!(eval("url_encode(\"a b&c\")"), json!("a%20b%26c"));
        assert_eq!(eval("parse_json(\"{\\\"a\\\":[1,2]}\").a[1]"), json!(2));
        assert_eq!(eval("to_json(#{a: 1})"), json!("{\"a\":1}"));
        assert_eq!(eval("jsonpath(#{a: #{b: [5, 6]}}, \"$.a.b[1]\")"), json!(6));
        assert_eq!(eval("uuid().len()"), json!(36));
        assert!(eval("now()").as_str().is_some_and(|s| s.ends_with('Z')));
    }

    #[test]
    fn state_needs_a_store() {
        let out = Engine::default()
            .compile_script("state_get(\"x\")")
            .expect("compiles")
            .run(&json!({}), None);
        assert!(out.result.is_err());
    }
}
