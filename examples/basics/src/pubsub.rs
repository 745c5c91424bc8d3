//! Publish-subscribe: clients subscribe to topics with requests, and the
//! server sends every subscriber of a topic a signal when someone
//! publishes to it.
//!
//! The protocol of this example, on top of webwire:
//!
//! | request | payload | reply |
//! |---|---|---|
//! | `subscribe` | the topic (text) | [`Subscribed`] (JSON) |
//! | `unsubscribe` | the topic (text) | [`Unsubscribed`] (JSON) |
//! | `publish` | [`Publish`] (JSON) | [`Published`] (JSON) |
//!
//! A published text reaches each subscriber as a signal named after the
//! topic, with the text as its UTF-8 payload. Right after connecting, the
//! server signals `$welcome` with the connection's number: names starting
//! with `$` are the server's own (as in MQTT) and are not valid topics.
//!
//! The server keeps topic → subscribed [`Connection`] handles in
//! [`Topics`]; the disconnect hook removes a connection from every topic.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use anyhow::{bail, Context};
use serde::{Deserialize, Serialize};
use tokio::task::JoinHandle;
use webwire_client::{Client, ClientEvent, Events, Payload};
use webwire_server::{
    connection::ConnectionId, error::DisconnectReason, proto::Name, Connection, Json, Listener,
    MessageRouter, ReplyError, Server, State,
};

use crate::{from_json, json_payload};

/// The signal the server sends every connection first, with its number.
pub const WELCOME: &str = "$welcome";

/// How long the client waits for anything (bounds the demo and its test).
const PATIENCE: Duration = Duration::from_secs(10);

/// What a `publish` request carries.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Publish {
    /// The topic to publish to.
    pub topic: String,
    /// The text the subscribers get.
    pub text: String,
}

/// The reply to `subscribe`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Subscribed {
    /// The topic.
    pub topic: String,
    /// How many connections are subscribed to it now.
    pub subscribers: usize,
}

/// The reply to `unsubscribe`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Unsubscribed {
    /// The topic.
    pub topic: String,
    /// Whether the connection was subscribed to it.
    pub was_subscribed: bool,
}

/// The reply to `publish`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Published {
    /// How many subscribers the signal was queued for.
    pub delivered: usize,
}

/// The server's state: which connections are subscribed to which topic.
/// Cheap to clone (the clones share the map).
///
/// ```
/// let topics = webwire_examples::pubsub::Topics::default();
/// assert_eq!(topics.subscriber_count("news"), 0);
/// ```
#[derive(Debug, Clone, Default)]
pub struct Topics {
    // A std mutex: it is never held across an `.await`.
    map: Arc<Mutex<HashMap<Name, HashMap<ConnectionId, Connection>>>>,
}

impl Topics {
    fn lock(&self) -> MutexGuard<'_, HashMap<Name, HashMap<ConnectionId, Connection>>> {
        // Nothing here can panic while holding the lock and leave the map
        // half-updated, so a poisoned lock is still usable.
        self.map.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Subscribes `conn` to `topic`; returns the topic's subscriber count.
    pub fn subscribe(&self, topic: Name, conn: &Connection) -> usize {
        let mut map = self.lock();
        let subscribers = map.entry(topic).or_default();
        subscribers.insert(conn.id(), conn.clone());
        subscribers.len()
    }

    /// Unsubscribes a connection from `topic`; returns whether it was
    /// subscribed.
    pub fn unsubscribe(&self, topic: &Name, id: ConnectionId) -> bool {
        let mut map = self.lock();
        let Some(subscribers) = map.get_mut(topic) else {
            return false;
        };
        let was_subscribed = subscribers.remove(&id).is_some();
        if subscribers.is_empty() {
            map.remove(topic);
        }
        was_subscribed
    }

    /// Unsubscribes a connection from every topic; returns from how many.
    pub fn remove_connection(&self, id: ConnectionId) -> usize {
        let mut map = self.lock();
        let mut removed = 0;
        map.retain(|_, subscribers| {
            removed += usize::from(subscribers.remove(&id).is_some());
            !subscribers.is_empty()
        });
        removed
    }

    /// The connections subscribed to `topic` (a snapshot, so that the lock
    /// is not held while signalling them).
    pub fn subscribers(&self, topic: &Name) -> Vec<Connection> {
        self.lock()
            .get(topic)
            .map(|subscribers| subscribers.values().cloned().collect())
            .unwrap_or_default()
    }

    /// How many connections are subscribed to `topic`.
    pub fn subscriber_count(&self, topic: &str) -> usize {
        let Ok(topic) = Name::try_from(topic) else {
            return 0;
        };
        self.lock().get(&topic).map_or(0, HashMap::len)
    }
}

/// A topic as given by a client, checked: it becomes the signals' name, so
/// it is 1 to 255 bytes of printable ASCII, and does not start with `$`.
fn topic_name(topic: String) -> Result<Name, ReplyError> {
    let invalid = |why: &str| ReplyError::from_static("INVALID_TOPIC", why);
    if topic.is_empty() || topic.starts_with('$') {
        return Err(invalid("a topic must not be empty or start with '$'"));
    }
    Name::try_from(topic).map_err(|err| invalid(&err.to_string()))
}

/// The server's routes and hooks, sharing `topics` (the router's state:
/// handlers and hooks take a clone of it with [`State`]).
pub fn router(topics: Topics) -> MessageRouter<Topics> {
    MessageRouter::with_state(topics)
        .on_connect(|conn: Connection| async move {
            // Runs before the connection's first message is read, so this
            // is the first signal the client gets.
            if let Err(err) = conn.signal(WELCOME, conn.id().to_string()).await {
                tracing::warn!(connection = %conn.id(), error = %err, "welcome not sent");
            }
        })
        // `String` takes a UTF-8 or UTF-16 payload as text.
        .request(
            "subscribe",
            |State(topics): State<Topics>, conn: Connection, topic: String| async move {
                let name = topic_name(topic)?;
                let subscribers = topics.subscribe(name.clone(), &conn);
                Ok::<_, ReplyError>(Json(Subscribed {
                    topic: name.to_string(),
                    subscribers,
                }))
            },
        )
        .request(
            "unsubscribe",
            |State(topics): State<Topics>, conn: Connection, topic: String| async move {
                let name = topic_name(topic)?;
                let was_subscribed = topics.unsubscribe(&name, conn.id());
                Ok::<_, ReplyError>(Json(Unsubscribed {
                    topic: name.to_string(),
                    was_subscribed,
                }))
            },
        )
        .request(
            "publish",
            |State(topics): State<Topics>, Json(publish): Json<Publish>| async move {
                let name = topic_name(publish.topic)?;
                // Encoded once per subscriber, but the text's bytes are shared.
                let text = Payload::utf8(publish.text);
                let mut delivered = 0;
                for subscriber in topics.subscribers(&name) {
                    // `try_signal` does not wait: a subscriber that does not
                    // read its signals must not hold up the publisher; it
                    // misses this one (as with `Server::signal_all`).
                    match subscriber.try_signal(&name, text.clone()) {
                        Ok(()) => delivered += 1,
                        Err(err) => {
                            tracing::debug!(connection = %subscriber.id(), error = %err, "signal not sent")
                        }
                    }
                }
                Ok::<_, ReplyError>(Json(Published { delivered }))
            },
        )
        // Called once per connection, after it ended for whatever reason
        // (closed by the client, lost, timed out, server shutdown): the
        // only place that needs to forget a connection.
        .on_disconnect_with_state(
            |State(topics): State<Topics>, conn: Connection, reason: DisconnectReason| async move {
                let unsubscribed_from = topics.remove_connection(conn.id());
                tracing::info!(connection = %conn.id(), %reason, unsubscribed_from, "subscriber gone");
            },
        )
}

/// Binds a pubsub server sharing `topics` to `addr` (port 0 picks a free
/// port); it accepts connections once the listener runs.
pub async fn bind(addr: &str, topics: Topics) -> anyhow::Result<Listener> {
    let server = Server::builder(router(topics)).build()?;
    Ok(server.bind(addr).await?)
}

/// Runs a pubsub server on `addr` until Ctrl-C, then shuts it down
/// gracefully.
pub async fn serve(addr: &str) -> anyhow::Result<()> {
    let listener = bind(addr, Topics::default()).await?;
    println!(
        "pubsub server listening on ws://{}/ (Ctrl-C to stop)",
        listener.local_addr()
    );
    listener.run_until(tokio::signal::ctrl_c()).await?;
    Ok(())
}

/// A signal a subscriber received: a text published to a topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Received {
    /// The topic (the signal's name).
    pub topic: String,
    /// The text (the signal's payload).
    pub text: String,
}

impl Received {
    /// A received text (for comparisons).
    pub fn new(topic: &str, text: &str) -> Self {
        Self {
            topic: topic.to_owned(),
            text: text.to_owned(),
        }
    }
}

/// A client of the pubsub server: the requests as typed methods over a
/// webwire [`Client`], and a task that prints and keeps the signals it
/// receives.
#[derive(Debug)]
pub struct Subscriber {
    name: String,
    client: Client,
    connection: u64,
    listener: JoinHandle<Vec<Received>>,
}

impl Subscriber {
    /// Connects to the server at `url`; `name` labels what it prints
    /// (when empty, the connection's number does).
    pub async fn connect(url: &str, name: &str) -> anyhow::Result<Self> {
        let client = Client::builder(url)
            .request_timeout(PATIENCE)
            .connect()
            .await
            .with_context(|| format!("{name}: cannot connect to {url}"))?;
        // The first receiver has every event since the client connected,
        // so the welcome signal cannot slip by before we listen.
        let mut events = client.events();
        let connection = tokio::time::timeout(PATIENCE, welcome(&mut events))
            .await
            .with_context(|| format!("{name}: no {WELCOME} signal"))??;
        let name = match name {
            "" => format!("connection {connection}"),
            name => name.to_owned(),
        };
        println!("[{name}] connected as connection {connection}");
        let listener = tokio::spawn(listen(name.clone(), events));
        Ok(Self {
            name,
            client,
            connection,
            listener,
        })
    }

    /// The connection's number on the server.
    pub fn connection(&self) -> u64 {
        self.connection
    }

    /// Subscribes to `topic`; returns how many subscribers it has now.
    pub async fn subscribe(&self, topic: &str) -> anyhow::Result<usize> {
        let reply = self
            .client
            .request("subscribe", topic.to_owned())
            .await
            .with_context(|| format!("{}: subscribe to {topic:?}", self.name))?;
        let Subscribed { subscribers, .. } = from_json(&reply)?;
        println!(
            "[{}] subscribed to {topic} (subscribers: {subscribers})",
            self.name
        );
        Ok(subscribers)
    }

    /// Unsubscribes from `topic`; returns whether it was subscribed.
    pub async fn unsubscribe(&self, topic: &str) -> anyhow::Result<bool> {
        let reply = self
            .client
            .request("unsubscribe", topic.to_owned())
            .await
            .with_context(|| format!("{}: unsubscribe from {topic:?}", self.name))?;
        let Unsubscribed { was_subscribed, .. } = from_json(&reply)?;
        println!("[{}] unsubscribed from {topic}", self.name);
        Ok(was_subscribed)
    }

    /// Publishes `text` to `topic`; returns how many subscribers it reached.
    pub async fn publish(&self, topic: &str, text: &str) -> anyhow::Result<usize> {
        let request = json_payload(&Publish {
            topic: topic.to_owned(),
            text: text.to_owned(),
        })?;
        let reply = self
            .client
            .request("publish", request)
            .await
            .with_context(|| format!("{}: publish to {topic:?}", self.name))?;
        let Published { delivered } = from_json(&reply)?;
        println!("[{}] published to {topic} (reached {delivered})", self.name);
        Ok(delivered)
    }

    /// Closes the connection; returns the signals received, in order.
    pub async fn leave(self) -> anyhow::Result<Vec<Received>> {
        // Waits for the close handshake; the event stream then ends, and
        // with it the listening task.
        self.client.close().await;
        println!("[{}] left", self.name);
        self.listener
            .await
            .with_context(|| format!("{}: the listening task failed", self.name))
    }
}

/// Waits for the server's welcome signal; returns the connection number.
async fn welcome(events: &mut Events) -> anyhow::Result<u64> {
    while let Some(event) = events.recv().await {
        if let ClientEvent::Signal(signal) = event
            && signal.name() == WELCOME
        {
            let number = signal.payload().to_text()?;
            return number
                .parse()
                .with_context(|| format!("bad connection number {number:?}"));
        }
    }
    bail!("the client closed before the welcome signal")
}

/// Prints and keeps the signals until the client is closed.
async fn listen(name: String, mut events: Events) -> Vec<Received> {
    let mut received = Vec::new();
    while let Some(event) = events.recv().await {
        match event {
            ClientEvent::Signal(signal) => {
                let topic = signal.name().to_string();
                let text = match signal.payload().to_text() {
                    Ok(text) => text.into_owned(),
                    Err(err) => format!("<{err}>"),
                };
                println!("[{name}] {topic}: {text}");
                received.push(Received { topic, text });
            }
            // The client reconnects by itself (and would need to subscribe
            // again: subscriptions live in the server's connection).
            ClientEvent::Disconnected => println!("[{name}] connection lost"),
            ClientEvent::Lagged(n) => println!("[{name}] missed {n} events"),
            _ => {}
        }
    }
    received
}

/// Subscribes to `topic` on the server at `url`, publishes a greeting to
/// it, and prints what is published there until Ctrl-C.
pub async fn run_client(url: &str, topic: &str) -> anyhow::Result<()> {
    let me = Subscriber::connect(url, "").await?;
    me.subscribe(topic).await?;
    let greeting = format!("hello from connection {}", me.connection());
    me.publish(topic, &greeting).await?;
    println!("listening to {topic} (Ctrl-C to stop)");
    tokio::signal::ctrl_c()
        .await
        .context("cannot wait for Ctrl-C")?;
    me.leave().await?;
    Ok(())
}

/// What the clients of [`run_demo`] got.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Transcript {
    /// The signals each client received, in order, by client name.
    pub received: BTreeMap<String, Vec<Received>>,
    /// How many subscribers each publish reached, in order.
    pub delivered: Vec<usize>,
    /// The error code a subscription to a `$` topic was refused with.
    pub refused: Option<String>,
    /// Subscribers of `sports` once carol, one of them, has left.
    pub sports_after_leave: usize,
}

/// The whole example in one process: the server on a free port of
/// 127.0.0.1 and three clients, alice, bob and carol, that subscribe,
/// publish and leave; then a graceful shutdown.
pub async fn run_demo() -> anyhow::Result<Transcript> {
    let topics = Topics::default();
    let listener = bind("127.0.0.1:0", topics.clone()).await?;
    let url = format!("ws://{}/", listener.local_addr());
    let server = listener.server().clone();
    let running = tokio::spawn(listener.run());

    let transcript = scenario(&url, &server, &topics).await;

    server.shutdown().await;
    running.await.context("the server task failed")??;
    transcript
}

async fn scenario(url: &str, server: &Server, topics: &Topics) -> anyhow::Result<Transcript> {
    let alice = Subscriber::connect(url, "alice").await?;
    let bob = Subscriber::connect(url, "bob").await?;
    let carol = Subscriber::connect(url, "carol").await?;

    alice.subscribe("news").await?;
    bob.subscribe("news").await?;
    bob.subscribe("sports").await?;
    carol.subscribe("sports").await?;

    // `$` topics are the server's: refused with an error reply.
    let refused = match alice.subscribe(WELCOME).await {
        Ok(_) => None,
        Err(err) => match err.downcast_ref::<webwire_client::RequestError>() {
            Some(webwire_client::RequestError::Request { code, message }) => {
                println!("[alice] refused: {code}: {message}");
                Some(code.clone())
            }
            _ => return Err(err),
        },
    };

    // A publish replies after the signals are queued, so each client's
    // signals arrive in the order of the publishes.
    let mut delivered = vec![
        alice.publish("news", "webwire 0.1 is out").await?,
        carol.publish("sports", "2:1 at half time").await?,
    ];
    bob.unsubscribe("news").await?;
    delivered.push(alice.publish("news", "examples landed").await?);

    // Carol leaves. The server runs her disconnect hook once her socket is
    // closed, a moment after her close handshake: wait for it.
    let carol_on_server = server
        .connections()
        .into_iter()
        .find(|conn| conn.id().get() == carol.connection())
        .context("carol's connection is not on the server")?;
    let mut received = BTreeMap::new();
    received.insert("carol".to_owned(), carol.leave().await?);
    tokio::time::timeout(PATIENCE, carol_on_server.closed())
        .await
        .context("carol's connection did not end on the server")?;
    let sports_after_leave = topics.subscriber_count("sports");
    delivered.push(bob.publish("sports", "final score 4:2").await?);

    received.insert("alice".to_owned(), alice.leave().await?);
    received.insert("bob".to_owned(), bob.leave().await?);
    Ok(Transcript {
        received,
        delivered,
        refused,
        sports_after_leave,
    })
}
