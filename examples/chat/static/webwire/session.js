// GENERATED FILE, do not edit: clients/typescript/dist/session.js (npm run build in
// clients/typescript), copied by examples/chat/e2e/sync-client.mjs, which
// regenerates it. The chat server compiles it in; its e2e test fails when
// it differs from a fresh build.
/**
 * Sessions: the session JSON of docs/protocol.md section 8, and the pluggable
 * store that keeps the session key across reconnections and page loads.
 *
 * @module
 */
import { ProtocolError } from './errors.js';
const RFC3339 = /^(\d{4}-\d{2}-\d{2})[Tt ](\d{2}:\d{2}:\d{2})(?:\.(\d+))?([Zz]|[+-]\d{2}:\d{2})$/;
/**
 * Parses an RFC 3339 time (any number of fractional digits; JavaScript keeps
 * milliseconds).
 */
export function parseRfc3339(text) {
    const m = RFC3339.exec(text);
    if (m === null)
        throw new ProtocolError(`invalid RFC 3339 time ${JSON.stringify(text)}`);
    const millis = (m[3] ?? '').padEnd(3, '0').slice(0, 3);
    const zone = m[4] === 'z' ? 'Z' : m[4];
    const date = new Date(`${m[1]}T${m[2]}.${millis}${zone}`);
    if (Number.isNaN(date.getTime()))
        throw new ProtocolError(`invalid RFC 3339 time ${JSON.stringify(text)}`);
    return date;
}
/**
 * Parses the session JSON `{"k": key, "c": creation, "l": last lookup, "i": info}`.
 *
 * @throws ProtocolError when the JSON is malformed or a field is missing or of the wrong type.
 */
export function parseSessionJson(json) {
    let value;
    try {
        value = JSON.parse(json);
    }
    catch {
        throw new ProtocolError('the session is not valid JSON');
    }
    if (typeof value !== 'object' || value === null || Array.isArray(value)) {
        throw new ProtocolError('the session JSON is not an object');
    }
    const obj = value;
    const { k, c, l, i } = obj;
    if (typeof k !== 'string' || k.length === 0)
        throw new ProtocolError('the session JSON has no key "k"');
    if (typeof c !== 'string')
        throw new ProtocolError('the session JSON has no creation time "c"');
    if (typeof l !== 'string')
        throw new ProtocolError('the session JSON has no last-lookup time "l"');
    let info = null;
    if (i !== undefined && i !== null) {
        if (typeof i !== 'object' || Array.isArray(i))
            throw new ProtocolError('the session info "i" is not an object');
        info = i;
    }
    return { key: k, creation: parseRfc3339(c), lastLookup: parseRfc3339(l), info };
}
/** A deep copy of a session, so that callers cannot change the client's state. */
export function copySession(session) {
    return {
        key: session.key,
        creation: new Date(session.creation.getTime()),
        lastLookup: new Date(session.lastLookup.getTime()),
        info: session.info === null ? null : JSON.parse(JSON.stringify(session.info)),
    };
}
/** Keeps the session key in memory (the default outside browsers). */
export class MemorySessionStore {
    key;
    constructor(key = null) {
        this.key = key;
    }
    load() {
        return this.key;
    }
    save(key) {
        this.key = key;
    }
    clear() {
        this.key = null;
    }
}
/**
 * Keeps the session key in `localStorage` (or any Web Storage) under one
 * item name, so that it survives page reloads and is shared by the tabs of
 * one origin.
 */
export class LocalStorageSessionStore {
    storage;
    /** The storage item's name. */
    itemName;
    constructor(itemName, storage) {
        const s = storage ?? globalThis.localStorage;
        if (s === undefined)
            throw new TypeError('no localStorage available; pass a storage');
        this.storage = s;
        this.itemName = itemName;
    }
    load() {
        return this.storage.getItem(this.itemName);
    }
    save(key) {
        this.storage.setItem(this.itemName, key);
    }
    clear() {
        this.storage.removeItem(this.itemName);
    }
}
/**
 * The default store for a server URL: localStorage-backed (item
 * `webwire:<url>`) where `localStorage` is usable, in memory elsewhere.
 */
export function defaultSessionStore(url) {
    try {
        const storage = globalThis.localStorage;
        if (storage !== undefined && storage !== null) {
            // Probe: Safari private mode and sandboxed frames throw on access.
            const probe = '__webwire_probe__';
            storage.setItem(probe, probe);
            storage.removeItem(probe);
            return new LocalStorageSessionStore(`webwire:${url}`, storage);
        }
    }
    catch {
        // fall through to memory
    }
    return new MemorySessionStore();
}
