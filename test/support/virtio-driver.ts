// A test driver for virtio-pci devices that does what Linux's virtio_pci_modern does, through PCI
// configuration space and BAR registers on real buses (no CPU): find the capabilities, place the BARs,
// reset, negotiate features, set up split queues in a GuestMemory, kick, and read the used ring.
import { GuestMemory, MiB } from '../../src/memory/guest-memory.ts';
import { MmioBus, PortBus } from '../../src/devices/bus.ts';
import { PciHost } from '../../src/devices/pci/host.ts';
import type { IrqLine, IrqRouter } from '../../src/devices/irq/router.ts';
import type { AccessSize } from '../../src/devices/bus.ts';
import { VirtioPciFunction } from '../../src/devices/virtio/pci.ts';
import type { VirtioDevice } from '../../src/devices/virtio/device.ts';

export const BAR0_ADDR = 0xc000_0000;
export const BAR2_ADDR = 0xc001_0000;
const PCI_COMMAND = 0x04;

/** Interrupts a test can look at: MSI messages and INTx levels per GSI. */
export class InterruptLog {
  msis: { address: number; data: number }[] = [];
  levels = new Map<number, boolean>();
  router(): IrqRouter {
    return {
      line: (gsi: number): IrqLine => ({
        set: (high: boolean) => { this.levels.set(gsi, high); },
        pulse: () => {},
      }),
    } as unknown as IrqRouter;
  }
}

export interface Caps {
  common: number;
  notify: number;
  notifyMultiplier: number;
  isr: number;
  device: number;
  pciCfg: number;
  msix: number;
}

export interface Layout { size: number; desc: number; avail: number; used: number }

/** A machine with just RAM, the buses and a PCI host; one device plugged at `slot`. */
export class TestBench {
  readonly mem: GuestMemory;
  readonly mmio = new MmioBus();
  readonly ports = new PortBus();
  readonly irqs = new InterruptLog();
  readonly pci: PciHost;
  readonly fn: VirtioPciFunction;
  readonly caps: Caps;
  readonly logs: string[] = [];
  /** Driver-side state per queue. */
  readonly queues: { layout: Layout; availIdx: number; usedSeen: number; nextDesc: number }[] = [];
  private nextAlloc = 0x10_0000;

  constructor(device: VirtioDevice, readonly slot = 3, memBytes = 64 * MiB) {
    this.mem = new GuestMemory(memBytes);
    this.pci = new PciHost({ mmioBus: this.mmio, portBus: this.ports, router: this.irqs.router(), deliverMsi: (address, data) => this.irqs.msis.push({ address, data }) });
    this.fn = new VirtioPciFunction(device, this.mem, { log: (l) => this.logs.push(l) });
    this.pci.addDevice(this.fn, slot);
    this.caps = this.findCaps();
    // Place the BARs and turn on memory decoding and bus mastering, as the kernel's PCI core does.
    this.cfgWrite(0x10, 4, BAR0_ADDR);
    this.cfgWrite(0x18, 4, BAR2_ADDR);
    this.cfgWrite(PCI_COMMAND, 2, 0x6);
  }

  close(): void {
    this.fn.close();
    this.mem.close();
  }

  cfgRead(offset: number, size: AccessSize): number {
    return this.pci.configRead(0, this.slot, 0, offset, size);
  }

  cfgWrite(offset: number, size: AccessSize, value: number): void {
    this.pci.configWrite(0, this.slot, 0, offset, size, value);
  }

  private findCaps(): Caps {
    const caps: Partial<Caps> = {};
    let at = this.cfgRead(0x34, 1);
    let guard = 0;
    while (at !== 0 && guard++ < 48) {
      const id = this.cfgRead(at, 1);
      if (id === 0x11) caps.msix = at;
      if (id === 0x09) {
        const type = this.cfgRead(at + 3, 1);
        const bar = this.cfgRead(at + 4, 1);
        const offset = this.cfgRead(at + 8, 4);
        const base = bar === 0 ? BAR0_ADDR : -1;
        if (type === 1) caps.common = base + offset;
        if (type === 2) { caps.notify = base + offset; caps.notifyMultiplier = this.cfgRead(at + 16, 4); }
        if (type === 3) caps.isr = base + offset;
        if (type === 4) caps.device = base + offset;
        if (type === 5) caps.pciCfg = at;
      }
      at = this.cfgRead(at + 1, 1);
    }
    return caps as Caps;
  }

  // ---- common configuration ----
  r(off: number, size: AccessSize): number { return this.mmio.read(this.caps.common + off, size); }
  w(off: number, size: AccessSize, v: number): void { this.mmio.write(this.caps.common + off, size, v); }
  get status(): number { return this.r(0x14, 1); }
  set status(v: number) { this.w(0x14, 1, v); }

  deviceFeatures(): bigint {
    this.w(0x00, 4, 0);
    const lo = BigInt(this.r(0x04, 4));
    this.w(0x00, 4, 1);
    return lo | (BigInt(this.r(0x04, 4)) << 32n);
  }

  writeDriverFeatures(f: bigint): void {
    this.w(0x08, 4, 0); this.w(0x0c, 4, Number(f & 0xffffffffn));
    this.w(0x08, 4, 1); this.w(0x0c, 4, Number((f >> 32n) & 0xffffffffn));
  }

  /** Reset, ACKNOWLEDGE, DRIVER, features, FEATURES_OK (§3.1.1 steps 1-6). Returns the status read back. */
  negotiate(features?: bigint): number {
    this.status = 0;
    this.status = 1;
    this.status = 1 | 2;
    this.writeDriverFeatures(features ?? this.deviceFeatures());
    this.status = 1 | 2 | 8;
    return this.status;
  }

  /** Set up queue `index` (size defaults to the device's maximum), with MSI-X vector `vector` (or none). */
  setupQueue(index: number, opts: { size?: number; vector?: number; layout?: Partial<Layout> } = {}): Layout {
    this.w(0x16, 2, index);
    const max = this.r(0x18, 2);
    const size = opts.size ?? max;
    this.w(0x18, 2, size);
    const desc = opts.layout?.desc ?? this.alloc(16 * Math.max(size, 1), 16);
    const avail = opts.layout?.avail ?? this.alloc(6 + 2 * Math.max(size, 1), 2);
    const used = opts.layout?.used ?? this.alloc(6 + 8 * Math.max(size, 1), 4);
    const layout = { size, desc, avail, used };
    this.w(0x20, 4, desc % 2 ** 32); this.w(0x24, 4, Math.floor(desc / 2 ** 32));
    this.w(0x28, 4, avail % 2 ** 32); this.w(0x2c, 4, Math.floor(avail / 2 ** 32));
    this.w(0x30, 4, used % 2 ** 32); this.w(0x34, 4, Math.floor(used / 2 ** 32));
    if (opts.vector !== undefined) this.w(0x1a, 2, opts.vector);
    this.w(0x1c, 2, 1);
    this.queues[index] = { layout, availIdx: 0, usedSeen: 0, nextDesc: 0 };
    return layout;
  }

  driverOk(): void {
    this.status = 1 | 2 | 8 | 4;
  }

  /** Bump-allocate guest RAM (zeroed: GuestMemory starts zeroed). */
  alloc(bytes: number, align = 16): number {
    const at = Math.ceil(this.nextAlloc / align) * align;
    this.nextAlloc = at + bytes;
    return at;
  }

  // ---- ring manipulation (driver side) ----

  writeDesc(table: number, i: number, addr: number, len: number, flags: number, next: number): void {
    const b = this.mem.slice(table + 16 * i, 16);
    const v = new DataView(b.buffer, b.byteOffset, 16);
    v.setUint32(0, addr % 2 ** 32, true);
    v.setUint32(4, Math.floor(addr / 2 ** 32), true);
    v.setUint32(8, len >>> 0, true);
    v.setUint16(12, flags, true);
    v.setUint16(14, next, true);
  }

  /**
   * Put a chain of buffers in queue `q`'s descriptor table from its next free slot and make it available.
   * Each buffer: [addr, len, writable]. Returns the head index.
   */
  addChain(q: number, buffers: [number, number, boolean][], kick = true): number {
    const s = this.queues[q];
    const head = s.nextDesc;
    buffers.forEach(([addr, len, writable], i) => {
      const idx = (head + i) % s.layout.size;
      const last = i === buffers.length - 1;
      this.writeDesc(s.layout.desc, idx, addr, len, (last ? 0 : 1) | (writable ? 2 : 0), (idx + 1) % s.layout.size);
    });
    s.nextDesc = (head + buffers.length) % s.layout.size;
    this.makeAvailable(q, head, kick);
    return head;
  }

  makeAvailable(q: number, head: number, kick = true): void {
    const s = this.queues[q];
    const a = s.layout.avail;
    this.u16(a + 4 + 2 * (s.availIdx % s.layout.size), head);
    s.availIdx = (s.availIdx + 1) & 0xffff;
    this.u16(a + 2, s.availIdx);
    if (kick) this.kick(q);
  }

  kick(q: number): void {
    this.mmio.write(this.caps.notify + q * this.caps.notifyMultiplier, 2, q);
  }

  /** New used elements of queue `q` since the last call. */
  used(q: number): { id: number; len: number }[] {
    const s = this.queues[q];
    const u = s.layout.used;
    const idx = this.mem.lowView.getUint16(u + 2, true);
    const out: { id: number; len: number }[] = [];
    while (s.usedSeen !== idx) {
      const at = u + 4 + 8 * (s.usedSeen % s.layout.size);
      out.push({ id: this.mem.lowView.getUint32(at, true), len: this.mem.lowView.getUint32(at + 4, true) });
      s.usedSeen = (s.usedSeen + 1) & 0xffff;
    }
    return out;
  }

  u16(gpa: number, v: number): void { this.mem.lowView.setUint16(gpa, v, true); }
  u32(gpa: number, v: number): void { this.mem.lowView.setUint32(gpa, v, true); }

  readIsr(): number { return this.mmio.read(this.caps.isr, 1); }
  intxLevel(): boolean { return this.irqs.levels.get(this.fn.configRead(0x3c, 1)) === true; }

  // ---- MSI-X ----
  enableMsix(): void {
    const ctl = this.caps.msix + 2;
    this.cfgWrite(ctl, 2, this.cfgRead(ctl, 2) | 0x8000);
  }

  programVector(v: number, address: number, data: number, masked = false): void {
    const e = BAR2_ADDR + 16 * v;
    this.mmio.write(e, 4, address);
    this.mmio.write(e + 4, 4, 0);
    this.mmio.write(e + 8, 4, data);
    this.mmio.write(e + 12, 4, masked ? 1 : 0);
  }

  /** Full bring-up with every queue set up, optional MSI-X vectors 0 (config) and 1.. (queues). */
  bringUp(opts: { msix?: boolean; features?: bigint; sizes?: number[] } = {}): void {
    if (opts.msix) {
      this.enableMsix();
      for (let v = 0; v < this.fn.msixVectors; v++) this.programVector(v, 0xfee0_0000, 0x40 + v);
    }
    const st = this.negotiate(opts.features);
    if (!(st & 8)) throw new Error(`FEATURES_OK refused (status ${st})`);
    if (opts.msix) this.w(0x10, 2, 0);
    const n = this.r(0x12, 2);
    for (let i = 0; i < n; i++) this.setupQueue(i, { size: opts.sizes?.[i], vector: opts.msix ? i + 1 : undefined });
    this.driverOk();
  }
}
