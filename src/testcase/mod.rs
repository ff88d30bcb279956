//! Workflow test cases (SPEC §7): the `NAME.test.yaml` format, running a
//! case through the real executor with outbound HTTP answered by mocks,
//! comparing what happened with what was expected, and turning a stored
//! run back into a test case.

pub mod compare;
pub mod export;
pub mod runner;

use crate::workflow::yaml::{Spanned, YNode};
use serde::Deserialize;
use std::collections::BTreeMap;

/// A test suite file.
#[derive(Debug, Deserialize)]
pub struct SuiteSpec {
    /// The name of the workflow under test.
    pub workflow: Spanned<String>,
    pub cases: Vec<Spanned<CaseSpec>>,
}

#[derive(Debug, Deserialize)]
pub struct CaseSpec {
    pub name: String,
    /// Environment variables for this case (over the process environment).
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Check the signature too (skipped by default).
    #[serde(default)]
    pub verify: bool,
    #[serde(default)]
    pub request: RequestSpec,
    /// Answers for `http` steps by step id: one answer, or a list (one per
    /// attempt, the last repeating). For a step inside a `for_each`, a list
    /// has one entry per item (an answer, or a list of answers per
    /// attempt), the last serving the items after it.
    #[serde(default)]
    pub mock: BTreeMap<String, Spanned<YNode>>,
    pub expect: ExpectSpec,
}

#[derive(Debug, Default, Deserialize)]
pub struct RequestSpec {
    pub method: Option<String>,
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    #[serde(default)]
    pub query: BTreeMap<String, String>,
    /// The event as YAML/JSON (sent as a JSON body).
    pub event: Option<Spanned<YNode>>,
    /// A file with the body, relative to the test file.
    pub event_file: Option<Spanned<String>>,
    /// A raw body (with the content type from `headers`).
    pub body: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
pub struct ExpectSpec {
    /// A run status, or `unmatched` / `rejected` when no run is created.
    pub status: Option<Spanned<String>>,
    #[serde(default)]
    pub steps: BTreeMap<String, Spanned<StepExpect>>,
}

#[derive(Debug, Default, Deserialize)]
pub struct StepExpect {
    pub status: Option<String>,
    /// The whole output (deep equality).
    pub output: Option<Spanned<YNode>>,
    /// A subset the output must contain.
    pub contains: Option<Spanned<YNode>>,
    /// Text the step's error must contain.
    pub error: Option<String>,
    /// The last outbound request of an `http` step.
    pub request: Option<RequestExpect>,
    /// A `switch`: the branch it took (a case index from 0, `default`, or
    /// `null` when none).
    pub branch: Option<Spanned<YNode>>,
    /// A `for_each`: one expectation per item, in order (as many as there
    /// are items).
    pub items: Option<Spanned<Vec<Spanned<ItemExpect>>>>,
}

/// What one item of a `for_each` must show.
#[derive(Debug, Default, Deserialize)]
pub struct ItemExpect {
    pub status: Option<String>,
    /// The item's output: its last step's (deep equality).
    pub output: Option<Spanned<YNode>>,
    /// The item's steps, by id.
    #[serde(default)]
    pub steps: BTreeMap<String, Spanned<StepExpect>>,
}

#[derive(Debug, Default, Deserialize)]
pub struct RequestExpect {
    pub method: Option<String>,
    pub url: Option<String>,
    /// Headers that must be present with these values (names ignore case).
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// The body (deep equality; JSON bodies compare as JSON).
    pub body: Option<Spanned<YNode>>,
}
