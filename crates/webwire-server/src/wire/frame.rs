//! WebSocket framing (RFC 6455 section 5), the server's side, without I/O:
//! client frames are decoded from a buffer into messages, server frame
//! headers are written into one.
//!
//! The rules are those tokio-websockets 0.13 enforced for the server
//! before this module replaced it (see DESIGN.md, "The WebSocket framing
//! layer"), with the same close codes: reserved bits, unknown opcodes,
//! continuation frames without a message and data frames inside one,
//! fragmented control frames, control payloads over 125 bytes, a close
//! payload of one byte, lengths not in their shortest encoding, unmasked
//! client frames (1002); close codes outside 1000..=1015 and 3000..=4999 or
//! reserved (1002); close reasons that are not UTF-8 (1007); a frame over
//! the size limit (1009, and nothing more is read); fragments adding up to
//! more than the limit (the message is dropped, the rest of its fragments
//! skipped, and the stream can be read on, for the close handshake: the
//! server closes with 1009). One difference: a text message is reported at its first frame and its
//! payload is neither kept nor checked for UTF-8, since webwire refuses
//! text messages (1003) whatever they hold.

use bytes::{Buf, Bytes, BytesMut};

/// The largest payload of a control frame.
const MAX_CONTROL_PAYLOAD: usize = 125;

/// The longest close reason we send: a control payload less the code.
const MAX_CLOSE_REASON: usize = MAX_CONTROL_PAYLOAD - 2;

/// Frame opcodes.
pub(crate) mod opcode {
    pub(crate) const CONTINUATION: u8 = 0x0;
    pub(crate) const TEXT: u8 = 0x1;
    pub(crate) const BINARY: u8 = 0x2;
    pub(crate) const CLOSE: u8 = 0x8;
    pub(crate) const PING: u8 = 0x9;
    pub(crate) const PONG: u8 = 0xA;
}

/// A way a client broke RFC 6455. The texts are tokio-websockets', which
/// the server reported before (`DisconnectReason::WebSocketError`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub(crate) enum ProtocolError {
    /// A control frame without FIN.
    #[error("fragmented control frame")]
    FragmentedControlFrame,
    /// A close code that is not allowed on the wire.
    #[error("invalid close code")]
    InvalidCloseCode,
    /// An unknown opcode, a continuation without a message, or a new data
    /// frame inside a fragmented message.
    #[error("invalid opcode")]
    InvalidOpcode,
    /// A control payload over 125 bytes, a close payload of one byte, or a
    /// length not in its shortest encoding.
    #[error("invalid payload length")]
    InvalidPayloadLength,
    /// A reserved bit set (no extension is negotiated).
    #[error("invalid extension")]
    InvalidRsv,
    /// A close reason that is not UTF-8.
    #[error("invalid utf-8")]
    InvalidUtf8,
    /// A client frame without a mask.
    #[error("unexpected unmasked frame")]
    UnexpectedUnmaskedFrame,
}

/// Why the client's frames cannot be read on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum FrameError {
    /// The client broke RFC 6455.
    #[error("{0}")]
    Protocol(#[from] ProtocolError),
    /// A frame over the size limit: nothing more can be read.
    #[error("message of {len} bytes, the limit is {max}")]
    TooBig {
        /// The frame's length, as its header told.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// Fragments adding up to more than the size limit: the message is
    /// dropped (the rest of its fragments skipped); the stream can be read
    /// on.
    #[error("message of {len} bytes so far, the limit is {max}")]
    FragmentsTooBig {
        /// The message's length so far.
        len: usize,
        /// The limit.
        max: usize,
    },
}

impl FrameError {
    /// The close frame the server answers it with (code, reason), when
    /// the stream cannot be read on (else the server closes as it does
    /// for its own reasons).
    pub(crate) fn close_frame(&self) -> Option<(u16, String)> {
        match self {
            Self::Protocol(ProtocolError::InvalidUtf8) => Some((1007, "invalid utf8".to_owned())),
            Self::Protocol(err) => Some((1002, err.to_string())),
            Self::TooBig { max, .. } => Some((1009, format!("max length: {max}"))),
            Self::FragmentsTooBig { .. } => None,
        }
    }
}

/// A message or control frame from the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Incoming {
    /// A whole binary message (its fragments joined).
    Binary(Bytes),
    /// The first frame of a text message (its payload is dropped).
    Text,
    /// A ping, with its payload (for the pong).
    Ping(Bytes),
    /// A pong.
    Pong,
    /// A close frame: its code (1005 when it has none) and reason.
    Close {
        /// The close code; 1005 ("no status received") for an empty payload.
        code: u16,
        /// The reason, UTF-8 checked.
        reason: String,
    },
}

/// The fragmented message being received, if any.
#[derive(Debug, Default)]
enum Fragmented {
    #[default]
    None,
    /// A binary message: its fragments so far.
    Binary(BytesMut),
    /// A message reported already or refused (a text message, or one
    /// over the size limit): its fragments are skipped.
    Skipped,
}

/// Decodes client frames: masked, at most `max` bytes per message.
#[derive(Debug)]
pub(crate) struct Decoder {
    max: usize,
    fragmented: Fragmented,
    /// Bytes the frame at the front of the buffer needs in all, once its
    /// header was read and the rest has not arrived (0 otherwise): the
    /// reader sizes its reads by it.
    wanted: usize,
}

/// A frame's header, read.
struct Header {
    fin: bool,
    opcode: u8,
    /// Header length, mask included.
    len: usize,
    payload: usize,
    /// The fragmented message's length with this frame, if over the limit.
    over: Option<usize>,
}

impl Decoder {
    /// A decoder for messages of at most `max` bytes.
    pub(crate) fn new(max: usize) -> Self {
        Self {
            max,
            fragmented: Fragmented::None,
            wanted: 0,
        }
    }

    /// Bytes the frame at the front of the buffer needs in all (header
    /// included), when its header has been read but not all of it has
    /// arrived; 0 when nothing is known.
    #[inline]
    pub(crate) fn wanted(&self) -> usize {
        self.wanted
    }

    /// The next message or control frame from the front of `src`, which
    /// it takes off the buffer; `None` while more bytes are needed. Binary
    /// payloads are split off `src` without a copy (unless fragmented).
    /// After an error the stream cannot be read on.
    pub(crate) fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Incoming>, FrameError> {
        loop {
            let Some(header) = self.header(src)? else {
                self.wanted = 0;
                return Ok(None);
            };
            let total = header.len + header.payload;
            if src.len() < total {
                self.wanted = total;
                return Ok(None);
            }
            self.wanted = 0;
            let mask: [u8; 4] = src[header.len - 4..header.len]
                .try_into()
                .expect("four bytes");
            src.advance(header.len);
            let mut payload = src.split_to(header.payload);
            if let Some(len) = header.over {
                self.fragmented = if header.fin {
                    Fragmented::None
                } else {
                    Fragmented::Skipped
                };
                return Err(FrameError::FragmentsTooBig { len, max: self.max });
            }
            if let Some(incoming) = self.frame(&header, mask, &mut payload)? {
                return Ok(Some(incoming));
            }
        }
    }

    /// Reads the header at the front of `src`, checked; `None` until all
    /// of it has arrived.
    fn header(&self, src: &[u8]) -> Result<Option<Header>, FrameError> {
        let [b0, b1, ..] = *src else {
            return Ok(None);
        };
        let fin = b0 & 0x80 != 0;
        if b0 & 0x70 != 0 {
            return Err(ProtocolError::InvalidRsv.into());
        }
        let opcode = b0 & 0x0F;
        let control = match opcode {
            opcode::CLOSE | opcode::PING | opcode::PONG => true,
            opcode::CONTINUATION | opcode::TEXT | opcode::BINARY => false,
            _ => return Err(ProtocolError::InvalidOpcode.into()),
        };
        if control {
            if !fin {
                return Err(ProtocolError::FragmentedControlFrame.into());
            }
        } else if matches!(self.fragmented, Fragmented::None) == (opcode == opcode::CONTINUATION) {
            // A continuation with no message to continue, or a new message
            // inside one.
            return Err(ProtocolError::InvalidOpcode.into());
        }
        if b1 & 0x80 == 0 {
            return Err(ProtocolError::UnexpectedUnmaskedFrame.into());
        }
        let short = usize::from(b1 & 0x7F);
        if opcode == opcode::CLOSE && short == 1 {
            return Err(ProtocolError::InvalidPayloadLength.into());
        }
        let (payload, len) = match short {
            0..=125 => (short, 2),
            _ if control => return Err(ProtocolError::InvalidPayloadLength.into()),
            126 => {
                let Some(bytes) = src.get(2..4) else {
                    return Ok(None);
                };
                let payload = usize::from(u16::from_be_bytes([bytes[0], bytes[1]]));
                if payload <= 125 {
                    return Err(ProtocolError::InvalidPayloadLength.into());
                }
                (payload, 4)
            }
            _ => {
                let Some(bytes) = src.get(2..10) else {
                    return Ok(None);
                };
                let payload = u64::from_be_bytes(bytes.try_into().expect("eight bytes"));
                if payload <= u64::from(u16::MAX) {
                    return Err(ProtocolError::InvalidPayloadLength.into());
                }
                // Beyond the address space is beyond any limit.
                (usize::try_from(payload).unwrap_or(usize::MAX), 10)
            }
        };
        if payload > self.max {
            return Err(FrameError::TooBig {
                len: payload,
                max: self.max,
            });
        }
        let over = match &self.fragmented {
            Fragmented::Binary(fragments) if opcode == opcode::CONTINUATION => {
                Some(fragments.len() + payload).filter(|&len| len > self.max)
            }
            _ => None,
        };
        let len = len + 4;
        if src.len() < len {
            return Ok(None);
        }
        Ok(Some(Header {
            fin,
            opcode,
            len,
            payload,
            over,
        }))
    }

    /// Handles a whole frame: a message or control frame to report, or
    /// `None` for a fragment that does not end its message.
    fn frame(
        &mut self,
        header: &Header,
        mask: [u8; 4],
        payload: &mut BytesMut,
    ) -> Result<Option<Incoming>, FrameError> {
        match header.opcode {
            opcode::BINARY => {
                unmask(payload, mask);
                let payload = std::mem::take(payload);
                if header.fin {
                    return Ok(Some(Incoming::Binary(payload.freeze())));
                }
                self.fragmented = Fragmented::Binary(payload);
                Ok(None)
            }
            opcode::TEXT => {
                if !header.fin {
                    self.fragmented = Fragmented::Skipped;
                }
                Ok(Some(Incoming::Text))
            }
            opcode::CONTINUATION => {
                match &mut self.fragmented {
                    Fragmented::Binary(fragments) => {
                        unmask(payload, mask);
                        fragments.extend_from_slice(payload);
                    }
                    Fragmented::Skipped => {}
                    Fragmented::None => unreachable!("checked with the header"),
                }
                if !header.fin {
                    return Ok(None);
                }
                Ok(match std::mem::take(&mut self.fragmented) {
                    Fragmented::Binary(message) => Some(Incoming::Binary(message.freeze())),
                    _ => None,
                })
            }
            opcode::PING => {
                unmask(payload, mask);
                Ok(Some(Incoming::Ping(std::mem::take(payload).freeze())))
            }
            opcode::PONG => Ok(Some(Incoming::Pong)),
            opcode::CLOSE => {
                unmask(payload, mask);
                Ok(Some(close(payload)?))
            }
            _ => unreachable!("checked with the header"),
        }
    }
}

/// A close frame's payload, checked: no code, or an allowed code and a
/// UTF-8 reason.
fn close(payload: &[u8]) -> Result<Incoming, FrameError> {
    let Some((code, reason)) = payload.split_first_chunk::<2>() else {
        return Ok(Incoming::Close {
            code: 1005,
            reason: String::new(),
        });
    };
    let code = u16::from_be_bytes(*code);
    let allowed = matches!(code, 1000..=1003 | 1007..=1014 | 3000..=4999);
    if !allowed {
        return Err(ProtocolError::InvalidCloseCode.into());
    }
    let reason = std::str::from_utf8(reason).map_err(|_| ProtocolError::InvalidUtf8)?;
    Ok(Incoming::Close {
        code,
        reason: reason.to_owned(),
    })
}

/// Unmasks a client payload in place (the mask starts at its first byte).
#[inline]
pub(crate) fn unmask(payload: &mut [u8], mask: [u8; 4]) {
    // Wide blocks of the repeated mask: the loop is vectorised.
    const BLOCK: usize = 32;
    let mut wide = [0u8; BLOCK];
    for (i, byte) in wide.iter_mut().enumerate() {
        *byte = mask[i % 4];
    }
    let mut blocks = payload.chunks_exact_mut(BLOCK);
    for block in blocks.by_ref() {
        for (byte, m) in block.iter_mut().zip(wide) {
            *byte ^= m;
        }
    }
    for (byte, m) in blocks.into_remainder().iter_mut().zip(wide) {
        *byte ^= m;
    }
}

/// Appends the header of an unmasked final frame (server to client).
#[inline]
pub(crate) fn put_header(buf: &mut BytesMut, opcode: u8, len: usize) {
    let first = 0x80 | opcode;
    if len <= 125 {
        // Fits: checked.
        buf.extend_from_slice(&[first, len as u8]);
    } else if let Ok(len) = u16::try_from(len) {
        let [a, b] = len.to_be_bytes();
        buf.extend_from_slice(&[first, 126, a, b]);
    } else {
        buf.extend_from_slice(&[first, 127]);
        buf.extend_from_slice(&(len as u64).to_be_bytes());
    }
}

/// The length of the header [`put_header`] writes for `len` bytes.
#[inline]
pub(crate) fn header_len(len: usize) -> usize {
    match len {
        0..=125 => 2,
        126..=0xFFFF => 4,
        _ => 10,
    }
}

/// Appends a close frame with `code` and `reason` (cut at a character
/// boundary to fit a control frame).
pub(crate) fn put_close(buf: &mut BytesMut, code: u16, reason: &str) {
    let mut end = reason.len().min(MAX_CLOSE_REASON);
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    let reason = &reason.as_bytes()[..end];
    put_header(buf, opcode::CLOSE, 2 + reason.len());
    buf.extend_from_slice(&code.to_be_bytes());
    buf.extend_from_slice(reason);
}

#[cfg(test)]
pub(super) mod tests;
