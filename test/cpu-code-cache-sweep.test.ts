// CodeCache.invalidateAll sweeps only the chunks of its page table that are not all zero (so a restore's vCPU
// reset does not grow with guest memory): it must still find a code page anywhere, chunk edges and the last,
// partial chunk included, also over a memory whose page bytes were not zero (the constructor no longer clears them).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { CodeCache } from '../src/cpu/soft/code-cache.ts';
import { CODE_PAGES, PAGE_GEN } from '../src/cpu/soft/wasm/layout.ts';

const MiB = 1024 * 1024;

test('invalidateAll clears every marked page and bumps its generation, wherever it is', () => {
  const lowSize = 100 * MiB + 12 * 4096; // 25612 pages: six full sweep chunks and a partial one
  const cache = new CodeCache(lowSize);
  const pages = cache.codePages.length;
  const marked = [0, 4095, 4096, 8191, 12_000, 24_575, 24_576, pages - 1];
  for (const p of marked) cache.codePages[p] = p % 2 === 0 ? 1 : 3;
  const log = new Uint8Array(pages);
  (cache as unknown as { dirtyLog: Uint8Array }).dirtyLog = log; // as armDirtyLog leaves it, without arming every page
  cache.invalidateAll();
  assert.equal(cache.codePages.findIndex((b) => b !== 0), -1, 'no page left marked');
  for (let p = 0; p < pages; p++) {
    const expect = marked.includes(p) ? 1 : 0;
    assert.equal(cache.pageGen[p], expect, `generation of page ${p}`);
    assert.equal(log[p], expect, `dirty-log mark of page ${p}`);
  }
  cache.invalidateAll(); // nothing marked now: nothing bumped
  assert.equal(cache.pageGen[pages - 1], 1);
});

test('a code cache over a used memory: the first invalidateAll (a vCPU reset) clears every mark', () => {
  const lowSize = 64 * MiB;
  const pages = lowSize / 4096;
  const buffer = new ArrayBuffer(PAGE_GEN + pages * 4);
  new Uint8Array(buffer, CODE_PAGES, pages)[pages - 1] = 1;
  new Int32Array(buffer, PAGE_GEN, pages)[7] = 42;
  const cache = new CodeCache(lowSize, buffer);
  assert.equal(cache.codePages[pages - 1], 1, 'the cache lays its tables over the memory as it is');
  cache.invalidateAll();
  assert.equal(cache.codePages.findIndex((b) => b !== 0), -1);
  assert.equal(cache.pageGen[pages - 1], 1, 'the marked page\'s blocks are stale');
  assert.equal(cache.pageGen[7], 42, 'an unmarked page keeps its generation');
});
