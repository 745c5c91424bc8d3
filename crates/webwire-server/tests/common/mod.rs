//! Shared fixture of the end-to-end tests: start a server on 127.0.0.1
//! port 0, and a minimal client speaking raw webwire frames over a real
//! WebSocket (tokio-websockets client + webwire-proto).
#![allow(dead_code, unreachable_pub)]

use std::collections::VecDeque;
use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use http::{HeaderName, HeaderValue};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio::task::JoinHandle;
use tokio_websockets::{ClientBuilder, Config, Limits, Message, WebSocketStream};
use webwire_proto::{
    AcceptConf, ClientMessage, Name, Payload, Request, RequestId, ServerMessage, Signal,
};
use webwire_server::{Handler, Server, ServerBuilder, ServerError};

/// The longest any single wait in a test may take.
pub const WAIT: Duration = Duration::from_secs(10);

/// Awaits `future`, failing the test after [`WAIT`].
pub async fn within<F: Future>(what: &str, future: F) -> F::Output {
    match tokio::time::timeout(WAIT, future).await {
        Ok(out) => out,
        Err(_) => panic!("timed out: {what}"),
    }
}

/// Polls `check` until it holds, failing the test after [`WAIT`].
pub async fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    within(what, async {
        while !check() {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await;
}

/// Prints the server's logs when `RUST_LOG` asks for them.
pub fn init_logs() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
}

/// A standalone server running on 127.0.0.1 with a free port.
pub struct TestServer {
    pub server: Server,
    pub addr: SocketAddr,
    run: JoinHandle<Result<(), ServerError>>,
}

impl TestServer {
    pub async fn start<H: Handler>(builder: ServerBuilder<H>) -> Self {
        init_logs();
        let server = builder.build().expect("valid options");
        let listener = server.bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr();
        let run = tokio::spawn(listener.run());
        Self { server, addr, run }
    }

    pub fn url(&self) -> String {
        format!("ws://{}/", self.addr)
    }

    pub async fn connect(&self) -> TestClient {
        TestClient::connect(self.addr).await
    }

    /// Shuts down gracefully and waits for the listener to stop.
    pub async fn stop(self) {
        within("shutdown", self.server.shutdown()).await;
        within("listener stop", self.run)
            .await
            .expect("listener task")
            .expect("listener result");
    }
}

pub trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// A minimal webwire client over raw frames.
pub struct TestClient {
    ws: WebSocketStream<Box<dyn Io>>,
    pub conf: AcceptConf,
    next_id: u64,
    pending: VecDeque<ServerMessage>,
}

/// How the test client connects.
#[derive(Default)]
pub struct ClientOptions {
    pub path: String,
    pub headers: Vec<(HeaderName, String)>,
    /// Outgoing messages are split into frames of this size.
    pub frame_size: Option<usize>,
}

impl TestClient {
    pub async fn connect(addr: SocketAddr) -> Self {
        within("connect", Self::try_connect(addr, ClientOptions::default()))
            .await
            .expect("connect")
    }

    pub async fn try_connect(
        addr: SocketAddr,
        options: ClientOptions,
    ) -> Result<Self, tokio_websockets::Error> {
        let tcp = TcpStream::connect(addr).await?;
        tcp.set_nodelay(true)?;
        let host = addr.to_string();
        Self::try_connect_on(Box::new(tcp), &host, "ws", options).await
    }

    /// A connection to `server` over an in-memory pipe (no socket; under
    /// paused time its timeouts run in virtual time).
    pub async fn in_memory(server: &Server) -> Self {
        Self::in_memory_with(server, webwire_server::DEFAULT_PIPE_CAPACITY).await
    }

    /// Like [`in_memory`](Self::in_memory), with a pipe that holds
    /// `capacity` bytes each way.
    pub async fn in_memory_with(server: &Server, capacity: usize) -> Self {
        let remote = SocketAddr::from(([127, 0, 0, 1], 0));
        let pipe = server.connect_in_memory_with(remote, capacity);
        within(
            "connect in memory",
            Self::try_connect_on(Box::new(pipe), "localhost", "ws", ClientOptions::default()),
        )
        .await
        .expect("connect in memory")
    }

    /// The upgrade and the accept configuration over an established stream
    /// (plain TCP or TLS).
    pub async fn try_connect_on(
        stream: Box<dyn Io>,
        host: &str,
        scheme: &str,
        options: ClientOptions,
    ) -> Result<Self, tokio_websockets::Error> {
        let path = if options.path.is_empty() {
            "/"
        } else {
            &options.path
        };
        let mut builder = ClientBuilder::new()
            .uri(&format!("{scheme}://{host}{path}"))
            .expect("uri")
            .limits(Limits::unlimited());
        if let Some(frame_size) = options.frame_size {
            builder = builder.config(Config::default().frame_size(frame_size));
        }
        for (name, value) in options.headers {
            builder = builder.add_header(name, HeaderValue::from_str(&value).expect("header"))?;
        }
        let (ws, _response) = builder.connect_on(stream).await?;
        let mut client = Self {
            ws,
            conf: AcceptConf::new(Duration::ZERO, 0, ""),
            next_id: 0,
            pending: VecDeque::new(),
        };
        match client.recv().await {
            ServerMessage::AcceptConf(conf) => client.conf = conf,
            other => panic!("expected the accept configuration first, got {other:?}"),
        }
        Ok(client)
    }

    /// Sends one binary WebSocket message.
    pub async fn send_raw(&mut self, bytes: impl Into<Bytes>) {
        within("send", self.ws.send(Message::binary(bytes.into())))
            .await
            .expect("send");
    }

    /// Sends any WebSocket message.
    pub async fn send_ws(&mut self, message: Message) {
        within("send", self.ws.send(message)).await.expect("send");
    }

    /// Sends several WebSocket messages in one write (they arrive together).
    pub async fn send_together(&mut self, messages: Vec<Message>) {
        for message in messages {
            within("feed", self.ws.feed(message)).await.expect("feed");
        }
        within("flush", self.ws.flush()).await.expect("flush");
    }

    pub async fn send(&mut self, message: ClientMessage) {
        self.send_raw(message.to_bytes()).await;
    }

    pub fn next_id(&mut self) -> RequestId {
        self.next_id += 1;
        RequestId::from(self.next_id)
    }

    /// Sends a request, returns its id.
    pub async fn send_request(&mut self, name: &str, payload: Payload) -> RequestId {
        let id = self.next_id();
        let name = Name::try_from(name).expect("name");
        let request = Request::new(id, name, payload).expect("request");
        self.send(ClientMessage::Request(request)).await;
        id
    }

    /// Sends a request and waits for its reply (other messages are kept
    /// for [`recv`](Self::recv)).
    pub async fn request(&mut self, name: &str, payload: Payload) -> ServerMessage {
        let id = self.send_request(name, payload).await;
        self.reply_to(id).await
    }

    /// Waits for the reply to `id`.
    pub async fn reply_to(&mut self, id: RequestId) -> ServerMessage {
        if let Some(at) = self.pending.iter().position(|m| m.request_id() == Some(id)) {
            return self.pending.remove(at).expect("present");
        }
        loop {
            let message = self.read().await;
            if message.request_id() == Some(id) {
                return message;
            }
            self.pending.push_back(message);
        }
    }

    pub async fn signal(&mut self, name: &str, payload: Payload) {
        let signal = Signal::new(Name::try_from(name).expect("name"), payload).expect("signal");
        self.send(ClientMessage::Signal(signal)).await;
    }

    /// The next webwire message from the server.
    pub async fn recv(&mut self) -> ServerMessage {
        match self.pending.pop_front() {
            Some(message) => message,
            None => self.read().await,
        }
    }

    async fn read(&mut self) -> ServerMessage {
        loop {
            let message = within("a message from the server", self.ws.next())
                .await
                .expect("connection open")
                .expect("no WebSocket error");
            if message.is_binary() {
                let data = Bytes::from(message.into_payload());
                return ServerMessage::parse(data).expect("a valid server message");
            }
            assert!(
                !message.is_close(),
                "connection closed: {:?}",
                message.as_close()
            );
        }
    }

    /// The messages read and kept while waiting for something else.
    pub fn take_pending(&mut self) -> Vec<ServerMessage> {
        self.pending.drain(..).collect()
    }

    /// The next binary WebSocket message's bytes (no pending messages).
    pub async fn recv_raw(&mut self) -> Bytes {
        assert!(self.pending.is_empty(), "messages pending");
        loop {
            let message = within("a message from the server", self.ws.next())
                .await
                .expect("connection open")
                .expect("no WebSocket error");
            if message.is_binary() {
                return Bytes::from(message.into_payload());
            }
        }
    }

    /// The next WebSocket message, whatever it is (`None` at the end).
    pub async fn recv_ws(&mut self) -> Option<Result<Message, tokio_websockets::Error>> {
        within("a WebSocket message", self.ws.next()).await
    }

    /// Reads until the server closes; returns its close code (`None` when
    /// the connection ended without a close frame). Webwire messages read
    /// meanwhile are kept for [`recv`](Self::recv).
    pub async fn closed(&mut self) -> Option<u16> {
        loop {
            match within("the server to close", self.ws.next()).await {
                Some(Ok(message)) if message.is_close() => {
                    let code = message.as_close().map(|(code, _)| code.into());
                    // Polling on sends the close reply and ends the stream.
                    while let Some(Ok(_)) = within("the close handshake", self.ws.next()).await {}
                    return code;
                }
                Some(Ok(message)) if message.is_binary() => {
                    let data = Bytes::from(message.into_payload());
                    self.pending
                        .push_back(ServerMessage::parse(data).expect("a valid server message"));
                }
                Some(Ok(_)) => {}
                Some(Err(_)) | None => return None,
            }
        }
    }

    /// Closes from the client side.
    pub async fn close(mut self) {
        let _ = within("close", self.ws.close()).await;
    }
}

/// The text of a UTF-8 or binary reply; panics on anything else.
pub fn reply_text(message: &ServerMessage) -> String {
    match message {
        ServerMessage::Reply(reply) => reply.payload.to_text().expect("text").into_owned(),
        other => panic!("expected a reply, got {other:?}"),
    }
}
