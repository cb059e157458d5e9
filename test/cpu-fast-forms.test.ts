// The pre-decoded fast forms of src/cpu/soft/fast-forms.ts (second generation: group 3, IMUL, ADC/SBB, INC/DEC of
// memory, MOVSX, shifts by CL, SHLD/SHRD, indirect CALL/JMP, CMPXCHG, XADD, PUSHF, PUSH imm, SETcc to memory, BT*,
// CDQE/CQO, BSWAP, PAUSE, 16-bit ALU/MOV, LEAVE, CLI/STI, SWAPGS) against the interpreter's handlers, differentially: each instruction is recorded once,
// checked to have the expected form, then run from many random states (edge values, random flags or a lazy flag
// record, memory operands in RAM, across a page end, in a read-only page, a missing page, at a non-canonical
// address; branch targets that are fine, missing or non-canonical) through
//   - the interpreter (step(): the reference),
//   - closure replay of the block cache (the form's JavaScript function),
//   - the JavaScript translator (forms it does not inline are replayed from generated code),
//   - the WebAssembly translator (its own code or its replay helper),
// and every path must leave the same registers, flags, RIP, memory, instruction count and exception (with CR2 and
// error code): so a form does every access that can fault before it changes anything, as the handler does.
// Machine code from GNU as (`as --64`, Intel syntax as printed by objdump).
import test from 'node:test';
import assert from 'node:assert/strict';
import { hexBytes, runBlocksToHalt, CODE, DATA, STACK_TOP, RO_PAGE, MISSING_PAGE, translatorMachine, protectFaultPages, firstEntryForm, type Machine } from './support/soft-cpu.ts';
import { setHotThreshold, setJitThreshold, tableSlot } from '../src/cpu/soft/code-cache.ts';
import { Form } from '../src/cpu/soft/fast-forms.ts';
import { Lazy } from '../src/cpu/soft/index.ts';
import { GuestMemory, MiB } from '../src/memory/guest-memory.ts';
import * as C from '../src/cpu/soft/constants.ts';

setHotThreshold(0);
setJitThreshold(0);

/** Where indirect branches that should succeed land: a HLT. */
const HALT_AT = DATA - 0x1000;
/**
 * Each instruction gets a code page of its own (CODE + index * 4 KiB): rewriting one page for every instruction would
 * make it a thrashing page that the block cache stops caching.
 */
const codeAt = (index: number) => CODE + index * 0x1000;
/** A read-only 2 MiB page (writes fault with CR0.WP) and a missing one. */

/**
 * [bytes, assembly, expected form, pinned registers]: a pinned register is an index or bit offset that reaches memory,
 * kept to signed values below its bound so that every byte it can reach is restored and compared.
 */
const CASES: [string, string, Form, Record<number, number>?][] = [
  ['48 f7 d0', 'not rax', Form.NotNegR],
  ['41 f7 d1', 'not r9d', Form.NotNegR],
  ['48 f7 da', 'neg rdx', Form.NotNegR],
  ['41 f7 db', 'neg r11d', Form.NotNegR],
  ['48 f7 56 08', 'not QWORD PTR [rsi+0x8]', Form.NotNegM],
  ['f7 5e 0c', 'neg DWORD PTR [rsi+0xc]', Form.NotNegM],
  // (disp32 patched below to address DATA + 0x100)
  ['48 f7 1d f0 0f 00 00', 'neg QWORD PTR [rip+0xff0]', Form.NotNegM],
  ['48 f7 e1', 'mul rcx', Form.MulDivR],
  ['f7 e1', 'mul ecx', Form.MulDivR],
  ['49 f7 ea', 'imul r10', Form.MulDivR],
  ['f7 eb', 'imul ebx', Form.MulDivR],
  ['48 f7 f1', 'div rcx', Form.MulDivR],
  ['41 f7 f0', 'div r8d', Form.MulDivR],
  ['48 f7 f9', 'idiv rcx', Form.MulDivR],
  ['f7 fb', 'idiv ebx', Form.MulDivR],
  ['48 f7 66 10', 'mul QWORD PTR [rsi+0x10]', Form.MulDivM],
  ['f7 76 14', 'div DWORD PTR [rsi+0x14]', Form.MulDivM],
  ['48 f7 7e 18', 'idiv QWORD PTR [rsi+0x18]', Form.MulDivM],
  ['48 0f af c3', 'imul rax,rbx', Form.ImulRR],
  ['44 0f af e0', 'imul r12d,eax', Form.ImulRR],
  ['48 0f af 56 20', 'imul rdx,QWORD PTR [rsi+0x20]', Form.ImulRM],
  ['0f af 4e 24', 'imul ecx,DWORD PTR [rsi+0x24]', Form.ImulRM],
  ['48 69 c3 45 23 01 00', 'imul rax,rbx,0x12345', Form.ImulRRI],
  ['45 6b ca fd', 'imul r9d,r10d,0xfffffffd', Form.ImulRRI],
  ['48 6b 4e 28 07', 'imul rcx,QWORD PTR [rsi+0x28],0x7', Form.ImulRMI],
  ['69 56 2c 60 79 fe ff', 'imul edx,DWORD PTR [rsi+0x2c],0xfffe7960', Form.ImulRMI],
  ['48 11 d8', 'adc rax,rbx', Form.AdcRR],
  ['19 c0', 'sbb eax,eax', Form.AdcRR],
  ['4d 19 c8', 'sbb r8,r9', Form.AdcRR],
  ['11 d1', 'adc ecx,edx', Form.AdcRR],
  ['48 13 46 30', 'adc rax,QWORD PTR [rsi+0x30]', Form.AdcRM],
  ['1b 56 34', 'sbb edx,DWORD PTR [rsi+0x34]', Form.AdcRM],
  ['48 11 4e 38', 'adc QWORD PTR [rsi+0x38],rcx', Form.AdcMR],
  ['19 5e 3c', 'sbb DWORD PTR [rsi+0x3c],ebx', Form.AdcMR],
  ['48 83 d2 00', 'adc rdx,0x0', Form.AdcRI],
  ['41 81 db ff ff ff 7f', 'sbb r11d,0x7fffffff', Form.AdcRI],
  ['48 83 56 40 ff', 'adc QWORD PTR [rsi+0x40],0xffffffffffffffff', Form.AdcMI],
  ['83 5e 44 05', 'sbb DWORD PTR [rsi+0x44],0x5', Form.AdcMI],
  ['48 ff 46 48', 'inc QWORD PTR [rsi+0x48]', Form.IncDecM],
  ['ff 4e 4c', 'dec DWORD PTR [rsi+0x4c]', Form.IncDecM],
  ['ff 44 8e 50', 'inc DWORD PTR [rsi+rcx*4+0x50]', Form.IncDecM, { 1: 0x100 }],
  ['65 48 ff 4e 08', 'dec QWORD PTR gs:[rsi+0x8]', Form.IncDecM],
  ['0f be c3', 'movsx eax,bl', Form.MovsxR8],
  ['0f be cc', 'movsx ecx,ah', Form.MovsxR8],
  ['44 0f be c6', 'movsx r8d,sil', Form.MovsxR8],
  ['49 0f be d7', 'movsx rdx,r15b', Form.MovsxR8],
  ['0f bf c3', 'movsx eax,bx', Form.MovsxR16],
  ['4d 0f bf ca', 'movsx r9,r10w', Form.MovsxR16],
  ['0f be 4e 54', 'movsx ecx,BYTE PTR [rsi+0x54]', Form.MovsxM],
  ['48 0f bf 46 56', 'movsx rax,WORD PTR [rsi+0x56]', Form.MovsxM],
  ['48 d3 e0', 'shl rax,cl', Form.ShiftCl],
  ['d3 ea', 'shr edx,cl', Form.ShiftCl],
  ['49 d3 f9', 'sar r9,cl', Form.ShiftCl],
  ['48 d3 c3', 'rol rbx,cl', Form.ShiftCl],
  ['41 d3 ca', 'ror r10d,cl', Form.ShiftCl],
  ['48 d3 d2', 'rcl rdx,cl', Form.ShiftCl],
  ['d3 d8', 'rcr eax,cl', Form.ShiftCl],
  ['48 0f a4 d8 0d', 'shld rax,rbx,0xd', Form.ShiftDoubleRI],
  ['0f ac ca 07', 'shrd edx,ecx,0x7', Form.ShiftDoubleRI],
  ['4d 0f ac d1 3f', 'shrd r9,r10,0x3f', Form.ShiftDoubleRI],
  ['48 0f b1 5e 58', 'cmpxchg QWORD PTR [rsi+0x58],rbx', Form.CmpxchgM],
  ['0f b1 4e 60', 'cmpxchg DWORD PTR [rsi+0x60],ecx', Form.CmpxchgM],
  ['48 0f c1 56 68', 'xadd QWORD PTR [rsi+0x68],rdx', Form.XaddM],
  ['44 0f c1 46 70', 'xadd DWORD PTR [rsi+0x70],r8d', Form.XaddM],
  ['9c', 'pushf', Form.Pushf],
  ['ff 76 40', 'push QWORD PTR [rsi+0x40]', Form.PushM],
  ['ff 74 24 08', 'push QWORD PTR [rsp+0x8]', Form.PushM],
  ['68 78 56 34 12', 'push 0x12345678', Form.PushImm],
  ['6a fb', 'push 0xfffffffffffffffb', Form.PushImm],
  ['0f 94 46 78', 'sete BYTE PTR [rsi+0x78]', Form.SetccM],
  ['0f 92 46 79', 'setb BYTE PTR [rsi+0x79]', Form.SetccM],
  ['0f 9f 46 7a', 'setg BYTE PTR [rsi+0x7a]', Form.SetccM],
  ['48 0f ba e0 23', 'bt rax,0x23', Form.BtRI],
  ['0f ba e9 07', 'bts ecx,0x7', Form.BtRI],
  ['49 0f ba f1 3f', 'btr r9,0x3f', Form.BtRI],
  ['0f ba fa 1f', 'btc edx,0x1f', Form.BtRI],
  ['48 0f ba a6 80 00 00 00 03', 'bt QWORD PTR [rsi+0x80],0x3', Form.BtMI],
  ['0f ba ae 88 00 00 00 1e', 'bts DWORD PTR [rsi+0x88],0x1e', Form.BtMI],
  ['48 0f ba b6 90 00 00 00 3c', 'btr QWORD PTR [rsi+0x90],0x3c', Form.BtMI],
  ['0f ba be 98 00 00 00 01', 'btc DWORD PTR [rsi+0x98],0x1', Form.BtMI],
  ['48 0f a3 c8', 'bt rax,rcx', Form.BtRR],
  ['0f ab da', 'bts edx,ebx', Form.BtRR],
  ['48 0f b3 8e a0 00 00 00', 'btr QWORD PTR [rsi+0xa0],rcx', Form.BtMR, { 1: 0x2000 }],
  ['0f ab 9e a0 00 00 00', 'bts DWORD PTR [rsi+0xa0],ebx', Form.BtMR, { 3: 0x2000 }],
  ['48 0f bb 96 a0 00 00 00', 'btc QWORD PTR [rsi+0xa0],rdx', Form.BtMR, { 2: 0x2000 }],
  ['48 98', 'cdqe', Form.Cdq],
  ['98', 'cwde', Form.Cdq],
  ['48 99', 'cqo', Form.Cdq],
  ['99', 'cdq', Form.Cdq],
  ['48 0f c8', 'bswap rax', Form.Bswap],
  ['41 0f cb', 'bswap r11d', Form.Bswap],
  ['f3 90', 'pause', Form.Nop],
  ['66 01 d8', 'add ax,bx', Form.Alu16RR],
  ['66 41 39 c9', 'cmp r9w,cx', Form.Alu16RR],
  ['66 85 f2', 'test dx,si', Form.Alu16RR],
  ['66 29 4e 20', 'sub WORD PTR [rsi+0x20],cx', Form.Alu16MR],
  ['66 44 39 46 22', 'cmp WORD PTR [rsi+0x22],r8w', Form.Alu16MR],
  ['66 85 5e 24', 'test WORD PTR [rsi+0x24],bx', Form.Alu16MR],
  ['66 23 56 26', 'and dx,WORD PTR [rsi+0x26]', Form.Alu16RM],
  ['66 44 33 56 28', 'xor r10w,WORD PTR [rsi+0x28]', Form.Alu16RM],
  ['66 83 fa 7f', 'cmp dx,0x7f', Form.Alu16RI],
  ['66 83 f8 fe', 'cmp ax,0xfffe', Form.Alu16RI],
  ['66 41 81 cb 34 12', 'or r11w,0x1234', Form.Alu16RI],
  ['66 81 7e 2a 00 80', 'cmp WORD PTR [rsi+0x2a],0x8000', Form.Alu16MI],
  ['66 83 66 2c f0', 'and WORD PTR [rsi+0x2c],0xfff0', Form.Alu16MI],
  ['66 3d 21 43', 'cmp ax,0x4321', Form.Alu16RI],
  ['66 a9 01 80', 'test ax,0x8001', Form.Alu16RI],
  ['66 f7 46 2e ff 00', 'test WORD PTR [rsi+0x2e],0xff', Form.Alu16MI],
  ['66 f7 c1 00 01', 'test cx,0x100', Form.Alu16RI],
  ['66 89 56 30', 'mov WORD PTR [rsi+0x30],dx', Form.MovStore16],
  ['66 44 89 a6 ff 0f 00 00', 'mov WORD PTR [rsi+0xfff],r12w', Form.MovStore16],
  ['66 8b 4e 32', 'mov cx,WORD PTR [rsi+0x32]', Form.MovLoad16],
  ['66 44 8b 6e 34', 'mov r13w,WORD PTR [rsi+0x34]', Form.MovLoad16],
  ['c9', 'leave', Form.Leave],
  ['fa', 'cli', Form.Cli],
  ['fb', 'sti', Form.Sti],
  ['0f 01 f8', 'swapgs', Form.Swapgs],
  ['ff d0', 'call rax', Form.CallInd],
  ['41 ff d3', 'call r11', Form.CallInd],
  ['ff 96 a8 00 00 00', 'call QWORD PTR [rsi+0xa8]', Form.CallInd],
  ['ff e2', 'jmp rdx', Form.JmpInd],
  ['ff a6 b0 00 00 00', 'jmp QWORD PTR [rsi+0xb0]', Form.JmpInd],
];

type Path = 'interpreter' | 'closures' | 'js' | 'wasm';

const memories: GuestMemory[] = [];
test.after(() => { for (const m of memories) m.close(); });

function machine(wasm: boolean): Machine {
  const m = translatorMachine(wasm, memories);
  protectFaultPages(m);
  m.cpu.loadSegmentRaw(C.GS, 0, 0x100, 0xffffffff, m.cpu.segAttr[C.GS]);
  m.mem.write(HALT_AT, Uint8Array.of(0xf4));
  return m;
}

// ---- random states (xorshift32, fixed seed: failures are reproducible)

let seed = 0x2545f491;
function rnd(): number {
  seed ^= seed << 13; seed ^= seed >>> 17; seed ^= seed << 5;
  return seed >>> 0;
}
const EDGE = [0n, 1n, 2n, 0x7fn, 0x80n, 0xffn, 0x7fffn, 0x8000n, 0xffffn, 0x7fffffffn, 0x80000000n, 0xffffffffn,
  0x100000000n, 0x7fffffffffffffffn, 0x8000000000000000n, 0xffffffffffffffffn, 0xfffffffffffffffen, 31n, 32n, 63n, 64n];
function value(): bigint {
  const k = rnd() % 4;
  if (k === 0) return EDGE[rnd() % EDGE.length];
  if (k === 1) return BigInt(rnd() % 70);
  return (BigInt(rnd()) << 32n) | BigInt(rnd());
}
/** A memory operand base: mostly ordinary RAM, sometimes across a page end, read-only, missing, non-canonical. */
function base(): bigint {
  const k = rnd() % 10;
  if (k < 5) return BigInt(DATA + (rnd() % 0x700));
  if (k === 5) return BigInt(DATA + 0xff0 - (rnd() % 0x40)); // operands reaching into the next page
  if (k === 6) return BigInt(RO_PAGE - 0x90 + (rnd() % 0x100)); // ends in, or starts in, the read-only page
  if (k === 7) return BigInt(RO_PAGE + (rnd() % 0x1000));
  if (k === 8) return BigInt(MISSING_PAGE + (rnd() % 0x1000));
  return 0x0000_8000_0000_0000n + BigInt(rnd() % 0x100);
}
/** An indirect branch target: the HLT, a missing page, a canonical address beyond the page tables, a non-canonical one. */
function target(): bigint {
  const k = rnd() % 5;
  if (k < 2) return BigInt(HALT_AT);
  if (k === 2) return BigInt(MISSING_PAGE + (rnd() % 0x1000));
  if (k === 3) return 0x0000_7fff_0000_0000n + BigInt(rnd());
  return (BigInt(rnd() | 0x8000) << 32n) | BigInt(rnd());
}

interface State {
  gpr: bigint[];
  /** Explicit flags, or a lazy record [kind, size, dst, src, res, dstHi, srcHi, resHi, carry]. */
  flags: number;
  lazy: number[] | null;
  data: Uint8Array;
  /** The page before RO_PAGE and RO_PAGE's first two pages (operands based in its first page reach the second). */
  ro: Uint8Array;
}

/** The data area loaded and compared: memory operands based in [DATA, DATA + 0x700) reach it with their offsets. */
const AREA = DATA - 0x800, AREA_SIZE = 0x2800;

function randomState(pins: Record<number, number> = {}, branch = false): State {
  const gpr = Array.from({ length: 16 }, value);
  gpr[4] = BigInt(STACK_TOP - 8 * (rnd() % 4));
  gpr[6] = base();
  if (branch) { gpr[0] = target(); gpr[2] = target(); gpr[11] = target(); }
  if (rnd() % 2) gpr[5] = base(); // (RBP: LEAVE's operand)
  for (const [r, bound] of Object.entries(pins)) gpr[Number(r)] = BigInt((rnd() % (2 * bound)) - bound);
  const data = new Uint8Array(AREA_SIZE);
  for (let i = 0; i < data.length; i++) data[i] = rnd() & 0xff;
  const ro = new Uint8Array(0x3000);
  for (let i = 0; i < ro.length; i++) ro[i] = rnd() & 0xff;
  // Branch targets in memory for [rsi+0xa8] / [rsi+0xb0] (not random bytes: a branch into random code runs away).
  for (const [buf, at] of [[data, AREA], [ro, RO_PAGE - 0x1000]] as [Uint8Array, number][]) {
    const off = Number(gpr[6]) - at;
    if (!branch || off < 0 || off + 0xb8 > buf.length) continue;
    const v = new DataView(buf.buffer);
    v.setBigUint64(off + 0xa8, BigInt.asUintN(64, target()), true);
    v.setBigUint64(off + 0xb0, BigInt.asUintN(64, target()), true);
  }
  let lazy: number[] | null = null;
  if (rnd() % 2) {
    const kinds = [Lazy.Add, Lazy.Adc, Lazy.Sub, Lazy.Sbb, Lazy.Logic, Lazy.Inc, Lazy.Dec];
    const sizes = [1, 2, 4, 8];
    const size = sizes[rnd() % 4];
    const w = (x: number) => (size === 1 ? x & 0xff : size === 2 ? x & 0xffff : x | 0);
    const d = rnd(), s = rnd();
    lazy = [kinds[rnd() % kinds.length], size, w(d), w(s), w(d - s), rnd() | 0, rnd() | 0, rnd() | 0, rnd() % 2];
  }
  return { gpr, flags: (rnd() & C.ARITH_FLAGS) | (rnd() % 4 === 0 ? C.DF : 0) | (rnd() % 2 ? C.IF : 0), lazy, data, ro };
}

function load(m: Machine, s: State): void {
  const c = m.cpu;
  for (let i = 0; i < 16; i++) c.setGpr(i, BigInt.asUintN(64, s.gpr[i]));
  c.setFlagsValue(C.FLAGS_FIXED | s.flags);
  if (s.lazy) {
    const [k, size, d, src, r, dh, sh, rh, cy] = s.lazy;
    c.setLazy(k as Lazy, size, d, src, r, dh, sh, rh);
    c.lazyCarry = cy;
  }
  m.mem.write(AREA, s.data);
  m.mem.write(RO_PAGE - 0x1000, s.ro); // (the page before it too: operands cross into it)
  m.mem.write(STACK_TOP - 64, new Uint8Array(64));
  c.cr2 = 0;
  c.faultError = -1;
  c.interruptShadow = false;
  c.segBase[C.GS] = 0x100;
  c.kernelGsBase = 0x7fff_1234_5000;
}

function snapshot(m: Machine, fault: number, i0: number) {
  const c = m.cpu;
  return {
    regs: Array.from({ length: 16 }, (_, i) => c.getGpr(i).toString(16)),
    flags: (c.getFlags() & (C.ARITH_FLAGS | C.DF | C.IF)).toString(16),
    shadow: c.interruptShadow,
    gs: `${c.segBase[C.GS].toString(16)}/${c.kernelGsBase.toString(16)}`,
    rip: c.rip.toString(16),
    fault,
    cr2: fault === C.EXC_PF ? c.cr2.toString(16) : '',
    errorCode: fault >= 0 ? c.faultError : -2,
    instructions: c.instructions - i0,
    data: Buffer.from(m.mem.read(AREA, AREA_SIZE)),
    ro: Buffer.from(m.mem.read(RO_PAGE - 0x1000, 0x3000)),
    stack: Buffer.from(m.mem.read(STACK_TOP - 64, 64)),
  };
}

type Snapshot = ReturnType<typeof snapshot>;

/** What differs between two snapshots, shortly (memory: the first differing byte). */
function differences(ref: Snapshot, got: Snapshot): string[] {
  const out: string[] = [];
  // (An instruction fetch that faults counts as an instruction in step() but not at a block boundary: not a form's
  // business, so the count is not compared after a branch to a missing page.)
  const fetchFault = ref.fault === C.EXC_PF && ref.cr2 === ref.rip;
  for (const k of Object.keys(ref) as (keyof Snapshot)[]) {
    if (k === 'instructions' && fetchFault) continue;
    const a = ref[k], b = got[k];
    if (k === 'regs') {
      ref.regs.forEach((v, i) => { if (v !== got.regs[i]) out.push(`r${i}: interpreter ${v}, form ${got.regs[i]}`); });
    } else if (a instanceof Buffer) {
      if (a.equals(b as Buffer)) continue;
      const i = a.findIndex((x, j) => x !== (b as Buffer)[j]);
      out.push(`${k}+0x${i.toString(16)}: interpreter ${a.subarray(i, i + 8).toString('hex')}, form ${(b as Buffer).subarray(i, i + 8).toString('hex')}`);
    } else if (a !== b) out.push(`${k}: interpreter ${a}, form ${b}`);
  }
  return out;
}

function run(m: Machine, path: Path, s: State, at: number) {
  const c = m.cpu;
  c.blockCacheEnabled = path !== 'interpreter';
  c.jitEnabled = path === 'js' || path === 'wasm';
  load(m, s);
  const i0 = c.instructions;
  const fault = runBlocksToHalt(m, 100, at);
  return snapshot(m, fault, i0);
}

/** A benign state for recording a block (no fault: a faulting recording is not installed). */
function benign(asm: string): State {
  const gpr = Array.from({ length: 16 }, (_, i) => BigInt(i + 1));
  gpr[0] = BigInt(HALT_AT); gpr[2] = asm === 'jmp rdx' ? BigInt(HALT_AT) : 0n; gpr[11] = BigInt(HALT_AT);
  gpr[4] = BigInt(STACK_TOP); gpr[6] = BigInt(DATA);
  const data = new Uint8Array(AREA_SIZE).fill(1); // (no zero divisor)
  const v = new DataView(data.buffer);
  v.setBigUint64(DATA - AREA + 0xa8, BigInt(HALT_AT), true);
  v.setBigUint64(DATA - AREA + 0xb0, BigInt(HALT_AT), true);
  return { gpr, flags: 0, lazy: null, data, ro: new Uint8Array(0x3000) };
}

const PER_CASE = Number(process.env.RINGZERO_FORMS_CASES ?? 40);

test('every second-generation fast form leaves what the interpreter leaves, faults included (closures, JS and wasm translators)', () => {
  const js = machine(false), wm = machine(true);
  let compared = 0, faults = 0;
  for (const [index, [hex, asm, form, pins]] of CASES.entries()) {
    const at = codeAt(index);
    const code = Uint8Array.from([...hexBytes(hex), 0xf4]);
    if (asm.includes('[rip+')) new DataView(code.buffer).setInt32(code.length - 5, DATA + 0x100 - (at + code.length - 1), true);
    for (const m of [js, wm]) {
      m.mem.write(at, code);
      // Record the block (first run), then translate it (first replay, thresholds 0).
      for (let k = 0; k < 2; k++) {
        m.cpu.blockCacheEnabled = true;
        m.cpu.jitEnabled = true;
        load(m, benign(asm));
        assert.equal(runBlocksToHalt(m, 100, at), -1, `${asm}: the benign run does not fault`);
      }
      assert.equal(firstEntryForm(m, at), form, `${asm} (${hex}) has form ${form}`);
    }
    for (let n = 0; n < PER_CASE; n++) {
      const s = randomState(pins, /^(call|jmp) /.test(asm));
      const ref = run(js, 'interpreter', s, at);
      if (ref.fault >= 0) faults++;
      for (const [m, path] of [[js, 'closures'], [js, 'js'], [wm, 'wasm']] as [Machine, Path][]) {
        const got = run(m, path, s, at);
        const diffs = differences(ref, got);
        if (diffs.length > 0) {
          assert.fail(`${asm} (${hex}) through ${path}: ${diffs.join('; ')}\n  from regs ${s.gpr.map((g) => BigInt.asUintN(64, g).toString(16)).join(' ')}` +
            ` flags ${s.flags.toString(16)} lazy ${JSON.stringify(s.lazy)}`);
        }
        compared++;
      }
          }
    assert.equal(firstEntryForm(js, at), form);
  }
  assert.ok(wm.cpu.wasm!.stats.compiled >= CASES.length, `blocks translated to wasm: ${wm.cpu.wasm!.stats.compiled}`);
  assert.ok(faults > CASES.length * 3, `faulting cases: ${faults}`);
  console.log(`cpu-fast-forms: ${compared} runs compared over ${CASES.length} instructions, ${faults} reference runs faulted`);
});

test('a block\'s last instruction ending exactly at its page end gets its form; one crossing the page end does not', () => {
  const m = machine(false);
  const c = m.cpu;
  c.jitEnabled = false;
  // cmp eax, ebx (39 d8); je +0x10 (0f 84 10 00 00 00): the JE ends at the page end, or 2 bytes into the next page.
  const page = 0x180000;
  for (const [start, form] of [[page - 8, Form.Jcc], [page - 6, Form.None]] as [number, Form][]) {
    const jccAt = start + 2;
    m.mem.write(start, Uint8Array.of(0x39, 0xd8, 0x0f, 0x84, 0x10, 0x00, 0x00, 0x00));
    const next = jccAt + 6;
    m.mem.write(next, Uint8Array.of(0xf4)); // not taken: hlt
    m.mem.write(next + 0x10, Uint8Array.of(0xf4)); // taken: hlt
    for (const [eax, ebx, end] of [[1, 1, next + 0x10], [1, 2, next], [5, 5, next + 0x10], [7, 5, next]]) {
      c.setGpr(0, BigInt(eax)); c.setGpr(3, BigInt(ebx));
      assert.equal(runBlocksToHalt(m, 10, start), -1);
      assert.equal(c.rip, end + 1, `${start.toString(16)}: eax=${eax} ebx=${ebx}`);
    }
    const cache = c.codeCache;
    const b = cache.table[tableSlot(start)];
    assert.ok(b && b.pa === start && b.n === 2);
    assert.equal(b.entries[1].form, form, `JE at ${jccAt.toString(16)}`);
  }
});
