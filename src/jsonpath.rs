//! RFC 9535 JSONPath: the only importer of `jsonpath-rust`. Queries are
//! parsed once (at workflow load) and evaluated many times. Plain paths of
//! names and indexes (`$.event.data.object.amount`, `$.a['b-c'][0]`), which
//! are nearly every path users write, are walked directly without building
//! the node paths the general evaluator produces; everything else goes to
//! `jsonpath-rust`.

use jsonpath_rust::parser::model::{JpQuery, Segment, Selector};
use serde_json::Value;
use std::fmt;

#[derive(Clone)]
pub struct JsonPath {
    source: String,
    plan: Plan,
}

#[derive(Clone)]
enum Plan {
    /// Only name and index selectors: at most one node.
    Singular(Vec<Step>),
    General(Box<JpQuery>),
}

#[derive(Clone)]
enum Step {
    Name(String),
    Index(i64),
}

#[derive(Debug, thiserror::Error)]
#[error("invalid JSONPath `{query}`: {reason}")]
pub struct JsonPathError {
    pub query: String,
    pub reason: String,
}

impl fmt::Debug for JsonPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "JsonPath({})", self.source)
    }
}

impl JsonPath {
    pub fn parse(query: &str) -> Result<Self, JsonPathError> {
        let query = query.trim();
        let parsed = jsonpath_rust::parser::parse_json_path(query).map_err(|e| JsonPathError {
            query: query.to_string(),
            reason: describe(&e.to_string()),
        })?;
        let singular: Option<Vec<Step>> = parsed
            .segments
            .iter()
            .map(|seg| match seg {
                Segment::Selector(Selector::Name(n)) => Some(Step::Name(unquote(n))),
                Segment::Selector(Selector::Index(i)) => Some(Step::Index(*i)),
                Segment::Selector(_) | Segment::Descendant(_) | Segment::Selectors(_) => None,
            })
            .collect();
        let plan = match singular {
            Some(steps) => Plan::Singular(steps),
            None => Plan::General(Box::new(parsed)),
        };
        Ok(JsonPath {
            source: query.to_string(),
            plan,
        })
    }

    pub fn as_str(&self) -> &str {
        &self.source
    }

    /// The nodes the query selects, in document order.
    pub fn nodes<'a>(&self, root: &'a Value) -> Vec<&'a Value> {
        match &self.plan {
            Plan::Singular(steps) => self.singular(steps, root).into_iter().collect(),
            Plan::General(q) => jsonpath_rust::query::js_path_process(q, root)
                .map(|refs| refs.into_iter().map(|r| r.val()).collect())
                .unwrap_or_default(),
        }
    }

    /// SPEC §3.2: one node gives its value, no node `None`, several an array.
    pub fn value(&self, root: &Value) -> Option<Value> {
        match &self.plan {
            Plan::Singular(steps) => self.singular(steps, root).cloned(),
            Plan::General(_) => {
                let mut nodes = self.nodes(root);
                match nodes.len() {
                    0 => None,
                    1 => nodes.pop().cloned(),
                    _ => Some(Value::Array(nodes.into_iter().cloned().collect())),
                }
            }
        }
    }

    /// Like [`JsonPath::value`] without copying when the query is singular.
    pub fn with_value<R>(&self, root: &Value, f: impl FnOnce(Option<&Value>) -> R) -> R {
        match &self.plan {
            Plan::Singular(steps) => f(self.singular(steps, root)),
            Plan::General(_) => {
                let v = self.value(root);
                f(v.as_ref())
            }
        }
    }

    fn singular<'a>(&self, steps: &[Step], root: &'a Value) -> Option<&'a Value> {
        let mut cur = root;
        for step in steps {
            cur = match (step, cur) {
                (Step::Name(n), Value::Object(o)) => o.get(n)?,
                (Step::Index(i), Value::Array(a)) => {
                    let idx = if *i < 0 { a.len() as i64 + i } else { *i };
                    a.get(usize::try_from(idx).ok()?)?
                }
                _ => return None,
            };
        }
        Some(cur)
    }
}

/// The parser keeps bracketed names with their quotes.
fn unquote(name: &str) -> String {
    let b = name.as_bytes();
    if b.len() >= 2 && (b[0] == b'\'' || b[0] == b'"') && b[b.len() - 1] == b[0] {
        name[1..name.len() - 1].to_string()
    } else {
        name.to_string()
    }
}

/// The parser's multi-line report as one line: what it expected, and where.
fn describe(s: &str) -> String {
    let at = s
        .split("-->")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|pos| pos.split(':').nth(1))
        .map(|col| format!(" at character {col}"));
    let expected = s
        .rsplit("= ")
        .next()
        .map(str::trim)
        .filter(|e| !e.is_empty() && !e.contains('\n'));
    match (expected, at) {
        (Some(e), Some(at)) if s.contains("-->") => format!("{e}{at}"),
        _ => s.split_whitespace().collect::<Vec<_>>().join(" "),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn singular_and_general_agree() {
        let doc = json!({"a": {"b-c": [1, {"d": 2}]}, "xs": [{"n": 1}, {"n": 2}]});
        let q = JsonPath::parse("$.a['b-c'][1].d").expect("valid");
        assert!(matches!(q.plan, Plan::Singular(_)));
        assert_eq!(q.value(&doc), Some(json!(2)));
        let q = JsonPath::parse("$.a[\"b-c\"][-2]").expect("valid");
        assert_eq!(q.value(&doc), Some(json!(1)));
        let q = JsonPath::parse("$.xs[*].n").expect("valid");
        assert!(matches!(q.plan, Plan::General(_)));
        assert_eq!(q.value(&doc), Some(json!([1, 2])));
        let q = JsonPath::parse("$.xs[?@.n > 1].n").expect("valid");
        assert_eq!(q.value(&doc), Some(json!(2)));
        assert_eq!(JsonPath::parse("$.nope").expect("valid").value(&doc), None);
    }

    #[test]
    fn rejects_bad_queries() {
        let err = JsonPath::parse("$.a[").expect_err("invalid");
        assert!(err.to_string().contains("$.a["), "{err}");
        assert!(JsonPath::parse("a.b").is_err());
    }
}
