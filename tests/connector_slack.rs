//! The Slack connector (`connectors/slack.yaml`) against Slack's stand-in
//! (`tests/standins/slack.rs`): each action's request as Slack's API
//! reference describes it, and the step's status, output and error for
//! Slack's documented success and error answers.

mod common;
#[path = "standins/slack.rs"]
mod slack;

use common::connector::{step, Harness};
use common::standin::{Reply, StandIn};
use common::Backend;
use serde_json::json;

const POST: &str = "name: notify\ntrigger:\n  webhook: { path: /in }\nsteps:\n  - id: post\n    uses: slack.post_message\n    with:\n      channel: \"{{ $.event.channel }}\"\n      text: \"Order {{ $.event.id }} was paid\"\n      blocks: \"{{ $.event.blocks }}\"\n";

async fn post_message_setup(backend: Backend) -> (StandIn, Harness) {
    let api = StandIn::start(slack::routes()).await;
    let h = Harness::start(
        backend,
        POST,
        &[
            ("SLACK_BOT_TOKEN", slack::TOKEN),
            ("SLACK_BASE_URL", &api.base),
        ],
    );
    (api, h)
}

both!(
    post_message_sends_what_slack_documents_and_keeps_its_answer,
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
);
async fn post_message_sends_what_slack_documents_and_keeps_its_answer(backend: Backend) {
    let (api, h) = post_message_setup(backend).await;
    let run = h
        .run("/in", &json!({"id": "o-17", "channel": "C123ABC456"}))
        .await;
    assert_eq!(api.violations(), Vec::<String>::new());
    assert_eq!(run["status"], "succeeded", "{run}");
    let post = step(&run, "post");
    assert_eq!(post["kind"], "http");
    assert_eq!(post["uses"], "slack.post_message");
    assert_eq!(post["output"]["status"], 200);
    assert_eq!(post["output"]["body"]["ok"], true);
    assert_eq!(post["output"]["body"]["ts"], "1503435956.000247");
    // What Slack received: the token as a bearer, JSON, the fields the
    // workflow gave (an absent `blocks` left out, not sent as null).
    let got = api.requests_to(slack::POST_MESSAGE);
    assert_eq!(got.len(), 1);
    assert_eq!(
        got[0].json(),
        json!({"channel": "C123ABC456", "text": "Order o-17 was paid"})
    );
    assert_eq!(
        got[0].header("idempotency-key"),
        Some(format!("{}.post", run["id"].as_str().expect("id")).as_str())
    );
    // The record keeps the request with the token blanked out.
    let attempt = &post["attempts"][0];
    assert_eq!(
        attempt["request"]["headers"]["Authorization"],
        "Bearer [redacted]"
    );
    assert!(
        attempt["request"]["url"]
            .as_str()
            .is_some_and(|u| u.ends_with("/chat.postMessage")),
        "{attempt}"
    );
    let all = h.history_and_log().await;
    assert!(!all.contains(slack::TOKEN), "the bot token leaked");

    // Blocks given by the event are sent as the array they are.
    let blocks = json!([{"type": "section", "text": {"type": "mrkdwn", "text": "*paid*"}}]);
    let run = h
        .run(
            "/in",
            &json!({"id": "o-18", "channel": "C123ABC456", "blocks": blocks}),
        )
        .await;
    assert_eq!(run["status"], "succeeded", "{run}");
    assert_eq!(
        api.requests_to(slack::POST_MESSAGE)[1].json()["blocks"],
        blocks
    );
    assert_eq!(api.violations(), Vec::<String>::new());
}

both!(
    post_message_ok_false_fails_the_step_with_slacks_error,
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
);
async fn post_message_ok_false_fails_the_step_with_slacks_error(backend: Backend) {
    let (api, h) = post_message_setup(backend).await;
    api.queue(
        slack::POST_MESSAGE,
        vec![slack::web_error("channel_not_found")],
    );
    let run = h
        .run("/in", &json!({"id": "o-1", "channel": "C0NOPE"}))
        .await;
    assert_eq!(run["status"], "failed", "{run}");
    let post = step(&run, "post");
    assert_eq!(post["status"], "failed");
    assert_eq!(post["error"], "channel_not_found");
    assert_eq!(run["error"], "channel_not_found");
    // A 200 that fails `ok_when` is an answer, not an outage: no retry.
    assert_eq!(post["attempts"].as_array().map(Vec::len), Some(1));
    assert_eq!(post["attempts"][0]["response"]["body"]["ok"], false);

    // A token Slack does not accept: `invalid_auth`, also with HTTP 200.
    let other = Harness::start(
        backend,
        POST,
        &[
            ("SLACK_BOT_TOKEN", "xoxb-not-the-right-one"),
            ("SLACK_BASE_URL", &api.base),
        ],
    );
    let run = other
        .run("/in", &json!({"id": "o-2", "channel": "C1"}))
        .await;
    assert_eq!(step(&run, "post")["error"], "invalid_auth", "{run}");
    assert!(!other
        .history_and_log()
        .await
        .contains("xoxb-not-the-right-one"));
}

both!(
    post_message_rate_limited_waits_for_retry_after,
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
);
async fn post_message_rate_limited_waits_for_retry_after(backend: Backend) {
    let (api, h) = post_message_setup(backend).await;
    api.queue(
        slack::POST_MESSAGE,
        vec![
            Reply::json(429, json!({"ok": false, "error": "ratelimited"}))
                .with_header("Retry-After", "1"),
        ],
    );
    let run = h.run("/in", &json!({"id": "o-3", "channel": "C1"})).await;
    assert_eq!(run["status"], "succeeded", "{run}");
    let post = step(&run, "post");
    let attempts = post["attempts"].as_array().expect("attempts");
    assert_eq!(attempts.len(), 2, "{post}");
    assert_eq!(attempts[0]["error"], "HTTP 429: ratelimited");
    assert_eq!(attempts[0]["response"]["status"], 429);
    // Retry-After was honoured: the second attempt came at least a second
    // after the first.
    let at = |a: &serde_json::Value| {
        let s = a["started_at"].as_str().expect("time");
        humantime::parse_rfc3339(s).expect("rfc3339")
    };
    let gap = at(&attempts[1])
        .duration_since(at(&attempts[0]))
        .expect("in order");
    assert!(gap >= std::time::Duration::from_millis(1000), "{gap:?}");
    assert_eq!(api.requests_to(slack::POST_MESSAGE).len(), 2);
    // Both attempts carried the same Idempotency-Key.
    let keys: Vec<_> = api
        .requests_to(slack::POST_MESSAGE)
        .iter()
        .map(|r| r.header("idempotency-key").map(str::to_string))
        .collect();
    assert_eq!(keys[0], keys[1]);
}

const WEBHOOK: &str = "name: hook\ntrigger:\n  webhook: { path: /in }\nsteps:\n  - id: tell\n    uses: slack.incoming_webhook\n    with:\n      url: \"{{ env.SALES_WEBHOOK_URL }}\"\n      text: \"Large order {{ $.event.id }}\"\n";

both!(
    incoming_webhook_posts_to_its_url_and_reports_slacks_errors,
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
);
async fn incoming_webhook_posts_to_its_url_and_reports_slacks_errors(backend: Backend) {
    let api = StandIn::start(slack::routes()).await;
    let url = api.url("/services/T00000000/B00000000/XXXXXXXXXXXXXXXXXXXXXXXX");
    // No bot token is needed for a webhook.
    let h = Harness::start(backend, WEBHOOK, &[("SALES_WEBHOOK_URL", &url)]);
    let run = h.run("/in", &json!({"id": "o-9"})).await;
    assert_eq!(api.violations(), Vec::<String>::new());
    assert_eq!(run["status"], "succeeded", "{run}");
    let tell = step(&run, "tell");
    assert_eq!(tell["uses"], "slack.incoming_webhook");
    assert_eq!(tell["output"]["body"], "ok");
    let got = api.requests_to(slack::WEBHOOK);
    assert_eq!(got[0].json(), json!({"text": "Large order o-9"}));
    assert_eq!(got[0].header("authorization"), None);
    // The webhook URL is a secret: redacted in the record.
    assert_eq!(tell["attempts"][0]["request"]["url"], "[redacted]");

    for (status, body) in [
        (400, "invalid_payload"),
        (403, "action_prohibited"),
        (404, "no_service"),
        (410, "channel_is_archived"),
    ] {
        api.queue(slack::WEBHOOK, vec![Reply::text(status, body)]);
        let run = h.run("/in", &json!({"id": "o-10"})).await;
        assert_eq!(run["status"], "failed", "{run}");
        let tell = step(&run, "tell");
        assert_eq!(tell["error"], format!("HTTP {status}: {body}"));
        assert_eq!(tell["attempts"].as_array().map(Vec::len), Some(1));
    }
    assert!(!h
        .history_and_log()
        .await
        .contains("XXXXXXXXXXXXXXXXXXXXXXXX"));
}
