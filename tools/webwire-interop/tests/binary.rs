//! The real binary end to end: `serve` prints its address, `check` (a few
//! checks) passes against it, SIGTERM stops it with exit code 0.

use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_webwire-interop");

/// Kills the server if a test fails before it stopped it.
struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        if self.0.try_wait().ok().flatten().is_none() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

/// Waits for the child to exit, at most `limit`.
fn wait_for(child: &mut Child, limit: Duration) -> std::process::ExitStatus {
    let end = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        assert!(
            Instant::now() < end,
            "the server did not exit within {limit:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The child's first line of standard output (within 30 s), and a thread
/// that returns the rest of it once the child exits.
fn first_line(child: &mut Child) -> (String, std::thread::JoinHandle<String>) {
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let (tx, rx) = mpsc::channel();
    let reader = std::thread::spawn(move || {
        let mut line = String::new();
        let _ = stdout.read_line(&mut line);
        let _ = tx.send(line);
        let mut rest = String::new();
        let _ = stdout.read_to_string(&mut rest);
        rest
    });
    let line = rx
        .recv_timeout(Duration::from_secs(30))
        .expect("no line on standard output within 30 s");
    (line, reader)
}

#[test]
fn serve_then_check_then_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let child = Command::new(BIN)
        .args(["serve", "--addr", "127.0.0.1:0", "--session-dir"])
        .arg(dir.path())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut server = Server(child);

    let (line, reader) = first_line(&mut server.0);
    let url = line
        .strip_suffix('\n')
        .and_then(|line| line.strip_prefix("listening on "))
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"));
    assert!(
        url.starts_with("ws://127.0.0.1:") && url.ends_with('/'),
        "{url}"
    );
    assert!(!url.ends_with(":0/"), "the real port: {url}");

    // A few checks: the full run is tests/checker.rs's (in-process).
    let check = Command::new(BIN)
        .args(["check", url, "--only", "accept-conf,any-origin,echo-utf8"])
        .stderr(Stdio::null())
        .output()
        .unwrap();
    let report = String::from_utf8(check.stdout).unwrap();
    println!("{report}");
    assert!(check.status.success(), "check failed:\n{report}");
    let lines: Vec<&str> = report.lines().collect();
    assert_eq!(
        lines,
        [
            "PASS accept-conf (version 2.1)",
            "PASS any-origin",
            "PASS echo-utf8",
            "3 passed, 0 failed"
        ]
    );

    let status = Command::new("kill")
        .args(["-TERM", &server.0.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let status = wait_for(&mut server.0, Duration::from_secs(20));
    assert!(status.success(), "exit status {status}");
    // Nothing else on standard output.
    assert_eq!(reader.join().unwrap(), "");
}

#[test]
fn sigint_stops_serve_with_exit_code_0() {
    let mut server = Server(
        Command::new(BIN)
            .args(["serve", "--addr", "127.0.0.1:0"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let (line, _rest) = first_line(&mut server.0);
    assert!(line.starts_with("listening on ws://127.0.0.1:"), "{line:?}");
    let status = Command::new("kill")
        .args(["-INT", &server.0.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let status = wait_for(&mut server.0, Duration::from_secs(20));
    assert!(status.success(), "exit status {status}");
}

#[test]
fn check_of_a_missing_server_fails() {
    // A port nobody listens on: bind one, then free it.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let check = Command::new(BIN)
        .args([
            "check",
            &format!("ws://127.0.0.1:{port}/"),
            "--only",
            "echo-utf8",
        ])
        .stderr(Stdio::null())
        .output()
        .unwrap();
    assert!(!check.status.success());
    let report = String::from_utf8(check.stdout).unwrap();
    let lines: Vec<&str> = report.lines().collect();
    assert_eq!(lines.len(), 2, "{report}");
    assert!(
        lines[0].starts_with("FAIL echo-utf8: connecting to ws://127.0.0.1:"),
        "{report}"
    );
    assert_eq!(lines[1], "0 passed, 1 failed");
}

#[test]
fn serve_refuses_unknown_options() {
    for args in [
        &["serve", "--bogus"][..],
        // --node-id needs --redis.
        &["serve", "--node-id", "a"],
        &["serve", "--addr"],
    ] {
        let out = Command::new(BIN).args(args).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert!(out.stdout.is_empty(), "{args:?}");
    }
}

#[test]
fn serve_reports_an_address_it_cannot_bind() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let out = Command::new(BIN)
        .args(["serve", "--addr", &addr])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(out.stdout.is_empty());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains(&addr), "{stderr}");
}

/// The limit flags reach the server: a second connection from the same
/// address is refused with 429, and requests past the message rate are
/// answered with RATE_LIMITED.
#[test]
fn serve_applies_the_limit_flags() {
    let child = Command::new(BIN)
        .args([
            "serve",
            "--addr",
            "127.0.0.1:0",
            "--max-connections-per-ip",
            "1",
            "--message-rate",
            "1/m:3",
            "--handshake-rate",
            "100/s",
            "--trusted-proxy",
            "10.0.0.0/8",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut server = Server(child);
    let (line, _reader) = first_line(&mut server.0);
    let url = line
        .trim_end()
        .strip_prefix("listening on ")
        .unwrap()
        .to_owned();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let builder = || webwire_client::Client::builder(&url).sub_protocol("interop");
        let client = builder().connect().await.unwrap();
        match builder().connect().await {
            Err(webwire_client::ConnectError::Refused {
                status: 429,
                retry_after: Some(_),
            }) => {}
            other => panic!("expected 429, got {other:?}"),
        }
        for _ in 0..3 {
            client.request("echo", "x").await.unwrap();
        }
        match client.request("echo", "x").await {
            Err(webwire_client::RequestError::Request { code, .. }) => {
                assert_eq!(code, "RATE_LIMITED")
            }
            other => panic!("expected RATE_LIMITED, got {other:?}"),
        }
        client.close().await;
    });
    let out = Command::new(BIN)
        .args(["serve", "--message-rate", "5/h"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("is not a rate"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// With `--drain-window`, SIGTERM drains: the open connection is closed
/// with 1012 (service restart), then the server shuts down with exit code 0.
#[tokio::test]
async fn sigterm_with_a_drain_window_closes_connections_with_1012() {
    use futures_util::StreamExt;

    let dir = tempfile::tempdir().unwrap();
    let mut server = Server(
        Command::new(BIN)
            .args(["serve", "--addr", "127.0.0.1:0", "--drain-window", "0.2"])
            .arg("--session-dir")
            .arg(dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let (line, _rest) = first_line(&mut server.0);
    let url = line
        .trim_end()
        .strip_prefix("listening on ")
        .unwrap()
        .to_owned();
    let (mut ws, _) = tokio_websockets::ClientBuilder::new()
        .uri(&url)
        .unwrap()
        .connect()
        .await
        .unwrap();
    let status = Command::new("kill")
        .args(["-TERM", &server.0.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let code = tokio::time::timeout(Duration::from_secs(20), async {
        while let Some(message) = ws.next().await {
            let message = message.expect("a clean close");
            if let Some((code, _)) = message.as_close() {
                return Some(u16::from(code));
            }
        }
        None
    })
    .await
    .expect("closed in time");
    assert_eq!(code, Some(1012));
    let status = wait_for(&mut server.0, Duration::from_secs(20));
    assert!(status.success(), "exit status {status}");
}
