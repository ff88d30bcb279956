//! Counters and histograms for `GET /metrics` (Prometheus text format):
//! events by workflow and outcome, finished runs by workflow and status,
//! step durations by workflow and kind, outbound attempts by status class.
//! Plain maps behind one std `Mutex`: every update is a few map operations
//! and never awaits, so an async lock would only add cost.

use crate::record::{Event, Run, StepKind};
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

#[derive(Default)]
struct Inner {
    events: BTreeMap<(String, &'static str), u64>,
    runs: BTreeMap<(String, &'static str), u64>,
    attempts: BTreeMap<(String, &'static str), u64>,
    steps: BTreeMap<(String, &'static str), Histogram>,
}

#[derive(Default)]
pub struct Metrics {
    inner: Mutex<Inner>,
}

fn kind_name(k: StepKind) -> &'static str {
    match k {
        StepKind::Filter => "filter",
        StepKind::Transform => "transform",
        StepKind::Http => "http",
    }
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
        self.with(|m| {
            if e.workflows.is_empty() {
                *m.events
                    .entry((String::new(), e.outcome.as_str()))
                    .or_default() += 1;
            }
            for w in &e.workflows {
                *m.events.entry((w.clone(), e.outcome.as_str())).or_default() += 1;
            }
        });
    }

    pub fn run_finished(&self, r: &Run) {
        self.with(|m| {
            *m.runs
                .entry((r.workflow.clone(), r.status.as_str()))
                .or_default() += 1
        });
    }

    pub fn step(&self, workflow: &str, kind: StepKind, seconds: f64) {
        self.with(|m| {
            let h = m
                .steps
                .entry((workflow.to_string(), kind_name(kind)))
                .or_default();
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
        self.with(|m| {
            *m.attempts
                .entry((workflow.to_string(), status_class(status)))
                .or_default() += 1
        });
    }

    /// The text exposition, with the queue gauges read by the caller.
    pub fn render(&self, queue_depth: usize, retry_backlog: usize) -> String {
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
        for ((w, o), n) in &m.events {
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
        for ((w, s), n) in &m.runs {
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
        for ((w, c), n) in &m.attempts {
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
        for ((w, k), h) in &m.steps {
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
            "# HELP hookflow_queue_depth Runs waiting in the queue (due now or later)."
        );
        let _ = writeln!(out, "# TYPE hookflow_queue_depth gauge");
        let _ = writeln!(out, "hookflow_queue_depth {queue_depth}");
        let _ = writeln!(
            out,
            "# HELP hookflow_retry_backlog Runs waiting for a later retry attempt."
        );
        let _ = writeln!(out, "# TYPE hookflow_retry_backlog gauge");
        let _ = writeln!(out, "hookflow_retry_backlog {retry_backlog}");
        out
    }
}
