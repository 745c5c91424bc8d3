// GENERATED FILE, do not edit: clients/typescript/dist/index.js (npm run build in
// clients/typescript), copied by examples/chat/e2e/sync-client.mjs, which
// regenerates it. The chat server compiles it in; its e2e test fails when
// it differs from a fresh build.
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
export { WebwireClient, PROTOCOL_MAJOR, PROTOCOL_MINOR, } from './client.js';
export { ExtensionFlags, MAX_RESUME_STREAMS, MessageType, encodeMessage, parseMessage, } from './codec.js';
export { DisconnectedError, InternalError, MaxSessConnsReached, MessageTooLargeError, OutcomeUnknownError, ProtocolError, QueueFullError, RequestError, SessionNotFound, SessionsDisabled, ShutdownError, SubProtocolMismatch, TimeoutError, UpgradeRefusedError, WebwireError, } from './errors.js';
export { Payload, Reply, Signal, StreamSignal, decodeUtf16, decodeUtf8, encodeUtf16, encodeUtf8, } from './payload.js';
export { LocalStorageSessionStore, MemorySessionStore, defaultSessionStore, parseSessionJson, } from './session.js';
export { StreamTracker, streamKey } from './streams.js';
export { KeyedLedger } from './keyed.js';
export { ResumeState, newInstanceId, defaultResumeStorage, defaultPageLifecycle } from './resume.js';
