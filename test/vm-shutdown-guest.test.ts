// Integration: the default guest (Debian's kernel + busybox initramfs) on the soft engine shuts down when the VMM
// presses the ACPI power button through `ringzero run --control-socket`: the kernel's button driver reports KEY_POWER,
// busybox acpid (started by /init) runs the handler, the guest writes S5 and ringzero exits 0. In the same boot, a
// snapshot taken through the control socket is started again with `ringzero run --restore`: its shell answers, its
// uptime continues from the saved instant (no jump: guest time does not catch up on the wall time between), and its
// power button works too. (The uptime check was test/snapshot-guest.test.ts's own boot until session 11.)
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { findDefaultImage, GUEST_PROMPT } from '../src/image/build.ts';
import { controlRequest } from '../src/vmm/control.ts';
import { BOOT_TIMEOUT_MS, escapeRegExp, GuestSession } from './support/guest.ts';

const image = findDefaultImage();
const enabled = process.env.RINGZERO_SKIP_BOOT_TEST !== '1' || process.env.CI === 'true';

/** Press the button, retrying while the guest has not enabled it yet (acpid starts just before the shell). */
async function pressPowerButton(socket: string): Promise<void> {
  const deadline = Date.now() + 60_000;
  for (;;) {
    const answer = await controlRequest(socket, { cmd: 'shutdown' });
    assert.equal(answer.ok, true, JSON.stringify(answer));
    if (answer.listening === true) return;
    if (Date.now() > deadline) assert.fail('the guest never enabled the power button (PWRBTN_EN)');
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
}

test('the power button shuts the default guest down (ringzero exits 0); a snapshot restores with run --restore', {
  skip: !enabled ? 'RINGZERO_SKIP_BOOT_TEST=1' : !image ? 'no default image: run `bin/ringzero image build`' : false,
  timeout: BOOT_TIMEOUT_MS + 300_000,
}, async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'rz-shutdown-'));
  const control = path.join(dir, 'control.sock');
  const snapshot = path.join(dir, 'snap');
  const guest = new GuestSession(['--engine', 'soft', '--memory', '256M', '--control-socket', control]);
  let restored: GuestSession | undefined;
  try {
    await guest.waitForShell();
    // The pieces the button needs, named in the failure if one is missing.
    assert.match(await guest.ask('EVDEV', 'ls /dev/input/ | tr "\\n" " "'), /event\d/, 'evdev made the input device nodes');
    assert.match(await guest.ask('ACPID', 'pidof acpid || echo none'), /^\d+$/, 'acpid runs');
    assert.equal(await guest.ask('MARK', 'echo before-snapshot'), 'before-snapshot');
    const uptimeBefore = Number(await guest.ask('UP1', 'cut -d " " -f 1 /proc/uptime'));
    assert.ok(uptimeBefore > 0, `the guest's uptime: ${uptimeBefore}`);

    const saved = await controlRequest(control, { cmd: 'snapshot', dir: snapshot }, 120_000);
    assert.equal(saved.ok, true, JSON.stringify(saved));
    assert.ok(fs.existsSync(path.join(snapshot, 'state.json')));
    // The VM runs on after the snapshot.
    assert.equal(await guest.ask('AFTER', 'echo still-running'), 'still-running');

    await pressPowerButton(control);
    await guest.waitFor(/ringzero: power button: powering off/, 60_000);
    assert.equal(await guest.waitForExit(60_000), 0, `ringzero exits 0 after the power button (stderr: ${guest.stderr.slice(-500)})`);
    assert.ok(!fs.existsSync(control), 'the control socket is removed when the VMM ends');

    // The snapshot in a new VMM process: the same shell, with the power button still working.
    const control2 = path.join(dir, 'control2.sock');
    restored = new GuestSession(['--restore', snapshot, '--control-socket', control2]);
    restored.type('');
    await restored.waitFor(new RegExp(escapeRegExp(GUEST_PROMPT)), 60_000);
    assert.equal(await restored.ask('BACK', 'echo restored-shell'), 'restored-shell');
    const uptimeAfter = Number(await restored.ask('UP2', 'cut -d " " -f 1 /proc/uptime'));
    assert.ok(uptimeAfter >= uptimeBefore, `uptime continues: ${uptimeBefore} then ${uptimeAfter}`);
    assert.ok(uptimeAfter < uptimeBefore + 30, `no jump in guest time across the restore: ${uptimeBefore} then ${uptimeAfter}`);
    await pressPowerButton(control2);
    assert.equal(await restored.waitForExit(60_000), 0, `the restored VM powers off too (stderr: ${restored.stderr.slice(-500)})`);
  } finally {
    guest.close();
    restored?.close();
    fs.rmSync(dir, { recursive: true, force: true });
  }
});
