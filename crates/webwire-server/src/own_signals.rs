//! Signals a handler sends to its own connection while the connection task
//! polls it (a handler that finishes at its first poll, the common case):
//! they go straight into the task's batch, ahead of the handler's reply,
//! with no queue, no box and no wake-up.
//!
//! The connection task marks, on its thread, which connection it is
//! polling a handler for; [`Connection::signal`](crate::Connection::signal)
//! and `try_signal` offer their signal here first. A signal for another
//! connection, from another thread or task, or past the queue's capacity
//! within one poll, goes through the connection's queue as before, so the
//! memory bound is the queue's.

use std::cell::RefCell;

use webwire_proto::Signal;

use crate::connection::ConnectionId;

/// What the connection task polling a handler on this thread takes.
struct Polling {
    /// The connection whose handler is being polled, if any.
    conn: Option<ConnectionId>,
    /// Signals it takes before the rest goes through the queue.
    room: usize,
    /// The signals taken; shared by every connection task of the thread
    /// (one poll at a time), so no connection holds a buffer of its own.
    signals: Vec<Signal>,
}

thread_local! {
    static POLLING: RefCell<Polling> = const {
        RefCell::new(Polling { conn: None, room: 0, signals: Vec::new() })
    };
}

/// Takes `signal` for the connection task if it is polling a handler of
/// `conn` on this thread; gives it back otherwise.
pub(crate) fn offer(conn: ConnectionId, signal: Signal) -> Result<(), Signal> {
    POLLING.with_borrow_mut(|polling| {
        if polling.conn != Some(conn) || polling.room == 0 {
            return Err(signal);
        }
        polling.room -= 1;
        polling.signals.push(signal);
        Ok(())
    })
}

/// While it lives, signals offered for `conn` on this thread are taken.
pub(crate) struct PollingScope(());

impl PollingScope {
    /// Marks the thread as polling a handler of `conn`, taking at most
    /// `room` signals.
    pub(crate) fn enter(conn: ConnectionId, room: usize) -> Self {
        POLLING.with_borrow_mut(|polling| {
            debug_assert!(polling.conn.is_none(), "polls do not nest");
            polling.conn = Some(conn);
            polling.room = room;
        });
        Self(())
    }

    /// Ends the scope and hands each signal taken to `feed`, in order.
    pub(crate) fn finish<E>(self, mut feed: impl FnMut(Signal) -> Result<(), E>) -> Result<(), E> {
        // Ended here, not in `drop`: `feed` runs outside the scope.
        let mut signals = POLLING.with_borrow_mut(|polling| {
            polling.conn = None;
            std::mem::take(&mut polling.signals)
        });
        std::mem::forget(self);
        let mut result = Ok(());
        for signal in signals.drain(..) {
            if result.is_ok() {
                result = feed(signal);
            }
        }
        // The buffer goes back for the next poll, unless it grew large.
        if signals.capacity() <= 64 {
            POLLING.with_borrow_mut(|polling| {
                if polling.signals.capacity() == 0 {
                    polling.signals = signals;
                }
            });
        }
        result
    }
}

impl Drop for PollingScope {
    /// A scope left without [`finish`](Self::finish) (a panic in between)
    /// drops what it took.
    fn drop(&mut self) {
        POLLING.with_borrow_mut(|polling| {
            polling.conn = None;
            polling.signals.clear();
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use webwire_proto::{Name, Payload};

    fn signal(n: u8) -> Signal {
        Signal::new(Name::from_static("s"), Payload::binary(vec![n])).unwrap()
    }

    #[test]
    fn only_the_polled_connection_within_its_room_is_taken() {
        let (a, b) = (ConnectionId::new(1), ConnectionId::new(2));
        assert!(offer(a, signal(0)).is_err(), "nothing is polled");
        let scope = PollingScope::enter(a, 2);
        assert!(offer(b, signal(1)).is_err(), "another connection");
        assert!(offer(a, signal(2)).is_ok());
        assert!(offer(a, signal(3)).is_ok());
        assert!(offer(a, signal(4)).is_err(), "past the room");
        let mut fed = Vec::new();
        scope
            .finish(|s| {
                fed.push(s.payload().as_bytes()[0]);
                Ok::<_, ()>(())
            })
            .unwrap();
        assert_eq!(fed, [2, 3]);
        assert!(offer(a, signal(5)).is_err(), "the scope ended");
    }

    #[test]
    fn a_scope_left_by_a_panic_takes_nothing_more() {
        let a = ConnectionId::new(1);
        let scope = PollingScope::enter(a, 8);
        offer(a, signal(1)).unwrap();
        drop(scope);
        assert!(offer(a, signal(2)).is_err());
        let scope = PollingScope::enter(a, 8);
        let mut fed = 0;
        scope
            .finish(|_| {
                fed += 1;
                Ok::<_, ()>(())
            })
            .unwrap();
        assert_eq!(fed, 0, "what the dropped scope took is gone");
    }

    #[test]
    fn a_failed_feed_stops_feeding_and_clears_the_rest() {
        let a = ConnectionId::new(1);
        let scope = PollingScope::enter(a, 8);
        offer(a, signal(1)).unwrap();
        offer(a, signal(2)).unwrap();
        let mut fed = 0;
        assert_eq!(
            scope.finish(|_| {
                fed += 1;
                Err("closed")
            }),
            Err("closed")
        );
        assert_eq!(fed, 1);
        let scope = PollingScope::enter(a, 8);
        assert_eq!(scope.finish(|_| Err("none")), Ok(()));
    }
}
