// MMX and SSE2 integer instructions (0F 60-7F, C3-C5, D1-FE): without a prefix they work on the 64-bit MMX
// registers (the significands of the x87 registers), with 66 on the XMM registers (SDM vol. 2; vol. 1 ch. 9
// and §11.4). F2/F3 select the few other forms (MOVDQU, PSHUFHW/LW, MOVQ, MOVQ2DQ/MOVDQ2Q, LDDQU).
import type { SoftCpu, OpHandler } from '../cpu.ts';
import * as C from '../constants.ts';
import { def0f } from '../tables.ts';
import {
  D, S, T, sseCheck, mmxCheck, loadXmm, storeXmm, loadXmmSrc, loadMm, storeMm, mmxTransition, readMem, writeMem,
} from './sse-common.ts';

export type IntFn = (n: number) => void;

/**
 * An integer SIMD instruction "op reg, r/m": 66 = XMM with an aligned m128, none = MMX with m64.
 * `imm`: fetch an imm8 (passed in `lastImm`) after the ModRM bytes and before the memory access.
 */
let lastImm = 0;
/**
 * The operation of each handler made by intOp (D = D op S over n bytes), for the pre-decoded SSE forms of
 * ../fast-forms.ts, which run the same function on the same scratch operands.
 */
export const INT_FN = new Map<OpHandler, IntFn>();
function intOp(fn: IntFn, opts: { xmmOnly?: boolean; imm?: boolean } = {}): OpHandler {
  const h = (cpu: SoftCpu): void => {
    cpu.decodeModrm();
    if (opts.imm) lastImm = cpu.fetch8();
    if (cpu.rep) cpu.ud();
    if (cpu.p66) {
      sseCheck(cpu);
      loadXmm(D.i32, cpu.reg, cpu);
      loadXmmSrc(cpu, 16, true);
      fn(16);
      storeXmm(D.i32, cpu.reg, cpu);
      return;
    }
    if (opts.xmmOnly) cpu.ud();
    mmxCheck(cpu);
    loadMm(D.i32, cpu.reg, cpu);
    if (cpu.mod === 3) loadMm(S.i32, cpu.rm, cpu); else readMem(cpu, S.i32, 8, false);
    mmxTransition(cpu);
    fn(8);
    storeMm(D.i32[0], D.i32[1], cpu.reg, cpu);
  };
  INT_FN.set(h, fn);
  return h;
}

function copyT(n: number): void {
  for (let i = 0; i < n >> 2; i++) D.i32[i] = T.i32[i];
}

// ---- unpack / pack (0F 60-6D)

function unpack(e: number, high: boolean): IntFn {
  return (n) => {
    const base = high ? n >> 1 : 0, cnt = (n >> 1) / e;
    let o = 0;
    for (let k = 0; k < cnt; k++) {
      for (let j = 0; j < e; j++) T.u8[o++] = D.u8[base + k * e + j];
      for (let j = 0; j < e; j++) T.u8[o++] = S.u8[base + k * e + j];
    }
    copyT(n);
  };
}
def0f(0x60, intOp(unpack(1, false)));
def0f(0x61, intOp(unpack(2, false)));
def0f(0x62, intOp(unpack(4, false)));
def0f(0x68, intOp(unpack(1, true)));
def0f(0x69, intOp(unpack(2, true)));
def0f(0x6a, intOp(unpack(4, true)));
def0f(0x6c, intOp(unpack(8, false), { xmmOnly: true }));
def0f(0x6d, intOp(unpack(8, true), { xmmOnly: true }));

const sat8s = (v: number) => (v > 127 ? 127 : v < -128 ? -128 : v);
const sat8u = (v: number) => (v > 255 ? 255 : v < 0 ? 0 : v);
const sat16s = (v: number) => (v > 32767 ? 32767 : v < -32768 ? -32768 : v);
const sat16u = (v: number) => (v > 65535 ? 65535 : v < 0 ? 0 : v);

// PACKSSWB, PACKUSWB: words of destination then source, saturated to bytes.
function packWB(unsigned: boolean): IntFn {
  return (n) => {
    const w = n >> 1; // words per operand
    for (let k = 0; k < n; k++) {
      const v = k < w ? D.i16[k] : S.i16[k - w];
      if (unsigned) T.u8[k] = sat8u(v); else T.i8[k] = sat8s(v);
    }
    copyT(n);
  };
}
def0f(0x63, intOp(packWB(false)));
def0f(0x67, intOp(packWB(true)));
// PACKSSDW: dwords saturated to signed words.
def0f(0x6b, intOp((n) => {
  const d = n >> 2;
  for (let k = 0; k < d * 2; k++) T.i16[k] = sat16s(k < d ? D.i32[k] : S.i32[k - d]);
  copyT(n);
}));

// ---- compares (0F 64-66, 74-76): all ones where true
def0f(0x64, intOp((n) => { for (let i = 0; i < n; i++) D.u8[i] = D.i8[i] > S.i8[i] ? 0xff : 0; }));
def0f(0x65, intOp((n) => { for (let i = 0; i < n >> 1; i++) D.u16[i] = D.i16[i] > S.i16[i] ? 0xffff : 0; }));
def0f(0x66, intOp((n) => { for (let i = 0; i < n >> 2; i++) D.i32[i] = D.i32[i] > S.i32[i] ? -1 : 0; }));
def0f(0x74, intOp((n) => { for (let i = 0; i < n; i++) D.u8[i] = D.u8[i] === S.u8[i] ? 0xff : 0; }));
def0f(0x75, intOp((n) => { for (let i = 0; i < n >> 1; i++) D.u16[i] = D.u16[i] === S.u16[i] ? 0xffff : 0; }));
def0f(0x76, intOp((n) => { for (let i = 0; i < n >> 2; i++) D.i32[i] = D.i32[i] === S.i32[i] ? -1 : 0; }));

// ---- logic
def0f(0xdb, intOp((n) => { for (let i = 0; i < n >> 2; i++) D.i32[i] &= S.i32[i]; }));
def0f(0xdf, intOp((n) => { for (let i = 0; i < n >> 2; i++) D.i32[i] = ~D.i32[i] & S.i32[i]; }));
def0f(0xeb, intOp((n) => { for (let i = 0; i < n >> 2; i++) D.i32[i] |= S.i32[i]; }));
def0f(0xef, intOp((n) => { for (let i = 0; i < n >> 2; i++) D.i32[i] ^= S.i32[i]; }));

// ---- add / subtract (wrapping, signed and unsigned saturating)
def0f(0xfc, intOp((n) => { for (let i = 0; i < n; i++) D.u8[i] += S.u8[i]; }));
def0f(0xfd, intOp((n) => { for (let i = 0; i < n >> 1; i++) D.u16[i] += S.u16[i]; }));
def0f(0xfe, intOp((n) => { for (let i = 0; i < n >> 2; i++) D.i32[i] = (D.i32[i] + S.i32[i]) | 0; }));
def0f(0xf8, intOp((n) => { for (let i = 0; i < n; i++) D.u8[i] -= S.u8[i]; }));
def0f(0xf9, intOp((n) => { for (let i = 0; i < n >> 1; i++) D.u16[i] -= S.u16[i]; }));
def0f(0xfa, intOp((n) => { for (let i = 0; i < n >> 2; i++) D.i32[i] = (D.i32[i] - S.i32[i]) | 0; }));
// PADDQ / PSUBQ: 64-bit lanes as (lo, hi) int32 pairs (SSE2, also on MMX registers).
def0f(0xd4, intOp((n) => {
  for (let i = 0; i < n >> 2; i += 2) {
    const a = D.i32[i] >>> 0, b = S.i32[i] >>> 0, lo = (a + b) >>> 0;
    D.i32[i + 1] = (D.i32[i + 1] + S.i32[i + 1] + (lo < a ? 1 : 0)) | 0;
    D.i32[i] = lo | 0;
  }
}));
def0f(0xfb, intOp((n) => {
  for (let i = 0; i < n >> 2; i += 2) {
    const a = D.i32[i] >>> 0, b = S.i32[i] >>> 0;
    D.i32[i + 1] = (D.i32[i + 1] - S.i32[i + 1] - (a < b ? 1 : 0)) | 0;
    D.i32[i] = (a - b) | 0;
  }
}));
def0f(0xec, intOp((n) => { for (let i = 0; i < n; i++) D.i8[i] = sat8s(D.i8[i] + S.i8[i]); }));
def0f(0xed, intOp((n) => { for (let i = 0; i < n >> 1; i++) D.i16[i] = sat16s(D.i16[i] + S.i16[i]); }));
def0f(0xe8, intOp((n) => { for (let i = 0; i < n; i++) D.i8[i] = sat8s(D.i8[i] - S.i8[i]); }));
def0f(0xe9, intOp((n) => { for (let i = 0; i < n >> 1; i++) D.i16[i] = sat16s(D.i16[i] - S.i16[i]); }));
def0f(0xdc, intOp((n) => { for (let i = 0; i < n; i++) D.u8[i] = sat8u(D.u8[i] + S.u8[i]); }));
def0f(0xdd, intOp((n) => { for (let i = 0; i < n >> 1; i++) D.u16[i] = sat16u(D.u16[i] + S.u16[i]); }));
def0f(0xd8, intOp((n) => { for (let i = 0; i < n; i++) D.u8[i] = sat8u(D.u8[i] - S.u8[i]); }));
def0f(0xd9, intOp((n) => { for (let i = 0; i < n >> 1; i++) D.u16[i] = sat16u(D.u16[i] - S.u16[i]); }));

// ---- min / max / average
def0f(0xda, intOp((n) => { for (let i = 0; i < n; i++) if (S.u8[i] < D.u8[i]) D.u8[i] = S.u8[i]; }));
def0f(0xde, intOp((n) => { for (let i = 0; i < n; i++) if (S.u8[i] > D.u8[i]) D.u8[i] = S.u8[i]; }));
def0f(0xea, intOp((n) => { for (let i = 0; i < n >> 1; i++) if (S.i16[i] < D.i16[i]) D.i16[i] = S.i16[i]; }));
def0f(0xee, intOp((n) => { for (let i = 0; i < n >> 1; i++) if (S.i16[i] > D.i16[i]) D.i16[i] = S.i16[i]; }));
def0f(0xe0, intOp((n) => { for (let i = 0; i < n; i++) D.u8[i] = (D.u8[i] + S.u8[i] + 1) >> 1; }));
def0f(0xe3, intOp((n) => { for (let i = 0; i < n >> 1; i++) D.u16[i] = (D.u16[i] + S.u16[i] + 1) >> 1; }));

// ---- multiply
def0f(0xd5, intOp((n) => { for (let i = 0; i < n >> 1; i++) D.u16[i] = Math.imul(D.i16[i], S.i16[i]); }));
def0f(0xe5, intOp((n) => { for (let i = 0; i < n >> 1; i++) D.u16[i] = (D.i16[i] * S.i16[i]) >> 16; }));
def0f(0xe4, intOp((n) => { for (let i = 0; i < n >> 1; i++) D.u16[i] = (D.u16[i] * S.u16[i]) / 65536; }));
// PMADDWD: pairs of signed word products summed into dwords (only 0x8000*0x8000*2 wraps, as on hardware).
def0f(0xf5, intOp((n) => {
  for (let i = 0; i < n >> 2; i++) D.i32[i] = (D.i16[2 * i] * S.i16[2 * i] + D.i16[2 * i + 1] * S.i16[2 * i + 1]) | 0;
}));
// PMULUDQ: unsigned 32x32 -> 64 of the even dwords, in 16-bit pieces to stay exact.
def0f(0xf4, intOp((n) => {
  for (let i = 0; i < n >> 2; i += 2) {
    const a = D.u32[i], b = S.u32[i];
    const al = a & 0xffff, ah = a >>> 16, bl = b & 0xffff, bh = b >>> 16;
    const mid = al * bh + ah * bl;
    let low = al * bl + (mid % 65536) * 65536;
    const carry = low >= 4294967296 ? 1 : 0;
    low -= carry * 4294967296;
    D.u32[i] = low;
    D.u32[i + 1] = ah * bh + Math.floor(mid / 65536) + carry;
  }
}));
// PSADBW: sum of absolute byte differences per 64-bit lane, into the lane's low word.
def0f(0xf6, intOp((n) => {
  for (let g = 0; g < n; g += 8) {
    let sum = 0;
    for (let j = 0; j < 8; j++) sum += Math.abs(D.u8[g + j] - S.u8[g + j]);
    D.i32[g >> 2] = sum;
    D.i32[(g >> 2) + 1] = 0;
  }
}));

// ---- shifts by a register/memory count (the whole low 64 bits of the source is the count)

function countOf(): number {
  return S.i32[1] !== 0 || (S.i32[0] >>> 0) > 64 ? 64 : S.i32[0];
}
function shiftW(kind: number, c: number, n: number): void { // 0 right logical, 1 right arithmetic, 2 left
  for (let i = 0; i < n >> 1; i++) {
    if (kind === 1) D.i16[i] = D.i16[i] >> (c > 15 ? 15 : c);
    else if (c > 15) D.u16[i] = 0;
    else D.u16[i] = kind === 0 ? D.u16[i] >>> c : D.u16[i] << c;
  }
}
function shiftD(kind: number, c: number, n: number): void {
  for (let i = 0; i < n >> 2; i++) {
    if (kind === 1) D.i32[i] = D.i32[i] >> (c > 31 ? 31 : c);
    else if (c > 31) D.i32[i] = 0;
    else D.i32[i] = kind === 0 ? D.i32[i] >>> c : D.i32[i] << c;
  }
}
function shiftQ(left: boolean, c: number, n: number): void {
  for (let i = 0; i < n >> 2; i += 2) {
    const lo = D.i32[i], hi = D.i32[i + 1];
    let rl: number, rh: number;
    if (c > 63) { rl = 0; rh = 0; } else if (c === 0) { rl = lo; rh = hi; } else if (left) {
      if (c >= 32) { rh = lo << (c - 32); rl = 0; } else { rh = (hi << c) | (lo >>> (32 - c)); rl = lo << c; }
    } else if (c >= 32) { rl = hi >>> (c - 32); rh = 0; } else { rl = (lo >>> c) | (hi << (32 - c)); rh = hi >>> c; }
    D.i32[i] = rl; D.i32[i + 1] = rh;
  }
}
def0f(0xd1, intOp((n) => shiftW(0, countOf(), n)));
def0f(0xe1, intOp((n) => shiftW(1, countOf(), n)));
def0f(0xf1, intOp((n) => shiftW(2, countOf(), n)));
def0f(0xd2, intOp((n) => shiftD(0, countOf(), n)));
def0f(0xe2, intOp((n) => shiftD(1, countOf(), n)));
def0f(0xf2, intOp((n) => shiftD(2, countOf(), n)));
def0f(0xd3, intOp((n) => shiftQ(false, countOf(), n)));
def0f(0xf3, intOp((n) => shiftQ(true, countOf(), n)));

// 0F 71/72/73: shifts by imm8 of the r/m register (group 12/13/14, SDM vol. 2 table A-6).
function shiftImm(group: number) {
  return (cpu: SoftCpu): void => {
    cpu.decodeModrm();
    const c = cpu.fetch8();
    const r = (cpu.modrm >> 3) & 7;
    if (cpu.mod !== 3 || cpu.rep) cpu.ud();
    const xmm = cpu.p66;
    if (xmm) { sseCheck(cpu); loadXmm(D.i32, cpu.rm, cpu); } else { mmxCheck(cpu); loadMm(D.i32, cpu.rm, cpu); }
    const n = xmm ? 16 : 8;
    if (group === 0x71 && (r === 2 || r === 4 || r === 6)) shiftW(r === 2 ? 0 : r === 4 ? 1 : 2, c, n);
    else if (group === 0x72 && (r === 2 || r === 4 || r === 6)) shiftD(r === 2 ? 0 : r === 4 ? 1 : 2, c, n);
    else if (group === 0x73 && (r === 2 || r === 6)) shiftQ(r === 6, c, n);
    else if (group === 0x73 && xmm && (r === 3 || r === 7)) {
      // PSRLDQ / PSLLDQ: whole-register byte shifts.
      const k = c > 16 ? 16 : c;
      for (let i = 0; i < 16; i++) {
        const from = r === 3 ? i + k : i - k;
        T.u8[i] = from >= 0 && from < 16 ? D.u8[from] : 0;
      }
      copyT(16);
    } else cpu.ud();
    if (xmm) storeXmm(D.i32, cpu.rm, cpu);
    else { mmxTransition(cpu); storeMm(D.i32[0], D.i32[1], cpu.rm, cpu); }
  };
}
def0f(0x71, shiftImm(0x71));
def0f(0x72, shiftImm(0x72));
def0f(0x73, shiftImm(0x73));

// ---- shuffles and word insert/extract

// 0F 70: PSHUFW (MMX), PSHUFD (66), PSHUFHW (F3), PSHUFLW (F2); imm8 picks the source elements.
def0f(0x70, (cpu) => {
  cpu.decodeModrm();
  const imm = cpu.fetch8();
  if (!cpu.p66 && !cpu.rep) {
    mmxCheck(cpu);
    if (cpu.mod === 3) loadMm(S.i32, cpu.rm, cpu); else readMem(cpu, S.i32, 8, false);
    mmxTransition(cpu);
    for (let i = 0; i < 4; i++) D.u16[i] = S.u16[(imm >> (2 * i)) & 3];
    storeMm(D.i32[0], D.i32[1], cpu.reg, cpu);
    return;
  }
  sseCheck(cpu);
  loadXmmSrc(cpu, 16, true);
  if (cpu.rep === 0xf3) {
    D.i32[0] = S.i32[0]; D.i32[1] = S.i32[1];
    for (let i = 0; i < 4; i++) D.u16[4 + i] = S.u16[4 + ((imm >> (2 * i)) & 3)];
  } else if (cpu.rep === 0xf2) {
    D.i32[2] = S.i32[2]; D.i32[3] = S.i32[3];
    for (let i = 0; i < 4; i++) D.u16[i] = S.u16[(imm >> (2 * i)) & 3];
  } else {
    for (let i = 0; i < 4; i++) D.i32[i] = S.i32[(imm >> (2 * i)) & 3];
  }
  storeXmm(D.i32, cpu.reg, cpu);
});

// PINSRW mm/xmm, r32/m16, imm8.
def0f(0xc4, (cpu) => {
  cpu.decodeModrm();
  const imm = cpu.fetch8();
  if (cpu.rep) cpu.ud();
  if (cpu.p66) sseCheck(cpu); else mmxCheck(cpu);
  const w = cpu.mod === 3 ? cpu.getReg(4, cpu.rm) & 0xffff : cpu.readLin(cpu.eaLinear(), 2);
  if (cpu.p66) {
    loadXmm(D.i32, cpu.reg, cpu);
    D.u16[imm & 7] = w;
    storeXmm(D.i32, cpu.reg, cpu);
  } else {
    loadMm(D.i32, cpu.reg, cpu);
    mmxTransition(cpu);
    D.u16[imm & 3] = w;
    storeMm(D.i32[0], D.i32[1], cpu.reg, cpu);
  }
});

// PEXTRW r32, mm/xmm, imm8 (register source only here; the memory form is SSE4.1's 0F 3A 15).
def0f(0xc5, (cpu) => {
  cpu.decodeModrm();
  const imm = cpu.fetch8();
  if (cpu.mod !== 3 || cpu.rep) cpu.ud();
  let w: number;
  if (cpu.p66) { sseCheck(cpu); loadXmm(S.i32, cpu.rm, cpu); w = S.u16[imm & 7]; } else {
    mmxCheck(cpu); loadMm(S.i32, cpu.rm, cpu); mmxTransition(cpu); w = S.u16[imm & 3];
  }
  cpu.setReg(4, cpu.reg, w);
});

// PMOVMSKB r32, mm/xmm: the byte sign bits.
def0f(0xd7, (cpu) => {
  cpu.decodeModrm();
  if (cpu.mod !== 3 || cpu.rep) cpu.ud();
  let n: number;
  if (cpu.p66) { sseCheck(cpu); loadXmm(S.i32, cpu.rm, cpu); n = 16; } else { mmxCheck(cpu); loadMm(S.i32, cpu.rm, cpu); mmxTransition(cpu); n = 8; }
  let m = 0;
  for (let i = 0; i < n; i++) m |= (S.u8[i] >> 7) << i;
  cpu.setReg(4, cpu.reg, m);
});

// ---- moves

// 0F 6E: MOVD/MOVQ mm or xmm <- r/m32 (r/m64 with REX.W), zero-extended.
def0f(0x6e, (cpu) => {
  cpu.decodeModrm();
  if (cpu.rep) cpu.ud();
  if (cpu.p66) sseCheck(cpu); else mmxCheck(cpu);
  const size = cpu.rexW ? 8 : 4;
  const lo = cpu.readRm(size), hi = size === 8 ? cpu.hi : 0;
  if (cpu.p66) {
    D.i32[0] = lo; D.i32[1] = hi; D.i32[2] = 0; D.i32[3] = 0;
    storeXmm(D.i32, cpu.reg, cpu);
  } else {
    mmxTransition(cpu);
    storeMm(lo, hi, cpu.reg, cpu);
  }
});

// 0F 7E: MOVD/MOVQ r/m32 (r/m64) <- mm or xmm; with F3: MOVQ xmm <- xmm/m64 (upper half zeroed).
def0f(0x7e, (cpu) => {
  cpu.decodeModrm();
  if (cpu.rep === 0xf3) {
    sseCheck(cpu);
    if (cpu.mod === 3) loadXmm(S.i32, cpu.rm, cpu); else readMem(cpu, S.i32, 8, false);
    D.i32[0] = S.i32[0]; D.i32[1] = S.i32[1]; D.i32[2] = 0; D.i32[3] = 0;
    storeXmm(D.i32, cpu.reg, cpu);
    return;
  }
  if (cpu.rep) cpu.ud();
  if (cpu.p66) { sseCheck(cpu); loadXmm(S.i32, cpu.reg, cpu); } else { mmxCheck(cpu); loadMm(S.i32, cpu.reg, cpu); }
  if (cpu.rexW) cpu.writeRm(8, S.i32[0], S.i32[1]); else cpu.writeRm(4, S.i32[0]);
  if (!cpu.p66) mmxTransition(cpu);
});

// 0F 6F: MOVQ mm, mm/m64; MOVDQA xmm, xmm/m128 (66, aligned); MOVDQU (F3).
def0f(0x6f, (cpu) => {
  cpu.decodeModrm();
  if (cpu.p66 || cpu.rep === 0xf3) {
    sseCheck(cpu);
    loadXmmSrc(cpu, 16, cpu.rep !== 0xf3);
    storeXmm(S.i32, cpu.reg, cpu);
    return;
  }
  if (cpu.rep) cpu.ud();
  mmxCheck(cpu);
  if (cpu.mod === 3) loadMm(S.i32, cpu.rm, cpu); else readMem(cpu, S.i32, 8, false);
  mmxTransition(cpu);
  storeMm(S.i32[0], S.i32[1], cpu.reg, cpu);
});

// 0F 7F: the stores of 0F 6F.
def0f(0x7f, (cpu) => {
  cpu.decodeModrm();
  if (cpu.p66 || cpu.rep === 0xf3) {
    sseCheck(cpu);
    loadXmm(S.i32, cpu.reg, cpu);
    if (cpu.mod === 3) storeXmm(S.i32, cpu.rm, cpu); else writeMem(cpu, S.i32, 16, cpu.rep !== 0xf3);
    return;
  }
  if (cpu.rep) cpu.ud();
  mmxCheck(cpu);
  loadMm(S.i32, cpu.reg, cpu);
  if (cpu.mod === 3) { mmxTransition(cpu); storeMm(S.i32[0], S.i32[1], cpu.rm, cpu); return; }
  writeMem(cpu, S.i32, 8, false);
  mmxTransition(cpu);
});

// F2 0F F0: LDDQU (SSE3), an unaligned 16-byte load.
def0f(0xf0, (cpu) => {
  cpu.decodeModrm();
  if (cpu.rep !== 0xf2 || cpu.mod === 3) cpu.ud();
  sseCheck(cpu);
  readMem(cpu, S.i32, 16, false);
  storeXmm(S.i32, cpu.reg, cpu);
});

// 0F D6: MOVQ xmm/m64 <- xmm (66; a register destination has its upper half zeroed), MOVQ2DQ xmm <- mm (F3),
// MOVDQ2Q mm <- xmm (F2).
def0f(0xd6, (cpu) => {
  cpu.decodeModrm();
  if (cpu.rep === 0xf3 || cpu.rep === 0xf2) {
    if (cpu.mod !== 3) cpu.ud();
    sseCheck(cpu);
    mmxCheck(cpu);
    if (cpu.rep === 0xf3) {
      loadMm(S.i32, cpu.rm, cpu);
      D.i32[0] = S.i32[0]; D.i32[1] = S.i32[1]; D.i32[2] = 0; D.i32[3] = 0;
      mmxTransition(cpu);
      storeXmm(D.i32, cpu.reg, cpu);
    } else {
      loadXmm(S.i32, cpu.rm, cpu);
      mmxTransition(cpu);
      storeMm(S.i32[0], S.i32[1], cpu.reg, cpu);
    }
    return;
  }
  if (!cpu.p66) cpu.ud();
  sseCheck(cpu);
  loadXmm(S.i32, cpu.reg, cpu);
  if (cpu.mod === 3) {
    S.i32[2] = 0; S.i32[3] = 0;
    storeXmm(S.i32, cpu.rm, cpu);
  } else {
    writeMem(cpu, S.i32, 8, false);
  }
});

// 0F E7: MOVNTQ m64 <- mm, MOVNTDQ m128 <- xmm (66, aligned). Non-temporal hints are ignored.
def0f(0xe7, (cpu) => {
  cpu.decodeModrm();
  if (cpu.mod === 3 || cpu.rep) cpu.ud();
  if (cpu.p66) {
    sseCheck(cpu);
    loadXmm(S.i32, cpu.reg, cpu);
    writeMem(cpu, S.i32, 16, true);
  } else {
    mmxCheck(cpu);
    loadMm(S.i32, cpu.reg, cpu);
    writeMem(cpu, S.i32, 8, false);
    mmxTransition(cpu);
  }
});

// 0F C3: MOVNTI m32/m64 <- r32/r64 (an ordinary store here; no FPU state involved).
def0f(0xc3, (cpu) => {
  cpu.decodeModrm();
  if (cpu.mod === 3 || cpu.p66 || cpu.rep || cpu.lock) cpu.ud();
  const size = cpu.rexW ? 8 : 4;
  const v = cpu.getReg(size, cpu.reg);
  cpu.writeRm(size, v, cpu.hi);
});

// 0F F7: MASKMOVQ mm, mm / MASKMOVDQU xmm, xmm (66): bytes whose mask byte has bit 7 set are stored at
// DS:rDI (segment override allowed; address size from the 67 prefix).
def0f(0xf7, (cpu) => {
  cpu.decodeModrm();
  if (cpu.mod !== 3 || cpu.rep) cpu.ud();
  let n: number;
  if (cpu.p66) {
    sseCheck(cpu); n = 16;
    loadXmm(D.i32, cpu.reg, cpu); loadXmm(S.i32, cpu.rm, cpu);
  } else {
    mmxCheck(cpu); n = 8;
    loadMm(D.i32, cpu.reg, cpu); loadMm(S.i32, cpu.rm, cpu);
  }
  const off = cpu.adsize === 8 ? cpu.getReg64Num(7) : cpu.adsize === 4 ? cpu.gpr[14] >>> 0 : cpu.gpr[14] & 0xffff;
  const lin = cpu.linear(cpu.segOverride >= 0 ? cpu.segOverride : C.DS, off);
  let any = false;
  for (let i = 0; i < n; i++) if (S.u8[i] & 0x80) any = true;
  if (any) {
    cpu.probeWrite(lin, n);
    for (let i = 0; i < n; i++) if (S.u8[i] & 0x80) cpu.writeLin(cpu.addLin(lin, i), 1, D.u8[i]);
  }
  if (!cpu.p66) mmxTransition(cpu);
});

// 0F 77: EMMS marks every x87 register empty (SDM vol. 2 EMMS).
def0f(0x77, (cpu) => {
  if (cpu.p66 || cpu.rep) cpu.ud();
  mmxCheck(cpu);
  cpu.fpu.tagValid = 0;
});
