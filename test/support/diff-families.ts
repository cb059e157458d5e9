// The differential suite's driver shared by cpu-diff, cpu-jit-diff and cpu-wasm-diff: which seeds run, and one
// family's cases over those seeds with the failures gathered for the assertion message.
//
// src/cpu/soft/testing/diff.ts reads RINGZERO_DIFF_JIT / RINGZERO_DIFF_WASM when it is loaded, so the test files that
// set them import it (dynamically, after setting them) and hand its runFamily in; nothing here imports diff.ts.
import assert from 'node:assert/strict';
import { FAMILIES } from '../../src/cpu/soft/testing/generate.ts';
import type { runFamily as RunFamily } from '../../src/cpu/soft/testing/diff.ts';

const FIXED_SEED = 0x5eed_2024;

/** RINGZERO_DIFF_SEED alone, else a fixed seed plus a time-based one (both printed by the caller). */
export function diffSeeds(): number[] {
  const seed = process.env.RINGZERO_DIFF_SEED;
  return seed !== undefined ? [Number(seed) >>> 0] : [FIXED_SEED, (Date.now() % 0x7fff_ffff) >>> 0];
}

/** Cases per family and seed so that the run makes about `totalCases` in all. */
export function casesPerFamily(totalCases: number, families: number, seeds: number): number {
  return Math.max(1, Math.floor(totalCases / families / seeds));
}

/**
 * Run `perFamily` cases of `family` for each seed and assert that every one leaves what the host CPU leaves; the
 * failing forms and shrunk reproducers are printed first. Returns the counts (for a summary line).
 */
export function assertFamilyPasses(runFamily: typeof RunFamily, family: string, seeds: number[], perFamily: number): { passed: number; cases: number } {
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
  return { passed, cases };
}
