// The daemons' own boost through a migration's switch-over (src/manager/migration.ts SwitchoverHold): each daemon that
// leads its own session (as systemd starts a service) raises its autogroup while it relays the switch-over's round
// trips, from the destination VMM's "synced" to its "resumed", and puts it back after; a daemon that shares another
// session (started from a shell) is left alone. The boost's value is a setting: the VM definition's resumeBoost, a
// migration's resumeBoost over it (`migrate --resume-boost`), given to both daemons and both VMMs (`run --resume-boost`),
// checked as the other inputs are. The counter guest (no Linux): two daemons on loopback, A to B with both in sessions
// of their own, then B (restarted in the test's session) back to A.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { Daemon, api, cli, killRecordedVmms, tempDir, waitFor, migrationPair } from './support/manager-harness.ts';
import { counterKernel, counterLines } from './support/counter-guest.ts';

const autogroups = (() => { try { return fs.readFileSync('/proc/sys/kernel/sched_autogroup_enabled', 'utf8').trim() === '1'; } catch { return false; } })();
const skip = process.getuid?.() !== 0 ? 'needs CAP_SYS_NICE (root) to raise an autogroup'
  : !autogroups ? 'no autogroups (CONFIG_SCHED_AUTOGROUP, /proc/sys/kernel/sched_autogroup_enabled)'
  : process.env.RINGZERO_SWITCHOVER_BOOST === '0' || process.env.RINGZERO_DAEMON_SWITCHOVER_BOOST === '0' ? 'the switch-over boost is off in this environment'
  : false;

/** A process's command line, its arguments joined by spaces. */
function vmmArgs(pid: number): string {
  return fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').join(' ');
}

/** The nice value of a process's autogroup (/proc/PID/autogroup: "/autogroup-N nice V"). */
function groupNice(pid: number): number {
  return Number(/nice (-?\d+)/.exec(fs.readFileSync(`/proc/${pid}/autogroup`, 'utf8'))![1]);
}

test('daemons in sessions of their own raise them while they relay a switch-over, and only then', { skip, timeout: 300_000 }, async () => {
  const dir = tempDir('migboost');
  const { a, b, listen } = migrationPair(dir);
  let A = await Daemon.start(a, listen, {}, { ownSession: true });
  let B = await Daemon.start(b, listen, {}, { ownSession: true });
  try {
    const port = (d: Daemon) => Number(/accepting live migrations on [^\s]+:(\d+)/.exec(d.stderr)![1]);
    for (const d of [A, B]) assert.equal(groupNice(d.child.pid!), 0, 'a new session\'s autogroup starts at nice 0');
    const vm = { name: 'ctr', engine: 'soft', memory: 64, kernel: counterKernel(0xffff), cmdline: 'console=ttyS0', onReboot: 'exit' };
    // The setting's checks: a nice value from -20 to 0, in a definition, a migration, and on the command line.
    for (const bad of [1, -21, 0.5, '-5']) {
      const r = await api({ socket: A.socket }, 'POST', '/vms', { ...vm, resumeBoost: bad });
      assert.equal(r.status, 400, `resumeBoost ${JSON.stringify(bad)}: ${JSON.stringify(r.body)}`);
      assert.match(r.body.error.message, /resumeBoost/);
    }
    const defined = await api({ socket: A.socket }, 'POST', '/vms', { ...vm, resumeBoost: -5 });
    assert.equal(defined.status, 201, JSON.stringify(defined.body));
    assert.equal(defined.body.definition.resumeBoost, -5);
    assert.equal((await api({ socket: A.socket }, 'POST', '/vms/ctr/start')).status, 200);
    const r = await api({ socket: A.socket }, 'POST', '/vms/ctr/migrate', { to: `127.0.0.1:${port(B)}`, resumeBoost: 3 });
    assert.equal(r.status, 400);
    assert.match(r.body.error.message, /body\/resumeBoost must be <= 0/);
    for (const args of [['migrate', 'ctr', '--to', `127.0.0.1:${port(B)}`, '--resume-boost', '-21'], ['migrate', '--control-socket', path.join(dir, 'none.sock'), '--to', '127.0.0.1:1', '--resume-boost', '+1'],
      ['run', '--kernel', vm.kernel, '--resume-boost', 'high']]) {
      const bad = await cli(args, A.socket);
      assert.equal(bad.status, 2, `${args.join(' ')}: ${bad.stderr}`);
      assert.match(bad.stderr, /--resume-boost '.*' must be an integer from -20 to 0 \(a nice value; 0: no boost\)/);
    }

    // A to B, both daemons in sessions of their own: both raised their group for the switch-over, and only for it, at
    // the definition's value; B's VMM was given it too.
    const out = await cli(['migrate', 'ctr', '--to', `127.0.0.1:${port(B)}`, '--downtime-ms', '50', '--json'], A.socket, [], 120_000);
    assert.equal(out.status, 0, out.stderr);
    const atA = JSON.parse(out.stdout);
    assert.equal(atA.phase, 'completed');
    const atB = (await api({ socket: B.socket }, 'GET', '/vms/ctr/migration')).body;
    assert.equal(atB.direction, 'incoming');
    for (const [side, view] of [['A', atA], ['B', atB]] as const) {
      assert.equal(view.daemonBoost?.nice, -5, `${side} raised its session to the definition's value: ${JSON.stringify(view)}`);
      // (held from "synced" to "resumed": within the migration, and not through its pre-copy)
      assert.ok(view.daemonBoost.heldMs >= 0 && view.daemonBoost.heldMs < atA.totalMs, `${side} held it ${view.daemonBoost.heldMs} ms of a ${atA.totalMs} ms migration`);
    }
    assert.ok(atB.daemonBoost.heldMs <= atA.daemonBoost.heldMs + 50, `B let go at "resumed", which A relays after it: ${atB.daemonBoost.heldMs} against ${atA.daemonBoost.heldMs} ms`);
    for (const d of [A, B]) assert.equal(groupNice(d.child.pid!), 0, 'each session is back at its own priority');
    const there = (await api({ socket: B.socket }, 'GET', '/vms/ctr')).body;
    assert.equal(there.state, 'running');
    assert.match(vmmArgs(there.pid), /--resume-boost -5\b/, 'B\'s VMM runs with the definition\'s boost');

    // B restarted in the test's session (not a session of its own: it must not raise the test's whole session), then
    // the VM back to A: A raises its group, B does not.
    await B.stop();
    B = await Daemon.start(b, listen);
    assert.equal((await api({ socket: B.socket }, 'GET', '/vms/ctr')).body.state, 'running', 'the restarted daemon found its VM');
    // (and the migration's own value over the definition's)
    const back = await cli(['migrate', 'ctr', '--to', `127.0.0.1:${port(A)}`, '--downtime-ms', '50', '--resume-boost', '-7', '--json'], B.socket, [], 120_000);
    assert.equal(back.status, 0, back.stderr);
    const fromB = JSON.parse(back.stdout);
    assert.equal(fromB.phase, 'completed');
    assert.equal(fromB.daemonBoost, undefined, 'a daemon sharing another session leaves it alone');
    const intoA = (await api({ socket: A.socket }, 'GET', '/vms/ctr/migration')).body;
    assert.equal(intoA.direction, 'incoming');
    assert.equal(intoA.daemonBoost?.nice, -7, JSON.stringify(intoA));
    assert.equal(groupNice(A.child.pid!), 0);
    const home = (await api({ socket: A.socket }, 'GET', '/vms/ctr')).body;
    assert.equal(home.state, 'running');
    assert.match(vmmArgs(home.pid), /--resume-boost -7\b/, 'A\'s VMM runs with the migration\'s boost');
    assert.equal(home.definition.resumeBoost, -5, 'a migration\'s value is for that migration: the definition keeps its own');
    // (the guest counts on at A: the VMM's scrollback has its ticks)
    const lines: string[] = [];
    const c = net.connect(home.consoleSocket);
    c.setEncoding('latin1').on('data', (s: string) => lines.push(s));
    try {
      await waitFor('ticks at A', () => counterLines(lines.join('')).length >= 5, 60_000);
      const n = counterLines(lines.join(''));
      for (let k = 1; k < n.length; k++) assert.equal(n[k], n[k - 1] + 1, 'no tick missing');
    } finally {
      c.destroy();
    }
    assert.equal((await api({ socket: A.socket }, 'POST', '/vms/ctr/destroy')).status, 200);
  } finally {
    await A.stop('SIGKILL');
    await B.stop('SIGKILL');
    killRecordedVmms(a);
    killRecordedVmms(b);
    fs.rmSync(dir, { recursive: true, force: true });
  }
});
