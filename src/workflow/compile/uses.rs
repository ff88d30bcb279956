//! A `uses` step (SPEC §9): the action is looked up in the catalog, the
//! `with:` values are checked against its params at the workflow's lines,
//! and the action becomes an `http` step: `base_url` (or the
//! `<NAME>_BASE_URL` variable) and `path`, the connector's headers and
//! auth, the action's request — compiled by the `http` step's own code —
//! plus the [`Uses`] part the step needs at run time.

use super::{http, value_template, Cx};
use crate::expr::template::Template;
use crate::secret::Secret;
use crate::step::http::HttpAction;
use crate::step::oauth2::{ClientAuth, TokenSource};
use crate::step::uses::{kind_of, Param, Uses};
use crate::workflow::connector::spec::{
    ActionAuthSpec, ActionSpec, AuthSpec, ClientAuthSpec, OAuth2Spec,
};
use crate::workflow::connector::{
    base_url_variable, param_type, token_url_variable, Connector, Lookup,
};
use crate::workflow::spec::HttpSpec;
use crate::workflow::yaml::{did_you_mean, Ordered, Pos, Spanned, YNode};
use std::sync::Arc;

/// Compile a `uses` step, reporting every problem.
pub(super) fn compile(
    cx: &mut Cx,
    step_id: &str,
    uses: &Spanned<String>,
    with: Option<&Spanned<YNode>>,
) -> Option<HttpAction> {
    let catalog = cx.env.connectors;
    let Some((cname, aname)) = uses.value.split_once('.') else {
        let example = catalog
            .get(&uses.value)
            .or_else(|| catalog.iter().next())
            .and_then(|c| {
                c.spec
                    .actions
                    .keys()
                    .next()
                    .map(|a| format!("{}.{a}", c.name))
            })
            .unwrap_or_else(|| "slack.post_message".into());
        cx.issue(
            uses.pos,
            format!("uses: write `connector.action`, e.g. `{example}`"),
        );
        return None;
    };
    let connector = match catalog.lookup(cname) {
        Lookup::Found(c) => c,
        Lookup::Invalid(file) => {
            cx.issue(
                uses.pos,
                format!(
                    "uses: connector `{cname}` is invalid; see the problems reported in {}",
                    file.display()
                ),
            );
            return None;
        }
        Lookup::Missing => {
            let names: Vec<&str> = catalog.names().collect();
            let hint = match did_you_mean(cname, names.iter().copied()) {
                Some(c) => format!("; did you mean `{c}`?"),
                None if names.is_empty() => " (there are none)".to_string(),
                None => format!("; the connectors are: {}", names.join(", ")),
            };
            cx.issue(
                uses.pos,
                format!("uses: no connector `{cname}`{}{hint}", catalog.place()),
            );
            return None;
        }
    };
    let Some(action) = connector.spec.actions.get(aname) else {
        let hint = match did_you_mean(aname, connector.spec.actions.keys()) {
            Some(c) => format!("; did you mean `{c}`?"),
            None => format!(
                "; its actions are: {}",
                connector.spec.actions.keys().collect::<Vec<_>>().join(", ")
            ),
        };
        cx.issue(
            uses.pos,
            format!("uses: connector `{cname}` has no action `{aname}`{hint}"),
        );
        return None;
    };
    let full = uses.value.clone();
    let params = params(cx, &full, uses.pos, &action.value, with)?;
    let label = format!("uses `{full}`");
    let connector = Arc::clone(connector);
    cx.within(&connector, uses.pos, &label, |sub| {
        action_http(sub, step_id, &connector, &action.value, full, params)
    })
}

/// The `with:` values, checked against the action's params.
fn params(
    cx: &mut Cx,
    full: &str,
    at: Pos,
    action: &ActionSpec,
    with: Option<&Spanned<YNode>>,
) -> Option<Vec<Param>> {
    let entries: Vec<(&Spanned<String>, &Spanned<YNode>)> = match with.map(|w| (w, &w.value)) {
        None | Some((_, YNode::Null)) => Vec::new(),
        Some((_, YNode::Map(entries))) => entries.iter().map(|(k, v)| (k, v)).collect(),
        Some((w, other)) => {
            cx.issue(
                w.pos,
                format!(
                    "with: expected a mapping of parameters (`name: value`), found {}",
                    other.kind()
                ),
            );
            return None;
        }
    };
    let before = cx.issues.len();
    for (k, _) in &entries {
        if action.params.get(&k.value).is_none() {
            let hint = match did_you_mean(&k.value, action.params.keys()) {
                Some(c) => format!("; did you mean `{c}`?"),
                None if action.params.0.is_empty() => "; it takes no parameters".to_string(),
                None => format!(
                    "; its parameters are: {}",
                    action.params.keys().collect::<Vec<_>>().join(", ")
                ),
            };
            cx.issue(
                k.pos,
                format!("with: unknown parameter `{}` of `{full}`{hint}", k.value),
            );
        }
    }
    let mut out = Vec::new();
    for (pname, p) in &action.params.0 {
        let p = &p.value;
        let ty = param_type(p);
        let allowed: Option<Vec<serde_json::Value>> = p
            .enum_
            .as_ref()
            .map(|v| v.iter().map(|x| x.value.to_json()).collect());
        let given = entries
            .iter()
            .find(|(k, _)| k.value == pname.value)
            .map(|(_, v)| *v)
            .filter(|v| !matches!(v.value, YNode::Null));
        let required = p.required == Some(true);
        if given.is_none() && required && p.default.is_none() {
            cx.issue(at, format!("with: `{full}` needs `{}`", pname.value));
            continue;
        }
        let given = match given {
            None => None,
            Some(v) => {
                let (template, source, literal) = match &v.value {
                    YNode::String(s) => {
                        let t = value_template(cx, v);
                        // A whole-value template may give any type: only
                        // the run can tell. Other text is text.
                        let dynamic = compiled_whole_value(cx, s);
                        let literal = (!dynamic).then(|| serde_json::Value::String(s.clone()));
                        (t, s.clone(), literal)
                    }
                    other => {
                        let json = other.to_json();
                        (value_template(cx, v), json.to_string(), Some(json))
                    }
                };
                if let Some(lit) = &literal {
                    let is_template_text = matches!(&v.value, YNode::String(s) if s.contains("{{"));
                    if !ty.accepts(lit) {
                        cx.issue(
                            v.pos,
                            format!(
                                "with: `{}` must be {}, found {}",
                                pname.value,
                                ty.describe(),
                                kind_of(lit)
                            ),
                        );
                    } else if let (Some(values), false) = (&allowed, is_template_text) {
                        if !values
                            .iter()
                            .any(|a| crate::expr::condition::json_eq(a, lit))
                        {
                            cx.issue(
                                v.pos,
                                format!(
                                    "with: `{}` must be one of: {}; found `{}`",
                                    pname.value,
                                    values
                                        .iter()
                                        .map(crate::expr::template::value_text)
                                        .collect::<Vec<_>>()
                                        .join(", "),
                                    crate::expr::template::value_text(lit)
                                ),
                            );
                        }
                    }
                }
                Some((template, source))
            }
        };
        out.push(Param {
            name: pname.value.clone(),
            ty,
            required,
            allowed,
            default: p.default.as_ref().map(|d| d.value.to_json()),
            given,
        });
    }
    (cx.issues.len() == before).then_some(out)
}

/// Whether `text` is exactly one `{{ … }}` (its problems, if any, are
/// reported where the value is compiled).
fn compiled_whole_value(cx: &mut Cx, text: &str) -> bool {
    let mut secrets = Vec::new();
    let mut env = crate::expr::template::TemplateEnv {
        env: cx.env.env,
        secrets: &mut secrets,
    };
    Template::compile(text, &mut env).is_ok_and(|t| t.is_whole_value())
}

/// The action as an `http` step, compiled in the connector's file.
fn action_http(
    cx: &mut Cx,
    step_id: &str,
    connector: &Connector,
    action: &ActionSpec,
    name: String,
    params: Vec<Param>,
) -> Option<HttpAction> {
    let spec = &connector.spec;
    let h = &action.http.value;
    let url = match (&h.url, &h.path) {
        (Some(u), _) => u.clone(),
        (None, Some(p)) => {
            let var = base_url_variable(&connector.name);
            let base = match cx.env.env.get(&var) {
                // From the environment: a secret like any `env` value.
                Some(_) => format!("{{{{ env.{var} }}}}"),
                None => spec
                    .base_url
                    .as_ref()
                    .map(|b| b.value.clone())
                    .unwrap_or_default(),
            };
            Spanned {
                pos: p.pos,
                value: format!("{}{}", base.trim_end_matches('/'), p.value),
            }
        }
        (None, None) => return None,
    };
    // The connector's headers, then the action's (which win).
    let mut headers: Vec<(String, Spanned<String>)> = spec.headers.0.clone();
    for (k, v) in &h.headers.0 {
        headers.retain(|(o, _)| !o.eq_ignore_ascii_case(k));
        headers.push((k.clone(), v.clone()));
    }
    let http_spec = Spanned {
        pos: action.http.pos,
        value: HttpSpec {
            method: h.method.clone(),
            url,
            query: h.query.clone(),
            headers: Ordered(headers),
            body: h.body.clone(),
            format: h.format,
            timeout: h.timeout.clone(),
            retry: h.retry.clone(),
            success: h.success.clone(),
            follow_redirects: h.follow_redirects,
        },
    };
    let mut out = http(cx, step_id, &http_spec);
    let auth = match action.auth.as_ref().map(|a| a.value) {
        Some(ActionAuthSpec::None) => None,
        None => spec.auth.as_ref(),
    };
    let mut oauth2 = None;
    if let Some(auth) = auth {
        // A header the action writes itself wins over the connector's auth.
        let has =
            |o: &HttpAction, n: &str| o.headers.iter().any(|(k, _)| k.eq_ignore_ascii_case(n));
        match &auth.value {
            AuthSpec::Bearer(t) => {
                let value = Spanned {
                    pos: t.pos,
                    value: format!("Bearer {}", t.value),
                };
                let t = cx.template(&value, "auth");
                if let (Some(o), Some(t)) = (&mut out, t) {
                    if !has(o, "authorization") {
                        o.headers.insert(0, ("Authorization".into(), t));
                    }
                }
            }
            AuthSpec::Basic(b) => {
                let user = known(cx, &b.user);
                let password = known(cx, &b.password);
                if let (Some(o), Some(u), Some(p)) = (&mut out, user, password) {
                    use base64::Engine as _;
                    let value = format!(
                        "Basic {}",
                        base64::engine::general_purpose::STANDARD.encode(format!("{u}:{p}"))
                    );
                    let mut secrets = Vec::new();
                    let t = Template::compile(
                        &value,
                        &mut crate::expr::template::TemplateEnv {
                            env: cx.env.env,
                            secrets: &mut secrets,
                        },
                    );
                    if let (Ok(t), false) = (t, has(o, "authorization")) {
                        o.headers.insert(0, ("Authorization".into(), t));
                    }
                }
            }
            AuthSpec::Header(hd) => {
                let t = cx.template(&hd.value, "auth");
                if let (Some(o), Some(t)) = (&mut out, t) {
                    if !has(o, &hd.name.value) {
                        o.headers.insert(0, (hd.name.value.clone(), t));
                    }
                }
            }
            AuthSpec::Oauth2(o) => oauth2 = token_source(cx, connector, o).map(Arc::new),
        }
    }
    let ok_when = action.ok_when.as_ref().and_then(|c| cx.condition(c));
    let error = action.error.as_ref().and_then(|e| cx.template(e, "error"));
    let mut out = out?;
    out.uses = Some(Arc::new(Uses {
        name,
        params,
        ok_when,
        error,
        oauth2,
    }));
    Some(out)
}

/// A value that must be known at load (a literal or `env`): its text.
fn known(cx: &mut Cx, s: &Spanned<String>) -> Option<String> {
    let t = cx.template(s, "auth")?;
    match t.known() {
        Some(k) => Some(k.text),
        None => {
            cx.issue(
                s.pos,
                "auth: credentials must be known at load (a literal or `{{ env.NAME }}`), never read from the run",
            );
            None
        }
    }
}

fn token_source(cx: &mut Cx, connector: &Connector, o: &OAuth2Spec) -> Option<TokenSource> {
    let var = token_url_variable(&connector.name);
    let token_url = match cx.env.env.get(&var) {
        Some(_) => Spanned {
            pos: o.token_url.pos,
            value: format!("{{{{ env.{var} }}}}"),
        },
        None => o.token_url.clone(),
    };
    let url_text = known(cx, &token_url);
    let client_id = known(cx, &o.client_id);
    let client_secret = known(cx, &o.client_secret);
    let refresh_token = match &o.refresh_token {
        Some(r) => Some(known(cx, r)?),
        None => None,
    };
    let url = match url_text.as_deref().map(reqwest::Url::parse) {
        Some(Ok(u)) if u.scheme() == "https" || u.scheme() == "http" => Some(u),
        Some(_) => {
            cx.issue(o.token_url.pos, "oauth2: `token_url` is not an http(s) URL");
            None
        }
        None => None,
    };
    // Secrets, whatever their source: redacted like `env` values.
    for s in [&client_secret, &refresh_token].into_iter().flatten() {
        let s = Secret::from(s.as_str());
        if !s.is_empty() && !cx.secrets.contains(&s) {
            cx.secrets.push(s);
        }
    }
    Some(TokenSource::new(
        &connector.name,
        url?,
        Secret::from(client_id?),
        Secret::from(client_secret?),
        refresh_token.map(Secret::from),
        o.scopes.iter().map(|s| s.value.clone()).collect(),
        match o.client_auth.as_ref().map(|c| c.value) {
            Some(ClientAuthSpec::Basic) => ClientAuth::Basic,
            Some(ClientAuthSpec::Body) | None => ClientAuth::Body,
        },
    ))
}
