/**
 * Payloads: bytes with an encoding (binary, UTF-8 or UTF-16 little-endian),
 * and the conversions between JavaScript values and those bytes.
 *
 * @module
 */

import type { StreamId } from './codec.js';

/** How a payload's bytes are to be read. */
export type Encoding = 'binary' | 'utf8' | 'utf16';

/** The encodings a string can be sent with. */
export type TextEncoding = 'utf8' | 'utf16';

/** What the client accepts as a payload. Strings are text; bytes are binary. */
export type PayloadInput = string | Uint8Array | ArrayBuffer | ArrayBufferView | Payload | null | undefined;

const utf8Encoder = new TextEncoder();
const utf8Decoder = new TextDecoder('utf-8');

/** Encodes a string as UTF-8. */
export function encodeUtf8(text: string): Uint8Array {
  return utf8Encoder.encode(text);
}

/** Decodes UTF-8 bytes; invalid sequences become U+FFFD. */
export function decodeUtf8(bytes: Uint8Array): string {
  return utf8Decoder.decode(bytes);
}

/**
 * Encodes a string as UTF-16 little-endian code units, exactly as
 * JavaScript holds it (lone surrogates included).
 */
export function encodeUtf16(text: string): Uint8Array {
  const out = new Uint8Array(text.length * 2);
  for (let i = 0; i < text.length; i++) {
    const unit = text.charCodeAt(i);
    out[2 * i] = unit & 0xff;
    out[2 * i + 1] = unit >>> 8;
  }
  return out;
}

/**
 * Decodes UTF-16 little-endian code units. A trailing odd byte (never
 * produced by a valid message) is ignored.
 */
export function decodeUtf16(bytes: Uint8Array): string {
  const units = bytes.length >>> 1;
  const chunk = 8192;
  let text = '';
  const codes: number[] = [];
  for (let i = 0; i < units; i++) {
    codes.push(bytes[2 * i]! | (bytes[2 * i + 1]! << 8));
    if (codes.length === chunk) {
      text += String.fromCharCode(...codes);
      codes.length = 0;
    }
  }
  if (codes.length > 0) text += String.fromCharCode(...codes);
  return text;
}

/** Copies the bytes of a buffer or view into a Uint8Array view (no copy for a Uint8Array). */
export function toBytes(value: Uint8Array | ArrayBuffer | ArrayBufferView): Uint8Array {
  if (value instanceof Uint8Array) return value;
  if (ArrayBuffer.isView(value)) return new Uint8Array(value.buffer, value.byteOffset, value.byteLength);
  return new Uint8Array(value);
}

/**
 * A payload: its bytes and their encoding. Replies and received signals are
 * payloads; {@link Payload.text} reads them as text.
 */
export class Payload {
  /** How {@link Payload.data} is encoded. */
  readonly encoding: Encoding;
  /** The raw payload bytes as they were on the wire. */
  readonly data: Uint8Array;

  constructor(encoding: Encoding, data: Uint8Array) {
    this.encoding = encoding;
    this.data = data;
  }

  /**
   * The payload as text: UTF-16 payloads are decoded as UTF-16LE, UTF-8 and
   * binary payloads as UTF-8 (invalid sequences become U+FFFD).
   */
  get text(): string {
    return this.encoding === 'utf16' ? decodeUtf16(this.data) : decodeUtf8(this.data);
  }

  /** The same as {@link Payload.text}. */
  toString(): string {
    return this.text;
  }

  /** A UTF-8 payload. */
  static utf8(text: string): Payload {
    return new Payload('utf8', encodeUtf8(text));
  }

  /** A UTF-16 payload. */
  static utf16(text: string): Payload {
    return new Payload('utf16', encodeUtf16(text));
  }

  /** A binary payload (the bytes are not copied). */
  static binary(data: Uint8Array | ArrayBuffer | ArrayBufferView): Payload {
    return new Payload('binary', toBytes(data));
  }

  /**
   * Converts what the application passed: a string becomes UTF-8 (or UTF-16
   * with `textEncoding: 'utf16'`), bytes become binary, a Payload is kept,
   * and null / undefined are an empty binary payload.
   */
  static from(value: PayloadInput, textEncoding: TextEncoding = 'utf8'): Payload {
    if (value instanceof Payload) return value;
    if (value === undefined || value === null) return new Payload('binary', new Uint8Array(0));
    if (typeof value === 'string') return textEncoding === 'utf16' ? Payload.utf16(value) : Payload.utf8(value);
    if (value instanceof ArrayBuffer || ArrayBuffer.isView(value)) return Payload.binary(value);
    throw new TypeError('a payload must be a string, a Uint8Array, an ArrayBuffer, a view or a Payload');
  }
}

/** A reply to a request. */
export class Reply extends Payload {}

/** A signal received from the server. */
export class Signal extends Payload {
  /** The signal's name (may be empty). */
  readonly name: string;

  constructor(name: string, encoding: Encoding, data: Uint8Array) {
    super(encoding, data);
    this.name = name;
  }
}

/**
 * A signal of a stream (webwire 2.1, docs/protocol.md 14.3): delivered in
 * order, once, with its position. It reaches the application through the
 * same `signal` event as any signal.
 */
export class StreamSignal extends Signal {
  /** The stream: the session stream, or a room's. */
  readonly stream: StreamId;
  /** The stream's epoch. */
  readonly epoch: bigint;
  /** The signal's offset in the stream, within the epoch. */
  readonly offset: bigint;

  constructor(name: string, encoding: Encoding, data: Uint8Array, stream: StreamId, epoch: bigint, offset: bigint) {
    super(name, encoding, data);
    this.stream = stream;
    this.epoch = epoch;
    this.offset = offset;
  }
}
