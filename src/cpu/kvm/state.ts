// A KVM vCPU's state in the engine-neutral snapshot shape of src/vmm/snapshot-cpu.ts (VcpuState), both ways, so a
// state saved on one engine loads on the other: KVM_GET_REGS / SREGS / XSAVE (or FPU) / DEBUGREGS / MSRS / LAPIC /
// MP_STATE / VCPU_EVENTS on the way out, the SET side on the way in. And the VM-wide state only KVM has (the in-kernel
// 8259 pair and IOAPIC, the PIT, kvm-clock) as raw kernel structs, for a KVM-to-KVM restore.
//
// The vCPU must be out of KVM_RUN (KvmCpus.pause, or no run() in progress).
//
// What does not cross engines, and why:
// - An event KVM has in flight at the pause (an exception or NMI being injected): VcpuState has no field for it, so
//   saveKvmVcpu refuses with KvmStateError (the caller resumes for a moment and tries again). An external interrupt
//   being injected from the LAPIC goes back to the LAPIC's IRR, which is where it was before KVM acknowledged it.
// - x87 FCS/FDS: KVM exchanges the 64-bit FXSAVE layout, which has no room for them (saved as 0).
// - AVX and later XSAVE components: VcpuState carries the FXSAVE image only; on a KVM restore they keep the new
//   vCPU's (initial) values.
// - MSRs one engine has and the other lacks (the kvm-clock MSRs on the soft engine, for instance): dropped and listed.
// - The LAPIC timer's phase: KVM_SET_LAPIC restarts a running timer from its initial count.
// The in-kernel 8259 pair and IOAPIC convert to and from the software engine's DualPic/Ioapic states (bottom of this
// file), and so does the in-kernel 8254 (its load times are host CLOCK_MONOTONIC, the soft PIT's VmClock ticks).
import type { Kvm, KvmVcpu, KvmVm } from '../../kvm/kvm.ts';
import { CAP, MP_STATE, SIZE } from '../../kvm/abi.ts';
import { GPR_BY_NUMBER, type Registers, type SpecialRegisters } from '../engine.ts';
import type { SegmentState } from '../../boot/linux.ts';
import { hex64, type MpState, type SegmentImage, type VcpuState } from '../../vmm/snapshot-cpu.ts';
import type { DualPicState, Pic8259State } from '../../devices/irq/pic.ts';
import type { IoapicState } from '../../devices/irq/ioapic.ts';
import { nsToTicks, ticksToNs, type PitState, type PitChannelState } from '../../devices/pit.ts';

export class KvmStateError extends Error {}

// ---- MSRs worth carrying (numbers: Intel SDM vol. 4; kvm-clock and friends: asm/kvm_para.h) ----
export const MSR = {
  TSC: 0x10,
  KVM_WALL_CLOCK: 0x11,
  KVM_SYSTEM_TIME: 0x12,
  APIC_BASE: 0x1b,
  SYSENTER_CS: 0x174,
  SYSENTER_ESP: 0x175,
  SYSENTER_EIP: 0x176,
  MISC_ENABLE: 0x1a0,
  PAT: 0x277,
  MTRR_DEF_TYPE: 0x2ff,
  TSC_DEADLINE: 0x6e0,
  EFER: 0xc000_0080,
  STAR: 0xc000_0081,
  LSTAR: 0xc000_0082,
  CSTAR: 0xc000_0083,
  SYSCALL_MASK: 0xc000_0084,
  FS_BASE: 0xc000_0100,
  GS_BASE: 0xc000_0101,
  KERNEL_GS_BASE: 0xc000_0102,
  TSC_AUX: 0xc000_0103,
  KVM_WALL_CLOCK_NEW: 0x4b56_4d00,
  KVM_SYSTEM_TIME_NEW: 0x4b56_4d01,
  KVM_ASYNC_PF_EN: 0x4b56_4d02,
  KVM_STEAL_TIME: 0x4b56_4d03,
  KVM_PV_EOI_EN: 0x4b56_4d04,
  KVM_POLL_CONTROL: 0x4b56_4d05,
} as const;

/**
 * The MSRs a save asks KVM for (those KVM lists in KVM_GET_MSR_INDEX_LIST). EFER, FS/GS base and APIC base are
 * not here: KVM_GET_SREGS carries them (and the segment bases).
 */
export const SAVED_MSRS: readonly number[] = [
  MSR.TSC, MSR.SYSENTER_CS, MSR.SYSENTER_ESP, MSR.SYSENTER_EIP, MSR.MISC_ENABLE, MSR.PAT, MSR.MTRR_DEF_TYPE,
  MSR.TSC_DEADLINE, MSR.STAR, MSR.LSTAR, MSR.CSTAR, MSR.SYSCALL_MASK, MSR.KERNEL_GS_BASE, MSR.TSC_AUX,
  MSR.KVM_WALL_CLOCK, MSR.KVM_SYSTEM_TIME, MSR.KVM_WALL_CLOCK_NEW, MSR.KVM_SYSTEM_TIME_NEW, MSR.KVM_ASYNC_PF_EN,
  MSR.KVM_STEAL_TIME, MSR.KVM_PV_EOI_EN, MSR.KVM_POLL_CONTROL,
];
/** MSRs that VcpuState carries elsewhere: never loaded through KVM_SET_MSRS. */
const NOT_THROUGH_MSRS = new Set<number>([MSR.APIC_BASE, MSR.EFER, MSR.FS_BASE, MSR.GS_BASE]);

// ---- struct kvm_vcpu_events (asm/kvm.h) offsets and flags ----
const EV = {
  exceptionInjected: 0, exceptionNr: 1, exceptionPending: 3,
  interruptInjected: 8, interruptNr: 9, interruptSoft: 10, interruptShadow: 11,
  nmiInjected: 12, nmiPending: 13, nmiMasked: 14,
  sipiVector: 16, flags: 20, tripleFaultPending: 28,
} as const;
const VCPUEVENT_VALID_NMI_PENDING = 0x1;
const VCPUEVENT_VALID_SHADOW = 0x4;
/** KVM_X86_SHADOW_INT_MOV_SS | KVM_X86_SHADOW_INT_STI. */
const SHADOW_MOV_SS = 1, SHADOW_STI = 2;

// ---- struct kvm_fpu (asm/kvm.h) against the 64-bit FXSAVE image (SDM vol. 1 §10.5.1, table 10-2) ----
const FPU = { fpr: 0, fcw: 128, fsw: 130, ftwx: 132, lastOpcode: 134, lastIp: 136, lastDp: 144, xmm: 152, mxcsr: 408 } as const;
const FX = { fcw: 0, fsw: 2, ftw: 4, fop: 6, fip: 8, fdp: 16, mxcsr: 24, mxcsrMask: 28, st: 32, xmm: 160 } as const;
/** XSAVE header (SDM vol. 1 §13.4.2): XSTATE_BV at byte 512 of the image; bits 0 and 1 are x87 and SSE. */
const XSTATE_BV = 512;
const XFEATURE_X87_SSE = 3n;

/** What the save needs to know beyond the vCPU fd. */
export interface KvmStateContext {
  kvm: Kvm;
  /** The VM has the in-kernel irqchip (a LAPIC per vCPU, MP states beyond RUNNABLE). */
  irqchip: boolean;
}

const msrCache = new WeakMap<Kvm, Set<number>>();

function kvmMsrs(kvm: Kvm): Set<number> {
  let set = msrCache.get(kvm);
  if (!set) {
    set = new Set(kvm.msrIndexList());
    msrCache.set(kvm, set);
  }
  return set;
}

function segImage(s: SegmentState): SegmentImage {
  return { selector: s.selector, base: hex64(s.base), limit: s.limit >>> 0, accessRights: s.accessRights };
}

function segState(g: SegmentImage): SegmentState {
  return { selector: g.selector & 0xffff, base: Number(BigInt.asIntN(64, BigInt(g.base))), limit: g.limit >>> 0, accessRights: g.accessRights | 0 };
}

const hex = (v: bigint) => '0x' + BigInt.asUintN(64, v).toString(16);
const u64 = (s: string) => BigInt.asUintN(64, BigInt(s));

/** The FXSAVE image (512 bytes) of the vCPU: XSAVE's legacy region when KVM has XSAVE, else built from kvm_fpu. */
function readFxsave(v: KvmVcpu, ctx: KvmStateContext): Buffer {
  if (ctx.kvm.checkExtension(CAP.XSAVE)) return Buffer.from(v.getXsave().subarray(0, 512));
  const f = v.getFpu();
  const fx = Buffer.alloc(512);
  fx.writeUInt16LE(f.readUInt16LE(FPU.fcw), FX.fcw);
  fx.writeUInt16LE(f.readUInt16LE(FPU.fsw), FX.fsw);
  fx[FX.ftw] = f[FPU.ftwx];
  fx.writeUInt16LE(f.readUInt16LE(FPU.lastOpcode), FX.fop);
  fx.writeBigUInt64LE(f.readBigUInt64LE(FPU.lastIp), FX.fip);
  fx.writeBigUInt64LE(f.readBigUInt64LE(FPU.lastDp), FX.fdp);
  fx.writeUInt32LE(f.readUInt32LE(FPU.mxcsr), FX.mxcsr);
  fx.writeUInt32LE(0xffff, FX.mxcsrMask);
  f.copy(fx, FX.st, FPU.fpr, FPU.fpr + 128);
  f.copy(fx, FX.xmm, FPU.xmm, FPU.xmm + 256);
  return fx;
}

function writeFxsave(v: KvmVcpu, ctx: KvmStateContext, fx: Buffer): void {
  if (ctx.kvm.checkExtension(CAP.XSAVE)) {
    // Keep the other components as the vCPU has them; mark x87 and SSE as present so KVM loads them from the image.
    const x = v.getXsave();
    fx.copy(x, 0, 0, 512);
    x.writeUInt32LE(x.readUInt32LE(FX.mxcsrMask) || 0xffff, FX.mxcsrMask);
    x.writeBigUInt64LE(x.readBigUInt64LE(XSTATE_BV) | XFEATURE_X87_SSE, XSTATE_BV);
    v.setXsave(x);
    return;
  }
  const f = Buffer.alloc(SIZE.kvm_fpu);
  f.writeUInt16LE(fx.readUInt16LE(FX.fcw), FPU.fcw);
  f.writeUInt16LE(fx.readUInt16LE(FX.fsw), FPU.fsw);
  f[FPU.ftwx] = fx[FX.ftw];
  f.writeUInt16LE(fx.readUInt16LE(FX.fop), FPU.lastOpcode);
  f.writeBigUInt64LE(fx.readBigUInt64LE(FX.fip), FPU.lastIp);
  f.writeBigUInt64LE(fx.readBigUInt64LE(FX.fdp), FPU.lastDp);
  f.writeUInt32LE(fx.readUInt32LE(FX.mxcsr), FPU.mxcsr);
  fx.copy(f, FPU.fpr, FX.st, FX.st + 128);
  fx.copy(f, FPU.xmm, FX.xmm, FX.xmm + 256);
  v.setFpu(f);
}

/** Read the MSRs in `indices` (one KVM_GET_MSRS; an MSR KVM refuses is left out and the rest read again). */
function readMsrs(v: KvmVcpu, indices: number[]): Map<number, bigint> {
  const out = new Map<number, bigint>();
  let todo = indices;
  while (todo.length > 0) {
    const got = v.getMsrs(todo);
    for (const m of got) out.set(m.index, m.data);
    todo = todo.slice(got.length + 1); // KVM stops at the first MSR it cannot read
  }
  return out;
}

/** Write MSRs, skipping (and returning) those KVM refuses. */
function writeMsrs(v: KvmVcpu, entries: { index: number; data: bigint }[]): number[] {
  const refused: number[] = [];
  let todo = entries;
  while (todo.length > 0) {
    try {
      v.setMsrs(todo);
      break;
    } catch (e) {
      const m = /\((\d+) of \d+ set\)/.exec((e as Error).message);
      if (!m) throw e;
      const n = Number(m[1]);
      refused.push(todo[n].index);
      todo = todo.slice(n + 1);
    }
  }
  return refused;
}

const LAPIC_ISR = 0x100;
const LAPIC_IRR = 0x200;

function testBit(page: Buffer, base: number, vector: number): boolean {
  return (page.readUInt32LE(base + 16 * (vector >> 5)) & (1 << (vector & 31))) !== 0;
}

function setBit(page: Buffer, base: number, vector: number, on: boolean): void {
  const at = base + 16 * (vector >> 5);
  const w = page.readUInt32LE(at);
  page.writeUInt32LE((on ? w | (1 << (vector & 31)) : w & ~(1 << (vector & 31))) >>> 0, at);
}

/**
 * Capture a KVM vCPU as a VcpuState. Throws KvmStateError if KVM has an event in flight that VcpuState cannot hold
 * (an exception or NMI being delivered, an interrupt from the 8259 being delivered).
 */
export function saveKvmVcpu(v: KvmVcpu, ctx: KvmStateContext): VcpuState {
  const events = v.getVcpuEvents();
  const lapicPage = ctx.irqchip ? v.getLapic() : undefined;
  if (events[EV.exceptionInjected] || events[EV.exceptionPending]) {
    throw new KvmStateError(`vCPU ${v.id}: exception ${events[EV.exceptionNr]} is being delivered`);
  }
  if (events[EV.nmiInjected]) throw new KvmStateError(`vCPU ${v.id}: an NMI is being delivered`);
  if (events[EV.tripleFaultPending]) throw new KvmStateError(`vCPU ${v.id}: a triple fault is pending`);
  if (events[EV.interruptInjected]) {
    const vector = events[EV.interruptNr];
    // Acknowledged by the LAPIC (IRR -> ISR) but not yet taken by the guest: undo the acknowledgment.
    if (events[EV.interruptSoft] || !lapicPage || !testBit(lapicPage, LAPIC_ISR, vector)) {
      throw new KvmStateError(`vCPU ${v.id}: interrupt ${vector} is being delivered`);
    }
    setBit(lapicPage, LAPIC_ISR, vector, false);
    setBit(lapicPage, LAPIC_IRR, vector, true);
  }

  const r = v.getRegs();
  const { sregs, extra } = v.getSregs();
  const dr = v.getDebugRegs();
  const wanted = SAVED_MSRS.filter((m) => kvmMsrs(ctx.kvm).has(m));
  const msrValues = readMsrs(v, wanted);
  const msrs: Record<string, string> = {};
  for (const [index, data] of msrValues) msrs['0x' + index.toString(16)] = hex(data);
  msrs['0x' + MSR.APIC_BASE.toString(16)] = hex(extra.apicBase);
  const mp = ctx.irqchip ? v.getMpState() : MP_STATE.RUNNABLE;
  let mpState: MpState;
  if (mp === MP_STATE.RUNNABLE) mpState = 'runnable';
  else if (mp === MP_STATE.HALTED) mpState = 'halted';
  else if (mp === MP_STATE.UNINITIALIZED || mp === MP_STATE.INIT_RECEIVED) mpState = 'wait-for-sipi';
  else throw new KvmStateError(`vCPU ${v.id}: MP state ${mp} (a startup IPI being processed)`);

  return {
    gprs: GPR_BY_NUMBER.map((k) => hex(r[k])),
    rip: hex(r.rip),
    rflags: hex(r.rflags),
    segments: {
      es: segImage(sregs.es), cs: segImage(sregs.cs), ss: segImage(sregs.ss), ds: segImage(sregs.ds),
      fs: segImage(sregs.fs), gs: segImage(sregs.gs), tr: segImage(sregs.tr), ldt: segImage(sregs.ldtr),
    },
    gdt: { base: hex(sregs.gdt.base), limit: sregs.gdt.limit },
    idt: { base: hex(sregs.idt.base), limit: sregs.idt.limit },
    cr0: hex(sregs.cr0), cr2: hex(sregs.cr2), cr3: hex(sregs.cr3), cr4: hex(sregs.cr4),
    efer: hex(sregs.efer),
    // struct kvm_debugregs: db[4], dr6, dr7.
    dr: [0, 1, 2, 3, 4, 5].map((i) => hex(dr.readBigUInt64LE(8 * i))),
    msrs,
    fxsave: readFxsave(v, ctx).toString('base64'),
    x87Selectors: { fcs: 0, fds: 0 },
    ...(lapicPage ? {
      lapic: {
        apicBase: hex(extra.apicBase),
        page: lapicPage.toString('base64'),
        pendingErrors: 0,
        nmiPending: events[EV.nmiPending] !== 0,
      },
    } : {}),
    mpState,
    interruptShadow: (events[EV.interruptShadow] & (SHADOW_MOV_SS | SHADOW_STI)) !== 0,
  };
}

/** What a restore could not carry over (for a warning line). */
export interface KvmRestoreReport {
  /** MSRs KVM does not have (or refused). */
  droppedMsrs: number[];
  notes: string[];
}

/**
 * Load a VcpuState (checked with checkVcpuState) into a KVM vCPU that has its CPUID set and has not run since, or
 * is paused. The order matters: special registers (mode, EFER, APIC base) before the MSRs that depend on them.
 */
export function restoreKvmVcpu(v: KvmVcpu, s: VcpuState, ctx: KvmStateContext): KvmRestoreReport {
  const notes: string[] = [];
  const seg = s.segments;
  const sregs: SpecialRegisters = {
    cs: segState(seg.cs), ds: segState(seg.ds), es: segState(seg.es), fs: segState(seg.fs), gs: segState(seg.gs),
    ss: segState(seg.ss), tr: segState(seg.tr), ldtr: segState(seg.ldt),
    gdt: { base: u64(s.gdt.base), limit: s.gdt.limit & 0xffff },
    idt: { base: u64(s.idt.base), limit: s.idt.limit & 0xffff },
    cr0: u64(s.cr0), cr2: u64(s.cr2), cr3: u64(s.cr3), cr4: u64(s.cr4), efer: u64(s.efer),
  };
  const current = v.getSregs().extra;
  const apicBaseText = s.lapic?.apicBase ?? s.msrs['0x' + MSR.APIC_BASE.toString(16)];
  const apicBase = apicBaseText !== undefined ? u64(apicBaseText) : current.apicBase;
  // The pending-interrupt bitmap is KVM's own (no in-kernel irqchip): nothing pending after a restore.
  v.setSregs(sregs, { cr8: BigInt((s.lapic ? Buffer.from(s.lapic.page, 'base64').readUInt32LE(0x80) : 0) >>> 4), apicBase, interruptBitmap: [0n, 0n, 0n, 0n] });

  const regs = {} as Registers;
  GPR_BY_NUMBER.forEach((k, i) => { regs[k] = u64(s.gprs[i]); });
  regs.rip = u64(s.rip);
  regs.rflags = u64(s.rflags);
  v.setRegs(regs);

  const available = kvmMsrs(ctx.kvm);
  const dropped: number[] = [];
  const entries: { index: number; data: bigint }[] = [];
  for (const [key, value] of Object.entries(s.msrs)) {
    const index = Number(BigInt(key));
    if (NOT_THROUGH_MSRS.has(index)) continue;
    if (available.has(index)) entries.push({ index, data: u64(value) });
    else dropped.push(index);
  }
  dropped.push(...writeMsrs(v, entries));

  writeFxsave(v, ctx, Buffer.from(s.fxsave, 'base64'));
  const dr = Buffer.alloc(SIZE.kvm_debugregs);
  s.dr.forEach((h, i) => dr.writeBigUInt64LE(u64(h), 8 * i));
  v.setDebugRegs(dr);

  if (ctx.irqchip && s.lapic) v.setLapic(Buffer.from(s.lapic.page, 'base64'));
  else if (s.lapic && !ctx.irqchip) notes.push('the saved LAPIC is not loaded: this VM has no in-kernel irqchip');

  if (ctx.irqchip) {
    v.setMpState(s.mpState === 'runnable' ? MP_STATE.RUNNABLE : s.mpState === 'halted' ? MP_STATE.HALTED : MP_STATE.INIT_RECEIVED);
  } else if (s.mpState !== 'runnable') {
    // Without the in-kernel irqchip KVM knows only RUNNABLE: a halted vCPU would run on past its HLT.
    throw new KvmStateError(`vCPU ${v.id}: MP state ${s.mpState} needs the in-kernel irqchip`);
  }

  const ev = v.getVcpuEvents();
  ev.fill(0);
  ev[EV.interruptShadow] = s.interruptShadow ? SHADOW_STI : 0;
  ev[EV.nmiPending] = s.lapic?.nmiPending ? 1 : 0;
  ev.writeUInt32LE(VCPUEVENT_VALID_SHADOW | VCPUEVENT_VALID_NMI_PENDING, EV.flags);
  v.setVcpuEvents(ev);
  return { droppedMsrs: dropped, notes };
}

/** The VM-wide state of the in-kernel devices, as the kernel's structs (base64): KVM to KVM only. */
export interface KvmVmState {
  /** KVM_GET_IRQCHIP chip 0 (master 8259), 1 (slave 8259), 2 (IOAPIC). */
  irqchip?: { picMaster: string; picSlave: string; ioapic: string };
  /** KVM_GET_PIT2. */
  pit?: string;
  /** KVM_GET_CLOCK: kvm-clock in ns. */
  clockNs: string;
}

export function saveKvmVm(vm: KvmVm, o: { irqchip: boolean; pit: boolean }): KvmVmState {
  const b64 = (b: Buffer) => b.toString('base64');
  return {
    ...(o.irqchip ? { irqchip: { picMaster: b64(vm.getIrqchip(0)), picSlave: b64(vm.getIrqchip(1)), ioapic: b64(vm.getIrqchip(2)) } } : {}),
    ...(o.pit ? { pit: b64(vm.getPit2()) } : {}),
    clockNs: vm.getClock().clock.toString(),
  };
}

export function restoreKvmVm(vm: KvmVm, s: KvmVmState): void {
  if (s.irqchip) {
    vm.setIrqchip(0, Buffer.from(s.irqchip.picMaster, 'base64'));
    vm.setIrqchip(1, Buffer.from(s.irqchip.picSlave, 'base64'));
    vm.setIrqchip(2, Buffer.from(s.irqchip.ioapic, 'base64'));
  }
  if (s.pit) vm.setPit2(Buffer.from(s.pit, 'base64'));
  vm.setClock(BigInt(s.clockNs));
}

// ---- The in-kernel 8259 pair and IOAPIC <-> the software engine's device states ----
// struct kvm_pic_state (asm/kvm.h): 16 bytes, in this order. The fields map one to one onto Pic8259State, except
// single mode (KVM's 8259 always cascades) and elcr_mask (which ELCR bits exist: fixed by the chipset, see below).
const KVM_PIC_FIELDS = [
  'lineLevels', 'irr', 'imr', 'isr', 'priorityAdd', 'vectorBase', 'readIsr', 'pollNext', 'specialMask', 'initStep',
  'autoEoi', 'rotateOnAutoEoi', 'specialFullyNested', 'needIcw4', 'elcr',
] as const;
/** ELCR bits the PIIX has (KVM's defaults): IRQ 0-2 and 8, 13 are always edge-triggered. */
const ELCR_MASK = [0xf8, 0xde];

export function kvmPicToSoft(b: Buffer): Pic8259State {
  const s = {} as Record<(typeof KVM_PIC_FIELDS)[number], number | boolean>;
  KVM_PIC_FIELDS.forEach((k, i) => {
    const v = b[i];
    s[k] = k === 'readIsr' || k === 'pollNext' || k === 'specialMask' || k === 'autoEoi' || k === 'rotateOnAutoEoi'
      || k === 'specialFullyNested' || k === 'needIcw4' ? v !== 0 : v;
  });
  return { ...(s as unknown as Pic8259State), singleMode: false };
}

export function softPicToKvm(s: Pic8259State, chip: 0 | 1): Buffer {
  const b = Buffer.alloc(SIZE.kvm_irqchip - 8);
  KVM_PIC_FIELDS.forEach((k, i) => { b[i] = Number(s[k]) & 0xff; });
  b[KVM_PIC_FIELDS.length] = ELCR_MASK[chip];
  return b;
}

// struct kvm_ioapic_state: base_address u64, ioregsel u32, id u32, irr u32, pad u32, redirtbl[24] u64.
const IOAPIC_PINS = 24;
const IOAPIC_REDIRTBL = 24;
const IOAPIC_DEFAULT_BASE = 0xfec0_0000n;

export function kvmIoapicToSoft(b: Buffer): IoapicState {
  const low: number[] = [];
  const high: number[] = [];
  for (let pin = 0; pin < IOAPIC_PINS; pin++) {
    low.push(b.readUInt32LE(IOAPIC_REDIRTBL + 8 * pin));
    high.push(b.readUInt32LE(IOAPIC_REDIRTBL + 8 * pin + 4));
  }
  return { id: b.readUInt32LE(12) & 0x0f, select: b.readUInt32LE(8) & 0xff, redirectionLow: low, redirectionHigh: high, asserted: b.readUInt32LE(16) };
}

export function softIoapicToKvm(s: IoapicState): Buffer {
  const b = Buffer.alloc(SIZE.kvm_irqchip - 8);
  b.writeBigUInt64LE(IOAPIC_DEFAULT_BASE, 0);
  b.writeUInt32LE(s.select >>> 0, 8);
  b.writeUInt32LE(s.id >>> 0, 12);
  b.writeUInt32LE(s.asserted >>> 0, 16);
  for (let pin = 0; pin < IOAPIC_PINS; pin++) {
    b.writeUInt32LE((s.redirectionLow[pin] ?? 0x1_0000) >>> 0, IOAPIC_REDIRTBL + 8 * pin);
    b.writeUInt32LE((s.redirectionHigh[pin] ?? 0) >>> 0, IOAPIC_REDIRTBL + 8 * pin + 4);
  }
  return b;
}

/** The saved in-kernel irqchip as the software engine's DualPic and Ioapic states. */
export function kvmIrqchipToSoft(s: NonNullable<KvmVmState['irqchip']>): { pic: DualPicState; ioapic: IoapicState } {
  const b = (x: string) => Buffer.from(x, 'base64');
  return { pic: { master: kvmPicToSoft(b(s.picMaster)), slave: kvmPicToSoft(b(s.picSlave)) }, ioapic: kvmIoapicToSoft(b(s.ioapic)) };
}

/** The software engine's DualPic and Ioapic states as KvmVmState.irqchip (for restoreKvmVm). */
export function softIrqchipToKvm(pic: DualPicState, ioapic: IoapicState): NonNullable<KvmVmState['irqchip']> {
  return {
    picMaster: softPicToKvm(pic.master, 0).toString('base64'),
    picSlave: softPicToKvm(pic.slave, 1).toString('base64'),
    ioapic: softIoapicToKvm(ioapic).toString('base64'),
  };
}

// ---- The in-kernel 8254 <-> the software engine's Pit state ----
// struct kvm_pit_channel_state (asm/kvm.h), 24 bytes: count u32 (1..65536), latched_count u16, count_latched u8,
// status_latched u8, status u8, read_state u8, write_state u8, write_latch u8, rw_mode u8, mode u8, bcd u8, gate u8,
// count_load_time s64 (host CLOCK_MONOTONIC ns, the clock process.hrtime reads). Then flags u32 (bit 1: speaker data).
// The soft PIT counts ticks of VmClock time: a load time converts through "how long ago", measured on each side's
// clock at the conversion instant (`guestNowNs`: the machine's VmClock then).
const PIT_CHANNEL = 24;
const PIT_FLAGS = 72;
const PIT_SPEAKER_DATA_ON = 2;
/** KVM's read/write states (i8254.c RW_STATE_*): WORD1 = the MSB of a two-byte access comes next. */
const RW_STATE_WORD1 = 4;
const RW_STATE_WORD0 = 3;

function hostMonotonicNs(): bigint {
  return process.hrtime.bigint();
}

/** Next channel-0 interrupt tick after `nowTick`, as the soft Pit schedules it (src/devices/pit.ts nextIrqTick). */
function nextIrqTick(c: PitChannelState, nowTick: number): number | undefined {
  if (!c.counting) return undefined;
  if (c.mode === 0 || c.mode === 4) {
    const t = c.loadTick + c.reload;
    return t > nowTick ? t : undefined;
  }
  if (c.mode === 2 || c.mode === 3) return c.loadTick + Math.max(Math.floor((nowTick - c.loadTick) / c.reload) + 1, 1) * c.reload;
  return undefined;
}

export function kvmPitToSoft(b: Buffer, guestNowNs: number): PitState {
  const hostNow = hostMonotonicNs();
  const nowTick = nsToTicks(guestNowNs);
  const channels: PitChannelState[] = [0, 1, 2].map((i) => {
    const o = i * PIT_CHANNEL;
    const count = b.readUInt32LE(o);
    const loadTime = b.readBigInt64LE(o + 16);
    const rawMode = b[o + 13];
    const mode = rawMode & 7;
    // Channel 0 runs on an hrtimer in KVM (i8254.c pit_load_count): its count_load_time is never set, so whether it
    // counts comes from its mode (0xff until the guest programs it; KVM folds modes 6/7 into 2/3) and its phase is not
    // exposed: the converted channel starts a fresh period at the save instant (at most one period of drift).
    const counting = i === 0 ? rawMode <= 5 : loadTime !== 0n;
    const ago = i !== 0 && loadTime > 0n && hostNow > loadTime ? Number(hostNow - loadTime) : 0;
    return {
      mode: mode > 5 ? mode & 3 : mode, // modes 6 and 7 are 2 and 3 (82C54 data sheet, control word)
      rw: b[o + 12] >= 1 && b[o + 12] <= 3 ? b[o + 12] : 3,
      bcd: b[o + 14] !== 0,
      reload: count >= 1 && count <= 65536 ? count : 65536,
      loadTick: nowTick - nsToTicks(ago),
      counting,
      triggered: true,
      gate: i === 2 ? b[o + 15] !== 0 : true,
      frozenTicks: 0,
      nullCount: false,
      latchedCount: b[o + 6] !== 0 ? b.readUInt16LE(o + 4) : null,
      latchedStatus: b[o + 7] !== 0 ? b[o + 8] : null,
      readMsbNext: b[o + 9] === RW_STATE_WORD1,
      writeMsbNext: b[o + 10] === RW_STATE_WORD1,
      pendingLsb: b[o + 11],
    };
  });
  const portB = (channels[2].gate ? 1 : 0) | (b.readUInt32LE(PIT_FLAGS) & PIT_SPEAKER_DATA_ON);
  const irq = nextIrqTick(channels[0], nowTick);
  return { channels, portB, ...(irq !== undefined ? { irqDeadlineNs: ticksToNs(irq) } : {}) };
}

export function softPitToKvm(s: PitState, guestNowNs: number): Buffer {
  const b = Buffer.alloc(SIZE.kvm_pit_state2);
  const hostNow = hostMonotonicNs();
  const nowTick = nsToTicks(guestNowNs);
  s.channels.forEach((c, i) => {
    const o = i * PIT_CHANNEL;
    b.writeUInt32LE(c.reload, o);
    if (c.latchedCount !== null) {
      b.writeUInt16LE(c.latchedCount & 0xffff, o + 4);
      b[o + 6] = c.rw; // count_latched holds the access mode the latched count is read with
    }
    if (c.latchedStatus !== null) { b[o + 7] = 1; b[o + 8] = c.latchedStatus & 0xff; }
    const rwState = (msbNext: boolean) => (c.rw === 3 ? (msbNext ? RW_STATE_WORD1 : RW_STATE_WORD0) : c.rw);
    b[o + 9] = rwState(c.readMsbNext);
    b[o + 10] = rwState(c.writeMsbNext);
    b[o + 11] = c.pendingLsb & 0xff;
    b[o + 12] = c.rw;
    b[o + 13] = c.mode;
    b[o + 14] = c.bcd ? 1 : 0;
    b[o + 15] = (i === 2 ? c.gate : true) ? 1 : 0;
    if (c.counting) {
      // As the soft Pit counts: a low gate freezes modes 0, 2, 3 and 4 at frozenTicks.
      const elapsed = !c.gate && c.mode !== 1 && c.mode !== 5 ? c.frozenTicks : nowTick - c.loadTick;
      b.writeBigInt64LE(hostNow - BigInt(ticksToNs(Math.max(0, elapsed))), o + 16);
    }
  });
  b.writeUInt32LE(s.portB & PIT_SPEAKER_DATA_ON, PIT_FLAGS);
  return b;
}
