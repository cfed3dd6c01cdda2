import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { renderOptionsMarkdown } from '../../../src/config/options-doc.ts';
import { OPTIONS } from '../../../src/config/options.ts';

test('docs/configuration.md is generated from the current option table', async () => {
  const doc = await readFile(new URL('../../../docs/configuration.md', import.meta.url), 'utf8');
  assert.equal(doc, renderOptionsMarkdown(), 'stale: run `bash scripts/with-node.sh node scripts/gen-config-doc.ts`');
  for (const o of OPTIONS) assert.ok(doc.includes(`| \`${o.name}\` |`), o.name);
});
