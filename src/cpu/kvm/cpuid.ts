// CPUID for a KVM vCPU: the leaves KVM_GET_SUPPORTED_CPUID reports for this host, with what only the VMM knows put
// in: this vCPU's APIC ID, the VM's topology (one package, one thread per core, `cpus` cores) and the KVM
// paravirtual leaves chosen for the machine.
//
// Why filter the paravirtual features rather than pass KVM's leaf 0x40000001 as is: each feature is a promise the
// VMM makes about its side (state saved in a snapshot, an irqchip in the kernel, ...), so only the ones this VMM
// keeps are offered. Bit numbers: arch/x86/include/uapi/asm/kvm_para.h (test/kvm-abi.test.ts checks them against
// the installed header); their meaning: Documentation/virt/kvm/x86/cpuid.rst.
import type { CpuidEntry } from '../../kvm/abi.ts';

/** Leaf 0x40000000: max hypervisor leaf in EAX, "KVMKVMKVM\0\0\0" in EBX ECX EDX. */
export const KVM_CPUID_SIGNATURE = 0x4000_0000;
/** Leaf 0x40000001: paravirtual feature bits in EAX (EDX: hints). */
export const KVM_CPUID_FEATURES = 0x4000_0001;

export const KVM_FEATURE = {
  CLOCKSOURCE: 0,
  NOP_IO_DELAY: 1,
  CLOCKSOURCE2: 3,
  ASYNC_PF: 4,
  STEAL_TIME: 5,
  PV_EOI: 6,
  PV_UNHALT: 7,
  PV_TLB_FLUSH: 9,
  ASYNC_PF_VMEXIT: 10,
  PV_SEND_IPI: 11,
  POLL_CONTROL: 12,
  PV_SCHED_YIELD: 13,
  ASYNC_PF_INT: 14,
  MSI_EXT_DEST_ID: 15,
  CLOCKSOURCE_STABLE_BIT: 24,
} as const;

/**
 * The paravirtual features ringzero offers when KVM supports them:
 * - CLOCKSOURCE, CLOCKSOURCE2 (kvm-clock, old and new MSRs) and CLOCKSOURCE_STABLE_BIT: the guest's clock without
 *   PIT/HPET calibration; the VMM saves and restores the kvm-clock MSRs and KVM_GET/SET_CLOCK (./state.ts).
 * - NOP_IO_DELAY: port 0x80 delays are not needed (each would be an exit).
 * - STEAL_TIME: time the host ran something else, so the guest scheduler does not charge it to tasks.
 * - PV_EOI: EOI by a memory write the kernel's LAPIC reads, not an exit (in-kernel LAPIC only, which we have).
 * - PV_UNHALT, PV_SEND_IPI, PV_TLB_FLUSH, PV_SCHED_YIELD: hypercalls of the in-kernel LAPIC and scheduler; they
 *   need the in-kernel irqchip, so they are offered only with it.
 * - POLL_CONTROL: the guest may turn host-side halt polling off.
 * Left out: ASYNC_PF* (async page faults need their MSRs' state carried across a snapshot and the soft engine has
 * no equivalent) and MSI_EXT_DEST_ID (only useful beyond 255 vCPUs with the split irqchip, which ringzero does not use).
 */
export function wantedPvFeatures(irqchip: boolean): number {
  const f = KVM_FEATURE;
  let bits = (1 << f.CLOCKSOURCE) | (1 << f.NOP_IO_DELAY) | (1 << f.CLOCKSOURCE2) | (1 << f.STEAL_TIME)
    | (1 << f.POLL_CONTROL) | (1 << f.CLOCKSOURCE_STABLE_BIT);
  if (irqchip) bits |= (1 << f.PV_EOI) | (1 << f.PV_UNHALT) | (1 << f.PV_SEND_IPI) | (1 << f.PV_TLB_FLUSH) | (1 << f.PV_SCHED_YIELD);
  return bits >>> 0;
}

/** "KVMKVMKVM\0\0\0" as the three registers hold it (little-endian ASCII). */
const KVM_SIGNATURE = { ebx: 0x4b4d564b, ecx: 0x564b4d56, edx: 0x0000004d };

/**
 * The KVM paravirtual leaves: the signature leaf and the feature leaf, EAX = what KVM supports AND what we want.
 * Without a feature leaf in `supported` (KVM always has one), none is offered: the guest then sees no KVM.
 */
export function pvLeaves(supported: readonly CpuidEntry[], irqchip: boolean): CpuidEntry[] {
  const kvmFeatures = supported.find((e) => e.function === KVM_CPUID_FEATURES);
  if (!kvmFeatures) return [];
  return [
    { function: KVM_CPUID_SIGNATURE, index: 0, flags: 0, eax: KVM_CPUID_FEATURES, ...KVM_SIGNATURE },
    // EDX: KVM_HINTS_REALTIME (bit 0) promises dedicated host CPUs: never on a shared host.
    { function: KVM_CPUID_FEATURES, index: 0, flags: 0, eax: (kvmFeatures.eax & wantedPvFeatures(irqchip)) >>> 0, ebx: 0, ecx: 0, edx: 0 },
  ];
}

/** CPUID for vCPU `apicId`: KVM's supported leaves with this vCPU's APIC ID and the hypervisor bit. */
export function vcpuCpuid(supported: readonly CpuidEntry[], apicId: number, cpus: number): CpuidEntry[] {
  return supported.map((e) => {
    const x = { ...e };
    switch (x.function) {
      case 1:
        // EBX[31:24] initial APIC ID, EBX[23:16] logical processors per package; ECX[31] "running under a
        // hypervisor" (SDM vol. 2A CPUID, and the convention every hypervisor follows).
        x.ebx = ((x.ebx & 0x0000ffff) | (Math.min(cpus, 255) << 16) | ((apicId & 0xff) << 24)) >>> 0;
        x.ecx = (x.ecx | 0x8000_0000) >>> 0;
        if (cpus > 1) x.edx = (x.edx | (1 << 28)) >>> 0; // HTT: the logical-processor count field is valid
        break;
      case 0xb:
      case 0x1f:
        x.edx = apicId >>> 0; // extended topology: x2APIC ID of this logical processor
        break;
      case 0x8000001e:
        x.eax = apicId >>> 0; // AMD extended APIC ID
        break;
    }
    return x;
  });
}

/**
 * CPU topology in CPUID for `cpus` vCPUs, one thread per core, all in one package: leaf 0xB (and 0x1F) levels
 * SMT (1 thread) and core (`cpus` logical processors, APIC-ID shift = ceil(log2 cpus)), leaf 4's "cores per
 * package" (SDM vol. 2A, CPUID leaves 04H and 0BH), AMD's leaf 0x80000008 ECX.NC (AMD APM vol. 3, E.4.7).
 * The host's values would describe the host's cores, not this VM's.
 */
export function topologyCpuid(entries: readonly CpuidEntry[], apicId: number, cpus: number): CpuidEntry[] {
  const shift = cpus <= 1 ? 0 : Math.ceil(Math.log2(cpus));
  return entries.map((e) => {
    const x = { ...e };
    if (x.function === 0xb || x.function === 0x1f) {
      const level = x.index;
      x.edx = apicId >>> 0;
      if (level === 0) { x.eax = 0; x.ebx = 1; x.ecx = (1 << 8) | level; }
      else if (level === 1) { x.eax = shift; x.ebx = cpus; x.ecx = (2 << 8) | level; }
      else { x.eax = 0; x.ebx = 0; x.ecx = level; }
    } else if (x.function === 4) {
      const cacheLevel = (x.eax >> 5) & 7;
      // EAX[31:26]: addressable core IDs per package - 1; EAX[25:14]: logical processors sharing this cache - 1.
      const sharing = cacheLevel >= 3 ? (1 << shift) - 1 : 0;
      if ((x.eax & 0x1f) !== 0) x.eax = ((x.eax & 0x3fff) | (sharing << 14) | (((1 << shift) - 1) << 26)) >>> 0;
    } else if (x.function === 0x8000_0008) {
      x.ecx = ((x.ecx & ~0xf0ff) | ((cpus - 1) & 0xff) | (shift << 12)) >>> 0;
    } else if (x.function === 0x8000_001e) {
      // AMD APM vol. 3 E.4.15: EBX[7:0] core ID, EBX[15:8] threads per core - 1 (0); ECX[7:0] node ID (0).
      x.ebx = apicId & 0xff;
      x.ecx = 0;
    }
    return x;
  });
}

/**
 * Leaf 0xB (and 0x1F where present) with the subleaves topologyCpuid fills: 0 (SMT), 1 (core) and 2 (the
 * terminating "invalid" level). KVM reports only the subleaves the host has (kvm_pvm on AMD: subleaf 0 alone), and a
 * missing subleaf reads as zeros, which would end the enumeration before the core level.
 */
function withTopologySubleaves(entries: readonly CpuidEntry[]): CpuidEntry[] {
  const out = [...entries];
  for (const fn of [0xb, 0x1f]) {
    if (!out.some((e) => e.function === fn)) continue;
    for (const index of [0, 1, 2]) {
      if (!out.some((e) => e.function === fn && e.index === index)) {
        out.push({ function: fn, index, flags: 1 /* KVM_CPUID_FLAG_SIGNIFCANT_INDEX */, eax: 0, ebx: 0, ecx: 0, edx: 0 });
      }
    }
  }
  return out;
}

export interface VcpuCpuidOptions {
  /** This vCPU's APIC ID (its index). */
  apicId: number;
  cpus: number;
  /** The in-kernel irqchip exists (the LAPIC-based paravirtual features need it). */
  irqchip: boolean;
}

/** The complete CPUID table of one vCPU: KVM's leaves, APIC ID, topology, the KVM paravirtual leaves. */
export function buildVcpuCpuid(supported: readonly CpuidEntry[], o: VcpuCpuidOptions): CpuidEntry[] {
  const base = supported.filter((e) => e.function !== KVM_CPUID_SIGNATURE && e.function !== KVM_CPUID_FEATURES);
  const cpuid = topologyCpuid(vcpuCpuid(withTopologySubleaves(base), o.apicId, o.cpus), o.apicId, o.cpus);
  return [...cpuid, ...pvLeaves(supported, o.irqchip)];
}
