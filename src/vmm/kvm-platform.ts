// The parts of the PC platform that change when the machine runs on KVM with the in-kernel irqchip, kept free of
// any KVM import so the Machine can build them synchronously before the KVM VM exists:
//   - KvmIrqRouter: device interrupt lines end in KVM_IRQ_LINE instead of the machine's own 8259 pair and IOAPIC.
//   - WatchedClock: a VmClock that reports when a device arms a timer, so the KVM run loop (whose vCPUs run on
//     other threads) can sleep on a host timer until the next deadline instead of polling.
//   - KVM_GSI_ROUTES: the GSI routing table that wires ISA IRQ 0 to IOAPIC pin 2, as the MADT says.
//   - KvmGuestMemory: GuestMemory whose dirty-page log (diff snapshots, live migration) also takes the pages KVM
//     logged for the vCPUs' writes (KVM_MEM_LOG_DIRTY_PAGES + KVM_GET_DIRTY_LOG), once a KVM VM is attached.
import { IrqRouter } from '../devices/irq/router.ts';
import { VmClock, type Timer } from './clock.ts';
import { GuestMemory } from '../memory/guest-memory.ts';
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

/** What the KVM VM does for the machine's dirty-page log (KvmCpus provides it while the VM exists). */
export interface KvmDirtySource {
  /** Turn KVM's logging of the RAM slots on or off. */
  setLogging(on: boolean): void;
  /** OR the pages KVM logged since the last call into `log` (one byte per 4 KiB page of the memory image). */
  collect(log: Uint8Array): void;
}

/**
 * Guest RAM of a KVM machine. The vCPUs' stores bypass everything in this process, so the dirty-page log has one more
 * writer than on the soft engine: KVM's per-slot bitmap. With a source attached, starting the log turns KVM's logging
 * on, stopping it turns it off, and each harvest first takes KVM's bitmap (which KVM clears as it hands it over), so
 * a harvest misses no write the guest made before it: a later one lands in KVM's next bitmap. Devices and loaders
 * still report through noteExternalWrite, as on the soft engine. Without a KVM VM (before run(), after it ends) the
 * log is the soft one alone: nothing else writes guest RAM then.
 */
export class KvmGuestMemory extends GuestMemory {
  private source: KvmDirtySource | undefined;
  /** KVM logs every slot, the one above 4 GiB included. */
  protected override readonly highRamTracked = true;

  /** Attach the VM's logging (turned on at once if the log is on); undefined detaches, collecting what is left. */
  attachDirtySource(source: KvmDirtySource | undefined): void {
    const old = this.source;
    if (old && this.dirtyLog) {
      old.collect(this.dirtyLog);
      old.setLogging(false);
    }
    this.source = source;
    if (source && this.dirtyLog) source.setLogging(true);
  }

  override startDirtyLog(): void {
    super.startDirtyLog();
    try {
      this.source?.setLogging(true);
    } catch (error) {
      super.stopDirtyLog();
      throw new Error(`dirty-page tracking is not available: KVM refused to log the RAM slots (${(error as Error).message})`);
    }
  }

  override harvestDirtyLog(): Uint8Array {
    if (this.dirtyLog) this.source?.collect(this.dirtyLog);
    return super.harvestDirtyLog();
  }

  override stopDirtyLog(): void {
    const on = this.dirtyLog !== undefined;
    super.stopDirtyLog();
    if (on) this.source?.setLogging(false);
  }
}
