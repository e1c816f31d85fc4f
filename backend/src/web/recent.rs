//! Aggregates over the whole estate that dashboards ask for again and again (the posture
//! summaries, the overview's counts per stage): each is computed at most once per `max_age` by
//! this server, and whoever asks meanwhile, or while it is being computed, gets that result and
//! the time it was computed. Many clients polling a dashboard cost one count, not one each.

use std::future::Future;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use tokio::sync::Mutex;

/// How long the aggregates of the console and the API are served before being computed again.
pub const MAX_AGE: Duration = Duration::from_secs(5);

/// One aggregate's latest value.
pub struct Recent<T> {
    max_age: Duration,
    slot: Mutex<Option<Computed<T>>>,
}

struct Computed<T> {
    at: Instant,
    computed_at: DateTime<Utc>,
    value: T,
}

impl<T: Clone> Recent<T> {
    pub fn new(max_age: Duration) -> Self {
        Self {
            max_age,
            slot: Mutex::new(None),
        }
    }

    /// The value computed at most `max_age` ago, or `compute`'s now (one caller computes, the
    /// others wait for its result). An error is not kept: the next caller tries again.
    pub async fn get<E, F, Fut>(&self, compute: F) -> Result<(DateTime<Utc>, T), E>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        let mut slot = self.slot.lock().await;
        if let Some(fresh) = slot.as_ref().filter(|c| c.at.elapsed() < self.max_age) {
            return Ok((fresh.computed_at, fresh.value.clone()));
        }
        let at = Instant::now();
        let computed_at = Utc::now();
        let value = compute().await?;
        *slot = Some(Computed {
            at,
            computed_at,
            value: value.clone(),
        });
        Ok((computed_at, value))
    }
}

impl<T: Clone> Default for Recent<T> {
    fn default() -> Self {
        Self::new(MAX_AGE)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    #[tokio::test]
    async fn concurrent_callers_share_one_computation_until_it_ages() {
        let recent = Arc::new(Recent::<usize>::new(Duration::from_millis(200)));
        let runs = Arc::new(AtomicUsize::new(0));
        let mut callers = Vec::new();
        for _ in 0..8 {
            let (recent, runs) = (recent.clone(), runs.clone());
            callers.push(tokio::spawn(async move {
                recent
                    .get(|| async {
                        tokio::time::sleep(Duration::from_millis(20)).await;
                        Ok::<_, ()>(runs.fetch_add(1, Ordering::SeqCst) + 1)
                    })
                    .await
                    .unwrap()
                    .1
            }));
        }
        for caller in callers {
            assert_eq!(caller.await.unwrap(), 1);
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
        let (_, value) = recent
            .get(|| async { Ok::<_, ()>(runs.fetch_add(1, Ordering::SeqCst) + 1) })
            .await
            .unwrap();
        assert_eq!(value, 2, "computed again once aged");
    }

    #[tokio::test]
    async fn an_error_is_not_kept() {
        let recent = Recent::<u8>::default();
        assert!(recent.get(|| async { Err::<u8, _>("down") }).await.is_err());
        assert_eq!(recent.get(|| async { Ok::<_, ()>(7) }).await.unwrap().1, 7);
    }
}
