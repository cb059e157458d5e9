// One vCPU's local APIC in xAPIC mode (Intel SDM vol. 3, ch. 11 "Advanced Programmable Interrupt
// Controller"): the 4 KiB register page at 0xFEE00000, interrupt acceptance and priority
// (IRR/ISR/TMR, TPR/PPR), EOI, IPIs through the ICR, the local vector table, and the timer.
//
// The CPU dispatches MMIO at the APIC base to the Lapic of the vCPU doing the access, asks
// `hasInterrupt()` when RFLAGS.IF=1 and runs `acknowledge()` as its INTA cycle.
//
// The timer counts the APIC bus clock, taken as 1 GHz (1 ns per tick before the divider, as KVM
// does), on VmClock time. Linux measures it against the PIT/HPET when no CPUID leaf tells it.
// TSC-deadline mode (SDM 11.5.4.1, LVT timer mode 10b): the vCPU's IA32_TSC_DEADLINE MSR (src/cpu/soft/system/msr.ts)
// arms a one-shot interrupt at a TSC value, which the MSR handler converts to VmClock ns. Linux uses it when CPUID
// offers it and then skips calibrate_APIC_clock (arch/x86/kernel/apic/apic.c), whose ~100 ms busy wait on the TSC it
// does otherwise under kvm-clock: kvmclock_init replaces the TSC calibration that would have set lapic_timer_period
// from CPUID leaf 15h.
import type { AccessSize, MmioDevice } from '../bus.ts';
import type { Timer, VmClock } from '../../vmm/clock.ts';
import { type ApicBus, DeliveryMode, type InterruptMessage } from './apic-bus.ts';

export const APIC_DEFAULT_BASE = 0xfee00000;
export const APIC_SIZE = 0x1000;

/** Version register: max LVT entry 5 (bits 23:16: timer, thermal, perf, LINT0, LINT1, error), version 0x14. */
const APIC_VERSION = 0x00050014;

/** IA32_APIC_BASE (MSR 0x1B) bits, SDM 11.4.4. */
const MSR_BSP = 0x100n;
const MSR_GLOBAL_ENABLE = 0x800n;
const MSR_BASE_MASK = 0xffffff000n;

const LVT_MASKED = 1 << 16;
const LVT_TIMER_PERIODIC = 1 << 17;
const LVT_TIMER_TSC_DEADLINE = 2 << 17;
const LVT_TIMER_MODE = 3 << 17;

/** LVT indices, in register order from 0x320 (CMCI at 0x2F0 is absent in this version). */
const LVT_TIMER = 0, LVT_THERMAL = 1, LVT_PERF = 2, LVT_LINT0 = 3, LVT_LINT1 = 4, LVT_ERROR = 5;
/** Writable bits per LVT entry (SDM figure 11-8); delivery status and remote IRR are read-only. */
const LVT_WRITABLE = [0x700ff, 0x107ff, 0x107ff, 0x1a7ff, 0x1a7ff, 0x100ff];

/** ESR bits (SDM 11.5.3). */
const ESR_SEND_ILLEGAL_VECTOR = 1 << 5;
const ESR_RECEIVE_ILLEGAL_VECTOR = 1 << 6;
const ESR_ILLEGAL_REGISTER = 1 << 7;

const SVR_ENABLE = 0x100;

/** ICR writable bits of the low dword: vector, delivery mode, destination mode, level, trigger, shorthand. */
const ICR_LOW_WRITABLE = 0xccfff;

/** Shortest periodic timer interval honoured, so a guest cannot make the VMM fire timers back to back. */
const MIN_PERIODIC_NS = 50_000;

/** Everything the LAPIC needs from its vCPU. */
export interface LapicHooks {
  /** An interrupt (or NMI) became pending: wake the vCPU if it is halted. */
  wake(): void;
  /** INIT IPI received: the vCPU enters wait-for-SIPI (the LAPIC has already reset itself). */
  init(): void;
  /** Startup IPI with its vector: a vCPU in wait-for-SIPI starts in real mode at vector << 12. */
  startup(vector: number): void;
}

export interface LapicOptions {
  clock: VmClock;
  bus: ApicBus;
  apicId: number;
  /** Bootstrap processor: sets IA32_APIC_BASE.BSP and leaves LINT0 in ExtINT (virtual wire) as firmware would. */
  bsp?: boolean;
  hooks: LapicHooks;
}

/**
 * A LAPIC for snapshots. `page` is the xAPIC register page's first KiB as KVM_GET_LAPIC's struct kvm_lapic_state
 * holds it (each 32-bit register at its MMIO offset, 0x390 the current count at the save instant), base64; the rest
 * is what the page cannot say: IA32_APIC_BASE, errors not yet latched into ESR, a pending NMI, and the timer's phase.
 */
export interface LapicState {
  apicBase: string;
  page: string;
  pendingErrors: number;
  nmiPending: boolean;
  /** Running timer: start of the current period and its length, in VmClock ns (absent when stopped). */
  timer?: { startNs: number; periodNs: number; deadlineNs: number };
}

/** Register offsets of the page image, in bytes. */
export const LAPIC_PAGE_BYTES = 0x400;

function highestBit(words: Uint32Array): number {
  for (let i = 7; i >= 0; i--) {
    const w = words[i];
    if (w !== 0) return i * 32 + 31 - Math.clz32(w);
  }
  return -1;
}

export class Lapic implements MmioDevice {
  readonly clock: VmClock;
  private readonly bus: ApicBus;
  private readonly hooks: LapicHooks;
  readonly bsp: boolean;

  private id: number;
  private apicBase: bigint;
  private tpr = 0;
  private ldr = 0;
  private dfr = 0xffffffff;
  private svr = 0xff;
  private readonly isr = new Uint32Array(8);
  private readonly tmr = new Uint32Array(8);
  private readonly irr = new Uint32Array(8);
  private esr = 0;
  private pendingErrors = 0;
  private icrLow = 0;
  private icrHigh = 0;
  private readonly lvt = new Uint32Array(6);
  private nmiPending = false;

  private timerInitial = 0;
  private timerDivideConfig = 0;
  private timerRunning = false;
  /** Start of the current timer period, in VmClock ns. */
  private timerStartNs = 0;
  private timerPeriodNs = 0;
  /** IA32_TSC_DEADLINE as last written in TSC-deadline mode (0: disarmed); cleared when it fires. */
  private tscDeadline = 0n;
  private readonly timer: Timer;
  /**
   * Register accesses through the xAPIC page (each one a slow access out of translated code on the soft engine),
   * EOI writes among them, and interrupts taken (INTA): the interrupt path's cost per I/O request (bench/io).
   */
  readonly counters = { reads: 0, writes: 0, eoiWrites: 0, acknowledged: 0 };

  constructor(opts: LapicOptions) {
    this.clock = opts.clock;
    this.bus = opts.bus;
    this.hooks = opts.hooks;
    this.id = opts.apicId & 0xff;
    this.bsp = opts.bsp ?? opts.apicId === 0;
    this.apicBase = BigInt(APIC_DEFAULT_BASE) | MSR_GLOBAL_ENABLE | (this.bsp ? MSR_BSP : 0n);
    this.timer = this.clock.createTimer((now) => this.timerFired(now));
    this.resetRegisters();
    this.setVirtualWire();
    this.bus.addLapic(this);
  }

  get apicId(): number {
    return this.id;
  }

  /** IA32_APIC_BASE[11]: the APIC decodes its MMIO page and takes interrupts. */
  get hardwareEnabled(): boolean {
    return (this.apicBase & MSR_GLOBAL_ENABLE) !== 0n;
  }

  get softwareEnabled(): boolean {
    return (this.svr & SVR_ENABLE) !== 0;
  }

  /** Guest physical base of the register page (IA32_APIC_BASE[35:12]). */
  get baseAddress(): number {
    return Number(this.apicBase & MSR_BASE_MASK);
  }

  /** Power-on/reset state (a VM reset): as after RESET, plus the firmware's virtual wire setup. */
  reset(): void {
    this.apicBase = BigInt(APIC_DEFAULT_BASE) | MSR_GLOBAL_ENABLE | (this.bsp ? MSR_BSP : 0n);
    this.resetRegisters();
    this.setVirtualWire();
  }

  /** SDM 11.4.7.1: state after RESET or INIT; the APIC ID and IA32_APIC_BASE are kept. */
  private resetRegisters(): void {
    this.tpr = 0;
    this.ldr = 0;
    this.dfr = 0xffffffff;
    this.svr = 0xff;
    this.isr.fill(0);
    this.tmr.fill(0);
    this.irr.fill(0);
    this.esr = 0;
    this.pendingErrors = 0;
    this.icrLow = 0;
    this.icrHigh = 0;
    this.lvt.fill(LVT_MASKED);
    this.nmiPending = false;
    this.timerInitial = 0;
    this.timerDivideConfig = 0;
    this.tscDeadline = 0n;
    this.stopTimer();
  }

  /**
   * The BIOS leaves the BSP in virtual wire mode (MP spec 3.6.2.2): LINT0 ExtINT for the 8259,
   * LINT1 NMI. A directly booted kernel expects the same (QEMU and Firecracker set it up too).
   */
  private setVirtualWire(): void {
    if (!this.bsp) return;
    this.lvt[LVT_LINT0] = DeliveryMode.ExtInt << 8;
    this.lvt[LVT_LINT1] = DeliveryMode.Nmi << 8;
  }

  // ---- IA32_APIC_BASE ----

  readApicBaseMsr(): bigint {
    return this.apicBase;
  }

  /** WRMSR 0x1B. x2APIC enable (bit 10) is not supported and ignored (the CPU should not advertise x2APIC). */
  writeApicBaseMsr(value: bigint): void {
    const wasEnabled = this.hardwareEnabled;
    this.apicBase = (value & (MSR_BASE_MASK | MSR_GLOBAL_ENABLE)) | (this.bsp ? MSR_BSP : 0n);
    if (wasEnabled && !this.hardwareEnabled) {
      // SDM 11.4.3: disabling through the MSR returns the APIC to its power-up state.
      this.resetRegisters();
    }
    if (this.acceptsExtInt() && this.bus.picOutput) this.hooks.wake();
  }

  // ---- what the CPU asks ----

  /** LINT0 takes the 8259's INT: a disabled APIC passes INTR straight through, else LINT0 must be unmasked ExtINT. */
  acceptsExtInt(): boolean {
    if (!this.hardwareEnabled) return true;
    return (this.lvt[LVT_LINT0] & (LVT_MASKED | 0x700)) === DeliveryMode.ExtInt << 8;
  }

  /** Called by the bus when the 8259 raised INT and this LAPIC takes it. */
  extIntRaised(): void {
    this.hooks.wake();
  }

  private processorPriority(): number {
    const isrv = highestBit(this.isr);
    const isrClass = isrv < 0 ? 0 : isrv & 0xf0;
    return (this.tpr & 0xf0) >= isrClass ? this.tpr & 0xff : isrClass;
  }

  /** A maskable interrupt is deliverable now (the CPU still checks RFLAGS.IF and interrupt shadows). */
  hasInterrupt(): boolean {
    if (this.bus.picOutput && this.acceptsExtInt()) return true;
    if (!this.hardwareEnabled) return false;
    const v = highestBit(this.irr);
    return v >= 0 && (v & 0xf0) > (this.processorPriority() & 0xf0);
  }

  /** INTA: the vector to take. Moves it from IRR to ISR, or runs the 8259's INTA for ExtINT. */
  acknowledge(): number {
    if (this.bus.picOutput && this.acceptsExtInt()) return this.bus.acknowledgeExtInt();
    const v = highestBit(this.irr);
    if (v < 0 || (v & 0xf0) <= (this.processorPriority() & 0xf0)) {
      // The interrupt was masked by TPR between INTR and INTA: spurious vector (SDM 11.9).
      return this.svr & 0xff;
    }
    this.irr[v >> 5] &= ~(1 << (v & 31));
    this.isr[v >> 5] |= 1 << (v & 31);
    this.counters.acknowledged++;
    return v;
  }

  hasNmi(): boolean {
    return this.nmiPending;
  }

  /** The CPU takes the pending NMI. */
  takeNmi(): boolean {
    const was = this.nmiPending;
    this.nmiPending = false;
    return was;
  }

  // ---- interrupt acceptance ----

  /** Messages from the bus (IOAPIC, MSI, IPIs). */
  receive(msg: InterruptMessage): void {
    switch (msg.deliveryMode) {
      case DeliveryMode.Fixed:
      case DeliveryMode.LowestPriority:
        if (this.hardwareEnabled) this.acceptInterrupt(msg.vector, msg.levelTriggered);
        break;
      case DeliveryMode.Nmi:
        if (this.hardwareEnabled) this.raiseNmi();
        break;
      case DeliveryMode.Init:
        this.resetRegisters();
        this.hooks.init();
        break;
      case DeliveryMode.Startup:
        this.hooks.startup(msg.vector & 0xff);
        break;
      default:
        // SMI has no handler here; ExtINT arrives through LINT0, never as a message.
        break;
    }
  }

  private raiseNmi(): void {
    this.nmiPending = true;
    this.hooks.wake();
  }

  /** Set a vector in IRR (SDM 11.8.4). Vectors 0-15 are illegal: they set an error instead. */
  private acceptInterrupt(vector: number, level: boolean): void {
    vector &= 0xff;
    if (vector < 16) {
      this.recordError(ESR_RECEIVE_ILLEGAL_VECTOR);
      return;
    }
    const w = vector >> 5, bit = 1 << (vector & 31);
    this.irr[w] |= bit;
    if (level) this.tmr[w] |= bit;
    else this.tmr[w] &= ~bit;
    this.hooks.wake();
  }

  /** A local interrupt source fires through its LVT entry. */
  private fireLvt(index: number): void {
    const entry = this.lvt[index];
    if (entry & LVT_MASKED || !this.hardwareEnabled) return;
    const mode = index === LVT_TIMER || index === LVT_ERROR ? DeliveryMode.Fixed : (entry >> 8) & 7;
    if (mode === DeliveryMode.Fixed) this.acceptInterrupt(entry & 0xff, false);
    else if (mode === DeliveryMode.Nmi) this.raiseNmi();
    // ExtINT on LINT0 is handled through acceptsExtInt(); SMI/INIT from LVTs are not modelled.
  }

  private recordError(bit: number): void {
    const fresh = (this.pendingErrors & bit) === 0;
    this.pendingErrors |= bit;
    if (fresh) this.fireLvt(LVT_ERROR);
  }

  /** Logical destination match (SDM 11.6.2.2): flat model ANDs the 8-bit masks, cluster model compares cluster IDs. */
  matchesLogical(dest: number): boolean {
    const logicalId = this.ldr >>> 24;
    if ((this.dfr >>> 28) === 0xf) return (logicalId & dest) !== 0;
    if (dest === 0xff) return true;
    return (logicalId >>> 4) === (dest >>> 4) && (logicalId & dest & 0x0f) !== 0;
  }

  // ---- timer ----

  private deadlineMode(): boolean {
    return (this.lvt[LVT_TIMER] & LVT_TIMER_MODE) === LVT_TIMER_TSC_DEADLINE;
  }

  /** RDMSR IA32_TSC_DEADLINE: the armed deadline, 0 when disarmed, fired or not in TSC-deadline mode. */
  readTscDeadline(): bigint {
    return this.deadlineMode() ? this.tscDeadline : 0n;
  }

  /**
   * WRMSR IA32_TSC_DEADLINE (SDM 11.5.4.1): in TSC-deadline mode a non-zero `tsc` arms the timer for the VmClock
   * instant `deadlineNs` (the caller's conversion with its vCPU's TSC; a past one fires at the next look at the
   * timers), 0 disarms it; outside that mode the write is ignored.
   */
  writeTscDeadline(tsc: bigint, deadlineNs: number): void {
    if (!this.deadlineMode()) return;
    this.stopTimer();
    this.tscDeadline = tsc;
    if (tsc === 0n) return;
    this.timerRunning = true;
    this.clock.arm(this.timer, Math.max(deadlineNs, this.clock.now()));
  }

  private timerDivisor(): number {
    // SDM figure 11-10: bits 3,1,0; 0b111 is divide by 1, else 2^(value+1).
    const v = ((this.timerDivideConfig & 8) >> 1) | (this.timerDivideConfig & 3);
    return 1 << ((v + 1) & 7);
  }

  private stopTimer(): void {
    this.timerRunning = false;
    this.clock.disarm(this.timer);
  }

  private startTimer(): void {
    this.stopTimer();
    if (this.timerInitial === 0) return;
    const mode = this.lvt[LVT_TIMER] & LVT_TIMER_MODE;
    if (mode !== 0 && mode !== LVT_TIMER_PERIODIC) return; // TSC-deadline is not offered
    this.timerPeriodNs = this.timerInitial * this.timerDivisor();
    this.timerStartNs = this.clock.now();
    this.timerRunning = true;
    const firstDeadline = this.timerStartNs + this.timerPeriodNs;
    this.clock.arm(this.timer, firstDeadline);
  }

  private timerFired(now: number): void {
    if (!this.timerRunning) return;
    if (this.deadlineMode()) {
      // (the deadline disarms itself when it fires: the MSR reads 0 again)
      this.tscDeadline = 0n;
      this.timerRunning = false;
    } else if ((this.lvt[LVT_TIMER] & LVT_TIMER_MODE) === LVT_TIMER_PERIODIC) {
      const period = Math.max(this.timerPeriodNs, MIN_PERIODIC_NS);
      // Next period starts at the deadline just passed; periods missed while the VMM was busy
      // are dropped rather than fired back to back.
      let start = this.timerStartNs + period;
      if (start + period <= now) start += Math.floor((now - start) / period) * period;
      this.timerStartNs = start;
      this.clock.arm(this.timer, start + period);
    } else {
      this.timerRunning = false;
    }
    this.fireLvt(LVT_TIMER);
  }

  private timerCurrentCount(): number {
    // (the current count reads 0 in TSC-deadline mode: SDM 11.5.4.1)
    if (!this.timerRunning || this.deadlineMode()) return 0;
    const ticks = Math.floor((this.clock.now() - this.timerStartNs) / this.timerDivisor());
    if ((this.lvt[LVT_TIMER] & LVT_TIMER_MODE) === LVT_TIMER_PERIODIC) {
      return this.timerInitial - (ticks % this.timerInitial);
    }
    return ticks >= this.timerInitial ? 0 : this.timerInitial - ticks;
  }

  // ---- registers ----

  private readRegister(reg: number): number {
    switch (reg) {
      case 0x020: return (this.id << 24) >>> 0;
      case 0x030: return APIC_VERSION;
      case 0x080: return this.tpr;
      case 0x090: return 0; // APR
      case 0x0a0: return this.processorPriority();
      case 0x0b0: return 0; // EOI is write-only
      case 0x0c0: return 0; // remote read
      case 0x0d0: return this.ldr;
      case 0x0e0: return this.dfr;
      case 0x0f0: return this.svr;
      case 0x280: return this.esr;
      case 0x300: return this.icrLow;
      case 0x310: return this.icrHigh;
      case 0x380: return this.timerInitial;
      case 0x390: return this.timerCurrentCount();
      case 0x3e0: return this.timerDivideConfig;
    }
    if (reg >= 0x100 && reg < 0x180) return this.isr[(reg - 0x100) >> 4];
    if (reg >= 0x180 && reg < 0x200) return this.tmr[(reg - 0x180) >> 4];
    if (reg >= 0x200 && reg < 0x280) return this.irr[(reg - 0x200) >> 4];
    if (reg >= 0x320 && reg < 0x380) return this.lvt[(reg - 0x320) >> 4];
    this.recordError(ESR_ILLEGAL_REGISTER);
    return 0;
  }

  private writeRegister(reg: number, value: number): void {
    value >>>= 0;
    switch (reg) {
      case 0x020: this.id = value >>> 24; return;
      // A lower TPR, or an EOI (a lower PPR), may unmask a vector waiting in IRR: that is an interrupt becoming
      // pending as much as a new one, and the CPU is told so too (the wasm translator's inline STI relies on it).
      case 0x080: this.tpr = value & 0xff; if (this.hasInterrupt()) this.hooks.wake(); return;
      case 0x0b0: this.eoi(); if (this.hasInterrupt()) this.hooks.wake(); return;
      case 0x0d0: this.ldr = (value & 0xff000000) >>> 0; return;
      case 0x0e0: this.dfr = (value | 0x0fffffff) >>> 0; return;
      case 0x0f0: this.writeSvr(value); return;
      case 0x280: // writing the ESR latches the errors seen since the last write (SDM 11.5.3)
        this.esr = this.pendingErrors;
        this.pendingErrors = 0;
        return;
      case 0x300:
        this.icrLow = value & ICR_LOW_WRITABLE;
        this.sendIpi();
        return;
      case 0x310: this.icrHigh = (value & 0xff000000) >>> 0; return;
      case 0x380:
        // (TSC-deadline mode ignores writes to the initial count: SDM 11.5.4.1)
        if (this.deadlineMode()) return;
        this.timerInitial = value;
        this.startTimer();
        return;
      case 0x3e0: this.timerDivideConfig = value & 0xb; return;
    }
    if (reg >= 0x320 && reg < 0x380) {
      this.writeLvt((reg - 0x320) >> 4, value);
      return;
    }
    // Read-only registers (ID is writable above; version, PPR, ISR, TMR, IRR, current count) ignore writes.
    const readOnly = reg === 0x030 || reg === 0x090 || reg === 0x0a0 || reg === 0x0c0 || reg === 0x390 ||
      (reg >= 0x100 && reg < 0x280);
    if (!readOnly) this.recordError(ESR_ILLEGAL_REGISTER);
  }

  private writeSvr(value: number): void {
    const wasEnabled = this.softwareEnabled;
    this.svr = value & 0x3ff;
    if (wasEnabled && !this.softwareEnabled) {
      // SDM 11.4.7.2: software disable masks every LVT entry.
      for (let i = 0; i < this.lvt.length; i++) this.lvt[i] |= LVT_MASKED;
    }
  }

  private writeLvt(index: number, value: number): void {
    let entry = value & LVT_WRITABLE[index];
    if (!this.softwareEnabled) entry |= LVT_MASKED; // masks cannot be cleared while software-disabled
    const old = this.lvt[index];
    this.lvt[index] = entry;
    if (index === LVT_TIMER && (old & LVT_TIMER_MODE) !== (entry & LVT_TIMER_MODE)) {
      // A mode change stops the timer (as KVM does): the guest rewrites the initial count next. Entering or leaving
      // TSC-deadline mode disarms IA32_TSC_DEADLINE (SDM 11.5.4.1).
      this.timerInitial = 0;
      this.tscDeadline = 0n;
      this.stopTimer();
    }
    if (index === LVT_LINT0 && this.bus.picOutput && this.acceptsExtInt()) this.hooks.wake();
  }

  private eoi(): void {
    const v = highestBit(this.isr);
    if (v < 0) return;
    const w = v >> 5, bit = 1 << (v & 31);
    this.isr[w] &= ~bit;
    if (this.tmr[w] & bit) {
      this.tmr[w] &= ~bit;
      this.bus.broadcastEoi(v);
    }
  }

  private sendIpi(): void {
    const low = this.icrLow;
    const mode = (low >> 8) & 7;
    const level = (low & 0x8000) !== 0;
    const assert = (low & 0x4000) !== 0;
    // INIT level de-assert (SDM 11.6.1) only resynchronises arbitration IDs: nothing to do.
    if (mode === DeliveryMode.Init && level && !assert) return;
    const vector = low & 0xff;
    if ((mode === DeliveryMode.Fixed || mode === DeliveryMode.LowestPriority) && vector < 16) {
      this.recordError(ESR_SEND_ILLEGAL_VECTOR);
      return;
    }
    this.bus.sendIpi(this, {
      vector,
      deliveryMode: mode,
      logical: (low & 0x800) !== 0,
      destination: this.icrHigh >>> 24,
      levelTriggered: false, // an IPI is an edge; the trigger bit only qualifies INIT (SDM 11.6.1)
    }, (low >> 18) & 3);
  }

  mmioRead(offset: number, size: AccessSize): number {
    this.counters.reads++;
    offset &= 0xfff;
    const within = offset & 0xf;
    if (within >= 4) return 0;
    const value = this.readRegister(offset & 0xff0) >>> (within * 8);
    return size === 4 ? value >>> 0 : value & (size === 1 ? 0xff : 0xffff);
  }

  mmioWrite(offset: number, size: AccessSize, value: number): void {
    this.counters.writes++;
    if (offset === 0x0b0) this.counters.eoiWrites++;
    offset &= 0xfff;
    // Registers are 32 bits wide at 16-byte strides; narrower or misaligned writes are undefined (SDM 11.4.1): dropped.
    if (size !== 4 || (offset & 0xf) !== 0) return;
    this.writeRegister(offset, value);
  }

  // ---- snapshots ----

  saveState(): LapicState {
    const page = new Uint8Array(LAPIC_PAGE_BYTES);
    const view = new DataView(page.buffer);
    const put = (reg: number, v: number) => view.setUint32(reg, v >>> 0, true);
    put(0x020, (this.id << 24) >>> 0);
    put(0x030, APIC_VERSION);
    put(0x080, this.tpr);
    put(0x0a0, this.processorPriority());
    put(0x0d0, this.ldr);
    put(0x0e0, this.dfr);
    put(0x0f0, this.svr);
    for (let i = 0; i < 8; i++) {
      put(0x100 + 16 * i, this.isr[i]);
      put(0x180 + 16 * i, this.tmr[i]);
      put(0x200 + 16 * i, this.irr[i]);
    }
    put(0x280, this.esr);
    put(0x300, this.icrLow);
    put(0x310, this.icrHigh);
    for (let i = 0; i < 6; i++) put(0x320 + 16 * i, this.lvt[i]);
    put(0x380, this.timerInitial);
    put(0x390, this.timerCurrentCount());
    put(0x3e0, this.timerDivideConfig);
    return {
      apicBase: '0x' + this.apicBase.toString(16),
      page: Buffer.from(page).toString('base64'),
      pendingErrors: this.pendingErrors,
      nmiPending: this.nmiPending,
      ...(this.timerRunning && !this.deadlineMode() ? { timer: { startNs: this.timerStartNs, periodNs: this.timerPeriodNs, deadlineNs: this.timer.deadline } } : {}),
    };
  }

  /**
   * Load a saved LAPIC (the VmClock must already show the saved guest time). A page from another engine without the
   * timer's phase gets it from the current count. In TSC-deadline mode the timer is `tscDeadline` (the vCPU's saved
   * IA32_TSC_DEADLINE and its VmClock instant), if armed.
   */
  restoreState(s: LapicState, tscDeadline?: { tsc: bigint; ns: number }): void {
    const page = Buffer.from(s.page, 'base64');
    if (page.length !== LAPIC_PAGE_BYTES) throw new RangeError(`LAPIC page image is ${page.length} bytes, not ${LAPIC_PAGE_BYTES}`);
    const view = new DataView(page.buffer, page.byteOffset, page.length);
    const get = (reg: number) => view.getUint32(reg, true);
    this.apicBase = (BigInt(s.apicBase) & (MSR_BASE_MASK | MSR_GLOBAL_ENABLE)) | (this.bsp ? MSR_BSP : 0n);
    this.id = get(0x020) >>> 24;
    this.tpr = get(0x080) & 0xff;
    this.ldr = (get(0x0d0) & 0xff000000) >>> 0;
    this.dfr = (get(0x0e0) | 0x0fffffff) >>> 0;
    this.svr = get(0x0f0) & 0x3ff;
    for (let i = 0; i < 8; i++) {
      this.isr[i] = get(0x100 + 16 * i);
      this.tmr[i] = get(0x180 + 16 * i);
      this.irr[i] = get(0x200 + 16 * i);
    }
    this.esr = get(0x280) & 0xff;
    this.pendingErrors = s.pendingErrors & 0xff;
    this.icrLow = get(0x300) & ICR_LOW_WRITABLE;
    this.icrHigh = (get(0x310) & 0xff000000) >>> 0;
    for (let i = 0; i < 6; i++) this.lvt[i] = get(0x320 + 16 * i) & (LVT_WRITABLE[i] | 0x1000 | 0x4000);
    this.timerInitial = get(0x380);
    this.timerDivideConfig = get(0x3e0) & 0xb;
    this.nmiPending = !!s.nmiPending;
    this.stopTimer();
    this.tscDeadline = 0n;
    const current = get(0x390);
    if (this.deadlineMode()) {
      // (both engines carry IA32_TSC_DEADLINE among the vCPU's MSRs: the caller converts it with the restored TSC)
      if (tscDeadline !== undefined) this.writeTscDeadline(tscDeadline.tsc, tscDeadline.ns);
    } else if (s.timer) {
      this.timerStartNs = s.timer.startNs;
      this.timerPeriodNs = s.timer.periodNs;
      this.timerRunning = true;
      this.clock.arm(this.timer, s.timer.deadlineNs);
    } else if (this.timerInitial !== 0 && current !== 0) {
      const now = this.clock.now();
      this.timerPeriodNs = this.timerInitial * this.timerDivisor();
      this.timerStartNs = now - (this.timerInitial - current) * this.timerDivisor();
      this.timerRunning = true;
      this.clock.arm(this.timer, this.timerStartNs + this.timerPeriodNs);
    }
    if (this.nmiPending || this.hasInterrupt()) this.hooks.wake();
  }

  /** Test/debug: vectors pending in IRR and in service in ISR. */
  pendingVectors(): { irr: number[]; isr: number[] } {
    const list = (a: Uint32Array): number[] => {
      const out: number[] = [];
      for (let v = 0; v < 256; v++) if (a[v >> 5] & (1 << (v & 31))) out.push(v);
      return out;
    };
    return { irr: list(this.irr), isr: list(this.isr) };
  }
}
