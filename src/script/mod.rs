//! The one sandboxed Rhai engine. Scripts and `expr` conditions are compiled
//! to an AST once, when a workflow is loaded, and evaluated many times.
//!
//! The sandbox: Rhai has no file, network or process access of its own; we
//! also disable `eval` and module imports, and bound operations, call depth,
//! expression depth, string/array/map sizes and wall time ([`Limits`]). A
//! script that breaks a limit fails its own step and nothing else.

mod helpers;

use crate::store::StateStore;
use rhai::{Dynamic, Scope, AST};
use serde_json::Value;
use std::cell::RefCell;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The sandbox bounds. Defaults suit webhook transforms: milliseconds of work.
#[derive(Debug, Clone)]
pub struct Limits {
    pub max_operations: u64,
    pub max_call_levels: usize,
    pub max_expr_depth: usize,
    pub max_string_size: usize,
    pub max_array_size: usize,
    pub max_map_size: usize,
    pub wall_time: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_operations: 5_000_000,
            max_call_levels: 48,
            max_expr_depth: 64,
            max_string_size: 1024 * 1024,
            max_array_size: 100_000,
            max_map_size: 10_000,
            wall_time: Duration::from_secs(2),
        }
    }
}

/// What one evaluation may touch, reachable from the registered helper
/// functions. Rhai calls helpers synchronously on the evaluating thread, so
/// a thread-local scoped to one evaluation is exact and needs no locking.
pub(crate) struct CallScope {
    pub deadline: Instant,
    pub logs: Vec<String>,
    pub state: Option<(StateStore, String)>,
    /// Running on the async runtime: give up (see [`Script::try_inline`])
    /// rather than run long or write state.
    pub inline: bool,
    /// The inline attempt gave up.
    pub gave_up: bool,
}

impl CallScope {
    /// In an inline attempt, give up; `true` if it did.
    pub(crate) fn give_up_inline(&mut self) -> bool {
        if self.inline {
            self.gave_up = true;
        }
        self.inline
    }
}

/// Operations an inline attempt may take (well under a millisecond).
const INLINE_MAX_OPERATIONS: u64 = 20_000;

thread_local! {
    pub(crate) static CALL: RefCell<Option<CallScope>> = const { RefCell::new(None) };
}

/// The shared engine. Cheap to clone.
#[derive(Clone)]
pub struct Engine {
    inner: Arc<rhai::Engine>,
    limits: Arc<Limits>,
}

/// A compile error with its position inside the script (1-based).
#[derive(Debug, Clone)]
pub struct CompileError {
    pub line: usize,
    pub col: usize,
    pub message: String,
}

/// A compiled script (a `transform` step).
#[derive(Clone)]
pub struct Script {
    engine: Engine,
    ast: Arc<AST>,
    names: Arc<Names>,
}

/// A compiled boolean expression (`expr` in a condition).
#[derive(Clone)]
pub struct Expression {
    engine: Engine,
    ast: Arc<AST>,
    names: Arc<Names>,
}

/// The identifiers a script's source mentions. Context variables it never
/// names are not converted for it: converting the whole context to Rhai
/// values is most of the cost of a small script.
#[derive(Debug, Default)]
struct Names(std::collections::HashSet<String>);

impl Names {
    fn of(source: &str) -> Names {
        let mut set = std::collections::HashSet::new();
        let mut word = String::new();
        for c in source.chars().chain(std::iter::once(' ')) {
            if c.is_ascii_alphanumeric() || c == '_' {
                word.push(c);
            } else if !word.is_empty() {
                set.insert(std::mem::take(&mut word));
            }
        }
        Names(set)
    }

    fn mentions(&self, name: &str) -> bool {
        self.0.contains(name)
    }
}

impl std::fmt::Debug for Script {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Script")
    }
}

impl std::fmt::Debug for Expression {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Expression")
    }
}

/// The result of running a script: its value or error, and its log lines.
#[derive(Debug)]
pub struct ScriptOutcome {
    pub result: Result<Value, String>,
    pub logs: Vec<String>,
}

impl Default for Engine {
    fn default() -> Self {
        Engine::new(Limits::default())
    }
}

impl Engine {
    pub fn new(limits: Limits) -> Engine {
        let mut e = rhai::Engine::new();
        e.set_max_operations(limits.max_operations)
            .set_max_call_levels(limits.max_call_levels)
            .set_max_expr_depths(limits.max_expr_depth, limits.max_expr_depth)
            .set_max_string_size(limits.max_string_size)
            .set_max_array_size(limits.max_array_size)
            .set_max_map_size(limits.max_map_size)
            .set_max_modules(0);
        e.disable_symbol("eval");
        e.set_module_resolver(rhai::module_resolvers::DummyModuleResolver::new());
        e.on_progress(|ops| {
            // Checking the clock every operation would dominate small scripts.
            if ops % 1024 != 0 {
                return None;
            }
            CALL.with(|c| {
                let mut c = c.borrow_mut();
                let s = c.as_mut()?;
                if ops >= INLINE_MAX_OPERATIONS && s.give_up_inline() {
                    return Some(Dynamic::from("moved off the async runtime"));
                }
                (ops % 4096 == 0 && Instant::now() > s.deadline)
                    .then(|| Dynamic::from("script exceeded its wall-time limit"))
            })
        });
        e.on_print(|s| helpers::push_log(s.to_string()));
        e.on_debug(|s, _, _| helpers::push_log(s.to_string()));
        helpers::register(&mut e);
        Engine {
            inner: Arc::new(e),
            limits: Arc::new(limits),
        }
    }

    pub fn compile_script(&self, source: &str) -> Result<Script, CompileError> {
        let ast = self.inner.compile(source).map_err(compile_error)?;
        Ok(Script {
            engine: self.clone(),
            ast: Arc::new(ast),
            names: Arc::new(Names::of(source)),
        })
    }

    pub fn compile_expression(&self, source: &str) -> Result<Expression, CompileError> {
        let ast = self
            .inner
            .compile_expression(source)
            .map_err(compile_error)?;
        Ok(Expression {
            engine: self.clone(),
            ast: Arc::new(ast),
            names: Arc::new(Names::of(source)),
        })
    }

    fn eval(
        &self,
        ast: &AST,
        names: &Names,
        ctx: &Value,
        state: Option<(StateStore, String)>,
    ) -> ScriptOutcome {
        self.eval_in(ast, names, ctx, state, false)
            .unwrap_or_else(|| ScriptOutcome {
                result: Err("script gave up".into()),
                logs: Vec::new(),
            })
    }

    /// Evaluate; `inline` makes it give up (`None`) instead of running
    /// long or writing state.
    fn eval_in(
        &self,
        ast: &AST,
        names: &Names,
        ctx: &Value,
        state: Option<(StateStore, String)>,
        inline: bool,
    ) -> Option<ScriptOutcome> {
        let mut scope = Scope::new();
        if let Value::Object(vars) = ctx {
            for (name, value) in vars.iter().filter(|(n, _)| names.mentions(n)) {
                scope.push_dynamic(name.as_str(), to_dynamic(value));
            }
        }
        let previous = CALL.with(|c| {
            c.borrow_mut().replace(CallScope {
                deadline: Instant::now() + self.limits.wall_time,
                logs: Vec::new(),
                state,
                inline,
                gave_up: false,
            })
        });
        let result = self.inner.eval_ast_with_scope::<Dynamic>(&mut scope, ast);
        let call = CALL.with(|c| std::mem::replace(&mut *c.borrow_mut(), previous));
        if call.as_ref().is_some_and(|c| c.gave_up) {
            return None;
        }
        let logs = call.map(|c| c.logs).unwrap_or_default();
        let result = result.map_err(|e| eval_error(&e)).and_then(|d| {
            rhai::serde::from_dynamic::<Value>(&d)
                .map_err(|e| format!("the script's value cannot be turned into JSON: {e}"))
        });
        Some(ScriptOutcome { result, logs })
    }
}

impl Script {
    /// Run with the run context's keys as variables. `state` is the
    /// per-workflow store behind `state_get` / `state_set`.
    pub fn run(&self, ctx: &Value, state: Option<(StateStore, String)>) -> ScriptOutcome {
        self.engine.eval(&self.ast, &self.names, ctx, state)
    }

    /// Run where blocking is not allowed (the async runtime): scripts that
    /// take more than a few thousand operations or call `state_set` give
    /// up before any effect (`None`), to be run again with [`Script::run`]
    /// on a blocking thread. Most scripts finish here, which saves two
    /// thread switches per run.
    pub fn try_inline(
        &self,
        ctx: &Value,
        state: Option<(StateStore, String)>,
    ) -> Option<ScriptOutcome> {
        self.engine
            .eval_in(&self.ast, &self.names, ctx, state, true)
    }
}

impl Expression {
    pub fn eval_bool(&self, ctx: &Value) -> Result<bool, String> {
        let outcome = self.engine.eval(&self.ast, &self.names, ctx, None);
        match outcome.result? {
            Value::Bool(b) => Ok(b),
            other => Err(format!(
                "`expr` must give true or false, it gave {}",
                crate::expr::template::value_text(&other)
            )),
        }
    }
}

/// JSON → Rhai, directly (serde's generic route costs several times more).
pub fn to_dynamic(v: &Value) -> Dynamic {
    match v {
        Value::Null => Dynamic::UNIT,
        Value::Bool(b) => Dynamic::from_bool(*b),
        Value::Number(n) => match n.as_i64() {
            Some(i) => Dynamic::from_int(i),
            None => Dynamic::from_float(n.as_f64().unwrap_or(f64::NAN)),
        },
        Value::String(s) => Dynamic::from(rhai::ImmutableString::from(s.as_str())),
        Value::Array(items) => Dynamic::from_array(items.iter().map(to_dynamic).collect()),
        Value::Object(map) => {
            let mut m = rhai::Map::new();
            for (k, v) in map {
                m.insert(k.as_str().into(), to_dynamic(v));
            }
            Dynamic::from_map(m)
        }
    }
}

/// Rhai → JSON. Values with no JSON form (functions, ranges, NaN) are errors.
pub fn from_dynamic(d: &Dynamic) -> Result<Value, String> {
    if d.is_unit() {
        return Ok(Value::Null);
    }
    if let Ok(b) = d.as_bool() {
        return Ok(Value::Bool(b));
    }
    if let Ok(i) = d.as_int() {
        return Ok(Value::from(i));
    }
    if let Ok(f) = d.as_float() {
        return serde_json::Number::from_f64(f)
            .map(Value::Number)
            .ok_or_else(|| {
                "the script's value holds a number JSON cannot represent (NaN or infinity)"
                    .to_string()
            });
    }
    if d.is_string() || d.is_char() {
        return Ok(Value::String(d.to_string()));
    }
    if let Some(arr) = d.read_lock::<rhai::Array>() {
        return arr
            .iter()
            .map(from_dynamic)
            .collect::<Result<Vec<_>, _>>()
            .map(Value::Array);
    }
    if let Some(map) = d.read_lock::<rhai::Map>() {
        let mut out = serde_json::Map::with_capacity(map.len());
        for (k, v) in map.iter() {
            out.insert(k.to_string(), from_dynamic(v)?);
        }
        return Ok(Value::Object(out));
    }
    rhai::serde::from_dynamic::<Value>(d).map_err(|e| {
        format!(
            "the script's value cannot be turned into JSON ({}): {e}",
            d.type_name()
        )
    })
}

fn compile_error(e: rhai::ParseError) -> CompileError {
    let pos = e.position();
    CompileError {
        line: pos.line().unwrap_or(1),
        col: pos.position().unwrap_or(1),
        message: e.err_type().to_string(),
    }
}

fn eval_error(e: &rhai::EvalAltResult) -> String {
    use rhai::EvalAltResult as E;
    match e {
        E::ErrorTerminated(reason, _) => reason.to_string(),
        E::ErrorTooManyOperations(_) => "script exceeded its operations limit".to_string(),
        E::ErrorStackOverflow(_) => "script exceeded its call depth limit".to_string(),
        E::ErrorDataTooLarge(what, _) => format!("script exceeded its size limit: {what}"),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn runs_a_transform_with_context_variables() {
        let engine = Engine::default();
        let s = engine
            .compile_script("let o = event.data; log(`amount ${o.amount}`); #{ text: `Paid ${o.amount / 100} ${o.currency.to_upper()}` }")
            .expect("compiles");
        let out = s.run(
            &json!({"event": {"data": {"amount": 2000, "currency": "usd"}}}),
            None,
        );
        assert_eq!(out.result.expect("runs"), json!({"text": "Paid 20 USD"}));
        assert_eq!(out.logs, vec!["amount 2000"]);
    }

    #[test]
    fn short_scripts_finish_inline_with_the_same_result() {
        let engine = Engine::default();
        let s = engine
            .compile_script("log(\"hi\"); #{ n: event.n * 2 }")
            .expect("compiles");
        let ctx = json!({"event": {"n": 21}});
        let inline = s
            .try_inline(&ctx, None)
            .expect("a short script stays inline");
        let full = s.run(&ctx, None);
        assert_eq!(inline.result, full.result);
        assert_eq!(inline.result.expect("runs"), json!({"n": 42}));
        assert_eq!(inline.logs, full.logs);
    }

    #[test]
    fn long_scripts_give_up_inline_and_run_in_full() {
        let engine = Engine::default();
        let s = engine
            .compile_script("let t = 0; for i in 0..100000 { t += i; } t")
            .expect("compiles");
        assert!(s.try_inline(&json!({}), None).is_none());
        assert_eq!(
            s.run(&json!({}), None).result.expect("runs"),
            json!(4999950000_i64)
        );
    }

    #[test]
    fn state_writes_happen_once_in_the_full_run_only() {
        let store = crate::store::Store::temporary().expect("store");
        let engine = Engine::default();
        let s = engine
            .compile_script("let n = state_get(\"n\") ?? 0; state_set(\"n\", n + 1); n + 1")
            .expect("compiles");
        let state = || Some((store.state(), "wf".to_string()));
        assert!(s.try_inline(&json!({}), state()).is_none());
        assert_eq!(
            store.state().get("wf", "n").expect("read"),
            None,
            "nothing written inline"
        );
        assert_eq!(s.run(&json!({}), state()).result.expect("runs"), json!(1));
        assert_eq!(store.state().get("wf", "n").expect("read"), Some(json!(1)));
    }

    #[test]
    fn compile_errors_have_positions() {
        let engine = Engine::default();
        let err = engine
            .compile_script("let a = 1;\nlet b = ;")
            .expect_err("bad");
        assert_eq!(err.line, 2);
    }

    #[test]
    fn runaway_scripts_stop() {
        let engine = Engine::new(Limits {
            wall_time: Duration::from_millis(100),
            max_operations: u64::MAX / 2,
            ..Limits::default()
        });
        let s = engine.compile_script("loop { }").expect("compiles");
        let started = Instant::now();
        let out = s.run(&json!({}), None);
        assert!(out.result.expect_err("stopped").contains("wall-time"));
        assert!(started.elapsed() < Duration::from_secs(5));
        let s = Engine::default()
            .compile_script("let x = 0; loop { x += 1; }")
            .expect("compiles");
        assert!(s
            .run(&json!({}), None)
            .result
            .expect_err("stopped")
            .contains("limit"));
    }

    #[test]
    fn sandbox_refuses_eval_and_import() {
        let engine = Engine::default();
        assert!(engine.compile_script("eval(\"1\")").is_err());
        let s = engine.compile_script("import \"x\" as y; 1");
        match s {
            Err(_) => {}
            Ok(s) => assert!(s.run(&json!({}), None).result.is_err()),
        }
    }

    #[test]
    fn expressions_must_be_boolean() {
        let engine = Engine::default();
        let e = engine
            .compile_expression("event.n >= 3 && event.t.starts_with(\"pay\")")
            .expect("ok");
        assert_eq!(
            e.eval_bool(&json!({"event": {"n": 3, "t": "payment"}})),
            Ok(true)
        );
        let e = engine.compile_expression("event.n + 1").expect("ok");
        assert!(e.eval_bool(&json!({"event": {"n": 3}})).is_err());
    }
}
