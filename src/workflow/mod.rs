//! Workflows: `spec.rs` mirrors the YAML, `compile.rs` checks it and builds
//! the runtime [`Workflow`], `registry.rs` holds the loaded set (path and
//! method → workflows) and every version a run may still need.

pub mod compile;
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
}

// By hand, so the key never reaches a debug print.
impl std::fmt::Debug for Verify {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Verify")
            .field("scheme", &self.scheme)
            .field("secret", &crate::record::REDACTED)
            .field("fallback", &self.fallback)
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
/// reads (`spec.rs`), so it cannot drift from what `validate` accepts.
pub fn schema() -> serde_json::Value {
    let mut schema = schemars::schema_for!(spec::WorkflowSpec).to_value();
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
