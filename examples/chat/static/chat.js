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
const { WebwireClient, LocalStorageSessionStore, RequestError } = ww;

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
    banner.textContent = everConnected
      ? 'Disconnected from the server — reconnecting…'
      : 'Connecting to the server…';
  }
  $('say-form').querySelector('button').disabled = !connected;

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
    void sync();
  }
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
  // Cleared at once, so that typing on is not lost; put back if sending fails.
  input.value = '';
  try {
    // It also comes back as a signal, like everybody else's messages.
    addMessage(await requestJson('say', { text }));
  } catch (e) {
    error.textContent = describe(e);
    if (input.value === '') input.value = text;
  }
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
