//! Conditions (SPEC §4): `trigger.when`, the `filter` step and every step's
//! `if`. A mapping whose keys are JSONPath queries or `all`/`any`/`not`/
//! `expr`; every entry must hold. Compiled once; evaluating one never fails
//! on data: comparing different types is simply false (`ne`: true).

use crate::jsonpath::JsonPath;
use crate::script::{Engine, Expression};
use crate::workflow::yaml::{Problem, Spanned, YNode};
use regex::Regex;
use serde_json::Value;
use std::cmp::Ordering;

#[derive(Debug, Clone)]
pub enum Condition {
    All(Vec<Condition>),
    Any(Vec<Condition>),
    Not(Box<Condition>),
    Expr(Expression),
    Test(JsonPath, Op),
}

#[derive(Debug, Clone)]
pub enum Op {
    Eq(Value),
    Ne(Value),
    Gt(Value),
    Gte(Value),
    Lt(Value),
    Lte(Value),
    In(Vec<Value>),
    Exists(bool),
    Contains(Value),
    StartsWith(String),
    EndsWith(String),
    Matches(Regex),
}

const OPERATORS: &[&str] = &[
    "eq",
    "ne",
    "gt",
    "gte",
    "lt",
    "lte",
    "in",
    "exists",
    "contains",
    "starts_with",
    "ends_with",
    "matches",
];
const WORDS: &[&str] = &["all", "any", "not", "expr"];

impl Condition {
    /// Compile a condition, adding every problem found to `problems`.
    /// Returns `None` when anything was wrong.
    pub fn compile(
        node: &Spanned<YNode>,
        engine: &Engine,
        problems: &mut Vec<Problem>,
    ) -> Option<Condition> {
        let before = problems.len();
        let cond = compile_map(node, engine, problems);
        (problems.len() == before).then_some(cond)
    }

    /// Whether evaluating it runs a script (an `expr` anywhere inside):
    /// that may take up to the wall-time limit, so it must not happen on a
    /// thread that answers requests. The others are cheap.
    pub fn has_script(&self) -> bool {
        match self {
            Condition::All(cs) | Condition::Any(cs) => cs.iter().any(Condition::has_script),
            Condition::Not(c) => c.has_script(),
            Condition::Expr(_) => true,
            Condition::Test(..) => false,
        }
    }

    /// Does the condition hold on `ctx`? An error only comes from `expr`.
    pub fn eval(&self, ctx: &Value) -> Result<bool, String> {
        match self {
            Condition::All(cs) => {
                for c in cs {
                    if !c.eval(ctx)? {
                        return Ok(false);
                    }
                }
                Ok(true)
            }
            Condition::Any(cs) => {
                for c in cs {
                    if c.eval(ctx)? {
                        return Ok(true);
                    }
                }
                Ok(false)
            }
            Condition::Not(c) => Ok(!c.eval(ctx)?),
            Condition::Expr(e) => e.eval_bool(ctx),
            Condition::Test(path, op) => Ok(path.with_value(ctx, |v| op.holds(v))),
        }
    }
}

fn problem(problems: &mut Vec<Problem>, pos: crate::workflow::yaml::Pos, message: String) {
    problems.push(Problem { pos, message });
}

fn compile_map(node: &Spanned<YNode>, engine: &Engine, problems: &mut Vec<Problem>) -> Condition {
    let YNode::Map(entries) = &node.value else {
        problem(
            problems,
            node.pos,
            format!(
                "a condition is a mapping of JSONPath queries to tests, found {}",
                node.value.kind()
            ),
        );
        return Condition::All(Vec::new());
    };
    let mut all = Vec::new();
    for (key, value) in entries {
        match key.value.as_str() {
            "all" | "any" => {
                let YNode::Seq(items) = &value.value else {
                    problem(
                        problems,
                        value.pos,
                        format!("`{}` takes a list of conditions", key.value),
                    );
                    continue;
                };
                let cs = items
                    .iter()
                    .map(|i| compile_map(i, engine, problems))
                    .collect();
                all.push(if key.value == "all" {
                    Condition::All(cs)
                } else {
                    Condition::Any(cs)
                });
            }
            "not" => all.push(Condition::Not(Box::new(compile_map(
                value, engine, problems,
            )))),
            "expr" => match &value.value {
                YNode::String(src) => match engine.compile_expression(src) {
                    Ok(e) => all.push(Condition::Expr(e)),
                    Err(e) => problem(
                        problems,
                        value.pos,
                        format!("invalid `expr` (Rhai, column {}): {}", e.col, e.message),
                    ),
                },
                other => problem(
                    problems,
                    value.pos,
                    format!(
                        "`expr` takes a Rhai expression as text, found {}",
                        other.kind()
                    ),
                ),
            },
            k if k.starts_with('$') => match JsonPath::parse(k) {
                Ok(path) => {
                    for op in compile_ops(value, problems) {
                        all.push(Condition::Test(path.clone(), op));
                    }
                }
                Err(e) => problem(problems, key.pos, e.to_string()),
            },
            k => {
                let hint = crate::workflow::yaml::did_you_mean(k, WORDS.iter().copied())
                    .map(|w| format!("; did you mean `{w}`?"))
                    .unwrap_or_else(|| format!("; did you mean `$.{k}`?"));
                problem(
                    problems,
                    key.pos,
                    format!("condition keys are JSONPath queries (starting with `$`) or all/any/not/expr, found `{k}`{hint}"),
                );
            }
        }
    }
    if all.len() == 1 {
        all.pop().expect("one element")
    } else {
        Condition::All(all)
    }
}

fn compile_ops(node: &Spanned<YNode>, problems: &mut Vec<Problem>) -> Vec<Op> {
    let entries = match &node.value {
        YNode::Map(entries) => entries,
        // A scalar (or a list) means equals.
        other => return vec![Op::Eq(other.to_json())],
    };
    let mut ops = Vec::new();
    for (name, arg) in entries {
        let json = arg.value.to_json();
        let text = |problems: &mut Vec<Problem>| match &json {
            Value::String(s) => Some(s.clone()),
            _ => {
                problem(problems, arg.pos, format!("`{}` takes text", name.value));
                None
            }
        };
        let op = match name.value.as_str() {
            "eq" => Op::Eq(json),
            "ne" => Op::Ne(json),
            "gt" => Op::Gt(json),
            "gte" => Op::Gte(json),
            "lt" => Op::Lt(json),
            "lte" => Op::Lte(json),
            "in" => match json {
                Value::Array(items) => Op::In(items),
                _ => {
                    problem(problems, arg.pos, "`in` takes a list of values".to_string());
                    continue;
                }
            },
            "exists" => match json {
                Value::Bool(b) => Op::Exists(b),
                _ => {
                    problem(
                        problems,
                        arg.pos,
                        "`exists` takes true or false".to_string(),
                    );
                    continue;
                }
            },
            "contains" => Op::Contains(json),
            "starts_with" => match text(problems) {
                Some(s) => Op::StartsWith(s),
                None => continue,
            },
            "ends_with" => match text(problems) {
                Some(s) => Op::EndsWith(s),
                None => continue,
            },
            "matches" => match text(problems) {
                Some(s) => match Regex::new(&s) {
                    Ok(re) => Op::Matches(re),
                    Err(e) => {
                        problem(
                            problems,
                            arg.pos,
                            format!("invalid regex `{s}`: {}", regex_reason(&e)),
                        );
                        continue;
                    }
                },
                None => continue,
            },
            other => {
                let hint = crate::workflow::yaml::did_you_mean(other, OPERATORS.iter().copied())
                    .map(|w| format!("did you mean `{w}`?"))
                    .unwrap_or_else(|| format!("operators are: {}", OPERATORS.join(", ")));
                problem(
                    problems,
                    name.pos,
                    format!("unknown operator `{other}`; {hint}"),
                );
                continue;
            }
        };
        ops.push(op);
    }
    if entries.is_empty() {
        problem(
            problems,
            node.pos,
            "a test needs an operator, e.g. `{ eq: value }`".to_string(),
        );
    }
    ops
}

fn regex_reason(e: &regex::Error) -> String {
    let text = e.to_string();
    match text.rsplit_once("error: ") {
        Some((_, reason)) => reason.trim().to_string(),
        None => text.split_whitespace().collect::<Vec<_>>().join(" "),
    }
}

/// Equality across JSON types: numbers compare by value (`1000 == 1000.0`),
/// everything else structurally; a missing value is null.
pub fn json_eq(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => num_cmp(x, y) == Some(Ordering::Equal),
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(a, b)| json_eq(a, b))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(k, v)| y.get(k).is_some_and(|w| json_eq(v, w)))
        }
        _ => a == b,
    }
}

fn num_cmp(x: &serde_json::Number, y: &serde_json::Number) -> Option<Ordering> {
    if let (Some(a), Some(b)) = (x.as_i64(), y.as_i64()) {
        return Some(a.cmp(&b));
    }
    if let (Some(a), Some(b)) = (x.as_u64(), y.as_u64()) {
        return Some(a.cmp(&b));
    }
    x.as_f64()?.partial_cmp(&y.as_f64()?)
}

/// Ordering is defined between two numbers or two strings only.
fn order(a: &Value, b: &Value) -> Option<Ordering> {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => num_cmp(x, y),
        (Value::String(x), Value::String(y)) => Some(x.cmp(y)),
        _ => None,
    }
}

impl Op {
    fn holds(&self, value: Option<&Value>) -> bool {
        let v = value.unwrap_or(&Value::Null);
        match self {
            Op::Eq(x) => json_eq(v, x),
            Op::Ne(x) => !json_eq(v, x),
            Op::Gt(x) => order(v, x) == Some(Ordering::Greater),
            Op::Gte(x) => matches!(order(v, x), Some(Ordering::Greater | Ordering::Equal)),
            Op::Lt(x) => order(v, x) == Some(Ordering::Less),
            Op::Lte(x) => matches!(order(v, x), Some(Ordering::Less | Ordering::Equal)),
            Op::In(xs) => xs.iter().any(|x| json_eq(v, x)),
            Op::Exists(want) => value.is_some() == *want,
            Op::Contains(x) => match (v, x) {
                (Value::String(s), Value::String(sub)) => s.contains(sub.as_str()),
                (Value::Array(items), x) => items.iter().any(|i| json_eq(i, x)),
                _ => false,
            },
            Op::StartsWith(p) => v.as_str().is_some_and(|s| s.starts_with(p.as_str())),
            Op::EndsWith(p) => v.as_str().is_some_and(|s| s.ends_with(p.as_str())),
            Op::Matches(re) => v.as_str().is_some_and(|s| re.is_match(s)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::workflow::yaml;
    use serde_json::json;

    fn cond(src: &str) -> Result<Condition, Vec<Problem>> {
        let (node, mut problems) = yaml::from_str::<Spanned<YNode>>(src);
        let node = node.ok_or(problems.clone())?;
        Condition::compile(&node, &Engine::default(), &mut problems).ok_or(problems)
    }

    fn holds(src: &str, ctx: &Value) -> bool {
        cond(src).expect("compiles").eval(ctx).expect("evaluates")
    }

    #[test]
    fn every_operator() {
        let ctx = json!({"event": {"type": "payment_intent.succeeded", "amount": 2000, "cur": "usd",
            "tags": ["a", "b"], "nothing": null, "desc": "full refund", "f": 1000.0}});
        assert!(holds("$.event.type: payment_intent.succeeded", &ctx));
        assert!(holds(
            "$.event.amount: { gte: 1000, lte: 2000, gt: 1999, lt: 2001, ne: 5 }",
            &ctx
        ));
        assert!(!holds("$.event.amount: { gt: 2000 }", &ctx));
        assert!(holds("$.event.f: 1000", &ctx));
        assert!(holds("$.event.cur: { in: [usd, eur] }", &ctx));
        assert!(!holds("$.event.cur: { in: [gbp] }", &ctx));
        assert!(holds("$.event.nothing: { exists: true }", &ctx));
        assert!(holds("$.event.missing: { exists: false }", &ctx));
        assert!(holds(
            "$.event.desc: { contains: refund, starts_with: full, ends_with: fund }",
            &ctx
        ));
        assert!(holds("$.event.tags: { contains: b }", &ctx));
        assert!(holds(
            "$.event.type: { matches: '^payment_.*\\.succeeded$' }",
            &ctx
        ));
        assert!(holds(
            "any: [ {$.event.cur: eur}, {$.event.cur: usd} ]",
            &ctx
        ));
        assert!(!holds(
            "all: [ {$.event.cur: eur}, {$.event.cur: usd} ]",
            &ctx
        ));
        assert!(holds("not: { $.event.cur: eur }", &ctx));
        assert!(holds(
            "expr: 'event.amount >= 1000 && event.type.starts_with(\"payment_\")'",
            &ctx
        ));
    }

    #[test]
    fn different_types_are_never_an_error() {
        let ctx = json!({"event": {"amount": "2000", "n": 5}});
        assert!(!holds("$.event.amount: { gte: 1000 }", &ctx));
        assert!(!holds("$.event.amount: { eq: 2000 }", &ctx));
        assert!(holds("$.event.amount: { ne: 2000 }", &ctx));
        assert!(!holds("$.event.n: { contains: x }", &ctx));
        assert!(!holds("$.event.n: { matches: '5' }", &ctx));
        assert!(!holds("$.event.missing: { gt: 1 }", &ctx));
    }

    #[test]
    fn conditions_know_whether_they_run_a_script() {
        let has = |src: &str| cond(src).expect("compiles").has_script();
        assert!(!has("$.event.type: a"));
        assert!(!has("any: [ {$.a: 1}, {not: {$.b: 2}} ]"));
        assert!(has("expr: 'true'"));
        assert!(has("$.a: 1\nany: [ {$.b: 2}, {not: {expr: 'true'}} ]"));
    }

    #[test]
    fn reports_every_problem_with_positions() {
        let problems =
            cond("$.a[: 1\nfoo: 2\n$.b: { gtt: 1 }\n$.c: { matches: '(' }\nexpr: 'a +'\n")
                .expect_err("bad");
        let lines: Vec<usize> = problems.iter().map(|p| p.pos.line).collect();
        assert_eq!(lines, vec![1, 2, 3, 4, 5], "{problems:?}");
        assert!(
            problems[2].message.contains("did you mean `gt`"),
            "{problems:?}"
        );
    }
}
