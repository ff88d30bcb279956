//! Records built the way the server builds them, for tests that drive a
//! store directly.

use hookflow::record::{Event, EventId, Run, RunId, Timestamp};
use serde_json::{json, Value};

/// An accepted event for workflow `w` at `/hooks/w`, received now.
pub fn event(id: EventId, body: Value) -> Event {
    serde_json::from_value(json!({
        "id": id, "received_at": Timestamp::now(),
        "path": "/hooks/w", "method": "POST", "headers": {}, "query": {},
        "body": body, "outcome": "accepted", "reason": null,
        "workflows": ["w"], "runs": []
    }))
    .expect("an event")
}

/// A queued run of `event` with these steps (id, kind), none started.
pub fn run_of(event: &Event, steps: &[(&str, &str)]) -> Run {
    let steps: Vec<Value> = steps
        .iter()
        .map(|(id, kind)| {
            json!({"id": id, "kind": kind, "status": "pending", "started_at": null,
                   "duration_ms": null, "output": null, "error": null, "logs": [], "attempts": []})
        })
        .collect();
    serde_json::from_value(json!({
        "id": RunId::generate(), "workflow": "w", "workflow_version": "v1",
        "event_id": event.id, "status": "queued", "attempt": 0,
        "created_at": Timestamp::now(), "started_at": null, "finished_at": null,
        "duration_ms": null, "next_attempt_at": null, "replay_of": null,
        "replays": [], "steps": steps
    }))
    .expect("a run")
}

/// `len` characters that compress about as little as real payloads.
pub fn noise(seed: u64, len: usize) -> String {
    const DIGITS: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            DIGITS[(x % 64) as usize] as char
        })
        .collect()
}
