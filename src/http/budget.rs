//! The byte budget for inbound bodies in flight (`--max-inflight-body`).
//! `--max-body` bounds one body; this bounds all of them together, so many
//! concurrent large uploads cannot grow memory without limit. Each
//! `/hooks` request holds room for its body (one semaphore permit per
//! byte) from before the bytes are read until its answer is sent: by its
//! `Content-Length` up front when it gives one, else frame by frame as the
//! bytes arrive. Room that does not free up within [`WAIT`] is refused,
//! and the sender gets `503` with `Retry-After` (webhook senders retry).

use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// How long a body waits for room before it is refused.
pub const WAIT: Duration = Duration::from_secs(1);
/// The `Retry-After` sent with a refusal, in seconds.
pub const RETRY_AFTER_SECS: u64 = 1;

/// The shared budget; cheap to clone.
#[derive(Clone)]
pub struct BodyBudget {
    bytes: Arc<Semaphore>,
    total: usize,
}

/// Room held by one request; given back when dropped.
#[derive(Default)]
pub struct Held {
    permit: Option<OwnedSemaphorePermit>,
}

impl Held {
    /// Bytes held.
    pub fn bytes(&self) -> usize {
        self.permit
            .as_ref()
            .map_or(0, OwnedSemaphorePermit::num_permits)
    }
}

/// No room freed up in time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Full;

impl BodyBudget {
    /// A budget of `total` bytes (at most [`Semaphore::MAX_PERMITS`]).
    pub fn new(total: usize) -> BodyBudget {
        let total = total.min(Semaphore::MAX_PERMITS);
        BodyBudget {
            bytes: Arc::new(Semaphore::new(total)),
            total,
        }
    }

    /// The whole budget, in bytes.
    pub fn total(&self) -> usize {
        self.total
    }

    /// Bytes free right now.
    pub fn available(&self) -> usize {
        self.bytes.available_permits()
    }

    /// Add room for `n` more bytes to `held`, waiting up to `wait`.
    pub async fn reserve(&self, held: &mut Held, n: usize, wait: Duration) -> Result<(), Full> {
        if n == 0 {
            return Ok(());
        }
        // More than the budget (or than one acquire can take) never fits.
        let n = u32::try_from(n).map_err(|_| Full)?;
        if n as usize > self.total {
            return Err(Full);
        }
        let permit = tokio::time::timeout(wait, Arc::clone(&self.bytes).acquire_many_owned(n))
            .await
            .map_err(|_| Full)?
            // Only a closed semaphore fails, and this one is never closed.
            .map_err(|_| Full)?;
        match &mut held.permit {
            Some(p) => p.merge(permit),
            None => held.permit = Some(permit),
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn room_is_held_until_dropped_and_refused_when_full() {
        let budget = BodyBudget::new(100);
        let mut a = Held::default();
        budget.reserve(&mut a, 60, WAIT).await.expect("fits");
        budget.reserve(&mut a, 30, WAIT).await.expect("grows");
        assert_eq!(a.bytes(), 90);
        assert_eq!(budget.available(), 10);
        let mut b = Held::default();
        let short = Duration::from_millis(20);
        assert_eq!(budget.reserve(&mut b, 11, short).await, Err(Full));
        assert_eq!(b.bytes(), 0, "a refusal holds nothing");
        budget
            .reserve(&mut b, 10, short)
            .await
            .expect("what is left");
        assert_eq!(budget.reserve(&mut b, 101, short).await, Err(Full));
        drop(a);
        assert_eq!(budget.available(), 90);
        budget
            .reserve(&mut b, 0, short)
            .await
            .expect("nothing to hold");
        drop(b);
        assert_eq!(budget.available(), budget.total());
    }

    #[tokio::test]
    async fn a_waiting_body_gets_room_as_soon_as_it_frees_up() {
        let budget = BodyBudget::new(10);
        let mut a = Held::default();
        budget.reserve(&mut a, 10, WAIT).await.expect("fits");
        let waiter = {
            let budget = budget.clone();
            tokio::spawn(async move {
                let mut b = Held::default();
                budget
                    .reserve(&mut b, 5, Duration::from_secs(30))
                    .await
                    .map(|()| b.bytes())
            })
        };
        tokio::task::yield_now().await;
        drop(a);
        assert_eq!(waiter.await.expect("task"), Ok(5));
    }
}
