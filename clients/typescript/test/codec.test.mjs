// Codec: byte-exact against the original Go implementation's vectors and
// the worked examples of docs/protocol.md (sections 12 and 14.7); malformed
// input is rejected with ProtocolError.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { encodeMessage, parseMessage, ProtocolError, MessageType } from '../dist/index.js';
import {
  ExtensionFlags,
  MAX_RESUME_STREAMS,
  StreamLossReasonCode,
  extensionFeatureOf,
  sentByServer,
} from '../dist/codec.js';

const vectors = JSON.parse(readFileSync(new URL('./fixtures/webwire-v2.json', import.meta.url), 'utf8'));

const fromHex = (hex) => Uint8Array.from(Buffer.from(hex, 'hex'));
const toHex = (bytes) => Buffer.from(bytes).toString('hex');
const dec = (text) => Uint8Array.from(text.trim().split(/\s+/).map(Number));

const EMPTY_KINDS = {
  ReplyShutdown: 'replyShutdown',
  ReplyInternalError: 'replyInternalError',
  ReplySessionNotFound: 'replySessionNotFound',
  ReplyMaxSessConnsReached: 'replyMaxSessConnsReached',
  ReplySessionsDisabled: 'replySessionsDisabled',
};

/** The message the vector's fields describe, in this codec's terms. */
function messageOf(v) {
  const f = v.fields;
  switch (v.kind) {
    case 'Request':
      return { kind: 'request', id: fromHex(f.id_hex), name: f.name, encoding: f.encoding, payload: fromHex(f.payload_hex) };
    case 'Signal':
      return { kind: 'signal', name: f.name, encoding: f.encoding, payload: fromHex(f.payload_hex) };
    case 'Reply':
      return { kind: 'reply', id: fromHex(f.id_hex), encoding: f.encoding, payload: fromHex(f.payload_hex) };
    case 'ReplyError':
      return { kind: 'replyError', id: fromHex(f.id_hex), code: f.code, message: f.message };
    case 'NotifySessionCreated':
      return { kind: 'notifySessionCreated', sessionJson: f.session_json };
    case 'NotifySessionClosed':
      return { kind: 'notifySessionClosed' };
    case 'RequestRestoreSession':
      return { kind: 'requestRestoreSession', id: fromHex(f.id_hex), key: new TextEncoder().encode(f.key) };
    case 'RequestCloseSession':
      return { kind: 'requestCloseSession', id: fromHex(f.id_hex) };
    case 'Heartbeat':
      return { kind: 'heartbeat' };
    case 'AcceptConf':
      return {
        kind: 'acceptConf',
        major: f.major,
        minor: f.minor,
        readTimeoutMs: f.read_timeout_ms,
        bufferSize: f.buffer_size,
        subProtocol: f.sub_protocol,
      };
    default:
      if (EMPTY_KINDS[v.kind]) return { kind: EMPTY_KINDS[v.kind], id: fromHex(f.id_hex) };
      throw new Error(`unknown vector kind ${v.kind}`);
  }
}

/** Uint8Arrays (views) as hex so that deepEqual compares contents. */
function normalize(msg) {
  const out = {};
  for (const [k, v] of Object.entries(msg)) out[k] = v instanceof Uint8Array ? toHex(v) : v;
  return out;
}

test('the fixture is the shared vector file (41 messages)', () => {
  assert.equal(vectors.vectors.length, 41);
});

for (const v of vectors.vectors) {
  test(`vector: ${v.kind} ${v.description ?? ''}`.trim(), () => {
    const msg = messageOf(v);
    assert.equal(toHex(encodeMessage(msg)), v.hex, 'encoding');
    const parsed = parseMessage(fromHex(v.hex));
    assert.deepEqual(normalize(parsed), normalize(msg), 'parsing');
    // What the original parser read back agrees with ours.
    const orig = v.decoded_by_original;
    assert.equal(fromHex(v.hex)[0], orig.type);
    if (orig.id_hex !== undefined) assert.equal(toHex(parsed.id), orig.id_hex);
    if ('payload' in parsed && orig.payload_hex !== undefined) assert.equal(toHex(parsed.payload), orig.payload_hex);
    if (parsed.kind === 'replyError') {
      assert.equal(parsed.code, orig.name);
      assert.equal(toHex(new TextEncoder().encode(parsed.message)), orig.payload_hex);
    }
    if (parsed.kind === 'notifySessionCreated') assert.equal(toHex(new TextEncoder().encode(parsed.sessionJson)), orig.payload_hex);
    if (parsed.kind === 'requestRestoreSession') assert.equal(toHex(parsed.key), orig.payload_hex);
    if ('name' in parsed && orig.name !== undefined) assert.equal(parsed.name, orig.name);
    if (parsed.kind === 'acceptConf') {
      assert.equal(parsed.readTimeoutMs, orig.read_timeout_ms);
      assert.equal(parsed.bufferSize, orig.buffer_size);
      assert.equal(parsed.subProtocol, orig.sub_protocol);
    }
  });
}

for (const v of vectors.written_but_rejected_by_original_parser) {
  test(`rejected vector: ${v.description}`, () => {
    assert.throws(() => parseMessage(fromHex(v.hex)), ProtocolError);
    // ... and this encoder refuses to build it.
    assert.throws(
      () => encodeMessage({ kind: 'signal', name: 'abc', encoding: 'utf16', payload: new Uint8Array(0) }),
      RangeError,
    );
  });
}

const id = (n) => {
  const b = new Uint8Array(8);
  new DataView(b.buffer).setUint32(0, n, true);
  return b;
};
const ascii = (s) => new TextEncoder().encode(s);

const EXAMPLES = [
  [
    'AcceptConf v2.0, read timeout 60000 ms, buffer 8192, no sub-protocol',
    { kind: 'acceptConf', major: 2, minor: 0, readTimeoutMs: 60000, bufferSize: 8192, subProtocol: '' },
    '23 2 0 96 234 0 0 0 32 0 0',
  ],
  [
    'UTF-8 request, id 1, name echo, payload hi',
    { kind: 'request', id: id(1), name: 'echo', encoding: 'utf8', payload: ascii('hi') },
    '128 1 0 0 0 0 0 0 0 4 101 99 104 111 104 105',
  ],
  [
    'UTF-16 request, id 2, name abc, payload hi',
    { kind: 'request', id: id(2), name: 'abc', encoding: 'utf16', payload: Uint8Array.of(104, 0, 105, 0) },
    '129 2 0 0 0 0 0 0 0 3 97 98 99 0 104 0 105 0',
  ],
  [
    'binary reply to id 1, payload 0xff',
    { kind: 'reply', id: id(1), encoding: 'binary', payload: Uint8Array.of(255) },
    '191 1 0 0 0 0 0 0 0 255',
  ],
  [
    'UTF-16 reply to id 2, payload hi',
    { kind: 'reply', id: id(2), encoding: 'utf16', payload: Uint8Array.of(104, 0, 105, 0) },
    '193 2 0 0 0 0 0 0 0 0 104 0 105 0',
  ],
  [
    'error reply to id 1, code E1, message bad',
    { kind: 'replyError', id: id(1), code: 'E1', message: 'bad' },
    '0 1 0 0 0 0 0 0 0 2 69 49 98 97 100',
  ],
  ['internal-error reply to id 1', { kind: 'replyInternalError', id: id(1) }, '2 1 0 0 0 0 0 0 0'],
  ['UTF-8 signal, name ab, payload x', { kind: 'signal', name: 'ab', encoding: 'utf8', payload: ascii('x') }, '64 2 97 98 120'],
  ['UTF-16 signal, no name, payload x', { kind: 'signal', name: '', encoding: 'utf16', payload: Uint8Array.of(120, 0) }, '65 0 120 0'],
  ['heartbeat', { kind: 'heartbeat' }, '33'],
];

for (const [what, msg, bytes] of EXAMPLES) {
  test(`docs/protocol.md example: ${what}`, () => {
    assert.deepEqual([...encodeMessage(msg)], [...dec(bytes)]);
    assert.deepEqual(normalize(parseMessage(dec(bytes))), normalize(msg));
  });
}

const ID = '1 2 3 4 5 6 7 8';
const MALFORMED = [
  ['empty message', ''],
  ['unknown type 7', '7 1 2 3 4 5 6 7 8'],
  ['unknown type 20', '20'],
  ['unknown type 26', '26 1 0 0 0 0 0 0 0 0 0 0 0'],
  ['unknown type 36', '36'],
  ['unknown type 62', '62 1 97 120'],
  ['unknown type 69', '69 1 0 1 2 3 4 5 6 7 8 1 0 0 0 0 0 0 0 0 120'],
  ['unknown type 133', `133 ${ID} 0 1`],
  ['unknown type 190', `190 ${ID}`],
  ['unknown type 194', `194 ${ID} 0`],
  ['unknown type 255', '255'],
  // error reply
  ['error reply shorter than 11', `0 ${ID} 1`],
  ['error reply with empty code', `0 ${ID} 0 65`],
  ['error reply shorter than its code', `0 ${ID} 3 65 66`],
  ['error reply code with a control byte', `0 ${ID} 2 65 10`],
  ['error reply code with byte 127', `0 ${ID} 1 127`],
  ['error reply code with a non-ASCII byte', `0 ${ID} 1 200`],
  // fixed-size replies and notifications
  ...[1, 2, 3, 4, 5].flatMap((t) => [
    [`type ${t} of 8 bytes`, `${t} 1 2 3 4 5 6 7`],
    [`type ${t} of 10 bytes`, `${t} ${ID} 0`],
  ]),
  ['session-created without JSON', '21'],
  ['session-created with invalid UTF-8', '21 123 255 125'],
  ['session-closed of 2 bytes', '22 0'],
  ['heartbeat of 2 bytes', '33 0'],
  ['close-session request of 8 bytes', '31 1 2 3 4 5 6 7'],
  ['close-session request of 10 bytes', `31 ${ID} 0`],
  ['restore request without a key', `32 ${ID}`],
  // accept-conf
  ['accept-conf of 10 bytes', '23 2 0 96 234 0 0 0 32 0'],
  // signals, binary and UTF-8
  ['binary signal of 2 bytes', '63 0'],
  ['UTF-8 signal of 2 bytes', '64 1'],
  ['signal shorter than its name', '64 3 97 98'],
  ['signal name with a control byte', '64 2 97 9 120'],
  ['signal name with a non-ASCII byte', '63 1 255 1'],
  // signals, UTF-16
  ['UTF-16 signal of 3 bytes', '65 0 120'],
  ['UTF-16 signal of odd length', '65 0 120 0 121'],
  ['UTF-16 signal without payload, even name', '65 2 97 98'],
  ['UTF-16 signal without payload, odd name + padding', '65 3 97 98 99 0'],
  ['UTF-16 signal, odd name without padding (misaligned)', '65 1 97 120 0'],
  ['UTF-16 signal with non-zero padding', '65 1 97 7 120 0'],
  ['UTF-16 signal shorter than its name', '65 5 97 98'],
  ['UTF-16 signal name with a bad byte', '65 2 97 31 120 0'],
  // requests, binary and UTF-8
  ['binary request of 10 bytes', `127 ${ID} 0`],
  ['UTF-8 request of 10 bytes', `128 ${ID} 0`],
  ['request shorter than its name', `128 ${ID} 4 101 99 104`],
  ['request name with a DEL byte', `127 ${ID} 1 127`],
  // requests, UTF-16
  ['UTF-16 request of 10 bytes', `129 ${ID} 0`],
  ['UTF-16 request of odd length', `129 ${ID} 0 104 0 105`],
  ['UTF-16 request without name and 1 payload byte', `129 ${ID} 0 104`],
  ['UTF-16 request shorter than its name', `129 ${ID} 4 97 98`],
  ['UTF-16 request, odd name and no padding byte', `129 ${ID} 1 97`],
  ['UTF-16 request, odd name without padding (misaligned)', `129 ${ID} 1 97 104 0 105`],
  ['UTF-16 request with non-zero padding', `129 ${ID} 3 97 98 99 1 104 0`],
  ['UTF-16 request name with a bad byte', `129 ${ID} 2 97 0 104 0`],
  // replies
  ['binary reply of 8 bytes', '191 1 2 3 4 5 6 7'],
  ['UTF-8 reply of 1 byte', '192'],
  ['UTF-16 reply of 9 bytes (no padding byte)', `193 ${ID}`],
  ['UTF-16 reply of odd length', `193 ${ID} 0 104`],
  ['UTF-16 reply with non-zero padding', `193 ${ID} 1 104 0`],
];

for (const [what, bytes] of MALFORMED) {
  test(`malformed: ${what}`, () => {
    assert.throws(() => parseMessage(dec(bytes)), (e) => e instanceof ProtocolError && /protocol violation/.test(e.message));
  });
}

test('valid edge cases parse', () => {
  // UTF-16 request with a name and an empty payload.
  assert.deepEqual(normalize(parseMessage(dec(`129 ${ID} 2 97 98`))), {
    kind: 'request', id: '0102030405060708', name: 'ab', encoding: 'utf16', payload: '',
  });
  // Binary request with a name and an empty payload; with 255-byte name.
  const long = 'n'.repeat(255);
  const req = encodeMessage({ kind: 'request', id: id(9), name: long, encoding: 'binary', payload: new Uint8Array(0) });
  assert.equal(req.length, 10 + 255);
  assert.equal(parseMessage(req).name, long);
  // Signal with a name and empty payload.
  assert.deepEqual(normalize(parseMessage(dec('64 1 97'))), { kind: 'signal', name: 'a', encoding: 'utf8', payload: '' });
  // Error reply with empty message; restore with odd key bytes is not a violation.
  assert.equal(parseMessage(dec(`0 ${ID} 1 65`)).message, '');
  assert.equal(toHex(parseMessage(dec(`32 ${ID} 0 255`)).key), '00ff');
  // Empty replies of each encoding.
  assert.equal(parseMessage(dec(`192 ${ID}`)).payload.length, 0);
  assert.equal(parseMessage(dec(`193 ${ID} 0`)).payload.length, 0);
  // Accept-conf with a sub-protocol.
  assert.equal(parseMessage(encodeMessage({ kind: 'acceptConf', major: 2, minor: 0, readTimeoutMs: 1, bufferSize: 32, subProtocol: 'x y' })).subProtocol, 'x y');
});

test('parsed ids and payloads are views of the input', () => {
  const bytes = dec('191 1 0 0 0 0 0 0 0 7 8');
  const msg = parseMessage(bytes);
  assert.equal(msg.payload.buffer, bytes.buffer);
  assert.equal(msg.payload.byteOffset, 9);
});

test('parser works on a view with an offset into a larger buffer', () => {
  const big = new Uint8Array(64);
  const msg = dec('23 2 0 184 11 0 0 0 0 16 0 105 110');
  big.set(msg, 13);
  const parsed = parseMessage(big.subarray(13, 13 + msg.length));
  assert.equal(parsed.readTimeoutMs, 3000);
  assert.equal(parsed.bufferSize, 1048576);
  assert.equal(parsed.subProtocol, 'in');
});

test('every type byte the table lists parses or is rejected by layout, the rest as unknown', () => {
  const known = new Set(Object.values(MessageType));
  for (let t = 0; t < 256; t++) {
    if (known.has(t)) continue;
    assert.throws(() => parseMessage(Uint8Array.of(t, ...new Array(20).fill(65))), /unknown message type/);
  }
});

const ENCODE_ERRORS = [
  ['request name with a non-ASCII character', { kind: 'request', id: id(1), name: 'é', encoding: 'utf8', payload: ascii('x') }, TypeError],
  ['request name with a control character', { kind: 'request', id: id(1), name: 'a\n', encoding: 'utf8', payload: ascii('x') }, TypeError],
  ['request name of 256 bytes', { kind: 'request', id: id(1), name: 'n'.repeat(256), encoding: 'utf8', payload: ascii('x') }, RangeError],
  ['request without name and payload', { kind: 'request', id: id(1), name: '', encoding: 'binary', payload: new Uint8Array(0) }, RangeError],
  ['UTF-16 request without name, 0 bytes', { kind: 'request', id: id(1), name: '', encoding: 'utf16', payload: new Uint8Array(0) }, RangeError],
  ['UTF-16 request with odd payload', { kind: 'request', id: id(1), name: 'a', encoding: 'utf16', payload: Uint8Array.of(1) }, RangeError],
  ['request id of 7 bytes', { kind: 'request', id: new Uint8Array(7), name: 'a', encoding: 'utf8', payload: ascii('x') }, TypeError],
  ['unknown encoding', { kind: 'request', id: id(1), name: 'a', encoding: 'latin1', payload: ascii('x') }, TypeError],
  ['signal without name and payload', { kind: 'signal', name: '', encoding: 'utf8', payload: new Uint8Array(0) }, RangeError],
  ['UTF-16 signal with 0 payload bytes', { kind: 'signal', name: 'a', encoding: 'utf16', payload: new Uint8Array(0) }, RangeError],
  ['UTF-16 signal with odd payload', { kind: 'signal', name: '', encoding: 'utf16', payload: Uint8Array.of(1, 2, 3) }, RangeError],
  ['UTF-16 reply with odd payload', { kind: 'reply', id: id(1), encoding: 'utf16', payload: Uint8Array.of(1) }, RangeError],
  ['error reply with empty code', { kind: 'replyError', id: id(1), code: '', message: 'm' }, RangeError],
  ['error reply code with a space-less control char', { kind: 'replyError', id: id(1), code: 'A\u0000', message: '' }, TypeError],
  ['restore request with empty key', { kind: 'requestRestoreSession', id: id(1), key: new Uint8Array(0) }, RangeError],
  ['accept-conf read timeout above u32', { kind: 'acceptConf', major: 2, minor: 0, readTimeoutMs: 2 ** 32, bufferSize: 1, subProtocol: '' }, RangeError],
  ['session-created with empty JSON', { kind: 'notifySessionCreated', sessionJson: '' }, RangeError],
];

for (const [what, msg, type] of ENCODE_ERRORS) {
  test(`encoder refuses: ${what}`, () => {
    assert.throws(() => encodeMessage(msg), type);
  });
}

test('UTF-16 padding: odd names get one zero byte, even names none', () => {
  for (let n = 0; n <= 6; n++) {
    const name = 'x'.repeat(n);
    const req = encodeMessage({ kind: 'request', id: id(1), name, encoding: 'utf16', payload: Uint8Array.of(65, 0) });
    assert.equal(req.length % 2, 0, `request, name ${n}`);
    assert.equal(req.length, 10 + n + (n % 2) + 2);
    if (n % 2) assert.equal(req[10 + n], 0);
    const sig = encodeMessage({ kind: 'signal', name, encoding: 'utf16', payload: Uint8Array.of(65, 0) });
    assert.equal(sig.length % 2, 0, `signal, name ${n}`);
    assert.equal(sig.length, 2 + n + (n % 2) + 2);
    assert.equal(parseMessage(req).name, name);
    assert.deepEqual([...parseMessage(sig).payload], [65, 0]);
  }
});

// ---------------------------------------------------------------------------
// Version 2.1 (docs/protocol.md section 14)
// ---------------------------------------------------------------------------

const ID8 = Uint8Array.of(1, 2, 3, 4, 5, 6, 7, 8);
const LEDGER = 0x1122334455667788n;
const EPOCH = 0xa1a2a3a4a5a6a7a8n;
const LOBBY = { kind: 'room', room: 'lobby' };
const SESSION = { kind: 'session' };
const utf16 = (text) => {
  const out = new Uint8Array(text.length * 2);
  for (let i = 0; i < text.length; i++) new DataView(out.buffer).setUint16(2 * i, text.charCodeAt(i), true);
  return out;
};

/** Compares messages with Uint8Array fields (also nested) by content. */
function deepNormalize(value) {
  if (value instanceof Uint8Array) return toHex(value);
  if (Array.isArray(value)) return value.map(deepNormalize);
  if (value !== null && typeof value === 'object') {
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, deepNormalize(v)]));
  }
  return value;
}

/** Bytes from parts: numbers (bytes), strings (ASCII), arrays and Uint8Arrays. */
function bytesOf(...parts) {
  const out = [];
  for (const part of parts) {
    if (typeof part === 'number') out.push(part);
    else if (typeof part === 'string') out.push(...new TextEncoder().encode(part));
    else out.push(...part);
  }
  return Uint8Array.from(out);
}
const u64 = (value) => {
  const b = new Uint8Array(8);
  new DataView(b.buffer).setBigUint64(0, BigInt(value), true);
  return b;
};
const u32 = (value) => {
  const b = new Uint8Array(4);
  new DataView(b.buffer).setUint32(0, value, true);
  return b;
};
const u16 = (value) => Uint8Array.of(value & 0xff, value >> 8);

/** The rows of docs/protocol.md section 14.7, with the message each one shows. */
const EXAMPLES_21 = [
  [
    'AcceptConf, version 2.1, read timeout 60000 ms, buffer 8192, no sub-protocol',
    { kind: 'acceptConf', major: 2, minor: 1, readTimeoutMs: 60000, bufferSize: 8192, subProtocol: '' },
  ],
  [
    'ExtensionHello, flags 3 (STREAMS, KEYED_REQUESTS), instance id `tab-7f3a9c1e5b2d`',
    { kind: 'extensionHello', flags: 3, instanceId: 'tab-7f3a9c1e5b2d' },
  ],
  ['ExtensionHello, flags 1 (STREAMS), no instance id', { kind: 'extensionHello', flags: 1, instanceId: '' }],
  ['ExtensionAccept, flags 3, ledger epoch `0x1122334455667788`', { kind: 'extensionAccept', flags: 3, ledgerEpoch: LEDGER }],
  ['ExtensionAccept, flags 1, ledger epoch 0 (no keyed requests)', { kind: 'extensionAccept', flags: 1, ledgerEpoch: 0n }],
  [
    'StreamSignal UTF-8, room `lobby`, offset 7, name `msg`, payload `hi`',
    { kind: 'streamSignal', stream: LOBBY, epoch: EPOCH, offset: 7n, name: 'msg', encoding: 'utf8', payload: ascii('hi') },
  ],
  [
    'StreamSignal binary, session stream, offset 1, no name, payload `01 02`',
    { kind: 'streamSignal', stream: SESSION, epoch: EPOCH, offset: 1n, name: '', encoding: 'binary', payload: Uint8Array.of(1, 2) },
  ],
  [
    'StreamSignal UTF-16, room `lobby`, offset 8, name `ab` (`sl+n` = 7, odd: padding), payload `hi`',
    { kind: 'streamSignal', stream: LOBBY, epoch: EPOCH, offset: 8n, name: 'ab', encoding: 'utf16', payload: utf16('hi') },
  ],
  [
    'StreamSignal UTF-16, room `lobby`, offset 9, name `msg` (`sl+n` = 8, even: no padding), payload `hi`',
    { kind: 'streamSignal', stream: LOBBY, epoch: EPOCH, offset: 9n, name: 'msg', encoding: 'utf16', payload: utf16('hi') },
  ],
  [
    'StreamResume, 2 entries: session stream at offset 12, room `lobby` at offset 7',
    {
      kind: 'streamResume',
      id: ID8,
      entries: [
        { stream: SESSION, epoch: EPOCH, offset: 12n },
        { stream: LOBBY, epoch: EPOCH, offset: 7n },
      ],
    },
  ],
  ['StreamResume, no entries', { kind: 'streamResume', id: ID8, entries: [] }],
  [
    'StreamLoss TRIMMED, room `lobby`, lost 8..=20, next 21',
    { kind: 'streamLoss', stream: LOBBY, epoch: EPOCH, lostFrom: 8n, lostTo: 20n, next: 21n, reason: 'trimmed' },
  ],
  [
    'StreamLoss EPOCH_CHANGED, session stream, new epoch `0x0f0e0d0c0b0a0908`, lost 0..=0, next 1',
    { kind: 'streamLoss', stream: SESSION, epoch: 0x0f0e0d0c0b0a0908n, lostFrom: 0n, lostTo: 0n, next: 1n, reason: 'epochChanged' },
  ],
  [
    'StreamLoss AHEAD, room `lobby`, end 15, client at 19: lost 16..=19, next 16',
    { kind: 'streamLoss', stream: LOBBY, epoch: EPOCH, lostFrom: 16n, lostTo: 19n, next: 16n, reason: 'ahead' },
  ],
  [
    'StreamLoss UNKNOWN_STREAM, room `gone`',
    { kind: 'streamLoss', stream: { kind: 'room', room: 'gone' }, epoch: 0n, lostFrom: 0n, lostTo: 0n, next: 0n, reason: 'unknownStream' },
  ],
  [
    'KeyedRequest UTF-8, seq 5, ack 3, name `chat.send`, payload `hi`',
    { kind: 'keyedRequest', id: ID8, seq: 5n, epoch: LEDGER, ack: 3n, name: 'chat.send', encoding: 'utf8', payload: ascii('hi') },
  ],
  [
    'KeyedRequest UTF-16, seq 6, ack 3, name `abc` (odd: padding), payload `hi`',
    { kind: 'keyedRequest', id: ID8, seq: 6n, epoch: LEDGER, ack: 3n, name: 'abc', encoding: 'utf16', payload: utf16('hi') },
  ],
  [
    'KeyedRequest binary, seq 1, ack 0, no name, payload `ff`',
    { kind: 'keyedRequest', id: ID8, seq: 1n, epoch: LEDGER, ack: 0n, name: '', encoding: 'binary', payload: Uint8Array.of(0xff) },
  ],
  ['ReplyOutcomeUnknown', { kind: 'replyOutcomeUnknown', id: ID8 }],
  ['ReplyError `KEY_REUSED`, empty message', { kind: 'replyError', id: ID8, code: 'KEY_REUSED', message: '' }],
];

/** The `| description | `hex` |` rows of docs/protocol.md section 14.7. */
function docRows() {
  const doc = readFileSync(new URL('../../../docs/protocol.md', import.meta.url), 'utf8');
  const start = doc.indexOf('\n### 14.7 Worked examples');
  assert.ok(start > 0, 'docs/protocol.md has section 14.7');
  const end = doc.indexOf('\n## ', start + 1);
  const section = doc.slice(start, end < 0 ? undefined : end);
  const rows = new Map();
  for (const line of section.split('\n')) {
    const m = /^\| (.+) \| `([0-9a-f ]+)` \|$/.exec(line);
    if (m) rows.set(m[1], m[2]);
  }
  return rows;
}

test('docs/protocol.md 14.7: every row has a test and every test a row', () => {
  const rows = docRows();
  assert.deepEqual([...rows.keys()].sort(), EXAMPLES_21.map(([what]) => what).sort());
});

for (const [what, msg] of EXAMPLES_21) {
  test(`docs/protocol.md 14.7 example: ${what}`, () => {
    const hex = docRows().get(what);
    assert.ok(hex, `row "${what}" is in section 14.7`);
    const bytes = fromHex(hex.replaceAll(' ', ''));
    assert.equal(toHex(encodeMessage(msg)), toHex(bytes), 'encoding');
    assert.deepEqual(deepNormalize(parseMessage(bytes)), deepNormalize(msg), 'parsing');
  });
}

test('docs/protocol.md 14.7: the field-by-field breakdowns match their rows', () => {
  const doc = readFileSync(new URL('../../../docs/protocol.md', import.meta.url), 'utf8');
  const section = doc.slice(doc.indexOf('\n### 14.7 Worked examples'));
  const rows = docRows();
  const blocks = [...section.matchAll(/```\n([\s\S]*?)```/g)].map((m) => m[1]);
  // A breakdown's bytes are the leading hex pairs of each line, before the comment.
  const bytesOfBlock = (block) =>
    block
      .split('\n')
      .map((line) => /^((?:[0-9a-f]{2} )*[0-9a-f]{2})(?:\s{2,}|$)/.exec(line)?.[1] ?? '')
      .filter(Boolean)
      .join(' ');
  assert.equal(bytesOfBlock(blocks[0]), rows.get('KeyedRequest UTF-8, seq 5, ack 3, name `chat.send`, payload `hi`'));
  assert.equal(bytesOfBlock(blocks[1]), rows.get('StreamSignal UTF-16, room `lobby`, offset 8, name `ab` (`sl+n` = 7, odd: padding), payload `hi`'));
});

test('2.1 messages: sender role and the feature that allows them', () => {
  const cases = [
    [{ kind: 'extensionHello', flags: 0, instanceId: '' }, false, 0],
    [{ kind: 'extensionAccept', flags: 0, ledgerEpoch: 0n }, true, 0],
    [{ kind: 'streamResume', id: ID8, entries: [] }, false, ExtensionFlags.Streams],
    [{ kind: 'streamSignal', stream: SESSION, epoch: 1n, offset: 1n, name: 'a', encoding: 'binary', payload: new Uint8Array(0) }, true, ExtensionFlags.Streams],
    [{ kind: 'streamLoss', stream: SESSION, epoch: 0n, lostFrom: 0n, lostTo: 0n, next: 0n, reason: 'unknownStream' }, true, ExtensionFlags.Streams],
    [{ kind: 'keyedRequest', id: ID8, seq: 1n, epoch: 1n, ack: 0n, name: 'a', encoding: 'binary', payload: new Uint8Array(0) }, false, ExtensionFlags.KeyedRequests],
    [{ kind: 'replyOutcomeUnknown', id: ID8 }, true, ExtensionFlags.KeyedRequests],
    [{ kind: 'heartbeat' }, false, undefined],
    [{ kind: 'replyShutdown', id: ID8 }, true, undefined],
  ];
  for (const [msg, byServer, feature] of cases) {
    assert.equal(sentByServer(msg), byServer, msg.kind);
    assert.equal(extensionFeatureOf(msg), feature, msg.kind);
  }
  assert.equal(ExtensionFlags.Streams, 1);
  assert.equal(ExtensionFlags.KeyedRequests, 2);
  assert.deepEqual(StreamLossReasonCode, { trimmed: 1, epochChanged: 2, ahead: 3, unknownStream: 4 });
  assert.deepEqual(
    [MessageType.ReplyOutcomeUnknown, MessageType.StreamLoss, MessageType.ExtensionAccept, MessageType.ExtensionHello, MessageType.StreamResume],
    [6, 24, 25, 34, 35],
  );
  assert.deepEqual(
    [MessageType.StreamSignalBinary, MessageType.StreamSignalUtf8, MessageType.StreamSignalUtf16, MessageType.KeyedRequestBinary, MessageType.KeyedRequestUtf8, MessageType.KeyedRequestUtf16],
    [66, 67, 68, 130, 131, 132],
  );
});

// Round trips over generated messages (a fixed seed, so a failure repeats).
function rng(seed) {
  let x = seed >>> 0;
  return () => {
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    return x / 2 ** 32;
  };
}

function generators(rand) {
  const int = (n) => Math.floor(rand() * n);
  const pick = (items) => items[int(items.length)];
  const u64r = () => pick([0n, 1n, 0xffff_ffff_ffff_ffffn, BigInt(int(1000)), (BigInt(int(2 ** 32)) << 32n) | BigInt(int(2 ** 32))]);
  const nonZero = () => {
    const v = u64r();
    return v === 0n ? 1n : v;
  };
  const printable = (max) => Array.from({ length: int(max + 1) }, () => String.fromCharCode(32 + int(95))).join('');
  const roomChars = ['a', 'Z', ' ', 'é', '€', '😀', '-', '\u0000', '\u007f'];
  const room = () => {
    let r = '';
    for (let i = 0, n = 1 + int(20); i < n; i++) r += pick(roomChars);
    return r;
  };
  const stream = () => (rand() < 0.3 ? { kind: 'session' } : { kind: 'room', room: room() });
  const bytes = (max) => Uint8Array.from({ length: int(max + 1) }, () => int(256));
  const encoding = () => pick(['binary', 'utf8', 'utf16']);
  /** A name and a payload that the request/signal rules accept. */
  const namedPayload = (utf16AlwaysNeedsPayload) => {
    const enc = encoding();
    const name = printable(rand() < 0.3 ? 0 : 12);
    let payload = bytes(9);
    if (enc === 'utf16') {
      if (payload.length % 2) payload = payload.subarray(1);
      if (payload.length < 2 && (utf16AlwaysNeedsPayload || name.length === 0)) payload = Uint8Array.of(1, 0);
    } else if (name.length === 0 && payload.length === 0) payload = Uint8Array.of(7);
    return { name, encoding: enc, payload };
  };
  const id = () => bytes(0).length === 0 ? Uint8Array.from({ length: 8 }, () => int(256)) : ID8;
  return {
    extensionHello: () => {
      const keyed = rand() < 0.5;
      const flags = (keyed ? 2 : 0) | (rand() < 0.5 ? 1 : 0) | (rand() < 0.2 ? 0xfffffff0 : 0);
      let instanceId = printable(64);
      if (keyed && instanceId.length < 16) instanceId = instanceId.padEnd(16, 'x');
      return { kind: 'extensionHello', flags: flags >>> 0, instanceId };
    },
    extensionAccept: () => ({ kind: 'extensionAccept', flags: int(4), ledgerEpoch: u64r() }),
    streamSignal: () => ({ kind: 'streamSignal', stream: stream(), epoch: nonZero(), offset: nonZero(), ...namedPayload(true) }),
    streamResume: () => {
      const entries = [];
      const seen = new Set();
      for (let i = 0, n = int(6); i < n; i++) {
        const s = stream();
        const key = s.kind === 'room' ? `room:${s.room}` : 'session';
        if (seen.has(key)) continue;
        seen.add(key);
        entries.push({ stream: s, epoch: u64r(), offset: u64r() });
      }
      return { kind: 'streamResume', id: id(), entries };
    },
    streamLoss: () => ({
      kind: 'streamLoss',
      stream: stream(),
      epoch: u64r(),
      lostFrom: u64r(),
      lostTo: u64r(),
      next: u64r(),
      reason: pick(['trimmed', 'epochChanged', 'ahead', 'unknownStream']),
    }),
    keyedRequest: () => ({ kind: 'keyedRequest', id: id(), seq: nonZero(), epoch: u64r(), ack: u64r(), ...namedPayload(false) }),
    replyOutcomeUnknown: () => ({ kind: 'replyOutcomeUnknown', id: id() }),
  };
}

test('2.1 round trips: parse(encode(m)) = m and encode(parse(b)) = b, 300 messages per kind', () => {
  const gens = generators(rng(0x5eed21));
  for (const [kind, gen] of Object.entries(gens)) {
    for (let i = 0; i < 300; i++) {
      const msg = gen();
      const bytes = encodeMessage(msg);
      const parsed = parseMessage(bytes);
      assert.deepEqual(deepNormalize(parsed), deepNormalize(msg), `${kind} #${i}`);
      assert.equal(toHex(encodeMessage(parsed)), toHex(bytes), `${kind} #${i} re-encoded`);
      if (bytes[0] === MessageType.StreamSignalUtf16 || bytes[0] === MessageType.KeyedRequestUtf16) {
        assert.equal(bytes.length % 2, 0, `${kind} #${i}: UTF-16 message of even length`);
        assert.equal(parsed.payload.byteOffset % 2, 0, `${kind} #${i}: UTF-16 payload at an even offset`);
      }
    }
  }
});

test('2.1 round trips: every proper prefix of a valid message is rejected or parses as itself', () => {
  // Fixed-size and counted layouts must not accept a cut message; the
  // open-ended ones (payload at the end) may, but then read only a shorter payload.
  const gens = generators(rng(0xc0ffee));
  for (const gen of Object.values(gens)) {
    for (let i = 0; i < 40; i++) {
      const bytes = encodeMessage(gen());
      for (let cut = 0; cut < bytes.length; cut++) {
        let parsed;
        try {
          parsed = parseMessage(bytes.subarray(0, cut));
        } catch (e) {
          assert.ok(e instanceof ProtocolError, `cut at ${cut}: ${e}`);
          continue;
        }
        assert.ok('payload' in parsed, `a cut ${parsed.kind} was accepted`);
        assert.equal(toHex(encodeMessage(parsed)), toHex(bytes.subarray(0, cut)));
      }
    }
  }
});

test('2.1 valid edge cases parse', () => {
  // A keyed request's ack >= seq is the server's to judge (BAD_KEY), not the parser's.
  const bad = parseMessage(bytesOf(131, ID8, u64(3), u64(1), u64(9), 1, 'a'));
  assert.equal(bad.seq, 3n);
  assert.equal(bad.ack, 9n);
  assert.equal(bad.payload.length, 0);
  // UTF-16 keyed request with an even name and an empty payload; with an odd name, padding and nothing after.
  assert.equal(parseMessage(bytesOf(132, ID8, u64(1), u64(1), u64(0), 2, 'ab')).payload.length, 0);
  assert.equal(parseMessage(bytesOf(132, ID8, u64(1), u64(1), u64(0), 1, 'a', 0)).payload.length, 0);
  // A 64-byte instance id; unknown flag bits are carried (the server ignores them).
  const hello = parseMessage(bytesOf(34, u32(0xffffffff), 64, 'i'.repeat(64)));
  assert.equal(hello.flags, 0xffffffff);
  assert.equal(hello.instanceId.length, 64);
  // 16 bytes are enough for keyed requests; flags without KEYED_REQUESTS need none.
  assert.equal(parseMessage(bytesOf(34, u32(2), 16, 'x'.repeat(16))).instanceId, 'x'.repeat(16));
  assert.equal(parseMessage(bytesOf(34, u32(1), 3, 'abc')).instanceId, 'abc');
  // Room names: any UTF-8, up to 255 bytes.
  const room = 'é'.repeat(127) + 'x';
  assert.equal(new TextEncoder().encode(room).length, 255);
  const sig = encodeMessage({ kind: 'streamSignal', stream: { kind: 'room', room }, epoch: 1n, offset: 1n, name: 'n', encoding: 'binary', payload: new Uint8Array(0) });
  assert.equal(parseMessage(sig).stream.room, room);
  // A stream signal with a name and no payload (binary, UTF-8).
  assert.equal(parseMessage(bytesOf(67, 1, 0, u64(1), u64(1), 1, 'a')).payload.length, 0);
  // A stream resume with the most entries it may have (1024 distinct rooms).
  const entries = Array.from({ length: MAX_RESUME_STREAMS }, (_, i) => ({ stream: { kind: 'room', room: `r${i}` }, epoch: 1n, offset: BigInt(i) }));
  const resume = encodeMessage({ kind: 'streamResume', id: ID8, entries });
  assert.equal(parseMessage(resume).entries.length, 1024);
  // The same room name as a session and a room entry are two streams.
  assert.equal(parseMessage(bytesOf(35, ID8, u16(2), 1, 0, u64(1), u64(1), 2, 1, 's', u64(1), u64(1))).entries.length, 2);
  // StreamLoss carries the u64 extremes.
  const loss = parseMessage(bytesOf(24, 1, 0, u64(2n ** 64n - 1n), u64(0), u64(2n ** 64n - 1n), u64(1), 3));
  assert.equal(loss.epoch, 2n ** 64n - 1n);
  assert.equal(loss.reason, 'ahead');
});

test('2.1 parsed ids and payloads are views of the input', () => {
  const bytes = bytesOf(131, ID8, u64(5), u64(1), u64(0), 1, 'a', 'xyz');
  const msg = parseMessage(bytes);
  assert.equal(msg.payload.buffer, bytes.buffer);
  assert.equal(msg.payload.byteOffset, 35);
  assert.equal(msg.id.buffer, bytes.buffer);
  const big = new Uint8Array(100);
  const sig = bytesOf(66, 2, 2, 'ro', u64(3), u64(4), 0, 9);
  big.set(sig, 7);
  const parsed = parseMessage(big.subarray(7, 7 + sig.length));
  assert.deepEqual([parsed.stream, parsed.epoch, parsed.offset, [...parsed.payload]], [{ kind: 'room', room: 'ro' }, 3n, 4n, [9]]);
});

const SESS = [1, 0];
const ROOM_AB = [2, 2, ...ascii('ab')];
const E1 = u64(1);
const MALFORMED_21 = [
  // ReplyOutcomeUnknown (6)
  ['outcome-unknown reply of 8 bytes', bytesOf(6, 1, 2, 3, 4, 5, 6, 7)],
  ['outcome-unknown reply of 10 bytes', bytesOf(6, ID8, 0)],
  // ExtensionHello (34)
  ['extension hello of 5 bytes', bytesOf(34, u32(1))],
  ['extension hello with an instance id of 65 bytes', bytesOf(34, u32(1), 65, 'i'.repeat(65))],
  ['extension hello shorter than its instance id', bytesOf(34, u32(1), 3, 'ab')],
  ['extension hello with a byte after its instance id', bytesOf(34, u32(1), 2, 'abc')],
  ['extension hello, instance id with a control byte', bytesOf(34, u32(1), 2, 'a', 10)],
  ['extension hello, instance id with byte 127', bytesOf(34, u32(1), 1, 127)],
  ['extension hello asking keyed requests with a 15-byte instance id', bytesOf(34, u32(2), 15, 'x'.repeat(15))],
  ['extension hello asking keyed requests without an instance id', bytesOf(34, u32(3), 0)],
  // ExtensionAccept (25)
  ['extension accept of 12 bytes', bytesOf(25, u32(3), u64(1)).subarray(0, 12)],
  ['extension accept of 14 bytes', bytesOf(25, u32(3), u64(1), 0)],
  // StreamSignal (66, 67, 68)
  ['stream signal of 19 bytes', bytesOf(66, SESS, E1, u64(1))],
  ['stream signal with stream kind 0', bytesOf(66, 0, 0, E1, E1, 0, 9)],
  ['stream signal with stream kind 3', bytesOf(66, 3, 0, E1, E1, 0, 9)],
  ['stream signal, session stream with a name', bytesOf(66, 1, 1, 'a', E1, E1, 0, 9)],
  ['stream signal, room stream without a name', bytesOf(66, 2, 0, E1, E1, 0, 9)],
  ['stream signal, room name not UTF-8', bytesOf(66, 2, 1, 0xff, E1, E1, 0, 9)],
  ['stream signal, room name cut UTF-8 sequence', bytesOf(66, 2, 1, 0xc3, E1, E1, 0, 9)],
  ['stream signal shorter than its room name', bytesOf(66, 2, 40, 'ab', E1, E1, 0, 9)],
  ['stream signal with epoch 0', bytesOf(66, SESS, u64(0), E1, 0, 9)],
  ['stream signal with offset 0', bytesOf(66, SESS, E1, u64(0), 0, 9)],
  ['stream signal shorter than its name', bytesOf(67, SESS, E1, E1, 5, 'abc')],
  ['stream signal name with a control byte', bytesOf(67, SESS, E1, E1, 2, 'a', 9, 'x')],
  ['stream signal name with a non-ASCII byte', bytesOf(66, ROOM_AB, E1, E1, 1, 200, 1)],
  ['binary stream signal with neither name nor payload', bytesOf(66, SESS, E1, E1, 0)],
  ['UTF-8 stream signal with neither name nor payload', bytesOf(67, ROOM_AB, E1, E1, 0)],
  ['UTF-16 stream signal of odd length', bytesOf(68, SESS, E1, E1, 0, 120, 0, 121)],
  ['UTF-16 stream signal without payload, even header', bytesOf(68, ROOM_AB, E1, E1, 0)],
  ['UTF-16 stream signal without payload, name and padding', bytesOf(68, SESS, E1, E1, 1, 'a', 0)],
  ['UTF-16 stream signal with non-zero padding', bytesOf(68, SESS, E1, E1, 1, 'a', 1, 120, 0)],
  ['UTF-16 stream signal, odd header without padding (misaligned)', bytesOf(68, SESS, E1, E1, 1, 'a', 120, 0, 121)],
  // StreamResume (35)
  ['stream resume of 10 bytes', bytesOf(35, ID8, 0)],
  ['stream resume with 1025 entries', bytesOf(35, ID8, u16(1025))],
  ['stream resume with one entry and no entry bytes', bytesOf(35, ID8, u16(1))],
  ['stream resume with an entry cut short', bytesOf(35, ID8, u16(1), SESS, E1, u64(7)).subarray(0, 28)],
  ['stream resume with a byte after its entries', bytesOf(35, ID8, u16(1), SESS, E1, u64(7), 0)],
  ['stream resume of no entries with a byte after', bytesOf(35, ID8, u16(0), 1)],
  ['stream resume with fewer entries than counted', bytesOf(35, ID8, u16(2), SESS, E1, u64(7))],
  ['stream resume listing the session stream twice', bytesOf(35, ID8, u16(2), SESS, E1, u64(7), SESS, E1, u64(8))],
  ['stream resume listing a room twice', bytesOf(35, ID8, u16(2), ROOM_AB, E1, u64(7), ROOM_AB, u64(2), u64(1))],
  ['stream resume entry with stream kind 9', bytesOf(35, ID8, u16(1), 9, 0, E1, E1)],
  ['stream resume entry, session stream with a name', bytesOf(35, ID8, u16(1), 1, 1, 'a', E1, E1)],
  ['stream resume entry, room name not UTF-8', bytesOf(35, ID8, u16(1), 2, 2, 0xed, 0xa0, E1, E1)],
  // StreamLoss (24)
  ['stream loss one byte short', bytesOf(24, SESS, E1, E1, E1, E1)],
  ['stream loss one byte long', bytesOf(24, SESS, E1, E1, E1, E1, 1, 0)],
  ['stream loss with reason 0', bytesOf(24, ROOM_AB, E1, E1, E1, E1, 0)],
  ['stream loss with reason 5', bytesOf(24, ROOM_AB, E1, E1, E1, E1, 5)],
  ['stream loss with stream kind 0', bytesOf(24, 0, 0, E1, E1, E1, E1, 1)],
  ['stream loss, room stream without a name', bytesOf(24, 2, 0, E1, E1, E1, E1, 1)],
  // KeyedRequest (130, 131, 132)
  ['binary keyed request of 34 bytes (neither name nor payload)', bytesOf(130, ID8, E1, E1, u64(0), 0)],
  ['UTF-8 keyed request of 34 bytes', bytesOf(131, ID8, E1, E1, u64(0), 0)],
  ['keyed request of 20 bytes', bytesOf(131, ID8, E1, 1, 2, 3)],
  ['keyed request with seq 0', bytesOf(131, ID8, u64(0), E1, u64(0), 1, 'a', 'x')],
  ['keyed request shorter than its name', bytesOf(131, ID8, E1, E1, u64(0), 4, 'abc')],
  ['keyed request name with a DEL byte', bytesOf(130, ID8, E1, E1, u64(0), 1, 127)],
  ['keyed request name with a non-ASCII byte', bytesOf(131, ID8, E1, E1, u64(0), 2, 'a', 0xe9, 'x')],
  ['UTF-16 keyed request of odd length', bytesOf(132, ID8, E1, E1, u64(0), 0, 104, 0, 105)],
  ['UTF-16 keyed request without name and 1 payload byte', bytesOf(132, ID8, E1, E1, u64(0), 0, 104)],
  ['UTF-16 keyed request, odd name and no padding byte', bytesOf(132, ID8, E1, E1, u64(0), 1, 'a')],
  ['UTF-16 keyed request, odd name without padding (misaligned)', bytesOf(132, ID8, E1, E1, u64(0), 1, 'a', 104, 0, 105)],
  ['UTF-16 keyed request with non-zero padding', bytesOf(132, ID8, E1, E1, u64(0), 3, 'abc', 1, 104, 0)],
];

for (const [what, bytes] of MALFORMED_21) {
  test(`malformed 2.1: ${what}`, () => {
    assert.throws(() => parseMessage(bytes), (e) => e instanceof ProtocolError && /protocol violation/.test(e.message));
  });
}

const okSignal = { kind: 'streamSignal', stream: SESSION, epoch: 1n, offset: 1n, name: 'a', encoding: 'utf8', payload: ascii('x') };
const okKeyed = { kind: 'keyedRequest', id: ID8, seq: 1n, epoch: 1n, ack: 0n, name: 'a', encoding: 'utf8', payload: ascii('x') };
const okLoss = { kind: 'streamLoss', stream: LOBBY, epoch: 1n, lostFrom: 1n, lostTo: 2n, next: 3n, reason: 'trimmed' };
const ENCODE_ERRORS_21 = [
  ['hello: instance id of 65 bytes', { kind: 'extensionHello', flags: 1, instanceId: 'i'.repeat(65) }, RangeError],
  ['hello: instance id with a non-ASCII character', { kind: 'extensionHello', flags: 1, instanceId: 'tab-é' }, TypeError],
  ['hello: keyed requests with a 15-byte instance id', { kind: 'extensionHello', flags: 2, instanceId: 'x'.repeat(15) }, RangeError],
  ['hello: flags above u32', { kind: 'extensionHello', flags: 2 ** 32, instanceId: '' }, RangeError],
  ['hello: negative flags', { kind: 'extensionHello', flags: -1, instanceId: '' }, RangeError],
  ['accept: ledger epoch not a bigint', { kind: 'extensionAccept', flags: 3, ledgerEpoch: 5 }, RangeError],
  ['accept: ledger epoch above u64', { kind: 'extensionAccept', flags: 3, ledgerEpoch: 2n ** 64n }, RangeError],
  ['stream signal: epoch 0', { ...okSignal, epoch: 0n }, RangeError],
  ['stream signal: offset 0', { ...okSignal, offset: 0n }, RangeError],
  ['stream signal: negative offset', { ...okSignal, offset: -1n }, RangeError],
  ['stream signal: empty room name', { ...okSignal, stream: { kind: 'room', room: '' } }, RangeError],
  ['stream signal: room name of 256 bytes', { ...okSignal, stream: { kind: 'room', room: 'é'.repeat(128) } }, RangeError],
  ['stream signal: room name with a lone surrogate', { ...okSignal, stream: { kind: 'room', room: 'a\ud800' } }, TypeError],
  ['stream signal: unknown stream kind', { ...okSignal, stream: { kind: 'channel', room: 'x' } }, TypeError],
  ['stream signal: neither name nor payload', { ...okSignal, name: '', payload: new Uint8Array(0) }, RangeError],
  ['stream signal: UTF-16 with a name and no payload', { ...okSignal, encoding: 'utf16', payload: new Uint8Array(0) }, RangeError],
  ['stream signal: UTF-16 odd payload', { ...okSignal, encoding: 'utf16', payload: Uint8Array.of(1, 2, 3) }, RangeError],
  ['stream signal: name of 256 bytes', { ...okSignal, name: 'n'.repeat(256) }, RangeError],
  ['stream resume: 1025 entries', { kind: 'streamResume', id: ID8, entries: Array.from({ length: 1025 }, (_, i) => ({ stream: { kind: 'room', room: `r${i}` }, epoch: 1n, offset: 0n })) }, RangeError],
  ['stream resume: a stream listed twice', { kind: 'streamResume', id: ID8, entries: [{ stream: LOBBY, epoch: 1n, offset: 0n }, { stream: { kind: 'room', room: 'lobby' }, epoch: 2n, offset: 1n }] }, RangeError],
  ['stream resume: offset above u64', { kind: 'streamResume', id: ID8, entries: [{ stream: SESSION, epoch: 1n, offset: 2n ** 64n }] }, RangeError],
  ['stream resume: id of 7 bytes', { kind: 'streamResume', id: new Uint8Array(7), entries: [] }, TypeError],
  ['stream loss: unknown reason', { ...okLoss, reason: 'expired' }, TypeError],
  ['stream loss: inherited property as reason', { ...okLoss, reason: 'toString' }, TypeError],
  ['stream loss: next not a bigint', { ...okLoss, next: 3 }, RangeError],
  ['keyed request: neither name nor payload', { ...okKeyed, name: '', payload: new Uint8Array(0) }, RangeError],
  ['keyed request: UTF-16 without name, 0 payload bytes', { ...okKeyed, name: '', encoding: 'utf16', payload: new Uint8Array(0) }, RangeError],
  ['keyed request: UTF-16 odd payload', { ...okKeyed, encoding: 'utf16', payload: Uint8Array.of(1) }, RangeError],
  ['keyed request: seq above u64', { ...okKeyed, seq: 2n ** 64n }, RangeError],
  ['keyed request: seq 0', { ...okKeyed, seq: 0n }, RangeError],
  ['keyed request: ack a number', { ...okKeyed, ack: 0 }, RangeError],
  ['keyed request: name with a control character', { ...okKeyed, name: 'a\t' }, TypeError],
  ['outcome unknown: id of 9 bytes', { kind: 'replyOutcomeUnknown', id: new Uint8Array(9) }, TypeError],
];

for (const [what, msg, type] of ENCODE_ERRORS_21) {
  test(`encoder refuses 2.1: ${what}`, () => {
    assert.throws(() => encodeMessage(msg), type);
  });
}

test('the encoder builds a key the server will refuse (ack >= seq): the server judges it, not the layout', () => {
  const bytes = encodeMessage({ ...okKeyed, seq: 5n, ack: 5n });
  assert.deepEqual([parseMessage(bytes).seq, parseMessage(bytes).ack], [5n, 5n]);
});
