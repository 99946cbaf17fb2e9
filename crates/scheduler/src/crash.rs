//! Upstream's `HandleCrash` and `wait.Until` for long-running tasks: a
//! panic is caught and logged, and a task that ends or panics starts again
//! after a back-off, for as long as the process lives. The controller
//! manager uses this too.

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::time::Duration;

use futures::FutureExt;

const FIRST_RESTART: Duration = Duration::from_millis(100);
const MAX_RESTART: Duration = Duration::from_secs(30);
/// A task that ran this long before it stopped was not crash-looping: it
/// starts again after the shortest back-off.
const STABLE: Duration = Duration::from_secs(60);

/// What a caught panic says.
pub fn message(panic: &(dyn std::any::Any + Send)) -> String {
    match (panic.downcast_ref::<&str>(), panic.downcast_ref::<String>()) {
        (Some(s), _) => s.to_string(),
        (_, Some(s)) => s.clone(),
        _ => "a panic without a message".into(),
    }
}

/// Runs `start()` for ever: each time it ends or panics it is logged,
/// `restarted` is called (to count it) and it starts again after a
/// back-off (100 ms doubling to 30 s).
pub async fn supervise<F, Fut>(name: impl AsRef<str>, mut start: F, restarted: impl Fn())
where
    F: FnMut() -> Fut,
    Fut: Future<Output = ()>,
{
    let name = name.as_ref();
    let mut delay = FIRST_RESTART;
    loop {
        let began = tokio::time::Instant::now();
        let outcome = AssertUnwindSafe(start()).catch_unwind().await;
        if began.elapsed() >= STABLE {
            delay = FIRST_RESTART;
        }
        match outcome {
            Ok(()) => tracing::error!(task = name, "stopped; starting it again in {delay:?}"),
            Err(panic) => tracing::error!(task = name, "panicked: {}; starting it again in {delay:?}", message(&*panic)),
        }
        restarted();
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(MAX_RESTART);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    #[tokio::test]
    async fn a_task_that_panics_or_ends_is_started_again() {
        let (runs, restarts) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        let (r, c) = (runs.clone(), restarts.clone());
        let task = tokio::spawn(async move {
            supervise(
                "test",
                move || {
                    let n = r.fetch_add(1, Ordering::SeqCst);
                    async move {
                        if n % 2 == 0 {
                            panic!("boom {n}");
                        }
                    }
                },
                move || {
                    c.fetch_add(1, Ordering::SeqCst);
                },
            )
            .await
        });
        // Runs at 0, 0.1, 0.3 and 0.7 s, then 1.5 s.
        tokio::time::sleep(Duration::from_secs(2)).await;
        assert!(runs.load(Ordering::SeqCst) >= 4, "restarted after panics and after ending");
        assert_eq!(restarts.load(Ordering::SeqCst), runs.load(Ordering::SeqCst), "each end counted");
        assert!(!task.is_finished());
        task.abort();
    }
}
