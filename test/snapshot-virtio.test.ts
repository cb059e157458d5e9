// Virtio device state in snapshots: the virtio-pci transport (status, features, queue registers and indices, MSI-X
// table/PBA, ISR) and the device models' own state survive save/restore into a freshly built function, and a real
// guest using virtio-blk and virtio-console carries on in a new VMM process.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { TestBench } from './support/virtio-driver.ts';
import { VirtioRng } from '../src/devices/virtio/rng.ts';
import { VirtioConsole } from '../src/devices/virtio/console.ts';
import { VirtioBalloon } from '../src/devices/virtio/balloon.ts';
import type { ConsoleIo } from '../src/vmm/config.ts';
import type { VirtioPciState } from '../src/devices/virtio/pci.ts';
import { findDefaultImage } from '../src/image/build.ts';
import { GuestSession } from './support/guest.ts';
import { controlRequest } from '../src/vmm/control.ts';

const nullConsole: ConsoleIo = { write() {}, onInput: () => () => {} };
const enabled = process.env.RINGZERO_SKIP_BOOT_TEST !== '1' || process.env.CI === 'true';

/** A second bench whose guest RAM and driver-side bookkeeping are copies of `from`'s (as a restored VM's would be). */
function cloneBench(from: TestBench, device: ConstructorParameters<typeof TestBench>[0]): TestBench {
  const to = new TestBench(device, from.slot);
  to.mem.low.set(from.mem.low);
  from.queues.forEach((q, i) => { to.queues[i] = { ...q, layout: { ...q.layout } }; });
  return to;
}

test('virtio-rng: transport, MSI-X and queue indices round-trip; the restored queue continues where it was', () => {
  const a = new TestBench(new VirtioRng());
  let b: TestBench | undefined;
  try {
    // Without EVENT_IDX every completion interrupts (unless avail.flags says otherwise): simple to follow here.
    a.bringUp({ msix: true, features: (1n << 32n) | (1n << 28n) });
    const buf = a.alloc(64);
    for (let i = 0; i < 3; i++) a.addChain(0, [[buf, 16, true]]);
    assert.equal(a.used(0).length, 3);
    // One chain left available but not yet processed (no kick): the restored device must still find it.
    a.addChain(0, [[buf, 8, true]], false);
    a.programVector(1, 0xfee0_0000, 0x77, true); // queue vector masked: its next interrupt waits in the PBA
    a.kick(0);
    assert.equal(a.used(0).length, 1);
    const saved = a.fn.saveState();
    const d = saved.device as VirtioPciState;
    assert.equal(d.status, 1 | 2 | 4 | 8);
    assert.equal(d.queues[0].ring?.lastAvail, 4);
    assert.equal(d.queues[0].ring?.nextUsed, 4);
    assert.equal(d.msixPending[1], 1, 'the masked vector has its pending bit');
    // Through JSON, as the state file stores it.
    const json = JSON.parse(JSON.stringify(saved));

    b = cloneBench(a, new VirtioRng());
    b.fn.restoreState(json);
    assert.deepEqual(b.fn.saveState(), saved, 'the restored function saves the same state');
    assert.equal(b.status, 1 | 2 | 4 | 8);
    // Unmasking delivers the pending message with the saved address/data.
    b.irqs.msis.length = 0;
    b.programVector(1, 0xfee0_0000, 0x77, false);
    assert.deepEqual(b.irqs.msis, [{ address: 0xfee0_0000, data: 0x77 }]);
    // The queue goes on: the next chain is used entry 4 (not 0), filled with random bytes.
    b.addChain(0, [[buf, 32, true]]);
    const used = b.used(0);
    assert.equal(used.length, 1);
    assert.equal(used[0].len, 32);
    assert.equal(b.mem.lowView.getUint16(b.queues[0].layout.used + 2, true), 5);
  } finally {
    a.close();
    b?.close();
  }
});

test('virtio-console keeps undelivered host input; virtio-balloon keeps target and actual; bad state is refused', () => {
  let typed: ((d: Uint8Array) => void) | undefined;
  const io: ConsoleIo = { write() {}, onInput: (r) => { typed = r; return () => {}; } };
  const a = new TestBench(new VirtioConsole(io, { input: true }));
  const benches: TestBench[] = [a];
  try {
    a.bringUp();
    typed!(Buffer.from('typed before the snapshot'));
    const saved = JSON.parse(JSON.stringify(a.fn.saveState()));
    const b = cloneBench(a, new VirtioConsole(nullConsole, { input: false }));
    benches.push(b);
    b.fn.restoreState(saved);
    const buf = b.alloc(64);
    b.addChain(0, [[buf, 64, true]]);
    const used = b.used(0);
    assert.equal(used.length, 1);
    assert.equal(Buffer.from(b.mem.slice(buf, used[0].len)).toString(), 'typed before the snapshot');

    // Another device type at that slot is refused before anything changes.
    const rng = new TestBench(new VirtioRng());
    benches.push(rng);
    assert.throws(() => rng.fn.restoreState(saved), /snapshot has a virtio-3 device there/);
    const damaged = JSON.parse(JSON.stringify(saved));
    damaged.device.queues[0].ring.lastAvail = 70000;
    const c = cloneBench(a, new VirtioConsole(nullConsole, { input: false }));
    benches.push(c);
    assert.throws(() => c.fn.restoreState(damaged), /not a 16-bit index/);

    const balloon = new VirtioBalloon(() => {});
    const p = new TestBench(balloon);
    benches.push(p);
    p.bringUp();
    balloon.setTarget(1234);
    p.fn.regsWrite(0x2000 + 4, 4, 1000); // the driver's `actual`
    const bs = JSON.parse(JSON.stringify(p.fn.saveState()));
    const balloon2 = new VirtioBalloon(() => {});
    const q = cloneBench(p, balloon2);
    benches.push(q);
    q.fn.restoreState(bs);
    assert.equal(balloon2.stats().targetPages, 1234);
    assert.equal(balloon2.stats().actualPages, 1000);
  } finally {
    for (const x of benches) x.close();
  }
});

test('a real guest using virtio-blk and virtio-console is snapshotted, restored in a new VMM process, and uses both', {
  skip: !enabled ? 'RINGZERO_SKIP_BOOT_TEST=1' : !findDefaultImage() ? 'no default image: run `bin/ringzero image build`' : false,
  timeout: 900_000,
}, async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'rz-snap-virtio-'));
  const disk = path.join(dir, 'disk.img');
  const content = Buffer.alloc(4 * 1024 * 1024);
  content.write('RZ-HOST-MARK', 2 * 512, 'latin1');
  fs.writeFileSync(disk, content);
  const ctl = path.join(dir, 'ctl.sock');
  const snap = path.join(dir, 'snap');
  // The shell stays on ttyS0 (the cmdline is not the default one, so --console virtio does not move it): hvc0 is
  // then a second console whose output reaches the same stdout.
  const first = new GuestSession(['--engine', 'soft', '--memory', '256M', '--console', 'virtio', '--cmdline', 'panic=-1 console=ttyS0 cryptomgr.notests',
    '--disk', `${disk},serial=rzsnap`, '--control-socket', ctl]);
  let second: GuestSession | undefined;
  try {
    await first.waitForShell();
    assert.equal(await first.ask('READ', 'dd if=/dev/vda bs=512 skip=2 count=1 2>/dev/null | head -c 12'), 'RZ-HOST-MARK');
    assert.equal(await first.ask('W1', 'echo written-before | dd of=/dev/vda bs=512 seek=7 conv=sync,fsync 2>/dev/null; echo $?'), '0');
    let from = first.type('echo RZ-HVC-$((20+1)) > /dev/hvc0');
    await first.waitFor(/RZ-HVC-21/, 60_000, from);
    const answer = await controlRequest(ctl, { cmd: 'snapshot', dir: snap }, 120_000);
    assert.equal(answer.ok, true, JSON.stringify(answer));
    first.close();
    await first.exited;

    second = new GuestSession(['--restore', snap]);
    assert.equal(await second.ask('BACK', 'dd if=/dev/vda bs=512 skip=7 count=1 2>/dev/null | head -c 14'), 'written-before');
    assert.equal(await second.ask('W2', 'echo written-after | dd of=/dev/vda bs=512 seek=9 conv=sync,fsync 2>/dev/null; echo $?'), '0');
    assert.equal(fs.readFileSync(disk).subarray(9 * 512, 9 * 512 + 13).toString('latin1'), 'written-after');
    assert.equal(await second.ask('SERIAL', 'cat /sys/block/vda/serial'), 'rzsnap');
    from = second.type('echo RZ-HVC-$((40+2)) > /dev/hvc0');
    await second.waitFor(/RZ-HVC-42/, 60_000, from);
    second.type('poweroff -f');
    assert.equal(await second.waitForExit(60_000), 0, second.stderr);
  } finally {
    first.close();
    second?.close();
    fs.rmSync(dir, { recursive: true, force: true });
  }
});
