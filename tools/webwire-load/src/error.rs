//! Why a run could not take place.
//!
//! What goes wrong *during* a run (error replies, lost connections,
//! mismatches) is counted in the report, not returned as an error.

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

/// A run could not start or could not be measured.
///
/// ```
/// use webwire_load::{LoadConfig, LoadError};
///
/// let mut config = LoadConfig::new("ws://127.0.0.1:9090/");
/// config.inflight = 0;
/// assert!(matches!(config.validate(), Err(LoadError::Config(_))));
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LoadError {
    /// A setting that cannot work.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// The URL is not a `ws://` URL with a host.
    #[error("invalid URL `{url}`: {reason}")]
    Url {
        /// The URL given.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The URL's host did not resolve.
    #[error("cannot resolve `{host}`: {source}")]
    Resolve {
        /// The host and port looked up.
        host: String,
        /// The resolver's error.
        #[source]
        source: io::Error,
    },
    /// A connection (TCP or WebSocket handshake) failed while setting up.
    #[error("connection {index} to {addr} failed: {source}")]
    Connect {
        /// Which connection (0-based).
        index: usize,
        /// The server's address.
        addr: SocketAddr,
        /// The WebSocket library's error.
        #[source]
        source: tokio_websockets::Error,
    },
    /// The server sent no AcceptConf in time.
    #[error(
        "no AcceptConf from {addr} within {timeout:?} (a raw echo server? then use --raw-echo)"
    )]
    NoAcceptConf {
        /// The server's address.
        addr: SocketAddr,
        /// How long we waited.
        timeout: Duration,
    },
    /// The server's first message was not an AcceptConf of protocol 2.x.
    #[error("bad AcceptConf from {addr}: {reason}")]
    BadAcceptConf {
        /// The server's address.
        addr: SocketAddr,
        /// What was wrong.
        reason: String,
    },
    /// The messages would be larger than the server accepts.
    #[error("a message of {len} bytes exceeds the server's message buffer size of {max} bytes")]
    MessageTooLarge {
        /// The encoded message's length.
        len: usize,
        /// The server's limit, from its AcceptConf.
        max: usize,
    },
    /// Setting a connection up for webwire 2.1 (opt-in, login, joining a
    /// room) failed.
    #[error("webwire 2.1 set-up: {0}")]
    Setup(String),
    /// Reading `/proc` for the server process failed.
    #[error("cannot read /proc/{pid}: {source}")]
    Proc {
        /// The process id.
        pid: u32,
        /// The reading error.
        #[source]
        source: io::Error,
    },
}
