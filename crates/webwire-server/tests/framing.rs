//! WebSocket framing over real sockets, as the server answers it: frames
//! written by hand (the test client's library would not send bad ones),
//! the server's frames read raw. The rules one by one are tested in
//! `wire::frame` and `wire::socket`; here, that the connection closes with
//! their codes and reports the reason.

mod common;

use std::net::SocketAddr;

use common::{echo_router, within, TestServer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use webwire_proto::{ClientMessage, Name, Payload, Request, RequestId, ServerMessage};
use webwire_server::{error::DisconnectReason, Server};

/// Upgrades by hand and reads the accept configuration's frame.
async fn connect(addr: SocketAddr) -> TcpStream {
    let mut tcp = within("connect", TcpStream::connect(addr)).await.unwrap();
    tcp.set_nodelay(true).unwrap();
    let request = format!(
        "GET / HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    );
    tcp.write_all(request.as_bytes()).await.unwrap();
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let mut byte = [0u8; 1];
        assert_eq!(within("upgrade", tcp.read(&mut byte)).await.unwrap(), 1);
        head.push(byte[0]);
    }
    assert!(head.starts_with(b"HTTP/1.1 101"));
    let (op, _) = read_frame(&mut tcp).await;
    assert_eq!(op, 0x2, "the accept configuration");
    tcp
}

/// A client frame, masked with a key that changes the bytes.
fn frame(fin: bool, op: u8, payload: &[u8]) -> Vec<u8> {
    let mask = [0x37, 0xfa, 0x21, 0x3d];
    let mut out = vec![if fin { 0x80 } else { 0 } | op];
    if payload.len() < 126 {
        out.push(0x80 | payload.len() as u8);
    } else {
        out.push(0x80 | 126);
        out.extend_from_slice(&(payload.len() as u16).to_be_bytes());
    }
    out.extend_from_slice(&mask);
    out.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    out
}

/// One server frame: opcode and payload (server frames are not masked).
async fn read_frame(tcp: &mut TcpStream) -> (u8, Vec<u8>) {
    let mut head = [0u8; 2];
    within("a frame", tcp.read_exact(&mut head)).await.unwrap();
    assert_eq!(head[0] & 0xF0, 0x80, "final, no reserved bits");
    assert_eq!(head[1] & 0x80, 0, "not masked");
    let len = match head[1] & 0x7F {
        126 => {
            let mut len = [0u8; 2];
            tcp.read_exact(&mut len).await.unwrap();
            usize::from(u16::from_be_bytes(len))
        }
        127 => {
            let mut len = [0u8; 8];
            tcp.read_exact(&mut len).await.unwrap();
            usize::try_from(u64::from_be_bytes(len)).unwrap()
        }
        len => usize::from(len),
    };
    let mut payload = vec![0u8; len];
    within("a payload", tcp.read_exact(&mut payload))
        .await
        .unwrap();
    (head[0] & 0x0F, payload)
}

/// The close frame's code and reason.
async fn read_close(tcp: &mut TcpStream) -> (u16, String) {
    loop {
        let (op, payload) = read_frame(tcp).await;
        if op == 0x8 {
            assert!(payload.len() >= 2);
            let reason = String::from_utf8(payload[2..].to_vec()).unwrap();
            return (u16::from_be_bytes([payload[0], payload[1]]), reason);
        }
    }
}

fn echo_request(id: u64, text: &str) -> Vec<u8> {
    let request = Request::new(
        RequestId::from(id),
        Name::from_static("echo"),
        Payload::utf8(text),
    )
    .unwrap();
    ClientMessage::Request(request).to_bytes().to_vec()
}

#[tokio::test]
async fn framing_errors_close_with_their_code_and_reason() {
    let (reasons_tx, mut reasons) = mpsc::unbounded_channel();
    let server = TestServer::start(Server::builder(echo_router(reasons_tx))).await;
    let mut reserved_bit = frame(true, 0x2, b"x");
    reserved_bit[0] |= 0x20;
    let mut bad_reason = 1000u16.to_be_bytes().to_vec();
    bad_reason.extend_from_slice(&[0xC3, 0x28]);
    let cases: Vec<(&str, Vec<u8>, u16, &str)> = vec![
        (
            "unmasked",
            vec![0x82, 0x01, b'x'],
            1002,
            "unexpected unmasked frame",
        ),
        (
            "reserved opcode",
            frame(true, 0x3, b""),
            1002,
            "invalid opcode",
        ),
        ("reserved bit", reserved_bit, 1002, "invalid extension"),
        (
            "continuation without a message",
            frame(true, 0x0, b"x"),
            1002,
            "invalid opcode",
        ),
        (
            "fragmented ping",
            frame(false, 0x9, b""),
            1002,
            "fragmented control frame",
        ),
        (
            "ping over 125 bytes",
            frame(true, 0x9, &[0; 126]),
            1002,
            "invalid payload length",
        ),
        (
            "reserved close code",
            frame(true, 0x8, &1006u16.to_be_bytes()),
            1002,
            "invalid close code",
        ),
        (
            "close reason not UTF-8",
            frame(true, 0x8, &bad_reason),
            1007,
            "invalid utf8",
        ),
    ];
    for (what, bytes, code, text) in cases {
        let mut tcp = connect(server.addr).await;
        tcp.write_all(&bytes).await.unwrap();
        assert_eq!(
            read_close(&mut tcp).await,
            (code, text.to_owned()),
            "{what}"
        );
        // Gone: the server's lingering close ends at once.
        drop(tcp);
        let reason = within("reason", reasons.recv()).await.unwrap();
        assert_eq!(
            reason,
            DisconnectReason::WebSocketError(text.replace("utf8", "utf-8")),
            "{what}"
        );
    }
    server.stop().await;
}

#[tokio::test]
async fn a_fragmented_request_with_a_ping_between_its_fragments() {
    let (reasons_tx, _reasons) = mpsc::unbounded_channel();
    let server = TestServer::start(Server::builder(echo_router(reasons_tx))).await;
    let mut tcp = connect(server.addr).await;
    let request = echo_request(7, "in three parts");
    let (a, rest) = request.split_at(5);
    let (b, c) = rest.split_at(6);
    tcp.write_all(&frame(false, 0x2, a)).await.unwrap();
    tcp.write_all(&frame(true, 0x9, b"between")).await.unwrap();
    tcp.write_all(&frame(false, 0x0, b)).await.unwrap();
    tcp.write_all(&frame(true, 0xA, b"")).await.unwrap();
    tcp.write_all(&frame(true, 0x0, c)).await.unwrap();
    assert_eq!(read_frame(&mut tcp).await, (0xA, b"between".to_vec()));
    let (op, reply) = read_frame(&mut tcp).await;
    assert_eq!(op, 0x2);
    match ServerMessage::parse(reply.into()).unwrap() {
        ServerMessage::Reply(reply) => {
            assert_eq!(reply.id, RequestId::from(7));
            assert_eq!(reply.payload.to_text().unwrap(), "in three parts");
        }
        other => panic!("{other:?}"),
    }
    // A 16-bit length.
    let long = "x".repeat(300);
    tcp.write_all(&frame(true, 0x2, &echo_request(8, &long)))
        .await
        .unwrap();
    let (_, reply) = read_frame(&mut tcp).await;
    assert!(reply.ends_with(long.as_bytes()));
    server.stop().await;
}

#[tokio::test]
async fn the_clients_close_is_answered_with_its_code() {
    let (reasons_tx, mut reasons) = mpsc::unbounded_channel();
    let server = TestServer::start(Server::builder(echo_router(reasons_tx))).await;
    let mut tcp = connect(server.addr).await;
    let mut close = 4000u16.to_be_bytes().to_vec();
    close.extend_from_slice(b"done");
    tcp.write_all(&frame(true, 0x8, &close)).await.unwrap();
    assert_eq!(read_close(&mut tcp).await, (4000, String::new()));
    // Then the server closes the socket.
    let mut rest = Vec::new();
    within("the end", tcp.read_to_end(&mut rest)).await.unwrap();
    assert!(rest.is_empty());
    assert_eq!(
        within("reason", reasons.recv()).await,
        Some(DisconnectReason::ClientClosed {
            code: Some(4000),
            reason: "done".into()
        })
    );
    server.stop().await;
}
