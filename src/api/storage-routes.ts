// The storage half of the REST API: /volumes (the pool) and /templates (templates and clones), over the manager's
// VolumePool and TemplateStore. Bodies are validated by the schemas in src/manager/volumes.ts and templates.ts.

import type { FastifyInstance } from 'fastify';
import type { VmManager } from '../manager/manager.ts';
import { createVolumeSchema, volumeSchema, type CreateVolumeRequest } from '../manager/volumes.ts';
import { cloneSchema, createTemplateSchema, templateSchema, type CloneRequest } from '../manager/templates.ts';

export function registerStorageRoutes(app: FastifyInstance, manager: VmManager): void {
  app.addSchema(createVolumeSchema);
  app.addSchema(volumeSchema);
  app.addSchema(createTemplateSchema);
  app.addSchema(cloneSchema);
  app.addSchema(templateSchema);
  type NameParams = { Params: { name: string } };

  app.get('/volumes', async () => manager.volumes.list());
  app.post<{ Body: CreateVolumeRequest }>('/volumes', { schema: { body: { $ref: 'VolumeCreate#' } } }, async (request, reply) => {
    const volume = manager.volumes.create(request.body);
    reply.code(201);
    return volume;
  });
  app.get<NameParams>('/volumes/:name', async (request) => manager.volumes.get(request.params.name));
  app.delete<NameParams>('/volumes/:name', async (request, reply) => {
    manager.volumes.delete(request.params.name);
    reply.code(204).send();
  });

  app.get('/templates', async () => manager.templates.list());
  app.post<{ Body: { name: string; from: string } }>('/templates', { schema: { body: { $ref: 'TemplateCreate#' } } }, async (request, reply) => {
    const template = manager.templates.create(request.body.name, request.body.from);
    reply.code(201);
    return template;
  });
  app.get<NameParams>('/templates/:name', async (request) => manager.templates.get(request.params.name));
  app.delete<NameParams>('/templates/:name', async (request, reply) => {
    manager.templates.delete(request.params.name);
    reply.code(204).send();
  });
  app.post<NameParams & { Body: CloneRequest }>('/templates/:name/clone', { schema: { body: { $ref: 'CloneRequest#' } } }, async (request, reply) => {
    const clones = await manager.templates.clone(request.params.name, request.body);
    reply.code(201);
    return clones;
  });
}
