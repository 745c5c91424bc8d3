//! What the interop server does that the Rust client cannot show: upgrades
//! from any Origin, on any path, and the accept configuration's bytes.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use webwire_interop::serve::{self, ServeOptions};

/// Sends an upgrade request and returns the response head and the first
/// bytes after it.
async fn upgrade(addr: std::net::SocketAddr, path: &str, origin: &str) -> (String, Vec<u8>) {
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\
         Origin: {origin}\r\n\r\n"
    );
    tcp.write_all(request.as_bytes()).await.unwrap();
    let mut received = Vec::new();
    let mut buf = [0; 1024];
    let read = async {
        loop {
            let n = tcp.read(&mut buf).await.unwrap();
            assert!(n > 0, "closed after {received:?}");
            received.extend_from_slice(&buf[..n]);
            if let Some(end) = received.windows(4).position(|w| w == b"\r\n\r\n") {
                // The AcceptConf frame follows the head: 2 bytes of frame
                // header, then 11 + 7 bytes of message.
                if received.len() >= end + 4 + 2 + 18 {
                    let head = String::from_utf8_lossy(&received[..end]).into_owned();
                    return (head, received[end + 4..].to_vec());
                }
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(10), read)
        .await
        .expect("no answer to the upgrade")
}

#[tokio::test]
async fn any_origin_any_path_and_the_accept_conf_bytes() {
    let server = serve::start(ServeOptions::new("127.0.0.1:0"))
        .await
        .unwrap();
    let addr = server.local_addr();
    for (path, origin) in [
        ("/", "https://elsewhere.example"),
        ("/deep/path?q=1", "http://localhost:1234"),
        ("/x", "null"),
    ] {
        let (head, frame) = upgrade(addr, path, origin).await;
        assert!(
            head.starts_with("HTTP/1.1 101"),
            "{path} from {origin}: {head}"
        );
        // A binary frame (0x82) of 18 bytes: type 23, version 2.0, 3000 ms,
        // 1048576 bytes, "interop".
        let mut expected = vec![0x82, 18, 23, 2, 0];
        expected.extend_from_slice(&3000u32.to_le_bytes());
        expected.extend_from_slice(&1_048_576u32.to_le_bytes());
        expected.extend_from_slice(b"interop");
        assert_eq!(frame[..20], expected[..], "{path}");
    }
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_temporary_session_folder_is_made_and_removed() {
    let server = serve::start(ServeOptions::new("127.0.0.1:0"))
        .await
        .unwrap();
    let dir = server.session_dir().to_path_buf();
    assert!(dir.is_dir());
    server.shutdown().await.unwrap();
    assert!(!dir.exists());
}
