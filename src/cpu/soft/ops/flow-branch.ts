// Near control transfers: Jcc, JMP, CALL, RET, LOOP/LOOPcc/JrCXZ, and FF /2 (CALL r/m), FF /4 (JMP r/m).
// Intel SDM vol. 2A/2B, the instruction pages of each. In 64-bit mode near branches use a 64-bit operand size
// whatever the 66h prefix says (Intel behaviour; SDM vol. 2 §2.2.1.7), a target must be canonical (#GP(0) at the
// branch, before RIP changes) and the relative displacement is always 32 bits wide for rel16/32 forms.
// Outside 64-bit mode the target is truncated to the operand size (16-bit code keeps IP in 0..0xFFFF).
import type { SoftCpu } from '../cpu.ts';
import * as C from '../constants.ts';
import { def1, def0f } from '../tables.ts';

const TWO47 = C.TWO47;
const TWO32 = C.TWO32;

/** Set RIP to `target` (already a full-width number) for a near branch, with the mode's checks. */
export function branchTo(c: SoftCpu, target: number): void {
  if (c.mode64) {
    if (target < -TWO47 || target >= TWO47) c.gp(0);
    c.rip = target;
  } else {
    c.rip = c.opsize === 2 ? target & 0xffff : target >>> 0;
  }
}

/**
 * 64-bit mode push of 8 bytes: RSP is the linear address (no segment base, no stack-size checks), so this skips
 * the general stack path. The write happens before RSP changes (a fault leaves RSP alone).
 */
export function push64(c: SoftCpu, lo: number, hi: number): void {
  const spLo = c.gpr[8], spHi = c.gpr[9];
  const nLo = (spLo - 8) | 0;
  const nHi = (spLo >>> 0) < 8 ? (spHi - 1) | 0 : spHi;
  c.writeLin(nHi * TWO32 + (nLo >>> 0), 8, lo, hi);
  c.gpr[8] = nLo;
  c.gpr[9] = nHi;
}

/** 64-bit mode pop of 8 bytes: returns the low half, the high half is left in `c.hi`. */
export function pop64(c: SoftCpu): number {
  const spLo = c.gpr[8], spHi = c.gpr[9];
  const v = c.readLin(spHi * TWO32 + (spLo >>> 0), 8);
  const nLo = (spLo + 8) | 0;
  if ((spLo >>> 0) > 0xfffffff7) c.gpr[9] = (spHi + 1) | 0;
  c.gpr[8] = nLo;
  return v;
}

/** A 64-bit (hi, lo) pair as a signed number (exact for canonical addresses). */
function num64(lo: number, hi: number): number {
  return hi * TWO32 + (lo >>> 0);
}

// ---- Jcc rel8 (70-7F), Jcc rel16/32 (0F 80-8F)

def1(0x70, (c) => {
  const d = c.fetchS8();
  if (c.condition(c.opcode & 15)) branchTo(c, c.rip + d);
}, 0x7f);

def0f(0x80, (c) => {
  const d = c.mode64 || c.opsize !== 2 ? c.fetch32() : (c.fetch16() << 16) >> 16;
  if (c.condition(c.opcode & 15)) branchTo(c, c.rip + d);
}, 0x8f);

// ---- JMP rel8 (EB), JMP rel16/32 (E9)

def1(0xeb, (c) => {
  const d = c.fetchS8();
  branchTo(c, c.rip + d);
});

def1(0xe9, (c) => {
  const d = c.mode64 || c.opsize !== 2 ? c.fetch32() : (c.fetch16() << 16) >> 16;
  branchTo(c, c.rip + d);
});

// ---- CALL rel16/32 (E8): push the address of the next instruction, then branch.

def1(0xe8, (c) => {
  if (c.mode64) {
    const d = c.fetch32();
    const ret = c.rip;
    const target = ret + d;
    if (target < -TWO47 || target >= TWO47) c.gp(0);
    push64(c, ret | 0, Math.floor(ret / TWO32) | 0);
    c.rip = target;
    return;
  }
  const size = c.opsize;
  const d = size === 2 ? (c.fetch16() << 16) >> 16 : c.fetch32();
  const ret = c.rip;
  c.push(size, size === 2 ? ret & 0xffff : ret | 0);
  c.rip = size === 2 ? (ret + d) & 0xffff : (ret + d) >>> 0;
});

// ---- RET (C3) and RET imm16 (C2): pop the return address (then release imm16 bytes of parameters).

function ret(c: SoftCpu, release: number): void {
  if (c.mode64 && c.opsize !== 2 && release === 0) {
    const spLo = c.gpr[8], spHi = c.gpr[9];
    const lo = c.readLin(spHi * TWO32 + (spLo >>> 0), 8);
    const target = num64(lo, c.hi);
    if (target < -TWO47 || target >= TWO47) c.gp(0);
    if ((spLo >>> 0) > 0xfffffff7) c.gpr[9] = (spHi + 1) | 0;
    c.gpr[8] = (spLo + 8) | 0;
    c.rip = target;
    return;
  }
  const size = c.stackOpsize();
  let target: number;
  if (size === 8) {
    const lo = c.peekStack(0, 8);
    target = num64(lo, c.hi);
    if (target < -TWO47 || target >= TWO47) c.gp(0);
  } else {
    const v = c.peekStack(0, size);
    target = size === 2 ? v : v >>> 0;
  }
  c.setSp(c.getSp() + size + release);
  c.rip = target;
}

def1(0xc3, (c) => ret(c, 0));
def1(0xc2, (c) => {
  const n = c.fetch16();
  ret(c, n);
});

// ---- LOOPNE (E0), LOOPE (E1), LOOP (E2), JrCXZ (E3): the counter is CX, ECX or RCX by the address size.

/** Decrement the address-size counter without touching flags; returns true when it is still non-zero. */
function decCounter(c: SoftCpu): boolean {
  const a = c.adsize;
  const lo = c.gpr[2];
  if (a === 2) {
    const v = (lo - 1) & 0xffff;
    c.gpr[2] = (lo & ~0xffff) | v;
    return v !== 0;
  }
  const v = (lo - 1) | 0;
  c.gpr[2] = v;
  if (a === 4) {
    if (c.mode64) c.gpr[3] = 0; // a 32-bit register write zero-extends in 64-bit mode
    return v !== 0;
  }
  if (lo === 0) c.gpr[3] = (c.gpr[3] - 1) | 0;
  return v !== 0 || c.gpr[3] !== 0;
}

def1(0xe0, (c) => {
  const d = c.fetchS8();
  if (decCounter(c) && !c.getZF()) branchTo(c, c.rip + d);
});
def1(0xe1, (c) => {
  const d = c.fetchS8();
  if (decCounter(c) && c.getZF()) branchTo(c, c.rip + d);
});
def1(0xe2, (c) => {
  const d = c.fetchS8();
  if (decCounter(c)) branchTo(c, c.rip + d);
});
def1(0xe3, (c) => {
  const d = c.fetchS8();
  const a = c.adsize;
  const zero = a === 2 ? (c.gpr[2] & 0xffff) === 0 : a === 4 ? c.gpr[2] === 0 : c.gpr[2] === 0 && c.gpr[3] === 0;
  if (zero) branchTo(c, c.rip + d);
});

// ---- FF /2 CALL r/m (near, indirect) and FF /4 JMP r/m (near, indirect). Called after decodeModrm().

/** Read the r/m branch target for the mode's operand size (64 in 64-bit mode). */
function indirectTarget(c: SoftCpu): number {
  if (c.mode64) {
    const lo = c.readRm(8);
    const t = num64(lo, c.hi);
    if (t < -TWO47 || t >= TWO47) c.gp(0);
    return t;
  }
  const v = c.readRm(c.opsize);
  return c.opsize === 2 ? v : v >>> 0;
}

export function callNearIndirect(c: SoftCpu): void {
  const target = indirectTarget(c);
  const ret = c.rip;
  if (c.mode64) push64(c, ret | 0, Math.floor(ret / TWO32) | 0);
  else c.push(c.opsize, c.opsize === 2 ? ret & 0xffff : ret | 0);
  c.rip = target;
}

export function jmpNearIndirect(c: SoftCpu): void {
  c.rip = indirectTarget(c);
}
