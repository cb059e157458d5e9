// The 8254 programmable interval timer (Intel 82C54 data sheet) at ports 0x40-0x43, and the
// PC's system control port B at 0x61 (channel 2 gate, speaker enable, refresh toggle, OUT2).
// The counters run at 1.193182 MHz of VmClock time; nothing polls: counter values and outputs
// are computed from the time elapsed since the count was loaded, and channel 0's interrupts on
// IRQ0 are VmClock timers.
//
// Linux uses channel 0 for its early clock events (mode 2 periodic, mode 4 one-shot, mode 0 with
// count 0 to shut down) and channel 2, gated by port 0x61 bit 0, to calibrate the TSC:
// quick_pit_calibrate() reads the live MSB in mode 0 and pit_calibrate_tsc() polls OUT2 at
// port 0x61 bit 5 (arch/x86/kernel/tsc.c).
import type { AccessSize, PortBus, PortDevice } from './bus.ts';
import type { Timer, VmClock } from '../vmm/clock.ts';
import type { IrqLine } from './irq/router.ts';

export const PIT_HZ = 1_193_182;
const NS_PER_S = 1_000_000_000;
/** DRAM refresh request toggles port 0x61 bit 4 every 15.085 us on PC/AT-compatibles. */
const REFRESH_TOGGLE_NS = 15_085;
/** Closest spacing of channel 0 interrupts the VMM honours (a count of 1 would be 838 ns). */
const MIN_IRQ_INTERVAL_NS = 20_000;

/** Whole PIT ticks in `ns` nanoseconds, without losing precision on large values. */
export function nsToTicks(ns: number): number {
  const s = Math.floor(ns / NS_PER_S);
  return s * PIT_HZ + Math.floor(((ns - s * NS_PER_S) * PIT_HZ) / NS_PER_S);
}

/** The first nanosecond at which `ticks` have elapsed. */
export function ticksToNs(ticks: number): number {
  const s = Math.floor(ticks / PIT_HZ);
  return s * NS_PER_S + Math.ceil(((ticks - s * PIT_HZ) * NS_PER_S) / PIT_HZ);
}

class Channel {
  mode = 0;
  /** Access mode: 1 LSB only, 2 MSB only, 3 LSB then MSB. */
  rw = 3;
  bcd = false;
  /** Count as loaded (1..65536). */
  reload = 65536;
  /** Tick at which the count was loaded (or the gate triggered). */
  loadTick = 0;
  /** A count was written since the control word (counting can start). */
  counting = false;
  /** Modes 1 and 5 wait for a gate rising edge before counting. */
  triggered = false;
  gate: boolean;
  /** Elapsed ticks frozen while the gate inhibits counting. */
  frozenTicks = 0;
  nullCount = true;
  latchedCount: number | undefined;
  latchedStatus: number | undefined;
  readMsbNext = false;
  writeMsbNext = false;
  pendingLsb = 0;

  constructor(gate: boolean) {
    this.gate = gate;
  }

  /** Gate low stops counting in modes 0, 2, 3 and 4 (data sheet, "GATE" table). */
  inhibited(): boolean {
    return !this.gate && this.mode !== 1 && this.mode !== 5;
  }

  elapsed(nowTick: number): number {
    return this.inhibited() ? this.frozenTicks : nowTick - this.loadTick;
  }

  count(nowTick: number): number {
    if (!this.counting || ((this.mode === 1 || this.mode === 5) && !this.triggered)) return this.reload & 0xffff;
    const d = this.elapsed(nowTick);
    switch (this.mode) {
      case 2: return (this.reload - (d % this.reload)) & 0xffff;
      case 3: return (this.reload - ((2 * d) % this.reload)) & 0xffff;
      default: return (((this.reload - d) % 65536) + 65536) % 65536; // 0, 1, 4, 5 wrap after terminal count
    }
  }

  output(nowTick: number): boolean {
    if (!this.counting) return this.mode !== 0;
    if ((this.mode === 1 || this.mode === 5) && !this.triggered) return true;
    if ((this.mode === 2 || this.mode === 3) && !this.gate) return true;
    const d = this.elapsed(nowTick);
    switch (this.mode) {
      case 0: return d >= this.reload;
      case 1: return d >= this.reload;
      case 2: return d % this.reload !== this.reload - 1;
      case 3: return d % this.reload < (this.reload + 1) >> 1;
      default: return d !== this.reload; // 4, 5: one tick low at terminal count
    }
  }

  status(nowTick: number): number {
    return (this.output(nowTick) ? 0x80 : 0) | (this.nullCount ? 0x40 : 0) | (this.rw << 4) | (this.mode << 1) | (this.bcd ? 1 : 0);
  }
}

/** One 8254 counter, for snapshots (ticks are of the 1.193182 MHz PIT clock on VmClock time). */
export interface PitChannelState {
  mode: number; rw: number; bcd: boolean; reload: number; loadTick: number; counting: boolean; triggered: boolean;
  gate: boolean; frozenTicks: number; nullCount: boolean; latchedCount: number | null; latchedStatus: number | null;
  readMsbNext: boolean; writeMsbNext: boolean; pendingLsb: number;
}

export interface PitState {
  channels: PitChannelState[];
  portB: number;
  /** Channel 0's next interrupt, in VmClock ns (absent when none is due). */
  irqDeadlineNs?: number;
}

export class Pit implements PortDevice {
  private readonly channels = [new Channel(true), new Channel(true), new Channel(false)];
  private readonly timer: Timer;
  /** Port 0x61 bits 0-3 as written: ch2 gate, speaker data, parity and IOCHK check disables. */
  private portB = 0;

  constructor(private readonly clock: VmClock, private readonly irq0: IrqLine) {
    this.timer = clock.createTimer((now) => this.channel0Fired(now));
  }

  reset(): void {
    this.channels.splice(0, 3, new Channel(true), new Channel(true), new Channel(false));
    this.portB = 0;
    this.clock.disarm(this.timer);
  }

  saveState(): PitState {
    return {
      channels: this.channels.map((c) => ({
        mode: c.mode, rw: c.rw, bcd: c.bcd, reload: c.reload, loadTick: c.loadTick, counting: c.counting,
        triggered: c.triggered, gate: c.gate, frozenTicks: c.frozenTicks, nullCount: c.nullCount,
        latchedCount: c.latchedCount ?? null, latchedStatus: c.latchedStatus ?? null, readMsbNext: c.readMsbNext,
        writeMsbNext: c.writeMsbNext, pendingLsb: c.pendingLsb,
      })),
      portB: this.portB,
      ...(this.timer.armed ? { irqDeadlineNs: this.timer.deadline } : {}),
    };
  }

  /** Load the counters (the VmClock must already show the saved guest time) and re-arm channel 0's interrupt. */
  restoreState(s: PitState): void {
    if (!Array.isArray(s.channels) || s.channels.length !== 3) throw new RangeError('PIT state must have 3 channels');
    s.channels.forEach((saved, i) => {
      const c = this.channels[i];
      c.mode = saved.mode >= 0 && saved.mode <= 5 ? saved.mode | 0 : 0;
      c.rw = saved.rw >= 1 && saved.rw <= 3 ? saved.rw | 0 : 3;
      c.bcd = !!saved.bcd;
      c.reload = saved.reload >= 1 && saved.reload <= 65536 ? saved.reload | 0 : 65536;
      c.loadTick = Number(saved.loadTick) || 0;
      c.counting = !!saved.counting;
      c.triggered = !!saved.triggered;
      c.gate = i === 2 ? !!saved.gate : true;
      c.frozenTicks = Number(saved.frozenTicks) || 0;
      c.nullCount = !!saved.nullCount;
      c.latchedCount = saved.latchedCount === null ? undefined : saved.latchedCount & 0xffff;
      c.latchedStatus = saved.latchedStatus === null ? undefined : saved.latchedStatus & 0xff;
      c.readMsbNext = !!saved.readMsbNext;
      c.writeMsbNext = !!saved.writeMsbNext;
      c.pendingLsb = saved.pendingLsb & 0xff;
    });
    this.portB = s.portB & 0x0f;
    if (s.irqDeadlineNs !== undefined) this.clock.arm(this.timer, s.irqDeadlineNs);
    else this.clock.disarm(this.timer);
  }

  private nowTick(): number {
    return nsToTicks(this.clock.now());
  }

  // ---- channel 0 interrupts ----

  /** Tick of channel 0's next interrupt edge after `afterTick`, or undefined. */
  private nextIrqTick(afterTick: number): number | undefined {
    const c = this.channels[0];
    if (!c.counting || c.inhibited()) return undefined;
    switch (c.mode) {
      case 0:
      case 4: {
        // One interrupt, at terminal count.
        const t = c.loadTick + c.reload;
        return t > afterTick ? t : undefined;
      }
      case 2:
      case 3: {
        // One per period, where the output rises again.
        const k = Math.floor((afterTick - c.loadTick) / c.reload) + 1;
        return c.loadTick + Math.max(k, 1) * c.reload;
      }
      default:
        return undefined; // modes 1 and 5 need a gate edge, which channel 0 never gets
    }
  }

  private scheduleChannel0(afterTick: number): void {
    const next = this.nextIrqTick(afterTick);
    if (next === undefined) this.clock.disarm(this.timer);
    else this.clock.arm(this.timer, ticksToNs(next));
  }

  private channel0Fired(now: number): void {
    this.irq0.pulse();
    // Periods missed while the VMM was busy are dropped, and interrupts are spaced out.
    this.scheduleChannel0(Math.max(nsToTicks(now), nsToTicks(now + MIN_IRQ_INTERVAL_NS) - 1));
  }

  // ---- port 0x61 ----

  private setChannel2Gate(high: boolean): void {
    const c = this.channels[2];
    if (c.gate === high) return;
    const now = this.nowTick();
    if (high) {
      if (c.mode === 1 || c.mode === 5) {
        c.triggered = true; // rising edge (re)starts the count
        c.loadTick = now;
      } else if (c.mode === 2 || c.mode === 3) {
        c.loadTick = now; // rising edge reloads
      } else {
        c.loadTick = now - c.frozenTicks; // modes 0, 4: resume where it stopped
      }
      c.gate = true;
    } else {
      c.frozenTicks = now - c.loadTick;
      c.gate = false;
      if (c.mode === 2 || c.mode === 3) c.frozenTicks = 0;
    }
  }

  private readPortB(): number {
    const now = this.clock.now();
    const refresh = Math.floor(now / REFRESH_TOGGLE_NS) & 1;
    const out2 = this.channels[2].output(nsToTicks(now)) ? 1 : 0;
    return (this.portB & 0x0f) | (refresh << 4) | (out2 << 5);
  }

  // ---- 8254 registers ----

  private writeControl(value: number): void {
    const sel = value >> 6;
    if (sel === 3) {
      this.readBack(value);
      return;
    }
    const c = this.channels[sel];
    const rw = (value >> 4) & 3;
    if (rw === 0) {
      // Counter latch command: a second latch before the first is read is ignored.
      if (c.latchedCount === undefined) {
        c.latchedCount = c.count(this.nowTick());
        c.readMsbNext = false;
      }
      return;
    }
    let mode = (value >> 1) & 7;
    if (mode > 5) mode -= 4; // 6 and 7 are aliases of 2 and 3
    c.mode = mode;
    c.rw = rw;
    c.bcd = (value & 1) !== 0;
    c.counting = false;
    c.triggered = false;
    c.nullCount = true;
    c.readMsbNext = false;
    c.writeMsbNext = false;
    c.latchedCount = undefined;
    if (sel === 0) this.clock.disarm(this.timer);
  }

  /** Read-back command (82C54 only): bit 5 clear latches counts, bit 4 clear latches status. */
  private readBack(value: number): void {
    const now = this.nowTick();
    for (let i = 0; i < 3; i++) {
      if (!(value & (2 << i))) continue;
      const c = this.channels[i];
      if (!(value & 0x20) && c.latchedCount === undefined) {
        c.latchedCount = c.count(now);
        c.readMsbNext = false;
      }
      if (!(value & 0x10) && c.latchedStatus === undefined) c.latchedStatus = c.status(now);
    }
  }

  private writeCounter(index: number, value: number): void {
    const c = this.channels[index];
    let count: number;
    if (c.rw === 1) count = value;
    else if (c.rw === 2) count = value << 8;
    else if (!c.writeMsbNext) {
      c.pendingLsb = value;
      c.writeMsbNext = true;
      if (c.mode === 0) c.counting = false; // writing the first byte stops counting in mode 0
      return;
    } else {
      count = c.pendingLsb | (value << 8);
      c.writeMsbNext = false;
    }
    // A count of 0 means 65536 in binary (10000 in BCD, approximated as 65536 too).
    c.reload = count === 0 ? 65536 : count;
    c.loadTick = this.nowTick();
    c.frozenTicks = 0;
    c.counting = true;
    c.nullCount = false;
    if (c.mode === 1 || c.mode === 5) c.triggered = false;
    if (index === 0) this.scheduleChannel0(c.loadTick);
  }

  private readCounter(index: number): number {
    const c = this.channels[index];
    if (c.latchedStatus !== undefined) {
      const s = c.latchedStatus;
      c.latchedStatus = undefined;
      return s;
    }
    const latched = c.latchedCount !== undefined;
    const value = latched ? c.latchedCount! : c.count(this.nowTick());
    let byte: number;
    if (c.rw === 1) byte = value & 0xff;
    else if (c.rw === 2) byte = (value >> 8) & 0xff;
    else {
      byte = c.readMsbNext ? (value >> 8) & 0xff : value & 0xff;
      c.readMsbNext = !c.readMsbNext;
      if (c.readMsbNext) return byte; // latch stays until its MSB is read
    }
    if (latched) c.latchedCount = undefined;
    return byte;
  }

  ioRead(port: number, _size: AccessSize): number {
    if (port >= 0x40 && port <= 0x42) return this.readCounter(port - 0x40);
    if (port === 0x61) return this.readPortB();
    return 0xff; // the control word register cannot be read
  }

  ioWrite(port: number, _size: AccessSize, value: number): void {
    value &= 0xff;
    if (port >= 0x40 && port <= 0x42) this.writeCounter(port - 0x40, value);
    else if (port === 0x43) this.writeControl(value);
    else if (port === 0x61) {
      this.portB = value & 0x0f;
      this.setChannel2Gate((value & 1) !== 0);
    }
  }

  register(bus: PortBus): void {
    bus.register(0x40, 4, this, 'pit');
    bus.register(0x61, 1, this, 'port-b');
  }
}
