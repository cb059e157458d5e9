// Wasm operations per guest instruction, by fast form (issue 4): translates every batch of a boot's capture
// (RINGZERO_WASM_CAPTURE, runtime.ts) as bench/wasm-build.ts does, with RINGZERO_WASM_DUMP on, and sums the
// operations each form's instructions became (static counts: each translated instruction once per translation).
// Counts, not times, so a loaded host does not change them.
//
//   node --import tsx bench/form-ops.ts CAPTURE.jsonl [--inline] [--top N]
//
// --inline: as translated once user code has run (runtime.ts INLINE_LATE: inline TLB probes everywhere), the way
// the kernel's system-call path and ash's loop are translated after the boot. Prints per form: instructions, total
// and mean operations, min and max; then the module bytes and the operations per instruction over all. Ends with a
// JSON line.
import { readFileSync, rmSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';

const args = process.argv.slice(2);
const file = args.find((a) => !a.startsWith('--'));
if (!file) throw new Error('usage: bench/form-ops.ts CAPTURE.jsonl [--inline] [--top N]');
const inline = args.includes('--inline');
const topAt = args.indexOf('--top');
const top = topAt >= 0 ? Number(args[topAt + 1]) : 30;
const dumpFile = path.join(mkdtempSync(path.join(tmpdir(), 'form-ops-')), 'dump.txt');
process.env.RINGZERO_WASM_DUMP = dumpFile; // (read by ./dump.ts when it loads: before the dynamic imports below)
const { readCapture, buildBatch } = await import('./support/capture.ts');

// The form names, in the order of fast-forms.ts's `const enum Form` (its text: a const enum has no object at run time).
const src = readFileSync(new URL('../src/cpu/soft/fast-forms.ts', import.meta.url), 'utf8');
const body = src.slice(src.indexOf('export const enum Form {') + 24);
const names = body.slice(0, body.indexOf('\n}')).replace(/\/\*[\s\S]*?\*\//g, '').replace(/\/\/.*$/gm, '')
  .split(',').map((s) => s.trim().replace(/\s*=.*$/, '')).filter((s) => s !== '');

let bytes = 0, modules = 0;
for (const { blocks, lins } of readCapture(file).batches) {
  const m = buildBatch(blocks, lins, inline);
  if (m !== null) { bytes += m.length; modules++; }
}

const per = new Map<string, { n: number; ops: number; min: number; max: number }>();
let ins = 0, ops = 0;
for (const l of readFileSync(dumpFile, 'utf8').split('\n')) {
  const m = /^-- .*form (\d+): (\d+) ops$/.exec(l);
  if (m === null) continue;
  const name = names[Number(m[1])] ?? `form${m[1]}`, k = Number(m[2]);
  const s = per.get(name) ?? { n: 0, ops: 0, min: Infinity, max: 0 };
  s.n++; s.ops += k; s.min = Math.min(s.min, k); s.max = Math.max(s.max, k);
  per.set(name, s);
  ins++; ops += k;
}
rmSync(path.dirname(dumpFile), { recursive: true });
const rows = [...per].sort((a, b) => b[1].ops - a[1].ops);
console.log(`${inline ? 'inline' : 'tier 1'}: ${modules} modules, ${bytes} bytes, ${ins} instructions, ${ops} operations (${(ops / ins).toFixed(2)} per instruction)`);
console.log('form                 instrs      ops   share   mean  min  max');
for (const [name, s] of rows.slice(0, top)) {
  console.log(`${name.padEnd(18)} ${String(s.n).padStart(8)} ${String(s.ops).padStart(8)} ${(100 * s.ops / ops).toFixed(1).padStart(6)}% ${(s.ops / s.n).toFixed(1).padStart(6)} ${String(s.min).padStart(4)} ${String(s.max).padStart(4)}`);
}
console.log(JSON.stringify({
  bench: 'form-ops', inline, modules, bytes, instructions: ins, operations: ops,
  forms: Object.fromEntries(rows.map(([k, s]) => [k, { n: s.n, mean: +(s.ops / s.n).toFixed(1) }])),
}));
