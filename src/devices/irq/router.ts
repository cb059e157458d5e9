// Routes interrupt requests from devices to the interrupt controllers the guest may be using: the
// 8259 pair (ISA IRQs 0-15) and the IOAPIC (GSIs 0-23). On a PC the ISA timer IRQ0 is wired to
// IOAPIC pin 2, which the MADT announces with an interrupt source override (ACPI 6.x, 5.2.12.5);
// every other ISA IRQ is on the IOAPIC pin of the same number. GSIs >= 16 (PCI INTx) go only to
// the IOAPIC.
//
// Several devices can share one GSI (PCI INTx): each gets its own IrqLine and the GSI is asserted
// while any of them is.
import type { DualPic } from './pic.ts';
import type { Ioapic } from './ioapic.ts';

/** A device's interrupt output. `set` drives a level; `pulse` is a rising then falling edge. */
export interface IrqLine {
  set(high: boolean): void;
  pulse(): void;
}

const ISA_IRQS = 16;
const PIC_CASCADE = 2;

/** IOAPIC pin of an ISA IRQ (the MADT's override: IRQ0 -> GSI 2). */
export function isaIrqToGsi(irq: number): number {
  return irq === 0 ? 2 : irq;
}

export class IrqRouter {
  /** Number of asserted sources per GSI. */
  private readonly counts = new Map<number, number>();

  constructor(private readonly pic: DualPic | undefined, private readonly ioapic: Ioapic | undefined) {}

  /**
   * Drive `gsi` (ISA IRQ number for 0-15). For ISA IRQs this is the IRQ number: IRQ0 reaches the
   * PIC's IR0 and IOAPIC pin 2.
   */
  setLevel(gsi: number, high: boolean): void {
    if (gsi < ISA_IRQS) {
      if (gsi !== PIC_CASCADE) this.pic?.setIrq(gsi, high);
      // Pin 2 belongs to IRQ0; ISA IRQ2 (the cascade) has no IOAPIC pin of its own.
      if (gsi !== PIC_CASCADE) this.ioapic?.setPin(isaIrqToGsi(gsi), high);
    } else {
      this.ioapic?.setPin(gsi, high);
    }
  }

  pulse(gsi: number): void {
    this.setLevel(gsi, true);
    this.setLevel(gsi, false);
  }

  /** A line for one device on `gsi`; lines on the same GSI are ORed. */
  line(gsi: number): IrqLine {
    let mine = false;
    const set = (high: boolean): void => {
      if (high === mine) return;
      mine = high;
      const before = this.counts.get(gsi) ?? 0;
      const after = before + (high ? 1 : -1);
      this.counts.set(gsi, after);
      if ((before > 0) !== (after > 0)) this.setLevel(gsi, after > 0);
    };
    return {
      set,
      pulse: () => {
        if (mine) return; // already asserted: no new edge
        if ((this.counts.get(gsi) ?? 0) > 0) return;
        this.pulse(gsi);
      },
    };
  }
}
