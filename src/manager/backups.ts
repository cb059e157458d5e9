// Consistent backups of a running VM, and restore from them (also under a new name: a clone from a backup).
//
// One instant for memory and disks: the daemon creates a qcow2 overlay of each writable disk in the pool, then asks
// the VMM to pause, to write a VM snapshot (vCPUs, devices, memory: src/vmm/snapshot.ts) into the backup directory
// while still paused, and to switch its disks to the overlays (src/vmm/disk-switch.ts), then to resume. The guest is
// held only for those three control requests (the pause is measured and reported); afterwards the frozen images are
// read-only backing files that nothing writes, and are copied (flattened, standalone) into the backup directory while
// the guest runs on. Guest writes still in its page cache are in the memory image, so memory and disks agree.
//
// The backup directory is self-describing: manifest.json ({format:'ringzero-backup', version, id, vm, createdAt,
// pausedMs, definition, state: the VM snapshot's files, disks: [{index, file, format, virtualSize, bytes, sha256}]}),
// every file named there with its SHA-256. Backups live in DIR/backups/ID, or under --to DIR (then DIR/backups/ID.ref
// names that directory, so list finds it).
//
// Restore checks every checksum first, copies the disks into the pool (NAME-vdX-from-ID.qcow2), writes a VM snapshot whose
// state names those copies into snapshots/NAME/ID, and starts the VM from it: the guest carries on from the saved
// instant. Into the original VM (shut off; the old disk files are left in the pool) or as a new VM (`as`: its own
// copies of the disks). A clone of a VM with network cards gets its own TAP per card (`nics`, --nic, in the order of
// the backup's cards) and a new MAC in its definition; the running clone's guest keeps the saved MAC until its next
// boot from the definition (its driver read the MAC at initialization, virtio 1.2 §5.1.4).
//
// Known limits: the VM runs on the overlay afterwards (no block commit): every backup adds one image to its disks'
// backing chains (at most 16 deep); copies and checksums run on the daemon's thread (it stalls for large disks).
// Either engine: a KVM VM's VMM pauses, snapshots (the format both engines share) and switches its disks as the soft
// engine's does, and a restore runs on the engine the snapshot names (test/manager-kvm-backup.test.ts).

import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { preadFully, pwriteFully } from '../sys/file-io.ts';
import { copyImage, imageInfo } from '../storage/qcow2.ts';
import { ManagerError, nicSchema, SNAPSHOT_NAME_PATTERN, SNAPSHOT_NAME_RE, VM_NAME_PATTERN, VM_NAME_RE, type NicDefinition, type VmDefinition } from './schema.ts';
import { completeNics, macsOf } from './nics.ts';
import { MAX_NICS } from '../vmm/config.ts';
import { storageToManagerError, tempSibling, type VolumePool } from './volumes.ts';
import { fsyncDir, StateDir } from './store.ts';
import { createOverlays, overlayName, timeStamp, writableDisks } from './disk-snapshots.ts';
import type { VmManager, VmView } from './manager.ts';

export const BACKUP_FORMAT = 'ringzero-backup';
export const BACKUP_VERSION = 1;
const MANIFEST = 'manifest.json';
const STATE_DIR = 'state';

export interface BackupFile {
  /** Relative to the backup directory. */
  file: string;
  bytes: number;
  sha256: string;
}

export interface BackupDisk extends BackupFile {
  index: number;
  format: 'raw' | 'qcow2';
  virtualSize: number;
  readonly: boolean;
  /** The image the VM had (frozen at the backup's instant). */
  source: string;
}

export interface BackupManifest {
  format: typeof BACKUP_FORMAT;
  version: number;
  id: string;
  vm: string;
  createdAt: string;
  /** How long the guest was paused (pause, snapshot, disk switch, resume), measured by the daemon, in ms. */
  pausedMs: number;
  definition: VmDefinition;
  /** The VM snapshot's files (state.json, memory) under state/. */
  state: BackupFile[];
  disks: BackupDisk[];
  /**
   * SHA-256 of this manifest without this field (its compact JSON, keys in order), so that a damaged manifest (the
   * definition a restore defines the VM from, a file's size or digest) is refused, as its files are. Manifests
   * written before it was added have none and are read as they were.
   */
  sha256?: string;
}

export interface BackupView extends BackupManifest {
  path: string;
  bytes: number;
}

export const backupCreateSchema = {
  $id: 'BackupCreate',
  type: 'object',
  additionalProperties: false,
  required: ['vm'],
  properties: {
    vm: { type: 'string', pattern: VM_NAME_PATTERN, description: 'the running VM to back up' },
    to: { type: 'string', pattern: '^/', maxLength: 3800, description: 'absolute directory to put the backup in (default: the state directory\'s backups/)' },
  },
} as const;

export const backupRestoreSchema = {
  $id: 'BackupRestore',
  type: ['object', 'null'],
  additionalProperties: false,
  properties: {
    as: { type: 'string', pattern: VM_NAME_PATTERN, description: 'restore as a new VM of this name (a clone: its own copies of the disks); default: into the backed-up VM, which must be shut off' },
    nics: {
      type: 'array', maxItems: MAX_NICS, items: nicSchema,
      description: 'with "as", for a backup of a VM with network cards: one per card, in the order of the backup\'s cards (as many as it has), each the clone\'s own TAP and optionally its new MAC (default: one derived from the new name). '
        + 'The definition gets the new MAC; the restored guest\'s driver read the saved one at its initialization (virtio 1.2 §5.1.4) and keeps sending with it until the clone is next booted from its definition: keep the clone\'s TAP on another bridge or namespace until then',
    },
  },
} as const;

const fileSchema = { type: 'object', required: ['file', 'bytes', 'sha256'], properties: { file: { type: 'string' }, bytes: { type: 'integer' }, sha256: { type: 'string' } } } as const;

export const backupSchema = {
  $id: 'Backup',
  type: 'object',
  required: ['id', 'vm', 'createdAt', 'pausedMs', 'path', 'disks', 'state'],
  properties: {
    id: { type: 'string', pattern: SNAPSHOT_NAME_PATTERN },
    vm: { type: 'string' },
    createdAt: { type: 'string', format: 'date-time' },
    pausedMs: { type: 'number', description: 'how long the guest was paused for the backup\'s instant' },
    path: { type: 'string', description: 'the backup directory' },
    bytes: { type: 'integer', description: 'space the backup takes' },
    format: { type: 'string' },
    version: { type: 'integer' },
    sha256: { type: 'string', description: 'the manifest\'s own SHA-256 (without this field)' },
    definition: { type: 'object', description: 'the VM definition at the backup\'s instant' },
    state: { type: 'array', items: fileSchema },
    disks: {
      type: 'array',
      items: {
        type: 'object',
        properties: { ...fileSchema.properties, index: { type: 'integer' }, format: { type: 'string' }, virtualSize: { type: 'integer' }, readonly: { type: 'boolean' }, source: { type: 'string' } },
      },
    },
  },
} as const;

const isActive = (state: string): boolean => state !== 'shut off' && state !== 'crashed';

export class BackupStore {
  readonly dir: string;
  private readonly state: StateDir;

  constructor(stateRoot: string, private readonly manager: VmManager, private readonly pool: VolumePool, private readonly log: (line: string) => void) {
    this.dir = path.join(stateRoot, 'backups');
    this.state = new StateDir(stateRoot);
  }

  /** Create the directory; remove backups a crash left half-written (.ID.tmp-PID-N). */
  open(): void {
    fs.mkdirSync(this.dir, { recursive: true, mode: 0o700 });
    for (const entry of fs.readdirSync(this.dir)) {
      if (entry.startsWith('.') && entry.includes('.tmp-')) fs.rmSync(path.join(this.dir, entry), { recursive: true, force: true });
    }
  }

  /** Where backup ID is: DIR/backups/ID, or the directory its .ref names. */
  private locate(id: string): string | undefined {
    if (!SNAPSHOT_NAME_RE.test(id)) return undefined;
    const inside = path.join(this.dir, id);
    if (fs.existsSync(path.join(inside, MANIFEST))) return inside;
    try {
      const ref = fs.readFileSync(path.join(this.dir, `${id}.ref`), 'utf8').trim();
      if (fs.existsSync(path.join(ref, MANIFEST))) return ref;
    } catch {
      // no reference
    }
    return undefined;
  }

  private ids(): string[] {
    const out = new Set<string>();
    for (const entry of fs.readdirSync(this.dir)) {
      const id = entry.endsWith('.ref') ? entry.slice(0, -4) : entry;
      if (SNAPSHOT_NAME_RE.test(id) && this.locate(id)) out.add(id);
    }
    return [...out];
  }

  list(vm?: string): BackupView[] {
    const views: BackupView[] = [];
    for (const id of this.ids()) {
      try {
        const view = this.get(id);
        if (vm === undefined || view.vm === vm) views.push(view);
      } catch (error) {
        this.log(`backup '${id}': ${(error as Error).message}`);
      }
    }
    return views.sort((a, b) => a.createdAt.localeCompare(b.createdAt) || a.id.localeCompare(b.id));
  }

  get(id: string): BackupView {
    const dir = this.locate(id);
    if (!dir) throw new ManagerError('not_found', `no backup '${id}'`);
    const manifest = readManifest(dir);
    const bytes = [...manifest.state, ...manifest.disks].reduce((sum, f) => sum + allocated(path.join(dir, f.file)), 0);
    return { ...manifest, path: dir, bytes };
  }

  /** Back up a running VM: memory, devices and disks at one instant (see the header). */
  async create(vm: string, to?: string): Promise<BackupView> {
    const view = this.manager.get(vm);
    if (view.state !== 'running') throw new ManagerError('conflict', `VM '${vm}' is ${view.state}: only a running VM can be backed up (a shut-off VM's disks can be copied as they are)`);
    if (to !== undefined && (!path.isAbsolute(to) || to.includes('\0'))) throw new ManagerError('invalid', `--to '${to}' is not an absolute directory`);
    const disks = writableDisks(view.definition, this.pool);
    const busy = this.manager.diskSnapshots.busy;
    if (busy.has(vm)) throw new ManagerError('conflict', `a disk snapshot or backup of VM '${vm}' is in progress`);
    let id = `bk-${timeStamp()}`;
    if (this.locate(id)) id = `${id}-${crypto.randomBytes(2).toString('hex')}`;
    const parent = to ?? this.dir;
    const finalDir = path.join(parent, id);
    if (fs.existsSync(finalDir)) throw new ManagerError('conflict', `'${finalDir}' already exists`);
    try {
      fs.mkdirSync(parent, { recursive: true, mode: 0o700 });
    } catch (error) {
      throw new ManagerError('invalid', `cannot make the backup directory '${parent}': ${(error as NodeJS.ErrnoException).code ?? (error as Error).message}`);
    }
    const work = path.join(parent, `.${id}.tmp-${process.pid}-${Date.now()}`);
    busy.add(vm);
    try {
      fs.mkdirSync(work, { mode: 0o700 });
      const overlays = createOverlays(this.pool, disks.map((d) => ({ ...d, name: overlayName(vm, d.index, id) })));
      // The instant: pause, VM snapshot (stays paused), switch disks, resume.
      let pausedMs: number;
      let switched = false;
      const started = performance.now();
      let paused = false;
      try {
        await this.request(vm, { cmd: 'pause' });
        paused = true;
        await this.request(vm, { cmd: 'snapshot', dir: path.join(work, STATE_DIR) }, 60_000 + view.definition.memory * 100);
        if (disks.length > 0) {
          await this.request(vm, { cmd: 'disk-snapshot', disks: disks.map((d, i) => ({ index: d.index, overlay: overlays[i] })) });
          switched = true;
        }
      } finally {
        if (paused) {
          try {
            await this.request(vm, { cmd: 'resume' });
          } catch (error) {
            this.log(`VM '${vm}': resume after the backup's pause failed: ${(error as Error).message}`);
          }
        }
        pausedMs = performance.now() - started;
        if (!switched) for (const file of overlays) fs.rmSync(file, { force: true });
      }
      const paths = view.definition.disks.map((d) => d.path);
      disks.forEach((d, i) => { paths[d.index] = overlays[i]; });
      if (switched) this.manager.setDiskPaths(vm, paths);

      // The guest runs on; the frozen images are only read from now on.
      const state = fs.readdirSync(path.join(work, STATE_DIR)).sort().map((file) => describe(work, path.join(STATE_DIR, file)));
      const backupDisks: BackupDisk[] = [];
      for (const [index, disk] of view.definition.disks.entries()) {
        let info;
        try {
          info = imageInfo(disk.path);
        } catch (error) {
          throw storageToManagerError(error, `disk '${disk.path}'`);
        }
        const file = `disk${index}.${info.format}`;
        try {
          copyImage(disk.path, path.join(work, file), info.format);
        } catch (error) {
          throw storageToManagerError(error, `copying disk '${disk.path}'`);
        }
        backupDisks.push({ index, format: info.format, virtualSize: info.virtualSize, readonly: disk.readonly, source: disk.path, ...describe(work, file) });
      }
      const unsealed: BackupManifest = {
        format: BACKUP_FORMAT, version: BACKUP_VERSION, id, vm, createdAt: new Date().toISOString(), pausedMs: Math.round(pausedMs * 100) / 100,
        definition: view.definition, state, disks: backupDisks,
      };
      const manifest: BackupManifest = { ...unsealed, sha256: manifestDigest(unsealed) };
      fs.writeFileSync(path.join(work, MANIFEST), `${JSON.stringify(manifest, null, 2)}\n`, { mode: 0o600 });
      syncTree(work);
      fs.renameSync(work, finalDir);
      fsyncDir(parent);
      if (to !== undefined) {
        const ref = path.join(this.dir, `${id}.ref`);
        fs.writeFileSync(ref, `${finalDir}\n`, { mode: 0o600 });
        fsyncDir(this.dir);
      }
      this.log(`VM '${vm}': backup '${id}' in ${finalDir} (guest paused ${manifest.pausedMs} ms)`);
      return this.get(id);
    } catch (error) {
      fs.rmSync(work, { recursive: true, force: true });
      throw error;
    } finally {
      busy.delete(vm);
    }
  }

  private async request(vm: string, request: Record<string, unknown>, timeoutMs = 30_000): Promise<Record<string, unknown>> {
    let answer: Record<string, unknown>;
    try {
      answer = await this.manager.control(vm, request, timeoutMs);
    } catch (error) {
      throw new ManagerError('snapshot_failed', `VM '${vm}': ${(error as Error).message}`);
    }
    if (answer.ok !== true) throw new ManagerError('snapshot_failed', `VM '${vm}': ${request.cmd as string}: ${String(answer.error ?? 'refused')}`);
    return answer;
  }

  /**
   * Bring the backed-up VM back from the saved instant: into `as` (a new VM, defined here), or into the original VM
   * (defined and shut off, or no longer defined). Every checksum is verified before anything is written.
   */
  async restore(id: string, as?: string, nics?: NicDefinition[]): Promise<VmView & { backup: string }> {
    const backup = this.get(id);
    const target = as ?? backup.vm;
    if (!VM_NAME_RE.test(target)) throw new ManagerError('invalid', `invalid VM name '${target}'`);
    let existing: VmView | undefined;
    try {
      existing = this.manager.get(target);
    } catch {
      existing = undefined;
    }
    if (as !== undefined && existing) throw new ManagerError('conflict', `VM '${as}' is already defined: restore as a new name, or without --as into the original VM`);
    const savedNics = backup.definition.nics ?? [];
    if (as === undefined && nics !== undefined) throw new ManagerError('invalid', 'nics (--nic) name a clone\'s TAPs: give them with as (--as NAME); a restore into the backed-up VM keeps its cards');
    // A clone of a VM with network cards: its own TAP per card (a TAP carries one VM's card at a time, and the
    // original's would put the clone on the original's segment) and a new MAC in its definition (completeNics: the
    // given one, or a default derived from the new name that no defined VM and not the backup has), as virt-clone does.
    let cloneNics: NicDefinition[] | undefined;
    if (as !== undefined && (savedNics.length > 0 || (nics?.length ?? 0) > 0)) {
      const given = nics ?? [];
      if (given.length !== savedNics.length) {
        throw new ManagerError('invalid', `backup '${id}' has ${savedNics.length} network card(s) and ${given.length} were given (--nic tap=NAME[,mac=MAC]): give one per card, in the order of the backup's cards, each the clone's own TAP`);
      }
      const savedMacs = new Set(savedNics.map((n) => n.mac?.toLowerCase()));
      for (const [i, nic] of given.entries()) {
        if (typeof nic?.mac === 'string' && savedMacs.has(nic.mac.toLowerCase())) throw new ManagerError('conflict', `nics[${i}]: MAC ${nic.mac.toLowerCase()} is the backed-up guest's: a clone gets its own`);
        if (savedNics.some((n) => n.tap === nic?.tap)) throw new ManagerError('invalid', `nics[${i}]: TAP '${nic.tap}' is the backed-up VM's: a clone gets its own TAP`);
      }
      const taken = macsOf(this.manager.list().map((v) => v.definition));
      for (const n of savedNics) if (n.mac !== undefined && !taken.has(n.mac.toLowerCase())) taken.set(n.mac.toLowerCase(), backup.vm);
      cloneNics = completeNics({ ...backup.definition, name: as, nics: given.map((n) => ({ tap: n.tap, ...(n.mac !== undefined ? { mac: n.mac } : {}) })) }, taken).nics;
    }
    if (existing && isActive(existing.state)) throw new ManagerError('conflict', `VM '${target}' is ${existing.state}: shut it off before restoring a backup into it`);
    if (existing && existing.definition.disks.length !== backup.disks.length) throw new ManagerError('conflict', `VM '${target}' has ${existing.definition.disks.length} disks, the backup ${backup.disks.length}`);
    const snapDir = this.state.snapshotDir(target, id);
    if (fs.existsSync(snapDir)) throw new ManagerError('conflict', `VM '${target}' already has a snapshot '${id}' (restored from this backup before?): delete it first`);

    // Everything checked before anything is written.
    for (const f of [...backup.state, ...backup.disks]) {
      const file = path.join(backup.path, f.file);
      const digest = sha256File(file);
      if (digest !== f.sha256) throw new ManagerError('corrupt', `backup '${id}' is damaged: ${f.file} does not match its SHA-256`);
    }
    const stateFile = backup.state.find((f) => path.basename(f.file) === 'state.json');
    if (!stateFile) throw new ManagerError('corrupt', `backup '${id}' has no state.json`);
    const { dataExtents, openState, sealState, memoryMtimeNs } = await import('../vmm/snapshot.ts');
    let body;
    try {
      body = openState(JSON.parse(fs.readFileSync(path.join(backup.path, stateFile.file), 'utf8')), `backup '${id}'`, stateFile.file);
    } catch (error) {
      throw new ManagerError('corrupt', (error as Error).message);
    }
    if (body.memory.base) throw new ManagerError('corrupt', `backup '${id}' holds a diff snapshot`);

    const made: string[] = [];
    let defined = false;
    try {
      // The disks: own copies in the pool.
      const copies: string[] = [];
      for (const disk of backup.disks) {
        // Not NAME-vdX-ID.qcow2: that is the overlay the backup itself switched the VM to.
        const name = overlayName(target, disk.index, `from-${id}`).replace(/\.qcow2$/, `.${disk.format}`);
        if (this.pool.exists(name)) throw new ManagerError('conflict', `volume '${name}' already exists`);
        const file = this.pool.pathOf(name);
        const tmp = tempSibling(file);
        fs.copyFileSync(path.join(backup.path, disk.file), tmp, fs.constants.COPYFILE_EXCL | fs.constants.COPYFILE_FICLONE);
        syncFile(tmp);
        fs.renameSync(tmp, file);
        made.push(file);
        copies.push(file);
      }
      fsyncDir(this.pool.dir);
      // The VM snapshot, naming those copies.
      // A clone's cards open its own TAPs; their MACs stay as saved: the guest's driver read them at its
      // initialization (virtio 1.2 §5.1.4, no device-to-driver MAC change) and the saved device state is checked
      // against them (src/devices/virtio/net.ts). The definition's new MACs take effect at the clone's next boot.
      if (cloneNics !== undefined && (body.config.nets ?? []).length !== cloneNics.length) {
        throw new ManagerError('corrupt', `backup '${id}': its state has ${(body.config.nets ?? []).length} network card(s), its definition ${cloneNics.length}`);
      }
      const nets = cloneNics !== undefined ? { nets: (body.config.nets ?? []).map((n, i) => ({ ...n, tap: cloneNics[i].tap })) } : {};
      const config = { ...body.config, ...nets, disks: (body.config.disks ?? []).map((d, i) => ({ ...d, path: copies[i] ?? d.path })) };
      fs.mkdirSync(this.state.vmSnapshotsDir(target), { recursive: true, mode: 0o700 });
      const tmpSnap = path.join(this.state.vmSnapshotsDir(target), `${id}.tmp-${process.pid}-${Date.now()}`);
      fs.mkdirSync(tmpSnap, { mode: 0o700 });
      made.push(tmpSnap);
      for (const f of backup.state) {
        if (path.basename(f.file) === 'state.json') continue;
        copySparse(path.join(backup.path, f.file), path.join(tmpSnap, path.basename(f.file)), dataExtents);
      }
      // (the copy's own modification time: its source was verified above, so the restore maps it without reading it)
      const copied = path.join(tmpSnap, path.basename(body.memory.file));
      const memory = fs.existsSync(copied) ? { ...body.memory, mtimeNs: memoryMtimeNs(copied) } : body.memory;
      fs.writeFileSync(path.join(tmpSnap, 'state.json'), JSON.stringify(sealState({ ...body, config, memory })), { mode: 0o600 });
      syncTree(tmpSnap);
      fs.renameSync(tmpSnap, snapDir);
      made[made.length - 1] = snapDir;
      fsyncDir(path.dirname(snapDir));
      // The definition: the backup's, under the target name, with the copies as its disks.
      const disks = backup.definition.disks.map((d, i) => ({ ...d, path: copies[i] }));
      if (existing) {
        this.manager.setDiskPaths(target, disks.map((d) => d.path));
      } else {
        this.manager.define({ ...backup.definition, name: target, disks, autostart: false, ...(cloneNics !== undefined ? { nics: cloneNics } : {}) });
        defined = true;
      }
      const started = await this.manager.start(target, snapDir);
      return { ...started, backup: id };
    } catch (error) {
      for (const file of made.reverse()) fs.rmSync(file, { recursive: true, force: true });
      if (defined) {
        try { this.manager.undefine(target); } catch (undefineError) { this.log(`restore of backup '${id}': cannot undefine '${target}' again: ${(undefineError as Error).message}`); }
      }
      throw error;
    }
  }
}

function readManifest(dir: string): BackupManifest {
  let manifest: BackupManifest;
  try {
    manifest = JSON.parse(fs.readFileSync(path.join(dir, MANIFEST), 'utf8')) as BackupManifest;
  } catch (error) {
    throw new ManagerError('corrupt', `backup ${dir}: ${MANIFEST} cannot be read (${(error as Error).message})`);
  }
  if (manifest?.format !== BACKUP_FORMAT) throw new ManagerError('corrupt', `backup ${dir} is not a ringzero backup`);
  if (manifest.version !== BACKUP_VERSION) throw new ManagerError('unsupported', `backup ${dir} has format version ${manifest.version}; this ringzero reads version ${BACKUP_VERSION}`);
  if (manifest.sha256 !== undefined) {
    const { sha256, ...unsealed } = manifest;
    if (manifestDigest(unsealed) !== sha256) throw new ManagerError('corrupt', `backup ${dir} is damaged: ${MANIFEST} does not match its SHA-256`);
  }
  const files = [...(manifest.state ?? []), ...(manifest.disks ?? [])];
  for (const f of files) {
    // Names in the manifest stay inside the backup directory.
    if (typeof f.file !== 'string' || path.isAbsolute(f.file) || f.file.split('/').includes('..')) throw new ManagerError('corrupt', `backup ${dir}: bad file name in ${MANIFEST}`);
  }
  return manifest;
}

/** The manifest's own digest: SHA-256 of its compact JSON without the `sha256` field. */
function manifestDigest(unsealed: Omit<BackupManifest, 'sha256'>): string {
  return crypto.createHash('sha256').update(JSON.stringify(unsealed)).digest('hex');
}

function describe(dir: string, file: string): BackupFile {
  const full = path.join(dir, file);
  return { file, bytes: fs.statSync(full).size, sha256: sha256File(full) };
}

function sha256File(file: string): string {
  const hash = crypto.createHash('sha256');
  const fd = fs.openSync(file, 'r');
  try {
    const buffer = Buffer.alloc(1 << 20);
    for (;;) {
      const n = fs.readSync(fd, buffer, 0, buffer.length, null);
      if (n === 0) break;
      hash.update(buffer.subarray(0, n));
    }
  } finally {
    fs.closeSync(fd);
  }
  return hash.digest('hex');
}

/** Copy keeping holes (a memory image is mostly holes): only the non-zero 64 KiB pieces are written. */
function copySparse(src: string, dst: string, dataExtents: (fd: number, from: number, to: number) => [number, number][]): void {
  const from = fs.openSync(src, 'r');
  const to = fs.openSync(dst, 'wx', 0o600);
  try {
    const size = fs.fstatSync(from).size;
    fs.ftruncateSync(to, size);
    const buffer = Buffer.alloc(1 << 16);
    const zero = Buffer.alloc(1 << 16);
    // Only the file's data extents are read (SEEK_DATA/SEEK_HOLE); zero pieces in them stay holes too.
    for (const [start, end] of dataExtents(from, 0, size)) {
      for (let at = start; at < end; at += buffer.length) {
        const n = preadFully(from, buffer.subarray(0, Math.min(buffer.length, end - at)), at);
        if (n === 0) break;
        if (!buffer.subarray(0, n).equals(zero.subarray(0, n))) pwriteFully(to, buffer.subarray(0, n), at);
      }
    }
    fs.fsyncSync(to);
  } finally {
    fs.closeSync(from);
    fs.closeSync(to);
  }
}

function syncFile(file: string): void {
  const fd = fs.openSync(file, 'r');
  try { fs.fsyncSync(fd); } finally { fs.closeSync(fd); }
}

function syncTree(dir: string): void {
  for (const entry of fs.readdirSync(dir, { withFileTypes: true })) {
    const full = path.join(dir, entry.name);
    if (entry.isDirectory()) syncTree(full);
    else syncFile(full);
  }
  fsyncDir(dir);
}

function allocated(file: string): number {
  try {
    return fs.statSync(file).blocks * 512;
  } catch {
    return 0;
  }
}
