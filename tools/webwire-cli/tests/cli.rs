//! The `webwire` binary against the interop server (docs/interop.md),
//! started in this process on 127.0.0.1 with a wrapper that records what
//! the tests check on the server's side.

use std::process::{Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::Command;
use tokio::sync::{mpsc, oneshot};
use webwire_interop::serve::{start_with, Running, ServeOptions};
use webwire_server::routing::Routed;
use webwire_server::{
    error::DisconnectReason, Connection, Handler, HandlerError, MessageRouter, Payload, Request,
    Signal,
};

const BIN: &str = env!("CARGO_BIN_EXE_webwire");
const PATIENCE: Duration = Duration::from_secs(10);

/// A connection hook that waits: `entered` is told when a connection
/// reaches it, the hook returns once `release` is answered.
struct Gate {
    entered: oneshot::Sender<()>,
    release: oneshot::Receiver<()>,
}

/// The interop router, recording the signals it gets, the names of the
/// requests it routes and the upgrade headers of each connection, with an
/// optional gate in its connect hook.
struct Recorder {
    inner: MessageRouter,
    signals: mpsc::UnboundedSender<(String, Payload)>,
    requests: mpsc::UnboundedSender<String>,
    headers: mpsc::UnboundedSender<http::HeaderMap>,
    gate: Arc<Mutex<Option<Gate>>>,
}

impl Handler for Recorder {
    async fn on_connected(&self, conn: &Connection) {
        let _ = self.headers.send(conn.info().headers().clone());
        let gate = self.gate.lock().unwrap().take();
        if let Some(gate) = gate {
            let _ = gate.entered.send(());
            let _ = gate.release.await;
        }
        Handler::on_connected(&self.inner, conn).await;
    }

    async fn on_disconnected(&self, conn: &Connection, reason: &DisconnectReason) {
        Handler::on_disconnected(&self.inner, conn, reason).await;
    }

    async fn on_signal(&self, conn: &Connection, signal: Signal) {
        Handler::on_signal(&self.inner, conn, signal).await;
    }

    async fn on_request(
        &self,
        conn: &Connection,
        request: Request,
    ) -> Result<Payload, HandlerError> {
        Handler::on_request(&self.inner, conn, request).await
    }

    async fn on_session_created(
        &self,
        conn: &Connection,
        session: &webwire_server::proto::Session,
    ) {
        Handler::on_session_created(&self.inner, conn, session).await;
    }

    async fn on_session_restored(
        &self,
        conn: &Connection,
        session: &webwire_server::proto::Session,
    ) {
        Handler::on_session_restored(&self.inner, conn, session).await;
    }

    async fn on_session_closed(&self, conn: &Connection, key: &str) {
        Handler::on_session_closed(&self.inner, conn, key).await;
    }

    fn route_request(
        &self,
        conn: &Connection,
        request: Request,
    ) -> Result<Routed<'_, Result<Payload, HandlerError>>, Request> {
        let _ = self.requests.send(request.name().as_str().to_owned());
        Handler::route_request(&self.inner, conn, request)
    }

    fn route_signal(&self, conn: &Connection, signal: Signal) -> Result<Routed<'_, ()>, Signal> {
        let _ = self
            .signals
            .send((signal.name().as_str().to_owned(), signal.payload().clone()));
        Handler::route_signal(&self.inner, conn, signal)
    }
}

struct TestServer {
    running: Running,
    url: String,
    signals: mpsc::UnboundedReceiver<(String, Payload)>,
    requests: mpsc::UnboundedReceiver<String>,
    headers: mpsc::UnboundedReceiver<http::HeaderMap>,
    gate: Arc<Mutex<Option<Gate>>>,
}

impl TestServer {
    async fn start() -> Self {
        let (signal_tx, signals) = mpsc::unbounded_channel();
        let (request_tx, requests) = mpsc::unbounded_channel();
        let (header_tx, headers) = mpsc::unbounded_channel();
        let gate = Arc::new(Mutex::new(None));
        let hook_gate = Arc::clone(&gate);
        let running = start_with(ServeOptions::new("127.0.0.1:0"), move |inner| Recorder {
            inner,
            signals: signal_tx,
            requests: request_tx,
            headers: header_tx,
            gate: hook_gate,
        })
        .await
        .unwrap();
        let url = running.url();
        Self {
            running,
            url,
            signals,
            requests,
            headers,
            gate,
        }
    }

    async fn stop(self) {
        tokio::time::timeout(PATIENCE, self.running.shutdown())
            .await
            .unwrap()
            .unwrap();
    }
}

/// Runs `webwire ARGS` with `stdin` as standard input.
async fn webwire_with_input(args: &[&str], stdin: &[u8]) -> Output {
    let mut child = Command::new(BIN)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut input = child.stdin.take().unwrap();
    input.write_all(stdin).await.unwrap();
    drop(input);
    tokio::time::timeout(PATIENCE, child.wait_with_output())
        .await
        .expect("webwire did not end in time")
        .unwrap()
}

async fn webwire(args: &[&str]) -> Output {
    webwire_with_input(args, b"").await
}

fn stdout(output: &Output) -> String {
    String::from_utf8(output.stdout.clone()).unwrap()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[track_caller]
fn assert_status(output: &Output, code: i32) {
    assert_eq!(
        output.status.code(),
        Some(code),
        "stdout {:?}, stderr {:?}",
        String::from_utf8_lossy(&output.stdout),
        stderr(output)
    );
}

#[tokio::test]
async fn request_prints_the_reply_in_its_encoding() {
    let server = TestServer::start().await;
    let url = server.url.as_str();

    let out = webwire(&["request", url, "echo", "héllo wörld"]).await;
    assert_status(&out, 0);
    assert_eq!(stdout(&out), "héllo wörld\n");
    assert_eq!(stderr(&out), "");

    let out = webwire(&["request", url, "echo", "--utf16", "привет 🌍"]).await;
    assert_status(&out, 0);
    assert_eq!(stdout(&out), "привет 🌍\n");

    // Binary from standard input, printed raw, then in base64.
    let bytes = [0u8, 1, 0xfe, 0xff];
    let out =
        webwire_with_input(&["request", url, "echo", "--binary", "--file", "-"], &bytes).await;
    assert_status(&out, 0);
    assert_eq!(out.stdout, bytes);
    let out = webwire_with_input(
        &[
            "request", url, "echo", "--binary", "--file", "-", "--base64",
        ],
        &bytes,
    )
    .await;
    assert_status(&out, 0);
    assert_eq!(stdout(&out), "AAH+/w==\n");

    // From a file; no payload at all is an empty one.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("payload.txt");
    std::fs::write(&path, "from a file").unwrap();
    let out = webwire(&["request", url, "echo", "--file", path.to_str().unwrap()]).await;
    assert_status(&out, 0);
    assert_eq!(stdout(&out), "from a file\n");
    let out = webwire(&["request", url, "whoami"]).await;
    assert_eq!(stdout(&out), "anonymous\n");

    // The extra headers and the Origin reach the server's upgrade.
    let mut headers = server.headers;
    while headers.try_recv().is_ok() {}
    let out = webwire(&[
        "request",
        url,
        "echo",
        "-H",
        "X-Token: t0k",
        "--origin",
        "https://app.example",
        "--subprotocol",
        "interop",
    ])
    .await;
    assert_status(&out, 0);
    let seen = headers.recv().await.unwrap();
    assert_eq!(seen["x-token"], "t0k");
    assert_eq!(seen["origin"], "https://app.example");
    server.running.shutdown().await.unwrap();
}

#[tokio::test]
async fn exit_statuses() {
    let server = TestServer::start().await;
    let url = server.url.as_str();

    let out = webwire(&["request", url, "error", "x"]).await;
    assert_status(&out, 1);
    assert_eq!(stdout(&out), "");
    let err = stderr(&out);
    assert!(
        err.contains("INTEROP_ERROR") && err.contains("interop error: x"),
        "{err}"
    );
    let out = webwire(&["request", url, "echo", "--session-key", "no-such-key"]).await;
    assert_status(&out, 1);

    let free_port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let out = webwire(&["request", &format!("ws://127.0.0.1:{free_port}/"), "echo"]).await;
    assert_status(&out, 2);
    let out = webwire(&["request", url, "echo", "--subprotocol", "other"]).await;
    assert_status(&out, 2);

    let out = webwire(&["request", url, "sleep", "5000", "--timeout", "0.2"]).await;
    assert_status(&out, 3);

    let out = webwire(&["request", url, "internal"]).await;
    assert_status(&out, 4);

    let out = webwire(&["request", url, "echo", "-H", "no colon"]).await;
    assert_status(&out, 64);
    let out = webwire(&["request", url]).await;
    assert_status(&out, 64);
    let out = webwire(&["--help"]).await;
    assert_status(&out, 0);
    assert!(stdout(&out).contains("Examples:"));
    server.stop().await;
}

/// A request that reaches a server shutting down gets ReplyShutdown: 4.
#[tokio::test]
async fn shutdown_reply_exits_with_4() {
    let mut server = TestServer::start().await;
    // A running handler keeps the shutdown from closing the connections:
    // the shutdown waits until the server has read it.
    let holder = webwire_client::Client::connect(&server.url).await.unwrap();
    let held = tokio::spawn(async move { holder.request("sleep", "3000").await });
    let routed = tokio::time::timeout(PATIENCE, server.requests.recv())
        .await
        .unwrap();
    assert_eq!(routed.as_deref(), Some("sleep"));

    let (entered_tx, entered) = oneshot::channel();
    let (release, release_rx) = oneshot::channel();
    *server.gate.lock().unwrap() = Some(Gate {
        entered: entered_tx,
        release: release_rx,
    });
    let url = server.url.clone();
    let cli = tokio::spawn(async move { webwire(&["request", &url, "echo", "late"]).await });
    tokio::time::timeout(PATIENCE, entered)
        .await
        .unwrap()
        .unwrap();
    let handle = server.running.server().clone();
    let shutdown = tokio::spawn(async move { handle.shutdown().await });
    while !server.running.server().is_shutting_down() {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    release.send(()).unwrap();
    let out = cli.await.unwrap();
    assert_status(&out, 4);
    assert!(stderr(&out).contains("shutting down"), "{}", stderr(&out));
    assert_eq!(held.await.unwrap().unwrap(), Payload::utf8("ok"));
    shutdown.await.unwrap();
    server.stop().await;
}

#[tokio::test]
async fn signal_reaches_the_server() {
    let mut server = TestServer::start().await;
    let url = server.url.clone();
    let out = webwire(&["signal", &url, "record", "--utf16", "héllo"]).await;
    assert_status(&out, 0);
    assert_eq!(stdout(&out), "");
    let (name, payload) = server.signals.recv().await.unwrap();
    assert_eq!(name, "record");
    assert_eq!(payload, Payload::utf16("héllo"));

    let out = webwire_with_input(
        &["signal", &url, "ping", "--binary", "--file", "-"],
        &[7, 8],
    )
    .await;
    assert_status(&out, 0);
    let (name, payload) = server.signals.recv().await.unwrap();
    assert_eq!(name, "ping");
    assert_eq!(payload, Payload::binary(vec![7, 8]));
    server.stop().await;
}

#[tokio::test]
async fn listen_prints_json_lines_and_sessions_carry_over() {
    let server = TestServer::start().await;
    let url = server.url.as_str();
    let out = webwire(&[
        "listen",
        url,
        "--request",
        "login",
        "ann",
        "--request",
        "signal-me",
        "first",
        "--request",
        "broadcast",
        "second",
        "--count",
        "2",
        "--print-session-key",
    ])
    .await;
    assert_status(&out, 0);
    let lines: Vec<serde_json::Value> = stdout(&out)
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    assert_eq!(
        lines,
        [
            serde_json::json!({"name": "notice", "encoding": "utf8", "payload": "first"}),
            serde_json::json!({"name": "broadcast", "encoding": "utf8", "payload": "second"}),
        ]
    );
    let key = stderr(&out).trim().to_owned();
    assert_eq!(key.len(), 64, "{key:?}");

    // The session outlives the command; another command restores it.
    let out = webwire(&["request", url, "whoami", "--session-key", &key]).await;
    assert_status(&out, 0);
    assert_eq!(stdout(&out), "ann\n");
    assert_eq!(stderr(&out), "", "no session created");

    // The same through `request --print-session-key`.
    let out = webwire(&["request", url, "login", "bob", "--print-session-key"]).await;
    assert_status(&out, 0);
    assert_eq!(stdout(&out).trim(), stderr(&out).trim());

    // Binary and UTF-16 payloads.
    let out = webwire(&[
        "listen",
        url,
        "--binary",
        "--request",
        "signal-me",
        "xy",
        "--count",
        "1",
    ])
    .await;
    assert_status(&out, 0);
    assert_eq!(
        stdout(&out),
        "{\"name\":\"notice\",\"encoding\":\"binary\",\"payload\":\"eHk=\"}\n"
    );
    let out = webwire(&[
        "listen",
        url,
        "--utf16",
        "--request",
        "signal-me",
        "é",
        "--count",
        "1",
    ])
    .await;
    assert_eq!(
        stdout(&out),
        "{\"name\":\"notice\",\"encoding\":\"utf16\",\"payload\":\"é\"}\n"
    );

    // An error reply to a --request ends the command.
    let out = webwire(&["listen", url, "--request", "error", "no"]).await;
    assert_status(&out, 1);
    // The server closing the connection ends it too.
    let out = webwire(&["listen", url, "--request", "disconnect-me", ""]).await;
    assert_status(&out, 2);
    server.stop().await;
}

/// Without --count, listening lasts until Ctrl-C (SIGINT), then exits 0.
#[cfg(unix)]
#[tokio::test]
async fn listen_until_interrupted() {
    let server = TestServer::start().await;
    let mut child = Command::new(BIN)
        .args(["listen", &server.url, "--request", "echo", "ready"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    // The broadcast reaches the listener once it is connected: send until
    // one is printed.
    let client = webwire_client::Client::connect(&server.url).await.unwrap();
    let line = tokio::time::timeout(PATIENCE, async {
        loop {
            client.request("broadcast", "hi").await.unwrap();
            tokio::select! {
                line = lines.next_line() => break line.unwrap().unwrap(),
                () = tokio::time::sleep(Duration::from_millis(50)) => {}
            }
        }
    })
    .await
    .unwrap();
    assert_eq!(
        line,
        r#"{"name":"broadcast","encoding":"utf8","payload":"hi"}"#
    );
    let pid = child.id().unwrap().to_string();
    let killed = std::process::Command::new("kill")
        .args(["-INT", &pid])
        .status()
        .unwrap();
    assert!(killed.success());
    let status = tokio::time::timeout(PATIENCE, child.wait())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(status.code(), Some(0));
    server.stop().await;
}

/// `wss://`: a self-signed certificate is refused unless given with --ca,
/// or unless --insecure.
#[tokio::test]
async fn wss_with_ca_or_insecure() {
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let tls = webwire_server::TlsConfig::from_pem(
        cert.cert.pem().as_bytes(),
        cert.signing_key.serialize_pem().as_bytes(),
    )
    .unwrap();
    let router = MessageRouter::new().request("echo", |req: Request| async move {
        Ok::<_, webwire_server::ReplyError>(req.payload().clone())
    });
    let server = webwire_server::Server::builder(router).build().unwrap();
    let listener = server.bind_tls("127.0.0.1:0", tls).await.unwrap();
    let url = format!("wss://localhost:{}/", listener.local_addr().port());
    let running = tokio::spawn(listener.run());
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, cert.cert.pem()).unwrap();

    let out = webwire(&[
        "request",
        &url,
        "echo",
        "over tls",
        "--ca",
        ca.to_str().unwrap(),
    ])
    .await;
    assert_status(&out, 0);
    assert_eq!(stdout(&out), "over tls\n");
    let out = webwire(&["request", &url, "echo", "x", "--insecure"]).await;
    assert_status(&out, 0);
    // Neither: the platform's roots do not know this certificate.
    let out = webwire(&["request", &url, "echo", "x"]).await;
    assert_status(&out, 2);
    assert!(stderr(&out).contains("TLS"), "{}", stderr(&out));
    let out = webwire(&["request", &url, "echo", "--ca", "/no/such/file.pem"]).await;
    assert_status(&out, 64);

    server.shutdown().await;
    running.await.unwrap().unwrap();
}
