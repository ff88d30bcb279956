//! The allocator's pool of log buffers (`hookflow::alloc`) recycles blocks
//! of one exact layout: sled's segment-sized, 8 KiB-aligned log buffer. If
//! sled ever allocates its buffers differently (a new version, another
//! segment size), the pool silently stops doing anything and the page
//! faults it saved come back. This test writes through the real store,
//! under the real allocator, and fails if no block of that layout was
//! asked for.

#[global_allocator]
static GLOBAL: hookflow::alloc::Allocator = hookflow::alloc::Allocator;

use hookflow::store::Store;

#[tokio::test]
async fn sled_asks_for_the_log_buffers_the_pool_recycles() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = Store::open_sled(dir.path(), Default::default()).expect("store opens");
    let before = hookflow::alloc::log_buffers_allocated();
    // 4 MiB of distinct records: sled fills several 512 KiB segments, and
    // takes a fresh log buffer for each.
    for i in 0..64 {
        let source = format!("{i:08}").repeat(8 * 1024);
        store
            .put_version(&format!("v{i}"), &source)
            .await
            .expect("written");
        store.flush().await.expect("flushed");
    }
    let asked = hookflow::alloc::log_buffers_allocated() - before;
    store.close().await.expect("closed");
    assert!(
        asked >= 4,
        "sled asked for {asked} blocks of {} bytes aligned to 8 KiB while writing 4 MiB; \
         the pool in hookflow::alloc no longer matches sled's log buffers",
        hookflow::store::sled::SEGMENT_SIZE
    );
}
