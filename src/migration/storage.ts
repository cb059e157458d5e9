// Live migration without shared storage (copy-storage, libvirt's `migrate --copy-storage-all`, Proxmox's "with local
// disks"): every disk of the VM is copied to the destination while the guest runs, the guest's writes meanwhile are
// noted in a dirty-block bitmap and sent again, and the last dirty blocks go during the stop-and-copy, so the
// destination's copy equals the source's disk at the instant the guest stops here. QEMU's block-dirty-bitmap with
// drive-mirror (or its older block migration, `migrate -b`) does the same; nothing is taken from its code.
//
// Where the tracking lives: the source wraps each writable disk's backend (src/storage: raw or qcow2, with its
// backing chain) in a DirtyTracker, through VirtioBlock.replaceBackend, so every write, write-zeroes and discard the
// guest makes marks its 64 KiB grains dirty before the request completes. virtio-blk serves requests synchronously on
// the main thread (src/devices/virtio/blk.ts, on both engines: on KVM the ioeventfd watcher runs the queue there),
// and the copy runs on the same thread between requests, so a grain is read either before a write (then it is dirty
// and goes again) or after it (then the read has it): no write is missed and none is torn.
//
// What travels is the guest's view of the disk, read through the backend: a qcow2 disk with a backing chain arrives
// as one standalone image (the chain flattened, as QEMU's drive-mirror sync=full does) of the same format as the
// source's top image (raw stays raw, qcow2 becomes a new qcow2 of the same virtual size). Holes, unallocated clusters
// and zero grains are not sent in the first pass (the destination's new image reads as zeros); in later passes a
// grain that became zero goes as a DISK_ZERO frame.
//
// The destination creates each copy itself, at the path it was given (`run --incoming ... --disk-target PATH`, the
// daemon's pool by default), refusing one that exists: the copies are the migration's own files, and any failure
// before the switch-over removes them. It makes them durable (fdatasync) at "sync" and again before it answers
// "loaded", so a write the guest saw completed here is on the destination's disk before the source gives up its VM.

import fs from 'node:fs';
import type { BlockBackend, ImageFormat } from '../storage/backend.ts';
import { RawBackend } from '../storage/backend.ts';
import { Qcow2Image, createQcow2, openImage } from '../storage/qcow2.ts';
import { VirtioBlock } from '../devices/virtio/blk.ts';
import { dataExtents } from '../vmm/snapshot.ts';
import { MAX_DISK_DATA, diskFrame, diskZeroFrame } from './protocol.ts';
import { isAllZero } from '../sys/zero.ts';

/** The tracking granule: 64 KiB, qcow2's default cluster size and QEMU's default dirty-bitmap granularity. */
export const DISK_GRAIN = 65536;
const GRAINS_PER_FRAME = MAX_DISK_DATA / DISK_GRAIN;

/** One disk as hello describes it to the destination. */
export interface DiskOffer {
  index: number;
  /** Virtual size in bytes (a multiple of 512). */
  size: number;
  format: ImageFormat;
  readonly: boolean;
}

/** The virtio-blk devices of a machine, in disk order (vda, vdb, ...). */
export function blockDevices(machine: { virtio: { functions: Array<{ device: unknown }> } }): VirtioBlock[] {
  return machine.virtio.functions.map((f) => f.device).filter((d): d is VirtioBlock => d instanceof VirtioBlock);
}

/** Whether a live migration is copying `machine`'s disks now (disk-snapshot and disk-commit must wait: control.ts). */
export function diskCopyInProgress(machine: { virtio: { functions: Array<{ device: unknown }> } }): boolean {
  return blockDevices(machine).some((d) => d.image instanceof DirtyTracker);
}

/** A disk's backend as the guest sees it, noting every grain written, zeroed or discarded since the last harvest. */
export class DirtyTracker implements BlockBackend {
  readonly dirty: Uint8Array;
  /** Grains set in `dirty`. */
  count = 0;
  /** Guest writes (of any kind) since the tracker was installed. */
  writes = 0;

  constructor(readonly inner: BlockBackend) {
    this.dirty = new Uint8Array(Math.ceil(inner.size / DISK_GRAIN));
  }

  get format() { return this.inner.format; }
  get size() { return this.inner.size; }
  get readonly() { return this.inner.readonly; }
  read(offset: number, buffer: Uint8Array): void { this.inner.read(offset, buffer); }
  // Marked after the write succeeded or failed alike: a failed write may have changed part of the range.
  write(offset: number, data: Uint8Array): void { try { this.inner.write(offset, data); } finally { this.note(offset, data.length); } }
  flush(): void { this.inner.flush(); }
  discard(offset: number, length: number): void { try { this.inner.discard(offset, length); } finally { this.note(offset, length); } }
  writeZeroes(offset: number, length: number): void { try { this.inner.writeZeroes(offset, length); } finally { this.note(offset, length); } }
  close(): void { this.inner.close(); }

  private note(offset: number, length: number): void {
    this.writes++;
    if (length <= 0) return;
    const last = Math.min(this.dirty.length - 1, Math.floor((offset + length - 1) / DISK_GRAIN));
    for (let g = Math.max(0, Math.floor(offset / DISK_GRAIN)); g <= last; g++) {
      if (!this.dirty[g]) { this.dirty[g] = 1; this.count++; }
    }
  }

  /** The grains dirtied since the last harvest (and clear them). */
  harvest(): Uint8Array {
    const out = this.dirty.slice();
    this.dirty.fill(0);
    this.count = 0;
    return out;
  }
}

/**
 * The ranges of a backend that may hold data (a superset; what is outside reads as zeros): a raw file's data extents
 * (SEEK_DATA), a standalone qcow2 image's allocated data clusters; anything else (a qcow2 over a backing chain) whole.
 */
export function dataRanges(backend: BlockBackend): Array<[number, number]> {
  const size = backend.size;
  if (backend instanceof RawBackend) {
    let fd = -1;
    try {
      fd = fs.openSync(backend.path, 'r');
      return dataExtents(fd, 0, size);
    } catch {
      return [[0, size]];
    } finally {
      if (fd >= 0) fs.closeSync(fd);
    }
  }
  if (backend instanceof Qcow2Image && backend.backingPath === undefined) {
    return backend.allocatedRuns().filter((r) => !r.zero).map((r) => [r.offset, Math.min(size, r.offset + r.length)] as [number, number]);
  }
  return [[0, size]];
}

/** What the source side reports while it copies the disks (merged into MigrationProgress). */
export interface DiskProgress {
  /** Bytes of disk (virtual) the first pass goes through: the disks' data ranges. */
  diskTotal: number;
  /** Of those, gone through so far. */
  diskTransferred: number;
  /** Wire bytes of DISK and DISK_ZERO frames sent. */
  diskBytesSent: number;
  /** Bytes of disk dirty when last measured (what the next round, or the stop-and-copy, must send). */
  diskDirtyBytes: number;
  /** Bytes per second the guest dirtied its disks during the last round. */
  diskDirtyRate: number;
}

/** How the copy sends a frame and lets the guest run (source.ts gives both: its link, its throttle). */
export interface DiskSender {
  send(frame: Buffer): Promise<void>;
  /** Called after each frame with its size: throttles, yields to the guest, checks the link. */
  paced(bytes: number): Promise<void>;
}

/** The source's side of copy-storage: every disk of the machine, tracked while it is copied. */
export class SourceDisks {
  readonly devices: VirtioBlock[];
  private trackers: Array<DirtyTracker | undefined> = [];
  private readonly buffer = Buffer.alloc(MAX_DISK_DATA);

  constructor(machine: { virtio: { functions: Array<{ device: unknown }> }; config: { disks?: unknown[] } }) {
    this.devices = blockDevices(machine);
    if (this.devices.length !== (machine.config.disks?.length ?? 0)) throw new Error('the machine\'s disks and its virtio-blk devices differ');
    // A disk wrapped by something else (a block commit noting the guest's writes: src/vmm/disk-switch.ts) would be
    // switched under the copy when that ends, and the copy's tracking lost with it.
    const busy = this.devices.findIndex((d) => !(d.image instanceof RawBackend || d.image instanceof Qcow2Image));
    if (busy >= 0) throw new Error(`disk ${busy} is in the middle of another disk operation (a block commit): copy-storage must wait for it`);
  }

  offers(): DiskOffer[] {
    return this.devices.map((d, index) => ({ index, size: d.image.size, format: d.image.format, readonly: d.readonly }));
  }

  /** Note the guest's writes from now on (writable disks; a read-only one cannot change). */
  track(): void {
    this.trackers = this.devices.map((d) => {
      if (d.readonly) return undefined;
      const tracker = new DirtyTracker(d.image);
      d.replaceBackend(tracker);
      return tracker;
    });
  }

  /** Put the disks' own backends back (the migration is over, either way). */
  untrack(): void {
    this.trackers.forEach((t, i) => {
      if (t && this.devices[i].image === t) this.devices[i].replaceBackend(t.inner);
    });
    this.trackers = [];
  }

  /** Dirty bytes now (grains noted since the last harvest). */
  dirtyBytes(): number {
    return this.trackers.reduce((n, t) => n + (t ? t.count * DISK_GRAIN : 0), 0);
  }

  /** Guest writes since tracking began (a write after the final harvest shows as a change of this). */
  writes(): number {
    return this.trackers.reduce((n, t) => n + (t?.writes ?? 0), 0);
  }

  harvest(): Array<Uint8Array | undefined> {
    return this.trackers.map((t) => t?.harvest());
  }

  /** Mark harvested grains dirty again (not sent after all: the stop-and-copy takes them). */
  remark(harvested: Array<Uint8Array | undefined>): void {
    harvested.forEach((grains, i) => {
      const t = this.trackers[i];
      if (!grains || !t) return;
      for (let g = 0; g < grains.length; g++) if (grains[g] && !t.dirty[g]) { t.dirty[g] = 1; t.count++; }
    });
  }

  /** The first pass: every data range of every disk, zero grains left out (the destination's copy starts zeroed). */
  async copyAll(sender: DiskSender, p: DiskProgress): Promise<void> {
    const plans = this.devices.map((d) => dataRanges(this.backend(d)));
    p.diskTotal = plans.reduce((n, ranges) => n + ranges.reduce((m, [a, b]) => m + (b - a), 0), 0);
    p.diskTransferred = 0;
    const started = Date.now();
    for (const [index, ranges] of plans.entries()) {
      const size = this.devices[index].image.size;
      for (const [start, end] of ranges) {
        // Whole grains (a data extent need not be aligned), so a grain is always read and sent as one piece.
        for (let at = Math.floor(start / DISK_GRAIN) * DISK_GRAIN; at < end;) {
          const n = Math.min(MAX_DISK_DATA, size - at, Math.ceil((end - at) / DISK_GRAIN) * DISK_GRAIN);
          await this.sendRun(sender, p, index, at, n, false);
          p.diskTransferred += Math.min(end, at + n) - Math.max(start, at);
          // What the guest has written since the pass began (sent again in the rounds after it), for the progress.
          p.diskDirtyBytes = this.dirtyBytes();
          p.diskDirtyRate = p.diskDirtyBytes / Math.max(Date.now() - started, 1) * 1000;
          at += n;
        }
      }
    }
  }

  /** A dirty round (or the stop-and-copy's last one): the grains in `dirty`, zero grains as DISK_ZERO. */
  async copyDirty(sender: DiskSender, p: DiskProgress, dirty: Array<Uint8Array | undefined>): Promise<number> {
    let bytes = 0;
    for (const [index, grains] of dirty.entries()) {
      if (!grains) continue;
      const size = this.devices[index].image.size;
      for (let g = 0; g < grains.length;) {
        if (!grains[g]) { g++; continue; }
        let end = g;
        while (end < grains.length && grains[end] && end - g < GRAINS_PER_FRAME) end++;
        const at = g * DISK_GRAIN;
        const n = Math.min(size, end * DISK_GRAIN) - at;
        bytes += await this.sendRun(sender, p, index, at, n, true);
        g = end;
      }
    }
    return bytes;
  }

  /** The backend to read from: under the tracker, so the copy's own reads are not the guest's. */
  private backend(d: VirtioBlock): BlockBackend {
    const image = d.image;
    return image instanceof DirtyTracker ? image.inner : image;
  }

  /** Read [at, at+n) of disk `index` and send it, runs of zero grains as DISK_ZERO (`zeros`) or not at all. */
  private async sendRun(sender: DiskSender, p: DiskProgress, index: number, at: number, n: number, zeros: boolean): Promise<number> {
    const data = this.buffer.subarray(0, n);
    this.backend(this.devices[index]).read(at, data);
    let sent = 0;
    for (let k = 0; k < n;) {
      const zero = isZeroGrain(data, k);
      let e = Math.min(n, k + DISK_GRAIN);
      while (e < n && isZeroGrain(data, e) === zero) e = Math.min(n, e + DISK_GRAIN);
      if (!zero || zeros) {
        const frame = zero ? diskZeroFrame(index, at + k, e - k) : diskFrame(index, at + k, data.subarray(k, e));
        await sender.send(frame);
        p.diskBytesSent += frame.length;
        sent += frame.length;
        await sender.paced(frame.length);
      }
      k = e;
    }
    return sent;
  }
}

function isZeroGrain(data: Uint8Array, at: number): boolean {
  return isAllZero(data.subarray(at, Math.min(data.length, at + DISK_GRAIN)));
}

// --- the destination -------------------------------------------------------------------------------------------

/** Check hello's `disks` against the machine definition's disks and the targets given here. */
export function parseOffers(value: unknown, diskCount: number, targets: readonly string[] | undefined): DiskOffer[] {
  if (!Array.isArray(value) || value.length !== diskCount) throw new Error(`the source copies ${Array.isArray(value) ? value.length : 'no'} disks for a VM with ${diskCount}`);
  if (targets === undefined) throw new Error('the source copies its disks (copy-storage), but this destination was given no disk targets (--disk-target)');
  if (targets.length !== diskCount) throw new Error(`the source copies ${diskCount} disk(s); this destination was given ${targets.length} disk target(s)`);
  return value.map((o: Record<string, unknown>, i) => {
    if (typeof o !== 'object' || o === null || o.index !== i || !Number.isSafeInteger(o.size) || (o.size as number) <= 0 || (o.size as number) % 512 !== 0
      || (o.format !== 'raw' && o.format !== 'qcow2') || typeof o.readonly !== 'boolean') {
      throw new Error(`the source's disk ${i} is not described usably`);
    }
    return { index: i, size: o.size as number, format: o.format, readonly: o.readonly };
  });
}

/**
 * The destination's copies: created here (never over an existing file), written from DISK frames, made durable, and
 * removed again if the migration fails before the switch-over.
 */
export class DestinationDisks {
  /** The files this side created (removed on failure). */
  readonly created: string[] = [];
  private writers: BlockBackend[] = [];
  /** Read-only disks are written through a handle of their own, and the device reopens the copy at the end. */
  private readonly ownWriters = new Set<number>();
  bytesWritten = 0;

  constructor(readonly offers: DiskOffer[], readonly targets: readonly string[]) {}

  /** Create every copy (empty, the source's format and size). Throws with nothing left behind. */
  create(): void {
    try {
      for (const o of this.offers) {
        const file = this.targets[o.index];
        if (fs.existsSync(file)) throw new Error(`disk target '${file}' already exists: a migration never writes over a file`);
        if (o.format === 'qcow2') {
          try {
            createQcow2(file, { size: o.size });
          } catch (error) {
            // Made (exclusively) and then failed, ENOSPC say: ours to remove; EEXIST: someone else's file, left alone.
            if ((error as NodeJS.ErrnoException).code !== 'EEXIST') fs.rmSync(file, { force: true });
            throw error;
          }
        } else {
          const fd = fs.openSync(file, 'wx', 0o600);
          this.created.push(file);
          try { fs.ftruncateSync(fd, o.size); } finally { fs.closeSync(fd); }
          continue;
        }
        this.created.push(file);
      }
    } catch (error) {
      this.remove();
      throw new Error(`cannot create the disk copies: ${(error as Error).message}`);
    }
  }

  /** Take the machine's devices (built on the copies): writable ones are written through their own backend. */
  attach(devices: VirtioBlock[]): void {
    if (devices.length !== this.offers.length) throw new Error('the machine\'s disks and the copies differ');
    this.writers = devices.map((d, i) => {
      if (d.image.size !== this.offers[i].size) throw new Error(`disk ${i}'s copy has ${d.image.size} bytes, the source's ${this.offers[i].size}`);
      if (!d.readonly) return d.image;
      this.ownWriters.add(i);
      return openImage(this.targets[i], { format: this.offers[i].format });
    });
  }

  write(index: number, offset: number, data: Uint8Array): void {
    const w = this.writer(index, offset, data.length);
    w.write(offset, data);
    this.bytesWritten += data.length;
  }

  zero(index: number, offset: number, length: number): void {
    this.writer(index, offset, length).writeZeroes(offset, length);
  }

  flush(): void {
    for (const w of this.writers) w.flush();
  }

  /**
   * Everything has arrived: make it durable, and have each read-only disk's device read its finished copy through
   * a fresh handle (the one opened at the start read an empty image's tables).
   */
  finish(devices: VirtioBlock[]): void {
    this.flush();
    for (const i of this.ownWriters) {
      this.writers[i].close();
      const fresh = openImage(this.targets[i], { readonly: true, format: this.offers[i].format });
      devices[i].replaceBackend(fresh).close();
      this.writers[i] = fresh;
    }
    this.ownWriters.clear();
  }

  /** The migration failed: close what this side opened and remove the copies (the machine's own handles are closed by it). */
  remove(): void {
    for (const i of this.ownWriters) {
      try { this.writers[i].close(); } catch { /* going anyway */ }
    }
    this.ownWriters.clear();
    for (const file of this.created.splice(0)) fs.rmSync(file, { force: true });
  }

  private writer(index: number, offset: number, length: number): BlockBackend {
    const o = this.offers[index];
    const w = this.writers[index];
    if (!o || !w) throw new Error(`disk data for disk ${index}, which is not being copied`);
    if (offset % 512 !== 0 || length % 512 !== 0 || length <= 0 || offset + length > o.size) throw new Error(`disk data for disk ${index} at [${offset}, +${length}) outside its ${o.size} bytes`);
    return w;
  }
}
