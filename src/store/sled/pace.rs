//! Pacing of new events while the data folder nears `--retention-size`.
//!
//! Retention by size prunes the history to its share of the limit
//! ([`super::records_budget`]), but the folder is sled's log, and the log
//! reuses a segment only once every page in it has moved on. When events
//! arrive faster than sled's cleaner moves pages (a few thousand a second
//! at a small limit, on the release build), the log file grows past the
//! limit, and it shrinks only from its end once writes slow down: the
//! folder reached 1.3–1.7 times a 16 MiB limit at the full rate, while at
//! a steady 1,000 or 2,000 events a second it stayed within it
//! (`docs/performance.md`). Stopping writes outright does not help either:
//! an idle log is not compacted, so a full stop would never end.
//!
//! So the folder's size is measured every [`MEASURE_EVERY`] (as `du`
//! counts it: every file of both databases), and near the limit new events
//! are paced: from the top tenth of the limit (at least [`ZONE_MIN`]) to
//! [`HEADROOM`] below it (or a 64th of the limit), the bytes of new events
//! admitted per second fall from [`RATE_MAX`] to [`RATE_MIN`], evenly on a
//! log scale, and stay at the floor beyond. At the floor the cleaner gains
//! on the writes and the folder shrinks again, as long as what is live in
//! the log leaves its last segments mostly free (see below). Within the
//! zone the pace is raised step by step while the folder does not grow
//! ([`Pacer`]): sled reuses the space inside its file without the file
//! shrinking, so the size alone would hold the pace low. Work already
//! stored (runs, retries) is never paced: it is what frees the backlog.
//!
//! An event waits for its slot before anything of it is written; one whose
//! slot is further than [`MAX_WAIT`] away is refused (`503`, nothing
//! stored: the sender's retry stores it), so waiting requests stay bounded.
//!
//! **A folder held at the floor gives the history less room.** sled's log
//! file shrinks only from its end, and only once its last segments hold
//! little that is live: after a backlog (runs waiting are never pruned)
//! took the folder to the limit, the history pruned back to its share was
//! still enough to keep those segments, and the folder stayed at the floor
//! for good (at 64 MiB: 57.7 of the folder's 65 MB was the history's log,
//! holding 8 MB of records, for minutes after the backlog had drained,
//! `docs/performance.md`). So while the folder stays past the end of the
//! zone without shrinking, the history's share of the limit is halved
//! every [`SQUEEZE_EVERY`], down to [`SHARE_MIN`] ([`Squeeze`]): pruning
//! then leaves segments mostly dead, sled moves their last pages and
//! truncates the file, and the pace rises again. Once the folder is below
//! the zone, the share grows back by half each step.
//!
//! The operator is told once when pacing starts and once when it ends,
//! once when the folder passes the limit and once when it is back within,
//! and once when the history's share is cut and once when it is whole
//! again; `/metrics` shows the folder's size (`hookflow_store_disk_bytes`),
//! the rate (`hookflow_store_ingest_pace_bytes`) and the records' target
//! (`hookflow_store_record_target_bytes`).

use crate::store::StoreError;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};
use tracing::{info, warn};

/// How often the folder is measured (a few `stat` calls) near the pacing
/// zone, and far below it.
const MEASURE_EVERY: Duration = Duration::from_millis(10);
const MEASURE_FAR_EVERY: Duration = Duration::from_millis(50);

/// Below the limit by this much (or a 64th of the limit, if more), the
/// rate is at its floor: room for what lands between two measures, the
/// segments sled allocates ahead (512 KiB in each database), and a new
/// snapshot of its page table written beside the old one (at 32 MiB the
/// folder went 1 MB past the floor's start).
const HEADROOM: u64 = 2 * 1024 * 1024;

/// The pacing zone is the top tenth of the limit, and at least this.
const ZONE_MIN: u64 = 3 * 1024 * 1024;

/// Bytes of new events per second admitted where pacing starts: above what
/// sled's cleaner keeps up with at small limits (about 3,500 Stripe-sized
/// events a second), under the release build's full rate.
const RATE_MAX: u64 = 12 * 1024 * 1024;

/// The floor: about 70 Stripe-sized events a second, well within what
/// sled's cleaner keeps up with on a slow disk.
const RATE_MIN: u64 = 256 * 1024;

/// What an event costs beyond its body: its headers and record, its runs'
/// records and their later saves, per record.
pub(crate) const RECORD_COST: u64 = 1024;

/// The longest an event waits for its slot; beyond, it is refused.
const MAX_WAIT: Duration = Duration::from_secs(10);

/// The folder's size and the pace it sets.
pub(crate) struct DiskPace {
    /// `--retention-size`, as the last pruning pass was given it (0: none yet).
    limit: AtomicU64,
    /// Bytes the folder takes on disk, as last measured.
    used: AtomicU64,
    /// Bytes of new events admitted per second; 0 while not pacing.
    rate: AtomicU64,
    /// When the next event's slot starts.
    next: Mutex<Option<Instant>>,
    /// The share of the history's budget retention keeps, in
    /// [`SHARE_FULL`]ths ([`Squeeze`]).
    share: AtomicU64,
    /// Woken when the share is cut, so that pruning follows at once.
    prune_wanted: std::sync::OnceLock<Arc<tokio::sync::Notify>>,
}

impl Default for DiskPace {
    fn default() -> Self {
        DiskPace {
            limit: AtomicU64::default(),
            used: AtomicU64::default(),
            rate: AtomicU64::default(),
            next: Mutex::default(),
            share: AtomicU64::new(SHARE_FULL),
            prune_wanted: std::sync::OnceLock::new(),
        }
    }
}

/// Why an event was not admitted.
#[derive(Debug)]
pub(crate) struct TooFar(pub Duration);

impl DiskPace {
    /// Start measuring `dir`, on a thread of its own that ends when the
    /// store is dropped.
    pub(crate) fn start(dir: &Path) -> std::io::Result<Arc<DiskPace>> {
        let pace = Arc::new(DiskPace::default());
        pace.used.store(folder_bytes(dir), Ordering::Relaxed);
        let (weak, dir) = (Arc::downgrade(&pace), dir.to_path_buf());
        std::thread::Builder::new()
            .name("hookflow-disk".into())
            .spawn(move || measure(weak, &dir))?;
        Ok(pace)
    }

    pub(crate) fn set_limit(&self, limit: u64) {
        self.limit.store(limit, Ordering::Relaxed);
    }

    /// Wake `pruning` when the history's share is cut.
    pub(crate) fn wake_on_squeeze(&self, pruning: Arc<tokio::sync::Notify>) {
        let _ = self.prune_wanted.set(pruning);
    }

    /// What retention by size keeps of a records `budget`: all of it, or
    /// its share while the folder is held past the pacing zone.
    pub(crate) fn records_share(&self, budget: u64) -> u64 {
        let share = self.share.load(Ordering::Relaxed);
        (budget as u128 * share as u128 / SHARE_FULL as u128) as u64
    }

    /// Bytes the folder takes on disk, measured within the last few ms.
    pub(crate) fn used(&self) -> u64 {
        self.used.load(Ordering::Relaxed)
    }

    /// Bytes of new events admitted per second; 0 while not pacing.
    pub(crate) fn rate(&self) -> u64 {
        self.rate.load(Ordering::Relaxed)
    }

    /// The time an event of `cost` bytes may be written at: `None` at once
    /// (not pacing), or its slot; or refused, with how far its slot was.
    pub(crate) fn slot(&self, cost: u64) -> Result<Option<Instant>, TooFar> {
        let rate = self.rate();
        if rate == 0 {
            return Ok(None);
        }
        let mut next = self.next.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        let start = next.map_or(now, |n| n.max(now));
        let wait = start - now;
        if wait > MAX_WAIT {
            return Err(TooFar(wait));
        }
        *next = Some(start + Duration::from_secs_f64(cost as f64 / rate as f64));
        Ok(Some(start))
    }
}

impl DiskPace {
    /// Wait for the turn of an event of `cost` bytes (at once while not
    /// pacing); refused when it is further than [`MAX_WAIT`] away.
    pub(crate) async fn wait_turn(&self, cost: u64) -> Result<(), StoreError> {
        match self.slot(cost) {
            Ok(None) => Ok(()),
            Ok(Some(at)) => {
                tokio::time::sleep_until(at.into()).await;
                Ok(())
            }
            Err(TooFar(wait)) => Err(StoreError::Paced {
                reason: format!(
                    "the data folder is close to --retention-size and new events are paced; \
                     this one's turn was {} s away (the longest wait is {} s)",
                    wait.as_secs(),
                    MAX_WAIT.as_secs()
                ),
                retry_after_secs: MAX_WAIT.as_secs(),
            }),
        }
    }
}

/// Bytes of new events admitted per second with the folder at `used` bytes
/// of `limit`: `None` below the pacing zone.
pub(crate) fn rate_for(used: u64, limit: u64) -> Option<u64> {
    if limit == 0 {
        return None;
    }
    let (start, end) = zone(limit);
    if used < start {
        return None;
    }
    if used >= end || end == start {
        return Some(RATE_MIN);
    }
    let x = (used - start) as f64 / (end - start) as f64;
    let (hi, lo) = ((RATE_MAX as f64).ln(), (RATE_MIN as f64).ln());
    Some((hi + (lo - hi) * x).exp().round() as u64)
}

/// Where pacing starts and where it reaches its floor, for a limit.
fn zone(limit: u64) -> (u64, u64) {
    let end = limit.saturating_sub(HEADROOM.max(limit / 64));
    (end.saturating_sub((limit / 10).max(ZONE_MIN)), end)
}

/// How long the folder must not grow for the pace to be raised a step.
const STEADY: Duration = Duration::from_millis(100);

/// Each step multiplies the pace by this (while the folder does not grow).
const STEP_UP: f64 = 1.25;

/// The pace for each measure: [`rate_for`] the folder's size, raised while
/// the folder stops growing. The log file does not shrink while sled
/// reuses the space inside it, so a folder that stays put at 60 of
/// 64 MiB would otherwise hold the pace at a few hundred events a second
/// however fast the cleaner has become; at 64 MiB it did, at 576 a
/// second. Raised a step each [`STEADY`] without growth, back to the
/// size's own pace at any growth, and never raised beyond the end of the
/// zone, where the floor holds.
#[derive(Debug)]
pub(crate) struct Pacer {
    boost: f64,
    /// The largest size seen in this step, and in the one before.
    peak: u64,
    before: u64,
    step_started: Instant,
}

impl Pacer {
    pub(crate) fn new(now: Instant) -> Pacer {
        Pacer {
            boost: 1.0,
            peak: 0,
            before: u64::MAX,
            step_started: now,
        }
    }

    /// The pace with the folder at `used` bytes of `limit` at `now`.
    pub(crate) fn rate(&mut self, used: u64, limit: u64, now: Instant) -> Option<u64> {
        self.peak = self.peak.max(used);
        if now.duration_since(self.step_started) >= STEADY {
            self.boost = if self.peak > self.before {
                1.0
            } else {
                (self.boost * STEP_UP).min((RATE_MAX / RATE_MIN) as f64)
            };
            (self.before, self.peak, self.step_started) = (self.peak, used, now);
        }
        let base = rate_for(used, limit)?;
        if used >= zone(limit).1 {
            self.boost = 1.0;
            return Some(base);
        }
        Some(((base as f64 * self.boost) as u64).min(RATE_MAX))
    }
}

/// The history's whole budget, in the units of [`DiskPace::records_share`].
const SHARE_FULL: u64 = 1024;

/// The least share of its budget the history is cut to: at the default
/// 1 GiB limit still some 10 MB of records, the newest.
const SHARE_MIN: u64 = SHARE_FULL / 16;

/// How long the folder must stay past the zone without shrinking for the
/// history's share to be halved, and below it for the share to grow a
/// step. Long enough for a pruning pass and sled's cleaner to show on
/// disk.
const SQUEEZE_EVERY: Duration = Duration::from_secs(5);

/// Shrinking by less than this (a segment of sled's log) in a step is not
/// shrinking.
const SHRINK_MIN: u64 = super::SEGMENT_SIZE as u64;

/// The history's share of its budget, for each measure of the folder:
/// halved each [`SQUEEZE_EVERY`] the folder stays past the end of the
/// pacing zone without shrinking by a segment, grown back by half each
/// one it stays below the zone (whole again within 35 s), held within
/// it.
#[derive(Debug)]
pub(crate) struct Squeeze {
    share: u64,
    step_started: Instant,
    /// The folder's size when this step started.
    at_start: u64,
}

impl Squeeze {
    pub(crate) fn new(now: Instant) -> Squeeze {
        Squeeze {
            share: SHARE_FULL,
            step_started: now,
            at_start: 0,
        }
    }

    /// The share with the folder at `used` bytes of `limit` at `now`.
    pub(crate) fn share(&mut self, used: u64, limit: u64, now: Instant) -> u64 {
        if limit == 0 || now.duration_since(self.step_started) < SQUEEZE_EVERY {
            return self.share;
        }
        let (start, end) = zone(limit);
        let shrunk = self.at_start.saturating_sub(used) >= SHRINK_MIN;
        if used >= end && !shrunk {
            self.share = (self.share / 2).max(SHARE_MIN);
        } else if used < start {
            self.share = (self.share + self.share / 2).min(SHARE_FULL);
        }
        (self.step_started, self.at_start) = (now, used);
        self.share
    }
}

fn measure(pace: Weak<DiskPace>, dir: &Path) {
    let mut pacing = false;
    let mut pacer = Pacer::new(Instant::now());
    let mut squeeze = Squeeze::new(Instant::now());
    let mut over = OverLimit::default();
    while let Some(p) = pace.upgrade() {
        let used = folder_bytes(dir);
        p.used.store(used, Ordering::Relaxed);
        let limit = p.limit.load(Ordering::Relaxed);
        if limit > 0 {
            over.check(used, limit);
        }
        let now = Instant::now();
        let rate = pacer.rate(used, limit, now);
        p.rate.store(rate.unwrap_or(0), Ordering::Relaxed);
        let share = squeeze.share(used, limit, now);
        let was = p.share.swap(share, Ordering::Relaxed);
        if share < was {
            if let Some(pruning) = p.prune_wanted.get() {
                pruning.notify_one();
            }
            if was == SHARE_FULL {
                warn!(
                    disk_bytes = used,
                    limit_bytes = limit,
                    "the data folder stays at --retention-size although the history is pruned \
                     to its share (sled's log shrinks only once its last segments are mostly \
                     free): the history keeps less until the folder is back below the pacing \
                     zone (hookflow_store_record_target_bytes)"
                );
            }
        } else if share == SHARE_FULL && was < SHARE_FULL {
            info!(
                disk_bytes = used,
                limit_bytes = limit,
                "the history keeps its whole share of --retention-size again"
            );
        }
        if rate.is_some() != pacing {
            pacing = rate.is_some();
            if pacing {
                warn!(
                    disk_bytes = used,
                    limit_bytes = limit,
                    "the data folder is close to --retention-size: new events are paced until \
                     sled's log catches up (hookflow_store_ingest_pace_bytes); give \
                     --retention-size more room for bursts"
                );
            } else {
                info!(
                    disk_bytes = used,
                    limit_bytes = limit,
                    "new events are no longer paced"
                );
            }
        }
        drop(p);
        // Far below the zone (as far as it is wide), less often: the
        // folder grows by a few MB a second at most.
        let (start, end) = zone(limit);
        let far = limit == 0 || used.saturating_add(end - start) < start;
        std::thread::sleep(if far {
            MEASURE_FAR_EVERY
        } else {
            MEASURE_EVERY
        });
    }
}

/// Whether the data folder was past `--retention-size` when last
/// measured: the operator is told once when it passes, and once when it
/// is back within.
#[derive(Default)]
struct OverLimit(bool);

impl OverLimit {
    /// Compare the folder's size on disk with the limit; whether this pass
    /// changed the state (and so logged).
    fn check(&mut self, disk: u64, limit: u64) -> bool {
        let over = disk > limit;
        if over == self.0 {
            return false;
        }
        self.0 = over;
        if over {
            warn!(
                disk_bytes = disk,
                limit_bytes = limit,
                "the data folder takes more than --retention-size on disk \
                 (hookflow_store_disk_bytes): the history is pruned to its share, and new events \
                 are paced at the floor until sled's log has caught up. If what fills the folder \
                 is what retention never prunes (workflow state, runs not finished), give \
                 --retention-size more room"
            );
        } else {
            info!(
                disk_bytes = disk,
                limit_bytes = limit,
                "the data folder is within --retention-size again"
            );
        }
        true
    }
}

/// Bytes `dir` and everything below it take on disk (allocated blocks, as
/// `du` counts them); what cannot be read counts as nothing.
pub(crate) fn folder_bytes(dir: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .filter_map(|e| Some((e.path(), e.metadata().ok()?)))
        .map(|(path, meta)| {
            if meta.is_dir() {
                folder_bytes(&path)
            } else {
                meta.blocks() * 512
            }
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1024 * 1024;

    #[test]
    fn pacing_starts_in_the_top_of_the_limit_and_slows_to_the_floor() {
        let limit = 16 * MIB;
        // The zone: 11 to 14 MiB (3 MiB wide, as a tenth is less).
        assert_eq!(rate_for(0, 0), None, "no limit: no pacing");
        assert_eq!(rate_for(10 * MIB, limit), None);
        assert_eq!(rate_for(11 * MIB - 1, limit), None);
        assert_eq!(rate_for(11 * MIB, limit), Some(RATE_MAX));
        assert_eq!(rate_for(14 * MIB, limit), Some(RATE_MIN));
        assert_eq!(rate_for(40 * MIB, limit), Some(RATE_MIN), "past the limit");
        let mid = rate_for(12 * MIB + 512 * 1024, limit).expect("paced");
        // Halfway on a log scale: the geometric mean.
        let mean = ((RATE_MAX * RATE_MIN) as f64).sqrt() as u64;
        assert!(mid.abs_diff(mean) <= mean / 100, "{mid} against {mean}");
        let mut last = u64::MAX;
        for used in (11 * MIB..=14 * MIB).step_by(64 * 1024) {
            let r = rate_for(used, limit).expect("paced");
            assert!(r <= last, "the rate never rises as the folder grows");
            last = r;
        }
        let limit = 1024 * MIB;
        // A large limit: the zone is its top tenth, ending a 64th below it.
        assert_eq!(rate_for(900 * MIB, limit), None);
        assert!(rate_for(910 * MIB, limit).is_some_and(|r| r > RATE_MIN));
        assert_eq!(rate_for(1008 * MIB, limit), Some(RATE_MIN));
    }

    #[test]
    fn the_pace_rises_while_the_folder_holds_and_falls_back_when_it_grows() {
        let limit = 64 * MIB;
        let used = 58 * MIB; // in the zone (55.6 to 62 MiB)
        let base = rate_for(used, limit).expect("paced");
        let t0 = Instant::now();
        let mut pacer = Pacer::new(t0);
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        assert_eq!(pacer.rate(used, limit, at(0)), Some(base));
        // Steady for a second: raised step by step, up to the top.
        let mut last = base;
        for ms in (100..=1_000).step_by(100) {
            let r = pacer.rate(used, limit, at(ms)).expect("paced");
            assert!(
                r > last || r == RATE_MAX,
                "raised at {ms} ms: {r} after {last}"
            );
            last = r;
        }
        assert!(last > base * 4, "{last} against {base}");
        for ms in (1_100..=3_000).step_by(100) {
            last = pacer.rate(used, limit, at(ms)).expect("paced");
        }
        assert_eq!(last, RATE_MAX, "never beyond the top");
        // It grows: back to the size's own pace at the next step.
        let grown = used + MIB;
        pacer.rate(grown, limit, at(3_050));
        let r = pacer.rate(grown, limit, at(3_100)).expect("paced");
        assert_eq!(r, rate_for(grown, limit).expect("paced"));
        // Past the end of the zone: the floor, whatever came before.
        for ms in (3_200..=4_000).step_by(100) {
            pacer.rate(grown, limit, at(ms));
        }
        assert_eq!(pacer.rate(63 * MIB, limit, at(4_100)), Some(RATE_MIN));
        // Below the zone: no pacing.
        assert_eq!(pacer.rate(10 * MIB, limit, at(4_200)), None);
    }

    #[test]
    fn a_folder_held_past_the_zone_cuts_the_history_share_until_it_shrinks() {
        let limit = 64 * MIB;
        let (start, end) = zone(limit);
        let t0 = Instant::now();
        let at = |s: u64| t0 + SQUEEZE_EVERY * s as u32;
        let mut squeeze = Squeeze::new(t0);
        // Within the first step: nothing changes, wherever the folder is.
        assert_eq!(squeeze.share(end + MIB, limit, t0), SHARE_FULL);
        // Held past the end of the zone: halved each step, to the least.
        let mut shares = Vec::new();
        for step in 1..=6 {
            shares.push(squeeze.share(end + MIB, limit, at(step)));
        }
        assert_eq!(shares, [512, 256, 128, 64, 64, 64], "halved to a 16th");
        // Shrinking by a segment or more a step: held where it is.
        let mut used = end + MIB;
        for step in 7..=9 {
            used -= SHRINK_MIN;
            assert_eq!(squeeze.share(used, limit, at(step)), SHARE_MIN);
        }
        // Growing again past the end: cut (already at the least).
        assert_eq!(squeeze.share(used + MIB, limit, at(10)), SHARE_MIN);
        // Within the zone: held.
        assert_eq!(squeeze.share(start + MIB, limit, at(11)), SHARE_MIN);
        // Below it: grown back by half a step, to the whole, never past.
        let mut last = SHARE_MIN;
        let mut step = 12;
        while last < SHARE_FULL {
            let share = squeeze.share(start - MIB, limit, at(step));
            assert!(share > last, "grows below the zone: {share} after {last}");
            last = share;
            step += 1;
        }
        assert_eq!(last, SHARE_FULL);
        assert!(step - 12 <= 7, "back to the whole in {} steps", step - 12);
        assert_eq!(squeeze.share(0, limit, at(step + 1)), SHARE_FULL);
        // Steps are SQUEEZE_EVERY apart: measures between change nothing.
        assert_eq!(
            squeeze.share(end + MIB, limit, at(step + 1) + SQUEEZE_EVERY / 2),
            SHARE_FULL
        );
        // No limit: nothing to keep within.
        let mut none = Squeeze::new(t0);
        assert_eq!(none.share(u64::MAX, 0, at(5)), SHARE_FULL);
    }

    #[test]
    fn the_records_share_scales_the_budget() {
        let pace = DiskPace::default();
        assert_eq!(pace.records_share(8 * MIB), 8 * MIB, "whole by default");
        pace.share.store(SHARE_MIN, Ordering::Relaxed);
        assert_eq!(pace.records_share(8 * MIB), MIB / 2);
        assert_eq!(pace.records_share(u64::MAX), u64::MAX / 16);
    }

    #[test]
    fn passing_the_retention_size_is_said_once_each_way() {
        let mut over = OverLimit::default();
        assert!(!over.check(10, 16), "within from the start: nothing to say");
        assert!(over.check(17, 16), "past the limit: said");
        assert!(!over.check(20, 16), "still past: not said again");
        assert!(over.check(16, 16), "back at the limit is within: said");
        assert!(!over.check(12, 16), "still within: not said again");
        assert!(over.check(17, 16), "past again: said again");
    }

    #[test]
    fn slots_follow_the_rate_and_refuse_beyond_the_longest_wait() {
        let pace = DiskPace::default();
        assert!(matches!(pace.slot(1_000_000), Ok(None)), "not pacing");
        pace.rate.store(1_000_000, Ordering::Relaxed);
        let first = pace.slot(1_000_000).expect("admitted").expect("a slot");
        let second = pace.slot(1_000_000).expect("admitted").expect("a slot");
        let gap = second - first;
        assert!(
            gap >= Duration::from_millis(999),
            "a second's worth of bytes takes a second: {gap:?}"
        );
        // Fill the next ten seconds: the next event is refused, and takes
        // no slot.
        pace.slot(10_000_000).expect("admitted");
        match pace.slot(1) {
            Err(TooFar(wait)) => assert!(wait > MAX_WAIT, "{wait:?}"),
            other => panic!("beyond the longest wait: {other:?}"),
        }
        let after = *pace.next.lock().expect("lock");
        assert!(pace.slot(1).is_err(), "still refused");
        assert_eq!(*pace.next.lock().expect("lock"), after, "no slot taken");
    }
}
