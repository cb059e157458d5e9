// RINGZERO_WASM_THP (src/memory/guest-memory.ts GuestMemory.addWasmRegion): with it on, the wasm memory's first
// WASM_RAM_OFFSET bytes (the translator's tables and state areas) are advised for transparent huge pages (their
// mapping carries VmFlags "hg" in /proc/self/smaps, madvise(2) MADV_HUGEPAGE), and guest RAM laid over the rest
// still reads and writes through both views; off, nothing is advised.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import { GuestMemory, WASM_RAM_OFFSET, setWasmThp } from '../src/memory/guest-memory.ts';

/** The VmFlags of the mapping holding `address` (smaps). */
function vmFlags(address: bigint): string[] {
  const lines = fs.readFileSync('/proc/self/smaps', 'utf8').split('\n');
  let inside = false;
  for (const l of lines) {
    const m = /^([0-9a-f]+)-([0-9a-f]+) /.exec(l);
    if (m) { inside = BigInt('0x' + m[1]) <= address && address < BigInt('0x' + m[2]); continue; }
    if (inside && l.startsWith('VmFlags:')) return l.slice(8).trim().split(/\s+/);
  }
  throw new Error(`no mapping holds ${address.toString(16)}`);
}

for (const on of [true, false]) {
  test(`the tables below guest RAM are ${on ? '' : 'not '}advised for huge pages with RINGZERO_WASM_THP ${on ? 'on' : 'off'}`, () => {
    const old = setWasmThp(on);
    const g = new GuestMemory(64 * 1024 * 1024, undefined, { wasm: true });
    try {
      assert.ok(g.wasmMemory !== undefined, 'a wasm memory');
      const base = g.regions[0].hostAddress - BigInt(WASM_RAM_OFFSET);
      for (const at of [0n, BigInt(WASM_RAM_OFFSET - 4096)]) assert.equal(vmFlags(base + at).includes('hg'), on, `at +${at}`);
      assert.ok(!vmFlags(base + BigInt(WASM_RAM_OFFSET)).includes('hg'), 'guest RAM not advised');
      const tables = new Uint8Array(g.wasmMemory!.buffer, 0, WASM_RAM_OFFSET);
      tables[4 * 1024 * 1024] = 7;
      assert.equal(tables[4 * 1024 * 1024], 7);
      g.low[0x1234] = 0xa5;
      assert.equal(new Uint8Array(g.wasmMemory!.buffer)[WASM_RAM_OFFSET + 0x1234], 0xa5);
    } finally {
      g.close();
      setWasmThp(old);
    }
  });
}
