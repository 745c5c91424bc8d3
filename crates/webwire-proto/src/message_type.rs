use std::fmt;

/// The type of a webwire message: its first byte (docs/protocol.md sections 4
/// and 5; the 2.1 extension types in section 14).
///
/// ```
/// use webwire_proto::MessageType;
///
/// assert_eq!(MessageType::from_byte(128), Some(MessageType::RequestUtf8));
/// assert_eq!(MessageType::RequestUtf8.byte(), 128);
/// assert!(MessageType::RequestUtf8.sent_by_client());
/// assert!(!MessageType::RequestUtf8.is_extension());
/// assert!(MessageType::from_byte(130).is_some_and(MessageType::is_extension));
/// assert_eq!(MessageType::from_byte(7), None);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum MessageType {
    /// Error reply with code and message (0).
    ReplyError,
    /// The server is shutting down (1).
    ReplyShutdown,
    /// The request failed inside the server (2).
    ReplyInternalError,
    /// The session to restore was not found (3).
    ReplySessionNotFound,
    /// The session has its maximum number of connections (4).
    ReplyMaxSessConnsReached,
    /// Sessions are disabled on the server (5).
    ReplySessionsDisabled,
    /// 2.1: the server cannot know whether a keyed request ran (6).
    ReplyOutcomeUnknown,
    /// A session was created for this connection (21).
    NotifySessionCreated,
    /// This connection's session was closed (22).
    NotifySessionClosed,
    /// The server's configuration, sent first (23).
    AcceptConf,
    /// 2.1: signals of a stream that the client will never get (24).
    StreamLoss,
    /// 2.1: the server's answer to ExtensionHello, with the granted features (25).
    ExtensionAccept,
    /// The client closes its session (31).
    RequestCloseSession,
    /// The client restores a session by key (32).
    RequestRestoreSession,
    /// The client is alive (33).
    Heartbeat,
    /// 2.1: the client opts in to the extensions, its first message (34).
    ExtensionHello,
    /// 2.1: the client asks for what it missed on its streams (35).
    StreamResume,
    /// Signal with a binary payload (63).
    SignalBinary,
    /// Signal with a UTF-8 payload (64).
    SignalUtf8,
    /// Signal with a UTF-16 payload (65).
    SignalUtf16,
    /// 2.1: stream signal with a binary payload (66).
    StreamSignalBinary,
    /// 2.1: stream signal with a UTF-8 payload (67).
    StreamSignalUtf8,
    /// 2.1: stream signal with a UTF-16 payload (68).
    StreamSignalUtf16,
    /// Request with a binary payload (127).
    RequestBinary,
    /// Request with a UTF-8 payload (128).
    RequestUtf8,
    /// Request with a UTF-16 payload (129).
    RequestUtf16,
    /// 2.1: keyed request with a binary payload (130).
    KeyedRequestBinary,
    /// 2.1: keyed request with a UTF-8 payload (131).
    KeyedRequestUtf8,
    /// 2.1: keyed request with a UTF-16 payload (132).
    KeyedRequestUtf16,
    /// Reply with a binary payload (191).
    ReplyBinary,
    /// Reply with a UTF-8 payload (192).
    ReplyUtf8,
    /// Reply with a UTF-16 payload (193).
    ReplyUtf16,
}

impl MessageType {
    /// Every message type, 2.0 and 2.1, in the order of their type bytes.
    pub const ALL: [MessageType; 32] = [
        Self::ReplyError,
        Self::ReplyShutdown,
        Self::ReplyInternalError,
        Self::ReplySessionNotFound,
        Self::ReplyMaxSessConnsReached,
        Self::ReplySessionsDisabled,
        Self::ReplyOutcomeUnknown,
        Self::NotifySessionCreated,
        Self::NotifySessionClosed,
        Self::AcceptConf,
        Self::StreamLoss,
        Self::ExtensionAccept,
        Self::RequestCloseSession,
        Self::RequestRestoreSession,
        Self::Heartbeat,
        Self::ExtensionHello,
        Self::StreamResume,
        Self::SignalBinary,
        Self::SignalUtf8,
        Self::SignalUtf16,
        Self::StreamSignalBinary,
        Self::StreamSignalUtf8,
        Self::StreamSignalUtf16,
        Self::RequestBinary,
        Self::RequestUtf8,
        Self::RequestUtf16,
        Self::KeyedRequestBinary,
        Self::KeyedRequestUtf8,
        Self::KeyedRequestUtf16,
        Self::ReplyBinary,
        Self::ReplyUtf8,
        Self::ReplyUtf16,
    ];

    /// The type for a message's first byte, `None` for a byte no message has.
    pub const fn from_byte(byte: u8) -> Option<Self> {
        Some(match byte {
            0 => Self::ReplyError,
            1 => Self::ReplyShutdown,
            2 => Self::ReplyInternalError,
            3 => Self::ReplySessionNotFound,
            4 => Self::ReplyMaxSessConnsReached,
            5 => Self::ReplySessionsDisabled,
            6 => Self::ReplyOutcomeUnknown,
            21 => Self::NotifySessionCreated,
            22 => Self::NotifySessionClosed,
            23 => Self::AcceptConf,
            24 => Self::StreamLoss,
            25 => Self::ExtensionAccept,
            31 => Self::RequestCloseSession,
            32 => Self::RequestRestoreSession,
            33 => Self::Heartbeat,
            34 => Self::ExtensionHello,
            35 => Self::StreamResume,
            63 => Self::SignalBinary,
            64 => Self::SignalUtf8,
            65 => Self::SignalUtf16,
            66 => Self::StreamSignalBinary,
            67 => Self::StreamSignalUtf8,
            68 => Self::StreamSignalUtf16,
            127 => Self::RequestBinary,
            128 => Self::RequestUtf8,
            129 => Self::RequestUtf16,
            130 => Self::KeyedRequestBinary,
            131 => Self::KeyedRequestUtf8,
            132 => Self::KeyedRequestUtf16,
            191 => Self::ReplyBinary,
            192 => Self::ReplyUtf8,
            193 => Self::ReplyUtf16,
            _ => return None,
        })
    }

    /// The type byte that starts messages of this type.
    pub const fn byte(self) -> u8 {
        match self {
            Self::ReplyError => 0,
            Self::ReplyShutdown => 1,
            Self::ReplyInternalError => 2,
            Self::ReplySessionNotFound => 3,
            Self::ReplyMaxSessConnsReached => 4,
            Self::ReplySessionsDisabled => 5,
            Self::ReplyOutcomeUnknown => 6,
            Self::NotifySessionCreated => 21,
            Self::NotifySessionClosed => 22,
            Self::AcceptConf => 23,
            Self::StreamLoss => 24,
            Self::ExtensionAccept => 25,
            Self::RequestCloseSession => 31,
            Self::RequestRestoreSession => 32,
            Self::Heartbeat => 33,
            Self::ExtensionHello => 34,
            Self::StreamResume => 35,
            Self::SignalBinary => 63,
            Self::SignalUtf8 => 64,
            Self::SignalUtf16 => 65,
            Self::StreamSignalBinary => 66,
            Self::StreamSignalUtf8 => 67,
            Self::StreamSignalUtf16 => 68,
            Self::RequestBinary => 127,
            Self::RequestUtf8 => 128,
            Self::RequestUtf16 => 129,
            Self::KeyedRequestBinary => 130,
            Self::KeyedRequestUtf8 => 131,
            Self::KeyedRequestUtf16 => 132,
            Self::ReplyBinary => 191,
            Self::ReplyUtf8 => 192,
            Self::ReplyUtf16 => 193,
        }
    }

    /// Whether clients send this type (signals are sent by both sides).
    pub const fn sent_by_client(self) -> bool {
        matches!(
            self,
            Self::RequestCloseSession
                | Self::RequestRestoreSession
                | Self::Heartbeat
                | Self::SignalBinary
                | Self::SignalUtf8
                | Self::SignalUtf16
                | Self::RequestBinary
                | Self::RequestUtf8
                | Self::RequestUtf16
                | Self::ExtensionHello
                | Self::StreamResume
                | Self::KeyedRequestBinary
                | Self::KeyedRequestUtf8
                | Self::KeyedRequestUtf16
        )
    }

    /// Whether this type belongs to the 2.1 extensions: sent only on a
    /// connection that opted in (docs/protocol.md section 14), unknown to a
    /// 2.0 peer.
    pub const fn is_extension(self) -> bool {
        matches!(
            self,
            Self::ReplyOutcomeUnknown
                | Self::StreamLoss
                | Self::ExtensionAccept
                | Self::ExtensionHello
                | Self::StreamResume
                | Self::StreamSignalBinary
                | Self::StreamSignalUtf8
                | Self::StreamSignalUtf16
                | Self::KeyedRequestBinary
                | Self::KeyedRequestUtf8
                | Self::KeyedRequestUtf16
        )
    }

    /// Whether servers send this type (signals are sent by both sides).
    pub const fn sent_by_server(self) -> bool {
        !self.sent_by_client() || self.is_signal()
    }

    const fn is_signal(self) -> bool {
        matches!(
            self,
            Self::SignalBinary | Self::SignalUtf8 | Self::SignalUtf16
        )
    }

    /// The protocol's name for this type, as docs/protocol.md writes it.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::ReplyError => "ReplyError",
            Self::ReplyShutdown => "ReplyShutdown",
            Self::ReplyInternalError => "ReplyInternalError",
            Self::ReplySessionNotFound => "ReplySessionNotFound",
            Self::ReplyMaxSessConnsReached => "ReplyMaxSessConnsReached",
            Self::ReplySessionsDisabled => "ReplySessionsDisabled",
            Self::ReplyOutcomeUnknown => "ReplyOutcomeUnknown",
            Self::NotifySessionCreated => "NotifySessionCreated",
            Self::NotifySessionClosed => "NotifySessionClosed",
            Self::AcceptConf => "AcceptConf",
            Self::StreamLoss => "StreamLoss",
            Self::ExtensionAccept => "ExtensionAccept",
            Self::RequestCloseSession => "RequestCloseSession",
            Self::RequestRestoreSession => "RequestRestoreSession",
            Self::Heartbeat => "Heartbeat",
            Self::ExtensionHello => "ExtensionHello",
            Self::StreamResume => "StreamResume",
            Self::SignalBinary => "binary Signal",
            Self::SignalUtf8 => "UTF-8 Signal",
            Self::SignalUtf16 => "UTF-16 Signal",
            Self::StreamSignalBinary => "binary StreamSignal",
            Self::StreamSignalUtf8 => "UTF-8 StreamSignal",
            Self::StreamSignalUtf16 => "UTF-16 StreamSignal",
            Self::RequestBinary => "binary Request",
            Self::RequestUtf8 => "UTF-8 Request",
            Self::RequestUtf16 => "UTF-16 Request",
            Self::KeyedRequestBinary => "binary KeyedRequest",
            Self::KeyedRequestUtf8 => "UTF-8 KeyedRequest",
            Self::KeyedRequestUtf16 => "UTF-16 KeyedRequest",
            Self::ReplyBinary => "binary Reply",
            Self::ReplyUtf8 => "UTF-8 Reply",
            Self::ReplyUtf16 => "UTF-16 Reply",
        }
    }
}

impl fmt::Display for MessageType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.as_str(), self.byte())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_byte_maps_back_to_itself() {
        for byte in 0..=u8::MAX {
            if let Some(kind) = MessageType::from_byte(byte) {
                assert_eq!(kind.byte(), byte);
                assert!(MessageType::ALL.contains(&kind));
            }
        }
        for kind in MessageType::ALL {
            assert_eq!(MessageType::from_byte(kind.byte()), Some(kind));
        }
    }

    #[test]
    fn only_signals_are_sent_by_both_sides() {
        let both: Vec<_> = MessageType::ALL
            .into_iter()
            .filter(|t| t.sent_by_client() && t.sent_by_server())
            .collect();
        assert_eq!(
            both,
            [
                MessageType::SignalBinary,
                MessageType::SignalUtf8,
                MessageType::SignalUtf16
            ]
        );
    }

    #[test]
    fn the_extension_types_are_the_codes_2_0_does_not_define() {
        let extension: Vec<u8> = MessageType::ALL
            .into_iter()
            .filter(|t| t.is_extension())
            .map(MessageType::byte)
            .collect();
        assert_eq!(extension, [6, 24, 25, 34, 35, 66, 67, 68, 130, 131, 132]);
        // Stream signals are the server's only, unlike 2.0 signals.
        for kind in [
            MessageType::StreamSignalBinary,
            MessageType::StreamSignalUtf8,
            MessageType::StreamSignalUtf16,
        ] {
            assert!(kind.sent_by_server() && !kind.sent_by_client());
        }
    }
}
