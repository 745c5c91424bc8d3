//! The binary envelope of cluster messages on Redis pub/sub.
//!
//! All integers big-endian:
//!
//! ```text
//! [0]   version = 1
//! [1]   kind
//! [2]   n = origin node id length, then n bytes of node id
//!       8 bytes origin incarnation
//!       8 bytes request id (0 when not a request)
//!       body:
//!  1 HEARTBEAT       u32 interval in ms
//!  2 LEAVING         empty
//!  3 BROADCAST       the encoded webwire signal
//!  4 ROOM_SIGNAL     u16 room length, room, then the encoded signal
//!  5 SESSION_SIGNAL  u8 key length, key, then the encoded signal
//!  6 CLOSE_SESSION   u8 key length, key
//!  7 REPLY           u32 affected connections
//!  8 SESSION_ROOM    u8 key length, key, u16 room length, room, u8 1
//!                    (joined) then u64 epoch and u64 offset of the join
//!                    position, or u8 0 (left)
//! ```
//!
//! The decoder checks every length against what is left and rejects
//! trailing bytes after fixed-size bodies.

use bytes::Bytes;

const VERSION: u8 = 1;

/// What a message is. Its `Debug` shows a session key as its digest.
#[derive(Clone, PartialEq, Eq)]
pub(crate) enum Body {
    Heartbeat {
        interval_ms: u32,
    },
    Leaving,
    Broadcast {
        frame: Bytes,
    },
    Room {
        room: String,
        frame: Bytes,
    },
    Session {
        key: String,
        frame: Bytes,
    },
    CloseSession {
        key: String,
    },
    Reply {
        affected: u32,
    },
    SessionRoom {
        key: String,
        room: String,
        joined: Option<webwire_core::stream::StreamPosition>,
    },
}

impl std::fmt::Debug for Body {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let digest = |key: &str| webwire_proto::KeyDigest::new(key);
        match self {
            Self::Heartbeat { interval_ms } => f
                .debug_struct("Heartbeat")
                .field("interval_ms", interval_ms)
                .finish(),
            Self::Leaving => f.write_str("Leaving"),
            Self::Broadcast { frame } => f.debug_struct("Broadcast").field("frame", frame).finish(),
            Self::Room { room, frame } => f
                .debug_struct("Room")
                .field("room", room)
                .field("frame", frame)
                .finish(),
            Self::Session { key, frame } => f
                .debug_struct("Session")
                .field("key", &digest(key))
                .field("frame", frame)
                .finish(),
            Self::CloseSession { key } => f
                .debug_struct("CloseSession")
                .field("key", &digest(key))
                .finish(),
            Self::Reply { affected } => {
                f.debug_struct("Reply").field("affected", affected).finish()
            }
            Self::SessionRoom { key, room, joined } => f
                .debug_struct("SessionRoom")
                .field("key", &digest(key))
                .field("room", room)
                .field("joined", joined)
                .finish(),
        }
    }
}

/// One cluster message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Envelope {
    pub(crate) node: String,
    pub(crate) incarnation: u64,
    pub(crate) request: u64,
    pub(crate) body: Body,
}

/// Why a message could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum DecodeError {
    #[error("unknown envelope version {0}")]
    Version(u8),
    #[error("unknown message kind {0}")]
    Kind(u8),
    #[error("the message ends early")]
    Truncated,
    #[error("{0} bytes after the end of the message")]
    Trailing(usize),
    #[error("a name is not UTF-8")]
    Utf8,
    #[error("unknown membership flag {0}")]
    Flag(u8),
}

impl Envelope {
    pub(crate) fn encode(&self) -> Vec<u8> {
        let extra = match &self.body {
            Body::Broadcast { frame } => frame.len(),
            Body::Room { room, frame } => room.len() + frame.len() + 2,
            Body::Session { key, frame } => key.len() + frame.len() + 1,
            Body::CloseSession { key } => key.len() + 1,
            Body::SessionRoom { key, room, .. } => key.len() + room.len() + 20,
            _ => 4,
        };
        let mut out = Vec::with_capacity(3 + self.node.len() + 16 + extra);
        out.push(VERSION);
        out.push(match self.body {
            Body::Heartbeat { .. } => 1,
            Body::Leaving => 2,
            Body::Broadcast { .. } => 3,
            Body::Room { .. } => 4,
            Body::Session { .. } => 5,
            Body::CloseSession { .. } => 6,
            Body::Reply { .. } => 7,
            Body::SessionRoom { .. } => 8,
        });
        // Node ids are at most 64 bytes (checked by the configuration).
        out.push(self.node.len().min(255) as u8);
        out.extend_from_slice(&self.node.as_bytes()[..self.node.len().min(255)]);
        out.extend_from_slice(&self.incarnation.to_be_bytes());
        out.extend_from_slice(&self.request.to_be_bytes());
        match &self.body {
            Body::Heartbeat { interval_ms } => out.extend_from_slice(&interval_ms.to_be_bytes()),
            Body::Leaving => {}
            Body::Broadcast { frame } => out.extend_from_slice(frame),
            Body::Room { room, frame } => {
                push_room(&mut out, room);
                out.extend_from_slice(frame);
            }
            Body::Session { key, frame } => {
                push_short(&mut out, key);
                out.extend_from_slice(frame);
            }
            Body::CloseSession { key } => push_short(&mut out, key),
            Body::Reply { affected } => out.extend_from_slice(&affected.to_be_bytes()),
            Body::SessionRoom { key, room, joined } => {
                push_short(&mut out, key);
                push_room(&mut out, room);
                match joined {
                    Some(at) => {
                        out.push(1);
                        out.extend_from_slice(&at.epoch.to_be_bytes());
                        out.extend_from_slice(&at.offset.to_be_bytes());
                    }
                    None => out.push(0),
                }
            }
        }
        out
    }

    pub(crate) fn decode(data: &Bytes) -> Result<Self, DecodeError> {
        let mut r = Reader { data, at: 0 };
        let version = r.u8()?;
        if version != VERSION {
            return Err(DecodeError::Version(version));
        }
        let kind = r.u8()?;
        let n = usize::from(r.u8()?);
        let node = r.text(n)?;
        let incarnation = r.u64()?;
        let request = r.u64()?;
        let body = match kind {
            1 => Body::Heartbeat {
                interval_ms: r.u32()?,
            },
            2 => Body::Leaving,
            3 => Body::Broadcast { frame: r.rest() },
            4 => {
                let n = usize::from(r.u16()?);
                let room = r.text(n)?;
                Body::Room {
                    room,
                    frame: r.rest(),
                }
            }
            5 => {
                let n = usize::from(r.u8()?);
                let key = r.text(n)?;
                Body::Session {
                    key,
                    frame: r.rest(),
                }
            }
            6 => {
                let n = usize::from(r.u8()?);
                Body::CloseSession { key: r.text(n)? }
            }
            7 => Body::Reply { affected: r.u32()? },
            8 => {
                let n = usize::from(r.u8()?);
                let key = r.text(n)?;
                let n = usize::from(r.u16()?);
                let room = r.text(n)?;
                let joined = match r.u8()? {
                    0 => None,
                    1 => Some(webwire_core::stream::StreamPosition::new(
                        r.u64()?,
                        r.u64()?,
                    )),
                    flag => return Err(DecodeError::Flag(flag)),
                };
                Body::SessionRoom { key, room, joined }
            }
            other => return Err(DecodeError::Kind(other)),
        };
        let left = data.len() - r.at;
        if left != 0 {
            return Err(DecodeError::Trailing(left));
        }
        Ok(Self {
            node,
            incarnation,
            request,
            body,
        })
    }
}

/// Room names are at most 255 bytes (checked by the server).
fn push_room(out: &mut Vec<u8>, room: &str) {
    let n = room.len().min(usize::from(u16::MAX));
    out.extend_from_slice(&(n as u16).to_be_bytes());
    out.extend_from_slice(&room.as_bytes()[..n]);
}

/// Session keys are at most 255 bytes (checked by the server).
fn push_short(out: &mut Vec<u8>, text: &str) {
    let n = text.len().min(255);
    out.push(n as u8);
    out.extend_from_slice(&text.as_bytes()[..n]);
}

struct Reader<'a> {
    data: &'a Bytes,
    at: usize,
}

impl Reader<'_> {
    fn take(&mut self, n: usize) -> Result<&[u8], DecodeError> {
        let end = self.at.checked_add(n).ok_or(DecodeError::Truncated)?;
        let slice = self.data.get(self.at..end).ok_or(DecodeError::Truncated)?;
        self.at = end;
        Ok(slice)
    }

    fn u8(&mut self) -> Result<u8, DecodeError> {
        Ok(self.take(1)?[0])
    }

    fn u16(&mut self) -> Result<u16, DecodeError> {
        let b = self.take(2)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }

    fn u32(&mut self) -> Result<u32, DecodeError> {
        let mut a = [0; 4];
        a.copy_from_slice(self.take(4)?);
        Ok(u32::from_be_bytes(a))
    }

    fn u64(&mut self) -> Result<u64, DecodeError> {
        let mut a = [0; 8];
        a.copy_from_slice(self.take(8)?);
        Ok(u64::from_be_bytes(a))
    }

    fn text(&mut self, n: usize) -> Result<String, DecodeError> {
        let bytes = self.take(n)?;
        std::str::from_utf8(bytes)
            .map(str::to_owned)
            .map_err(|_| DecodeError::Utf8)
    }

    fn rest(&mut self) -> Bytes {
        let rest = self.data.slice(self.at..);
        self.at = self.data.len();
        rest
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(body: Body) -> Envelope {
        Envelope {
            node: "node-a".into(),
            incarnation: 0x0102_0304_0506_0708,
            request: 9,
            body,
        }
    }

    fn all() -> Vec<Envelope> {
        let frame = Bytes::from_static(b"\x3f\x01nhello");
        vec![
            env(Body::Heartbeat { interval_ms: 2000 }),
            env(Body::Leaving),
            env(Body::Broadcast {
                frame: frame.clone(),
            }),
            env(Body::Room {
                room: "lobby".into(),
                frame: frame.clone(),
            }),
            env(Body::Room {
                room: "r".into(),
                frame: Bytes::new(),
            }),
            env(Body::Session {
                key: "k".repeat(255),
                frame,
            }),
            env(Body::CloseSession { key: "abc".into() }),
            env(Body::Reply { affected: 3 }),
            env(Body::SessionRoom {
                key: "k".repeat(255),
                room: "chat:lobby".into(),
                joined: Some(webwire_core::stream::StreamPosition::new(u64::MAX, 7)),
            }),
            env(Body::SessionRoom {
                key: "abc".into(),
                room: "r".into(),
                joined: None,
            }),
        ]
    }

    #[test]
    fn round_trips() {
        for e in all() {
            let bytes = Bytes::from(e.encode());
            assert_eq!(Envelope::decode(&bytes), Ok(e));
        }
    }

    #[test]
    fn every_truncation_is_an_error() {
        for e in all() {
            let bytes = e.encode();
            let fixed = !matches!(
                e.body,
                Body::Broadcast { .. } | Body::Room { .. } | Body::Session { .. }
            );
            for cut in 0..bytes.len() {
                let short = Bytes::copy_from_slice(&bytes[..cut]);
                match Envelope::decode(&short) {
                    Err(_) => {}
                    // A signal's frame is the rest: cutting it shortens the frame.
                    Ok(d) => assert!(!fixed && cut >= bytes.len() - e.body_frame_len(), "{d:?}"),
                }
            }
        }
    }

    #[test]
    fn bad_input_is_typed() {
        let good = env(Body::Reply { affected: 1 }).encode();
        let mut v = good.clone();
        v[0] = 2;
        assert_eq!(Envelope::decode(&v.into()), Err(DecodeError::Version(2)));
        let mut v = good.clone();
        v[1] = 99;
        assert_eq!(Envelope::decode(&v.into()), Err(DecodeError::Kind(99)));
        let mut v = good.clone();
        v.push(0);
        assert_eq!(Envelope::decode(&v.into()), Err(DecodeError::Trailing(1)));
        let mut v = good;
        v[3] = 0xff;
        assert_eq!(Envelope::decode(&v.into()), Err(DecodeError::Utf8));
        assert_eq!(Envelope::decode(&Bytes::new()), Err(DecodeError::Truncated));
        assert_eq!(
            Envelope::decode(&Bytes::from_static(&[1, 6, 255])),
            Err(DecodeError::Truncated)
        );
        let mut v = env(Body::SessionRoom {
            key: "k".into(),
            room: "r".into(),
            joined: None,
        })
        .encode();
        *v.last_mut().unwrap() = 2;
        assert_eq!(Envelope::decode(&v.into()), Err(DecodeError::Flag(2)));
    }

    #[test]
    fn a_membership_shows_no_session_key() {
        let debug = format!(
            "{:?}",
            env(Body::SessionRoom {
                key: "secret-key".into(),
                room: "r".into(),
                joined: None,
            })
        );
        assert!(!debug.contains("secret-key"), "{debug}");
    }

    impl Envelope {
        fn body_frame_len(&self) -> usize {
            match &self.body {
                Body::Broadcast { frame }
                | Body::Room { frame, .. }
                | Body::Session { frame, .. } => frame.len(),
                _ => 0,
            }
        }
    }
}
