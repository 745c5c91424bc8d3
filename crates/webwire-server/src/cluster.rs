//! Several servers (nodes) acting as one: the interface a cluster adapter
//! implements ([`Cluster`], given to
//! [`ServerBuilder::cluster`](crate::ServerBuilder::cluster);
//! `webwire-redis` has one over Redis pub/sub), and the [`ClusterNode`]
//! through which the adapter hands the other nodes' events and requests to
//! this server. They are defined in `webwire-core` (re-exported here), so
//! that an adapter depends on no HTTP server; this crate depends on no
//! message bus.
//!
//! With a cluster:
//!
//! - [`Server::signal_all`](crate::Server::signal_all),
//!   [`Server::room_signal`](crate::Server::room_signal) and
//!   [`Server::signal_session`](crate::Server::signal_session) deliver
//!   locally at once and hand the encoded signal to
//!   [`Cluster::publish`], which the other nodes deliver to their own
//!   connections ([`ClusterNode::deliver`]);
//! - [`Server::close_session`](crate::Server::close_session) also asks
//!   every other live node to close the session ([`Cluster::close_session`],
//!   answered by [`ClusterNode::close_session`]);
//! - the per-session connection limit counts the session's connections on
//!   every node: a restore first takes a place with
//!   [`Cluster::join_session`]; leaving gives it back.
//! - a stream store shared by the nodes (2.1) hands each signal another
//!   node appended to this server as [`ClusterEvent::Stream`], delivered
//!   in the stream's order here.

use std::fmt;
use std::future::Future;
use std::pin::Pin;

pub use webwire_core::cluster::{
    Cluster, ClusterError, ClusterEvent, ClusterNode, ClusterReply, LocalNode, SessionJoin,
};

use crate::outbox::Outbound;
use crate::server::Shared;

type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// [`Cluster`] as an object, which the server holds (`Arc<dyn
/// ErasedCluster>`): the application's adapter type is erased once, when
/// it is given to the builder (as `Runner` erases the
/// handler type), and each call boxes its future, as `async-trait` did.
pub(crate) trait ErasedCluster: Send + Sync + fmt::Debug + 'static {
    fn attach(&self, node: ClusterNode);
    fn publish(&self, event: ClusterEvent);
    fn close_session<'a>(&'a self, key: &'a str) -> BoxFuture<'a, ClusterReply>;
    fn join_session<'a>(
        &'a self,
        key: &'a str,
        max: usize,
    ) -> BoxFuture<'a, Result<SessionJoin, ClusterError>>;
    fn leave_session<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<(), ClusterError>>;
    fn clear_session<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<(), ClusterError>>;
    fn leave_session_last<'a>(
        &'a self,
        key: &'a str,
        count: usize,
    ) -> BoxFuture<'a, Result<Option<usize>, ClusterError>>;
    fn set_session_counts<'a>(
        &'a self,
        counts: &'a [(String, usize)],
    ) -> BoxFuture<'a, Result<(), ClusterError>>;
    fn session_connections<'a>(
        &'a self,
        key: &'a str,
    ) -> BoxFuture<'a, Result<Option<usize>, ClusterError>>;
    fn shutdown(&self) -> BoxFuture<'_, ()>;
}

impl<C: Cluster> ErasedCluster for C {
    fn attach(&self, node: ClusterNode) {
        Cluster::attach(self, node);
    }

    fn publish(&self, event: ClusterEvent) {
        Cluster::publish(self, event);
    }

    fn close_session<'a>(&'a self, key: &'a str) -> BoxFuture<'a, ClusterReply> {
        Box::pin(Cluster::close_session(self, key))
    }

    fn join_session<'a>(
        &'a self,
        key: &'a str,
        max: usize,
    ) -> BoxFuture<'a, Result<SessionJoin, ClusterError>> {
        Box::pin(Cluster::join_session(self, key, max))
    }

    fn leave_session<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<(), ClusterError>> {
        Box::pin(Cluster::leave_session(self, key))
    }

    fn clear_session<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<(), ClusterError>> {
        Box::pin(Cluster::clear_session(self, key))
    }

    fn leave_session_last<'a>(
        &'a self,
        key: &'a str,
        count: usize,
    ) -> BoxFuture<'a, Result<Option<usize>, ClusterError>> {
        Box::pin(Cluster::leave_session_last(self, key, count))
    }

    fn set_session_counts<'a>(
        &'a self,
        counts: &'a [(String, usize)],
    ) -> BoxFuture<'a, Result<(), ClusterError>> {
        Box::pin(Cluster::set_session_counts(self, counts))
    }

    fn session_connections<'a>(
        &'a self,
        key: &'a str,
    ) -> BoxFuture<'a, Result<Option<usize>, ClusterError>> {
        Box::pin(Cluster::session_connections(self, key))
    }

    fn shutdown(&self) -> BoxFuture<'_, ()> {
        Box::pin(Cluster::shutdown(self))
    }
}

/// The server as the adapter sees it: reached through the [`ClusterNode`]
/// (a `Weak` to the server's shared state) given to [`Cluster::attach`].
impl LocalNode for Shared {
    /// A frame larger than this server's message buffer size is dropped.
    fn deliver(&self, event: &ClusterEvent) -> usize {
        let max = self.config().buffer_size;
        if let Some(frame) = event.frame().filter(|frame| frame.len() > max) {
            tracing::warn!(
                len = frame.len(),
                max,
                "a cluster signal exceeds the message buffer size; dropped"
            );
            return 0;
        }
        match event {
            ClusterEvent::Broadcast { frame } => self.send_all(frame),
            ClusterEvent::Room { room, frame } => self.rooms().send(room, frame, None),
            ClusterEvent::Session { key, frame } => {
                let mut sent = 0;
                for conn in self.sessions().registry().connections(key) {
                    if conn.try_send(Outbound::Frame(frame.clone())).is_ok() {
                        sent += 1;
                    }
                }
                sent
            }
            ClusterEvent::Stream {
                stream,
                position,
                frame,
            } => crate::stream::deliver_from_cluster(self, stream, *position, frame),
            ClusterEvent::SessionRoom { key, room, joined } => {
                let registry = self.sessions().registry();
                self.sessions().streams().membership_from_cluster(
                    registry.connections(key),
                    key,
                    room,
                    *joined,
                    |key| registry.connection_count(key) > 0,
                )
            }
            // `ClusterEvent` is non-exhaustive in `webwire-core`: an event
            // of a newer core than this server knows reaches nobody.
            _ => 0,
        }
    }

    async fn close_session(&self, key: &str) -> usize {
        self.sessions()
            .close_everywhere(key)
            .await
            .connections()
            .len()
    }

    fn session_counts(&self) -> Vec<(String, usize)> {
        self.sessions().registry().session_counts()
    }
}
