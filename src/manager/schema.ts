// The JSON schemas of the management API: a VM definition (with its defaults), a VM as the API shows it, an error.
// The same objects validate request bodies (fastify's ajv), fill in defaults, and make the OpenAPI document, so
// what is documented is what is enforced.

import { DEFAULT_CMDLINE as DEFAULT_VM_CMDLINE, MAX_CPUS, MAX_DISKS } from '../vmm/config.ts';

/** A VM name: a file name in the state directory and a word on the command line, so no slash, no leading dot. */
export const VM_NAME_PATTERN = '^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$';
export const VM_NAME_RE = new RegExp(VM_NAME_PATTERN);
/**
 * A snapshot name: a directory name under the state directory, without dots, so it can never be taken for the
 * `SNAP.tmp-*` / `SNAP.old-*` siblings the snapshot writer uses.
 */
export const SNAPSHOT_NAME_PATTERN = '^[A-Za-z0-9][A-Za-z0-9_-]{0,62}$';
export const SNAPSHOT_NAME_RE = new RegExp(SNAPSHOT_NAME_PATTERN);

export { DEFAULT_VM_CMDLINE };

/** Memory is a whole number of MiB, 64 MiB to 64 GiB (the limits of `ringzero run --memory`). */
export const MIN_MEMORY_MIB = 64;
export const MAX_MEMORY_MIB = 64 * 1024;

export const diskSchema = {
  type: 'object',
  additionalProperties: false,
  required: ['path'],
  properties: {
    // No comma: the path is handed to `ringzero run --disk FILE[,readonly][,serial=S]`.
    path: { type: 'string', pattern: '^/[^,]*$', description: 'absolute path of a raw disk image (no commas)' },
    readonly: { type: 'boolean', default: false },
    serial: { type: 'string', pattern: '^[\\x21-\\x2b\\x2d-\\x7e]{1,20}$', description: 'virtio-blk serial: 1 to 20 printable ASCII characters, no spaces or commas' },
  },
} as const;

export const vmDefinitionSchema = {
  $id: 'VmDefinition',
  type: 'object',
  additionalProperties: false,
  required: ['name'],
  properties: {
    name: { type: 'string', pattern: VM_NAME_PATTERN },
    engine: { type: 'string', enum: ['auto', 'soft', 'kvm'], default: 'auto' },
    cpus: { type: 'integer', minimum: 1, maximum: MAX_CPUS, default: 1 },
    memory: { type: 'integer', minimum: MIN_MEMORY_MIB, maximum: MAX_MEMORY_MIB, default: 256, description: 'guest RAM in MiB' },
    kernel: { type: 'string', minLength: 1, pattern: '^/', description: 'absolute path of a bzImage; default: the built default image' },
    initrd: { type: 'string', minLength: 1, pattern: '^/', description: 'absolute path of an initramfs; default: the default image\'s when kernel is not given' },
    cmdline: { type: 'string', maxLength: 2047, default: DEFAULT_VM_CMDLINE },
    disks: { type: 'array', maxItems: MAX_DISKS, items: diskSchema, default: [] },
    rng: { type: 'boolean', default: false },
    console: { type: 'string', enum: ['serial', 'virtio'], default: 'serial' },
    onReboot: { type: 'string', enum: ['restart', 'exit'], default: 'restart', description: 'what a reboot inside the guest does' },
    autostart: { type: 'boolean', default: false, description: 'start the VM when the daemon starts' },
  },
} as const;

export interface DiskDefinition {
  path: string;
  readonly: boolean;
  serial?: string;
}

/** A VM definition after validation (every default filled in). */
export interface VmDefinition {
  name: string;
  engine: 'auto' | 'soft' | 'kvm';
  cpus: number;
  memory: number;
  kernel?: string;
  initrd?: string;
  cmdline: string;
  disks: DiskDefinition[];
  rng: boolean;
  console: 'serial' | 'virtio';
  onReboot: 'restart' | 'exit';
  autostart: boolean;
}

export type VmState = 'shut off' | 'starting' | 'running' | 'shutting down' | 'crashed';
export const VM_STATES: readonly VmState[] = ['shut off', 'starting', 'running', 'shutting down', 'crashed'];

export const vmSchema = {
  $id: 'Vm',
  type: 'object',
  required: ['name', 'state', 'definition'],
  properties: {
    name: { type: 'string' },
    state: { type: 'string', enum: VM_STATES },
    definition: { $ref: 'VmDefinition#' },
    pid: { type: 'integer', description: 'the VMM process, while running' },
    startedAt: { type: 'string', format: 'date-time' },
    consoleSocket: { type: 'string', description: 'Unix socket of the serial console, while running' },
    restoredFrom: { type: 'string', description: 'the snapshot this run started from, while running' },
    lastExit: {
      type: 'object',
      properties: {
        exitCode: { type: ['integer', 'null'] },
        signal: { type: ['string', 'null'] },
        reason: { type: 'string' },
        at: { type: 'string', format: 'date-time' },
      },
    },
  },
} as const;

export const snapshotSchema = {
  $id: 'Snapshot',
  type: 'object',
  required: ['name', 'vm', 'createdAt'],
  properties: {
    name: { type: 'string', pattern: SNAPSHOT_NAME_PATTERN },
    vm: { type: 'string' },
    createdAt: { type: 'string', format: 'date-time' },
    cpus: { type: 'integer' },
    memory: { type: 'integer', description: 'guest RAM in MiB' },
    engine: { type: 'string' },
    ringzeroVersion: { type: 'string' },
    diskBytes: { type: 'integer', description: 'space the snapshot takes on the host (its memory image is sparse)' },
  },
} as const;

export interface SnapshotView {
  name: string;
  vm: string;
  createdAt: string;
  cpus?: number;
  memory?: number;
  engine?: string;
  ringzeroVersion?: string;
  diskBytes?: number;
}

export const ERROR_CODES = ['invalid', 'not_found', 'conflict', 'unauthorized', 'start_failed', 'snapshot_failed', 'internal'] as const;
export type ErrorCode = typeof ERROR_CODES[number];

export const errorSchema = {
  $id: 'Error',
  type: 'object',
  required: ['error'],
  properties: {
    error: {
      type: 'object',
      required: ['code', 'message'],
      properties: { code: { type: 'string', enum: ERROR_CODES }, message: { type: 'string' } },
    },
  },
} as const;

/** A failure with a stable code for the API's error body (and the HTTP status that goes with it). */
export class ManagerError extends Error {
  constructor(readonly code: ErrorCode, message: string) {
    super(message);
  }

  get httpStatus(): number {
    return { invalid: 400, not_found: 404, conflict: 409, unauthorized: 401, start_failed: 500, snapshot_failed: 500, internal: 500 }[this.code];
  }
}
