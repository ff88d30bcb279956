//! Hot reload: watch the workflows, scripts and connectors folders; after
//! a burst of changes settles (debounce), call `reload` (which recompiles
//! every workflow, so a changed connector or script gives the workflows
//! that use it a new version). What a reload keeps or
//! replaces is decided by [`super::registry::merge`].
//!
//! The watch starts before the first load ([`FolderWatch::start`]) and
//! reacts once the server runs ([`FolderWatch::run`]): an edit made while
//! the server is still starting is seen then, not lost.

use notify::{EventKind, RecommendedWatcher, RecursiveMode, Watcher};
use std::path::PathBuf;
use std::time::Duration;
use tokio::sync::{mpsc, watch};
use tracing::{info, warn};

/// How long the folders must be quiet before a reload.
pub const DEBOUNCE: Duration = Duration::from_millis(250);

/// Changes seen in the watched folders since the watch started.
pub struct FolderWatch {
    /// Kept alive for as long as the folders are watched.
    _watcher: RecommendedWatcher,
    changes: mpsc::UnboundedReceiver<()>,
}

impl FolderWatch {
    /// Start watching `dirs` (folders that do not exist are skipped, with a
    /// warning). `None` (with a warning) when the system cannot watch: hot
    /// reload is then off, and everything else works.
    pub fn start(dirs: &[PathBuf]) -> Option<FolderWatch> {
        let (tx, changes) = mpsc::unbounded_channel::<()>();
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
                return None;
            }
        };
        for dir in dirs {
            match watcher.watch(dir, RecursiveMode::Recursive) {
                Ok(()) => info!(folder = %dir.display(), "watching for changes"),
                Err(e) => warn!(folder = %dir.display(), error = %e, "cannot watch this folder"),
            }
        }
        Some(FolderWatch {
            _watcher: watcher,
            changes,
        })
    }

    /// Call `reload` after each burst of changes, until `stop` turns true.
    /// Changes made since [`FolderWatch::start`] count.
    pub async fn run<F: std::future::Future<Output = ()> + Send>(
        mut self,
        reload: impl Fn() -> F + Send + 'static,
        mut stop: watch::Receiver<bool>,
    ) {
        loop {
            tokio::select! {
                got = self.changes.recv() => {
                    if got.is_none() {
                        return;
                    }
                }
                _ = stop.changed() => return,
            }
            // Let a burst of saves settle.
            loop {
                match tokio::time::timeout(DEBOUNCE, self.changes.recv()).await {
                    Ok(Some(())) => continue,
                    Ok(None) => return,
                    Err(_) => break,
                }
            }
            reload().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn an_edit_made_before_the_loop_runs_is_reloaded() {
        let dir = tempfile::tempdir().expect("tmp");
        let watch = FolderWatch::start(&[dir.path().to_path_buf()]).expect("watching");
        // The server is still starting: nothing reacts yet.
        std::fs::write(dir.path().join("w.yaml"), "name: w\n").expect("edit");
        let (reloaded, mut reloads) = mpsc::unbounded_channel();
        let (stop_tx, stop) = watch::channel(false);
        let task = tokio::spawn(watch.run(
            move || {
                let _ = reloaded.send(());
                async {}
            },
            stop,
        ));
        let got = tokio::time::timeout(Duration::from_secs(10), reloads.recv()).await;
        assert!(
            matches!(got, Ok(Some(()))),
            "the early edit was never reloaded"
        );
        let _ = stop_tx.send(true);
        task.await.expect("the watch stops");
    }
}
