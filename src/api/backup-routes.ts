// The REST routes of disk snapshots and backups (src/manager/disk-snapshots.ts, backups.ts):
//   /vms/{name}/disk-snapshots                GET list, POST create ({name?}); external qcow2 snapshots of the disks
//   /vms/{name}/disk-snapshots/{snap}         GET, DELETE (refused with 409 conflict while it has dependants)
//   /vms/{name}/disk-snapshots/{snap}/revert  POST (shut-off VM)
//   /vms/{name}/backups                       GET the VM's backups, POST back it up ({to?})
//   /backups                                  GET every backup, POST {vm, to?}
//   /backups/{id}                             GET
//   /backups/{id}/restore                     POST ({as?, nics?}): start the VM (or a new one, with its own TAPs) from the backup
//   /vms/{name}/disks/{disk}/commit           POST ({delete?}): block commit of the disk's overlay into its backing image
// (/vms/{name}/snapshots are the VM snapshots: memory and device state, src/manager/manager.ts.)

import type { FastifyInstance } from 'fastify';
import type { VmManager } from '../manager/manager.ts';
import { SNAPSHOT_NAME_PATTERN, type NicDefinition } from '../manager/schema.ts';
import { blockCommitResultSchema, blockCommitSchema, diskSnapshotCreateSchema, diskSnapshotSchema } from '../manager/disk-snapshots.ts';
import { backupCreateSchema, backupRestoreSchema, backupSchema } from '../manager/backups.ts';

export const backupToSchema = {
  $id: 'BackupTo',
  type: ['object', 'null'],
  additionalProperties: false,
  properties: { to: backupCreateSchema.properties.to },
} as const;

export function registerBackupRoutes(app: FastifyInstance, manager: VmManager): void {
  app.addSchema(diskSnapshotCreateSchema);
  app.addSchema(diskSnapshotSchema);
  app.addSchema(backupCreateSchema);
  app.addSchema(backupRestoreSchema);
  app.addSchema(backupSchema);
  app.addSchema(backupToSchema);
  app.addSchema(blockCommitSchema);
  app.addSchema(blockCommitResultSchema);
  type NameParams = { Params: { name: string } };
  type SnapParams = { Params: { name: string; snap: string } };
  type IdParams = { Params: { id: string } };
  const idParams = { type: 'object', properties: { id: { type: 'string', pattern: SNAPSHOT_NAME_PATTERN } } };
  const snapParams = { type: 'object', properties: { name: { type: 'string' }, snap: { type: 'string', pattern: SNAPSHOT_NAME_PATTERN } } };

  app.get<NameParams>('/vms/:name/disk-snapshots', async (request) => manager.diskSnapshots.list(request.params.name));
  app.post<NameParams & { Body: { name?: string } | null }>('/vms/:name/disk-snapshots', { schema: { body: { $ref: 'DiskSnapshotCreate#' } } }, async (request, reply) => {
    const created = await manager.diskSnapshots.create(request.params.name, request.body?.name);
    reply.code(201);
    return created;
  });
  app.get<SnapParams>('/vms/:name/disk-snapshots/:snap', { schema: { params: snapParams } }, async (request) => manager.diskSnapshots.get(request.params.name, request.params.snap));
  app.delete<SnapParams>('/vms/:name/disk-snapshots/:snap', { schema: { params: snapParams } }, async (request, reply) => {
    manager.diskSnapshots.delete(request.params.name, request.params.snap);
    reply.code(204).send();
  });
  app.post<SnapParams>('/vms/:name/disk-snapshots/:snap/revert', { schema: { params: snapParams } }, async (request) => manager.diskSnapshots.revert(request.params.name, request.params.snap));

  app.post<{ Params: { name: string; disk: string }; Body: { delete?: boolean; base?: string } | null }>('/vms/:name/disks/:disk/commit', {
    schema: { params: { type: 'object', properties: { name: { type: 'string' }, disk: { type: 'string', pattern: '^(vd[a-z]|[0-9]{1,2})$' } } }, body: { $ref: 'BlockCommit#' } },
  }, async (request) => manager.diskSnapshots.commit(request.params.name, request.params.disk, request.body?.delete === true, request.body?.base));

  app.get<NameParams>('/vms/:name/backups', async (request) => {
    manager.get(request.params.name);
    return manager.backups.list(request.params.name);
  });
  app.post<NameParams & { Body: { to?: string } | null }>('/vms/:name/backups', { schema: { body: { $ref: 'BackupTo#' } } }, async (request, reply) => {
    const backup = await manager.backups.create(request.params.name, request.body?.to);
    reply.code(201);
    return backup;
  });
  app.get('/backups', async () => manager.backups.list());
  app.post<{ Body: { vm: string; to?: string } }>('/backups', { schema: { body: { $ref: 'BackupCreate#' } } }, async (request, reply) => {
    const backup = await manager.backups.create(request.body.vm, request.body.to);
    reply.code(201);
    return backup;
  });
  app.get<IdParams>('/backups/:id', { schema: { params: idParams } }, async (request) => manager.backups.get(request.params.id));
  app.post<IdParams & { Body: { as?: string; nics?: NicDefinition[] } | null }>('/backups/:id/restore', { schema: { params: idParams, body: { $ref: 'BackupRestore#' } } },
    async (request) => manager.backups.restore(request.params.id, request.body?.as, request.body?.nics));
}
