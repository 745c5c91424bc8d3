//! Standalone mode: the server's own TCP (and TLS) listener, serving HTTP/1
//! with hyper and handing upgrades to connection tasks.

use std::convert::Infallible;
use std::fmt;
use std::future::{ready, Future};
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::task::TaskTracker;

use crate::server::Shared;
use crate::upgrade::{self, RemoteAddr};
use crate::{Server, ServerError, TlsConfig};

/// How long a client may take to send its request headers.
const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// The smallest read buffer hyper takes (it panics below).
const HYPER_MIN_BUF_SIZE: usize = 8192;
/// How long a client may take for its TLS handshake.
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// A bound listening socket of a [`Server`] (from [`Server::bind`]).
///
/// Its address is known as soon as it is bound, so a test can bind port 0,
/// read [`local_addr`](Self::local_addr), and spawn [`run`](Self::run):
///
/// ```
/// use webwire_server::{MessageRouter, Server};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let server = Server::builder(MessageRouter::new()).build()?;
/// let listener = server.bind("127.0.0.1:0").await?;
/// let addr = listener.local_addr();
/// assert_ne!(addr.port(), 0);
/// let running = tokio::spawn(listener.run());
/// // ... connect to ws://{addr}/ ...
/// server.shutdown().await;
/// running.await??;
/// # Ok(())
/// # }
/// ```
pub struct Listener {
    server: Server,
    tcp: TcpListener,
    pub(crate) tls: Option<TlsConfig>,
    local_addr: SocketAddr,
}

impl Listener {
    pub(crate) fn new(
        server: Server,
        tcp: TcpListener,
        tls: Option<TlsConfig>,
    ) -> Result<Self, ServerError> {
        let local_addr = tcp.local_addr()?;
        Ok(Self {
            server,
            tcp,
            tls,
            local_addr,
        })
    }

    /// The address the socket is bound to (with the real port when port 0
    /// was asked for).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The server this listener serves.
    pub fn server(&self) -> &Server {
        &self.server
    }

    /// Accepts connections until the server has shut down
    /// ([`Server::shutdown`], called from any clone), then closes the socket.
    pub async fn run(self) -> Result<(), ServerError> {
        let shared = self.server.shared.clone();
        shared.track_listener(self.accept_loop()).await
    }

    /// Like [`run`](Self::run), and shuts the server down gracefully when
    /// `signal` completes (for example `tokio::signal::ctrl_c()`).
    pub async fn run_until<F: Future>(self, signal: F) -> Result<(), ServerError> {
        let server = self.server.clone();
        let run = self.run();
        tokio::pin!(run);
        tokio::select! {
            result = &mut run => return result,
            _ = signal => {}
        }
        let ((), result) = tokio::join!(server.shutdown(), run);
        result
    }

    async fn accept_loop(self) -> Result<(), ServerError> {
        let shared = self.server.shared.clone();
        let http = TaskTracker::new();
        loop {
            let accepted = tokio::select! {
                biased;
                () = shared.stopped() => break,
                accepted = self.tcp.accept() => accepted,
            };
            let (stream, addr) = match accepted {
                Ok(accepted) => accepted,
                Err(err) => {
                    // Out of file descriptors and the like: wait a little
                    // instead of spinning; the server keeps running.
                    tracing::warn!(error = %err, "accepting a connection failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            let _ = stream.set_nodelay(true);
            http.spawn(serve_tcp(shared.clone(), stream, addr, self.tls.clone()));
        }
        drop(self.tcp);
        http.close();
        let _ = tokio::time::timeout(shared.config().close_timeout, http.wait()).await;
        Ok(())
    }
}

impl fmt::Debug for Listener {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Listener")
            .field("local_addr", &self.local_addr)
            .field("tls", &self.tls.is_some())
            .finish()
    }
}

async fn serve_tcp(
    shared: Arc<Shared>,
    stream: TcpStream,
    addr: SocketAddr,
    tls: Option<TlsConfig>,
) {
    match tls {
        None => serve_http(shared, stream, addr).await,
        Some(tls) => {
            match tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, tls.acceptor.accept(stream)).await {
                Ok(Ok(stream)) => serve_http(shared, stream, addr).await,
                Ok(Err(err)) => {
                    tracing::debug!(remote = %addr, error = %err, "TLS handshake failed")
                }
                Err(_) => tracing::debug!(remote = %addr, "TLS handshake timed out"),
            }
        }
    }
}

/// Serves HTTP/1 on one stream until it upgrades or closes; on shutdown,
/// an idle keep-alive connection is closed.
pub(crate) async fn serve_http<I>(shared: Arc<Shared>, io: I, addr: SocketAddr)
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let service_shared = shared.clone();
    let service = hyper::service::service_fn(move |mut request| {
        if let Some(answer) = upgrade::health_check(&service_shared, &request) {
            return ready(Ok::<_, Infallible>(answer));
        }
        request.extensions_mut().insert(RemoteAddr(addr));
        ready(Ok::<_, Infallible>(upgrade::handle(
            &service_shared,
            request,
        )))
    });
    // A connection made during a shutdown gets its one answer (503 for an
    // upgrade) and is closed.
    let shutting_down = shared.shutdown_started();
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_TIMEOUT)
        // A head that does not fit is answered with 431 by hyper before
        // it is read whole (hyper's default buffer is 400 KiB); one that
        // fits but is above the limit, by `upgrade::handle`.
        .max_buf_size(shared.config().max_header_bytes.max(HYPER_MIN_BUF_SIZE))
        .keep_alive(!shutting_down);
    let conn = builder
        .serve_connection(TokioIo::new(io), service)
        .with_upgrades();
    tokio::pin!(conn);
    let result = if shutting_down {
        conn.await
    } else {
        tokio::select! {
            result = conn.as_mut() => result,
            () = shared.shutdown_signal() => {
                conn.as_mut().graceful_shutdown();
                conn.await
            }
        }
    };
    if let Err(err) = result
        && !is_disconnect(&err)
    {
        tracing::debug!(remote = %addr, error = %err, "HTTP connection failed");
    }
}

fn is_disconnect(err: &hyper::Error) -> bool {
    err.is_incomplete_message()
        || std::error::Error::source(err)
            .and_then(|source| source.downcast_ref::<io::Error>())
            .is_some_and(|err| {
                matches!(
                    err.kind(),
                    io::ErrorKind::ConnectionReset | io::ErrorKind::BrokenPipe
                )
            })
}
