//! Sessions: `login`, `whoami`, `logout`, restoring on other connections,
//! the limit of connections per session, `session-connections`,
//! `close-session-everywhere`, and a session surviving a disconnection.

use webwire_client::{
    Client, ClientEvent, Encoding, Events, KeyDigest, Payload, RequestError, Session,
};

use super::support::{
    describe, drain, ensure, expect_error, expect_text, request, unique, wait_event, Context, Ctx,
    Failure,
};

/// The session's `user` info field, if it has one.
fn user_of(session: &Session) -> Option<String> {
    session.info_field::<String>("user").ok().flatten()
}

/// Logs in as `user`; returns the session key the reply carries.
async fn login(client: &Client, user: impl Into<Payload>) -> Result<String, Failure> {
    let reply = request(client, "login", user).await?;
    ensure!(
        reply.encoding() == Encoding::Utf8,
        "the reply to login is {}, expected a UTF-8 session key",
        describe(&reply)
    );
    let key = reply.to_text().context("the reply to login")?.into_owned();
    ensure!(
        !key.is_empty(),
        "the reply to login is an empty session key"
    );
    Ok(key)
}

/// The session-created notification among the events already received.
fn created_before_reply(events: &mut Events, request: &str) -> Result<Session, Failure> {
    drain(events)
        .into_iter()
        .find_map(|event| match event {
            ClientEvent::SessionCreated(session) => Some(session),
            _ => None,
        })
        .ok_or_else(|| {
            Failure::new(format!(
                "no session-created notification had arrived when the reply to {request} came"
            ))
        })
}

/// How many session-closed notifications are among the events already received.
fn closed_count(events: &mut Events) -> usize {
    drain(events)
        .iter()
        .filter(|event| matches!(event, ClientEvent::SessionClosed))
        .count()
}

/// Fails unless the client holds a session with `key` and user `user`.
fn holds(client: &Client, who: &str, key: &str, user: &str) -> Result<(), Failure> {
    let session = client
        .session()
        .ok_or_else(|| Failure::new(format!("{who} has no session")))?;
    ensure!(
        session.key == key,
        "{who} holds the session {}, expected {}",
        KeyDigest::new(&session.key),
        KeyDigest::new(key)
    );
    let got = client.session_info::<String>("user").ok().flatten();
    ensure!(
        got.as_deref() == Some(user),
        "{who}'s session info user is {got:?}, expected {user:?}"
    );
    Ok(())
}

/// `login`: the session-created notification, sent before the reply,
/// carries the key of the reply and the info `{"user": <payload>}`.
pub(super) async fn login_notification(ctx: Ctx) -> Result<(), Failure> {
    let (client, mut events) = ctx.client().await?;
    let key = login(&client, "alice").await?;
    let created = created_before_reply(&mut events, "login")?;
    ensure!(
        created.key == key,
        "the session-created notification has the key {}, the reply {}",
        KeyDigest::new(&created.key),
        KeyDigest::new(&key)
    );
    let user = user_of(&created);
    ensure!(
        user.as_deref() == Some("alice"),
        "the new session's info user is {user:?}, expected \"alice\" (info {:?})",
        created.info
    );
    ensure!(
        created.last_lookup >= created.creation,
        "the new session was looked up before it was created"
    );
    holds(&client, "the client", &key, "alice")?;
    client.close().await;
    Ok(())
}

/// A second `login` on a connection that has a session is an internal
/// error, and the session stays.
pub(super) async fn login_twice(ctx: Ctx) -> Result<(), Failure> {
    let (client, _) = ctx.client().await?;
    let key = login(&client, "ann").await?;
    expect_error(&client, "login", "bob", &RequestError::InternalError).await?;
    holds(&client, "the client", &key, "ann")?;
    expect_text(&client, "whoami", "", "ann").await?;
    client.close().await;
    Ok(())
}

/// `whoami`: `anonymous` without a session, the user after a login (a
/// Cyrillic and emoji name sent as UTF-16, through the session's JSON).
pub(super) async fn whoami(ctx: Ctx) -> Result<(), Failure> {
    const USER: &str = "Алиса 😀";
    let (client, _) = ctx.client().await?;
    expect_text(&client, "whoami", "", "anonymous").await?;
    let key = login(&client, Payload::utf16(USER)).await?;
    expect_text(&client, "whoami", "", USER).await?;
    holds(&client, "the client", &key, USER)?;
    client.close().await;
    Ok(())
}

/// `logout`: the session-closed notification before `ok`; `whoami` is
/// anonymous again; a second logout is a no-op.
pub(super) async fn logout(ctx: Ctx) -> Result<(), Failure> {
    let (client, mut events) = ctx.client().await?;
    expect_text(&client, "logout", "", "ok")
        .await
        .map_err(|failure| Failure::new(format!("without a session: {failure}")))?;
    login(&client, "bert").await?;
    drain(&mut events);
    expect_text(&client, "logout", "", "ok").await?;
    let closed = closed_count(&mut events);
    ensure!(
        closed == 1,
        "{closed} session-closed notifications had arrived when the reply to logout came, expected 1"
    );
    ensure!(
        client.session().is_none(),
        "the client still has a session after logout"
    );
    expect_text(&client, "whoami", "", "anonymous").await?;
    expect_text(&client, "logout", "", "ok").await?;
    let closed = closed_count(&mut events);
    ensure!(
        closed == 0,
        "a logout without a session sent a session-closed notification"
    );
    client.close().await;
    Ok(())
}

/// The client closes its session itself (RequestCloseSession): the session
/// is gone, and destroyed, since it was on no other connection.
pub(super) async fn client_closes_session(ctx: Ctx) -> Result<(), Failure> {
    let (client, _) = ctx.client().await?;
    let key = login(&client, "cleo").await?;
    holds(&client, "the client", &key, "cleo")?;
    client
        .close_session()
        .await
        .context("closing the session from the client")?;
    ensure!(
        client.session().is_none(),
        "the client still has a session after closing it"
    );
    expect_text(&client, "whoami", "", "anonymous").await?;
    let result = client.restore_session(&key).await;
    ensure!(
        result == Err(RequestError::SessionNotFound),
        "restoring a session closed on its only connection: expected \"session not found\", got {result:?}"
    );
    client.close().await;
    Ok(())
}

/// `session-connections`: `0` without a session, `1` after a login.
pub(super) async fn session_connections(ctx: Ctx) -> Result<(), Failure> {
    let (client, _) = ctx.client().await?;
    expect_text(&client, "session-connections", "", "0").await?;
    login(&client, "dora").await?;
    expect_text(&client, "session-connections", "", "1").await?;
    client.close().await;
    Ok(())
}

/// A second connection restores the session: same key and info, `whoami`
/// answers the user, `session-connections` counts both.
pub(super) async fn restore(ctx: Ctx) -> Result<(), Failure> {
    let (a, _) = ctx.client().await?;
    let key = login(&a, "carol").await?;
    let (b, _) = ctx.client().await?;
    let session = b
        .restore_session(&key)
        .await
        .context("restoring the session on a second connection")?;
    ensure!(
        session.key == key,
        "the restored session has the key {:?}, expected {key:?}",
        session.key
    );
    let user = user_of(&session);
    ensure!(
        user.as_deref() == Some("carol"),
        "the restored session's info user is {user:?}, expected \"carol\""
    );
    holds(&b, "the second connection", &key, "carol")?;
    expect_text(&b, "whoami", "", "carol").await?;
    expect_text(&b, "session-connections", "", "2").await?;
    expect_text(&a, "session-connections", "", "2").await?;
    a.close().await;
    b.close().await;
    Ok(())
}

/// Restoring an unknown key, or a key that cannot be one, is answered with
/// session-not-found.
pub(super) async fn restore_unknown(ctx: Ctx) -> Result<(), Failure> {
    let (client, _) = ctx.client().await?;
    let long = "k".repeat(300);
    for key in [
        unique("no-such-session").as_str(),
        "bad key ✗",
        long.as_str(),
    ] {
        let result = client.restore_session(key).await;
        ensure!(
            result == Err(RequestError::SessionNotFound),
            "restoring the key {:?}: expected \"session not found\", got {result:?}",
            key.chars().take(40).collect::<String>()
        );
    }
    ensure!(
        client.session().is_none(),
        "the client has a session after failed restores"
    );
    expect_text(&client, "whoami", "", "anonymous").await?;
    client.close().await;
    Ok(())
}

/// Restoring on a connection that has a session already is refused with
/// the error code `SESSION_ACTIVE` (docs/protocol.md 8).
pub(super) async fn restore_while_active(ctx: Ctx) -> Result<(), Failure> {
    let (a, _) = ctx.client().await?;
    let key = login(&a, "gus").await?;
    let (b, _) = ctx.client().await?;
    b.restore_session(&key)
        .await
        .context("restoring the session on a second connection")?;
    match b.restore_session(&key).await {
        Err(RequestError::Request { code, .. }) if code == "SESSION_ACTIVE" => {}
        other => {
            return Err(Failure::new(format!(
                "restoring again on a connection that has the session: expected error code SESSION_ACTIVE, got {other:?}"
            )))
        }
    }
    expect_text(&b, "session-connections", "", "2").await?;
    a.close().await;
    b.close().await;
    Ok(())
}

/// A session has at most 3 connections: a fourth restore is refused; when
/// one leaves there is room again.
pub(super) async fn max_session_connections(ctx: Ctx) -> Result<(), Failure> {
    let (a, _) = ctx.client().await?;
    let key = login(&a, "dave").await?;
    let (b, _) = ctx.client().await?;
    let (c, _) = ctx.client().await?;
    b.restore_session(&key)
        .await
        .context("restoring on a second connection")?;
    c.restore_session(&key)
        .await
        .context("restoring on a third connection")?;
    expect_text(&a, "session-connections", "", "3").await?;
    let (d, _) = ctx.client().await?;
    let result = d.restore_session(&key).await;
    ensure!(
        result == Err(RequestError::MaxSessionConnsReached),
        "restoring on a fourth connection: expected \"maximum number of connections\", got {result:?}"
    );
    ensure!(
        d.session().is_none(),
        "the fourth connection has a session though its restore was refused"
    );
    expect_text(&d, "whoami", "", "anonymous").await?;
    c.close_session()
        .await
        .context("closing the session on the third connection")?;
    expect_text(&a, "session-connections", "", "2").await?;
    d.restore_session(&key)
        .await
        .context("restoring on the fourth connection once the third left")?;
    expect_text(&d, "whoami", "", "dave").await?;
    for client in [a, b, c, d] {
        client.close().await;
    }
    Ok(())
}

/// `close-session-everywhere`: the session closes on every connection
/// holding it (each gets the notification), the count is the reply, and
/// the session is destroyed.
pub(super) async fn close_session_everywhere(ctx: Ctx) -> Result<(), Failure> {
    let (a, mut a_events) = ctx.client().await?;
    let key = login(&a, "erin").await?;
    let (b, mut b_events) = ctx.client().await?;
    b.restore_session(&key)
        .await
        .context("restoring on a second connection")?;
    expect_text(&a, "close-session-everywhere", "", "2").await?;
    for (who, events) in [
        ("the caller", &mut a_events),
        ("the other connection", &mut b_events),
    ] {
        wait_event(
            events,
            &format!("the session-closed notification on {who}"),
            |event| matches!(event, ClientEvent::SessionClosed).then_some(()),
        )
        .await?;
    }
    ensure!(a.session().is_none(), "the caller still has a session");
    ensure!(
        b.session().is_none(),
        "the other connection still has a session"
    );
    expect_text(&b, "whoami", "", "anonymous").await?;
    expect_text(&a, "close-session-everywhere", "", "0")
        .await
        .map_err(|failure| Failure::new(format!("without a session: {failure}")))?;
    let (c, _) = ctx.client().await?;
    let result = c.restore_session(&key).await;
    ensure!(
        result == Err(RequestError::SessionNotFound),
        "restoring a session closed everywhere: expected \"session not found\", got {result:?}"
    );
    for client in [a, b, c] {
        client.close().await;
    }
    Ok(())
}

/// `disconnect-me` with a session: the client reconnects and restores it;
/// the session is not closed.
pub(super) async fn disconnect_keeps_session(ctx: Ctx) -> Result<(), Failure> {
    let (client, mut events) = ctx.client().await?;
    let key = login(&client, "frank").await?;
    drain(&mut events);
    expect_text(&client, "disconnect-me", "", "ok").await?;
    let mut closed = 0;
    wait_event(&mut events, "the disconnection", |event| {
        closed += usize::from(matches!(event, ClientEvent::SessionClosed));
        matches!(event, ClientEvent::Disconnected).then_some(())
    })
    .await?;
    // Waits for the new connection, where the session is restored first.
    expect_text(&client, "whoami", "", "frank").await?;
    closed += closed_count(&mut events);
    ensure!(closed == 0, "the session was closed by the disconnection");
    holds(&client, "the reconnected client", &key, "frank")?;
    expect_text(&client, "session-connections", "", "1").await?;
    client.close().await;
    Ok(())
}
