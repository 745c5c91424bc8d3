//! The client's rule per stream (docs/protocol.md 14.3.3 and 14.3.5):
//! [`StreamPositions`], the position `(epoch, last)` of every stream a
//! client has seen, which decides for each StreamSignal whether it is
//! delivered, dropped as a duplicate, or is a gap to repair with a
//! StreamResume; and what a StreamLoss does to it.
//!
//! The positions belong to the client's session and outlive its
//! connections: the owner keeps one `StreamPositions` per client and
//! [`clear`](StreamPositions::clear)s it when the session is gone.

use std::collections::HashMap;

use crate::{LossReason, StreamId, StreamLoss, StreamPosition, StreamSignal, MAX_RESUME_STREAMS};

/// What to do with a StreamSignal ([`StreamPositions::on_signal`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Deliver it to the application: it is the next signal of its stream
    /// (or the first one seen).
    Deliver,
    /// Drop it silently: the application has it already.
    Duplicate,
    /// Drop it: signals are missing before it. With `Some`, send a
    /// StreamResume of this one position (the stream is now *resuming*);
    /// with `None`, a resume of the stream is under way already.
    Gap(Option<StreamPosition>),
}

/// What a StreamLoss means to the application ([`StreamPositions::on_loss`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LossVerdict {
    /// Tell the application: the range is lost (the position moved past it,
    /// or the stream is forgotten for UNKNOWN_STREAM).
    Report,
    /// Nothing is lost for this client: it held the range already (a
    /// TRIMMED loss of a stream resumed from its join position).
    Ignore,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Position {
    epoch: u64,
    last: u64,
    /// A StreamResume listing the stream waits for its answer.
    resuming: bool,
}

/// The client's position on every stream it has seen.
///
/// ```
/// use webwire_proto::connection::client::{StreamPositions, Verdict};
/// use webwire_proto::StreamId;
///
/// let mut streams = StreamPositions::new();
/// let s = StreamId::Session;
/// assert_eq!(streams.on_signal(&s, 9, 4), Verdict::Deliver); // the first seen
/// assert_eq!(streams.on_signal(&s, 9, 5), Verdict::Deliver);
/// assert_eq!(streams.on_signal(&s, 9, 5), Verdict::Duplicate);
/// // 6 is missing: one resume from the position (9, 5), then gaps are dropped.
/// let Verdict::Gap(Some(resume)) = streams.on_signal(&s, 9, 7) else { panic!() };
/// assert_eq!((resume.epoch, resume.offset), (9, 5));
/// assert_eq!(streams.on_signal(&s, 9, 8), Verdict::Gap(None));
/// // The resume's signals continue the position.
/// assert_eq!(streams.on_signal(&s, 9, 6), Verdict::Deliver);
/// streams.resume_answered(&[s.clone()]);
/// assert_eq!(streams.position(&s), Some((9, 6)));
/// ```
#[derive(Debug, Clone, Default)]
pub struct StreamPositions {
    positions: HashMap<StreamId, Position>,
}

impl StreamPositions {
    /// No position yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Decides on a StreamSignal of `stream` at `(epoch, offset)`, and
    /// moves the position when it is delivered.
    pub fn on_signal(&mut self, stream: &StreamId, epoch: u64, offset: u64) -> Verdict {
        let Some(position) = self.positions.get_mut(stream) else {
            self.positions.insert(
                stream.clone(),
                Position {
                    epoch,
                    last: offset,
                    resuming: false,
                },
            );
            return Verdict::Deliver;
        };
        if epoch == position.epoch {
            if Some(offset) == position.last.checked_add(1) {
                position.last = offset;
                return Verdict::Deliver;
            }
            if offset <= position.last {
                return Verdict::Duplicate;
            }
        }
        if position.resuming {
            return Verdict::Gap(None);
        }
        position.resuming = true;
        Verdict::Gap(Some(StreamPosition {
            stream: stream.clone(),
            epoch: position.epoch,
            offset: position.last,
        }))
    }

    /// [`on_signal`](Self::on_signal) for a parsed message.
    pub fn on_stream_signal(&mut self, signal: &StreamSignal) -> Verdict {
        self.on_signal(signal.stream(), signal.epoch(), signal.offset())
    }

    /// Takes a StreamLoss: the position moves to `(epoch, next - 1)`, or
    /// the stream is forgotten (UNKNOWN_STREAM).
    pub fn on_loss(&mut self, loss: &StreamLoss) -> LossVerdict {
        if loss.reason == LossReason::UnknownStream {
            self.positions.remove(&loss.stream);
            return LossVerdict::Report;
        }
        let resuming = match self.positions.get(&loss.stream) {
            Some(position) => {
                if loss.reason == LossReason::Trimmed
                    && position.epoch == loss.epoch
                    && position.last >= loss.lost_to
                {
                    return LossVerdict::Ignore;
                }
                position.resuming
            }
            None => false,
        };
        self.positions.insert(
            loss.stream.clone(),
            Position {
                epoch: loss.epoch,
                last: loss.next.saturating_sub(1),
                resuming,
            },
        );
        LossVerdict::Report
    }

    /// The positions to list in the StreamResume after a restore: every
    /// stream's, as many as fit in one message of at most `max_len` bytes
    /// (and 1024 entries); those listed are now *resuming*. The others are
    /// resumed by the server from their join position (docs/protocol.md
    /// 14.3.4), and duplicates are dropped by the rule.
    pub fn resume_all(&mut self, max_len: usize) -> Vec<StreamPosition> {
        let mut listed = Vec::new();
        // The StreamResume's header: type, id, count.
        let mut len = 11;
        let mut streams: Vec<_> = self.positions.iter_mut().collect();
        // The session stream first, then rooms by name: the same order on
        // every reconnect.
        streams.sort_unstable_by_key(|(stream, _)| (*stream).clone());
        for (stream, position) in streams {
            let entry = StreamPosition {
                stream: stream.clone(),
                epoch: position.epoch,
                offset: position.last,
            };
            if listed.len() == MAX_RESUME_STREAMS || len + entry.encoded_len() > max_len {
                break;
            }
            len += entry.encoded_len();
            position.resuming = true;
            listed.push(entry);
        }
        listed
    }

    /// The StreamResume that listed `streams` was answered (whatever the
    /// answer): they are no longer *resuming*. A hole left shows as a gap
    /// with the next signal.
    pub fn resume_answered(&mut self, streams: &[StreamId]) {
        for stream in streams {
            if let Some(position) = self.positions.get_mut(stream) {
                position.resuming = false;
            }
        }
    }

    /// The position `(epoch, last)` on `stream`, if the client has one.
    pub fn position(&self, stream: &StreamId) -> Option<(u64, u64)> {
        self.positions
            .get(stream)
            .map(|position| (position.epoch, position.last))
    }

    /// Whether a StreamResume listing `stream` waits for its answer.
    pub fn is_resuming(&self, stream: &StreamId) -> bool {
        self.positions
            .get(stream)
            .is_some_and(|position| position.resuming)
    }

    /// How many streams have a position.
    pub fn len(&self) -> usize {
        self.positions.len()
    }

    /// Whether no stream has a position.
    pub fn is_empty(&self) -> bool {
        self.positions.is_empty()
    }

    /// Forgets every position: the session is closed or could not be
    /// restored (positions belong to the session).
    pub fn clear(&mut self) {
        self.positions.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::RoomName;
    use proptest::prelude::*;

    fn room(name: &str) -> StreamId {
        StreamId::Room(RoomName::new(name).unwrap())
    }

    fn loss(
        stream: StreamId,
        epoch: u64,
        range: (u64, u64),
        next: u64,
        reason: LossReason,
    ) -> StreamLoss {
        StreamLoss {
            stream,
            epoch,
            lost_from: range.0,
            lost_to: range.1,
            next,
            reason,
        }
    }

    #[test]
    fn another_epoch_is_a_gap() {
        let mut streams = StreamPositions::new();
        let s = room("lobby");
        assert_eq!(streams.on_signal(&s, 1, 1), Verdict::Deliver);
        let Verdict::Gap(Some(resume)) = streams.on_signal(&s, 2, 1) else {
            panic!("not a gap")
        };
        assert_eq!((resume.epoch, resume.offset), (1, 1));
        assert!(streams.is_resuming(&s));
        // The resume's answer: EPOCH_CHANGED, then the new epoch's history.
        let verdict = streams.on_loss(&loss(s.clone(), 2, (0, 0), 1, LossReason::EpochChanged));
        assert_eq!(verdict, LossVerdict::Report);
        assert_eq!(streams.position(&s), Some((2, 0)));
        assert_eq!(streams.on_signal(&s, 2, 1), Verdict::Deliver);
        streams.resume_answered(std::slice::from_ref(&s));
        assert!(!streams.is_resuming(&s));
    }

    #[test]
    fn losses_move_or_forget_the_position() {
        let mut streams = StreamPositions::new();
        let s = room("a");
        streams.on_signal(&s, 5, 3);
        // TRIMMED of what the client has already: nothing lost.
        let trimmed = loss(s.clone(), 5, (1, 3), 4, LossReason::Trimmed);
        assert_eq!(streams.on_loss(&trimmed), LossVerdict::Ignore);
        assert_eq!(streams.position(&s), Some((5, 3)));
        // TRIMMED beyond it: the position jumps.
        let trimmed = loss(s.clone(), 5, (4, 9), 10, LossReason::Trimmed);
        assert_eq!(streams.on_loss(&trimmed), LossVerdict::Report);
        assert_eq!(streams.position(&s), Some((5, 9)));
        // AHEAD: back to the end.
        let ahead = loss(s.clone(), 5, (7, 9), 7, LossReason::Ahead);
        assert_eq!(streams.on_loss(&ahead), LossVerdict::Report);
        assert_eq!(streams.position(&s), Some((5, 6)));
        assert_eq!(streams.on_signal(&s, 5, 7), Verdict::Deliver);
        // UNKNOWN_STREAM: forgotten; the next signal starts afresh.
        let unknown = loss(s.clone(), 0, (0, 0), 0, LossReason::UnknownStream);
        assert_eq!(streams.on_loss(&unknown), LossVerdict::Report);
        assert_eq!(streams.position(&s), None);
        assert_eq!(streams.on_signal(&s, 5, 40), Verdict::Deliver);
    }

    #[test]
    fn resume_all_lists_what_fits_and_marks_it_resuming() {
        let mut streams = StreamPositions::new();
        streams.on_signal(&StreamId::Session, 1, 2);
        streams.on_signal(&room("bb"), 1, 3);
        streams.on_signal(&room("a"), 1, 4);
        let all = streams.resume_all(usize::MAX);
        let listed: Vec<_> = all.iter().map(|p| (p.stream.clone(), p.offset)).collect();
        assert_eq!(
            listed,
            [(StreamId::Session, 2), (room("a"), 4), (room("bb"), 3)]
        );
        assert!(streams.is_resuming(&room("bb")));
        // 11 + 18 + 19 bytes: the session stream and room "a" only.
        let mut streams = StreamPositions::new();
        streams.on_signal(&StreamId::Session, 1, 2);
        streams.on_signal(&room("bb"), 1, 3);
        streams.on_signal(&room("a"), 1, 4);
        assert_eq!(streams.resume_all(11 + 18 + 19 + 19).len(), 2);
        assert!(!streams.is_resuming(&room("bb")));
        streams.clear();
        assert!(streams.is_empty());
    }

    /// What the server may send on one stream: the next signals in order,
    /// with duplicates (a resume overlapping the live path), gaps (a full
    /// queue) and repeats, in any interleaving.
    fn deliveries() -> impl Strategy<Value = Vec<(u8, u64)>> {
        prop::collection::vec((0u8..3, 1u64..40), 0..200)
    }

    proptest! {
        /// Whatever arrives, the application sees each offset at most once
        /// and in increasing order with no hole after the first, per
        /// stream and epoch; a resume is asked only once until answered.
        #[test]
        fn each_offset_at_most_once_in_order(
            arrivals in deliveries(),
            answers in prop::collection::vec(any::<bool>(), 200),
        ) {
            let mut streams = StreamPositions::new();
            let ids = [StreamId::Session, room("x"), room("y")];
            let mut delivered: HashMap<StreamId, Vec<u64>> = HashMap::new();
            let mut outstanding: HashMap<StreamId, bool> = HashMap::new();
            for (i, (which, offset)) in arrivals.into_iter().enumerate() {
                let stream = &ids[usize::from(which)];
                match streams.on_signal(stream, 7, offset) {
                    Verdict::Deliver => delivered.entry(stream.clone()).or_default().push(offset),
                    Verdict::Duplicate => {
                        let seen = delivered.get(stream).expect("a position");
                        prop_assert!(offset <= *seen.last().unwrap());
                    }
                    Verdict::Gap(Some(position)) => {
                        prop_assert!(!outstanding.get(stream).copied().unwrap_or(false), "a second resume");
                        prop_assert_eq!(Some(&position.offset), delivered[stream].last());
                        outstanding.insert(stream.clone(), true);
                    }
                    Verdict::Gap(None) => prop_assert!(outstanding[stream]),
                }
                if answers[i] {
                    streams.resume_answered(std::slice::from_ref(stream));
                    outstanding.insert(stream.clone(), false);
                }
            }
            for offsets in delivered.values() {
                for pair in offsets.windows(2) {
                    prop_assert_eq!(pair[1], pair[0] + 1);
                }
            }
        }

        /// Against a server that keeps the whole history: whatever its
        /// connection drops or doubles, the client delivers 1, 2, 3, ...
        /// once each and in order, repairing every gap with a resume, and
        /// ends with everything once the server sends on.
        #[test]
        fn with_history_every_gap_is_repaired(
            ops in prop::collection::vec((0u8..4, any::<bool>()), 1..300),
        ) {
            #[derive(Debug)]
            enum Msg {
                Signal(u64),
                ResumeDone,
            }
            let stream = room("h");
            let mut streams = StreamPositions::new();
            // The first signal seen starts the position (no position, no
            // gap): it reaches the client.
            let mut wire = std::collections::VecDeque::from([Msg::Signal(1)]);
            let mut end = 1u64;
            let mut delivered = Vec::new();
            let mut resumes = 0;
            // Takes the next message off the wire; the server answers a
            // resume behind what it has queued already.
            let step = |streams: &mut StreamPositions,
                            wire: &mut std::collections::VecDeque<Msg>,
                            end: u64,
                            delivered: &mut Vec<u64>,
                            resumes: &mut u32| {
                match wire.pop_front() {
                    Some(Msg::Signal(offset)) => match streams.on_signal(&stream, 3, offset) {
                        Verdict::Deliver => delivered.push(offset),
                        Verdict::Duplicate | Verdict::Gap(None) => {}
                        Verdict::Gap(Some(position)) => {
                            *resumes += 1;
                            wire.extend((position.offset + 1..=end).map(Msg::Signal));
                            wire.push_back(Msg::ResumeDone);
                        }
                    },
                    Some(Msg::ResumeDone) => streams.resume_answered(std::slice::from_ref(&stream)),
                    None => {}
                }
            };
            for (op, flag) in ops {
                match op {
                    // Append; the live copy is dropped (a full queue) or doubled.
                    0 | 1 => {
                        end += 1;
                        if op == 0 || flag {
                            wire.push_back(Msg::Signal(end));
                        }
                        if op == 0 && flag {
                            wire.push_back(Msg::Signal(end));
                        }
                    }
                    _ => step(&mut streams, &mut wire, end, &mut delivered, &mut resumes),
                }
            }
            // The server goes on sending, dropping nothing: every hole shows.
            for _ in 0..4 {
                end += 1;
                wire.push_back(Msg::Signal(end));
                while !wire.is_empty() {
                    step(&mut streams, &mut wire, end, &mut delivered, &mut resumes);
                }
                if delivered.len() as u64 == end {
                    break;
                }
            }
            let expected: Vec<u64> = (1..=end).collect();
            prop_assert_eq!(delivered, expected, "after {} resumes", resumes);
        }
    }
}
