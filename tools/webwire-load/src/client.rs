//! Opening one WebSocket connection to the server under test.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;
use http::Uri;
use tokio::net::TcpStream;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio_websockets::{ClientBuilder, Config, Limits, WebSocketStream};
use webwire_proto::{AcceptConf, ServerMessage, PROTOCOL_MAJOR};

use crate::LoadError;

/// A client connection.
pub(crate) type Ws = WebSocketStream<TcpStream>;

/// Our own messages are never split into fragments below this size (a
/// fragmented message costs the receiver a copy to reassemble it).
const FRAME_SIZE: usize = 64 << 20;
/// Within one batch of messages, write once this much is queued (the batch
/// ends with a flush in any case).
const FLUSH_THRESHOLD: usize = 64 << 10;
/// The largest message accepted before the server's AcceptConf says
/// otherwise (the WebSocket library's default).
const MAX_PAYLOAD: usize = 64 << 20;

/// The server: its URL, resolved once for all connections.
#[derive(Debug, Clone)]
pub(crate) struct Target {
    uri: Uri,
    addr: SocketAddr,
}

/// What to expect when a connection opens.
#[derive(Debug, Clone, Copy)]
pub(crate) struct OpenOptions {
    /// No AcceptConf is coming (a raw echo server).
    pub(crate) raw_echo: bool,
    /// How long to wait for the AcceptConf.
    pub(crate) accept_timeout: Duration,
}

impl Target {
    /// Parses a `ws://` URL and resolves its host.
    pub(crate) async fn resolve(url: &str) -> Result<Self, LoadError> {
        let bad = |reason: &str| LoadError::Url {
            url: url.to_owned(),
            reason: reason.to_owned(),
        };
        let uri: Uri = url
            .parse()
            .map_err(|e: http::uri::InvalidUri| bad(&e.to_string()))?;
        match uri.scheme_str() {
            Some("ws") => {}
            Some("wss") => {
                return Err(bad(
                    "wss:// is not supported: the load generator measures plain WebSocket",
                ))
            }
            _ => return Err(bad("the URL must start with ws://")),
        }
        let host = uri
            .host()
            .ok_or_else(|| bad("no host"))?
            .trim_start_matches('[')
            .trim_end_matches(']');
        let port = uri.port_u16().unwrap_or(80);
        let addr = tokio::net::lookup_host((host, port))
            .await
            .map_err(|source| LoadError::Resolve {
                host: format!("{host}:{port}"),
                source,
            })?
            .next()
            .ok_or_else(|| LoadError::Resolve {
                host: format!("{host}:{port}"),
                source: std::io::ErrorKind::NotFound.into(),
            })?;
        Ok(Self { uri, addr })
    }

    /// Opens connection number `index` and reads the server's AcceptConf
    /// (none with `raw_echo`).
    pub(crate) async fn open(
        &self,
        index: usize,
        options: OpenOptions,
    ) -> Result<(Ws, Option<AcceptConf>), LoadError> {
        let connect_error = |source| LoadError::Connect {
            index,
            addr: self.addr,
            source,
        };
        let tcp = TcpStream::connect(self.addr)
            .await
            .map_err(|e| connect_error(tokio_websockets::Error::Io(e)))?;
        // Each batch is flushed explicitly; Nagle's algorithm would only
        // delay it.
        tcp.set_nodelay(true)
            .map_err(|e| connect_error(tokio_websockets::Error::Io(e)))?;
        let (mut ws, _response) = ClientBuilder::from_uri(self.uri.clone())
            .config(
                Config::default()
                    .frame_size(FRAME_SIZE)
                    .flush_threshold(FLUSH_THRESHOLD),
            )
            .limits(Limits::default().max_payload_len(Some(MAX_PAYLOAD)))
            .connect_on(tcp)
            .await
            .map_err(connect_error)?;
        if options.raw_echo {
            return Ok((ws, None));
        }
        let conf = self
            .read_accept_conf(&mut ws, options.accept_timeout)
            .await?;
        ws.limits_mut()
            .set_max_payload_len(Some(conf.buffer_size as usize));
        Ok((ws, Some(conf)))
    }

    async fn read_accept_conf(
        &self,
        ws: &mut Ws,
        timeout: Duration,
    ) -> Result<AcceptConf, LoadError> {
        let bad = |reason: String| LoadError::BadAcceptConf {
            addr: self.addr,
            reason,
        };
        let first = async {
            loop {
                match ws.next().await {
                    Some(Ok(m)) if m.is_ping() || m.is_pong() => continue,
                    other => return other,
                }
            }
        };
        let message = match tokio::time::timeout(timeout, first).await {
            Err(_elapsed) => {
                return Err(LoadError::NoAcceptConf {
                    addr: self.addr,
                    timeout,
                })
            }
            Ok(None) => return Err(bad("the connection closed first".into())),
            Ok(Some(Err(e))) => return Err(bad(e.to_string())),
            Ok(Some(Ok(m))) if !m.is_binary() => {
                return Err(bad("the first message is not a binary message".into()))
            }
            Ok(Some(Ok(m))) => m,
        };
        match ServerMessage::parse(Bytes::from(message.into_payload())) {
            Ok(ServerMessage::AcceptConf(conf)) if conf.major == PROTOCOL_MAJOR => Ok(conf),
            Ok(ServerMessage::AcceptConf(conf)) => Err(bad(format!(
                "protocol version {}.{}, expected {PROTOCOL_MAJOR}.x",
                conf.major, conf.minor
            ))),
            Ok(other) => Err(bad(format!(
                "the first message is a {}",
                other.message_type()
            ))),
            Err(e) => Err(bad(e.to_string())),
        }
    }

    /// Opens `n` connections, at most `concurrency` handshakes at once, in
    /// index order. Fails if any fails.
    pub(crate) async fn open_many(
        &self,
        n: usize,
        concurrency: usize,
        options: OpenOptions,
    ) -> Result<Vec<(Ws, Option<AcceptConf>)>, LoadError> {
        let permits = Arc::new(Semaphore::new(concurrency));
        let mut tasks = JoinSet::new();
        for index in 0..n {
            let target = self.clone();
            let permits = Arc::clone(&permits);
            tasks.spawn(async move {
                let _permit = permits.acquire_owned().await;
                (index, target.open(index, options).await)
            });
        }
        let mut opened: Vec<Option<(Ws, Option<AcceptConf>)>> = (0..n).map(|_| None).collect();
        while let Some(joined) = tasks.join_next().await {
            match joined {
                Ok((index, result)) => opened[index] = Some(result?),
                Err(join_error) => std::panic::resume_unwind(join_error.into_panic()),
            }
        }
        Ok(opened.into_iter().flatten().collect())
    }
}
