import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Payload, Reply, Signal, encodeUtf16, decodeUtf16, encodeUtf8, decodeUtf8 } from '../dist/index.js';

const SAMPLES = ['', 'hi', 'Привет, мир', '😀 emoji 👍🏽', 'mixed ascii / кириллица / 日本語 / 🚀', '\u0000\uffff'];

test('UTF-16 round trip matches Buffer utf16le', () => {
  for (const s of SAMPLES) {
    const bytes = encodeUtf16(s);
    assert.deepEqual(Buffer.from(bytes), Buffer.from(s, 'utf16le'), s);
    assert.equal(decodeUtf16(bytes), s);
  }
});

test('UTF-16 keeps lone surrogates', () => {
  const s = 'a\ud800b\udc00';
  assert.equal(decodeUtf16(encodeUtf16(s)), s);
});

test('UTF-16 decoding of long text (chunked)', () => {
  const s = 'жz😀'.repeat(20000);
  assert.equal(decodeUtf16(encodeUtf16(s)), s);
});

test('UTF-8 round trip', () => {
  for (const s of SAMPLES) assert.equal(decodeUtf8(encodeUtf8(s)), s);
  assert.equal(decodeUtf8(Uint8Array.of(0xff)), '\ufffd');
});

test('Payload.from: strings UTF-8 by default, UTF-16 when asked, bytes binary', () => {
  const a = Payload.from('ж');
  assert.equal(a.encoding, 'utf8');
  assert.deepEqual([...a.data], [0xd0, 0xb6]);
  const b = Payload.from('ж', 'utf16');
  assert.equal(b.encoding, 'utf16');
  assert.deepEqual([...b.data], [0x36, 0x04]);
  const c = Payload.from(Uint8Array.of(1, 2));
  assert.equal(c.encoding, 'binary');
  assert.deepEqual([...Payload.from(Uint8Array.of(1, 2, 3).buffer).data], [1, 2, 3]);
  assert.deepEqual([...Payload.from(new DataView(Uint8Array.of(9, 8, 7).buffer, 1, 2)).data], [8, 7]);
  assert.equal(Payload.from(undefined).data.length, 0);
  assert.equal(Payload.from(c), c);
  assert.throws(() => Payload.from(42), TypeError);
});

test('text getter decodes by encoding', () => {
  assert.equal(new Reply('utf16', encodeUtf16('héllo 😀')).text, 'héllo 😀');
  assert.equal(new Reply('utf8', encodeUtf8('héllo 😀')).text, 'héllo 😀');
  assert.equal(new Reply('binary', encodeUtf8('raw')).text, 'raw');
  const s = new Signal('n', 'utf8', encodeUtf8('x'));
  assert.equal(s.name, 'n');
  assert.equal(String(s), 'x');
});
