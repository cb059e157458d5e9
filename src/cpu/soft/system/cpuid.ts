// CPUID (0F A2): what this software CPU is and what it implements. Intel SDM vol. 2A "CPUID".
//
// Rule: advertise ONLY what the soft CPU implements. Every feature bit comes from FEATURES below (one table, easy
// to audit); an instruction family that gains an extension flips its entry on.
//
// Identity: GenuineIntel, family 6 model 0x1C (Atom "Bonnell"), stepping 10. Linux 6.1 lists that model as not
// affected by speculative-execution bugs (arch/x86/kernel/cpu/common.c, cpu_vuln_whitelist: NO_SPECULATION), so it
// enables no PTI, retpolines or buffer clearing, which would only slow an emulated CPU down. Stepping 10 keeps it
// clear of the early-Atom PSE erratum check (intel.c: stepping <= 2).
//
// Time: leaf 15h reports the TSC as crystal * EBX / EAX with the crystal = the LAPIC timer clock (1 GHz, see
// src/devices/irq/lapic.ts), so Linux knows the TSC frequency (TSC_KNOWN_FREQ, no calibration) and takes the
// LAPIC timer period from the crystal (native_calibrate_tsc sets lapic_timer_period = crystal / HZ).
import type { SoftCpu } from '../cpu.ts';
import * as C from '../constants.ts';
import { def0f } from '../tables.ts';
import { TSC_HZ } from './control.ts';
import { MSR, tscDeadlineOffered } from './msr.ts';
import { KVM_CPUID_BASE, kvmCpuidLeaf } from './pvclock.ts';

/** The LAPIC timer's input clock (src/devices/irq/lapic.ts counts 1 tick per ns before its divider). */
export const APIC_BUS_HZ = 1_000_000_000;

export const CPU_VENDOR = 'GenuineIntel';
export const CPU_FAMILY = 6;
export const CPU_MODEL = 0x1c;
export const CPU_STEPPING = 10;
export const CPU_BRAND = 'ringzero software x86-64 CPU';
/** Hypervisor vendor signature of leaf 40000000h (12 bytes). */
export const HYPERVISOR_SIGNATURE = 'ringzero\0\0\0\0';

/** Highest basic leaf, highest extended leaf, highest hypervisor leaf. */
export const MAX_BASIC_LEAF = 0x16;
export const MAX_EXTENDED_LEAF = 0x80000008;
export const MAX_HYPERVISOR_LEAF = 0x40000010;

type Reg = 'eax' | 'ebx' | 'ecx' | 'edx';

export interface CpuidFeature {
  leaf: number;
  reg: Reg;
  bit: number;
  name: string;
  /** true/false, or decided per vCPU (e.g. HTT when there is more than one). */
  on: boolean | ((c: SoftCpu) => boolean);
  /** What implements it, or why it is off. */
  why: string;
}

/** Every feature flag this CPU could report. Leaf 7 and the others not listed report no features. */
export const FEATURES: CpuidFeature[] = [
  // Leaf 1 EDX
  { leaf: 1, reg: 'edx', bit: 0, name: 'fpu', on: true, why: 'x87 (ops/fpu.ts)' },
  { leaf: 1, reg: 'edx', bit: 1, name: 'vme', on: false, why: 'no virtual-8086 mode extensions' },
  { leaf: 1, reg: 'edx', bit: 2, name: 'de', on: false, why: 'debug extensions not advertised (CR4.DE is accepted)' },
  { leaf: 1, reg: 'edx', bit: 3, name: 'pse', on: true, why: '4 MiB pages (cpu.ts walk)' },
  { leaf: 1, reg: 'edx', bit: 4, name: 'tsc', on: true, why: 'RDTSC (system/control.ts)' },
  { leaf: 1, reg: 'edx', bit: 5, name: 'msr', on: true, why: 'RDMSR/WRMSR (system/msr.ts)' },
  { leaf: 1, reg: 'edx', bit: 6, name: 'pae', on: true, why: 'PAE paging (cpu.ts walk)' },
  { leaf: 1, reg: 'edx', bit: 7, name: 'mce', on: false, why: 'no machine-check exception' },
  { leaf: 1, reg: 'edx', bit: 8, name: 'cx8', on: true, why: 'CMPXCHG8B (ops/alu.ts)' },
  { leaf: 1, reg: 'edx', bit: 9, name: 'apic', on: (c) => c.env.lapic !== undefined, why: 'xAPIC (devices/irq/lapic.ts)' },
  { leaf: 1, reg: 'edx', bit: 11, name: 'sep', on: true, why: 'SYSENTER/SYSEXIT (system/)' },
  { leaf: 1, reg: 'edx', bit: 12, name: 'mtrr', on: true, why: 'MTRR MSRs stored and read back (system/msr.ts)' },
  { leaf: 1, reg: 'edx', bit: 13, name: 'pge', on: true, why: 'global pages (cpu.ts TLB)' },
  { leaf: 1, reg: 'edx', bit: 14, name: 'mca', on: false, why: 'no machine-check architecture' },
  { leaf: 1, reg: 'edx', bit: 15, name: 'cmov', on: true, why: 'CMOVcc (ops/alu.ts)' },
  { leaf: 1, reg: 'edx', bit: 16, name: 'pat', on: true, why: 'PAT MSR (types have no effect without caches)' },
  { leaf: 1, reg: 'edx', bit: 17, name: 'pse36', on: false, why: 'not implemented in the 32-bit walk' },
  { leaf: 1, reg: 'edx', bit: 19, name: 'clflush', on: true, why: 'CLFLUSH (0F AE /7, ops owning 0F AE)' },
  { leaf: 1, reg: 'edx', bit: 23, name: 'mmx', on: true, why: 'MMX (ops/sse.ts)' },
  { leaf: 1, reg: 'edx', bit: 24, name: 'fxsr', on: true, why: 'FXSAVE/FXRSTOR (0F AE)' },
  { leaf: 1, reg: 'edx', bit: 25, name: 'sse', on: true, why: 'SSE (ops/sse.ts)' },
  { leaf: 1, reg: 'edx', bit: 26, name: 'sse2', on: true, why: 'SSE2 (ops/sse.ts)' },
  { leaf: 1, reg: 'edx', bit: 28, name: 'htt', on: (c) => (c.env.cpuCount ?? 1) > 1, why: 'several logical processors per package' },
  // Leaf 1 ECX
  { leaf: 1, reg: 'ecx', bit: 0, name: 'sse3', on: false, why: 'until the SSE family implements SSE3' },
  { leaf: 1, reg: 'ecx', bit: 3, name: 'monitor', on: false, why: 'no MONITOR/MWAIT' },
  { leaf: 1, reg: 'ecx', bit: 9, name: 'ssse3', on: false, why: 'until the SSE family implements SSSE3' },
  { leaf: 1, reg: 'ecx', bit: 13, name: 'cx16', on: true, why: 'CMPXCHG16B (ops/alu.ts, 0F C7 /1 with REX.W)' },
  { leaf: 1, reg: 'ecx', bit: 19, name: 'sse4_1', on: false, why: 'not implemented' },
  { leaf: 1, reg: 'ecx', bit: 20, name: 'sse4_2', on: false, why: 'not implemented' },
  { leaf: 1, reg: 'ecx', bit: 21, name: 'x2apic', on: false, why: 'xAPIC only' },
  { leaf: 1, reg: 'ecx', bit: 23, name: 'popcnt', on: true, why: 'POPCNT (ops/alu-bits.ts)' },
  {
    leaf: 1, reg: 'ecx', bit: 24, name: 'tsc_deadline', on: tscDeadlineOffered,
    why: 'LAPIC timer TSC-deadline mode (devices/irq/lapic.ts, MSR 6E0h): Linux then skips its ~100 ms APIC timer calibration',
  },
  { leaf: 1, reg: 'ecx', bit: 26, name: 'xsave', on: false, why: 'no XSAVE' },
  { leaf: 1, reg: 'ecx', bit: 28, name: 'avx', on: false, why: 'no AVX' },
  { leaf: 1, reg: 'ecx', bit: 31, name: 'hypervisor', on: true, why: 'we are a virtual CPU' },
  // Leaf 7 (subleaf 0) EDX
  {
    leaf: 7, reg: 'edx', bit: 14, name: 'serialize', on: true,
    why: 'SERIALIZE (system/tables-ops.ts): Linux sync_core() then needs no IRET to itself (~100k of them per boot)',
  },
  // Leaf 80000001h
  { leaf: 0x80000001, reg: 'ecx', bit: 0, name: 'lahf_lm', on: true, why: 'LAHF/SAHF in 64-bit mode (ops/flow-stack.ts)' },
  { leaf: 0x80000001, reg: 'edx', bit: 11, name: 'syscall', on: true, why: 'SYSCALL/SYSRET (system/)' },
  { leaf: 0x80000001, reg: 'edx', bit: 20, name: 'nx', on: true, why: 'EFER.NXE and XD bits (cpu.ts walk)' },
  { leaf: 0x80000001, reg: 'edx', bit: 26, name: 'pdpe1gb', on: false, why: '1 GiB pages: the walk has them, not yet tested' },
  { leaf: 0x80000001, reg: 'edx', bit: 27, name: 'rdtscp', on: true, why: 'RDTSCP (system/tables-ops.ts, with control.ts TSC and TSC_AUX)' },
  { leaf: 0x80000001, reg: 'edx', bit: 29, name: 'lm', on: true, why: 'long mode' },
  // Leaf 80000007h
  // The TSC does run at a fixed rate, but Linux (arch/x86/kernel/kvmclock.c) rates kvm-clock below the TSC when the
  // TSC is invariant; hidden so the guest takes kvm-clock (pvclock.ts) as its clocksource.
  { leaf: 0x80000007, reg: 'edx', bit: 8, name: 'invariant_tsc', on: false, why: 'hidden: the guest prefers kvm-clock (system/pvclock.ts)' },
];

function featureBits(c: SoftCpu, leaf: number, reg: Reg): number {
  let v = 0;
  for (const f of FEATURES) {
    if (f.leaf !== leaf || f.reg !== reg) continue;
    const on = typeof f.on === 'function' ? f.on(c) : f.on;
    if (on) v |= 1 << f.bit;
  }
  return v | 0;
}

/** Whether a named feature is advertised to this vCPU. */
export function hasFeature(c: SoftCpu, name: string): boolean {
  const f = FEATURES.find((x) => x.name === name);
  if (!f) return false;
  return typeof f.on === 'function' ? f.on(c) : f.on;
}

/** Four little-endian dwords of a string, padded with NULs to 4*n bytes. */
function dwords(s: string, n: number): number[] {
  const out: number[] = [];
  for (let i = 0; i < n; i++) {
    let v = 0;
    for (let k = 0; k < 4; k++) v |= (s.charCodeAt(4 * i + k) & 0xff || 0) << (8 * k);
    out.push(v | 0);
  }
  return out;
}

/** ceil(log2(n)) for n >= 1: the APIC-ID bits used by `n` cores. */
function bitsFor(n: number): number {
  let b = 0;
  while ((1 << b) < n) b++;
  return b;
}

/** The four result registers of CPUID(leaf, subleaf). Results go into `out` (eax, ebx, ecx, edx). */
export function cpuidLeaf(c: SoftCpu, leaf: number, subleaf: number, out: Int32Array): void {
  leaf >>>= 0;
  subleaf >>>= 0;
  // The KVM paravirtual leaves (kvm-clock) in the second hypervisor range: system/pvclock.ts.
  if (leaf >= KVM_CPUID_BASE && leaf <= KVM_CPUID_BASE + 0xff) { kvmCpuidLeaf(leaf, out); return; }
  const apicId = c.env.cpuIndex ?? 0;
  const count = Math.max(1, c.env.cpuCount ?? 1);
  const coreBits = bitsFor(count);
  let a = 0, b = 0, cx = 0, d = 0;
  // Intel: a leaf above the highest one of its range returns the highest basic leaf's data (SDM CPUID).
  const maxBasic = (c.msrs.get(MSR.MISC_ENABLE) ?? 0n) & (1n << 22n) ? 2 : MAX_BASIC_LEAF;
  if (leaf < 0x40000000 && leaf > maxBasic) leaf = maxBasic;
  else if (leaf >= 0x80000000 && leaf > MAX_EXTENDED_LEAF) leaf = maxBasic;
  else if (leaf > MAX_HYPERVISOR_LEAF && leaf < 0x80000000) {
    if (leaf <= 0x400000ff) { out.fill(0); return; }
    leaf = maxBasic;
  }
  switch (leaf) {
    case 0: {
      const v = dwords(CPU_VENDOR, 3);
      a = maxBasic; b = v[0]; d = v[1]; cx = v[2];
      break;
    }
    case 1:
      a = (((CPU_MODEL >> 4) & 0xf) << 16) | (CPU_FAMILY << 8) | ((CPU_MODEL & 0xf) << 4) | CPU_STEPPING;
      // EBX: CLFLUSH line size in 8-byte units (bits 15:8), addressable logical processor IDs (23:16), APIC ID.
      b = (8 << 8) | ((count > 1 ? 1 << coreBits : 1) << 16) | ((apicId & 0xff) << 24);
      cx = featureBits(c, 1, 'ecx');
      d = featureBits(c, 1, 'edx');
      break;
    case 2:
      // One iteration, no descriptors: the cache parameters are in leaf 4.
      a = 0x00000001;
      break;
    case 4: {
      // Deterministic cache parameters (SDM CPUID leaf 04h). EAX[31:26] = cores per package - 1.
      const caches: [type: number, level: number, ways: number, sets: number, shared: number][] = [
        [1, 1, 8, 64, 1], // L1d 32 KiB, 8-way, 64-byte lines
        [2, 1, 8, 64, 1], // L1i 32 KiB
        [3, 2, 8, 1024, 1], // L2 512 KiB
      ];
      const cc = caches[subleaf];
      if (cc) {
        const [type, level, ways, sets, shared] = cc;
        a = type | (level << 5) | (1 << 8) | ((shared - 1) << 14) | (((1 << coreBits) - 1) << 26);
        b = (ways - 1) << 22 | 63; // 1 partition, 64-byte line
        cx = sets - 1;
      }
      break;
    }
    case 7:
      // Structured extended features (SDM CPUID leaf 07H): subleaf 0 only (EAX = highest subleaf = 0).
      if (subleaf === 0) d = featureBits(c, 7, 'edx');
      break;
    case 0xb:
      // Extended topology (SDM CPUID leaf 0Bh): one thread per core, `count` cores in one package.
      d = apicId;
      if (subleaf === 0) { a = 0; b = 1; cx = 0 | (1 << 8); }
      else if (subleaf === 1) { a = coreBits; b = count; cx = 1 | (2 << 8); }
      else { cx = subleaf & 0xff; }
      break;
    case 0x15:
      // TSC = crystal * EBX / EAX; the crystal is the APIC timer clock.
      a = 1; b = TSC_HZ / APIC_BUS_HZ; cx = APIC_BUS_HZ;
      break;
    case 0x16:
      // Base and maximum frequency in MHz, bus (reference) frequency in MHz.
      a = TSC_HZ / 1e6; b = TSC_HZ / 1e6; cx = 100;
      break;
    case 0x40000000: {
      const v = dwords(HYPERVISOR_SIGNATURE, 3);
      a = MAX_HYPERVISOR_LEAF; b = v[0]; cx = v[1]; d = v[2];
      break;
    }
    case 0x40000010:
      // The timing leaf VMware and others use: TSC and APIC bus frequencies in kHz.
      a = TSC_HZ / 1000; b = APIC_BUS_HZ / 1000;
      break;
    case 0x80000000:
      a = MAX_EXTENDED_LEAF;
      break;
    case 0x80000001:
      cx = featureBits(c, 0x80000001, 'ecx');
      d = featureBits(c, 0x80000001, 'edx');
      break;
    case 0x80000002: case 0x80000003: case 0x80000004: {
      const v = dwords(CPU_BRAND, 12);
      const k = (leaf - 0x80000002) * 4;
      a = v[k]; b = v[k + 1]; cx = v[k + 2]; d = v[k + 3];
      break;
    }
    case 0x80000006:
      // L2: size in KiB (31:16), associativity code 6 = 8-way (15:12), line size (7:0).
      cx = (512 << 16) | (6 << 12) | 64;
      break;
    case 0x80000007:
      d = featureBits(c, 0x80000007, 'edx');
      break;
    case 0x80000008:
      // Physical address bits (7:0) and linear address bits (15:8).
      a = (48 << 8) | C.MAXPHYADDR;
      break;
    default:
      break; // reserved or featureless leaves (5, 6, 0xA, 0xD, ...) are all zero
  }
  out[0] = a; out[1] = b; out[2] = cx; out[3] = d;
}

const result = new Int32Array(4);

def0f(0xa2, (c) => {
  cpuidLeaf(c, c.gpr[0], c.gpr[2], result);
  c.setReg(4, 0, result[0]);
  c.setReg(4, 3, result[1]);
  c.setReg(4, 1, result[2]);
  c.setReg(4, 2, result[3]);
});
