//! `run(config, listener, shutdown)`: open the store, load the workflows,
//! start the workers, serve HTTP until `shutdown` resolves, then drain.
//! `main` and the integration tests share this one entry point.

use crate::config::ServeConfig;
use crate::http::{app, AppState};
use crate::inbound::Inbox;
use crate::run::executor::Executor;
use crate::run::worker::{self, Queue};
use crate::script::Engine;
use crate::step::http::Sender;
use crate::store::Store;
use crate::workflow::registry::{self, Registry, Workflows};
use std::future::Future;
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio::sync::{broadcast, watch};
use tracing::{info, warn};

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("cannot open the store in {path}: {source}")]
    Store {
        path: String,
        source: crate::store::StoreError,
    },
    #[error("{0}")]
    Setup(String),
    #[error("the HTTP server failed: {0}")]
    Serve(std::io::Error),
}

/// Load every workflow under the configured folder and log its problems.
pub fn load_workflows(config: &ServeConfig, engine: &Engine) -> Registry {
    let files = match registry::workflow_files(std::slice::from_ref(&config.workflows)) {
        Ok(f) => f,
        Err(e) => {
            warn!(folder = %config.workflows.display(), error = %e, "cannot read the workflows folder; serving no workflows");
            Vec::new()
        }
    };
    let reg = registry::load(
        &files,
        &crate::expr::template::ProcessEnv,
        &config.scripts,
        engine,
    );
    for f in &reg.files {
        match f.status {
            registry::FileStatus::Loaded => {
                info!(workflow = %f.name, path = ?f.path, version = ?f.version, "workflow loaded")
            }
            registry::FileStatus::Invalid => {
                for e in &f.errors {
                    warn!(workflow = %f.name, "invalid workflow: {e}");
                }
            }
        }
    }
    reg
}

/// Open the store, waiting (up to [`LOCK_WAIT`]) while a previous owner
/// still holds its lock: a restart can begin before the old process (or,
/// in tests, the old server) has let go.
async fn open_store(config: &ServeConfig) -> Result<Store, ServerError> {
    let deadline = std::time::Instant::now() + LOCK_WAIT;
    let mut warned = false;
    loop {
        match Store::open(&config.data, config.cache_mb) {
            Ok(store) => return Ok(store),
            Err(e) if e.is_locked() && std::time::Instant::now() < deadline => {
                if !warned {
                    warn!(path = %config.data.display(), "the store is still locked by its previous owner; waiting");
                    warned = true;
                }
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
            Err(source) => {
                return Err(ServerError::Store {
                    path: config.data.display().to_string(),
                    source,
                })
            }
        }
    }
}

/// How long startup waits for the store's lock.
pub const LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

pub async fn run(
    config: ServeConfig,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServerError> {
    let store = open_store(&config).await?;
    let engine = Engine::new(config.script_limits());
    let scripts = crate::script::pool::ScriptPool::for_machine().map_err(|e| {
        ServerError::Setup(format!(
            "cannot start the threads that evaluate `when` scripts: {e}"
        ))
    })?;
    // Watch before the first load, so an edit made while starting up is
    // reloaded once the server runs instead of being missed.
    let folders: Vec<_> = [&config.workflows, &config.scripts]
        .into_iter()
        .filter(|d| d.is_dir())
        .cloned()
        .collect();
    let folder_watch = crate::workflow::watch::FolderWatch::start(&folders);
    let workflows = Arc::new(Workflows::new(store.clone(), engine.clone()));
    workflows
        .replace(load_workflows(&config, &engine))
        .map_err(|e| ServerError::Setup(format!("cannot record workflow versions: {e}")))?;
    let (updates, _) = broadcast::channel(1024);
    let metrics = Arc::new(crate::metrics::Metrics::default());
    let queue = Queue::default();
    queue
        .load(&store)
        .map_err(|e| ServerError::Setup(format!("cannot read the run queue: {e}")))?;
    // The fresh-runs mark must be on disk before the first ingest.
    worker::checkpoint(&queue, &store)
        .await
        .and(store.flush().await)
        .map_err(|e| ServerError::Setup(format!("cannot store the fresh-runs mark: {e}")))?;
    let executor = Arc::new(Executor {
        store: store.clone(),
        workflows: Arc::clone(&workflows),
        http: Sender::live(crate::step::policy::OutboundPolicy {
            deny_private: config.deny_private_network,
        })
        .map_err(ServerError::Setup)?,
        updates: updates.clone(),
        metrics: Arc::clone(&metrics),
        queue: queue.clone(),
    });
    let (stop_tx, stop_rx) = watch::channel(false);
    let stop_rx_prune = stop_rx.clone();
    let stop_rx_watch = stop_rx.clone();
    let runs_runtime = worker::runtime().map_err(|e| {
        ServerError::Setup(format!("cannot start the threads that execute runs: {e}"))
    })?;
    let marker = runs_runtime.spawn(worker::keep_marking(
        queue.clone(),
        store.clone(),
        stop_rx.clone(),
    ));
    let dispatcher = runs_runtime.spawn(worker::dispatch(
        Arc::clone(&executor),
        config.workers,
        stop_rx,
        config.grace,
    ));
    let inbox = Arc::new(Inbox {
        store: store.clone(),
        workflows: Arc::clone(&workflows),
        executor: Arc::clone(&executor),
        metrics: Arc::clone(&metrics),
        scripts,
        rejected_window: std::sync::Mutex::new((0, 0)),
        claims: Default::default(),
    });
    let state = AppState {
        inbox,
        store: store.clone(),
        workflows: Arc::clone(&workflows),
        max_body: config.max_body,
        body_timeout: config.body_timeout,
        updates,
        metrics,
        api_token: config.api_token.clone().filter(|t| !t.is_empty()),
    };
    let watcher = folder_watch.map(|w| {
        let (workflows, config, engine) = (Arc::clone(&workflows), config.clone(), engine.clone());
        tokio::spawn(w.run(move || reload(&workflows, &config, &engine), stop_rx_watch))
    });
    let pruner = tokio::spawn(prune_loop(store.clone(), config.clone(), stop_rx_prune));
    let addr = listener.local_addr().map_err(ServerError::Serve)?;
    info!(%addr, queued = queue.len(), "hookflow is listening");
    let served = crate::http::serve::serve(
        listener,
        app(state),
        shutdown,
        config.header_timeout,
        config.grace,
    )
    .await;
    info!("stopping: no new requests; letting running steps finish");
    let _ = stop_tx.send(true);
    let _ = dispatcher.await;
    let _ = marker.await;
    if let Err(e) = worker::checkpoint(&queue, &store).await {
        warn!(error = %e, "cannot store the fresh-runs mark");
    }
    // Tasks still waiting (a retry timer, say) end with the runtime; their
    // runs stay queued in the store. Shutting a runtime down blocks.
    let grace = config.grace;
    let _ = tokio::task::spawn_blocking(move || runs_runtime.shutdown_timeout(grace)).await;
    let _ = pruner.await;
    if let Some(w) = watcher {
        let _ = w.await;
    }
    if let Err(e) = store.flush().await {
        warn!(error = %e, "final flush failed");
    }
    served.map_err(ServerError::Serve)
}

/// Prune old history in the background, off the async runtime, so ingest
/// never waits for it.
async fn prune_loop(store: Store, config: ServeConfig, mut stop: watch::Receiver<bool>) {
    loop {
        let s = store.clone();
        let (retention, max) = (config.retention, config.retention_size as u64);
        let result = tokio::task::spawn_blocking(move || {
            let now = crate::record::Timestamp::now();
            let cutoff =
                crate::record::Timestamp(now.0.saturating_sub(retention.as_millis() as u64));
            s.prune(cutoff, max, now)
        })
        .await;
        match result {
            Ok(Ok(p)) if p.events + p.runs + p.dedupe > 0 => {
                info!(
                    events = p.events,
                    runs = p.runs,
                    dedupe_keys = p.dedupe,
                    "pruned old history"
                )
            }
            Ok(Ok(_)) => {}
            Ok(Err(e)) => warn!(error = %e, "pruning failed; will try again"),
            Err(e) => warn!(error = %e, "pruning was interrupted"),
        }
        tokio::select! {
            _ = tokio::time::sleep(config.prune_interval) => {}
            _ = stop.changed() => return,
        }
    }
}

/// Recompile every workflow file and swap the new set in atomically.
fn reload(workflows: &Workflows, config: &ServeConfig, engine: &Engine) {
    let old = workflows.current();
    let merged = registry::merge(&old, load_workflows(config, engine));
    for f in &merged.files {
        let before = old.files.iter().find(|o| o.file == f.file);
        let changed =
            before.map(|b| (b.version.as_ref(), b.status)) != Some((f.version.as_ref(), f.status));
        if changed {
            match (f.status, &f.serving_version) {
                (registry::FileStatus::Loaded, _) => {
                    info!(workflow = %f.name, version = ?f.version, "workflow reloaded")
                }
                (registry::FileStatus::Invalid, Some(v)) => {
                    warn!(workflow = %f.name, serving = %v, "the changed workflow is invalid; the previous version keeps serving")
                }
                (registry::FileStatus::Invalid, None) => {
                    warn!(workflow = %f.name, "the workflow is invalid")
                }
            }
        }
    }
    for gone in old
        .files
        .iter()
        .filter(|o| !merged.files.iter().any(|f| f.file == o.file))
    {
        info!(workflow = %gone.name, file = %gone.file.display(), "workflow file removed; its path is no longer served");
    }
    if let Err(e) = workflows.replace(merged) {
        warn!(error = %e, "cannot record the reloaded workflow versions; keeping the previous set");
    }
}
