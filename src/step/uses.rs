//! A `uses` step at run time (SPEC §9): an `http` step whose request was
//! written by a connector. This file adds what a connector brings to the
//! `http` step's own phases (prepare, send, decide — retries,
//! Idempotency-Key, attempts, redaction and the outbound policy stay
//! theirs):
//!
//! - the `with:` values, rendered and checked against the action's params
//!   into `$.params` (absent ones dropped, defaults filled in);
//! - the OAuth2 access token ([`super::oauth2`]): put on the request,
//!   refreshed once when the provider answers `401`, and the call repeated;
//! - `ok_when` on the answer (a 2xx that fails it fails the step) and
//!   `error`, the step's error when the answer is a failure.

use super::http::{attempt_of, decide, output, settle, HttpAction, Response, Sender};
use super::oauth2::{TokenError, TokenSource};
use super::{Outcome, StepEnv};
use crate::expr::condition::Condition;
use crate::expr::template::{Template, ValueTemplate};
use crate::record::{StepRecord, Timestamp};
use crate::secret::{Redactor, Secret};
use serde_json::{Map, Value};
use std::borrow::Cow;
use std::sync::Arc;

/// Where a connector's templates find the rendered `with:` values.
pub const PARAMS: &str = "params";
/// Where `ok_when` and `error` find the answer.
pub const RESPONSE: &str = "response";

/// What a connector adds to an `http` step.
#[derive(Debug)]
pub struct Uses {
    /// `connector.action`, kept in the step record.
    pub name: String,
    pub params: Vec<Param>,
    /// On `$.response` (with the run context and `$.params`): a 2xx that
    /// fails it fails the step.
    pub ok_when: Option<Condition>,
    /// The step's error when the answer is a failure.
    pub error: Option<Template>,
    pub oauth2: Option<Arc<TokenSource>>,
}

/// One parameter of the action and what the workflow gave for it.
#[derive(Debug)]
pub struct Param {
    pub name: String,
    pub ty: ParamType,
    pub required: bool,
    /// The only values allowed, when the action lists them.
    pub allowed: Option<Vec<Value>>,
    pub default: Option<Value>,
    /// The `with:` value, and how it was written (for messages).
    pub given: Option<(ValueTemplate, String)>,
}

/// The type of a parameter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParamType {
    String,
    Number,
    Integer,
    Boolean,
    Array,
    Object,
    Any,
}

impl ParamType {
    pub const NAMES: [&'static str; 7] = [
        "string", "number", "integer", "boolean", "array", "object", "any",
    ];

    pub fn parse(s: &str) -> Option<ParamType> {
        Some(match s {
            "string" => ParamType::String,
            "number" => ParamType::Number,
            "integer" => ParamType::Integer,
            "boolean" => ParamType::Boolean,
            "array" => ParamType::Array,
            "object" => ParamType::Object,
            "any" => ParamType::Any,
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            ParamType::String => "string",
            ParamType::Number => "number",
            ParamType::Integer => "integer",
            ParamType::Boolean => "boolean",
            ParamType::Array => "array",
            ParamType::Object => "object",
            ParamType::Any => "any",
        }
    }

    /// What a value of this type is, in a message: "must be {describe}".
    pub fn describe(self) -> &'static str {
        match self {
            ParamType::String => "text",
            ParamType::Number => "a number",
            ParamType::Integer => "a whole number",
            ParamType::Boolean => "true or false",
            ParamType::Array => "a list",
            ParamType::Object => "a mapping",
            ParamType::Any => "any value",
        }
    }

    /// Whether `v` is of this type. Text also takes a number (a Telegram
    /// chat id, an amount), which is sent as its digits.
    pub fn accepts(self, v: &Value) -> bool {
        match (self, v) {
            (ParamType::Any, _) => true,
            (ParamType::String, Value::String(_) | Value::Number(_)) => true,
            (ParamType::Number, Value::Number(_)) => true,
            (ParamType::Integer, Value::Number(n)) => {
                n.is_i64() || n.is_u64() || n.as_f64().is_some_and(|f| f.fract() == 0.0)
            }
            (ParamType::Boolean, Value::Bool(_)) => true,
            (ParamType::Array, Value::Array(_)) => true,
            (ParamType::Object, Value::Object(_)) => true,
            (
                ParamType::String
                | ParamType::Number
                | ParamType::Integer
                | ParamType::Boolean
                | ParamType::Array
                | ParamType::Object,
                _,
            ) => false,
        }
    }

    /// The value as the action gets it: a number given for text becomes
    /// its text.
    fn coerce(self, v: Value) -> Value {
        match (self, v) {
            (ParamType::String, Value::Number(n)) => Value::String(n.to_string()),
            (_, v) => v,
        }
    }

    /// The JSON Schema of a `with:` value of this type: the type, or a
    /// string holding a template (which may stand for any type).
    pub fn json_schema(self) -> Value {
        let template = crate::workflow::connector::template_schema();
        match self {
            ParamType::Any => serde_json::json!({}),
            ParamType::String => serde_json::json!({ "type": ["string", "number"] }),
            ParamType::Number
            | ParamType::Integer
            | ParamType::Boolean
            | ParamType::Array
            | ParamType::Object => {
                serde_json::json!({ "anyOf": [{ "type": self.name() }, template] })
            }
        }
    }
}

/// What a value is, in a message: "found {kind}".
pub fn kind_of(v: &Value) -> &'static str {
    match v {
        Value::Null => "nothing",
        Value::Bool(_) => "true or false",
        Value::Number(_) => "a number",
        Value::String(_) => "text",
        Value::Array(_) => "a list",
        Value::Object(_) => "a mapping",
    }
}

impl Uses {
    /// `$.params`: every parameter given (or defaulted), checked.
    pub fn render_params(&self, ctx: &Value) -> Result<Value, String> {
        let mut out = Map::new();
        for p in &self.params {
            let rendered = p
                .given
                .as_ref()
                .map(|(t, _)| t.render(ctx))
                .unwrap_or(Value::Null);
            let value = match (rendered, &p.default) {
                (Value::Null, Some(d)) => d.clone(),
                (v, _) => v,
            };
            let source = || {
                p.given
                    .as_ref()
                    .map(|(_, s)| s.as_str())
                    .unwrap_or_default()
            };
            if value.is_null() {
                if p.required {
                    return Err(format!(
                        "with: `{}` is required, but `{}` gave nothing",
                        p.name,
                        source()
                    ));
                }
                continue;
            }
            if !p.ty.accepts(&value) {
                return Err(format!(
                    "with: `{}` must be {}, but `{}` gave {}",
                    p.name,
                    p.ty.describe(),
                    source(),
                    kind_of(&value)
                ));
            }
            let value = p.ty.coerce(value);
            if let Some(allowed) = &p.allowed {
                if !allowed
                    .iter()
                    .any(|a| crate::expr::condition::json_eq(a, &value))
                {
                    return Err(format!(
                        "with: `{}` must be one of: {}; `{}` gave {}",
                        p.name,
                        allowed
                            .iter()
                            .map(crate::expr::template::value_text)
                            .collect::<Vec<_>>()
                            .join(", "),
                        source(),
                        value
                    ));
                }
            }
            out.insert(p.name.clone(), value);
        }
        Ok(Value::Object(out))
    }

    /// The connector's `error` for this answer, when it renders to text.
    fn error_text(&self, cx: &Value) -> Option<String> {
        let t = self.error.as_ref()?.render_text(cx);
        let t = t.trim();
        (!t.is_empty()).then(|| t.to_string())
    }

    /// Apply `ok_when` to a success and `error` to a failure with an answer.
    fn judge(
        &self,
        outcome: Outcome,
        result: &Result<Response, String>,
        cx: &mut Scoped<'_>,
    ) -> Outcome {
        let Ok(resp) = result else {
            return outcome;
        };
        let cx = cx.add_more(RESPONSE, output(resp));
        let cx = cx.ctx();
        match outcome {
            Outcome::Succeeded(v) => {
                let Some(check) = &self.ok_when else {
                    return Outcome::Succeeded(v);
                };
                match check.eval(cx) {
                    Ok(true) => Outcome::Succeeded(v),
                    Ok(false) => Outcome::Failed(self.error_text(cx).unwrap_or_else(|| {
                        format!(
                            "HTTP {}: the answer does not pass the connector's `ok_when`",
                            resp.status
                        )
                    })),
                    Err(e) => Outcome::Failed(format!("ok_when could not be evaluated: {e}")),
                }
            }
            Outcome::Failed(e) => Outcome::Failed(self.detailed(e, resp.status, cx)),
            Outcome::Retry { error, at } => Outcome::Retry {
                error: self.detailed(error, resp.status, cx),
                at,
            },
            other @ (Outcome::Filtered
            | Outcome::Skipped
            | Outcome::Wait { .. }
            | Outcome::Respond(_)) => other,
        }
    }

    /// `HTTP 503 …` with the connector's error after the status:
    /// `HTTP 503: busy …`.
    fn detailed(&self, error: String, status: u16, cx: &Value) -> String {
        let Some(detail) = self.error_text(cx) else {
            return error;
        };
        let head = format!("HTTP {status}");
        match error.strip_prefix(&head) {
            Some(rest) => format!("{head}: {detail}{rest}"),
            None => error,
        }
    }
}

/// Put the access token on the request (in place of any `Authorization`).
fn authorize(prepared: &mut super::http::Prepared, token: &Secret) {
    prepared
        .headers
        .retain(|(k, _)| !k.eq_ignore_ascii_case("authorization"));
    prepared.headers.insert(
        0,
        ("Authorization".into(), format!("Bearer {}", token.expose())),
    );
}

/// The workflow's redactor plus a token only this step knows yet.
fn with_token<'a>(base: &'a Redactor, token: Option<&Secret>) -> Cow<'a, Redactor> {
    match token {
        Some(t) => Cow::Owned(Redactor::new(
            base.secrets().iter().cloned().chain([t.clone()]),
        )),
        None => Cow::Borrowed(base),
    }
}

/// A key added to the run context for a while: the value it had before
/// comes back when this goes, however the step ends (a step future
/// dropped halfway included). Saves copying the whole context to add one
/// key.
pub(super) struct Scoped<'a> {
    ctx: &'a mut Value,
    key: &'static str,
    before: Option<Value>,
}

impl<'a> Scoped<'a> {
    pub(super) fn add(ctx: &'a mut Value, key: &'static str, value: Value) -> Scoped<'a> {
        let before = match ctx {
            Value::Object(m) => m.insert(key.to_string(), value),
            _ => None,
        };
        Scoped { ctx, key, before }
    }

    pub(super) fn ctx(&self) -> &Value {
        self.ctx
    }

    /// Add another key for a while, on top of this one.
    fn add_more(&mut self, key: &'static str, value: Value) -> Scoped<'_> {
        Scoped::add(self.ctx, key, value)
    }
}

impl Drop for Scoped<'_> {
    fn drop(&mut self) {
        if let Value::Object(m) = self.ctx {
            match self.before.take() {
                Some(v) => {
                    m.insert(self.key.to_string(), v);
                }
                None => {
                    m.shift_remove(self.key);
                }
            }
        }
    }
}

/// Run a connector action: [`HttpAction::run`] hands `uses` steps here.
pub(super) async fn run(
    http: &HttpAction,
    uses: &Uses,
    ctx: &mut Value,
    env: &StepEnv<'_>,
    record: &mut StepRecord,
) -> Outcome {
    let params = match uses.render_params(ctx) {
        Ok(p) => p,
        Err(e) => return Outcome::Failed(e),
    };
    let key = http.idempotency_key(ctx, env.items);
    // The connector's templates see the run context plus `$.params`.
    let mut cx = Scoped::add(ctx, PARAMS, params);
    let mut prepared = match http.prepare(cx.ctx(), &key) {
        Ok(p) => p,
        Err(e) => return Outcome::Failed(e),
    };
    let mut n = record.attempts.len() as u32 + 1;
    let mut token = None;
    if let Some(source) = &uses.oauth2 {
        match source.token(env, None).await {
            Ok(t) => {
                authorize(&mut prepared, &t);
                token = Some(t);
            }
            Err(e) => return token_failed(http, e, n, env, record),
        }
    }
    let redactor = with_token(env.redactor, token.as_ref());
    let (mut result, mut attempt) = http.exchange(&prepared, env, &redactor, n).await;
    let mut redactor = redactor;
    if let (Some(source), Some(used), Ok(resp)) = (&uses.oauth2, &token, &result) {
        if resp.status == 401 {
            // The token was refused before its time (revoked, rotated):
            // fetch a new one, once, and repeat the call.
            attempt.error = Some(
                "HTTP 401: the access token was refused; it was refreshed and the call repeated"
                    .into(),
            );
            record.attempts.push(attempt);
            n += 1;
            match source.token(env, Some(used)).await {
                Ok(t) => {
                    authorize(&mut prepared, &t);
                    redactor = with_token(env.redactor, Some(&t));
                }
                Err(e) => return token_failed(http, e, n, env, record),
            }
            (result, attempt) = http.exchange(&prepared, env, &redactor, n).await;
        }
    }
    let outcome = decide(&result, n, &http.retry, &http.success, Timestamp::now());
    // A dry run's (or an unmocked test step's) made-up `200` says nothing
    // about what the provider would answer: it is not judged.
    let made_up = matches!(env.http, Sender::Canned(c) if !c.mocked(&http.step_id));
    let outcome = if made_up {
        outcome
    } else {
        uses.judge(outcome, &result, &mut cx)
    };
    settle(&mut attempt, &outcome, &redactor);
    record.attempts.push(attempt);
    outcome
}

/// The token could not be had: the token request (when one was made) is
/// the attempt; an outage is retried like the step's own, a refusal is
/// final.
fn token_failed(
    http: &HttpAction,
    e: TokenError,
    n: u32,
    env: &StepEnv<'_>,
    record: &mut StepRecord,
) -> Outcome {
    let outcome = if e.retryable {
        decide(
            &Err(e.message.clone()),
            n,
            &http.retry,
            &http.success,
            Timestamp::now(),
        )
    } else {
        Outcome::Failed(e.message.clone())
    };
    if let Some(exchange) = e.exchange {
        let mut attempt = attempt_of(
            &exchange.request,
            &exchange.result,
            n,
            exchange.started_at,
            exchange.duration_ms,
            env.redactor,
        );
        attempt.error = match &outcome {
            Outcome::Failed(m) | Outcome::Retry { error: m, .. } => Some(m.clone()),
            Outcome::Succeeded(_)
            | Outcome::Filtered
            | Outcome::Skipped
            | Outcome::Wait { .. }
            | Outcome::Respond(_) => None,
        };
        settle(&mut attempt, &Outcome::Skipped, env.redactor);
        record.attempts.push(attempt);
    }
    outcome
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_scoped_key_leaves_the_context_as_it_was() {
        // A run context that happens to hold `params` of its own.
        let mut ctx = json!({"event": {"a": 1}, "params": "mine", "steps": {}});
        let before = ctx.clone();
        {
            let mut cx = Scoped::add(&mut ctx, PARAMS, json!({"p": 1}));
            assert_eq!(cx.ctx()["params"], json!({"p": 1}));
            {
                let more = cx.add_more(RESPONSE, json!({"status": 200}));
                assert_eq!(more.ctx()["response"]["status"], 200);
                assert_eq!(more.ctx()["params"]["p"], 1);
            }
            assert!(cx.ctx().get(RESPONSE).is_none());
        }
        assert_eq!(ctx, before);
        assert_eq!(
            ctx.as_object()
                .map(|m| m.keys().cloned().collect::<Vec<_>>()),
            Some(vec!["event".into(), "params".into(), "steps".into()]),
            "in its order"
        );
        let mut bare = json!({"event": {}});
        drop(Scoped::add(&mut bare, PARAMS, json!(1)));
        assert_eq!(bare, json!({"event": {}}));
    }

    #[test]
    fn types_accept_what_they_say() {
        use ParamType as T;
        let cases = [
            (T::String, json!("x"), true),
            (T::String, json!(12), true),
            (T::String, json!(true), false),
            (T::String, json!([1]), false),
            (T::Integer, json!(3), true),
            (T::Integer, json!(3.0), true),
            (T::Integer, json!(3.5), false),
            (T::Integer, json!("3"), false),
            (T::Number, json!(3.5), true),
            (T::Boolean, json!(false), true),
            (T::Boolean, json!("true"), false),
            (T::Array, json!([]), true),
            (T::Object, json!({}), true),
            (T::Object, json!([]), false),
            (T::Any, json!(null), true),
        ];
        for (ty, v, ok) in cases {
            assert_eq!(ty.accepts(&v), ok, "{ty:?} {v}");
        }
        assert_eq!(T::String.coerce(json!(42)), json!("42"));
        for name in ParamType::NAMES {
            assert_eq!(ParamType::parse(name).map(ParamType::name), Some(name));
        }
    }
}
