//! Property tests: every valid message survives encode → parse unchanged,
//! `encoded_len` is exact, neither parser panics on any input, and whatever
//! a parser accepts re-encodes to exactly the bytes it came from.

use bytes::{Bytes, BytesMut};
use proptest::collection::vec;
use proptest::prelude::*;
use proptest::sample::select;
use webwire_proto::{
    AcceptConf, ClientMessage, Encoding, ErrorCode, ErrorReply, Name, Payload, Reply, Request,
    RequestId, ServerMessage, Signal,
};

/// Every type byte of protocol v2.0.
const KNOWN_TYPES: [u8; 21] = [
    0, 1, 2, 3, 4, 5, 21, 22, 23, 31, 32, 33, 63, 64, 65, 127, 128, 129, 191, 192, 193,
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
