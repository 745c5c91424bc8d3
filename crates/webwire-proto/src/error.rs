use crate::MessageType;

/// Why a received message is malformed.
///
/// Every variant is a protocol violation (docs/protocol.md section 10): a server
/// closes the connection with WebSocket close code 1002 and answers nothing.
///
/// ```
/// use bytes::Bytes;
/// use webwire_proto::{ClientMessage, ParseError};
///
/// let err = ClientMessage::parse(Bytes::from_static(&[7])).unwrap_err();
/// assert_eq!(err, ParseError::UnknownType(7));
/// assert_eq!(err.to_string(), "unknown message type 7");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ParseError {
    /// The message has no bytes at all.
    #[error("empty message")]
    Empty,
    /// The first byte is no message type of protocol v2.0.
    #[error("unknown message type {0}")]
    UnknownType(u8),
    /// A type that only the other side may send, such as a reply sent to a server.
    #[error("{kind} is not accepted from a {from}")]
    WrongDirection {
        /// The message's type.
        kind: MessageType,
        /// Who sent it: `"client"` or `"server"`.
        from: &'static str,
    },
    /// Shorter than the type's layout allows.
    #[error("{kind} too short: {len} bytes, at least {min} required")]
    TooShort {
        /// The message's type.
        kind: MessageType,
        /// The message's length.
        len: usize,
        /// The least length its layout and header fields allow.
        min: usize,
    },
    /// A fixed-length message with another length.
    #[error("{kind} must be exactly {expected} bytes, got {len}")]
    WrongLength {
        /// The message's type.
        kind: MessageType,
        /// The message's length.
        len: usize,
        /// The only length its layout allows.
        expected: usize,
    },
    /// The name length byte points past the end of the message.
    #[error("{kind}: name length {name_len} points past the end of the {len}-byte message")]
    NameOutOfBounds {
        /// The message's type.
        kind: MessageType,
        /// The announced name length.
        name_len: usize,
        /// The message's length.
        len: usize,
    },
    /// A name byte outside the printable ASCII range 32..=126.
    #[error("{kind}: name byte {byte} at offset {offset} is outside 32..=126")]
    InvalidNameByte {
        /// The message's type.
        kind: MessageType,
        /// The offset of the byte within the name.
        offset: usize,
        /// The byte.
        byte: u8,
    },
    /// An error reply whose error code is empty.
    #[error("ReplyError (0): zero-length error code")]
    EmptyErrorCode,
    /// The error code length byte points past the end of the message.
    #[error("ReplyError (0): error code length {code_len} points past the end of the {len}-byte message")]
    ErrorCodeOutOfBounds {
        /// The announced code length.
        code_len: usize,
        /// The message's length.
        len: usize,
    },
    /// An error code byte outside the printable ASCII range 32..=126.
    #[error("ReplyError (0): error code byte {byte} at offset {offset} is outside 32..=126")]
    InvalidErrorCodeByte {
        /// The offset of the byte within the code.
        offset: usize,
        /// The byte.
        byte: u8,
    },
    /// A UTF-16 message whose total length is odd, so its payload is misaligned.
    #[error("{kind}: a UTF-16 message must have an even length, got {len}")]
    OddUtf16Length {
        /// The message's type.
        kind: MessageType,
        /// The message's length.
        len: usize,
    },
    /// The padding byte that aligns a UTF-16 payload is not zero.
    #[error("{kind}: padding byte at offset {offset} is {byte}, must be 0")]
    NonZeroPadding {
        /// The message's type.
        kind: MessageType,
        /// The offset of the padding byte within the message.
        offset: usize,
        /// The byte found there.
        byte: u8,
    },
}

/// A value the protocol forbids, refused by a constructor.
///
/// ```
/// use webwire_proto::{Name, ValueError};
///
/// assert_eq!(Name::new("a\nb"), Err(ValueError::InvalidNameByte { offset: 1, byte: b'\n' }));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ValueError {
    /// A name longer than 255 bytes.
    #[error("name is {len} bytes long, at most 255 allowed")]
    NameTooLong {
        /// The name's length.
        len: usize,
    },
    /// A name byte outside 32..=126.
    #[error("name byte {byte} at offset {offset} is outside 32..=126")]
    InvalidNameByte {
        /// The offset of the byte.
        offset: usize,
        /// The byte.
        byte: u8,
    },
    /// An empty error code.
    #[error("error code is empty")]
    EmptyErrorCode,
    /// An error code longer than 255 bytes.
    #[error("error code is {len} bytes long, at most 255 allowed")]
    ErrorCodeTooLong {
        /// The code's length.
        len: usize,
    },
    /// An error code byte outside 32..=126.
    #[error("error code byte {byte} at offset {offset} is outside 32..=126")]
    InvalidErrorCodeByte {
        /// The offset of the byte.
        offset: usize,
        /// The byte.
        byte: u8,
    },
    /// A UTF-16 payload of odd length.
    #[error("UTF-16 payload has odd length {len}")]
    OddUtf16Length {
        /// The payload's length.
        len: usize,
    },
    /// A request or signal with neither a name nor a payload.
    #[error("a {0} needs a name or a payload")]
    NoNameNoPayload(&'static str),
    /// A UTF-16 signal whose payload is empty (its layout needs at least 2 bytes).
    #[error("a UTF-16 signal needs a payload of at least 2 bytes")]
    EmptyUtf16Signal,
}
