//! Dedupe keys of the sled backend, in a sled database of their own
//! (`DIR/dedupe`) beside the history's.
//!
//! Why apart: a dedupe key lives for its window (days), the events and runs
//! written beside it are pruned within minutes under a size limit. In one
//! log, every segment kept a few live pieces of the dedupe tree, and sled
//! reuses a segment only once every piece in it has moved: at a 16 MiB
//! limit the folder grew to 90 MB for 40,000 events where it stayed within
//! the limit without dedupe keys (`tests/retention.rs`). In a log of their
//! own, the keys' segments are freed as their pages are rewritten, and the
//! history's log frees its segments as retention prunes.
//!
//! | tree       | key                          | value            |
//! |------------|------------------------------|------------------|
//! | `buckets`  | bucket: bytes 1–2 of the hashed key | the bucket's entries: hashed key (0 ++ SHA-256(workflow `\0` key)[..16]) ++ length (u32 LE) ++ [`DedupeEntry`] (see [`codec`]), one after another |
//! | `expiring` | expiry (ms, big-endian)      | the hashed keys (17 bytes each) that expire then |
//!
//! Why buckets: sled keeps a few hundred bytes of bookkeeping in memory for
//! every page it has ever written, and a page holds at most 16 entries, so
//! a tree with one entry per key costs memory in proportion to the keys
//! held: about 40 MB for a million keys with their expiry index (and the
//! keys live for days). In 65,536 buckets the keys take at most that many
//! entries, and the expiry index one entry per millisecond that has keys
//! expiring. A write rewrites its bucket (about 15 entries at a million
//! keys), atomically ([`sled::Tree::fetch_and_update`]): keys that share a
//! bucket never lose each other's writes. `docs/performance.md` has the
//! figures.
//!
//! This database is flushed once a second, with a mark of the time its
//! keys are on disk up to ([`DedupeKeys::mark_durable`]), rather than
//! before every answer: the events list the keys they claimed, and at open
//! the keys of the events since the mark are written again
//! ([`DedupeKeys::recover`]).
//!
//! The expiry index lets the sweep walk keys in the order they expire, from
//! the front, instead of scanning every bucket; and lets retention by size
//! drop the keys that expire first when they outgrow their share
//! ([`DedupeKeys::sweep`]). A key is written index first, so a crash
//! between the two leaves an index entry with nothing behind it (dropped by
//! the sweep), never a key that no sweep finds.
//!
//! Versions before this one kept a tree entry per key (`keys`, with an
//! index entry per key in `expiry`); they move into buckets at open
//! ([`DedupeKeys::take_over`]).

use super::codec;
use crate::record::Timestamp;
use crate::store::{DedupeEntry, Result};
use sled::Tree;
use std::path::Path;
use std::sync::atomic::{AtomicI64, Ordering};

const BUCKETS: &str = "buckets";
const EXPIRING: &str = "expiring";
const META: &str = "meta";
const DURABLE_UNTIL: &[u8] = b"durable_until";
/// The trees of earlier versions: an entry per key, an index entry per key.
const KEYS_V1: &str = "keys";
const EXPIRY_V1: &str = "expiry";

/// Keys looked at per sweep (the next pass goes on).
const SWEEP_BATCH: usize = 20_000;

/// A hashed key's length: [`super::HASHED_DEDUPE_KEY`] ++ 16 bytes.
const KEY_LEN: usize = 17;

/// What a sweep removed.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Swept {
    /// Keys past their window.
    pub expired: usize,
    /// Keys dropped before their window ended, to keep within their share
    /// of `--retention-size`.
    pub early: usize,
}

pub(crate) struct DedupeKeys {
    db: sled::Db,
    buckets: Tree,
    expiring: Tree,
    /// `durable_until`: the time of the last flush's mark (ms, big-endian).
    meta: Tree,
    /// Bytes of the stored keys and their entries.
    bytes: AtomicI64,
}

impl DedupeKeys {
    pub(crate) fn open(dir: &Path, cache_bytes: u64) -> Result<DedupeKeys> {
        let db = sled::Config::new()
            .path(dir)
            .segment_size(super::SEGMENT_SIZE)
            .cache_capacity(cache_bytes)
            // Flushed once a second with its mark (`mark_durable`); sled's
            // own flusher moves pages out of mostly dead segments.
            .flush_every_ms(Some(super::SLED_CLEANER_EVERY_MS))
            .open()?;
        Self::from_db(db)
    }

    pub(crate) fn temporary() -> Result<DedupeKeys> {
        Self::from_db(sled::Config::new().temporary(true).open()?)
    }

    fn from_db(db: sled::Db) -> Result<DedupeKeys> {
        let buckets = db.open_tree(BUCKETS)?;
        let expiring = db.open_tree(EXPIRING)?;
        let meta = db.open_tree(META)?;
        let mut bytes = 0i64;
        for entry in buckets.iter() {
            let (_, bucket) = entry?;
            bytes += entries(&bucket)
                .map(|(k, v)| (k.len() + v.len()) as i64)
                .sum::<i64>();
        }
        let keys = DedupeKeys {
            db,
            buckets,
            expiring,
            meta,
            bytes: AtomicI64::new(bytes),
        };
        // Keys of an earlier version of this database.
        let history = keys.db.clone();
        keys.take_over(&history, KEYS_V1)?;
        if keys.db.drop_tree(EXPIRY_V1)? {
            keys.db.flush()?;
        }
        Ok(keys)
    }

    /// The stored entry of a hashed key.
    pub(crate) fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        Ok(self
            .buckets
            .get(bucket_of(key))?
            .and_then(|b| find(&b, key).map(<[u8]>::to_vec)))
    }

    /// The entry held under a hashed key, if it reads.
    fn held(&self, key: &[u8]) -> Result<Option<DedupeEntry>> {
        Ok(self
            .get(key)?
            .and_then(|b| codec::decode_dedupe("", &b).ok()))
    }

    /// Remove a hashed key if `doomed` says so of its entry (`None`: the
    /// entry cannot be read), keeping the byte count. Whether it went.
    fn remove_if(&self, key: &[u8], doomed: impl Fn(Option<&DedupeEntry>) -> bool) -> Result<bool> {
        let judge = |bucket: &[u8]| {
            find(bucket, key).is_some_and(|v| doomed(codec::decode_dedupe("", v).ok().as_ref()))
        };
        // Most calls find nothing to do: look before writing.
        if !self.buckets.get(bucket_of(key))?.is_some_and(|b| judge(&b)) {
            return Ok(false);
        }
        let old = self.buckets.fetch_and_update(bucket_of(key), |old| {
            let old = old?;
            if judge(old) {
                Some(without(old, key)).filter(|b| !b.is_empty())
            } else {
                Some(old.to_vec())
            }
        })?;
        let removed = old
            .as_deref()
            .filter(|b| judge(b))
            .and_then(|b| find(b, key));
        if let Some(v) = removed {
            self.bytes
                .fetch_sub((key.len() + v.len()) as i64, Ordering::Relaxed);
        }
        Ok(removed.is_some())
    }

    /// Store `entry` under a hashed key (replacing an expired one).
    pub(crate) fn put(&self, key: &[u8], entry: &DedupeEntry) -> Result<()> {
        self.expiring
            .fetch_and_update(entry.expires_at.0.to_be_bytes(), |old| {
                let mut keys = old.map(<[u8]>::to_vec).unwrap_or_default();
                keys.extend_from_slice(key);
                Some(keys)
            })?;
        let value = codec::encode_dedupe(entry);
        let old = self.buckets.fetch_and_update(bucket_of(key), |old| {
            Some(with(old.unwrap_or(&[]), key, &value))
        })?;
        let removed = old
            .as_deref()
            .and_then(|b| find(b, key))
            .map_or(0, |o| (key.len() + o.len()) as i64);
        self.bytes.fetch_add(
            (key.len() + value.len()) as i64 - removed,
            Ordering::Relaxed,
        );
        Ok(())
    }

    /// Remove a key this event claimed (an ingest that gave up), unless
    /// another event holds it by now.
    pub(crate) fn release(&self, key: &[u8], event: &crate::record::EventId) -> Result<()> {
        self.remove_if(key, |e| e.is_some_and(|e| &e.event_id == event))?;
        Ok(())
    }

    /// Bytes of the stored keys and entries.
    pub(crate) fn bytes(&self) -> u64 {
        self.bytes.load(Ordering::Relaxed).max(0) as u64
    }

    /// Store `now` as the time up to which every key is on disk, and flush:
    /// the keys written before the mark reach the disk with it (sled
    /// recovers a prefix of its log).
    pub(crate) fn mark_durable(&self, now: Timestamp) -> Result<()> {
        self.meta.insert(DURABLE_UNTIL, &now.0.to_be_bytes())?;
        self.db.flush()?;
        Ok(())
    }

    /// After a crash, an event on disk may lack its keys here: this
    /// database was flushed last at its mark. Write again the keys listed
    /// by every event since the mark, less [`super::MAX_INGEST_MS`] (an
    /// ingest takes no longer from its event's id to its record), unless a
    /// later claim of the key is here; then mark `now`. How many it wrote.
    pub(crate) fn recover(&self, events: &super::shelf::Shelf, now: Timestamp) -> Result<usize> {
        let mark = self
            .meta
            .get(DURABLE_UNTIL)?
            .and_then(|b| <[u8; 8]>::try_from(&b[..]).ok())
            .map(u64::from_be_bytes);
        let mut written = 0;
        if let Some(mark) = mark {
            let from =
                crate::record::EventId::floor(Timestamp(mark.saturating_sub(super::MAX_INGEST_MS)));
            for entry in events.scan(std::ops::Bound::Included(from.as_str().as_bytes())) {
                let (k, v) = entry?;
                let id = String::from_utf8_lossy(&k);
                let Ok(head) = codec::event_head(&id, &v) else {
                    continue;
                };
                for claimed in head.dedupe {
                    let Ok(key) = hex::decode(&claimed.key) else {
                        continue;
                    };
                    let newer_here = self
                        .held(&key)?
                        .is_some_and(|held| held.expires_at >= claimed.expires_at);
                    if !newer_here {
                        let entry = DedupeEntry {
                            event_id: crate::record::EventId(id.to_string()),
                            runs: head.runs.clone(),
                            expires_at: claimed.expires_at,
                        };
                        self.put(&key, &entry)?;
                        written += 1;
                    }
                }
            }
        }
        self.mark_durable(now)?;
        Ok(written)
    }

    /// Remove the keys whose window has ended, then, while the keys take
    /// more than `budget` bytes, those that expire first. Walks the expiry
    /// index from the front, at most [`SWEEP_BATCH`] keys.
    pub(crate) fn sweep(&self, now: Timestamp, budget: u64) -> Result<Swept> {
        let mut swept = Swept::default();
        let mut looked = 0;
        for entry in self.expiring.iter() {
            let (k, keys) = entry?;
            let Ok(at) = <[u8; 8]>::try_from(&k[..]).map(u64::from_be_bytes) else {
                // Not written by this version: nothing can look it up.
                self.expiring.remove(&k)?;
                continue;
            };
            let expired = at <= now.0;
            let mut done = 0;
            for key in keys.chunks(KEY_LEN) {
                if looked == SWEEP_BATCH || (!expired && self.bytes() <= budget) {
                    break;
                }
                looked += 1;
                // The key may have been claimed again since (a later expiry,
                // with its own index entry): only the entry this index entry
                // stands for goes (or one that cannot be read).
                if self.remove_if(key, |e| e.is_none_or(|e| e.expires_at.0 == at))? {
                    if expired {
                        swept.expired += 1;
                    } else {
                        swept.early += 1;
                    }
                }
                done += key.len();
            }
            if done == 0 && !keys.is_empty() {
                // Stopped before the first key: nothing to write back.
                break;
            }
            // Keys added to this millisecond meanwhile were appended: the
            // ones looked at are still the front.
            self.expiring.fetch_and_update(&k, |cur| {
                cur.and_then(|c| c.get(done..))
                    .filter(|rest| !rest.is_empty())
                    .map(<[u8]>::to_vec)
            })?;
            if done < keys.len() {
                break;
            }
        }
        Ok(swept)
    }

    /// Move a tree of keys written by an earlier version into the buckets,
    /// then drop it: the history's database's `dedupe` tree (older
    /// versions kept the keys there), or this database's `keys` tree (a
    /// tree entry per key). Safe to repeat: the old tree goes only once
    /// every key is here and on disk.
    pub(crate) fn take_over(&self, history: &sled::Db, name: &str) -> Result<usize> {
        if !history
            .tree_names()
            .iter()
            .any(|n| &n[..] == name.as_bytes())
        {
            return Ok(0);
        }
        let old = history.open_tree(name)?;
        let mut moved = 0;
        for entry in old.iter() {
            let (k, v) = entry?;
            let Ok(e) = codec::decode_dedupe("", &v) else {
                continue;
            };
            let key = if k.len() == 17 && k[0] == super::HASHED_DEDUPE_KEY {
                k.to_vec()
            } else {
                // The earlier text form, `workflow \0 key`.
                let text = String::from_utf8_lossy(&k);
                let Some((workflow, key)) = text.split_once('\0') else {
                    continue;
                };
                super::dedupe_key(workflow, key).to_vec()
            };
            self.put(&key, &e)?;
            moved += 1;
        }
        self.db.flush()?;
        history.drop_tree(name)?;
        Ok(moved)
    }
}

/// The bucket of a hashed key: its two bytes after the marker, so that
/// keys spread evenly over 65,536 buckets.
fn bucket_of(key: &[u8]) -> [u8; 2] {
    match key {
        [_, a, b, ..] => [*a, *b],
        _ => [0, 0],
    }
}

/// The (key, entry) pairs of a bucket. A bucket cut short (which only a
/// damaged file could give) ends at its last whole entry.
fn entries(bucket: &[u8]) -> impl Iterator<Item = (&[u8], &[u8])> {
    let mut rest = bucket;
    std::iter::from_fn(move || {
        let (key, after) = rest.split_at_checked(KEY_LEN)?;
        let (len, after) = after.split_at_checked(4)?;
        let len = u32::from_le_bytes(len.try_into().ok()?) as usize;
        let (value, after) = after.split_at_checked(len)?;
        rest = after;
        Some((key, value))
    })
}

/// The entry of `key` in a bucket.
fn find<'a>(bucket: &'a [u8], key: &[u8]) -> Option<&'a [u8]> {
    entries(bucket).find(|(k, _)| *k == key).map(|(_, v)| v)
}

/// A bucket without `key`.
fn without(bucket: &[u8], key: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(bucket.len());
    for (k, v) in entries(bucket).filter(|(k, _)| *k != key) {
        append(&mut out, k, v);
    }
    out
}

/// A bucket with `key` holding `value` (in place of what it held).
fn with(bucket: &[u8], key: &[u8], value: &[u8]) -> Vec<u8> {
    let mut out = without(bucket, key);
    append(&mut out, key, value);
    out
}

fn append(bucket: &mut Vec<u8>, key: &[u8], value: &[u8]) {
    bucket.extend_from_slice(key);
    bucket.extend_from_slice(&(value.len() as u32).to_le_bytes());
    bucket.extend_from_slice(value);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::{EventId, RunId};

    fn entry(expires_at: u64) -> DedupeEntry {
        DedupeEntry {
            event_id: EventId::generate(),
            runs: vec![RunId::generate()],
            expires_at: Timestamp(expires_at),
        }
    }

    /// Whether `keys` has an entry for key `k` of workflow `w`.
    fn held(keys: &DedupeKeys, k: &str) -> bool {
        keys.get(&super::super::dedupe_key("w", k))
            .expect("get")
            .is_some()
    }

    #[test]
    fn the_sweep_removes_expired_keys_then_the_first_to_expire_past_the_budget() {
        let keys = DedupeKeys::temporary().expect("open");
        for (i, at) in [1_000u64, 3_000, 2_000, 4_000].iter().enumerate() {
            keys.put(&super::super::dedupe_key("w", &i.to_string()), &entry(*at))
                .expect("put");
        }
        let per_key = keys.bytes() / 4;
        // At 2,500 ms, two are past their window; the budget holds the rest.
        let swept = keys.sweep(Timestamp(2_500), u64::MAX).expect("sweep");
        assert_eq!(
            swept,
            Swept {
                expired: 2,
                early: 0
            }
        );
        assert_eq!(keys.bytes(), 2 * per_key);
        assert!(!held(&keys, "0"));
        assert!(held(&keys, "1"));
        // A budget of one key drops the one that expires first (3,000 ms).
        let swept = keys.sweep(Timestamp(2_500), per_key).expect("sweep");
        assert_eq!(
            swept,
            Swept {
                expired: 0,
                early: 1
            }
        );
        assert!(!held(&keys, "1"));
        assert!(held(&keys, "3"));
    }

    #[test]
    fn a_key_claimed_again_keeps_its_new_window() {
        let keys = DedupeKeys::temporary().expect("open");
        let k = super::super::dedupe_key("w", "evt_1");
        keys.put(&k, &entry(1_000)).expect("put");
        // Expired, then claimed again until 5,000 ms.
        keys.put(&k, &entry(5_000)).expect("put");
        let swept = keys.sweep(Timestamp(2_000), u64::MAX).expect("sweep");
        assert_eq!(
            swept,
            Swept::default(),
            "the old index entry removes nothing"
        );
        assert!(keys.get(&k).expect("get").is_some());
        let swept = keys.sweep(Timestamp(6_000), u64::MAX).expect("sweep");
        assert_eq!(swept.expired, 1);
        assert_eq!(keys.bytes(), 0);
    }

    #[test]
    fn an_index_entry_without_its_key_is_dropped() {
        // A crash between the index entry and the key.
        let keys = DedupeKeys::temporary().expect("open");
        keys.expiring
            .insert(1_000u64.to_be_bytes(), &super::super::dedupe_key("w", "x"))
            .expect("insert");
        keys.sweep(Timestamp(2_000), u64::MAX).expect("sweep");
        assert!(keys.expiring.is_empty());
    }

    #[test]
    fn keys_of_the_history_database_move_over_in_either_earlier_form() {
        let history = sled::Config::new().temporary(true).open().expect("open");
        let old = history.open_tree("dedupe").expect("tree");
        let hashed = super::super::dedupe_key("w", "evt_hashed");
        old.insert(hashed, codec::encode_dedupe(&entry(9_000)))
            .expect("put");
        old.insert(
            b"w\0evt_text",
            serde_json::to_vec(&entry(9_000)).expect("json"),
        )
        .expect("put");
        let keys = DedupeKeys::temporary().expect("open");
        assert_eq!(keys.take_over(&history, "dedupe").expect("moved"), 2);
        assert!(keys.get(&hashed).expect("get").is_some());
        let text = super::super::dedupe_key("w", "evt_text");
        assert!(keys.get(&text).expect("get").is_some());
        assert!(!history.tree_names().iter().any(|n| &n[..] == b"dedupe"));
        // Swept like any other key once their window ends.
        assert_eq!(
            keys.sweep(Timestamp(10_000), u64::MAX)
                .expect("sweep")
                .expired,
            2
        );
        // Nothing to move the next time.
        assert_eq!(keys.take_over(&history, "dedupe").expect("none"), 0);
    }

    #[test]
    fn keys_an_event_lists_are_written_again_after_the_mark_but_not_over_a_later_claim() {
        use crate::record::Event;
        let history = sled::Config::new().temporary(true).open().expect("open");
        let events = super::super::shelf::Shelf::open(
            &history,
            "events",
            std::sync::Arc::default(),
            std::sync::Arc::default(),
        )
        .expect("shelf");
        let keys = DedupeKeys::temporary().expect("open");
        // No mark yet (a new store): nothing to recover, and a mark is set.
        assert_eq!(
            keys.recover(&events, Timestamp(1_000_000))
                .expect("recover"),
            0
        );
        let (lost, claimed_again, old) = (
            super::super::dedupe_key("w", "lost"),
            super::super::dedupe_key("w", "again"),
            super::super::dedupe_key("w", "old"),
        );
        let event_at = |at: u64, key: [u8; 17]| {
            let mut e: Event = serde_json::from_value(serde_json::json!({
                "id": crate::record::EventId::floor(Timestamp(at)), "received_at": Timestamp(at),
                "path": "/hooks/w", "method": "POST", "headers": {}, "query": {},
                "body": {}, "outcome": "accepted", "reason": null,
                "workflows": ["w"], "runs": [RunId::generate()]
            }))
            .expect("an event");
            e.id = crate::record::EventId(format!("{}{:04x}", e.id.as_str(), key[1]));
            let claim = codec::ClaimedKey {
                key: hex::encode(key),
                expires_at: Timestamp(at + 5_000),
            };
            events
                .put(e.id.as_str(), codec::encode_event_claiming(&e, &[claim]))
                .expect("event");
        };
        // Written after the mark (1,000,000 ms), their keys never flushed;
        // one was claimed again later; one event is older than the mark
        // less the longest ingest, and is left alone.
        event_at(1_000_500, lost);
        event_at(1_000_600, claimed_again);
        event_at(1_000_000 - super::super::MAX_INGEST_MS - 1, old);
        let later = entry(9_999_999);
        keys.put(&claimed_again, &later).expect("put");
        assert_eq!(
            keys.recover(&events, Timestamp(1_001_000))
                .expect("recover"),
            1
        );
        assert!(
            keys.get(&lost).expect("get").is_some(),
            "the lost key is back"
        );
        assert!(
            keys.get(&old).expect("get").is_none(),
            "before the mark: on disk then"
        );
        let held = codec::decode_dedupe("", &keys.get(&claimed_again).expect("get").expect("held"))
            .expect("entry");
        assert_eq!(held, later, "the later claim stays");
    }

    #[test]
    fn a_released_key_goes_only_while_its_event_holds_it() {
        let keys = DedupeKeys::temporary().expect("open");
        let k = super::super::dedupe_key("w", "evt_1");
        let (mine, other) = (entry(5_000), entry(5_000));
        keys.put(&k, &other).expect("put");
        keys.release(&k, &mine.event_id).expect("release");
        assert!(
            keys.get(&k).expect("get").is_some(),
            "another event's key stays"
        );
        keys.put(&k, &mine).expect("put");
        keys.release(&k, &mine.event_id).expect("release");
        assert!(keys.get(&k).expect("get").is_none());
        assert_eq!(keys.bytes(), 0);
    }

    /// Hashed keys that all fall in one bucket.
    fn same_bucket(n: u8) -> Vec<[u8; KEY_LEN]> {
        (0..n)
            .map(|i| {
                let mut k = [0u8; KEY_LEN];
                k[1] = 7;
                k[2] = 9;
                k[16] = i;
                k
            })
            .collect()
    }

    #[test]
    fn keys_that_share_a_bucket_keep_their_own_entries() {
        let keys = DedupeKeys::temporary().expect("open");
        let ks = same_bucket(5);
        let entries: Vec<_> = (0..5).map(|i| entry(1_000 * (i + 1))).collect();
        for (k, e) in ks.iter().zip(&entries) {
            keys.put(k, e).expect("put");
        }
        assert_eq!(keys.buckets.len(), 1, "one bucket holds them all");
        for (k, e) in ks.iter().zip(&entries) {
            assert_eq!(keys.held(k).expect("get").as_ref(), Some(e));
        }
        // Claimed again: replaced in place, counted once.
        let before = keys.bytes();
        let again = entry(9_000);
        keys.put(&ks[2], &again).expect("put");
        assert_eq!(keys.bytes(), before);
        assert_eq!(keys.held(&ks[2]).expect("get"), Some(again));
        keys.release(&ks[0], &entries[0].event_id).expect("release");
        assert_eq!(keys.held(&ks[0]).expect("get"), None);
        assert_eq!(keys.held(&ks[1]).expect("get").as_ref(), Some(&entries[1]));
        // At 4,500 ms keys 1 and 3 have expired (key 0 is gone, key 2 was
        // claimed again until 9,000 ms); the rest stay.
        let swept = keys.sweep(Timestamp(4_500), u64::MAX).expect("sweep");
        assert_eq!(swept.expired, 2, "keys 1 and 3");
        assert!(keys.held(&ks[4]).expect("get").is_some());
        assert!(keys.held(&ks[2]).expect("get").is_some());
        let swept = keys.sweep(Timestamp(10_000), u64::MAX).expect("sweep");
        assert_eq!(swept.expired, 2);
        assert_eq!(keys.bytes(), 0);
        assert!(keys.buckets.is_empty(), "an empty bucket goes");
        assert!(keys.expiring.is_empty());
    }

    #[test]
    fn puts_to_one_bucket_from_many_threads_lose_nothing() {
        let keys = std::sync::Arc::new(DedupeKeys::temporary().expect("open"));
        let ks = same_bucket(64);
        std::thread::scope(|s| {
            for part in ks.chunks(8) {
                let keys = keys.clone();
                s.spawn(move || {
                    for k in part {
                        keys.put(k, &entry(5_000)).expect("put");
                    }
                });
            }
        });
        for k in &ks {
            assert!(keys.get(k).expect("get").is_some());
        }
        let stored = keys
            .buckets
            .iter()
            .map(|b| entries(&b.expect("bucket").1).count())
            .sum::<usize>();
        assert_eq!(stored, 64);
        assert_eq!(
            keys.sweep(Timestamp(6_000), u64::MAX)
                .expect("sweep")
                .expired,
            64
        );
        assert_eq!(keys.bytes(), 0);
    }

    #[test]
    fn an_early_sweep_stops_inside_a_millisecond_and_goes_on_from_there() {
        let keys = DedupeKeys::temporary().expect("open");
        let ks = same_bucket(4);
        for k in &ks {
            keys.put(k, &entry(5_000)).expect("put");
        }
        let per_key = keys.bytes() / 4;
        // Room for three: one goes, the other three stay indexed.
        let swept = keys.sweep(Timestamp(1_000), 3 * per_key).expect("sweep");
        assert_eq!(
            swept,
            Swept {
                expired: 0,
                early: 1
            }
        );
        assert_eq!(keys.held(&ks[0]).expect("get"), None);
        assert_eq!(
            keys.expiring
                .get(5_000u64.to_be_bytes())
                .expect("get")
                .map(|v| v.len()),
            Some(3 * KEY_LEN)
        );
        let swept = keys.sweep(Timestamp(6_000), u64::MAX).expect("sweep");
        assert_eq!(swept.expired, 3);
    }

    #[test]
    fn keys_of_the_earlier_form_of_this_database_move_into_buckets() {
        let dir = tempfile::tempdir().expect("dir");
        let (k, e) = (super::super::dedupe_key("w", "evt_1"), entry(9_000));
        {
            let db = sled::Config::new().path(dir.path()).open().expect("open");
            let old = db.open_tree(KEYS_V1).expect("tree");
            old.insert(k, codec::encode_dedupe(&e)).expect("put");
            db.open_tree(EXPIRY_V1)
                .expect("tree")
                .insert([9u8; 25], &[])
                .expect("index");
            db.flush().expect("flush");
        }
        let keys = DedupeKeys::open(dir.path(), 1 << 20).expect("open");
        assert_eq!(keys.held(&k).expect("get"), Some(e));
        let names = keys.db.tree_names();
        assert!(!names
            .iter()
            .any(|n| &n[..] == KEYS_V1.as_bytes() || &n[..] == EXPIRY_V1.as_bytes()));
        assert_eq!(
            keys.sweep(Timestamp(10_000), u64::MAX)
                .expect("sweep")
                .expired,
            1
        );
    }

    #[test]
    fn a_bucket_cut_short_reads_up_to_its_last_whole_entry() {
        let (a, b) = ([1u8; KEY_LEN], [2u8; KEY_LEN]);
        let mut bucket = Vec::new();
        append(&mut bucket, &a, b"first");
        append(&mut bucket, &b, b"second");
        bucket.truncate(bucket.len() - 2);
        assert_eq!(find(&bucket, &a), Some(&b"first"[..]));
        assert_eq!(find(&bucket, &b), None);
        assert_eq!(entries(&[1, 2, 3]).count(), 0);
        assert_eq!(find(&with(&bucket, &b, b"again"), &b), Some(&b"again"[..]));
    }
}
