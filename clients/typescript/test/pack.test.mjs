// What `npm pack` puts in the published package: the built ESM, its type
// declarations, the README and the licenses, nothing else (no sources,
// tests, maps or configuration).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { readFileSync, readdirSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('..', import.meta.url));

test('the packed package holds the built ESM, declarations, README and licenses only', () => {
  const out = execFileSync('npm', ['pack', '--dry-run', '--json', '--ignore-scripts'], {
    cwd: root,
    encoding: 'utf8',
  });
  const [packed] = JSON.parse(out);
  const files = packed.files.map((f) => f.path).sort();
  const modules = readdirSync(new URL('../src', import.meta.url))
    .filter((name) => name.endsWith('.ts'))
    .map((name) => name.replace(/\.ts$/, ''));
  const expected = [
    'LICENSE-APACHE',
    'LICENSE-MIT',
    'README.md',
    'package.json',
    ...modules.flatMap((m) => [`dist/${m}.js`, `dist/${m}.d.ts`]),
  ].sort();
  assert.deepEqual(files, expected);
});

test('the exports map points at files that are packed', () => {
  const pkg = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8'));
  assert.equal(pkg.type, 'module');
  assert.deepEqual(pkg.exports, {
    '.': { types: './dist/index.d.ts', import: './dist/index.js' },
  });
  assert.ok(pkg.files.includes('dist/**/*.js') && pkg.files.includes('dist/**/*.d.ts'));
});
