//! A bare WebSocket connection to the server, without the webwire client:
//! for what the client never does on purpose (stay silent without
//! heartbeats, send the `Origin` header of another site).

use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use http::header::{HeaderValue, ORIGIN};
use tokio::net::TcpStream;
use tokio_websockets::{MaybeTlsStream, WebSocketStream};
use webwire_proto::{AcceptConf, ServerMessage};

use super::support::{Context, Failure, REQUEST_TIMEOUT};

/// An upgraded connection that has received the server's AcceptConf.
pub(crate) struct Raw {
    ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
    /// The accept configuration the server sent first.
    pub(crate) conf: AcceptConf,
    /// When the AcceptConf arrived: the server's read timeout runs from
    /// about then, since the client has sent nothing since the upgrade.
    pub(crate) since: Instant,
}

/// How a silent connection ended.
#[derive(Debug)]
pub(crate) enum Ended {
    /// The server closed it (close frame, end of stream or reset) after this long.
    Closed(Duration),
    /// Still open at the deadline.
    Open,
    /// The server sent a message although the client never asked.
    Message(String),
}

impl Raw {
    /// Upgrades a connection to `url`, with `origin` as the `Origin`
    /// header if given, and reads the AcceptConf (each within the request
    /// timeout).
    pub(crate) async fn connect(url: &str, origin: Option<&str>) -> Result<Self, Failure> {
        let uri: http::Uri = url.parse().context(format_args!("the URL {url}"))?;
        let mut builder = tokio_websockets::ClientBuilder::from_uri(uri);
        if let Some(origin) = origin {
            let value = HeaderValue::from_str(origin)
                .context(format_args!("the Origin header {origin:?}"))?;
            builder = builder
                .add_header(ORIGIN, value)
                .context("the Origin header")?;
        }
        let what = match origin {
            Some(origin) => format!("upgrading {url} with Origin {origin}"),
            None => format!("upgrading {url}"),
        };
        let (mut ws, _response) = tokio::time::timeout(REQUEST_TIMEOUT, builder.connect())
            .await
            .map_err(|_| Failure::new(format!("{what}: no answer within {REQUEST_TIMEOUT:?}")))?
            .context(&what)?;
        let first = tokio::time::timeout(REQUEST_TIMEOUT, ws.next())
            .await
            .map_err(|_| {
                Failure::new(format!(
                    "{what}: no AcceptConf within {REQUEST_TIMEOUT:?} after the upgrade"
                ))
            })?;
        let since = Instant::now();
        let message = match first {
            Some(Ok(message)) if message.is_binary() => message,
            Some(Ok(message)) => {
                return Err(Failure::new(format!(
                    "{what}: the first message is not a binary message ({message:?})"
                )))
            }
            Some(Err(err)) => return Err(Failure::new(format!("{what}: {err}"))),
            None => return Err(Failure::new(format!("{what}: closed before an AcceptConf"))),
        };
        match ServerMessage::parse(Bytes::from(message.into_payload())) {
            Ok(ServerMessage::AcceptConf(conf)) => Ok(Self { ws, conf, since }),
            Ok(other) => Err(Failure::new(format!(
                "{what}: the first message is {:?}, not AcceptConf",
                other.message_type()
            ))),
            Err(err) => Err(Failure::new(format!("{what}: first message: {err}"))),
        }
    }

    /// Sends nothing and waits until the server closes the connection, at
    /// most until `deadline`.
    pub(crate) async fn wait_closed(mut self, deadline: Instant) -> Ended {
        let wait = async {
            loop {
                match self.ws.next().await {
                    // The server's close frame: the stream answers it and
                    // ends with the next read.
                    Some(Ok(message)) if message.is_close() => {}
                    Some(Ok(message)) if message.is_ping() || message.is_pong() => {
                        // The protocol lets a server ping; that is no reply.
                    }
                    Some(Ok(message)) => {
                        let kind = if message.is_text() { "text" } else { "binary" };
                        let len = message.as_payload().len();
                        return Ended::Message(format!("a {kind} message of {len} bytes"));
                    }
                    Some(Err(_)) | None => return Ended::Closed(self.since.elapsed()),
                }
            }
        };
        tokio::time::timeout_at(deadline.into(), wait)
            .await
            .unwrap_or(Ended::Open)
    }

    /// Closes the connection, best effort.
    pub(crate) async fn close(mut self) {
        let _ = tokio::time::timeout(Duration::from_secs(1), self.ws.close()).await;
    }
}
