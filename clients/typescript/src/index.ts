/**
 * webwire v2.0 client for browsers (and Node with a WebSocket implementation
 * such as `ws`).
 *
 * Layout:
 * - `client.ts`: {@link WebwireClient}, the connection, calls, reconnection, heartbeats.
 * - `codec.ts`: encode / parse every message of docs/protocol.md, sans-IO.
 * - `payload.ts`: payloads with their encoding, UTF-8 / UTF-16 conversions.
 * - `session.ts`: the session JSON and the pluggable session key stores.
 * - `errors.ts`: the typed errors.
 *
 * @module
 */

export {
  WebwireClient,
  PROTOCOL_MAJOR,
  type CallOptions,
  type ClientEvents,
  type ClientOptions,
  type ReconnectOptions,
  type SendOptions,
  type Status,
  type WebSocketConstructor,
  type WebSocketLike,
} from './client.js';
export {
  MessageType,
  encodeMessage,
  parseMessage,
  type AcceptConfMessage,
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
  ProtocolError,
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
