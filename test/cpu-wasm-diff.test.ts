// The differential suite (src/cpu/soft/testing, as test/cpu-diff.test.ts runs it) through the WebAssembly translator,
// the default engine's: the suite's memory is wasm-backed, every snippet runs once to record its blocks, then again
// from the same state with each 64-bit block translated at its first replay (RINGZERO_DIFF_WASM=1), and that run must
// leave what the host CPU leaves — registers, defined flags, memory — for every family the interpreter is known to
// pass. (Instructions without wasm code run through the translator's replay helper inside translated blocks.)
//
//   RINGZERO_DIFF_CASES (default 2000) cases, seeds as in cpu-diff (a fixed one plus a time-based one, printed).
import test from 'node:test';
import assert from 'node:assert/strict';

process.env.RINGZERO_DIFF_WASM = '1';
const { FAMILIES } = await import('../src/cpu/soft/testing/generate.ts');
const { runFamily, softJitCounts } = await import('../src/cpu/soft/testing/diff.ts');
const { KNOWN_PASSING_FAMILIES } = await import('../src/cpu/soft/testing/passing.ts');

const FIXED_SEED = 0x5eed_2024;
const env = process.env;
const totalCases = Number(env.RINGZERO_DIFF_CASES ?? 2000);
const seeds = env.RINGZERO_DIFF_SEED !== undefined ? [Number(env.RINGZERO_DIFF_SEED) >>> 0] : [FIXED_SEED, (Date.now() % 0x7fff_ffff) >>> 0];
const families = FAMILIES.filter((f) => KNOWN_PASSING_FAMILIES.includes(f));
console.log(`cpu-wasm-diff: seeds ${seeds.join(', ')} (rerun one with RINGZERO_DIFF_SEED=<seed>), ${totalCases} cases over ${families.length} families`);
const perFamily = Math.max(1, Math.floor(totalCases / families.length / seeds.length));

for (const family of families) {
  test(`family ${family} through translated wasm`, () => {
    const lines: string[] = [];
    let passed = 0, cases = 0;
    for (const seed of seeds) {
      const r = runFamily(family, seed, perFamily, { start: FAMILIES.indexOf(family), stride: FAMILIES.length, maxReproducers: 2, maxShrunk: 6 });
      passed += r.passed;
      cases += r.cases;
      for (const [forms, n] of r.failingForms) lines.push(`  seed ${seed}: ${n}x ${forms}`);
      lines.push(...r.reproducers);
    }
    if (passed !== cases) console.log(`family ${family}: ${passed}/${cases} passed\n${lines.join('\n')}`);
    assert.equal(passed, cases, `${family}: ${cases - passed} of ${cases} cases differ from the host CPU`);
  });
}

test('the cases above ran in translated wasm', () => {
  const c = softJitCounts();
  console.log(`cpu-wasm-diff: ${c.compiled} blocks translated, ${c.jitInstructions} instructions run in them`);
  assert.ok(c.wasm, 'the suite\'s CPU has the wasm translator');
  assert.ok(c.compiled > families.length, `blocks translated: ${c.compiled}`);
  assert.ok(c.jitInstructions > totalCases, `instructions in translated code: ${c.jitInstructions}`);
});
