// The VMM's half of an external disk snapshot (control socket {"cmd":"disk-snapshot"}, src/vmm/control.ts): the
// daemon has created, for some of the VM's disks, a qcow2 overlay whose backing file is the disk's current image;
// here, with the VM paused, each such disk is flushed and its virtio-blk device switched to the overlay, all at one
// instant (libvirt's `snapshot-create-as --disk-only`, QEMU's blockdev-snapshot). From then on the old image is only
// read (through the overlay), so it can be copied or kept as the snapshot while the guest writes on.
//
// All overlays are opened before any device is switched, so a failure (a missing file, an overlay of another image,
// a size that differs) switches nothing. The machine's config names the overlay afterwards, so a later VM snapshot
// of this VMM (state.json) names the image the guest now writes.

import fs from 'node:fs';
import type { BlockBackend, ImageFormat } from '../storage/backend.ts';
import { imageInfo, openImage, Qcow2Image } from '../storage/qcow2.ts';
import { VirtioBlock } from '../devices/virtio/blk.ts';

export interface DiskSwitch {
  /** The disk, in --disk order (0 = /dev/vda). */
  index: number;
  /** Absolute path of a qcow2 overlay whose backing file is the disk's current image. */
  overlay: string;
}

/** What disk-switch needs of the machine (src/vmm/machine.ts Machine has it). */
export interface SwitchableMachine {
  readonly virtio: { functions: Array<{ device: unknown }> };
  readonly config: { disks?: Array<{ path: string; readonly?: boolean; format?: 'raw' | 'qcow2' }> };
  readonly paused?: boolean;
  pause?(): Promise<void>;
  resume?(): void;
}

export function isSwitchableMachine(vm: unknown): vm is SwitchableMachine {
  const v = vm as Partial<SwitchableMachine> | undefined;
  return typeof v === 'object' && v !== null && Array.isArray(v.virtio?.functions) && typeof v.config === 'object';
}

/** Validate the request's "disks" (an array of {index, overlay}); returns an error message or the list. */
export function parseDiskSwitches(value: unknown, diskCount: number): DiskSwitch[] | string {
  if (!Array.isArray(value) || value.length === 0 || value.length > diskCount) return `disk-snapshot needs "disks": 1 to ${diskCount} of {"index":N,"overlay":"/ABS"}`;
  const seen = new Set<number>();
  const out: DiskSwitch[] = [];
  for (const item of value) {
    const r = item as Record<string, unknown>;
    if (typeof r !== 'object' || r === null || !Number.isInteger(r.index) || (r.index as number) < 0 || (r.index as number) >= diskCount) {
      return `disk-snapshot "index" must be a disk number from 0 to ${diskCount - 1}`;
    }
    if (seen.has(r.index as number)) return `disk-snapshot names disk ${r.index as number} twice`;
    seen.add(r.index as number);
    if (typeof r.overlay !== 'string' || !r.overlay.startsWith('/') || r.overlay.length > 4096 || r.overlay.includes('\0')) {
      return 'disk-snapshot "overlay" must be an absolute path';
    }
    out.push({ index: r.index as number, overlay: r.overlay });
  }
  return out;
}

/**
 * Switch the listed disks to their overlays with the VM paused (paused here if it was not, and resumed after; a VM
 * that was paused stays paused). Returns how long the guest was held (ms) when this call paused it.
 */
export async function switchDisks(vm: SwitchableMachine, switches: DiskSwitch[]): Promise<{ pausedMs?: number }> {
  const blocks = vm.virtio.functions.map((f) => f.device).filter((d): d is VirtioBlock => d instanceof VirtioBlock);
  const disks = vm.config.disks ?? [];
  if (blocks.length !== disks.length) throw new Error('the machine\'s disks and its virtio-blk devices differ');
  const wasPaused = vm.paused === true;
  const started = performance.now();
  if (!wasPaused) {
    if (!vm.pause) throw new Error('this machine cannot be paused');
    await vm.pause();
  }
  try {
    const opened: Array<{ index: number; backend: BlockBackend }> = [];
    try {
      for (const s of switches) {
        const current = disks[s.index];
        if (current.readonly) throw new Error(`disk ${s.index} is read-only: it needs no snapshot overlay`);
        const backend = openImage(s.overlay, { format: 'qcow2' });
        opened.push({ index: s.index, backend });
        const backing = backend instanceof Qcow2Image ? backend.backingPath : undefined;
        if (backing === undefined || realOr(backing) !== realOr(current.path)) {
          throw new Error(`'${s.overlay}' is not an overlay of disk ${s.index} ('${current.path}')`);
        }
      }
    } catch (error) {
      for (const o of opened) o.backend.close();
      throw error;
    }
    for (const o of opened) {
      const previous = blocks[o.index].replaceBackend(o.backend);
      // Every write the guest was told is done reaches the old image before it becomes a read-only backing file
      // (close gives back the clusters a qcow2 writer had reserved at its end).
      previous.flush();
      previous.close();
      disks[o.index].path = switches.find((s) => s.index === o.index)!.overlay;
      if (disks[o.index].format !== undefined) disks[o.index].format = 'qcow2'; // a stated format follows the image
    }
  } finally {
    if (!wasPaused) vm.resume?.();
  }
  return wasPaused ? {} : { pausedMs: performance.now() - started };
}

/**
 * Block commit of disk `index` (control socket disk-commit; src/manager/disk-snapshots.ts commit), in two passes as
 * QEMU's active commit does, so the guest is held only for what it wrote meanwhile:
 *  1. the guest runs: the disk's backend is wrapped so every range the guest writes, zeroes or discards is noted,
 *     and what the qcow2 overlay holds is copied into its backing image (opened writable), a chunk at a time, the
 *     event loop (and with it the guest) running between chunks. Writing into the backing image is safe while the
 *     overlay is in use: each range written is one the overlay holds itself, so what the guest reads never changes;
 *  2. paused: the noted ranges are copied again from the overlay, the backing image is flushed and becomes the disk
 *     (the same writable handle), the overlay is closed, the guest resumed.
 * A failure before the switch puts the overlay back as it was: the disk reads the same, the commit can be run again.
 * `betweenChunks` is for tests (it gets the backend the guest writes through during the first pass).
 */
export async function commitDisk(vm: SwitchableMachine, index: number, options: {
  chunkBytes?: number; betweenChunks?: (guestBackend: BlockBackend) => void | Promise<void>;
  /** Commit into this image of the backing chain (virsh blockcommit --base), the images between included; default: the overlay's backing file. */
  base?: string;
} = {}): Promise<{
  pausedMs?: number; dataBytes: number; zeroBytes: number; pausedBytes: number; image: string; intermediates: string[];
}> {
  const blocks = vm.virtio.functions.map((f) => f.device).filter((d): d is VirtioBlock => d instanceof VirtioBlock);
  const disks = vm.config.disks ?? [];
  if (blocks.length !== disks.length) throw new Error('the machine\'s disks and its virtio-blk devices differ');
  const disk = disks[index];
  if (!disk) throw new Error(`there is no disk ${index}`);
  if (disk.readonly) throw new Error(`disk ${index} is read-only: it has nothing to commit`);
  const info = imageInfo(disk.path);
  if (info.backingPath === undefined) throw new Error(`disk ${index} ('${disk.path}') has no backing file`);
  if (info.virtualSize !== blocks[index].capacity * 512) throw new Error(`disk ${index}: the overlay's size differs from the disk's`);
  // The chain below the overlay down to the image written into: [backing, ..., base], each with its format as the
  // header above it names it (probed when it does not say), as the overlay's chain opened them.
  const below: Array<{ path: string; format: ImageFormat | undefined }> = [];
  const wanted = options.base === undefined ? undefined : realPath(options.base);
  for (let above = info; ;) {
    if (above.backingPath === undefined || below.length > 16) {
      throw new Error(`'${options.base}' is not in the backing chain of disk ${index} ('${disk.path}')`);
    }
    below.push({ path: above.backingPath, format: above.backingFormat });
    if (wanted === undefined || realPath(above.backingPath) === wanted) break;
    above = imageInfo(above.backingPath, above.backingFormat);
  }
  const { path: backingPath, format: backingFormat } = below[below.length - 1];
  // The backing image becomes the disk: it must be as large (checked before anything is written into it).
  if (imageInfo(backingPath, backingFormat).virtualSize !== info.virtualSize) throw new Error(`disk ${index}: the backing image's size differs from the overlay's`);
  const chunkBytes = options.chunkBytes ?? 1 << 20;

  const base = openImage(backingPath, { format: backingFormat });
  // The images between, read-only: nothing writes them (the guest writes the overlay); their own clusters are
  // committed first, bottom-up, so the overlay's land over them.
  const intermediates: BlockBackend[] = [];
  try {
    for (const image of below.slice(0, -1).reverse()) intermediates.push(openImage(image.path, { format: image.format, readonly: true }));
  } catch (error) {
    for (const image of intermediates) image.close();
    base.close();
    throw error;
  }
  const tracker = new WriteTracker(info.virtualSize, TRACK_GRAIN);
  let overlay: BlockBackend;
  try {
    overlay = blocks[index].replaceBackend(tracker);
  } catch (error) {
    for (const image of intermediates) image.close();
    base.close();
    throw error;
  }
  tracker.inner = overlay;
  let pausedHere = false;
  let started = 0;
  let switched = false;
  try {
    if (!(overlay instanceof Qcow2Image)) throw new Error(`disk ${index} is not a qcow2 overlay`);
    let dataBytes = 0, zeroBytes = 0, pausedBytes = 0;
    const buffer = Buffer.alloc(chunkBytes);
    // Pass 1, the guest running: the images between, bottom-up, then the overlay (its own handle has its current
    // mapping: allocatedRuns).
    for (const image of [...intermediates, overlay]) {
      if (!(image instanceof Qcow2Image)) throw new Error(`disk ${index}: an image above the one committed into is not qcow2`);
      for (const run of image.allocatedRuns()) {
        if (run.zero) {
          base.writeZeroes(run.offset, run.length);
          zeroBytes += run.length;
          continue;
        }
        for (let done = 0; done < run.length;) {
          const n = Math.min(chunkBytes, run.length - done);
          image.read(run.offset + done, buffer.subarray(0, n));
          base.write(run.offset + done, buffer.subarray(0, n));
          done += n;
          dataBytes += n;
          await options.betweenChunks?.(tracker);
          await new Promise((resolve) => setImmediate(resolve)); // the guest runs on
        }
      }
    }
    // Pass 2, paused: what the guest wrote meanwhile.
    pausedHere = vm.paused !== true;
    started = performance.now();
    if (pausedHere) {
      if (!vm.pause) throw new Error('this machine cannot be paused');
      await vm.pause();
    }
    for (const grain of [...tracker.dirty].sort((a, b) => a - b)) {
      const offset = grain * TRACK_GRAIN;
      const piece = buffer.subarray(0, Math.min(TRACK_GRAIN, info.virtualSize - offset));
      overlay.read(offset, piece);
      if (piece.every((b) => b === 0)) base.writeZeroes(offset, piece.length);
      else base.write(offset, piece);
      pausedBytes += piece.length;
    }
    base.flush();
    blocks[index].replaceBackend(base); // gives back the tracker
    switched = true;
    overlay.close(); // and its read-only handle of the backing image
    disk.path = backingPath;
    if (disk.format !== undefined) disk.format = base.format;
    return {
      ...(pausedHere ? { pausedMs: performance.now() - started } : {}), dataBytes, zeroBytes, pausedBytes, image: backingPath,
      intermediates: below.slice(0, -1).map((b) => b.path),
    };
  } catch (error) {
    if (!switched) {
      blocks[index].replaceBackend(overlay);
      base.close();
    }
    throw error;
  } finally {
    for (const image of intermediates) image.close();
    if (pausedHere) vm.resume?.();
  }
}

function realPath(file: string): string {
  try {
    return fs.realpathSync(file);
  } catch {
    return file;
  }
}

/** The granule of pass 2 (64 KiB, qcow2's default cluster size). */
const TRACK_GRAIN = 65536;

/** A disk's backend as the guest sees it, noting (by granule) every range written, zeroed or discarded. */
class WriteTracker implements BlockBackend {
  inner!: BlockBackend;
  readonly dirty = new Set<number>();
  readonly readonly = false;

  constructor(readonly size: number, private readonly grain: number) {}

  get format() { return this.inner.format; }
  read(offset: number, buffer: Uint8Array): void { this.inner.read(offset, buffer); }
  write(offset: number, data: Uint8Array): void { this.inner.write(offset, data); this.note(offset, data.length); }
  flush(): void { this.inner.flush(); }
  discard(offset: number, length: number): void { this.inner.discard(offset, length); this.note(offset, length); }
  writeZeroes(offset: number, length: number): void { this.inner.writeZeroes(offset, length); this.note(offset, length); }
  close(): void { this.inner.close(); }

  private note(offset: number, length: number): void {
    for (let g = Math.floor(offset / this.grain); g * this.grain < offset + length; g++) this.dirty.add(g);
  }
}

function realOr(file: string): string {
  try {
    return fs.realpathSync(file);
  } catch {
    return file;
  }
}
