//! The serde mirror of a connector file (SPEC §9), read by the same strict
//! YAML reader as workflows: every unknown key is reported with a hint,
//! and every value keeps its position for later checks.

use crate::workflow::spec::{BodyFormat, DedupeSpec, RetrySpec, VerifySpec};
use crate::workflow::yaml::{Ordered, Spanned, YNode};
use schemars::JsonSchema;
use serde::de::{self, MapAccess, Visitor};
use serde::Deserialize;
use std::fmt;
use std::marker::PhantomData;

#[derive(Debug, Deserialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct ConnectorSpec {
    /// The name workflows use, `uses: NAME.action`: a-z, 0-9 and `_`,
    /// starting with a letter. Default: the file name.
    pub connector: Option<Spanned<String>>,
    pub description: Option<String>,
    /// A link to the provider's API reference.
    pub docs: Option<String>,
    /// What every action's `path` goes under, e.g. `https://slack.com/api`.
    /// The variable `<NAME>_BASE_URL` (the name upper-cased), when set,
    /// replaces it.
    pub base_url: Option<Spanned<String>>,
    /// Headers every action sends (an action's own win).
    #[serde(default)]
    pub headers: Ordered<Spanned<String>>,
    /// How the connector proves who it is; secrets are `{{ env.NAME }}`.
    pub auth: Option<Spanned<AuthSpec>>,
    /// The actions workflows call with `uses: NAME.action`.
    #[serde(default)]
    pub actions: Keyed<Spanned<ActionSpec>>,
    /// The provider's inbound preset, for `trigger.webhook.provider: NAME`.
    pub webhook: Option<Spanned<WebhookPresetSpec>>,
}

/// Exactly one way to authenticate.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum AuthSpec {
    /// `Authorization: Bearer <token>`.
    Bearer(Spanned<String>),
    /// `Authorization: Basic base64(user:password)`.
    Basic(BasicSpec),
    /// A header of the provider's own, e.g. `X-Api-Key`.
    Header(HeaderAuthSpec),
    /// An OAuth2 access token, fetched with the refresh-token grant (or
    /// client credentials without a refresh token) and cached in the store.
    Oauth2(OAuth2Spec),
}

#[derive(Debug, Deserialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct BasicSpec {
    pub user: Spanned<String>,
    pub password: Spanned<String>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct HeaderAuthSpec {
    pub name: Spanned<String>,
    pub value: Spanned<String>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct OAuth2Spec {
    /// The token endpoint. The variable `<NAME>_TOKEN_URL`, when set,
    /// replaces it.
    pub token_url: Spanned<String>,
    pub client_id: Spanned<String>,
    pub client_secret: Spanned<String>,
    /// Without one, the client-credentials grant is used.
    pub refresh_token: Option<Spanned<String>>,
    #[serde(default)]
    pub scopes: Vec<Spanned<String>>,
    /// How the client authenticates to the token endpoint: `body` (form
    /// fields, the default) or `basic` (HTTP Basic).
    pub client_auth: Option<Spanned<ClientAuthSpec>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum ClientAuthSpec {
    Body,
    Basic,
}

/// An action's own auth: `none` sends no credentials (an incoming
/// webhook, whose URL is the credential).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum ActionAuthSpec {
    None,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct ActionSpec {
    pub description: Option<String>,
    /// A link to this endpoint in the provider's API reference.
    pub docs: Option<String>,
    pub auth: Option<Spanned<ActionAuthSpec>>,
    /// What `with:` takes; templates read them as `$.params.NAME`.
    #[serde(default)]
    pub params: Keyed<Spanned<ParamSpec>>,
    pub http: Spanned<ActionHttpSpec>,
    /// A 2xx answer that fails this condition (on `$.response`) fails the
    /// step.
    pub ok_when: Option<Spanned<YNode>>,
    /// The step's error when the answer is a failure, e.g.
    /// `{{ $.response.body.error }}`.
    pub error: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct ParamSpec {
    /// string (default), number, integer, boolean, array, object or any.
    #[serde(rename = "type")]
    #[schemars(with = "Option<ParamTypeName>")]
    pub type_: Option<Spanned<String>>,
    pub required: Option<bool>,
    pub description: Option<String>,
    /// The only values allowed.
    #[serde(rename = "enum")]
    pub enum_: Option<Vec<Spanned<YNode>>>,
    /// The value when `with:` leaves the parameter out.
    pub default: Option<Spanned<YNode>>,
}

/// Only for the schema: the names of parameter types.
#[derive(JsonSchema)]
#[serde(rename_all = "lowercase")]
#[allow(dead_code)] // describes the YAML for editors; never constructed
enum ParamTypeName {
    String,
    Number,
    Integer,
    Boolean,
    Array,
    Object,
    Any,
}

/// An `http` step (SPEC §6) without the URL: `path` goes under the
/// connector's `base_url`, or `url` is the whole URL.
#[derive(Debug, Deserialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct ActionHttpSpec {
    pub method: Option<Spanned<String>>,
    pub path: Option<Spanned<String>>,
    pub url: Option<Spanned<String>>,
    #[serde(default)]
    pub query: Ordered<Spanned<String>>,
    #[serde(default)]
    pub headers: Ordered<Spanned<String>>,
    pub body: Option<Spanned<YNode>>,
    pub format: Option<BodyFormat>,
    pub timeout: Option<Spanned<String>>,
    pub retry: Option<Spanned<RetrySpec>>,
    #[schemars(with = "Option<Vec<serde_json::Value>>")]
    pub success: Option<Vec<Spanned<String>>>,
    pub follow_redirects: Option<bool>,
}

/// A provider's inbound preset (SPEC §5), for providers the project does
/// not ship.
#[derive(Debug, Deserialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct WebhookPresetSpec {
    pub verify: Option<Spanned<VerifySpec>>,
    pub dedupe: Option<Spanned<DedupeSpec>>,
    /// Where the event type is, e.g. `{{ $.event.type }}`.
    pub event_type: Option<Spanned<String>>,
    /// One line for run lists, e.g. `{{ $.event.type }} {{ $.event.id }}`.
    pub summary: Option<Spanned<String>>,
}

/// A mapping whose keys keep their positions, in the order written.
#[derive(Debug)]
pub struct Keyed<V>(pub Vec<(Spanned<String>, V)>);

impl<V> Default for Keyed<V> {
    fn default() -> Self {
        Keyed(Vec::new())
    }
}

impl<V> Keyed<V> {
    pub fn get(&self, key: &str) -> Option<&V> {
        self.0.iter().find(|(k, _)| k.value == key).map(|(_, v)| v)
    }

    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.0.iter().map(|(k, _)| k.value.as_str())
    }
}

impl<'de, V: Deserialize<'de>> Deserialize<'de> for Keyed<V> {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Vis<V>(PhantomData<V>);
        impl<'de, V: Deserialize<'de>> Visitor<'de> for Vis<V> {
            type Value = Keyed<V>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a mapping")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Keyed<V>, A::Error> {
                let mut entries = Vec::new();
                while let Some(k) = map.next_key::<Spanned<String>>()? {
                    entries.push((k, map.next_value()?));
                }
                Ok(Keyed(entries))
            }
        }
        d.deserialize_map(Vis(PhantomData))
    }
}

impl<V: JsonSchema> JsonSchema for Keyed<V> {
    fn inline_schema() -> bool {
        true
    }

    fn schema_name() -> std::borrow::Cow<'static, str> {
        format!("Keyed_{}", V::schema_name()).into()
    }

    fn json_schema(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "type": "object",
            "additionalProperties": generator.subschema_for::<V>(),
        })
    }
}
