/**
 * Sessions: the session JSON of docs/protocol.md section 8, and the pluggable
 * store that keeps the session key across reconnections and page loads.
 *
 * @module
 */

import { ProtocolError } from './errors.js';

/** A snapshot of the client's session. */
export interface Session {
  /** The session key (printable ASCII). */
  key: string;
  /** When the server created the session. */
  creation: Date;
  /** When the server last looked the session up. */
  lastLookup: Date;
  /** The application's info object, or null when the session has none. */
  info: Record<string, unknown> | null;
}

const RFC3339 = /^(\d{4}-\d{2}-\d{2})[Tt ](\d{2}:\d{2}:\d{2})(?:\.(\d+))?([Zz]|[+-]\d{2}:\d{2})$/;

/**
 * Parses an RFC 3339 time (any number of fractional digits; JavaScript keeps
 * milliseconds).
 */
export function parseRfc3339(text: string): Date {
  const m = RFC3339.exec(text);
  if (m === null) throw new ProtocolError(`invalid RFC 3339 time ${JSON.stringify(text)}`);
  const millis = (m[3] ?? '').padEnd(3, '0').slice(0, 3);
  const zone = m[4] === 'z' ? 'Z' : m[4];
  const date = new Date(`${m[1]}T${m[2]}.${millis}${zone}`);
  if (Number.isNaN(date.getTime())) throw new ProtocolError(`invalid RFC 3339 time ${JSON.stringify(text)}`);
  return date;
}

/**
 * Parses the session JSON `{"k": key, "c": creation, "l": last lookup, "i": info}`.
 *
 * @throws ProtocolError when the JSON is malformed or a field is missing or of the wrong type.
 */
export function parseSessionJson(json: string): Session {
  let value: unknown;
  try {
    value = JSON.parse(json);
  } catch {
    throw new ProtocolError('the session is not valid JSON');
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw new ProtocolError('the session JSON is not an object');
  }
  const obj = value as Record<string, unknown>;
  const { k, c, l, i } = obj;
  if (typeof k !== 'string' || k.length === 0) throw new ProtocolError('the session JSON has no key "k"');
  if (typeof c !== 'string') throw new ProtocolError('the session JSON has no creation time "c"');
  if (typeof l !== 'string') throw new ProtocolError('the session JSON has no last-lookup time "l"');
  let info: Record<string, unknown> | null = null;
  if (i !== undefined && i !== null) {
    if (typeof i !== 'object' || Array.isArray(i)) throw new ProtocolError('the session info "i" is not an object');
    info = i as Record<string, unknown>;
  }
  return { key: k, creation: parseRfc3339(c), lastLookup: parseRfc3339(l), info };
}

/** A deep copy of a session, so that callers cannot change the client's state. */
export function copySession(session: Session): Session {
  return {
    key: session.key,
    creation: new Date(session.creation.getTime()),
    lastLookup: new Date(session.lastLookup.getTime()),
    info: session.info === null ? null : (JSON.parse(JSON.stringify(session.info)) as Record<string, unknown>),
  };
}

/**
 * Where the client keeps the key of its current session, so that it can
 * restore the session after a reconnection (and, with a persistent store,
 * after a page reload). Methods may be synchronous or return promises.
 */
export interface SessionStore {
  /** The stored session key, or null. */
  load(): string | null | Promise<string | null>;
  /** Stores the key of the current session. */
  save(key: string): void | Promise<void>;
  /** Forgets the stored key. */
  clear(): void | Promise<void>;
}

/** Keeps the session key in memory (the default outside browsers). */
export class MemorySessionStore implements SessionStore {
  private key: string | null;

  constructor(key: string | null = null) {
    this.key = key;
  }

  load(): string | null {
    return this.key;
  }

  save(key: string): void {
    this.key = key;
  }

  clear(): void {
    this.key = null;
  }
}

/** The subset of the Web Storage API the localStorage store uses. */
export interface StorageLike {
  getItem(key: string): string | null;
  setItem(key: string, value: string): void;
  removeItem(key: string): void;
}

/**
 * Keeps the session key in `localStorage` (or any Web Storage) under one
 * item name, so that it survives page reloads and is shared by the tabs of
 * one origin.
 */
export class LocalStorageSessionStore implements SessionStore {
  private readonly storage: StorageLike;
  /** The storage item's name. */
  readonly itemName: string;

  constructor(itemName: string, storage?: StorageLike) {
    const s = storage ?? (globalThis as { localStorage?: StorageLike }).localStorage;
    if (s === undefined) throw new TypeError('no localStorage available; pass a storage');
    this.storage = s;
    this.itemName = itemName;
  }

  load(): string | null {
    return this.storage.getItem(this.itemName);
  }

  save(key: string): void {
    this.storage.setItem(this.itemName, key);
  }

  clear(): void {
    this.storage.removeItem(this.itemName);
  }
}

/**
 * The default store for a server URL: localStorage-backed (item
 * `webwire:<url>`) where `localStorage` is usable, in memory elsewhere.
 */
export function defaultSessionStore(url: string): SessionStore {
  try {
    const storage = (globalThis as { localStorage?: StorageLike }).localStorage;
    if (storage !== undefined && storage !== null) {
      // Probe: Safari private mode and sandboxed frames throw on access.
      const probe = '__webwire_probe__';
      storage.setItem(probe, probe);
      storage.removeItem(probe);
      return new LocalStorageSessionStore(`webwire:${url}`, storage);
    }
  } catch {
    // fall through to memory
  }
  return new MemorySessionStore();
}
