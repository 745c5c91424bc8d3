//! The messages of docs/protocol.md sections 4 and 5: their values, parsing and encoding
//! (the 2.1 extension messages are in [`crate::extension`], parsed from here).

use std::fmt;
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};

use crate::extension::{
    parse_accept, parse_hello, parse_keyed_request, parse_loss, parse_resume, parse_stream_signal,
};
use crate::name::first_unprintable;
use crate::{
    Encoding, ErrorCode, ExtensionAccept, ExtensionHello, KeyedRequest, MessageType, Name,
    ParseError, Payload, StreamLoss, StreamResume, StreamSignal, ValueError,
};

/// The 8-byte identifier a client gives a request; the server copies it
/// into the reply. Opaque to the server.
///
/// ```
/// use webwire_proto::RequestId;
///
/// let id = RequestId::from(258);
/// assert_eq!(id.0, [2, 1, 0, 0, 0, 0, 0, 0]);
/// assert_eq!(id.to_u64(), 258);
/// ```
#[derive(Clone, Copy, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
// Aligned as a `u64`: an id at an odd offset inside the messages that carry
// it is copied byte-wise, and the loads that follow such stores stall
// (measured: the reply path spent 6 % of the server's time there).
#[repr(C, align(8))]
pub struct RequestId(pub [u8; 8]);

impl RequestId {
    /// The id read as a little-endian integer.
    pub const fn to_u64(self) -> u64 {
        u64::from_le_bytes(self.0)
    }

    /// The id at bytes 1..9 of a frame at least 9 bytes long.
    pub(crate) fn read(frame: &[u8]) -> Self {
        let mut id = [0; 8];
        id.copy_from_slice(&frame[1..9]);
        Self(id)
    }
}

impl From<u64> for RequestId {
    /// The id whose bytes are `value` in little-endian order.
    fn from(value: u64) -> Self {
        Self(value.to_le_bytes())
    }
}

impl fmt::Debug for RequestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RequestId({})", self.to_u64())
    }
}

/// A request from a client: answered by exactly one reply with the same id.
///
/// ```
/// use webwire_proto::{Name, Payload, Request, RequestId, ValueError};
///
/// let request = Request::new(RequestId::from(7), Name::from_static("sum"), Payload::utf8("1 2"))?;
/// assert_eq!(request.name(), "sum");
/// // Neither a name nor a payload: refused.
/// assert_eq!(
///     Request::new(RequestId::from(8), Name::default(), Payload::default()).unwrap_err(),
///     ValueError::NoNameNoPayload("request"),
/// );
/// # Ok::<(), ValueError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    id: RequestId,
    name: Name,
    payload: Payload,
}

impl Request {
    /// A request, refused when it has neither a name nor a payload.
    pub fn new(id: RequestId, name: Name, payload: Payload) -> Result<Self, ValueError> {
        if name.is_empty() && payload.is_empty() {
            return Err(ValueError::NoNameNoPayload("request"));
        }
        Ok(Self { id, name, payload })
    }

    /// Wraps parts the parser has already checked.
    pub(crate) fn from_checked(id: RequestId, name: Name, payload: Payload) -> Self {
        Self { id, name, payload }
    }

    /// The id chosen by the client.
    pub fn id(&self) -> RequestId {
        self.id
    }

    /// The name (empty when the request has none).
    pub fn name(&self) -> &Name {
        &self.name
    }

    /// The payload.
    pub fn payload(&self) -> &Payload {
        &self.payload
    }

    /// Id, name and payload.
    pub fn into_parts(self) -> (RequestId, Name, Payload) {
        (self.id, self.name, self.payload)
    }

    /// The message type this request is sent as.
    pub fn message_type(&self) -> MessageType {
        match self.payload.encoding() {
            Encoding::Binary => MessageType::RequestBinary,
            Encoding::Utf8 => MessageType::RequestUtf8,
            Encoding::Utf16 => MessageType::RequestUtf16,
        }
    }

    /// The length of the encoded message.
    pub fn encoded_len(&self) -> usize {
        10 + named_body_len(&self.name, &self.payload, 10)
    }

    /// Appends the encoded message to `buf`.
    pub fn encode(&self, buf: &mut BytesMut) {
        buf.reserve(self.encoded_len());
        buf.put_u8(self.message_type().byte());
        buf.put_slice(&self.id.0);
        encode_named_body(buf, &self.name, &self.payload, 10);
    }
}

/// A one-way message, sent by either side and never answered.
///
/// ```
/// use webwire_proto::{Name, Payload, Signal, ValueError};
///
/// let signal = Signal::new(Name::from_static("typing"), Payload::default())?;
/// assert!(signal.payload().is_empty());
/// // The UTF-16 signal layout needs at least one code unit of payload.
/// assert_eq!(
///     Signal::new(Name::from_static("x"), Payload::utf16("")).unwrap_err(),
///     ValueError::EmptyUtf16Signal,
/// );
/// # Ok::<(), ValueError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signal {
    name: Name,
    payload: Payload,
}

impl Signal {
    /// A signal, refused when it has neither a name nor a payload, or when
    /// its payload is UTF-16 and empty.
    pub fn new(name: Name, payload: Payload) -> Result<Self, ValueError> {
        if payload.encoding() == Encoding::Utf16 && payload.is_empty() {
            return Err(ValueError::EmptyUtf16Signal);
        }
        if name.is_empty() && payload.is_empty() {
            return Err(ValueError::NoNameNoPayload("signal"));
        }
        Ok(Self { name, payload })
    }

    /// The name (empty when the signal has none).
    pub fn name(&self) -> &Name {
        &self.name
    }

    /// The payload.
    pub fn payload(&self) -> &Payload {
        &self.payload
    }

    /// Name and payload.
    pub fn into_parts(self) -> (Name, Payload) {
        (self.name, self.payload)
    }

    /// The message type this signal is sent as.
    pub fn message_type(&self) -> MessageType {
        match self.payload.encoding() {
            Encoding::Binary => MessageType::SignalBinary,
            Encoding::Utf8 => MessageType::SignalUtf8,
            Encoding::Utf16 => MessageType::SignalUtf16,
        }
    }

    /// The length of the encoded message.
    pub fn encoded_len(&self) -> usize {
        2 + named_body_len(&self.name, &self.payload, 2)
    }

    /// Appends the encoded message to `buf`.
    pub fn encode(&self, buf: &mut BytesMut) {
        buf.reserve(self.encoded_len());
        buf.put_u8(self.message_type().byte());
        encode_named_body(buf, &self.name, &self.payload, 2);
    }
}

/// A successful reply to a request.
///
/// ```
/// use bytes::BytesMut;
/// use webwire_proto::{Payload, Reply, RequestId};
///
/// let mut buf = BytesMut::new();
/// Reply::new(RequestId::from(1), Payload::binary(vec![0xff])).encode(&mut buf);
/// assert_eq!(&buf[..], [191, 1, 0, 0, 0, 0, 0, 0, 0, 255]);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    /// The id of the request this answers.
    pub id: RequestId,
    /// The reply's payload (may be empty).
    pub payload: Payload,
}

impl Reply {
    /// A reply to the request `id`.
    pub fn new(id: RequestId, payload: Payload) -> Self {
        Self { id, payload }
    }

    /// The message type this reply is sent as.
    pub fn message_type(&self) -> MessageType {
        match self.payload.encoding() {
            Encoding::Binary => MessageType::ReplyBinary,
            Encoding::Utf8 => MessageType::ReplyUtf8,
            Encoding::Utf16 => MessageType::ReplyUtf16,
        }
    }

    /// The length of the encoded message.
    pub fn encoded_len(&self) -> usize {
        let padding = usize::from(self.payload.encoding() == Encoding::Utf16);
        9 + padding + self.payload.len()
    }

    /// Appends the encoded message to `buf`.
    pub fn encode(&self, buf: &mut BytesMut) {
        buf.reserve(self.encoded_len());
        buf.put_u8(self.message_type().byte());
        buf.put_slice(&self.id.0);
        if self.payload.encoding() == Encoding::Utf16 {
            buf.put_u8(0);
        }
        buf.put_slice(self.payload.as_bytes());
    }
}

/// A reply that reports a request error chosen by the application.
///
/// ```
/// use webwire_proto::{ErrorCode, ErrorReply, RequestId};
///
/// let reply = ErrorReply::new(RequestId::from(1), ErrorCode::from_static("E1"), "bad");
/// assert_eq!(reply.message_text(), "bad");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ErrorReply {
    /// The id of the request this answers.
    pub id: RequestId,
    /// The application's error code.
    pub code: ErrorCode,
    /// The error message, UTF-8 (may be empty).
    pub message: Bytes,
}

impl ErrorReply {
    /// An error reply to the request `id`.
    pub fn new(id: RequestId, code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            id,
            code,
            message: Bytes::from(message.into()),
        }
    }

    /// The message as text, with invalid UTF-8 replaced.
    pub fn message_text(&self) -> std::borrow::Cow<'_, str> {
        String::from_utf8_lossy(&self.message)
    }

    /// The length of the encoded message.
    pub fn encoded_len(&self) -> usize {
        10 + self.code.len() + self.message.len()
    }

    /// Appends the encoded message to `buf`.
    pub fn encode(&self, buf: &mut BytesMut) {
        buf.reserve(self.encoded_len());
        buf.put_u8(MessageType::ReplyError.byte());
        buf.put_slice(&self.id.0);
        buf.put_u8(self.code.len() as u8);
        buf.put_slice(self.code.as_bytes());
        buf.put_slice(&self.message);
    }
}

/// The server's configuration, the first message on every connection.
///
/// ```
/// use std::time::Duration;
/// use webwire_proto::AcceptConf;
///
/// let conf = AcceptConf::new(Duration::from_secs(60), 8192, "");
/// assert_eq!((conf.major, conf.minor), (2, 0));
/// assert_eq!(conf.read_timeout(), Duration::from_secs(60));
/// assert!(!conf.offers_extensions());
///
/// // A server that speaks the 2.1 extensions announces minor version 1.
/// let conf = conf.with_minor(webwire_proto::PROTOCOL_MINOR_EXTENSIONS);
/// assert!(conf.offers_extensions());
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AcceptConf {
    /// Protocol major version (2 for this protocol).
    pub major: u8,
    /// Protocol minor version.
    pub minor: u8,
    /// The server's read timeout in milliseconds.
    pub read_timeout_ms: u32,
    /// The largest message either side may send, in bytes.
    pub buffer_size: u32,
    /// The application's sub-protocol name (may be empty).
    pub sub_protocol: Bytes,
}

impl AcceptConf {
    /// The configuration of a version 2.0 server. A read timeout beyond
    /// `u32::MAX` milliseconds is announced as `u32::MAX`.
    pub fn new(read_timeout: Duration, buffer_size: u32, sub_protocol: impl Into<Bytes>) -> Self {
        Self {
            major: crate::PROTOCOL_MAJOR,
            minor: crate::PROTOCOL_MINOR,
            read_timeout_ms: u32::try_from(read_timeout.as_millis()).unwrap_or(u32::MAX),
            buffer_size,
            sub_protocol: sub_protocol.into(),
        }
    }

    /// The same configuration announcing another minor version (1 for a
    /// server that speaks the 2.1 extensions, see
    /// [`PROTOCOL_MINOR_EXTENSIONS`](crate::PROTOCOL_MINOR_EXTENSIONS)).
    pub fn with_minor(mut self, minor: u8) -> Self {
        self.minor = minor;
        self
    }

    /// Whether the server announces the 2.1 extensions: major version 2,
    /// minor version 1 or more. Only then may a client opt in.
    pub fn offers_extensions(&self) -> bool {
        self.major == crate::PROTOCOL_MAJOR && self.minor >= crate::PROTOCOL_MINOR_EXTENSIONS
    }

    /// The read timeout as a duration.
    pub fn read_timeout(&self) -> Duration {
        Duration::from_millis(u64::from(self.read_timeout_ms))
    }

    /// The length of the encoded message.
    pub fn encoded_len(&self) -> usize {
        11 + self.sub_protocol.len()
    }

    /// Appends the encoded message to `buf`.
    pub fn encode(&self, buf: &mut BytesMut) {
        buf.reserve(self.encoded_len());
        buf.put_u8(MessageType::AcceptConf.byte());
        buf.put_u8(self.major);
        buf.put_u8(self.minor);
        buf.put_u32_le(self.read_timeout_ms);
        buf.put_u32_le(self.buffer_size);
        buf.put_slice(&self.sub_protocol);
    }
}

/// A message a client sends to a server.
///
/// ```
/// use bytes::Bytes;
/// use webwire_proto::{ClientMessage, ParseError, MessageType};
///
/// assert_eq!(ClientMessage::parse(Bytes::from_static(&[33]))?, ClientMessage::Heartbeat);
/// // A reply is only ever sent by a server.
/// assert_eq!(
///     ClientMessage::parse(Bytes::from_static(&[2, 1, 0, 0, 0, 0, 0, 0, 0])),
///     Err(ParseError::WrongDirection { kind: MessageType::ReplyInternalError, from: "client" }),
/// );
/// # Ok::<(), ParseError>(())
/// ```
///
/// Its `Debug` shows a restore's key as a [`KeyDigest`](crate::KeyDigest).
#[derive(Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ClientMessage {
    /// A request (types 127, 128, 129).
    Request(Request),
    /// A signal (types 63, 64, 65).
    Signal(Signal),
    /// Restore the session with this key (type 32). The key is taken as it
    /// came: the server judges it. It must not be empty when encoded.
    RestoreSession {
        /// The request id.
        id: RequestId,
        /// The session key's bytes.
        key: Bytes,
    },
    /// Close this connection's session (type 31).
    CloseSession(RequestId),
    /// Keeps the connection within the server's read timeout (type 33).
    Heartbeat,
    /// 2.1: opts in to the extensions (type 34).
    ExtensionHello(ExtensionHello),
    /// 2.1: asks for the missed signals of streams (type 35).
    StreamResume(StreamResume),
    /// 2.1: a request run at most once per key (types 130, 131, 132).
    KeyedRequest(KeyedRequest),
}

impl fmt::Debug for ClientMessage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Request(request) => f.debug_tuple("Request").field(request).finish(),
            Self::Signal(signal) => f.debug_tuple("Signal").field(signal).finish(),
            Self::RestoreSession { id, key } => f
                .debug_struct("RestoreSession")
                .field("id", id)
                .field("key", &crate::KeyDigest::new(key))
                .finish(),
            Self::CloseSession(id) => f.debug_tuple("CloseSession").field(id).finish(),
            Self::Heartbeat => f.write_str("Heartbeat"),
            Self::ExtensionHello(hello) => f.debug_tuple("ExtensionHello").field(hello).finish(),
            Self::StreamResume(resume) => f.debug_tuple("StreamResume").field(resume).finish(),
            Self::KeyedRequest(request) => f.debug_tuple("KeyedRequest").field(request).finish(),
        }
    }
}

impl ClientMessage {
    /// Parses one binary WebSocket message received from a client.
    ///
    /// Zero-copy: names, payloads and keys are slices of `frame`. The 2.1
    /// extension messages are parsed too; whether one is allowed on the
    /// connection is for [`crate::connection::server`] to judge.
    pub fn parse(frame: Bytes) -> Result<Self, ParseError> {
        let kind = message_type(&frame)?;
        if !kind.sent_by_client() {
            return Err(ParseError::WrongDirection {
                kind,
                from: "client",
            });
        }
        check_min_len(kind, &frame)?;
        Ok(match kind {
            MessageType::Heartbeat => Self::Heartbeat,
            MessageType::RequestCloseSession => Self::CloseSession(RequestId::read(&frame)),
            MessageType::RequestRestoreSession => Self::RestoreSession {
                id: RequestId::read(&frame),
                key: frame.slice(9..),
            },
            MessageType::SignalBinary | MessageType::SignalUtf8 | MessageType::SignalUtf16 => {
                Self::Signal(parse_signal(kind, frame)?)
            }
            MessageType::RequestBinary | MessageType::RequestUtf8 | MessageType::RequestUtf16 => {
                let (name, payload) = parse_named(kind, &frame, 9, payload_encoding(kind))?;
                Self::Request(Request {
                    id: RequestId::read(&frame),
                    name,
                    payload,
                })
            }
            MessageType::ExtensionHello => Self::ExtensionHello(parse_hello(&frame)?),
            MessageType::StreamResume => Self::StreamResume(parse_resume(&frame)?),
            MessageType::KeyedRequestBinary
            | MessageType::KeyedRequestUtf8
            | MessageType::KeyedRequestUtf16 => {
                Self::KeyedRequest(parse_keyed_request(kind, &frame)?)
            }
            _ => unreachable_direction(kind)?,
        })
    }

    /// The message's type.
    pub fn message_type(&self) -> MessageType {
        match self {
            Self::Request(request) => request.message_type(),
            Self::Signal(signal) => signal.message_type(),
            Self::RestoreSession { .. } => MessageType::RequestRestoreSession,
            Self::CloseSession(_) => MessageType::RequestCloseSession,
            Self::Heartbeat => MessageType::Heartbeat,
            Self::ExtensionHello(_) => MessageType::ExtensionHello,
            Self::StreamResume(_) => MessageType::StreamResume,
            Self::KeyedRequest(request) => request.message_type(),
        }
    }

    /// The id of the request, for the messages that are answered by a reply.
    ///
    /// ```
    /// use webwire_proto::{ClientMessage, RequestId};
    ///
    /// assert_eq!(ClientMessage::CloseSession(RequestId::from(3)).request_id(), Some(RequestId::from(3)));
    /// assert_eq!(ClientMessage::Heartbeat.request_id(), None);
    /// ```
    pub fn request_id(&self) -> Option<RequestId> {
        match self {
            Self::Request(request) => Some(request.id()),
            Self::RestoreSession { id, .. } | Self::CloseSession(id) => Some(*id),
            Self::StreamResume(resume) => Some(resume.id()),
            Self::KeyedRequest(request) => Some(request.id()),
            Self::Signal(_) | Self::Heartbeat | Self::ExtensionHello(_) => None,
        }
    }

    /// The length of the encoded message.
    pub fn encoded_len(&self) -> usize {
        match self {
            Self::Request(request) => request.encoded_len(),
            Self::Signal(signal) => signal.encoded_len(),
            Self::RestoreSession { key, .. } => 9 + key.len(),
            Self::CloseSession(_) => 9,
            Self::Heartbeat => 1,
            Self::ExtensionHello(hello) => hello.encoded_len(),
            Self::StreamResume(resume) => resume.encoded_len(),
            Self::KeyedRequest(request) => request.encoded_len(),
        }
    }

    /// Appends the encoded message to `buf`.
    pub fn encode(&self, buf: &mut BytesMut) {
        match self {
            Self::Request(request) => request.encode(buf),
            Self::Signal(signal) => signal.encode(buf),
            Self::RestoreSession { id, key } => {
                buf.reserve(9 + key.len());
                buf.put_u8(MessageType::RequestRestoreSession.byte());
                buf.put_slice(&id.0);
                buf.put_slice(key);
            }
            Self::CloseSession(id) => encode_id_only(buf, MessageType::RequestCloseSession, *id),
            Self::Heartbeat => buf.put_u8(MessageType::Heartbeat.byte()),
            Self::ExtensionHello(hello) => hello.encode(buf),
            Self::StreamResume(resume) => resume.encode(buf),
            Self::KeyedRequest(request) => request.encode(buf),
        }
    }

    /// The encoded message in a buffer of its own.
    pub fn to_bytes(&self) -> Bytes {
        let mut buf = BytesMut::with_capacity(self.encoded_len());
        self.encode(&mut buf);
        buf.freeze()
    }
}

/// A message a server sends to a client.
///
/// ```
/// use bytes::Bytes;
/// use webwire_proto::{RequestId, ServerMessage};
///
/// let frame = Bytes::from_static(&[2, 1, 0, 0, 0, 0, 0, 0, 0]);
/// let message = ServerMessage::parse(frame)?;
/// assert_eq!(message, ServerMessage::InternalError(RequestId::from(1)));
/// assert_eq!(message.request_id(), Some(RequestId::from(1)));
/// # Ok::<(), webwire_proto::ParseError>(())
/// ```
///
/// Its `Debug` leaves out the session JSON of NotifySessionCreated (it
/// holds the session key).
#[derive(Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ServerMessage {
    /// A successful reply (types 191, 192, 193).
    Reply(Reply),
    /// A request error with code and message (type 0).
    Error(ErrorReply),
    /// The server is shutting down and did not handle the request (type 1).
    Shutdown(RequestId),
    /// The request failed inside the server (type 2).
    InternalError(RequestId),
    /// The session to restore was not found (type 3).
    SessionNotFound(RequestId),
    /// The session has its maximum number of connections (type 4).
    MaxSessConnsReached(RequestId),
    /// Sessions are disabled (type 5).
    SessionsDisabled(RequestId),
    /// A session was created: its JSON (type 21). Must not be empty when encoded.
    SessionCreated(Bytes),
    /// This connection's session was closed (type 22).
    SessionClosed,
    /// The server's configuration (type 23).
    AcceptConf(AcceptConf),
    /// A signal (types 63, 64, 65).
    Signal(Signal),
    /// 2.1: the server cannot know whether the keyed request ran (type 6).
    OutcomeUnknown(RequestId),
    /// 2.1: signals of a stream the client will never get (type 24).
    StreamLoss(StreamLoss),
    /// 2.1: the answer to ExtensionHello (type 25).
    ExtensionAccept(ExtensionAccept),
    /// 2.1: a signal of a stream (types 66, 67, 68).
    StreamSignal(StreamSignal),
}

impl fmt::Debug for ServerMessage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Reply(reply) => f.debug_tuple("Reply").field(reply).finish(),
            Self::Error(err) => f.debug_tuple("Error").field(err).finish(),
            Self::Shutdown(id) => f.debug_tuple("Shutdown").field(id).finish(),
            Self::InternalError(id) => f.debug_tuple("InternalError").field(id).finish(),
            Self::SessionNotFound(id) => f.debug_tuple("SessionNotFound").field(id).finish(),
            Self::MaxSessConnsReached(id) => {
                f.debug_tuple("MaxSessConnsReached").field(id).finish()
            }
            Self::SessionsDisabled(id) => f.debug_tuple("SessionsDisabled").field(id).finish(),
            Self::SessionCreated(json) => f
                .debug_tuple("SessionCreated")
                .field(&format_args!("<{} bytes of session JSON>", json.len()))
                .finish(),
            Self::SessionClosed => f.write_str("SessionClosed"),
            Self::AcceptConf(conf) => f.debug_tuple("AcceptConf").field(conf).finish(),
            Self::Signal(signal) => f.debug_tuple("Signal").field(signal).finish(),
            Self::OutcomeUnknown(id) => f.debug_tuple("OutcomeUnknown").field(id).finish(),
            Self::StreamLoss(loss) => f.debug_tuple("StreamLoss").field(loss).finish(),
            Self::ExtensionAccept(accept) => {
                f.debug_tuple("ExtensionAccept").field(accept).finish()
            }
            Self::StreamSignal(signal) => f.debug_tuple("StreamSignal").field(signal).finish(),
        }
    }
}

impl ServerMessage {
    /// Parses one binary WebSocket message received from a server.
    ///
    /// Zero-copy: names, payloads and JSON are slices of `frame`. The 2.1
    /// extension messages are parsed too; whether one is allowed on the
    /// connection is for [`crate::connection::client`] to judge.
    pub fn parse(frame: Bytes) -> Result<Self, ParseError> {
        let kind = message_type(&frame)?;
        if !kind.sent_by_server() {
            return Err(ParseError::WrongDirection {
                kind,
                from: "server",
            });
        }
        check_min_len(kind, &frame)?;
        Ok(match kind {
            MessageType::ReplyShutdown => Self::Shutdown(RequestId::read(&frame)),
            MessageType::ReplyInternalError => Self::InternalError(RequestId::read(&frame)),
            MessageType::ReplySessionNotFound => Self::SessionNotFound(RequestId::read(&frame)),
            MessageType::ReplyMaxSessConnsReached => {
                Self::MaxSessConnsReached(RequestId::read(&frame))
            }
            MessageType::ReplySessionsDisabled => Self::SessionsDisabled(RequestId::read(&frame)),
            MessageType::NotifySessionCreated => Self::SessionCreated(frame.slice(1..)),
            MessageType::NotifySessionClosed => Self::SessionClosed,
            MessageType::AcceptConf => Self::AcceptConf(AcceptConf {
                major: frame[1],
                minor: frame[2],
                read_timeout_ms: u32::from_le_bytes([frame[3], frame[4], frame[5], frame[6]]),
                buffer_size: u32::from_le_bytes([frame[7], frame[8], frame[9], frame[10]]),
                sub_protocol: frame.slice(11..),
            }),
            MessageType::ReplyError => Self::Error(parse_error_reply(&frame)?),
            MessageType::ReplyBinary | MessageType::ReplyUtf8 => Self::Reply(Reply {
                id: RequestId::read(&frame),
                payload: Payload::from_checked(payload_encoding(kind), frame.slice(9..)),
            }),
            MessageType::ReplyUtf16 => {
                check_utf16_even(kind, &frame)?;
                check_padding(kind, &frame, 9)?;
                Self::Reply(Reply {
                    id: RequestId::read(&frame),
                    payload: Payload::from_checked(Encoding::Utf16, frame.slice(10..)),
                })
            }
            MessageType::SignalBinary | MessageType::SignalUtf8 | MessageType::SignalUtf16 => {
                Self::Signal(parse_signal(kind, frame)?)
            }
            MessageType::ReplyOutcomeUnknown => Self::OutcomeUnknown(RequestId::read(&frame)),
            MessageType::StreamLoss => Self::StreamLoss(parse_loss(&frame)?),
            MessageType::ExtensionAccept => Self::ExtensionAccept(parse_accept(&frame)),
            MessageType::StreamSignalBinary
            | MessageType::StreamSignalUtf8
            | MessageType::StreamSignalUtf16 => {
                Self::StreamSignal(parse_stream_signal(kind, &frame)?)
            }
            _ => unreachable_direction(kind)?,
        })
    }

    /// The message's type.
    pub fn message_type(&self) -> MessageType {
        match self {
            Self::Reply(reply) => reply.message_type(),
            Self::Error(_) => MessageType::ReplyError,
            Self::Shutdown(_) => MessageType::ReplyShutdown,
            Self::InternalError(_) => MessageType::ReplyInternalError,
            Self::SessionNotFound(_) => MessageType::ReplySessionNotFound,
            Self::MaxSessConnsReached(_) => MessageType::ReplyMaxSessConnsReached,
            Self::SessionsDisabled(_) => MessageType::ReplySessionsDisabled,
            Self::SessionCreated(_) => MessageType::NotifySessionCreated,
            Self::SessionClosed => MessageType::NotifySessionClosed,
            Self::AcceptConf(_) => MessageType::AcceptConf,
            Self::Signal(signal) => signal.message_type(),
            Self::OutcomeUnknown(_) => MessageType::ReplyOutcomeUnknown,
            Self::StreamLoss(_) => MessageType::StreamLoss,
            Self::ExtensionAccept(_) => MessageType::ExtensionAccept,
            Self::StreamSignal(signal) => signal.message_type(),
        }
    }

    /// The id of the request this message answers, for the reply types.
    pub fn request_id(&self) -> Option<RequestId> {
        match self {
            Self::Reply(Reply { id, .. })
            | Self::Error(ErrorReply { id, .. })
            | Self::Shutdown(id)
            | Self::InternalError(id)
            | Self::SessionNotFound(id)
            | Self::MaxSessConnsReached(id)
            | Self::SessionsDisabled(id)
            | Self::OutcomeUnknown(id) => Some(*id),
            Self::SessionCreated(_)
            | Self::SessionClosed
            | Self::AcceptConf(_)
            | Self::Signal(_)
            | Self::StreamLoss(_)
            | Self::ExtensionAccept(_)
            | Self::StreamSignal(_) => None,
        }
    }

    /// The length of the encoded message.
    pub fn encoded_len(&self) -> usize {
        match self {
            Self::Reply(reply) => reply.encoded_len(),
            Self::Error(error) => error.encoded_len(),
            Self::Shutdown(_)
            | Self::InternalError(_)
            | Self::SessionNotFound(_)
            | Self::MaxSessConnsReached(_)
            | Self::SessionsDisabled(_)
            | Self::OutcomeUnknown(_) => 9,
            Self::SessionCreated(json) => 1 + json.len(),
            Self::SessionClosed => 1,
            Self::AcceptConf(conf) => conf.encoded_len(),
            Self::Signal(signal) => signal.encoded_len(),
            Self::StreamLoss(loss) => loss.encoded_len(),
            Self::ExtensionAccept(_) => ExtensionAccept::ENCODED_LEN,
            Self::StreamSignal(signal) => signal.encoded_len(),
        }
    }

    /// Appends the encoded message to `buf`.
    pub fn encode(&self, buf: &mut BytesMut) {
        match self {
            Self::Reply(reply) => reply.encode(buf),
            Self::Error(error) => error.encode(buf),
            Self::Shutdown(id)
            | Self::InternalError(id)
            | Self::SessionNotFound(id)
            | Self::MaxSessConnsReached(id)
            | Self::SessionsDisabled(id)
            | Self::OutcomeUnknown(id) => encode_id_only(buf, self.message_type(), *id),
            Self::SessionCreated(json) => {
                buf.reserve(1 + json.len());
                buf.put_u8(MessageType::NotifySessionCreated.byte());
                buf.put_slice(json);
            }
            Self::SessionClosed => buf.put_u8(MessageType::NotifySessionClosed.byte()),
            Self::AcceptConf(conf) => conf.encode(buf),
            Self::Signal(signal) => signal.encode(buf),
            Self::StreamLoss(loss) => loss.encode(buf),
            Self::ExtensionAccept(accept) => accept.encode(buf),
            Self::StreamSignal(signal) => signal.encode(buf),
        }
    }

    /// The encoded message in a buffer of its own.
    pub fn to_bytes(&self) -> Bytes {
        let mut buf = BytesMut::with_capacity(self.encoded_len());
        self.encode(&mut buf);
        buf.freeze()
    }
}

fn message_type(frame: &[u8]) -> Result<MessageType, ParseError> {
    let &byte = frame.first().ok_or(ParseError::Empty)?;
    MessageType::from_byte(byte).ok_or(ParseError::UnknownType(byte))
}

/// The direction check runs before the match, so the other side's types
/// never reach it; this keeps the match total without a panic.
fn unreachable_direction<T>(kind: MessageType) -> Result<T, ParseError> {
    Err(ParseError::WrongDirection {
        kind,
        from: if kind.sent_by_client() {
            "server"
        } else {
            "client"
        },
    })
}

/// The least length of each type's layout, and whether that length is exact.
const fn layout_len(kind: MessageType) -> (usize, bool) {
    match kind {
        MessageType::ReplyError => (11, false),
        MessageType::ReplyShutdown
        | MessageType::ReplyInternalError
        | MessageType::ReplySessionNotFound
        | MessageType::ReplyMaxSessConnsReached
        | MessageType::ReplySessionsDisabled
        | MessageType::ReplyOutcomeUnknown
        | MessageType::RequestCloseSession => (9, true),
        MessageType::NotifySessionCreated => (2, false),
        MessageType::NotifySessionClosed | MessageType::Heartbeat => (1, true),
        MessageType::AcceptConf => (11, false),
        MessageType::RequestRestoreSession => (10, false),
        MessageType::SignalBinary | MessageType::SignalUtf8 => (3, false),
        MessageType::SignalUtf16 => (4, false),
        MessageType::RequestBinary | MessageType::RequestUtf8 | MessageType::RequestUtf16 => {
            (11, false)
        }
        MessageType::ReplyBinary | MessageType::ReplyUtf8 => (9, false),
        MessageType::ReplyUtf16 => (10, false),
        // [24][kind][sl][epoch][lost_from][lost_to][next][reason], sl = 0.
        MessageType::StreamLoss => (36, false),
        MessageType::ExtensionAccept => (13, true),
        // [34][flags u32][il], il = 0.
        MessageType::ExtensionHello => (6, false),
        // [35][id][count u16], count = 0.
        MessageType::StreamResume => (11, false),
        // A 20-byte header with sl = 0 and n = 0, and a byte of payload (two
        // for UTF-16).
        MessageType::StreamSignalBinary | MessageType::StreamSignalUtf8 => (21, false),
        MessageType::StreamSignalUtf16 => (22, false),
        // A 34-byte header with n = 0, and a byte of name or payload.
        MessageType::KeyedRequestBinary
        | MessageType::KeyedRequestUtf8
        | MessageType::KeyedRequestUtf16 => (35, false),
    }
}

fn check_min_len(kind: MessageType, frame: &[u8]) -> Result<(), ParseError> {
    let (min, exact) = layout_len(kind);
    let len = frame.len();
    if exact && len != min {
        return Err(ParseError::WrongLength {
            kind,
            len,
            expected: min,
        });
    }
    if len < min {
        return Err(ParseError::TooShort { kind, len, min });
    }
    Ok(())
}

fn check_utf16_even(kind: MessageType, frame: &[u8]) -> Result<(), ParseError> {
    if !frame.len().is_multiple_of(2) {
        return Err(ParseError::OddUtf16Length {
            kind,
            len: frame.len(),
        });
    }
    Ok(())
}

fn check_padding(kind: MessageType, frame: &[u8], offset: usize) -> Result<(), ParseError> {
    match frame.get(offset) {
        Some(0) => Ok(()),
        Some(&byte) => Err(ParseError::NonZeroPadding { kind, offset, byte }),
        None => Err(ParseError::TooShort {
            kind,
            len: frame.len(),
            min: offset + 1,
        }),
    }
}

/// The payload encoding of the types that carry a payload (binary for the
/// others).
pub(crate) const fn payload_encoding(kind: MessageType) -> Encoding {
    match kind {
        MessageType::RequestUtf8
        | MessageType::SignalUtf8
        | MessageType::ReplyUtf8
        | MessageType::StreamSignalUtf8
        | MessageType::KeyedRequestUtf8 => Encoding::Utf8,
        MessageType::RequestUtf16
        | MessageType::SignalUtf16
        | MessageType::ReplyUtf16
        | MessageType::StreamSignalUtf16
        | MessageType::KeyedRequestUtf16 => Encoding::Utf16,
        _ => Encoding::Binary,
    }
}

fn parse_signal(kind: MessageType, frame: Bytes) -> Result<Signal, ParseError> {
    parse_signal_at(kind, &frame, 1)
}

/// Parses a signal's name and payload, whose name length byte is at `len_at`.
pub(crate) fn parse_signal_at(
    kind: MessageType,
    frame: &Bytes,
    len_at: usize,
) -> Result<Signal, ParseError> {
    let encoding = payload_encoding(kind);
    let (name, payload) = parse_named(kind, frame, len_at, encoding)?;
    if encoding == Encoding::Utf16 && payload.is_empty() {
        return Err(ParseError::TooShort {
            kind,
            len: frame.len(),
            min: frame.len() + 2,
        });
    }
    Ok(Signal { name, payload })
}

/// Parses `[name length][name][padding if UTF-16 and needed][payload]`,
/// where the name length byte is at `len_at`.
pub(crate) fn parse_named(
    kind: MessageType,
    frame: &Bytes,
    len_at: usize,
    encoding: Encoding,
) -> Result<(Name, Payload), ParseError> {
    let name_len = usize::from(frame[len_at]);
    let name_start = len_at + 1;
    let name_end = name_start + name_len;
    if name_end > frame.len() {
        return Err(ParseError::NameOutOfBounds {
            kind,
            name_len,
            len: frame.len(),
        });
    }
    if let Some((offset, byte)) = first_unprintable(&frame[name_start..name_end]) {
        return Err(ParseError::InvalidNameByte { kind, offset, byte });
    }
    let mut payload_start = name_end;
    if encoding == Encoding::Utf16 {
        check_utf16_even(kind, frame)?;
        if !name_end.is_multiple_of(2) {
            check_padding(kind, frame, name_end)?;
            payload_start += 1;
        }
    }
    // A message with neither name nor payload is already below its type's
    // minimum length (check_min_len), so it never gets here.
    Ok((
        Name::from_checked(frame.slice(name_start..name_end)),
        Payload::from_checked(encoding, frame.slice(payload_start..)),
    ))
}

fn parse_error_reply(frame: &Bytes) -> Result<ErrorReply, ParseError> {
    let code_len = usize::from(frame[9]);
    if code_len == 0 {
        return Err(ParseError::EmptyErrorCode);
    }
    let code_end = 10 + code_len;
    if code_end > frame.len() {
        return Err(ParseError::ErrorCodeOutOfBounds {
            code_len,
            len: frame.len(),
        });
    }
    if let Some((offset, byte)) = first_unprintable(&frame[10..code_end]) {
        return Err(ParseError::InvalidErrorCodeByte { offset, byte });
    }
    Ok(ErrorReply {
        id: RequestId::read(frame),
        code: ErrorCode::from_checked(frame.slice(10..code_end)),
        message: frame.slice(code_end..),
    })
}

/// Bytes after the fixed header: name length byte excluded (`header` counts it).
pub(crate) fn named_body_len(name: &Name, payload: &Payload, header: usize) -> usize {
    let padding = usize::from(
        payload.encoding() == Encoding::Utf16 && !(header + name.len()).is_multiple_of(2),
    );
    name.len() + padding + payload.len()
}

pub(crate) fn encode_named_body(buf: &mut BytesMut, name: &Name, payload: &Payload, header: usize) {
    // Names are at most 255 bytes by construction.
    buf.put_u8(name.len() as u8);
    buf.put_slice(name.as_bytes());
    if payload.encoding() == Encoding::Utf16 && !(header + name.len()).is_multiple_of(2) {
        buf.put_u8(0);
    }
    buf.put_slice(payload.as_bytes());
}

fn encode_id_only(buf: &mut BytesMut, kind: MessageType, id: RequestId) {
    buf.reserve(9);
    buf.put_u8(kind.byte());
    buf.put_slice(&id.0);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client(bytes: &[u8]) -> Result<ClientMessage, ParseError> {
        ClientMessage::parse(Bytes::copy_from_slice(bytes))
    }

    #[test]
    fn debug_never_shows_a_session_key() {
        let key = "SECRET-session-key-0123456789";
        let restore = ClientMessage::RestoreSession {
            id: RequestId::from(7),
            key: Bytes::from(key),
        };
        let debug = format!("{restore:?}");
        assert!(!debug.contains(key), "{debug}");
        assert!(
            debug.contains(&crate::KeyDigest::new(key).to_string()),
            "{debug}"
        );
        let json = crate::Session::new(key, std::time::SystemTime::UNIX_EPOCH, None)
            .to_json()
            .unwrap();
        let created = ServerMessage::SessionCreated(Bytes::from(json));
        let debug = format!("{created:?}");
        assert!(!debug.contains(key), "{debug}");
        assert!(debug.starts_with("SessionCreated("), "{debug}");
        // The other variants still show what they hold.
        assert_eq!(
            format!("{:?}", ServerMessage::SessionClosed),
            "SessionClosed"
        );
        assert!(
            format!("{:?}", ClientMessage::CloseSession(RequestId::from(7)))
                .starts_with("CloseSession(")
        );
    }

    #[test]
    fn utf16_signal_needs_payload() {
        assert_eq!(
            client(&[65, 3, b'a', b'b', b'c', 0]),
            Err(ParseError::TooShort {
                kind: MessageType::SignalUtf16,
                len: 6,
                min: 8
            })
        );
    }

    #[test]
    fn parsed_parts_share_the_frame() {
        let frame = Bytes::from_static(b"\x80\x01\0\0\0\0\0\0\0\x04echohi");
        let ClientMessage::Request(request) = ClientMessage::parse(frame.clone()).unwrap() else {
            panic!("not a request")
        };
        let frame_range = frame.as_ptr() as usize..frame.as_ptr() as usize + frame.len();
        assert!(frame_range.contains(&(request.payload().as_bytes().as_ptr() as usize)));
        assert!(frame_range.contains(&(request.name().as_bytes().as_ptr() as usize)));
    }
}
