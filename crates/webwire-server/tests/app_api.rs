//! The application's conveniences end to end: router state, data on a
//! connection, connection ids from numbers, and the session hooks (created,
//! restored, closed by the client, by the server and everywhere; not on
//! disconnect), over raw frames on 127.0.0.1.

mod common;

use std::sync::{Arc, Mutex};

use bytes::Bytes;
use common::{eventually, reply_text, within, TestClient, TestServer};
use serde_json::json;
use webwire_proto::{ClientMessage, Payload, ServerMessage};
use webwire_server::{
    connection::ConnectionId,
    session::{MemorySessionManager, Session},
    Connection, Handler, HandlerError, MessageRouter, ReplyError, Request, Server, State,
};

/// The application's state: what the hooks saw, in order.
#[derive(Clone, Default)]
struct App {
    events: Arc<Mutex<Vec<String>>>,
}

impl App {
    fn push(&self, event: String) {
        self.events.lock().unwrap().push(event);
    }

    fn take(&self) -> Vec<String> {
        std::mem::take(&mut *self.events.lock().unwrap())
    }

    fn len(&self) -> usize {
        self.events.lock().unwrap().len()
    }
}

fn user(session: &Session) -> String {
    session
        .info_field::<String>("user")
        .ok()
        .flatten()
        .unwrap_or_default()
}

/// `login` creates a session for the user named by the payload, `logout`
/// closes it on this connection; every session hook records itself.
fn router(app: App) -> MessageRouter<App> {
    MessageRouter::with_state(app)
        .request("login", |conn: Connection, user: String| async move {
            let info = json!({ "user": user }).as_object().cloned();
            let session = conn
                .create_session(info)
                .await
                .map_err(|err| ReplyError::from_static("CREATE", err.to_string()))?;
            Ok::<_, ReplyError>(session.key)
        })
        .request("logout", |conn: Connection, _: Payload| async move {
            let had = conn
                .close_session()
                .await
                .map_err(|err| ReplyError::from_static("CLOSE", err.to_string()))?;
            Ok::<_, ReplyError>(had.to_string())
        })
        .on_session_created(
            |State(app): State<App>, conn: Connection, session: Session| async move {
                app.push(format!("created {} {}", conn.id(), user(&session)));
            },
        )
        .on_session_restored(
            |State(app): State<App>, conn: Connection, session: Session| async move {
                app.push(format!("restored {} {}", conn.id(), user(&session)));
            },
        )
        .on_session_closed(
            |State(app): State<App>, conn: Connection, key: String| async move {
                app.push(format!("closed {} {}", conn.id(), &key[..4]));
            },
        )
}

async fn start(app: &App) -> TestServer {
    TestServer::start(
        Server::builder(router(app.clone())).session_manager(Arc::new(MemorySessionManager::new())),
    )
    .await
}

async fn login(client: &mut TestClient, user: &str) -> String {
    let key = reply_text(&client.request("login", Payload::utf8(user)).await);
    assert!(matches!(
        client.take_pending().as_slice(),
        [ServerMessage::SessionCreated(_)]
    ));
    key
}

async fn session_request(client: &mut TestClient, message: ClientMessage) -> ServerMessage {
    let id = match &message {
        ClientMessage::RestoreSession { id, .. } | ClientMessage::CloseSession(id) => *id,
        other => panic!("not a session request: {other:?}"),
    };
    client.send(message).await;
    client.reply_to(id).await
}

async fn restore(client: &mut TestClient, key: &str) -> ServerMessage {
    let id = client.next_id();
    let key = Bytes::copy_from_slice(key.as_bytes());
    session_request(client, ClientMessage::RestoreSession { id, key }).await
}

async fn client_close(client: &mut TestClient) -> ServerMessage {
    let id = client.next_id();
    session_request(client, ClientMessage::CloseSession(id)).await
}

async fn events_after(app: &App, what: &str, count: usize) -> Vec<String> {
    eventually(what, || app.len() >= count).await;
    app.take()
}

#[tokio::test]
async fn session_hooks_see_create_restore_and_every_close() {
    let app = App::default();
    let server = start(&app).await;
    let mut a = server.connect().await;
    let mut b = server.connect().await;
    let (ida, idb) = (1, 2);

    // Created: the hook has run when `create_session` returns.
    let key = login(&mut a, "ann").await;
    let short = &key[..4];
    assert_eq!(app.take(), [format!("created {ida} ann")]);

    // Restored by another client, then closed by that client: the hooks
    // run once the replies are queued.
    assert!(matches!(
        restore(&mut b, &key).await,
        ServerMessage::Reply(_)
    ));
    assert_eq!(
        events_after(&app, "restored", 1).await,
        [format!("restored {idb} ann")]
    );
    assert!(matches!(
        client_close(&mut b).await,
        ServerMessage::Reply(_)
    ));
    assert_eq!(
        events_after(&app, "closed by the client", 1).await,
        [format!("closed {idb} {short}")]
    );

    // A failed restore and a close without a session call no hook.
    assert!(matches!(
        restore(&mut b, "no-such-key").await,
        ServerMessage::SessionNotFound(_)
    ));
    assert!(matches!(
        client_close(&mut b).await,
        ServerMessage::Reply(_)
    ));

    // Closed by the server on one connection: before `close_session` returns.
    assert_eq!(
        reply_text(&a.request("logout", Payload::utf8("")).await),
        "true"
    );
    assert_eq!(a.take_pending(), [ServerMessage::SessionClosed]);
    assert_eq!(app.take(), [format!("closed {ida} {short}")]);

    // Closed everywhere: once for each connection that held it.
    let key = login(&mut a, "bob").await;
    assert!(matches!(
        restore(&mut b, &key).await,
        ServerMessage::Reply(_)
    ));
    let mut events = events_after(&app, "created and restored", 2).await;
    assert_eq!(
        events,
        [format!("created {ida} bob"), format!("restored {idb} bob")]
    );
    let closed = within("close everywhere", server.server.close_session(&key)).await;
    assert_eq!(closed.connections().len(), 2);
    events = app.take();
    events.sort();
    let short = &key[..4];
    assert_eq!(
        events,
        [
            format!("closed {ida} {short}"),
            format!("closed {idb} {short}")
        ]
    );
    assert_eq!(a.recv().await, ServerMessage::SessionClosed);
    assert_eq!(b.recv().await, ServerMessage::SessionClosed);

    // A connection that ends keeps its session stored: no close hook.
    let key = login(&mut a, "cat").await;
    assert_eq!(app.take(), [format!("created {ida} cat")]);
    a.close().await;
    eventually("disconnected", || server.server.connection_count() == 1).await;
    assert!(matches!(
        restore(&mut b, &key).await,
        ServerMessage::Reply(_)
    ));
    assert_eq!(
        events_after(&app, "restored after a disconnect", 1).await,
        [format!("restored {idb} cat")]
    );
    server.stop().await;
}

/// A handler implementing the hooks itself (the trait's defaults are
/// no-ops: the router test above covers them through `MessageRouter`).
struct Direct(App);

impl Handler for Direct {
    async fn on_request(&self, conn: &Connection, _: Request) -> Result<Payload, HandlerError> {
        let session = conn.create_session(None).await?;
        Ok(Payload::utf8(session.key))
    }

    async fn on_session_created(&self, conn: &Connection, _session: &Session) {
        // The session is the connection's already.
        self.0
            .push(format!("created {} {}", conn.id(), conn.has_session()));
    }

    async fn on_session_closed(&self, conn: &Connection, _key: &str) {
        self.0
            .push(format!("closed {} {}", conn.id(), conn.has_session()));
    }
}

#[tokio::test]
async fn handler_session_hooks() {
    let app = App::default();
    let server = TestServer::start(
        Server::builder(Direct(app.clone())).session_manager(Arc::new(MemorySessionManager::new())),
    )
    .await;
    let mut client = server.connect().await;
    let reply = client.request("new", Payload::utf8("")).await;
    assert!(matches!(reply, ServerMessage::Reply(_)), "{reply:?}");
    assert_eq!(app.take(), ["created 1 true"]);
    assert!(matches!(
        client_close(&mut client).await,
        ServerMessage::Reply(_)
    ));
    assert_eq!(events_after(&app, "closed", 1).await, ["closed 1 false"]);
    server.stop().await;
}

#[tokio::test]
async fn state_reaches_handlers_and_ids_travel_as_numbers() {
    #[derive(Clone)]
    /// Requests and signals count in the first, connect and disconnect
    /// hooks in the second.
    struct Counter(Arc<Mutex<u64>>, Arc<Mutex<u64>>);

    let counter = Counter(Arc::default(), Arc::default());
    let router = MessageRouter::with_state(counter.clone())
        .request("add", |State(c): State<Counter>, n: String| async move {
            let n: u64 = n.parse().map_err(|_| ReplyError::from_static("NAN", "n"))?;
            let mut total = c.0.lock().unwrap();
            *total += n;
            Ok::<_, ReplyError>(total.to_string())
        })
        .request(
            "id",
            |State(_): State<Counter>, conn: Connection, _: Payload| async move {
                Ok::<_, ReplyError>(conn.id().get().to_string())
            },
        )
        .request("plain", |_conn: Connection, text: String| async move {
            Ok::<_, ReplyError>(text)
        })
        .signal(
            "bump",
            |State(c): State<Counter>, _conn: Connection, _: Payload| async move {
                *c.0.lock().unwrap() += 100;
            },
        )
        .signal(
            "bump-quietly",
            |State(c): State<Counter>, _: Payload| async move {
                *c.0.lock().unwrap() += 1000;
            },
        )
        .on_connect_with_state(|State(c): State<Counter>, _conn| async move {
            *c.1.lock().unwrap() += 1;
        })
        .on_disconnect_with_state(|State(c): State<Counter>, _conn, _reason| async move {
            *c.1.lock().unwrap() += 10;
        });
    // The router hands out the very state it was given, not a copy.
    assert!(Arc::ptr_eq(&router.state().0, &counter.0));
    let server = TestServer::start(Server::builder(router)).await;
    let mut client = server.connect().await;
    assert_eq!(
        reply_text(&client.request("add", Payload::utf8("2")).await),
        "2"
    );
    assert_eq!(
        reply_text(&client.request("add", Payload::utf8("3")).await),
        "5"
    );
    assert_eq!(
        reply_text(&client.request("plain", Payload::utf8("hi")).await),
        "hi"
    );
    client.signal("bump", Payload::utf8("")).await;
    client.signal("bump-quietly", Payload::utf8("")).await;
    eventually("signals handled", || *counter.0.lock().unwrap() == 1105).await;

    // The id as a number, back into an id.
    let number: u64 = reply_text(&client.request("id", Payload::utf8("")).await)
        .parse()
        .unwrap();
    let conn = server
        .server
        .connection(ConnectionId::new(number))
        .expect("open");
    assert_eq!(conn.id(), ConnectionId::from(number));
    assert_eq!(u64::from(conn.id()), number);
    assert!(server
        .server
        .connection(ConnectionId::new(number + 1))
        .is_none());
    assert_eq!(*counter.1.lock().unwrap(), 1, "connect hook");
    client.close().await;
    eventually("disconnect hook", || *counter.1.lock().unwrap() == 11).await;
    server.stop().await;
}

#[tokio::test]
async fn data_kept_on_a_connection() {
    #[derive(Clone, Default)]
    struct Topics(Vec<String>);

    let router = MessageRouter::new()
        .request("subscribe", |conn: Connection, topic: String| async move {
            let mut ext = conn.extensions();
            let topics = ext.get_or_insert_default::<Topics>();
            topics.0.push(topic);
            Ok::<_, ReplyError>(topics.0.join(","))
        })
        .request("topics", |conn: Connection, _: Payload| async move {
            let topics = conn.extensions().get::<Topics>().cloned();
            Ok::<_, ReplyError>(topics.map_or_else(|| "none".into(), |t| t.0.join(",")))
        });
    let server = TestServer::start(Server::builder(router)).await;
    let mut a = server.connect().await;
    let mut b = server.connect().await;
    assert_eq!(
        reply_text(&a.request("subscribe", Payload::utf8("x")).await),
        "x"
    );
    assert_eq!(
        reply_text(&a.request("subscribe", Payload::utf8("y")).await),
        "x,y"
    );
    // Each connection has its own data; the server's handle sees it too.
    assert_eq!(
        reply_text(&b.request("topics", Payload::utf8("")).await),
        "none"
    );
    let conn = server.server.connection(ConnectionId::new(1)).expect("a");
    assert_eq!(
        conn.extensions().get::<Topics>().map(|t| t.0.len()),
        Some(2)
    );
    conn.extensions().remove::<Topics>();
    assert_eq!(
        reply_text(&a.request("topics", Payload::utf8("")).await),
        "none"
    );
    server.stop().await;
}
