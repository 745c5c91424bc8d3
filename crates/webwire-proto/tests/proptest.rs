//! Property tests: every valid message survives encode → parse unchanged,
//! `encoded_len` is exact, neither parser panics on any input, and whatever
//! a parser accepts re-encodes to exactly the bytes it came from.

use bytes::{Bytes, BytesMut};
use proptest::collection::vec;
use proptest::prelude::*;
use proptest::sample::select;
use webwire_proto::{
    AcceptConf, ClientMessage, Encoding, ErrorCode, ErrorReply, ExtensionAccept, ExtensionHello,
    FeatureFlags, InstanceId, KeyedRequest, LossReason, Name, Payload, Reply, Request, RequestId,
    RequestKey, RoomName, ServerMessage, Signal, StreamId, StreamLoss, StreamPosition,
    StreamResume, StreamSignal,
};

/// Every type byte of protocol v2.0 and of its 2.1 extensions.
const KNOWN_TYPES: [u8; 32] = [
    0, 1, 2, 3, 4, 5, 6, 21, 22, 23, 24, 25, 31, 32, 33, 34, 35, 63, 64, 65, 66, 67, 68, 127, 128,
    129, 130, 131, 132, 191, 192, 193,
];

fn id() -> impl Strategy<Value = RequestId> {
    any::<[u8; 8]>().prop_map(RequestId)
}

fn printable(len: std::ops::RangeInclusive<usize>) -> impl Strategy<Value = Vec<u8>> {
    vec(32u8..=126, len)
}

fn name() -> impl Strategy<Value = Name> {
    prop_oneof![
        Just(Vec::new()),
        printable(0..=16),
        printable(0..=255),
        printable(255..=255),
    ]
    .prop_map(|bytes| Name::new(bytes).expect("printable name"))
}

fn error_code() -> impl Strategy<Value = ErrorCode> {
    prop_oneof![printable(1..=16), printable(1..=255)]
        .prop_map(|bytes| ErrorCode::new(bytes).expect("printable code"))
}

fn encoding() -> impl Strategy<Value = Encoding> {
    prop_oneof![
        Just(Encoding::Binary),
        Just(Encoding::Utf8),
        Just(Encoding::Utf16)
    ]
}

/// Payloads of every encoding, empty ones included; UTF-16 ones have even
/// lengths, text ones are sometimes real text and sometimes any bytes.
fn payload() -> impl Strategy<Value = Payload> {
    prop_oneof![
        (encoding(), vec(any::<u8>(), 0..=64)).prop_map(|(encoding, mut data)| {
            if encoding == Encoding::Utf16 && data.len() % 2 == 1 {
                data.pop();
            }
            Payload::new(encoding, data).expect("even UTF-16")
        }),
        Just(Payload::default()),
        Just(Payload::utf8("")),
        Just(Payload::utf16("")),
        any::<String>().prop_map(Payload::utf8),
        any::<String>().prop_map(|text| Payload::utf16(&text)),
        vec(any::<u8>(), 0..=2048).prop_map(Payload::binary),
    ]
}

fn request() -> impl Strategy<Value = Request> {
    (id(), name(), payload()).prop_filter_map("neither name nor payload", |(id, name, payload)| {
        Request::new(id, name, payload).ok()
    })
}

fn signal() -> impl Strategy<Value = Signal> {
    (name(), payload()).prop_filter_map("invalid signal", |(name, payload)| {
        Signal::new(name, payload).ok()
    })
}

fn flags() -> impl Strategy<Value = FeatureFlags> {
    prop_oneof![
        (0u32..4).prop_map(FeatureFlags::from_bits),
        any::<u32>().prop_map(FeatureFlags::from_bits),
    ]
}

fn extension_hello() -> impl Strategy<Value = ExtensionHello> {
    (flags(), prop_oneof![printable(0..=64), printable(16..=64)])
        .prop_filter_map("keyed requests with a short instance id", |(flags, id)| {
            ExtensionHello::new(flags, InstanceId::new(id).expect("printable id")).ok()
        })
}

fn keyed_request() -> impl Strategy<Value = KeyedRequest> {
    (request(), 1..=u64::MAX, any::<u64>(), any::<u64>()).prop_map(|(request, seq, epoch, ack)| {
        KeyedRequest::new(request, RequestKey { seq, epoch }, ack).expect("seq >= 1")
    })
}

/// Room names of every length, ASCII and not.
fn room_name() -> impl Strategy<Value = RoomName> {
    prop_oneof![
        "[a-z]{1,16}",
        "\\PC{1,20}",
        Just("x".repeat(255)),
        Just("é".repeat(127) + "x"),
    ]
    .prop_filter_map("too long", |name| RoomName::new(name).ok())
}

fn stream_id() -> impl Strategy<Value = StreamId> {
    prop_oneof![
        1 => Just(StreamId::Session),
        3 => room_name().prop_map(StreamId::Room),
    ]
}

fn stream_resume() -> impl Strategy<Value = StreamResume> {
    let position = (stream_id(), any::<u64>(), any::<u64>()).prop_map(|(stream, epoch, offset)| {
        StreamPosition {
            stream,
            epoch,
            offset,
        }
    });
    // Each stream at most once: a resume listing one twice is malformed.
    (id(), vec(position, 0..=8)).prop_map(|(id, mut positions)| {
        let mut seen = std::collections::HashSet::new();
        positions.retain(|position| seen.insert(position.stream.clone()));
        StreamResume::new(id, positions).expect("few streams, each once")
    })
}

fn stream_signal() -> impl Strategy<Value = StreamSignal> {
    // Epochs and offsets are never 0.
    (stream_id(), 1..=u64::MAX, 1..=u64::MAX, signal()).prop_map(
        |(stream, epoch, offset, signal)| {
            StreamSignal::new(stream, epoch, offset, signal).expect("epoch and offset >= 1")
        },
    )
}

fn stream_loss() -> impl Strategy<Value = StreamLoss> {
    let reason = prop_oneof![
        Just(LossReason::Trimmed),
        Just(LossReason::EpochChanged),
        Just(LossReason::Ahead),
        Just(LossReason::UnknownStream),
    ];
    (stream_id(), any::<[u64; 4]>(), reason).prop_map(
        |(stream, [epoch, lost_from, lost_to, next], reason)| StreamLoss {
            stream,
            epoch,
            lost_from,
            lost_to,
            next,
            reason,
        },
    )
}

fn non_empty_bytes() -> impl Strategy<Value = Bytes> {
    vec(any::<u8>(), 1..=128).prop_map(Bytes::from)
}

fn client_message() -> impl Strategy<Value = ClientMessage> {
    prop_oneof![
        4 => request().prop_map(ClientMessage::Request),
        4 => signal().prop_map(ClientMessage::Signal),
        1 => (id(), non_empty_bytes()).prop_map(|(id, key)| ClientMessage::RestoreSession { id, key }),
        1 => id().prop_map(ClientMessage::CloseSession),
        1 => Just(ClientMessage::Heartbeat),
        2 => extension_hello().prop_map(ClientMessage::ExtensionHello),
        2 => stream_resume().prop_map(ClientMessage::StreamResume),
        4 => keyed_request().prop_map(ClientMessage::KeyedRequest),
    ]
}

fn accept_conf() -> impl Strategy<Value = AcceptConf> {
    (
        any::<u8>(),
        any::<u8>(),
        any::<u32>(),
        any::<u32>(),
        vec(any::<u8>(), 0..=32),
    )
        .prop_map(
            |(major, minor, read_timeout_ms, buffer_size, sub_protocol)| AcceptConf {
                major,
                minor,
                read_timeout_ms,
                buffer_size,
                sub_protocol: Bytes::from(sub_protocol),
            },
        )
}

fn server_message() -> impl Strategy<Value = ServerMessage> {
    prop_oneof![
        4 => (id(), payload()).prop_map(|(id, payload)| ServerMessage::Reply(Reply::new(id, payload))),
        2 => (id(), error_code(), any::<String>())
            .prop_map(|(id, code, message)| ServerMessage::Error(ErrorReply::new(id, code, message))),
        // The message of a received error reply may be any bytes.
        1 => (id(), error_code(), vec(any::<u8>(), 0..=64))
            .prop_map(|(id, code, message)| ServerMessage::Error(ErrorReply { id, code, message: Bytes::from(message) })),
        1 => id().prop_map(ServerMessage::Shutdown),
        1 => id().prop_map(ServerMessage::InternalError),
        1 => id().prop_map(ServerMessage::SessionNotFound),
        1 => id().prop_map(ServerMessage::MaxSessConnsReached),
        1 => id().prop_map(ServerMessage::SessionsDisabled),
        1 => non_empty_bytes().prop_map(ServerMessage::SessionCreated),
        1 => Just(ServerMessage::SessionClosed),
        2 => accept_conf().prop_map(ServerMessage::AcceptConf),
        4 => signal().prop_map(ServerMessage::Signal),
        1 => id().prop_map(ServerMessage::OutcomeUnknown),
        2 => stream_loss().prop_map(ServerMessage::StreamLoss),
        1 => (flags(), any::<u64>()).prop_map(|(flags, ledger_epoch)| {
            ServerMessage::ExtensionAccept(ExtensionAccept { flags, ledger_epoch })
        }),
        4 => stream_signal().prop_map(ServerMessage::StreamSignal),
    ]
}

/// A change to a valid frame: most inputs of the fuzz-like properties start
/// as valid messages, so they reach deep into the parsers.
#[derive(Debug, Clone)]
enum Mutation {
    None,
    Truncate(usize),
    Append(Vec<u8>),
    Set(usize, u8),
    Remove(usize),
    Insert(usize, u8),
    SetType(u8),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        Just(Mutation::None),
        any::<usize>().prop_map(Mutation::Truncate),
        vec(any::<u8>(), 1..=3).prop_map(Mutation::Append),
        (any::<usize>(), any::<u8>()).prop_map(|(at, byte)| Mutation::Set(at, byte)),
        any::<usize>().prop_map(Mutation::Remove),
        (any::<usize>(), any::<u8>()).prop_map(|(at, byte)| Mutation::Insert(at, byte)),
        select(&KNOWN_TYPES[..]).prop_map(Mutation::SetType),
    ]
}

fn mutate(mut frame: Vec<u8>, mutation: Mutation) -> Vec<u8> {
    let len = frame.len();
    match mutation {
        Mutation::None => {}
        Mutation::Truncate(at) => frame.truncate(at % (len + 1)),
        Mutation::Append(bytes) => frame.extend(bytes),
        Mutation::Set(at, byte) if len > 0 => frame[at % len] = byte,
        Mutation::Remove(at) if len > 0 => {
            frame.remove(at % len);
        }
        Mutation::Insert(at, byte) => frame.insert(at % (len + 1), byte),
        Mutation::SetType(byte) if len > 0 => frame[0] = byte,
        Mutation::Set(..) | Mutation::Remove(_) | Mutation::SetType(_) => {}
    }
    frame
}

/// Inputs for the parsers: random bytes, random bytes after a known type
/// byte, and mutated valid frames of both sides.
fn frame() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        vec(any::<u8>(), 0..=64),
        (select(&KNOWN_TYPES[..]), vec(any::<u8>(), 0..=300)).prop_map(|(ty, rest)| {
            let mut frame = vec![ty];
            frame.extend(rest);
            frame
        }),
        (client_message(), mutation()).prop_map(|(m, op)| mutate(m.to_bytes().to_vec(), op)),
        (server_message(), mutation()).prop_map(|(m, op)| mutate(m.to_bytes().to_vec(), op)),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1024))]

    #[test]
    fn client_messages_round_trip(message in client_message()) {
        let mut buf = BytesMut::new();
        message.encode(&mut buf);
        prop_assert_eq!(buf.len(), message.encoded_len());
        let parsed = ClientMessage::parse(buf.clone().freeze())?;
        prop_assert_eq!(&parsed, &message);
        if let ClientMessage::Signal(signal) = &message {
            prop_assert_eq!(signal.encoded_len(), buf.len());
            prop_assert_eq!(ServerMessage::parse(buf.freeze())?, ServerMessage::Signal(signal.clone()));
        }
    }

    #[test]
    fn server_messages_round_trip(message in server_message()) {
        let mut buf = BytesMut::new();
        message.encode(&mut buf);
        prop_assert_eq!(buf.len(), message.encoded_len());
        let parsed = ServerMessage::parse(buf.clone().freeze())?;
        prop_assert_eq!(&parsed, &message);
        if let ServerMessage::Signal(signal) = &message {
            prop_assert_eq!(ClientMessage::parse(buf.freeze())?, ClientMessage::Signal(signal.clone()));
        }
    }

    /// A stream signal carries a valid 2.0 signal: what a 2.0 connection
    /// gets instead encodes and parses back to the same name and payload.
    #[test]
    fn a_stream_signals_plain_form_round_trips(message in stream_signal()) {
        let plain = ServerMessage::Signal(message.signal().clone());
        prop_assert_eq!(ServerMessage::parse(plain.to_bytes())?, plain);
        prop_assert!(message.message_type().is_extension());
        prop_assert_eq!(message.message_type().byte(), message.signal().message_type().byte() + 3);
    }

    /// Encoding appends: a reused buffer holds one message after another.
    #[test]
    fn encoding_appends_to_a_reused_buffer(first in client_message(), second in server_message()) {
        let mut buf = BytesMut::new();
        first.encode(&mut buf);
        let split = buf.len();
        second.encode(&mut buf);
        prop_assert_eq!(buf.len(), first.encoded_len() + second.encoded_len());
        prop_assert_eq!(ClientMessage::parse(buf.clone().freeze().slice(..split))?, first);
        prop_assert_eq!(ServerMessage::parse(buf.freeze().slice(split..))?, second);
    }

    /// Neither parser panics, and whatever either accepts re-encodes to
    /// exactly the bytes it was parsed from.
    #[test]
    fn parsers_never_panic_and_accepted_frames_re_encode_identically(bytes in frame()) {
        let frame = Bytes::from(bytes);
        if let Ok(message) = ClientMessage::parse(frame.clone()) {
            prop_assert_eq!(message.encoded_len(), frame.len());
            prop_assert_eq!(&message.to_bytes(), &frame);
        }
        if let Ok(message) = ServerMessage::parse(frame.clone()) {
            prop_assert_eq!(message.encoded_len(), frame.len());
            prop_assert_eq!(&message.to_bytes(), &frame);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(4096))]

    /// Plain arbitrary bytes, no structure at all.
    #[test]
    fn parsers_never_panic_on_arbitrary_bytes(bytes in vec(any::<u8>(), 0..=512)) {
        let frame = Bytes::from(bytes);
        if let Ok(message) = ClientMessage::parse(frame.clone()) {
            prop_assert_eq!(&message.to_bytes(), &frame);
        }
        if let Ok(message) = ServerMessage::parse(frame.clone()) {
            prop_assert_eq!(&message.to_bytes(), &frame);
        }
    }
}
