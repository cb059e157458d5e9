// VM definitions in YAML over the REST API (src/manager/definition-text.ts): POST /vms and PUT /vms/{name} accept
// `Content-Type: application/yaml` (validated by the same VmDefinition schema as JSON, so the same structured errors;
// a YAML syntax error is 400 `invalid` with the line and column), and GET /vms/{name}/definition gives the definition
// as text in the format it was written in (YAML: the user's own text, comments included, while it still describes the
// stored definition), or the one asked for (?format= or Accept).

import type { FastifyInstance, FastifyRequest } from 'fastify';
import type { VmManager } from '../manager/manager.ts';
import {
  DefinitionSources, DefinitionSyntaxError, formatOfContentType, JSON_CONTENT_TYPE, parseYaml, YAML_CONTENT_TYPE, YAML_MEDIA_TYPES,
  type DefinitionFormat,
} from '../manager/definition-text.ts';

/** The YAML text of the request being handled (set by the content-type parser). */
const yamlText = new WeakMap<FastifyRequest, string>();

/** Whether a route is one that writes a VM definition from its body. */
function definitionWrite(request: FastifyRequest): string | undefined {
  const route = request.routeOptions.url;
  if (request.method === 'POST' && route === '/vms') return (request.body as { name?: string } | undefined)?.name;
  if (request.method === 'PUT' && route === '/vms/:name') return (request.params as { name: string }).name;
  return undefined;
}

export function registerDefinitionRoutes(app: FastifyInstance, manager: VmManager, log: (line: string) => void = () => {}): void {
  const sources = new DefinitionSources(manager.state.root);

  app.addContentTypeParser([...YAML_MEDIA_TYPES], { parseAs: 'string' }, (request, body, done) => {
    try {
      const value = parseYaml(body as string);
      yamlText.set(request, body as string);
      done(null, value);
    } catch (error) {
      // A DefinitionSyntaxError: the API's error handler turns it into 400 invalid with its line and column.
      done(error as Error, undefined);
    }
  });

  // Once a definition is written (before the answer leaves, so a following GET sees it), keep its YAML text, or drop
  // the YAML kept before when it came as JSON. A failure here does not undo the definition: edit then renders it.
  app.addHook('onSend', async (request, reply, payload) => {
    if (reply.statusCode >= 300) return payload;
    const route = request.routeOptions.url;
    if (request.method === 'DELETE' && route === '/vms/:name') {
      sources.forget((request.params as { name: string }).name);
      return payload;
    }
    const name = definitionWrite(request);
    if (name === undefined) return payload;
    try {
      const text = yamlText.get(request);
      sources.record(name, text !== undefined ? 'yaml' : 'json', text ?? '', manager.get(name).definition);
    } catch (error) {
      log(`could not keep the text of VM '${name}''s definition: ${(error as Error).message}`);
    }
    return payload;
  });

  type DefinitionRequest = { Params: { name: string }; Querystring: { format?: DefinitionFormat } };
  app.get<DefinitionRequest>('/vms/:name/definition', {
    schema: { querystring: { type: 'object', additionalProperties: false, properties: { format: { type: 'string', enum: ['json', 'yaml'] } } } },
  }, async (request, reply) => {
    const { definition } = manager.get(request.params.name);
    const accept = (request.headers.accept ?? '').split(',').map((part) => formatOfContentType(part)).find((f) => f !== undefined);
    const { format, text } = sources.text(request.params.name, definition, request.query.format ?? accept);
    reply.header('content-type', format === 'yaml' ? YAML_CONTENT_TYPE : JSON_CONTENT_TYPE);
    return text;
  });
}

/** The error body of a definition's syntax error: the code and message of any error, plus where it is. */
export function syntaxErrorBody(error: DefinitionSyntaxError) {
  return {
    error: {
      code: 'invalid' as const, message: error.message,
      ...(error.line !== undefined ? { line: error.line, column: error.column } : {}),
    },
  };
}

export { DefinitionSyntaxError };
