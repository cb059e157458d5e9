// Microbenchmark of the wasm translator's build (issue 4): the main-thread work of WasmEngine.flush per batch
// (region grouping, translation of each region or block, module encoding), without a boot, on the real blocks of one.
//
//   RINGZERO_WASM_CAPTURE=/tmp/cap.jsonl ringzero run ...       (writes every batch a boot translates, runtime.ts)
//   node --import tsx bench/wasm-build.ts /tmp/cap.jsonl [rounds] (REPS: rounds, default 5; add --cpu-prof to profile)
//   (INLINE=1: the blocks as translated once user code has run, runtime.ts INLINE_LATE: inline TLB probes)
//
// Prints per round the microseconds of main-thread CPU per translated block, and a hash of every module's bytes
// (a change meant for speed only must leave it as it was).
import { readFileSync } from 'node:fs';
import { createHash } from 'node:crypto';
import { readProcStat, statCpuSeconds } from '../src/sys/proc-stat.ts';
import { Block, BlockEntry } from '../src/cpu/soft/code-cache.ts';
import { translateBody, translateRegion, groupRegions, buildModule } from '../src/cpu/soft/wasm/translate.ts';
import type { Body } from '../src/cpu/soft/wasm/emit.ts';
import { withScratch } from '../src/cpu/soft/wasm/emit.ts';

const file = process.argv[2];
if (!file) throw new Error('usage: bench/wasm-build.ts CAPTURE.jsonl [rounds]');
const rounds = Number(process.argv[3] ?? process.env.REPS ?? 5);

interface Rec { id: number; l?: number; pa?: number; mode?: number; gen?: number; pfn2?: number; gen2?: number; es?: number[][] }
const byId: Block[] = [];
const batches: { blocks: Block[]; lins: Map<Block, number> }[] = [];
const noHandler = () => { throw new Error('not replayed here'); };
for (const line of readFileSync(file, 'utf8').split('\n')) {
  if (line === '') continue;
  const recs = JSON.parse(line) as Rec[];
  const blocks: Block[] = [], lins = new Map<Block, number>();
  for (const r of recs) {
    let b = byId[r.id];
    if (b === undefined) {
      const es = r.es!.map((f) => {
        const e = new BlockEntry(noHandler);
        const w = e as unknown as Record<string, number>;
        [w.pk, w.dec1, w.dec2, e.a, e.b, e.imm, e.immHi, e.op, e.base, e.index, e.disp] = f;
        return e;
      });
      b = byId[r.id] = new Block(r.pa!, r.mode!, r.gen!, es);
      b.pfn2 = r.pfn2!; b.gen2 = r.gen2!;
    }
    blocks.push(b);
    if (r.l !== undefined && r.l !== null) lins.set(b, r.l);
  }
  batches.push({ blocks, lins });
}
const nBlocks = batches.reduce((s, b) => s + b.blocks.length, 0);
console.log(`${batches.length} batches, ${nBlocks} blocks (${byId.length} distinct)`);

/** One batch as WasmEngine.flushBatch builds it (tier 1, no hot-counter slot). */
function build(blocks: Block[], lins: Map<Block, number>): Uint8Array | null {
  return withScratch(() => {
    const bodies: Body[] = [];
    for (const group of groupRegions(blocks, lins)) {
      if (group.length > 1) {
        const t = translateRegion(group, lins, { inline: process.env.INLINE === "1" });
        if (t !== null) { bodies.push(t.body); continue; }
      }
      for (const block of group) {
        const t = translateBody(block, lins.get(block), { inline: process.env.INLINE === "1" });
        if (t !== null) bodies.push(t.body);
      }
    }
    return bodies.length === 0 ? null : buildModule(bodies);
  });
}

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
    const m = build(blocks, lins);
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
