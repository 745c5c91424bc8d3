//! The client's errors: one enum for connecting, one for requests and
//! signals, one for TLS set-up.

use std::sync::Arc;
use std::time::Duration;

use webwire_proto::{MessageType, ParseError, ValueError};

/// An error from a library below this crate (WebSocket, TLS), shared so
/// that [`ConnectError`] is `Clone`.
type SharedError = Arc<dyn std::error::Error + Send + Sync>;

/// Why a connection could not be established.
///
/// Returned by [`ClientBuilder::connect`](crate::ClientBuilder::connect) and
/// [`Client::reconnect`](crate::Client::reconnect).
///
/// ```
/// use webwire_client::ConnectError;
///
/// let err = ConnectError::SubProtocolMismatch {
///     expected: "chat".into(),
///     announced: "games".into(),
/// };
/// assert_eq!(
///     err.to_string(),
///     r#"sub-protocol mismatch: the client expects "chat", the server announced "games""#
/// );
/// ```
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum ConnectError {
    /// The URL is not a `ws://` or `wss://` URL with a host.
    #[error("invalid URL {url:?}: {reason}")]
    InvalidUrl {
        /// The URL as given.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// An extra upgrade request header (see
    /// [`ClientBuilder::header`](crate::ClientBuilder::header)) is malformed
    /// or one the WebSocket handshake sets itself.
    #[error("invalid header {name:?}: {reason}")]
    InvalidHeader {
        /// The header's name as given.
        name: String,
        /// What is wrong with it.
        reason: String,
    },
    /// Opening the TCP connection failed (or the custom transport's stream).
    #[error("could not connect to {addr}: {source}")]
    Io {
        /// `host:port` that was dialled.
        addr: String,
        /// The I/O error.
        #[source]
        source: Arc<std::io::Error>,
    },
    /// TLS could not be set up or the TLS handshake failed (for example an
    /// untrusted certificate).
    #[error("TLS: {0}")]
    Tls(#[source] SharedError),
    /// The WebSocket upgrade failed (for example the server answered with an
    /// HTTP error status such as 503 while it shuts down).
    #[error("WebSocket handshake failed: {0}")]
    Handshake(#[source] SharedError),
    /// The connection, TLS and WebSocket handshakes and the server's accept
    /// configuration together took longer than the dial timeout.
    #[error("connecting timed out after {0:?}")]
    TimedOut(Duration),
    /// The server closed the connection before it sent its accept configuration.
    #[error("the server closed the connection before sending its configuration")]
    ClosedBeforeAcceptConf,
    /// The server's first message is not an accept configuration.
    #[error("expected the server's configuration (AcceptConf), got {0}")]
    UnexpectedFirstMessage(MessageType),
    /// The server's first message is malformed, or not a binary message.
    #[error("malformed server configuration: {0}")]
    Protocol(#[source] ParseError),
    /// The server speaks another major version of the protocol.
    #[error("the server speaks webwire {major}.{minor}, this client speaks 2.x")]
    IncompatibleVersion {
        /// The server's major version.
        major: u8,
        /// The server's minor version.
        minor: u8,
    },
    /// The server announced another sub-protocol than the configured one.
    #[error("sub-protocol mismatch: the client expects {expected:?}, the server announced {announced:?}")]
    SubProtocolMismatch {
        /// The sub-protocol name the client was configured with.
        expected: String,
        /// The name the server announced (lossy UTF-8).
        announced: String,
    },
    /// The server answered the upgrade with an HTTP status instead of
    /// switching to WebSocket: 429 (a limit of this client's address), 503
    /// (shutting down, or pacing new connections), 403 (origin), and so on.
    /// Reconnecting waits at least `retry_after` before the next attempt.
    #[error("the server refused the connection with HTTP {status}{}", retry_after.map(|d| format!(" (retry after {} s)", d.as_secs())).unwrap_or_default())]
    Refused {
        /// The HTTP status.
        status: u16,
        /// The server's `Retry-After` (in seconds; a date is not read).
        retry_after: Option<Duration>,
    },
    /// The client was closed with [`Client::close`](crate::Client::close).
    #[error("the client is closed")]
    Closed,
}

impl ConnectError {
    pub(crate) fn handshake(err: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> Self {
        Self::Handshake(Arc::from(err.into()))
    }

    /// How long the server asked the client to wait before it tries again.
    ///
    /// ```
    /// use std::time::Duration;
    /// use webwire_client::ConnectError;
    ///
    /// let err = ConnectError::Refused { status: 429, retry_after: Some(Duration::from_secs(3)) };
    /// assert_eq!(err.retry_after(), Some(Duration::from_secs(3)));
    /// assert_eq!(err.to_string(), "the server refused the connection with HTTP 429 (retry after 3 s)");
    /// assert_eq!(ConnectError::Closed.retry_after(), None);
    /// ```
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Self::Refused { retry_after, .. } => *retry_after,
            _ => None,
        }
    }

    pub(crate) fn tls(err: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> Self {
        Self::Tls(Arc::from(err.into()))
    }
}

/// Why a request, signal or session call failed.
///
/// The variants from [`Request`](Self::Request) to
/// [`SessionsDisabled`](Self::SessionsDisabled) are the server's answers;
/// the others happen in the client.
///
/// ```
/// use webwire_client::RequestError;
///
/// let err = RequestError::Request { code: "NOT_ALLOWED".into(), message: "admins only".into() };
/// assert_eq!(err.to_string(), "request error NOT_ALLOWED: admins only");
/// assert!(!RequestError::TimedOut.is_server_answer());
/// assert!(RequestError::InternalError.is_server_answer());
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RequestError {
    /// The server's handler failed with a request error: a code and a
    /// message chosen by the application.
    #[error("request error {code}: {message}")]
    Request {
        /// The application's error code.
        code: String,
        /// The error message (invalid UTF-8 replaced).
        message: String,
    },
    /// The request failed inside the server; the cause is only logged there.
    #[error("internal server error")]
    InternalError,
    /// The server is shutting down and did not handle the request.
    #[error("the server is shutting down")]
    ServerShutdown,
    /// The session to restore was not found.
    #[error("session not found")]
    SessionNotFound,
    /// The session already has its maximum number of connections.
    #[error("the session has its maximum number of connections")]
    MaxSessionConnsReached,
    /// Sessions are disabled on the server.
    #[error("sessions are disabled on the server")]
    SessionsDisabled,
    /// The connection was lost before the reply arrived, or the client is
    /// disconnected and does not reconnect by itself.
    #[error("disconnected")]
    Disconnected,
    /// No reply within the request's timeout (including any time spent
    /// waiting for a connection). A reply that comes later is discarded.
    #[error("timed out")]
    TimedOut,
    /// The encoded message is larger than the server's announced message
    /// buffer size; it was not sent.
    #[error("message of {size} bytes exceeds the server's buffer size of {max} bytes")]
    MessageTooLarge {
        /// The encoded message's length.
        size: usize,
        /// The server's announced buffer size.
        max: usize,
    },
    /// The name or payload is not allowed by the protocol (for example a
    /// non-ASCII name, or neither a name nor a payload).
    #[error("invalid message: {0}")]
    InvalidMessage(#[from] ValueError),
    /// The server's answer to a session request is not a valid session.
    #[error("invalid session from the server: {0}")]
    InvalidSession(String),
    /// The client is closed.
    #[error("the client is closed")]
    Closed,
    /// Webwire 2.1: the request may or may not have run on the server, and
    /// it will not be run (again) for this call. The server said so
    /// (ReplyOutcomeUnknown: it lost its state, or released the stored
    /// reply), or the client could not ask again: the connection broke
    /// after the request was sent and the next server is a 2.0 one, its
    /// request ledger was restarted, or the session could not be restored.
    /// Find out by other means (reload the data) before doing it again.
    ///
    /// ```
    /// use webwire_client::RequestError;
    ///
    /// let err = RequestError::OutcomeUnknown;
    /// assert_eq!(err.to_string(), "outcome unknown: the request may or may not have run");
    /// assert!(!err.is_server_answer());
    /// ```
    #[error("outcome unknown: the request may or may not have run")]
    OutcomeUnknown,
    /// The request or signal was made while disconnected and the queue of
    /// calls waiting for the connection is full (see
    /// [`ClientBuilder::max_queued`](crate::ClientBuilder::max_queued)); it
    /// was not sent.
    #[error("{max} calls wait for the connection already")]
    QueueFull {
        /// The queue's bound.
        max: usize,
    },
}

impl RequestError {
    /// Whether this is an answer of the server (the request reached it),
    /// rather than a failure in the client or the connection.
    pub fn is_server_answer(&self) -> bool {
        matches!(
            self,
            Self::Request { .. }
                | Self::InternalError
                | Self::ServerShutdown
                | Self::SessionNotFound
                | Self::MaxSessionConnsReached
                | Self::SessionsDisabled
        )
    }
}

/// Why a [`TlsConfig`](crate::TlsConfig) could not be made.
///
/// ```
/// use webwire_client::{TlsConfig, TlsError};
///
/// let err = TlsConfig::with_ca_pem(b"not a certificate").unwrap_err();
/// assert!(matches!(err, TlsError::NoCertificates));
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsError {
    /// The PEM data holds no certificate, or the platform has no usable
    /// root certificates.
    #[error("no certificates found")]
    NoCertificates,
    /// The PEM data could not be read.
    #[error("invalid PEM: {0}")]
    Pem(String),
    /// rustls refused a certificate or the configuration.
    #[error(transparent)]
    Rustls(#[from] rustls::Error),
}
