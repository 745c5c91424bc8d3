//! A scripted webwire server for wire-level client tests: each test accepts
//! connections and plays the server's side message by message, with
//! tokio-websockets and webwire-proto.
#![allow(dead_code, unreachable_pub, missing_docs)]

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_websockets::{CloseCode, Message, WebSocketStream};
use webwire_proto::{AcceptConf, ClientMessage, Payload, Reply, RequestId, ServerMessage};

/// How long a test waits for anything before it fails.
pub const PATIENCE: Duration = Duration::from_secs(10);

pub trait Io: AsyncRead + AsyncWrite + Send + Unpin {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin> Io for T {}

/// Listens on 127.0.0.1:0 and hands over each upgraded connection.
pub struct Peer {
    pub url: String,
    pub port: u16,
    conns: mpsc::Receiver<PeerConn>,
}

impl Peer {
    pub async fn start() -> Self {
        Self::start_with(None).await
    }

    pub async fn start_tls(tls: Arc<rustls::ServerConfig>) -> Self {
        Self::start_with(Some(tls)).await
    }

    async fn start_with(tls: Option<Arc<rustls::ServerConfig>>) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let scheme = if tls.is_some() { "wss" } else { "ws" };
        let (tx, conns) = mpsc::channel(16);
        tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    return;
                };
                let tls = tls.clone();
                let tx = tx.clone();
                tokio::spawn(async move {
                    let io: Box<dyn Io> = match tls {
                        Some(config) => {
                            match tokio_rustls::TlsAcceptor::from(config).accept(tcp).await {
                                Ok(stream) => Box::new(stream),
                                Err(_) => return,
                            }
                        }
                        None => Box::new(tcp),
                    };
                    let Ok((_request, ws)) =
                        tokio_websockets::ServerBuilder::new().accept(io).await
                    else {
                        return;
                    };
                    let _ = tx.send(PeerConn { ws }).await;
                });
            }
        });
        Self {
            url: format!("{scheme}://127.0.0.1:{port}/"),
            port,
            conns,
        }
    }

    /// The next upgraded connection.
    pub async fn accept(&mut self) -> PeerConn {
        tokio::time::timeout(PATIENCE, self.conns.recv())
            .await
            .expect("no connection in time")
            .expect("listener gone")
    }

    /// Connects a client with [`builder`]'s options and accepts it with
    /// [`default_conf`].
    pub async fn connect_default(&mut self) -> (webwire_client::Client, PeerConn) {
        let url = self.url.clone();
        let (client, conn) =
            tokio::join!(builder(&url).connect(), self.accept_with(default_conf()));
        (client.unwrap(), conn)
    }

    /// The next connection, after sending it `conf`.
    pub async fn accept_with(&mut self, conf: AcceptConf) -> PeerConn {
        let mut conn = self.accept().await;
        conn.send(ServerMessage::AcceptConf(conf)).await;
        conn
    }
}

/// Read timeout 60 s, buffer 8192, no sub-protocol.
pub fn default_conf() -> AcceptConf {
    AcceptConf::new(Duration::from_secs(60), 8192, "")
}

/// What the peer read.
#[derive(Debug)]
pub enum Read {
    Message(ClientMessage),
    Close(Option<u16>),
    End,
}

pub struct PeerConn {
    ws: WebSocketStream<Box<dyn Io>>,
}

impl PeerConn {
    pub async fn send(&mut self, message: ServerMessage) {
        self.send_raw(message.to_bytes()).await;
    }

    pub async fn send_raw(&mut self, bytes: Bytes) {
        self.ws.send(Message::binary(bytes)).await.unwrap();
    }

    pub async fn send_text(&mut self, text: &str) {
        self.ws.send(Message::text(text.to_owned())).await.unwrap();
    }

    /// Sends a reply with `payload` to `id`.
    pub async fn reply(&mut self, id: RequestId, payload: Payload) {
        self.send(ServerMessage::Reply(Reply::new(id, payload)))
            .await;
    }

    /// The next thing the client sent, within `within`; `None` on timeout.
    pub async fn read_within(&mut self, within: Duration) -> Option<Read> {
        tokio::time::timeout(within, async {
            loop {
                match self.ws.next().await {
                    None | Some(Err(_)) => return Read::End,
                    Some(Ok(message)) if message.is_close() => {
                        return Read::Close(message.as_close().map(|(code, _)| u16::from(code)));
                    }
                    Some(Ok(message)) if message.is_binary() => {
                        let frame = Bytes::from(message.into_payload());
                        let parsed = ClientMessage::parse(frame.clone())
                            .unwrap_or_else(|err| panic!("client sent malformed {frame:?}: {err}"));
                        return Read::Message(parsed);
                    }
                    Some(Ok(message)) if message.is_text() => panic!("client sent a text message"),
                    Some(Ok(_)) => continue,
                }
            }
        })
        .await
        .ok()
    }

    /// The next thing the client sent.
    pub async fn read(&mut self) -> Read {
        self.read_within(PATIENCE)
            .await
            .expect("client sent nothing in time")
    }

    /// The next message the client sent (panics on close or end).
    pub async fn recv(&mut self) -> ClientMessage {
        match self.read().await {
            Read::Message(message) => message,
            other => panic!("expected a message, got {other:?}"),
        }
    }

    /// The next message, which must be a request: (id, name, payload).
    pub async fn recv_request(&mut self) -> (RequestId, String, Payload) {
        match self.recv().await {
            ClientMessage::Request(request) => {
                let (id, name, payload) = request.into_parts();
                (id, name.as_str().to_owned(), payload)
            }
            other => panic!("expected a request, got {other:?}"),
        }
    }

    /// Sends pings (of the largest size a control frame may have) and
    /// reads nothing, until `max` bytes are sent or the client has taken
    /// nothing for `stall`; the bytes sent.
    pub async fn flood_pings(&mut self, max: usize, stall: Duration) -> usize {
        let ping = Message::ping(Bytes::from_static(&[b'p'; 125]));
        let mut sent = 0;
        while sent < max {
            match tokio::time::timeout(stall, self.ws.feed(ping.clone())).await {
                Ok(Ok(())) => sent += 2 + 125,
                Ok(Err(_)) | Err(_) => break,
            }
        }
        sent
    }

    /// Closes the WebSocket with `code`.
    pub async fn close(&mut self, code: CloseCode) {
        let _ = self.ws.send(Message::close(Some(code), "")).await;
    }
}

/// A scripted server reached over in-memory pipes through
/// `ClientBuilder::transport`: no socket, so tests may run in paused time.
pub struct MemoryPeer {
    conns: mpsc::UnboundedReceiver<PeerConn>,
}

impl MemoryPeer {
    /// The peer, and a client builder ([`builder`]'s options) whose every
    /// connection reaches it.
    pub fn start() -> (webwire_client::ClientBuilder, Self) {
        let (tx, conns) = mpsc::unbounded_channel();
        let client = builder("ws://localhost/").transport(move || {
            let (client, server) = tokio::io::duplex(64 * 1024);
            let tx = tx.clone();
            tokio::spawn(async move {
                let io: Box<dyn Io> = Box::new(server);
                if let Ok((_request, ws)) = tokio_websockets::ServerBuilder::new().accept(io).await
                {
                    let _ = tx.send(PeerConn { ws });
                }
            });
            async move { Ok(client) }
        });
        (client, Self { conns })
    }

    /// The next upgraded connection.
    pub async fn accept(&mut self) -> PeerConn {
        tokio::time::timeout(PATIENCE, self.conns.recv())
            .await
            .expect("no connection in time")
            .expect("transport gone")
    }

    /// The next connection, after sending it `conf`.
    pub async fn accept_with(&mut self, conf: AcceptConf) -> PeerConn {
        let mut conn = self.accept().await;
        conn.send(ServerMessage::AcceptConf(conf)).await;
        conn
    }
}

/// A client options builder with short timeouts for tests.
pub fn builder(url: &str) -> webwire_client::ClientBuilder {
    webwire_client::Client::builder(url)
        .dial_timeout(Duration::from_secs(5))
        .request_timeout(Duration::from_secs(10))
        .reconnect_interval(Duration::from_millis(50))
        .max_reconnect_interval(Duration::from_millis(200))
}

/// Waits for the next event matching `pred`, skipping others.
pub async fn wait_event(
    events: &mut webwire_client::Events,
    mut pred: impl FnMut(&webwire_client::ClientEvent) -> bool,
) -> webwire_client::ClientEvent {
    tokio::time::timeout(PATIENCE, async {
        loop {
            let event = events.recv().await.expect("events ended");
            if pred(&event) {
                return event;
            }
        }
    })
    .await
    .expect("event did not come in time")
}

/// Polls `cond` every 10 ms until it holds.
pub async fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while !cond() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// A session JSON as servers send it.
pub fn session_json(key: &str, info: &str) -> Bytes {
    Bytes::from(format!(
        r#"{{"k":"{key}","c":"2026-01-02T03:04:05.123456789Z","l":"2026-01-02T03:04:05.123456789Z","i":{info}}}"#
    ))
}

/// A CA made in the test and a certificate for 127.0.0.1 signed by it.
pub struct TestCerts {
    /// The CA's certificate.
    pub ca: rcgen::Certificate,
    /// The certificate for 127.0.0.1.
    pub leaf: rcgen::Certificate,
    /// The leaf certificate's key.
    pub leaf_key: rcgen::KeyPair,
}

/// A new CA and a certificate for 127.0.0.1 signed by it.
pub fn ca_and_leaf() -> TestCerts {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};

    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca_params, ca_key);
    let leaf_key = KeyPair::generate().unwrap();
    let leaf = CertificateParams::new(vec!["127.0.0.1".to_owned()])
        .unwrap()
        .signed_by(&leaf_key, &issuer)
        .unwrap();
    TestCerts { ca, leaf, leaf_key }
}
