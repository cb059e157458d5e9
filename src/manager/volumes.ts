// The daemon's storage pool (libvirt's "dir" pool): volumes are image files in DIR/volumes, named by their file
// name; their format, size and backing file are read from the files themselves (qcow2 headers), so there is no
// second record to get out of step. A volume is created under a temporary name (.NAME.tmp-PID-N), synced and
// renamed into place, so after a crash it exists wholly or not at all; the daemon removes leftovers when it starts.
//
// A volume in use by a running VM, or the backing file of another volume, cannot be deleted.

import fs from 'node:fs';
import path from 'node:path';
import { StorageError, type ImageFormat } from '../storage/backend.ts';
import { createQcow2, imageInfo, QCOW2_MAX_SIZE, type ImageInfo } from '../storage/qcow2.ts';
import { ManagerError, type ErrorCode, type VmDefinition } from './schema.ts';
import { fsyncDir } from './store.ts';

/** A volume name is its file name: no slash, no leading dot (temporary files start with one). */
export const VOLUME_NAME_PATTERN = '^[A-Za-z0-9][A-Za-z0-9_.-]{0,79}$';
export const VOLUME_NAME_RE = new RegExp(VOLUME_NAME_PATTERN);
/** Raw volumes: a sparse file of at most 64 TiB. */
export const MAX_RAW_SIZE = 2 ** 46;

export const createVolumeSchema = {
  $id: 'VolumeCreate',
  type: 'object',
  additionalProperties: false,
  required: ['name'],
  properties: {
    name: { type: 'string', pattern: VOLUME_NAME_PATTERN, description: 'the file name in the pool' },
    format: { type: 'string', enum: ['raw', 'qcow2'], default: 'qcow2' },
    size: { type: 'integer', minimum: 512, maximum: MAX_RAW_SIZE, multipleOf: 512, description: 'virtual size in bytes; default: the backing volume\'s' },
    backing: { type: 'string', pattern: VOLUME_NAME_PATTERN, description: 'a volume this one is a qcow2 overlay of (copy-on-write)' },
  },
} as const;

export interface CreateVolumeRequest {
  name: string;
  format: ImageFormat;
  size?: number;
  backing?: string;
}

export const volumeSchema = {
  $id: 'Volume',
  type: 'object',
  required: ['name', 'path', 'format', 'virtualSize', 'actualSize', 'usedBy'],
  properties: {
    name: { type: 'string' },
    path: { type: 'string' },
    format: { type: 'string', enum: ['raw', 'qcow2'] },
    virtualSize: { type: 'integer', description: 'bytes the guest sees' },
    actualSize: { type: 'integer', description: 'bytes the file takes on the host' },
    clusterSize: { type: 'integer' },
    backingFile: { type: 'string', description: 'as written in the qcow2 header' },
    backingPath: { type: 'string' },
    backingFormat: { type: 'string' },
    usedBy: { type: 'array', items: { type: 'string' }, description: 'VMs whose definition has this volume as a disk' },
    backs: { type: 'array', items: { type: 'string' }, description: 'volumes that are overlays of this one' },
    error: {
      type: 'object', description: 'in lists: why the file could not be read as an image (code corrupt, not_qcow2, unsupported...)',
      properties: { code: { type: 'string' }, message: { type: 'string' } },
    },
  },
} as const;

export interface VolumeView extends ImageInfo {
  name: string;
  path: string;
  usedBy: string[];
  backs: string[];
  error?: { code: string; message: string };
}

/**
 * The format a volume's name promises: NAME.qcow2 must be qcow2 and NAME.raw or NAME.img raw (opened without
 * probing); other names are probed by magic.
 */
export function formatOfName(name: string): ImageFormat | undefined {
  if (name.endsWith('.qcow2')) return 'qcow2';
  if (name.endsWith('.raw') || name.endsWith('.img')) return 'raw';
  return undefined;
}

/** What the pool needs to know of the VMs (the VmManager gives it). */
export interface VmLookup {
  list(): Array<{ name: string; state: string; definition: VmDefinition }>;
}

/** Storage failures (src/storage) as API errors with stable codes. */
export function storageToManagerError(error: unknown, what: string): unknown {
  if (!(error instanceof StorageError)) return error;
  const code: ErrorCode = ({
    not_found: 'not_found', not_qcow2: 'not_qcow2', corrupt: 'corrupt', unsupported: 'unsupported', backing: 'corrupt',
    readonly: 'conflict', range: 'invalid', io: 'internal',
  } as const)[error.code];
  return new ManagerError(code, `${what}: ${error.message}`);
}

let tmpCounter = 0;

/** A temporary name next to `file` that StateDir-style clean-up recognizes. */
export function tempSibling(file: string): string {
  return path.join(path.dirname(file), `.${path.basename(file)}.tmp-${process.pid}-${tmpCounter++}`);
}

const isRunning = (state: string): boolean => state !== 'shut off' && state !== 'crashed';

export class VolumePool {
  readonly dir: string;

  constructor(stateRoot: string, private readonly vms: VmLookup) {
    this.dir = path.join(stateRoot, 'volumes');
  }

  /** Create the directory; remove what a crash left of volumes being created. */
  open(): void {
    fs.mkdirSync(this.dir, { recursive: true, mode: 0o700 });
    for (const entry of fs.readdirSync(this.dir)) {
      if (entry.startsWith('.') && entry.includes('.tmp-')) fs.rmSync(path.join(this.dir, entry), { force: true, recursive: true });
    }
  }

  pathOf(name: string): string {
    return path.join(this.dir, name);
  }

  names(): string[] {
    return fs.readdirSync(this.dir).filter((entry) => VOLUME_NAME_RE.test(entry) && fs.statSync(path.join(this.dir, entry)).isFile()).sort();
  }

  exists(name: string): boolean {
    return VOLUME_NAME_RE.test(name) && fs.existsSync(this.pathOf(name));
  }

  list(): VolumeView[] {
    const views: VolumeView[] = [];
    const infos = this.infos();
    for (const name of this.names()) {
      const info = infos.get(name);
      if (info instanceof Error) {
        // A file that is not a readable image still shows up, so it can be inspected and deleted.
        const failure = storageToManagerError(info, `volume '${name}'`) as Error & { code?: string };
        views.push({
          name, path: this.pathOf(name), format: formatOfName(name) ?? 'raw', virtualSize: 0, actualSize: fileBytes(this.pathOf(name)),
          usedBy: this.definedUsers(this.pathOf(name)), backs: [], error: { code: failure.code ?? 'internal', message: failure.message },
        });
        continue;
      }
      views.push(this.view(name, info!, infos));
    }
    return views;
  }

  get(name: string): VolumeView {
    this.checkExists(name);
    const infos = this.infos();
    const info = infos.get(name);
    if (info instanceof Error) throw storageToManagerError(info, `volume '${name}'`);
    return this.view(name, info!, infos);
  }

  create(request: CreateVolumeRequest): VolumeView {
    const { name, format } = request;
    if (!VOLUME_NAME_RE.test(name)) throw new ManagerError('invalid', `invalid volume name '${name}': letters, digits, '.', '_' and '-' (at most 80), not starting with '.', '_' or '-'`);
    if (this.exists(name)) throw new ManagerError('conflict', `volume '${name}' already exists`);
    const named = formatOfName(name);
    if (named !== undefined && named !== format) throw new ManagerError('invalid', `volume '${name}' is named as ${named} but would be ${format}: name it to match (or give --format ${named})`);
    const size = request.size;
    if (size !== undefined && (!Number.isSafeInteger(size) || size < 512 || size % 512 !== 0)) {
      throw new ManagerError('invalid', `invalid size ${size}: a whole number of 512-byte sectors`);
    }
    if (size !== undefined && size > (format === 'qcow2' ? QCOW2_MAX_SIZE : MAX_RAW_SIZE)) {
      throw new ManagerError('invalid', `size ${size} is larger than a ${format} volume may be (${(format === 'qcow2' ? QCOW2_MAX_SIZE : MAX_RAW_SIZE) / 2 ** 40} TiB)`);
    }
    const file = this.pathOf(name);
    const tmp = tempSibling(file);
    try {
      if (request.backing !== undefined) {
        if (format !== 'qcow2') throw new ManagerError('invalid', 'only a qcow2 volume can have a backing volume');
        if (!this.exists(request.backing)) throw new ManagerError('not_found', `no volume named '${request.backing}' (the backing volume)`);
        // An overlay reads its backing file as it was: one that a running VM writes would change under it.
        const writers = this.runningUsers(this.pathOf(request.backing));
        if (writers.length > 0) throw new ManagerError('conflict', `volume '${request.backing}' is in use by running VM(s) ${writers.join(', ')}: an overlay needs a backing volume that does not change`);
        let backing: ImageInfo;
        try {
          backing = imageInfo(this.pathOf(request.backing), formatOfName(request.backing));
        } catch (error) {
          throw storageToManagerError(error, `backing volume '${request.backing}'`);
        }
        if (size !== undefined && size < backing.virtualSize) {
          throw new ManagerError('invalid', `size ${size} is smaller than the backing volume's ${backing.virtualSize} bytes`);
        }
        // Relative to the overlay's directory: the pool can move with the state directory.
        createQcow2(tmp, { size: size ?? backing.virtualSize, backingFile: request.backing, backingFormat: backing.format });
      } else {
        if (size === undefined) throw new ManagerError('invalid', 'a size is needed (or a backing volume)');
        if (format === 'qcow2') createQcow2(tmp, { size });
        else createRaw(tmp, size);
      }
      fs.renameSync(tmp, file);
      fsyncDir(this.dir);
    } catch (error) {
      fs.rmSync(tmp, { force: true });
      throw storageToManagerError(error, `volume '${name}'`);
    }
    return this.get(name);
  }

  /** Delete a volume no running VM uses and no other volume is an overlay of. */
  delete(name: string): void {
    this.checkExists(name);
    const file = this.pathOf(name);
    const users = this.runningUsers(file);
    if (users.length > 0) throw new ManagerError('conflict', `volume '${name}' is in use by running VM(s) ${users.join(', ')}`);
    const infos = this.infos();
    const overlays = this.overlaysOf(file, infos);
    if (overlays.length > 0) throw new ManagerError('conflict', `volume '${name}' is the backing file of volume(s) ${overlays.join(', ')}: delete them first`);
    fs.unlinkSync(file);
    fsyncDir(this.dir);
  }

  /** Running VMs with `file` anywhere in a disk's backing chain. */
  runningUsers(file: string): string[] {
    const target = realOr(file);
    const users: string[] = [];
    for (const vm of this.vms.list()) {
      if (!isRunning(vm.state)) continue;
      if (vm.definition.disks.some((disk) => chainOf(disk.path).includes(target))) users.push(vm.name);
    }
    return users;
  }

  /** Every VM (running or not) whose definition names `file` as a disk. */
  definedUsers(file: string): string[] {
    const target = realOr(file);
    return this.vms.list().filter((vm) => vm.definition.disks.some((disk) => realOr(disk.path) === target)).map((vm) => vm.name);
  }

  /** Volumes whose backing file is `file`. */
  overlaysOf(file: string, infos = this.infos()): string[] {
    const target = realOr(file);
    const out: string[] = [];
    for (const [name, info] of infos) {
      if (!(info instanceof Error) && info.backingPath !== undefined && realOr(info.backingPath) === target) out.push(name);
    }
    return out;
  }

  private checkExists(name: string): void {
    if (!this.exists(name)) throw new ManagerError('not_found', `no volume named '${name}'`);
  }

  private infos(): Map<string, ImageInfo | Error> {
    const out = new Map<string, ImageInfo | Error>();
    for (const name of this.names()) {
      try {
        out.set(name, imageInfo(this.pathOf(name), formatOfName(name)));
      } catch (error) {
        out.set(name, error as Error);
      }
    }
    return out;
  }

  private view(name: string, info: ImageInfo, infos: Map<string, ImageInfo | Error>): VolumeView {
    const file = this.pathOf(name);
    return { name, path: file, ...info, usedBy: this.definedUsers(file), backs: this.overlaysOf(file, infos) };
  }
}

/** A sparse raw file of `size` bytes, synced. */
export function createRaw(file: string, size: number): void {
  const fd = fs.openSync(file, 'wx', 0o644);
  try {
    fs.ftruncateSync(fd, size);
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
}

function fileBytes(file: string): number {
  try {
    return fs.statSync(file).blocks * 512;
  } catch {
    return 0;
  }
}

function realOr(file: string): string {
  try {
    return fs.realpathSync(file);
  } catch {
    return path.resolve(file);
  }
}

/** The files of a disk's backing chain (itself first), resolved; stops at what cannot be read. */
export function chainOf(file: string): string[] {
  const chain: string[] = [];
  let current: string | undefined = file;
  while (current !== undefined && chain.length < 17) {
    const real = realOr(current);
    if (chain.includes(real)) break;
    chain.push(real);
    try {
      current = imageInfo(current).backingPath;
    } catch {
      current = undefined;
    }
  }
  return chain;
}
