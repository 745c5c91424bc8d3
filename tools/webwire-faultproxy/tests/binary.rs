//! The `webwire-faultproxy` binary as a Node test drives it: the
//! LISTENING line, the stdin commands, the stats line at the end.

use std::future::Future;
use std::net::SocketAddr;
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::net::{TcpListener, TcpStream};
use tokio::process::{Child, ChildStdout, Command};

async fn bounded<F: Future>(f: F) -> F::Output {
    tokio::time::timeout(Duration::from_secs(30), f)
        .await
        .expect("test timed out")
}

async fn echo_server() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            tokio::spawn(async move {
                let (mut r, mut w) = s.split();
                let _ = tokio::io::copy(&mut r, &mut w).await;
            });
        }
    });
    addr
}

async fn spawn(args: &[&str]) -> (Child, Lines<BufReader<ChildStdout>>, SocketAddr) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_webwire-faultproxy"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let first = lines.next_line().await.unwrap().unwrap();
    let addr = first
        .strip_prefix("LISTENING ")
        .expect(&first)
        .parse()
        .unwrap();
    (child, lines, addr)
}

async fn echo_once(addr: SocketAddr) -> TcpStream {
    let mut c = TcpStream::connect(addr).await.unwrap();
    c.write_all(b"hello").await.unwrap();
    let mut b = [0; 5];
    c.read_exact(&mut b).await.unwrap();
    assert_eq!(&b, b"hello");
    c
}

#[tokio::test]
async fn stdin_commands_and_stats_on_eof() {
    bounded(async {
        let upstream = echo_server().await;
        let upstream = upstream.to_string();
        let (mut child, mut lines, addr) = spawn(&[
            "--upstream",
            &upstream,
            "--seed",
            "7",
            "--cut-after",
            "100..200",
            "--calm",
        ])
        .await;
        let mut stdin = child.stdin.take().unwrap();
        let mut command = async |c: &str| {
            stdin.write_all(format!("{c}\n").as_bytes()).await.unwrap();
            lines.next_line().await.unwrap().unwrap()
        };
        let mut c = echo_once(addr).await;
        let stats: serde_json::Value = serde_json::from_str(&command("stats").await).unwrap();
        assert_eq!(stats["seed"], 7);
        assert_eq!(stats["connections"], 1);
        assert_eq!(stats["bytes_client_to_server"], 5);
        assert_eq!(command("cut").await, "OK cut 1");
        let mut rest = Vec::new();
        let _ = c.read_to_end(&mut rest).await;
        assert_eq!(command("wild").await, "OK wild");
        assert_eq!(command("calm").await, "OK calm");
        assert!(command("dance").await.starts_with("ERR"));
        drop(stdin);
        let last: serde_json::Value =
            serde_json::from_str(&lines.next_line().await.unwrap().unwrap()).unwrap();
        assert_eq!(last["cuts"], 1);
        assert_eq!(last["manual_cuts"], 1);
        assert!(child.wait().await.unwrap().success());
    })
    .await;
}

#[cfg(unix)]
#[tokio::test]
async fn sigterm_prints_stats_and_exits() {
    bounded(async {
        let upstream = echo_server().await.to_string();
        // Two upstreams (the same one twice) and a fixed cut point.
        let (mut child, mut lines, addr) = spawn(&[
            "--upstream",
            &upstream,
            "--upstream",
            &upstream,
            "--cut-after",
            "3",
        ])
        .await;
        let mut c = TcpStream::connect(addr).await.unwrap();
        let _ = c.write_all(b"hello").await;
        let mut got = Vec::new();
        let _ = c.read_to_end(&mut got).await;
        // Cut right after the proxy wrote "hel" upstream, before any echo.
        assert!(got.is_empty());
        let pid = child.id().unwrap().to_string();
        let status = Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .await
            .unwrap();
        assert!(status.success());
        let last: serde_json::Value =
            serde_json::from_str(&lines.next_line().await.unwrap().unwrap()).unwrap();
        assert_eq!(last["cuts"], 1);
        assert_eq!(last["bytes_client_to_server"], 3);
        assert_eq!(last["bytes_server_to_client"], 0);
        assert!(child.wait().await.unwrap().success());
    })
    .await;
}

#[tokio::test]
async fn rejects_a_bad_range_and_a_public_address() {
    for args in [
        &["--upstream", "127.0.0.1:1", "--cut-after", "0..5"][..],
        &["--upstream", "127.0.0.1:1", "--cut-after", "9..5"][..],
        &["--upstream", "192.0.2.1:1"][..],
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_webwire-faultproxy"))
            .args(args)
            .stdin(Stdio::null())
            .output()
            .await
            .unwrap();
        assert!(!out.status.success(), "{args:?}");
        assert!(out.stdout.is_empty());
    }
}
