//! Async Rust client for the [webwire] protocol, version 2.0 and its 2.1
//! extensions.
//!
//! A [`Client`] keeps one WebSocket connection (`ws://` or `wss://`) to a
//! webwire server: it sends **requests** and matches their replies (many in
//! flight at once), sends and receives one-way **signals**, keeps the
//! **session** the server gives it, sends heartbeats within the server's
//! read timeout, and reconnects by itself when the connection is lost,
//! restoring the session.
//!
//! # Webwire 2.1: nothing lost across reconnects
//!
//! With a server that announces 2.1 (docs/protocol.md section 14) the
//! client opts in on every connection; with a 2.0 server it is a 2.0
//! client ([`ClientBuilder::extensions`]). Then, within a session:
//!
//! - **requests never run twice**: each is keyed (client instance, seq);
//!   one in flight when the connection drops is sent again with its key
//!   after the session is restored, on whatever node, and the caller gets
//!   exactly one answer, or [`RequestError::OutcomeUnknown`] when nobody
//!   can tell whether it ran. An answer whose caller is gone comes as
//!   [`ClientEvent::OrphanReply`];
//! - **stream signals** (the session's, a history room's) arrive in order,
//!   once each: the client resumes its streams after every restore and
//!   repairs a gap from the server's history; what the server no longer
//!   has is told by [`ClientEvent::StreamLoss`].
//!
//! # Example
//!
//! ```no_run
//! use webwire_client::{Client, ClientEvent, Payload};
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let client = Client::builder("ws://127.0.0.1:9090/")
//!     .sub_protocol("interop")
//!     .connect()
//!     .await?;
//! let mut events = client.events();
//!
//! let reply = client.request("echo", Payload::utf16("héllo")).await?;
//! assert_eq!(reply.to_text()?, "héllo");
//!
//! client.request("login", "ann").await?;
//! let user: Option<String> = client.session_info("user")?;
//!
//! client.signal("ping", "x").await?;
//! while let Some(event) = events.recv().await {
//!     if let ClientEvent::Signal(signal) = event {
//!         println!("{}: {}", signal.name(), signal.payload().to_text()?);
//!         break;
//!     }
//! }
//! client.close().await;
//! # Ok(()) }
//! ```
//!
//! # Testing handlers without sockets
//!
//! With the `test-util` feature, [`ClientBuilder::transport`] replaces TCP
//! (and TLS) by any byte stream, opened anew for every connection and
//! reconnection. With `webwire-server`'s `test-util` feature,
//! `Server::connect_in_memory` gives such a stream to a server in the same
//! process, through the same upgrade path (hooks, connection info) as a
//! socket: an application tests its handlers with the real client, without
//! a port, and under `#[tokio::test(start_paused = true)]` in virtual time.
//! The example is on [`ClientBuilder::transport`].
//!
//! # Layout
//!
//! - `config`: [`ClientBuilder`], the options (timeouts, reconnection,
//!   sub-protocol, upgrade headers, TLS, transport) and URL checking.
//! - `client`: [`Client`], the cheap-to-clone handle, and [`Status`]. Each
//!   call sends a command with a oneshot channel for its answer to...
//! - `connection`: the connection task, the one owner of the connection:
//!   the I/O loop around the connection's rules
//!   ([`webwire_proto::connection::client::ClientConnection`]: requests in
//!   flight by id, session notifications and restoration, heartbeats, the
//!   close handshake), reconnection with backoff; and the writer task per
//!   connection that batches frames and flushes once per batch.
//! - `dial`: one connection attempt (TCP and TLS, or the custom transport;
//!   WebSocket upgrade) and the check of the server's accept configuration.
//! - `request`: the commands, the tokens the state machine holds for each
//!   call and how server answers become results.
//! - `event`: [`ClientEvent`] and the [`Events`] receiver.
//! - `tls`: [`TlsConfig`] (rustls with the ring provider).
//! - `error`: [`ConnectError`], [`RequestError`], [`TlsError`].
//!
//! The messages themselves are encoded and parsed by [`webwire_proto`];
//! [`Payload`], [`Encoding`], [`Signal`], [`Session`] (with its JSON
//! parsing) and [`AcceptConf`] are re-exported from it.
//!
//! [webwire]: https://github.com/qbeon/webwire-go

// The README is what crates.io shows; its examples are compiled as doctests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;

mod client;
mod config;
mod connection;
mod dial;
mod error;
mod event;
mod request;
mod tls;

pub use client::{Client, Status};
pub use config::ClientBuilder;
pub use error::{ConnectError, RequestError, TlsError};
pub use event::{ClientEvent, Events};
pub use tls::TlsConfig;
pub use webwire_proto::{
    AcceptConf, Encoding, KeyDigest, LossReason, Name, Payload, RoomName, Session, SessionInfo,
    SessionJsonError, Signal, StreamId, StreamLoss, StreamSignal, TextError,
};
