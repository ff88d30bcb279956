//! The README's three-node example runs: `docs/postgres/three-nodes.sh`
//! starts three `serve` processes (the real binary) on one PostgreSQL
//! database with its round-robin balancer (`docs/postgres/balance.py`) in
//! front; events posted to the balancer are acknowledged, every node
//! acknowledges some of them, every node's API shows all of them run to
//! their end, and stopping the script stops every process it started.

mod common;

use serde_json::{json, Value};
use std::collections::HashSet;
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const EVENTS: usize = 30;

/// Four consecutive free loopback ports (the balancer, then the nodes).
fn four_free_ports() -> u16 {
    for _ in 0..50 {
        let base = fastrand::u16(20_000..60_000);
        let all_free = (0..4).all(|i| std::net::TcpListener::bind(("127.0.0.1", base + i)).is_ok());
        if all_free {
            return base;
        }
    }
    panic!("no four consecutive free loopback ports");
}

/// The script, in a process group of its own, stopped (its group
/// signalled, as Ctrl-C does) when dropped.
struct Script(Child);

impl Script {
    fn pgid(&self) -> i32 {
        self.0.id() as i32
    }

    fn stop(&mut self) {
        // SAFETY: signalling the process group this test started.
        unsafe {
            libc::kill(-self.pgid(), libc::SIGINT);
        }
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.0.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        // SAFETY: as above; it did not stop in time.
        unsafe {
            libc::kill(-self.pgid(), libc::SIGKILL);
        }
        let _ = self.0.wait();
    }
}

impl Drop for Script {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            self.stop();
        }
    }
}

async fn get(client: &reqwest::Client, url: &str) -> Option<(u16, Value)> {
    let resp = client.get(url).send().await.ok()?;
    let code = resp.status().as_u16();
    Some((code, resp.json().await.unwrap_or(Value::Null)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_three_node_example_shares_the_work_behind_its_balancer() {
    let Some(cluster) = common::pg::cluster() else {
        return;
    };
    if Command::new("python3").arg("--version").output().is_err() {
        assert!(
            std::env::var_os("HOOKFLOW_REQUIRE_POSTGRES").is_none(),
            "python3 (for the example's balancer) is not installed"
        );
        eprintln!("note: no python3 here; the three-node example is not run");
        return;
    }
    let url = cluster.fresh_database();
    let dir = tempfile::tempdir().expect("tmp");
    common::write_files(
        &dir.path().join("workflows"),
        &[(
            "orders.yaml",
            "trigger:\n  webhook: { path: /orders }\nsteps:\n  - id: total\n    transform: { script: 'event.amount * 2' }\n",
        )],
    );
    let port = four_free_ports();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/postgres/three-nodes.sh");
    let child = Command::new("bash")
        .arg(script)
        .arg(&url)
        .arg(port.to_string())
        .env("HOOKFLOW_BIN", env!("CARGO_BIN_EXE_hookflow"))
        .current_dir(dir.path())
        .process_group(0)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("the script starts");
    let mut script = Script(child);
    let client = common::client();
    let front = format!("http://127.0.0.1:{port}");
    let nodes: Vec<String> = (1..=3)
        .map(|i| format!("http://127.0.0.1:{}", port + i))
        .collect();

    // Every node ready, and the balancer passing requests on.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let mut ready = 0;
        for n in &nodes {
            if let Some((200, _)) = get(&client, &format!("{n}/readyz")).await {
                ready += 1;
            }
        }
        let front_up = matches!(
            get(&client, &format!("{front}/healthz")).await,
            Some((200, _))
        );
        if ready == nodes.len() && front_up {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the example did not come up: {ready} of 3 nodes ready, balancer up: {front_up}"
        );
        assert!(
            matches!(script.0.try_wait(), Ok(None)),
            "the script ended early"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Events through the balancer, each on a new connection (round robin
    // is per connection).
    let mut runs = Vec::new();
    for i in 0..EVENTS {
        let fresh = reqwest::Client::builder()
            .pool_max_idle_per_host(0)
            .build()
            .expect("client");
        let resp = fresh
            .post(format!("{front}/hooks/orders"))
            .json(&json!({"amount": i}))
            .send()
            .await
            .expect("sent through the balancer");
        assert_eq!(resp.status().as_u16(), 202);
        let body: Value = resp.json().await.expect("json");
        runs.push((i, body["runs"][0].as_str().expect("a run").to_string()));
    }

    // Every node shows every run, succeeded with its own result.
    let deadline = Instant::now() + Duration::from_secs(30);
    for node in &nodes {
        for (i, run_id) in &runs {
            loop {
                let shown = get(&client, &format!("{node}/api/runs/{run_id}")).await;
                if let Some((200, run)) = &shown {
                    if run["status"] == "succeeded" {
                        assert_eq!(run["steps"][0]["output"], json!(i * 2), "{run}");
                        break;
                    }
                }
                assert!(
                    Instant::now() < deadline,
                    "{node} never showed {run_id} succeeded: {shown:?}"
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
    // The events reached every node: each was acknowledged by the node the
    // balancer chose, which counts it in its own metrics.
    let mut served = HashSet::new();
    for node in &nodes {
        let text = common::metrics_at(&client, node).await;
        let name = "hookflow_events_total{workflow=\"orders\",outcome=\"accepted\"}";
        if common::gauge(&text, name).is_some_and(|n| n > 0) {
            served.insert(node.clone());
        }
    }
    assert_eq!(
        served.len(),
        3,
        "the balancer spread the events over every node: {served:?}"
    );

    // Stopping the script stops everything it started.
    script.stop();
    let deadline = Instant::now() + Duration::from_secs(15);
    for p in port..port + 4 {
        while std::net::TcpStream::connect(("127.0.0.1", p)).is_ok() {
            assert!(
                Instant::now() < deadline,
                "port {p} still answers after the script stopped"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}
