// Model-specific registers: RDMSR (0F 32) and WRMSR (0F 30), and the table of MSRs this CPU implements.
// Intel SDM vol. 4 (MSR list), vol. 3A §2.2.1 (EFER), §5.8.8 (SYSCALL MSRs), §11.11 (MTRRs), §11.12 (PAT).
// An MSR not in the table raises #GP(0), as a real CPU does. MSRs without a dedicated CPU field live in
// `cpu.msrs` (bigint by number); a missing entry reads as the MSR's reset value. Others register more MSRs with
// `registerMsr` (the kvm-clock MSRs, for instance).
import type { SoftCpu } from '../cpu.ts';
import * as C from '../constants.ts';
import { def0f } from '../tables.ts';
import { readTsc, writeTsc, tscToNs, TSC_HZ } from './control.ts';

/** MSR numbers (SDM vol. 4 table 2-2). */
export const MSR = {
  TSC: 0x10,
  PLATFORM_ID: 0x17,
  APIC_BASE: 0x1b,
  FEATURE_CONTROL: 0x3a,
  BIOS_SIGN_ID: 0x8b,
  PLATFORM_INFO: 0xce,
  MTRRCAP: 0xfe,
  SYSENTER_CS: 0x174,
  SYSENTER_ESP: 0x175,
  SYSENTER_EIP: 0x176,
  MCG_CAP: 0x179,
  MCG_STATUS: 0x17a,
  MISC_ENABLE: 0x1a0,
  DEBUGCTL: 0x1d9,
  MTRR_PHYSBASE0: 0x200,
  MTRR_FIX64K_00000: 0x250,
  MTRR_FIX16K_80000: 0x258,
  MTRR_FIX16K_A0000: 0x259,
  MTRR_FIX4K_C0000: 0x268,
  MTRR_FIX4K_F8000: 0x26f,
  PAT: 0x277,
  MTRR_DEF_TYPE: 0x2ff,
  EFER: 0xc0000080,
  STAR: 0xc0000081,
  LSTAR: 0xc0000082,
  CSTAR: 0xc0000083,
  SFMASK: 0xc0000084,
  FS_BASE: 0xc0000100,
  GS_BASE: 0xc0000101,
  KERNEL_GS_BASE: 0xc0000102,
  TSC_AUX: 0xc0000103,
  TSC_DEADLINE: 0x6e0,
} as const;

export interface MsrHandler {
  read(c: SoftCpu): bigint;
  /** Validate (raise #GP(0) with `c.gp()`) and apply a write. */
  write(c: SoftCpu, value: bigint): void;
}

const table = new Map<number, MsrHandler>();

/** Add or replace an MSR. */
export function registerMsr(index: number, handler: MsrHandler): void {
  table.set(index >>> 0, handler);
}

export function isMsrImplemented(index: number): boolean {
  return table.has(index >>> 0);
}

/** RDMSR semantics without the privilege check: the value, or #GP(0) for an unimplemented MSR. */
export function readMsr(c: SoftCpu, index: number): bigint {
  const h = table.get(index >>> 0);
  if (!h) return c.gp(0);
  return h.read(c);
}

/** WRMSR semantics without the privilege check. */
export function writeMsr(c: SoftCpu, index: number, value: bigint): void {
  const h = table.get(index >>> 0);
  if (!h) return c.gp(0);
  h.write(c, BigInt.asUintN(64, value));
}

/** The stored value of a plain MSR (those kept in `cpu.msrs`), e.g. STAR/LSTAR/SFMASK/SYSENTER_* for SYSCALL. */
export function storedMsr(c: SoftCpu, index: number): bigint {
  return c.msrs.get(index) ?? resetValues.get(index) ?? 0n;
}

// ---- RDMSR / WRMSR instructions: CPL 0 only (virtual-8086 mode is CPL 3). ECX = index, EDX:EAX = value.

def0f(0x32, (c) => {
  if (c.cpl !== 0) c.gp(0);
  const v = readMsr(c, c.gpr[2]);
  c.setReg(4, 0, Number(v & 0xffffffffn) | 0);
  c.setReg(4, 2, Number((v >> 32n) & 0xffffffffn) | 0);
});

def0f(0x30, (c) => {
  if (c.cpl !== 0) c.gp(0);
  const v = (BigInt(c.gpr[4] >>> 0) << 32n) | BigInt(c.gpr[0] >>> 0);
  writeMsr(c, c.gpr[2], v);
});

// =====================================================================================================
// The table

const resetValues = new Map<number, bigint>();
const LOW47 = 1n << 47n;

function isCanonical(v: bigint): boolean {
  const s = BigInt.asIntN(64, v);
  return s >= -LOW47 && s < LOW47;
}

/** A number for a canonical 64-bit value (as the CPU stores linear addresses: signed, exact). */
function canonicalNumber(v: bigint): number {
  return Number(BigInt.asIntN(64, v));
}

function toU64(n: number): bigint {
  return BigInt.asUintN(64, BigInt(n));
}

/** A plain MSR stored in `cpu.msrs`; `validate` returns false to raise #GP(0) (null: read-only). */
function plain(index: number, reset: bigint, validate: ((v: bigint) => boolean) | null = () => true): void {
  resetValues.set(index, reset);
  registerMsr(index, {
    read: (c) => c.msrs.get(index) ?? reset,
    write: (c, v) => {
      if (validate === null || !validate(v)) c.gp(0);
      c.msrs.set(index, v);
    },
  });
}

// Memory types valid in MTRRs and the PAT (SDM vol. 3A table 11-8): UC, WC, WT, WP, WB (and UC- in the PAT).
const MTRR_TYPES = new Set([0, 1, 4, 5, 6]);
const PAT_TYPES = new Set([0, 1, 4, 5, 6, 7]);
const PHYS_MASK = (1n << BigInt(C.MAXPHYADDR)) - 1n;

function allBytes(v: bigint, ok: Set<number>): boolean {
  for (let k = 0n; k < 64n; k += 8n) if (!ok.has(Number((v >> k) & 0xffn))) return false;
  return true;
}

// ---- Time-stamp counter (its value is cpu.tscOffset + scaled guest time; see control.ts)
registerMsr(MSR.TSC, {
  read: (c) => BigInt(readTsc(c)),
  write: (c, v) => writeTsc(c, Number(v)),
});
plain(MSR.TSC_AUX, 0n, (v) => v >> 32n === 0n);

// ---- Identification and feature control. No microcode (revision 0), FEATURE_CONTROL locked with nothing enabled.
plain(MSR.PLATFORM_ID, 0n, null);
registerMsr(MSR.BIOS_SIGN_ID, { read: () => 0n, write: () => {} }); // writing 0 before CPUID is the documented read protocol
plain(MSR.FEATURE_CONTROL, 1n, null);
// PLATFORM_INFO: maximum non-turbo ratio (bits 15:8) in units of 100 MHz, matching the TSC frequency.
plain(MSR.PLATFORM_INFO, BigInt(Math.round(TSC_HZ / 100e6)) << 8n, null);

// MISC_ENABLE: fast strings (bit 0) on; BTS/PEBS unavailable (bits 11, 12). Writable: fast strings, limit CPUID
// maxval (22), xTPR disable (23), XD disable (34); the other bits read back as they were.
const MISC_ENABLE_WRITABLE = 1n | (1n << 22n) | (1n << 23n) | (1n << 34n);
resetValues.set(MSR.MISC_ENABLE, 0x1801n);
registerMsr(MSR.MISC_ENABLE, {
  read: (c) => c.msrs.get(MSR.MISC_ENABLE) ?? 0x1801n,
  write: (c, v) => {
    const old = c.msrs.get(MSR.MISC_ENABLE) ?? 0x1801n;
    c.msrs.set(MSR.MISC_ENABLE, (old & ~MISC_ENABLE_WRITABLE) | (v & MISC_ENABLE_WRITABLE));
  },
});
plain(MSR.DEBUGCTL, 0n, (v) => (v & ~0x3n) === 0n); // LBR/BTF only stored; no branch tracing

// ---- Machine check: no banks (MCG_CAP.count = 0), MCG_STATUS writable with zero only.
plain(MSR.MCG_CAP, 0n, null);
plain(MSR.MCG_STATUS, 0n, (v) => v === 0n);

// ---- Local APIC base
registerMsr(MSR.APIC_BASE, {
  read: (c) => c.env.lapic ? c.env.lapic.readApicBaseMsr() : (c.msrs.get(MSR.APIC_BASE) ?? 0xfee00900n),
  write: (c, v) => {
    // Bits 0-7, 9, 10 (x2APIC enable: not supported) and above MAXPHYADDR are reserved; BSP (8) is read-only.
    if ((v & 0x6ffn) !== 0n || (v & ~PHYS_MASK) !== 0n) c.gp(0);
    if (c.env.lapic) c.env.lapic.writeApicBaseMsr(v);
    else c.msrs.set(MSR.APIC_BASE, (v & ~0x100n) | 0x100n);
    c.eventPending = true;
  },
});

// ---- IA32_TSC_DEADLINE (SDM 11.5.4.1): the LAPIC timer's TSC-deadline mode. Offered (CPUID.01H:ECX[24]) only with
// RINGZERO_TSC_DEADLINE=1 and a LAPIC that has the mode: it saves Linux's ~100 ms APIC timer calibration (a busy wait
// on the TSC, ~6M guest instructions per boot), but a quiet boot pair measured 0.99/0.96/1.06x (session 31), and the
// KVM engine's CPUID does not offer it, so a guest moved there would lose its timer. Where CPUID does not offer it
// the MSR does not exist: RDMSR and WRMSR raise #GP(0), as on hardware without the feature.
let TSC_DEADLINE = process.env.RINGZERO_TSC_DEADLINE === '1';
/** Tests: offer the TSC-deadline mode (CPUID bit and MSR) or not; returns the old setting. */
export function setTscDeadline(on: boolean): boolean { const old = TSC_DEADLINE; TSC_DEADLINE = on; return old; }
/** Whether this vCPU offers the TSC-deadline timer (CPUID.01H:ECX[24], IA32_TSC_DEADLINE). */
export function tscDeadlineOffered(c: SoftCpu): boolean {
  return TSC_DEADLINE && c.env.lapic?.writeTscDeadline !== undefined;
}
registerMsr(MSR.TSC_DEADLINE, {
  read: (c) => tscDeadlineOffered(c) ? c.env.lapic!.readTscDeadline!() : c.gp(0),
  write: (c, v) => {
    if (!tscDeadlineOffered(c)) return c.gp(0);
    c.env.lapic!.writeTscDeadline!(v, tscToNs(c, v));
  },
});

// ---- SYSENTER (read by the SYSENTER/SYSEXIT implementation through storedMsr)
plain(MSR.SYSENTER_CS, 0n, (v) => v >> 32n === 0n);
plain(MSR.SYSENTER_ESP, 0n, isCanonical);
plain(MSR.SYSENTER_EIP, 0n, isCanonical);

// ---- SYSCALL (read by the SYSCALL/SYSRET implementation through storedMsr)
plain(MSR.STAR, 0n);
plain(MSR.LSTAR, 0n, isCanonical);
plain(MSR.CSTAR, 0n, isCanonical);
plain(MSR.SFMASK, 0n, (v) => v >> 32n === 0n);

// ---- EFER: SCE, LME, LMA (read-only: it follows CR0.PG and LME), NXE.
const EFER_WRITABLE = C.EFER_SCE | C.EFER_LME | C.EFER_NXE;
registerMsr(MSR.EFER, {
  read: (c) => BigInt(c.efer >>> 0),
  write: (c, v) => {
    if (v >> 32n !== 0n) c.gp(0);
    const lo = Number(v);
    if (lo & ~(EFER_WRITABLE | C.EFER_LMA)) c.gp(0);
    const old = c.efer;
    // LME cannot change while paging is enabled (SDM vol. 3A §9.8.5).
    if ((c.cr0 & C.CR0_PG) && ((old ^ lo) & C.EFER_LME)) c.gp(0);
    const nv = (lo & EFER_WRITABLE) | (old & C.EFER_LMA);
    c.efer = nv;
    c.updateMode();
    // The TLB caches execute permission, which depends on NXE.
    if ((old ^ nv) & C.EFER_NXE) c.flushTlb(true);
  },
});

// ---- FS/GS bases and SWAPGS's KERNEL_GS_BASE: canonical addresses only.
function segmentBase(index: number, seg: number): void {
  registerMsr(index, {
    read: (c) => toU64(c.segBase[seg]),
    write: (c, v) => {
      if (!isCanonical(v)) c.gp(0);
      c.segBase[seg] = canonicalNumber(v);
    },
  });
}
segmentBase(MSR.FS_BASE, C.FS);
segmentBase(MSR.GS_BASE, C.GS);
registerMsr(MSR.KERNEL_GS_BASE, {
  read: (c) => toU64(c.kernelGsBase),
  write: (c, v) => {
    if (!isCanonical(v)) c.gp(0);
    c.kernelGsBase = canonicalNumber(v);
  },
});

// ---- PAT (SDM vol. 3A §11.12.2; power-up value WB, WT, UC-, UC repeated)
plain(MSR.PAT, 0x0007040600070406n, (v) => allBytes(v, PAT_TYPES));

// ---- MTRRs (SDM vol. 3A §11.11). MTRRcap: 8 variable ranges, fixed ranges, write combining; no SMRR.
// The values are stored and read back; the soft CPU has no caches, so memory types have no effect.
export const MTRR_VARIABLE_COUNT = 8;
plain(MSR.MTRRCAP, BigInt(MTRR_VARIABLE_COUNT) | 0x100n | 0x400n, null);
// Without firmware nobody programs the MTRRs, so they start as firmware would leave them: enabled, default
// type write-back (E = bit 11, type in bits 7:0), fixed ranges off.
plain(MSR.MTRR_DEF_TYPE, 0x806n, (v) => (v & ~0xcffn) === 0n && MTRR_TYPES.has(Number(v & 0xffn)));
for (const i of [MSR.MTRR_FIX64K_00000, MSR.MTRR_FIX16K_80000, MSR.MTRR_FIX16K_A0000]) plain(i, 0n, (v) => allBytes(v, MTRR_TYPES));
for (let i = MSR.MTRR_FIX4K_C0000; i <= MSR.MTRR_FIX4K_F8000; i++) plain(i, 0n, (v) => allBytes(v, MTRR_TYPES));
for (let n = 0; n < MTRR_VARIABLE_COUNT; n++) {
  // PHYSBASE: type in 7:0, base in MAXPHYADDR-1:12. PHYSMASK: valid in bit 11, mask in MAXPHYADDR-1:12.
  plain(MSR.MTRR_PHYSBASE0 + 2 * n, 0n, (v) => (v & ~(PHYS_MASK & ~0xf00n)) === 0n && MTRR_TYPES.has(Number(v & 0xffn)));
  plain(MSR.MTRR_PHYSBASE0 + 2 * n + 1, 0n, (v) => (v & ~(PHYS_MASK & ~0x7ffn)) === 0n);
}
