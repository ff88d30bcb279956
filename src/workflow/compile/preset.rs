//! Provider presets (SPEC §5): `trigger.webhook.provider` names a provider
//! the project knows (the table below) or a connector that carries a
//! `webhook:` preset, and stands in for `verify`, `dedupe`, the event type
//! that `trigger.events` matches, and the run summary. What the workflow
//! writes itself (`verify`, `dedupe`) wins.

use super::{dedupe, verify, Cx};
use crate::expr::template::Template;
use crate::workflow::connector::{Connector, Lookup};
use crate::workflow::spec::{
    SecretSpec, TimedSecretSpec, UrlSecretSpec, UrlTimedSecretSpec, VerifySpec,
};
use crate::workflow::yaml::{did_you_mean, Pos, Spanned};
use crate::workflow::{Dedupe, Events, Verify, DEFAULT_DEDUPE_WINDOW};
use std::sync::Arc;

/// The providers the project knows, as `provider:` names them.
pub const PROVIDERS: [&str; 9] = [
    "stripe", "github", "shopify", "slack", "standard", "gitlab", "twilio", "linear", "hubspot",
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Provider {
    Stripe,
    Github,
    Shopify,
    Slack,
    Standard,
    Gitlab,
    Twilio,
    Linear,
    Hubspot,
}

impl Provider {
    const ALL: [Provider; 9] = [
        Provider::Stripe,
        Provider::Github,
        Provider::Shopify,
        Provider::Slack,
        Provider::Standard,
        Provider::Gitlab,
        Provider::Twilio,
        Provider::Linear,
        Provider::Hubspot,
    ];

    fn parse(s: &str) -> Option<Provider> {
        Provider::ALL.into_iter().find(|p| p.name() == s)
    }

    fn name(self) -> &'static str {
        match self {
            Provider::Stripe => "stripe",
            Provider::Github => "github",
            Provider::Shopify => "shopify",
            Provider::Slack => "slack",
            Provider::Standard => "standard",
            Provider::Gitlab => "gitlab",
            Provider::Twilio => "twilio",
            Provider::Linear => "linear",
            Provider::Hubspot => "hubspot",
        }
    }

    /// The variable that conventionally holds the provider's secret.
    fn variable(self) -> &'static str {
        match self {
            Provider::Stripe => "STRIPE_WEBHOOK_SECRET",
            Provider::Github => "GITHUB_WEBHOOK_SECRET",
            Provider::Shopify => "SHOPIFY_WEBHOOK_SECRET",
            Provider::Slack => "SLACK_SIGNING_SECRET",
            Provider::Standard => "WEBHOOK_SECRET",
            Provider::Gitlab => "GITLAB_WEBHOOK_TOKEN",
            Provider::Twilio => "TWILIO_AUTH_TOKEN",
            Provider::Linear => "LINEAR_WEBHOOK_SECRET",
            Provider::Hubspot => "HUBSPOT_CLIENT_SECRET",
        }
    }

    /// The scheme, as if written under `verify:` with this secret.
    fn scheme(self, secret: Spanned<String>) -> VerifySpec {
        let timed = |secret| TimedSecretSpec {
            secret,
            tolerance: None,
        };
        match self {
            Provider::Stripe => VerifySpec::Stripe(timed(secret)),
            Provider::Github => VerifySpec::Github(SecretSpec { secret }),
            Provider::Shopify => VerifySpec::Shopify(SecretSpec { secret }),
            Provider::Slack => VerifySpec::Slack(timed(secret)),
            Provider::Standard => VerifySpec::Standard(timed(secret)),
            Provider::Gitlab => VerifySpec::Gitlab(SecretSpec { secret }),
            Provider::Twilio => VerifySpec::Twilio(UrlSecretSpec { secret, url: None }),
            Provider::Linear => VerifySpec::Linear(timed(secret)),
            Provider::Hubspot => VerifySpec::Hubspot(UrlTimedSecretSpec {
                secret,
                url: None,
                tolerance: None,
            }),
        }
    }

    /// Where the event type is (a template), when the provider sends one.
    fn event_type(self) -> Option<&'static str> {
        match self {
            Provider::Stripe | Provider::Standard | Provider::Linear => Some("{{ $.event.type }}"),
            Provider::Github => Some("{{ $.request.headers['x-github-event'] }}"),
            Provider::Shopify => Some("{{ $.request.headers['x-shopify-topic'] }}"),
            // The Events API's `event.type`, else the envelope's `type`
            // (`url_verification`), else a slash command's `command`.
            Provider::Slack => Some("{{ $.event.event.type ?? $.event.type ?? $.event.command }}"),
            Provider::Gitlab => Some("{{ $.request.headers['x-gitlab-event'] }}"),
            Provider::Twilio => None,
            Provider::Hubspot => Some("{{ $.event[0].subscriptionType }}"),
        }
    }

    /// The dedupe key (a template), when the provider gives one.
    fn dedupe(self) -> Option<&'static str> {
        match self {
            Provider::Stripe => Some("{{ $.event.id }}"),
            Provider::Github => Some("{{ $.request.headers['x-github-delivery'] }}"),
            Provider::Shopify => Some("{{ $.request.headers['x-shopify-webhook-id'] }}"),
            Provider::Slack => Some("{{ $.event.event_id }}"),
            Provider::Standard => Some("{{ $.request.headers['webhook-id'] }}"),
            Provider::Gitlab => Some("{{ $.request.headers['x-gitlab-event-uuid'] }}"),
            Provider::Twilio => Some("{{ $.request.headers['i-twilio-idempotency-token'] }}"),
            Provider::Linear => Some("{{ $.request.headers['linear-delivery'] }}"),
            Provider::Hubspot => None,
        }
    }

    /// The parts of the run summary.
    fn summary(self) -> &'static [&'static str] {
        match self {
            Provider::Stripe => &["{{ $.event.type }}", "{{ $.event.data.object.id }}"],
            Provider::Github => &[
                "{{ $.request.headers['x-github-event'] }}",
                "{{ $.event.action }}",
                "{{ $.event.repository.full_name }}",
            ],
            Provider::Shopify => &[
                "{{ $.request.headers['x-shopify-topic'] }}",
                "{{ $.request.headers['x-shopify-shop-domain'] }}",
            ],
            Provider::Slack => &["{{ $.event.event.type ?? $.event.type ?? $.event.command }}"],
            Provider::Standard => &["{{ $.event.type }}"],
            Provider::Gitlab => &[
                "{{ $.request.headers['x-gitlab-event'] }}",
                "{{ $.event.project.path_with_namespace }}",
            ],
            Provider::Twilio => &[
                "{{ $.event.SmsStatus ?? $.event.MessageStatus ?? $.event.CallStatus }}",
                "{{ $.event.From }}",
            ],
            Provider::Linear => &[
                "{{ $.event.type }}",
                "{{ $.event.action }}",
                "{{ $.event.data.identifier ?? $.event.data.id }}",
            ],
            Provider::Hubspot => &[
                "{{ $.event[0].subscriptionType }}",
                "{{ $.event[0].objectId }}",
            ],
        }
    }
}

/// A resolved `provider:`.
pub(super) enum Preset<'c> {
    Builtin(Provider, Pos),
    Connector(&'c Arc<Connector>, Pos),
}

/// What `provider:` names, or `None` (with the problem reported).
pub(super) fn resolve<'b>(cx: &mut Cx<'_, 'b>, p: &Spanned<String>) -> Option<Preset<'b>> {
    if let Some(b) = Provider::parse(&p.value) {
        return Some(Preset::Builtin(b, p.pos));
    }
    let catalog = cx.env.connectors;
    match catalog.lookup(&p.value) {
        Lookup::Found(c) if c.spec.webhook.is_some() => Some(Preset::Connector(c, p.pos)),
        Lookup::Found(c) => {
            cx.issue(
                p.pos,
                format!(
                    "provider: connector `{}` has no `webhook:` preset ({})",
                    p.value,
                    c.file.display()
                ),
            );
            None
        }
        Lookup::Invalid(file) => {
            cx.issue(
                p.pos,
                format!(
                    "provider: connector `{}` is invalid; see the problems reported in {}",
                    p.value,
                    file.display()
                ),
            );
            None
        }
        Lookup::Missing => {
            let mut known: Vec<&str> = PROVIDERS.to_vec();
            known.extend(
                catalog
                    .iter()
                    .filter(|c| c.spec.webhook.is_some())
                    .map(|c| c.name.as_str()),
            );
            let hint = match did_you_mean(&p.value, known.iter().copied()) {
                Some(c) => format!("; did you mean `{c}`?"),
                None => format!("; use one of: {}", known.join(", ")),
            };
            cx.issue(
                p.pos,
                format!("provider: unknown provider `{}`{hint}", p.value),
            );
            None
        }
    }
}

impl Preset<'_> {
    fn label(&self) -> String {
        match self {
            Preset::Builtin(p, _) => format!("provider `{}`", p.name()),
            Preset::Connector(c, _) => format!("provider `{}`", c.name),
        }
    }

    pub(super) fn verify(&self, cx: &mut Cx) -> Option<Verify> {
        match self {
            Preset::Builtin(p, pos) => {
                let var = p.variable();
                if cx.env.env.get(var).is_none() {
                    cx.issue(
                        *pos,
                        format!(
                            "provider: `{}` verifies with the secret in `{var}`, which is not set; set it to the endpoint's signing secret, or give the secret under `verify:`",
                            p.name()
                        ),
                    );
                    return None;
                }
                let secret = Spanned {
                    pos: *pos,
                    value: format!("{{{{ env.{var} }}}}"),
                };
                verify(
                    cx,
                    &Spanned {
                        pos: *pos,
                        value: p.scheme(secret),
                    },
                )
            }
            Preset::Connector(c, pos) => {
                let v = c.spec.webhook.as_ref()?.value.verify.as_ref()?;
                let label = self.label();
                cx.within(c, *pos, &label, |sub| verify(sub, v))
            }
        }
    }

    pub(super) fn dedupe(&self, cx: &mut Cx) -> Option<Dedupe> {
        match self {
            Preset::Builtin(p, pos) => {
                let key = cx.template(
                    &Spanned {
                        pos: *pos,
                        value: p.dedupe()?.to_string(),
                    },
                    "dedupe key",
                )?;
                Some(Dedupe {
                    key,
                    window: DEFAULT_DEDUPE_WINDOW,
                })
            }
            Preset::Connector(c, pos) => {
                let d = c.spec.webhook.as_ref()?.value.dedupe.as_ref()?;
                let label = self.label();
                cx.within(c, *pos, &label, |sub| dedupe(sub, d))
            }
        }
    }

    pub(super) fn summary(&self, cx: &mut Cx) -> Vec<Template> {
        match self {
            Preset::Builtin(p, pos) => p
                .summary()
                .iter()
                .filter_map(|t| {
                    cx.template(
                        &Spanned {
                            pos: *pos,
                            value: t.to_string(),
                        },
                        "summary",
                    )
                })
                .collect(),
            Preset::Connector(c, pos) => {
                let Some(s) = c
                    .spec
                    .webhook
                    .as_ref()
                    .and_then(|w| w.value.summary.as_ref())
                else {
                    return Vec::new();
                };
                let label = self.label();
                cx.within(c, *pos, &label, |sub| sub.template(s, "summary"))
                    .into_iter()
                    .collect()
            }
        }
    }
}

/// `trigger.events`: the types listed, matched against the preset's event
/// type.
pub(super) fn events(
    cx: &mut Cx,
    events: &Spanned<Vec<Spanned<String>>>,
    preset: Option<&Preset>,
) -> Option<Events> {
    if events.value.is_empty() {
        cx.issue(events.pos, "events: list at least one event type");
        return None;
    }
    let event_type = match preset {
        None => {
            cx.issue(
                events.pos,
                "events: there is no event type to match without `provider:` (or a connector's `webhook.event_type`); use `when:` instead",
            );
            return None;
        }
        Some(Preset::Builtin(p, _)) => match p.event_type() {
            Some(t) => cx.template(
                &Spanned {
                    pos: events.pos,
                    value: t.to_string(),
                },
                "events",
            )?,
            None => {
                cx.issue(
                    events.pos,
                    format!(
                        "events: `{}` webhooks carry no event type to match; use `when:` on the request instead",
                        p.name()
                    ),
                );
                return None;
            }
        },
        Some(preset @ Preset::Connector(c, pos)) => {
            let Some(t) = c
                .spec
                .webhook
                .as_ref()
                .and_then(|w| w.value.event_type.as_ref())
            else {
                cx.issue(
                    events.pos,
                    format!(
                        "events: connector `{}` gives no `webhook.event_type` to match; use `when:` instead",
                        c.name
                    ),
                );
                return None;
            };
            let label = preset.label();
            cx.within(c, *pos, &label, |sub| sub.template(t, "event_type"))?
        }
    };
    Some(Events {
        event_type,
        patterns: events.value.iter().map(|e| e.value.clone()).collect(),
    })
}
