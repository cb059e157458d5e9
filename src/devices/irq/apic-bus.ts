// The APIC bus: carries interrupt messages between the IOAPIC, the local APICs (IPIs) and PCI MSI
// writes, and end-of-interrupt broadcasts from the LAPICs back to the IOAPIC (Intel SDM vol. 3,
// ch. 11 "Advanced Programmable Interrupt Controller"). It also carries the 8259's INT output to
// the LAPICs whose LINT0 is in ExtINT mode (virtual wire mode).
import type { Lapic } from './lapic.ts';

/** Delivery modes (SDM 11.6.1, ICR bits 10:8; same encoding in IOAPIC entries and MSI data). */
export const DeliveryMode = {
  Fixed: 0,
  LowestPriority: 1,
  Smi: 2,
  Nmi: 4,
  Init: 5,
  Startup: 6,
  ExtInt: 7,
} as const;

export interface InterruptMessage {
  vector: number;
  deliveryMode: number;
  /** Logical destination mode (else physical). */
  logical: boolean;
  /** 8-bit destination field (an APIC ID, or a logical mask). */
  destination: number;
  /** Level-triggered (the target sets its TMR bit and broadcasts EOI). */
  levelTriggered: boolean;
}

/** Receiver of EOI broadcasts: the IOAPIC. */
export interface EoiListener {
  eoi(vector: number): void;
}

/** What LINT0 in ExtINT mode talks to: the 8259 pair. */
export interface ExtIntSource {
  acknowledge(): number;
}

export class ApicBus {
  readonly lapics: Lapic[] = [];
  private eoiListeners: EoiListener[] = [];
  private extIntSource: ExtIntSource | undefined;
  private picLevel = false;

  addLapic(lapic: Lapic): void {
    if (!this.lapics.includes(lapic)) this.lapics.push(lapic);
  }

  /** Register the IOAPIC (or anything else that needs EOI broadcasts). */
  addEoiListener(listener: EoiListener): void {
    this.eoiListeners.push(listener);
  }

  /** Connect the 8259 pair; wire its output callback to `setPicOutput`. */
  setExtIntSource(pic: ExtIntSource): void {
    this.extIntSource = pic;
  }

  lapicById(apicId: number): Lapic | undefined {
    for (const l of this.lapics) if (l.apicId === apicId) return l;
    return undefined;
  }

  // ---- the 8259's INT line ----

  /** The 8259 master's INT output changed. */
  setPicOutput(level: boolean): void {
    this.picLevel = level;
    if (level) for (const l of this.lapics) if (l.acceptsExtInt()) l.extIntRaised();
  }

  get picOutput(): boolean {
    return this.picLevel;
  }

  /** INTA cycle forwarded to the 8259 (from a LAPIC whose LINT0 is ExtINT). */
  acknowledgeExtInt(): number {
    return this.extIntSource ? this.extIntSource.acknowledge() : 0xff;
  }

  // ---- messages ----

  /** The LAPICs a destination (physical or logical) selects. SDM 11.6.2. */
  private resolve(msg: InterruptMessage): Lapic[] {
    const out: Lapic[] = [];
    const dest = msg.destination & 0xff;
    for (const l of this.lapics) {
      if (msg.logical ? l.matchesLogical(dest) : dest === 0xff || l.apicId === dest) out.push(l);
    }
    return out;
  }

  /** Deliver a message from the IOAPIC or an MSI. */
  deliver(msg: InterruptMessage): void {
    this.deliverTo(this.resolve(msg), msg);
  }

  private deliverTo(targets: Lapic[], msg: InterruptMessage): void {
    if (targets.length === 0) return;
    if (msg.deliveryMode === DeliveryMode.LowestPriority) {
      // Lowest priority arbitration (SDM 11.6.2.4) is model specific: one target is enough, and
      // the first one keeps a device's interrupts on one vCPU.
      targets[0].receive(msg);
      return;
    }
    for (const t of targets) t.receive(msg);
  }

  /**
   * An IPI written to `from`'s ICR (SDM 11.6.1). `shorthand`: 0 none, 1 self, 2 all including
   * self, 3 all excluding self.
   */
  sendIpi(from: Lapic, msg: InterruptMessage, shorthand: number): void {
    let targets: Lapic[];
    switch (shorthand & 3) {
      case 1: targets = [from]; break;
      case 2: targets = this.lapics.slice(); break;
      case 3: targets = this.lapics.filter((l) => l !== from); break;
      default: targets = this.resolve(msg);
    }
    this.deliverTo(targets, msg);
  }

  /**
   * A PCI MSI write (SDM 11.11): address 0xFEEx_xxxx with destination ID in bits 19:12 and the
   * destination mode in bit 2; data with the vector in bits 7:0, delivery mode in 10:8 and the
   * trigger mode in bit 15. Writes outside the 0xFEE window are not interrupts and are dropped.
   */
  deliverMsi(address: number, data: number): void {
    if (Math.floor(address / 0x100000) !== 0xfee) return;
    this.deliver({
      vector: data & 0xff,
      deliveryMode: (data >> 8) & 7,
      logical: (address & 0x4) !== 0,
      destination: (address >>> 12) & 0xff,
      levelTriggered: (data & 0x8000) !== 0,
    });
  }

  /** A LAPIC's EOI of a level-triggered vector: the IOAPIC clears its remote IRR. */
  broadcastEoi(vector: number): void {
    for (const l of this.eoiListeners) l.eoi(vector);
  }
}
