//! The PostgreSQL tables, how they are created and upgraded, and the daily
//! partitions of the history tables.
//!
//! Everything lives in the `hookflow` schema:
//!
//! | table      | holds | written |
//! |------------|-------|---------|
//! | `queue`    | one row per unfinished run: when it is due, which node holds it (`node`, `token`, `lease_until`) | the hot table: small, rows come and go |
//! | `events`   | events as received (`record`: the JSON of SPEC §8) | once, plus a link per replay |
//! | `runs`     | the head of each run (status, times, attempt…) and its plan (step ids and kinds) | at each save, the head only |
//! | `steps`    | one row per step record that left `pending` | when that step's record changes |
//! | `attempts` | one row per outbound attempt | once |
//! | `dedupe`   | the first event of each dedupe key, until it expires | once per key and window |
//! | `state`    | `state_get` / `state_set` values | per `state_set` |
//! | `versions` | each workflow version's sources | once per version |
//! | `probe`    | the readiness write of each node | per probe |
//! | `meta`     | the schema version | per upgrade |
//!
//! The four history tables are partitioned by day on their ids: ids start
//! with their creation time (see `record`), so a range of ids is a range of
//! time, a lookup by id touches one partition, and retention drops a whole
//! day at once. A `DEFAULT` partition catches what falls outside the days
//! created so far; it is pruned by batched deletes.
//!
//! Records are kept as JSON text rather than `jsonb`: the engine never
//! queries inside them, text costs no parsing on the write path, and it
//! keeps any JSON a sender may send (`jsonb` refuses `\u0000`).
//!
//! Creating and upgrading runs under an advisory lock, so nodes that start
//! together do it one at a time.

use tokio_postgres::Client;

/// The schema version this build writes; [`migrate`] brings older ones up
/// to it and refuses newer ones.
pub const VERSION: i64 = 1;

/// The advisory lock key taken while the schema is created or changed
/// (and while partitions are added or dropped).
const SCHEMA_LOCK: i64 = 0x686f_6f6b_666c_6f77; // "hookflow"

/// Days of partitions kept ready ahead of today.
const DAYS_AHEAD: u64 = 2;

const DAY_MS: u64 = 24 * 3600 * 1000;

/// The four partitioned history tables, with the id prefix that their
/// partition key carries (steps and attempts hang off runs).
pub const HISTORY: [(&str, &str); 4] = [
    ("events", "evt_"),
    ("runs", "run_"),
    ("steps", "run_"),
    ("attempts", "run_"),
];

const CREATE: &str = r#"
CREATE SCHEMA IF NOT EXISTS hookflow;
CREATE TABLE IF NOT EXISTS hookflow.meta (
    key   text PRIMARY KEY,
    value text NOT NULL
);
CREATE TABLE IF NOT EXISTS hookflow.queue (
    run_id      text COLLATE "C" PRIMARY KEY,
    due         bigint NOT NULL,
    node        text,
    token       bigint,
    lease_until timestamptz
);
CREATE INDEX IF NOT EXISTS queue_free ON hookflow.queue (due) WHERE node IS NULL;
CREATE INDEX IF NOT EXISTS queue_held ON hookflow.queue (lease_until) WHERE node IS NOT NULL;
CREATE INDEX IF NOT EXISTS queue_node ON hookflow.queue (node) WHERE node IS NOT NULL;
CREATE SEQUENCE IF NOT EXISTS hookflow.lease_tokens;
CREATE TABLE IF NOT EXISTS hookflow.events (
    id          text COLLATE "C" NOT NULL,
    received_at bigint NOT NULL,
    outcome     text NOT NULL,
    workflows   text NOT NULL,
    runs        text[] NOT NULL DEFAULT '{}',
    bytes       integer NOT NULL,
    record      text NOT NULL,
    PRIMARY KEY (id)
) PARTITION BY RANGE (id);
CREATE INDEX IF NOT EXISTS events_rejected ON hookflow.events (id) WHERE outcome = 'rejected';
CREATE TABLE IF NOT EXISTS hookflow.events_default PARTITION OF hookflow.events DEFAULT;
CREATE TABLE IF NOT EXISTS hookflow.runs (
    id         text COLLATE "C" NOT NULL,
    event_id   text COLLATE "C" NOT NULL,
    workflow   text NOT NULL,
    status     text NOT NULL,
    created_at bigint NOT NULL,
    replays    text[] NOT NULL DEFAULT '{}',
    bytes      integer NOT NULL,
    plan       text NOT NULL,
    head       text NOT NULL,
    PRIMARY KEY (id)
) PARTITION BY RANGE (id);
CREATE INDEX IF NOT EXISTS runs_workflow ON hookflow.runs (workflow, id);
CREATE INDEX IF NOT EXISTS runs_event ON hookflow.runs (event_id);
CREATE TABLE IF NOT EXISTS hookflow.runs_default PARTITION OF hookflow.runs DEFAULT;
CREATE TABLE IF NOT EXISTS hookflow.steps (
    run_id text COLLATE "C" NOT NULL,
    idx    integer NOT NULL,
    record text NOT NULL,
    PRIMARY KEY (run_id, idx)
) PARTITION BY RANGE (run_id);
CREATE TABLE IF NOT EXISTS hookflow.steps_default PARTITION OF hookflow.steps DEFAULT;
CREATE TABLE IF NOT EXISTS hookflow.attempts (
    run_id   text COLLATE "C" NOT NULL,
    step_idx integer NOT NULL,
    n        integer NOT NULL,
    record   text NOT NULL,
    PRIMARY KEY (run_id, step_idx, n)
) PARTITION BY RANGE (run_id);
CREATE TABLE IF NOT EXISTS hookflow.attempts_default PARTITION OF hookflow.attempts DEFAULT;
CREATE TABLE IF NOT EXISTS hookflow.dedupe (
    workflow   text NOT NULL,
    key        text NOT NULL,
    event_id   text NOT NULL,
    runs       text NOT NULL,
    expires_at bigint NOT NULL,
    PRIMARY KEY (workflow, key)
);
CREATE INDEX IF NOT EXISTS dedupe_expiry ON hookflow.dedupe (expires_at);
CREATE TABLE IF NOT EXISTS hookflow.state (
    workflow text NOT NULL,
    key      text NOT NULL,
    value    text NOT NULL,
    PRIMARY KEY (workflow, key)
);
CREATE TABLE IF NOT EXISTS hookflow.versions (
    hash   text PRIMARY KEY,
    source text NOT NULL
);
CREATE TABLE IF NOT EXISTS hookflow.probe (
    node text PRIMARY KEY,
    at   bigint NOT NULL
);
"#;

/// What [`migrate`] found and did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Migrated {
    /// The tables were created.
    Created,
    /// They were at this older version and were brought up to date.
    Upgraded { from: i64 },
    /// Nothing to do.
    Current,
}

/// Why the schema cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum SchemaError {
    #[error("the database holds hookflow tables of schema version {found}, newer than this build ({VERSION}): upgrade hookflow")]
    Newer { found: i64 },
    #[error("{doing}: {reason}")]
    Db { doing: &'static str, reason: String },
}

fn db(doing: &'static str) -> impl Fn(tokio_postgres::Error) -> SchemaError {
    move |e| SchemaError::Db {
        doing,
        reason: super::describe(&e),
    }
}

/// Create or upgrade the tables, one node at a time, and make sure the
/// partitions of the coming days exist.
pub async fn migrate(client: &mut Client, now_ms: u64) -> Result<Migrated, SchemaError> {
    let tx = client
        .transaction()
        .await
        .map_err(db("starting the schema transaction"))?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&SCHEMA_LOCK])
        .await
        .map_err(db("waiting for the schema lock"))?;
    let exists: bool = tx
        .query_one("SELECT to_regclass('hookflow.meta') IS NOT NULL", &[])
        .await
        .map_err(db("looking for the hookflow tables"))?
        .get(0);
    let found: Option<i64> = if exists {
        tx.query_opt(
            "SELECT value::bigint FROM hookflow.meta WHERE key = 'schema_version'",
            &[],
        )
        .await
        .map_err(db("reading the schema version"))?
        .map(|r| r.get(0))
    } else {
        None
    };
    let outcome = match found {
        Some(v) if v > VERSION => return Err(SchemaError::Newer { found: v }),
        Some(v) if v == VERSION => Migrated::Current,
        Some(v) => Migrated::Upgraded { from: v },
        None => Migrated::Created,
    };
    if outcome != Migrated::Current {
        // Version 1 is the first: every statement is idempotent, so an
        // upgrade from an older build replays them and records the new
        // version. Later versions add their steps after this one.
        tx.batch_execute(CREATE)
            .await
            .map_err(db("creating the hookflow tables"))?;
        tx.execute(
            "INSERT INTO hookflow.meta (key, value) VALUES ('schema_version', $1)
             ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value",
            &[&VERSION.to_string()],
        )
        .await
        .map_err(db("recording the schema version"))?;
    }
    add_partitions(&tx, now_ms).await?;
    tx.commit()
        .await
        .map_err(db("committing the schema transaction"))?;
    Ok(outcome)
}

/// The start of the day (UTC) that `ms` falls in.
pub fn day_start(ms: u64) -> u64 {
    ms / DAY_MS * DAY_MS
}

/// The lowest id of `prefix` made at or after `ms` (as `RunId::floor`).
pub fn id_floor(prefix: &str, ms: u64) -> String {
    format!("{prefix}{:016x}", ms << 16)
}

/// The partition of `table` for the day starting at `day`.
pub fn partition_name(table: &str, day: u64) -> String {
    let date = humantime::format_rfc3339_seconds(
        std::time::UNIX_EPOCH + std::time::Duration::from_millis(day),
    )
    .to_string();
    // 2026-12-04T00:00:00Z → 20261204
    let ymd: String = date.chars().take(10).filter(char::is_ascii_digit).collect();
    format!("{table}_d{ymd}")
}

/// The day a partition of `table` covers, from its name.
pub fn partition_day(table: &str, name: &str) -> Option<u64> {
    let ymd = name.strip_prefix(table)?.strip_prefix("_d")?;
    if ymd.len() != 8 || !ymd.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let text = format!("{}-{}-{}T00:00:00Z", &ymd[..4], &ymd[4..6], &ymd[6..]);
    let t = humantime::parse_rfc3339(&text).ok()?;
    Some(t.duration_since(std::time::UNIX_EPOCH).ok()?.as_millis() as u64)
}

/// Create the partitions of today and the next days where missing. A
/// range that already has rows in the default partition cannot get its
/// own: it stays in the default one (and is pruned by batched deletes).
pub async fn add_partitions(
    tx: &tokio_postgres::Transaction<'_>,
    now_ms: u64,
) -> Result<(), SchemaError> {
    let today = day_start(now_ms);
    for d in 0..=DAYS_AHEAD {
        let day = today + d * DAY_MS;
        for (table, prefix) in HISTORY {
            let name = partition_name(table, day);
            let exists: bool = tx
                .query_one(
                    "SELECT to_regclass($1) IS NOT NULL",
                    &[&format!("hookflow.{name}")],
                )
                .await
                .map_err(db("looking for a partition"))?
                .get(0);
            if exists {
                continue;
            }
            let (lo, hi) = (id_floor(prefix, day), id_floor(prefix, day + DAY_MS));
            let sql = format!(
                "CREATE TABLE hookflow.{name} PARTITION OF hookflow.{table} FOR VALUES FROM ('{lo}') TO ('{hi}')"
            );
            tx.execute("SAVEPOINT partition", &[])
                .await
                .map_err(db("adding a partition"))?;
            match tx.batch_execute(&sql).await {
                Ok(()) => {
                    tx.execute("RELEASE SAVEPOINT partition", &[])
                        .await
                        .map_err(db("adding a partition"))?;
                }
                Err(e) => {
                    tracing::warn!(partition = %name, error = %super::describe(&e), "cannot add a daily partition; its rows stay in the default partition");
                    tx.execute("ROLLBACK TO SAVEPOINT partition", &[])
                        .await
                        .map_err(db("adding a partition"))?;
                }
            }
        }
    }
    Ok(())
}

/// Take the schema lock for the rest of the transaction (partitions are
/// added and dropped under it).
pub async fn lock(tx: &tokio_postgres::Transaction<'_>) -> Result<(), SchemaError> {
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&SCHEMA_LOCK])
        .await
        .map_err(db("waiting for the schema lock"))?;
    Ok(())
}

/// The daily partitions of `table` that exist, by the day they cover.
pub async fn partitions(
    tx: &tokio_postgres::Transaction<'_>,
    table: &str,
) -> Result<Vec<(u64, String)>, SchemaError> {
    let rows = tx
        .query(
            "SELECT c.relname FROM pg_inherits i
               JOIN pg_class c ON c.oid = i.inhrelid
               JOIN pg_class p ON p.oid = i.inhparent
               JOIN pg_namespace n ON n.oid = p.relnamespace
              WHERE n.nspname = 'hookflow' AND p.relname = $1",
            &[&table],
        )
        .await
        .map_err(db("listing partitions"))?;
    let mut out: Vec<(u64, String)> = rows
        .iter()
        .filter_map(|r| {
            let name: String = r.get(0);
            partition_day(table, &name).map(|d| (d, name))
        })
        .collect();
    out.sort();
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partition_names_give_back_their_day() {
        let day = day_start(1_796_000_000_000);
        let name = partition_name("events", day);
        assert!(name.starts_with("events_d20"), "{name}");
        assert_eq!(partition_day("events", &name), Some(day));
        assert_eq!(partition_day("runs", &name), None);
        assert_eq!(partition_day("events", "events_default"), None);
    }

    #[test]
    fn a_day_of_ids_lies_between_its_floors() {
        let now = crate::record::Timestamp::now();
        let id = crate::record::RunId::generate();
        let day = day_start(now.0);
        assert!(id_floor("run_", day).as_str() <= id.as_str());
        assert!(id.as_str() < id_floor("run_", day + DAY_MS).as_str());
    }
}
