//! The server's spans exported through OpenTelemetry: a `webwire.connection`
//! span per connection and a `webwire.request` span per request (its
//! child), here printed by the stdout exporter. For a collector, use
//! `opentelemetry-otlp`'s `SpanExporter` in place of the stdout one; the
//! rest stays as it is.
//!
//! ```sh
//! cargo run -p webwire-examples --example otel
//! ```
//!
//! Request spans are at DEBUG (cheap when disabled, see docs/metrics.md):
//! the filter below enables them for `webwire_server` only.

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;
use webwire_client::Client;
use webwire_server::{MessageRouter, Payload, ReplyError, Server};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let provider = SdkTracerProvider::builder()
        .with_simple_exporter(opentelemetry_stdout::SpanExporter::default())
        .build();
    let tracer = provider.tracer("webwire-example");
    tracing_subscriber::registry()
        .with(tracing_subscriber::EnvFilter::new(
            "info,webwire_server=debug",
        ))
        .with(tracing_opentelemetry::layer().with_tracer(tracer))
        .init();

    let router = MessageRouter::new().request("echo", |payload: Payload| async move {
        Ok::<_, ReplyError>(payload)
    });
    let server = Server::builder(router).build()?;
    let listener = server.bind("127.0.0.1:0").await?;
    let url = format!("ws://{}/", listener.local_addr());
    let running = tokio::spawn(listener.run());

    let client = Client::connect(&url).await?;
    let reply = client.request("echo", "hello").await?;
    println!("reply: {}", reply.to_text()?);
    client.close().await;
    server.shutdown().await;
    running.await??;

    // Ends the spans' export: each was printed as it ended.
    provider.shutdown()?;
    Ok(())
}
