// Decay of the replay counts of blocks not yet translated (src/cpu/soft/wasm/runtime.ts WASM_DECAY): a block that
// is replayed often enough in total but rarely (once per pass of an outer loop around a long inner loop) is left to
// the JavaScript tier when its count is halved between its runs, while the inner loop is translated either way; the
// result is the interpreter's.
import test from 'node:test';
import assert from 'node:assert/strict';
import { cpuState, CODE, runWithSetting, type Machine } from './support/soft-cpu.ts';
import { setHotThreshold, setJitThreshold, tableSlot } from '../src/cpu/soft/code-cache.ts';
import { setDecay } from '../src/cpu/soft/wasm/runtime.ts';
import { GuestMemory } from '../src/memory/guest-memory.ts';

// every block recorded at its first run, translated at its 11th replay
setHotThreshold(0);
setJitThreshold(10);

const memories: GuestMemory[] = [];
test.after(() => { for (const m of memories) m.close(); });

// NESTED_LOOP: its outer loop's blocks run once per pass (enough passes for their batch to be flushed: runtime.ts
// WASM_BATCH_WAIT).
function run(mode: 'interpreter' | 'wasm', decay: number): Machine {
  const r = runWithSetting(mode, memories, setDecay, decay);
  assert.equal(r.end, -1);
  return r.m;
}

test('blocks replayed rarely are not translated with decay; the result is the same', () => {
  const ref = run('interpreter', 0);
  const off = run('wasm', 0);
  const on = run('wasm', 500);
  assert.equal(ref.cpu.getGpr(3), 1000n * 45_150n);
  assert.deepEqual(cpuState(off), cpuState(ref), 'without decay = interpreter');
  assert.deepEqual(cpuState(on), cpuState(ref), 'with decay = interpreter');
  const so = off.cpu.wasm!.stats, sn = on.cpu.wasm!.stats;
  assert.equal(so.decays, 0);
  assert.ok(sn.decays >= 100, `decays: ${sn.decays}`);
  // The outer loop's first block (at 1:): without decay it reaches the threshold after 11 passes and goes to the
  // translator (queued, compiling or translated: runs < 0); with it, its count is halved once or twice per pass.
  const outer = (m: Machine) => { const b = m.cpu.codeCache.table[tableSlot(CODE + 5)]; assert.ok(b && b.pa === CODE + 5, 'outer block cached'); return b; };
  assert.ok(outer(off).runs < 0 || outer(off).wasm !== null, `without decay: runs ${outer(off).runs}`);
  assert.ok(outer(on).runs >= 0 && outer(on).runs <= 10 && outer(on).wasm === null, `with decay: runs ${outer(on).runs}`);
  // the inner loop is translated either way
  assert.ok(sn.compiled >= 1, `blocks translated with decay: ${sn.compiled}`);
  assert.ok(sn.asyncModules < so.asyncModules, `modules: ${sn.asyncModules} with decay, ${so.asyncModules} without`);
});
