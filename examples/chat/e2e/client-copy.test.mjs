// The copy of the TypeScript client that the chat server compiles in
// (examples/chat/static/webwire/) is what a fresh build of clients/typescript
// gives. Needs that build (npm ci && npm run build in clients/typescript),
// which scripts/test-all.sh runs before this test.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { staleCopies } from './sync-client.mjs';

test('the compiled-in copy of the TypeScript client is up to date', () => {
  assert.deepEqual(
    staleCopies(),
    [],
    'stale copies in examples/chat/static/webwire: run node examples/chat/e2e/sync-client.mjs and commit them',
  );
});
