//! Setting a connection up for webwire 2.1 (docs/protocol.md section 14):
//! the opt-in (ExtensionHello, ExtensionAccept), and the plain requests the
//! 2.1 rows make before measuring (`login`, `join`, `stream-me` of the
//! interop server, docs/interop.md).
//!
//! These run before the measured time, one message at a time, so they use
//! the codec of `webwire-proto` rather than the hand-written encoding of
//! [`wire`](crate::wire).

use std::time::Duration;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use tokio_websockets::Message;
use webwire_proto::{
    AcceptConf, ClientMessage, ExtensionAccept, ExtensionHello, FeatureFlags, InstanceId, Name,
    Payload, Request, RequestId, ServerMessage, StreamSignal,
};

use crate::client::Ws;
use crate::LoadError;

/// Request ids of the set-up requests: far above the counters of a load
/// run (`index << 40`), so that a late answer cannot be taken for one.
pub(crate) const SETUP_ID_BASE: u64 = 0xF000_0000_0000_0000;

/// A client-instance id for connection `index` (section 14.2.1): unique
/// within the run and between runs, 16 bytes or more.
pub(crate) fn instance_id(index: usize) -> InstanceId {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    // Printable ASCII and at most 64 bytes by construction.
    InstanceId::new(format!("load-{:x}-{nanos:x}-{index}", std::process::id()))
        .unwrap_or_else(|e| unreachable!("instance id: {e}"))
}

/// Checks that the server announces 2.1 (AcceptConf minor 1 or more).
pub(crate) fn require_21(conf: Option<&AcceptConf>) -> Result<(), LoadError> {
    match conf {
        Some(conf) if conf.minor >= 1 => Ok(()),
        Some(conf) => Err(LoadError::Setup(format!(
            "the server announces webwire {}.{}: the 2.1 rows need 2.1 (an interop server of this repository)",
            conf.major, conf.minor
        ))),
        None => Err(LoadError::Setup(
            "a raw echo server cannot do webwire 2.1: the 2.1 rows compare webwire plain against webwire 2.1".into(),
        )),
    }
}

/// One connection's set-up conversation.
pub(crate) struct Setup<'a> {
    ws: &'a mut Ws,
    timeout: Duration,
    next_id: u64,
    /// Stream signals that arrived during the set-up.
    pub(crate) stream_signals: Vec<StreamSignal>,
}

impl<'a> Setup<'a> {
    pub(crate) fn new(ws: &'a mut Ws, timeout: Duration) -> Self {
        Self {
            ws,
            timeout,
            next_id: SETUP_ID_BASE,
            stream_signals: Vec::new(),
        }
    }

    /// Sends ExtensionHello (the connection's first message) and waits for
    /// ExtensionAccept; fails unless every flag asked for is granted.
    pub(crate) async fn opt_in(
        &mut self,
        flags: FeatureFlags,
        instance: InstanceId,
    ) -> Result<ExtensionAccept, LoadError> {
        let hello = ExtensionHello::new(flags, instance)
            .map_err(|e| LoadError::Setup(format!("ExtensionHello: {e}")))?;
        self.send(ClientMessage::ExtensionHello(hello)).await?;
        loop {
            match self.next().await? {
                ServerMessage::ExtensionAccept(accept) if accept.flags.contains(flags) => {
                    return Ok(accept)
                }
                ServerMessage::ExtensionAccept(accept) => {
                    return Err(LoadError::Setup(format!(
                        "asked for {flags}, the server granted {}",
                        accept.flags
                    )))
                }
                // A 2.0 signal from an on-connect hook may come first.
                ServerMessage::Signal(_) => {}
                other => {
                    return Err(LoadError::Setup(format!(
                        "a {} before ExtensionAccept",
                        other.message_type()
                    )))
                }
            }
        }
    }

    /// Sends a plain request named `name` with a UTF-8 payload and returns
    /// its reply's payload; an error reply fails. Stream signals that
    /// arrive meanwhile are kept in `stream_signals`.
    pub(crate) async fn call(&mut self, name: &str, text: &str) -> Result<Payload, LoadError> {
        let id = RequestId::from(self.next_id);
        self.next_id += 1;
        let name_ = Name::try_from(name).map_err(|e| LoadError::Setup(e.to_string()))?;
        let request = Request::new(id, name_, Payload::utf8(text.to_owned()))
            .map_err(|e| LoadError::Setup(e.to_string()))?;
        self.send(ClientMessage::Request(request)).await?;
        loop {
            match self.next().await? {
                ServerMessage::Reply(reply) if reply.id == id => return Ok(reply.payload),
                ServerMessage::Error(error) if error.id == id => {
                    return Err(LoadError::Setup(format!(
                        "`{name}` failed: {} {}",
                        error.code,
                        String::from_utf8_lossy(&error.message)
                    )))
                }
                other if other.request_id() == Some(id) => {
                    return Err(LoadError::Setup(format!(
                        "`{name}` answered with a {}",
                        other.message_type()
                    )))
                }
                ServerMessage::StreamSignal(signal) => self.stream_signals.push(signal),
                // NotifySessionCreated before the login's reply, 2.0 signals.
                _ => {}
            }
        }
    }

    async fn send(&mut self, message: ClientMessage) -> Result<(), LoadError> {
        self.ws
            .send(Message::binary(message.to_bytes()))
            .await
            .map_err(|e| LoadError::Setup(format!("sending: {e}")))
    }

    /// The next server message, within the set-up timeout.
    async fn next(&mut self) -> Result<ServerMessage, LoadError> {
        let timeout = self.timeout;
        let read = async {
            loop {
                match self.ws.next().await {
                    Some(Ok(m)) if m.is_binary() => {
                        return ServerMessage::parse(Bytes::from(m.into_payload()))
                            .map_err(|e| LoadError::Setup(format!("bad message: {e}")))
                    }
                    Some(Ok(m)) if m.is_close() => {
                        return Err(LoadError::Setup("the server closed the connection".into()))
                    }
                    Some(Ok(_)) => {}
                    Some(Err(e)) => return Err(LoadError::Setup(e.to_string())),
                    None => return Err(LoadError::Setup("the connection ended".into())),
                }
            }
        };
        tokio::time::timeout(timeout, read)
            .await
            .map_err(|_| LoadError::Setup(format!("no answer within {timeout:?}")))?
    }
}

/// What a connection of a 2.1 load row holds after its set-up.
#[derive(Debug, Clone)]
pub(crate) enum Extra {
    /// A 2.0 row: nothing.
    None,
    /// Mode `keyed`: the ledger epoch of ExtensionAccept.
    Keyed { ledger_epoch: u64 },
    /// Mode `hist`: the connection's room, which its session joined.
    Hist { room: Bytes },
}

/// The room of connection `index` in mode `hist` (and of the `resume`
/// benchmark's session `index`).
pub(crate) fn room_name(index: usize) -> String {
    format!("load-{index}")
}

/// Sets up connection `index` for `mode`: nothing for 2.0 modes; opt-in,
/// `login` and (mode `hist`) `join` of its own room for the 2.1 modes.
pub(crate) async fn set_up(
    ws: &mut Ws,
    conf: Option<&AcceptConf>,
    index: usize,
    mode: crate::Mode,
    timeout: Duration,
) -> Result<Extra, LoadError> {
    use crate::Mode;
    let flags = match mode {
        Mode::Request | Mode::Signal => return Ok(Extra::None),
        Mode::Keyed => FeatureFlags::KEYED_REQUESTS,
        Mode::Hist => FeatureFlags::STREAMS,
    };
    require_21(conf)?;
    let mut setup = Setup::new(ws, timeout);
    let accept = setup.opt_in(flags, instance_id(index)).await?;
    setup.call("login", &room_name(index)).await?;
    match mode {
        Mode::Keyed => Ok(Extra::Keyed {
            ledger_epoch: accept.ledger_epoch,
        }),
        _ => {
            let room = room_name(index);
            setup.call("join", &room).await?;
            Ok(Extra::Hist {
                room: Bytes::from(room),
            })
        }
    }
}

/// [`set_up`] for every connection, `concurrency` at once; fails if any
/// fails.
pub(crate) async fn set_up_all(
    opened: Vec<(Ws, Option<AcceptConf>)>,
    mode: crate::Mode,
    concurrency: usize,
    timeout: Duration,
) -> Result<Vec<(Ws, Option<AcceptConf>, Extra)>, LoadError> {
    let permits = std::sync::Arc::new(tokio::sync::Semaphore::new(concurrency));
    let mut tasks = tokio::task::JoinSet::new();
    let n = opened.len();
    for (index, (mut ws, conf)) in opened.into_iter().enumerate() {
        let permits = std::sync::Arc::clone(&permits);
        tasks.spawn(async move {
            let _permit = permits.acquire_owned().await;
            let extra = set_up(&mut ws, conf.as_ref(), index, mode, timeout).await;
            (index, extra.map(|extra| (ws, conf, extra)))
        });
    }
    let mut done: Vec<Option<(Ws, Option<AcceptConf>, Extra)>> = (0..n).map(|_| None).collect();
    while let Some(joined) = tasks.join_next().await {
        match joined {
            Ok((index, result)) => {
                done[index] = Some(result.map_err(|e| match e {
                    LoadError::Setup(reason) => {
                        LoadError::Setup(format!("connection {index}: {reason}"))
                    }
                    other => other,
                })?)
            }
            Err(join_error) => std::panic::resume_unwind(join_error.into_panic()),
        }
    }
    Ok(done.into_iter().flatten().collect())
}

/// Sets up an idle 2.1 connection (the `connect --v21` rows): opt-in with
/// both features, `login`, and one signal on its session stream
/// (`stream-me 1`), which it receives as a StreamSignal, so that the
/// server holds a session, a ledger and a stream with history for it.
pub(crate) async fn set_up_idle(
    ws: &mut Ws,
    conf: Option<&AcceptConf>,
    index: usize,
    timeout: Duration,
) -> Result<(), LoadError> {
    require_21(conf)?;
    let mut setup = Setup::new(ws, timeout);
    setup
        .opt_in(FeatureFlags::KNOWN, instance_id(index))
        .await?;
    setup.call("login", &room_name(index)).await?;
    setup.call("stream-me", "1").await?;
    if setup.stream_signals.len() != 1 {
        return Err(LoadError::Setup(format!(
            "`stream-me 1` brought {} stream signals, not 1",
            setup.stream_signals.len()
        )));
    }
    Ok(())
}
