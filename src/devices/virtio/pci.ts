// The virtio 1.2 modern PCI transport (§4.1): a non-transitional function (vendor 0x1AF4, device
// 0x1040 + type, revision 1) whose registers live in a memory BAR that vendor-specific capabilities point
// at: common configuration, notifications, ISR status and device configuration, plus the PCI
// configuration access window (§4.1.4.9). Interrupts by MSI-X (PCI 3.0 §6.8.2: table and PBA in their own
// BAR, per-vector masking, a config vector and one per queue) or, until the driver enables MSI-X, INTx with
// the read-to-clear ISR register (§4.1.4.5).
//
// Where device work runs: a notification is handled synchronously on the thread that wrote the notify
// register (on the soft engine, the one thread that runs every vCPU and device). See blk.ts for why the
// disk does synchronous I/O there.
import type { AccessSize, MmioDevice } from '../bus.ts';
import { PciFunction, type PciFunctionState } from '../pci/device.ts';
import type { GuestMemory } from '../../memory/guest-memory.ts';
import { SplitQueue, VirtqueueError, type SplitQueueState } from './queue.ts';
import {
  bit, VIRTIO_F_EVENT_IDX, VIRTIO_F_INDIRECT_DESC, VIRTIO_F_VERSION_1,
  type VirtioDevice, type VirtioTransport,
} from './device.ts';

export const VIRTIO_PCI_VENDOR = 0x1af4;
export const VIRTIO_PCI_DEVICE_BASE = 0x1040;
/** Subsystem IDs of 0x40 and above mark a non-transitional device (§4.1.2.1); QEMU's generic value. */
const VIRTIO_PCI_SUBSYSTEM_ID = 0x1100;

// Device status bits (§2.1).
export const STATUS_ACKNOWLEDGE = 1, STATUS_DRIVER = 2, STATUS_DRIVER_OK = 4, STATUS_FEATURES_OK = 8;
export const STATUS_DEVICE_NEEDS_RESET = 0x40, STATUS_FAILED = 0x80;

// Capability types (§4.1.4).
export const VIRTIO_PCI_CAP_COMMON_CFG = 1, VIRTIO_PCI_CAP_NOTIFY_CFG = 2, VIRTIO_PCI_CAP_ISR_CFG = 3;
export const VIRTIO_PCI_CAP_DEVICE_CFG = 4, VIRTIO_PCI_CAP_PCI_CFG = 5;
const PCI_CAP_ID_VNDR = 0x09, PCI_CAP_ID_MSIX = 0x11;

// Common configuration layout (§4.1.4.3).
export const COMMON_DFSELECT = 0x00, COMMON_DF = 0x04, COMMON_GFSELECT = 0x08, COMMON_GF = 0x0c;
export const COMMON_MSIX = 0x10, COMMON_NUMQ = 0x12, COMMON_STATUS = 0x14, COMMON_CFGGENERATION = 0x15;
export const COMMON_Q_SELECT = 0x16, COMMON_Q_SIZE = 0x18, COMMON_Q_MSIX = 0x1a, COMMON_Q_ENABLE = 0x1c;
export const COMMON_Q_NOFF = 0x1e, COMMON_Q_DESCLO = 0x20, COMMON_Q_DESCHI = 0x24, COMMON_Q_AVAILLO = 0x28;
export const COMMON_Q_AVAILHI = 0x2c, COMMON_Q_USEDLO = 0x30, COMMON_Q_USEDHI = 0x34;
const COMMON_CFG_LENGTH = 0x38;

/** MSI-X "no vector" (§4.1.4.3, VIRTIO_MSI_NO_VECTOR). */
export const VIRTIO_MSI_NO_VECTOR = 0xffff;
export const ISR_QUEUE = 1, ISR_CONFIG = 2;

// Layout of the register BAR (BAR 0): each structure in its own page, as the capabilities announce.
export const REGS_BAR = 0, MSIX_BAR = 2;
export const COMMON_OFFSET = 0x0000, ISR_OFFSET = 0x1000, DEVICE_OFFSET = 0x2000, NOTIFY_OFFSET = 0x3000;
export const REGS_BAR_SIZE = 0x4000;
/** Each queue's notify address is NOTIFY_OFFSET + queue_notify_off * this (queue_notify_off = queue index). */
export const NOTIFY_OFF_MULTIPLIER = 4;
// MSI-X table and pending-bit array in BAR 2 (PCI 3.0 §6.8.2.6-7).
export const MSIX_TABLE_OFFSET = 0x000, MSIX_PBA_OFFSET = 0x800, MSIX_BAR_SIZE = 0x1000;
const MSIX_ENTRY_SIZE = 16;
const MSIX_CONTROL_ENABLE = 0x8000, MSIX_CONTROL_FUNCTION_MASK = 0x4000;
const MSIX_VECTOR_MASKED = 1;

/**
 * A hardware engine's fast path for queue notifications (the KVM engine registers an ioeventfd on each queue's
 * notify register, so the guest's write signals an eventfd in the kernel instead of exiting to the VMM, and calls
 * process(queue) when it fires). Told where the notify registers are whenever the register BAR moves.
 */
export interface VirtioNotifyAccel {
  /** Queue q's notify register is now at `base + NOTIFY_OFFSET + q * NOTIFY_OFF_MULTIPLIER` (undefined: not decoded). */
  notifyAreaMoved(base: number | undefined): void;
}

interface QueueRegs {
  size: number;
  maxSize: number;
  msixVector: number;
  enabled: boolean;
  desc: number;
  avail: number;
  used: number;
  live: SplitQueue | undefined;
}

/** What a snapshot holds of a virtio-pci function beyond its configuration space (VirtioPciFunction.saveState). */
export interface VirtioPciState {
  deviceType: number;
  status: number;
  deviceFeatureSelect: number;
  driverFeatureSelect: number;
  /** Hex: a 64-bit value does not fit a JSON number. */
  driverFeatures: string;
  configGeneration: number;
  configVector: number;
  queueSelect: number;
  isr: number;
  queues: { size: number; msixVector: number; enabled: boolean; desc: number; avail: number; used: number; ring?: SplitQueueState }[];
  msixTable: number[];
  msixPending: number[];
  lastError?: string;
  /** The device model's own state (VirtioDevice.saveDeviceState). */
  model: unknown;
}

export class VirtioPciFunction extends PciFunction implements VirtioTransport {
  readonly mem: GuestMemory;
  private status = 0;
  private deviceFeatureSelect = 0;
  private driverFeatureSelect = 0;
  private driverFeatures = 0n;
  private configGeneration = 0;
  private configVector = VIRTIO_MSI_NO_VECTOR;
  private queueSelect = 0;
  private readonly queues: QueueRegs[];
  private isr = 0;
  readonly offeredFeatures: bigint;
  // MSI-X state.
  readonly msixVectors: number;
  private readonly msixTable: Uint32Array;
  private readonly msixPending: Uint8Array;
  private readonly msixCapability: number;
  private readonly pciCfgCapability: number;
  private readonly regsBar: MmioDevice;
  /** Why the device last entered NEEDS_RESET (for tests and logs). */
  lastError: string | undefined;
  private readonly log: (line: string) => void;
  /** Queues with a deferred processLater pending (one at a time per queue). */
  private readonly scheduled = new Set<number>();
  private closed = false;
  /** Where the register BAR decodes now (undefined: nowhere), and who else listens to its notify registers. */
  private regsBase: number | undefined;
  private notifyAccel: VirtioNotifyAccel | undefined;
  /**
   * Queue notifications the driver wrote (on a hardware engine without ioeventfd, each a VM exit) and interrupts the
   * device raised (MSI-X messages sent, or INTx asserted), and descriptor chains taken off the available rings, for
   * Machine.stats(): bench/io counts them per unit of work.
   */
  readonly counters = { notifies: 0, interrupts: 0, chains: 0 };

  constructor(readonly device: VirtioDevice, mem: GuestMemory, opts: { log?: (line: string) => void } = {}) {
    super({
      vendorId: VIRTIO_PCI_VENDOR, deviceId: VIRTIO_PCI_DEVICE_BASE + device.deviceType, classCode: device.classCode,
      revision: 1, subsystemVendorId: VIRTIO_PCI_VENDOR, subsystemId: VIRTIO_PCI_SUBSYSTEM_ID, interruptPin: 1,
    });
    this.mem = mem;
    this.log = opts.log ?? ((line) => process.stderr.write(`ringzero: ${line}\n`));
    this.offeredFeatures = device.deviceFeatures | bit(VIRTIO_F_VERSION_1) | bit(VIRTIO_F_INDIRECT_DESC) | bit(VIRTIO_F_EVENT_IDX);
    this.queues = device.queueMaxSizes.map((maxSize) => ({
      size: maxSize, maxSize, msixVector: VIRTIO_MSI_NO_VECTOR, enabled: false, desc: 0, avail: 0, used: 0, live: undefined,
    }));
    this.msixVectors = this.queues.length + 1;
    this.msixTable = new Uint32Array(4 * this.msixVectors);
    for (let v = 0; v < this.msixVectors; v++) this.msixTable[4 * v + 3] = MSIX_VECTOR_MASKED; // masked at reset (§6.8.2.9)
    this.msixPending = new Uint8Array(this.msixVectors);

    this.regsBar = { mmioRead: (o, s) => this.regsRead(o, s), mmioWrite: (o, s, v) => this.regsWrite(o, s, v) };
    this.addBar(REGS_BAR, {
      kind: 'memory32', size: REGS_BAR_SIZE, device: this.regsBar,
      onMapped: (base) => { this.regsBase = base; this.notifyAccel?.notifyAreaMoved(base); },
    });
    this.addBar(MSIX_BAR, { kind: 'memory32', size: MSIX_BAR_SIZE, device: { mmioRead: (o, s) => this.msixRead(o, s), mmioWrite: (o, s, v) => this.msixWrite(o, s, v) } });

    // MSI-X capability: Message Control (table size - 1), Table offset/BIR, PBA offset/BIR.
    this.msixCapability = this.addCapability(PCI_CAP_ID_MSIX, [
      ...le(this.msixVectors - 1, 2), ...le(MSIX_TABLE_OFFSET | MSIX_BAR, 4), ...le(MSIX_PBA_OFFSET | MSIX_BAR, 4),
    ]);
    this.setWritable(this.msixCapability + 2, 2, MSIX_CONTROL_ENABLE | MSIX_CONTROL_FUNCTION_MASK);
    // virtio_pci_cap (§4.1.4): cap_len, cfg_type, bar, id, padding[2], offset, length [, extra].
    const vendorCap = (type: number, offset: number, length: number, extra: number[] = []) =>
      this.addCapability(PCI_CAP_ID_VNDR, [16 + extra.length, type, REGS_BAR, 0, 0, 0, ...le(offset, 4), ...le(length, 4), ...extra]);
    vendorCap(VIRTIO_PCI_CAP_COMMON_CFG, COMMON_OFFSET, COMMON_CFG_LENGTH);
    vendorCap(VIRTIO_PCI_CAP_NOTIFY_CFG, NOTIFY_OFFSET, NOTIFY_OFF_MULTIPLIER * this.queues.length, le(NOTIFY_OFF_MULTIPLIER, 4));
    vendorCap(VIRTIO_PCI_CAP_ISR_CFG, ISR_OFFSET, 1);
    if (device.configSize > 0) vendorCap(VIRTIO_PCI_CAP_DEVICE_CFG, DEVICE_OFFSET, device.configSize);
    // VIRTIO_PCI_CAP_PCI_CFG: bar, offset, length and the 4 data bytes are the driver's to write (§4.1.4.9).
    this.pciCfgCapability = this.addCapability(PCI_CAP_ID_VNDR, [20, VIRTIO_PCI_CAP_PCI_CFG, 0, 0, 0, 0, ...le(0, 4), ...le(0, 4), 0, 0, 0, 0]);
    this.setWritable(this.pciCfgCapability + 4, 1, 0xff);
    this.setWritable(this.pciCfgCapability + 8, 4, 0xffffffff);
    this.setWritable(this.pciCfgCapability + 12, 4, 0xffffffff);
    this.setWritable(this.pciCfgCapability + 16, 4, 0xffffffff);
    device.bind(this);
  }

  // ---- snapshots ----

  /**
   * The PCI configuration space (MSI-X control included) plus the transport: status, feature selects and the
   * driver's features, config generation and vector, queue select, ISR, every queue's registers and, for a live
   * queue, its device-side indices (SplitQueueState), the MSI-X table and PBA, and the device model's own state.
   * Taken while the VM is paused, between notifications: no chain is held by a device (each model completes what
   * it pops within the notification), so nothing is in flight beyond what the rings in guest RAM show.
   */
  override saveState(): PciFunctionState {
    const device: VirtioPciState = {
      deviceType: this.device.deviceType,
      status: this.status,
      deviceFeatureSelect: this.deviceFeatureSelect,
      driverFeatureSelect: this.driverFeatureSelect,
      driverFeatures: this.driverFeatures.toString(16),
      configGeneration: this.configGeneration,
      configVector: this.configVector,
      queueSelect: this.queueSelect,
      isr: this.isr,
      queues: this.queues.map((q) => ({
        size: q.size, msixVector: q.msixVector, enabled: q.enabled, desc: q.desc, avail: q.avail, used: q.used,
        ...(q.live ? { ring: q.live.saveState() } : {}),
      })),
      msixTable: Array.from(this.msixTable),
      msixPending: Array.from(this.msixPending),
      ...(this.lastError !== undefined ? { lastError: this.lastError } : {}),
      model: this.device.saveDeviceState(),
    };
    return { ...super.saveState(), device };
  }

  /**
   * Inverse of saveState on a freshly built function of the same device type (its backend, e.g. the disk file,
   * already opened from the VM's configuration). Every value is checked before anything changes; afterwards
   * queues with chains waiting are processed (the saved VM may have stopped between a notification and its
   * deferred processing).
   */
  override restoreState(s: PciFunctionState): void {
    const d = s.device as VirtioPciState | undefined;
    const where = `virtio-${this.device.deviceType} at slot ${this.ctx?.slot ?? '?'}`;
    if (!d || typeof d !== 'object') throw new Error(`${where}: the snapshot has no virtio state for it`);
    if (d.deviceType !== this.device.deviceType) throw new Error(`${where}: the snapshot has a virtio-${d.deviceType} device there`);
    if (!Array.isArray(d.queues) || d.queues.length !== this.queues.length) throw new Error(`${where}: the snapshot has ${d.queues?.length} queues, the device ${this.queues.length}`);
    if (!Array.isArray(d.msixTable) || d.msixTable.length !== this.msixTable.length || !Array.isArray(d.msixPending) || d.msixPending.length !== this.msixPending.length) {
      throw new Error(`${where}: the snapshot's MSI-X table does not fit ${this.msixVectors} vectors`);
    }
    const u = (v: unknown, max: number, what: string): number => {
      if (!Number.isInteger(v) || (v as number) < 0 || (v as number) > max) throw new Error(`${where}: bad ${what} ${String(v)} in the snapshot`);
      return v as number;
    };
    const addr = (v: unknown, what: string): number => {
      if (!Number.isSafeInteger(v) || (v as number) < 0) throw new Error(`${where}: bad ${what} ${String(v)} in the snapshot`);
      return v as number;
    };
    if (typeof d.driverFeatures !== 'string' || !/^[0-9a-f]{1,16}$/.test(d.driverFeatures)) throw new Error(`${where}: bad driver features in the snapshot`);
    const queues = d.queues.map((q, i) => ({
      size: u(q.size, 0xffff, `queue ${i} size`), msixVector: u(q.msixVector, 0xffff, `queue ${i} vector`), enabled: q.enabled === true,
      desc: addr(q.desc, `queue ${i} descriptor address`), avail: addr(q.avail, `queue ${i} avail address`), used: addr(q.used, `queue ${i} used address`),
      ring: q.ring,
    }));
    const table = d.msixTable.map((v) => u(v, 0xffffffff, 'MSI-X table word'));
    const pending = d.msixPending.map((v) => u(v, 1, 'MSI-X pending bit'));

    super.restoreState(s);
    this.status = u(d.status, 0xff, 'status');
    this.deviceFeatureSelect = u(d.deviceFeatureSelect, 0xffffffff, 'device feature select');
    this.driverFeatureSelect = u(d.driverFeatureSelect, 0xffffffff, 'driver feature select');
    this.driverFeatures = BigInt(`0x${d.driverFeatures}`);
    this.configGeneration = u(d.configGeneration, 0xff, 'config generation');
    this.configVector = u(d.configVector, 0xffff, 'config vector');
    this.queueSelect = u(d.queueSelect, 0xffff, 'queue select');
    this.isr = u(d.isr, 3, 'ISR');
    this.msixTable.set(table);
    this.msixPending.set(pending);
    this.lastError = typeof d.lastError === 'string' ? d.lastError : undefined;
    const negotiated = this.negotiated;
    queues.forEach((saved, i) => {
      const q = this.queues[i];
      q.size = saved.size; q.msixVector = saved.msixVector; q.enabled = saved.enabled;
      q.desc = saved.desc; q.avail = saved.avail; q.used = saved.used;
      q.live = undefined;
      if (!saved.ring) return;
      // The same layout the driver enabled, validated against guest RAM again.
      q.live = new SplitQueue(this.mem, { size: q.size, desc: q.desc, avail: q.avail, used: q.used }, {
        indirect: (negotiated & bit(VIRTIO_F_INDIRECT_DESC)) !== 0n,
        eventIdx: (negotiated & bit(VIRTIO_F_EVENT_IDX)) !== 0n,
      }, this.counters);
      q.live.restoreState(saved.ring);
    });
    this.device.restoreDeviceState(d.model);
    for (let i = 0; i < this.queues.length; i++) if (this.queue(i)) this.processLater(i);
  }

  /** Guest RAM this function writes outside descriptor buffers: the used rings of its live queues ([gpa, length]). */
  deviceWrittenRam(): [number, number][] {
    return this.queues.flatMap((q) => (q.live ? [q.live.usedRing] : []));
  }

  // ---- VirtioTransport ----

  get negotiated(): bigint {
    return this.driverFeatures & this.offeredFeatures;
  }

  get deviceStatus(): number {
    return this.status;
  }

  queue(index: number): SplitQueue | undefined {
    if ((this.status & (STATUS_DRIVER_OK | STATUS_DEVICE_NEEDS_RESET)) !== STATUS_DRIVER_OK) return undefined;
    return this.queues[index]?.live;
  }

  usedBuffers(index: number): boolean {
    const q = this.queues[index]?.live;
    if (!q || !q.needsInterrupt()) return false;
    return this.interrupt(this.queues[index].msixVector, ISR_QUEUE);
  }

  configChanged(): void {
    this.configGeneration = (this.configGeneration + 1) & 0xff;
    if (this.status & STATUS_DRIVER_OK) this.interrupt(this.configVector, ISR_CONFIG);
  }

  needsReset(reason: string): void {
    this.lastError = reason;
    if (this.status & STATUS_DEVICE_NEEDS_RESET) return;
    this.log(`virtio-${this.device.deviceType} at slot ${this.ctx?.slot ?? '?'}: ${reason}: device needs reset`);
    this.status |= STATUS_DEVICE_NEEDS_RESET;
    // §2.1.2: if DRIVER_OK was set, the device MUST send a configuration change notification.
    if (this.status & STATUS_DRIVER_OK) this.configChanged();
  }

  processLater(index: number): void {
    if (this.scheduled.has(index) || this.closed) return;
    this.scheduled.add(index);
    setImmediate(() => {
      this.scheduled.delete(index);
      this.process(index);
    });
  }

  /** Install (or remove) a notification fast path; it hears the current notify area at once. */
  setNotifyAccel(accel: VirtioNotifyAccel | undefined): void {
    this.notifyAccel = accel;
    accel?.notifyAreaMoved(this.regsBase);
  }

  get queueCount(): number {
    return this.queues.length;
  }

  /** Stop for good: nothing scheduled runs afterwards (guest RAM may be unmapped next), host files close. */
  close(): void {
    this.closed = true;
    this.device.close();
  }

  /** Run the device on queue `index`; nothing the guest put in the rings can make this throw. */
  process(index: number): void {
    if (this.closed || !this.queue(index)) return;
    try {
      this.device.onNotify(index);
    } catch (error) {
      if (error instanceof VirtqueueError) this.needsReset(error.message);
      else this.needsReset(`internal error: ${error instanceof Error ? error.message : String(error)}`);
    }
  }

  // ---- interrupts ----

  private get msixEnabled(): boolean {
    return (this.get16(this.msixCapability + 2) & MSIX_CONTROL_ENABLE) !== 0;
  }

  /** Raise (or, masked, leave pending) the interrupt; false when the driver gave the queue no vector. */
  private interrupt(vector: number, isrBit: number): boolean {
    this.counters.interrupts++;
    if (this.msixEnabled) {
      if (vector >= this.msixVectors) return false; // NO_VECTOR: the driver asked for no interrupt
      this.msixPending[vector] = 1;
      this.deliverPendingMsix(vector);
      return true;
    }
    this.isr |= isrBit;
    this.setIntx(true);
    return true;
  }

  private deliverPendingMsix(vector: number): void {
    if (!this.msixPending[vector] || !this.msixEnabled) return;
    if (this.get16(this.msixCapability + 2) & MSIX_CONTROL_FUNCTION_MASK) return;
    if (this.msixTable[4 * vector + 3] & MSIX_VECTOR_MASKED) return;
    this.msixPending[vector] = 0;
    const address = this.msixTable[4 * vector];
    const addressHigh = this.msixTable[4 * vector + 1];
    // An address above 4 GiB cannot reach the LAPIC window (0xFEExxxxx): drop it as the chipset would.
    if (addressHigh !== 0) return;
    this.sendMsi(address, this.msixTable[4 * vector + 2]);
  }

  private msixRead(offset: number, size: AccessSize): number {
    if (offset >= MSIX_TABLE_OFFSET && offset < MSIX_TABLE_OFFSET + MSIX_ENTRY_SIZE * this.msixVectors) {
      const word = this.msixTable[(offset - MSIX_TABLE_OFFSET) >> 2];
      return extract(word, offset & 3, size);
    }
    if (offset >= MSIX_PBA_OFFSET && offset < MSIX_PBA_OFFSET + 8 * Math.ceil(this.msixVectors / 64)) {
      let word = 0;
      const first = ((offset - MSIX_PBA_OFFSET) >> 2) * 32;
      for (let i = 0; i < 32 && first + i < this.msixVectors; i++) if (this.msixPending[first + i]) word |= 1 << i;
      return extract(word >>> 0, offset & 3, size);
    }
    return 0;
  }

  private msixWrite(offset: number, size: AccessSize, value: number): void {
    if (offset < MSIX_TABLE_OFFSET || offset >= MSIX_TABLE_OFFSET + MSIX_ENTRY_SIZE * this.msixVectors) return; // PBA is read-only
    const index = (offset - MSIX_TABLE_OFFSET) >> 2;
    this.msixTable[index] = insert(this.msixTable[index], offset & 3, size, value);
    if ((index & 3) === 3) {
      this.msixTable[index] &= MSIX_VECTOR_MASKED; // only the mask bit of Vector Control is defined
      this.deliverPendingMsix(index >> 2);
    }
  }

  protected override onConfigWrite(offset: number, size: AccessSize, _value: number): void {
    const control = this.msixCapability + 2;
    if (offset < control + 2 && offset + size > control) {
      // Enabling MSI-X or clearing the function mask releases pending messages (§6.8.2.3).
      if (this.msixEnabled) {
        this.setIntx(false);
        for (let v = 0; v < this.msixVectors; v++) this.deliverPendingMsix(v);
      }
    }
    const data = this.pciCfgCapability + 16;
    if (offset < data + 4 && offset + size > data) this.pciCfgAccess(true);
  }

  override configRead(offset: number, size: AccessSize): number {
    const data = this.pciCfgCapability + 16;
    if (offset >= data && offset + size <= data + 4) {
      this.pciCfgAccess(false);
    }
    return super.configRead(offset, size);
  }

  /**
   * VIRTIO_PCI_CAP_PCI_CFG (§4.1.4.9): the driver names a BAR, offset and length (1, 2 or 4) in the
   * capability, then reading or writing pci_cfg_data performs that access on the BAR.
   */
  private pciCfgAccess(write: boolean): void {
    const cap = this.pciCfgCapability;
    const bar = this.config[cap + 4];
    const offset = this.get32(cap + 8);
    const length = this.get32(cap + 12);
    if (bar !== REGS_BAR || !(length === 1 || length === 2 || length === 4) || offset % length !== 0 || offset + length > REGS_BAR_SIZE) return;
    if (write) {
      this.regsWrite(offset, length, this.get32(cap + 16) & (length === 4 ? 0xffffffff : (1 << (8 * length)) - 1));
    } else {
      this.set32(cap + 16, this.regsRead(offset, length));
    }
  }

  // ---- the register BAR ----

  regsRead(offset: number, size: AccessSize): number {
    if (offset >= COMMON_OFFSET && offset < COMMON_OFFSET + COMMON_CFG_LENGTH) return this.commonRead(offset - COMMON_OFFSET, size);
    if (offset === ISR_OFFSET) {
      // Reading ISR clears it and deasserts INTx (§4.1.4.5.1).
      const v = this.isr;
      this.isr = 0;
      this.setIntx(false);
      return v;
    }
    if (offset >= DEVICE_OFFSET && offset + size <= DEVICE_OFFSET + this.device.configSize) {
      return this.device.readConfig(offset - DEVICE_OFFSET, size);
    }
    return 0;
  }

  regsWrite(offset: number, size: AccessSize, value: number): void {
    if (offset >= COMMON_OFFSET && offset < COMMON_OFFSET + COMMON_CFG_LENGTH) {
      this.commonWrite(offset - COMMON_OFFSET, size, value);
    } else if (offset >= DEVICE_OFFSET && offset + size <= DEVICE_OFFSET + this.device.configSize) {
      this.device.writeConfig(offset - DEVICE_OFFSET, size, value);
    } else if (offset >= NOTIFY_OFFSET && offset < NOTIFY_OFFSET + NOTIFY_OFF_MULTIPLIER * this.queues.length) {
      // The address says which queue (queue_notify_off = index); the value written is the same index.
      this.counters.notifies++;
      this.process(Math.floor((offset - NOTIFY_OFFSET) / NOTIFY_OFF_MULTIPLIER));
    }
  }

  private selected(): QueueRegs | undefined {
    return this.queues[this.queueSelect];
  }

  private commonRead(offset: number, size: AccessSize): number {
    // Materialize the structure and cut out the access: reads are rare (probe, config changes).
    const b = new DataView(new ArrayBuffer(COMMON_CFG_LENGTH));
    b.setUint32(COMMON_DFSELECT, this.deviceFeatureSelect, true);
    b.setUint32(COMMON_DF, this.deviceFeatureSelect < 2 ? Number((this.offeredFeatures >> BigInt(32 * this.deviceFeatureSelect)) & 0xffffffffn) : 0, true);
    b.setUint32(COMMON_GFSELECT, this.driverFeatureSelect, true);
    b.setUint32(COMMON_GF, this.driverFeatureSelect < 2 ? Number((this.driverFeatures >> BigInt(32 * this.driverFeatureSelect)) & 0xffffffffn) : 0, true);
    b.setUint16(COMMON_MSIX, this.configVector, true);
    b.setUint16(COMMON_NUMQ, this.queues.length, true);
    b.setUint8(COMMON_STATUS, this.status);
    b.setUint8(COMMON_CFGGENERATION, this.configGeneration);
    b.setUint16(COMMON_Q_SELECT, this.queueSelect, true);
    const q = this.selected();
    if (q) {
      b.setUint16(COMMON_Q_SIZE, q.size, true);
      b.setUint16(COMMON_Q_MSIX, q.msixVector, true);
      b.setUint16(COMMON_Q_ENABLE, q.enabled ? 1 : 0, true);
      b.setUint16(COMMON_Q_NOFF, this.queueSelect, true);
      setU64(b, COMMON_Q_DESCLO, q.desc);
      setU64(b, COMMON_Q_AVAILLO, q.avail);
      setU64(b, COMMON_Q_USEDLO, q.used);
    }
    // A queue_select beyond num_queues reads queue_size 0: "queue unavailable" (§4.1.4.3.2).
    if (offset + size > COMMON_CFG_LENGTH) return 0;
    return size === 1 ? b.getUint8(offset) : size === 2 ? b.getUint16(offset, true) : b.getUint32(offset, true);
  }

  private commonWrite(offset: number, size: AccessSize, value: number): void {
    const q = this.selected();
    // Queue registers are only the driver's to change while the queue is disabled (§4.1.4.3.2).
    const qWritable = q !== undefined && !q.enabled;
    switch (offset) {
      case COMMON_DFSELECT: if (size === 4) this.deviceFeatureSelect = value >>> 0; return;
      case COMMON_GFSELECT: if (size === 4) this.driverFeatureSelect = value >>> 0; return;
      case COMMON_GF:
        // Features are fixed once FEATURES_OK is set (§3.1.1).
        if (size !== 4 || this.driverFeatureSelect > 1 || this.status & STATUS_FEATURES_OK) return;
        {
          const shift = BigInt(32 * this.driverFeatureSelect);
          this.driverFeatures = (this.driverFeatures & ~(0xffffffffn << shift)) | (BigInt(value >>> 0) << shift);
        }
        return;
      case COMMON_MSIX: if (size === 2) this.configVector = this.vectorOrNone(value); return;
      case COMMON_STATUS: if (size === 1) this.writeStatus(value & 0xff); return;
      case COMMON_Q_SELECT: if (size === 2) this.queueSelect = value & 0xffff; return;
      case COMMON_Q_SIZE: if (size === 2 && qWritable) q.size = value & 0xffff; return;
      case COMMON_Q_MSIX: if (size === 2 && q) q.msixVector = this.vectorOrNone(value); return;
      case COMMON_Q_ENABLE: if (size === 2 && q && (value & 0xffff) === 1 && !q.enabled) this.enableQueue(this.queueSelect, q); return;
      case COMMON_Q_DESCLO: case COMMON_Q_DESCHI: if (size === 4 && qWritable) q.desc = setHalf(q.desc, offset - COMMON_Q_DESCLO, value); return;
      case COMMON_Q_AVAILLO: case COMMON_Q_AVAILHI: if (size === 4 && qWritable) q.avail = setHalf(q.avail, offset - COMMON_Q_AVAILLO, value); return;
      case COMMON_Q_USEDLO: case COMMON_Q_USEDHI: if (size === 4 && qWritable) q.used = setHalf(q.used, offset - COMMON_Q_USEDLO, value); return;
      default: return; // read-only fields and partial accesses
    }
  }

  /** A vector the device can use, else NO_VECTOR, which the driver reads back as the refusal (§4.1.5.1.2). */
  private vectorOrNone(value: number): number {
    const v = value & 0xffff;
    return v < this.msixVectors ? v : VIRTIO_MSI_NO_VECTOR;
  }

  private enableQueue(index: number, q: QueueRegs): void {
    q.enabled = true;
    if (q.size > q.maxSize) {
      this.needsReset(`queue ${index} enabled with size ${q.size} above its maximum ${q.maxSize}`);
      return;
    }
    try {
      const negotiated = this.negotiated;
      q.live = new SplitQueue(this.mem, { size: q.size, desc: q.desc, avail: q.avail, used: q.used }, {
        indirect: (negotiated & bit(VIRTIO_F_INDIRECT_DESC)) !== 0n,
        eventIdx: (negotiated & bit(VIRTIO_F_EVENT_IDX)) !== 0n,
      }, this.counters);
    } catch (error) {
      if (!(error instanceof VirtqueueError)) throw error;
      this.needsReset(`queue ${index}: ${error.message}`);
    }
  }

  private writeStatus(value: number): void {
    if (value === 0) {
      this.reset();
      return;
    }
    const old = this.status;
    // Status bits are only ever added by the driver (§2.1.1); DEVICE_NEEDS_RESET is the device's.
    let status = (old | value) & ~STATUS_DEVICE_NEEDS_RESET | (old & STATUS_DEVICE_NEEDS_RESET);
    if (status & STATUS_FEATURES_OK && !(old & STATUS_FEATURES_OK)) {
      // §3.1.1 step 5-6: accept only a subset of what was offered, and only with VERSION_1 (§6.1: a
      // non-transitional device refuses a driver that does not accept it).
      const acceptable = (this.driverFeatures & ~this.offeredFeatures) === 0n && (this.driverFeatures & bit(VIRTIO_F_VERSION_1)) !== 0n;
      if (!acceptable) status &= ~STATUS_FEATURES_OK;
    }
    if (status & STATUS_DRIVER_OK && !(status & STATUS_FEATURES_OK)) status &= ~STATUS_DRIVER_OK; // out of order
    this.status = status;
    if (status & STATUS_DRIVER_OK && !(old & STATUS_DRIVER_OK)) {
      if (status & STATUS_DEVICE_NEEDS_RESET) {
        // A queue setup already failed: tell the driver now that it listens (§2.1.2).
        this.configChanged();
        return;
      }
      try {
        this.device.onActivate();
      } catch (error) {
        this.needsReset(`activation failed: ${error instanceof Error ? error.message : String(error)}`);
      }
      // Buffers the driver made available before DRIVER_OK are consumed now (§3.1.1 step 8).
      for (let i = 0; i < this.queues.length; i++) this.process(i);
    }
  }

  /** Device reset (§4.1.4.3.1 / §2.4): back to the state at power-on, MSI-X table aside (PCI state). */
  reset(): void {
    this.device.onReset();
    this.status = 0;
    this.driverFeatures = 0n;
    this.deviceFeatureSelect = 0;
    this.driverFeatureSelect = 0;
    this.configVector = VIRTIO_MSI_NO_VECTOR;
    this.queueSelect = 0;
    for (const q of this.queues) {
      q.size = q.maxSize;
      q.msixVector = VIRTIO_MSI_NO_VECTOR;
      q.enabled = false;
      q.desc = q.avail = q.used = 0;
      q.live = undefined;
    }
    this.msixPending.fill(0);
    this.isr = 0;
    this.setIntx(false);
    this.lastError = undefined;
  }

  /** For tests: the PCI config byte offset of the MSI-X capability. */
  get msixCapabilityOffset(): number {
    return this.msixCapability;
  }

  /** The BAR of registers as an MmioDevice, for tests that drive the device without a bus. */
  get registers(): MmioDevice {
    return this.regsBar;
  }
}

function le(v: number, bytes: number): number[] {
  const out: number[] = [];
  for (let i = 0; i < bytes; i++) out.push((v >>> (8 * i)) & 0xff);
  return out;
}

function extract(word: number, byteOffset: number, size: number): number {
  const v = word >>> (8 * byteOffset);
  return size === 4 ? v >>> 0 : v & ((1 << (8 * size)) - 1);
}

function insert(word: number, byteOffset: number, size: number, value: number): number {
  const mask = (size === 4 ? 0xffffffff : (1 << (8 * size)) - 1) << (8 * byteOffset);
  return ((word & ~mask) | ((value << (8 * byteOffset)) & mask)) >>> 0;
}

function setHalf(current: number, half: number, value: number): number {
  const lo = half === 0 ? value >>> 0 : current % 2 ** 32;
  const hi = half === 0 ? Math.floor(current / 2 ** 32) : value >>> 0;
  return hi * 2 ** 32 + lo;
}

function setU64(b: DataView, offset: number, v: number): void {
  b.setUint32(offset, v % 2 ** 32, true);
  b.setUint32(offset + 4, Math.floor(v / 2 ** 32), true);
}
