//! The README's "Connect an app" section, followed as written: its
//! workflow file (read from README.md), `validate`, `connectors`, the dry
//! run, and then `serve` with a signed Stripe event reaching Slack's
//! stand-in (on sled and on PostgreSQL). If the README changes, this test
//! follows it.

mod common;
#[path = "standins/slack.rs"]
mod slack;

use common::standin::StandIn;
use common::{binary, wait_run_at, with_store, write_files, Backend, BinServer};
use std::process::Command;

const STRIPE_SECRET: &str = "whsec_readme_0123456789";

/// The YAML block after `<!-- connect-an-app -->` in README.md.
fn readme_workflow() -> String {
    let readme = std::fs::read_to_string(format!("{}/README.md", env!("CARGO_MANIFEST_DIR")))
        .expect("README.md");
    let at = readme
        .find("<!-- connect-an-app -->")
        .expect("the README marks its Connect an app workflow");
    let block = readme[at..]
        .split_once("```yaml\n")
        .and_then(|(_, rest)| rest.split_once("```"))
        .map(|(yaml, _)| yaml.to_string())
        .expect("a yaml block");
    assert!(block.contains("uses: slack.post_message"), "{block}");
    assert!(!block.contains("http"), "the file writes no URL: {block}");
    block
}

fn hookflow(dir: &std::path::Path, args: &[&str], env: &[(&str, &str)]) -> (i32, String) {
    let mut cmd = Command::new(binary());
    cmd.current_dir(env!("CARGO_MANIFEST_DIR"))
        .args(args)
        .arg("--workflows")
        .arg(dir)
        .env_remove("STRIPE_WEBHOOK_SECRET")
        .env_remove("SLACK_BOT_TOKEN");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("runs");
    (
        out.status.code().unwrap_or(-1),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

both!(
    the_readme_connects_stripe_to_slack_in_one_file,
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
);
async fn the_readme_connects_stripe_to_slack_in_one_file(backend: Backend) {
    let dir = tempfile::tempdir().expect("tmp");
    let workflows = dir.path().join("workflows");
    write_files(&workflows, &[("stripe-to-slack.yaml", &readme_workflow())]);
    let secrets = [
        ("STRIPE_WEBHOOK_SECRET", STRIPE_SECRET),
        ("SLACK_BOT_TOKEN", slack::TOKEN),
    ];

    // Step 2: without its secrets the file names both.
    let file = workflows.join("stripe-to-slack.yaml");
    let validate = |env: &[(&str, &str)]| {
        let mut cmd = Command::new(binary());
        cmd.current_dir(env!("CARGO_MANIFEST_DIR"))
            .arg("validate")
            .arg(&file)
            .env_remove("STRIPE_WEBHOOK_SECRET")
            .env_remove("SLACK_BOT_TOKEN");
        for (k, v) in env {
            cmd.env(k, v);
        }
        let out = cmd.output().expect("runs");
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    };
    let (code, out) = validate(&[]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("STRIPE_WEBHOOK_SECRET") && out.contains("SLACK_BOT_TOKEN"),
        "{out}"
    );
    // Step 3: with them it is valid, and the action is described.
    let (code, out) = validate(&secrets);
    assert_eq!(code, 0, "{out}");
    let out = Command::new(binary())
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args(["connectors", "slack.post_message"])
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(0));
    let out = String::from_utf8_lossy(&out.stdout);
    assert!(out.contains("channel") && out.contains("required"), "{out}");

    // Step 4: the dry run shows the request to Slack, the token blanked.
    let (code, out) = hookflow(
        &workflows,
        &[
            "run",
            "stripe-to-slack",
            "--event",
            "workflows/fixtures/stripe_payment_intent_succeeded.json",
        ],
        &secrets,
    );
    assert_eq!(code, 0, "{out}");
    for words in [
        "slack.post_message",
        "would send (dry run; --send to send) POST https://slack.com/api/chat.postMessage",
        "Authorization: Bearer [redacted]",
        r##"{"channel":"#sales","text":"Payment of 2000 usd from jenny@example.com"}"##,
    ] {
        assert!(out.contains(words), "{words:?} missing in\n{out}");
    }
    assert!(!out.contains(slack::TOKEN), "{out}");

    // Step 5: served, a signed Stripe event reaches Slack (its stand-in).
    let api = StandIn::start(slack::routes()).await;
    let store = backend.store_args(dir.path());
    let server = BinServer::start(
        &with_store(
            &[
                "--workflows",
                &workflows.display().to_string(),
                "--connectors",
                &format!("{}/connectors", env!("CARGO_MANIFEST_DIR")),
            ],
            &store,
        ),
        &[
            secrets[0],
            secrets[1],
            ("SLACK_BASE_URL", api.base.as_str()),
        ],
    );
    let body = common::shipped_fixture("stripe_payment_intent_succeeded.json");
    let client = common::client();
    let resp = common::post_stripe_signed(
        &client,
        &server.url("/hooks/stripe-sales"),
        STRIPE_SECRET.as_bytes(),
        body,
    )
    .await;
    assert_eq!(resp.status().as_u16(), 202);
    let answer: serde_json::Value = resp.json().await.expect("json");
    let run = wait_run_at(
        &client,
        &server.base,
        answer["runs"][0].as_str().expect("a run"),
    )
    .await;
    assert_eq!(run["status"], "succeeded", "{run}");
    assert_eq!(api.violations(), Vec::<String>::new());
    let got = api.requests_to(slack::POST_MESSAGE);
    assert_eq!(
        got[0].json(),
        serde_json::json!({"channel": "#sales", "text": "Payment of 2000 usd from jenny@example.com"})
    );
    assert_eq!(
        run["summary"],
        "payment_intent.succeeded · pi_3PqTn2LkdIwHu7ix0QzXyZ12"
    );
}
