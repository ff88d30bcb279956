//! The serde mirror of a workflow file (SPEC §3). Plain data with positions;
//! `compile.rs` checks it and turns it into the runtime [`super::Workflow`].
//! Every struct here is strict: a key it does not list is reported (with a
//! "did you mean" hint) by the YAML reader.

use super::yaml::{Ordered, Spanned, YNode};
use serde::Deserialize;

#[derive(Debug, Deserialize)]
pub struct WorkflowSpec {
    pub name: Option<Spanned<String>>,
    pub description: Option<String>,
    pub enabled: Option<bool>,
    pub trigger: Spanned<TriggerSpec>,
    #[serde(default)]
    pub steps: Vec<Spanned<StepSpec>>,
}

#[derive(Debug, Deserialize)]
pub struct TriggerSpec {
    pub webhook: Spanned<WebhookSpec>,
    pub when: Option<Spanned<YNode>>,
}

#[derive(Debug, Deserialize)]
pub struct WebhookSpec {
    pub path: Spanned<String>,
    pub methods: Option<Vec<Spanned<String>>>,
    pub verify: Option<Spanned<VerifySpec>>,
    pub dedupe: Option<Spanned<DedupeSpec>>,
}

/// Exactly one signature scheme (SPEC §5).
#[derive(Debug, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum VerifySpec {
    Stripe(TimedSecretSpec),
    Github(SecretSpec),
    Shopify(SecretSpec),
    Slack(TimedSecretSpec),
    Standard(TimedSecretSpec),
    Hmac(HmacSpec),
}

#[derive(Debug, Deserialize)]
pub struct SecretSpec {
    pub secret: Spanned<String>,
}

#[derive(Debug, Deserialize)]
pub struct TimedSecretSpec {
    pub secret: Spanned<String>,
    pub tolerance: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
pub struct HmacSpec {
    pub secret: Spanned<String>,
    pub header: Spanned<String>,
    pub algorithm: Option<Spanned<HmacAlgorithm>>,
    pub encoding: Option<Spanned<HmacEncoding>>,
    pub prefix: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum HmacAlgorithm {
    Sha1,
    Sha256,
    Sha512,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum HmacEncoding {
    Hex,
    Base64,
}

#[derive(Debug, Deserialize)]
pub struct DedupeSpec {
    pub key: Spanned<String>,
    pub window: Option<Spanned<String>>,
}

/// One step. The kinds are explicit optional fields; `compile` checks that
/// exactly one is present.
#[derive(Debug, Deserialize)]
pub struct StepSpec {
    pub id: Spanned<String>,
    #[serde(rename = "if")]
    pub if_: Option<Spanned<YNode>>,
    pub filter: Option<Spanned<YNode>>,
    pub transform: Option<Spanned<TransformSpec>>,
    pub http: Option<Spanned<HttpSpec>>,
}

#[derive(Debug, Deserialize)]
pub struct TransformSpec {
    pub script: Option<Spanned<String>>,
    pub file: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
pub struct HttpSpec {
    pub method: Option<Spanned<String>>,
    pub url: Spanned<String>,
    #[serde(default)]
    pub query: Ordered<Spanned<String>>,
    #[serde(default)]
    pub headers: Ordered<Spanned<String>>,
    pub body: Option<Spanned<YNode>>,
    pub format: Option<BodyFormat>,
    pub timeout: Option<Spanned<String>>,
    pub retry: Option<Spanned<RetrySpec>>,
    pub success: Option<Vec<Spanned<String>>>,
    pub follow_redirects: Option<bool>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum BodyFormat {
    #[default]
    Json,
    Form,
    Text,
}

#[derive(Debug, Deserialize)]
pub struct RetrySpec {
    pub attempts: Option<Spanned<u32>>,
    pub backoff: Option<Spanned<String>>,
    pub max_backoff: Option<Spanned<String>>,
}
