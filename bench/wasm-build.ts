// Microbenchmark of the wasm translator's build (issue 4): the main-thread work of WasmEngine.flush per batch
// (region grouping, translation of each region or block, module encoding), without a boot, on the real blocks of one.
//
//   RINGZERO_WASM_CAPTURE=/tmp/cap.jsonl ringzero run ...       (writes every batch a boot translates, runtime.ts)
//   node --import tsx bench/wasm-build.ts /tmp/cap.jsonl [rounds] (REPS: rounds, default 5; add --cpu-prof to profile)
//   (INLINE=1: the blocks as translated once user code has run, runtime.ts INLINE_LATE: inline TLB probes)
//   --bundled: run it from an esbuild bundle, as the VMM runs from dist/ (scripts/build.mjs): under tsx, esbuild's
//   keepNames wraps every closure the translator makes in __name (session 34: 55.8/23.7 us per block cold/warm
//   under tsx against 33/11.5 bundled, main's head), so a change that removes closures looks better there than it is
//
// Prints per round the microseconds of main-thread CPU per translated block, and a hash of every module's bytes
// (a change meant for speed only must leave it as it was).
import { createHash } from 'node:crypto';
import { spawnSync } from 'node:child_process';
import { mkdirSync, rmSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { threadCpuClock } from '../src/sys/thread-cpu.ts';
import { readCapture, buildBatch } from './support/capture.ts';

if (process.argv.includes('--bundled')) {
  // (the bundle goes under node_modules/.cache, where its external packages resolve)
  const self = fileURLToPath(import.meta.url), cache = join(dirname(self), '..', 'node_modules', '.cache');
  mkdirSync(cache, { recursive: true });
  const out = join(cache, `wasm-build-${process.pid}.mjs`);
  const esbuild = await import('esbuild');
  await esbuild.build({ entryPoints: [self], bundle: true, format: 'esm', platform: 'node', target: 'node20', outfile: out, packages: 'external', logLevel: 'warning' });
  const r = spawnSync(process.execPath, [out, ...process.argv.slice(2).filter((a) => a !== '--bundled')], { stdio: 'inherit' });
  rmSync(out, { force: true });
  process.exit(r.status ?? 1);
}

const file = process.argv[2];
if (!file) throw new Error('usage: bench/wasm-build.ts CAPTURE.jsonl [rounds]');
const rounds = Number(process.argv[3] ?? process.env.REPS ?? 5);
const inline = process.env.INLINE === '1';

const { batches, distinct } = readCapture(file);
const nBlocks = batches.reduce((s, b) => s + b.blocks.length, 0);
console.log(`${batches.length} batches, ${nBlocks} blocks (${distinct} distinct)`);

/**
 * The main thread's CPU time in ms (not the process's, which would count V8's GC and compile threads too): exact
 * (clock_gettime), where /proc's stat counts 10 ms ticks, ~7% of a warm round.
 */
const cpu = threadCpuClock();
// (no outside reference builds these blocks, so the figures are the translator's own: the first, cold round, the median
// of the others, and the hash that a speed-only change must keep)
const perBlock: number[] = [];
let hash = '';
for (let r = 0; r < rounds; r++) {
  const h = createHash('sha256');
  let bytes = 0;
  const t0 = cpu();
  for (const { blocks, lins } of batches) {
    const m = buildBatch(blocks, lins, inline);
    if (m !== null) { h.update(m); bytes += m.length; }
  }
  const ms = cpu() - t0;
  hash = h.digest('hex').slice(0, 16);
  perBlock.push(ms * 1000 / nBlocks);
  console.log(`round ${r}: ${ms.toFixed(0)} ms, ${(ms * 1000 / nBlocks).toFixed(2)} us/block, ${(bytes / 1048576).toFixed(2)} MiB, hash ${hash}`);
}
const warm = perBlock.slice(1).sort((a, b) => a - b);
console.log(JSON.stringify({
  bench: 'wasm-build', blocks: nBlocks, batches: batches.length, firstUsPerBlock: +perBlock[0].toFixed(2),
  medianUsPerBlock: warm.length > 0 ? +warm[warm.length >> 1].toFixed(2) : null, moduleHash: hash,
}));
