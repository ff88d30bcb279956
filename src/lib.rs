//! # hookflow
//!
//! A webhook-to-workflow engine: webhooks come in on `/hooks/<path>`, are
//! verified and matched against YAML workflows, and each match becomes a run
//! whose steps filter, transform (Rhai) and forward (HTTP). Every event, run
//! and step result is kept in a store (embedded sled, or PostgreSQL shared
//! by several nodes) and served by `/api`.
//!
//! ## Layout
//!
//! Modules are listed ground floor first; each may use those before it and
//! never those after.
//!
//! | module | owns |
//! |---|---|
//! | [`secret`] | `Secret` (prints as `[redacted]`) and the `Redactor` of every encoding |
//! | [`record`] | stored data: `Event`, `Run`, `StepRecord`, `Attempt`, ids, statuses |
//! | [`metrics`] | counters and histograms for `/metrics` |
//! | [`signature`] | signature schemes: pure verification over raw bytes |
//! | [`jsonpath`] | RFC 9535 queries, parsed once |
//! | [`fault`] | crash points: where the crash tests stop the process |
//! | [`store`] | the storage interface (ingest, claim, load, save, schedule, finish, lists, state, versions, retention, change feed) and its backends |
//! | [`ready`] | readiness: the store takes writes, the run dispatcher turns |
//! | [`script`] | the sandboxed Rhai engine, its helper functions, and the threads that evaluate `when` scripts |
//! | [`expr`] | `{{ }}` templates and conditions |
//! | [`step`] | `filter`, `transform`, `http`, and flow control: `switch`, `for_each`, `delay`, `respond`; what a connector adds to an `http` step at run time (`uses`: params, `ok_when`, `error`; `oauth2`: the token cache) |
//! | [`workflow`] | YAML → checked, compiled `Workflow`, provider presets and `uses` steps included; the connector files (`workflow::connector`); the registry of loaded workflows |
//! | [`run`] | the scheduler (claims due runs), the executor (one run, step by step, branches and loop items included), and the hand-off of `respond` answers to the waiting request |
//! | [`inbound`] | deciding what an inbound request is, and storing it durably |
//! | [`testcase`] | workflow test cases: format, runner, comparison, export of a run |
//! | [`http`] | the router: hooks, API, health and readiness, admin access rules |
//! | [`server`], [`cli`], [`config`] | wiring and the command line |
//!
//! ## Life of an event
//!
//! 1. `POST /hooks/<path>` → [`http::hooks`] reads the body within the size
//!    limit → [`inbound::prepare`]: path, method, signature, body; then each
//!    workflow's `events` (a provider preset's event type) and `when`,
//!    those that run an `expr` on the script threads ([`script::pool`]),
//!    never on the threads that answer requests.
//! 2. [`inbound::Inbox::accept`] hands the event, its runs and their dedupe
//!    keys to [`store::Store::ingest`], which answers once they are durable
//!    together; only then does the sender get `202` — or, when a matched
//!    workflow has a `respond` step, the answer that step renders
//!    ([`run::respond`]), with `202` as the fallback.
//! 3. [`run::scheduler::dispatch`], on its own lower-priority threads,
//!    claims due runs from the store ([`store::Store::claim`]), bounded by a
//!    semaphore, and hands each to [`run::executor::Executor::execute`].
//! 4. The executor walks the steps from the first unfinished one, skipping
//!    those whose `if` is false, and saves the run after each step that
//!    acted outside it (a request, a script that may write state). A
//!    `switch` walks its chosen branch and a `for_each` each item the same
//!    way. What is saved has the workflow's secrets redacted
//!    ([`secret::Redactor`]); the next step gets outputs as they were.
//!    A `uses` step is an `http` step whose request a connector wrote
//!    ([`workflow::connector`] at load, [`step::uses`] at run time).
//! 5. A retryable `http` failure re-queues the run at its next attempt time,
//!    and a `delay` at its wake-up time (status `waiting`); otherwise the
//!    run ends `succeeded`, `filtered` or `failed`.
//! 6. [`http::api`] lists runs and events newest first with a cursor.

pub mod alloc;
pub mod cli;
pub mod config;
pub mod expr;
pub mod fault;
pub mod http;
pub mod inbound;
pub mod jsonpath;
pub mod metrics;
pub mod priority;
pub mod ready;
pub mod record;
pub mod run;
pub mod script;
pub mod secret;
pub mod server;
pub mod signature;
pub mod step;
pub mod store;
pub mod testcase;
pub mod workflow;
