// The REST routes of live migration between daemons (src/manager/migration.ts), and their OpenAPI entries:
//   POST /vms/{name}/migrate   {to, downtimeMs?, maxIterations?, bandwidth?, verify?, linkTimeoutMs?, copyStorage?,
//                              diskTargets?, hotBlocks?, resumeBoost?}: starts the
//                              migration and answers 202 with it at once (it runs on in the daemon)
//   GET  /vms/{name}/migration the VM's latest migration, either way (also once the source has forgotten the VM):
//                              phase, iteration, bytes sent, dirty rate, expected and measured downtime, error
//   DELETE /vms/{name}/migration  cancel the VM's outgoing migration (before the switch-over): it runs on here
//   POST /vms/{name}/migration/resolve  {action?: ask|resume|abandon, force?}: settle a migration left in
//                              'switch-over-unknown' (asks the destination daemon again; answers once settled)
//   GET  /migrations           the migrations this daemon has seen (the last 50), both ways

import type { FastifyInstance } from 'fastify';
import type { VmManager } from '../manager/manager.ts';
import { VM_NAME_PATTERN } from '../manager/schema.ts';
import { migrateRequestSchema, migrationSchema, resolveRequestSchema, type MigrateRequest, type ResolveRequest } from '../manager/migration.ts';

export function registerMigrationRoutes(app: FastifyInstance, manager: VmManager): void {
  app.addSchema(migrateRequestSchema);
  app.addSchema(resolveRequestSchema);
  type NameParams = { Params: { name: string } };
  app.post<NameParams & { Body: MigrateRequest }>('/vms/:name/migrate', { schema: { body: { $ref: 'MigrateRequest#' } } }, async (request, reply) => {
    const started = manager.migrations.start(request.params.name, request.body);
    reply.code(202);
    return started;
  });
  app.get<NameParams>('/vms/:name/migration', async (request) => manager.migrations.latest(request.params.name));
  app.delete<NameParams>('/vms/:name/migration', async (request) => manager.migrations.cancel(request.params.name));
  app.post<NameParams & { Body: ResolveRequest | undefined }>('/vms/:name/migration/resolve', { schema: { body: { $ref: 'MigrationResolveRequest#' } } },
    async (request) => manager.migrations.resolve(request.params.name, request.body ?? {}));
  app.get('/migrations', async () => manager.migrations.list());
}

const ref = (name: string) => ({ $ref: `#/components/schemas/${name}` });
const json = (schema: unknown) => ({ 'application/json': { schema } });
const errors = (...statuses: number[]) => Object.fromEntries(statuses.map((s) => [String(s), {
  description: { 400: 'invalid input (code invalid)', 401: 'missing or wrong token', 404: 'no such VM, or it has no migration (not_found)', 409: 'the VM is not running, or already migrating (conflict)' }[s] ?? 'error',
  content: json(ref('Error')),
}]));
const strip = (schema: Record<string, unknown>): Record<string, unknown> => {
  const { $id: _id, ...rest } = schema;
  return rest;
};
const vmName = { name: 'name', in: 'path', required: true, schema: { type: 'string', pattern: VM_NAME_PATTERN } };

export function migrationSchemas(): Record<string, unknown> {
  return { MigrateRequest: strip(migrateRequestSchema), MigrationResolveRequest: strip(resolveRequestSchema), Migration: strip(migrationSchema) };
}

export function migrationPaths(): Record<string, unknown> {
  return {
    '/vms/{name}/migrate': {
      post: {
        summary: 'live-migrate a running VM to another daemon (its `--migration-listen` address): pre-copy while the guest runs, then a '
          + 'stop-and-copy once the rest fits downtimeMs. Answers at once; follow GET /vms/{name}/migration. On success the VM runs there and '
          + 'its definition here is removed; on any failure it runs on here. Disks must be on storage both hosts share (same path), or, with '
          + 'copyStorage, are copied while the guest runs into new files at the destination (its pool, or diskTargets); '
          + 'the destination needs a TAP of the same name for each NIC',
        parameters: [vmName], requestBody: { required: true, content: json(ref('MigrateRequest')) },
        responses: { 202: { description: 'the migration, started', content: json(ref('Migration')) }, ...errors(400, 401, 404, 409) },
      },
    },
    '/vms/{name}/migration': {
      get: {
        summary: 'the VM\'s latest migration (outgoing or incoming) and its progress: phase, iteration, bytes sent, dirty rate, expected downtime; '
          + 'once over, the measured downtime or the error',
        parameters: [vmName], responses: { 200: { description: 'the migration', content: json(ref('Migration')) }, ...errors(401, 404) },
      },
      delete: {
        summary: 'cancel the VM\'s outgoing migration (virsh domjobabort): the destination forgets the VM, the guest runs on here; refused (409) '
          + 'once the switch-over has begun. Answers when the migration has ended',
        parameters: [vmName], responses: { 200: { description: 'the migration, failed with "cancelled"', content: json(ref('Migration')) }, ...errors(401, 409) },
      },
    },
    '/vms/{name}/migration/resolve': {
      post: {
        summary: 'settle a migration left in switch-over-unknown (the source paused, not knowing whether the destination took the VM over): '
          + 'the destination daemon is asked again; then the VM resumes here (it is not there) or ends here (it runs there). action resume or '
          + 'abandon says which way is wanted and is refused when the destination\'s answer says otherwise; with force they act when the '
          + 'destination cannot be reached. Answers once settled; 409 leaves the VM paused',
        parameters: [vmName], requestBody: { required: false, content: json(ref('MigrationResolveRequest')) },
        responses: { 200: { description: 'the migration: failed (resumed here) or completed (ended here, it runs there)', content: json(ref('Migration')) }, ...errors(400, 401, 404, 409) },
      },
    },
    '/migrations': {
      get: { summary: 'the last 50 migrations of this daemon, both ways', responses: { 200: { description: 'the migrations', content: json({ type: 'array', items: ref('Migration') }) }, ...errors(401) } },
    },
  };
}
