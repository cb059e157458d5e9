// Far transfers: EA jmp ptr16:16/32, 9A call ptr16:16/32, FF /3 call m16:16/32/64, FF /5 jmp m16:16/32/64,
// CB/CA retf (SDM vol. 2 "JMP", "CALL", "RET"; vol. 3A §5.8). Loading CS here is also how software switches mode:
// a far jump after CR0.PE enters protected mode, one to an L=1 code segment with EFER.LMA enters 64-bit mode.
// Call gates, task gates and TSS targets (task switches) are not supported: logged once, then #GP.

import type { SoftCpu } from '../cpu.ts';
import * as C from '../constants.ts';
import { def1, groupFF } from '../tables.ts';
import {
  desc, readDescriptor, descDpl, descPresent, descIsCode, descIsCodeData, descType, markAccessed, loadFromDescriptor,
  isCanonical,
} from './descriptors.ts';
import {
  checkReturnStack, loadReturnStack, returnRip, setStackPointer, setSpWidth, invalidateDataSegments,
} from './interrupts.ts';

const CONFORMING = 1 << 10;
const DESC_L = 1 << 21;
const DESC_DB = 1 << 22;

const SYSTEM_TARGETS = ['', 'TSS', 'LDT', 'TSS', 'call gate', 'task gate', '', '', '', 'TSS', '', 'TSS', 'call gate'];

function unsupportedTarget(cpu: SoftCpu, hi: number, selector: number): never {
  const what = SYSTEM_TARGETS[descType(hi)] || 'system descriptor';
  if (what === 'LDT' || what === 'system descriptor') return cpu.gp(selector & 0xfffc);
  const key = `far transfer through ${what}`;
  if (!cpu.unimplementedLogged.has(key)) {
    cpu.unimplementedLogged.add(key);
    process.stderr.write(`ringzero: vCPU ${cpu.env.cpuIndex ?? 0}: ${key} (selector ${selector.toString(16)}) not supported: #GP\n`);
  }
  return cpu.gp(selector & 0xfffc);
}

/**
 * JMP/CALL to `selector:offset` with operand size `size` (offset given as a number: 16/32-bit values, or a
 * signed 64-bit value). CALL pushes CS then the return (E/R)IP, each of `size` bytes.
 */
export function farTransfer(cpu: SoftCpu, selector: number, offset: number, size: number, isCall: boolean): void {
  selector &= 0xffff;
  if (!cpu.protectedMode) {
    // Real-address or virtual-8086 mode: CS base = selector * 16.
    const ip = size === 2 ? offset & 0xffff : offset >>> 0;
    if (isCall) pushReturn(cpu, size);
    cpu.loadSegmentReal(C.CS, selector);
    cpu.rip = ip;
    return;
  }
  if ((selector & 0xfffc) === 0) cpu.gp(0);
  const err = selector & 0xfffc;
  if (!readDescriptor(cpu, selector)) cpu.gp(err);
  const lo = desc.lo, addr = desc.addr;
  let hi = desc.hi;
  if (!descIsCodeData(hi)) unsupportedTarget(cpu, hi, selector);
  if (!descIsCode(hi)) cpu.gp(err);
  const dpl = descDpl(hi), rpl = selector & 3, cpl = cpu.cpl;
  if (hi & CONFORMING ? dpl > cpl : rpl > cpl || dpl !== cpl) cpu.gp(err);
  if (!descPresent(hi)) cpu.fault(C.EXC_NP, err);
  const lma = (cpu.efer & C.EFER_LMA) !== 0;
  if (lma && (hi & DESC_L) && (hi & DESC_DB)) cpu.gp(err);
  const target64 = lma && (hi & DESC_L) !== 0;
  let rip: number;
  if (target64) {
    rip = offset;
    if (!isCanonical(rip)) cpu.gp(0);
  } else {
    rip = size === 2 ? offset & 0xffff : offset >>> 0;
    const limit = (lo & 0xffff) | (hi & 0xf0000);
    if (rip > (hi & (1 << 23) ? limit * 4096 + 0xfff : limit)) cpu.gp(0);
  }
  hi = markAccessed(cpu, addr, hi);
  if (isCall) pushReturn(cpu, size);
  // CS.RPL becomes the CPL (a conforming segment does not change privilege).
  loadFromDescriptor(cpu, C.CS, (selector & 0xfffc) | cpl, lo, hi);
  cpu.rip = rip;
}

/** Push CS and the return instruction pointer, restoring RSP if the second push faults. */
function pushReturn(cpu: SoftCpu, size: number): void {
  const lo = cpu.gpr[8], hi = cpu.gpr[9];
  const rip = cpu.rip;
  try {
    cpu.push(size, cpu.segSel[C.CS], 0);
    cpu.push(size, rip | 0, Math.floor(rip / C.TWO32) | 0);
  } catch (e) {
    cpu.gpr[8] = lo; cpu.gpr[9] = hi;
    throw e;
  }
}

// EA: jmp ptr16:16/32 and 9A: call ptr16:16/32 (#UD in 64-bit mode)
function directFar(isCall: boolean) {
  return (cpu: SoftCpu) => {
    if (cpu.mode64) cpu.ud();
    const size = cpu.opsize;
    const off = size === 2 ? cpu.fetch16() : cpu.fetch32() >>> 0;
    const sel = cpu.fetch16();
    farTransfer(cpu, sel, off, size, isCall);
  };
}
def1(0xea, directFar(false));
def1(0x9a, directFar(true));

// FF /3 call far m16:xx, FF /5 jmp far m16:xx (the offset comes first; REX.W makes it 64-bit)
function indirectFar(isCall: boolean) {
  return (cpu: SoftCpu) => {
    if (cpu.mod === 3) cpu.ud();
    const size = cpu.opsize;
    const lin = cpu.eaLinear();
    const lo = cpu.readLin(lin, size);
    const off = size === 8 ? cpu.hi * C.TWO32 + (lo >>> 0) : size === 4 ? lo >>> 0 : lo;
    const sel = cpu.readLin(cpu.addLin(lin, size), 2);
    farTransfer(cpu, sel, off, size, isCall);
  };
}
groupFF[3] = indirectFar(true);
groupFF[5] = indirectFar(false);

// CB: retf, CA iw: retf imm16 (release imm16 bytes of parameters)
function farReturn(withImm: boolean) {
  return (cpu: SoftCpu) => {
    const imm = withImm ? cpu.fetch16() : 0;
    retf(cpu, cpu.opsize, imm);
  };
}
def1(0xcb, farReturn(false));
def1(0xca, farReturn(true));

export function retf(cpu: SoftCpu, size: number, imm: number): void {
  const ripLo = cpu.peekStack(0, size);
  const ripHi = size === 8 ? cpu.hi : 0;
  const csSel = cpu.peekStack(size, 2);
  const stackWidth = cpu.stackSize();
  const spAfter = cpu.getSp() + 2 * size + imm;
  if (!cpu.protectedMode) {
    const ip = size === 2 ? ripLo & 0xffff : ripLo >>> 0;
    if (ip > cpu.segLimit[C.CS]) cpu.gp(0);
    setSpWidth(cpu, stackWidth, spAfter);
    cpu.loadSegmentReal(C.CS, csSel);
    cpu.rip = ip;
    return;
  }
  if ((csSel & 0xfffc) === 0) cpu.gp(0);
  const err = csSel & 0xfffc;
  if (!readDescriptor(cpu, csSel)) cpu.gp(err);
  const clo = desc.lo, caddr = desc.addr;
  let chi = desc.hi;
  const rpl = csSel & 3, dpl = descDpl(chi), cpl = cpu.cpl;
  if (!descIsCode(chi) || rpl < cpl) cpu.gp(err);
  if (chi & CONFORMING ? dpl > rpl : dpl !== rpl) cpu.gp(err);
  if (!descPresent(chi)) cpu.fault(C.EXC_NP, err);
  const lma = (cpu.efer & C.EFER_LMA) !== 0;
  if (lma && (chi & DESC_L) && (chi & DESC_DB)) cpu.gp(err);
  const target64 = lma && (chi & DESC_L) !== 0;
  const outer = rpl > cpl;
  let spValue = 0, ssSel = 0, slo = 0, shi = 0, saddr = 0;
  if (outer) {
    const spLo = cpu.peekStack(2 * size + imm, size);
    spValue = size === 8 ? cpu.hi * C.TWO32 + (spLo >>> 0) : size === 4 ? spLo >>> 0 : spLo;
    ssSel = cpu.peekStack(3 * size + imm, 2);
    ({ lo: slo, hi: shi, addr: saddr } = checkReturnStack(cpu, ssSel, rpl, target64));
  }
  const rip = returnRip(cpu, ripLo, ripHi, size, target64, clo, chi);
  chi = markAccessed(cpu, caddr, chi);
  if (outer && (ssSel & 0xfffc) !== 0) shi = markAccessed(cpu, saddr, shi);
  loadFromDescriptor(cpu, C.CS, csSel, clo, chi);
  cpu.rip = rip;
  if (outer) {
    loadReturnStack(cpu, ssSel, slo, shi, rpl);
    // The outer stack also releases imm16 bytes of parameters (SDM RET, "RETURN-TO-OUTER-PRIVILEGE-LEVEL").
    setStackPointer(cpu, spValue + imm, size);
    invalidateDataSegments(cpu, rpl);
  } else {
    setSpWidth(cpu, stackWidth, spAfter);
  }
}
