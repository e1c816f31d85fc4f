//! Collectors: raw engine and cluster APIs → inventory records (pure mapping) → batched writes.
//! Each source runs as one supervised task that reconnects with [`Backoff`] and stops when its
//! [`CancellationToken`] fires; a source that is down never holds up the others.

pub mod docker;
pub mod import;
pub mod kubernetes;

use std::future::Future;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

/// Exponential backoff between reconnect attempts, with a little jitter so that many sources
/// failing together do not retry in lockstep.
#[derive(Debug, Clone)]
pub struct Backoff {
    initial: Duration,
    max: Duration,
    current: Duration,
}

impl Backoff {
    pub fn new(initial: Duration, max: Duration) -> Self {
        Self {
            initial,
            max,
            current: initial,
        }
    }

    /// The wait before the next attempt; doubles up to the maximum.
    pub fn next_delay(&mut self) -> Duration {
        let delay = self.current;
        self.current = (self.current * 2).min(self.max);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        // Up to 10 % more, never beyond the maximum.
        let jitter = delay.mul_f64(f64::from(nanos % 100) / 1000.0);
        (delay + jitter).min(self.max.max(self.initial))
    }

    /// A session made progress (it connected): the next failure starts from the initial delay.
    pub fn reset(&mut self) {
        self.current = self.initial;
    }
}

impl Default for Backoff {
    fn default() -> Self {
        Self::new(Duration::from_secs(1), Duration::from_secs(60))
    }
}

/// How one session of a supervised task ended.
#[derive(Debug)]
pub enum Outcome {
    /// Cancelled: the task stops.
    Stopped,
    /// Failed; `progressed` when it had connected first (the backoff starts over).
    Failed { error: String, progressed: bool },
}

/// Runs `session` until it stops or `cancel` fires, waiting with `backoff` after each failure.
pub async fn supervise<F, Fut>(
    name: &str,
    cancel: CancellationToken,
    mut backoff: Backoff,
    mut session: F,
) where
    F: FnMut() -> Fut,
    Fut: Future<Output = Outcome>,
{
    loop {
        if cancel.is_cancelled() {
            return;
        }
        let outcome = tokio::select! {
            () = cancel.cancelled() => return,
            outcome = session() => outcome,
        };
        match outcome {
            Outcome::Stopped => return,
            Outcome::Failed { error, progressed } => {
                if progressed {
                    backoff.reset();
                }
                let delay = backoff.next_delay();
                tracing::warn!(source = name, %error, retry_in = ?delay, "collector session failed");
                tokio::select! {
                    () = cancel.cancelled() => return,
                    () = tokio::time::sleep(delay) => {}
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::sync::Arc;

    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_maximum_and_resets() {
        let mut backoff = Backoff::new(Duration::from_secs(1), Duration::from_secs(8));
        let delays: Vec<u64> = (0..6).map(|_| backoff.next_delay().as_secs()).collect();
        assert_eq!(delays, vec![1, 2, 4, 8, 8, 8]);
        backoff.reset();
        assert_eq!(backoff.next_delay().as_secs(), 1);
    }

    #[tokio::test]
    async fn a_failing_session_is_retried_until_cancelled() {
        let attempts = Arc::new(AtomicU32::new(0));
        let cancel = CancellationToken::new();
        let counter = attempts.clone();
        let stop = cancel.clone();
        supervise(
            "test",
            cancel.clone(),
            Backoff::new(Duration::from_millis(1), Duration::from_millis(2)),
            move || {
                let counter = counter.clone();
                let stop = stop.clone();
                async move {
                    if counter.fetch_add(1, Ordering::SeqCst) == 3 {
                        stop.cancel();
                    }
                    Outcome::Failed {
                        error: "down".into(),
                        progressed: false,
                    }
                }
            },
        )
        .await;
        assert_eq!(attempts.load(Ordering::SeqCst), 4);
    }
}
