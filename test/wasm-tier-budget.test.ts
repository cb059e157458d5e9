// V8's tier-up budget per translated module (src/cpu/soft/wasm/tier-budget.ts): which functions of a batch go to
// which module and budget (runtime.ts splitByBudget), RINGZERO_WASM_TIER_BUDGET's syntax, and, in a child node with
// V8's natives syntax, that V8 still reads the budget when a module is compiled (on the compile thread or here) and
// that the flag is set back after: the whole policy rests on that.
import test from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { moduleBudget, splitByBudget, splitBySize } from '../src/cpu/soft/wasm/runtime.ts';
import { lateBudget, parseBudgets, V8_11_3 } from '../src/cpu/soft/wasm/tier-budget.ts';

test('a batch splits into a cold module of first translations and a hot one of blocks translated again', () => {
  const b = { cold: 90_000_000, hot: 9_000_000, lib: 1_800_000 };
  assert.deepEqual(splitByBudget(b, [false, true, false, true]), [{ budget: 90_000_000, fns: [0, 2] }, { budget: 9_000_000, fns: [1, 3] }]);
  assert.deepEqual(splitByBudget(b, [false, false]), [{ budget: 90_000_000, fns: [0, 1] }]);
  assert.deepEqual(splitByBudget(b, [true]), [{ budget: 9_000_000, fns: [0] }]);
  // (equal budgets: one module, as without the policy)
  assert.deepEqual(splitByBudget({ cold: 5, hot: 5, lib: 5 }, [true, false]), [{ budget: 5, fns: [0, 1] }]);
  // (off: one module under the start value)
  const off = splitByBudget(null, [true, false]);
  assert.equal(off.length, 1);
  assert.deepEqual(off[0].fns, [0, 1]);
});

test('RINGZERO_WASM_LATE_BUDGET: modules flushed after the boot take the late budget when one is set (off by default)', () => {
  assert.equal(lateBudget('1800000'), 1_800_000);
  assert.equal(lateBudget('900000'), 900_000);
  for (const off of [undefined, '', '0', '-5', '1.5', 'no']) assert.equal(lateBudget(off), 0, String(off));
  // (the boot's modules keep their batch's budget; after it, the late one, unless it is off)
  assert.equal(moduleBudget(9_000_000, false, 1_800_000), 9_000_000);
  assert.equal(moduleBudget(9_000_000, true, 1_800_000), 1_800_000);
  assert.equal(moduleBudget(36_000_000, true, 0), 36_000_000);
});

test('a batch splits by function size: 4x the start budget from UNIT bytes, 16x from 4 UNIT..., at most MAX', () => {
  assert.deepEqual(splitBySize(4096, 16, 9_000_000, [100, 5000, 20_000, 70_000, 4095]),
    [{ budget: 9_000_000, fns: [0, 4] }, { budget: 36_000_000, fns: [1] }, { budget: 144_000_000, fns: [2, 3] }]);
  assert.deepEqual(splitBySize(4096, 64, 10, [70_000]), [{ budget: 640, fns: [0] }]);
  assert.deepEqual(splitBySize(4096, 4, 10, [70_000, 1]), [{ budget: 10, fns: [1] }, { budget: 40, fns: [0] }]);
  // (small functions only, or the policy off: one module under the start value)
  assert.deepEqual(splitBySize(4096, 16, 7, [1, 4095]), [{ budget: 7, fns: [0, 1] }]);
  assert.deepEqual(splitBySize(0, 16, 7, [1, 1e6]), [{ budget: 7, fns: [0, 1] }]);
});

test('RINGZERO_WASM_TIER_BUDGET: cold,hot,lib; 0 is off; empty fields take the start value', () => {
  const d = { cold: 1, hot: 2, lib: 3 };
  assert.equal(parseBudgets(undefined, 9, d), d);
  assert.equal(parseBudgets('', 9, null), null);
  assert.equal(parseBudgets('0', 9, d), null);
  assert.equal(parseBudgets('off', 9, d), null);
  assert.deepEqual(parseBudgets('100,20,5', 9, d), { cold: 100, hot: 20, lib: 5 });
  assert.deepEqual(parseBudgets('100', 9, d), { cold: 100, hot: 9, lib: 9 });
  assert.deepEqual(parseBudgets('100,,7', 9, d), { cold: 100, hot: 9, lib: 7 });
  assert.equal(parseBudgets('x', 9, d), null);
});

test('V8 takes a module\'s tier-up budget from the flag at its compile, on either thread, and the flag is set back', { skip: !V8_11_3 && 'measured on V8 11.3 (Node 20) only' }, () => {
  const dir = (f: string) => JSON.stringify(fileURLToPath(new URL(`../src/cpu/soft/wasm/${f}`, import.meta.url)));
  // (module (func (export "f") (param i32) (result i32) (local i32) loop: sum += n; n -= 1; br_if n) sum) plus a
  // custom section naming it (V8 shares one compiled module between equal byte strings)
  const script = `import { compileOffThread, stopCompileThread } from ${dir('compile-thread.ts')};
import { withBudget, flagLock } from ${dir('tier-budget.ts')};
const body = [1, 1, 127, 3, 64, 32, 1, 32, 0, 106, 33, 1, 32, 0, 65, 1, 107, 34, 0, 13, 0, 11, 32, 1, 11];
const bytes = (tag) => new Uint8Array([0, 97, 115, 109, 1, 0, 0, 0, 1, 6, 1, 96, 1, 127, 1, 127, 3, 2, 1, 0, 7, 5, 1, 1, 102, 0, 0,
  10, body.length + 2, 1, body.length, ...body, 0, 3, 2, 120, tag]);
const start = 1800000, lock = flagLock();
const here = (tag, budget) => withBudget(lock, budget, start, 100, () => new WebAssembly.Module(bytes(tag)));
const fns = {
  threadSmall: await compileOffThread(bytes(1), 100, start),
  threadLarge: await compileOffThread(bytes(2), 1e9, start),
  hereSmall: here(3, 100),
  hereLarge: here(4, 1e9),
  after: new WebAssembly.Module(bytes(5)),
};
Atomics.store(lock, 0, 2); // (the code cache writer's: a compile neither waits nor changes the flag)
fns.locked = here(6, 100);
Atomics.store(lock, 0, 0);
for (const k in fns) fns[k] = new WebAssembly.Instance(fns[k]).exports.f;
// 40 calls of ~1000 loop iterations: far above a budget of 100, below half the start value's
for (const f of Object.values(fns)) for (let i = 0; i < 40; i++) f(1000);
const tf = (f) => !%IsLiftoffFunction(f);
for (let t = 0; t < 400 && !(tf(fns.threadSmall) && tf(fns.hereSmall)); t++) await new Promise((r) => setTimeout(r, 50));
console.log(JSON.stringify(Object.fromEntries(Object.entries(fns).map(([k, f]) => [k, tf(f)]))));
await stopCompileThread();`;
  const r = spawnSync(process.execPath, ['--allow-natives-syntax', '--no-wasm-lazy-compilation', '--import', 'tsx', '--input-type=module', '-e', script], { encoding: 'utf8', timeout: 60_000 });
  assert.equal(r.status, 0, r.stderr);
  assert.deepEqual(JSON.parse(r.stdout.trim()), { threadSmall: true, threadLarge: false, hereSmall: true, hereLarge: false, after: false, locked: false });
});

test('RINGZERO_V8_MIDTIER=boot: the end of the boot turns the mid-tier register allocator off once, and publishes the change for the code-cache writer', () => {
  const dir = JSON.stringify(fileURLToPath(new URL('../src/cpu/soft/wasm/tier-budget.ts', import.meta.url)));
  const script = `import { endBootFlags, flagLock } from ${dir};
const key = Symbol.for('ringzero.v8FlagsChanged');
const before = globalThis[key] ?? null;
endBootFlags();
const after = globalThis[key] ?? null;
delete globalThis[key];
endBootFlags();
console.log(JSON.stringify({ before, after, again: globalThis[key] ?? null, lock: flagLock()[0] }));`;
  const run = (flags: string[], midTier: string) => {
    const r = spawnSync(process.execPath, [...flags, '--import', 'tsx', '--input-type=module', '-e', script],
      { encoding: 'utf8', timeout: 60_000, env: { ...process.env, RINGZERO_V8_MIDTIER: midTier } });
    assert.equal(r.status, 0, r.stderr);
    return JSON.parse(r.stdout.trim());
  };
  const changed = { start: '--turbo-force-mid-tier-regalloc', now: '--no-turbo-force-mid-tier-regalloc' };
  assert.deepEqual(run(['--turbo-force-mid-tier-regalloc'], 'boot'), { before: null, after: changed, again: null, lock: 0 });
  // (the flag for the whole run, or not started with it: nothing changes)
  assert.deepEqual(run(['--turbo-force-mid-tier-regalloc'], '1'), { before: null, after: null, again: null, lock: 0 });
  assert.deepEqual(run([], 'boot'), { before: null, after: null, again: null, lock: 0 });
});
