//! Stored-history benchmark: does memory stay flat as history grows? The
//! release binary gets the load bench's event (a 1.5 KB signed Stripe
//! event → filter → Rhai transform → POST to a local sink) until it has
//! stored 10,000 runs, then until it has stored 1,000,000 (or the count
//! given: `cargo bench --bench history -- 1000000`). At each mark, once the
//! backlog is delivered and the server has been idle for a few seconds, it
//! reads the server's RSS, and the bytes the data folder takes on disk per
//! event. Retention is set out of reach so nothing is pruned. The goal: RSS
//! at the last mark within 20 MB of RSS at the first.
//!
//! The load is closed-loop at concurrency 32, in chunks of 10,000 events
//! (the first mark) each drained before the next, so the backlog (and the
//! memory it leaves behind) is the same at every mark and only the stored
//! history differs. With chunks of 50,000 after a first one of 10,000, the
//! first mark had seen a backlog a fifth as long as the others, and the
//! difference was mostly that (`docs/performance.md`).
//! Traffic stays on 127.0.0.1; every loop is bounded in count and time.

mod common;

use common::*;
use std::sync::Arc;
use std::time::Duration;

/// Events sent before each drain: the first mark, so that every mark
/// follows the same backlog.
const CHUNK: usize = 10_000;
/// Idle time before RSS is read at a mark.
const SETTLE: Duration = Duration::from_secs(5);

fn main() {
    let target = std::env::args()
        .skip(1)
        .find_map(|a| a.parse::<usize>().ok())
        .unwrap_or(1_000_000)
        .max(20_000);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(run(target));
}

async fn run(target: usize) {
    let root = env!("CARGO_MANIFEST_DIR");
    let body = Arc::new(fixture(root));
    let signer = signer(body.clone());
    let (delivered, sink_url) = start_sink().await;
    let server = Server::start(
        root,
        &sink_url,
        &["--retention", "3650d", "--retention-size", "1000GiB"],
    );
    println!(
        "history: {}-byte signed events until {target} runs are stored, in chunks of {CHUNK}",
        body.len()
    );
    let mut stored = 0;
    let mut marks = Vec::new();
    let mut at = vec![CHUNK];
    at.extend((1..4).map(|i| target * i / 4).filter(|&m| m > CHUNK));
    at.push(target);
    for mark in at {
        while stored < mark {
            let chunk = (mark - stored).min(CHUNK);
            let before = delivered.get();
            // Bounded in time too: an hour is far more than any chunk needs.
            let figures = load(server.url(), 3600, chunk, signer.clone()).await;
            let got = || delivered.get() - before;
            drained(&got, figures.acks).await;
            assert_eq!(got(), figures.acks, "every acked event is delivered");
            stored += figures.acks;
        }
        tokio::time::sleep(SETTLE).await;
        let rss = server.rss_mb();
        let disk = server.disk_bytes() as f64 / stored as f64;
        let records = server
            .record_bytes()
            .await
            .map_or(f64::NAN, |b| b as f64 / stored as f64);
        println!(
            "{stored:>9} runs stored: RSS {rss:.1} MB (peak so far {:.1} MB), {disk:.0} bytes on disk per event (records {records:.0})",
            server.peak_rss_mb()
        );
        marks.push(rss);
    }
    if let (Some(first), Some(last)) = (marks.first(), marks.last()) {
        println!(
            "RSS grew {:.1} MB from 10,000 to {stored} stored runs (goal: at most 20 MB)",
            *last - *first
        );
    }
    server.stop();
}
