// The MC146818A real-time clock and its CMOS RAM (Motorola MC146818A data sheet), at index port
// 0x70 (bit 7 disables NMI) and data port 0x71, interrupting on ISA IRQ8.
//
// The clock shows host UTC at VM creation plus the VmClock time elapsed since, so it stands still
// while the VM is paused. When the guest sets the time, the difference is kept as an offset in
// whole seconds. Registers are computed on access from that time; nothing ticks. The periodic,
// alarm and update-ended interrupts are VmClock timers, armed only while the guest enables them.
//
// The memory size bytes follow the PC BIOS convention (as SeaBIOS and QEMU lay them out).
import type { AccessSize, PortBus, PortDevice } from './bus.ts';
import type { Timer, VmClock } from '../vmm/clock.ts';
import type { IrqLine } from './irq/router.ts';

export const RTC_IRQ = 8;

const NS_PER_S = 1_000_000_000;
const KiB = 1024, MiB = 1024 * KiB, GiB = 1024 * MiB;
/** RAM above this is mapped above 4 GiB (the PCI hole, as in GuestMemory). */
const DEFAULT_LOW_RAM_LIMIT = 3 * GiB;

// Register indices.
const SECONDS = 0x00, SECONDS_ALARM = 0x01, MINUTES = 0x02, MINUTES_ALARM = 0x03, HOURS = 0x04, HOURS_ALARM = 0x05;
const DAY_OF_WEEK = 0x06, DAY_OF_MONTH = 0x07, MONTH = 0x08, YEAR = 0x09;
const REG_A = 0x0a, REG_B = 0x0b, REG_C = 0x0c, REG_D = 0x0d;
/** Century byte of the PC (ACPI FADT "CENTURY" field points here). */
const CENTURY = 0x32;
const TIME_REGISTERS = [SECONDS, MINUTES, HOURS, DAY_OF_WEEK, DAY_OF_MONTH, MONTH, YEAR, CENTURY];

const A_UIP = 0x80;
/** Divider bits 6:4 = 010: 32.768 kHz time base, the only one that runs the clock. */
const A_DIVIDER_NORMAL = 0x20;
const B_SET = 0x80, B_PIE = 0x40, B_AIE = 0x20, B_UIE = 0x10, B_BINARY = 0x04, B_24H = 0x02;
const C_IRQF = 0x80, C_PF = 0x40, C_AF = 0x20, C_UF = 0x10;
const D_VRT = 0x80;
/** UIP rises this long before each update (data sheet: tBUC = 244 us). */
const UIP_LEAD_NS = 244_000;

export interface RtcOptions {
  /** Bytes of guest RAM, for the CMOS memory size fields. */
  memoryBytes: number;
  /** RAM below the 32-bit PCI hole; the rest is above 4 GiB. Default: min(memoryBytes, 3 GiB). */
  lowMemoryBytes?: number;
  /** Wall-clock time at VM creation, ms since the Unix epoch (UTC). Default: Date.now(). */
  startTimeMs?: number;
}

interface Fields { sec: number; min: number; hour: number; dow: number; day: number; month: number; year: number }

/**
 * The RTC for snapshots. The clock is kept as the wall time it showed at the save instant (`wallSeconds` whole
 * seconds since the epoch plus `wallFracNs`): after a restore it continues from there with guest time, so the
 * guest's RTC and its TSC/uptime stay consistent (the guest may resync wall time from the network, as after a suspend).
 */
export interface RtcState {
  cmos: string;
  index: number;
  nmiDisabled: boolean;
  wallSeconds: number;
  wallFracNs: number;
  irqLevel: boolean;
  /** Next periodic interrupt (VmClock ns) while one is armed. */
  periodicDeadlineNs?: number;
  /** Next update-ended/alarm check (VmClock ns) while one is armed. */
  secondDeadlineNs?: number;
}

export class Rtc implements PortDevice {
  private readonly cmos = new Uint8Array(128);
  private index = 0;
  private nmiDisabled = false;
  private baseSeconds: number;
  private baseFracNs: number;
  private offsetSeconds = 0;
  private irqLevel = false;
  private readonly periodicTimer: Timer;
  private readonly secondTimer: Timer;
  private periodicDeadline = 0;

  constructor(private readonly clock: VmClock, private readonly irq: IrqLine, opts: RtcOptions) {
    const startMs = opts.startTimeMs ?? Date.now();
    // Split so epoch nanoseconds never need more than 53 bits.
    this.baseSeconds = Math.floor(startMs / 1000);
    this.baseFracNs = (startMs - this.baseSeconds * 1000) * 1_000_000 - clock.now();
    this.periodicTimer = clock.createTimer((now) => this.periodicFired(now));
    this.secondTimer = clock.createTimer((now) => this.secondFired(now));
    this.cmos[REG_A] = A_DIVIDER_NORMAL | 0x06; // 1024 Hz periodic rate, as BIOSes leave it
    this.cmos[REG_B] = B_24H;
    this.cmos[REG_D] = D_VRT;
    this.fillMemorySize(opts.memoryBytes, opts.lowMemoryBytes ?? Math.min(opts.memoryBytes, DEFAULT_LOW_RAM_LIMIT));
  }

  saveState(): RtcState {
    const wall = this.now();
    return {
      cmos: Buffer.from(this.cmos).toString('base64'), index: this.index, nmiDisabled: this.nmiDisabled,
      wallSeconds: wall.seconds, wallFracNs: wall.fracNs, irqLevel: this.irqLevel,
      ...(this.periodicTimer.armed ? { periodicDeadlineNs: this.periodicDeadline } : {}),
      ...(this.secondTimer.armed ? { secondDeadlineNs: this.secondTimer.deadline } : {}),
    };
  }

  /** Load a saved RTC (the VmClock must already show the saved guest time). */
  restoreState(s: RtcState): void {
    const cmos = Buffer.from(s.cmos, 'base64');
    if (cmos.length !== this.cmos.length) throw new RangeError(`RTC CMOS image is ${cmos.length} bytes, not ${this.cmos.length}`);
    this.cmos.set(cmos);
    this.index = s.index & 0x7f;
    this.nmiDisabled = !!s.nmiDisabled;
    // now() = baseSeconds + offsetSeconds + floor((baseFracNs + clock) / 1e9): make it show the saved wall time now.
    this.offsetSeconds = 0;
    this.baseSeconds = Math.floor(s.wallSeconds);
    this.baseFracNs = Math.min(Math.max(Number(s.wallFracNs) || 0, 0), NS_PER_S - 1) - this.clock.now();
    this.clock.disarm(this.periodicTimer);
    this.clock.disarm(this.secondTimer);
    if (s.periodicDeadlineNs !== undefined) {
      this.periodicDeadline = s.periodicDeadlineNs;
      this.clock.arm(this.periodicTimer, Math.ceil(this.periodicDeadline));
    }
    if (s.secondDeadlineNs !== undefined) this.clock.arm(this.secondTimer, s.secondDeadlineNs);
    this.irqLevel = false;
    this.irq.set(false);
    this.updateIrq();
  }

  /** NMI disable bit of the last index write (port 0x70 bit 7). */
  get nmiMasked(): boolean {
    return this.nmiDisabled;
  }

  private fillMemorySize(total: number, low: number): void {
    const high = Math.max(0, total - low);
    const set16 = (at: number, v: number): void => { this.cmos[at] = v & 0xff; this.cmos[at + 1] = (v >> 8) & 0xff; };
    set16(0x15, 640); // base memory in KiB
    const extendedKiB = Math.min(0xffff, Math.max(0, Math.floor((low - MiB) / KiB)));
    set16(0x17, extendedKiB); // memory above 1 MiB in KiB
    set16(0x30, extendedKiB);
    const above16M = Math.min(0xffff, Math.max(0, Math.floor((low - 16 * MiB) / (64 * KiB))));
    set16(0x34, above16M); // memory above 16 MiB in 64 KiB units
    const above4G = Math.min(0xffffff, Math.floor(high / (64 * KiB)));
    this.cmos[0x5b] = above4G & 0xff; // memory above 4 GiB in 64 KiB units, 24 bits
    this.cmos[0x5c] = (above4G >> 8) & 0xff;
    this.cmos[0x5d] = (above4G >> 16) & 0xff;
  }

  // ---- time ----

  /** Current RTC time: whole seconds since the epoch and nanoseconds into the second. */
  private now(): { seconds: number; fracNs: number } {
    const total = this.baseFracNs + this.clock.now();
    const whole = Math.floor(total / NS_PER_S);
    return { seconds: this.baseSeconds + this.offsetSeconds + whole, fracNs: total - whole * NS_PER_S };
  }

  private fields(seconds: number): Fields {
    const d = new Date(seconds * 1000);
    return {
      sec: d.getUTCSeconds(), min: d.getUTCMinutes(), hour: d.getUTCHours(), dow: d.getUTCDay() + 1,
      day: d.getUTCDate(), month: d.getUTCMonth() + 1, year: d.getUTCFullYear(),
    };
  }

  private encode(value: number): number {
    return this.cmos[REG_B] & B_BINARY ? value : ((Math.floor(value / 10) % 10) << 4) | (value % 10);
  }

  private decode(raw: number): number {
    return this.cmos[REG_B] & B_BINARY ? raw : (raw >> 4) * 10 + (raw & 0x0f);
  }

  private encodeHour(hour: number): number {
    if (this.cmos[REG_B] & B_24H) return this.encode(hour);
    const h12 = hour % 12 === 0 ? 12 : hour % 12;
    return this.encode(h12) | (hour >= 12 ? 0x80 : 0);
  }

  private decodeHour(raw: number): number {
    if (this.cmos[REG_B] & B_24H) return this.decode(raw);
    const h = this.decode(raw & 0x7f) % 12;
    return raw & 0x80 ? h + 12 : h;
  }

  /** Time register bytes as the guest would read them now. */
  private timeRegisters(seconds: number): Map<number, number> {
    const f = this.fields(seconds);
    return new Map([
      [SECONDS, this.encode(f.sec)], [MINUTES, this.encode(f.min)], [HOURS, this.encodeHour(f.hour)],
      [DAY_OF_WEEK, this.encode(f.dow)], [DAY_OF_MONTH, this.encode(f.day)], [MONTH, this.encode(f.month)],
      [YEAR, this.encode(f.year % 100)], [CENTURY, this.encode(Math.floor(f.year / 100))],
    ]);
  }

  /** Take the time from register bytes (the guest set the clock). Nonsense dates are ignored. */
  private setTimeFrom(regs: Map<number, number>): void {
    const year = this.decode(regs.get(CENTURY)!) * 100 + this.decode(regs.get(YEAR)!);
    const ms = Date.UTC(year, this.decode(regs.get(MONTH)!) - 1, this.decode(regs.get(DAY_OF_MONTH)!),
      this.decodeHour(regs.get(HOURS)!), this.decode(regs.get(MINUTES)!), this.decode(regs.get(SECONDS)!));
    if (!Number.isFinite(ms)) return;
    this.offsetSeconds += Math.floor(ms / 1000) - this.now().seconds;
  }

  private latchTimeIntoCmos(): void {
    for (const [reg, v] of this.timeRegisters(this.now().seconds)) this.cmos[reg] = v;
  }

  // ---- interrupts ----

  private updateIrq(): void {
    const b = this.cmos[REG_B], c = this.cmos[REG_C] & (C_PF | C_AF | C_UF);
    const pending = ((c & C_PF) !== 0 && (b & B_PIE) !== 0) || ((c & C_AF) !== 0 && (b & B_AIE) !== 0) ||
      ((c & C_UF) !== 0 && (b & B_UIE) !== 0);
    this.cmos[REG_C] = c | (pending ? C_IRQF : 0);
    if (pending !== this.irqLevel) {
      this.irqLevel = pending;
      this.irq.set(pending);
    }
  }

  private clockRunning(): boolean {
    return (this.cmos[REG_A] & 0x70) === A_DIVIDER_NORMAL && !(this.cmos[REG_B] & B_SET);
  }

  /** Periodic interrupt period from rate bits 3:0 (data sheet table 5); rates 1 and 2 act as 8 and 9. */
  private periodicPeriodNs(): number {
    let rate = this.cmos[REG_A] & 0x0f;
    if (rate === 0 || (this.cmos[REG_A] & 0x70) !== A_DIVIDER_NORMAL) return 0;
    if (rate < 3) rate += 7;
    return ((1 << (rate - 1)) * NS_PER_S) / 32768;
  }

  private rearm(): void {
    const period = this.periodicPeriodNs();
    if (this.cmos[REG_B] & B_PIE && period > 0) {
      if (!this.periodicTimer.armed) {
        this.periodicDeadline = this.clock.now() + period;
        this.clock.arm(this.periodicTimer, Math.ceil(this.periodicDeadline));
      }
    } else {
      this.clock.disarm(this.periodicTimer);
    }
    if (this.cmos[REG_B] & (B_UIE | B_AIE) && this.clockRunning()) {
      this.clock.arm(this.secondTimer, this.clock.now() + (NS_PER_S - this.now().fracNs));
    } else {
      this.clock.disarm(this.secondTimer);
    }
  }

  private periodicFired(now: number): void {
    const period = this.periodicPeriodNs();
    if (period === 0) return;
    this.cmos[REG_C] |= C_PF;
    this.updateIrq();
    this.periodicDeadline += period;
    if (this.periodicDeadline <= now) this.periodicDeadline = now + period; // drop missed periods
    if (this.cmos[REG_B] & B_PIE) this.clock.arm(this.periodicTimer, Math.ceil(this.periodicDeadline));
  }

  /** An update cycle completed: update-ended flag, and the alarm check against the new time. */
  private secondFired(_now: number): void {
    if (!this.clockRunning()) return;
    this.cmos[REG_C] |= C_UF;
    const regs = this.timeRegisters(this.now().seconds);
    const matches = (alarm: number, reg: number): boolean => (alarm & 0xc0) === 0xc0 || alarm === regs.get(reg);
    if (matches(this.cmos[SECONDS_ALARM], SECONDS) && matches(this.cmos[MINUTES_ALARM], MINUTES) &&
      matches(this.cmos[HOURS_ALARM], HOURS)) {
      this.cmos[REG_C] |= C_AF;
    }
    this.updateIrq();
    this.rearm();
  }

  // ---- ports ----

  private readRegister(reg: number): number {
    if (TIME_REGISTERS.includes(reg)) {
      if (this.cmos[REG_B] & B_SET) return this.cmos[reg]; // frozen while the guest sets the clock
      return this.timeRegisters(this.now().seconds).get(reg)!;
    }
    switch (reg) {
      case REG_A: {
        const uip = this.clockRunning() && this.now().fracNs >= NS_PER_S - UIP_LEAD_NS ? A_UIP : 0;
        return (this.cmos[REG_A] & 0x7f) | uip;
      }
      case REG_C: {
        const c = this.cmos[REG_C];
        this.cmos[REG_C] = 0;
        this.updateIrq();
        return c;
      }
      default: return this.cmos[reg];
    }
  }

  private writeRegister(reg: number, value: number): void {
    if (TIME_REGISTERS.includes(reg)) {
      if (this.cmos[REG_B] & B_SET) {
        this.cmos[reg] = value;
      } else {
        const regs = this.timeRegisters(this.now().seconds);
        regs.set(reg, value);
        this.setTimeFrom(regs);
      }
      return;
    }
    switch (reg) {
      case REG_A: this.cmos[REG_A] = value & 0x7f; break;
      case REG_B: {
        const old = this.cmos[REG_B];
        if (value & B_SET) value &= ~B_UIE; // data sheet: SET clears UIE
        if (value & B_SET && !(old & B_SET)) this.latchTimeIntoCmos();
        if (!(value & B_SET) && old & B_SET) {
          // The held registers were written in the format in force while SET was on.
          this.cmos[REG_B] = (value & ~(B_SET | B_BINARY | B_24H)) | (old & (B_BINARY | B_24H));
          const regs = new Map(TIME_REGISTERS.map((r) => [r, this.cmos[r]]));
          this.setTimeFrom(regs);
        }
        this.cmos[REG_B] = value;
        this.updateIrq();
        break;
      }
      case REG_C: case REG_D: return; // read-only
      default: this.cmos[reg] = value; return;
    }
    this.rearm();
  }

  ioRead(port: number, _size: AccessSize): number {
    if (port === 0x71) return this.readRegister(this.index);
    return 0xff; // the index register is write-only
  }

  ioWrite(port: number, _size: AccessSize, value: number): void {
    value &= 0xff;
    if (port === 0x70) {
      this.index = value & 0x7f;
      this.nmiDisabled = (value & 0x80) !== 0;
    } else if (port === 0x71) {
      this.writeRegister(this.index, value);
    }
  }

  register(bus: PortBus): void {
    bus.register(0x70, 2, this, 'rtc');
  }
}
