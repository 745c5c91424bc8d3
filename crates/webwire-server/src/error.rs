//! The error types, one per layer: building and running the server
//! ([`ServerError`]), signalling a client ([`SignalError`]), failing a
//! request on purpose ([`ReplyError`]), creating or closing a session
//! ([`SessionError`]), joining a room ([`RoomError`]), and why a
//! connection ended ([`DisconnectReason`]).

pub use crate::room::RoomError;

use std::fmt;
use std::io;
use std::path::PathBuf;

use webwire_proto::{ErrorCode, ParseError, SessionJsonError, ValueError};

use crate::session::SessionStoreError;

/// What a request or signal handler may fail with: any error.
///
/// A [`ReplyError`] (returned as is, or boxed into this type) is sent to
/// the client as an error reply with its code and message. Any other error
/// is logged on the server and answered with an internal-error reply; its
/// text never reaches the client.
///
/// ```
/// use webwire_server::{HandlerError, ReplyError};
///
/// let err: HandlerError = ReplyError::from_static("NOT_FOUND", "no such user").into();
/// assert!(err.downcast_ref::<ReplyError>().is_some());
/// let err: HandlerError = std::io::Error::other("disk full").into();
/// assert!(err.downcast_ref::<ReplyError>().is_none());
/// ```
pub type HandlerError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Building, binding or running the server failed.
///
/// ```
/// use std::time::Duration;
/// use webwire_server::{MessageRouter, Server, ServerError};
///
/// let err = Server::builder(MessageRouter::new())
///     .read_timeout(Duration::from_millis(10))
///     .build()
///     .unwrap_err();
/// assert!(matches!(err, ServerError::InvalidOption { option: "read_timeout", .. }));
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServerError {
    /// An option is out of its allowed range.
    #[error("invalid server option `{option}`: {reason}")]
    InvalidOption {
        /// The option's name (its builder method).
        option: &'static str,
        /// What is wrong with the value.
        reason: String,
    },
    /// The listening socket could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address as given.
        addr: String,
        /// The operating system's error.
        #[source]
        source: io::Error,
    },
    /// A PEM file could not be read.
    #[error("cannot read {path}: {source}")]
    TlsFile {
        /// The file.
        path: PathBuf,
        /// The operating system's error.
        #[source]
        source: io::Error,
    },
    /// The certificate or key is unusable.
    #[error("invalid TLS configuration: {0}")]
    Tls(String),
    /// Another I/O error, such as reading the bound address.
    #[error("I/O error: {0}")]
    Io(#[from] io::Error),
}

/// Sending a signal to a client failed.
///
/// ```
/// use webwire_server::error::SignalError;
///
/// let err = SignalError::TooLarge { len: 9000, max: 8192 };
/// assert_eq!(err.to_string(), "signal of 9000 bytes exceeds the message buffer size of 8192 bytes");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SignalError {
    /// The connection is closed or closing.
    #[error("the connection is closed")]
    Closed,
    /// The encoded signal is larger than the message buffer size.
    #[error("signal of {len} bytes exceeds the message buffer size of {max} bytes")]
    TooLarge {
        /// The encoded length.
        len: usize,
        /// The message buffer size.
        max: usize,
    },
    /// The connection's outbound queue stayed full: the client does not
    /// read what the server sends.
    #[error("the connection's outbound queue is full (the client is not reading)")]
    QueueFull,
    /// The name or payload is not allowed in a signal.
    #[error("invalid signal: {0}")]
    Invalid(#[from] ValueError),
}

/// Sending on a stream, or joining a session to a history room, failed
/// (see [`Server::signal_session_stream`](crate::Server::signal_session_stream),
/// [`Server::signal_room_stream`](crate::Server::signal_room_stream) and
/// [`Server::join_session_room`](crate::Server::join_session_room)).
/// Nothing was delivered or recorded then.
///
/// ```
/// use webwire_server::error::StreamError;
///
/// let err = StreamError::NoHistory { room: "lobby".into() };
/// assert_eq!(err.to_string(), "the room \"lobby\" has no history (see ServerBuilder::room_history)");
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StreamError {
    /// The signal is invalid or too large.
    #[error(transparent)]
    Signal(#[from] SignalError),
    /// The room has no history: it has no stream (a plain room: use
    /// [`Server::room_signal`](crate::Server::room_signal)).
    #[error("the room {room:?} has no history (see ServerBuilder::room_history)")]
    NoHistory {
        /// The room.
        room: String,
    },
    /// The session is a member of the most history rooms it may be in
    /// ([`MAX_SESSION_ROOMS`](crate::stream::MAX_SESSION_ROOMS)).
    #[error("the session is a member of {max} history rooms already")]
    TooManyRooms {
        /// The limit.
        max: usize,
    },
    /// The key cannot be a session key.
    #[error("not a session key")]
    InvalidKey,
    /// The connection has no session (and so no session stream).
    #[error("the connection has no session")]
    NoSession,
    /// The connection could not join the room.
    #[error(transparent)]
    Room(#[from] RoomError),
    /// The history store failed (unreachable, say): the signal was not
    /// sent, to nobody, rather than sent without its place in the stream.
    #[error("the stream store failed")]
    Store(#[source] crate::stream::StreamStoreError),
}

/// Creating or closing a session on a connection failed (see
/// [`Connection::create_session`](crate::Connection::create_session),
/// [`Connection::close_session`](crate::Connection::close_session) and
/// [`Server::close_session`](crate::Server::close_session)).
///
/// ```
/// use webwire_server::error::SessionError;
///
/// assert_eq!(SessionError::AlreadyActive.to_string(), "the connection already has a session");
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SessionError {
    /// Sessions are disabled on this server.
    #[error("sessions are disabled on this server")]
    Disabled,
    /// The connection is closing or closed.
    #[error("the connection is closed")]
    ConnectionClosed,
    /// The connection already has a session (or is restoring one).
    #[error("the connection already has a session")]
    AlreadyActive,
    /// The key generator made a key that is not 1 to 255 bytes of printable
    /// ASCII (32..=126), which clients could not restore.
    #[error("the session key generator made an invalid key")]
    InvalidKey,
    /// The key generator made the key of a session that is active now.
    #[error("the session key generator made the key of an active session")]
    KeyInUse,
    /// The session, with its info, does not fit the message buffer size.
    #[error("the session of {len} bytes exceeds the message buffer size of {max} bytes")]
    TooLarge {
        /// The encoded notification's length.
        len: usize,
        /// The message buffer size.
        max: usize,
    },
    /// The session cannot be written as JSON (a time out of range).
    #[error("the session cannot be encoded")]
    Json(#[from] SessionJsonError),
    /// The connection's outbound queue stayed full: the client was not told.
    #[error("the connection's outbound queue is full (the client is not reading)")]
    QueueFull,
    /// The session left the connection, but the session manager failed to
    /// delete it.
    #[error("the session manager failed")]
    Store(#[source] SessionStoreError),
}

impl SessionError {
    /// Whether the client's own doing explains it (a second login, a
    /// connection it closed, a queue it does not read), not a fault of the
    /// server: logged below ERROR when a handler fails with it.
    pub(crate) fn is_client_caused(&self) -> bool {
        matches!(
            self,
            Self::AlreadyActive | Self::ConnectionClosed | Self::QueueFull
        )
    }
}

/// A handler's failure chosen by the application: it becomes the
/// protocol's ReplyError message (docs/protocol.md 5.5;
/// [`webwire_proto::ErrorReply`] on the wire), so the client gets this
/// code and message as the answer to its request.
///
/// (On the client, the call then fails with `webwire_client::RequestError`,
/// which also covers timeouts, closed connections and the like.)
///
/// ```
/// use webwire_server::ReplyError;
///
/// let err = ReplyError::from_static("BAD_SLEEP", "not a number");
/// assert_eq!(err.code(), "BAD_SLEEP");
/// assert_eq!(err.message(), "not a number");
/// assert_eq!(err.to_string(), "BAD_SLEEP: not a number");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplyError {
    code: ErrorCode,
    message: String,
}

impl ReplyError {
    /// The code used when a payload cannot be read as the handler's type
    /// (see [`Json`](crate::Json)).
    pub const INVALID_PAYLOAD: &'static str = "INVALID_PAYLOAD";
    /// The code the [`MessageRouter`](crate::MessageRouter) answers unknown request names with.
    pub const UNKNOWN_REQUEST: &'static str = "UNKNOWN_REQUEST";

    /// A reply error with a validated code.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }

    /// A reply error whose code is a string literal.
    ///
    /// # Panics
    ///
    /// If `code` is not a valid error code (empty, longer than 255 bytes or
    /// not printable ASCII): a programming error, as with
    /// [`ErrorCode::from_static`].
    pub fn from_static(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(ErrorCode::from_static(code), message)
    }

    /// A reply error with a code from a string, refused if the code is invalid.
    pub fn try_new(code: &str, message: impl Into<String>) -> Result<Self, ValueError> {
        Ok(Self::new(ErrorCode::try_from(code)?, message))
    }

    /// The error code.
    pub fn code(&self) -> &ErrorCode {
        &self.code
    }

    /// The error message.
    pub fn message(&self) -> &str {
        &self.message
    }

    pub(crate) fn into_parts(self) -> (ErrorCode, String) {
        (self.code, self.message)
    }
}

impl fmt::Display for ReplyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code, self.message)
    }
}

impl std::error::Error for ReplyError {}

/// Why a connection ended, given to
/// [`Handler::on_disconnected`](crate::Handler::on_disconnected).
///
/// ```
/// use webwire_server::error::DisconnectReason;
///
/// assert_eq!(DisconnectReason::ReadTimeout.to_string(), "nothing received within the read timeout");
/// assert_eq!(DisconnectReason::TextMessage.close_code(), Some(1003));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum DisconnectReason {
    /// The client closed the WebSocket (with a close frame, or by closing
    /// the TCP connection: then `code` is `None`).
    ClientClosed {
        /// The close code the client sent.
        code: Option<u16>,
        /// The close reason the client sent.
        reason: String,
    },
    /// The server closed the connection ([`Connection::close`](crate::Connection::close)).
    ClosedByServer,
    /// The server shut down.
    Shutdown,
    /// The server drained for a restart or a deploy
    /// ([`Server::drain`](crate::Server::drain)): close code 1012, after
    /// which clients reconnect, after a random delay, to another node.
    ServiceRestart,
    /// Nothing arrived within the read timeout.
    ReadTimeout,
    /// The client sent a message that breaks the webwire protocol.
    ProtocolViolation(ParseError),
    /// The client sent a text message; webwire messages are binary.
    TextMessage,
    /// The client sent a message larger than the message buffer size.
    MessageTooBig {
        /// The message's length (as far as it was read).
        len: usize,
        /// The message buffer size.
        max: usize,
    },
    /// The client broke the WebSocket protocol (RFC 6455).
    WebSocketError(String),
    /// The client stopped reading: a write the server waited for (a reply)
    /// did not complete within the queue timeout, or the outbound queue
    /// stayed full that long while the socket took no more.
    QueueStalled,
    /// The transport failed (reset, broken pipe, TLS error).
    ConnectionLost(String),
    /// The client kept sending over its message rate limit for longer
    /// than allowed (see `ServerBuilder::rate_limit_close_after`); closed
    /// with 1008 (policy violation).
    RateLimited,
}

impl DisconnectReason {
    /// The WebSocket close code the server sent for this reason, if it sent one.
    pub fn close_code(&self) -> Option<u16> {
        self.close_frame().map(|(code, _)| code)
    }

    /// The close frame (code, reason) the server sends for this reason,
    /// if it sends its own: as the connection's rules say
    /// (`Closing::close_frame` in `webwire_proto::connection::server`), and
    /// 1009 for a message the WebSocket layer found too big.
    pub(crate) fn close_frame(&self) -> Option<(u16, &'static str)> {
        use webwire_proto::connection::server::{Closing, Drain};
        let closing = match self {
            Self::ClosedByServer => Closing::Drained(Drain::Close),
            Self::ServiceRestart => Closing::Drained(Drain::Restart),
            Self::Shutdown => Closing::Drained(Drain::Shutdown),
            Self::ReadTimeout => Closing::ReadTimeout,
            Self::ProtocolViolation(err) => Closing::ProtocolViolation(err.clone()),
            Self::TextMessage => Closing::TextMessage,
            Self::RateLimited => Closing::PolicyViolation,
            // The WebSocket stream sends this itself for a single frame, not
            // for fragments adding up to too much; ours is refused when it did.
            Self::MessageTooBig { .. } => return Some((1009, "message too big")),
            Self::ClientClosed { .. }
            | Self::WebSocketError(_)
            | Self::QueueStalled
            | Self::ConnectionLost(_) => return None,
        };
        closing.close_frame()
    }
}

impl fmt::Display for DisconnectReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::ClientClosed {
                code: Some(code),
                reason,
            } if !reason.is_empty() => {
                write!(f, "closed by the client ({code}: {reason})")
            }
            Self::ClientClosed {
                code: Some(code), ..
            } => {
                write!(f, "closed by the client ({code})")
            }
            Self::ClientClosed { code: None, .. } => f.write_str("closed by the client"),
            Self::ClosedByServer => f.write_str("closed by the server"),
            Self::Shutdown => f.write_str("server shutdown"),
            Self::ServiceRestart => f.write_str("service restart (the server drains)"),
            Self::ReadTimeout => f.write_str("nothing received within the read timeout"),
            Self::ProtocolViolation(err) => write!(f, "protocol violation: {err}"),
            Self::TextMessage => f.write_str("protocol violation: text message"),
            Self::MessageTooBig { len, max } => write!(
                f,
                "message of {len} bytes exceeds the message buffer size of {max} bytes"
            ),
            Self::WebSocketError(err) => write!(f, "WebSocket protocol error: {err}"),
            Self::QueueStalled => f.write_str(
                "the client stopped reading (a write did not complete within the queue timeout)",
            ),
            Self::ConnectionLost(err) => write!(f, "connection lost: {err}"),
            Self::RateLimited => f.write_str("the client kept exceeding its message rate limit"),
        }
    }
}
