//! What the interop server does that the Rust client cannot show: upgrades
//! from any Origin, on any path, the accept configuration's bytes, and
//! the stream and keyed-request routes over raw 2.1 frames.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use webwire_interop::serve::{self, ServeOptions};
use webwire_server::Payload;

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
        // A binary frame (0x82) of 18 bytes: type 23, version 2.1, 3000 ms,
        // 1048576 bytes, "interop".
        let mut expected = vec![0x82, 18, 23, 2, 1];
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

/// `incr` counts per name, and as a keyed request (the server announces
/// 2.1 and grants keyed requests) its retry gets the stored count instead
/// of a second run.
#[tokio::test]
async fn incr_counts_and_a_keyed_retry_does_not_count_again() {
    use bytes::Bytes;
    use futures_util::SinkExt;
    use webwire_proto::{
        ClientMessage, ExtensionHello, FeatureFlags, InstanceId, KeyedRequest, Name, Payload,
        Request, RequestId, RequestKey, ServerMessage,
    };

    let server = serve::start(ServeOptions::new("127.0.0.1:0"))
        .await
        .unwrap();
    let url = format!("ws://{}/", server.local_addr());
    let (mut ws, _) = tokio_websockets::ClientBuilder::new()
        .uri(&url)
        .unwrap()
        .connect()
        .await
        .unwrap();
    let ServerMessage::AcceptConf(conf) = recv(&mut ws).await else {
        panic!("AcceptConf first")
    };
    assert_eq!((conf.major, conf.minor), (2, 1));
    let send = |message: ClientMessage| tokio_websockets::Message::binary(message.to_bytes());
    let instance = InstanceId::new(Bytes::from_static(b"interop-test-instance")).unwrap();
    let hello = ExtensionHello::new(FeatureFlags::KEYED_REQUESTS, instance).unwrap();
    ws.send(send(ClientMessage::ExtensionHello(hello)))
        .await
        .unwrap();
    let request = |id: u64, name: &'static str, text: &'static str| {
        Request::new(
            RequestId::from(id),
            Name::from_static(name),
            Payload::utf8(text),
        )
        .unwrap()
    };
    ws.send(send(ClientMessage::Request(request(1, "login", "ann"))))
        .await
        .unwrap();
    let mut answers = Vec::new();
    let mut epoch = 0;
    // ExtensionAccept, NotifySessionCreated, the login's reply.
    while answers.len() < 3 {
        let message = recv(&mut ws).await;
        if let ServerMessage::ExtensionAccept(accept) = &message {
            assert_eq!(accept.flags, FeatureFlags::KEYED_REQUESTS);
            epoch = accept.ledger_epoch;
        }
        answers.push(message);
    }
    assert_ne!(epoch, 0);
    let mut counts = Vec::new();
    for (id, keyed) in [(2, true), (3, true), (4, false), (5, true)] {
        let message = if keyed {
            let key = RequestKey { seq: 1, epoch };
            ClientMessage::KeyedRequest(
                KeyedRequest::new(request(id, "incr", "c"), key, 0).unwrap(),
            )
        } else {
            ClientMessage::Request(request(id, "incr", "c"))
        };
        ws.send(send(message)).await.unwrap();
        let ServerMessage::Reply(reply) = recv(&mut ws).await else {
            panic!("a reply")
        };
        assert_eq!(reply.id, RequestId::from(id));
        counts.push(reply.payload.to_text().unwrap().into_owned());
    }
    // The keyed request ran once (1); its retries got 1 again; the plain
    // request ran (2).
    assert_eq!(counts, ["1", "1", "2", "1"]);
    server.shutdown().await.unwrap();
}

/// The next webwire message on a bare WebSocket.
async fn recv<S>(ws: &mut S) -> webwire_proto::ServerMessage
where
    S: futures_util::Stream<Item = Result<tokio_websockets::Message, tokio_websockets::Error>>
        + Unpin,
{
    use futures_util::StreamExt;
    loop {
        let message = tokio::time::timeout(Duration::from_secs(10), ws.next())
            .await
            .expect("an answer")
            .expect("open")
            .expect("no error");
        if message.is_binary() {
            let data = bytes::Bytes::from(message.into_payload());
            return webwire_proto::ServerMessage::parse(data).expect("a server message");
        }
    }
}

/// A raw 2.1 client: sends `message`, returns the server's messages up to
/// and including the answer with `id`.
async fn exchange(
    ws: &mut tokio_websockets::WebSocketStream<
        tokio_websockets::MaybeTlsStream<tokio::net::TcpStream>,
    >,
    message: webwire_proto::ClientMessage,
    id: Option<webwire_proto::RequestId>,
) -> Vec<webwire_proto::ServerMessage> {
    use futures_util::{SinkExt, StreamExt};
    ws.send(tokio_websockets::Message::binary(message.to_bytes()))
        .await
        .unwrap();
    let mut got = Vec::new();
    loop {
        let frame = tokio::time::timeout(Duration::from_secs(10), ws.next())
            .await
            .expect("an answer")
            .expect("open")
            .unwrap();
        let message =
            webwire_proto::ServerMessage::parse(bytes::Bytes::from(frame.into_payload())).unwrap();
        let done = id.is_none() || message.request_id() == id;
        got.push(message);
        if done {
            return got;
        }
    }
}

fn request(id: u64, name: &'static str, text: &str) -> webwire_proto::ClientMessage {
    webwire_proto::ClientMessage::Request(
        webwire_proto::Request::new(
            webwire_proto::RequestId::from(id),
            webwire_proto::Name::from_static(name),
            Payload::utf8(text),
        )
        .unwrap(),
    )
}

#[tokio::test]
async fn streams_routes_send_on_the_session_stream_and_on_rooms() {
    use webwire_proto::{
        ExtensionHello, FeatureFlags, InstanceId, RequestId, ServerMessage, StreamId,
    };
    let server = serve::start(ServeOptions::new("127.0.0.1:0"))
        .await
        .unwrap();
    let url = format!("ws://{}/", server.local_addr());
    let (mut ws, _) = tokio_websockets::ClientBuilder::from_uri(url.parse().unwrap())
        .connect()
        .await
        .unwrap();
    use futures_util::StreamExt;
    let conf = ws.next().await.unwrap().unwrap();
    assert_eq!(conf.as_payload()[2], 1, "version 2.1");
    let hello = ExtensionHello::new(FeatureFlags::STREAMS, InstanceId::new("").unwrap()).unwrap();
    let got = exchange(
        &mut ws,
        webwire_proto::ClientMessage::ExtensionHello(hello),
        None,
    )
    .await;
    assert!(
        matches!(&got[0], ServerMessage::ExtensionAccept(a) if a.flags == FeatureFlags::STREAMS)
    );
    exchange(
        &mut ws,
        request(1, "login", "ann"),
        Some(RequestId::from(1)),
    )
    .await;
    let got = exchange(
        &mut ws,
        request(2, "stream-me", "3"),
        Some(RequestId::from(2)),
    )
    .await;
    let offsets: Vec<u64> = got
        .iter()
        .filter_map(|m| match m {
            ServerMessage::StreamSignal(s) if s.stream() == &StreamId::Session => Some(s.offset()),
            _ => None,
        })
        .collect();
    assert_eq!(offsets, [1, 2, 3]);
    assert!(
        matches!(got.last(), Some(ServerMessage::Reply(r)) if r.payload.as_bytes() == &b"3"[..])
    );
    exchange(
        &mut ws,
        request(3, "join", "lobby"),
        Some(RequestId::from(3)),
    )
    .await;
    let got = exchange(
        &mut ws,
        request(4, "say", "lobby hi"),
        Some(RequestId::from(4)),
    )
    .await;
    let said = got
        .iter()
        .find_map(|m| match m {
            ServerMessage::StreamSignal(s) => Some(s),
            _ => None,
        })
        .expect("the room's signal");
    assert_eq!(said.offset(), 1);
    assert_eq!(said.signal().payload().as_bytes(), &b"hi"[..]);
    let got = exchange(
        &mut ws,
        request(5, "stream-me", "0"),
        Some(RequestId::from(5)),
    )
    .await;
    assert!(
        matches!(got.last(), Some(ServerMessage::Error(e)) if e.code.as_bytes() == &b"BAD_STREAM"[..])
    );
    server.shutdown().await.unwrap();
}
