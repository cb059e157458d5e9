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
import type { BlockBackend } from '../storage/backend.ts';
import { commitOverlay, imageInfo, openImage, Qcow2Image } from '../storage/qcow2.ts';
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
 * Block commit of disk `index` (control socket disk-commit; src/manager/disk-snapshots.ts commit): with the VM
 * paused, what the disk's qcow2 overlay holds is written into its backing image (commitOverlay), the backing image,
 * opened writable, becomes the disk, and the overlay is closed; the guest is resumed. A failure before the switch
 * leaves the disk on the overlay, which is still whole (the commit only wrote ranges it holds itself).
 */
export async function commitDisk(vm: SwitchableMachine, index: number): Promise<{ pausedMs?: number; dataBytes: number; zeroBytes: number; image: string }> {
  const blocks = vm.virtio.functions.map((f) => f.device).filter((d): d is VirtioBlock => d instanceof VirtioBlock);
  const disks = vm.config.disks ?? [];
  if (blocks.length !== disks.length) throw new Error('the machine\'s disks and its virtio-blk devices differ');
  const disk = disks[index];
  if (!disk) throw new Error(`there is no disk ${index}`);
  if (disk.readonly) throw new Error(`disk ${index} is read-only: it has nothing to commit`);
  const info = imageInfo(disk.path);
  if (info.backingPath === undefined) throw new Error(`disk ${index} ('${disk.path}') has no backing file`);
  if (info.virtualSize !== blocks[index].capacity * 512) throw new Error(`disk ${index}: the overlay's size differs from the disk's`);
  // The backing image becomes the disk: it must be as large (checked before anything is written into it).
  if (imageInfo(info.backingPath, info.backingFormat).virtualSize !== info.virtualSize) throw new Error(`disk ${index}: the backing image's size differs from the overlay's`);
  const wasPaused = vm.paused === true;
  const started = performance.now();
  if (!wasPaused) {
    if (!vm.pause) throw new Error('this machine cannot be paused');
    await vm.pause();
  }
  try {
    // The overlay's writes are in its file (pwrite, no cache of our own), so another handle reads them all.
    const result = commitOverlay(disk.path);
    // Opened as the overlay's header names it (probed when it does not say), as the overlay opened it.
    const backend = openImage(result.backingPath, { format: info.backingFormat });
    let previous: BlockBackend;
    try {
      previous = blocks[index].replaceBackend(backend);
    } catch (error) {
      backend.close();
      throw error;
    }
    previous.close();
    disk.path = result.backingPath;
    if (disk.format !== undefined) disk.format = result.backingFormat;
    return { ...(wasPaused ? {} : { pausedMs: performance.now() - started }), dataBytes: result.dataBytes, zeroBytes: result.zeroBytes, image: result.backingPath };
  } finally {
    if (!wasPaused) vm.resume?.();
  }
}

function realOr(file: string): string {
  try {
    return fs.realpathSync(file);
  } catch {
    return file;
  }
}
