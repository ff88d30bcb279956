//! The stored data: events, runs, step records and outbound attempts, their
//! ids and their statuses. Plain types every layer above may use; the JSON
//! field names are the contract of SPEC §8 ("Records").

pub mod body;
pub mod json;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;
use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Milliseconds since the Unix epoch, shown as RFC 3339 with milliseconds
/// (`2026-11-27T10:00:00.000Z`) in every record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(pub u64);

impl Timestamp {
    pub fn now() -> Self {
        let ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0);
        Timestamp(ms)
    }

    pub fn plus(self, d: Duration) -> Self {
        Timestamp(self.0.saturating_add(d.as_millis() as u64))
    }

    pub fn millis_since(self, earlier: Timestamp) -> u64 {
        self.0.saturating_sub(earlier.0)
    }

    pub fn to_rfc3339(self) -> String {
        self.rfc3339().to_string()
    }

    fn rfc3339(self) -> humantime::Rfc3339Timestamp {
        humantime::format_rfc3339_millis(UNIX_EPOCH + Duration::from_millis(self.0))
    }

    pub fn parse(s: &str) -> Option<Self> {
        let t = humantime::parse_rfc3339_weak(s.trim_end_matches('Z')).ok()?;
        Some(Timestamp(
            t.duration_since(UNIX_EPOCH).ok()?.as_millis() as u64
        ))
    }
}

impl Serialize for Timestamp {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        // Formatted straight into the output, without a String per stamp.
        s.collect_str(&self.rfc3339())
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        // Read in place when the input allows it (stored records do).
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = Timestamp;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("an RFC 3339 timestamp")
            }
            fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<Timestamp, E> {
                Timestamp::parse(s).ok_or_else(|| E::custom(format!("bad timestamp {s}")))
            }
        }
        d.deserialize_str(Visitor)
    }
}

/// 32 hex digits: milliseconds since the epoch and a sequence number (so
/// ids made in this process sort in creation order, even within one
/// millisecond), then 64 random bits (so ids from different processes do
/// not collide). No system call: ids are made twice per event.
fn time_ordered_hex() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static LAST: AtomicU64 = AtomicU64::new(0);
    let now = Timestamp::now().0 << 16;
    let mut prev = LAST.load(Ordering::Relaxed);
    let stamp = loop {
        let next = now.max(prev + 1);
        match LAST.compare_exchange_weak(prev, next, Ordering::Relaxed, Ordering::Relaxed) {
            Ok(_) => break next,
            Err(actual) => prev = actual,
        }
    };
    format!("{stamp:016x}{:016x}", fastrand::u64(..))
}

macro_rules! id_type {
    ($name:ident, $prefix:literal) => {
        /// A time-ordered id: its string sorts by creation time, which is
        /// what makes "newest first" a reverse scan of a sled tree.
        #[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(pub String);

        impl $name {
            pub const PREFIX: &'static str = $prefix;

            pub fn generate() -> Self {
                $name(format!("{}{}", $prefix, time_ordered_hex()))
            }

            /// An id no greater than any id generated at or after `at`.
            pub fn floor(at: Timestamp) -> Self {
                $name(format!("{}{:016x}", $prefix, at.0 << 16))
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }

            /// A generated id (the prefix and 32 lowercase hex digits) as
            /// two numbers that sort as the id does; `None` for any other id.
            pub fn packed(&self) -> Option<(u64, u64)> {
                let hex = self.0.strip_prefix($prefix).filter(|hex| {
                    hex.len() == 32
                        && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
                })?;
                let high = u64::from_str_radix(&hex[..16], 16).ok()?;
                let low = u64::from_str_radix(&hex[16..], 16).ok()?;
                Some((high, low))
            }

            /// The id [`Self::packed`] gave these numbers for.
            pub fn from_packed(high: u64, low: u64) -> Self {
                $name(format!("{}{high:016x}{low:016x}", $prefix))
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

id_type!(RunId, "run_");
id_type!(EventId, "evt_");

/// What happened to an inbound request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Accepted,
    Unmatched,
    Duplicate,
    Rejected,
}

impl Outcome {
    pub const ALL: [Outcome; 4] = [
        Outcome::Accepted,
        Outcome::Unmatched,
        Outcome::Duplicate,
        Outcome::Rejected,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Accepted => "accepted",
            Outcome::Unmatched => "unmatched",
            Outcome::Duplicate => "duplicate",
            Outcome::Rejected => "rejected",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|o| o.as_str() == s)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunStatus {
    Queued,
    Running,
    /// Waiting for a `delay` to pass.
    Waiting,
    Retrying,
    Succeeded,
    Filtered,
    Failed,
}

impl RunStatus {
    pub const ALL: [RunStatus; 7] = [
        RunStatus::Queued,
        RunStatus::Running,
        RunStatus::Waiting,
        RunStatus::Retrying,
        RunStatus::Succeeded,
        RunStatus::Filtered,
        RunStatus::Failed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            RunStatus::Queued => "queued",
            RunStatus::Running => "running",
            RunStatus::Waiting => "waiting",
            RunStatus::Retrying => "retrying",
            RunStatus::Succeeded => "succeeded",
            RunStatus::Filtered => "filtered",
            RunStatus::Failed => "failed",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|o| o.as_str() == s)
    }

    /// A finished run never changes again (a replay is a new run).
    pub fn is_final(self) -> bool {
        match self {
            RunStatus::Succeeded | RunStatus::Filtered | RunStatus::Failed => true,
            RunStatus::Queued | RunStatus::Running | RunStatus::Waiting | RunStatus::Retrying => {
                false
            }
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StepStatus {
    Pending,
    Running,
    Succeeded,
    Filtered,
    Skipped,
    Retrying,
    /// A `delay` step waiting for its time.
    Waiting,
    Failed,
}

impl StepStatus {
    /// A step in one of these states is not run again when a run resumes.
    pub fn is_done(self) -> bool {
        match self {
            StepStatus::Succeeded | StepStatus::Filtered | StepStatus::Skipped => true,
            StepStatus::Pending
            | StepStatus::Running
            | StepStatus::Retrying
            | StepStatus::Waiting
            | StepStatus::Failed => false,
        }
    }
}

impl StepStatus {
    /// An item of a `for_each` in one of these states is not run again:
    /// done, or failed for good (it fails the loop once the others end).
    pub fn is_settled(self) -> bool {
        match self {
            StepStatus::Failed => true,
            StepStatus::Succeeded
            | StepStatus::Filtered
            | StepStatus::Skipped
            | StepStatus::Pending
            | StepStatus::Running
            | StepStatus::Retrying
            | StepStatus::Waiting => self.is_done(),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            StepStatus::Pending => "pending",
            StepStatus::Running => "running",
            StepStatus::Succeeded => "succeeded",
            StepStatus::Filtered => "filtered",
            StepStatus::Skipped => "skipped",
            StepStatus::Retrying => "retrying",
            StepStatus::Waiting => "waiting",
            StepStatus::Failed => "failed",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StepKind {
    Filter,
    Transform,
    Http,
    Switch,
    ForEach,
    Delay,
    Respond,
}

impl StepKind {
    pub fn as_str(self) -> &'static str {
        match self {
            StepKind::Filter => "filter",
            StepKind::Transform => "transform",
            StepKind::Http => "http",
            StepKind::Switch => "switch",
            StepKind::ForEach => "for_each",
            StepKind::Delay => "delay",
            StepKind::Respond => "respond",
        }
    }
}

/// The branch a `switch` took: a case (by index), its `default`, or none
/// (not decided yet, or no case held and there is no default). Written
/// as the case index, `"default"` or `null` (SPEC §8).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Branch {
    Case(usize),
    Default,
    None,
}

/// How the `default` branch is written in a record.
pub const DEFAULT_BRANCH: &str = "default";

impl Serialize for Branch {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Branch::Case(i) => s.serialize_u64(*i as u64),
            Branch::Default => s.serialize_str(DEFAULT_BRANCH),
            Branch::None => s.serialize_none(),
        }
    }
}

impl<'de> Deserialize<'de> for Branch {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match Value::deserialize(d)? {
            Value::Null => Ok(Branch::None),
            Value::String(s) if s == DEFAULT_BRANCH => Ok(Branch::Default),
            Value::Number(n) => n
                .as_u64()
                .and_then(|n| usize::try_from(n).ok())
                .map(Branch::Case)
                .ok_or_else(|| serde::de::Error::custom(format!("bad branch {n}"))),
            other => Err(serde::de::Error::custom(format!("bad branch {other}"))),
        }
    }
}

/// A present `branch` field, even `null`, is a switch's branch (serde
/// would read `null` as an absent `Option`).
fn some_branch<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Branch>, D::Error> {
    Branch::deserialize(d).map(Some)
}

/// A change to a run, for live listeners (`/api/stream`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunUpdate {
    pub id: RunId,
    pub workflow: String,
    pub status: RunStatus,
    pub event_id: String,
}

impl RunUpdate {
    pub fn of(run: &Run) -> RunUpdate {
        RunUpdate {
            id: run.id.clone(),
            workflow: run.workflow.clone(),
            status: run.status,
            event_id: run.event_id.to_string(),
        }
    }
}

/// One inbound request as stored.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Event {
    pub id: EventId,
    pub received_at: Timestamp,
    pub path: String,
    pub method: String,
    pub headers: BTreeMap<String, String>,
    pub query: BTreeMap<String, String>,
    pub body: Value,
    /// Size in bytes of the body as received.
    #[serde(default)]
    pub body_size: usize,
    pub outcome: Outcome,
    pub reason: Option<String>,
    /// Names of the workflows served at this path when the event arrived.
    #[serde(default)]
    pub workflows: Vec<String>,
    pub runs: Vec<RunId>,
    #[serde(default)]
    pub source: Option<String>,
    /// The body as received, when `body` is exactly what it reads as (not
    /// redacted): the store keeps these bytes rather than writing the value
    /// out again.
    #[serde(skip)]
    pub raw_body: Option<body::RawBody>,
}

/// One execution of one workflow for one event.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Run {
    pub id: RunId,
    pub workflow: String,
    pub workflow_version: String,
    pub event_id: EventId,
    pub status: RunStatus,
    pub attempt: u32,
    pub created_at: Timestamp,
    pub started_at: Option<Timestamp>,
    pub finished_at: Option<Timestamp>,
    pub duration_ms: Option<u64>,
    pub next_attempt_at: Option<Timestamp>,
    pub replay_of: Option<RunId>,
    pub replays: Vec<RunId>,
    /// The error that ended a failed run (also on its failed step).
    #[serde(default)]
    pub error: Option<String>,
    /// One line saying what the event was (for lists).
    #[serde(default)]
    pub summary: String,
    /// Always written; read as empty when absent (a stored run head whose
    /// steps are kept apart, see `store::postgres::rows`).
    #[serde(default)]
    pub steps: Vec<StepRecord>,
}

impl Run {
    pub fn step_mut(&mut self, id: &str) -> Option<&mut StepRecord> {
        self.steps.iter_mut().find(|s| s.id == id)
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StepRecord {
    pub id: String,
    pub kind: StepKind,
    pub status: StepStatus,
    pub started_at: Option<Timestamp>,
    pub duration_ms: Option<u64>,
    pub output: Option<Value>,
    pub error: Option<String>,
    pub logs: Vec<String>,
    pub attempts: Vec<Attempt>,
    /// The connector action of a `uses` step, `connector.action` (SPEC §8).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uses: Option<String>,
    /// A `switch`: the branch it took (only a switch's record has it).
    #[serde(
        default,
        deserialize_with = "some_branch",
        skip_serializing_if = "Option::is_none"
    )]
    pub branch: Option<Branch>,
    /// A `switch`: the records of its branch's steps.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub steps: Option<Vec<StepRecord>>,
    /// A `for_each`: one record per item.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub items: Option<Vec<ItemRecord>>,
}

impl StepRecord {
    /// A step not reached yet. A `switch` has no branch yet and a
    /// `for_each` no items: they are filled in when the step starts.
    pub fn pending(id: &str, kind: StepKind) -> Self {
        let (branch, steps, items) = match kind {
            StepKind::Switch => (Some(Branch::None), Some(Vec::new()), None),
            StepKind::ForEach => (None, None, Some(Vec::new())),
            StepKind::Filter
            | StepKind::Transform
            | StepKind::Http
            | StepKind::Delay
            | StepKind::Respond => (None, None, None),
        };
        StepRecord {
            id: id.to_string(),
            kind,
            status: StepStatus::Pending,
            started_at: None,
            duration_ms: None,
            output: None,
            error: None,
            logs: Vec::new(),
            attempts: Vec::new(),
            uses: None,
            branch,
            steps,
            items,
        }
    }

    /// The record of a `uses` step names its connector action.
    pub fn with_uses(mut self, uses: Option<&str>) -> Self {
        self.uses = uses.map(str::to_string);
        self
    }

    /// The records nested in this one: a switch's branch steps, or every
    /// item's steps of a for_each.
    pub fn children(&self) -> impl Iterator<Item = &StepRecord> {
        let items = self.items.iter().flatten().flat_map(|i| &i.steps);
        self.steps.iter().flatten().chain(items)
    }
}

/// One item of a `for_each`: its index, how it ended, and its steps.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ItemRecord {
    pub index: usize,
    pub status: StepStatus,
    pub steps: Vec<StepRecord>,
}

impl ItemRecord {
    /// The item's output: the output of its last step that ran (`null`
    /// when none did).
    pub fn output(&self) -> Value {
        last_output(&self.steps)
    }
}

/// The output of the last step among `steps` that ran (succeeded, or a
/// filter that ended its list); `null` when none did.
pub fn last_output(steps: &[StepRecord]) -> Value {
    steps
        .iter()
        .rev()
        .find(|s| matches!(s.status, StepStatus::Succeeded | StepStatus::Filtered))
        .and_then(|s| s.output.clone())
        .unwrap_or(Value::Null)
}

/// One outbound HTTP attempt of an `http` step.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Attempt {
    pub n: u32,
    pub started_at: Timestamp,
    pub duration_ms: u64,
    pub request: AttemptRequest,
    pub response: Option<AttemptResponse>,
    pub error: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AttemptRequest {
    pub method: String,
    pub url: String,
    pub headers: BTreeMap<String, String>,
    pub body: Value,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body_size: Option<usize>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AttemptResponse {
    pub status: u16,
    pub headers: BTreeMap<String, String>,
    pub body: Value,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body_size: Option<usize>,
}

/// One line saying what an event is: its type, action or topic when it has
/// one (Stripe `type`, GitHub event + `action`, Shopify topic), else the
/// start of its body.
pub fn summarize(headers: &BTreeMap<String, String>, body: &Value) -> String {
    let field = |k: &str| body.get(k).and_then(Value::as_str).map(str::to_string);
    let mut parts: Vec<String> = Vec::new();
    for h in ["x-github-event", "x-shopify-topic", "x-event-type"] {
        if let Some(v) = headers.get(h) {
            parts.push(v.clone());
        }
    }
    for k in ["type", "event", "action", "name", "id"] {
        if let Some(v) = field(k) {
            parts.push(v);
        }
    }
    let text = if parts.is_empty() {
        match body {
            Value::Null => String::new(),
            Value::String(s) => s.clone(),
            other => other.to_string(),
        }
    } else {
        parts.join(" · ")
    };
    one_line(&text)
}

/// A summary as lists show it: no control characters, at most 120
/// characters (an ellipsis marks the cut).
pub fn one_line(text: &str) -> String {
    // Sized once: collected a character at a time, it grew four times.
    let mut out = String::with_capacity(text.len().min(4 * 120));
    let mut kept = text.chars().filter(|c| !c.is_control());
    out.extend(kept.by_ref().take(120));
    if kept.next().is_some() {
        out.push('…');
    }
    out
}

/// How much of an outbound request or response body a step record keeps.
pub const KEPT_BODY_BYTES: usize = 64 * 1024;

/// A body as a step record keeps it: JSON when it parses, text otherwise;
/// cut to [`KEPT_BODY_BYTES`] with the full size returned beside it.
/// `full_size` is the size of the whole body when `bytes` is only its
/// beginning (a response read up to a limit), else `bytes.len()`.
pub fn kept_body(bytes: &[u8], full_size: usize) -> (Value, Option<usize>) {
    let full_size = full_size.max(bytes.len());
    if full_size > KEPT_BODY_BYTES {
        let head = &bytes[..KEPT_BODY_BYTES.min(bytes.len())];
        // Cut at a character boundary so a multi-byte letter is not mangled.
        let valid = match std::str::from_utf8(head) {
            Ok(_) => head.len(),
            Err(e) => e.valid_up_to().max(head.len().saturating_sub(3)),
        };
        let text = String::from_utf8_lossy(&head[..valid]).into_owned();
        return (Value::String(text), Some(full_size));
    }
    if bytes.is_empty() {
        return (Value::Null, None);
    }
    match serde_json::from_slice::<Value>(bytes) {
        Ok(v) => (v, None),
        Err(_) => (
            Value::String(String::from_utf8_lossy(bytes).into_owned()),
            None,
        ),
    }
}

/// What a redacted secret is replaced by (see [`crate::secret`]).
pub use crate::secret::REDACTED;

#[cfg(test)]
mod tests {
    use super::*;

    /// A summary keeps 120 characters (not bytes) and drops control
    /// characters; an ellipsis marks a cut.
    #[test]
    fn a_summary_line_is_cut_at_120_characters() {
        let exact = "é".repeat(120);
        assert_eq!(one_line(&exact), exact, "120 characters are kept whole");
        let longer = "é".repeat(121);
        assert_eq!(one_line(&longer), format!("{}…", "é".repeat(120)));
        assert_eq!(one_line("a\nb\tc\u{7f}d"), "abcd");
        assert_eq!(one_line(""), "");
        // Control characters are dropped before counting: 120 kept
        // characters among newlines are whole, with no ellipsis.
        let lines = format!("{}\n{}\r\n", "x".repeat(60), "y".repeat(60));
        assert_eq!(
            one_line(&lines),
            format!("{}{}", "x".repeat(60), "y".repeat(60))
        );
        let over = format!("{lines}z\n");
        assert_eq!(
            one_line(&over),
            format!("{}{}…", "x".repeat(60), "y".repeat(60))
        );
    }

    #[test]
    fn ids_sort_by_creation() {
        let ids: Vec<RunId> = (0..1000).map(|_| RunId::generate()).collect();
        assert!(
            ids.windows(2).all(|w| w[0] < w[1]),
            "made in order, sorted in order"
        );
        assert!(ids[0].as_str().starts_with("run_") && ids[0].as_str().len() == 36);
    }

    #[test]
    fn timestamps_round_trip() {
        let t = Timestamp(1_795_000_000_123);
        let s = t.to_rfc3339();
        assert!(s.ends_with(".123Z"), "{s}");
        assert_eq!(Timestamp::parse(&s), Some(t));
        // Through serde, from bytes (read in place) and from a Value.
        let json = serde_json::to_vec(&t).expect("serializes");
        assert_eq!(json, format!("\"{s}\"").into_bytes());
        assert_eq!(serde_json::from_slice::<Timestamp>(&json).ok(), Some(t));
        let value = serde_json::Value::String(s);
        assert_eq!(serde_json::from_value::<Timestamp>(value).ok(), Some(t));
        let bad = serde_json::from_slice::<Timestamp>(b"\"yesterday\"");
        assert!(bad.is_err_and(|e| e.to_string().contains("bad timestamp yesterday")));
    }

    #[test]
    fn only_flow_records_carry_their_nested_fields() {
        let http = serde_json::to_value(StepRecord::pending("a", StepKind::Http)).expect("json");
        for key in ["branch", "steps", "items"] {
            assert!(http.get(key).is_none(), "{http}");
        }
        let mut switch = StepRecord::pending("s", StepKind::Switch);
        let json = serde_json::to_value(&switch).expect("json");
        assert_eq!(json["branch"], Value::Null);
        assert_eq!(json["steps"], serde_json::json!([]));
        for (branch, written) in [
            (Branch::None, Value::Null),
            (Branch::Default, Value::from("default")),
            (Branch::Case(2), Value::from(2)),
        ] {
            switch.branch = Some(branch);
            let json = serde_json::to_value(&switch).expect("json");
            assert_eq!(json["branch"], written);
            let back: StepRecord = serde_json::from_value(json).expect("reads back");
            assert_eq!(back.branch, Some(branch), "a null branch stays a switch's");
        }
        let each = serde_json::to_value(StepRecord::pending("e", StepKind::ForEach)).expect("json");
        assert_eq!(each["items"], serde_json::json!([]));
        assert_eq!(each["kind"], "for_each");
        // A record stored before flow control reads as it was.
        let old = r#"{"id":"a","kind":"http","status":"pending","started_at":null,"duration_ms":null,"output":null,"error":null,"logs":[],"attempts":[]}"#;
        let back: StepRecord = serde_json::from_str(old).expect("reads");
        assert!(back.branch.is_none() && back.steps.is_none() && back.items.is_none());
        assert_eq!(serde_json::to_string(&back).expect("json"), old);
    }

    #[test]
    fn large_bodies_are_cut_with_size() {
        let big = vec![b'a'; KEPT_BODY_BYTES + 10];
        let (v, size) = kept_body(&big, big.len());
        assert_eq!(size, Some(KEPT_BODY_BYTES + 10));
        assert_eq!(v.as_str().map(str::len), Some(KEPT_BODY_BYTES));
        // Only the beginning was read: the size is the whole body's.
        let (v, size) = kept_body(&big, 9_000_000);
        assert_eq!(size, Some(9_000_000));
        assert_eq!(v.as_str().map(str::len), Some(KEPT_BODY_BYTES));
    }
}
