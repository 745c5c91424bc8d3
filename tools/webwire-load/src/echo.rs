//! The raw WebSocket echo server: the baseline a webwire server is measured
//! against, on the same WebSocket library (tokio-websockets) and written to
//! be as fast as this transport allows.
//!
//! Per connection there is one task, and it is the only reader and the only
//! writer. It waits for a message, then takes every further message that has
//! already arrived (up to [`MAX_BATCH`]), queues them all and flushes once:
//! many replies leave in one vectored write. No channel, no second task, no
//! lock: an echo has nothing to wait for between reading and writing. When
//! the client does not read, the flush waits and the task stops reading:
//! TCP's own backpressure.
//!
//! Sizes are chosen, not defaulted:
//! - largest message [`MAX_PAYLOAD`] (1 MiB, the interop server's message
//!   buffer size);
//! - frame size = largest message, so that an echo is never split into
//!   fragments (which the receiving side would have to copy back together);
//! - flush threshold [`FLUSH_THRESHOLD`]: within a batch, write once this
//!   much is queued; every batch ends with a flush anyway;
//! - buffers are allocated when used: the batch vector starts empty and
//!   grows with the largest batch seen; received payloads are slices of the
//!   read buffer and are sent back without a copy. (The library's read
//!   buffer, 8 KiB to start with, has no setting.)

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use futures_util::{FutureExt, SinkExt, StreamExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_websockets::{Config, Limits, Message, ServerBuilder};

/// The largest message the echo server accepts (1 MiB).
pub(crate) const MAX_PAYLOAD: usize = 1 << 20;
/// Queued bytes that make the server write before the batch is complete.
pub(crate) const FLUSH_THRESHOLD: usize = 64 << 10;
/// The most messages taken before they are echoed.
pub(crate) const MAX_BATCH: usize = 256;
/// How long a client may take for its HTTP upgrade.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Pause after a failed accept (out of file descriptors, ...).
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);

/// A raw WebSocket echo server: every binary or text message comes back
/// unchanged, nothing else is sent.
///
/// ```
/// # tokio::runtime::Runtime::new()?.block_on(async {
/// let server = webwire_load::EchoServer::bind("127.0.0.1:0".parse()?).await?;
/// println!("listening on ws://{}/", server.local_addr()?);
/// tokio::spawn(server.run());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// # })?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct EchoServer {
    listener: TcpListener,
}

impl EchoServer {
    /// Listens on `addr` (port 0: a free port).
    pub async fn bind(addr: SocketAddr) -> io::Result<Self> {
        Ok(Self {
            listener: TcpListener::bind(addr).await?,
        })
    }

    /// The address it listens on.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Serves until the task is dropped.
    pub async fn run(self) {
        self.run_until(std::future::pending()).await;
    }

    /// Serves until `shutdown` completes; connections still open then are
    /// dropped.
    pub async fn run_until(self, shutdown: impl Future<Output = ()>) {
        let builder = Arc::new(
            ServerBuilder::new()
                .config(
                    Config::default()
                        .frame_size(MAX_PAYLOAD)
                        .flush_threshold(FLUSH_THRESHOLD),
                )
                .limits(Limits::default().max_payload_len(Some(MAX_PAYLOAD))),
        );
        let mut connections = tokio::task::JoinSet::new();
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                () = &mut shutdown => break,
                accepted = self.listener.accept() => match accepted {
                    Ok((tcp, _peer)) => {
                        connections.spawn(echo(tcp, Arc::clone(&builder)));
                    }
                    Err(e) => {
                        tracing::warn!("accept failed: {e}");
                        tokio::time::sleep(ACCEPT_BACKOFF).await;
                    }
                },
                // Reap finished connections so the set does not grow.
                Some(_) = connections.join_next(), if !connections.is_empty() => {}
            }
        }
    }
}

/// One connection: read what is there, echo it all, flush once.
async fn echo(tcp: TcpStream, builder: Arc<ServerBuilder>) {
    // Replies are flushed per batch; Nagle's algorithm would only delay them.
    if let Err(e) = tcp.set_nodelay(true) {
        tracing::debug!("set_nodelay: {e}");
    }
    let mut ws = match tokio::time::timeout(HANDSHAKE_TIMEOUT, builder.accept(tcp)).await {
        Ok(Ok((_request, ws))) => ws,
        Ok(Err(e)) => return tracing::debug!("handshake failed: {e}"),
        Err(_elapsed) => return tracing::debug!("handshake timed out"),
    };
    let mut batch: Vec<Message> = Vec::new();
    loop {
        match ws.next().await {
            Some(Ok(message)) => take(message, &mut batch),
            // Protocol errors: the library has queued a close and ends the
            // stream on the next read.
            Some(Err(e)) => {
                tracing::debug!("WebSocket error: {e}");
                continue;
            }
            None => return,
        }
        // Everything already received joins the batch. Nothing is queued
        // for writing yet, so these reads do not write either.
        while batch.len() < MAX_BATCH {
            match ws.next().now_or_never() {
                Some(Some(Ok(message))) => take(message, &mut batch),
                _ => break,
            }
        }
        for message in batch.drain(..) {
            if ws.feed(message).await.is_err() {
                return;
            }
        }
        if ws.flush().await.is_err() {
            return;
        }
    }
}

/// Keeps data messages for the echo; pings, pongs and closes are answered by
/// the library.
fn take(message: Message, batch: &mut Vec<Message>) {
    if message.is_binary() || message.is_text() {
        batch.push(message);
    }
}
