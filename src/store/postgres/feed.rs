//! What the nodes tell each other, and the database: this node's
//! heartbeat (renewing the leases of every run it holds, in one statement),
//! wake-up hints (`NOTIFY hookflow_work` after a commit that left runs free
//! for any node), and the live stream shared by all nodes.
//!
//! The live stream: each node delivers its own run updates to its own
//! listeners at once. It sends them to the other nodes over `NOTIFY
//! hookflow_runs` only while one of them has a listener (the UI's live
//! view, `GET /api/stream`): a node with listeners says so on `NOTIFY
//! hookflow_watch` when the first one connects and every
//! [`ANNOUNCE_EVERY`] while any stays, and the others send for
//! [`WATCH_TTL`] after each time they hear it. Nobody watching, nothing is
//! sent: on the load bench the notifications took a fifth of the
//! database's CPU per event with one node and a third with two, as every
//! node hears every notification (`docs/performance.md`). Sent updates
//! are gathered for [`GATHER`] (up to [`GATHER_MAX`] bytes) and sent in
//! payloads of at most [`PAYLOAD_MAX`] bytes, so that a busy node sends a
//! few notifications a second rather than one per update. Within a
//! gathering only the latest update of each run is sent: a run goes
//! through several states in a few ms, and a remote view shows where it
//! is (on the load bench, gathering up to one payload sent 2.3 updates per
//! run; the whole window, 1.6). Unwatched, a node keeps its updates of the
//! last [`RECENT`], and sends those once a watch begins: a run that changed
//! on this node while the news of a new listener was on its way is not
//! missed there. Every node listens on a connection of its own and hands
//! what other nodes sent to its listeners. Polling stays the baseline for
//! work: a hint only makes a node poll sooner.

use super::{describe, get, pg, Shared};
use crate::record::{RunId, RunUpdate};
use crate::store::{Result, StoreError};
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, watch};
use tracing::{debug, warn};

/// The channel of wake-up hints.
pub const WORK: &str = "hookflow_work";
/// The channel of run updates.
pub const RUNS: &str = "hookflow_runs";
/// The channel on which a node with live listeners asks for the others'
/// updates (the payload is its name).
pub const WATCH: &str = "hookflow_watch";

/// How often a node with live listeners says so.
pub const ANNOUNCE_EVERY: Duration = Duration::from_secs(2);
/// How long a node sends its updates after it last heard that another
/// node has listeners: three announcements, so one lost on a connection
/// being re-established does not stop the stream.
pub const WATCH_TTL: Duration = Duration::from_secs(6);
/// How far back the updates go that an unwatched node sends when a watch
/// begins.
pub const RECENT: Duration = Duration::from_secs(5);
/// Updates an unwatched node keeps at most (the newest).
const RECENT_MAX: usize = 8192;

/// How long updates are gathered into one notification at most.
const GATHER: Duration = Duration::from_millis(50);
/// PostgreSQL takes payloads under 8000 bytes.
const PAYLOAD_MAX: usize = 7000;
/// A gathering ends early at this size, sent as several payloads.
const GATHER_MAX: usize = 8 * PAYLOAD_MAX;
/// Updates waiting to be sent at most; beyond, they are dropped (listeners
/// of other nodes miss them, as a lagging listener does).
const OUTBOX: usize = 10_000;
/// How long a lost listening connection waits before it connects again.
const RECONNECT: Duration = Duration::from_secs(1);

/// The updates of this node waiting to be sent to the others.
pub struct Outbox {
    tx: mpsc::Sender<RunUpdate>,
    rx: Mutex<Option<mpsc::Receiver<RunUpdate>>>,
}

impl Default for Outbox {
    fn default() -> Self {
        let (tx, rx) = mpsc::channel(OUTBOX);
        Outbox {
            tx,
            rx: Mutex::new(Some(rx)),
        }
    }
}

/// One notification on [`RUNS`]: who sent it and what changed.
#[derive(Serialize, Deserialize)]
struct Payload {
    node: String,
    updates: Vec<RunUpdate>,
}

/// A run changed here: tell this node's listeners, and queue it for the
/// others.
pub fn publish_local(shared: &Shared, update: RunUpdate) {
    if shared.updates.receiver_count() > 0 {
        let _ = shared.updates.send(update.clone());
    }
    let _ = shared.feed.tx.try_send(update);
}

/// One notification, through a statement prepared once per connection.
async fn notify(shared: &Shared, channel: &str, payload: &str, doing: &'static str) -> Result<()> {
    let client = get(&shared.pool).await?;
    let statement = client
        .prepare_cached("SELECT pg_notify($1, $2)")
        .await
        .map_err(pg(doing))?;
    client
        .execute(&statement, &[&channel, &payload])
        .await
        .map_err(pg(doing))?;
    Ok(())
}

/// Tell the other nodes that free runs are waiting (after a commit).
pub async fn notify_work(shared: &Shared) {
    if let Err(e) = notify(shared, WORK, "", "sending a wake-up hint").await {
        // A hint only: the others find the runs by polling.
        debug!(error = %e, "cannot send a wake-up hint");
    }
}

/// Whether another node has live listeners (it said so within
/// [`WATCH_TTL`]).
fn watched(shared: &Shared) -> bool {
    (shared.origin.elapsed().as_millis() as u64) < shared.watched_until_ms.load(Ordering::Relaxed)
}

/// Another node has live listeners: send updates for [`WATCH_TTL`] from
/// now. A watch that begins asks the publisher for the recent updates.
fn heard_watch(shared: &Shared) {
    let was = watched(shared);
    let until = shared.origin.elapsed() + WATCH_TTL;
    shared
        .watched_until_ms
        .store(until.as_millis() as u64, Ordering::Relaxed);
    if !was {
        shared.catch_up.notify_one();
    }
}

/// While this node has live listeners, tell the others: at once when one
/// connects (`Shared::announce`), then every [`ANNOUNCE_EVERY`], until
/// `stop`.
pub async fn announce(shared: Arc<Shared>, mut stop: watch::Receiver<bool>) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(ANNOUNCE_EVERY) => {}
            _ = shared.announce.notified() => {}
            _ = stop.changed() => {}
        }
        if *stop.borrow() {
            return;
        }
        if shared.updates.receiver_count() == 0 {
            continue;
        }
        let doing = "asking the other nodes for their run updates";
        if let Err(e) = notify(&shared, WATCH, &shared.node, doing).await {
            // Said again at the next turn.
            debug!(error = %e, "cannot ask the other nodes for their run updates");
        }
    }
}

/// Renew the lease of every run this node holds, except the rows being
/// written right now: a batch of run writes (`writes.rs`) renews, frees or
/// deletes those itself, and waiting for it while holding the others would
/// deadlock with it (each locks several rows, in no common order). A row
/// whose write fails is renewed by the next heartbeat, well within the
/// lease.
pub async fn renew(shared: &Shared) -> Result<()> {
    let client = get(&shared.pool).await?;
    client
        .execute(
            "UPDATE hookflow.queue SET lease_until = now() + make_interval(secs => $2)
              WHERE run_id IN (SELECT run_id FROM hookflow.queue WHERE node = $1 FOR UPDATE SKIP LOCKED)",
            &[&shared.node, &shared.lease.as_secs_f64()],
        )
        .await
        .map_err(pg("renewing this node's leases"))?;
    let ms = shared.origin.elapsed().as_millis() as u64;
    shared.renewed_ms.store(ms, Ordering::Relaxed);
    Ok(())
}

/// Renew every third of the lease until `stop`.
pub async fn heartbeat(shared: Arc<Shared>, mut stop: watch::Receiver<bool>) {
    let every = shared.lease / 3;
    loop {
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = stop.changed() => {}
        }
        if *stop.borrow() {
            return;
        }
        if let Err(e) = renew(&shared).await {
            warn!(error = %e, "cannot renew this node's leases; other nodes take its runs over if this lasts");
        }
    }
}

/// Send this node's updates to the others while one of them watches,
/// until `stop`; keep the recent ones while none does.
pub async fn publish(shared: Arc<Shared>, mut stop: watch::Receiver<bool>) {
    let Some(mut rx) = shared
        .feed
        .rx
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .take()
    else {
        return;
    };
    let mut recent = Recent::default();
    loop {
        let first = tokio::select! {
            u = rx.recv() => match u { Some(u) => u, None => return },
            _ = shared.catch_up.notified() => {
                send(&shared, recent.take(Instant::now())).await;
                continue;
            }
            _ = stop.changed() => return,
        };
        if !watched(&shared) {
            recent.keep(first, Instant::now());
            continue;
        }
        // The latest update of each run in the window: a remote live view
        // shows where a run is, and a run passes through several states
        // (queued, running, each step saved, its end) within a few ms.
        let mut latest = Latest::default();
        latest.push(first);
        let deadline = tokio::time::Instant::now() + GATHER;
        while latest.size < GATHER_MAX {
            match tokio::time::timeout_at(deadline, rx.recv()).await {
                Ok(Some(u)) => latest.push(u),
                Ok(None) | Err(_) => break,
            }
        }
        send(&shared, latest).await;
    }
}

/// Send updates to the other nodes, in as few notifications as they fit.
async fn send(shared: &Shared, latest: Latest) {
    for payload in payloads(&shared.node, latest.updates) {
        if let Err(e) = notify(shared, RUNS, &payload, "sending run updates").await {
            debug!(error = %e, "cannot send run updates to the other nodes");
        }
    }
}

/// The updates of the last [`RECENT`] (at most [`RECENT_MAX`]), kept while
/// no other node watches.
#[derive(Default)]
struct Recent {
    kept: VecDeque<(Instant, RunUpdate)>,
}

impl Recent {
    fn keep(&mut self, u: RunUpdate, now: Instant) {
        if self.kept.len() == RECENT_MAX {
            self.kept.pop_front();
        }
        self.kept.push_back((now, u));
        while self
            .kept
            .front()
            .is_some_and(|(at, _)| now.duration_since(*at) > RECENT)
        {
            self.kept.pop_front();
        }
    }

    /// The latest update of each run kept within [`RECENT`] of `now`.
    fn take(&mut self, now: Instant) -> Latest {
        let mut latest = Latest::default();
        for (at, u) in self.kept.drain(..) {
            if now.duration_since(at) <= RECENT {
                latest.push(u);
            }
        }
        latest
    }
}

/// The latest update of each run, in the order runs first appeared, and
/// about how many bytes they take in a payload.
#[derive(Default)]
struct Latest {
    updates: Vec<RunUpdate>,
    index: HashMap<RunId, usize>,
    size: usize,
}

impl Latest {
    fn push(&mut self, u: RunUpdate) {
        match self.index.get(&u.id) {
            Some(&i) => self.updates[i] = u,
            None => {
                self.size += u.id.as_str().len() + u.workflow.len() + u.event_id.len() + 60;
                self.index.insert(u.id.clone(), self.updates.len());
                self.updates.push(u);
            }
        }
    }
}

/// Split updates into payloads PostgreSQL takes, each update serialized
/// once.
fn payloads(node: &str, updates: Vec<RunUpdate>) -> Vec<String> {
    let Ok(node) = serde_json::to_string(node) else {
        return Vec::new();
    };
    let head = format!("{{\"node\":{node},\"updates\":[");
    let mut out = Vec::new();
    let mut payload = head.clone();
    for u in updates {
        let Ok(one) = serde_json::to_string(&u) else {
            continue;
        };
        if payload.len() > head.len() {
            if payload.len() + one.len() + 2 > PAYLOAD_MAX {
                payload.push_str("]}");
                out.push(std::mem::replace(&mut payload, head.clone()));
            } else {
                payload.push(',');
            }
        }
        payload.push_str(&one);
    }
    if payload.len() > head.len() {
        payload.push_str("]}");
        out.push(payload);
    }
    out
}

/// Listen for the other nodes' hints and updates until `stop`, on a
/// connection of its own (connecting again when it is lost).
pub async fn listen(
    shared: Arc<Shared>,
    config: tokio_postgres::Config,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        let ended = tokio::select! {
            r = listen_once(&shared, &config) => r,
            _ = stop.changed() => return,
        };
        if let Err(e) = ended {
            warn!(error = %e, "lost the connection that hears the other nodes; connecting again");
        }
        // Whatever was missed meanwhile is found by polling.
        shared.wake_for_db_work();
        tokio::select! {
            _ = tokio::time::sleep(RECONNECT) => {}
            _ = stop.changed() => return,
        }
        if *stop.borrow() {
            return;
        }
    }
}

async fn listen_once(shared: &Shared, config: &tokio_postgres::Config) -> Result<()> {
    let (client, mut connection) = config
        .connect(tokio_postgres::NoTls)
        .await
        .map_err(pg("connecting to listen for other nodes"))?;
    let (tx, mut rx) = mpsc::unbounded_channel();
    let pump = tokio::spawn(async move {
        let mut messages = futures_util::stream::poll_fn(move |cx| connection.poll_message(cx));
        while let Some(m) = messages.next().await {
            match m {
                Ok(tokio_postgres::AsyncMessage::Notification(n)) => {
                    if tx.send(n).is_err() {
                        return Ok(());
                    }
                }
                Ok(_) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    });
    client
        .batch_execute(&format!("LISTEN {WORK}; LISTEN {RUNS}; LISTEN {WATCH};"))
        .await
        .map_err(pg("listening for other nodes"))?;
    while let Some(n) = rx.recv().await {
        match n.channel() {
            WORK => shared.wake_for_db_work(),
            // Another node has live listeners (this node's own word comes
            // back to it too).
            WATCH if n.payload() != shared.node => heard_watch(shared),
            RUNS => {
                // Read only while someone here listens (the UI's live view).
                if shared.updates.receiver_count() == 0 {
                    continue;
                }
                let Ok(p) = serde_json::from_str::<Payload>(n.payload()) else {
                    continue;
                };
                if p.node == shared.node {
                    continue;
                }
                for u in p.updates {
                    let _ = shared.updates.send(u);
                }
            }
            _ => {}
        }
    }
    drop(client);
    match pump.await {
        Ok(Ok(())) => Err(StoreError::Other("the listening connection closed".into())),
        Ok(Err(e)) => Err(StoreError::Other(format!(
            "the listening connection failed: {}",
            describe(&e)
        ))),
        Err(e) => Err(StoreError::Other(format!("the listener stopped: {e}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::RunStatus;

    #[test]
    fn payloads_stay_under_the_limit_and_keep_every_update() {
        let updates: Vec<RunUpdate> = (0..500)
            .map(|i| RunUpdate {
                id: RunId::generate(),
                workflow: format!("workflow-{i}"),
                status: RunStatus::Running,
                event_id: format!("evt_{i}"),
            })
            .collect();
        let out = payloads("node_a", updates);
        assert!(out.len() > 1);
        let mut n = 0;
        for p in &out {
            assert!(p.len() < 8000, "{} bytes", p.len());
            n += serde_json::from_str::<Payload>(p)
                .expect("json")
                .updates
                .len();
        }
        assert_eq!(n, 500);
    }

    #[test]
    fn a_gathering_keeps_the_latest_update_of_each_run_in_first_seen_order() {
        let update = |id: &RunId, status| RunUpdate {
            id: id.clone(),
            workflow: "orders".into(),
            status,
            event_id: "evt_1".into(),
        };
        let (a, b) = (RunId::generate(), RunId::generate());
        let mut latest = Latest::default();
        latest.push(update(&a, RunStatus::Queued));
        latest.push(update(&b, RunStatus::Queued));
        latest.push(update(&a, RunStatus::Running));
        let one_each = latest.size;
        latest.push(update(&a, RunStatus::Succeeded));
        latest.push(update(&b, RunStatus::Failed));
        assert_eq!(latest.size, one_each, "a run counts once");
        let out = payloads("node \"a\"", latest.updates);
        assert_eq!(out.len(), 1);
        let p: Payload = serde_json::from_str(&out[0]).expect("json");
        assert_eq!(p.node, "node \"a\"");
        let got: Vec<_> = p.updates.iter().map(|u| (u.id.clone(), u.status)).collect();
        assert_eq!(got, vec![(a, RunStatus::Succeeded), (b, RunStatus::Failed)]);
    }

    #[test]
    fn kept_updates_are_the_latest_of_each_run_within_the_recent_window() {
        let update = |id: &RunId, status| RunUpdate {
            id: id.clone(),
            workflow: "orders".into(),
            status,
            event_id: "evt_1".into(),
        };
        let (old, a, b) = (RunId::generate(), RunId::generate(), RunId::generate());
        let start = Instant::now();
        let mut recent = Recent::default();
        recent.keep(update(&old, RunStatus::Succeeded), start);
        let later = start + RECENT + Duration::from_millis(1);
        recent.keep(update(&a, RunStatus::Queued), later);
        recent.keep(update(&b, RunStatus::Running), later);
        recent.keep(update(&a, RunStatus::Succeeded), later);
        assert_eq!(
            recent.kept.len(),
            3,
            "the update older than the window went"
        );
        let got: Vec<_> = recent
            .take(later)
            .updates
            .into_iter()
            .map(|u| (u.id, u.status))
            .collect();
        assert_eq!(
            got,
            vec![(a, RunStatus::Succeeded), (b, RunStatus::Running)]
        );
        assert!(recent.kept.is_empty(), "taken once");

        // Never more than the newest RECENT_MAX.
        for _ in 0..RECENT_MAX + 10 {
            recent.keep(update(&RunId::generate(), RunStatus::Queued), later);
        }
        assert_eq!(recent.kept.len(), RECENT_MAX);
        // Taken after the window: nothing.
        assert!(recent.take(later + RECENT * 2).updates.is_empty());
    }
}
