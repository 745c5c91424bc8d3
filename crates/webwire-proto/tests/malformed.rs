//! Malformed messages, each with the exact [`ParseError`] it must produce
//! (docs/protocol.md sections 5, 10 and 14: every one is a protocol violation).

use bytes::Bytes;
use webwire_proto::{
    ClientMessage, FeatureFlags, MessageType as T, ParseError, RequestId, RoomName, ServerMessage,
    StreamId,
};

/// The request id used in the frames below.
const ID: &[u8] = &[1, 2, 3, 4, 5, 6, 7, 8];

/// Every type byte of protocol v2.0 (docs/protocol.md section 4) and of
/// its 2.1 extensions (section 14), written out here rather than taken from
/// the crate under test.
const KNOWN_TYPES: [u8; 32] = [
    0, 1, 2, 3, 4, 5, 6, 21, 22, 23, 24, 25, 31, 32, 33, 34, 35, 63, 64, 65, 66, 67, 68, 127, 128,
    129, 130, 131, 132, 191, 192, 193,
];

/// A u64 as it travels: little-endian.
fn le(value: u64) -> Vec<u8> {
    value.to_le_bytes().to_vec()
}

/// Sixteen bytes of epoch and offset (or lost_from and lost_to).
const E16: &[u8] = &[7; 16];
/// 33 bytes of a StreamLoss after its stream: epoch, lost_from, lost_to,
/// next, and reason 1.
fn loss_tail(reason: u8) -> Vec<u8> {
    f(&[&[7; 32], &[reason]])
}

/// A keyed request's key and ack: seq `seq`, epoch 1, ack 0.
fn key(seq: u64) -> Vec<u8> {
    f(&[&le(seq), &le(1), &le(0)])
}

/// Which parser a row is fed to.
#[derive(Debug, Clone, Copy)]
enum Side {
    /// `ClientMessage::parse` (a server reading what a client sent).
    Client,
    /// `ServerMessage::parse` (a client reading what a server sent).
    Server,
    /// Both parsers, which must agree.
    Both,
}

fn f(parts: &[&[u8]]) -> Vec<u8> {
    parts.concat()
}

fn too_short(kind: T, len: usize, min: usize) -> ParseError {
    ParseError::TooShort { kind, len, min }
}

fn wrong_len(kind: T, len: usize, expected: usize) -> ParseError {
    ParseError::WrongLength {
        kind,
        len,
        expected,
    }
}

fn name_oob(kind: T, name_len: usize, len: usize) -> ParseError {
    ParseError::NameOutOfBounds {
        kind,
        name_len,
        len,
    }
}

fn name_byte(kind: T, offset: usize, byte: u8) -> ParseError {
    ParseError::InvalidNameByte { kind, offset, byte }
}

fn odd(kind: T, len: usize) -> ParseError {
    ParseError::OddUtf16Length { kind, len }
}

fn padding(kind: T, offset: usize, byte: u8) -> ParseError {
    ParseError::NonZeroPadding { kind, offset, byte }
}

fn parse(side: Side, bytes: &[u8]) -> Vec<(&'static str, Result<String, ParseError>)> {
    let frame = Bytes::copy_from_slice(bytes);
    let client = || {
        (
            "client",
            ClientMessage::parse(frame.clone()).map(|m| format!("{m:?}")),
        )
    };
    let server = || {
        (
            "server",
            ServerMessage::parse(frame.clone()).map(|m| format!("{m:?}")),
        )
    };
    match side {
        Side::Client => vec![client()],
        Side::Server => vec![server()],
        Side::Both => vec![client(), server()],
    }
}

fn check(rows: Vec<(&str, Side, Vec<u8>, ParseError)>) {
    let mut failures = Vec::new();
    for (description, side, bytes, expected) in rows {
        for (parser, result) in parse(side, &bytes) {
            if result != Err(expected.clone()) {
                failures.push(format!(
                    "{description}: {parser} parser on {bytes:?}: expected {expected:?}, got {result:?}"
                ));
            }
        }
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}

#[test]
fn empty_input() {
    check(vec![("empty", Side::Both, vec![], ParseError::Empty)]);
}

/// Every type at its minimum length minus one byte, and every exact-length
/// type one byte long and one byte short.
#[test]
fn minimum_length_edges() {
    #[rustfmt::skip]
    let rows = vec![
        // Server-sent types.
        ("ReplyError, 10 bytes", Side::Server, f(&[&[0], ID, &[1]]), too_short(T::ReplyError, 10, 11)),
        ("ReplyShutdown, 8 bytes", Side::Server, f(&[&[1], &ID[..7]]), wrong_len(T::ReplyShutdown, 8, 9)),
        ("ReplyShutdown, 10 bytes", Side::Server, f(&[&[1], ID, &[0]]), wrong_len(T::ReplyShutdown, 10, 9)),
        ("ReplyInternalError, 8 bytes", Side::Server, f(&[&[2], &ID[..7]]), wrong_len(T::ReplyInternalError, 8, 9)),
        ("ReplyInternalError, 10 bytes", Side::Server, f(&[&[2], ID, &[0]]), wrong_len(T::ReplyInternalError, 10, 9)),
        ("ReplySessionNotFound, 8 bytes", Side::Server, f(&[&[3], &ID[..7]]), wrong_len(T::ReplySessionNotFound, 8, 9)),
        ("ReplySessionNotFound, 10 bytes", Side::Server, f(&[&[3], ID, &[0]]), wrong_len(T::ReplySessionNotFound, 10, 9)),
        ("ReplyMaxSessConnsReached, 8 bytes", Side::Server, f(&[&[4], &ID[..7]]), wrong_len(T::ReplyMaxSessConnsReached, 8, 9)),
        ("ReplyMaxSessConnsReached, 10 bytes", Side::Server, f(&[&[4], ID, &[0]]), wrong_len(T::ReplyMaxSessConnsReached, 10, 9)),
        ("ReplySessionsDisabled, 8 bytes", Side::Server, f(&[&[5], &ID[..7]]), wrong_len(T::ReplySessionsDisabled, 8, 9)),
        ("ReplySessionsDisabled, 10 bytes", Side::Server, f(&[&[5], ID, &[0]]), wrong_len(T::ReplySessionsDisabled, 10, 9)),
        ("ReplySessionsDisabled, type byte only", Side::Server, vec![5], wrong_len(T::ReplySessionsDisabled, 1, 9)),
        ("NotifySessionCreated, 1 byte", Side::Server, vec![21], too_short(T::NotifySessionCreated, 1, 2)),
        ("NotifySessionClosed, 2 bytes", Side::Server, vec![22, 0], wrong_len(T::NotifySessionClosed, 2, 1)),
        ("AcceptConf, 10 bytes", Side::Server, vec![23, 2, 0, 96, 234, 0, 0, 0, 32, 0], too_short(T::AcceptConf, 10, 11)),
        ("AcceptConf, type byte only", Side::Server, vec![23], too_short(T::AcceptConf, 1, 11)),
        ("binary Reply, 8 bytes", Side::Server, f(&[&[191], &ID[..7]]), too_short(T::ReplyBinary, 8, 9)),
        ("UTF-8 Reply, 8 bytes", Side::Server, f(&[&[192], &ID[..7]]), too_short(T::ReplyUtf8, 8, 9)),
        ("UTF-8 Reply, type byte only", Side::Server, vec![192], too_short(T::ReplyUtf8, 1, 9)),
        ("UTF-16 Reply, 9 bytes (no padding)", Side::Server, f(&[&[193], ID]), too_short(T::ReplyUtf16, 9, 10)),
        // Client-sent types.
        ("RequestCloseSession, 8 bytes", Side::Client, f(&[&[31], &ID[..7]]), wrong_len(T::RequestCloseSession, 8, 9)),
        ("RequestCloseSession, 10 bytes", Side::Client, f(&[&[31], ID, &[0]]), wrong_len(T::RequestCloseSession, 10, 9)),
        ("RequestRestoreSession, 9 bytes (no key)", Side::Client, f(&[&[32], ID]), too_short(T::RequestRestoreSession, 9, 10)),
        ("Heartbeat, 2 bytes", Side::Client, vec![33, 0], wrong_len(T::Heartbeat, 2, 1)),
        ("binary Request, 10 bytes", Side::Client, f(&[&[127], ID, &[0]]), too_short(T::RequestBinary, 10, 11)),
        ("UTF-8 Request, 10 bytes", Side::Client, f(&[&[128], ID, &[0]]), too_short(T::RequestUtf8, 10, 11)),
        ("UTF-16 Request, 10 bytes", Side::Client, f(&[&[129], ID, &[0]]), too_short(T::RequestUtf16, 10, 11)),
        ("UTF-16 Request, 9 bytes", Side::Client, f(&[&[129], ID]), too_short(T::RequestUtf16, 9, 11)),
        ("binary Request, type byte only", Side::Client, vec![127], too_short(T::RequestBinary, 1, 11)),
        // Signals, sent by both sides.
        ("binary Signal, 2 bytes", Side::Both, vec![63, 0], too_short(T::SignalBinary, 2, 3)),
        ("UTF-8 Signal, 2 bytes", Side::Both, vec![64, 0], too_short(T::SignalUtf8, 2, 3)),
        ("UTF-8 Signal, type byte only", Side::Both, vec![64], too_short(T::SignalUtf8, 1, 3)),
        ("UTF-16 Signal, 3 bytes", Side::Both, vec![65, 0, b'x'], too_short(T::SignalUtf16, 3, 4)),
        ("UTF-16 Signal, 2 bytes", Side::Both, vec![65, 0], too_short(T::SignalUtf16, 2, 4)),
    ];
    check(rows);
}

#[test]
fn name_length_past_the_end() {
    #[rustfmt::skip]
    let rows = vec![
        ("binary Signal, name length 5 with 2 name bytes", Side::Both, vec![63, 5, b'a', b'b'], name_oob(T::SignalBinary, 5, 4)),
        ("UTF-8 Signal, name length 255 with 1 name byte", Side::Both, vec![64, 255, b'a'], name_oob(T::SignalUtf8, 255, 3)),
        ("UTF-8 Signal, name length one past the end", Side::Both, vec![64, 3, b'a', b'b'], name_oob(T::SignalUtf8, 3, 4)),
        ("UTF-16 Signal, name length 3 with 2 name bytes", Side::Both, vec![65, 3, b'a', b'b'], name_oob(T::SignalUtf16, 3, 4)),
        ("binary Request, name length 3 with 1 name byte", Side::Client, f(&[&[127], ID, &[3, b'a']]), name_oob(T::RequestBinary, 3, 11)),
        ("UTF-8 Request, name length 255 with 4 name bytes", Side::Client, f(&[&[128], ID, &[255], b"echo"]), name_oob(T::RequestUtf8, 255, 14)),
        ("UTF-16 Request, name length 4 with 2 name bytes", Side::Client, f(&[&[129], ID, &[4, b'a', b'b']]), name_oob(T::RequestUtf16, 4, 12)),
    ];
    check(rows);
}

#[test]
fn name_bytes_outside_printable_ascii() {
    #[rustfmt::skip]
    let rows = vec![
        ("binary Signal, name byte 127", Side::Both, vec![63, 1, 127], name_byte(T::SignalBinary, 0, 127)),
        ("UTF-8 Signal, name byte 31 after 'a'", Side::Both, vec![64, 2, b'a', 31, b'x'], name_byte(T::SignalUtf8, 1, 31)),
        ("UTF-8 Signal, name byte 0", Side::Both, vec![64, 1, 0, b'x'], name_byte(T::SignalUtf8, 0, 0)),
        ("UTF-16 Signal, name byte 31", Side::Both, vec![65, 2, 31, b'a', b'x', 0], name_byte(T::SignalUtf16, 0, 31)),
        ("UTF-16 Signal, name byte 255", Side::Both, vec![65, 2, b'a', 255, b'x', 0], name_byte(T::SignalUtf16, 1, 255)),
        ("binary Request, name byte 127 at offset 2", Side::Client, f(&[&[127], ID, &[3, b'a', b'b', 127]]), name_byte(T::RequestBinary, 2, 127)),
        ("UTF-8 Request, name byte 31", Side::Client, f(&[&[128], ID, &[2, 31, b'a']]), name_byte(T::RequestUtf8, 0, 31)),
        ("UTF-8 Request, name byte 128 (UTF-8 lead)", Side::Client, f(&[&[128], ID, &[2, 0xc3, 0xa9]]), name_byte(T::RequestUtf8, 0, 0xc3)),
        ("UTF-16 Request, name byte 127", Side::Client, f(&[&[129], ID, &[2, b'a', 127, b'h', 0]]), name_byte(T::RequestUtf16, 1, 127)),
        ("UTF-16 Request, name byte 31", Side::Client, f(&[&[129], ID, &[1, 31, 0, b'h', 0]]), name_byte(T::RequestUtf16, 0, 31)),
    ];
    check(rows);
}

/// Names of the boundary bytes 32 and 126 are accepted: the table above is
/// about the range's edges, not about rejecting everything.
#[test]
fn name_bytes_32_and_126_are_accepted() {
    let frame = Bytes::from(f(&[&[128], ID, &[2, 32, 126], b"x"]));
    let Ok(ClientMessage::Request(request)) = ClientMessage::parse(frame) else {
        panic!("not accepted")
    };
    assert_eq!(request.name(), " ~");
    let frame = Bytes::from_static(&[64, 2, 32, 126]);
    let Ok(ServerMessage::Signal(signal)) = ServerMessage::parse(frame) else {
        panic!("not accepted")
    };
    assert_eq!(signal.name(), " ~");
    assert!(signal.payload().is_empty());
}

#[test]
fn odd_length_utf16_messages() {
    #[rustfmt::skip]
    let rows = vec![
        ("UTF-16 Signal, no name, 3-byte payload", Side::Both, vec![65, 0, b'x', 0, b'y'], odd(T::SignalUtf16, 5)),
        ("UTF-16 Signal, 2-byte name, 1-byte payload", Side::Both, vec![65, 2, b'a', b'b', b'x'], odd(T::SignalUtf16, 5)),
        ("UTF-16 Signal, odd name, padding, 3-byte payload", Side::Both, vec![65, 1, b'a', 0, b'x', 0, b'y'], odd(T::SignalUtf16, 7)),
        ("UTF-16 Request, no name, 1-byte payload", Side::Client, f(&[&[129], ID, &[0, b'x']]), odd(T::RequestUtf16, 11)),
        ("UTF-16 Request, no name, 3-byte payload", Side::Client, f(&[&[129], ID, &[0, b'x', 0, b'y']]), odd(T::RequestUtf16, 13)),
        ("UTF-16 Request, 2-byte name, 1-byte payload", Side::Client, f(&[&[129], ID, &[2, b'a', b'b', b'x']]), odd(T::RequestUtf16, 13)),
        ("UTF-16 Reply, 1-byte payload", Side::Server, f(&[&[193], ID, &[0, b'x']]), odd(T::ReplyUtf16, 11)),
        ("UTF-16 Reply, 3-byte payload", Side::Server, f(&[&[193], ID, &[0, b'x', 0, b'y']]), odd(T::ReplyUtf16, 13)),
    ];
    check(rows);
}

/// A UTF-16 payload starts at an even offset: after an odd-length name (or
/// the reply's id) comes one padding byte, which must be 0. Leaving it out
/// makes the message's length odd.
#[test]
fn missing_or_non_zero_padding() {
    #[rustfmt::skip]
    let rows = vec![
        ("UTF-16 Signal, 1-byte name, padding 'x'", Side::Both, vec![65, 1, b'a', b'x', 0, b'y'], padding(T::SignalUtf16, 3, b'x')),
        ("UTF-16 Signal, 3-byte name, padding 1", Side::Both, vec![65, 3, b'a', b'b', b'c', 1, b'x', 0], padding(T::SignalUtf16, 5, 1)),
        ("UTF-16 Signal, 1-byte name, padding missing", Side::Both, vec![65, 1, b'a', b'h', 0, b'i', 0], odd(T::SignalUtf16, 7)),
        ("UTF-16 Request, 1-byte name, padding 1", Side::Client, f(&[&[129], ID, &[1, b'a', 1]]), padding(T::RequestUtf16, 11, 1)),
        ("UTF-16 Request, 3-byte name, padding 0xff", Side::Client, f(&[&[129], ID, &[3, b'a', b'b', b'c', 0xff, b'h', 0]]), padding(T::RequestUtf16, 13, 0xff)),
        ("UTF-16 Request, 1-byte name, padding missing", Side::Client, f(&[&[129], ID, &[1, b'a', b'h', 0]]), odd(T::RequestUtf16, 13)),
        ("UTF-16 Request, 1-byte name, padding and payload missing", Side::Client, f(&[&[129], ID, &[1, b'a']]), odd(T::RequestUtf16, 11)),
        ("UTF-16 Reply, padding 7", Side::Server, f(&[&[193], ID, &[7, b'h', 0]]), padding(T::ReplyUtf16, 9, 7)),
        ("UTF-16 Reply, padding 0xff, empty payload", Side::Server, f(&[&[193], ID, &[0xff]]), padding(T::ReplyUtf16, 9, 0xff)),
        ("UTF-16 Reply, padding missing", Side::Server, f(&[&[193], ID, &[b'h', 0]]), odd(T::ReplyUtf16, 11)),
    ];
    check(rows);
}

#[test]
fn error_reply_codes() {
    #[rustfmt::skip]
    let rows = vec![
        ("zero-length code, 1-byte message", Side::Server, f(&[&[0], ID, &[0, b'x']]), ParseError::EmptyErrorCode),
        ("zero-length code, message 'bad'", Side::Server, f(&[&[0], ID, &[0], b"bad"]), ParseError::EmptyErrorCode),
        ("code length 2 with 1 code byte", Side::Server, f(&[&[0], ID, &[2, b'E']]), ParseError::ErrorCodeOutOfBounds { code_len: 2, len: 11 }),
        ("code length 255 with 3 code bytes", Side::Server, f(&[&[0], ID, &[255], b"E12"]), ParseError::ErrorCodeOutOfBounds { code_len: 255, len: 13 }),
        ("code byte 31 at offset 1", Side::Server, f(&[&[0], ID, &[2, b'E', 31]]), ParseError::InvalidErrorCodeByte { offset: 1, byte: 31 }),
        ("code byte 127, with a message", Side::Server, f(&[&[0], ID, &[1, 127], b"msg"]), ParseError::InvalidErrorCodeByte { offset: 0, byte: 127 }),
        ("code byte 0", Side::Server, f(&[&[0], ID, &[1, 0]]), ParseError::InvalidErrorCodeByte { offset: 0, byte: 0 }),
        ("code byte 0xc3 (UTF-8 lead)", Side::Server, f(&[&[0], ID, &[3, b'E', 0xc3, 0xa9]]), ParseError::InvalidErrorCodeByte { offset: 1, byte: 0xc3 }),
    ];
    check(rows);
}

#[test]
fn every_unknown_type_byte() {
    let mut rows = Vec::new();
    for byte in 0..=u8::MAX {
        if KNOWN_TYPES.contains(&byte) {
            continue;
        }
        let long = f(&[&[byte], ID, &[4], b"echo", b"hi"]);
        rows.push((
            "unknown type alone",
            Side::Both,
            vec![byte],
            ParseError::UnknownType(byte),
        ));
        rows.push((
            "unknown type with a body",
            Side::Both,
            long,
            ParseError::UnknownType(byte),
        ));
    }
    assert_eq!(rows.len(), 2 * (256 - 32));
    check(rows);
}

#[test]
fn types_only_the_other_side_may_send() {
    let to_client = |kind| ParseError::WrongDirection {
        kind,
        from: "client",
    };
    let to_server = |kind| ParseError::WrongDirection {
        kind,
        from: "server",
    };
    // Well-formed messages, so that the direction is their only fault.
    #[rustfmt::skip]
    let rows = vec![
        ("ReplyError from a client", Side::Client, f(&[&[0], ID, &[2], b"E1", b"bad"]), to_client(T::ReplyError)),
        ("ReplyShutdown from a client", Side::Client, f(&[&[1], ID]), to_client(T::ReplyShutdown)),
        ("ReplyInternalError from a client", Side::Client, f(&[&[2], ID]), to_client(T::ReplyInternalError)),
        ("ReplySessionNotFound from a client", Side::Client, f(&[&[3], ID]), to_client(T::ReplySessionNotFound)),
        ("ReplyMaxSessConnsReached from a client", Side::Client, f(&[&[4], ID]), to_client(T::ReplyMaxSessConnsReached)),
        ("ReplySessionsDisabled from a client", Side::Client, f(&[&[5], ID]), to_client(T::ReplySessionsDisabled)),
        ("NotifySessionCreated from a client", Side::Client, f(&[&[21], b"{}"]), to_client(T::NotifySessionCreated)),
        ("NotifySessionClosed from a client", Side::Client, vec![22], to_client(T::NotifySessionClosed)),
        ("AcceptConf from a client", Side::Client, vec![23, 2, 0, 96, 234, 0, 0, 0, 32, 0, 0], to_client(T::AcceptConf)),
        ("binary Reply from a client", Side::Client, f(&[&[191], ID, &[255]]), to_client(T::ReplyBinary)),
        ("UTF-8 Reply from a client", Side::Client, f(&[&[192], ID, b"ok"]), to_client(T::ReplyUtf8)),
        ("UTF-16 Reply from a client", Side::Client, f(&[&[193], ID, &[0, b'o', 0]]), to_client(T::ReplyUtf16)),
        ("RequestCloseSession from a server", Side::Server, f(&[&[31], ID]), to_server(T::RequestCloseSession)),
        ("RequestRestoreSession from a server", Side::Server, f(&[&[32], ID, b"key"]), to_server(T::RequestRestoreSession)),
        ("Heartbeat from a server", Side::Server, vec![33], to_server(T::Heartbeat)),
        ("binary Request from a server", Side::Server, f(&[&[127], ID, &[4], b"echo", &[1]]), to_server(T::RequestBinary)),
        ("UTF-8 Request from a server", Side::Server, f(&[&[128], ID, &[4], b"echo", b"hi"]), to_server(T::RequestUtf8)),
        ("UTF-16 Request from a server", Side::Server, f(&[&[129], ID, &[3], b"abc", &[0, b'h', 0]]), to_server(T::RequestUtf16)),
        // 2.1.
        ("ReplyOutcomeUnknown from a client", Side::Client, f(&[&[6], ID]), to_client(T::ReplyOutcomeUnknown)),
        ("StreamLoss from a client", Side::Client, f(&[&[24, 1, 0], &loss_tail(1)]), to_client(T::StreamLoss)),
        ("ExtensionAccept from a client", Side::Client, f(&[&[25, 3, 0, 0, 0], &le(9)]), to_client(T::ExtensionAccept)),
        ("binary StreamSignal from a client", Side::Client, f(&[&[66, 1, 0], E16, &[1, b'n', 1]]), to_client(T::StreamSignalBinary)),
        ("UTF-8 StreamSignal from a client", Side::Client, f(&[&[67, 1, 0], E16, &[0, b'x']]), to_client(T::StreamSignalUtf8)),
        ("UTF-16 StreamSignal from a client", Side::Client, f(&[&[68, 1, 0], E16, &[0, b'x', 0]]), to_client(T::StreamSignalUtf16)),
        ("ExtensionHello from a server", Side::Server, vec![34, 1, 0, 0, 0, 0], to_server(T::ExtensionHello)),
        ("StreamResume from a server", Side::Server, f(&[&[35], ID, &[0, 0]]), to_server(T::StreamResume)),
        ("binary KeyedRequest from a server", Side::Server, f(&[&[130], ID, &key(1), &[1, b'k']]), to_server(T::KeyedRequestBinary)),
        ("UTF-8 KeyedRequest from a server", Side::Server, f(&[&[131], ID, &key(1), &[1, b'k']]), to_server(T::KeyedRequestUtf8)),
        ("UTF-16 KeyedRequest from a server", Side::Server, f(&[&[132], ID, &key(1), &[0, b'h', 0]]), to_server(T::KeyedRequestUtf16)),
    ];
    check(rows);
}

// ---- 2.1: each rule of docs/protocol.md section 14 broken once. ----------

#[test]
fn extension_hello() {
    #[rustfmt::skip]
    let rows = vec![
        ("5 bytes", Side::Client, vec![34, 1, 0, 0, 0], too_short(T::ExtensionHello, 5, 6)),
        ("instance id length 65", Side::Client, f(&[&[34, 1, 0, 0, 0, 65], &[b'a'; 65]]), ParseError::InstanceIdTooLong { len: 65 }),
        ("instance id length 255, nothing after", Side::Client, vec![34, 1, 0, 0, 0, 255], ParseError::InstanceIdTooLong { len: 255 }),
        ("instance id length 3 with 2 bytes", Side::Client, vec![34, 1, 0, 0, 0, 3, b'a', b'b'], wrong_len(T::ExtensionHello, 8, 9)),
        ("instance id length 1 with 2 bytes", Side::Client, vec![34, 1, 0, 0, 0, 1, b'a', b'b'], wrong_len(T::ExtensionHello, 8, 7)),
        ("instance id byte 31", Side::Client, vec![34, 1, 0, 0, 0, 2, b'a', 31], ParseError::InvalidInstanceIdByte { offset: 1, byte: 31 }),
        ("instance id byte 127", Side::Client, vec![34, 1, 0, 0, 0, 1, 127], ParseError::InvalidInstanceIdByte { offset: 0, byte: 127 }),
        ("KEYED_REQUESTS with a 15-byte instance id", Side::Client, f(&[&[34, 2, 0, 0, 0, 15], &[b'i'; 15]]), ParseError::InstanceIdTooShort { len: 15, min: 16 }),
        ("all flags with an empty instance id", Side::Client, vec![34, 255, 255, 255, 255, 0], ParseError::InstanceIdTooShort { len: 0, min: 16 }),
    ];
    check(rows);
}

#[test]
fn fixed_length_server_extension_messages() {
    #[rustfmt::skip]
    let rows = vec![
        ("ReplyOutcomeUnknown, 8 bytes", Side::Server, f(&[&[6], &ID[..7]]), wrong_len(T::ReplyOutcomeUnknown, 8, 9)),
        ("ReplyOutcomeUnknown, 10 bytes", Side::Server, f(&[&[6], ID, &[0]]), wrong_len(T::ReplyOutcomeUnknown, 10, 9)),
        ("ExtensionAccept, 12 bytes", Side::Server, f(&[&[25, 3, 0, 0, 0], &le(9)[..7]]), wrong_len(T::ExtensionAccept, 12, 13)),
        ("ExtensionAccept, 14 bytes", Side::Server, f(&[&[25, 3, 0, 0, 0], &le(9), &[0]]), wrong_len(T::ExtensionAccept, 14, 13)),
        ("ExtensionAccept, type byte only", Side::Server, vec![25], wrong_len(T::ExtensionAccept, 1, 13)),
    ];
    check(rows);
}

#[test]
fn stream_resume() {
    let session = f(&[&[1, 0], E16]);
    #[rustfmt::skip]
    let rows = vec![
        ("10 bytes", Side::Client, f(&[&[35], ID, &[0]]), too_short(T::StreamResume, 10, 11)),
        ("count 1025", Side::Client, f(&[&[35], ID, &[0x01, 0x04]]), ParseError::TooManyStreams { count: 1025, max: 1024 }),
        ("count 1 without an entry", Side::Client, f(&[&[35], ID, &[1, 0]]), too_short(T::StreamResume, 11, 29)),
        ("count 2 with one entry", Side::Client, f(&[&[35], ID, &[2, 0], &session]), too_short(T::StreamResume, 29, 47)),
        ("entry one byte short", Side::Client, f(&[&[35], ID, &[1, 0], &session[..17]]), too_short(T::StreamResume, 28, 29)),
        ("room name past the end", Side::Client, f(&[&[35], ID, &[1, 0], &[2, 5, b'a', b'b']]), too_short(T::StreamResume, 15, 34)),
        ("stream kind 0", Side::Client, f(&[&[35], ID, &[1, 0], &[0, 0], E16]), ParseError::InvalidStreamKind { kind: T::StreamResume, stream_kind: 0 }),
        ("stream kind 3", Side::Client, f(&[&[35], ID, &[1, 0], &[3, 0], E16]), ParseError::InvalidStreamKind { kind: T::StreamResume, stream_kind: 3 }),
        ("session stream with a name", Side::Client, f(&[&[35], ID, &[1, 0], &[1, 2, b'a', b'b'], E16]), ParseError::SessionStreamWithName { kind: T::StreamResume, name_len: 2 }),
        ("room stream without a name", Side::Client, f(&[&[35], ID, &[1, 0], &[2, 0], E16]), ParseError::EmptyRoomName { kind: T::StreamResume }),
        ("room name not UTF-8", Side::Client, f(&[&[35], ID, &[1, 0], &[2, 3, b'a', 0xc3, 0x28], E16]), ParseError::InvalidRoomName { kind: T::StreamResume, valid_up_to: 1 }),
        ("second entry bad after a good one", Side::Client, f(&[&[35], ID, &[2, 0], &session, &[9, 0], E16]), ParseError::InvalidStreamKind { kind: T::StreamResume, stream_kind: 9 }),
        ("a byte after the last entry", Side::Client, f(&[&[35], ID, &[1, 0], &session, &[0]]), wrong_len(T::StreamResume, 30, 29)),
        ("count 0 and a byte", Side::Client, f(&[&[35], ID, &[0, 0, 9]]), wrong_len(T::StreamResume, 12, 11)),
        ("session stream listed twice", Side::Client, f(&[&[35], ID, &[2, 0], &session, &session]), ParseError::DuplicateStream { stream: StreamId::Session }),
        ("room listed twice, other epochs", Side::Client, f(&[&[35], ID, &[3, 0], &[2, 2, b'a', b'b'], E16, &session, &[2, 2, b'a', b'b'], &[9; 16]]), ParseError::DuplicateStream { stream: StreamId::Room(RoomName::from_static("ab")) }),
    ];
    check(rows);
}

#[test]
fn stream_signal() {
    #[rustfmt::skip]
    let rows = vec![
        ("binary, 20 bytes (neither name nor payload)", Side::Server, f(&[&[66, 1, 0], E16, &[0]]), too_short(T::StreamSignalBinary, 20, 21)),
        ("UTF-8, type byte only", Side::Server, vec![67], too_short(T::StreamSignalUtf8, 1, 21)),
        ("UTF-16, 21 bytes", Side::Server, f(&[&[68, 1, 0], E16, &[0, b'x']]), too_short(T::StreamSignalUtf16, 21, 22)),
        ("stream kind 3", Side::Server, f(&[&[66, 3, 0], E16, &[0, b'x']]), ParseError::InvalidStreamKind { kind: T::StreamSignalBinary, stream_kind: 3 }),
        ("session stream with a name", Side::Server, f(&[&[66, 1, 1, b'a'], E16, &[0, b'x']]), ParseError::SessionStreamWithName { kind: T::StreamSignalBinary, name_len: 1 }),
        ("room stream without a name", Side::Server, f(&[&[67, 2, 0], E16, &[0, b'x']]), ParseError::EmptyRoomName { kind: T::StreamSignalUtf8 }),
        ("room name not UTF-8", Side::Server, f(&[&[67, 2, 1, 0xff], E16, &[0, b'x']]), ParseError::InvalidRoomName { kind: T::StreamSignalUtf8, valid_up_to: 0 }),
        ("room name past the end", Side::Server, f(&[&[66, 2, 200, b'a'], E16, &[0, b'x']]), too_short(T::StreamSignalBinary, 22, 221)),
        ("room stream, no name or payload", Side::Server, f(&[&[66, 2, 2, b'a', b'b'], E16, &[0]]), too_short(T::StreamSignalBinary, 22, 23)),
        ("name length past the end", Side::Server, f(&[&[66, 1, 0], E16, &[5, b'a', b'b']]), name_oob(T::StreamSignalBinary, 5, 22)),
        ("name byte 127", Side::Server, f(&[&[67, 1, 0], E16, &[1, 127]]), name_byte(T::StreamSignalUtf8, 0, 127)),
        ("UTF-16, odd length", Side::Server, f(&[&[68, 1, 0], E16, &[0, b'x', 0, b'y']]), odd(T::StreamSignalUtf16, 23)),
        ("UTF-16, padding 7", Side::Server, f(&[&[68, 1, 0], E16, &[1, b'a', 7, b'h', 0]]), padding(T::StreamSignalUtf16, 21, 7)),
        ("UTF-16, room name of 1 and name of 1: no padding needed, odd", Side::Server, f(&[&[68, 2, 1, b'r'], E16, &[1, b'a', 0, b'h', 0]]), odd(T::StreamSignalUtf16, 25)),
        ("UTF-16, name but no payload", Side::Server, f(&[&[68, 1, 0], E16, &[2, b'a', b'b']]), too_short(T::StreamSignalUtf16, 22, 24)),
        ("epoch 0", Side::Server, f(&[&[66, 1, 0], &le(0), &le(1), &[0, b'x']]), ParseError::ZeroEpoch { kind: T::StreamSignalBinary }),
        ("offset 0", Side::Server, f(&[&[67, 2, 1, b'r'], &le(1), &le(0), &[0, b'x']]), ParseError::ZeroOffset { kind: T::StreamSignalUtf8 }),
        ("UTF-16, epoch and offset 0", Side::Server, f(&[&[68, 1, 0], &le(0), &le(0), &[0, b'h', 0]]), ParseError::ZeroEpoch { kind: T::StreamSignalUtf16 }),
    ];
    check(rows);
}

#[test]
fn stream_loss() {
    #[rustfmt::skip]
    let rows = vec![
        ("35 bytes", Side::Server, f(&[&[24, 1, 0], &loss_tail(1)[..32]]), too_short(T::StreamLoss, 35, 36)),
        ("stream kind 0", Side::Server, f(&[&[24, 0, 0], &loss_tail(1)]), ParseError::InvalidStreamKind { kind: T::StreamLoss, stream_kind: 0 }),
        ("session stream with a name", Side::Server, f(&[&[24, 1, 1, b'a'], &loss_tail(1)]), ParseError::SessionStreamWithName { kind: T::StreamLoss, name_len: 1 }),
        ("room stream without a name", Side::Server, f(&[&[24, 2, 0], &loss_tail(1)]), ParseError::EmptyRoomName { kind: T::StreamLoss }),
        ("room name not UTF-8", Side::Server, f(&[&[24, 2, 1, 0x80], &loss_tail(1)]), ParseError::InvalidRoomName { kind: T::StreamLoss, valid_up_to: 0 }),
        ("room name past the end", Side::Server, f(&[&[24, 2, 10, b'a'], &loss_tail(1)]), too_short(T::StreamLoss, 37, 46)),
        ("a byte after the reason", Side::Server, f(&[&[24, 1, 0], &loss_tail(1), &[0]]), wrong_len(T::StreamLoss, 37, 36)),
        ("reason 0", Side::Server, f(&[&[24, 1, 0], &loss_tail(0)]), ParseError::UnknownLossReason(0)),
        ("reason 5", Side::Server, f(&[&[24, 1, 0], &loss_tail(5)]), ParseError::UnknownLossReason(5)),
    ];
    check(rows);
}

#[test]
fn keyed_request() {
    #[rustfmt::skip]
    let rows = vec![
        ("34 bytes (neither name nor payload)", Side::Client, f(&[&[130], ID, &key(1), &[0]]), too_short(T::KeyedRequestBinary, 34, 35)),
        ("UTF-8, type byte only", Side::Client, vec![131], too_short(T::KeyedRequestUtf8, 1, 35)),
        ("sequence number 0", Side::Client, f(&[&[130], ID, &key(0), &[0, b'x']]), ParseError::ZeroSequence { kind: T::KeyedRequestBinary }),
        ("name length past the end", Side::Client, f(&[&[131], ID, &key(1), &[5, b'a']]), name_oob(T::KeyedRequestUtf8, 5, 35)),
        ("name byte 31", Side::Client, f(&[&[130], ID, &key(1), &[1, 31]]), name_byte(T::KeyedRequestBinary, 0, 31)),
        ("UTF-16, odd length", Side::Client, f(&[&[132], ID, &key(1), &[0, b'x']]), odd(T::KeyedRequestUtf16, 35)),
        ("UTF-16, padding 9", Side::Client, f(&[&[132], ID, &key(1), &[1, b'a', 9]]), padding(T::KeyedRequestUtf16, 35, 9)),
        ("UTF-16, padding missing", Side::Client, f(&[&[132], ID, &key(1), &[1, b'a', b'h', 0]]), odd(T::KeyedRequestUtf16, 37)),
    ];
    check(rows);
}

/// The edges the rules allow are accepted: the tables above are about
/// crossing them, not about rejecting everything.
#[test]
fn extension_edges_that_are_accepted() {
    let ok_client = |bytes: Vec<u8>| {
        let frame = Bytes::from(bytes);
        let message =
            ClientMessage::parse(frame.clone()).unwrap_or_else(|err| panic!("{frame:?}: {err}"));
        assert_eq!(message.to_bytes(), frame);
        message
    };
    let ok_server = |bytes: Vec<u8>| {
        let frame = Bytes::from(bytes);
        let message =
            ServerMessage::parse(frame.clone()).unwrap_or_else(|err| panic!("{frame:?}: {err}"));
        assert_eq!(message.to_bytes(), frame);
        message
    };
    // An empty instance id without keyed requests; 64 bytes; 16 with them;
    // unknown flag bits are kept.
    let ClientMessage::ExtensionHello(hello) = ok_client(vec![34, 1, 0, 0, 0x80, 0]) else {
        panic!()
    };
    assert_eq!(hello.flags().bits(), 0x8000_0001);
    assert!(hello.instance_id().is_empty());
    ok_client(f(&[&[34, 1, 0, 0, 0, 64], &[b'~'; 64]]));
    ok_client(f(&[&[34, 2, 0, 0, 0, 16], &[b' '; 16]]));
    // A resume of no stream, and of 1024.
    let ClientMessage::StreamResume(resume) = ok_client(f(&[&[35], ID, &[0, 0]])) else {
        panic!()
    };
    assert!(resume.positions().is_empty());
    // 1024 different streams: a stream listed twice is malformed.
    let entries: Vec<u8> = (0..1024)
        .flat_map(|i: u32| {
            let room = format!("r{i}");
            f(&[&[2, room.len() as u8], room.as_bytes(), E16])
        })
        .collect();
    ok_client(f(&[&[35], ID, &[0x00, 0x04], &entries]));
    // A 255-byte UTF-8 room name.
    let room = "é".repeat(127) + "x";
    assert_eq!(room.len(), 255);
    let ServerMessage::StreamLoss(loss) =
        ok_server(f(&[&[24, 2, 255], room.as_bytes(), &loss_tail(4)]))
    else {
        panic!()
    };
    assert!(matches!(&loss.stream, StreamId::Room(name) if name.as_str() == room));
    // Stream signals with a name only, and UTF-16 after an odd room name
    // and an even name (sl + n odd: padded).
    ok_server(f(&[&[66, 1, 0], E16, &[1, b'n']]));
    ok_server(f(&[&[68, 2, 1, b'r'], E16, &[2, b'a', b'b', 0, b'h', 0]]));
    // A keyed request with a name only, whose ack is not below its seq
    // (that is for the server to refuse, not the parser).
    let ClientMessage::KeyedRequest(keyed) =
        ok_client(f(&[&[131], ID, &le(2), &le(1), &le(5), &[1, b'k']]))
    else {
        panic!()
    };
    assert_eq!((keyed.key().seq, keyed.ack()), (2, 5));
    assert!(FeatureFlags::KNOWN.contains(FeatureFlags::STREAMS));
}

/// The layouts' minimum lengths already leave no room for a request or
/// signal with neither name nor payload, so such a message is too short.
#[test]
fn request_or_signal_with_neither_name_nor_payload() {
    #[rustfmt::skip]
    let rows = vec![
        ("binary Signal", Side::Both, vec![63, 0], too_short(T::SignalBinary, 2, 3)),
        ("UTF-8 Signal", Side::Both, vec![64, 0], too_short(T::SignalUtf8, 2, 3)),
        ("UTF-16 Signal", Side::Both, vec![65, 0], too_short(T::SignalUtf16, 2, 4)),
        ("binary Request", Side::Client, f(&[&[127], ID, &[0]]), too_short(T::RequestBinary, 10, 11)),
        ("UTF-8 Request", Side::Client, f(&[&[128], ID, &[0]]), too_short(T::RequestUtf8, 10, 11)),
        ("UTF-16 Request", Side::Client, f(&[&[129], ID, &[0]]), too_short(T::RequestUtf16, 10, 11)),
    ];
    check(rows);
}

/// A UTF-16 signal's payload is at least one code unit, also when it has a name.
#[test]
fn utf16_signal_with_name_but_no_payload() {
    #[rustfmt::skip]
    let rows = vec![
        ("even name, no payload", Side::Both, vec![65, 2, b'a', b'b'], too_short(T::SignalUtf16, 4, 6)),
        ("odd name, padding, no payload", Side::Both, vec![65, 1, b'a', 0], too_short(T::SignalUtf16, 4, 6)),
        ("3-byte name, padding, no payload", Side::Both, vec![65, 3, b'a', b'b', b'c', 0], too_short(T::SignalUtf16, 6, 8)),
    ];
    check(rows);
}

/// Not malformed: the server judges a session key, so the parser takes any
/// key bytes (docs/protocol.md 5.10).
#[test]
fn restore_session_accepts_any_key_bytes() {
    let frame = Bytes::from(f(&[&[32], ID, &[0, 255, b'\n', 127]]));
    assert_eq!(
        ClientMessage::parse(frame),
        Ok(ClientMessage::RestoreSession {
            id: RequestId([1, 2, 3, 4, 5, 6, 7, 8]),
            key: Bytes::from_static(&[0, 255, b'\n', 127]),
        })
    );
}
