// Live migration of a KVM VM between two daemons (issue 7), with and without copy-storage: the counter guest
// (test/support/counter-guest: the in-kernel 8259 + 8254 at 100 Hz on KVM, a counter on COM1 every tick) runs on the
// KVM engine with a disk only in A's pool. A -> B copies the disk (--copy-storage-all) into B's pool; B -> A then
// moves it back on shared storage (both "hosts" are this machine: A sees B's copy at its path). The counter goes on
// without a value lost or repeated at each hop, and B's copy is A's disk byte for byte. No Linux boot. On kvm_pvm
// the daemons run with RINGZERO_ALLOW_PVM=1 (the VMMs inherit it). Skipped without a usable /dev/kvm.
import test from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { api, cli, Daemon, guestConsole, killRecordedVmms, tempDir, waitFor, type GuestConsole } from './support/manager-harness.ts';
import { counterKernel, counterLines } from './support/counter-guest.ts';
import { detectKvm } from '../src/kvm/host.ts';

const host = detectKvm();
const skip = host.verdict === 'none' ? `no usable KVM: ${host.reason}` : false;

test('a KVM VM migrates between daemons, its disk copied (copy-storage) and then shared; the counter goes on', { skip, timeout: 300_000 }, async () => {
  const dir = tempDir('kvm-mig');
  const a = path.join(dir, 'a'), b = path.join(dir, 'b');
  const token = path.join(dir, 'token');
  fs.writeFileSync(token, 'the-shared-migration-secret\n');
  const env: Record<string, string> = host.verdict === 'pvm' ? { RINGZERO_ALLOW_PVM: '1' } : {};
  const daemons: Daemon[] = [];
  const consoles: GuestConsole[] = [];
  try {
    for (const d of [a, b]) daemons.push(await Daemon.start(d, ['--migration-listen', '127.0.0.1:0', '--migration-token-file', token], env));
    const [A, B] = daemons;
    const address = (d: Daemon) => `127.0.0.1:${/accepting live migrations on [^\s]+:(\d+)/.exec(d.stderr)![1]}`;
    const vol = await api({ socket: A.socket }, 'POST', '/volumes', { name: 'kmig.raw', format: 'raw', size: 2 << 20 });
    assert.equal(vol.status, 201, JSON.stringify(vol.body));
    fs.writeFileSync(vol.body.path, Buffer.concat([crypto.randomBytes(1 << 20), Buffer.alloc(1 << 20)]));
    const defined = await api({ socket: A.socket }, 'POST', '/vms', {
      name: 'kmig', engine: 'kvm', memory: 64, kernel: counterKernel(0xffff), cmdline: 'console=ttyS0', onReboot: 'exit', disks: [{ path: vol.body.path }],
    });
    assert.equal(defined.status, 201, JSON.stringify(defined.body));
    const started = await api({ socket: A.socket }, 'POST', '/vms/kmig/start');
    assert.equal(started.status, 200, JSON.stringify(started.body));
    let c = await guestConsole(started.body.consoleSocket);
    consoles.push(c);
    await waitFor('ticks at A', () => counterLines(c.output()).length >= 5, 60_000);
    const copy = path.join(b, 'volumes', 'kmig.raw');
    let history = '';
    for (const [from, to, copyStorage] of [[A, B, true], [B, A, false]] as const) {
      const r = await cli(['migrate', 'kmig', '--to', address(to), '--json', ...(copyStorage ? ['--copy-storage-all'] : [])], from.socket, [], 120_000);
      assert.equal(r.status, 0, `${r.stdout}\n${r.stderr}`);
      const done = JSON.parse(r.stdout);
      assert.equal(done.phase, 'completed');
      const there = (await api({ socket: to.socket }, 'GET', '/vms/kmig')).body;
      assert.equal(there.state, 'running');
      assert.equal(there.definition.engine, 'kvm');
      assert.equal(there.definition.disks[0].path, copy, 'the VM runs on B\'s copy (and, back at A, on the same file, shared)');
      if (copyStorage) {
        assert.ok(fs.readFileSync(copy).equals(fs.readFileSync(vol.body.path)), 'B\'s copy is A\'s disk byte for byte');
        assert.ok(done.diskBytesSent >= 1 << 20, JSON.stringify(done));
      }
      // The consoles joined are one stream: KVM may stop the guest between the OUTs of one line, whose head then
      // ends the source's console and whose tail starts the destination's.
      const previous = history + c.output();
      const before = counterLines(previous);
      const next = await guestConsole(there.consoleSocket);
      consoles.push(next);
      await waitFor('ticks after the hop', () => counterLines(next.output()).length >= 5, 60_000);
      const all = counterLines(previous + next.output());
      assert.ok(all.length >= before.length + 4, 'the counter goes on after the hop');
      for (let k = 1; k < all.length; k++) assert.equal(all[k], all[k - 1] + 1, `no value lost or repeated: ${all.slice(Math.max(0, k - 2), k + 2)} around the hop after ${before.at(-1)}`);
      history = previous;
      process.stderr.write(`# KVM ${copyStorage ? 'copy-storage ' : ''}migration: downtime ${done.downtimeMs} ms, total ${done.totalMs} ms, ${(done.bytesSent / 2 ** 20).toFixed(1)} MiB\n`);
      c = next;
    }
    assert.equal((await api({ socket: A.socket }, 'POST', '/vms/kmig/destroy')).status, 200);
  } finally {
    for (const c of consoles) c.socket.destroy();
    for (const d of daemons) await d.stop('SIGKILL');
    killRecordedVmms(a);
    killRecordedVmms(b);
    fs.rmSync(dir, { recursive: true, force: true });
  }
});
