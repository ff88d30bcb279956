//! The Telegram connector (`connectors/telegram.yaml`) against Telegram's
//! stand-in (`tests/standins/telegram.rs`): send a message and a photo as
//! the Bot API documents them, the token in the path and never in the
//! record; Telegram's documented errors and flood control.

mod common;
#[path = "standins/telegram.rs"]
mod telegram;

use common::connector::{step, Harness};
use common::standin::StandIn;
use common::Backend;
use serde_json::json;

const WF: &str = r#"name: shipped
trigger:
  webhook: { path: /in }
steps:
  - id: say
    uses: telegram.send_message
    with:
      chat_id: "{{ $.event.chat }}"
      text: "Order <b>{{ $.event.id }}</b> has shipped"
      parse_mode: HTML
      link_preview_options: { is_disabled: true }
      reply_markup: { inline_keyboard: [[{ text: Track, url: "https://track.example.com/{{ $.event.id }}" }]] }
  - id: show
    uses: telegram.send_photo
    with:
      chat_id: "{{ $.event.chat }}"
      photo: "{{ $.event.photo }}"
      caption: "Parcel {{ $.event.id }}"
      reply_parameters: { message_id: "{{ $.steps.say.body.result.message_id }}" }
"#;

async fn setup(backend: Backend, token: &str) -> (StandIn, Harness) {
    let api = StandIn::start(telegram::routes()).await;
    let h = Harness::start(
        backend,
        WF,
        &[
            ("TELEGRAM_BOT_TOKEN", token),
            ("TELEGRAM_BASE_URL", &api.base),
        ],
    );
    (api, h)
}

fn event(id: &str) -> serde_json::Value {
    json!({"id": id, "chat": -1001234567890_i64, "photo": "https://cdn.example.com/parcels/p-1.jpg"})
}

both!(
    message_and_photo_as_the_bot_api_documents_them,
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
);
async fn message_and_photo_as_the_bot_api_documents_them(backend: Backend) {
    let (api, h) = setup(backend, telegram::TOKEN).await;
    let run = h.run("/in", &event("o-17")).await;
    assert_eq!(api.violations(), Vec::<String>::new());
    assert_eq!(run["status"], "succeeded", "{run}");

    let say = step(&run, "say");
    assert_eq!(say["uses"], "telegram.send_message");
    assert_eq!(say["output"]["status"], 200);
    assert_eq!(say["output"]["body"]["ok"], true);
    assert_eq!(say["output"]["body"]["result"]["message_id"], 1001);
    let sent = &api.requests_to(telegram::SEND_MESSAGE)[0];
    // The token is the path's first segment (percent-encoded on the way,
    // decoded by the Bot API server as by the stand-in).
    assert_eq!(sent.params["bot"], format!("bot{}", telegram::TOKEN));
    assert_eq!(sent.header("authorization"), None);
    // A number given for chat_id goes as its digits.
    assert_eq!(
        sent.json(),
        json!({
            "chat_id": "-1001234567890",
            "text": "Order <b>o-17</b> has shipped",
            "parse_mode": "HTML",
            "link_preview_options": {"is_disabled": true},
            "reply_markup": {"inline_keyboard": [[{"text": "Track", "url": "https://track.example.com/o-17"}]]}
        })
    );

    let show = step(&run, "show");
    assert_eq!(show["uses"], "telegram.send_photo");
    assert_eq!(show["output"]["body"]["result"]["caption"], "Parcel o-17");
    assert_eq!(
        api.requests_to(telegram::SEND_PHOTO)[0].json(),
        json!({
            "chat_id": "-1001234567890",
            "photo": "https://cdn.example.com/parcels/p-1.jpg",
            "caption": "Parcel o-17",
            "reply_parameters": {"message_id": 1001}
        })
    );

    // The token is in the URL, and the record keeps the URL without it.
    let url = say["attempts"][0]["request"]["url"].as_str().expect("url");
    assert!(
        url.contains("[redacted]") && url.ends_with("/sendMessage"),
        "{url}"
    );
    let all = h.history_and_log().await;
    assert!(!all.contains(telegram::TOKEN), "the bot token leaked");
    assert!(
        !all.contains("AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw"),
        "the token's secret part leaked"
    );
}

both!(
    telegram_errors_fail_the_step_with_its_description,
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
);
async fn telegram_errors_fail_the_step_with_its_description(backend: Backend) {
    let (api, h) = setup(backend, telegram::TOKEN).await;
    for (code, description) in [
        (400, "Bad Request: chat not found"),
        (403, "Forbidden: bot was blocked by the user"),
    ] {
        api.queue(
            telegram::SEND_MESSAGE,
            vec![telegram::error(code, description)],
        );
        let run = h.run("/in", &event("o-18")).await;
        assert_eq!(run["status"], "failed", "{run}");
        let say = step(&run, "say");
        assert_eq!(say["status"], "failed");
        assert_eq!(say["error"], format!("HTTP {code}: {description}"));
        // The chat is wrong or gone: not retried, nothing after it runs.
        assert_eq!(say["attempts"].as_array().map(Vec::len), Some(1));
        assert_eq!(step(&run, "show")["status"], "pending");
    }

    // A photo Telegram cannot fetch.
    api.queue(
        telegram::SEND_PHOTO,
        vec![telegram::error(
            400,
            "Bad Request: wrong file identifier/HTTP URL specified",
        )],
    );
    let run = h.run("/in", &event("o-19")).await;
    assert_eq!(
        step(&run, "show")["error"],
        "HTTP 400: Bad Request: wrong file identifier/HTTP URL specified"
    );
    assert_eq!(step(&run, "say")["status"], "succeeded");

    // A token Telegram does not know.
    let other = Harness::start(
        backend,
        WF,
        &[
            ("TELEGRAM_BOT_TOKEN", "999:not-the-bots-token"),
            ("TELEGRAM_BASE_URL", &api.base),
        ],
    );
    let run = other.run("/in", &event("o-20")).await;
    assert_eq!(
        step(&run, "say")["error"],
        "HTTP 401: Unauthorized",
        "{run}"
    );
    assert!(!other.history_and_log().await.contains("not-the-bots-token"));
    assert_eq!(api.violations(), Vec::<String>::new());
}

both!(
    flood_control_waits_for_retry_after,
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
);
async fn flood_control_waits_for_retry_after(backend: Backend) {
    let (api, h) = setup(backend, telegram::TOKEN).await;
    api.queue(telegram::SEND_PHOTO, vec![telegram::too_many_requests(1)]);
    let run = h.run("/in", &event("o-21")).await;
    assert_eq!(run["status"], "succeeded", "{run}");
    let show = step(&run, "show");
    let attempts = show["attempts"].as_array().expect("attempts");
    assert_eq!(attempts.len(), 2, "{show}");
    assert_eq!(
        attempts[0]["error"],
        "HTTP 429: Too Many Requests: retry after 1"
    );
    let at = |a: &serde_json::Value| {
        humantime::parse_rfc3339(a["started_at"].as_str().expect("time")).expect("rfc3339")
    };
    let gap = at(&attempts[1])
        .duration_since(at(&attempts[0]))
        .expect("in order");
    assert!(gap >= std::time::Duration::from_millis(1000), "{gap:?}");
    assert_eq!(api.requests_to(telegram::SEND_PHOTO).len(), 2);
    assert_eq!(api.violations(), Vec::<String>::new());
}
