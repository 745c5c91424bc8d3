//! Sans-IO codec for the [webwire] protocol, version 2.0, and its 2.1
//! extensions (resumable signal streams, requests that never run twice).
//!
//! This crate knows the bytes of every webwire message and nothing about
//! sockets, tasks or time: the server and client crates feed it the binary
//! WebSocket messages they receive and send what it encodes.
//!
//! # Layout
//!
//! - [`ClientMessage`]: what a client sends (requests, signals, session
//!   requests, heartbeats), parsed by servers with [`ClientMessage::parse`].
//! - [`ServerMessage`]: what a server sends (replies, error replies, session
//!   notifications, the accept configuration, signals), parsed by clients
//!   with [`ServerMessage::parse`].
//! - [`Request`], [`Signal`], [`Reply`], [`ErrorReply`], [`AcceptConf`]:
//!   the messages that carry fields, each built only from valid values.
//! - The 2.1 extension messages (docs/protocol.md section 14), sent only on
//!   a connection that opted in: [`ExtensionHello`] (with [`FeatureFlags`]
//!   and an [`InstanceId`]) and [`ExtensionAccept`], [`KeyedRequest`] (with
//!   its [`RequestKey`]), [`StreamResume`] (of [`StreamPosition`]s),
//!   [`StreamSignal`], [`StreamLoss`] (with its [`LossReason`]) on a
//!   [`StreamId`] (the session's, or a [`RoomName`]'s), and
//!   [`ServerMessage::OutcomeUnknown`]. [`MessageType::is_extension`] tells
//!   their types apart.
//! - [`Payload`] and [`Encoding`]: message data with its encoding (binary,
//!   UTF-8, UTF-16 little-endian) and conversion to text.
//! - [`Name`], [`ErrorCode`], [`RequestId`]: validated field values.
//! - [`Session`], [`SessionInfo`], [`SessionJsonError`]: a session as it
//!   travels on the wire (JSON), in NotifySessionCreated and in the reply to
//!   a session restore.
//! - [`format_rfc3339`] and [`parse_rfc3339`] (errors [`TimeRangeError`],
//!   [`TimeParseError`]): the RFC 3339 times of session JSON, also used by
//!   session stores that keep times as text.
//! - [`ParseError`] (a received message is malformed, or an extension
//!   message its connection does not allow: [`ExtensionRule`]) and
//!   [`ValueError`] (a value the protocol forbids was given to a constructor).
//! - [`connection`]: the rules of a connection as state machines without
//!   I/O ([`connection::server::ServerConnection`] under the server's
//!   connection task, [`connection::client::ClientConnection`] under the
//!   client's).
//!
//! Parsing is zero-copy: names and payloads of a parsed message are slices
//! of the frame's [`Bytes`], so they can be kept after the frame is gone
//! without copying. Encoding writes into a caller-owned [`BytesMut`] that
//! can be reused from message to message.
//!
//! # Example
//!
//! ```
//! use bytes::BytesMut;
//! use webwire_proto::{ClientMessage, Name, Payload, Request, RequestId};
//!
//! let request = Request::new(RequestId::from(1), Name::from_static("echo"), Payload::utf8("hi"))?;
//! let mut buf = BytesMut::new();
//! ClientMessage::Request(request).encode(&mut buf);
//! assert_eq!(&buf[..], b"\x80\x01\0\0\0\0\0\0\0\x04echohi");
//!
//! let ClientMessage::Request(parsed) = ClientMessage::parse(buf.freeze())? else {
//!     unreachable!()
//! };
//! assert_eq!(parsed.name(), "echo");
//! assert_eq!(parsed.payload().to_text()?, "hi");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! [webwire]: https://github.com/qbeon/webwire-go
//! [`Bytes`]: bytes::Bytes
//! [`BytesMut`]: bytes::BytesMut

// The README is what crates.io shows; its examples are compiled as doctests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;

pub mod connection;
mod error;
mod extension;
mod message;
mod message_type;
mod name;
mod payload;
mod rfc3339;
mod session;

pub use error::{ExtensionRule, ParseError, ValueError};
pub use extension::{
    ExtensionAccept, ExtensionHello, FeatureFlags, InstanceId, KeyedRequest, LossReason,
    RequestKey, RoomName, StreamId, StreamLoss, StreamPosition, StreamResume, StreamSignal,
    MAX_INSTANCE_ID_LEN, MAX_RESUME_STREAMS, MAX_ROOM_NAME_LEN, MIN_KEYED_INSTANCE_ID_LEN,
};
pub use message::{
    AcceptConf, ClientMessage, ErrorReply, Reply, Request, RequestId, ServerMessage, Signal,
};
pub use message_type::MessageType;
pub use name::{ErrorCode, Name};
pub use payload::{Encoding, Payload, TextError};
pub use rfc3339::{format_rfc3339, parse_rfc3339, TimeParseError, TimeRangeError};
pub use session::{KeyDigest, Session, SessionInfo, SessionJsonError};

/// The protocol's major version, announced in [`AcceptConf`].
pub const PROTOCOL_MAJOR: u8 = 2;
/// The protocol's minor version that [`AcceptConf::new`] announces: 0, as
/// a server that does not speak the 2.1 extensions.
pub const PROTOCOL_MINOR: u8 = 0;
/// The minor version of a server that speaks the 2.1 extensions
/// ([`AcceptConf::with_minor`]); a client opts in only when the server
/// announces at least this.
///
/// ```
/// use std::time::Duration;
/// use webwire_proto::{AcceptConf, PROTOCOL_MINOR_EXTENSIONS};
///
/// let conf = AcceptConf::new(Duration::from_secs(60), 8192, "").with_minor(PROTOCOL_MINOR_EXTENSIONS);
/// assert_eq!((conf.major, conf.minor), (2, 1));
/// ```
pub const PROTOCOL_MINOR_EXTENSIONS: u8 = 1;
