//! Control frames and closing under hostile clients, over raw sockets: a
//! client that floods pings and never reads is closed as a stalled writer
//! (the pongs count toward the write budget), and a client that keeps
//! sending past a violation still receives the close frame, not a reset
//! (lingering close).

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::{eventually, reporting_router, within, TestServer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::mpsc;
use webwire_proto::{ClientMessage, Name, Payload, Request, RequestId};
use webwire_server::{error::DisconnectReason, ReplyError, Server};

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
        Server::builder(reporting_router(reasons_tx)).queue_timeout(Duration::from_millis(500)),
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

/// Reads raw server frames until a close frame: its code, or the error
/// that ended the stream first (a reset).
async fn read_close_code(read: &mut (impl AsyncReadExt + Unpin)) -> Result<u16, std::io::Error> {
    let mut buf = Vec::new();
    loop {
        // One whole frame in `buf`? (server frames are not masked)
        if buf.len() >= 2 {
            let (len, at) = match buf[1] & 0x7f {
                126 if buf.len() >= 4 => (usize::from(u16::from_be_bytes([buf[2], buf[3]])), 4),
                127 if buf.len() >= 10 => (
                    usize::try_from(u64::from_be_bytes(buf[2..10].try_into().unwrap())).unwrap(),
                    10,
                ),
                126 | 127 => (usize::MAX, 0),
                len => (usize::from(len), 2),
            };
            if len != usize::MAX && buf.len() >= at + len {
                if buf[0] & 0x0f == 0x8 {
                    assert!(len >= 2, "a close frame without a code");
                    return Ok(u16::from_be_bytes([buf[at], buf[at + 1]]));
                }
                buf.drain(..at + len);
                continue;
            }
        }
        let mut chunk = [0u8; 4096];
        match read.read(&mut chunk).await {
            Ok(0) => {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    "the stream ended without a close frame",
                ))
            }
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(err) => return Err(err),
        }
    }
}

/// Regression (hardening issue, item 8): a client sending a message over
/// the buffer size did not always get the 1009 close frame: the server
/// closed the socket with the rest of the message unread, which makes the
/// kernel send a reset and drop what it has not sent yet, the close frame
/// included, whenever the client was not reading fast enough to have taken
/// it already. The server now shuts its side down after the close frame,
/// and reads and discards (bounded in time and bytes) before closing.
///
/// Here the client's small receive window is full of replies when it sends
/// the oversized message, so the close frame waits in the server's send
/// buffer: the old code lost it (and the replies) in every round.
#[tokio::test]
async fn a_client_sending_past_the_size_limit_receives_the_close_frame_not_a_reset() {
    const ROUNDS: usize = 3;
    const BUFFER: usize = 16 * 1024;
    const REPLIES: usize = 6;
    // The message's header says this much, and the client sends a good
    // part of it after the server has refused it, before it reads.
    const CLAIMED: usize = 1 << 20;
    const SENT: usize = 256 * 1024;
    let (reasons_tx, mut reasons) = mpsc::unbounded_channel();
    let router = reporting_router(reasons_tx).request("fill", |_: Payload| async move {
        Ok::<_, ReplyError>(vec![b'r'; BUFFER - 1024])
    });
    // The linger lasts at most the close timeout: longer than any wait here.
    let server = TestServer::start(
        Server::builder(router)
            .message_buffer_size(BUFFER)
            .close_timeout(Duration::from_secs(30)),
    )
    .await;
    for round in 0..ROUNDS {
        let mut tcp = raw_connect(server.addr, Some(4096)).await;
        eventually("connected", || server.server.connection_count() == 1).await;
        let conn = server.server.connections().remove(0);
        // Replies the client does not read yet: more than its window.
        for id in 1..=REPLIES as u64 {
            let request = Request::new(
                RequestId::from(id),
                Name::try_from("fill").unwrap(),
                Payload::utf8("x"),
            )
            .unwrap();
            let bytes = ClientMessage::Request(request).to_bytes();
            let mut frame = frame_header(0x2, bytes.len());
            frame.extend_from_slice(&bytes);
            tcp.write_all(&frame).await.unwrap();
        }
        eventually("the replies written", || {
            conn.stats().messages_sent > REPLIES as u64
        })
        .await;

        // The oversized message, and much of its rest after the limit (a
        // write failure is the old code's reset).
        let _ = tcp.write_all(&frame_header(0x2, CLAIMED)).await;
        let chunk = [b'x'; 4096];
        for _ in 0..SENT / chunk.len() {
            // A write that fails (the old code's reset) or that waits (the
            // server's buffers are full) ends the sending.
            match tokio::time::timeout(Duration::from_secs(2), tcp.write_all(&chunk)).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) | Err(_) => break,
            }
        }
        // Reading only once the old code would have closed the socket (it
        // reported the disconnect at once); the fixed server lingers until
        // the client closes, far longer than this.
        let early = tokio::time::timeout(Duration::from_secs(1), reasons.recv()).await;
        let code = within("the close frame", read_close_code(&mut tcp)).await;
        assert_eq!(code.as_ref().ok(), Some(&1009), "round {round}: {code:?}");
        drop(tcp);
        let reason = match early {
            Ok(reason) => reason,
            Err(_) => within("reason", reasons.recv()).await,
        };
        assert!(
            matches!(
                reason,
                Some(DisconnectReason::MessageTooBig { max: BUFFER, .. })
            ),
            "{reason:?}"
        );
        eventually("unregistered", || server.server.connection_count() == 0).await;
    }
    server.stop().await;
}
