// WebAssembly code for the SSE/SSE2 fast forms of ../fast-forms.ts (Form.SseMovRR .. Form.SseMovqXX): the moves and
// integer operations of glibc's SSE2 string functions (strlen, strchr, memchr, memset, memcpy), which translated
// blocks used to replay one by one through the `rp` helper (~150 ns each).
//
// The XMM registers live in the vCPU's state area (./layout.ts S_XMM, 16 bytes each: SoftCpu.xmm is a view of
// them), so an operation is a v128.load of each operand, one wasm SIMD instruction (Core 2.0 §4.4.3; prefix 0xFD)
// and a v128.store: PCMPEQB/W/D -> i8x16/i16x8/i32x4.eq, PCMPGTx -> gt_s, PAND/POR/PXOR -> v128.and/or/xor,
// PANDN -> v128.andnot with the operands swapped, PADDx/PSUBx -> add/sub (the saturating ones add_sat/sub_sat),
// PMINUB/PMAXUB/PMINSW/PMAXSW -> min/max, PAVGB/W -> avgr_u, PMULLW -> i16x8.mul, PUNPCKLxx/PUNPCKHxx and PSHUFD
// -> i8x16.shuffle with constant lanes, PMOVMSKB -> i8x16.bitmask. Operations without wasm code here replay.
//
// What runs inline and what does not (everything else goes to the JavaScript form through the replay helper, which
// is exact: it raises the faults, notes writes into code pages, and says whether the block must stop):
// - the SSE availability check: the state area's S_SSE word (FpuState.sseOk) must be 1 (CR0.EM/TS clear, CR4.OSFXSR
//   set); when it is 0 the JavaScript form checks for itself and raises #UD/#NM;
// - a 16-byte memory operand: inline only when it is aligned (for the aligned forms), inside one page, its page is
//   in the first-level TLB bank of this privilege (read or write), in low RAM, and (stores) not a page holding
//   translated code; then one v128.load/store on guest RAM. A misaligned MOVAPS (#GP), a page-crossing access, a
//   TLB miss, MMIO or a store into a code page (self-modifying code) is replayed;
// - 4- and 8-byte memory operands (MOVD/MOVQ, MOVLPx/MOVHPx) go through the memory library like the integer forms.
// The flag record is not touched by any of these, so the block keeps knowing its flags across them (the replay
// helper moves the record to SoftCpu's fields, which stay equal to the block's locals).
import type { BlockEntry } from '../code-cache.ts';
import { Form } from '../fast-forms.ts';
import { Op, Simd, I32, I64, type Body } from './emit.ts';
import { WASM_RAM_OFFSET } from '../../../memory/guest-memory.ts';
import * as layout from './layout.ts';
import { emitTlbProbe } from './tlb-probe.ts';
/** The layout constants as a plain object (under tsx a namespace import reads each one through a getter call). */
const L = { ...layout };

/** What the SSE code needs of ./translate.ts's Translator (its fields and helpers for the current instruction). */
export interface SseHost {
  readonly b: Body;
  readonly st: number;
  readonly rtag: number;
  readonly wtag: number;
  readonly a: number;
  readonly v: number;
  readonly w: number;
  readonly xc: number;
  out: number;
  pos(): void;
  /** Note the kind of the exit that follows (translate.ts X_*: statistics). */
  xk(kind: number): void;
  ea(e: BlockEntry, next: number): void;
  load(size: number): void;
  store(size: number): void;
  set32(r: number, emit: () => void): void;
  set64(r: number, l: number): void;
  /** Commit EXPLICIT flags (the i32 on the stack: the six arithmetic flags as EFLAGS bits). */
  explicit(size: number): void;
}

/** Function index of the replay helper `rp` (the third import of ./translate.ts buildModule: rd, wr, rp, ...). */
const F_RP = 2;

/** Extra locals of a block function (allocated once per body, on first use). */
interface Scratch { off: number; ti: number; p: number; vpn: number; p64: number }
const scratch = new WeakMap<Body, Scratch>();
function locals(b: Body): Scratch {
  let s = scratch.get(b);
  if (s === undefined) {
    s = { off: b.local(I32), ti: b.local(I32), p: b.local(I32), vpn: b.local(I64), p64: b.local(I64) };
    scratch.set(b, s);
  }
  return s;
}

const xmm = (r: number): number => L.S_XMM + 16 * r;

/** Lanes of PUNPCKL/H{BW,WD,DQ,QDQ}: elements of `e` bytes of the low (or high) halves, destination's first. */
function unpackLanes(e: number, high: boolean): number[] {
  const out: number[] = [], base = high ? 8 : 0;
  for (let k = 0; k < 8 / e; k++) {
    for (let j = 0; j < e; j++) out.push(base + k * e + j);
    for (let j = 0; j < e; j++) out.push(16 + base + k * e + j);
  }
  return out;
}
const UNPACK: Record<number, number[]> = {
  0x60: unpackLanes(1, false), 0x61: unpackLanes(2, false), 0x62: unpackLanes(4, false), 0x6c: unpackLanes(8, false),
  0x68: unpackLanes(1, true), 0x69: unpackLanes(2, true), 0x6a: unpackLanes(4, true), 0x6d: unpackLanes(8, true),
};
/** D = D op S as one SIMD instruction (operands pushed D, S), by the 66 0F opcode (SDM vol. 2 per instruction). */
const BINARY: Record<number, number> = {
  0x74: Simd.i8x16Eq, 0x75: Simd.i16x8Eq, 0x76: Simd.i32x4Eq, 0x64: Simd.i8x16GtS, 0x65: Simd.i16x8GtS, 0x66: Simd.i32x4GtS,
  0xdb: Simd.v128And, 0xeb: Simd.v128Or, 0xef: Simd.v128Xor,
  0xfc: Simd.i8x16Add, 0xfd: Simd.i16x8Add, 0xfe: Simd.i32x4Add, 0xd4: Simd.i64x2Add,
  0xf8: Simd.i8x16Sub, 0xf9: Simd.i16x8Sub, 0xfa: Simd.i32x4Sub, 0xfb: Simd.i64x2Sub,
  0xec: Simd.i8x16AddSatS, 0xed: Simd.i16x8AddSatS, 0xdc: Simd.i8x16AddSatU, 0xdd: Simd.i16x8AddSatU,
  0xe8: Simd.i8x16SubSatS, 0xe9: Simd.i16x8SubSatS, 0xd8: Simd.i8x16SubSatU, 0xd9: Simd.i16x8SubSatU,
  0xda: Simd.i8x16MinU, 0xde: Simd.i8x16MaxU, 0xea: Simd.i16x8MinS, 0xee: Simd.i16x8MaxS,
  0xe0: Simd.i8x16AvgrU, 0xe3: Simd.i16x8AvgrU, 0xd5: Simd.i16x8Mul,
};

/**
 * BSF/BSR (Form.BitScanR/M), as ../fast-forms.ts bitScanTo: a zero source gives ZF|PF and leaves the destination
 * alone; else the destination = i64.ctz (BSF) or 63 - i64.clz (BSR) of the zero-extended source, PF its parity.
 * The flags are EXPLICIT (all six written). Returns as emitSse.
 */
function bitScan(T: SseHost, e: BlockEntry, next: number): number {
  const b = T.b, s = locals(b), size = e.size;
  if (e.form === Form.BitScanM) { T.ea(e, next); T.load(size); }
  else if (size === 8) {
    b.get(T.st).mem(Op.i64Load, 3, L.sGpr(e.a)).set(T.v);
  } else b.get(T.st).mem(Op.i64Load32u, 2, L.sGpr(e.a)).set(T.v);
  b.get(T.v).op(Op.i64Eqz).open(Op.if);
  b.i32(0x44 /* ZF | PF */).set(s.ti);
  b.else();
  if (e.op === 0) b.get(T.v).op(0x7a /* i64.ctz */);
  else b.i64(63).get(T.v).op(0x79 /* i64.clz */).op(Op.i64Sub);
  b.op(Op.i32WrapI64).set(s.off);
  T.set32(e.b, () => { b.get(s.off); });
  b.get(s.off).op(Op.i32Popcnt).i32(1).op(Op.i32And).op(Op.i32Eqz).i32(2).op(Op.i32Shl).set(s.ti);
  b.close();
  b.get(s.ti);
  T.explicit(size);
  return e.form === Form.BitScanM ? 2 : 1;
}

/** Whether SseOpRR/SseOpRM with operation `op` has wasm code here. */
function hasOp(op: number): boolean {
  return op === 0xdf || op === 0x70 || BINARY[op] !== undefined || UNPACK[op] !== undefined;
}

/**
 * Emit the operation `op` with the destination register's value and the source (`src` pushes a v128) on top of the
 * store address (st): D = D op S, or PSHUFD's S shuffled by `imm`.
 */
function operate(T: SseHost, op: number, dst: number, imm: number, src: () => void): void {
  const b = T.b;
  if (op === 0x70) {
    src(); src();
    const lanes: number[] = [];
    for (let i = 0; i < 4; i++) { const s = (imm >> (2 * i)) & 3; for (let j = 0; j < 4; j++) lanes.push(4 * s + j); }
    b.shuffle(lanes);
    return;
  }
  if (op === 0xdf) { src(); b.get(T.st).simdMem(Simd.v128Load, 0, xmm(dst)).simd(Simd.v128AndNot); return; } // ~D & S
  b.get(T.st).simdMem(Simd.v128Load, 0, xmm(dst));
  src();
  const u = UNPACK[op];
  if (u !== undefined) b.shuffle(u); else b.simd(BINARY[op]);
}

/**
 * The inline probe of a 16-byte access at the i64 in T.a: branches to `slow` unless it is aligned (when `aligned`),
 * inside one page, a first-level TLB hit in the bank at `tag` (T.rtag or T.wtag), in low RAM and (`write`) not in a
 * page holding code (./tlb-probe.ts); leaves the RAM offset in local p (i32).
 */
function probe16(T: SseHost, s: Scratch, slow: number, aligned: boolean, write: boolean): void {
  const b = T.b;
  emitTlbProbe(b, write ? T.wtag : T.rtag, T.a, { ti: s.ti }, 16, write, slow, aligned ? 16 : 0);
  b.set(s.p);
}

/**
 * Emit instruction `e` (index `i` in its block, the next one at byte offset `next`) if it is an SSE form with code
 * here. Returns 0 when not (the caller replays it), 1 when emitted, 2 when emitted with a memory-library access (the
 * caller then leaves after it if the access's slow path raised an event, as for the integer memory forms).
 */
export function emitSse(T: SseHost, e: BlockEntry, i: number, next: number): number {
  const f = e.form;
  if (f === Form.BitScanR || f === Form.BitScanM) return bitScan(T, e, next);
  if ((f < Form.SseMovRR || f > Form.SseMovqXX) && (f < Form.SseHalfLoad || f > Form.SseHalfMove)) return 0;
  if ((f === Form.SseOpRR || f === Form.SseOpRM) && !hasOp(e.op)) return 0;
  const b = T.b, st = T.st;
  let lib = 0;
  const done = b.open(Op.block);
  const slow = b.open(Op.block);
  b.get(st).mem(Op.i32Load, 2, L.S_SSE).op(Op.i32Eqz).brIf(slow);
  switch (f) {
    case Form.SseMovRR:
      b.get(st).get(st).simdMem(Simd.v128Load, 0, xmm(e.a)).simdMem(Simd.v128Store, 0, xmm(e.b));
      break;
    case Form.SseLoad: {
      const s = locals(b);
      T.ea(e, next);
      probe16(T, s, slow, e.op === 1, false);
      b.get(st).get(s.p).simdMem(Simd.v128Load, 0, WASM_RAM_OFFSET).simdMem(Simd.v128Store, 0, xmm(e.a));
      break;
    }
    case Form.SseStore: {
      const s = locals(b);
      T.ea(e, next);
      probe16(T, s, slow, e.op === 1, true);
      b.get(s.p).get(st).simdMem(Simd.v128Load, 0, xmm(e.a)).simdMem(Simd.v128Store, 0, WASM_RAM_OFFSET);
      break;
    }
    case Form.SseOpRR:
      b.get(st);
      operate(T, e.op, e.b, e.imm, () => { b.get(st).simdMem(Simd.v128Load, 0, xmm(e.a)); });
      b.simdMem(Simd.v128Store, 0, xmm(e.b));
      break;
    case Form.SseOpRM: {
      const s = locals(b);
      T.ea(e, next);
      probe16(T, s, slow, true, false);
      b.get(st);
      operate(T, e.op, e.b, e.imm, () => { b.get(s.p).simdMem(Simd.v128Load, 0, WASM_RAM_OFFSET); });
      b.simdMem(Simd.v128Store, 0, xmm(e.b));
      break;
    }
    case Form.SsePmovmskb:
      T.set32(e.b, () => { b.get(st).simdMem(Simd.v128Load, 0, xmm(e.a)).simd(Simd.i8x16Bitmask); });
      break;
    case Form.SseMovdXR: case Form.SseMovdXM:
      if (f === Form.SseMovdXM) { lib = 2; T.ea(e, next); T.load(e.size); b.get(T.v).set(T.w); }
      else if (e.size === 8) {
        b.get(st).mem(Op.i64Load, 3, L.sGpr(e.a)).set(T.w);
      } else b.get(st).mem(Op.i64Load32u, 2, L.sGpr(e.a)).set(T.w);
      b.get(st).get(T.w).mem(Op.i64Store, 3, xmm(e.b));
      b.get(st).i64(0).mem(Op.i64Store, 3, xmm(e.b) + 8);
      break;
    case Form.SseMovdRX:
      if (e.size === 8) { b.get(st).mem(Op.i64Load, 3, xmm(e.a)).set(T.w); T.set64(e.b, T.w); }
      else T.set32(e.b, () => { b.get(st).mem(Op.i32Load, 2, xmm(e.a)); });
      break;
    case Form.SseMovdMX:
      lib = 2;
      T.ea(e, next);
      b.get(st).mem(Op.i64Load, 3, xmm(e.a)).set(T.w);
      T.store(e.size);
      break;
    case Form.SseHalfLoad:
      lib = 2;
      T.ea(e, next); T.load(8);
      b.get(st).get(T.v).mem(Op.i64Store, 3, xmm(e.a) + 8 * e.op);
      break;
    case Form.SseHalfStore:
      lib = 2;
      T.ea(e, next);
      b.get(st).mem(Op.i64Load, 3, xmm(e.a) + 8 * e.op).set(T.w);
      T.store(8);
      break;
    case Form.SseHalfMove:
      b.get(st).get(st).mem(Op.i64Load, 3, xmm(e.a) + (e.op === 0 ? 8 : 0)).mem(Op.i64Store, 3, xmm(e.b) + (e.op === 0 ? 0 : 8));
      break;
    case Form.SseMovqXX:
      b.get(st).get(st).mem(Op.i64Load, 3, xmm(e.a)).mem(Op.i64Store, 3, xmm(e.b));
      b.get(st).i64(0).mem(Op.i64Store, 3, xmm(e.b) + 8);
      break;
  }
  b.br(done);
  b.close();
  // The slow path: the JavaScript form through the replay helper (which leaves the block when it must).
  T.pos(); b.call(F_RP);
  b.open(Op.if); T.xk(5 /* translate.ts X_HELPER */); b.i32(i + 1).set(T.xc).br(T.out); b.close();
  b.close();
  return lib === 2 ? 2 : 1;
}
