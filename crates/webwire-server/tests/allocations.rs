//! Allocations per request on the server's common path, counted (not
//! timed): a router's request whose handler finishes at its first poll.
//! The client side is raw bytes written and read in buffers made before
//! counting starts, so what is counted is the server's.

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use webwire_proto::{ClientMessage, Name, Payload, Request, RequestId};
use webwire_server::{MessageRouter, ReplyError, Server};

#[global_allocator]
static ALLOC: dhat::Alloc = dhat::Alloc;

/// A client's WebSocket frame: binary, final, masked with a zero key (the
/// payload stays as it is).
fn client_frame(payload: &[u8]) -> Vec<u8> {
    assert!(payload.len() < 126);
    let mut frame = vec![0x82, 0x80 | payload.len() as u8, 0, 0, 0, 0];
    frame.extend_from_slice(payload);
    frame
}

/// Writes a batch of requests and reads their replies.
async fn round(pipe: &mut tokio::io::DuplexStream, batch: &[u8], replies: &mut [u8]) {
    pipe.write_all(batch).await.unwrap();
    pipe.read_exact(replies).await.unwrap();
}

#[test]
fn a_routed_request_costs_at_most_one_allocation_of_ours() {
    let _profiler = dhat::Profiler::builder().testing().build();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let router = MessageRouter::new()
            .request("echo", |p: Payload| async move { Ok::<_, ReplyError>(p) });
        let server = Server::builder(router).build().unwrap();
        let mut pipe = server.connect_in_memory();
        pipe.write_all(
            b"GET / HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
              Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
        )
        .await
        .unwrap();
        // The 101 head, then the accept configuration's frame.
        let mut acc = Vec::new();
        let mut buf = vec![0u8; 4096];
        let conf_end = loop {
            if let Some(at) = acc.windows(4).position(|w| w == b"\r\n\r\n") {
                let conf = at + 4;
                if acc.len() >= conf + 2 && acc.len() >= conf + 2 + usize::from(acc[conf + 1]) {
                    break conf + 2 + usize::from(acc[conf + 1]);
                }
            }
            let n = pipe.read(&mut buf).await.unwrap();
            assert!(n > 0, "the server closed");
            acc.extend_from_slice(&buf[..n]);
        };
        assert_eq!(acc.len(), conf_end, "nothing else before the first request");

        let request = |id: u64| {
            let request = Request::new(
                RequestId::from(id),
                Name::from_static("echo"),
                Payload::binary(vec![7u8; 16]),
            )
            .unwrap();
            client_frame(&ClientMessage::Request(request).to_bytes())
        };
        // A reply frame: 2 bytes of frame head, type, id, 16 bytes.
        const REPLY: usize = 2 + 1 + 8 + 16;
        const ROUNDS: u64 = 500;
        const BATCH: u64 = 8;
        let batch: Vec<u8> = (0..BATCH).flat_map(|i| request(i + 1)).collect();
        let mut replies = vec![0u8; REPLY * BATCH as usize];
        // Warm up: buffers reach their working size.
        for _ in 0..50 {
            round(&mut pipe, &batch, &mut replies).await;
        }
        assert_eq!(replies[2], 193 - 2, "a binary reply");

        let before = dhat::HeapStats::get().total_blocks;
        for _ in 0..ROUNDS {
            round(&mut pipe, &batch, &mut replies).await;
        }
        let blocks = dhat::HeapStats::get().total_blocks - before;
        let per_request = blocks as f64 / (ROUNDS * BATCH) as f64;
        eprintln!("allocations per request: {per_request:.3}");
        // The handler's future, boxed once by the router; nothing per batch
        // (its vector comes from the thread's pool) and nothing per reply
        // (encoded into a reused buffer).
        assert!(
            per_request <= 1.01,
            "{per_request:.3} allocations per request"
        );
        drop(pipe);
        server.shutdown().await;
    });
}
