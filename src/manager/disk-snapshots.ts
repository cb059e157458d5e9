// External qcow2 disk snapshots (libvirt's `snapshot-create-as --disk-only`, external style): each writable disk's
// current image becomes a read-only backing file, frozen at the snapshot's instant, and a new qcow2 overlay in the
// pool takes the writes. For a running VM the VMM switches its virtio-blk backends to the overlays at one instant
// (control socket disk-snapshot, src/vmm/disk-switch.ts: pause, flush, reopen, resume); for a shut-off VM only the
// definition changes. Disks must be pool volumes (DIR/volumes); read-only disks are left as they are.
//
// Records: DIR/disk-snapshots/VM/SNAP.json, written atomically after the switch: {name, vm, createdAt, disks:
// [{index, image, overlay}], pausedMs}. `image` is what the snapshot froze, `overlay` the file that took the writes.
//
// Revert (shut-off VM): a fresh overlay on the snapshot's frozen images becomes the disk; the current state is
// discarded (as virsh snapshot-revert), its overlay file removed when nothing else needs it.
// Delete: a snapshot whose frozen image is still in the backing chain of a VM's disk has dependants and is refused
// (code conflict); one on a branch abandoned by a revert is removed, with the overlay files ringzero made for it that
// nothing uses any more.
// Commit (virsh blockcommit --active --pivot [--base]): what a disk's overlay holds is written into its backing
// image, which becomes the disk again, so the chain is one image shorter (backups add one image each; chains are
// capped at 16); with a base deeper in the chain, the images between are committed too (bottom-up, so upper content
// wins) and the chain loses all of them at once. The image written must be a pool volume that nothing else reads (no
// other overlay, no other VM's chain), and so must the images between (what they read through it changes); the
// snapshots that froze any of them are no longer what they froze, so their records are dropped. Offline, the
// daemon writes it (src/storage/qcow2.ts commitOverlay); on a running VM its VMM does (control socket disk-commit,
// src/vmm/disk-switch.ts): a first pass while the guest runs, then, paused, what the guest wrote meanwhile, and the
// disk switched to the backing image at the same instant.
//
// Known gap: the VMM switches before the daemon records the new disk paths; a daemon killed in between leaves the
// definition naming the frozen image (the running VMM is right; the next start would write under the overlay).

import fs from 'node:fs';
import path from 'node:path';
import { commitOverlay, createQcow2, imageInfo } from '../storage/qcow2.ts';
import { ManagerError, SNAPSHOT_NAME_PATTERN, SNAPSHOT_NAME_RE, type VmDefinition } from './schema.ts';
import { chainOf, storageToManagerError, tempSibling, VOLUME_NAME_RE, type VolumePool } from './volumes.ts';
import { fsyncDir, removeFileDurable, StateDir } from './store.ts';
import type { VmManager } from './manager.ts';

export interface DiskSnapshotDisk {
  index: number;
  /** The image frozen by the snapshot (read-only backing file from then on). */
  image: string;
  /** The qcow2 overlay created to take the writes. */
  overlay: string;
}

export interface DiskSnapshotView {
  name: string;
  vm: string;
  createdAt: string;
  /** Whether the VM was running (its VMM switched disks) when the snapshot was taken. */
  live: boolean;
  /** How long the guest was paused for the switch, in ms (live snapshots). */
  pausedMs?: number;
  disks: DiskSnapshotDisk[];
  /** Overlays made by reverts to this snapshot. */
  reverts?: string[];
}

export const diskSnapshotCreateSchema = {
  $id: 'DiskSnapshotCreate',
  type: ['object', 'null'],
  additionalProperties: false,
  properties: { name: { type: 'string', pattern: SNAPSHOT_NAME_PATTERN, description: 'default: disk-YYYYMMDD-HHMMSS-mmm' } },
} as const;

export const diskSnapshotSchema = {
  $id: 'DiskSnapshot',
  type: 'object',
  required: ['name', 'vm', 'createdAt', 'live', 'disks'],
  properties: {
    name: { type: 'string', pattern: SNAPSHOT_NAME_PATTERN },
    vm: { type: 'string' },
    createdAt: { type: 'string', format: 'date-time' },
    live: { type: 'boolean', description: 'the VM was running: its VMM switched to the overlays at one instant' },
    pausedMs: { type: 'number', description: 'how long the guest was paused for the switch' },
    disks: {
      type: 'array',
      items: {
        type: 'object', required: ['index', 'image', 'overlay'],
        properties: {
          index: { type: 'integer', description: 'the disk, in definition order (0 = /dev/vda)' },
          image: { type: 'string', description: 'the image frozen by the snapshot (read-only backing file of the overlay)' },
          overlay: { type: 'string', description: 'the qcow2 overlay that took the writes from the snapshot on' },
        },
      },
    },
    reverts: { type: 'array', items: { type: 'string' } },
  },
} as const;

const isActive = (state: string): boolean => state !== 'shut off' && state !== 'crashed';

/** A name in the pool for a new overlay of disk `index` of `vm` (a volume name: at most 80 characters). */
export function overlayName(vm: string, index: number, tag: string): string {
  const name = `${vm}-vd${String.fromCharCode(97 + index)}-${tag}.qcow2`;
  if (!VOLUME_NAME_RE.test(name)) throw new ManagerError('invalid', `the overlay name '${name}' is longer than a volume name may be (80): use a shorter snapshot name`);
  return name;
}

/**
 * Create, in the pool, a qcow2 overlay of each listed disk image (backing file named relative to the pool, so the
 * pool can move). Returns their paths; on failure removes those it made.
 */
export function createOverlays(pool: VolumePool, images: Array<{ index: number; image: string; name: string }>): string[] {
  const made: string[] = [];
  try {
    for (const { image, name } of images) {
      if (pool.exists(name)) throw new ManagerError('conflict', `volume '${name}' already exists`);
      let info;
      try {
        info = imageInfo(image);
      } catch (error) {
        throw storageToManagerError(error, `disk '${image}'`);
      }
      const file = pool.pathOf(name);
      const tmp = tempSibling(file);
      try {
        createQcow2(tmp, { size: info.virtualSize, backingFile: path.basename(image), backingFormat: info.format });
        fs.renameSync(tmp, file);
      } catch (error) {
        fs.rmSync(tmp, { force: true });
        throw storageToManagerError(error, `overlay '${name}'`);
      }
      made.push(file);
    }
    fsyncDir(pool.dir);
    return made;
  } catch (error) {
    for (const file of made) fs.rmSync(file, { force: true });
    throw error;
  }
}

/** The writable disks of a definition; each must be a pool volume. */
export function writableDisks(definition: VmDefinition, pool: VolumePool): Array<{ index: number; image: string }> {
  const out: Array<{ index: number; image: string }> = [];
  definition.disks.forEach((disk, index) => {
    if (disk.readonly) return;
    if (path.resolve(path.dirname(disk.path)) !== path.resolve(pool.dir)) {
      throw new ManagerError('invalid', `disk ${index} of VM '${definition.name}' ('${disk.path}') is not in the storage pool ${pool.dir}: disk snapshots and backups need pool volumes`);
    }
    out.push({ index, image: disk.path });
  });
  return out;
}

/** snap-style time stamp YYYYMMDD-HHMMSS-mmm (UTC). */
export function timeStamp(): string {
  const t = new Date().toISOString();
  return `${t.slice(0, 10).replaceAll('-', '')}-${t.slice(11, 19).replaceAll(':', '')}-${t.slice(20, 23)}`;
}

export class DiskSnapshots {
  readonly dir: string;
  private readonly state: StateDir;
  /** VMs with a disk snapshot or backup in progress (one at a time per VM). */
  readonly busy = new Set<string>();

  constructor(stateRoot: string, private readonly manager: VmManager, private readonly pool: VolumePool) {
    this.dir = path.join(stateRoot, 'disk-snapshots');
    this.state = new StateDir(stateRoot);
  }

  open(): void {
    fs.mkdirSync(this.dir, { recursive: true, mode: 0o700 });
  }

  private vmDir(vm: string): string {
    return path.join(this.dir, vm);
  }

  private recordFile(vm: string, snap: string): string {
    return path.join(this.vmDir(vm), `${snap}.json`);
  }

  private read(vm: string, snap: string): DiskSnapshotView | undefined {
    try {
      return this.state.readJson<DiskSnapshotView>(this.recordFile(vm, snap));
    } catch {
      return undefined;
    }
  }

  list(vm: string): DiskSnapshotView[] {
    this.manager.get(vm);
    let entries: string[];
    try {
      entries = fs.readdirSync(this.vmDir(vm));
    } catch {
      return [];
    }
    return entries.filter((e) => e.endsWith('.json') && SNAPSHOT_NAME_RE.test(e.slice(0, -5)))
      .map((e) => this.read(vm, e.slice(0, -5))).filter((r): r is DiskSnapshotView => r !== undefined)
      .sort((a, b) => a.createdAt.localeCompare(b.createdAt) || a.name.localeCompare(b.name));
  }

  get(vm: string, snap: string): DiskSnapshotView {
    this.manager.get(vm);
    const record = SNAPSHOT_NAME_RE.test(snap) ? this.read(vm, snap) : undefined;
    if (!record) throw new ManagerError('not_found', `VM '${vm}' has no disk snapshot '${snap}'`);
    return record;
  }

  /**
   * Take an external snapshot of the VM's writable disks. A running VM is paused only while its VMM switches to the
   * overlays (pausedMs says how long, measured by the VMM); a shut-off VM's definition is changed.
   */
  async create(vm: string, snapshot?: string): Promise<DiskSnapshotView> {
    const view = this.manager.get(vm);
    const snap = snapshot ?? `disk-${timeStamp()}`;
    if (!SNAPSHOT_NAME_RE.test(snap)) throw new ManagerError('invalid', `invalid snapshot name '${snap}': letters, digits, '_' and '-', at most 63, not starting with '_' or '-'`);
    if (this.read(vm, snap)) throw new ManagerError('conflict', `VM '${vm}' already has a disk snapshot '${snap}'`);
    const live = isActive(view.state);
    if (live && view.state !== 'running' && view.state !== 'paused') throw new ManagerError('conflict', `VM '${vm}' is ${view.state}: wait until it runs or is shut off`);
    const disks = writableDisks(view.definition, this.pool);
    if (disks.length === 0) throw new ManagerError('invalid', `VM '${vm}' has no writable disk to snapshot`);
    if (this.busy.has(vm)) throw new ManagerError('conflict', `a disk snapshot or backup of VM '${vm}' is in progress`);
    this.busy.add(vm);
    try {
      const overlays = createOverlays(this.pool, disks.map((d) => ({ ...d, name: overlayName(vm, d.index, snap) })));
      let pausedMs: number | undefined;
      if (live) {
        try {
          pausedMs = await this.switchRunning(vm, disks.map((d, i) => ({ index: d.index, overlay: overlays[i] })));
        } catch (error) {
          for (const file of overlays) fs.rmSync(file, { force: true });
          throw error;
        }
      }
      const paths = view.definition.disks.map((d) => d.path);
      disks.forEach((d, i) => { paths[d.index] = overlays[i]; });
      this.manager.setDiskPaths(vm, paths);
      const record: DiskSnapshotView = {
        name: snap, vm, createdAt: new Date().toISOString(), live, ...(pausedMs !== undefined ? { pausedMs: round(pausedMs) } : {}),
        disks: disks.map((d, i) => ({ index: d.index, image: d.image, overlay: overlays[i] })),
      };
      fs.mkdirSync(this.vmDir(vm), { recursive: true, mode: 0o700 });
      this.state.writeJson(this.recordFile(vm, snap), record);
      return record;
    } finally {
      this.busy.delete(vm);
    }
  }

  /** The VM is undefined: drop its records (the images stay in the pool as volumes, to be deleted as such). */
  forget(vm: string): void {
    fs.rmSync(this.vmDir(vm), { recursive: true, force: true });
  }

  /** Ask the running VMM to switch disks; returns the pause it measured. */
  async switchRunning(vm: string, switches: Array<{ index: number; overlay: string }>): Promise<number | undefined> {
    let answer: Record<string, unknown>;
    try {
      answer = await this.manager.control(vm, { cmd: 'disk-snapshot', disks: switches }, 60_000);
    } catch (error) {
      throw new ManagerError('snapshot_failed', `VM '${vm}': ${(error as Error).message}`);
    }
    if (answer.ok !== true) throw new ManagerError('snapshot_failed', `VM '${vm}': ${String(answer.error ?? 'the VMM refused the disk snapshot')}`);
    return typeof answer.pausedMs === 'number' ? answer.pausedMs : undefined;
  }

  /** Make a shut-off VM's disks a fresh overlay of the snapshot's frozen images (the current state is discarded). */
  revert(vm: string, snap: string): DiskSnapshotView {
    const record = this.get(vm, snap);
    const view = this.manager.get(vm);
    if (isActive(view.state)) throw new ManagerError('conflict', `VM '${vm}' is ${view.state}: shut it off before reverting its disks`);
    if (this.busy.has(vm)) throw new ManagerError('conflict', `a disk snapshot or backup of VM '${vm}' is in progress`);
    for (const d of record.disks) {
      if (d.index >= view.definition.disks.length) throw new ManagerError('conflict', `VM '${vm}' no longer has disk ${d.index}`);
      if (!fs.existsSync(d.image)) throw new ManagerError('not_found', `the frozen image '${d.image}' of snapshot '${snap}' is gone`);
    }
    const discarded = record.disks.map((d) => view.definition.disks[d.index].path);
    const tag = `${snap}-r${Date.now().toString(36)}`;
    const overlays = createOverlays(this.pool, record.disks.map((d) => ({ index: d.index, image: d.image, name: overlayName(vm, d.index, tag) })));
    const paths = view.definition.disks.map((d) => d.path);
    record.disks.forEach((d, i) => { paths[d.index] = overlays[i]; });
    this.manager.setDiskPaths(vm, paths);
    const updated: DiskSnapshotView = { ...record, reverts: [...(record.reverts ?? []), ...overlays] };
    this.state.writeJson(this.recordFile(vm, snap), updated);
    this.collect(vm, discarded);
    return updated;
  }

  /** Delete a snapshot that nothing depends on (see the header); refuses one whose frozen images are in use. */
  delete(vm: string, snap: string): void {
    const record = this.get(vm, snap);
    const inChains = this.definedChains();
    for (const d of record.disks) {
      if (inChains.has(realOr(d.image))) {
        throw new ManagerError('conflict', `disk snapshot '${snap}' of VM '${vm}' has dependants: its image '${path.basename(d.image)}' is in the backing chain of a VM's disk (commit the disk into it first: ringzero blockcommit; or revert to an earlier snapshot to abandon it)`);
      }
    }
    removeFileDurable(this.recordFile(vm, snap));
    const madeForIt = [...record.disks.map((d) => d.overlay), ...(record.reverts ?? [])];
    this.collect(vm, [...madeForIt, ...record.disks.map((d) => d.image)], madeForIt);
  }

  /**
   * Block commit of disk `disk` (an index, or vda, vdb, ...) of VM `vm`: see the header. `base` (a pool volume's name
   * or a path; virsh blockcommit --base) is the image of the disk's backing chain to commit into, the images between
   * committed too; default: the overlay's backing file. With `remove`, the committed files are deleted afterwards
   * when nothing else needs them (virsh blockcommit --delete); else they stay in the pool (the top one is still a valid
   * overlay of the image it was committed into; the ones between are not: their base now holds upper content).
   */
  async commit(vm: string, disk: string | number, remove = false, base?: string): Promise<BlockCommitResult> {
    const view = this.manager.get(vm);
    const index = diskIndex(disk);
    if (index === undefined) throw new ManagerError('invalid', `invalid disk '${disk}': vda, vdb, ... or a number from 0`);
    const current = view.definition.disks[index];
    if (!current) throw new ManagerError('not_found', `VM '${vm}' has no disk ${diskName(index)}`);
    if (current.readonly) throw new ManagerError('invalid', `disk ${diskName(index)} of VM '${vm}' is read-only: it has no writes to commit`);
    const live = isActive(view.state);
    if (live && view.state !== 'running' && view.state !== 'paused') throw new ManagerError('conflict', `VM '${vm}' is ${view.state}: wait until it runs or is shut off`);
    let info;
    try {
      info = imageInfo(current.path);
    } catch (error) {
      throw storageToManagerError(error, `disk ${diskName(index)} of VM '${vm}'`);
    }
    if (info.format !== 'qcow2' || info.backingPath === undefined) {
      throw new ManagerError('invalid', `disk ${diskName(index)} of VM '${vm}' ('${path.basename(current.path)}') has no backing file: there is nothing to commit it into`);
    }
    const overlay = realOr(current.path);
    // The chain, top down: [overlay, its backing, ...]; the image committed into is chain[depth].
    const chain = chainOf(current.path);
    let depth = 1;
    if (base !== undefined) {
      if (base.includes('/') && !path.isAbsolute(base)) throw new ManagerError('invalid', `invalid base '${base}': a pool volume's name or an absolute path`);
      const wanted = realOr(base.includes('/') ? base : this.pool.pathOf(base));
      depth = chain.indexOf(wanted);
      const shown = chain.map((f) => path.basename(f)).join(' -> ');
      if (depth === 0) throw new ManagerError('invalid', `'${base}' is disk ${diskName(index)} itself: nothing is above it to commit (chain: ${shown})`);
      if (depth < 0) throw new ManagerError('invalid', `'${base}' is not in the backing chain of disk ${diskName(index)} of VM '${vm}' (chain: ${shown})`);
    }
    const into = chain[depth];
    const between = chain.slice(1, depth);
    if (path.dirname(into) !== realOr(this.pool.dir)) {
      throw new ManagerError('conflict', `the image to commit into ('${into}') is not a volume of the pool (a template's disk, or a file of your own): commit writes only into pool volumes`);
    }
    // Nothing else may read the image written, nor the images between (what they read through it changes).
    for (let i = 1; i <= depth; i++) {
      const others = this.pool.overlaysOf(chain[i]).filter((name) => realOr(this.pool.pathOf(name)) !== chain[i - 1]);
      if (others.length > 0) {
        throw new ManagerError('conflict', `'${path.basename(chain[i])}' is also the backing file of volume(s) ${others.join(', ')}: committing into ${i === depth ? 'it' : `'${path.basename(into)}' below it`} would change what they read`);
      }
    }
    for (const other of this.manager.list()) {
      const chains = other.definition.disks.filter((d, i) => other.name !== vm || i !== index).flatMap((d) => chainOf(d.path));
      const shared = chain.slice(1, depth + 1).find((f) => chains.includes(f));
      if (shared !== undefined) throw new ManagerError('conflict', `'${path.basename(shared)}' is in the backing chain of a disk of VM '${other.name}'`);
    }
    if (this.busy.has(vm)) throw new ManagerError('conflict', `a disk snapshot, backup or commit of VM '${vm}' is in progress`);
    this.busy.add(vm);
    try {
      let result: { dataBytes: number; zeroBytes: number; pausedMs?: number; pausedBytes?: number };
      if (live) {
        let answer: Record<string, unknown>;
        try {
          // The copy runs with the guest paused: allow a slow disk (1 s per 10 MiB the overlay holds, at least 60 s).
          const bytes = [overlay, ...between].reduce((sum, f) => sum + imageInfo(f).actualSize, 0);
          answer = await this.manager.control(vm, { cmd: 'disk-commit', index, ...(depth > 1 ? { base: into } : {}) }, Math.max(60_000, bytes / 10_000));
        } catch (error) {
          throw new ManagerError('snapshot_failed', `VM '${vm}': ${(error as Error).message}`);
        }
        if (answer.ok !== true) throw new ManagerError('snapshot_failed', `VM '${vm}': ${String(answer.error ?? 'the VMM refused the commit')}`);
        result = {
          dataBytes: Number(answer.dataBytes ?? 0), zeroBytes: Number(answer.zeroBytes ?? 0),
          ...(typeof answer.pausedMs === 'number' ? { pausedMs: round(answer.pausedMs) } : {}),
          ...(typeof answer.pausedBytes === 'number' ? { pausedBytes: answer.pausedBytes } : {}),
        };
      } else {
        try {
          result = commitOverlay(current.path, depth > 1 ? into : undefined);
        } catch (error) {
          throw storageToManagerError(error, `committing disk ${diskName(index)} of VM '${vm}'`);
        }
      }
      const paths = view.definition.disks.map((d) => d.path);
      paths[index] = into;
      this.manager.setDiskPaths(vm, paths);
      // The snapshots that froze the image written into, or an image between (it reads through it), are no longer
      // what they froze.
      const stale = new Set(chain.slice(1, depth + 1));
      const dropped: string[] = [];
      for (const record of this.list(vm)) {
        if (record.disks.some((d) => stale.has(realOr(d.image)))) {
          removeFileDurable(this.recordFile(vm, record.name));
          dropped.push(record.name);
        }
      }
      // --delete: the overlay, then each image between, when nothing else needs it.
      const removedFiles: string[] = [];
      if (remove) {
        for (const file of [overlay, ...between]) {
          if (this.definedChains().has(file) || this.pool.overlaysOf(file).length > 0
            || this.manager.list().some((v) => this.list(v.name).some((r) => r.disks.some((d) => realOr(d.image) === file)))) break;
          removeFileDurable(file);
          removedFiles.push(file);
        }
      }
      return {
        vm, disk: diskName(index), index, live, committed: overlay, into, intermediates: between, dataBytes: result.dataBytes, zeroBytes: result.zeroBytes,
        ...(result.pausedMs !== undefined ? { pausedMs: result.pausedMs } : {}), ...(result.pausedBytes !== undefined ? { pausedBytes: result.pausedBytes } : {}),
        removed: removedFiles.includes(overlay), removedFiles, droppedSnapshots: dropped,
      };
    } finally {
      this.busy.delete(vm);
    }
  }

  /** Every file in the backing chain of some defined VM's disk. */
  private definedChains(): Set<string> {
    const out = new Set<string>();
    for (const v of this.manager.list()) for (const disk of v.definition.disks) for (const f of chainOf(disk.path)) out.add(f);
    return out;
  }

  /**
   * Remove the candidate files that ringzero made as overlays (some record's overlay or revert, or no longer any) and
   * that nothing needs: no VM's chain holds them, no remaining snapshot froze them, no volume is an overlay of them.
   */
  private collect(vm: string, candidates: string[], alsoMade: string[] = []): void {
    const made = new Set<string>(alsoMade.map(realOr));
    const frozen = new Set<string>();
    for (const r of this.list(vm)) {
      for (const d of r.disks) { made.add(realOr(d.overlay)); frozen.add(realOr(d.image)); }
      for (const f of r.reverts ?? []) made.add(realOr(f));
    }
    const pending = new Set(candidates.filter((f) => path.resolve(path.dirname(f)) === path.resolve(this.pool.dir)).map(realOr));
    for (let changed = true; changed;) {
      changed = false;
      const chains = this.definedChains();
      for (const file of pending) {
        if (!fs.existsSync(file)) { pending.delete(file); continue; }
        // An original volume (not an overlay ringzero made) is never removed here.
        if (!made.has(file)) { pending.delete(file); continue; }
        if (chains.has(file) || frozen.has(file) || this.pool.overlaysOf(file).length > 0) continue;
        fs.rmSync(file, { force: true });
        pending.delete(file);
        changed = true;
      }
    }
    fsyncDir(this.pool.dir);
  }
}

export interface BlockCommitResult {
  vm: string;
  /** vda, vdb, ... */
  disk: string;
  index: number;
  /** Whether the VM was running (its VMM committed, paused, and switched the disk). */
  live: boolean;
  /** The overlay whose content was committed, and the image it went into (the disk from now on). */
  committed: string;
  into: string;
  /** The images between the overlay and the one written into (--base), top down: their content was committed too. */
  intermediates: string[];
  dataBytes: number;
  zeroBytes: number;
  pausedMs?: number;
  /** Bytes copied with the guest paused: what it wrote while the rest was copied (running VM). */
  pausedBytes?: number;
  /** Whether the overlay file was deleted (remove asked for, and nothing else needs it). */
  removed: boolean;
  /** Every file deleted: the overlay, then the images between that nothing else needed. */
  removedFiles: string[];
  /** Disk snapshots dropped: they froze the image that was written into. */
  droppedSnapshots: string[];
}

export const blockCommitSchema = {
  $id: 'BlockCommit',
  type: ['object', 'null'],
  additionalProperties: false,
  properties: {
    delete: { type: 'boolean', default: false, description: 'delete the committed files afterwards (the overlay, and with base the images between) when nothing else needs them (virsh blockcommit --delete)' },
    base: { type: 'string', minLength: 1, maxLength: 4096, description: 'the image of the disk\'s backing chain to commit into (virsh blockcommit --base), a pool volume\'s name or a path; the images between are committed too. Default: the overlay\'s backing file' },
  },
} as const;

export const blockCommitResultSchema = {
  $id: 'BlockCommitResult',
  type: 'object',
  required: ['vm', 'disk', 'index', 'live', 'committed', 'into', 'intermediates', 'dataBytes', 'zeroBytes', 'removed', 'removedFiles', 'droppedSnapshots'],
  properties: {
    vm: { type: 'string' }, disk: { type: 'string' }, index: { type: 'integer' }, live: { type: 'boolean' },
    committed: { type: 'string', description: 'the overlay whose content was written into its backing image' },
    into: { type: 'string', description: 'the image written into: the disk from now on' },
    intermediates: { type: 'array', items: { type: 'string' }, description: 'the images between (base), top down, committed too' },
    dataBytes: { type: 'integer' }, zeroBytes: { type: 'integer' },
    pausedMs: { type: 'number', description: 'how long the guest was paused (running VM)' },
    pausedBytes: { type: 'integer', description: 'bytes copied while paused: what the guest wrote during the copy (running VM)' },
    removed: { type: 'boolean' }, removedFiles: { type: 'array', items: { type: 'string' } }, droppedSnapshots: { type: 'array', items: { type: 'string' } },
  },
} as const;

/** "vda".."vdx" or "0".."23" to a disk index. */
export function diskIndex(disk: string | number): number | undefined {
  if (typeof disk === 'number') return Number.isInteger(disk) && disk >= 0 && disk < 26 ? disk : undefined;
  const named = /^vd([a-z])$/.exec(disk);
  if (named) return named[1].charCodeAt(0) - 97;
  return /^\d{1,2}$/.test(disk) ? Number(disk) : undefined;
}

export function diskName(index: number): string {
  return `vd${String.fromCharCode(97 + index)}`;
}

function realOr(file: string): string {
  try {
    return fs.realpathSync(file);
  } catch {
    return path.resolve(file);
  }
}

function round(ms: number): number {
  return Math.round(ms * 100) / 100;
}
