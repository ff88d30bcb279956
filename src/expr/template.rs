//! `{{ … }}` templates (SPEC §3.2), parsed once at load time.
//!
//! A template is literal text and expressions. An expression is a chain of
//! alternatives separated by `??`: JSONPath queries on the run context,
//! `env.NAME` (read when the workflow is compiled; its value is a
//! [`Secret`], so a template's `Debug` never shows it) and JSON literals.
//! The first alternative that is not null wins.

use crate::jsonpath::JsonPath;
use crate::secret::Secret;
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use serde_json::Value;

/// Where an expression stands inside a URL, which decides its encoding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum UrlSlot {
    /// Whole URL, scheme or host: inserted as it is.
    Raw,
    /// A path or query value: percent-encoded.
    Component,
}

/// Everything but the unreserved characters of RFC 3986.
const COMPONENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

#[derive(Debug, Clone)]
pub struct Template {
    parts: Vec<Part>,
}

#[derive(Debug, Clone)]
enum Part {
    Lit(String),
    Expr(Expr, UrlSlot),
}

#[derive(Debug, Clone)]
struct Expr {
    alts: Vec<Alt>,
}

#[derive(Debug, Clone)]
enum Alt {
    Path(JsonPath),
    /// An `env` value, read at load.
    Env(Secret),
    Const(Value),
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct TemplateError(pub String);

/// Looks up environment variables; injected so tests and `hookflow test`
/// cases can supply their own.
pub trait EnvLookup {
    fn get(&self, name: &str) -> Option<String>;
}

/// The process environment.
pub struct ProcessEnv;

impl EnvLookup for ProcessEnv {
    fn get(&self, name: &str) -> Option<String> {
        std::env::var(name).ok()
    }
}

impl<F: Fn(&str) -> Option<String>> EnvLookup for F {
    fn get(&self, name: &str) -> Option<String> {
        self(name)
    }
}

/// What compiling a template needs: the environment, and where to note the
/// secret values it read (so they can be redacted from history).
pub struct TemplateEnv<'a> {
    pub env: &'a dyn EnvLookup,
    pub secrets: &'a mut Vec<Secret>,
}

impl Template {
    pub fn compile(text: &str, env: &mut TemplateEnv) -> Result<Self, TemplateError> {
        Self::compile_inner(text, env, false)
    }

    /// A URL template: expressions in the path or query are percent-encoded.
    pub fn compile_url(text: &str, env: &mut TemplateEnv) -> Result<Self, TemplateError> {
        Self::compile_inner(text, env, true)
    }

    fn compile_inner(text: &str, env: &mut TemplateEnv, url: bool) -> Result<Self, TemplateError> {
        let mut parts = Vec::new();
        let mut rest = text;
        // The URL as far as it is known, with expressions that supplied the
        // scheme or host stood in by placeholders.
        let mut url_so_far = String::new();
        while let Some(start) = rest.find("{{") {
            if start > 0 {
                parts.push(Part::Lit(rest[..start].to_string()));
                url_so_far.push_str(&rest[..start]);
            }
            let inner_start = start + 2;
            let len = find_close(&rest[inner_start..]).ok_or_else(|| {
                TemplateError(format!(
                    "`{{{{` at offset {} has no closing `}}}}`",
                    text.len() - rest.len() + start
                ))
            })?;
            let inner = &rest[inner_start..inner_start + len];
            let expr = compile_expr(inner, env)?;
            let slot = if url {
                url_slot(&url_so_far)
            } else {
                UrlSlot::Raw
            };
            if url && slot == UrlSlot::Raw {
                url_so_far.push_str(if url_so_far.is_empty() { "x://h" } else { "h" });
            } else {
                url_so_far.push('v');
            }
            parts.push(Part::Expr(expr, slot));
            rest = &rest[inner_start + len + 2..];
        }
        if !rest.is_empty() {
            parts.push(Part::Lit(rest.to_string()));
        }
        Ok(Template { parts })
    }

    /// True when the template holds no expression.
    pub fn is_literal(&self) -> bool {
        self.parts.iter().all(|p| matches!(p, Part::Lit(_)))
    }

    /// The value of the template: a template that is exactly one expression
    /// gives that JSON value; anything else gives text.
    pub fn render_value(&self, ctx: &Value) -> Value {
        if let [Part::Expr(e, _)] = self.parts.as_slice() {
            return e.eval(ctx);
        }
        Value::String(self.render_text(ctx))
    }

    /// The template as text: strings as they are, other values as JSON,
    /// null as nothing.
    pub fn render_text(&self, ctx: &Value) -> String {
        let mut out = String::new();
        for part in &self.parts {
            match part {
                Part::Lit(s) => out.push_str(s),
                Part::Expr(e, slot) => {
                    let v = e.eval(ctx);
                    let text = value_text(&v);
                    match slot {
                        UrlSlot::Raw => out.push_str(&text),
                        UrlSlot::Component => out.extend(utf8_percent_encode(&text, COMPONENT)),
                    }
                }
            }
        }
        out
    }
}

/// A value as text inside a longer string.
pub fn value_text(v: &Value) -> String {
    match v {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn url_slot(so_far: &str) -> UrlSlot {
    match so_far.find("://") {
        None => UrlSlot::Raw,
        Some(i) if so_far[i + 3..].contains(['/', '?', '#']) => UrlSlot::Component,
        Some(_) => UrlSlot::Raw,
    }
}

/// Length of the text before the closing `}}`, skipping quoted strings.
fn find_close(s: &str) -> Option<usize> {
    let b = s.as_bytes();
    let mut quote: Option<u8> = None;
    let mut i = 0;
    while i < b.len() {
        match (quote, b[i]) {
            (Some(_), b'\\') => i += 1,
            (Some(q), c) if c == q => quote = None,
            (None, b'"' | b'\'') => quote = Some(b[i]),
            (None, b'}') if b.get(i + 1) == Some(&b'}') => return Some(i),
            _ => {}
        }
        i += 1;
    }
    None
}

/// Split on `??` outside quotes and brackets.
fn split_alternatives(s: &str) -> Vec<&str> {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let (mut quote, mut depth, mut start, mut i) = (None::<u8>, 0i32, 0, 0);
    while i < b.len() {
        match (quote, b[i]) {
            (Some(_), b'\\') => i += 1,
            (Some(q), c) if c == q => quote = None,
            (Some(_), _) => {}
            (None, b'"' | b'\'') => quote = Some(b[i]),
            (None, b'[' | b'(') => depth += 1,
            (None, b']' | b')') => depth -= 1,
            (None, b'?') if depth == 0 && b.get(i + 1) == Some(&b'?') => {
                out.push(&s[start..i]);
                i += 1;
                start = i + 1;
            }
            _ => {}
        }
        i += 1;
    }
    out.push(&s[start..]);
    out
}

fn compile_expr(inner: &str, env: &mut TemplateEnv) -> Result<Expr, TemplateError> {
    let raw_alts = split_alternatives(inner);
    let mut alts = Vec::new();
    let mut missing_env = None;
    for (i, raw) in raw_alts.iter().enumerate() {
        let raw = raw.trim();
        let has_fallback = i + 1 < raw_alts.len();
        if raw.is_empty() {
            return Err(TemplateError(format!(
                "empty expression in `{{{{{inner}}}}}`"
            )));
        }
        if raw.starts_with('$') {
            let path = JsonPath::parse(raw).map_err(|e| TemplateError(e.to_string()))?;
            alts.push(Alt::Path(path));
        } else if let Some(name) = raw.strip_prefix("env.") {
            if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                return Err(TemplateError(format!(
                    "`{raw}` is not a valid environment variable name"
                )));
            }
            match env.env.get(name) {
                Some(value) => {
                    let value = Secret::from(value);
                    if !value.is_empty() && !env.secrets.contains(&value) {
                        env.secrets.push(value.clone());
                    }
                    alts.push(Alt::Env(value));
                }
                None if has_fallback => {}
                None => missing_env = Some(name.to_string()),
            }
        } else if let Some(v) = literal(raw) {
            alts.push(Alt::Const(v));
        } else {
            return Err(TemplateError(format!(
                "cannot read `{raw}`: write a JSONPath (`$.event.id`), `env.NAME` or a quoted literal"
            )));
        }
    }
    if let Some(name) = missing_env {
        return Err(TemplateError(format!(
            "environment variable `{name}` is not set; set it, or give a fallback: `{{{{ env.{name} ?? \"value\" }}}}`"
        )));
    }
    Ok(Expr { alts })
}

fn literal(raw: &str) -> Option<Value> {
    if raw.len() >= 2 && raw.starts_with('\'') && raw.ends_with('\'') {
        return Some(Value::String(raw[1..raw.len() - 1].replace("\\'", "'")));
    }
    serde_json::from_str(raw).ok()
}

impl Expr {
    fn eval(&self, ctx: &Value) -> Value {
        for alt in &self.alts {
            match alt {
                Alt::Path(p) => match p.value(ctx) {
                    Some(Value::Null) | None => continue,
                    Some(v) => return v,
                },
                Alt::Env(s) => return Value::String(s.expose().to_string()),
                Alt::Const(Value::Null) => continue,
                Alt::Const(v) => return v.clone(),
            }
        }
        Value::Null
    }
}

/// A YAML value whose strings may hold templates (an `http` body).
#[derive(Debug, Clone)]
pub enum ValueTemplate {
    Lit(Value),
    Str(Template),
    Array(Vec<ValueTemplate>),
    Object(Vec<(String, ValueTemplate)>),
}

impl ValueTemplate {
    pub fn render(&self, ctx: &Value) -> Value {
        match self {
            ValueTemplate::Lit(v) => v.clone(),
            ValueTemplate::Str(t) => t.render_value(ctx),
            ValueTemplate::Array(items) => {
                Value::Array(items.iter().map(|i| i.render(ctx)).collect())
            }
            ValueTemplate::Object(entries) => Value::Object(
                entries
                    .iter()
                    .map(|(k, v)| (k.clone(), v.render(ctx)))
                    .collect(),
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn env_of(pairs: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> {
        move |n| {
            pairs
                .iter()
                .find(|(k, _)| *k == n)
                .map(|(_, v)| v.to_string())
        }
    }

    fn compile(text: &str) -> Result<Template, TemplateError> {
        let env = env_of(&[("TOKEN", "s3cr3t"), ("BASE", "https://api.example.com")]);
        let mut secrets = Vec::new();
        Template::compile(
            text,
            &mut TemplateEnv {
                env: &env,
                secrets: &mut secrets,
            },
        )
    }

    fn compile_url(text: &str) -> Template {
        let env = env_of(&[("BASE", "https://api.example.com/v1")]);
        let mut secrets = Vec::new();
        Template::compile_url(
            text,
            &mut TemplateEnv {
                env: &env,
                secrets: &mut secrets,
            },
        )
        .expect("valid")
    }

    #[test]
    fn whole_value_and_text() {
        let ctx = json!({"event": {"id": "evt_1", "n": 5, "o": {"a": [1, 2]}, "tags": [{"t": "x"}, {"t": "y"}]}});
        assert_eq!(
            compile("{{ $.event.o }}").expect("ok").render_value(&ctx),
            json!({"a": [1, 2]})
        );
        assert_eq!(
            compile("n={{ $.event.n }} o={{$.event.o}}")
                .expect("ok")
                .render_value(&ctx),
            json!("n=5 o={\"a\":[1,2]}")
        );
        assert_eq!(
            compile("{{ $.event.missing }}")
                .expect("ok")
                .render_value(&ctx),
            Value::Null
        );
        assert_eq!(
            compile("{{ $.event.tags[*].t }}")
                .expect("ok")
                .render_value(&ctx),
            json!(["x", "y"])
        );
        assert_eq!(
            compile("plain").expect("ok").render_value(&ctx),
            json!("plain")
        );
    }

    #[test]
    fn fallbacks_and_env() {
        let ctx = json!({"event": {"id": "evt_1"}});
        assert_eq!(
            compile("{{ env.NOPE ?? \"dflt\" }}")
                .expect("ok")
                .render_value(&ctx),
            json!("dflt")
        );
        assert_eq!(
            compile("{{ env.TOKEN ?? \"dflt\" }}")
                .expect("ok")
                .render_value(&ctx),
            json!("s3cr3t")
        );
        assert_eq!(
            compile("{{ $.event.nope ?? $.event.id }}")
                .expect("ok")
                .render_value(&ctx),
            json!("evt_1")
        );
        assert_eq!(
            compile("{{ $.event.nope ?? 42 }}")
                .expect("ok")
                .render_value(&ctx),
            json!(42)
        );
        assert_eq!(
            compile("{{ $.event.nope ?? 'a}}b' }}")
                .expect("ok")
                .render_value(&ctx),
            json!("a}}b")
        );
        let err = compile("{{ env.NOPE }}").expect_err("unset");
        assert!(err.0.contains("`NOPE` is not set"), "{err}");
        assert!(compile("{{ $.a[ }}").is_err());
        assert!(compile("{{ $.a ").is_err());
        assert!(compile("{{ nonsense }}").is_err());
    }

    #[test]
    fn secrets_are_noted() {
        let env = env_of(&[("TOKEN", "s3cr3t")]);
        let mut secrets = Vec::new();
        Template::compile(
            "Bearer {{ env.TOKEN }}",
            &mut TemplateEnv {
                env: &env,
                secrets: &mut secrets,
            },
        )
        .expect("ok");
        assert_eq!(secrets, vec![Secret::from("s3cr3t")]);
    }

    #[test]
    fn env_values_do_not_print() {
        let t = compile("Bearer {{ env.TOKEN ?? 'x' }}").expect("ok");
        let text = format!("{t:?} {t:#?}");
        assert!(!text.contains("s3cr3t"), "{text}");
        assert!(text.contains("[redacted]"), "{text}");
    }

    #[test]
    fn url_components_are_encoded() {
        let ctx = json!({"event": {"id": "a/b c?d", "host": "h.example.com"}});
        assert_eq!(
            compile_url("https://x.test/orders/{{ $.event.id }}?q={{ $.event.id }}")
                .render_text(&ctx),
            "https://x.test/orders/a%2Fb%20c%3Fd?q=a%2Fb%20c%3Fd"
        );
        assert_eq!(
            compile_url("{{ env.BASE }}/orders/{{ $.event.id }}").render_text(&ctx),
            "https://api.example.com/v1/orders/a%2Fb%20c%3Fd"
        );
        assert_eq!(
            compile_url("https://{{ $.event.host }}/x").render_text(&ctx),
            "https://h.example.com/x"
        );
        assert_eq!(
            compile_url("{{ env.BASE }}").render_text(&ctx),
            "https://api.example.com/v1"
        );
    }
}
