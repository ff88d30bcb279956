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
use crate::step::Step;
use std::path::PathBuf;
use std::time::Duration;

/// A compiled, ready-to-run workflow. Immutable: a changed file becomes a
/// new `Workflow` with a new version.
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
    /// Values read from the environment: blanked out of all history.
    pub secrets: Vec<String>,
}

#[derive(Debug)]
pub struct Verify {
    pub scheme: crate::signature::Scheme,
    pub secret: Template,
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
