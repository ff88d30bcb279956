//! A [`Run`] as rows and back: its head (every field but the steps), its
//! plan (what a step not reached yet is: its id, kind and, for a `uses`
//! step, its action, so such steps need no row), one row per step record
//! that is more than its plan says (it left `pending`, or it is pending
//! with a recorded branch or items: a replay from a failed loop or switch),
//! one row per attempt.
//!
//! [`Written`] remembers what the store holds of a run its executor is
//! saving, so that a save writes only the rows that changed: the head, the
//! step records that differ, the attempts that are new.

use crate::record::{Attempt, EventId, Run, RunId, RunStatus, StepKind, StepRecord, Timestamp};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::borrow::Cow;

/// The head of `run`, as JSON text: every field of [`Run`] but the steps
/// (read back as a `Run` whose steps are empty).
pub fn head_json(run: &Run) -> String {
    #[derive(Serialize)]
    struct HeadRef<'a> {
        id: &'a RunId,
        workflow: &'a str,
        workflow_version: &'a str,
        event_id: &'a EventId,
        status: RunStatus,
        attempt: u32,
        created_at: Timestamp,
        started_at: Option<Timestamp>,
        finished_at: Option<Timestamp>,
        duration_ms: Option<u64>,
        next_attempt_at: Option<Timestamp>,
        replay_of: Option<&'a RunId>,
        replays: &'a [RunId],
        error: Option<&'a str>,
        summary: &'a str,
    }
    to_json(&HeadRef {
        id: &run.id,
        workflow: &run.workflow,
        workflow_version: &run.workflow_version,
        event_id: &run.event_id,
        status: run.status,
        attempt: run.attempt,
        created_at: run.created_at,
        started_at: run.started_at,
        finished_at: run.finished_at,
        duration_ms: run.duration_ms,
        next_attempt_at: run.next_attempt_at,
        replay_of: run.replay_of.as_ref(),
        replays: &run.replays,
        error: run.error.as_deref(),
        summary: &run.summary,
    })
}

/// One step of a plan: `[id, kind]`, or `[id, kind, uses]` for a `uses`
/// step (its record names the connector action before it runs too).
#[derive(Serialize, Deserialize)]
#[serde(untagged)]
enum Planned {
    Uses(String, StepKind, String),
    Plain(String, StepKind),
}

impl Planned {
    fn of(step: &StepRecord) -> Planned {
        match &step.uses {
            Some(uses) => Planned::Uses(step.id.clone(), step.kind, uses.clone()),
            None => Planned::Plain(step.id.clone(), step.kind),
        }
    }

    /// The record of the step before it runs.
    fn pending(&self) -> StepRecord {
        match self {
            Planned::Uses(id, kind, uses) => StepRecord::pending(id, *kind).with_uses(Some(uses)),
            Planned::Plain(id, kind) => StepRecord::pending(id, *kind),
        }
    }
}

/// The plan of `run`: what each of its steps is before it runs, in order.
pub fn plan_json(run: &Run) -> String {
    let plan: Vec<Planned> = run.steps.iter().map(Planned::of).collect();
    to_json(&plan)
}

/// The record holds nothing its plan does not say: a step not reached.
fn as_planned(step: &StepRecord) -> bool {
    step.status == crate::record::StepStatus::Pending
        && step_json(step) == step_json(&Planned::of(step).pending())
}

/// A step record as its row keeps it: without its attempts (they have
/// rows of their own).
pub fn step_json(step: &StepRecord) -> String {
    #[derive(Serialize)]
    struct StepRef<'a> {
        id: &'a str,
        kind: StepKind,
        status: crate::record::StepStatus,
        started_at: Option<Timestamp>,
        duration_ms: Option<u64>,
        output: &'a Option<serde_json::Value>,
        error: &'a Option<String>,
        logs: &'a [String],
        attempts: [(); 0],
        // As `StepRecord` writes them: only where they apply. A branch's
        // and an item's steps keep their attempts inside.
        #[serde(skip_serializing_if = "Option::is_none")]
        uses: &'a Option<String>,
        #[serde(skip_serializing_if = "Option::is_none")]
        branch: &'a Option<crate::record::Branch>,
        #[serde(skip_serializing_if = "Option::is_none")]
        steps: &'a Option<Vec<StepRecord>>,
        #[serde(skip_serializing_if = "Option::is_none")]
        items: &'a Option<Vec<crate::record::ItemRecord>>,
    }
    to_json(&StepRef {
        id: &step.id,
        kind: step.kind,
        status: step.status,
        started_at: step.started_at,
        duration_ms: step.duration_ms,
        output: &step.output,
        error: &step.error,
        logs: &step.logs,
        attempts: [],
        uses: &step.uses,
        branch: &step.branch,
        steps: &step.steps,
        items: &step.items,
    })
}

/// Text a sender, a script or an API caller chose (a dedupe key, a state
/// key, an id or filter looked up) as a PostgreSQL text column can hold
/// it: text there cannot hold NUL, which any JSON string can. Text without
/// NUL that does not start with U+0001 is kept as it is; any other is
/// written as U+0001, then the text with U+0001 as U+0001 U+0002 and NUL as
/// U+0001 U+0003. One to one: two texts are equal in the database only if
/// they were equal.
pub fn text(s: &str) -> Cow<'_, str> {
    if !s.contains('\0') && !s.starts_with('\u{1}') {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 4);
    out.push('\u{1}');
    for c in s.chars() {
        match c {
            '\u{1}' => out.push_str("\u{1}\u{2}"),
            '\0' => out.push_str("\u{1}\u{3}"),
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

/// The longest key an indexed column keeps as it is (with a workflow's
/// name beside it, well under the 2,704 bytes PostgreSQL allows an index
/// entry).
const KEY_MAX: usize = 2048;

/// A dedupe or state key as its indexed column holds it: as [`text`] has
/// it, or, when that is longer than [`KEY_MAX`] bytes, U+0001 `#` and the
/// key's SHA-256 in hex (which no output of [`text`] is: one that starts
/// with U+0001 has a NUL or a U+0001 escaped in it). Two keys share an
/// entry only if they are equal, or if SHA-256 collides.
pub fn key(s: &str) -> Cow<'_, str> {
    if s.len() <= KEY_MAX {
        let t = text(s);
        if t.len() <= KEY_MAX {
            return t;
        }
    }
    Cow::Owned(format!(
        "\u{1}#{}",
        hex::encode(Sha256::digest(s.as_bytes()))
    ))
}

pub fn to_json<T: Serialize>(v: &T) -> String {
    serde_json::to_string(v).expect("records are plain data and always serialize")
}

/// Put a run together from its rows. `steps` and `attempts` are this
/// run's rows (in any order).
pub fn assemble(
    head: &str,
    plan: &str,
    steps: Vec<(i32, String)>,
    mut attempts: Vec<(i32, i32, String)>,
) -> Result<Run, String> {
    let mut run: Run = serde_json::from_str(head).map_err(|e| format!("run head: {e}"))?;
    let plan: Vec<Planned> = serde_json::from_str(plan).map_err(|e| format!("run plan: {e}"))?;
    let mut records: Vec<StepRecord> = plan.iter().map(Planned::pending).collect();
    for (idx, text) in steps {
        let rec: StepRecord =
            serde_json::from_str(&text).map_err(|e| format!("step {idx}: {e}"))?;
        match usize::try_from(idx).ok().and_then(|i| records.get_mut(i)) {
            Some(slot) => *slot = rec,
            None => return Err(format!("step row {idx} is beyond the plan")),
        }
    }
    attempts.sort_by_key(|(s, n, _)| (*s, *n));
    for (idx, _, text) in attempts {
        let a: Attempt =
            serde_json::from_str(&text).map_err(|e| format!("attempt of step {idx}: {e}"))?;
        if let Some(slot) = usize::try_from(idx).ok().and_then(|i| records.get_mut(i)) {
            slot.attempts.push(a);
        }
    }
    run.steps = records;
    Ok(run)
}

/// What the store holds of one run, as far as its executor knows.
#[derive(Debug, Default, Clone)]
pub struct Written {
    /// Each step record as last written (without attempts), `None` while
    /// it has no row.
    steps: Vec<Option<String>>,
    /// Attempts written, per step.
    attempts: Vec<usize>,
    plan: Option<String>,
}

/// The rows one save writes.
#[derive(Debug, Default)]
pub struct Delta {
    pub head: String,
    /// `Some` when the plan changed (a step was added by another version).
    pub plan: Option<String>,
    pub step_idx: Vec<i32>,
    pub step_rows: Vec<String>,
    pub attempt_step: Vec<i32>,
    pub attempt_n: Vec<i32>,
    pub attempt_rows: Vec<String>,
    /// Bytes this save adds to the run's history.
    pub bytes: i32,
}

impl Written {
    /// Everything `run` holds is in the store (it was read from there, or
    /// written whole).
    pub fn all_of(run: &Run) -> Written {
        let mut w = Written::default();
        let _ = w.delta(run);
        w
    }

    /// A fresh run as ingest stores it: a head and a plan, no step rows.
    pub fn fresh(run: &Run) -> Written {
        Written {
            steps: vec![None; run.steps.len()],
            attempts: vec![0; run.steps.len()],
            plan: Some(plan_json(run)),
        }
    }

    /// The rows that bring the store from what it holds to `run`; what it
    /// then holds is remembered (call [`Written::forget`] with the old
    /// state if the write fails).
    pub fn delta(&mut self, run: &Run) -> Delta {
        let mut d = Delta {
            head: head_json(run),
            ..Delta::default()
        };
        let plan = plan_json(run);
        if self.plan.as_ref() != Some(&plan) {
            d.bytes += plan.len() as i32;
            d.plan = Some(plan.clone());
            self.plan = Some(plan);
        }
        self.steps
            .resize(run.steps.len().max(self.steps.len()), None);
        self.attempts
            .resize(run.steps.len().max(self.attempts.len()), 0);
        for (i, step) in run.steps.iter().enumerate() {
            if self.steps[i].is_some() || !as_planned(step) {
                let row = step_json(step);
                if self.steps[i].as_ref() != Some(&row) {
                    d.bytes = d.bytes.saturating_add(row.len() as i32);
                    d.step_idx.push(i as i32);
                    d.step_rows.push(row.clone());
                    self.steps[i] = Some(row);
                }
            }
            for (n, a) in step.attempts.iter().enumerate().skip(self.attempts[i]) {
                let row = to_json(a);
                d.bytes = d.bytes.saturating_add(row.len() as i32);
                d.attempt_step.push(i as i32);
                d.attempt_n.push(n as i32);
                d.attempt_rows.push(row);
            }
            self.attempts[i] = self.attempts[i].max(step.attempts.len());
        }
        d.bytes = d.bytes.saturating_add(d.head.len() as i32);
        d
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::StepStatus;

    #[test]
    fn text_holds_no_nul_keeps_plain_text_and_tells_every_text_apart() {
        assert!(matches!(text("evt_1 é"), Cow::Borrowed("evt_1 é")));
        let tricky = [
            "",
            "\0",
            "\0\0",
            "a\0",
            "\u{1}",
            "\u{1}\u{1}",
            "\u{1}\u{2}",
            "\u{1}\u{3}",
            "\u{1}\u{1}\u{3}",
            "\u{1}\u{1}\u{2}\u{3}",
            "\u{2}",
            "\u{3}",
            "a\u{1}",
            "a\u{1}\u{3}",
            "\u{1}a\0",
            "\u{1}a\u{1}\u{3}",
        ];
        let mut seen = std::collections::HashMap::new();
        for t in tricky {
            let stored = text(t).into_owned();
            assert!(!stored.contains('\0'), "{t:?} -> {stored:?}");
            if let Some(other) = seen.insert(stored.clone(), t) {
                panic!("{t:?} and {other:?} are both stored as {stored:?}");
            }
        }
        // Every string of up to three of the characters that matter.
        let alphabet = ['\0', '\u{1}', '\u{2}', '\u{3}', 'a'];
        let mut all = vec![String::new()];
        for _ in 0..3 {
            let longer: Vec<String> = all
                .iter()
                .flat_map(|s| alphabet.iter().map(move |c| format!("{s}{c}")))
                .collect();
            all.extend(longer);
        }
        all.sort();
        all.dedup();
        let stored: std::collections::HashSet<String> =
            all.iter().map(|s| text(s).into_owned()).collect();
        assert_eq!(stored.len(), all.len(), "one to one");
        assert!(stored.iter().all(|s| !s.contains('\0')));
    }

    #[test]
    fn a_long_key_is_kept_as_its_hash_and_told_apart() {
        let short = "k".repeat(KEY_MAX);
        assert!(matches!(key(&short), Cow::Borrowed(_)));
        let long = "k".repeat(KEY_MAX + 1);
        let other = format!("{}j", "k".repeat(KEY_MAX));
        let (a, b) = (key(&long), key(&other));
        assert_ne!(a, b);
        assert_eq!(a.len(), 2 + 64);
        assert!(a.starts_with("\u{1}#"));
        // A short key that escapes to more than the limit is hashed too.
        let nul = "\0".repeat(KEY_MAX / 2 + 1);
        assert!(key(&nul).starts_with("\u{1}#"));
        // No short key is stored as a hash looks.
        let looks_like = format!("\u{1}#{}", &a[2..]);
        assert_ne!(key(&looks_like), a);
        let hex_only = format!("#{}", &a[2..]);
        assert_ne!(key(&hex_only), a);
    }

    fn run() -> Run {
        serde_json::from_value(serde_json::json!({
            "id": RunId::generate(), "workflow": "w", "workflow_version": "v",
            "event_id": EventId::generate(), "status": "queued", "attempt": 0,
            "created_at": Timestamp::now(), "started_at": null, "finished_at": null,
            "duration_ms": null, "next_attempt_at": null, "replay_of": null,
            "replays": [], "steps": [
                {"id": "a", "kind": "transform", "status": "pending", "started_at": null,
                 "duration_ms": null, "output": null, "error": null, "logs": [], "attempts": []},
                {"id": "b", "kind": "http", "status": "pending", "started_at": null,
                 "duration_ms": null, "output": null, "error": null, "logs": [], "attempts": []}
            ]
        }))
        .expect("a run")
    }

    fn attempt(n: u32) -> Attempt {
        serde_json::from_value(serde_json::json!({
            "n": n, "started_at": Timestamp::now(), "duration_ms": 3,
            "request": {"method": "POST", "url": "http://x", "headers": {}, "body": {"k": "\u{0}"}},
            "response": null, "error": "HTTP 503"
        }))
        .expect("an attempt")
    }

    #[test]
    fn a_save_writes_only_what_changed_and_assembles_back() {
        let mut r = run();
        let mut w = Written::fresh(&r);
        let d = w.delta(&r);
        assert!(d.step_rows.is_empty() && d.attempt_rows.is_empty() && d.plan.is_none());

        r.steps[0].status = StepStatus::Succeeded;
        r.steps[0].output = Some(serde_json::json!({"n": 1}));
        r.steps[1].status = StepStatus::Retrying;
        r.steps[1].attempts.push(attempt(1));
        let d = w.delta(&r);
        assert_eq!(d.step_idx, vec![0, 1]);
        assert_eq!(
            (d.attempt_step.clone(), d.attempt_n.clone()),
            (vec![1], vec![0])
        );

        r.steps[1].status = StepStatus::Succeeded;
        r.steps[1].attempts.push(attempt(2));
        let d = w.delta(&r);
        assert_eq!(d.step_idx, vec![1], "the first step did not change");
        assert_eq!(d.attempt_n, vec![1], "only the new attempt");

        // What the rows hold puts the run back together.
        let mut all = Written::fresh(&run());
        let full = all.delta(&r);
        let steps = full.step_idx.iter().copied().zip(full.step_rows).collect();
        let attempts = full
            .attempt_step
            .iter()
            .zip(&full.attempt_n)
            .zip(full.attempt_rows)
            .map(|((s, n), t)| (*s, *n, t))
            .collect();
        let back = assemble(&full.head, &plan_json(&r), steps, attempts).expect("assembles");
        assert_eq!(
            serde_json::to_value(&back).expect("json"),
            serde_json::to_value(&r).expect("json")
        );
    }

    /// The rows of a run as one write stores them, put back together.
    fn round_trip(r: &Run, mut w: Written) -> (Delta, Run) {
        let d = w.delta(r);
        let steps = d
            .step_idx
            .iter()
            .copied()
            .zip(d.step_rows.clone())
            .collect();
        let back = assemble(&d.head, &plan_json(r), steps, Vec::new()).expect("assembles");
        (d, back)
    }

    #[test]
    fn a_step_not_reached_keeps_its_action_and_a_replayed_loop_its_items() {
        let mut r = run();
        r.steps[1] = StepRecord::pending("b", StepKind::Http).with_uses(Some("slack.post_message"));
        let mut each = StepRecord::pending("c", StepKind::ForEach);
        let mut done = crate::record::ItemRecord {
            index: 0,
            status: StepStatus::Succeeded,
            steps: vec![StepRecord::pending("push", StepKind::Http)],
        };
        done.steps[0].status = StepStatus::Succeeded;
        each.items = Some(vec![
            done,
            crate::record::ItemRecord {
                index: 1,
                status: StepStatus::Pending,
                steps: vec![StepRecord::pending("push", StepKind::Http)],
            },
        ]);
        r.steps.push(each);

        // A fresh run: the plan says what the `uses` step is; the loop
        // (pending, as a replay from its failed item leaves it) needs a row.
        let (d, back) = round_trip(&r, Written::fresh(&r));
        assert_eq!(d.step_idx, vec![2]);
        assert_eq!(back.steps[1].uses.as_deref(), Some("slack.post_message"));
        assert_eq!(
            serde_json::to_value(&back).expect("json"),
            serde_json::to_value(&r).expect("json")
        );
        // A replay is written whole.
        let (_, back) = round_trip(&r, Written::default());
        assert_eq!(
            serde_json::to_value(&back).expect("json"),
            serde_json::to_value(&r).expect("json")
        );
        // Plans stored before `uses` was kept still read.
        let old = assemble(
            &d.head,
            r#"[["a","transform"],["b","http"]]"#,
            vec![],
            vec![],
        )
        .expect("an older plan reads");
        assert_eq!(old.steps[1].kind, StepKind::Http);
    }
}
