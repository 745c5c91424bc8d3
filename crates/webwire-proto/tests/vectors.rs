//! Byte-exact tests against the original Go implementation's vectors
//! (`tests/data/webwire-v2.json`, the original implementation's vectors)
//! and the worked examples of docs/protocol.md section 12, in both directions:
//! fields → constructors → `encode` gives exactly the bytes, and the bytes →
//! the parser of the receiving side gives the same fields back.

use std::collections::HashSet;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use serde_json::Value;
use webwire_proto::{
    AcceptConf, ClientMessage, Encoding, ErrorCode, ErrorReply, MessageType, Name, ParseError,
    Payload, Reply, Request, RequestId, ServerMessage, Signal, ValueError,
};

const VECTORS: &str = include_str!("data/webwire-v2.json");

fn hex(text: &str) -> Vec<u8> {
    assert!(text.len().is_multiple_of(2), "odd hex {text:?}");
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).expect("hex digit"))
        .collect()
}

fn str_field<'a>(fields: &'a Value, key: &str) -> &'a str {
    fields[key]
        .as_str()
        .unwrap_or_else(|| panic!("field {key:?} missing in {fields}"))
}

fn u32_field(fields: &Value, key: &str) -> u32 {
    let value = fields[key]
        .as_u64()
        .unwrap_or_else(|| panic!("field {key:?} missing in {fields}"));
    u32::try_from(value).expect("u32 field")
}

fn id_field(fields: &Value) -> RequestId {
    let bytes: [u8; 8] = hex(str_field(fields, "id_hex"))
        .try_into()
        .expect("8-byte id");
    RequestId(bytes)
}

fn encoding_field(fields: &Value) -> Encoding {
    match str_field(fields, "encoding") {
        "binary" => Encoding::Binary,
        "utf8" => Encoding::Utf8,
        "utf16" => Encoding::Utf16,
        other => panic!("unknown encoding {other:?}"),
    }
}

fn payload_field(fields: &Value) -> Payload {
    Payload::new(
        encoding_field(fields),
        hex(str_field(fields, "payload_hex")),
    )
    .expect("payload")
}

fn name_field(fields: &Value) -> Name {
    Name::new(str_field(fields, "name").to_owned()).expect("name")
}

/// A message built with the public constructors, tagged with who sends it.
#[derive(Debug, Clone, PartialEq)]
enum Built {
    Client(ClientMessage),
    Server(ServerMessage),
    /// Signals are sent by both sides.
    Both(Signal),
}

impl Built {
    fn encode(&self, buf: &mut BytesMut) -> usize {
        match self {
            Self::Client(message) => {
                message.encode(buf);
                message.encoded_len()
            }
            Self::Server(message) => {
                message.encode(buf);
                message.encoded_len()
            }
            Self::Both(signal) => {
                signal.encode(buf);
                signal.encoded_len()
            }
        }
    }

    fn message_type(&self) -> MessageType {
        match self {
            Self::Client(message) => message.message_type(),
            Self::Server(message) => message.message_type(),
            Self::Both(signal) => signal.message_type(),
        }
    }

    /// Encodes with every path the API offers and checks they agree.
    fn encoded(&self) -> Vec<u8> {
        let mut buf = BytesMut::new();
        let len = self.encode(&mut buf);
        assert_eq!(len, buf.len(), "encoded_len of {self:?}");
        // Appending to a buffer that already holds data leaves that data alone.
        let mut appended = BytesMut::from(&b"prefix"[..]);
        self.encode(&mut appended);
        assert_eq!(&appended[..6], b"prefix");
        assert_eq!(appended[6..], buf[..]);
        match self {
            Self::Client(message) => assert_eq!(message.to_bytes(), buf),
            Self::Server(message) => assert_eq!(message.to_bytes(), buf),
            Self::Both(signal) => {
                assert_eq!(ClientMessage::Signal(signal.clone()).to_bytes(), buf);
                assert_eq!(ServerMessage::Signal(signal.clone()).to_bytes(), buf);
            }
        }
        buf.to_vec()
    }

    /// Parses `bytes` with the receiving side's parser (both for signals)
    /// and checks the result equals `self`.
    fn check_parse(&self, bytes: &[u8]) {
        let frame = Bytes::copy_from_slice(bytes);
        match self {
            Self::Client(message) => {
                assert_eq!(&ClientMessage::parse(frame).expect("client parse"), message);
            }
            Self::Server(message) => {
                assert_eq!(&ServerMessage::parse(frame).expect("server parse"), message);
            }
            Self::Both(signal) => {
                assert_eq!(
                    ClientMessage::parse(frame.clone()).expect("client parse"),
                    ClientMessage::Signal(signal.clone())
                );
                assert_eq!(
                    ServerMessage::parse(frame).expect("server parse"),
                    ServerMessage::Signal(signal.clone())
                );
            }
        }
    }
}

/// Builds the vector's message from its "fields" with the public constructors.
fn build(kind: &str, fields: &Value) -> Built {
    match kind {
        "Request" => Built::Client(ClientMessage::Request(
            Request::new(id_field(fields), name_field(fields), payload_field(fields))
                .expect("request"),
        )),
        "Signal" => {
            Built::Both(Signal::new(name_field(fields), payload_field(fields)).expect("signal"))
        }
        "Reply" => Built::Server(ServerMessage::Reply(Reply::new(
            id_field(fields),
            payload_field(fields),
        ))),
        "ReplyError" => Built::Server(ServerMessage::Error(ErrorReply::new(
            id_field(fields),
            ErrorCode::new(str_field(fields, "code").to_owned()).expect("error code"),
            str_field(fields, "message"),
        ))),
        "ReplyShutdown" => Built::Server(ServerMessage::Shutdown(id_field(fields))),
        "ReplyInternalError" => Built::Server(ServerMessage::InternalError(id_field(fields))),
        "ReplySessionNotFound" => Built::Server(ServerMessage::SessionNotFound(id_field(fields))),
        "ReplyMaxSessConnsReached" => {
            Built::Server(ServerMessage::MaxSessConnsReached(id_field(fields)))
        }
        "ReplySessionsDisabled" => Built::Server(ServerMessage::SessionsDisabled(id_field(fields))),
        "NotifySessionCreated" => Built::Server(ServerMessage::SessionCreated(Bytes::from(
            str_field(fields, "session_json").to_owned(),
        ))),
        "NotifySessionClosed" => Built::Server(ServerMessage::SessionClosed),
        "RequestRestoreSession" => Built::Client(ClientMessage::RestoreSession {
            id: id_field(fields),
            key: Bytes::from(str_field(fields, "key").to_owned()),
        }),
        "RequestCloseSession" => Built::Client(ClientMessage::CloseSession(id_field(fields))),
        "Heartbeat" => Built::Client(ClientMessage::Heartbeat),
        "AcceptConf" => {
            let conf = AcceptConf::new(
                Duration::from_millis(u64::from(u32_field(fields, "read_timeout_ms"))),
                u32_field(fields, "buffer_size"),
                str_field(fields, "sub_protocol").to_owned(),
            );
            assert_eq!(u32::from(conf.major), u32_field(fields, "major"));
            assert_eq!(u32::from(conf.minor), u32_field(fields, "minor"));
            Built::Server(ServerMessage::AcceptConf(conf))
        }
        other => panic!("unknown vector kind {other:?}"),
    }
}

/// Checks the parsed message against what the original Go parser read back.
fn check_decoded_by_original(built: &Built, decoded: &Value) {
    let field_hex = |key: &str| decoded.get(key).and_then(Value::as_str).map(hex);
    let ty = decoded["type"].as_u64().expect("type");
    assert_eq!(u64::from(built.message_type().byte()), ty);
    let id = field_hex("id_hex");
    let name = decoded.get("name").and_then(Value::as_str);
    let payload = field_hex("payload_hex");
    // (id, name, payload) as this codec read them, in the Go parser's terms.
    let (our_id, our_name, our_payload): (Option<RequestId>, Option<&[u8]>, Option<&[u8]>) =
        match built {
            Built::Client(ClientMessage::Request(request)) => (
                Some(request.id()),
                Some(request.name().as_bytes()),
                Some(request.payload().as_bytes()),
            ),
            Built::Both(signal) => (
                None,
                Some(signal.name().as_bytes()),
                Some(signal.payload().as_bytes()),
            ),
            Built::Client(ClientMessage::RestoreSession { id, key }) => {
                (Some(*id), None, Some(key))
            }
            Built::Client(ClientMessage::CloseSession(id)) => (Some(*id), None, Some(&[])),
            Built::Client(ClientMessage::Heartbeat) => (None, None, None),
            Built::Server(ServerMessage::Reply(reply)) => {
                (Some(reply.id), None, Some(reply.payload.as_bytes()))
            }
            Built::Server(ServerMessage::Error(error)) => (
                Some(error.id),
                Some(error.code.as_bytes()),
                Some(&error.message),
            ),
            Built::Server(ServerMessage::SessionCreated(json)) => (None, None, Some(json)),
            Built::Server(ServerMessage::AcceptConf(conf)) => {
                assert_eq!(u64::from(conf.major), decoded["major"].as_u64().unwrap());
                assert_eq!(u64::from(conf.minor), decoded["minor"].as_u64().unwrap());
                assert_eq!(
                    u64::from(conf.read_timeout_ms),
                    decoded["read_timeout_ms"].as_u64().unwrap()
                );
                assert_eq!(
                    u64::from(conf.buffer_size),
                    decoded["buffer_size"].as_u64().unwrap()
                );
                assert_eq!(
                    &conf.sub_protocol[..],
                    decoded["sub_protocol"].as_str().unwrap().as_bytes()
                );
                (None, None, None)
            }
            Built::Server(ServerMessage::SessionClosed) => (None, None, None),
            Built::Server(message) => (message.request_id(), None, Some(&[])),
            Built::Client(other) => panic!("unexpected client message {other:?}"),
        };
    assert_eq!(our_id.map(|id| id.0.to_vec()), id);
    match our_name {
        // The Go parser leaves an empty name out.
        Some(ours) => assert_eq!(ours, name.unwrap_or("").as_bytes()),
        None => assert_eq!(name, None),
    }
    assert_eq!(our_payload.map(<[u8]>::to_vec), payload);
}

#[test]
fn every_vector_encodes_and_parses_byte_exact() {
    let doc: Value = serde_json::from_str(VECTORS).expect("vectors JSON");
    let vectors = doc["vectors"].as_array().expect("vectors array");
    assert_eq!(vectors.len(), 41, "the original's vectors number 41");
    let mut types_seen = HashSet::new();
    for vector in vectors {
        let description = vector["description"].as_str().unwrap();
        let kind = vector["kind"].as_str().unwrap();
        let bytes = hex(vector["hex"].as_str().unwrap());
        let built = build(kind, &vector["fields"]);
        // "Request", "Signal" and "Reply" name three types each ("UTF-8 Request", ...).
        let type_name = built.message_type().as_str();
        assert!(
            type_name == kind || type_name.ends_with(&format!(" {kind}")),
            "{description:?}: built a {type_name}"
        );
        assert_eq!(
            built.encoded(),
            bytes,
            "encoding {description:?} (built {built:?})"
        );
        built.check_parse(&bytes);
        check_decoded_by_original(&built, &vector["decoded_by_original"]);
        types_seen.insert(built.message_type());
    }
    // The vectors come from the original implementation, which knows no
    // 2.1 type; their byte-exact examples are in the crate's own tests.
    for kind in MessageType::ALL.into_iter().filter(|k| !k.is_extension()) {
        assert!(types_seen.contains(&kind), "no vector of type {kind}");
    }
}

#[test]
fn the_utf16_signal_without_payload_is_refused_both_ways() {
    let doc: Value = serde_json::from_str(VECTORS).expect("vectors JSON");
    let rejected = doc["written_but_rejected_by_original_parser"]
        .as_array()
        .expect("rejected array");
    assert_eq!(rejected.len(), 1);
    let bytes = Bytes::from(hex(rejected[0]["hex"].as_str().unwrap()));
    assert_eq!(&bytes[..], b"\x41\x03abc\x00");
    // signal name="abc" encoding=utf16 payload=0 bytes
    assert_eq!(
        Signal::new(Name::from_static("abc"), Payload::utf16("")),
        Err(ValueError::EmptyUtf16Signal)
    );
    let expected = ParseError::TooShort {
        kind: MessageType::SignalUtf16,
        len: 6,
        min: 8,
    };
    assert_eq!(ClientMessage::parse(bytes.clone()), Err(expected.clone()));
    assert_eq!(ServerMessage::parse(bytes), Err(expected));
}

fn decimal(text: &str) -> Vec<u8> {
    text.split_whitespace()
        .map(|byte| byte.parse().expect("decimal byte"))
        .collect()
}

fn id(value: u64) -> RequestId {
    RequestId::from(value)
}

/// The worked examples of docs/protocol.md section 12, row by row.
#[test]
fn protocol_md_examples() {
    #[rustfmt::skip]
    let table: Vec<(&str, Built, &str)> = vec![
        (
            "AcceptConf v2.0, read timeout 60000 ms, buffer 8192, no sub-protocol",
            Built::Server(ServerMessage::AcceptConf(AcceptConf::new(Duration::from_millis(60000), 8192, ""))),
            "23 2 0 96 234 0 0 0 32 0 0",
        ),
        (
            "UTF-8 request, id 1, name `echo`, payload `hi`",
            Built::Client(ClientMessage::Request(Request::new(id(1), Name::from_static("echo"), Payload::utf8("hi")).unwrap())),
            "128 1 0 0 0 0 0 0 0 4 101 99 104 111 104 105",
        ),
        (
            "UTF-16 request, id 2, name `abc`, payload `hi`",
            Built::Client(ClientMessage::Request(Request::new(id(2), Name::from_static("abc"), Payload::utf16("hi")).unwrap())),
            "129 2 0 0 0 0 0 0 0 3 97 98 99 0 104 0 105 0",
        ),
        (
            "binary reply to id 1, payload `0xff`",
            Built::Server(ServerMessage::Reply(Reply::new(id(1), Payload::binary(vec![0xff])))),
            "191 1 0 0 0 0 0 0 0 255",
        ),
        (
            "UTF-16 reply to id 2, payload `hi`",
            Built::Server(ServerMessage::Reply(Reply::new(id(2), Payload::utf16("hi")))),
            "193 2 0 0 0 0 0 0 0 0 104 0 105 0",
        ),
        (
            "error reply to id 1, code `E1`, message `bad`",
            Built::Server(ServerMessage::Error(ErrorReply::new(id(1), ErrorCode::from_static("E1"), "bad"))),
            "0 1 0 0 0 0 0 0 0 2 69 49 98 97 100",
        ),
        (
            "internal-error reply to id 1",
            Built::Server(ServerMessage::InternalError(id(1))),
            "2 1 0 0 0 0 0 0 0",
        ),
        (
            "UTF-8 signal, name `ab`, payload `x`",
            Built::Both(Signal::new(Name::from_static("ab"), Payload::utf8("x")).unwrap()),
            "64 2 97 98 120",
        ),
        (
            "UTF-16 signal, no name, payload `x`",
            Built::Both(Signal::new(Name::default(), Payload::utf16("x")).unwrap()),
            "65 0 120 0",
        ),
        (
            "heartbeat",
            Built::Client(ClientMessage::Heartbeat),
            "33",
        ),
    ];
    assert_eq!(table.len(), 10, "docs/protocol.md has 10 example rows");
    for (description, built, bytes) in table {
        let bytes = decimal(bytes);
        assert_eq!(built.encoded(), bytes, "encoding {description:?}");
        built.check_parse(&bytes);
    }
}
