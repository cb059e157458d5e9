// A PCI function's configuration space (PCI Local Bus Specification 3.0, ch. 6): the type 0
// header with IDs, COMMAND/STATUS, BARs (sized by writing all ones, mapped on the buses while
// their decode bit in COMMAND is set), a capability list, and INTx. Devices (virtio-pci and
// friends) extend PciFunction, or implement PciDevice themselves.
import type { AccessSize, MmioBus, MmioDevice, PortBus, PortDevice } from '../bus.ts';
import type { IrqLine } from '../irq/router.ts';

/** What the host tells a device when it is plugged in. */
export interface PciAttachContext {
  slot: number;
  function: number;
  mmioBus: MmioBus;
  portBus: PortBus;
  /** The device's INTx line (already routed for its slot and pin), if it has an interrupt pin. */
  intx?: IrqLine;
  /** GSI the INTx line reaches (what ACPI's _PRT announces), if any. */
  intxGsi?: number;
  /** Deliver an MSI/MSI-X message (address/data per Intel SDM 11.11). */
  deliverMsi(address: number, data: number): void;
}

/** The host bridge's view of a function. */
export interface PciDevice {
  /** 256 for conventional PCI, 4096 for PCI Express extended configuration space. */
  readonly configSize: number;
  /** `offset` < configSize; little-endian value of `size` bytes. */
  configRead(offset: number, size: AccessSize): number;
  configWrite(offset: number, size: AccessSize, value: number): void;
  attach?(ctx: PciAttachContext): void;
  /** Snapshot support: plain JSON-safe data, and its inverse (which may throw on data it cannot take). */
  saveState?(): PciFunctionState;
  restoreState?(state: PciFunctionState): void;
}

/** A function's configuration space and INTx level, plus whatever a subclass adds under `device`. */
export interface PciFunctionState {
  /** Raw configuration bytes, base64. */
  config: string;
  intxLevel: boolean;
  device?: unknown;
}

// Header offsets (PCI 3.0, figure 6-1).
export const PCI_VENDOR_ID = 0x00, PCI_DEVICE_ID = 0x02, PCI_COMMAND = 0x04, PCI_STATUS = 0x06;
export const PCI_REVISION = 0x08, PCI_CLASS_PROG = 0x09, PCI_CACHE_LINE = 0x0c, PCI_LATENCY = 0x0d;
export const PCI_HEADER_TYPE = 0x0e, PCI_BAR0 = 0x10, PCI_SUBSYSTEM_VENDOR = 0x2c, PCI_SUBSYSTEM_ID = 0x2e;
export const PCI_ROM = 0x30, PCI_CAPABILITIES = 0x34, PCI_INTERRUPT_LINE = 0x3c, PCI_INTERRUPT_PIN = 0x3d;

export const COMMAND_IO = 0x1, COMMAND_MEMORY = 0x2, COMMAND_BUS_MASTER = 0x4, COMMAND_INTX_DISABLE = 0x400;
/** COMMAND bits a device implements: I/O, memory, bus master, parity and SERR# response, INTx disable. */
const COMMAND_WRITABLE = COMMAND_IO | COMMAND_MEMORY | COMMAND_BUS_MASTER | 0x40 | 0x100 | COMMAND_INTX_DISABLE;
const STATUS_INTERRUPT = 0x08, STATUS_CAPABILITIES = 0x10;

export type PciBarKind = 'memory32' | 'memory64' | 'io';

export interface PciBarOptions {
  kind: PciBarKind;
  /** Bytes; a power of two (at least 16 for memory, 4 for I/O). */
  size: number;
  prefetchable?: boolean;
  /**
   * What answers accesses inside the BAR: registered on the MmioBus (memory) or PortBus (I/O)
   * at the BAR's address while decoding is enabled. One device object per BAR.
   */
  device?: MmioDevice | PortDevice;
  /** Told the BAR's new base whenever its mapping changes; undefined when it stops decoding. */
  onMapped?(base: number | undefined): void;
}

interface Bar extends PciBarOptions {
  index: number;
  mappedAt: number | undefined;
}

export interface PciFunctionOptions {
  vendorId: number;
  deviceId: number;
  /** 24-bit class code: base class << 16 | subclass << 8 | programming interface. */
  classCode: number;
  revision?: number;
  subsystemVendorId?: number;
  subsystemId?: number;
  /** 0: no INTx; 1-4: INTA#-INTD#. */
  interruptPin?: number;
  /** 4096 for a PCI Express function; default 256. */
  configSize?: number;
}

const ONES = [0, 0xff, 0xffff, 0, 0xffffffff];

export class PciFunction implements PciDevice {
  readonly configSize: number;
  /** Raw configuration bytes. */
  protected readonly config: Uint8Array;
  /** Per byte, the bits a guest write may change (outside the BARs, handled separately). */
  protected readonly writable: Uint8Array;
  private readonly bars: (Bar | undefined)[] = new Array(6);
  private lastCapability = 0;
  private nextCapabilityOffset = 0x40;
  private intxLevel = false;
  protected ctx: PciAttachContext | undefined;

  constructor(opts: PciFunctionOptions) {
    this.configSize = opts.configSize ?? 256;
    this.config = new Uint8Array(this.configSize);
    this.writable = new Uint8Array(this.configSize);
    this.set16(PCI_VENDOR_ID, opts.vendorId);
    this.set16(PCI_DEVICE_ID, opts.deviceId);
    this.config[PCI_REVISION] = opts.revision ?? 0;
    this.config[PCI_CLASS_PROG] = opts.classCode & 0xff;
    this.config[PCI_CLASS_PROG + 1] = (opts.classCode >> 8) & 0xff;
    this.config[PCI_CLASS_PROG + 2] = (opts.classCode >> 16) & 0xff;
    this.set16(PCI_SUBSYSTEM_VENDOR, opts.subsystemVendorId ?? 0);
    this.set16(PCI_SUBSYSTEM_ID, opts.subsystemId ?? 0);
    this.config[PCI_INTERRUPT_PIN] = opts.interruptPin ?? 0;
    this.setWritable(PCI_COMMAND, 2, COMMAND_WRITABLE);
    this.setWritable(PCI_CACHE_LINE, 1, 0xff);
    this.setWritable(PCI_LATENCY, 1, 0xff);
    this.setWritable(PCI_INTERRUPT_LINE, 1, 0xff);
  }

  // ---- helpers for subclasses ----

  protected set16(offset: number, v: number): void {
    this.config[offset] = v & 0xff;
    this.config[offset + 1] = (v >> 8) & 0xff;
  }

  protected set32(offset: number, v: number): void {
    for (let i = 0; i < 4; i++) this.config[offset + i] = (v >>> (8 * i)) & 0xff;
  }

  protected get16(offset: number): number {
    return this.config[offset] | (this.config[offset + 1] << 8);
  }

  protected get32(offset: number): number {
    return (this.config[offset] | (this.config[offset + 1] << 8) | (this.config[offset + 2] << 16) | (this.config[offset + 3] << 24)) >>> 0;
  }

  /** Make `length` bytes at `offset` guest-writable under `mask` (little-endian across the bytes). */
  protected setWritable(offset: number, length: number, mask: number): void {
    for (let i = 0; i < length; i++) this.writable[offset + i] = i < 4 ? (mask >>> (8 * i)) & 0xff : 0xff;
  }

  get command(): number {
    return this.get16(PCI_COMMAND);
  }

  /** Bus mastering (DMA) allowed by the guest. */
  get busMaster(): boolean {
    return (this.command & COMMAND_BUS_MASTER) !== 0;
  }

  /** Declare BAR `index` (0-5; a 64-bit BAR also takes index+1). */
  addBar(index: number, opts: PciBarOptions): void {
    if (index < 0 || index > 5 || (opts.kind === 'memory64' && index > 4)) throw new RangeError(`bad BAR index ${index}`);
    const min = opts.kind === 'io' ? 4 : 16;
    if (opts.size < min || !Number.isInteger(Math.log2(opts.size))) throw new RangeError(`BAR size ${opts.size} is not a power of two >= ${min}`);
    this.bars[index] = { ...opts, index, mappedAt: undefined };
    this.set32(PCI_BAR0 + 4 * index, this.barFlags(this.bars[index]!));
    if (opts.kind === 'memory64') this.set32(PCI_BAR0 + 4 * (index + 1), 0);
  }

  private barFlags(bar: Bar): number {
    if (bar.kind === 'io') return 0x1;
    return (bar.kind === 'memory64' ? 0x4 : 0) | (bar.prefetchable ? 0x8 : 0);
  }

  /** Current address programmed in a BAR (without flag bits). */
  barAddress(index: number): number {
    const bar = this.bars[index];
    if (!bar) return 0;
    const low = this.get32(PCI_BAR0 + 4 * index);
    if (bar.kind === 'io') return low & ~0x3;
    const base = (low & ~0xf) >>> 0;
    return bar.kind === 'memory64' ? base + this.get32(PCI_BAR0 + 4 * (index + 1)) * 2 ** 32 : base;
  }

  /**
   * Add a capability (PCI 3.0, 6.7): `body` is what follows the ID and next-pointer bytes.
   * Returns its offset. Its bytes are read-only unless the subclass calls setWritable.
   */
  addCapability(id: number, body: Uint8Array | number[]): number {
    const offset = this.nextCapabilityOffset;
    const length = 2 + body.length;
    if (offset + length > 0x100) throw new RangeError('PCI capability list overflows the 256-byte header space');
    this.config[offset] = id;
    this.config[offset + 1] = 0;
    this.config.set(body, offset + 2);
    if (this.lastCapability === 0) this.config[PCI_CAPABILITIES] = offset;
    else this.config[this.lastCapability + 1] = offset;
    this.lastCapability = offset;
    this.nextCapabilityOffset = (offset + length + 3) & ~3;
    this.set16(PCI_STATUS, this.get16(PCI_STATUS) | STATUS_CAPABILITIES);
    return offset;
  }

  /** Drive INTx (level): reflected in STATUS.Interrupt, gated by COMMAND.InterruptDisable. */
  setIntx(level: boolean): void {
    this.intxLevel = level;
    const status = this.get16(PCI_STATUS);
    this.set16(PCI_STATUS, level ? status | STATUS_INTERRUPT : status & ~STATUS_INTERRUPT);
    this.ctx?.intx?.set(level && !(this.command & COMMAND_INTX_DISABLE));
  }

  /** Send an MSI/MSI-X message (only if bus mastering is on, as the spec requires). */
  protected sendMsi(address: number, data: number): void {
    if (this.busMaster) this.ctx?.deliverMsi(address, data);
  }

  attach(ctx: PciAttachContext): void {
    this.ctx = ctx;
    if (ctx.intxGsi !== undefined && this.config[PCI_INTERRUPT_PIN] !== 0) this.config[PCI_INTERRUPT_LINE] = ctx.intxGsi & 0xff;
  }

  // ---- snapshots ----

  saveState(): PciFunctionState {
    return { config: Buffer.from(this.config).toString('base64'), intxLevel: this.intxLevel };
  }

  /** Load the configuration bytes (read-only ones are kept as this function defines them), remap BARs, drive INTx. */
  restoreState(s: PciFunctionState): void {
    const bytes = Buffer.from(s.config, 'base64');
    if (bytes.length !== this.configSize) throw new RangeError(`PCI configuration image is ${bytes.length} bytes, not ${this.configSize}`);
    for (let at = 0; at < this.configSize; at++) {
      if (at >= PCI_BAR0 && at < PCI_BAR0 + 24) this.config[at] = bytes[at];
      else this.config[at] = (this.config[at] & ~this.writable[at]) | (bytes[at] & this.writable[at]);
    }
    this.fixBars();
    this.updateMappings();
    this.intxLevel = false;
    this.ctx?.intx?.set(false);
    this.setIntx(!!s.intxLevel);
  }

  // ---- configuration access ----

  configRead(offset: number, size: AccessSize): number {
    if (offset < 0 || offset + size > this.configSize) return ONES[size];
    let v = 0;
    for (let i = 0; i < size; i++) v |= this.config[offset + i] << (8 * i);
    return v >>> 0;
  }

  configWrite(offset: number, size: AccessSize, value: number): void {
    if (offset < 0 || offset + size > this.configSize) return;
    let barsTouched = false;
    for (let i = 0; i < size; i++) {
      const at = offset + i;
      const byte = (value >>> (8 * i)) & 0xff;
      if (at >= PCI_BAR0 && at < PCI_BAR0 + 24) {
        this.config[at] = byte; // masked per BAR below
        barsTouched = true;
      } else {
        const mask = this.writable[at];
        this.config[at] = (this.config[at] & ~mask) | (byte & mask);
      }
    }
    if (barsTouched) this.fixBars();
    const touchesCommand = offset < PCI_COMMAND + 2 && offset + size > PCI_COMMAND;
    if (touchesCommand) this.setIntx(this.intxLevel);
    if (barsTouched || touchesCommand) this.updateMappings();
    this.onConfigWrite(offset, size, value);
  }

  /** Subclass hook after a guest configuration write (capability registers and such). */
  protected onConfigWrite(_offset: number, _size: AccessSize, _value: number): void {}

  /** Re-impose each BAR's size alignment and flag bits after a write (this is what sizing reads back). */
  private fixBars(): void {
    for (let i = 0; i < 6; i++) {
      const bar = this.bars[i];
      const at = PCI_BAR0 + 4 * i;
      if (!bar) {
        // Unimplemented BAR, or the upper half of a 64-bit one.
        const lower = i > 0 ? this.bars[i - 1] : undefined;
        if (lower?.kind === 'memory64') {
          const highMask = lower.size > 2 ** 32 ? Math.floor(-(lower.size / 2 ** 32)) >>> 0 : 0xffffffff;
          this.set32(at, this.get32(at) & highMask);
        } else {
          this.set32(at, 0);
        }
        continue;
      }
      const lowMask = bar.size >= 2 ** 32 ? 0 : (~(bar.size - 1)) >>> 0;
      this.set32(at, ((this.get32(at) & lowMask & (bar.kind === 'io' ? ~0x3 : ~0xf)) | this.barFlags(bar)) >>> 0);
    }
  }

  /** Map, move or unmap each BAR's device to follow COMMAND and the BAR addresses. */
  private updateMappings(): void {
    const ctx = this.ctx;
    for (const bar of this.bars) {
      if (!bar) continue;
      const decode = this.command & (bar.kind === 'io' ? COMMAND_IO : COMMAND_MEMORY);
      const addr = this.barAddress(bar.index);
      const limit = bar.kind === 'io' ? 0x10000 : bar.kind === 'memory32' ? 2 ** 32 : 2 ** 52;
      let target: number | undefined = decode && addr !== 0 && addr + bar.size <= limit ? addr : undefined;
      if (target === bar.mappedAt) continue;
      if (ctx && bar.device) {
        if (bar.mappedAt !== undefined) this.unmapDevice(bar, ctx);
        if (target !== undefined && !this.mapDevice(bar, target, ctx)) target = undefined;
      }
      bar.mappedAt = target;
      bar.onMapped?.(target);
    }
  }

  private mapDevice(bar: Bar, base: number, ctx: PciAttachContext): boolean {
    const name = `pci-${ctx.slot}.${ctx.function}-bar${bar.index}`;
    try {
      if (bar.kind === 'io') ctx.portBus.register(base, bar.size, bar.device as PortDevice, name);
      else ctx.mmioBus.register(base, bar.size, bar.device as MmioDevice, name);
      return true;
    } catch {
      // The guest placed the BAR over another device: it decodes nothing there, like a conflict
      // on real hardware, until it is moved.
      return false;
    }
  }

  private unmapDevice(bar: Bar, ctx: PciAttachContext): void {
    if (bar.kind === 'io') ctx.portBus.unregister(bar.device as PortDevice);
    else ctx.mmioBus.unregister(bar.device as MmioDevice);
  }
}
