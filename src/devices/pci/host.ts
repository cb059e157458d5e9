// The PCI host bridge: bus 0's configuration space reached through configuration mechanism #1
// (PCI 3.0, 3.2.2.3.2: address register at 0xCF8 with the enable bit 31, data at 0xCFC-0xCFF)
// and through ECAM (PCI Express Base 4.0, 7.2.2: 4 KiB per function, bus<<20 | dev<<15 | fn<<12,
// announced to the guest by the ACPI MCFG table), plus the host bridge function 00:00.0.
// Byte access to 0xCF9 is the reset control register of Intel's PIIX/ICH chipsets.
import type { AccessSize, MmioBus, MmioDevice, PortBus, PortDevice } from '../bus.ts';
import type { IrqRouter } from '../irq/router.ts';
import { PciFunction, type PciDevice, type PciFunctionState } from './device.ts';
import { pciIntxGsi as platformIntxGsi } from '../../boot/platform.ts';

export const PCI_CONFIG_ADDRESS = 0xcf8;
export const PCI_CONFIG_DATA = 0xcfc;
export const PCI_RESET_CONTROL = 0xcf9;
export const PCI_ECAM_BASE = 0xe0000000;
/** 256 buses x 32 devices x 8 functions x 4 KiB. */
export const PCI_ECAM_SIZE = 0x10000000;
export const PCI_SLOTS = 32;

/** First GSI of PCI INTx (IOAPIC pins 16-23). */
export const PCI_INTX_FIRST_GSI = 16;

/**
 * The GSI that slot `slot`'s interrupt pin `pin` (the Interrupt Pin register: 1 = INTA# .. 4 = INTD#)
 * reaches. The one table lives in src/boot/platform.ts (pins counted from 0 there, as in the _PRT),
 * so what the DSDT announces and what devices assert cannot drift apart.
 */
export function pciIntxGsi(slot: number, pin: number): number {
  return platformIntxGsi(slot, pin - 1);
}

const ONES = [0, 0xff, 0xffff, 0, 0xffffffff];
const RESET_CONTROL_RST_CPU = 0x04;

export interface PciHostOptions {
  mmioBus: MmioBus;
  portBus: PortBus;
  /** Where INTx lines are routed; without it devices get no INTx. */
  router?: IrqRouter;
  /** MSI delivery (ApicBus.deliverMsi). */
  deliverMsi?: (address: number, data: number) => void;
  /** Guest asked for a reset through 0xCF9. */
  onReset?: () => void;
}

/** 00:00.0: a plain host bridge (Red Hat's QEMU PCIe host bridge IDs; no driver binds to it). */
export class HostBridge extends PciFunction {
  constructor() {
    super({ vendorId: 0x1b36, deviceId: 0x0008, classCode: 0x060000, subsystemVendorId: 0x1af4, subsystemId: 0x1100 });
  }
}

/** The host's configuration mechanism registers and every function's state, by slot and function number. */
export interface PciHostState {
  address: number;
  resetControl: number;
  functions: { slot: number; function: number; state: PciFunctionState }[];
}

export class PciHost implements PortDevice, MmioDevice {
  /** Functions of bus 0 by slot * 8 + function. */
  private readonly functions: (PciDevice | undefined)[] = new Array(PCI_SLOTS * 8);
  private address = 0;
  private resetControl = 0;

  constructor(private readonly opts: PciHostOptions) {
    this.addDevice(new HostBridge(), 0);
  }

  /** Plug `dev` into bus 0 at `slot` (1-31; 0 is the host bridge), function `fn`. */
  addDevice(dev: PciDevice, slot: number, fn = 0): void {
    if (!(slot >= 0 && slot < PCI_SLOTS && fn >= 0 && fn < 8)) throw new RangeError(`bad PCI address ${slot}.${fn}`);
    const key = slot * 8 + fn;
    if (this.functions[key]) throw new Error(`PCI slot ${slot}.${fn} is taken`);
    this.functions[key] = dev;
    const pin = dev.configRead(0x3d, 1);
    const gsi = pin >= 1 && pin <= 4 && this.opts.router ? pciIntxGsi(slot, pin) : undefined;
    dev.attach?.({
      slot, function: fn,
      mmioBus: this.opts.mmioBus,
      portBus: this.opts.portBus,
      intx: gsi !== undefined ? this.opts.router!.line(gsi) : undefined,
      intxGsi: gsi,
      deliverMsi: this.opts.deliverMsi ?? (() => {}),
    });
  }

  saveState(): PciHostState {
    const functions: PciHostState['functions'] = [];
    this.functions.forEach((dev, key) => {
      if (!dev) return;
      if (!dev.saveState) throw new Error(`PCI function ${key >> 3}.${key & 7} cannot be snapshotted`);
      functions.push({ slot: key >> 3, function: key & 7, state: dev.saveState() });
    });
    return { address: this.address, resetControl: this.resetControl, functions };
  }

  /** Throws (before changing anything) unless the saved functions are exactly the ones plugged in here. */
  checkState(s: PciHostState): void {
    const here = this.functions.flatMap((dev, key) => (dev ? [key] : []));
    const saved = s.functions.map((f) => f.slot * 8 + f.function).sort((a, b) => a - b);
    const name = (keys: number[]) => keys.map((k) => `${k >> 3}.${k & 7}`).join(' ');
    if (here.join() !== saved.join()) throw new Error(`the snapshot has PCI functions ${name(saved)}, this machine ${name(here)}`);
  }

  restoreState(s: PciHostState): void {
    this.checkState(s);
    this.address = (s.address & 0x80fffffc) >>> 0;
    this.resetControl = s.resetControl & 0x0a;
    for (const f of s.functions) {
      const dev = this.functions[f.slot * 8 + f.function]!;
      if (!dev.restoreState) throw new Error(`PCI function ${f.slot}.${f.function} cannot be restored`);
      dev.restoreState(f.state);
    }
  }

  /** Configuration read of bus 0 (other buses have nothing: all ones). */
  configRead(bus: number, slot: number, fn: number, offset: number, size: AccessSize): number {
    if (bus !== 0) return ONES[size];
    const dev = this.functions[slot * 8 + fn];
    if (!dev) return ONES[size];
    let v = dev.configRead(offset, size);
    // Function 0 reports a multi-function device (header type bit 7) when others share its slot.
    if (fn === 0 && offset <= 0x0e && offset + size > 0x0e && this.hasOtherFunctions(slot)) {
      v = (v | (0x80 << (8 * (0x0e - offset)))) >>> 0;
    }
    return v;
  }

  configWrite(bus: number, slot: number, fn: number, offset: number, size: AccessSize, value: number): void {
    if (bus !== 0) return;
    this.functions[slot * 8 + fn]?.configWrite(offset, size, value);
  }

  private hasOtherFunctions(slot: number): boolean {
    for (let f = 1; f < 8; f++) if (this.functions[slot * 8 + f]) return true;
    return false;
  }

  // ---- mechanism #1 ----

  ioRead(port: number, size: AccessSize): number {
    if (port === PCI_CONFIG_ADDRESS && size === 4) return this.address;
    if (port === PCI_RESET_CONTROL && size === 1) return this.resetControl;
    if (port >= PCI_CONFIG_DATA && port < PCI_CONFIG_DATA + 4) {
      const a = this.address;
      if (!(a & 0x80000000)) return ONES[size];
      const offset = (a & 0xfc) + (port - PCI_CONFIG_DATA);
      if (offset + size > (a & 0xfc) + 4) return ONES[size]; // access would straddle the dword
      return this.configRead((a >>> 16) & 0xff, (a >>> 11) & 0x1f, (a >>> 8) & 7, offset, size);
    }
    return ONES[size];
  }

  ioWrite(port: number, size: AccessSize, value: number): void {
    if (port === PCI_CONFIG_ADDRESS && size === 4) {
      // Bits 30:24 are reserved and bits 1:0 select type 0/1 cycles: neither is kept.
      this.address = (value & 0x80fffffc) >>> 0;
      return;
    }
    if (port === PCI_RESET_CONTROL && size === 1) {
      const rising = value & RESET_CONTROL_RST_CPU && !(this.resetControl & RESET_CONTROL_RST_CPU);
      this.resetControl = value & 0x0a; // RST_CPU self-clears
      if (rising) this.opts.onReset?.();
      return;
    }
    if (port >= PCI_CONFIG_DATA && port < PCI_CONFIG_DATA + 4) {
      const a = this.address;
      if (!(a & 0x80000000)) return;
      const offset = (a & 0xfc) + (port - PCI_CONFIG_DATA);
      if (offset + size > (a & 0xfc) + 4) return;
      this.configWrite((a >>> 16) & 0xff, (a >>> 11) & 0x1f, (a >>> 8) & 7, offset, size, value);
    }
  }

  // ---- ECAM ----

  mmioRead(offset: number, size: AccessSize): number {
    return this.configRead((offset >>> 20) & 0xff, (offset >>> 15) & 0x1f, (offset >>> 12) & 7, offset & 0xfff, size);
  }

  mmioWrite(offset: number, size: AccessSize, value: number): void {
    this.configWrite((offset >>> 20) & 0xff, (offset >>> 15) & 0x1f, (offset >>> 12) & 7, offset & 0xfff, size, value);
  }

  /** Claim 0xCF8-0xCFF and, if given a bus, the ECAM window. */
  register(portBus: PortBus, mmioBus?: MmioBus, ecamBase = PCI_ECAM_BASE): void {
    portBus.register(PCI_CONFIG_ADDRESS, 8, this, 'pci-config');
    mmioBus?.register(ecamBase, PCI_ECAM_SIZE, this, 'pci-ecam');
  }
}
