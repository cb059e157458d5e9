// End to end (a minute or two on the software CPU; RINGZERO_SKIP_BOOT_TEST=1 skips it locally): boots the
// default guest with 4 GiB of RAM (so above the 32-bit PCI hole too) through the real CLI with
// `--disk IMG,serial=... --rng` and checks from inside it that the kernel sees the memory and that
// /dev/vda exists with the right size and serial, dd writes and reads it (the write lands in the host file
// at the same offset), and the kernel's hw_random source is virtio.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { findDefaultImage } from '../src/image/build.ts';
import { DEFAULT_CMDLINE } from '../src/vmm/config.ts';
import { GuestSession, BOOT_TIMEOUT_MS } from './support/guest.ts';

const image = findDefaultImage();
/** RINGZERO_SKIP_BOOT_TEST=1 skips this test (minutes on a software CPU) for quick local runs; CI always runs it. */
const enabled = process.env.RINGZERO_SKIP_BOOT_TEST !== '1' || process.env.CI === 'true';

test('a 4 GiB guest sees its memory, virtio-blk (/dev/vda: size, serial, dd both ways, ringzero.iosched=) and virtio-rng', {
  skip: !enabled ? 'RINGZERO_SKIP_BOOT_TEST=1' : !image ? 'no default image: run `bin/ringzero image build`' : false,
  timeout: BOOT_TIMEOUT_MS + 180_000,
}, async () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'ringzero-vguest-'));
  after(() => rmSync(dir, { recursive: true, force: true }));
  const disk = path.join(dir, 'disk.img');
  const sectors = 16 * 2048; // 16 MiB
  const content = Buffer.alloc(sectors * 512);
  content.write('RZ-HOST-MARK', 2 * 512, 'latin1');
  writeFileSync(disk, content);

  // (ringzero.iosched=none: the image's /init sets the virtio disks' I/O scheduler, src/image/build.ts)
  const guest = new GuestSession(['--engine', 'soft', '--cpus', '2', '--memory', '4G', '--disk', `${disk},serial=rzdisk0`, '--rng',
    '--cmdline', `${DEFAULT_CMDLINE} ringzero.iosched=none`]);
  try {
    await guest.waitForShell();
    // 4 GiB minus what the kernel reserves for itself: 3 GiB below the PCI hole plus 1 GiB above 4 GiB.
    const memTotalKiB = Number(await guest.ask('MEM', "grep MemTotal /proc/meminfo | tr -s ' ' | cut -d' ' -f2"));
    assert.ok(memTotalKiB > 3.7 * 1024 * 1024 && memTotalKiB <= 4 * 1024 * 1024, `MemTotal ${memTotalKiB} kB`);
    assert.equal(Number(await guest.ask('SIZE', 'cat /sys/block/vda/size')), sectors);
    assert.equal(await guest.ask('SERIAL', 'cat /sys/block/vda/serial'), 'rzdisk0');
    assert.match(await guest.ask('SCHED', 'cat /sys/block/vda/queue/scheduler'), /\[none\]/);
    assert.equal(await guest.ask('READ', 'dd if=/dev/vda bs=512 skip=2 count=1 2>/dev/null | head -c 12'), 'RZ-HOST-MARK');

    assert.equal(await guest.ask('DD', 'echo guest-wrote-this | dd of=/dev/vda bs=512 seek=7 conv=sync,fsync 2>/dev/null; echo $?'), '0');
    // Right after the fsync the host file has it, before any poweroff.
    assert.equal(readFileSync(disk).subarray(7 * 512, 7 * 512 + 16).toString('latin1'), 'guest-wrote-this');
    assert.equal(await guest.ask('BACK', 'dd if=/dev/vda bs=512 skip=7 count=1 2>/dev/null | head -c 16'), 'guest-wrote-this');

    assert.match(await guest.ask('RNG', 'cat /sys/class/misc/hw_random/rng_current'), /^virtio_rng/);
    assert.match(await guest.ask('RAND', 'dd if=/dev/hwrng bs=16 count=1 2>/dev/null | md5sum'), /^[0-9a-f]{32}\b/);
    const irqs = Number(await guest.ask('IRQ', 'grep -c virtio /proc/interrupts'));
    assert.ok(irqs >= 2, `virtio interrupts listed in /proc/interrupts: ${irqs}`);

    guest.type('poweroff -f');
    assert.equal(await guest.waitForExit(), 0, `exit status 0 after poweroff (stderr: ${guest.stderr.slice(-500)})`);
  } finally {
    guest.close();
  }
});
