// The JSON schemas of the management API: a VM definition (with its defaults), a VM as the API shows it, an error.
// The same objects validate request bodies (fastify's ajv), fill in defaults, and make the OpenAPI document, so
// what is documented is what is enforced.

import { DEFAULT_CMDLINE as DEFAULT_VM_CMDLINE, MAX_CPUS, MAX_DISKS, MAX_NICS } from '../vmm/config.ts';

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
    // No default: a disk without it is probed by its magic, as before the field existed.
    format: { type: 'string', enum: ['raw', 'qcow2'], description: 'the image format, opened without probing; default: probed by the qcow2 magic (a raw disk whose name ends in .raw or .img and whose first sector holds a qcow2 magic is then refused)' },
  },
} as const;

/** Linux interface names (dev_valid_name in net/core/dev.c): 1 to 15 bytes, no '/', ':' or whitespace, not '.' or '..'. */
export const TAP_NAME_PATTERN = '^(?!\\.{1,2}$)[A-Za-z0-9_.@+-]{1,15}$';
/** Six hex bytes; multicast and all-zero addresses are refused by the manager (src/manager/nics.ts). */
export const MAC_PATTERN = '^[0-9A-Fa-f]{2}(:[0-9A-Fa-f]{2}){5}$';

export const nicSchema = {
  type: 'object',
  additionalProperties: false,
  required: ['tap'],
  properties: {
    tap: { type: 'string', pattern: TAP_NAME_PATTERN, description: 'host TAP interface (1 to 15 letters, digits or _.@+-); created by the VMM when it does not exist and the daemon runs as root' },
    mac: { type: 'string', pattern: MAC_PATTERN, description: 'the guest\'s MAC (unicast, not all zeros); default: derived from the VM name and the NIC\'s position (52:54:00:xx:xx:xx) and stored in the definition' },
  },
} as const;

/** A Linux CPU list (cpuset(7) "List format"): "0", "0-3", "0,2-3". */
export const CPU_LIST_PATTERN = '^[0-9]{1,4}(-[0-9]{1,4})?(,[0-9]{1,4}(-[0-9]{1,4})?){0,63}$';

/**
 * Resource control (src/manager/resources.ts): in the definition they apply at every start; PATCH
 * /vms/{name}/resources changes them while the VM runs. CPU quota and weight and the memory limit are cgroup knobs
 * (v2 cpu.max, cpu.weight, memory.max; the v1 equivalents on a host without the v2 controllers); the pinning is
 * sched_setaffinity(2) of the threads that run the vCPUs.
 */
export const resourceProperties = {
  cpuQuotaPercent: { type: 'integer', minimum: 1, maximum: 100 * MAX_CPUS, description: 'CPU time the VM may use, in percent of one host CPU (200: two CPUs\' worth); cgroup cpu.max' },
  cpuWeight: { type: 'integer', minimum: 1, maximum: 10000, description: 'share of CPU time under contention, 1 to 10000 (default 100); cgroup cpu.weight' },
  memoryMax: { type: 'integer', minimum: MIN_MEMORY_MIB, maximum: 2 * MAX_MEMORY_MIB, description: 'hard limit on the VMM process\'s memory in MiB (guest RAM it touched plus the VMM\'s own); cgroup memory.max' },
  cpuPinning: { type: 'string', pattern: CPU_LIST_PATTERN, description: 'host CPUs the vCPU threads may run on, as a CPU list ("0", "0-1", "1,3")' },
} as const;

/** PATCH /vms/{name}/resources: each knob a value to set or null to remove the limit. */
export const resourcesPatchSchema = {
  $id: 'ResourcesPatch',
  type: 'object',
  additionalProperties: false,
  properties: {
    ...Object.fromEntries(Object.entries(resourceProperties).map(([key, value]) => [key, { ...value, type: [value.type, 'null'] }])),
    config: { type: 'boolean', default: false, description: 'also save the values in the definition (as virsh --config); a VM that is not running always has them saved' },
  },
};

export interface VmResources {
  cpuQuotaPercent?: number;
  cpuWeight?: number;
  memoryMax?: number;
  cpuPinning?: string;
}

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
    // No default: a definition without it reads as it did before the field existed (no NIC).
    nics: { type: 'array', maxItems: MAX_NICS, items: nicSchema, description: 'virtio-net cards on TAP devices (eth0, eth1, ... in order)' },
    rng: { type: 'boolean', default: false },
    console: { type: 'string', enum: ['serial', 'virtio'], default: 'serial' },
    onReboot: { type: 'string', enum: ['restart', 'exit'], default: 'restart', description: 'what a reboot inside the guest does' },
    autostart: { type: 'boolean', default: false, description: 'start the VM when the daemon starts' },
    // No default: a definition without it reads as it did before the field existed.
    balloon: { type: 'boolean', description: 'a virtio-balloon device, to take memory back at run time (ringzero setmem); default false' },
    // (-20..0: src/vmm/resume-priority.ts MIN_RESUME_BOOST, MAX_RESUME_BOOST; no default: the VMM's own, -10)
    resumeBoost: { type: 'integer', minimum: -20, maximum: 0, description: 'the priority (a nice value; 0: none) the VM\'s VMM takes while the guest stands still for a live migration\'s switch-over (and the daemons while they relay it), and at a destination or a restore for its first 3 s, so that a loaded host gives the guest the CPU first; needs CAP_SYS_NICE; default -10 (a migration\'s resumeBoost overrides it)' },
    ...resourceProperties,
  },
} as const;

export interface DiskDefinition {
  path: string;
  readonly: boolean;
  serial?: string;
  /** Absent: probed. */
  format?: 'raw' | 'qcow2';
}

export interface NicDefinition {
  tap: string;
  /** Always present in a stored definition (define fills in the default). */
  mac?: string;
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
  /** Absent in definitions written before it existed. */
  nics?: NicDefinition[];
  rng: boolean;
  console: 'serial' | 'virtio';
  onReboot: 'restart' | 'exit';
  autostart: boolean;
  /** Absent in definitions written before it existed. */
  balloon?: boolean;
  cpuQuotaPercent?: number;
  cpuWeight?: number;
  memoryMax?: number;
  cpuPinning?: string;
  /** `run --resume-boost`: the switch-over's and a resume's priority (src/vmm/resume-priority.ts); absent: the VMM's default. */
  resumeBoost?: number;
}

export type VmState = 'shut off' | 'starting' | 'running' | 'paused' | 'shutting down' | 'crashed';
export const VM_STATES: readonly VmState[] = ['shut off', 'starting', 'running', 'paused', 'shutting down', 'crashed'];

/** A VMM that was a spare of the daemon's pool (`daemon --vmm-pool`, src/manager/pool.ts). */
export const spareUseSchema = {
  type: 'object', required: ['pid', 'warmed'],
  description: 'the VMM was a spare of the daemon\'s pool (daemon --vmm-pool), not a new process: warmed says whether it had finished its warm-up (a scratch boot of the default image, to warmUpMs of CPU), which nothing of carries into the VM but V8\'s compiled code',
  properties: { pid: { type: 'integer' }, warmed: { type: 'boolean' }, warmUpMs: { type: 'number' }, warmUpInstructions: { type: 'integer' } },
} as const;

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
    spare: spareUseSchema,
    migration: {
      type: 'object', description: 'a live migration of the VM in progress, or one left in switch-over-unknown (the VM paused here: POST /vms/{name}/migration/resolve)',
      properties: { id: { type: 'string' }, direction: { type: 'string', enum: ['outgoing', 'incoming'] }, phase: { type: 'string' }, peer: { type: 'string' } },
    },
    resources: {
      type: 'object', description: 'resource control in force while running (cgroup and pinning): what PATCH /vms/{name}/resources set',
      properties: { ...resourceProperties, cgroup: { type: 'string', description: 'the VM\'s cgroup directory' } },
    },
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

export const ERROR_CODES = ['invalid', 'not_found', 'conflict', 'unauthorized', 'start_failed', 'snapshot_failed', 'internal',
  // Storage (src/manager/volumes.ts): an image that is damaged, not qcow2 where qcow2 is needed, or uses a feature ringzero lacks.
  'corrupt', 'not_qcow2', 'unsupported'] as const;
export type ErrorCode = typeof ERROR_CODES[number];

export const errorSchema = {
  $id: 'Error',
  type: 'object',
  required: ['error'],
  properties: {
    error: {
      type: 'object',
      required: ['code', 'message'],
      properties: {
        code: { type: 'string', enum: ERROR_CODES }, message: { type: 'string' },
        line: { type: 'integer', description: 'a definition\'s syntax error: its line (1-based)' },
        column: { type: 'integer', description: 'a definition\'s syntax error: its column (1-based)' },
      },
    },
  },
} as const;

/** A failure with a stable code for the API's error body (and the HTTP status that goes with it). */
export class ManagerError extends Error {
  constructor(readonly code: ErrorCode, message: string) {
    super(message);
  }

  get httpStatus(): number {
    return {
      invalid: 400, not_found: 404, conflict: 409, unauthorized: 401, start_failed: 500, snapshot_failed: 500, internal: 500,
      corrupt: 422, not_qcow2: 422, unsupported: 422,
    }[this.code];
  }
}
