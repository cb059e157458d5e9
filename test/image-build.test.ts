import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { chmodSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { after, test } from 'node:test';
import type { PackageSource, ResolvedPackages } from '../src/image/apt.ts';
import {
  buildDefaultImage, cacheDir, findDefaultImage, GUEST_PROMPT, imageKey, INIT_OK_LINE,
} from '../src/image/build.ts';
import { parseCpio, S_IFCHR, S_IFDIR, S_IFLNK, S_IFMT, S_IFREG, type CpioMember } from '../src/image/cpio.ts';
import { parseModulesDep } from '../src/image/modules.ts';

const scratch = mkdtempSync(join(tmpdir(), 'ringzero-image-test-'));
after(() => rmSync(scratch, { recursive: true, force: true }));

/** The module paths /init may load, in the order of their first `load` (each line is one driver with its dependencies). */
function insmodOrder(init: string): string[] {
  const lines = [...init.matchAll(/^(?:.* && )?load ([^\n]+)$/gm)].map((m) => m[1].trim().split(/\s+/));
  assert.ok(lines.length > 0, '/init loads modules');
  return [...new Set(lines.flat())];
}

/** The condition guarding the `load` line that ends with `module` ('' when it is loaded unconditionally). */
function loadCondition(init: string, module: string): string | undefined {
  const m = new RegExp(`^(?:(.*) && )?load [^\\n]*\\b${module}\\.ko$`, 'm').exec(init);
  return m ? (m[1] ?? '') : undefined;
}

function member(members: CpioMember[], name: string): CpioMember {
  const found = members.find((m) => m.name === name);
  assert.ok(found, `the initramfs has ${name}`);
  return found;
}

/** Every module is loaded after everything modules.dep says it needs. */
function assertDependencyOrder(order: string[], modulesDep: string): void {
  const deps = parseModulesDep(modulesDep);
  order.forEach((path, index) => {
    const info = deps.get(path);
    assert.ok(info, `${path} is in modules.dep`);
    for (const dep of info.deps) {
      const depIndex = order.indexOf(dep);
      assert.ok(depIndex >= 0 && depIndex < index, `${path} is loaded after its dependency ${dep}`);
    }
  });
}

function checkInitramfs(archive: Uint8Array, kernelVersion: string): { members: CpioMember[]; order: string[] } {
  const members = parseCpio(archive);
  const init = member(members, 'init');
  assert.equal(init.mode, S_IFREG | 0o755);
  const initText = new TextDecoder().decode(init.data);
  assert.match(initText, /^#!\/bin\/sh\n/);
  assert.ok(initText.includes(`echo "${INIT_OK_LINE}"`));
  assert.ok(initText.includes(`PS1='${GUEST_PROMPT}'`));
  // proc, sysfs and devtmpfs come from the initramfs's fstab in one `mount -a` before anything else mounts or loads.
  assert.match(initText, /\nmount -a\nmkdir -p \/dev\/pts && mount -t devpts devpts \/dev\/pts\n/);
  const fstab = new TextDecoder().decode(member(members, 'etc/fstab').data).split('\n').filter((l) => l !== '').map((l) => l.split(/\s+/).slice(0, 3).join(' '));
  assert.deepEqual(fstab, ['proc /proc proc', 'sysfs /sys sysfs', 'devtmpfs /dev devtmpfs']);
  // /var/log and /var/run are in the archive (no mkdir at boot); acpid runs in the foreground as a job of /init.
  for (const dir of ['var/log', 'var/run']) assert.equal(member(members, dir).mode & S_IFMT, S_IFDIR);
  assert.match(initText, /\[ -d \/var\/log \] && \[ -d \/var\/run \] \|\| mkdir -p \/var\/log \/var\/run\n/);
  assert.match(initText, /then acpid -f & else/);
  assert.match(initText, /setsid cttyhack sh\npoweroff -f\n$/);
  const consoleNode = member(members, 'dev/console');
  assert.equal(consoleNode.mode, S_IFCHR | 0o600);
  assert.deepEqual([consoleNode.rdevMajor, consoleNode.rdevMinor], [5, 1]);
  assert.equal(member(members, 'bin/busybox').mode, S_IFREG | 0o755);
  for (const applet of ['sh', 'mount', 'insmod', 'setsid', 'cttyhack', 'poweroff']) {
    // Busybox decides which directory each applet lives in; /init's PATH covers them all.
    const link = members.find((m) => ['bin', 'sbin', 'usr/bin', 'usr/sbin'].some((dir) => m.name === `${dir}/${applet}`));
    assert.ok(link, `the initramfs has the ${applet} applet`);
    assert.equal(link.mode & S_IFMT, S_IFLNK);
    assert.equal(new TextDecoder().decode(link.data), '/bin/busybox');
  }
  const order = insmodOrder(initText);
  for (const path of order) member(members, `lib/modules/${kernelVersion}/${path}`);
  const modulesDep = new TextDecoder().decode(member(members, `lib/modules/${kernelVersion}/modules.dep`).data);
  assertDependencyOrder(order, modulesDep);
  // Directories come before what they contain (the kernel creates members in archive order).
  const seen = new Set<string>();
  for (const m of members) {
    const parent = dirname(m.name);
    assert.ok(parent === '.' || seen.has(parent), `${parent} comes before ${m.name}`);
    seen.add(m.name);
  }
  return { members, order };
}

// ---- The whole pipeline offline: .deb packages made here with dpkg-deb stand in for Debian's. ----

const FAKE_VERSION = '6.1.0-99-test';
const haveDpkgDeb = spawnSync('dpkg-deb', ['--version'], { stdio: 'ignore' }).status === 0;

function fakeBzImage(): Buffer {
  const image = Buffer.alloc(4096);
  image.writeUInt16LE(0xaa55, 0x1fe);
  image.write('HdrS', 0x202, 'latin1');
  image.writeUInt16LE(0x020f, 0x206);
  image[0x211] = 0x01;
  return image;
}

function makeDeb(name: string, files: Record<string, string | Buffer>, executable: string[], out: string): string {
  const root = join(scratch, `pkg-${name}`);
  mkdirSync(join(root, 'DEBIAN'), { recursive: true });
  writeFileSync(join(root, 'DEBIAN', 'control'),
    `Package: ${name}\nVersion: 1.0\nArchitecture: all\nMaintainer: test <test@example.invalid>\nDescription: test\n`);
  for (const [path, content] of Object.entries(files)) {
    mkdirSync(dirname(join(root, path)), { recursive: true });
    writeFileSync(join(root, path), content);
    if (executable.includes(path)) chmodSync(join(root, path), 0o755);
  }
  const deb = join(out, `${name}.deb`);
  execFileSync('dpkg-deb', ['--root-owner-group', '-Zgzip', '-b', root, deb], { stdio: 'ignore' });
  return deb;
}

function fakeSource(counter: { downloads: number }): PackageSource {
  const packages: ResolvedPackages = {
    kernel: { name: `linux-image-${FAKE_VERSION}`, version: '6.1.999-1' },
    busybox: { name: 'busybox-static', version: '1:9.9-test' },
  };
  const moduleDir = `lib/modules/${FAKE_VERSION}`;
  return {
    async resolve() {
      return packages;
    },
    async download(_resolved, dir) {
      counter.downloads++;
      const kernel = makeDeb('fake-kernel', {
        [`boot/vmlinuz-${FAKE_VERSION}`]: fakeBzImage(),
        [`${moduleDir}/kernel/drivers/virtio/virtio_ring.ko`]: 'ring',
        [`${moduleDir}/kernel/drivers/virtio/virtio.ko`]: 'virtio',
        [`${moduleDir}/kernel/drivers/virtio/virtio_pci.ko`]: 'pci',
        [`${moduleDir}/kernel/drivers/block/virtio_blk.ko`]: 'blk',
        [`${moduleDir}/kernel/fs/unrelated.ko`]: 'not wanted',
        // Shipped here so the test needs no depmod (which would refuse these fake modules).
        [`${moduleDir}/modules.dep`]: [
          'kernel/drivers/virtio/virtio_ring.ko:',
          'kernel/drivers/virtio/virtio.ko: kernel/drivers/virtio/virtio_ring.ko',
          'kernel/drivers/virtio/virtio_pci.ko: kernel/drivers/virtio/virtio.ko kernel/drivers/virtio/virtio_ring.ko',
          'kernel/drivers/block/virtio_blk.ko: kernel/drivers/virtio/virtio.ko kernel/drivers/virtio/virtio_ring.ko',
          'kernel/fs/unrelated.ko:',
          '',
        ].join('\n'),
      }, [], dir);
      // A stand-in busybox that answers --list-full like the real one.
      const busybox = makeDeb('fake-busybox', {
        'bin/busybox': '#!/bin/sh\nprintf "bin/sh\\nbin/mount\\nsbin/insmod\\nsbin/poweroff\\nusr/bin/setsid\\nbin/cttyhack\\n"\n',
      }, ['bin/busybox'], dir);
      return [kernel, busybox];
    },
  };
}

test('buildDefaultImage assembles kernel and initramfs from packages, then reuses the cache',
  { skip: haveDpkgDeb ? false : 'dpkg-deb is not installed' }, async () => {
    const cache = join(scratch, 'cache');
    const counter = { downloads: 0 };
    const source = fakeSource(counter);
    const first = await buildDefaultImage({ cacheDir: cache, source });
    assert.equal(first.cached, false);
    assert.equal(counter.downloads, 1);
    assert.equal(dirname(first.kernel), join(cache, 'images', imageKey(await source.resolve())));
    assert.deepEqual(readFileSync(first.kernel), fakeBzImage());
    assert.equal(first.manifest.kernelVersion, FAKE_VERSION);
    assert.deepEqual(first.manifest.modules, ['virtio_ring', 'virtio', 'virtio_pci', 'virtio_blk']);

    const { members, order } = checkInitramfs(readFileSync(first.initrd), FAKE_VERSION);
    assert.deepEqual(order, [
      'kernel/drivers/virtio/virtio_ring.ko', 'kernel/drivers/virtio/virtio.ko',
      'kernel/drivers/virtio/virtio_pci.ko', 'kernel/drivers/block/virtio_blk.ko',
    ]);
    assert.ok(!members.some((m) => m.name.endsWith('unrelated.ko')), 'modules nobody needs stay out');
    assert.equal(new TextDecoder().decode(member(members, `lib/modules/${FAKE_VERSION}/kernel/drivers/virtio/virtio.ko`).data), 'virtio');

    // Same inputs: nothing is downloaded or written again, and no work dir is left behind.
    const second = await buildDefaultImage({ cacheDir: cache, source });
    assert.equal(second.cached, true);
    assert.equal(counter.downloads, 1);
    assert.equal(second.initrd, first.initrd);
    assert.deepEqual(readdirSync(join(cache, 'images')), [imageKey(await source.resolve())]);
    assert.equal(findDefaultImage({ cacheDir: cache })?.initrd, first.initrd);
  });

test('a build that fails leaves no image and no work dir', async () => {
  const cache = join(scratch, 'cache-failing');
  const source: PackageSource = {
    resolve: async () => ({ kernel: { name: 'k', version: '1' }, busybox: { name: 'b', version: '1' } }),
    download: async () => {
      throw new Error('network is down');
    },
  };
  await assert.rejects(buildDefaultImage({ cacheDir: cache, source }), /network is down/);
  assert.deepEqual(readdirSync(join(cache, 'images')), []);
  assert.equal(findDefaultImage({ cacheDir: cache }), undefined);
});

test('cache location follows RINGZERO_CACHE, then XDG_CACHE_HOME, then ~/.cache', () => {
  assert.equal(cacheDir({ RINGZERO_CACHE: '/c', XDG_CACHE_HOME: '/x' }), '/c');
  assert.equal(cacheDir({ XDG_CACHE_HOME: '/x' }), '/x/ringzero');
  assert.match(cacheDir({}), /\/\.cache\/ringzero$/);
});

// ---- The real default image, when one was built on this machine (`ringzero image build`). ----

const built = findDefaultImage();

test('the built default image boots the way the issue asks', {
  skip: built === undefined ? `no default image in ${cacheDir()}: run \`node bin/ringzero image build\` first` : false,
}, () => {
  const image = built!;
  const kernel = readFileSync(image.kernel);
  assert.equal(kernel.toString('latin1', 0x202, 0x206), 'HdrS', 'the kernel is a bzImage');
  assert.ok(kernel.readUInt16LE(0x206) >= 0x0206, 'boot protocol 2.06 or later');
  const { members, order } = checkInitramfs(readFileSync(image.initrd), image.manifest.kernelVersion);
  const busybox = member(members, 'bin/busybox');
  assert.equal(Buffer.from(busybox.data.subarray(0, 4)).toString('latin1'), '\x7fELF');
  const names = order.map((path) => path.slice(path.lastIndexOf('/') + 1).replace(/\.ko$/, '').replace(/-/g, '_'));
  // Everything the image carries is loaded when its device is there, except virtio_mmio (no such devices here).
  assert.deepEqual([...names].sort(), image.manifest.modules.filter((m) => m !== 'virtio_mmio').sort());
  const init = new TextDecoder().decode(member(members, 'init').data);
  assert.equal(loadCondition(init, 'evdev'), '', 'the power button\'s input driver always loads');
  assert.equal(loadCondition(init, 'virtio_pci'), 'has_id 0x1af4 /sys/bus/pci/devices/*/vendor');
  assert.equal(loadCondition(init, 'virtio_blk'), 'virtio_device 0x0002');
  assert.equal(loadCondition(init, 'virtio_net'), 'virtio_device 0x0001');
  assert.equal(loadCondition(init, 'vmw_vsock_virtio_transport'), 'virtio_device 0x0013');
  // modprobe is not at the kernel's default helper path (its requests before /init would each start it for nothing);
  // the session points the kernel at it.
  assert.equal(new TextDecoder().decode(member(members, 'bin/modprobe').data), '/bin/busybox');
  assert.equal(members.find((m) => m.name === 'sbin/modprobe'), undefined);
  assert.ok(init.includes('echo /bin/modprobe > /proc/sys/kernel/modprobe'));
  // The checks and the command-line parsing on the default path start no process (one per check, at boot, was ~50 ms
  // on the software engine): before the by-id loop (which runs only for disks with a serial) the one command
  // substitution is findfs's, for a root=LABEL= or root=UUID= disk.
  const head = init.slice(0, init.indexOf('for blk in /sys/block/vd*')).split('\n').filter((l) => !l.trimStart().startsWith('#'));
  assert.deepEqual(head.filter((l) => /\$\((?!\()/.test(l)).map((l) => l.trim()), ['LABEL=*|UUID=*) dev=$(findfs "$root" 2>/dev/null) ;;']);
});
