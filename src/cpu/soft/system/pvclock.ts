// kvm-clock on the software CPU: the KVM paravirtual clock interface, so a Linux guest reads time from a page the
// hypervisor keeps instead of calibrating and trusting its TSC. Linux Documentation/virt/kvm/x86/msr.rst
// (MSR_KVM_WALL_CLOCK_NEW, MSR_KVM_SYSTEM_TIME_NEW), Documentation/virt/kvm/x86/cpuid.rst (the KVM CPUID leaves) and
// arch/x86/include/asm/pvclock-abi.h (the shared structures).
//
// The soft CPU's TSC is virtual (control.ts): TSC = cpu.tscOffset + guest ns * TSC_PER_NS, exactly, at a fixed rate,
// stopped while the VM is paused. So one publication at the guest's WRMSR stays right for the life of the VM: the
// guest computes system_time + (rdtsc - tsc_timestamp) * scale, which is guest ns as VmClock counts them. Nothing
// needs republishing after a pause or a snapshot restore either: the clock and the TSC continue from the saved
// instant and guest RAM holds the page as published. The MSR values live in cpu.msrs, so snapshots carry them.
//
// Where: the KVM leaves sit at CPUID 40000100h, the second hypervisor range (Linux's hypervisor_cpuid_base scans
// 40000000h..4000FF00h in steps of 100h, as it does when KVM exposes Hyper-V at 40000000h); 40000000h keeps the
// "ringzero" identity and timing leaf.
import type { SoftCpu } from '../cpu.ts';
import { registerMsr } from './msr.ts';
import { readTsc, TSC_HZ } from './control.ts';

/** msr.rst: the "new" kvm-clock MSRs (advertised by KVM_FEATURE_CLOCKSOURCE2). */
export const MSR_KVM_WALL_CLOCK_NEW = 0x4b564d00;
export const MSR_KVM_SYSTEM_TIME_NEW = 0x4b564d01;

/** cpuid.rst: KVM_CPUID_SIGNATURE and KVM_CPUID_FEATURES, here in the range based at 40000100h. */
export const KVM_CPUID_BASE = 0x40000100;
export const KVM_CPUID_FEATURES = KVM_CPUID_BASE + 1;
export const KVM_SIGNATURE = 'KVMKVMKVM\0\0\0';
/** cpuid.rst feature bits (leaf KVM_CPUID_FEATURES, EAX). */
export const KVM_FEATURE_CLOCKSOURCE2 = 3;
export const KVM_FEATURE_CLOCKSOURCE_STABLE_BIT = 24;

/** pvclock-abi.h: struct pvclock_vcpu_time_info (32 bytes, packed) and its flags. */
export const PVTI_SIZE = 32;
export const PVTI = { version: 0, tscTimestamp: 8, systemTime: 16, tscToSystemMul: 24, tscShift: 28, flags: 29 } as const;
export const PVCLOCK_TSC_STABLE_BIT = 1 << 0;
/** pvclock-abi.h: struct pvclock_wall_clock { u32 version; u32 sec; u32 nsec; } (12 bytes). */
export const WALL_CLOCK_SIZE = 12;

/**
 * The scale from TSC ticks to ns as the guest applies it (pvclock_scale_delta): shift the delta left by `shift` (right
 * if negative), multiply by `mul`, keep bits 32 and up. Chosen so mul fits 32 bits with the most precision, as
 * KVM's kvm_get_time_scale does; for the soft CPU's 2 GHz TSC it is exact (shift 0, mul 2^31: ns = ticks / 2).
 */
export function timeScale(tscHz: number): { mul: number; shift: number } {
  // ns = ((ticks << shift) * mul) >> 32, so mul = 1e9 / (tscHz * 2^shift) * 2^32: pick the shift that puts
  // tscHz * 2^shift in (1e9, 2e9], which keeps mul in [2^31, 2^32).
  let shift = 0;
  let scaled = tscHz;
  while (scaled <= 1e9) { scaled *= 2; shift++; }
  while (scaled > 2e9) { scaled /= 2; shift--; }
  const mul = Math.min(2 ** 32 - 1, Math.round((1e9 / scaled) * 2 ** 32));
  return { mul, shift };
}

/** What the guest computes from a published pvclock (pvclock_clocksource_read without the monotonic guard). */
export function pvclockRead(info: { tscTimestamp: bigint; systemTime: bigint; mul: number; shift: number }, tsc: bigint): bigint {
  let delta = tsc - info.tscTimestamp;
  if (delta < 0n) delta = 0n; // the guest reads the delta as u64; a TSC behind the timestamp does not happen here
  delta = info.shift >= 0 ? delta << BigInt(info.shift) : delta >> BigInt(-info.shift);
  return info.systemTime + ((delta * BigInt(info.mul)) >> 32n);
}

const SCALE = timeScale(TSC_HZ);

/** CPUID results for 40000100h..400001FFh into `out` (EAX, EBX, ECX, EDX). */
export function kvmCpuidLeaf(leaf: number, out: Int32Array): void {
  out.fill(0);
  if (leaf === KVM_CPUID_BASE) {
    out[0] = KVM_CPUID_FEATURES;
    for (let i = 0; i < 3; i++) {
      let v = 0;
      for (let k = 0; k < 4; k++) v |= KVM_SIGNATURE.charCodeAt(4 * i + k) << (8 * k);
      out[1 + i] = v;
    }
  } else if (leaf === KVM_CPUID_FEATURES) {
    // EAX: features. Only the paravirtual clock; EDX (hints) none. The TSC is the same on every vCPU and never
    // jumps, so the stable bit holds (the guest may then skip its cross-vCPU monotonic guard).
    out[0] = (1 << KVM_FEATURE_CLOCKSOURCE2) | (1 << KVM_FEATURE_CLOCKSOURCE_STABLE_BIT);
  }
}

/** Guest RAM [gpa, gpa+len) as a DataView, or undefined when it is not wholly RAM (the guest gave a bad address). */
function ramView(c: SoftCpu, gpa: number, len: number): DataView | undefined {
  const r = c.mem.regionFor(gpa, len);
  if (!r) return undefined;
  return new DataView(r.bytes.buffer, r.bytes.byteOffset + (gpa - r.guestBase), len);
}

/** Write this vCPU's pvclock_vcpu_time_info at `gpa` with the version protocol (odd while updating). */
export function publishTimeInfo(c: SoftCpu, gpa: number): boolean {
  const v = ramView(c, gpa, PVTI_SIZE);
  if (!v) return false;
  const tsc = readTsc(c);
  // Guest ns at the same instant, from this vCPU's own TSC (exact: the TSC is tscOffset + ns * ticks-per-ns).
  const systemTime = BigInt(Math.max(0, Math.floor(((tsc - c.tscOffset) * 1e9) / TSC_HZ)));
  const version = ((v.getUint32(PVTI.version, true) + 1) | 1) >>> 0;
  v.setUint32(PVTI.version, version, true);
  v.setUint32(4, 0, true);
  v.setBigUint64(PVTI.tscTimestamp, BigInt(tsc), true);
  v.setBigUint64(PVTI.systemTime, systemTime, true);
  v.setUint32(PVTI.tscToSystemMul, SCALE.mul, true);
  v.setInt8(PVTI.tscShift, SCALE.shift);
  v.setUint8(PVTI.flags, PVCLOCK_TSC_STABLE_BIT);
  v.setUint16(30, 0, true);
  v.setUint32(PVTI.version, (version + 1) >>> 0, true);
  c.mem.noteExternalWrite(gpa, PVTI_SIZE);
  return true;
}

/** Write pvclock_wall_clock at `gpa`: the wall-clock time (host UTC) at which guest system_time was 0. */
export function publishWallClock(c: SoftCpu, gpa: number, nowMs = Date.now()): boolean {
  const v = ramView(c, gpa, WALL_CLOCK_SIZE);
  if (!v) return false;
  const bootNs = BigInt(Math.round(nowMs)) * 1_000_000n - BigInt(Math.floor(c.env.clock.now()));
  const version = ((v.getUint32(0, true) + 1) | 1) >>> 0;
  v.setUint32(0, version, true);
  v.setUint32(4, Number(bootNs / 1_000_000_000n) >>> 0, true);
  v.setUint32(8, Number(bootNs % 1_000_000_000n), true);
  v.setUint32(0, (version + 1) >>> 0, true);
  c.mem.noteExternalWrite(gpa, WALL_CLOCK_SIZE);
  return true;
}

// MSR_KVM_SYSTEM_TIME_NEW: bit 0 enables, bits 63:1 hold the GPA (4-byte aligned per msr.rst; bit 1 reserved). A
// write with the enable bit publishes the structure at once. An address outside RAM is accepted and ignored, as KVM
// does (the guest only hurts itself); nothing outside guest RAM is ever touched.
registerMsr(MSR_KVM_SYSTEM_TIME_NEW, {
  read: (c) => c.msrs.get(MSR_KVM_SYSTEM_TIME_NEW) ?? 0n,
  write: (c, value) => {
    c.msrs.set(MSR_KVM_SYSTEM_TIME_NEW, value);
    if (value & 1n) publishTimeInfo(c, Number(value & ~3n));
  },
});

// MSR_KVM_WALL_CLOCK_NEW: the GPA of a pvclock_wall_clock, filled in at the write (msr.rst: "the host writes ... at
// the time of the write"). Read back as written.
registerMsr(MSR_KVM_WALL_CLOCK_NEW, {
  read: (c) => c.msrs.get(MSR_KVM_WALL_CLOCK_NEW) ?? 0n,
  write: (c, value) => {
    c.msrs.set(MSR_KVM_WALL_CLOCK_NEW, value);
    publishWallClock(c, Number(value & ~3n));
  },
});

/**
 * Publish this vCPU's time page again, if the guest enabled one: after a snapshot restore (src/vmm/snapshot-cpu.ts),
 * once guest RAM, the VM clock and the TSC are back. From a software-engine snapshot the values come out the same;
 * from a KVM one the page held KVM's TSC scale and timestamp, which this CPU's TSC does not follow.
 */
export function refreshPvclock(c: SoftCpu): void {
  const msr = c.msrs.get(MSR_KVM_SYSTEM_TIME_NEW) ?? 0n;
  if (msr & 1n) publishTimeInfo(c, Number(msr & ~3n));
}
