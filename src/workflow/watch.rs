//! Hot reload: watch the workflows and scripts folders; after a burst of
//! changes settles (debounce), call `reload`. What a reload keeps or
//! replaces is decided by [`super::registry::merge`].

use notify::{EventKind, RecursiveMode, Watcher};
use std::path::PathBuf;
use std::time::Duration;
use tokio::sync::{mpsc, watch};
use tracing::{info, warn};

/// How long the folders must be quiet before a reload.
pub const DEBOUNCE: Duration = Duration::from_millis(250);

/// Watch `dirs` until `stop` turns true. Folders that do not exist are
/// skipped (with a warning).
pub async fn watch_folders(
    dirs: Vec<PathBuf>,
    reload: impl Fn() + Send + 'static,
    mut stop: watch::Receiver<bool>,
) {
    let (tx, mut rx) = mpsc::unbounded_channel::<()>();
    let watcher = notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
        if let Ok(ev) = res {
            if !matches!(ev.kind, EventKind::Access(_)) {
                let _ = tx.send(());
            }
        }
    });
    let mut watcher = match watcher {
        Ok(w) => w,
        Err(e) => {
            warn!(error = %e, "cannot watch for workflow changes; hot reload is off");
            return;
        }
    };
    for dir in &dirs {
        match watcher.watch(dir, RecursiveMode::Recursive) {
            Ok(()) => info!(folder = %dir.display(), "watching for changes"),
            Err(e) => warn!(folder = %dir.display(), error = %e, "cannot watch this folder"),
        }
    }
    loop {
        tokio::select! {
            got = rx.recv() => {
                if got.is_none() {
                    return;
                }
            }
            _ = stop.changed() => return,
        }
        // Let a burst of saves settle.
        loop {
            match tokio::time::timeout(DEBOUNCE, rx.recv()).await {
                Ok(Some(())) => continue,
                Ok(None) => return,
                Err(_) => break,
            }
        }
        reload();
    }
}
