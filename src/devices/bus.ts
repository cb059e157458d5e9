// The machine's device buses, shared by both engines: port I/O (x86 IN/OUT, 64 KiB space) and MMIO.
// An access no device claims reads as all ones and ignores writes, as on a PC with no device decoding it.

export type AccessSize = 1 | 2 | 4;

export interface PortDevice {
  /** `port` is the absolute port number; `size` in bytes. Returns the value zero-extended. */
  ioRead(port: number, size: AccessSize): number;
  ioWrite(port: number, size: AccessSize, value: number): void;
}

export interface MmioDevice {
  /** `offset` is relative to the start of the device's range. 8-byte guest accesses arrive as two 4-byte ones. */
  mmioRead(offset: number, size: AccessSize): number;
  mmioWrite(offset: number, size: AccessSize, value: number): void;
}

interface Range<T> { base: number; length: number; device: T; name: string; accesses: number }

/** Accesses per device name (several ranges of one name add up), for the VM's statistics. */
function countsByName<T>(ranges: readonly Range<T>[]): Record<string, number> {
  const out: Record<string, number> = {};
  for (const r of ranges) out[r.name] = (out[r.name] ?? 0) + r.accesses;
  return out;
}

const ONES = [0, 0xff, 0xffff, 0, 0xffffffff];

export class PortBus {
  private readonly map: (Range<PortDevice> | undefined)[] = new Array(0x10000);
  private readonly ranges: Range<PortDevice>[] = [];
  /** Guest port accesses (IN/OUT, string forms per element): the VM's statistics count them as I/O exits. */
  accesses = 0;

  register(base: number, length: number, device: PortDevice, name: string): void {
    for (let p = base; p < base + length; p++) {
      const existing = this.map[p];
      if (existing) throw new Error(`port 0x${p.toString(16)} of ${name} already belongs to ${existing.name}`);
    }
    const r = { base, length, device, name, accesses: 0 };
    this.ranges.push(r);
    for (let p = base; p < base + length; p++) this.map[p] = r;
  }

  unregister(device: PortDevice): void {
    for (let p = 0; p < 0x10000; p++) if (this.map[p]?.device === device) this.map[p] = undefined;
  }

  read(port: number, size: AccessSize): number {
    this.accesses++;
    const r = this.map[port & 0xffff];
    if (!r) return ONES[size];
    r.accesses++;
    return r.device.ioRead(port & 0xffff, size);
  }

  write(port: number, size: AccessSize, value: number): void {
    this.accesses++;
    const r = this.map[port & 0xffff];
    if (!r) return;
    r.accesses++;
    r.device.ioWrite(port & 0xffff, size, value);
  }

  /** Accesses so far by the name each range was registered with (unclaimed ports not included). */
  accessesByDevice(): Record<string, number> {
    return countsByName(this.ranges);
  }
}

export class MmioBus {
  /** Sorted by base; few devices, so a linear scan with a last-hit cache is enough. */
  private ranges: Range<MmioDevice>[] = [];
  private last: Range<MmioDevice> | undefined;
  /** Guest accesses to device MMIO (not RAM): the VM's statistics count them as MMIO exits. */
  accesses = 0;

  register(base: number, length: number, device: MmioDevice, name: string): void {
    for (const r of this.ranges) {
      if (base < r.base + r.length && r.base < base + length) throw new Error(`MMIO range of ${name} overlaps ${r.name}`);
    }
    this.ranges.push({ base, length, device, name, accesses: 0 });
    this.ranges.sort((a, b) => a.base - b.base);
  }

  unregister(device: MmioDevice): void {
    this.ranges = this.ranges.filter((r) => r.device !== device);
    this.last = undefined;
  }

  /** Move a device (a PCI BAR being reprogrammed). */
  relocate(device: MmioDevice, newBase: number): void {
    const r = this.ranges.find((x) => x.device === device);
    if (!r) return;
    r.base = newBase;
    this.ranges.sort((a, b) => a.base - b.base);
    this.last = undefined;
  }

  find(addr: number): Range<MmioDevice> | undefined {
    const l = this.last;
    if (l && addr >= l.base && addr < l.base + l.length) return l;
    for (const r of this.ranges) {
      if (addr >= r.base && addr < r.base + r.length) return (this.last = r);
    }
    return undefined;
  }

  read(addr: number, size: AccessSize): number {
    this.accesses++;
    const r = this.find(addr);
    if (!r) return ONES[size];
    r.accesses++;
    return r.device.mmioRead(addr - r.base, size);
  }

  write(addr: number, size: AccessSize, value: number): void {
    this.accesses++;
    const r = this.find(addr);
    if (!r) return;
    r.accesses++;
    r.device.mmioWrite(addr - r.base, size, value);
  }

  /** Accesses so far by the name each range was registered with (a range unregistered takes its count along). */
  accessesByDevice(): Record<string, number> {
    return countsByName(this.ranges);
  }
}
