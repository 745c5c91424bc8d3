//! A `redis-server` of the test's own, on a free loopback port.
//!
//! [`RedisServer::start`] runs `redis-server --save '' --appendonly no
//! --port N --bind 127.0.0.1` (no persistence: a restart comes back empty),
//! waits until it answers (its own process, not another Redis on the port)
//! and kills it when dropped. It can be stopped
//! (SIGKILL, as in a crash) and restarted on the same port, or paused
//! (SIGSTOP: connections stay open, commands wait unanswered) and resumed.
//!
//! The binary is `$REDIS_SERVER` if set, else `/usr/bin/redis-server`
//! (Debian's package `redis-server`; `scripts/test-all.sh` installs it), else
//! `redis-server` on the `PATH`. When there is none, [`RedisServer::start`]
//! fails the test if the environment says `CI=true`, and otherwise prints
//! the reason and returns `None`: the test skips (see [`redis_or_skip!`]).
//!
//! `nodes.rs` beside it has what the tests running server nodes on Redis
//! share; a test file declares it itself (`#[path = "common/nodes.rs"] mod
//! nodes;`), since other crates' tests include this file without the
//! server and client crates it needs.

#![allow(dead_code, unreachable_pub)]

use std::fs::File;
use std::io::{Read as _, Write as _};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use webwire_redis::redis;

/// How long a starting redis-server may take to answer PING.
const START_TIMEOUT: Duration = Duration::from_secs(15);

/// Starts a Redis for this test, or skips the test (returns) when there is no
/// `redis-server` outside CI.
#[macro_export]
macro_rules! redis_or_skip {
    () => {
        match common::RedisServer::start() {
            Some(server) => server,
            None => return,
        }
    };
}

/// A running (or stopped) `redis-server` owned by one test.
#[derive(Debug)]
pub struct RedisServer {
    bin: PathBuf,
    port: u16,
    child: Option<Child>,
    dir: tempfile::TempDir,
}

impl RedisServer {
    /// Starts a server on a free port and waits until it answers PING.
    ///
    /// `None` (after printing why) when no redis-server is installed and
    /// `CI` is not `true`.
    ///
    /// # Panics
    ///
    /// When redis-server is missing and `CI=true`, or when it does not start.
    pub fn start() -> Option<Self> {
        let Some(bin) = find_binary() else {
            let reason = "redis-server not found (set REDIS_SERVER, or install Debian's \
                          redis-server package: apt-get install -y redis-server)";
            if std::env::var("CI").is_ok_and(|ci| ci == "true") {
                panic!("{reason}; CI=true, so the Redis tests cannot be skipped");
            }
            eprintln!("skipping this Redis test: {reason}");
            return None;
        };
        let mut last_err = String::new();
        // Another process may take the port between the probe and the start.
        for _ in 0..5 {
            let port = free_port();
            let mut server = Self {
                bin: bin.clone(),
                port,
                child: None,
                dir: tempfile::tempdir().expect("temporary folder for redis-server"),
            };
            match server.spawn_and_wait() {
                Ok(()) => return Some(server),
                Err(err) => last_err = err,
            }
        }
        panic!("redis-server did not start: {last_err}");
    }

    /// Starts one on `port`, which must be free: an error if it cannot
    /// listen there or another Redis answers on it.
    pub fn try_start_on(port: u16) -> Result<Self, String> {
        let bin = find_binary().ok_or("redis-server not found")?;
        let mut server = Self {
            bin,
            port,
            child: None,
            dir: tempfile::tempdir().map_err(|e| e.to_string())?,
        };
        server.spawn_and_wait()?;
        Ok(server)
    }

    /// The port it listens on (127.0.0.1).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Its URL, `redis://127.0.0.1:PORT/`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    /// Kills it with SIGKILL (like a crash) and waits until it is gone.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        // The port no longer answers.
        let deadline = Instant::now() + START_TIMEOUT;
        while ping(self.port) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Pauses it with SIGSTOP: its connections stay open and the commands
    /// sent meanwhile wait, unanswered, until [`resume`](Self::resume) (then
    /// they are applied, late).
    ///
    /// # Panics
    ///
    /// When it is not running or cannot be signalled.
    pub fn pause(&self) {
        self.signal("-STOP");
    }

    /// Resumes it after [`pause`](Self::pause) (SIGCONT).
    ///
    /// # Panics
    ///
    /// When it is not running or cannot be signalled.
    pub fn resume(&self) {
        self.signal("-CONT");
    }

    fn signal(&self, signal: &str) {
        let child = self.child.as_ref().expect("redis-server is running");
        let status = Command::new("kill")
            .arg(signal)
            .arg(child.id().to_string())
            .status()
            .expect("running kill");
        assert!(status.success(), "kill {signal} failed: {status}");
    }

    /// Starts it again on the same port (empty: it keeps no data) and waits
    /// until it answers PING.
    ///
    /// # Panics
    ///
    /// When it does not start.
    pub fn restart(&mut self) {
        self.stop();
        if let Err(err) = self.spawn_and_wait() {
            panic!("redis-server did not restart on port {}: {err}", self.port);
        }
    }

    /// A plain connection for checking what Redis holds, beside the code
    /// under test.
    pub async fn raw(&self) -> redis::aio::MultiplexedConnection {
        let client = redis::Client::open(self.url()).expect("client");
        tokio::time::timeout(
            Duration::from_secs(5),
            client.get_multiplexed_async_connection(),
        )
        .await
        .expect("raw connection in time")
        .expect("raw connection")
    }

    fn spawn_and_wait(&mut self) -> Result<(), String> {
        let log_path = self.dir.path().join("redis.log");
        let log = File::create(&log_path).map_err(|e| format!("log file: {e}"))?;
        let log_err = log.try_clone().map_err(|e| format!("log file: {e}"))?;
        let port = self.port.to_string();
        let mut child = Command::new(&self.bin)
            .args(["--save", "", "--appendonly", "no", "--port", &port])
            .args(["--bind", "127.0.0.1", "--dir"])
            .arg(self.dir.path())
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_err)
            .spawn()
            .map_err(|e| format!("spawning {}: {e}", self.bin.display()))?;
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            // Our own child must be the one answering: another test's
            // redis-server may have taken the port between the probe and
            // the start, and sharing it would mix their keys.
            match server_pid(self.port) {
                Some(pid) if pid == child.id() => {
                    self.child = Some(child);
                    return Ok(());
                }
                Some(other) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    return Err(format!(
                        "port {} is taken by another redis-server (pid {other})",
                        self.port
                    ));
                }
                None => {}
            }
            if let Ok(Some(status)) = child.try_wait() {
                return Err(format!("exited with {status}: {}", read_log(&log_path)));
            }
            if Instant::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!(
                    "no PING answer within {START_TIMEOUT:?}: {}",
                    read_log(&log_path)
                ));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The redis-server binary, if any.
fn find_binary() -> Option<PathBuf> {
    if let Some(bin) = std::env::var_os("REDIS_SERVER") {
        return Some(PathBuf::from(bin));
    }
    let debian = Path::new("/usr/bin/redis-server");
    if debian.is_file() {
        return Some(debian.to_path_buf());
    }
    std::env::var_os("PATH").and_then(|path| {
        std::env::split_paths(&path)
            .map(|dir| dir.join("redis-server"))
            .find(|bin| bin.is_file())
    })
}

/// A loopback port nothing listens on right now.
pub fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    listener.local_addr().expect("local address").port()
}

/// Whether a Redis on this port answers PING with PONG.
fn ping(port: u16) -> bool {
    let addr = ([127, 0, 0, 1], port).into();
    let Ok(mut stream) = TcpStream::connect_timeout(&addr, Duration::from_millis(200)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_millis(500)));
    if stream.write_all(b"PING\r\n").is_err() {
        return false;
    }
    let mut reply = [0u8; 7];
    stream.read_exact(&mut reply).is_ok() && &reply == b"+PONG\r\n"
}

fn read_log(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

/// The process id of the Redis answering on this port (`INFO server`), if
/// one answers.
fn server_pid(port: u16) -> Option<u32> {
    let addr = ([127, 0, 0, 1], port).into();
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_millis(200)).ok()?;
    stream
        .set_read_timeout(Some(Duration::from_millis(500)))
        .ok()?;
    stream.write_all(b"INFO server\r\n").ok()?;
    let mut reply = Vec::new();
    let mut chunk = [0u8; 4096];
    // The reply is one bulk string of a few KiB; read until its pid line.
    while reply.len() < 64 * 1024 {
        let n = stream.read(&mut chunk).ok()?;
        if n == 0 {
            break;
        }
        reply.extend_from_slice(&chunk[..n]);
        let text = String::from_utf8_lossy(&reply);
        if let Some(line) = text
            .lines()
            .find_map(|line| line.strip_prefix("process_id:"))
            && text.contains(&format!("process_id:{line}\r\n"))
        {
            return line.trim().parse().ok();
        }
    }
    None
}
