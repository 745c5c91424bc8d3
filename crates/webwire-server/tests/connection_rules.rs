//! The connection's rules checked against the real connection task: the
//! properties the state machine's own tests check (every request read gets
//! exactly one reply; nothing is written after the close frame), here over
//! in-memory connections on paused time, for any interleaving of requests
//! whose handlers finish at once or later, signals, signals queued by
//! other tasks, closes, drains and shutdowns, at each concurrency mode.

mod common;

use std::collections::HashMap;
use std::num::NonZeroUsize;
use std::time::Duration;

use bytes::Bytes;
use common::TestClient;
use proptest::prelude::*;
use webwire_proto::{Payload, RequestId, ServerMessage};
use webwire_server::options::Concurrency;
use webwire_server::{MessageRouter, ReplyError, Request, Server};

#[derive(Debug, Clone)]
enum Act {
    /// A request whose handler sleeps this many milliseconds (0: it
    /// finishes at its first poll).
    Request(u8),
    /// A signal the client sends.
    Signal,
    /// A signal another task queues for the connection.
    QueueSignal,
    /// Virtual time passes.
    Sleep(u8),
    /// The application closes the connection.
    Close,
    /// The server drains (close code 1012).
    Drain,
    /// The server shuts down.
    Shutdown,
}

fn act() -> impl Strategy<Value = Act> {
    prop_oneof![
        6 => prop_oneof![Just(0u8), 1u8..40].prop_map(Act::Request),
        2 => Just(Act::Signal),
        2 => Just(Act::QueueSignal),
        3 => (0u8..30).prop_map(Act::Sleep),
        1 => Just(Act::Close),
        1 => Just(Act::Drain),
        1 => Just(Act::Shutdown),
    ]
}

fn concurrency() -> impl Strategy<Value = Concurrency> {
    prop_oneof![
        Just(Concurrency::Limited(NonZeroUsize::MIN)),
        Just(Concurrency::Limited(NonZeroUsize::new(3).unwrap())),
        Just(Concurrency::Unlimited),
    ]
}

fn router() -> MessageRouter {
    MessageRouter::new()
        .request("work", |req: Request| async move {
            let delay = req.payload().as_bytes()[0];
            if delay > 0 {
                tokio::time::sleep(Duration::from_millis(delay.into())).await;
            }
            Ok::<_, ReplyError>(req.payload().clone())
        })
        .signal("note", |_: Payload| async {})
}

/// What the client saw: the messages before the close frame, the close
/// code, and whether anything came after it.
async fn run_case(concurrency: Concurrency, acts: Vec<Act>) -> Result<(), TestCaseError> {
    let server = Server::builder(router())
        .concurrency(concurrency)
        .build()
        .unwrap();
    let mut client = TestClient::in_memory(&server).await;
    let conn = server.connections().remove(0);
    // Requests sent before a close was asked for are read for sure; later
    // ones may arrive after the connection closed.
    let (mut sent, mut sent_late) = (Vec::new(), Vec::new());
    let mut shutdown = None;
    let mut drain = None;
    let mut closed = false;
    for act in acts {
        match act {
            Act::Request(delay) => {
                let payload = Payload::binary(Bytes::from(vec![delay]));
                let id = client.send_request("work", payload).await;
                if shutdown.is_none() && !closed {
                    sent.push(id);
                } else {
                    sent_late.push(id);
                }
            }
            Act::Signal => client.signal("note", Payload::utf8("n")).await,
            Act::QueueSignal => {
                let _ = conn.try_signal("queued", Payload::utf8("q"));
            }
            Act::Sleep(ms) => tokio::time::sleep(Duration::from_millis(ms.into())).await,
            Act::Close => {
                conn.close();
                closed = true;
            }
            Act::Drain => {
                if drain.is_none() {
                    let server = server.clone();
                    drain = Some(tokio::spawn(async move {
                        server.drain(Duration::from_millis(20)).await
                    }));
                }
                closed = true;
            }
            Act::Shutdown => {
                if shutdown.is_none() {
                    let server = server.clone();
                    shutdown = Some(tokio::spawn(async move { server.shutdown().await }));
                }
            }
        }
    }
    conn.close();

    let mut replies: HashMap<RequestId, usize> = HashMap::new();
    let code = loop {
        let message = tokio::time::timeout(Duration::from_secs(30), client.recv_ws())
            .await
            .map_err(|_| TestCaseError::fail("the server never closed"))?;
        match message {
            Some(Ok(message)) if message.is_close() => {
                break message.as_close().map(|(code, _)| u16::from(code));
            }
            Some(Ok(message)) if message.is_binary() => {
                let message = ServerMessage::parse(Bytes::from(message.into_payload()))
                    .map_err(|err| TestCaseError::fail(format!("{err}")))?;
                if let Some(id) = message.request_id() {
                    prop_assert!(
                        matches!(
                            message,
                            ServerMessage::Reply(_) | ServerMessage::Shutdown(_)
                        ),
                        "{message:?}"
                    );
                    *replies.entry(id).or_default() += 1;
                }
            }
            Some(Ok(_)) => {}
            Some(Err(err)) => return Err(TestCaseError::fail(format!("{err}"))),
            None => break None,
        }
    };
    // The close frame is the last thing written.
    while let Some(message) = client.recv_ws().await {
        if let Ok(message) = message {
            prop_assert!(!message.is_binary(), "a message after the close frame");
        }
    }
    prop_assert!(
        matches!(code, Some(1000 | 1001 | 1012)),
        "closed with {code:?}"
    );
    prop_assert!(
        code != Some(1012) || drain.is_some(),
        "1012 without a drain"
    );
    for id in &sent {
        prop_assert_eq!(replies.remove(id), Some(1), "request {:?}", id);
    }
    for id in &sent_late {
        prop_assert!(replies.remove(id).unwrap_or(0) <= 1, "request {:?}", id);
    }
    prop_assert!(replies.is_empty(), "replies to no request: {replies:?}");
    if let Some(drain) = drain {
        drain.await.unwrap();
    }
    if let Some(shutdown) = shutdown {
        shutdown.await.unwrap();
    } else {
        server.shutdown().await;
    }
    Ok(())
}

proptest! {
    // Each case is a few milliseconds of virtual time on one thread.
    #![proptest_config(ProptestConfig {
        cases: 48,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn every_request_read_gets_one_reply_and_the_close_frame_comes_last(
        concurrency in concurrency(),
        acts in proptest::collection::vec(act(), 1..24),
    ) {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .start_paused(true)
            .build()
            .unwrap();
        runtime.block_on(run_case(concurrency, acts))?;
    }
}
