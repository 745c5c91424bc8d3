//! The messages of the 2.1 extensions (docs/protocol.md section 14): opt-in,
//! keyed requests and resumable signal streams. Their parsers are called by
//! [`ClientMessage::parse`](crate::ClientMessage::parse) and
//! [`ServerMessage::parse`](crate::ServerMessage::parse); whether a message
//! is allowed on a connection is the business of [`crate::connection`].

use std::fmt;
use std::ops::{BitAnd, BitOr};

use bytes::{BufMut, Bytes, BytesMut};

use crate::message::{encode_named_body, named_body_len, parse_named, payload_encoding};
use crate::name::first_unprintable;
use crate::{Encoding, MessageType, ParseError, Request, RequestId, Signal, ValueError};

/// The most streams one [`StreamResume`] may name.
pub const MAX_RESUME_STREAMS: usize = 1024;

/// The longest instance id, in bytes.
pub const MAX_INSTANCE_ID_LEN: usize = 64;

/// The shortest instance id of a client that asks for
/// [`FeatureFlags::KEYED_REQUESTS`]: its keys must not collide with another
/// client instance's.
pub const MIN_KEYED_INSTANCE_ID_LEN: usize = 16;

/// The longest room name, in bytes.
pub const MAX_ROOM_NAME_LEN: usize = 255;

/// The features of the 2.1 extensions that a client asks for
/// ([`ExtensionHello`]) and a server grants ([`ExtensionAccept`]).
///
/// Bits this crate does not know are kept as they came (a newer client
/// may ask for them); a server never grants them.
///
/// ```
/// use webwire_proto::FeatureFlags;
///
/// let asked = FeatureFlags::STREAMS | FeatureFlags::KEYED_REQUESTS | FeatureFlags::from_bits(1 << 7);
/// let granted = asked & FeatureFlags::KNOWN;
/// assert!(granted.contains(FeatureFlags::STREAMS));
/// assert_eq!(granted.bits(), 0b11);
/// assert_eq!(asked.to_string(), "STREAMS | KEYED_REQUESTS | 0x80");
/// ```
#[derive(Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct FeatureFlags(u32);

impl FeatureFlags {
    /// No feature.
    pub const NONE: Self = Self(0);
    /// Resumable signal streams (bit 0).
    pub const STREAMS: Self = Self(1);
    /// Requests that never run twice (bit 1).
    pub const KEYED_REQUESTS: Self = Self(1 << 1);
    /// Every feature this crate knows.
    pub const KNOWN: Self = Self(Self::STREAMS.0 | Self::KEYED_REQUESTS.0);

    /// The flags of these bits, unknown ones included.
    pub const fn from_bits(bits: u32) -> Self {
        Self(bits)
    }

    /// The bits, as they travel on the wire.
    pub const fn bits(self) -> u32 {
        self.0
    }

    /// Whether every flag of `other` is set here.
    pub const fn contains(self, other: Self) -> bool {
        self.0 & other.0 == other.0
    }

    /// Whether no flag is set.
    pub const fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// The flags set in both.
    pub const fn intersection(self, other: Self) -> Self {
        Self(self.0 & other.0)
    }

    /// The flags set here but not in `other`.
    pub const fn difference(self, other: Self) -> Self {
        Self(self.0 & !other.0)
    }
}

impl BitOr for FeatureFlags {
    type Output = Self;
    fn bitor(self, rhs: Self) -> Self {
        Self(self.0 | rhs.0)
    }
}

impl BitAnd for FeatureFlags {
    type Output = Self;
    fn bitand(self, rhs: Self) -> Self {
        self.intersection(rhs)
    }
}

impl fmt::Display for FeatureFlags {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_empty() {
            return f.write_str("none");
        }
        let mut parts = Vec::new();
        if self.contains(Self::STREAMS) {
            parts.push("STREAMS".to_owned());
        }
        if self.contains(Self::KEYED_REQUESTS) {
            parts.push("KEYED_REQUESTS".to_owned());
        }
        let unknown = self.difference(Self::KNOWN).0;
        if unknown != 0 {
            parts.push(format!("{unknown:#x}"));
        }
        f.write_str(&parts.join(" | "))
    }
}

impl fmt::Debug for FeatureFlags {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "FeatureFlags({self})")
    }
}

/// The id of one client instance (a process, a browser tab), chosen at
/// random by the client: 0 to 64 bytes of printable ASCII, at least 16 when
/// the client asks for keyed requests. Not a secret: a request key is only
/// valid within its session.
///
/// ```
/// use webwire_proto::InstanceId;
///
/// let id = InstanceId::new("tab-5f0c3e9a81d24b67")?;
/// assert_eq!(id.as_str(), "tab-5f0c3e9a81d24b67");
/// assert!(InstanceId::new("a\nb").is_err());
/// assert!(InstanceId::new("x".repeat(65)).is_err());
/// # Ok::<(), webwire_proto::ValueError>(())
/// ```
#[derive(Clone, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct InstanceId(Bytes);

impl InstanceId {
    /// An instance id, refused if longer than 64 bytes or not printable ASCII.
    pub fn new(bytes: impl Into<Bytes>) -> Result<Self, ValueError> {
        let bytes = bytes.into();
        if bytes.len() > MAX_INSTANCE_ID_LEN {
            return Err(ValueError::InstanceIdTooLong { len: bytes.len() });
        }
        if let Some((offset, byte)) = first_unprintable(&bytes) {
            return Err(ValueError::InvalidInstanceIdByte { offset, byte });
        }
        Ok(Self(bytes))
    }

    /// The id as bytes.
    pub fn as_bytes(&self) -> &Bytes {
        &self.0
    }

    /// The id as text (always valid: printable ASCII).
    pub fn as_str(&self) -> &str {
        std::str::from_utf8(&self.0).unwrap_or_default()
    }

    /// The length in bytes.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether the id is empty (allowed for a client without keyed requests).
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for InstanceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl fmt::Display for InstanceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A client's opt-in to the 2.1 extensions (type 34), its first message
/// after an AcceptConf announcing minor version 1 or more.
///
/// Layout: `[34][flags u32][il u8][instance id il]`.
///
/// ```
/// use bytes::BytesMut;
/// use webwire_proto::{ExtensionHello, FeatureFlags, InstanceId, ValueError};
///
/// let id = InstanceId::new("0123456789abcdef")?;
/// let hello = ExtensionHello::new(FeatureFlags::KNOWN, id)?;
/// let mut buf = BytesMut::new();
/// hello.encode(&mut buf);
/// assert_eq!(&buf[..6], [34, 3, 0, 0, 0, 16]);
/// // Keyed requests need an instance id of at least 16 bytes.
/// assert_eq!(
///     ExtensionHello::new(FeatureFlags::KEYED_REQUESTS, InstanceId::new("short")?).unwrap_err(),
///     ValueError::InstanceIdTooShort { len: 5 },
/// );
/// # Ok::<(), ValueError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExtensionHello {
    flags: FeatureFlags,
    instance_id: InstanceId,
}

impl ExtensionHello {
    /// A hello asking for `flags`, refused when it asks for keyed requests
    /// with an instance id shorter than 16 bytes.
    pub fn new(flags: FeatureFlags, instance_id: InstanceId) -> Result<Self, ValueError> {
        if flags.contains(FeatureFlags::KEYED_REQUESTS)
            && instance_id.len() < MIN_KEYED_INSTANCE_ID_LEN
        {
            return Err(ValueError::InstanceIdTooShort {
                len: instance_id.len(),
            });
        }
        Ok(Self { flags, instance_id })
    }

    /// The features asked for (unknown bits included).
    pub fn flags(&self) -> FeatureFlags {
        self.flags
    }

    /// The client instance's id.
    pub fn instance_id(&self) -> &InstanceId {
        &self.instance_id
    }

    /// The length of the encoded message.
    pub fn encoded_len(&self) -> usize {
        6 + self.instance_id.len()
    }

    /// Appends the encoded message to `buf`.
    pub fn encode(&self, buf: &mut BytesMut) {
        buf.reserve(self.encoded_len());
        buf.put_u8(MessageType::ExtensionHello.byte());
        buf.put_u32_le(self.flags.bits());
        // At most 64 bytes by construction.
        buf.put_u8(self.instance_id.len() as u8);
        buf.put_slice(&self.instance_id.0);
    }
}

/// The server's answer to an [`ExtensionHello`] (type 25): the features it
/// granted (asked for and supported) and its ledger epoch, which keyed
/// requests carry.
///
/// Layout: `[25][flags u32][ledger epoch u64]`, 13 bytes.
///
/// ```
/// use bytes::BytesMut;
/// use webwire_proto::{ExtensionAccept, FeatureFlags};
///
/// let accept = ExtensionAccept { flags: FeatureFlags::STREAMS, ledger_epoch: 9 };
/// let mut buf = BytesMut::new();
/// accept.encode(&mut buf);
/// assert_eq!(&buf[..], [25, 1, 0, 0, 0, 9, 0, 0, 0, 0, 0, 0, 0]);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExtensionAccept {
    /// The features granted.
    pub flags: FeatureFlags,
    /// The epoch of the server's request ledger (changes when the ledger
    /// lost its state).
    pub ledger_epoch: u64,
}

impl ExtensionAccept {
    /// The length of the encoded message.
    pub const ENCODED_LEN: usize = 13;

    /// Appends the encoded message to `buf`.
    pub fn encode(&self, buf: &mut BytesMut) {
        buf.reserve(Self::ENCODED_LEN);
        buf.put_u8(MessageType::ExtensionAccept.byte());
        buf.put_u32_le(self.flags.bits());
        buf.put_u64_le(self.ledger_epoch);
    }
}

/// The key of a keyed request within its session and client instance: the
/// sequence number (from 1) and the ledger epoch under which the request
/// was first sent.
///
/// ```
/// use webwire_proto::RequestKey;
///
/// let key = RequestKey { seq: 1, epoch: 0xfeed };
/// assert_eq!(key.seq, 1);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RequestKey {
    /// The sequence number, 1 for the client instance's first keyed request
    /// within the session.
    pub seq: u64,
    /// The ledger epoch (from [`ExtensionAccept`]) the request was first sent under.
    pub epoch: u64,
}

/// A request that the server runs at most once per key (types 130, 131,
/// 132): a 2.0 [`Request`] with a [`RequestKey`] and the client's
/// cumulative acknowledgement.
///
/// Layout: `[type][request id 8][seq u64][epoch u64][ack u64][n u8][name n][pad][payload]`.
///
/// ```
/// use webwire_proto::{KeyedRequest, Name, Payload, Request, RequestId, RequestKey, ValueError};
///
/// let request = Request::new(RequestId::from(4), Name::from_static("pay"), Payload::utf8("10"))?;
/// let keyed = KeyedRequest::new(request, RequestKey { seq: 3, epoch: 77 }, 2)?;
/// assert_eq!((keyed.key().seq, keyed.ack(), keyed.request().name().as_str()), (3, 2, "pay"));
/// assert_eq!(keyed.encoded_len(), 34 + 3 + 2);
///
/// let request = Request::new(RequestId::from(5), Name::from_static("pay"), Payload::default())?;
/// assert_eq!(
///     KeyedRequest::new(request, RequestKey { seq: 0, epoch: 77 }, 0).unwrap_err(),
///     ValueError::ZeroSequence,
/// );
/// # Ok::<(), ValueError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyedRequest {
    request: Request,
    key: RequestKey,
    ack: u64,
}

impl KeyedRequest {
    /// A keyed request, refused when its sequence number is 0.
    ///
    /// `ack` is taken as given: an `ack` not below `key.seq` is for the
    /// server to refuse (`BAD_KEY`).
    pub fn new(request: Request, key: RequestKey, ack: u64) -> Result<Self, ValueError> {
        if key.seq == 0 {
            return Err(ValueError::ZeroSequence);
        }
        Ok(Self { request, key, ack })
    }

    /// The request: id, name and payload.
    pub fn request(&self) -> &Request {
        &self.request
    }

    /// The request's id.
    pub fn id(&self) -> RequestId {
        self.request.id()
    }

    /// The key.
    pub fn key(&self) -> RequestKey {
        self.key
    }

    /// The client has the replies of every keyed request with a sequence
    /// number up to this one.
    pub fn ack(&self) -> u64 {
        self.ack
    }

    /// Request, key and ack.
    pub fn into_parts(self) -> (Request, RequestKey, u64) {
        (self.request, self.key, self.ack)
    }

    /// The message type this request is sent as.
    pub fn message_type(&self) -> MessageType {
        match self.request.payload().encoding() {
            Encoding::Binary => MessageType::KeyedRequestBinary,
            Encoding::Utf8 => MessageType::KeyedRequestUtf8,
            Encoding::Utf16 => MessageType::KeyedRequestUtf16,
        }
    }

    /// The length of the encoded message.
    pub fn encoded_len(&self) -> usize {
        34 + named_body_len(self.request.name(), self.request.payload(), 34)
    }

    /// Appends the encoded message to `buf`.
    pub fn encode(&self, buf: &mut BytesMut) {
        buf.reserve(self.encoded_len());
        buf.put_u8(self.message_type().byte());
        buf.put_slice(&self.request.id().0);
        buf.put_u64_le(self.key.seq);
        buf.put_u64_le(self.key.epoch);
        buf.put_u64_le(self.ack);
        encode_named_body(buf, self.request.name(), self.request.payload(), 34);
    }
}

/// The name of a room stream: 1 to 255 bytes of UTF-8. A name parsed from
/// a message shares that message's bytes.
///
/// ```
/// use webwire_proto::RoomName;
///
/// let room = RoomName::new("café")?;
/// assert_eq!(room.as_str(), "café");
/// assert!(RoomName::new("").is_err());
/// # Ok::<(), webwire_proto::ValueError>(())
/// ```
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RoomName(Bytes);

impl RoomName {
    /// A room name, refused if empty or longer than 255 bytes.
    pub fn new(name: impl Into<String>) -> Result<Self, ValueError> {
        let name = name.into();
        if name.is_empty() {
            return Err(ValueError::EmptyRoomName);
        }
        if name.len() > MAX_ROOM_NAME_LEN {
            return Err(ValueError::RoomNameTooLong { len: name.len() });
        }
        Ok(Self(Bytes::from(name)))
    }

    /// A room name from a string literal.
    ///
    /// # Panics
    ///
    /// If the literal is not a valid room name (a programming error).
    pub fn from_static(name: &'static str) -> Self {
        match Self::new(name) {
            Ok(name) => name,
            Err(err) => panic!("invalid webwire room name {name:?}: {err}"),
        }
    }

    /// The name as text.
    pub fn as_str(&self) -> &str {
        // Checked to be UTF-8 when made.
        std::str::from_utf8(&self.0).unwrap_or_default()
    }

    /// The name as bytes.
    pub fn as_bytes(&self) -> &Bytes {
        &self.0
    }

    /// The length in bytes (1..=255).
    #[allow(clippy::len_without_is_empty)] // never empty
    pub fn len(&self) -> usize {
        self.0.len()
    }
}

impl fmt::Debug for RoomName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl fmt::Display for RoomName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Which stream a stream message is about: the session's own stream
/// (kind 1, for `signal_session`) or a room with history (kind 2).
///
/// Layout: `[kind u8][sl u8][name sl]`; the session stream has `sl = 0`.
///
/// ```
/// use webwire_proto::{RoomName, StreamId};
///
/// let room = StreamId::Room(RoomName::from_static("lobby"));
/// assert_eq!(room.kind(), 2);
/// assert_eq!(room.encoded_len(), 2 + 5);
/// assert_eq!(StreamId::Session.encoded_len(), 2);
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum StreamId {
    /// The session's stream.
    Session,
    /// A room's stream.
    Room(RoomName),
}

impl StreamId {
    /// The stream kind byte of the session stream.
    pub const SESSION_KIND: u8 = 1;
    /// The stream kind byte of a room stream.
    pub const ROOM_KIND: u8 = 2;

    /// The stream kind byte.
    pub fn kind(&self) -> u8 {
        match self {
            Self::Session => Self::SESSION_KIND,
            Self::Room(_) => Self::ROOM_KIND,
        }
    }

    /// The length of the encoded kind, name length and name.
    pub fn encoded_len(&self) -> usize {
        2 + self.name_len()
    }

    fn name_len(&self) -> usize {
        match self {
            Self::Session => 0,
            Self::Room(room) => room.len(),
        }
    }

    fn encode(&self, buf: &mut BytesMut) {
        buf.put_u8(self.kind());
        match self {
            Self::Session => buf.put_u8(0),
            Self::Room(room) => {
                // At most 255 bytes by construction.
                buf.put_u8(room.len() as u8);
                buf.put_slice(&room.0);
            }
        }
    }
}

impl fmt::Display for StreamId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Session => f.write_str("session stream"),
            Self::Room(room) => write!(f, "room stream {room:?}"),
        }
    }
}

/// Where a client is on one stream: the last offset it delivered within
/// the stream's epoch. One entry of a [`StreamResume`].
///
/// Layout: `[kind u8][sl u8][name sl][epoch u64][offset u64]`.
///
/// ```
/// use webwire_proto::{StreamId, StreamPosition};
///
/// let position = StreamPosition { stream: StreamId::Session, epoch: 7, offset: 41 };
/// assert_eq!(position.encoded_len(), 2 + 16);
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct StreamPosition {
    /// The stream.
    pub stream: StreamId,
    /// The stream's epoch the offset belongs to.
    pub epoch: u64,
    /// The last offset delivered (0 for none).
    pub offset: u64,
}

impl StreamPosition {
    /// The length of the encoded entry.
    pub fn encoded_len(&self) -> usize {
        self.stream.encoded_len() + 16
    }

    fn encode(&self, buf: &mut BytesMut) {
        self.stream.encode(buf);
        buf.put_u64_le(self.epoch);
        buf.put_u64_le(self.offset);
    }
}

/// The client asks for what it missed on its streams (type 35), a request
/// answered by an empty binary reply once the missed signals (or a
/// [`StreamLoss`]) are queued.
///
/// Layout: `[35][request id 8][count u16][count × entry]`, count at most
/// 1024, nothing after the last entry.
///
/// ```
/// use webwire_proto::{RequestId, RoomName, StreamId, StreamPosition, StreamResume};
///
/// let session = StreamPosition { stream: StreamId::Session, epoch: 7, offset: 41 };
/// let resume = StreamResume::new(RequestId::from(9), vec![
///     session.clone(),
///     StreamPosition { stream: StreamId::Room(RoomName::from_static("lobby")), epoch: 3, offset: 0 },
/// ])?;
/// assert_eq!(resume.positions().len(), 2);
/// assert_eq!(resume.encoded_len(), 11 + 18 + 23);
/// // A stream listed twice is refused.
/// assert!(StreamResume::new(RequestId::from(9), vec![session.clone(), session]).is_err());
/// # Ok::<(), webwire_proto::ValueError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamResume {
    id: RequestId,
    positions: Vec<StreamPosition>,
}

impl StreamResume {
    /// A resume of these streams, refused with more than 1024 of them or
    /// with a stream listed twice.
    pub fn new(id: RequestId, positions: Vec<StreamPosition>) -> Result<Self, ValueError> {
        if positions.len() > MAX_RESUME_STREAMS {
            return Err(ValueError::TooManyStreams {
                count: positions.len(),
            });
        }
        if let Some(stream) = first_duplicate(positions.iter().map(|p| &p.stream)) {
            return Err(ValueError::DuplicateStream {
                stream: stream.clone(),
            });
        }
        Ok(Self { id, positions })
    }

    /// The request id.
    pub fn id(&self) -> RequestId {
        self.id
    }

    /// The client's positions, in the order it sent them.
    pub fn positions(&self) -> &[StreamPosition] {
        &self.positions
    }

    /// Id and positions.
    pub fn into_parts(self) -> (RequestId, Vec<StreamPosition>) {
        (self.id, self.positions)
    }

    /// The length of the encoded message.
    pub fn encoded_len(&self) -> usize {
        11 + self
            .positions
            .iter()
            .map(StreamPosition::encoded_len)
            .sum::<usize>()
    }

    /// Appends the encoded message to `buf`.
    pub fn encode(&self, buf: &mut BytesMut) {
        buf.reserve(self.encoded_len());
        buf.put_u8(MessageType::StreamResume.byte());
        buf.put_slice(&self.id.0);
        // At most 1024 by construction.
        buf.put_u16_le(self.positions.len() as u16);
        for position in &self.positions {
            position.encode(buf);
        }
    }
}

/// A signal of a stream (types 66, 67, 68): a 2.0 [`Signal`] with its
/// stream, the stream's epoch and its offset within that epoch.
///
/// Layout: `[type][kind u8][sl u8][name sl][epoch u64][offset u64][n u8][name n][pad][payload]`.
///
/// ```
/// use webwire_proto::{Name, Payload, RoomName, Signal, StreamId, StreamSignal};
///
/// let signal = Signal::new(Name::from_static("msg"), Payload::utf8("hi"))?;
/// let room = StreamId::Room(RoomName::from_static("lobby"));
/// let message = StreamSignal::new(room.clone(), 7, 42, signal.clone())?;
/// assert_eq!((message.epoch(), message.offset()), (7, 42));
/// assert_eq!(message.encoded_len(), 20 + 5 + 3 + 2);
/// // Epochs are never 0 and offsets start at 1.
/// assert!(StreamSignal::new(room, 7, 0, signal).is_err());
/// # Ok::<(), webwire_proto::ValueError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamSignal {
    stream: StreamId,
    epoch: u64,
    offset: u64,
    signal: Signal,
}

impl StreamSignal {
    /// The signal at `offset` of `stream` in `epoch`, refused when the
    /// epoch or the offset is 0.
    pub fn new(
        stream: StreamId,
        epoch: u64,
        offset: u64,
        signal: Signal,
    ) -> Result<Self, ValueError> {
        if epoch == 0 {
            return Err(ValueError::ZeroEpoch);
        }
        if offset == 0 {
            return Err(ValueError::ZeroOffset);
        }
        Ok(Self {
            stream,
            epoch,
            offset,
            signal,
        })
    }

    /// The stream.
    pub fn stream(&self) -> &StreamId {
        &self.stream
    }

    /// The stream's epoch.
    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    /// The offset within the epoch (1, 2, 3, ...).
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// The signal: name and payload (what a 2.0 connection gets instead).
    pub fn signal(&self) -> &Signal {
        &self.signal
    }

    /// Stream, epoch, offset and signal.
    pub fn into_parts(self) -> (StreamId, u64, u64, Signal) {
        (self.stream, self.epoch, self.offset, self.signal)
    }

    /// The message type this signal is sent as.
    pub fn message_type(&self) -> MessageType {
        match self.signal.payload().encoding() {
            Encoding::Binary => MessageType::StreamSignalBinary,
            Encoding::Utf8 => MessageType::StreamSignalUtf8,
            Encoding::Utf16 => MessageType::StreamSignalUtf16,
        }
    }

    fn header(&self) -> usize {
        20 + self.stream.name_len()
    }

    /// The length of the encoded message.
    pub fn encoded_len(&self) -> usize {
        let header = self.header();
        header + named_body_len(self.signal.name(), self.signal.payload(), header)
    }

    /// Appends the encoded message to `buf`.
    pub fn encode(&self, buf: &mut BytesMut) {
        buf.reserve(self.encoded_len());
        buf.put_u8(self.message_type().byte());
        self.stream.encode(buf);
        buf.put_u64_le(self.epoch);
        buf.put_u64_le(self.offset);
        encode_named_body(
            buf,
            self.signal.name(),
            self.signal.payload(),
            self.header(),
        );
    }
}

/// Why a client will never get some signals of a stream ([`StreamLoss`]).
///
/// ```
/// use webwire_proto::LossReason;
///
/// assert_eq!(LossReason::from_byte(2), Some(LossReason::EpochChanged));
/// assert_eq!(LossReason::Ahead.byte(), 3);
/// assert_eq!(LossReason::from_byte(9), None);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LossReason {
    /// History no longer holds them (trimmed by count or age) (1).
    Trimmed,
    /// The stream's store lost its data: a new epoch (2).
    EpochChanged,
    /// The client's offset is beyond the stream's end in the same epoch,
    /// as after a failover that lost the tail (3).
    Ahead,
    /// No such stream for this connection (an unknown room, or a room the
    /// session is not a member of) (4).
    UnknownStream,
}

impl LossReason {
    /// The reason for a reason byte, `None` for an unknown one.
    pub const fn from_byte(byte: u8) -> Option<Self> {
        Some(match byte {
            1 => Self::Trimmed,
            2 => Self::EpochChanged,
            3 => Self::Ahead,
            4 => Self::UnknownStream,
            _ => return None,
        })
    }

    /// The reason byte.
    pub const fn byte(self) -> u8 {
        match self {
            Self::Trimmed => 1,
            Self::EpochChanged => 2,
            Self::Ahead => 3,
            Self::UnknownStream => 4,
        }
    }
}

/// Signals of a stream that the client will never get (type 24). The
/// client's new position on the stream is `(epoch, next - 1)`.
///
/// Layout: `[24][kind u8][sl u8][name sl][epoch u64][lost_from u64][lost_to u64][next u64][reason u8]`.
///
/// ```
/// use bytes::BytesMut;
/// use webwire_proto::{LossReason, StreamId, StreamLoss};
///
/// // Offsets 5..=9 were trimmed; 10 onwards follow.
/// let loss = StreamLoss {
///     stream: StreamId::Session,
///     epoch: 7,
///     lost_from: 5,
///     lost_to: 9,
///     next: 10,
///     reason: LossReason::Trimmed,
/// };
/// let mut buf = BytesMut::new();
/// loss.encode(&mut buf);
/// assert_eq!(buf.len(), loss.encoded_len());
/// assert_eq!((buf[0], buf[1], buf[2], buf[buf.len() - 1]), (24, 1, 0, 1));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamLoss {
    /// The stream.
    pub stream: StreamId,
    /// The stream's current epoch.
    pub epoch: u64,
    /// The first offset lost (0: unknown start).
    pub lost_from: u64,
    /// The last offset lost.
    pub lost_to: u64,
    /// The offset of the next signal the client gets on the stream.
    pub next: u64,
    /// Why.
    pub reason: LossReason,
}

impl StreamLoss {
    /// The length of the encoded message.
    pub fn encoded_len(&self) -> usize {
        1 + self.stream.encoded_len() + 33
    }

    /// Appends the encoded message to `buf`.
    pub fn encode(&self, buf: &mut BytesMut) {
        buf.reserve(self.encoded_len());
        buf.put_u8(MessageType::StreamLoss.byte());
        self.stream.encode(buf);
        buf.put_u64_le(self.epoch);
        buf.put_u64_le(self.lost_from);
        buf.put_u64_le(self.lost_to);
        buf.put_u64_le(self.next);
        buf.put_u8(self.reason.byte());
    }
}

/// The first stream that occurs a second time, if any.
fn first_duplicate<'a>(
    streams: impl ExactSizeIterator<Item = &'a StreamId>,
) -> Option<&'a StreamId> {
    // Most resumes list a handful of streams: comparing is cheaper than hashing then.
    const LINEAR_UP_TO: usize = 16;
    if streams.len() <= LINEAR_UP_TO {
        let mut seen: Vec<&StreamId> = Vec::with_capacity(streams.len());
        for stream in streams {
            if seen.contains(&stream) {
                return Some(stream);
            }
            seen.push(stream);
        }
        return None;
    }
    let mut seen = std::collections::HashSet::with_capacity(streams.len());
    streams.into_iter().find(|stream| !seen.insert(*stream))
}

// ---- Parsing: the frame has the type's least length (check_min_len). ----

fn read_u64(frame: &[u8], at: usize) -> u64 {
    let mut bytes = [0; 8];
    bytes.copy_from_slice(&frame[at..at + 8]);
    u64::from_le_bytes(bytes)
}

fn read_u32(frame: &[u8], at: usize) -> u32 {
    let mut bytes = [0; 4];
    bytes.copy_from_slice(&frame[at..at + 4]);
    u32::from_le_bytes(bytes)
}

pub(crate) fn parse_hello(frame: &Bytes) -> Result<ExtensionHello, ParseError> {
    let kind = MessageType::ExtensionHello;
    let flags = FeatureFlags::from_bits(read_u32(frame, 1));
    let len = usize::from(frame[5]);
    if len > MAX_INSTANCE_ID_LEN {
        return Err(ParseError::InstanceIdTooLong { len });
    }
    if frame.len() != 6 + len {
        return Err(ParseError::WrongLength {
            kind,
            len: frame.len(),
            expected: 6 + len,
        });
    }
    let id = frame.slice(6..);
    if let Some((offset, byte)) = first_unprintable(&id) {
        return Err(ParseError::InvalidInstanceIdByte { offset, byte });
    }
    if flags.contains(FeatureFlags::KEYED_REQUESTS) && len < MIN_KEYED_INSTANCE_ID_LEN {
        return Err(ParseError::InstanceIdTooShort {
            len,
            min: MIN_KEYED_INSTANCE_ID_LEN,
        });
    }
    Ok(ExtensionHello {
        flags,
        instance_id: InstanceId(id),
    })
}

pub(crate) fn parse_accept(frame: &[u8]) -> ExtensionAccept {
    ExtensionAccept {
        flags: FeatureFlags::from_bits(read_u32(frame, 1)),
        ledger_epoch: read_u64(frame, 5),
    }
}

pub(crate) fn parse_keyed_request(
    kind: MessageType,
    frame: &Bytes,
) -> Result<KeyedRequest, ParseError> {
    let key = RequestKey {
        seq: read_u64(frame, 9),
        epoch: read_u64(frame, 17),
    };
    if key.seq == 0 {
        return Err(ParseError::ZeroSequence { kind });
    }
    let (name, payload) = parse_named(kind, frame, 33, payload_encoding(kind))?;
    Ok(KeyedRequest {
        request: Request::from_checked(RequestId::read(frame), name, payload),
        key,
        ack: read_u64(frame, 25),
    })
}

/// Reads `[kind][sl][name sl]` at `at`, which the frame's length covers;
/// the name's bytes must be within the frame (`need_after` more bytes follow
/// it). Returns the stream and where the name ends.
fn parse_stream(
    kind: MessageType,
    frame: &Bytes,
    at: usize,
    need_after: usize,
) -> Result<(StreamId, usize), ParseError> {
    let stream_kind = frame[at];
    let name_len = usize::from(frame[at + 1]);
    let name_start = at + 2;
    let name_end = name_start + name_len;
    match stream_kind {
        StreamId::SESSION_KIND if name_len != 0 => {
            return Err(ParseError::SessionStreamWithName { kind, name_len })
        }
        StreamId::ROOM_KIND if name_len == 0 => return Err(ParseError::EmptyRoomName { kind }),
        StreamId::SESSION_KIND | StreamId::ROOM_KIND => {}
        _ => return Err(ParseError::InvalidStreamKind { kind, stream_kind }),
    }
    if frame.len() < name_end + need_after {
        return Err(ParseError::TooShort {
            kind,
            len: frame.len(),
            min: name_end + need_after,
        });
    }
    if stream_kind == StreamId::SESSION_KIND {
        return Ok((StreamId::Session, name_end));
    }
    let name = frame.slice(name_start..name_end);
    if let Err(err) = std::str::from_utf8(&name) {
        return Err(ParseError::InvalidRoomName {
            kind,
            valid_up_to: err.valid_up_to(),
        });
    }
    Ok((StreamId::Room(RoomName(name)), name_end))
}

pub(crate) fn parse_resume(frame: &Bytes) -> Result<StreamResume, ParseError> {
    let kind = MessageType::StreamResume;
    let count = usize::from(u16::from_le_bytes([frame[9], frame[10]]));
    if count > MAX_RESUME_STREAMS {
        return Err(ParseError::TooManyStreams {
            count,
            max: MAX_RESUME_STREAMS,
        });
    }
    let mut positions = Vec::with_capacity(count.min(frame.len() / 18));
    let mut at = 11;
    for _ in 0..count {
        if frame.len() < at + 2 {
            return Err(ParseError::TooShort {
                kind,
                len: frame.len(),
                min: at + 18,
            });
        }
        let (stream, name_end) = parse_stream(kind, frame, at, 16)?;
        positions.push(StreamPosition {
            stream,
            epoch: read_u64(frame, name_end),
            offset: read_u64(frame, name_end + 8),
        });
        at = name_end + 16;
    }
    if frame.len() != at {
        return Err(ParseError::WrongLength {
            kind,
            len: frame.len(),
            expected: at,
        });
    }
    if let Some(stream) = first_duplicate(positions.iter().map(|p| &p.stream)) {
        return Err(ParseError::DuplicateStream {
            stream: stream.clone(),
        });
    }
    Ok(StreamResume {
        id: RequestId::read(frame),
        positions,
    })
}

pub(crate) fn parse_stream_signal(
    kind: MessageType,
    frame: &Bytes,
) -> Result<StreamSignal, ParseError> {
    // 20 + sl bytes up to and including the signal's name length byte, and
    // at least one byte of name or payload after it.
    let (stream, name_end) = parse_stream(kind, frame, 1, 18)?;
    let epoch = read_u64(frame, name_end);
    let offset = read_u64(frame, name_end + 8);
    if epoch == 0 {
        return Err(ParseError::ZeroEpoch { kind });
    }
    if offset == 0 {
        return Err(ParseError::ZeroOffset { kind });
    }
    let signal = crate::message::parse_signal_at(kind, frame, name_end + 16)?;
    Ok(StreamSignal {
        stream,
        epoch,
        offset,
        signal,
    })
}

pub(crate) fn parse_loss(frame: &Bytes) -> Result<StreamLoss, ParseError> {
    let kind = MessageType::StreamLoss;
    let (stream, name_end) = parse_stream(kind, frame, 1, 33)?;
    if frame.len() != name_end + 33 {
        return Err(ParseError::WrongLength {
            kind,
            len: frame.len(),
            expected: name_end + 33,
        });
    }
    let reason_byte = frame[name_end + 32];
    let reason =
        LossReason::from_byte(reason_byte).ok_or(ParseError::UnknownLossReason(reason_byte))?;
    Ok(StreamLoss {
        stream,
        epoch: read_u64(frame, name_end),
        lost_from: read_u64(frame, name_end + 8),
        lost_to: read_u64(frame, name_end + 16),
        next: read_u64(frame, name_end + 24),
        reason,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{ClientMessage, Name, Payload, ServerMessage};

    #[test]
    fn feature_flags_show_known_and_unknown_bits() {
        assert_eq!(FeatureFlags::NONE.to_string(), "none");
        assert_eq!(
            format!("{:?}", FeatureFlags::KNOWN),
            "FeatureFlags(STREAMS | KEYED_REQUESTS)"
        );
        assert_eq!(FeatureFlags::from_bits(0x10).to_string(), "0x10");
        assert!(FeatureFlags::KNOWN.contains(FeatureFlags::KEYED_REQUESTS));
        assert!(!FeatureFlags::STREAMS.contains(FeatureFlags::KNOWN));
        assert_eq!(
            FeatureFlags::KNOWN.difference(FeatureFlags::STREAMS),
            FeatureFlags::KEYED_REQUESTS
        );
    }

    /// The worked examples of the contract, byte by byte.
    #[test]
    fn worked_examples() {
        let hello = ExtensionHello::new(
            FeatureFlags::KNOWN,
            InstanceId::new("0123456789abcdef").unwrap(),
        )
        .unwrap();
        let bytes = ClientMessage::ExtensionHello(hello.clone()).to_bytes();
        assert_eq!(&bytes[..], b"\x22\x03\0\0\0\x100123456789abcdef");
        assert_eq!(
            ClientMessage::parse(bytes).unwrap(),
            ClientMessage::ExtensionHello(hello)
        );

        // A UTF-16 stream signal of room "ab" (sl 2), name "x" (n 1):
        // header 20 + 2 + 1 = 23 is odd, so one padding byte.
        let signal = Signal::new(Name::from_static("x"), Payload::utf16("h")).unwrap();
        let message =
            StreamSignal::new(StreamId::Room(RoomName::from_static("ab")), 5, 6, signal).unwrap();
        let bytes = ServerMessage::StreamSignal(message.clone()).to_bytes();
        assert_eq!(
            &bytes[..],
            b"\x44\x02\x02ab\x05\0\0\0\0\0\0\0\x06\0\0\0\0\0\0\0\x01x\0h\0"
        );
        assert_eq!(
            ServerMessage::parse(bytes).unwrap(),
            ServerMessage::StreamSignal(message)
        );

        let request = Request::new(
            RequestId::from(1),
            Name::from_static("a"),
            Payload::default(),
        )
        .unwrap();
        let keyed = KeyedRequest::new(request, RequestKey { seq: 2, epoch: 3 }, 1).unwrap();
        let bytes = ClientMessage::KeyedRequest(keyed.clone()).to_bytes();
        assert_eq!(
            &bytes[..],
            b"\x82\x01\0\0\0\0\0\0\0\x02\0\0\0\0\0\0\0\x03\0\0\0\0\0\0\0\x01\0\0\0\0\0\0\0\x01a"
        );
        assert_eq!(
            ClientMessage::parse(bytes).unwrap(),
            ClientMessage::KeyedRequest(keyed)
        );

        let bytes = ServerMessage::OutcomeUnknown(RequestId::from(1)).to_bytes();
        assert_eq!(&bytes[..], b"\x06\x01\0\0\0\0\0\0\0");
    }

    #[test]
    fn parsed_parts_share_the_frame() {
        let signal = Signal::new(Name::from_static("n"), Payload::binary(vec![1, 2])).unwrap();
        let message =
            StreamSignal::new(StreamId::Room(RoomName::from_static("room")), 1, 1, signal).unwrap();
        let frame = ServerMessage::StreamSignal(message).to_bytes();
        let ServerMessage::StreamSignal(parsed) = ServerMessage::parse(frame.clone()).unwrap()
        else {
            panic!("not a stream signal")
        };
        let range = frame.as_ptr() as usize..frame.as_ptr() as usize + frame.len();
        let StreamId::Room(room) = parsed.stream() else {
            panic!("not a room")
        };
        assert!(range.contains(&(room.as_bytes().as_ptr() as usize)));
        assert!(range.contains(&(parsed.signal().payload().as_bytes().as_ptr() as usize)));
    }
}
