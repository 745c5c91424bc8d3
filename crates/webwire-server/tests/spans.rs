//! The spans of a connection and of its requests, as a test subscriber
//! sees them: their names and fields (OpenTelemetry's names), the
//! session's digest and never its key.
//!
//! One test in this binary: the subscriber is the process's global one.

mod common;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use common::{within, TestClient};
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing_subscriber::layer::{Context, SubscriberExt as _};
use tracing_subscriber::Layer;
use webwire_proto::{KeyDigest, Payload, ServerMessage};
use webwire_server::session::MemorySessionManager;
use webwire_server::{Connection, MessageRouter, ReplyError, Server};

/// A span as the layer saw it: its name, its fields, its parent's name.
#[derive(Debug, Clone, Default)]
struct Seen {
    name: &'static str,
    fields: BTreeMap<String, String>,
    parent: Option<&'static str>,
}

/// Records every span with its fields, as recorded over its life, and
/// every event's message with the span it happened in.
#[derive(Clone, Default)]
struct Spans(Arc<Mutex<BTreeMap<u64, Seen>>>, Arc<Mutex<Vec<Event>>>);

/// An event's message and the name of the span it happened in.
type Event = (String, Option<&'static str>);

struct Fields<'a>(&'a mut BTreeMap<String, String>);

impl Visit for Fields<'_> {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.0.insert(field.name().to_owned(), format!("{value:?}"));
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().to_owned(), value.to_owned());
    }
}

impl<S> Layer<S> for Spans
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
{
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        let mut seen = Seen {
            name: attrs.metadata().name(),
            parent: ctx
                .span(id)
                .and_then(|span| span.parent().map(|parent| parent.name())),
            ..Seen::default()
        };
        attrs.record(&mut Fields(&mut seen.fields));
        self.0.lock().unwrap().insert(id.into_u64(), seen);
    }

    fn on_event(&self, event: &tracing::Event<'_>, ctx: Context<'_, S>) {
        let mut fields = BTreeMap::new();
        event.record(&mut Fields(&mut fields));
        let message = fields.remove("message").unwrap_or_default();
        let current = ctx.lookup_current().map(|span| span.name());
        self.1.lock().unwrap().push((message, current));
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, _ctx: Context<'_, S>) {
        if let Some(seen) = self.0.lock().unwrap().get_mut(&id.into_u64()) {
            values.record(&mut Fields(&mut seen.fields));
        }
    }
}

impl Spans {
    fn named(&self, name: &str) -> Vec<Seen> {
        self.0
            .lock()
            .unwrap()
            .values()
            .filter(|seen| seen.name == name)
            .cloned()
            .collect()
    }
}

#[tokio::test(start_paused = true)]
async fn connection_and_request_spans_carry_their_fields_and_no_key() {
    let spans = Spans::default();
    let subscriber = tracing_subscriber::registry()
        .with(spans.clone())
        .with(tracing_subscriber::filter::LevelFilter::DEBUG);
    tracing::subscriber::set_global_default(subscriber).unwrap();

    let router = MessageRouter::new()
        .request("echo", |payload: Payload| async move {
            Ok::<_, ReplyError>(payload)
        })
        // Pending at its first poll: it runs on in a task of its own.
        .request("slow", |_: Payload| async move {
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
            tracing::info!("slow handler done");
            Ok::<_, ReplyError>("done")
        })
        .request("panics", |_: Payload| async move {
            if true {
                panic!("on purpose");
            }
            Ok::<_, ReplyError>("")
        })
        .request("login", |conn: Connection, _: Payload| async move {
            let session = conn
                .create_session(None)
                .await
                .map_err(|err| ReplyError::from_static("SESSION", err.to_string()))?;
            Ok::<_, ReplyError>(session.key)
        });
    let server = Server::builder(router)
        .session_manager(std::sync::Arc::new(MemorySessionManager::new()))
        .concurrency(webwire_server::options::Concurrency::Unlimited)
        .build()
        .unwrap();
    let mut client = TestClient::in_memory(&server).await;
    let conn_id = server.connections()[0].id().get();
    client.request("echo", Payload::utf8("hi")).await;
    client.request("panics", Payload::utf8("")).await;
    client.request("slow", Payload::utf8("")).await;
    let key = match client.request("login", Payload::utf8("")).await {
        ServerMessage::Reply(reply) => reply.payload.to_text().unwrap().into_owned(),
        other => panic!("{other:?}"),
    };
    client.close().await;
    within("shutdown", server.shutdown()).await;

    let connections = spans.named("webwire.connection");
    assert_eq!(connections.len(), 1, "{connections:?}");
    let fields = &connections[0].fields;
    assert_eq!(fields["connection.id"], conn_id.to_string());
    assert_eq!(fields["client.address"], "127.0.0.1:0");
    assert_eq!(fields["otel.kind"], "server");
    assert_eq!(fields["session"], KeyDigest::new(&key).to_string());

    let requests = spans.named("webwire.request");
    let request = |name: &str| {
        requests
            .iter()
            .find(|seen| seen.fields["request.name"] == name)
            .unwrap_or_else(|| panic!("no span for {name}: {requests:?}"))
            .clone()
    };
    let echo = request("echo");
    assert_eq!(echo.parent, Some("webwire.connection"));
    assert_eq!(echo.fields["otel.name"], "echo");
    assert_eq!(echo.fields["outcome"], "ok");
    assert!(echo.fields["duration_s"].parse::<f64>().unwrap() >= 0.0);
    assert!(echo.fields.contains_key("request.id"));
    assert!(!echo.fields.contains_key("otel.status_code"));
    let slow = request("slow");
    assert_eq!(slow.parent, Some("webwire.connection"));
    assert_eq!(slow.fields["outcome"], "ok");
    // Real time (std's clock), not the test's paused clock.
    assert!(slow.fields["duration_s"].parse::<f64>().unwrap() >= 0.0);
    // Its later polls, in a task of its own, are in its span.
    let events = spans.1.lock().unwrap().clone();
    assert!(
        events.contains(&("slow handler done".to_owned(), Some("webwire.request"))),
        "{events:?}"
    );
    let panics = request("panics");
    assert_eq!(panics.fields["outcome"], "internal_error");
    assert_eq!(panics.fields["otel.status_code"], "ERROR");
    assert_eq!(request("login").fields["outcome"], "ok");

    // The key is in no span's fields.
    for seen in spans.0.lock().unwrap().values() {
        for value in seen.fields.values() {
            assert!(!value.contains(&key), "{seen:?}");
        }
    }
}
