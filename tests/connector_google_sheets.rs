//! The Google Sheets connector (`connectors/google_sheets.yaml`), the
//! OAuth2 reference, against stand-ins of Google's token endpoint and the
//! Sheets API (`tests/standins/google_sheets.rs`): the refresh-token grant,
//! the token cached in the store until shortly before it expires, one
//! refresh however many runs need it, a `401` refreshed once and the call
//! repeated, `invalid_grant`, and tokens never in history or the log.

mod common;
#[path = "standins/google_sheets.rs"]
mod google;

use common::connector::{step, Harness};
use common::standin::StandIn;
use common::Backend;
use google::Tokens;
use serde_json::json;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

const WF: &str = r#"name: ledger
trigger:
  webhook: { path: /paid }
steps:
  - id: row
    uses: google_sheets.append_row
    with:
      spreadsheet_id: 1BxiMVs0XRA5nFMdKvBdBZjgmUUqptlbs74OgvE2upms
      range: "Payments!A1"
      values: ["{{ $.event.id }}", "{{ $.event.amount }}", "{{ $.event.currency }}"]
"#;

struct Google {
    tokens: Arc<Tokens>,
    oauth: StandIn,
    sheets: StandIn,
}

async fn google() -> Google {
    let tokens = Arc::new(Tokens::default());
    let oauth = StandIn::start(google::token_routes(tokens.clone())).await;
    let sheets = StandIn::start(google::sheets_routes(tokens.clone())).await;
    Google {
        tokens,
        oauth,
        sheets,
    }
}

fn serve(backend: Backend, g: &Google, refresh_token: &str) -> Harness {
    Harness::start(
        backend,
        WF,
        &[
            ("GOOGLE_SHEETS_CLIENT_ID", google::CLIENT_ID),
            ("GOOGLE_SHEETS_CLIENT_SECRET", google::CLIENT_SECRET),
            ("GOOGLE_SHEETS_REFRESH_TOKEN", refresh_token),
            ("GOOGLE_SHEETS_BASE_URL", &g.sheets.base),
            ("GOOGLE_SHEETS_TOKEN_URL", &g.oauth.url("/token")),
        ],
    )
}

fn assert_no_secret(text: &str, g: &Google) {
    let mut secrets = vec![
        google::CLIENT_SECRET.to_string(),
        google::REFRESH_TOKEN.to_string(),
    ];
    secrets.extend(g.tokens.issued.lock().expect("lock").iter().cloned());
    for s in secrets {
        assert!(!text.contains(&s), "{s} leaked");
    }
}

both!(
    append_row_fetches_a_token_once_and_reuses_it_from_the_store,
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
);
async fn append_row_fetches_a_token_once_and_reuses_it_from_the_store(backend: Backend) {
    let g = google().await;
    let h = serve(backend, &g, google::REFRESH_TOKEN);
    let run = h
        .run(
            "/paid",
            &json!({"id": "pi_1", "amount": 2000, "currency": "usd"}),
        )
        .await;
    assert_eq!(g.oauth.violations(), Vec::<String>::new());
    assert_eq!(g.sheets.violations(), Vec::<String>::new());
    assert_eq!(run["status"], "succeeded", "{run}");
    let row = step(&run, "row");
    assert_eq!(row["uses"], "google_sheets.append_row");
    assert_eq!(row["output"]["body"]["updates"]["updatedRows"], 1);
    // The refresh-token grant, as Google documents it.
    let asked = &g.oauth.requests_to(google::TOKEN)[0];
    assert_eq!(asked.form()["grant_type"], "refresh_token");
    assert_eq!(asked.form()["refresh_token"], google::REFRESH_TOKEN);
    // The row, with the token as a bearer.
    let sent = &g.sheets.requests_to(google::APPEND)[0];
    assert_eq!(
        sent.path,
        "/v4/spreadsheets/1BxiMVs0XRA5nFMdKvBdBZjgmUUqptlbs74OgvE2upms/values/Payments%21A1:append"
    );
    assert_eq!(sent.params["range"], "Payments!A1");
    assert_eq!(sent.query["valueInputOption"], "USER_ENTERED");
    assert_eq!(sent.json(), json!({"values": [["pi_1", 2000, "usd"]]}));
    assert_eq!(sent.bearer(), Some("ya29.a0AfB_standin-access-1"));
    // The record shows the request with the token blanked out.
    assert_eq!(
        row["attempts"][0]["request"]["headers"]["Authorization"],
        "Bearer [redacted]"
    );

    // More runs reuse the cached token: still one token request.
    for i in 2..=3 {
        let run = h
            .run(
                "/paid",
                &json!({"id": format!("pi_{i}"), "amount": 1, "currency": "eur"}),
            )
            .await;
        assert_eq!(run["status"], "succeeded", "{run}");
    }
    assert_eq!(g.tokens.count(), 1);
    assert_eq!(g.sheets.requests_to(google::APPEND).len(), 3);
    assert_no_secret(&h.history_and_log().await, &g);

    // The cache is in the store: a restarted server still uses the token.
    let h = h.restart();
    let run = h
        .run(
            "/paid",
            &json!({"id": "pi_4", "amount": 1, "currency": "eur"}),
        )
        .await;
    assert_eq!(run["status"], "succeeded", "{run}");
    assert_eq!(g.tokens.count(), 1);
    assert_no_secret(&h.history_and_log().await, &g);
}

both!(
    a_token_about_to_expire_is_refreshed_before_use,
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
);
async fn a_token_about_to_expire_is_refreshed_before_use(backend: Backend) {
    let g = google().await;
    // Tokens that live 30 seconds: inside the refresh margin at once.
    g.tokens.expires_in.store(30, Ordering::SeqCst);
    let h = serve(backend, &g, google::REFRESH_TOKEN);
    for i in 1..=3 {
        let run = h
            .run(
                "/paid",
                &json!({"id": format!("pi_{i}"), "amount": 1, "currency": "eur"}),
            )
            .await;
        assert_eq!(run["status"], "succeeded", "{run}");
    }
    assert_eq!(g.tokens.count(), 3, "each run needed a fresh token");
    // Long-lived tokens again: the next one is kept.
    g.tokens.expires_in.store(3599, Ordering::SeqCst);
    for i in 4..=6 {
        let run = h
            .run(
                "/paid",
                &json!({"id": format!("pi_{i}"), "amount": 1, "currency": "eur"}),
            )
            .await;
        assert_eq!(run["status"], "succeeded", "{run}");
    }
    assert_eq!(g.tokens.count(), 4);
    assert_no_secret(&h.history_and_log().await, &g);
}

both!(
    many_runs_at_once_share_one_refresh,
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
);
async fn many_runs_at_once_share_one_refresh(backend: Backend) {
    let g = google().await;
    // The token endpoint is slow, so the runs all want a token at once.
    g.oauth.delay(google::TOKEN, Duration::from_millis(600));
    let h = serve(backend, &g, google::REFRESH_TOKEN);
    let mut ids = Vec::new();
    for i in 0..8 {
        let (status, answer) = h
            .post(
                "/paid",
                &json!({"id": format!("pi_{i}"), "amount": i, "currency": "eur"}),
            )
            .await;
        assert_eq!(status, 202);
        ids.push(answer["runs"][0].as_str().expect("run").to_string());
    }
    for id in ids {
        let run = common::wait_run_at(&h.client, &h.server.base, &id).await;
        assert_eq!(run["status"], "succeeded", "{run}");
    }
    assert_eq!(g.tokens.count(), 1, "one refresh for all eight runs");
    assert_eq!(g.sheets.requests_to(google::APPEND).len(), 8);
}

both!(
    a_401_refreshes_the_token_once_and_repeats_the_call,
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
);
async fn a_401_refreshes_the_token_once_and_repeats_the_call(backend: Backend) {
    let g = google().await;
    let h = serve(backend, &g, google::REFRESH_TOKEN);
    let run = h
        .run(
            "/paid",
            &json!({"id": "pi_1", "amount": 1, "currency": "eur"}),
        )
        .await;
    assert_eq!(run["status"], "succeeded", "{run}");
    // Google stops accepting the cached token before its time.
    g.tokens.revoke_all();
    let run = h
        .run(
            "/paid",
            &json!({"id": "pi_2", "amount": 2, "currency": "eur"}),
        )
        .await;
    assert_eq!(run["status"], "succeeded", "{run}");
    let row = step(&run, "row");
    let attempts = row["attempts"].as_array().expect("attempts");
    assert_eq!(attempts.len(), 2, "{row}");
    assert_eq!(attempts[0]["response"]["status"], 401);
    assert!(
        attempts[0]["error"]
            .as_str()
            .is_some_and(|e| e.contains("refreshed")),
        "{}",
        attempts[0]
    );
    assert_eq!(attempts[1]["response"]["status"], 200);
    assert_eq!(g.tokens.count(), 2);
    let appended = g.sheets.requests_to(google::APPEND);
    assert_eq!(appended.len(), 3);
    assert_eq!(appended[1].bearer(), Some("ya29.a0AfB_standin-access-1"));
    assert_eq!(appended[2].bearer(), Some("ya29.a0AfB_standin-access-2"));
    // Both tries carry the same Idempotency-Key.
    assert_eq!(
        appended[1].header("idempotency-key"),
        appended[2].header("idempotency-key")
    );

    // A 401 that persists after the refresh fails the step: refreshed once,
    // not in a loop.
    let g2 = google().await;
    let h2 = serve(backend, &g2, google::REFRESH_TOKEN);
    g2.sheets.queue(
        google::APPEND,
        vec![google::unauthenticated(), google::unauthenticated()],
    );
    let run = h2
        .run(
            "/paid",
            &json!({"id": "pi_3", "amount": 3, "currency": "eur"}),
        )
        .await;
    assert_eq!(run["status"], "failed", "{run}");
    let row = step(&run, "row");
    assert_eq!(row["attempts"].as_array().map(Vec::len), Some(2));
    assert!(
        row["error"].as_str().is_some_and(
            |e| e.starts_with("HTTP 401: Request had invalid authentication credentials")
        ),
        "{row}"
    );
    assert_eq!(g2.tokens.count(), 2);
    assert_no_secret(&h.history_and_log().await, &g);
    assert_no_secret(&h2.history_and_log().await, &g2);
}

both!(
    a_revoked_refresh_token_fails_the_step_with_googles_reason,
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
);
async fn a_revoked_refresh_token_fails_the_step_with_googles_reason(backend: Backend) {
    let g = google().await;
    let h = serve(
        backend,
        &g,
        "1//0gThisRefreshTokenWasRevoked-0000000000000000",
    );
    let run = h
        .run(
            "/paid",
            &json!({"id": "pi_1", "amount": 1, "currency": "eur"}),
        )
        .await;
    assert_eq!(run["status"], "failed", "{run}");
    let row = step(&run, "row");
    let error = row["error"].as_str().expect("error");
    assert!(
        error.contains("invalid_grant") && error.contains("Token has been expired or revoked."),
        "{error}"
    );
    // Not retried: a refused grant does not heal by waiting.
    assert_eq!(row["attempts"].as_array().map(Vec::len), Some(1));
    // The attempt shows the token request, its secrets blanked out.
    let attempt = &row["attempts"][0];
    assert_eq!(attempt["response"]["status"], 400);
    assert!(
        attempt["request"]["url"]
            .as_str()
            .is_some_and(|u| u.ends_with("/token") || u == "[redacted]"),
        "{attempt}"
    );
    let text = h.history_and_log().await;
    assert!(!text.contains("1//0gThisRefreshTokenWasRevoked"), "leaked");
    assert!(!text.contains(google::CLIENT_SECRET), "leaked");
    assert_eq!(g.sheets.requests_to(google::APPEND).len(), 0);
}

both!(
    a_sheets_error_fails_the_step_with_googles_message,
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
);
async fn a_sheets_error_fails_the_step_with_googles_message(backend: Backend) {
    let g = google().await;
    let h = serve(backend, &g, google::REFRESH_TOKEN);
    g.sheets.queue(
        google::APPEND,
        vec![google::error(
            400,
            "INVALID_ARGUMENT",
            "Unable to parse range: Payments!A1",
        )],
    );
    let run = h
        .run(
            "/paid",
            &json!({"id": "pi_1", "amount": 1, "currency": "eur"}),
        )
        .await;
    assert_eq!(run["status"], "failed", "{run}");
    assert_eq!(
        step(&run, "row")["error"],
        "HTTP 400: Unable to parse range: Payments!A1"
    );
}
