// Wiring of the PC's interrupt controllers: the 8259 pair feeding LINT0 through the APIC bus, the
// IOAPIC at 0xFEC00000, and the router devices take their IrqLines from. LAPICs are created per
// vCPU by the CPU engine (new Lapic({ clock, bus: apicBus, apicId, hooks })), which also maps
// each one as its vCPU's private MMIO at 0xFEE00000.
import type { MmioBus, PortBus } from '../bus.ts';
import { ApicBus } from './apic-bus.ts';
import { Ioapic, IOAPIC_BASE } from './ioapic.ts';
import { DualPic } from './pic.ts';
import { IrqRouter } from './router.ts';

export interface InterruptControllers {
  apicBus: ApicBus;
  pic: DualPic;
  ioapic: Ioapic;
  router: IrqRouter;
}

export function createInterruptControllers(portBus: PortBus, mmioBus: MmioBus): InterruptControllers {
  const apicBus = new ApicBus();
  const pic = new DualPic((level) => apicBus.setPicOutput(level));
  apicBus.setExtIntSource(pic);
  pic.register(portBus);
  const ioapic = new Ioapic(apicBus);
  ioapic.register(mmioBus, IOAPIC_BASE);
  const router = new IrqRouter(pic, ioapic);
  return { apicBus, pic, ioapic, router };
}

export { ApicBus, DeliveryMode, type InterruptMessage } from './apic-bus.ts';
export { Lapic, type LapicHooks, type LapicOptions, APIC_DEFAULT_BASE, APIC_SIZE } from './lapic.ts';
export { Ioapic, IOAPIC_BASE, IOAPIC_SIZE, IOAPIC_PINS } from './ioapic.ts';
export { DualPic } from './pic.ts';
export { IrqRouter, type IrqLine, isaIrqToGsi } from './router.ts';
