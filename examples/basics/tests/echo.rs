//! The echo example's scenario, in process on 127.0.0.1.

use std::time::Duration;

use webwire_client::{Payload, RequestError};
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
