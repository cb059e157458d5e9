// Integration: boot Debian's stock cloud kernel with the default initramfs on the software engine through
// the real CLI (`bin/ringzero run`, serial console in pipe mode), type commands at the shell and check the
// answers: the kernel release, the number of CPUs, the guest's clock against the host's, and a clean
// power-off with exit status 0.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { findDefaultImage } from '../src/image/build.ts';
import { bootToShellScenario, BOOT_TIMEOUT_MS } from './support/guest.ts';

const image = findDefaultImage();
/** RINGZERO_SKIP_BOOT_TEST=1 skips this test (minutes on a software CPU) for quick local runs; CI always runs it. */
const enabled = process.env.RINGZERO_SKIP_BOOT_TEST !== '1' || process.env.CI === 'true';

test('boots the default guest to a shell on the soft engine and powers off', {
  skip: !enabled ? 'RINGZERO_SKIP_BOOT_TEST=1' : !image ? 'no default image: run `bin/ringzero image build`' : false,
  timeout: BOOT_TIMEOUT_MS + 120_000,
}, () => bootToShellScenario('soft', assert));
