// Integration: boot Debian's stock cloud kernel with the default initramfs on the software engine through
// the real CLI (`bin/ringzero run`, serial console in pipe mode), type commands at the shell and check the
// answers: the kernel release, the number of CPUs, the guest's clock against the host's, and a clean
// power-off with exit status 0.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { findDefaultImage } from '../src/image/build.ts';
import { GuestSession, BOOT_TIMEOUT_MS } from './support/guest.ts';

const image = findDefaultImage();
/** RINGZERO_SKIP_BOOT_TEST=1 skips this test (minutes on a software CPU) for quick local runs; CI always runs it. */
const enabled = process.env.RINGZERO_SKIP_BOOT_TEST !== '1' || process.env.CI === 'true';

test('boots the default guest to a shell on the soft engine and powers off', {
  skip: !enabled ? 'RINGZERO_SKIP_BOOT_TEST=1' : !image ? 'no default image: run `bin/ringzero image build`' : false,
  timeout: BOOT_TIMEOUT_MS + 120_000,
}, async () => {
  const guest = new GuestSession(['--engine', 'soft', '--cpus', '2', '--memory', '256M']);
  try {
    await guest.waitForShell();

    assert.match(await guest.ask('UNAME', 'uname -r'), /^6\.1\.\d+.*cloud-amd64$/);
    assert.equal(Number(await guest.ask('CPUS', 'grep -c ^processor /proc/cpuinfo')), 2, 'the guest brings up both vCPUs');

    const date = Number(await guest.ask('DATE', 'date +%s'));
    const skew = Math.abs(date - Date.now() / 1000);
    if (skew > 2) {
      // Keep the evidence: what the guest's timekeeping said about its clocks.
      const diag = await guest.ask('DIAG', 'dmesg | grep -i -E "clock|rtc|tsc" | tr "\\n" "|"; cat /proc/uptime').catch(() => '');
      assert.fail(`guest clock within 2 s of the host's (off by ${skew.toFixed(1)} s); guest said: ${diag}`);
    }

    guest.type('poweroff -f');
    assert.equal(await guest.waitForExit(), 0, `ringzero exits with status 0 after poweroff (stderr: ${guest.stderr.slice(-500)})`);
  } finally {
    guest.close();
  }
});
