//! The interfaces between a [webwire] server and what plugs into it, in a
//! crate without networking dependencies, so that a session store or a
//! cluster adapter depends on these traits alone (not on an HTTP server,
//! TLS or a WebSocket implementation):
//!
//! - [`session`]: the application's session storage
//!   ([`SessionManager`](session::SessionManager), its
//!   [`SessionLookup`](session::SessionLookup) and
//!   [`SessionStoreError`](session::SessionStoreError)) and session keys
//!   ([`SessionKeyGenerator`](session::SessionKeyGenerator),
//!   [`DefaultKeyGenerator`](session::DefaultKeyGenerator)).
//! - [`cluster`]: several servers acting as one
//!   ([`Cluster`](cluster::Cluster), implemented by an adapter such as
//!   `webwire-redis`), and the way back: the
//!   [`ClusterNode`](cluster::ClusterNode) through which the adapter hands
//!   the other nodes' events to the local server
//!   ([`LocalNode`](cluster::LocalNode), implemented by the server).
//! - [`stream`] (webwire 2.1): stream history, the
//!   [`StreamStore`](stream::StreamStore) that numbers history signals and
//!   hands back what a reconnecting client missed, or the loss.
//! - [`ledger`] (webwire 2.1): the
//!   [`RequestLedger`](ledger::RequestLedger) that makes a keyed request
//!   run at most once and answers its retries.
//!
//! The traits that applications and adapters implement are async traits
//! without any macro: write `async fn` in the `impl`. `webwire-server`
//! re-exports everything here in its own `session` and `cluster` modules.
//!
//! [webwire]: https://github.com/qbeon/webwire-go

// The README is what crates.io shows; its examples are compiled as doctests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;

pub mod cluster;
mod key;
pub mod ledger;
pub mod session;
pub mod stream;
