//! The accept configuration, echo in every encoding, error replies,
//! Unicode and large payloads.

use webwire_client::{Client, ConnectError, Payload, RequestError};

use super::raw::Raw;
use super::support::{
    describe, ensure, expect_code, expect_error, expect_text, request, same, Context, Ctx, Failure,
};

/// The message buffer size docs/interop.md fixes.
const BUFFER_SIZE: u32 = 1_048_576;
/// Cyrillic, emoji with a skin tone, a flag: several code points per
/// character, surrogate pairs in UTF-16.
pub(super) const UNICODE: &str = "Привет, мир! Ёлка 😀👍🏽 🇺🇦";

/// Echoes each payload with `name` and compares the reply, encoding included.
async fn echo_each(ctx: &Ctx, name: &str, payloads: &[Payload]) -> Result<(), Failure> {
    let (client, _) = ctx.client().await?;
    for payload in payloads {
        let reply = request(&client, name, payload.clone()).await?;
        same(
            &format!("echo of {} with name {name:?}", describe(payload)),
            &reply,
            payload,
        )?;
    }
    client.close().await;
    Ok(())
}

/// Requests `error` with `payload`: the reply must be an error with code
/// `INTEROP_ERROR` and message `interop error: ` followed by `text`.
async fn expect_interop_error(
    client: &Client,
    payload: &Payload,
    text: &str,
) -> Result<(), Failure> {
    let message = expect_code(client, "error", payload.clone(), "INTEROP_ERROR").await?;
    let expected = format!("interop error: {text}");
    ensure!(
        message == expected,
        "error with {}: message {message:?}, expected {expected:?}",
        describe(payload)
    );
    Ok(())
}

/// The accept configuration: protocol 2.x (the checker tests what 2.0
/// defines; later minor versions only add to it), read timeout 3000 ms,
/// buffer 1048576 bytes, sub-protocol `interop`. The note shows the
/// version announced.
pub(super) async fn accept_conf(ctx: Ctx) -> Result<(), Failure> {
    let (client, _) = ctx.client().await?;
    let conf = client
        .server_config()
        .ok_or_else(|| Failure::new("connected, but no accept configuration known"))?;
    ensure!(
        conf.major == 2,
        "protocol version {}.{}, expected 2.x",
        conf.major,
        conf.minor
    );
    ctx.note(format!("version {}.{}", conf.major, conf.minor));
    ensure!(
        conf.read_timeout_ms == 3000,
        "read timeout {} ms, expected 3000",
        conf.read_timeout_ms
    );
    ensure!(
        conf.buffer_size == BUFFER_SIZE,
        "message buffer size {}, expected {BUFFER_SIZE}",
        conf.buffer_size
    );
    ensure!(
        conf.sub_protocol.as_ref() == b"interop",
        "sub-protocol {:?}, expected \"interop\"",
        String::from_utf8_lossy(&conf.sub_protocol)
    );
    client.close().await;
    Ok(())
}

/// A client that expects another sub-protocol refuses the server.
pub(super) async fn sub_protocol_mismatch(ctx: Ctx) -> Result<(), Failure> {
    let result = ctx
        .builder()
        .sub_protocol("not-interop")
        .auto_reconnect(false)
        .connect()
        .await;
    match result {
        Ok(client) => {
            client.close().await;
            Err(Failure::new(
                "a client expecting sub-protocol \"not-interop\" connected",
            ))
        }
        Err(ConnectError::SubProtocolMismatch {
            expected,
            announced,
        }) => {
            ensure!(
                expected == "not-interop" && announced == "interop",
                "mismatch reported as expected {expected:?}, announced {announced:?}"
            );
            Ok(())
        }
        Err(err) => Err(Failure::new(format!(
            "expected a sub-protocol mismatch, got \"{err}\""
        ))),
    }
}

/// Upgrades are accepted on every path, with any query.
pub(super) async fn any_path(ctx: Ctx) -> Result<(), Failure> {
    let url = ctx.url_with_path("any/path/here?with=query");
    let client = ctx
        .builder_for(&url)
        .connect()
        .await
        .context(format_args!("connecting to {url}"))?;
    expect_text(&client, "echo", "path", "path").await?;
    client.close().await;
    Ok(())
}

/// The `Origin` of a page on another site, which the interop server must
/// accept (browsers send it; the webwire client never does).
pub(super) const FOREIGN_ORIGIN: &str = "https://foreign.example";

/// Upgrades with the `Origin` of a foreign site are accepted: the
/// connection gets the interop server's AcceptConf.
pub(super) async fn any_origin(ctx: Ctx) -> Result<(), Failure> {
    let raw = Raw::connect(ctx.url(), Some(FOREIGN_ORIGIN)).await?;
    ensure!(
        raw.conf.sub_protocol.as_ref() == b"interop",
        "with Origin {FOREIGN_ORIGIN}: sub-protocol {:?}, expected \"interop\"",
        String::from_utf8_lossy(&raw.conf.sub_protocol)
    );
    raw.close().await;
    Ok(())
}

/// `echo` with UTF-8 payloads: the same bytes back, as UTF-8.
pub(super) async fn echo_utf8(ctx: Ctx) -> Result<(), Failure> {
    echo_each(
        &ctx,
        "echo",
        &[Payload::utf8("hello"), Payload::utf8("héllo wörld")],
    )
    .await
}

/// `echo` with UTF-16 payloads: the same bytes back, as UTF-16.
pub(super) async fn echo_utf16(ctx: Ctx) -> Result<(), Failure> {
    echo_each(
        &ctx,
        "echo",
        &[Payload::utf16("hello"), Payload::utf16("héllo wörld")],
    )
    .await
}

/// `echo` with binary payloads (not UTF-8): the same bytes back, as binary.
pub(super) async fn echo_binary(ctx: Ctx) -> Result<(), Failure> {
    let every_byte: Vec<u8> = (0..=255).collect();
    echo_each(
        &ctx,
        "echo",
        &[
            Payload::binary(vec![0, 1, 254, 255]),
            Payload::binary(every_byte),
        ],
    )
    .await
}

/// A request without a name is echoed, in every encoding.
pub(super) async fn echo_nameless(ctx: Ctx) -> Result<(), Failure> {
    echo_each(
        &ctx,
        "",
        &[
            Payload::utf8("unnamed"),
            Payload::utf16("unnamed"),
            Payload::binary(vec![0xff, 0]),
        ],
    )
    .await
}

/// `echo` without a payload: an empty reply in the request's encoding.
pub(super) async fn echo_name_only(ctx: Ctx) -> Result<(), Failure> {
    echo_each(
        &ctx,
        "echo",
        &[
            Payload::utf8(""),
            Payload::utf16(""),
            Payload::binary(vec![]),
        ],
    )
    .await
}

/// `error`: code `INTEROP_ERROR`, message `interop error: ` and the payload
/// read as text (UTF-16 decoded as UTF-16).
pub(super) async fn request_error(ctx: Ctx) -> Result<(), Failure> {
    let (client, _) = ctx.client().await?;
    for (payload, text) in [
        (Payload::utf8("boom"), "boom"),
        (Payload::utf16("сбой"), "сбой"),
        (Payload::binary(&b"raw"[..]), "raw"),
    ] {
        expect_interop_error(&client, &payload, text).await?;
    }
    client.close().await;
    Ok(())
}

/// `internal`: an internal-error reply; the connection stays usable.
pub(super) async fn internal_error(ctx: Ctx) -> Result<(), Failure> {
    let (client, _) = ctx.client().await?;
    expect_error(&client, "internal", "x", &RequestError::InternalError).await?;
    expect_text(&client, "echo", "still fine", "still fine").await?;
    client.close().await;
    Ok(())
}

/// Any other name: an error reply with code `UNKNOWN_REQUEST` (also for a
/// UTF-16 request with an odd-length name, which needs a padding byte).
pub(super) async fn unknown_request(ctx: Ctx) -> Result<(), Failure> {
    let (client, _) = ctx.client().await?;
    expect_code(&client, "no-such-request", "x", "UNKNOWN_REQUEST").await?;
    expect_code(&client, "abc", Payload::utf16("odd"), "UNKNOWN_REQUEST").await?;
    expect_code(&client, "Echo", "case", "UNKNOWN_REQUEST").await?;
    client.close().await;
    Ok(())
}

/// Cyrillic and emoji round-trip in UTF-8 and UTF-16, in replies and in
/// error messages.
pub(super) async fn unicode(ctx: Ctx) -> Result<(), Failure> {
    let (client, _) = ctx.client().await?;
    for payload in [Payload::utf8(UNICODE), Payload::utf16(UNICODE)] {
        let reply = request(&client, "echo", payload.clone()).await?;
        same("echo of Cyrillic and emoji", &reply, &payload)?;
        let text = reply
            .to_text()
            .map_err(|err| Failure::new(format!("reply is not text: {err}")))?;
        ensure!(
            text == UNICODE,
            "reply reads {text:?}, expected {UNICODE:?}"
        );
        expect_interop_error(&client, &payload, UNICODE).await?;
    }
    client.close().await;
    Ok(())
}

/// 500 KB payloads in every encoding are echoed whole; a message above the
/// announced buffer size is refused by the client before it is sent.
pub(super) async fn large_payload(ctx: Ctx) -> Result<(), Failure> {
    let (client, _) = ctx.client().await?;
    let payloads = [
        Payload::utf8("ж".repeat(250 * 1024)),
        Payload::utf16(&"😀".repeat(128 * 1024)),
        Payload::binary((0..500 * 1024).map(|i| (i * 31) as u8).collect::<Vec<u8>>()),
    ];
    for payload in &payloads {
        let reply = request(&client, "echo", payload.clone()).await?;
        same("echo of a 500 KB payload", &reply, payload)?;
    }
    let too_large = Payload::binary(vec![0; BUFFER_SIZE as usize]);
    match client.request("echo", too_large).await {
        Err(RequestError::MessageTooLarge { max, .. }) if max == BUFFER_SIZE as usize => {}
        Err(err) => {
            return Err(Failure::new(format!(
                "a request above the buffer size: expected the client to refuse it, got \"{err}\""
            )))
        }
        Ok(_) => {
            return Err(Failure::new(
                "a request above the announced buffer size was answered",
            ))
        }
    }
    expect_text(&client, "echo", "after", "after").await?;
    client.close().await;
    Ok(())
}
