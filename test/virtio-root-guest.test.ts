// End to end, issue 5's acceptance boot (minutes on the software CPU; RINGZERO_SKIP_BOOT_TEST=1 skips it locally
// unless CI=true): ONE boot of the default kernel through the real CLI with every paravirtual device, each checked
// from inside the guest:
//   virtio-blk root: the initramfs switch_roots to an ext4 root disk (/dev/vda, built from the busybox tree by
//            src/image/build.ts buildRootfsImage, with this test's vsock client added), mounted read-write;
//   virtio-blk data: a second disk with a serial shows up as /dev/disk/by-id/virtio-<serial>; a write with fsync
//            through that link is in the host file before poweroff;
//   virtio-net: eth0 has the MAC given on the command line and pings the host end of its TAP (in a network
//            namespace made for the test; needs root, else the VM has no NIC and that check is skipped);
//   virtio-console: /dev/hvc0 carries guest output to the host (the shell stays on ttyS0);
//   virtio-rng: the kernel's hw_random source is virtio and /dev/hwrng gives bytes;
//   virtio-balloon: a target set through the control socket (`ringzero balloon`) takes memory out of MemTotal;
//   virtio-vsock: a guest -> host connection (CID 2) carries 64 KiB whose md5 matches on both ends, and the host's
//            answer comes back (busybox has no AF_VSOCK tool: a tiny static C client compiled here with gcc);
//   kvm-clock: the guest's clocksource (src/cpu/soft/system/pvclock.ts).
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFile, execFileSync, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { buildRootfsImage, cacheDir, findDefaultImage } from '../src/image/build.ts';
import { GuestSession, BOOT_TIMEOUT_MS } from './support/guest.ts';
import { ringzero } from './support/ringzero-cli.ts';
import { waitFor } from './support/manager-harness.ts';

const image = findDefaultImage();
const enabled = process.env.RINGZERO_SKIP_BOOT_TEST !== '1' || process.env.CI === 'true';
const hasGcc = spawnSync('gcc', ['--version'], { stdio: 'ignore' }).status === 0;
const hasMkfs = spawnSync('mkfs.ext4', ['-V'], { stdio: 'ignore' }).status === 0;
const netReason = process.getuid?.() !== 0 ? 'not root: no TAP device' : !existsSync('/dev/net/tun') ? 'no /dev/net/tun' : undefined;

const skip = !enabled ? 'RINGZERO_SKIP_BOOT_TEST=1'
  : !image ? 'no default image: run `bin/ringzero image build`'
  : !hasGcc ? 'gcc not installed (scripts/host-deps.sh --test)'
  : !hasMkfs ? 'mkfs.ext4 not installed (scripts/host-deps.sh)'
  : false;

/** The guest's vsock client: connect to CID:PORT, send stdin, half-close, print what comes back. */
const VSOCK_CLIENT = `#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/socket.h>
#include <linux/vm_sockets.h>

static int write_all(int fd, const char *p, ssize_t n) {
  while (n > 0) { ssize_t w = write(fd, p, n); if (w <= 0) return -1; p += w; n -= w; }
  return 0;
}

int main(int argc, char **argv) {
  if (argc != 3) { fprintf(stderr, "usage: %s CID PORT < data\\n", argv[0]); return 2; }
  int s = socket(AF_VSOCK, SOCK_STREAM, 0);
  if (s < 0) { perror("socket"); return 1; }
  struct sockaddr_vm addr;
  memset(&addr, 0, sizeof addr);
  addr.svm_family = AF_VSOCK;
  addr.svm_cid = (unsigned)strtoul(argv[1], 0, 10);
  addr.svm_port = (unsigned)strtoul(argv[2], 0, 10);
  if (connect(s, (struct sockaddr *)&addr, sizeof addr) < 0) { perror("connect"); return 1; }
  char buf[4096];
  ssize_t n;
  while ((n = read(0, buf, sizeof buf)) > 0) if (write_all(s, buf, n) < 0) { perror("send"); return 1; }
  shutdown(s, SHUT_WR);
  while ((n = read(s, buf, sizeof buf)) > 0) if (write_all(1, buf, n) < 0) return 1;
  return 0;
}
`;

/** Compile the client once per source text into the cache (gcc -static: the guest has no libc). */
function vsockClient(): Buffer {
  const key = createHash('sha256').update(VSOCK_CLIENT).digest('hex').slice(0, 16);
  const dir = path.join(cacheDir(), 'test-bin');
  const binary = path.join(dir, `vsock-send-${key}`);
  if (!existsSync(binary)) {
    mkdirSync(dir, { recursive: true });
    const source = path.join(dir, `.vsock-send-${process.pid}.c`);
    const work = `${binary}.${process.pid}`;
    writeFileSync(source, VSOCK_CLIENT);
    try {
      execFileSync('gcc', ['-static', '-Os', '-o', work, source], { stdio: ['ignore', 'ignore', 'pipe'] });
      renameSync(work, binary);
    } finally {
      rmSync(source, { force: true });
      rmSync(work, { force: true });
    }
  }
  return readFileSync(binary);
}


const sh = (cmd: string, ...args: string[]) => execFileSync(cmd, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });

test('one boot with an ext4 root disk, a data disk with a serial, net, console, rng, balloon, vsock and kvm-clock', {
  skip,
  timeout: BOOT_TIMEOUT_MS + 600_000,
}, async (t) => {
  const dir = mkdtempSync(path.join(tmpdir(), 'ringzero-rootguest-'));
  const ns = `rz-root-${process.pid}`;
  const tap = `rzr${process.pid % 100000}`;
  const mac = '52:54:00:12:34:56';
  const vsockPath = path.join(dir, 'v.sock');
  const control = path.join(dir, 'control.sock');
  if (!netReason) sh('ip', 'netns', 'add', ns);
  const servers: net.Server[] = [];
  after(() => {
    for (const s of servers) s.close();
    if (!netReason) try { sh('ip', 'netns', 'del', ns); } catch { /* gone */ }
    rmSync(dir, { recursive: true, force: true });
  });

  // The root disk: the default image's tree plus the vsock client, cached by content; the guest writes to a copy.
  const rootImage = await buildRootfsImage(image!.initrd, { files: [{ path: 'usr/bin/vsock-send', data: vsockClient(), mode: 0o755 }] });
  const root = path.join(dir, 'root.ext4');
  copyFileSync(rootImage.path, root);
  const data = path.join(dir, 'data.img');
  writeFileSync(data, Buffer.alloc(4 * 1024 * 1024));

  // The host end of vsock port 5000 (the device connects guest -> host streams to PATH_5000): read 64 KiB, answer.
  const VSOCK_BYTES = 64 * 1024;
  const received: Buffer[] = [];
  const gotAll = new Promise<Buffer>((resolve) => {
    const server = net.createServer((socket) => {
      socket.on('data', (d) => {
        received.push(d);
        const all = Buffer.concat(received);
        if (all.length >= VSOCK_BYTES) {
          socket.end(`host-got-${all.length}\n`);
          resolve(all);
        }
      });
      socket.on('error', () => {});
    });
    server.listen(`${vsockPath}_5000`);
    servers.push(server);
  });

  // quiet: the kernel's boot messages cost a trap per byte on the emulated UART; the test reads dmesg instead.
  const cmdline = 'console=ttyS0 panic=-1 cryptomgr.notests quiet root=/dev/vda rw';
  const guest = new GuestSession(['--engine', 'soft', '--cpus', '1', '--memory', '256M', '--cmdline', cmdline,
    '--disk', root, '--disk', `${data},serial=rzdata7`, '--console', 'virtio', '--rng', '--balloon',
    '--vsock', `3,path=${vsockPath}`, '--control-socket', control,
    ...(netReason ? [] : ['--net', `tap=${tap},mac=${mac}`])]);
  try {
    if (!netReason) {
      await waitFor(`TAP ${tap}`, () => existsSync(`/sys/class/net/${tap}`), 60_000);
      sh('ip', 'link', 'set', tap, 'netns', ns);
      sh('ip', '-n', ns, 'addr', 'add', '10.0.3.1/24', 'dev', tap);
      sh('ip', '-n', ns, 'link', 'set', tap, 'up');
    }
    await guest.waitForShell();
    assert.match(guest.output, /ringzero: root \/dev\/vda \(ext4, rw\): switch_root/);

    // Root on virtio-blk, ext4, read-write.
    assert.match(await guest.ask('ROOT', 'grep " / " /proc/mounts'), /^\/dev\/vda \/ ext4 rw[, ]/);
    assert.equal(await guest.ask('ROOTW', 'echo persisted > /root/mark && sync && cat /root/mark'), 'persisted');
    // The root's init set the kernel's module helper to the image's modprobe (kept out of /sbin: src/image/build.ts
    // SESSION), and the host name to the default one.
    assert.equal(await guest.ask('MODPROBE', 'cat /proc/sys/kernel/modprobe; [ -x "$(cat /proc/sys/kernel/modprobe)" ] && echo runnable'), '/bin/modprobe runnable');
    assert.equal(await guest.ask('HOST', 'hostname'), 'ringzero');

    // The data disk by its serial; a write with fsync is in the host file at once.
    assert.equal(await guest.ask('BYID', 'readlink /dev/disk/by-id/virtio-rzdata7'), '../../vdb');
    assert.equal(await guest.ask('DD', 'echo guest-data-$((6*7)) | dd of=/dev/disk/by-id/virtio-rzdata7 bs=512 seek=3 conv=sync,fsync 2>/dev/null; echo $?'), '0');
    assert.equal(readFileSync(data).subarray(3 * 512, 3 * 512 + 13).toString('latin1'), 'guest-data-42');

    // virtio-net: the MAC from the command line; the host end of the TAP answers.
    if (netReason) t.diagnostic(`virtio-net not checked: ${netReason}`);
    else {
      assert.equal(await guest.ask('MAC', 'cat /sys/class/net/eth0/address'), mac);
      await guest.ask('UP', 'ip addr add 10.0.3.15/24 dev eth0; ip link set eth0 up; echo done');
      assert.equal(await guest.ask('PING', 'ping -c 2 -W 5 10.0.3.1 >/dev/null 2>&1; echo $?', 60_000), '0');
    }

    // virtio-console: what the guest writes to hvc0 reaches the host (the echoed command line holds $((...)), not 42).
    const from = guest.type('echo hvc0-says-$((40+2)) > /dev/hvc0');
    await guest.waitFor(/hvc0-says-42/, 60_000, from);

    // virtio-rng.
    assert.match(await guest.ask('RNG', 'cat /sys/class/misc/hw_random/rng_current'), /^virtio_rng/);
    assert.equal(await guest.ask('HWRNG', 'dd if=/dev/hwrng bs=32 count=1 2>/dev/null | wc -c'), '32');

    // vsock guest -> host with data both ways.
    const answer = await guest.ask('VSOCK', `dd if=/dev/urandom of=/tmp/v bs=1024 count=${VSOCK_BYTES / 1024} 2>/dev/null; vsock-send 2 5000 < /tmp/v; md5sum < /tmp/v`, 120_000);
    const hostData = await gotAll;
    assert.equal(hostData.length, VSOCK_BYTES);
    const [reply, guestMd5] = answer.split(/\s+/);
    assert.equal(reply, `host-got-${VSOCK_BYTES}`, `the host's answer came back over vsock (guest said: ${answer})`);
    assert.equal(createHash('md5').update(hostData).digest('hex'), guestMd5, 'the bytes arrived intact');

    // Balloon: a target through the control socket shows in the guest's MemTotal.
    const memTotal = async () => Number(await guest.ask('MEM', "grep MemTotal /proc/meminfo | awk '{print $2}'"));
    const before = await memTotal();
    const set = await ringzero(['balloon', '--control-socket', control, '32M']);
    assert.equal(set.status, 0, set.stderr);
    let inflated = before;
    await waitFor('MemTotal to drop by 32 MiB', async () => { inflated = await memTotal(); return before - inflated >= 32768; }, 180_000);
    assert.equal(before - inflated, 32768, `MemTotal ${before} kB -> ${inflated} kB`);

    // kvm-clock.
    assert.equal(await guest.ask('CLOCK', 'cat /sys/devices/system/clocksource/clocksource0/current_clocksource'), 'kvm-clock');
    assert.match(await guest.ask('DMESG', 'dmesg | grep -c "Switched to clocksource kvm-clock"'), /^[1-9]/);

    guest.type('poweroff -f');
    assert.equal(await guest.waitForExit(), 0, `exit status 0 after poweroff (stderr: ${guest.stderr.slice(-500)})`);
    // The root disk kept the guest's file (ext4, read back on the host with debugfs).
    const mark = spawnSync('debugfs', ['-R', 'cat /root/mark', root], { encoding: 'utf8' });
    if (mark.status === 0) assert.equal(mark.stdout, 'persisted\n');
  } finally {
    guest.close();
  }
});
