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
