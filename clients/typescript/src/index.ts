/**
 * webwire client (v2.0, and v2.1 where the server announces it) for
 * browsers (and Node with a WebSocket implementation such as `ws`).
 *
 * Layout:
 * - `client.ts`: {@link WebwireClient}, the connection, calls, reconnection, heartbeats, the 2.1 opt-in.
 * - `codec.ts`: encode / parse every message of docs/protocol.md, sans-IO.
 * - `streams.ts`: stream positions and the client's rule for stream signals (2.1), sans-IO.
 * - `keyed.ts`: keyed requests' seq, ack and what to do with them on a reconnect (2.1), sans-IO.
 * - `resume.ts`: the 2.1 state kept across page reloads, and duplicated-tab detection.
 * - `payload.ts`: payloads with their encoding, UTF-8 / UTF-16 conversions.
 * - `session.ts`: the session JSON and the pluggable session key stores.
 * - `errors.ts`: the typed errors.
 *
 * @module
 */

export {
  WebwireClient,
  PROTOCOL_MAJOR,
  PROTOCOL_MINOR,
  type CallOptions,
  type ClientEvents,
  type ClientOptions,
  type OrphanedReply,
  type PendingKeyed,
  type ReconnectOptions,
  type SendOptions,
  type Status,
  type WebSocketConstructor,
  type WebSocketLike,
} from './client.js';
export {
  ExtensionFlags,
  MAX_RESUME_STREAMS,
  MessageType,
  encodeMessage,
  parseMessage,
  type AcceptConfMessage,
  type ExtensionAcceptMessage,
  type ExtensionHelloMessage,
  type KeyedRequestMessage,
  type ReplyOutcomeUnknownMessage,
  type StreamId,
  type StreamLossMessage,
  type StreamLossReason,
  type StreamPosition,
  type StreamResumeMessage,
  type StreamSignalMessage,
  type EmptyReplyKind,
  type EmptyReplyMessage,
  type HeartbeatMessage,
  type Message,
  type NotifySessionClosedMessage,
  type NotifySessionCreatedMessage,
  type ReplyErrorMessage,
  type ReplyMessage,
  type RequestCloseSessionMessage,
  type RequestId,
  type RequestMessage,
  type RequestRestoreSessionMessage,
  type SignalMessage,
} from './codec.js';
export {
  DisconnectedError,
  InternalError,
  MaxSessConnsReached,
  MessageTooLargeError,
  OutcomeUnknownError,
  ProtocolError,
  QueueFullError,
  RequestError,
  SessionNotFound,
  SessionsDisabled,
  ShutdownError,
  SubProtocolMismatch,
  TimeoutError,
  UpgradeRefusedError,
  WebwireError,
} from './errors.js';
export {
  Payload,
  Reply,
  Signal,
  StreamSignal,
  decodeUtf16,
  decodeUtf8,
  encodeUtf16,
  encodeUtf8,
  type Encoding,
  type PayloadInput,
  type TextEncoding,
} from './payload.js';
export {
  LocalStorageSessionStore,
  MemorySessionStore,
  defaultSessionStore,
  parseSessionJson,
  type Session,
  type SessionStore,
  type StorageLike,
} from './session.js';
export { StreamTracker, streamKey, type SignalVerdict, type StreamLoss } from './streams.js';
export { KeyedLedger, type KeyedEntry, type ReconnectPlan, type RestoreOutcome } from './keyed.js';
export { ResumeState, newInstanceId, defaultResumeStorage, defaultPageLifecycle, type PageLifecycle } from './resume.js';
