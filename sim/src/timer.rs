//! One re-armable timer per node loop.
//!
//! madsim's `Sleep` registers a new timer every time it is polled while
//! pending, and timers are never cancelled; a loop that re-polls a fresh sleep
//! on every message would fill the timer heap. `Timer` registers at most once
//! per deadline.

use madsim::time::{sleep_until, Instant, TimeHandle};
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

#[derive(Default)]
pub struct Timer {
    /// The runtime's clock, taken at the first poll (inside the runtime):
    /// reading it costs less than the intercepted `Instant::now()`.
    time: Option<TimeHandle>,
    deadline: Option<Instant>,
    registered: Option<Instant>,
}

impl Timer {
    pub fn set(&mut self, deadline: Option<Instant>) {
        self.deadline = deadline;
    }

    /// Ready once the deadline has passed (and then disarmed).
    pub fn poll_expired(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        let Some(deadline) = self.deadline else { return Poll::Pending };
        let now = self.time.get_or_insert_with(TimeHandle::current).now_instant();
        if now >= deadline {
            self.deadline = None;
            self.registered = None;
            return Poll::Ready(());
        }
        // A wake-up still to come at or before the deadline is enough: when it
        // fires early the loop comes back here and registers the real one.
        // This keeps a deadline that keeps moving later (a producer's next
        // send) from pushing a timer into madsim's heap on every message.
        let covered = self.registered.is_some_and(|at| at > now && at <= deadline);
        if !covered {
            let mut sleep = sleep_until(deadline);
            // Registers a wake-up at `deadline` for this task; the sleep itself can go.
            let _ = Pin::new(&mut sleep).poll(cx);
            self.registered = Some(deadline);
        }
        Poll::Pending
    }
}
