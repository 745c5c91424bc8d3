//! The heap an idle connection holds, counted (not timed): connections
//! that did a request and went quiet keep no WebSocket buffer, whatever
//! the largest message configured. (tokio-websockets kept an 8 KiB read
//! buffer per connection, with no setting; the server's resident memory
//! per idle connection is measured in BENCHMARKS.md.)

use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};
use webwire_proto::{ClientMessage, Name, Payload, Request, RequestId};
use webwire_server::{MessageRouter, ReplyError, Server};

#[global_allocator]
static ALLOC: dhat::Alloc = dhat::Alloc;

/// Connections measured.
const CONNECTIONS: usize = 64;

/// The most heap one idle connection may hold, both ends of its in-memory
/// pipe included: 2.9 KiB now; 12.3 KiB with tokio-websockets (6603840).
const MAX_BYTES_PER_CONNECTION: usize = 6 * 1024;

/// A client's WebSocket frame: binary, final, masked with a zero key.
fn client_frame(payload: &[u8]) -> Vec<u8> {
    assert!(payload.len() < 126);
    let mut frame = vec![0x82, 0x80 | payload.len() as u8, 0, 0, 0, 0];
    frame.extend_from_slice(payload);
    frame
}

/// Reads until `buf` ends with a whole frame after `from`.
async fn read_frame(pipe: &mut DuplexStream, acc: &mut Vec<u8>, from: usize) {
    let mut chunk = [0u8; 1024];
    loop {
        if acc.len() >= from + 2 && acc.len() >= from + 2 + usize::from(acc[from + 1] & 0x7f) {
            return;
        }
        let n = pipe.read(&mut chunk).await.unwrap();
        assert!(n > 0, "the server closed");
        acc.extend_from_slice(&chunk[..n]);
    }
}

/// Upgrades, takes the accept configuration, does one request.
async fn connect_and_request(server: &Server) -> DuplexStream {
    let mut pipe = server.connect_in_memory();
    pipe.write_all(
        b"GET / HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
          Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
    )
    .await
    .unwrap();
    let mut acc = Vec::new();
    let mut chunk = [0u8; 1024];
    let head_end = loop {
        if let Some(at) = acc.windows(4).position(|w| w == b"\r\n\r\n") {
            break at + 4;
        }
        let n = pipe.read(&mut chunk).await.unwrap();
        assert!(n > 0, "the server closed");
        acc.extend_from_slice(&chunk[..n]);
    };
    read_frame(&mut pipe, &mut acc, head_end).await;
    let request = Request::new(
        RequestId::from(1),
        Name::from_static("echo"),
        Payload::binary(vec![7u8; 64]),
    )
    .unwrap();
    pipe.write_all(&client_frame(&ClientMessage::Request(request).to_bytes()))
        .await
        .unwrap();
    let mut reply = Vec::new();
    read_frame(&mut pipe, &mut reply, 0).await;
    assert_eq!(reply[2], 193 - 2, "a binary reply");
    pipe
}

#[test]
fn an_idle_connection_holds_no_websocket_buffer() {
    let _profiler = dhat::Profiler::builder().testing().build();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let router = MessageRouter::new()
            .request("echo", |p: Payload| async move { Ok::<_, ReplyError>(p) });
        // The largest message configured does not size anything an idle
        // connection holds.
        let server = Server::builder(router)
            .message_buffer_size(16 << 20)
            .build()
            .unwrap();
        // One first, so that what exists once per server or thread (the
        // registry's table, buffers kept per thread) is there already.
        let first = connect_and_request(&server).await;
        let before = dhat::HeapStats::get().curr_bytes;
        let mut pipes = Vec::new();
        for _ in 0..CONNECTIONS {
            pipes.push(connect_and_request(&server).await);
        }
        // The connection tasks go back to waiting.
        for _ in 0..10 {
            tokio::task::yield_now().await;
        }
        let per_connection = (dhat::HeapStats::get().curr_bytes - before) / CONNECTIONS;
        eprintln!("heap per idle connection: {per_connection} B");
        assert_eq!(server.connection_count(), CONNECTIONS + 1);
        assert!(
            per_connection <= MAX_BYTES_PER_CONNECTION,
            "{per_connection} B per idle connection"
        );
        drop((first, pipes));
        server.shutdown().await;
    });
}
