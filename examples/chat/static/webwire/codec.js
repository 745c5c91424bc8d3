// GENERATED FILE, do not edit: clients/typescript/dist/codec.js (npm run build in
// clients/typescript), copied by examples/chat/e2e/sync-client.mjs, which
// regenerates it. The chat server compiles it in; its e2e test fails when
// it differs from a fresh build.
/**
 * The webwire v2.0 wire format (docs/protocol.md, sections 4 and 5): one encoder and one
 * parser for every message type, with all layout checks. Sans-IO: bytes in,
 * bytes out.
 *
 * {@link encodeMessage} refuses (with `TypeError` / `RangeError`) to build a
 * message the layout does not allow; {@link parseMessage} rejects such bytes
 * with a {@link ProtocolError}.
 *
 * @module
 */
import { ProtocolError } from './errors.js';
/** Type bytes of every webwire v2.0 message. */
export const MessageType = {
    ReplyError: 0,
    ReplyShutdown: 1,
    ReplyInternalError: 2,
    ReplySessionNotFound: 3,
    ReplyMaxSessConnsReached: 4,
    ReplySessionsDisabled: 5,
    NotifySessionCreated: 21,
    NotifySessionClosed: 22,
    AcceptConf: 23,
    RequestCloseSession: 31,
    RequestRestoreSession: 32,
    Heartbeat: 33,
    SignalBinary: 63,
    SignalUtf8: 64,
    SignalUtf16: 65,
    RequestBinary: 127,
    RequestUtf8: 128,
    RequestUtf16: 129,
    ReplyBinary: 191,
    ReplyUtf8: 192,
    ReplyUtf16: 193,
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
const utf8 = new TextEncoder();
const utf8Strict = new TextDecoder('utf-8', { fatal: true });
const utf8Lenient = new TextDecoder('utf-8');
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
        default:
            throw violation(`unknown message type ${type}`);
    }
}
/** Which side may send a message kind. */
export function sentByServer(msg) {
    switch (msg.kind) {
        case 'request':
        case 'requestCloseSession':
        case 'requestRestoreSession':
        case 'heartbeat':
            return false;
        default:
            return true;
    }
}
