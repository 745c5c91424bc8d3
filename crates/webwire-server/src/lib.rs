//! Async server for the [webwire] protocol, version 2.0: requests, replies
//! and signals over WebSocket, byte-compatible with the original Go and
//! JavaScript clients.
//!
//! The application plugs in a [`Handler`] (or a [`MessageRouter`] that dispatches
//! by message name); the server runs standalone on its own port
//! ([`Server::bind`], optionally with TLS) or mounts into an existing axum
//! or hyper application as a tower service ([`Server::service`]).
//!
//! # Where sessions are kept
//!
//! Unless told otherwise, the server keeps sessions as the original Go
//! server does: one file per session in a `webwire-sessions/` folder of the
//! working directory (as it is when the server is built), created on the
//! first session, so that a restarted server still restores them. The
//! folder is logged at INFO when the server is built. Choose another store
//! with [`ServerBuilder::session_manager`]: a [`FileSessionManager`]
//! elsewhere, a [`MemorySessionManager`] (sessions end with the process),
//! or `webwire-redis` for sessions shared by several nodes; or turn
//! sessions off with [`ServerBuilder::sessions_enabled`].
//!
//! # Layout
//!
//! - `server`: [`Server`] (the cheap-to-clone handle: connections,
//!   broadcast, graceful shutdown) and [`ServerBuilder`] (options with the
//!   original defaults, validated when built).
//! - `listener`, `tls`: standalone mode ([`Listener`], [`TlsConfig`]).
//! - `service`: headless mode ([`WebwireService`]).
//! - `upgrade`, `origin`, `options`, `headers`: the HTTP upgrade: handshake checks,
//!   [`OriginPolicy`], the connection limit, the before-upgrade hook
//!   ([`ConnectionOptions`], [`Concurrency`], [`Refusal`]).
//! - `connection`: [`Connection`], the handle of one client, with its
//!   session ([`Connection::create_session`], [`Connection::session`], ...).
//! - `driver`, `wire`: a connection's one task, which reads, runs handlers
//!   within the concurrency limit and writes: replies of handlers that
//!   finish at once go straight to the socket, everything else through a
//!   bounded queue the task drains, one flush per batch (`prefixed`:
//!   bytes hyper read ahead, in front of the transport taken back from it).
//! - `room`: rooms, named groups of connections signalled together
//!   ([`Connection::join_room`], [`Server::room_signal`], [`RoomError`]).
//! - `cluster`: the interface of a cluster adapter ([`Cluster`], given to
//!   [`ServerBuilder::cluster`]): broadcasts, room and session signals,
//!   close everywhere and the per-session limit across nodes.
//! - `handler`, `router`, `extract`: the application's side: [`Handler`]
//!   hooks (messages, connections, session events), the [`MessageRouter`] with its
//!   optional [`State`], typed arguments and replies.
//! - `error`: [`ServerError`], [`SignalError`], [`ReplyError`],
//!   [`SessionError`], [`DisconnectReason`].
//! - `session`: [`SessionManager`] (the application's session storage, with
//!   [`FileSessionManager`], the default, and [`MemorySessionManager`]),
//!   [`SessionLookup`], [`SessionStoreError`], and [`SessionKeyGenerator`]
//!   with [`DefaultKeyGenerator`]. [`Session`] and [`SessionInfo`] are the
//!   wire types of `webwire-proto`. `session::registry` is the server's
//!   record of which connections hold which session, `session::ops` what
//!   the server does with sessions (create, restore, close on one
//!   connection or everywhere with [`Server::close_session`] and its
//!   [`ClosedSession`] report).
//!
//! DESIGN.md at the repository root explains the tasks, where backpressure
//! comes from, and the choices made.
//!
//! # Example
//!
//! ```no_run
//! use webwire_server::{Connection, Json, Request, ReplyError, MessageRouter, Server};
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let router = MessageRouter::new()
//!     .request("echo", |_conn: Connection, req: Request| async move {
//!         Ok::<_, ReplyError>(req.payload().clone())
//!     })
//!     .request("sum", |Json(numbers): Json<Vec<i64>>| async move {
//!         Ok::<_, ReplyError>(Json(numbers.iter().sum::<i64>()))
//!     });
//! let server = Server::builder(router).build()?;
//! let listener = server.bind("127.0.0.1:8080").await?;
//! listener.run_until(tokio::signal::ctrl_c()).await?;
//! # Ok(())
//! # }
//! ```
//!
//! [webwire]: https://github.com/qbeon/webwire-go

// The README is what crates.io shows; its examples are compiled as doctests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;

mod cluster;
mod config;
mod connection;
mod driver;
mod error;
mod extract;
mod handler;
mod headers;
#[cfg(feature = "test-util")]
mod in_memory;
mod listener;
mod options;
mod origin;
mod prefixed;
mod room;
mod router;
mod server;
mod service;
mod session;
mod tls;
mod upgrade;
mod wire;

pub use cluster::{Cluster, ClusterError, ClusterEvent, ClusterNode, ClusterReply, SessionJoin};
pub use connection::{Connection, ConnectionId, ConnectionInfo, ConnectionStats, IntoName};
pub use error::{
    DisconnectReason, HandlerError, ReplyError, ServerError, SessionError, SignalError,
};
pub use extract::{FromRequest, FromSignal, IntoPayload, IntoReply, Json};
pub use handler::Handler;
#[cfg(feature = "test-util")]
pub use in_memory::DEFAULT_PIPE_CAPACITY;
pub use listener::Listener;
pub use options::{Concurrency, ConnectionOptions, Refusal};
pub use origin::OriginPolicy;
pub use room::{RoomError, MAX_ROOM_NAME_LEN};
pub use router::{MessageRouter, RequestHandler, SessionHook, SignalHandler, State};
pub use server::{Server, ServerBuilder};
pub use service::WebwireService;
pub use session::{
    ClosedSession, DefaultKeyGenerator, FileSessionManager, KeyDigest, MemorySessionManager,
    Session, SessionInfo, SessionJsonError, SessionKeyGenerator, SessionLookup, SessionManager,
    SessionStoreError,
};
pub use tls::TlsConfig;

pub use webwire_proto::{Encoding, Name, Payload, Request, Signal};
