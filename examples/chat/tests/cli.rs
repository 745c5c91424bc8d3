#![cfg(unix)]
//! The `chat-server` program as a user runs it (a child process on
//! 127.0.0.1): a taken port, a binary moved away from the checkout, and
//! `scripts/demo.sh` around it.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// Every wait of these tests ends within this (generous: a loaded 2-core
/// machine starts a process slowly).
const PATIENCE: Duration = Duration::from_secs(20);

fn server_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_chat-server"))
}

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// A child process whose stdout lines arrive on a channel; killed on drop.
struct Running {
    child: Child,
    lines: mpsc::Receiver<String>,
    stderr: std::thread::JoinHandle<String>,
}

impl Running {
    fn spawn(command: &mut Command) -> Self {
        command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        // A binary copied a moment ago can be "busy": another test thread
        // that forked while the copy's file was open for writing holds it
        // until that child execs. It clears within milliseconds.
        let mut tries = 0;
        let mut child = loop {
            match command.spawn() {
                Err(err) if err.kind() == std::io::ErrorKind::ExecutableFileBusy && tries < 100 => {
                    tries += 1;
                    std::thread::sleep(std::time::Duration::from_millis(10));
                }
                spawned => break spawned.expect("spawn"),
            }
        };
        let stdout = child.stdout.take().unwrap();
        let mut stderr = child.stderr.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let stderr = std::thread::spawn(move || {
            let mut text = String::new();
            let _ = stderr.read_to_string(&mut text);
            text
        });
        Self {
            child,
            lines,
            stderr,
        }
    }

    /// The stdout lines up to and including the first one matching `pred`.
    fn lines_until(&self, what: &str, pred: impl Fn(&str) -> bool) -> Vec<String> {
        let deadline = Instant::now() + PATIENCE;
        let mut seen = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    let done = pred(&line);
                    seen.push(line);
                    if done {
                        return seen;
                    }
                }
                Err(_) => panic!("no {what} on stdout; saw {seen:?}"),
            }
        }
    }

    /// Waits for the process to exit; its status and its whole stderr.
    fn wait(mut self) -> (ExitStatus, String) {
        let deadline = Instant::now() + PATIENCE;
        let status = loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                break status;
            }
            assert!(Instant::now() < deadline, "the process did not exit");
            std::thread::sleep(Duration::from_millis(20));
        };
        let stderr = std::mem::replace(&mut self.stderr, std::thread::spawn(String::new));
        (status, stderr.join().unwrap())
    }

    fn signal(&self, name: &str) {
        let ok = Command::new("kill")
            .arg(format!("-{name}"))
            .arg(self.child.id().to_string())
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill -{name}");
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        // The demo script runs in a process group of its own: a failed test
        // stops the chat-server it started too.
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{}", self.child.id())])
            .stderr(Stdio::null())
            .status();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The address in a line `listening on http://ADDR/ ...`.
fn listening_addr(line: &str) -> Option<SocketAddr> {
    line.strip_prefix("listening on http://")?
        .split('/')
        .next()?
        .parse()
        .ok()
}

/// One HTTP/1.1 GET: the status line, the headers (lowercase) and the body.
fn http_get(addr: SocketAddr, path: &str) -> (String, String, String) {
    let mut tcp = TcpStream::connect(addr).unwrap();
    tcp.set_read_timeout(Some(PATIENCE)).unwrap();
    write!(
        tcp,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    tcp.read_to_string(&mut response).unwrap();
    let (head, body) = response.split_once("\r\n\r\n").unwrap();
    let (status, headers) = head.split_once("\r\n").unwrap_or((head, ""));
    (
        status.to_owned(),
        headers.to_ascii_lowercase(),
        body.to_owned(),
    )
}

#[test]
fn a_taken_port_is_a_clear_one_line_error_and_a_failure_exit() {
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap();
    let sessions = tempfile::tempdir().unwrap();
    let server = Running::spawn(
        Command::new(server_bin())
            .arg("--addr")
            .arg(addr.to_string())
            .arg("--session-dir")
            .arg(sessions.path())
            .env_remove("CHAT_ADDR"),
    );
    let (status, stderr) = server.wait();
    assert!(!status.success(), "{status}");
    assert_eq!(
        stderr,
        format!(
            "chat-server: cannot listen on {addr}: address already in use (set CHAT_ADDR or pass --addr)\n"
        )
    );
}

#[test]
fn chat_addr_sets_the_address() {
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap();
    let sessions = tempfile::tempdir().unwrap();
    let server = Running::spawn(
        Command::new(server_bin())
            .arg("--session-dir")
            .arg(sessions.path())
            .env("CHAT_ADDR", addr.to_string()),
    );
    let (status, stderr) = server.wait();
    assert!(!status.success(), "{status}");
    assert!(stderr.contains(&addr.to_string()), "{stderr}");
}

#[test]
fn a_moved_binary_serves_the_page_and_the_client_from_any_directory() {
    // The binary alone in a folder of its own, run from another one: what
    // `cargo install` or a copy to another machine gives.
    let install = tempfile::tempdir().unwrap();
    let bin = install.path().join("chat-server");
    std::fs::copy(server_bin(), &bin).unwrap();
    let cwd = tempfile::tempdir().unwrap();
    let server = Running::spawn(
        Command::new(&bin)
            .args(["--addr", "127.0.0.1:0"])
            .current_dir(cwd.path())
            .env_remove("CHAT_ADDR")
            .env_remove("CHAT_SESSION_DIR"),
    );
    let lines = server.lines_until("listening line", |line| listening_addr(line).is_some());
    let addr = listening_addr(lines.last().unwrap()).unwrap();

    for (path, content_type, needle) in [
        ("/", "text/html", r#"<script type="module" src="/chat.js">"#),
        ("/chat.js", "text/javascript", "/webwire/index.js"),
        ("/chat.css", "text/css", "#messages"),
        ("/webwire/index.js", "text/javascript", "WebwireClient"),
        (
            "/webwire/client.js",
            "text/javascript",
            "class WebwireClient",
        ),
        ("/webwire/codec.js", "text/javascript", "export"),
        ("/webwire/errors.js", "text/javascript", "export"),
        ("/webwire/payload.js", "text/javascript", "export"),
        (
            "/webwire/session.js",
            "text/javascript",
            "LocalStorageSessionStore",
        ),
    ] {
        let (status, headers, body) = http_get(addr, path);
        assert!(status.starts_with("HTTP/1.1 200"), "{path}: {status}");
        assert!(
            headers.contains(&format!("content-type: {content_type}")),
            "{path}: {headers}"
        );
        assert!(body.contains(needle), "{path} lacks {needle:?}");
    }
    let (status, _, _) = http_get(addr, "/webwire/missing.js");
    assert!(status.starts_with("HTTP/1.1 404"), "{status}");
}

/// `bash scripts/demo.sh` running the test's chat-server (no build).
fn demo(addr: &str, sessions: &Path) -> Running {
    Running::spawn(
        Command::new("bash")
            .arg(repo_root().join("scripts/demo.sh"))
            .process_group(0)
            .env("CHAT_SERVER_BIN", server_bin())
            .env("CHAT_ADDR", addr)
            .env("CHAT_SESSION_DIR", sessions),
    )
}

#[test]
fn demo_prints_the_url_once_the_server_listens_and_stops_it_on_term() {
    let sessions = tempfile::tempdir().unwrap();
    let demo = demo("127.0.0.1:0", sessions.path());
    let lines = demo.lines_until("URL line", |line| line.contains("open http://"));
    let listening = lines
        .iter()
        .position(|line| listening_addr(line).is_some())
        .unwrap_or_else(|| panic!("the URL came before the listening line: {lines:?}"));
    let addr = listening_addr(&lines[listening]).unwrap();
    assert!(
        lines
            .last()
            .unwrap()
            .contains(&format!("open http://{addr}/ ")),
        "{lines:?}"
    );
    // The URL works at once.
    let (status, _, _) = http_get(addr, "/");
    assert!(status.starts_with("HTTP/1.1 200"), "{status}");

    // TERM (as Ctrl-C) reaches the server: it stops, and so does the script.
    demo.signal("TERM");
    let (status, stderr) = demo.wait();
    assert!(status.success(), "{status}: {stderr}");
    assert!(
        TcpStream::connect(addr).is_err(),
        "the server still listens on {addr}"
    );
}

#[test]
fn demo_on_a_taken_port_says_so_and_fails() {
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap();
    let sessions = tempfile::tempdir().unwrap();
    let demo = demo(&addr.to_string(), sessions.path());
    let (status, stderr) = demo.wait();
    assert!(!status.success(), "{status}");
    assert!(
        stderr.contains(&format!(
            "chat-server: cannot listen on {addr}: address already in use (set CHAT_ADDR or pass --addr)"
        )),
        "{stderr}"
    );
    assert!(
        stderr.contains("demo.sh: the chat server did not start"),
        "{stderr}"
    );
}
