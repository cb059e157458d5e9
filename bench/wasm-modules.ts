// bench/wasm-modules (issue 4): what a call_indirect costs in this Node's V8 by how many wasm modules its targets
// are spread over. The translator compiles each batch of hot blocks into a module of its own (a boot makes ~260, a
// long-running VMM hundreds more), and the dispatcher and the blocks' tail calls go from function to function across
// them; this measures that transition alone. A wasm loop calls, through one funcref table, a cycle of N tiny functions
// (each returns the table index of the next, in a random order: a fixed path, as a guest's), laid out as
//   one     all N functions in one module
//   spread  the same, each function large (a branch that never runs guards ~PAD operations), so the hot entries lie
//           on different pages of the one module's code
//   groups  N / 16 modules of 16 functions each
//   many    N modules of one function each
//   inst    N instances of the `one` module, function i taken from instance i (the same code, other instances)
// and prints the best of 5 timed rounds in ns per call (wall, after a warm-up), then a JSON line of the figures.
//
//   node --no-liftoff --no-wasm-lazy-compilation --import tsx bench/wasm-modules.ts [N=256] [PAD=400]
//
// (--no-liftoff: TurboFan code, as hot translated code ends up; --no-wasm-lazy-compilation: every function compiled at
// once, as bin/ringzero sets it, so `spread` really spreads.)
// Session 36 (Intel host, V8 11.3), N=256: one 2.1-2.3, spread 2.8-3.1, groups 2.8-4.3, many 13.5-14.6, inst 2.0 ns
// per call; N=64: one 2.0, many 3.0; N=1024: one 2.6, many 79 ns. So a call into another module costs more the more
// modules the hot cycle visits: not for another instance (inst), nor for code far apart in one module (spread), but
// for code in other modules' code spaces (V8 maps each module's code, and its jump table, which call_indirect's
// targets point into, at an address of its own). The ash loop's translated-code
// samples (bench/syscall-counts --perf-jit) fall in 94 distinct MiB of the address space, 90% of them in 17 (V8 maps
// each module's code on its own). Not yet a lever: fewer, larger reregion batches (RINGZERO_WASM_REGION_PAGES=64)
// ran the warm ash loop no faster (21.3/21.8 against 20.6/21.0 us per iteration).
import { Body, ModuleBuilder, Op, I32 } from '../src/cpu/soft/wasm/emit.ts';
import { checkBenchOptions } from './support/common.ts';

checkBenchOptions(import.meta.url, process.argv.slice(2), []);
const positional = process.argv.slice(2).filter((a) => !a.startsWith('-'));
const N = Number(positional[0] ?? 256), PAD = Number(positional[1] ?? 400);
if (!Number.isInteger(N) || N < 16 || N % 16 !== 0) throw new Error(`N must be a multiple of 16 (got ${positional[0]})`);
if (!Number.isInteger(PAD) || PAD < 0) throw new Error(`PAD must be a non-negative integer (got ${positional[1]})`);

const order = [...Array(N).keys()].sort(() => Math.random() - 0.5);
const next: number[] = new Array(N);
for (let i = 0; i < N; i++) next[order[i]] = order[(i + 1) % N];

/** (i32 x) -> the next index; `big`: with ~PAD operations behind `x == 0x7fffffff`, which no call passes. */
function body(i: number, big: boolean): Body {
  const b = new Body(1);
  if (big) {
    const y = b.local(I32);
    b.get(0).i32(0x7fffffff).op(Op.i32Eq).open(Op.if);
    b.get(0).set(y);
    for (let k = 0; k < PAD; k++) b.get(y).i32(31 + k).op(0x6c /* i32.mul */).i32(7 + i).op(Op.i32Add).get(y).i32(3).op(Op.i32ShrU).op(Op.i32Xor).set(y);
    b.get(y).op(Op.return);
    b.close();
  }
  b.i32(next[i]);
  return b;
}

/** A module holding functions `fns` (exported as f<i>). */
function module(fns: number[], big: boolean): WebAssembly.Module {
  const m = new ModuleBuilder();
  const t = m.type([I32], [I32]);
  for (const i of fns) m.func(t, body(i, big), 'f' + i);
  return new WebAssembly.Module(m.encode());
}
const instance = (fns: number[], big: boolean) => new WebAssembly.Instance(module(fns, big));

/** run(n, idx): n call_indirects along the cycle from idx, through the imported table. */
function dispatcher(table: WebAssembly.Table): (n: number, idx: number) => number {
  const m = new ModuleBuilder();
  m.importTable('e', 't');
  const t = m.type([I32], [I32]);
  const b = new Body(2);
  b.open(Op.block);
  const top = b.open(Op.loop);
  b.get(1).get(1).op(0x11, t).op(0x00).set(1); // call_indirect type t, table 0
  b.get(0).i32(1).op(Op.i32Sub).tee(0).brIf(top);
  b.close();
  b.close();
  b.get(1);
  m.func(m.type([I32, I32], [I32]), b, 'run');
  return new WebAssembly.Instance(new WebAssembly.Module(m.encode()), { e: { t: table } }).exports.run as (n: number, idx: number) => number;
}

function layout(kind: string): WebAssembly.Table {
  const table = new WebAssembly.Table({ element: 'anyfunc', initial: N });
  const put = (inst: WebAssembly.Instance, fns: number[]) => { for (const i of fns) table.set(i, inst.exports['f' + i] as WebAssembly.ExportValue); };
  const all = [...Array(N).keys()];
  if (kind === 'one') put(instance(all, false), all);
  else if (kind === 'spread') put(instance(all, true), all);
  else if (kind === 'groups') for (let g = 0; g < N; g += 16) { const fns = all.slice(g, g + 16); put(instance(fns, false), fns); }
  else if (kind === 'inst') { const mod = module(all, false); for (const i of all) put(new WebAssembly.Instance(mod), [i]); }
  else for (const i of all) put(instance([i], false), [i]);
  return table;
}

const CALLS = 1_000_000;
const figures: Record<string, number> = {};
for (const kind of ['one', 'spread', 'groups', 'many', 'inst']) {
  const run = dispatcher(layout(kind));
  run(CALLS, 0);
  let best = Infinity;
  for (let r = 0; r < 5; r++) {
    const t0 = performance.now();
    run(CALLS, 0);
    best = Math.min(best, (performance.now() - t0) * 1e6 / CALLS);
  }
  figures[kind] = Number(best.toFixed(2));
  const where = kind === 'many' ? `${N} modules` : kind === 'groups' ? `${N / 16} modules` : kind === 'inst' ? `${N} instances of 1 module` : '1 module';
  console.log(`${kind.padEnd(7)} ${String(N).padStart(5)} functions in ${where}: ${best.toFixed(2)} ns per call`);
}
console.log(`many / one: ${(figures.many / figures.one).toFixed(2)}x`);
console.log(JSON.stringify({ bench: 'wasm-modules', n: N, pad: PAD, nsPerCall: figures, manyOverOne: Number((figures.many / figures.one).toFixed(3)) }));
