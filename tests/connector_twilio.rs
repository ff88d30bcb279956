//! The Twilio connector (`connectors/twilio.yaml`) against Twilio's
//! stand-in (`tests/standins/twilio.rs`): an SMS from a number and from a
//! Messaging Service, a WhatsApp template message, each as Twilio's
//! Messages reference describes the request (form body, Basic auth, the
//! Account SID in the path), and the step's status, output and error for
//! Twilio's documented answers (201, 400 code 21211, 401 code 20003, 429
//! code 20429).

mod common;
#[path = "standins/twilio.rs"]
mod twilio;

use base64::Engine as _;
use common::connector::{step, Harness};
use common::standin::StandIn;
use common::Backend;
use serde_json::{json, Value};
use std::collections::BTreeMap;

const SMS: &str = r#"name: tell-customer
trigger:
  webhook: { path: /shipped }
steps:
  - id: sms
    uses: twilio.send_sms
    with:
      to: "{{ $.event.phone }}"
      from: "+14155552345"
      body: "Order {{ $.event.order }} has shipped"
"#;

const SMS_SERVICE: &str = r#"name: promo
trigger:
  webhook: { path: /promo }
steps:
  - id: sms
    uses: twilio.send_sms
    with:
      to: "{{ $.event.phone }}"
      messaging_service_sid: MGaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa
      media_url: https://demo.twilio.com/owl.png
      status_callback: https://example.com/twilio/status
      validity_period: 600
      send_as_mms: true
"#;

const WHATSAPP: &str = r#"name: appointment
trigger:
  webhook: { path: /booked }
steps:
  - id: remind
    uses: twilio.send_whatsapp
    with:
      to: "{{ $.event.phone }}"
      from: "+14155238886"
      content_sid: HXb5b62575e6e4ff6129ad7c8efe1f983e
      content_variables: { "1": "{{ $.event.date }}", "2": "{{ $.event.time }}" }
"#;

fn env(api: &StandIn) -> Vec<(&'static str, String)> {
    vec![
        ("TWILIO_ACCOUNT_SID", twilio::ACCOUNT_SID.to_string()),
        ("TWILIO_AUTH_TOKEN", twilio::AUTH_TOKEN.to_string()),
        ("TWILIO_BASE_URL", api.base.clone()),
    ]
}

fn serve(backend: Backend, workflow: &str, env: &[(&'static str, String)]) -> Harness {
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    Harness::start(backend, workflow, &env)
}

fn form(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn attempts(step: &Value) -> usize {
    step["attempts"].as_array().map_or(0, Vec::len)
}

both!(
    send_sms_posts_a_form_with_basic_auth_and_keeps_the_message,
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
);
async fn send_sms_posts_a_form_with_basic_auth_and_keeps_the_message(backend: Backend) {
    let api = StandIn::start(twilio::routes()).await;
    let h = serve(backend, SMS, &env(&api));
    let run = h
        .run(
            "/shipped",
            &json!({"phone": "+15558675310", "order": "A-17"}),
        )
        .await;
    assert_eq!(api.violations(), Vec::<String>::new());
    assert_eq!(run["status"], "succeeded", "{run}");
    let sms = step(&run, "sms");
    assert_eq!(sms["uses"], "twilio.send_sms");
    assert_eq!(sms["output"]["status"], 201);
    assert_eq!(sms["output"]["body"]["sid"], twilio::MESSAGE_SID);
    assert_eq!(sms["output"]["body"]["status"], "queued");
    assert_eq!(sms["output"]["body"]["to"], "+15558675310");

    // What Twilio received: the Account SID in the path, Basic auth, a
    // form with Twilio's field names and nothing the workflow left out.
    let got = api.requests_to(twilio::MESSAGES);
    assert_eq!(got.len(), 1);
    assert_eq!(
        got[0].path,
        format!("/2010-04-01/Accounts/{}/Messages.json", twilio::ACCOUNT_SID)
    );
    assert_eq!(
        got[0].basic(),
        Some((
            twilio::ACCOUNT_SID.to_string(),
            twilio::AUTH_TOKEN.to_string()
        ))
    );
    assert_eq!(
        got[0].header("content-type"),
        Some("application/x-www-form-urlencoded")
    );
    assert_eq!(
        got[0].form(),
        form(&[
            ("To", "+15558675310"),
            ("From", "+14155552345"),
            ("Body", "Order A-17 has shipped"),
        ])
    );
    // The record keeps the request with the credentials and the Account
    // SID (a variable the connector reads) blanked out: the Basic header
    // is kept as its scheme alone.
    let request = &sms["attempts"][0]["request"];
    assert_eq!(request["headers"]["Authorization"], "Basic [redacted]");
    assert!(
        request["url"]
            .as_str()
            .is_some_and(|u| u.ends_with("/2010-04-01/Accounts/[redacted]/Messages.json")),
        "{request}"
    );
    let all = h.history_and_log().await;
    assert!(!all.contains(twilio::AUTH_TOKEN), "the auth token leaked");
    assert!(!all.contains(twilio::ACCOUNT_SID), "the account SID leaked");
    let credentials = base64::engine::general_purpose::STANDARD.encode(format!(
        "{}:{}",
        twilio::ACCOUNT_SID,
        twilio::AUTH_TOKEN
    ));
    assert!(!all.contains(&credentials), "the Basic credentials leaked");
}

both!(
    send_sms_through_a_messaging_service_with_media,
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
);
async fn send_sms_through_a_messaging_service_with_media(backend: Backend) {
    let api = StandIn::start(twilio::routes()).await;
    let h = serve(backend, SMS_SERVICE, &env(&api));
    let run = h.run("/promo", &json!({"phone": "+447700900123"})).await;
    assert_eq!(api.violations(), Vec::<String>::new());
    assert_eq!(run["status"], "succeeded", "{run}");
    let sms = step(&run, "sms");
    assert_eq!(sms["output"]["status"], 201);
    assert_eq!(sms["output"]["body"]["num_media"], "1");
    // Numbers and booleans are sent as their text.
    assert_eq!(
        api.requests_to(twilio::MESSAGES)[0].form(),
        form(&[
            ("To", "+447700900123"),
            ("MessagingServiceSid", "MGaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"),
            ("MediaUrl", "https://demo.twilio.com/owl.png"),
            ("StatusCallback", "https://example.com/twilio/status"),
            ("ValidityPeriod", "600"),
            ("SendAsMms", "true"),
        ])
    );
}

both!(
    send_sms_to_an_invalid_number_fails_with_twilios_21211,
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
);
async fn send_sms_to_an_invalid_number_fails_with_twilios_21211(backend: Backend) {
    let api = StandIn::start(twilio::routes()).await;
    let h = serve(backend, SMS, &env(&api));
    let run = h
        .run("/shipped", &json!({"phone": "555-0100", "order": "A-18"}))
        .await;
    assert_eq!(api.violations(), Vec::<String>::new());
    assert_eq!(run["status"], "failed", "{run}");
    let sms = step(&run, "sms");
    assert_eq!(sms["status"], "failed");
    assert_eq!(
        sms["error"],
        "HTTP 400: Invalid 'To' Phone Number https://www.twilio.com/docs/errors/21211"
    );
    assert_eq!(run["error"], sms["error"]);
    // A 400 is the request's fault: not retried.
    assert_eq!(attempts(sms), 1);
    assert_eq!(sms["attempts"][0]["response"]["body"]["code"], 21211);
}

both!(
    send_sms_with_a_wrong_auth_token_fails_with_twilios_20003,
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
);
async fn send_sms_with_a_wrong_auth_token_fails_with_twilios_20003(backend: Backend) {
    let api = StandIn::start(twilio::routes()).await;
    let mut env = env(&api);
    env[1].1 = "0000000000000000000000000000dead".to_string();
    let h = serve(backend, SMS, &env);
    let run = h
        .run(
            "/shipped",
            &json!({"phone": "+15558675310", "order": "A-19"}),
        )
        .await;
    assert_eq!(run["status"], "failed", "{run}");
    let sms = step(&run, "sms");
    assert_eq!(
        sms["error"],
        "HTTP 401: Authenticate https://www.twilio.com/docs/errors/20003"
    );
    assert_eq!(attempts(sms), 1);
    assert!(!h
        .history_and_log()
        .await
        .contains("0000000000000000000000000000dead"));
}

both!(
    send_sms_too_many_requests_is_retried_with_backoff,
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
);
async fn send_sms_too_many_requests_is_retried_with_backoff(backend: Backend) {
    let api = StandIn::start(twilio::routes()).await;
    api.queue(twilio::MESSAGES, vec![twilio::too_many_requests()]);
    let h = serve(backend, SMS, &env(&api));
    let run = h
        .run(
            "/shipped",
            &json!({"phone": "+15558675310", "order": "A-20"}),
        )
        .await;
    assert_eq!(api.violations(), Vec::<String>::new());
    assert_eq!(run["status"], "succeeded", "{run}");
    let sms = step(&run, "sms");
    assert_eq!(attempts(sms), 2, "{sms}");
    assert_eq!(sms["attempts"][0]["response"]["status"], 429);
    assert_eq!(
        sms["attempts"][0]["error"],
        "HTTP 429: Too Many Requests https://www.twilio.com/docs/errors/20429"
    );
    assert_eq!(sms["output"]["status"], 201);
    // Both tries sent the same message.
    let got = api.requests_to(twilio::MESSAGES);
    assert_eq!(got.len(), 2);
    assert_eq!(got[0].form(), got[1].form());
}

both!(
    send_whatsapp_sends_a_template_between_whatsapp_addresses,
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
);
async fn send_whatsapp_sends_a_template_between_whatsapp_addresses(backend: Backend) {
    let api = StandIn::start(twilio::routes()).await;
    let h = serve(backend, WHATSAPP, &env(&api));
    let run = h
        .run(
            "/booked",
            &json!({"phone": "+15558675310", "date": "12/1", "time": "3pm"}),
        )
        .await;
    assert_eq!(api.violations(), Vec::<String>::new());
    assert_eq!(run["status"], "succeeded", "{run}");
    let remind = step(&run, "remind");
    assert_eq!(remind["uses"], "twilio.send_whatsapp");
    assert_eq!(remind["output"]["status"], 201);
    assert_eq!(remind["output"]["body"]["to"], "whatsapp:+15558675310");
    let sent = api.requests_to(twilio::MESSAGES)[0].form();
    assert_eq!(sent["To"], "whatsapp:+15558675310");
    assert_eq!(sent["From"], "whatsapp:+14155238886");
    assert_eq!(sent["ContentSid"], "HXb5b62575e6e4ff6129ad7c8efe1f983e");
    // The variables travel as JSON text, as Twilio's reference asks.
    let vars: Value = serde_json::from_str(&sent["ContentVariables"]).expect("JSON text");
    assert_eq!(vars, json!({"1": "12/1", "2": "3pm"}));
    assert_eq!(sent.len(), 4, "{sent:?}");

    // A number WhatsApp cannot take: Twilio's 21211, not retried.
    let run = h
        .run(
            "/booked",
            &json!({"phone": "0049 30 1234", "date": "12/2", "time": "9am"}),
        )
        .await;
    assert_eq!(run["status"], "failed", "{run}");
    let remind = step(&run, "remind");
    assert_eq!(
        remind["error"],
        "HTTP 400: Invalid 'To' Phone Number https://www.twilio.com/docs/errors/21211"
    );
    assert_eq!(attempts(remind), 1);
    assert_eq!(api.violations(), Vec::<String>::new());
}
