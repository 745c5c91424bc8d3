//! The pubsub example's scenario, in process on 127.0.0.1.

use std::time::Duration;

use webwire_examples::pubsub::{self, Received};

#[tokio::test]
async fn pubsub_demo_signals_the_subscribers() {
    let transcript = tokio::time::timeout(Duration::from_secs(30), pubsub::run_demo())
        .await
        .expect("the demo took more than 30 s")
        .expect("the demo failed");

    // news: alice and bob; sports: bob and carol; then bob leaves news;
    // then carol leaves and only bob is left on sports.
    assert_eq!(transcript.delivered, [2, 2, 1, 1]);
    assert_eq!(transcript.refused.as_deref(), Some("INVALID_TOPIC"));
    assert_eq!(transcript.sports_after_leave, 1);

    let received = |name: &str| transcript.received[name].clone();
    assert_eq!(
        received("alice"),
        [
            Received::new("news", "webwire 0.1 is out"),
            Received::new("news", "examples landed"),
        ]
    );
    assert_eq!(
        received("bob"),
        [
            Received::new("news", "webwire 0.1 is out"),
            Received::new("sports", "2:1 at half time"),
            Received::new("sports", "final score 4:2"),
        ]
    );
    assert_eq!(
        received("carol"),
        [Received::new("sports", "2:1 at half time")]
    );
}

#[tokio::test]
async fn disconnect_hook_forgets_the_connection() {
    let topics = pubsub::Topics::default();
    let listener = pubsub::bind("127.0.0.1:0", topics.clone()).await.unwrap();
    let url = format!("ws://{}/", listener.local_addr());
    let server = listener.server().clone();
    let running = tokio::spawn(listener.run());

    let dave = pubsub::Subscriber::connect(&url, "dave").await.unwrap();
    assert_eq!(dave.subscribe("a").await.unwrap(), 1);
    assert_eq!(dave.subscribe("b").await.unwrap(), 1);
    assert!(!dave.unsubscribe("c").await.unwrap());
    let on_server = server.connections().pop().unwrap();
    assert_eq!(on_server.id().get(), dave.connection());

    // Dropping the last handle closes the client; the hook runs however
    // a connection ends.
    drop(dave);
    tokio::time::timeout(Duration::from_secs(10), on_server.closed())
        .await
        .expect("the connection did not end");
    assert_eq!(topics.subscriber_count("a"), 0);
    assert_eq!(topics.subscriber_count("b"), 0);

    server.shutdown().await;
    running.await.unwrap().unwrap();
}
