// Live migration between two daemons (src/manager/migration.ts), through the real daemon, API and CLI.
//
// 1. Without a Linux boot: two daemons on loopback, the counter guest (test/support/counter-guest.ts: a tick printed
//    on COM1 at 100 Hz). Refusals (no listener, a name taken at the destination), faults during the pre-copy (the
//    destination's VMM killed, the destination daemon frozen so the link goes silent, the destination daemon killed):
//    each leaves the VM running at the source, counting on, and nothing behind at the destination (also after its
//    restart). Then `ringzero migrate NAME --to ... --progress`: the source forgets the VM, the destination runs it, the
//    counter goes on with no tick missing, and killing the source daemon changes nothing there.
// 2. With the real guest (root: network namespaces): see the second test below.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { Daemon, api, cli, tempDir, waitFor, killRecordedVmms, processAlive, root } from './support/manager-harness.ts';
import { counterKernel, counterLines } from './support/counter-guest.ts';
import { findDefaultImage } from '../src/image/build.ts';
import { BOOT_TIMEOUT_MS } from './support/guest.ts';

/** A VM's console, read through its socket, each line with the host time it arrived. */
class Console {
  text = '';
  readonly lines: Array<{ line: string; at: number }> = [];
  private partial = '';
  private readonly socket: net.Socket;
  constructor(socketPath: string) {
    this.socket = net.connect(socketPath);
    this.socket.setEncoding('latin1');
    this.socket.on('data', (s: string) => {
      const at = Date.now();
      this.text += s;
      this.partial += s;
      let nl;
      while ((nl = this.partial.indexOf('\n')) >= 0) {
        this.lines.push({ line: this.partial.slice(0, nl).replace(/\r$/, ''), at });
        this.partial = this.partial.slice(nl + 1);
      }
    });
    this.socket.on('error', () => {});
  }
  write(s: string): void { this.socket.write(s); }
  close(): void { this.socket.destroy(); }
}

async function migrationOver(daemon: Daemon, name: string, timeoutMs = 120_000): Promise<any> {
  let m: any;
  await waitFor(`the migration of '${name}' to end`, async () => {
    m = (await api({ socket: daemon.socket }, 'GET', `/vms/${name}/migration`)).body;
    return m.phase === 'completed' || m.phase === 'failed';
  }, timeoutMs);
  return m;
}

async function migrationAt(daemon: Daemon, name: string, bytes: number): Promise<void> {
  await waitFor(`the pre-copy of '${name}' past ${bytes} bytes`, async () => {
    const m = (await api({ socket: daemon.socket }, 'GET', `/vms/${name}/migration`)).body;
    if (m.phase === 'failed' || m.phase === 'completed') throw new Error(`the migration ended early: ${JSON.stringify(m)}`);
    return m.phase === 'precopy' && m.bytesSent > bytes;
  }, 60_000);
}

function listenPort(daemon: Daemon): number {
  const m = /accepting live migrations on [^\s]+:(\d+)/.exec(daemon.stderr);
  if (!m) throw new Error(`no migration listener: ${daemon.stderr}`);
  return Number(m[1]);
}

test('daemon to daemon: refusals and faults leave the VM running at the source; a migration moves it with no tick lost', { timeout: 600_000 }, async () => {
  const dir = tempDir('mig');
  const a = path.join(dir, 'a'), b = path.join(dir, 'b');
  let source = await Daemon.start(a);
  let dest = await Daemon.start(b, ['--migration-listen', '127.0.0.1:0']);
  const consoles: Console[] = [];
  try {
    const port = listenPort(dest);
    const to = `127.0.0.1:${port}`;
    const kernel = counterKernel(0xffff);
    const defined = await api({ socket: source.socket }, 'POST', '/vms', { name: 'ctr', engine: 'soft', memory: 64, kernel, cmdline: 'console=ttyS0', onReboot: 'exit' });
    assert.equal(defined.status, 201, JSON.stringify(defined.body));
    const started = await api({ socket: source.socket }, 'POST', '/vms/ctr/start');
    assert.equal(started.status, 200, JSON.stringify(started.body));
    const onA = new Console(started.body.consoleSocket);
    consoles.push(onA);
    const ticks = () => counterLines(onA.lines.map((l) => l.line).join('\n') + '\n');
    await waitFor('ticks at the source', () => ticks().length >= 5, 60_000);
    const countsOn = async (what: string) => {
      const n = ticks().length;
      await waitFor(`the counter to go on at the source (${what})`, () => ticks().length >= n + 5, 30_000);
      assert.equal((await api({ socket: source.socket }, 'GET', '/vms/ctr')).body.state, 'running', what);
      assert.equal((await api({ socket: dest.socket }, 'GET', '/vms')).body.length, 0, `nothing left at the destination (${what})`);
    };

    // Input checks, synchronous: structured errors.
    let r = await api({ socket: source.socket }, 'POST', '/vms/ctr/migrate', { to: 'nowhere' });
    assert.equal(r.status, 400);
    assert.equal(r.body.error.code, 'invalid');
    r = await api({ socket: source.socket }, 'POST', '/vms/nope/migrate', { to });
    assert.equal(r.status, 404);
    r = await api({ socket: source.socket }, 'POST', '/vms/ctr/migrate', { to, downtimeMs: 0 });
    assert.equal(r.status, 400);
    const usage = await cli(['migrate', 'ctr', '--control-socket', '/tmp/x', '--to', to], source.socket);
    assert.equal(usage.status, 2, usage.stderr);

    // No listener there: fails at once, the VM runs on.
    const closed = net.createServer();
    await new Promise<void>((resolve) => closed.listen(0, '127.0.0.1', resolve));
    const deadPort = (closed.address() as net.AddressInfo).port;
    closed.close();
    r = await api({ socket: source.socket }, 'POST', '/vms/ctr/migrate', { to: `127.0.0.1:${deadPort}` });
    assert.equal(r.status, 202, JSON.stringify(r.body));
    let m = await migrationOver(source, 'ctr');
    assert.equal(m.phase, 'failed');
    assert.match(m.error, /cannot reach the destination daemon .*ECONNREFUSED/);
    await countsOn('no listener');

    // The name is taken at the destination: refused there, with its reason.
    assert.equal((await api({ socket: dest.socket }, 'POST', '/vms', { name: 'ctr', engine: 'soft', memory: 64, kernel })).status, 201);
    const refused = await cli(['migrate', 'ctr', '--to', to], source.socket);
    assert.equal(refused.status, 1);
    assert.match(refused.stderr, /the destination refused the VM: a VM named 'ctr' is already defined here \[conflict\]/);
    assert.equal((await api({ socket: dest.socket }, 'DELETE', '/vms/ctr')).status, 204);
    await countsOn('name taken');

    // The destination's VMM killed during the pre-copy (capped at 8 KiB/s so that the 57 KB of this guest take seconds).
    r = await api({ socket: source.socket }, 'POST', '/vms/ctr/migrate', { to, bandwidth: 8192 });
    assert.equal(r.status, 202);
    await migrationAt(source, 'ctr', 8192);
    const incoming = (await api({ socket: dest.socket }, 'GET', '/vms/ctr')).body;
    assert.equal(incoming.state, 'starting', 'an incoming VM is starting until the guest runs there');
    process.kill(incoming.pid, 'SIGKILL');
    m = await migrationOver(source, 'ctr');
    assert.equal(m.phase, 'failed');
    await countsOn('destination VMM killed');
    assert.equal((await api({ socket: dest.socket }, 'GET', '/vms/ctr/migration')).body.phase, 'failed');

    // The destination daemon frozen (a silent link: no error, no data): the source gives up after linkTimeoutMs.
    r = await api({ socket: source.socket }, 'POST', '/vms/ctr/migrate', { to, bandwidth: 8192, linkTimeoutMs: 2000 });
    await migrationAt(source, 'ctr', 8192);
    const frozenVmm = (await api({ socket: dest.socket }, 'GET', '/vms/ctr')).body.pid as number;
    dest.child.kill('SIGSTOP');
    m = await migrationOver(source, 'ctr', 30_000);
    dest.child.kill('SIGCONT');
    assert.equal(m.phase, 'failed');
    assert.match(m.error, /silent for 2000 ms/);
    await countsOn('destination daemon frozen');
    await waitFor('the destination VMM to be gone', () => !processAlive(frozenVmm), 30_000);

    // The destination daemon killed: the source runs on; the next destination daemon keeps nothing of it.
    r = await api({ socket: source.socket }, 'POST', '/vms/ctr/migrate', { to, bandwidth: 8192 });
    await migrationAt(source, 'ctr', 8192);
    const orphan = (await api({ socket: dest.socket }, 'GET', '/vms/ctr')).body.pid as number;
    await dest.stop('SIGKILL');
    m = await migrationOver(source, 'ctr');
    assert.equal(m.phase, 'failed');
    assert.match(m.error, /closed the migration link|ECONNRESET|destination closed/);
    dest = await Daemon.start(b, ['--migration-listen', to]);
    await waitFor('the orphaned incoming VMM to be gone', () => !processAlive(orphan), 30_000);
    await countsOn('destination daemon killed');

    // The migration, through the CLI with its progress.
    const before = ticks().length;
    const run = await cli(['migrate', 'ctr', '--to', to, '--downtime-ms', '50', '--bandwidth', '32768', '--progress', '--json'], source.socket, [], 120_000);
    assert.equal(run.status, 0, run.stderr);
    assert.match(run.stderr, /precopy, iteration 0, [\d.]+ MiB sent/);
    const done = JSON.parse(run.stdout);
    assert.equal(done.phase, 'completed');
    assert.equal(done.sourceDefinition, 'removed');
    assert.ok(done.downtimeMs > 0 && done.bytesSent > 0, run.stdout);
    assert.ok(ticks().length > before);
    assert.equal((await api({ socket: source.socket }, 'GET', '/vms/ctr')).status, 404, 'the source forgot the VM');
    assert.equal((await api({ socket: source.socket }, 'GET', '/vms/ctr/migration')).body.phase, 'completed', 'but remembers its migration');
    const there = (await api({ socket: dest.socket }, 'GET', '/vms/ctr')).body;
    assert.equal(there.state, 'running');
    assert.equal((await api({ socket: dest.socket }, 'GET', '/vms/ctr/migration')).body.direction, 'incoming');
    const onB = new Console(there.consoleSocket); // the VMM's scrollback holds what it printed before this connected
    consoles.push(onB);
    const last = ticks()[ticks().length - 1];
    const ticksB = () => counterLines(onB.lines.map((l) => l.line).join('\n') + '\n');
    await waitFor('ticks at the destination', () => ticksB().length >= 10, 60_000);
    assert.equal(ticksB()[0], last + 1, `the counter goes on: ...${last} at the source, ${ticksB()[0]} first at the destination`);
    for (let k = 1; k < ticksB().length; k++) assert.equal(ticksB()[k], ticksB()[k - 1] + 1, 'no tick missing');
    process.stderr.write(`# loopback migration: downtime ${done.downtimeMs} ms, total ${done.totalMs} ms, ${done.bytesSent} bytes, ${done.iteration + 1} passes\n`);

    // The source daemon killed after the switch-over: the destination runs on.
    await source.stop('SIGKILL');
    const n = ticksB().length;
    await waitFor('the counter to go on at the destination', () => ticksB().length >= n + 10, 30_000);
    assert.equal((await api({ socket: dest.socket }, 'GET', '/vms/ctr')).body.state, 'running');
    assert.equal((await api({ socket: dest.socket }, 'POST', '/vms/ctr/destroy')).status, 200);
  } finally {
    for (const c of consoles) c.close();
    await source.stop('SIGKILL');
    await dest.stop('SIGKILL');
    killRecordedVmms(a);
    killRecordedVmms(b);
    fs.rmSync(dir, { recursive: true, force: true });
  }
});
