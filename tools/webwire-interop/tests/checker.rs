//! The checker against the interop server started in-process: every check
//! passes. And against a server that deviates from docs/interop.md on purpose:
//! the deviations are reported as failures, so the checker is known to
//! catch them.

use std::time::Duration;

use webwire_interop::check::{self, CheckOptions, Summary};
use webwire_interop::serve::{self, ServeOptions};
use webwire_server::{
    error::DisconnectReason, Connection, Handler, HandlerError, MessageRouter, Payload, Request,
    Signal,
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

/// The interop router with faults: `echo` changes the payload, `login`
/// answers a key without making a session, `ping` signals go unanswered,
/// `recorded` never answers.
struct Faulty {
    inner: MessageRouter,
}

impl Handler for Faulty {
    async fn on_connected(&self, conn: &Connection) {
        self.inner.on_connected(conn).await;
    }

    async fn on_disconnected(&self, conn: &Connection, reason: &DisconnectReason) {
        self.inner.on_disconnected(conn, reason).await;
    }

    async fn on_signal(&self, conn: &Connection, signal: Signal) {
        if signal.name().as_str() != "ping" {
            self.inner.on_signal(conn, signal).await;
        }
    }

    async fn on_request(
        &self,
        conn: &Connection,
        request: Request,
    ) -> Result<Payload, HandlerError> {
        match request.name().as_str() {
            "echo" => {
                let payload = request.payload();
                let mut changed = payload.as_bytes().to_vec();
                changed.extend_from_slice(b"!!");
                Ok(Payload::new(payload.encoding(), changed)?)
            }
            "login" => Ok(Payload::utf8("not-a-session-key")),
            "recorded" => std::future::pending().await,
            _ => self.inner.on_request(conn, request).await,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_checker_catches_a_faulty_server() {
    let server = serve::start_with(ServeOptions::new("127.0.0.1:0"), |inner| Faulty { inner })
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
        "sub-protocol-mismatch",
        "request-error",
        "echo-nameless",
        "signal-me",
        "bad-sleep",
        "broadcast",
        "restore-unknown",
    ] {
        assert_eq!(line(name), format!("PASS {name}"));
    }
    assert_eq!(
        summary.to_string(),
        format!("{} passed, {} failed", summary.passed(), summary.failed())
    );
    // No graceful shutdown: it would wait for the `recorded` handlers that
    // never return; the server ends with the test's runtime.
    drop(server);
}
