//! The one sandboxed Rhai engine. Scripts and `expr` conditions are compiled
//! to an AST once, when a workflow is loaded, and evaluated many times.
//!
//! The sandbox: Rhai has no file, network or process access of its own; we
//! also disable `eval` and module imports, take away `sleep` (refused when a
//! script is compiled, and an error if called by name), and bound
//! operations, call depth, expression depth, string/array/map sizes and wall
//! time ([`Limits`]), a script's log and its state writes. A script that
//! breaks a limit fails its own step and nothing else.
//!
//! The wall-time limit holds whatever a script calls: every operation
//! compares a coarse clock (module `clock`) with the deadline, so a loop stops
//! within about one operation of it, however expensive each operation is;
//! and the helpers that work through a large input (hashing, encoding)
//! check the deadline as they go. Where evaluations may run is the
//! caller's side: transforms and step conditions run on the run threads,
//! a trigger's `when` with an `expr` on the script threads ([`pool`]).

mod clock;
mod helpers;
pub mod pool;

use crate::store::StateStore;
use clock::Clock;
use rhai::{Dynamic, Scope, AST};
use serde_json::Value;
use std::cell::{Cell, RefCell};
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

/// Log kept per evaluation (one step), in bytes: lines past it are cut or
/// left out, and a last line says how much was dropped.
pub const MAX_LOG_BYTES: usize = 64 * 1024;
/// Log lines kept per evaluation, whatever their size.
pub const MAX_LOG_LINES: usize = 1000;
/// The longest key `state_set` takes, in bytes.
pub const MAX_STATE_KEY_BYTES: usize = 256;
/// The largest value `state_set` takes, in bytes of its JSON form.
pub const MAX_STATE_VALUE_BYTES: usize = 64 * 1024;

/// Why an evaluation stopped at its deadline (the reason is completed
/// with the limit).
const WALL_TIME_EXCEEDED: &str = "script exceeded its wall-time limit";
/// The reason an inline attempt gives, never shown: its caller runs the
/// script again off the async runtime.
const GAVE_UP_INLINE: &str = "moved off the async runtime";
/// What a script that calls `sleep` is told.
pub(crate) const SLEEP_REFUSED: &str =
    "`sleep` is not available to scripts: they must finish within their wall-time limit and never block";

/// What one evaluation may touch, reachable from the registered helper
/// functions. Rhai calls helpers synchronously on the evaluating thread, so
/// a thread-local scoped to one evaluation is exact and needs no locking.
pub(crate) struct CallScope {
    /// The wall-time limit, and when it is reached.
    pub limit: Duration,
    pub deadline: Instant,
    pub log: Log,
    pub state: Option<(StateStore, String)>,
    /// Running on the async runtime: give up (see [`Script::try_inline`])
    /// rather than run long or write state.
    pub inline: bool,
    /// When an inline attempt gives up, even if its operations are few
    /// (one call on a large value can take milliseconds).
    pub inline_until: Instant,
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

    /// Whether the evaluation must stop now, and why: an inline attempt
    /// past its operations or time, or any evaluation past its deadline.
    /// `ops` is the operations so far (0 from a helper).
    pub(crate) fn must_stop(&mut self, ops: u64) -> Option<String> {
        let now = Instant::now();
        if self.inline && (ops >= INLINE_MAX_OPERATIONS || now >= self.inline_until) {
            self.gave_up = true;
            return Some(GAVE_UP_INLINE.to_string());
        }
        (now >= self.deadline).then(|| {
            format!(
                "{WALL_TIME_EXCEEDED} of {}",
                humantime::format_duration(self.limit)
            )
        })
    }
}

/// Operations an inline attempt may take (well under a millisecond).
const INLINE_MAX_OPERATIONS: u64 = 20_000;
/// Time an inline attempt may take: it holds a thread of the async runtime.
const INLINE_MAX_TIME: Duration = Duration::from_millis(2);

thread_local! {
    pub(crate) static CALL: RefCell<Option<CallScope>> = const { RefCell::new(None) };
    /// The clock reading at which this thread's evaluation must stop (or
    /// an inline attempt give up). Kept apart from [`CALL`] so that the
    /// check on every operation is a plain load, not a `RefCell` borrow.
    static STOP_AT: Cell<u64> = const { Cell::new(u64::MAX) };
}

/// A script's log lines, bounded by [`MAX_LOG_BYTES`] and
/// [`MAX_LOG_LINES`].
#[derive(Debug, Default)]
pub(crate) struct Log {
    lines: Vec<String>,
    bytes: usize,
    dropped_bytes: usize,
    left_out: usize,
    cut: usize,
}

impl Log {
    /// After a line was cut, later ones are left out, however short: the
    /// log reads as it was up to the cut.
    fn is_full(&self) -> bool {
        self.cut > 0 || self.lines.len() >= MAX_LOG_LINES || self.bytes >= MAX_LOG_BYTES
    }
}

impl Log {
    pub(crate) fn push(&mut self, mut line: String) {
        if self.is_full() {
            self.dropped_bytes += line.len();
            self.left_out += 1;
            return;
        }
        let room = MAX_LOG_BYTES - self.bytes;
        if line.len() > room {
            let keep = line.floor_char_boundary(room);
            self.dropped_bytes += line.len() - keep;
            self.cut += 1;
            line.truncate(keep);
        }
        self.bytes += line.len();
        self.lines.push(line);
    }

    /// The lines kept, and a last one saying what was dropped, if anything.
    fn into_lines(mut self) -> Vec<String> {
        if self.left_out + self.cut > 0 {
            let lines = |n: usize| {
                if n == 1 {
                    "1 line".to_string()
                } else {
                    format!("{n} lines")
                }
            };
            self.lines.push(format!(
                "log truncated: {} bytes dropped ({} left out, {} cut short); a step keeps at most {MAX_LOG_BYTES} bytes and {MAX_LOG_LINES} lines of log",
                self.dropped_bytes,
                lines(self.left_out),
                lines(self.cut)
            ));
        }
        self.lines
    }
}

/// The shared engine. Cheap to clone.
#[derive(Clone)]
pub struct Engine {
    inner: Arc<rhai::Engine>,
    limits: Arc<Limits>,
    clock: Clock,
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
        let clock = Clock::new();
        let ticks = clock.clone();
        e.on_progress(move |ops| {
            // Every operation: one load of the coarse clock. The system
            // clock is read only when that says the time is up, and every
            // 1,024 operations in case the clock thread lags.
            if ops % 1024 != 0 && ticks.reading() < STOP_AT.get() {
                return None;
            }
            CALL.with(|c| c.borrow_mut().as_mut()?.must_stop(ops))
                .map(Dynamic::from)
        });
        e.on_print(|s| helpers::push_log(s.to_string()));
        e.on_debug(|s, _, _| helpers::push_log(s.to_string()));
        helpers::register(&mut e);
        Engine {
            inner: Arc::new(e),
            limits: Arc::new(limits),
            clock,
        }
    }

    pub fn compile_script(&self, source: &str) -> Result<Script, CompileError> {
        let ast = self.inner.compile(source).map_err(compile_error)?;
        refuse_sleep(&ast)?;
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
        refuse_sleep(&ast)?;
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
        let started = Instant::now();
        let deadline = started + self.limits.wall_time;
        let inline_until = started + INLINE_MAX_TIME;
        let stop_at = if inline {
            deadline.min(inline_until)
        } else {
            deadline
        };
        let _ticking = self.clock.running();
        let previous_stop = STOP_AT.replace(self.clock.reading_after(stop_at));
        let previous = CALL.with(|c| {
            c.borrow_mut().replace(CallScope {
                limit: self.limits.wall_time,
                deadline,
                log: Log::default(),
                state,
                inline,
                inline_until,
                gave_up: false,
            })
        });
        let result = self.inner.eval_ast_with_scope::<Dynamic>(&mut scope, ast);
        let call = CALL.with(|c| std::mem::replace(&mut *c.borrow_mut(), previous));
        STOP_AT.set(previous_stop);
        if call.as_ref().is_some_and(|c| c.gave_up) {
            return None;
        }
        let logs = call.map(|c| c.log.into_lines()).unwrap_or_default();
        let result = result.map_err(|e| eval_error(&e)).and_then(|d| {
            rhai::serde::from_dynamic::<Value>(&d)
                .map_err(|e| format!("the script's value cannot be turned into JSON: {e}"))
        });
        Some(ScriptOutcome { result, logs })
    }
}

/// Refuse a script that calls `sleep`, with the call's position. A script
/// that defines a function of that name calls its own, and is let be; a
/// call by name (`Fn("sleep")`) cannot be seen here and fails when made.
fn refuse_sleep(ast: &AST) -> Result<(), CompileError> {
    use rhai::{ASTNode, Expr, Stmt};
    if ast.iter_functions().any(|f| f.name == "sleep") {
        return Ok(());
    }
    let mut found = None;
    ast.walk(&mut |path: &[ASTNode]| {
        let call = match path.last() {
            Some(ASTNode::Expr(Expr::FnCall(call, _) | Expr::MethodCall(call, _)))
            | Some(ASTNode::Stmt(Stmt::FnCall(call, _))) => call,
            _ => return true,
        };
        if call.name == "sleep" && !call.is_qualified() {
            found = path.last().map(ASTNode::position);
            return false;
        }
        true
    });
    match found {
        None => Ok(()),
        Some(pos) => Err(CompileError {
            line: pos.line().unwrap_or(1),
            col: pos.position().unwrap_or(1),
            message: SLEEP_REFUSED.to_string(),
        }),
    }
}

impl Script {
    /// Run with the run context's keys as variables. `state` is the
    /// per-workflow store behind `state_get` / `state_set`.
    pub fn run(&self, ctx: &Value, state: Option<(StateStore, String)>) -> ScriptOutcome {
        self.engine.eval(&self.ast, &self.names, ctx, state)
    }

    /// Run where blocking is not allowed (the async runtime): scripts that
    /// take more than a few thousand operations or a couple of
    /// milliseconds, or that call `state_set`, give up before any effect
    /// (`None`), to be run again with [`Script::run`] on a blocking thread.
    /// Most scripts finish here, which saves two thread switches per run.
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
    /// Evaluate to a boolean. This blocks for up to the wall-time limit:
    /// callers that answer requests run it on a [`pool::ScriptPool`].
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
    fn sleep_is_refused_when_compiled() {
        let engine = Engine::default();
        let err = engine
            .compile_script("let a = 1;\nsleep(2);\na")
            .expect_err("refused");
        assert_eq!((err.line, err.col), (2, 1), "{err:?}");
        assert!(err.message.contains("`sleep` is not available"), "{err:?}");
        let err = engine
            .compile_script("let a = 1;\n  a.sleep()")
            .expect_err("refused");
        assert_eq!(err.line, 2, "{err:?}");
        assert!(engine.compile_script("if true { sleep(1.5) }").is_err());
        assert!(engine
            .compile_expression("event.n > 1 && sleep(1) == ()")
            .is_err());
        // A script's own function of that name is allowed, and is what runs.
        let own = engine
            .compile_script("fn sleep(s) { s * 2 } sleep(21)")
            .expect("compiles");
        assert_eq!(own.run(&json!({}), None).result, Ok(json!(42)));
    }

    #[test]
    fn sleep_called_by_name_fails_at_once() {
        let engine = Engine::default();
        for src in [
            "let f = Fn(\"sleep\"); f.call(2); 1",
            "call(Fn(\"sleep\"), 2.0); 1",
        ] {
            let s = engine.compile_script(src).expect("compiles");
            let started = Instant::now();
            let err = s.run(&json!({}), None).result.expect_err("refused");
            assert!(err.contains("`sleep` is not available"), "{src}: {err}");
            assert!(started.elapsed() < Duration::from_secs(2), "{src} slept");
        }
    }

    /// A loop whose every iteration is one expensive call: the limit holds
    /// to within about one call, not a few thousand.
    #[test]
    fn a_loop_of_heavy_calls_stops_near_the_limit() {
        let limit = Duration::from_millis(100);
        let engine = Engine::new(Limits {
            wall_time: limit,
            max_operations: u64::MAX / 2,
            ..Limits::default()
        });
        for body in [
            "sha256(s)",
            "base64_encode(s)",
            "let t = s; t.replace(\"a\", \"bc\")",
            "s.split(\"a\")",
        ] {
            let s = engine
                .compile_script(&format!(
                    "let s = \"\"; s.pad(50000, \"abcdefgh\"); loop {{ {body}; }}"
                ))
                .expect("compiles");
            let started = Instant::now();
            let err = s.run(&json!({}), None).result.expect_err("stopped");
            let took = started.elapsed();
            assert!(err.contains("wall-time"), "{body}: {err}");
            assert!(took < 10 * limit, "{body} ran {took:?} against {limit:?}");
        }
    }

    /// An inline attempt is bounded in time too, not only in operations:
    /// it runs where blocking is not allowed.
    #[test]
    fn an_inline_attempt_gives_up_on_heavy_calls() {
        let engine = Engine::new(Limits {
            max_operations: u64::MAX / 2,
            ..Limits::default()
        });
        let s = engine
            .compile_script("let s = \"\"; s.pad(50000, \"abcdefgh\"); loop { sha256(s); }")
            .expect("compiles");
        let started = Instant::now();
        assert!(s.try_inline(&json!({}), None).is_none(), "gave up");
        let took = started.elapsed();
        assert!(
            took < Duration::from_millis(500),
            "the attempt ran {took:?}"
        );
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
