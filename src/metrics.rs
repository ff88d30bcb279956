//! Counters and histograms for `GET /metrics` (Prometheus text format):
//! events by workflow and outcome, finished runs by workflow and status,
//! step durations by workflow and kind, outbound attempts by status class;
//! and, read from the store, the queue: its depth, the runs waiting for a
//! retry or a delay, and those waiting for a delay.
//! Plain maps behind one std `Mutex`: every update is a few map operations
//! and never awaits, so an async lock would only add cost.

use crate::record::{Event, Outcome, Run, StepKind};
use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;

const BUCKETS: [f64; 12] = [
    0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

#[derive(Default, Clone)]
struct Histogram {
    counts: [u64; BUCKETS.len()],
    sum: f64,
    count: u64,
}

/// Values by workflow, then by a fixed label.
type ByWorkflow<V> = BTreeMap<String, BTreeMap<&'static str, V>>;

#[derive(Default)]
struct Inner {
    events: ByWorkflow<u64>,
    runs: ByWorkflow<u64>,
    attempts: ByWorkflow<u64>,
    steps: ByWorkflow<Histogram>,
}

/// The value for `workflow` and `label`; the workflow's name is copied only
/// the first time it is seen (updates happen several times per run).
fn slot<'m, V: Default>(
    map: &'m mut ByWorkflow<V>,
    workflow: &str,
    label: &'static str,
) -> &'m mut V {
    if !map.contains_key(workflow) {
        map.insert(workflow.to_string(), BTreeMap::new());
    }
    map.get_mut(workflow)
        .expect("inserted just above")
        .entry(label)
        .or_default()
}

/// Every (workflow, label, value), in order.
fn flat<V>(map: &ByWorkflow<V>) -> impl Iterator<Item = (&String, &&'static str, &V)> {
    map.iter()
        .flat_map(|(w, by)| by.iter().map(move |(l, v)| (w, l, v)))
}

#[derive(Default)]
pub struct Metrics {
    inner: Mutex<Inner>,
}

fn kind_name(k: StepKind) -> &'static str {
    k.as_str()
}

/// `2xx`, `4xx`… for a status; `error` when no answer came.
pub fn status_class(status: Option<u16>) -> &'static str {
    match status {
        Some(100..=199) => "1xx",
        Some(200..=299) => "2xx",
        Some(300..=399) => "3xx",
        Some(400..=499) => "4xx",
        Some(500..=599) => "5xx",
        Some(_) | None => "error",
    }
}

impl Metrics {
    fn with(&self, f: impl FnOnce(&mut Inner)) {
        if let Ok(mut inner) = self.inner.lock() {
            f(&mut inner);
        }
    }

    pub fn event(&self, e: &Event) {
        self.event_outcome(&e.workflows, e.outcome);
    }

    /// An event served by `workflows` ended with `outcome`.
    pub fn event_outcome(&self, workflows: &[String], outcome: Outcome) {
        self.with(|m| {
            if workflows.is_empty() {
                *slot(&mut m.events, "", outcome.as_str()) += 1;
            }
            for w in workflows {
                *slot(&mut m.events, w, outcome.as_str()) += 1;
            }
        });
    }

    pub fn run_finished(&self, r: &Run) {
        self.with(|m| *slot(&mut m.runs, &r.workflow, r.status.as_str()) += 1);
    }

    pub fn step(&self, workflow: &str, kind: StepKind, seconds: f64) {
        self.with(|m| {
            let h = slot(&mut m.steps, workflow, kind_name(kind));
            for (i, b) in BUCKETS.iter().enumerate() {
                if seconds <= *b {
                    h.counts[i] += 1;
                }
            }
            h.sum += seconds;
            h.count += 1;
        });
    }

    pub fn attempt(&self, workflow: &str, status: Option<u16>) {
        self.with(|m| *slot(&mut m.attempts, workflow, status_class(status)) += 1);
    }

    /// The text exposition, with the queue gauges read by the caller.
    pub fn render(&self, store: crate::store::QueueGauges) -> String {
        let crate::store::QueueGauges {
            depth: queue_depth,
            later: retry_backlog,
            waiting,
            unreadable,
            record_bytes,
            dedupe_bytes,
            disk_bytes,
            pace_bytes,
            record_target_bytes,
        } = store;
        let Ok(m) = self.inner.lock() else {
            return String::new();
        };
        let mut out = String::new();
        let esc = |s: &str| {
            s.replace('\\', "\\\\")
                .replace('"', "\\\"")
                .replace('\n', "\\n")
        };
        let _ = writeln!(
            out,
            "# HELP hookflow_events_total Inbound events by workflow and outcome."
        );
        let _ = writeln!(out, "# TYPE hookflow_events_total counter");
        for (w, o, n) in flat(&m.events) {
            let _ = writeln!(
                out,
                "hookflow_events_total{{workflow=\"{}\",outcome=\"{o}\"}} {n}",
                esc(w)
            );
        }
        let _ = writeln!(
            out,
            "# HELP hookflow_runs_total Finished runs by workflow and status."
        );
        let _ = writeln!(out, "# TYPE hookflow_runs_total counter");
        for (w, s, n) in flat(&m.runs) {
            let _ = writeln!(
                out,
                "hookflow_runs_total{{workflow=\"{}\",status=\"{s}\"}} {n}",
                esc(w)
            );
        }
        let _ = writeln!(
            out,
            "# HELP hookflow_outbound_attempts_total Outbound HTTP attempts by status class."
        );
        let _ = writeln!(out, "# TYPE hookflow_outbound_attempts_total counter");
        for (w, c, n) in flat(&m.attempts) {
            let _ = writeln!(
                out,
                "hookflow_outbound_attempts_total{{workflow=\"{}\",class=\"{c}\"}} {n}",
                esc(w)
            );
        }
        let _ = writeln!(
            out,
            "# HELP hookflow_step_duration_seconds Step execution time."
        );
        let _ = writeln!(out, "# TYPE hookflow_step_duration_seconds histogram");
        for (w, k, h) in flat(&m.steps) {
            let w = esc(w);
            for (i, b) in BUCKETS.iter().enumerate() {
                let _ = writeln!(out, "hookflow_step_duration_seconds_bucket{{workflow=\"{w}\",kind=\"{k}\",le=\"{b}\"}} {}", h.counts[i]);
            }
            let _ = writeln!(out, "hookflow_step_duration_seconds_bucket{{workflow=\"{w}\",kind=\"{k}\",le=\"+Inf\"}} {}", h.count);
            let _ = writeln!(
                out,
                "hookflow_step_duration_seconds_sum{{workflow=\"{w}\",kind=\"{k}\"}} {}",
                h.sum
            );
            let _ = writeln!(
                out,
                "hookflow_step_duration_seconds_count{{workflow=\"{w}\",kind=\"{k}\"}} {}",
                h.count
            );
        }
        let _ = writeln!(
            out,
            "# HELP hookflow_queue_depth Runs not finished: queued, running, retrying or waiting."
        );
        let _ = writeln!(out, "# TYPE hookflow_queue_depth gauge");
        let _ = writeln!(out, "hookflow_queue_depth {queue_depth}");
        let _ = writeln!(
            out,
            "# HELP hookflow_retry_backlog Runs waiting for a later time (a retry or a delay)."
        );
        let _ = writeln!(out, "# TYPE hookflow_retry_backlog gauge");
        let _ = writeln!(out, "hookflow_retry_backlog {retry_backlog}");
        let _ = writeln!(
            out,
            "# HELP hookflow_runs_waiting Runs waiting for a delay step's time."
        );
        let _ = writeln!(out, "# TYPE hookflow_runs_waiting gauge");
        let _ = writeln!(out, "hookflow_runs_waiting {waiting}");
        let _ = writeln!(
            out,
            "# HELP hookflow_store_unreadable_records_total Stored records skipped because they cannot be decoded."
        );
        let _ = writeln!(
            out,
            "# TYPE hookflow_store_unreadable_records_total counter"
        );
        let _ = writeln!(out, "hookflow_store_unreadable_records_total {unreadable}");
        // The store's sizes, where the backend keeps them (sled).
        for (name, help, value) in [
            (
                "hookflow_store_record_bytes",
                "Bytes of stored event and run records, as retention by size counts them (the data folder takes more: the log's free space and its index).",
                record_bytes,
            ),
            (
                "hookflow_store_record_target_bytes",
                "Bytes of event and run records retention by size keeps: their share of --retention-size, less while the data folder is held at the limit.",
                record_target_bytes,
            ),
            (
                "hookflow_store_dedupe_bytes",
                "Bytes of stored dedupe keys and entries, counted against the retention size beside the records.",
                dedupe_bytes,
            ),
            (
                "hookflow_store_disk_bytes",
                "Bytes the data folder takes on disk, as du counts them: what --retention-size limits.",
                disk_bytes,
            ),
            (
                "hookflow_store_ingest_pace_bytes",
                "Bytes of new events admitted per second while the data folder is close to --retention-size; 0 while not pacing.",
                pace_bytes,
            ),
        ] {
            if let Some(v) = value {
                let _ = writeln!(out, "# HELP {name} {help}");
                let _ = writeln!(out, "# TYPE {name} gauge");
                let _ = writeln!(out, "{name} {v}");
            }
        }
        out
    }
}
