//! Accepting an inbound webhook (SPEC §5). Deciding is pure: [`prepare`]
//! finds what a request is (unknown path, wrong method, bad signature, bad
//! body), and [`Matching`] which workflows' `when` hold. [`Inbox::accept`]
//! evaluates the `when`s that run an `expr` on its script threads (they can
//! take up to the wall-time limit, and the threads that answer requests must
//! not wait on them), then hands the event and its runs to the store
//! ([`Store::ingest`]), which answers once they are durable — so a 2xx
//! always means "on disk". [`classify`] does all the deciding in place, for
//! tools. The stored event has the secrets of the workflows at its path
//! (and the admin token) redacted, in every form
//! [`crate::secret::Redactor`] knows; the runs start from the event as it
//! was received.
//!
//! When a matched workflow has a `respond` step (the first by name, when
//! several have), the request waits for it: a waiter is registered before
//! the event is stored, so the run cannot get there first, and the answer
//! is the step's, or the usual `202` once the run ends without it or
//! `respond_timeout` passes ([`crate::run::respond`]).

pub use crate::record::body;

use crate::record::{Event, EventId, Outcome, Run, RunId, Timestamp, REDACTED};
use crate::run::respond::Responders;
use crate::run::{context, new_run};
use crate::secret::Redactor;
use crate::store::{DedupeClaim, Ingest, Ingested, Store, StoreError};
use crate::workflow::registry::{Registry, Workflows};
use crate::workflow::Workflow;
use serde_json::{Map, Value};
use std::collections::BTreeMap;
use std::sync::Arc;
use tracing::{info, warn};

/// Rejected requests stored per minute at most; the rest are only counted,
/// so a flood of bad signatures cannot fill the disk. (Pruning also keeps
/// only the newest [`crate::store::MAX_REJECTED_KEPT`].)
pub const MAX_REJECTED_PER_MINUTE: u64 = 600;

/// Headers that carry credentials: never stored as sent.
const SENSITIVE_HEADERS: &[&str] = &[
    "authorization",
    "cookie",
    "proxy-authorization",
    "x-api-key",
];

/// An inbound request, as read off the wire.
#[derive(Debug, Clone)]
pub struct Inbound {
    pub method: String,
    /// The path under `/hooks`, e.g. `/stripe`.
    pub hook_path: String,
    /// The request target as received, path and query
    /// (`/hooks/sms?x=1`): schemes that sign the URL build it from this.
    pub target: String,
    pub headers: BTreeMap<String, String>,
    pub query: BTreeMap<String, String>,
    pub body: bytes::Bytes,
    pub source: Option<String>,
}

/// The answer to the sender.
#[derive(Debug, Clone, PartialEq)]
pub enum Answer {
    /// 202; `runs` is empty when no workflow's `when` held.
    Accepted {
        event_id: EventId,
        runs: Vec<RunId>,
    },
    /// The answer of a workflow's `respond` step (the event and its runs
    /// are stored, as for `Accepted`).
    Responded(crate::step::respond::Answer),
    /// 200: the same dedupe key was seen within its window.
    Duplicate {
        event_id: EventId,
        runs: Vec<RunId>,
    },
    /// 401 with the reason.
    Rejected(String),
    NotFound,
    MethodNotAllowed(Vec<String>),
    BadRequest(String),
    /// 503: the request cannot be decided now (the script threads that
    /// evaluate its `when` are gone); nothing was stored, so the sender's
    /// retry loses nothing.
    Unavailable(String),
}

/// What [`classify`] decided.
#[derive(Debug)]
pub enum Decision {
    Answer(Answer),
    Reject {
        reason: String,
        workflows: Vec<String>,
    },
    Store {
        event: Box<Event>,
        runs: Vec<Run>,
        /// Dedupe keys to claim, by index into `runs`.
        claims: Vec<(usize, DedupeClaim)>,
    },
}

pub fn hooks_path(hook_path: &str) -> String {
    format!("/hooks{hook_path}")
}

/// Decide what to do with a request. Pure but for the clock. Every `when`
/// is evaluated here, on the calling thread, scripts included: for tools
/// (workflow tests, dry runs, benchmarks). [`Inbox::accept`] runs the
/// scripts of a `when` on its script threads instead.
pub fn classify(reg: &Registry, req: &Inbound, now: Timestamp) -> Decision {
    classify_with(reg, req, now, true)
}

/// [`classify`], optionally without checking signatures (workflow tests
/// and dry runs, where the sender's secret is not at hand).
pub fn classify_with(
    reg: &Registry,
    req: &Inbound,
    now: Timestamp,
    check_signatures: bool,
) -> Decision {
    match prepare(reg, req, now, check_signatures) {
        Prepared::Done(decision) => decision,
        Prepared::Matching(mut m) => {
            m.evaluate(Conditions::Plain);
            m.evaluate(Conditions::Scripted);
            m.decide()
        }
    }
}

/// The URL the sender used, as best the request tells: the scheme from
/// `X-Forwarded-Proto` (a proxy in front) or `http`, the `Host` header, and
/// the target as received. Set `verify.url` when a proxy changes the path
/// or the host.
fn public_url(req: &Inbound) -> String {
    let proto = req
        .headers
        .get("x-forwarded-proto")
        .and_then(|p| p.split(',').next())
        .map(str::trim)
        .filter(|p| *p == "https" || *p == "http")
        .unwrap_or("http");
    let host = req.headers.get("host").map(String::as_str).unwrap_or("");
    format!("{proto}://{host}{}", req.target)
}

/// What [`prepare`] found.
pub enum Prepared {
    /// Decided without any `when`: an answer or a rejection.
    Done(Decision),
    /// The request passed every check; the workflows' `when`s decide.
    Matching(Box<Matching>),
}

/// Which `when`s [`Matching::evaluate`] takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Conditions {
    /// No `when`, or one without scripts: cheap, fine on any thread.
    Plain,
    /// Those that run an `expr`: up to the wall-time limit each.
    Scripted,
}

/// A request that passed the path, method, signature and body checks,
/// with each verified workflow's `when` still to be decided.
pub struct Matching {
    event: Event,
    /// The one context every `when` sees; the body moves into it and back
    /// out rather than being copied per workflow.
    ctx: Value,
    candidates: Vec<Candidate>,
    now: Timestamp,
}

struct Candidate {
    workflow: Arc<Workflow>,
    /// `None` until evaluated; an error is a `when` that failed.
    holds: Option<Result<bool, String>>,
}

/// A signature check made for one request: the same scheme, secret and
/// URL give the same outcome for every workflow that has them.
struct Checked<'a> {
    scheme: &'a crate::signature::Scheme,
    secret: &'a [u8],
    url: String,
    outcome: Result<(), crate::signature::Rejection>,
}

impl Checked<'_> {
    fn is_for(&self, scheme: &crate::signature::Scheme, secret: &[u8], url: &str) -> bool {
        use subtle::ConstantTimeEq;
        self.scheme == scheme && bool::from(self.secret.ct_eq(secret)) && self.url == url
    }
}

/// Check path, method, signatures and body: everything but the `when`s.
pub fn prepare(reg: &Registry, req: &Inbound, now: Timestamp, check_signatures: bool) -> Prepared {
    let at_path: Vec<&Arc<Workflow>> = reg.at_path(&req.hook_path).filter(|w| w.enabled).collect();
    if at_path.is_empty() {
        return Prepared::Done(Decision::Answer(Answer::NotFound));
    }
    let with_method: Vec<&Arc<Workflow>> = at_path
        .iter()
        .copied()
        .filter(|w| w.methods.contains(&req.method))
        .collect();
    if with_method.is_empty() {
        let mut allowed: Vec<String> = at_path
            .iter()
            .flat_map(|w| w.methods.iter().cloned())
            .collect();
        allowed.sort();
        allowed.dedup();
        return Prepared::Done(Decision::Answer(Answer::MethodNotAllowed(allowed)));
    }

    // Signatures are checked on the raw bytes, before the body is parsed.
    // Workflows of one sender at one path usually share their scheme and
    // secret: each distinct check is made once per request.
    let mut verified = Vec::new();
    let mut rejection = None;
    let mut checked: Vec<Checked> = Vec::new();
    for w in &with_method {
        match &w.verify {
            Some(_) if !check_signatures => verified.push(*w),
            None => verified.push(*w),
            Some(v) => {
                let url = match (&v.url, v.scheme.signs_url()) {
                    (_, false) => String::new(),
                    (Some(u), true) => u.clone(),
                    (None, true) => public_url(req),
                };
                let secret = v.secret.expose().as_bytes();
                let known = checked.iter().find(|c| c.is_for(&v.scheme, secret, &url));
                let outcome = match known {
                    Some(c) => c.outcome.clone(),
                    None => {
                        let signed = crate::signature::Signed {
                            method: &req.method,
                            url: &url,
                            headers: &req.headers,
                            body: &req.body,
                        };
                        let outcome = v.scheme.verify_request(secret, &signed, now.0 / 1000);
                        checked.push(Checked {
                            scheme: &v.scheme,
                            secret,
                            url,
                            outcome: outcome.clone(),
                        });
                        outcome
                    }
                };
                match outcome {
                    Ok(()) => verified.push(*w),
                    Err(reason) => {
                        rejection
                            .get_or_insert_with(|| (reason.to_string(), Vec::new()))
                            .1
                            .push(w.name.clone());
                    }
                }
            }
        }
    }
    if verified.is_empty() {
        let (reason, workflows) =
            rejection.unwrap_or_else(|| ("signature rejected".into(), Vec::new()));
        return Prepared::Done(Decision::Reject { reason, workflows });
    }

    let kind = body::kind(
        req.headers.get("content-type").map(String::as_str),
        &req.body,
    );
    let body = match body::parse_as(kind, &req.body) {
        Ok(b) => b,
        Err(e) => return Prepared::Done(Decision::Answer(Answer::BadRequest(e))),
    };
    let mut event = Event {
        id: EventId::generate(),
        received_at: now,
        path: hooks_path(&req.hook_path),
        method: req.method.clone(),
        headers: stored_headers(&req.headers, &with_method),
        query: req.query.clone(),
        body,
        body_size: req.body.len(),
        outcome: Outcome::Accepted,
        reason: None,
        workflows: verified.iter().map(|w| w.name.clone()).collect(),
        runs: Vec::new(),
        source: req.source.clone(),
        raw_body: Some(body::RawBody {
            kind,
            bytes: req.body.clone(),
        }),
    };
    let body = std::mem::take(&mut event.body);
    let mut ctx = context(&event, "", None, 0, Map::new());
    ctx["event"] = body;
    Prepared::Matching(Box::new(Matching {
        event,
        ctx,
        candidates: verified
            .into_iter()
            .map(|w| Candidate {
                workflow: Arc::clone(w),
                holds: None,
            })
            .collect(),
        now,
    }))
}

impl Matching {
    /// Whether any `when` still to be decided runs a script.
    pub fn needs_scripts(&self) -> bool {
        self.candidates
            .iter()
            .any(|c| c.holds.is_none() && c.workflow.when.as_ref().is_some_and(|w| w.has_script()))
    }

    /// Decide the `when`s of this kind not decided yet.
    pub fn evaluate(&mut self, which: Conditions) {
        for c in &mut self.candidates {
            if c.holds.is_some() {
                continue;
            }
            if let Some(events) = &c.workflow.events {
                if !events.matches(&self.ctx) {
                    c.holds = Some(Ok(false));
                    continue;
                }
            }
            let Some(when) = &c.workflow.when else {
                c.holds = Some(Ok(true));
                continue;
            };
            let kind = if when.has_script() {
                Conditions::Scripted
            } else {
                Conditions::Plain
            };
            if kind != which {
                continue;
            }
            self.ctx["workflow"]["name"] = Value::String(c.workflow.name.clone());
            let held = when.eval(&self.ctx);
            if let Err(e) = &held {
                warn!(workflow = %c.workflow.name, error = %e, "`when` could not be evaluated; no run created");
            }
            c.holds = Some(held);
        }
    }

    /// The event and the runs of the workflows whose `when` held. A `when`
    /// left undecided counts as not holding.
    pub fn decide(self) -> Decision {
        let Matching {
            mut event,
            mut ctx,
            candidates,
            now,
        } = self;
        let mut runs = Vec::new();
        let mut claims = Vec::new();
        let mut errors = Vec::new();
        for Candidate { workflow: w, holds } in &candidates {
            let holds = match holds {
                Some(Ok(h)) => *h,
                Some(Err(e)) => {
                    errors.push(format!("{}: `when` failed: {e}", w.name));
                    false
                }
                None => false,
            };
            if !holds {
                continue;
            }
            if let Some(d) = &w.dedupe {
                ctx["workflow"]["name"] = Value::String(w.name.clone());
                let key = d.key.render_text(&ctx);
                // No key (the field is missing): nothing to dedupe on.
                if !key.is_empty() {
                    claims.push((
                        runs.len(),
                        DedupeClaim {
                            workflow: w.name.clone(),
                            key,
                            expires_at: now.plus(d.window),
                        },
                    ));
                }
            }
            let mut run = new_run(w, &event.id, now);
            // A provider preset's summary; the others get the default below.
            if !w.summary.is_empty() {
                let parts: Vec<String> = w
                    .summary
                    .iter()
                    .map(|t| t.render_text(&ctx))
                    .filter(|p| !p.trim().is_empty())
                    .collect();
                run.summary = crate::record::one_line(&parts.join(" · "));
            }
            runs.push(run);
        }
        if let Some(body) = ctx.get_mut("event") {
            event.body = std::mem::take(body);
        }
        let summary = crate::record::summarize(&event.headers, &event.body);
        for r in runs.iter_mut().filter(|r| r.summary.is_empty()) {
            r.summary = summary.clone();
        }
        if runs.is_empty() {
            event.outcome = Outcome::Unmatched;
            event.reason = Some(if errors.is_empty() {
                "no workflow's `events` or `when` held".to_string()
            } else {
                errors.join("; ")
            });
        }
        event.runs = runs.iter().map(|r| r.id.clone()).collect();
        Decision::Store {
            event: Box::new(event),
            runs,
            claims,
        }
    }
}

fn stored_headers(
    headers: &BTreeMap<String, String>,
    workflows: &[&Arc<Workflow>],
) -> BTreeMap<String, String> {
    let signs = |name: &str| {
        workflows
            .iter()
            .filter_map(|w| w.verify.as_ref())
            .any(|v| v.scheme.carries_signature(name))
    };
    headers
        .iter()
        .map(|(k, v)| {
            let hide = SENSITIVE_HEADERS.contains(&k.as_str()) || signs(k);
            (
                k.clone(),
                if hide {
                    REDACTED.to_string()
                } else {
                    v.clone()
                },
            )
        })
        .collect()
}

/// Performs what [`classify`] decided.
pub struct Inbox {
    pub store: Store,
    pub workflows: Arc<Workflows>,
    pub metrics: Arc<crate::metrics::Metrics>,
    /// Where `when`s that run a script are evaluated: never on the threads
    /// that answer requests.
    pub scripts: crate::script::pool::ScriptPool,
    /// (minute, rejected events stored in it)
    pub rejected_window: std::sync::Mutex<(u64, u64)>,
    /// Secrets of the server itself (the admin token), redacted from
    /// stored events like the workflows' own.
    pub secrets: Redactor,
    /// Requests waiting for a `respond` step; shared with the executor.
    pub responders: Responders,
}

/// The event as it is stored: `None` when no secret shows in it, else a
/// copy with each one redacted.
pub fn redacted_event(event: &Event, redactors: &[&Redactor]) -> Option<Event> {
    // A JSON body is first searched as received, in one pass; its value
    // only when a secret may show in it.
    let body_shows = |r: &Redactor| match &event.raw_body {
        Some(raw) if raw.kind == body::BodyKind::Json && !r.may_show_in_json(&raw.bytes) => false,
        _ => r.finds_in_value(&event.body),
    };
    let shows = |r: &Redactor| {
        !r.is_empty()
            && (body_shows(r)
                || event
                    .headers
                    .iter()
                    .chain(&event.query)
                    .any(|(k, v)| r.finds(k) || r.finds(v))
                || event.reason.as_deref().is_some_and(|t| r.finds(t)))
    };
    if !redactors.iter().any(|r| shows(r)) {
        return None;
    }
    let mut stored = event.clone();
    // The bytes as received hold what is redacted: the value is stored.
    stored.raw_body = None;
    for r in redactors {
        r.redact_value(&mut stored.body);
        r.redact_map(&mut stored.headers);
        r.redact_map(&mut stored.query);
        if let Some(reason) = &mut stored.reason {
            r.redact_str(reason);
        }
    }
    Some(stored)
}

impl Inbox {
    /// `scripts`: the threads that evaluate `when` scripts. `secrets`: the
    /// server's own (the admin token), redacted from stored events besides
    /// each workflow's. `responders`: where runs hand `respond` answers
    /// (the executor's).
    pub fn new(
        store: Store,
        workflows: Arc<Workflows>,
        metrics: Arc<crate::metrics::Metrics>,
        scripts: crate::script::pool::ScriptPool,
        secrets: Redactor,
        responders: Responders,
    ) -> Inbox {
        Inbox {
            store,
            workflows,
            metrics,
            scripts,
            rejected_window: std::sync::Mutex::new((0, 0)),
            secrets,
            responders,
        }
    }

    pub async fn accept(&self, req: Inbound) -> Result<Answer, StoreError> {
        let now = Timestamp::now();
        let reg = self.workflows.current();
        let mut matching = match prepare(&reg, &req, now, true) {
            Prepared::Done(decision) => return self.perform(&reg, &req, now, decision).await,
            Prepared::Matching(m) => m,
        };
        matching.evaluate(Conditions::Plain);
        if matching.needs_scripts() {
            matching = match self
                .scripts
                .run(move || {
                    matching.evaluate(Conditions::Scripted);
                    matching
                })
                .await
            {
                Ok(m) => m,
                Err(e) => {
                    warn!(path = %req.hook_path, error = %e, "cannot evaluate `when` scripts; answering 503");
                    return Ok(Answer::Unavailable(format!(
                        "cannot evaluate this workflow's `when` now ({e}); try again later"
                    )));
                }
            };
        }
        let decision = matching.decide();
        self.perform(&reg, &req, now, decision).await
    }

    async fn perform(
        &self,
        reg: &Registry,
        req: &Inbound,
        now: Timestamp,
        decision: Decision,
    ) -> Result<Answer, StoreError> {
        match decision {
            Decision::Answer(a) => Ok(a),
            Decision::Reject { reason, workflows } => {
                self.reject(req, now, reason, workflows).await
            }
            Decision::Store {
                event,
                runs,
                claims,
            } => {
                let redactors: Vec<&Redactor> = reg
                    .at_path(&req.hook_path)
                    .map(|w| &w.redactor)
                    .chain(std::iter::once(&self.secrets))
                    .collect();
                let responder = responder(reg, &runs, &claims);
                self.store_event(*event, runs, claims, &redactors, responder)
                    .await
            }
        }
    }

    async fn reject(
        &self,
        req: &Inbound,
        now: Timestamp,
        reason: String,
        workflows: Vec<String>,
    ) -> Result<Answer, StoreError> {
        info!(path = %req.hook_path, %reason, "webhook rejected");
        let event = Event {
            id: EventId::generate(),
            received_at: now,
            path: hooks_path(&req.hook_path),
            method: req.method.clone(),
            headers: BTreeMap::new(),
            query: BTreeMap::new(),
            body: Value::Null,
            body_size: req.body.len(),
            outcome: Outcome::Rejected,
            reason: Some(reason.clone()),
            workflows,
            runs: Vec::new(),
            source: req.source.clone(),
            raw_body: None,
        };
        self.metrics.event(&event);
        let minute = now.0 / 60_000;
        let store_it = match self.rejected_window.lock() {
            Ok(mut w) => {
                if w.0 != minute {
                    *w = (minute, 0);
                }
                w.1 += 1;
                w.1 <= MAX_REJECTED_PER_MINUTE
            }
            Err(_) => false,
        };
        if store_it {
            self.store.save_rejected(&event).await?;
        }
        Ok(Answer::Rejected(reason))
    }

    /// Store the event and its runs (the store skips runs whose dedupe key
    /// is held); answer once it is on disk, or, with a `responder`, with
    /// its run's `respond` step.
    async fn store_event(
        &self,
        event: Event,
        runs: Vec<Run>,
        claims: Vec<(usize, DedupeClaim)>,
        redactors: &[&Redactor],
        responder: Option<Responder>,
    ) -> Result<Answer, StoreError> {
        let workflows = event.workflows.clone();
        let outcome = event.outcome;
        let decided = runs.len();
        // Before the runs exist: none can reach its `respond` step before
        // the request listens.
        let waiting = responder
            .as_ref()
            .map(|r| (r, self.responders.wait(&event.id, &r.workflow)));
        let mut runs = runs;
        // The summary is shown, never read by a step: redacted in place.
        for r in &mut runs {
            redactors.iter().for_each(|x| x.redact_str(&mut r.summary));
        }
        let stored_event = redacted_event(&event, redactors);
        let stored = self
            .store
            .ingest(Ingest {
                event,
                stored_event,
                runs,
                claims,
            })
            .await?;
        Ok(match stored {
            Ingested::Stored { event_id, runs } => {
                self.metrics.event_outcome(&workflows, outcome);
                if let Some((r, waiting)) = waiting {
                    // A run whose dedupe key was held was not created; if
                    // the responder's may be one of them, nothing would
                    // answer: say 202 now rather than at the timeout.
                    let maybe_dropped = r.deduped && runs.len() < decided;
                    if !maybe_dropped {
                        if let Some(answer) = waiting.answer(r.timeout).await {
                            return Ok(Answer::Responded(answer));
                        }
                    }
                }
                Answer::Accepted { event_id, runs }
            }
            Ingested::Duplicate { event_id, runs } => Answer::Duplicate { event_id, runs },
        })
    }
}

/// The workflow whose `respond` step answers a request.
struct Responder {
    workflow: String,
    timeout: std::time::Duration,
    /// Its run has a dedupe key (so the store may not create it).
    deduped: bool,
}

/// Of the workflows matched, the first by name that has a `respond` step.
fn responder(reg: &Registry, runs: &[Run], claims: &[(usize, DedupeClaim)]) -> Option<Responder> {
    runs.iter()
        .enumerate()
        .filter_map(|(i, run)| {
            let wf = reg.by_name(&run.workflow)?;
            wf.responds().then(|| Responder {
                workflow: wf.name.clone(),
                timeout: wf.respond_timeout,
                deduped: claims.iter().any(|(c, _)| *c == i),
            })
        })
        .min_by(|a, b| a.workflow.cmp(&b.workflow))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::script::Engine;

    fn registry(dir: &std::path::Path, files: &[(&str, &str)]) -> Registry {
        let paths: Vec<std::path::PathBuf> = files
            .iter()
            .map(|(name, text)| {
                let path = dir.join(name);
                std::fs::write(&path, text).expect("write");
                path
            })
            .collect();
        let reg = crate::workflow::registry::load(
            &paths,
            &crate::expr::template::ProcessEnv,
            dir,
            Default::default(),
            &Engine::default(),
            crate::workflow::Serving::Local,
        );
        assert_eq!(
            reg.issues().count(),
            0,
            "{:?}",
            reg.issues().collect::<Vec<_>>()
        );
        reg
    }

    #[test]
    fn only_whens_that_run_scripts_are_left_for_the_script_threads() {
        let dir = tempfile::tempdir().expect("temp dir");
        let wf = |name: &str, when: &str| {
            format!("name: {name}\ntrigger:\n  webhook: {{ path: /in }}\n{when}steps:\n  - id: s\n    transform: {{ script: '1' }}\n")
        };
        let files = [
            ("a.yaml", wf("always", "")),
            ("b.yaml", wf("plain", "  when: { $.event.k: 1 }\n")),
            ("c.yaml", wf("plain-no", "  when: { $.event.k: 2 }\n")),
            (
                "d.yaml",
                wf("scripted", "  when: { not: { expr: 'event.k != 1' } }\n"),
            ),
            (
                "e.yaml",
                wf("scripted-no", "  when: { expr: 'event.k == 2' }\n"),
            ),
        ];
        let files: Vec<(&str, &str)> = files.iter().map(|(f, t)| (*f, t.as_str())).collect();
        let reg = registry(dir.path(), &files);
        let req = Inbound {
            method: "POST".into(),
            hook_path: "/in".into(),
            target: "/hooks/in".into(),
            headers: BTreeMap::from([("content-type".into(), "application/json".into())]),
            query: BTreeMap::new(),
            body: bytes::Bytes::from_static(br#"{"k": 1}"#),
            source: None,
        };
        let Prepared::Matching(mut m) = prepare(&reg, &req, Timestamp::now(), true) else {
            panic!("the request passes every check");
        };
        let decided = |m: &Matching| -> Vec<String> {
            let mut names: Vec<String> = m
                .candidates
                .iter()
                .filter(|c| c.holds.is_some())
                .map(|c| c.workflow.name.clone())
                .collect();
            names.sort();
            names
        };
        assert!(m.needs_scripts());
        m.evaluate(Conditions::Plain);
        assert_eq!(decided(&m), ["always", "plain", "plain-no"]);
        assert!(m.needs_scripts());
        m.evaluate(Conditions::Scripted);
        assert!(!m.needs_scripts());
        let Decision::Store { runs, event, .. } = m.decide() else {
            panic!("stored");
        };
        let mut matched: Vec<&str> = runs.iter().map(|r| r.workflow.as_str()).collect();
        matched.sort();
        assert_eq!(matched, ["always", "plain", "scripted"]);
        assert_eq!(
            event.body,
            serde_json::json!({"k": 1}),
            "the body is back in the event"
        );
    }

    /// A workflow at `/in` checked by `verify` (one scheme's settings).
    fn signed_workflow(name: &str, verify: &str) -> String {
        format!("name: {name}\ntrigger:\n  webhook:\n    path: /in\n    verify:\n      {verify}\nsteps:\n  - id: s\n    transform: {{ script: '1' }}\n")
    }

    /// The workflows whose signature check `req` passed, by name, sorted
    /// (none if it passed no check).
    fn verified_names(reg: &Registry, req: &Inbound) -> Vec<String> {
        match prepare(reg, req, Timestamp::now(), true) {
            Prepared::Matching(m) => {
                let mut names: Vec<String> = m
                    .candidates
                    .iter()
                    .map(|c| c.workflow.name.clone())
                    .collect();
                names.sort();
                names
            }
            Prepared::Done(_) => Vec::new(),
        }
    }

    /// One check per distinct scheme, secret and URL: a check made for one
    /// workflow must decide only the workflows with the same key, never one
    /// with another secret or scheme at the same path.
    #[test]
    fn workflows_sharing_a_secret_share_its_check_and_no_other() {
        use crate::signature::{sign, Algorithm};
        let dir = tempfile::tempdir().expect("temp dir");
        let wf = signed_workflow;
        let files = [
            ("a1.yaml", wf("a1", "github: { secret: key-a }")),
            ("b.yaml", wf("b", "github: { secret: key-b }")),
            ("a2.yaml", wf("a2", "github: { secret: key-a }")),
            ("s.yaml", wf("shopify-a", "shopify: { secret: key-a }")),
        ];
        let files: Vec<(&str, &str)> = files.iter().map(|(f, t)| (*f, t.as_str())).collect();
        let reg = registry(dir.path(), &files);
        let body = br#"{"k": 1}"#;
        let signed_with = |key: &str| Inbound {
            method: "POST".into(),
            hook_path: "/in".into(),
            target: "/hooks/in".into(),
            headers: BTreeMap::from([(
                "x-hub-signature-256".into(),
                format!(
                    "sha256={}",
                    hex::encode(sign(Algorithm::Sha256, key.as_bytes(), body))
                ),
            )]),
            query: BTreeMap::new(),
            body: bytes::Bytes::from_static(body),
            source: None,
        };
        let verified = |key: &str| verified_names(&reg, &signed_with(key));
        assert_eq!(verified("key-a"), ["a1", "a2"]);
        assert_eq!(verified("key-b"), ["b"]);
        let Prepared::Done(Decision::Reject { mut workflows, .. }) =
            prepare(&reg, &signed_with("key-c"), Timestamp::now(), true)
        else {
            panic!("no workflow's secret signed it");
        };
        workflows.sort();
        assert_eq!(workflows, ["a1", "a2", "b", "shopify-a"]);
    }

    /// For a scheme that signs the URL, the URL is part of the check's key:
    /// two workflows with one secret but different `verify.url`s are each
    /// checked against their own.
    #[test]
    fn workflows_sharing_a_secret_but_not_the_signed_url_are_checked_apart() {
        use crate::signature::{sign, Algorithm};
        use base64::Engine as _;
        let dir = tempfile::tempdir().expect("temp dir");
        let (one, other) = ("https://example.com/one", "https://example.com/other");
        let twilio = |url: &str| format!("twilio: {{ secret: key, url: \"{url}\" }}");
        let files = [
            ("1.yaml", signed_workflow("one", &twilio(one))),
            ("2.yaml", signed_workflow("other", &twilio(other))),
        ];
        let files: Vec<(&str, &str)> = files.iter().map(|(f, t)| (*f, t.as_str())).collect();
        let reg = registry(dir.path(), &files);
        // Twilio signs the URL, then each form parameter's name and value.
        let signature = |url: &str| {
            base64::engine::general_purpose::STANDARD.encode(sign(
                Algorithm::Sha1,
                b"key",
                format!("{url}a1").as_bytes(),
            ))
        };
        let verified = |url: &str| -> Vec<String> {
            let req = Inbound {
                method: "POST".into(),
                hook_path: "/in".into(),
                target: "/hooks/in".into(),
                headers: BTreeMap::from([
                    (
                        "content-type".into(),
                        "application/x-www-form-urlencoded".into(),
                    ),
                    ("x-twilio-signature".into(), signature(url)),
                ]),
                query: BTreeMap::new(),
                body: bytes::Bytes::from_static(b"a=1"),
                source: None,
            };
            verified_names(&reg, &req)
        };
        assert_eq!(verified(one), ["one"]);
        assert_eq!(verified(other), ["other"]);
    }

    /// The headers that carry a signature of any workflow at the path are
    /// stored redacted, a custom header whatever the case it is written in;
    /// other headers are kept as they came.
    #[test]
    fn signature_headers_of_every_workflow_at_the_path_are_stored_redacted() {
        let dir = tempfile::tempdir().expect("temp dir");
        let wf = signed_workflow;
        let files = [
            ("s.yaml", wf("stripe", "stripe: { secret: k }")),
            ("g.yaml", wf("github", "github: { secret: k }")),
            (
                "h.yaml",
                wf("acme", "hmac: { secret: k, header: X-Acme-Signature }"),
            ),
        ];
        let files: Vec<(&str, &str)> = files.iter().map(|(f, t)| (*f, t.as_str())).collect();
        let reg = registry(dir.path(), &files);
        let at_path: Vec<&Arc<Workflow>> = reg.at_path("/in").collect();
        let sent = BTreeMap::from(
            [
                "stripe-signature",
                "x-hub-signature-256",
                "x-hub-signature",
                "x-acme-signature",
                "x-slack-signature",
                "content-type",
            ]
            .map(|h| (h.to_string(), "v".to_string())),
        );
        let stored = stored_headers(&sent, &at_path);
        for h in [
            "stripe-signature",
            "x-hub-signature-256",
            "x-hub-signature",
            "x-acme-signature",
        ] {
            assert_eq!(stored[h], REDACTED, "{h}");
        }
        // No workflow here is signed by Slack.
        assert_eq!(stored["x-slack-signature"], "v");
        assert_eq!(stored["content-type"], "v");
    }

    #[test]
    fn a_when_left_undecided_does_not_hold() {
        let dir = tempfile::tempdir().expect("temp dir");
        let wf = "name: scripted\ntrigger:\n  webhook: { path: /in }\n  when: { expr: 'true' }\nsteps:\n  - id: s\n    transform: { script: '1' }\n";
        let reg = registry(dir.path(), &[("a.yaml", wf)]);
        let req = Inbound {
            method: "POST".into(),
            hook_path: "/in".into(),
            target: "/hooks/in".into(),
            headers: BTreeMap::new(),
            query: BTreeMap::new(),
            body: bytes::Bytes::from_static(b"{}"),
            source: None,
        };
        let Prepared::Matching(mut m) = prepare(&reg, &req, Timestamp::now(), true) else {
            panic!("the request passes every check");
        };
        m.evaluate(Conditions::Plain);
        let Decision::Store { runs, event, .. } = m.decide() else {
            panic!("stored");
        };
        assert!(runs.is_empty());
        assert_eq!(event.outcome, Outcome::Unmatched);
    }
}
