//! Signals both ways, `sleep`, concurrency, `broadcast`, `disconnect-me`
//! and heartbeats.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use futures_util::stream::{FuturesUnordered, StreamExt};
use webwire_client::{ClientEvent, Payload, RequestError, Signal, Status};

use super::raw::{Ended, Raw};
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

/// How long `sleep` waits at most (docs/interop.md).
const SLEEP_CAP: Duration = Duration::from_millis(10_000);

/// The generous upper bound for something that should take `expected`
/// on an idle server: twice as long plus a second, for a loaded machine.
fn generous(expected: Duration) -> Duration {
    expected * 2 + Duration::from_secs(1)
}

/// Seconds with two decimals, for notes and reasons.
fn secs(duration: Duration) -> String {
    format!("{:.2} s", duration.as_secs_f64())
}

/// `sleep` is capped at 10000 ms: `10001` and a number too large for 64
/// bits both answer `ok` after about 10 s (not at once, not never, not
/// an error). Runs in the background.
pub(super) async fn sleep_cap(ctx: Ctx) -> Result<(), Failure> {
    let (client, _) = ctx.client().await?;
    let earliest = SLEEP_CAP.mul_f64(0.9);
    let latest = SLEEP_CAP + Duration::from_secs(5);
    let started = Instant::now();
    let mut replies: FuturesUnordered<_> = ["10001", "99999999999999999999999"]
        .into_iter()
        .map(|ms| {
            let client = &client;
            async move { (ms, client.request_timeout("sleep", ms, latest).await) }
        })
        .collect();
    let mut slowest = Duration::ZERO;
    while let Some((ms, result)) = replies.next().await {
        let took = started.elapsed();
        match result {
            Err(RequestError::TimedOut) => {
                return Err(Failure::new(format!(
                    "sleep {ms}: no reply within {}: sleep is not capped at 10000 ms",
                    secs(latest)
                )))
            }
            result => {
                let reply = result.context(format_args!("request \"sleep\" with {ms}"))?;
                same(
                    &format!("reply to sleep {ms}"),
                    &reply,
                    &Payload::utf8("ok"),
                )?;
            }
        }
        ensure!(
            took >= earliest,
            "sleep {ms} answered after {}, expected about 10 s (the cap)",
            secs(took)
        );
        slowest = slowest.max(took);
    }
    ctx.note(format!("answered after {}", secs(slowest)));
    client.close().await;
    Ok(())
}

/// Requests on one connection are handled concurrently: ten `sleep`s of
/// 800 ms sent at once are all answered within about 800 ms (not 8 s), and
/// an `echo` sent after them is answered first.
pub(super) async fn concurrent_requests(ctx: Ctx) -> Result<(), Failure> {
    const SLEEPS: u32 = 10;
    const SLEEP: Duration = Duration::from_millis(800);
    let (client, _) = ctx.client().await?;
    let answered = AtomicUsize::new(0);
    let started = Instant::now();
    let sleeps = futures_util::future::join_all((0..SLEEPS).map(|_| async {
        let result = client.request("sleep", SLEEP.as_millis().to_string()).await;
        (
            result,
            answered.fetch_add(1, Ordering::SeqCst),
            started.elapsed(),
        )
    }));
    let echo = async {
        let result = client.request("echo", "quick").await;
        (result, answered.fetch_add(1, Ordering::SeqCst))
    };
    // Polled in this order: the sleeps are sent before the echo.
    let bound = generous(SLEEP);
    let Ok((sleeps, (echo, echo_rank))) =
        tokio::time::timeout(bound, futures_util::future::join(sleeps, echo)).await
    else {
        return Err(Failure::new(format!(
            "of {SLEEPS} sleeps of {} ms sent at once, {} were answered within {}: requests \
             on one connection are not handled concurrently (one at a time takes {})",
            SLEEP.as_millis(),
            answered.load(Ordering::SeqCst).min(SLEEPS as usize),
            secs(bound),
            secs(SLEEP * SLEEPS)
        )));
    };
    let reply = echo.context("request \"echo\"")?;
    same("reply to echo", &reply, &Payload::utf8("quick"))?;
    ensure!(
        echo_rank == 0,
        "an echo sent after {SLEEPS} sleeps of {} ms was answered after {echo_rank} of them",
        SLEEP.as_millis()
    );
    let mut slowest = Duration::ZERO;
    for (result, _, took) in sleeps {
        let reply = result.context("request \"sleep\"")?;
        same("reply to sleep", &reply, &Payload::utf8("ok"))?;
        ensure!(
            took >= SLEEP.mul_f64(0.9),
            "a sleep of {} ms was answered after {}",
            SLEEP.as_millis(),
            secs(took)
        );
        slowest = slowest.max(took);
    }
    ctx.note(format!(
        "{SLEEPS} sleeps of {} ms answered within {}",
        SLEEP.as_millis(),
        secs(slowest)
    ));
    client.close().await;
    Ok(())
}

/// 100 requests in flight at once on one connection, in mixed encodings,
/// ten of them sleeps of decreasing length (600 ms down to 60 ms): each gets
/// its own correct reply, all within about 600 ms (one at a time takes
/// 3.3 s), and the sleeps' replies come in another order than they were
/// sent (the shortest, sent last, before the longest, sent first).
pub(super) async fn hundred_requests(ctx: Ctx) -> Result<(), Failure> {
    const LONGEST: u64 = 600;
    let (client, _) = ctx.client().await?;
    let expected: Vec<(&str, Payload, Payload)> = (0..100u64)
        .map(|i| {
            if i % 10 == 0 {
                let ms = (LONGEST - i / 10 * LONGEST / 10).to_string();
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
    let sleep_total: u64 = (0..10).map(|k| LONGEST - k * LONGEST / 10).sum();
    // The order in which the sleeps' replies arrive, by index.
    let order = Mutex::new(Vec::new());
    let all = futures_util::future::join_all(expected.iter().enumerate().map(
        |(i, (name, payload, _))| {
            let (client, order) = (&client, &order);
            async move {
                let result = client.request(name, payload.clone()).await;
                if *name == "sleep" {
                    order.lock().unwrap_or_else(PoisonError::into_inner).push(i);
                }
                result
            }
        },
    ));
    let bound = generous(Duration::from_millis(LONGEST));
    let Ok(replies) = tokio::time::timeout(bound, all).await else {
        return Err(Failure::new(format!(
            "100 requests with sleeps of {LONGEST} down to {} ms were not all answered within \
             {}: requests on one connection are not handled concurrently (one at a time \
             takes {} ms)",
            LONGEST / 10,
            secs(bound),
            sleep_total
        )));
    };
    for (i, (reply, (name, _, want))) in replies.into_iter().zip(&expected).enumerate() {
        let reply = reply.context(format_args!("request {i} ({name:?})"))?;
        same(&format!("reply to request {i} ({name:?})"), &reply, want)?;
    }
    let order = order.into_inner().unwrap_or_else(PoisonError::into_inner);
    let sent: Vec<usize> = (0..100).step_by(10).collect();
    let position = |i: usize| order.iter().position(|&at| at == i);
    ensure!(
        order != sent,
        "the sleeps' replies came in the order they were sent, although the later ones were \
         shorter: requests on one connection are not all handled at once, or replies wait \
         for earlier ones"
    );
    ensure!(
        position(90) < position(0),
        "the shortest sleep ({} ms, sent last) was answered after the longest ({LONGEST} ms, \
         sent first), reply order {order:?}: requests on one connection are not all handled \
         at once",
        LONGEST / 10
    );
    client.close().await;
    Ok(())
}

/// Signals are handled concurrently with requests: a `ping` sent while a
/// `sleep` of 500 ms runs on the same connection is answered (`pong`)
/// before the sleep. (No signal of the interop server takes time, so
/// whether signals run concurrently with each other cannot be seen.)
pub(super) async fn concurrent_signals(ctx: Ctx) -> Result<(), Failure> {
    let (client, mut events) = ctx.client().await?;
    let payload = Payload::utf8(unique("ping-while-sleeping"));
    let sleep = client.request("sleep", "500");
    tokio::pin!(sleep);
    // Sends the sleep.
    ensure!(
        futures_util::poll!(&mut sleep).is_pending(),
        "a sleep of 500 ms was answered at once"
    );
    client
        .signal("ping", payload.clone())
        .await
        .context("sending a ping signal")?;
    let pong = async {
        wait_event(&mut events, "a pong signal", |event| {
            signal_named(event, "pong").filter(|signal| signal.payload() == &payload)
        })
        .await
    };
    tokio::select! {
        biased;
        result = &mut sleep => {
            result.context("request \"sleep\"")?;
            return Err(Failure::new(
                "a ping sent while a sleep of 500 ms ran was not answered before the sleep: \
                 signals wait for the requests of their connection",
            ));
        }
        found = pong => {
            found?;
        }
    }
    let reply = sleep.await.context("request \"sleep\"")?;
    same("reply to sleep", &reply, &Payload::utf8("ok"))?;
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

/// The server enforces the read timeout it announces: a bare connection
/// that sends nothing at all (no heartbeats, no pings) is closed after
/// between 0.9 and 2 times the read timeout (plus 1 s); a client that sends
/// heartbeats stays connected as long, and beyond the read timeout, and
/// still answers. Both run at once, so this costs about one read timeout.
/// Runs in the background.
pub(super) async fn heartbeat(ctx: Ctx) -> Result<(), Failure> {
    let (client, mut events) = ctx.client().await?;
    let connected = Instant::now();
    let silent = Raw::connect(ctx.url(), None).await?;
    let read_timeout = Duration::from_millis(silent.conf.read_timeout_ms.into());
    let earliest = read_timeout.mul_f64(0.9);
    let latest = generous(read_timeout);
    let ms = read_timeout.as_millis();
    match silent.wait_closed(Instant::now() + latest).await {
        Ended::Closed(after) => {
            ensure!(
                after >= earliest,
                "a silent connection was closed after {}, before the announced read timeout \
                 of {ms} ms",
                secs(after)
            );
            ctx.note(format!(
                "a silent connection was closed after {}, read timeout {ms} ms",
                secs(after)
            ));
        }
        Ended::Open => {
            return Err(Failure::new(format!(
                "a silent connection (no heartbeats, no pings) was still open {} after \
                 connecting: the announced read timeout of {ms} ms is not enforced",
                secs(latest)
            )))
        }
        Ended::Message(message) => {
            return Err(Failure::new(format!(
                "the server sent {message} on a silent connection that asked for nothing"
            )))
        }
    }
    // Idle (but for heartbeats) for longer than the read timeout.
    tokio::time::sleep_until((connected + read_timeout + read_timeout / 4).into()).await;
    let lost = drain(&mut events)
        .iter()
        .any(|event| matches!(event, ClientEvent::Disconnected));
    ensure!(
        !lost && client.status() == Status::Connected,
        "a client sending heartbeats was disconnected within {} (read timeout {ms} ms)",
        secs(connected.elapsed())
    );
    expect_text(&client, "echo", "awake", "awake").await?;
    client.close().await;
    Ok(())
}
