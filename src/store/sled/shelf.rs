//! A shelf: the records of one kind (events, or runs), by id, in two sled
//! trees. New and changing records are in the hot tree, one entry each;
//! finished ones are moved into packs, many records to one entry.
//!
//! | tree            | key                  | value |
//! |-----------------|----------------------|-------|
//! | `events`, `runs` | id                  | the record ([`codec`]) |
//! | `events.packs`, `runs.packs` | the last id in the pack | first id length (u16 LE) ++ first id ++ [`codec::encode_pack`] of the records, in id order |
//!
//! Why packs: sled keeps a few hundred bytes of bookkeeping in memory for
//! every page it has written, and a leaf page holds at most 16 entries, so
//! with an entry per record the server's memory grew with stored history
//! (about 40 MB per million events and runs), and each record was
//! compressed alone. A pack holds about 32 KiB of records, compressed
//! together: sled sees one entry where it saw dozens.
//!
//! Packs never overlap: the packer takes hot records above the last pack's
//! last id only, so an id belongs to at most one pack, found with one
//! range lookup. A record written again after it was packed (a replay
//! links its event and its original run) gets a hot entry, which wins over
//! the packed copy on every read; removing a record removes both.
//!
//! The packer writes the pack, then removes each hot record it packed if
//! it is still the bytes it packed (compare and swap: a record written
//! meanwhile stays, and wins). A crash in between leaves both copies, equal:
//! reads take the hot one, and pruning removes both.

use super::codec;
use crate::store::Result;
use sled::{IVec, Tree};
use std::ops::Bound;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};

/// Plain bytes of records in a pack: compressed, a pack of Stripe-sized
/// events takes a few KiB, so a leaf of 16 packs stays well below the
/// size sled writes out as a file of its own.
pub(crate) const PACK_BYTES: usize = 32 * 1024;
/// Records in a pack at most (small runs).
pub(crate) const PACK_RECORDS: usize = 256;

/// What the packer makes of a hot record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Packing {
    /// Pack it.
    Pack,
    /// Leave it hot, and go on (a run waiting for a retry: it may wait for
    /// hours, and the rest should not).
    Skip,
    /// Leave it and everything after it hot for now (a run of the backlog:
    /// it finishes soon, and is packed with its neighbours then).
    Stop,
}

/// A pack read back: its records in id order.
type Records = Arc<Vec<(IVec, IVec)>>;

/// Records as sled's iterators give them.
type Entries = Box<dyn Iterator<Item = sled::Result<(IVec, IVec)>>>;

/// One kind of record, hot and packed; cheap to clone.
#[derive(Clone)]
pub(crate) struct Shelf {
    /// `events` or `runs`, for the log.
    name: &'static str,
    pub(crate) hot: Tree,
    packs: Tree,
    /// Bytes of the records and packs (keys and values): what retention by
    /// size counts. Shared by the shelves of one store.
    live: Arc<AtomicI64>,
    /// The last pack read, by key: listing, pruning and the packer read
    /// neighbours, and a pack holds dozens of them.
    last_read: Arc<Mutex<Option<(IVec, Records)>>>,
    unreadable: Arc<super::Unreadable>,
}

impl Shelf {
    pub(crate) fn open(
        db: &sled::Db,
        name: &'static str,
        live: Arc<AtomicI64>,
        unreadable: Arc<super::Unreadable>,
    ) -> Result<Shelf> {
        Ok(Shelf {
            name,
            hot: db.open_tree(name)?,
            packs: db.open_tree(format!("{name}.packs"))?,
            live,
            last_read: Arc::default(),
            unreadable,
        })
    }

    /// A record, hot or packed.
    pub(crate) fn get(&self, id: &str) -> Result<Option<IVec>> {
        if let Some(v) = self.hot.get(id.as_bytes())? {
            return Ok(Some(v));
        }
        let Some(records) = self.pack_of(id.as_bytes())? else {
            return Ok(None);
        };
        Ok(find(&records, id.as_bytes()).map(|(_, v)| v.clone()))
    }

    pub(crate) fn contains(&self, id: &str) -> Result<bool> {
        Ok(self.get(id)?.is_some())
    }

    /// Write a record (hot). The byte count after it.
    pub(crate) fn put(&self, id: &str, value: Vec<u8>) -> Result<i64> {
        let added = (id.len() + value.len()) as i64;
        let old = self.hot.insert(id.as_bytes(), value)?;
        let removed = old.map_or(0, |o| (id.len() + o.len()) as i64);
        Ok(self.live.fetch_add(added - removed, Ordering::Relaxed) + added - removed)
    }

    /// Remove a record, hot and packed; whether there was one.
    pub(crate) fn remove(&self, id: &str) -> Result<bool> {
        Ok(self.remove_many([id])? > 0)
    }

    /// Remove records, hot and packed, each pack rewritten once; how many
    /// ids had a record.
    pub(crate) fn remove_many<'a>(&self, ids: impl IntoIterator<Item = &'a str>) -> Result<usize> {
        let mut removed = std::collections::HashSet::new();
        let mut by_pack: Vec<(IVec, Vec<&'a str>)> = Vec::new();
        for id in ids {
            if let Some(old) = self.hot.remove(id.as_bytes())? {
                self.live
                    .fetch_sub((id.len() + old.len()) as i64, Ordering::Relaxed);
                removed.insert(id);
            }
            let Some((key, first)) = self.pack_key_of(id.as_bytes())? else {
                continue;
            };
            if first.as_slice() > id.as_bytes() {
                continue;
            }
            match by_pack.last_mut() {
                Some((k, ids)) if *k == key => ids.push(id),
                _ => by_pack.push((key, vec![id])),
            }
        }
        for (key, ids) in by_pack {
            let Some(old) = self.packs.get(&key)? else {
                continue;
            };
            // An unreadable pack cannot be split: it goes when one of its
            // ids is removed.
            let records = self.read_pack(&key, &old).unwrap_or_default();
            let doomed = |id: &[u8]| ids.iter().find(|r| r.as_bytes() == id).copied();
            let kept: Vec<&(IVec, IVec)> = records
                .iter()
                .filter(|(id, _)| doomed(id).is_none())
                .collect();
            removed.extend(records.iter().filter_map(|(id, _)| doomed(id)));
            if kept.len() == records.len() && !records.is_empty() {
                continue;
            }
            // Written under the same key (the last id of the pack as it was):
            // still above every record it holds and below the next pack's.
            let value =
                (!kept.is_empty()).then(|| encode(kept.iter().map(|(k, v)| (&k[..], &v[..]))));
            let before = (key.len() + old.len()) as i64;
            let after = value.as_ref().map_or(0, |v| (key.len() + v.len()) as i64);
            match value {
                Some(v) => {
                    self.packs.insert(&key, v)?;
                }
                None => {
                    self.packs.remove(&key)?;
                }
            }
            self.live.fetch_add(after - before, Ordering::Relaxed);
            self.forget(&key);
        }
        Ok(removed.len())
    }

    /// The oldest id, hot or packed.
    pub(crate) fn first_id(&self) -> Result<Option<IVec>> {
        let hot = self.hot.first()?.map(|(k, _)| k);
        let packed = match self.packs.first()? {
            Some((_, v)) => first_of(&v).map(IVec::from),
            None => None,
        };
        Ok(match (hot, packed) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        })
    }

    /// Records in id order from `from` on (hot and packed).
    pub(crate) fn scan(&self, from: Bound<&[u8]>) -> Merged {
        let hot = self.hot.range::<&[u8], _>((from, Bound::Unbounded));
        let shelf = self.clone();
        let from = from.map(<[u8]>::to_vec);
        // Packs are keyed by their last id: those from `from` on hold the
        // records at or above it.
        let packed = self
            .packs
            .range((from.clone(), Bound::Unbounded))
            .flat_map(move |p| shelf.entries_of(p, |id| in_bound_from(&from, id), false));
        Merged::new(Box::new(hot), Box::new(packed), false)
    }

    /// Records in reverse id order below `before` (all when `None`).
    pub(crate) fn scan_rev(&self, before: Option<&[u8]>) -> Merged {
        let hot: Entries = match before {
            Some(b) => Box::new(self.hot.range(..b.to_vec()).rev()),
            None => Box::new(self.hot.iter().rev()),
        };
        let shelf = self.clone();
        let below = before.map(<[u8]>::to_vec);
        // Packs are keyed by their last id: the one pack that may straddle
        // `before` comes first, then every pack below it.
        let packs: Entries = match &below {
            Some(b) => Box::new(
                self.packs
                    .range(b.clone()..)
                    .take(1)
                    .chain(self.packs.range(..b.clone()).rev()),
            ),
            None => Box::new(self.packs.iter().rev()),
        };
        let packed = packs.flat_map(move |p| {
            let below = below.clone();
            shelf.entries_of(
                p,
                move |id| below.as_ref().is_none_or(|b| id < &b[..]),
                true,
            )
        });
        Merged::new(hot, Box::new(packed), true)
    }

    /// Move hot records with ids above the last pack's and below `below`
    /// into packs, as `packing` says of each, at most `max_packs` packs.
    /// Records left over that do not fill a pack wait for the next call.
    /// `crash` is called once the pack is written, before the hot copies
    /// go (the crash tests stop there). How many records were packed, and
    /// whether `max_packs` cut the call short.
    pub(crate) fn pack(
        &self,
        below: &[u8],
        mut packing: impl FnMut(&str, &[u8]) -> Packing,
        max_packs: usize,
        crash: &dyn Fn(),
    ) -> Result<(usize, bool)> {
        let above = self.packs.last()?.map(|(k, _)| k);
        let from = match &above {
            Some(k) => Bound::Excluded(&k[..]),
            None => Bound::Unbounded,
        };
        let mut batch: Vec<(IVec, IVec, Vec<u8>)> = Vec::new();
        let mut plain = 0;
        let (mut packed, mut packs) = (0, 0);
        for entry in self.hot.range::<&[u8], _>((from, Bound::Excluded(below))) {
            let (k, v) = entry?;
            let id = String::from_utf8_lossy(&k);
            match packing(&id, &v) {
                Packing::Pack => {}
                Packing::Skip => continue,
                Packing::Stop => break,
            }
            // An unreadable record stays where it is.
            let Ok(expanded) = codec::expanded(&id, &v) else {
                continue;
            };
            plain += k.len() + expanded.len() + 6;
            batch.push((k, v, expanded));
            if plain >= PACK_BYTES || batch.len() >= PACK_RECORDS {
                packed += self.write_pack(&batch, crash)?;
                batch.clear();
                plain = 0;
                packs += 1;
                if packs == max_packs {
                    return Ok((packed, true));
                }
            }
        }
        Ok((packed, false))
    }

    fn write_pack(&self, batch: &[(IVec, IVec, Vec<u8>)], crash: &dyn Fn()) -> Result<usize> {
        let Some((last, _, _)) = batch.last() else {
            return Ok(0);
        };
        let value = encode(batch.iter().map(|(k, _, e)| (&k[..], &e[..])));
        self.live
            .fetch_add((last.len() + value.len()) as i64, Ordering::Relaxed);
        self.packs.insert(last, value)?;
        crash();
        for (k, v, _) in batch {
            // Only the bytes that were packed: a record written since stays.
            if self
                .hot
                .compare_and_swap(k, Some(v), None as Option<&[u8]>)?
                .is_ok()
            {
                self.live
                    .fetch_sub((k.len() + v.len()) as i64, Ordering::Relaxed);
            }
        }
        Ok(batch.len())
    }

    /// Count the bytes of every record and pack (for a store written by
    /// an earlier version, which kept no count).
    pub(crate) fn count_bytes(&self) -> Result<i64> {
        let mut total = 0i64;
        for tree in [&self.hot, &self.packs] {
            for entry in tree.iter() {
                let (k, v) = entry?;
                total += (k.len() + v.len()) as i64;
            }
        }
        Ok(total)
    }

    /// How many packs there are (for tests and figures).
    #[cfg(test)]
    pub(crate) fn packs(&self) -> usize {
        self.packs.len()
    }

    /// The key and first id of the pack `id` would be in, if any.
    fn pack_key_of(&self, id: &[u8]) -> Result<Option<(IVec, Vec<u8>)>> {
        Ok(match self.packs.range(id..).next() {
            Some(p) => {
                let (k, v) = p?;
                first_of(&v).map(|first| (k, first.to_vec()))
            }
            None => None,
        })
    }

    /// The pack `id` would be in, read (none when it cannot be).
    fn pack_of(&self, id: &[u8]) -> Result<Option<Records>> {
        let Some(p) = self.packs.range(id..).next() else {
            return Ok(None);
        };
        let (k, v) = p?;
        if first_of(&v).is_none_or(|first| first > id) {
            return Ok(None);
        }
        Ok(self.read_pack(&k, &v).ok())
    }

    /// A pack's records, from the last one read when it is that one. An
    /// unreadable pack is logged once and counted.
    fn read_pack(&self, key: &IVec, value: &[u8]) -> Result<Records> {
        {
            let last = self.last_read.lock().unwrap_or_else(|e| e.into_inner());
            if let Some((k, r)) = last.as_ref() {
                if k == key {
                    return Ok(r.clone());
                }
            }
        }
        let name = String::from_utf8_lossy(key);
        let records = match decode(&name, value) {
            Ok(r) => Arc::new(r),
            Err(e) => {
                self.unreadable
                    .note(&format!("{}.packs", self.name), &name, &e);
                return Err(e);
            }
        };
        *self.last_read.lock().unwrap_or_else(|e| e.into_inner()) =
            Some((key.clone(), records.clone()));
        Ok(records)
    }

    fn forget(&self, key: &IVec) {
        let mut last = self.last_read.lock().unwrap_or_else(|e| e.into_inner());
        if last.as_ref().is_some_and(|(k, _)| k == key) {
            *last = None;
        }
    }

    /// The records of a pack (as the range gave it) that `keep` accepts,
    /// in order or reversed. An unreadable pack gives none (it is logged).
    fn entries_of(
        &self,
        pack: sled::Result<(IVec, IVec)>,
        keep: impl Fn(&[u8]) -> bool,
        rev: bool,
    ) -> Vec<sled::Result<(IVec, IVec)>> {
        let (k, v) = match pack {
            Ok(p) => p,
            Err(e) => return vec![Err(e)],
        };
        let Ok(records) = self.read_pack(&k, &v) else {
            return Vec::new();
        };
        let mut out: Vec<_> = records
            .iter()
            .filter(|(id, _)| keep(id))
            .map(|r| Ok(r.clone()))
            .collect();
        if rev {
            out.reverse();
        }
        out
    }
}

fn in_bound_from(from: &Bound<Vec<u8>>, id: &[u8]) -> bool {
    match from {
        Bound::Included(f) => id >= &f[..],
        Bound::Excluded(f) => id > &f[..],
        Bound::Unbounded => true,
    }
}

/// A pack's value: its first id, then its records compressed together.
fn encode<'a>(records: impl Iterator<Item = (&'a [u8], &'a [u8])> + Clone) -> Vec<u8> {
    let mut plain = Vec::new();
    let mut first: Option<&[u8]> = None;
    for (id, record) in records {
        first.get_or_insert(id);
        plain.extend_from_slice(&(id.len() as u16).to_le_bytes());
        plain.extend_from_slice(id);
        plain.extend_from_slice(&(record.len() as u32).to_le_bytes());
        plain.extend_from_slice(record);
    }
    let first = first.unwrap_or_default();
    let packed = codec::encode_pack(&plain);
    let mut out = Vec::with_capacity(2 + first.len() + packed.len());
    out.extend_from_slice(&(first.len() as u16).to_le_bytes());
    out.extend_from_slice(first);
    out.extend_from_slice(&packed);
    out
}

/// The first id of a pack, read without unpacking it.
fn first_of(value: &[u8]) -> Option<&[u8]> {
    let (len, rest) = value.split_at_checked(2)?;
    let len = u16::from_le_bytes(len.try_into().ok()?) as usize;
    rest.get(..len)
}

fn decode(key: &str, value: &[u8]) -> Result<Vec<(IVec, IVec)>> {
    let bad = |why: &str| crate::store::StoreError::Corrupt {
        key: key.to_string(),
        reason: why.to_string(),
    };
    let first = first_of(value).ok_or_else(|| bad("the pack is cut short"))?;
    let plain = codec::decode_pack(key, &value[2 + first.len()..])?;
    let mut records = Vec::new();
    let mut rest = &plain[..];
    while !rest.is_empty() {
        let (len, after) = rest
            .split_at_checked(2)
            .ok_or_else(|| bad("a packed id is cut short"))?;
        let len = u16::from_le_bytes([len[0], len[1]]) as usize;
        let (id, after) = after
            .split_at_checked(len)
            .ok_or_else(|| bad("a packed id is cut short"))?;
        let (len, after) = after
            .split_at_checked(4)
            .ok_or_else(|| bad("a packed record is cut short"))?;
        let len = u32::from_le_bytes([len[0], len[1], len[2], len[3]]) as usize;
        let (record, after) = after
            .split_at_checked(len)
            .ok_or_else(|| bad("a packed record is cut short"))?;
        records.push((IVec::from(id), IVec::from(record)));
        rest = after;
    }
    Ok(records)
}

fn find<'a>(records: &'a [(IVec, IVec)], id: &[u8]) -> Option<&'a (IVec, IVec)> {
    records
        .binary_search_by(|(k, _)| k[..].cmp(id))
        .ok()
        .map(|i| &records[i])
}

/// Hot records and packed ones merged in id order (or reversed); where an
/// id is in both, the hot record.
pub(crate) struct Merged {
    hot: std::iter::Peekable<Entries>,
    packed: std::iter::Peekable<Entries>,
    rev: bool,
}

impl Merged {
    fn new(hot: Entries, packed: Entries, rev: bool) -> Merged {
        Merged {
            hot: hot.peekable(),
            packed: packed.peekable(),
            rev,
        }
    }
}

impl Iterator for Merged {
    type Item = sled::Result<(IVec, IVec)>;

    fn next(&mut self) -> Option<Self::Item> {
        use std::cmp::Ordering::*;
        let order = match (self.hot.peek(), self.packed.peek()) {
            (None, None) => return None,
            (Some(_), None) | (Some(Err(_)), _) => Less,
            (None, Some(_)) | (_, Some(Err(_))) => Greater,
            (Some(Ok((h, _))), Some(Ok((p, _)))) => {
                let o = h.cmp(p);
                if self.rev {
                    o.reverse()
                } else {
                    o
                }
            }
        };
        match order {
            Less => self.hot.next(),
            Greater => self.packed.next(),
            Equal => {
                self.packed.next();
                self.hot.next()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shelf() -> Shelf {
        let db = sled::Config::new().temporary(true).open().expect("open");
        Shelf::open(&db, "runs", Arc::default(), Arc::default()).expect("shelf")
    }

    /// A JSON record (stored as earlier versions wrote it) of about `size`
    /// bytes.
    fn record(n: usize, size: usize) -> Vec<u8> {
        format!("{{\"n\":{n},\"pad\":\"{}\"}}", "x".repeat(size)).into_bytes()
    }

    fn id(n: usize) -> String {
        format!("r{n:06}")
    }

    fn ids(it: Merged) -> Vec<String> {
        it.map(|e| String::from_utf8_lossy(&e.expect("read").0).into_owned())
            .collect()
    }

    #[test]
    fn packed_records_read_as_before_and_the_hot_copy_wins() {
        let s = shelf();
        for n in 0..300 {
            s.put(&id(n), record(n, 400)).expect("put");
        }
        let before = s.live.load(Ordering::Relaxed);
        let packed = s
            .pack(id(250).as_bytes(), |_, _| Packing::Pack, usize::MAX, &|| {})
            .expect("pack")
            .0;
        // 250 records of about 420 bytes: three full packs, the rest waits.
        assert!(packed > 150 && packed < 250, "{packed}");
        assert!(s.packs() >= 2);
        assert!(
            s.live.load(Ordering::Relaxed) < before / 4,
            "packs are compressed"
        );
        for n in 0..300 {
            assert_eq!(
                s.get(&id(n)).expect("get").as_deref(),
                Some(&record(n, 400)[..])
            );
        }
        assert_eq!(s.get("r999999").expect("get"), None);
        assert_eq!(s.get("").expect("get"), None);
        // Written again after it was packed: the new bytes win.
        s.put(&id(3), record(1_000_003, 10)).expect("put");
        assert_eq!(
            s.get(&id(3)).expect("get").as_deref(),
            Some(&record(1_000_003, 10)[..])
        );
        let all = ids(s.scan(Bound::Unbounded));
        assert_eq!(
            all,
            (0..300).map(id).collect::<Vec<_>>(),
            "each once, in order"
        );
        let newest = ids(s.scan_rev(Some(id(120).as_bytes())));
        assert_eq!(newest, (0..120).rev().map(id).collect::<Vec<_>>());
        let from = ids(s.scan(Bound::Excluded(id(40).as_bytes())));
        assert_eq!(from.first(), Some(&id(41)));
        assert_eq!(from.len(), 259);
        assert_eq!(
            s.first_id().expect("first").as_deref(),
            Some(id(0).as_bytes())
        );
    }

    #[test]
    fn removing_records_rewrites_or_drops_their_packs_and_counts_bytes() {
        let s = shelf();
        for n in 0..200 {
            s.put(&id(n), record(n, 300)).expect("put");
        }
        s.pack(id(200).as_bytes(), |_, _| Packing::Pack, usize::MAX, &|| {})
            .expect("pack");
        s.put(&id(5), record(5, 1)).expect("a hot copy");
        let doomed: Vec<String> = (0..60).map(id).collect();
        let n = s
            .remove_many(doomed.iter().map(String::as_str))
            .expect("remove");
        assert_eq!(n, 60);
        for k in &doomed {
            assert_eq!(s.get(k).expect("get"), None, "{k} is gone, hot and packed");
        }
        assert_eq!(
            s.get(&id(60)).expect("get").as_deref(),
            Some(&record(60, 300)[..])
        );
        assert!(s.remove(&id(199)).expect("remove"));
        assert!(!s.remove(&id(199)).expect("again"));
        let rest: Vec<String> = (60..199).map(id).collect();
        assert_eq!(ids(s.scan(Bound::Unbounded)), rest);
        assert_eq!(
            s.first_id().expect("first").as_deref(),
            Some(id(60).as_bytes())
        );
        // The running count is what a fresh count finds.
        assert_eq!(
            s.live.load(Ordering::Relaxed),
            s.count_bytes().expect("count")
        );
        assert_eq!(
            s.remove_many(rest.iter().map(String::as_str)).expect("all"),
            rest.len()
        );
        assert_eq!(s.packs(), 0);
        assert_eq!(s.live.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn the_packer_skips_or_stops_as_told_and_never_overlaps_packs() {
        let s = shelf();
        for n in 0..400 {
            s.put(&id(n), record(n, 400)).expect("put");
        }
        // Record 7 waits (skipped: stays hot); record 300 is in the backlog
        // (the packer stops there).
        let packed = s
            .pack(
                id(400).as_bytes(),
                |k, _| match k {
                    "r000007" => Packing::Skip,
                    "r000300" => Packing::Stop,
                    _ => Packing::Pack,
                },
                usize::MAX,
                &|| {},
            )
            .expect("pack");
        assert!(
            s.hot.contains_key(id(7)).expect("hot"),
            "skipped: still hot"
        );
        assert!(
            s.hot.contains_key(id(299)).expect("hot"),
            "not a whole pack before the stop"
        );
        assert!(packed.0 < 299);
        // The next pass starts above the last pack: record 7 stays hot.
        let again = s
            .pack(id(400).as_bytes(), |_, _| Packing::Pack, usize::MAX, &|| {})
            .expect("pack");
        assert!(again.0 > 0);
        assert!(s.hot.contains_key(id(7)).expect("hot"));
        let mut last_first: Option<Vec<u8>> = None;
        let mut last_last: Option<IVec> = None;
        for p in s.packs.iter() {
            let (k, v) = p.expect("pack");
            let first = first_of(&v).expect("first").to_vec();
            assert!(first <= k.to_vec());
            if let Some(prev) = &last_last {
                assert!(first > prev.to_vec(), "packs never overlap");
            }
            last_first = Some(first);
            last_last = Some(k);
        }
        assert!(last_first.is_some());
        assert_eq!(
            ids(s.scan(Bound::Unbounded)),
            (0..400).map(id).collect::<Vec<_>>()
        );
    }

    #[test]
    fn a_record_written_while_it_was_packed_stays_hot() {
        let s = shelf();
        for n in 0..100 {
            s.put(&id(n), record(n, 1_000)).expect("put");
        }
        let again = record(9_999, 5);
        let packed = s
            .pack(
                id(100).as_bytes(),
                |_, _| Packing::Pack,
                1,
                // Written between the pack and the removal of hot copies.
                &|| {
                    s.put(&id(2), again.clone()).expect("put");
                },
            )
            .expect("pack");
        assert!(packed.0 > 2);
        assert_eq!(s.hot.get(id(2)).expect("hot").as_deref(), Some(&again[..]));
        assert_eq!(s.get(&id(2)).expect("get").as_deref(), Some(&again[..]));
        assert!(!s.hot.contains_key(id(1)).expect("hot"));
        assert_eq!(
            s.live.load(Ordering::Relaxed),
            s.count_bytes().expect("count")
        );
    }

    #[test]
    fn an_unreadable_pack_is_an_error_to_readers_and_can_be_removed() {
        let s = shelf();
        s.packs
            .insert(id(9), &[3, 0, b'r', b'0', b'0', 7, 7][..])
            .expect("insert");
        assert_eq!(s.scan(Bound::Unbounded).count(), 0, "skipped");
        assert_eq!(s.get(&id(9)).expect("get"), None);
        assert_eq!(
            s.unreadable.count.load(Ordering::Relaxed),
            1,
            "counted once"
        );
        s.remove(&id(9)).expect("remove");
        assert_eq!(s.packs(), 0);
    }
}
