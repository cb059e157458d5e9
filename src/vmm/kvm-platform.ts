// The parts of the PC platform that change when the machine runs on KVM with the in-kernel irqchip, kept free of
// any KVM import so the Machine can build them synchronously before the KVM VM exists:
//   - KvmIrqRouter: device interrupt lines end in KVM_IRQ_LINE instead of the machine's own 8259 pair and IOAPIC.
//   - WatchedClock: a VmClock that reports when a device arms a timer, so the KVM run loop (whose vCPUs run on
//     other threads) can sleep on a host timer until the next deadline instead of polling.
//   - KVM_GSI_ROUTES: the GSI routing table that wires ISA IRQ 0 to IOAPIC pin 2, as the MADT says.
import { IrqRouter } from '../devices/irq/router.ts';
import { VmClock, type Timer } from './clock.ts';
import { IOAPIC_GSI_COUNT, PIT_GSI } from '../boot/platform.ts';

/** Where the lines end: KVM_IRQ_LINE of the VM. */
export type IrqSink = (gsi: number, level: boolean) => void;

/**
 * An IrqRouter whose GSIs are the in-kernel irqchip's (KVM_IRQ_LINE): GSI n of a device line is handed to KVM as
 * is, and KVM's routing table (KVM_GSI_ROUTES) fans it out to the 8259 pin and the IOAPIC pin. Sharing of a GSI by
 * several lines (PCI INTx) keeps working: IrqRouter.line ORs the lines and calls setLevel on changes only.
 * Levels driven before the VM exists are remembered and replayed when the sink is attached.
 */
export class KvmIrqRouter extends IrqRouter {
  private sink: IrqSink | undefined;
  private readonly levels = new Map<number, boolean>();

  constructor() {
    super(undefined, undefined);
  }

  override setLevel(gsi: number, high: boolean): void {
    // The guest cannot choose a GSI, but a bad device must not reach KVM with one the IOAPIC does not have.
    if (!(gsi >= 0 && gsi < IOAPIC_GSI_COUNT)) return;
    this.levels.set(gsi, high);
    this.sink?.(gsi, high);
  }

  attach(sink: IrqSink): void {
    this.sink = sink;
    for (const [gsi, level] of this.levels) if (level) sink(gsi, true);
  }

  /** After this, lines change only the remembered levels (the VM is gone). */
  detach(): void {
    this.sink = undefined;
  }

  /** The level last driven on `gsi` (for tests). */
  level(gsi: number): boolean {
    return this.levels.get(gsi) ?? false;
  }
}

/** A VmClock that calls `onArm` whenever a timer is armed (from whichever device, at whatever moment). */
export class WatchedClock extends VmClock {
  onArm: ((deadlineNs: number) => void) | undefined;

  override arm(t: Timer, deadlineNs: number): void {
    super.arm(t, deadlineNs);
    this.onArm?.(deadlineNs);
  }
}

/** KVM_IRQ_ROUTING_IRQCHIP's chips (kvm.h). */
export const KVM_IRQCHIP_PIC_MASTER = 0;
export const KVM_IRQCHIP_PIC_SLAVE = 1;
export const KVM_IRQCHIP_IOAPIC = 2;

export interface GsiRoute { gsi: number; irqchip: number; pin: number }

/**
 * The GSI routing of ringzero's PC for the in-kernel irqchip. KVM's default table sends GSI n to PIC pin n and
 * IOAPIC pin n, but the MADT (src/boot/acpi.ts) announces the PC wiring: ISA IRQ0 (the PIT) on IOAPIC pin 2 (ACPI 6.4
 * §5.2.12.5, interrupt source override), ISA IRQ2 being the 8259 cascade with no IOAPIC pin of its own. So:
 * GSI 0-7 except 2 -> master 8259 pins, GSI 8-15 -> slave 8259 pins, GSI 0 -> IOAPIC pin 2, GSI 1-23 except 2 ->
 * IOAPIC pin of the same number. (This is the wiring src/devices/irq/router.ts implements for the soft engine.)
 */
export function kvmGsiRoutes(): GsiRoute[] {
  const routes: GsiRoute[] = [];
  for (let gsi = 0; gsi < 16; gsi++) {
    if (gsi === 2) continue;
    routes.push(gsi < 8 ? { gsi, irqchip: KVM_IRQCHIP_PIC_MASTER, pin: gsi } : { gsi, irqchip: KVM_IRQCHIP_PIC_SLAVE, pin: gsi - 8 });
  }
  for (let gsi = 0; gsi < IOAPIC_GSI_COUNT; gsi++) {
    if (gsi === 2) continue;
    routes.push({ gsi, irqchip: KVM_IRQCHIP_IOAPIC, pin: gsi === 0 ? PIT_GSI : gsi });
  }
  return routes;
}
