//! Control frames under hostile clients, over raw sockets: a client that
//! floods pings and never reads is closed as a stalled writer (the pongs
//! count toward the write budget).

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::{within, TestServer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::mpsc;
use webwire_server::{Connection, DisconnectReason, Router, Server};

fn reporting_router(reasons: mpsc::UnboundedSender<DisconnectReason>) -> Router {
    Router::new().on_disconnect(move |_conn: Connection, reason: DisconnectReason| {
        let reasons = reasons.clone();
        async move {
            let _ = reasons.send(reason);
        }
    })
}

/// Connects with a small receive buffer (so that the server's writes stall
/// soon) and does the WebSocket upgrade by hand. What follows the
/// response's headers (the accept configuration) is left unread.
async fn raw_connect(addr: SocketAddr, recv_buffer: Option<u32>) -> TcpStream {
    let socket = TcpSocket::new_v4().unwrap();
    if let Some(size) = recv_buffer {
        socket.set_recv_buffer_size(size).unwrap();
    }
    let mut tcp = within("connect", socket.connect(addr)).await.unwrap();
    tcp.set_nodelay(true).unwrap();
    let request = format!(
        "GET / HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    );
    tcp.write_all(request.as_bytes()).await.unwrap();
    // Byte by byte up to the end of the headers: nothing after them is taken.
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let mut byte = [0u8; 1];
        let n = within("the upgrade response", tcp.read(&mut byte))
            .await
            .unwrap();
        assert_eq!(n, 1, "the server closed during the upgrade");
        head.push(byte[0]);
    }
    assert!(
        head.starts_with(b"HTTP/1.1 101"),
        "{}",
        String::from_utf8_lossy(&head)
    );
    tcp
}

/// A masked client frame header (mask key zero, so the payload goes as is).
fn frame_header(opcode: u8, len: usize) -> Vec<u8> {
    let mut header = vec![0x80 | opcode];
    if len < 126 {
        header.push(0x80 | len as u8);
    } else if len <= usize::from(u16::MAX) {
        header.push(0x80 | 126);
        header.extend_from_slice(&(len as u16).to_be_bytes());
    } else {
        header.push(0x80 | 127);
        header.extend_from_slice(&(len as u64).to_be_bytes());
    }
    header.extend_from_slice(&[0, 0, 0, 0]);
    header
}

/// Regression (hardening issue, item 1): the WebSocket stream answers
/// every ping with a pong it queues itself, outside the connection's write
/// budget, and the task went on reading pings while the socket took
/// nothing: a client that sent pings and never read grew the server by
/// about 30 bytes per ping, without end, and stayed connected (the stall
/// check only looked at the outbound queue, which stayed empty). A ping
/// now waits, like a reply, for room in the stream: the task stops
/// reading, and the stall timeout closes the connection.
#[tokio::test]
async fn a_client_flooding_pings_without_reading_is_closed_as_stalled() {
    // Pings with the largest payload a control frame may carry: the
    // socket buffers fill with the fewest frames.
    const PAYLOAD: usize = 125;
    // Far more than the socket buffers on both sides hold: on the old code
    // all of it was read and answered into memory.
    const FLOOD: usize = 48 << 20;
    let (reasons_tx, mut reasons) = mpsc::unbounded_channel();
    let server = TestServer::start(
        Server::builder(reporting_router(reasons_tx))
            .queue_timeout(Duration::from_millis(500)),
    )
    .await;
    let tcp = raw_connect(server.addr, Some(4096)).await;
    let (_read, mut write) = tcp.into_split();
    let flood = tokio::spawn(async move {
        let mut ping = frame_header(0x9, PAYLOAD);
        ping.extend_from_slice(&[b'p'; PAYLOAD]);
        let chunk = ping.repeat(64 * 1024 / ping.len());
        let mut sent = 0;
        while sent < FLOOD {
            if write.write_all(&chunk).await.is_err() {
                break;
            }
            sent += chunk.len();
        }
        // Kept open (unread) until the test ends.
        (write, sent)
    });

    let reason = within("the server to close the connection", reasons.recv()).await;
    assert_eq!(reason, Some(DisconnectReason::QueueStalled));
    let (_write, sent) = within("the flood to end", flood).await.unwrap();
    assert!(sent < FLOOD, "the server read all {sent} bytes of pings");
    server.stop().await;
}
