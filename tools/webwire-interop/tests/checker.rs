//! The checker against the interop server started in-process: every check
//! passes. And against servers that deviate from docs/interop.md on purpose:
//! the deviations are reported as failures, so the checker is known to
//! catch them. Each deviation runs only the checks it should fail (and a
//! few it should not), so that each is shown to fail on its own.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio::sync::{RwLock, Semaphore};
use tokio_websockets::{CloseCode, Message};
use webwire_interop::check::{self, CheckOptions, Summary};
use webwire_interop::serve::{self, ServeOptions};
use webwire_proto::{AcceptConf, ServerMessage};
use webwire_server::{
    connection::ConnectionId, error::DisconnectReason, Connection, Handler, HandlerError,
    MessageRouter, Payload, Request, Server, Signal,
};

async fn run_checker(url: &str, options: &CheckOptions) -> Summary {
    check::run(url, options, |result| println!("{result}")).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_check_passes_against_the_interop_server() {
    let dir = tempfile::tempdir().unwrap();
    let server = serve::start(ServeOptions::new("127.0.0.1:0").session_dir(dir.path()))
        .await
        .unwrap();
    assert_eq!(server.session_dir(), dir.path());
    let summary = run_checker(&server.url(), &CheckOptions::default()).await;
    println!("{summary}");
    assert_eq!(summary.results.len(), check::names().len());
    let failed: Vec<String> = summary
        .results
        .iter()
        .filter(|r| !r.passed())
        .map(ToString::to_string)
        .collect();
    assert!(failed.is_empty(), "failed: {failed:#?}");
    assert!(summary.success());
    server.shutdown().await.unwrap();
}

/// How a [`Faulty`] server deviates from docs/interop.md.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fault {
    /// `echo` changes the payload, `login` answers a key without making a
    /// session, `ping` signals go unanswered, `recorded` never answers.
    Classic,
    /// The requests and signals of a connection are handled one at a time,
    /// in the order they arrived.
    OneAtATime,
    /// At most two requests of a connection run at once (signals are not
    /// limited): enough for one request to overtake another.
    TwoAtATime,
    /// Requests run concurrently, but a signal waits until the requests
    /// running on its connection are done.
    SignalsWaitForRequests,
    /// `sleep` is not capped: it waits the full time, forever for a number
    /// too large for 64 bits.
    SleepUncapped,
    /// `sleep` with a number too large for 64 bits does not wait at all.
    SleepOverflowIsZero,
}

/// The interop router with a [`Fault`].
struct Faulty {
    inner: MessageRouter,
    fault: Fault,
    /// Per connection: requests take it shared or exclusively, signals
    /// exclusively, as the fault asks.
    locks: Mutex<HashMap<ConnectionId, Arc<RwLock<()>>>>,
    /// Per connection: the requests that may run at once.
    permits: Mutex<HashMap<ConnectionId, Arc<Semaphore>>>,
}

impl Faulty {
    fn new(inner: MessageRouter, fault: Fault) -> Self {
        Self {
            inner,
            fault,
            locks: Mutex::default(),
            permits: Mutex::default(),
        }
    }

    fn permits(&self, conn: &Connection) -> Arc<Semaphore> {
        self.permits
            .lock()
            .unwrap()
            .entry(conn.id())
            .or_insert_with(|| Arc::new(Semaphore::new(2)))
            .clone()
    }

    fn lock(&self, conn: &Connection) -> Arc<RwLock<()>> {
        self.locks
            .lock()
            .unwrap()
            .entry(conn.id())
            .or_default()
            .clone()
    }

    /// The faulty `sleep`, or `None` for a payload that is not a number.
    async fn sleep(&self, payload: &Payload) -> Option<Payload> {
        let text = payload.to_text().ok()?;
        if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let duration = match (text.parse::<u64>(), self.fault) {
            (Ok(ms), Fault::SleepUncapped) => Duration::from_millis(ms),
            (Err(_), Fault::SleepUncapped) => Duration::MAX,
            (Ok(ms), _) => Duration::from_millis(ms.min(10_000)),
            (Err(_), _) => Duration::ZERO,
        };
        if duration == Duration::MAX {
            std::future::pending::<()>().await;
        }
        tokio::time::sleep(duration).await;
        Some(Payload::utf8("ok"))
    }
}

impl Handler for Faulty {
    async fn on_connected(&self, conn: &Connection) {
        self.inner.on_connected(conn).await;
    }

    async fn on_disconnected(&self, conn: &Connection, reason: &DisconnectReason) {
        self.locks.lock().unwrap().remove(&conn.id());
        self.permits.lock().unwrap().remove(&conn.id());
        self.inner.on_disconnected(conn, reason).await;
    }

    async fn on_signal(&self, conn: &Connection, signal: Signal) {
        match self.fault {
            Fault::Classic if signal.name().as_str() == "ping" => {}
            Fault::OneAtATime | Fault::SignalsWaitForRequests => {
                let lock = self.lock(conn);
                let _alone = lock.write().await;
                self.inner.on_signal(conn, signal).await;
            }
            _ => self.inner.on_signal(conn, signal).await,
        }
    }

    async fn on_request(
        &self,
        conn: &Connection,
        request: Request,
    ) -> Result<Payload, HandlerError> {
        match (self.fault, request.name().as_str()) {
            (Fault::Classic, "echo") => {
                let payload = request.payload();
                let mut changed = payload.as_bytes().to_vec();
                changed.extend_from_slice(b"!!");
                Ok(Payload::new(payload.encoding(), changed)?)
            }
            (Fault::Classic, "login") => Ok(Payload::utf8("not-a-session-key")),
            (Fault::Classic, "recorded") => std::future::pending().await,
            (Fault::OneAtATime, _) => {
                let lock = self.lock(conn);
                let _alone = lock.write().await;
                self.inner.on_request(conn, request).await
            }
            (Fault::TwoAtATime, _) => {
                let permits = self.permits(conn);
                let _permit = permits.acquire().await?;
                self.inner.on_request(conn, request).await
            }
            (Fault::SignalsWaitForRequests, _) => {
                let lock = self.lock(conn);
                let _shared = lock.read().await;
                self.inner.on_request(conn, request).await
            }
            (Fault::SleepUncapped | Fault::SleepOverflowIsZero, "sleep") => {
                match self.sleep(request.payload()).await {
                    Some(reply) => Ok(reply),
                    None => self.inner.on_request(conn, request).await,
                }
            }
            _ => self.inner.on_request(conn, request).await,
        }
    }
}

/// Runs the checks named in `only` against the interop server with `fault`,
/// each within `timeout`, and returns their lines by name.
async fn run_faulty(fault: Fault, only: &str, timeout: Duration) -> HashMap<String, String> {
    let server = serve::start_with(ServeOptions::new("127.0.0.1:0"), |inner| {
        Faulty::new(inner, fault)
    })
    .await
    .unwrap();
    let options = CheckOptions::default().timeout(timeout).only(only);
    let summary = run_checker(&server.url(), &options).await;
    println!("{fault:?}: {summary}");
    // No graceful shutdown: handlers of some faults never return; the
    // server ends with the test's runtime.
    drop(server);
    lines(&summary)
}

fn lines(summary: &Summary) -> HashMap<String, String> {
    summary
        .results
        .iter()
        .map(|r| (r.name.to_owned(), r.to_string()))
        .collect()
}

/// The line of the check `name`, which must have run.
fn line<'a>(lines: &'a HashMap<String, String>, name: &str) -> &'a str {
    lines
        .get(name)
        .unwrap_or_else(|| panic!("{name} did not run: {lines:?}"))
}

fn assert_fails(lines: &HashMap<String, String>, name: &str, reason: &str) {
    let line = line(lines, name);
    assert!(
        line.starts_with(&format!("FAIL {name}: ")) && line.contains(reason),
        "expected {name} to fail with {reason:?}: {line}"
    );
}

fn assert_passes(lines: &HashMap<String, String>, name: &str) {
    let line = line(lines, name);
    assert!(line.starts_with(&format!("PASS {name}")), "{line}");
}

async fn the_checker_catches_requests_handled_one_at_a_time() {
    let lines = run_faulty(
        Fault::OneAtATime,
        "concurrent-requests,100-requests,concurrent-signals,echo-utf8",
        Duration::from_secs(10),
    )
    .await;
    assert_fails(
        &lines,
        "concurrent-requests",
        "requests on one connection are not handled concurrently (one at a time takes 8.00 s)",
    );
    assert_fails(
        &lines,
        "100-requests",
        "requests on one connection are not handled concurrently",
    );
    assert_fails(
        &lines,
        "concurrent-signals",
        "signals wait for the requests of their connection",
    );
    // Serial is correct otherwise.
    assert_passes(&lines, "echo-utf8");
}

async fn the_checker_catches_requests_handled_two_at_a_time() {
    // Enough for an echo to overtake a sleep, which was all the checks
    // once asked.
    let lines = run_faulty(
        Fault::TwoAtATime,
        "concurrent-requests,100-requests,concurrent-signals",
        Duration::from_secs(10),
    )
    .await;
    assert_fails(
        &lines,
        "concurrent-requests",
        "requests on one connection are not handled concurrently",
    );
    // Pairs of sleeps end in 1.8 s, within the bound: the order of the
    // replies tells (on a very slow machine the bound may tell first).
    assert_fails(&lines, "100-requests", "requests on one connection are not");
    assert_passes(&lines, "concurrent-signals");
}

async fn the_checker_catches_signals_that_wait_for_requests() {
    let lines = run_faulty(
        Fault::SignalsWaitForRequests,
        "concurrent-signals,concurrent-requests,ping-pong",
        Duration::from_secs(10),
    )
    .await;
    assert_fails(
        &lines,
        "concurrent-signals",
        "signals wait for the requests of their connection",
    );
    assert_passes(&lines, "concurrent-requests");
    assert_passes(&lines, "ping-pong");
}

async fn the_checker_catches_an_uncapped_sleep() {
    // The 23-digit sleep hangs: the check cannot finish. Its own limit (15
    // s) is beyond the run's timeout, which fails it first.
    let lines = run_faulty(Fault::SleepUncapped, "sleep", Duration::from_secs(3)).await;
    assert_eq!(
        line(&lines, "sleep-cap"),
        "FAIL sleep-cap: did not finish within 3s"
    );
    for name in ["sleep", "bad-sleep", "sleep-timeout"] {
        assert_passes(&lines, name);
    }
}

async fn the_checker_catches_a_sleep_that_overflows_to_zero() {
    let lines = run_faulty(
        Fault::SleepOverflowIsZero,
        "sleep-cap",
        Duration::from_secs(5),
    )
    .await;
    assert_fails(
        &lines,
        "sleep-cap",
        "sleep 99999999999999999999999 answered after 0.",
    );
}

/// What a [`fake_server`] does with its connections.
#[derive(Debug, Clone, Copy)]
enum FakeClose {
    /// Never closes one: the read timeout is announced, not enforced.
    Never,
    /// Closes every connection one read timeout after it opened, whether
    /// heartbeats came or not.
    AfterReadTimeout,
}

/// A server that only upgrades, sends an AcceptConf with this version and
/// read timeout (sub-protocol `interop`, buffer 1 MiB), reads and ignores
/// everything, and closes as `close` says. Returns its URL.
async fn fake_server(version: (u8, u8), read_timeout_ms: u32, close: FakeClose) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("ws://{}/", listener.local_addr().unwrap());
    let conf = ServerMessage::AcceptConf(AcceptConf {
        major: version.0,
        minor: version.1,
        read_timeout_ms,
        buffer_size: 1_048_576,
        sub_protocol: "interop".into(),
    })
    .to_bytes();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let conf = conf.clone();
            tokio::spawn(async move {
                let Ok((_, mut ws)) = tokio_websockets::ServerBuilder::new().accept(tcp).await
                else {
                    return;
                };
                if ws.send(Message::binary(conf)).await.is_err() {
                    return;
                }
                let read_all = async { while let Some(Ok(_)) = ws.next().await {} };
                match close {
                    FakeClose::Never => read_all.await,
                    FakeClose::AfterReadTimeout => {
                        let timeout = Duration::from_millis(read_timeout_ms.into());
                        if tokio::time::timeout(timeout, read_all).await.is_err() {
                            let close = Message::close(Some(CloseCode::GOING_AWAY), "read timeout");
                            let _ = ws.send(close).await;
                        }
                    }
                }
            });
        }
    });
    url
}

async fn check_fake(url: &str, only: &str) -> HashMap<String, String> {
    let options = CheckOptions::default()
        .timeout(Duration::from_secs(10))
        .only(only);
    let summary = run_checker(url, &options).await;
    println!("{summary}");
    lines(&summary)
}

async fn the_checker_catches_a_read_timeout_not_enforced() {
    // 1000 ms, the shortest read timeout: the check gives up after 3 s.
    let url = fake_server((2, 0), 1000, FakeClose::Never).await;
    let lines = check_fake(&url, "heartbeat").await;
    assert_fails(
        &lines,
        "heartbeat",
        "a silent connection (no heartbeats, no pings) was still open 3.00 s after connecting: \
         the announced read timeout of 1000 ms is not enforced",
    );
}

async fn the_checker_catches_heartbeats_ignored() {
    let url = fake_server((2, 0), 1000, FakeClose::AfterReadTimeout).await;
    let lines = check_fake(&url, "heartbeat").await;
    assert_fails(
        &lines,
        "heartbeat",
        "a client sending heartbeats was disconnected within",
    );
}

async fn accept_conf_takes_any_minor_version_of_2() {
    let url = fake_server((2, 1), 3000, FakeClose::Never).await;
    let lines = check_fake(&url, "accept-conf").await;
    assert_eq!(
        line(&lines, "accept-conf"),
        "PASS accept-conf (version 2.1)"
    );
    let url = fake_server((3, 0), 3000, FakeClose::Never).await;
    let lines = check_fake(&url, "accept-conf").await;
    assert_fails(&lines, "accept-conf", "3.0");
}

async fn the_checker_catches_a_server_that_refuses_foreign_origins() {
    // webwire-rs's default origin policy: the server's own origin only.
    let router = MessageRouter::new().request("echo", |payload: Payload| async move {
        Ok::<_, webwire_server::ReplyError>(payload)
    });
    let server = Server::builder(router)
        .sub_protocol("interop")
        .build()
        .unwrap();
    let listener = server.bind("127.0.0.1:0").await.unwrap();
    let url = format!("ws://{}/", listener.local_addr());
    tokio::spawn(listener.run());
    let lines = check_fake(&url, "any-origin,any-path").await;
    assert_fails(&lines, "any-origin", "with Origin https://foreign.example");
    // Without an Origin header (the client sends none) it is accepted.
    assert_passes(&lines, "any-path");
}

async fn the_checker_catches_a_faulty_server() {
    let server = serve::start_with(ServeOptions::new("127.0.0.1:0"), |inner| {
        Faulty::new(inner, Fault::Classic)
    })
    .await
    .unwrap();
    let options = CheckOptions::default().timeout(Duration::from_secs(3));
    let summary = run_checker(&server.url(), &options).await;
    println!("{summary}");
    assert!(!summary.success());
    let line = |name: &str| {
        summary
            .get(name)
            .unwrap_or_else(|| panic!("{name} did not run"))
            .to_string()
    };
    for name in [
        "echo-utf8",
        "echo-utf16",
        "echo-binary",
        "unicode",
        "large-payload",
    ] {
        let line = line(name);
        assert!(line.starts_with(&format!("FAIL {name}: ")), "{line}");
    }
    assert!(
        line("echo-utf8")
            .contains(r#"expected utf8 "hello" (5 bytes), got utf8 "hello!!" (7 bytes)"#),
        "{}",
        line("echo-utf8")
    );
    assert_eq!(
        line("login"),
        "FAIL login: no session-created notification had arrived when the reply to login came"
    );
    for name in [
        "whoami",
        "restore",
        "close-session-everywhere",
        "disconnect-keeps-session",
    ] {
        let line = line(name);
        assert!(line.starts_with(&format!("FAIL {name}: ")), "{line}");
    }
    // Hangs: failures within the check timeout, not hangs.
    assert_eq!(line("record"), "FAIL record: did not finish within 3s");
    assert_eq!(
        line("ping-pong"),
        "FAIL ping-pong: did not finish within 3s"
    );
    // What the faults do not touch still passes.
    for name in [
        "accept-conf",
        "any-origin",
        "sub-protocol-mismatch",
        "request-error",
        "echo-nameless",
        "signal-me",
        "bad-sleep",
        "broadcast",
        "restore-unknown",
    ] {
        let line = line(name);
        assert!(line.starts_with(&format!("PASS {name}")), "{line}");
    }
    assert_eq!(
        summary.to_string(),
        format!("{} passed, {} failed", summary.passed(), summary.failed())
    );
    // No graceful shutdown: it would wait for the `recorded` handlers that
    // never return; the server ends with the test's runtime.
    drop(server);
}

/// Every faulty server at once: they mostly wait on clocks, so together
/// they take as long as the slowest, not the sum.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_checker_catches_each_faulty_server() {
    tokio::join!(
        the_checker_catches_a_faulty_server(),
        the_checker_catches_requests_handled_one_at_a_time(),
        the_checker_catches_requests_handled_two_at_a_time(),
        the_checker_catches_signals_that_wait_for_requests(),
        the_checker_catches_an_uncapped_sleep(),
        the_checker_catches_a_sleep_that_overflows_to_zero(),
        the_checker_catches_a_read_timeout_not_enforced(),
        the_checker_catches_heartbeats_ignored(),
        accept_conf_takes_any_minor_version_of_2(),
        the_checker_catches_a_server_that_refuses_foreign_origins(),
    );
}
