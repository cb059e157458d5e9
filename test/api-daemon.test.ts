// The REST API and the definition verbs against a real `ringzero daemon` process in a temp state directory:
// define/list/info/edit/undefine through the real CLI and through HTTP, defaults from the schema, each kind of bad
// input with its status and stable code and the state directory unchanged, the OpenAPI document, /host, the SSE event
// stream, and the TCP listener's bearer token.
import test, { after, before } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { api, cli, Daemon, guestKernel, snapshot, tempDir } from './support/manager-harness.ts';
import { DEFAULT_CMDLINE } from '../src/vmm/config.ts';

let dir: string;
let daemon: Daemon;
let socket: string;
let kernel: string;
let tcpPort: number;
const token = 'test-token-0123456789abcdef';

before(async () => {
  dir = tempDir('api');
  kernel = guestKernel(dir, 'idle');
  const tokenFile = path.join(dir, 'token');
  fs.writeFileSync(tokenFile, `${token}\n`);
  daemon = await Daemon.start(path.join(dir, 'state'), ['--listen', '127.0.0.1:0', '--token-file', tokenFile]);
  socket = daemon.socket;
  const match = /API on http:\/\/127\.0\.0\.1:(\d+)/.exec(daemon.stderr);
  assert.ok(match, daemon.stderr);
  tcpPort = Number(match[1]);
});

after(async () => {
  await daemon?.stop();
  fs.rmSync(dir, { recursive: true, force: true });
});

test('define, list, info and undefine through the CLI; the schema fills in the defaults', async () => {
  const file = path.join(dir, 'web.json');
  fs.writeFileSync(file, JSON.stringify({ name: 'web', kernel, memory: 128 }));
  const defined = await cli(['define', file], socket);
  assert.equal(defined.status, 0, defined.stderr);
  assert.match(defined.stdout, /VM 'web' defined/);

  const list = await cli(['list'], socket);
  assert.equal(list.status, 0, list.stderr);
  assert.match(list.stdout, /^NAME\s+STATE\s+CPUS\s+MEMORY\s+PID$/m);
  assert.match(list.stdout, /^web\s+shut off\s+1\s+128M\s+-$/m);

  const info = await cli(['info', 'web', '--json'], socket);
  assert.equal(info.status, 0, info.stderr);
  const vm = JSON.parse(info.stdout);
  assert.deepEqual(vm.definition, {
    name: 'web', kernel, memory: 128, engine: 'auto', cpus: 1, cmdline: DEFAULT_CMDLINE, disks: [], rng: false,
    console: 'serial', onReboot: 'restart', autostart: false,
  });
  assert.equal(vm.state, 'shut off');
  // What is on disk is the validated definition.
  assert.deepEqual(JSON.parse(fs.readFileSync(path.join(daemon.stateDir, 'vms', 'web.json'), 'utf8')), vm.definition);

  const text = await cli(['info', 'web'], socket);
  assert.match(text.stdout, /^State:\s+shut off$/m);
  assert.match(text.stdout, /^Memory:\s+128 MiB$/m);

  const undefined_ = await cli(['undefine', 'web'], socket);
  assert.equal(undefined_.status, 0, undefined_.stderr);
  assert.ok(!fs.existsSync(path.join(daemon.stateDir, 'vms', 'web.json')));
  const gone = await cli(['info', 'web'], socket);
  assert.equal(gone.status, 1);
  assert.match(gone.stderr, /no VM named 'web' \[not_found\]/);
});

test('HTTP: POST /vms is 201 with the VM, GET /vms and /vms/:name, PUT replaces the definition, DELETE is 204', async () => {
  const created = await api({ socket }, 'POST', '/vms', { name: 'db', kernel, cpus: 2 });
  assert.equal(created.status, 201, JSON.stringify(created.body));
  assert.equal(created.body.definition.cpus, 2);
  assert.equal(created.body.definition.memory, 256);
  const all = await api({ socket }, 'GET', '/vms');
  assert.deepEqual(all.body.map((v: { name: string }) => v.name), ['db']);
  const put = await api({ socket }, 'PUT', '/vms/db', { name: 'db', kernel, cpus: 4, autostart: false });
  assert.equal(put.status, 200, JSON.stringify(put.body));
  assert.equal(put.body.definition.cpus, 4);
  assert.equal(JSON.parse(fs.readFileSync(path.join(daemon.stateDir, 'vms', 'db.json'), 'utf8')).cpus, 4);
  const removed = await api({ socket }, 'DELETE', '/vms/db');
  assert.equal(removed.status, 204);
  assert.equal((await api({ socket }, 'GET', '/vms/db')).status, 404);
});

test('edit NAME opens $EDITOR on the definition and PUTs the result', async () => {
  assert.equal((await api({ socket }, 'POST', '/vms', { name: 'ed', kernel })).status, 201);
  const previous = process.env.EDITOR;
  process.env.EDITOR = 'sed -i s/256/512/';
  try {
    const edited = await cli(['edit', 'ed'], socket);
    assert.equal(edited.status, 0, edited.stderr);
    assert.match(edited.stdout, /definition updated/);
    process.env.EDITOR = 'sed -i s/512/1/';
    const refused = await cli(['edit', 'ed'], socket);
    assert.equal(refused.status, 1);
    assert.match(refused.stderr, /body\/memory must be >= 64 \[invalid\]/);
  } finally {
    if (previous === undefined) delete process.env.EDITOR; else process.env.EDITOR = previous;
  }
  assert.equal((await api({ socket }, 'GET', '/vms/ed')).body.definition.memory, 512);
  assert.equal((await api({ socket }, 'DELETE', '/vms/ed')).status, 204);
});

test('bad input: each a clear error with a stable code, and nothing changed in the state directory', async () => {
  assert.equal((await api({ socket }, 'POST', '/vms', { name: 'keep', kernel })).status, 201);
  const before = snapshot(daemon.stateDir);
  const cases: Array<{ what: string; method: string; path: string; body?: unknown; raw?: string; status: number; code: string; message?: RegExp }> = [
    { what: 'malformed JSON', method: 'POST', path: '/vms', raw: '{"name": "x",', status: 400, code: 'invalid', message: /JSON/ },
    { what: 'empty body', method: 'POST', path: '/vms', raw: '', status: 400, code: 'invalid' },
    { what: 'no name', method: 'POST', path: '/vms', body: { cpus: 1 }, status: 400, code: 'invalid', message: /name/ },
    { what: 'a name with a slash', method: 'POST', path: '/vms', body: { name: '../etc' }, status: 400, code: 'invalid', message: /body\/name/ },
    { what: 'no cpus', method: 'POST', path: '/vms', body: { name: 'x', cpus: 0 }, status: 400, code: 'invalid', message: /body\/cpus must be >= 1/ },
    { what: 'too many cpus', method: 'POST', path: '/vms', body: { name: 'x', cpus: 65 }, status: 400, code: 'invalid', message: /body\/cpus must be <= 64/ },
    { what: 'cpus as a string', method: 'POST', path: '/vms', body: { name: 'x', cpus: '2' }, status: 400, code: 'invalid', message: /body\/cpus must be integer/ },
    { what: 'impossible memory', method: 'POST', path: '/vms', body: { name: 'x', memory: 1 << 20 }, status: 400, code: 'invalid', message: /body\/memory must be <= 65536/ },
    { what: 'an unknown field', method: 'POST', path: '/vms', body: { name: 'x', vcpus: 2 }, status: 400, code: 'invalid', message: /unknown field 'vcpus'/ },
    { what: 'a relative disk path', method: 'POST', path: '/vms', body: { name: 'x', disks: [{ path: 'disk.img' }] }, status: 400, code: 'invalid', message: /body\/disks\/0\/path/ },
    { what: 'a serial too long', method: 'POST', path: '/vms', body: { name: 'x', disks: [{ path: '/d.img', serial: 'x'.repeat(21) }] }, status: 400, code: 'invalid' },
    { what: 'a duplicate name', method: 'POST', path: '/vms', body: { name: 'keep', kernel }, status: 409, code: 'conflict', message: /already defined/ },
    { what: 'an unknown VM', method: 'GET', path: '/vms/nope', status: 404, code: 'not_found' },
    { what: 'undefine an unknown VM', method: 'DELETE', path: '/vms/nope', status: 404, code: 'not_found' },
    { what: 'start an unknown VM', method: 'POST', path: '/vms/nope/start', status: 404, code: 'not_found' },
    { what: 'destroy a VM that is shut off', method: 'POST', path: '/vms/keep/destroy', status: 409, code: 'conflict', message: /not running/ },
    { what: 'shutdown a VM that is shut off', method: 'POST', path: '/vms/keep/shutdown', status: 409, code: 'conflict' },
    { what: 'a rename through PUT', method: 'PUT', path: '/vms/keep', body: { name: 'other' }, status: 400, code: 'invalid', message: /renaming/ },
    { what: 'an invalid PUT', method: 'PUT', path: '/vms/keep', body: { name: 'keep', cpus: -1 }, status: 400, code: 'invalid' },
    { what: 'PUT of an unknown VM', method: 'PUT', path: '/vms/nope', body: { name: 'nope' }, status: 404, code: 'not_found' },
    { what: 'a negative shutdown timeout', method: 'POST', path: '/vms/keep/shutdown', body: { timeout: -1 }, status: 400, code: 'invalid' },
    { what: 'an unknown resource', method: 'GET', path: '/nothing', status: 404, code: 'not_found' },
  ];
  for (const c of cases) {
    const r = await api({ socket }, c.method, c.path, c.body, c.raw !== undefined ? { rawBody: c.raw } : {});
    assert.equal(r.status, c.status, `${c.what}: ${JSON.stringify(r.body)}`);
    assert.equal(r.body?.error?.code, c.code, `${c.what}: ${JSON.stringify(r.body)}`);
    assert.equal(typeof r.body.error.message, 'string', c.what);
    if (c.message) assert.match(r.body.error.message, c.message, c.what);
  }
  // A body that is not JSON at all.
  const wrongType = await api({ socket }, 'POST', '/vms', undefined, { rawBody: 'name=x', headers: { 'content-type': 'text/plain' } });
  assert.equal(wrongType.status, 400);
  assert.equal(wrongType.body.error.code, 'invalid');
  assert.deepEqual(snapshot(daemon.stateDir), before, 'no error may change the state directory');

  // The CLI reports the code; a file that is not JSON is a usage error (status 2) before any request.
  const bad = path.join(dir, 'bad.json');
  fs.writeFileSync(bad, JSON.stringify({ name: 'x', cpus: 0 }));
  const refused = await cli(['define', bad], socket);
  assert.equal(refused.status, 1);
  assert.match(refused.stderr, /^ringzero: body\/cpus must be >= 1 \[invalid\]$/m);
  fs.writeFileSync(bad, '{ nope');
  const notJson = await cli(['define', bad], socket);
  assert.equal(notJson.status, 2);
  assert.match(notJson.stderr, /is not valid JSON/);
  const missing = await cli(['define', path.join(dir, 'missing.json')], socket);
  assert.equal(missing.status, 2);
  assert.deepEqual(snapshot(daemon.stateDir), before);
  assert.equal((await api({ socket }, 'DELETE', '/vms/keep')).status, 204);
});

test('without a daemon the CLI says so in one line', async () => {
  const r = await cli(['list'], path.join(dir, 'no-daemon.sock'));
  assert.equal(r.status, 1);
  assert.match(r.stderr, /no ringzero daemon answers on .*no-daemon\.sock .*\[unreachable\]/);
});

test('GET /openapi.json is an OpenAPI 3 document built from the validation schemas', async () => {
  const r = await api({ socket }, 'GET', '/openapi.json');
  assert.equal(r.status, 200);
  assert.match(r.body.openapi, /^3\./);
  for (const p of ['/vms', '/vms/{name}', '/vms/{name}/start', '/vms/{name}/shutdown', '/vms/{name}/destroy', '/vms/{name}/reboot', '/host', '/events']) {
    assert.ok(r.body.paths[p], `path ${p}`);
  }
  const definition = r.body.components.schemas.VmDefinition;
  assert.equal(definition.properties.cpus.default, 1);
  assert.equal(definition.properties.cpus.maximum, 64);
  assert.equal(definition.additionalProperties, false);
  assert.equal(r.body.paths['/vms'].post.requestBody.content['application/json'].schema.$ref, '#/components/schemas/VmDefinition');
  assert.equal(r.body.components.schemas.Vm.properties.definition.$ref, '#/components/schemas/VmDefinition');
  assert.ok(r.body.components.schemas.Error.properties.error.properties.code.enum.includes('not_found'));
});

test('GET /host tells the host\'s CPUs, memory, engines and VM counts', async () => {
  const r = await api({ socket }, 'GET', '/host');
  assert.equal(r.status, 200);
  assert.ok(r.body.cpus >= 1);
  assert.ok(r.body.memory.totalBytes > 0);
  assert.ok(Array.isArray(r.body.engines) && r.body.engines.length > 0);
  assert.deepEqual(r.body.vms, { defined: 0, running: 0 });
});

test('GET /events streams lifecycle events as server-sent events', async () => {
  const events: Array<{ type: string; name: string }> = [];
  const request = http.request({ socketPath: socket, path: '/events' });
  const response = await new Promise<http.IncomingMessage>((resolve) => { request.on('response', resolve); request.end(); });
  assert.equal(response.statusCode, 200);
  assert.match(String(response.headers['content-type']), /^text\/event-stream/);
  let buffer = '';
  response.setEncoding('utf8').on('data', (s: string) => {
    buffer += s;
    let end;
    while ((end = buffer.indexOf('\n\n')) >= 0) {
      const message = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      const data = /^data: (.*)$/m.exec(message);
      if (/^event: lifecycle$/m.test(message) && data) events.push(JSON.parse(data[1]));
    }
  });
  await api({ socket }, 'POST', '/vms', { name: 'ev', kernel });
  await api({ socket }, 'DELETE', '/vms/ev');
  const deadline = Date.now() + 5000;
  while (events.length < 2 && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 20));
  request.destroy();
  assert.deepEqual(events.map((e) => `${e.type} ${e.name}`), ['defined ev', 'undefined ev']);
});

test('the TCP listener requires the bearer token; the Unix socket does not', async () => {
  const none = await api({ port: tcpPort }, 'GET', '/vms');
  assert.equal(none.status, 401);
  assert.equal(none.body.error.code, 'unauthorized');
  const wrong = await api({ port: tcpPort }, 'GET', '/vms', undefined, { headers: { authorization: 'Bearer wrong-token-000000000' } });
  assert.equal(wrong.status, 401);
  const before = snapshot(daemon.stateDir);
  const refusedDefine = await api({ port: tcpPort }, 'POST', '/vms', { name: 'sneaky' });
  assert.equal(refusedDefine.status, 401);
  assert.deepEqual(snapshot(daemon.stateDir), before);
  const good = await api({ port: tcpPort }, 'GET', '/vms', undefined, { headers: { authorization: `Bearer ${token}` } });
  assert.equal(good.status, 200);
  assert.deepEqual(good.body, []);
});
