//! The web UI in a real browser (headless Chromium through chromedriver),
//! against the real server: live runs, a failed run with its attempts,
//! Replay, filtering through the URL, an invalid workflow, and a payload
//! that tries to run script. Screenshots of each page go to the folder the
//! test prints (target/ui-screenshots).

mod common;

use base64::Engine as _;
use common::browser::Browser;
use common::{Backend, Sink, TestServer};
use serde_json::{json, Value};
use std::path::PathBuf;

fn shots() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("target")
        .join("ui-screenshots")
}

/// Send an order to `/hooks/orders` and wait until the runs page on
/// screen lists its run as succeeded; the run's id.
async fn order_until_listed(
    server: &TestServer,
    browser: &Browser,
    id: &str,
    what: &str,
) -> String {
    let (_, answer) = server
        .post_json("/hooks/orders", &json!({"id": id, "note": what}))
        .await;
    let run = answer["runs"][0].as_str().expect("run").to_string();
    browser
        .wait_for(
            what,
            &format!("return document.querySelector('tr[data-run=\"{run}\"] .badge.succeeded')"),
        )
        .await;
    run
}

/// The status badges the runs page on screen shows for `run`, once the
/// answers to earlier reads of it have had time to land.
async fn listed_badges(browser: &Browser, run: &str) -> Value {
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    browser
        .js(&format!(
            "return [...document.querySelectorAll('tr[data-run=\"{run}\"] .badge')].map(b => b.textContent)"
        ))
        .await
}

both!(
    the_ui_answers_what_happened_to_my_webhook,
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
);
async fn the_ui_answers_what_happened_to_my_webhook(backend: Backend) {
    let Some(browser) = Browser::start().await else {
        return;
    };
    let sink = Sink::start().await;
    let deliver = format!(
        "name: orders\ndescription: Forward orders to the warehouse\ntrigger:\n  webhook: {{ path: /orders }}\nsteps:\n  - id: shape\n    transform:\n      script: '#{{ order: event.id, note: event.note }}'\n  - id: deliver\n    http:\n      url: \"{}\"\n      body: \"{{{{ $.steps.shape }}}}\"\n      retry: {{ attempts: 2, backoff: 10ms }}\n",
        sink.url("/warehouse")
    );
    let broken = "name: broken\ntrigger:\n  webhook: { path: /broken }\nsteps:\n  - id: x\n    filtr: { $.a: 1 }\n";
    let server = TestServer::start_on(
        backend,
        &[("orders.yaml", &deliver), ("broken.yaml", broken)],
        &[],
        |_| {},
    )
    .await;
    let dir = shots();
    println!("UI screenshots: {}", dir.display());

    // The runs page, empty, then a run appearing live without a reload.
    browser.goto(&server.url("/ui/#/runs")).await;
    browser
        .wait_for(
            "the empty state",
            "return document.querySelector('.empty pre')?.textContent",
        )
        .await;
    browser.js("window.__marker = 'same page'; return 1").await;
    browser
        .wait_for(
            "live updates",
            "return document.getElementById('live').classList.contains('on')",
        )
        .await;
    order_until_listed(&server, &browser, "o-1", "the new run").await;
    assert_eq!(
        browser.js("return window.__marker").await,
        "same page",
        "the run appeared without a reload"
    );
    // A second run, now that the table is there: its updates (queued,
    // running, succeeded) come within a few ms, and each makes the page
    // read the run; it must end as one row, in its last state.
    let second_run = order_until_listed(&server, &browser, "o-1b", "the second run").await;
    assert_eq!(
        listed_badges(&browser, &second_run).await,
        json!(["succeeded"]),
        "one row for the run, in its last state"
    );
    assert_eq!(
        browser.js("return window.__marker").await,
        "same page",
        "the second run appeared without a reload"
    );
    browser.screenshot(&dir, "runs").await;

    // The same on a page filtered by status: the run's earlier states add
    // no rows either.
    browser
        .goto(&server.url("/ui/#/runs?status=succeeded"))
        .await;
    browser
        .wait_for(
            "live updates on the filtered page",
            "return document.getElementById('live').classList.contains('on') && document.getElementById('runs-body')",
        )
        .await;
    let third_run =
        order_until_listed(&server, &browser, "o-1c", "a run on the filtered page").await;
    assert_eq!(
        listed_badges(&browser, &third_run).await,
        json!(["succeeded"]),
        "one row for the run on the filtered page"
    );

    // A failed run: its error and every attempt.
    sink.answer(
        "/warehouse",
        vec![
            (503, vec![], "{\"error\":\"warehouse down\"}".into()),
            (500, vec![], "{\"error\":\"still down\"}".into()),
        ],
    );
    let failed = server
        .run_once("/hooks/orders", &json!({"id": "o-2", "note": "second"}))
        .await;
    let failed_id = failed["id"].as_str().expect("id").to_string();
    browser
        .goto(&server.url(&format!("/ui/#/runs/{failed_id}")))
        .await;
    let error = browser
        .wait_for(
            "the run's error",
            "return document.getElementById('run-error')?.textContent",
        )
        .await;
    assert_eq!(error, "HTTP 500 (gave up after 2 attempts)");
    let attempts = browser.js("return [...document.querySelectorAll('[data-step=deliver] .attempt')].map(a => a.textContent)").await;
    let attempts = attempts.as_array().expect("attempts").clone();
    assert_eq!(attempts.len(), 2);
    assert!(
        attempts[0].as_str().unwrap_or("").contains("HTTP 503"),
        "{attempts:?}"
    );
    assert!(attempts[1].as_str().unwrap_or("").contains("HTTP 500"));
    browser.screenshot(&dir, "run-failed").await;

    // Replay: lands on the new run, which links back to the original. The
    // sink answers the replay after 500 ms, and the first event request
    // after the click is held back for 1.5 s: updates arrive while a page
    // is still loading, and a page the user has left finishes loading late.
    // The replay's page must end up showing its final status.
    sink.set_delay(Some(std::time::Duration::from_millis(500)));
    browser
        .js("const f = window.fetch; let once = true; window.fetch = (u, o) => { if (once && String(u).startsWith('/api/events/')) { once = false; return new Promise((r) => setTimeout(r, 1500)).then(() => f(u, o)); } return f(u, o); }; return true")
        .await;
    browser.click("#replay-failed").await;
    let landed = browser
        .wait_for("the replay's page", &format!("const h = location.hash; return h.startsWith('#/runs/run_') && !h.includes('{failed_id}') ? h : ''"))
        .await;
    let replay_id = landed
        .as_str()
        .unwrap_or("")
        .trim_start_matches("#/runs/")
        .to_string();
    browser
        .wait_for(
            "the replay to finish",
            "return document.querySelector('h1 .badge.succeeded')",
        )
        .await;
    sink.set_delay(None);
    // By now the held-back request has answered: the page is still the
    // replay's, not one left behind by an earlier navigation.
    tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    assert_eq!(
        browser
            .js("return [document.querySelector('h1 .mono')?.textContent, document.querySelector('h1 .badge')?.textContent]")
            .await,
        json!([replay_id, "succeeded"])
    );
    assert_eq!(
        browser
            .js("return document.getElementById('replay-of')?.textContent")
            .await,
        Value::String(failed_id.clone())
    );
    let (_, original) = server.get(&format!("/api/runs/{failed_id}")).await;
    assert_eq!(original["replays"], json!([replay_id]));
    browser.screenshot(&dir, "run-replayed").await;

    // Filter by status through the URL.
    browser.goto(&server.url("/ui/#/runs?status=failed")).await;
    browser
        .wait_for(
            "the filtered list",
            "return document.querySelectorAll('#runs-body tr').length",
        )
        .await;
    let statuses = browser
        .js("return [...document.querySelectorAll('#runs-body tr .badge')].map(b => b.textContent)")
        .await;
    assert_eq!(statuses, json!(["failed"]));
    assert_eq!(
        browser
            .js("return document.getElementById('f-status').value")
            .await,
        "failed"
    );
    browser.screenshot(&dir, "runs-failed-filter").await;

    // An invalid workflow shows its message; the URL to give senders is there.
    browser.goto(&server.url("/ui/#/workflows")).await;
    let msg = browser
        .wait_for("the invalid workflow", "return [...document.querySelectorAll('tr[data-workflow=broken] .workflow-error')].map(e => e.textContent).join('\\n')")
        .await;
    assert!(
        msg.as_str()
            .unwrap_or("")
            .contains("broken.yaml:6:5: unknown key `filtr`; did you mean `filter`?"),
        "{msg}"
    );
    let url = browser
        .js("return document.querySelector('tr[data-workflow=orders] code')?.textContent")
        .await;
    assert_eq!(url, Value::String(server.url("/hooks/orders")));
    browser.screenshot(&dir, "workflows").await;

    // A payload that tries to run script shows as text and runs nothing.
    let xss = "<script>window.__xss='script'</script><img src=x onerror=\"window.__xss='img'\">";
    let attack = server
        .run_once("/hooks/orders", &json!({"id": xss, "note": xss}))
        .await;
    let attack_id = attack["id"].as_str().expect("id").to_string();
    browser.goto(&server.url("/ui/#/runs")).await;
    browser
        .wait_for(
            "the list",
            &format!("return document.querySelector('tr[data-run=\"{attack_id}\"]')"),
        )
        .await;
    browser
        .goto(&server.url(&format!("/ui/#/runs/{attack_id}")))
        .await;
    browser
        .wait_for(
            "the run page",
            "return document.querySelector('[data-step=shape] .json')",
        )
        .await;
    let shown = browser
        .js("return document.querySelector('[data-step=shape] .json').textContent")
        .await;
    assert!(
        shown
            .as_str()
            .unwrap_or("")
            .contains("<script>window.__xss='script'</script>"),
        "the markup shows as text: {shown}"
    );
    browser.goto(&server.url("/ui/#/events")).await;
    browser
        .wait_for(
            "the events page",
            "return document.querySelectorAll('tbody tr').length",
        )
        .await;
    assert_eq!(browser.js("return window.__xss === undefined && document.querySelectorAll('main img, main script').length === 0").await, true, "nothing executed");
    browser.screenshot(&dir, "events").await;

    // Phone width: the run page still lays out.
    browser.resize(390, 844).await;
    browser
        .goto(&server.url(&format!("/ui/#/runs/{failed_id}")))
        .await;
    browser
        .wait_for(
            "the run page",
            "return document.getElementById('run-error')",
        )
        .await;
    let overflow = browser
        .js("return document.documentElement.scrollWidth <= window.innerWidth + 1")
        .await;
    assert_eq!(overflow, true, "no horizontal scrolling at phone width");
    browser.screenshot(&dir, "run-phone").await;

    server.stop().await;
}

both!(
    the_ui_works_behind_the_api_token,
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
);
async fn the_ui_works_behind_the_api_token(backend: Backend) {
    let Some(browser) = Browser::start().await else {
        return;
    };
    let wf =
        "trigger:\n  webhook: { path: /t }\nsteps:\n  - id: s\n    transform: { script: '1' }\n";
    let server = TestServer::start_on(backend, &[("t.yaml", wf)], &[], |c| {
        c.api_token = Some("ui-t0ken".into())
    })
    .await;
    server
        .run_once_with_token("/hooks/t", &json!({}), "ui-t0ken")
        .await;
    // Without credentials the UI is refused.
    browser.goto(&server.url("/ui/")).await;
    assert_eq!(
        browser
            .js("return document.getElementById('main') === null")
            .await,
        true
    );
    // With the browser's Basic credentials (token as password) it works,
    // and the page's API calls carry them.
    let basic = base64::engine::general_purpose::STANDARD.encode("admin:ui-t0ken");
    browser
        .set_header("Authorization", &format!("Basic {basic}"))
        .await;
    browser.goto(&server.url("/ui/#/runs")).await;
    browser
        .wait_for(
            "runs listed with the token",
            "return document.querySelectorAll('#runs-body tr').length",
        )
        .await;
    let resp = server
        .client
        .get(server.url("/ui/"))
        .send()
        .await
        .expect("sent");
    assert_eq!(resp.status().as_u16(), 401, "the UI needs the token");
    server.stop().await;
}

both!(
    the_ui_shows_each_workflows_connectors_and_a_steps_action,
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
);
async fn the_ui_shows_each_workflows_connectors_and_a_steps_action(backend: Backend) {
    let Some(browser) = Browser::start().await else {
        return;
    };
    let sink = Sink::start().await;
    let app = format!(
        "connector: sinkapp\nbase_url: \"{}\"\nactions:\n  send:\n    params:\n      text: {{ type: string, required: true }}\n    http:\n      path: /send\n      body: {{ text: \"{{{{ $.params.text }}}}\" }}\n",
        sink.url("/api")
    );
    let keyed = "connector: keyed\nbase_url: https://keyed.example.com\nauth:\n  bearer: \"{{ env.HOOKFLOW_UI_TEST_UNSET_KEY }}\"\nactions:\n  ping:\n    http: { path: /ping }\n";
    let sends = "name: sends\ntrigger:\n  webhook: { path: /sends }\nsteps:\n  - id: tell\n    uses: sinkapp.send\n    with: { text: \"{{ $.event.text }}\" }\n";
    let locked = "name: locked\ntrigger:\n  webhook: { path: /locked }\nsteps:\n  - id: ping\n    uses: keyed.ping\n";
    let server = TestServer::start_with_connectors_on(
        backend,
        &[("sends.yaml", sends), ("locked.yaml", locked)],
        &[("sinkapp.yaml", &app), ("keyed.yaml", keyed)],
    )
    .await;
    let run = server
        .run_once("/hooks/sends", &json!({"text": "hi"}))
        .await;
    assert_eq!(run["status"], "succeeded", "{run}");
    let dir = shots();

    // The workflows page: each workflow's connectors; the unset variable
    // that keeps `locked` from loading is named.
    browser.goto(&server.url("/ui/#/workflows")).await;
    let unset = browser
        .wait_for(
            "the connectors column",
            "return document.querySelector('tr[data-workflow=locked] [data-connector=keyed] .unset')?.textContent",
        )
        .await;
    assert!(
        unset
            .as_str()
            .is_some_and(|t| t.contains("HOOKFLOW_UI_TEST_UNSET_KEY")),
        "{unset}"
    );
    let listed = browser
        .js("return document.querySelector('tr[data-workflow=sends] [data-connector=sinkapp]')?.textContent")
        .await;
    assert!(
        listed.as_str().is_some_and(|t| t.contains("sinkapp")),
        "{listed}"
    );
    browser.screenshot(&dir, "workflows-connectors").await;

    // A workflow's page: its connectors, actions and variables.
    browser.goto(&server.url("/ui/#/workflows/locked")).await;
    let detail = browser
        .wait_for(
            "the workflow's connectors",
            "return document.querySelector('#workflow-connectors code.unset')?.textContent",
        )
        .await;
    assert_eq!(detail, "HOOKFLOW_UI_TEST_UNSET_KEY ✗");

    // A run: the step shows the action it called.
    browser
        .goto(&server.url(&format!("/ui/#/runs/{}", run["id"].as_str().expect("id"))))
        .await;
    let uses = browser
        .wait_for(
            "the step's action",
            "return document.querySelector('[data-step=tell] .uses')?.textContent",
        )
        .await;
    assert_eq!(uses, "uses sinkapp.send");
    browser.screenshot(&dir, "run-uses").await;
    server.stop().await;
}

both!(
    the_ui_shows_the_branch_the_items_and_when_a_waiting_run_wakes,
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
);
async fn the_ui_shows_the_branch_the_items_and_when_a_waiting_run_wakes(backend: Backend) {
    let Some(browser) = Browser::start().await else {
        return;
    };
    let sink = Sink::start().await;
    let flow = format!(
        r#"name: lines
trigger:
  webhook: {{ path: /lines }}
steps:
  - id: route
    switch:
      cases:
        - when: {{ $.event.kind: order }}
          steps:
            - id: each
              for_each: "{{{{ $.event.lines }}}}"
              steps:
                - id: push
                  http: {{ url: "{}", body: "{{{{ $.item }}}}", retry: {{ attempts: 1 }} }}
      default:
        - id: other
          transform: {{ script: '"other"' }}
"#,
        sink.url("/push")
    );
    let later = "name: later\ntrigger:\n  webhook: { path: /later }\nsteps:\n  - id: nap\n    delay: 1h\n  - id: after\n    transform: { script: '1' }\n";
    let server = TestServer::start_on(
        backend,
        &[("lines.yaml", &flow), ("later.yaml", later)],
        &[],
        |_| {},
    )
    .await;
    let dir = shots();
    // The second line is refused: its item fails, the others go through.
    sink.answer(
        "/push",
        vec![
            (200, vec![], "{}".into()),
            (422, vec![], "{\"error\":\"bad line\"}".into()),
        ],
    );
    let run = server
        .run_once(
            "/hooks/lines",
            &json!({"kind": "order", "lines": ["a", "b", "c"]}),
        )
        .await;
    assert_eq!(run["status"], "failed", "{run}");
    let id = run["id"].as_str().expect("id").to_string();
    browser.goto(&server.url(&format!("/ui/#/runs/{id}"))).await;
    let branch = browser
        .wait_for(
            "the branch",
            "return document.querySelector('[data-step=route] .branch')?.textContent",
        )
        .await;
    assert!(branch.as_str().unwrap_or("").contains("case 0"), "{branch}");
    // The branch's steps are shown inside the switch, the items inside the loop.
    let items = browser
        .js("return [...document.querySelectorAll('[data-step=route] [data-step=each] details.item')].map(d => [d.dataset.item, d.querySelector('summary .badge').textContent, d.open])")
        .await;
    assert_eq!(
        items,
        json!([
            ["0", "succeeded", false],
            ["1", "failed", true],
            ["2", "succeeded", false]
        ]),
        "items with their status; the failed one open"
    );
    let error = browser
        .js("return document.querySelector('details.item[data-item=\"1\"] [data-step=push] .step-error')?.textContent")
        .await;
    assert_eq!(error, "HTTP 422");
    // An item opens on a click, and shows its request.
    browser
        .click("details.item[data-item=\"2\"] > summary")
        .await;
    let opened = browser
        .wait_for(
            "the item to open",
            "return document.querySelector('details.item[data-item=\"2\"]').open && document.querySelector('details.item[data-item=\"2\"] .attempt')?.textContent",
        )
        .await;
    assert!(
        opened.as_str().unwrap_or("").contains("Attempt 1"),
        "{opened}"
    );
    browser.screenshot(&dir, "run-items").await;

    // A waiting run says when it wakes.
    let (_, answer) = server.post_json("/hooks/later", &json!({})).await;
    let waiting_id = answer["runs"][0].as_str().expect("run").to_string();
    let waiting = server.wait_run_status(&waiting_id, &["waiting"]).await;
    browser
        .goto(&server.url(&format!("/ui/#/runs/{waiting_id}")))
        .await;
    let wakes = browser
        .wait_for(
            "the wake-up time",
            "return document.getElementById('wakes')?.textContent",
        )
        .await;
    let at = waiting["next_attempt_at"].as_str().expect("wake time");
    let shown = browser
        .js(&format!("return new Date('{at}').toLocaleString()"))
        .await;
    let wakes = wakes.as_str().unwrap_or("");
    assert!(
        wakes.contains(shown.as_str().unwrap_or("?")) && wakes.contains("in "),
        "{wakes} / {shown}"
    );
    assert_eq!(
        browser
            .js("return document.querySelector('h1 .badge').textContent")
            .await,
        "waiting"
    );
    // The runs list can filter on it.
    browser.goto(&server.url("/ui/#/runs?status=waiting")).await;
    browser
        .wait_for(
            "the waiting run listed",
            &format!(
                "return document.querySelector('tr[data-run=\"{waiting_id}\"] .badge.waiting')"
            ),
        )
        .await;
    browser.screenshot(&dir, "runs-waiting").await;
    server.stop().await;
}
