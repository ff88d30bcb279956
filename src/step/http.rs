//! The `http` step. Three phases, so that dry runs, test mocks and
//! benchmarks reuse the same code: [`HttpAction::prepare`] renders the
//! request (pure), [`Sender::send`] performs it (the only I/O), and
//! [`decide`] turns the answer into an [`Outcome`] (pure). The attempt
//! record (request, response, error) is redacted; the step's output is not,
//! since it is handed to the next step (the executor redacts its stored
//! copy).

use super::{Outcome, StepEnv};
use crate::expr::template::{value_text, Template, UrlTemplate, ValueTemplate};
use crate::record::{kept_body, Attempt, AttemptRequest, AttemptResponse, StepRecord, Timestamp};
use crate::secret::Redactor;
use serde_json::{Map, Value};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

pub use crate::workflow::spec::BodyFormat;

pub const IDEMPOTENCY_KEY: &str = "idempotency-key";
/// The most of a response body a step keeps in memory; the rest is read
/// only to be counted (see [`Sender::send`]).
const MAX_RESPONSE_BYTES: usize = 4 * 1024 * 1024;

#[derive(Debug, Clone)]
pub struct HttpAction {
    pub step_id: String,
    pub method: reqwest::Method,
    pub url: UrlTemplate,
    pub query: Vec<(String, Template)>,
    pub headers: Vec<(String, Template)>,
    pub body: Option<ValueTemplate>,
    pub format: BodyFormat,
    pub timeout: Duration,
    pub retry: RetryPolicy,
    pub success: Vec<StatusRange>,
    pub follow_redirects: bool,
    /// Set when the step is a connector action (`uses:`): its parameters,
    /// its checks of the answer and its OAuth2 token (see [`super::uses`]).
    pub uses: Option<std::sync::Arc<super::uses::Uses>>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Every attempt counts, the first included.
    pub attempts: u32,
    pub backoff: Duration,
    pub max_backoff: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            attempts: 6,
            backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(600),
        }
    }
}

/// A status or a class of statuses (`2xx`) that counts as success.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StatusRange {
    pub lo: u16,
    pub hi: u16,
}

impl StatusRange {
    pub fn parse(s: &str) -> Option<StatusRange> {
        let s = s.trim();
        if let Some(class) = s.strip_suffix("xx").or_else(|| s.strip_suffix("XX")) {
            let d: u16 = class.parse().ok().filter(|d| (1..=5).contains(d))?;
            return Some(StatusRange {
                lo: d * 100,
                hi: d * 100 + 99,
            });
        }
        let n: u16 = s.parse().ok().filter(|n| (100..=599).contains(n))?;
        Some(StatusRange { lo: n, hi: n })
    }

    fn contains(&self, status: u16) -> bool {
        (self.lo..=self.hi).contains(&status)
    }
}

/// A rendered request, ready to send. It holds secrets as they are sent,
/// so its `Debug` shows only the method, the origin, the header names and
/// the body's size.
#[derive(Clone)]
pub struct Prepared {
    pub method: reqwest::Method,
    pub url: reqwest::Url,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    pub timeout: Duration,
    pub follow_redirects: bool,
}

impl std::fmt::Debug for Prepared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<&str> = self.headers.iter().map(|(k, _)| k.as_str()).collect();
        f.debug_struct("Prepared")
            .field("method", &self.method)
            .field("origin", &self.url.origin().ascii_serialization())
            .field("headers", &names)
            .field("body_bytes", &self.body.len())
            .finish_non_exhaustive()
    }
}

impl Prepared {
    /// The request as a step record keeps it, secrets blanked out.
    pub fn record(&self, redactor: &Redactor) -> AttemptRequest {
        let (mut body, body_size) = kept_body(&self.body, self.body.len());
        redactor.redact_value(&mut body);
        let url = redactor.redacted(self.url.as_str()).into_owned();
        let mut headers: BTreeMap<String, String> = self.headers.iter().cloned().collect();
        redactor.redact_map(&mut headers);
        // A credential header is a secret whole: Basic's base64 of
        // `user:secret` would otherwise keep a few characters around the
        // redacted part (they encode the `:` and the secret's first bits).
        for (name, value) in headers.iter_mut() {
            if CREDENTIAL_HEADERS
                .iter()
                .any(|h| name.eq_ignore_ascii_case(h))
            {
                let scheme = value
                    .split_once(' ')
                    .map(|(s, _)| s.to_string())
                    .filter(|s| !s.contains(crate::record::REDACTED));
                *value = match scheme {
                    Some(s) => format!("{s} {}", crate::record::REDACTED),
                    None => crate::record::REDACTED.to_string(),
                };
            }
        }
        AttemptRequest {
            method: self.method.to_string(),
            url,
            headers,
            body,
            body_size,
        }
    }
}

/// Request headers whose whole value is a credential, kept in the attempt
/// record as `<scheme> [redacted]`.
const CREDENTIAL_HEADERS: &[&str] = &["authorization", "proxy-authorization"];

/// A received response.
#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    pub headers: BTreeMap<String, String>,
    /// The body, or its first `MAX_RESPONSE_BYTES` (4 MiB) when it is longer.
    pub body: Vec<u8>,
    /// The size of the whole body (at least `body.len()`).
    pub size: usize,
}

impl Response {
    /// A response whose body is all there.
    pub fn new(status: u16, headers: BTreeMap<String, String>, body: Vec<u8>) -> Response {
        let size = body.len();
        Response {
            status,
            headers,
            body,
            size,
        }
    }
}

impl HttpAction {
    /// Render the request for this run context. Pure: nothing is sent.
    pub fn prepare(&self, ctx: &Value, idempotency_key: &str) -> Result<Prepared, String> {
        let url_text = self.url.render_text(ctx);
        let mut url = self
            .url
            .parse(&url_text)
            .map_err(|e| format!("the url `{url_text}` is not valid: {e}"))?;
        if url.scheme() != "http" && url.scheme() != "https" {
            return Err(format!(
                "the url `{url_text}` must start with http:// or https://"
            ));
        }
        // Compiling placed every run-context value in the path or query;
        // this holds the result to that, whatever the values were.
        self.url.check(&url)?;
        if let Some(dots) = self.url.dot_segment(ctx) {
            return Err(format!(
                "the url's path would hold the segment `{dots}` from the run context, which would move the request elsewhere on the server; nothing was sent"
            ));
        }
        if !self.query.is_empty() {
            let mut pairs = url.query_pairs_mut();
            for (k, t) in &self.query {
                let value = t.render_value(ctx);
                // A connector names every query parameter an action takes;
                // those a workflow leaves out are left out.
                if value.is_null() && self.uses.is_some() {
                    continue;
                }
                pairs.append_pair(k, &value_text(&value));
            }
            drop(pairs);
            if url.query() == Some("") {
                url.set_query(None);
            }
        }
        let mut headers = Vec::with_capacity(self.headers.len() + 2);
        for (name, t) in &self.headers {
            let value = t.render_text(ctx);
            if value.contains(['\r', '\n']) {
                return Err(format!(
                    "header `{name}` would contain a line break; nothing was sent"
                ));
            }
            if reqwest::header::HeaderValue::from_str(&value).is_err() {
                return Err(format!(
                    "header `{name}` has characters a header cannot carry; nothing was sent"
                ));
            }
            headers.push((name.clone(), value));
        }
        let has =
            |h: &[(String, String)], n: &str| h.iter().any(|(k, _)| k.eq_ignore_ascii_case(n));
        if !has(&headers, IDEMPOTENCY_KEY) {
            headers.push(("Idempotency-Key".to_string(), idempotency_key.to_string()));
        }
        let mut body = Vec::new();
        if let Some(t) = &self.body {
            let mut value = t.render(ctx);
            if self.uses.is_some() {
                // A connector's body names every parameter an action
                // takes; those a workflow leaves out are left out.
                prune_nulls(&mut value);
            }
            let content_type = match self.format {
                BodyFormat::Json => {
                    body = serde_json::to_vec(&value)
                        .map_err(|e| format!("body cannot be written as JSON: {e}"))?;
                    "application/json"
                }
                BodyFormat::Form => {
                    let Value::Object(fields) = &value else {
                        return Err(format!(
                            "a form body must be a mapping of fields, the body is {}",
                            kind(&value)
                        ));
                    };
                    let pairs: Vec<(&str, String)> = fields
                        .iter()
                        .map(|(k, v)| (k.as_str(), value_text(v)))
                        .collect();
                    body = serde_urlencoded::to_string(pairs)
                        .map_err(|e| format!("body cannot be form-encoded: {e}"))?
                        .into_bytes();
                    "application/x-www-form-urlencoded"
                }
                BodyFormat::Text => {
                    body = value_text(&value).into_bytes();
                    "text/plain; charset=utf-8"
                }
            };
            if !has(&headers, "content-type") {
                headers.push(("Content-Type".to_string(), content_type.to_string()));
            }
        }
        Ok(Prepared {
            method: self.method.clone(),
            url,
            headers,
            body,
            timeout: self.timeout,
            follow_redirects: self.follow_redirects,
        })
    }

    pub(super) async fn run(
        &self,
        ctx: &mut Value,
        env: &StepEnv<'_>,
        record: &mut StepRecord,
    ) -> Outcome {
        if let Some(uses) = &self.uses {
            return super::uses::run(self, uses, ctx, env, record).await;
        }
        let key = self.idempotency_key(ctx, env.items);
        let prepared = match self.prepare(ctx, &key) {
            Ok(p) => p,
            Err(e) => return Outcome::Failed(e),
        };
        let n = record.attempts.len() as u32 + 1;
        let (result, mut attempt) = self.exchange(&prepared, env, env.redactor, n).await;
        let outcome = decide(&result, n, &self.retry, &self.success, Timestamp::now());
        settle(&mut attempt, &outcome, env.redactor);
        record.attempts.push(attempt);
        outcome
    }

    /// Render the request as the step would send it, a `uses` step's
    /// parameters included (its OAuth2 token aside): for tools that render
    /// without running.
    pub fn render_request(&self, ctx: &mut Value, key: &str) -> Result<Prepared, String> {
        match &self.uses {
            None => self.prepare(ctx, key),
            Some(u) => {
                let params = u.render_params(ctx)?;
                let cx = super::uses::Scoped::add(ctx, super::uses::PARAMS, params);
                self.prepare(cx.ctx(), key)
            }
        }
    }

    /// `<run id>.<step id>`, and the item indexes inside loops: the same
    /// for every attempt of the step.
    pub(super) fn idempotency_key(&self, ctx: &Value, items: &[usize]) -> String {
        let run_id = ctx
            .pointer("/run/id")
            .and_then(Value::as_str)
            .unwrap_or("run");
        idempotency_key(run_id, &self.step_id, items)
    }

    /// Send `prepared` once; the answer and attempt `n` as the record keeps
    /// it (its error is set by [`settle`] once the outcome is known).
    pub(super) async fn exchange(
        &self,
        prepared: &Prepared,
        env: &StepEnv<'_>,
        redactor: &Redactor,
        n: u32,
    ) -> (Result<Response, String>, Attempt) {
        let started_at = Timestamp::now();
        let clock = Instant::now();
        let result = env.http.send(&self.step_id, env.items, prepared).await;
        let duration_ms = clock.elapsed().as_millis() as u64;
        let attempt = attempt_of(prepared, &result, n, started_at, duration_ms, redactor);
        (result, attempt)
    }
}

/// The record of one request and its answer (or failure), redacted.
pub(super) fn attempt_of(
    prepared: &Prepared,
    result: &Result<Response, String>,
    n: u32,
    started_at: Timestamp,
    duration_ms: u64,
    redactor: &Redactor,
) -> Attempt {
    let learnt = crate::secret::learnt().redactor();
    let mut request = prepared.record(redactor);
    if !learnt.is_empty() {
        learnt.redact_value(&mut request.body);
        learnt.redact_map(&mut request.headers);
        learnt.redact_str(&mut request.url);
    }
    let mut attempt = Attempt {
        n,
        started_at,
        duration_ms,
        request,
        response: None,
        error: None,
    };
    match result {
        Ok(resp) => {
            let (mut body, body_size) = kept_body(&resp.body, resp.size);
            let mut headers = resp.headers.clone();
            for r in [redactor, &*learnt] {
                r.redact_value(&mut body);
                r.redact_map(&mut headers);
            }
            attempt.response = Some(AttemptResponse {
                status: resp.status,
                headers,
                body,
                body_size,
            });
        }
        Err(e) => attempt.error = Some(e.clone()),
    }
    attempt
}

/// Give an answered attempt the error its outcome carries, and keep no
/// secret in any error (a transport error names the URL, which may carry
/// one).
pub(super) fn settle(attempt: &mut Attempt, outcome: &Outcome, redactor: &Redactor) {
    if attempt.response.is_some() {
        if let Outcome::Failed(e) | Outcome::Retry { error: e, .. } = outcome {
            attempt.error = Some(e.clone());
        }
    }
    if let Some(e) = &mut attempt.error {
        redactor.redact_str(e);
        crate::secret::learnt().redactor().redact_str(e);
    }
}

/// Remove the object entries whose value is null, at any depth, and the
/// objects that this empties (`priority: {name: …}` without a name goes
/// whole); an object written empty stays, and array items stay (a null
/// there is a value, an empty cell say). True when `v` was emptied.
fn prune_nulls(v: &mut Value) -> bool {
    match v {
        Value::Object(m) => {
            let before = m.len();
            m.retain(|_, v| !v.is_null() && !prune_nulls(v));
            before > 0 && m.is_empty()
        }
        Value::Array(items) => {
            items.iter_mut().for_each(|i| {
                prune_nulls(i);
            });
            false
        }
        Value::Null | Value::Bool(_) | Value::Number(_) | Value::String(_) => false,
    }
}

/// `<run id>.<step id>`, and inside loops `.<index>` per loop, outermost
/// first: stable across retries and resumes, fresh in a replay (a new run).
pub fn idempotency_key(run_id: &str, step_id: &str, items: &[usize]) -> String {
    use std::fmt::Write;
    let mut key = format!("{run_id}.{step_id}");
    for i in items {
        let _ = write!(key, ".{i}");
    }
    key
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "text",
        Value::Array(_) => "a list",
        Value::Object(_) => "a mapping",
    }
}

/// Decide what an answer (or a failure to get one) means for the step.
pub fn decide(
    result: &Result<Response, String>,
    attempt: u32,
    policy: &RetryPolicy,
    success: &[StatusRange],
    now: Timestamp,
) -> Outcome {
    let (error, retry_after) = match result {
        Ok(resp) if success.iter().any(|r| r.contains(resp.status)) => {
            return Outcome::Succeeded(output(resp))
        }
        Ok(resp) => {
            let retryable = matches!(resp.status, 408 | 429 | 500..=599);
            let error = format!("HTTP {}", resp.status);
            if !retryable {
                return Outcome::Failed(error);
            }
            (error, retry_after(&resp.headers, now))
        }
        Err(e) => (e.clone(), None),
    };
    if attempt >= policy.attempts {
        let error = if policy.attempts > 1 {
            format!("{error} (gave up after {attempt} attempts)")
        } else {
            error
        };
        return Outcome::Failed(error);
    }
    let delay = retry_after.unwrap_or_else(|| backoff(policy, attempt));
    Outcome::Retry {
        error,
        at: now.plus(delay),
    }
}

/// Exponential backoff with full jitter: a uniformly random delay up to
/// `backoff * 2^(attempt-1)`, capped at `max_backoff`.
pub fn backoff(policy: &RetryPolicy, attempt: u32) -> Duration {
    let exp = policy.backoff.saturating_mul(
        1u32.checked_shl(attempt.saturating_sub(1))
            .unwrap_or(u32::MAX),
    );
    let cap = exp.min(policy.max_backoff);
    let ms = cap.as_millis() as u64;
    Duration::from_millis(fastrand::u64(0..=ms))
}

/// `Retry-After` as seconds or an HTTP date, bounded to a day.
fn retry_after(headers: &BTreeMap<String, String>, now: Timestamp) -> Option<Duration> {
    let v = headers.get("retry-after")?.trim();
    let d = if let Ok(secs) = v.parse::<u64>() {
        Duration::from_secs(secs)
    } else {
        let at = httpdate::parse_http_date(v).ok()?;
        let at_ms = at.duration_since(std::time::UNIX_EPOCH).ok()?.as_millis() as u64;
        Duration::from_millis(at_ms.saturating_sub(now.0))
    };
    Some(d.min(Duration::from_secs(86_400)))
}

/// A response as a step's output: `{"status", "headers", "body"}`.
pub(super) fn output(resp: &Response) -> Value {
    let body = if resp.body.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&resp.body)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&resp.body).into_owned()))
    };
    let headers: Map<String, Value> = resp
        .headers
        .iter()
        .map(|(k, v)| (k.clone(), Value::String(v.clone())))
        .collect();
    serde_json::json!({ "status": resp.status, "headers": headers, "body": body })
}

/// Sends prepared requests: through the shared keep-alive clients, or not
/// at all (a dry run shows the request it would have sent).
#[derive(Clone)]
pub enum Sender {
    Live {
        plain: reqwest::Client,
        follow: reqwest::Client,
        policy: super::policy::OutboundPolicy,
    },
    /// Sends nothing: answers from [`Canned`] and notes each request.
    Canned(std::sync::Arc<Canned>),
}

/// One answer of a mock: a response, or a transport error.
pub type CannedAnswer = Result<Response, String>;

/// The canned answers of one step.
#[derive(Debug, Clone)]
pub enum Mock {
    /// One answer per attempt, the last one repeating.
    Attempts(Vec<CannedAnswer>),
    /// A step inside a `for_each`: per item (by the index of the innermost
    /// loop) its answers per attempt; the last item's list serves the
    /// items after it.
    PerItem(Vec<Vec<CannedAnswer>>),
}

impl Mock {
    /// Whether it gives any answer at all.
    fn answers_anything(&self) -> bool {
        match self {
            Mock::Attempts(a) => !a.is_empty(),
            Mock::PerItem(items) => items.iter().any(|a| !a.is_empty()),
        }
    }
}

/// A request a step would have sent, with the loop items it was sent for.
#[derive(Debug, Clone)]
pub struct SentRequest {
    pub step_id: String,
    pub items: Vec<usize>,
    pub request: Prepared,
}

/// Answers for a run that must not reach the network (tests, dry runs):
/// per step id its [`Mock`]; a step with no answer gets `200` with an
/// empty body.
#[derive(Default)]
pub struct Canned {
    mocks: BTreeMap<String, Mock>,
    /// Requests made so far per step and item: which attempt is next.
    calls: std::sync::Mutex<BTreeMap<(String, Vec<usize>), usize>>,
    sent: std::sync::Mutex<Vec<SentRequest>>,
}

impl Canned {
    /// Per step id a queue of answers, one per attempt.
    pub fn new(answers: BTreeMap<String, Vec<CannedAnswer>>) -> Canned {
        Canned::with_mocks(
            answers
                .into_iter()
                .map(|(k, v)| (k, Mock::Attempts(v)))
                .collect(),
        )
    }

    pub fn with_mocks(mocks: BTreeMap<String, Mock>) -> Canned {
        Canned {
            mocks,
            calls: std::sync::Mutex::default(),
            sent: std::sync::Mutex::default(),
        }
    }

    /// Whether answers were given for this step (a test's `mock:`); a step
    /// without gets a plain `200`, taken as a success whatever a
    /// connector's `ok_when` says.
    pub fn mocked(&self, step_id: &str) -> bool {
        self.mocks.get(step_id).is_some_and(Mock::answers_anything)
    }

    /// The requests steps would have sent, by step id, in order.
    pub fn sent(&self) -> Vec<(String, Prepared)> {
        self.sent_requests()
            .into_iter()
            .map(|s| (s.step_id, s.request))
            .collect()
    }

    /// The requests steps would have sent, with their loop items, in order.
    pub fn sent_requests(&self) -> Vec<SentRequest> {
        self.sent.lock().map(|s| s.clone()).unwrap_or_default()
    }

    fn answer(&self, step_id: &str, items: &[usize], p: &Prepared) -> CannedAnswer {
        if let Ok(mut sent) = self.sent.lock() {
            sent.push(SentRequest {
                step_id: step_id.to_string(),
                items: items.to_vec(),
                request: p.clone(),
            });
        }
        let n = {
            let mut calls = self
                .calls
                .lock()
                .map_err(|_| "canned answers poisoned".to_string())?;
            let n = calls
                .entry((step_id.to_string(), items.to_vec()))
                .or_default();
            *n += 1;
            *n - 1
        };
        let list = match self.mocks.get(step_id) {
            Some(Mock::Attempts(list)) => list.as_slice(),
            Some(Mock::PerItem(per_item)) => {
                let i = items.last().copied().unwrap_or(0);
                per_item
                    .get(i)
                    .or(per_item.last())
                    .map_or(&[][..], Vec::as_slice)
            }
            None => &[],
        };
        match list.get(n).or(list.last()) {
            Some(a) => a.clone(),
            None => Ok(Response::new(200, BTreeMap::new(), Vec::new())),
        }
    }
}

impl Sender {
    /// The clients that send for `serve` and `run --send`. They use no
    /// proxy, whatever `HTTP_PROXY`, `HTTPS_PROXY` or `ALL_PROXY` say: a
    /// proxy resolves and connects on our behalf, so the address policy
    /// (applied in our resolver and to IP literals) would never see where
    /// a request really goes.
    pub fn live(policy: super::policy::OutboundPolicy) -> Result<Sender, String> {
        let build = |redirects| {
            reqwest::Client::builder()
                .no_proxy()
                .redirect(redirects)
                .dns_resolver(std::sync::Arc::new(super::policy::PolicyResolver(policy)))
                .user_agent(concat!("hookflow/", env!("CARGO_PKG_VERSION")))
                .pool_idle_timeout(Duration::from_secs(60))
                .build()
                .map_err(|e| format!("cannot build the HTTP client: {e}"))
        };
        // Redirect targets given as IP literals never reach the resolver:
        // check them here.
        let follow = reqwest::redirect::Policy::custom(move |attempt| {
            if attempt.previous().len() >= 10 {
                return attempt.error("too many redirects (10)");
            }
            match policy.check_url(attempt.url()) {
                Ok(()) => attempt.follow(),
                Err(e) => attempt.error(e),
            }
        });
        Ok(Sender::Live {
            plain: build(reqwest::redirect::Policy::none())?,
            follow: build(follow)?,
            policy,
        })
    }

    /// Send `p` for step `step_id` (in the loop items `items`).
    pub async fn send(
        &self,
        step_id: &str,
        items: &[usize],
        p: &Prepared,
    ) -> Result<Response, String> {
        match self {
            Sender::Live {
                plain,
                follow,
                policy,
            } => {
                policy.check_url(&p.url)?;
                let client = if p.follow_redirects { follow } else { plain };
                let mut req = client
                    .request(p.method.clone(), p.url.clone())
                    .timeout(p.timeout);
                for (k, v) in &p.headers {
                    req = req.header(k, v);
                }
                if !p.body.is_empty() {
                    req = req.body(p.body.clone());
                }
                let mut resp = req.send().await.map_err(|e| describe(&e, p.timeout))?;
                let status = resp.status().as_u16();
                let headers = resp
                    .headers()
                    .iter()
                    .map(|(k, v)| {
                        (
                            k.as_str().to_string(),
                            String::from_utf8_lossy(v.as_bytes()).into_owned(),
                        )
                    })
                    .collect();
                // Past MAX_RESPONSE_BYTES the body is still read, only to
                // be counted: the record notes the full size, a chunked
                // answer announces none, and a connection read to the end
                // can be reused. The step's timeout bounds the reading; if
                // it stops early (time is up, the connection drops), the
                // answer stands, with the announced size when there is one.
                let announced = resp.content_length();
                let mut body = Vec::new();
                let mut size: usize = 0;
                loop {
                    match resp.chunk().await {
                        Ok(Some(chunk)) => {
                            size = size.saturating_add(chunk.len());
                            let room = MAX_RESPONSE_BYTES.saturating_sub(body.len());
                            body.extend_from_slice(&chunk[..room.min(chunk.len())]);
                        }
                        Ok(None) => break,
                        Err(_) if size > MAX_RESPONSE_BYTES => {
                            let announced =
                                announced.and_then(|n| usize::try_from(n).ok()).unwrap_or(0);
                            size = size.max(announced);
                            break;
                        }
                        Err(e) => return Err(describe(&e, p.timeout)),
                    }
                }
                Ok(Response {
                    status,
                    headers,
                    body,
                    size,
                })
            }
            Sender::Canned(canned) => canned.answer(step_id, items, p),
        }
    }
}

fn describe(e: &reqwest::Error, timeout: Duration) -> String {
    if e.is_timeout() {
        return format!("timed out after {}", humantime::format_duration(timeout));
    }
    // reqwest's own message hides the cause ("error sending request"); the
    // chain says what actually happened (refused, DNS, TLS…).
    let mut msg = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        msg = format!("{msg}: {s}");
        source = s.source();
    }
    msg
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resp(status: u16, headers: &[(&str, &str)]) -> Result<Response, String> {
        Ok(Response::new(
            status,
            headers
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            b"{\"ok\":true}".to_vec(),
        ))
    }

    #[test]
    fn decides_success_retry_and_failure() {
        let p = RetryPolicy {
            attempts: 3,
            backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(10),
        };
        let ok = [StatusRange::parse("2xx").expect("valid")];
        let now = Timestamp(1_000_000);
        match decide(&resp(201, &[]), 1, &p, &ok, now) {
            Outcome::Succeeded(v) => assert_eq!(v["body"]["ok"], true),
            o => panic!("{o:?}"),
        }
        assert_eq!(
            decide(&resp(400, &[]), 1, &p, &ok, now),
            Outcome::Failed("HTTP 400".into())
        );
        assert!(matches!(
            decide(&resp(503, &[]), 1, &p, &ok, now),
            Outcome::Retry { .. }
        ));
        assert!(matches!(
            decide(&Err("refused".into()), 2, &p, &ok, now),
            Outcome::Retry { .. }
        ));
        assert_eq!(
            decide(&resp(503, &[]), 3, &p, &ok, now),
            Outcome::Failed("HTTP 503 (gave up after 3 attempts)".into())
        );
        assert_eq!(
            decide(&resp(429, &[("retry-after", "7")]), 1, &p, &ok, now),
            Outcome::Retry {
                error: "HTTP 429".into(),
                at: Timestamp(1_007_000)
            }
        );
        let with_404 = [ok[0], StatusRange::parse("404").expect("valid")];
        assert!(matches!(
            decide(&resp(404, &[]), 1, &p, &with_404, now),
            Outcome::Succeeded(_)
        ));
    }

    #[test]
    fn backoff_grows_and_is_capped() {
        let p = RetryPolicy {
            attempts: 10,
            backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(10),
        };
        for _ in 0..50 {
            let d1 = backoff(&p, 1);
            assert!(d1 <= Duration::from_secs(1), "{d1:?}");
            assert!(backoff(&p, 9) <= Duration::from_secs(10));
        }
    }

    #[test]
    fn a_prepared_request_prints_no_secret() {
        let p = Prepared {
            method: reqwest::Method::POST,
            url: reqwest::Url::parse("https://api.example.com/hook/tok-9d2f?key=tok-9d2f")
                .expect("valid"),
            headers: vec![("Authorization".into(), "Bearer tok-9d2f".into())],
            body: b"{\"key\":\"tok-9d2f\"}".to_vec(),
            timeout: Duration::from_secs(1),
            follow_redirects: false,
        };
        let text = format!("{p:?}");
        assert!(!text.contains("tok-9d2f"), "{text}");
        assert!(text.contains("https://api.example.com") && text.contains("Authorization"));
        // The record redacts in every part.
        let r = crate::secret::Redactor::new([crate::secret::Secret::from("tok-9d2f")]);
        let kept = serde_json::to_string(&p.record(&r)).expect("json");
        assert!(!kept.contains("tok-9d2f"), "{kept}");
    }

    #[test]
    fn status_ranges() {
        assert_eq!(
            StatusRange::parse("2xx"),
            Some(StatusRange { lo: 200, hi: 299 })
        );
        assert_eq!(
            StatusRange::parse("404"),
            Some(StatusRange { lo: 404, hi: 404 })
        );
        assert_eq!(StatusRange::parse("9xx"), None);
        assert_eq!(StatusRange::parse("abc"), None);
    }

    /// `prepare` renders the URL through its compiled template: event data
    /// lands in the path or query, a URL wholly from the run context is
    /// taken as it is (the address policy judges it when sending), and a
    /// URL that is not http(s) is refused before anything is sent.
    #[test]
    fn prepare_sends_where_the_workflow_says() {
        use crate::expr::template::TemplateEnv;
        use serde_json::json;
        let env = |n: &str| (n == "BASE").then(|| "http://127.0.0.1:8080".to_string());
        let mut secrets = Vec::new();
        let mut action = |url: &str, query: &[(&str, &str)]| {
            let mut tenv = TemplateEnv {
                env: &env,
                secrets: &mut secrets,
            };
            let url = UrlTemplate::compile(url, &mut tenv).expect("a valid url template");
            let query = query
                .iter()
                .map(|(k, v)| {
                    let t = Template::compile(v, &mut tenv).expect("a valid template");
                    (k.to_string(), t)
                })
                .collect();
            HttpAction {
                step_id: "call".into(),
                method: reqwest::Method::POST,
                url,
                query,
                headers: Vec::new(),
                body: None,
                format: BodyFormat::Json,
                timeout: Duration::from_secs(1),
                retry: RetryPolicy::default(),
                success: vec![StatusRange { lo: 200, hi: 299 }],
                follow_redirects: false,
                uses: None,
            }
        };
        type Query<'a> = &'a [(&'a str, &'a str)];
        // (url template, step query, event, the URL sent or the error's words)
        let table: &[(&str, Query, Value, Result<&str, &str>)] = &[
            (
                "{{ env.BASE }}{{ $.event.x }}",
                &[],
                json!({"x": "@127.0.0.1:9412/stolen"}),
                Ok("http://127.0.0.1:8080/%40127.0.0.1%3A9412%2Fstolen"),
            ),
            (
                "{{ env.BASE }}/in/{{ $.event.x }}",
                &[("q", "{{ $.event.x }}")],
                json!({"x": "a&b=c d"}),
                Ok("http://127.0.0.1:8080/in/a%26b%3Dc%20d?q=a%26b%3Dc+d"),
            ),
            (
                "{{ $.event.url }}",
                &[],
                json!({"url": "https://hooks.slack.com/actions/T1/B2"}),
                Ok("https://hooks.slack.com/actions/T1/B2"),
            ),
            (
                "{{ $.event.url }}",
                &[],
                json!({"url": "file:///etc/passwd"}),
                Err("must start with http:// or https://"),
            ),
            (
                "{{ $.event.url }}",
                &[],
                json!({"url": "no url at all"}),
                Err("is not valid"),
            ),
            ("{{ $.event.url }}", &[], json!({}), Err("is not valid")),
        ];
        for (url, query, event, want) in table {
            let a = action(url, query);
            let got = a.prepare(&json!({ "event": event }), "run.call");
            match (got, want) {
                (Ok(p), Ok(sent)) => assert_eq!(p.url.as_str(), *sent, "{url} with {event}"),
                (Err(e), Err(words)) => assert!(e.contains(words), "{url} with {event}: {e}"),
                (Ok(p), Err(_)) => panic!("{url} with {event}: sent to {}", p.url),
                (Err(e), Ok(_)) => panic!("{url} with {event}: {e}"),
            }
        }
    }

    /// A connector body names every parameter; what a workflow leaves out
    /// (null) goes, and so does an object left empty by that, while an
    /// object written empty and array items stay.
    #[test]
    fn prune_nulls_drops_what_was_left_out() {
        use serde_json::json;
        let table = [
            (json!({"a": null, "b": 1}), json!({"b": 1})),
            (
                json!({"fields": {"priority": {"name": null}, "summary": "s"}}),
                json!({"fields": {"summary": "s"}}),
            ),
            (json!({"meta": {}}), json!({"meta": {}})),
            (
                json!({"rows": [null, {"x": null}]}),
                json!({"rows": [null, {}]}),
            ),
            (json!({"a": {"b": {"c": null}}}), json!({})),
        ];
        for (mut given, want) in table {
            let shown = given.to_string();
            prune_nulls(&mut given);
            assert_eq!(given, want, "{shown}");
        }
    }

    /// Basic's base64 of `user:secret` shares no substring with the secret
    /// the redactor knows in every case, so a credential header is kept as
    /// its scheme alone.
    #[test]
    fn a_credential_header_is_kept_as_its_scheme() {
        use base64::Engine as _;
        let basic = base64::engine::general_purpose::STANDARD.encode("AC0001:s3cr3t-token");
        let p = Prepared {
            method: reqwest::Method::POST,
            url: reqwest::Url::parse("https://api.example.com/x").expect("valid"),
            headers: vec![
                ("Authorization".into(), format!("Basic {basic}")),
                ("proxy-authorization".into(), "tok-only".into()),
                ("X-Request-Id".into(), "r-1".into()),
            ],
            body: Vec::new(),
            timeout: Duration::from_secs(1),
            follow_redirects: false,
        };
        let r = crate::secret::Redactor::new([crate::secret::Secret::from("s3cr3t-token")]);
        let kept = p.record(&r);
        let h = |n: &str| kept.headers.get(n).cloned().unwrap_or_default();
        assert_eq!(
            h("Authorization"),
            format!("Basic {}", crate::record::REDACTED)
        );
        assert_eq!(h("proxy-authorization"), crate::record::REDACTED);
        assert_eq!(h("X-Request-Id"), "r-1");
        let text = serde_json::to_string(&kept).expect("json");
        assert!(!text.contains(&basic[..8]), "{text}");
    }
}
