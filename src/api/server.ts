// The daemon's REST API (fastify) over a VmManager. Request bodies are validated by the JSON schemas of
// src/manager/schema.ts, which also fill in the defaults; every error leaves as {"error":{"code","message"}} with a
// stable code. On a TCP listener every request needs `Authorization: Bearer <token>`; the Unix socket is guarded by its
// file permissions (owner only), as Docker's and libvirt's are.

import crypto from 'node:crypto';
import os from 'node:os';
import type { ServerResponse } from 'node:http';
import Fastify, { type FastifyError, type FastifyInstance } from 'fastify';
import { describeHost, detectHost } from '../cli/host.ts';
import { findDefaultImage } from '../image/build.ts';
import type { VmManager, LifecycleEvent } from '../manager/manager.ts';
import {
  ERROR_CODES, errorSchema, ManagerError, resourcesPatchSchema, SNAPSHOT_NAME_PATTERN, snapshotSchema, vmDefinitionSchema, vmSchema, type ErrorCode, type VmDefinition,
} from '../manager/schema.ts';
import { openApiDocument } from './openapi.ts';
import { registerStorageRoutes } from './storage-routes.ts';
import { registerBackupRoutes } from './backup-routes.ts';
import { registerMigrationRoutes } from './migration-routes.ts';
import { DefinitionSyntaxError, registerDefinitionRoutes, syntaxErrorBody } from './definition-routes.ts';
import { PROMETHEUS_CONTENT_TYPE, prometheusText, StatsCollector } from '../manager/stats.ts';
import { registerConsoleRoute } from './console-route.ts';

export const API_VERSION = '0.1.0';

export interface ApiOptions {
  /** Require this bearer token on every request (for TCP listeners). */
  token?: string;
  /** Default timeout of POST /vms/:name/shutdown, in seconds. */
  shutdownTimeoutS?: number;
}

function errorBody(code: ErrorCode, message: string) {
  return { error: { code, message } };
}

function tokenMatches(header: string | undefined, token: string): boolean {
  const match = /^Bearer (.+)$/.exec(header ?? '');
  if (!match) return false;
  const given = crypto.createHash('sha256').update(match[1]).digest();
  const wanted = crypto.createHash('sha256').update(token).digest();
  return crypto.timingSafeEqual(given, wanted);
}

export async function createApi(manager: VmManager, options: ApiOptions = {}): Promise<FastifyInstance> {
  const app = Fastify({
    logger: false,
    forceCloseConnections: true,
    // One line that names the field: "body/cpus must be <= 64", "body has an unknown field 'foo'".
    schemaErrorFormatter: (errors, dataVar) => {
      const first = errors[0];
      const where = `${dataVar}${first.instancePath}`;
      const unknown = (first.params as { additionalProperty?: string }).additionalProperty;
      return new Error(unknown !== undefined ? `${where} has an unknown field '${unknown}'` : `${where} ${first.message ?? 'is invalid'}`);
    },
    ajv: {
      // Unknown fields and wrong types are errors, never silently dropped or converted; defaults are filled in.
      customOptions: { removeAdditional: false, coerceTypes: false, useDefaults: true, allErrors: false },
    },
  });
  app.addSchema(vmDefinitionSchema);
  app.addSchema(vmSchema);
  app.addSchema(errorSchema);
  app.addSchema(snapshotSchema);
  app.addSchema(resourcesPatchSchema);

  const events = new Set<ServerResponse>();
  app.addHook('onClose', async () => {
    for (const response of events) response.end();
  });

  if (options.token !== undefined) {
    const token = options.token;
    app.addHook('onRequest', async (request, reply) => {
      if (!tokenMatches(request.headers.authorization, token)) {
        reply.code(401).header('www-authenticate', 'Bearer').send(errorBody('unauthorized', 'a valid bearer token is required'));
        return reply;
      }
      return undefined;
    });
  }

  app.setErrorHandler((error: FastifyError | ManagerError, _request, reply) => {
    if (error instanceof ManagerError) return reply.code(error.httpStatus).send(errorBody(error.code, error.message));
    if (error instanceof DefinitionSyntaxError) return reply.code(400).send(syntaxErrorBody(error)); // a YAML body's line and column
    const fastifyError = error as FastifyError;
    if (fastifyError.validation) return reply.code(400).send(errorBody('invalid', fastifyError.message));
    const status = fastifyError.statusCode ?? 500;
    if (status >= 400 && status < 500) {
      // Malformed JSON, an empty body, a wrong content type, a body too large.
      return reply.code(400).send(errorBody('invalid', fastifyError.message));
    }
    return reply.code(500).send(errorBody('internal', fastifyError.message));
  });
  app.setNotFoundHandler((request, reply) => {
    reply.code(404).send(errorBody('not_found', `no such resource: ${request.method} ${request.url}`));
  });

  registerDefinitionRoutes(app, manager); // YAML bodies for POST /vms and PUT /vms/:name, GET /vms/:name/definition
  const definitionBody = { body: { $ref: 'VmDefinition#' } };
  type NameParams = { Params: { name: string } };

  app.get('/vms', async () => manager.list());
  app.post<{ Body: VmDefinition }>('/vms', { schema: definitionBody }, async (request, reply) => {
    reply.code(201);
    return manager.define(request.body);
  });
  app.get<NameParams>('/vms/:name', async (request) => manager.get(request.params.name));
  app.put<NameParams & { Body: VmDefinition }>('/vms/:name', { schema: definitionBody }, async (request) => manager.update(request.params.name, request.body));
  app.delete<NameParams>('/vms/:name', async (request, reply) => {
    manager.undefine(request.params.name);
    reply.code(204).send();
  });
  app.post<NameParams>('/vms/:name/start', async (request) => manager.start(request.params.name));
  app.post<NameParams>('/vms/:name/destroy', async (request) => manager.destroy(request.params.name));
  app.post<NameParams & { Body: { timeout?: number } | undefined }>('/vms/:name/reboot', {
    schema: { body: { type: ['object', 'null'], additionalProperties: false, properties: { timeout: { type: 'number', minimum: 0, maximum: 3600 } } } },
  }, async (request) => manager.reboot(request.params.name, (request.body?.timeout ?? options.shutdownTimeoutS ?? 60) * 1000));
  app.post<NameParams>('/vms/:name/suspend', async (request) => manager.suspend(request.params.name));
  app.post<NameParams>('/vms/:name/resume', async (request) => manager.resume(request.params.name));
  // Resource control at run time (and, with config, in the definition): src/manager/resources.ts.
  app.patch<NameParams & { Body: { [key: string]: unknown; config?: boolean } }>('/vms/:name/resources', {
    schema: { body: { $ref: 'ResourcesPatch#' } },
  }, async (request) => {
    const { config, ...changes } = request.body;
    if (Object.keys(changes).length === 0) throw new ManagerError('invalid', 'body names no resource to change (cpuQuotaPercent, cpuWeight, memoryMax, cpuPinning)');
    return manager.setResources(request.params.name, changes, config === true);
  });
  app.get('/host/resources', async () => manager.resources.available());
  app.get<NameParams>('/vms/:name/balloon', async (request) => manager.balloon(request.params.name));
  app.put<NameParams & { Body: { memory: number } }>('/vms/:name/balloon', {
    schema: { body: { type: 'object', additionalProperties: false, required: ['memory'], properties: { memory: { type: 'integer', minimum: 16, description: 'MiB left to the guest' } } } },
  }, async (request) => manager.balloon(request.params.name, request.body.memory));
  app.post<NameParams & { Body: { timeout?: number } | undefined }>('/vms/:name/shutdown', {
    schema: { body: { type: ['object', 'null'], additionalProperties: false, properties: { timeout: { type: 'number', minimum: 0, maximum: 3600 } } } },
  }, async (request) => {
    const timeoutS = request.body?.timeout ?? options.shutdownTimeoutS ?? 60;
    const { vm, graceful } = await manager.shutdown(request.params.name, timeoutS * 1000);
    return { ...vm, graceful };
  });

  // Snapshots: written by the VM's VMM while it runs (paused for the write), restored into a shut-off VM.
  type SnapParams = { Params: { name: string; snap: string } };
  app.get<NameParams>('/vms/:name/snapshots', async (request) => manager.listSnapshots(request.params.name));
  app.post<NameParams & { Body: { name?: string } | undefined }>('/vms/:name/snapshots', {
    schema: { body: { type: ['object', 'null'], additionalProperties: false, properties: { name: { type: 'string', pattern: SNAPSHOT_NAME_PATTERN } } } },
  }, async (request, reply) => {
    const snapshot = await manager.createSnapshot(request.params.name, request.body?.name);
    reply.code(201);
    return snapshot;
  });
  app.get<SnapParams>('/vms/:name/snapshots/:snap', async (request) => manager.getSnapshot(request.params.name, request.params.snap));
  app.post<SnapParams & { Body: { verify?: boolean } | undefined }>('/vms/:name/snapshots/:snap/restore', {
    schema: { body: { type: ['object', 'null'], additionalProperties: false, properties: { verify: { type: 'boolean', default: false } } } },
  }, async (request) => manager.restoreSnapshot(request.params.name, request.params.snap, request.body?.verify === true));
  app.delete<SnapParams>('/vms/:name/snapshots/:snap', async (request, reply) => {
    manager.deleteSnapshot(request.params.name, request.params.snap);
    reply.code(204).send();
  });

  let host: ReturnType<typeof detectHost> | undefined;
  app.get('/host', async () => {
    host ??= detectHost();
    const image = findDefaultImage();
    return {
      hostname: os.hostname(),
      cpus: host.logicalCpus,
      cpuModel: host.cpuModel,
      memory: { totalBytes: os.totalmem(), freeBytes: os.freemem() },
      loadAverage: os.loadavg(),
      engines: describeHost(host),
      defaultImage: image ? { kernelVersion: image.manifest.kernelVersion, kernel: image.kernel, initrd: image.initrd } : null,
      stateDir: manager.state.root,
      vms: { defined: manager.list().length, running: manager.runningCount() },
      vmmPool: (({ size, spares, residentBytes }) => ({ size, spares: spares.length, ready: spares.filter((s) => s.state === 'ready').length, residentBytes }))(manager.pool.view()),
      version: API_VERSION,
    };
  });
  // Statistics: JSON per VM and for the host, and everything as Prometheus metrics (src/manager/stats.ts).
  const stats = new StatsCollector(manager);
  app.get<NameParams>('/vms/:name/stats', async (request) => stats.vm(request.params.name));
  app.get('/host/stats', async () => stats.host());
  // The spare VMMs of `daemon --vmm-pool` (src/manager/pool.ts): each one's state, warm-up and resident set.
  app.get('/host/pool', async () => manager.pool.view());
  app.get('/metrics', async (_request, reply) => {
    const [host, vms] = [stats.host(), await stats.allVms()];
    reply.header('content-type', PROMETHEUS_CONTENT_TYPE);
    return prometheusText(host, vms, manager.pool.view());
  });
  registerStorageRoutes(app, manager); // /volumes, /templates
  registerBackupRoutes(app, manager); // disk snapshots, backups
  registerMigrationRoutes(app, manager); // live migration between daemons
  // The serial console over an upgraded connection (for TCP clients; `ringzero console` uses the VMM's socket).
  registerConsoleRoute(app, manager, (header) => options.token === undefined || tokenMatches(header, options.token));
  app.get('/openapi.json', async () => openApiDocument(API_VERSION));

  app.get('/events', (request, reply) => {
    reply.hijack();
    const response = reply.raw;
    response.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache', connection: 'keep-alive' });
    response.write(': ringzero lifecycle events\n\n');
    const send = (event: LifecycleEvent) => response.write(`event: lifecycle\ndata: ${JSON.stringify(event)}\n\n`);
    // A comment now and then keeps proxies and idle timeouts from closing a quiet stream.
    const keepAlive = setInterval(() => response.write(': keep-alive\n\n'), 15_000);
    manager.on('lifecycle', send);
    events.add(response);
    request.raw.on('close', () => {
      clearInterval(keepAlive);
      manager.off('lifecycle', send);
      events.delete(response);
    });
  });

  await app.ready();
  return app;
}

export { ERROR_CODES };
