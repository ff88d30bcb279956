//! Expected against actual JSON, reporting the path of the first difference
//! as a JSONPath (`$.steps.message.output.text`).

use crate::expr::condition::json_eq;
use serde_json::Value;

#[derive(Debug, Clone, PartialEq)]
pub struct Difference {
    pub path: String,
    pub expected: String,
    pub actual: String,
}

impl std::fmt::Display for Difference {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}: expected {}, got {}",
            self.path, self.expected, self.actual
        )
    }
}

pub fn child(path: &str, key: &str) -> String {
    let plain = key
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if plain {
        format!("{path}.{key}")
    } else {
        format!("{path}['{}']", key.replace('\'', "\\'"))
    }
}

fn show(v: Option<&Value>) -> String {
    match v {
        None => "nothing (missing)".to_string(),
        Some(v) => {
            let s = v.to_string();
            if s.len() > 200 {
                format!(
                    "{}…",
                    &s[..s.char_indices().nth(200).map(|(i, _)| i).unwrap_or(s.len())]
                )
            } else {
                s
            }
        }
    }
}

/// The first place where `actual` differs from `expected`. With `subset`,
/// `actual` may have more keys and longer arrays than `expected`.
pub fn first_difference(
    expected: &Value,
    actual: Option<&Value>,
    path: &str,
    subset: bool,
) -> Option<Difference> {
    let diff = || Difference {
        path: path.to_string(),
        expected: show(Some(expected)),
        actual: show(actual),
    };
    let Some(actual) = actual else {
        return Some(diff());
    };
    match (expected, actual) {
        (Value::Object(e), Value::Object(a)) => {
            for (k, ev) in e {
                if let Some(d) = first_difference(ev, a.get(k), &child(path, k), subset) {
                    return Some(d);
                }
            }
            if !subset {
                if let Some((k, av)) = a.iter().find(|(k, _)| !e.contains_key(*k)) {
                    return Some(Difference {
                        path: child(path, k),
                        expected: show(None),
                        actual: show(Some(av)),
                    });
                }
            }
            None
        }
        (Value::Array(e), Value::Array(a)) => {
            if (!subset && e.len() != a.len()) || e.len() > a.len() {
                return Some(Difference {
                    path: path.to_string(),
                    expected: format!("{} items: {}", e.len(), show(Some(expected))),
                    actual: format!("{} items: {}", a.len(), show(Some(actual))),
                });
            }
            e.iter().zip(a).enumerate().find_map(|(i, (ev, av))| {
                first_difference(ev, Some(av), &format!("{path}[{i}]"), subset)
            })
        }
        (e, a) if json_eq(e, a) => None,
        _ => Some(diff()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn finds_the_first_difference() {
        let e = json!({"a": {"b": [1, {"c": "x"}]}, "n": 1});
        assert_eq!(first_difference(&e, Some(&e.clone()), "$", false), None);
        let a = json!({"a": {"b": [1, {"c": "y"}]}, "n": 1.0});
        let d = first_difference(&e, Some(&a), "$", false).expect("differs");
        assert_eq!(d.to_string(), "$.a.b[1].c: expected \"x\", got \"y\"");
        let d =
            first_difference(&json!({"k-1": 1}), Some(&json!({})), "$", false).expect("differs");
        assert_eq!(d.to_string(), "$['k-1']: expected 1, got nothing (missing)");
        assert_eq!(
            first_difference(&json!({"a": 1}), Some(&json!({"a": 1, "b": 2})), "$", true),
            None
        );
        assert!(
            first_difference(&json!({"a": 1}), Some(&json!({"a": 1, "b": 2})), "$", false)
                .is_some()
        );
    }
}
