//! The PostgreSQL store on its own, through the storage interface the
//! engine uses, with two stores on one database standing for two nodes:
//! ingest and claims, fencing after a takeover, dedupe races, claims that
//! never overlap, workflow state off the async runtime, the
//! `synchronous_commit` check, and retention by whole days.

mod common;

use hookflow::record::{Event, EventId, Run, RunId, RunStatus, StepStatus, Timestamp};
use hookflow::store::postgres::{schema, PgOptions};
use hookflow::store::{DedupeClaim, Durability, Ingest, Ingested, Store, StoreError};
use serde_json::json;
use std::collections::HashSet;
use std::time::Duration;

fn event() -> Event {
    event_with_id(EventId::generate())
}

fn event_with_id(id: EventId) -> Event {
    common::records::event(id, json!({"k": "\u{0}"}))
}

fn run_of(event: &Event) -> Run {
    common::records::run_of(event, &[("shape", "transform"), ("deliver", "http")])
}

fn ingest_of(event: Event, key: Option<&str>) -> Ingest {
    let run = run_of(&event);
    let claims = key
        .map(|k| {
            vec![(
                0,
                DedupeClaim {
                    workflow: "w".into(),
                    key: k.into(),
                    expires_at: Timestamp::now().plus(Duration::from_secs(3600)),
                },
            )]
        })
        .unwrap_or_default();
    Ingest {
        event,
        stored_event: None,
        runs: vec![run],
        claims,
    }
}

/// A store on `url` with this lease; its heartbeat is not started, so the
/// runs it holds lapse after the lease unless a test starts it.
async fn open(url: &str, lease: Duration) -> Store {
    Store::open_postgres(
        url,
        &PgOptions {
            lease,
            accept_async_commit: false,
        },
    )
    .await
    .expect("the store opens")
}

fn stored_runs(i: &Ingested) -> Vec<RunId> {
    match i {
        Ingested::Stored { runs, .. } => runs.clone(),
        Ingested::Duplicate { .. } => panic!("expected a stored event: {i:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ingested_run_is_durable_held_by_its_node_and_assembled_from_rows() {
    let Some(cluster) = common::pg::cluster() else {
        return;
    };
    let url = cluster.fresh_database();
    let a = open(&url, Duration::from_secs(15)).await;
    let e = event();
    let answer = a.ingest(ingest_of(e.clone(), None)).await.expect("ingest");
    let runs = stored_runs(&answer);
    // Visible from another node at once (committed before the answer).
    let b = open(&url, Duration::from_secs(15)).await;
    let stored = b
        .run(runs[0].as_str())
        .await
        .expect("read")
        .expect("the run");
    assert_eq!(stored.status, RunStatus::Queued);
    assert_eq!(stored.steps.len(), 2);
    let event = b
        .event(e.id.as_str())
        .await
        .expect("read")
        .expect("the event");
    assert_eq!(event.runs, runs);
    assert_eq!(event.body, json!({"k": "\u{0}"}), "any JSON is kept");
    // Held by the ingesting node: the other finds nothing to claim.
    let far = Timestamp::now().plus(Duration::from_secs(60));
    assert!(b.claim(far, 10).await.expect("claim").is_empty());
    let mut claims = a.claim(far, 10).await.expect("claim");
    assert_eq!(claims.len(), 1);
    let claim = claims.pop().expect("one");
    let (mut run, _event) = a.load(&claim).await.expect("load").expect("a run");
    // Saves write what changed; the run reads back the same.
    run.status = RunStatus::Running;
    run.steps[0].status = StepStatus::Succeeded;
    run.steps[0].output = Some(json!({"n": 1}));
    a.save(&claim, &run, Durability::Now).await.expect("save");
    run.steps[1].status = StepStatus::Succeeded;
    run.status = RunStatus::Succeeded;
    a.finish(&claim, &run, Durability::Now)
        .await
        .expect("finish");
    a.release(claim, false);
    let back = b
        .run(run.id.as_str())
        .await
        .expect("read")
        .expect("the run");
    assert_eq!(
        serde_json::to_value(&back).expect("json"),
        serde_json::to_value(&run).expect("json")
    );
    assert_eq!(
        cluster.psql(&url, "SELECT count(*) FROM hookflow.queue"),
        "0"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_whose_lease_was_taken_over_writes_nothing() {
    let Some(cluster) = common::pg::cluster() else {
        return;
    };
    let url = cluster.fresh_database();
    let lease = Duration::from_secs(1);
    let a = open(&url, lease).await;
    let b = open(&url, lease).await;
    let answer = a.ingest(ingest_of(event(), None)).await.expect("ingest");
    let run_id = stored_runs(&answer).remove(0);
    let far = Timestamp::now().plus(Duration::from_secs(60));
    let a_claim = a
        .claim(far, 1)
        .await
        .expect("claim")
        .pop()
        .expect("held by a");
    let (mut a_run, _) = a.load(&a_claim).await.expect("load").expect("run");
    a.hold(&a_claim)
        .await
        .expect("a holds it while its lease lasts");
    // A's heartbeat never runs: its lease lapses and B takes the run over.
    tokio::time::sleep(lease + Duration::from_millis(300)).await;
    let b_claim = b
        .claim(far, 1)
        .await
        .expect("claim")
        .pop()
        .expect("taken over");
    assert_eq!(b_claim.run_id, run_id);
    let (mut b_run, _) = b.load(&b_claim).await.expect("load").expect("run");
    b_run.status = RunStatus::Succeeded;
    b_run.steps[0].status = StepStatus::Succeeded;
    b_run.steps[0].output = Some(json!("from b"));
    b.finish(&b_claim, &b_run, Durability::Now)
        .await
        .expect("b finishes");

    // A wakes up: every write fails as lost, and changes nothing.
    assert!(matches!(
        a.hold(&a_claim).await,
        Err(StoreError::LeaseLost { .. })
    ));
    a_run.status = RunStatus::Failed;
    a_run.steps[0].status = StepStatus::Failed;
    a_run.steps[0].error = Some("from a".into());
    for outcome in [
        a.save(&a_claim, &a_run, Durability::Now).await,
        a.finish(&a_claim, &a_run, Durability::Now).await,
    ] {
        assert!(
            matches!(outcome, Err(StoreError::LeaseLost { .. })),
            "{outcome:?}"
        );
    }
    a_run.next_attempt_at = Some(Timestamp::now());
    a_run.status = RunStatus::Retrying;
    assert!(matches!(
        a.schedule(&a_claim, &a_run).await,
        Err(StoreError::LeaseLost { .. })
    ));
    let stored = b.run(run_id.as_str()).await.expect("read").expect("run");
    assert_eq!(stored.status, RunStatus::Succeeded);
    assert_eq!(stored.steps[0].output, Some(json!("from b")));
    assert_eq!(stored.steps[0].error, None);
    assert_eq!(
        cluster.psql(&url, "SELECT count(*) FROM hookflow.queue"),
        "0"
    );
}

/// Writes of many runs at once are group-committed; each is still fenced
/// on its own and fails on its own: a run whose lease was taken over
/// writes nothing, a run whose write the database refuses fails alone
/// (and its rows are written by its next write), and the others are
/// written whatever their kind (a save, a retry, an end).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_of_many_runs_at_once_are_fenced_and_fail_each_alone() {
    let Some(cluster) = common::pg::cluster() else {
        return;
    };
    let url = cluster.fresh_database();
    let a = open(&url, Duration::from_secs(15)).await;
    for _ in 0..12 {
        a.ingest(ingest_of(event(), None)).await.expect("ingest");
    }
    let far = Timestamp::now().plus(Duration::from_secs(60));
    let claims = a.claim(far, 12).await.expect("claim");
    assert_eq!(claims.len(), 12);
    let mut runs = Vec::new();
    for c in &claims {
        runs.push(a.load(c).await.expect("load").expect("a run").0);
    }
    let ids: Vec<String> = runs.iter().map(|r| r.id.to_string()).collect();
    let id = |i: usize| ids[i].clone();
    // Run 3 was taken over (its token changed); run 7's write is refused
    // by the database (its byte count would overflow).
    cluster.psql(
        &url,
        &format!(
            "UPDATE hookflow.queue SET token = token + 1000000 WHERE run_id = '{}'",
            id(3)
        ),
    );
    cluster.psql(
        &url,
        &format!(
            "UPDATE hookflow.runs SET bytes = 2147483647 WHERE id = '{}'",
            id(7)
        ),
    );
    let retry_at = Timestamp::now().plus(Duration::from_secs(600));
    for (i, run) in runs.iter_mut().enumerate() {
        run.steps[0].status = StepStatus::Succeeded;
        run.steps[0].output = Some(json!({"run": i}));
        run.status = match i % 3 {
            0 => RunStatus::Succeeded,
            1 => RunStatus::Running,
            _ => {
                run.next_attempt_at = Some(retry_at);
                RunStatus::Retrying
            }
        };
    }
    let writes = claims.iter().zip(&runs).map(|(c, r)| {
        let a = &a;
        async move {
            match r.status {
                RunStatus::Succeeded => a.finish(c, r, Durability::Now).await,
                RunStatus::Running => a.save(c, r, Durability::Now).await,
                _ => a.schedule(c, r).await,
            }
        }
    });
    let outcomes = futures_util::future::join_all(writes).await;
    for (i, outcome) in outcomes.iter().enumerate() {
        match i {
            3 => assert!(
                matches!(outcome, Err(StoreError::LeaseLost { .. })),
                "run 3: {outcome:?}"
            ),
            7 => assert!(
                matches!(outcome, Err(e) if !matches!(e, StoreError::LeaseLost { .. })),
                "run 7: {outcome:?}"
            ),
            _ => assert!(outcome.is_ok(), "run {i}: {outcome:?}"),
        }
    }
    for (i, run) in runs.iter().enumerate() {
        let stored = a.run(&id(i)).await.expect("read").expect("the run");
        let queue = cluster.psql(
            &url,
            &format!(
                "SELECT coalesce(node, '-') || ' ' || due FROM hookflow.queue WHERE run_id = '{}'",
                id(i)
            ),
        );
        if i == 3 || i == 7 {
            assert_eq!(stored.status, RunStatus::Queued, "run {i} wrote nothing");
            assert_eq!(stored.steps[0].output, None, "run {i} wrote nothing");
            continue;
        }
        assert_eq!(
            serde_json::to_value(&stored).expect("json"),
            serde_json::to_value(run).expect("json"),
            "run {i} reads back as written"
        );
        match run.status {
            RunStatus::Succeeded => assert_eq!(queue, "", "run {i}: its queue row is gone"),
            RunStatus::Running => {
                assert!(queue.starts_with("node_"), "run {i}: still held: {queue}")
            }
            _ => assert_eq!(
                queue,
                format!("- {}", retry_at.0),
                "run {i}: freed for its retry"
            ),
        }
    }
    // Run 7 once the database takes it: its next write carries every row
    // the refused one had.
    cluster.psql(
        &url,
        &format!("UPDATE hookflow.runs SET bytes = 0 WHERE id = '{}'", id(7)),
    );
    let mut seven = runs[7].clone();
    seven.status = RunStatus::Succeeded;
    a.finish(&claims[7], &seven, Durability::Now)
        .await
        .expect("run 7 is written now");
    let stored = a.run(&id(7)).await.expect("read").expect("run 7");
    assert_eq!(
        serde_json::to_value(&stored).expect("json"),
        serde_json::to_value(&seven).expect("json")
    );
}

/// The heartbeat renews every run its node holds, and closing lets go of
/// every one, without waiting for a run being written at that moment: a
/// batch of run writes holds several rows' locks, and a heartbeat that
/// waited for one of them while holding the others deadlocked with it.
/// The row being written is left to its write.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_heartbeat_and_close_do_not_wait_for_a_run_being_written() {
    let Some(cluster) = common::pg::cluster() else {
        return;
    };
    let url = cluster.fresh_database();
    let a = open(&url, Duration::from_secs(15)).await;
    let mut runs = Vec::new();
    for _ in 0..2 {
        let answer = a.ingest(ingest_of(event(), None)).await.expect("ingest");
        runs.extend(stored_runs(&answer));
    }
    // Leases from long ago, so a renewal shows.
    cluster.psql(
        &url,
        "UPDATE hookflow.queue SET lease_until = now() - interval '1 hour'",
    );
    // Run 0's row is being written (locked in an open transaction).
    let (mut writer, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
        .await
        .expect("connect");
    let connection = tokio::spawn(connection);
    let tx = writer.transaction().await.expect("begin");
    tx.execute(
        "SELECT 1 FROM hookflow.queue WHERE run_id = $1 FOR UPDATE",
        &[&runs[0].as_str()],
    )
    .await
    .expect("lock the row");
    let (stop_tx, stop) = tokio::sync::watch::channel(false);
    // `start` renews every lease once before it returns.
    let started = tokio::time::timeout(Duration::from_secs(5), a.start(stop)).await;
    let tasks = started
        .expect("the heartbeat waited for a row being written")
        .expect("the store starts");
    let renewed = |run: &RunId| {
        cluster.psql(
            &url,
            &format!(
                "SELECT lease_until > now() FROM hookflow.queue WHERE run_id = '{}'",
                run.as_str()
            ),
        )
    };
    assert_eq!(renewed(&runs[1]), "t", "the other run's lease is renewed");
    assert_eq!(
        renewed(&runs[0]),
        "f",
        "the row being written is left to its write"
    );
    let closed = tokio::time::timeout(Duration::from_secs(5), a.close()).await;
    closed
        .expect("close waited for a row being written")
        .expect("close");
    let holder = |run: &RunId| {
        cluster.psql(
            &url,
            &format!(
                "SELECT coalesce(node, '-') FROM hookflow.queue WHERE run_id = '{}'",
                run.as_str()
            ),
        )
    };
    assert_eq!(holder(&runs[1]), "-", "the other run is let go");
    assert!(
        holder(&runs[0]).starts_with("node_"),
        "the row being written is left to its write"
    );
    tx.rollback().await.expect("rollback");
    drop(writer);
    let _ = connection.await;
    let _ = stop_tx.send(true);
    for t in tasks {
        let _ = t.await;
    }
}

/// Ingests that arrive together are one transaction; when it fails (here
/// one event's id is already stored), each ingest is written again on its
/// own, exactly as it came: the one that cannot be stored fails alone, and
/// every other is stored with its run, held by this node, whose event
/// names it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_of_ingests_that_fails_is_written_one_by_one() {
    let Some(cluster) = common::pg::cluster() else {
        return;
    };
    let url = cluster.fresh_database();
    let a = open(&url, Duration::from_secs(15)).await;
    let taken = event();
    a.ingest(ingest_of(taken.clone(), None))
        .await
        .expect("the first ingest");
    let far = Timestamp::now().plus(Duration::from_secs(60));
    let first = a.claim(far, 10).await.expect("claim");
    assert_eq!(first.len(), 1);
    let mut events: Vec<Event> = (0..15).map(|_| event()).collect();
    events.insert(7, event_with_id(taken.id.clone()));
    let answers = futures_util::future::join_all(
        events
            .iter()
            .map(|e| a.ingest(ingest_of(e.clone(), Some(&format!("key-{}", e.id))))),
    )
    .await;
    let mut stored = std::collections::HashMap::new();
    for (i, answer) in answers.iter().enumerate() {
        if i == 7 {
            assert!(answer.is_err(), "an event id already stored: {answer:?}");
            continue;
        }
        let answer = answer.as_ref().expect("stored");
        let runs = stored_runs(answer);
        assert_eq!(runs.len(), 1, "event {i}");
        stored.insert(runs[0].clone(), events[i].id.clone());
    }
    let claims = a.claim(far, 100).await.expect("claim");
    assert_eq!(claims.len(), 15, "every stored run is held by this node");
    for c in &claims {
        let (run, event) = a.load(c).await.expect("load").expect("a run");
        let event_id = stored.get(&run.id).expect("a run of a stored event");
        assert_eq!(&event.id, event_id);
        assert_eq!(event.runs, vec![run.id.clone()], "its event names the run");
        let row = a
            .event(event_id.as_str())
            .await
            .expect("read")
            .expect("the event is stored");
        assert_eq!(row.runs, vec![run.id.clone()]);
    }
    // The refused event's dedupe key was not kept: its retry is not a
    // duplicate of anything.
    let retry = event();
    let key = format!("key-{}", taken.id);
    let again = a
        .ingest(ingest_of(retry, Some(&key)))
        .await
        .expect("the retry");
    assert_eq!(stored_runs(&again).len(), 1);
}

/// An ingest transaction goes in two round trips (BEGIN with the dedupe
/// claim, the insert with COMMIT): one that fails at its claim is rolled
/// back before its connection serves anyone else.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ingest_that_fails_at_its_claim_leaves_no_transaction_open() {
    let Some(cluster) = common::pg::cluster() else {
        return;
    };
    let url = cluster.fresh_database();
    let a = open(&url, Duration::from_secs(15)).await;
    a.ingest(ingest_of(event(), Some("warm-up")))
        .await
        .expect("the first ingest");
    cluster.psql(
        &url,
        "CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS $$
           BEGIN IF NEW.key = 'refused' THEN RAISE EXCEPTION 'refused key'; END IF; RETURN NEW; END $$;
         CREATE TRIGGER refuse BEFORE INSERT ON hookflow.dedupe FOR EACH ROW EXECUTE FUNCTION refuse();",
    );
    for round in 0..3 {
        let keys: Vec<String> = (0..12)
            .map(|i| {
                if i == 5 {
                    "refused".to_string()
                } else {
                    format!("key-{round}-{i}")
                }
            })
            .collect();
        let answers = futures_util::future::join_all(
            keys.iter().map(|k| a.ingest(ingest_of(event(), Some(k)))),
        )
        .await;
        for (k, answer) in keys.iter().zip(&answers) {
            match answer {
                Err(e) if k == "refused" => {
                    assert!(e.to_string().contains("refused key"), "{e}")
                }
                Ok(i) => assert_eq!(stored_runs(i).len(), 1, "{k}"),
                other => panic!("{k}: {other:?}"),
            }
        }
        // Every connection of the pool, at once, answers outside any
        // transaction (one left in the failed one would refuse).
        let reads = futures_util::future::join_all((0..48).map(|_| a.event("evt_none"))).await;
        for r in reads {
            assert_eq!(r.expect("a read on a clean connection").map(|e| e.id), None);
        }
    }
}

/// A node busy with fresh runs of its own still takes the runs waiting in
/// the database (a dead node's, retries): a due poll comes first, for up
/// to half the places.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runs_waiting_in_the_database_are_not_starved_by_fresh_ones() {
    let Some(cluster) = common::pg::cluster() else {
        return;
    };
    let url = cluster.fresh_database();
    let a = open(&url, Duration::from_secs(15)).await;
    let b = open(&url, Duration::from_secs(15)).await;
    for _ in 0..6 {
        a.ingest(ingest_of(event(), None))
            .await
            .expect("ingest on a");
    }
    // A run of b's, let go: it waits in the database for any node.
    let waiting = stored_runs(
        &b.ingest(ingest_of(event(), None))
            .await
            .expect("ingest on b"),
    )
    .remove(0);
    cluster.psql(
        &url,
        &format!(
            "UPDATE hookflow.queue SET node = NULL, token = NULL, lease_until = NULL WHERE run_id = '{}'",
            waiting.as_str()
        ),
    );
    let far = Timestamp::now().plus(Duration::from_secs(60));
    let claims = a.claim(far, 2).await.expect("claim");
    assert_eq!(claims.len(), 2);
    assert!(
        claims.iter().any(|c| c.run_id == waiting),
        "the waiting run is taken beside a's own: {:?}",
        claims
            .iter()
            .map(|c| c.run_id.to_string())
            .collect::<Vec<_>>()
    );
    // The rest of a's own runs follow.
    let rest = a.claim(far, 10).await.expect("claim");
    assert_eq!(rest.len(), 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dedupe_key_sent_to_two_nodes_at_once_makes_one_run() {
    let Some(cluster) = common::pg::cluster() else {
        return;
    };
    let url = cluster.fresh_database();
    let a = open(&url, Duration::from_secs(15)).await;
    let b = open(&url, Duration::from_secs(15)).await;
    for round in 0..20 {
        let key = format!("key-{round}");
        let (x, y) = tokio::join!(
            a.ingest(ingest_of(event(), Some(&key))),
            b.ingest(ingest_of(event(), Some(&key)))
        );
        let (x, y) = (x.expect("a answers"), y.expect("b answers"));
        let (stored, dup) = match (&x, &y) {
            (Ingested::Stored { .. }, Ingested::Duplicate { .. }) => (&x, &y),
            (Ingested::Duplicate { .. }, Ingested::Stored { .. }) => (&y, &x),
            _ => panic!("round {round}: one stored, one duplicate: {x:?} {y:?}"),
        };
        let (
            Ingested::Stored { event_id, runs },
            Ingested::Duplicate {
                event_id: first,
                runs: first_runs,
            },
        ) = (stored, dup)
        else {
            unreachable!("matched above")
        };
        assert_eq!((event_id, runs), (first, first_runs), "round {round}");
    }
    assert_eq!(
        cluster.psql(&url, "SELECT count(*) FROM hookflow.runs"),
        "20"
    );
    // Within one node too, many at once.
    let mut tasks = Vec::new();
    for _ in 0..32 {
        let a = a.clone();
        tasks.push(tokio::spawn(async move {
            a.ingest(ingest_of(event(), Some("shared"))).await
        }));
    }
    let mut stored = 0;
    for t in tasks {
        if let Ingested::Stored { .. } = t.await.expect("task").expect("answer") {
            stored += 1;
        }
    }
    assert_eq!(stored, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn free_runs_are_claimed_by_one_node_each() {
    let Some(cluster) = common::pg::cluster() else {
        return;
    };
    let url = cluster.fresh_database();
    let first = open(&url, Duration::from_secs(15)).await;
    let mut ids = HashSet::new();
    for _ in 0..120 {
        let answer = first
            .ingest(ingest_of(event(), None))
            .await
            .expect("ingest");
        ids.extend(stored_runs(&answer));
    }
    // A clean stop lets go of what the node held: free for any node.
    first.close().await.expect("close");
    let a = open(&url, Duration::from_secs(15)).await;
    let b = open(&url, Duration::from_secs(15)).await;
    let far = Timestamp::now().plus(Duration::from_secs(60));
    let mut seen: HashSet<RunId> = HashSet::new();
    for _ in 0..20 {
        let (x, y) = tokio::join!(a.claim(far, 7), b.claim(far, 7));
        for c in x.expect("claims").into_iter().chain(y.expect("claims")) {
            assert!(seen.insert(c.run_id.clone()), "{} claimed twice", c.run_id);
        }
        // Each poll that finds something lets the next one go at once.
    }
    while seen.len() < ids.len() {
        let got = a.claim(far, 50).await.expect("claims");
        if got.is_empty() {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        for c in got {
            assert!(seen.insert(c.run_id.clone()), "{} claimed twice", c.run_id);
        }
    }
    assert_eq!(seen, ids.into_iter().collect());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workflow_state_is_shared_and_waits_off_the_runtime() {
    let Some(cluster) = common::pg::cluster() else {
        return;
    };
    let url = cluster.fresh_database();
    let a = open(&url, Duration::from_secs(15)).await;
    let b = open(&url, Duration::from_secs(15)).await;
    let (sa, sb) = (a.state(), b.state());
    assert!(sa.blocks(), "scripts that use it must not run inline");
    assert!(!Store::temporary().expect("sled").state().blocks());
    let got = tokio::task::spawn_blocking(move || {
        sa.set("w", "count", &json!({"n": 2})).expect("set");
        sb.get("w", "count").expect("get")
    })
    .await
    .expect("blocking task");
    assert_eq!(got, Some(json!({"n": 2})));
    let sb = b.state();
    let gone = tokio::task::spawn_blocking(move || {
        sb.set("w", "count", &serde_json::Value::Null)
            .expect("clear");
        sb.get("w", "count").expect("get")
    })
    .await
    .expect("blocking task");
    assert_eq!(gone, None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn asynchronous_commit_is_refused_unless_accepted() {
    let Some(cluster) = common::pg::cluster() else {
        return;
    };
    let url = cluster.fresh_database();
    let db = url.rsplit('/').next().expect("a database name").to_string();
    cluster.psql(
        &url,
        &format!("ALTER DATABASE {db} SET synchronous_commit = off"),
    );
    let refused = Store::open_postgres(&url, &PgOptions::default()).await;
    let Err(e) = refused else {
        panic!("a database that commits asynchronously was accepted")
    };
    assert!(e.to_string().contains("--accept-async-commit"), "{e}");
    let accepted = Store::open_postgres(
        &url,
        &PgOptions {
            accept_async_commit: true,
            ..PgOptions::default()
        },
    )
    .await;
    assert!(accepted.is_ok());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_drops_whole_days_but_not_one_with_unfinished_runs() {
    let Some(cluster) = common::pg::cluster() else {
        return;
    };
    let url = cluster.fresh_database();
    let store = open(&url, Duration::from_secs(15)).await;
    let day_ms = 24 * 3600 * 1000;
    let today = schema::day_start(Timestamp::now().0);
    // Two old days, each with its partitions and an event with a run; the
    // run of the later one is unfinished (it has a queue row).
    let mut old = Vec::new();
    for back in [3, 2] {
        let day = today - back * day_ms;
        for (table, prefix) in schema::HISTORY {
            cluster.psql(
                &url,
                &format!(
                    "CREATE TABLE hookflow.{} PARTITION OF hookflow.{table} FOR VALUES FROM ('{}') TO ('{}')",
                    schema::partition_name(table, day),
                    schema::id_floor(prefix, day),
                    schema::id_floor(prefix, day + day_ms)
                ),
            );
        }
        let event_id = format!("{}0000000000000001", schema::id_floor("evt_", day + 1000));
        let run_id = format!("{}0000000000000001", schema::id_floor("run_", day + 1000));
        cluster.psql(
            &url,
            &format!(
                "INSERT INTO hookflow.events (id, received_at, outcome, workflows, runs, bytes, record)
                 VALUES ('{event_id}', {t}, 'accepted', ',w,', ARRAY['{run_id}'], 10, '{{}}');
                 INSERT INTO hookflow.runs (id, event_id, workflow, status, created_at, bytes, plan, head)
                 VALUES ('{run_id}', '{event_id}', 'w', 'succeeded', {t}, 10, '[]', '{{}}');
                 INSERT INTO hookflow.steps (run_id, idx, record) VALUES ('{run_id}', 0, '{{}}');",
                t = day + 1000
            ),
        );
        old.push((day, event_id, run_id));
    }
    cluster.psql(
        &url,
        &format!(
            "INSERT INTO hookflow.queue (run_id, due) VALUES ('{}', 0)",
            old[1].2
        ),
    );
    // A recent event stays.
    let recent = store
        .ingest(ingest_of(event(), None))
        .await
        .expect("ingest");
    let recent = stored_runs(&recent).remove(0);

    let now = Timestamp::now();
    let cutoff = Timestamp(now.0 - day_ms);
    let pruned = store.prune(cutoff, u64::MAX, now).await.expect("prune");
    assert_eq!((pruned.events, pruned.runs), (1, 1), "{pruned:?}");
    let exists = |table: &str, day: u64| {
        cluster.psql(
            &url,
            &format!(
                "SELECT to_regclass('hookflow.{}') IS NOT NULL",
                schema::partition_name(table, day)
            ),
        ) == "t"
    };
    for (table, _) in schema::HISTORY {
        assert!(
            !exists(table, old[0].0),
            "{table} of the old day was dropped"
        );
        assert!(exists(table, old[1].0), "{table} of the busy day stays");
    }
    let count = |sql: String| cluster.psql(&url, &sql);
    assert_eq!(
        count(format!(
            "SELECT count(*) FROM hookflow.runs WHERE id = '{}'",
            old[1].2
        )),
        "1"
    );
    assert_eq!(
        count(format!(
            "SELECT count(*) FROM hookflow.events WHERE id = '{}'",
            old[1].1
        )),
        "1"
    );
    assert!(store.run(recent.as_str()).await.expect("read").is_some());
    // Partitions for the coming days are ready.
    assert!(exists("events", today + day_ms));
}
