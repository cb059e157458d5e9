// The WebAssembly translator of the software CPU (issue 4; opt-in with RINGZERO_JIT=wasm).
//
// Why: the JavaScript translator (../jit/translate.ts) gains little on the Linux boot because every generated
// function costs V8 milliseconds of optimizing compilation before it is fast, so only very hot blocks repay it.
// WebAssembly is compiled by V8's baseline compiler (Liftoff) straight to machine code, cheaply, so blocks can be
// translated after a few hundred replays.
//
// How: guest low RAM, the vCPU's registers (rlo/rhi), its software TLB (tlbTags/tlbPhys), segment bases and the
// block cache's code-page bytes live in one WebAssembly.Memory (./layout.ts; GuestMemory maps the RAM memfd into
// it), so translated code reads and writes them with plain loads and stores. A cached 64-bit block of the block
// cache (../code-cache.ts) becomes one wasm function (st, r0, left, user) -> instructions executed:
// - the fast forms of ../fast-forms.ts (MOV, LEA, ALU incl. 8-bit, INC/DEC, MOVZX/MOVSXD, CMOVcc, SETcc, NOP,
//   PUSH/POP, Jcc/JMP/CALL/RET) are emitted inline with their operands as constants;
// - a memory operand probes the TLB inline (tag compare, RAM bounds, and for stores the code-page byte); a miss,
//   MMIO, a page-crossing access or a store into a page holding code calls the imported helper `rd`/`wr`, which
//   runs SoftCpu.readLin/writeLin (and may throw the CPU fault through the wasm frames); the block then ends after
//   that instruction, so an event it raised (self-modifying code, MMIO side effects) is seen at the next boundary;
// - the lazy-flag record is written to the state area after every producer and also kept in locals, so a
//   following Jcc/SETcc/CMOVcc/INC/DEC of the same block evaluates its condition inline; a condition on flags
//   from before the block asks the helper `cc` (SoftCpu.condition);
// - every other instruction (shifts, anything without a fast form) is replayed through the helper `rp`, which
//   runs its closure/handler exactly as SoftCpu.runBlock does, and the block ends if that changed RIP's course or
//   raised an event;
// - a block whose final direct branch targets its own start loops inside the function (at most LOOP_LIMIT
//   instructions per call and never past the caller's budget; nothing else can raise an event meanwhile, since
//   the only JavaScript that runs during a call is the helpers, after which the block exits when needed).
//
// Exactness, as the interpreter and ../jit/translate.ts: `cpu.instructions` counts every instruction executed,
// the faulting one included; a fault leaves `ripStart` at the faulting instruction and every earlier instruction
// committed (registers are stored as each instruction executes; the flag record is in the state area, which the
// caller copies back). Helpers learn the faulting instruction from their `pos` argument (loop count << 5 | index).
import type { SoftCpu } from '../cpu.ts';
import { CPU_FAULT } from '../cpu.ts';
import type { Block, BlockEntry } from '../code-cache.ts';
import { JIT_THRESHOLD } from '../code-cache.ts';
import { Form } from '../fast-forms.ts';
import type { GuestMemory } from '../../../memory/guest-memory.ts';
import { WASM_RAM_OFFSET } from '../../../memory/guest-memory.ts';
import { Body, ModuleBuilder, Op, I32, I64, F64 } from './emit.ts';
import * as L from './layout.ts';

/** A translated block: the wasm function and the byte offset of each instruction in the block. */
export interface WasmCode {
  fn: (st: number, r0: number, left: number, user: number) => number;
  offs: number[];
}

/** Most instructions one call of a self-looping block executes. */
const LOOP_LIMIT = 1024;
/** Replays of a cached block before it is translated (RINGZERO_WASM_HOT; never above RINGZERO_JIT_HOT). */
const WASM_HOT = Number(process.env.RINGZERO_WASM_HOT ?? 100);

// Lazy-flag kinds (../cpu.ts Lazy) and ALU operations (as in ../fast-forms.ts).
const L_ADD = 1, L_SUB = 3, L_LOGIC = 5, L_INC = 6, L_DEC = 7;
const ADD = 0, OR = 1, AND = 4, SUB = 5, XOR = 6, CMP = 7, TEST = 8;
const KIND = [L_ADD, L_LOGIC, 0, 0, L_LOGIC, L_SUB, L_LOGIC, L_SUB, L_LOGIC];
void AND;

const TWO47 = 140737488355328;
/** 0xFC-prefixed saturating truncations (Core spec §5.4.5). */
const I64_TRUNC_SAT_F64_S = [0xfc, 6];
const I64_TRUNC_SAT_F64_U = [0xfc, 7];

// Function indices of the imports (declared in this order).
const F_RD = 0, F_WR = 1, F_RP = 2, F_CC = 3, F_GP = 4;

/** Translation of one block into one function body. */
class Translator {
  readonly b: Body;
  // params
  readonly st = 0; readonly r0 = 1; readonly left = 2; readonly user = 3;
  // locals
  readonly n: number; readonly xc: number; readonly rtag: number; readonly wtag: number; readonly slow: number;
  readonly off: number; readonly ti: number; readonly r0i: number; readonly a: number; readonly v: number;
  readonly w: number; readonly t: number; readonly p: number; readonly vpn: number; readonly ld: number;
  readonly ls: number; readonly lr: number; readonly lcy: number; readonly tf: number; readonly c32: number;
  /** What produced the flag locals (null: unknown here, the state area holds the record). */
  kind = 0;
  size = 0;
  known = false;
  selfLoop = false;
  out = -1;
  top = -1;
  ix = 0;

  constructor(readonly block: Block, readonly offs: number[], readonly ramSize: number) {
    const b = this.b = new Body(4);
    this.n = b.local(I32); this.xc = b.local(I32); this.rtag = b.local(I32); this.wtag = b.local(I32);
    this.slow = b.local(I32); this.off = b.local(I32); this.ti = b.local(I32); this.lcy = b.local(I32);
    this.c32 = b.local(I32);
    this.r0i = b.local(I64); this.a = b.local(I64); this.v = b.local(I64); this.w = b.local(I64); this.t = b.local(I64);
    this.p = b.local(I64); this.vpn = b.local(I64); this.ld = b.local(I64); this.ls = b.local(I64); this.lr = b.local(I64);
    this.tf = b.local(F64);
  }

  // ---- registers (rlo/rhi in the state area)

  /** Push the 64-bit value of register r (i64). */
  r64(r: number): void {
    const b = this.b;
    b.get(this.st).mem(Op.i64Load32u, 2, L.S_RLO + 4 * r);
    b.get(this.st).mem(Op.i64Load32u, 2, L.S_RHI + 4 * r).i64(32n).op(Op.i64Shl).op(Op.i64Or);
  }
  /** Push the low 32 bits of register r (i32). */
  r32(r: number): void { this.b.get(this.st).mem(Op.i32Load, 2, L.S_RLO + 4 * r); }
  /** Store i64 local `l` into register r. */
  set64(r: number, l: number): void {
    const b = this.b;
    b.get(this.st).get(l).op(Op.i32WrapI64).mem(Op.i32Store, 2, L.S_RLO + 4 * r);
    b.get(this.st).get(l).i64(32n).op(Op.i64ShrU).op(Op.i32WrapI64).mem(Op.i32Store, 2, L.S_RHI + 4 * r);
  }
  /** Store the i32 produced by `emit` into the low half of r and zero the high half. */
  set32(r: number, emit: () => void): void {
    const b = this.b;
    b.get(this.st); emit(); b.mem(Op.i32Store, 2, L.S_RLO + 4 * r);
    b.get(this.st).i32(0).mem(Op.i32Store, 2, L.S_RHI + 4 * r);
  }
  /** Push byte register (r, bit position sh) zero-extended (i32). */
  r8(r: number, sh: number): void {
    this.r32(r);
    if (sh) this.b.i32(sh).op(Op.i32ShrU);
    this.b.i32(255).op(Op.i32And);
  }
  /** Write the low byte of the i32 produced by `emit` into byte register (r, sh). */
  set8(r: number, sh: number, emit: () => void): void {
    const b = this.b;
    b.get(this.st);
    this.r32(r); b.i32(~(0xff << sh)).op(Op.i32And);
    emit(); b.i32(255).op(Op.i32And);
    if (sh) b.i32(sh).op(Op.i32Shl);
    b.op(Op.i32Or).mem(Op.i32Store, 2, L.S_RLO + 4 * r);
  }

  /** Push the `pos` argument of a helper for the current instruction. */
  pos(): void {
    const b = this.b;
    if (this.selfLoop) b.get(this.n).i32(5).op(Op.i32Shl).i32(this.ix).op(Op.i32Or);
    else b.i32(this.ix);
  }

  // ---- memory

  /** Effective address of e's memory operand into local `a` (64-bit address size); `next` = offset of the next instruction. */
  ea(e: BlockEntry, next: number): void {
    const b = this.b;
    let terms = 0;
    if (e.base >= 0) { this.r64(e.base); terms++; }
    else if (e.base === -2) { b.get(this.r0i).i64(BigInt(next)).op(Op.i64Add); terms++; }
    if (e.index >= 0) {
      this.r64(e.index);
      if (e.scale > 1) b.i64(BigInt(Math.log2(e.scale))).op(Op.i64Shl);
      if (terms) b.op(Op.i64Add);
      terms++;
    }
    if (e.disp !== 0 || terms === 0) {
      b.i64(BigInt(e.disp));
      if (terms) b.op(Op.i64Add);
    }
    if (e.seg >= 0) {
      // FS/GS base (signed canonical number, ../system/msr.ts) + offset, modulo 2^64.
      b.get(this.st).mem(Op.f64Load, 3, L.S_SEG + 8 * e.seg).op(...I64_TRUNC_SAT_F64_S).op(Op.i64Add);
    }
    b.set(this.a);
  }

  /**
   * The inline TLB probe for an access of `size` bytes at `a`: leaves the guest-physical address in `p` or
   * branches to `slowLabel` (miss, outside low RAM, crossing a page; stores also on a code/armed page).
   */
  probe(size: number, write: boolean, slowLabel: number): void {
    const b = this.b;
    b.get(this.a).op(Op.i32WrapI64).i32(0xfff).op(Op.i32And).tee(this.off).i32(4096 - size).op(Op.i32GtU).brIf(slowLabel);
    b.get(this.a).i64(12n).op(Op.i64ShrS).tee(this.vpn).op(Op.i32WrapI64).i32(0xfff).op(Op.i32And).i32(3).op(Op.i32Shl).set(this.ti);
    b.get(write ? this.wtag : this.rtag).get(this.ti).op(Op.i32Add).mem(Op.f64Load, 3, 0);
    b.get(this.vpn).op(Op.f64ConvertI64s).op(Op.f64Ne).brIf(slowLabel);
    b.get(this.st).get(this.ti).op(Op.i32Add).mem(Op.f64Load, 3, L.S_PHYS).op(...I64_TRUNC_SAT_F64_U);
    b.get(this.off).op(Op.i64ExtendI32u).op(Op.i64Add).tee(this.p);
    b.i64(BigInt(this.ramSize - size)).op(Op.i64GtU).brIf(slowLabel);
    if (write) b.get(this.p).i64(12n).op(Op.i64ShrU).op(Op.i32WrapI64).mem(Op.i32Load8u, 0, L.CODE_PAGES).brIf(slowLabel);
  }

  /** Load `size` bytes at `a` into local `v` (zero-extended). */
  load(size: number): void {
    const b = this.b;
    const done = b.open(Op.block);
    const slow = b.open(Op.block);
    this.probe(size, false, slow);
    b.get(this.p).op(Op.i32WrapI64);
    if (size === 1) b.mem(Op.i64Load8u, 0, WASM_RAM_OFFSET);
    else if (size === 2) b.mem(Op.i64Load16u, 0, WASM_RAM_OFFSET);
    else if (size === 4) b.mem(Op.i64Load32u, 0, WASM_RAM_OFFSET);
    else b.mem(Op.i64Load, 0, WASM_RAM_OFFSET);
    b.set(this.v).br(done);
    b.close();
    b.get(this.a).op(Op.f64ConvertI64s).i32(size); this.pos(); b.call(F_RD);
    if (size === 4 || size === 8) b.op(Op.i64ExtendI32u); else b.op(Op.i64ExtendI32u);
    if (size === 8) b.get(this.st).mem(Op.i64Load32u, 2, L.S_HI).i64(32n).op(Op.i64Shl).op(Op.i64Or);
    b.set(this.v).i32(1).set(this.slow);
    b.close();
  }

  /** Store the low `size` bytes of local `w` at `a`. */
  store(size: number): void {
    const b = this.b;
    const done = b.open(Op.block);
    const slow = b.open(Op.block);
    this.probe(size, true, slow);
    b.get(this.p).op(Op.i32WrapI64).get(this.w);
    if (size === 1) b.mem(Op.i64Store8, 0, WASM_RAM_OFFSET);
    else if (size === 2) b.mem(Op.i64Store16, 0, WASM_RAM_OFFSET);
    else if (size === 4) b.mem(Op.i64Store32, 0, WASM_RAM_OFFSET);
    else b.mem(Op.i64Store, 0, WASM_RAM_OFFSET);
    b.br(done);
    b.close();
    b.get(this.a).op(Op.f64ConvertI64s).i32(size);
    b.get(this.w).op(Op.i32WrapI64).get(this.w).i64(32n).op(Op.i64ShrU).op(Op.i32WrapI64);
    this.pos(); b.call(F_WR);
    b.i32(1).set(this.slow);
    b.close();
  }

  // ---- exits

  /** Leave with `count` instructions of this pass done and RIP = r0 + `ripOff`. */
  exitConst(count: number, ripOff: number): void {
    const b = this.b;
    b.get(this.st).get(this.r0);
    if (ripOff !== 0) b.f64(ripOff).op(Op.f64Add);
    b.mem(Op.f64Store, 3, L.S_RIP);
    b.i32(count).set(this.xc).br(this.out);
  }

  /** After an instruction that took a slow path: leave right after it (unless it is the last, which exits anyway). */
  exitIfSlow(count: number, ripOff: number): void {
    const b = this.b;
    b.get(this.slow).open(Op.if);
    this.exitConst(count, ripOff);
    b.close();
  }

  /** #GP(0) through the helper unless the f64 on the stack is canonical (SDM vol. 1 §3.3.7.1). */
  checkCanonicalF64(): void {
    const b = this.b;
    b.tee(this.tf).f64(-TWO47).op(Op.f64Lt).get(this.tf).f64(TWO47).op(Op.f64Ge).op(Op.i32Or);
    b.open(Op.if); this.pos(); b.call(F_GP).op(Op.unreachable); b.close();
  }

  // ---- lazy flags

  /** Record the flag locals as produced by (kind, size) into the state area. */
  produced(kind: number, size: number): void {
    const b = this.b;
    this.known = true; this.kind = kind; this.size = size;
    b.get(this.st).i32(kind).mem(Op.i32Store, 2, L.S_LOP);
    b.get(this.st).i32(size).mem(Op.i32Store, 2, L.S_LSZ);
    b.get(this.st).get(this.ld).mem(Op.i64Store, 3, L.S_LD);
    b.get(this.st).get(this.ls).mem(Op.i64Store, 3, L.S_LS);
    b.get(this.st).get(this.lr).mem(Op.i64Store, 3, L.S_LR);
    if (kind === L_INC || kind === L_DEC) b.get(this.st).get(this.lcy).mem(Op.i32Store, 2, L.S_LCY);
  }

  /** Push flag local `l` at the producer's size: i64 for size 8, else i32 (signed: sign-extended for size 1). */
  fv(l: number, signed: boolean): void {
    const b = this.b;
    b.get(l);
    if (this.size !== 8) {
      b.op(Op.i32WrapI64);
      if (signed && this.size === 1) b.op(Op.i32Extend8s);
    }
  }

  /** Push condition `cc` (Jcc encoding) as an i32 0/1. */
  cond(cc: number): void {
    const b = this.b;
    if (!this.known || !this.condStatic(cc >> 1)) {
      b.i32(cc).call(F_CC);
      return;
    }
    if (cc & 1) b.op(Op.i32Eqz);
  }

  private condStatic(c: number): boolean {
    const b = this.b, k = this.kind, w = this.size === 8;
    const lt = w ? Op.i64LtS : Op.i32LtS, ltu = w ? Op.i64LtU : Op.i32LtU, leu = w ? Op.i64LeU : Op.i32LeU;
    const les = w ? Op.i64LeS : Op.i32LeS, eqz = w ? Op.i64Eqz : Op.i32Eqz, xor = w ? Op.i64Xor : Op.i32Xor;
    const and = w ? Op.i64And : Op.i32And, eq = w ? Op.i64Eq : Op.i32Eq;
    const zero = () => (w ? b.i64(0n) : b.i32(0));
    const Z = () => { this.fv(this.lr, false); b.op(eqz); };
    const S = () => { this.fv(this.lr, true); zero(); b.op(lt); };
    const P = () => { b.get(this.lr).op(Op.i32WrapI64).i32(255).op(Op.i32And).op(Op.i32Popcnt).i32(1).op(Op.i32And).op(Op.i32Eqz); };
    let O: () => void;
    let B: () => void;
    if (k === L_LOGIC) {
      O = () => b.i32(0);
      B = () => b.i32(0);
    } else if (k === L_SUB) {
      O = () => { this.fv(this.ld, true); this.fv(this.ls, true); b.op(xor); this.fv(this.ld, true); this.fv(this.lr, true); b.op(xor).op(and); zero(); b.op(lt); };
      B = () => { this.fv(this.ld, false); this.fv(this.ls, false); b.op(ltu); };
    } else if (k === L_ADD) {
      O = () => { this.fv(this.ld, true); this.fv(this.lr, true); b.op(xor); this.fv(this.ls, true); this.fv(this.lr, true); b.op(xor).op(and); zero(); b.op(lt); };
      B = () => { this.fv(this.lr, false); this.fv(this.ld, false); b.op(ltu); };
    } else if (k === L_INC || k === L_DEC) {
      if (this.size === 1) return false;
      const lim = k === L_INC ? (w ? -(2n ** 63n) : -2147483648) : (w ? 2n ** 63n - 1n : 2147483647);
      O = () => { this.fv(this.lr, true); if (w) b.i64(lim as bigint); else b.i32(lim as number); b.op(eq); };
      B = () => { b.get(this.lcy).i32(0).op(Op.i32Ne); };
    } else return false;
    switch (c) {
      case 0: O(); break;
      case 1: B(); break;
      case 2: Z(); break;
      case 3:
        if (k === L_SUB) { this.fv(this.ld, false); this.fv(this.ls, false); b.op(leu); } else { B(); Z(); b.op(Op.i32Or); }
        break;
      case 4: S(); break;
      case 5: P(); break;
      case 6:
        if (k === L_SUB) { this.fv(this.ld, true); this.fv(this.ls, true); b.op(lt); } else { S(); O(); b.op(Op.i32Xor); }
        break;
      default:
        if (k === L_SUB) { this.fv(this.ld, true); this.fv(this.ls, true); b.op(les); } else { Z(); S(); O(); b.op(Op.i32Xor).op(Op.i32Or); }
    }
    return true;
  }

  // ---- ALU

  /** lr = ld op ls at `size` (4: the locals hold zero-extended 32-bit values; 1: bytes). */
  alu(op: number, size: number): void {
    const b = this.b;
    b.get(this.ld).get(this.ls);
    switch (op) {
      case ADD: b.op(Op.i64Add); break;
      case SUB: case CMP: b.op(Op.i64Sub); break;
      case OR: b.op(Op.i64Or); break;
      case XOR: b.op(Op.i64Xor); break;
      default: b.op(Op.i64And);
    }
    if (size === 4) b.i64(0xffffffffn).op(Op.i64And);
    else if (size === 1) b.i64(0xffn).op(Op.i64And);
    b.set(this.lr);
  }

  /** Push register r's value at size (4: zero-extended) as i64. */
  regVal(r: number, size: number): void {
    if (size === 8) this.r64(r);
    else this.b.get(this.st).mem(Op.i64Load32u, 2, L.S_RLO + 4 * r);
  }

  /** Write lr into register r at size (4: zero-extends into the high half). */
  writeLr(r: number, size: number): void {
    if (size === 8) this.set64(r, this.lr);
    else this.set32(r, () => this.b.get(this.lr).op(Op.i32WrapI64));
  }
}

const imm64 = (lo: number, hi: number) => (BigInt(hi | 0) << 32n) | BigInt(lo >>> 0);

/** Build the module of one block; null if it has nothing worth translating. */
function buildBlock(block: Block, ramSize: number): { bytes: Uint8Array<ArrayBuffer>; offs: number[] } | null {
  const es = block.entries;
  const N = es.length;
  const offs: number[] = [];
  let off = 0;
  for (let i = 0; i < N; i++) { offs.push(off); off += es[i].len; }
  if (!es.some((e) => e.form !== Form.None && e.form !== Form.ShiftImm)) return null;
  const T = new Translator(block, offs, ramSize);
  const b = T.b;
  const last = es[N - 1];
  const lastNext = offs[N - 1] + last.len;
  T.selfLoop = (last.form === Form.Jcc || last.form === Form.Jmp) && last.len > 0 && lastNext + last.disp === 0;
  // Prologue: TLB bank addresses for this privilege, r0 as an integer.
  b.get(T.st).i32(L.S_TAGS).op(Op.i32Add).get(T.user).i32(L.TAGS_USER_DELTA).op(0x6c /* i32.mul */).op(Op.i32Add).tee(T.rtag);
  b.i32(L.TAGS_WRITE_DELTA).op(Op.i32Add).set(T.wtag);
  b.get(T.r0).op(...I64_TRUNC_SAT_F64_S).set(T.r0i);
  T.out = b.open(Op.block);
  if (T.selfLoop) T.top = b.open(Op.loop);
  for (let i = 0; i < N; i++) {
    const e = es[i];
    const o = offs[i];
    const next = o + e.len;
    const isLast = i === N - 1;
    const f = e.form;
    T.ix = i;
    let mem = false;
    const memOp = () => { if (!mem) { mem = true; b.i32(0).set(T.slow); } T.ea(e, next); };
    switch (f) {
      case Form.MovRR64:
        b.get(T.st); T.r32(e.a); b.mem(Op.i32Store, 2, L.S_RLO + 4 * e.b);
        b.get(T.st).get(T.st).mem(Op.i32Load, 2, L.S_RHI + 4 * e.a).mem(Op.i32Store, 2, L.S_RHI + 4 * e.b);
        break;
      case Form.MovRR32: T.set32(e.b, () => T.r32(e.a)); break;
      case Form.MovStore64: memOp(); T.r64(e.a); b.set(T.w); T.store(8); break;
      case Form.MovStore32: memOp(); T.regVal(e.a, 4); b.set(T.w); T.store(4); break;
      case Form.MovLoad64: memOp(); T.load(8); T.set64(e.a, T.v); break;
      case Form.MovLoad32: memOp(); T.load(4); T.set32(e.a, () => b.get(T.v).op(Op.i32WrapI64)); break;
      case Form.MovImmReg:
        b.get(T.st).i32(e.imm).mem(Op.i32Store, 2, L.S_RLO + 4 * e.a);
        b.get(T.st).i32(e.immHi).mem(Op.i32Store, 2, L.S_RHI + 4 * e.a);
        break;
      case Form.MovImmMem64: memOp(); b.i64(imm64(e.imm, e.immHi)).set(T.w); T.store(8); break;
      case Form.MovImmMem32: memOp(); b.i64(BigInt(e.imm >>> 0)).set(T.w); T.store(4); break;
      case Form.Lea: {
        // base + (index << e.size) + disp modulo 2^64; e.immHi is the operand size (4: zero-extended).
        let terms = 0;
        if (e.base >= 0) { T.r64(e.base); terms++; }
        else if (e.base === -2) { b.get(T.r0i).i64(BigInt(next)).op(Op.i64Add); terms++; }
        if (e.index >= 0) { T.r64(e.index); if (e.size) b.i64(BigInt(e.size)).op(Op.i64Shl); if (terms) b.op(Op.i64Add); terms++; }
        if (e.disp !== 0 || terms === 0) { b.i64(BigInt(e.disp)); if (terms) b.op(Op.i64Add); }
        b.set(T.t);
        if (e.immHi === 8) T.set64(e.a, T.t); else T.set32(e.a, () => b.get(T.t).op(Op.i32WrapI64));
        break;
      }
      case Form.AluRR: case Form.AluRI: case Form.AluRM: {
        const op = e.op, size = e.size, rd = e.b;
        if (f === Form.AluRM) { memOp(); T.load(size); }
        T.regVal(rd, size); b.set(T.ld);
        if (f === Form.AluRR) T.regVal(e.a, size);
        else if (f === Form.AluRI) b.i64(size === 8 ? imm64(e.imm, e.immHi) : BigInt(e.imm >>> 0));
        else b.get(T.v);
        b.set(T.ls);
        T.alu(op, size);
        if (op < CMP) T.writeLr(rd, size);
        T.produced(KIND[op], size);
        break;
      }
      case Form.AluMR: case Form.AluMI: {
        // The store may fault after the load: the flag record is committed only after it.
        const op = e.op, size = e.size;
        memOp(); T.load(size);
        if (f === Form.AluMR) T.regVal(e.a, size); else b.i64(size === 8 ? imm64(e.imm, e.immHi) : BigInt(e.imm >>> 0));
        b.set(T.t);
        // w = v op t (as alu(), into w)
        b.get(T.v).get(T.t);
        b.op(op === ADD ? Op.i64Add : op === SUB || op === CMP ? Op.i64Sub : op === OR ? Op.i64Or : op === XOR ? Op.i64Xor : Op.i64And);
        if (size === 4) b.i64(0xffffffffn).op(Op.i64And);
        b.set(T.w);
        if (op < CMP) T.store(size);
        b.get(T.v).set(T.ld).get(T.t).set(T.ls).get(T.w).set(T.lr);
        T.produced(KIND[op], size);
        break;
      }
      case Form.IncDec: {
        const r = e.b, dec = e.op === 1, size = e.size;
        T.cond(2); b.set(T.lcy); // CF is preserved: the record keeps the old CF (../ops/alu.ts)
        T.regVal(r, size); b.set(T.ld);
        b.i64(1n).set(T.ls);
        b.get(T.ld).i64(1n).op(dec ? Op.i64Sub : Op.i64Add);
        if (size === 4) b.i64(0xffffffffn).op(Op.i64And);
        b.set(T.lr);
        T.writeLr(r, size);
        T.produced(dec ? L_DEC : L_INC, size);
        break;
      }
      case Form.Push: case Form.Call: {
        if (f === Form.Call) {
          b.get(T.r0).f64(next + e.disp).op(Op.f64Add); T.checkCanonicalF64();
          b.get(T.r0i).i64(BigInt(next)).op(Op.i64Add).set(T.w);
        } else { T.r64(e.a); b.set(T.w); }
        mem = true; b.i32(0).set(T.slow);
        T.r64(4); b.i64(8n).op(Op.i64Sub).set(T.a);
        T.store(8);
        T.set64(4, T.a);
        if (f === Form.Call) T.exitConst(i + 1, next + e.disp);
        break;
      }
      case Form.Pop: case Form.Ret: {
        mem = true; b.i32(0).set(T.slow);
        T.r64(4); b.set(T.a);
        T.load(8);
        if (f === Form.Ret) {
          // canonical: bits 63..47 all equal
          b.get(T.v).i64(BigInt(TWO47)).op(Op.i64Add).i64(48n).op(Op.i64ShrU).op(Op.i64Eqz).op(Op.i32Eqz);
          b.open(Op.if); T.pos(); b.call(F_GP).op(Op.unreachable); b.close();
        }
        b.get(T.a).i64(8n).op(Op.i64Add).set(T.t);
        T.set64(4, T.t);
        if (f === Form.Ret) {
          b.get(T.st).get(T.v).op(Op.f64ConvertI64s).mem(Op.f64Store, 3, L.S_RIP);
          b.i32(i + 1).set(T.xc).br(T.out);
        } else T.set64(e.a, T.v);
        break;
      }
      case Form.MovzxReg8: T.set32(e.a, () => T.r8(e.b, e.imm)); break;
      case Form.MovzxReg16: T.set32(e.a, () => { T.r32(e.b); b.i32(0xffff).op(Op.i32And); }); break;
      case Form.MovzxMem: memOp(); T.load(e.size); T.set32(e.a, () => b.get(T.v).op(Op.i32WrapI64)); break;
      case Form.MovsxdReg: T.r32(e.b); b.op(Op.i64ExtendI32s).set(T.t); T.set64(e.a, T.t); break;
      case Form.MovsxdMem: memOp(); T.load(4); b.get(T.v).op(Op.i32WrapI64).op(Op.i64ExtendI32s).set(T.t); T.set64(e.a, T.t); break;
      case Form.Alu8RR: case Form.Alu8RI: case Form.Alu8RM: {
        const op = e.op;
        if (f === Form.Alu8RM) { memOp(); T.load(1); b.get(T.v).set(T.ls); }
        else if (f === Form.Alu8RR) { T.r8(e.a, e.ash); b.op(Op.i64ExtendI32u).set(T.ls); }
        else b.i64(BigInt(e.imm & 0xff)).set(T.ls);
        T.r8(e.b, e.bsh); b.op(Op.i64ExtendI32u).set(T.ld);
        T.alu(op, 1);
        if (op < CMP) T.set8(e.b, e.bsh, () => b.get(T.lr).op(Op.i32WrapI64));
        T.produced(KIND[op], 1);
        break;
      }
      case Form.Alu8MR: case Form.Alu8MI: {
        const op = e.op;
        memOp(); T.load(1);
        if (f === Form.Alu8MR) { T.r8(e.a, e.ash); b.op(Op.i64ExtendI32u); } else b.i64(BigInt(e.imm & 0xff));
        b.set(T.t);
        b.get(T.v).get(T.t);
        b.op(op === ADD ? Op.i64Add : op === SUB || op === CMP ? Op.i64Sub : op === OR ? Op.i64Or : op === XOR ? Op.i64Xor : Op.i64And);
        b.i64(0xffn).op(Op.i64And).set(T.w);
        if (op < CMP) T.store(1);
        b.get(T.v).set(T.ld).get(T.t).set(T.ls).get(T.w).set(T.lr);
        T.produced(KIND[op], 1);
        break;
      }
      case Form.Mov8RR: T.set8(e.b, e.bsh, () => T.r8(e.a, e.ash)); break;
      case Form.Mov8RI: T.set8(e.b, e.bsh, () => b.i32(e.imm)); break;
      case Form.Mov8RM: memOp(); T.load(1); T.set8(e.b, e.bsh, () => b.get(T.v).op(Op.i32WrapI64)); break;
      case Form.Mov8MR: memOp(); T.r8(e.a, e.ash); b.op(Op.i64ExtendI32u).set(T.w); T.store(1); break;
      case Form.Mov8MI: memOp(); b.i64(BigInt(e.imm & 0xff)).set(T.w); T.store(1); break;
      case Form.CmovRR: case Form.CmovRM: {
        const size = e.size;
        if (f === Form.CmovRM) { memOp(); T.load(size); } else { T.regVal(e.a, size); b.set(T.v); }
        T.cond(e.op);
        if (size === 8) {
          b.open(Op.if); T.set64(e.b, T.v); b.close();
        } else {
          // a 32-bit destination is zero-extended whatever the condition
          b.set(T.c32);
          T.set32(e.b, () => { b.get(T.v).op(Op.i32WrapI64); T.r32(e.b); b.get(T.c32).op(Op.select); });
        }
        break;
      }
      case Form.Setcc: T.cond(e.op); b.set(T.c32); T.set8(e.b, e.bsh, () => b.get(T.c32)); break;
      case Form.Nop: break;
      case Form.Jcc: case Form.Jmp: {
        const target = next + e.disp;
        if (f === Form.Jcc) { T.cond(e.a); b.open(Op.if); }
        if (target !== 0) { b.get(T.r0).f64(target).op(Op.f64Add); T.checkCanonicalF64(); }
        if (T.selfLoop && isLast) {
          b.get(T.n).i32(N).op(Op.i32Add).tee(T.n).i32(N).op(Op.i32Add).tee(T.c32).get(T.left).op(Op.i32LeS);
          b.get(T.c32).i32(LOOP_LIMIT).op(Op.i32LeS).op(Op.i32And).brIf(T.top);
          T.exitConst(0, 0);
        } else T.exitConst(i + 1, target);
        if (f === Form.Jcc) { b.close(); T.exitConst(i + 1, next); }
        break;
      }
      default: {
        // Replay through the helper (closure or handler, as SoftCpu.runBlock); it stores RIP and says whether to leave.
        T.pos(); b.call(F_RP);
        b.open(Op.if); b.i32(i + 1).set(T.xc).br(T.out); b.close();
        T.known = false;
        if (isLast) b.op(Op.unreachable); // (the helper always says leave after the last instruction)
      }
    }
    if (mem && !isLast) T.exitIfSlow(i + 1, next);
    if (isLast && f !== Form.Jcc && f !== Form.Jmp && f !== Form.Call && f !== Form.Ret && f !== Form.None && f !== Form.ShiftImm) {
      T.exitConst(i + 1, next);
    }
  }
  if (T.selfLoop) b.close();
  b.close();
  b.get(T.n).get(T.xc).op(Op.i32Add);
  const m = new ModuleBuilder();
  m.importMemory('e', 'm');
  m.importFunc('e', 'rd', m.type([F64, I32, I32], [I32]));
  m.importFunc('e', 'wr', m.type([F64, I32, I32, I32, I32], []));
  m.importFunc('e', 'rp', m.type([I32], [I32]));
  m.importFunc('e', 'cc', m.type([I32], [I32]));
  m.importFunc('e', 'gp', m.type([I32], []));
  m.func(m.type([I32, F64, I32, I32], [I32]), b, 'f');
  return { bytes: m.encode(), offs };
}

/** Replay entry `e` at `rip` through its closure or handler (as SoftCpu.runBlock). */
function replayEntry(c: SoftCpu, e: BlockEntry, rip: number): void {
  const fast = e.fast;
  if (fast !== null) {
    c.rip = rip + e.len;
    fast(c, e);
    return;
  }
  c.opsize = e.opsize; c.adsize = e.adsize; c.segOverride = e.segOverride; c.rep = e.rep; c.lock = e.lock;
  c.p66 = e.p66; c.rex = e.rex; c.rexW = e.rexW; c.rexR = e.rexR; c.rexX = e.rexX; c.rexB = e.rexB; c.opcode = e.opcode;
  c.rip = rip + e.opLen;
  e.handler(c);
}

export interface WasmStats {
  /** Blocks translated to wasm. */
  compiled: number;
  /** Bytes of wasm generated and milliseconds spent building + compiling modules. */
  bytes: number;
  compileMs: number;
  /** Calls into translated code. */
  calls: number;
}

/** The wasm translator of one GuestMemory (shared by its vCPUs, which run on one thread). */
export class WasmEngine {
  readonly i32: Int32Array;
  readonly f64: Float64Array;
  private readonly imports: WebAssembly.Imports;
  readonly stats: WasmStats = { compiled: 0, bytes: 0, compileMs: 0, calls: 0 };
  private nextState = 0;
  // The call in progress (helpers run inside it).
  private cur: SoftCpu | null = null;
  private curBlock: Block | null = null;
  private curOffs: number[] = [];
  private curR0 = 0;
  private curI0 = 0;
  private curPos = 0;
  private curSt = 0;

  constructor(readonly memory: WebAssembly.Memory, readonly ramSize: number) {
    this.i32 = new Int32Array(memory.buffer, 0, L.STATE_BASE / 4 + (L.MAX_WASM_CPUS * L.STATE_STRIDE) / 4);
    this.f64 = new Float64Array(memory.buffer, 0, this.i32.length / 2);
    this.imports = {
      e: {
        m: memory,
        rd: (lin: number, size: number, pos: number): number => {
          this.curPos = pos;
          const c = this.cur!;
          const v = c.readLin(lin, size);
          if (size === 8) this.i32[(this.curSt + L.S_HI) >> 2] = c.hi;
          return v;
        },
        wr: (lin: number, size: number, lo: number, hi: number, pos: number): void => {
          this.curPos = pos;
          this.cur!.writeLin(lin, size, lo, hi);
        },
        rp: (pos: number): number => this.replay(pos),
        cc: (cc: number): number => {
          const c = this.cur!;
          this.syncToCpu(c);
          const r = c.condition(cc) ? 1 : 0;
          this.syncFromCpu(c);
          return r;
        },
        gp: (pos: number): void => {
          this.curPos = pos;
          this.cur!.gp(0);
        },
      },
    };
  }

  /** A state area for a new vCPU (byte offset), or -1 when there is no room. */
  allocState(): number {
    if (this.nextState >= L.MAX_WASM_CPUS) return -1;
    return L.STATE_BASE + L.STATE_STRIDE * this.nextState++;
  }

  private replay(pos: number): number {
    this.curPos = pos;
    const c = this.cur!, b = this.curBlock!;
    const n = pos >> 5, ix = pos & 31;
    const e = b.entries[ix];
    const rip = this.curR0 + this.curOffs[ix];
    this.syncToCpu(c);
    c.ripStart = rip;
    c.instructions = this.curI0 + n + ix + 1;
    replayEntry(c, e, rip);
    this.syncFromCpu(c);
    this.f64[(this.curSt + L.S_RIP) >> 3] = c.rip;
    return ix === b.n - 1 || e.len === 0 || c.rip !== rip + e.len || c.eventPending || c.stopRequested ? 1 : 0;
  }

  /** State area's flag record -> the CPU's lazy fields. */
  private syncToCpu(c: SoftCpu): void {
    const I = this.i32, s = c.wasmState >> 2;
    c.lazyOp = I[s + (L.S_LOP >> 2)];
    c.lazySize = I[s + (L.S_LSZ >> 2)];
    c.lazyDst = I[s + (L.S_LD >> 2)]; c.lazyDstHi = I[s + (L.S_LD >> 2) + 1];
    c.lazySrc = I[s + (L.S_LS >> 2)]; c.lazySrcHi = I[s + (L.S_LS >> 2) + 1];
    c.lazyRes = I[s + (L.S_LR >> 2)]; c.lazyResHi = I[s + (L.S_LR >> 2) + 1];
    c.lazyCarry = I[s + (L.S_LCY >> 2)];
  }

  /** The CPU's lazy fields -> the state area. */
  private syncFromCpu(c: SoftCpu): void {
    const I = this.i32, s = c.wasmState >> 2;
    I[s + (L.S_LOP >> 2)] = c.lazyOp;
    I[s + (L.S_LSZ >> 2)] = c.lazySize;
    I[s + (L.S_LD >> 2)] = c.lazyDst; I[s + (L.S_LD >> 2) + 1] = c.lazyDstHi;
    I[s + (L.S_LS >> 2)] = c.lazySrc; I[s + (L.S_LS >> 2) + 1] = c.lazySrcHi;
    I[s + (L.S_LR >> 2)] = c.lazyRes; I[s + (L.S_LR >> 2) + 1] = c.lazyResHi;
    I[s + (L.S_LCY >> 2)] = c.lazyCarry;
  }

  /** Translate a block (null when it cannot or need not be). */
  compile(block: Block): WasmCode | null {
    const t0 = performance.now();
    try {
      const built = buildBlock(block, this.ramSize);
      if (built === null) return null;
      const inst = new WebAssembly.Instance(new WebAssembly.Module(built.bytes), this.imports);
      this.stats.compiled++;
      this.stats.bytes += built.bytes.length;
      return { fn: inst.exports.f as WasmCode['fn'], offs: built.offs };
    } catch (err) {
      if (!reported) {
        reported = true;
        process.stderr.write(`ringzero: wasm JIT: could not translate a block at ${block.pa.toString(16)}: ${(err as Error).message}\n`);
      }
      return null;
    } finally {
      this.stats.compileMs += performance.now() - t0;
    }
  }

  /**
   * Run block `b` (at most `room` instructions) in translated code, translating it once it is hot; otherwise
   * replay it. Returns the instructions executed; faults propagate as from SoftCpu.runBlock.
   */
  exec(c: SoftCpu, b: Block, room: number): number {
    let w = b.wasm;
    if (w === null) {
      if (b.runs >= 0 && b.mode === 8 && ++b.runs > Math.min(WASM_HOT, JIT_THRESHOLD)) {
        b.runs = -1;
        w = this.compile(b);
        if (w !== null) {
          b.wasm = w;
          c.codeCache.stats.compiled++;
          c.codeCache.translated.set(b.pa * 16 + b.mode, b);
        }
      }
      if (w === null) return c.runBlock(b, room);
    }
    if (b.n > room) return c.runBlock(b, room);
    return this.run(c, b, w, room);
  }

  private run(c: SoftCpu, b: Block, w: WasmCode, room: number): number {
    const st = c.wasmState;
    this.syncFromCpu(c);
    const r0 = c.rip, I0 = c.instructions;
    this.cur = c; this.curBlock = b; this.curOffs = w.offs; this.curR0 = r0; this.curI0 = I0; this.curPos = 0; this.curSt = st;
    this.stats.calls++;
    let k: number;
    try {
      k = w.fn(st, r0, room, c.cpl === 3 ? 1 : 0);
    } catch (err) {
      if (err === CPU_FAULT) {
        const n = this.curPos >> 5, ix = this.curPos & 31;
        c.instructions = I0 + n + ix + 1;
        c.ripStart = r0 + w.offs[ix];
        c.blockInstructions += n + ix;
        c.jitInstructions += n + ix;
      }
      this.syncToCpu(c);
      this.cur = null;
      throw err;
    }
    this.syncToCpu(c);
    this.cur = null;
    c.rip = this.f64[(st + L.S_RIP) >> 3];
    c.instructions = I0 + k;
    c.blockInstructions += k;
    c.jitInstructions += k;
    return k;
  }
}

let reported = false;

const engines = new WeakMap<GuestMemory, WasmEngine>();

/**
 * Attach the wasm translator to a new vCPU of `mem`: its state area, whose views the CPU adopts for rlo/rhi, the
 * TLB and the segment bases. Null when `mem` has no wasm memory or there is no room for another state area.
 */
export function wasmStateFor(mem: GuestMemory): { engine: WasmEngine; st: number; rlo: Int32Array<ArrayBuffer>; rhi: Int32Array<ArrayBuffer>; tags: Float64Array<ArrayBuffer>; phys: Float64Array<ArrayBuffer>; segBase: Float64Array<ArrayBuffer> } | null {
  const wm = mem.wasmMemory;
  if (!wm) return null;
  let engine = engines.get(mem);
  if (!engine) { engine = new WasmEngine(wm, mem.lowSize); engines.set(mem, engine); }
  const st = engine.allocState();
  if (st < 0) return null;
  const buf = wm.buffer as ArrayBuffer;
  return {
    engine, st,
    rlo: new Int32Array(buf, st + L.S_RLO, 16),
    rhi: new Int32Array(buf, st + L.S_RHI, 16),
    tags: new Float64Array(buf, st + L.S_TAGS, 6 * 4096).fill(NaN),
    phys: new Float64Array(buf, st + L.S_PHYS, 4096),
    segBase: new Float64Array(buf, st + L.S_SEG, 6),
  };
}
