//! Which streams are held from one connection, and the catch-ups that
//! queue a stream's history for it (docs/protocol.md 14.3.2 and 14.3.4).
//!
//! A stream is held from a connection after a restore (every stream of
//! the session, until the client's StreamResume covers it), and while a
//! **catch-up** queues its history: a client's resume, or the server's
//! repair of a live signal the connection's full queue missed. Live
//! signals of a held stream are not queued; the catch-up reads them from
//! history and lets the stream flow again where it caught up.
//!
//! A connection that starts getting a stream live (a room joined, a
//! session created) **expects** the stream's first signal at a known
//! offset. When a later one comes first (in a cluster, this node's own
//! send can overtake another node's earlier one, still on its way), the
//! live signal is not written: the stream is repaired from history as for
//! a signal a full queue missed ([`ConnStreams::on_live`]), because the
//! client, holding no offset of the stream yet, would take the later one
//! as its start and drop the earlier one as a duplicate.
//!
//! A catch-up writes only while the connection may still see the stream:
//! it starts only if the connection holds the session or is in the room
//! ([`ConnStreams::begin_catch_up`]), and once the connection leaves the
//! room or the session is closed on it ([`ConnStreams::leave_stream`],
//! [`ConnStreams::left_session`]) it writes nothing more. Both checks run
//! under the hold's lock, as does every write of a catch-up
//! ([`ConnStreams::send`]): a leave comes either before a write or after
//! it, never between the check and the write, so nothing of a stream is
//! queued behind the leave (or behind the SessionClosed that follows a
//! logout).

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, PoisonError};

use tokio::sync::mpsc;

use super::{StreamKey, StreamPosition};
use crate::outbox::Outbound;

/// The holds, catch-ups and expected first signals of one connection.
#[derive(Debug, Default)]
pub(crate) struct ConnStreams {
    /// Whether anything is held or expected (read without the lock on
    /// every delivery).
    holding: AtomicBool,
    /// Boxed, and only while something is held or expected: every idle
    /// connection has this field.
    hold: Mutex<Option<Box<Hold>>>,
}

#[derive(Debug, Default)]
struct Hold {
    /// After a restore: every stream is held but those in `resumed`.
    all: bool,
    resumed: HashSet<StreamKey>,
    /// The catch-ups under way, by ticket: a stream is held while one of
    /// its catch-ups the connection has not left runs.
    catch_ups: HashMap<u64, CatchUpState>,
    next_ticket: u64,
    /// Streams the connection gets live but has had no signal of yet: the
    /// position of the first it must get.
    expected: HashMap<StreamKey, Expected>,
}

/// Where a stream's live signals start on a connection.
#[derive(Debug, Clone, Copy)]
struct Expected {
    /// `None`: the stream is new (a session's), any epoch.
    epoch: Option<u64>,
    offset: u64,
}

/// What to do with a live signal on a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Live {
    /// Write it.
    Deliver,
    /// The stream is held (a restore not resumed yet, a catch-up under
    /// way): the catch-up brings it.
    Held,
    /// It came before the stream's first signal for this connection, at
    /// this position: repair the stream from there.
    Missed(StreamPosition),
    /// It is older than where the connection starts (another node's,
    /// sent before the join, arriving after it): not for this connection.
    Before,
}

#[derive(Debug)]
struct CatchUpState {
    stream: StreamKey,
    /// The connection left the stream: this catch-up writes nothing more,
    /// and holds nothing.
    left: bool,
    /// It wrote something: the client holds a position of the stream.
    wrote: bool,
}

impl Hold {
    fn is_empty(&self) -> bool {
        !self.all && self.catch_ups.is_empty() && self.expected.is_empty()
    }

    fn allows(&self, stream: &StreamKey) -> bool {
        let caught_up = !self
            .catch_ups
            .values()
            .any(|state| !state.left && state.stream == *stream);
        caught_up && (!self.all || self.resumed.contains(stream))
    }
}

/// One catch-up of a stream on a connection, from
/// [`ConnStreams::begin_catch_up`] to [`ConnStreams::end_catch_up`].
#[derive(Debug)]
#[must_use = "a catch-up holds its stream until it is ended"]
pub(crate) struct CatchUp {
    ticket: u64,
    stream: StreamKey,
}

impl CatchUp {
    /// The stream it catches up.
    pub(crate) fn stream(&self) -> &StreamKey {
        &self.stream
    }
}

/// The connection left the stream of a catch-up: nothing more of it may
/// be written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Left;

impl ConnStreams {
    /// Runs `leave` under the hold's lock (taken even when nothing is
    /// held: a catch-up beginning meanwhile asks its `may_see` under it),
    /// then, if it says the connection left, applies `left` to the hold
    /// if there is one, keeping `holding` in step.
    fn leaving(&self, leave: impl FnOnce() -> bool, left: impl FnOnce(&mut Hold)) -> bool {
        let mut slot = self.hold.lock().unwrap_or_else(PoisonError::into_inner);
        if !leave() {
            return false;
        }
        if let Some(hold) = slot.as_mut() {
            left(hold);
            if hold.is_empty() {
                *slot = None;
                self.holding.store(false, Ordering::Release);
            }
        }
        true
    }

    /// Changes the hold, keeping `holding` in step.
    fn with_hold<T>(&self, change: impl FnOnce(&mut Hold) -> T) -> T {
        // Every change is complete before the guard is dropped.
        let mut slot = self.hold.lock().unwrap_or_else(PoisonError::into_inner);
        let hold = slot.get_or_insert_with(Box::default);
        let out = change(hold);
        let holding = !hold.is_empty();
        if !holding {
            *slot = None;
        }
        self.holding.store(holding, Ordering::Release);
        out
    }

    /// A restore begins: every stream waits for a resume.
    pub(crate) fn begin_hold(&self) {
        self.with_hold(|hold| {
            hold.all = true;
            hold.resumed.clear();
        });
    }

    /// The hold of the restore ends: the streams not being caught up flow
    /// (a resume covered them all, or the restore failed).
    pub(crate) fn end_hold(&self) {
        self.with_hold(|hold| {
            hold.all = false;
            hold.resumed.clear();
        });
    }

    /// A catch-up of `stream` begins queueing history, if `may_see` says
    /// the connection may see the stream (it holds the session, or is in
    /// the room; asked under the hold's lock, see the module's docs): its
    /// live signals wait until the catch-up ends. `Err(Left)`: it may not,
    /// and nothing is held.
    pub(crate) fn begin_catch_up(
        &self,
        stream: &StreamKey,
        may_see: impl FnOnce() -> bool,
    ) -> Result<CatchUp, Left> {
        self.with_hold(|hold| {
            if !may_see() {
                return Err(Left);
            }
            let ticket = hold.next_ticket;
            hold.next_ticket = hold.next_ticket.wrapping_add(1);
            hold.catch_ups.insert(
                ticket,
                CatchUpState {
                    stream: stream.clone(),
                    left: false,
                    wrote: false,
                },
            );
            Ok(CatchUp {
                ticket,
                stream: stream.clone(),
            })
        })
    }

    /// Queues `message` for the catch-up with the room `permit` reserved,
    /// unless the connection left its stream.
    pub(crate) fn send(
        &self,
        catch_up: &CatchUp,
        permit: mpsc::Permit<'_, Outbound>,
        message: Outbound,
    ) -> Result<(), Left> {
        let mut slot = self.hold.lock().unwrap_or_else(PoisonError::into_inner);
        let state = slot
            .as_mut()
            .and_then(|hold| hold.catch_ups.get_mut(&catch_up.ticket))
            .filter(|state| !state.left)
            .ok_or(Left)?;
        state.wrote = true;
        permit.send(message);
        Ok(())
    }

    /// The catch-up ended; `caught_up`: it caught up with the live signals
    /// (call it under the stream's order), and the stream flows again even
    /// while the restore's hold lasts for the others.
    pub(crate) fn end_catch_up(&self, catch_up: CatchUp, caught_up: bool) {
        self.with_hold(|hold| {
            let (left, wrote) = hold
                .catch_ups
                .remove(&catch_up.ticket)
                .map_or((true, false), |state| (state.left, state.wrote));
            if caught_up && !left {
                if wrote {
                    // The client holds a position of the stream now.
                    hold.expected.remove(&catch_up.stream);
                }
                if hold.all {
                    hold.resumed.insert(catch_up.stream);
                }
            }
        });
    }

    /// The connection leaves `stream` (a room) if `leave`, run under the
    /// hold's lock, says it was in it: the stream's catch-ups under way
    /// write nothing more. One step, so that a catch-up of the room joined
    /// again right after is not stopped by this leave. Returns what
    /// `leave` did.
    pub(crate) fn leave_stream(&self, stream: &StreamKey, leave: impl FnOnce() -> bool) -> bool {
        self.leaving(leave, |hold| {
            for state in hold.catch_ups.values_mut() {
                if state.stream == *stream {
                    state.left = true;
                }
            }
            hold.resumed.remove(stream);
            hold.expected.remove(stream);
        })
    }

    /// The session was closed on the connection: the catch-ups of its
    /// session stream write nothing more, and the restore's hold ends (a
    /// session the connection takes next is not held). Its rooms are left
    /// one by one ([`leave_stream`](Self::leave_stream)).
    pub(crate) fn left_session(&self, session_stream: &StreamKey) {
        // Under the lock even when nothing is held: see `leaving`.
        self.leaving(
            || true,
            |hold| {
                for state in hold.catch_ups.values_mut() {
                    if state.stream == *session_stream {
                        state.left = true;
                    }
                }
                hold.expected.remove(session_stream);
                hold.all = false;
                hold.resumed.clear();
            },
        );
    }

    /// The connection gets `stream` live from now on, from the offset
    /// `next` (of the epoch `epoch`; `None`: a new stream, any epoch):
    /// until a signal at or after it comes, a later one first is
    /// [`Live::Missed`]. A connection that has an expectation keeps it.
    pub(crate) fn expect(&self, stream: &StreamKey, epoch: Option<u64>, next: u64) {
        self.with_hold(|hold| {
            hold.expected.entry(stream.clone()).or_insert(Expected {
                epoch,
                offset: next,
            });
        });
    }

    /// Decides on the live signal of `stream` at `at` (call it under the
    /// stream's order).
    #[inline]
    pub(crate) fn on_live(&self, stream: &StreamKey, at: StreamPosition) -> Live {
        if !self.holding.load(Ordering::Acquire) {
            return Live::Deliver;
        }
        self.with_hold(|hold| {
            if !hold.allows(stream) {
                return Live::Held;
            }
            let Some(next) = hold.expected.get(stream).copied() else {
                return Live::Deliver;
            };
            if next.epoch.is_some_and(|epoch| epoch != at.epoch) {
                // The store lost the stream meanwhile: the client learns
                // of it from its first signal's epoch on its next resume.
                hold.expected.remove(stream);
                return Live::Deliver;
            }
            if at.offset < next.offset {
                // The expected one may still come after it.
                return Live::Before;
            }
            hold.expected.remove(stream);
            if at.offset == next.offset {
                Live::Deliver
            } else {
                Live::Missed(StreamPosition::new(at.epoch, next.offset))
            }
        })
    }

    /// Whether a live signal of `stream` may be delivered now.
    #[cfg(test)]
    fn allows(&self, stream: &StreamKey) -> bool {
        let hold = self.hold.lock().unwrap_or_else(PoisonError::into_inner);
        hold.as_ref().is_none_or(|hold| hold.allows(stream))
    }

    #[cfg(test)]
    fn is_idle(&self) -> bool {
        self.hold.lock().unwrap().is_none() && !self.holding.load(Ordering::Acquire)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message() -> Outbound {
        Outbound::Frame(bytes::Bytes::from_static(b"x"))
    }

    fn begin(state: &ConnStreams, stream: &StreamKey) -> CatchUp {
        state.begin_catch_up(stream, || true).expect("may see it")
    }

    #[test]
    fn the_hold_lets_through_only_resumed_streams() {
        let state = ConnStreams::default();
        let (a, b) = (StreamKey::room("a"), StreamKey::session("k"));
        assert!(state.allows(&a));
        state.begin_hold();
        assert!(!state.allows(&a) && !state.allows(&b));
        let catch_up = begin(&state, &a);
        assert!(!state.allows(&a));
        state.end_catch_up(catch_up, true);
        assert!(state.allows(&a) && !state.allows(&b));
        state.end_hold();
        assert!(state.allows(&b));
        // A catch-up outside a restore holds its stream only.
        let catch_up = begin(&state, &b);
        assert!(state.allows(&a) && !state.allows(&b));
        state.end_catch_up(catch_up, false);
        assert!(state.allows(&b));
        assert!(state.is_idle(), "nothing kept when nothing is held");
    }

    #[test]
    fn a_stream_flows_again_when_its_last_catch_up_ends() {
        let state = ConnStreams::default();
        let a = StreamKey::room("a");
        // The server repairs a missed signal while the client resumes.
        let resume = begin(&state, &a);
        let repair = begin(&state, &a);
        state.end_catch_up(resume, true);
        assert!(!state.allows(&a), "the other one is still queueing history");
        state.end_catch_up(repair, true);
        assert!(state.allows(&a));
        assert!(state.is_idle());
    }

    #[test]
    fn a_stream_the_connection_may_not_see_is_not_caught_up() {
        let state = ConnStreams::default();
        let a = StreamKey::room("a");
        assert_eq!(state.begin_catch_up(&a, || false).unwrap_err(), Left);
        assert!(state.allows(&a));
        assert!(state.is_idle());
    }

    #[tokio::test]
    async fn a_catch_up_writes_nothing_once_its_room_is_left() {
        let state = ConnStreams::default();
        let (a, b) = (StreamKey::room("a"), StreamKey::room("b"));
        let (tx, mut rx) = mpsc::channel(8);
        let of_a = begin(&state, &a);
        let of_b = begin(&state, &b);
        state
            .send(&of_a, tx.try_reserve().unwrap(), message())
            .unwrap();
        state.leave_stream(&a, || true);
        assert_eq!(
            state.send(&of_a, tx.try_reserve().unwrap(), message()),
            Err(Left)
        );
        // The other stream's catch-up goes on; the left one holds nothing.
        state
            .send(&of_b, tx.try_reserve().unwrap(), message())
            .unwrap();
        assert!(state.allows(&a) && !state.allows(&b));
        state.end_catch_up(of_a, false);
        state.end_catch_up(of_b, true);
        assert!(state.is_idle());
        drop(tx);
        let mut queued = 0;
        while rx.recv().await.is_some() {
            queued += 1;
        }
        assert_eq!(queued, 2, "one write for each stream before the leave");
    }

    #[test]
    fn a_later_signal_before_the_expected_first_one_is_missed() {
        let state = ConnStreams::default();
        let a = StreamKey::room("a");
        state.expect(&a, Some(7), 4);
        // Another node's older signal, late: not written, the expectation
        // stays.
        assert_eq!(state.on_live(&a, StreamPosition::new(7, 2)), Live::Before);
        assert_eq!(
            state.on_live(&a, StreamPosition::new(7, 6)),
            Live::Missed(StreamPosition::new(7, 4))
        );
        // Expected once only.
        assert_eq!(state.on_live(&a, StreamPosition::new(7, 9)), Live::Deliver);
        assert!(state.is_idle());
        // The expected one first.
        state.expect(&a, Some(7), 10);
        assert_eq!(state.on_live(&a, StreamPosition::new(7, 10)), Live::Deliver);
        assert!(state.is_idle());
        // Another epoch: the store lost the stream; nothing to repair from.
        state.expect(&a, Some(7), 11);
        assert_eq!(state.on_live(&a, StreamPosition::new(8, 3)), Live::Deliver);
        // A new stream: any epoch, from 1.
        let s = StreamKey::session("k");
        state.expect(&s, None, 1);
        assert_eq!(
            state.on_live(&s, StreamPosition::new(5, 2)),
            Live::Missed(StreamPosition::new(5, 1))
        );
        assert!(state.is_idle());
    }

    #[tokio::test]
    async fn a_caught_up_or_left_stream_expects_nothing() {
        let state = ConnStreams::default();
        let (a, b) = (StreamKey::room("a"), StreamKey::room("b"));
        let (tx, _rx) = mpsc::channel(8);
        state.expect(&a, Some(1), 1);
        state.expect(&b, Some(1), 1);
        // A catch-up that wrote nothing leaves the client without a
        // position: the expectation stays.
        let empty = begin(&state, &a);
        state.end_catch_up(empty, true);
        assert_eq!(
            state.on_live(&a, StreamPosition::new(1, 3)),
            Live::Missed(StreamPosition::new(1, 1))
        );
        state.expect(&a, Some(1), 1);
        let catch_up = begin(&state, &a);
        assert_eq!(state.on_live(&a, StreamPosition::new(1, 3)), Live::Held);
        state
            .send(&catch_up, tx.try_reserve().unwrap(), message())
            .unwrap();
        state.end_catch_up(catch_up, true);
        assert_eq!(state.on_live(&a, StreamPosition::new(1, 5)), Live::Deliver);
        // A leave that did not happen changes nothing; one that did clears.
        assert!(!state.leave_stream(&b, || false));
        assert!(!state.is_idle());
        assert!(state.leave_stream(&b, || true));
        assert!(state.is_idle());
    }

    #[tokio::test]
    async fn closing_the_session_stops_its_stream_and_ends_the_restore_hold() {
        let state = ConnStreams::default();
        let (session, room) = (StreamKey::session("k"), StreamKey::room("r"));
        let (tx, _rx) = mpsc::channel(8);
        state.begin_hold();
        let of_session = begin(&state, &session);
        let of_room = begin(&state, &room);
        state.left_session(&session);
        assert_eq!(
            state.send(&of_session, tx.try_reserve().unwrap(), message()),
            Err(Left)
        );
        // The room is left by its own call.
        state
            .send(&of_room, tx.try_reserve().unwrap(), message())
            .unwrap();
        state.leave_stream(&room, || true);
        assert_eq!(
            state.send(&of_room, tx.try_reserve().unwrap(), message()),
            Err(Left)
        );
        // A session taken next is not held by the closed one's restore.
        assert!(state.allows(&StreamKey::session("next")));
        // A left catch-up that caught up does not mark its stream resumed.
        state.begin_hold();
        state.end_catch_up(of_session, true);
        assert!(!state.allows(&session));
        state.end_catch_up(of_room, false);
        state.end_hold();
        assert!(state.is_idle());
    }
}
