// Full and diff snapshots of a running Machine (either engine), with the dirty-page log between them.
//
// After each snapshot this VMM process takes of a machine, it logs which guest pages are written from then on
// (GuestMemory's dirty-page log: device DMA through noteExternalWrite; the soft CPU's stores through its code-cache
// write check, see src/cpu/soft/code-cache.ts; on KVM the vCPUs' stores through KVM's dirty log, see
// kvm-platform.ts KvmGuestMemory). A diff snapshot then writes only those pages and names the snapshot
// it applies to (its base: the previous snapshot, full or diff, with that state file's CRC); restore maps the full
// snapshot at the root of the chain and copies each diff's pages over it (snapshot.ts applyDiffLayers).
// Firecracker's Diff snapshots (from KVM's dirty log) are the model; nothing is taken from its code.
import path from 'node:path';
import type { Machine } from './machine.ts';
import { readSnapshot, writeSnapshot, type SnapshotBody } from './snapshot.ts';

/** The snapshot a diff taken now would apply to. */
interface Base {
  dir: string;
  crc32: string;
}

const lastSnapshot = new WeakMap<Machine, Base>();
/** Why a machine cannot take diffs (its dirty log could not start), for the error a diff request gets. */
const noTracking = new WeakMap<Machine, string>();

/** Whether `vm` is a Machine these functions can snapshot (the control socket also serves test doubles). */
export function isSnapshotMachine(vm: unknown): vm is Machine {
  return typeof vm === 'object' && vm !== null && typeof (vm as Machine).captureState === 'function' && (vm as Machine).mem !== undefined;
}

/**
 * Pages the devices write without going through GuestMemory.noteExternalWrite (each virtqueue's used ring, written
 * in place as chains complete): marked in `pages` so a diff or a migration always carries them.
 */
export function markDeviceWrittenPages(machine: Machine, pages: Uint8Array): void {
  for (const fn of machine.virtio.functions) {
    for (const [gpa, len] of fn.deviceWrittenRam()) {
      const at = machine.mem.imageOffset(gpa);
      if (at < 0) continue;
      for (let p = Math.floor(at / 4096); p <= Math.floor((at + len - 1) / 4096) && p < pages.length; p++) pages[p] = 1;
    }
  }
}

/** Something else consumed the dirty-page log (a live migration): the next snapshot must be a full one. */
export function forgetDiffBase(machine: Machine, reason: string): void {
  if (!lastSnapshot.has(machine)) return;
  lastSnapshot.delete(machine);
  noTracking.set(machine, `${reason}: take a full snapshot first`);
}

/**
 * Snapshot `machine` into `dir` (replacing it): a full snapshot, or with `diff` only the pages written since the last
 * snapshot this process took of it. Pauses the VM for the duration (resumed afterwards unless it was paused).
 */
export async function snapshotMachine(machine: Machine, dir: string, opts: { diff?: boolean } = {}): Promise<SnapshotBody> {
  const base = lastSnapshot.get(machine);
  if (opts.diff && !base) {
    const why = noTracking.get(machine);
    throw new Error(why ? `a diff snapshot is not possible for this VM: ${why}` : 'a diff snapshot needs a base: take a full snapshot of this VM first (writes are tracked from each snapshot on)');
  }
  const target = path.resolve(dir);
  if (opts.diff && base && target === base.dir) throw new Error(`a diff snapshot cannot replace its own base ${base.dir}`);
  const wasPaused = machine.paused;
  await machine.pause();
  try {
    machine.serial.flush();
    const state = await machine.snapshotState();
    let body: SnapshotBody;
    if (opts.diff && base) {
      const pages = machine.mem.harvestDirtyLog();
      markDeviceWrittenPages(machine, pages);
      try {
        body = writeSnapshot(target, state, machine.mem, { pages, baseDir: base.dir, baseCrc32: base.crc32 });
      } catch (error) {
        // Nothing was written: the pages stay dirty for the next attempt.
        const log = machine.mem.dirtyLog;
        if (log) for (let p = 0; p < pages.length; p++) if (pages[p]) log[p] = 1;
        throw error;
      }
    } else {
      body = writeSnapshot(target, state, machine.mem);
    }
    // From this instant on, writes are what the next diff must carry.
    try {
      if (machine.mem.dirtyLog) machine.mem.harvestDirtyLog();
      else machine.mem.startDirtyLog();
      lastSnapshot.set(machine, { dir: target, crc32: readSnapshot(target).crc32 });
      noTracking.delete(machine);
    } catch (error) {
      lastSnapshot.delete(machine);
      noTracking.set(machine, (error as Error).message);
    }
    return body;
  } finally {
    if (!wasPaused) machine.resume();
  }
}
