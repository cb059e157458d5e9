// ACPI fixed hardware (ACPI 6.4 §4.8) of ringzero's PC, at the ports the FADT names:
//   PM1a_EVT_BLK 0x600: PM1_STS (16 bits, write 1 to clear) then PM1_EN (16 bits); the fixed power button
//                       (§4.8.2.2.1.1) is PWRBTN_STS/PWRBTN_EN there, pressed by the VMM (pressPowerButton)
//   PM1a_CNT_BLK 0x604: PM1_CNT (16 bits): SCI_EN, SLP_TYP, SLP_EN (writing it with \_S5's SLP_TYP powers off)
//   PM_TMR_BLK   0x608: the power-management timer, 32 bits at 3.579545 MHz, following the VM clock
// and the chipset reset control register at 0xCF9 (the FADT's RESET_REG: writing 0x06 resets).
// The guest can write anything to these ports; every value is handled without throwing.
import type { AccessSize, PortBus, PortDevice } from './bus.ts';
import type { Timer, VmClock } from '../vmm/clock.ts';
import {
  ACPI_PM1A_CNT_PORT, ACPI_PM1A_EVT_PORT, ACPI_PM1_CNT_LEN, ACPI_PM1_EVT_LEN, ACPI_PM_TMR_LEN, ACPI_PM_TMR_PORT,
  ACPI_RESET_PORT, ACPI_S5_SLP_TYP,
} from '../boot/platform.ts';

/** The PM timer's frequency (ACPI 6.4 §4.8.3.3): 3.579545 MHz. */
export const PM_TIMER_HZ = 3_579_545;

// PM1 status and enable bits (ACPI 6.4 §4.8.3.1.1 and §4.8.3.1.2, Tables 4.16 and 4.17).
export const TMR_STS = 1 << 0;
export const GBL_STS = 1 << 5;
export const PWRBTN_STS = 1 << 8;
export const SLPBTN_STS = 1 << 9;
export const RTC_STS = 1 << 10;
export const WAK_STS = 1 << 15;
/** Enable bits the OS can set in PM1_EN: TMR_EN, GBL_EN, PWRBTN_EN, SLPBTN_EN, RTC_EN, PCIEXP_WAKE_DIS. */
const PM1_EN_WRITABLE = TMR_STS | GBL_STS | PWRBTN_STS | SLPBTN_STS | RTC_STS | (1 << 14);
/** Status bits that raise an SCI when their enable bit is set. */
const SCI_SOURCES = TMR_STS | GBL_STS | PWRBTN_STS | SLPBTN_STS | RTC_STS;

// PM1 control bits (§4.8.3.2.1, Table 4.18).
export const SCI_EN = 1 << 0;
const BM_RLD = 1 << 1;
const SLP_TYP_SHIFT = 10;
const SLP_TYP_MASK = 0x7 << SLP_TYP_SHIFT;
export const SLP_EN = 1 << 13;

// Reset control register bits (as in the PIIX4/ICH RST_CNT register that lives at 0xCF9).
const RST_SYS_RST = 1 << 1; // selects a hard reset
const RST_CPU = 1 << 2; // writing 1 performs the reset
const RST_FULL = 1 << 3; // full reset (power cycle)

/**
 * TMR_STS is set whenever the counter's top bit changes (§4.8.3.3, TMR_VAL_EXT set: 32-bit counter,
 * so bit 31), i.e. every 2^31 ticks.
 */
const TIMER_CARRY_TICKS = 2 ** 31;

export interface AcpiPmOptions {
  /** Time base of the PM timer. */
  clock: VmClock;
  /** The guest asked for soft-off (S5): stop the VM. */
  onPowerOff: () => void;
  /** The guest wrote the reset value to the reset register: restart the VM. */
  onReset: () => void;
  /** Drive the SCI (ISA IRQ 9, level-triggered, active-high); called only when the level changes. */
  setSci?: (level: boolean) => void;
}

/** What a snapshot needs to bring the device back. */
export interface AcpiPmState {
  status: number;
  enable: number;
  control: number;
  resetControl: number;
  /** TMR_STS is set when the counter's carry epoch differs from this. */
  timerEpoch: number;
}

export class AcpiPm implements PortDevice {
  private status = 0;
  private enable = 0;
  /** PM1_CNT without SLP_EN (which reads as 0). SCI_EN is always 1: there is no SMI_CMD to leave legacy mode with. */
  private control = SCI_EN;
  private resetControl = 0;
  private timerEpoch = 0;
  private sciLevel = false;
  private readonly carryTimer: Timer;

  constructor(private readonly opts: AcpiPmOptions) {
    this.carryTimer = opts.clock.createTimer(() => this.updateSci());
    this.timerEpoch = this.currentEpoch();
  }

  /** Claim the PM1 event, PM1 control and PM timer blocks and the reset register. */
  /**
   * Claim the PM1 and timer ports, and the reset register unless `resetPort` is false (on a machine whose PCI
   * host decodes 0xCF9 itself as the PIIX/ICH reset control register, which is the same register).
   */
  register(bus: PortBus, resetPort = true): void {
    bus.register(ACPI_PM1A_EVT_PORT, ACPI_PM1_EVT_LEN, this, 'acpi-pm1-evt');
    bus.register(ACPI_PM1A_CNT_PORT, ACPI_PM1_CNT_LEN, this, 'acpi-pm1-cnt');
    bus.register(ACPI_PM_TMR_PORT, ACPI_PM_TMR_LEN, this, 'acpi-pm-timer');
    if (resetPort) bus.register(ACPI_RESET_PORT, 1, this, 'acpi-reset');
  }

  /** Power-on state (a VM reset). */
  reset(): void {
    this.status = 0;
    this.enable = 0;
    this.control = SCI_EN;
    this.resetControl = 0;
    this.timerEpoch = this.currentEpoch();
    this.updateSci();
  }

  /**
   * Press and release the fixed-feature power button (ACPI 6.4 §4.8.2.2.1.1, the FADT's PWR_BUTTON flag clear):
   * PWRBTN_STS is set and, when the OS has set PWRBTN_EN, the SCI is raised until the OS clears the status bit.
   * A press while the status is still set is the same single event (the bit is sticky). Returns whether the OS
   * listens to the button (PWRBTN_EN set), so the caller can tell that nothing will happen.
   */
  pressPowerButton(): boolean {
    this.status |= PWRBTN_STS;
    this.updateSci();
    return (this.enable & PWRBTN_STS) !== 0;
  }

  /** The PM timer's ticks since the VM started (not wrapped). */
  ticks(): number {
    const ns = this.opts.clock.now();
    // ns * 3579545 / 1e9 without leaving exact double arithmetic: whole seconds, then the remainder.
    const seconds = Math.floor(ns / 1e9);
    const rest = ns - seconds * 1e9;
    return seconds * PM_TIMER_HZ + Math.floor((rest * PM_TIMER_HZ) / 1e9);
  }

  /** The value of the 32-bit PM_TMR register. */
  counter(): number {
    return this.ticks() % 2 ** 32;
  }

  ioRead(port: number, size: AccessSize): number {
    let value = 0;
    const timer = port + size > ACPI_PM_TMR_PORT && port < ACPI_PM_TMR_PORT + ACPI_PM_TMR_LEN ? this.counter() : 0;
    for (let i = 0; i < size; i++) value |= this.readByte(port + i, timer) << (8 * i);
    return value >>> 0;
  }

  ioWrite(port: number, size: AccessSize, value: number): void {
    // Byte by byte, low byte first: a 16-bit PM1_CNT write sets SLP_TYP before acting on SLP_EN.
    for (let i = 0; i < size; i++) this.writeByte(port + i, (value >>> (8 * i)) & 0xff);
  }

  saveState(): AcpiPmState {
    return { status: this.status, enable: this.enable, control: this.control, resetControl: this.resetControl, timerEpoch: this.timerEpoch };
  }

  restoreState(s: AcpiPmState): void {
    this.status = s.status & 0xffff;
    this.enable = s.enable & PM1_EN_WRITABLE;
    this.control = (s.control & (BM_RLD | SLP_TYP_MASK)) | SCI_EN;
    this.resetControl = s.resetControl & (RST_SYS_RST | RST_FULL);
    this.timerEpoch = s.timerEpoch;
    this.updateSci();
  }

  private currentEpoch(): number {
    return Math.floor(this.ticks() / TIMER_CARRY_TICKS);
  }

  private statusValue(): number {
    return this.status | (this.currentEpoch() !== this.timerEpoch ? TMR_STS : 0);
  }

  private readByte(port: number, timer: number): number {
    const shiftFrom = (base: number) => 8 * (port - base);
    if (port === ACPI_PM1A_EVT_PORT || port === ACPI_PM1A_EVT_PORT + 1) return (this.statusValue() >> shiftFrom(ACPI_PM1A_EVT_PORT)) & 0xff;
    if (port === ACPI_PM1A_EVT_PORT + 2 || port === ACPI_PM1A_EVT_PORT + 3) return (this.enable >> shiftFrom(ACPI_PM1A_EVT_PORT + 2)) & 0xff;
    if (port === ACPI_PM1A_CNT_PORT || port === ACPI_PM1A_CNT_PORT + 1) return (this.control >> shiftFrom(ACPI_PM1A_CNT_PORT)) & 0xff;
    if (port >= ACPI_PM_TMR_PORT && port < ACPI_PM_TMR_PORT + ACPI_PM_TMR_LEN) return (timer >>> shiftFrom(ACPI_PM_TMR_PORT)) & 0xff;
    if (port === ACPI_RESET_PORT) return this.resetControl;
    return 0xff; // a multi-byte access that runs past our registers: nothing decodes those bytes
  }

  private writeByte(port: number, byte: number): void {
    if (port === ACPI_PM1A_EVT_PORT || port === ACPI_PM1A_EVT_PORT + 1) {
      const bits = byte << (8 * (port - ACPI_PM1A_EVT_PORT));
      if (bits & TMR_STS) this.timerEpoch = this.currentEpoch();
      this.status &= ~bits; // write 1 to clear
      this.updateSci();
    } else if (port === ACPI_PM1A_EVT_PORT + 2 || port === ACPI_PM1A_EVT_PORT + 3) {
      const shift = 8 * (port - ACPI_PM1A_EVT_PORT - 2);
      this.enable = ((this.enable & ~(0xff << shift)) | (byte << shift)) & PM1_EN_WRITABLE;
      this.updateSci();
    } else if (port === ACPI_PM1A_CNT_PORT) {
      // SCI_EN stays 1; GBL_RLS (bit 2) would signal firmware we do not have: ignored.
      this.control = (this.control & ~0xff) | (byte & BM_RLD) | SCI_EN;
    } else if (port === ACPI_PM1A_CNT_PORT + 1) {
      const bits = byte << 8;
      this.control = (this.control & 0xff) | (bits & SLP_TYP_MASK);
      if (bits & SLP_EN) this.enterSleep((bits & SLP_TYP_MASK) >> SLP_TYP_SHIFT);
    } else if (port === ACPI_RESET_PORT) {
      this.resetControl = byte & (RST_SYS_RST | RST_FULL);
      if (byte & RST_CPU) this.opts.onReset();
    }
    // The PM timer is read-only.
  }

  /** SLP_EN written: only S5 (soft-off) exists; other sleep types are not in the DSDT and do nothing. */
  private enterSleep(slpTyp: number): void {
    if (slpTyp === ACPI_S5_SLP_TYP) this.opts.onPowerOff();
  }

  /** Recompute the SCI level; keep a timer armed for the next TMR_STS edge when the OS wants its interrupt. */
  private updateSci(): void {
    const level = (this.control & SCI_EN) !== 0 && (this.statusValue() & this.enable & SCI_SOURCES) !== 0;
    if (level !== this.sciLevel) {
      this.sciLevel = level;
      this.opts.setSci?.(level);
    }
    const clock = this.opts.clock;
    if ((this.enable & TMR_STS) && !(this.statusValue() & TMR_STS)) {
      clock.arm(this.carryTimer, this.nsOfTick((this.timerEpoch + 1) * TIMER_CARRY_TICKS));
    } else {
      clock.disarm(this.carryTimer);
    }
  }

  /** The first guest nanosecond at which the tick count reaches `tick` (exact, via BigInt). */
  private nsOfTick(tick: number): number {
    const hz = BigInt(PM_TIMER_HZ);
    return Number((BigInt(tick) * 1_000_000_000n + hz - 1n) / hz);
  }
}
