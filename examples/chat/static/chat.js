// The chat page: plain JavaScript on the webwire TypeScript client (its
// built dist/, served by the chat server under /webwire/).
//
// The session key is kept in localStorage, so the page stays signed in
// across reloads and server restarts (the server keeps sessions in files).
// webwire 2.1: the room's messages are a stream; the client resumes it after
// a reconnect or a reload (in order, once), sends a message typed offline
// once after the reconnect (a keyed request: never run twice), and says
// what is lost for good (streamLoss), when the page shows a notice.

const $ = (id) => document.getElementById(id);
const body = document.body;
const banner = $('banner');

let ww;
try {
  ww = await import('/webwire/index.js');
} catch (e) {
  banner.textContent =
    'The webwire client (/webwire/index.js) did not load: reload; a server started with --client-dir needs "npm ci && npm run build" in clients/typescript.';
  body.dataset.state = 'broken';
  throw e;
}
const { WebwireClient, LocalStorageSessionStore, RequestError, OutcomeUnknownError } = ww;

const ROOM = 'chat:lobby';
const wsUrl = `${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.host}/ws`;
const sessionStore = new LocalStorageSessionStore('webwire-chat:session');
/** The name the stored session was signed in with (for a page loaded while offline). */
const NAME_ITEM = 'webwire-chat:name';
const client = new WebwireClient(wsUrl, {
  sessionStore,
  reconnect: { initialDelay: 250, maxDelay: 2000 },
  timeout: 10_000,
});
/**
 * What the page saw, for the browser console and the end-to-end test:
 * `duplicateSignals` counts stream signals of a message the page had got as
 * a signal already (the client promises none), `losses` the StreamLoss
 * events.
 */
const stats = { duplicateSignals: 0, losses: 0 };
window.chat = { client, stats };

let everConnected = false;
/**
 * The room's messages on the page, by their place in the room's stream,
 * `epoch:offset`: the history reply, the stream's signals and the replies to
 * `say` all name a message by it, so each is shown once, in the stream's
 * order. Epochs in the order first seen (a server that lost its history
 * starts a new one, shown after the old).
 */
const byPlace = new Map();
const epochs = [];

/**
 * The signed-in name: the session's, or, before the page is connected
 * (reloaded while offline), the one remembered with the stored session key,
 * so that the room and what waits to be sent show at once. A session the
 * server no longer knows clears the key, and the sign-in form shows.
 */
function myName() {
  const name = client.sessionInfo('name');
  if (typeof name === 'string') {
    if (localStorage.getItem(NAME_ITEM) !== name) localStorage.setItem(NAME_ITEM, name);
    return name;
  }
  if (client.status() !== 'connected' && sessionStore.load() !== null) return localStorage.getItem(NAME_ITEM);
  return null;
}

/** The messages typed and not yet answered (shown as pending). */
function pendingCount() {
  return $('messages').querySelectorAll('li.pending:not(.unknown)').length;
}

/** Shows the sign-in form or the room, and the connection banner. */
function render() {
  const status = client.status();
  const connected = status === 'connected';
  body.dataset.connection = status;
  body.classList.toggle('offline', !connected);
  if (connected) {
    banner.hidden = true;
  } else {
    banner.hidden = false;
    const count = pendingCount();
    const waiting = count === 0 ? '' : ` ${count} message${count === 1 ? '' : 's'} will be sent then.`;
    banner.textContent = everConnected
      ? `Disconnected from the server — reconnecting…${waiting}`
      : `Connecting to the server…${waiting}`;
  }
  for (const li of $('messages').querySelectorAll('li.pending:not(.unknown) .pending-mark')) {
    li.textContent = connected ? 'sending…' : 'pending: sent once reconnected';
  }

  const name = myName();
  if (name !== null) {
    body.dataset.state = 'chat';
    $('signin').hidden = true;
    $('chat').hidden = false;
    $('me').hidden = false;
    $('my-name').textContent = name;
  } else if (everConnected) {
    body.dataset.state = 'signin';
    $('signin').hidden = false;
    $('chat').hidden = true;
    $('me').hidden = true;
  }
}

function formatTime(at) {
  return new Date(at).toLocaleTimeString([], { hour: '2-digit', minute: '2-digit', second: '2-digit' });
}

/** The sort key of an entry of the list: its epoch's rank, then its offset. */
function rank(epoch, offset) {
  let index = epochs.indexOf(epoch);
  if (index < 0) {
    epochs.push(epoch);
    index = epochs.length - 1;
  }
  return [index, offset];
}

/** Puts `li` (with `data-rank`) among the messages and notices in order, above the pending ones. */
function place(li, [epochRank, offset]) {
  li.dataset.epochRank = String(epochRank);
  li.dataset.offset = String(offset);
  const list = $('messages');
  const atBottom = list.scrollHeight - list.scrollTop - list.clientHeight < 40;
  let before = null;
  for (let node = list.lastElementChild; node !== null; node = node.previousElementSibling) {
    if (node.classList.contains('pending')) {
      before = node;
      continue;
    }
    const r = Number(node.dataset.epochRank);
    if (r < epochRank || (r === epochRank && Number(node.dataset.offset) <= offset)) break;
    before = node;
  }
  list.insertBefore(li, before);
  if (atBottom) list.scrollTop = list.scrollHeight;
}

/**
 * Shows a message of the room at its place in the stream, unless it is
 * there already. `via`: 'signal', 'history' or 'reply'.
 */
function addMessage(epoch, offset, message, via) {
  const key = `${epoch}:${offset}`;
  const known = byPlace.get(key);
  if (known !== undefined) {
    if (via === 'signal') {
      if (known.dataset.via === 'signal') stats.duplicateSignals += 1;
      known.dataset.via = 'signal';
    }
    return;
  }
  const li = document.createElement('li');
  li.className = 'message';
  li.dataset.id = message.id;
  li.dataset.via = via;
  if (message.from === myName()) li.classList.add('mine');
  const time = document.createElement('span');
  time.className = 'time';
  time.textContent = formatTime(message.at);
  const from = document.createElement('span');
  from.className = 'from';
  from.textContent = message.from;
  const text = document.createElement('span');
  text.className = 'text';
  text.textContent = message.text;
  li.append(time, from, text);
  byPlace.set(key, li);
  place(li, rank(epoch, offset));
}

/** A notice in the list, where the stream lost something. */
function addNotice(text, epoch, offset) {
  const li = document.createElement('li');
  li.className = 'notice';
  li.setAttribute('role', 'status');
  li.textContent = text;
  place(li, rank(epoch, offset));
}

function clearMessages() {
  byPlace.clear();
  epochs.length = 0;
  $('messages').replaceChildren();
}

/** Shows a message typed and not yet answered, below the others. */
function showPending(text) {
  const li = document.createElement('li');
  li.className = 'pending mine';
  const from = document.createElement('span');
  from.className = 'from';
  from.textContent = myName() ?? '';
  const span = document.createElement('span');
  span.className = 'text';
  span.textContent = text;
  const mark = document.createElement('span');
  mark.className = 'pending-mark';
  li.append(from, span, mark);
  const list = $('messages');
  list.append(li);
  list.scrollTop = list.scrollHeight;
  return li;
}

/**
 * The answer of a `say` came: the pending line goes and the message takes
 * its place in the stream; or, when the server cannot say whether it ran
 * (OutcomeUnknownError), the line stays, marked, and is not sent again.
 */
function settlePending(li, reply, error) {
  if (reply !== null) {
    li.remove();
    const said = JSON.parse(reply.text);
    addMessage(said.epoch, said.offset, said, 'reply');
  } else if (error instanceof OutcomeUnknownError) {
    li.classList.add('unknown');
    li.querySelector('.pending-mark').textContent = 'not confirmed: may not have been sent';
  } else {
    li.remove();
    $('say-error').textContent = describe(error);
    const input = $('text');
    if (input.value === '') input.value = li.querySelector('.text').textContent;
  }
  render();
}

/** Sends a message; shown as pending until the server answers (also while disconnected: the client sends it once after the reconnection). */
async function say(text) {
  const li = showPending(text);
  render();
  try {
    // No timeout: a keyed request waits for the connection, kept across a
    // reload, and gets exactly one answer.
    const reply = await client.request('say', JSON.stringify({ text }), { timeout: Infinity });
    settlePending(li, reply, null);
  } catch (e) {
    settlePending(li, null, e);
  }
}

function showOnline(online) {
  const list = $('online');
  list.replaceChildren(
    ...online.map((name) => {
      const li = document.createElement('li');
      li.textContent = name;
      return li;
    }),
  );
  $('online-count').textContent = `(${online.length})`;
}

function describe(error) {
  if (error instanceof RequestError) return error.message;
  return error && error.message ? error.message : String(error);
}

async function requestJson(name, value) {
  const reply = await client.request(name, JSON.stringify(value ?? {}));
  return reply.text === '' ? null : JSON.parse(reply.text);
}

/** The room's history, from its stream, merged with what the page has. */
async function loadHistory() {
  if (myName() === null) return;
  try {
    const history = await requestJson('history', { limit: 100 });
    for (const m of history.messages) addMessage(m.epoch, m.offset, m, 'history');
  } catch (e) {
    console.warn('loading the history failed', e);
  }
}

async function refreshOnline() {
  if (myName() === null) return;
  try {
    showOnline((await requestJson('who', {})).online);
  } catch (e) {
    console.warn('who failed', e);
  }
}

client.on('status', (status) => {
  if (status === 'connected') {
    everConnected = true;
    void refreshOnline();
  }
  render();
});
let historyLoaded = false;
client.on('sessionCreated', () => {
  clearMessages();
  historyLoaded = true;
  render();
  void loadHistory();
});
client.on('sessionRestored', () => {
  render();
  // The first restore of this page (a reload): the stream's signals bring
  // what came since the page last saw; the history, what it showed before.
  if (!historyLoaded) {
    historyLoaded = true;
    void loadHistory();
  }
});
client.on('sessionClosed', () => {
  localStorage.removeItem(NAME_ITEM);
  clearMessages();
  historyLoaded = false;
  render();
  $('name').focus();
});
client.on('signal', (signal) => {
  let value;
  try {
    value = JSON.parse(signal.text);
  } catch {
    return;
  }
  if (signal.name === 'message') {
    if (signal.stream?.kind === 'room' && signal.stream.room === ROOM) {
      addMessage(signal.epoch.toString(), Number(signal.offset), value, 'signal');
    } else {
      // A 2.0 connection: no place in the stream; shown at the end.
      addMessage('2.0', Number.MAX_SAFE_INTEGER - byPlace.size, value, 'signal');
    }
  } else if (signal.name === 'presence') showOnline(value.online);
});
client.on('streamLoss', (loss) => {
  if (loss.stream.kind !== 'room' || loss.stream.room !== ROOM) return;
  stats.losses += 1;
  const epoch = loss.epoch.toString();
  const what =
    loss.reason === 'trimmed'
      ? 'Older messages you missed are no longer kept by the server.'
      : loss.reason === 'epochChanged'
        ? 'The server lost its message history (it restarted): messages may be missing here.'
        : loss.reason === 'ahead'
          ? 'The server lost its latest messages: some shown above may be gone.'
          : 'The room could not be resumed: reloading it.';
  if (loss.reason === 'ahead') {
    // Those offsets will name other messages: forget the old ones' places.
    for (let o = loss.lostFrom; o <= loss.lostTo; o++) byPlace.delete(`${epoch}:${o}`);
  }
  if (loss.reason === 'unknownStream') addNotice(what, epochs.at(-1) ?? '', Number.MAX_SAFE_INTEGER);
  else addNotice(what, epoch, Number(loss.next) - 0.5);
  void loadHistory();
});
client.on('orphanedReply', (orphan) => {
  // The answer of a message sent before this page was reloaded.
  const li = $('messages').querySelector(`li.pending[data-seq="${orphan.seq}"]`);
  if (orphan.name !== 'say') return;
  if (li !== null) settlePending(li, orphan.reply, orphan.error);
  else if (orphan.reply !== null) {
    const said = JSON.parse(orphan.reply.text);
    addMessage(said.epoch, said.offset, said, 'reply');
  }
});

$('signin-form').addEventListener('submit', async (event) => {
  event.preventDefault();
  const input = $('name');
  const error = $('signin-error');
  error.textContent = '';
  try {
    await requestJson('login', { name: input.value });
    input.value = '';
    render();
    await refreshOnline();
    $('text').focus();
  } catch (e) {
    error.textContent = describe(e);
  }
});

$('say-form').addEventListener('submit', (event) => {
  event.preventDefault();
  const input = $('text');
  $('say-error').textContent = '';
  const text = input.value;
  if (text.trim() === '') return;
  // Cleared at once, so that typing on is not lost; put back if the server
  // refuses it.
  input.value = '';
  void say(text);
});

$('logout').addEventListener('click', async () => {
  try {
    await requestJson('logout', {});
  } catch (e) {
    $('say-error').textContent = describe(e);
  }
});

// Messages sent before a reload and not yet answered: the client sends them
// again (same key: never run twice); their answers come as orphanedReply.
for (const p of client.pendingKeyed()) {
  if (p.name !== 'say') continue;
  let text = '';
  try {
    text = JSON.parse(p.request.text).text;
  } catch {
    continue;
  }
  showPending(text).dataset.seq = String(p.seq);
}

render();
client.connect().catch(() => {
  // Keeps trying in the background; the banner says so.
});
