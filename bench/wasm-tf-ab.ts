// TurboFan's CPU for translated functions, A/B in one process (issue 4, session 34): translates the first B batches of
// a capture (RINGZERO_WASM_CAPTURE, as bench/wasm-tf) once per variant, puts every function in a module of its own,
// and compiles the N largest (by the first variant's sizes) with TurboFan alone on this thread, the variants
// alternated function by function, R rounds; prints per variant the sum over functions of the least CPU each took,
// its ratio to the first variant's, and a hash of the variant's modules.
//
//   node --no-liftoff --no-wasm-lazy-compilation --experimental-wasm-branch-hinting --single-threaded \
//     --import tsx bench/wasm-tf-ab.ts CAPTURE.jsonl 'setGpShare=0|setGpShare=1' [B=150] [N=2000] [R=5]
//
// A variant is a comma-separated list of translate.ts setters (setX=1/0; setRegionNest takes 0/1/2) called before its
// translation. Why: bench/wasm-tf's whole-run CPU moves 20-30% on a loaded host, its zone bytes do not but miss what
// costs time without allocating (the register allocator's scans). Interleaved and taking minima, the same variant
// twice gives 1.000x on a host at load 8-10, so a 2-4% change of TurboFan's work shows. (Every module gets a custom
// section of its own: V8 would otherwise take a module it compiled before from its cache.)
import { createHash } from 'node:crypto';
import { readCapture } from './support/capture.ts';
import * as TR from '../src/cpu/soft/wasm/translate.ts';
import { withScratch, type Body } from '../src/cpu/soft/wasm/emit.ts';

const [file, vars = 'setGpShare=1|setGpShare=1'] = process.argv.slice(2);
if (!file) throw new Error("usage: bench/wasm-tf-ab.ts CAPTURE.jsonl 'setX=0|setX=1' (B= N= R= in the environment)");
const B = Number(process.env.B ?? 150), N = Number(process.env.N ?? 2000), R = Number(process.env.R ?? 5);
const { batches } = readCapture(file);
const variants = vars.split('|');
const setters = TR as unknown as Record<string, (v: unknown) => unknown>;
const sets: Uint8Array[][] = variants.map((v) => {
  for (const kv of v.split(',').filter((s) => s !== '')) {
    const [k, val] = kv.split('=');
    if (typeof setters[k] !== 'function') throw new Error(`no setter ${k} in translate.ts`);
    setters[k](k === 'setRegionNest' ? Number(val) : val === '1');
  }
  const mods: Uint8Array[] = [];
  for (const { blocks, lins } of batches.slice(0, B)) {
    withScratch(() => {
      for (const group of TR.groupRegions(blocks, lins)) {
        const t = group.length > 1 ? TR.translateRegion(group, lins) : null;
        const bodies: Body[] = t !== null ? [t.body] : group.map((bl) => TR.translateBody(bl, lins.get(bl))?.body).filter((x): x is Body => x !== undefined);
        for (const b of bodies) mods.push(new Uint8Array(TR.buildModule([b])));
      }
    });
  }
  return mods;
});
const order = sets[0].map((_, i) => i).sort((a, b) => sets[0][b].length - sets[0][a].length).slice(0, N);
const best = variants.map(() => order.map(() => Infinity));
let tag = 0;
const compile = (m: Uint8Array): number => {
  const u = new Uint8Array(m.length + 7);
  u.set(m); tag++;
  u.set([0, 5, 1, 0x78, tag & 255, (tag >> 8) & 255, (tag >> 16) & 255], m.length);
  const c0 = process.cpuUsage();
  new WebAssembly.Module(u);
  const c = process.cpuUsage(c0);
  return (c.user + c.system) / 1000;
};
for (let r = 0; r < R; r++) {
  order.forEach((ix, i) => {
    for (let v = 0; v < variants.length; v++) {
      const k = (v + r + i) % variants.length;
      best[k][i] = Math.min(best[k][i], compile(sets[k][ix]));
    }
  });
}
const base = best[0].reduce((s, x) => s + x, 0);
variants.forEach((v, k) => {
  const h = createHash('sha256');
  for (const m of sets[k]) h.update(m);
  const bytes = order.reduce((s, ix) => s + sets[k][ix].length, 0);
  const ms = best[k].reduce((s, x) => s + x, 0);
  console.log(`${v.padEnd(24)} ${order.length} functions, ${bytes} bytes: TurboFan ${ms.toFixed(1)} ms (${(ms / base).toFixed(3)}x), modules ${h.digest('hex').slice(0, 12)}`);
});
