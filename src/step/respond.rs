//! The `respond` step (SPEC §6.1): the answer to the inbound request, for
//! senders that wait for one (a Slack slash command, a form post). The
//! step renders the answer (pure: [`Respond::render`]); the executor hands
//! it to the request that waits for it ([`crate::run::respond`]), if one
//! still does. Its output is what was rendered: `{"status", "headers",
//! "body"}`.

use crate::expr::template::{Template, ValueTemplate};
use serde_json::{json, Map, Value};

/// The status when none is given.
pub const DEFAULT_STATUS: u16 = 200;

#[derive(Debug, Clone)]
pub struct Respond {
    pub status: ValueTemplate,
    pub headers: Vec<(String, Template)>,
    pub body: Option<ValueTemplate>,
}

/// A rendered answer, ready to send to the waiting sender.
#[derive(Debug, Clone, PartialEq)]
pub struct Answer {
    pub status: u16,
    /// As written, plus a `Content-Type` for the body when none is given.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// The body as the step's output shows it.
    pub shown: Value,
}

/// Whether `status` may answer a webhook (1xx are not final answers).
pub fn status_ok(status: u64) -> bool {
    (200..=599).contains(&status)
}

impl Respond {
    /// Render the answer for this run context.
    pub fn render(&self, ctx: &Value) -> Result<Answer, String> {
        let status = match self.status.render(ctx) {
            Value::Number(n) => n.as_u64(),
            Value::String(s) => s.trim().parse::<u64>().ok(),
            _ => None,
        }
        .filter(|s| status_ok(*s))
        .and_then(|s| u16::try_from(s).ok())
        .ok_or_else(|| {
            format!(
                "status must be a number from 200 to 599, got {}",
                self.status.render(ctx)
            )
        })?;
        let mut headers = Vec::with_capacity(self.headers.len() + 1);
        for (name, t) in &self.headers {
            let value = t.render_text(ctx);
            if value.contains(['\r', '\n']) || axum::http::HeaderValue::from_str(&value).is_err() {
                return Err(format!(
                    "header `{name}` would hold a line break or characters a header cannot carry; nothing was answered from this step"
                ));
            }
            headers.push((name.clone(), value));
        }
        let shown = self.body.as_ref().map_or(Value::Null, |b| b.render(ctx));
        let (body, content_type) = match &shown {
            Value::Null => (Vec::new(), None),
            Value::String(s) => (s.clone().into_bytes(), Some("text/plain; charset=utf-8")),
            other => (
                serde_json::to_vec(other)
                    .map_err(|e| format!("body cannot be written as JSON: {e}"))?,
                Some("application/json"),
            ),
        };
        let typed = headers
            .iter()
            .any(|(k, _)| k.eq_ignore_ascii_case("content-type"));
        if let (Some(t), false) = (content_type, typed) {
            headers.push(("Content-Type".to_string(), t.to_string()));
        }
        Ok(Answer {
            status,
            headers,
            body,
            shown,
        })
    }
}

impl Answer {
    /// The step's output.
    pub fn output(&self) -> Value {
        let headers: Map<String, Value> = self
            .headers
            .iter()
            .map(|(k, v)| (k.clone(), Value::String(v.clone())))
            .collect();
        json!({ "status": self.status, "headers": headers, "body": self.shown })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::expr::template::TemplateEnv;

    fn respond(
        status: ValueTemplate,
        headers: &[(&str, &str)],
        body: Option<ValueTemplate>,
    ) -> Respond {
        let mut secrets = Vec::new();
        let mut env = TemplateEnv {
            env: &|_: &str| None,
            secrets: &mut secrets,
        };
        let headers = headers
            .iter()
            .map(|(k, v)| {
                (
                    k.to_string(),
                    Template::compile(v, &mut env).expect("template"),
                )
            })
            .collect();
        Respond {
            status,
            headers,
            body,
        }
    }

    fn lit(v: Value) -> ValueTemplate {
        ValueTemplate::Lit(v)
    }

    #[test]
    fn text_and_json_bodies_get_their_type_unless_one_is_given() {
        let ctx = json!({});
        let a = respond(lit(json!(201)), &[], Some(lit(json!("hi"))))
            .render(&ctx)
            .expect("renders");
        assert_eq!(a.status, 201);
        assert_eq!(a.body, b"hi");
        assert_eq!(
            a.headers,
            [(
                "Content-Type".to_string(),
                "text/plain; charset=utf-8".to_string()
            )]
        );
        let a = respond(
            lit(json!("202")),
            &[("content-type", "application/vnd.x+json")],
            Some(lit(json!({"a": 1}))),
        )
        .render(&ctx)
        .expect("renders");
        assert_eq!((a.status, a.body.as_slice()), (202, &b"{\"a\":1}"[..]));
        assert_eq!(
            a.headers.len(),
            1,
            "the given type is kept: {:?}",
            a.headers
        );
        assert_eq!(a.output()["body"], json!({"a": 1}));
        let a = respond(lit(json!(204)), &[], None)
            .render(&ctx)
            .expect("renders");
        assert!(a.body.is_empty() && a.headers.is_empty());
    }

    #[test]
    fn bad_statuses_and_header_values_answer_nothing() {
        let ctx = json!({"event": {"v": "a\r\nSet-Cookie: x"}});
        for status in [json!(100), json!(600), json!("ok"), json!(null)] {
            let e = respond(lit(status.clone()), &[], None)
                .render(&ctx)
                .expect_err("refused");
            assert!(e.contains("from 200 to 599"), "{status}: {e}");
        }
        let e = respond(lit(json!(200)), &[("X-Echo", "{{ $.event.v }}")], None)
            .render(&ctx)
            .expect_err("refused");
        assert!(e.contains("header `X-Echo`"), "{e}");
    }
}
