//! The Discord connector (`connectors/discord.yaml`) against Discord's
//! stand-in (`tests/standins/discord.rs`): a webhook message as Discord's
//! Execute Webhook reference describes it (with `wait=true`, so the saved
//! message is the step's output), Discord's documented errors, and its
//! rate limit with Retry-After.

mod common;
#[path = "standins/discord.rs"]
mod discord;

use common::connector::{step, Harness};
use common::standin::StandIn;
use common::Backend;
use serde_json::json;

const WF: &str = r#"name: deploys
trigger:
  webhook: { path: /in }
steps:
  - id: tell
    uses: discord.webhook_message
    with:
      url: "{{ env.DEPLOYS_DISCORD_URL }}"
      content: "Deployed {{ $.event.version }} by {{ $.event.author }}"
      embeds: [{ title: "Release {{ $.event.version }}", url: "https://example.com/releases/{{ $.event.version }}", color: 5763719 }]
      username: Deploy bot
"#;

fn webhook_url(api: &StandIn, id: &str, token: &str) -> String {
    api.url(&format!("/api/webhooks/{id}/{token}"))
}

async fn setup(backend: Backend) -> (StandIn, Harness) {
    let api = StandIn::start(discord::routes()).await;
    let url = webhook_url(&api, discord::WEBHOOK_ID, discord::WEBHOOK_TOKEN);
    let h = Harness::start(backend, WF, &[("DEPLOYS_DISCORD_URL", &url)]);
    (api, h)
}

both!(
    a_webhook_message_as_discord_documents_it,
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
);
async fn a_webhook_message_as_discord_documents_it(backend: Backend) {
    let (api, h) = setup(backend).await;
    let run = h
        .run("/in", &json!({"version": "2.4.1", "author": "@everyone"}))
        .await;
    assert_eq!(api.violations(), Vec::<String>::new());
    assert_eq!(run["status"], "succeeded", "{run}");
    let tell = step(&run, "tell");
    assert_eq!(tell["uses"], "discord.webhook_message");
    // `wait=true`: Discord answers with the message it saved.
    assert_eq!(tell["output"]["status"], 200);
    assert_eq!(tell["output"]["body"]["id"], "1187263811362537502");
    assert_eq!(tell["output"]["body"]["webhook_id"], discord::WEBHOOK_ID);
    let sent = &api.requests_to(discord::EXECUTE)[0];
    assert_eq!(sent.query.get("wait").map(String::as_str), Some("true"));
    assert_eq!(sent.header("authorization"), None);
    // Mentions in event data notify no one unless the workflow says so.
    assert_eq!(
        sent.json(),
        json!({
            "content": "Deployed 2.4.1 by @everyone",
            "embeds": [{"title": "Release 2.4.1", "url": "https://example.com/releases/2.4.1", "color": 5763719}],
            "username": "Deploy bot",
            "allowed_mentions": {"parse": []}
        })
    );
    // The webhook URL (its token) is a secret.
    let all = h.history_and_log().await;
    assert!(
        !all.contains(discord::WEBHOOK_TOKEN),
        "the webhook token leaked"
    );
}

both!(
    a_thread_id_in_the_url_is_kept_and_mentions_can_be_allowed,
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
);
async fn a_thread_id_in_the_url_is_kept_and_mentions_can_be_allowed(backend: Backend) {
    let api = StandIn::start(discord::routes()).await;
    let url = format!(
        "{}?thread_id=1187264000000000000",
        webhook_url(&api, discord::WEBHOOK_ID, discord::WEBHOOK_TOKEN)
    );
    let wf = WF.replace(
        "      username: Deploy bot\n",
        "      allowed_mentions: { parse: [users] }\n",
    );
    let h = Harness::start(backend, &wf, &[("DEPLOYS_DISCORD_URL", &url)]);
    let run = h
        .run(
            "/in",
            &json!({"version": "2.4.2", "author": "<@80351110224678912>"}),
        )
        .await;
    assert_eq!(run["status"], "succeeded", "{run}");
    let sent = &api.requests_to(discord::EXECUTE)[0];
    assert_eq!(
        sent.query.get("thread_id").map(String::as_str),
        Some("1187264000000000000")
    );
    assert_eq!(sent.query.get("wait").map(String::as_str), Some("true"));
    assert_eq!(sent.json()["allowed_mentions"], json!({"parse": ["users"]}));
    assert_eq!(
        step(&run, "tell")["output"]["body"]["channel_id"],
        "1187264000000000000"
    );
    assert_eq!(api.violations(), Vec::<String>::new());
}

both!(
    discord_errors_fail_the_step_with_its_message,
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
);
async fn discord_errors_fail_the_step_with_its_message(backend: Backend) {
    let (api, h) = setup(backend).await;
    api.queue(
        discord::EXECUTE,
        vec![
            discord::error(400, 50006, "Cannot send an empty message"),
            discord::invalid_form_body(
                "username",
                "USERNAME_INVALID_CONTAINS",
                "Username cannot contain \"discord\"",
            ),
        ],
    );
    let run = h.run("/in", &json!({"version": "1", "author": "a"})).await;
    assert_eq!(run["status"], "failed", "{run}");
    let tell = step(&run, "tell");
    assert_eq!(tell["error"], "HTTP 400: Cannot send an empty message");
    assert_eq!(tell["attempts"].as_array().map(Vec::len), Some(1));

    let run = h.run("/in", &json!({"version": "2", "author": "b"})).await;
    let error = step(&run, "tell")["error"]
        .as_str()
        .expect("an error")
        .to_string();
    assert!(error.starts_with("HTTP 400: Invalid Form Body "), "{error}");
    assert!(
        error.contains("USERNAME_INVALID_CONTAINS") && error.contains("username"),
        "{error}"
    );

    // A webhook's token that is wrong, and a webhook that was deleted.
    for (id, token, want) in [
        (
            discord::WEBHOOK_ID,
            "not-the-token",
            "HTTP 401: Invalid Webhook Token",
        ),
        (
            "1187263540293054465",
            discord::WEBHOOK_TOKEN,
            "HTTP 404: Unknown Webhook",
        ),
    ] {
        let other = Harness::start(
            backend,
            WF,
            &[("DEPLOYS_DISCORD_URL", &webhook_url(&api, id, token))],
        );
        let run = other
            .run("/in", &json!({"version": "3", "author": "c"}))
            .await;
        let tell = step(&run, "tell");
        assert_eq!(tell["error"], want, "{run}");
        assert_eq!(tell["attempts"].as_array().map(Vec::len), Some(1));
    }
    assert_eq!(api.violations(), Vec::<String>::new());
}

both!(
    a_rate_limited_message_waits_for_retry_after,
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
);
async fn a_rate_limited_message_waits_for_retry_after(backend: Backend) {
    let (api, h) = setup(backend).await;
    api.queue(discord::EXECUTE, vec![discord::rate_limited(1)]);
    let run = h.run("/in", &json!({"version": "4", "author": "d"})).await;
    assert_eq!(run["status"], "succeeded", "{run}");
    let tell = step(&run, "tell");
    let attempts = tell["attempts"].as_array().expect("attempts");
    assert_eq!(attempts.len(), 2, "{tell}");
    assert_eq!(
        attempts[0]["error"],
        "HTTP 429: You are being rate limited."
    );
    let at = |a: &serde_json::Value| {
        humantime::parse_rfc3339(a["started_at"].as_str().expect("time")).expect("rfc3339")
    };
    let gap = at(&attempts[1])
        .duration_since(at(&attempts[0]))
        .expect("in order");
    assert!(gap >= std::time::Duration::from_millis(1000), "{gap:?}");
    let sent = api.requests_to(discord::EXECUTE);
    assert_eq!(sent.len(), 2);
    assert_eq!(sent[0].json(), sent[1].json());
    assert_eq!(api.violations(), Vec::<String>::new());
}
