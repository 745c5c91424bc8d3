//! Where a connection is in its life. It only moves forward: active, then
//! closing, then closed; the handles, the connection task and the session
//! code read it without a lock.

use std::sync::atomic::{AtomicU8, Ordering};

/// A phase of a connection's life, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
#[repr(u8)]
pub(crate) enum Phase {
    /// Takes new messages.
    Active = 0,
    /// Closing gracefully: no new work, running handlers finish, signals
    /// still go out.
    Closing = 1,
    /// The close frame is queued or the connection is gone.
    Closed = 2,
}

impl Phase {
    fn from_u8(value: u8) -> Self {
        match value {
            0 => Self::Active,
            1 => Self::Closing,
            _ => Self::Closed,
        }
    }
}

/// A connection's phase, shared by its handles and its task.
#[derive(Debug)]
pub(crate) struct Lifecycle(AtomicU8);

impl Default for Lifecycle {
    fn default() -> Self {
        Self(AtomicU8::new(Phase::Active as u8))
    }
}

impl Lifecycle {
    /// The phase now.
    pub(crate) fn phase(&self) -> Phase {
        Phase::from_u8(self.0.load(Ordering::Acquire))
    }

    /// Whether the connection takes new messages.
    pub(crate) fn is_active(&self) -> bool {
        self.phase() == Phase::Active
    }

    /// Whether the connection is closed (nothing more can be queued).
    pub(crate) fn is_closed(&self) -> bool {
        self.phase() == Phase::Closed
    }

    /// Moves on to `phase`, never back: a close asked for after the
    /// connection closed leaves it closed.
    pub(crate) fn advance(&self, phase: Phase) {
        self.0.fetch_max(phase as u8, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn it_only_moves_forward() {
        let life = Lifecycle::default();
        assert!(life.is_active() && !life.is_closed());
        life.advance(Phase::Closing);
        assert_eq!(life.phase(), Phase::Closing);
        assert!(!life.is_active());
        life.advance(Phase::Active);
        assert_eq!(life.phase(), Phase::Closing, "never back");
        life.advance(Phase::Closed);
        life.advance(Phase::Closing);
        assert!(life.is_closed());
    }
}
