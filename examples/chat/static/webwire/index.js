// GENERATED FILE, do not edit: clients/typescript/dist/index.js (npm run build in
// clients/typescript), copied by examples/chat/e2e/sync-client.mjs, which
// regenerates it. The chat server compiles it in; its e2e test fails when
// it differs from a fresh build.
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
export { WebwireClient, PROTOCOL_MAJOR, } from './client.js';
export { MessageType, encodeMessage, parseMessage, } from './codec.js';
export { DisconnectedError, InternalError, MaxSessConnsReached, MessageTooLargeError, ProtocolError, RequestError, SessionNotFound, SessionsDisabled, ShutdownError, SubProtocolMismatch, TimeoutError, UpgradeRefusedError, WebwireError, } from './errors.js';
export { Payload, Reply, Signal, decodeUtf16, decodeUtf8, encodeUtf16, encodeUtf8, } from './payload.js';
export { LocalStorageSessionStore, MemorySessionStore, defaultSessionStore, parseSessionJson, } from './session.js';
