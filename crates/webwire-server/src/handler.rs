//! The application's hooks: what the server calls when clients connect,
//! send signals and requests, and disconnect.

use std::future::Future;
use std::sync::Arc;

use futures_util::future::BoxFuture;
use webwire_proto::{Payload, Request, Session, Signal};

use crate::{Connection, DisconnectReason, HandlerError};

/// The application plugged into a server.
///
/// Implement it directly for full control, or use a [`MessageRouter`](crate::MessageRouter),
/// which dispatches by message name. Only [`on_request`](Handler::on_request)
/// is required; the other hooks do nothing by default.
///
/// Requests and signals arrive with their names and payloads as
/// zero-copy [`Bytes`](bytes::Bytes): they may be kept after the hook
/// returns. How many hooks of one connection run at once is the
/// connection's [`Concurrency`](crate::Concurrency).
///
/// A request hook returns the reply's payload, or an error: a
/// [`ReplyError`](crate::ReplyError) becomes an error reply with its
/// code and message; any other error, or a panic, becomes an
/// internal-error reply and is logged with `tracing`, never sent.
///
/// ```
/// use webwire_server::{Connection, Handler, HandlerError, Payload, Request, ReplyError};
///
/// struct Echo;
///
/// impl Handler for Echo {
///     async fn on_request(&self, _conn: &Connection, request: Request) -> Result<Payload, HandlerError> {
///         if request.name() == "fail" {
///             return Err(ReplyError::from_static("FAILED", "as asked").into());
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

    /// A session was created on `conn`
    /// ([`Connection::create_session`]): called once the client's
    /// notification is queued and the session manager has been asked to
    /// store it, before `create_session` returns.
    ///
    /// ```
    /// use webwire_server::{Connection, Handler, HandlerError, Payload, Request, Session};
    ///
    /// struct App;
    ///
    /// impl Handler for App {
    ///     async fn on_request(&self, _conn: &Connection, req: Request) -> Result<Payload, HandlerError> {
    ///         Ok(req.payload().clone())
    ///     }
    ///
    ///     async fn on_session_created(&self, conn: &Connection, session: &Session) {
    ///         println!("{} signed in: {:?}", conn.id(), session.info);
    ///     }
    /// }
    /// ```
    fn on_session_created(
        &self,
        conn: &Connection,
        session: &Session,
    ) -> impl Future<Output = ()> + Send {
        let _ = (conn, session);
        async {}
    }

    /// A client restored `session` on `conn` (its restore request
    /// succeeded): called once the reply is queued, before the
    /// connection's next message is read.
    fn on_session_restored(
        &self,
        conn: &Connection,
        session: &Session,
    ) -> impl Future<Output = ()> + Send {
        let _ = (conn, session);
        async {}
    }

    /// `conn` left its session `key` because it was closed: by the client
    /// (called once the reply is queued), by the server
    /// ([`Connection::close_session`], called before it returns) or
    /// everywhere ([`Server::close_session`](crate::Server::close_session),
    /// once for every connection that held it). Not called when a
    /// connection ends: the session stays stored and
    /// [`on_disconnected`](Self::on_disconnected) can still read it.
    fn on_session_closed(&self, conn: &Connection, key: &str) -> impl Future<Output = ()> + Send {
        let _ = (conn, key);
        async {}
    }
}

/// The session hooks of a [`Handler`], callable without knowing its type
/// (the session operations are not generic).
pub(crate) trait SessionHooks: Send + Sync + 'static {
    fn created<'a>(&'a self, conn: &'a Connection, session: &'a Session) -> BoxFuture<'a, ()>;
    fn restored<'a>(&'a self, conn: &'a Connection, session: &'a Session) -> BoxFuture<'a, ()>;
    fn closed<'a>(&'a self, conn: &'a Connection, key: &'a str) -> BoxFuture<'a, ()>;
}

/// A handler's session hooks.
pub(crate) struct HandlerHooks<H>(pub(crate) Arc<H>);

impl<H: Handler> SessionHooks for HandlerHooks<H> {
    fn created<'a>(&'a self, conn: &'a Connection, session: &'a Session) -> BoxFuture<'a, ()> {
        Box::pin(self.0.on_session_created(conn, session))
    }

    fn restored<'a>(&'a self, conn: &'a Connection, session: &'a Session) -> BoxFuture<'a, ()> {
        Box::pin(self.0.on_session_restored(conn, session))
    }

    fn closed<'a>(&'a self, conn: &'a Connection, key: &'a str) -> BoxFuture<'a, ()> {
        Box::pin(self.0.on_session_closed(conn, key))
    }
}
