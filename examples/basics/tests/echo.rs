//! The echo example's scenario, in process on 127.0.0.1, and its handlers
//! tested without a socket.

use std::time::Duration;

use webwire_client::{Client, Payload, RequestError};
use webwire_examples::echo::{self, SumReply};
use webwire_examples::from_json;

#[tokio::test]
async fn echo_demo_gets_every_reply() {
    let transcript = tokio::time::timeout(Duration::from_secs(30), echo::run_demo())
        .await
        .expect("the demo took more than 30 s")
        .expect("the demo failed");
    let exchanges = &transcript.exchanges;
    assert_eq!(exchanges.len(), 7, "{exchanges:#?}");

    // Echoes come back byte for byte, in the encoding they were sent in.
    for exchange in &exchanges[..3] {
        assert_eq!(exchange.name, "echo");
        assert_eq!(exchange.reply.as_ref(), Ok(&exchange.sent));
    }
    assert_eq!(
        exchanges[1].reply.as_ref().unwrap().to_text().unwrap(),
        "héllo wörld ✓"
    );

    let sum: SumReply = from_json(exchanges[3].reply.as_ref().unwrap()).unwrap();
    assert_eq!(sum, SumReply { sum: 10, count: 4 });

    let code = |i: usize| match &exchanges[i].reply {
        Err(RequestError::Request { code, .. }) => code.clone(),
        other => panic!("exchange {i}: expected an error reply, got {other:?}"),
    };
    assert_eq!(code(4), "OVERFLOW");
    assert_eq!(code(5), "INVALID_PAYLOAD");
    assert_eq!(code(6), "UNKNOWN_REQUEST");
    assert_eq!(exchanges[6].sent, Payload::from("anyone?"));
}

/// How an application tests its handlers: the real client, connected in
/// memory to the server (features `test-util`), on paused time.
#[tokio::test(start_paused = true)]
async fn handlers_in_memory() {
    let server = webwire_server::Server::builder(echo::router())
        .build()
        .unwrap();
    let to_server = server.clone();
    let client = Client::builder("ws://echo.test/")
        .transport(move || {
            let stream = to_server.connect_in_memory();
            async move { Ok(stream) }
        })
        .connect()
        .await
        .unwrap();
    let reply = client.request("echo", Payload::utf16("hé")).await.unwrap();
    assert_eq!(reply, Payload::utf16("hé"));
    let sum = client
        .request("sum", r#"{"numbers":[1,2,3]}"#)
        .await
        .unwrap();
    assert_eq!(
        from_json::<SumReply>(&sum).unwrap(),
        SumReply { sum: 6, count: 3 }
    );
    assert!(matches!(
        client.request("sum", "[").await,
        Err(RequestError::Request { code, .. }) if code == "INVALID_PAYLOAD"
    ));
    assert_eq!(server.connection_count(), 1);
    client.close().await;
    server.shutdown().await;
}
