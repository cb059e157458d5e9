// Exception and interrupt delivery (Intel SDM vol. 3A ch. 6: §6.12 protected mode, §6.14 IA-32e mode, §20.1.4
// real mode, §20.3 virtual-8086 mode), the software-interrupt instructions (CD int n, CC int3, CE into, F1 int1)
// and IRET (CF), in every mode.

import { installEventDelivery, EventKind, CPU_FAULT, type SoftCpu } from '../cpu.ts';
import * as C from '../constants.ts';
import { def1 } from '../tables.ts';
import {
  desc, readDescriptor, tableLinear, descDpl, descPresent, descIsCode, descIsCodeData, descLimit, markAccessed,
  loadFromDescriptor, snapshotOf, isCanonical,
} from './descriptors.ts';

const CONFORMING = 1 << 10;
const DATA_SEGMENTS = [C.ES, C.DS, C.FS, C.GS];
const WRITABLE = 1 << 9;
const CODE = 1 << 11;
const DESC_L = 1 << 21;
const DESC_DB = 1 << 22;

/** Exceptions that push an error code (SDM vol. 3A §6.15: #DF, #TS, #NP, #SS, #GP, #PF, #AC, #CP). */
const ERROR_CODE_VECTORS = (1 << 8) | (1 << 10) | (1 << 11) | (1 << 12) | (1 << 13) | (1 << 14) | (1 << 17) | (1 << 21);

function pushesErrorCode(vector: number, kind: EventKind): boolean {
  return kind === EventKind.Exception && vector < 32 && (ERROR_CODE_VECTORS & (1 << vector)) !== 0;
}

/** INT n, INT3 and INTO are checked against the gate's DPL; exceptions, interrupts and INT1 are not (§6.12.1.1). */
function isSoftware(kind: EventKind): boolean {
  return kind === EventKind.Software || kind === EventKind.SoftwareException;
}

/** Segment selectors: the not-present / limit error code format (SDM §6.13). */
function selErr(sel: number, ext: number): number {
  return (sel & 0xfffc) | ext;
}

let taskGateLogged = false;

/**
 * Deliver `vector` through the IVT (real mode) or IDT. `cpu.rip` is the return address (the faulting instruction
 * for faults, the next one for traps and interrupts). On a fault during delivery every register is put back
 * as it was before the CPU_FAULT propagates (cpu.ts turns it into #DF or a triple fault).
 */
export function deliverEvent(cpu: SoftCpu, vector: number, kind: EventKind, errorCode: number): void {
  const snap = snapshotOf(cpu);
  snap.save(cpu);
  try {
    if (!(cpu.cr0 & C.CR0_PE)) deliverReal(cpu, vector);
    else if (cpu.efer & C.EFER_LMA) deliverLong(cpu, vector, kind, errorCode);
    else deliverProtected(cpu, vector, kind, errorCode);
  } catch (e) {
    if (e === CPU_FAULT) snap.restore(cpu);
    throw e;
  }
  cpu.halted = false;
  if (cpu.flags & C.IF) cpu.eventPending = true;
}

/** Real-address mode: IVT entry of 4 bytes (IP, CS); push FLAGS, CS, IP; clear IF, TF, AC (SDM §20.1.4). */
function deliverReal(cpu: SoftCpu, vector: number): void {
  const off = vector * 4;
  if (off + 3 > cpu.idtrLimit) cpu.gp(0);
  const lin = (cpu.idtrBase + off) >>> 0;
  const ip = cpu.readSys(lin, 2);
  const cs = cpu.readSys((lin + 2) >>> 0, 2);
  const flags = cpu.getFlags();
  cpu.push(2, flags & 0xffff);
  cpu.push(2, cpu.segSel[C.CS]);
  cpu.push(2, cpu.rip & 0xffff);
  cpu.setFlagsValue(flags & ~(C.IF | C.TF | C.AC));
  cpu.loadSegmentReal(C.CS, cs);
  cpu.rip = ip;
}

/** Legacy protected mode (and virtual-8086 mode): 8-byte gates, 16- or 32-bit frames, stack switch from the TSS. */
function deliverProtected(cpu: SoftCpu, vector: number, kind: EventKind, errorCode: number): void {
  const ext = isSoftware(kind) ? 0 : 1;
  const idtErr = vector * 8 + 2 + ext;
  if (vector * 8 + 7 > cpu.idtrLimit) cpu.gp(idtErr);
  const gateLin = (cpu.idtrBase + vector * 8) >>> 0;
  const glo = cpu.readSys(gateLin, 4);
  const ghi = cpu.readSys((gateLin + 4) >>> 0, 4);
  const type = (ghi >>> 8) & 0x1f; // type with the S bit: system gates have S = 0
  if (type === 5) {
    if (!taskGateLogged) {
      taskGateLogged = true;
      process.stderr.write(`ringzero: vCPU ${cpu.env.cpuIndex ?? 0}: task gate for vector ${vector} not supported: #GP\n`);
    }
    cpu.gp(idtErr);
  }
  if (type !== 6 && type !== 7 && type !== 14 && type !== 15) cpu.gp(idtErr);
  if (isSoftware(kind) && descDpl(ghi) < cpu.cpl) cpu.gp(idtErr);
  if (!descPresent(ghi)) cpu.fault(C.EXC_NP, idtErr);
  const gate32 = type >= 14;
  const interruptGate = (type & 1) === 0;
  const csSel = glo >>> 16;
  const offset = gate32 ? ((glo & 0xffff) | (ghi & 0xffff0000)) >>> 0 : glo & 0xffff;

  if ((csSel & 0xfffc) === 0) cpu.gp(ext);
  if (!readDescriptor(cpu, csSel)) cpu.gp(selErr(csSel, ext));
  const clo = desc.lo, caddr = desc.addr;
  let chi = desc.hi;
  const dpl = descDpl(chi);
  if (!descIsCode(chi) || dpl > cpu.cpl) cpu.gp(selErr(csSel, ext));
  if (!descPresent(chi)) cpu.fault(C.EXC_NP, selErr(csSel, ext));

  const v86 = (cpu.flags & C.VM) !== 0;
  const oldFlags = cpu.getFlags();
  const oldSs = cpu.segSel[C.SS];
  const oldEsp = cpu.gpr[8];
  const oldCs = cpu.segSel[C.CS];
  const oldEip = cpu.rip;
  const size = gate32 ? 4 : 2;
  const interPrivilege = !(chi & CONFORMING) && dpl < cpu.cpl;
  let newCpl = cpu.cpl;

  if (interPrivilege) {
    // Virtual-8086 mode interrupts must go to a ring-0, non-conforming handler (§20.3.1.1).
    if (v86 && dpl !== 0) cpu.gp(selErr(csSel, ext));
    // New SS:ESP for ring `dpl` from the current TSS (32-bit TSS: ESPn at 4 + 8n; 16-bit TSS: SPn at 2 + 4n).
    const tss32 = (cpu.trAttr & 8) !== 0;
    const tssOff = tss32 ? 4 + dpl * 8 : 2 + dpl * 4;
    const tssErr = selErr(cpu.trSel, ext);
    if (tssOff + (tss32 ? 5 : 3) > cpu.trLimit) cpu.fault(C.EXC_TS, tssErr);
    const spLin = (cpu.trBase + tssOff) >>> 0;
    const newSp = tss32 ? cpu.readSys(spLin, 4) >>> 0 : cpu.readSys(spLin, 2);
    const newSs = cpu.readSys((spLin + (tss32 ? 4 : 2)) >>> 0, 2);
    if ((newSs & 0xfffc) === 0) cpu.fault(C.EXC_TS, ext);
    if (!readDescriptor(cpu, newSs)) cpu.fault(C.EXC_TS, selErr(newSs, ext));
    const slo = desc.lo, saddr = desc.addr;
    let shi = desc.hi;
    if ((newSs & 3) !== dpl || descDpl(shi) !== dpl || !descIsCodeData(shi) || (shi & CODE) || !(shi & WRITABLE)) {
      cpu.fault(C.EXC_TS, selErr(newSs, ext));
    }
    if (!descPresent(shi)) cpu.fault(C.EXC_SS, selErr(newSs, ext));
    shi = markAccessed(cpu, saddr, shi);
    // Switch to the inner stack; from here on pushes use the handler's privilege.
    if (v86) cpu.setFlagsValue(oldFlags & ~C.VM);
    newCpl = dpl;
    cpu.cpl = dpl;
    loadFromDescriptor(cpu, C.SS, newSs, slo, shi);
    cpu.cpl = dpl;
    if (cpu.stackSize() === 4) { cpu.gpr[8] = newSp; cpu.gpr[9] = 0; } else cpu.setSp(newSp);
    if (v86) {
      cpu.push(size, cpu.segSel[C.GS]);
      cpu.push(size, cpu.segSel[C.FS]);
      cpu.push(size, cpu.segSel[C.DS]);
      cpu.push(size, cpu.segSel[C.ES]);
    }
    cpu.push(size, oldSs);
    cpu.push(size, oldEsp);
  } else if (v86) {
    cpu.gp(selErr(csSel, ext));
  }
  if (offset > descLimit(clo, chi)) cpu.gp(ext);
  cpu.push(size, oldFlags);
  cpu.push(size, oldCs);
  cpu.push(size, oldEip);
  if (pushesErrorCode(vector, kind)) cpu.push(size, errorCode < 0 ? 0 : errorCode);
  chi = markAccessed(cpu, caddr, chi);

  cpu.setFlagsValue(oldFlags & ~(C.TF | C.NT | C.RF | C.VM | (interruptGate ? C.IF : 0)));
  loadFromDescriptor(cpu, C.CS, (csSel & 0xfffc) | newCpl, clo, chi);
  cpu.rip = offset;
  if (v86) {
    // The handler runs with null data segments; the v86 ones are on its stack (§20.3.1.1).
    for (const s of DATA_SEGMENTS) cpu.loadSegmentRaw(s, 0, 0, 0, C.SEG_UNUSABLE);
  }
}

/** IA-32e mode: 16-byte gates, 64-bit frames always with SS:RSP, IST stacks, RSP aligned to 16 (SDM §6.14). */
function deliverLong(cpu: SoftCpu, vector: number, kind: EventKind, errorCode: number): void {
  const ext = isSoftware(kind) ? 0 : 1;
  const idtErr = vector * 8 + 2 + ext;
  if (vector * 16 + 15 > cpu.idtrLimit) cpu.gp(idtErr);
  const gateLin = tableLinear(cpu, cpu.idtrBase, vector * 16);
  const w0 = cpu.readSys(gateLin, 4);
  const w1 = cpu.readSys(tableLinear(cpu, cpu.idtrBase, vector * 16 + 4), 4);
  const w2 = cpu.readSys(tableLinear(cpu, cpu.idtrBase, vector * 16 + 8), 4);
  const type = (w1 >>> 8) & 0x1f;
  if (type !== 14 && type !== 15) cpu.gp(idtErr); // only 64-bit interrupt and trap gates exist in IA-32e mode
  if (isSoftware(kind) && descDpl(w1) < cpu.cpl) cpu.gp(idtErr);
  if (!descPresent(w1)) cpu.fault(C.EXC_NP, idtErr);
  const interruptGate = type === 14;
  const csSel = w0 >>> 16;
  const offset = w2 * C.TWO32 + (((w0 & 0xffff) | (w1 & 0xffff0000)) >>> 0);
  const ist = w1 & 7;

  if ((csSel & 0xfffc) === 0) cpu.gp(ext);
  if (!readDescriptor(cpu, csSel)) cpu.gp(selErr(csSel, ext));
  const clo = desc.lo, caddr = desc.addr;
  let chi = desc.hi;
  const dpl = descDpl(chi);
  if (!descIsCode(chi) || dpl > cpu.cpl || !(chi & DESC_L) || (chi & DESC_DB)) cpu.gp(selErr(csSel, ext));
  if (!descPresent(chi)) cpu.fault(C.EXC_NP, selErr(csSel, ext));
  if (!isCanonical(offset)) cpu.gp(ext);

  const interPrivilege = !(chi & CONFORMING) && dpl < cpu.cpl;
  const newCpl = interPrivilege ? dpl : cpu.cpl;
  let newRsp: number;
  if (ist || interPrivilege) {
    // 64-bit TSS: RSP0-2 at 4 + 8n, IST1-7 at 0x24 + 8(n-1) (SDM §7.7).
    const tssOff = ist ? 0x24 + (ist - 1) * 8 : 4 + dpl * 8;
    if (tssOff + 7 > cpu.trLimit) cpu.fault(C.EXC_TS, selErr(cpu.trSel, ext));
    const lo = cpu.readSys(tableLinear(cpu, cpu.trBase, tssOff), 8);
    newRsp = cpu.hi * C.TWO32 + (lo >>> 0);
  } else {
    newRsp = cpu.getReg64Num(4);
  }
  if (!isCanonical(newRsp)) cpu.fault(C.EXC_SS, ext);
  newRsp -= (newRsp | 0) & 15;

  const oldFlags = cpu.getFlags();
  const oldRspLo = cpu.gpr[8], oldRspHi = cpu.gpr[9];
  const rip = cpu.rip;
  const push = pushesErrorCode(vector, kind);
  const frame = push ? 48 : 40;
  // The frame is written with the handler's privilege (supervisor unless a ring-3 handler at CPL 3).
  cpu.cpl = newCpl;
  cpu.writeLin(newRsp - 8, 8, cpu.segSel[C.SS], 0);
  cpu.writeLin(newRsp - 16, 8, oldRspLo, oldRspHi);
  cpu.writeLin(newRsp - 24, 8, oldFlags, 0);
  cpu.writeLin(newRsp - 32, 8, cpu.segSel[C.CS], 0);
  cpu.writeLin(newRsp - 40, 8, rip | 0, Math.floor(rip / C.TWO32) | 0);
  if (push) cpu.writeLin(newRsp - 48, 8, errorCode < 0 ? 0 : errorCode, 0);
  chi = markAccessed(cpu, caddr, chi);

  cpu.setFlagsValue(oldFlags & ~(C.TF | C.NT | C.RF | C.VM | (interruptGate ? C.IF : 0)));
  // A privilege change loads a null SS whose RPL is the new CPL (§6.14.4).
  if (interPrivilege) cpu.loadSegmentRaw(C.SS, newCpl, 0, 0, C.SEG_UNUSABLE | (newCpl << C.SEG_DPL_SHIFT));
  loadFromDescriptor(cpu, C.CS, (csSel & 0xfffc) | newCpl, clo, chi);
  cpu.setReg64Num(4, newRsp - frame);
  cpu.rip = offset;
}

installEventDelivery(deliverEvent);

// ---------------------------------------------------------------------------------------------------------
// Software interrupts

// CD ib: int n. In virtual-8086 mode it is IOPL-sensitive (SDM §20.2.7; CR4.VME is not offered).
def1(0xcd, (cpu) => {
  const vector = cpu.fetch8();
  if ((cpu.flags & C.VM) && (cpu.flags & C.IOPL) !== C.IOPL) cpu.gp(0);
  deliverEvent(cpu, vector, EventKind.Software, -1);
});

// CC: int3 (#BP as a trap: the frame points after the instruction)
def1(0xcc, (cpu) => deliverEvent(cpu, C.EXC_BP, EventKind.SoftwareException, -1));

// CE: into (#UD in 64-bit mode)
def1(0xce, (cpu) => {
  if (cpu.mode64) cpu.ud();
  if (cpu.getOF()) deliverEvent(cpu, C.EXC_OF, EventKind.SoftwareException, -1);
});

// F1: int1 / icebp: #DB delivered like a hardware event (no gate DPL check)
def1(0xf1, (cpu) => deliverEvent(cpu, C.EXC_DB, EventKind.PrivilegedSoftware, -1));

// ---------------------------------------------------------------------------------------------------------
// IRET / IRETD / IRETQ (SDM vol. 2 "IRET/IRETD/IRETQ")

/** EFLAGS bits IRET may always restore outside virtual-8086 mode; IF, IOPL, VIF, VIP depend on CPL/IOPL. */
const IRET_BASE_MASK = C.ARITH_FLAGS | C.TF | C.DF | C.NT | C.RF | C.AC | C.ID;

def1(0xcf, (cpu) => iret(cpu));

export function iret(cpu: SoftCpu): void {
  const size = cpu.opsize;
  if (!(cpu.cr0 & C.CR0_PE)) { iretRealOrV86(cpu, size, false); return; }
  if (cpu.flags & C.VM) {
    if ((cpu.flags & C.IOPL) !== C.IOPL) cpu.gp(0);
    iretRealOrV86(cpu, size, true);
    return;
  }
  const lma = (cpu.efer & C.EFER_LMA) !== 0;
  if (cpu.flags & C.NT) {
    // Return from a nested task: task switching is not supported (and is #GP in IA-32e mode).
    if (!lma) {
      if (!taskGateLogged) {
        taskGateLogged = true;
        process.stderr.write(`ringzero: vCPU ${cpu.env.cpuIndex ?? 0}: IRET with NT (task return) not supported: #GP\n`);
      }
    }
    cpu.gp(0);
  }
  const ripLo = cpu.peekStack(0, size);
  const ripHi = size === 8 ? cpu.hi : 0;
  const csSel = cpu.peekStack(size, 2);
  const newFlags = cpu.peekStack(2 * size, size === 8 ? 4 : size);
  const cpl = cpu.cpl;
  if (size === 4 && (newFlags & C.VM) && cpl === 0 && !lma) { iretToV86(cpu, ripLo, csSel, newFlags); return; }

  // The return code segment.
  if ((csSel & 0xfffc) === 0) cpu.gp(0);
  const csErr = csSel & 0xfffc;
  if (!readDescriptor(cpu, csSel)) cpu.gp(csErr);
  const clo = desc.lo, caddr = desc.addr;
  let chi = desc.hi;
  const rpl = csSel & 3;
  const dpl = descDpl(chi);
  if (!descIsCode(chi) || rpl < cpl) cpu.gp(csErr);
  if (chi & CONFORMING ? dpl > rpl : dpl !== rpl) cpu.gp(csErr);
  if (lma && (chi & DESC_L) && (chi & DESC_DB)) cpu.gp(csErr);
  if (!descPresent(chi)) cpu.fault(C.EXC_NP, csErr);
  const target64 = lma && (chi & DESC_L) !== 0;

  // 64-bit mode always pops SS:RSP; legacy and compatibility mode only when returning to an outer ring.
  const popSs = rpl > cpl || cpu.mode64;
  let spValue = 0, ssSel = 0, slo = 0, shi = 0, saddr = 0;
  if (popSs) {
    const spLo = cpu.peekStack(3 * size, size);
    spValue = size === 8 ? cpu.hi * C.TWO32 + (spLo >>> 0) : size === 4 ? spLo >>> 0 : spLo;
    ssSel = cpu.peekStack(4 * size, 2);
    ({ lo: slo, hi: shi, addr: saddr } = checkReturnStack(cpu, ssSel, rpl, target64));
  }
  const newRip = returnRip(cpu, ripLo, ripHi, size, target64, clo, chi);

  let mask = IRET_BASE_MASK;
  const iopl = (cpu.flags & C.IOPL) >> 12;
  if (cpl <= iopl) mask |= C.IF;
  if (cpl === 0) mask |= C.IOPL | C.VIF | C.VIP;
  if (size === 2) mask &= 0xffff;
  const flags = (cpu.getFlags() & ~mask) | (newFlags & mask);

  chi = markAccessed(cpu, caddr, chi);
  if (popSs && (ssSel & 0xfffc) !== 0) shi = markAccessed(cpu, saddr, shi);
  const oldSpNext = cpu.getSp() + 3 * size;
  const oldStackSize = cpu.stackSize();
  // Commit.
  cpu.setFlagsValue(flags);
  loadFromDescriptor(cpu, C.CS, csSel, clo, chi);
  cpu.rip = newRip;
  if (popSs) {
    loadReturnStack(cpu, ssSel, slo, shi, rpl);
    setStackPointer(cpu, spValue, size);
  } else {
    setSpWidth(cpu, oldStackSize, oldSpNext);
  }
  if (rpl > cpl) invalidateDataSegments(cpu, rpl);
}

/** Real-address mode IRET, or virtual-8086 mode IRET at IOPL 3 (which cannot change IOPL, VM, VIF, VIP or RF). */
function iretRealOrV86(cpu: SoftCpu, size: number, v86: boolean): void {
  const ip = cpu.peekStack(0, size === 8 ? 4 : size);
  const cs = cpu.peekStack(size, 2);
  const fl = cpu.peekStack(2 * size, size === 8 ? 4 : size);
  const newIp = size === 2 ? ip : ip >>> 0;
  if (newIp > cpu.segLimit[C.CS]) cpu.gp(0);
  const old = cpu.getFlags();
  let flags: number;
  if (v86) {
    const keep = C.IOPL | C.VM | C.RF | C.VIF | C.VIP;
    flags = size === 2 ? (old & (0xffff0000 | C.IOPL)) | (fl & 0xffff & ~C.IOPL) : (old & keep) | (fl & ~keep);
  } else {
    flags = size === 2 ? (old & 0xffff0000) | (fl & 0xffff) : (fl & 0x257fd5) | (old & 0x1a0000);
  }
  const sp = cpu.getSp() + 3 * size;
  cpu.setSp(sp);
  cpu.setFlagsValue(flags);
  cpu.loadSegmentReal(C.CS, cs);
  cpu.rip = newIp;
}

/** IRET from ring 0 of 32-bit protected mode to virtual-8086 mode: pops ESP, SS, ES, DS, FS, GS too (§20.3.3). */
function iretToV86(cpu: SoftCpu, eip: number, cs: number, flags: number): void {
  const esp = cpu.peekStack(12, 4);
  const ss = cpu.peekStack(16, 2);
  const es = cpu.peekStack(20, 2);
  const ds = cpu.peekStack(24, 2);
  const fs = cpu.peekStack(28, 2);
  const gs = cpu.peekStack(32, 2);
  cpu.setFlagsValue(flags);
  cpu.loadSegmentReal(C.CS, cs);
  cpu.cpl = 3;
  cpu.loadSegmentReal(C.SS, ss);
  cpu.loadSegmentReal(C.ES, es);
  cpu.loadSegmentReal(C.DS, ds);
  cpu.loadSegmentReal(C.FS, fs);
  cpu.loadSegmentReal(C.GS, gs);
  cpu.gpr[8] = esp; cpu.gpr[9] = 0;
  cpu.rip = eip & 0xffff;
  cpu.updateMode();
}

// ---------------------------------------------------------------------------------------------------------
// Helpers shared with far returns (./far.ts)

/**
 * Check the SS selector popped by IRET/RETF when returning to ring `rpl` (SDM IRET "RETURN-TO-OUTER-PRIVILEGE-
 * LEVEL"). A null SS is allowed only when returning to 64-bit code below ring 3. Returns the descriptor.
 */
export function checkReturnStack(cpu: SoftCpu, ssSel: number, rpl: number, target64: boolean): ReturnStack {
  const out = returnStack;
  out.lo = 0; out.hi = 0; out.addr = 0;
  if ((ssSel & 0xfffc) === 0) {
    if (!target64 || rpl === 3 || (ssSel & 3) !== rpl) cpu.gp(0);
    return out;
  }
  const err = ssSel & 0xfffc;
  if (!readDescriptor(cpu, ssSel)) cpu.gp(err);
  const hi = desc.hi;
  if ((ssSel & 3) !== rpl || descDpl(hi) !== rpl || !descIsCodeData(hi) || (hi & CODE) || !(hi & WRITABLE)) cpu.gp(err);
  if (!descPresent(hi)) cpu.fault(C.EXC_SS, err);
  out.lo = desc.lo; out.hi = hi; out.addr = desc.addr;
  return out;
}

/** The SS descriptor checked by `checkReturnStack` (one shared scratch: callers copy it out at once). */
export interface ReturnStack { lo: number; hi: number; addr: number }
const returnStack: ReturnStack = { lo: 0, hi: 0, addr: 0 };

export function loadReturnStack(cpu: SoftCpu, ssSel: number, slo: number, shi: number, rpl: number): void {
  if ((ssSel & 0xfffc) === 0) cpu.loadSegmentRaw(C.SS, ssSel, 0, 0, C.SEG_UNUSABLE | (rpl << C.SEG_DPL_SHIFT));
  else loadFromDescriptor(cpu, C.SS, ssSel, slo, shi);
}

/** The instruction pointer popped by IRET/RETF, checked: canonical for 64-bit code, within CS limit otherwise. */
export function returnRip(cpu: SoftCpu, lo: number, hi: number, size: number, target64: boolean, clo: number, chi: number): number {
  if (target64) {
    const rip = size === 8 ? hi * C.TWO32 + (lo >>> 0) : size === 4 ? lo >>> 0 : lo & 0xffff;
    if (!isCanonical(rip)) cpu.gp(0);
    return rip;
  }
  if (size === 8 && hi !== 0) cpu.gp(0);
  const rip = size === 2 ? lo & 0xffff : lo >>> 0;
  if (rip > descLimit(clo, chi)) cpu.gp(0);
  return rip;
}

/** Set RSP from a popped stack pointer: all 64 bits for a 64-bit pop, else at the new SS's stack-address size. */
export function setStackPointer(cpu: SoftCpu, value: number, size: number): void {
  if (size === 8 || cpu.mode64) cpu.setReg64Num(4, value);
  else setSpWidth(cpu, cpu.stackSize(), value);
}

/** Write `value` into RSP at stack-address size `width` (2: SP only, 4: ESP zero-extended, 8: RSP). */
export function setSpWidth(cpu: SoftCpu, width: number, value: number): void {
  if (width === 8) cpu.setReg64Num(4, value);
  else if (width === 4) { cpu.gpr[8] = value; cpu.gpr[9] = 0; }
  else cpu.gpr[8] = (cpu.gpr[8] & ~0xffff) | (value & 0xffff);
}

/**
 * After a return to an outer ring, data segment registers the new CPL may not use are nulled (SDM IRET/RET:
 * data or non-conforming code with DPL < CPL). Null selectors are left alone so a 64-bit FS/GS base survives.
 */
export function invalidateDataSegments(cpu: SoftCpu, newCpl: number): void {
  for (const s of DATA_SEGMENTS) {
    if ((cpu.segSel[s] & 0xfffc) === 0) continue;
    const attr = cpu.segAttr[s];
    const conformingCode = (attr & C.SEG_TYPE_CODE) !== 0 && (attr & C.SEG_TYPE_CONFORMING) !== 0;
    const dpl = (attr >> C.SEG_DPL_SHIFT) & 3;
    if (!conformingCode && dpl < newCpl) cpu.loadSegmentRaw(s, 0, cpu.segBase[s], cpu.segLimit[s], C.SEG_UNUSABLE);
  }
}
