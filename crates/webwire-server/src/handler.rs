//! The application's hooks: what the server calls when clients connect,
//! send signals and requests, and disconnect.

use std::future::Future;

use webwire_proto::{Payload, Request, Signal};

use crate::{Connection, DisconnectReason, HandlerError};

/// The application plugged into a server.
///
/// Implement it directly for full control, or use a [`Router`](crate::Router),
/// which dispatches by message name. Only [`on_request`](Handler::on_request)
/// is required; the other hooks do nothing by default.
///
/// Requests and signals arrive with their names and payloads as
/// zero-copy [`Bytes`](bytes::Bytes): they may be kept after the hook
/// returns. How many hooks of one connection run at once is the
/// connection's [`Concurrency`](crate::Concurrency).
///
/// A request hook returns the reply's payload, or an error: a
/// [`RequestError`](crate::RequestError) becomes an error reply with its
/// code and message; any other error, or a panic, becomes an
/// internal-error reply and is logged with `tracing`, never sent.
///
/// ```
/// use webwire_server::{Connection, Handler, HandlerError, Payload, Request, RequestError};
///
/// struct Echo;
///
/// impl Handler for Echo {
///     async fn on_request(&self, _conn: &Connection, request: Request) -> Result<Payload, HandlerError> {
///         if request.name() == "fail" {
///             return Err(RequestError::from_static("FAILED", "as asked").into());
///         }
///         Ok(request.payload().clone())
///     }
/// }
///
/// let server = webwire_server::Server::builder(Echo).build()?;
/// # Ok::<(), webwire_server::ServerError>(())
/// ```
pub trait Handler: Send + Sync + 'static {
    /// A client connected. Called before its first message is read; the
    /// connection's upgrade request and options are on `conn`.
    fn on_connected(&self, conn: &Connection) -> impl Future<Output = ()> + Send {
        let _ = conn;
        async {}
    }

    /// A connection ended, for `reason`. Called once, after its handlers
    /// have returned.
    fn on_disconnected(
        &self,
        conn: &Connection,
        reason: &DisconnectReason,
    ) -> impl Future<Output = ()> + Send {
        let _ = (conn, reason);
        async {}
    }

    /// A client sent a signal. Signals are never answered.
    fn on_signal(&self, conn: &Connection, signal: Signal) -> impl Future<Output = ()> + Send {
        let _ = (conn, signal);
        async {}
    }

    /// A client sent a request; the result is its reply.
    fn on_request(
        &self,
        conn: &Connection,
        request: Request,
    ) -> impl Future<Output = Result<Payload, HandlerError>> + Send;
}
