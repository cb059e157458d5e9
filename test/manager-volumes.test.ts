// The storage pool through a real daemon, its REST API and the real CLI: create raw and qcow2 volumes (sized, or as
// overlays of another volume), list, info, delete; bad input and bad files each give a stable code and change
// nothing; a volume a running VM uses (directly or as a backing file) and a volume another one is an overlay of
// cannot be deleted; leftovers of a crash are removed when the daemon starts.
import test from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { api, cli, Daemon, daemonFixture, guestKernel, snapshot } from './support/manager-harness.ts';

const fx = daemonFixture('vol');
const { dir, stateDir } = fx;
const volumesDir = path.join(stateDir, 'volumes');
const haveQemuImg = spawnSync('qemu-img', ['--version']).status === 0;

const call = fx.call;

test('vol create / list / info / delete through the CLI; images qemu-img accepts', async () => {
  let r = await cli(['vol', 'create', 'base.raw', '--format', 'raw', '--size', '16M'], fx.daemon.socket);
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stdout, /volume 'base.raw' created: raw, 16.0 MiB/);
  r = await cli(['vol', 'create', 'data.qcow2', '--size', '2G'], fx.daemon.socket);
  assert.equal(r.status, 0, r.stderr);
  r = await cli(['vol', 'create', 'over.qcow2', '--backing', 'base.raw'], fx.daemon.socket);
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stdout, /backing base.raw/);

  r = await cli(['vol', 'list'], fx.daemon.socket);
  assert.equal(r.status, 0, r.stderr);
  const lines = r.stdout.trim().split('\n');
  assert.match(lines[0], /^NAME\s+FORMAT\s+SIZE/);
  assert.deepEqual(lines.slice(1).map((l) => l.split(/\s+/)[0]), ['base.raw', 'data.qcow2', 'over.qcow2']);

  const info = JSON.parse((await cli(['vol', 'info', 'over.qcow2', '--json'], fx.daemon.socket)).stdout);
  assert.equal(info.format, 'qcow2');
  assert.equal(info.virtualSize, 16 * 2 ** 20, 'size from the backing volume');
  assert.equal(info.backingFile, 'base.raw', 'relative, so the state directory can move');
  assert.equal(info.backingFormat, 'raw');
  assert.equal(info.path, path.join(volumesDir, 'over.qcow2'));
  const base = (await call('GET', '/volumes/base.raw')).body;
  assert.deepEqual(base.backs, ['over.qcow2']);
  assert.equal(fs.statSync(path.join(volumesDir, 'base.raw')).size, 16 * 2 ** 20);
  assert.equal((await call('GET', '/volumes/data.qcow2')).body.virtualSize, 2 * 2 ** 30);

  if (haveQemuImg) {
    for (const name of ['data.qcow2', 'over.qcow2']) {
      const check = spawnSync('qemu-img', ['check', path.join(volumesDir, name)], { encoding: 'utf8' });
      assert.equal(check.status, 0, check.stdout + check.stderr);
    }
    const qi = JSON.parse(spawnSync('qemu-img', ['info', '--output=json', path.join(volumesDir, 'over.qcow2')], { encoding: 'utf8' }).stdout);
    assert.equal(qi['backing-filename'], 'base.raw');
    assert.equal(qi['virtual-size'], 16 * 2 ** 20);
  } else {
    process.stderr.write('\n*** manager-volumes: qemu-img NOT FOUND: the qemu-img cross-checks are SKIPPED ***\n\n');
  }

  // The base cannot go while the overlay depends on it; the overlay can, then the base.
  r = await cli(['vol', 'delete', 'base.raw'], fx.daemon.socket);
  assert.equal(r.status, 1);
  assert.match(r.stderr, /backing file of volume\(s\) over.qcow2.*\[conflict\]/);
  assert.equal((await cli(['vol', 'delete', 'over.qcow2'], fx.daemon.socket)).status, 0);
  assert.equal((await cli(['vol', 'delete', 'base.raw'], fx.daemon.socket)).status, 0);
  assert.equal((await call('GET', '/volumes/base.raw')).status, 404);
  assert.ok(!fs.existsSync(path.join(volumesDir, 'base.raw')));
});

test('bad requests: a stable code each, and nothing changes on disk', async () => {
  assert.equal((await call('POST', '/volumes', { name: 'keep.qcow2', size: 2 ** 20 })).status, 201);
  const before = snapshot(stateDir);
  const cases: Array<[unknown, number, string, RegExp]> = [
    [{ name: '../escape', size: 2 ** 20 }, 400, 'invalid', /name must match/],
    [{ name: '.hidden', size: 2 ** 20 }, 400, 'invalid', /name must match/],
    [{ name: 'odd.qcow2', size: 1000 }, 400, 'invalid', /multiple of 512/],
    [{ name: 'huge.raw', format: 'raw', size: 2 ** 50 }, 400, 'invalid', /size must be <=/],
    [{ name: 'huge.qcow2', size: 2 ** 46 }, 400, 'invalid', /larger than a qcow2 volume may be/],
    [{ name: 'nosize.qcow2' }, 400, 'invalid', /a size is needed/],
    [{ name: 'x.qcow2', size: 2 ** 20, colour: 'red' }, 400, 'invalid', /unknown field 'colour'/],
    [{ name: 'x.raw', format: 'vmdk', size: 2 ** 20 }, 400, 'invalid', /format must be equal to one of/],
    [{ name: 'x.raw', format: 'qcow2', size: 2 ** 20 }, 400, 'invalid', /named as raw but would be qcow2/],
    [{ name: 'x.raw', format: 'raw', backing: 'keep.qcow2' }, 400, 'invalid', /only a qcow2 volume can have a backing/],
    [{ name: 'x.qcow2', backing: 'missing.qcow2' }, 404, 'not_found', /no volume named 'missing.qcow2'/],
    [{ name: 'x.qcow2', backing: 'keep.qcow2', size: 512 }, 400, 'invalid', /smaller than the backing volume/],
    [{ name: 'keep.qcow2', size: 2 ** 20 }, 409, 'conflict', /already exists/],
  ];
  for (const [body, status, code, message] of cases) {
    const r = await call('POST', '/volumes', body);
    assert.equal(r.status, status, `${JSON.stringify(body)}: ${JSON.stringify(r.body)}`);
    assert.equal(r.body.error.code, code, JSON.stringify(body));
    assert.match(r.body.error.message, message);
  }
  const malformed = await api({ socket: fx.daemon.socket }, 'POST', '/volumes', undefined, { rawBody: '{"name":', headers: { 'content-type': 'application/json' } });
  assert.equal(malformed.status, 400);
  assert.equal(malformed.body.error.code, 'invalid');
  assert.equal((await call('GET', '/volumes/nope.qcow2')).body.error.code, 'not_found');
  assert.equal((await call('DELETE', '/volumes/nope.qcow2')).body.error.code, 'not_found');
  const r = await cli(['vol', 'create', 'y.qcow2', '--size', '12Q'], fx.daemon.socket);
  assert.equal(r.status, 2);
  assert.match(r.stderr, /invalid size '12Q'/);
  assert.deepEqual(snapshot(stateDir), before, 'nothing changed');
});

test('files that are corrupt or not qcow2: clear codes on info and as a backing file; listed with their error', async () => {
  fs.writeFileSync(path.join(volumesDir, 'junk.qcow2'), 'this is not an image at all\n'.repeat(100));
  const truncated = Buffer.alloc(40);
  truncated.writeUInt32BE(0x514649fb, 0);
  truncated.writeUInt32BE(3, 4);
  fs.writeFileSync(path.join(volumesDir, 'torn'), truncated);
  const good = (await call('POST', '/volumes', { name: 'tobreak.qcow2', size: 2 ** 20 })).body;
  const bytes = fs.readFileSync(good.path);
  bytes.writeUInt32BE(1, 32); // crypt_method: AES
  fs.writeFileSync(good.path, bytes);

  for (const [name, status, code, message] of [
    ['junk.qcow2', 422, 'not_qcow2', /not a qcow2 image/],
    ['torn', 422, 'corrupt', /corrupt: the file ends inside the header/],
    ['tobreak.qcow2', 422, 'unsupported', /encrypted/],
  ] as const) {
    const info = await call('GET', `/volumes/${name}`);
    assert.equal(info.status, status, JSON.stringify(info.body));
    assert.equal(info.body.error.code, code);
    assert.match(info.body.error.message, message);
    const overlay = await call('POST', '/volumes', { name: `over-${name.replace(/\W/g, '')}.qcow2`, backing: name });
    assert.equal(overlay.body.error?.code, code, JSON.stringify(overlay.body));
    const r = await cli(['vol', 'info', name], fx.daemon.socket);
    assert.equal(r.status, 1);
    assert.match(r.stderr, new RegExp(`\\[${code}\\]`));
  }
  const list = (await call('GET', '/volumes')).body as Array<{ name: string; error?: { code: string } }>;
  assert.equal(list.find((v) => v.name === 'junk.qcow2')?.error?.code, 'not_qcow2');
  assert.ok(!fs.readdirSync(volumesDir).some((f) => f.startsWith('over-')), 'no overlay was made');
  for (const name of ['junk.qcow2', 'torn', 'tobreak.qcow2']) assert.equal((await call('DELETE', `/volumes/${name}`)).status, 204);
});

test('a volume a running VM uses, directly or as its disk\'s backing file, cannot be deleted', async () => {
  const kernel = guestKernel(dir, 'idle');
  await call('POST', '/volumes', { name: 'root.raw', format: 'raw', size: 4 * 2 ** 20 });
  const overlay = (await call('POST', '/volumes', { name: 'root-ov.qcow2', backing: 'root.raw' })).body;
  const plain = (await call('POST', '/volumes', { name: 'plain.qcow2', size: 2 ** 20 })).body;
  assert.equal((await call('POST', '/vms', { name: 'user', engine: 'soft', kernel, cmdline: 'x', disks: [{ path: overlay.path }, { path: plain.path }] })).status, 201);
  assert.deepEqual((await call('GET', '/volumes/plain.qcow2')).body.usedBy, ['user']);
  const started = await call('POST', '/vms/user/start');
  assert.equal(started.status, 200, JSON.stringify(started.body));
  try {
    for (const name of ['plain.qcow2', 'root-ov.qcow2']) {
      const r = await call('DELETE', `/volumes/${name}`);
      assert.equal(r.status, 409);
      assert.match(r.body.error.message, /in use by running VM\(s\) user/);
    }
    // The base is both backing another volume and under a running VM.
    assert.equal((await call('DELETE', '/volumes/root.raw')).body.error.code, 'conflict');
    // And a new overlay of a disk a running VM uses is refused (its base would change under it).
    const overlayOfBusy = await call('POST', '/volumes', { name: 'busy-ov.qcow2', backing: 'plain.qcow2' });
    assert.equal(overlayOfBusy.status, 409);
    assert.match(overlayOfBusy.body.error.message, /in use by running VM\(s\) user/);
  } finally {
    await call('POST', '/vms/user/destroy');
  }
  assert.equal((await call('DELETE', '/volumes/plain.qcow2')).status, 204, 'free once the VM is off');
  assert.equal((await call('DELETE', '/volumes/root-ov.qcow2')).status, 204);
  assert.equal((await call('DELETE', '/volumes/root.raw')).status, 204);
  await call('DELETE', '/vms/user');
});

test('leftovers of a crash in the pool are removed when the daemon starts', async () => {
  fs.writeFileSync(path.join(volumesDir, '.half.qcow2.tmp-999999-0'), 'partial');
  await fx.daemon.stop('SIGKILL');
  fx.daemon = await Daemon.start(stateDir);
  assert.ok(!fs.readdirSync(volumesDir).some((f) => f.startsWith('.')), fs.readdirSync(volumesDir).join(' '));
  assert.equal((await call('GET', '/volumes/keep.qcow2')).status, 200, 'volumes survive the restart');
});

test('the OpenAPI document describes /volumes and /templates with the schemas that validate them', async () => {
  const doc = (await call('GET', '/openapi.json')).body;
  for (const p of ['/volumes', '/volumes/{name}', '/templates', '/templates/{name}', '/templates/{name}/clone']) assert.ok(doc.paths[p], p);
  assert.deepEqual(doc.components.schemas.VolumeCreate.properties.format.enum, ['raw', 'qcow2']);
  assert.equal(doc.components.schemas.CloneRequest.properties.count.maximum, 100);
  assert.ok(doc.paths['/volumes'].post.responses['422'], 'bad images answer 422');
  assert.ok(doc.components.schemas.Error.properties.error.properties.code.enum.includes('not_qcow2'));
});
