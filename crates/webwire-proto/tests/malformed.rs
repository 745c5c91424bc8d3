//! Malformed messages, each with the exact [`ParseError`] it must produce
//! (docs/protocol.md sections 5 and 10: every one is a protocol violation).

use bytes::Bytes;
use webwire_proto::{ClientMessage, MessageType as T, ParseError, RequestId, ServerMessage};

/// The request id used in the frames below.
const ID: &[u8] = &[1, 2, 3, 4, 5, 6, 7, 8];

/// Every type byte of protocol v2.0 (docs/protocol.md section 4),
/// written out here rather than taken from the crate under test.
const KNOWN_TYPES: [u8; 21] = [
    0, 1, 2, 3, 4, 5, 21, 22, 23, 31, 32, 33, 63, 64, 65, 127, 128, 129, 191, 192, 193,
];

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
    assert_eq!(rows.len(), 2 * (256 - 21));
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
    ];
    check(rows);
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
