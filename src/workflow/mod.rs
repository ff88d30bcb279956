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
use std::fmt;
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
    /// Redacts this workflow's secrets (the `env` values it reads and its
    /// verify secret) from everything stored and shown; built once per
    /// version.
    pub redactor: Redactor,
}

pub struct Verify {
    pub scheme: crate::signature::Scheme,
    pub secret: Template,
}

impl fmt::Debug for Verify {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The secret may be written in the file: its template is not shown.
        f.debug_struct("Verify")
            .field("scheme", &self.scheme)
            .field("secret", &Secret::default())
            .finish()
    }
}

#[derive(Debug)]
pub struct Dedupe {
    pub key: Template,
    pub window: Duration,
}

pub const DEFAULT_DEDUPE_WINDOW: Duration = Duration::from_secs(3 * 24 * 3600);

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
