//! Functions scripts may call beyond Rhai's standard library (SPEC §6):
//! `state_get`, `state_set`, `now`, `parse_json`, `to_json`, `jsonpath`,
//! `hmac_sha256`, `sha256`, `base64_encode`, `base64_decode`, `url_encode`,
//! `uuid`, `log`; and the `sleep` that replaces Rhai's, which only refuses.
//!
//! A helper is one Rhai operation however large its input, so those whose
//! work grows with their input check the wall-time deadline themselves:
//! hashing and encoding between slices of the input, the JSON ones between
//! their phases. `log` and `state_set` are bounded in bytes.

use super::{CALL, MAX_STATE_KEY_BYTES, MAX_STATE_VALUE_BYTES, SLEEP_REFUSED};
use base64::Engine as _;
use hmac::{Hmac, Mac};
use rhai::{Dynamic, EvalAltResult, Position};
use serde_json::Value;
use sha2::{Digest, Sha256};

type Res<T> = Result<T, Box<EvalAltResult>>;

/// Input is hashed or encoded this many bytes at a time, with the deadline
/// checked in between. A multiple of 3, so that base64 slices join up.
const SLICE: usize = 48 * 1024;

fn fail<T>(msg: impl Into<String>) -> Res<T> {
    Err(Box::new(EvalAltResult::ErrorRuntime(
        Dynamic::from(msg.into()),
        Position::NONE,
    )))
}

/// Stop here if the evaluation is out of time (or an inline attempt has
/// run long enough). The error is one a script cannot catch.
fn in_time() -> Res<()> {
    match CALL.with(|c| c.borrow_mut().as_mut().and_then(|c| c.must_stop(0))) {
        None => Ok(()),
        Some(reason) => Err(Box::new(EvalAltResult::ErrorTerminated(
            Dynamic::from(reason),
            Position::NONE,
        ))),
    }
}

/// `text` in slices of at most [`SLICE`] bytes that end on character
/// boundaries.
fn slices(text: &str) -> impl Iterator<Item = &str> {
    let mut rest = text;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        // Never 0: a character is at most 4 bytes, a slice many more.
        let end = rest.floor_char_boundary(SLICE.min(rest.len()));
        let (slice, tail) = rest.split_at(end);
        rest = tail;
        Some(slice)
    })
}

pub(super) fn push_log(line: String) {
    CALL.with(|c| {
        if let Some(call) = c.borrow_mut().as_mut() {
            call.log.push(line);
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
        let mut c = c.borrow_mut();
        let blocks = c
            .as_ref()
            .and_then(|c| c.state.as_ref())
            .is_some_and(|(store, _)| store.blocks());
        if blocks && c.as_mut().is_some_and(|c| c.give_up_inline()) {
            // A store that waits on the network must not hold a thread of
            // the async runtime: only in the full run.
            return Err(super::GAVE_UP_INLINE.to_string());
        }
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

/// Bytes `value` takes as JSON (as the store keeps it), counted without
/// building the text.
fn json_len(value: &Value) -> usize {
    struct Count(usize);
    impl std::io::Write for Count {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0 += buf.len();
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut n = Count(0);
    // Writing a `Value` into a counter cannot fail.
    let _ = serde_json::to_writer(&mut n, value);
    n.0
}

fn state_set(key: &str, value: Dynamic) -> Res<()> {
    if key.len() > MAX_STATE_KEY_BYTES {
        return fail(format!(
            "state_set: the key is {} bytes; keys are at most {MAX_STATE_KEY_BYTES} bytes",
            key.len()
        ));
    }
    let value = to_json(&value)?;
    let size = json_len(&value);
    if size > MAX_STATE_VALUE_BYTES {
        return fail(format!(
            "state_set: the value is {size} bytes as JSON; values are at most {MAX_STATE_VALUE_BYTES} bytes"
        ));
    }
    let result = CALL.with(|c| {
        let mut c = c.borrow_mut();
        if c.as_mut().is_some_and(|c| c.give_up_inline()) {
            // A write must happen exactly once: only in the full run.
            return Err(super::GAVE_UP_INLINE.to_string());
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

fn sha256(msg: &str) -> Res<String> {
    let mut hash = Sha256::new();
    for slice in slices(msg) {
        in_time()?;
        hash.update(slice.as_bytes());
    }
    Ok(hex::encode(hash.finalize()))
}

fn hmac_sha256(key: &str, msg: &str) -> Res<String> {
    let mut mac =
        Hmac::<Sha256>::new_from_slice(key.as_bytes()).expect("HMAC accepts keys of any length");
    for slice in slices(msg) {
        in_time()?;
        mac.update(slice.as_bytes());
    }
    Ok(hex::encode(mac.finalize().into_bytes()))
}

fn base64_encode(s: &str) -> Res<String> {
    let mut out = String::with_capacity(s.len().div_ceil(3) * 4);
    // Byte slices of a multiple of 3 encode without padding between them.
    for slice in s.as_bytes().chunks(SLICE) {
        in_time()?;
        base64::engine::general_purpose::STANDARD.encode_string(slice, &mut out);
    }
    Ok(out)
}

fn base64_decode(s: &str) -> Res<String> {
    in_time()?;
    match base64::engine::general_purpose::STANDARD.decode(s.trim()) {
        Ok(bytes) => {
            in_time()?;
            Ok(String::from_utf8_lossy(&bytes).into_owned())
        }
        Err(e) => fail(format!("base64_decode: {e}")),
    }
}

fn url_encode(s: &str) -> Res<String> {
    let mut out = String::with_capacity(s.len());
    for slice in slices(s) {
        in_time()?;
        out.extend(percent_encoding::utf8_percent_encode(
            slice,
            percent_encoding::NON_ALPHANUMERIC,
        ));
    }
    Ok(out)
}

fn parse_json(s: &str) -> Res<Dynamic> {
    in_time()?;
    match serde_json::from_str::<Value>(s) {
        Ok(v) => {
            in_time()?;
            from_json(&v)
        }
        Err(e) => fail(format!("parse_json: {e}")),
    }
}

fn to_json_text(d: Dynamic) -> Res<String> {
    in_time()?;
    let v = to_json(&d)?;
    in_time()?;
    Ok(v.to_string())
}

fn jsonpath(d: Dynamic, query: &str) -> Res<Dynamic> {
    in_time()?;
    let v = to_json(&d)?;
    in_time()?;
    match crate::jsonpath::JsonPath::parse(query) {
        Ok(q) => {
            let found = q.value(&v).unwrap_or(Value::Null);
            in_time()?;
            from_json(&found)
        }
        Err(e) => fail(e.to_string()),
    }
}

fn sleep_refused() -> Res<()> {
    fail(SLEEP_REFUSED)
}

pub(super) fn register(e: &mut rhai::Engine) {
    e.register_fn("log", |msg: Dynamic| push_log(msg.to_string()));
    e.register_fn("state_get", state_get);
    e.register_fn("state_set", state_set);
    e.register_fn("now", || crate::record::Timestamp::now().to_rfc3339());
    e.register_fn("parse_json", parse_json);
    e.register_fn("to_json", to_json_text);
    e.register_fn("jsonpath", jsonpath);
    e.register_fn("hmac_sha256", hmac_sha256);
    e.register_fn("sha256", sha256);
    e.register_fn("base64_encode", base64_encode);
    e.register_fn("base64_decode", base64_decode);
    e.register_fn("url_encode", url_encode);
    e.register_fn("uuid", || uuid::Uuid::new_v4().to_string());
    // Rhai's own `sleep` would block the thread past any limit. Functions
    // registered here are found before the standard library's, so these
    // shadow it for every way of calling it, by name included.
    e.register_fn("sleep", |_: rhai::INT| sleep_refused());
    e.register_fn("sleep", |_: rhai::FLOAT| sleep_refused());
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

    /// Large inputs are worked through in slices: the answers are those of
    /// the whole input at once, characters split across slices included.
    #[test]
    fn helpers_give_whole_answers_on_sliced_input() {
        use base64::Engine as _;
        use sha2::Digest as _;
        // "é" is 2 bytes and the slice an even size: "aé…" puts a
        // character across every slice boundary.
        let text = format!("a{}", "é".repeat(100_000));
        let ctx = json!({ "t": text });
        let run = |src: &str| {
            Engine::default()
                .compile_script(src)
                .expect("compiles")
                .run(&json!({ "event": ctx }), None)
                .result
                .expect("runs")
        };
        assert_eq!(
            run("sha256(event.t)"),
            json!(hex::encode(sha2::Sha256::digest(text.as_bytes())))
        );
        assert_eq!(
            run("base64_encode(event.t)"),
            json!(base64::engine::general_purpose::STANDARD.encode(text.as_bytes()))
        );
        assert_eq!(
            run("base64_decode(base64_encode(event.t)) == event.t"),
            json!(true)
        );
        assert_eq!(
            run("url_encode(event.t)"),
            json!(
                percent_encoding::utf8_percent_encode(&text, percent_encoding::NON_ALPHANUMERIC)
                    .to_string()
            )
        );
        let mut mac = <hmac::Hmac<sha2::Sha256> as hmac::Mac>::new_from_slice(b"k").expect("key");
        hmac::Mac::update(&mut mac, text.as_bytes());
        assert_eq!(
            run("hmac_sha256(\"k\", event.t)"),
            json!(hex::encode(hmac::Mac::finalize(mac).into_bytes()))
        );
    }

    #[test]
    fn state_set_bounds_keys_and_values_in_bytes() {
        let store = crate::store::Store::temporary().expect("store");
        let engine = Engine::default();
        let set = |key: &str, n: i64, value_len: i64| {
            engine
                .compile_script(&format!(
                    "let k = \"\"; k.pad({n}, \"{key}\"); let v = \"\"; v.pad({value_len}, \"v\"); state_set(k, v); 1"
                ))
                .expect("compiles")
                .run(&json!({}), Some((store.state(), "wf".to_string())))
                .result
        };
        assert_eq!(set("k", 256, 10), Ok(json!(1)));
        assert_eq!(set("v", 1, 65_534), Ok(json!(1)), "65,536 bytes as JSON");
        let err = set("é", 129, 1).expect_err("258 bytes");
        assert!(
            err.contains("the key is 258 bytes; keys are at most 256 bytes"),
            "{err}"
        );
        let err = set("w", 1, 65_535).expect_err("65,537 bytes as JSON");
        assert!(err.contains("the value is 65537 bytes as JSON"), "{err}");
        assert_eq!(
            store.state().get("wf", &"é".repeat(129)).expect("read"),
            None
        );
        assert_eq!(store.state().get("wf", "w").expect("read"), None);
    }

    #[test]
    fn the_log_keeps_a_bounded_number_of_bytes_and_says_what_it_dropped() {
        let run = |src: &str| {
            Engine::default()
                .compile_script(src)
                .expect("compiles")
                .run(&json!({}), None)
                .logs
        };
        // Within the bounds: no note.
        assert_eq!(run("log(\"a\"); print(\"b\"); 1"), vec!["a", "b"]);
        // Lines: 1,000 kept, the rest counted.
        let logs = run("for i in 0..1005 { log(\"x\") } 1");
        assert_eq!(logs.len(), 1001);
        assert_eq!(
            logs[1000],
            "log truncated: 5 bytes dropped (5 lines left out, 0 lines cut short); a step keeps at most 65536 bytes and 1000 lines of log"
        );
        // Bytes: the line that crosses the bound is cut on a character
        // boundary, and later lines are left out.
        let logs = run("let s = \"\"; s.pad(40000, \"é\"); log(s); log(\"next\"); 1");
        assert_eq!(logs.len(), 2);
        assert_eq!(logs[0].len(), 65_536);
        assert!(
            logs[1].starts_with(
                "log truncated: 14468 bytes dropped (1 line left out, 1 line cut short)"
            ),
            "{}",
            logs[1]
        );
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
