//! Opening one connection: TCP, TLS, WebSocket upgrade, then the server's
//! accept configuration, checked.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use futures_util::future::BoxFuture;
use futures_util::{FutureExt, SinkExt, StreamExt};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_websockets::{CloseCode, Limits, Message, WebSocketStream};
use webwire_proto::{AcceptConf, ServerMessage, PROTOCOL_MAJOR};

use crate::config::Config;
use crate::error::ConnectError;

/// The byte stream under the WebSocket: plain TCP or TLS over TCP.
pub(crate) trait Io: AsyncRead + AsyncWrite + Send + Unpin {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin> Io for T {}

/// A WebSocket over plain TCP or TLS.
pub(crate) type Ws = WebSocketStream<Box<dyn Io>>;

/// A custom way to open the byte stream under the WebSocket, called once
/// per connection attempt (`ClientBuilder::transport`).
#[derive(Clone)]
pub(crate) struct Transport(Arc<OpenStream>);

/// Opens one byte stream.
type OpenStream = dyn Fn() -> BoxFuture<'static, std::io::Result<Box<dyn Io>>> + Send + Sync;

impl Transport {
    // Only the `test-util` builder method makes one.
    #[cfg_attr(not(feature = "test-util"), allow(dead_code))]
    pub(crate) fn new<F, Fut, S>(open: F) -> Self
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = std::io::Result<S>> + Send + 'static,
        S: AsyncRead + AsyncWrite + Send + Unpin + 'static,
    {
        Self(Arc::new(move || {
            open()
                .map(|stream| stream.map(|stream| Box::new(stream) as Box<dyn Io>))
                .boxed()
        }))
    }

    async fn open(&self) -> std::io::Result<Box<dyn Io>> {
        (self.0)().await
    }
}

impl fmt::Debug for Transport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Transport(..)")
    }
}

/// The largest message accepted before the server's buffer size is known:
/// enough for any accept configuration with a sub-protocol name.
const MAX_ACCEPT_CONF: usize = 64 * 1024;
/// Queued bytes after which the WebSocket writes before taking more.
const FLUSH_THRESHOLD: usize = 64 * 1024;
/// The least incoming limit, whatever buffer size a server announces.
const MIN_MESSAGE_LIMIT: usize = 32;

/// An open connection whose accept configuration has been checked.
pub(crate) struct Dialed {
    pub(crate) ws: Ws,
    pub(crate) conf: AcceptConf,
}

impl std::fmt::Debug for Dialed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dialed")
            .field("conf", &self.conf)
            .finish_non_exhaustive()
    }
}

/// Opens a connection within the dial timeout.
pub(crate) async fn dial(config: &Config) -> Result<Dialed, ConnectError> {
    let timeout = config.options.dial_timeout;
    tokio::time::timeout(timeout, dial_unbounded(config))
        .await
        .map_err(|_| ConnectError::TimedOut(timeout))?
}

async fn dial_unbounded(config: &Config) -> Result<Dialed, ConnectError> {
    let target = &config.target;
    let io_error = |source: std::io::Error| ConnectError::Io {
        addr: target.addr(),
        source: source.into(),
    };
    let io: Box<dyn Io> = if let Some(transport) = &config.options.transport {
        transport.open().await.map_err(io_error)?
    } else {
        let tcp = TcpStream::connect((target.host.as_str(), target.port))
            .await
            .map_err(io_error)?;
        // Requests are small and latency matters more than packet count; the
        // writer batches frames itself.
        let _ = tcp.set_nodelay(true);
        match &config.tls {
            Some(tls) if target.secure => Box::new(tls.connect(&target.host, tcp).await?),
            _ => Box::new(tcp),
        }
    };
    // The WebSocket layer tells only the status of a refused upgrade: the
    // head is kept on the side for its Retry-After.
    let head = HeadRecorder::default();
    let io: Box<dyn Io> = Box::new(Recording {
        inner: io,
        head: head.clone(),
    });
    let mut builder = tokio_websockets::ClientBuilder::from_uri(target.uri.clone());
    for (name, value) in &config.headers {
        // Checked when the client was built.
        builder = builder
            .add_header(name.clone(), value.clone())
            .map_err(ConnectError::handshake)?;
    }
    let connected = builder
        .limits(Limits::default().max_payload_len(Some(MAX_ACCEPT_CONF)))
        // One frame per message, as the original clients send; the writer
        // flushes once per batch, this only bounds a batch's buffer.
        .config(
            tokio_websockets::Config::default()
                .frame_size(usize::MAX)
                .flush_threshold(FLUSH_THRESHOLD),
        )
        .connect_on(io)
        .await;
    head.stop();
    let (mut ws, _response) = connected.map_err(|err| match err {
        tokio_websockets::Error::Upgrade(
            tokio_websockets::upgrade::Error::DidNotSwitchProtocols(status),
        ) => ConnectError::Refused {
            status,
            retry_after: head.retry_after(),
        },
        err => ConnectError::handshake(err),
    })?;

    let conf = match read_accept_conf(&mut ws).await {
        Ok(conf) => conf,
        Err((err, code)) => {
            close_quietly(&mut ws, code).await;
            return Err(err);
        }
    };
    if let Err(err) = check(config, &conf) {
        close_quietly(&mut ws, CloseCode::PROTOCOL_ERROR).await;
        return Err(err);
    }
    // Either side's messages are at most the buffer size (docs/protocol.md 2): a
    // larger one from the server closes the connection with 1009.
    let max = usize::try_from(conf.buffer_size).unwrap_or(usize::MAX);
    ws.limits_mut()
        .set_max_payload_len(Some(max.max(MIN_MESSAGE_LIMIT)));
    tracing::debug!(
        url = %target.uri,
        read_timeout_ms = conf.read_timeout_ms,
        buffer_size = conf.buffer_size,
        "connected"
    );
    Ok(Dialed { ws, conf })
}

/// The response head of an upgrade as read, until told to stop.
#[derive(Debug, Clone, Default)]
struct HeadRecorder {
    bytes: Arc<Mutex<Vec<u8>>>,
    stopped: Arc<AtomicBool>,
}

/// What a head recorder keeps at most: a refusal's head is short.
const MAX_RECORDED_HEAD: usize = 8 * 1024;

impl HeadRecorder {
    fn record(&self, data: &[u8]) {
        if self.stopped.load(Ordering::Relaxed) {
            return;
        }
        let mut bytes = self.bytes.lock().unwrap_or_else(PoisonError::into_inner);
        let room = MAX_RECORDED_HEAD.saturating_sub(bytes.len());
        bytes.extend_from_slice(&data[..data.len().min(room)]);
    }

    /// The handshake is over: reads are no longer kept (one relaxed load
    /// per read from now on).
    fn stop(&self) {
        self.stopped.store(true, Ordering::Relaxed);
    }

    fn retry_after(&self) -> Option<Duration> {
        let bytes = self.bytes.lock().unwrap_or_else(PoisonError::into_inner);
        retry_after(&bytes)
    }
}

/// `Retry-After` in seconds from a response head (a date is not read).
fn retry_after(head: &[u8]) -> Option<Duration> {
    let end = head.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = std::str::from_utf8(&head[..end]).ok()?;
    head.split("\r\n").skip(1).find_map(|line| {
        let (name, value) = line.split_once(':')?;
        if !name.trim().eq_ignore_ascii_case("retry-after") {
            return None;
        }
        value.trim().parse::<u64>().ok().map(Duration::from_secs)
    })
}

/// A stream whose first bytes read are kept by a [`HeadRecorder`].
struct Recording {
    inner: Box<dyn Io>,
    head: HeadRecorder,
}

impl AsyncRead for Recording {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = polled {
            self.head.record(&buf.filled()[before..]);
        }
        polled
    }
}

impl AsyncWrite for Recording {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// Reads the first message, which must be the accept configuration; on
/// failure also says with which close code to close.
async fn read_accept_conf(ws: &mut Ws) -> Result<AcceptConf, (ConnectError, CloseCode)> {
    let message = loop {
        match ws.next().await {
            None => {
                return Err((
                    ConnectError::ClosedBeforeAcceptConf,
                    CloseCode::NORMAL_CLOSURE,
                ))
            }
            Some(Err(err)) => {
                return Err((ConnectError::handshake(err), CloseCode::PROTOCOL_ERROR));
            }
            Some(Ok(message)) if message.is_ping() || message.is_pong() => continue,
            Some(Ok(message)) if message.is_close() => {
                return Err((
                    ConnectError::ClosedBeforeAcceptConf,
                    CloseCode::NORMAL_CLOSURE,
                ));
            }
            Some(Ok(message)) => break message,
        }
    };
    if !message.is_binary() {
        return Err((
            ConnectError::handshake("the server sent a text message instead of its configuration"),
            CloseCode::UNSUPPORTED_DATA,
        ));
    }
    match ServerMessage::parse(Bytes::from(message.into_payload())) {
        Ok(ServerMessage::AcceptConf(conf)) => Ok(conf),
        Ok(other) => Err((
            ConnectError::UnexpectedFirstMessage(other.message_type()),
            CloseCode::PROTOCOL_ERROR,
        )),
        Err(err) => Err((ConnectError::Protocol(err), CloseCode::PROTOCOL_ERROR)),
    }
}

/// Checks the protocol version and the sub-protocol name.
fn check(config: &Config, conf: &AcceptConf) -> Result<(), ConnectError> {
    if conf.major != PROTOCOL_MAJOR {
        return Err(ConnectError::IncompatibleVersion {
            major: conf.major,
            minor: conf.minor,
        });
    }
    if let Some(expected) = &config.options.sub_protocol
        && expected.as_bytes() != conf.sub_protocol.as_ref()
    {
        return Err(ConnectError::SubProtocolMismatch {
            expected: expected.clone(),
            announced: String::from_utf8_lossy(&conf.sub_protocol).into_owned(),
        });
    }
    Ok(())
}

/// Sends a close frame, best effort: the connection is given up anyway.
async fn close_quietly(ws: &mut Ws, code: CloseCode) {
    let _ = ws.send(Message::close(Some(code), "")).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_is_read_from_the_head_in_seconds() {
        let head = b"HTTP/1.1 429 Too Many Requests\r\ncontent-type: text/plain\r\nRetry-After: 7\r\n\r\nbody";
        assert_eq!(retry_after(head), Some(Duration::from_secs(7)));
        let date = b"HTTP/1.1 503 x\r\nretry-after: Fri, 31 Dec 1999 23:59:59 GMT\r\n\r\n";
        assert_eq!(retry_after(date), None);
        assert_eq!(
            retry_after(b"HTTP/1.1 503 x\r\n"),
            None,
            "an unfinished head"
        );
    }
}
