//! The PostgreSQL backend (SPEC §10): any number of `serve` processes on
//! one database share the work. The tables are described in `schema.rs`;
//! a run's rows in `rows.rs`; the group-committing writers of ingests in
//! `ingest.rs` and of run writes in `writes.rs` (what they share in
//! `batch.rs`); heartbeats, wake-up hints and the shared live stream in
//! `feed.rs`.
//!
//! **Queue and leases.** Every unfinished run has a row in the small
//! `queue` table. A node holds a run when the row names it (`node`) with a
//! `token` of its own and a `lease_until` in the future. Fresh runs are
//! held by the node that ingested them from the start (it keeps them with
//! their event in memory and executes them without reading them back, the
//! same hot path the sled backend has), up to [`MAX_HOT`] at a time; the
//! others are left free for any node. Free and lapsed rows are claimed with
//! `FOR UPDATE SKIP LOCKED`. Each node renews the leases of all its rows in
//! one statement every third of the lease (its heartbeat), so a run is
//! taken over only when its node stopped renewing: killed, stopped, or cut
//! off from the database.
//!
//! **Fencing.** Every write of a run is one statement whose first part
//! checks the claim's token on the queue row (`WHERE run_id = $1 AND token
//! = $2`); the rest happens only if that matched. A node whose lease was
//! taken over gets [`StoreError::LeaseLost`] and writes nothing. Before a
//! step acts, [`PgStore::hold`] makes sure the lease is still ours when the
//! node's heartbeat is late (after a pause, say), renewing it on the row
//! itself, so a paused node that wakes up does not send a request the new
//! owner is sending too.
//!
//! **Writes.** Each write of a run is atomic, and the writes of many runs
//! that arrive together are one statement and one commit (`writes.rs`): a
//! save writes the run's head, the step records that changed and the new
//! attempts (see `rows::Written`); `schedule` frees the row at its new due
//! time (any node may pick the retry up); `finish` deletes the row.
//! Everything commits with `synchronous_commit` on, which `open` checks.
//!
//! **Crash points** (see [`crate::fault`]): a retry, a delay, the end of a
//! run and a replay are each one statement, all or nothing, so every point
//! of those sequences is passed once it has committed (what each point
//! names is then written); an ingest passes `ingest.claims_written`,
//! `ingest.runs_written` and `ingest.event_written` inside its transaction
//! (a crash there rolls it back: the sender gets no answer and sends
//! again) and `ingest.flushed` after the commit.

mod batch;
mod feed;
mod ingest;
mod rows;
pub mod schema;
mod writes;

use super::{
    Claim, Durability, EventQuery, Ingest, Ingested, Page, Pruned, QueueGauges, Result, RunHead,
    RunQuery, StoreError, MAX_REJECTED_KEPT,
};
use crate::record::{Event, Run, RunId, RunStatus, RunUpdate, Timestamp};
use deadpool_postgres::{Manager, ManagerConfig, Object, Pool, RecyclingMethod};
use rows::Written;
use serde_json::Value;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{broadcast, mpsc, watch, Notify};
use tokio_postgres::types::ToSql;
use tracing::{info, warn};
use writes::Fence;

/// Fresh runs a node keeps in memory (held, with their event) at most;
/// beyond that an ingest leaves its runs free for any node.
pub const MAX_HOT: usize = 512;

/// How many run updates a slow live listener may fall behind.
const FEED_CAPACITY: usize = 1024;

/// Connections each node keeps at most.
const POOL_SIZE: usize = 16;

/// How long a database call may wait for a free connection.
const POOL_WAIT: Duration = Duration::from_secs(10);

/// The longest a script's `state_get` / `state_set` waits for the database.
const STATE_WAIT: Duration = Duration::from_secs(10);

/// Polls for claimable runs back off from this …
const POLL_MIN: Duration = Duration::from_millis(20);
/// … to this (or a quarter of the lease, if less) while they find
/// nothing; a wake-up hint starts over.
const POLL_MAX: Duration = Duration::from_secs(1);

/// Events (or runs) one pruning statement deletes at most.
const PRUNE_BATCH: i64 = 500;

/// Settings of the PostgreSQL backend.
#[derive(Debug, Clone)]
pub struct PgOptions {
    /// How long a node's hold on a run lasts without a heartbeat.
    pub lease: Duration,
    /// Serve even when the database commits asynchronously.
    pub accept_async_commit: bool,
}

impl Default for PgOptions {
    fn default() -> Self {
        PgOptions {
            lease: Duration::from_secs(15),
            accept_async_commit: false,
        }
    }
}

/// What the PostgreSQL backend knows about a claim it handed out.
#[derive(Debug)]
pub struct Ticket {
    token: i64,
    /// A fresh run held since its ingest, with its event: the executor
    /// starts from these instead of reading them back.
    hot: Mutex<Option<(Run, Event)>>,
    /// What the store holds of the run (what the next save leaves out).
    written: Mutex<Written>,
    /// The queue row is gone or freed (finished, scheduled, dropped): a
    /// release has nothing left to do.
    settled: AtomicBool,
}

/// A human reading of a database error: the server's message when there is
/// one (the client's own text is only "db error").
pub fn describe(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => match db.detail() {
            Some(d) => format!("{} ({d})", db.message()),
            None => db.message().to_string(),
        },
        None => match std::error::Error::source(e) {
            Some(cause) => format!("{e}: {cause}"),
            None => e.to_string(),
        },
    }
}

fn pg(doing: &'static str) -> impl Fn(tokio_postgres::Error) -> StoreError {
    move |e| StoreError::Postgres {
        doing,
        reason: describe(&e),
    }
}

/// What the nodes share in memory: the hot runs, wake-ups and the feed.
pub(crate) struct Shared {
    pool: Pool,
    node: String,
    lease: Duration,
    /// Fresh runs held by this node, with their event, in arrival order.
    hot: Mutex<VecDeque<HotRun>>,
    /// Places in `hot` promised to ingests being written.
    hot_reserved: AtomicU64,
    /// Wakes this node's dispatcher: fresh runs are held, or runs may be
    /// waiting in the database.
    changed: Notify,
    /// Runs this node could claim may be waiting in the database (another
    /// node's hint, a run let go, runs an ingest left free): the wake-up
    /// polls at once. Fresh runs held in memory need no poll.
    db_work: AtomicBool,
    updates: broadcast::Sender<RunUpdate>,
    feed: feed::Outbox,
    /// Until when (ms since `origin`) another node is known to have live
    /// listeners, so this node sends it its run updates.
    watched_until_ms: AtomicU64,
    /// A watch began: the publisher sends the updates it kept meanwhile.
    catch_up: Notify,
    /// A live listener connected here: tell the others at once.
    announce: Notify,
    /// When the heartbeat last renewed this node's leases (ms since
    /// `origin`).
    renewed_ms: AtomicU64,
    origin: Instant,
    unreadable: super::Unreadable,
    /// The earliest wake-up time this node scheduled (a retry), so its
    /// dispatcher looks again then.
    next_due: Mutex<Option<Timestamp>>,
}

struct HotRun {
    run: Run,
    /// `None`: read the run and its event at load (a replay).
    event: Option<Event>,
    token: i64,
}

/// Handle to the PostgreSQL backend; cheap to clone.
#[derive(Clone)]
pub struct PgStore {
    shared: Arc<Shared>,
    ingest: mpsc::Sender<ingest::Pending>,
    writes: mpsc::Sender<writes::Pending>,
    poll: Arc<Mutex<Poll>>,
    /// Where the connections and the background work run (the runtime
    /// that opened the store outlives the others).
    handle: tokio::runtime::Handle,
    config: tokio_postgres::Config,
}

/// When this node next asks the database for claimable runs.
struct Poll {
    next: Instant,
    backoff: Duration,
}

impl Poll {
    fn new(now: Instant) -> Poll {
        Poll {
            next: now,
            backoff: POLL_MIN,
        }
    }

    fn due(&self, now: Instant) -> bool {
        now >= self.next
    }

    /// A poll found nothing (back off, doubling from [`POLL_MIN`] up to
    /// [`POLL_MAX`] or a quarter of `lease`, whichever is less, so a dead
    /// node's runs are found soon after its lease runs out) or something
    /// (poll again at once).
    fn polled(&mut self, empty: bool, now: Instant, lease: Duration) {
        if empty {
            self.next = now + self.backoff;
            self.backoff = (self.backoff * 2).min(POLL_MAX.min(lease / 4));
        } else {
            self.hint(now);
        }
    }

    /// New work may be in the database: poll at the next claim.
    fn hint(&mut self, now: Instant) {
        self.next = now;
        self.backoff = POLL_MIN;
    }
}

/// Opens each connection on the store's own runtime, so a connection
/// never depends on a runtime that stops before the store does.
struct Connector {
    handle: tokio::runtime::Handle,
}

type ConnectFuture<'a> = std::pin::Pin<
    Box<
        dyn std::future::Future<
                Output = std::result::Result<
                    (tokio_postgres::Client, tokio::task::JoinHandle<()>),
                    tokio_postgres::Error,
                >,
            > + Send
            + 'a,
    >,
>;

impl deadpool_postgres::Connect for Connector {
    fn connect(&self, config: &tokio_postgres::Config) -> ConnectFuture<'_> {
        let config = config.clone();
        let handle = self.handle.clone();
        Box::pin(async move {
            let connect = {
                let config = config.clone();
                async move {
                    let (client, connection) = config.connect(tokio_postgres::NoTls).await?;
                    let task = tokio::spawn(async move {
                        if let Err(e) = connection.await {
                            warn!(error = %describe(&e), "a database connection ended");
                        }
                    });
                    Ok((client, task))
                }
            };
            match handle.spawn(connect).await {
                Ok(r) => r,
                // The store's runtime is gone (shutting down): connect here.
                Err(_) => {
                    let (client, connection) = config.connect(tokio_postgres::NoTls).await?;
                    let task = tokio::spawn(async move {
                        let _ = connection.await;
                    });
                    Ok((client, task))
                }
            }
        })
    }
}

/// Read a `postgres://` URL.
pub fn parse_url(url: &str) -> std::result::Result<tokio_postgres::Config, String> {
    url.parse::<tokio_postgres::Config>().map_err(|e| {
        format!(
            "`{}` is not a PostgreSQL URL: {e}; write e.g. postgres://user:password@host:5432/db",
            redact_url(url)
        )
    })
}

/// The URL without its password, for messages.
pub fn redact_url(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) if u.password().is_some() => {
            let _ = u.set_password(Some(crate::record::REDACTED));
            u.to_string()
        }
        _ => url.to_string(),
    }
}

fn pool(config: &tokio_postgres::Config, handle: &tokio::runtime::Handle) -> Result<Pool> {
    let manager = Manager::from_connect(
        config.clone(),
        Connector {
            handle: handle.clone(),
        },
        ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        },
    );
    Pool::builder(manager)
        .max_size(POOL_SIZE)
        .runtime(deadpool_postgres::Runtime::Tokio1)
        .wait_timeout(Some(POOL_WAIT))
        .create_timeout(Some(POOL_WAIT))
        .build()
        .map_err(|e| StoreError::Other(format!("cannot set up the database connections: {e}")))
}

/// Create or upgrade the tables (`hookflow migrate`).
pub async fn migrate(url: &str) -> Result<schema::Migrated> {
    let config = parse_url(url).map_err(StoreError::Other)?;
    let (mut client, connection) = config
        .connect(tokio_postgres::NoTls)
        .await
        .map_err(pg("connecting to the database"))?;
    let task = tokio::spawn(connection);
    let done = schema::migrate(&mut client, Timestamp::now().0)
        .await
        .map_err(|e| StoreError::Other(e.to_string()));
    drop(client);
    let _ = task.await;
    done
}

impl PgStore {
    /// Connect, check that commits are synchronous, and create or upgrade
    /// the tables.
    pub async fn open(url: &str, options: &PgOptions) -> Result<PgStore> {
        let config = parse_url(url).map_err(StoreError::Other)?;
        let handle = tokio::runtime::Handle::current();
        let pool = pool(&config, &handle)?;
        let mut client = get(&pool).await?;
        let sync: String = client
            .query_one("SHOW synchronous_commit", &[])
            .await
            .map_err(pg("reading synchronous_commit"))?
            .get(0);
        if sync == "off" && !options.accept_async_commit {
            return Err(StoreError::Other(format!(
                "the database commits asynchronously (synchronous_commit = {sync}): a crash of the database could lose events already answered 202. \
                 Set synchronous_commit = on for this database or role, or pass --accept-async-commit to accept that risk."
            )));
        }
        if sync == "off" {
            warn!("serving on a database with synchronous_commit = off (--accept-async-commit): a database crash may lose acknowledged events");
        }
        let migrated = schema::migrate(&mut client, Timestamp::now().0)
            .await
            .map_err(|e| StoreError::Other(e.to_string()))?;
        match migrated {
            schema::Migrated::Created => info!("created the hookflow tables"),
            schema::Migrated::Upgraded { from } => {
                info!(from, to = schema::VERSION, "upgraded the hookflow tables")
            }
            schema::Migrated::Current => {}
        }
        drop(client);
        let node = format!("node_{}", uuid::Uuid::new_v4().simple());
        let origin = Instant::now();
        let shared = Arc::new(Shared {
            pool,
            node,
            lease: options.lease,
            hot: Mutex::default(),
            hot_reserved: AtomicU64::new(0),
            changed: Notify::new(),
            db_work: AtomicBool::new(false),
            updates: broadcast::channel(FEED_CAPACITY).0,
            feed: feed::Outbox::default(),
            watched_until_ms: AtomicU64::new(0),
            catch_up: Notify::new(),
            announce: Notify::new(),
            renewed_ms: AtomicU64::new(0),
            origin,
            unreadable: super::Unreadable::default(),
            next_due: Mutex::new(None),
        });
        let ingest = batch::start(&shared, &handle, ingest::writer);
        let writes = batch::start(&shared, &handle, writes::writer);
        Ok(PgStore {
            shared,
            ingest,
            writes,
            poll: Arc::new(Mutex::new(Poll::new(Instant::now()))),
            handle,
            config,
        })
    }

    /// This node's name in the queue table.
    pub fn node(&self) -> &str {
        &self.shared.node
    }

    /// Start the heartbeat, the listener for other nodes' hints and
    /// updates, the publisher of this node's updates, and the announcer of
    /// its live listeners.
    pub async fn start(
        &self,
        stop: watch::Receiver<bool>,
    ) -> Result<Vec<tokio::task::JoinHandle<()>>> {
        // The first renewal stamps the heartbeat (nothing is held yet).
        feed::renew(&self.shared).await?;
        let tasks = vec![
            self.handle
                .spawn(feed::heartbeat(Arc::clone(&self.shared), stop.clone())),
            self.handle.spawn(feed::listen(
                Arc::clone(&self.shared),
                self.config.clone(),
                stop.clone(),
            )),
            self.handle
                .spawn(feed::publish(Arc::clone(&self.shared), stop.clone())),
            self.handle
                .spawn(feed::announce(Arc::clone(&self.shared), stop.clone())),
        ];
        Ok(tasks)
    }

    /// Let go of every run this node holds, so other nodes take them at
    /// once instead of after the lease (a row being written right now is
    /// left to its write, as the heartbeat does: see `feed::renew`).
    pub async fn close(&self) -> Result<()> {
        let client = self.client().await?;
        client
            .execute(
                "UPDATE hookflow.queue SET node = NULL, token = NULL, lease_until = NULL
                  WHERE run_id IN (SELECT run_id FROM hookflow.queue WHERE node = $1 FOR UPDATE SKIP LOCKED)",
                &[&self.shared.node],
            )
            .await
            .map_err(pg("letting go of this node's runs"))?;
        self.shared
            .hot
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
        Ok(())
    }

    pub fn crash_point(&self, point: &str) {
        // Every committed write is durable already.
        if crate::fault::hits(point) {
            crate::fault::crash(point);
        }
    }

    async fn client(&self) -> Result<Object> {
        get(&self.shared.pool).await
    }

    pub async fn write_probe(&self, now: Timestamp) -> Result<()> {
        let client = self.client().await?;
        client
            .execute(
                "INSERT INTO hookflow.probe (node, at) VALUES ($1, $2)
                 ON CONFLICT (node) DO UPDATE SET at = EXCLUDED.at",
                &[&self.shared.node, &(now.0 as i64)],
            )
            .await
            .map_err(pg("writing the readiness probe"))?;
        Ok(())
    }

    // --- inbound ------------------------------------------------------------

    pub async fn ingest(&self, ingest: Ingest) -> Result<Ingested> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.ingest
            .send(ingest::Pending { ingest, answer: tx })
            .await
            .map_err(|_| StoreError::Other("the ingest writer has stopped".into()))?;
        rx.await
            .map_err(|_| StoreError::Other("the ingest writer has stopped".into()))?
    }

    pub async fn save_rejected(&self, event: &Event) -> Result<()> {
        let client = self.client().await?;
        let record = rows::to_json(event);
        client
            .execute(
                "INSERT INTO hookflow.events (id, received_at, outcome, workflows, runs, bytes, record)
                 VALUES ($1, $2, $3, $4, '{}', $5, $6)",
                &[
                    &event.id.as_str(),
                    &(event.received_at.0 as i64),
                    &event.outcome.as_str(),
                    &ingest::workflows_column(&event.workflows),
                    &(record.len() as i32),
                    &record,
                ],
            )
            .await
            .map_err(pg("storing a rejected request"))?;
        Ok(())
    }

    // --- the queue ----------------------------------------------------------

    /// Runs to execute, at most `limit`: when a poll is due, first those
    /// waiting in the database (retries, runs let go, a dead node's runs),
    /// for up to half the places, so a steady stream of fresh runs held in
    /// memory never starves them; then the held ones.
    pub async fn claim(&self, now: Timestamp, limit: usize) -> Result<Vec<Claim>> {
        let mut out = Vec::new();
        if limit > 0 && self.poll_due() {
            out = self.poll_db(now, (limit / 2).max(1)).await?;
        }
        {
            let mut hot = self.shared.hot.lock().unwrap_or_else(|e| e.into_inner());
            while out.len() < limit {
                let Some(h) = hot.pop_front() else { break };
                let (run_id, due) = (h.run.id.clone(), h.run.created_at);
                let (written, hot) = match h.event {
                    Some(event) => (Written::fresh(&h.run), Some((h.run, event))),
                    None => (Written::default(), None),
                };
                out.push(Claim {
                    run_id,
                    due,
                    ticket: super::Ticket::Postgres(Box::new(Ticket {
                        token: h.token,
                        written: Mutex::new(written),
                        hot: Mutex::new(hot),
                        settled: AtomicBool::new(false),
                    })),
                });
            }
        }
        Ok(out)
    }

    /// Claim up to `want` free or lapsed runs from the database.
    async fn poll_db(&self, now: Timestamp, want: usize) -> Result<Vec<Claim>> {
        let mut out = Vec::new();
        let want = want as i64;
        let client = self.client().await?;
        let stmt = client
            .prepare_cached(
                "WITH free AS (
                    SELECT run_id FROM hookflow.queue
                     WHERE node IS NULL AND due <= $1
                     ORDER BY due LIMIT $2 FOR UPDATE SKIP LOCKED
                 ), lapsed AS (
                    SELECT run_id FROM hookflow.queue
                     WHERE node IS NOT NULL AND lease_until < now() AND due <= $1
                     ORDER BY lease_until LIMIT $2 FOR UPDATE SKIP LOCKED
                 ), picked AS (
                    SELECT run_id FROM free UNION SELECT run_id FROM lapsed LIMIT $2
                 )
                 UPDATE hookflow.queue q
                    SET node = $3, token = nextval('hookflow.lease_tokens'),
                        lease_until = now() + make_interval(secs => $4)
                   FROM picked WHERE q.run_id = picked.run_id
                 RETURNING q.run_id, q.due, q.token",
            )
            .await
            .map_err(pg("preparing the claim"))?;
        let lease = self.shared.lease.as_secs_f64();
        let rows = client
            .query(&stmt, &[&(now.0 as i64), &want, &self.shared.node, &lease])
            .await
            .map_err(pg("claiming due runs"))?;
        self.polled(rows.is_empty());
        for r in rows {
            let run_id: String = r.get(0);
            let due: i64 = r.get(1);
            let token: i64 = r.get(2);
            out.push(Claim {
                run_id: RunId(run_id),
                due: Timestamp(due.max(0) as u64),
                ticket: super::Ticket::Postgres(Box::new(Ticket {
                    token,
                    hot: Mutex::new(None),
                    written: Mutex::new(Written::default()),
                    settled: AtomicBool::new(false),
                })),
            });
        }
        Ok(out)
    }

    /// Is it time to ask the database for claimable runs?
    fn poll_due(&self) -> bool {
        let p = self.poll.lock().unwrap_or_else(|e| e.into_inner());
        p.due(Instant::now())
    }

    /// A poll found nothing (back off) or something (poll again at once).
    fn polled(&self, empty: bool) {
        let mut p = self.poll.lock().unwrap_or_else(|e| e.into_inner());
        p.polled(empty, Instant::now(), self.shared.lease);
    }

    /// New work may be in the database: poll at the next claim.
    fn hint(&self) {
        let mut p = self.poll.lock().unwrap_or_else(|e| e.into_inner());
        p.hint(Instant::now());
    }

    pub fn next_due(&self) -> Option<Timestamp> {
        let mut due = self
            .shared
            .next_due
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if due.is_some_and(|d| d <= Timestamp::now()) {
            // Passed: the dispatcher polls for it now (and the poll
            // back-off bounds how often after that).
            let d = due.take();
            drop(due);
            self.hint();
            return d;
        }
        *due
    }

    pub async fn work_arrived(&self) {
        self.shared.changed.notified().await;
        if self.shared.db_work.swap(false, Ordering::Relaxed) {
            self.hint();
        }
    }

    fn ticket(claim: &Claim) -> Result<&Ticket> {
        match &claim.ticket {
            super::Ticket::Postgres(t) => Ok(t.as_ref()),
            // Claims go back to the store that handed them out.
            super::Ticket::Sled(_) => Err(StoreError::Other(format!(
                "run {}: a claim of another store was handed to the PostgreSQL store",
                claim.run_id
            ))),
        }
    }

    /// Before a step acts: is the claim still ours? Free while the
    /// heartbeat is on time; otherwise the lease is renewed on the run's
    /// own row, which fails if another node took it over.
    pub async fn hold(&self, claim: &Claim) -> Result<()> {
        let since = self
            .shared
            .origin
            .elapsed()
            .as_millis()
            .saturating_sub(u128::from(self.shared.renewed_ms.load(Ordering::Relaxed)));
        if since < (self.shared.lease / 2).as_millis() {
            return Ok(());
        }
        let t = Self::ticket(claim)?;
        let client = self.client().await?;
        let n = client
            .execute(
                "UPDATE hookflow.queue SET lease_until = now() + make_interval(secs => $3)
                  WHERE run_id = $1 AND token = $2",
                &[
                    &claim.run_id.as_str(),
                    &t.token,
                    &self.shared.lease.as_secs_f64(),
                ],
            )
            .await
            .map_err(pg("renewing a lease"))?;
        if n == 0 {
            t.settled.store(true, Ordering::Relaxed);
            return Err(StoreError::LeaseLost {
                run_id: claim.run_id.to_string(),
            });
        }
        Ok(())
    }

    pub async fn load(&self, claim: &Claim) -> Result<Option<(Run, Event)>> {
        let t = Self::ticket(claim)?;
        let hot = t.hot.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some((run, event)) = hot {
            return Ok(Some((run, event)));
        }
        let run = match self.read_run(claim.run_id.as_str()).await {
            Ok(r) => r,
            Err(e @ StoreError::Corrupt { .. }) => {
                self.note_unreadable("runs", claim.run_id.as_str(), &e);
                self.drop_claim(claim, "its record cannot be read").await?;
                return Ok(None);
            }
            Err(e) => return Err(e),
        };
        let Some(run) = run else {
            self.drop_claim(claim, "its record is missing").await?;
            return Ok(None);
        };
        if run.status.is_final() {
            self.drop_claim(claim, "it has finished").await?;
            return Ok(None);
        }
        let event = match self.read_event(run.event_id.as_str()).await {
            Ok(e) => e,
            Err(e @ StoreError::Corrupt { .. }) => {
                self.note_unreadable("events", run.event_id.as_str(), &e);
                None
            }
            Err(e) => return Err(e),
        };
        let Some(event) = event else {
            warn!(run_id = %claim.run_id, event_id = %run.event_id, "the run's event is no longer stored; ending the run as failed");
            let mut failed = run;
            let now = Timestamp::now();
            failed.status = RunStatus::Failed;
            failed.error = Some("its event is no longer stored (pruned)".into());
            failed.finished_at = Some(now);
            *t.written.lock().unwrap_or_else(|e| e.into_inner()) = Written::all_of(&failed);
            self.finish(claim, &failed, Durability::Now).await?;
            return Ok(None);
        };
        *t.written.lock().unwrap_or_else(|e| e.into_inner()) = Written::all_of(&run);
        Ok(Some((run, event)))
    }

    /// The claim leads nowhere: remove its queue row (if still ours).
    async fn drop_claim(&self, claim: &Claim, why: &str) -> Result<()> {
        warn!(run_id = %claim.run_id, reason = why, "dropping a queued run");
        let t = Self::ticket(claim)?;
        let client = self.client().await?;
        client
            .execute(
                "DELETE FROM hookflow.queue WHERE run_id = $1 AND token = $2",
                &[&claim.run_id.as_str(), &t.token],
            )
            .await
            .map_err(pg("dropping a queued run"))?;
        t.settled.store(true, Ordering::Relaxed);
        Ok(())
    }

    pub async fn save(&self, claim: &Claim, run: &Run, _durability: Durability) -> Result<()> {
        self.write_run(claim, run, Fence::Renew).await
    }

    pub async fn schedule(&self, claim: &Claim, run: &Run) -> Result<()> {
        let due = run.next_attempt_at.ok_or_else(|| {
            StoreError::Other(format!("run {} is scheduled with no time", run.id))
        })?;
        let seq = match run.status {
            RunStatus::Waiting => "delay",
            _ => "retry",
        };
        self.write_run(claim, run, Fence::Reschedule(due)).await?;
        self.crash_point(&format!("{seq}.entry_written"));
        self.crash_point(&format!("{seq}.run_saved"));
        self.crash_point(&format!("{seq}.old_entry_removed"));
        {
            let mut next = self
                .shared
                .next_due
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            if next.is_none_or(|n| due < n) {
                *next = Some(due);
            }
        }
        self.publish(run);
        Ok(())
    }

    pub async fn finish(&self, claim: &Claim, run: &Run, _durability: Durability) -> Result<()> {
        self.write_run(claim, run, Fence::Finish).await?;
        self.crash_point("finish.run_saved");
        self.crash_point("finish.entry_removed");
        self.publish(run);
        Ok(())
    }

    /// One fenced write, group-committed with other runs' (`writes.rs`):
    /// the queue row is checked (and renewed, freed or deleted), then the
    /// run's changed rows are written, or nothing.
    async fn write_run(&self, claim: &Claim, run: &Run, fence: Fence) -> Result<()> {
        let t = Self::ticket(claim)?;
        let (delta, before) = {
            let mut w = t.written.lock().unwrap_or_else(|e| e.into_inner());
            let before = w.clone();
            (w.delta(run), before)
        };
        let (answer, answered) = tokio::sync::oneshot::channel();
        let pending = writes::Pending {
            write: writes::Write {
                run_id: run.id.to_string(),
                token: t.token,
                status: run.status.as_str(),
                fence,
                delta,
            },
            answer,
        };
        let closed = || StoreError::Other("the store is closing".into());
        let result = match self.writes.send(pending).await {
            Ok(()) => answered.await.unwrap_or_else(|_| Err(closed())),
            Err(_) => Err(closed()),
        };
        match result {
            Ok(false) => {
                t.settled.store(true, Ordering::Relaxed);
                Err(StoreError::LeaseLost {
                    run_id: run.id.to_string(),
                })
            }
            Ok(true) => {
                if !matches!(fence, Fence::Renew) {
                    t.settled.store(true, Ordering::Relaxed);
                }
                Ok(())
            }
            Err(e) => {
                // Not written: the next save must carry these rows again.
                *t.written.lock().unwrap_or_else(|e| e.into_inner()) = before;
                Err(e)
            }
        }
    }

    pub fn release(&self, claim: Claim, failed: bool) {
        let Ok(t) = Self::ticket(&claim) else {
            return;
        };
        if t.settled.load(Ordering::Relaxed) {
            return;
        }
        let token = t.token;
        let pool = self.shared.pool.clone();
        let changed = Arc::clone(&self.shared);
        let due = if failed {
            Timestamp::now().plus(Duration::from_secs(1))
        } else {
            Timestamp(0)
        };
        self.handle.spawn(async move {
            let freed = async {
                let client = get(&pool).await?;
                client
                    .execute(
                        "UPDATE hookflow.queue SET node = NULL, token = NULL, lease_until = NULL, due = GREATEST(due, $3)
                          WHERE run_id = $1 AND token = $2",
                        &[&claim.run_id.as_str(), &token, &(due.0 as i64)],
                    )
                    .await
                    .map_err(pg("letting go of a run"))
            }
            .await;
            match freed {
                Ok(_) => changed.wake_for_db_work(),
                // The lease runs out by itself; another node takes it then.
                Err(e) => warn!(run_id = %claim.run_id, error = %e, "cannot let go of a run; it is taken over when its lease ends"),
            }
        });
    }

    pub async fn insert_replay(&self, original: &Run, replay: &Run) -> Result<()> {
        let mut written = Written::default();
        let d = written.delta(replay);
        // Held by this node when it has room: the node that took the
        // request runs the replay (as with fresh runs).
        let room = {
            let held = self
                .shared
                .hot
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .len();
            held + (self.shared.hot_reserved.load(Ordering::Relaxed) as usize) < MAX_HOT
        };
        let token = room.then(|| fastrand::i64((1 << 62)..i64::MAX));
        let node = token.map(|_| self.shared.node.as_str());
        let client = self.client().await?;
        let stmt = client
            .prepare_cached(
                "WITH r AS (
                    INSERT INTO hookflow.runs (id, event_id, workflow, status, created_at, replays, bytes, plan, head)
                    VALUES ($1, $2, $3, $4, $5, '{}', $6, $7, $8)
                 ), st AS (
                    INSERT INTO hookflow.steps (run_id, idx, record)
                    SELECT $1, i, r FROM unnest($9::int4[], $10::text[]) AS t(i, r)
                 ), at AS (
                    INSERT INTO hookflow.attempts (run_id, step_idx, n, record)
                    SELECT $1, s, n, r FROM unnest($11::int4[], $12::int4[], $13::text[]) AS t(s, n, r)
                 ), q AS (
                    INSERT INTO hookflow.queue (run_id, due, node, token, lease_until)
                    VALUES ($1, $5, $15, $16,
                            CASE WHEN $15::text IS NULL THEN NULL ELSE now() + make_interval(secs => $17) END)
                 ), ev AS (
                    UPDATE hookflow.events SET runs = array_append(runs, $1::text)
                     WHERE id = $2 AND NOT ($1::text = ANY(runs))
                 )
                 UPDATE hookflow.runs SET replays = array_append(replays, $1::text)
                  WHERE id = $14 AND NOT ($1::text = ANY(replays))",
            )
            .await
            .map_err(pg("preparing a replay"))?;
        client
            .execute(
                &stmt,
                &[
                    &replay.id.as_str(),
                    &replay.event_id.as_str(),
                    &replay.workflow,
                    &replay.status.as_str(),
                    &(replay.created_at.0 as i64),
                    &d.bytes,
                    &rows::plan_json(replay),
                    &d.head,
                    &d.step_idx,
                    &d.step_rows,
                    &d.attempt_step,
                    &d.attempt_n,
                    &d.attempt_rows,
                    &original.id.as_str(),
                    &node,
                    &token,
                    &self.shared.lease.as_secs_f64(),
                ],
            )
            .await
            .map_err(pg("storing a replay"))?;
        self.crash_point("replay.entry_written");
        self.crash_point("replay.run_written");
        self.crash_point("replay.linked");
        match token {
            Some(token) => self
                .shared
                .hot
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push_back(HotRun {
                    run: replay.clone(),
                    event: None,
                    token,
                }),
            None => {
                feed::notify_work(&self.shared).await;
                self.hint();
            }
        }
        self.shared.changed.notify_one();
        self.publish(replay);
        self.publish(original);
        Ok(())
    }

    pub async fn queue_gauges(&self, now: Timestamp) -> QueueGauges {
        let counted = async {
            let client = self.client().await?;
            // The queue holds unfinished runs only: small, and joined to
            // their heads by key.
            let row = client
                .query_one(
                    "SELECT count(*), count(*) FILTER (WHERE q.due > $1), \
                     count(*) FILTER (WHERE r.status = 'waiting') \
                     FROM hookflow.queue q LEFT JOIN hookflow.runs r ON r.id = q.run_id",
                    &[&(now.0 as i64)],
                )
                .await
                .map_err(pg("counting the queue"))?;
            Ok::<(i64, i64, i64), StoreError>((row.get(0), row.get(1), row.get(2)))
        }
        .await;
        let (depth, later, waiting) = counted.unwrap_or_else(|e| {
            warn!(error = %e, "cannot count the queue for /metrics");
            (0, 0, 0)
        });
        QueueGauges {
            depth: depth.max(0) as usize,
            later: later.max(0) as usize,
            waiting: waiting.max(0) as usize,
            unreadable: self.shared.unreadable.count(),
            record_bytes: None,
            dedupe_bytes: None,
            disk_bytes: None,
            pace_bytes: None,
            record_target_bytes: None,
        }
    }

    fn note_unreadable(&self, table: &str, key: &str, e: &StoreError) {
        self.shared.unreadable.note(table, key, e);
    }

    // --- the change feed ----------------------------------------------------

    pub fn publish(&self, run: &Run) {
        feed::publish_local(&self.shared, RunUpdate::of(run));
    }

    /// A live listener: this node's updates at once, and the other nodes'
    /// once they hear that this node listens (within milliseconds; what
    /// they changed in the meantime comes with the first payload).
    pub fn subscribe(&self) -> broadcast::Receiver<RunUpdate> {
        let rx = self.shared.updates.subscribe();
        self.shared.announce.notify_one();
        rx
    }

    // --- reads ----------------------------------------------------------------

    async fn read_run(&self, id: &str) -> Result<Option<Run>> {
        let mut runs = self.read_runs(&[id.to_string()]).await?;
        runs.pop().map(|(_, r)| r).transpose()
    }

    /// The runs with these ids (those that exist, in the given order), each
    /// assembled from its rows, or the reason it cannot be.
    async fn read_runs(&self, ids: &[String]) -> Result<Vec<(String, Result<Run>)>> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let client = self.client().await?;
        let (heads, steps, attempts) = futures_util::future::try_join3(
            client.query(
                "SELECT id, head, plan, replays FROM hookflow.runs WHERE id = ANY($1)",
                &[&ids],
            ),
            client.query(
                "SELECT run_id, idx, record FROM hookflow.steps WHERE run_id = ANY($1)",
                &[&ids],
            ),
            client.query(
                "SELECT run_id, step_idx, n, record FROM hookflow.attempts WHERE run_id = ANY($1)",
                &[&ids],
            ),
        )
        .await
        .map_err(pg("reading runs"))?;
        let mut step_rows: std::collections::HashMap<String, Vec<(i32, String)>> =
            Default::default();
        for r in steps {
            step_rows
                .entry(r.get(0))
                .or_default()
                .push((r.get(1), r.get(2)));
        }
        let mut attempt_rows: std::collections::HashMap<String, Vec<(i32, i32, String)>> =
            Default::default();
        for r in attempts {
            attempt_rows
                .entry(r.get(0))
                .or_default()
                .push((r.get(1), r.get(2), r.get(3)));
        }
        let mut by_id: std::collections::HashMap<String, Result<Run>> = Default::default();
        for r in heads {
            let id: String = r.get(0);
            let head: String = r.get(1);
            let plan: String = r.get(2);
            let replays: Vec<String> = r.get(3);
            let run = rows::assemble(
                &head,
                &plan,
                step_rows.remove(&id).unwrap_or_default(),
                attempt_rows.remove(&id).unwrap_or_default(),
            )
            .map(|mut run| {
                run.replays = replays.into_iter().map(RunId).collect();
                run
            })
            .map_err(|reason| StoreError::Corrupt {
                key: id.clone(),
                reason,
            });
            by_id.insert(id, run);
        }
        Ok(ids
            .iter()
            .filter_map(|id| by_id.remove(id).map(|r| (id.clone(), r)))
            .collect())
    }

    async fn read_event(&self, id: &str) -> Result<Option<Event>> {
        let client = self.client().await?;
        let row = client
            .query_opt(
                "SELECT record, runs FROM hookflow.events WHERE id = $1",
                &[&id],
            )
            .await
            .map_err(pg("reading an event"))?;
        row.map(|r| event_from(id, r.get(0), r.get(1))).transpose()
    }

    /// A run by an id a caller gave (any text: one with a NUL is no run's).
    pub async fn run(&self, id: &str) -> Result<Option<Run>> {
        self.read_run(&rows::text(id)).await
    }

    /// An event by an id a caller gave.
    pub async fn event(&self, id: &str) -> Result<Option<Event>> {
        self.read_event(&rows::text(id)).await
    }

    pub async fn list_runs(&self, q: &RunQuery) -> Result<Page<Run>> {
        let limit = q.limit.max(1);
        let mut sql = String::from("SELECT id FROM hookflow.runs WHERE true");
        let mut params: Vec<Box<dyn ToSql + Sync + Send>> = Vec::new();
        if let Some(w) = &q.workflow {
            params.push(Box::new(rows::text(w).into_owned()));
            sql += &format!(" AND workflow = ${}", params.len());
        }
        if let Some(s) = q.status {
            params.push(Box::new(s.as_str()));
            sql += &format!(" AND status = ${}", params.len());
        }
        if let Some(b) = &q.before {
            params.push(Box::new(rows::text(b).into_owned()));
            sql += &format!(" AND id < ${}", params.len());
        }
        params.push(Box::new((limit + 1) as i64));
        sql += &format!(" ORDER BY id DESC LIMIT ${}", params.len());
        let ids: Vec<String> = {
            let client = self.client().await?;
            let refs: Vec<&(dyn ToSql + Sync)> =
                params.iter().map(|p| &**p as &(dyn ToSql + Sync)).collect();
            let stmt = client
                .prepare_cached(&sql)
                .await
                .map_err(pg("preparing a run listing"))?;
            client
                .query(&stmt, &refs)
                .await
                .map_err(pg("listing runs"))?
                .iter()
                .map(|r| r.get(0))
                .collect()
        };
        let more = ids.len() > limit;
        let page_ids = &ids[..ids.len().min(limit)];
        let mut items = Vec::new();
        for (id, run) in self.read_runs(page_ids).await? {
            match run {
                Ok(r) => items.push(r),
                Err(e) => self.note_unreadable("runs", &id, &e),
            }
        }
        Ok(Page {
            next_before: more.then(|| page_ids.last().cloned()).flatten(),
            items,
        })
    }

    pub async fn list_events(&self, q: &EventQuery) -> Result<Page<Event>> {
        let limit = q.limit.max(1);
        let mut sql = String::from("SELECT id, record, runs FROM hookflow.events WHERE true");
        let mut params: Vec<Box<dyn ToSql + Sync + Send>> = Vec::new();
        if let Some(o) = q.outcome {
            params.push(Box::new(o.as_str()));
            sql += &format!(" AND outcome = ${}", params.len());
        }
        if let Some(w) = &q.workflow {
            if w.contains(',') {
                // No workflow's name holds one (see `ingest::workflows_column`).
                return Ok(Page {
                    items: Vec::new(),
                    next_before: None,
                });
            }
            // A name, not a pattern (`%` and `_` are LIKE's).
            params.push(Box::new(format!(",{},", rows::text(w))));
            sql += &format!(" AND strpos(workflows, ${}) > 0", params.len());
        }
        if let Some(b) = &q.before {
            params.push(Box::new(rows::text(b).into_owned()));
            sql += &format!(" AND id < ${}", params.len());
        }
        params.push(Box::new((limit + 1) as i64));
        sql += &format!(" ORDER BY id DESC LIMIT ${}", params.len());
        let client = self.client().await?;
        let refs: Vec<&(dyn ToSql + Sync)> =
            params.iter().map(|p| &**p as &(dyn ToSql + Sync)).collect();
        let stmt = client
            .prepare_cached(&sql)
            .await
            .map_err(pg("preparing an event listing"))?;
        let rows = client
            .query(&stmt, &refs)
            .await
            .map_err(pg("listing events"))?;
        let more = rows.len() > limit;
        let mut items = Vec::new();
        let mut last = None;
        for r in rows.into_iter().take(limit) {
            let id: String = r.get(0);
            match event_from(&id, r.get(1), r.get(2)) {
                Ok(e) => items.push(e),
                Err(e) => self.note_unreadable("events", &id, &e),
            }
            last = Some(id);
        }
        Ok(Page {
            items,
            next_before: if more { last } else { None },
        })
    }

    pub async fn run_heads(&self, since: Timestamp, cap: usize) -> Result<Vec<RunHead>> {
        let client = self.client().await?;
        let rows = client
            .query(
                "SELECT id, workflow, status, created_at FROM hookflow.runs
                  WHERE id >= $1 ORDER BY id DESC LIMIT $2",
                &[&RunId::floor(since).as_str(), &(cap as i64)],
            )
            .await
            .map_err(pg("reading run heads"))?;
        let mut out = Vec::with_capacity(rows.len());
        for r in rows {
            let status: String = r.get(2);
            let Some(status) = RunStatus::parse(&status) else {
                continue;
            };
            let created: i64 = r.get(3);
            out.push(RunHead {
                id: RunId(r.get(0)),
                workflow: r.get(1),
                status,
                created_at: Timestamp(created.max(0) as u64),
            });
        }
        Ok(out)
    }

    // --- workflow state and versions ----------------------------------------

    pub fn state(&self) -> PgState {
        PgState {
            pool: self.shared.pool.clone(),
            handle: self.handle.clone(),
        }
    }

    pub async fn put_version(&self, hash: &str, source: &str) -> Result<()> {
        let client = self.client().await?;
        client
            .execute(
                "INSERT INTO hookflow.versions (hash, source) VALUES ($1, $2) ON CONFLICT (hash) DO NOTHING",
                &[&hash, &source],
            )
            .await
            .map_err(pg("storing a workflow version"))?;
        Ok(())
    }

    pub async fn version(&self, hash: &str) -> Result<Option<String>> {
        let client = self.client().await?;
        let row = client
            .query_opt(
                "SELECT source FROM hookflow.versions WHERE hash = $1",
                &[&hash],
            )
            .await
            .map_err(pg("reading a workflow version"))?;
        Ok(row.map(|r| r.get(0)))
    }

    // --- retention ------------------------------------------------------------

    /// Whole days past `cutoff` go at once (their partitions dropped) when
    /// nothing in them is unfinished; what is left past it (a retention
    /// shorter than a day, the default partition, a day that still holds an
    /// unfinished run) is deleted in batches, finished runs only. With a
    /// retention of a day or more, history is kept until its whole day is
    /// past the cutoff (at most a day longer), so that pruning stays a
    /// partition drop. Then the oldest finished history goes in batches
    /// while the store holds more than `max_bytes` of records.
    pub async fn prune(&self, cutoff: Timestamp, max_bytes: u64, now: Timestamp) -> Result<Pruned> {
        let mut pruned = Pruned::default();
        let mut client = self.client().await?;
        // Partitions: the coming days added, whole past days dropped.
        {
            let tx = client
                .transaction()
                .await
                .map_err(pg("starting a pruning transaction"))?;
            schema::lock(&tx)
                .await
                .map_err(|e| StoreError::Other(e.to_string()))?;
            schema::add_partitions(&tx, now.0)
                .await
                .map_err(|e| StoreError::Other(e.to_string()))?;
            let dropped = drop_days(&tx, cutoff).await?;
            pruned.events += dropped.0;
            pruned.runs += dropped.1;
            tx.commit()
                .await
                .map_err(pg("committing a pruning transaction"))?;
        }
        let retention = now.0.saturating_sub(cutoff.0);
        let batch_cutoff = if retention >= 24 * 3600 * 1000 {
            Timestamp(schema::day_start(cutoff.0))
        } else {
            cutoff
        };
        loop {
            let (events, runs, _) = delete_oldest(&client, Some(batch_cutoff), None).await?;
            pruned.events += events;
            pruned.runs += runs;
            if events < PRUNE_BATCH as usize {
                break;
            }
        }
        // By size: the records' bytes, oldest first.
        loop {
            let total: i64 = client
                .query_one(
                    "SELECT (SELECT coalesce(sum(bytes), 0) FROM hookflow.events)
                          + (SELECT coalesce(sum(bytes), 0) FROM hookflow.runs)",
                    &[],
                )
                .await
                .map_err(pg("measuring the history"))?
                .get(0);
            if total.max(0) as u64 <= max_bytes {
                break;
            }
            let need = total.saturating_sub(max_bytes.min(i64::MAX as u64) as i64);
            let (events, runs, freed) = delete_oldest(&client, None, Some(need)).await?;
            pruned.events += events;
            pruned.runs += runs;
            if events == 0 || freed <= 0 {
                break;
            }
        }
        // Rejected requests: only the newest are worth keeping.
        let n = client
            .execute(
                "DELETE FROM hookflow.events WHERE id IN (
                    SELECT id FROM hookflow.events WHERE outcome = 'rejected'
                     ORDER BY id DESC OFFSET $1 LIMIT 10000)",
                &[&(MAX_REJECTED_KEPT as i64)],
            )
            .await
            .map_err(pg("pruning rejected requests"))?;
        pruned.events += n as usize;
        loop {
            let n = client
                .execute(
                    "DELETE FROM hookflow.dedupe WHERE (workflow, key) IN (
                        SELECT workflow, key FROM hookflow.dedupe WHERE expires_at <= $1 LIMIT $2)",
                    &[&(now.0 as i64), &(PRUNE_BATCH * 10)],
                )
                .await
                .map_err(pg("pruning dedupe keys"))?;
            pruned.dedupe += n as usize;
            if (n as i64) < PRUNE_BATCH * 10 {
                break;
            }
        }
        Ok(pruned)
    }
}

impl Shared {
    /// Runs may be waiting in the database: wake the dispatcher to poll.
    fn wake_for_db_work(&self) {
        self.db_work.store(true, Ordering::Relaxed);
        self.changed.notify_one();
    }
}

async fn get(pool: &Pool) -> Result<Object> {
    pool.get().await.map_err(|e| StoreError::Postgres {
        doing: "getting a database connection",
        reason: match e {
            deadpool_postgres::PoolError::Backend(e) => describe(&e),
            other => other.to_string(),
        },
    })
}

fn event_from(id: &str, record: String, runs: Vec<String>) -> Result<Event> {
    let mut event: Event = serde_json::from_str(&record).map_err(|e| StoreError::Corrupt {
        key: id.to_string(),
        reason: e.to_string(),
    })?;
    event.runs = runs.into_iter().map(RunId).collect();
    Ok(event)
}

/// Drop the partitions of every day before `cutoff`'s day that holds no
/// unfinished run (and no event of one). Returns (events, runs) dropped,
/// by count.
async fn drop_days(
    tx: &tokio_postgres::Transaction<'_>,
    cutoff: Timestamp,
) -> Result<(usize, usize)> {
    let last_day = schema::day_start(cutoff.0);
    let event_days = schema::partitions(tx, "events")
        .await
        .map_err(|e| StoreError::Other(e.to_string()))?;
    let mut dropped = (0, 0);
    for (day, _) in event_days.into_iter().filter(|(d, _)| *d < last_day) {
        let day_end = day + 24 * 3600 * 1000;
        let (run_lo, run_hi) = (
            schema::id_floor(RunId::PREFIX, day),
            schema::id_floor(RunId::PREFIX, day_end),
        );
        let (evt_lo, evt_hi) = (
            schema::id_floor(crate::record::EventId::PREFIX, day),
            schema::id_floor(crate::record::EventId::PREFIX, day_end),
        );
        let busy: bool = tx
            .query_one(
                "SELECT EXISTS (SELECT 1 FROM hookflow.queue WHERE run_id >= $1 AND run_id < $2)
                     OR EXISTS (SELECT 1 FROM hookflow.queue q JOIN hookflow.runs r ON r.id = q.run_id
                                 WHERE r.event_id >= $3 AND r.event_id < $4)",
                &[&run_lo, &run_hi, &evt_lo, &evt_hi],
            )
            .await
            .map_err(pg("looking for unfinished runs in a day"))?
            .get(0);
        if busy {
            continue;
        }
        let counts = tx
            .query_one(
                "SELECT (SELECT count(*) FROM hookflow.events WHERE id >= $1 AND id < $2),
                        (SELECT count(*) FROM hookflow.runs WHERE id >= $3 AND id < $4)",
                &[&evt_lo, &evt_hi, &run_lo, &run_hi],
            )
            .await
            .map_err(pg("counting a day"))?;
        let (events, runs): (i64, i64) = (counts.get(0), counts.get(1));
        for (table, _) in schema::HISTORY {
            let name = schema::partition_name(table, day);
            tx.batch_execute(&format!("DROP TABLE IF EXISTS hookflow.{name}"))
                .await
                .map_err(pg("dropping a day of history"))?;
        }
        info!(day = %Timestamp(day).to_rfc3339(), events, runs, "dropped a day of history");
        dropped.0 += events.max(0) as usize;
        dropped.1 += runs.max(0) as usize;
    }
    Ok(dropped)
}

/// Delete up to [`PRUNE_BATCH`] of the oldest events (before `before`,
/// when given) whose runs are all finished, with those runs; with `need`,
/// only as many as free that many bytes. Returns (events, runs, bytes
/// freed).
async fn delete_oldest(
    client: &Object,
    before: Option<Timestamp>,
    need: Option<i64>,
) -> Result<(usize, usize, i64)> {
    let before = before.map_or_else(
        || "evt_~".to_string(),
        |t| crate::record::EventId::floor(t).0,
    );
    let stmt = client
        .prepare_cached(
            "WITH candidates AS (
                SELECT e.id, e.bytes + coalesce((SELECT sum(r.bytes) FROM hookflow.runs r
                                                  WHERE r.event_id = e.id), 0) AS size
                  FROM hookflow.events e
                 WHERE e.id < $1 AND e.outcome <> 'rejected'
                   AND NOT EXISTS (SELECT 1 FROM hookflow.runs r JOIN hookflow.queue q ON q.run_id = r.id
                                    WHERE r.event_id = e.id)
                 ORDER BY e.id LIMIT $2
             ), doomed AS (
                SELECT id, size AS bytes FROM (
                    SELECT id, size, sum(size) OVER (ORDER BY id) AS upto FROM candidates
                ) c WHERE upto - size < $3::int8
             ), ev AS (
                DELETE FROM hookflow.events WHERE id IN (SELECT id FROM doomed)
             ), gone AS (
                DELETE FROM hookflow.runs WHERE event_id IN (SELECT id FROM doomed)
                RETURNING id, bytes
             ), st AS (
                DELETE FROM hookflow.steps WHERE run_id IN (SELECT id FROM gone)
             ), at AS (
                DELETE FROM hookflow.attempts WHERE run_id IN (SELECT id FROM gone)
             )
             SELECT (SELECT count(*) FROM doomed), (SELECT count(*) FROM gone),
                    (SELECT coalesce(sum(bytes), 0) FROM doomed)::bigint",
        )
        .await
        .map_err(pg("preparing the pruning of old history"))?;
    let row = client
        .query_one(&stmt, &[&before, &PRUNE_BATCH, &need.unwrap_or(i64::MAX)])
        .await
        .map_err(pg("pruning old history"))?;
    let (events, runs, freed): (i64, i64, i64) = (row.get(0), row.get(1), row.get(2));
    Ok((events.max(0) as usize, runs.max(0) as usize, freed))
}

/// The per-workflow key/value store behind `state_get` / `state_set`, for
/// the script threads: each call waits for the database (never on an async
/// runtime thread: scripts that use state do not run inline).
#[derive(Clone)]
pub struct PgState {
    pool: Pool,
    handle: tokio::runtime::Handle,
}

impl PgState {
    /// Run `f` on the store's runtime and wait for it here, at most
    /// [`STATE_WAIT`].
    fn wait<T: Send + 'static>(
        &self,
        f: impl std::future::Future<Output = Result<T>> + Send + 'static,
    ) -> Result<T> {
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        self.handle.spawn(async move {
            let _ = tx.send(f.await);
        });
        rx.recv_timeout(STATE_WAIT).map_err(|_| {
            StoreError::Other(format!(
                "the database did not answer a state call within {}s",
                STATE_WAIT.as_secs()
            ))
        })?
    }

    pub fn get(&self, workflow: &str, key: &str) -> Result<Option<Value>> {
        let (pool, workflow, key) = (
            self.pool.clone(),
            rows::text(workflow).into_owned(),
            rows::key(key).into_owned(),
        );
        let text: Option<String> = self.wait(async move {
            let client = get(&pool).await?;
            let row = client
                .query_opt(
                    "SELECT value FROM hookflow.state WHERE workflow = $1 AND key = $2",
                    &[&workflow, &key],
                )
                .await
                .map_err(pg("reading workflow state"))?;
            Ok(row.map(|r| r.get(0)))
        })?;
        text.map(|t| {
            serde_json::from_str(&t).map_err(|e| StoreError::Corrupt {
                key: "state".into(),
                reason: e.to_string(),
            })
        })
        .transpose()
    }

    pub fn set(&self, workflow: &str, key: &str, value: &Value) -> Result<()> {
        let (pool, workflow, key) = (
            self.pool.clone(),
            rows::text(workflow).into_owned(),
            rows::key(key).into_owned(),
        );
        let value = (!value.is_null()).then(|| rows::to_json(value));
        self.wait(async move {
            let client = get(&pool).await?;
            match value {
                Some(v) => client
                    .execute(
                        "INSERT INTO hookflow.state (workflow, key, value) VALUES ($1, $2, $3)
                         ON CONFLICT (workflow, key) DO UPDATE SET value = EXCLUDED.value",
                        &[&workflow, &key, &v],
                    )
                    .await
                    .map_err(pg("writing workflow state"))?,
                None => client
                    .execute(
                        "DELETE FROM hookflow.state WHERE workflow = $1 AND key = $2",
                        &[&workflow, &key],
                    )
                    .await
                    .map_err(pg("writing workflow state"))?,
            };
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The gaps between polls that find nothing, until the back-off stops
    /// growing.
    fn gaps(lease: Duration) -> Vec<Duration> {
        let start = Instant::now();
        let mut p = Poll::new(start);
        let mut now = start;
        let mut out = Vec::new();
        for _ in 0..20 {
            assert!(p.due(now));
            p.polled(true, now, lease);
            out.push(p.next - now);
            now = p.next;
        }
        out
    }

    #[test]
    fn empty_polls_back_off_to_a_quarter_of_the_lease_at_most() {
        let short = gaps(Duration::from_secs(2));
        assert_eq!(short[0], POLL_MIN);
        assert_eq!(short[1], POLL_MIN * 2, "doubling");
        assert_eq!(short.iter().max(), Some(&Duration::from_millis(500)));
        let long = gaps(Duration::from_secs(60));
        assert_eq!(long.iter().max(), Some(&POLL_MAX));
        assert_eq!(long.last(), Some(&POLL_MAX), "it stays there");
    }

    #[test]
    fn a_poll_that_finds_work_or_a_hint_starts_over() {
        let lease = Duration::from_secs(15);
        let start = Instant::now();
        let mut p = Poll::new(start);
        for _ in 0..10 {
            p.polled(true, start, lease);
        }
        assert!(!p.due(start + Duration::from_millis(100)));
        p.polled(false, start, lease);
        assert!(p.due(start), "found work: poll again at once");
        p.polled(true, start, lease);
        assert_eq!(p.next - start, POLL_MIN);
        for _ in 0..10 {
            p.polled(true, start, lease);
        }
        p.hint(start);
        assert!(p.due(start));
        p.polled(true, start, lease);
        assert_eq!(p.next - start, POLL_MIN, "a hint resets the back-off");
    }
}
