//! In-process cost of one event through the shipped Stripe example: match
//! the path, verify the signature, evaluate `when`, run the filter and the
//! Rhai transform, and render the outbound request (no network, no store).
//!
//! Run: `cargo bench --bench event_cost`. Prints the median per event over
//! repeated samples, and the same for the parts on their own, each with the
//! allocator calls it makes per event. The calls are counted by this
//! bench's own global allocator: a counter around the one the server runs
//! with ([`hookflow::alloc`], jemalloc), set up as `hookflow serve` sets it
//! up. (Until 2026-12-06 it counted around the system allocator, whose
//! malloc and free took about a fifth of the bench's time and none of the
//! server's.)

use hookflow::alloc::Allocator;
use hookflow::expr::template::ProcessEnv;
use hookflow::inbound::{classify, Decision, Inbound};
use hookflow::record::Timestamp;
use hookflow::run::into_context;
use hookflow::script::Engine;
use hookflow::signature::{sign, Algorithm};
use hookflow::step::{Action, Step};
use hookflow::workflow::registry;
use serde_json::{Map, Value};
use std::alloc::{GlobalAlloc, Layout};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

/// The server's allocator, counting calls that hand out a block (`alloc`,
/// `alloc_zeroed`, `realloc`).
struct Counting;

static CALLS: AtomicU64 = AtomicU64::new(0);

// SAFETY: every call is passed on to the server's allocator unchanged.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        CALLS.fetch_add(1, Ordering::Relaxed);
        unsafe { Allocator.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        CALLS.fetch_add(1, Ordering::Relaxed);
        unsafe { Allocator.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        CALLS.fetch_add(1, Ordering::Relaxed);
        unsafe { Allocator.realloc(ptr, layout, new_size) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { Allocator.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

const SAMPLES: usize = 31;
const PER_SAMPLE: usize = 2_000;

fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(|a, b| a.total_cmp(b));
    xs[xs.len() / 2]
}

fn measure(name: &str, mut f: impl FnMut()) -> f64 {
    let before = CALLS.load(Ordering::Relaxed);
    for _ in 0..PER_SAMPLE {
        f();
    }
    let allocs = (CALLS.load(Ordering::Relaxed) - before) as f64 / PER_SAMPLE as f64;
    let samples: Vec<f64> = (0..SAMPLES)
        .map(|_| {
            let t = Instant::now();
            for _ in 0..PER_SAMPLE {
                f();
            }
            t.elapsed().as_secs_f64() * 1e6 / PER_SAMPLE as f64
        })
        .collect();
    let (lo, hi) = {
        let mut s = samples.clone();
        s.sort_by(|a, b| a.total_cmp(b));
        (s[0], s[s.len() - 1])
    };
    let m = median(samples);
    println!(
        "{name:<44} median {m:>8.2} µs  {allocs:>6.1} allocations   (min {lo:.2}, max {hi:.2}; {SAMPLES} samples × {PER_SAMPLE})"
    );
    m
}

fn main() {
    hookflow::alloc::tune_memory();
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let engine = Engine::default();
    let files = registry::workflow_files(&[root.join("workflows")]).expect("workflows folder");
    let catalog = hookflow::workflow::connector::Catalog::load(&root.join("connectors"), &engine);
    let reg = registry::load(
        &files,
        &ProcessEnv,
        &root.join("scripts"),
        std::sync::Arc::new(catalog),
        &engine,
        hookflow::workflow::Serving::Local,
    );
    let wf = reg
        .by_name("stripe-payment-to-slack")
        .expect("the Stripe example loads")
        .clone();
    let body = std::fs::read(root.join("workflows/fixtures/stripe_payment_intent_succeeded.json"))
        .expect("fixture");
    let now = Timestamp::now();
    let t = now.0 / 1000;
    let mut signed = format!("{t}.").into_bytes();
    signed.extend_from_slice(&body);
    let sig = hex::encode(sign(Algorithm::Sha256, b"whsec_hookflow_demo", &signed));
    let mut headers = BTreeMap::new();
    headers.insert("content-type".to_string(), "application/json".to_string());
    headers.insert("stripe-signature".to_string(), format!("t={t},v1={sig}"));
    let req = Inbound {
        method: "POST".into(),
        hook_path: "/stripe".into(),
        target: "/hooks/stripe".into(),
        headers,
        query: BTreeMap::new(),
        body: body.into(),
        source: None,
    };

    let run_steps = |event: hookflow::record::Event, run_id: &hookflow::record::RunId| -> usize {
        let mut ctx = into_context(event, &wf.name, Some(run_id), 1, Map::new());
        let mut sent = 0;
        for Step {
            id,
            condition,
            action,
        } in &wf.steps
        {
            if let Some(c) = condition {
                if !c.eval(&ctx).expect("if evaluates") {
                    continue;
                }
            }
            let out = match action {
                Action::Filter(c) => Value::Bool(c.eval(&ctx).expect("filter evaluates")),
                Action::Transform(s) => s.run(&ctx, None).result.expect("script runs"),
                Action::Http(h) => {
                    let p = h
                        .render_request(&mut ctx, "run.key")
                        .expect("request renders");
                    sent += p.body.len();
                    Value::Null
                }
                // The Stripe example has no flow control.
                Action::Switch(_) | Action::ForEach(_) | Action::Delay(_) | Action::Respond(_) => {
                    panic!("step `{id}`: this bench measures the Stripe example's steps only")
                }
            };
            if let Some(Value::Object(steps)) = ctx.get_mut("steps") {
                steps.insert(id.clone(), out);
            }
        }
        sent
    };

    println!("hookflow per-event cost, Stripe example (release build, one thread)");
    let total = measure(
        "whole event: classify + filter + transform + render",
        || {
            let Decision::Store { event, runs, .. } = classify(&reg, &req, now) else {
                panic!("the event is accepted");
            };
            assert_eq!(runs.len(), 1);
            std::hint::black_box(run_steps(*event, &runs[0].id));
        },
    );
    let Decision::Store { event, runs, .. } = classify(&reg, &req, now) else {
        panic!("the event is accepted");
    };
    measure("  classify (match, signature, parse, when)", || {
        std::hint::black_box(classify(&reg, &req, now));
    });
    measure("    parse the body", || {
        std::hint::black_box(
            hookflow::record::body::parse_as(hookflow::record::body::BodyKind::Json, &req.body)
                .expect("JSON"),
        );
    });
    // The load bench's 1.5 KB body, larger objects than the example's:
    // hookflow's reader against serde_json's, in the same run.
    let large = std::fs::read(root.join("benches/fixtures/stripe_payment_intent_1500.json"))
        .expect("the load bench's event");
    measure("    parse the load bench's 1.5 KB body", || {
        std::hint::black_box(
            hookflow::record::body::parse_as(hookflow::record::body::BodyKind::Json, &large)
                .expect("JSON"),
        );
    });
    measure("      the same with serde_json's reader", || {
        std::hint::black_box(serde_json::from_slice::<Value>(&large).expect("JSON"));
    });
    measure("  steps (filter, Rhai transform, render)", || {
        std::hint::black_box(run_steps((*event).clone(), &runs[0].id));
    });
    let mut ctx = into_context((*event).clone(), &wf.name, Some(&runs[0].id), 1, Map::new());
    for Step { id, action, .. } in &wf.steps {
        let out = match action {
            Action::Filter(c) => {
                measure(&format!("    filter `{id}`"), || {
                    std::hint::black_box(c.eval(&ctx).expect("ok"));
                });
                Value::Bool(true)
            }
            Action::Transform(s) => {
                measure(&format!("    transform `{id}`"), || {
                    std::hint::black_box(s.run(&ctx, None));
                });
                s.run(&ctx, None).result.expect("runs")
            }
            Action::Http(h) => {
                // A connector action (`uses:`) renders its parameters into
                // `$.params` first, as the executor does.
                measure(&format!("    render request `{id}`"), || {
                    std::hint::black_box(h.render_request(&mut ctx, "run.key").expect("ok"));
                });
                Value::Null
            }
            Action::Switch(_) | Action::ForEach(_) | Action::Delay(_) | Action::Respond(_) => {
                panic!("step `{id}`: this bench measures the Stripe example's steps only")
            }
        };
        if let Some(Value::Object(steps)) = ctx.get_mut("steps") {
            steps.insert(id.clone(), out);
        }
    }
    measure("    build the run context", || {
        std::hint::black_box(into_context(
            (*event).clone(),
            &wf.name,
            Some(&runs[0].id),
            1,
            Map::new(),
        ));
    });
    let goal = 20.0;
    println!(
        "goal: below {goal} µs median per event → {}",
        if total < goal { "met" } else { "NOT met" }
    );
}
