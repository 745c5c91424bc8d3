//! The chat server with Rust clients (webwire-client) over 127.0.0.1:
//! sign-in, presence, messages, reconnection with the session kept, and a
//! restart of the server on the same session folder.

use std::future::Future;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use webwire_chat::{
    codes, ChatConfig, ChatError, ChatMessage, ChatServer, History, Presence, RoomMessage,
};
use webwire_client::{Client, ClientEvent, Events, Payload, RequestError};

/// Every wait of these tests ends within this.
const PATIENCE: Duration = Duration::from_secs(10);

async fn within<F: Future>(what: &str, future: F) -> F::Output {
    match tokio::time::timeout(PATIENCE, future).await {
        Ok(out) => out,
        Err(_) => panic!("timed out waiting for {what}"),
    }
}

/// A chat server running in this process.
struct Running {
    addr: SocketAddr,
    webwire: webwire_server::Server,
    stop: oneshot::Sender<()>,
    task: JoinHandle<Result<(), ChatError>>,
}

impl Running {
    async fn start(sessions: &Path, addr: SocketAddr) -> Self {
        Self::start_with(ChatConfig::new(sessions).addr(addr)).await
    }

    async fn start_with(config: ChatConfig) -> Self {
        let addr = config.addr;
        // After a restart the port may take a moment to be free again.
        let mut attempts = 0;
        let server = loop {
            let config = config.clone();
            match ChatServer::bind(config).await {
                Ok(server) => break server,
                Err(err) if attempts < 50 => {
                    attempts += 1;
                    eprintln!("bind {addr}: {err}; retrying");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(err) => panic!("cannot start the chat server: {err}"),
            }
        };
        let addr = server.local_addr();
        let webwire = server.webwire().clone();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(server.run_until(async move {
            let _ = stopped.await;
        }));
        Self {
            addr,
            webwire,
            stop,
            task,
        }
    }

    fn url(&self) -> String {
        format!("ws://{}/ws", self.addr)
    }

    async fn stop(self) {
        let _ = self.stop.send(());
        within("the server to stop", self.task)
            .await
            .unwrap()
            .unwrap();
    }
}

fn any_port() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 0))
}

async fn connect(url: &str) -> (Client, Events) {
    let client = within(
        "connect",
        Client::builder(url)
            .reconnect_interval(Duration::from_millis(100))
            .max_reconnect_interval(Duration::from_millis(500))
            .request_timeout(PATIENCE)
            .connect(),
    )
    .await
    .unwrap();
    let events = client.events();
    (client, events)
}

async fn request<T: DeserializeOwned>(
    client: &Client,
    name: &str,
    payload: serde_json::Value,
) -> Result<T, RequestError> {
    let reply = client
        .request(name, Payload::utf8(payload.to_string()))
        .await?;
    Ok(serde_json::from_slice(reply.as_bytes()).expect("the reply is JSON"))
}

async fn login(client: &Client, name: &str) {
    let reply: serde_json::Value = request(client, "login", json!({ "name": name }))
        .await
        .unwrap();
    assert_eq!(reply, json!({ "name": name }));
    assert_eq!(
        client.session_info::<String>("name").unwrap().as_deref(),
        Some(name)
    );
}

fn error_code(result: Result<serde_json::Value, RequestError>) -> String {
    match result {
        Err(RequestError::Request { code, .. }) => code,
        other => panic!("expected a request error, got {other:?}"),
    }
}

/// Waits for a signal `name` whose payload satisfies `accept`.
async fn signal<T: DeserializeOwned>(
    events: &mut Events,
    name: &str,
    accept: impl Fn(&T) -> bool,
) -> T {
    within(&format!("signal {name}"), async {
        while let Some(event) = events.recv().await {
            if let ClientEvent::Signal(signal) = event
                && signal.name() == name
            {
                let value: T = serde_json::from_slice(signal.payload().as_bytes())
                    .expect("the signal is JSON");
                if accept(&value) {
                    return value;
                }
            }
        }
        panic!("the client closed while waiting for signal {name}");
    })
    .await
}

async fn event(events: &mut Events, what: &str, accept: impl Fn(&ClientEvent) -> bool) {
    within(what, async {
        while let Some(event) = events.recv().await {
            if accept(&event) {
                return;
            }
        }
        panic!("the client closed while waiting for {what}");
    })
    .await
}

/// Asks `who` until the online list is `expected`.
async fn online_becomes(client: &Client, expected: &[&str]) {
    within(&format!("online {expected:?}"), async {
        loop {
            if let Ok(presence) = request::<Presence>(client, "who", json!({})).await
                && presence.online == expected
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
}

fn online(names: &[&str]) -> impl Fn(&Presence) -> bool + use<> {
    let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
    move |presence| presence.online == names
}

#[tokio::test]
async fn bad_input_is_refused_with_request_errors() {
    let sessions = tempfile::tempdir().unwrap();
    let server = Running::start(sessions.path(), any_port()).await;
    let (client, _events) = connect(&server.url()).await;

    for name in ["", "   ", &"x".repeat(33), "tab\there"] {
        let result = request(&client, "login", json!({ "name": name })).await;
        assert_eq!(error_code(result), codes::INVALID_NAME, "{name:?}");
    }
    let result = request(&client, "login", json!({ "nom": "ann" })).await;
    assert_eq!(error_code(result), "INVALID_PAYLOAD");
    assert!(client.session().is_none());

    // Signed out: no saying, no history; who works.
    let result = request(&client, "say", json!({ "text": "hi" })).await;
    assert_eq!(error_code(result), codes::NOT_LOGGED_IN);
    let result = request(&client, "history", json!({})).await;
    assert_eq!(error_code(result), codes::NOT_LOGGED_IN);
    let who: Presence = request(&client, "who", json!({})).await.unwrap();
    assert!(who.online.is_empty());

    login(&client, "ann").await;
    let result = request(&client, "login", json!({ "name": "bob" })).await;
    assert_eq!(error_code(result), codes::ALREADY_LOGGED_IN);
    for text in ["", " \n", &"y".repeat(1001), "bell\u{7}"] {
        let result = request(&client, "say", json!({ "text": text })).await;
        assert_eq!(error_code(result), codes::INVALID_TEXT, "{text:?}");
    }
    // The longest text is fine, and an empty history payload is the default.
    let long: RoomMessage = request(&client, "say", json!({ "text": "é".repeat(1000) }))
        .await
        .unwrap();
    assert_eq!(long.message.text.chars().count(), 1000);
    assert_eq!(long.offset, 1, "the first message of the room's stream");
    let reply = client.request("history", Payload::default()).await.unwrap();
    let history: History = serde_json::from_slice(reply.as_bytes()).unwrap();
    assert_eq!(history.messages, vec![long]);

    client.close().await;
    server.stop().await;
}

#[tokio::test]
async fn two_clients_see_each_other_and_exchange_messages() {
    let sessions = tempfile::tempdir().unwrap();
    let server = Running::start(sessions.path(), any_port()).await;
    let (ann, mut ann_events) = connect(&server.url()).await;
    let (bob, mut bob_events) = connect(&server.url()).await;

    login(&ann, "ann").await;
    signal(&mut ann_events, "presence", online(&["ann"])).await;
    // Names are trimmed.
    let reply: serde_json::Value = request(&bob, "login", json!({ "name": " bob " }))
        .await
        .unwrap();
    assert_eq!(reply, json!({ "name": "bob" }));
    signal(&mut ann_events, "presence", online(&["ann", "bob"])).await;
    signal(&mut bob_events, "presence", online(&["ann", "bob"])).await;

    let sent: RoomMessage = request(&ann, "say", json!({ "text": "héllo, bob ✓" }))
        .await
        .unwrap();
    assert_eq!(sent.message.from, "ann");
    let got: ChatMessage = signal(&mut bob_events, "message", |_: &ChatMessage| true).await;
    assert_eq!(got, sent.message);
    let own: ChatMessage = signal(&mut ann_events, "message", |_: &ChatMessage| true).await;
    assert_eq!(own, sent.message);

    let _: RoomMessage = request(&bob, "say", json!({ "text": "hi ann\nhow are you?" }))
        .await
        .unwrap();
    let got: ChatMessage = signal(&mut ann_events, "message", |_: &ChatMessage| true).await;
    assert_eq!(
        (got.from.as_str(), got.text.as_str()),
        ("bob", "hi ann\nhow are you?")
    );

    let history: History = request(&bob, "history", json!({ "limit": 10 }))
        .await
        .unwrap();
    let texts: Vec<_> = history
        .messages
        .iter()
        .map(|m| m.message.text.as_str())
        .collect();
    assert_eq!(texts, ["héllo, bob ✓", "hi ann\nhow are you?"]);
    // Read from the room's stream: its offsets, in the epoch of the say.
    let places: Vec<_> = history
        .messages
        .iter()
        .map(|m| (m.epoch, m.offset))
        .collect();
    assert_eq!(places, [(sent.epoch, 1), (sent.epoch, 2)]);
    let last: History = request(&bob, "history", json!({ "limit": 1 }))
        .await
        .unwrap();
    assert_eq!(last.messages.len(), 1);
    assert_eq!(last.messages[0].message.from, "bob");

    // Leaving: bob's connection closes, ann sees him go.
    bob.close().await;
    signal(&mut ann_events, "presence", online(&["ann"])).await;

    ann.close().await;
    server.stop().await;
}

#[tokio::test]
async fn a_reconnecting_client_keeps_its_session_until_it_logs_out() {
    let sessions = tempfile::tempdir().unwrap();
    let server = Running::start(sessions.path(), any_port()).await;
    let (ann, mut ann_events) = connect(&server.url()).await;
    let (bob, mut bob_events) = connect(&server.url()).await;
    login(&ann, "ann").await;
    login(&bob, "bob").await;
    let key = ann.session().unwrap().key;

    // The server drops ann's connection; the client reconnects by itself
    // and restores its session.
    let conns = server.webwire.session_connections(&key);
    assert_eq!(conns.len(), 1);
    conns[0].close();
    event(&mut ann_events, "disconnected", |e| {
        *e == ClientEvent::Disconnected
    })
    .await;
    event(&mut ann_events, "reconnected", |e| {
        *e == ClientEvent::Connected
    })
    .await;
    assert_eq!(ann.session().unwrap().key, key);
    online_becomes(&ann, &["ann", "bob"]).await;
    let _: RoomMessage = request(&ann, "say", json!({ "text": "back" }))
        .await
        .unwrap();
    let got: ChatMessage = signal(&mut bob_events, "message", |m: &ChatMessage| {
        m.text == "back"
    })
    .await;
    assert_eq!(got.from, "ann");

    // Another client (a second tab, or the next run) restores the session by key.
    let (tab, mut tab_events) = connect(&server.url()).await;
    let session = tab.restore_session(&key).await.unwrap();
    assert_eq!(session.key, key);
    assert_eq!(
        tab.session_info::<String>("name").unwrap().as_deref(),
        Some("ann")
    );
    let sent: RoomMessage = request(&tab, "say", json!({ "text": "from the tab" }))
        .await
        .unwrap();
    assert_eq!(sent.message.from, "ann");
    assert_eq!(server.webwire.session_connections(&key).len(), 2);

    // Logging out signs out every connection of the session, for good.
    let _: serde_json::Value = request(&tab, "logout", json!({})).await.unwrap();
    event(&mut tab_events, "session closed", |e| {
        *e == ClientEvent::SessionClosed
    })
    .await;
    event(&mut ann_events, "session closed", |e| {
        *e == ClientEvent::SessionClosed
    })
    .await;
    assert!(ann.session().is_none());
    signal(&mut bob_events, "presence", online(&["bob"])).await;
    let (late, _late_events) = connect(&server.url()).await;
    assert_eq!(
        late.restore_session(&key).await.unwrap_err(),
        RequestError::SessionNotFound
    );
    let result = request(&ann, "say", json!({ "text": "gone" })).await;
    assert_eq!(error_code(result), codes::NOT_LOGGED_IN);

    for client in [ann, bob, tab, late] {
        client.close().await;
    }
    server.stop().await;
}

/// The texts of the next `count` `message` signals.
async fn messages(events: &mut Events, count: usize) -> Vec<String> {
    let mut texts = Vec::new();
    while texts.len() < count {
        let got: ChatMessage = signal(events, "message", |_: &ChatMessage| true).await;
        texts.push(got.text);
    }
    texts
}

#[tokio::test]
async fn messages_said_while_a_client_was_cut_off_arrive_after_its_reconnect_in_order_once() {
    let sessions = tempfile::tempdir().unwrap();
    let server = Running::start(sessions.path(), any_port()).await;
    let (ann, mut ann_events) = connect(&server.url()).await;
    let (bob, _bob_events) = connect(&server.url()).await;
    login(&ann, "ann").await;
    login(&bob, "bob").await;
    let _: RoomMessage = request(&bob, "say", json!({ "text": "before" }))
        .await
        .unwrap();
    assert_eq!(messages(&mut ann_events, 1).await, ["before"]);

    // The server drops ann's connection; what is said while she is away
    // is in the room's stream only.
    let key = ann.session().unwrap().key;
    server.webwire.session_connections(&key)[0].close();
    event(&mut ann_events, "disconnected", |e| {
        *e == ClientEvent::Disconnected
    })
    .await;
    for text in ["missed 1", "missed 2", "missed 3"] {
        let message = ChatMessage {
            id: text.into(),
            from: "bob".into(),
            text: text.into(),
            at: 0,
        };
        server
            .webwire
            .signal_room_stream(
                webwire_chat::ROOM,
                "message",
                Payload::utf8(serde_json::to_string(&message).unwrap()),
            )
            .await
            .unwrap();
    }
    event(&mut ann_events, "reconnected", |e| {
        *e == ClientEvent::Connected
    })
    .await;
    // Back in the room without joining it again: the session is the member.
    let _: RoomMessage = request(&bob, "say", json!({ "text": "after" }))
        .await
        .unwrap();
    assert_eq!(
        messages(&mut ann_events, 4).await,
        ["missed 1", "missed 2", "missed 3", "after"]
    );
    // Nothing twice: the next message is the next one said.
    let _: RoomMessage = request(&bob, "say", json!({ "text": "last" }))
        .await
        .unwrap();
    assert_eq!(messages(&mut ann_events, 1).await, ["last"]);

    for client in [ann, bob] {
        client.close().await;
    }
    server.stop().await;
}

#[tokio::test]
async fn sessions_survive_a_restart_on_the_same_session_folder() {
    let sessions = tempfile::tempdir().unwrap();
    let server = Running::start(sessions.path(), any_port()).await;
    let addr = server.addr;
    let (ann, mut ann_events) = connect(&server.url()).await;
    let (bob, mut bob_events) = connect(&server.url()).await;
    login(&ann, "ann").await;
    login(&bob, "bob").await;
    let (ann_key, bob_key) = (ann.session().unwrap().key, bob.session().unwrap().key);

    server.stop().await;
    event(&mut ann_events, "disconnected", |e| {
        *e == ClientEvent::Disconnected
    })
    .await;
    event(&mut bob_events, "disconnected", |e| {
        *e == ClientEvent::Disconnected
    })
    .await;

    // Same address, same session folder: the clients come back signed in.
    let server = Running::start(sessions.path(), addr).await;
    event(&mut ann_events, "reconnected", |e| {
        *e == ClientEvent::Connected
    })
    .await;
    event(&mut bob_events, "reconnected", |e| {
        *e == ClientEvent::Connected
    })
    .await;
    assert_eq!(ann.session().unwrap().key, ann_key);
    assert_eq!(bob.session().unwrap().key, bob_key);
    assert_eq!(
        ann.session_info::<String>("name").unwrap().as_deref(),
        Some("ann")
    );
    online_becomes(&bob, &["ann", "bob"]).await;

    let _: RoomMessage = request(&bob, "say", json!({ "text": "still here" }))
        .await
        .unwrap();
    let got: ChatMessage = signal(&mut ann_events, "message", |m: &ChatMessage| {
        m.text == "still here"
    })
    .await;
    assert_eq!(got.from, "bob");

    // A client that was not running restores its key from the folder too.
    let (again, _events) = connect(&server.url()).await;
    again.restore_session(&ann_key).await.unwrap();
    assert_eq!(
        again.session_info::<String>("name").unwrap().as_deref(),
        Some("ann")
    );

    for client in [ann, bob, again] {
        client.close().await;
    }
    server.stop().await;
}

/// One HTTP/1.1 GET: the status line, the headers (lowercase) and the body.
async fn http_get(addr: SocketAddr, path: &str) -> (String, String, String) {
    let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    tcp.write_all(request.as_bytes()).await.unwrap();
    let mut response = String::new();
    within("an HTTP response", tcp.read_to_string(&mut response))
        .await
        .unwrap();
    let (head, body) = response.split_once("\r\n\r\n").unwrap();
    let (status, headers) = head.split_once("\r\n").unwrap_or((head, ""));
    (
        status.to_owned(),
        headers.to_ascii_lowercase(),
        body.to_owned(),
    )
}

#[tokio::test]
async fn the_page_the_client_files_and_the_endpoint_share_one_port() {
    let sessions = tempfile::tempdir().unwrap();
    let dist = tempfile::tempdir().unwrap();
    std::fs::write(dist.path().join("index.js"), "export const built = true;\n").unwrap();
    std::fs::write(sessions.path().join("secret"), "not for the web").unwrap();
    let config = ChatConfig::new(sessions.path())
        .addr(any_port())
        .client_dir(dist.path());
    let server = Running::start_with(config).await;

    let (status, headers, body) = http_get(server.addr, "/").await;
    assert!(status.starts_with("HTTP/1.1 200"), "{status}");
    assert!(headers.contains("content-type: text/html"), "{headers}");
    assert!(
        body.contains(r#"<script type="module" src="/chat.js">"#),
        "{body}"
    );
    let (status, headers, body) = http_get(server.addr, "/chat.js").await;
    assert!(status.starts_with("HTTP/1.1 200"), "{status}");
    assert!(
        headers.contains("content-type: text/javascript"),
        "{headers}"
    );
    assert!(body.contains("/webwire/index.js"));
    let (status, headers, _) = http_get(server.addr, "/chat.css").await;
    assert!(status.starts_with("HTTP/1.1 200"), "{status}");
    assert!(headers.contains("content-type: text/css"), "{headers}");

    // The TypeScript client's files, from the client folder only.
    let (status, headers, body) = http_get(server.addr, "/webwire/index.js").await;
    assert!(status.starts_with("HTTP/1.1 200"), "{status}");
    assert!(
        headers.contains("content-type: text/javascript"),
        "{headers}"
    );
    assert_eq!(body, "export const built = true;\n");
    let (status, _, _) = http_get(server.addr, "/webwire/missing.js").await;
    assert!(status.starts_with("HTTP/1.1 404"), "{status}");
    let escape = format!(
        "/webwire/../{}/secret",
        sessions.path().file_name().unwrap().to_str().unwrap()
    );
    for path in [
        escape.as_str(),
        "/webwire/%2e%2e/secret",
        "/webwire/..%2fsecret",
    ] {
        let (status, _, body) = http_get(server.addr, path).await;
        assert!(!status.starts_with("HTTP/1.1 200"), "{path}: {status}");
        assert!(!body.contains("not for the web"), "{path}");
    }

    // And the webwire endpoint on the same port.
    let (client, _events) = connect(&server.url()).await;
    login(&client, "ann").await;
    client.close().await;
    server.stop().await;
}
