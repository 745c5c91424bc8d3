//! Signals both ways, `sleep`, concurrency, `broadcast`, `disconnect-me`
//! and heartbeats.

use std::time::{Duration, Instant};

use webwire_client::{ClientEvent, Payload, RequestError, Signal, Status};

use super::support::{
    describe, drain, ensure, expect_code, expect_text, request, same, unique, wait_event, Context,
    Ctx, Failure, EVENT_TIMEOUT,
};

/// The signal named `name` among the events, if any.
fn signal_named(event: &ClientEvent, name: &str) -> Option<Signal> {
    match event {
        ClientEvent::Signal(signal) if signal.name().as_str() == name => Some(signal.clone()),
        _ => None,
    }
}

/// Three payloads, one per encoding, unique to this run.
fn payloads(prefix: &str) -> [Payload; 3] {
    [
        Payload::utf8(unique(prefix)),
        Payload::utf16(&format!("{}-ютф16", unique(prefix))),
        Payload::binary(unique(prefix).into_bytes()),
    ]
}

/// `signal-me`: a `notice` signal with the payload in its encoding arrives
/// before the `ok` reply.
pub(super) async fn signal_me(ctx: Ctx) -> Result<(), Failure> {
    let (client, mut events) = ctx.client().await?;
    for payload in [
        Payload::utf8("note"),
        Payload::utf16("ж😀"),
        Payload::binary(vec![7, 8]),
    ] {
        expect_text(&client, "signal-me", payload.clone(), "ok").await?;
        // The client hands out events in the order messages arrived, so a
        // notice sent before the reply is already here.
        let notice = drain(&mut events)
            .iter()
            .find_map(|event| signal_named(event, "notice"))
            .ok_or_else(|| {
                Failure::new(format!(
                    "no notice signal had arrived when the reply to signal-me with {} came",
                    describe(&payload)
                ))
            })?;
        same("the notice signal's payload", notice.payload(), &payload)?;
    }
    client.close().await;
    Ok(())
}

/// `ping` signals are answered with `pong` signals carrying the same
/// payload in the same encoding.
pub(super) async fn ping_pong(ctx: Ctx) -> Result<(), Failure> {
    let (client, mut events) = ctx.client().await?;
    let mut waiting = payloads("ping").to_vec();
    for payload in &waiting {
        client
            .signal("ping", payload.clone())
            .await
            .context("sending a ping signal")?;
    }
    while !waiting.is_empty() {
        let pong = wait_event(&mut events, "a pong signal", |event| {
            signal_named(event, "pong")
        })
        .await
        .map_err(|failure| {
            let left: Vec<_> = waiting.iter().map(describe).collect();
            Failure::new(format!("{failure}; no pong yet for {}", left.join(", ")))
        })?;
        match waiting.iter().position(|p| p == pong.payload()) {
            Some(at) => {
                waiting.remove(at);
            }
            None => {
                return Err(Failure::new(format!(
                    "a pong with {} answers none of the pings",
                    describe(pong.payload())
                )))
            }
        }
    }
    client.close().await;
    Ok(())
}

/// `record` signals are counted per connection by `recorded`; other
/// signal names are ignored.
pub(super) async fn record(ctx: Ctx) -> Result<(), Failure> {
    const RECORDS: u64 = 5;
    let (client, _) = ctx.client().await?;
    expect_text(&client, "recorded", "", "0").await?;
    for i in 0..RECORDS {
        client
            .signal("record", i.to_string())
            .await
            .context("sending a record signal")?;
    }
    client
        .signal("no-such-signal", "ignored")
        .await
        .context("sending an unknown signal")?;
    // Signals are handled concurrently with requests: poll until all are counted.
    let deadline = Instant::now() + EVENT_TIMEOUT;
    loop {
        let reply = request(&client, "recorded", "").await?;
        let text = reply.to_text().unwrap_or_default().into_owned();
        let count: u64 = text
            .parse()
            .map_err(|_| Failure::new(format!("recorded replied {}", describe(&reply))))?;
        ensure!(
            count <= RECORDS,
            "recorded counts {count} after {RECORDS} record signals"
        );
        if count == RECORDS {
            break;
        }
        ensure!(
            Instant::now() < deadline,
            "recorded still counts {count} of {RECORDS} record signals after {EVENT_TIMEOUT:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    same(
        "reply to recorded",
        &request(&client, "recorded", "").await?,
        &Payload::utf8(RECORDS.to_string()),
    )?;
    let (other, _) = ctx.client().await?;
    expect_text(&other, "recorded", "", "0")
        .await
        .map_err(|failure| Failure::new(format!("on a second connection: {failure}")))?;
    other.close().await;
    client.close().await;
    Ok(())
}

/// `sleep` replies `ok`; its payload is read as text in any encoding.
pub(super) async fn sleep(ctx: Ctx) -> Result<(), Failure> {
    let (client, _) = ctx.client().await?;
    expect_text(&client, "sleep", "10", "ok").await?;
    expect_text(&client, "sleep", "0", "ok").await?;
    expect_text(&client, "sleep", Payload::utf16("5"), "ok").await?;
    client.close().await;
    Ok(())
}

/// A `sleep` longer than the client's timeout times out in the client; the
/// late reply is ignored and the connection stays usable.
pub(super) async fn sleep_timeout(ctx: Ctx) -> Result<(), Failure> {
    let (client, _) = ctx.client().await?;
    let result = client
        .request_timeout("sleep", "1000", Duration::from_millis(200))
        .await;
    ensure!(
        result == Err(RequestError::TimedOut),
        "sleep 1000 with a 200 ms timeout: expected a timeout, got {result:?}"
    );
    expect_text(&client, "echo", "alive", "alive").await?;
    // Past the late reply.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    ensure!(
        client.status() == Status::Connected,
        "after the late reply the client is {}",
        client.status()
    );
    expect_text(&client, "echo", "still", "still").await?;
    client.close().await;
    Ok(())
}

/// A `sleep` whose payload is not a non-negative decimal number fails with
/// code `BAD_SLEEP`.
pub(super) async fn bad_sleep(ctx: Ctx) -> Result<(), Failure> {
    let (client, _) = ctx.client().await?;
    for payload in [
        Payload::utf8("soon"),
        Payload::utf8("-5"),
        Payload::utf8(""),
        Payload::utf16("later"),
    ] {
        expect_code(&client, "sleep", payload, "BAD_SLEEP").await?;
    }
    client.close().await;
    Ok(())
}

/// Requests on one connection are handled concurrently: an `echo` sent
/// after a `sleep` of 1000 ms is answered first.
pub(super) async fn concurrent_requests(ctx: Ctx) -> Result<(), Failure> {
    let (client, _) = ctx.client().await?;
    let sleep = client.request("sleep", "1000");
    let echo = client.request("echo", "quick");
    tokio::pin!(sleep, echo);
    // Biased: the sleep is sent first, and if both replies are there, the
    // sleep is seen first.
    let first = tokio::select! {
        biased;
        result = &mut sleep => ("sleep", result),
        result = &mut echo => ("echo", result),
    };
    match first {
        ("echo", result) => {
            let reply = result.context("request \"echo\"")?;
            same("reply to echo", &reply, &Payload::utf8("quick"))?;
            let reply = sleep.await.context("request \"sleep\"")?;
            same("reply to sleep", &reply, &Payload::utf8("ok"))?;
        }
        (_, result) => {
            result.context("request \"sleep\"")?;
            return Err(Failure::new(
                "an echo sent after a sleep of 1000 ms was answered after it: \
                 requests on one connection are not handled concurrently",
            ));
        }
    }
    client.close().await;
    Ok(())
}

/// 100 requests in flight at once on one connection, in mixed encodings,
/// with sleeps so that replies come back out of order.
pub(super) async fn hundred_requests(ctx: Ctx) -> Result<(), Failure> {
    let (client, _) = ctx.client().await?;
    let expected: Vec<(&str, Payload, Payload)> = (0..100)
        .map(|i| {
            if i % 10 == 0 {
                let ms = (100 - i).to_string();
                ("sleep", Payload::utf8(ms), Payload::utf8("ok"))
            } else {
                let text = format!("n{i}");
                let payload = match i % 3 {
                    0 => Payload::utf8(text),
                    1 => Payload::utf16(&text),
                    _ => Payload::binary(text.into_bytes()),
                };
                ("echo", payload.clone(), payload)
            }
        })
        .collect();
    let replies = futures_util::future::join_all(
        expected
            .iter()
            .map(|(name, payload, _)| client.request(name, payload.clone())),
    )
    .await;
    for (i, (reply, (name, _, want))) in replies.into_iter().zip(&expected).enumerate() {
        let reply = reply.context(format_args!("request {i} ({name:?})"))?;
        same(&format!("reply to request {i} ({name:?})"), &reply, want)?;
    }
    client.close().await;
    Ok(())
}

/// `broadcast`: a `broadcast` signal with the payload, in its encoding,
/// reaches every connected client, the caller included.
pub(super) async fn broadcast(ctx: Ctx) -> Result<(), Failure> {
    let (a, mut a_events) = ctx.client().await?;
    let (b, mut b_events) = ctx.client().await?;
    for payload in payloads("broadcast") {
        expect_text(&a, "broadcast", payload.clone(), "ok").await?;
        for (who, events) in [
            ("the caller", &mut a_events),
            ("another client", &mut b_events),
        ] {
            let what = format!("a broadcast signal with {} on {who}", describe(&payload));
            wait_event(events, &what, |event| {
                signal_named(event, "broadcast").filter(|signal| signal.payload() == &payload)
            })
            .await?;
        }
    }
    a.close().await;
    b.close().await;
    Ok(())
}

/// `disconnect-me`: the server closes the connection after the reply; the
/// client reconnects by itself and works again.
pub(super) async fn disconnect_me(ctx: Ctx) -> Result<(), Failure> {
    let (client, mut events) = ctx.client().await?;
    drain(&mut events);
    expect_text(&client, "disconnect-me", "", "ok").await?;
    wait_event(&mut events, "the disconnection", |event| {
        matches!(event, ClientEvent::Disconnected).then_some(())
    })
    .await?;
    // Waits for the new connection.
    expect_text(&client, "echo", "back", "back").await?;
    wait_event(&mut events, "the reconnection", |event| {
        matches!(event, ClientEvent::Connected).then_some(())
    })
    .await?;
    ensure!(
        client.status() == Status::Connected,
        "after reconnecting the client is {}",
        client.status()
    );
    client.close().await;
    Ok(())
}

/// Heartbeats keep an idle connection open beyond the 3 s read timeout.
pub(super) async fn heartbeat(ctx: Ctx) -> Result<(), Failure> {
    let (client, mut events) = ctx.client().await?;
    tokio::time::sleep(Duration::from_millis(4500)).await;
    let lost = drain(&mut events)
        .iter()
        .any(|event| matches!(event, ClientEvent::Disconnected));
    ensure!(
        !lost,
        "an idle connection was closed within 4.5 s although the client sent heartbeats"
    );
    expect_text(&client, "echo", "awake", "awake").await?;
    client.close().await;
    Ok(())
}
