// Fast system calls: 0F 05 syscall, 0F 07 sysret, 0F 34 sysenter, 0F 35 sysexit (SDM vol. 2 for each; MSRs in
// vol. 4 table 2-2). They load flat CS/SS without reading the GDT: the selectors come from the MSRs and the hidden
// parts are fixed by the architecture.

import type { SoftCpu } from '../cpu.ts';
import * as C from '../constants.ts';
import { def0f } from '../tables.ts';
import { flatCodeAttr, flatDataAttr, isCanonical } from './descriptors.ts';
import { MSR, storedMsr } from './msr.ts';
import { settleRestoredIf } from '../ops/interrupt-flag.ts';

const MSR_SYSENTER_CS = MSR.SYSENTER_CS;
const MSR_SYSENTER_ESP = MSR.SYSENTER_ESP;
const MSR_SYSENTER_EIP = MSR.SYSENTER_EIP;
const MSR_STAR = MSR.STAR;
const MSR_LSTAR = MSR.LSTAR;
const MSR_CSTAR = MSR.CSTAR;
const MSR_SFMASK = MSR.SFMASK;

/** An MSR value as stored by system/msr.ts (its reset value when never written), as a bigint. */
function msrValue(cpu: SoftCpu, index: number): bigint {
  return storedMsr(cpu, index);
}

/** An MSR holding an address, as a signed number (the linear-address convention of cpu.ts). */
function msrAddress(cpu: SoftCpu, index: number): number {
  return Number(BigInt.asIntN(64, msrValue(cpu, index)));
}

function msrLow32(cpu: SoftCpu, index: number): number {
  return Number(msrValue(cpu, index) & 0xffffffffn);
}

/**
 * The SYSCALL MSRs (STAR, LSTAR, CSTAR, SFMASK) as numbers, decoded once per value. SYSCALL/SYSRET run twice per
 * Linux system call, and decoding the stored bigints each time (asIntN, shifts, Number) was ~5% of the VMM's time
 * on a loop of one-byte reads and writes. The record lives on the CPU's MSR map (cpu.ts MsrMap.decoded) and is
 * checked against the map's change count at each use (a WRMSR, a snapshot restore or a test may change the map any
 * time: any set, delete or clear counts), one compare instead of a lookup per MSR (those and a WeakMap's were ~1.7%
 * of that loop).
 */
export interface SyscallMsrs {
  ver: number;
  /** STAR[47:32] (SYSCALL CS; SS = +8) and STAR[63:48] (SYSRET base) */
  callCs: number; retBase: number;
  lstarNum: number; cstarNum: number; mask: number;
}

export function syscallMsrs(cpu: SoftCpu): SyscallMsrs {
  const m = cpu.msrs;
  let r = m.decoded as SyscallMsrs | null;
  if (r === null || r.ver !== m.ver) {
    const starHi = Number((msrValue(cpu, MSR_STAR) >> 32n) & 0xffffffffn);
    r = {
      ver: m.ver,
      callCs: starHi & 0xffff, retBase: (starHi >>> 16) & 0xffff,
      lstarNum: msrAddress(cpu, MSR_LSTAR), cstarNum: msrAddress(cpu, MSR_CSTAR), mask: msrLow32(cpu, MSR_SFMASK),
    };
    m.decoded = r;
  }
  return r;
}

/** CS attributes of the flat 64-bit code segments SYSCALL (CPL 0) and SYSRET (CPL 3) load. */
const CODE64_CPL0 = flatCodeAttr(0, true), CODE64_CPL3 = flatCodeAttr(3, true);
const DATA_CPL0 = flatDataAttr(0), DATA_CPL3 = flatDataAttr(3);

// 0F 05: syscall. Intel raises #UD outside 64-bit mode; compatibility-mode SYSCALL (an AMD feature) is taken
// to CSTAR so a 32-bit caller of a kernel that programs it still works.
/** SYSCALL (0F 05); also the block cache's form and the wasm helper `sy`'s (../fast-forms.ts execSy). */
export function syscall(cpu: SoftCpu): void {
  if (!(cpu.efer & C.EFER_SCE) || !(cpu.efer & C.EFER_LMA)) cpu.ud();
  const m = syscallMsrs(cpu);
  const target = cpu.mode64 ? m.lstarNum : m.cstarNum;
  const flags = cpu.getFlags();
  const rip = cpu.rip;
  cpu.setReg64Num(1, rip); // RCX = return RIP
  cpu.setReg(4, 11, flags & ~C.RF); // R11 = RFLAGS (RF cleared)
  cpu.setFlagsValue(flags & ~m.mask & ~C.RF);
  const csSel = m.callCs;
  if (cpu.mode64) syscallSegments64(cpu, csSel);
  else {
    cpu.loadSegmentRaw(C.SS, (csSel + 8) & 0xfffc, 0, 0xffffffff, DATA_CPL0);
    cpu.loadSegmentRaw(C.CS, csSel & 0xfffc, 0, 0xffffffff, CODE64_CPL0);
  }
  cpu.rip = target;
}

/**
 * SYSCALL's CS and SS from 64-bit code (STAR[47:32] = `csSel`): flat CPL 0 segments, the mode stays 64-bit, only CPL
 * changes (SoftCpu.loadCs64). Also the wasm runtime's, after a translated SYSCALL switched privilege inline
 * (../wasm/runtime.ts syncSys).
 */
export function syscallSegments64(cpu: SoftCpu, csSel: number): void {
  cpu.loadSegmentRaw(C.SS, (csSel + 8) & 0xfffc, 0, 0xffffffff, DATA_CPL0);
  cpu.loadCs64(csSel & 0xfffc, CODE64_CPL0);
}

/** SYSRETQ's CS and SS (STAR[63:48] = `base`): flat CPL 3 segments, 64-bit code (also the wasm runtime's, as above). */
export function sysretSegments64(cpu: SoftCpu, base: number): void {
  cpu.loadSegmentRaw(C.SS, ((base + 8) & 0xffff) | 3, 0, 0xffffffff, DATA_CPL3);
  cpu.loadCs64(((base + 16) & 0xfffc) | 3, CODE64_CPL3);
}
def0f(0x05, syscall);

// 0F 07: sysret (REX.W: to 64-bit code at RCX; else to compatibility mode at ECX). RFLAGS from R11.
/** SYSRET (0F 07; `to64`: REX.W, SYSRETQ); also the block cache's form and the wasm helper `sy`'s for SYSRETQ. */
export function sysret(cpu: SoftCpu, to64: boolean): void {
  if (!(cpu.efer & C.EFER_SCE) || !cpu.mode64) cpu.ud();
  if (cpu.cpl !== 0) cpu.gp(0);
  const base = syscallMsrs(cpu).retBase;
  const rip = to64 ? cpu.getReg64Num(1) : cpu.gpr[2] >>> 0;
  // Intel checks RCX before changing anything (the #GP is taken at CPL 0).
  if (!isCanonical(rip)) cpu.gp(0);
  const wasPending = cpu.eventPending;
  cpu.setFlagsValue((cpu.gpr[22] & C.SYSRET_FLAGS) | C.FLAGS_FIXED);
  // (SYSRET runs in 64-bit mode: back to 64-bit code only CPL changes, SoftCpu.loadCs64)
  if (to64) sysretSegments64(cpu, base);
  else {
    cpu.loadSegmentRaw(C.SS, ((base + 8) & 0xffff) | 3, 0, 0xffffffff, DATA_CPL3);
    cpu.loadSegmentRaw(C.CS, (base & 0xfffc) | 3, 0, 0xffffffff, flatCodeAttr(3, false));
  }
  cpu.rip = rip;
  // (no event check when IF comes back with nothing to deliver: the translated chain goes on into user code)
  settleRestoredIf(cpu, wasPending);
}
def0f(0x07, (cpu) => sysret(cpu, cpu.opsize === 8));

// 0F 34: sysenter (to ring 0 at SYSENTER_CS:SYSENTER_EIP with SYSENTER_ESP; 64-bit code when IA-32e is active)
def0f(0x34, (cpu) => {
  if (!(cpu.cr0 & C.CR0_PE)) cpu.gp(0);
  const cs = msrLow32(cpu, MSR_SYSENTER_CS) & 0xffff;
  if ((cs & 0xfffc) === 0) cpu.gp(0);
  const lma = (cpu.efer & C.EFER_LMA) !== 0;
  const eip = msrAddress(cpu, MSR_SYSENTER_EIP);
  const esp = msrAddress(cpu, MSR_SYSENTER_ESP);
  cpu.setFlagsValue(cpu.getFlags() & ~(C.VM | C.IF | C.RF));
  cpu.loadSegmentRaw(C.SS, (cs + 8) & 0xfffc, 0, 0xffffffff, flatDataAttr(0));
  cpu.loadSegmentRaw(C.CS, cs & 0xfffc, 0, 0xffffffff, flatCodeAttr(0, lma));
  if (lma) {
    cpu.setReg64Num(4, esp);
    cpu.rip = eip;
  } else {
    cpu.gpr[8] = esp; cpu.gpr[9] = 0;
    cpu.rip = eip >>> 0;
  }
});

// 0F 35: sysexit (REX.W: to 64-bit code, RIP = RDX, RSP = RCX; else to 32-bit code with EDX/ECX)
def0f(0x35, (cpu) => {
  const cs = msrLow32(cpu, MSR_SYSENTER_CS) & 0xffff;
  if (!cpu.protectedMode || (cs & 0xfffc) === 0 || cpu.cpl !== 0) cpu.gp(0);
  const to64 = cpu.opsize === 8;
  if (to64) {
    const rip = cpu.getReg64Num(2), rsp = cpu.getReg64Num(1);
    if (!isCanonical(rip) || !isCanonical(rsp)) cpu.gp(0);
    cpu.loadSegmentRaw(C.SS, ((cs + 40) & 0xfffc) | 3, 0, 0xffffffff, flatDataAttr(3));
    cpu.loadSegmentRaw(C.CS, ((cs + 32) & 0xfffc) | 3, 0, 0xffffffff, flatCodeAttr(3, true));
    cpu.setReg64Num(4, rsp);
    cpu.rip = rip;
  } else {
    const rip = cpu.gpr[4] >>> 0, esp = cpu.gpr[2];
    cpu.loadSegmentRaw(C.SS, ((cs + 24) & 0xfffc) | 3, 0, 0xffffffff, flatDataAttr(3));
    cpu.loadSegmentRaw(C.CS, ((cs + 16) & 0xfffc) | 3, 0, 0xffffffff, flatCodeAttr(3, false));
    cpu.gpr[8] = esp; cpu.gpr[9] = 0;
    cpu.rip = rip;
  }
});
