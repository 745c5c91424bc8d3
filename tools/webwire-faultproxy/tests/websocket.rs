//! The observer over real WebSocket traffic through the proxy
//! (tokio-websockets on both ends, or hand-made frames).

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_websockets::{ClientBuilder, Config, Message, ServerBuilder, WebSocketStream};
use webwire_faultproxy::{CutTrigger, FaultProxy};

type Ws = WebSocketStream<TcpStream>;

async fn bounded<F: Future>(f: F) -> F::Output {
    tokio::time::timeout(Duration::from_secs(30), f)
        .await
        .expect("test timed out")
}

/// A WebSocket server whose accepted connections the test drives.
async fn ws_server(config: Config) -> (SocketAddr, mpsc::UnboundedReceiver<Ws>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let tx = tx.clone();
            tokio::spawn(async move {
                if let Ok((_, ws)) = ServerBuilder::new().config(config).accept(tcp).await {
                    let _ = tx.send(ws);
                }
            });
        }
    });
    (addr, rx)
}

async fn ws_client(proxy: SocketAddr, config: Config) -> Result<Ws, tokio_websockets::Error> {
    let tcp = TcpStream::connect(proxy).await?;
    let (ws, _) = ClientBuilder::new()
        .uri(&format!("ws://{proxy}/"))
        .unwrap()
        .config(config)
        .connect_on(tcp)
        .await?;
    Ok(ws)
}

/// A webwire message with a request id: `[ty][id 8][filler]`.
fn with_id(ty: u8, id: u64, filler: usize) -> Vec<u8> {
    let mut m = vec![ty];
    m.extend_from_slice(&id.to_le_bytes());
    m.extend(std::iter::repeat_n(b'z', filler));
    m
}

/// A binary signal with an empty name: `[63][0][payload]`.
fn signal(len: usize) -> Vec<u8> {
    let mut m = vec![63, 0];
    m.extend(std::iter::repeat_n(b's', len));
    m
}

/// The next data message (pings and pongs skipped).
async fn next_data(ws: &mut Ws) -> Option<Vec<u8>> {
    loop {
        let m = ws.next().await?.ok()?;
        if m.is_binary() || m.is_text() {
            return Some(m.into_payload().to_vec());
        }
    }
}

#[tokio::test]
async fn counts_fragmented_requests_replies_and_signals() {
    bounded(async {
        // Frames of 4 bytes: every message is fragmented and each id
        // spans three frames.
        let config = Config::default().frame_size(4);
        let (upstream, mut accepted) = ws_server(config).await;
        let proxy = FaultProxy::builder([upstream])
            .cutting(false)
            .start()
            .await
            .unwrap();
        let mut client = ws_client(proxy.local_addr(), config).await.unwrap();
        let mut server = accepted.recv().await.unwrap();

        // A request, a UTF-8 request, a close-session request and a signal.
        for m in [
            with_id(127, 1, 10),
            with_id(128, 2, 0),
            with_id(31, 3, 0),
            signal(5),
        ] {
            client.send(Message::binary(m)).await.unwrap();
        }
        for _ in 0..4 {
            next_data(&mut server).await.unwrap();
        }
        // Replies to 1 (binary reply) and 3 (ReplyError), and a signal.
        let mut error = with_id(0, 3, 0);
        error.extend_from_slice(b"\x04CODEmessage");
        for m in [with_id(191, 1, 3), error, signal(20)] {
            server.send(Message::binary(m)).await.unwrap();
        }
        for _ in 0..3 {
            next_data(&mut client).await.unwrap();
        }
        assert_eq!(proxy.cut_all().await, 1);
        let log = proxy.cut_log();
        assert_eq!(log.len(), 1);
        let r = log[0];
        assert_eq!(r.trigger, CutTrigger::Manual);
        assert!(r.observed);
        // Request 2 still waits for its reply.
        assert_eq!(r.requests_in_flight, 1);
        assert!(!r.signal_in_flight);
        assert!(!r.mid_frame);
        let stats = proxy.stats();
        assert_eq!(stats.requests_forwarded, 3);
        assert_eq!(stats.replies_forwarded, 2);
        assert_eq!(stats.signals_forwarded, 2);
        assert_eq!(
            (
                stats.cuts_with_requests_in_flight,
                stats.cuts_with_signals_in_flight,
                stats.cuts_mid_frame
            ),
            (1, 0, 0)
        );
    })
    .await;
}

const MASK: [u8; 4] = [0xa1, 0x0b, 0x5c, 0xd3];

fn masked_frame(fin: bool, opcode: u8, payload: &[u8]) -> Vec<u8> {
    assert!(payload.len() <= 125);
    let mut f = vec![u8::from(fin) << 7 | opcode, 0x80 | payload.len() as u8];
    f.extend_from_slice(&MASK);
    f.extend(payload.iter().enumerate().map(|(i, b)| b ^ MASK[i % 4]));
    f
}

/// Reads one unmasked server frame: (fin, opcode, payload).
async fn read_frame(s: &mut TcpStream) -> (bool, u8, Vec<u8>) {
    let mut h = [0; 2];
    s.read_exact(&mut h).await.unwrap();
    let len = match h[1] & 0x7f {
        126 => {
            let mut l = [0; 2];
            s.read_exact(&mut l).await.unwrap();
            usize::from(u16::from_be_bytes(l))
        }
        127 => panic!("unexpected huge frame"),
        n => usize::from(n),
    };
    let mut payload = vec![0; len];
    s.read_exact(&mut payload).await.unwrap();
    (h[0] & 0x80 != 0, h[0] & 0x0f, payload)
}

#[tokio::test]
async fn follows_a_ping_between_fragments_and_a_fragmented_reply() {
    bounded(async {
        let (upstream, mut accepted) = ws_server(Config::default().frame_size(3)).await;
        let proxy = FaultProxy::builder([upstream])
            .cutting(false)
            .start()
            .await
            .unwrap();
        let mut raw = TcpStream::connect(proxy.local_addr()).await.unwrap();
        raw.write_all(
            b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
              Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
        )
        .await
        .unwrap();
        let mut head = Vec::new();
        while !head.ends_with(b"\r\n\r\n") {
            let mut b = [0];
            raw.read_exact(&mut b).await.unwrap();
            head.push(b[0]);
        }
        assert!(head.starts_with(b"HTTP/1.1 101"));
        let mut server = accepted.recv().await.unwrap();

        // Two keyed requests (type 130); the first one in fragments: an
        // empty first frame, the type byte alone, a ping, the id split, a
        // pong, the rest.
        let first = with_id(130, 5, 6);
        let mut bytes = masked_frame(false, 2, &[]);
        bytes.extend(masked_frame(false, 0, &first[..1]));
        bytes.extend(masked_frame(true, 9, b"ping"));
        bytes.extend(masked_frame(false, 0, &first[1..4]));
        bytes.extend(masked_frame(true, 10, b""));
        bytes.extend(masked_frame(true, 0, &first[4..]));
        bytes.extend(masked_frame(true, 2, &with_id(130, 6, 0)));
        raw.write_all(&bytes).await.unwrap();
        assert_eq!(next_data(&mut server).await.unwrap(), first);
        assert_eq!(next_data(&mut server).await.unwrap(), with_id(130, 6, 0));

        // The server answers 5 in 3-byte frames; the client reads frames
        // until the reply's last one (the pong may come first).
        let reply = with_id(191, 5, 7);
        server.send(Message::binary(reply.clone())).await.unwrap();
        let mut assembled = Vec::new();
        loop {
            let (fin, opcode, payload) = read_frame(&mut raw).await;
            if opcode >= 8 {
                continue;
            }
            assembled.extend(payload);
            if fin {
                break;
            }
        }
        assert_eq!(assembled, reply);

        assert_eq!(proxy.cut_all().await, 1);
        let r = proxy.cut_log()[0];
        assert!(r.observed);
        assert_eq!(r.requests_in_flight, 1, "request 6 had no reply");
        assert!(!r.mid_frame);
        let stats = proxy.stats();
        assert_eq!((stats.requests_forwarded, stats.replies_forwarded), (2, 1));
        assert_eq!(stats.unobserved_connections, 0);
    })
    .await;
}

#[tokio::test]
async fn a_seeded_cut_inside_a_signal_is_counted() {
    bounded(async {
        let (upstream, mut accepted) = ws_server(Config::default()).await;
        // Every cut point of a direction 3000 bytes apart: the client sends
        // only its upgrade request (far less), the server its response and
        // a 10 000-byte signal, so the cut lands at byte 3000 of the
        // server's stream, inside the signal.
        let proxy = FaultProxy::builder([upstream])
            .cut_after(3000..=3000)
            .start()
            .await
            .unwrap();
        let mut client = ws_client(proxy.local_addr(), Config::default())
            .await
            .unwrap();
        let mut server = accepted.recv().await.unwrap();
        let _ = server.send(Message::binary(signal(10_000))).await;
        // The client sees its connection fail, not a message.
        assert!(next_data(&mut client).await.is_none());
        let log = proxy.cut_log();
        assert_eq!(log.len(), 1);
        let r = log[0];
        assert_eq!(r.trigger, CutTrigger::ServerToClient);
        assert_eq!(r.server_to_client_bytes, 3000);
        assert!(r.observed && r.signal_in_flight && r.mid_frame);
        assert_eq!(r.requests_in_flight, 0);
        let stats = proxy.stats();
        assert_eq!(
            (
                stats.cuts_with_signals_in_flight,
                stats.cuts_mid_frame,
                stats.signals_forwarded
            ),
            (1, 1, 0)
        );
    })
    .await;
}

#[tokio::test]
async fn a_seeded_cut_inside_a_request_is_counted() {
    bounded(async {
        let (upstream, mut accepted) = ws_server(Config::default()).await;
        // The mirror image: the client's 5000-byte request crosses byte
        // 2000 of its stream; the server sends only its response.
        let proxy = FaultProxy::builder([upstream])
            .cut_after(2000..=2000)
            .start()
            .await
            .unwrap();
        let mut client = ws_client(proxy.local_addr(), Config::default())
            .await
            .unwrap();
        let mut server = accepted.recv().await.unwrap();
        let _ = client.send(Message::binary(with_id(129, 77, 5000))).await;
        assert!(next_data(&mut server).await.is_none());
        let r = proxy.cut_log()[0];
        assert_eq!(r.trigger, CutTrigger::ClientToServer);
        assert_eq!(r.client_to_server_bytes, 2000);
        assert!(r.observed && r.mid_frame && !r.signal_in_flight);
        assert_eq!(r.requests_in_flight, 1);
        assert_eq!(proxy.stats().requests_forwarded, 0);
    })
    .await;
}

#[tokio::test]
async fn random_cuts_over_a_steady_exchange_hit_traffic_in_flight() {
    bounded(async {
        let (upstream, mut accepted) = ws_server(Config::default()).await;
        // The server answers every request and sends a signal after it.
        tokio::spawn(async move {
            while let Some(mut ws) = accepted.recv().await {
                tokio::spawn(async move {
                    while let Some(m) = next_data(&mut ws).await {
                        if m.first() == Some(&127) && m.len() >= 9 {
                            let mut reply = vec![191];
                            reply.extend_from_slice(&m[1..9]);
                            reply.extend(std::iter::repeat_n(b'r', 100));
                            if ws.send(Message::binary(reply)).await.is_err()
                                || ws.send(Message::binary(signal(300))).await.is_err()
                            {
                                return;
                            }
                        }
                    }
                });
            }
        });
        let proxy = FaultProxy::builder([upstream])
            .seed(2024)
            .cut_after(200..=3000)
            .start()
            .await
            .unwrap();
        let mut id = 0u64;
        let mut answered = 0;
        while proxy.stats().cuts < 40 {
            let Ok(mut ws) = ws_client(proxy.local_addr(), Config::default()).await else {
                continue;
            };
            // Pipelined: five requests, then their replies and signals.
            'connection: loop {
                for _ in 0..5 {
                    id += 1;
                    if ws
                        .send(Message::binary(with_id(127, id, 150)))
                        .await
                        .is_err()
                    {
                        break 'connection;
                    }
                }
                for _ in 0..10 {
                    match next_data(&mut ws).await {
                        Some(m) if m[0] == 191 => answered += 1,
                        Some(_) => {}
                        None => break 'connection,
                    }
                }
            }
        }
        proxy.set_cutting(false);
        let stats = proxy.stats();
        assert!(answered > 0);
        assert_eq!(stats.cuts as usize, proxy.cut_log().len());
        assert_eq!(stats.unobserved_connections, 0);
        assert!(stats.cuts_with_requests_in_flight > 0, "{stats:?}");
        assert!(stats.cuts_with_signals_in_flight > 0, "{stats:?}");
        assert!(stats.cuts_mid_frame > 0, "{stats:?}");
        assert!(stats.requests_forwarded >= stats.replies_forwarded);
        assert!(stats.replies_forwarded >= answered);
    })
    .await;
}
