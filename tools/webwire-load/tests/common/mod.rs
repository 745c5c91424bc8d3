//! Test servers: webwire servers that misbehave on purpose, written with
//! tokio-websockets and webwire-proto so that the load generator can be
//! shown to catch them.

#![allow(dead_code, unreachable_pub)]

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures_util::{SinkExt, StreamExt};
use tokio::net::TcpListener;
use tokio_websockets::{Message, ServerBuilder};
use webwire_proto::{
    AcceptConf, ClientMessage, ErrorCode, ErrorReply, Name, Payload, Reply, ServerMessage, Signal,
};

/// What the test server does with the n-th request of a connection
/// (counting from 1).
#[derive(Debug, Clone, Copy)]
pub enum Fault {
    /// Answers every request and ping correctly.
    None,
    /// Flips one byte of every `n`-th reply's (or pong's) payload.
    CorruptEvery(u64),
    /// Sends no reply (or pong) to every `n`-th request (or ping).
    DropEvery(u64),
    /// Answers every 7th request with ReplyError, every 11th with
    /// ReplyInternalError, every 13th with ReplyShutdown.
    ErrorKinds,
}

/// The test server's behaviour.
#[derive(Debug, Clone, Copy)]
pub struct Behaviour {
    pub fault: Fault,
    /// Announced in the AcceptConf and enforced: a connection silent for
    /// this long is closed.
    pub read_timeout: Duration,
}

impl Behaviour {
    pub fn faulty(fault: Fault) -> Self {
        Self {
            fault,
            read_timeout: Duration::from_secs(3),
        }
    }
}

/// Starts a test server on 127.0.0.1 and returns its URL; it lives as long
/// as the runtime.
pub async fn start(behaviour: Behaviour) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("ws://{}/", listener.local_addr().unwrap());
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(serve(tcp, behaviour));
        }
    });
    url
}

async fn serve(tcp: tokio::net::TcpStream, behaviour: Behaviour) {
    let Ok((_request, mut ws)) = ServerBuilder::new().accept(tcp).await else {
        return;
    };
    let conf = AcceptConf::new(behaviour.read_timeout, 1 << 20, "interop");
    if ws
        .send(Message::binary(ServerMessage::AcceptConf(conf).to_bytes()))
        .await
        .is_err()
    {
        return;
    }
    let mut n = 0u64;
    loop {
        let message = match tokio::time::timeout(behaviour.read_timeout, ws.next()).await {
            Ok(Some(Ok(message))) => message,
            // Silent for the read timeout, closed, or failed.
            _ => return,
        };
        if !message.is_binary() {
            continue;
        }
        let answer = match ClientMessage::parse(Bytes::from(message.into_payload())) {
            Ok(ClientMessage::Request(request)) => {
                n += 1;
                let (id, _name, payload) = request.into_parts();
                match behaviour.fault {
                    Fault::DropEvery(k) if n.is_multiple_of(k) => None,
                    Fault::CorruptEvery(k) if n.is_multiple_of(k) => {
                        Some(ServerMessage::Reply(Reply::new(id, corrupt(&payload))))
                    }
                    Fault::ErrorKinds if n.is_multiple_of(7) => Some(ServerMessage::Error(
                        ErrorReply::new(id, ErrorCode::from_static("TEST"), "test error"),
                    )),
                    Fault::ErrorKinds if n.is_multiple_of(11) => {
                        Some(ServerMessage::InternalError(id))
                    }
                    Fault::ErrorKinds if n.is_multiple_of(13) => Some(ServerMessage::Shutdown(id)),
                    _ => Some(ServerMessage::Reply(Reply::new(id, payload))),
                }
            }
            Ok(ClientMessage::Signal(signal)) if signal.name() == "ping" => {
                n += 1;
                let (_name, payload) = signal.into_parts();
                let payload = match behaviour.fault {
                    Fault::DropEvery(k) if n.is_multiple_of(k) => None,
                    Fault::CorruptEvery(k) if n.is_multiple_of(k) => Some(corrupt(&payload)),
                    _ => Some(payload),
                };
                payload.map(|payload| {
                    ServerMessage::Signal(Signal::new(Name::from_static("pong"), payload).unwrap())
                })
            }
            // Heartbeats and anything else: no answer.
            _ => None,
        };
        if let Some(answer) = answer
            && ws.send(Message::binary(answer.to_bytes())).await.is_err()
        {
            return;
        }
    }
}

/// The payload with its last byte flipped.
fn corrupt(payload: &Payload) -> Payload {
    let mut bytes = BytesMut::from(&payload.as_bytes()[..]);
    if let Some(last) = bytes.last_mut() {
        *last ^= 0xff;
    }
    Payload::new(payload.encoding(), bytes.freeze()).unwrap()
}
