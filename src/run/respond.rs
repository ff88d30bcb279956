//! The hand-off between a webhook request that waits for its workflow's
//! `respond` step and the executor that reaches it (SPEC §6.1), in this
//! process.
//!
//! The inbox registers a waiter for the event ([`Responders::wait`])
//! before the event is stored, so the run cannot reach its `respond` step
//! before someone listens; the store pushes fresh runs to this process's
//! own queue, so the node that ingested an event runs it and answers. The
//! executor hands over the rendered answer ([`Responders::answer`]), or
//! says that the run ended without one ([`Responders::ended`]); the request
//! gives up after its `respond_timeout` and answers `202`. Whatever
//! happens, dropping the [`Waiting`] removes the waiter, so a request that
//! timed out or whose sender hung up leaves nothing behind.

use crate::record::EventId;
use crate::step::respond::Answer;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::oneshot;

/// Requests waiting for a `respond` step, by event. Cheap to clone; a
/// std `Mutex` because every use is a map operation that never waits.
#[derive(Clone, Default)]
pub struct Responders(Arc<Mutex<HashMap<EventId, Waiter>>>);

struct Waiter {
    /// The workflow whose run answers (the first by name that responds).
    workflow: String,
    tx: oneshot::Sender<Reply>,
}

/// What the waiting request gets.
#[derive(Debug)]
enum Reply {
    Answer(Answer),
    /// The run ended (or failed) before its `respond` step.
    Ended,
}

/// A registered waiter; dropping it unregisters.
pub struct Waiting {
    event: EventId,
    rx: oneshot::Receiver<Reply>,
    responders: Responders,
}

impl Responders {
    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<EventId, Waiter>> {
        // A panic elsewhere while holding the lock leaves a usable map.
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Wait for the answer of `workflow`'s run of `event`.
    pub fn wait(&self, event: &EventId, workflow: &str) -> Waiting {
        let (tx, rx) = oneshot::channel();
        self.map().insert(
            event.clone(),
            Waiter {
                workflow: workflow.to_string(),
                tx,
            },
        );
        Waiting {
            event: event.clone(),
            rx,
            responders: self.clone(),
        }
    }

    /// The run of `workflow` for `event` reached its `respond` step. True
    /// when a request was waiting and got the answer.
    pub fn answer(&self, event: &EventId, workflow: &str, answer: Answer) -> bool {
        match self.take(event, workflow) {
            Some(tx) => tx.send(Reply::Answer(answer)).is_ok(),
            None => false,
        }
    }

    /// The run of `workflow` for `event` ended without answering: the
    /// request gets its `202` now rather than at its timeout.
    pub fn ended(&self, event: &EventId, workflow: &str) {
        if let Some(tx) = self.take(event, workflow) {
            let _ = tx.send(Reply::Ended);
        }
    }

    fn take(&self, event: &EventId, workflow: &str) -> Option<oneshot::Sender<Reply>> {
        let mut map = self.map();
        if map.get(event).is_some_and(|w| w.workflow == workflow) {
            map.remove(event).map(|w| w.tx)
        } else {
            None
        }
    }

    /// Requests waiting now.
    pub fn len(&self) -> usize {
        self.map().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Waiting {
    /// The answer, or `None` when the run ended first or `timeout` passed.
    pub async fn answer(mut self, timeout: Duration) -> Option<Answer> {
        match tokio::time::timeout(timeout, &mut self.rx).await {
            Ok(Ok(Reply::Answer(a))) => Some(a),
            Ok(Ok(Reply::Ended)) | Ok(Err(_)) | Err(_) => None,
        }
    }
}

impl Drop for Waiting {
    fn drop(&mut self) {
        // The entry, if still there, is this request's own: an event id
        // is registered once.
        self.responders.map().remove(&self.event);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(body: &str) -> Answer {
        Answer {
            status: 200,
            headers: Vec::new(),
            body: body.as_bytes().to_vec(),
            shown: serde_json::Value::from(body),
        }
    }

    #[tokio::test]
    async fn the_answer_reaches_the_request_that_waits_and_only_it() {
        let r = Responders::default();
        let event = EventId::generate();
        let waiting = r.wait(&event, "a");
        assert!(
            !r.answer(&event, "b", answer("wrong workflow")),
            "another workflow's run does not answer"
        );
        assert!(r.answer(&event, "a", answer("hi")));
        assert_eq!(
            waiting.answer(Duration::from_secs(5)).await,
            Some(answer("hi"))
        );
        assert!(r.is_empty());
        assert!(
            !r.answer(&event, "a", answer("again")),
            "one answer per request"
        );
    }

    #[tokio::test]
    async fn an_ended_run_or_a_timeout_gives_no_answer_and_leaves_nothing() {
        let r = Responders::default();
        let (e1, e2) = (EventId::generate(), EventId::generate());
        let first = r.wait(&e1, "a");
        r.ended(&e1, "a");
        assert_eq!(first.answer(Duration::from_secs(5)).await, None);
        let second = r.wait(&e2, "a");
        assert_eq!(second.answer(Duration::from_millis(10)).await, None);
        assert!(r.is_empty(), "a timed-out request removed its waiter");
        assert!(!r.answer(&e2, "a", answer("late")));
        // A request dropped while waiting (its sender hung up).
        let dropped = r.wait(&e2, "a");
        drop(dropped);
        assert!(r.is_empty());
    }
}
