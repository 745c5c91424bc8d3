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

/// Prints the server's logs when `RUST_LOG` asks for them, and gives them
/// to the thread's [`LogCapture`], if any.
///
/// One global subscriber for both: a capture of its own, set per thread
/// (`set_default`), can miss events when another test thread registers
/// the same log call at the same time (tracing caches which subscribers
/// want it).
pub fn init_logs() {
    use tracing_subscriber::layer::SubscriberExt as _;
    use tracing_subscriber::util::SubscriberInitExt as _;
    use tracing_subscriber::Layer as _;

    let _ = tracing_subscriber::registry()
        .with(
            tracing_subscriber::fmt::layer()
                .with_test_writer()
                .with_filter(tracing_subscriber::EnvFilter::from_default_env()),
        )
        .with(
            tracing_subscriber::fmt::layer()
                .with_ansi(false)
                .without_time()
                .with_writer(|| CaptureWriter)
                .with_filter(tracing_subscriber::filter::LevelFilter::TRACE),
        )
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
        Self::in_memory_with(server, webwire_server::in_memory::DEFAULT_PIPE_CAPACITY).await
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

thread_local! {
    /// Where the capture layer of [`init_logs`] writes on this thread.
    static CAPTURE: std::cell::RefCell<Option<LogCapture>> = const { std::cell::RefCell::new(None) };
}

/// Writes to the thread's capture, if any.
struct CaptureWriter;

impl std::io::Write for CaptureWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        CAPTURE.with(|capture| {
            if let Some(capture) = &*capture.borrow() {
                capture.0.lock().unwrap().extend_from_slice(buf);
            }
        });
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Collects what the server logs on this thread, every level from TRACE
/// (tests on the current-thread runtime run the server on their thread).
#[derive(Clone, Default)]
pub struct LogCapture(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

/// Ends a [`LogCapture`] when dropped.
pub struct CaptureGuard(());

impl Drop for CaptureGuard {
    fn drop(&mut self) {
        CAPTURE.with(|capture| capture.borrow_mut().take());
    }
}

impl LogCapture {
    /// Captures until the guard is dropped.
    pub fn start() -> (Self, CaptureGuard) {
        init_logs();
        let logs = Self::default();
        CAPTURE.with(|capture| *capture.borrow_mut() = Some(logs.clone()));
        (logs, CaptureGuard(()))
    }

    /// The captured lines.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }

    /// The captured lines logged at `level` ("ERROR", "DEBUG", ...).
    pub fn lines_at(&self, level: &str) -> Vec<String> {
        self.text()
            .lines()
            .filter(|line| line.trim_start().starts_with(level))
            .map(str::to_owned)
            .collect()
    }
}

/// A WebSocket upgrade request as raw bytes: `version` is the HTTP version
/// ("HTTP/1.1"), `headers` the header lines after the request line (each
/// without its CRLF).
pub fn raw_request(path: &str, version: &str, headers: &[String]) -> Vec<u8> {
    let mut request = format!("GET {path} {version}\r\n");
    for header in headers {
        request.push_str(header);
        request.push_str("\r\n");
    }
    request.push_str("\r\n");
    request.into_bytes()
}

/// The header lines of a valid upgrade (Host, Upgrade, Connection, a
/// valid key, version 13).
pub fn upgrade_headers() -> Vec<String> {
    vec![
        "Host: 127.0.0.1".into(),
        "Upgrade: websocket".into(),
        "Connection: Upgrade".into(),
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==".into(),
        "Sec-WebSocket-Version: 13".into(),
    ]
}

/// Sends `request` over a fresh TCP connection and returns the answer's
/// status code and head. The request is written by its own task, so that
/// a server refusing it before reading it whole still gets its answer read.
pub async fn raw_status(addr: SocketAddr, request: Vec<u8>) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let tcp = within("connect", TcpStream::connect(addr))
        .await
        .expect("connect");
    let (mut read, mut write) = tcp.into_split();
    let writer = tokio::spawn(async move {
        // The server may refuse and close before taking it all.
        let _ = write.write_all(&request).await;
        write
    });
    let mut response = Vec::new();
    let mut chunk = [0u8; 4096];
    while !response.windows(4).any(|w| w == b"\r\n\r\n") {
        match within("the answer", read.read(&mut chunk)).await {
            Ok(0) => break,
            Ok(n) => response.extend_from_slice(&chunk[..n]),
            Err(err) => panic!(
                "reading the answer failed after {:?}: {err}",
                String::from_utf8_lossy(&response)
            ),
        }
    }
    writer.abort();
    let head = String::from_utf8_lossy(&response).into_owned();
    let status = head
        .strip_prefix("HTTP/1.")
        .and_then(|rest| rest.get(2..5))
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP/1 answer: {head:?}"));
    (status, head)
}

/// Upgrade requests with a client's mistake in them (RFC 6455 4.2.1), and
/// the status each must get: what they are, the request, the status.
pub fn bad_handshakes(path: &str) -> Vec<(&'static str, Vec<u8>, u16)> {
    let with = |drop: &str, add: &[&str]| {
        let mut headers: Vec<String> = upgrade_headers()
            .into_iter()
            .filter(|h| drop.is_empty() || !h.starts_with(drop))
            .collect();
        headers.extend(add.iter().map(|h| (*h).to_owned()));
        headers
    };
    let key = |key: &str| with("Sec-WebSocket-Key", &[&format!("Sec-WebSocket-Key: {key}")]);
    // Well-formed but 350 KiB of headers (35 of 10 KiB: under hyper's
    // limit of 100 headers, so that only their size is at stake).
    let mut huge = upgrade_headers();
    for i in 0..35 {
        huge.push(format!("X-Pad-{i}: {}", "a".repeat(10 * 1024)));
    }
    vec![
        (
            "HTTP/1.0",
            raw_request(path, "HTTP/1.0", &upgrade_headers()),
            400,
        ),
        (
            "no Host",
            raw_request(path, "HTTP/1.1", &with("Host", &[])),
            400,
        ),
        (
            "a key of 3 characters",
            raw_request(path, "HTTP/1.1", &key("abc")),
            400,
        ),
        (
            "a key of 17 bytes",
            raw_request(path, "HTTP/1.1", &key("AAAAAAAAAAAAAAAAAAAAAAA=")),
            400,
        ),
        (
            "a key of 15 bytes",
            raw_request(path, "HTTP/1.1", &key("AAAAAAAAAAAAAAAAAAAA")),
            400,
        ),
        (
            "a key that is not base64",
            raw_request(path, "HTTP/1.1", &key("!!!!!!!!!!!!!!!!!!!!!!==")),
            400,
        ),
        (
            "two keys",
            raw_request(
                path,
                "HTTP/1.1",
                &with("", &["Sec-WebSocket-Key: AAAAAAAAAAAAAAAAAAAAAA=="]),
            ),
            400,
        ),
        ("an empty key", raw_request(path, "HTTP/1.1", &key("")), 400),
        (
            "WebSocket version 8",
            raw_request(
                path,
                "HTTP/1.1",
                &with("Sec-WebSocket-Version", &["Sec-WebSocket-Version: 8"]),
            ),
            426,
        ),
        (
            "no Upgrade header",
            raw_request(path, "HTTP/1.1", &with("Upgrade", &[])),
            426,
        ),
        (
            "350 KiB of headers",
            raw_request(path, "HTTP/1.1", &huge),
            431,
        ),
    ]
}

/// An upgrade request whose head is exactly `len` bytes (padded with an
/// `X-Pad` header).
pub fn upgrade_of_len(path: &str, len: usize) -> Vec<u8> {
    let mut headers = upgrade_headers();
    headers.push("X-Pad: ".into());
    let pad = len
        .checked_sub(raw_request(path, "HTTP/1.1", &headers).len())
        .expect("room for the pad");
    headers.pop();
    headers.push(format!("X-Pad: {}", "a".repeat(pad)));
    let request = raw_request(path, "HTTP/1.1", &headers);
    assert_eq!(request.len(), len);
    request
}

/// Checks the server's answers to [`bad_handshakes`]: each gets its status,
/// and nothing is logged at ERROR level (client mistakes are not server
/// faults), but each refusal is logged (below ERROR, then).
pub async fn check_bad_handshakes(addr: SocketAddr, path: &str) {
    let (logs, _guard) = LogCapture::start();
    // Every case is tried; the failures are reported together.
    let mut failures = Vec::new();
    for (what, request, expected) in bad_handshakes(path) {
        let before = logs.text().len();
        let (status, head) = raw_status(addr, request).await;
        if status != expected {
            let line = head.lines().next().unwrap_or_default();
            failures.push(format!("{what}: {line}, expected {expected}"));
        }
        let text = logs.text();
        let logged = &text[before..];
        if logged.lines().any(|l| l.trim_start().starts_with("ERROR")) {
            failures.push(format!("{what}: logged as a server fault:\n{logged}"));
        }
        // Hyper itself refuses a head larger than its buffer (standalone).
        if expected != 431 && !logged.lines().any(|l| l.contains("upgrade refused")) {
            failures.push(format!("{what}: the refusal is not logged"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    // A valid raw request is accepted: the refusals are the mistakes'.
    let (status, head) = raw_status(addr, raw_request(path, "HTTP/1.1", &upgrade_headers())).await;
    assert_eq!(status, 101, "{head}");
    assert!(logs.lines_at("ERROR").is_empty(), "{}", logs.text());
}

/// A router that reports every disconnect reason on `reasons`.
pub fn reporting_router(
    reasons: tokio::sync::mpsc::UnboundedSender<webwire_server::error::DisconnectReason>,
) -> webwire_server::MessageRouter {
    webwire_server::MessageRouter::new().on_disconnect(
        move |_conn: webwire_server::Connection,
              reason: webwire_server::error::DisconnectReason| {
            let reasons = reasons.clone();
            async move {
                let _ = reasons.send(reason);
            }
        },
    )
}

/// A [`reporting_router`] that also echoes `echo` requests.
pub fn echo_router(
    reasons: tokio::sync::mpsc::UnboundedSender<webwire_server::error::DisconnectReason>,
) -> webwire_server::MessageRouter {
    reporting_router(reasons).request("echo", |req: webwire_server::Request| async move {
        Ok::<_, webwire_server::ReplyError>(req.payload().clone())
    })
}
