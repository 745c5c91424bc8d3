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
import { spawn, execFileSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createInterface } from 'node:readline';
import { chromium } from 'playwright-core';

const here = dirname(fileURLToPath(import.meta.url));
const root = resolve(here, '../../..');
const chromiumPath = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';
const inCi = process.env.CI === 'true';
const screenshotPath = join(here, 'screenshot.png');
const bannerScreenshotPath = join(here, 'screenshot-disconnected.png');
const phoneScreenshotPath = join(here, 'screenshot-phone.png');

/** Bound of every wait on the page. */
const PATIENCE = 20_000;

function skipReason() {
  if (!existsSync(chromiumPath)) return `no chromium at ${chromiumPath} (apt-get install chromium)`;
  return null;
}

/** The chat-server executable: CHAT_SERVER_BIN, or what cargo builds. */
function serverBinary() {
  if (process.env.CHAT_SERVER_BIN) return process.env.CHAT_SERVER_BIN;
  const out = execFileSync(
    'cargo',
    ['build', '--release', '--locked', '-p', 'webwire-chat', '--bin', 'chat-server', '--message-format=json-render-diagnostics'],
    { cwd: root, encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'], maxBuffer: 64 * 1024 * 1024, timeout: 900_000 },
  );
  for (const line of out.split('\n')) {
    if (!line.startsWith('{')) continue;
    const msg = JSON.parse(line);
    if (msg.reason === 'compiler-artifact' && msg.target?.name === 'chat-server' && msg.executable) return msg.executable;
  }
  throw new Error('cargo did not report the chat-server executable');
}

/** Starts the server; resolves with the process and its page URL once it listens. */
function startServer(bin, addr, sessionDir) {
  const child = spawn(bin, ['--addr', addr, '--session-dir', sessionDir], {
    cwd: sessionDir,
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, RUST_LOG: process.env.RUST_LOG ?? 'warn' },
  });
  child.stderr.on('data', (chunk) => process.stderr.write(`[chat-server] ${chunk}`));
  return new Promise((resolvePromise, reject) => {
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error('the chat server did not start within 20 s'));
    }, 20_000);
    child.once('exit', (code, signal) => {
      clearTimeout(timer);
      reject(new Error(`the chat server exited (${code ?? signal}) before listening`));
    });
    const lines = createInterface({ input: child.stdout });
    lines.on('line', (line) => {
      const m = /^listening on (http:\/\/\S+\/)/.exec(line);
      if (m) {
        clearTimeout(timer);
        child.removeAllListeners('exit');
        resolvePromise({ child, url: m[1] });
      }
    });
  });
}

function kill(child) {
  return new Promise((resolvePromise) => {
    if (child.exitCode !== null || child.signalCode !== null) return resolvePromise();
    child.once('exit', () => resolvePromise());
    child.kill('SIGKILL');
  });
}

/** Restarts on the same address; the port may take a moment to be free again. */
async function restartServer(bin, addr, sessionDir) {
  let lastError;
  for (let attempt = 0; attempt < 20; attempt++) {
    try {
      return await startServer(bin, addr, sessionDir);
    } catch (e) {
      lastError = e;
      await new Promise((r) => setTimeout(r, 250));
    }
  }
  throw lastError;
}

async function signIn(page, name) {
  await page.waitForSelector('body[data-state="signin"]', { timeout: PATIENCE });
  await page.fill('#name', name);
  await page.click('#signin-form button[type="submit"]');
  await page.waitForSelector('body[data-state="chat"]', { timeout: PATIENCE });
  assert.equal(await page.textContent('#my-name'), name);
}

async function onlineIs(page, names) {
  await page.waitForFunction(
    (expected) => JSON.stringify([...document.querySelectorAll('#online li')].map((li) => li.textContent)) === expected,
    JSON.stringify(names),
    { timeout: PATIENCE },
  );
}

async function say(page, text) {
  await page.fill('#text', text);
  await page.click('#say-form button[type="submit"]');
}

async function seesMessage(page, from, text) {
  await page.waitForFunction(
    ([f, t]) =>
      [...document.querySelectorAll('#messages li')].some(
        (li) => li.querySelector('.from')?.textContent === f && li.querySelector('.text')?.textContent === t,
      ),
    [from, text],
    { timeout: PATIENCE },
  );
}

/** How many messages on the page are from `from` with `text` (pending ones not counted). */
function countMessages(page, from, text) {
  return page.evaluate(
    ([f, t]) =>
      [...document.querySelectorAll('#messages li:not(.pending)')].filter(
        (li) => li.querySelector('.from')?.textContent === f && li.querySelector('.text')?.textContent === t,
      ).length,
    [from, text],
  );
}

/** The texts of the pending messages on the page. */
function pendingTexts(page) {
  return page.evaluate(() => [...document.querySelectorAll('#messages li.pending')].map((li) => li.querySelector('.text').textContent));
}

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

async function bannerShown(page) {
  await page.waitForSelector('#banner:not([hidden])', { timeout: PATIENCE });
  assert.match(await page.textContent('#banner'), /disconnected/i);
}

async function connectedAgain(page) {
  await page.waitForSelector('body[data-connection="connected"] #banner[hidden]', { state: 'attached', timeout: PATIENCE });
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
    browser = await chromium.launch({
      executablePath: chromiumPath,
      headless: true,
      args: [
        '--headless',
        '--no-sandbox',
        '--disable-gpu',
        '--disable-quic',
        '--no-first-run',
        '--disable-background-networking',
        '--disable-component-update',
        '--disable-sync',
      ],
    });
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
