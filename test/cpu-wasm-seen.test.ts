// Blocks translated in an earlier run (src/cpu/soft/wasm/seen.ts, RINGZERO_WASM_SEEN): a run writes the keys of the
// blocks it queued for translation; a later run that reads them queues those blocks at their first replay instead of
// after WASM_HOT replays, and computes the same result. A key is the block's bytes (with its page offset and length):
// a changed byte changes it, and keys of other code match nothing. With RINGZERO_WASM_AGAIN the keys of this run count
// too: a block dropped with its page (a write into the page) is queued again at its first replay once re-recorded.
import test from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { hexBytes, cpuState, CODE, NESTED_LOOP, runWithSetting, type Machine } from './support/soft-cpu.ts';
import { setHotThreshold, setJitThreshold, tableSlot } from '../src/cpu/soft/code-cache.ts';
import { SeenSet, useSeenSet, blockKey } from '../src/cpu/soft/wasm/seen.ts';
import { GuestMemory } from '../src/memory/guest-memory.ts';
import { setAsync } from '../src/cpu/soft/wasm/runtime.ts';

// every block recorded at its first run, queued for translation at its 11th replay
setHotThreshold(0);
setJitThreshold(10);

const memories: GuestMemory[] = [];
const dir = mkdtempSync(join(tmpdir(), 'rz-seen-'));
test.after(() => { for (const m of memories) m.close(); rmSync(dir, { recursive: true, force: true }); });

function run(mode: 'interpreter' | 'wasm', seen: SeenSet | null, code = NESTED_LOOP): Machine {
  const r = runWithSetting(mode, memories, useSeenSet, seen, code);
  assert.equal(r.end, -1);
  return r.m;
}

test('blocks an earlier run translated are queued at their first replay; the result is the same', () => {
  const file = join(dir, 'seen.bin');
  const ref = run('interpreter', null);
  const first = new SeenSet(file);
  assert.equal(first.known, 0, 'no file yet');
  const a = run('wasm', first);
  assert.equal(a.cpu.wasm!.stats.seen, 0);
  assert.ok(first.added >= 2, `keys of the first run: ${first.added}`);
  first.save();
  assert.ok(existsSync(file), 'saved');

  const second = new SeenSet(file);
  assert.equal(second.known, first.added);
  const b = run('wasm', second);
  assert.deepEqual(cpuState(a), cpuState(ref), 'first run = interpreter');
  assert.deepEqual(cpuState(b), cpuState(ref), 'second run = interpreter');
  const sb = b.cpu.wasm!.stats;
  assert.ok(sb.seen >= 2, `queued at first sight: ${sb.seen}`);
  // The inner loop's block (at 2:) went to the translator at its first replay: fewer replays in JavaScript before.
  const inner = (m: Machine) => m.cpu.codeCache.table[tableSlot(CODE + 13)];
  assert.ok(inner(b) !== undefined && inner(b)!.pa === CODE + 13, 'inner block cached');
  assert.ok(b.cpu.jitInstructions > a.cpu.jitInstructions, `instructions in wasm: ${b.cpu.jitInstructions} with the keys, ${a.cpu.jitInstructions} without`);

  // A key is the block's bytes: one byte changed (the inner loop's ADD EBX,EDX becomes ADD EBX,EBX) changes it.
  const blk = inner(b)!;
  const ram = b.cpu.ram;
  const k0 = blockKey(ram, blk);
  const copy = Uint8Array.from(ram.subarray(0, CODE + 64));
  copy[CODE + 14] = 0xdb;
  assert.notEqual(blockKey(copy, blk), k0);
  assert.equal(blockKey(Uint8Array.from(ram.subarray(0, CODE + 64)), blk), k0);
});

test('keys of other code match no block; a short run does not replace a larger file', () => {
  const file = join(dir, 'foreign.bin');
  writeFileSync(file, new Uint8Array(Uint32Array.from([1, 2, 3, 0xdeadbeef]).buffer));
  const s = new SeenSet(file);
  assert.equal(s.known, 4);
  const ref = run('interpreter', null);
  const m = run('wasm', s);
  assert.deepEqual(cpuState(m), cpuState(ref));
  assert.equal(m.cpu.wasm!.stats.seen, 0);
  // (this run added fewer keys than half the file holds: the file is kept)
  const big = join(dir, 'big.bin');
  writeFileSync(big, new Uint8Array(Uint32Array.from({ length: 1000 }, (_, i) => i + 1).buffer));
  const s2 = new SeenSet(big);
  run('wasm', s2);
  assert.ok(s2.added > 0 && s2.added < 500);
  s2.save();
  assert.equal(new SeenSet(big).known, 1000);
});

//   mov ecx,50 / 1: add eax,1 / mov edx,1000 / 2: add ebx,edx / dec edx / jnz 2b / mov [rip+7],al / dec ecx / jnz 1b /
//   hlt / (data at CODE + 32): every pass of the outer loop writes a byte of the code's page, which drops its blocks
// (the inner loop runs long enough in a pass for its batch to be flushed: runtime.ts WASM_BATCH_WAIT).
const REWRITES = hexBytes('b9 32 00 00 00 83 c0 01 ba e8 03 00 00 01 d3 ff ca 75 fa 88 05 07 00 00 00 ff c9 75 e8 f4 00 00 00');

test('with AGAIN, blocks dropped with their page are queued again at their first replay; the result is the same', () => {
  const ref = run('interpreter', null, REWRITES);
  assert.equal(ref.cpu.getGpr(3), 50n * 500_500n);
  // (modules compiled at their flush: a pass is too short for a background compile's install, the event loop stands)
  const old = setAsync(false);
  let off: Machine, on: Machine;
  try {
    off = run('wasm', new SeenSet(null, false), REWRITES);
    on = run('wasm', new SeenSet(null, true), REWRITES);
  } finally {
    setAsync(old);
  }
  assert.deepEqual(cpuState(off), cpuState(ref), 'without AGAIN = interpreter');
  assert.deepEqual(cpuState(on), cpuState(ref), 'with AGAIN = interpreter');
  assert.equal(off.cpu.wasm!.stats.again, 0);
  assert.ok(on.cpu.wasm!.stats.again >= 10, `queued again at first replay: ${on.cpu.wasm!.stats.again}`);
  assert.ok(on.cpu.jitInstructions > off.cpu.jitInstructions, `instructions in wasm: ${on.cpu.jitInstructions} with AGAIN, ${off.cpu.jitInstructions} without`);
});
