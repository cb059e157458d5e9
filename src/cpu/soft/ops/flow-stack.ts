// Stack instructions: PUSH/POP reg, PUSH imm, PUSH r/m (FF /6), POP r/m (8F /0), PUSHA/POPA, PUSHF/POPF,
// LAHF/SAHF, ENTER/LEAVE. Intel SDM vol. 2B, the instruction pages of each. In 64-bit mode the operand size of
// these defaults to 64 bits and 66h selects 16 bits (there is no 32-bit form; SDM vol. 1 §6.2.5).
import type { SoftCpu } from '../cpu.ts';
import { CPU_FAULT } from '../fault.ts';
import * as C from '../constants.ts';
import { def1 } from '../tables.ts';
import { push64, pop64 } from './flow-branch.ts';

// ---- PUSH r (50-57), POP r (58-5F); REX.B selects r8-r15.

def1(0x50, (c) => {
  const r = (c.opcode & 7) | c.rexB;
  if (c.mode64 && c.opsize !== 2) { push64(c, c.gpr[2 * r], c.gpr[2 * r + 1]); return; }
  const size = c.stackOpsize();
  // PUSH rSP pushes the value rSP had before the instruction (SDM PUSH): we read it before pushing.
  if (size === 8) c.push(8, c.gpr[2 * r], c.gpr[2 * r + 1]);
  else c.push(size, size === 2 ? c.gpr[2 * r] & 0xffff : c.gpr[2 * r]);
}, 0x57);

def1(0x58, (c) => {
  const r = (c.opcode & 7) | c.rexB;
  if (c.mode64 && c.opsize !== 2) {
    const lo = pop64(c);
    // POP rSP: the register receives the popped value (the increment is overwritten).
    c.gpr[2 * r] = lo;
    c.gpr[2 * r + 1] = c.hi;
    return;
  }
  const size = c.stackOpsize();
  const v = c.pop(size);
  // POP rSP: the register receives the popped value (the increment is overwritten).
  c.setReg(size, r, v, c.hi);
}, 0x5f);

// ---- PUSH imm16/32 (68), PUSH imm8 (6A): sign-extended to the operand size.

def1(0x68, (c) => {
  const size = c.stackOpsize();
  if (size === 2) { c.push(2, c.fetch16()); return; }
  const v = c.fetch32();
  c.push(size, v, v >> 31);
});

def1(0x6a, (c) => {
  const size = c.stackOpsize();
  const v = c.fetchS8();
  c.push(size, size === 2 ? v & 0xffff : v, v >> 31);
});

// ---- FF /6 PUSH r/m (called after decodeModrm()).

export function pushRm(c: SoftCpu): void {
  const size = c.stackOpsize();
  const v = c.readRm(size);
  c.push(size, v, c.hi);
}

// ---- 8F /0 POP r/m. If rSP is the base of the memory operand, the address is computed with rSP already
// incremented (SDM POP), so the ModRM bytes are decoded a second time once rSP has its new value.

def1(0x8f, (c) => {
  const modrmAt = c.rip;
  c.decodeModrm();
  if ((c.modrm & 0x38) !== 0) { c.unimplemented('opcode 8f /' + ((c.modrm >> 3) & 7)); }
  const size = c.stackOpsize();
  const v = c.peekStack(0, size);
  const hi = c.hi;
  if (c.mod === 3) {
    c.setSp(c.getSp() + size);
    c.setReg(size, c.rm, v, hi);
    return;
  }
  const spLo = c.gpr[8], spHi = c.gpr[9];
  c.setSp(c.getSp() + size);
  try {
    c.rip = modrmAt;
    c.decodeModrm();
    c.writeRm(size, v, hi);
  } catch (e) {
    if (e === CPU_FAULT) { c.gpr[8] = spLo; c.gpr[9] = spHi; }
    throw e;
  }
});

// ---- PUSHA/PUSHAD (60), POPA/POPAD (61): invalid in 64-bit mode.

def1(0x60, (c) => {
  if (c.mode64) c.ud();
  const size = c.opsize;
  const sp = c.getSp();
  // Probe the whole 8-slot frame first so a fault leaves the registers and memory as they were.
  const stackBytes = 8 * size;
  const ss = c.stackSize();
  const low = ss === 2 ? (sp - stackBytes) & 0xffff : (sp - stackBytes) >>> 0;
  c.probeWrite(c.linear(C.SS, low), stackBytes);
  const temp = c.gpr[8];
  for (let r = 0; r < 8; r++) {
    const v = r === 4 ? temp : c.gpr[2 * r];
    c.push(size, size === 2 ? v & 0xffff : v);
  }
});

def1(0x61, (c) => {
  if (c.mode64) c.ud();
  const size = c.opsize;
  const vals = popaScratch;
  for (let k = 0; k < 8; k++) vals[k] = c.peekStack(k * size, size);
  for (let k = 0; k < 8; k++) {
    const r = 7 - k;
    if (r !== 4) c.setReg(size, r, vals[k]);
  }
  c.setSp(c.getSp() + 8 * size);
});
const popaScratch = new Int32Array(8);

// ---- PUSHF (9C), POPF (9D)

/** EFLAGS bits POPF may change at CPL 0 outside virtual-8086 mode (all but VM, RF, VIF, VIP and reserved). */
const POPF_CPL0 = C.CF | C.PF | C.AF | C.ZF | C.SF | C.TF | C.IF | C.DF | C.OF | C.IOPL | C.NT | C.AC | C.ID;

function iopl(c: SoftCpu): number {
  return (c.flags >> 12) & 3;
}

def1(0x9c, (c) => {
  // Virtual-8086 mode with IOPL < 3 traps PUSHF to the monitor (no CR4.VME support).
  if ((c.flags & C.VM) && iopl(c) < 3) c.gp(0);
  const size = c.stackOpsize();
  // The stored image has VM and RF cleared (SDM PUSHF).
  const f = c.getFlags() & ~(C.VM | C.RF);
  c.push(size, size === 2 ? f & 0xffff : f, 0);
});

def1(0x9d, (c) => {
  const size = c.stackOpsize();
  let writable: number;
  if (c.flags & C.VM) {
    // SDM POPF: in virtual-8086 mode only IOPL = 3 allows POPF, and it cannot change IOPL.
    if (iopl(c) < 3) c.gp(0);
    writable = POPF_CPL0 & ~C.IOPL;
  } else if (c.cpl === 0 || !(c.cr0 & C.CR0_PE)) {
    writable = POPF_CPL0;
  } else {
    // CPL > 0: IOPL never changes; IF only when CPL <= IOPL.
    writable = POPF_CPL0 & ~C.IOPL;
    if (c.cpl > iopl(c)) writable &= ~C.IF;
  }
  const v = c.pop(size);
  if (size === 2) writable &= 0xffff;
  const old = c.getFlags();
  const wasIf = old & C.IF;
  // RF is cleared by POPF (SDM POPF operation section); VIP/VIF/VM keep their values.
  const nf = ((old & ~writable) | (v & writable)) & ~C.RF;
  c.setFlagsValue(nf);
  if ((nf & C.IF) && !wasIf) c.eventPending = true;
});

// ---- LAHF (9F), SAHF (9E): AH <-> SF ZF AF PF CF (bit 1 reads as 1). Valid in 64-bit mode because we
// advertise LAHF-SAHF in CPUID 80000001h ECX bit 0.

const SAHF_MASK = C.SF | C.ZF | C.AF | C.PF | C.CF;

def1(0x9f, (c) => {
  const f = (c.getFlags() & SAHF_MASK) | C.FLAGS_FIXED;
  c.gpr[0] = (c.gpr[0] & ~0xff00) | (f << 8);
});

def1(0x9e, (c) => {
  const ah = (c.gpr[0] >> 8) & 0xff;
  c.settleFlags();
  c.setArith((c.flags & C.OF) | (ah & SAHF_MASK));
});

// ---- ENTER imm16, imm8 (C8) and LEAVE (C9)

def1(0xc8, (c) => {
  const alloc = c.fetch16();
  const level = c.fetch8() & 31;
  const size = c.stackOpsize();
  const ss = c.stackSize();
  const wrap = (v: number) => (ss === 8 ? v : ss === 4 ? v >>> 0 : v & 0xffff);
  // Work on local copies of rSP/rBP and write the frame through them; registers change only at the end, so a
  // fault part-way leaves them untouched (the bytes written below rSP are not architecturally visible).
  let sp = c.getSp();
  const bp = ss === 8 ? c.getReg64Num(5) : ss === 4 ? c.gpr[10] >>> 0 : c.gpr[10] & 0xffff;
  sp = wrap(sp - size);
  c.writeLin(c.linear(C.SS, sp), size, c.gpr[10], c.gpr[11]);
  const frameTemp = sp;
  let bpWalk = bp;
  for (let i = 1; i < level; i++) {
    bpWalk = wrap(bpWalk - size);
    const v = c.readLin(c.linear(C.SS, bpWalk), size);
    const hi = c.hi;
    sp = wrap(sp - size);
    c.writeLin(c.linear(C.SS, sp), size, v, hi);
  }
  if (level > 0) {
    sp = wrap(sp - size);
    c.writeLin(c.linear(C.SS, sp), size, frameTemp | 0, Math.floor(frameTemp / C.TWO32) | 0);
  }
  const newSp = wrap(sp - alloc);
  // rBP gets FrameTemp at the operand size.
  if (size === 8) c.setReg64Num(5, frameTemp);
  else c.setReg(size, 5, frameTemp | 0);
  c.setSp(newSp);
});

def1(0xc9, (c) => {
  const size = c.stackOpsize();
  const ss = c.stackSize();
  const bp = ss === 8 ? c.getReg64Num(5) : ss === 4 ? c.gpr[10] >>> 0 : c.gpr[10] & 0xffff;
  const v = c.readLin(c.linear(C.SS, bp), size);
  const hi = c.hi;
  c.setSp(bp);
  c.setSp(c.getSp() + size);
  c.setReg(size, 5, v, hi);
});
