// The chat page: plain JavaScript on the webwire TypeScript client (its
// built dist/, served by the chat server under /webwire/).
//
// The session key is kept in localStorage, so the page stays signed in
// across reloads and server restarts (the server keeps sessions in files).

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
const { WebwireClient, LocalStorageSessionStore, RequestError, DisconnectedError, TimeoutError } = ww;

const wsUrl = `${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.host}/ws`;
const client = new WebwireClient(wsUrl, {
  sessionStore: new LocalStorageSessionStore('webwire-chat:session'),
  reconnect: { initialDelay: 250, maxDelay: 2000 },
  timeout: 10_000,
});
// For the browser console.
window.chat = { client };

let everConnected = false;
/** Message ids on the page, so that a history fetched after a reconnection adds only what is missing. */
const shown = new Set();
/**
 * Messages typed and not yet confirmed by the server, oldest first, each
 * shown as pending: `{ text, li, sentWhenShown }`. They are sent one at a
 * time, in order, while connected; what is typed while disconnected waits
 * here and goes out after the reconnection. `sentWhenShown` is set when a
 * send was cut off by the connection: the server may have got it, so after
 * reconnecting it is only sent again if it is not in the history then.
 */
const outbox = [];
let flushing = false;

function myName() {
  const name = client.sessionInfo('name');
  return typeof name === 'string' ? name : null;
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
    const waiting = outbox.length === 0 ? '' : ` ${outbox.length} message${outbox.length === 1 ? '' : 's'} will be sent then.`;
    banner.textContent = everConnected
      ? `Disconnected from the server — reconnecting…${waiting}`
      : 'Connecting to the server…';
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

/** Adds a message unless it is on the page already, in time order. */
function addMessage(message) {
  if (shown.has(message.id)) return;
  shown.add(message.id);
  const li = document.createElement('li');
  li.dataset.id = message.id;
  li.dataset.at = String(message.at);
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

  const list = $('messages');
  const atBottom = list.scrollHeight - list.scrollTop - list.clientHeight < 40;
  let before = null;
  for (let node = list.lastElementChild; node !== null; node = node.previousElementSibling) {
    if (Number(node.dataset.at) <= message.at) break;
    before = node;
  }
  list.insertBefore(li, before);
  if (atBottom) list.scrollTop = list.scrollHeight;
}

/** Shows a message typed but not yet confirmed, below the others. */
function showPending(text) {
  const li = document.createElement('li');
  li.className = 'pending mine';
  const from = document.createElement('span');
  from.className = 'from';
  from.textContent = myName() ?? '';
  const body = document.createElement('span');
  body.className = 'text';
  body.textContent = text;
  const mark = document.createElement('span');
  mark.className = 'pending-mark';
  li.append(from, body, mark);
  const list = $('messages');
  list.append(li);
  list.scrollTop = list.scrollHeight;
  return li;
}

function markPending(item) {
  item.li.querySelector('.pending-mark').textContent =
    client.status() === 'connected' ? 'sending…' : 'pending: sent once reconnected';
}

/** Did a message with this text from me reach the page since `before`? */
function arrivedSince(text, before) {
  const me = myName();
  return [...$('messages').querySelectorAll('li:not(.pending)')].some(
    (li) => !before.has(li.dataset.id) && li.querySelector('.from').textContent === me && li.querySelector('.text').textContent === text,
  );
}

/** Sends the outbox in order while connected; stops at the first lost connection. */
async function flush() {
  if (flushing) return;
  flushing = true;
  try {
    while (outbox.length > 0 && client.status() === 'connected') {
      const item = outbox[0];
      if (item.sentWhenShown !== null && arrivedSince(item.text, item.sentWhenShown)) {
        // The server had it before the connection was lost.
        outbox.shift();
        item.li.remove();
        continue;
      }
      markPending(item);
      const before = new Set(shown);
      try {
        const message = await requestJson('say', { text: item.text });
        outbox.shift();
        item.li.remove();
        addMessage(message);
      } catch (e) {
        if (e instanceof DisconnectedError || e instanceof TimeoutError) {
          // Maybe sent: checked against the history after reconnecting.
          item.sentWhenShown = before;
          markPending(item);
          break;
        }
        // Refused (too long, signed out, ...): not sent, and said why.
        outbox.shift();
        item.li.remove();
        $('say-error').textContent = describe(e);
        const input = $('text');
        if (input.value === '') input.value = item.text;
      }
    }
  } finally {
    flushing = false;
    render();
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

/** After signing in or reconnecting: the messages missed, and who is online. */
async function sync() {
  if (myName() === null) return;
  try {
    const [history, presence] = await Promise.all([requestJson('history', {}), requestJson('who', {})]);
    for (const message of history.messages) addMessage(message);
    showOnline(presence.online);
  } catch (e) {
    console.warn('sync failed', e);
  }
}

client.on('status', (status) => {
  if (status === 'connected') {
    everConnected = true;
    // The history first, so that a message cut off in flight is not sent twice.
    void sync().then(flush);
  }
  for (const item of outbox) markPending(item);
  render();
});
client.on('sessionCreated', render);
client.on('sessionRestored', render);
client.on('sessionClosed', () => {
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
  if (signal.name === 'message') addMessage(value);
  else if (signal.name === 'presence') showOnline(value.online);
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
    await sync();
    $('text').focus();
  } catch (e) {
    error.textContent = describe(e);
  }
});

$('say-form').addEventListener('submit', async (event) => {
  event.preventDefault();
  const input = $('text');
  const error = $('say-error');
  error.textContent = '';
  const text = input.value;
  if (text.trim() === '') return;
  // Cleared at once, so that typing on is not lost; put back if the server
  // refuses it. Shown as pending until the server confirms it (also while
  // disconnected: it is sent after the reconnection). It also comes back
  // as a signal, like everybody else's messages.
  input.value = '';
  const item = { text, li: showPending(text), sentWhenShown: null };
  outbox.push(item);
  markPending(item);
  render();
  await flush();
});

$('logout').addEventListener('click', async () => {
  try {
    await requestJson('logout', {});
  } catch (e) {
    $('say-error').textContent = describe(e);
  }
});

render();
client.connect().catch(() => {
  // Keeps trying in the background; the banner says so.
});
