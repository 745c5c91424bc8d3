// Copies the built TypeScript client (clients/typescript/dist/*.js) into
// examples/chat/static/webwire/, where the chat server compiles it in
// (include_str!), so that chat-server serves the page's client wherever the
// binary is, and `cargo build` works on a clean clone without npm.
//
//   (cd clients/typescript && npm ci && npm run build)
//   node examples/chat/e2e/sync-client.mjs           # write the copies
//   node examples/chat/e2e/sync-client.mjs --check   # exit 1 if they are stale
//
// Each copy gets a header saying it is generated; the source map comment is
// left out (the maps are not served). A module added to or removed from the
// client shows up in --check, and in the Rust test that compares the list
// of files compiled in with this folder.

import { readdirSync, readFileSync, writeFileSync, rmSync, existsSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const root = resolve(here, '../../..');
export const distDir = join(root, 'clients/typescript/dist');
export const copyDir = join(root, 'examples/chat/static/webwire');

const HEADER =
  '// GENERATED FILE, do not edit: clients/typescript/dist/%NAME% (npm run build in\n' +
  '// clients/typescript), copied by examples/chat/e2e/sync-client.mjs, which\n' +
  '// regenerates it. The chat server compiles it in; its e2e test fails when\n' +
  '// it differs from a fresh build.\n';

/** What the copy of each built module should hold: file name to content. */
export function expectedCopies() {
  if (!existsSync(join(distDir, 'index.js'))) {
    throw new Error(`${distDir}/index.js is missing: run npm ci && npm run build in clients/typescript`);
  }
  const out = new Map();
  for (const name of readdirSync(distDir).filter((n) => n.endsWith('.js')).sort()) {
    const built = readFileSync(join(distDir, name), 'utf8').replace(/\n\/\/# sourceMappingURL=\S+\s*$/, '\n');
    out.set(name, HEADER.replace('%NAME%', name) + built);
  }
  return out;
}

/** Names of the copies that are missing, differ or are left over. */
export function staleCopies() {
  const expected = expectedCopies();
  const present = existsSync(copyDir) ? readdirSync(copyDir).filter((n) => n.endsWith('.js')) : [];
  const stale = [];
  for (const [name, text] of expected) {
    const path = join(copyDir, name);
    if (!existsSync(path) || readFileSync(path, 'utf8') !== text) stale.push(name);
  }
  for (const name of present) if (!expected.has(name)) stale.push(name);
  return stale.sort();
}

function write() {
  const expected = expectedCopies();
  for (const name of readdirSync(copyDir)) if (name.endsWith('.js') && !expected.has(name)) rmSync(join(copyDir, name));
  for (const [name, text] of expected) writeFileSync(join(copyDir, name), text);
  console.log(`wrote ${[...expected.keys()].join(', ')} to ${copyDir}`);
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  if (process.argv.includes('--check')) {
    const stale = staleCopies();
    if (stale.length > 0) {
      console.error(`stale copies of the TypeScript client in examples/chat/static/webwire: ${stale.join(', ')}; run node examples/chat/e2e/sync-client.mjs`);
      process.exit(1);
    }
    console.log('examples/chat/static/webwire is up to date');
  } else {
    write();
  }
}
