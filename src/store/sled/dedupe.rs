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
//! | tree      | key                                   | value            |
//! |-----------|---------------------------------------|------------------|
//! | `keys`    | 0 ++ SHA-256(workflow `\0` key)[..16] | [`DedupeEntry`], see [`codec`] |
//! | `expiry`  | expiry (ms, big-endian) ++ that key   | empty            |
//!
//! This database is flushed once a second, with a mark of the time its
//! keys are on disk up to ([`DedupeKeys::mark_durable`]), rather than
//! before every answer: the events list the keys they claimed, and at open
//! the keys of the events since the mark are written again
//! ([`DedupeKeys::recover`]).
//!
//! The expiry index lets the sweep walk keys in the order they expire, from
//! the front, instead of scanning the whole tree; and lets retention by size
//! drop the keys that expire first when they outgrow their share
//! ([`DedupeKeys::sweep`]). A key is written index first, so a crash
//! between the two leaves an index entry with nothing behind it (dropped by
//! the sweep), never a key that no sweep finds.

use super::codec;
use crate::record::Timestamp;
use crate::store::{DedupeEntry, Result};
use sled::Tree;
use std::path::Path;
use std::sync::atomic::{AtomicI64, Ordering};

const KEYS: &str = "keys";
const EXPIRY: &str = "expiry";
const META: &str = "meta";
const DURABLE_UNTIL: &[u8] = b"durable_until";

/// Index entries looked at per sweep (the next pass goes on).
const SWEEP_BATCH: usize = 20_000;

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
    keys: Tree,
    expiry: Tree,
    /// `durable_until`: the time of the last flush's mark (ms, big-endian).
    meta: Tree,
    /// Bytes of the `keys` tree's entries (keys and values).
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
        let keys = db.open_tree(KEYS)?;
        let expiry = db.open_tree(EXPIRY)?;
        let meta = db.open_tree(META)?;
        let mut bytes = 0i64;
        for entry in keys.iter() {
            let (k, v) = entry?;
            bytes += (k.len() + v.len()) as i64;
        }
        Ok(DedupeKeys {
            db,
            keys,
            expiry,
            meta,
            bytes: AtomicI64::new(bytes),
        })
    }

    /// The stored entry of a hashed key.
    pub(crate) fn get(&self, key: &[u8]) -> Result<Option<sled::IVec>> {
        Ok(self.keys.get(key)?)
    }

    /// The entry held under a hashed key, if it reads.
    fn held(&self, key: &[u8]) -> Result<Option<DedupeEntry>> {
        Ok(self
            .keys
            .get(key)?
            .and_then(|b| codec::decode_dedupe("", &b).ok()))
    }

    /// Remove a hashed key, keeping the byte count.
    fn remove(&self, key: &[u8]) -> Result<()> {
        if let Some(old) = self.keys.remove(key)? {
            self.bytes
                .fetch_sub((key.len() + old.len()) as i64, Ordering::Relaxed);
        }
        Ok(())
    }

    /// Store `entry` under a hashed key (replacing an expired one).
    pub(crate) fn put(&self, key: &[u8], entry: &DedupeEntry) -> Result<()> {
        self.expiry.insert(expiry_key(entry.expires_at, key), &[])?;
        let value = codec::encode_dedupe(entry);
        let added = (key.len() + value.len()) as i64;
        let old = self.keys.insert(key, value)?;
        let removed = old.map_or(0, |o| (key.len() + o.len()) as i64);
        self.bytes.fetch_add(added - removed, Ordering::Relaxed);
        Ok(())
    }

    /// Remove a key this event claimed (an ingest that gave up), unless
    /// another event holds it by now.
    pub(crate) fn release(&self, key: &[u8], event: &crate::record::EventId) -> Result<()> {
        if self.held(key)?.is_some_and(|e| &e.event_id == event) {
            self.remove(key)?;
        }
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
    pub(crate) fn recover(&self, events: &Tree, now: Timestamp) -> Result<usize> {
        let mark = self
            .meta
            .get(DURABLE_UNTIL)?
            .and_then(|b| <[u8; 8]>::try_from(&b[..]).ok())
            .map(u64::from_be_bytes);
        let mut written = 0;
        if let Some(mark) = mark {
            let from =
                crate::record::EventId::floor(Timestamp(mark.saturating_sub(super::MAX_INGEST_MS)));
            for entry in events.range(from.as_str().as_bytes()..) {
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
    /// index from the front, at most [`SWEEP_BATCH`] entries.
    pub(crate) fn sweep(&self, now: Timestamp, budget: u64) -> Result<Swept> {
        let mut swept = Swept::default();
        for entry in self.expiry.iter().take(SWEEP_BATCH) {
            let (k, _) = entry?;
            let Some((at, key)) = split_expiry_key(&k) else {
                // Not written by this version: nothing can look it up.
                self.expiry.remove(&k)?;
                continue;
            };
            let expired = at <= now.0;
            if !expired && self.bytes() <= budget {
                break;
            }
            // The key may have been claimed again since (a later expiry,
            // with its own index entry): only the entry this index entry
            // stands for goes (or one that cannot be read).
            let stands = match self.keys.get(key)? {
                Some(v) => codec::decode_dedupe("", &v).map_or(true, |e| e.expires_at.0 == at),
                None => false,
            };
            if stands {
                self.remove(key)?;
                if expired {
                    swept.expired += 1;
                } else {
                    swept.early += 1;
                }
            }
            self.expiry.remove(&k)?;
        }
        Ok(swept)
    }

    /// Move the dedupe tree of the history's database (versions before this
    /// one kept the keys there) into this one, then drop it. Safe to repeat:
    /// the old tree goes only once every key is here and on disk.
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

fn expiry_key(at: Timestamp, key: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(8 + key.len());
    k.extend_from_slice(&at.0.to_be_bytes());
    k.extend_from_slice(key);
    k
}

fn split_expiry_key(k: &[u8]) -> Option<(u64, &[u8])> {
    let (at, key) = k.split_at_checked(8)?;
    Some((u64::from_be_bytes(at.try_into().ok()?), key))
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
        keys.expiry
            .insert(
                expiry_key(Timestamp(1_000), &super::super::dedupe_key("w", "x")),
                &[],
            )
            .expect("insert");
        keys.sweep(Timestamp(2_000), u64::MAX).expect("sweep");
        assert!(keys.expiry.is_empty());
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
        let events = history.open_tree("events").expect("tree");
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
                .insert(e.id.as_str(), codec::encode_event_claiming(&e, &[claim]))
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
}
