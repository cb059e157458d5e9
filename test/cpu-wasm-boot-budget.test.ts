// The boot's tier-up budget (src/cpu/soft/wasm/runtime.ts BOOT_BUDGET, RINGZERO_WASM_BOOT_BUDGET): modules flushed
// before the first flush made while the vCPU runs user code are compiled under it, the rest under the start budget;
// the result is the interpreter's either way.
import test from 'node:test';
import assert from 'node:assert/strict';
import { cpuState, NESTED_LOOP, runWithSetting, type Machine } from './support/soft-cpu.ts';
import { setHotThreshold, setJitThreshold } from '../src/cpu/soft/code-cache.ts';
import { setBootBudget } from '../src/cpu/soft/wasm/runtime.ts';
import { setupFlatLongMode } from '../src/cpu/soft/index.ts';
import { V8_11_3 } from '../src/cpu/soft/wasm/tier-budget.ts';
import { GuestMemory } from '../src/memory/guest-memory.ts';

setHotThreshold(0);
setJitThreshold(10);

const memories: GuestMemory[] = [];
test.after(() => { for (const m of memories) m.close(); });

function run(mode: 'interpreter' | 'wasm', cpl: 0 | 3, budget: number): { m: Machine; end: number } {
  return runWithSetting(mode, memories, setBootBudget, budget, NESTED_LOOP,
    (m) => { if (cpl === 3) setupFlatLongMode(m.cpu, { pml4: 0x10000, identityMapBytes: 1 << 30, cpl: 3 }); });
}

test('modules flushed in kernel code before any from user code take the boot budget', { skip: !V8_11_3 && 'V8 11.3 only' }, () => {
  const ref = run('interpreter', 0, 0);
  const boot = run('wasm', 0, 36_000_000);
  assert.equal(boot.end, -1);
  assert.deepEqual(cpuState(boot.m), cpuState(ref.m));
  const s = boot.m.cpu.wasm!.stats;
  assert.ok(s.asyncModules >= 1, `modules: ${s.asyncModules}`);
  assert.equal(s.bootModules, s.asyncModules, 'every module before user code');
  // off: none
  assert.equal(run('wasm', 0, 0).m.cpu.wasm!.stats.bootModules, 0);
});

test('a flush from user code ends the boot: its modules take the start budget', { skip: !V8_11_3 && 'V8 11.3 only' }, () => {
  const ref = run('interpreter', 3, 0);
  const user = run('wasm', 3, 36_000_000);
  // (HLT at CPL 3 is #GP: both stop there)
  assert.equal(ref.end, 13);
  assert.equal(user.end, 13);
  assert.deepEqual(cpuState(user.m), cpuState(ref.m));
  const s = user.m.cpu.wasm!.stats;
  assert.ok(s.asyncModules >= 1, `modules: ${s.asyncModules}`);
  assert.equal(s.bootModules, 0);
});
