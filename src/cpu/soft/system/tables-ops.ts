// Descriptor-table and other system instructions: 0F 00 group (sldt, str, lldt, ltr, verr, verw), 0F 01 group
// (sgdt, sidt, lgdt, lidt, smsw, lmsw, invlpg, serialize, swapgs, rdtscp; monitor/mwait, clac/stac, xgetbv are not offered
// and raise #UD), 0F 02 lar, 0F 03 lsl and 63 arpl (legacy modes). SDM vol. 2 for each instruction.

import type { SoftCpu } from '../cpu.ts';
import * as C from '../constants.ts';
import { def0f } from '../tables.ts';
import { setArplHandler } from '../ops/alu.ts';
import {
  desc, readDescriptor, readDescriptorHighBase, descAttr, descBase, descLimit, descDpl, descPresent, descType,
  descIsCodeData, tableLinear, isCanonical,
} from './descriptors.ts';
import { swapgs, rdtscp } from './gs-tsc.ts';

const CODE = 1 << 11;
const CONFORMING = 1 << 10;
const READ_WRITE = 1 << 9;

function setZF(cpu: SoftCpu, z: boolean): void {
  const f = cpu.getFlags();
  cpu.setArith(z ? f | C.ZF : f & ~C.ZF);
}

/** UMIP (CR4.UMIP) makes SGDT/SIDT/SLDT/SMSW/STR privileged above CPL 0 (SDM vol. 3A §2.5). */
function checkUmip(cpu: SoftCpu): void {
  if ((cpu.cr4 & C.CR4_UMIP) && cpu.cpl > 0) cpu.gp(0);
}

/** Instructions that need CPL 0 in protected mode and cannot run in virtual-8086 mode. */
function requireRing0(cpu: SoftCpu): void {
  if (cpu.flags & C.VM) cpu.gp(0);
  if (cpu.protectedMode && cpu.cpl !== 0) cpu.gp(0);
}

/** Store a selector or a 16-bit value: a register destination takes it zero-extended to the operand size. */
function storeWord(cpu: SoftCpu, v: number): void {
  if (cpu.mod === 3) cpu.setReg(cpu.opsize === 8 ? 4 : cpu.opsize, cpu.rm, v, 0);
  else cpu.writeRm(2, v);
}

/** Base of a system descriptor; in IA-32e mode system descriptors are 16 bytes with base[63:32] at +8. */
function systemBase(cpu: SoftCpu, selector: number, lo: number, hi: number): number {
  const base = descBase(lo, hi);
  if (!(cpu.efer & C.EFER_LMA)) return base;
  const high = readDescriptorHighBase(cpu, selector);
  if (high === -1) cpu.gp(selector & 0xfffc);
  const full = high * C.TWO32 + base; // high is int32, so a canonical kernel address comes out negative
  if (!isCanonical(full)) cpu.gp(selector & 0xfffc);
  return full;
}

// ---------------------------------------------------------------------------------------------------------
// 0F 00 group

function lldt(cpu: SoftCpu, sel: number): void {
  if ((sel & 0xfffc) === 0) {
    cpu.ldtrSel = sel; cpu.ldtrBase = 0; cpu.ldtrLimit = 0; cpu.ldtrAttr = C.SEG_UNUSABLE;
    return;
  }
  const err = sel & 0xfffc;
  if (sel & 4) cpu.gp(err);
  if (!readDescriptor(cpu, sel)) cpu.gp(err);
  const lo = desc.lo, hi = desc.hi;
  if (descIsCodeData(hi) || descType(hi) !== 2) cpu.gp(err);
  if (!descPresent(hi)) cpu.fault(C.EXC_NP, err);
  const base = systemBase(cpu, sel, lo, hi);
  cpu.ldtrSel = sel; cpu.ldtrBase = base; cpu.ldtrLimit = descLimit(lo, hi); cpu.ldtrAttr = descAttr(hi);
}

function ltr(cpu: SoftCpu, sel: number): void {
  if ((sel & 0xfffc) === 0) cpu.gp(0);
  const err = sel & 0xfffc;
  if (sel & 4) cpu.gp(err);
  if (!readDescriptor(cpu, sel)) cpu.gp(err);
  const lo = desc.lo, hi = desc.hi, addr = desc.addr;
  const type = descType(hi);
  // An available TSS: 32/64-bit (9), or 16-bit (1) outside IA-32e mode.
  if (descIsCodeData(hi) || !(type === 9 || (type === 1 && !(cpu.efer & C.EFER_LMA)))) cpu.gp(err);
  if (!descPresent(hi)) cpu.fault(C.EXC_NP, err);
  const base = systemBase(cpu, sel, lo, hi);
  // Mark it busy in the GDT (SDM vol. 3A §7.2.2) and in TR.
  const busy = hi | (2 << 8);
  cpu.writeSys(tableLinear(cpu, addr, 4), 4, busy);
  cpu.trSel = sel; cpu.trBase = base; cpu.trLimit = descLimit(lo, hi); cpu.trAttr = descAttr(busy);
}

/** VERR/VERW: may the current privilege read (write) the segment named by `sel`? (ZF = 1 if so.) */
function verify(cpu: SoftCpu, sel: number, write: boolean): boolean {
  if ((sel & 0xfffc) === 0 || !readDescriptor(cpu, sel)) return false;
  const hi = desc.hi;
  if (!descIsCodeData(hi)) return false;
  const dpl = descDpl(hi);
  const code = (hi & CODE) !== 0;
  if (write ? code || !(hi & READ_WRITE) : code && !(hi & READ_WRITE)) return false;
  if (!(code && (hi & CONFORMING)) && (dpl < cpu.cpl || dpl < (sel & 3))) return false;
  return true;
}

def0f(0x00, (cpu) => {
  cpu.decodeModrm();
  const op = (cpu.modrm >> 3) & 7;
  if (!cpu.protectedMode || op > 5) cpu.ud(); // not recognized in real-address or virtual-8086 mode
  switch (op) {
    case 0: checkUmip(cpu); storeWord(cpu, cpu.ldtrSel); return; // sldt
    case 1: checkUmip(cpu); storeWord(cpu, cpu.trSel); return; // str
    case 2: { // lldt
      if (cpu.cpl !== 0) cpu.gp(0);
      lldt(cpu, cpu.readRm(2));
      return;
    }
    case 3: { // ltr
      if (cpu.cpl !== 0) cpu.gp(0);
      ltr(cpu, cpu.readRm(2));
      return;
    }
    case 4: setZF(cpu, verify(cpu, cpu.readRm(2), false)); return; // verr
    default: setZF(cpu, verify(cpu, cpu.readRm(2), true)); return; // verw
  }
});

// ---------------------------------------------------------------------------------------------------------
// 0F 01 group

/** SGDT/SIDT: limit, then base (4 bytes outside 64-bit mode whatever the operand size, 8 in 64-bit mode). */
function storeTableRegister(cpu: SoftCpu, limit: number, base: number): void {
  checkUmip(cpu);
  const lin = cpu.eaLinear();
  if (cpu.mode64) {
    cpu.probeWrite(lin, 10);
    cpu.writeLin(lin, 2, limit);
    cpu.writeLin(cpu.addLin(lin, 2), 8, base | 0, Math.floor(base / C.TWO32) | 0);
  } else {
    cpu.probeWrite(lin, 6);
    cpu.writeLin(lin, 2, limit);
    cpu.writeLin(cpu.addLin(lin, 2), 4, base | 0);
  }
}

/** LGDT/LIDT operand: [limit, base]; a 16-bit operand size keeps 24 bits of base outside 64-bit mode. */
function loadTableRegister(cpu: SoftCpu): [number, number] {
  requireRing0(cpu);
  const lin = cpu.eaLinear();
  const limit = cpu.readLin(lin, 2);
  let base: number;
  if (cpu.mode64) {
    const lo = cpu.readLin(cpu.addLin(lin, 2), 8);
    base = cpu.hi * C.TWO32 + (lo >>> 0);
    if (!isCanonical(base)) cpu.gp(0);
  } else {
    base = cpu.readLin(cpu.addLin(lin, 2), 4) >>> 0;
    if (cpu.opsize === 2) base &= 0xffffff;
  }
  return [limit, base];
}

function group0f01Register(cpu: SoftCpu): void {
  const op = (cpu.modrm >> 3) & 7;
  const rm = cpu.modrm & 7;
  switch (op) {
    case 4: // smsw r16/r32/r64
      checkUmip(cpu);
      if (cpu.opsize === 2) cpu.setReg(2, cpu.rm, cpu.cr0 & 0xffff);
      else cpu.setReg(cpu.opsize, cpu.rm, cpu.cr0, 0);
      return;
    case 6: lmsw(cpu, cpu.getReg(2, cpu.rm)); return;
    case 5:
      // 0F 01 E8 SERIALIZE (CPUID.07H.0:EDX[14]): every instruction of this CPU has completed, and stores into code
      // are seen by the next instruction, before it starts: nothing to do (F2/F3 prefixes: #UD, as XRESLDTRK/...).
      if (rm === 0 && cpu.rep === 0 && !cpu.lock) return;
      break;
    case 7:
      if (rm === 0) { swapgs(cpu); return; }
      if (rm === 1) { rdtscp(cpu); return; }
      break;
  }
  // VMX (C1-C4), monitor/mwait (C8/C9), clac/stac (CA/CB), xgetbv/xsetbv (D0/D1), SVM (D8-DF), rdpkru/wrpkru,
  // monitorx/mwaitx...: none is offered in CPUID, so each is #UD as on a CPU without the feature.
  cpu.ud();
}

function lmsw(cpu: SoftCpu, v: number): void {
  requireRing0(cpu);
  // Loads PE, MP, EM, TS; can set PE but never clear it (SDM LMSW).
  cpu.cr0 = (cpu.cr0 & ~0xe) | (v & 0xf) | (cpu.cr0 & C.CR0_PE);
  cpu.updateMode();
}

def0f(0x01, (cpu) => {
  cpu.decodeModrm();
  if (cpu.mod === 3) { group0f01Register(cpu); return; }
  switch ((cpu.modrm >> 3) & 7) {
    case 0: storeTableRegister(cpu, cpu.gdtrLimit, cpu.gdtrBase); return; // sgdt
    case 1: storeTableRegister(cpu, cpu.idtrLimit, cpu.idtrBase); return; // sidt
    case 2: { const [l, b] = loadTableRegister(cpu); cpu.gdtrLimit = l; cpu.gdtrBase = b; return; } // lgdt
    case 3: { const [l, b] = loadTableRegister(cpu); cpu.idtrLimit = l; cpu.idtrBase = b; return; } // lidt
    case 4: checkUmip(cpu); cpu.writeRm(2, cpu.cr0 & 0xffff); return; // smsw m16
    case 6: lmsw(cpu, cpu.readRm(2)); return; // lmsw m16
    case 7: { // invlpg
      requireRing0(cpu);
      cpu.invalidatePage(cpu.eaLinear());
      return;
    }
    default: cpu.ud();
  }
});

// ---------------------------------------------------------------------------------------------------------
// 0F 02 lar, 0F 03 lsl

/** System descriptor types LAR accepts (legacy / IA-32e), and those LSL accepts (SDM LAR, LSL tables). */
const LAR_TYPES_LEGACY = (1 << 1) | (1 << 2) | (1 << 3) | (1 << 4) | (1 << 5) | (1 << 9) | (1 << 11) | (1 << 12);
const LAR_TYPES_LONG = (1 << 2) | (1 << 9) | (1 << 11) | (1 << 12);
const LSL_TYPES_LEGACY = (1 << 1) | (1 << 2) | (1 << 3) | (1 << 9) | (1 << 11);
const LSL_TYPES_LONG = (1 << 2) | (1 << 9) | (1 << 11);

function accessible(cpu: SoftCpu, sel: number, lsl: boolean): boolean {
  if ((sel & 0xfffc) === 0 || !readDescriptor(cpu, sel)) return false;
  const hi = desc.hi;
  if (!descIsCodeData(hi)) {
    const lma = (cpu.efer & C.EFER_LMA) !== 0;
    const ok = lsl ? (lma ? LSL_TYPES_LONG : LSL_TYPES_LEGACY) : (lma ? LAR_TYPES_LONG : LAR_TYPES_LEGACY);
    if (!(ok & (1 << descType(hi)))) return false;
  }
  const conformingCode = (hi & (1 << 12)) !== 0 && (hi & CODE) !== 0 && (hi & CONFORMING) !== 0;
  const dpl = descDpl(hi);
  if (!conformingCode && (dpl < cpu.cpl || dpl < (sel & 3))) return false;
  return true;
}

def0f(0x02, (cpu) => { // lar
  if (!cpu.protectedMode) cpu.ud();
  cpu.decodeModrm();
  const sel = cpu.readRm(2);
  const ok = accessible(cpu, sel, false);
  if (ok) {
    const v = cpu.opsize === 2 ? desc.hi & 0xff00 : desc.hi & 0x00f0ff00;
    cpu.setReg(cpu.opsize === 8 ? 4 : cpu.opsize, cpu.reg, v, 0);
  }
  setZF(cpu, ok);
});

def0f(0x03, (cpu) => { // lsl
  if (!cpu.protectedMode) cpu.ud();
  cpu.decodeModrm();
  const sel = cpu.readRm(2);
  const ok = accessible(cpu, sel, true);
  if (ok) {
    const limit = descLimit(desc.lo, desc.hi);
    cpu.setReg(cpu.opsize === 8 ? 4 : cpu.opsize, cpu.reg, cpu.opsize === 2 ? limit & 0xffff : limit | 0, 0);
  }
  setZF(cpu, ok);
});

// ---------------------------------------------------------------------------------------------------------
// 63 /r: arpl r/m16, r16 outside 64-bit mode (in 64-bit mode the same byte is MOVSXD: ops/alu.ts owns opcode 63
// and calls this for the legacy modes).

setArplHandler((cpu) => {
  if (!cpu.protectedMode) cpu.ud();
  cpu.decodeModrm();
  const dst = cpu.readRm(2);
  const src = cpu.getReg(2, cpu.reg);
  if ((dst & 3) < (src & 3)) {
    cpu.writeRm(2, (dst & ~3) | (src & 3));
    setZF(cpu, true);
  } else {
    setZF(cpu, false);
  }
});
