// Browser end-to-end test of the chat example: the chat-server binary
// serves the page, two headless Chromium pages (separate browser contexts,
// so separate localStorage) sign in and talk, one reloads, the server is
// killed and restarted on the same port and session folder, and both pages
// show the banner, then recover with their sessions; last, one signs out.
//
// Needs Debian's chromium (/usr/bin/chromium, or CHROMIUM_PATH). The server
// binary is CHAT_SERVER_BIN, or built here with
// `cargo build --release -p webwire-chat`; it is copied to a folder of its
// own and run from another one, so the page and the TypeScript client it
// serves are the compiled-in ones. Without chromium the test skips, unless
// CI=true, where it fails.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { copyFileSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import {
  PATIENCE,
  bannerShown,
  connectedAgain,
  countMessages,
  inCi,
  kill,
  launchBrowser,
  onlineIs,
  pendingTexts,
  restartServer,
  say,
  seesMessage,
  serverBinary,
  signIn,
  skipReason,
  startServer,
} from './harness.mjs';

const here = dirname(fileURLToPath(import.meta.url));
const screenshotPath = join(here, 'screenshot.png');
const bannerScreenshotPath = join(here, 'screenshot-disconnected.png');
const phoneScreenshotPath = join(here, 'screenshot-phone.png');

/** Nothing is wider than the viewport: no horizontal scrolling, no element past the right edge. */
async function fitsTheWidth(page, when) {
  // The emulated phone's width, not innerWidth alone: a mobile browser
  // zooms out over content that is too wide, which widens innerWidth.
  const problems = await page.evaluate((viewport) => {
    const out = [];
    const doc = document.documentElement;
    const width = Math.min(window.innerWidth, viewport);
    if (doc.scrollWidth > doc.clientWidth) out.push(`the document scrolls sideways: ${doc.scrollWidth} > ${doc.clientWidth}`);
    for (const el of document.querySelectorAll('body, body *')) {
      const r = el.getBoundingClientRect();
      if (r.width === 0 && r.height === 0) continue;
      if (r.right > width + 0.5 || r.left < -0.5) {
        out.push(`${el.tagName.toLowerCase()}${el.id ? '#' + el.id : ''}${el.className ? '.' + el.className : ''}: ${r.left}..${r.right} of ${width}`);
      }
    }
    return out;
  }, page.viewportSize().width);
  assert.deepEqual(problems, [], `at ${when}, elements wider than the viewport`);
}

test('two pages chat, survive a reload and a server restart', { timeout: 600_000 }, async (t) => {
  const reason = skipReason();
  if (reason !== null) {
    if (inCi) assert.fail(`CI=true but ${reason}`);
    t.skip(reason);
    return;
  }
  // The binary alone in a folder, away from the checkout: it must not need
  // clients/typescript/dist or the working directory.
  const installDir = mkdtempSync(join(tmpdir(), 'chat-e2e-bin-'));
  const bin = join(installDir, 'chat-server');
  copyFileSync(serverBinary(), bin);
  const sessionDir = mkdtempSync(join(tmpdir(), 'chat-e2e-sessions-'));
  // Started inside the try, so that whatever fails (the browser's launch
  // too) the finally stops what did start.
  let server = null;
  let browser = null;
  try {
    server = await startServer(bin, '127.0.0.1:0', sessionDir);
    const addr = new URL(server.url).host;
    browser = await launchBrowser();
    // Two people: separate contexts, so separate localStorage.
    const ann = await (await browser.newContext({ viewport: { width: 1000, height: 640 } })).newPage();
    const bob = await (await browser.newContext({ viewport: { width: 1000, height: 640 } })).newPage();
    // A phone: 390 px wide.
    const cat = await (await browser.newContext({ viewport: { width: 390, height: 844 }, isMobile: true, hasTouch: true })).newPage();
    const errors = [];
    for (const page of [ann, bob, cat]) page.on('pageerror', (e) => errors.push(e));
    await ann.goto(server.url);
    await bob.goto(server.url);
    await cat.goto(server.url);

    // A blank name is refused by the server, and the page says why.
    await ann.waitForSelector('body[data-state="signin"]', { timeout: PATIENCE });
    await ann.fill('#name', '   ');
    await ann.click('#signin-form button[type="submit"]');
    await ann.waitForFunction(() => document.querySelector('#signin-error').textContent !== '', null, { timeout: PATIENCE });
    assert.match(await ann.textContent('#signin-error'), /must not be empty/);

    await cat.waitForSelector('body[data-state="signin"]', { timeout: PATIENCE });
    await fitsTheWidth(cat, 'the sign-in form on a phone');
    await signIn(ann, 'Ann');
    await signIn(bob, 'Bob');
    // The longest name there is, without spaces.
    const longName = 'Catherine_of_Aragon_and_Castile_';
    await signIn(cat, longName);
    await onlineIs(ann, ['Ann', 'Bob', longName]);
    await onlineIs(bob, ['Ann', 'Bob', longName]);
    const longWord = 'x'.repeat(200);
    await say(cat, longWord);
    await seesMessage(ann, longName, longWord);

    await say(ann, 'Hello Bob! 👋 ünïcode');
    await seesMessage(bob, 'Ann', 'Hello Bob! 👋 ünïcode');
    await say(bob, 'Hi Ann.');
    await seesMessage(ann, 'Bob', 'Hi Ann.');
    assert.equal(await ann.inputValue('#text'), '', 'the input is cleared once sent');

    // A reload keeps the session (the key is in localStorage) and shows the history.
    await ann.reload();
    await ann.waitForSelector('body[data-state="chat"]', { timeout: PATIENCE });
    assert.equal(await ann.textContent('#my-name'), 'Ann');
    await seesMessage(ann, 'Ann', 'Hello Bob! 👋 ünïcode');
    await seesMessage(ann, 'Bob', 'Hi Ann.');
    await onlineIs(ann, ['Ann', 'Bob', longName]);
    assert.ok(await ann.evaluate(() => localStorage.getItem('webwire-chat:session')), 'the session key is stored');

    // The server dies: the pages show the banner and stay signed in.
    await kill(server.child);
    await bannerShown(ann);
    await bannerShown(bob);
    await bannerShown(cat);
    assert.equal(await ann.getAttribute('body', 'data-state'), 'chat');

    // What Ann types meanwhile is shown as pending and kept, in order.
    await say(ann, 'Typed while down, one');
    await say(ann, 'Typed while down, two');
    await ann.waitForFunction(() => document.querySelectorAll('#messages li.pending').length === 2, null, { timeout: PATIENCE });
    assert.deepEqual(await pendingTexts(ann), ['Typed while down, one', 'Typed while down, two']);
    assert.match(await ann.textContent('#messages li.pending .pending-mark'), /pending/);
    assert.match(await ann.textContent('#banner'), /2 messages will be sent/);
    assert.equal(await ann.inputValue('#text'), '', 'the input is free for the next message');
    await ann.screenshot({ path: bannerScreenshotPath });
    // On the phone too, with the banner and a pending message.
    await say(cat, 'From the phone while down');
    await cat.waitForSelector('#messages li.pending', { timeout: PATIENCE });
    await fitsTheWidth(cat, 'the room on a phone, disconnected, with a pending message');
    await cat.screenshot({ path: phoneScreenshotPath });

    // It comes back on the same port and session folder: both pages reconnect with their sessions.
    server = await restartServer(bin, addr, sessionDir);
    await connectedAgain(ann);
    await connectedAgain(bob);
    await connectedAgain(cat);
    assert.equal(await ann.textContent('#my-name'), 'Ann');
    assert.equal(await bob.textContent('#my-name'), 'Bob');
    await onlineIs(ann, ['Ann', 'Bob', longName]);
    await onlineIs(bob, ['Ann', 'Bob', longName]);
    // The pending messages are sent once reconnected, in order; the marks go.
    await seesMessage(bob, 'Ann', 'Typed while down, two');
    await seesMessage(bob, longName, 'From the phone while down');
    await ann.waitForSelector('#messages li.pending', { state: 'detached', timeout: PATIENCE });
    await cat.waitForSelector('#messages li.pending', { state: 'detached', timeout: PATIENCE });
    await seesMessage(ann, 'Ann', 'Typed while down, two');
    const bobSees = await bob.evaluate(() => [...document.querySelectorAll('#messages li .text')].map((t) => t.textContent));
    assert.ok(
      bobSees.indexOf('Typed while down, one') < bobSees.indexOf('Typed while down, two'),
      `in the order typed: ${JSON.stringify(bobSees)}`,
    );
    // What was on the page stays (the server's history is in memory only).
    await seesMessage(bob, 'Ann', 'Hello Bob! 👋 ünïcode');
    await say(bob, 'Back after the restart.');
    await seesMessage(ann, 'Bob', 'Back after the restart.');
    await say(ann, 'Welcome back!');
    await seesMessage(bob, 'Ann', 'Welcome back!');

    await ann.screenshot({ path: screenshotPath });
    await fitsTheWidth(cat, 'the room on a phone');

    // Exactly once, on every page (checked after later messages, so that a
    // late duplicate would have arrived).
    for (const page of [ann, bob, cat]) {
      assert.equal(await countMessages(page, 'Ann', 'Typed while down, one'), 1);
      assert.equal(await countMessages(page, 'Ann', 'Typed while down, two'), 1);
      assert.equal(await countMessages(page, longName, 'From the phone while down'), 1);
    }

    // Signing out ends the session: Bob gets the sign-in form (also after a
    // reload), Ann sees him leave.
    await bob.click('#logout');
    await bob.waitForSelector('body[data-state="signin"]', { timeout: PATIENCE });
    await onlineIs(ann, ['Ann', longName]);
    assert.equal(await bob.evaluate(() => localStorage.getItem('webwire-chat:session')), null);
    await bob.reload();
    await bob.waitForSelector('body[data-state="signin"]', { timeout: PATIENCE });

    assert.deepEqual(errors, [], 'no uncaught errors on the pages');
  } finally {
    if (browser !== null) await browser.close();
    if (server !== null) await kill(server.child);
    rmSync(sessionDir, { recursive: true, force: true });
    rmSync(installDir, { recursive: true, force: true });
  }
});
