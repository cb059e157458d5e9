// The SSE/SSE2 fast forms (src/cpu/soft/fast-forms.ts Form.SseMovRR .. SseMovqXX, and BSF/BSR) and their WebAssembly code
// (src/cpu/soft/wasm/sse.ts), differentially against the interpreter's handlers (src/cpu/soft/ops/sse*.ts):
// each instruction is recorded once, checked to have the expected form, then run from random states (XMM registers
// included; memory operands aligned, misaligned, across a page end, in a read-only page, a missing page, at a
// non-canonical address) through the interpreter (the reference), closure replay of the block cache and the wasm
// translator, which must leave the same registers, XMM registers, flags, RIP, memory, instruction count and exception.
// Then blocks that exercise the paths around the inline code: a strlen loop that runs with no replay, a 16-byte load
// that crosses a page or misses the TLB, a store across a page end into a read-only page, a store into the page
// holding the code (self-modifying code), a misaligned MOVAPS (#GP), CR0.TS (#NM) and CR4.OSFXSR clear (#UD).
// Every block is recorded the first time it runs and translated at its first replay (thresholds 0).
// Machine code from GNU as (`as --64`, Intel syntax as printed by objdump).
import test from 'node:test';
import assert from 'node:assert/strict';
import { hexBytes, runBlocksToHalt, CODE, DATA, STACK_TOP, RO_PAGE, MISSING_PAGE, translatorMachine, protectFaultPages, firstEntryForm, type Machine } from './support/soft-cpu.ts';
import { setHotThreshold, setJitThreshold, tableSlot } from '../src/cpu/soft/code-cache.ts';
import { Form } from '../src/cpu/soft/fast-forms.ts';
import { GuestMemory, MiB } from '../src/memory/guest-memory.ts';
import * as C from '../src/cpu/soft/constants.ts';

setHotThreshold(0);
setJitThreshold(0);

const codeAt = (index: number) => CODE + index * 0x1000;
/** A read-only 2 MiB page (writes fault with CR0.WP) and a missing one. */

/** [bytes, assembly, expected form]. */
const CASES: [string, string, Form][] = [
  ['0f 28 ca', 'movaps xmm1,xmm2', Form.SseMovRR],
  ['44 0f 28 4e 10', 'movaps xmm9,XMMWORD PTR [rsi+0x10]', Form.SseLoad],
  ['66 0f 28 5e 20', 'movapd xmm3,XMMWORD PTR [rsi+0x20]', Form.SseLoad],
  ['0f 29 66 30', 'movaps XMMWORD PTR [rsi+0x30],xmm4', Form.SseStore],
  ['44 0f 28 e3', 'movaps xmm12,xmm3', Form.SseMovRR],
  ['0f 10 6e 07', 'movups xmm5,XMMWORD PTR [rsi+0x7]', Form.SseLoad],
  ['0f 11 76 09', 'movups XMMWORD PTR [rsi+0x9],xmm6', Form.SseStore],
  ['66 0f 10 7e 03', 'movupd xmm7,XMMWORD PTR [rsi+0x3]', Form.SseLoad],
  ['66 0f 6f 46 40', 'movdqa xmm0,XMMWORD PTR [rsi+0x40]', Form.SseLoad],
  ['66 44 0f 7f 7e 50', 'movdqa XMMWORD PTR [rsi+0x50],xmm15', Form.SseStore],
  ['f3 44 0f 6f 46 05', 'movdqu xmm8,XMMWORD PTR [rsi+0x5]', Form.SseLoad],
  ['f3 44 0f 7f 56 0b', 'movdqu XMMWORD PTR [rsi+0xb],xmm10', Form.SseStore],
  ['f3 44 0f 6f d9', 'movdqu xmm11,xmm1', Form.SseMovRR],
  ['66 41 0f 6f d5', 'movdqa xmm2,xmm13', Form.SseMovRR],
  ['66 0f e7 5e 60', 'movntdq XMMWORD PTR [rsi+0x60],xmm3', Form.SseStore],
  ['0f 2b 6e 70', 'movntps XMMWORD PTR [rsi+0x70],xmm5', Form.SseStore],
  ['66 0f 74 ca', 'pcmpeqb xmm1,xmm2', Form.SseOpRR],
  ['66 0f 74 86 80 00 00 00', 'pcmpeqb xmm0,XMMWORD PTR [rsi+0x80]', Form.SseOpRM],
  ['66 0f 75 dc', 'pcmpeqw xmm3,xmm4', Form.SseOpRR],
  ['66 0f 76 ae 90 00 00 00', 'pcmpeqd xmm5,XMMWORD PTR [rsi+0x90]', Form.SseOpRM],
  ['66 0f 64 f7', 'pcmpgtb xmm6,xmm7', Form.SseOpRR],
  ['66 45 0f 65 c1', 'pcmpgtw xmm8,xmm9', Form.SseOpRR],
  ['66 45 0f 66 d3', 'pcmpgtd xmm10,xmm11', Form.SseOpRR],
  ['66 0f ef c0', 'pxor xmm0,xmm0', Form.SseOpRR],
  ['66 0f ef 8e a0 00 00 00', 'pxor xmm1,XMMWORD PTR [rsi+0xa0]', Form.SseOpRM],
  ['66 45 0f eb e5', 'por xmm12,xmm13', Form.SseOpRR],
  ['66 44 0f db b6 b0 00 00 00', 'pand xmm14,XMMWORD PTR [rsi+0xb0]', Form.SseOpRM],
  ['66 0f df d3', 'pandn xmm2,xmm3', Form.SseOpRR],
  ['66 0f df a6 c0 00 00 00', 'pandn xmm4,XMMWORD PTR [rsi+0xc0]', Form.SseOpRM],
  ['0f 57 ed', 'xorps xmm5,xmm5', Form.SseOpRR],
  ['66 0f 57 f7', 'xorpd xmm6,xmm7', Form.SseOpRR],
  ['44 0f 54 86 d0 00 00 00', 'andps xmm8,XMMWORD PTR [rsi+0xd0]', Form.SseOpRM],
  ['45 0f 55 ca', 'andnps xmm9,xmm10', Form.SseOpRR],
  ['45 0f 56 dc', 'orps xmm11,xmm12', Form.SseOpRR],
  ['66 0f d7 c1', 'pmovmskb eax,xmm1', Form.SsePmovmskb],
  ['66 45 0f d7 d5', 'pmovmskb r10d,xmm13', Form.SsePmovmskb],
  ['66 0f 60 ca', 'punpcklbw xmm1,xmm2', Form.SseOpRR],
  ['66 0f 61 dc', 'punpcklwd xmm3,xmm4', Form.SseOpRR],
  ['66 0f 62 ae e0 00 00 00', 'punpckldq xmm5,XMMWORD PTR [rsi+0xe0]', Form.SseOpRM],
  ['66 0f 6c f7', 'punpcklqdq xmm6,xmm7', Form.SseOpRR],
  ['66 45 0f 68 c1', 'punpckhbw xmm8,xmm9', Form.SseOpRR],
  ['66 45 0f 69 d3', 'punpckhwd xmm10,xmm11', Form.SseOpRR],
  ['66 45 0f 6a e5', 'punpckhdq xmm12,xmm13', Form.SseOpRR],
  ['66 44 0f 6d b6 f0 00 00 00', 'punpckhqdq xmm14,XMMWORD PTR [rsi+0xf0]', Form.SseOpRM],
  ['66 0f 70 ca 1b', 'pshufd xmm1,xmm2,0x1b', Form.SseOpRR],
  ['66 0f 70 c0 00', 'pshufd xmm0,xmm0,0x0', Form.SseOpRR],
  ['66 0f 70 9e 00 01 00 00 e4', 'pshufd xmm3,XMMWORD PTR [rsi+0x100],0xe4', Form.SseOpRM],
  ['66 0f fc ca', 'paddb xmm1,xmm2', Form.SseOpRR],
  ['66 0f fd dc', 'paddw xmm3,xmm4', Form.SseOpRR],
  ['66 0f fe ee', 'paddd xmm5,xmm6', Form.SseOpRR],
  ['66 0f d4 be 10 01 00 00', 'paddq xmm7,XMMWORD PTR [rsi+0x110]', Form.SseOpRM],
  ['66 45 0f f8 c1', 'psubb xmm8,xmm9', Form.SseOpRR],
  ['66 45 0f f9 d3', 'psubw xmm10,xmm11', Form.SseOpRR],
  ['66 45 0f fa e5', 'psubd xmm12,xmm13', Form.SseOpRR],
  ['66 45 0f fb f7', 'psubq xmm14,xmm15', Form.SseOpRR],
  ['66 0f da ca', 'pminub xmm1,xmm2', Form.SseOpRR],
  ['66 0f de 9e 20 01 00 00', 'pmaxub xmm3,XMMWORD PTR [rsi+0x120]', Form.SseOpRM],
  ['66 0f ea e5', 'pminsw xmm4,xmm5', Form.SseOpRR],
  ['66 0f ee f7', 'pmaxsw xmm6,xmm7', Form.SseOpRR],
  ['66 0f dc ca', 'paddusb xmm1,xmm2', Form.SseOpRR],
  ['66 0f d8 dc', 'psubusb xmm3,xmm4', Form.SseOpRR],
  ['66 0f ed ee', 'paddsw xmm5,xmm6', Form.SseOpRR],
  ['66 41 0f e8 f8', 'psubsb xmm7,xmm8', Form.SseOpRR],
  ['66 45 0f e0 ca', 'pavgb xmm9,xmm10', Form.SseOpRR],
  ['66 45 0f d5 dc', 'pmullw xmm11,xmm12', Form.SseOpRR],
  ['66 0f 6e c8', 'movd xmm1,eax', Form.SseMovdXR],
  ['66 48 0f 6e d3', 'movq xmm2,rbx', Form.SseMovdXR],
  ['66 44 0f 6e ae 30 01 00 00', 'movd xmm13,DWORD PTR [rsi+0x130]', Form.SseMovdXM],
  ['f3 0f 7e 9e 38 01 00 00', 'movq xmm3,QWORD PTR [rsi+0x138]', Form.SseMovdXM],
  ['66 0f 7e e0', 'movd eax,xmm4', Form.SseMovdRX],
  ['66 4d 0f 7e f1', 'movq r9,xmm14', Form.SseMovdRX],
  ['66 0f 7e ae 40 01 00 00', 'movd DWORD PTR [rsi+0x140],xmm5', Form.SseMovdMX],
  ['66 0f d6 b6 48 01 00 00', 'movq QWORD PTR [rsi+0x148],xmm6', Form.SseMovdMX],
  ['f3 41 0f 7e f8', 'movq xmm7,xmm8', Form.SseMovqXX],
  ['f3 44 0f 7e 8e 50 01 00 00', 'movq xmm9,QWORD PTR [rsi+0x150]', Form.SseMovdXM],
  ['66 44 0f d6 96 58 01 00 00', 'movq QWORD PTR [rsi+0x158],xmm10', Form.SseMovdMX],
  ['66 0f 6f 0d 00 01 00 00', 'movdqa xmm1,XMMWORD PTR [rip+0x100]', Form.SseLoad],
  ['64 f3 0f 6f 56 10', 'movdqu xmm2,XMMWORD PTR fs:[rsi+0x10]', Form.SseLoad],
  ['66 0f f6 ca', 'psadbw xmm1,xmm2', Form.SseOpRR],
  ['66 0f 12 4e 08', 'movlpd xmm1,QWORD PTR [rsi+0x8]', Form.SseHalfLoad],
  ['66 0f 16 56 18', 'movhpd xmm2,QWORD PTR [rsi+0x18]', Form.SseHalfLoad],
  ['44 0f 12 4e 20', 'movlps xmm9,QWORD PTR [rsi+0x20]', Form.SseHalfLoad],
  ['0f 16 5e 28', 'movhps xmm3,QWORD PTR [rsi+0x28]', Form.SseHalfLoad],
  ['0f 12 e5', 'movhlps xmm4,xmm5', Form.SseHalfMove],
  ['41 0f 16 f4', 'movlhps xmm6,xmm12', Form.SseHalfMove],
  ['66 0f 13 7e 30', 'movlpd QWORD PTR [rsi+0x30],xmm7', Form.SseHalfStore],
  ['66 44 0f 17 46 38', 'movhpd QWORD PTR [rsi+0x38],xmm8', Form.SseHalfStore],
  ['44 0f 13 56 40', 'movlps QWORD PTR [rsi+0x40],xmm10', Form.SseHalfStore],
  ['44 0f 17 5e 48', 'movhps QWORD PTR [rsi+0x48],xmm11', Form.SseHalfStore],
  // BSF/BSR (F3: TZCNT/LZCNT, run as BSF/BSR: CPUID offers no BMI1/ABM), register and memory, zero sources too
  ['0f bc c3', 'bsf eax,ebx', Form.BitScanR],
  ['48 0f bd c8', 'bsr rcx,rax', Form.BitScanR],
  ['4c 0f bc 4e 20', 'bsf r9,QWORD PTR [rsi+0x20]', Form.BitScanM],
  ['0f bd 46 24', 'bsr eax,DWORD PTR [rsi+0x24]', Form.BitScanM],
  ['f3 48 0f bc d3', 'tzcnt rdx,rbx', Form.BitScanR],
  ['f3 44 0f bd d0', 'lzcnt r10d,eax', Form.BitScanR],
  ['48 0f bc c0', 'bsf rax,rax', Form.BitScanR],
];

type Path = 'interpreter' | 'closures' | 'wasm';

const memories: GuestMemory[] = [];
test.after(() => { for (const m of memories) m.close(); });

function machine(wasm: boolean): Machine {
  const m = translatorMachine(wasm, memories);
  protectFaultPages(m);
  return m;
}

// ---- random states (xorshift32, fixed seed: failures are reproducible)

let seed = 0x5eed5e11;
function rnd(): number {
  seed ^= seed << 13; seed ^= seed >>> 17; seed ^= seed << 5;
  return seed >>> 0;
}
/** Bytes from a small alphabet (so compares find equal lanes) or anything, with sign bits set or not. */
function byte(k: number): number {
  return k === 0 ? [0, 0x41, 0x80, 0xff][rnd() % 4] : rnd() & 0xff;
}
/** A memory operand base: mostly aligned RAM, sometimes misaligned, across a page end, read-only, missing, non-canonical. */
function base(): bigint {
  const k = rnd() % 12;
  if (k < 5) return BigInt(DATA + 16 * (rnd() % 0x70));
  if (k === 5) return BigInt(DATA + (rnd() % 0x700)); // misaligned (mostly)
  if (k === 6) return BigInt(DATA + 0x1000 - 0x160 - (rnd() % 0x20)); // operands around the page end
  if (k === 7) return BigInt(RO_PAGE - 0x160 + 16 * (rnd() % 0x20)); // ends in, or starts in, the read-only page
  if (k === 8) return BigInt(RO_PAGE + 16 * (rnd() % 0x100));
  if (k === 9) return BigInt(MISSING_PAGE + 16 * (rnd() % 0x100));
  if (k === 10) return BigInt(DATA + 0x1000 - 0x158); // [rsi+0x150..0x160] across the page end
  return 0x0000_8000_0000_0000n + BigInt(16 * (rnd() % 0x10));
}

interface State { gpr: bigint[]; xmm: Uint8Array; flags: number; data: Uint8Array; ro: Uint8Array }

const AREA = DATA - 0x800, AREA_SIZE = 0x2800;

function randomState(): State {
  const gpr = Array.from({ length: 16 }, () => (BigInt(rnd()) << 32n) | BigInt(rnd()));
  gpr[4] = BigInt(STACK_TOP);
  gpr[6] = base();
  const xmm = new Uint8Array(256);
  const k = rnd() % 2;
  for (let i = 0; i < 256; i++) xmm[i] = byte(k);
  const data = new Uint8Array(AREA_SIZE);
  for (let i = 0; i < data.length; i++) data[i] = byte(k);
  const ro = new Uint8Array(0x3000);
  for (let i = 0; i < ro.length; i++) ro[i] = rnd() & 0xff;
  // (zero and one-bit sources for BSF/BSR: rax, rbx, and the quadword at [rsi+0x20])
  if (rnd() % 3 === 0) gpr[0] = rnd() % 2 ? 0n : 1n << BigInt(rnd() % 64);
  if (rnd() % 3 === 0) gpr[3] = rnd() % 2 ? 0n : 1n << BigInt(rnd() % 64);
  const at = Number(gpr[6]) - AREA + 0x20;
  if (rnd() % 3 === 0 && at >= 0 && at + 8 <= AREA_SIZE) data.fill(0, at, at + 8);
  return { gpr, xmm, flags: rnd() & C.ARITH_FLAGS, data, ro };
}

function load(m: Machine, s: State): void {
  const c = m.cpu;
  for (let i = 0; i < 16; i++) c.setGpr(i, BigInt.asUintN(64, s.gpr[i]));
  c.xmm.set(s.xmm);
  c.setFlagsValue(C.FLAGS_FIXED | s.flags);
  m.mem.write(AREA, s.data);
  m.mem.write(RO_PAGE - 0x1000, s.ro);
  c.cr2 = 0;
  c.faultError = -1;
  c.segBase[C.FS] = 0x100;
}

function snapshot(m: Machine, fault: number, i0: number) {
  const c = m.cpu;
  return {
    regs: Array.from({ length: 16 }, (_, i) => c.getGpr(i).toString(16)).join(' '),
    xmm: Buffer.from(c.xmm).toString('hex'),
    flags: (c.getFlags() & C.ARITH_FLAGS).toString(16),
    rip: c.rip.toString(16),
    fault,
    cr2: fault === C.EXC_PF ? c.cr2.toString(16) : '',
    errorCode: fault >= 0 ? c.faultError : -2,
    instructions: c.instructions - i0,
    data: Buffer.from(m.mem.read(AREA, AREA_SIZE)).toString('hex'),
    ro: Buffer.from(m.mem.read(RO_PAGE - 0x1000, 0x3000)).toString('hex'),
  };
}

type Snapshot = ReturnType<typeof snapshot>;

/** The fields of two snapshots that differ, shortly (long strings: from their first differing character). */
function same(got: Snapshot, ref: Snapshot, what: string): void {
  const out: string[] = [];
  for (const k of Object.keys(ref) as (keyof Snapshot)[]) {
    const a = String(ref[k]), b = String(got[k]);
    if (a === b) continue;
    let i = 0;
    while (a[i] === b[i]) i++;
    const from = a.length > 64 ? i - (i % 2) : 0;
    out.push(`${k}${from ? `@${from / 2}` : ''}: interpreter ${a.slice(from, from + 64)}, got ${b.slice(from, from + 64)}`);
  }
  if (out.length) assert.fail(`${what}: ${out.join('; ')}`);
}

function run(m: Machine, path: Path, s: State, at: number) {
  const c = m.cpu;
  c.blockCacheEnabled = path !== 'interpreter';
  c.jitEnabled = path === 'wasm';
  load(m, s);
  const i0 = c.instructions;
  const fault = runBlocksToHalt(m, 100, at);
  return snapshot(m, fault, i0);
}

/** A state in which every case runs without a fault (aligned operands in RAM): for recording and the replay count. */
function benign(): State {
  const s = randomState();
  s.gpr[6] = BigInt(DATA);
  return s;
}

const PER_CASE = Number(process.env.RINGZERO_SSE_CASES ?? 40);
/** Instructions whose operation has no wasm code (replayed inside translated blocks). */
const NO_WASM = new Set(['psadbw xmm1,xmm2']);

test('every SSE form leaves what the interpreter leaves, faults included (closures and wasm), and runs inline in wasm', () => {
  const js = machine(false), wm = machine(true);
  let compared = 0, faults = 0;
  const kinds = new Set<number>();
  for (const [index, [hex, asm, form]] of CASES.entries()) {
    const at = codeAt(index);
    const code = Uint8Array.from([...hexBytes(hex), 0xf4]);
    if (asm.includes('[rip+')) new DataView(code.buffer).setInt32(code.length - 5, DATA + 0x100 - (at + code.length - 1), true);
    for (const m of [js, wm]) {
      m.mem.write(at, code);
      for (let k = 0; k < 2; k++) {
        m.cpu.blockCacheEnabled = true;
        m.cpu.jitEnabled = true;
        load(m, benign());
        assert.equal(runBlocksToHalt(m, 100, at), -1, `${asm}: the benign run does not fault`);
      }
      assert.equal(firstEntryForm(m, at), form, `${asm} (${hex}) has form ${form}`);
    }
    // Translated, with the operand's page in the TLB: no replay (the operation is inline), unless it has no wasm code.
    const r0 = wm.cpu.wasm!.stats.replays;
    const s = benign();
    const ref = run(js, 'interpreter', s, at), got = run(wm, 'wasm', s, at);
    same(got, ref, `${asm}: benign state through wasm`);
    // (the HLT that ends the block is replayed)
    assert.equal(wm.cpu.wasm!.stats.replays - r0, NO_WASM.has(asm) ? 2 : 1, `${asm}: replays in translated code`);
    for (let n = 0; n < PER_CASE; n++) {
      const s = randomState();
      const ref = run(js, 'interpreter', s, at);
      if (ref.fault >= 0) { faults++; kinds.add(ref.fault); }
      for (const [m, path] of [[js, 'closures'], [wm, 'wasm']] as [Machine, Path][]) {
        const got = run(m, path, s, at);
        same(got, ref, `${asm} (${hex}) through ${path} from rsi ${BigInt.asUintN(64, s.gpr[6]).toString(16)}`);
        compared++;
      }
    }
  }
  assert.ok(wm.cpu.wasm!.stats.compiled >= CASES.length, `blocks translated to wasm: ${wm.cpu.wasm!.stats.compiled}`);
  assert.ok(kinds.has(C.EXC_GP) && kinds.has(C.EXC_PF), `faults seen: ${[...kinds]}`);
  console.log(`cpu-wasm-sse: ${compared} runs compared over ${CASES.length} instructions, ${faults} reference runs faulted`);
});

// ---- blocks around the inline code

/**
 * Run `code` at CODE `runs` times on the interpreter and in wasm (recorded on the first run, translated on the
 * second), `prepare(m, run)` before each; the last runs must agree. Returns the wasm machine and its last run's replays.
 */
function agree(code: number[], prepare: (m: Machine, run: number) => void, runs = 2): { m: Machine; replays: number } {
  const results = [false, true].map((wasm) => {
    const m = machine(wasm);
    m.cpu.blockCacheEnabled = wasm;
    m.cpu.jitEnabled = wasm;
    m.mem.write(CODE, Uint8Array.from(code));
    let fault = -1, replays = 0, i0 = 0;
    for (let r = 0; r < runs; r++) {
      prepare(m, r);
      const r0 = m.cpu.wasm?.stats.replays ?? 0;
      i0 = m.cpu.instructions;
      fault = runBlocksToHalt(m, 100000);
      replays = (m.cpu.wasm?.stats.replays ?? 0) - r0;
    }
    return { m, replays, s: snapshot(m, fault, i0) };
  });
  same(results[1].s, results[0].s, 'translated code = interpreter');
  return { m: results[1].m, replays: results[1].replays };
}

const text = (m: Machine, at: number, s: string) => m.mem.write(at, new TextEncoder().encode(s));

test('a strlen loop (movdqa, pcmpeqb, pmovmskb, pxor) runs in wasm without replays and agrees with the interpreter', () => {
  // rdi = string (16-byte aligned), returns rax = length:
  //   pxor xmm0,xmm0 / mov rax,rdi
  //   1: movdqa xmm1,[rax] / pcmpeqb xmm1,xmm0 / pmovmskb ecx,xmm1 / add rax,16 / test ecx,ecx / jz 1b
  //   bsf ecx,ecx (replayed) / lea rax,[rax+rcx-16] / sub rax,rdi / hlt
  const code = hexBytes(`66 0f ef c0 48 89 f8 66 0f 6f 08 66 0f 74 c8 66 0f d7 c9 48 83 c0 10 85 c9 74 ec
    0f bc c9 48 8d 44 08 f0 48 29 f8 f4`);
  const { m, replays } = agree(code, (m) => {
    text(m, DATA, 'x'.repeat(1000) + '\0');
    m.cpu.setGpr(7, BigInt(DATA));
  });
  assert.equal(m.cpu.getGpr(0), 1000n);
  assert.ok(replays <= 2, `replays on the second run: ${replays}`);
  assert.ok(m.cpu.jitInstructions > 300, `instructions in wasm: ${m.cpu.jitInstructions}`);
});

test('a 16-byte load reaching into a missing page faults (#PF at the second page) in translated code', () => {
  // mov rax,1 / movdqu xmm1,[rsi] / mov rax,2 / hlt: translated with rsi in RAM, then 15 bytes before a missing page
  const code = hexBytes('48 c7 c0 01 00 00 00 f3 0f 6f 0e 48 c7 c0 02 00 00 00 f4');
  const { m, replays } = agree(code, (m, run) => { m.cpu.setGpr(6, BigInt(run < 2 ? DATA : MISSING_PAGE - 15)); m.cpu.cr2 = 0; }, 3);
  assert.equal(m.cpu.lastException, C.EXC_PF);
  assert.equal(m.cpu.cr2, MISSING_PAGE, 'the second page faulted');
  assert.equal(m.cpu.getGpr(0), 1n);
  assert.equal(replays, 1);
});

test('16-byte loads across a page end and after a TLB miss take the slow path and agree with the interpreter', () => {
  // movdqu xmm1,[rsi] / movdqu xmm2,[rsi+16] / paddb xmm1,xmm2 / movdqa xmm3,[rdi] / pxor xmm3,xmm1 / hlt
  const code = hexBytes('f3 0f 6f 0e f3 0f 6f 56 10 66 0f fc ca 66 0f 6f 1f 66 0f ef d9 f4');
  for (const rsi of [DATA + 0xff8, DATA + 0xff0 - 16 + 3, DATA + 0x100]) {
    const { m, replays } = agree(code, (m) => {
      const d = new Uint8Array(0x2000);
      for (let i = 0; i < d.length; i++) d[i] = (i * 7 + 3) & 0xff;
      m.mem.write(DATA, d);
      m.cpu.setGpr(6, BigInt(rsi));
      // rdi: a page not touched before, so its first-level TLB entry is missing (flushed: every run)
      m.cpu.setGpr(7, BigInt(DATA + 0x10000));
      m.cpu.flushTlb(true);
    });
    const crossing = rsi === DATA + 0x100 ? 0 : 1;
    // the TLB misses (rsi's page, rdi's page) and the crossing load are replayed; nothing else
    assert.ok(replays >= 1 + crossing && replays <= 3 + crossing, `rsi ${rsi.toString(16)}: replays ${replays}`);
    assert.equal(m.cpu.lastException, -1);
  }
});

test('a 16-byte store across a page end into a read-only page faults before writing anything', () => {
  // mov rax,1 / movdqu [rsi],xmm5 / mov rax,2 / hlt
  const code = hexBytes('48 c7 c0 01 00 00 00 f3 0f 7f 2e 48 c7 c0 02 00 00 00 f4');
  // (two runs into writable RAM first: a block whose recording faults is not kept)
  const { m, replays } = agree(code, (m, run) => {
    m.mem.write(RO_PAGE - 0x10, new Uint8Array(0x20).fill(0xaa));
    m.cpu.xmm.fill(0x55 + run);
    m.cpu.setGpr(6, BigInt(run < 2 ? DATA + 0x100 : RO_PAGE - 15));
    m.cpu.cr2 = 0;
  }, 3);
  assert.equal(replays, 1, 'the store went to the JavaScript form');
  assert.ok(m.cpu.codeCache.table[tableSlot(CODE)]?.wasm, 'the block is translated');
  assert.equal(Buffer.from(m.mem.read(DATA + 0x100, 16)).toString('hex'), '56'.repeat(16), 'the earlier runs stored');
  assert.equal(m.cpu.lastException, C.EXC_PF);
  assert.equal(m.cpu.getGpr(0), 1n, 'the instruction before committed');
  assert.equal(Buffer.from(m.mem.read(RO_PAGE - 15, 15)).toString('hex'), 'aa'.repeat(15), 'nothing written in the writable page');
});

test('a 16-byte store into the page holding the block (self-modifying code) takes effect at the next instruction', () => {
  // movdqu [rsi],xmm1 / mov eax,1 / hlt: translated with rsi in the data page; then rsi = CODE + 4 and xmm1 =
  // "mov eax,2 / hlt / nop..." overwrites the block's own next instructions, which must run in their new form.
  const code = hexBytes('f3 0f 7f 0e b8 01 00 00 00 f4');
  const patch = hexBytes('b8 02 00 00 00 f4 90 90 90 90 90 90 90 90 90 90');
  const { m, replays } = agree(code, (m, run) => {
    // (a write before the page holds code puts it in the write TLB: the inline probe then hits, and only the
    // code-page byte sends the store to the JavaScript form)
    if (run === 0) m.cpu.writeLin(CODE + 0xff0, 1, 0);
    m.cpu.setGpr(6, BigInt(run < 2 ? DATA : CODE + 4));
    m.cpu.xmm.set(patch, 16);
  }, 3);
  assert.equal(m.cpu.getGpr(0), 2n, 'the new instruction ran');
  assert.ok(replays >= 1, 'the store went to the JavaScript form');
});

test('a misaligned MOVAPS/MOVDQA/PCMPEQB memory operand raises #GP(0) at its RIP with the earlier instructions done', () => {
  for (const insn of ['0f 29 06' /* movaps [rsi],xmm0 */, '66 0f 6f 0e' /* movdqa xmm1,[rsi] */, '66 0f 74 16' /* pcmpeqb xmm2,[rsi] */]) {
    // add rax,1 / <insn> / add rax,1 / hlt
    const code = hexBytes(`48 83 c0 01 ${insn} 48 83 c0 01 f4`);
    // (two aligned runs first: a block whose recording faults is not kept)
    const { m, replays } = agree(code, (m, run) => { m.cpu.setGpr(0, 0n); m.cpu.setGpr(6, BigInt(DATA + (run < 2 ? 0x20 : 0x28))); }, 3);
    assert.equal(replays, 1, `${insn}: the misaligned access went to the JavaScript form`);
    assert.ok(m.cpu.codeCache.table[tableSlot(CODE)]?.wasm, 'the block is translated');
    assert.equal(m.cpu.lastException, C.EXC_GP, insn);
    assert.equal(m.cpu.faultError, 0);
    assert.equal(m.cpu.rip, CODE + 4);
    assert.equal(m.cpu.getGpr(0), 1n);
  }
});

test('CR0.TS raises #NM and CR4.OSFXSR clear raises #UD in translated SSE code, then SSE runs inline again', () => {
  // mov eax,1 / pxor xmm0,xmm1 / mov eax,2 / hlt
  const code = hexBytes('b8 01 00 00 00 66 0f ef c1 b8 02 00 00 00 f4');
  const m = machine(true);
  m.cpu.jitEnabled = true;
  m.mem.write(CODE, Uint8Array.from(code));
  for (let r = 0; r < 3; r++) assert.equal(runBlocksToHalt(m, 100), -1);
  assert.ok(m.cpu.codeCache.table[tableSlot(CODE)]?.wasm, 'the block is translated');
  const set = (cr0: number, cr4: number) => { m.cpu.cr0 = cr0; m.cpu.cr4 = cr4; m.cpu.updateMode(); };
  const cr0 = m.cpu.cr0, cr4 = m.cpu.cr4;
  for (const [c0, c4, vector] of [[cr0 | C.CR0_TS, cr4, C.EXC_NM], [cr0, cr4 & ~C.CR4_OSFXSR, C.EXC_UD], [cr0 | C.CR0_EM, cr4, C.EXC_UD]]) {
    set(c0, c4);
    m.cpu.setGpr(0, 0n);
    assert.equal(runBlocksToHalt(m, 100), vector);
    assert.equal(m.cpu.rip, CODE + 5);
    assert.equal(m.cpu.getGpr(0), 1n);
  }
  set(cr0 | C.CR0_TS, cr4);
  m.cpu.cr0 = cr0; // CLTS (no updateMode): the word stays 0 until the JavaScript form's check passes
  const r0 = m.cpu.wasm!.stats.replays;
  for (let r = 0; r < 3; r++) assert.equal(runBlocksToHalt(m, 100), -1);
  assert.equal(m.cpu.getGpr(0), 2n);
  // the HLT ending the block is replayed every run; PXOR once (its JavaScript form sets the word again)
  assert.equal(m.cpu.wasm!.stats.replays - r0, 3 + 1, 'one replay, then inline again');
});

test('the XMM registers live in the wasm state area: a snapshot of one CPU restored into another is what its translated code sees', async () => {
  const { saveSoftCpu, restoreSoftCpu } = await import('../src/vmm/snapshot-cpu.ts');
  // paddb xmm1,xmm2 / pshufd xmm3,xmm1,0x1b / movdqa [rsi],xmm3 / movdqu [rsi+16],xmm1 / hlt
  const code = hexBytes('66 0f fc ca 66 0f 70 d9 1b 66 0f 7f 1e f3 0f 7f 4e 10 f4');
  const a = machine(true), b = machine(true);
  for (const m of [a, b]) { m.cpu.jitEnabled = true; m.mem.write(CODE, Uint8Array.from(code)); }
  const x = new Uint8Array(256);
  for (let i = 0; i < 256; i++) x[i] = (i * 29 + 5) & 0xff;
  a.cpu.xmm.set(x);
  a.cpu.setGpr(6, BigInt(DATA));
  for (let r = 0; r < 3; r++) { a.cpu.xmm.set(x.subarray(16, 32), 16); assert.equal(runBlocksToHalt(a, 100), -1); }
  assert.ok(a.cpu.codeCache.table[tableSlot(CODE)]?.wasm, 'the block is translated');
  // the state area holds what translated code wrote: the same bytes through cpu.xmm and FpuState's views
  const xmm1 = Buffer.from(a.cpu.xmm.subarray(16, 32));
  assert.deepEqual(Buffer.from(new Uint8Array(a.cpu.fpu.xi32.buffer, a.cpu.fpu.xi32.byteOffset + 16, 16)), xmm1);
  const s = saveSoftCpu(a.cpu, undefined, false);
  // b: translated first with other XMM values, then restored from a's snapshot and run again
  b.cpu.setGpr(6, BigInt(DATA));
  for (let r = 0; r < 3; r++) assert.equal(runBlocksToHalt(b, 100), -1);
  restoreSoftCpu(b.cpu, s);
  assert.deepEqual(Buffer.from(b.cpu.xmm), Buffer.from(a.cpu.xmm), 'restored XMM registers');
  assert.equal(b.cpu.fpu.sseOk[0], 1, 'SSE usable after the restore');
  // (a restore resets the CPU, which drops every translation: the block is recorded and translated again)
  let replays = 0;
  for (let r = 0; r < 3; r++) {
    const r0 = b.cpu.wasm!.stats.replays;
    for (const m of [a, b]) assert.equal(runBlocksToHalt(m, 100), -1);
    replays = b.cpu.wasm!.stats.replays - r0;
  }
  assert.ok(b.cpu.codeCache.table[tableSlot(CODE)]?.wasm, 'translated again');
  assert.equal(replays, 1, 'inline (the HLT replayed)');
  assert.deepEqual(Buffer.from(b.mem.read(DATA, 32)), Buffer.from(a.mem.read(DATA, 32)));
  assert.deepEqual(Buffer.from(b.cpu.xmm), Buffer.from(a.cpu.xmm));
});
