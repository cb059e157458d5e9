// The OpenAPI entries of disk snapshots and backups (merged into src/api/openapi.ts's document), from the schema
// objects that validate the requests (src/manager/disk-snapshots.ts, backups.ts, src/api/backup-routes.ts).

import { SNAPSHOT_NAME_PATTERN, VM_NAME_PATTERN } from '../manager/schema.ts';
import { blockCommitResultSchema, blockCommitSchema, diskSnapshotCreateSchema, diskSnapshotSchema } from '../manager/disk-snapshots.ts';
import { backupCreateSchema, backupRestoreSchema, backupSchema } from '../manager/backups.ts';
import { backupToSchema } from './backup-routes.ts';

const ref = (name: string) => ({ $ref: `#/components/schemas/${name}` });
const json = (schema: unknown) => ({ 'application/json': { schema } });
const errors = (...statuses: number[]) => Object.fromEntries(statuses.map((s) => [String(s), {
  description: {
    400: 'invalid input (code invalid)', 401: 'missing or wrong token', 404: 'no such VM, snapshot or backup (not_found)',
    409: 'conflicts with the VM\'s state, already exists, or has dependants (conflict)',
    422: 'a damaged backup or image (corrupt), or a format version this ringzero does not read (unsupported)',
    500: 'the VMM failed the snapshot or the start (snapshot_failed, start_failed)',
  }[s] ?? 'error',
  content: json(ref('Error')),
}]));
/** OpenAPI 3.0: no $id, no type arrays (['object','null'] is a nullable object). */
const strip = (schema: Record<string, unknown>): Record<string, unknown> => {
  const { $id: _id, type, ...rest } = schema;
  return Array.isArray(type) ? { type: type.find((t) => t !== 'null'), nullable: true, ...rest } : { type, ...rest };
};
const vmName = { name: 'name', in: 'path', required: true, schema: { type: 'string', pattern: VM_NAME_PATTERN } };
const snapName = { name: 'snap', in: 'path', required: true, schema: { type: 'string', pattern: SNAPSHOT_NAME_PATTERN } };
const backupId = { name: 'id', in: 'path', required: true, schema: { type: 'string', pattern: SNAPSHOT_NAME_PATTERN } };

export function backupSchemas(): Record<string, unknown> {
  return {
    DiskSnapshot: strip(diskSnapshotSchema), DiskSnapshotCreate: strip(diskSnapshotCreateSchema),
    BlockCommit: strip(blockCommitSchema), BlockCommitResult: strip(blockCommitResultSchema),
    Backup: strip(backupSchema), BackupCreate: strip(backupCreateSchema), BackupTo: strip(backupToSchema), BackupRestore: strip(backupRestoreSchema),
  };
}

export function backupPaths(): Record<string, unknown> {
  return {
    '/vms/{name}/disk-snapshots': {
      get: { summary: 'the VM\'s external disk snapshots, oldest first', parameters: [vmName], responses: { 200: { description: 'the snapshots', content: json({ type: 'array', items: ref('DiskSnapshot') }) }, ...errors(401, 404) } },
      post: {
        summary: 'external qcow2 snapshot of the VM\'s writable pool disks: each image becomes a read-only backing file and a new overlay takes '
          + 'the writes (a running VM is paused only while its VMM switches; pausedMs says how long)',
        parameters: [vmName], requestBody: { required: false, content: json(ref('DiskSnapshotCreate')) },
        responses: { 201: { description: 'created', content: json(ref('DiskSnapshot')) }, ...errors(400, 401, 404, 409, 422, 500) },
      },
    },
    '/vms/{name}/disk-snapshots/{snap}': {
      get: { summary: 'one disk snapshot', parameters: [vmName, snapName], responses: { 200: { description: 'the snapshot', content: json(ref('DiskSnapshot')) }, ...errors(401, 404) } },
      delete: {
        summary: 'delete a disk snapshot that has no dependants (its frozen image in no VM disk\'s backing chain: commit the disk first), with the overlays made for it that nothing uses',
        parameters: [vmName, snapName], responses: { 204: { description: 'deleted' }, ...errors(401, 404, 409) },
      },
    },
    '/vms/{name}/disk-snapshots/{snap}/revert': {
      post: {
        summary: 'shut-off VM: its disks become fresh overlays of the snapshot\'s frozen images (the current disk state is discarded)',
        parameters: [vmName, snapName], responses: { 200: { description: 'the snapshot, with the new overlay under reverts', content: json(ref('DiskSnapshot')) }, ...errors(401, 404, 409, 422) },
      },
    },
    '/vms/{name}/disks/{disk}/commit': {
      post: {
        summary: 'block commit (virsh blockcommit --active --pivot [--base]): what the disk\'s qcow2 overlay holds is written into its backing image (or into base, '
          + 'an image deeper in its chain, with the images between), which becomes the disk; the chain gets shorter. The image written must be a pool volume nothing else reads; '
          + 'snapshots that froze it (or an image between) are dropped. A running VM is paused for the copy (pausedMs)',
        parameters: [vmName, { name: 'disk', in: 'path', required: true, schema: { type: 'string', pattern: '^(vd[a-z]|[0-9]{1,2})$' } }],
        requestBody: { required: false, content: json(ref('BlockCommit')) },
        responses: { 200: { description: 'what was committed', content: json(ref('BlockCommitResult')) }, ...errors(400, 401, 404, 409, 422, 500) },
      },
    },
    '/vms/{name}/backups': {
      get: { summary: 'the VM\'s backups', parameters: [vmName], responses: { 200: { description: 'the backups', content: json({ type: 'array', items: ref('Backup') }) }, ...errors(401, 404) } },
      post: {
        summary: 'consistent backup of a running VM: memory, devices and disks at one instant (the guest pauses only for it), then the frozen disks copied while it runs on',
        parameters: [vmName], requestBody: { required: false, content: json(ref('BackupTo')) },
        responses: { 201: { description: 'the backup (manifest with SHA-256 of every file)', content: json(ref('Backup')) }, ...errors(400, 401, 404, 409, 422, 500) },
      },
    },
    '/backups': {
      get: { summary: 'every backup the daemon knows', responses: { 200: { description: 'the backups', content: json({ type: 'array', items: ref('Backup') }) }, ...errors(401) } },
      post: {
        summary: 'back up a running VM (as POST /vms/{name}/backups)', requestBody: { required: true, content: json(ref('BackupCreate')) },
        responses: { 201: { description: 'the backup', content: json(ref('Backup')) }, ...errors(400, 401, 404, 409, 422, 500) },
      },
    },
    '/backups/{id}': {
      get: { summary: 'one backup', parameters: [backupId], responses: { 200: { description: 'the backup', content: json(ref('Backup')) }, ...errors(401, 404, 422) } },
    },
    '/backups/{id}/restore': {
      post: {
        summary: 'verify every checksum, copy the disks into the pool and start the VM from the backup\'s instant: into the backed-up VM (shut off) or, with "as", a new VM (a clone from the backup; a VM with network cards needs "nics", one per card in the backup\'s order: the clone\'s own TAPs, and new MACs that the running guest takes at its next boot)',
        parameters: [backupId], requestBody: { required: false, content: json(ref('BackupRestore')) },
        responses: { 200: { description: 'the VM, running', content: json(ref('Vm')) }, ...errors(400, 401, 404, 409, 422, 500) },
      },
    },
  };
}
