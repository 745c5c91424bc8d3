// Browser end-to-end test of the chat example: nothing lost or doubled
// across a cut connection or a reload (webwire 2.1 streams and keyed
// requests, as the page uses them).
//
// Ann's page is loaded through the fault proxy (tools/webwire-faultproxy),
// so her WebSocket runs through it; Bob's page talks to the server
// directly. While Bob sends messages, the proxy drops Ann's TCP connection
// (`cut`: the page learns of it only by the socket closing), several
// times, mid-flow; then keeps her cut off for a while (`wild`: every
// reconnection dies at its first byte), when she types a message that must
// show as pending; then lets her back (`calm`). Then Ann reloads while Bob
// sends, and reloads while cut off with a message pending. Last, both talk
// while a second proxy, between the first and the server, cuts her
// connection at seeded byte counts in both directions. After each part
// both pages must show the same messages, every one of them once, in the
// order sent; Ann's messages reach Bob once.
//
// Needs Debian's chromium, like chat.test.mjs. The binaries are
// CHAT_SERVER_BIN and WEBWIRE_FAULTPROXY_BIN, or built here with
// `cargo build --release -p webwire-chat -p webwire-faultproxy`. Without
// chromium the test skips, unless CI=true, where it fails.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  PATIENCE,
  bannerShown,
  connectedAgain,
  countMessages,
  inCi,
  kill,
  launchBrowser,
  pendingTexts,
  proxyBinary,
  say,
  seesMessage,
  serverBinary,
  signIn,
  skipReason,
  startProxy,
  startServer,
} from './harness.mjs';

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** The messages the page shows (not the pending ones), in order: `from: text`, with their ids. */
function shownMessages(page) {
  return page.evaluate(() =>
    [...document.querySelectorAll('#messages li.message:not(.pending)')].map((li) => ({
      line: `${li.querySelector('.from').textContent}: ${li.querySelector('.text').textContent}`,
      id: li.dataset.id,
    })),
  );
}

/**
 * Ann and Bob show the same messages; each once (by id and by text); Bob's
 * in the order he sent them (`sent`), with `extra` among them once each.
 */
async function sameMessagesOnceInOrder(ann, bob, sent, extra, when) {
  const annSees = await shownMessages(ann);
  const bobSees = await shownMessages(bob);
  const annLines = annSees.map((m) => m.line);
  assert.deepEqual(annLines, bobSees.map((m) => m.line), `${when}: Ann and Bob show the same messages in the same order`);
  assert.equal(new Set(annSees.map((m) => m.id)).size, annSees.length, `${when}: no message id twice on Ann's page`);
  assert.equal(new Set(annLines).size, annLines.length, `${when}: no message twice on Ann's page: ${JSON.stringify(annLines)}`);
  const expected = new Set([...sent.map((t) => `Bob: ${t}`), ...extra]);
  assert.deepEqual(
    annLines.filter((line) => expected.has(line)),
    annLines,
    `${when}: nothing but what was sent`,
  );
  assert.deepEqual(
    annLines.filter((line) => line.startsWith('Bob: ')),
    sent.map((t) => `Bob: ${t}`),
    `${when}: every message of Bob's, once, in the order sent`,
  );
  for (const line of extra) assert.ok(annLines.includes(line), `${when}: ${line} is shown`);
  for (const page of [ann, bob]) {
    const stats = await page.evaluate(() => ({ ...window.chat.stats, notices: document.querySelectorAll('#messages li.notice').length }));
    assert.deepEqual(stats, { duplicateSignals: 0, losses: 0, notices: 0 }, `${when}: no doubled signal, no stream loss`);
  }
}

/** The proxy's counters (its `stats` command). */
async function proxyStats(proxy) {
  return JSON.parse(await proxy.command('stats'));
}

// Built before the test, whose time bound is for the browser part.
const binaries = skipReason() === null ? { server: serverBinary(), proxy: proxyBinary() } : null;

test('a page cut off or reloaded shows every message once, in order; what it typed offline is sent once', { timeout: 120_000 }, async (t) => {
  const reason = skipReason();
  if (reason !== null) {
    if (inCi) assert.fail(`CI=true but ${reason}`);
    t.skip(reason);
    return;
  }
  const { server: serverBin, proxy: proxyBin } = binaries;
  const sessionDir = mkdtempSync(join(tmpdir(), 'chat-e2e-cut-sessions-'));
  let server = null;
  let proxy = null;
  let chopper = null;
  let browser = null;
  try {
    server = await startServer(serverBin, '127.0.0.1:0', sessionDir);
    // Two proxies in a row: the inner one cuts at seeded byte counts
    // (mid-frame, with requests and signals on their way) when wild; the
    // outer one cuts at once when told, or keeps Ann cut off.
    chopper = await startProxy(proxyBin, new URL(server.url).host, { cutAfter: '300..2000', seed: 7 });
    proxy = await startProxy(proxyBin, chopper.addr);
    // A page whose document the test serves (route.fulfill, below) counts
    // as public to Chromium, which then blocks its WebSocket to the
    // loopback proxy (Local Network Access); everything here is loopback.
    browser = await launchBrowser(['--disable-features=LocalNetworkAccessChecks']);
    const ann = await (await browser.newContext()).newPage();
    const bob = await (await browser.newContext()).newPage();
    const errors = [];
    for (const page of [ann, bob]) page.on('pageerror', (e) => errors.push(e));
    // Ann through the proxy (the page, and so its WebSocket, on the
    // proxy's address), Bob straight to the server.
    await ann.goto(`http://${proxy.addr}/`);
    await bob.goto(server.url);
    await signIn(ann, 'Ann');
    await signIn(bob, 'Bob');

    const sent = [];
    const bobSays = async (text) => {
      sent.push(text);
      await say(bob, text);
    };
    await bobSays('before the cuts');
    await seesMessage(ann, 'Bob', 'before the cuts');

    // Cuts in the middle of the flow: some messages are on their way when
    // the connection drops, the next ones are sent while Ann reconnects.
    for (let round = 1; round <= 5; round++) {
      await connectedAgain(ann);
      await bobSays(`round ${round}, one`);
      await bobSays(`round ${round}, two`);
      const answer = await proxy.command('cut');
      const cut = Number(/^OK cut (\d+)$/.exec(answer)?.[1] ?? NaN);
      assert.ok(cut >= 1, `round ${round}: the cut dropped Ann's connection (${answer})`);
      await bobSays(`round ${round}, three`);
      await bobSays(`round ${round}, four`);
    }
    await bobSays('after the cuts');
    await seesMessage(bob, 'Bob', 'after the cuts');
    await seesMessage(ann, 'Bob', 'after the cuts');
    await sameMessagesOnceInOrder(ann, bob, sent, [], 'after five cuts');

    // Cut off for a while: every reconnection dies at its first byte.
    assert.equal(await proxy.command('wild'), 'OK wild');
    assert.match(await proxy.command('cut'), /^OK cut [1-9]/);
    await bannerShown(ann);
    const connectionsWhenCut = (await proxyStats(proxy)).connections;
    for (let i = 1; i <= 4; i++) await bobSays(`while Ann is cut off, ${i}`);
    await seesMessage(bob, 'Bob', 'while Ann is cut off, 4');
    await say(ann, 'Typed while cut off');
    await ann.waitForSelector('#messages li.pending', { timeout: PATIENCE });
    assert.deepEqual(await pendingTexts(ann), ['Typed while cut off']);
    assert.match(await ann.textContent('#messages li.pending .pending-mark'), /pending/);
    assert.match(await ann.textContent('#banner'), /1 message will be sent/);
    // The page keeps trying, and each try is cut.
    const deadline = Date.now() + PATIENCE;
    while ((await proxyStats(proxy)).connections < connectionsWhenCut + 2) {
      assert.ok(Date.now() < deadline, 'the page did not try to reconnect');
      await sleep(100);
    }
    assert.notEqual(await ann.getAttribute('body', 'data-connection'), 'connected');
    assert.equal(await countMessages(ann, 'Bob', 'while Ann is cut off, 1'), 0, 'nothing reached Ann while cut off');
    assert.equal(await countMessages(bob, 'Ann', 'Typed while cut off'), 0, 'nothing left Ann while cut off');

    // Back: what Ann missed comes in, her message goes out, once.
    assert.equal(await proxy.command('calm'), 'OK calm');
    await connectedAgain(ann);
    await seesMessage(ann, 'Bob', 'while Ann is cut off, 4');
    await ann.waitForSelector('#messages li.pending', { state: 'detached', timeout: PATIENCE });
    await seesMessage(bob, 'Ann', 'Typed while cut off');
    await bobSays('after Ann is back');
    await seesMessage(ann, 'Bob', 'after Ann is back');
    await seesMessage(bob, 'Bob', 'after Ann is back');
    await sameMessagesOnceInOrder(ann, bob, sent, ['Ann: Typed while cut off'], 'after being cut off');

    // A reload while Bob sends.
    const sending = (async () => {
      for (let i = 1; i <= 6; i++) {
        await bobSays(`during the reload, ${i}`);
        await sleep(80);
      }
    })();
    await seesMessage(ann, 'Bob', 'during the reload, 1');
    await ann.reload();
    await sending;
    await ann.waitForSelector('body[data-state="chat"]', { timeout: PATIENCE });
    await bobSays('after the reload');
    await seesMessage(ann, 'Bob', 'after the reload');
    await seesMessage(bob, 'Bob', 'after the reload');
    await sameMessagesOnceInOrder(ann, bob, sent, ['Ann: Typed while cut off'], 'after the reload');

    // Cut off again, Ann types, and reloads while still cut off: her page
    // comes from the server straight (the proxy would cut its loading
    // too), her WebSocket still through the proxy. The message she typed
    // is still pending after the reload, and sent once when she is back.
    const serverHost = new URL(server.url).host;
    await ann.route('**/*', async (route) => {
      const url = new URL(route.request().url());
      url.host = serverHost;
      await route.fulfill({ response: await route.fetch({ url: url.toString() }) });
    });
    assert.equal(await proxy.command('wild'), 'OK wild');
    assert.match(await proxy.command('cut'), /^OK cut [1-9]/);
    await bannerShown(ann);
    await say(ann, 'Typed, then reloaded, while cut off');
    await ann.waitForSelector('#messages li.pending', { timeout: PATIENCE });
    for (let i = 1; i <= 3; i++) await bobSays(`while Ann reloads cut off, ${i}`);
    await ann.reload();
    // The room shows before the page could connect, with what waits to be sent.
    await ann.waitForSelector('body[data-state="chat"]', { timeout: PATIENCE });
    assert.equal(await ann.textContent('#my-name'), 'Ann');
    assert.notEqual(await ann.getAttribute('body', 'data-connection'), 'connected');
    assert.match(await ann.textContent('#banner'), /1 message will be sent/);
    assert.deepEqual(await pendingTexts(ann), ['Typed, then reloaded, while cut off'], 'still pending after the reload');
    assert.equal(await countMessages(bob, 'Ann', 'Typed, then reloaded, while cut off'), 0, 'nothing left Ann while cut off');
    assert.equal(await proxy.command('calm'), 'OK calm');
    await connectedAgain(ann);
    await ann.waitForSelector('#messages li.pending', { state: 'detached', timeout: PATIENCE });
    await seesMessage(bob, 'Ann', 'Typed, then reloaded, while cut off');
    await bobSays('the end');
    await seesMessage(ann, 'Bob', 'the end');
    await seesMessage(bob, 'Bob', 'the end');
    await sameMessagesOnceInOrder(
      ann,
      bob,
      sent,
      ['Ann: Typed while cut off', 'Ann: Typed, then reloaded, while cut off'],
      'after a reload while cut off',
    );

    // Both talk while the inner proxy cuts Ann's connection every few
    // hundred bytes in each direction (her messages, their answers and
    // Bob's signals are on their way at some cuts; a reconnection may be
    // cut in its handshake): each message reaches the room once.
    const annSent = [];
    const cutsBefore = (await proxyStats(chopper)).cuts;
    assert.equal(await chopper.command('wild'), 'OK wild');
    // Until three cuts landed (the room keeps 100 messages: at most 20 rounds).
    for (let i = 1; i <= 20 && (i <= 4 || (await proxyStats(chopper)).cuts < cutsBefore + 3); i++) {
      annSent.push(`Ann: busy ${i}`);
      await say(ann, `busy ${i}`);
      await bobSays(`busy ${i}`);
      await sleep(100);
    }
    const chopped = (await proxyStats(chopper)).cuts - cutsBefore;
    assert.ok(chopped >= 3, `the inner proxy cut ${chopped} times`);
    assert.equal(await chopper.command('calm'), 'OK calm');
    await connectedAgain(ann);
    await ann.waitForSelector('#messages li.pending', { state: 'detached', timeout: PATIENCE });
    await seesMessage(bob, 'Ann', `busy ${annSent.length}`);
    await bobSays('the very end');
    await seesMessage(ann, 'Bob', 'the very end');
    await seesMessage(bob, 'Bob', 'the very end');
    const extra = ['Ann: Typed while cut off', 'Ann: Typed, then reloaded, while cut off', ...annSent];
    await sameMessagesOnceInOrder(ann, bob, sent, extra, 'after cuts while both talk');
    const annLines = (await shownMessages(bob)).map((m) => m.line).filter((line) => annSent.includes(line));
    assert.deepEqual(annLines, annSent, "Ann's messages reach the room in the order she typed them");

    // How many cuts hit traffic (timing decides; reported, not asserted).
    const stats = await proxyStats(chopper);
    t.diagnostic(
      `inner proxy (seed 7): ${stats.cuts} cuts, ${stats.cuts_with_requests_in_flight} with a request in flight, ${stats.cuts_with_signals_in_flight} with a signal in flight`,
    );

    assert.deepEqual(errors, [], 'no uncaught errors on the pages');
  } finally {
    if (browser !== null) await browser.close();
    if (proxy !== null) await kill(proxy.child);
    if (chopper !== null) await kill(chopper.child);
    if (server !== null) await kill(server.child);
    rmSync(sessionDir, { recursive: true, force: true });
  }
});
