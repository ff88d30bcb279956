//! Several `serve` processes (the real binary) on one PostgreSQL database
//! (SPEC §10), each check a guarantee of SPEC §6 across nodes:
//!
//! - 3,000 events spread over three nodes while one of them is killed
//!   (`kill -9`) twice and started again: every acknowledged event's run
//!   succeeds (never lost, resumed after a crash); no run is delivered by
//!   two nodes at once (their spans at the sink never overlap); a run is
//!   delivered again only when the node that was delivering it died in
//!   between (the at-least-once window), with the same Idempotency-Key; the
//!   runs of a dead node are taken over within the lease (plus a poll), and
//!   all of them are delivered a few seconds after that (the surviving
//!   nodes work through the dead node's backlog beside their own load).
//! - The same dedupe key sent to two nodes at once makes one run.
//! - A run made on one node is replayed through another, on a workflow
//!   version only the first ever loaded; the first node's live stream shows
//!   the replay the second executed.
//! - A node stopped (SIGSTOP) past its lease while delivering, then
//!   continued (SIGCONT), writes nothing over the records of the node that
//!   took its run over.
//! - Run updates go from node to node only while a node has a live
//!   listener: none while nobody watches; a run that ended on one node just
//!   before another node's stream opened is shown there; updates flow while
//!   the stream is open and stop once it closed.

mod common;

use common::{write_files, BinServer, Received, Sink};
use serde_json::{json, Value};
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The lease the nodes run with: short, so takeovers happen within the test.
const LEASE: Duration = Duration::from_secs(2);

/// A folder of workflows and the arguments that put a node on the shared
/// database.
struct Nodes {
    _dir: tempfile::TempDir,
    args: Vec<String>,
}

impl Nodes {
    fn new(url: &str, workflows: &[(&str, &str)]) -> Nodes {
        let dir = tempfile::tempdir().expect("tmp");
        write_files(&dir.path().join("workflows"), workflows);
        let args = vec![
            "--workflows".to_string(),
            dir.path().join("workflows").display().to_string(),
            "--store".to_string(),
            url.to_string(),
            "--lease".to_string(),
            format!("{}s", LEASE.as_secs()),
        ];
        Nodes { _dir: dir, args }
    }

    fn start(&self) -> BinServer {
        let args: Vec<&str> = self.args.iter().map(String::as_str).collect();
        BinServer::start(&args, &[])
    }
}

fn deliver_workflow(sink: &Sink, dedupe: bool) -> String {
    let dedupe = if dedupe {
        "    dedupe: { key: \"{{ $.event.id }}\" }\n"
    } else {
        ""
    };
    format!(
        "name: w\ntrigger:\n  webhook:\n    path: /in\n{dedupe}steps:\n  - id: shape\n    transform:\n      script: '#{{ id: event.id }}'\n  - id: deliver\n    http:\n      url: \"{}\"\n      body: \"{{{{ $.steps.shape }}}}\"\n      retry: {{ attempts: 5, backoff: 100ms, max_backoff: 500ms }}\n",
        sink.url("/out")
    )
}

/// Two nodes on a fresh database, both serving [`deliver_workflow`].
struct TwoNodes {
    url: String,
    sink: Sink,
    /// Their workflows' folder, kept while they run.
    nodes: Arc<Nodes>,
    a: BinServer,
    b: BinServer,
}

/// [`TwoNodes`]; `None` where there is no PostgreSQL to test on.
async fn two_nodes(dedupe: bool) -> Option<TwoNodes> {
    let url = common::pg::cluster()?.fresh_database();
    let sink = Sink::start().await;
    let nodes = Arc::new(Nodes::new(
        &url,
        &[("w.yaml", &deliver_workflow(&sink, dedupe))],
    ));
    let (a, b) = {
        let nodes = Arc::clone(&nodes);
        tokio::task::spawn_blocking(move || (nodes.start(), nodes.start()))
            .await
            .expect("started")
    };
    Some(TwoNodes {
        url,
        sink,
        nodes,
        a,
        b,
    })
}

/// Stop nodes (SIGTERM), each waited for.
async fn terminate(nodes: impl IntoIterator<Item = BinServer>) {
    for s in nodes {
        tokio::task::spawn_blocking(move || s.terminate())
            .await
            .expect("stopped");
    }
}

/// Every delivery the sink got, by Idempotency-Key.
fn deliveries(sink: &mut Sink) -> BTreeMap<String, Vec<Received>> {
    let mut by_key: BTreeMap<String, Vec<Received>> = BTreeMap::new();
    while let Ok(r) = sink.rx.try_recv() {
        let key = r
            .headers
            .get("idempotency-key")
            .cloned()
            .expect("every delivery carries its Idempotency-Key");
        by_key.entry(key).or_default().push(r);
    }
    by_key
}

/// Every run in the store, through the API of `node`.
async fn all_runs(client: &reqwest::Client, node: &str) -> Vec<Value> {
    let mut out = Vec::new();
    let mut before = String::new();
    loop {
        let page = common::get_at(
            client,
            &format!("{node}/api/runs?limit=500&before={before}"),
        )
        .await;
        out.extend(page["items"].as_array().cloned().unwrap_or_default());
        match page["next_before"].as_str() {
            Some(b) => before = b.to_string(),
            None => return out,
        }
    }
}

/// An acknowledged event: its number, the node that answered, the answer,
/// and when.
type Ack = (usize, usize, Value, Instant);

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_nodes_share_3000_events_while_one_is_killed_twice() {
    let Some(cluster) = common::pg::cluster() else {
        return;
    };
    const EVENTS: usize = 3000;
    let url = cluster.fresh_database();
    let mut sink = Sink::start().await;
    // Each delivery takes a while at the sink: a kill catches some runs
    // mid-request.
    let hold = Duration::from_millis(20);
    sink.set_delay(Some(hold));
    let nodes = Arc::new(Nodes::new(
        &url,
        &[("w.yaml", &deliver_workflow(&sink, true))],
    ));
    let started: Vec<BinServer> = {
        let nodes = Arc::clone(&nodes);
        tokio::task::spawn_blocking(move || (0..3).map(|_| nodes.start()).collect())
            .await
            .expect("started")
    };
    let bases: Arc<Mutex<Vec<String>>> =
        Arc::new(Mutex::new(started.iter().map(|n| n.base.clone()).collect()));
    let mut servers: Vec<Option<BinServer>> = started.into_iter().map(Some).collect();
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .expect("client");

    // Senders: each event is sent until a node answers 2xx, moving to the
    // next node when one does not answer (as a load balancer would).
    let next = Arc::new(AtomicUsize::new(0));
    let acked: Arc<Mutex<Vec<Ack>>> = Arc::default();
    let deadline = Instant::now() + Duration::from_secs(240);
    let mut senders = Vec::new();
    for s in 0..12 {
        let (client, bases, next, acked) = (
            client.clone(),
            Arc::clone(&bases),
            Arc::clone(&next),
            Arc::clone(&acked),
        );
        senders.push(tokio::spawn(async move {
            let mut turn = s;
            loop {
                let n = next.fetch_add(1, Ordering::Relaxed);
                if n >= EVENTS {
                    return;
                }
                loop {
                    assert!(
                        Instant::now() < deadline,
                        "event {n} was never acknowledged"
                    );
                    let (i, base) = {
                        let b = bases.lock().expect("lock");
                        turn = (turn + 1) % b.len();
                        (turn, b[turn].clone())
                    };
                    let sent = client
                        .post(format!("{base}/hooks/in"))
                        .json(&json!({"id": format!("e{n}")}))
                        .send()
                        .await;
                    if let Ok(r) = sent {
                        if r.status().is_success() {
                            if let Ok(body) = r.json::<Value>().await {
                                acked
                                    .lock()
                                    .expect("lock")
                                    .push((n, i, body, Instant::now()));
                                break;
                            }
                        }
                    }
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
        }));
    }
    // The killer: node 0 dies at a third and at two thirds of the load,
    // and comes back a second later each time.
    let mut kills: Vec<Instant> = Vec::new();
    for at in [EVENTS / 3, 2 * EVENTS / 3] {
        while acked.lock().expect("lock").len() < at {
            assert!(Instant::now() < deadline, "the load stalled");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        if let Some(node) = servers[0].take() {
            node.kill();
        }
        kills.push(Instant::now());
        tokio::time::sleep(Duration::from_secs(1)).await;
        let restarted = {
            let nodes = Arc::clone(&nodes);
            tokio::task::spawn_blocking(move || nodes.start())
                .await
                .expect("restarted")
        };
        bases.lock().expect("lock")[0] = restarted.base.clone();
        servers[0] = Some(restarted);
    }
    for s in senders {
        s.await.expect("sender");
    }
    let acked = std::mem::take(&mut *acked.lock().expect("lock"));
    assert_eq!(acked.len(), EVENTS);
    let any = bases.lock().expect("lock")[1].clone();
    common::wait_queue_drained(&client, &any, Duration::from_secs(120), "the shared queue").await;

    // Every acknowledged event has its one run, succeeded.
    let runs = all_runs(&client, &any).await;
    let status: HashMap<String, String> = runs
        .iter()
        .map(|r| {
            (
                r["id"].as_str().unwrap_or_default().to_string(),
                r["status"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect();
    let mut lost = 0;
    let mut acked_by: HashMap<String, (usize, Instant)> = HashMap::new();
    for (n, node, body, at) in &acked {
        let ids = body["runs"].as_array().expect("runs");
        assert_eq!(ids.len(), 1, "event {n}: {body}");
        let id = ids[0].as_str().expect("id").to_string();
        if status.get(&id).map(String::as_str) != Some("succeeded") {
            lost += 1;
        }
        acked_by.entry(id).or_insert((*node, *at));
    }
    assert_eq!(runs.len(), EVENTS, "one run per event");

    // Deliveries: never two of one run at once; again only across a kill.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let by_key = deliveries(&mut sink);
    let mut duplicated = 0;
    let mut overlapping = 0;
    for (key, got) in &by_key {
        let mut times: Vec<Instant> = got.iter().map(|r| r.at).collect();
        times.sort();
        if times.len() > 1 {
            duplicated += 1;
            for w in times.windows(2) {
                if w[1] < w[0] + hold {
                    overlapping += 1;
                }
                assert!(
                    kills.iter().any(|k| w[0] <= *k && *k <= w[1]),
                    "{key} was delivered again with no crash in between"
                );
            }
        }
    }
    // Takeover: runs the killed node acknowledged and had not delivered
    // when it died were delivered by another node this long after: the
    // first of them once its lease ran out (the takeover), the last once
    // the dead node's backlog was worked through (the drain).
    let mut drained = Duration::ZERO;
    let mut taken_over = Duration::ZERO;
    for kill in &kills {
        let mut first = Duration::MAX;
        for (id, (node, at)) in &acked_by {
            if *node != 0 || *at > *kill {
                continue;
            }
            let Some(got) = by_key.get(&format!("{id}.deliver")) else {
                continue;
            };
            let delivered_before = got.iter().any(|r| r.at < *kill);
            if let Some(first_after) = got.iter().map(|r| r.at).filter(|t| t > kill).min() {
                if !delivered_before {
                    drained = drained.max(first_after - *kill);
                    first = first.min(first_after - *kill);
                }
            }
        }
        if first < Duration::MAX {
            taken_over = taken_over.max(first);
        }
    }
    println!(
        "acked {} | lost {lost} | runs delivered more than once {duplicated} | overlapping deliveries {overlapping} | taken over after {} ms, all delivered after {} ms (lease {} ms)",
        acked.len(),
        taken_over.as_millis(),
        drained.as_millis(),
        LEASE.as_millis()
    );
    assert_eq!(lost, 0, "every acknowledged event's run succeeded");
    assert_eq!(overlapping, 0, "no run was delivered by two nodes at once");
    assert_eq!(by_key.len(), EVENTS, "every run delivered");
    assert!(
        taken_over <= LEASE + Duration::from_secs(1),
        "the runs of a dead node were taken over after {taken_over:?}"
    );
    assert!(
        drained <= LEASE + Duration::from_secs(5),
        "the last run of a dead node was delivered after {drained:?}"
    );
    terminate(servers.into_iter().flatten()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_dedupe_key_sent_to_two_nodes_at_once_makes_one_run() {
    let Some(TwoNodes {
        sink: _sink,
        nodes: _nodes,
        a,
        b,
        ..
    }) = two_nodes(true).await
    else {
        return;
    };
    let client = common::client();
    for k in 0..10 {
        let body = json!({"id": format!("same-{k}")});
        let (x, y) = tokio::join!(
            client.post(a.url("/hooks/in")).json(&body).send(),
            client.post(b.url("/hooks/in")).json(&body).send()
        );
        let (x, y) = (x.expect("sent"), y.expect("sent"));
        let mut codes = [x.status().as_u16(), y.status().as_u16()];
        codes.sort();
        let (x, y): (Value, Value) = (x.json().await.expect("json"), y.json().await.expect("json"));
        assert_eq!(codes, [200, 202], "{x} {y}");
        assert_eq!(
            x["event_id"], y["event_id"],
            "both answers name the first event"
        );
        assert_eq!(x["runs"], y["runs"]);
    }
    common::wait_queue_drained(
        &client,
        &a.base,
        Duration::from_secs(30),
        "the shared queue",
    )
    .await;
    assert_eq!(all_runs(&client, &b.base).await.len(), 10);
    terminate([a, b]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_made_on_one_node_is_replayed_through_another_on_a_version_only_the_first_loaded() {
    let Some(cluster) = common::pg::cluster() else {
        return;
    };
    let url = cluster.fresh_database();
    let mut sink = Sink::start().await;
    sink.answer("/out", vec![(400, vec![], "{}".into())]);
    // Node A serves the workflow; node B has no workflow files at all.
    let a_nodes = Arc::new(Nodes::new(
        &url,
        &[("w.yaml", &deliver_workflow(&sink, false))],
    ));
    let b_nodes = Arc::new(Nodes::new(&url, &[]));
    let (a, b) = {
        let (an, bn) = (Arc::clone(&a_nodes), Arc::clone(&b_nodes));
        tokio::task::spawn_blocking(move || (an.start(), bn.start()))
            .await
            .expect("started")
    };
    let client = common::client();

    // A's live stream, collected in the background.
    let (stream, reader) = open_stream(&client, &a.url("/api/stream")).await;

    let answer = common::post_at(&client, &a.url("/hooks/in"), &json!({"id": "r1"})).await;
    let original_id = answer["runs"][0].as_str().expect("run").to_string();
    let original = common::wait_run_at(&client, &a.base, &original_id).await;
    assert_eq!(original["status"], "failed", "{original}");

    // B never loaded the workflow: the current version is unknown there.
    let refused = client
        .post(b.url(&format!("/api/runs/{original_id}/replay")))
        .json(&json!({"version": "current"}))
        .send()
        .await
        .expect("sent");
    assert_eq!(refused.status().as_u16(), 409);
    // The recorded one is in the store: B runs it.
    let replay_id = common::replay_at(
        &client,
        &b.base,
        &original_id,
        &json!({"version": "recorded"}),
    )
    .await;
    let done = common::wait_run_at(&client, &b.base, &replay_id).await;
    assert_eq!(done["status"], "succeeded", "{done}");
    assert_eq!(done["workflow_version"], original["workflow_version"]);
    assert_eq!(done["replay_of"], original_id.as_str());
    // Explained by B: the run as a test case, from B's API.
    let case = client
        .get(b.url(&format!("/api/runs/{replay_id}/test-case")))
        .send()
        .await
        .expect("sent");
    assert_eq!(case.status().as_u16(), 200);
    // The links both ways, seen from A.
    let original_now = common::get_at(&client, &a.url(&format!("/api/runs/{original_id}"))).await;
    assert_eq!(original_now["replays"], json!([replay_id]));
    let first = sink.next().await;
    let second = sink.next().await;
    assert_eq!(
        first.headers["idempotency-key"],
        format!("{original_id}.deliver")
    );
    assert_eq!(
        second.headers["idempotency-key"],
        format!("{replay_id}.deliver")
    );

    // A's stream showed the replay B executed, to its end.
    wait_shown(&stream, &replay_id, "A's stream never showed the replay").await;
    reader.abort();
    terminate([a, b]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_updates_go_to_other_nodes_only_while_one_of_them_watches() {
    let Some(TwoNodes {
        url,
        sink: _sink,
        nodes: _nodes,
        a,
        b,
    }) = two_nodes(false).await
    else {
        return;
    };
    let client = common::client();
    let heard = Heard::listen(&url, "hookflow_runs").await;
    let run_on_b = |id: String| {
        let (client, hook) = (client.clone(), b.url("/hooks/in"));
        async move {
            let answer = common::post_at(&client, &hook, &json!({ "id": id })).await;
            answer["runs"][0].as_str().expect("a run").to_string()
        }
    };

    // Nobody watches: B's runs are B's own.
    for i in 0..20 {
        run_on_b(format!("quiet-{i}")).await;
    }
    common::wait_queue_drained(&client, &b.base, Duration::from_secs(30), "B's runs").await;
    // Longer than a node gathers updates before it sends them.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        heard.count(),
        0,
        "no node had a listener, yet run updates were sent: {:?}",
        heard.payloads.lock().expect("lock")
    );

    // A run that ended on B just before A's stream opened (while the news
    // of the new listener was on its way) is shown there.
    let before = run_on_b("before".into()).await;
    let done = common::wait_run_at(&client, &b.base, &before).await;
    assert_eq!(done["status"], "succeeded", "{done}");
    let (stream, reader) = open_stream(&client, &a.url("/api/stream")).await;
    wait_shown(
        &stream,
        &before,
        "A's stream never showed the run B ended as it opened",
    )
    .await;

    // Watched: B's updates flow to A's stream.
    let during = run_on_b("during".into()).await;
    wait_shown(&stream, &during, "A's stream never showed B's run").await;
    assert!(heard.count() > 0);

    // Closed: B stops sending once A stopped saying it listens. (A finds
    // out the stream is gone when it next writes to it.)
    reader.abort();
    let closed = Instant::now();
    let deadline = closed + Duration::from_secs(45);
    for i in 0.. {
        let sent_before = heard.count();
        let run = run_on_b(format!("after-{i}")).await;
        common::wait_run_at(&client, &b.base, &run).await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        if heard.count() == sent_before {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "B still sends its run updates {}s after the only stream closed",
            closed.elapsed().as_secs()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    heard.pump.abort();
    terminate([a, b]).await;
}

/// A live stream (`GET /api/stream`), its text collected in the background
/// until the task is aborted.
async fn open_stream(
    client: &reqwest::Client,
    url: &str,
) -> (Arc<Mutex<String>>, tokio::task::JoinHandle<()>) {
    let stream: Arc<Mutex<String>> = Arc::default();
    let mut resp = client.get(url).send().await.expect("the stream opens");
    assert_eq!(resp.status().as_u16(), 200);
    let collected = Arc::clone(&stream);
    let reader = tokio::spawn(async move {
        while let Ok(Some(chunk)) = resp.chunk().await {
            collected
                .lock()
                .expect("lock")
                .push_str(&String::from_utf8_lossy(&chunk));
        }
    });
    (stream, reader)
}

/// Wait (10 s at most) until the stream showed `run_id` succeeded.
async fn wait_shown(stream: &Mutex<String>, run_id: &str, failure: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let text = stream.lock().expect("lock").clone();
        let seen = text.lines().any(|l| {
            l.strip_prefix("data:")
                .and_then(|d| serde_json::from_str::<Value>(d.trim()).ok())
                .is_some_and(|u| u["id"] == run_id && u["status"] == "succeeded")
        });
        if seen {
            return;
        }
        assert!(Instant::now() < deadline, "{failure}:\n{text}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Every notification on one channel, heard on a connection of the
/// test's own, collected in the background.
struct Heard {
    payloads: Arc<Mutex<Vec<String>>>,
    _client: tokio_postgres::Client,
    pump: tokio::task::JoinHandle<()>,
}

impl Heard {
    async fn listen(url: &str, channel: &str) -> Heard {
        use futures_util::StreamExt;
        let (client, mut connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
            .await
            .expect("the test connects to the database");
        let payloads: Arc<Mutex<Vec<String>>> = Arc::default();
        let into = Arc::clone(&payloads);
        // Polling the connection's messages also drives it.
        let pump = tokio::spawn(async move {
            let mut messages = futures_util::stream::poll_fn(move |cx| connection.poll_message(cx));
            while let Some(Ok(m)) = messages.next().await {
                if let tokio_postgres::AsyncMessage::Notification(n) = m {
                    into.lock().expect("lock").push(n.payload().to_string());
                }
            }
        });
        client
            .batch_execute(&format!("LISTEN {channel}"))
            .await
            .expect("LISTEN");
        Heard {
            payloads,
            _client: client,
            pump,
        }
    }

    fn count(&self) -> usize {
        self.payloads.lock().expect("lock").len()
    }
}

fn signal(server: &BinServer, sig: &str) {
    let status = std::process::Command::new("kill")
        .args([sig, &server.child.id().to_string()])
        .status()
        .expect("kill runs");
    assert!(status.success(), "kill {sig}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_stopped_past_its_lease_writes_nothing_over_the_new_owner() {
    let Some(TwoNodes {
        mut sink,
        nodes: _nodes,
        a,
        b,
        ..
    }) = two_nodes(false).await
    else {
        return;
    };
    // Long enough to stop A in the middle of its request.
    sink.set_delay(Some(Duration::from_millis(1500)));
    let client = common::client();
    let answer = common::post_at(&client, &a.url("/hooks/in"), &json!({"id": "p1"})).await;
    let run_id = answer["runs"][0].as_str().expect("run").to_string();
    // A executes it (it ingested it); once its request is out, stop A.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let run = common::get_at(&client, &b.url(&format!("/api/runs/{run_id}"))).await;
        let delivering = run["steps"]
            .as_array()
            .and_then(|s| s.iter().find(|s| s["id"] == "deliver"))
            .is_some_and(|s| s["status"] == "running");
        if delivering {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "A never started delivering: {run}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    signal(&a, "-STOP");
    let stopped_at = Instant::now();
    // B takes the run over once A's lease has run out, and finishes it.
    let done = common::wait_run_at(&client, &b.base, &run_id).await;
    assert_eq!(done["status"], "succeeded", "{done}");
    assert!(stopped_at.elapsed() >= LEASE - Duration::from_millis(500));
    signal(&a, "-CONT");
    // A resumes with the answer to its own request, and must write nothing.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let log = a.log.lock().expect("log").join("\n");
        if log.contains("taken over by another node") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "A never noticed the takeover:\n{log}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let after = common::get_at(&client, &b.url(&format!("/api/runs/{run_id}"))).await;
    assert_eq!(after, done, "the new owner's record is as it left it");
    let deliver = after["steps"]
        .as_array()
        .and_then(|s| s.iter().find(|s| s["id"] == "deliver"))
        .expect("deliver")
        .clone();
    assert_eq!(
        deliver["attempts"].as_array().map(Vec::len),
        Some(1),
        "{after}"
    );
    // Both requests reached the sink, one after the other.
    let (x, y) = (sink.next().await, sink.next().await);
    assert_eq!(x.headers["idempotency-key"], y.headers["idempotency-key"]);
    let (early, late) = if x.at < y.at {
        (x.at, y.at)
    } else {
        (y.at, x.at)
    };
    assert!(
        late >= early + Duration::from_millis(1500),
        "the deliveries overlapped"
    );
    terminate([a, b]).await;
}
