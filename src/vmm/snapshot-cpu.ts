// One vCPU's architectural state in an engine-neutral shape, and its capture from / load into a SoftCpu.
//
// The shape follows what KVM's ioctls exchange, so the KVM engine can fill and apply it too: general registers, RIP
// and RFLAGS (struct kvm_regs); segments with selector, base, byte limit and the VMCS access-rights layout of Intel SDM
// vol. 3C §24.4.1 (src/boot/linux.ts SegmentState; struct kvm_segment holds the same fields), GDTR/IDTR, CR0-CR4 and
// EFER (struct kvm_sregs); debug registers (kvm_debugregs); MSRs by number (KVM_GET_MSRS), the TSC as MSR 0x10's
// value at the save instant; the x87/MMX/SSE state as the 512-byte FXSAVE image in its 64-bit layout (SDM vol. 1
// §10.5.1 table 10-2; struct kvm_fpu carries the same fields); the LAPIC (kvm_lapic_state's register page); pending
// events (kvm_vcpu_events) and the MP state (KVM_MP_STATE_*).
// 64-bit values are hex strings ("0x..."), so no JSON number loses bits.
import type { SoftCpu } from '../cpu/soft/index.ts';
import * as C from '../cpu/soft/constants.ts';
import { saveFpuImage, restoreFpuImage } from '../cpu/soft/ops/x87.ts';
import { MXCSR_MASK } from '../cpu/soft/ops/sse-common.ts';
import { readTsc, writeTsc, tscToNs } from '../cpu/soft/system/control.ts';
import { MSR, isMsrImplemented } from '../cpu/soft/system/msr.ts';
import { refreshPvclock } from '../cpu/soft/system/pvclock.ts';
import type { Lapic, LapicState } from '../devices/irq/lapic.ts';

export interface SegmentImage {
  selector: number;
  base: string;
  limit: number;
  accessRights: number;
}

export type MpState = 'runnable' | 'halted' | 'wait-for-sipi';

export interface VcpuState {
  /** RAX, RCX, RDX, RBX, RSP, RBP, RSI, RDI, R8-R15 (encoding order). */
  gprs: string[];
  rip: string;
  rflags: string;
  segments: { es: SegmentImage; cs: SegmentImage; ss: SegmentImage; ds: SegmentImage; fs: SegmentImage; gs: SegmentImage; tr: SegmentImage; ldt: SegmentImage };
  gdt: { base: string; limit: number };
  idt: { base: string; limit: number };
  cr0: string; cr2: string; cr3: string; cr4: string;
  efer: string;
  /** DR0-DR3, DR6, DR7. */
  dr: string[];
  /** MSR number (hex) -> value (hex): every MSR with state, TSC (0x10) and KERNEL_GS_BASE included. */
  msrs: Record<string, string>;
  /** FXSAVE image, 64-bit layout, base64 (512 bytes). */
  fxsave: string;
  /** x87 FCS and FDS, which the 64-bit FXSAVE layout has no room for. */
  x87Selectors: { fcs: number; fds: number };
  lapic?: LapicState;
  mpState: MpState;
  /** STI/MOV SS blocking for one instruction (kvm_vcpu_events.interrupt.shadow). */
  interruptShadow: boolean;
}

const SEG_NAMES = ['es', 'cs', 'ss', 'ds', 'fs', 'gs'] as const;

/** A signed or unsigned JS number holding a 64-bit quantity, as a 64-bit hex string. */
export function hex64(n: number): string {
  return '0x' + BigInt.asUintN(64, BigInt(Math.trunc(n))).toString(16);
}

/** A 64-bit hex string as the soft CPU keeps addresses: canonical values sign-extended (exact below 2^53). */
function addr(s: string): number {
  return Number(BigInt.asIntN(64, BigInt(s)));
}

function u64(s: string): bigint {
  return BigInt.asUintN(64, BigInt(s));
}

/** MSRs kept in dedicated SoftCpu fields (or elsewhere in this state): not loaded into cpu.msrs. */
// (IA32_TSC_DEADLINE lives in the LAPIC, which is loaded after the vCPU: restoreLapic's caller takes it from `msrs`
// through savedTscDeadline)
const DEDICATED_MSRS = new Set<number>([MSR.TSC, MSR.APIC_BASE, MSR.EFER, MSR.FS_BASE, MSR.GS_BASE, MSR.KERNEL_GS_BASE, MSR.TSC_DEADLINE]);

/** Capture a vCPU stopped at an instruction boundary. */
export function saveSoftCpu(cpu: SoftCpu, lapic: Lapic | undefined, waitForSipi: boolean): VcpuState {
  cpu.settleFlags();
  const gprs: string[] = [];
  for (let i = 0; i < 16; i++) gprs.push('0x' + ((BigInt(cpu.gpr[2 * i + 1] >>> 0) << 32n) | BigInt(cpu.gpr[2 * i] >>> 0)).toString(16));
  const seg = (i: number): SegmentImage => ({ selector: cpu.segSel[i], base: hex64(cpu.segBase[i]), limit: cpu.segLimit[i] >>> 0, accessRights: cpu.segAttr[i] });
  const msrs: Record<string, string> = {};
  for (const [index, value] of cpu.msrs) msrs['0x' + (index >>> 0).toString(16)] = '0x' + BigInt.asUintN(64, value).toString(16);
  msrs['0x' + MSR.TSC.toString(16)] = hex64(readTsc(cpu));
  msrs['0x' + MSR.KERNEL_GS_BASE.toString(16)] = hex64(cpu.kernelGsBase);
  if (lapic) msrs['0x' + MSR.APIC_BASE.toString(16)] = '0x' + lapic.readApicBaseMsr().toString(16);
  // (as KVM saves it: among the MSRs, 0 when disarmed)
  if (lapic) msrs['0x' + MSR.TSC_DEADLINE.toString(16)] = '0x' + lapic.readTscDeadline().toString(16);

  const image = new Uint8Array(512);
  const view = new DataView(image.buffer);
  saveFpuImage(cpu, view, true);
  view.setInt32(24, cpu.mxcsr, true);
  view.setInt32(28, MXCSR_MASK, true);
  image.set(cpu.xmm.subarray(0, 256), 160);

  return {
    gprs,
    rip: hex64(cpu.rip),
    rflags: hex64(cpu.getFlags() >>> 0),
    segments: {
      es: seg(C.ES), cs: seg(C.CS), ss: seg(C.SS), ds: seg(C.DS), fs: seg(C.FS), gs: seg(C.GS),
      tr: { selector: cpu.trSel, base: hex64(cpu.trBase), limit: cpu.trLimit >>> 0, accessRights: cpu.trAttr },
      ldt: { selector: cpu.ldtrSel, base: hex64(cpu.ldtrBase), limit: cpu.ldtrLimit >>> 0, accessRights: cpu.ldtrAttr },
    },
    gdt: { base: hex64(cpu.gdtrBase), limit: cpu.gdtrLimit },
    idt: { base: hex64(cpu.idtrBase), limit: cpu.idtrLimit },
    cr0: hex64(cpu.cr0 >>> 0), cr2: hex64(cpu.cr2), cr3: hex64(cpu.cr3), cr4: hex64(cpu.cr4 >>> 0),
    efer: hex64(cpu.efer >>> 0),
    dr: [0, 1, 2, 3, 6, 7].map((i) => hex64(cpu.dr[i])),
    msrs,
    fxsave: Buffer.from(image).toString('base64'),
    x87Selectors: { fcs: cpu.fpu.fcs, fds: cpu.fpu.fds },
    ...(lapic ? { lapic: lapic.saveState() } : {}),
    mpState: waitForSipi ? 'wait-for-sipi' : cpu.halted ? 'halted' : 'runnable',
    interruptShadow: cpu.interruptShadow,
  };
}

/**
 * Throw (changing nothing) if `s` is not a well-formed vCPU state. Run over every vCPU before any is loaded, so a bad
 * snapshot is refused before the machine is half-restored.
 */
export function checkVcpuState(s: VcpuState, index: number): void {
  const fail = (what: string): never => { throw new Error(`vCPU ${index}: ${what}`); };
  if (!Array.isArray(s.gprs) || s.gprs.length !== 16) fail('16 general registers expected');
  const hexes = [...s.gprs, s.rip, s.rflags, s.cr0, s.cr2, s.cr3, s.cr4, s.efer, ...s.dr, s.gdt.base, s.idt.base,
    ...Object.values(s.segments).map((g) => g.base), ...Object.keys(s.msrs), ...Object.values(s.msrs)];
  for (const h of hexes) if (typeof h !== 'string' || !/^0x[0-9a-f]{1,16}$/i.test(h)) fail(`bad 64-bit value ${JSON.stringify(h)}`);
  for (const name of [...SEG_NAMES, 'tr', 'ldt'] as const) if (!s.segments[name]) fail(`segment ${name} missing`);
  if (Buffer.from(s.fxsave, 'base64').length !== 512) fail('FXSAVE image must be 512 bytes');
  const mxcsr = Buffer.from(s.fxsave, 'base64').readUInt32LE(24);
  if (mxcsr & ~MXCSR_MASK) fail(`MXCSR 0x${mxcsr.toString(16)} has reserved bits set`);
  if (!['runnable', 'halted', 'wait-for-sipi'].includes(s.mpState)) fail(`unknown MP state ${s.mpState}`);
}

/**
 * The saved IA32_TSC_DEADLINE of `s` (either engine's snapshot: both keep it among the MSRs) and the guest-time instant
 * it stands for on `cpu`, whose TSC restoreSoftCpu has loaded; undefined when absent or disarmed.
 */
export function savedTscDeadline(cpu: SoftCpu, s: VcpuState): { tsc: bigint; ns: number } | undefined {
  const saved = s.msrs['0x' + MSR.TSC_DEADLINE.toString(16)];
  if (saved === undefined) return undefined;
  const tsc = u64(saved);
  return tsc === 0n ? undefined : { tsc, ns: tscToNs(cpu, tsc) };
}

/**
 * Load a vCPU (after checkVcpuState) into a freshly built SoftCpu. The VmClock must already show the saved guest
 * time (the TSC continues from its saved value). Returns the MSR numbers this CPU does not implement (dropped).
 * The LAPIC is loaded separately (restoreLapic) because device lines must be restored in between.
 */
export function restoreSoftCpu(cpu: SoftCpu, s: VcpuState, opts: { keepCode?: boolean } = {}): { droppedMsrs: number[] } {
  // (keepCode: a migration's destination keeps the blocks it translated from the received memory, src/cpu/soft/hot-list.ts)
  cpu.reset(opts.keepCode === true);
  for (let i = 0; i < 16; i++) {
    const v = u64(s.gprs[i]);
    cpu.gpr[2 * i] = Number(v & 0xffffffffn) | 0;
    cpu.gpr[2 * i + 1] = Number(v >> 32n) | 0;
  }
  // Control registers and EFER before the segments: loading CS derives the mode and CPL from them.
  cpu.cr0 = Number(u64(s.cr0) & 0xffffffffn) | 0;
  cpu.cr2 = addr(s.cr2);
  cpu.cr3 = Number(u64(s.cr3));
  cpu.cr4 = Number(u64(s.cr4) & 0xffffffffn) | 0;
  cpu.efer = Number(u64(s.efer) & 0xffffffffn) | 0;
  cpu.setFlagsValue(Number(u64(s.rflags) & 0xffffffffn));
  const load = (seg: number, g: SegmentImage) => cpu.loadSegmentRaw(seg, g.selector, addr(g.base), g.limit >>> 0, g.accessRights | 0);
  SEG_NAMES.forEach((name, i) => { if (i !== C.CS) load(i, s.segments[name]); });
  load(C.CS, s.segments.cs);
  const { tr, ldt } = s.segments;
  cpu.trSel = tr.selector & 0xffff; cpu.trBase = addr(tr.base); cpu.trLimit = tr.limit >>> 0; cpu.trAttr = tr.accessRights | 0;
  cpu.ldtrSel = ldt.selector & 0xffff; cpu.ldtrBase = addr(ldt.base); cpu.ldtrLimit = ldt.limit >>> 0; cpu.ldtrAttr = ldt.accessRights | 0;
  cpu.gdtrBase = addr(s.gdt.base); cpu.gdtrLimit = s.gdt.limit & 0xffff;
  cpu.idtrBase = addr(s.idt.base); cpu.idtrLimit = s.idt.limit & 0xffff;
  [0, 1, 2, 3, 6, 7].forEach((reg, i) => { cpu.dr[reg] = addr(s.dr[i]); });
  cpu.rip = addr(s.rip);

  const dropped: number[] = [];
  cpu.msrs.clear();
  for (const [key, value] of Object.entries(s.msrs)) {
    const index = Number(BigInt(key));
    const v = u64(value);
    if (index === MSR.TSC) writeTsc(cpu, Number(v));
    else if (index === MSR.KERNEL_GS_BASE) cpu.kernelGsBase = addr(value);
    else if (DEDICATED_MSRS.has(index)) continue; // EFER, FS/GS base, APIC base: loaded from their own fields
    else if (isMsrImplemented(index)) cpu.msrs.set(index, v);
    else dropped.push(index);
  }
  // kvm-clock: the guest's time page must match this CPU's TSC (it may come from a KVM snapshot).
  refreshPvclock(cpu);

  const image = Buffer.from(s.fxsave, 'base64');
  const view = new DataView(image.buffer, image.byteOffset, 512);
  restoreFpuImage(cpu, view, true);
  cpu.fpu.fcs = s.x87Selectors.fcs & 0xffff;
  cpu.fpu.fds = s.x87Selectors.fds & 0xffff;
  cpu.mxcsr = view.getInt32(24, true) & MXCSR_MASK;
  cpu.xmm.set(image.subarray(160, 416), 0);

  cpu.halted = s.mpState === 'halted';
  cpu.interruptShadow = !!s.interruptShadow;
  cpu.eventPending = true; // look at the interrupt controllers again at the first boundary
  // Derived state and caches: mode, TLB (global entries too), the fetch window.
  cpu.updateMode();
  cpu.flushTlb(true);
  cpu.invalidateFetch();
  return { droppedMsrs: dropped };
}
