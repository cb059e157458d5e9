// The differential suite (src/cpu/soft/testing, as test/cpu-diff.test.ts runs it) through the JavaScript
// translator: every snippet runs once to record its blocks, then again from the same state with each 64-bit block
// translated at its first replay (RINGZERO_DIFF_JIT=1), and that run must leave what the host CPU leaves —
// registers, defined flags, memory — for every family the interpreter is known to pass.
//
//   RINGZERO_DIFF_CASES (default 1500; the JavaScript translator is no longer the default engine: cpu-wasm-diff runs the wasm one) cases, seeds as in cpu-diff (a fixed one plus a time-based one, printed).
import test from 'node:test';
import assert from 'node:assert/strict';

process.env.RINGZERO_DIFF_JIT = '1';
const { FAMILIES } = await import('../src/cpu/soft/testing/generate.ts');
const { runFamily } = await import('../src/cpu/soft/testing/diff.ts');
const { KNOWN_PASSING_FAMILIES } = await import('../src/cpu/soft/testing/passing.ts');

const { diffSeeds, casesPerFamily, assertFamilyPasses } = await import('./support/diff-families.ts');

const totalCases = Number(process.env.RINGZERO_DIFF_CASES ?? 1500);
const seeds = diffSeeds();
const families = FAMILIES.filter((f) => KNOWN_PASSING_FAMILIES.includes(f));
console.log(`cpu-jit-diff: seeds ${seeds.join(', ')} (rerun one with RINGZERO_DIFF_SEED=<seed>), ${totalCases} cases over ${families.length} families`);
const perFamily = casesPerFamily(totalCases, families.length, seeds.length);

for (const family of families) {
  test(`family ${family} through generated code`, () => { assertFamilyPasses(runFamily, family, seeds, perFamily); });
}

test('the cases above ran in generated code', async () => {
  const { softJitCounts } = await import('../src/cpu/soft/testing/diff.ts');
  const c = softJitCounts();
  console.log(`cpu-jit-diff: ${c.compiled} blocks compiled, ${c.jitInstructions} instructions run in them`);
  assert.ok(c.compiled > families.length, `blocks compiled: ${c.compiled}`);
  assert.ok(c.jitInstructions > totalCases, `instructions in generated code: ${c.jitInstructions}`);
});
