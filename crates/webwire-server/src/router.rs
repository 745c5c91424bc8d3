//! Dispatch by message name, the way axum routes paths: a handler per
//! request or signal name, fallbacks for unknown names, and typed
//! arguments and replies (see [`FromRequest`], [`FromSignal`],
//! [`IntoReply`]).

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::sync::Arc;

use futures_util::future::BoxFuture;
use futures_util::FutureExt;
use webwire_proto::{Name, Payload, Request, Session, Signal};

use crate::error::DisconnectReason;
use crate::extract::{FromRequest, FromSignal, IntoReply};
use crate::handler::Routed;
use crate::metrics::LazyRouteMetrics;
use crate::{Connection, Handler, HandlerError, ReplyError};

type ErasedRequest = Arc<
    dyn Fn(Connection, Request) -> BoxFuture<'static, Result<Payload, HandlerError>> + Send + Sync,
>;
type ErasedSignal = Arc<dyn Fn(Connection, Signal) -> BoxFuture<'static, ()> + Send + Sync>;
type ConnectHook = Arc<dyn Fn(Connection) -> BoxFuture<'static, ()> + Send + Sync>;
type DisconnectHook =
    Arc<dyn Fn(Connection, DisconnectReason) -> BoxFuture<'static, ()> + Send + Sync>;
type ErasedSessionHook<A> = Arc<dyn Fn(Connection, A) -> BoxFuture<'static, ()> + Send + Sync>;

/// The router's state, as a handler argument: a clone of the value given
/// to [`MessageRouter::with_state`].
///
/// Request and signal handlers take it first
/// (`Fn(State<S>, Connection, X)` or `Fn(State<S>, X)`), and so do session
/// hooks (`Fn(State<S>, Connection, A)`).
///
/// ```
/// use std::sync::atomic::{AtomicU64, Ordering};
/// use std::sync::Arc;
/// use webwire_server::{Connection, Payload, ReplyError, MessageRouter, State};
///
/// #[derive(Clone, Default)]
/// struct App {
///     hits: Arc<AtomicU64>,
/// }
///
/// let router = MessageRouter::with_state(App::default())
///     .request("hit", |State(app): State<App>, _: Payload| async move {
///         Ok::<_, ReplyError>((app.hits.fetch_add(1, Ordering::Relaxed) + 1).to_string())
///     })
///     .signal("reset", |State(app): State<App>, _conn: Connection, _: Payload| async move {
///         app.hits.store(0, Ordering::Relaxed);
///     });
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct State<S>(pub S);

/// An async function that can handle requests: `Fn(Connection, X)` or
/// `Fn(X)`, where `X` is a [`FromRequest`] value (the whole [`Request`],
/// its [`Payload`], `Bytes`, `String`, or [`Json<T>`](crate::Json)), and
/// the future resolves to a `Result` whose value is a reply
/// ([`IntoReply`]).
///
/// With a router state `S` ([`MessageRouter::with_state`]), the function may
/// also take the [`State<S>`] first: `Fn(State<S>, Connection, X)` or
/// `Fn(State<S>, X)`.
///
/// The marker `T` only tells the shapes apart.
pub trait RequestHandler<T, S = ()>: Send + Sync + 'static {
    /// Handles one request.
    fn call(
        &self,
        state: &S,
        conn: Connection,
        request: Request,
    ) -> BoxFuture<'static, Result<Payload, HandlerError>>;
}

impl<F, Fut, X, R, S> RequestHandler<(Connection, X, R), S> for F
where
    F: Fn(Connection, X) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = R> + Send + 'static,
    X: FromRequest + Send + 'static,
    R: IntoReply + 'static,
{
    fn call(
        &self,
        _state: &S,
        conn: Connection,
        request: Request,
    ) -> BoxFuture<'static, Result<Payload, HandlerError>> {
        call_request(request, |x| self(conn, x))
    }
}

impl<F, Fut, X, R, S> RequestHandler<(X, R), S> for F
where
    F: Fn(X) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = R> + Send + 'static,
    X: FromRequest + Send + 'static,
    R: IntoReply + 'static,
{
    fn call(
        &self,
        _state: &S,
        _conn: Connection,
        request: Request,
    ) -> BoxFuture<'static, Result<Payload, HandlerError>> {
        call_request(request, self)
    }
}

impl<F, Fut, X, R, S> RequestHandler<(State<S>, Connection, X, R), S> for F
where
    F: Fn(State<S>, Connection, X) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = R> + Send + 'static,
    X: FromRequest + Send + 'static,
    R: IntoReply + 'static,
    S: Clone,
{
    fn call(
        &self,
        state: &S,
        conn: Connection,
        request: Request,
    ) -> BoxFuture<'static, Result<Payload, HandlerError>> {
        call_request(request, |x| self(State(state.clone()), conn, x))
    }
}

impl<F, Fut, X, R, S> RequestHandler<(State<S>, X, R), S> for F
where
    F: Fn(State<S>, X) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = R> + Send + 'static,
    X: FromRequest + Send + 'static,
    R: IntoReply + 'static,
    S: Clone,
{
    fn call(
        &self,
        state: &S,
        _conn: Connection,
        request: Request,
    ) -> BoxFuture<'static, Result<Payload, HandlerError>> {
        call_request(request, |x| self(State(state.clone()), x))
    }
}

/// An async function that can handle signals: `Fn(Connection, X)` or
/// `Fn(X)`, where `X` is a [`FromSignal`] value (the whole [`Signal`], its
/// [`Payload`], `Bytes`, `String`, or [`Json<T>`](crate::Json)). A signal
/// whose payload cannot be extracted is dropped and logged.
///
/// With a router state `S`, the function may also take the [`State<S>`]
/// first: `Fn(State<S>, Connection, X)` or `Fn(State<S>, X)`.
pub trait SignalHandler<T, S = ()>: Send + Sync + 'static {
    /// Handles one signal.
    fn call(&self, state: &S, conn: Connection, signal: Signal) -> BoxFuture<'static, ()>;
}

impl<F, Fut, X, S> SignalHandler<(Connection, X), S> for F
where
    F: Fn(Connection, X) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ()> + Send + 'static,
    X: FromSignal + Send + 'static,
{
    fn call(&self, _state: &S, conn: Connection, signal: Signal) -> BoxFuture<'static, ()> {
        call_signal(conn, signal, self)
    }
}

impl<F, Fut, X, S> SignalHandler<(X,), S> for F
where
    F: Fn(X) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ()> + Send + 'static,
    X: FromSignal + Send + 'static,
{
    fn call(&self, _state: &S, conn: Connection, signal: Signal) -> BoxFuture<'static, ()> {
        call_signal(conn, signal, |_conn, x| self(x))
    }
}

impl<F, Fut, X, S> SignalHandler<(State<S>, Connection, X), S> for F
where
    F: Fn(State<S>, Connection, X) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ()> + Send + 'static,
    X: FromSignal + Send + 'static,
    S: Clone,
{
    fn call(&self, state: &S, conn: Connection, signal: Signal) -> BoxFuture<'static, ()> {
        call_signal(conn, signal, |conn, x| self(State(state.clone()), conn, x))
    }
}

impl<F, Fut, X, S> SignalHandler<(State<S>, X), S> for F
where
    F: Fn(State<S>, X) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ()> + Send + 'static,
    X: FromSignal + Send + 'static,
    S: Clone,
{
    fn call(&self, state: &S, conn: Connection, signal: Signal) -> BoxFuture<'static, ()> {
        call_signal(conn, signal, |_conn, x| self(State(state.clone()), x))
    }
}

/// The body of every [`RequestHandler`] shape: extracts `X`, or replies
/// with the extraction error.
fn call_request<X, Fut, R>(
    request: Request,
    f: impl FnOnce(X) -> Fut,
) -> BoxFuture<'static, Result<Payload, HandlerError>>
where
    X: FromRequest,
    Fut: Future<Output = R> + Send + 'static,
    R: IntoReply + 'static,
{
    match X::from_request(request) {
        Ok(x) => f(x).map(IntoReply::into_reply).boxed(),
        Err(err) => futures_util::future::ready(Err(err.into())).boxed(),
    }
}

/// The body of every [`SignalHandler`] shape: extracts `X`, or drops the
/// signal with a warning.
fn call_signal<X, Fut>(
    conn: Connection,
    signal: Signal,
    f: impl FnOnce(Connection, X) -> Fut,
) -> BoxFuture<'static, ()>
where
    X: FromSignal,
    Fut: Future<Output = ()> + Send + 'static,
{
    let name = signal.name().clone();
    match X::from_signal(signal) {
        Ok(x) => f(conn, x).boxed(),
        Err(err) => {
            tracing::warn!(connection = %conn.id(), signal = %name, error = %err, "signal dropped: payload not readable");
            futures_util::future::ready(()).boxed()
        }
    }
}

/// An async function that can handle a session event (see
/// [`MessageRouter::on_session_created`]): `Fn(Connection, A)` or, with a router
/// state `S`, `Fn(State<S>, Connection, A)`, where `A` is the event's
/// value (the [`Session`], or the closed session's key).
pub trait SessionHook<T, A, S = ()>: Send + Sync + 'static {
    /// Handles one event.
    fn call(&self, state: &S, conn: Connection, arg: A) -> BoxFuture<'static, ()>;
}

impl<F, Fut, A, S> SessionHook<(Connection, A), A, S> for F
where
    F: Fn(Connection, A) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    fn call(&self, _state: &S, conn: Connection, arg: A) -> BoxFuture<'static, ()> {
        self(conn, arg).boxed()
    }
}

impl<F, Fut, A, S> SessionHook<(State<S>, Connection, A), A, S> for F
where
    F: Fn(State<S>, Connection, A) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ()> + Send + 'static,
    S: Clone,
{
    fn call(&self, state: &S, conn: Connection, arg: A) -> BoxFuture<'static, ()> {
        self(State(state.clone()), conn, arg).boxed()
    }
}

/// A [`Handler`] that dispatches webwire requests and signals by message
/// name. (Not an HTTP router: mounted in an axum app, it sits behind an
/// `axum::Router` route, see [`Server::service`](crate::Server::service).)
///
/// Unknown request names go to the request fallback, by default an error
/// reply with code [`ReplyError::UNKNOWN_REQUEST`]; unknown signals go to
/// the signal fallback, by default ignored. The empty name is a name like
/// any other (`request("", ...)`).
///
/// ```
/// use webwire_server::{Connection, Json, Payload, Request, ReplyError, MessageRouter, Signal};
///
/// let router = MessageRouter::new()
///     // The raw request: name, id and payload with its encoding.
///     .request("echo", |_conn: Connection, req: Request| async move {
///         Ok::<_, ReplyError>(req.payload().clone())
///     })
///     // The payload as text (UTF-8 or UTF-16); a `String` reply is UTF-8.
///     .request("greet", |name: String| async move {
///         Ok::<_, ReplyError>(format!("hello, {name}"))
///     })
///     // Typed JSON in and out.
///     .request("double", |Json(n): Json<i64>| async move {
///         Ok::<_, ReplyError>(Json(n * 2))
///     })
///     .signal("typing", |conn: Connection, _: Payload| async move {
///         println!("{} is typing", conn.id());
///     })
///     .request_fallback(|req: Request| async move {
///         Err::<(), _>(ReplyError::from_static("NOPE", format!("no {}", req.name())))
///     });
/// ```
///
/// A router may carry a state `S` shared by its handlers
/// ([`MessageRouter::with_state`], taken with [`State<S>`]); `MessageRouter` alone is a
/// router without state (`MessageRouter<()>`).
#[derive(Clone, Default)]
pub struct MessageRouter<S = ()> {
    state: S,
    requests: Routes<RequestRoute>,
    signals: Routes<ErasedSignal>,
    request_fallback: Option<ErasedRequest>,
    signal_fallback: Option<ErasedSignal>,
    on_connect: Option<ConnectHook>,
    on_disconnect: Option<DisconnectHook>,
    on_session_created: Option<ErasedSessionHook<Session>>,
    on_session_restored: Option<ErasedSessionHook<Session>>,
    on_session_closed: Option<ErasedSessionHook<String>>,
}

/// A request route: its handler and its metric handles.
#[derive(Clone)]
struct RequestRoute {
    handler: ErasedRequest,
    metrics: LazyRouteMetrics,
}

/// Handlers by name. The table is the application's, fixed before the
/// server starts; clients only look names up, so a fast keyed hash (not
/// SipHash) is safe here: no client can add colliding keys.
type Routes<T> = HashMap<Name, T, foldhash::fast::RandomState>;

fn route_name(name: &str) -> Name {
    match Name::try_from(name) {
        Ok(name) => name,
        Err(err) => panic!("invalid webwire route name {name:?}: {err}"),
    }
}

impl MessageRouter {
    /// A router without routes and without state.
    pub fn new() -> Self {
        Self::default()
    }
}

impl<S: Clone + Send + Sync + 'static> MessageRouter<S> {
    /// A router without routes whose handlers and session hooks can take
    /// `state` (a clone of it per call: share what changes behind an
    /// `Arc`) as their first argument, [`State<S>`]. Handlers without a
    /// `State` argument work as with [`MessageRouter::new`].
    ///
    /// ```
    /// use std::sync::{Arc, Mutex};
    /// use webwire_server::{
    ///     session::Session, Connection, Payload, ReplyError, MessageRouter, State,
    /// };
    ///
    /// #[derive(Clone, Default)]
    /// struct App {
    ///     log: Arc<Mutex<Vec<String>>>,
    /// }
    ///
    /// let router = MessageRouter::with_state(App::default())
    ///     .request("say", |State(app): State<App>, text: String| async move {
    ///         app.log.lock().unwrap().push(text);
    ///         Ok::<_, ReplyError>("ok")
    ///     })
    ///     .request("echo", |_conn: Connection, payload: Payload| async move {
    ///         Ok::<_, ReplyError>(payload)
    ///     })
    ///     .on_session_created(|State(app): State<App>, conn: Connection, _: Session| async move {
    ///         app.log.lock().unwrap().push(format!("{} signed in", conn.id()));
    ///     });
    /// ```
    pub fn with_state(state: S) -> Self {
        Self {
            state,
            requests: Routes::default(),
            signals: Routes::default(),
            request_fallback: None,
            signal_fallback: None,
            on_connect: None,
            on_disconnect: None,
            on_session_created: None,
            on_session_restored: None,
            on_session_closed: None,
        }
    }

    /// The router's state.
    ///
    /// ```
    /// let router = webwire_server::MessageRouter::with_state(7_u32);
    /// assert_eq!(*router.state(), 7);
    /// ```
    pub fn state(&self) -> &S {
        &self.state
    }

    /// Routes requests named `name` to `handler`.
    ///
    /// # Panics
    ///
    /// If `name` is not a valid name (longer than 255 bytes or not
    /// printable ASCII) or already has a request handler: programming
    /// errors, as in axum.
    pub fn request<T, H: RequestHandler<T, S>>(mut self, name: &str, handler: H) -> Self {
        let name = route_name(name);
        let state = self.state.clone();
        let erased: ErasedRequest =
            Arc::new(move |conn, request| handler.call(&state, conn, request));
        let route = RequestRoute {
            handler: erased,
            metrics: LazyRouteMetrics::default(),
        };
        if self.requests.insert(name.clone(), route).is_some() {
            panic!("request {name:?} is routed twice");
        }
        self
    }

    /// Routes signals named `name` to `handler`.
    ///
    /// # Panics
    ///
    /// If `name` is not a valid name or already has a signal handler.
    pub fn signal<T, H: SignalHandler<T, S>>(mut self, name: &str, handler: H) -> Self {
        let name = route_name(name);
        let state = self.state.clone();
        let erased: ErasedSignal = Arc::new(move |conn, signal| handler.call(&state, conn, signal));
        if self.signals.insert(name.clone(), erased).is_some() {
            panic!("signal {name:?} is routed twice");
        }
        self
    }

    /// Handles requests whose name has no route.
    pub fn request_fallback<T, H: RequestHandler<T, S>>(mut self, handler: H) -> Self {
        let state = self.state.clone();
        self.request_fallback = Some(Arc::new(move |conn, request| {
            handler.call(&state, conn, request)
        }));
        self
    }

    /// Handles signals whose name has no route.
    pub fn signal_fallback<T, H: SignalHandler<T, S>>(mut self, handler: H) -> Self {
        let state = self.state.clone();
        self.signal_fallback = Some(Arc::new(move |conn, signal| {
            handler.call(&state, conn, signal)
        }));
        self
    }

    fn session_hook<T, A, H: SessionHook<T, A, S>>(&self, hook: H) -> ErasedSessionHook<A> {
        let state = self.state.clone();
        Arc::new(move |conn, arg| hook.call(&state, conn, arg))
    }

    /// Called when a session was created on a connection
    /// ([`Handler::on_session_created`]), with a copy of the session.
    ///
    /// ```
    /// use webwire_server::{session::Session, Connection, MessageRouter};
    ///
    /// let router = MessageRouter::new().on_session_created(|conn: Connection, session: Session| async move {
    ///     println!("{} signed in ({:?})", conn.id(), session.info);
    /// });
    /// ```
    pub fn on_session_created<T, H: SessionHook<T, Session, S>>(mut self, hook: H) -> Self {
        self.on_session_created = Some(self.session_hook(hook));
        self
    }

    /// Called when a client restored a session on a connection
    /// ([`Handler::on_session_restored`]), with a copy of the session.
    ///
    /// ```
    /// use webwire_server::{session::Session, Connection, MessageRouter};
    ///
    /// let router = MessageRouter::new().on_session_restored(|conn: Connection, session: Session| async move {
    ///     println!("{} is back ({:?})", conn.id(), session.info);
    /// });
    /// ```
    pub fn on_session_restored<T, H: SessionHook<T, Session, S>>(mut self, hook: H) -> Self {
        self.on_session_restored = Some(self.session_hook(hook));
        self
    }

    /// Called when a connection left its session because it was closed
    /// (by the client or the server; [`Handler::on_session_closed`]), with
    /// the session's key. Not called when the connection ends.
    ///
    /// ```
    /// use webwire_server::{Connection, MessageRouter};
    ///
    /// let router = MessageRouter::new().on_session_closed(|conn: Connection, _key: String| async move {
    ///     println!("{} signed out", conn.id());
    /// });
    /// ```
    pub fn on_session_closed<T, H: SessionHook<T, String, S>>(mut self, hook: H) -> Self {
        self.on_session_closed = Some(self.session_hook(hook));
        self
    }

    /// Called when a client connects, before its first message is read.
    pub fn on_connect<F, Fut>(mut self, hook: F) -> Self
    where
        F: Fn(Connection) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        self.on_connect = Some(Arc::new(move |conn| hook(conn).boxed()));
        self
    }

    /// Called when a connection has ended, with the reason.
    pub fn on_disconnect<F, Fut>(mut self, hook: F) -> Self
    where
        F: Fn(Connection, DisconnectReason) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        self.on_disconnect = Some(Arc::new(move |conn, reason| hook(conn, reason).boxed()));
        self
    }

    /// Like [`on_connect`](Self::on_connect), with the router's state
    /// first (as axum's `from_fn_with_state`: `on_connect` keeps its
    /// closure's argument types inferred).
    ///
    /// ```
    /// use std::sync::atomic::{AtomicUsize, Ordering};
    /// use std::sync::Arc;
    /// use webwire_server::{MessageRouter, State};
    ///
    /// let router = MessageRouter::with_state(Arc::new(AtomicUsize::new(0)))
    ///     .on_connect_with_state(|State(online): State<Arc<AtomicUsize>>, _conn| async move {
    ///         online.fetch_add(1, Ordering::Relaxed);
    ///     })
    ///     .on_disconnect_with_state(|State(online): State<Arc<AtomicUsize>>, _conn, _reason| async move {
    ///         online.fetch_sub(1, Ordering::Relaxed);
    ///     });
    /// ```
    pub fn on_connect_with_state<F, Fut>(mut self, hook: F) -> Self
    where
        F: Fn(State<S>, Connection) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let state = self.state.clone();
        self.on_connect = Some(Arc::new(move |conn| {
            hook(State(state.clone()), conn).boxed()
        }));
        self
    }

    /// Like [`on_disconnect`](Self::on_disconnect), with the router's
    /// state first (see [`on_connect_with_state`](Self::on_connect_with_state)).
    pub fn on_disconnect_with_state<F, Fut>(mut self, hook: F) -> Self
    where
        F: Fn(State<S>, Connection, DisconnectReason) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let state = self.state.clone();
        self.on_disconnect = Some(Arc::new(move |conn, reason| {
            hook(State(state.clone()), conn, reason).boxed()
        }));
        self
    }
}

impl<S: Clone + Send + Sync + 'static> Handler for MessageRouter<S> {
    fn on_connected(&self, conn: &Connection) -> impl Future<Output = ()> + Send {
        let hook = self.on_connect.as_ref().map(|hook| hook(conn.clone()));
        async move {
            if let Some(hook) = hook {
                hook.await;
            }
        }
    }

    fn on_disconnected(
        &self,
        conn: &Connection,
        reason: &DisconnectReason,
    ) -> impl Future<Output = ()> + Send {
        let hook = self
            .on_disconnect
            .as_ref()
            .map(|hook| hook(conn.clone(), reason.clone()));
        async move {
            if let Some(hook) = hook {
                hook.await;
            }
        }
    }

    fn on_session_created(
        &self,
        conn: &Connection,
        session: &Session,
    ) -> impl Future<Output = ()> + Send {
        run_hook(&self.on_session_created, conn, || session.clone())
    }

    fn on_session_restored(
        &self,
        conn: &Connection,
        session: &Session,
    ) -> impl Future<Output = ()> + Send {
        run_hook(&self.on_session_restored, conn, || session.clone())
    }

    fn on_session_closed(&self, conn: &Connection, key: &str) -> impl Future<Output = ()> + Send {
        run_hook(&self.on_session_closed, conn, || key.to_owned())
    }

    fn route_request(
        &self,
        conn: &Connection,
        request: Request,
    ) -> Result<Routed<'_, Result<Payload, HandlerError>>, Request> {
        // The key the route was registered with names it in the log: the
        // request's own name is not copied.
        match self.requests.get_key_value(request.name()) {
            Some((name, route)) => Ok(Routed::with_metrics(
                (route.handler)(conn.clone(), request),
                name,
                &route.metrics,
            )),
            None => Err(request),
        }
    }

    fn route_signal(&self, conn: &Connection, signal: Signal) -> Result<Routed<'_, ()>, Signal> {
        match self.signals.get_key_value(signal.name()) {
            Some((route, handler)) => Ok(Routed::new(handler(conn.clone(), signal), route)),
            None => Err(signal),
        }
    }

    fn on_signal(&self, conn: &Connection, signal: Signal) -> impl Future<Output = ()> + Send {
        match self
            .signals
            .get(signal.name())
            .or(self.signal_fallback.as_ref())
        {
            Some(handler) => handler(conn.clone(), signal),
            None => {
                tracing::debug!(connection = %conn.id(), signal = %signal.name(), "signal without a route ignored");
                futures_util::future::ready(()).boxed()
            }
        }
    }

    fn on_request(
        &self,
        conn: &Connection,
        request: Request,
    ) -> impl Future<Output = Result<Payload, HandlerError>> + Send {
        match self
            .requests
            .get(request.name())
            .map(|route| &route.handler)
            .or(self.request_fallback.as_ref())
        {
            Some(handler) => handler(conn.clone(), request),
            None => {
                let err = ReplyError::from_static(
                    ReplyError::UNKNOWN_REQUEST,
                    format!("no handler for request {:?}", request.name().as_str()),
                );
                futures_util::future::ready(Err(err.into())).boxed()
            }
        }
    }
}

/// Calls a session hook, if there is one.
fn run_hook<A>(
    hook: &Option<ErasedSessionHook<A>>,
    conn: &Connection,
    arg: impl FnOnce() -> A,
) -> impl Future<Output = ()> + Send + 'static {
    let hook = hook.as_ref().map(|hook| hook(conn.clone(), arg()));
    async move {
        if let Some(hook) = hook {
            hook.await;
        }
    }
}

impl<S> fmt::Debug for MessageRouter<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut requests: Vec<_> = self.requests.keys().map(Name::as_str).collect();
        requests.sort_unstable();
        let mut signals: Vec<_> = self.signals.keys().map(Name::as_str).collect();
        signals.sort_unstable();
        f.debug_struct("MessageRouter")
            .field("requests", &requests)
            .field("signals", &signals)
            .field("request_fallback", &self.request_fallback.is_some())
            .field("signal_fallback", &self.signal_fallback.is_some())
            .finish_non_exhaustive()
    }
}
