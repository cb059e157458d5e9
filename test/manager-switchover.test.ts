// The daemons around an unknown switch-over (src/manager/migration.ts settleSwitchover): two daemons on loopback, the
// counter guest, and the link made to fail after the source VMM has been told "loaded" (the test-only fault points of
// src/migration/protocol.ts, set through RINGZERO_TEST_MIGRATION_FAULT in one daemon's environment, which its VMMs
// inherit). The source daemon then asks the destination daemon over a fresh connection and settles it: the VM never
// runs on both sides, and the counter goes on with no value lost or repeated.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { controlRequest } from '../src/vmm/control.ts';
import { Daemon, api, cli, tempDir, waitFor, killRecordedVmms, guestConsole, type GuestConsole, listenPort } from './support/manager-harness.ts';
import { counterKernel, counterLines, consecutive } from './support/counter-guest.ts';

async function migrationOver(daemon: Daemon, name: string): Promise<any> {
  let m: any;
  await waitFor(`the migration of '${name}' to end`, async () => {
    m = (await api({ socket: daemon.socket }, 'GET', `/vms/${name}/migration`)).body;
    return m.endedAt !== undefined;
  }, 120_000);
  return m;
}

async function pair(tag: string, sourceEnv: Record<string, string>, destEnv: Record<string, string>) {
  const dir = tempDir(tag);
  const a = path.join(dir, 'a'), b = path.join(dir, 'b'), token = path.join(dir, 'token');
  fs.writeFileSync(token, 'the-shared-migration-secret\n');
  let source = await Daemon.start(a, ['--migration-token-file', token], sourceEnv);
  const dest = await Daemon.start(b, ['--migration-listen', '127.0.0.1:0', '--migration-token-file', token], destEnv);
  const consoles: GuestConsole[] = [];
  const cleanup = async () => {
    for (const c of consoles) c.socket.destroy();
    await source.stop('SIGKILL');
    await dest.stop('SIGKILL');
    killRecordedVmms(a);
    killRecordedVmms(b);
    fs.rmSync(dir, { recursive: true, force: true });
  };
  try {
    const defined = await api({ socket: source.socket }, 'POST', '/vms', { name: 'ctr', engine: 'soft', memory: 64, kernel: counterKernel(0xffff), cmdline: 'console=ttyS0', onReboot: 'exit' });
    assert.equal(defined.status, 201, JSON.stringify(defined.body));
    const started = await api({ socket: source.socket }, 'POST', '/vms/ctr/start');
    assert.equal(started.status, 200, JSON.stringify(started.body));
    const onA = await guestConsole(started.body.consoleSocket);
    consoles.push(onA);
    const ticks = () => counterLines(onA.output());
    await waitFor('ticks at the source', () => ticks().length >= 5, 60_000);
    return {
      get source() { return source; }, dest, ticks, consoles, to: `127.0.0.1:${listenPort(dest)}`, sourceDir: a, cleanup,
      /** The source daemon killed (its VMMs live on) and started again. */
      async restartSource() {
        await source.stop('SIGKILL');
        source = await Daemon.start(a, ['--migration-token-file', token], sourceEnv);
      },
    };
  } catch (error) {
    await cleanup();
    throw error;
  }
}

test('the link lost after "loaded", before "go" left the source: the destination daemon says the VM is not there, the source resumes it', { timeout: 300_000 }, async () => {
  const p = await pair('swo-a', { RINGZERO_TEST_MIGRATION_FAULT: 'source:before-go' }, {});
  try {
    const r = await api({ socket: p.source.socket }, 'POST', '/vms/ctr/migrate', { to: p.to, downtimeMs: 50 });
    assert.equal(r.status, 202, JSON.stringify(r.body));
    const m = await migrationOver(p.source, 'ctr');
    assert.equal(m.phase, 'failed', JSON.stringify(m));
    assert.match(m.error, /switch-over to 127\.0\.0\.1:\d+ unknown: the destination had loaded the VM .*the destination daemon says the VM is not there: resumed here/);
    const n = p.ticks().length;
    await waitFor('the counter to go on at the source', () => p.ticks().length >= n + 5, 30_000);
    consecutive(p.ticks(), 'the source\'s counter');
    assert.equal((await api({ socket: p.source.socket }, 'GET', '/vms/ctr')).body.state, 'running');
    await waitFor('nothing left at the destination', async () => (await api({ socket: p.dest.socket }, 'GET', '/vms')).body.length === 0, 30_000);
    assert.equal((await api({ socket: p.dest.socket }, 'GET', '/vms/ctr/migration')).body.phase, 'failed');
  } finally {
    await p.cleanup();
  }
});

test('the link lost after "go" arrived: the destination runs the VM, the source daemon learns it and ends its paused copy', { timeout: 300_000 }, async () => {
  const p = await pair('swo-b', {}, { RINGZERO_TEST_MIGRATION_FAULT: 'destination:after-go' });
  try {
    const r = await api({ socket: p.source.socket }, 'POST', '/vms/ctr/migrate', { to: p.to, downtimeMs: 50 });
    assert.equal(r.status, 202, JSON.stringify(r.body));
    const m = await migrationOver(p.source, 'ctr');
    assert.equal(m.phase, 'completed', JSON.stringify(m));
    assert.equal(m.sourceDefinition, 'removed');
    assert.equal((await api({ socket: p.source.socket }, 'GET', '/vms/ctr')).status, 404, 'the source forgot the VM');
    const before = p.ticks();
    const there = (await api({ socket: p.dest.socket }, 'GET', '/vms/ctr')).body;
    assert.equal(there.state, 'running');
    const onB = await guestConsole(there.consoleSocket);
    p.consoles.push(onB);
    await waitFor('ticks at the destination', () => counterLines(onB.output()).length >= 5, 60_000);
    const after = counterLines(onB.output());
    assert.equal(after[0], before[before.length - 1] + 1, `the counter goes on: ...${before.slice(-2)} at the source, ${after.slice(0, 2)} at the destination`);
    consecutive(after, 'the destination\'s counter');
  } finally {
    await p.cleanup();
  }
});

test('the destination daemon unreachable after "go" may have left: the VM stays paused at the source (shown paused, switch-over-unknown); migrate-resolve refuses to guess; the restarted daemon asks again and resumes it, and so does migrate-resolve', { timeout: 300_000 }, async () => {
  const p = await pair('swo-c', { RINGZERO_TEST_MIGRATION_FAULT: 'source:before-go' }, {});
  // Between the daemons: the migration link passes, every later connection (the source's question) is dropped.
  const [host, port] = p.to.split(':');
  let first = true;
  let passAll = false;
  const proxy = net.createServer((s) => {
    s.on('error', () => {});
    if (!first && !passAll) { s.destroy(); return; }
    first = false;
    const up = net.connect(Number(port), host);
    up.on('error', () => s.destroy());
    s.pipe(up).pipe(s);
  });
  await new Promise<void>((resolve) => proxy.listen(0, '127.0.0.1', resolve));
  try {
    const to = `127.0.0.1:${(proxy.address() as net.AddressInfo).port}`;
    // Through the CLI, which ends with the outcome once the source daemon has given up asking.
    const run = await cli(['migrate', 'ctr', '--to', to, '--downtime-ms', '50', '--link-timeout-ms', '1000'], p.source.socket, [], 120_000);
    assert.equal(run.status, 1, run.stderr);
    assert.match(run.stderr, /VM 'ctr': migration to 127\.0\.0\.1:\d+: switch-over to .* unknown: .*the VM stays paused here/);
    const m = await migrationOver(p.source, 'ctr');
    assert.equal(m.phase, 'switch-over-unknown', JSON.stringify(m));
    assert.match(m.error, /could not say whether it runs the VM .*the VM stays paused here; settle it with `ringzero migrate-resolve`/);
    // Paused: no tick for a while, and a plain resume is refused.
    const frozen = p.ticks().length;
    await new Promise((resolve) => setTimeout(resolve, 500));
    assert.equal(p.ticks().length, frozen, 'the source does not run');
    // The daemon says so: paused, with the migration's phase (not 'running').
    const shown = (await api({ socket: p.source.socket }, 'GET', '/vms/ctr')).body;
    assert.equal(shown.state, 'paused', JSON.stringify(shown));
    assert.deepEqual({ phase: shown.migration?.phase, direction: shown.migration?.direction, peer: shown.migration?.peer }, { phase: 'switch-over-unknown', direction: 'outgoing', peer: to });
    const resumeVerb = await api({ socket: p.source.socket }, 'POST', '/vms/ctr/resume');
    assert.equal(resumeVerb.status, 409, JSON.stringify(resumeVerb.body));
    assert.match(resumeVerb.body.error.message, /unknown switch-over .*migrate-resolve/);
    // migrate-resolve while the destination cannot be asked: refused, the VM stays paused, unless forced one way.
    const resolve = (body?: Record<string, unknown>) => api({ socket: p.source.socket }, 'POST', '/vms/ctr/migration/resolve', body ?? {});
    const asked = await resolve();
    assert.equal(asked.status, 409, JSON.stringify(asked.body));
    assert.match(asked.body.error.message, /cannot be asked .*the VM stays paused here/);
    const notForced = await resolve({ action: 'resume' });
    assert.equal(notForced.status, 409, JSON.stringify(notForced.body));
    assert.match(notForced.body.error.message, /cannot be asked .*--force resumes it here anyway/);
    assert.equal((await resolve({ force: true })).status, 400, 'force without a direction');
    const abort = await api({ socket: p.source.socket }, 'DELETE', '/vms/ctr/migration');
    assert.equal(abort.status, 409, JSON.stringify(abort.body));
    assert.match(abort.body.error.message, /unknown switch-over .*migrate-resolve/);
    const usage = await cli(['migrate-resolve', 'ctr', '--resume', '--abandon'], p.source.socket);
    assert.equal(usage.status, 2, usage.stderr);
    const info = await cli(['migrate-info', 'ctr'], p.source.socket);
    assert.equal(info.status, 0, info.stderr);
    assert.match(info.stdout, /Phase:\s+switch-over-unknown/);
    const listed = await cli(['list'], p.source.socket);
    assert.match(listed.stdout, /ctr\s+paused \(migration to 127\.0\.0\.1:\d+: switch-over-unknown\)/);
    assert.equal(p.ticks().length, frozen, 'still paused after the refusals');
    const ctl = (fs.readdirSync(p.sourceDir, { recursive: true }) as string[]).find((f) => f.endsWith('ctr.ctl'));
    assert.ok(ctl, 'the VMM\'s control socket');
    const control = (request: Record<string, unknown>) => controlRequest(path.join(p.sourceDir, ctl), request);
    const status = await control({ cmd: 'migrate-status' });
    assert.equal(status.phase, 'switch-over-unknown');
    const refused = await control({ cmd: 'resume' });
    assert.equal(refused.ok, false);
    assert.match(String(refused.error), /unknown switch-over .*use migrate-resolve/);
    assert.match(String((await control({ cmd: 'migrate-resolve' })).error), /needs "resume"/);
    await waitFor('nothing left at the destination', async () => (await api({ socket: p.dest.socket }, 'GET', '/vms')).body.length === 0, 30_000);
    assert.equal(p.ticks().length, frozen, 'still paused');
    // Reachable again: abandoning the VM here is refused, since the destination says it is not there.
    passAll = true;
    const abandon = await resolve({ action: 'abandon', force: true });
    assert.equal(abandon.status, 409, JSON.stringify(abandon.body));
    assert.match(abandon.body.error.message, /says the VM is not there: ending it here would lose it/);
    assert.equal((await api({ socket: p.source.socket }, 'GET', '/vms/ctr')).body.state, 'paused');
    // The destination reachable again and the source daemon restarted: it finds the unresolved migration (its marker),
    // asks, learns the VM is not there and resumes it here (migrate-resolve); the counter goes on.
    passAll = true;
    await p.restartSource();
    await waitFor('the restarted daemon to settle it', async () => {
      const v = (await api({ socket: p.source.socket }, 'GET', '/vms/ctr/migration')).body;
      return v.endedAt !== undefined;
    }, 60_000);
    const settled = (await api({ socket: p.source.socket }, 'GET', '/vms/ctr/migration')).body;
    assert.equal(settled.phase, 'failed', JSON.stringify(settled));
    assert.match(settled.error, /the destination daemon says the VM is not there: resumed here/);
    assert.equal((await control({ cmd: 'migrate-status' })).resolution, 'resumed-here');
    await waitFor('the counter to go on at the source', () => p.ticks().length >= frozen + 5, 30_000);
    consecutive(p.ticks(), 'the source\'s counter across the pause');
    const again = (await api({ socket: p.source.socket }, 'GET', '/vms/ctr')).body;
    assert.equal(again.state, 'running', JSON.stringify(again));
    assert.equal(again.migration, undefined);

    // Once more, settled this time by the verb: the same fault, the destination unreachable until the source daemon
    // gives up asking; then reachable, `ringzero migrate-resolve ctr` asks it and resumes the VM here.
    first = true;
    passAll = false;
    const second = await api({ socket: p.source.socket }, 'POST', '/vms/ctr/migrate', { to, downtimeMs: 50, linkTimeoutMs: 1000 });
    assert.equal(second.status, 202, JSON.stringify(second.body));
    const m2 = await migrationOver(p.source, 'ctr');
    assert.equal(m2.phase, 'switch-over-unknown', JSON.stringify(m2));
    assert.equal((await api({ socket: p.source.socket }, 'GET', '/vms/ctr')).body.state, 'paused');
    await waitFor('nothing left at the destination', async () => (await api({ socket: p.dest.socket }, 'GET', '/vms')).body.length === 0, 30_000);
    const paused = p.ticks().length;
    passAll = true;
    const settledByVerb = await cli(['migrate-resolve', 'ctr'], p.source.socket, [], 60_000);
    assert.equal(settledByVerb.status, 0, settledByVerb.stderr);
    assert.match(settledByVerb.stdout, /VM 'ctr' resumed here: .*the destination daemon says the VM is not there: resumed here/);
    const after = (await api({ socket: p.source.socket }, 'GET', '/vms/ctr')).body;
    assert.equal(after.state, 'running', JSON.stringify(after));
    assert.equal(after.migration, undefined);
    assert.equal((await api({ socket: p.source.socket }, 'GET', '/vms/ctr/migration')).body.phase, 'failed');
    await waitFor('the counter to go on after the verb', () => p.ticks().length >= paused + 5, 30_000);
    consecutive(p.ticks(), 'the source\'s counter across both pauses');
  } finally {
    proxy.close();
    await p.cleanup();
  }
});
