//! The session registry of a node in a cluster: the local registry for the
//! connections' slots, plus the cluster's count of each session's
//! connections on all nodes, for the per-session limit.
//!
//! The cluster calls run in tasks of their own, so that a caller that stops
//! waiting cannot leave a count changed halfway: a place taken for a
//! restore that is then dropped is given back.

use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use webwire_proto::Session;

use super::redacted;
use super::registry::{Leave, Left, LocalRegistry, Refused, SessionRegistry, Ticket};
use crate::{Cluster, Connection};

/// A [`LocalRegistry`] whose per-session limit spans the cluster.
pub(crate) struct ClusteredRegistry {
    local: LocalRegistry,
    cluster: Arc<dyn Cluster>,
    max: usize,
}

impl ClusteredRegistry {
    pub(crate) fn new(max: usize, cluster: Arc<dyn Cluster>) -> Self {
        Self {
            local: LocalRegistry::new(max),
            cluster,
            max,
        }
    }

    /// Gives one place of `key` back, in the background.
    fn leave_later(&self, key: &str) {
        let cluster = self.cluster.clone();
        let key = key.to_owned();
        tokio::spawn(async move {
            if let Err(err) = cluster.leave_session(&key).await {
                tracing::warn!(session = redacted(&key), error = %err, "the cluster did not count a connection leaving its session");
            }
        });
    }
}

impl fmt::Debug for ClusteredRegistry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClusteredRegistry")
            .field("local", &self.local)
            .field("cluster", &self.cluster)
            .finish()
    }
}

/// A place taken in the cluster's count for a restore; given back when
/// dropped before the restore settled.
struct Place<'a> {
    registry: &'a ClusteredRegistry,
    key: &'a str,
    ticket: &'a Ticket,
    /// The cluster's answer, while it is awaited.
    task: Option<tokio::task::JoinHandle<Result<bool, crate::ClusterError>>>,
    settled: bool,
}

impl Drop for Place<'_> {
    fn drop(&mut self) {
        if self.settled {
            return;
        }
        self.registry.local.abandon(self.ticket);
        if let Some(task) = self.task.take() {
            // Dropped while the cluster answered: give the place back if it was taken.
            let cluster = self.registry.cluster.clone();
            let key = self.key.to_owned();
            tokio::spawn(async move {
                if let Ok(Ok(true)) = task.await {
                    let _ = cluster.leave_session(&key).await;
                }
            });
        }
    }
}

#[async_trait]
impl SessionRegistry for ClusteredRegistry {
    async fn create(&self, conn: &Connection, session: Arc<Session>) -> Result<(), Refused> {
        let key = session.key.clone();
        self.local.create(conn, session).await?;
        let cluster = self.cluster.clone();
        // A new session: counted without a limit.
        let task = tokio::spawn(async move {
            if let Err(err) = cluster.join_session(&key, 0).await {
                tracing::warn!(session = redacted(&key), error = %err, "the cluster did not count a new session's connection");
            }
        });
        let _ = task.await;
        Ok(())
    }

    async fn begin_restore(&self, key: &str) -> Result<Ticket, Refused> {
        self.local.begin_restore(key).await
    }

    async fn join(
        &self,
        ticket: &Ticket,
        conn: &Connection,
        session: Arc<Session>,
    ) -> Result<(), Refused> {
        let key = session.key.clone();
        let cluster = self.cluster.clone();
        let max = self.max;
        let owned_key = key.clone();
        let mut place = Place {
            registry: self,
            key: &key,
            ticket,
            task: Some(tokio::spawn(async move {
                cluster.join_session(&owned_key, max).await
            })),
            settled: false,
        };
        let answer = match place.task.as_mut() {
            Some(task) => task.await,
            None => unreachable!("set above"),
        };
        place.task = None;
        match answer {
            Ok(Ok(true)) => {}
            Ok(Ok(false)) => return Err(Refused::Full),
            Ok(Err(err)) => {
                tracing::error!(session = redacted(&key), error = %err, "the cluster could not count a restored session's connections");
                return Err(Refused::Unavailable);
            }
            Err(_) => return Err(Refused::Unavailable),
        }
        place.settled = true;
        drop(place);
        let joined = self.local.join(ticket, conn, session).await;
        if joined.is_err() {
            self.leave_later(&key);
        }
        joined
    }

    fn abandon(&self, ticket: &Ticket) {
        self.local.abandon(ticket);
    }

    async fn leave(&self, conn: &Connection, how: Leave) -> Option<Left> {
        let left = self.local.leave(conn, how).await?;
        self.leave_later(&left.key);
        Some(left)
    }

    async fn close_everywhere(&self, key: &str) -> Option<Vec<Connection>> {
        let connections = self.local.close_everywhere(key).await?;
        if !connections.is_empty() {
            let cluster = self.cluster.clone();
            let key = key.to_owned();
            tokio::spawn(async move {
                if let Err(err) = cluster.clear_session(&key).await {
                    tracing::warn!(session = redacted(&key), error = %err, "the cluster did not clear a closed session's count");
                }
            });
        }
        Some(connections)
    }

    fn destroyed(&self, key: &str) {
        self.local.destroyed(key);
    }

    fn active_sessions(&self) -> usize {
        self.local.active_sessions()
    }

    fn connections(&self, key: &str) -> Vec<Connection> {
        self.local.connections(key)
    }

    fn connection_count(&self, key: &str) -> usize {
        self.local.connection_count(key)
    }

    fn session_counts(&self) -> Vec<(String, usize)> {
        self.local.session_counts()
    }
}
