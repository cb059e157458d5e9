// The OpenAPI entries of /volumes and /templates (merged into src/api/openapi.ts's document), from the same schema
// objects that validate the requests.

import { createVolumeSchema, volumeSchema } from '../manager/volumes.ts';
import { cloneSchema, createTemplateSchema, templateSchema, TEMPLATE_NAME_PATTERN } from '../manager/templates.ts';

const ref = (name: string) => ({ $ref: `#/components/schemas/${name}` });
const json = (schema: unknown) => ({ 'application/json': { schema } });
const errors = (...statuses: number[]) => Object.fromEntries(statuses.map((s) => [String(s), {
  description: {
    400: 'invalid input', 401: 'missing or wrong token', 404: 'no such volume, template or VM', 409: 'in use, or already exists',
    422: 'an image that is corrupt (code corrupt), not qcow2 (not_qcow2), or uses an unsupported feature (unsupported)', 500: 'failure',
  }[s] ?? 'error',
  content: json(ref('Error')),
}]));
const strip = (schema: Record<string, unknown>) => {
  const { $id: _id, ...rest } = schema;
  return rest;
};
const volumeName = { name: 'name', in: 'path', required: true, schema: { type: 'string', pattern: createVolumeSchema.properties.name.pattern } };
const templateName = { name: 'name', in: 'path', required: true, schema: { type: 'string', pattern: TEMPLATE_NAME_PATTERN } };

export function storageSchemas(): Record<string, unknown> {
  return {
    Volume: strip(volumeSchema), VolumeCreate: strip(createVolumeSchema), Template: strip(templateSchema),
    TemplateCreate: strip(createTemplateSchema), CloneRequest: strip(cloneSchema),
  };
}

export function storagePaths(): Record<string, unknown> {
  return {
    '/volumes': {
      get: { summary: 'the volumes of the storage pool (DIR/volumes)', responses: { 200: { description: 'every volume', content: json({ type: 'array', items: ref('Volume') }) }, ...errors(401) } },
      post: {
        summary: 'create a raw or qcow2 volume of a size, or a qcow2 overlay of another volume (written atomically)',
        requestBody: { required: true, content: json(ref('VolumeCreate')) },
        responses: { 201: { description: 'created', content: json(ref('Volume')) }, ...errors(400, 401, 404, 409, 422) },
      },
    },
    '/volumes/{name}': {
      get: { summary: 'one volume: format, sizes, backing file, users', parameters: [volumeName], responses: { 200: { description: 'the volume', content: json(ref('Volume')) }, ...errors(401, 404, 422) } },
      delete: {
        summary: 'delete a volume (refused while a running VM uses it or another volume is an overlay of it)', parameters: [volumeName],
        responses: { 204: { description: 'deleted' }, ...errors(401, 404, 409) },
      },
    },
    '/templates': {
      get: { summary: 'the templates', responses: { 200: { description: 'every template', content: json({ type: 'array', items: ref('Template') }) }, ...errors(401) } },
      post: {
        summary: 'make a template from a shut-off VM: its definition and standalone read-only copies of its disks',
        requestBody: { required: true, content: json(ref('TemplateCreate')) },
        responses: { 201: { description: 'created', content: json(ref('Template')) }, ...errors(400, 401, 404, 409, 422) },
      },
    },
    '/templates/{name}': {
      get: { summary: 'one template', parameters: [templateName], responses: { 200: { description: 'the template', content: json(ref('Template')) }, ...errors(401, 404) } },
      delete: { summary: 'delete a template no linked clone depends on', parameters: [templateName], responses: { 204: { description: 'deleted' }, ...errors(401, 404, 409) } },
    },
    '/templates/{name}/clone': {
      post: {
        summary: 'define COUNT VMs from the template (PREFIX-1, PREFIX-2, ... the next free names): disks as qcow2 overlays of the '
          + 'template\'s (linked) or full copies; each with its own hostname and MAC on the kernel command line and in a NoCloud seed disk',
        parameters: [templateName], requestBody: { required: true, content: json(ref('CloneRequest')) },
        responses: {
          201: {
            description: 'the clones, defined and shut off',
            content: json({ type: 'array', items: { type: 'object', properties: { name: { type: 'string' }, hostname: { type: 'string' }, mac: { type: 'string' }, disks: { type: 'array', items: { type: 'string' } }, seed: { type: 'string' } } } }),
          },
          ...errors(400, 401, 404, 409, 422),
        },
      },
    },
  };
}
