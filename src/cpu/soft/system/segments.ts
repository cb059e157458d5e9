// Loading data and stack segment registers, with the protected-mode checks of MOV/POP/LxS (Intel SDM vol. 2
// "MOV—Move to/from Segment Registers", "POP", "LDS/LES/LFS/LGS/LSS"; vol. 3A §5.6-5.7), and the instructions
// that move segment registers: 8C/8E mov, 06/0E/16/1E and 07/17/1F push/pop, 0F A0/A1/A8/A9 push/pop fs/gs,
// C4/C5 les/lds, 0F B2/B4/B5 lss/lfs/lgs.

import type { SoftCpu } from '../cpu.ts';
import * as C from '../constants.ts';
import { def1, def0f } from '../tables.ts';
import {
  desc, readDescriptor, descDpl, descPresent, descIsCodeData, markAccessed, loadFromDescriptor,
  loadNullSegment,
} from './descriptors.ts';

const CODE_BIT = 1 << 11;
const CONFORMING_OR_EXPANDDOWN = 1 << 10;
const READ_WRITE = 1 << 9;

/**
 * Load segment register `seg` (ES, SS, DS, FS or GS — CS is loaded only by far transfers) with `selector`,
 * raising #GP/#SS/#NP as MOV/POP to a segment register would. Nothing changes when it faults.
 */
export function loadSegment(cpu: SoftCpu, seg: number, selector: number): void {
  selector &= 0xffff;
  if (!cpu.protectedMode) { // real mode or virtual-8086: base = selector * 16
    cpu.loadSegmentReal(seg, selector);
    return;
  }
  const cpl = cpu.cpl;
  const rpl = selector & 3;
  if ((selector & 0xfffc) === 0) {
    if (seg === C.SS) {
      // 64-bit mode allows a null SS below ring 3 when RPL = CPL (SDM vol. 2 MOV, IA-32e operation).
      if (!cpu.mode64 || cpl === 3 || rpl !== cpl) cpu.gp(0);
    }
    loadNullSegment(cpu, seg, selector);
    return;
  }
  const errSel = selector & 0xfffc;
  if (!readDescriptor(cpu, selector)) cpu.gp(errSel);
  const lo = desc.lo, addr = desc.addr;
  let hi = desc.hi;
  const dpl = descDpl(hi);
  if (!descIsCodeData(hi)) cpu.gp(errSel);
  if (seg === C.SS) {
    // A writable data segment with RPL = DPL = CPL.
    if (rpl !== cpl || (hi & CODE_BIT) || !(hi & READ_WRITE) || dpl !== cpl) cpu.gp(errSel);
    if (!descPresent(hi)) cpu.fault(C.EXC_SS, errSel);
  } else {
    // Data or readable code; unless conforming code, DPL must be >= both RPL and CPL.
    if ((hi & CODE_BIT) && !(hi & READ_WRITE)) cpu.gp(errSel);
    const conformingCode = (hi & CODE_BIT) !== 0 && (hi & CONFORMING_OR_EXPANDDOWN) !== 0;
    if (!conformingCode && (rpl > dpl || cpl > dpl)) cpu.gp(errSel);
    if (!descPresent(hi)) cpu.fault(C.EXC_NP, errSel);
  }
  hi = markAccessed(cpu, addr, hi);
  loadFromDescriptor(cpu, seg, selector, lo, hi);
}

/** Mark that the next instruction boundary is in the MOV SS / POP SS interrupt shadow (SDM vol. 3A §6.8.3). */
function ssShadow(cpu: SoftCpu): void {
  cpu.interruptShadow = true;
  cpu.eventPending = true;
}

// 8E /r: mov Sreg, r/m16
def1(0x8e, (cpu) => {
  cpu.decodeModrm();
  const seg = (cpu.modrm >> 3) & 7;
  if (seg === C.CS || seg > C.GS) cpu.ud();
  const sel = cpu.readRm(2);
  loadSegment(cpu, seg, sel);
  if (seg === C.SS) ssShadow(cpu);
});

// 8C /r: mov r/m16, Sreg (a register destination takes the zero-extended selector at 32/64-bit operand size)
def1(0x8c, (cpu) => {
  cpu.decodeModrm();
  const seg = (cpu.modrm >> 3) & 7;
  if (seg > C.GS) cpu.ud();
  const sel = cpu.segSel[seg];
  if (cpu.mod === 3) cpu.setReg(cpu.opsize === 2 ? 2 : cpu.opsize, cpu.rm, sel, 0);
  else cpu.writeRm(2, sel);
});

function pushSeg(seg: number) {
  return (cpu: SoftCpu) => {
    if (seg < C.FS && cpu.mode64) cpu.ud();
    cpu.push(cpu.stackOpsize(), cpu.segSel[seg], 0);
  };
}

function popSeg(seg: number) {
  return (cpu: SoftCpu) => {
    if (seg < C.FS && cpu.mode64) cpu.ud();
    const size = cpu.stackOpsize();
    const sel = cpu.peekStack(0, 2);
    // SP moves by the operand size, at the stack-address size of the SS the selector was read from.
    const s = cpu.stackSize();
    const sp = cpu.getSp() + size;
    const newSp = s === 8 ? sp : s === 4 ? sp >>> 0 : sp & 0xffff;
    loadSegment(cpu, seg, sel);
    if (s === 2) cpu.gpr[8] = (cpu.gpr[8] & ~0xffff) | newSp;
    else if (s === 4) { cpu.gpr[8] = newSp; cpu.gpr[9] = 0; }
    else cpu.setReg64Num(4, newSp);
    if (seg === C.SS) ssShadow(cpu);
  };
}

def1(0x06, pushSeg(C.ES));
def1(0x0e, pushSeg(C.CS));
def1(0x16, pushSeg(C.SS));
def1(0x1e, pushSeg(C.DS));
def1(0x07, popSeg(C.ES));
def1(0x17, popSeg(C.SS));
def1(0x1f, popSeg(C.DS));
def0f(0xa0, pushSeg(C.FS));
def0f(0xa8, pushSeg(C.GS));
def0f(0xa1, popSeg(C.FS));
def0f(0xa9, popSeg(C.GS));

/** LDS/LES/LSS/LFS/LGS: a far pointer m16:16/32/64 (offset first) into Sreg:reg. */
function loadFarPointer(cpu: SoftCpu, seg: number): void {
  const size = cpu.opsize;
  const lin = cpu.eaLinear();
  const off = cpu.readLin(lin, size);
  const offHi = cpu.hi;
  const sel = cpu.readLin(cpu.addLin(lin, size), 2);
  loadSegment(cpu, seg, sel);
  cpu.setReg(size, cpu.reg, off, offHi);
  if (seg === C.SS) ssShadow(cpu);
}

// C4 les / C5 lds: legacy modes only. In 64-bit mode these bytes are VEX prefixes, and outside it a register
// operand (mod = 3) also means VEX (SDM vol. 2 §2.3.5); AVX is not offered, so both are #UD.
def1(0xc4, (cpu) => {
  if (cpu.mode64) cpu.ud();
  cpu.decodeModrm();
  if (cpu.mod === 3) cpu.ud();
  loadFarPointer(cpu, C.ES);
});
def1(0xc5, (cpu) => {
  if (cpu.mode64) cpu.ud();
  cpu.decodeModrm();
  if (cpu.mod === 3) cpu.ud();
  loadFarPointer(cpu, C.DS);
});

function lxs(seg: number) {
  return (cpu: SoftCpu) => {
    cpu.decodeModrm();
    if (cpu.mod === 3) cpu.ud();
    loadFarPointer(cpu, seg);
  };
}
def0f(0xb2, lxs(C.SS));
def0f(0xb4, lxs(C.FS));
def0f(0xb5, lxs(C.GS));
