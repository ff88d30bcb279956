//! Checks a workflow file and builds the runtime [`Workflow`]. This is the
//! only place that parses JSONPath, regexes, templates and Rhai, and that
//! resolves `env` and `file:` references. It never stops at the first
//! problem: every one is collected with its file, line and column. Verify
//! secrets are resolved here, once: never empty, never from the run context.
//! Provider presets (`compile/preset.rs`) and `uses` steps
//! (`compile/uses.rs`) are compiled here too: a connector's templates are
//! compiled with the workflow's environment, and their problems reported
//! at the workflow's line with the connector file's own position.

mod preset;
mod uses;

pub use preset::PROVIDERS;

use super::connector::Catalog;
use super::spec::{
    HttpSpec, RespondSpec, StepSpec, SwitchSpec, TransformSpec, VerifySpec, WorkflowSpec,
};
use super::yaml::{self, Pos, Spanned, YNode};
use super::{
    Dedupe, FallbackSecret, Verify, Workflow, DEFAULT_DEDUPE_WINDOW, DEFAULT_RESPOND_TIMEOUT,
};
use crate::expr::condition::Condition;
use crate::expr::template::{
    EnvLookup, Template, TemplateEnv, TemplateError, UrlTemplate, ValueTemplate,
};
use crate::script::Engine;
use crate::secret::{Redactor, Secret};
use crate::signature::{self, Scheme};
use crate::step::delay::Delay;
use crate::step::for_each::{ForEach, DEFAULT_MAX_ITEMS, MAX_CONCURRENCY};
use crate::step::http::{HttpAction, RetryPolicy, StatusRange};
use crate::step::respond::{self, Respond};
use crate::step::switch::{Case, Switch};
use crate::step::{Action, Step};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::path::{Component, Path, PathBuf};
use std::time::Duration;

/// One problem in one file, printed as `FILE:LINE:COL: message`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Issue {
    pub file: PathBuf,
    pub line: usize,
    pub col: usize,
    pub message: String,
}

impl fmt::Display for Issue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}:{}: {}",
            self.file.display(),
            self.line,
            self.col,
            self.message
        )
    }
}

/// Where `file:` scripts come from: the scripts folder, or a stored bundle.
pub trait ScriptSource {
    fn read(&self, name: &str) -> Result<String, String>;
    /// Where a script's own problems are reported.
    fn path_of(&self, name: &str) -> PathBuf;
}

/// Scripts read from a folder; names may not leave it.
pub struct ScriptDir(pub PathBuf);

impl ScriptSource for ScriptDir {
    fn read(&self, name: &str) -> Result<String, String> {
        let rel = Path::new(name);
        if rel.is_absolute() || rel.components().any(|c| !matches!(c, Component::Normal(_))) {
            return Err(format!(
                "script `{name}` must be a relative path inside the scripts folder"
            ));
        }
        let path = self.0.join(rel);
        std::fs::read_to_string(&path).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => {
                format!("script file `{}` does not exist", path.display())
            }
            _ => format!("cannot read script file `{}`: {e}", path.display()),
        })
    }

    fn path_of(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

/// The exact sources a workflow version was built from.
#[derive(Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Bundle {
    pub file: PathBuf,
    pub yaml: String,
    pub scripts: BTreeMap<String, String>,
    /// The connector files its `uses` steps and provider use, by path.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub connectors: BTreeMap<String, String>,
}

impl fmt::Debug for Bundle {
    /// Sizes, not texts: a source may hold a verify secret written in it.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scripts: BTreeMap<&String, usize> =
            self.scripts.iter().map(|(k, v)| (k, v.len())).collect();
        let connectors: BTreeMap<&String, usize> =
            self.connectors.iter().map(|(k, v)| (k, v.len())).collect();
        f.debug_struct("Bundle")
            .field("file", &self.file)
            .field("yaml_bytes", &self.yaml.len())
            .field("script_bytes", &scripts)
            .field("connector_bytes", &connectors)
            .finish()
    }
}

impl ScriptSource for Bundle {
    fn read(&self, name: &str) -> Result<String, String> {
        self.scripts
            .get(name)
            .cloned()
            .ok_or_else(|| format!("script `{name}` is not part of this workflow version"))
    }

    fn path_of(&self, name: &str) -> PathBuf {
        PathBuf::from("scripts").join(name)
    }
}

impl Bundle {
    pub fn version(&self) -> String {
        let mut h = Sha256::new();
        h.update(self.yaml.as_bytes());
        for (name, text) in &self.scripts {
            h.update([0]);
            h.update(name.as_bytes());
            h.update([0]);
            h.update(text.as_bytes());
        }
        // Only versions that use connectors hash them, so the versions of
        // workflows without any stay what they were.
        for (name, text) in &self.connectors {
            h.update([1]);
            h.update(name.as_bytes());
            h.update([0]);
            h.update(text.as_bytes());
        }
        hex::encode(&h.finalize()[..8])
    }

    /// The connectors this version was built with.
    pub fn catalog(&self, engine: &Engine) -> Catalog {
        Catalog::from_sources(
            self.connectors
                .iter()
                .map(|(f, t)| (PathBuf::from(f), t.clone()))
                .collect(),
            engine,
        )
    }
}

/// What compiling needs from outside.
pub struct CompileEnv<'a> {
    pub env: &'a dyn EnvLookup,
    pub scripts: &'a dyn ScriptSource,
    pub engine: &'a Engine,
    /// The connectors `uses` steps and `provider:` may name.
    pub connectors: &'a Catalog,
}

struct Cx<'a, 'b> {
    file: &'a Path,
    text: &'a str,
    env: &'a CompileEnv<'b>,
    issues: Vec<Issue>,
    secrets: Vec<Secret>,
    scripts_used: BTreeMap<String, String>,
    /// Connector files used, by path: kept with the version.
    connectors_used: BTreeMap<String, String>,
}

impl Cx<'_, '_> {
    fn issue(&mut self, pos: Pos, message: impl Into<String>) {
        self.issues.push(Issue {
            file: self.file.to_path_buf(),
            line: pos.line,
            col: pos.col,
            message: message.into(),
        });
    }

    fn problems(&mut self, problems: Vec<yaml::Problem>) {
        for p in problems {
            self.issue(p.pos, p.message);
        }
    }

    fn template(&mut self, s: &Spanned<String>, what: &str) -> Option<Template> {
        self.template_with(s, what, Template::compile)
    }

    fn url_template(&mut self, s: &Spanned<String>) -> Option<UrlTemplate> {
        self.template_with(s, "url", UrlTemplate::compile)
    }

    fn template_with<T>(
        &mut self,
        s: &Spanned<String>,
        what: &str,
        compile: fn(&str, &mut TemplateEnv) -> Result<T, TemplateError>,
    ) -> Option<T> {
        let mut tenv = TemplateEnv {
            env: self.env.env,
            secrets: &mut self.secrets,
        };
        match compile(&s.value, &mut tenv) {
            Ok(t) => Some(t),
            Err(e) => {
                self.issue(s.pos, format!("{what}: {e}"));
                None
            }
        }
    }

    fn duration(&mut self, s: &Option<Spanned<String>>, default: Duration, what: &str) -> Duration {
        match s {
            None => default,
            Some(s) => {
                match humantime::parse_duration(s.value.trim()) {
                    Ok(d) => d,
                    Err(_) => {
                        self.issue(s.pos, format!("{what}: `{}` is not a duration; write e.g. 500ms, 10s, 5m, 24h or 7d", s.value));
                        default
                    }
                }
            }
        }
    }

    fn condition(&mut self, node: &Spanned<YNode>) -> Option<Condition> {
        let mut problems = Vec::new();
        let c = Condition::compile(node, self.env.engine, &mut problems);
        self.problems(problems);
        c
    }

    /// Compile parts of a connector's file for this workflow: templates
    /// see the workflow's environment, secrets join the workflow's, and
    /// each problem is reported at `at` (the workflow's line), prefixed
    /// with `label` and the connector file's own position.
    fn within<T>(
        &mut self,
        connector: &super::connector::Connector,
        at: Pos,
        label: &str,
        f: impl FnOnce(&mut Cx) -> T,
    ) -> T {
        let mut sub = Cx {
            file: &connector.file,
            text: &connector.source,
            env: self.env,
            issues: Vec::new(),
            secrets: std::mem::take(&mut self.secrets),
            scripts_used: BTreeMap::new(),
            connectors_used: BTreeMap::new(),
        };
        let out = f(&mut sub);
        self.secrets = std::mem::take(&mut sub.secrets);
        for i in std::mem::take(&mut sub.issues) {
            self.issue(at, format!("{label}: {i}"));
        }
        self.connectors_used.insert(
            connector.file.display().to_string(),
            connector.source.clone(),
        );
        out
    }
}

/// Compile one workflow file. `file` is only used in messages and records.
pub fn compile(file: &Path, text: &str, env: &CompileEnv) -> Result<Workflow, Vec<Issue>> {
    let mut cx = Cx {
        file,
        text,
        env,
        issues: Vec::new(),
        secrets: Vec::new(),
        scripts_used: BTreeMap::new(),
        connectors_used: BTreeMap::new(),
    };
    if text.trim().is_empty() {
        cx.issue(
            Pos { line: 1, col: 1 },
            "the file is empty; a workflow needs at least `trigger:`",
        );
        return Err(cx.issues);
    }
    let (spec, problems) = yaml::from_str::<WorkflowSpec>(text);
    cx.problems(problems);
    let Some(spec) = spec else {
        return Err(cx.issues);
    };
    let built = build(&mut cx, spec);
    match built {
        Some(w) if cx.issues.is_empty() => Ok(w),
        _ => {
            cx.issues
                .sort_by(|a, b| (&a.file, a.line, a.col).cmp(&(&b.file, b.line, b.col)));
            cx.issues.dedup();
            Err(cx.issues)
        }
    }
}

fn valid_name(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
}

fn valid_step_id(s: &str) -> bool {
    let mut b = s.bytes();
    b.next().is_some_and(|c| c.is_ascii_lowercase())
        && b.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'_')
}

fn build(cx: &mut Cx, spec: WorkflowSpec) -> Option<Workflow> {
    let name = match &spec.name {
        Some(n) => {
            if !valid_name(&n.value) {
                cx.issue(
                    n.pos,
                    format!(
                        "workflow name `{}` may only hold a-z, 0-9, `-` and `_`",
                        n.value
                    ),
                );
            }
            n.value.clone()
        }
        None => {
            let stem = cx
                .file
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default();
            if !valid_name(&stem) {
                cx.issue(Pos { line: 1, col: 1 }, format!("the file name `{stem}` is not a valid workflow name (a-z, 0-9, `-`, `_`); add `name:`"));
            }
            stem
        }
    };

    let webhook = &spec.trigger.value.webhook.value;
    let path = normalize_path(&webhook.path.value);
    if !path_ok(&path) {
        cx.issue(
            webhook.path.pos,
            format!(
                "path `{}` may only hold letters, digits and `/ - _ .`",
                webhook.path.value
            ),
        );
    }
    let methods = match &webhook.methods {
        None => vec!["POST".to_string()],
        Some(ms) => {
            let mut out = Vec::new();
            for m in ms {
                let up = m.value.trim().to_ascii_uppercase();
                if !["GET", "POST", "PUT", "PATCH", "DELETE"].contains(&up.as_str()) {
                    cx.issue(
                        m.pos,
                        format!(
                            "method `{}` is not supported; use GET, POST, PUT, PATCH or DELETE",
                            m.value
                        ),
                    );
                } else if !out.contains(&up) {
                    out.push(up);
                }
            }
            if ms.is_empty() {
                cx.issue(
                    spec.trigger.value.webhook.pos,
                    "methods: list at least one method",
                );
            }
            out
        }
    };
    // A provider preset fills in what `verify` and `dedupe` leave out.
    let preset = webhook
        .provider
        .as_ref()
        .and_then(|p| preset::resolve(cx, p));
    let verify = match (&webhook.verify, &preset) {
        (Some(v), _) => verify(cx, v),
        (None, Some(p)) => p.verify(cx),
        (None, None) => None,
    };
    let dedupe = match (&webhook.dedupe, &preset) {
        (Some(d), _) => dedupe(cx, d),
        (None, Some(p)) => p.dedupe(cx),
        (None, None) => None,
    };
    let events = spec
        .trigger
        .value
        .events
        .as_ref()
        .and_then(|e| preset::events(cx, e, preset.as_ref()));
    let summary = preset.as_ref().map(|p| p.summary(cx)).unwrap_or_default();
    let when = spec
        .trigger
        .value
        .when
        .as_ref()
        .and_then(|w| cx.condition(w));

    if spec.steps.is_empty() {
        cx.issue(
            spec.trigger.pos,
            "the workflow has no steps; add `steps:` with at least one step",
        );
    }
    let mut seen = HashSet::new();
    let steps = steps(cx, &spec.steps, 0, &mut seen);
    let respond_timeout = respond_timeout(cx, webhook, &spec.steps);

    let bundle = Bundle {
        file: cx.file.to_path_buf(),
        yaml: cx.text.to_string(),
        scripts: std::mem::take(&mut cx.scripts_used),
        connectors: std::mem::take(&mut cx.connectors_used),
    };
    Some(Workflow {
        name,
        description: spec.description.clone(),
        enabled: spec.enabled.unwrap_or(true),
        file: cx.file.to_path_buf(),
        version: bundle.version(),
        bundle,
        path,
        methods,
        verify,
        dedupe,
        events,
        summary,
        when,
        steps,
        respond_timeout,
        redactor: Redactor::new(std::mem::take(&mut cx.secrets)),
    })
}

fn dedupe(cx: &mut Cx, d: &Spanned<super::spec::DedupeSpec>) -> Option<Dedupe> {
    let key = cx.template(&d.value.key, "dedupe key");
    let window = cx.duration(&d.value.window, DEFAULT_DEDUPE_WINDOW, "dedupe window");
    Some(Dedupe { key: key?, window })
}

/// How deep `switch` and `for_each` may nest (SPEC §6.1): a loop in a
/// switch in a loop, at most.
pub const MAX_NESTING: usize = 3;

/// Compile a list of steps held by `depth` enclosing `switch`/`for_each`
/// steps (0: the workflow's own). Step ids are unique across the whole
/// workflow, nested ones included (`seen`), so `$.steps.<id>` is never
/// ambiguous.
fn steps(
    cx: &mut Cx,
    specs: &[Spanned<StepSpec>],
    depth: usize,
    seen: &mut HashSet<String>,
) -> Vec<Step> {
    let mut out = Vec::new();
    for s in specs {
        let id = &s.value.id;
        if !valid_step_id(&id.value) {
            cx.issue(id.pos, format!("step id `{}` must start with a-z and hold only a-z, 0-9 and `_` (so `$.steps.{}` works)", id.value, id.value));
        } else if !seen.insert(id.value.clone()) {
            cx.issue(
                id.pos,
                format!("step id `{}` is used twice in this workflow", id.value),
            );
        }
        if let Some(step) = step(cx, s, depth, seen) {
            out.push(step);
        }
    }
    out
}

/// `trigger.webhook.respond_timeout`, which only a workflow with a
/// `respond` step uses; and at most one `respond` step (a sender gets one
/// answer).
fn respond_timeout(
    cx: &mut Cx,
    webhook: &super::spec::WebhookSpec,
    specs: &[Spanned<StepSpec>],
) -> Duration {
    let mut responds = specs.iter().filter_map(|s| s.value.respond.as_ref());
    let first = responds.next();
    for extra in responds {
        cx.issue(
            extra.pos,
            "a workflow answers its sender once: keep one `respond` step (put the answers in a `switch` before it, and let it read their output)",
        );
    }
    let timeout = cx.duration(
        &webhook.respond_timeout,
        DEFAULT_RESPOND_TIMEOUT,
        "respond_timeout",
    );
    if let Some(t) = &webhook.respond_timeout {
        if first.is_none() {
            cx.issue(
                t.pos,
                "respond_timeout: the workflow has no `respond` step, so nothing waits for one; remove it or add the step",
            );
        } else if timeout.is_zero() {
            cx.issue(t.pos, "respond_timeout: give a time longer than zero");
        }
    }
    timeout
}

/// `stripe`, `/stripe/` and `/stripe` are the same path: `/stripe`.
pub fn normalize_path(p: &str) -> String {
    let trimmed = p.trim().trim_matches('/');
    format!("/{trimmed}")
}

fn path_ok(p: &str) -> bool {
    p.len() > 1
        && !p.contains("//")
        && p.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'/' | b'-' | b'_' | b'.'))
}

fn verify(cx: &mut Cx, v: &Spanned<VerifySpec>) -> Option<Verify> {
    use super::spec::{HmacAlgorithm, HmacEncoding};
    let tol = |cx: &mut Cx, t: &Option<Spanned<String>>| {
        cx.duration(t, signature::DEFAULT_TOLERANCE, "tolerance")
    };
    let (scheme, secret) = match &v.value {
        VerifySpec::Stripe(s) => (
            Scheme::Stripe {
                tolerance: tol(cx, &s.tolerance),
            },
            &s.secret,
        ),
        VerifySpec::Github(s) => (Scheme::Github, &s.secret),
        VerifySpec::Shopify(s) => (Scheme::Shopify, &s.secret),
        VerifySpec::Slack(s) => (
            Scheme::Slack {
                tolerance: tol(cx, &s.tolerance),
            },
            &s.secret,
        ),
        VerifySpec::Standard(s) => (
            Scheme::Standard {
                tolerance: tol(cx, &s.tolerance),
            },
            &s.secret,
        ),
        VerifySpec::Gitlab(s) => (Scheme::Gitlab, &s.secret),
        VerifySpec::Twilio(s) => (Scheme::Twilio, &s.secret),
        VerifySpec::Linear(s) => (
            Scheme::Linear {
                tolerance: cx.duration(&s.tolerance, signature::LINEAR_TOLERANCE, "tolerance"),
            },
            &s.secret,
        ),
        VerifySpec::Hubspot(s) => (
            Scheme::Hubspot {
                tolerance: tol(cx, &s.tolerance),
            },
            &s.secret,
        ),
        VerifySpec::Hmac(h) => (
            Scheme::Hmac {
                header: h.header.value.clone(),
                algorithm: match h.algorithm.as_ref().map(|a| a.value) {
                    Some(HmacAlgorithm::Sha1) => signature::Algorithm::Sha1,
                    Some(HmacAlgorithm::Sha512) => signature::Algorithm::Sha512,
                    Some(HmacAlgorithm::Sha256) | None => signature::Algorithm::Sha256,
                },
                encoding: match h.encoding.as_ref().map(|e| e.value) {
                    Some(HmacEncoding::Base64) => signature::Encoding::Base64,
                    Some(HmacEncoding::Hex) | None => signature::Encoding::Hex,
                },
                prefix: h.prefix.clone().unwrap_or_default(),
            },
            &h.secret,
        ),
    };
    let url_spec = match &v.value {
        VerifySpec::Twilio(s) => s.url.as_ref(),
        VerifySpec::Hubspot(s) => s.url.as_ref(),
        VerifySpec::Stripe(_)
        | VerifySpec::Github(_)
        | VerifySpec::Shopify(_)
        | VerifySpec::Slack(_)
        | VerifySpec::Standard(_)
        | VerifySpec::Hmac(_)
        | VerifySpec::Gitlab(_)
        | VerifySpec::Linear(_) => None,
    };
    let url = match url_spec {
        None => None,
        Some(u) => {
            let t = cx.template(u, "url")?;
            match t.known() {
                Some(k) if reqwest::Url::parse(&k.text).is_ok() => Some(k.text),
                Some(k) => {
                    cx.issue(u.pos, format!("url: `{}` is not a URL; give the whole URL the sender calls, e.g. https://hooks.example.com/hooks/sms", k.text));
                    return None;
                }
                None => {
                    cx.issue(u.pos, "url: the signed URL must be known at load (a literal or `{{ env.NAME }}`), not read from the request");
                    return None;
                }
            }
        }
    };
    let template = cx.template(secret, "secret")?;
    // The key is resolved here, once: a sender must never be able to pick
    // it (run context) or sign with nothing (empty).
    let Some(known) = template.known() else {
        cx.issue(
            secret.pos,
            "secret: a verify secret must be known at load (a literal or `{{ env.NAME }}`), but this one reads the run context, which the sender controls",
        );
        return None;
    };
    if known.text.trim().is_empty() {
        let why = match &known.fallback_for {
            Some(var) => {
                format!(" because `{var}` is not set and its fallback is empty")
            }
            None => String::new(),
        };
        cx.issue(
            secret.pos,
            format!(
                "secret: the secret is empty{why}; an empty key would let anyone sign requests"
            ),
        );
        return None;
    }
    // Whether it came from the environment, a `??` fallback or the file
    // itself, the verify secret is redacted like an `env` value.
    let value = Secret::from(known.text);
    if !value.is_empty() && !cx.secrets.contains(&value) {
        cx.secrets.push(value.clone());
    }
    Some(Verify {
        scheme,
        secret: value,
        fallback: known.fallback_for.map(|variable| FallbackSecret {
            variable,
            pos: secret.pos,
        }),
        url,
    })
}

/// The step kinds, as `validate` names them.
const KINDS: &str =
    "`filter`, `transform`, `http`, `uses`, `switch`, `for_each`, `delay` or `respond`";

fn step(
    cx: &mut Cx,
    s: &Spanned<StepSpec>,
    depth: usize,
    seen: &mut HashSet<String>,
) -> Option<Step> {
    let spec = &s.value;
    let kinds = [
        spec.filter.is_some(),
        spec.transform.is_some(),
        spec.http.is_some(),
        spec.uses.is_some(),
        spec.switch.is_some(),
        spec.for_each.is_some(),
        spec.delay.is_some(),
        spec.respond.is_some(),
    ];
    let count = kinds.iter().filter(|k| **k).count();
    if let (Some(w), None) = (&spec.with_, &spec.uses) {
        cx.issue(
            w.pos,
            "`with` gives the parameters of a `uses` step; this step has no `uses`",
        );
    }
    if count != 1 {
        let msg = if count == 0 {
            format!("step `{}` has no kind: add one of {KINDS}", spec.id.value)
        } else {
            format!("step `{}` has {count} kinds; a step is exactly one of {KINDS} (split it into several steps)", spec.id.value)
        };
        cx.issue(s.pos, msg);
        return None;
    }
    loop_keys_belong_to_for_each(cx, spec);
    let condition = match &spec.if_ {
        Some(c) => Some(cx.condition(c)?),
        None => None,
    };
    let action = if let Some(f) = &spec.filter {
        Action::Filter(cx.condition(f)?)
    } else if let Some(t) = &spec.transform {
        Action::Transform(transform(cx, t)?)
    } else if let Some(h) = &spec.http {
        Action::Http(http(cx, &spec.id.value, h)?)
    } else if let Some(u) = &spec.uses {
        Action::Http(uses::compile(cx, &spec.id.value, u, spec.with_.as_ref())?)
    } else if let Some(sw) = &spec.switch {
        nests(cx, spec, depth)?;
        Action::Switch(switch(cx, spec.id.pos, sw, depth, seen)?)
    } else if let Some(items) = &spec.for_each {
        nests(cx, spec, depth)?;
        Action::ForEach(for_each(cx, spec, items, depth, seen)?)
    } else if let Some(d) = &spec.delay {
        top_level(cx, "delay", d.pos, depth)?;
        Action::Delay(delay(cx, d)?)
    } else if let Some(r) = &spec.respond {
        top_level(cx, "respond", r.pos, depth)?;
        Action::Respond(respond(cx, r)?)
    } else {
        return None;
    };
    Some(Step {
        id: spec.id.value.clone(),
        condition,
        action,
    })
}

/// `concurrency`, `max_items` and `steps` are a `for_each`'s.
fn loop_keys_belong_to_for_each(cx: &mut Cx, spec: &StepSpec) {
    if spec.for_each.is_some() {
        return;
    }
    let hint = if spec.switch.is_some() {
        "; a switch's steps go under its `cases` (and `default`)"
    } else {
        ""
    };
    let keys = [
        ("concurrency", spec.concurrency.as_ref().map(|c| c.pos)),
        ("max_items", spec.max_items.as_ref().map(|m| m.pos)),
        ("steps", spec.steps.as_ref().map(|s| s.pos)),
    ];
    for (key, pos) in keys {
        if let Some(pos) = pos {
            cx.issue(
                pos,
                format!(
                    "`{key}` belongs to a `for_each` step, and `{}` is not one{hint}",
                    spec.id.value
                ),
            );
        }
    }
}

/// A `switch` or `for_each` held by `depth` others: at most
/// [`MAX_NESTING`] levels in all.
fn nests(cx: &mut Cx, spec: &StepSpec, depth: usize) -> Option<()> {
    if depth < MAX_NESTING {
        return Some(());
    }
    cx.issue(
        spec.id.pos,
        format!(
            "`{}` is nested {} levels deep; `switch` and `for_each` nest at most {MAX_NESTING} levels (move its work into a step at an outer level)",
            spec.id.value,
            depth + 1
        ),
    );
    None
}

/// `delay` and `respond` belong to the run itself, not to a branch or an
/// item.
fn top_level(cx: &mut Cx, kind: &str, pos: Pos, depth: usize) -> Option<()> {
    if depth == 0 {
        return Some(());
    }
    let why = match kind {
        "delay" => "a run waits as a whole, not per branch or item",
        _ => "a sender gets one answer per request, not one per branch or item",
    };
    cx.issue(
        pos,
        format!("`{kind}` stands at the top level of `steps`, not inside a `switch` or `for_each` ({why}); move it out"),
    );
    None
}

/// A `switch` (the step's id at `at`).
fn switch(
    cx: &mut Cx,
    at: Pos,
    sw: &Spanned<SwitchSpec>,
    depth: usize,
    seen: &mut HashSet<String>,
) -> Option<Switch> {
    let mut ok = true;
    let mut cases = Vec::new();
    match &sw.value.cases {
        None => {
            cx.issue(
                at,
                "a switch needs `cases:`, a list of `- when: {…}` with `steps:` (and may add `default:`)",
            );
            ok = false;
        }
        Some(list) if list.is_empty() => {
            cx.issue(
                at,
                "`cases:` is empty; give at least one `- when: {…}` with `steps:`",
            );
            ok = false;
        }
        Some(list) => {
            for case in list {
                let when = cx.condition(&case.value.when);
                let steps = branch(cx, &case.value.steps, "this case", depth, seen);
                match (when, steps) {
                    (Some(when), Some(steps)) => cases.push(Case { when, steps }),
                    _ => ok = false,
                }
            }
        }
    }
    let default = match &sw.value.default {
        None => None,
        Some(d) => match branch(cx, d, "`default`", depth, seen) {
            Some(steps) => Some(steps),
            None => {
                ok = false;
                None
            }
        },
    };
    ok.then_some(Switch { cases, default })
}

/// The steps of a branch or a loop: at least one.
fn branch(
    cx: &mut Cx,
    specs: &Spanned<Vec<Spanned<StepSpec>>>,
    what: &str,
    depth: usize,
    seen: &mut HashSet<String>,
) -> Option<Vec<Step>> {
    if specs.value.is_empty() {
        cx.issue(
            specs.pos,
            format!("{what} has no steps; give it at least one"),
        );
        return None;
    }
    let before = cx.issues.len();
    let steps = steps(cx, &specs.value, depth + 1, seen);
    (cx.issues.len() == before && steps.len() == specs.value.len()).then_some(steps)
}

fn for_each(
    cx: &mut Cx,
    spec: &StepSpec,
    items: &Spanned<YNode>,
    depth: usize,
    seen: &mut HashSet<String>,
) -> Option<ForEach> {
    let items = value_template_named(cx, items, "for_each");
    let mut ok = true;
    let concurrency = match &spec.concurrency {
        None => 1,
        Some(c) if c.value == 0 || c.value as usize > MAX_CONCURRENCY => {
            cx.issue(
                c.pos,
                format!("concurrency: use 1 to {MAX_CONCURRENCY} (items run at once; 1 runs them in order)"),
            );
            ok = false;
            1
        }
        Some(c) => c.value as usize,
    };
    let max_items = match &spec.max_items {
        None => DEFAULT_MAX_ITEMS,
        Some(m) if m.value == 0 => {
            cx.issue(m.pos, "max_items: use 1 or more");
            ok = false;
            DEFAULT_MAX_ITEMS
        }
        Some(m) => m.value as usize,
    };
    let steps = match &spec.steps {
        None => {
            cx.issue(
                spec.id.pos,
                format!("`{}`: a for_each needs `steps:`, the steps to run for each item (they see `$.item` and `$.index`)", spec.id.value),
            );
            None
        }
        Some(list) => branch(cx, list, "this for_each", depth, seen),
    };
    Some(ForEach {
        items,
        concurrency,
        max_items,
        steps: steps?,
    })
    .filter(|_| ok)
}

fn delay(cx: &mut Cx, d: &Spanned<YNode>) -> Option<Delay> {
    match &d.value {
        YNode::String(text) => match humantime::parse_duration(text.trim()) {
            Ok(duration) => Some(Delay::For(duration)),
            Err(_) => {
                cx.issue(
                    d.pos,
                    format!("delay: `{text}` is not a duration; write e.g. 30s, 10m, 24h or 7d, or `{{ until: \"<RFC 3339 time>\" }}`"),
                );
                None
            }
        },
        YNode::Map(entries) => {
            let mut until = None;
            for (k, v) in entries {
                match (k.value.as_str(), &v.value) {
                    ("until", YNode::String(text)) => {
                        let spanned = Spanned {
                            pos: v.pos,
                            value: text.clone(),
                        };
                        until = cx.template(&spanned, "until");
                        until.as_ref()?;
                    }
                    ("until", other) => {
                        cx.issue(
                            v.pos,
                            format!(
                                "until: give an RFC 3339 time as text (often a template), not {}",
                                other.kind()
                            ),
                        );
                        return None;
                    }
                    (key, _) => {
                        cx.issue(
                            k.pos,
                            format!(
                                "unknown key `{key}` in delay{}",
                                super::yaml::did_you_mean(key, ["until"])
                                    .map(|c| format!("; did you mean `{c}`?"))
                                    .unwrap_or_default()
                            ),
                        );
                        return None;
                    }
                }
            }
            match until {
                Some(t) => Some(Delay::Until(t)),
                None => {
                    cx.issue(d.pos, "delay: give `until:` (an RFC 3339 time)");
                    None
                }
            }
        }
        other => {
            cx.issue(
                d.pos,
                format!(
                    "delay: give a duration (`10m`) or `{{ until: … }}`, not {}",
                    other.kind()
                ),
            );
            None
        }
    }
}

fn respond(cx: &mut Cx, r: &Spanned<RespondSpec>) -> Option<Respond> {
    let spec = &r.value;
    let status = match &spec.status {
        None => ValueTemplate::Lit(serde_json::Value::from(respond::DEFAULT_STATUS)),
        Some(node) => {
            let literal = match &node.value {
                YNode::String(text) if !text.contains("{{") => text.trim().parse::<u64>().ok(),
                YNode::String(_) => None,
                other => other.to_json().as_u64().or(Some(0)),
            };
            match literal {
                Some(n) if !respond::status_ok(n) => {
                    cx.issue(
                        node.pos,
                        "status: give a number from 200 to 599 (or a template that gives one)",
                    );
                    return None;
                }
                _ => value_template_named(cx, node, "status"),
            }
        }
    };
    let mut headers = Vec::new();
    for (k, v) in &spec.headers.0 {
        if axum::http::HeaderName::from_bytes(k.as_bytes()).is_err() {
            cx.issue(v.pos, format!("`{k}` is not a valid header name"));
            continue;
        }
        if let Some(t) = cx.template(v, &format!("header `{k}`")) {
            headers.push((k.clone(), t));
        }
    }
    let body = spec
        .body
        .as_ref()
        .map(|b| value_template_named(cx, b, "body"));
    Some(Respond {
        status,
        headers,
        body,
    })
}

fn transform(cx: &mut Cx, t: &Spanned<TransformSpec>) -> Option<crate::script::Script> {
    match (&t.value.script, &t.value.file) {
        (Some(src), None) => match cx.env.engine.compile_script(&src.value) {
            Ok(s) => Some(s),
            Err(e) => {
                let (line, col) = script_position(cx.text, src.pos, e.line, e.col);
                cx.issue(
                    Pos { line, col },
                    format!("script error (script line {}): {}", e.line, e.message),
                );
                None
            }
        },
        (None, Some(name)) => {
            let text = match cx.env.scripts.read(&name.value) {
                Ok(t) => t,
                Err(e) => {
                    cx.issue(name.pos, e);
                    return None;
                }
            };
            match cx.env.engine.compile_script(&text) {
                Ok(s) => {
                    cx.scripts_used.insert(name.value.clone(), text);
                    Some(s)
                }
                Err(e) => {
                    cx.issues.push(Issue {
                        file: cx.env.scripts.path_of(&name.value),
                        line: e.line,
                        col: e.col,
                        message: format!(
                            "script error: {} (used by {}:{})",
                            e.message,
                            cx.file.display(),
                            name.pos
                        ),
                    });
                    None
                }
            }
        }
        (Some(_), Some(f)) => {
            cx.issue(f.pos, "a transform has either `script` or `file`, not both");
            None
        }
        (None, None) => {
            cx.issue(
                t.pos,
                "a transform needs `script:` (inline Rhai) or `file:` (a file under scripts/)",
            );
            None
        }
    }
}

/// Where a line of an inline script stands in the YAML file. The value's
/// position is where its text starts (for a block scalar, `script: |`, the
/// first line after the indicator); later lines keep the block's indent.
fn script_position(text: &str, at: Pos, line: usize, col: usize) -> (usize, usize) {
    let lines: Vec<&str> = text.lines().collect();
    let start = lines.get(at.line.saturating_sub(1)).copied().unwrap_or("");
    let rest = start
        .get(at.col.saturating_sub(1)..)
        .unwrap_or("")
        .trim_start();
    let indent_of = |n: usize| {
        lines
            .get(n.saturating_sub(1))
            .map(|l| l.len() - l.trim_start().len())
            .unwrap_or(0)
    };
    if rest.starts_with('|') || rest.starts_with('>') {
        let body_line = at.line + line;
        (body_line, indent_of(body_line) + col)
    } else if line == 1 {
        (at.line, at.col + col - 1)
    } else {
        let file_line = at.line + line - 1;
        (file_line, indent_of(file_line) + col)
    }
}

fn http(cx: &mut Cx, step_id: &str, h: &Spanned<HttpSpec>) -> Option<HttpAction> {
    let spec = &h.value;
    let method = match &spec.method {
        None => reqwest::Method::POST,
        Some(m) => match m.value.trim().to_ascii_uppercase().as_str() {
            up @ ("GET" | "POST" | "PUT" | "PATCH" | "DELETE" | "HEAD" | "OPTIONS") => {
                reqwest::Method::from_bytes(up.as_bytes()).ok()?
            }
            _ => {
                cx.issue(m.pos, format!("method `{}` is not supported; use GET, POST, PUT, PATCH, DELETE, HEAD or OPTIONS", m.value));
                reqwest::Method::POST
            }
        },
    };
    let url = cx.url_template(&spec.url);
    let mut query = Vec::new();
    for (k, v) in &spec.query.0 {
        if let Some(t) = cx.template(v, &format!("query `{k}`")) {
            query.push((k.clone(), t));
        }
    }
    let mut headers = Vec::new();
    for (k, v) in &spec.headers.0 {
        if reqwest::header::HeaderName::from_bytes(k.as_bytes()).is_err() {
            cx.issue(v.pos, format!("`{k}` is not a valid header name"));
            continue;
        }
        if let Some(t) = cx.template(v, &format!("header `{k}`")) {
            headers.push((k.clone(), t));
        }
    }
    let body = spec.body.as_ref().map(|b| value_template(cx, b));
    let timeout = cx.duration(&spec.timeout, Duration::from_secs(10), "timeout");
    let mut retry = RetryPolicy::default();
    if let Some(r) = &spec.retry {
        if let Some(a) = &r.value.attempts {
            if a.value == 0 {
                cx.issue(
                    a.pos,
                    "attempts counts every attempt, the first included: use 1 or more",
                );
            }
            retry.attempts = a.value.max(1);
        }
        retry.backoff = cx.duration(&r.value.backoff, retry.backoff, "backoff");
        retry.max_backoff = cx.duration(&r.value.max_backoff, retry.max_backoff, "max_backoff");
    }
    let success = match &spec.success {
        None => vec![StatusRange { lo: 200, hi: 299 }],
        Some(list) => list
            .iter()
            .filter_map(|s| {
                let r = StatusRange::parse(&s.value);
                if r.is_none() {
                    cx.issue(
                        s.pos,
                        format!(
                            "`{}` is not a status or class of statuses; write e.g. 2xx or 404",
                            s.value
                        ),
                    );
                }
                r
            })
            .collect(),
    };
    Some(HttpAction {
        step_id: step_id.to_string(),
        method,
        url: url?,
        query,
        headers,
        body,
        format: spec.format.unwrap_or_default(),
        timeout,
        retry,
        success,
        follow_redirects: spec.follow_redirects.unwrap_or(false),
        uses: None,
    })
}

fn value_template(cx: &mut Cx, node: &Spanned<YNode>) -> ValueTemplate {
    value_template_named(cx, node, "body")
}

/// A value whose strings may hold templates; problems are reported as
/// `what: …`.
fn value_template_named(cx: &mut Cx, node: &Spanned<YNode>, what: &str) -> ValueTemplate {
    match &node.value {
        YNode::String(s) => {
            let spanned = Spanned {
                pos: node.pos,
                value: s.clone(),
            };
            match cx.template(&spanned, what) {
                Some(t) if t.is_literal() => {
                    ValueTemplate::Lit(serde_json::Value::String(s.clone()))
                }
                Some(t) => ValueTemplate::Str(t),
                None => ValueTemplate::Lit(serde_json::Value::Null),
            }
        }
        YNode::Seq(items) => ValueTemplate::Array(
            items
                .iter()
                .map(|i| value_template_named(cx, i, what))
                .collect(),
        ),
        YNode::Map(entries) => ValueTemplate::Object(
            entries
                .iter()
                .map(|(k, v)| (k.value.clone(), value_template_named(cx, v, what)))
                .collect(),
        ),
        other => ValueTemplate::Lit(other.to_json()),
    }
}
