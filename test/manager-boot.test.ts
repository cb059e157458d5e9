// A real guest (about a minute on the software CPU; RINGZERO_SKIP_BOOT_TEST=1 skips it locally, CI always runs
// it): the daemon starts the real default guest (Debian's kernel + busybox initramfs) from a definition with every default, `ringzero console` reaches its shell and runs
// `uname -r`, and `poweroff -f` in the guest leaves the VM 'shut off' with "guest powered off".
import test, { after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { findDefaultImage, GUEST_PROMPT } from '../src/image/build.ts';
import { api, cli, Daemon, tempDir, waitFor } from './support/manager-harness.ts';

const image = findDefaultImage();
const BOOT_TIMEOUT_MS = Number(process.env.RINGZERO_BOOT_TIMEOUT_MS ?? 600_000);

test('the daemon boots the default guest; uname -r through `ringzero console`; poweroff from inside', {
  skip: process.env.RINGZERO_SKIP_BOOT_TEST === '1' && process.env.CI !== 'true' ? 'RINGZERO_SKIP_BOOT_TEST=1' : !image ? 'no default image: run `bin/ringzero image build`' : false,
  timeout: BOOT_TIMEOUT_MS + 120_000,
}, async () => {
  const dir = tempDir('boot');
  const daemon = await Daemon.start(path.join(dir, 'state'));
  after(async () => {
    const vm = (await api({ socket: daemon.socket }, 'GET', '/vms/deb').catch(() => undefined))?.body;
    if (vm?.pid) try { process.kill(vm.pid, 'SIGKILL'); } catch { /* gone */ }
    await daemon.stop();
    fs.rmSync(dir, { recursive: true, force: true });
  });
  assert.equal((await api({ socket: daemon.socket }, 'POST', '/vms', { name: 'deb', engine: 'soft' })).status, 201);
  assert.equal((await cli(['start', 'deb'], daemon.socket)).status, 0);

  // Type `uname -r` once the prompt shows, then detach when the version came back.
  let typed = false;
  const version = image!.manifest.kernelVersion;
  const viewer = await cli(['console', 'deb'], daemon.socket, [], BOOT_TIMEOUT_MS, (all, child) => {
    if (!typed && all.includes(GUEST_PROMPT)) {
      typed = true;
      child.stdin!.write('uname -r\n');
    } else if (typed && all.split('\n').slice(0, -1).some((line) => line.trim() === version)) {
      // (complete lines only: on a partial last line, the echo of `poweroff -f` could land before its end of line)
      child.stdin!.write('poweroff -f\n');
    }
  });
  assert.ok(typed, `the shell prompt never came: ${viewer.stdout.slice(-2000)}`);
  assert.ok(viewer.stdout.split(/\r?\n/).some((line) => line.trim() === version), viewer.stdout.slice(-2000));
  // The guest powered off: the console closed by itself and the VM is shut off.
  await waitFor('shut off', async () => (await api({ socket: daemon.socket }, 'GET', '/vms/deb')).body.state === 'shut off', 30_000);
  assert.equal((await api({ socket: daemon.socket }, 'GET', '/vms/deb')).body.lastExit.reason, 'guest powered off');
});
