//! Connectors (SPEC §9): YAML files under `connectors/` that turn an app's
//! API into named actions. This module owns the files: reading them with
//! the workflows' strict reader into a [`spec::ConnectorSpec`], checking
//! what can be checked without a workflow (names, parameter types, `path`
//! or `url`, template syntax, `$.params` references, `ok_when`), and the
//! [`Catalog`] of loaded connectors. A `uses` step is compiled against an
//! action by `workflow::compile` (with the workflow's environment, so a
//! test case's `env:` applies) into an `http` step; what the step needs at
//! run time lives in `step::uses` and `step::oauth2`.
//!
//! A connector's `base_url` (and an OAuth2 `token_url`) can be replaced
//! from the environment, `<NAME>_BASE_URL` and `<NAME>_TOKEN_URL` (the
//! connector's name upper-cased): that is how tests point a connector at a
//! stand-in of its provider.

pub mod spec;

use super::compile::Issue;
use super::yaml::{self, did_you_mean, Pos, Spanned, YNode};
use crate::expr::condition::Condition;
use crate::expr::template::{Template, TemplateEnv};
use crate::script::Engine;
use crate::step::uses::ParamType;
use serde_json::{json, Value};
use spec::{ActionSpec, AuthSpec, ConnectorSpec};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// A connector file that passed every load-time check.
#[derive(Debug)]
pub struct Connector {
    pub name: String,
    pub file: PathBuf,
    /// The file's text, kept with each workflow version that uses it.
    pub source: String,
    pub spec: ConnectorSpec,
}

/// One connector file and what was wrong with it.
#[derive(Debug, Clone)]
pub struct ConnectorFile {
    pub file: PathBuf,
    /// The name it declares (or its file name), even when it is invalid.
    pub name: String,
    pub issues: Vec<Issue>,
}

/// What a name stands for in a catalog.
pub enum Lookup<'a> {
    Found(&'a Arc<Connector>),
    /// A file declares it but has problems.
    Invalid(&'a Path),
    Missing,
}

/// The connectors a workflow can use: those of one folder, or those kept
/// with a stored workflow version.
#[derive(Debug, Default)]
pub struct Catalog {
    /// The folder they came from, for messages (`None` for a stored
    /// version's copies).
    pub dir: Option<PathBuf>,
    connectors: BTreeMap<String, Arc<Connector>>,
    invalid: BTreeMap<String, PathBuf>,
    pub files: Vec<ConnectorFile>,
}

/// The variable that replaces a connector's `base_url`.
pub fn base_url_variable(connector: &str) -> String {
    format!("{}_BASE_URL", connector.to_ascii_uppercase())
}

/// The variable that replaces a connector's OAuth2 `token_url`.
pub fn token_url_variable(connector: &str) -> String {
    format!("{}_TOKEN_URL", connector.to_ascii_uppercase())
}

/// Connector and action names: what `uses: a.b` and `$.params.x` can
/// name without brackets.
pub fn valid_name(s: &str) -> bool {
    let mut b = s.bytes();
    b.next().is_some_and(|c| c.is_ascii_lowercase())
        && b.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'_')
}

impl Catalog {
    /// Every `*.yaml` / `*.yml` file in `dir` (not a folder that does not
    /// exist: then the catalog is empty).
    pub fn load(dir: &Path, engine: &Engine) -> Catalog {
        let mut sources = Vec::new();
        let mut unreadable = Vec::new();
        if let Ok(entries) = std::fs::read_dir(dir) {
            let mut paths: Vec<PathBuf> = entries.flatten().map(|e| e.path()).collect();
            paths.sort();
            for path in paths {
                let name = path
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default();
                if name.starts_with('.')
                    || !(name.ends_with(".yaml") || name.ends_with(".yml"))
                    || !path.is_file()
                {
                    continue;
                }
                match std::fs::read_to_string(&path) {
                    Ok(text) => sources.push((path, text)),
                    Err(e) => unreadable.push(ConnectorFile {
                        name: stem(&path),
                        issues: vec![Issue {
                            file: path.clone(),
                            line: 1,
                            col: 1,
                            message: format!("cannot read the file: {e}"),
                        }],
                        file: path,
                    }),
                }
            }
        }
        let mut catalog = Catalog::from_sources(sources, engine);
        catalog.dir = Some(dir.to_path_buf());
        catalog.files.extend(unreadable);
        catalog.files.sort_by(|a, b| a.file.cmp(&b.file));
        catalog
    }

    /// A catalog of these files (path and text), e.g. the copies a
    /// workflow version keeps.
    pub fn from_sources(sources: Vec<(PathBuf, String)>, engine: &Engine) -> Catalog {
        let mut catalog = Catalog::default();
        for (file, text) in sources {
            let (spec, mut issues) = check(&file, &text, engine);
            let name = spec
                .as_ref()
                .and_then(|s| s.connector.as_ref().map(|n| n.value.clone()))
                .unwrap_or_else(|| stem(&file));
            if let Some(spec) = spec {
                if let Some(first) = catalog
                    .connectors
                    .get(&name)
                    .map(|c| c.file.clone())
                    .or_else(|| catalog.invalid.get(&name).cloned())
                {
                    let pos = spec
                        .connector
                        .as_ref()
                        .map(|n| n.pos)
                        .unwrap_or(Pos { line: 1, col: 1 });
                    issues.push(issue(
                        &file,
                        pos,
                        format!(
                            "connector `{name}` is already defined in {}; names must be unique",
                            first.display()
                        ),
                    ));
                }
                if issues.is_empty() {
                    catalog.connectors.insert(
                        name.clone(),
                        Arc::new(Connector {
                            name: name.clone(),
                            file: file.clone(),
                            source: text,
                            spec,
                        }),
                    );
                }
            }
            if !issues.is_empty() {
                issues.sort_by_key(|i| (i.line, i.col));
                catalog.invalid.entry(name.clone()).or_insert(file.clone());
            }
            catalog.files.push(ConnectorFile { file, name, issues });
        }
        catalog
    }

    pub fn lookup(&self, name: &str) -> Lookup<'_> {
        match self.connectors.get(name) {
            Some(c) => Lookup::Found(c),
            None => match self.invalid.get(name) {
                Some(file) => Lookup::Invalid(file),
                None => Lookup::Missing,
            },
        }
    }

    pub fn get(&self, name: &str) -> Option<&Arc<Connector>> {
        self.connectors.get(name)
    }

    /// Every name a file declares, valid or not.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.connectors
            .keys()
            .chain(self.invalid.keys())
            .map(String::as_str)
    }

    /// The valid connectors, by name.
    pub fn iter(&self) -> impl Iterator<Item = &Arc<Connector>> {
        self.connectors.values()
    }

    /// Every problem of every file, by file.
    pub fn issues(&self) -> impl Iterator<Item = &Issue> {
        self.files.iter().flat_map(|f| f.issues.iter())
    }

    /// Where a missing connector was looked for, for messages.
    pub fn place(&self) -> String {
        match &self.dir {
            Some(d) => format!(" in {}", d.display()),
            None => " among this version's connectors".to_string(),
        }
    }
}

fn stem(file: &Path) -> String {
    file.file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default()
}

fn issue(file: &Path, pos: Pos, message: impl Into<String>) -> Issue {
    Issue {
        file: file.to_path_buf(),
        line: pos.line,
        col: pos.col,
        message: message.into(),
    }
}

/// Read and check one connector file. Returns the spec when its structure
/// could be read (even with problems), and every problem.
pub fn check(file: &Path, text: &str, engine: &Engine) -> (Option<ConnectorSpec>, Vec<Issue>) {
    let mut issues = Vec::new();
    if text.trim().is_empty() {
        issues.push(issue(
            file,
            Pos { line: 1, col: 1 },
            "the file is empty; a connector needs at least `actions:`",
        ));
        return (None, issues);
    }
    let (spec, problems) = yaml::from_str::<ConnectorSpec>(text);
    for p in problems {
        issues.push(issue(file, p.pos, p.message));
    }
    let Some(spec) = spec else {
        return (None, issues);
    };
    let mut cx = Check {
        file,
        engine,
        issues,
    };
    cx.connector(&spec);
    (Some(spec), cx.issues)
}

struct Check<'a> {
    file: &'a Path,
    engine: &'a Engine,
    issues: Vec<Issue>,
}

/// Every variable is "set" while a file is checked on its own: only
/// syntax is judged here; the real values are read when a workflow uses
/// the connector.
fn any_env(_: &str) -> Option<String> {
    Some("x".to_string())
}

impl Check<'_> {
    fn issue(&mut self, pos: Pos, message: impl Into<String>) {
        self.issues.push(issue(self.file, pos, message));
    }

    fn template(&mut self, s: &Spanned<String>, what: &str) {
        let mut secrets = Vec::new();
        let mut env = TemplateEnv {
            env: &any_env,
            secrets: &mut secrets,
        };
        if let Err(e) = Template::compile(&s.value, &mut env) {
            self.issue(s.pos, format!("{what}: {e}"));
        }
    }

    fn connector(&mut self, spec: &ConnectorSpec) {
        let name = spec
            .connector
            .as_ref()
            .map(|n| (n.value.clone(), n.pos))
            .unwrap_or_else(|| (stem(self.file), Pos { line: 1, col: 1 }));
        if !valid_name(&name.0) {
            let msg = match &spec.connector {
                Some(_) => format!(
                    "connector name `{}` may only hold a-z, 0-9 and `_`, and must start with a letter",
                    name.0
                ),
                None => format!(
                    "the file name `{}` is not a valid connector name (a-z, 0-9, `_`, starting with a letter); add `connector:`",
                    name.0
                ),
            };
            self.issue(name.1, msg);
        }
        if let Some(b) = &spec.base_url {
            self.template(b, "base_url");
        }
        for (k, v) in &spec.headers.0 {
            if reqwest::header::HeaderName::from_bytes(k.as_bytes()).is_err() {
                self.issue(v.pos, format!("`{k}` is not a valid header name"));
            }
            self.template(v, &format!("header `{k}`"));
        }
        if let Some(auth) = &spec.auth {
            self.auth(auth);
        }
        if let Some(w) = &spec.webhook {
            for t in [&w.value.event_type, &w.value.summary]
                .into_iter()
                .flatten()
            {
                self.template(t, "webhook");
            }
            if let Some(d) = &w.value.dedupe {
                self.template(&d.value.key, "webhook dedupe key");
            }
        }
        if spec.actions.0.is_empty() && spec.webhook.is_none() {
            self.issue(
                name.1,
                "the connector has no `actions:` (and no `webhook:` preset)",
            );
        }
        for (aname, action) in &spec.actions.0 {
            if !valid_name(&aname.value) {
                self.issue(
                    aname.pos,
                    format!(
                        "action name `{}` may only hold a-z, 0-9 and `_`, and must start with a letter",
                        aname.value
                    ),
                );
            }
            self.action(spec, &aname.value, action);
        }
    }

    fn auth(&mut self, auth: &Spanned<AuthSpec>) {
        match &auth.value {
            AuthSpec::Bearer(t) => self.template(t, "auth"),
            AuthSpec::Basic(b) => {
                self.template(&b.user, "auth");
                self.template(&b.password, "auth");
            }
            AuthSpec::Header(h) => {
                if reqwest::header::HeaderName::from_bytes(h.name.value.as_bytes()).is_err() {
                    self.issue(
                        h.name.pos,
                        format!("`{}` is not a valid header name", h.name.value),
                    );
                }
                self.template(&h.value, "auth");
            }
            AuthSpec::Oauth2(o) => {
                for t in [&o.token_url, &o.client_id, &o.client_secret] {
                    self.template(t, "oauth2");
                }
                if let Some(r) = &o.refresh_token {
                    self.template(r, "oauth2");
                }
            }
        }
    }

    fn action(&mut self, spec: &ConnectorSpec, name: &str, a: &Spanned<ActionSpec>) {
        let action = &a.value;
        for (pname, p) in &action.params.0 {
            if !valid_name(&pname.value) {
                self.issue(
                    pname.pos,
                    format!(
                        "parameter name `{}` may only hold a-z, 0-9 and `_`, and must start with a letter (so `$.params.{}` works)",
                        pname.value, pname.value
                    ),
                );
            }
            let ty = match &p.value.type_ {
                None => Some(ParamType::String),
                Some(t) => match ParamType::parse(&t.value) {
                    Some(ty) => Some(ty),
                    None => {
                        let names = ParamType::NAMES;
                        let hint = match did_you_mean(&t.value, names.iter().copied()) {
                            Some(c) => format!("; did you mean `{c}`?"),
                            None => format!("; expected one of: {}", names.join(", ")),
                        };
                        self.issue(t.pos, format!("unknown value `{}`{hint}", t.value));
                        None
                    }
                },
            };
            if let (Some(ty), Some(d)) = (ty, &p.value.default) {
                if !ty.accepts(&d.value.to_json()) {
                    self.issue(
                        d.pos,
                        format!(
                            "the default of `{}` must be {}, found {}",
                            pname.value,
                            ty.describe(),
                            d.value.kind()
                        ),
                    );
                }
            }
            if let (Some(values), Some(d)) = (&p.value.enum_, &p.value.default) {
                let dv = d.value.to_json();
                if !values.iter().any(|v| v.value.to_json() == dv) {
                    self.issue(
                        d.pos,
                        format!(
                            "the default of `{}` is not one of its `enum` values",
                            pname.value
                        ),
                    );
                }
            }
        }
        let http = &action.http.value;
        match (&http.path, &http.url) {
            (Some(_), Some(_)) => self.issue(
                action.http.pos,
                "an action's `http` has either `path` (under `base_url`) or `url`, not both",
            ),
            (None, None) => self.issue(
                action.http.pos,
                "an action's `http` needs `path` (under the connector's `base_url`) or `url`",
            ),
            (Some(p), None) => {
                if spec.base_url.is_none() {
                    self.issue(
                        p.pos,
                        "`path` goes under the connector's `base_url`, which is not set; add `base_url:` or write the whole `url:`",
                    );
                }
                if !(p.value.is_empty() || p.value.starts_with('/') || p.value.starts_with("{{")) {
                    self.issue(p.pos, "a `path` starts with `/`");
                }
            }
            (None, Some(_)) => {}
        }
        if let Some(m) = &http.method {
            let up = m.value.trim().to_ascii_uppercase();
            if !["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"].contains(&up.as_str())
            {
                self.issue(m.pos, format!("method `{}` is not supported; use GET, POST, PUT, PATCH, DELETE, HEAD or OPTIONS", m.value));
            }
        }
        let mut strings: Vec<(&Spanned<String>, String)> = Vec::new();
        for p in [&http.path, &http.url].into_iter().flatten() {
            strings.push((p, "url".into()));
        }
        for (k, v) in &http.query.0 {
            strings.push((v, format!("query `{k}`")));
        }
        for (k, v) in &http.headers.0 {
            if reqwest::header::HeaderName::from_bytes(k.as_bytes()).is_err() {
                self.issue(v.pos, format!("`{k}` is not a valid header name"));
            }
            strings.push((v, format!("header `{k}`")));
        }
        if let Some(e) = &action.error {
            strings.push((e, "error".into()));
        }
        let mut body_strings = Vec::new();
        if let Some(b) = &http.body {
            collect_strings(b, &mut body_strings);
        }
        for (s, what) in strings
            .iter()
            .map(|(s, w)| (*s, w.clone()))
            .chain(body_strings.iter().map(|s| (s, "body".to_string())))
        {
            self.template(s, &what);
            self.param_refs(name, &action.params, s);
        }
        if let Some(t) = &http.timeout {
            self.duration(t, "timeout");
        }
        if let Some(r) = &http.retry {
            for (t, what) in [
                (&r.value.backoff, "backoff"),
                (&r.value.max_backoff, "max_backoff"),
            ] {
                if let Some(t) = t {
                    self.duration(t, what);
                }
            }
            if let Some(a) = r.value.attempts.as_ref().filter(|a| a.value == 0) {
                self.issue(
                    a.pos,
                    "attempts counts every attempt, the first included: use 1 or more",
                );
            }
        }
        for s in http.success.iter().flatten() {
            if crate::step::http::StatusRange::parse(&s.value).is_none() {
                self.issue(
                    s.pos,
                    format!(
                        "`{}` is not a status or class of statuses; write e.g. 2xx or 404",
                        s.value
                    ),
                );
            }
        }
        if let Some(c) = &action.ok_when {
            let mut problems = Vec::new();
            Condition::compile(c, self.engine, &mut problems);
            for p in problems {
                self.issue(p.pos, p.message);
            }
        }
    }

    fn duration(&mut self, s: &Spanned<String>, what: &str) {
        if humantime::parse_duration(s.value.trim()).is_err() {
            self.issue(
                s.pos,
                format!(
                    "{what}: `{}` is not a duration; write e.g. 500ms, 10s, 5m, 24h or 7d",
                    s.value
                ),
            );
        }
    }

    /// `$.params.NAME` must name a parameter of the action.
    fn param_refs(
        &mut self,
        action: &str,
        params: &spec::Keyed<Spanned<spec::ParamSpec>>,
        s: &Spanned<String>,
    ) {
        const PREFIX: &str = "$.params.";
        let mut rest = s.value.as_str();
        while let Some(i) = rest.find(PREFIX) {
            let after = &rest[i + PREFIX.len()..];
            let end = after
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(after.len());
            let name = &after[..end];
            if !name.is_empty() && params.get(name).is_none() {
                let hint = match did_you_mean(name, params.keys()) {
                    Some(c) => format!("; did you mean `{c}`?"),
                    None if params.0.is_empty() => "; the action has no `params:`".to_string(),
                    None => format!(
                        "; its parameters are: {}",
                        params.keys().collect::<Vec<_>>().join(", ")
                    ),
                };
                self.issue(
                    s.pos,
                    format!("`$.params.{name}` names no parameter of `{action}`{hint}"),
                );
            }
            rest = &after[end..];
        }
    }
}

/// Every string inside a free-form value, with its position.
fn collect_strings(node: &Spanned<YNode>, out: &mut Vec<Spanned<String>>) {
    match &node.value {
        YNode::String(s) => out.push(Spanned {
            pos: node.pos,
            value: s.clone(),
        }),
        YNode::Seq(items) => items.iter().for_each(|i| collect_strings(i, out)),
        YNode::Map(entries) => entries.iter().for_each(|(_, v)| collect_strings(v, out)),
        YNode::Null | YNode::Bool(_) | YNode::Number(_) => {}
    }
}

/// The type of a parameter as written (default: string).
pub fn param_type(p: &spec::ParamSpec) -> ParamType {
    p.type_
        .as_ref()
        .and_then(|t| ParamType::parse(&t.value))
        .unwrap_or(ParamType::String)
}

/// An environment variable a connector reads, for `/api/workflows` and
/// `hookflow connectors`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
pub struct EnvVar {
    pub name: String,
    /// `{{ env.NAME ?? … }}`: a fallback stands in when it is unset.
    pub optional: bool,
}

impl Connector {
    /// The variables the connector reads for `actions` (its base URL, auth,
    /// headers and those actions' own templates), each once.
    pub fn env_vars<'a>(&self, actions: impl IntoIterator<Item = &'a str>) -> Vec<EnvVar> {
        let spec = &self.spec;
        let mut texts: Vec<&str> = Vec::new();
        if let Some(b) = &spec.base_url {
            texts.push(&b.value);
        }
        texts.extend(spec.headers.0.iter().map(|(_, v)| v.value.as_str()));
        let mut needs_auth = false;
        for name in actions {
            let Some(a) = spec.actions.get(name) else {
                continue;
            };
            needs_auth |= a.value.auth.is_none();
            let http = &a.value.http.value;
            for p in [&http.path, &http.url].into_iter().flatten() {
                texts.push(&p.value);
            }
            texts.extend(http.query.0.iter().map(|(_, v)| v.value.as_str()));
            texts.extend(http.headers.0.iter().map(|(_, v)| v.value.as_str()));
            if let Some(body) = &http.body {
                body.value.strings(&mut texts);
            }
        }
        if needs_auth {
            if let Some(auth) = &spec.auth {
                match &auth.value {
                    AuthSpec::Bearer(t) => texts.push(&t.value),
                    AuthSpec::Basic(b) => {
                        texts.extend([&b.user.value, &b.password.value].map(String::as_str))
                    }
                    AuthSpec::Header(h) => texts.push(&h.value.value),
                    AuthSpec::Oauth2(o) => {
                        texts.extend(
                            [
                                &o.token_url.value,
                                &o.client_id.value,
                                &o.client_secret.value,
                            ]
                            .map(String::as_str),
                        );
                        if let Some(r) = &o.refresh_token {
                            texts.push(&r.value);
                        }
                    }
                }
            }
        }
        let mut out: Vec<EnvVar> = Vec::new();
        for t in texts {
            for (name, optional) in crate::expr::template::env_names(t) {
                match out.iter_mut().find(|v| v.name == name) {
                    Some(v) => v.optional &= optional,
                    None => out.push(EnvVar { name, optional }),
                }
            }
        }
        out
    }

    /// The auth form, for listings: `bearer`, `basic`, `header X-Api-Key`,
    /// `oauth2 (refresh token)`, `oauth2 (client credentials)`, or `none`.
    pub fn auth_kind(&self) -> String {
        match self.spec.auth.as_ref().map(|a| &a.value) {
            None => "none".into(),
            Some(AuthSpec::Bearer(_)) => "bearer token".into(),
            Some(AuthSpec::Basic(_)) => "HTTP basic".into(),
            Some(AuthSpec::Header(h)) => format!("header {}", h.name.value),
            Some(AuthSpec::Oauth2(o)) if o.refresh_token.is_some() => {
                "oauth2 (refresh token)".into()
            }
            Some(AuthSpec::Oauth2(_)) => "oauth2 (client credentials)".into(),
        }
    }
}

/// A workflow's uses of connectors, for `/api/workflows` and the UI.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ConnectorUse {
    pub name: String,
    /// The actions the workflow calls, `name.action`.
    pub actions: Vec<String>,
    /// Whether the catalog has a valid connector by this name.
    pub found: bool,
    pub env: Vec<EnvState>,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct EnvState {
    pub name: String,
    pub set: bool,
    pub optional: bool,
}

/// What connectors the `uses:` lines of a workflow file name (read even
/// when the file does not compile), with the state of their variables.
pub fn uses_of(
    source: &str,
    catalog: &Catalog,
    env: &dyn crate::expr::template::EnvLookup,
) -> Vec<ConnectorUse> {
    #[derive(serde::Deserialize)]
    struct Peek {
        #[serde(default)]
        steps: Vec<PeekStep>,
    }
    #[derive(serde::Deserialize)]
    struct PeekStep {
        uses: Option<String>,
    }
    let (peek, _) = yaml::from_str::<Peek>(source);
    let mut by_connector: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for u in peek
        .into_iter()
        .flat_map(|p| p.steps)
        .filter_map(|s| s.uses)
    {
        let Some((c, a)) = u.split_once('.') else {
            continue;
        };
        let actions = by_connector.entry(c.to_string()).or_default();
        if !actions.iter().any(|x| x == &u) {
            actions.push(format!("{c}.{a}"));
        }
    }
    by_connector
        .into_iter()
        .map(|(name, actions)| {
            let found = catalog.get(&name);
            let env_state = found
                .map(|c| {
                    c.env_vars(
                        actions
                            .iter()
                            .filter_map(|a| a.split_once('.').map(|(_, x)| x)),
                    )
                    .into_iter()
                    .map(|v| EnvState {
                        set: env.get(&v.name).is_some(),
                        name: v.name,
                        optional: v.optional,
                    })
                    .collect()
                })
                .unwrap_or_default();
            ConnectorUse {
                found: found.is_some(),
                name,
                actions,
                env: env_state,
            }
        })
        .collect()
}

/// The JSON Schema of `with:` for each action, and what the workflow
/// schema adds for `uses:` (see [`crate::workflow::schema`]).
pub fn schema_parts(catalog: &Catalog) -> (Vec<Value>, BTreeMap<String, Value>) {
    let mut uses = Vec::new();
    let mut defs = BTreeMap::new();
    for c in catalog.iter() {
        for (aname, a) in &c.spec.actions.0 {
            let full = format!("{}.{}", c.name, aname.value);
            let mut description = a
                .value
                .description
                .clone()
                .unwrap_or_else(|| format!("{} of {}", aname.value, c.name));
            if let Some(d) = a.value.docs.as_ref().or(c.spec.docs.as_ref()) {
                description.push_str(&format!(" ({d})"));
            }
            uses.push(json!({ "const": full, "description": description }));
            let mut props = serde_json::Map::new();
            let mut required = Vec::new();
            for (pname, p) in &a.value.params.0 {
                let mut schema = param_type(&p.value).json_schema();
                if let Some(values) = &p.value.enum_ {
                    let values: Vec<Value> = values.iter().map(|v| v.value.to_json()).collect();
                    schema = json!({ "anyOf": [{ "enum": values }, template_schema()] });
                }
                if let Some(obj) = schema.as_object_mut() {
                    if let Some(d) = &p.value.description {
                        obj.insert("description".into(), json!(d));
                    }
                    if let Some(d) = &p.value.default {
                        obj.insert("default".into(), d.value.to_json());
                    }
                }
                props.insert(pname.value.clone(), schema);
                if p.value.required == Some(true) && p.value.default.is_none() {
                    required.push(json!(pname.value));
                }
            }
            defs.insert(
                format!("with.{full}"),
                json!({
                    "type": "object",
                    "description": format!("The parameters of {full}"),
                    "properties": props,
                    "required": required,
                    "additionalProperties": false,
                }),
            );
        }
    }
    (uses, defs)
}

/// A string holding a template: it may stand for a value of any type.
pub fn template_schema() -> Value {
    json!({ "type": "string", "pattern": "\\{\\{" })
}
