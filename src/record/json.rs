//! Reading a JSON body into a [`Value`] with each object and array
//! allocated once, at its final size.
//!
//! serde_json's own reader grows every object's map and every array as its
//! members arrive: an object of a dozen fields is allocated, and its index
//! rehashed, three or four times over before it is done. A webhook body is
//! read on every request and again when a run behind a backlog reads its
//! event back, and under load those allocations were most of the parse's
//! cost (`docs/performance.md`). Here the members of every open object and
//! array wait on one scratch stack, kept per thread, and each object or
//! array is made once its closing bracket is read, from exactly its
//! members.
//!
//! The result is the value serde_json's reader gives, member for member
//! and in the same order (a repeated key keeps its first place and its last
//! value), with the same errors: the reading itself, the nesting limit and
//! the check for trailing characters are serde_json's.

use serde::de::{DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Number, Value};
use std::cell::RefCell;
use std::fmt;

/// Members a thread's scratch stack keeps room for between bodies; a body
/// with more open at once gets a stack of its own size, given back after.
const SCRATCH_KEPT: usize = 4096;

/// The members of the objects and arrays still open, innermost last.
#[derive(Default)]
struct Scratch {
    entries: Vec<(String, Value)>,
    items: Vec<Value>,
}

thread_local! {
    static SCRATCH: RefCell<Scratch> = RefCell::new(Scratch::default());
}

/// Parse `bytes` as one JSON value, as [`serde_json::from_slice`] does.
pub fn from_slice(bytes: &[u8]) -> serde_json::Result<Value> {
    // The stack is taken out of the thread's cell for the whole parse, so
    // no borrow is held across the reader's calls.
    let mut scratch = SCRATCH.with(|s| std::mem::take(&mut *s.borrow_mut()));
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value = ValueSeed {
        scratch: &mut scratch,
    }
    .deserialize(&mut de)
    .and_then(|v| de.end().map(|()| v));
    // After an error, members of objects left open are still on it.
    scratch.entries.clear();
    scratch.items.clear();
    if scratch.entries.capacity() > SCRATCH_KEPT {
        scratch.entries = Vec::new();
    }
    if scratch.items.capacity() > SCRATCH_KEPT {
        scratch.items = Vec::new();
    }
    SCRATCH.with(|s| *s.borrow_mut() = scratch);
    value
}

/// One value, its members stacked on `scratch` until it closes.
struct ValueSeed<'s> {
    scratch: &'s mut Scratch,
}

impl<'de> DeserializeSeed<'de> for ValueSeed<'_> {
    type Value = Value;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for ValueSeed<'_> {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any valid JSON value")
    }

    fn visit_bool<E>(self, b: bool) -> Result<Value, E> {
        Ok(Value::Bool(b))
    }

    fn visit_i64<E>(self, n: i64) -> Result<Value, E> {
        Ok(Value::Number(n.into()))
    }

    fn visit_u64<E>(self, n: u64) -> Result<Value, E> {
        Ok(Value::Number(n.into()))
    }

    fn visit_f64<E>(self, n: f64) -> Result<Value, E> {
        Ok(Number::from_f64(n).map_or(Value::Null, Value::Number))
    }

    fn visit_str<E>(self, s: &str) -> Result<Value, E> {
        Ok(Value::String(s.to_owned()))
    }

    fn visit_string<E>(self, s: String) -> Result<Value, E> {
        Ok(Value::String(s))
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_some<D: Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        deserializer.deserialize_any(self)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let start = self.scratch.items.len();
        while let Some(item) = seq.next_element_seed(ValueSeed {
            scratch: &mut *self.scratch,
        })? {
            self.scratch.items.push(item);
        }
        Ok(Value::Array(self.scratch.items.drain(start..).collect()))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let start = self.scratch.entries.len();
        while let Some(key) = map.next_key::<String>()? {
            let value = map.next_value_seed(ValueSeed {
                scratch: &mut *self.scratch,
            })?;
            self.scratch.entries.push((key, value));
        }
        let members = self.scratch.entries.drain(start..);
        let mut object = Map::with_capacity(members.len());
        for (key, value) in members {
            object.insert(key, value);
        }
        Ok(Value::Object(object))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Bodies at the edges of JSON: what serde_json's reader makes of
    /// them, this one must make too, value, order and error alike.
    const BODIES: &[&str] = &[
        "{}",
        "[]",
        "null",
        "true",
        "0",
        "-0",
        "-0.0",
        "18446744073709551615",
        "-9223372036854775808",
        "18446744073709551616",
        "1e400",
        "1.5e-7",
        "\"caf\\u00e9 \\ud83d\\ude00 \\n\"",
        r#"{"b":1,"a":2,"c":{"z":[1,{"y":null}],"x":[]},"d":[[],[[]],{}]}"#,
        r#"{"a":1,"b":2,"a":3}"#,
        r#"{"k\"ey":"v\\al","":""}"#,
        r#"  {"id": "evt_1", "data": {"object": {"amount": 2000, "metadata": {}}}}  "#,
        "{",
        "[1,2",
        "{\"a\":}",
        "{\"a\":1,}",
        "[1,]",
        "{} {}",
        "[1] x",
        "nul",
        "\"\\x\"",
        "\"\\ud800\"",
        "{1:2}",
        "",
        "   ",
    ];

    #[test]
    fn it_reads_every_body_as_serde_json_does() {
        for body in BODIES {
            let theirs = serde_json::from_slice::<Value>(body.as_bytes());
            let ours = from_slice(body.as_bytes());
            match (&theirs, &ours) {
                (Ok(a), Ok(b)) => {
                    assert_eq!(a, b, "{body}");
                    // Equality of maps ignores order; the text does not.
                    assert_eq!(a.to_string(), b.to_string(), "{body}");
                }
                (Err(a), Err(b)) => assert_eq!(a.to_string(), b.to_string(), "{body}"),
                _ => panic!("{body}: serde_json gave {theirs:?}, this reader {ours:?}"),
            }
        }
    }

    #[test]
    fn objects_and_arrays_are_made_at_their_final_size() {
        let body = r#"{"a":1,"b":2,"c":3,"d":4,"e":5,"list":[1,2,3,4,5,6,7,8,9]}"#;
        let Ok(Value::Object(object)) = from_slice(body.as_bytes()) else {
            panic!("not an object");
        };
        assert_eq!(object.len(), 6);
        let Some(Value::Array(list)) = object.get("list") else {
            panic!("no list");
        };
        assert_eq!(list.capacity(), 9);
    }

    #[test]
    fn the_nesting_limit_holds_and_the_scratch_stack_is_left_empty() {
        let deep = "[".repeat(10_000);
        let err = from_slice(deep.as_bytes()).map(|_| ());
        assert_eq!(
            err.map_err(|e| e.to_string()),
            serde_json::from_slice::<Value>(deep.as_bytes())
                .map(|_| ())
                .map_err(|e| e.to_string())
        );
        // An error halfway through a deep body left members behind; the
        // next body on the thread does not see them.
        let half = format!("{}{}", r#"{"a":[1,2,{"b":"#.repeat(50), "!");
        assert!(from_slice(half.as_bytes()).is_err());
        assert_eq!(from_slice(b"[1]").ok(), Some(serde_json::json!([1])));
        SCRATCH.with(|s| {
            let s = s.borrow();
            assert!(s.entries.is_empty() && s.items.is_empty());
        });
    }

    #[test]
    fn a_body_with_many_members_does_not_keep_its_stack_on_the_thread() {
        let big = format!(
            "[{}]",
            (0..10_000)
                .map(|i| i.to_string())
                .collect::<Vec<_>>()
                .join(",")
        );
        let Ok(Value::Array(items)) = from_slice(big.as_bytes()) else {
            panic!("not an array");
        };
        assert_eq!(items.len(), 10_000);
        SCRATCH.with(|s| assert!(s.borrow().items.capacity() <= SCRATCH_KEPT));
    }
}
