//! Stream history for webwire 2.1 (docs/protocol.md section 14, "Streams"):
//! the [`StreamStore`] that gives every history signal its dense offset
//! and hands back what a reconnecting client missed, or the loss when that
//! is no longer there.
//!
//! A stream is the session stream of one session (`signal_session`) or a
//! room with history turned on ([`StreamKey`]). Each appended signal gets
//! the next offset (1, 2, 3, ...) within the stream's **epoch**, a random
//! number chosen when the stream's storage was made: a store that lost a
//! stream makes it again under a new epoch, which is how a client learns
//! that what it holds no longer matches. History is bounded by count and
//! age ([`HistoryLimits`]).
//!
//! The server decides who gets a signal and in which order; the store only
//! numbers, keeps and reads. Appends to one stream must be made in the
//! order the server delivers them (the server serialises them per stream).
//!
//! Implementations: `webwire-server`'s `MemoryStreamStore` (one process);
//! a Redis store for a cluster.

use std::borrow::Cow;
use std::error::Error;
use std::fmt;
use std::future::Future;
use std::time::Duration;

use bytes::Bytes;

/// Which stream: a session's, or a room's.
///
/// Its `Debug` and `Display` show a session key as its digest, never the
/// key (a bearer credential).
///
/// ```
/// use webwire_core::stream::StreamKey;
///
/// let room = StreamKey::room("lobby");
/// assert_eq!(room.to_string(), "room lobby");
/// let session = StreamKey::session("secret-key");
/// assert!(!format!("{session:?} {session}").contains("secret-key"));
/// ```
#[derive(Clone, PartialEq, Eq, Hash)]
pub enum StreamKey {
    /// The session stream of the session with this key.
    Session(String),
    /// The stream of the room with this name.
    Room(String),
}

impl StreamKey {
    /// The session stream of the session `key`.
    ///
    /// ```
    /// use webwire_core::stream::StreamKey;
    ///
    /// assert_eq!(StreamKey::session("k"), StreamKey::Session("k".into()));
    /// ```
    pub fn session(key: impl Into<String>) -> Self {
        Self::Session(key.into())
    }

    /// The stream of the room `name`.
    ///
    /// ```
    /// use webwire_core::stream::StreamKey;
    ///
    /// assert_eq!(StreamKey::room("lobby"), StreamKey::Room("lobby".into()));
    /// ```
    pub fn room(name: impl Into<String>) -> Self {
        Self::Room(name.into())
    }
}

impl fmt::Debug for StreamKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Session(key) => f
                .debug_tuple("Session")
                .field(&webwire_proto::KeyDigest::new(key))
                .finish(),
            Self::Room(name) => f.debug_tuple("Room").field(name).finish(),
        }
    }
}

impl fmt::Display for StreamKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Session(key) => write!(f, "session {}", webwire_proto::KeyDigest::new(key)),
            Self::Room(name) => write!(f, "room {name}"),
        }
    }
}

/// How much history a stream keeps: at most `max_count` signals, none
/// older than `max_age` (a signal is dropped once its age reaches
/// `max_age`). A client away for longer, or that missed more, gets a
/// [`LossReason::Trimmed`] for what is gone.
///
/// The default keeps 1024 signals for 10 minutes.
///
/// ```
/// use std::time::Duration;
/// use webwire_core::stream::HistoryLimits;
///
/// let limits = HistoryLimits::new(100, Duration::from_secs(3600));
/// assert_eq!(limits.max_count, 100);
/// assert_eq!(HistoryLimits::default().max_count, 1024);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct HistoryLimits {
    /// The most signals kept (0: none; every resume then reports a loss).
    pub max_count: usize,
    /// How long a signal is kept after it was appended.
    pub max_age: Duration,
}

impl HistoryLimits {
    /// Limits of `max_count` signals and `max_age`.
    ///
    /// ```
    /// use std::time::Duration;
    /// use webwire_core::stream::HistoryLimits;
    ///
    /// assert_eq!(HistoryLimits::new(5, Duration::from_secs(1)).max_age, Duration::from_secs(1));
    /// ```
    pub const fn new(max_count: usize, max_age: Duration) -> Self {
        Self { max_count, max_age }
    }
}

impl Default for HistoryLimits {
    fn default() -> Self {
        Self::new(1024, Duration::from_secs(10 * 60))
    }
}

/// A place in a stream: an offset within an epoch. Offset 0 is "before
/// the first signal".
///
/// ```
/// use webwire_core::stream::StreamPosition;
///
/// let at = StreamPosition::new(7, 3);
/// assert_eq!((at.epoch, at.offset), (7, 3));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct StreamPosition {
    /// The stream's epoch (never 0 for a stored stream).
    pub epoch: u64,
    /// The offset of the last signal this position has (0: none).
    pub offset: u64,
}

impl StreamPosition {
    /// The position `offset` in `epoch`.
    ///
    /// ```
    /// use webwire_core::stream::StreamPosition;
    ///
    /// assert_eq!(StreamPosition::new(1, 0).offset, 0);
    /// ```
    pub const fn new(epoch: u64, offset: u64) -> Self {
        Self { epoch, offset }
    }
}

/// One stored signal: its offset and the encoded 2.0 Signal message.
///
/// ```
/// use bytes::Bytes;
/// use webwire_core::stream::StreamEntry;
///
/// let entry = StreamEntry { offset: 1, frame: Bytes::from_static(b"\x3f\x00x") };
/// assert_eq!(entry.offset, 1);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamEntry {
    /// The signal's offset in its stream.
    pub offset: u64,
    /// The encoded 2.0 Signal message (types 63 to 65), as appended.
    pub frame: Bytes,
}

/// Why a client cannot get part of a stream (the `reason` byte of
/// StreamLoss).
///
/// ```
/// use webwire_core::stream::LossReason;
///
/// assert_eq!(LossReason::Trimmed.code(), 1);
/// assert_eq!(LossReason::from_code(3), Some(LossReason::Ahead));
/// assert_eq!(LossReason::from_code(9), None);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LossReason {
    /// History no longer holds the signals after the client's offset
    /// (trimmed by count or age); the retained rest follows (1).
    Trimmed,
    /// The client's epoch is not the stream's: the store lost the stream
    /// (a restart, a Redis emptied) and made it again (2).
    EpochChanged,
    /// Same epoch, but the client holds an offset beyond the stream's end:
    /// the store lost its tail, as in a failover (3).
    Ahead,
    /// The connection has no right to the stream, or there is no such
    /// stream (4). Decided by the server, never by a store.
    UnknownStream,
}

impl LossReason {
    /// The reason's byte on the wire.
    ///
    /// ```
    /// use webwire_core::stream::LossReason;
    ///
    /// assert_eq!(LossReason::UnknownStream.code(), 4);
    /// ```
    pub const fn code(self) -> u8 {
        match self {
            Self::Trimmed => 1,
            Self::EpochChanged => 2,
            Self::Ahead => 3,
            Self::UnknownStream => 4,
        }
    }

    /// The reason with this byte, if any.
    ///
    /// ```
    /// use webwire_core::stream::LossReason;
    ///
    /// assert_eq!(LossReason::from_code(2), Some(LossReason::EpochChanged));
    /// ```
    pub const fn from_code(code: u8) -> Option<Self> {
        match code {
            1 => Some(Self::Trimmed),
            2 => Some(Self::EpochChanged),
            3 => Some(Self::Ahead),
            4 => Some(Self::UnknownStream),
            _ => None,
        }
    }
}

/// What a client will never get of a stream, and where it continues:
/// the StreamLoss message without the stream's name and epoch.
///
/// `lost_from..=lost_to` is lost (`lost_from` 0: the start is unknown);
/// the client's new position is `next - 1` in the stream's current epoch.
///
/// ```
/// use webwire_core::stream::{LossReason, StreamLoss};
///
/// // The client had offset 3; history now starts at 10.
/// let loss = StreamLoss { reason: LossReason::Trimmed, lost_from: 4, lost_to: 9, next: 10 };
/// assert_eq!(loss.next, 10);
/// assert_eq!(StreamLoss::unknown_stream().reason.code(), 4);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct StreamLoss {
    /// Why.
    pub reason: LossReason,
    /// The first lost offset (0: unknown).
    pub lost_from: u64,
    /// The last lost offset.
    pub lost_to: u64,
    /// The offset the client gets next.
    pub next: u64,
}

impl StreamLoss {
    /// The answer for a stream the connection may not read, or that does
    /// not exist: lost 0..=0, next 0 (with epoch 0 on the wire).
    ///
    /// ```
    /// use webwire_core::stream::{LossReason, StreamLoss};
    ///
    /// let loss = StreamLoss::unknown_stream();
    /// assert_eq!((loss.reason, loss.lost_from, loss.lost_to, loss.next), (LossReason::UnknownStream, 0, 0, 0));
    /// ```
    pub const fn unknown_stream() -> Self {
        Self {
            reason: LossReason::UnknownStream,
            lost_from: 0,
            lost_to: 0,
            next: 0,
        }
    }
}

/// What [`StreamStore::read`] found: the stream's epoch and end, the
/// retained signals after the client's position, in order, and the loss
/// before them, if any.
///
/// ```
/// use webwire_core::stream::StreamRead;
///
/// let read = StreamRead { epoch: 9, end: 0, entries: Vec::new(), loss: None };
/// assert!(read.entries.is_empty());
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamRead {
    /// The stream's current epoch.
    pub epoch: u64,
    /// The offset of the stream's last signal (0: none yet).
    pub end: u64,
    /// The retained signals after the position (or after the loss), with
    /// dense increasing offsets ending at `end`.
    pub entries: Vec<StreamEntry>,
    /// What the client cannot get, reported before `entries`.
    pub loss: Option<StreamLoss>,
}

impl StreamRead {
    /// What a stream answers to a client at `after`, given its epoch, its
    /// end, and its retained signals (dense offsets ending at `end`): the
    /// contract's rules for TRIMMED, EPOCH_CHANGED and AHEAD, shared by
    /// every store. `after` `None`: everything retained, no loss.
    ///
    /// ```
    /// use bytes::Bytes;
    /// use webwire_core::stream::{LossReason, StreamEntry, StreamPosition, StreamRead};
    ///
    /// let retained = |from: u64, to: u64| {
    ///     (from..=to).map(|offset| StreamEntry { offset, frame: Bytes::new() }).collect::<Vec<_>>()
    /// };
    /// // Retained 5..=8; the client has 2: 3 and 4 are lost.
    /// let read = StreamRead::answer(7, 8, retained(5, 8), Some(StreamPosition::new(7, 2)));
    /// let loss = read.loss.unwrap();
    /// assert_eq!((loss.reason, loss.lost_from, loss.lost_to, loss.next), (LossReason::Trimmed, 3, 4, 5));
    /// assert_eq!(read.entries.len(), 4);
    /// // The client has 6: 7 and 8 follow.
    /// let read = StreamRead::answer(7, 8, retained(5, 8), Some(StreamPosition::new(7, 6)));
    /// assert_eq!((read.loss, read.entries.len()), (None, 2));
    /// ```
    pub fn answer(
        epoch: u64,
        end: u64,
        mut retained: Vec<StreamEntry>,
        after: Option<StreamPosition>,
    ) -> Self {
        let first = retained.first().map_or(end + 1, |entry| entry.offset);
        let loss = match after {
            None => None,
            Some(at) if at.epoch != epoch => Some(StreamLoss {
                reason: LossReason::EpochChanged,
                lost_from: 0,
                lost_to: first - 1,
                next: first,
            }),
            Some(at) if at.offset > end => {
                retained.clear();
                Some(StreamLoss {
                    reason: LossReason::Ahead,
                    lost_from: end + 1,
                    lost_to: at.offset,
                    next: end + 1,
                })
            }
            Some(at) if at.offset + 1 < first => Some(StreamLoss {
                reason: LossReason::Trimmed,
                lost_from: at.offset + 1,
                lost_to: first - 1,
                next: first,
            }),
            Some(at) => {
                retained.retain(|entry| entry.offset > at.offset);
                None
            }
        };
        Self {
            epoch,
            end,
            entries: retained,
            loss,
        }
    }
}

/// Where a server keeps stream history. Implemented in memory by
/// `webwire-server` (`MemoryStreamStore`), in Redis for a cluster.
///
/// An async trait without a macro: implement it with `async fn` (the
/// futures must be `Send`). Every call is fallible: a remote store may be
/// unreachable, and then a history signal is not sent at all (the sender
/// gets the error) rather than sent without an offset.
///
/// The limits are given with each call, so that the store needs no
/// configuration of its own per room; a store trims by them when it
/// appends and never returns a signal they exclude.
///
/// # Using one
///
/// ```
/// use bytes::Bytes;
/// use webwire_core::stream::{HistoryLimits, StreamKey, StreamPosition, StreamStore, StreamStoreError};
///
/// /// Appends a signal, then shows what a client that had `seen` gets.
/// async fn append_and_catch_up<S: StreamStore>(
///     store: &S,
///     seen: StreamPosition,
/// ) -> Result<usize, StreamStoreError> {
///     let room = StreamKey::room("lobby");
///     let limits = HistoryLimits::default();
///     let at = store.append(&room, &limits, Bytes::from_static(b"\x3f\x04chat")).await?;
///     assert_ne!(at.epoch, 0);
///     let read = store.read(&room, &limits, Some(seen)).await?;
///     if let Some(loss) = read.loss {
///         println!("lost {}..={} ({:?})", loss.lost_from, loss.lost_to, loss.reason);
///     }
///     Ok(read.entries.len())
/// }
/// ```
pub trait StreamStore: Send + Sync + fmt::Debug + 'static {
    /// Appends the encoded 2.0 Signal `frame` to `stream` (made, with a new
    /// epoch, if the store has none), trims it to `limits`, and returns the
    /// signal's position. An error: nothing was appended.
    fn append(
        &self,
        stream: &StreamKey,
        limits: &HistoryLimits,
        frame: Bytes,
    ) -> impl Future<Output = Result<StreamPosition, StreamStoreError>> + Send;

    /// What follows `after` in `stream` (made, with a new epoch, if the
    /// store has none): see [`StreamRead::answer`] for the rules. `after`
    /// `None`: every retained signal, no loss.
    fn read(
        &self,
        stream: &StreamKey,
        limits: &HistoryLimits,
        after: Option<StreamPosition>,
    ) -> impl Future<Output = Result<StreamRead, StreamStoreError>> + Send;

    /// The stream's current end (made, with a new epoch, if the store has
    /// none): the position a room membership starts from.
    fn end(
        &self,
        stream: &StreamKey,
        limits: &HistoryLimits,
    ) -> impl Future<Output = Result<StreamPosition, StreamStoreError>> + Send;

    /// Deletes the stream and its history (the session was closed; for a
    /// session stream, a store that keeps room memberships deletes the
    /// session's too). Deleting a stream that does not exist succeeds.
    fn remove(
        &self,
        stream: &StreamKey,
    ) -> impl Future<Output = Result<(), StreamStoreError>> + Send;

    /// The rooms with history the session `session` is a member of, each
    /// with its join position (the room's end when the session joined), as
    /// this store keeps them for every node: a client that reconnects to
    /// another node is put back into its rooms from here. `None`: the
    /// store keeps no memberships, and each server keeps those made on it
    /// (the default, for a store of one server such as `MemoryStreamStore`).
    ///
    /// A store that keeps memberships implements the four membership
    /// methods together: this one, [`join_room`](Self::join_room),
    /// [`leave_room`](Self::leave_room), and the session's part of
    /// [`remove`](Self::remove).
    fn session_rooms(
        &self,
        session: &str,
    ) -> impl Future<Output = Result<Option<Vec<(String, StreamPosition)>>, StreamStoreError>> + Send
    {
        let _ = session;
        std::future::ready(Ok(None))
    }

    /// Records the session `session` as a member of `room` from `joined`;
    /// a member keeps its first join position. The server checks the room
    /// and bounds the number of rooms per session before. The default
    /// records nothing (see [`session_rooms`](Self::session_rooms)).
    fn join_room(
        &self,
        session: &str,
        room: &str,
        joined: StreamPosition,
    ) -> impl Future<Output = Result<(), StreamStoreError>> + Send {
        let _ = (session, room, joined);
        std::future::ready(Ok(()))
    }

    /// Ends the membership of the session `session` in `room` (ending one
    /// that does not exist succeeds). The default does nothing.
    fn leave_room(
        &self,
        session: &str,
        room: &str,
    ) -> impl Future<Output = Result<(), StreamStoreError>> + Send {
        let _ = (session, room);
        std::future::ready(Ok(()))
    }
}

/// A stream store failed to append, read or delete.
///
/// Carries what was being done (its [`Display`](fmt::Display)) and, usually,
/// the underlying error as its [`source`](Error::source): log the whole
/// chain.
///
/// ```
/// use std::error::Error;
/// use webwire_core::stream::StreamStoreError;
///
/// let err = StreamStoreError::new("appending to room lobby", std::io::Error::other("refused"));
/// assert_eq!(err.to_string(), "appending to room lobby");
/// assert_eq!(err.source().unwrap().to_string(), "refused");
/// assert_eq!(StreamStoreError::msg("read-only").context(), "read-only");
/// ```
#[derive(Debug, thiserror::Error)]
#[error("{context}")]
pub struct StreamStoreError {
    context: Cow<'static, str>,
    #[source]
    source: Option<Box<dyn Error + Send + Sync + 'static>>,
}

impl StreamStoreError {
    /// An error with its context and underlying cause.
    ///
    /// ```
    /// use webwire_core::stream::StreamStoreError;
    ///
    /// let err = StreamStoreError::new("reading", "timed out");
    /// assert_eq!(err.context(), "reading");
    /// ```
    pub fn new(
        context: impl Into<Cow<'static, str>>,
        source: impl Into<Box<dyn Error + Send + Sync + 'static>>,
    ) -> Self {
        Self {
            context: context.into(),
            source: Some(source.into()),
        }
    }

    /// An error without an underlying cause.
    ///
    /// ```
    /// use webwire_core::stream::StreamStoreError;
    ///
    /// assert_eq!(StreamStoreError::msg("down").to_string(), "down");
    /// ```
    pub fn msg(context: impl Into<Cow<'static, str>>) -> Self {
        Self {
            context: context.into(),
            source: None,
        }
    }

    /// What was being done.
    ///
    /// ```
    /// use webwire_core::stream::StreamStoreError;
    ///
    /// assert_eq!(StreamStoreError::msg("x").context(), "x");
    /// ```
    pub fn context(&self) -> &str {
        &self.context
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entries(from: u64, to: u64) -> Vec<StreamEntry> {
        (from..=to)
            .map(|offset| StreamEntry {
                offset,
                frame: Bytes::from(offset.to_le_bytes().to_vec()),
            })
            .collect()
    }

    fn offsets(read: &StreamRead) -> Vec<u64> {
        read.entries.iter().map(|entry| entry.offset).collect()
    }

    #[test]
    fn no_position_gets_everything_retained_without_loss() {
        let read = StreamRead::answer(5, 9, entries(4, 9), None);
        assert_eq!(read.loss, None);
        assert_eq!(offsets(&read), (4..=9).collect::<Vec<_>>());
    }

    #[test]
    fn caught_up_and_within_history() {
        let read = StreamRead::answer(5, 9, entries(4, 9), Some(StreamPosition::new(5, 9)));
        assert_eq!((read.loss, offsets(&read)), (None, vec![]));
        // Exactly at the edge of history: nothing is lost.
        let read = StreamRead::answer(5, 9, entries(4, 9), Some(StreamPosition::new(5, 3)));
        assert_eq!((read.loss, offsets(&read).len()), (None, 6));
        let read = StreamRead::answer(5, 9, entries(4, 9), Some(StreamPosition::new(5, 7)));
        assert_eq!(offsets(&read), vec![8, 9]);
    }

    #[test]
    fn trimmed_reports_the_missing_range_then_the_rest() {
        let read = StreamRead::answer(5, 9, entries(4, 9), Some(StreamPosition::new(5, 1)));
        let loss = read.loss.unwrap();
        assert_eq!(
            (loss.reason, loss.lost_from, loss.lost_to, loss.next),
            (LossReason::Trimmed, 2, 3, 4)
        );
        assert_eq!(offsets(&read), (4..=9).collect::<Vec<_>>());
    }

    #[test]
    fn trimmed_with_nothing_retained() {
        let read = StreamRead::answer(5, 9, Vec::new(), Some(StreamPosition::new(5, 2)));
        let loss = read.loss.unwrap();
        assert_eq!(
            (loss.reason, loss.lost_from, loss.lost_to, loss.next),
            (LossReason::Trimmed, 3, 9, 10)
        );
        // Caught up with nothing retained: nothing lost.
        let read = StreamRead::answer(5, 9, Vec::new(), Some(StreamPosition::new(5, 9)));
        assert_eq!(read.loss, None);
    }

    #[test]
    fn another_epoch_loses_an_unknown_start() {
        let read = StreamRead::answer(6, 9, entries(4, 9), Some(StreamPosition::new(5, 20)));
        let loss = read.loss.unwrap();
        assert_eq!(
            (loss.reason, loss.lost_from, loss.lost_to, loss.next),
            (LossReason::EpochChanged, 0, 3, 4)
        );
        assert_eq!(offsets(&read), (4..=9).collect::<Vec<_>>());
        // A new, empty stream.
        let read = StreamRead::answer(6, 0, Vec::new(), Some(StreamPosition::new(5, 20)));
        let loss = read.loss.unwrap();
        assert_eq!((loss.lost_from, loss.lost_to, loss.next), (0, 0, 1));
    }

    #[test]
    fn ahead_of_the_end_loses_the_tail_the_client_saw() {
        let read = StreamRead::answer(5, 9, entries(4, 9), Some(StreamPosition::new(5, 12)));
        let loss = read.loss.unwrap();
        assert_eq!(
            (loss.reason, loss.lost_from, loss.lost_to, loss.next),
            (LossReason::Ahead, 10, 12, 10)
        );
        assert!(read.entries.is_empty());
    }

    #[test]
    fn loss_reason_codes_round_trip() {
        for reason in [
            LossReason::Trimmed,
            LossReason::EpochChanged,
            LossReason::Ahead,
            LossReason::UnknownStream,
        ] {
            assert_eq!(LossReason::from_code(reason.code()), Some(reason));
        }
        assert_eq!(LossReason::from_code(0), None);
    }

    #[test]
    fn session_stream_key_never_shows() {
        let key = StreamKey::session("very-secret");
        let shown = format!("{key:?} {key}");
        assert!(!shown.contains("very-secret"), "{shown}");
        assert!(shown.contains("sha1:"));
    }
}
