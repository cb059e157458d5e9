// bench/memlib-call (issue 4): what one memory access of translated code costs in this Node's V8, by how it is made.
// Translated blocks call the shared memory library (src/cpu/soft/wasm/runtime.ts buildMemlib: another instance's
// function, imported) for most guest memory operands, after writing the dirty cached registers back to the state
// area; loops probe the TLB inline (translate.ts Translator.load). A loop of 4 loads per pass, each with NREG i64
// "register" locals live across it (changed before it, used after it) and WB of them written back first, is timed
// on a TLB hit in four forms:
//   import   the engine's library function (tlb-probe.ts memFnBody), imported from another instance (default code)
//   local    the same body as a function of the calling module (what translate.ts LOCAL_MEM did, removed in session 30), called directly
//   inline   the probe inline (emitTlbProbe), the write-backs before it as for a call
//   inl-slow the probe inline, the write-backs only on its slow path (a miss, which calls the library)
// Prints ns per access (process CPU time over N passes, after a warm-up), per form and round, then each form's median
// against `import` measured in the same run, and a JSON line of those figures:
//
//   node --import tsx --no-liftoff bench/memlib-call.ts [NREG=8] [WB=2] [N=2000000] [ROUNDS=4]
//
// (--no-liftoff: every function in TurboFan from the start, as hot translated code ends up; add --wasm-inlining to
// see V8 inline `local`.) Session 23, V8 11.3, host load ~20, NREG=8 WB=2: import 3.6-4.1, local 3.9-4.6, inline
// 1.8-2.5, inl-slow 1.2-1.5 ns; NREG=14 WB=4: 5.0-5.4, 5.1-5.3, 2.4-2.6, 1.5-1.6 ns; --wasm-inlining: local 1.8-2.2 ns.
// So the call itself (with the spills and reloads of the live locals around it: V8's wasm calls keep no register)
// costs ~1.8-2.8 ns over an inline probe and each write-back ~0.3 ns; the syscall loop makes ~136 such calls per
// system call (RINGZERO_WASM_EXIT_STATS=1).
import { ModuleBuilder, Body, Op, I32, I64, F64 } from '../src/cpu/soft/wasm/emit.ts';
import { memFnBody, emitTlbProbe, emitRamAccess, LD_PARAMS } from '../src/cpu/soft/wasm/tlb-probe.ts';
import { TLB_ENTRY_SHIFT, TLB_SLOT_MIX } from '../src/cpu/soft/wasm/layout.ts';
import { WASM_RAM_OFFSET } from '../src/memory/guest-memory.ts';

const NREG = Number(process.env.NREG ?? 8), WB = Math.min(NREG, Number(process.env.WB ?? 2));
const N = Number(process.env.N ?? 2_000_000), ROUNDS = Number(process.env.ROUNDS ?? 4);
const RAM = 64 << 20;
const memory = new WebAssembly.Memory({ initial: (WASM_RAM_OFFSET + RAM) >> 16, maximum: 65536, shared: true });
const slow = (): never => { throw new Error('memlib-call: a TLB miss (the bench sets up a hit)'); };

// the memory library, as the engine builds it: rd/wr helpers imported, ld8 exported
const lm = new ModuleBuilder();
lm.importMemory('e', 'm');
lm.importFunc('e', 'rd', lm.type([F64, I32, I32], [I32]));
lm.importFunc('e', 'wr', lm.type([F64, I32, I32, I32, I32], []));
lm.func(lm.type(LD_PARAMS, [I64]), memFnBody(8, false, 0, 1), 'ld8');
const lib = new WebAssembly.Instance(new WebAssembly.Module(lm.encode()), { e: { m: memory, rd: slow, wr: slow } });

const FORMS = ['import', 'local', 'inline', 'inl-slow'];
const m = new ModuleBuilder();
m.importMemory('e', 'm');
const ldT = m.type(LD_PARAMS, [I64]);
const fImport = m.importFunc('e', 'ld8', ldT);
const fRd = m.importFunc('e', 'rd', m.type([F64, I32, I32], [I32]));
const fWr = m.importFunc('e', 'wr', m.type([F64, I32, I32, I32, I32], []));
const fLocal = m.func(ldT, memFnBody(8, false, fRd, fWr));
FORMS.forEach((form, mode) => {
  // loop(n, tag bank, address) -> a sum of the registers (so nothing is dead)
  const b = new Body(3);
  const n = 0, tag = 1, a = 2;
  const st = b.local(I32);
  const regs: number[] = [];
  for (let r = 0; r < NREG; r++) regs.push(b.local(I64));
  const v = b.local(I64), ti = b.local(I32);
  for (let r = 0; r < NREG; r++) b.i64(r).set(regs[r]);
  b.i32(0x10000).set(st);
  b.open(Op.block);
  const top = b.open(Op.loop);
  const writeBack = () => { for (let r = 0; r < WB; r++) b.get(st).get(regs[r]).mem(Op.i64Store, 3, 8 * r); };
  for (let k = 0; k < 4; k++) {
    for (let r = 0; r < NREG; r++) b.get(regs[r]).i64(r + k + 1).op(Op.i64Add).set(regs[r]);
    if (mode !== 3) writeBack();
    if (mode < 2) {
      b.get(st).get(tag).get(a).i32(k).call(mode === 0 ? fImport : fLocal).set(v);
    } else {
      const hit = b.open(Op.block);
      const miss = b.open(Op.block);
      emitTlbProbe(b, tag, a, { ti }, 8, false, miss);
      emitRamAccess(b, 8, false);
      b.set(v).br(hit);
      b.close();
      if (mode === 3) writeBack();
      b.get(st).get(tag).get(a).i32(k).call(fImport).set(v);
      b.close();
    }
    b.get(regs[k % NREG]).get(v).op(Op.i64Xor).set(regs[k % NREG]);
  }
  b.get(n).i32(1).op(Op.i32Sub).tee(n).brIf(top);
  b.close();
  b.close();
  b.get(regs[0]);
  for (let r = 1; r < NREG; r++) b.get(regs[r]).op(Op.i64Add);
  m.func(m.type([I32, I32, I64], [I64]), b, form);
});
const inst = new WebAssembly.Instance(new WebAssembly.Module(m.encode()), { e: { m: memory, ld8: lib.exports.ld8, rd: slow, wr: slow } });

// one TLB entry (./tlb-probe.ts: 16 bytes, the page's linear address as an i64 tag, the addend, the physical page)
// for the address, mapping it to physical page 5
const bank = 0x20000, addr = 0x7f0000001008n, page = Number(addr >> 12n);
const slot = (((page | 0) ^ Math.imul((page | 0) >>> 12, TLB_SLOT_MIX)) & 0xfff) << TLB_ENTRY_SHIFT;
new BigInt64Array(memory.buffer)[(bank + slot) >> 3] = addr & -4096n;
new Int32Array(memory.buffer)[(bank + slot + 8) >> 2] = Number(BigInt.asIntN(32, 5n * 4096n - (addr & -4096n)));
new Uint32Array(memory.buffer)[(bank + slot + 12) >> 2] = 5;

console.log(`memlib-call: NREG=${NREG} WB=${WB} N=${N}, ns per access (process CPU)`);
const ns: Record<string, number[]> = Object.fromEntries(FORMS.map((form) => [form, []]));
for (let round = 0; round <= ROUNDS; round++) {
  const line: string[] = [];
  for (const form of FORMS) {
    const f = inst.exports[form] as (n: number, tag: number, a: bigint) => bigint;
    const c0 = process.cpuUsage();
    f(N, bank, addr);
    const c = process.cpuUsage(c0);
    const x = ((c.user + c.system) * 1000) / N / 4;
    line.push(`${form} ${x.toFixed(2)}`);
    if (round > 0) ns[form].push(x);
  }
  if (round > 0) console.log(line.join('  '));
}
// Medians over the timed rounds, each against `import` (the engine's default code, measured in the same run).
const median = (xs: number[]) => { const o = [...xs].sort((a, b) => a - b); return o.length % 2 ? o[o.length >> 1] : (o[o.length / 2 - 1] + o[o.length / 2]) / 2; };
const med = Object.fromEntries(FORMS.map((form) => [form, median(ns[form])]));
console.log(`medians (ns per access) and ratios against import: ${FORMS.map((form) => `${form} ${med[form].toFixed(2)} (${(med[form] / med.import).toFixed(2)}x)`).join(', ')}`);
console.log(JSON.stringify({
  bench: 'memlib-call', nreg: NREG, wb: WB, n: N, rounds: ROUNDS,
  ...Object.fromEntries(FORMS.flatMap((form) => {
    const k = form.replace('-', '_');
    return [[`${k}_ns`, Number(med[form].toFixed(3))], [`${k}_ratio`, Number((med[form] / med.import).toFixed(3))]];
  })),
}));
