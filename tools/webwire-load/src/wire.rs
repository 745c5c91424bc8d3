//! The messages a run sends, and how an incoming message is judged.
//!
//! Every request (or `ping` signal) carries a **counter** unique within the
//! run: the request id, and the first 8 bytes of the payload (little-endian;
//! fewer when the payload is shorter). The rest of the payload is a pattern
//! that depends on the counter and on the position, so a reply whose payload
//! is truncated, shifted, partly overwritten or another request's does not
//! match. The expected payload is recomputed from the counter, so nothing
//! sent is kept.
//!
//! Messages are written straight into the buffer that is sent (the header by
//! the layout of docs/protocol.md sections 4 and 5, checked against `webwire-proto` in
//! the tests below), so that a large payload is written once.

use bytes::{BufMut, Bytes, BytesMut};
use webwire_proto::{ClientMessage, Encoding, MessageType, Name, Payload, ServerMessage};

use crate::{LoadConfig, Mode};

/// The signal name of a ping, and of its answer (docs/interop.md).
const PING: &str = "ping";
const PONG: &str = "pong";
/// The same for a history room's stream (mode `hist`, docs/interop.md).
const ROOM_PING: &str = "room-ping";
const ROOM_PONG: &str = "room-pong";
/// The longest room name of a `hist` run (`load-` and a connection index).
pub(crate) const MAX_ROOM_LEN: usize = 25;

/// How the counter's answer went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// A reply (or pong) with exactly the payload sent.
    Ok,
    /// A reply (or pong) whose payload, encoding or name differs.
    Mismatch,
    /// ReplyError.
    ErrorReply,
    /// ReplyInternalError.
    InternalError,
    /// ReplyShutdown.
    Shutdown,
    /// ReplyOutcomeUnknown (webwire 2.1, to a keyed request).
    Unknown,
    /// A reply type that no request of a load run can get (session replies).
    Unexpected,
}

/// An incoming message, judged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Incoming {
    /// An answer to the request (id) or ping (payload counter) `key`.
    Answer { key: u64, outcome: Outcome },
    /// A pong whose payload is too short to name a ping.
    StrayPong,
    /// A `room-pong` StreamSignal (mode `hist`): its position in the
    /// stream, and the ping it answers (`None`: too short to name one).
    Stream {
        epoch: u64,
        offset: u64,
        key: Option<u64>,
        outcome: Outcome,
    },
    /// A message this run never expects, or one that does not parse.
    Protocol,
}

/// Encodes what a run sends and judges what comes back.
#[derive(Debug)]
pub(crate) struct Wire {
    mode: Mode,
    raw_echo: bool,
    /// The request name, or `ping`.
    name: Name,
    size: usize,
    /// `pattern[j] == j as u8`, 256 bytes longer than a payload, so that the
    /// payload tail for any seed is one slice of it.
    pattern: Bytes,
}

impl Wire {
    pub(crate) fn new(config: &LoadConfig) -> Self {
        let name = match config.mode {
            Mode::Request | Mode::Keyed => config.name.clone().unwrap_or_default(),
            Mode::Signal => Name::from_static(PING),
            Mode::Hist => Name::from_static(ROOM_PING),
        };
        let pattern = (0..config.size + 256).map(|j| j as u8).collect::<Vec<u8>>();
        Self {
            mode: config.mode,
            raw_echo: config.raw_echo,
            name,
            size: config.size,
            pattern: pattern.into(),
        }
    }

    /// The length of every message sent (in mode `hist`, of the longest).
    pub(crate) fn encoded_len(&self) -> usize {
        let header = match self.mode {
            Mode::Request => 10,
            Mode::Signal => 2,
            Mode::Keyed => 34,
            // The room name and its space come before the payload.
            Mode::Hist => 2 + MAX_ROOM_LEN + 1,
        };
        header + self.name.len() + self.size
    }

    /// The request (or ping) with counter `counter`, in a buffer of its own
    /// (the WebSocket client masks it in place).
    pub(crate) fn encode(&self, counter: u64) -> BytesMut {
        let mut buf = BytesMut::with_capacity(self.encoded_len());
        match self.mode {
            Mode::Request => {
                buf.put_u8(MessageType::RequestBinary.byte());
                buf.put_u64_le(counter);
            }
            Mode::Signal => buf.put_u8(MessageType::SignalBinary.byte()),
            Mode::Keyed | Mode::Hist => {
                unreachable!("2.1 modes encode with encode_keyed and encode_hist")
            }
        }
        self.put_name_and_payload(&mut buf, counter);
        buf
    }

    /// The keyed request (mode `keyed`) with counter `counter` as its id
    /// and payload, key `(seq, epoch)` and acknowledgement `ack`
    /// (docs/protocol.md 14.2.6).
    pub(crate) fn encode_keyed(&self, counter: u64, seq: u64, epoch: u64, ack: u64) -> BytesMut {
        let mut buf = BytesMut::with_capacity(self.encoded_len());
        buf.put_u8(MessageType::KeyedRequestBinary.byte());
        buf.put_u64_le(counter);
        buf.put_u64_le(seq);
        buf.put_u64_le(epoch);
        buf.put_u64_le(ack);
        self.put_name_and_payload(&mut buf, counter);
        buf
    }

    /// The `room-ping` signal (mode `hist`) with counter `counter` for
    /// room `room`: payload `ROOM`, a space, then the counter's payload.
    pub(crate) fn encode_hist(&self, counter: u64, room: &[u8]) -> BytesMut {
        let mut buf = BytesMut::with_capacity(self.encoded_len());
        buf.put_u8(MessageType::SignalBinary.byte());
        // A Name is at most 255 bytes.
        buf.put_u8(self.name.len() as u8);
        buf.put_slice(self.name.as_bytes());
        buf.put_slice(room);
        buf.put_u8(b' ');
        self.put_payload(&mut buf, counter);
        buf
    }

    fn put_name_and_payload(&self, buf: &mut BytesMut, counter: u64) {
        // A Name is at most 255 bytes.
        buf.put_u8(self.name.len() as u8);
        buf.put_slice(self.name.as_bytes());
        self.put_payload(buf, counter);
    }

    fn put_payload(&self, buf: &mut BytesMut, counter: u64) {
        let head = self.size.min(8);
        buf.put_slice(&counter.to_le_bytes()[..head]);
        buf.put_slice(self.tail(counter));
    }

    /// Whether `payload` is exactly the payload of counter `counter`.
    pub(crate) fn payload_matches(&self, counter: u64, payload: &Payload) -> bool {
        let data = payload.as_bytes();
        let head = self.size.min(8);
        payload.encoding() == Encoding::Binary
            && data.len() == self.size
            && short_eq(&data[..head], &counter.to_le_bytes()[..head])
            && short_eq(&data[head..], self.tail(counter))
    }

    /// The payload after the counter: bytes `seed + i` at position `i`.
    fn tail(&self, counter: u64) -> &[u8] {
        let seed = (counter.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 56) as usize;
        let head = self.size.min(8);
        &self.pattern[seed + head..seed + self.size]
    }

    /// Judges one binary message from the server.
    pub(crate) fn judge(&self, frame: Bytes) -> Incoming {
        if self.raw_echo {
            self.judge_echo(frame)
        } else {
            self.judge_server(frame)
        }
    }

    fn judge_server(&self, frame: Bytes) -> Incoming {
        let Ok(message) = ServerMessage::parse(frame) else {
            return Incoming::Protocol;
        };
        let answer = |id: webwire_proto::RequestId, outcome| match self.mode {
            Mode::Request | Mode::Keyed => Incoming::Answer {
                key: id.to_u64(),
                outcome,
            },
            Mode::Signal | Mode::Hist => Incoming::Protocol,
        };
        match message {
            ServerMessage::Reply(reply) => {
                let outcome = self.verdict(reply.id.to_u64(), &reply.payload, true);
                answer(reply.id, outcome)
            }
            ServerMessage::Error(error) => answer(error.id, Outcome::ErrorReply),
            ServerMessage::InternalError(id) => answer(id, Outcome::InternalError),
            ServerMessage::Shutdown(id) => answer(id, Outcome::Shutdown),
            ServerMessage::SessionNotFound(id)
            | ServerMessage::MaxSessConnsReached(id)
            | ServerMessage::SessionsDisabled(id) => answer(id, Outcome::Unexpected),
            ServerMessage::OutcomeUnknown(id) if self.mode == Mode::Keyed => {
                answer(id, Outcome::Unknown)
            }
            ServerMessage::Signal(signal) if self.mode == Mode::Signal => {
                self.judge_pong(signal.name() == PONG, signal.payload())
            }
            ServerMessage::StreamSignal(stream) if self.mode == Mode::Hist => {
                let signal = stream.signal();
                let (key, outcome) =
                    match self.judge_pong(signal.name() == ROOM_PONG, signal.payload()) {
                        Incoming::Answer { key, outcome } => (Some(key), outcome),
                        _ => (None, Outcome::Mismatch),
                    };
                Incoming::Stream {
                    epoch: stream.epoch(),
                    offset: stream.offset(),
                    key,
                    outcome,
                }
            }
            _ => Incoming::Protocol,
        }
    }

    fn judge_echo(&self, frame: Bytes) -> Incoming {
        match ClientMessage::parse(frame) {
            Ok(ClientMessage::Request(request)) if self.mode == Mode::Request => {
                let key = request.id().to_u64();
                let name_ok = short_eq(request.name().as_bytes(), self.name.as_bytes());
                Incoming::Answer {
                    key,
                    outcome: self.verdict(key, request.payload(), name_ok),
                }
            }
            Ok(ClientMessage::Signal(signal)) if self.mode == Mode::Signal => {
                self.judge_pong(signal.name() == PING, signal.payload())
            }
            _ => Incoming::Protocol,
        }
    }

    fn judge_pong(&self, name_ok: bool, payload: &Payload) -> Incoming {
        let Some(head) = payload.as_bytes().first_chunk::<8>() else {
            return Incoming::StrayPong;
        };
        let key = u64::from_le_bytes(*head);
        Incoming::Answer {
            key,
            outcome: self.verdict(key, payload, name_ok),
        }
    }

    fn verdict(&self, key: u64, payload: &Payload, name_ok: bool) -> Outcome {
        if name_ok && self.payload_matches(key, payload) {
            Outcome::Ok
        } else {
            Outcome::Mismatch
        }
    }
}

/// Byte equality without a `memcmp` call for the short slices that every
/// answer compares (counter, small payloads, names): for those the call
/// costs more than the comparison.
fn short_eq(a: &[u8], b: &[u8]) -> bool {
    const SHORT: usize = 32;
    a.len() == b.len()
        && if a.len() <= SHORT {
            a.iter().zip(b).all(|(x, y)| x == y)
        } else {
            a == b
        }
}

#[cfg(test)]
mod tests {
    use webwire_proto::{ErrorCode, Reply, Request, RequestId, Signal};

    use super::*;

    fn wire(mode: Mode, size: usize, name: Option<&'static str>, raw_echo: bool) -> Wire {
        let mut config = LoadConfig::new("ws://127.0.0.1:1/");
        config.mode = mode;
        config.size = size;
        config.name = name.map(Name::from_static);
        config.raw_echo = raw_echo;
        Wire::new(&config)
    }

    fn payload_of(wire: &Wire, counter: u64) -> Payload {
        let frame = wire.encode(counter).freeze();
        let header = wire.encoded_len() - wire.size;
        Payload::binary(frame.slice(header..))
    }

    #[test]
    fn requests_encode_as_the_codec_does() {
        for (size, name) in [
            (1, None),
            (7, None),
            (16, None),
            (300, Some("echo")),
            (0, Some("x")),
        ] {
            let wire = wire(Mode::Request, size, name, false);
            for counter in [0, 1, 0x1234_5678_9abc_def0, u64::MAX] {
                let frame = wire.encode(counter);
                assert_eq!(frame.len(), wire.encoded_len());
                let payload = payload_of(&wire, counter);
                let expected = Request::new(
                    RequestId::from(counter),
                    name.map(Name::from_static).unwrap_or_default(),
                    payload.clone(),
                )
                .unwrap();
                assert_eq!(ClientMessage::Request(expected).to_bytes(), frame);
                assert!(wire.payload_matches(counter, &payload));
            }
        }
    }

    #[test]
    fn signals_encode_as_the_codec_does() {
        let wire = wire(Mode::Signal, 16, None, false);
        let frame = wire.encode(42);
        let expected = Signal::new(Name::from_static("ping"), payload_of(&wire, 42)).unwrap();
        assert_eq!(ClientMessage::Signal(expected).to_bytes(), frame);
    }

    #[test]
    fn keyed_requests_encode_as_the_codec_does() {
        use webwire_proto::{KeyedRequest, RequestKey};
        for (size, name) in [(16, None), (300, Some("incr"))] {
            let wire = wire(Mode::Keyed, size, name, false);
            for (counter, seq, epoch, ack) in [(0, 1, 7, 0), (u64::MAX, 99, u64::MAX, 98)] {
                let frame = wire.encode_keyed(counter, seq, epoch, ack);
                assert_eq!(frame.len(), wire.encoded_len());
                let payload = Payload::binary(frame.clone().freeze().slice(frame.len() - size..));
                assert!(wire.payload_matches(counter, &payload));
                let request = Request::new(
                    RequestId::from(counter),
                    name.map(Name::from_static).unwrap_or_default(),
                    payload,
                )
                .unwrap();
                let keyed = KeyedRequest::new(request, RequestKey { seq, epoch }, ack).unwrap();
                assert_eq!(ClientMessage::KeyedRequest(keyed).to_bytes(), frame);
            }
        }
    }

    #[test]
    fn room_pings_encode_as_the_codec_does() {
        let wire = wire(Mode::Hist, 16, None, false);
        let frame = wire.encode_hist(42, b"load-7");
        assert!(frame.len() <= wire.encoded_len());
        let data = frame.clone().freeze().slice(frame.len() - 16..);
        let mut payload = b"load-7 ".to_vec();
        payload.extend_from_slice(&data);
        let expected =
            Signal::new(Name::from_static("room-ping"), Payload::binary(payload)).unwrap();
        assert_eq!(ClientMessage::Signal(expected).to_bytes(), frame);
        assert!(wire.payload_matches(42, &Payload::binary(data)));
    }

    #[test]
    fn judges_keyed_answers_and_room_pongs() {
        use webwire_proto::{RoomName, StreamId, StreamSignal};
        let keyed = wire(Mode::Keyed, 16, None, false);
        let id = RequestId::from(9);
        let good = ServerMessage::Reply(Reply::new(
            id,
            payload_of(&wire(Mode::Request, 16, None, false), 9),
        ));
        assert_eq!(
            keyed.judge(good.to_bytes()),
            Incoming::Answer {
                key: 9,
                outcome: Outcome::Ok
            }
        );
        assert_eq!(
            keyed.judge(ServerMessage::OutcomeUnknown(id).to_bytes()),
            Incoming::Answer {
                key: 9,
                outcome: Outcome::Unknown
            }
        );
        // Not an answer outside mode keyed.
        let plain = wire(Mode::Request, 16, None, false);
        assert_eq!(
            plain.judge(ServerMessage::OutcomeUnknown(id).to_bytes()),
            Incoming::Protocol
        );

        let hist = wire(Mode::Hist, 16, None, false);
        let data = payload_of(&wire(Mode::Signal, 16, None, false), 5);
        let stream = |name, payload: Payload| {
            let signal = Signal::new(Name::from_static(name), payload).unwrap();
            let room = StreamId::Room(RoomName::from_static("load-0"));
            ServerMessage::StreamSignal(StreamSignal::new(room, 3, 11, signal).unwrap()).to_bytes()
        };
        assert_eq!(
            hist.judge(stream("room-pong", data.clone())),
            Incoming::Stream {
                epoch: 3,
                offset: 11,
                key: Some(5),
                outcome: Outcome::Ok
            }
        );
        assert_eq!(
            hist.judge(stream("pong", data.clone())),
            Incoming::Stream {
                epoch: 3,
                offset: 11,
                key: Some(5),
                outcome: Outcome::Mismatch
            }
        );
        assert_eq!(
            hist.judge(stream("room-pong", Payload::binary(vec![1]))),
            Incoming::Stream {
                epoch: 3,
                offset: 11,
                key: None,
                outcome: Outcome::Mismatch
            }
        );
        // A plain pong is not an answer in mode hist, a stream signal not in mode signal.
        let pong = ServerMessage::Signal(
            Signal::new(Name::from_static("room-pong"), data.clone()).unwrap(),
        );
        assert_eq!(hist.judge(pong.to_bytes()), Incoming::Protocol);
        assert_eq!(
            wire(Mode::Signal, 16, None, false).judge(stream("pong", data)),
            Incoming::Protocol
        );
    }

    #[test]
    fn payloads_differ_by_counter_and_detect_corruption() {
        // Short payloads are compared inline, longer ones with memcmp.
        for size in [16, 64] {
            let wire = wire(Mode::Request, size, None, false);
            let a = payload_of(&wire, 1);
            let b = payload_of(&wire, 2);
            assert_ne!(a, b);
            assert!(!wire.payload_matches(2, &a));
            // A flipped byte anywhere, a short or long payload, another encoding.
            for i in [0, 7, 8, size / 2, size - 1] {
                let mut bytes = a.as_bytes().to_vec();
                bytes[i] ^= 1;
                assert!(
                    !wire.payload_matches(1, &Payload::binary(bytes)),
                    "byte {i}"
                );
            }
            let shorter = a.as_bytes().slice(..size - 1);
            assert!(!wire.payload_matches(1, &Payload::binary(shorter)));
            let mut longer = a.as_bytes().to_vec();
            longer.push(0);
            assert!(!wire.payload_matches(1, &Payload::binary(longer)));
            let utf8 = Payload::new(Encoding::Utf8, a.as_bytes().clone()).unwrap();
            assert!(!wire.payload_matches(1, &utf8));
        }
    }

    #[test]
    fn judges_server_replies() {
        let wire = wire(Mode::Request, 16, None, false);
        let id = RequestId::from(9);
        let good = ServerMessage::Reply(Reply::new(id, payload_of(&wire, 9))).to_bytes();
        let wrong = ServerMessage::Reply(Reply::new(id, payload_of(&wire, 10))).to_bytes();
        let error = ServerMessage::Error(webwire_proto::ErrorReply::new(
            id,
            ErrorCode::from_static("E"),
            "",
        ))
        .to_bytes();
        let answer = |outcome| Incoming::Answer { key: 9, outcome };
        assert_eq!(wire.judge(good), answer(Outcome::Ok));
        assert_eq!(wire.judge(wrong), answer(Outcome::Mismatch));
        assert_eq!(wire.judge(error), answer(Outcome::ErrorReply));
        assert_eq!(
            wire.judge(ServerMessage::InternalError(id).to_bytes()),
            answer(Outcome::InternalError)
        );
        assert_eq!(
            wire.judge(ServerMessage::Shutdown(id).to_bytes()),
            answer(Outcome::Shutdown)
        );
        assert_eq!(
            wire.judge(ServerMessage::SessionsDisabled(id).to_bytes()),
            answer(Outcome::Unexpected)
        );
        assert_eq!(wire.judge(Bytes::from_static(&[200])), Incoming::Protocol);
        assert_eq!(
            wire.judge(ServerMessage::SessionClosed.to_bytes()),
            Incoming::Protocol
        );
    }

    #[test]
    fn judges_pongs() {
        let wire = wire(Mode::Signal, 16, None, false);
        let pong = |name, counter| {
            ServerMessage::Signal(
                Signal::new(Name::from_static(name), payload_of(&wire, counter)).unwrap(),
            )
            .to_bytes()
        };
        let ok = Incoming::Answer {
            key: 5,
            outcome: Outcome::Ok,
        };
        assert_eq!(wire.judge(pong("pong", 5)), ok);
        assert_eq!(
            wire.judge(pong("ping", 5)),
            Incoming::Answer {
                key: 5,
                outcome: Outcome::Mismatch
            }
        );
        let short = Signal::new(Name::from_static("pong"), Payload::binary(vec![1, 2])).unwrap();
        assert_eq!(
            wire.judge(ServerMessage::Signal(short).to_bytes()),
            Incoming::StrayPong
        );
        // A reply in signal mode is not expected.
        let reply = ServerMessage::Reply(Reply::new(RequestId::from(5), payload_of(&wire, 5)));
        assert_eq!(wire.judge(reply.to_bytes()), Incoming::Protocol);
    }

    #[test]
    fn raw_echo_takes_the_echoed_message_as_its_answer() {
        let requests = wire(Mode::Request, 16, Some("echo"), true);
        assert_eq!(
            requests.judge(requests.encode(3).freeze()),
            Incoming::Answer {
                key: 3,
                outcome: Outcome::Ok
            }
        );
        let other_name = wire(Mode::Request, 16, Some("other"), true);
        assert_eq!(
            requests.judge(other_name.encode(3).freeze()),
            Incoming::Answer {
                key: 3,
                outcome: Outcome::Mismatch
            }
        );
        let pings = wire(Mode::Signal, 16, None, true);
        assert_eq!(
            pings.judge(pings.encode(4).freeze()),
            Incoming::Answer {
                key: 4,
                outcome: Outcome::Ok
            }
        );
        // Without --raw-echo, an echoed request is not a server message.
        let strict = wire(Mode::Request, 16, None, false);
        assert_eq!(strict.judge(strict.encode(3).freeze()), Incoming::Protocol);
    }
}
