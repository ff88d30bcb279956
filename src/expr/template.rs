//! `{{ … }}` templates (SPEC §3.2), parsed once at load time.
//!
//! A template is literal text and expressions. An expression is a chain of
//! alternatives separated by `??`: JSONPath queries on the run context,
//! `env.NAME` (read when the workflow is compiled; its value is a
//! [`Secret`], so a template's `Debug` never shows it) and JSON literals.
//! The first alternative that is not null wins.
//!
//! Two uses need more than rendering. A verify secret must be known at load
//! ([`Template::known`] says its value, and whether it only exists thanks
//! to a `??` fallback literal). A URL ([`UrlTemplate`]) must go where the
//! workflow says: event data can never set its scheme, userinfo, host or
//! port. Since `env` values are known at load, so is the URL's text up to
//! the first expression that reads the run context; that expression and
//! everything after it land, percent-encoded, in the path or query, and
//! [`UrlTemplate::check`] holds every rendered URL to the origin fixed at
//! load.

use crate::jsonpath::JsonPath;
use crate::secret::Secret;
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use serde_json::Value;

/// Where an expression stands inside a URL, which decides its encoding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum UrlSlot {
    /// Whole URL, or a value known at load in the scheme or authority:
    /// inserted as it is.
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

/// Characters that end a URL's authority (`\` does for http and https).
const AUTHORITY_END: [char; 4] = ['/', '?', '#', '\\'];

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
    /// A query on the run context.
    Path(JsonPath),
    /// A set environment variable's value (a secret).
    Env(Secret),
    /// An unset environment variable (a fallback follows it): null.
    Unset(String),
    /// A literal written in the template.
    Literal(Value),
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

/// The value of a template that reads nothing from the run context.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Known {
    pub text: String,
    /// Set when part of the text is a `??` fallback literal standing in
    /// for this unset variable (the first such one).
    pub fallback_for: Option<String>,
}

impl Template {
    pub fn compile(text: &str, env: &mut TemplateEnv) -> Result<Self, TemplateError> {
        let mut parts = Vec::new();
        let mut rest = text;
        while let Some((lit, inner, after)) = next_expr(text, rest)? {
            if !lit.is_empty() {
                parts.push(Part::Lit(lit.to_string()));
            }
            parts.push(Part::Expr(compile_expr(inner, env)?, UrlSlot::Raw));
            rest = after;
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

    /// True when the template is exactly one expression: it renders to
    /// that value, of whatever type (see [`Template::render_value`]).
    pub fn is_whole_value(&self) -> bool {
        matches!(self.parts.as_slice(), [Part::Expr(..)])
    }

    /// The template's text when it reads nothing from the run context
    /// (only literals and `env` values); `None` when it does.
    pub fn known(&self) -> Option<Known> {
        let mut text = String::new();
        let mut fallback_for = None;
        for part in &self.parts {
            match part {
                Part::Lit(s) => text.push_str(s),
                Part::Expr(e, _) => {
                    let (v, fallback) = e.known()?;
                    text.push_str(&value_text(&v));
                    if fallback_for.is_none() {
                        fallback_for = fallback.map(str::to_string);
                    }
                }
            }
        }
        Some(Known { text, fallback_for })
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

/// The environment variables a template's text names, each with whether a
/// `??` fallback follows it (then it may be unset). Text that is not a
/// valid template gives what could be read of it.
pub fn env_names(text: &str) -> Vec<(String, bool)> {
    let mut out: Vec<(String, bool)> = Vec::new();
    let mut rest = text;
    while let Ok(Some((_, inner, after))) = next_expr(text, rest) {
        let alts = split_alternatives(inner);
        for (i, alt) in alts.iter().enumerate() {
            if let Some(name) = alt.trim().strip_prefix("env.") {
                let optional = i + 1 < alts.len();
                match out.iter_mut().find(|(n, _)| n == name) {
                    Some((_, o)) => *o &= optional,
                    None => out.push((name.to_string(), optional)),
                }
            }
        }
        rest = after;
    }
    out
}

/// A value as text inside a longer string.
pub fn value_text(v: &Value) -> String {
    match v {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// The next `{{ … }}` in `rest` (a suffix of `text`): the literal before
/// it, its inside, and what follows it.
fn next_expr<'a>(
    text: &str,
    rest: &'a str,
) -> Result<Option<(&'a str, &'a str, &'a str)>, TemplateError> {
    let Some(start) = rest.find("{{") else {
        return Ok(None);
    };
    let inner_start = start + 2;
    let len = find_close(&rest[inner_start..]).ok_or_else(|| {
        TemplateError(format!(
            "`{{{{` at offset {} has no closing `}}}}`",
            text.len() - rest.len() + start
        ))
    })?;
    Ok(Some((
        &rest[..start],
        &rest[inner_start..inner_start + len],
        &rest[inner_start + len + 2..],
    )))
}

/// A URL template (an `http` step's `url`): a [`Template`] whose
/// expressions are placed, at load, by where they stand in the URL, plus
/// the origin (scheme, userinfo, host, port) the workflow fixes.
#[derive(Debug, Clone)]
pub struct UrlTemplate {
    template: Template,
    /// What [`UrlTemplate::parse`] parsed last.
    last: LastParsed,
    /// `None` when the whole URL is one template from the run context
    /// (a Slack `response_url`, say): the address policy alone judges it.
    /// Boxed: most steps' templates are small, and this is not.
    fixed: Option<Box<Origin>>,
}

/// The last text a [`UrlTemplate`] parsed, and its URL (boxed: a step
/// stays small). A copy starts empty.
#[derive(Default)]
struct LastParsed(std::sync::Mutex<Option<Box<(String, url::Url)>>>);

impl Clone for LastParsed {
    fn clone(&self) -> Self {
        LastParsed::default()
    }
}

impl std::fmt::Debug for LastParsed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The URL may hold a secret (a Slack webhook's path): not shown.
        f.write_str("LastParsed")
    }
}

/// The parts of a URL that decide where a request goes.
#[derive(Clone, PartialEq, Eq)]
struct Origin {
    scheme: String,
    username: String,
    password: Option<String>,
    host: Option<url::Host<String>>,
    port: Option<u16>,
}

impl std::fmt::Debug for Origin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The userinfo often comes from an `env` value (an API key as the
        // user, a password): not shown, as no secret is.
        let hidden = |present: bool| if present { crate::secret::REDACTED } else { "" };
        f.debug_struct("Origin")
            .field("scheme", &self.scheme)
            .field("username", &hidden(!self.username.is_empty()))
            .field("password", &hidden(self.password.is_some()))
            .field("host", &self.host)
            .field("port", &self.port)
            .finish()
    }
}

impl Origin {
    fn of(url: &url::Url) -> Origin {
        Origin {
            scheme: url.scheme().to_string(),
            username: url.username().to_string(),
            password: url.password().map(str::to_string),
            host: url.host().map(|h| h.to_owned()),
            port: url.port_or_known_default(),
        }
    }
}

impl UrlTemplate {
    /// Compile a URL template. The text up to the first expression that
    /// reads the run context is known at load (literals and `env` values);
    /// that expression must stand where the authority has ended, or be the
    /// whole URL. When the known text ends right after the host or port,
    /// a `/` is put in, so the value starts the path.
    pub fn compile(text: &str, env: &mut TemplateEnv) -> Result<Self, TemplateError> {
        let mut parts = Vec::new();
        // The URL's text as far as it is known at load.
        let mut known = String::new();
        // Set once an expression reads the run context: the origin is
        // fixed by the text before it, and all that follows is path/query.
        let mut dynamic_seen = false;
        let mut whole = false;
        let mut rest = text;
        while let Some((lit, inner, after)) = next_expr(text, rest)? {
            if !lit.is_empty() {
                parts.push(Part::Lit(lit.to_string()));
                if !dynamic_seen {
                    known.push_str(lit);
                }
            }
            let expr = compile_expr(inner, env)?;
            rest = after;
            if dynamic_seen {
                parts.push(Part::Expr(expr, UrlSlot::Component));
                continue;
            }
            if let Some((value, _)) = expr.known() {
                let text = value_text(&value);
                if authority_ended(&known) {
                    known.extend(utf8_percent_encode(&text, COMPONENT));
                    parts.push(Part::Expr(expr, UrlSlot::Component));
                } else {
                    known.push_str(&text);
                    parts.push(Part::Expr(expr, UrlSlot::Raw));
                }
                continue;
            }
            dynamic_seen = true;
            let shown = format!("`{{{{{inner}}}}}`");
            let rule = "event data can never change where a request goes";
            if known.is_empty() {
                if after.is_empty() {
                    whole = true;
                    parts.push(Part::Expr(expr, UrlSlot::Raw));
                    continue;
                }
                return Err(TemplateError(format!(
                    "{shown} reads the run context at the start of the url, where its scheme and host are written, but the url is more than this one template; {rule}: make the whole url one template, or start it with the scheme and host (or an `env` value holding them)"
                )));
            }
            let Some(scheme_end) = known.find("://") else {
                return Err(TemplateError(format!(
                    "{shown} reads the run context where the URL's scheme is written; {rule}: write the scheme and host first (or an `env` value holding them), or make the whole url one template"
                )));
            };
            if !authority_ended(&known) {
                // Right after a complete host or port, the value can only
                // start the path; anywhere else in the authority (after
                // `://`, `@`, `:`, or with host text following) it would
                // be part of it.
                let authority = &known[scheme_end + 3..];
                let closes = authority
                    .chars()
                    .last()
                    .is_some_and(|c| c.is_ascii_alphanumeric() || c == ']');
                let followed_by_path =
                    after.is_empty() || after.starts_with(AUTHORITY_END) || after.starts_with("{{");
                if !(closes && followed_by_path) {
                    return Err(TemplateError(format!(
                        "{shown} reads the run context inside the URL's userinfo, host or port; {rule}: use an `env` value there, or make the whole url one template"
                    )));
                }
                parts.push(Part::Lit("/".to_string()));
                known.push('/');
            }
            parts.push(Part::Expr(expr, UrlSlot::Component));
        }
        if !rest.is_empty() {
            parts.push(Part::Lit(rest.to_string()));
            if !dynamic_seen {
                known.push_str(rest);
            }
        }
        let fixed = if whole {
            None
        } else {
            // The known text is the whole URL, or a prefix that ends in
            // its path or query: either way it holds the origin.
            let url = url::Url::parse(&known).map_err(|e| {
                TemplateError(format!(
                    "`{text}` does not make a valid URL{}: {e}",
                    if dynamic_seen {
                        " before its first run-context value"
                    } else {
                        ""
                    }
                ))
            })?;
            if url.scheme() != "http" && url.scheme() != "https" {
                return Err(TemplateError(format!(
                    "`{text}` must start with http:// or https://"
                )));
            }
            Some(Box::new(Origin::of(&url)))
        };
        Ok(UrlTemplate {
            template: Template { parts },
            last: LastParsed::default(),
            fixed,
        })
    }

    /// The URL's text for this run context.
    pub fn render_text(&self, ctx: &Value) -> String {
        self.template.render_text(ctx)
    }

    /// `text` (as [`UrlTemplate::render_text`] made it) parsed, as
    /// `url::Url::parse` parses it. Most steps send every run to the same
    /// address, so the last text parsed is kept with its URL: parsing one
    /// (scheme, host, IP address, path) took about a twentieth of an
    /// event's in-process cost (`cargo bench --bench event_cost`).
    pub fn parse(&self, text: &str) -> Result<url::Url, url::ParseError> {
        if let Ok(last) = self.last.0.lock() {
            if let Some(kept) = last.as_deref().filter(|(t, _)| t == text) {
                return Ok(kept.1.clone());
            }
        }
        let url = url::Url::parse(text)?;
        if let Ok(mut last) = self.last.0.lock() {
            *last = Some(Box::new((text.to_string(), url.clone())));
        }
        Ok(url)
    }

    /// A run-context value that would be a whole path segment `.` or `..`
    /// in this URL: percent-encoding does not keep those from moving the
    /// request (URL parsing resolves `%2E%2E` as `..`), so such a request
    /// is refused.
    pub fn dot_segment(&self, ctx: &Value) -> Option<String> {
        let mut before = String::new();
        let parts = &self.template.parts;
        for (i, part) in parts.iter().enumerate() {
            match part {
                Part::Lit(s) => before.push_str(s),
                Part::Expr(e, slot) => {
                    let text = value_text(&e.eval(ctx));
                    let starts_segment = before.ends_with('/');
                    let ends_segment = match parts.get(i + 1) {
                        None => true,
                        Some(Part::Lit(next)) => next.starts_with(['/', '?', '#']),
                        Some(Part::Expr(..)) => false,
                    };
                    if *slot == UrlSlot::Component
                        && starts_segment
                        && ends_segment
                        && (text == "." || text == "..")
                        && !before.contains('?')
                    {
                        return Some(text);
                    }
                    before.push_str(&text);
                }
            }
        }
        None
    }

    /// The second line of defence: `url` (rendered and parsed) has the
    /// scheme, userinfo, host and port the workflow fixed at load. The
    /// error names the part that differs, not its value: a host or
    /// userinfo from an `env` value may be secret.
    pub fn check(&self, url: &url::Url) -> Result<(), String> {
        let Some(fixed) = &self.fixed else {
            return Ok(());
        };
        let got = Origin::of(url);
        let differs = [
            ("scheme", got.scheme != fixed.scheme),
            (
                "userinfo",
                got.username != fixed.username || got.password != fixed.password,
            ),
            ("host", got.host != fixed.host),
            ("port", got.port != fixed.port),
        ];
        let parts: Vec<&str> = differs
            .iter()
            .filter(|(_, d)| *d)
            .map(|(part, _)| *part)
            .collect();
        if parts.is_empty() {
            return Ok(());
        }
        Err(format!(
            "the url's {} {} from what the workflow fixes; event data can never change where a request goes, so nothing was sent",
            match parts.split_last() {
                Some((last, [])) => last.to_string(),
                Some((last, rest)) => format!("{} and {last}", rest.join(", ")),
                None => String::new(),
            },
            if parts.len() == 1 { "differs" } else { "differ" }
        ))
    }
}

/// True when `known` (URL text) has passed its authority: the next text
/// is in the path, query or fragment.
fn authority_ended(known: &str) -> bool {
    match known.find("://") {
        Some(i) => known[i + 3..].contains(AUTHORITY_END),
        None => false,
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
                None if has_fallback => alts.push(Alt::Unset(name.to_string())),
                None => missing_env = Some(name.to_string()),
            }
        } else if let Some(v) = literal(raw) {
            alts.push(Alt::Literal(v));
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
                Alt::Literal(Value::Null) | Alt::Unset(_) => continue,
                Alt::Literal(v) => return v.clone(),
            }
        }
        Value::Null
    }

    /// The value when no alternative reads the run context, with the
    /// unset variable a fallback literal stands in for, if one does.
    fn known(&self) -> Option<(Value, Option<&str>)> {
        if self.alts.iter().any(|a| matches!(a, Alt::Path(_))) {
            return None;
        }
        let mut unset = None;
        for alt in &self.alts {
            match alt {
                Alt::Path(_) => return None,
                Alt::Unset(name) => {
                    unset.get_or_insert(name.as_str());
                }
                Alt::Literal(Value::Null) => {}
                Alt::Env(v) => return Some((Value::String(v.expose().to_string()), None)),
                Alt::Literal(v) => return Some((v.clone(), unset)),
            }
        }
        Some((Value::Null, unset))
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

    fn compile_url(text: &str) -> UrlTemplate {
        let env = env_of(&[("BASE", "https://api.example.com/v1")]);
        let mut secrets = Vec::new();
        UrlTemplate::compile(
            text,
            &mut TemplateEnv {
                env: &env,
                secrets: &mut secrets,
            },
        )
        .expect("valid")
    }

    /// The last text parsed is kept: the same text gives the same URL, a
    /// new text its own, and an invalid one its error (never the last URL).
    #[test]
    fn a_url_template_parses_each_text_as_url_does() {
        let t = compile_url("{{ $.event.url }}");
        for text in [
            "https://a.example/x",
            "https://a.example/x",
            "https://b.example:8443/y?q=1",
            "https://a.example/x",
            "https://a.example/x ",
            "not a url",
            "https://a.example/x",
            "http://[::1]:8080/%2e%2E/z",
            "http://[::1]:8080/%2e%2E/z",
        ] {
            assert_eq!(t.parse(text), url::Url::parse(text), "{text:?}");
        }
        // A copy starts with nothing kept, and parses the same.
        let copy = t.clone();
        assert_eq!(
            copy.parse("https://a.example/x"),
            url::Url::parse("https://a.example/x")
        );
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

    /// A URL's userinfo from `env` is not shown by `Debug`, nor is an
    /// `env` URL's path (a webhook's secret); the host is.
    #[test]
    fn url_template_userinfo_does_not_print() {
        let env = env_of(&[
            ("KEY", "sk_live_user"),
            ("PASS", "pa55word"),
            ("HOOK", "https://hooks.example.com/T0/B0/hooksecret"),
        ]);
        let mut secrets = Vec::new();
        let mut tenv = TemplateEnv {
            env: &env,
            secrets: &mut secrets,
        };
        for text in [
            "https://{{ env.KEY }}:{{ env.PASS }}@api.example.com/v1/{{ $.event.id }}",
            "{{ env.HOOK }}?id={{ $.event.id }}",
        ] {
            let t = UrlTemplate::compile(text, &mut tenv).expect(text);
            let _ = t.parse(&t.render_text(&json!({"event": {"id": "e1"}})));
            let shown = format!("{t:?} {t:#?}");
            for secret in ["sk_live_user", "pa55word", "hooksecret"] {
                assert!(!shown.contains(secret), "{text} shows {secret}: {shown}");
            }
            assert!(shown.contains("example.com"), "{shown}");
        }
    }

    /// SPEC §3.2: event data can never change a URL's scheme, userinfo,
    /// host or port. (template, event, the URL sent or the error's words)
    #[test]
    fn url_templates_keep_where_the_workflow_sends() {
        use Want::{Refused, Url};
        let table: &[(&str, Value, Want)] = &[
            // The reported case: an env base, then event data.
            (
                "{{ env.BASE }}{{ $.event.x }}",
                json!({"x": "@127.0.0.1:9412/stolen"}),
                Url("http://127.0.0.1:8080/%40127.0.0.1%3A9412%2Fstolen"),
            ),
            (
                "{{ env.BASE }}{{ $.event.x }}",
                json!({"x": ":9412/stolen"}),
                Url("http://127.0.0.1:8080/%3A9412%2Fstolen"),
            ),
            (
                "{{ env.BASE }}{{ $.event.x }}",
                json!({"x": ".evil.example"}),
                Url("http://127.0.0.1:8080/.evil.example"),
            ),
            (
                "{{ env.BASE }}{{ $.event.x }}",
                json!({"x": "0/x"}),
                Url("http://127.0.0.1:8080/0%2Fx"),
            ),
            (
                "{{ env.BASE }}{{ $.event.a }}{{ $.event.b }}",
                json!({"a": "x", "b": "@y:1"}),
                Url("http://127.0.0.1:8080/x%40y%3A1"),
            ),
            (
                "{{ env.BASE }}{{ $.event.x }}?page=2",
                json!({"x": "@evil"}),
                Url("http://127.0.0.1:8080/%40evil?page=2"),
            ),
            (
                "https://example.com{{ $.event.x }}",
                json!({"x": "@evil.example"}),
                Url("https://example.com/%40evil.example"),
            ),
            (
                "{{ env.BASE }}/{{ $.event.x }}",
                json!({"x": "@h:1"}),
                Url("http://127.0.0.1:8080/%40h%3A1"),
            ),
            // Paths and queries around event data, as written.
            (
                "{{ env.API }}/orders/{{ $.event.x }}",
                json!({"x": "a/b c?d#e"}),
                Url("https://api.example.com/v1/orders/a%2Fb%20c%3Fd%23e"),
            ),
            (
                "https://{{ env.HOST }}/orders/{{ $.event.x }}",
                json!({"x": "../admin"}),
                Url("https://api.example.com/orders/..%2Fadmin"),
            ),
            (
                "{{ env.API }}?q={{ $.event.x }}",
                json!({"x": "1&admin=true"}),
                Url("https://api.example.com/v1?q=1%26admin%3Dtrue"),
            ),
            (
                "http://{{ env.HOST }}:{{ env.PORT }}/x/{{ $.event.x }}",
                json!({"x": "y"}),
                Url("http://api.example.com:8443/x/y"),
            ),
            (
                "http://user:{{ env.PASS }}@{{ env.HOST }}/x",
                json!({}),
                Url("http://user:p4ss@api.example.com/x"),
            ),
            (
                "{{ env.API }}/t/{{ env.TOKEN }}",
                json!({}),
                Url("https://api.example.com/v1/t/t%2Fk%20n"),
            ),
            ("{{ env.BASE }}", json!({}), Url("http://127.0.0.1:8080")),
            // A URL that is wholly one template from the run context (a
            // Slack `response_url`) is used as it is.
            (
                "{{ $.event.url }}",
                json!({"url": "https://hooks.slack.com/actions/T1/B2"}),
                Url("https://hooks.slack.com/actions/T1/B2"),
            ),
            (
                "{{ $.event.url ?? env.API }}",
                json!({}),
                Url("https://api.example.com/v1"),
            ),
            // Event data in the scheme, userinfo, host or port: refused at load.
            (
                "https://{{ $.event.x }}/x",
                json!({}),
                Refused("userinfo, host or port"),
            ),
            (
                "https://api-{{ $.event.x }}.example.com/",
                json!({}),
                Refused("userinfo, host or port"),
            ),
            (
                "https://api{{ $.event.x }}.example.com/",
                json!({}),
                Refused("userinfo, host or port"),
            ),
            (
                "http://127.0.0.1:{{ $.event.x }}/x",
                json!({}),
                Refused("userinfo, host or port"),
            ),
            (
                "http://{{ $.event.x }}@api.example.com/",
                json!({}),
                Refused("userinfo, host or port"),
            ),
            (
                "http://user:{{ $.event.x }}@api.example.com/",
                json!({}),
                Refused("userinfo, host or port"),
            ),
            (
                "{{ $.event.x }}://api.example.com/",
                json!({}),
                Refused("more than this one template"),
            ),
            (
                "http{{ $.event.x }}",
                json!({}),
                Refused("where the URL's scheme is written"),
            ),
            (
                "{{ $.event.url }}/extra",
                json!({}),
                Refused("more than this one template"),
            ),
            (
                "{{ env.HOST }}{{ $.event.x }}",
                json!({}),
                Refused("where the URL's scheme is written"),
            ),
        ];
        for (text, event, want) in table {
            let ctx = json!({ "event": event });
            match (try_url(text), want) {
                (Ok(rendered), Url(url)) => {
                    assert_eq!(rendered(&ctx), *url, "{text} with {event}")
                }
                (Err(e), Refused(words)) => assert!(
                    e.contains("event data can never") && e.contains(words),
                    "{text}: {e}"
                ),
                (Ok(rendered), Refused(_)) => {
                    panic!("{text} with {event}: accepted, renders {}", rendered(&ctx))
                }
                (Err(e), Url(_)) => panic!("{text}: refused: {e}"),
            }
        }
    }

    enum Want {
        Url(&'static str),
        Refused(&'static str),
    }

    const URL_ENV: &[(&str, &str)] = &[
        ("BASE", "http://127.0.0.1:8080"),
        ("API", "https://api.example.com/v1"),
        ("HOST", "api.example.com"),
        ("PORT", "8443"),
        ("PASS", "p4ss"),
        ("TOKEN", "t/k n"),
    ];

    type Render = Box<dyn Fn(&Value) -> String>;

    /// Compile a URL template over [`URL_ENV`]; give back its renderer.
    fn try_url(text: &str) -> Result<Render, String> {
        let env = env_of(URL_ENV);
        let mut secrets = Vec::new();
        let t = UrlTemplate::compile(
            text,
            &mut TemplateEnv {
                env: &env,
                secrets: &mut secrets,
            },
        )
        .map_err(|e| e.0)?;
        Ok(Box::new(move |ctx| t.render_text(ctx)))
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
            compile_url("{{ env.BASE }}").render_text(&ctx),
            "https://api.example.com/v1"
        );
    }

    /// The second line of defence: a rendered URL must keep the scheme,
    /// userinfo, host and port the workflow fixed; a URL wholly from the
    /// run context is left to the address policy.
    #[test]
    fn rendered_urls_are_held_to_the_origin_fixed_at_load() {
        let env = env_of(URL_ENV);
        let mut secrets = Vec::new();
        let mut tenv = TemplateEnv {
            env: &env,
            secrets: &mut secrets,
        };
        let fixed =
            UrlTemplate::compile("{{ env.BASE }}/in/{{ $.event.x }}", &mut tenv).expect("valid");
        let parse = |u: &str| url::Url::parse(u).expect("a URL");
        for same in [
            "http://127.0.0.1:8080/in/a",
            "http://127.0.0.1:8080/other?q=1",
            "HTTP://127.0.0.1:8080/in/a",
        ] {
            assert_eq!(fixed.check(&parse(same)), Ok(()), "{same}");
        }
        for (moved, words) in [
            ("http://127.0.0.1:9412/in/a", "url's port differs"),
            ("http://127.0.0.2:8080/in/a", "url's host differs"),
            ("https://127.0.0.1:8080/in/a", "url's scheme differs"),
            (
                "https://127.0.0.2/in/a",
                "url's scheme, host and port differ",
            ),
            ("http://127.0.0.1/in/a", "url's port differs"),
            ("http://x@127.0.0.1:8080/in/a", "url's userinfo differs"),
            (
                "http://127.0.0.1:8080@127.0.0.1:9412/stolen",
                "url's userinfo and port differ",
            ),
        ] {
            let err = fixed.check(&parse(moved)).expect_err(moved);
            assert!(
                err.contains(words) && err.contains("nothing was sent"),
                "{moved}: {err}"
            );
        }
        let whole = UrlTemplate::compile("{{ $.event.response_url }}", &mut tenv).expect("valid");
        assert_eq!(whole.check(&parse("https://hooks.slack.com/x")), Ok(()));
        assert_eq!(whole.check(&parse("http://10.0.0.1:9/y")), Ok(()));
        // A URL known at load must be a valid http(s) URL.
        for (bad, words) in [
            ("ftp://files.example.com/x", "http:// or https://"),
            ("{{ env.HOST }}/x", "does not make a valid URL"),
            ("http://127.0.0.1:99999/x", "does not make a valid URL"),
            ("{{ env.NOPE ?? '' }}", "does not make a valid URL"),
        ] {
            let err = UrlTemplate::compile(bad, &mut tenv).expect_err(bad);
            assert!(err.0.contains(words), "{bad}: {err}");
        }
    }

    /// What a verify secret needs: its value at load, whether it reads the
    /// run context, and whether it only exists thanks to a fallback.
    #[test]
    fn known_values_and_their_fallbacks() {
        let env = env_of(&[("SET", "s3cr3t"), ("EMPTY", "")]);
        let mut secrets = Vec::new();
        let mut known = |text: &str| {
            Template::compile(
                text,
                &mut TemplateEnv {
                    env: &env,
                    secrets: &mut secrets,
                },
            )
            .expect("valid")
            .known()
        };
        let k = |text: &str, fallback: Option<&str>| {
            Some(Known {
                text: text.to_string(),
                fallback_for: fallback.map(str::to_string),
            })
        };
        assert_eq!(known("plain"), k("plain", None));
        assert_eq!(known("{{ env.SET }}"), k("s3cr3t", None));
        assert_eq!(known("{{ env.SET ?? 'demo' }}"), k("s3cr3t", None));
        assert_eq!(known("{{ env.UNSET ?? 'demo' }}"), k("demo", Some("UNSET")));
        assert_eq!(known("{{ env.UNSET ?? env.SET }}"), k("s3cr3t", None));
        assert_eq!(
            known("{{ env.A ?? env.B ?? 'demo' }}"),
            k("demo", Some("A"))
        );
        assert_eq!(known("{{ 'lit' ?? env.UNSET ?? 'x' }}"), k("lit", None));
        assert_eq!(known("{{ env.UNSET ?? \"\" }}"), k("", Some("UNSET")));
        assert_eq!(known("{{ env.UNSET ?? null }}"), k("", Some("UNSET")));
        assert_eq!(known("{{ env.EMPTY ?? 'demo' }}"), k("", None));
        assert_eq!(known("key-{{ env.UNSET ?? 7 }}"), k("key-7", Some("UNSET")));
        assert_eq!(known("{{ $.request.headers.key }}"), None);
        assert_eq!(known("{{ env.SET ?? $.event.key }}"), None);
    }
}
