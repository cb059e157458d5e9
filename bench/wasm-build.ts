// Microbenchmark of the wasm translator's build (issue 4): the main-thread work of WasmEngine.flush per batch
// (region grouping, translation of each region or block, module encoding), without a boot, on the real blocks of one.
//
//   RINGZERO_WASM_CAPTURE=/tmp/cap.jsonl ringzero run ...       (writes every batch a boot translates, runtime.ts)
//   node --import tsx bench/wasm-build.ts /tmp/cap.jsonl [rounds] (REPS: rounds, default 5; add --cpu-prof to profile)
//   (INLINE=1: the blocks as translated once user code has run, runtime.ts INLINE_LATE: inline TLB probes)
//
// Prints per round the microseconds of main-thread CPU per translated block, and a hash of every module's bytes
// (a change meant for speed only must leave it as it was).
import { createHash } from 'node:crypto';
import { readProcStat, statCpuSeconds } from '../src/sys/proc-stat.ts';
import { readCapture, buildBatch } from './support/capture.ts';

const file = process.argv[2];
if (!file) throw new Error('usage: bench/wasm-build.ts CAPTURE.jsonl [rounds]');
const rounds = Number(process.argv[3] ?? process.env.REPS ?? 5);
const inline = process.env.INLINE === '1';

const { batches, distinct } = readCapture(file);
const nBlocks = batches.reduce((s, b) => s + b.blocks.length, 0);
console.log(`${batches.length} batches, ${nBlocks} blocks (${distinct} distinct)`);

/** The main thread's CPU time in ms (/proc: the process's CPU would count V8's GC and compile threads too). */
const cpu = () => statCpuSeconds(readProcStat(`/proc/self/task/${process.pid}/stat`)!) * 1000;
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
