//! When a request's DataLoader batches are sent: as soon as the request has
//! nothing left to do but wait for them.
//!
//! async-graphql's DataLoader waits a fixed delay (1 ms by default) after the
//! first key and then sends whatever keys have arrived. That costs every level
//! of the query a millisecond, and under load (or in a debug build) the
//! resolvers of one level can take longer than the delay to register their
//! keys, so a level is split into several statements. Instead, the request's
//! execution future is wrapped in [`Tracked`], which records whether it is being
//! polled or has been woken; a batch task waits until the request is idle (every
//! resolver blocked on a loader or on I/O), so one level is one batch whatever
//! the speed of the machine. A cap bounds the wait in case the request never
//! goes idle; it is a safety net, not a schedule: on a busy server a request
//! waits its turn on the runtime for milliseconds at a time, and a cap of a
//! few milliseconds split W2's 4 statements into 18 under load, one of 100 ms
//! still into 5.4 on average at 32 requests in flight (`benches/load.rs`).

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};
use std::time::Duration;

use tokio::sync::Notify;

/// The longest a batch waits for its request to go idle: far longer than
/// any level of a query takes to ask for its keys, however busy the server.
const MAX_SETTLE: Duration = Duration::from_millis(1000);

/// Whether a request's execution is running (or about to run again).
#[derive(Clone, Default)]
pub struct RequestActivity(Arc<Activity>);

#[derive(Default)]
struct Activity {
    polling: AtomicBool,
    woken: AtomicBool,
    idle: Notify,
}

impl RequestActivity {
    fn is_idle(&self) -> bool {
        !self.0.polling.load(Ordering::SeqCst) && !self.0.woken.load(Ordering::SeqCst)
    }

    /// Resolves once the request has no more work it can do without outside
    /// events: all the keys this round of resolvers will ask for are in.
    pub async fn settled(&self) {
        let wait = async {
            loop {
                let notified = self.0.idle.notified();
                tokio::pin!(notified);
                notified.as_mut().enable();
                if self.is_idle() {
                    return;
                }
                notified.await;
            }
        };
        let _ = tokio::time::timeout(MAX_SETTLE, wait).await;
    }
}

/// Wakes the request's task and notes that it has work to do.
struct TrackingWaker {
    inner: Waker,
    activity: RequestActivity,
}

impl Wake for TrackingWaker {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.activity.0.woken.store(true, Ordering::SeqCst);
        self.inner.wake_by_ref();
    }
}

/// A future whose polls and wake-ups are recorded in a [`RequestActivity`].
pub struct Tracked<F> {
    inner: Pin<Box<F>>,
    activity: RequestActivity,
}

impl<F: Future> Tracked<F> {
    pub fn new(inner: F, activity: RequestActivity) -> Self {
        Tracked {
            inner: Box::pin(inner),
            activity,
        }
    }
}

impl<F: Future> Future for Tracked<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = self.get_mut();
        let activity = &this.activity.0;
        activity.polling.store(true, Ordering::SeqCst);
        // Cleared before polling: a wake during this poll (a resolver yielding)
        // means the task runs again, so the request is not idle yet.
        activity.woken.store(false, Ordering::SeqCst);
        let waker = Waker::from(Arc::new(TrackingWaker {
            inner: cx.waker().clone(),
            activity: this.activity.clone(),
        }));
        let result = this.inner.as_mut().poll(&mut Context::from_waker(&waker));
        activity.polling.store(false, Ordering::SeqCst);
        activity.idle.notify_waiters();
        result
    }
}

/// A request dropped mid-way (a deadline, a client gone) never polls again:
/// its pending batches may go at once instead of waiting for the cap.
impl<F> Drop for Tracked<F> {
    fn drop(&mut self) {
        let activity = &self.activity.0;
        activity.polling.store(false, Ordering::SeqCst);
        activity.woken.store(false, Ordering::SeqCst);
        activity.idle.notify_waiters();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn settled_waits_for_the_tracked_future_to_block() {
        let activity = RequestActivity::default();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let steps = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counted = steps.clone();
        let work = Tracked::new(
            async move {
                // Busy for a few polls, yielding each time, then blocked.
                for _ in 0..5 {
                    counted.fetch_add(1, Ordering::SeqCst);
                    tokio::task::yield_now().await;
                }
                let _ = rx.await;
            },
            activity.clone(),
        );
        let handle = tokio::spawn(work);
        tokio::task::yield_now().await;
        activity.settled().await;
        assert_eq!(steps.load(Ordering::SeqCst), 5, "settled only once blocked");
        let _ = tx.send(());
        handle.await.unwrap();
    }

    #[tokio::test]
    async fn a_dropped_request_releases_its_batches_at_once() {
        let activity = RequestActivity::default();
        let work = Tracked::new(std::future::pending::<()>(), activity.clone());
        let handle = tokio::spawn(work);
        tokio::task::yield_now().await;
        // Marked busy, as if a wake-up were pending when it was dropped.
        activity.0.woken.store(true, Ordering::SeqCst);
        handle.abort();
        let _ = handle.await;
        // `settled` returns at once on an idle request, without the cap.
        assert!(activity.is_idle());
    }
}
