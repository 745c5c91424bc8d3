//! The client's bookkeeping of keyed requests (docs/protocol.md 14.4 and
//! 14.5): [`KeyedRequests`] gives each keyed request its sequence number,
//! remembers the epoch it was first sent under and the session it belongs
//! to until it is answered, computes the cumulative ack, and decides what
//! becomes of an unanswered one on a new connection ([`Resend`]).
//!
//! It lives as long as the client instance (its sequence numbers never
//! repeat, so a number is never reused for another request, whichever
//! session it is in); the owner keeps the requests themselves and their
//! callers.

use std::collections::BTreeMap;

use crate::{ErrorReply, RequestKey, ServerMessage};

/// The error code of a keyed request answered on a connection without a
/// session and without the closed session's ledger.
pub const NO_SESSION: &str = "NO_SESSION";
/// The error code of a keyed request whose seq was used for another request.
pub const KEY_REUSED: &str = "KEY_REUSED";
/// The error code of a keyed request whose ack was not below its seq.
pub const BAD_KEY: &str = "BAD_KEY";

/// What a new connection can do for keyed requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Link {
    /// A 2.0 connection, or one without `KEYED_REQUESTS` granted: requests
    /// are plain.
    Plain,
    /// `KEYED_REQUESTS` granted, with this ledger epoch.
    Keyed {
        /// The server's ledger epoch (ExtensionAccept).
        ledger_epoch: u64,
    },
}

/// What becomes of a keyed request sent and not answered, on a new
/// connection ([`KeyedRequests::on_new_connection`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resend {
    /// Send it again with the same key.
    Send,
    /// Fail it with "outcome unknown": it may or may not have run, and it
    /// cannot be asked again (another ledger epoch, a 2.0 server, or
    /// another session).
    OutcomeUnknown,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Pending<S> {
    epoch: u64,
    session: S,
}

/// The keyed requests of one client instance that wait for an answer.
/// `S` names a session (its key, or a digest of it).
///
/// ```
/// use webwire_proto::connection::client::{KeyedRequests, Link, Resend};
///
/// let mut keyed = KeyedRequests::<&str>::new();
/// let first = keyed.start(0xe1, "s1");
/// let second = keyed.start(0xe1, "s1");
/// assert_eq!((first.seq, second.seq), (1, 2));
/// assert_eq!(keyed.ack(), 0); // the answer of 1 is still missing
/// keyed.settle(1);
/// assert_eq!(keyed.ack(), 1);
/// // After a reconnect: same session and epoch, send 2 again.
/// let link = Link::Keyed { ledger_epoch: 0xe1 };
/// assert_eq!(keyed.on_new_connection(2, link, Some(&"s1")), Resend::Send);
/// // The ledger lost its state: outcome unknown, never a second run.
/// let link = Link::Keyed { ledger_epoch: 0xe2 };
/// assert_eq!(keyed.on_new_connection(2, link, Some(&"s1")), Resend::OutcomeUnknown);
/// ```
#[derive(Debug, Clone)]
pub struct KeyedRequests<S> {
    next_seq: u64,
    pending: BTreeMap<u64, Pending<S>>,
}

impl<S: PartialEq + Clone> KeyedRequests<S> {
    /// No request yet: the first seq is 1.
    pub fn new() -> Self {
        Self {
            next_seq: 1,
            pending: BTreeMap::new(),
        }
    }

    /// A keyed request is sent for the first time, under `ledger_epoch`
    /// and within `session`: its key (the next seq). It waits for its
    /// answer until [`settle`](Self::settle)d.
    pub fn start(&mut self, ledger_epoch: u64, session: S) -> RequestKey {
        let seq = self.next_seq;
        self.next_seq += 1;
        self.pending.insert(
            seq,
            Pending {
                epoch: ledger_epoch,
                session,
            },
        );
        RequestKey {
            seq,
            epoch: ledger_epoch,
        }
    }

    /// The cumulative ack to send: every seq up to it has its answer (the
    /// lowest seq waiting, minus one). Always below the seq of any request
    /// that waits or is yet to come.
    pub fn ack(&self) -> u64 {
        match self.pending.keys().next() {
            Some(lowest) => lowest - 1,
            None => self.next_seq - 1,
        }
    }

    /// The request `seq` has its final outcome (an answer, or a failure in
    /// the client): it waits no more.
    pub fn settle(&mut self, seq: u64) {
        self.pending.remove(&seq);
    }

    /// Whether request `seq` waits for its answer.
    pub fn is_pending(&self, seq: u64) -> bool {
        self.pending.contains_key(&seq)
    }

    /// The key of the waiting request `seq`.
    pub fn key(&self, seq: u64) -> Option<RequestKey> {
        self.pending.get(&seq).map(|pending| RequestKey {
            seq,
            epoch: pending.epoch,
        })
    }

    /// The session the waiting request `seq` belongs to.
    pub fn session(&self, seq: u64) -> Option<&S> {
        self.pending.get(&seq).map(|pending| &pending.session)
    }

    /// The waiting requests, in seq order (the order they must be sent again).
    pub fn pending(&self) -> impl Iterator<Item = RequestKey> + '_ {
        self.pending.iter().map(|(&seq, pending)| RequestKey {
            seq,
            epoch: pending.epoch,
        })
    }

    /// How many requests wait.
    pub fn len(&self) -> usize {
        self.pending.len()
    }

    /// Whether no request waits.
    pub fn is_empty(&self) -> bool {
        self.pending.is_empty()
    }

    /// What becomes of the waiting request `seq` on a new connection over
    /// `link`, where the client holds (or just tried to restore) `session`:
    /// sent again only under its own session and ledger epoch
    /// (docs/protocol.md 14.5). Not waiting: outcome unknown.
    pub fn on_new_connection(&self, seq: u64, link: Link, session: Option<&S>) -> Resend {
        let Some(pending) = self.pending.get(&seq) else {
            return Resend::OutcomeUnknown;
        };
        match link {
            Link::Keyed { ledger_epoch }
                if ledger_epoch == pending.epoch && session == Some(&pending.session) =>
            {
                Resend::Send
            }
            Link::Plain | Link::Keyed { .. } => Resend::OutcomeUnknown,
        }
    }
}

impl<S: PartialEq + Clone> Default for KeyedRequests<S> {
    fn default() -> Self {
        Self::new()
    }
}

/// Whether `answer` to a keyed request means "outcome unknown" to its
/// caller: ReplyOutcomeUnknown, and, for a request sent again on a
/// connection whose restore failed (`without_session`), ReplyError
/// `NO_SESSION` (the closed session's ledger is gone: the server cannot
/// tell whether it ran).
///
/// ```
/// use webwire_proto::connection::client::means_outcome_unknown;
/// use webwire_proto::{ErrorCode, ErrorReply, RequestId, ServerMessage};
///
/// let id = RequestId::from(3);
/// assert!(means_outcome_unknown(&ServerMessage::OutcomeUnknown(id), false));
/// let no_session = ServerMessage::Error(ErrorReply::new(id, ErrorCode::from_static("NO_SESSION"), ""));
/// assert!(means_outcome_unknown(&no_session, true));
/// assert!(!means_outcome_unknown(&no_session, false));
/// ```
pub fn means_outcome_unknown(answer: &ServerMessage, without_session: bool) -> bool {
    match answer {
        ServerMessage::OutcomeUnknown(_) => true,
        ServerMessage::Error(ErrorReply { code, .. }) => {
            without_session && code.as_str() == NO_SESSION
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn another_session_or_a_plain_link_is_outcome_unknown() {
        let mut keyed = KeyedRequests::new();
        let key = keyed.start(7, "a");
        let link = Link::Keyed { ledger_epoch: 7 };
        assert_eq!(
            keyed.on_new_connection(key.seq, link, Some(&"a")),
            Resend::Send
        );
        assert_eq!(
            keyed.on_new_connection(key.seq, link, Some(&"b")),
            Resend::OutcomeUnknown
        );
        assert_eq!(
            keyed.on_new_connection(key.seq, link, None),
            Resend::OutcomeUnknown
        );
        assert_eq!(
            keyed.on_new_connection(key.seq, Link::Plain, Some(&"a")),
            Resend::OutcomeUnknown
        );
        keyed.settle(key.seq);
        assert_eq!(
            keyed.on_new_connection(key.seq, link, Some(&"a")),
            Resend::OutcomeUnknown
        );
        assert_eq!(keyed.session(key.seq), None);
    }

    proptest! {
        /// Seqs are never reused, the ack is always below every waiting
        /// seq and the next one, and every seq up to it is settled.
        #[test]
        fn ack_is_below_every_waiting_seq(ops in prop::collection::vec((any::<bool>(), 0usize..8), 0..300)) {
            let mut keyed = KeyedRequests::new();
            let mut seqs = Vec::new();
            let mut settled = std::collections::HashSet::new();
            for (start, pick) in ops {
                if start || seqs.is_empty() {
                    let key = keyed.start(1, ());
                    prop_assert!(seqs.last().is_none_or(|last| key.seq > *last));
                    prop_assert!(keyed.ack() < key.seq);
                    seqs.push(key.seq);
                } else {
                    let seq = seqs[pick % seqs.len()];
                    keyed.settle(seq);
                    settled.insert(seq);
                }
                let ack = keyed.ack();
                for key in keyed.pending() {
                    prop_assert!(ack < key.seq);
                }
                for seq in 1..=ack {
                    prop_assert!(settled.contains(&seq));
                }
            }
        }
    }
}
