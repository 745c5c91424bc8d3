//! Headless mode: the server as a tower `Service`, mounted in an axum or
//! hyper application and sharing its port.

use std::convert::Infallible;
use std::future::{ready, Ready};
use std::task::{Context, Poll};

use http::{Request, Response};

use crate::upgrade::{self, Body};
use crate::Server;

/// A tower [`Service`](tower::Service) that answers WebSocket upgrade
/// requests for a [`Server`] (get one with [`Server::service`]).
///
/// Mount it in axum with `route_service`; the application must be served
/// by hyper with upgrades enabled, as `axum::serve` does. To give
/// connections their remote address, serve the app with
/// `into_make_service_with_connect_info::<SocketAddr>()`.
///
/// ```no_run
/// use axum::routing::get;
/// use webwire_server::{MessageRouter, Server};
///
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// let webwire = Server::builder(MessageRouter::new()).build()?;
/// let app = axum::Router::new()
///     .route("/", get(|| async { "hello" }))
///     .route_service("/ws", webwire.service());
/// let tcp = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
/// axum::serve(tcp, app).await?;
/// # Ok(())
/// # }
/// ```
#[derive(Clone, Debug)]
pub struct WebwireService {
    server: Server,
}

impl WebwireService {
    pub(crate) fn new(server: Server) -> Self {
        Self { server }
    }
}

impl<B> tower::Service<Request<B>> for WebwireService {
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = Ready<Result<Self::Response, Infallible>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        ready(Ok(upgrade::handle(&self.server.shared, request)))
    }
}
