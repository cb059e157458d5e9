// The OpenAPI 3.0 document of the daemon's REST API, built from the same schema objects that validate the requests.

import { errorSchema, resourcesPatchSchema, SNAPSHOT_NAME_PATTERN, snapshotSchema, vmDefinitionSchema, vmSchema } from '../manager/schema.ts';
import { storagePaths, storageSchemas } from './storage-openapi.ts';
import { backupPaths, backupSchemas } from './backup-openapi.ts';
import { migrationPaths, migrationSchemas } from './migration-routes.ts';

/** JSON Schema `$ref: 'X#'` (ajv's ids) to OpenAPI's `#/components/schemas/X`, and no `$id`. */
function toOpenApi(schema: unknown): unknown {
  if (Array.isArray(schema)) return schema.map(toOpenApi);
  if (schema === null || typeof schema !== 'object') return schema;
  const out: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(schema)) {
    if (key === '$id') continue;
    if (key === '$ref' && typeof value === 'string') out.$ref = `#/components/schemas/${value.replace(/#$/, '')}`;
    // OpenAPI 3.0 has no type arrays: ['integer', 'null'] becomes nullable.
    else if (key === 'type' && Array.isArray(value)) {
      out.type = value.find((t) => t !== 'null');
      if (value.includes('null')) out.nullable = true;
    } else out[key] = toOpenApi(value);
  }
  return out;
}

const ref = (name: string) => ({ $ref: `#/components/schemas/${name}` });
const json = (schema: unknown) => ({ 'application/json': { schema } });
/** A definition body: JSON, or the same object in YAML (src/api/definition-routes.ts). */
const jsonOrYaml = (schema: unknown) => ({ 'application/json': { schema }, 'application/yaml': { schema } });
const errors = (...statuses: number[]) => Object.fromEntries(statuses.map((s) => [String(s), {
  description: { 400: 'invalid input', 401: 'missing or wrong token', 404: 'no such VM', 409: 'conflicts with the VM\'s state', 500: 'failure' }[s] ?? 'error',
  content: json(ref('Error')),
}]));
const snapParameter = { name: 'snap', in: 'path', required: true, schema: { type: 'string', pattern: SNAPSHOT_NAME_PATTERN } };
const nameParameter = { name: 'name', in: 'path', required: true, schema: { type: 'string', pattern: vmDefinitionSchema.properties.name.pattern } };

const counter = { type: 'number', minimum: 0 };
const vmStatsSchema = {
  type: 'object',
  properties: {
    name: { type: 'string' }, state: { type: 'string' }, vcpus: { type: 'integer' }, memoryBytes: counter, pid: { type: 'integer', nullable: true },
    sampledAt: { type: 'number', description: 'milliseconds since the epoch' },
    process: {
      type: 'object', nullable: true, description: 'null unless the VMM process runs',
      properties: { cpuSeconds: counter, cpuPercent: counter, residentBytes: counter, threads: counter },
    },
    counters: {
      type: 'object', nullable: true, description: 'the machine\'s own counters ({"cmd":"stats"} on its control socket)',
      properties: {
        engine: { type: 'string' }, vcpus: counter, haltedVcpus: counter, instructions: counter, blockInstructions: counter, guestNs: counter,
        codeCache: { type: 'object', nullable: true, properties: { blocks: counter, instructionsCached: counter, invalidations: counter } },
        exits: { type: 'object', properties: { pio: counter, mmio: counter } },
        disk: { type: 'object', properties: { readBytes: counter, writeBytes: counter } },
        net: { type: 'object', properties: { rxBytes: counter, txBytes: counter, rxFrames: counter, txFrames: counter } },
        devices: {
          type: 'array', description: 'bytes per device: disks vda.. (read/write), NICs eth0.. (rx as read, tx as write)',
          items: { type: 'object', properties: { name: { type: 'string' }, kind: { type: 'string', enum: ['disk', 'net'] }, readBytes: counter, writeBytes: counter } },
        },
        halts: { ...counter, description: 'times every vCPU was halted and the VM slept (soft engine: HLT exits)' },
      },
    },
    rates: {
      type: 'object', nullable: true, description: 'the counters per second since the daemon\'s previous sample of this VMM (null for the first): traps (VM exits on KVM) by reason, instructions, bytes',
      properties: {
        seconds: { ...counter, description: 'the interval' }, instructions: counter, halts: counter,
        exits: { type: 'object', properties: { pio: counter, mmio: counter } },
        disk: { type: 'object', properties: { readBytes: counter, writeBytes: counter } },
        net: { type: 'object', properties: { rxBytes: counter, txBytes: counter } },
      },
    },
  },
};

function action(summary: string, extra: Record<string, unknown> = {}) {
  return {
    post: {
      summary, parameters: [nameParameter], ...extra,
      responses: { 200: { description: 'the VM after the action', content: json(ref('Vm')) }, ...errors(400, 401, 404, 409, 500) },
    },
  };
}

export function openApiDocument(version: string): Record<string, unknown> {
  return {
    openapi: '3.0.3',
    info: { title: 'ringzero daemon API', version, description: 'VM lifecycle on one host. Errors are {"error":{"code","message"}} with a stable code.' },
    components: {
      schemas: { VmDefinition: toOpenApi(vmDefinitionSchema), Vm: toOpenApi(vmSchema), Snapshot: toOpenApi(snapshotSchema), Error: toOpenApi(errorSchema), ResourcesPatch: toOpenApi(resourcesPatchSchema), ...storageSchemas(), ...backupSchemas(), ...migrationSchemas() },
      securitySchemes: { bearer: { type: 'http', scheme: 'bearer', description: 'required on TCP listeners; the Unix socket is guarded by file permissions' } },
    },
    security: [{}, { bearer: [] }],
    paths: {
      '/vms': {
        get: { summary: 'list the VMs', responses: { 200: { description: 'every defined VM', content: json({ type: 'array', items: ref('Vm') }) }, ...errors(401) } },
        post: {
          summary: 'define a VM (defaults filled in from the schema); JSON or YAML (a YAML syntax error is 400 with its line and column)', requestBody: { required: true, content: jsonOrYaml(ref('VmDefinition')) },
          responses: { 201: { description: 'defined', content: json(ref('Vm')) }, ...errors(400, 401, 409) },
        },
      },
      '/vms/{name}': {
        get: { summary: 'one VM', parameters: [nameParameter], responses: { 200: { description: 'the VM', content: json(ref('Vm')) }, ...errors(401, 404) } },
        put: {
          summary: 'replace the definition of a VM that is shut off (JSON or YAML)', parameters: [nameParameter], requestBody: { required: true, content: jsonOrYaml(ref('VmDefinition')) },
          responses: { 200: { description: 'updated', content: json(ref('Vm')) }, ...errors(400, 401, 404, 409) },
        },
        delete: { summary: 'undefine a VM that is not running', parameters: [nameParameter], responses: { 204: { description: 'undefined' }, ...errors(401, 404, 409) } },
      },
      '/vms/{name}/definition': {
        get: {
          summary: 'the definition as text, in the format it was last written in (YAML: the text as written while it still describes the definition), or the one asked for by ?format= or Accept',
          parameters: [nameParameter, { name: 'format', in: 'query', required: false, schema: { type: 'string', enum: ['json', 'yaml'] } }],
          responses: { 200: { description: 'the definition', content: { 'application/json': { schema: ref('VmDefinition') }, 'application/yaml': { schema: { type: 'string' } } } }, ...errors(401, 404) },
        },
      },
      '/vms/{name}/start': action('start the VM in its own VMM process'),
      '/vms/{name}/destroy': action('stop the VM at once (its VMM process is killed)'),
      '/vms/{name}/reboot': action('reboot the VM: in its own VMM (power button, the guest\'s poweroff becomes a reset; a guest that ignores the button is reset) when onReboot is restart, else shutdown then start', {
        requestBody: { required: false, content: json({ type: 'object', properties: { timeout: { type: 'number', minimum: 0, maximum: 3600, default: 60, description: 'onReboot exit: the shutdown\'s timeout' } } }) },
      }),
      '/vms/{name}/console': {
        get: {
          summary: 'the running VM\'s serial console as a byte stream both ways: send \'Connection: Upgrade\' and \'Upgrade: ringzero-console\'; after 101 the connection carries the console (the VMM\'s scrollback first); close it to detach; several viewers may attach',
          parameters: [nameParameter],
          responses: { 101: { description: 'switched to the console stream' }, ...errors(400, 401, 404, 409) },
        },
      },
      '/vms/{name}/suspend': action('pause the running VM\'s vCPUs (state paused); the VMM process, memory and console stay'),
      '/vms/{name}/resume': action('let a paused VM run again'),
      '/vms/{name}/resources': {
        patch: {
          summary: 'change CPU quota and weight, memory limit (cgroup) and CPU pinning; at once for a running VM, in the definition with config or when not running',
          parameters: [nameParameter], requestBody: { required: true, content: json(ref('ResourcesPatch')) },
          responses: { 200: { description: 'the VM (resources: what is in force)', content: json(ref('Vm')) }, ...errors(400, 401, 404, 409, 500) },
        },
      },
      '/vms/{name}/balloon': {
        get: { summary: 'the running VM\'s balloon: guest memory left, target and inflated bytes, the guest\'s statistics', parameters: [nameParameter], responses: { 200: { description: 'balloon', content: json({ type: 'object' }) }, ...errors(401, 404, 409) } },
        put: {
          summary: 'set the memory left to the guest (MiB): the balloon takes the rest (virsh setmem)', parameters: [nameParameter],
          requestBody: { required: true, content: json({ type: 'object', required: ['memory'], properties: { memory: { type: 'integer', minimum: 16 } } }) },
          responses: { 200: { description: 'balloon', content: json({ type: 'object' }) }, ...errors(400, 401, 404, 409) },
        },
      },
      '/host/resources': {
        get: { summary: 'whether per-VM cgroups can be made here: {ok, kind: v2|v1, root} or {ok: false, reason}', responses: { 200: { description: 'cgroup support', content: json({ type: 'object' }) }, ...errors(401) } },
      },
      '/vms/{name}/snapshots': {
        get: {
          summary: 'the VM\'s snapshots, oldest first', parameters: [nameParameter],
          responses: { 200: { description: 'its snapshots', content: json({ type: 'array', items: ref('Snapshot') }) }, ...errors(401, 404) },
        },
        post: {
          summary: 'snapshot the running VM (paused while its state and memory are written, then resumed)', parameters: [nameParameter],
          requestBody: { required: false, content: json({ type: 'object', additionalProperties: false, properties: { name: { type: 'string', pattern: SNAPSHOT_NAME_PATTERN, description: 'default: snap-YYYYMMDD-HHMMSS-mmm' } } }) },
          responses: { 201: { description: 'the snapshot, complete', content: json(ref('Snapshot')) }, ...errors(400, 401, 404, 409, 500) },
        },
      },
      '/vms/{name}/snapshots/{snap}': {
        get: { summary: 'one snapshot', parameters: [nameParameter, snapParameter], responses: { 200: { description: 'the snapshot', content: json(ref('Snapshot')) }, ...errors(401, 404) } },
        delete: { summary: 'delete a snapshot', parameters: [nameParameter, snapParameter], responses: { 204: { description: 'deleted' }, ...errors(401, 404) } },
      },
      '/vms/{name}/snapshots/{snap}/restore': {
        post: {
          summary: 'start the shut-off VM from the snapshot (the guest carries on from the saved instant)', parameters: [nameParameter, snapParameter],
          requestBody: { required: false, content: json({ type: 'object', additionalProperties: false, properties: { verify: { type: 'boolean', default: false, description: 'check the memory image against its SHA-256 first (reads all of it; without it the image is mapped and only its size is checked); a damaged one: start_failed' } } }) },
          responses: { 200: { description: 'the VM, running', content: json(ref('Vm')) }, ...errors(400, 401, 404, 409, 500) },
        },
      },
      '/vms/{name}/shutdown': action('stop the VM gracefully (the ACPI power button), destroying it after the timeout', {
        requestBody: { required: false, content: json({ type: 'object', properties: { timeout: { type: 'number', minimum: 0, maximum: 3600, default: 60 } } }) },
      }),
      '/host': { get: { summary: 'the host: CPUs, memory, engines, VM counts', responses: { 200: { description: 'host facts', content: json({ type: 'object' }) }, ...errors(401) } } },
      '/vms/{name}/stats': {
        get: {
          summary: 'the VM\'s statistics: its VMM process (CPU seconds and percent, resident bytes; from /proc) and the machine\'s counters '
            + '(instructions, I/O exits by kind, disk and network bytes; null if the VMM did not answer in time). Counters are cumulative.',
          parameters: [nameParameter],
          responses: { 200: { description: 'one sample', content: json(vmStatsSchema) }, ...errors(401, 404) },
        },
      },
      '/host/stats': {
        get: { summary: 'host CPU seconds by mode and busy percent, memory, load, VM counts', responses: { 200: { description: 'one sample', content: json({ type: 'object' }) }, ...errors(401) } },
      },
      '/host/pool': {
        get: {
          summary: 'the spare VMM processes of `daemon --vmm-pool` (src/manager/pool.ts): {size, warmUpMs, nice, spares: [{pid, state: starting|warming|ready, startedAt, warmUp, residentBytes}], taken, died, residentBytes}',
          responses: { 200: { description: 'the pool', content: json({ type: 'object' }) }, ...errors(401) },
        },
      },
      '/metrics': {
        get: {
          summary: 'host and per-VM statistics in the Prometheus text format 0.0.4 (ringzero_host_*, ringzero_vm_*{vm=...}, ringzero_vmm_pool_* with --vmm-pool)',
          responses: { 200: { description: 'metrics', content: { 'text/plain; version=0.0.4': { schema: { type: 'string' } } } }, ...errors(401) },
        },
      },
      '/events': {
        get: {
          summary: 'lifecycle events as server-sent events (event: lifecycle, data: JSON)',
          responses: { 200: { description: 'an endless text/event-stream', content: { 'text/event-stream': { schema: { type: 'string' } } } }, ...errors(401) },
        },
      },
      ...storagePaths(), // /volumes, /templates (src/api/storage-openapi.ts)
      ...backupPaths(), // disk snapshots, backups (src/api/backup-openapi.ts)
      ...migrationPaths(), // live migration (src/api/migration-routes.ts)
      '/openapi.json': { get: { summary: 'this document', responses: { 200: { description: 'OpenAPI 3.0', content: json({ type: 'object' }) } } } },
    },
  };
}
