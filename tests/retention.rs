//! `--retention-size` is a promise about the disk: the data folder, as
//! `du` counts it (every tree, sled's log with its free space, its
//! snapshots), stays within the limit however much arrives. The store
//! counts only its records' bytes, and sled's log takes several times
//! that; this test holds the two together with the real binary, a real
//! folder, and far more traffic than the limit holds.
//!
//! Ignored for now: the store keeps its records under a quarter of the
//! limit (1.5 MB here), but under this load sled's log grows to 2–7
//! times the limit (11–40 MB for 6 MiB): a segment of its log is reused
//! only once every page in it has moved, and sled moves one page per node
//! rewrite, slower than pruning frees them. It stays as the measurement of
//! that open gap; what was tried, and how a bare sled program with the
//! same shape behaves, is in `docs/performance.md`.
//!
//! sled only: on PostgreSQL the database's files are the operator's, and
//! retention there is by day partitions and batched deletes
//! (`tests/postgres.rs`).

mod common;

use common::disk::disk_usage;
use common::{write_files, BinServer};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

const LIMIT: u64 = 6 * 1024 * 1024;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "fails today: under a sustained load sled's log grows to 2-7 times the limit before pruned \
            segments are reused (run with --ignored to measure)"]
async fn the_data_folder_stays_within_the_retention_size() {
    let dir = tempfile::tempdir().expect("tmp");
    let wf = "trigger:\n  webhook: { path: /in }\nsteps:\n  - id: shape\n    transform: { script: '#{ id: event.id, amount: event.data.object.amount }' }\n";
    write_files(&dir.path().join("workflows"), &[("w.yaml", wf)]);
    let data = dir.path().join("data");
    let args = [
        "--workflows".to_string(),
        dir.path().join("workflows").display().to_string(),
        "--data".to_string(),
        data.display().to_string(),
        "--retention-size".to_string(),
        format!("{LIMIT}"),
        "--prune-interval".to_string(),
        "100ms".to_string(),
    ];
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let server = BinServer::start(&args, &[]);

    // A 1.5 KB Stripe event, each with its own id and figures (as compressible
    // as real traffic): about 8 times the limit in records, 20 in log.
    let fixture = include_str!("../benches/fixtures/stripe_payment_intent_1500.json");
    let template: serde_json::Value = serde_json::from_str(fixture).expect("fixture");
    let sent = Arc::new(AtomicU64::new(0));
    let peak = Arc::new(AtomicU64::new(0));
    let watching = {
        let (peak, data) = (peak.clone(), data.clone());
        tokio::spawn(async move {
            loop {
                peak.fetch_max(disk_usage(&data), Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
    };
    const EVENTS: u64 = 24_000;
    let client = reqwest::Client::new();
    let mut senders = Vec::new();
    for _ in 0..16 {
        let (client, url, sent, template) = (
            client.clone(),
            server.url("/hooks/in"),
            sent.clone(),
            template.clone(),
        );
        senders.push(tokio::spawn(async move {
            loop {
                let n = sent.fetch_add(1, Ordering::Relaxed);
                if n >= EVENTS {
                    return;
                }
                let mut body = template.clone();
                body["id"] = format!("evt_{n:024x}").into();
                body["data"]["object"]["amount"] = (1000 + n * 7919 % 100_000).into();
                body["data"]["object"]["id"] = format!("pi_{:032x}", n * 0x9E37_79B9).into();
                let resp = client.post(&url).json(&body).send().await.expect("sent");
                assert_eq!(resp.status().as_u16(), 202);
            }
        }));
    }
    for s in senders {
        s.await.expect("sender");
    }
    // Let the last runs finish and pruning catch up.
    common::wait_queue_drained(&client, &server.base, Duration::from_secs(60), "the load").await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    watching.abort();
    let after = disk_usage(&data);
    let peak = peak.load(Ordering::Relaxed).max(after);
    let events = client
        .get(server.url("/api/events?limit=1"))
        .send()
        .await
        .expect("events")
        .json::<serde_json::Value>()
        .await
        .expect("json");
    let metrics = common::metrics_at(&client, &server.base).await;
    let records = common::gauge(&metrics, "hookflow_store_record_bytes")
        .map_or("?".to_string(), |b| b.to_string());
    server.stop();
    println!("records {records} B");
    println!(
        "limit {LIMIT} B: data folder at most {peak} B during the load, {after} B after; newest kept {}",
        events["items"][0]["id"]
    );
    assert!(
        events["items"].as_array().is_some_and(|i| !i.is_empty()),
        "the newest history is kept: {events}"
    );
    assert!(
        peak <= LIMIT,
        "the data folder took {peak} bytes on disk (limit {LIMIT})"
    );
}
