// Real reboots of the real default guest under the daemon (a boot test: CI always runs it, RINGZERO_SKIP_BOOT_TEST=1
// skips it locally): `ringzero reboot NAME` presses the power button with the guest's poweroff turned into a reset, so
// the guest's acpid shuts it down and it boots again in the same VMM process; then `reboot -f` typed in the guest
// resets it and it boots again, still the same process, the VM 'running' throughout.
import test, { after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { findDefaultImage, GUEST_PROMPT } from '../src/image/build.ts';
import { api, cli, Daemon, killRecordedVmms, tempDir, waitFor } from './support/manager-harness.ts';

const image = findDefaultImage();
const BOOT_TIMEOUT_MS = Number(process.env.RINGZERO_BOOT_TIMEOUT_MS ?? 600_000);

test('ringzero reboot and a guest `reboot -f` boot the guest again in the same VMM process', {
  skip: process.env.RINGZERO_SKIP_BOOT_TEST === '1' && process.env.CI !== 'true' ? 'RINGZERO_SKIP_BOOT_TEST=1' : !image ? 'no default image: run `bin/ringzero image build`' : false,
  timeout: 3 * BOOT_TIMEOUT_MS,
}, async (t) => {
  const dir = tempDir('reboot');
  const stateDir = path.join(dir, 'state');
  const daemon = await Daemon.start(stateDir);
  let consoleSocket: net.Socket | undefined;
  after(async () => {
    consoleSocket?.destroy();
    killRecordedVmms(stateDir);
    await daemon.stop();
    fs.rmSync(dir, { recursive: true, force: true });
  });
  const s = { socket: daemon.socket };
  assert.equal((await api(s, 'POST', '/vms', { name: 'rb', memory: 128, engine: 'soft' })).status, 201);
  assert.equal((await cli(['start', 'rb'], daemon.socket)).status, 0);
  const vm = (await api(s, 'GET', '/vms/rb')).body;

  // One console connection for the whole test: it sees each boot's banner once.
  consoleSocket = net.connect(vm.consoleSocket);
  let output = '';
  consoleSocket.setEncoding('latin1').on('data', (d: string) => { output += d; });
  const banners = () => output.split('Linux version ').length - 1;
  const promptAfter = (from: number) => output.indexOf(GUEST_PROMPT, from) >= 0;
  const started = Date.now();
  await waitFor('the first boot\'s shell', () => banners() === 1 && promptAfter(output.lastIndexOf('Linux version ')), BOOT_TIMEOUT_MS);
  t.diagnostic(`first boot: ${((Date.now() - started) / 1000).toFixed(1)} s`);
  // acpid must be running to act on the button: the init script starts it before the shell.
  const reboot = await cli(['reboot', 'rb'], daemon.socket);
  assert.equal(reboot.status, 0, reboot.stderr);
  assert.match(reboot.stdout, /VM 'rb' is rebooting/);
  const second = Date.now();
  await waitFor('the second boot\'s shell', () => banners() === 2 && promptAfter(output.lastIndexOf('Linux version ')), BOOT_TIMEOUT_MS);
  t.diagnostic(`reboot through the power button: shell again after ${((Date.now() - second) / 1000).toFixed(1)} s`);
  let now = (await api(s, 'GET', '/vms/rb')).body;
  assert.equal(now.state, 'running');
  assert.equal(now.pid, vm.pid, 'the same VMM process runs the rebooted guest');

  consoleSocket.write('reboot -f\n');
  await waitFor('the third boot\'s banner', () => banners() === 3, BOOT_TIMEOUT_MS);
  now = (await api(s, 'GET', '/vms/rb')).body;
  assert.equal(now.state, 'running');
  assert.equal(now.pid, vm.pid);
  assert.match(fs.readFileSync(path.join(stateDir, 'logs', 'rb.log'), 'utf8'), /guest reset: restarting/);
  assert.equal((await api(s, 'POST', '/vms/rb/destroy')).status, 200);
});
