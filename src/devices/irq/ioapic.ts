// The I/O APIC (Intel 82093AA data sheet): 24 input pins, each with a 64-bit redirection entry
// that turns an input into an interrupt message on the APIC bus. Registers are reached
// indirectly: IOREGSEL at offset 0x00 selects one, IOWIN at 0x10 reads or writes it.
//
// Pins are driven with the *asserted* state (`setPin(pin, true)` = the device requests). The
// polarity bit of an entry is kept for the guest to read back but does not invert the input: the
// VMM's devices never model wire polarity, so whatever the MADT/_PRT told the guest, an asserted
// input interrupts.
import type { MmioBus, MmioDevice, AccessSize } from '../bus.ts';
import { type ApicBus, DeliveryMode } from './apic-bus.ts';

export const IOAPIC_BASE = 0xfec00000;
export const IOAPIC_SIZE = 0x1000;
export const IOAPIC_PINS = 24;

/** 82093AA version register: max redirection entry 23 (bits 23:16), version 0x11. */
const IOAPIC_VERSION = ((IOAPIC_PINS - 1) << 16) | 0x11;

const REDIR_VECTOR = 0xff;
const REDIR_DELIVERY_MODE = 0x700;
const REDIR_LOGICAL = 1 << 11;
const REDIR_REMOTE_IRR = 1 << 14;
const REDIR_LEVEL = 1 << 15;
const REDIR_MASKED = 1 << 16;
/** Bits the guest may write in the low dword: all but delivery status (12) and remote IRR (14). */
const REDIR_LOW_WRITABLE = 0x1afff;

/** The IOAPIC's registers, for snapshots: redirection entries as 24 low and 24 high dwords (82093AA layout). */
export interface IoapicState {
  id: number;
  select: number;
  redirectionLow: number[];
  redirectionHigh: number[];
  /** Asserted input pins, one bit per pin. */
  asserted: number;
}

export class Ioapic implements MmioDevice {
  private id = 0;
  private select = 0;
  private readonly low = new Uint32Array(IOAPIC_PINS).fill(REDIR_MASKED);
  private readonly high = new Uint32Array(IOAPIC_PINS);
  /** Asserted inputs, one bit per pin. */
  private asserted = 0;

  constructor(private readonly bus: ApicBus) {
    bus.addEoiListener(this);
  }

  reset(): void {
    this.id = 0;
    this.select = 0;
    this.low.fill(REDIR_MASKED);
    this.high.fill(0);
  }

  saveState(): IoapicState {
    return { id: this.id, select: this.select, redirectionLow: Array.from(this.low), redirectionHigh: Array.from(this.high), asserted: this.asserted };
  }

  /** Load the registers as saved (remote IRR included); nothing is delivered. */
  restoreState(s: IoapicState): void {
    this.id = s.id & 0x0f;
    this.select = s.select & 0xff;
    for (let pin = 0; pin < IOAPIC_PINS; pin++) {
      this.low[pin] = (s.redirectionLow[pin] ?? REDIR_MASKED) >>> 0;
      this.high[pin] = (s.redirectionHigh[pin] ?? 0) & 0xff000000;
    }
    this.asserted = (s.asserted & ((1 << IOAPIC_PINS) - 1)) >>> 0;
  }

  setPin(pin: number, high: boolean): void {
    if (!(pin >= 0 && pin < IOAPIC_PINS)) return;
    const bit = 1 << pin;
    const was = (this.asserted & bit) !== 0;
    if (high) this.asserted |= bit;
    else this.asserted &= ~bit;
    const entry = this.low[pin];
    if (entry & REDIR_LEVEL) {
      if (high) this.serviceLevel(pin);
    } else if (high && !was && !(entry & REDIR_MASKED)) {
      // Edge: a masked edge is lost, as on the 82093AA.
      this.send(pin);
    }
  }

  /** Deliver a level-triggered pin if it is asserted, unmasked and not awaiting EOI. */
  private serviceLevel(pin: number): void {
    const entry = this.low[pin];
    if (!(this.asserted & (1 << pin)) || entry & (REDIR_MASKED | REDIR_REMOTE_IRR)) return;
    const mode = (entry & REDIR_DELIVERY_MODE) >> 8;
    // Remote IRR tracks an interrupt the LAPIC will EOI: fixed and lowest-priority ones.
    if (mode === DeliveryMode.Fixed || mode === DeliveryMode.LowestPriority) this.low[pin] = entry | REDIR_REMOTE_IRR;
    this.send(pin);
  }

  private send(pin: number): void {
    const entry = this.low[pin];
    this.bus.deliver({
      vector: entry & REDIR_VECTOR,
      deliveryMode: (entry & REDIR_DELIVERY_MODE) >> 8,
      logical: (entry & REDIR_LOGICAL) !== 0,
      destination: this.high[pin] >>> 24,
      levelTriggered: (entry & REDIR_LEVEL) !== 0,
    });
  }

  /** EOI broadcast from a LAPIC (or a write to the EOI register). */
  eoi(vector: number): void {
    for (let pin = 0; pin < IOAPIC_PINS; pin++) {
      const entry = this.low[pin];
      if ((entry & REDIR_VECTOR) === vector && entry & REDIR_REMOTE_IRR) {
        this.low[pin] = entry & ~REDIR_REMOTE_IRR;
        if (entry & REDIR_LEVEL) this.serviceLevel(pin);
      }
    }
  }

  private readRegister(index: number): number {
    if (index === 0x00) return (this.id << 24) >>> 0;
    if (index === 0x01) return IOAPIC_VERSION;
    if (index === 0x02) return (this.id << 24) >>> 0; // arbitration ID
    if (index >= 0x10 && index < 0x10 + 2 * IOAPIC_PINS) {
      const pin = (index - 0x10) >> 1;
      return index & 1 ? this.high[pin] : this.low[pin];
    }
    return 0;
  }

  private writeRegister(index: number, value: number): void {
    if (index === 0x00) {
      this.id = (value >>> 24) & 0x0f;
      return;
    }
    if (index < 0x10 || index >= 0x10 + 2 * IOAPIC_PINS) return; // version/arbitration are read-only
    const pin = (index - 0x10) >> 1;
    if (index & 1) {
      this.high[pin] = value & 0xff000000;
      return;
    }
    let entry = (this.low[pin] & ~REDIR_LOW_WRITABLE) | (value & REDIR_LOW_WRITABLE);
    if (!(entry & REDIR_LEVEL)) entry &= ~REDIR_REMOTE_IRR; // edge entries never wait for EOI
    this.low[pin] = entry;
    // Unmasking an asserted level input delivers it now.
    if (entry & REDIR_LEVEL) this.serviceLevel(pin);
  }

  mmioRead(offset: number, size: AccessSize): number {
    const reg = offset & ~3;
    let value: number;
    if (reg === 0x00) value = this.select;
    else if (reg === 0x10) value = this.readRegister(this.select);
    else value = 0;
    const shifted = value >>> ((offset & 3) * 8);
    return size === 4 ? shifted >>> 0 : shifted & (size === 1 ? 0xff : 0xffff);
  }

  mmioWrite(offset: number, size: AccessSize, value: number): void {
    if (offset === 0x00) {
      this.select = value & 0xff;
    } else if (offset === 0x10 && size === 4) {
      this.writeRegister(this.select, value >>> 0);
    } else if (offset === 0x40) {
      this.eoi(value & 0xff); // EOI register of later IOAPICs; harmless here
    }
  }

  /** Test/debug view of one redirection entry. */
  entry(pin: number): { low: number; high: number } {
    return { low: this.low[pin], high: this.high[pin] };
  }

  register(bus: MmioBus, base = IOAPIC_BASE): void {
    bus.register(base, IOAPIC_SIZE, this, 'ioapic');
  }
}
