// A PC-compatible virtual machine on the software engine: guest RAM, the legacy devices a stock kernel
// expects (COM1, RTC, PIT, i8042, the 8259 pair, IOAPIC, a LAPIC per vCPU, ACPI PM, PCI host bridge),
// the Linux boot protocol, and the run loop that shares this thread between the vCPUs and the event loop.
//
// The run loop: each runnable vCPU executes a slice of instructions in turn; between slices the VM clock's
// due timers fire (PIT, LAPIC timers, RTC) and, every few milliseconds, the loop yields to Node's event loop
// so console input and other I/O are handled. When every vCPU is halted, the loop sleeps until the next timer
// deadline or until a device raises an interrupt: an idle guest costs (almost) no host CPU.

import fs from 'node:fs';
import { GuestMemory } from '../memory/guest-memory.ts';
import { PortBus, MmioBus } from '../devices/bus.ts';
import { VmClock } from './clock.ts';
import type { VmConfig, ConsoleIo } from './config.ts';
import { loadLinux, type BootState, type SegmentState } from '../boot/linux.ts';
import { SoftCpu, RunExit } from '../cpu/soft/index.ts';
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

/** Instructions a vCPU runs before the loop looks at timers and the other vCPUs. */
const SLICE = 20_000;
/** How long the loop may keep the thread before letting Node handle I/O. */
const YIELD_MS = 8;

export type MachineExit = { kind: 'poweroff' } | { kind: 'reset' } | { kind: 'error'; message: string };

interface Vcpu {
  cpu: SoftCpu;
  lapic: Lapic;
  /** An AP waiting for its startup IPI (SDM vol. 3A §9.4.4: wait-for-SIPI). */
  waitForSipi: boolean;
}

export class Machine {
  readonly clock = new VmClock();
  readonly mem: GuestMemory;
  readonly ports = new PortBus();
  readonly mmio = new MmioBus();
  readonly apicBus = new ApicBus();
  readonly pic: DualPic;
  readonly ioapic: Ioapic;
  readonly router: IrqRouter;
  readonly serial: Serial16550;
  readonly vcpus: Vcpu[] = [];
  boot: BootState | undefined;

  private exit: MachineExit | undefined;
  private wakeUp: (() => void) | undefined;
  private unsubscribeInput: (() => void) | undefined;

  constructor(readonly config: VmConfig, private readonly console: ConsoleIo) {
    this.mem = new GuestMemory(config.memory);
    this.pic = new DualPic((level) => this.apicBus.setPicOutput(level));
    this.apicBus.setExtIntSource(this.pic);
    this.ioapic = new Ioapic(this.apicBus);
    this.apicBus.addEoiListener(this.ioapic);
    this.router = new IrqRouter(this.pic, this.ioapic);
    this.pic.register(this.ports);
    this.ioapic.register(this.mmio);

    this.serial = new Serial16550(this.router.line(COM1_IRQ), (bytes: Uint8Array) => this.console.write(bytes));
    this.serial.register(this.ports, COM1_BASE);
    this.unsubscribeInput = this.console.onInput((data) => {
      this.serial.receive(data);
      this.kick();
    });
    const reset = () => this.requestExit({ kind: 'reset' });
    new Rtc(this.clock, this.router.line(8), { memoryBytes: config.memory }).register(this.ports);
    new Pit(this.clock, this.router.line(0)).register(this.ports);
    new I8042(this.router.line(1), this.router.line(12), reset).register(this.ports);
    new DebugPort((bytes) => this.console.write(bytes)).register(this.ports);
    const sci = this.router.line(ACPI_SCI_IRQ);
    new AcpiPm({
      clock: this.clock,
      onPowerOff: () => this.requestExit({ kind: 'poweroff' }),
      onReset: reset,
      setSci: (level) => sci.set(level),
    }).register(this.ports, false);
    new PciHost({
      mmioBus: this.mmio, portBus: this.ports, router: this.router,
      deliverMsi: (address, data) => this.apicBus.deliverMsi(address, data), onReset: reset,
    }).register(this.ports, this.mmio);

    for (let i = 0; i < config.cpus; i++) this.addVcpu(i);
  }

  private addVcpu(index: number): void {
    const vcpu = {} as Vcpu;
    const lapic = new Lapic({
      clock: this.clock,
      bus: this.apicBus,
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
      cpuIndex: index, cpuCount: this.config.cpus,
    });
    cpu.onTripleFault = () => this.requestExit({ kind: 'reset' });
    vcpu.cpu = cpu;
    vcpu.lapic = lapic;
    vcpu.waitForSipi = index !== 0;
    this.vcpus.push(vcpu);
  }

  /** Load the kernel, initrd and command line, and put the boot vCPU at the 64-bit entry point. */
  loadKernel(): void {
    const kernel = fs.readFileSync(this.config.kernel);
    const initrd = this.config.initrd ? fs.readFileSync(this.config.initrd) : undefined;
    const boot = loadLinux(this.mem, kernel, initrd, this.config.cmdline, { cpus: this.config.cpus });
    this.boot = boot;
    applyBootState(this.vcpus[0].cpu, boot);
  }

  requestExit(exit: MachineExit): void {
    if (!this.exit) this.exit = exit;
    for (const v of this.vcpus) v.cpu.stopRequested = true;
    this.kick();
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
    const debug = process.env.RINGZERO_DEBUG ? Number(process.env.RINGZERO_DEBUG) || 1 : 0;
    let lastYield = Date.now();
    let lastReport = lastYield;
    let lastInstructions = 0;
    while (!this.exit) {
      let anyRunnable = false;
      for (const v of this.vcpus) {
        if (v.waitForSipi) continue;
        const cpu = v.cpu;
        const r = cpu.run(SLICE);
        if (r === RunExit.Shutdown) {
          this.requestExit({ kind: 'reset' });
          break;
        }
        if (!cpu.halted) anyRunnable = true;
        this.clock.runDue();
      }
      if (this.exit) break;
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
      } else if (now - lastYield >= YIELD_MS) {
        await new Promise<void>((resolve) => setImmediate(resolve));
        lastYield = Date.now();
      }
    }
    return this.exit!;
  }

  /** All vCPUs are halted: sleep until the next timer deadline or a kick. */
  private async sleepUntilEvent(): Promise<void> {
    if (this.vcpus.some((v) => !v.waitForSipi && v.cpu.eventPending)) return;
    const deadline = this.clock.nextDeadline();
    const waitMs = deadline === Infinity ? 1000 : Math.max(0, (deadline - this.clock.now()) / 1e6);
    await new Promise<void>((resolve) => {
      const t = setTimeout(() => { this.wakeUp = undefined; resolve(); }, Math.min(waitMs, 1000));
      this.wakeUp = () => { clearTimeout(t); resolve(); };
    });
    this.clock.runDue();
  }

  close(): void {
    this.unsubscribeInput?.();
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
  cpu.rlo.fill(0);
  cpu.rhi.fill(0);
  cpu.setReg64Num(6, b.rsi);
  cpu.setReg64Num(4, b.rsp);
  cpu.rip = b.entry64;
  cpu.updateMode();
  cpu.flushTlb(true);
}

function hexAddr(n: number): string {
  return n < 0 ? BigInt.asUintN(64, BigInt(n)).toString(16) : n.toString(16);
}
