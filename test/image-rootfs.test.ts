// The ext4 root disk (src/image/build.ts writeRootfsImage / buildRootfsImage): made from an initramfs's tree with
// mkfs.ext4 -d, read back independently with e2fsprogs' debugfs, dumpe2fs and e2fsck. Needs e2fsprogs
// (scripts/host-deps.sh installs it); skipped without it.
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { buildRootfsImage, ImageBuildError, renderInit, ROOTFS_INIT, ROOTFS_LABEL, writeRootfsImage } from '../src/image/build.ts';
import { writeCpio } from '../src/image/cpio.ts';

const scratch = mkdtempSync(join(tmpdir(), 'ringzero-rootfs-test-'));
after(() => rmSync(scratch, { recursive: true, force: true }));

const hasE2fsprogs = spawnSync('mkfs.ext4', ['-V'], { stdio: 'ignore' }).status === 0
  && spawnSync('debugfs', ['-V'], { stdio: 'ignore' }).status === 0;
const skip = hasE2fsprogs ? false : 'e2fsprogs (mkfs.ext4, debugfs) not installed';

function debugfs(image: string, request: string): string {
  return execFileSync('debugfs', ['-R', request, image], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] });
}

/** A small initramfs shaped like the default one: /init, busybox with applet links, a device node, a module. */
function fakeInitrd(): string {
  const path = join(scratch, `initrd-${Math.random().toString(36).slice(2)}.cpio`);
  writeFileSync(path, writeCpio([
    { name: 'bin', type: 'dir', perm: 0o755 },
    { name: 'sbin', type: 'dir', perm: 0o755 },
    { name: 'dev', type: 'dir', perm: 0o755 },
    { name: 'dev/console', type: 'char', perm: 0o600, major: 5, minor: 1 },
    { name: 'bin/busybox', type: 'file', perm: 0o755, data: Buffer.from('\x7fELF pretend busybox') },
    { name: 'bin/sh', type: 'symlink', perm: 0o777, target: '/bin/busybox' },
    { name: 'sbin/init', type: 'symlink', perm: 0o777, target: '/bin/busybox' },
    { name: 'lib/modules/6.1.0-test/kernel/virtio_blk.ko', type: 'file', perm: 0o644, data: Buffer.from('module') },
    { name: 'etc/acpi/PWRF/00000080', type: 'file', perm: 0o755, data: Buffer.from('#!/bin/sh\npoweroff -f\n') },
    { name: 'init', type: 'file', perm: 0o755, data: Buffer.from('#!/bin/sh\n# the initramfs init\n') },
  ]));
  return path;
}

test('writeRootfsImage: the initramfs tree with the root init as /sbin/init, extra files, a clean labelled ext4', { skip }, async () => {
  const image = join(scratch, 'root.ext4');
  const helper = Buffer.from('#!/bin/sh\necho helper\n');
  await writeRootfsImage(fakeInitrd(), image, { sizeMiB: 16, files: [{ path: '/usr/bin/helper', data: helper, mode: 0o755 }] });
  assert.equal(statSync(image).size, 16 * 1024 * 1024);

  const header = execFileSync('dumpe2fs', ['-h', image], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] });
  assert.match(header, new RegExp(`Filesystem volume name:\\s+${ROOTFS_LABEL}\\n`));
  assert.match(header, /Filesystem features:.*\bextent\b/, 'an ext4 file system (extents)');
  assert.equal(spawnSync('e2fsck', ['-fn', image], { stdio: 'ignore' }).status, 0, 'e2fsck finds it clean');

  assert.equal(debugfs(image, 'cat /sbin/init'), ROOTFS_INIT, '/sbin/init is the root-disk init, not the busybox link');
  assert.match(debugfs(image, 'stat /sbin/init'), /Mode:\s+0755/);
  assert.equal(debugfs(image, 'cat /bin/busybox'), '\x7fELF pretend busybox');
  assert.match(debugfs(image, 'stat /bin/sh'), /Fast link dest: "\/bin\/busybox"/);
  assert.equal(debugfs(image, 'cat /lib/modules/6.1.0-test/kernel/virtio_blk.ko'), 'module');
  assert.match(debugfs(image, 'stat /etc/acpi/PWRF/00000080'), /Mode:\s+0755/, 'the power-button handler is on the root disk');
  assert.equal(debugfs(image, 'cat /usr/bin/helper'), helper.toString());
  assert.match(debugfs(image, 'stat /usr/bin/helper'), /Mode:\s+0755/);
  assert.match(debugfs(image, 'stat /var/run'), /Fast link dest: "\.\.\/run"/, '/var/run lives on the /run tmpfs');
  assert.match(debugfs(image, 'stat /tmp'), /Mode:\s+01777/);
  const root = debugfs(image, 'ls -l /');
  for (const dir of ['proc', 'sys', 'dev', 'run', 'tmp']) assert.match(root, new RegExp(`\\s${dir}\\n`), `/${dir} exists as a mount point`);
  assert.doesNotMatch(root, /\sinit\n/, 'no initramfs /init');
  assert.doesNotMatch(debugfs(image, 'ls -l /dev'), /console/, 'no device nodes: devtmpfs has them');
});

test('writeRootfsImage refuses paths outside the tree and bad labels or sizes', { skip }, async () => {
  const initrd = fakeInitrd();
  for (const path of ['../etc/passwd', 'usr/../../x', '', 'a//b']) {
    await assert.rejects(writeRootfsImage(initrd, join(scratch, 'bad.ext4'), { files: [{ path, data: Buffer.from('x') }] }), ImageBuildError, path);
  }
  await assert.rejects(writeRootfsImage(initrd, join(scratch, 'bad.ext4'), { label: 'a label with spaces' }), ImageBuildError);
  await assert.rejects(writeRootfsImage(initrd, join(scratch, 'bad.ext4'), { sizeMiB: 1 }), ImageBuildError);
});

test('buildRootfsImage caches by content: the same inputs reuse the image, other files make another', { skip }, async () => {
  const cache = join(scratch, 'cache');
  const initrd = fakeInitrd();
  const files = [{ path: 'usr/bin/a', data: Buffer.from('a'), mode: 0o755 }];
  const first = await buildRootfsImage(initrd, { cacheDir: cache, sizeMiB: 16, files });
  assert.equal(first.cached, false);
  const again = await buildRootfsImage(initrd, { cacheDir: cache, sizeMiB: 16, files });
  assert.deepEqual(again, { path: first.path, cached: true });
  const other = await buildRootfsImage(initrd, { cacheDir: cache, sizeMiB: 16, files: [{ ...files[0], data: Buffer.from('b') }] });
  assert.equal(other.cached, false);
  assert.notEqual(other.path, first.path);
  assert.equal(debugfs(other.path, 'cat /usr/bin/a'), 'b');
});

test('the initramfs /init switches to a root disk given by root= and otherwise stays in the initramfs', () => {
  const init = renderInit('6.1.0-test', new Map());
  // The kernel's parameters of those names, read from /proc/cmdline.
  for (const arg of ['root=*', 'rootfstype=*', 'rootflags=*', 'ro)', 'rw)', 'init=*']) assert.ok(init.includes(`    ${arg}`), arg);
  assert.match(init, /LABEL=\*\|UUID=\*\) dev=\$\(findfs "\$root"/);
  assert.match(init, /mount --move \/dev \/newroot\/dev\n/);
  assert.match(init, /exec switch_root \/newroot "\$rootinit"\n/);
  // The session (by-id links, the shell) follows the switch in both inits; both parse as shell scripts.
  for (const text of [init, ROOTFS_INIT]) {
    const check = spawnSync('sh', ['-n'], { input: text, encoding: 'utf8' });
    assert.equal(check.status, 0, `sh -n: ${check.stderr}`);
    assert.match(text, /ln -sf \.\.\/\.\.\/\$name \/dev\/disk\/by-id\/virtio-\$serial\n/);
    assert.match(text, /setsid cttyhack sh\npoweroff -f\n$/);
  }
});
