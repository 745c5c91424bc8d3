//! What the client tells the application: connection changes, server
//! signals and session notifications, through a broadcast channel.

use tokio::sync::broadcast;
use webwire_proto::Signal;

use crate::Session;

/// Something that happened on the client's connection.
///
/// Received with [`Events::recv`].
///
/// ```
/// use webwire_client::ClientEvent;
///
/// fn describe(event: &ClientEvent) -> String {
///     match event {
///         ClientEvent::Signal(signal) => format!("signal {}", signal.name()),
///         ClientEvent::SessionCreated(session) => format!("session {}", session.key),
///         ClientEvent::Lagged(n) => format!("{n} events lost"),
///         other => format!("{other:?}"),
///     }
/// }
/// assert_eq!(describe(&ClientEvent::Lagged(3)), "3 events lost");
/// ```
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum ClientEvent {
    /// A connection was established (the first one, or a reconnection; after
    /// a reconnection the session, if any, has been restored already).
    Connected,
    /// The connection was lost. In-flight requests failed with
    /// [`RequestError::Disconnected`](crate::RequestError::Disconnected).
    Disconnected,
    /// The server sent a signal.
    Signal(Signal),
    /// The server created a session for this connection.
    SessionCreated(Session),
    /// The server closed this connection's session, or the session could
    /// not be restored after a reconnection.
    SessionClosed,
    /// This receiver was too slow: that many events were dropped.
    Lagged(u64),
}

/// A receiver of [`ClientEvent`]s, from [`Client::events`](crate::Client::events).
///
/// Each receiver gets every event (a broadcast); a receiver that falls more
/// than the builder's
/// [`event_capacity`](crate::ClientBuilder::event_capacity) behind loses the
/// oldest events and gets [`ClientEvent::Lagged`] instead. Slow receivers
/// never hold up the connection.
///
/// ```no_run
/// use webwire_client::{Client, ClientEvent};
///
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// let client = Client::connect("ws://127.0.0.1:9090/").await?;
/// let mut events = client.events();
/// while let Some(event) = events.recv().await {
///     if let ClientEvent::Signal(signal) = event {
///         println!("{}: {:?}", signal.name(), signal.payload().to_text()?);
///     }
/// }
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct Events {
    rx: broadcast::Receiver<ClientEvent>,
}

impl Events {
    pub(crate) fn new(rx: broadcast::Receiver<ClientEvent>) -> Self {
        Self { rx }
    }

    /// The next event; `None` once the client is closed (or dropped) and
    /// every event before has been received.
    pub async fn recv(&mut self) -> Option<ClientEvent> {
        match self.rx.recv().await {
            Ok(event) => Some(event),
            Err(broadcast::error::RecvError::Lagged(n)) => Some(ClientEvent::Lagged(n)),
            Err(broadcast::error::RecvError::Closed) => None,
        }
    }

    /// The next event if one is ready, without waiting.
    pub fn try_recv(&mut self) -> Option<ClientEvent> {
        match self.rx.try_recv() {
            Ok(event) => Some(event),
            Err(broadcast::error::TryRecvError::Lagged(n)) => Some(ClientEvent::Lagged(n)),
            Err(_) => None,
        }
    }
}
