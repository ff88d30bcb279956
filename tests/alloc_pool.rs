//! The allocator's pool of log buffers (`hookflow::alloc`) recycles blocks
//! of one exact layout: sled's segment-sized, 8 KiB-aligned log buffer. If
//! sled ever allocates its buffers differently (a new version, another
//! segment size), the pool silently stops doing anything and the page
//! faults it saved come back. This test writes through the real store,
//! under the real allocator, and fails if no block of that layout was
//! asked for.
//!
//! The second test checks that a started sled store hands the pool's
//! spares back once it stops writing (`hookflow::alloc::trim_spares`).

#[global_allocator]
static GLOBAL: hookflow::alloc::Allocator = hookflow::alloc::Allocator;

use hookflow::store::Store;

/// 4 MiB of distinct records, each flushed: sled fills several 512 KiB
/// segments, and takes a fresh log buffer for each.
async fn write_4_mib(store: &Store) {
    for i in 0..64 {
        let source = format!("{i:08}").repeat(8 * 1024);
        store
            .put_version(&format!("v{i}"), &source)
            .await
            .expect("written");
        store.flush().await.expect("flushed");
    }
}

#[tokio::test]
async fn sled_asks_for_the_log_buffers_the_pool_recycles() {
    let _alone = SERIAL.lock().await;
    let dir = tempfile::tempdir().expect("temp dir");
    let store = Store::open_sled(dir.path(), Default::default()).expect("store opens");
    let before = hookflow::alloc::log_buffers_allocated();
    write_4_mib(&store).await;
    let asked = hookflow::alloc::log_buffers_allocated() - before;
    store.close().await.expect("closed");
    assert!(
        asked >= 4,
        "sled asked for {asked} blocks of {} bytes aligned to 8 KiB while writing 4 MiB; \
         the pool in hookflow::alloc no longer matches sled's log buffers",
        hookflow::store::sled::SEGMENT_SIZE
    );
}

/// One test at a time: both write through sled, and the pool is global.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// A started store gives the pool's spares back once sled stops needing
/// them: the pool must not hold 16 MiB through a backlog's drain or at rest.
#[tokio::test]
async fn a_started_store_gives_back_the_spares_sled_no_longer_needs() {
    let _alone = SERIAL.lock().await;
    let dir = tempfile::tempdir().expect("temp dir");
    let store = Store::open_sled(dir.path(), Default::default()).expect("store opens");
    let (stop_tx, stop) = tokio::sync::watch::channel(false);
    let tasks = store.start(stop).await.expect("store starts");
    write_4_mib(&store).await;
    assert!(
        hookflow::alloc::spares_held() > 0,
        "sled gave back no log buffer while writing 4 MiB: nothing to trim"
    );
    // Nothing is written any more: within two trims (one a second) the
    // pool is empty.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while hookflow::alloc::spares_held() > 0 && std::time::Instant::now() < deadline {
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let left = hookflow::alloc::spares_held();
    let _ = stop_tx.send(true);
    for t in tasks {
        let _ = t.await;
    }
    store.close().await.expect("closed");
    assert_eq!(left, 0, "the pool kept {left} spares sled no longer needed");
}
