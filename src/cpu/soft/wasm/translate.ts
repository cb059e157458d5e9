// The WebAssembly translator of the software CPU (issue 4; opt-in with RINGZERO_JIT=wasm).
//
// Why: the JavaScript translator (../jit/translate.ts) gains little on the Linux boot because every generated
// function costs V8 milliseconds of optimizing compilation before it is fast, so only very hot blocks repay it.
// WebAssembly is compiled by V8's baseline compiler (Liftoff) straight to machine code, cheaply, so blocks can be
// translated after a few hundred replays.
//
// How: guest low RAM, the vCPU's registers (rlo/rhi), its software TLB (tlbTags/tlbPhys), segment bases and the
// block cache's code-page bytes and page generations live in one WebAssembly.Memory (./layout.ts; GuestMemory maps
// the RAM memfd into it), so translated code reads and writes them with plain loads and stores. A cached 64-bit
// block of the block cache (../code-cache.ts) becomes one wasm function (st, r0, left, user) -> instructions run;
// hot blocks are queued and translated WASM_BATCH per module (a module has a fixed cost of its own):
// - the fast forms of ../fast-forms.ts (MOV, LEA, ALU incl. 8-bit, INC/DEC, SHL/SHR/SAR by a constant,
//   MOVZX/MOVSXD, CMOVcc, SETcc, NOP, PUSH/POP, Jcc/JMP/CALL/RET, and of the session-11 forms MOVSX, NOT/NEG reg,
//   ADC/SBB, INC/DEC/PUSH memory, indirect CALL/JMP, IMUL, shifts by CL, BT*, CMPXCHG/XADD memory, 16-bit ALU/MOV,
//   CWDE/CDQ..., BSWAP, PUSH imm, PUSHF, SETcc memory, LEAVE) are emitted with their operands as constants;
// - a memory operand calls the shared memory library (buildMemlib: TLB probe, RAM bounds, for stores the code-page
//   byte, then the access; a miss, MMIO, a page-crossing access or a store into a page holding code calls the
//   helper `rd`/`wr`, which runs SoftCpu.readLin/writeLin and may throw the CPU fault through the wasm frames);
//   when that raised an event (self-modifying code, MMIO side effects) the block ends after the instruction;
// - the lazy-flag record is written to the state area after every producer and also kept in locals, so a
//   following Jcc/SETcc/CMOVcc/INC/DEC of the same block evaluates its condition inline; a condition on flags
//   from before the block asks the helper `cc` (SoftCpu.condition);
// - every other instruction (rotates, anything without a fast form) is replayed through the helper `rp`, which
//   runs its closure/handler exactly as SoftCpu.runBlock does, and the block ends if that changed RIP's course or
//   raised an event;
// - a block whose final direct branch targets its own start loops inside the function; and a dispatcher
//   (buildDispatcher) follows RIP from block to block through the fetch TLB and a table of translated blocks in
//   the wasm memory, so chains of translated blocks never return to JavaScript (at most CHAIN_LIMIT instructions
//   per call and never past the caller's budget; nothing else can raise an event meanwhile, since the only
//   JavaScript that runs during a call is the helpers, which stop the chain when they raised one).
//
// Exactness, as the interpreter and ../jit/translate.ts: `cpu.instructions` counts every instruction executed,
// the faulting one included; a fault leaves `ripStart` at the faulting instruction and every earlier instruction
// committed (registers are stored as each instruction executes; the flag record is in the state area, which the
// caller copies back). Helpers learn the faulting instruction from their `pos` argument (loop count << 5 | index).
import type { SoftCpu } from '../cpu.ts';
import { CPU_FAULT } from '../cpu.ts';
import type { Block, BlockEntry, CodeCache } from '../code-cache.ts';
import { JIT_THRESHOLD, CHAIN_LIMIT } from '../code-cache.ts';
import { Form } from '../fast-forms.ts';
import type { GuestMemory } from '../../../memory/guest-memory.ts';
import { WASM_RAM_OFFSET } from '../../../memory/guest-memory.ts';
import { Body, ModuleBuilder, Op, I32, I64, F64 } from './emit.ts';
import * as layout from './layout.ts';
/** The layout constants as a plain object (under tsx a namespace import reads each one through a getter call). */
const L = { ...layout };

/** A translated block: the wasm function and the byte offset of each instruction in the block. */
export interface WasmCode {
  fn: (st: number, r0: number, left: number, user: number) => number;
  offs: number[];
  /** Index in the engine's function table (the dispatcher calls it from there). */
  idx: number;
}

/** Most instructions one call of a self-looping block executes. */
const LOOP_LIMIT = 1024;
/** Replays of a cached block before it is translated (RINGZERO_WASM_HOT; never above RINGZERO_JIT_HOT). */
const WASM_HOT = Number(process.env.RINGZERO_WASM_HOT ?? 100);
/** Blocks per translated module (RINGZERO_WASM_BATCH), and the replays a queued block may wait meanwhile. */
const WASM_BATCH = Number(process.env.RINGZERO_WASM_BATCH ?? 32);
const WASM_BATCH_WAIT = Number(process.env.RINGZERO_WASM_BATCH_WAIT ?? 400);
/** Modules are compiled in the background (RINGZERO_WASM_ASYNC=0: on the main thread); see WasmEngine.flush. */
const ASYNC = process.env.RINGZERO_WASM_ASYNC !== '0';
/** Replays of a batch's blocks after which its module is compiled synchronously (the event loop is not turning). */
const ASYNC_WAIT = Number(process.env.RINGZERO_WASM_ASYNC_WAIT ?? 10000);
/** Block.runs of a block whose module is being compiled. */
const IN_FLIGHT = -2;

/** A module being compiled: its bytes, its blocks, the cache whose generations decide whether they are installed. */
interface Batch {
  bytes: Uint8Array<ArrayBuffer>;
  done: { block: Block; offs: number[] }[];
  cache: CodeCache;
  installed: boolean;
  waits: number;
}

// Lazy-flag kinds (../cpu.ts Lazy) and ALU operations (as in ../fast-forms.ts).
const L_ADD = 1, L_ADC = 2, L_SUB = 3, L_SBB = 4, L_LOGIC = 5, L_INC = 6, L_DEC = 7;
/** Record kind of translated code only: the arithmetic flags are explicit EFLAGS bits in S_LD (after a shift). */
const EXPLICIT = -2;
const ADD = 0, OR = 1, AND = 4, SUB = 5, XOR = 6, CMP = 7, TEST = 8;
const KIND = [L_ADD, L_LOGIC, 0, 0, L_LOGIC, L_SUB, L_LOGIC, L_SUB, L_LOGIC];
void AND;

const TWO47 = 140737488355328;
/** CF PF AF ZF SF OF (SDM vol. 1 §3.4.3.1). */
const ARITH = 0x8d5;
/** RF (bit 16) and VM (bit 17) of RFLAGS (SDM vol. 1 §3.4.3). */
const RF = 1 << 16, VM = 1 << 17;
/** IF (bit 9). */
const IF = 1 << 9;
// (0xFC 6 / 0xFC 7: i64.trunc_sat_f64_s / _u, the saturating truncations of Core spec §5.4.5.)

// Function indices of the imports (declared in this order).
const F_RD = 0, F_WR = 1, F_RP = 2, F_CC = 3, F_GP = 4, F_FL = 5, F_SY = 6;
/** The memory library's loads and stores (ld1, ld2, ld4, ld8, then st1..st8), imported after the helpers. */
const F_LD = 7, F_ST = 11;
const LOG2 = [0, 0, 1, 0, 2, 0, 0, 0, 3];
/** Static exits chain straight into the next translated block of the same page (RINGZERO_WASM_DIRECT=0: off). */
const DIRECT_CHAIN = process.env.RINGZERO_WASM_DIRECT !== '0';

/** Translation of one block into one function body. */
class Translator {
  readonly b: Body;
  // params
  readonly st = 0; readonly r0 = 1; readonly left = 2; readonly user = 3;
  // locals
  readonly n: number; readonly xc: number; readonly rtag: number; readonly wtag: number;
  readonly r0i: number; readonly a: number; readonly v: number;
  readonly w: number; readonly t: number; readonly ld: number;
  readonly ls: number; readonly lr: number; readonly lcy: number; readonly tf: number; readonly c32: number;
  readonly fl: number;
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
    this.lcy = b.local(I32); this.fl = b.local(I32);
    this.c32 = b.local(I32);
    this.r0i = b.local(I64); this.a = b.local(I64); this.v = b.local(I64); this.w = b.local(I64); this.t = b.local(I64);
    this.ld = b.local(I64); this.ls = b.local(I64); this.lr = b.local(I64);
    this.tf = b.local(F64);
  }

  // ---- registers (rlo/rhi in the state area)

  /** Push the 64-bit value of register r (i64). */
  r64(r: number): void {
    const b = this.b;
    b.get(this.st).mem(Op.i64Load32u, 2, L.S_RLO + 4 * r);
    b.get(this.st).mem(Op.i64Load32u, 2, L.S_RHI + 4 * r).i64(32).op(Op.i64Shl).op(Op.i64Or);
  }
  /** Push the low 32 bits of register r (i32). */
  r32(r: number): void { this.b.get(this.st).mem(Op.i32Load, 2, L.S_RLO + 4 * r); }
  /** Store i64 local `l` into register r. */
  set64(r: number, l: number): void {
    const b = this.b;
    b.get(this.st).get(l).op(Op.i32WrapI64).mem(Op.i32Store, 2, L.S_RLO + 4 * r);
    b.get(this.st).get(l).i64(32).op(Op.i64ShrU).op(Op.i32WrapI64).mem(Op.i32Store, 2, L.S_RHI + 4 * r);
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
    else if (e.base === -2) { b.get(this.r0i).i64(next).op(Op.i64Add); terms++; }
    if (e.index >= 0) {
      this.r64(e.index);
      if (e.scale > 1) b.i64(Math.log2(e.scale)).op(Op.i64Shl);
      if (terms) b.op(Op.i64Add);
      terms++;
    }
    if (e.disp !== 0 || terms === 0) {
      b.i64(e.disp);
      if (terms) b.op(Op.i64Add);
    }
    if (e.seg >= 0) {
      // FS/GS base (signed canonical number, ../system/msr.ts) + offset, modulo 2^64.
      b.get(this.st).mem(Op.f64Load, 3, L.S_SEG + 8 * e.seg).op(0xfc, 6).op(Op.i64Add);
    }
    b.set(this.a);
  }

  /** Load `size` bytes at `a` into local `v` (zero-extended), through the shared probe of the memory library. */
  load(size: number): void {
    const b = this.b;
    b.get(this.st).get(this.rtag).get(this.a); this.pos();
    b.call(F_LD + LOG2[size]).set(this.v);
  }

  /** Store the low `size` bytes of local `w` at `a`. */
  store(size: number): void {
    const b = this.b;
    b.get(this.st).get(this.wtag).get(this.a).get(this.w); this.pos();
    b.call(F_ST + LOG2[size]);
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

  /**
   * Leave with `count` instructions of this pass done towards the static target r0 + `ripOff` (a direct branch, the
   * fall-through), telling the dispatcher where the target's translated block is when it lies in this block's
   * physical page: its physical address is then this block's + ripOff under the same translation (RIP's page did
   * not change, and nothing that changes the mapping or the mode is a fast form), and its page generation must be
   * this block's (current while this block runs: an invalidation stops the chain through S_CHAIN). Its dispatch
   * entry is at a constant address, so the block checks (pa, generation) with one 64-bit compare and leaves the
   * entry's address in S_NEXT: the dispatcher then skips the fetch-TLB probe and the table lookup.
   * (A tail call into the successor, measured first, made the boot slower: see the commit message.)
   */
  exitStatic(count: number, ripOff: number): void {
    const b = this.b, pa = this.block.pa, tpa = pa + ripOff;
    if (DIRECT_CHAIN && ripOff !== 0 && (tpa >>> 12) === (pa >>> 12) && tpa >= 0) {
      const e = L.DISPATCH + (((tpa ^ (tpa >>> 12)) & ((1 << L.DISPATCH_BITS) - 1)) << 4);
      // (pa, gen) of the entry as one i64: pa in the low half, the generation in the high half
      b.i32(0).mem(Op.i64Load, 3, e).i64((BigInt(this.block.gen >>> 0) << 32n) | BigInt(tpa >>> 0)).op(Op.i64Eq);
      b.open(Op.if);
      b.get(this.st).i32(e).mem(Op.i32Store, 2, L.S_NEXT);
      b.close();
    }
    this.exitConst(count, ripOff);
  }

  /**
   * After a memory instruction: leave right after it when its slow path raised an event (the helper then cleared
   * S_CHAIN: a store into a code page, an MMIO side effect), so the event is seen at the next boundary.
   */
  exitIfSlow(count: number, ripOff: number): void {
    const b = this.b;
    b.get(this.st).mem(Op.i32Load, 2, L.S_CHAIN).op(Op.i32Eqz).open(Op.if);
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
    if (kind === L_INC || kind === L_DEC || kind === L_ADC || kind === L_SBB) b.get(this.st).get(this.lcy).mem(Op.i32Store, 2, L.S_LCY);
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

  condStatic(c: number): boolean {
    const b = this.b, k = this.kind, w = this.size === 8;
    if (k === EXPLICIT) {
      // The arithmetic flags as EFLAGS bits in ld (SDM vol. 1 §3.4.3.1: CF 0, PF 2, ZF 6, SF 7, OF 11).
      const bit = (n: number) => { b.get(this.ld).op(Op.i32WrapI64); if (n) b.i32(n).op(Op.i32ShrU); b.i32(1).op(Op.i32And); };
      switch (c) {
        case 0: bit(11); break;
        case 1: bit(0); break;
        case 2: bit(6); break;
        case 3: b.get(this.ld).op(Op.i32WrapI64).i32(0x41).op(Op.i32And).i32(0).op(Op.i32Ne); break;
        case 4: bit(7); break;
        case 5: bit(2); break;
        case 6: bit(7); bit(11); b.op(Op.i32Xor); break;
        default: bit(6); bit(7); bit(11); b.op(Op.i32Xor).op(Op.i32Or);
      }
      return true;
    }
    const lt = w ? Op.i64LtS : Op.i32LtS, ltu = w ? Op.i64LtU : Op.i32LtU, leu = w ? Op.i64LeU : Op.i32LeU;
    const les = w ? Op.i64LeS : Op.i32LeS, eqz = w ? Op.i64Eqz : Op.i32Eqz, xor = w ? Op.i64Xor : Op.i32Xor;
    const and = w ? Op.i64And : Op.i32And, eq = w ? Op.i64Eq : Op.i32Eq;
    const zero = () => (w ? b.i64(0) : b.i32(0));
    const Z = () => { this.fv(this.lr, false); b.op(eqz); };
    const S = () => { this.fv(this.lr, true); zero(); b.op(lt); };
    const P = () => { b.get(this.lr).op(Op.i32WrapI64).i32(255).op(Op.i32And).op(Op.i32Popcnt).i32(1).op(Op.i32And).op(Op.i32Eqz); };
    let O: () => void;
    let B: () => void;
    if (k === L_LOGIC) {
      O = () => b.i32(0);
      B = () => b.i32(0);
    } else if (k === L_SUB || k === L_SBB) {
      O = () => { this.fv(this.ld, true); this.fv(this.ls, true); b.op(xor); this.fv(this.ld, true); this.fv(this.lr, true); b.op(xor).op(and); zero(); b.op(lt); };
      // SBB (as SoftCpu.computeArith): borrow iff d < s, or d <= s with a carry-in
      B = k === L_SUB ? () => { this.fv(this.ld, false); this.fv(this.ls, false); b.op(ltu); }
        : () => { this.fv(this.ld, false); this.fv(this.ls, false); b.op(leu); this.fv(this.ld, false); this.fv(this.ls, false); b.op(ltu); b.get(this.lcy).op(Op.select); };
    } else if (k === L_ADD || k === L_ADC) {
      O = () => { this.fv(this.ld, true); this.fv(this.lr, true); b.op(xor); this.fv(this.ls, true); this.fv(this.lr, true); b.op(xor).op(and); zero(); b.op(lt); };
      // ADC: carry iff r < d, or r <= d with a carry-in
      B = k === L_ADD ? () => { this.fv(this.lr, false); this.fv(this.ld, false); b.op(ltu); }
        : () => { this.fv(this.lr, false); this.fv(this.ld, false); b.op(leu); this.fv(this.lr, false); this.fv(this.ld, false); b.op(ltu); b.get(this.lcy).op(Op.select); };
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

  /**
   * The six arithmetic flags of the known record as EFLAGS bits into local `fl` (as SoftCpu.computeArith: AF from
   * bit 4 of d^s^r, INC/DEC from the result's low nibble, 0 after logic). False (nothing emitted) when not possible.
   */
  materialize(): boolean {
    const b = this.b, k = this.kind;
    if (k === EXPLICIT) { b.get(this.ld).op(Op.i32WrapI64).set(this.fl); return true; }
    if ((k === L_INC || k === L_DEC) && this.size === 1) return false;
    if (k !== L_ADD && k !== L_SUB && k !== L_ADC && k !== L_SBB && k !== L_LOGIC && k !== L_INC && k !== L_DEC) return false;
    const flag = (cc: number, shift: number) => { this.condStatic(cc); if (shift) b.i32(shift).op(Op.i32Shl); };
    flag(1, 0); flag(5, 2); b.op(Op.i32Or); flag(2, 6); b.op(Op.i32Or); flag(4, 7); b.op(Op.i32Or); flag(0, 11); b.op(Op.i32Or);
    if (k === L_ADD || k === L_SUB || k === L_ADC || k === L_SBB) {
      b.get(this.ld).get(this.ls).op(Op.i64Xor).get(this.lr).op(Op.i64Xor).op(Op.i32WrapI64).i32(0x10).op(Op.i32And).op(Op.i32Or);
    } else if (k === L_INC || k === L_DEC) {
      b.get(this.lr).op(Op.i32WrapI64).i32(0xf).op(Op.i32And).i32(k === L_INC ? 0 : 0xf).op(Op.i32Eq).i32(4).op(Op.i32Shl).op(Op.i32Or);
    }
    b.set(this.fl);
    return true;
  }

  /** The arithmetic flags before this instruction into local `fl`: inline when known here, else the helper `fl`. */
  oldFlags(): void {
    if (this.known && this.materialize()) return;
    this.b.i32(0).call(F_FL).set(this.fl);
  }

  /** Commit EXPLICIT flags: the i32 on the stack holds the six arithmetic flags as EFLAGS bits. */
  explicit(size: number): void {
    const b = this.b;
    b.op(Op.i64ExtendI32u).set(this.ld);
    this.known = true; this.kind = EXPLICIT; this.size = size;
    b.get(this.st).i32(EXPLICIT).mem(Op.i32Store, 2, L.S_LOP);
    b.get(this.st).get(this.ld).mem(Op.i64Store, 3, L.S_LD);
  }

  /**
   * SHL/SAL/SHR/SAR (op 4-7) of register r by n (1..bits-1; n < 0: the count, non-zero, is the i64 in local ls), as
   * ../ops/alu-shift.ts shift32/shift64: all six arithmetic flags are written explicitly (AF set, OF from the
   * result's top bits): the record becomes EXPLICIT with those bits. With a source register `src` (constant n): SHLD
   * (op 4) / SHRD (op 5), the vacated bits filled from src; the flags follow the same formulas on the result
   * (../ops/alu-shift.ts doubleShift for sizes 4 and 8).
   */
  shiftBits(r: number, op: number, size: number, n: number, src = -1): void {
    const b = this.b, T = this, w = size === 8, bits = w ? 64 : 32;
    const sar = op === 7, shl = op === 4 || op === 6;
    // the count: the constant n, or (n < 0) the i64 in local ls
    const N64 = () => { if (n >= 0) b.i64(n); else b.get(T.ls); };
    const N32 = () => { if (n >= 0) b.i32(n); else b.get(T.ls).op(Op.i32WrapI64); };
    const CFSH = () => { if (n >= 0) b.i64(shl ? bits - n : n - 1); else if (shl) b.i64(bits).get(T.ls).op(Op.i64Sub); else b.get(T.ls).i64(1).op(Op.i64Sub); };
    if (w) {
      T.r64(r); b.set(T.t);
      b.get(T.t); N64(); b.op(shl ? Op.i64Shl : sar ? Op.i64ShrS : Op.i64ShrU).set(T.v);
      if (src >= 0) { b.get(T.v); T.r64(src); b.i64(bits - n).op(shl ? Op.i64ShrU : Op.i64Shl).op(Op.i64Or).set(T.v); }
      b.get(T.t); CFSH(); b.op(Op.i64ShrU).op(Op.i32WrapI64).i32(1).op(Op.i32And).set(T.c32); // CF
      b.get(T.c32);
      if (shl) b.get(T.v).i64(63).op(Op.i64ShrU).op(Op.i32WrapI64).get(T.c32).op(Op.i32Xor).i32(11).op(Op.i32Shl).op(Op.i32Or);
      else if (!sar) b.get(T.v).i64(63).op(Op.i64ShrU).get(T.v).i64(62).op(Op.i64ShrU).op(Op.i64Xor).op(Op.i32WrapI64).i32(1).op(Op.i32And).i32(11).op(Op.i32Shl).op(Op.i32Or);
      b.get(T.v).op(Op.i64Eqz).i32(6).op(Op.i32Shl).op(Op.i32Or);
      b.get(T.v).i64(63).op(Op.i64ShrU).op(Op.i32WrapI64).i32(7).op(Op.i32Shl).op(Op.i32Or);
      b.get(T.v).op(Op.i32WrapI64);
    } else {
      T.r32(r); b.op(Op.i64ExtendI32u).set(T.t);
      b.get(T.t).op(Op.i32WrapI64); N32(); b.op(shl ? Op.i32Shl : sar ? Op.i32ShrS : Op.i32ShrU).op(Op.i64ExtendI32u).set(T.v);
      if (src >= 0) { b.get(T.v); T.r32(src); b.i32(bits - n).op(shl ? Op.i32ShrU : Op.i32Shl).op(Op.i64ExtendI32u).op(Op.i64Or).set(T.v); }
      b.get(T.t); CFSH(); b.op(Op.i64ShrU).op(Op.i32WrapI64).i32(1).op(Op.i32And).set(T.c32); // CF
      b.get(T.c32);
      if (shl) b.get(T.v).i64(31).op(Op.i64ShrU).op(Op.i32WrapI64).i32(1).op(Op.i32And).get(T.c32).op(Op.i32Xor).i32(11).op(Op.i32Shl).op(Op.i32Or);
      else if (!sar) b.get(T.v).i64(31).op(Op.i64ShrU).get(T.v).i64(30).op(Op.i64ShrU).op(Op.i64Xor).op(Op.i32WrapI64).i32(1).op(Op.i32And).i32(11).op(Op.i32Shl).op(Op.i32Or);
      b.get(T.v).op(Op.i32WrapI64).op(Op.i32Eqz).i32(6).op(Op.i32Shl).op(Op.i32Or);
      b.get(T.v).i64(24).op(Op.i64ShrU).op(Op.i32WrapI64).i32(0x80).op(Op.i32And).op(Op.i32Or);
      b.get(T.v).op(Op.i32WrapI64);
    }
    // PF: even parity of the low byte; AF set
    b.i32(255).op(Op.i32And).op(Op.i32Popcnt).i32(1).op(Op.i32And).op(Op.i32Eqz).i32(2).op(Op.i32Shl).op(Op.i32Or);
    b.i32(16).op(Op.i32Or).op(Op.i64ExtendI32u).set(T.ld);
    if (w) T.set64(r, T.v); else T.set32(r, () => b.get(T.v).op(Op.i32WrapI64));
    T.known = true; T.kind = EXPLICIT; T.size = size;
    b.get(T.st).i32(EXPLICIT).mem(Op.i32Store, 2, L.S_LOP);
    b.get(T.st).get(T.ld).mem(Op.i64Store, 3, L.S_LD);
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

/** A 64-bit immediate (lo, hi) as an exact number when it is one, else a bigint. */
const imm64 = (lo: number, hi: number): number | bigint =>
  (hi === 0 || (hi === -1 && lo < 0)) ? (hi === 0 ? lo >>> 0 : lo) : (BigInt(hi | 0) << 32n) | BigInt(lo >>> 0);

/** Translate one block into a function body; null if it has nothing worth translating. */
function translateBody(block: Block, ramSize: number): { body: Body; offs: number[] } | null {
  const es = block.entries;
  const N = es.length;
  const offs: number[] = [];
  let off = 0;
  for (let i = 0; i < N; i++) { offs.push(off); off += es[i].len; }
  if (!es.some((e) => e.form !== Form.None && (e.form !== Form.ShiftImm || e.op >= 4))) return null;
  const T = new Translator(block, offs, ramSize);
  const b = T.b;
  const last = es[N - 1];
  const lastNext = offs[N - 1] + last.len;
  T.selfLoop = (last.form === Form.Jcc || last.form === Form.Jmp) && last.len > 0 && lastNext + last.disp === 0;
  // Prologue: TLB bank addresses for this privilege, r0 as an integer.
  b.get(T.st).i32(L.S_TAGS).op(Op.i32Add).get(T.user).i32(L.TAGS_USER_DELTA).op(0x6c /* i32.mul */).op(Op.i32Add).tee(T.rtag);
  b.i32(L.TAGS_WRITE_DELTA).op(Op.i32Add).set(T.wtag);
  b.get(T.r0).op(0xfc, 6).set(T.r0i);
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
    let replayed = false;
    // Replay through the helper (closure or handler, as SoftCpu.runBlock); it stores RIP and says whether to leave.
    const replay = () => {
      replayed = true;
      T.pos(); b.call(F_RP);
      b.open(Op.if); b.i32(i + 1).set(T.xc).br(T.out); b.close();
      T.known = false;
      if (isLast) b.op(Op.unreachable); // (the helper always says leave after the last instruction)
    };
    const memOp = () => { mem = true; T.ea(e, next); };
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
      case Form.MovImmMem32: memOp(); b.i64(e.imm >>> 0).set(T.w); T.store(4); break;
      case Form.Lea: {
        // base + (index << e.size) + disp modulo 2^64; e.immHi is the operand size (4: zero-extended).
        let terms = 0;
        if (e.base >= 0) { T.r64(e.base); terms++; }
        else if (e.base === -2) { b.get(T.r0i).i64(next).op(Op.i64Add); terms++; }
        if (e.index >= 0) { T.r64(e.index); if (e.size) b.i64(e.size).op(Op.i64Shl); if (terms) b.op(Op.i64Add); terms++; }
        if (e.disp !== 0 || terms === 0) { b.i64(e.disp); if (terms) b.op(Op.i64Add); }
        b.set(T.t);
        if (e.immHi === 8) T.set64(e.a, T.t); else T.set32(e.a, () => b.get(T.t).op(Op.i32WrapI64));
        break;
      }
      case Form.AluRR: case Form.AluRI: case Form.AluRM: {
        const op = e.op, size = e.size, rd = e.b;
        if (f === Form.AluRM) { memOp(); T.load(size); }
        T.regVal(rd, size); b.set(T.ld);
        if (f === Form.AluRR) T.regVal(e.a, size);
        else if (f === Form.AluRI) b.i64(size === 8 ? imm64(e.imm, e.immHi) : e.imm >>> 0);
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
        if (f === Form.AluMR) T.regVal(e.a, size); else b.i64(size === 8 ? imm64(e.imm, e.immHi) : e.imm >>> 0);
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
        b.i64(1).set(T.ls);
        b.get(T.ld).i64(1).op(dec ? Op.i64Sub : Op.i64Add);
        if (size === 4) b.i64(0xffffffffn).op(Op.i64And);
        b.set(T.lr);
        T.writeLr(r, size);
        T.produced(dec ? L_DEC : L_INC, size);
        break;
      }
      case Form.ShiftImm: {
        if (e.op === 0 || e.op === 1) {
          // ROL/ROR write CF and OF over the other flags (those before: inline when known here, else the helper)
          T.oldFlags();
          const r = e.b, n = e.imm, w = e.size === 8;
          if (w) {
            T.r64(r); b.i64(n).op(e.op === 0 ? 0x89 /* i64.rotl */ : 0x8a /* i64.rotr */).set(T.v);
            if (e.op === 0) {
              b.get(T.v).op(Op.i32WrapI64).i32(1).op(Op.i32And).tee(T.c32); // CF
              b.get(T.v).i64(63).op(Op.i64ShrU).op(Op.i32WrapI64).get(T.c32).op(Op.i32Xor);
            } else {
              b.get(T.v).i64(63).op(Op.i64ShrU).op(Op.i32WrapI64); // CF
              b.get(T.v).i64(63).op(Op.i64ShrU).get(T.v).i64(62).op(Op.i64ShrU).op(Op.i64Xor).op(Op.i32WrapI64).i32(1).op(Op.i32And);
            }
          } else {
            T.r32(r); b.i32(n).op(e.op === 0 ? 0x77 /* i32.rotl */ : 0x78 /* i32.rotr */).op(Op.i64ExtendI32u).set(T.v);
            if (e.op === 0) {
              b.get(T.v).op(Op.i32WrapI64).i32(1).op(Op.i32And).tee(T.c32);
              b.get(T.v).op(Op.i32WrapI64).i32(31).op(Op.i32ShrU).get(T.c32).op(Op.i32Xor);
            } else {
              b.get(T.v).op(Op.i32WrapI64).i32(31).op(Op.i32ShrU);
              b.get(T.v).op(Op.i32WrapI64).i32(31).op(Op.i32ShrU).get(T.v).op(Op.i32WrapI64).i32(30).op(Op.i32ShrU).op(Op.i32Xor).i32(1).op(Op.i32And);
            }
          }
          // stack: CF, OF -> flags = (old & ~(CF|OF)) | CF | OF << 11
          b.i32(11).op(Op.i32Shl).op(Op.i32Or).get(T.fl).i32(~0x801).op(Op.i32And).op(Op.i32Or).op(Op.i64ExtendI32u).set(T.ld);
          if (w) T.set64(r, T.v); else T.set32(r, () => b.get(T.v).op(Op.i32WrapI64));
          T.known = true; T.kind = EXPLICIT; T.size = e.size;
          b.get(T.st).i32(EXPLICIT).mem(Op.i32Store, 2, L.S_LOP);
          b.get(T.st).get(T.ld).mem(Op.i64Store, 3, L.S_LD);
          break;
        }
        if (e.op < 4) { replay(); break; } // RCL/RCR: replayed
        // SHL/SAL/SHR/SAR by a constant
        T.shiftBits(e.b, e.op, e.size, e.imm);
        break;
      }
      case Form.ShiftCl: {
        // SHL/SAL/SHR/SAR register by CL (D3 /4-/7; rotates replayed), as ../fast-forms.ts shiftRegCl: a masked count
        // of 0 changes no flag and only clears a 32-bit register's upper half. The flags before are materialized
        // first when known here, so both paths leave an EXPLICIT record in ld; otherwise the state area keeps the
        // record on the count-0 path and the block stops knowing the flags.
        if (e.op < 4) { replay(); break; }
        const had = T.known && T.materialize();
        T.r32(1); b.i32(e.size === 8 ? 63 : 31).op(Op.i32And).op(Op.i64ExtendI32u).tee(T.ls).op(Op.i64Eqz);
        b.open(Op.if);
        if (e.size === 4) { b.get(T.st).i32(0).mem(Op.i32Store, 2, L.S_RHI + 4 * e.b); }
        if (had) {
          b.get(T.fl).op(Op.i64ExtendI32u).set(T.ld);
          b.get(T.st).i32(EXPLICIT).mem(Op.i32Store, 2, L.S_LOP);
          b.get(T.st).get(T.ld).mem(Op.i64Store, 3, L.S_LD);
        }
        b.else();
        T.shiftBits(e.b, e.op, e.size, -1);
        b.close();
        if (had) { T.known = true; T.kind = EXPLICIT; T.size = e.size; } else T.known = false;
        break;
      }
      case Form.BtRI: case Form.BtRR: case Form.BtMI: case Form.BtMR: {
        // BT/BTS/BTR/BTC (e.op 0-3) as ../fast-forms.ts btReg/btMem: CF = the bit, the other flags kept (EXPLICIT);
        // the memory forms read, then write back (BTS/BTR/BTC) before the flags change. BtMR's signed bit offset
        // also moves the address by floor(offset / width) operands.
        const size = e.size, kind = e.op, toMem = f === Form.BtMI || f === Form.BtMR;
        const mask = size * 8 - 1;
        if (toMem) {
          memOp();
          if (f === Form.BtMR) {
            b.get(T.a);
            if (size === 8) { T.r64(e.a); b.i64(6).op(Op.i64ShrS).i64(3).op(Op.i64Shl); }
            else { T.r32(e.a); b.i32(5).op(Op.i32ShrS).op(Op.i64ExtendI32s).i64(2).op(Op.i64Shl); }
            b.op(Op.i64Add).set(T.a);
          }
          T.load(size);
        } else { T.regVal(e.b, size); b.set(T.v); }
        // bit number into t
        if (f === Form.BtRI || f === Form.BtMI) b.i64(e.imm & mask);
        else { T.r32(e.a); b.i32(mask).op(Op.i32And).op(Op.i64ExtendI32u); }
        b.set(T.t);
        T.oldFlags();
        b.get(T.v).get(T.t).op(Op.i64ShrU).op(Op.i32WrapI64).i32(1).op(Op.i32And).set(T.c32);
        if (kind !== 0) {
          b.get(T.v).i64(1).get(T.t).op(Op.i64Shl);
          if (kind === 2) b.i64(-1).op(Op.i64Xor);
          b.op(kind === 1 ? Op.i64Or : kind === 2 ? Op.i64And : Op.i64Xor).set(T.w);
          if (toMem) T.store(size);
          else if (size === 8) T.set64(e.b, T.w);
          else T.set32(e.b, () => b.get(T.w).op(Op.i32WrapI64));
        }
        b.get(T.fl).i32(~1).op(Op.i32And).get(T.c32).op(Op.i32Or);
        T.explicit(size);
        break;
      }
      case Form.Alu16RR: case Form.Alu16RI: case Form.Alu16RM: case Form.Alu16MR: case Form.Alu16MI: {
        // 16-bit ALU (66h) as ../fast-forms.ts alu16Reg/alu16Mem: the record holds the zero-extended operands and
        // the unmasked int32 result (its high half 0), as the JS form leaves it; a register destination keeps bits
        // 16-63. Conditions on a 16-bit record are not inlined: the block stops knowing the flags after it.
        const op = e.op, toMem = f === Form.Alu16MR || f === Form.Alu16MI;
        const r16 = (r: number) => { T.r32(r); b.i32(0xffff).op(Op.i32And).op(Op.i64ExtendI32u); };
        if (toMem || f === Form.Alu16RM) { memOp(); T.load(2); }
        if (toMem) b.get(T.v); else r16(e.b);
        b.set(T.ld);
        if (f === Form.Alu16RR || f === Form.Alu16MR) r16(e.a);
        else if (f === Form.Alu16RM) b.get(T.v);
        else b.i64(e.imm & 0xffff);
        b.set(T.ls);
        T.alu(op, 4);
        if (op < CMP) {
          if (toMem) { b.get(T.lr).set(T.w); T.store(2); }
          else {
            b.get(T.st);
            T.r32(e.b); b.i32(~0xffff).op(Op.i32And);
            b.get(T.lr).op(Op.i32WrapI64).i32(0xffff).op(Op.i32And).op(Op.i32Or);
            b.mem(Op.i32Store, 2, L.S_RLO + 4 * e.b);
          }
        }
        T.produced(KIND[op], 2);
        T.known = false;
        break;
      }
      case Form.MovStore16: memOp(); T.r32(e.a); b.op(Op.i64ExtendI32u).set(T.w); T.store(2); break;
      case Form.MovLoad16: {
        memOp(); T.load(2);
        b.get(T.st); T.r32(e.a); b.i32(~0xffff).op(Op.i32And).get(T.v).op(Op.i32WrapI64).op(Op.i32Or);
        b.mem(Op.i32Store, 2, L.S_RLO + 4 * e.a);
        break;
      }
      case Form.CmpxchgM: {
        // CMPXCHG memory, e.a (0F B1, no LOCK) as ../fast-forms.ts cmpxchgM: flags of CMP rAX, DEST; equal: DEST = e.a,
        // else DEST is written back with its own value and rAX = DEST (after the store, which may fault)
        const size = e.size;
        memOp(); T.load(size);
        T.regVal(0, size); b.set(T.ld);
        b.get(T.v).set(T.ls);
        T.alu(SUB, size);
        T.regVal(e.a, size); b.get(T.v); b.get(T.lr).op(Op.i64Eqz).op(Op.select).set(T.w);
        T.store(size);
        b.get(T.lr).op(Op.i64Eqz).op(Op.i32Eqz).open(Op.if);
        if (size === 8) T.set64(0, T.v); else T.set32(0, () => b.get(T.v).op(Op.i32WrapI64));
        b.close();
        T.produced(L_SUB, size);
        break;
      }
      case Form.XaddM: {
        // XADD memory, e.a (0F C1, no LOCK) as xaddM: DEST = DEST + SRC stored first, then SRC = old DEST; flags of ADD
        const size = e.size;
        memOp(); T.load(size);
        b.get(T.v).set(T.ld);
        T.regVal(e.a, size); b.set(T.ls);
        T.alu(ADD, size);
        b.get(T.lr).set(T.w);
        T.store(size);
        if (size === 8) T.set64(e.a, T.v); else T.set32(e.a, () => b.get(T.v).op(Op.i32WrapI64));
        T.produced(L_ADD, size);
        break;
      }
      case Form.ShiftDoubleRI:
        // SHLD/SHRD e.b, e.a, imm (0F A4/AC; masked count 1..bits-1): e.op 0 SHLD, 1 SHRD
        T.shiftBits(e.b, e.op === 0 ? 4 : 5, e.size, e.imm, e.a);
        break;
      case Form.Cdq: {
        // 98 CWDE/CDQE, 99 CDQ/CQO, as ../fast-forms.ts cdq
        if (e.op === 0) {
          if (e.size === 8) { b.get(T.st); T.r32(0); b.i32(31).op(Op.i32ShrS).mem(Op.i32Store, 2, L.S_RHI); }
          else T.set32(0, () => { T.r32(0); b.op(Op.i32Extend16s); });
        } else if (e.size === 8) {
          b.get(T.st).mem(Op.i32Load, 2, L.S_RHI).i32(31).op(Op.i32ShrS).set(T.c32);
          b.get(T.st).get(T.c32).mem(Op.i32Store, 2, L.S_RLO + 8);
          b.get(T.st).get(T.c32).mem(Op.i32Store, 2, L.S_RHI + 8);
        } else T.set32(2, () => { T.r32(0); b.i32(31).op(Op.i32ShrS); });
        break;
      }
      case Form.Bswap: {
        // 0F C8+r: bswap32(v) = rotl(v & 0x00ff00ff, 24) | rotl(v & 0xff00ff00, 8); 64-bit: the halves swap too
        const r = e.b;
        const bs = () => { b.tee(T.c32).i32(0x00ff00ff).op(Op.i32And).i32(24).op(0x77).get(T.c32).i32(0xff00ff00 | 0).op(Op.i32And).i32(8).op(0x77).op(Op.i32Or); };
        if (e.size === 8) {
          b.get(T.st).mem(Op.i32Load, 2, L.S_RLO + 4 * r).set(T.fl);
          b.get(T.st); b.get(T.st).mem(Op.i32Load, 2, L.S_RHI + 4 * r); bs(); b.mem(Op.i32Store, 2, L.S_RLO + 4 * r);
          b.get(T.st); b.get(T.fl); bs(); b.mem(Op.i32Store, 2, L.S_RHI + 4 * r);
        } else T.set32(r, () => { T.r32(r); bs(); });
        break;
      }
      case Form.Pushf: {
        // 9C (64-bit operand): RFLAGS from the helper (it holds IF, IOPL, ...: not in the state area), then the push;
        // the flag locals still hold the record the helper took, so the block keeps knowing the flags
        mem = true;
        b.i32(1).call(F_FL).op(Op.i64ExtendI32u).set(T.w);
        T.r64(4); b.i64(8).op(Op.i64Sub).set(T.a);
        T.store(8);
        T.set64(4, T.a);
        break;
      }
      case Form.Cli: case Form.Sti: {
        // through the helper `sy` (IF, IOPL and CPL are not in the state area); STI that set IF: leave after it
        b.i32(f === Form.Cli ? 0 : 1); T.pos(); b.call(F_SY);
        if (f === Form.Cli) b.op(Op.drop);
        else { b.open(Op.if); T.exitConst(i + 1, next); b.close(); }
        break;
      }
      case Form.PushImm: {
        // 68 / 6A: the sign-extended immediate, pushed as PUSH reg
        mem = true;
        b.i64(imm64(e.imm, e.immHi)).set(T.w);
        T.r64(4); b.i64(8).op(Op.i64Sub).set(T.a);
        T.store(8);
        T.set64(4, T.a);
        break;
      }
      case Form.SetccM: {
        // 0F 90-9F to memory: the condition, then the byte store
        memOp(); T.cond(e.op); b.op(Op.i64ExtendI32u).set(T.w); T.store(1);
        break;
      }
      case Form.Leave: {
        // C9: RBP = [RBP] (the read faults first), RSP = old RBP + 8
        mem = true;
        T.r64(5); b.set(T.a);
        T.load(8);
        b.get(T.a).i64(8).op(Op.i64Add).set(T.t);
        T.set64(4, T.t);
        T.set64(5, T.v);
        break;
      }
      case Form.Push: case Form.Call: {
        if (f === Form.Call) {
          b.get(T.r0).f64(next + e.disp).op(Op.f64Add); T.checkCanonicalF64();
          b.get(T.r0i).i64(next).op(Op.i64Add).set(T.w);
        } else { T.r64(e.a); b.set(T.w); }
        mem = true;
        T.r64(4); b.i64(8).op(Op.i64Sub).set(T.a);
        T.store(8);
        T.set64(4, T.a);
        if (f === Form.Call) T.exitStatic(i + 1, next + e.disp);
        break;
      }
      case Form.Pop: case Form.Ret: {
        mem = true;
        T.r64(4); b.set(T.a);
        T.load(8);
        if (f === Form.Ret) {
          // canonical: bits 63..47 all equal
          b.get(T.v).i64(TWO47).op(Op.i64Add).i64(48).op(Op.i64ShrU).op(Op.i64Eqz).op(Op.i32Eqz);
          b.open(Op.if); T.pos(); b.call(F_GP).op(Op.unreachable); b.close();
        }
        b.get(T.a).i64(8).op(Op.i64Add).set(T.t);
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
        else b.i64(e.imm & 0xff).set(T.ls);
        T.r8(e.b, e.bsh); b.op(Op.i64ExtendI32u).set(T.ld);
        T.alu(op, 1);
        if (op < CMP) T.set8(e.b, e.bsh, () => b.get(T.lr).op(Op.i32WrapI64));
        T.produced(KIND[op], 1);
        break;
      }
      case Form.Alu8MR: case Form.Alu8MI: {
        const op = e.op;
        memOp(); T.load(1);
        if (f === Form.Alu8MR) { T.r8(e.a, e.ash); b.op(Op.i64ExtendI32u); } else b.i64(e.imm & 0xff);
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
      case Form.Mov8MI: memOp(); b.i64(e.imm & 0xff).set(T.w); T.store(1); break;
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
      case Form.AdcRR: case Form.AdcRM: case Form.AdcRI: case Form.AdcMR: case Form.AdcMI: {
        // ADC/SBB (e.op 2/3): the carry-in is CF before (inline when known here, else the helper); the record is
        // Adc/Sbb with lazyCarry = carry-in (../fast-forms.ts adcFlags). A memory destination is stored before the
        // record is committed (the store may fault after the load).
        const sbb = e.op === 3, size = e.size, toMem = f === Form.AdcMR || f === Form.AdcMI;
        T.cond(2); b.set(T.lcy);
        if (toMem) { memOp(); T.load(size); b.get(T.v).set(T.ld); }
        else { T.regVal(e.b, size); b.set(T.ld); }
        if (f === Form.AdcRM) { memOp(); T.load(size); b.get(T.v); }
        else if (f === Form.AdcRR || f === Form.AdcMR) T.regVal(e.a, size);
        else b.i64(size === 8 ? imm64(e.imm, e.immHi) : e.imm >>> 0);
        b.set(T.ls);
        const op = sbb ? Op.i64Sub : Op.i64Add;
        b.get(T.ld).get(T.ls).op(op).get(T.lcy).op(Op.i64ExtendI32u).op(op);
        if (size === 4) b.i64(0xffffffffn).op(Op.i64And);
        b.set(T.lr);
        if (toMem) { b.get(T.lr).set(T.w); T.store(size); } else T.writeLr(e.b, size);
        T.produced(sbb ? L_SBB : L_ADC, size);
        break;
      }
      case Form.IncDecM: {
        // INC/DEC of memory (FF /0 /1): CF kept (the record's lazyCarry = CF before); the store may fault after the load
        const dec = e.op === 1, size = e.size;
        T.cond(2); b.set(T.lcy);
        memOp(); T.load(size);
        b.get(T.v).set(T.ld).i64(1).set(T.ls);
        b.get(T.v).i64(1).op(dec ? Op.i64Sub : Op.i64Add);
        if (size === 4) b.i64(0xffffffffn).op(Op.i64And);
        b.tee(T.lr).set(T.w);
        T.store(size);
        T.produced(dec ? L_DEC : L_INC, size);
        break;
      }
      case Form.ImulRR: case Form.ImulRM: case Form.ImulRRI: case Form.ImulRMI: {
        // IMUL (0F AF, 69, 6B) as ../ops/alu-muldiv.ts imulTrunc: the truncated product into e.b; CF = OF = the
        // signed product does not fit; SF ZF AF PF as before (the JS form keeps them): EXPLICIT record.
        // Operands sign-extended into ld (multiplicand) and ls (multiplier), product in lr.
        const size = e.size, w = size === 8;
        const sx = () => { if (!w) b.op(Op.i32WrapI64).op(Op.i64ExtendI32s); };
        const reg = (r: number) => { if (w) T.r64(r); else { T.r32(r); b.op(Op.i64ExtendI32s); } };
        if (f === Form.ImulRM || f === Form.ImulRMI) { memOp(); T.load(size); }
        T.oldFlags(); // (before ld/ls, which may hold the record it reads)
        if (f === Form.ImulRR) { reg(e.b); b.set(T.ld); reg(e.a); b.set(T.ls); }
        else if (f === Form.ImulRM) { reg(e.b); b.set(T.ld); b.get(T.v); sx(); b.set(T.ls); }
        else if (f === Form.ImulRRI) { reg(e.a); b.set(T.ld); b.i64(imm64(e.imm, e.immHi)).set(T.ls); }
        else { b.get(T.v); sx(); b.set(T.ld); b.i64(imm64(e.imm, e.immHi)).set(T.ls); }
        b.get(T.ld).get(T.ls).op(0x7e /* i64.mul */).set(T.lr);
        if (!w) {
          b.get(T.lr).get(T.lr).op(Op.i32WrapI64).op(Op.i64ExtendI32s).op(Op.i64Ne).set(T.c32);
        } else {
          // overflow iff a != 0 and p / a != b (a = -1: iff b = -2^63, whose division would trap)
          b.i32(0).set(T.c32);
          b.get(T.ld).op(Op.i64Eqz).op(Op.i32Eqz).open(Op.if);
          b.get(T.ld).i64(-1).op(Op.i64Eq).open(Op.if);
          b.get(T.ls).i64(-(2n ** 63n)).op(Op.i64Eq).set(T.c32);
          b.else();
          b.get(T.lr).get(T.ld).op(0x7f /* i64.div_s */).get(T.ls).op(Op.i64Ne).set(T.c32);
          b.close();
          b.close();
        }
        if (w) T.set64(e.b, T.lr); else T.set32(e.b, () => b.get(T.lr).op(Op.i32WrapI64));
        b.get(T.fl).i32(~0x801).op(Op.i32And).get(T.c32).i32(0x801).op(0x6c /* i32.mul */).op(Op.i32Or);
        T.explicit(size);
        break;
      }
      case Form.PushM: {
        // PUSH memory64 (FF /6): the read (at the address before RSP moves), then the push
        memOp(); T.load(8);
        b.get(T.v).set(T.w);
        T.r64(4); b.i64(8).op(Op.i64Sub).set(T.a);
        T.store(8);
        T.set64(4, T.a);
        break;
      }
      case Form.MovsxR8: case Form.MovsxR16: case Form.MovsxM: {
        // MOVSX (0F BE/BF) into e.a of e.op bytes (4: zero-extended to 64 bits), as ../fast-forms.ts movsxTo
        if (f === Form.MovsxM) { memOp(); T.load(e.size); b.get(T.v).op(Op.i32WrapI64); }
        else { T.r32(e.b); if (f === Form.MovsxR8 && e.imm) b.i32(e.imm).op(Op.i32ShrU); }
        b.op(f === Form.MovsxR16 || (f === Form.MovsxM && e.size === 2) ? Op.i32Extend16s : Op.i32Extend8s).set(T.c32);
        if (e.op === 8) { b.get(T.c32).op(Op.i64ExtendI32s).set(T.t); T.set64(e.a, T.t); }
        else T.set32(e.a, () => b.get(T.c32));
        break;
      }
      case Form.NotNegR: {
        // NOT (no flags) / NEG (record Sub 0 - v), F7 /2 /3
        const r = e.b, size = e.size;
        T.regVal(r, size); b.set(T.ls);
        if (e.op === 0) b.get(T.ls).i64(-1).op(Op.i64Xor);
        else b.i64(0).get(T.ls).op(Op.i64Sub);
        if (size === 4) b.i64(0xffffffffn).op(Op.i64And);
        b.set(T.lr);
        T.writeLr(r, size);
        if (e.op === 1) { b.i64(0).set(T.ld); T.produced(L_SUB, size); }
        break;
      }
      case Form.CallInd: case Form.JmpInd: {
        // Indirect near CALL/JMP (FF /2 /4, always a block's last): the target (register, or 8 bytes of memory),
        // #GP(0) unless canonical, then for CALL the push of the return address; RIP leaves through S_RIP.
        if (e.base === -3) { T.r64(e.b); b.set(T.v); } else { memOp(); T.load(8); }
        b.get(T.v).i64(TWO47).op(Op.i64Add).i64(48).op(Op.i64ShrU).op(Op.i64Eqz).op(Op.i32Eqz);
        b.open(Op.if); T.pos(); b.call(F_GP).op(Op.unreachable); b.close();
        if (f === Form.CallInd) {
          mem = true;
          b.get(T.r0i).i64(next).op(Op.i64Add).set(T.w);
          T.r64(4); b.i64(8).op(Op.i64Sub).set(T.a);
          T.store(8);
          T.set64(4, T.a);
        }
        b.get(T.st).get(T.v).op(Op.f64ConvertI64s).mem(Op.f64Store, 3, L.S_RIP);
        b.i32(i + 1).set(T.xc).br(T.out);
        break;
      }
      case Form.Jcc: case Form.Jmp: {
        const target = next + e.disp;
        if (f === Form.Jcc) { T.cond(e.a); b.open(Op.if); }
        if (target !== 0) { b.get(T.r0).f64(target).op(Op.f64Add); T.checkCanonicalF64(); }
        if (T.selfLoop && isLast) {
          b.get(T.n).i32(N).op(Op.i32Add).tee(T.n).i32(N).op(Op.i32Add).tee(T.c32).get(T.left).op(Op.i32LeS);
          b.get(T.c32).i32(LOOP_LIMIT).op(Op.i32LeS).op(Op.i32And).brIf(T.top);
          T.exitConst(0, 0);
        } else T.exitStatic(i + 1, target);
        if (f === Form.Jcc) { b.close(); T.exitStatic(i + 1, next); }
        break;
      }
      default: replay();
    }
    if (mem && !isLast) T.exitIfSlow(i + 1, next);
    if (isLast && !replayed && f !== Form.Jcc && f !== Form.Jmp && f !== Form.Call && f !== Form.Ret && f !== Form.CallInd && f !== Form.JmpInd) {
      T.exitStatic(i + 1, next);
    }
  }
  if (T.selfLoop) b.close();
  b.close();
  b.get(T.n).get(T.xc).op(Op.i32Add);
  return { body: b, offs };
}

/** One module holding the given block functions, exported as f0, f1, ... */
function buildModule(bodies: Body[]): Uint8Array<ArrayBuffer> {
  const m = new ModuleBuilder();
  m.importMemory('e', 'm');
  m.importFunc('e', 'rd', m.type([F64, I32, I32], [I32]));
  m.importFunc('e', 'wr', m.type([F64, I32, I32, I32, I32], []));
  m.importFunc('e', 'rp', m.type([I32], [I32]));
  m.importFunc('e', 'cc', m.type([I32], [I32]));
  m.importFunc('e', 'gp', m.type([I32], []));
  m.importFunc('e', 'fl', m.type([I32], [I32]));
  m.importFunc('e', 'sy', m.type([I32, I32], [I32]));
  const ldT = m.type([I32, I32, I64, I32], [I64]);
  const stT = m.type([I32, I32, I64, I64, I32], []);
  for (const n of [1, 2, 4, 8]) m.importFunc('e', 'ld' + n, ldT);
  for (const n of [1, 2, 4, 8]) m.importFunc('e', 'st' + n, stT);
  const t = m.type([I32, F64, I32, I32], [I32]);
  bodies.forEach((b, i) => m.func(t, b, 'f' + i));
  return m.encode();
}

/** The module of one block (tests and measurements). */
export function buildBlock(block: Block, ramSize: number): { bytes: Uint8Array<ArrayBuffer>; offs: number[] } | null {
  const t = translateBody(block, ramSize);
  return t === null ? null : { bytes: buildModule([t.body]), offs: t.offs };
}

/**
 * The dispatcher: runs the block at function-table index `idx`, then, while the block left without an event
 * (S_CHAIN still 1), the budget allows and the next RIP's page is in the fetch TLB (this privilege) and holds a
 * translated block of the current page generation that fits the budget, runs that one too, without returning to
 * JavaScript. (run, like SoftCpu.runChain, stops after CHAIN_LIMIT instructions.)
 * (st, r0, left, user, idx) -> instructions executed; S_RIP holds the final RIP.
 */
function buildDispatcher(ramSize: number): Uint8Array<ArrayBuffer> {
  const m = new ModuleBuilder();
  m.importMemory('e', 'm');
  m.importTable('e', 't');
  const blockType = m.type([I32, F64, I32, I32], [I32]);
  const b = new Body(5);
  const st = 0, r0 = 1, left = 2, user = 3, idx = 4;
  const n = b.local(I32), limit = b.local(I32), ti = b.local(I32), pa = b.local(I32), e = b.local(I32);
  const ripi = b.local(I64), vpn = b.local(I64), p = b.local(I64);
  b.get(left).i32(CHAIN_LIMIT).get(left).i32(CHAIN_LIMIT).op(Op.i32LtS).op(Op.select).set(limit);
  const out = b.open(Op.block);
  const top = b.open(Op.loop);
  b.get(st).i32(1).mem(Op.i32Store, 2, L.S_CHAIN);
  b.get(st).get(n).mem(Op.i32Store, 2, L.S_NBASE);
  b.get(st).get(r0).mem(Op.f64Store, 3, L.S_R0);
  b.get(st).get(idx).mem(Op.i32Store, 2, L.S_BLK);
  b.get(st).get(r0).get(left).get(n).op(Op.i32Sub).get(user).get(idx);
  b.op(0x11, blockType).op(0x00); // call_indirect type, table 0
  b.get(n).op(Op.i32Add).set(n);
  // (S_NEXT is taken and cleared before anything can leave: a stale one would name the wrong block)
  b.get(st).mem(Op.i32Load, 2, L.S_NEXT).set(e);
  b.get(st).i32(0).mem(Op.i32Store, 2, L.S_NEXT);
  b.get(n).get(limit).op(Op.i32GeS).brIf(out);
  b.get(st).mem(Op.i32Load, 2, L.S_CHAIN).op(Op.i32Eqz).brIf(out);
  // the block named its successor's dispatch entry (exitStatic): no TLB probe, no lookup
  const probe = b.open(Op.block);
  b.get(e).op(Op.i32Eqz).brIf(probe);
  b.get(st).mem(Op.f64Load, 3, L.S_RIP).set(r0);
  b.get(e).mem(Op.i32Load, 2, 12).get(left).get(n).op(Op.i32Sub).op(Op.i32GtS).brIf(out);
  b.get(e).mem(Op.i32Load, 2, 8).tee(idx).op(Op.i32Eqz).brIf(out);
  b.get(st).get(st).mem(Op.i32Load, 2, L.S_DIRECT).i32(1).op(Op.i32Add).mem(Op.i32Store, 2, L.S_DIRECT);
  b.br(top);
  b.close();
  // next RIP -> physical address through the fetch TLB bank of this privilege
  b.get(st).mem(Op.f64Load, 3, L.S_RIP).tee(r0).op(0xfc, 6).tee(ripi);
  b.i64(12).op(Op.i64ShrS).tee(vpn).op(Op.i32WrapI64).i32(0xfff).op(Op.i32And).i32(3).op(Op.i32Shl).set(ti);
  b.get(st).get(ti).op(Op.i32Add).get(user).i32(L.TAGS_USER_DELTA).op(0x6c).op(Op.i32Add).mem(Op.f64Load, 3, L.S_TAGS + 2 * L.TAGS_WRITE_DELTA);
  b.get(vpn).op(Op.f64ConvertI64s).op(Op.f64Ne).brIf(out);
  b.get(st).get(ti).op(Op.i32Add).mem(Op.f64Load, 3, L.S_PHYS).op(0xfc, 7);
  b.get(ripi).i64(0xfffn).op(Op.i64And).op(Op.i64Add).tee(p).i64(ramSize).op(Op.i64GeU).brIf(out);
  b.get(p).op(Op.i32WrapI64).set(pa);
  // the entry of that address
  b.get(pa).get(pa).i32(12).op(Op.i32ShrU).op(Op.i32Xor).i32((1 << L.DISPATCH_BITS) - 1).op(Op.i32And).i32(4).op(Op.i32Shl).set(e);
  b.get(e).mem(Op.i32Load, 2, L.DISPATCH).get(pa).op(Op.i32Ne).brIf(out);
  b.get(e).mem(Op.i32Load, 2, L.DISPATCH + 4);
  b.get(pa).i32(12).op(Op.i32ShrU).i32(2).op(Op.i32Shl).mem(Op.i32Load, 2, L.PAGE_GEN).op(Op.i32Ne).brIf(out);
  b.get(e).mem(Op.i32Load, 2, L.DISPATCH + 12).get(left).get(n).op(Op.i32Sub).op(Op.i32GtS).brIf(out);
  b.get(e).mem(Op.i32Load, 2, L.DISPATCH + 8).tee(idx).op(Op.i32Eqz).brIf(out);
  b.get(st).get(st).mem(Op.i32Load, 2, L.S_CHAINS).i32(1).op(Op.i32Add).mem(Op.i32Store, 2, L.S_CHAINS);
  b.br(top);
  b.close();
  b.close();
  b.get(n);
  m.func(m.type([I32, F64, I32, I32, I32], [I32]), b, 'run');
  return m.encode();
}

/**
 * The memory library: ld1/2/4/8 (st, tag bank address, lin, pos) -> i64 zero-extended and st1/2/4/8 (st, tag bank,
 * lin, value, pos). The inline TLB probe (tag compare, RAM bounds, for stores the code-page byte) with a direct
 * access to guest RAM on a hit, else the rd/wr helper (SoftCpu.readLin/writeLin, which may throw the fault). Shared
 * by every block: translated code stays small and these few hot functions get V8's optimizing tier.
 */
function buildMemlib(ramSize: number): Uint8Array<ArrayBuffer> {
  const m = new ModuleBuilder();
  m.importMemory('e', 'm');
  m.importFunc('e', 'rd', m.type([F64, I32, I32], [I32]));
  m.importFunc('e', 'wr', m.type([F64, I32, I32, I32, I32], []));
  const ldT = m.type([I32, I32, I64, I32], [I64]);
  const stT = m.type([I32, I32, I64, I64, I32], []);
  for (const write of [false, true]) {
    for (const size of [1, 2, 4, 8]) {
      const b = new Body(write ? 5 : 4);
      const st = 0, tag = 1, a = 2, w = 3, pos = write ? 4 : 3;
      const off = b.local(I32), ti = b.local(I32), vpn = b.local(I64), p = b.local(I64);
      const slow = b.open(Op.block);
      b.get(a).op(Op.i32WrapI64).i32(0xfff).op(Op.i32And).tee(off).i32(4096 - size).op(Op.i32GtU).brIf(slow);
      b.get(a).i64(12).op(Op.i64ShrS).tee(vpn).op(Op.i32WrapI64).i32(0xfff).op(Op.i32And).i32(3).op(Op.i32Shl).set(ti);
      b.get(tag).get(ti).op(Op.i32Add).mem(Op.f64Load, 3, 0);
      b.get(vpn).op(Op.f64ConvertI64s).op(Op.f64Ne).brIf(slow);
      b.get(st).get(ti).op(Op.i32Add).mem(Op.f64Load, 3, L.S_PHYS).op(0xfc, 7);
      b.get(off).op(Op.i64ExtendI32u).op(Op.i64Add).tee(p);
      b.i64(ramSize - size).op(Op.i64GtU).brIf(slow);
      if (write) {
        b.get(p).i64(12).op(Op.i64ShrU).op(Op.i32WrapI64).mem(Op.i32Load8u, 0, L.CODE_PAGES).brIf(slow);
        b.get(p).op(Op.i32WrapI64).get(w);
        b.mem(size === 1 ? Op.i64Store8 : size === 2 ? Op.i64Store16 : size === 4 ? Op.i64Store32 : Op.i64Store, 0, WASM_RAM_OFFSET);
        b.op(Op.return);
      } else {
        b.get(p).op(Op.i32WrapI64);
        b.mem(size === 1 ? Op.i64Load8u : size === 2 ? Op.i64Load16u : size === 4 ? Op.i64Load32u : Op.i64Load, 0, WASM_RAM_OFFSET);
        b.op(Op.return);
      }
      b.close();
      b.get(a).op(Op.f64ConvertI64s).i32(size);
      if (write) {
        b.get(w).op(Op.i32WrapI64).get(w).i64(32).op(Op.i64ShrU).op(Op.i32WrapI64).get(pos).call(1);
      } else {
        b.get(pos).call(0).op(Op.i64ExtendI32u);
        if (size === 8) b.get(st).mem(Op.i64Load32u, 2, L.S_HI).i64(32).op(Op.i64Shl).op(Op.i64Or);
      }
      m.func(write ? stT : ldT, b, (write ? 'st' : 'ld') + size);
    }
  }
  return m.encode();
}

/** The helper trampolines: each imported JavaScript helper re-exported as a wasm function of the same type. */
function buildTrampolines(): Uint8Array<ArrayBuffer> {
  const m = new ModuleBuilder();
  const sigs: [string, number[], number[]][] = [
    ['rd', [F64, I32, I32], [I32]], ['wr', [F64, I32, I32, I32, I32], []], ['rp', [I32], [I32]], ['cc', [I32], [I32]], ['gp', [I32], []],
    ['fl', [I32], [I32]], ['sy', [I32, I32], [I32]],
  ];
  const types = sigs.map(([, p, r]) => m.type(p, r));
  sigs.forEach(([name], i) => m.importFunc('e', name, types[i]));
  sigs.forEach(([name, params], i) => {
    const b = new Body(params.length);
    for (let k = 0; k < params.length; k++) b.get(k);
    b.call(i);
    m.func(types[i], b, name);
  });
  return m.encode();
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
  /** Blocks translated to wasm, and the modules holding them. */
  compiled: number;
  modules: number;
  /** Bytes of wasm generated and milliseconds spent building + compiling modules. */
  bytes: number;
  compileMs: number;
  /** Of compileMs, the part spent generating the bytes (the rest is V8's compile and instantiation). */
  buildMs: number;
  /** Calls into translated code. */
  calls: number;
  /** Calls from translated code into the helpers, by kind. */
  replays: number;
  conds: number;
  slow: number;
  /** Chained block entries whose dispatch entry the previous block named (exitStatic). */
  direct: number;
  /** Modules compiled in the background, of those compiled synchronously after ASYNC_WAIT, blocks not installed because their page was written meanwhile. */
  asyncModules: number;
  syncFallbacks: number;
  stale: number;
  /** Dead translations whose function-table index was reclaimed. */
  freed: number;
}

/** The wasm translator of one GuestMemory (shared by its vCPUs, which run on one thread). */
export class WasmEngine {
  readonly i32: Int32Array;
  readonly f64: Float64Array;
  private imports: WebAssembly.Imports;
  readonly stats: WasmStats = { compiled: 0, modules: 0, bytes: 0, compileMs: 0, buildMs: 0, calls: 0, replays: 0, conds: 0, slow: 0, direct: 0, asyncModules: 0, syncFallbacks: 0, stale: 0, freed: 0 };
  private nextState = 0;
  /** Translated functions by index (index 0 unused: an empty dispatch entry), and their blocks. */
  private readonly table: WebAssembly.Table;
  private readonly blocks: (Block | null)[] = [null];
  private readonly dispatch: (st: number, r0: number, left: number, user: number, idx: number) => number;
  // The call in progress (helpers run inside it).
  private cur: SoftCpu | null = null;
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
          this.stats.slow++;
          const c = this.cur!;
          const v = c.readLin(lin, size);
          if (size === 8) this.i32[(this.curSt + L.S_HI) >> 2] = c.hi;
          if (c.eventPending || c.stopRequested) this.i32[(this.curSt + L.S_CHAIN) >> 2] = 0;
          return v;
        },
        wr: (lin: number, size: number, lo: number, hi: number, pos: number): void => {
          this.curPos = pos;
          this.stats.slow++;
          const c = this.cur!;
          c.writeLin(lin, size, lo, hi);
          if (c.eventPending || c.stopRequested) this.i32[(this.curSt + L.S_CHAIN) >> 2] = 0;
        },
        rp: (pos: number): number => this.replay(pos),
        cc: (cc: number): number => {
          this.stats.conds++;
          const c = this.cur!;
          this.takeFlags(c);
          return c.condition(cc) ? 1 : 0;
        },
        fl: (all: number): number => {
          // all = 0: the arithmetic flags before an instruction that keeps some of them (IMUL, BT, ROL), when the
          // block does not know them; 1: RFLAGS as PUSHF pushes it (VM and RF cleared, ../fast-forms.ts pushf)
          this.stats.conds++;
          const c = this.cur!;
          this.takeFlags(c);
          return all ? c.getFlags() & ~(VM | RF) : (c.settleFlags(), c.flags & ARITH);
        },
        sy: (kind: number, pos: number): number => {
          // CLI (kind 0) / STI (1) as ../fast-forms.ts cli/sti: #GP(0) when CPL > IOPL; STI that sets IF blocks
          // interrupts for one more instruction and asks for an event check: the chain stops, the block leaves
          // (returns 1). IF and IOPL live in SoftCpu.flags whatever the lazy record holds.
          this.curPos = pos;
          this.stats.conds++;
          const c = this.cur!;
          if (c.cpl > ((c.flags >> 12) & 3)) c.gp(0);
          if (kind === 0) { c.flags &= ~IF; return 0; }
          if (c.flags & IF) return 0;
          c.flags |= IF;
          c.interruptShadow = true;
          c.eventPending = true;
          this.i32[(this.curSt + L.S_CHAIN) >> 2] = 0;
          return 1;
        },
        gp: (pos: number): void => {
          this.curPos = pos;
          this.cur!.gp(0);
        },
      },
    };
    // Block modules import the helpers as wasm functions (thin trampolines of one module that imports the JavaScript
    // ones): a wasm-to-wasm import needs no per-module wrapper code, which made instantiating a block module with
    // JavaScript imports cost about a millisecond.
    const helpers = new WebAssembly.Instance(new WebAssembly.Module(buildTrampolines()), this.imports);
    const memlib = new WebAssembly.Instance(new WebAssembly.Module(buildMemlib(ramSize)), { e: { m: memory, ...helpers.exports } });
    this.table = new WebAssembly.Table({ element: 'anyfunc', initial: 1024 });
    const d = new WebAssembly.Instance(new WebAssembly.Module(buildDispatcher(ramSize)), { e: { m: memory, t: this.table } });
    this.dispatch = d.exports.run as WasmEngine['dispatch'];
    this.imports = { e: { m: memory, ...helpers.exports, ...memlib.exports } };
  }

  /** For `ringzero run --stats`. */
  statsLine(): string {
    const s = this.stats;
    return `${s.compiled} blocks translated in ${s.modules} modules (${(s.bytes / 1024).toFixed(0)} KiB of code, ${s.compileMs.toFixed(0)} ms on the main thread to build (${s.buildMs.toFixed(0)}) and compile; ` +
      `${s.asyncModules} compiled in the background, ${s.syncFallbacks} of them finished synchronously, ${s.stale} blocks stale when ready, ${s.freed} dead ones freed), ` +
      `${s.calls} calls, ${s.direct} direct block-to-block entries, ${s.replays + s.conds + s.slow} helper calls (${s.replays} replays, ${s.conds} conditions, ${s.slow} slow accesses)` +
      (PROFILE ? '; replayed opcodes: ' + [...replayed].sort((a, b) => b[1] - a[1]).slice(0, 16).map(([o, n]) => `${o.toString(16)}:${n}`).join(' ') : '');
  }

  /** A state area for a new vCPU (byte offset), or -1 when there is no room. */
  allocState(): number {
    if (this.nextState >= L.MAX_WASM_CPUS) return -1;
    return L.STATE_BASE + L.STATE_STRIDE * this.nextState++;
  }

  private replay(pos: number): number {
    this.curPos = pos;
    this.stats.replays++;
    const c = this.cur!, st = this.curSt;
    const b = this.blocks[this.i32[(st + L.S_BLK) >> 2]]!;
    const n = this.i32[(st + L.S_NBASE) >> 2] + (pos >> 5), ix = pos & 31;
    const e = b.entries[ix];
    if (PROFILE) replayed.set(e.opcode, (replayed.get(e.opcode) ?? 0) + 1);
    const rip = this.f64[(st + L.S_R0) >> 3] + b.wasm!.offs[ix];
    this.takeFlags(c);
    c.ripStart = rip;
    c.instructions = this.curI0 + n + ix + 1;
    const cpl = c.cpl;
    replayEntry(c, e, rip);
    this.f64[(st + L.S_RIP) >> 3] = c.rip;
    // The chain stops (back to JavaScript) after an event, a halt or stop, or a privilege or mode change (SYSCALL,
    // SYSRET, IRET: the dispatcher's `user` and its 64-bit-only dispatch table hold for the privilege and mode it
    // was called with). Otherwise a replayed instruction that ends the block or changes RIP's course (an indirect
    // jump or call, RET imm, a REP string instruction, ...) only ends this block: the dispatcher goes on from the
    // RIP it left, through the fetch TLB (which a CR3 or paging change flushed) as after any other block.
    if (c.eventPending || c.stopRequested || c.halted || c.cpl !== cpl || !c.mode64) {
      this.i32[(st + L.S_CHAIN) >> 2] = 0;
      return 1;
    }
    return ix === b.n - 1 || e.len === 0 || c.rip !== rip + e.len ? 1 : 0;
  }

  /**
   * Where the flag record is during a call: S_LOP = -1 (NO_RECORD) means "in the CPU's fields" (set before the call
   * and after a helper took it); a translated producer overwrites it with its kind, the record being in the state
   * area from then on. So a call costs one store and one load when the block produces no flags, and the record
   * moves back to the CPU only when translated code produced one.
   */
  private takeFlags(c: SoftCpu): void {
    const I = this.i32, lop = (c.wasmState + L.S_LOP) >> 2;
    const k = I[lop];
    if (k === NO_RECORD) return;
    if (k === EXPLICIT) c.setArith(I[(c.wasmState + L.S_LD) >> 2]);
    else this.syncToCpu(c);
    I[lop] = NO_RECORD;
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

  /** Hot blocks waiting to be translated together (one module per batch: a module costs ~0.3 ms of its own). */
  private pending: Block[] = [];

  /**
   * Translate the pending blocks into one module and install them (table, dispatch entries, Block.wasm). The module
   * is compiled by WebAssembly.compile, on V8's background threads, and installed when that resolves (the run loop
   * yields to the event loop every few milliseconds, machine.ts); meanwhile its blocks (runs = IN_FLIGHT) keep being
   * replayed. A block whose page was written meanwhile is not installed (its generation is stale). When the event
   * loop does not turn (a caller running the CPU synchronously: tests, bench/cpu) and one of the batch's blocks has
   * been replayed ASYNC_WAIT times, the module is compiled synchronously instead. Synchronous from the start with
   * RINGZERO_WASM_ASYNC=0 or a translation threshold of 0 (tests that want translated code at the first replay).
   */
  flush(c: SoftCpu): void {
    const blocks = this.pending;
    this.pending = [];
    const t0 = performance.now();
    const bodies: Body[] = [], done: { block: Block; offs: number[] }[] = [];
    for (const block of blocks) {
      block.runs = -1;
      // (a block whose page was written while it waited in the queue is dead: skip it)
      if (block.gen !== c.codeCache.pageGen[block.pa >>> 12]) continue;
      try {
        const t = translateBody(block, this.ramSize);
        if (t !== null) { bodies.push(t.body); done.push({ block, offs: t.offs }); }
      } catch (err) {
        this.report(block, err);
      }
    }
    if (bodies.length === 0) return;
    let bytes: Uint8Array<ArrayBuffer>;
    try {
      bytes = buildModule(bodies);
    } catch (err) {
      this.report(blocks[0], err);
      return;
    }
    const t1 = performance.now();
    this.stats.buildMs += t1 - t0;
    this.stats.compileMs += t1 - t0;
    this.stats.bytes += bytes.length;
    const batch: Batch = { bytes, done, cache: c.codeCache, installed: false, waits: 0 };
    if (!ASYNC || Math.min(WASM_HOT, JIT_THRESHOLD) === 0) { this.compileNow(batch); return; }
    for (const d of done) { d.block.runs = IN_FLIGHT; this.inflight.set(d.block, batch); }
    this.stats.asyncModules++;
    WebAssembly.compile(bytes).then((mod) => { if (!batch.installed) this.install(batch, mod); },
      (err) => { if (!batch.installed) { this.release(batch); this.report(done[0].block, err); } });
  }

  /** Blocks of modules being compiled in the background, and the batch of each. */
  private readonly inflight = new Map<Block, Batch>();

  private compileNow(batch: Batch): void {
    const t0 = performance.now();
    try {
      this.install(batch, new WebAssembly.Module(batch.bytes));
    } catch (err) {
      this.release(batch);
      this.report(batch.done[0].block, err);
    } finally {
      this.stats.compileMs += performance.now() - t0;
    }
  }

  /** Give up on a batch: its blocks are replayed for good. */
  private release(batch: Batch): void {
    batch.installed = true;
    for (const { block } of batch.done) { block.runs = -1; this.inflight.delete(block); }
  }

  /** Function-table indices of dead translations, for reuse. */
  private free: number[] = [];

  /**
   * A function-table index for a new translation: a free one; else a new one while the table has room; else the
   * indices of translations whose page was written since (dead: every lookup compares the page generation first,
   * so nothing can enter them again) are reclaimed: their table entries, dispatch entries and Block.wasm are
   * dropped, so their modules can be collected; the table grows only when everything in it is alive.
   */
  private allocIndex(cache: CodeCache): number {
    let idx = this.free.pop();
    if (idx !== undefined) return idx;
    if (this.blocks.length < this.table.length) { this.blocks.push(null); return this.blocks.length - 1; }
    const gen = cache.pageGen, I = this.i32;
    for (let i = 1; i < this.blocks.length; i++) {
      const b = this.blocks[i];
      if (b === null || b.gen === gen[b.pa >>> 12]) continue;
      this.blocks[i] = null;
      this.table.set(i, null);
      const e = (L.DISPATCH >> 2) + (((b.pa ^ (b.pa >>> 12)) & ((1 << L.DISPATCH_BITS) - 1)) << 2);
      if (I[e + 2] === i) { I[e] = 0; I[e + 1] = 0; I[e + 2] = 0; I[e + 3] = 0; }
      b.wasm = null;
      const key = b.pa * 16 + b.mode;
      if (cache.translated.get(key) === b) cache.translated.delete(key);
      this.free.push(i);
      this.stats.freed++;
    }
    // (keep a quarter of the table free at least: a sweep per allocation when nearly everything is alive would cost)
    if (this.free.length < this.table.length >> 2) this.table.grow(this.table.length);
    idx = this.free.pop();
    if (idx !== undefined) return idx;
    this.blocks.push(null);
    return this.blocks.length - 1;
  }

  /** Live translations (function-table entries in use) and the table's size (tests, statistics). */
  tableUse(): { live: number; size: number } {
    return { live: this.blocks.length - 1 - this.free.length, size: this.table.length };
  }

  private install(batch: Batch, mod: WebAssembly.Module): void {
    const t0 = performance.now();
    this.release(batch);
    const inst = new WebAssembly.Instance(mod, this.imports);
    this.stats.modules++;
    const cache = batch.cache;
    batch.done.forEach(({ block, offs }, i) => {
      if (block.gen !== cache.pageGen[block.pa >>> 12]) { this.stats.stale++; return; }
      const fn = inst.exports['f' + i] as WasmCode['fn'];
      const idx = this.allocIndex(cache);
      this.table.set(idx, fn as unknown as WebAssembly.ExportValue);
      this.blocks[idx] = block;
      // The dispatch entry of its address (direct-mapped: the newest translation of a slot wins).
      const pa = block.pa;
      const e = (L.DISPATCH >> 2) + (((pa ^ (pa >>> 12)) & ((1 << L.DISPATCH_BITS) - 1)) << 2);
      this.i32[e] = pa; this.i32[e + 1] = block.gen; this.i32[e + 2] = idx; this.i32[e + 3] = block.n;
      block.wasm = { fn, offs, idx };
      this.stats.compiled++;
      cache.stats.compiled++;
      cache.translated.set(block.pa * 16 + block.mode, block);
    });
    this.stats.compileMs += performance.now() - t0;
  }

  private report(block: Block, err: unknown): void {
    if (reported) return;
    reported = true;
    process.stderr.write(`ringzero: wasm JIT: could not translate a block at ${block.pa.toString(16)}: ${(err as Error).message}\n`);
  }

  /**
   * Run block `b` (at most `room` instructions) in translated code, queueing it for translation once it is hot;
   * otherwise replay it. Returns the instructions executed; faults propagate as from SoftCpu.runBlock.
   */
  exec(c: SoftCpu, b: Block, room: number): number {
    const w = b.wasm;
    if (w === null) {
      if (b.runs >= 0 && b.mode === 8) {
        const hot = Math.min(WASM_HOT, JIT_THRESHOLD);
        const r = ++b.runs;
        if (r === hot + 1) this.pending.push(b);
        // A batch is translated when it is full, or when one of its blocks keeps running meanwhile.
        if (r > hot && (this.pending.length >= (hot === 0 ? 1 : WASM_BATCH) || r > hot + WASM_BATCH_WAIT)) this.flush(c);
        if (b.wasm !== null && b.n <= room) return this.run(c, b.wasm, room);
      } else if (b.runs === IN_FLIGHT) {
        const batch = this.inflight.get(b);
        if (batch !== undefined && ++batch.waits > ASYNC_WAIT) {
          this.stats.syncFallbacks++;
          this.compileNow(batch);
          if (b.wasm !== null && b.n <= room) return this.run(c, b.wasm, room);
        }
      }
      return c.runBlock(b, room);
    }
    if (b.n > room) return c.runBlock(b, room);
    return this.run(c, w, room);
  }

  private run(c: SoftCpu, w: WasmCode, room: number): number {
    const st = c.wasmState, I = this.i32;
    I[(st + L.S_LOP) >> 2] = NO_RECORD;
    const r0 = c.rip, I0 = c.instructions;
    this.cur = c; this.curI0 = I0; this.curPos = 0; this.curSt = st;
    this.stats.calls++;
    let k: number;
    try {
      k = this.dispatch(st, r0, room, c.cpl === 3 ? 1 : 0, w.idx);
    } catch (err) {
      if (err === CPU_FAULT) {
        // The faulting block is the dispatcher's current one; nbase instructions ran before it.
        const b = this.blocks[I[(st + L.S_BLK) >> 2]]!;
        const n = I[(st + L.S_NBASE) >> 2] + (this.curPos >> 5), ix = this.curPos & 31;
        c.instructions = I0 + n + ix + 1;
        c.ripStart = this.f64[(st + L.S_R0) >> 3] + b.wasm!.offs[ix];
        c.blockInstructions += n + ix;
        c.jitInstructions += n + ix;
      }
      this.takeFlags(c);
      this.cur = null;
      throw err;
    }
    this.takeFlags(c);
    this.cur = null;
    const chains = I[(st + L.S_CHAINS) >> 2], direct = I[(st + L.S_DIRECT) >> 2];
    if (chains !== 0 || direct !== 0) {
      c.codeCache.stats.chainHits += chains + direct; this.stats.direct += direct;
      I[(st + L.S_CHAINS) >> 2] = 0; I[(st + L.S_DIRECT) >> 2] = 0;
    }
    c.rip = this.f64[(st + L.S_RIP) >> 3];
    c.instructions = I0 + k;
    c.blockInstructions += k;
    c.jitInstructions += k;
    return k;
  }
}

let reported = false;
/** RINGZERO_WASM_PROFILE=1: count replayed instructions by opcode (shown by --stats). */
const PROFILE = process.env.RINGZERO_WASM_PROFILE === '1';
const replayed = new Map<number, number>();
const NO_RECORD = -1;

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
