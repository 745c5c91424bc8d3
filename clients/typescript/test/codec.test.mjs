// Codec: byte-exact against the original Go implementation's vectors and
// the worked examples of docs/protocol.md; malformed input is rejected with ProtocolError.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { encodeMessage, parseMessage, ProtocolError, MessageType } from '../dist/index.js';

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
  ['unknown type 6', '6 1 2 3 4 5 6 7 8'],
  ['unknown type 24', '24'],
  ['unknown type 62', '62 1 97 120'],
  ['unknown type 130', `130 ${ID} 0 1`],
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
