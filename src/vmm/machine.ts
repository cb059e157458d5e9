// A PC-compatible virtual machine: guest RAM, the legacy devices a stock kernel expects (COM1, RTC, PIT, i8042,
// the 8259 pair, IOAPIC, a LAPIC per vCPU, ACPI PM, PCI host bridge), the Linux boot protocol, and the vCPUs with
// their run loop on one of two engines:
//   soft: SoftCpus here, with the machine's own 8259 pair, IOAPIC, LAPICs and 8254 (src/devices);
//   kvm:  KvmCpus (kvm-machine.ts), with KVM's in-kernel irqchip and PIT; device lines end in KVM_IRQ_LINE
//         through a KvmIrqRouter (kvm-platform.ts).
// Everything else (RAM, buses, COM1, RTC, i8042, ACPI PM, PCI and its devices, the boot state) is the same object
// graph on both engines, and poweroff/reset come from the same device callbacks through requestExit().
//
// The soft engine's run loop: each runnable vCPU executes a slice of instructions in turn; between slices the VM clock's
// due timers fire (PIT, LAPIC timers, RTC) and, every few milliseconds, the loop yields to Node's event loop
// so console input and other I/O are handled. When every vCPU is halted, the loop sleeps until the next timer
// deadline or until a device raises an interrupt: an idle guest costs (almost) no host CPU.

import fs from 'node:fs';
import path from 'node:path';
import { GuestMemory } from '../memory/guest-memory.ts';
import { PortBus, MmioBus } from '../devices/bus.ts';
import { VmClock } from './clock.ts';
import type { VmConfig, ConsoleIo } from './config.ts';
import { loadLinux, type BootState, type SegmentState } from '../boot/linux.ts';
import { fileIdentity } from '../boot/vmlinux-cache.ts';
import { SoftCpu, RunExit } from '../cpu/soft/index.ts';
import { softEngineStats } from '../cpu/soft/code-cache.ts';
import { bootPhaseTap } from './boot-phases.ts';
import * as C from '../cpu/soft/constants.ts';
import { ApicBus } from '../devices/irq/apic-bus.ts';
import { Lapic } from '../devices/irq/lapic.ts';
import { Ioapic } from '../devices/irq/ioapic.ts';
import { DualPic } from '../devices/irq/pic.ts';
import { IrqRouter } from '../devices/irq/router.ts';
import { Serial16550, COM1_BASE, COM1_IRQ } from '../devices/serial.ts';
import { AcpiPm } from '../devices/acpi-pm.ts';
import { ACPI_SCI_IRQ } from '../boot/platform.ts';
import { Rtc } from '../devices/rtc.ts';
import { Pit } from '../devices/pit.ts';
import { I8042 } from '../devices/i8042.ts';
import { DebugPort } from '../devices/debug-port.ts';
import { PciHost } from '../devices/pci/host.ts';
import { attachVirtioDevices, type VirtioDevices } from '../devices/virtio/index.ts';
import { VIRTIO_TYPE_NAMES } from '../devices/virtio/device.ts';
import { KvmIrqRouter, WatchedClock, KvmGuestMemory } from './kvm-platform.ts';
import type { KvmCpus, KvmSavedState } from './kvm-machine.ts';
import { hexAddress, type GuestProfile } from './guest-profile.ts';
import { readSnapshot, writeSnapshot, ringzeroVersion, applyDiffLayers, type ReadSnapshotOptions, type SnapshotBody } from './snapshot.ts';
import { saveSoftCpu, checkVcpuState, restoreSoftCpu, savedTscDeadline } from './snapshot-cpu.ts';
import { exportHotList, pretranslate, type HotList, type PretranslateReport } from '../cpu/soft/hot-list.ts';

/** Instructions a vCPU runs before the loop looks at timers and the other vCPUs (also the guest profile's
 * sampling period). */
export const SLICE = 20_000;
/**
 * RINGZERO_PROFILE_WALL=1: `--profile-guest` weighs each slice's RIP by the slice's host time (one sample per 0.1 ms)
 * instead of one per slice: where the guest thread's wall time goes by guest function (translation and replays
 * included, charged to the code that caused them), e.g. a busy wait on the TSC, which runs few instructions per ms.
 * bench/boot-phases --guest-profile passes the environment on.
 */
const PROFILE_WALL = process.env.RINGZERO_PROFILE_WALL === '1';
/**
 * RINGZERO_SLICE_LOG=FILE: one record per run-loop slice of a soft-engine vCPU, written to FILE when the process
 * exits: the slice's host milliseconds, the guest instructions it ran and the RIP it ended at, as text lines
 * "ms instructions rip-hex" (bench/boot-phases --slices: how much of a boot runs at which speed, i.e. how much of it
 * is code the engine runs for its first times, and where). At most SLICE_LOG_MAX slices are kept (a boot has ~25k;
 * a long-running VM's log would otherwise grow without end). Off: one untaken branch per slice.
 */
const SLICE_LOG_FILE = process.env.RINGZERO_SLICE_LOG ?? '';
const sliceLog: number[] = [];
const SLICE_LOG_MAX = 1_000_000;
if (SLICE_LOG_FILE !== '') {
  process.on('exit', () => {
    const lines: string[] = [];
    for (let i = 0; i < sliceLog.length; i += 3) lines.push(`${sliceLog[i].toFixed(3)} ${sliceLog[i + 1]} ${hexAddress(sliceLog[i + 2])}`);
    try { fs.writeFileSync(SLICE_LOG_FILE, lines.join('\n') + '\n'); } catch { /* a measurement aid: never fail the exit */ }
  });
}
/**
 * Whether the soft engine translates hot code to WebAssembly: the default since it measured 0.8x the CPU time of
 * the JavaScript translator on the Linux boot (issue 4). RINGZERO_JIT=js keeps the JavaScript translator,
 * RINGZERO_JIT=0 closure replay only (both to compare).
 */
function wasmTranslationByDefault(): boolean {
  const jit = process.env.RINGZERO_JIT;
  return jit === undefined || jit === '' || jit === 'wasm';
}
/** How long the loop may keep the thread before letting Node handle I/O. */
const YIELD_MS = 8;
/**
 * The same while the soft engine's WebAssembly translator has modules compiling in the background (WasmEngine.compiling):
 * a compiled module comes back from the compile thread as a message on this thread's event loop (and without that
 * thread, V8 completes WebAssembly.compile through tasks on it), so each turn brings them closer; a turn with nothing
 * to do costs ~2 us.
 */
const COMPILE_YIELD_MS = 1;
/**
 * A restored VM's first RESUME_SLICE_WINDOW_MS (a migration's destination, `run --restore`): the loop looks at timers
 * and I/O after each slice, and a slice is SLICE instructions, ~0.2-1 ms of a warm process's guest but ~40 ms in a new
 * process's first moments, where the guest ran ~0.5 MIPS (session 24: 40-60k instructions in the first 100 ms after a
 * migration's resume): a timer interrupt (the ticker's wake-up, the scheduler's tick) then waited up to a slice. So
 * while the window lasts, a slice that took longer than RESUME_SLICE_MS halves the next one (down to MIN_SLICE) and
 * one under a quarter of it doubles it back. Not with a guest profile (it samples one RIP per SLICE instructions).
 * RINGZERO_RESUME_SLICE_MS=2 turns it on; off by default: the guest's instructions themselves stayed as slow (a
 * destination with it ran 30k instructions in 111 ms of main-thread CPU in its first 100 ms, its first value 147 ms
 * after its first instruction, within the 66-577 ms seen without it), and bench/restore-hot --hops 8 alternating at
 * load 16-25 gave the destination's way to its first value 54/80/45/25 ms with it against 31/86/64/30 without.
 */
const RESUME_SLICE_MS = Number(process.env.RINGZERO_RESUME_SLICE_MS ?? 0);
const RESUME_SLICE_WINDOW_MS = 3000;
const MIN_SLICE = 1000;
/** RINGZERO_HOLD_CLOCK=0: a restored soft-engine VM's clock runs from applyState on, not from run() (applyState). */
const HOLD_CLOCK = process.env.RINGZERO_HOLD_CLOCK !== '0';
/** RINGZERO_MIGRATE_HOT_STATS=1 or RINGZERO_RESTORE_TIMING=1: a restore says what its hot-block list did (stderr). */
const HOT_STATS = process.env.RINGZERO_MIGRATE_HOT_STATS === '1' || process.env.RINGZERO_RESTORE_TIMING === '1';
/** The longest setTimeout delay Node honours (a 32-bit signed millisecond count). */
const MAX_TIMEOUT_MS = 2 ** 31 - 1;

/**
 * What a restore does with its snapshot's hot-block list (src/cpu/soft/hot-list.ts; saved by snapshotState):
 * 'off' (the default) leaves it unused; 'after' translates it beside the guest from its first instruction on, taking at
 * most a third of the main thread; 'before' translates it all before the guest runs (its clock standing still
 * meanwhile: restoreVm waits for it). Measured (bench/restore-hot, fresh VMM processes, README "Snapshots"): in a new
 * process the translator is cold and 2048 blocks took 1.7-3.7 s of main-thread CPU at load ~20, which the guest
 * then waits for in either mode, so neither is the default.
 */
export interface RestoreHotOptions {
  hot?: 'off' | 'after' | 'before';
}

/** RINGZERO_RESTORE_HOT=after|before (anything else: off). */
function restoreHotMode(): 'off' | 'after' | 'before' {
  const v = process.env.RINGZERO_RESTORE_HOT;
  return v === 'after' || v === 'before' ? v : 'off';
}

/** What Machine.stats() reports (all counters monotonic since the machine started; KVM: no instruction counts). */
export interface VmCounters {
  engine: string;
  vcpus: number;
  haltedVcpus: number;
  instructions: number;
  blockInstructions: number;
  /**
   * Soft engine: the block cache's counters (src/cpu/soft/code-cache.ts CodeCacheStats; blocks translated in
   * `compiled`, which the manager's parsed copy leaves out).
   */
  codeCache: { blocks: number; instructionsCached: number; invalidations: number; compiled?: number } | null;
  /**
   * Device accesses by bus: port I/O and MMIO (each one a VM exit on a hardware engine); byDevice splits them by the
   * name each device registered its range with (e.g. serial@0x3f8, pci-config, pit, pci-ecam).
   */
  exits: { pio: number; mmio: number; byDevice?: { pio: Record<string, number>; mmio: Record<string, number> } };
  disk: { readBytes: number; writeBytes: number };
  net: { rxBytes: number; txBytes: number; rxFrames: number; txFrames: number };
  /** The same bytes per device: disks vda, vdb, ... in --disk order, NICs eth0, eth1, ... in --net order. */
  devices: Array<{ name: string; kind: 'disk' | 'net'; readBytes: number; writeBytes: number }>;
  /**
   * Every virtio function's queue notifications from the driver and interrupts to it (VirtioPciFunction.counters),
   * by device type name (virtio-net, virtio-blk, ...; several functions of a type summed). Notifications the KVM
   * engine takes through an ioeventfd go to process() directly and are not counted.
   */
  virtio?: Record<string, { notifies: number; interrupts: number; chains: number }>;
  /**
   * Soft engine: how often every vCPU was halted and the run loop slept until the next timer or interrupt (what a
   * hardware engine counts as HLT exits; KVM with the in-kernel irqchip keeps HLT inside the kernel: 0 there).
   */
  halts: number;
  /**
   * Soft engine: wall milliseconds the run loop slept with every vCPU halted (the guest idle: waiting for a device, an
   * interrupt or a timer), and spent in its event-loop turns while a vCPU was runnable (I/O callbacks, module
   * installs): bench/io splits each pass's wall time with them.
   */
  haltMs?: number;
  yieldMs?: number;
  /** Local APIC register accesses (xAPIC page), EOI writes and interrupts taken, summed over the vCPUs (soft engine). */
  lapic?: { reads: number; writes: number; eoiWrites: number; acknowledged: number };
  guestNs: number;
  /**
   * Soft engine: the instruction engine's own counters (bench/io reads them around each test to show where the
   * guest's instructions ran): instructions from translated code, TLB walks and second-level refills, the wasm
   * translator's counters (wasm/runtime.ts WasmStats); the block cache's are `codeCache` above.
   */
  soft?: { jitInstructions: number; tlbWalks: number; tlbL2Hits: number; wasm?: Record<string, number> };
}

export type MachineExit = { kind: 'poweroff' } | { kind: 'reset' } | { kind: 'error'; message: string };

/** Options that are not part of the VM's definition. */
export interface MachineOptions {
  /** KVM device path (default /dev/kvm); the kvm engine only. */
  kvmDevice?: string;
  /** KVM: run the BSP on the main thread (default: only with one vCPU; see KvmCpusOptions.inlineBsp). */
  kvmInlineBsp?: boolean;
  /** Guest RAM is this file mapped copy-on-write (a snapshot's memory image; see Machine.restore). */
  memoryFile?: string;
  /** Soft engine: sample RIP at the end of every full run-loop slice (./guest-profile.ts). */
  profile?: GuestProfile;
  /** A restored VM's time bound on its slices in its first seconds (RESUME_SLICE_MS; 0: none). */
  resumeSliceMs?: number;
}

interface Vcpu {
  cpu: SoftCpu;
  lapic: Lapic;
  /** An AP waiting for its startup IPI (SDM vol. 3A §9.4.4: wait-for-SIPI). */
  waitForSipi: boolean;
}

export class Machine {
  readonly clock: VmClock;
  readonly mem: GuestMemory;
  readonly ports = new PortBus();
  readonly mmio = new MmioBus();
  /** The machine's own interrupt controllers: soft engine only (KVM has them in the kernel). */
  readonly apicBus: ApicBus | undefined;
  readonly pic: DualPic | undefined;
  readonly ioapic: Ioapic | undefined;
  /** Where device interrupt lines come from, on either engine. */
  readonly router: IrqRouter;
  readonly serial: Serial16550;
  readonly pci: PciHost;
  /** virtio-pci devices from config.disks / rng / virtioConsole (src/devices/virtio). */
  readonly virtio: VirtioDevices;
  /** Soft engine vCPUs (empty on KVM: see kvmCpus). */
  readonly vcpus: Vcpu[] = [];
  boot: BootState | undefined;
  /**
   * Soft engine: hot blocks are translated to WebAssembly (src/cpu/soft/wasm), with low RAM mapped inside the wasm
   * memory; falls back to the JavaScript paths when the memory cannot be placed there (see wasmTranslationByDefault).
   */
  private readonly wasmTranslation: boolean;
  /** The KVM vCPUs while run() is in progress on the kvm engine. */
  kvmCpus: KvmCpus | undefined;

  private exit: MachineExit | undefined;
  private wakeUp: (() => void) | undefined;
  private unsubscribeInput: (() => void) | undefined;
  private msiSink: ((address: number, data: number) => void) | undefined;
  // Devices a snapshot saves (the others above are public already).
  private readonly rtc: Rtc;
  private readonly pit: Pit | undefined;
  private readonly i8042: I8042;
  private readonly acpiPm: AcpiPm;
  // Pause: the run loop parks between slices (so every vCPU is at an instruction boundary) while `pauseRequested`.
  private pauseRequested = false;
  private loopRunning = false;
  private loopParked = false;
  private onParked: (() => void) | undefined;
  private resumeLoop: (() => void) | undefined;
  private rebootOnPowerOff = false;
  /** KVM: the snapshot state restore() loaded into the devices, for run() to load into the KVM VM it creates. */
  private pendingKvmRestore: SnapshotBody | undefined;
  /** Times the soft run loop slept with every vCPU halted (stats). */
  private halts = 0;
  /**
   * Wall milliseconds the soft run loop spent in sleepUntilEvent (every vCPU halted: the guest idle, e.g. waiting for a
   * timer in guest time, which follows the host's clock) and awaiting its event-loop turns (I/O callbacks and the
   * translator's module installs run there): `--stats` splits the run's wall time with them.
   */
  private haltMs = 0;
  private yieldMs = 0;
  /** Due timers sleepUntilEvent ran in a row without sleeping. */
  private dueWithoutSleep = 0;
  /** The deadline sleepUntilEvent sleeps until (Infinity when not sleeping, or sleeping with nothing armed). */
  private sleepDeadline = Infinity;

  constructor(readonly config: VmConfig, private readonly console: ConsoleIo, private readonly options: MachineOptions = {}) {
    const source = options.memoryFile ? { file: options.memoryFile } : undefined;
    // KVM: the dirty-page log also takes KVM's bitmap of the vCPUs' writes (kvm-platform.ts).
    this.wasmTranslation = config.engine !== 'kvm' && config.translate !== false && wasmTranslationByDefault();
    this.mem = config.engine === 'kvm' ? new KvmGuestMemory(config.memory, source, { wasm: false })
      : new GuestMemory(config.memory, source, { wasm: this.wasmTranslation });
    if (config.engine === 'kvm') {
      this.clock = new WatchedClock();
      this.router = new KvmIrqRouter();
    } else {
      // A timer armed while the run loop sleeps (by a device answering host I/O, say) may be due before the
      // deadline the loop sleeps until: wake it to re-plan (sleepUntilEvent has no periodic wakeup to catch it).
      const clock = new WatchedClock();
      clock.onArm = (deadlineNs) => { if (deadlineNs < this.sleepDeadline) this.kick(); };
      this.clock = clock;
      const apicBus = new ApicBus();
      const pic = new DualPic((level) => apicBus.setPicOutput(level));
      apicBus.setExtIntSource(pic);
      const ioapic = new Ioapic(apicBus);
      apicBus.addEoiListener(ioapic);
      this.router = new IrqRouter(pic, ioapic);
      pic.register(this.ports);
      ioapic.register(this.mmio);
      this.apicBus = apicBus;
      this.pic = pic;
      this.ioapic = ioapic;
    }

    // (RINGZERO_BOOT_PHASES: the engine's counters at each console line, ./boot-phases.ts)
    const tap = bootPhaseTap(() => this.vcpus.map((v) => v.cpu), () => ({ halts: this.halts, haltMs: this.haltMs }), options.profile);
    this.serial = new Serial16550(this.router.line(COM1_IRQ), tap === null ? (bytes: Uint8Array) => this.console.write(bytes)
      : (bytes: Uint8Array) => { tap(bytes); this.console.write(bytes); });
    this.serial.register(this.ports, COM1_BASE);
    this.unsubscribeInput = this.console.onInput((data) => {
      this.serial.receive(data);
      this.kick();
    });
    const reset = () => this.requestExit({ kind: 'reset' });
    this.rtc = new Rtc(this.clock, this.router.line(8), { memoryBytes: config.memory });
    this.rtc.register(this.ports);
    // On KVM the in-kernel 8254 answers ports 0x40-0x43 and 0x61 (see kvm-machine.ts for why).
    this.pit = config.engine !== 'kvm' ? new Pit(this.clock, this.router.line(0)) : undefined;
    this.pit?.register(this.ports);
    this.i8042 = new I8042(this.router.line(1), this.router.line(12), reset);
    this.i8042.register(this.ports);
    new DebugPort((bytes) => this.console.write(bytes)).register(this.ports);
    const sci = this.router.line(ACPI_SCI_IRQ);
    this.acpiPm = new AcpiPm({
      clock: this.clock,
      onPowerOff: () => this.requestExit({ kind: 'poweroff' }),
      onReset: reset,
      setSci: (level) => sci.set(level),
    });
    this.acpiPm.register(this.ports, false);
    this.pci = new PciHost({
      mmioBus: this.mmio, portBus: this.ports, router: this.router,
      deliverMsi: (address, data) => this.deliverMsi(address, data), onReset: reset,
    });
    this.pci.register(this.ports, this.mmio);
    this.virtio = attachVirtioDevices({
      mem: this.mem, kick: () => this.kick(),
      // (soft engine: a VM-clock timer due now fires at the run loop's next runDue, after the current slice)
      ...(config.engine !== 'kvm' ? {
        sliceTimer: (callback: () => void) => {
          const t = this.clock.createTimer(() => callback());
          return { arm: () => this.clock.arm(t, this.clock.now()), disarm: () => this.clock.disarm(t) };
        },
      } : {}),
    }, this.pci, config, this.console);
    this.virtio.control?.attachVm(this);

    if (config.engine !== 'kvm') for (let i = 0; i < config.cpus; i++) this.addVcpu(i, this.apicBus!);
  }

  /** A message-signalled interrupt from a PCI device (address and data as the device's MSI capability holds them). */
  deliverMsi(address: number, data: number): void {
    if (this.apicBus) this.apicBus.deliverMsi(address, data);
    else this.msiSink?.(address, data);
  }

  /** The KVM vCPUs set where MSIs go while the VM exists. */
  setMsiSink(sink: ((address: number, data: number) => void) | undefined): void {
    this.msiSink = sink;
  }

  get cpus(): number {
    return this.config.cpus;
  }

  private addVcpu(index: number, apicBus: ApicBus): void {
    const vcpu = {} as Vcpu;
    const lapic = new Lapic({
      clock: this.clock,
      bus: apicBus,
      apicId: index,
      bsp: index === 0,
      hooks: {
        wake: () => { vcpu.cpu.notifyEvent(); this.kick(); },
        init: () => {
          if (index === 0) return; // INIT of the BSP is not used by Linux; ignore rather than reset the machine
          vcpu.cpu.reset();
          vcpu.waitForSipi = true;
        },
        startup: (vector) => {
          if (!vcpu.waitForSipi) return;
          // Start in real mode at vector * 4096 (SDM vol. 3A §9.4.4.1): CS = vector << 8, IP = 0.
          vcpu.cpu.reset();
          vcpu.cpu.loadSegmentReal(C.CS, vector << 8);
          vcpu.cpu.rip = 0;
          vcpu.waitForSipi = false;
          this.kick();
        },
      },
    });
    const cpu = new SoftCpu({
      mem: this.mem, ports: this.ports, mmio: this.mmio, clock: this.clock, lapic,
      cpuIndex: index, cpuCount: this.config.cpus, blockCache: this.config.translate, wasm: this.wasmTranslation,
    });
    cpu.onTripleFault = () => this.requestExit({ kind: 'reset' });
    vcpu.cpu = cpu;
    vcpu.lapic = lapic;
    vcpu.waitForSipi = index !== 0;
    this.vcpus.push(vcpu);
  }

  /** Load the kernel, initrd and command line, and put the boot vCPU at the 64-bit entry point. */
  loadKernel(): void {
    // The kernel is read from its open file as loadLinux needs it (KernelFile): a kernel decoded before is found in
    // the decoded-kernel cache by the file's identity without reading it (reading Debian's 14 MB bzImage into a
    // buffer and hashing its payload took ~80 ms of this thread before the guest's first instruction, session 39).
    // The initrd goes from its file into RAM (loadLinux's InitrdFile): a buffer read of it and the copy into RAM took
    // ~1.5k page faults of this thread on a boot of the default guest (3 MB initramfs).
    const kernelFd = fs.openSync(this.config.kernel, 'r');
    let initrdFd: number | undefined;
    let boot: BootState;
    try {
      const kernel = { fd: kernelFd, size: fs.fstatSync(kernelFd).size, identity: fileIdentity(kernelFd) };
      initrdFd = this.config.initrd ? fs.openSync(this.config.initrd, 'r') : undefined;
      const initrd = initrdFd === undefined ? undefined : { fd: initrdFd, length: fs.fstatSync(initrdFd).size };
      boot = loadLinux(this.mem, kernel, initrd, this.config.cmdline, { cpus: this.config.cpus });
    } finally {
      fs.closeSync(kernelFd);
      if (initrdFd !== undefined) fs.closeSync(initrdFd);
    }
    this.boot = boot;
    // On KVM the boot state is applied when run() has created the VM.
    if (this.vcpus.length > 0) applyBootState(this.vcpus[0].cpu, boot);
  }

  requestExit(exit: MachineExit): void {
    // A reboot asked through the power button (requestReboot) ends in the guest's poweroff: make that a reset.
    if (exit.kind === 'poweroff' && this.rebootOnPowerOff) exit = { kind: 'reset' };
    if (!this.exit) this.exit = exit;
    for (const v of this.vcpus) v.cpu.stopRequested = true;
    this.kvmCpus?.stop();
    this.kick();
    this.resumeLoop?.(); // a paused loop wakes to return the exit
  }

  /**
   * Ask the guest to shut down gracefully: press the ACPI fixed-feature power button (src/devices/acpi-pm.ts). A guest
   * that handles it (Linux's button driver, then e.g. acpid running poweroff) ends with an S5 write to PM1_CNT, which
   * is the 'poweroff' exit. Returns whether the guest has enabled the button's event; false means it will not react
   * (not booted far enough, or no driver), and the caller decides how long to wait before stopping the VM hard.
   */
  requestShutdown(): boolean {
    const listening = this.acpiPm.pressPowerButton();
    this.kick();
    return listening;
  }

  /**
   * A graceful reboot (virsh reboot, as libvirt's "fake reboot" on QEMU does it): press the power button and turn the
   * guest's coming poweroff into a reset, which `--on-reboot restart` boots again in this process. Returns whether
   * the guest listens to the button (false: it will not react; the caller may reset it instead).
   */
  requestReboot(): boolean {
    this.rebootOnPowerOff = true;
    return this.requestShutdown();
  }

  /**
   * The host thread ids that run the vCPUs, for pinning (sched_setaffinity): the soft engine runs every vCPU on the
   * VMM's main thread (its tid is the pid); the KVM engine runs each on a worker thread (or the BSP on the main one).
   */
  vcpuThreadIds(): number[] {
    if (this.config.engine !== 'kvm') return [process.pid];
    return this.kvmCpus ? this.kvmCpus.vcpus.map((v) => v.threadId) : [];
  }

  /**
   * The guest profile's samples so far (`run --profile-guest`), then forgotten, for the control socket's
   * {"cmd":"guest-profile"}: a bench takes one profile per pass (bench/io-passes --profile-dir). Undefined without one.
   */
  takeGuestProfile(): { samples: number; every: number; addresses: [string, number][] } | undefined {
    const profile = this.options.profile;
    if (profile === undefined) return undefined;
    const { samples, every, addresses } = profile.report();
    profile.reset();
    return { samples, every, addresses };
  }

  /** Counters since the machine started, for the control socket's {"cmd":"stats"} (src/manager/stats.ts reads them). */
  stats(): VmCounters {
    const cpus = this.vcpus.map((v) => v.cpu);
    const disk = { readBytes: 0, writeBytes: 0 };
    const devices: VmCounters['devices'] = [];
    for (const f of this.virtio.functions) {
      // virtio-blk counts its bytes when it has `counters` (duck-typed: the device models own their counters).
      const c = (f.device as { counters?: { readBytes?: unknown; writeBytes?: unknown } }).counters;
      if (typeof c?.readBytes === 'number' && typeof c.writeBytes === 'number') {
        disk.readBytes += c.readBytes;
        disk.writeBytes += c.writeBytes;
        devices.push({ name: `vd${String.fromCharCode(97 + devices.filter((d) => d.kind === 'disk').length)}`, kind: 'disk', readBytes: c.readBytes, writeBytes: c.writeBytes });
      }
    }
    const net = { rxBytes: 0, txBytes: 0, rxFrames: 0, txFrames: 0 };
    this.virtio.nets.forEach((n, i) => {
      net.rxBytes += n.counters.rxBytes; net.txBytes += n.counters.txBytes;
      net.rxFrames += n.counters.rxFrames; net.txFrames += n.counters.txFrames;
      // A NIC "reads" what the guest receives and "writes" what it sends.
      devices.push({ name: `eth${i}`, kind: 'net', readBytes: n.counters.rxBytes, writeBytes: n.counters.txBytes });
    });
    const virtio: Record<string, { notifies: number; interrupts: number; chains: number }> = {};
    for (const f of this.virtio.functions) {
      const name = VIRTIO_TYPE_NAMES[f.device.deviceType] ?? `virtio-${f.device.deviceType}`;
      const v = (virtio[name] ??= { notifies: 0, interrupts: 0, chains: 0 });
      v.notifies += f.counters.notifies;
      v.interrupts += f.counters.interrupts;
      v.chains += f.counters.chains;
    }
    return {
      engine: this.config.engine,
      vcpus: this.config.cpus,
      haltedVcpus: this.vcpus.filter((v) => v.waitForSipi || v.cpu.halted).length,
      instructions: cpus.reduce((n, c) => n + c.instructions, 0),
      blockInstructions: cpus.reduce((n, c) => n + c.blockInstructions, 0),
      codeCache: cpus.length > 0 ? { ...cpus[0].codeCache.stats } : null,
      exits: { pio: this.ports.accesses, mmio: this.mmio.accesses, byDevice: { pio: this.ports.accessesByDevice(), mmio: this.mmio.accessesByDevice() } },
      disk,
      net,
      devices,
      virtio,
      halts: this.halts,
      haltMs: this.haltMs,
      yieldMs: this.yieldMs,
      lapic: this.vcpus.reduce((n, v) => { const c = v.lapic.counters; n.reads += c.reads; n.writes += c.writes; n.eoiWrites += c.eoiWrites; n.acknowledged += c.acknowledged; return n; }, { reads: 0, writes: 0, eoiWrites: 0, acknowledged: 0 }),
      guestNs: this.clock.now(),
      ...(cpus.length > 0 ? {
        soft: {
          jitInstructions: cpus.reduce((n, c) => n + c.jitInstructions, 0),
          tlbWalks: cpus.reduce((n, c) => n + c.tlbWalks, 0),
          tlbL2Hits: cpus.reduce((n, c) => n + c.tlbL2Hits, 0),
          ...(cpus[0].wasm ? { wasm: { ...cpus[0].wasm.stats, ...cpus[0].wasm.exitCounters() } } : {}),
          // (RINGZERO_TIER_STATS=1, else zeros: instructions run in JavaScript, by why their block was not in wasm,
          // runtime.ts tierInstr; bench/io-passes prints them per pass)
          ...(cpus[0].wasm ? { jsTier: Object.fromEntries(['warming', 'queued', 'inFlight', 'never', 'tooLong'].map((n, i) => [n, cpus.reduce((k, c) => k + (c.wasm?.tierInstr[i] ?? 0), 0)])) } : {}),
        },
      } : {}),
    };
  }

  /** The exit requested so far, if any. */
  get exitRequested(): MachineExit | undefined {
    return this.exit;
  }

  /** Wake the run loop if it sleeps (an interrupt became pending, input arrived, exit requested). */
  kick(): void {
    const w = this.wakeUp;
    if (w) {
      this.wakeUp = undefined;
      w();
    }
  }

  /** Run until the guest powers off or resets (or a fatal error). */
  async run(): Promise<MachineExit> {
    if (this.config.engine === 'kvm') return this.runOnKvm();
    const debug = process.env.RINGZERO_DEBUG ? Number(process.env.RINGZERO_DEBUG) || 1 : 0;
    const profile = this.options.profile;
    let lastYield = Date.now();
    const runStart = lastYield;
    let lastReport = lastYield;
    let lastInstructions = 0;
    // A restored VM's hot code translated beside the guest from its first instruction on (RestoreHotOptions 'after').
    if (this.restoredHot?.when === 'after') void this.pretranslateRestored();
    // (a restored VM: for its first RESUME_SLICE_WINDOW_MS its slices are bounded in time as well as in instructions)
    let coldUntil = -Infinity;
    const sliceMs = this.options.resumeSliceMs ?? RESUME_SLICE_MS;
    if (this.clockHeld) {
      this.clockHeld = false;
      if (!this.pauseRequested) this.clock.resume();
      if (sliceMs > 0 && profile === undefined) coldUntil = performance.now() + RESUME_SLICE_WINDOW_MS;
    }
    this.budget = SLICE;
    this.loopRunning = true;
    try {
    while (!this.exit) {
      if (this.pauseRequested) {
        await this.park();
        lastYield = Date.now();
        continue;
      }
      let anyRunnable = false;
      const cold = coldUntil > 0;
      const sliceStart = cold ? performance.now() : 0;
      for (const v of this.vcpus) {
        if (v.waitForSipi) continue;
        const cpu = v.cpu;
        const t0 = (PROFILE_WALL && profile !== undefined) || SLICE_LOG_FILE !== '' ? performance.now() : 0;
        const i0 = cpu.instructions;
        const r = cpu.run(this.budget);
        if (SLICE_LOG_FILE !== '' && sliceLog.length < 3 * SLICE_LOG_MAX) sliceLog.push(performance.now() - t0, cpu.instructions - i0, cpu.rip);
        if (r === RunExit.Budget) {
          // (where the guest spends its time, for a migration's or snapshot's hot-block list: src/cpu/soft/hot-list.ts)
          cpu.codeCache.sampleRip(cpu.rip);
          if (profile !== undefined) {
            if (!PROFILE_WALL) profile.record(cpu.rip);
            else for (let k = Math.round((performance.now() - t0) * 10); k > 0; k--) profile.record(cpu.rip);
          }
        }
        if (r === RunExit.Shutdown) {
          this.requestExit({ kind: 'reset' });
          break;
        }
        if (!cpu.halted) anyRunnable = true;
        this.clock.runDue();
      }
      if (this.exit) break;
      if (cold) {
        // (halve the budget while a slice takes longer than RESUME_SLICE_MS, double it back while it takes under a
        // quarter of it; SLICE again for good once the window is over)
        const t = performance.now();
        if (t > coldUntil) { coldUntil = -Infinity; this.budget = SLICE; }
        else if (t - sliceStart > sliceMs) this.budget = Math.max(MIN_SLICE, this.budget >> 1);
        else if (t - sliceStart < sliceMs / 4) this.budget = Math.min(SLICE, this.budget * 2);
        this.minBudget = Math.min(this.minBudget, this.budget);
      }
      const now = Date.now();
      if (debug && now - lastReport >= 1000) {
        const cpu = this.vcpus[0].cpu;
        const n = this.vcpus.reduce((s, v) => s + v.cpu.instructions, 0);
        process.stderr.write(`[ringzero] ${((n - lastInstructions) / (now - lastReport) / 1000).toFixed(1)} MIPS rip=${hexAddr(cpu.rip)} cpl=${cpu.cpl} halted=${this.vcpus.map((v) => (v.waitForSipi ? 'S' : v.cpu.halted ? 'H' : 'R')).join('')}\n`);
        lastReport = now;
        lastInstructions = n;
      }
      if (!anyRunnable) {
        await this.sleepUntilEvent();
        lastYield = Date.now();
        this.haltMs += lastYield - now;
      } else if (now - lastYield >= YIELD_MS || (now - lastYield >= COMPILE_YIELD_MS && (this.vcpus[0]?.cpu.wasm?.compiling ?? 0) > 0)) {
        await new Promise<void>((resolve) => setImmediate(resolve));
        lastYield = Date.now();
        this.yieldMs += lastYield - now;
      }
    }
    } finally {
      this.loopRunning = false;
      if (this.config.stats) {
        process.stderr.write(softEngineStats(this.vcpus.map((v) => v.cpu), Date.now() - runStart));
        process.stderr.write(`ringzero: stats: run loop: ${this.halts} sleeps with every vCPU halted, ${this.haltMs} ms; ${this.yieldMs} ms in event-loop turns\n`);
      }
    }
    return this.exit!;
  }

  // ---- pause, resume, snapshot, restore (both engines) ----

  /** The run loop stops here while paused: every vCPU is between instructions and guest time stands still. */
  private async park(): Promise<void> {
    this.clock.pause();
    this.loopParked = true;
    const notify = this.onParked;
    this.onParked = undefined;
    notify?.();
    await new Promise<void>((resolve) => { this.resumeLoop = resolve; });
    this.resumeLoop = undefined;
    this.loopParked = false;
  }

  get paused(): boolean {
    return this.pauseRequested;
  }

  /**
   * Stop every vCPU at an instruction boundary and the VM clock; resolves once nothing runs. Without a run loop in
   * progress the clock just stops.
   *
   * What the guest sees of the pause (suspend/resume through the control socket):
   * - soft engine: nothing. Every guest clock (TSC, PIT, LAPIC timer, ACPI PM timer, and the RTC, which counts from
   *   the VmClock too: src/devices/rtc.ts) derives from the VmClock, which stands still, so the guest carries on as if
   *   no time had passed: no jump, no soft-lockup warning, but its wall clock is then behind the host's by the paused
   *   time (as after a snapshot restore; resyncing it, e.g. by NTP, is the guest's business).
   * - KVM engine: the vCPUs wait outside KVM_RUN, but the guest TSC (and kvm-clock, which KVM derives from it) keeps
   *   running with the host, and the RTC follows the host too (the VmClock is not paused), so on resume every guest
   *   clock has jumped forward by the paused time together: consistent with each other, as a QEMU guest whose RTC
   *   follows host time (QEMU additionally freezes kvm-clock with KVM_SET_CLOCK; its TSC-based clocks still jump).
   */
  async pause(): Promise<void> {
    if (this.config.engine === 'kvm') {
      // KVM: the vCPUs are kicked out of KVM_RUN and wait (KvmCpus.pause); runOnKvm pauses them if they come later.
      this.pauseRequested = true;
      await this.kvmCpus?.pause();
      return;
    }
    if (this.pauseRequested) {
      if (this.loopRunning && !this.loopParked) await new Promise<void>((resolve) => { const prev = this.onParked; this.onParked = () => { prev?.(); resolve(); }; });
      return;
    }
    this.pauseRequested = true;
    if (this.loopRunning && !this.exit) {
      const parked = new Promise<void>((resolve) => { this.onParked = resolve; });
      for (const v of this.vcpus) v.cpu.stopRequested = true;
      this.kick();
      await parked;
    } else {
      this.clock.pause();
    }
  }

  /** Continue after pause(): guest time resumes where it stopped. */
  resume(): void {
    if (!this.pauseRequested) return;
    this.pauseRequested = false;
    if (this.config.engine === 'kvm') {
      this.kvmCpus?.resume();
      return;
    }
    for (const v of this.vcpus) v.cpu.stopRequested = false;
    this.clock.resume();
    this.resumeLoop?.();
  }

  /**
   * Save the VM to the snapshot directory `dir` (state.json + memory; see snapshot.ts). Pauses the VM for the
   * duration if it is running, and resumes it afterwards.
   */
  async snapshot(dir: string): Promise<SnapshotBody> {
    const wasPaused = this.pauseRequested;
    await this.pause();
    try {
      this.serial.flush();
      return writeSnapshot(dir, await this.snapshotState(), this.mem);
    } finally {
      if (!wasPaused) this.resume();
    }
  }

  /**
   * What a snapshot saves besides the memory image (paused: pause() first): saveState(), and on the soft engine the
   * hot-block list (src/cpu/soft/hot-list.ts), for a restore that asks to translate the guest's hot code again
   * (RestoreHotOptions) instead of starting on a cold translator. Only with RINGZERO_SNAPSHOT_HOT=1: listing costs
   * the snapshot's pause 10-143 ms (2048 blocks, load ~20), and a restore leaves the list unused unless asked, since in
   * a new process translating it cost the guest more than it gave (README "Snapshots").
   */
  async snapshotState(): Promise<Omit<SnapshotBody, 'memory'>> {
    const state = await this.saveState();
    if (process.env.RINGZERO_SNAPSHOT_HOT !== '1') return state;
    const t = performance.now();
    const hot = this.hotList();
    this.hotSaved = hot ? { blocks: hot.list.blocks, bytes: hot.list.data.length, ms: performance.now() - t } : undefined;
    return hot ? { ...state, hot: hot.list } : state;
  }

  /** What listing the hot blocks cost the last snapshot: blocks, base64 bytes, ms of the pause (undefined: none listed). */
  hotSaved: { blocks: number; bytes: number; ms: number } | undefined;

  /**
   * Everything but the memory image, on either engine, from a paused machine (pause() first). On KVM the vCPUs and
   * the in-kernel devices are read from the kernel (KvmCpus.saveState, which may let the guest run a moment if KVM
   * has an event in flight, and leaves it paused); the KVM VM must exist (run() in progress).
   */
  async saveState(): Promise<Omit<SnapshotBody, 'memory'>> {
    if (this.config.engine !== 'kvm') return this.captureState();
    const cpus = this.kvmCpus;
    if (!cpus) throw new Error(this.pendingKvmRestore ? 'the restored VM has not started running yet' : 'the VM is not running (no KVM VM exists before run())');
    return this.captureState(await cpus.saveState());
  }

  /**
   * Everything but the memory image, captured while paused: soft engine from its own objects; KVM from `kvm`
   * (KvmCpus.saveState's result: saveState() above gets it). Both engines write one shape: vCPUs in the engine-neutral
   * VcpuState, the 8259 pair, IOAPIC and PIT as the soft engine's device states (KVM's in-kernel ones converted), and
   * on KVM also the kernel's own structs (devices.kvm), which a KVM restore prefers.
   */
  captureState(kvm?: KvmSavedState): Omit<SnapshotBody, 'memory'> {
    if (this.config.engine === 'kvm' && !kvm) throw new Error('captureState on KVM needs the vCPU state: use saveState()');
    return {
      header: {
        ringzeroVersion: ringzeroVersion(), engine: this.config.engine, cpus: this.config.cpus,
        memorySize: this.mem.size, createdAt: new Date().toISOString(),
      },
      config: this.config,
      guestTimeNs: this.clock.now(),
      vcpus: kvm ? kvm.vcpus : this.vcpus.map((v) => saveSoftCpu(v.cpu, v.lapic, v.waitForSipi)),
      devices: {
        serial: this.serial.saveState(),
        rtc: this.rtc.saveState(),
        i8042: this.i8042.saveState(),
        acpiPm: this.acpiPm.saveState(),
        pci: this.pci.saveState(),
        pic: kvm ? kvm.devices.pic : this.pic?.saveState(),
        ioapic: kvm ? kvm.devices.ioapic : this.ioapic?.saveState(),
        pit: kvm ? kvm.devices.pit : this.pit?.saveState(),
        ...(kvm ? { kvm: kvm.kvm } : {}),
      },
    };
  }

  /**
   * A new Machine from the snapshot directory `dir`, ready to run(): guest RAM is the snapshot's memory image mapped
   * copy-on-write, every vCPU and device as saved, guest time continuing from the saved instant, the console `console`.
   * The engine is the one the VM's definition names (the one it was saved on) unless `engine` asks for the other: the
   * format is the same for both. On KVM the VM itself is created by run(), which loads the vCPUs and in-kernel
   * devices into it before the first KVM_RUN.
   * Throws SnapshotError (nothing built) for a damaged snapshot or one of another format version.
   */
  static restore(dir: string, console: ConsoleIo, options: MachineOptions & ReadSnapshotOptions & RestoreHotOptions & { controlSocket?: string; engine?: VmConfig['engine'] } = {}): Machine {
    const { body, memoryFile, diffs } = readSnapshot(dir, options);
    // The control socket belongs to the process, not the VM: the saved one was the path of the VMM that took the
    // snapshot, so the restored VM gets the one asked for now (or none).
    const { controlSocket: _saved, ...saved } = body.config;
    const engine = options.engine ?? (saved.engine === 'kvm' ? 'kvm' : 'soft');
    const config: VmConfig = { ...saved, engine, ...(options.controlSocket !== undefined ? { controlSocket: options.controlSocket } : {}) };
    if (body.vcpus.length !== config.cpus) throw new Error(`snapshot ${dir} has ${body.vcpus.length} vCPU states for ${config.cpus} vCPUs`);
    body.vcpus.forEach((s, i) => checkVcpuState(s, i));
    const machine = new Machine(config, console, { ...options, memoryFile });
    try {
      applyDiffLayers(machine.mem, diffs); // a diff snapshot: its chain of pages over the full base
      machine.applyState(body);
      const hot = options.hot ?? restoreHotMode();
      if (body.hot !== undefined && engine !== 'kvm' && hot !== 'off') machine.restoredHot = { list: body.hot, when: hot };
    } catch (error) {
      machine.close();
      throw error;
    }
    return machine;
  }

  /**
   * Soft engine: the translated blocks of this machine and the pages they lie in, for a migration's destination to
   * translate while the pre-copy goes on (src/cpu/soft/hot-list.ts); undefined when there are none (KVM, no translator).
   */
  hotList(max?: number): { list: HotList; pages: Uint8Array } | undefined {
    return this.config.engine === 'kvm' || this.vcpus.length === 0 ? undefined : exportHotList(this.vcpus[0].cpu, max);
  }

  /** A migration destination's translation of the source's hot blocks (pretranslate's report), once started. */
  pretranslated: PretranslateReport | undefined;

  /** A restored soft-engine VM: its snapshot's hot-block list and when to translate it, until pretranslateRestored takes it. */
  private restoredHot: { list: HotList; when: 'after' | 'before' } | undefined;

  /** Whether a restored VM's hot-block list waits to be translated before its guest runs (RestoreHotOptions 'before'). */
  get hotBeforeRun(): boolean {
    return this.restoredHot?.when === 'before';
  }

  /**
   * A restored VM: rebuild and translate its snapshot's hot blocks (pretranslate), `rest` as in PretranslateOptions
   * (run() starts this with the default, a third of the main thread, beside the guest; restoreVm may call it with 0
   * and wait before run()). Resolves with the report once every queued module is installed or given up; undefined
   * when there is no list (an older snapshot, KVM, already started).
   */
  pretranslateRestored(rest?: number): Promise<PretranslateReport> | undefined {
    const list = this.restoredHot?.list;
    this.restoredHot = undefined;
    if (list === undefined || this.vcpus.length === 0) return undefined;
    const t0 = performance.now();
    // (translated before the guest runs: its clock stands still meanwhile, as through the restore itself)
    const held = rest === 0 && !this.loopRunning;
    if (held) this.clock.pause();
    // (the modules compile in V8's background: nothing else may keep this process's event loop alive meanwhile)
    const alive = setInterval(() => {}, 1000);
    const max = process.env.RINGZERO_RESTORE_HOT_MAX !== undefined ? Number(process.env.RINGZERO_RESTORE_HOT_MAX) : undefined;
    return new Promise((resolve) => {
      const t = pretranslate(this.vcpus[0].cpu, list, (r) => {
        this.stopRestoredHot = undefined;
        clearInterval(alive);
        if (held) this.clock.resume();
        if (HOT_STATS) process.stderr.write(`ringzero: restore: hot blocks ${JSON.stringify({ ...r, ms: Math.round(r.ms * 10) / 10, wallMs: Math.round(performance.now() - t0), rest: rest ?? 2 })}\n`);
        resolve(r);
      }, { rest, max });
      this.pretranslated = t.report;
      this.stopRestoredHot = () => { t.stop(); clearInterval(alive); };
    });
  }

  /** Ends pretranslateRestored's work before its next step (close()). */
  private stopRestoredHot: (() => void) | undefined;

  /**
   * Soft engine: rebuild and translate the blocks of a source's hot list from this machine's memory (its pages must
   * have arrived; every page written into the memory afterwards must go through CodeCache.invalidateRange), in the
   * background. The state must then be applied with keepCode. Returns stop() (undefined: nothing to do here).
   */
  pretranslate(list: unknown, onDone?: (r: PretranslateReport) => void): (() => void) | undefined {
    if (this.config.engine === 'kvm' || this.vcpus.length === 0) return undefined;
    const t = pretranslate(this.vcpus[0].cpu, list, onDone);
    this.pretranslated = t.report;
    return t.stop;
  }

  /**
   * Load saved state into this freshly built machine (devices first, then the interrupt controllers, then vCPUs). On
   * KVM the vCPUs and in-kernel devices wait for run() to create the VM, and so does guest time: the VmClock stays at
   * the saved instant until they are loaded (kvm-clock and the TSC then continue from it together).
   */
  applyState(body: SnapshotBody, opts: { keepCode?: boolean } = {}): void {
    const d = body.devices;
    this.pci.checkState(d.pci);
    this.clock.pause();
    this.clock.set(body.guestTimeNs);
    if (this.config.engine === 'kvm') {
      this.serial.restoreState(d.serial);
      this.rtc.restoreState(d.rtc);
      this.i8042.restoreState(d.i8042);
      this.acpiPm.restoreState(d.acpiPm);
      this.pci.restoreState(d.pci);
      this.pendingKvmRestore = body;
      return;
    }
    // Devices drive their interrupt lines to the saved levels (the router counts follow); the controllers' own
    // state is loaded afterwards and overwrites whatever those edges did to them.
    this.serial.restoreState(d.serial);
    this.rtc.restoreState(d.rtc);
    this.i8042.restoreState(d.i8042);
    this.acpiPm.restoreState(d.acpiPm);
    this.pci.restoreState(d.pci);
    if (d.pit) this.pit?.restoreState(d.pit);
    if (d.ioapic) this.ioapic?.restoreState(d.ioapic);
    if (d.pic) this.pic?.restoreState(d.pic);
    body.vcpus.forEach((s, i) => {
      const v = this.vcpus[i];
      const { droppedMsrs } = restoreSoftCpu(v.cpu, s, opts);
      if (droppedMsrs.length > 0) process.stderr.write(`ringzero: restore: vCPU ${i}: MSRs not implemented here, dropped: ${droppedMsrs.map((m) => '0x' + m.toString(16)).join(' ')}\n`);
      v.waitForSipi = s.mpState === 'wait-for-sipi';
      if (s.lapic) v.lapic.restoreState(s.lapic, savedTscDeadline(v.cpu, s));
    });
    // The guest's clock stays at the saved instant until run() runs the guest (as on KVM, above): a migration's
    // destination restores the state before the source's "go" and a restore may do more before running it, and guest
    // time that passed meanwhile would be time the guest went without running: a jump of its clocks and overdue
    // timers at its first instruction (issue 7: it lengthened the interval across a switch-over by the "go" round
    // trip). RINGZERO_HOLD_CLOCK=0: the clock runs from here, as before session 24.
    if (HOLD_CLOCK) this.clockHeld = true;
    else this.clock.resume();
  }

  /** The instructions of the run loop's next slice (SLICE, less in a restored VM's first seconds: RESUME_SLICE_MS). */
  budget = SLICE;
  /** The least `budget` has been (tests). */
  minBudget = SLICE;

  /** applyState left the VmClock paused at the saved instant: run() starts it with the guest's first instruction. */
  private clockHeld = false;

  /** The kvm engine's run: create the VM, run every vCPU until requestExit(), close the VM (threads ended). */
  private async runOnKvm(): Promise<MachineExit> {
    const restoring = this.pendingKvmRestore;
    if (!this.boot && !restoring) throw new Error('loadKernel() must come before run()');
    const { KvmCpus } = await import('./kvm-machine.ts');
    const cpus = await KvmCpus.create({
      mem: this.mem, ports: this.ports, mmio: this.mmio, clock: this.clock as WatchedClock,
      router: this.router as KvmIrqRouter, cpus: this.config.cpus, virtioFunctions: this.virtio.functions,
      setMsiSink: (sink) => this.setMsiSink(sink), requestExit: (exit) => this.requestExit(exit),
    }, restoring ? undefined : this.boot, { device: this.options.kvmDevice, inlineBsp: this.options.kvmInlineBsp });
    if (restoring) {
      this.pendingKvmRestore = undefined;
      try {
        const d = restoring.devices;
        const reports = cpus.restoreState(restoring.vcpus, {
          kvm: d.kvm, guestTimeNs: restoring.guestTimeNs,
          devices: { ...(d.pic ? { pic: d.pic } : {}), ...(d.ioapic ? { ioapic: d.ioapic } : {}), ...(d.pit ? { pit: d.pit } : {}) },
        });
        reports.forEach((r, i) => {
          if (r.droppedMsrs.length > 0) process.stderr.write(`ringzero: restore: vCPU ${i}: MSRs KVM does not have here, dropped: ${r.droppedMsrs.map((m) => '0x' + m.toString(16)).join(' ')}\n`);
          for (const note of r.notes) process.stderr.write(`ringzero: restore: vCPU ${i}: ${note}\n`);
        });
      } catch (error) {
        await cpus.close();
        throw error;
      }
      this.clock.resume();
    }
    this.kvmCpus = cpus;
    try {
      if (this.exit) cpus.stop();
      else if (this.pauseRequested) void cpus.pause();
      await cpus.run();
    } finally {
      this.kvmCpus = undefined;
      await cpus.close();
    }
    return this.exit ?? { kind: 'error', message: 'the KVM vCPUs stopped without a reason' };
  }

  /**
   * All vCPUs are halted: sleep until the next timer deadline or a kick (an interrupt, console input, a virtio
   * notification, an exit, pause or shutdown request, or a timer armed from outside the loop: see the constructor).
   * Nothing else wakes an idle VM: the loop used to wake every second with nothing armed, which was most of the host
   * CPU of an idle guest once the guest itself stopped waking (src/vmm/config.ts).
   */
  private async sleepUntilEvent(): Promise<void> {
    if (this.vcpus.some((v) => !v.waitForSipi && v.cpu.eventPending)) return;
    // A timer already due (a device's look between slices, RINGZERO_NET_TX_POLL) runs now: a setTimeout of 0 would
    // wait at least a millisecond with the guest halted.
    // (a few in a row at most, so a timer that keeps re-arming itself in the past cannot keep the event loop out)
    if (this.dueWithoutSleep < 8 && this.clock.nextDeadline() <= this.clock.now()) {
      this.dueWithoutSleep++;
      this.clock.runDue();
      return;
    }
    this.dueWithoutSleep = 0;
    this.halts++;
    const deadline = this.clock.nextDeadline();
    // With nothing armed the timeout is the longest Node takes (~24.8 days): it keeps the event loop alive while the
    // loop awaits a kick, which a process with no other handle (an in-process test) would otherwise exit on.
    const waitMs = deadline === Infinity ? MAX_TIMEOUT_MS : Math.min(MAX_TIMEOUT_MS, Math.max(0, (deadline - this.clock.now()) / 1e6));
    this.sleepDeadline = deadline;
    await new Promise<void>((resolve) => {
      const t = setTimeout(() => { this.wakeUp = undefined; resolve(); }, waitMs);
      this.wakeUp = () => { clearTimeout(t); resolve(); };
    });
    this.sleepDeadline = Infinity;
    this.clock.runDue();
  }

  close(): void {
    // A run loop still in progress (a caller that gave up on it, e.g. a failed test) ends rather than waiting
    // forever parked or on its vCPU threads, which would keep the process alive.
    if (this.loopRunning || this.kvmCpus) this.requestExit({ kind: 'error', message: 'the machine was closed while running' });
    this.unsubscribeInput?.();
    // (no step of a restore's hot-block translation may read the RAM unmapped below)
    this.stopRestoredHot?.();
    this.virtio.close();
    this.mem.close();
  }
}

/** Put a software vCPU in the state the 64-bit boot protocol prescribes (boot.rst "64-bit BOOT PROTOCOL"). */
export function applyBootState(cpu: SoftCpu, b: BootState): void {
  cpu.cr0 = b.cr0;
  cpu.cr4 = b.cr4;
  cpu.cr3 = b.cr3;
  cpu.efer = b.efer;
  cpu.gdtrBase = b.gdtBase;
  cpu.gdtrLimit = b.gdtLimit;
  cpu.idtrBase = b.idtBase;
  cpu.idtrLimit = b.idtLimit;
  const load = (seg: number, s: SegmentState) => cpu.loadSegmentRaw(seg, s.selector, s.base, s.limit, s.accessRights);
  for (const seg of [C.ES, C.SS, C.DS, C.FS, C.GS]) load(seg, b.ds);
  load(C.CS, b.cs);
  cpu.trSel = b.tr.selector; cpu.trBase = b.tr.base; cpu.trLimit = b.tr.limit; cpu.trAttr = b.tr.accessRights;
  cpu.ldtrSel = b.ldtr.selector; cpu.ldtrBase = b.ldtr.base; cpu.ldtrLimit = b.ldtr.limit; cpu.ldtrAttr = b.ldtr.accessRights;
  cpu.setFlagsValue(b.rflags);
  cpu.gpr.fill(0);
  cpu.setReg64Num(6, b.rsi);
  cpu.setReg64Num(4, b.rsp);
  cpu.rip = b.entry64;
  cpu.updateMode();
  cpu.flushTlb(true);
}

function hexAddr(n: number): string {
  return n < 0 ? BigInt.asUintN(64, BigInt(n)).toString(16) : n.toString(16);
}
