// GENERATED FILE, do not edit: clients/typescript/dist/resume.js (npm run build in
// clients/typescript), copied by examples/chat/e2e/sync-client.mjs, which
// regenerates it. The chat server compiles it in; its e2e test fails when
// it differs from a fresh build.
/**
 * What a 2.1 client keeps across a page reload (docs/protocol.md 14.2.1,
 * 14.3, 14.4): its client-instance id, the session its state belongs to,
 * the stream positions and the keyed requests still waiting for an answer.
 * Kept in one item of a Web Storage (sessionStorage in browsers), written
 * at most once per microtask.
 *
 * **Duplicated tabs.** A browser copies a tab's sessionStorage when the tab
 * is duplicated, and no two client instances may share an instance id. The
 * stored state carries a `live` flag: set while a page's client holds the
 * state, cleared on `pagehide` (and when the client is closed), set again
 * on `pageshow`. A reloaded page finds it cleared (its old page was hidden
 * first) and keeps the id and the pending requests; a duplicated tab finds
 * it set (the original tab still runs) and mints a fresh id and drops the
 * copied pending requests, which belong to the original tab. Limits: a page
 * that ended without `pagehide` (a crash; a browser restoring its tabs)
 * looks duplicated, so it starts with a fresh id and its pending requests
 * are dropped unanswered (never run twice: a fresh id has nothing to
 * retry); one page with two clients for the same URL and storage item must
 * give them different item names.
 *
 * @module
 */
import { KeyedLedger } from './keyed.js';
import { StreamTracker } from './streams.js';
/** Random bytes of a client-instance id (docs/protocol.md asks for at least 96 bits). */
const INSTANCE_ID_BYTES = 16;
/** A fresh client-instance id: 16 random bytes as 22 characters of unpadded base64url (printable). */
export function newInstanceId() {
    const bytes = new Uint8Array(INSTANCE_ID_BYTES);
    globalThis.crypto.getRandomValues(bytes);
    let s = '';
    for (const b of bytes)
        s += String.fromCharCode(b);
    return btoa(s).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');
}
/** Whether a stored id can be used: 16..=64 bytes of printable ASCII. */
function validInstanceId(id) {
    return typeof id === 'string' && id.length >= 16 && id.length <= 64 && /^[\x20-\x7e]*$/.test(id);
}
/**
 * The client's resumable state, with its storage. Without a storage it
 * lives in memory only.
 */
export class ResumeState {
    /** The client-instance id sent in ExtensionHello. */
    instanceId;
    /** Whether the stored state was found held by another page (a duplicated tab). */
    duplicated;
    /** The session the positions and keyed requests belong to (its key), or null. */
    session = null;
    ledger = new KeyedLedger();
    streams = new StreamTracker();
    storage;
    itemName;
    onError;
    live = true;
    scheduled = false;
    lifecycle = null;
    onHide = () => {
        this.live = false;
        this.flush();
    };
    onShow = () => {
        this.live = true;
        this.flush();
    };
    constructor(storage, itemName, lifecycle, onError) {
        this.storage = storage;
        this.itemName = itemName;
        this.onError = onError;
        let stored = null;
        if (storage !== null) {
            try {
                const text = storage.getItem(itemName);
                if (text !== null)
                    stored = JSON.parse(text);
            }
            catch (e) {
                onError(e instanceof Error ? e : new Error(String(e)));
            }
        }
        const usable = stored !== null && typeof stored === 'object' && stored.v === 1 && validInstanceId(stored.instanceId);
        this.duplicated = usable && stored.live === true;
        if (usable && !this.duplicated) {
            this.instanceId = stored.instanceId;
            this.session = typeof stored.session === 'string' ? stored.session : null;
            this.ledger.loadStored(stored.next, stored.keyed);
        }
        else {
            this.instanceId = newInstanceId();
            // A duplicated tab keeps its copy's session and positions (they only say
            // where to resume), but not the keyed requests: the original tab owns them.
            if (this.duplicated)
                this.session = typeof stored.session === 'string' ? stored.session : null;
        }
        if (usable)
            this.streams.loadStored(stored.streams);
        if (lifecycle !== null) {
            lifecycle.addEventListener('pagehide', this.onHide);
            lifecycle.addEventListener('pageshow', this.onShow);
            this.lifecycle = lifecycle;
        }
        this.flush();
    }
    /** Writes the state at the end of the current microtask (several changes, one write). */
    save() {
        if (this.storage === null || this.scheduled)
            return;
        this.scheduled = true;
        queueMicrotask(() => {
            if (this.scheduled)
                this.flush();
        });
    }
    /** Writes the state now. */
    flush() {
        this.scheduled = false;
        if (this.storage === null)
            return;
        const ledger = this.ledger.toStored();
        const stored = {
            v: 1,
            live: this.live,
            instanceId: this.instanceId,
            session: this.session,
            streams: this.streams.toStored(),
            next: ledger.next,
            keyed: ledger.entries,
        };
        try {
            this.storage.setItem(this.itemName, JSON.stringify(stored));
        }
        catch (e) {
            this.onError(e instanceof Error ? e : new Error(String(e)));
        }
    }
    /** The client is closed: the state is written as not held by any page, and page events are no longer followed. */
    release() {
        this.live = false;
        this.flush();
        if (this.lifecycle !== null) {
            this.lifecycle.removeEventListener('pagehide', this.onHide);
            this.lifecycle.removeEventListener('pageshow', this.onShow);
            this.lifecycle = null;
        }
    }
}
/**
 * The default storage of the resumable state: `sessionStorage` where it is
 * usable, none elsewhere (memory only).
 */
export function defaultResumeStorage() {
    try {
        const storage = globalThis.sessionStorage;
        if (storage !== undefined && storage !== null) {
            const probe = '__webwire_probe__';
            storage.setItem(probe, probe);
            storage.removeItem(probe);
            return storage;
        }
    }
    catch {
        // unusable (sandboxed frame, privacy mode): memory only
    }
    return null;
}
/** The default page lifecycle: the global object when it has page events (`window`), else none. */
export function defaultPageLifecycle() {
    const g = globalThis;
    if (typeof g.addEventListener === 'function' && typeof g.removeEventListener === 'function' && g.document !== undefined) {
        return g;
    }
    return null;
}
