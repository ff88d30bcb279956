//! Bytes a folder takes on disk: allocated blocks, as `du` counts them
//! (shared by the tests and the benches).

/// Bytes `dir` and everything below it take on disk (0 where unreadable).
pub fn disk_usage(dir: &std::path::Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    let mut total = 0;
    for e in entries.flatten() {
        let Ok(meta) = e.metadata() else { continue };
        total += if meta.is_dir() {
            disk_usage(&e.path())
        } else {
            meta.blocks() * 512
        };
    }
    total
}
