//! The stall timer of a connection's socket: how long a write has been
//! unable to proceed.

use std::future::Future;
use std::pin::Pin;
use std::task::Context;
use std::time::Duration;

use tokio::time::{Instant, Sleep};

use super::WireError;

/// Watches a write that cannot proceed. The timer is made the first time
/// the socket is full, and only armed while it is.
pub(super) struct Stall {
    timeout: Duration,
    timer: Option<Pin<Box<Sleep>>>,
    armed: bool,
    /// Armed while the task itself waited to write.
    urgent: bool,
}

impl Stall {
    pub(super) fn new(timeout: Duration) -> Self {
        Self {
            timeout,
            timer: None,
            armed: false,
            urgent: false,
        }
    }

    /// The socket took a write: the next wait starts a new count.
    #[inline]
    pub(super) fn disarm(&mut self) {
        self.armed = false;
    }

    /// The socket is full: fails once it has been so for the stall timeout
    /// while the task itself waits to write (`urgent`) or the queue is full
    /// (`queue_full`, asked only when the timer fires).
    pub(super) fn poll(
        &mut self,
        cx: &mut Context<'_>,
        urgent: bool,
        queue_full: impl Fn() -> bool,
    ) -> Result<(), WireError> {
        let timeout = self.timeout;
        let timer = self
            .timer
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(timeout)));
        // The timeout counts from when the task began to wait for this
        // write, not from an earlier wait that was not its own.
        if !self.armed || (urgent && !self.urgent) {
            self.armed = true;
            self.urgent = urgent;
            timer.as_mut().reset(Instant::now() + timeout);
        }
        while timer.as_mut().poll(cx).is_ready() {
            if urgent || queue_full() {
                return Err(WireError::Stalled);
            }
            timer.as_mut().reset(Instant::now() + timeout);
        }
        Ok(())
    }
}
