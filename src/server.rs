//! `run(config, listener, shutdown)`: open the store, load the workflows,
//! start the workers, serve HTTP until `shutdown` resolves, then drain.
//! `main` and the integration tests share this one entry point. Whenever
//! the set of workflows changes, the log's redactor
//! ([`ServeConfig::log_secrets`]) is given their secrets and the admin
//! token.

use crate::config::ServeConfig;
use crate::http::{app, AppState};
use crate::inbound::Inbox;
use crate::run::executor::Executor;
use crate::run::scheduler;
use crate::script::Engine;
use crate::secret::Redactor;
use crate::step::http::Sender;
use crate::store::postgres::PgOptions;
use crate::store::{Location, Store};
use crate::workflow::registry::{self, Registry, Workflows};
use crate::workflow::Serving;
use std::future::Future;
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tracing::{info, warn};

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("cannot open the store {path}: {source}")]
    Store {
        path: String,
        source: crate::store::StoreError,
    },
    #[error("{0}")]
    Setup(String),
    #[error("the HTTP server failed: {0}")]
    Serve(std::io::Error),
}

/// Load every workflow under the configured folder, with the connectors
/// of the connectors folder, and log their problems. `serving` is where
/// the listener answers (demo secrets stay local).
pub fn load_workflows(config: &ServeConfig, engine: &Engine, serving: Serving) -> Registry {
    let files = match registry::workflow_files(std::slice::from_ref(&config.workflows)) {
        Ok(f) => f,
        Err(e) => {
            warn!(folder = %config.workflows.display(), error = %e, "cannot read the workflows folder; serving no workflows");
            Vec::new()
        }
    };
    let catalog = crate::workflow::connector::Catalog::load(&config.connectors, engine);
    for f in &catalog.files {
        for e in &f.issues {
            warn!(connector = %f.name, "invalid connector: {e}");
        }
    }
    let reg = registry::load(
        &files,
        &crate::expr::template::ProcessEnv,
        &config.scripts,
        Arc::new(catalog),
        engine,
        serving,
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
    let location = config.location().map_err(ServerError::Setup)?;
    let dir = match &location {
        Location::Sled(dir) => dir.clone(),
        Location::Postgres(url) => {
            let options = PgOptions {
                lease: config.lease,
                accept_async_commit: config.accept_async_commit,
            };
            return Store::open_postgres(url, &options).await.map_err(|source| {
                ServerError::Store {
                    path: location.to_string(),
                    source,
                }
            });
        }
    };
    let deadline = std::time::Instant::now() + LOCK_WAIT;
    let mut warned = false;
    loop {
        match Store::open_sled(
            &dir,
            crate::store::sled::SledOptions {
                cache_mb: config.cache_mb,
                pack_after: config.pack_after,
            },
        ) {
            Ok(store) => return Ok(store),
            Err(e) if e.is_locked() && std::time::Instant::now() < deadline => {
                if !warned {
                    warn!(path = %dir.display(), "the store is still locked by its previous owner; waiting");
                    warned = true;
                }
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
            Err(source) => {
                return Err(ServerError::Store {
                    path: dir.display().to_string(),
                    source,
                })
            }
        }
    }
}

/// The secrets of the server itself: the admin token.
fn server_secrets(config: &ServeConfig) -> Redactor {
    Redactor::new(config.api_token.iter().cloned())
}

/// Make `reg` the live set, and give the log its secrets.
async fn go_live(
    workflows: &Workflows,
    reg: Registry,
    config: &ServeConfig,
) -> Result<(), crate::store::StoreError> {
    let all = reg
        .workflows
        .iter()
        .flat_map(|w| w.redactor.secrets())
        .chain(config.api_token.iter())
        .cloned();
    let log = Redactor::new(all);
    // Before the swap: the new secrets are redacted from the first line
    // that could carry them.
    config.log_secrets.set(log);
    workflows.replace(reg).await
}

/// How long startup waits for the store's lock.
pub const LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

pub async fn run(
    config: ServeConfig,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServerError> {
    config.check_limits().map_err(ServerError::Setup)?;
    let listen = listener.local_addr().map_err(ServerError::Serve)?;
    let serving = Serving::at(listen);
    // The token is known before anything is logged.
    config.log_secrets.set(server_secrets(&config));
    let store = open_store(&config).await?;
    let engine = Engine::new(config.script_limits());
    let scripts = crate::script::pool::ScriptPool::for_machine().map_err(|e| {
        ServerError::Setup(format!(
            "cannot start the threads that evaluate `when` scripts: {e}"
        ))
    })?;
    // Watch before the first load, so an edit made while starting up is
    // reloaded once the server runs instead of being missed.
    let folders: Vec<_> = [&config.workflows, &config.scripts, &config.connectors]
        .into_iter()
        .filter(|d| d.is_dir())
        .cloned()
        .collect();
    let folder_watch = crate::workflow::watch::FolderWatch::start(&folders);
    let workflows = Arc::new(Workflows::new(store.clone(), engine.clone()));
    go_live(
        &workflows,
        load_workflows(&config, &engine, serving),
        &config,
    )
    .await
    .map_err(|e| ServerError::Setup(format!("cannot record workflow versions: {e}")))?;
    let metrics = Arc::new(crate::metrics::Metrics::default());
    let (stop_tx, stop_rx) = watch::channel(false);
    let runs_runtime = scheduler::runtime().map_err(|e| {
        ServerError::Setup(format!("cannot start the threads that execute runs: {e}"))
    })?;
    // The store's own background work runs beside the runs.
    let store_tasks = {
        let (store, stop) = (store.clone(), stop_rx.clone());
        runs_runtime
            .spawn(async move { store.start(stop).await })
            .await
            .map_err(|e| ServerError::Setup(format!("cannot start the store: {e}")))?
            .map_err(|e| ServerError::Setup(format!("cannot read the run queue: {e}")))?
    };
    // Requests waiting for a `respond` step, and the runs that answer them.
    let responders = crate::run::respond::Responders::default();
    let executor = Arc::new(Executor {
        store: store.clone(),
        workflows: Arc::clone(&workflows),
        http: Sender::live(crate::step::policy::OutboundPolicy {
            deny_private: config.deny_private_network,
        })
        .map_err(ServerError::Setup)?,
        metrics: Arc::clone(&metrics),
        responders: responders.clone(),
        max_delay: config.max_delay,
        skip_waits: false,
    });
    let heartbeat = crate::ready::Heartbeat::default();
    let dispatcher = runs_runtime.spawn(scheduler::dispatch(
        Arc::clone(&executor),
        config.workers,
        stop_rx.clone(),
        config.grace,
        heartbeat.clone(),
    ));
    let readiness = Arc::new(crate::ready::Readiness::new(
        store.clone(),
        heartbeat,
        dispatcher.abort_handle(),
        store_tasks
            .iter()
            .map(|t| ("the store's background work", t.abort_handle()))
            .collect(),
    ));
    let inbox = Arc::new(Inbox::new(
        store.clone(),
        Arc::clone(&workflows),
        Arc::clone(&metrics),
        scripts,
        server_secrets(&config),
        responders,
    ));
    let state = AppState {
        inbox,
        store: store.clone(),
        workflows: Arc::clone(&workflows),
        max_body: config.max_body,
        body_timeout: config.body_timeout,
        body_budget: crate::http::budget::BodyBudget::new(config.max_inflight_body),
        metrics,
        api_token: config.api_token.clone().filter(|t| !t.is_empty()),
        listen,
        readiness,
        replays: Arc::default(),
    };
    let watcher = folder_watch.map(|w| {
        let (workflows, config, engine) = (Arc::clone(&workflows), config.clone(), engine.clone());
        tokio::spawn(w.run(
            move || {
                let (workflows, config, engine) =
                    (Arc::clone(&workflows), config.clone(), engine.clone());
                async move { reload(&workflows, &config, &engine, serving).await }
            },
            stop_rx.clone(),
        ))
    });
    let pruner = tokio::spawn(prune_loop(store.clone(), config.clone(), stop_rx.clone()));
    let queued = store
        .queue_gauges(crate::record::Timestamp::now())
        .await
        .depth;
    info!(addr = %listen, queued, "hookflow is listening");
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
    for t in store_tasks {
        let _ = t.await;
    }
    // Tasks still waiting (a retry timer, say) end with the runtime; their
    // runs stay queued in the store. Shutting a runtime down blocks.
    let grace = config.grace;
    let _ = tokio::task::spawn_blocking(move || runs_runtime.shutdown_timeout(grace)).await;
    let _ = pruner.await;
    if let Some(w) = watcher {
        let _ = w.await;
    }
    if let Err(e) = store.close().await {
        warn!(error = %e, "cannot leave the store closed cleanly");
    }
    served.map_err(ServerError::Serve)
}

/// Prune old history in the background, off the async runtime, so ingest
/// never waits for it.
async fn prune_loop(store: Store, config: ServeConfig, mut stop: watch::Receiver<bool>) {
    loop {
        let (retention, max) = (config.retention, config.retention_size as u64);
        let now = crate::record::Timestamp::now();
        let cutoff = crate::record::Timestamp(now.0.saturating_sub(retention.as_millis() as u64));
        match store.prune(cutoff, max, now).await {
            Ok(p) if p.events + p.runs + p.dedupe > 0 => {
                if p.dedupe_early > 0 {
                    warn!(
                        dedupe_keys = p.dedupe_early,
                        "dropped dedupe keys before their window ended: they outgrew their share of \
                         --retention-size (a sixteenth); a duplicate of those events would run again. \
                         Raise --retention-size or shorten the dedupe window"
                    );
                }
                info!(
                    events = p.events,
                    runs = p.runs,
                    dedupe_keys = p.dedupe,
                    "pruned old history"
                )
            }
            Ok(_) => {}
            Err(e) => warn!(error = %e, "pruning failed; will try again"),
        }
        let wanted = store.prune_wanted();
        let woken = async {
            match &wanted {
                Some(w) => w.notified().await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = tokio::time::sleep(config.prune_interval) => {}
            // Past the budget: prune again soon, at most ten times a second.
            _ = woken => tokio::time::sleep(config.prune_interval.min(std::time::Duration::from_millis(100))).await,
            _ = stop.changed() => return,
        }
    }
}

/// Recompile every workflow file and swap the new set in atomically.
async fn reload(workflows: &Workflows, config: &ServeConfig, engine: &Engine, serving: Serving) {
    let old = workflows.current();
    let merged = registry::merge(&old, load_workflows(config, engine, serving));
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
    if let Err(e) = go_live(workflows, merged, config).await {
        warn!(error = %e, "cannot record the reloaded workflow versions; keeping the previous set");
    }
}
