// The REST API and the definition verbs against a real `ringzero daemon` process in a temp state directory:
// define/list/info/edit/undefine through the real CLI and through HTTP, defaults from the schema, each kind of bad
// input with its status and stable code and the state directory unchanged, definitions in YAML (CLI define/edit of
// a .yaml file, POST /vms with application/yaml: the same schema errors, syntax errors with line and column), the
// OpenAPI document, /host, the SSE event stream, the TCP listener's bearer token, and a VM's serial console over an
// upgraded connection (GET /vms/:name/console, an echo guest, two viewers over TCP).
import test, { before } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { api, cli, Daemon, daemonFixture, guestKernel, snapshot } from './support/manager-harness.ts';
import { DEFAULT_CMDLINE } from '../src/vmm/config.ts';

const token = 'test-token-0123456789abcdef';
// The daemon also listens on TCP, with the bearer token from a file in the fixture's directory.
const fixture = daemonFixture('api', {
  args: (fixtureDir) => {
    const tokenFile = path.join(fixtureDir, 'token');
    fs.writeFileSync(tokenFile, `${token}\n`);
    return ['--listen', '127.0.0.1:0', '--token-file', tokenFile];
  },
});
const dir = fixture.dir;
let daemon: Daemon;
let socket: string;
let kernel: string;
let tcpPort: number;

before(async () => {
  kernel = guestKernel(dir, 'idle');
  daemon = await fixture.ready;
  socket = daemon.socket;
  const match = /API on http:\/\/127\.0\.0\.1:(\d+)/.exec(daemon.stderr);
  assert.ok(match, daemon.stderr);
  tcpPort = Number(match[1]);
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

test('YAML: define FILE.yaml through the CLI gives the same definition as JSON; edit reopens the YAML as written, comments included', async () => {
  const yamlFile = path.join(dir, 'front.yaml');
  const text = `# the front end (a comment that edit must keep)\nname: front\nkernel: ${kernel}\nmemory: 128   # MiB\ncpus: 2\n`
    + 'cmdline: "console=ttyS0 quiet"\nautostart: false\ndisks:\n  - path: /srv/front.img\n    serial: "no"\n';
  fs.writeFileSync(yamlFile, text);
  const defined = await cli(['define', yamlFile], socket);
  assert.equal(defined.status, 0, defined.stderr);
  assert.match(defined.stdout, /VM 'front' defined/);
  // The same definition written as JSON, under another name: the two stored definitions are equal but for the name.
  const jsonFile = path.join(dir, 'back.json');
  fs.writeFileSync(jsonFile, JSON.stringify({ name: 'back', kernel, memory: 128, cpus: 2, cmdline: 'console=ttyS0 quiet', autostart: false, disks: [{ path: '/srv/front.img', serial: 'no' }] }));
  assert.equal((await cli(['define', jsonFile], socket)).status, 0);
  const stored = (name: string) => JSON.parse(fs.readFileSync(path.join(daemon.stateDir, 'vms', `${name}.json`), 'utf8'));
  assert.deepEqual({ ...stored('front'), name: 'x' }, { ...stored('back'), name: 'x' });
  // YAML 1.2: the serial "no" is the string it was quoted as, and the defaults are filled in as for JSON.
  assert.equal(stored('front').disks[0].serial, 'no');
  assert.equal(stored('front').console, 'serial');

  // GET /vms/{name}/definition: the YAML as written; ?format=json renders it; a JSON-defined VM comes as JSON.
  const asWritten = await api({ socket }, 'GET', '/vms/front/definition');
  assert.equal(asWritten.status, 200);
  assert.match(String(asWritten.headers['content-type']), /^application\/yaml/);
  assert.equal(asWritten.body, text);
  const asJson = await api({ socket }, 'GET', '/vms/front/definition?format=json');
  assert.deepEqual(asJson.body, stored('front'));
  assert.match(String((await api({ socket }, 'GET', '/vms/back/definition')).headers['content-type']), /^application\/json/);

  const previous = process.env.EDITOR;
  try {
    // edit opens NAME.yaml holding the text as written; the change is saved and the comments stay.
    process.env.EDITOR = 'f() { case "$1" in *.yaml) sed -i "s/^memory: 128/memory: 192/" "$1";; *) exit 3;; esac; }; f';
    const edited = await cli(['edit', 'front'], socket);
    assert.equal(edited.status, 0, edited.stderr);
    assert.equal(stored('front').memory, 192);
    assert.equal((await api({ socket }, 'GET', '/vms/front/definition')).body, text.replace('memory: 128', 'memory: 192'));
    // A YAML syntax error in the edit is a usage error naming the line and column; nothing is sent.
    process.env.EDITOR = 'sed -i "s/^cpus: 2/cpus: [2/"';
    const broken = await cli(['edit', 'front'], socket);
    assert.equal(broken.status, 2, broken.stderr);
    assert.match(broken.stderr, /the edited definition is not valid YAML: line \d+, column \d+: .*: unchanged/);
    assert.equal(stored('front').cpus, 2);
    // A schema error in YAML is the API's message for JSON.
    process.env.EDITOR = 'sed -i "s/^cpus: 2/cpus: 0/"';
    const refused = await cli(['edit', 'front'], socket);
    assert.equal(refused.status, 1);
    assert.match(refused.stderr, /body\/cpus must be >= 1 \[invalid\]/);
    // --format json converts: the VM's definition is JSON from then on.
    process.env.EDITOR = 'f() { case "$1" in *.json) sed -i "s/192/256/" "$1";; *) exit 3;; esac; }; f';
    const converted = await cli(['edit', 'front', '--format', 'json'], socket);
    assert.equal(converted.status, 0, converted.stderr);
    assert.equal(stored('front').memory, 256);
    assert.match(String((await api({ socket }, 'GET', '/vms/front/definition')).headers['content-type']), /^application\/json/);
  } finally {
    if (previous === undefined) delete process.env.EDITOR; else process.env.EDITOR = previous;
  }

  // A definition changed another way (PUT as JSON here) is rendered, not the stale text.
  const yamlPut = await api({ socket }, 'PUT', '/vms/back', undefined, { rawBody: `name: back\nkernel: ${kernel}\n# two\ncpus: 2\n`, headers: { 'content-type': 'application/yaml' } });
  assert.equal(yamlPut.status, 200, JSON.stringify(yamlPut.body));
  assert.match((await api({ socket }, 'GET', '/vms/back/definition')).body, /# two/);
  assert.equal((await api({ socket }, 'PUT', '/vms/back', { name: 'back', kernel, cpus: 3 })).status, 200);
  const rendered = await api({ socket }, 'GET', '/vms/back/definition?format=yaml');
  assert.doesNotMatch(rendered.body, /# two/);
  assert.match(rendered.body, /^cpus: 3$/m);

  // The YAML syntax error of define: status 2, the line and column, before any request.
  const bad = path.join(dir, 'bad.yml');
  fs.writeFileSync(bad, 'name: x\ncpus: [1\n');
  const refused = await cli(['define', bad], socket);
  assert.equal(refused.status, 2);
  assert.match(refused.stderr, /'.*bad\.yml' is not valid YAML: line \d+, column \d+: /);
  // A JSON syntax error names them too.
  fs.writeFileSync(bad.replace('.yml', '.json'), '{\n  "name": "x",\n  "cpus": 1,\n}');
  const badJson = await cli(['define', bad.replace('.yml', '.json')], socket);
  assert.equal(badJson.status, 2);
  assert.match(badJson.stderr, /is not valid JSON: line 4, column 1: /);
  for (const name of ['front', 'back']) assert.equal((await api({ socket }, 'DELETE', `/vms/${name}`)).status, 204);
  assert.deepEqual(fs.readdirSync(path.join(daemon.stateDir, 'definition-sources')), [], 'undefine forgets the YAML text');
});

test('YAML over HTTP: POST /vms with application/yaml is validated by the same schema with the same errors; a syntax error names line and column; nothing changes on disk', async () => {
  const yaml = (text: string, path_ = '/vms', method = 'POST') => api({ socket }, method, path_, undefined, { rawBody: text, headers: { 'content-type': 'application/yaml' } });
  const created = await yaml(`name: y1\nkernel: ${kernel}\ncpus: 2\n`);
  assert.equal(created.status, 201, JSON.stringify(created.body));
  assert.equal(created.body.definition.cpus, 2);
  assert.equal(created.body.definition.memory, 256);
  // text/yaml and application/x-yaml are read as YAML too.
  const other = await api({ socket }, 'POST', '/vms', undefined, { rawBody: `name: y2\nkernel: ${kernel}\n`, headers: { 'content-type': 'text/yaml; charset=utf-8' } });
  assert.equal(other.status, 201, JSON.stringify(other.body));
  const before = snapshot(daemon.stateDir);
  const cases: Array<{ what: string; text: string; status: number; code: string; message: RegExp; line?: number; column?: number }> = [
    // The same messages as the JSON cases of the bad-input test.
    { what: 'no cpus', text: 'name: x\ncpus: 0\n', status: 400, code: 'invalid', message: /^body\/cpus must be >= 1$/ },
    { what: 'cpus as a string', text: 'name: x\ncpus: "2"\n', status: 400, code: 'invalid', message: /^body\/cpus must be integer$/ },
    { what: 'an unknown field', text: 'name: x\nvcpus: 2\n', status: 400, code: 'invalid', message: /unknown field 'vcpus'/ },
    { what: 'a relative disk path', text: 'name: x\ndisks:\n  - path: disk.img\n', status: 400, code: 'invalid', message: /body\/disks\/0\/path/ },
    { what: 'a duplicate name', text: `name: y1\nkernel: ${kernel}\n`, status: 409, code: 'conflict', message: /already defined/ },
    // YAML 1.1's boolean words are strings in YAML 1.2: a clear type error, not a silent false.
    { what: 'rng: no', text: 'name: x\nrng: no\n', status: 400, code: 'invalid', message: /^body\/rng must be boolean$/ },
    { what: 'a list, not a mapping', text: '- name: x\n', status: 400, code: 'invalid', message: /^body must be object$/ },
    // Syntax errors: where they are.
    { what: 'an unclosed flow sequence', text: 'name: x\ncpus: [1\n', status: 400, code: 'invalid', message: /^YAML syntax error at line 3, column 1: / , line: 3, column: 1 },
    { what: 'a bad indent', text: 'name: x\n  cpus: 1\n', status: 400, code: 'invalid', message: /^YAML syntax error at line 1, column 7: /, line: 1, column: 7 },
    { what: 'a duplicate key', text: 'name: x\ncpus: 1\ncpus: 2\n', status: 400, code: 'invalid', message: /^YAML syntax error at line 3, column 1: Map keys must be unique/, line: 3, column: 1 },
    { what: 'two documents', text: 'name: x\n---\nname: y\n', status: 400, code: 'invalid', message: /multiple documents/, line: 2, column: 1 },
    { what: 'an unknown tag', text: 'name: !vm x\n', status: 400, code: 'invalid', message: /^YAML syntax error at line 1, column 7: Unresolved tag: !vm/, line: 1, column: 7 },
    { what: 'an empty body', text: '', status: 400, code: 'invalid', message: /empty/ },
    // "Billion laughs": aliases past the cap are refused, not expanded.
    {
      what: 'alias expansion', status: 400, code: 'invalid', message: /alias/i,
      text: `a: &a [x, x, x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a, *a]\nc: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b, *b]\nname: x\n`,
    },
  ];
  for (const c of cases) {
    const r = await yaml(c.text);
    assert.equal(r.status, c.status, `${c.what}: ${JSON.stringify(r.body)}`);
    assert.equal(r.body?.error?.code, c.code, `${c.what}: ${JSON.stringify(r.body)}`);
    assert.match(r.body.error.message, c.message, c.what);
    if (c.line !== undefined) assert.deepEqual([r.body.error.line, r.body.error.column], [c.line, c.column], `${c.what}: ${JSON.stringify(r.body)}`);
  }
  // PUT takes YAML too, with the same checks.
  const put = await yaml('name: y1\ncpus: 65\n', '/vms/y1', 'PUT');
  assert.equal(put.status, 400);
  assert.equal(put.body.error.message, 'body/cpus must be <= 64');
  assert.deepEqual(snapshot(daemon.stateDir), before, 'no error may change the state directory');
  for (const name of ['y1', 'y2']) assert.equal((await api({ socket }, 'DELETE', `/vms/${name}`)).status, 204);
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
  for (const p of ['/vms', '/vms/{name}', '/vms/{name}/start', '/vms/{name}/shutdown', '/vms/{name}/destroy', '/vms/{name}/reboot', '/vms/{name}/console', '/host', '/events']) {
    assert.ok(r.body.paths[p], `path ${p}`);
  }
  const definition = r.body.components.schemas.VmDefinition;
  assert.equal(definition.properties.cpus.default, 1);
  assert.equal(definition.properties.cpus.maximum, 64);
  assert.equal(definition.additionalProperties, false);
  assert.equal(r.body.paths['/vms'].post.requestBody.content['application/json'].schema.$ref, '#/components/schemas/VmDefinition');
  assert.equal(r.body.paths['/vms'].post.requestBody.content['application/yaml'].schema.$ref, '#/components/schemas/VmDefinition');
  assert.ok(r.body.paths['/vms/{name}/definition'].get);
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

/** GET with `Upgrade: protocol` over TCP: the upgraded socket (status 101), or the error answer's status and body. */
function upgrade(port: number, urlPath: string, headers: Record<string, string>, protocol = 'ringzero-console'): Promise<{ status: number; body?: any; socket?: import('node:net').Socket }> {
  return new Promise((resolve, reject) => {
    const request = http.request({ host: '127.0.0.1', port, path: urlPath, headers: { connection: 'Upgrade', upgrade: protocol, ...headers } });
    request.on('upgrade', (response, upgraded, head) => {
      if (head.length > 0) upgraded.unshift(head);
      resolve({ status: response.statusCode ?? 0, socket: upgraded });
    });
    request.on('response', (response) => {
      let text = '';
      response.setEncoding('utf8').on('data', (s: string) => { text += s; });
      response.on('end', () => resolve({ status: response.statusCode ?? 0, body: JSON.parse(text) }));
    });
    request.on('error', reject);
    request.end();
  });
}

/** Everything an upgraded console socket receives, and whether it has closed. */
function viewer(socket: import('node:net').Socket): { text: () => string; closed: () => boolean } {
  let text = '';
  let closed = false;
  socket.setEncoding('latin1').on('data', (s: string) => { text += s; });
  socket.on('close', () => { closed = true; });
  socket.on('error', () => {});
  return { text: () => text, closed: () => closed };
}

test('GET /vms/:name/console upgrades to the serial console: over TCP with the token, two viewers, detach, errors with codes', async () => {
  const echo = guestKernel(dir, 'echo');
  const auth = { authorization: `Bearer ${token}` };
  const until = async (what: string, check: () => boolean) => {
    const deadline = Date.now() + 30_000;
    while (!check()) {
      if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
  };
  assert.equal((await api({ socket }, 'POST', '/vms', { name: 'con', kernel: echo, memory: 64 })).status, 201);
  try {
    const refused = async (status: number, code: string, urlPath: string, headers: Record<string, string>, protocol?: string) => {
      const r = await upgrade(tcpPort, urlPath, headers, protocol);
      assert.equal(r.status, status, `${urlPath}: ${JSON.stringify(r.body)}`);
      assert.equal(r.body.error.code, code, urlPath);
      return r.body.error.message as string;
    };
    assert.match(await refused(409, 'conflict', '/vms/con/console', auth), /shut off: no console/);
    assert.equal((await api({ socket }, 'POST', '/vms/con/start')).status, 200);
    await refused(401, 'unauthorized', '/vms/con/console', {});
    await refused(401, 'unauthorized', '/vms/con/console', { authorization: 'Bearer wrong-token-000000000' });
    assert.match(await refused(404, 'not_found', '/vms/nope/console', auth), /no VM named 'nope'/);
    await refused(404, 'not_found', '/vms/con/consoles', auth);
    await refused(426, 'invalid', '/vms/con/console', auth, 'websocket');
    const plain = await api({ port: tcpPort }, 'GET', '/vms/con/console', undefined, { headers: auth });
    assert.equal(plain.status, 400);
    assert.match(plain.body.error.message, /Upgrade: ringzero-console/);

    // Two viewers over TCP: each gets the scrollback, both see what one types (the guest echoes it).
    const a = await upgrade(tcpPort, '/vms/con/console', auth);
    const b = await upgrade(tcpPort, '/vms/con/console', auth);
    assert.equal(a.status, 101);
    assert.equal(b.status, 101);
    const va = viewer(a.socket!), vb = viewer(b.socket!);
    await until('the scrollback on both', () => va.text().includes('ringzero test guest: ready\n') && vb.text().includes('ringzero test guest: ready\n'));
    a.socket!.write('hello over tcp\n');
    await until('the echo on both', () => va.text().endsWith('hello over tcp\n') && vb.text().endsWith('hello over tcp\n'));
    // A detaches (closes its connection): the VM runs on, B still types to it.
    a.socket!.destroy();
    await new Promise((resolve) => setTimeout(resolve, 200));
    assert.equal((await api({ socket }, 'GET', '/vms/con')).body.state, 'running', 'detaching leaves the VM running');
    b.socket!.write('again\n');
    await until('B\'s echo', () => vb.text().endsWith('again\n'));
    assert.ok(!va.text().includes('again'), 'a detached viewer receives nothing more');
    // 'q' powers the guest off: B's stream ends with the VM.
    b.socket!.write('q');
    await until('B\'s stream to end', () => vb.closed());
    const deadline = Date.now() + 30_000;
    while ((await api({ socket }, 'GET', '/vms/con')).body.state !== 'shut off') {
      assert.ok(Date.now() < deadline, 'the VM shuts off');
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
  } finally {
    await api({ socket }, 'POST', '/vms/con/destroy');
    assert.equal((await api({ socket }, 'DELETE', '/vms/con')).status, 204);
  }
});
