//! The serde mirror of a workflow file (SPEC §3). Plain data with positions;
//! `compile.rs` checks it and turns it into the runtime [`super::Workflow`].
//! Every struct here is strict: a key it does not list is reported (with a
//! "did you mean" hint) by the YAML reader.

use super::yaml::{Ordered, Spanned, YNode};
use schemars::JsonSchema;
use serde::Deserialize;

#[derive(Debug, Deserialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct WorkflowSpec {
    /// Unique name, `[a-z0-9_-]+`; default: the file name.
    pub name: Option<Spanned<String>>,
    pub description: Option<String>,
    /// Default true.
    pub enabled: Option<bool>,
    pub trigger: Spanned<TriggerSpec>,
    #[serde(default)]
    pub steps: Vec<Spanned<StepSpec>>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct TriggerSpec {
    pub webhook: Spanned<WebhookSpec>,
    /// The provider's event types that start a run (`provider:` says where
    /// the type is); `*` matches any run of characters, e.g. `invoice.*`.
    pub events: Option<Spanned<Vec<Spanned<String>>>>,
    /// Condition (SPEC §4): no run is created when it does not hold.
    pub when: Option<Spanned<YNode>>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct WebhookSpec {
    /// Served at `/hooks<path>`, e.g. `/stripe`.
    pub path: Spanned<String>,
    /// Default `[POST]`.
    pub methods: Option<Vec<Spanned<String>>>,
    /// A provider preset (SPEC §5): stripe, github, shopify, slack,
    /// standard, gitlab, twilio, linear, hubspot, or a connector that
    /// carries a `webhook:` preset. Sets the signature scheme and its
    /// secret variable, the dedupe key, the event type and the summary;
    /// `verify` and `dedupe` written here win.
    pub provider: Option<Spanned<String>>,
    pub verify: Option<Spanned<VerifySpec>>,
    pub dedupe: Option<Spanned<DedupeSpec>>,
    /// With a `respond` step: how long the sender waits for it before it
    /// gets the usual `202`. Duration, default `10s`.
    pub respond_timeout: Option<Spanned<String>>,
}

/// Exactly one signature scheme (SPEC §5).
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum VerifySpec {
    Stripe(TimedSecretSpec),
    Github(SecretSpec),
    Shopify(SecretSpec),
    Slack(TimedSecretSpec),
    Standard(TimedSecretSpec),
    Hmac(HmacSpec),
    /// `X-Gitlab-Token` equals the secret token.
    Gitlab(SecretSpec),
    /// `X-Twilio-Signature`; the secret is the account's auth token.
    Twilio(UrlSecretSpec),
    /// `Linear-Signature`, and the body's `webhookTimestamp` within the
    /// tolerance (default 60s).
    Linear(TimedSecretSpec),
    /// `X-HubSpot-Signature-v3`; the secret is the app's client secret.
    Hubspot(UrlTimedSecretSpec),
}

/// A secret and the public URL the sender signs (default: built from the
/// request's `Host` header and path).
#[derive(Debug, Deserialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct UrlSecretSpec {
    pub secret: Spanned<String>,
    /// The URL the sender calls, e.g. `https://hooks.example.com/hooks/sms`.
    pub url: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct UrlTimedSecretSpec {
    pub secret: Spanned<String>,
    pub url: Option<Spanned<String>>,
    pub tolerance: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct SecretSpec {
    pub secret: Spanned<String>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct TimedSecretSpec {
    pub secret: Spanned<String>,
    pub tolerance: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct HmacSpec {
    pub secret: Spanned<String>,
    pub header: Spanned<String>,
    pub algorithm: Option<Spanned<HmacAlgorithm>>,
    pub encoding: Option<Spanned<HmacEncoding>>,
    pub prefix: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum HmacAlgorithm {
    Sha1,
    Sha256,
    Sha512,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum HmacEncoding {
    Hex,
    Base64,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct DedupeSpec {
    /// Template, e.g. `{{ $.event.id }}`.
    pub key: Spanned<String>,
    /// Duration, default `3d`.
    pub window: Option<Spanned<String>>,
}

/// One step. The kinds are explicit optional fields; `compile` checks that
/// exactly one is present.
#[derive(Debug, Deserialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct StepSpec {
    /// `[a-z][a-z0-9_]*`, unique in the workflow (nested steps included).
    pub id: Spanned<String>,
    /// Condition: when it does not hold the step is skipped.
    #[serde(rename = "if")]
    pub if_: Option<Spanned<YNode>>,
    /// Condition: when it does not hold the run ends `filtered` (inside a
    /// `for_each`: the item ends `filtered`).
    pub filter: Option<Spanned<YNode>>,
    pub transform: Option<Spanned<TransformSpec>>,
    pub http: Option<Spanned<HttpSpec>>,
    /// A connector action, `connector.action` (SPEC §9).
    pub uses: Option<Spanned<String>>,
    /// The action's parameters.
    #[serde(rename = "with")]
    pub with_: Option<Spanned<YNode>>,
    /// The first case whose `when` holds runs its steps; else `default`.
    pub switch: Option<Spanned<SwitchSpec>>,
    /// Runs `steps` once per item of this array (a template such as
    /// `{{ $.event.line_items }}`); inside, `$.item` and `$.index`.
    pub for_each: Option<Spanned<YNode>>,
    /// With `for_each`: items run at once; default 1 (in order).
    pub concurrency: Option<Spanned<u32>>,
    /// With `for_each`: more items fail the step; default 1000.
    pub max_items: Option<Spanned<u32>>,
    /// With `for_each`: the steps run for each item.
    pub steps: Option<Spanned<Vec<Spanned<StepSpec>>>>,
    /// Wait durably: a duration (`10m`) or `{ until: "<RFC 3339 time>" }`.
    /// Top level only.
    #[schemars(with = "Option<DelaySchema>")]
    pub delay: Option<Spanned<YNode>>,
    /// The answer to the inbound request (the sender waits for it).
    /// Top level only.
    pub respond: Option<Spanned<RespondSpec>>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct SwitchSpec {
    /// Tried in order; the first whose `when` holds runs.
    pub cases: Option<Vec<Spanned<CaseSpec>>>,
    /// Runs when no case holds; without it the step is skipped.
    pub default: Option<Spanned<Vec<Spanned<StepSpec>>>>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct CaseSpec {
    /// Condition (SPEC §4).
    pub when: Spanned<YNode>,
    pub steps: Spanned<Vec<Spanned<StepSpec>>>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct RespondSpec {
    /// 200–599, or a template giving one; default 200.
    #[schemars(with = "Option<StatusOrTemplate>")]
    pub status: Option<Spanned<YNode>>,
    #[serde(default)]
    pub headers: Ordered<Spanned<String>>,
    /// Any value; strings may hold templates. Text is sent as
    /// `text/plain`, anything else as JSON.
    pub body: Option<Spanned<YNode>>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct TransformSpec {
    /// Inline Rhai.
    pub script: Option<Spanned<String>>,
    /// A Rhai file under the scripts folder.
    pub file: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct HttpSpec {
    pub method: Option<Spanned<String>>,
    pub url: Spanned<String>,
    #[serde(default)]
    pub query: Ordered<Spanned<String>>,
    #[serde(default)]
    pub headers: Ordered<Spanned<String>>,
    /// Any value; strings may hold templates.
    pub body: Option<Spanned<YNode>>,
    pub format: Option<BodyFormat>,
    /// Duration, default `10s`.
    pub timeout: Option<Spanned<String>>,
    pub retry: Option<Spanned<RetrySpec>>,
    /// Statuses that count as success, e.g. `["2xx", 404]`; default `["2xx"]`.
    #[schemars(with = "Option<Vec<StatusOrClass>>")]
    pub success: Option<Vec<Spanned<String>>>,
    pub follow_redirects: Option<bool>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum BodyFormat {
    #[default]
    Json,
    Form,
    Text,
}

#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct RetrySpec {
    /// Every attempt counts, the first included; default 6.
    pub attempts: Option<Spanned<u32>>,
    pub backoff: Option<Spanned<String>>,
    pub max_backoff: Option<Spanned<String>>,
}

/// Only for the schema: a status (`404`) or a class (`"2xx"`).
#[derive(JsonSchema)]
#[serde(untagged)]
#[allow(dead_code)] // describes the YAML for editors; never constructed
enum StatusOrClass {
    Status(u16),
    Class(String),
}

/// Only for the schema: a `delay`.
#[derive(JsonSchema)]
#[serde(untagged)]
#[allow(dead_code)] // describes the YAML for editors; never constructed
enum DelaySchema {
    /// A duration: `500ms`, `10s`, `5m`, `24h`, `7d`.
    For(String),
    Until(UntilSchema),
}

#[derive(JsonSchema)]
#[schemars(deny_unknown_fields)]
#[allow(dead_code)] // describes the YAML for editors; never constructed
struct UntilSchema {
    /// An RFC 3339 time, usually a template: `{{ $.event.send_at }}`.
    until: String,
}

/// Only for the schema: a status (`201`) or a template giving one.
#[derive(JsonSchema)]
#[serde(untagged)]
#[allow(dead_code)] // describes the YAML for editors; never constructed
enum StatusOrTemplate {
    Status(u16),
    Template(String),
}
