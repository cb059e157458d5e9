// The machine's vCPUs and run loop on KVM: the same devices, buses and boot state as the software engine (see
// machine.ts), with the CPU, the LAPICs, the 8259 pair, the IOAPIC and the 8254 PIT inside the kernel.
//
// - Guest RAM: the machine's GuestMemory memfd mapping, registered as KVM memory slots (KvmEngine.create).
// - Interrupts: KVM_CREATE_IRQCHIP; device lines reach KVM_IRQ_LINE through the machine's KvmIrqRouter, with the
//   GSI routing of kvm-platform.ts (IRQ0 -> IOAPIC pin 2, as the MADT announces); MSIs go to KVM_SIGNAL_MSI.
// - PIT: the in-kernel one (KVM_CREATE_PIT2 with the speaker-port stub at 0x61). Why not the machine's own 8254:
//   Linux programs and reads the PIT during boot (timer check, TSC calibration fallback through channel 2 and port
//   0x61) and every such access would be an exit to user space, and its IRQ0 would come from a host timer on the
//   main thread, late by the event loop's latency; the kernel's PIT injects on time and costs no exit.
// - HLT: handled in the kernel (a halted vCPU sleeps in KVM_RUN until an interrupt arrives).
// - APs: created uninitialized; the in-kernel LAPIC delivers INIT/SIPI and switches their MP state, so every vCPU's
//   worker simply enters KVM_RUN from the start and the APs' block there until the BSP starts them.
// - Port I/O and MMIO exits: dispatched by KvmEngine to the machine's PortBus / MmioBus on the main thread.
// - Device timers (RTC, ACPI PM timer): the VmClock's deadlines, fired from a host timer on the main thread.
// - Poweroff / reset: AcpiPm, PciHost (0xCF9) and the i8042 call Machine.requestExit, which stops every vCPU
//   (KvmVcpuHandle.stop kicks its thread out of KVM_RUN); the run ends when all of them have returned.
import { KvmEngine, type KvmVcpuHandle } from '../cpu/kvm/engine.ts';
import type { KvmVm } from '../kvm/kvm.ts';
import { KVM_PIT_SPEAKER_DUMMY, SYSTEM_EVENT } from '../kvm/abi.ts';
import { ioctlPtr, lastErrno, KvmError } from '../kvm/sys.ts';
import type { Registers, SpecialRegisters, Vcpu } from '../cpu/engine.ts';
import { zeroRegisters } from '../cpu/engine.ts';
import type { BootState } from '../boot/linux.ts';
import type { GuestMemory } from '../memory/guest-memory.ts';
import type { PortBus, MmioBus } from '../devices/bus.ts';
import { kvmGsiRoutes, KvmGuestMemory, type GsiRoute, type KvmIrqRouter, type WatchedClock } from './kvm-platform.ts';
import { KvmVirtioAccel } from './kvm-virtio.ts';
import { CH } from '../cpu/kvm/channel.ts';
import { POST_PORT, DEBUG_CONSOLE_PORT } from '../devices/debug-port.ts';
import { CAP } from '../kvm/abi.ts';
import type { VirtioPciFunction } from '../devices/virtio/pci.ts';
import type { VcpuState } from './snapshot-cpu.ts';
import {
  saveKvmVcpu, restoreKvmVcpu, saveKvmVm, restoreKvmVm, KvmStateError, kvmIrqchipToSoft, softIrqchipToKvm, kvmPitToSoft,
  softPitToKvm, type KvmVmState, type KvmRestoreReport,
} from '../cpu/kvm/state.ts';
import type { DualPicState } from '../devices/irq/pic.ts';
import type { IoapicState } from '../devices/irq/ioapic.ts';
import type { PitState } from '../devices/pit.ts';

/**
 * What KvmCpus.saveState returns: the vCPUs in the snapshot format, the in-kernel devices raw (for a KVM restore) and
 * converted to the software engine's device states (SnapshotBody.devices.pic / ioapic / pit).
 */
export interface KvmSavedState {
  vcpus: VcpuState[];
  kvm: KvmVmState;
  devices: { pic: DualPicState; ioapic: IoapicState; pit: PitState };
}

export { topologyCpuid } from '../cpu/kvm/cpuid.ts';

/** What the KVM vCPUs need of the machine (machine.ts's Machine provides it). */
export interface KvmMachineParts {
  readonly mem: GuestMemory;
  readonly ports: PortBus;
  readonly mmio: MmioBus;
  readonly clock: WatchedClock;
  readonly router: KvmIrqRouter;
  readonly cpus: number;
  /** Where MSIs from PCI devices go once the VM exists. */
  setMsiSink(sink: ((address: number, data: number) => void) | undefined): void;
  /** The virtio-pci functions: their notifications and MSIs take KVM's ioeventfd / irqfd paths (kvm-virtio.ts). */
  readonly virtioFunctions?: readonly VirtioPciFunction[];
  /** Poweroff, reset or error: the run must end. */
  requestExit(exit: { kind: 'poweroff' } | { kind: 'reset' } | { kind: 'error'; message: string }): void;
}

// ---- KVM_SET_GSI_ROUTING (kvm.h): struct kvm_irq_routing { u32 nr, flags; struct kvm_irq_routing_entry[] } with
// 48-byte entries { u32 gsi, type, flags, pad; union u (32 bytes): irqchip { u32 irqchip, pin } }.
/** _IOW(KVMIO, 0x6a, struct kvm_irq_routing): sizeof(struct kvm_irq_routing) = 8 (checked against kvm.h). */
export const KVM_SET_GSI_ROUTING = 0x4008ae6a;
const KVM_IRQ_ROUTING_IRQCHIP = 1;
const ROUTING_HEADER = 8;
const ROUTING_ENTRY = 48;

export function encodeGsiRouting(routes: readonly GsiRoute[]): Buffer {
  const b = Buffer.alloc(ROUTING_HEADER + routes.length * ROUTING_ENTRY);
  b.writeUInt32LE(routes.length, 0);
  routes.forEach((r, i) => {
    const at = ROUTING_HEADER + i * ROUTING_ENTRY;
    b.writeUInt32LE(r.gsi, at);
    b.writeUInt32LE(KVM_IRQ_ROUTING_IRQCHIP, at + 4);
    b.writeUInt32LE(r.irqchip, at + 16);
    b.writeUInt32LE(r.pin, at + 20);
  });
  return b;
}

function setGsiRouting(vm: KvmVm, routes: readonly GsiRoute[]): void {
  if (ioctlPtr(vm.fd, KVM_SET_GSI_ROUTING, encodeGsiRouting(routes)) < 0) throw new KvmError('KVM_SET_GSI_ROUTING', lastErrno());
}

// ---- MSRs a directly booted kernel expects, as firmware would leave them (Intel SDM vol. 4 for the numbers).
const MSR_IA32_SYSENTER_CS = 0x174;
const MSR_IA32_SYSENTER_ESP = 0x175;
const MSR_IA32_SYSENTER_EIP = 0x176;
const MSR_IA32_MISC_ENABLE = 0x1a0;
/** IA32_MISC_ENABLE bit 0: fast-string operations (REP MOVS/STOS) enabled, as every BIOS sets it. */
const MISC_ENABLE_FAST_STRING = 1n;
const MSR_MTRR_DEF_TYPE = 0x2ff;
/** IA32_MTRR_DEF_TYPE: E (bit 11) with default type 6 (write-back): RAM is cacheable, so Linux enables PAT. */
const MTRR_DEF_TYPE_WB_ENABLED = (1n << 11n) | 6n;
const MSR_STAR = 0xc000_0081;
const MSR_LSTAR = 0xc000_0082;
const MSR_CSTAR = 0xc000_0083;
const MSR_SYSCALL_MASK = 0xc000_0084;
const MSR_KERNEL_GS_BASE = 0xc000_0102;

export const BOOT_MSRS: readonly { index: number; data: bigint }[] = [
  { index: MSR_IA32_SYSENTER_CS, data: 0n },
  { index: MSR_IA32_SYSENTER_ESP, data: 0n },
  { index: MSR_IA32_SYSENTER_EIP, data: 0n },
  { index: MSR_STAR, data: 0n },
  { index: MSR_LSTAR, data: 0n },
  { index: MSR_CSTAR, data: 0n },
  { index: MSR_SYSCALL_MASK, data: 0n },
  { index: MSR_KERNEL_GS_BASE, data: 0n },
  { index: MSR_IA32_MISC_ENABLE, data: MISC_ENABLE_FAST_STRING },
  { index: MSR_MTRR_DEF_TYPE, data: MTRR_DEF_TYPE_WB_ENABLED },
];

// ---- LAPIC register page offsets (SDM vol. 3A §11.4.1, Table 11-1) and LVT delivery modes (§11.5.1).
const APIC_LVT_LINT0 = 0x350;
const APIC_LVT_LINT1 = 0x360;
const LVT_DELIVERY_EXTINT = 0x7 << 8;
const LVT_DELIVERY_NMI = 0x4 << 8;

/** Registers and special registers of the 64-bit boot protocol's entry state (boot.rst), for any engine. */
export function bootRegisters(b: BootState, base: SpecialRegisters): { regs: Registers; sregs: SpecialRegisters } {
  const regs = zeroRegisters();
  regs.rip = BigInt(b.entry64);
  regs.rsi = BigInt(b.rsi);
  regs.rsp = BigInt(b.rsp);
  regs.rflags = BigInt(b.rflags);
  const sregs: SpecialRegisters = {
    ...base,
    cs: b.cs, ds: b.ds, es: b.ds, fs: b.ds, gs: b.ds, ss: b.ds, tr: b.tr, ldtr: b.ldtr,
    gdt: { base: BigInt(b.gdtBase), limit: b.gdtLimit },
    idt: { base: BigInt(b.idtBase), limit: b.idtLimit },
    cr0: BigInt(b.cr0 >>> 0), cr2: 0n, cr3: BigInt(b.cr3), cr4: BigInt(b.cr4 >>> 0), efer: BigInt(b.efer >>> 0),
  };
  return { regs, sregs };
}

export function applyBootRegisters(v: Vcpu, b: BootState): void {
  const { regs, sregs } = bootRegisters(b, v.getSpecialRegisters());
  v.setSpecialRegisters(sregs);
  v.setRegisters(regs);
}

export interface KvmCpusOptions {
  /** KVM device path (default /dev/kvm). */
  device?: string;
  /**
   * Run the BSP's KVM_RUN on the main thread (KvmEngineOptions.inlineBoot) instead of a worker: an exit then costs
   * no thread hand-off (bench/exits, CPU time per port-I/O exit: about half the worker's, 1.15x C against
   * 2.4-3.0x C through a worker; a posted port, below, brings a worker to about 1.2x), but while the BSP is inside KVM_RUN the event
   * loop waits for the engine's yield tick (4 ms), so device timers, console input and the APs' exits wait too.
   * Default: on for a single vCPU (nothing else needs the main thread that fast), off with APs; RINGZERO_KVM_INLINE
   * = 1 / 0 overrides.
   */
  inlineBsp?: boolean;
}

/** The vCPUs of one machine on KVM and the loop that runs them until the machine's exit. */
export class KvmCpus {
  private stopping = false;
  private closed = false;
  private pump: ReturnType<typeof setTimeout> | undefined;
  private pumpAt = Infinity;
  /** Set while paused: the vCPUs that left KVM_RUN wait on it. */
  private pauseGate: { promise: Promise<void>; release: () => void } | undefined;
  private parked = 0;
  private onParked: (() => void) | undefined;
  /** ioeventfd / irqfd for the virtio functions (undefined without any, or with RINGZERO_KVM_IOEVENTFD=0). */
  accel: KvmVirtioAccel | undefined;
  /** The machine's KvmGuestMemory takes its dirty pages from this VM (detached at close). */
  private dirtyAttached = false;

  private constructor(private readonly m: KvmMachineParts, readonly engine: KvmEngine) {}

  /**
   * Create the KVM VM over the machine's memory and buses and put the BSP at the boot state (`boot` undefined: a
   * restore follows, restoreState loads every vCPU). kvm-clock starts at the machine's VmClock, so the two read the
   * same guest time from the start (and a snapshot's guestTimeNs is kvm-clock's time too, on either engine).
   */
  static async create(m: KvmMachineParts, boot: BootState | undefined, opts: KvmCpusOptions = {}): Promise<KvmCpus> {
    const env = process.env.RINGZERO_KVM_INLINE;
    const inlineBoot = opts.inlineBsp ?? (env === '1' ? true : env === '0' ? false : m.cpus === 1);
    // The POST port and the debug console are write-only sinks: a worker completes their OUTs itself (posted writes,
    // ../cpu/kvm/channel.ts), so a guest's io_delay or debugcon output costs no thread hand-off per byte.
    const engine = await KvmEngine.create({
      mem: m.mem, ports: m.ports, mmio: m.mmio, cpus: m.cpus, irqchip: true, device: opts.device, inlineBoot,
      postedPorts: [POST_PORT, DEBUG_CONSOLE_PORT],
    });
    const cpus = new KvmCpus(m, engine);
    try {
      const vm = engine.vm;
      setGsiRouting(vm, kvmGsiRoutes());
      vm.createPit2(KVM_PIT_SPEAKER_DUMMY);
      // KvmEngine.create set each vCPU's CPUID (APIC ID, topology, KVM paravirtual leaves: ../cpu/kvm/cpuid.ts).
      for (const v of engine.vcpus) v.vcpu.setMsrs(BOOT_MSRS);
      setVirtualWire(engine.vcpus[0]);
      if (boot) applyBootRegisters(engine.vcpus[0], boot);
      vm.setClock(BigInt(Math.max(0, Math.round(m.clock.now()))));
      if (m.mem instanceof KvmGuestMemory) {
        const mem = m.mem;
        mem.attachDirtySource({ setLogging: (on) => vm.setDirtyLogging(on), collect: (log) => collectDirtyPages(vm, mem, log) });
        cpus.dirtyAttached = true;
      }
      m.router.attach((gsi, level) => vm.irqLine(gsi, level));
      const functions = m.virtioFunctions ?? [];
      const kvm = engine.kvm;
      if (functions.length > 0 && process.env.RINGZERO_KVM_IOEVENTFD !== '0') {
        cpus.accel = new KvmVirtioAccel(vm, functions, kvmGsiRoutes().map((r) => ({ ...r, kind: 'irqchip' as const })), {
          // Not with the BSP on the main thread: there a notify exit is handled at once for about 1.15x the cost of C
          // (bench/exits), while an ioeventfd would wait for the main thread to leave KVM_RUN, up to the 4 ms yield
          // tick when the guest then halts. Workers gain: no hand-off, and the vCPU runs on while the queue is served.
          ioeventfd: !inlineBoot && kvm.checkExtension(CAP.IOEVENTFD) > 0,
          irqfd: kvm.checkExtension(CAP.IRQFD) > 0 && kvm.checkExtension(CAP.IRQ_ROUTING) > 0,
        }, engine.vcpus.map((v) => ({ sab: v.channel, index: CH.TURN })));
      }
      await cpus.accel?.ready;
      const accel = cpus.accel;
      if (accel) engine.pendingMainWork = () => accel.hasPending();
      m.setMsiSink(accel ? (address, data) => accel.deliverMsi(address, data) : (address, data) => { vm.signalMsi(BigInt(address >>> 0), data); });
      m.clock.onArm = (deadline) => { if (deadline < cpus.pumpAt) cpus.schedulePump(); };
      cpus.schedulePump();
      return cpus;
    } catch (e) {
      await cpus.close();
      throw e;
    }
  }

  get vcpus(): readonly KvmVcpuHandle[] {
    return this.engine.vcpus;
  }

  /** Run every vCPU until stop() (called by the machine's requestExit) or a vCPU's fatal exit. */
  async run(): Promise<void> {
    await Promise.all(this.engine.vcpus.map((v) => this.runVcpu(v)));
  }

  private async runVcpu(v: KvmVcpuHandle): Promise<void> {
    while (!this.stopping) {
      const exit = await v.run();
      switch (exit.reason) {
        case 'stopped':
          if (this.pauseGate && !this.stopping) {
            // Paused (suspend): wait outside KVM_RUN until resume() or the machine's exit.
            this.parked++;
            this.onParked?.();
            await this.pauseGate.promise;
            this.parked--;
          }
          continue; // the loop condition decides: a stop for the machine's exit, or a stale one
        case 'halt':
          // With the in-kernel irqchip KVM sleeps on HLT itself; this exit means the irqchip is missing.
          this.m.requestExit({ kind: 'error', message: `vCPU ${v.index}: KVM reported HLT although the in-kernel irqchip handles it` });
          return;
        case 'shutdown':
          this.m.requestExit({ kind: 'reset' }); // triple fault: a PC resets
          return;
        case 'system-event':
          if (exit.type === SYSTEM_EVENT.SHUTDOWN) this.m.requestExit({ kind: 'poweroff' });
          else if (exit.type === SYSTEM_EVENT.RESET) this.m.requestExit({ kind: 'reset' });
          else this.m.requestExit({ kind: 'error', message: `vCPU ${v.index}: KVM system event ${exit.type}` });
          return;
        case 'error':
          this.m.requestExit({ kind: 'error', message: `vCPU ${v.index}: ${exit.message}` });
          return;
      }
    }
  }

  /** Make every vCPU leave KVM_RUN and run() return. Safe from anywhere, any number of times. */
  stop(): void {
    this.stopping = true;
    for (const v of this.engine.vcpus) v.stop();
    this.pauseGate?.release(); // paused vCPUs wake to see the stop
  }

  /**
   * Kick every vCPU out of KVM_RUN and keep it out until resume() (the machine's suspend). Resolves once every vCPU
   * waits (or the run has ended). The in-kernel PIT and the guest TSC keep running: see Machine.pause.
   */
  async pause(): Promise<void> {
    if (!this.pauseGate) {
      let release!: () => void;
      const promise = new Promise<void>((resolve) => { release = resolve; });
      this.pauseGate = { promise, release };
      this.accel?.hold(); // notifications wait too: no device touches guest RAM while paused
      for (const v of this.engine.vcpus) v.stop();
    }
    while (!this.stopping && this.parked < this.engine.vcpus.length) {
      await new Promise<void>((resolve) => { this.onParked = resolve; setTimeout(resolve, 50); });
    }
    this.onParked = undefined;
  }

  resume(): void {
    const gate = this.pauseGate;
    this.pauseGate = undefined;
    this.accel?.release();
    gate?.release();
  }

  /**
   * Snapshot hook (issue 7): every vCPU's state in the snapshot format (src/vmm/snapshot-cpu.ts VcpuState, loadable
   * on either engine) and the in-kernel PIC/IOAPIC/PIT/kvm-clock state (KVM to KVM only). Pauses the vCPUs if they
   * are not paused; if KVM has an event in flight that VcpuState cannot hold, lets the guest run a moment and tries
   * again. Leaves the machine paused.
   */
  async saveState(): Promise<KvmSavedState> {
    const ctx = { kvm: this.engine.kvm, irqchip: true };
    for (let attempt = 0; ; attempt++) {
      await this.pause();
      try {
        const vcpus = this.engine.vcpus.map((v) => saveKvmVcpu(v.vcpu, ctx));
        const kvm = saveKvmVm(this.engine.vm, { irqchip: true, pit: true });
        const { pic, ioapic } = kvmIrqchipToSoft(kvm.irqchip!);
        return { vcpus, kvm, devices: { pic, ioapic, pit: kvmPitToSoft(Buffer.from(kvm.pit!, 'base64'), this.m.clock.now()) } };
      } catch (e) {
        if (!(e instanceof KvmStateError) || attempt >= 20) throw e;
        this.resume();
        await new Promise((r) => setTimeout(r, 1));
      }
    }
  }

  /**
   * Load saved state (checked with checkVcpuState) before run(), over the boot state create() set: the in-kernel
   * devices from `from.kvm` when the state came from KVM, else from the software engine's device states (converted;
   * kvm-clock then continues from the machine's VmClock), then each vCPU. Returns what could not be carried over.
   */
  restoreState(vcpus: readonly VcpuState[], from: { kvm?: KvmVmState; devices?: Partial<KvmSavedState['devices']>; guestTimeNs?: number } = {}): KvmRestoreReport[] {
    if (vcpus.length !== this.engine.vcpus.length) throw new Error(`${vcpus.length} vCPU states for ${this.engine.vcpus.length} vCPUs`);
    // kvm-clock continues from the machine's VmClock (set to the saved guest time by the caller), keeping whatever
    // distance it had from the VmClock when saved (none unless the snapshot's KVM VM drifted from it): so guest time
    // continues from the saved instant whichever engine saved it.
    const now = this.m.clock.now();
    const drift = from.kvm && from.guestTimeNs !== undefined ? Number(BigInt(from.kvm.clockNs)) - from.guestTimeNs : 0;
    const clockNs = String(Math.max(0, Math.round(now + (Number.isFinite(drift) ? drift : 0))));
    if (from.kvm) {
      restoreKvmVm(this.engine.vm, { ...from.kvm, clockNs });
    } else if (from.devices) {
      const d = from.devices;
      restoreKvmVm(this.engine.vm, {
        ...(d.pic && d.ioapic ? { irqchip: softIrqchipToKvm(d.pic, d.ioapic) } : {}),
        ...(d.pit ? { pit: softPitToKvm(d.pit, now).toString('base64') } : {}),
        clockNs,
      });
    }
    const ctx = { kvm: this.engine.kvm, irqchip: true };
    return this.engine.vcpus.map((v, i) => restoreKvmVcpu(v.vcpu, vcpus[i], ctx));
  }

  /** Fire the device timers that are due and sleep (on a host timer) until the next deadline. */
  private schedulePump(): void {
    if (this.closed) return;
    const clock = this.m.clock;
    const deadline = clock.nextDeadline();
    if (this.pump !== undefined) clearTimeout(this.pump);
    this.pump = undefined;
    this.pumpAt = deadline;
    if (deadline === Infinity) return;
    const ms = Math.max(0, Math.ceil((deadline - clock.now()) / 1e6));
    this.pump = setTimeout(() => {
      this.pump = undefined;
      this.pumpAt = Infinity;
      clock.runDue();
      this.schedulePump();
    }, ms);
  }

  /** Stop the vCPUs, end their threads and close the VM; the machine's devices stay usable. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.stop();
    this.m.clock.onArm = undefined;
    if (this.pump !== undefined) clearTimeout(this.pump);
    this.m.router.detach();
    this.m.setMsiSink(undefined);
    if (this.dirtyAttached) {
      this.dirtyAttached = false;
      // The last pages the vCPUs wrote go into the machine's log before the VM (and its bitmaps) goes away.
      try {
        (this.m.mem as KvmGuestMemory).attachDirtySource(undefined);
      } catch { /* the log is then incomplete; a diff after this is the caller's risk only if the VM runs again */ }
    }
    await this.accel?.close();
    await this.engine.close();
  }
}

/**
 * OR the pages KVM logged in each RAM slot (KVM_GET_DIRTY_LOG: one bit per page, LSB first, read and cleared at once)
 * into `log`, indexed by page of the memory image: slot i is RAM region i (KvmVm.mapGuestMemory registers them in
 * order), which starts at page fileOffset / 4096 of the image.
 */
function collectDirtyPages(vm: KvmVm, mem: GuestMemory, log: Uint8Array): void {
  vm.memorySlots.forEach((slot, i) => {
    const region = mem.regions[i];
    if (!region || region.guestBase !== slot.guestBase) throw new Error(`KVM memory slot ${slot.slot} is not RAM region ${i}`);
    const bitmap = vm.getDirtyLog(slot.slot);
    const first = region.fileOffset / 4096;
    const pages = region.size / 4096;
    for (let byte = 0; byte < bitmap.length; byte++) {
      const bits = bitmap[byte];
      if (bits === 0) continue;
      for (let bit = 0; bit < 8; bit++) {
        const page = byte * 8 + bit;
        if (bits & (1 << bit) && page < pages) log[first + page] = 1;
      }
    }
  });
}

/**
 * The BSP's LAPIC as firmware leaves it (MP spec 1.4 §3.6.2.2, virtual wire mode): LINT0 delivers the 8259's
 * ExtINT, LINT1 NMI, unmasked; the software engine's Lapic does the same for its BSP.
 */
function setVirtualWire(bsp: KvmVcpuHandle): void {
  const page = bsp.vcpu.getLapic();
  page.writeUInt32LE(LVT_DELIVERY_EXTINT, APIC_LVT_LINT0);
  page.writeUInt32LE(LVT_DELIVERY_NMI, APIC_LVT_LINT1);
  bsp.vcpu.setLapic(page);
}
