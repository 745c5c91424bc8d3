// GENERATED FILE, do not edit: clients/typescript/dist/codec.js (npm run build in
// clients/typescript), copied by examples/chat/e2e/sync-client.mjs, which
// regenerates it. The chat server compiles it in; its e2e test fails when
// it differs from a fresh build.
/**
 * The webwire wire format: v2.0 (docs/protocol.md, sections 4 and 5) and the
 * v2.1 extension messages (section 14.2): one encoder and one parser for
 * every message type, with all layout checks. Sans-IO: bytes in, bytes out.
 *
 * {@link encodeMessage} refuses (with `TypeError` / `RangeError`) to build a
 * message the layout does not allow; {@link parseMessage} rejects such bytes
 * with a {@link ProtocolError}.
 *
 * The parser knows every type of both versions. Whether a 2.1 message is
 * allowed on a connection (the client opted in, the feature was granted) is
 * the connection's decision, not the parser's: see {@link extensionFeatureOf}.
 *
 * @module
 */
import { ProtocolError } from './errors.js';
/** Type bytes of every webwire message, v2.0 and (marked) v2.1. */
export const MessageType = {
    ReplyError: 0,
    ReplyShutdown: 1,
    ReplyInternalError: 2,
    ReplySessionNotFound: 3,
    ReplyMaxSessConnsReached: 4,
    ReplySessionsDisabled: 5,
    /** v2.1 */
    ReplyOutcomeUnknown: 6,
    NotifySessionCreated: 21,
    NotifySessionClosed: 22,
    AcceptConf: 23,
    /** v2.1 */
    StreamLoss: 24,
    /** v2.1 */
    ExtensionAccept: 25,
    RequestCloseSession: 31,
    RequestRestoreSession: 32,
    Heartbeat: 33,
    /** v2.1 */
    ExtensionHello: 34,
    /** v2.1 */
    StreamResume: 35,
    SignalBinary: 63,
    SignalUtf8: 64,
    SignalUtf16: 65,
    /** v2.1 */
    StreamSignalBinary: 66,
    /** v2.1 */
    StreamSignalUtf8: 67,
    /** v2.1 */
    StreamSignalUtf16: 68,
    RequestBinary: 127,
    RequestUtf8: 128,
    RequestUtf16: 129,
    /** v2.1 */
    KeyedRequestBinary: 130,
    /** v2.1 */
    KeyedRequestUtf8: 131,
    /** v2.1 */
    KeyedRequestUtf16: 132,
    ReplyBinary: 191,
    ReplyUtf8: 192,
    ReplyUtf16: 193,
};
/** The v2.1 feature flags of ExtensionHello and ExtensionAccept (docs/protocol.md 14.1). */
export const ExtensionFlags = {
    /** Resumable signal streams (section 14.3). */
    Streams: 0x1,
    /** Requests that never run twice (section 14.4). */
    KeyedRequests: 0x2,
};
/** The longest client-instance id of ExtensionHello, in bytes. */
export const MAX_INSTANCE_ID_LEN = 64;
/** The shortest client-instance id allowed when `KeyedRequests` is asked for, in bytes. */
export const MIN_KEYED_INSTANCE_ID_LEN = 16;
/** The most entries one StreamResume may carry. */
export const MAX_RESUME_STREAMS = 1024;
/** The longest room name of a room stream, in UTF-8 bytes. */
export const MAX_ROOM_NAME_LEN = 255;
/** The wire codes of {@link StreamLossReason}. */
export const StreamLossReasonCode = {
    trimmed: 1,
    epochChanged: 2,
    ahead: 3,
    unknownStream: 4,
};
const EMPTY_REPLY_TYPES = {
    replyShutdown: MessageType.ReplyShutdown,
    replyInternalError: MessageType.ReplyInternalError,
    replySessionNotFound: MessageType.ReplySessionNotFound,
    replyMaxSessConnsReached: MessageType.ReplyMaxSessConnsReached,
    replySessionsDisabled: MessageType.ReplySessionsDisabled,
};
const EMPTY_REPLY_KINDS = [
    'replyShutdown',
    'replyInternalError',
    'replySessionNotFound',
    'replyMaxSessConnsReached',
    'replySessionsDisabled',
];
const ENCODINGS = ['binary', 'utf8', 'utf16'];
function encodingOffset(encoding) {
    switch (encoding) {
        case 'binary':
            return 0;
        case 'utf8':
            return 1;
        case 'utf16':
            return 2;
        default:
            throw new TypeError(`unknown payload encoding ${JSON.stringify(encoding)}`);
    }
}
/** Whether every byte is printable ASCII (32..=126). */
export function isPrintableAscii(bytes) {
    for (const b of bytes) {
        if (b < 32 || b > 126)
            return false;
    }
    return true;
}
/** Encodes a name (printable ASCII, at most `max` bytes) or throws. */
function nameBytes(name, what, max = 255) {
    if (typeof name !== 'string')
        throw new TypeError(`${what} must be a string`);
    if (name.length > max)
        throw new RangeError(`${what} is ${name.length} bytes long, at most ${max} allowed`);
    const out = new Uint8Array(name.length);
    for (let i = 0; i < name.length; i++) {
        const c = name.charCodeAt(i);
        if (c < 32 || c > 126) {
            throw new TypeError(`${what} ${JSON.stringify(name)} has a character outside printable ASCII (32..=126) at ${i}`);
        }
        out[i] = c;
    }
    return out;
}
function asciiString(bytes) {
    let s = '';
    for (const b of bytes)
        s += String.fromCharCode(b);
    return s;
}
function checkId(id) {
    if (!(id instanceof Uint8Array) || id.length !== 8)
        throw new TypeError('a request id must be a Uint8Array of 8 bytes');
}
function checkU32(value, what) {
    if (!Number.isInteger(value) || value < 0 || value > 0xffffffff)
        throw new RangeError(`${what} must be a u32`);
}
function checkU8(value, what) {
    if (!Number.isInteger(value) || value < 0 || value > 0xff)
        throw new RangeError(`${what} must be a u8`);
}
const U64_MAX = 0xffffffffffffffffn;
function checkU64(value, what) {
    if (typeof value !== 'bigint' || value < 0n || value > U64_MAX)
        throw new RangeError(`${what} must be a u64 (bigint)`);
}
function checkNonZeroU64(value, what) {
    checkU64(value, what);
    if (value === 0n)
        throw new RangeError(`${what} must not be 0`);
}
const utf8 = new TextEncoder();
const utf8Strict = new TextDecoder('utf-8', { fatal: true });
const utf8Lenient = new TextDecoder('utf-8');
const STREAM_KIND_SESSION = 1;
const STREAM_KIND_ROOM = 2;
/** A stream reference as its wire fields: the kind byte and the name bytes. */
function streamRefBytes(stream) {
    switch (stream.kind) {
        case 'session':
            return { kind: STREAM_KIND_SESSION, name: new Uint8Array(0) };
        case 'room': {
            if (typeof stream.room !== 'string')
                throw new TypeError('a room name must be a string');
            const name = utf8.encode(stream.room);
            // TextEncoder turns a lone surrogate into U+FFFD; a name that does not
            // survive the round trip would reach the server as another room.
            if (utf8Strict.decode(name) !== stream.room)
                throw new TypeError(`room name ${JSON.stringify(stream.room)} is not well-formed Unicode`);
            if (name.length === 0 || name.length > MAX_ROOM_NAME_LEN) {
                throw new RangeError(`a room name must be 1 to ${MAX_ROOM_NAME_LEN} UTF-8 bytes, got ${name.length}`);
            }
            return { kind: STREAM_KIND_ROOM, name };
        }
        default:
            throw new TypeError(`unknown stream kind ${JSON.stringify(stream.kind)}`);
    }
}
/** Writes `[kind][sl][name]` at `at`; returns the offset after it. */
function writeStreamRef(out, at, ref) {
    out[at] = ref.kind;
    out[at + 1] = ref.name.length;
    out.set(ref.name, at + 2);
    return at + 2 + ref.name.length;
}
function streamKey(stream) {
    return stream.kind === 'room' ? `room:${stream.room}` : 'session';
}
/**
 * The payload checks shared by the request and signal layouts: a UTF-16
 * payload has an even length and, where `utf16Min` says so, that many bytes;
 * other encodings need a name or a payload.
 */
function checkNamedPayload(what, enc, nameLen, payload, utf16Min) {
    if (enc === 2) {
        if (payload.length % 2 !== 0)
            throw new RangeError('a UTF-16 payload must have an even length');
        if (payload.length < utf16Min)
            throw new RangeError(`a UTF-16 ${what} needs a payload of at least ${utf16Min} bytes here`);
    }
    else if (nameLen === 0 && payload.length === 0) {
        throw new RangeError(`a ${what} needs a name or a payload`);
    }
}
/**
 * Encodes a message into a fresh buffer of exactly its size.
 *
 * @throws TypeError / RangeError when the fields do not make a valid message
 *   (a name outside printable ASCII or longer than 255 bytes, a UTF-16
 *   payload of odd length, a request or signal with neither name nor
 *   payload, a UTF-16 signal with less than 2 payload bytes, an id that is
 *   not 8 bytes, an empty error code or session key ...).
 */
export function encodeMessage(msg) {
    switch (msg.kind) {
        case 'acceptConf': {
            checkU8(msg.major, 'major version');
            checkU8(msg.minor, 'minor version');
            checkU32(msg.readTimeoutMs, 'read timeout');
            checkU32(msg.bufferSize, 'buffer size');
            const sub = nameBytes(msg.subProtocol, 'sub-protocol name', Number.MAX_SAFE_INTEGER);
            const out = new Uint8Array(11 + sub.length);
            const view = new DataView(out.buffer);
            out[0] = MessageType.AcceptConf;
            out[1] = msg.major;
            out[2] = msg.minor;
            view.setUint32(3, msg.readTimeoutMs, true);
            view.setUint32(7, msg.bufferSize, true);
            out.set(sub, 11);
            return out;
        }
        case 'request': {
            checkId(msg.id);
            const name = nameBytes(msg.name, 'request name');
            const enc = encodingOffset(msg.encoding);
            const payload = msg.payload;
            let pad = 0;
            if (enc === 2) {
                if (payload.length % 2 !== 0)
                    throw new RangeError('a UTF-16 payload must have an even length');
                pad = name.length % 2;
                if (name.length === 0 && payload.length < 2)
                    throw new RangeError('a UTF-16 request without a name needs a payload of at least 2 bytes');
            }
            else if (name.length === 0 && payload.length === 0) {
                throw new RangeError('a request needs a name or a payload');
            }
            const out = new Uint8Array(10 + name.length + pad + payload.length);
            out[0] = MessageType.RequestBinary + enc;
            out.set(msg.id, 1);
            out[9] = name.length;
            out.set(name, 10);
            out.set(payload, 10 + name.length + pad);
            return out;
        }
        case 'signal': {
            const name = nameBytes(msg.name, 'signal name');
            const enc = encodingOffset(msg.encoding);
            const payload = msg.payload;
            let pad = 0;
            if (enc === 2) {
                if (payload.length % 2 !== 0)
                    throw new RangeError('a UTF-16 payload must have an even length');
                if (payload.length < 2)
                    throw new RangeError('a UTF-16 signal needs a payload of at least 2 bytes');
                pad = name.length % 2;
            }
            else if (name.length === 0 && payload.length === 0) {
                throw new RangeError('a signal needs a name or a payload');
            }
            const out = new Uint8Array(2 + name.length + pad + payload.length);
            out[0] = MessageType.SignalBinary + enc;
            out[1] = name.length;
            out.set(name, 2);
            out.set(payload, 2 + name.length + pad);
            return out;
        }
        case 'reply': {
            checkId(msg.id);
            const enc = encodingOffset(msg.encoding);
            const payload = msg.payload;
            if (enc === 2) {
                if (payload.length % 2 !== 0)
                    throw new RangeError('a UTF-16 payload must have an even length');
                const out = new Uint8Array(10 + payload.length);
                out[0] = MessageType.ReplyUtf16;
                out.set(msg.id, 1);
                out.set(payload, 10);
                return out;
            }
            const out = new Uint8Array(9 + payload.length);
            out[0] = MessageType.ReplyBinary + enc;
            out.set(msg.id, 1);
            out.set(payload, 9);
            return out;
        }
        case 'replyError': {
            checkId(msg.id);
            const code = nameBytes(msg.code, 'error code');
            if (code.length === 0)
                throw new RangeError('an error code must not be empty');
            const text = utf8.encode(msg.message);
            const out = new Uint8Array(10 + code.length + text.length);
            out[0] = MessageType.ReplyError;
            out.set(msg.id, 1);
            out[9] = code.length;
            out.set(code, 10);
            out.set(text, 10 + code.length);
            return out;
        }
        case 'replyShutdown':
        case 'replyInternalError':
        case 'replySessionNotFound':
        case 'replyMaxSessConnsReached':
        case 'replySessionsDisabled':
        case 'requestCloseSession': {
            checkId(msg.id);
            const out = new Uint8Array(9);
            out[0] = msg.kind === 'requestCloseSession' ? MessageType.RequestCloseSession : EMPTY_REPLY_TYPES[msg.kind];
            out.set(msg.id, 1);
            return out;
        }
        case 'notifySessionCreated': {
            const json = utf8.encode(msg.sessionJson);
            if (json.length === 0)
                throw new RangeError('the session JSON must not be empty');
            const out = new Uint8Array(1 + json.length);
            out[0] = MessageType.NotifySessionCreated;
            out.set(json, 1);
            return out;
        }
        case 'notifySessionClosed':
            return Uint8Array.of(MessageType.NotifySessionClosed);
        case 'heartbeat':
            return Uint8Array.of(MessageType.Heartbeat);
        case 'requestRestoreSession': {
            checkId(msg.id);
            if (msg.key.length === 0)
                throw new RangeError('a session key must not be empty');
            const out = new Uint8Array(9 + msg.key.length);
            out[0] = MessageType.RequestRestoreSession;
            out.set(msg.id, 1);
            out.set(msg.key, 9);
            return out;
        }
        case 'extensionHello': {
            checkU32(msg.flags, 'feature flags');
            const instance = nameBytes(msg.instanceId, 'client-instance id', MAX_INSTANCE_ID_LEN);
            if ((msg.flags & ExtensionFlags.KeyedRequests) !== 0 && instance.length < MIN_KEYED_INSTANCE_ID_LEN) {
                throw new RangeError(`keyed requests need a client-instance id of at least ${MIN_KEYED_INSTANCE_ID_LEN} bytes`);
            }
            const out = new Uint8Array(6 + instance.length);
            const view = new DataView(out.buffer);
            out[0] = MessageType.ExtensionHello;
            view.setUint32(1, msg.flags, true);
            out[5] = instance.length;
            out.set(instance, 6);
            return out;
        }
        case 'extensionAccept': {
            checkU32(msg.flags, 'feature flags');
            checkU64(msg.ledgerEpoch, 'ledger epoch');
            const out = new Uint8Array(13);
            const view = new DataView(out.buffer);
            out[0] = MessageType.ExtensionAccept;
            view.setUint32(1, msg.flags, true);
            view.setBigUint64(5, msg.ledgerEpoch, true);
            return out;
        }
        case 'streamSignal': {
            const ref = streamRefBytes(msg.stream);
            checkNonZeroU64(msg.epoch, 'stream epoch');
            checkNonZeroU64(msg.offset, 'stream offset');
            const name = nameBytes(msg.name, 'signal name');
            const enc = encodingOffset(msg.encoding);
            checkNamedPayload('signal', enc, name.length, msg.payload, 2);
            const header = 20 + ref.name.length + name.length;
            const pad = enc === 2 ? header % 2 : 0;
            const out = new Uint8Array(header + pad + msg.payload.length);
            const view = new DataView(out.buffer);
            out[0] = MessageType.StreamSignalBinary + enc;
            let at = writeStreamRef(out, 1, ref);
            view.setBigUint64(at, msg.epoch, true);
            view.setBigUint64(at + 8, msg.offset, true);
            at += 16;
            out[at] = name.length;
            out.set(name, at + 1);
            out.set(msg.payload, header + pad);
            return out;
        }
        case 'streamResume': {
            checkId(msg.id);
            if (!Array.isArray(msg.entries))
                throw new TypeError('stream-resume entries must be an array');
            if (msg.entries.length > MAX_RESUME_STREAMS) {
                throw new RangeError(`a stream resume has at most ${MAX_RESUME_STREAMS} entries, got ${msg.entries.length}`);
            }
            const seen = new Set();
            const refs = msg.entries.map((entry) => {
                const key = streamKey(entry.stream);
                if (seen.has(key))
                    throw new RangeError(`stream ${key} is listed twice`);
                seen.add(key);
                checkU64(entry.epoch, 'stream epoch');
                checkU64(entry.offset, 'stream offset');
                return streamRefBytes(entry.stream);
            });
            const size = refs.reduce((sum, ref) => sum + 18 + ref.name.length, 11);
            const out = new Uint8Array(size);
            const view = new DataView(out.buffer);
            out[0] = MessageType.StreamResume;
            out.set(msg.id, 1);
            view.setUint16(9, msg.entries.length, true);
            let at = 11;
            msg.entries.forEach((entry, i) => {
                at = writeStreamRef(out, at, refs[i]);
                view.setBigUint64(at, entry.epoch, true);
                view.setBigUint64(at + 8, entry.offset, true);
                at += 16;
            });
            return out;
        }
        case 'streamLoss': {
            const ref = streamRefBytes(msg.stream);
            checkU64(msg.epoch, 'stream epoch');
            checkU64(msg.lostFrom, 'lost from');
            checkU64(msg.lostTo, 'lost to');
            checkU64(msg.next, 'next offset');
            const reason = Object.hasOwn(StreamLossReasonCode, msg.reason) ? StreamLossReasonCode[msg.reason] : undefined;
            if (reason === undefined)
                throw new TypeError(`unknown stream-loss reason ${JSON.stringify(msg.reason)}`);
            const out = new Uint8Array(36 + ref.name.length);
            const view = new DataView(out.buffer);
            out[0] = MessageType.StreamLoss;
            const at = writeStreamRef(out, 1, ref);
            view.setBigUint64(at, msg.epoch, true);
            view.setBigUint64(at + 8, msg.lostFrom, true);
            view.setBigUint64(at + 16, msg.lostTo, true);
            view.setBigUint64(at + 24, msg.next, true);
            out[at + 32] = reason;
            return out;
        }
        case 'keyedRequest': {
            checkId(msg.id);
            // ack < seq is the server's to judge (BAD_KEY), not the layout's.
            checkNonZeroU64(msg.seq, 'seq');
            checkU64(msg.epoch, 'ledger epoch');
            checkU64(msg.ack, 'ack');
            const name = nameBytes(msg.name, 'request name');
            const enc = encodingOffset(msg.encoding);
            checkNamedPayload('request', enc, name.length, msg.payload, name.length === 0 ? 2 : 0);
            const header = 34 + name.length;
            const pad = enc === 2 ? header % 2 : 0;
            const out = new Uint8Array(header + pad + msg.payload.length);
            const view = new DataView(out.buffer);
            out[0] = MessageType.KeyedRequestBinary + enc;
            out.set(msg.id, 1);
            view.setBigUint64(9, msg.seq, true);
            view.setBigUint64(17, msg.epoch, true);
            view.setBigUint64(25, msg.ack, true);
            out[33] = name.length;
            out.set(name, 34);
            out.set(msg.payload, header + pad);
            return out;
        }
        case 'replyOutcomeUnknown': {
            checkId(msg.id);
            const out = new Uint8Array(9);
            out[0] = MessageType.ReplyOutcomeUnknown;
            out.set(msg.id, 1);
            return out;
        }
        default: {
            const never = msg;
            throw new TypeError(`unknown message kind ${JSON.stringify(never.kind)}`);
        }
    }
}
function violation(what) {
    return new ProtocolError(`protocol violation: ${what}`);
}
function parseName(bytes, what) {
    if (!isPrintableAscii(bytes))
        throw violation(`${what} has a byte outside printable ASCII (32..=126)`);
    return asciiString(bytes);
}
/**
 * Reads a stream reference (`[kind][sl][name]`) at `at`, followed by at
 * least `after` more bytes of `what`.
 */
function parseStreamRef(bytes, at, after, what) {
    if (bytes.length < at + 2 + after)
        throw violation(`${what} cut short`);
    const kind = bytes[at];
    const sl = bytes[at + 1];
    const end = at + 2 + sl;
    if (bytes.length < end + after)
        throw violation(`${what} too short for its ${sl}-byte stream name`);
    switch (kind) {
        case STREAM_KIND_SESSION:
            if (sl !== 0)
                throw violation(`${what}: the session stream has no name, got ${sl} bytes`);
            return { stream: { kind: 'session' }, end };
        case STREAM_KIND_ROOM: {
            if (sl === 0)
                throw violation(`${what}: a room stream without a name`);
            let room;
            try {
                room = utf8Strict.decode(bytes.subarray(at + 2, end));
            }
            catch {
                throw violation(`${what}: the room name is not valid UTF-8`);
            }
            return { stream: { kind: 'room', room }, end };
        }
        default:
            throw violation(`${what}: unknown stream kind ${kind}`);
    }
}
const STREAM_LOSS_REASONS = ['trimmed', 'epochChanged', 'ahead', 'unknownStream'];
/**
 * Parses one message. The returned id, payload and key are views into
 * `bytes` (no copy).
 *
 * @throws ProtocolError for an empty message, an unknown type, a message
 *   shorter (or, for fixed-size types, longer) than its layout allows, a name
 *   or code with a byte outside 32..=126, a misaligned UTF-16 message or a
 *   non-zero padding byte, invalid UTF-8 in the session JSON.
 */
export function parseMessage(bytes) {
    const len = bytes.length;
    if (len === 0)
        throw violation('empty message');
    const type = bytes[0];
    switch (type) {
        case MessageType.ReplyError: {
            if (len < 11)
                throw violation(`error reply of ${len} bytes, at least 11 required`);
            const c = bytes[9];
            if (c === 0)
                throw violation('error reply with an empty error code');
            if (len < 10 + c)
                throw violation(`error reply too short for its ${c}-byte code`);
            return {
                kind: 'replyError',
                id: bytes.subarray(1, 9),
                code: parseName(bytes.subarray(10, 10 + c), 'error code'),
                message: utf8Lenient.decode(bytes.subarray(10 + c)),
            };
        }
        case MessageType.ReplyShutdown:
        case MessageType.ReplyInternalError:
        case MessageType.ReplySessionNotFound:
        case MessageType.ReplyMaxSessConnsReached:
        case MessageType.ReplySessionsDisabled:
            if (len !== 9)
                throw violation(`message of type ${type} must be exactly 9 bytes, got ${len}`);
            return { kind: EMPTY_REPLY_KINDS[type - 1], id: bytes.subarray(1, 9) };
        case MessageType.NotifySessionCreated: {
            if (len < 2)
                throw violation('session-created notification without a session');
            let sessionJson;
            try {
                sessionJson = utf8Strict.decode(bytes.subarray(1));
            }
            catch {
                throw violation('session-created notification is not valid UTF-8');
            }
            return { kind: 'notifySessionCreated', sessionJson };
        }
        case MessageType.NotifySessionClosed:
            if (len !== 1)
                throw violation(`session-closed notification must be exactly 1 byte, got ${len}`);
            return { kind: 'notifySessionClosed' };
        case MessageType.AcceptConf: {
            if (len < 11)
                throw violation(`accept-conf of ${len} bytes, at least 11 required`);
            const view = new DataView(bytes.buffer, bytes.byteOffset, len);
            return {
                kind: 'acceptConf',
                major: bytes[1],
                minor: bytes[2],
                readTimeoutMs: view.getUint32(3, true),
                bufferSize: view.getUint32(7, true),
                // Kept lenient, like the original peers: the client only compares it.
                subProtocol: utf8Lenient.decode(bytes.subarray(11)),
            };
        }
        case MessageType.RequestCloseSession:
            if (len !== 9)
                throw violation(`close-session request must be exactly 9 bytes, got ${len}`);
            return { kind: 'requestCloseSession', id: bytes.subarray(1, 9) };
        case MessageType.RequestRestoreSession:
            if (len < 10)
                throw violation(`restore-session request of ${len} bytes, at least 10 required`);
            return { kind: 'requestRestoreSession', id: bytes.subarray(1, 9), key: bytes.subarray(9) };
        case MessageType.Heartbeat:
            if (len !== 1)
                throw violation(`heartbeat must be exactly 1 byte, got ${len}`);
            return { kind: 'heartbeat' };
        case MessageType.SignalBinary:
        case MessageType.SignalUtf8: {
            if (len < 3)
                throw violation(`signal of ${len} bytes, at least 3 required`);
            const n = bytes[1];
            if (len < 2 + n)
                throw violation(`signal too short for its ${n}-byte name`);
            return {
                kind: 'signal',
                name: parseName(bytes.subarray(2, 2 + n), 'signal name'),
                encoding: ENCODINGS[type - MessageType.SignalBinary],
                payload: bytes.subarray(2 + n),
            };
        }
        case MessageType.SignalUtf16: {
            if (len < 4)
                throw violation(`UTF-16 signal of ${len} bytes, at least 4 required`);
            if (len % 2 !== 0)
                throw violation('UTF-16 signal of odd length');
            const n = bytes[1];
            const start = 2 + n + (n % 2);
            if (len < start + 2)
                throw violation(`UTF-16 signal too short for its ${n}-byte name and a 2-byte payload`);
            if (n % 2 === 1 && bytes[2 + n] !== 0)
                throw violation('UTF-16 signal with a non-zero padding byte');
            return {
                kind: 'signal',
                name: parseName(bytes.subarray(2, 2 + n), 'signal name'),
                encoding: 'utf16',
                payload: bytes.subarray(start),
            };
        }
        case MessageType.RequestBinary:
        case MessageType.RequestUtf8: {
            if (len < 11)
                throw violation(`request of ${len} bytes, at least 11 required`);
            const n = bytes[9];
            if (len < 10 + n)
                throw violation(`request too short for its ${n}-byte name`);
            return {
                kind: 'request',
                id: bytes.subarray(1, 9),
                name: parseName(bytes.subarray(10, 10 + n), 'request name'),
                encoding: ENCODINGS[type - MessageType.RequestBinary],
                payload: bytes.subarray(10 + n),
            };
        }
        case MessageType.RequestUtf16: {
            if (len < 11)
                throw violation(`UTF-16 request of ${len} bytes, at least 11 required`);
            if (len % 2 !== 0)
                throw violation('UTF-16 request of odd length');
            const n = bytes[9];
            const start = 10 + n + (n % 2);
            if (len < start)
                throw violation(`UTF-16 request too short for its ${n}-byte name`);
            if (n === 0 && len < start + 2)
                throw violation('UTF-16 request without a name needs at least 2 payload bytes');
            if (n % 2 === 1 && bytes[10 + n] !== 0)
                throw violation('UTF-16 request with a non-zero padding byte');
            return {
                kind: 'request',
                id: bytes.subarray(1, 9),
                name: parseName(bytes.subarray(10, 10 + n), 'request name'),
                encoding: 'utf16',
                payload: bytes.subarray(start),
            };
        }
        case MessageType.ReplyBinary:
        case MessageType.ReplyUtf8:
            if (len < 9)
                throw violation(`reply of ${len} bytes, at least 9 required`);
            return {
                kind: 'reply',
                id: bytes.subarray(1, 9),
                encoding: ENCODINGS[type - MessageType.ReplyBinary],
                payload: bytes.subarray(9),
            };
        case MessageType.ReplyUtf16:
            if (len < 10)
                throw violation(`UTF-16 reply of ${len} bytes, at least 10 required`);
            if (len % 2 !== 0)
                throw violation('UTF-16 reply of odd length');
            if (bytes[9] !== 0)
                throw violation('UTF-16 reply with a non-zero padding byte');
            return { kind: 'reply', id: bytes.subarray(1, 9), encoding: 'utf16', payload: bytes.subarray(10) };
        case MessageType.ReplyOutcomeUnknown:
            if (len !== 9)
                throw violation(`outcome-unknown reply must be exactly 9 bytes, got ${len}`);
            return { kind: 'replyOutcomeUnknown', id: bytes.subarray(1, 9) };
        case MessageType.ExtensionHello: {
            if (len < 6)
                throw violation(`extension hello of ${len} bytes, at least 6 required`);
            const il = bytes[5];
            if (il > MAX_INSTANCE_ID_LEN)
                throw violation(`client-instance id of ${il} bytes, at most ${MAX_INSTANCE_ID_LEN} allowed`);
            if (len !== 6 + il)
                throw violation(`extension hello with a ${il}-byte instance id must be ${6 + il} bytes, got ${len}`);
            const flags = new DataView(bytes.buffer, bytes.byteOffset, len).getUint32(1, true);
            if ((flags & ExtensionFlags.KeyedRequests) !== 0 && il < MIN_KEYED_INSTANCE_ID_LEN) {
                throw violation(`keyed requests asked for with a ${il}-byte client-instance id, at least ${MIN_KEYED_INSTANCE_ID_LEN} required`);
            }
            return { kind: 'extensionHello', flags, instanceId: parseName(bytes.subarray(6), 'client-instance id') };
        }
        case MessageType.ExtensionAccept: {
            if (len !== 13)
                throw violation(`extension accept must be exactly 13 bytes, got ${len}`);
            const view = new DataView(bytes.buffer, bytes.byteOffset, len);
            return { kind: 'extensionAccept', flags: view.getUint32(1, true), ledgerEpoch: view.getBigUint64(5, true) };
        }
        case MessageType.StreamSignalBinary:
        case MessageType.StreamSignalUtf8:
        case MessageType.StreamSignalUtf16: {
            const { stream, end } = parseStreamRef(bytes, 1, 17, 'stream signal');
            const view = new DataView(bytes.buffer, bytes.byteOffset, len);
            const epoch = view.getBigUint64(end, true);
            const offset = view.getBigUint64(end + 8, true);
            if (epoch === 0n)
                throw violation('stream signal with epoch 0');
            if (offset === 0n)
                throw violation('stream signal with offset 0');
            const n = bytes[end + 16];
            const header = end + 17 + n;
            if (len < header)
                throw violation(`stream signal too short for its ${n}-byte name`);
            const name = parseName(bytes.subarray(end + 17, header), 'signal name');
            const encoding = ENCODINGS[type - MessageType.StreamSignalBinary];
            let start = header;
            if (encoding === 'utf16') {
                if (len % 2 !== 0)
                    throw violation('UTF-16 stream signal of odd length');
                start = header + (header % 2);
                if (len < start + 2)
                    throw violation('UTF-16 stream signal without a 2-byte payload');
                if (start !== header && bytes[header] !== 0)
                    throw violation('UTF-16 stream signal with a non-zero padding byte');
            }
            else if (n === 0 && len === header) {
                throw violation('stream signal with neither name nor payload');
            }
            return { kind: 'streamSignal', stream, epoch, offset, name, encoding, payload: bytes.subarray(start) };
        }
        case MessageType.StreamResume: {
            if (len < 11)
                throw violation(`stream resume of ${len} bytes, at least 11 required`);
            const view = new DataView(bytes.buffer, bytes.byteOffset, len);
            const count = view.getUint16(9, true);
            if (count > MAX_RESUME_STREAMS)
                throw violation(`stream resume with ${count} entries, at most ${MAX_RESUME_STREAMS} allowed`);
            const entries = [];
            const seen = new Set();
            let at = 11;
            for (let i = 0; i < count; i++) {
                const { stream, end } = parseStreamRef(bytes, at, 16, `stream resume entry ${i}`);
                const key = streamKey(stream);
                if (seen.has(key))
                    throw violation(`stream resume lists ${key} twice`);
                seen.add(key);
                entries.push({ stream, epoch: view.getBigUint64(end, true), offset: view.getBigUint64(end + 8, true) });
                at = end + 16;
            }
            if (at !== len)
                throw violation(`stream resume with ${len - at} bytes after its ${count} entries`);
            return { kind: 'streamResume', id: bytes.subarray(1, 9), entries };
        }
        case MessageType.StreamLoss: {
            const { stream, end } = parseStreamRef(bytes, 1, 33, 'stream loss');
            if (len !== end + 33)
                throw violation(`stream loss must be exactly ${end + 33} bytes, got ${len}`);
            const view = new DataView(bytes.buffer, bytes.byteOffset, len);
            const reason = STREAM_LOSS_REASONS[bytes[end + 32] - 1];
            if (reason === undefined)
                throw violation(`stream loss with unknown reason ${bytes[end + 32]}`);
            return {
                kind: 'streamLoss',
                stream,
                epoch: view.getBigUint64(end, true),
                lostFrom: view.getBigUint64(end + 8, true),
                lostTo: view.getBigUint64(end + 16, true),
                next: view.getBigUint64(end + 24, true),
                reason,
            };
        }
        case MessageType.KeyedRequestBinary:
        case MessageType.KeyedRequestUtf8:
        case MessageType.KeyedRequestUtf16: {
            if (len < 35)
                throw violation(`keyed request of ${len} bytes, at least 35 required`);
            const n = bytes[33];
            const header = 34 + n;
            if (len < header)
                throw violation(`keyed request too short for its ${n}-byte name`);
            const encoding = ENCODINGS[type - MessageType.KeyedRequestBinary];
            let start = header;
            if (encoding === 'utf16') {
                if (len % 2 !== 0)
                    throw violation('UTF-16 keyed request of odd length');
                start = header + (header % 2);
                if (len < start)
                    throw violation(`UTF-16 keyed request too short for its ${n}-byte name`);
                if (n === 0 && len < start + 2)
                    throw violation('UTF-16 keyed request without a name needs at least 2 payload bytes');
                if (start !== header && bytes[header] !== 0)
                    throw violation('UTF-16 keyed request with a non-zero padding byte');
            }
            const view = new DataView(bytes.buffer, bytes.byteOffset, len);
            const seq = view.getBigUint64(9, true);
            if (seq === 0n)
                throw violation('keyed request with seq 0 (sequence numbers start at 1)');
            return {
                kind: 'keyedRequest',
                id: bytes.subarray(1, 9),
                seq,
                epoch: view.getBigUint64(17, true),
                ack: view.getBigUint64(25, true),
                name: parseName(bytes.subarray(34, header), 'request name'),
                encoding,
                payload: bytes.subarray(start),
            };
        }
        default:
            throw violation(`unknown message type ${type}`);
    }
}
/**
 * For a v2.1 message, the feature flag a connection must have been granted
 * for it to be allowed ({@link ExtensionFlags}), or `0` for the opt-in
 * messages themselves (ExtensionHello, ExtensionAccept), which need the
 * opt-in only. `undefined` for a v2.0 message.
 *
 * A peer closes with 1002 on an extension message that is not allowed on
 * the connection (docs/protocol.md 14.1); the parser cannot tell.
 */
export function extensionFeatureOf(msg) {
    switch (msg.kind) {
        case 'extensionHello':
        case 'extensionAccept':
            return 0;
        case 'streamSignal':
        case 'streamResume':
        case 'streamLoss':
            return ExtensionFlags.Streams;
        case 'keyedRequest':
        case 'replyOutcomeUnknown':
            return ExtensionFlags.KeyedRequests;
        default:
            return undefined;
    }
}
/** Which side may send a message kind. */
export function sentByServer(msg) {
    switch (msg.kind) {
        case 'request':
        case 'requestCloseSession':
        case 'requestRestoreSession':
        case 'heartbeat':
        case 'extensionHello':
        case 'streamResume':
        case 'keyedRequest':
            return false;
        default:
            return true;
    }
}
