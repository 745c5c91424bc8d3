//! Async server for the [webwire] protocol, version 2.0: requests, replies
//! and signals over WebSocket, byte-compatible with the original Go and
//! JavaScript clients. It announces version 2.1, whose extensions a client
//! opts into (original clients never do, and see 2.0): keyed requests that
//! run at most once however often a client resends them
//! ([`ServerBuilder::extensions`], [`ServerBuilder::request_ledger`]).
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
//! with [`ServerBuilder::session_manager`]: a
//! [`FileSessionManager`](session::FileSessionManager) elsewhere, a
//! [`MemorySessionManager`](session::MemorySessionManager) (sessions end
//! with the process), or `webwire-redis` for sessions shared by several
//! nodes; or turn sessions off with [`ServerBuilder::sessions_enabled`].
//!
//! # The API
//!
//! The root holds what nearly every application names: [`Server`],
//! [`ServerBuilder`], [`Listener`], [`TlsConfig`], [`MessageRouter`] with
//! its [`State`], [`Handler`], [`Connection`], [`Json`], the messages
//! ([`Request`], [`Signal`], [`Payload`]) and the errors a handler or the
//! set-up meets ([`ReplyError`], [`HandlerError`], [`ServerError`]). The
//! rest is in modules:
//!
//! - [`connection`]: what a [`Connection`] tells (its
//!   [`ConnectionId`](connection::ConnectionId),
//!   [`ConnectionInfo`](connection::ConnectionInfo),
//!   [`ConnectionStats`](connection::ConnectionStats)).
//! - [`options`]: per-connection options and the before-upgrade hook's
//!   answers ([`ConnectionOptions`](options::ConnectionOptions),
//!   [`Concurrency`](options::Concurrency), [`Refusal`](options::Refusal)),
//!   and the [`OriginPolicy`](options::OriginPolicy).
//! - [`routing`], [`extract`]: the router's handler traits; what handlers
//!   take and return.
//! - [`error`]: every error type ([`SignalError`](error::SignalError),
//!   [`SessionError`](error::SessionError),
//!   [`RoomError`](error::RoomError),
//!   [`DisconnectReason`](error::DisconnectReason), ...).
//! - [`session`]: session storage ([`SessionManager`](session::SessionManager),
//!   the default [`FileSessionManager`](session::FileSessionManager),
//!   [`MemorySessionManager`](session::MemorySessionManager)), session keys
//!   and the [`Session`](session::Session) itself.
//! - [`cluster`]: several servers as one
//!   ([`Cluster`](cluster::Cluster), given to [`ServerBuilder::cluster`]).
//! - [`stream`], [`ledger`] (webwire 2.1): stream history
//!   ([`StreamStore`](stream::StreamStore), kept in memory by
//!   [`MemoryStreamStore`](stream::MemoryStreamStore)) and the request
//!   ledger that runs a keyed request at most once
//!   ([`RequestLedger`](ledger::RequestLedger),
//!   [`MemoryLedger`](ledger::MemoryLedger)).
//! - [`service`]: the tower service of headless mode
//!   ([`WebwireService`](service::WebwireService)).
//! - [`proto`]: `webwire-proto`, for the wire types the root does not
//!   re-export (names, encodings, error codes).
//!
//! The interfaces that applications and adapters implement
//! (`SessionManager`, `SessionKeyGenerator`, `Cluster`) are defined in
//! `webwire-core`, which has no networking dependencies, and re-exported in
//! [`session`] and [`cluster`].
//!
//! # Layout
//!
//! - `server`: [`Server`] (the cheap-to-clone handle: connections,
//!   broadcast, graceful shutdown) and [`ServerBuilder`] (options with the
//!   original defaults, validated when built).
//! - `listener`, `tls`: standalone mode ([`Listener`], [`TlsConfig`]).
//! - `service`: headless mode.
//! - `upgrade`, `origin`, `options`, `headers`: the HTTP upgrade: handshake
//!   checks, the origin policy, the connection limit, the before-upgrade
//!   hook.
//! - `connection`: [`Connection`], the handle of one client, with its
//!   session ([`Connection::create_session`], [`Connection::session`], ...).
//! - `driver`, `wire`, `outbox`: a connection's one task, which reads, runs
//!   handlers within the concurrency limit and writes: replies of handlers
//!   that finish at once go straight to the socket, everything else through
//!   a bounded queue (`outbox`) the task drains, one flush per batch
//!   (`wire::stall`: a write that cannot proceed; `prefixed`: bytes hyper
//!   read ahead, in front of the transport taken back from it;
//!   `lifecycle`: the connection's phase).
//! - `room`: rooms, named groups of connections signalled together
//!   ([`Connection::join_room`], [`Server::room_signal`]).
//! - `cluster`: the cluster interfaces of `webwire-core`, erased for the
//!   server, and the server's side ([`cluster::LocalNode`]): broadcasts,
//!   room and session signals, close everywhere and the per-session limit
//!   across nodes.
//! - `handler`, `router`, `extract`: the application's side: [`Handler`]
//!   hooks (messages, connections, session events), the [`MessageRouter`]
//!   with its optional [`State`], typed arguments and replies.
//! - `error`: the error types, one per layer.
//! - `session`: the session stores of this crate (files, memory), the
//!   session manager erased for the server; `session::registry` is the
//!   server's record of which connections hold which session,
//!   `session::ops` what the server does with sessions (create, restore,
//!   close on one connection or everywhere with [`Server::close_session`]
//!   and its [`ClosedSession`](session::ClosedSession) report).
//!
//! DESIGN.md at the repository root explains the tasks, where backpressure
//! comes from, and the choices made.
//!
//! # Metrics and tracing
//!
//! The server reports through the `metrics` facade (install a recorder
//! before building the server) and `tracing` (a `webwire.connection` span
//! per connection at INFO, a `webwire.request` span per request at DEBUG,
//! with OpenTelemetry's field names). Every metric with its labels, and
//! every span with its fields, is listed in
//! [docs/metrics.md](https://github.com/webwire-rs/webwire-rs/blob/main/docs/metrics.md);
//! see also [`metrics`].
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

mod admission;
pub mod cluster;
mod config;
pub mod connection;
mod driver;
pub mod error;
pub mod extract;
mod handler;
mod headers;
#[cfg(feature = "test-util")]
pub mod in_memory;
pub mod ledger;
mod lifecycle;
pub mod limits;
mod listener;
pub mod metrics;
pub mod options;
mod origin;
mod outbox;
mod own_signals;
mod prefixed;
mod room;
mod router;
mod server;
pub mod service;
pub mod session;
pub mod stream;
mod tls;
mod upgrade;
mod wire;

/// The [`MessageRouter`] and the handler and hook traits it takes; what
/// handlers take and return is in [`extract`].
pub mod routing {
    pub use crate::handler::Routed;
    pub use crate::router::{MessageRouter, RequestHandler, SessionHook, SignalHandler, State};
}

// The root holds what nearly every application names; the rest is in the
// modules above.
pub use connection::Connection;
pub use error::{HandlerError, ReplyError, ServerError};
pub use extract::Json;
pub use handler::Handler;
pub use listener::Listener;
pub use router::{MessageRouter, State};
pub use server::{Server, ServerBuilder};
pub use tls::TlsConfig;
pub use webwire_proto::{Payload, Request, Signal};

/// The wire types of `webwire-proto` (names, encodings, error codes, ...),
/// for what the root does not re-export.
pub use webwire_proto as proto;
