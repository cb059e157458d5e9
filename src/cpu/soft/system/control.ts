// Simple system instructions: MOV to/from control and debug registers, CLTS, INVD/WBINVD, HLT, CLI/STI, IN/OUT
// (with the I/O privilege and TSS I/O-permission-bitmap checks), and RDTSC.
// Intel SDM vol. 2 (instruction pages), vol. 3A ch. 2 (control registers), §9.8.5 (IA-32e activation),
// vol. 1 §19.5 (I/O permission bit map).
import type { SoftCpu } from '../cpu.ts';
import * as C from '../constants.ts';
import { def1, def0f } from '../tables.ts';
import { stiSetsIf } from '../ops/interrupt-flag.ts';

// =====================================================================================================
// Time-stamp counter

/** The TSC frequency this CPU reports (CPUID 15h/16h, the hypervisor timing leaf) and counts at: 2 GHz. */
export const TSC_HZ = 2_000_000_000;
/** TSC ticks per nanosecond of guest time (TSC_HZ / 1e9). */
export const TSC_PER_NS = TSC_HZ / 1e9;

/** Current TSC value: cpu.tscOffset + guest ns * TSC_PER_NS (non-negative; exact below 2^53). */
export function readTsc(c: SoftCpu): number {
  const t = c.tscOffset + Math.floor(c.env.clock.now() * TSC_PER_NS);
  return t < 0 ? 0 : t;
}

/** The guest-time instant (VmClock ns, rounded up) at which this vCPU's TSC reaches `tsc` (IA32_TSC_DEADLINE). */
export function tscToNs(c: SoftCpu, tsc: bigint): number {
  return Math.ceil((Number(tsc) - c.tscOffset) / TSC_PER_NS);
}

/** Set the TSC as WRMSR 0x10 does: the counter continues from `value`. */
export function writeTsc(c: SoftCpu, value: number): void {
  c.tscOffset = value - Math.floor(c.env.clock.now() * TSC_PER_NS);
}

/** EDX:EAX <- TSC (RDTSC; RDTSCP also uses this). */
export function loadTscIntoEdxEax(c: SoftCpu): void {
  const t = readTsc(c);
  c.setReg(4, 0, t % C.TWO32 | 0);
  c.setReg(4, 2, Math.floor(t / C.TWO32) | 0);
}

/** RDTSC (0F 31): CR4.TSD restricts it to CPL 0 (SDM RDTSC). Also the block cache's form and the wasm helper's. */
export function rdtsc(c: SoftCpu): void {
  if ((c.cr4 & C.CR4_TSD) && c.cpl !== 0) c.gp(0);
  loadTscIntoEdxEax(c);
}
def0f(0x31, rdtsc);

// =====================================================================================================
// Privilege helpers

function iopl(c: SoftCpu): number {
  return (c.flags >> 12) & 3;
}

/** #GP(0) unless CPL is 0 (real mode counts as CPL 0; virtual-8086 mode as CPL 3). */
export function requireCpl0(c: SoftCpu): void {
  if (c.cpl !== 0) c.gp(0);
}

/**
 * The I/O permission check of IN/OUT/INS/OUTS (SDM vol. 1 §19.5): in protected mode with CPL > IOPL, and always
 * in virtual-8086 mode, every port of the access must be allowed by the TSS I/O permission bit map.
 */
export function checkIoPermission(c: SoftCpu, port: number, size: number): void {
  if (!(c.cr0 & C.CR0_PE)) return;
  if (!(c.flags & C.VM) && c.cpl <= iopl(c)) return;
  // Only a 32-bit (or, in IA-32e mode, 64-bit) TSS has a bit map: type 9 (available) or 11 (busy).
  const type = c.trAttr & C.SEG_TYPE_MASK;
  if ((type !== 9 && type !== 11) || c.trLimit < 0x67) c.gp(0);
  const mapBase = c.readSys(c.addLin(c.trBase, 0x66), 2);
  const off = mapBase + (port >> 3);
  // Two bytes are read because the access may span a byte boundary; both must be inside the TSS limit.
  if (off + 1 > c.trLimit) c.gp(0);
  const bits = c.readSys(c.addLin(c.trBase, off), 2);
  const mask = ((1 << size) - 1) << (port & 7);
  if (bits & mask) c.gp(0);
}

// =====================================================================================================
// IN / OUT (E4-E7 with an imm8 port, EC-EF with DX). The wide forms are 16 or 32 bits (no 64-bit port I/O).

function ioSize(c: SoftCpu): 1 | 2 | 4 {
  return (c.opcode & 1) === 0 ? 1 : c.opsize === 2 ? 2 : 4;
}

function doIn(c: SoftCpu, port: number): void {
  const size = ioSize(c);
  checkIoPermission(c, port, size);
  const v = c.env.ports.read(port, size);
  c.setReg(size, 0, v | 0);
}

function doOut(c: SoftCpu, port: number): void {
  const size = ioSize(c);
  checkIoPermission(c, port, size);
  const v = c.gpr[0];
  c.env.ports.write(port, size, size === 1 ? v & 0xff : size === 2 ? v & 0xffff : v >>> 0);
}

def1(0xe4, (c) => doIn(c, c.fetch8()), 0xe5);
def1(0xe6, (c) => doOut(c, c.fetch8()), 0xe7);
def1(0xec, (c) => doIn(c, c.gpr[4] & 0xffff), 0xed);
def1(0xee, (c) => doOut(c, c.gpr[4] & 0xffff), 0xef);

// =====================================================================================================
// CLI (FA), STI (FB), HLT (F4)

/** CLI/STI are allowed in real mode, at CPL <= IOPL in protected mode, and with IOPL = 3 in virtual-8086 mode. */
function checkIfChange(c: SoftCpu): void {
  if (!(c.cr0 & C.CR0_PE)) return;
  if (c.flags & C.VM ? iopl(c) < 3 : c.cpl > iopl(c)) c.gp(0);
}

def1(0xfa, (c) => {
  checkIfChange(c);
  c.flags &= ~C.IF;
});

def1(0xfb, (c) => {
  checkIfChange(c);
  stiSetsIf(c); // (the shadow and the event check only when an interrupt is pending: ../ops/interrupt-flag.ts)
});

def1(0xf4, (c) => {
  requireCpl0(c);
  c.halted = true;
});

// =====================================================================================================
// CLTS (0F 06), INVD (0F 08), WBINVD (0F 09): there are no caches to write back.

def0f(0x06, (c) => {
  requireCpl0(c);
  c.cr0 &= ~C.CR0_TS;
});
def0f(0x08, (c) => requireCpl0(c));
def0f(0x09, (c) => requireCpl0(c));

// =====================================================================================================
// MOV to/from control registers (0F 20, 0F 22) and debug registers (0F 21, 0F 23).
// The ModRM mod field is ignored: the operand is always the general register in r/m (SDM MOV CR).
// The operand is 64 bits in 64-bit mode and 32 bits otherwise, whatever the operand-size prefix.

/** CR0 bits this CPU implements; writes to the other low bits are ignored (SDM vol. 3A §2.5). */
const CR0_WRITABLE = C.CR0_PE | C.CR0_MP | C.CR0_EM | C.CR0_TS | C.CR0_NE | C.CR0_WP | C.CR0_AM |
  C.CR0_NW | C.CR0_CD | C.CR0_PG;
/**
 * CR4 bits this CPU implements (setting any other bit is #GP(0)). Only what CPUID advertises: no VME/PVI, UMIP,
 * FSGSBASE, PCIDE, OSXSAVE, SMEP or SMAP.
 */
export const CR4_SUPPORTED = C.CR4_TSD | C.CR4_DE | C.CR4_PSE | C.CR4_PAE | C.CR4_MCE | C.CR4_PGE | C.CR4_PCE |
  C.CR4_OSFXSR | C.CR4_OSXMMEXCPT;
/** CR4 bits whose change invalidates every TLB entry, global ones included (SDM vol. 3A §4.10.4.1). */
const CR4_FLUSH_ALL = C.CR4_PGE | C.CR4_PAE | C.CR4_PSE;

/** The CR8 value kept when the machine has no local APIC. */
const tprWithoutApic = new WeakMap<SoftCpu, number>();

/** Fetch the ModRM byte of MOV CR/DR: returns [reg with REX.R, rm with REX.B] packed as reg << 4 | rm. */
function fetchCrModrm(c: SoftCpu): number {
  const m = c.fetch8();
  c.modrm = m;
  return ((((m >> 3) & 7) | c.rexR) << 4) | ((m & 7) | c.rexB);
}

/** Write a control-register value to general register `r` (64-bit mode: the full number; else 32 bits). */
function setRegFromNum(c: SoftCpu, r: number, v: number): void {
  if (c.mode64) c.setReg(8, r, v | 0, Math.floor(v / C.TWO32) | 0);
  else c.setReg(4, r, v | 0);
}

/** Read general register `r` as a control-register source: [lo, hi] with hi 0 outside 64-bit mode. */
function regLo(c: SoftCpu, r: number): number {
  return c.gpr[2 * r];
}
function regHi(c: SoftCpu, r: number): number {
  return c.mode64 ? c.gpr[2 * r + 1] : 0;
}

export function readCr8(c: SoftCpu): number {
  const lapic = c.env.lapic;
  if (lapic) return (lapic.mmioRead(0x80, 4) >>> 4) & 0xf;
  return tprWithoutApic.get(c) ?? 0;
}

export function writeCr8(c: SoftCpu, v: number): void {
  const lapic = c.env.lapic;
  // CR8[3:0] is TPR[7:4] (SDM vol. 3A §11.8.6.1); a lower priority may unmask a pending interrupt.
  if (lapic) lapic.mmioWrite(0x80, 4, (v & 0xf) << 4);
  else tprWithoutApic.set(c, v & 0xf);
  c.eventPending = true;
}

def0f(0x20, (c) => { // MOV r, CRn
  const x = fetchCrModrm(c);
  const cr = x >> 4, r = x & 15;
  if (cr !== 0 && cr !== 2 && cr !== 3 && cr !== 4 && cr !== 8) c.ud();
  requireCpl0(c);
  let v: number;
  switch (cr) {
    case 0: v = c.cr0 >>> 0; break;
    case 2: v = c.cr2; break;
    case 3: v = c.cr3; break;
    case 4: v = c.cr4 >>> 0; break;
    default: v = readCr8(c); break;
  }
  setRegFromNum(c, r, v);
});

def0f(0x22, (c) => { // MOV CRn, r
  const x = fetchCrModrm(c);
  const cr = x >> 4, r = x & 15;
  if (cr !== 0 && cr !== 2 && cr !== 3 && cr !== 4 && cr !== 8) c.ud();
  requireCpl0(c);
  const lo = regLo(c, r), hi = regHi(c, r);
  switch (cr) {
    case 0: writeCr0(c, lo, hi); break;
    case 2: c.cr2 = c.mode64 ? hi * C.TWO32 + (lo >>> 0) : lo >>> 0; break;
    case 3: writeCr3(c, lo, hi); break;
    case 4: writeCr4(c, lo, hi); break;
    case 8:
      if (hi !== 0 || (lo & ~0xf) !== 0) c.gp(0);
      writeCr8(c, lo);
      break;
  }
});

/** MOV CR0 (SDM vol. 3A §2.5 and MOV CR's #GP list; IA-32e activation per §9.8.5). */
export function writeCr0(c: SoftCpu, lo: number, hi = 0): void {
  if (hi !== 0) c.gp(0);
  const old = c.cr0;
  const v = ((old & ~CR0_WRITABLE) | (lo & CR0_WRITABLE) | C.CR0_ET) | 0;
  if ((v & C.CR0_PG) && !(v & C.CR0_PE)) c.gp(0);
  if ((v & C.CR0_NW) && !(v & C.CR0_CD)) c.gp(0);
  const pagingOn = (v & C.CR0_PG) !== 0 && (old & C.CR0_PG) === 0;
  const pagingOff = (v & C.CR0_PG) === 0 && (old & C.CR0_PG) !== 0;
  let efer = c.efer;
  if (pagingOn && (efer & C.EFER_LME)) {
    // Entering IA-32e mode needs PAE, and the current code segment must not be a 64-bit one.
    if (!(c.cr4 & C.CR4_PAE) || (c.segAttr[C.CS] & C.SEG_L)) c.gp(0);
    efer |= C.EFER_LMA;
  }
  if (pagingOff) {
    // Paging cannot be turned off in 64-bit mode; leaving it in compatibility mode leaves IA-32e mode.
    if (c.mode64) c.gp(0);
    efer &= ~C.EFER_LMA;
  }
  c.cr0 = v;
  c.efer = efer;
  c.updateMode();
  if ((old ^ v) & (C.CR0_PG | C.CR0_WP | C.CR0_PE)) c.flushTlb(true);
}

/** MOV CR3: flushes the non-global translations (SDM vol. 3A §4.10.4.1). */
export function writeCr3(c: SoftCpu, lo: number, hi = 0): void {
  let v: number;
  if (c.efer & C.EFER_LMA) {
    // Bits above MAXPHYADDR are reserved (bit 63 is PCID's no-flush bit, unsupported without CR4.PCIDE).
    if (hi >>> (C.MAXPHYADDR - 32) !== 0) c.gp(0);
    v = hi * C.TWO32 + (lo >>> 0);
  } else {
    v = lo >>> 0;
  }
  c.cr3 = v;
  c.flushTlb(false);
}

export function writeCr4(c: SoftCpu, lo: number, hi = 0): void {
  if (hi !== 0 || (lo & ~CR4_SUPPORTED) !== 0) c.gp(0);
  const old = c.cr4;
  if ((c.efer & C.EFER_LMA) && !(lo & C.CR4_PAE)) c.gp(0);
  c.cr4 = lo;
  c.updateMode();
  if ((old ^ lo) & CR4_FLUSH_ALL) c.flushTlb(true);
}

// ---- Debug registers. Breakpoints are stored but not yet acted on.

const DR6_FIXED = 0xffff0ff0;
const DR6_WRITABLE = 0x0000e00f;
const DR7_FIXED = 0x400;
const DR7_WRITABLE = 0xffff23ff;

/** DR4/DR5 alias DR6/DR7 unless CR4.DE, which makes them #UD (SDM vol. 3A §17.2.2). */
function debugRegIndex(c: SoftCpu, n: number): number {
  if (n > 7) c.ud();
  if (n === 4 || n === 5) {
    if (c.cr4 & C.CR4_DE) c.ud();
    return n + 2;
  }
  return n;
}

def0f(0x21, (c) => { // MOV r, DRn
  const x = fetchCrModrm(c);
  const n = debugRegIndex(c, x >> 4);
  requireCpl0(c);
  setRegFromNum(c, x & 15, c.dr[n]);
});

def0f(0x23, (c) => { // MOV DRn, r
  const x = fetchCrModrm(c);
  const n = debugRegIndex(c, x >> 4);
  requireCpl0(c);
  const r = x & 15;
  const lo = regLo(c, r), hi = regHi(c, r);
  if (n >= 6) {
    // The upper halves of DR6/DR7 are reserved and must be written as 0 (SDM vol. 3A §17.2.6).
    if (hi !== 0) c.gp(0);
    c.dr[n] = n === 6 ? ((lo & DR6_WRITABLE) | DR6_FIXED) >>> 0 : ((lo & DR7_WRITABLE) | DR7_FIXED) >>> 0;
  } else {
    c.dr[n] = c.mode64 ? hi * C.TWO32 + (lo >>> 0) : lo >>> 0;
  }
});
