// What the browser end-to-end tests of the chat example share: the
// binaries they run (built here with cargo unless named by environment
// variables), the chat server and the fault proxy as child processes,
// headless Chromium, and the steps and checks on a page.

import assert from 'node:assert/strict';
import { spawn, execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createInterface } from 'node:readline';
import { chromium } from 'playwright-core';

const here = dirname(fileURLToPath(import.meta.url));
export const root = resolve(here, '../../..');
export const chromiumPath = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';
export const inCi = process.env.CI === 'true';

/** Bound of every wait on the page. */
export const PATIENCE = 20_000;

export function skipReason() {
  if (!existsSync(chromiumPath)) return `no chromium at ${chromiumPath} (apt-get install chromium)`;
  return null;
}

/**
 * A release binary of the workspace: the path in `envVar` if set, or what
 * `cargo build --release -p PACKAGE --bin BIN` reports.
 */
function releaseBinary(pkg, bin, envVar) {
  if (process.env[envVar]) return process.env[envVar];
  const out = execFileSync(
    'cargo',
    ['build', '--release', '--locked', '-p', pkg, '--bin', bin, '--message-format=json-render-diagnostics'],
    { cwd: root, encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'], maxBuffer: 64 * 1024 * 1024, timeout: 900_000 },
  );
  for (const line of out.split('\n')) {
    if (!line.startsWith('{')) continue;
    const msg = JSON.parse(line);
    if (msg.reason === 'compiler-artifact' && msg.target?.name === bin && msg.executable) return msg.executable;
  }
  throw new Error(`cargo did not report the ${bin} executable`);
}

/** The chat-server executable: CHAT_SERVER_BIN, or what cargo builds. */
export function serverBinary() {
  return releaseBinary('webwire-chat', 'chat-server', 'CHAT_SERVER_BIN');
}

/** The fault proxy (tools/webwire-faultproxy): WEBWIRE_FAULTPROXY_BIN, or what cargo builds. */
export function proxyBinary() {
  return releaseBinary('webwire-faultproxy', 'webwire-faultproxy', 'WEBWIRE_FAULTPROXY_BIN');
}

/** Starts the server; resolves with the process and its page URL once it listens. */
export function startServer(bin, addr, sessionDir) {
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

export function kill(child) {
  return new Promise((resolvePromise) => {
    if (child.exitCode !== null || child.signalCode !== null) return resolvePromise();
    child.once('exit', () => resolvePromise());
    child.kill('SIGKILL');
  });
}

/** Restarts on the same address; the port may take a moment to be free again. */
export async function restartServer(bin, addr, sessionDir) {
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

/**
 * Starts the fault proxy in front of `upstream` (host:port), calm: it
 * forwards every byte until told otherwise (`wild`), then cuts each
 * connection at seeded byte counts `cutAfter` apart (`MIN..MAX` or one
 * number), in both directions. With `cutAfter` 1, every connection (a
 * reconnection too) dies at its first byte while it is wild: what is
 * behind it stays cut off until `calm`. Resolves with
 * `{ child, addr, command(line) }`; `command` sends a stdin command and
 * resolves with its one-line answer.
 */
export function startProxy(bin, upstream, { cutAfter = '1', seed = 1 } = {}) {
  const child = spawn(bin, ['--upstream', upstream, '--calm', '--cut-after', String(cutAfter), '--seed', String(seed)], {
    stdio: ['pipe', 'pipe', 'pipe'],
    env: { ...process.env, RUST_LOG: process.env.RUST_LOG ?? 'warn' },
  });
  child.stderr.on('data', (chunk) => process.stderr.write(`[faultproxy] ${chunk}`));
  const lines = [];
  const waiters = [];
  createInterface({ input: child.stdout }).on('line', (line) => {
    const waiter = waiters.shift();
    if (waiter) waiter(line);
    else lines.push(line);
  });
  const nextLine = () => {
    if (lines.length > 0) return Promise.resolve(lines.shift());
    return new Promise((resolvePromise, reject) => {
      const timer = setTimeout(() => reject(new Error('the fault proxy did not answer within 20 s')), 20_000);
      waiters.push((line) => {
        clearTimeout(timer);
        resolvePromise(line);
      });
    });
  };
  return nextLine().then((first) => {
    const m = /^LISTENING (\S+)$/.exec(first);
    if (!m) throw new Error(`the fault proxy said ${JSON.stringify(first)} instead of LISTENING`);
    return {
      child,
      addr: m[1],
      command(line) {
        const answer = nextLine();
        child.stdin.write(`${line}\n`);
        return answer;
      },
    };
  });
}

/** Headless Debian chromium with a fresh profile; `extraArgs` are added to its command line. */
export function launchBrowser(extraArgs = []) {
  return chromium.launch({
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
      ...extraArgs,
    ],
  });
}

export async function signIn(page, name) {
  await page.waitForSelector('body[data-state="signin"]', { timeout: PATIENCE });
  await page.fill('#name', name);
  await page.click('#signin-form button[type="submit"]');
  await page.waitForSelector('body[data-state="chat"]', { timeout: PATIENCE });
  assert.equal(await page.textContent('#my-name'), name);
}

export async function onlineIs(page, names) {
  await page.waitForFunction(
    (expected) => JSON.stringify([...document.querySelectorAll('#online li')].map((li) => li.textContent)) === expected,
    JSON.stringify(names),
    { timeout: PATIENCE },
  );
}

export async function say(page, text) {
  await page.fill('#text', text);
  await page.click('#say-form button[type="submit"]');
}

export async function seesMessage(page, from, text) {
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
export function countMessages(page, from, text) {
  return page.evaluate(
    ([f, t]) =>
      [...document.querySelectorAll('#messages li:not(.pending)')].filter(
        (li) => li.querySelector('.from')?.textContent === f && li.querySelector('.text')?.textContent === t,
      ).length,
    [from, text],
  );
}

/** The texts of the pending messages on the page. */
export function pendingTexts(page) {
  return page.evaluate(() => [...document.querySelectorAll('#messages li.pending')].map((li) => li.querySelector('.text').textContent));
}

export async function bannerShown(page) {
  await page.waitForSelector('#banner:not([hidden])', { timeout: PATIENCE });
  assert.match(await page.textContent('#banner'), /disconnected/i);
}

export async function connectedAgain(page) {
  await page.waitForSelector('body[data-connection="connected"] #banner[hidden]', { state: 'attached', timeout: PATIENCE });
}

