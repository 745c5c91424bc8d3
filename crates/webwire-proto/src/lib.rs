//! Sans-IO codec for the [webwire] protocol, version 2.0.
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
//! - [`Payload`] and [`Encoding`]: message data with its encoding (binary,
//!   UTF-8, UTF-16 little-endian) and conversion to text.
//! - [`Name`], [`ErrorCode`], [`RequestId`]: validated field values.
//! - [`Session`], [`SessionInfo`], [`SessionJsonError`]: a session as it
//!   travels on the wire (JSON), in NotifySessionCreated and in the reply to
//!   a session restore.
//! - [`format_rfc3339`] and [`parse_rfc3339`] (errors [`TimeRangeError`],
//!   [`TimeParseError`]): the RFC 3339 times of session JSON, also used by
//!   session stores that keep times as text.
//! - [`ParseError`] (a received message is malformed) and [`ValueError`]
//!   (a value the protocol forbids was given to a constructor).
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
mod message;
mod message_type;
mod name;
mod payload;
mod rfc3339;
mod session;

pub use error::{ParseError, ValueError};
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
/// The protocol's minor version, announced in [`AcceptConf`].
pub const PROTOCOL_MINOR: u8 = 0;
