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
//! | `meta`     | `durable_until`, `dropped_until` | a time (ms, big-endian) |
//!
//! Why buckets: sled keeps a few hundred bytes of bookkeeping in memory for
//! every page it has ever written, and a page holds at most 16 entries, so
//! a tree with one entry per key costs memory in proportion to the keys
//! held: about 40 MB for a million keys (and the keys live for days). In
//! 65,536 buckets the keys take at most that many entries. A write
//! rewrites its bucket (about 15 entries at a million keys), atomically
//! ([`sled::Tree::fetch_and_update`]): keys that share a bucket never lose
//! each other's writes. `docs/performance.md` has the figures.
//!
//! This database is flushed once a second, with a mark of the time its
//! keys are on disk up to ([`DedupeKeys::mark_durable`]), rather than
//! before every answer: the events list the keys they claimed, and at open
//! the keys of the events since the mark are written again
//! ([`DedupeKeys::recover`]).
//!
//! **Expiry writes nothing per key.** Keys leave by a floor: every key
//! expiring at or before it is gone, whatever its bucket still holds (reads
//! skip it). The floor is the last sweep's time for keys past their
//! window, and, for keys past their share of `--retention-size`, the end of
//! the last expiry slot dropped early, which is kept in `meta`. What the
//! sweep needs to know, how many keys and bytes expire when, is an index
//! in memory ([`Expiring`]: keys and bytes per 10 s of expiry), rebuilt
//! from the buckets at open, where every bucket is read anyway to count the
//! keys. What is gone leaves its bucket with the bucket's next write, or
//! with the sweep's compaction, which looks at a thousand buckets a pass,
//! round them all, and rewrites only those holding something gone.
//!
//! Why: the first form kept the index in a tree (an entry per millisecond
//! with keys expiring, listing them), and the sweep removed each key from
//! its bucket as its time came. Under sustained load that is two more
//! writes per event (the index entry, and once the keys reach their share,
//! the removal of another key: a bucket rewritten at a random place), and
//! a tree that grows by one entry a millisecond for the whole window. At a
//! steady 2,000 events a second the keys' folder grew from 250 to 520 MB
//! within a minute of reaching their share, until new events were paced
//! (`docs/performance.md`).
//!
//! Versions before this one kept a tree entry per key (`keys`, with an
//! index entry per key in `expiry`), then an index tree (`expiring`); the
//! keys move into buckets and the index trees go at open
//! ([`DedupeKeys::take_over`]).

use super::codec;
use crate::record::Timestamp;
use crate::store::{DedupeEntry, Result};
use sled::Tree;
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicU16, AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};

const BUCKETS: &str = "buckets";
const META: &str = "meta";
const DURABLE_UNTIL: &[u8] = b"durable_until";
/// The last millisecond whose keys were dropped early (ms, big-endian).
const DROPPED_UNTIL: &[u8] = b"dropped_until";
/// The trees of earlier versions: an entry per key, an index entry per key;
/// then an index entry per millisecond.
const KEYS_V1: &str = "keys";
const EXPIRY_V1: &str = "expiry";
const EXPIRING_V2: &str = "expiring";

/// The expiry index counts keys per this many milliseconds of expiry:
/// keys dropped early go a slot at a time.
const SLOT_MS: u64 = 10_000;

/// Buckets the sweep's compaction looks at per pass (the next pass goes on
/// from there): a round of the 65,536 takes 64 passes.
const COMPACT_BATCH: usize = 1024;

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
    /// `durable_until`: the time of the last flush's mark (ms, big-endian);
    /// `dropped_until`: see [`DedupeKeys::dropped_until`].
    meta: Tree,
    /// The live keys by when they expire.
    expiring: Mutex<Expiring>,
    /// Keys expiring at or before this (ms) were dropped early. Changed
    /// with `expiring` held.
    dropped_until: AtomicU64,
    /// The time of the last sweep (ms): keys expiring by then are gone.
    /// Changed with `expiring` held.
    swept_at: AtomicU64,
    /// The bucket the sweep's compaction goes on from.
    compact_at: AtomicU16,
}

/// The live keys (not gone by the floor, see the module doc) by when they
/// expire: how many, and their bytes (key and entry), per [`SLOT_MS`].
#[derive(Default)]
struct Expiring {
    slots: BTreeMap<u64, Slot>,
    all: Slot,
}

#[derive(Default, Clone, Copy)]
struct Slot {
    keys: u64,
    bytes: u64,
}

impl Expiring {
    fn add(&mut self, at: u64, bytes: usize) {
        let slot = self.slots.entry(at / SLOT_MS).or_default();
        slot.keys += 1;
        slot.bytes += bytes as u64;
        self.all.keys += 1;
        self.all.bytes += bytes as u64;
    }

    fn remove(&mut self, at: u64, bytes: usize) {
        if let Some(slot) = self.slots.get_mut(&(at / SLOT_MS)) {
            slot.keys = slot.keys.saturating_sub(1);
            slot.bytes = slot.bytes.saturating_sub(bytes as u64);
            self.all.keys = self.all.keys.saturating_sub(1);
            self.all.bytes = self.all.bytes.saturating_sub(bytes as u64);
            if slot.keys == 0 {
                self.slots.remove(&(at / SLOT_MS));
            }
        }
    }
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
        let meta = db.open_tree(META)?;
        let dropped_until = time_in(&meta, DROPPED_UNTIL)?.unwrap_or(0);
        // The index, from the buckets. Keys past their window are counted
        // in, and out by the next sweep.
        let mut expiring = Expiring::default();
        for entry in buckets.iter() {
            let (_, bucket) = entry?;
            for (k, v) in entries(&bucket) {
                if let Some(at) = expiry_of(v).filter(|at| *at > dropped_until) {
                    expiring.add(at, k.len() + v.len());
                }
            }
        }
        let keys = DedupeKeys {
            db,
            buckets,
            meta,
            expiring: Mutex::new(expiring),
            dropped_until: AtomicU64::new(dropped_until),
            swept_at: AtomicU64::new(0),
            compact_at: AtomicU16::new(0),
        };
        // Keys of an earlier version of this database.
        let history = keys.db.clone();
        keys.take_over(&history, KEYS_V1)?;
        let v1 = keys.db.drop_tree(EXPIRY_V1)?;
        let v2 = keys.db.drop_tree(EXPIRING_V2)?;
        if v1 || v2 {
            keys.db.flush()?;
        }
        Ok(keys)
    }

    fn index(&self) -> MutexGuard<'_, Expiring> {
        self.expiring.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Keys expiring at or before this (ms) are gone.
    fn floor(&self) -> u64 {
        self.dropped_until
            .load(Ordering::Relaxed)
            .max(self.swept_at.load(Ordering::Relaxed))
    }

    /// The stored entry of a hashed key (none once it is gone; one that
    /// cannot be read is given as it is).
    pub(crate) fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        let floor = self.floor();
        Ok(self.buckets.get(bucket_of(key))?.and_then(|b| {
            find(&b, key)
                .filter(|v| expiry_of(v).is_none_or(|at| at > floor))
                .map(<[u8]>::to_vec)
        }))
    }

    /// The entry held under a hashed key, if it reads.
    fn held(&self, key: &[u8]) -> Result<Option<DedupeEntry>> {
        Ok(self
            .get(key)?
            .and_then(|b| codec::decode_dedupe("", &b).ok()))
    }

    /// Store `entry` under a hashed key (replacing an expired one, or one
    /// whose ingest was interrupted). The bucket is written without what is
    /// gone from it.
    pub(crate) fn put(&self, key: &[u8], entry: &DedupeEntry) -> Result<()> {
        let value = codec::encode_dedupe(entry);
        let floor = self.floor();
        let old = self.buckets.fetch_and_update(bucket_of(key), |old| {
            Some(with(old.unwrap_or(&[]), key, &value, floor))
        })?;
        let mut index = self.index();
        if let Some(o) = old.as_deref().and_then(|b| find(b, key)) {
            self.uncount_in(&mut index, key, o);
        }
        // Unless a sweep just dropped its slot.
        if entry.expires_at.0 > self.floor() {
            index.add(entry.expires_at.0, key.len() + value.len());
        }
        Ok(())
    }

    /// Take a key's entry, removed or replaced, out of the index while it
    /// is there (not gone by the floor).
    fn uncount(&self, key: &[u8], entry: &[u8]) {
        self.uncount_in(&mut self.index(), key, entry);
    }

    fn uncount_in(&self, index: &mut Expiring, key: &[u8], entry: &[u8]) {
        // Read with the index held: the floor moves only so.
        if let Some(at) = expiry_of(entry).filter(|at| *at > self.floor()) {
            index.remove(at, key.len() + entry.len());
        }
    }

    /// Remove a key this event claimed (an ingest that gave up), unless
    /// another event holds it by now.
    pub(crate) fn release(&self, key: &[u8], event: &crate::record::EventId) -> Result<()> {
        let mine = |bucket: &[u8]| {
            find(bucket, key)
                .is_some_and(|v| codec::decode_dedupe("", v).is_ok_and(|e| &e.event_id == event))
        };
        // Most calls find nothing to do: look before writing.
        if !self.buckets.get(bucket_of(key))?.is_some_and(|b| mine(&b)) {
            return Ok(());
        }
        let old = self.buckets.fetch_and_update(bucket_of(key), |old| {
            let old = old?;
            if mine(old) {
                Some(without(old, key)).filter(|b| !b.is_empty())
            } else {
                Some(old.to_vec())
            }
        })?;
        if let Some(v) = old
            .as_deref()
            .filter(|b| mine(b))
            .and_then(|b| find(b, key))
        {
            self.uncount(key, v);
        }
        Ok(())
    }

    /// Bytes of the live keys and their entries.
    pub(crate) fn bytes(&self) -> u64 {
        self.index().all.bytes
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
        let mark = time_in(&self.meta, DURABLE_UNTIL)?;
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
    /// more than `budget` bytes, those that expire first, a slot of
    /// [`SLOT_MS`] at a time: the floor rises (see the module doc). Then a
    /// pass of compaction.
    pub(crate) fn sweep(&self, now: Timestamp, budget: u64) -> Result<Swept> {
        let mut swept = Swept::default();
        let raised = {
            let mut index = self.index();
            let mut dropped_until = self.dropped_until.load(Ordering::Relaxed);
            while let Some((&slot, &keys)) = index.slots.first_key_value() {
                let last = (slot + 1) * SLOT_MS - 1;
                let expired = last <= now.0;
                if !expired && index.all.bytes <= budget {
                    break;
                }
                index.slots.remove(&slot);
                index.all.keys = index.all.keys.saturating_sub(keys.keys);
                index.all.bytes = index.all.bytes.saturating_sub(keys.bytes);
                if expired {
                    swept.expired += keys.keys as usize;
                } else {
                    swept.early += keys.keys as usize;
                    dropped_until = dropped_until.max(last);
                }
            }
            self.swept_at.fetch_max(now.0, Ordering::Relaxed);
            let before = self
                .dropped_until
                .fetch_max(dropped_until, Ordering::Relaxed);
            (dropped_until > before).then_some(dropped_until)
        };
        if let Some(at) = raised {
            // Lost in a crash, the keys it dropped are counted again at
            // open and dropped by the next sweep.
            self.meta.insert(DROPPED_UNTIL, &at.to_be_bytes())?;
        }
        self.compact(COMPACT_BATCH)?;
        Ok(swept)
    }

    /// Rewrite, of the next `max` buckets (round them all, pass by pass),
    /// those that hold something gone (or that cannot be read), without it.
    fn compact(&self, max: usize) -> Result<()> {
        let floor = self.floor();
        let from = self.compact_at.load(Ordering::Relaxed).to_be_bytes();
        let mut next = 0;
        for (i, entry) in self.buckets.range(from..).enumerate() {
            let (b, bucket) = entry?;
            if i == max {
                next = <[u8; 2]>::try_from(&b[..]).map_or(0, u16::from_be_bytes);
                break;
            }
            if entries(&bucket).any(|(_, v)| gone(v, floor)) {
                self.buckets.fetch_and_update(&b, |cur| {
                    let kept = without_gone(cur?, floor);
                    (!kept.is_empty()).then_some(kept)
                })?;
            }
        }
        self.compact_at.store(next, Ordering::Relaxed);
        Ok(())
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

/// A time (ms) kept in `meta` under `name`, if any.
fn time_in(meta: &Tree, name: &[u8]) -> Result<Option<u64>> {
    Ok(meta
        .get(name)?
        .and_then(|b| <[u8; 8]>::try_from(&b[..]).ok())
        .map(u64::from_be_bytes))
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

/// The expiry (ms) of an entry, if it reads.
fn expiry_of(entry: &[u8]) -> Option<u64> {
    match entry {
        [codec::DEDUPE, rest @ ..] => rest
            .get(..8)
            .and_then(|b| <[u8; 8]>::try_from(b).ok())
            .map(u64::from_le_bytes),
        _ => codec::decode_dedupe("", entry).ok().map(|e| e.expires_at.0),
    }
}

/// Whether an entry is gone by `floor`: it expires by then, or it cannot
/// be read (it holds nothing).
fn gone(entry: &[u8], floor: u64) -> bool {
    expiry_of(entry).is_none_or(|at| at <= floor)
}

/// The entries of a bucket that `keep` accepts.
fn only(bucket: &[u8], keep: impl Fn(&[u8], &[u8]) -> bool) -> Vec<u8> {
    let mut out = Vec::with_capacity(bucket.len());
    for (k, v) in entries(bucket).filter(|(k, v)| keep(k, v)) {
        append(&mut out, k, v);
    }
    out
}

/// A bucket without `key`.
fn without(bucket: &[u8], key: &[u8]) -> Vec<u8> {
    only(bucket, |k, _| k != key)
}

/// A bucket without what is gone by `floor`.
fn without_gone(bucket: &[u8], floor: u64) -> Vec<u8> {
    only(bucket, |_, v| !gone(v, floor))
}

/// A bucket with `key` holding `value` (in place of what it held), and
/// without what is gone by `floor`.
fn with(bucket: &[u8], key: &[u8], value: &[u8], floor: u64) -> Vec<u8> {
    let mut out = only(bucket, |k, v| k != key && !gone(v, floor));
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

    /// The keys' database in `dir`, opened again once the handle before it
    /// has let go: its flusher thread holds the lock a moment after the
    /// handle is dropped.
    fn reopen(dir: &Path) -> DedupeKeys {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        loop {
            match DedupeKeys::open(dir, 1 << 20) {
                Err(e) if e.is_locked() && std::time::Instant::now() < deadline => {
                    std::thread::sleep(std::time::Duration::from_millis(20))
                }
                opened => return opened.expect("open"),
            }
        }
    }

    fn entry(expires_at: u64) -> DedupeEntry {
        DedupeEntry {
            event_id: EventId::generate(),
            runs: vec![RunId::generate()],
            expires_at: Timestamp(expires_at),
        }
    }

    /// The first millisecond of expiry slot `n`, and its last.
    fn at(n: u64) -> u64 {
        n * SLOT_MS
    }
    fn end(n: u64) -> Timestamp {
        Timestamp((n + 1) * SLOT_MS - 1)
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
        for (i, slot) in [1, 3, 2, 4].iter().enumerate() {
            keys.put(
                &super::super::dedupe_key("w", &i.to_string()),
                &entry(at(*slot)),
            )
            .expect("put");
        }
        let per_key = keys.bytes() / 4;
        // At the end of slot 2, two are past their window; the budget
        // holds the rest.
        let swept = keys.sweep(end(2), u64::MAX).expect("sweep");
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
        // A budget of one key drops the one that expires first (slot 3).
        let swept = keys.sweep(end(2), per_key).expect("sweep");
        assert_eq!(
            swept,
            Swept {
                expired: 0,
                early: 1
            }
        );
        assert!(!held(&keys, "1"));
        assert!(held(&keys, "3"));
        assert_eq!(keys.bytes(), per_key);
    }

    #[test]
    fn a_key_claimed_again_keeps_its_new_window() {
        let keys = DedupeKeys::temporary().expect("open");
        let k = super::super::dedupe_key("w", "evt_1");
        keys.put(&k, &entry(at(1))).expect("put");
        let per_key = keys.bytes();
        // Claimed again (its window ended, or its ingest was interrupted).
        keys.put(&k, &entry(at(5))).expect("put");
        assert_eq!(keys.bytes(), per_key, "counted once");
        let swept = keys.sweep(end(2), u64::MAX).expect("sweep");
        assert_eq!(swept, Swept::default(), "the first claim is not counted");
        assert!(keys.get(&k).expect("get").is_some());
        let swept = keys.sweep(end(6), u64::MAX).expect("sweep");
        assert_eq!(swept.expired, 1);
        assert!(keys.get(&k).expect("get").is_none());
        assert_eq!(keys.bytes(), 0);
    }

    #[test]
    fn the_index_tree_of_the_earlier_form_goes_and_its_keys_are_counted() {
        let dir = tempfile::tempdir().expect("dir");
        let per_key = {
            let keys = DedupeKeys::open(dir.path(), 1 << 20).expect("open");
            keys.put(&super::super::dedupe_key("w", "a"), &entry(at(1)))
                .expect("put");
            keys.put(&super::super::dedupe_key("w", "b"), &entry(at(2)))
                .expect("put");
            let tree = keys.db.open_tree(EXPIRING_V2).expect("tree");
            tree.insert(at(1).to_be_bytes(), &[7u8; KEY_LEN])
                .expect("index");
            keys.db.flush().expect("flush");
            keys.bytes() / 2
        };
        let keys = reopen(dir.path());
        assert!(!keys
            .db
            .tree_names()
            .iter()
            .any(|n| &n[..] == EXPIRING_V2.as_bytes()));
        assert_eq!(keys.bytes(), 2 * per_key);
        let swept = keys.sweep(end(1), u64::MAX).expect("sweep");
        assert_eq!(swept.expired, 1);
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
        let entries: Vec<_> = (0..5).map(|i| entry(at(i + 1))).collect();
        for (k, e) in ks.iter().zip(&entries) {
            keys.put(k, e).expect("put");
        }
        assert_eq!(keys.buckets.len(), 1, "one bucket holds them all");
        for (k, e) in ks.iter().zip(&entries) {
            assert_eq!(keys.held(k).expect("get").as_ref(), Some(e));
        }
        // Claimed again: replaced in place, counted once.
        let before = keys.bytes();
        let again = entry(at(9));
        keys.put(&ks[2], &again).expect("put");
        assert_eq!(keys.bytes(), before);
        assert_eq!(keys.held(&ks[2]).expect("get"), Some(again));
        keys.release(&ks[0], &entries[0].event_id).expect("release");
        assert_eq!(keys.held(&ks[0]).expect("get"), None);
        assert_eq!(keys.held(&ks[1]).expect("get").as_ref(), Some(&entries[1]));
        // Halfway through slot 4 keys 1 and 3 have expired (key 0 was
        // released, key 2 claimed again until slot 9); slot 2 is over, slot
        // 4 not yet. Both keys are gone, and left their bucket with the
        // sweep's compaction.
        let swept = keys
            .sweep(Timestamp(at(4) + SLOT_MS / 2), u64::MAX)
            .expect("sweep");
        assert_eq!(swept.expired, 1, "key 1: slot 4 is not over");
        assert_eq!(keys.held(&ks[1]).expect("get"), None);
        assert_eq!(keys.held(&ks[3]).expect("get"), None);
        assert!(keys.held(&ks[4]).expect("get").is_some());
        assert!(keys.held(&ks[2]).expect("get").is_some());
        let stored = keys
            .buckets
            .get(bucket_of(&ks[0]))
            .expect("get")
            .expect("bucket");
        assert_eq!(super::entries(&stored).count(), 2, "keys 2 and 4");
        let swept = keys.sweep(end(10), u64::MAX).expect("sweep");
        assert_eq!(swept.expired, 3);
        assert_eq!(keys.bytes(), 0);
        assert!(keys.buckets.is_empty(), "an empty bucket goes");
        assert!(keys.index().slots.is_empty());
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
                        keys.put(k, &entry(at(5))).expect("put");
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
        assert_eq!(keys.sweep(end(5), u64::MAX).expect("sweep").expired, 64);
        assert_eq!(keys.bytes(), 0);
    }

    #[test]
    fn an_early_sweep_drops_whole_slots_and_its_floor_outlasts_a_restart() {
        let dir = tempfile::tempdir().expect("dir");
        let ks = same_bucket(4);
        {
            let keys = DedupeKeys::open(dir.path(), 1 << 20).expect("open");
            for (k, slot) in ks.iter().zip([5, 5, 6, 6]) {
                keys.put(k, &entry(at(slot))).expect("put");
            }
            let per_key = keys.bytes() / 4;
            // Room for three: the first slot to expire goes whole.
            let swept = keys.sweep(Timestamp(1_000), 3 * per_key).expect("sweep");
            assert_eq!(
                swept,
                Swept {
                    expired: 0,
                    early: 2
                }
            );
            assert_eq!(keys.bytes(), 2 * per_key);
            assert_eq!(keys.held(&ks[0]).expect("get"), None);
            assert!(keys.held(&ks[2]).expect("get").is_some());
            // A put to the bucket leaves what is gone out of it.
            keys.put(&ks[1], &entry(at(7))).expect("put");
            let stored = keys
                .buckets
                .get(bucket_of(&ks[0]))
                .expect("get")
                .expect("bucket");
            assert_eq!(entries(&stored).count(), 3, "keys 1 to 3");
            assert_eq!(keys.bytes(), 3 * per_key);
            keys.db.flush().expect("flush");
        }
        // Reopened: key 0 stays gone, and the live keys are counted again.
        let keys = reopen(dir.path());
        assert_eq!(keys.held(&ks[0]).expect("get"), None);
        assert!(keys.held(&ks[1]).expect("get").is_some());
        assert_eq!(keys.index().all.keys, 3);
        let swept = keys.sweep(end(8), u64::MAX).expect("sweep");
        assert_eq!(swept.expired, 3);
        assert_eq!(keys.bytes(), 0);
        assert!(keys.buckets.is_empty());
    }

    #[test]
    fn a_sweep_rewrites_no_bucket_but_a_round_of_compaction_at_a_time() {
        let keys = DedupeKeys::temporary().expect("open");
        let n = 2 * COMPACT_BATCH;
        let ks: Vec<[u8; KEY_LEN]> = (0..n)
            .map(|i| {
                let mut k = [0u8; KEY_LEN];
                k[1..3].copy_from_slice(&(i as u16 * 7).to_be_bytes());
                k
            })
            .collect();
        for k in &ks {
            keys.put(k, &entry(at(1))).expect("put");
        }
        assert_eq!(keys.buckets.len(), n, "a bucket each");
        // Every key is gone at once; half the buckets are rewritten (to
        // nothing), the other half with the next pass.
        let swept = keys.sweep(end(1), u64::MAX).expect("sweep");
        assert_eq!(swept.expired, n);
        assert!(ks.iter().all(|k| keys.get(k).expect("get").is_none()));
        assert_eq!(keys.buckets.len(), n - COMPACT_BATCH);
        assert_eq!(keys.bytes(), 0);
        keys.sweep(end(1), u64::MAX).expect("sweep");
        assert!(keys.buckets.is_empty());
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
        let keys = reopen(dir.path());
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
        assert_eq!(
            find(&with(&bucket, &b, b"again", 0), &b),
            Some(&b"again"[..])
        );
    }
}
