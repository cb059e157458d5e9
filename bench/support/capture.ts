// A boot's translated batches as RINGZERO_WASM_CAPTURE writes them (src/cpu/soft/wasm/runtime.ts captureBatch: one
// JSON line per batch, each block's decoded entries and the linear address it was queued at), read back into Blocks,
// and one batch built into its module as WasmEngine.flushBatch does (bench/wasm-build, bench/form-ops).
// (Imports the translator: a caller that sets RINGZERO_WASM_DUMP first imports this module after setting it.)
import { readFileSync } from 'node:fs';
import { Block, BlockEntry } from '../../src/cpu/soft/code-cache.ts';
import { translateBody, translateRegion, groupRegions, buildModule } from '../../src/cpu/soft/wasm/translate.ts';
import { withScratch, type Body } from '../../src/cpu/soft/wasm/emit.ts';

export interface CapturedBatch { blocks: Block[]; lins: Map<Block, number> }

interface Rec { id: number; l?: number; pa?: number; mode?: number; gen?: number; pfn2?: number; gen2?: number; es?: number[][] }

/** The batches of capture `file`, in order; a block captured again (by id) is the same Block object. */
export function readCapture(file: string): { batches: CapturedBatch[]; distinct: number } {
  const byId: Block[] = [];
  const batches: CapturedBatch[] = [];
  const noHandler = () => { throw new Error('not replayed here'); };
  for (const line of readFileSync(file, 'utf8').split('\n')) {
    if (line === '') continue;
    const blocks: Block[] = [], lins = new Map<Block, number>();
    for (const r of JSON.parse(line) as Rec[]) {
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
  return { batches, distinct: byId.length };
}

/** One batch as WasmEngine.flushBatch builds it (`inline`: as translated once user code has run, INLINE_LATE). */
export function buildBatch(blocks: Block[], lins: Map<Block, number>, inline: boolean): Uint8Array | null {
  return withScratch(() => {
    const bodies: Body[] = [];
    for (const group of groupRegions(blocks, lins)) {
      if (group.length > 1) {
        const t = translateRegion(group, lins, { inline });
        if (t !== null) { bodies.push(t.body); continue; }
      }
      for (const block of group) {
        const t = translateBody(block, lins.get(block), { inline });
        if (t !== null) bodies.push(t.body);
      }
    }
    return bodies.length === 0 ? null : buildModule(bodies);
  });
}
