// The daemon's pool of spare VMMs (`daemon --vmm-pool N`, src/manager/pool.ts, src/vmm/spare.ts): two daemons on
// loopback, B keeping one spare, A none. A migration A -> B takes B's spare (the VM's VMM is that process, shown in
// the migration and the VM), and the counter guest goes on with no value lost or repeated; the pool refills; a spare
// killed is replaced; B -> A (pool size 0) starts a new VMM as before; stopping the daemon ends its spares but not
// the VM the spare became. The setting's checks too.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { Daemon, api, bin, cli, guestConsole, killRecordedVmms, processAlive, tempDir, waitFor, type GuestConsole, listenPort, migrationPair } from './support/manager-harness.ts';
import { counterKernel, counterLines, consecutive } from './support/counter-guest.ts';

function cmdline(pid: number): string {
  return fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').join(' ');
}

async function pool(d: Daemon): Promise<any> {
  return (await api({ socket: d.socket }, 'GET', '/host/pool')).body;
}

test('daemon --vmm-pool is checked', () => {
  for (const bad of ['9', '-1', 'x', '1.5']) {
    const r = spawnSync(process.execPath, [bin, 'daemon', '--state-dir', '/nonexistent/rz', '--vmm-pool', bad], { encoding: 'utf8', timeout: 60_000 });
    assert.equal(r.status, 2, `--vmm-pool ${bad}: ${r.stderr}`);
    assert.match(r.stderr, /invalid --vmm-pool '.*': must be an integer from 0 to 8/);
  }
  const r = spawnSync(process.execPath, [bin, 'daemon', '--state-dir', '/nonexistent/rz', '--vmm-pool-warm-up-ms', 'soon'], { encoding: 'utf8', timeout: 60_000 });
  assert.equal(r.status, 2, r.stderr);
  assert.match(r.stderr, /invalid --vmm-pool-warm-up-ms 'soon'/);
  const help = spawnSync(process.execPath, [bin, 'daemon', '--help'], { encoding: 'utf8', timeout: 60_000 });
  assert.match(help.stdout, /--vmm-pool <n>/);
  assert.doesNotMatch(spawnSync(process.execPath, [bin, '--help'], { encoding: 'utf8', timeout: 60_000 }).stdout, /vmm-spare/, 'the spare\'s command is not for users');
});

test('an incoming migration takes a spare VMM of the pool, the guest goes on with no value lost; a dead spare is replaced; pool size 0 starts a new VMM', { timeout: 600_000 }, async () => {
  const dir = tempDir('pool');
  const { a, b, listen } = migrationPair(dir);
  const A = await Daemon.start(a, listen);
  // (a short warm-up: this test is about the pool, not V8; without the default image the spare skips it)
  let B = await Daemon.start(b, [...listen, '--vmm-pool', '1', '--vmm-pool-warm-up-ms', '200']);
  const consoles: GuestConsole[] = [];
  try {
    assert.equal((await pool(A)).size, 0);
    assert.deepEqual((await pool(A)).spares, [], 'pool size 0: no spare');
    await waitFor('B\'s spare to be ready', async () => (await pool(B)).spares[0]?.state === 'ready', 300_000);
    const spare = (await pool(B)).spares[0];
    assert.ok(spare.residentBytes > 10 * 2 ** 20, `its resident set is reported: ${JSON.stringify(spare)}`);
    assert.match(cmdline(spare.pid), /vmm-spare/);
    const host = (await api({ socket: B.socket }, 'GET', '/host')).body;
    assert.deepEqual({ size: host.vmmPool.size, spares: host.vmmPool.spares }, { size: 1, spares: 1 });
    assert.match((await api({ socket: B.socket }, 'GET', '/metrics')).body, /ringzero_vmm_pool_spares\{state="ready"\} 1/);

    const defined = await api({ socket: A.socket }, 'POST', '/vms', { name: 'ctr', engine: 'soft', memory: 64, kernel: counterKernel(0xffff), cmdline: 'console=ttyS0', onReboot: 'exit' });
    assert.equal(defined.status, 201, JSON.stringify(defined.body));
    const started = await api({ socket: A.socket }, 'POST', '/vms/ctr/start');
    assert.equal(started.status, 200, JSON.stringify(started.body));
    const onA = await guestConsole(started.body.consoleSocket);
    consoles.push(onA);
    await waitFor('ticks at A', () => counterLines(onA.output()).length >= 5, 60_000);

    // A -> B: B's VMM is the spare.
    const out = await cli(['migrate', 'ctr', '--to', `127.0.0.1:${listenPort(B)}`, '--downtime-ms', '50', '--json'], A.socket, [], 180_000);
    assert.equal(out.status, 0, out.stderr);
    assert.equal(JSON.parse(out.stdout).phase, 'completed');
    const atB = (await api({ socket: B.socket }, 'GET', '/vms/ctr/migration')).body;
    assert.equal(atB.direction, 'incoming');
    assert.equal(atB.spare?.pid, spare.pid, `the incoming migration took the spare: ${JSON.stringify(atB)}`);
    assert.equal(atB.spare.warmed, spare.warmUp != null, 'warmed up when the spare had a warm-up to do');
    const there = (await api({ socket: B.socket }, 'GET', '/vms/ctr')).body;
    assert.equal(there.state, 'running');
    assert.equal(there.pid, spare.pid, 'the VM runs in the spare\'s process');
    assert.deepEqual(there.spare, atB.spare);
    const log = fs.readFileSync(path.join(b, 'logs', 'ctr.log'), 'utf8');
    assert.match(log, /migration received: the VM runs here/, 'the spare\'s stderr went to the VM\'s log once taken');
    const before = counterLines(onA.output());
    const onB = await guestConsole(there.consoleSocket); // (the VMM's scrollback holds its first values)
    consoles.push(onB);
    await waitFor('ticks at B', () => counterLines(onB.output()).length >= 20, 60_000);
    const after = counterLines(onB.output());
    assert.equal(after[0], before[before.length - 1] + 1, `the counter goes on: ...${before.slice(-2)} at A, ${after.slice(0, 2)} at B`);
    consecutive(after, 'B\'s counter');
    // The spare ran 10 steps lower (its threads and its session's autogroup) until taken, then at its own priorities
    // again (after the resume's 3 s boost): main thread and autogroup at 0, no thread left lowered (the wasm compile
    // thread keeps its own offset, -5). With the privilege to give it back (root here); else it was never lowered.
    if (process.getuid?.() === 0) {
      const nices = () => fs.readdirSync(`/proc/${spare.pid}/task`).map((t) => Number(fs.readFileSync(`/proc/${spare.pid}/task/${t}/stat`, 'utf8').split(') ')[1].split(' ')[16]));
      const group = () => { try { return Number(/nice (-?\d+)/.exec(fs.readFileSync(`/proc/${spare.pid}/autogroup`, 'utf8'))![1]); } catch { return 0; } };
      let seen = '';
      await waitFor(`the taken spare back at its own priorities (threads ${seen})`, () => {
        const n = nices(), g = group();
        seen = `${n.join(',')}, autogroup ${g}`;
        return n[0] === 0 && n.every((v) => v <= 0) && g === 0;
      }, 30_000).catch((error: Error) => { throw new Error(`${error.message}: ${seen}`); });
    }
    const events = (await api({ socket: B.socket }, 'GET', '/migrations')).body;
    assert.ok(events.some((m: any) => m.spare?.pid === spare.pid), 'GET /migrations shows it');

    // The pool refills (a new process), and a spare killed is replaced.
    await waitFor('B\'s pool to refill', async () => { const p = await pool(B); return p.taken === 1 && p.spares.length === 1 && p.spares[0].pid !== spare.pid; }, 120_000);
    const second = (await pool(B)).spares[0].pid;
    process.kill(second, 'SIGKILL');
    await waitFor('the dead spare to be replaced', async () => { const p = await pool(B); return p.died === 1 && p.spares.length === 1 && p.spares[0].pid !== second; }, 120_000);
    const third = (await pool(B)).spares[0].pid;

    // B -> A, where the pool is 0: a new VMM (run --incoming), no spare in its views.
    const back = await cli(['migrate', 'ctr', '--to', `127.0.0.1:${listenPort(A)}`, '--downtime-ms', '50', '--json'], B.socket, [], 180_000);
    assert.equal(back.status, 0, back.stderr);
    const atA = (await api({ socket: A.socket }, 'GET', '/vms/ctr/migration')).body;
    assert.equal(atA.phase, 'completed');
    assert.equal(atA.spare, undefined);
    const home = (await api({ socket: A.socket }, 'GET', '/vms/ctr')).body;
    assert.equal(home.spare, undefined);
    assert.match(cmdline(home.pid), /run --incoming tcp:127\.0\.0\.1:0/);
    const beforeA = counterLines(onB.output());
    const onA2 = await guestConsole(home.consoleSocket);
    consoles.push(onA2);
    await waitFor('ticks at A again', () => counterLines(onA2.output()).length >= 5, 60_000);
    const again = counterLines(onA2.output());
    assert.equal(again[0], beforeA[beforeA.length - 1] + 1, `the counter goes on: ...${beforeA.slice(-2)} at B, ${again.slice(0, 2)} at A`);
    consecutive(again, 'A\'s counter');
    assert.ok(!processAlive(spare.pid), 'the VMM the spare became ended after migrating away');

    // A snapshot restore at B takes the spare too, and the restored guest counts on from the saved instant.
    assert.equal((await api({ socket: B.socket }, 'POST', '/vms', { name: 'ctr2', engine: 'soft', memory: 64, kernel: counterKernel(0xffff), cmdline: 'console=ttyS0', onReboot: 'exit' })).status, 201);
    const s2 = (await api({ socket: B.socket }, 'POST', '/vms/ctr2/start')).body;
    const on2 = await guestConsole(s2.consoleSocket);
    consoles.push(on2);
    await waitFor('ticks of ctr2', () => counterLines(on2.output()).length >= 5, 60_000);
    const snap = await api({ socket: B.socket }, 'POST', '/vms/ctr2/snapshots', { name: 's1' });
    assert.equal(snap.status, 201, JSON.stringify(snap.body));
    assert.equal((await api({ socket: B.socket }, 'POST', '/vms/ctr2/destroy')).status, 200);
    await waitFor('B\'s spare to be ready again', async () => (await pool(B)).spares[0]?.state === 'ready', 300_000);
    const restored = await api({ socket: B.socket }, 'POST', '/vms/ctr2/snapshots/s1/restore');
    assert.equal(restored.status, 200, JSON.stringify(restored.body));
    assert.equal(restored.body.pid, third, 'the restore ran in the spare');
    assert.equal(restored.body.spare?.pid, third);
    const on3 = await guestConsole(restored.body.consoleSocket);
    consoles.push(on3);
    await waitFor('ticks of the restored ctr2', () => counterLines(on3.output()).length >= 5, 60_000);
    const saved = counterLines(on2.output()), resumed = counterLines(on3.output());
    assert.ok(resumed[0] > saved[0] && resumed[0] <= saved[saved.length - 1] + 1, `the restored guest counts on from the snapshot: ${resumed.slice(0, 3)} after ${saved.slice(-3)}`);
    consecutive(resumed, 'the restored counter');
    const fourth = await (async () => { let pid = 0; await waitFor('B\'s pool to refill again', async () => { const p = await pool(B); pid = p.spares[0]?.pid ?? 0; return p.taken === 2 && pid !== 0 && pid !== third; }, 120_000); return pid; })();

    // B stopped: its spare ends with it, the VM its spare became runs on.
    await B.stop();
    await waitFor('B\'s spare to end with the daemon', () => !processAlive(fourth), 30_000);
    assert.ok(processAlive(third), 'the restored VM\'s VMM (once a spare) outlives the daemon');
    assert.equal((await api({ socket: A.socket }, 'GET', '/vms/ctr')).body.state, 'running');
    B = await Daemon.start(b, listen);
    assert.equal((await api({ socket: B.socket }, 'GET', '/vms/ctr2')).body.state, 'running', 'the restarted daemon finds the VM');
  } finally {
    for (const c of consoles) c.socket.destroy();
    await A.stop('SIGKILL');
    await B.stop('SIGKILL');
    killRecordedVmms(a);
    killRecordedVmms(b);
    fs.rmSync(dir, { recursive: true, force: true });
  }
});
