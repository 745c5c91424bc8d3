//! Request-reply: an `echo` request that answers with the payload it got,
//! whatever its encoding, and a typed JSON request, `sum`.
//!
//! ```no_run
//! # async fn run() -> anyhow::Result<()> {
//! // The server on a free port of 127.0.0.1, and a client against it:
//! let transcript = webwire_examples::echo::run_demo().await?;
//! println!("{} requests answered", transcript.exchanges.len());
//! # Ok(()) }
//! ```

use std::time::Duration;

use anyhow::Context;
use serde::{Deserialize, Serialize};
use webwire_client::{Client, Payload};
use webwire_server::{Json, Listener, MessageRouter, ReplyError, Server};

use crate::{describe, from_json, json_payload};

/// What a `sum` request carries.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SumRequest {
    /// The numbers to add up.
    pub numbers: Vec<i64>,
}

/// What a `sum` request is answered with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SumReply {
    /// The sum of the numbers.
    pub sum: i64,
    /// How many numbers there were.
    pub count: usize,
}

/// The server's routes.
pub fn router() -> MessageRouter {
    MessageRouter::new()
        // Taking the `Payload` (not a `String`) keeps its encoding: a UTF-16
        // request gets a UTF-16 reply, a binary one a binary reply.
        .request("echo", |payload: Payload| async move {
            Ok::<_, ReplyError>(payload)
        })
        // `Json<T>` parses the payload with serde; a payload that does not
        // parse is answered with an `INVALID_PAYLOAD` error before the
        // handler runs. A `ReplyError` is sent to the client as is.
        .request("sum", |Json(request): Json<SumRequest>| async move {
            let sum = request
                .numbers
                .iter()
                .try_fold(0i64, |sum, n| sum.checked_add(*n))
                .ok_or_else(|| ReplyError::from_static("OVERFLOW", "the sum overflows an i64"))?;
            Ok::<_, ReplyError>(Json(SumReply {
                sum,
                count: request.numbers.len(),
            }))
        })
}

/// Binds the echo server to `addr` (port 0 picks a free port); it accepts
/// connections once the listener runs.
pub async fn bind(addr: &str) -> anyhow::Result<Listener> {
    let server = Server::builder(router()).build()?;
    Ok(server.bind(addr).await?)
}

/// Runs the echo server on `addr` until Ctrl-C, then shuts it down
/// gracefully.
pub async fn serve(addr: &str) -> anyhow::Result<()> {
    let listener = bind(addr).await?;
    println!(
        "echo server listening on ws://{}/ (Ctrl-C to stop)",
        listener.local_addr()
    );
    listener.run_until(tokio::signal::ctrl_c()).await?;
    Ok(())
}

/// One request the client sent, and what came back.
#[derive(Debug, Clone, PartialEq)]
pub struct Exchange {
    /// The request's name.
    pub name: &'static str,
    /// Its payload.
    pub sent: Payload,
    /// The reply, or the server's error answer.
    pub reply: Result<Payload, webwire_client::RequestError>,
}

/// What the client of [`run_client`] sent and got, in order.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Transcript {
    /// The requests and their replies.
    pub exchanges: Vec<Exchange>,
}

/// Connects to the echo server at `url`, sends a few requests, prints the
/// replies and closes. Error answers of the server are part of the
/// transcript; a broken connection is an error.
pub async fn run_client(url: &str) -> anyhow::Result<Transcript> {
    let client = Client::builder(url)
        .request_timeout(Duration::from_secs(10))
        .connect()
        .await
        .with_context(|| format!("cannot connect to {url}"))?;
    println!("connected to {url}");

    let requests = [
        // `&str` and `String` convert into UTF-8 payloads, `Vec<u8>` and
        // `Bytes` into binary ones.
        ("echo", Payload::from("hello, webwire")),
        ("echo", Payload::utf16("héllo wörld ✓")),
        ("echo", Payload::binary(vec![0x00, 0x01, 0x7f, 0xfe, 0xff])),
        (
            "sum",
            json_payload(&SumRequest {
                numbers: vec![1, 2, 3, 4],
            })?,
        ),
        (
            "sum",
            json_payload(&SumRequest {
                numbers: vec![i64::MAX, 1],
            })?,
        ),
        ("sum", Payload::from("not json")),
        ("shout", Payload::from("anyone?")),
    ];

    let mut transcript = Transcript::default();
    for (name, sent) in requests {
        // Payloads are reference-counted bytes: the clone is cheap.
        let reply = client.request(name, sent.clone()).await;
        match &reply {
            Ok(payload) if name == "sum" => {
                let sum: SumReply = from_json(payload)?;
                println!("{name} {} -> {sum:?}", describe(&sent));
            }
            Ok(payload) => println!("{name} {} -> {}", describe(&sent), describe(payload)),
            // The server answered with an error: worth showing, not fatal.
            Err(err) if err.is_server_answer() => {
                println!("{name} {} -> error: {err}", describe(&sent));
            }
            // Timed out, disconnected...: give up.
            Err(err) => return Err(err.clone()).with_context(|| format!("request {name}")),
        }
        transcript.exchanges.push(Exchange { name, sent, reply });
    }

    // Waits for the close handshake, so the server sees a clean close.
    client.close().await;
    Ok(transcript)
}

/// The whole example in one process: the server on a free port of
/// 127.0.0.1, the client against it, then a graceful shutdown.
pub async fn run_demo() -> anyhow::Result<Transcript> {
    let listener = bind("127.0.0.1:0").await?;
    let url = format!("ws://{}/", listener.local_addr());
    // Any clone of the server can shut it down; `run` returns after that.
    let server = listener.server().clone();
    let running = tokio::spawn(listener.run());

    let transcript = run_client(&url).await;

    server.shutdown().await;
    running.await.context("the server task failed")??;
    transcript
}
