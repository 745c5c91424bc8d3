use crate::{FeatureFlags, MessageType, StreamId};

/// Why a received message is malformed, or (for
/// [`NotAllowed`](ParseError::NotAllowed)) not allowed on its connection.
///
/// Every variant is a protocol violation (docs/protocol.md sections 10 and
/// 14): a server closes the connection with WebSocket close code 1002 and
/// answers nothing.
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
    /// The first byte is no message type of protocol v2.0 or its 2.1 extensions.
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
    /// An ExtensionHello whose instance id is longer than 64 bytes.
    #[error("ExtensionHello (34): instance id of {len} bytes, at most 64 allowed")]
    InstanceIdTooLong {
        /// The announced length.
        len: usize,
    },
    /// An ExtensionHello asking for keyed requests with an instance id
    /// shorter than 16 bytes (too few to be unique per client instance).
    #[error("ExtensionHello (34): KEYED_REQUESTS needs an instance id of at least {min} bytes, got {len}")]
    InstanceIdTooShort {
        /// The instance id's length.
        len: usize,
        /// The least length allowed.
        min: usize,
    },
    /// An instance id byte outside the printable ASCII range 32..=126.
    #[error("ExtensionHello (34): instance id byte {byte} at offset {offset} is outside 32..=126")]
    InvalidInstanceIdByte {
        /// The offset of the byte within the instance id.
        offset: usize,
        /// The byte.
        byte: u8,
    },
    /// A stream kind other than 1 (session) and 2 (room).
    #[error("{kind}: unknown stream kind {stream_kind}")]
    InvalidStreamKind {
        /// The message's type.
        kind: MessageType,
        /// The stream kind byte.
        stream_kind: u8,
    },
    /// A session stream (kind 1) with a name: its name length must be 0.
    #[error("{kind}: the session stream has no name, got a name of {name_len} bytes")]
    SessionStreamWithName {
        /// The message's type.
        kind: MessageType,
        /// The announced name length.
        name_len: usize,
    },
    /// A room stream (kind 2) with an empty room name.
    #[error("{kind}: a room stream needs a room name")]
    EmptyRoomName {
        /// The message's type.
        kind: MessageType,
    },
    /// A room name that is not UTF-8.
    #[error("{kind}: the room name is not UTF-8 (first invalid byte at offset {valid_up_to})")]
    InvalidRoomName {
        /// The message's type.
        kind: MessageType,
        /// How many leading bytes of the name are valid UTF-8.
        valid_up_to: usize,
    },
    /// A StreamResume with more than 1024 entries.
    #[error("StreamResume (35): {count} streams, at most {max} allowed")]
    TooManyStreams {
        /// The announced count.
        count: usize,
        /// The most allowed ([`MAX_RESUME_STREAMS`](crate::MAX_RESUME_STREAMS)).
        max: usize,
    },
    /// A StreamResume that lists the same stream twice.
    #[error("StreamResume (35): {stream} listed twice")]
    DuplicateStream {
        /// The stream listed twice.
        stream: StreamId,
    },
    /// A StreamSignal with epoch 0: epochs are never 0.
    #[error("{kind}: stream epoch 0, epochs are never 0")]
    ZeroEpoch {
        /// The message's type.
        kind: MessageType,
    },
    /// A StreamSignal with offset 0: offsets start at 1.
    #[error("{kind}: stream offset 0, offsets start at 1")]
    ZeroOffset {
        /// The message's type.
        kind: MessageType,
    },
    /// A keyed request with sequence number 0 (sequence numbers start at 1).
    #[error("{kind}: sequence number 0, they start at 1")]
    ZeroSequence {
        /// The message's type.
        kind: MessageType,
    },
    /// A StreamLoss reason other than 1..=4.
    #[error("StreamLoss (24): unknown reason {0}")]
    UnknownLossReason(u8),
    /// A well-formed 2.1 message that its connection does not allow: the
    /// extensions were not negotiated, or not this way (docs/protocol.md
    /// section 14). Found by the connection rules, not the parser.
    #[error("{kind} not allowed: {rule}")]
    NotAllowed {
        /// The message's type.
        kind: MessageType,
        /// The opt-in rule it breaks.
        rule: ExtensionRule,
    },
}

/// The opt-in rule of protocol 2.1 that an extension message broke
/// ([`ParseError::NotAllowed`]).
///
/// ```
/// use webwire_proto::{ExtensionRule, FeatureFlags, MessageType, ParseError};
///
/// let err = ParseError::NotAllowed {
///     kind: MessageType::StreamResume,
///     rule: ExtensionRule::NotGranted(FeatureFlags::STREAMS),
/// };
/// assert_eq!(err.to_string(), "StreamResume (35) not allowed: feature STREAMS was not granted");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ExtensionRule {
    /// The server announced protocol 2.0 (minor 0): no extension message
    /// may be sent on the connection.
    #[error("the server announced protocol 2.0")]
    NotAnnounced,
    /// An ExtensionHello after another message.
    #[error("ExtensionHello must be the client's first message")]
    HelloNotFirst,
    /// A second ExtensionHello, or a second ExtensionAccept.
    #[error("sent twice")]
    Repeated,
    /// An extension message on a connection that did not opt in (the
    /// client sent no ExtensionHello; for a client, no ExtensionAccept has
    /// arrived).
    #[error("the connection did not opt in to the extensions")]
    NotOptedIn,
    /// An extension message of a feature that was not granted.
    #[error("feature {0} was not granted")]
    NotGranted(FeatureFlags),
    /// An ExtensionAccept granting a feature the client did not ask for.
    #[error("features {0} were granted but not asked for")]
    NotAsked(FeatureFlags),
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
    /// An instance id longer than 64 bytes.
    #[error("instance id is {len} bytes long, at most 64 allowed")]
    InstanceIdTooLong {
        /// The instance id's length.
        len: usize,
    },
    /// An instance id byte outside 32..=126.
    #[error("instance id byte {byte} at offset {offset} is outside 32..=126")]
    InvalidInstanceIdByte {
        /// The offset of the byte.
        offset: usize,
        /// The byte.
        byte: u8,
    },
    /// Keyed requests asked for with an instance id shorter than 16 bytes.
    #[error("KEYED_REQUESTS needs an instance id of at least 16 bytes, got {len}")]
    InstanceIdTooShort {
        /// The instance id's length.
        len: usize,
    },
    /// An empty room name.
    #[error("a room name must not be empty")]
    EmptyRoomName,
    /// A room name longer than 255 bytes.
    #[error("room name is {len} bytes long, at most 255 allowed")]
    RoomNameTooLong {
        /// The name's length.
        len: usize,
    },
    /// A keyed request with sequence number 0.
    #[error("keyed request sequence numbers start at 1")]
    ZeroSequence,
    /// A StreamResume with more than 1024 entries.
    #[error("a StreamResume names {count} streams, at most 1024 allowed")]
    TooManyStreams {
        /// The number of entries.
        count: usize,
    },
    /// A StreamResume naming the same stream twice.
    #[error("a StreamResume names {stream} twice")]
    DuplicateStream {
        /// The stream named twice.
        stream: StreamId,
    },
    /// A stream signal with epoch 0 (epochs are never 0).
    #[error("a stream epoch is never 0")]
    ZeroEpoch,
    /// A stream signal with offset 0 (offsets start at 1).
    #[error("stream offsets start at 1")]
    ZeroOffset,
}
