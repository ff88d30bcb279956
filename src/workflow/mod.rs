//! Workflows: `spec.rs` mirrors the YAML, `compile.rs` checks it and builds
//! the runtime [`Workflow`], `registry.rs` holds the loaded set (path and
//! method → workflows) and every version a run may still need.
//! `connector/` reads the connector files that `uses` steps call, and
//! `compile` turns each `uses` step into an `http` step from them.

pub mod compile;
pub mod connector;
pub mod registry;
pub mod spec;
pub mod watch;
pub mod yaml;

use crate::expr::condition::Condition;
use crate::expr::template::Template;
use crate::secret::{Redactor, Secret};
use crate::step::Step;
use std::path::PathBuf;
use std::time::Duration;

/// A compiled, ready-to-run workflow. Immutable: a changed file becomes a
/// new `Workflow` with a new version. Its `Debug` shows no secret: `env`
/// values are [`Secret`]s, the verify secret and the sources print as a
/// placeholder.
#[derive(Debug)]
pub struct Workflow {
    pub name: String,
    pub description: Option<String>,
    pub enabled: bool,
    pub file: PathBuf,
    /// Content hash of the YAML and the scripts it uses.
    pub version: String,
    /// The YAML and scripts this version was built from (see
    /// [`compile::Bundle`]), kept in the store so a run can be explained.
    pub bundle: compile::Bundle,
    /// The inbound path under `/hooks`, e.g. `/stripe`.
    pub path: String,
    pub methods: Vec<String>,
    pub verify: Option<Verify>,
    pub dedupe: Option<Dedupe>,
    /// `trigger.events`: the provider's event types that start a run.
    pub events: Option<Events>,
    /// The run summary, from a provider preset: its parts, rendered and
    /// joined with ` · ` (empty parts left out). Empty: the default
    /// summary ([`crate::record::summarize`]).
    pub summary: Vec<Template>,
    pub when: Option<Condition>,
    pub steps: Vec<Step>,
    /// How long a sender waits for the `respond` step (when there is one)
    /// before it gets the usual `202`.
    pub respond_timeout: Duration,
    /// Redacts this workflow's secrets (the `env` values it reads and its
    /// verify secret) from everything stored and shown; built once per
    /// version.
    pub redactor: Redactor,
}

/// How inbound requests are verified. The secret is resolved once, at
/// load (SPEC §5): a literal or `env` value, never empty, never read from
/// the run context.
pub struct Verify {
    pub scheme: crate::signature::Scheme,
    /// The signing key.
    pub secret: Secret,
    /// Set when the key is a `??` fallback literal written in the workflow
    /// (a demo secret) because its variable is unset: such a workflow is
    /// served only on a loopback address (see [`Serving`]).
    pub fallback: Option<FallbackSecret>,
    /// For schemes that sign the URL (Twilio, HubSpot): the URL the sender
    /// uses, when `verify.url` gives it; otherwise it is built from the
    /// request's `Host` header and path.
    pub url: Option<String>,
}

// By hand, so the key never reaches a debug print.
impl std::fmt::Debug for Verify {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Verify")
            .field("scheme", &self.scheme)
            .field("secret", &crate::record::REDACTED)
            .field("fallback", &self.fallback)
            .field("url", &self.url)
            .finish()
    }
}

/// A verify secret that is a demo value: the variable to set, and where
/// the secret is written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FallbackSecret {
    pub variable: String,
    pub pos: yaml::Pos,
}

/// Where the loaded workflows answer senders, which decides whether a
/// demo secret (a `??` fallback literal, public in the shipped examples)
/// may verify them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Serving {
    /// `validate`, `test`, `run`, and `serve` on a loopback address: only
    /// this machine can send, so demo secrets are fine.
    Local,
    /// `serve` on this address, reachable from the network.
    Network(std::net::SocketAddr),
}

impl Serving {
    /// How a server listening on `addr` serves.
    pub fn at(addr: std::net::SocketAddr) -> Serving {
        if addr.ip().to_canonical().is_loopback() {
            Serving::Local
        } else {
            Serving::Network(addr)
        }
    }
}

/// `trigger.events`: where the event type is, and the types that match.
#[derive(Debug)]
pub struct Events {
    pub event_type: Template,
    /// Types as written; `*` matches any run of characters.
    pub patterns: Vec<String>,
}

impl Events {
    /// Whether the event in `ctx` is of a listed type.
    pub fn matches(&self, ctx: &serde_json::Value) -> bool {
        let ty = self.event_type.render_text(ctx);
        !ty.is_empty() && self.patterns.iter().any(|p| glob(p, &ty))
    }
}

/// `*` matches any run of characters (none included); all else is literal.
pub fn glob(pattern: &str, text: &str) -> bool {
    let mut parts = pattern.split('*');
    let first = parts.next().unwrap_or("");
    let Some(mut rest) = text.strip_prefix(first) else {
        return false;
    };
    let parts: Vec<&str> = parts.collect();
    let Some((last, middle)) = parts.split_last() else {
        return rest.is_empty();
    };
    for part in middle {
        match rest.find(part) {
            Some(i) => rest = &rest[i + part.len()..],
            None => return false,
        }
    }
    rest.len() >= last.len() && rest.ends_with(last)
}

#[derive(Debug)]
pub struct Dedupe {
    pub key: Template,
    pub window: Duration,
}

pub const DEFAULT_DEDUPE_WINDOW: Duration = Duration::from_secs(3 * 24 * 3600);
/// `trigger.webhook.respond_timeout` when not given (SPEC §6.1).
pub const DEFAULT_RESPOND_TIMEOUT: Duration = Duration::from_secs(10);

impl Workflow {
    /// Whether the workflow answers its sender itself (it has a `respond`
    /// step, which stands at the top level).
    pub fn responds(&self) -> bool {
        self.steps
            .iter()
            .any(|s| matches!(s.action, crate::step::Action::Respond(_)))
    }
}

/// The JSON Schema of a workflow file, generated from the types the loader
/// reads (`spec.rs`), so it cannot drift from what `validate` accepts;
/// with the connectors of `catalog`, so an editor completes `uses:`, each
/// action's `with:` and `provider:`.
pub fn schema(catalog: &connector::Catalog) -> serde_json::Value {
    let mut schema = schemars::schema_for!(spec::WorkflowSpec).to_value();
    add_connectors(&mut schema, catalog);
    if let Some(obj) = schema.as_object_mut() {
        obj.insert(
            "$id".into(),
            "https://hookflow.dev/schema/workflow.schema.json".into(),
        );
        obj.insert("title".into(), "hookflow workflow".into());
        obj.insert(
            "description".into(),
            "A hookflow workflow file: a webhook trigger and the steps that filter, transform and forward its events.".into(),
        );
    }
    schema
}

/// Complete `uses:`, `with:` and `provider:` from the catalog.
fn add_connectors(schema: &mut serde_json::Value, catalog: &connector::Catalog) {
    use serde_json::{json, Value};
    let (uses, with_defs) = connector::schema_parts(catalog);
    let mut providers: Vec<Value> = compile::PROVIDERS.iter().map(|p| json!(p)).collect();
    providers.extend(
        catalog
            .iter()
            .filter(|c| c.spec.webhook.is_some())
            .map(|c| json!(c.name)),
    );
    let Some(defs) = schema.get_mut("$defs").and_then(Value::as_object_mut) else {
        return;
    };
    if let Some(p) = defs
        .get_mut("WebhookSpec")
        .and_then(|w| w.pointer_mut("/properties/provider"))
    {
        let description = p.get("description").cloned().unwrap_or(Value::Null);
        *p = json!({ "description": description, "enum": providers });
    }
    let mut conditional = Vec::new();
    for u in &uses {
        let Some(name) = u.get("const").and_then(Value::as_str) else {
            continue;
        };
        conditional.push(json!({
            "if": { "properties": { "uses": { "const": name } }, "required": ["uses"] },
            "then": { "properties": { "with": { "$ref": format!("#/$defs/with.{name}") } } }
        }));
    }
    for (k, v) in with_defs {
        defs.insert(k, v);
    }
    let Some(step) = defs.get_mut("StepSpec").and_then(Value::as_object_mut) else {
        return;
    };
    if !uses.is_empty() {
        if let Some(u) = step.get_mut("properties").and_then(|p| p.get_mut("uses")) {
            let description = u.get("description").cloned().unwrap_or(Value::Null);
            *u = json!({ "description": description, "anyOf": uses });
        }
        step.insert("allOf".into(), Value::Array(conditional));
    }
}
