//! Rooms end to end on one server: join, leave, room signals (with an
//! exception), membership reads, and leaving every room on close.

mod common;

use common::{eventually, reply_text, within, TestServer};
use webwire_proto::{Payload, ServerMessage};
use webwire_server::{Connection, MessageRouter, Server, SignalError};

fn router() -> MessageRouter {
    MessageRouter::new()
        .request("join", |conn: Connection, room: String| async move {
            conn.join_room(&room)?;
            Ok::<_, Box<dyn std::error::Error + Send + Sync>>(conn.id().to_string())
        })
        .request("leave", |conn: Connection, room: String| async move {
            Ok::<_, SignalError>(conn.leave_room(&room).to_string())
        })
        .request("rooms", |conn: Connection, _: Payload| async move {
            Ok::<_, SignalError>(conn.rooms().join(","))
        })
}

fn signal_text(message: &ServerMessage) -> (String, String) {
    match message {
        ServerMessage::Signal(signal) => (
            String::from_utf8_lossy(signal.name().as_bytes()).into_owned(),
            signal.payload().to_text().expect("text").into_owned(),
        ),
        other => panic!("expected a signal, got {other:?}"),
    }
}

#[tokio::test]
async fn room_signals_reach_members_but_the_excepted_one() {
    let server = TestServer::start(Server::builder(router())).await;
    let mut a = server.connect().await;
    let mut b = server.connect().await;
    let mut c = server.connect().await;
    let a_id: u64 = reply_text(&a.request("join", Payload::utf8("r")).await)
        .parse()
        .unwrap();
    b.request("join", Payload::utf8("r")).await;
    b.request("join", Payload::utf8("s")).await;
    assert_eq!(
        reply_text(&b.request("rooms", Payload::utf8("")).await),
        "r,s"
    );
    assert_eq!(server.server.room_count("r"), 2);
    assert_eq!(server.server.room_members("s").len(), 1);

    let except = server
        .server
        .connections()
        .into_iter()
        .find(|conn| conn.id().get() == a_id)
        .map(|conn| conn.id());
    let sent = server
        .server
        .room_signal("r", "news", Payload::utf8("one"), except)
        .unwrap();
    assert_eq!(sent, 1);
    assert_eq!(signal_text(&b.recv().await), ("news".into(), "one".into()));
    let sent = server
        .server
        .room_signal("r", "news", Payload::utf8("two"), None)
        .unwrap();
    assert_eq!(sent, 2);
    assert_eq!(signal_text(&a.recv().await), ("news".into(), "two".into()));
    assert_eq!(signal_text(&b.recv().await), ("news".into(), "two".into()));
    // c is in no room: the next thing it gets is its own reply.
    assert_eq!(reply_text(&c.request("rooms", Payload::utf8("")).await), "");

    assert_eq!(
        reply_text(&a.request("leave", Payload::utf8("r")).await),
        "true"
    );
    assert_eq!(
        reply_text(&a.request("leave", Payload::utf8("r")).await),
        "false"
    );
    assert_eq!(server.server.room_count("r"), 1);

    // Closing leaves every room.
    b.close().await;
    let s = server.server.clone();
    eventually("b left its rooms", || {
        s.room_count("r") == 0 && s.room_count("s") == 0
    })
    .await;
    assert_eq!(
        server
            .server
            .room_signal("r", "news", Payload::utf8("x"), None)
            .unwrap(),
        0
    );
    within("stop", server.stop()).await;
}

#[tokio::test]
async fn bad_room_names_and_signals_are_errors() {
    let server = TestServer::start(Server::builder(router()).message_buffer_size(64)).await;
    let mut a = server.connect().await;
    let reply = a.request("join", Payload::utf8("")).await;
    assert!(
        matches!(reply, ServerMessage::InternalError(_)),
        "{reply:?}"
    );
    assert!(matches!(
        server.server.room_signal("r", "n", vec![0u8; 100], None),
        Err(SignalError::TooLarge { .. })
    ));
    assert!(matches!(
        server
            .server
            .room_signal("r", "tab\t", Payload::utf8(""), None),
        Err(SignalError::Invalid(_))
    ));
    server.stop().await;
}
