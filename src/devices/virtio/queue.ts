// Split virtqueues (virtio 1.2 §2.7): the descriptor table, the driver's available ring and the device's
// used ring, all in guest RAM. Every address and length here comes from the guest, so every one is checked
// against guest RAM (never the MMIO hole), every chain is bounded by the queue size, and any malformed
// structure becomes a VirtqueueError that the transport turns into DEVICE_NEEDS_RESET (§2.1.2) instead of
// an exception escaping into the VMM.
import type { GuestMemory } from '../../memory/guest-memory.ts';

// Descriptor flags (§2.7.5).
export const VIRTQ_DESC_F_NEXT = 1;
export const VIRTQ_DESC_F_WRITE = 2;
export const VIRTQ_DESC_F_INDIRECT = 4;
/** avail.flags: the driver needs no interrupt (§2.7.7, without EVENT_IDX). */
export const VIRTQ_AVAIL_F_NO_INTERRUPT = 1;
/** used.flags: the device needs no notification (§2.7.10, without EVENT_IDX). */
export const VIRTQ_USED_F_NO_NOTIFY = 1;

/** §2.7: "The maximum Queue Size value is 32768". */
export const MAX_QUEUE_SIZE = 32768;
const DESC_SIZE = 16;
/** §2.7.5.2: a chain's total length must fit in 32 bits. */
const MAX_CHAIN_BYTES = 2 ** 32;

/** A malformed virtqueue or descriptor chain: the device must enter DEVICE_NEEDS_RESET. */
export class VirtqueueError extends Error {}

/** One buffer of a chain: a view straight into guest RAM (no copy). */
export type GuestBuffer = Uint8Array;

/** A descriptor chain the device took off the available ring (§2.7.13.3). */
export interface DescriptorChain {
  /** Index of the head descriptor: what goes back in the used ring. */
  head: number;
  /** Device-readable buffers, in order (they all precede the writable ones, §2.7.4.2). */
  readable: GuestBuffer[];
  /** Device-writable buffers, in order. */
  writable: GuestBuffer[];
  readableBytes: number;
  writableBytes: number;
}

/**
 * A descriptor chain walked into flat arrays (SplitQueue.popFlat): no object per buffer, for a device whose requests
 * carry hundreds of buffers (virtio-blk: Linux scatters a 1 MiB O_DIRECT read over 256 single pages). Buffer i is guest
 * RAM [gpa[i], gpa[i] + len[i]), checked to lie wholly in RAM region region[i], at host address host[i] in this
 * process (0 for an empty buffer). The first `readable` buffers are device-readable, the rest device-writable
 * (§2.7.4.2); each writable one was reported to GuestMemory.noteExternalWrite by the walk. The arrays are reused by
 * every walk, so a chain is only valid until the next popFlat into the same FlatChain.
 */
export class FlatChain {
  head = 0;
  /** Buffers in the chain. */
  count = 0;
  /** The first `readable` buffers are device-readable. */
  readable = 0;
  readableBytes = 0;
  writableBytes = 0;
  gpa: Float64Array;
  host: Float64Array;
  len: Uint32Array;
  region: Uint8Array;

  constructor(capacity = 256) {
    this.gpa = new Float64Array(capacity);
    this.host = new Float64Array(capacity);
    this.len = new Uint32Array(capacity);
    this.region = new Uint8Array(capacity);
  }

  /** Room for one more buffer (an indirect table may hold up to 32768). */
  grow(): void {
    const n = this.len.length * 2;
    const gpa = new Float64Array(n), host = new Float64Array(n), len = new Uint32Array(n), region = new Uint8Array(n);
    gpa.set(this.gpa); host.set(this.host); len.set(this.len); region.set(this.region);
    this.gpa = gpa; this.host = host; this.len = len; this.region = region;
  }
}

/** Virtio ring layout checks (§2.7, table "Virtqueue Part Alignment"). */
export const DESC_ALIGN = 16, AVAIL_ALIGN = 2, USED_ALIGN = 4;

export function descTableBytes(size: number): number { return DESC_SIZE * size; }
/** flags, idx, ring[size], used_event. */
export function availRingBytes(size: number): number { return 6 + 2 * size; }
/** flags, idx, ring[size] of {id u32, len u32}, avail_event. */
export function usedRingBytes(size: number): number { return 6 + 8 * size; }

/** What a snapshot keeps of a live queue besides its layout (SplitQueue.saveState). */
export interface SplitQueueState {
  lastAvail: number;
  nextUsed: number;
  signalledUsed: number;
  signalledValid: boolean;
}

export interface QueueLayout {
  size: number;
  desc: number;
  avail: number;
  used: number;
}

/**
 * One split virtqueue, live after `activate`. Not re-entrant by design: one device model owns it and the
 * whole VMM shares one thread (the soft engine) or serializes device work (the KVM engine's exit dispatch).
 */
export class SplitQueue {
  readonly size: number;
  private readonly descView: DataView;
  private readonly descBase: number;
  private readonly availView: DataView;
  private readonly availBase: number;
  private readonly usedView: DataView;
  private readonly usedBase: number;
  private readonly usedGpa: number;
  /** Next available-ring entry the device will consume. */
  private lastAvail = 0;
  /** Next used-ring entry the device will fill (mirrors used.idx). */
  private nextUsed = 0;
  /** used.idx when the driver was last interrupted (EVENT_IDX bookkeeping, §2.7.7.2). */
  private signalledUsed = 0;
  /** No interrupt sent yet since activation: the first completion always may interrupt. */
  private signalledValid = false;
  /** Guest RAM's regions as plain numbers (the walk's range check and host addresses, without a BigInt per buffer). */
  private readonly ramBase: number[] = [];
  private readonly ramEnd: number[] = [];
  private readonly ramHost: number[] = [];
  /** What walk() fills before it makes the buffers' views (pop). */
  private readonly scratch = new FlatChain(16);

  /**
   * Validate the layout against guest RAM and alignment; throws VirtqueueError when the driver enabled a
   * queue with an invalid size or rings outside RAM or misaligned.
   */
  constructor(
    private readonly mem: GuestMemory,
    layout: QueueLayout,
    private readonly features: { indirect: boolean; eventIdx: boolean },
    /** Chains taken off the available ring (less those put back), for the transport's counters (stats). */
    private readonly counters: { chains: number } = { chains: 0 },
  ) {
    const { size, desc, avail, used } = layout;
    // §2.7: Queue Size is a power of 2 (split layout), at most 32768; 0 means the queue is unusable.
    if (!(size > 0 && size <= MAX_QUEUE_SIZE && (size & (size - 1)) === 0)) throw new VirtqueueError(`queue size ${size} is not a power of two in 1..32768`);
    if (desc % DESC_ALIGN || avail % AVAIL_ALIGN || used % USED_ALIGN) throw new VirtqueueError('misaligned virtqueue rings');
    this.size = size;
    [this.descView, this.descBase] = ramView(mem, desc, descTableBytes(size), 'descriptor table');
    [this.availView, this.availBase] = ramView(mem, avail, availRingBytes(size), 'available ring');
    [this.usedView, this.usedBase] = ramView(mem, used, usedRingBytes(size), 'used ring');
    this.usedGpa = used;
    for (const r of mem.regions) {
      this.ramBase.push(r.guestBase);
      this.ramEnd.push(r.guestBase + r.size);
      this.ramHost.push(Number(r.hostAddress));
    }
    // Both indices start at 0 when a queue is enabled (§2.7.6, §2.7.8): lastAvail, nextUsed = 0.
  }

  /** avail.idx as the driver last published it. */
  private availIdx(): number {
    return this.availView.getUint16(this.availBase + 2, true);
  }

  /** Chains waiting on the available ring; an impossible count (more than the queue holds) is an error. */
  pending(): number {
    const n = (this.availIdx() - this.lastAvail) & 0xffff;
    if (n > this.size) throw new VirtqueueError(`available index moved ${n} entries past a queue of ${this.size}`);
    return n;
  }

  /** Take the next chain off the available ring, or undefined when it is empty. */
  pop(): DescriptorChain | undefined {
    if (this.pending() === 0) return undefined;
    const head = this.availView.getUint16(this.availBase + 4 + 2 * (this.lastAvail % this.size), true);
    this.lastAvail = (this.lastAvail + 1) & 0xffff;
    this.counters.chains++;
    return this.walk(head);
  }

  /**
   * pop() without an object per buffer: the next chain is walked into `out` (same checks, same errors); false when
   * the ring is empty.
   */
  popFlat(out: FlatChain): boolean {
    if (this.pending() === 0) return false;
    const head = this.availView.getUint16(this.availBase + 4 + 2 * (this.lastAvail % this.size), true);
    this.lastAvail = (this.lastAvail + 1) & 0xffff;
    this.counters.chains++;
    this.walkFlat(head, out);
    return true;
  }

  /**
   * Tell the driver (EVENT_IDX: avail_event, §2.7.10) that the device wants a notification as soon as
   * anything beyond what it has consumed is made available. Call before the final "ring empty" check.
   */
  enableNotification(): void {
    if (this.features.eventIdx) this.usedView.setUint16(this.usedBase + 4 + 8 * this.size, this.lastAvail, true);
    else this.usedView.setUint16(this.usedBase, 0, true);
  }

  /** Ask the driver not to notify while the device drains the ring anyway (§2.7.10 suppression). */
  disableNotification(): void {
    if (!this.features.eventIdx) this.usedView.setUint16(this.usedBase, VIRTQ_USED_F_NO_NOTIFY, true);
    // With EVENT_IDX, leaving avail_event behind lastAvail has the same effect.
  }

  /**
   * Return a chain to the driver with `written` bytes written into its writable buffers (§2.7.8). With
   * `publish` false the element is written but used.idx is not moved: several elements that the driver must see
   * together (virtio-net's mergeable receive buffers, §5.1.6.4.2) are published at once by publishUsed().
   */
  push(head: number, written: number, publish = true): void {
    const slot = this.usedBase + 4 + 8 * (this.nextUsed % this.size);
    this.usedView.setUint32(slot, head, true);
    this.usedView.setUint32(slot + 4, written >>> 0, true);
    // The element is in place before the index that publishes it (§2.7.8.2); on x86's TSO ordered stores
    // from this thread are seen in order by the vCPU threads.
    this.nextUsed = (this.nextUsed + 1) & 0xffff;
    if (publish) this.publishUsed();
  }

  /** Make every element pushed so far visible to the driver (used.idx). */
  publishUsed(): void {
    this.usedView.setUint16(this.usedBase + 2, this.nextUsed, true);
  }

  /**
   * Put the last `count` chains taken by pop() back on the available ring, unused (the device found they were
   * not enough for what it had to deliver); the next pop() walks them again.
   */
  unpop(count: number): void {
    if (!Number.isInteger(count) || count < 0 || count > this.size) throw new RangeError(`cannot put back ${count} chains`);
    this.lastAvail = (this.lastAvail - count) & 0xffff;
    this.counters.chains -= count;
  }

  /**
   * Ask for a notification when the driver makes chains available beyond those available now (with EVENT_IDX
   * avail_event = avail.idx, §2.7.10), for a device that left chains on the ring because they were not enough.
   * False when the driver added some meanwhile (look again rather than wait).
   */
  enableNotificationForMore(): boolean {
    const idx = this.availIdx();
    if (this.features.eventIdx) this.usedView.setUint16(this.usedBase + 4 + 8 * this.size, idx, true);
    else this.usedView.setUint16(this.usedBase, 0, true);
    return this.availIdx() === idx;
  }

  /**
   * Whether the driver wants an interrupt for what was pushed since the last one (§2.7.7.2): with EVENT_IDX,
   * when used.idx passed used_event; otherwise unless avail.flags has NO_INTERRUPT.
   */
  needsInterrupt(): boolean {
    const newIdx = this.nextUsed;
    const oldIdx = this.signalledUsed;
    const valid = this.signalledValid;
    this.signalledUsed = newIdx;
    this.signalledValid = true;
    if (!this.features.eventIdx) return (this.availView.getUint16(this.availBase, true) & VIRTQ_AVAIL_F_NO_INTERRUPT) === 0;
    if (!valid) return true;
    const usedEvent = this.availView.getUint16(this.availBase + 4 + 2 * this.size, true);
    // vring_need_event: the driver asked to hear once used.idx steps past used_event.
    return ((newIdx - usedEvent - 1) & 0xffff) < ((newIdx - oldIdx) & 0xffff);
  }

  // ---- snapshots ----

  /** The device-side indices that live outside guest RAM (the rings themselves are in RAM). */
  saveState(): SplitQueueState {
    return { lastAvail: this.lastAvail, nextUsed: this.nextUsed, signalledUsed: this.signalledUsed, signalledValid: this.signalledValid };
  }

  /** Inverse of saveState on a queue built with the same layout; rejects values no 16-bit index can hold. */
  restoreState(s: SplitQueueState): void {
    const idx = (v: unknown, what: string): number => {
      if (!Number.isInteger(v) || (v as number) < 0 || (v as number) > 0xffff) throw new RangeError(`virtqueue ${what} ${String(v)} is not a 16-bit index`);
      return v as number;
    };
    this.lastAvail = idx(s.lastAvail, 'last_avail_idx');
    this.nextUsed = idx(s.nextUsed, 'used idx');
    this.signalledUsed = idx(s.signalledUsed, 'signalled used idx');
    this.signalledValid = s.signalledValid === true;
  }

  /** Guest RAM the device itself writes (the used ring, avail_event included): [gpa, length]. */
  get usedRing(): [number, number] {
    return [this.usedGpa, usedRingBytes(this.size)];
  }

  /** Follow a chain from `head` (§2.7.5), through at most one indirect table (§2.7.5.3). */
  private walk(head: number): DescriptorChain {
    this.walkFlat(head, this.scratch);
    return chainViews(this.mem, this.scratch);
  }

  /** walk() into flat arrays: every check and error of the chain's structure and buffers is here. */
  private walkFlat(head: number, out: FlatChain): void {
    if (head >= this.size) throw new VirtqueueError(`head descriptor ${head} outside a queue of ${this.size}`);
    out.head = head;
    out.count = 0;
    out.readable = 0;
    out.readableBytes = 0;
    out.writableBytes = 0;
    let view = this.descView;
    let base = this.descBase;
    let tableSize = this.size;
    let index = head;
    let inIndirect = false;
    // §2.7.5.2/§2.7.5.3.1: a chain never revisits a descriptor, so it has at most `tableSize` entries;
    // counting catches loops without remembering visited entries.
    let budget = tableSize;
    const ramBase = this.ramBase, ramEnd = this.ramEnd, ramHost = this.ramHost, regions = ramBase.length;
    for (;;) {
      if (budget-- === 0) throw new VirtqueueError(inIndirect ? 'indirect descriptor chain loops or is too long' : 'descriptor chain loops or is longer than the queue');
      const at = base + DESC_SIZE * index;
      const addr = view.getUint32(at, true) + view.getUint32(at + 4, true) * 2 ** 32;
      const len = view.getUint32(at + 8, true);
      const flags = view.getUint16(at + 12, true);
      const next = view.getUint16(at + 14, true);
      if (flags & VIRTQ_DESC_F_INDIRECT) {
        if (!this.features.indirect) throw new VirtqueueError('indirect descriptor without VIRTIO_F_INDIRECT_DESC');
        if (inIndirect) throw new VirtqueueError('indirect descriptor inside an indirect table');
        if (flags & VIRTQ_DESC_F_NEXT) throw new VirtqueueError('indirect descriptor with NEXT');
        if (out.count > 0) throw new VirtqueueError('indirect descriptor after other descriptors');
        if (len === 0 || len % DESC_SIZE) throw new VirtqueueError(`indirect table length ${len} is not a non-zero multiple of 16`);
        tableSize = len / DESC_SIZE;
        // Linux sizes indirect tables by the chain; anything larger than the queue could hold is hostile.
        if (tableSize > MAX_QUEUE_SIZE) throw new VirtqueueError('indirect table longer than 32768 descriptors');
        [view, base] = ramView(this.mem, addr, len, 'indirect descriptor table');
        inIndirect = true;
        budget = tableSize;
        index = 0;
        continue;
      }
      // A data buffer: zero-length buffers are legal (and empty), anything else must lie wholly in one RAM region.
      let region = 0, host = 0;
      if (len !== 0) {
        while (region < regions && !(addr >= ramBase[region] && addr + len <= ramEnd[region])) region++;
        if (region === regions) throw new VirtqueueError(`buffer 0x${addr.toString(16)}+0x${len.toString(16)} is not in guest RAM`);
        host = ramHost[region] + (addr - ramBase[region]);
      }
      const i = out.count;
      if (flags & VIRTQ_DESC_F_WRITE) {
        // The device will write here: state derived from this RAM (decoded guest code) must not outlive it.
        this.mem.noteExternalWrite(addr, len);
        out.writableBytes += len;
      } else {
        // §2.7.4.2: device-readable descriptors come before every device-writable one.
        if (out.readable !== i) throw new VirtqueueError('device-readable descriptor after a device-writable one');
        out.readable = i + 1;
        out.readableBytes += len;
      }
      if (i === out.len.length) out.grow();
      out.gpa[i] = addr;
      out.host[i] = host;
      out.len[i] = len;
      out.region[i] = region;
      out.count = i + 1;
      if (out.readableBytes + out.writableBytes > MAX_CHAIN_BYTES) throw new VirtqueueError('descriptor chain longer than 4 GiB');
      if (!(flags & VIRTQ_DESC_F_NEXT)) return;
      if (next >= tableSize) throw new VirtqueueError(`next descriptor ${next} outside a table of ${tableSize}`);
      index = next;
    }
  }
}

/** A flat chain's buffers as views of guest RAM (a DescriptorChain), for the paths that want them. */
export function chainViews(mem: GuestMemory, c: FlatChain): DescriptorChain {
  const chain: DescriptorChain = { head: c.head, readable: [], writable: [], readableBytes: c.readableBytes, writableBytes: c.writableBytes };
  const regions = mem.regions;
  for (let i = 0; i < c.count; i++) {
    const len = c.len[i];
    let b: GuestBuffer;
    if (len === 0) b = new Uint8Array(0);
    else {
      const r = regions[c.region[i]];
      const at = c.gpa[i] - r.guestBase;
      b = r.bytes.subarray(at, at + len);
    }
    if (i < c.readable) chain.readable.push(b); else chain.writable.push(b);
  }
  return chain;
}

/** A view of guest RAM for a ring (whole structure in RAM, or VirtqueueError). */
function ramView(mem: GuestMemory, gpa: number, len: number, what: string): [DataView, number] {
  const r = mem.regionFor(gpa, len);
  if (!r || !Number.isSafeInteger(gpa)) throw new VirtqueueError(`${what} at 0x${gpa.toString(16)}+0x${len.toString(16)} is not in guest RAM`);
  return [r.view, gpa - r.guestBase];
}

// ---- helpers for devices: gather/scatter over a chain's buffers ----

/** Copy up to `out.length` bytes of the readable buffers, starting `skip` bytes in; returns bytes copied. */
export function gather(buffers: GuestBuffer[], skip: number, out: Uint8Array): number {
  let copied = 0;
  for (const b of buffers) {
    if (copied === out.length) break;
    if (skip >= b.length) { skip -= b.length; continue; }
    const n = Math.min(b.length - skip, out.length - copied);
    out.set(b.subarray(skip, skip + n), copied);
    copied += n;
    skip = 0;
  }
  return copied;
}

/** Copy `data` into the writable buffers starting `skip` bytes in; returns bytes written. */
export function scatter(buffers: GuestBuffer[], skip: number, data: Uint8Array): number {
  let written = 0;
  for (const b of buffers) {
    if (written === data.length) break;
    if (skip >= b.length) { skip -= b.length; continue; }
    const n = Math.min(b.length - skip, data.length - written);
    b.set(data.subarray(written, written + n), skip);
    written += n;
    skip = 0;
  }
  return written;
}

/**
 * Split a list of buffers at byte `at` into [before, after] without copying (views of the same RAM).
 * Used to peel a request header off the front or a status byte off the end.
 */
export function splitBuffers(buffers: GuestBuffer[], at: number): [GuestBuffer[], GuestBuffer[]] {
  const before: GuestBuffer[] = [];
  const after: GuestBuffer[] = [];
  for (const b of buffers) {
    if (at >= b.length) { before.push(b); at -= b.length; continue; }
    if (at > 0) { before.push(b.subarray(0, at)); after.push(b.subarray(at)); at = 0; continue; }
    after.push(b);
  }
  return [before, after];
}
