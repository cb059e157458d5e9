// End to end (minutes on the software CPU; RINGZERO_SKIP_BOOT_TEST=1 skips it locally unless CI=true): one boot
// of the default guest through the real CLI with `--net tap=... --vsock ... --balloon --control-socket ...`.
// The VMM creates its TAP (this needs root: skipped otherwise), which is then moved into a network namespace
// made for the test, so nothing is configured in the host's own namespace. Checked from both sides:
//   net:     eth0 has the MAC, ping both ways, a 192 KiB TCP transfer guest -> host with busybox nc whose
//            md5 matches on both ends; the negotiated features (checksum offload and TSO both ways, mergeable
//            receive buffers) and 1 MiB each way with them (busybox httpd out, nc in), md5 on both ends, frames
//            larger than Ethernet's in the device's counters (segmentation offloaded);
//   vsock:   the guest's transport is bound; a host CONNECT to a port nobody listens on is refused by the
//            guest's kernel (its RST comes back well before the device's 2 s timeout). busybox has no AF_VSOCK
//            tool, so data over vsock is tested at the device level (test/virtio-vsock.test.ts);
//   balloon: `ringzero balloon --control-socket ... 64M` takes 64 MiB out of the guest's MemTotal, the guest's
//            statistics come back, and 0 returns the memory.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFile, execFileSync, spawn, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { findDefaultImage } from '../src/image/build.ts';
import { GuestSession, BOOT_TIMEOUT_MS } from './support/guest.ts';
import { ringzero } from './support/ringzero-cli.ts';
import { waitFor } from './support/manager-harness.ts';
import { controlRequest } from '../src/vmm/control.ts';

const image = findDefaultImage();
const enabled = process.env.RINGZERO_SKIP_BOOT_TEST !== '1' || process.env.CI === 'true';
const rootReason = process.getuid?.() !== 0 ? 'needs root for a TAP device and a network namespace'
  : !existsSync('/dev/net/tun') ? 'no /dev/net/tun'
  // The host end of the network (ping, nc, httpd in the namespace) is busybox's: scripts/host-deps.sh --test installs it.
  : spawnSync('busybox', ['true']).status !== 0 ? 'no busybox on this host (apt-get install busybox)' : undefined;

const sh = (cmd: string, ...args: string[]) => execFileSync(cmd, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });


test('the guest on virtio-net (ping both ways, TCP with checksum), virtio-vsock and virtio-balloon', {
  skip: !enabled ? 'RINGZERO_SKIP_BOOT_TEST=1' : rootReason ?? (!image ? 'no default image: run `bin/ringzero image build`' : false),
  timeout: BOOT_TIMEOUT_MS + 300_000,
}, async () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'ringzero-netguest-'));
  const ns = `rz-guest-${process.pid}`;
  const tap = `rzg${process.pid % 100000}`;
  const mac = '52:54:00:aa:bb:01';
  const vsockPath = path.join(dir, 'v.sock');
  const control = path.join(dir, 'control.sock');
  sh('ip', 'netns', 'add', ns);
  after(() => {
    try { sh('ip', 'netns', 'del', ns); } catch { /* gone */ }
    rmSync(dir, { recursive: true, force: true });
  });
  const inNs = (...args: string[]) => ['ip', ['netns', 'exec', ns, ...args]] as const;
  const inNsArgs = (...args: string[]): [string, string[]] => ['ip', ['netns', 'exec', ns, ...args]];

  const guest = new GuestSession(['--engine', 'soft', '--cpus', '2', '--memory', '256M',
    '--net', `tap=${tap},mac=${mac}`, '--vsock', `42,path=${vsockPath}`, '--balloon', '--control-socket', control]);
  try {
    // The VMM creates the TAP as it starts; move it into the test's namespace and give the host end an address.
    await waitFor(`TAP ${tap}`, () => existsSync(`/sys/class/net/${tap}`), 30_000);
    sh('ip', 'link', 'set', tap, 'netns', ns);
    sh('ip', '-n', ns, 'addr', 'add', '10.0.2.1/24', 'dev', tap);
    sh('ip', '-n', ns, 'link', 'set', tap, 'up');

    await guest.waitForShell();
    assert.equal(await guest.ask('MAC', 'cat /sys/class/net/eth0/address'), mac);
    await guest.ask('UP', 'ip addr add 10.0.2.15/24 dev eth0; ip link set eth0 up; echo done');
    assert.equal(await guest.ask('PING', 'ping -c 2 -W 5 10.0.2.1 >/dev/null 2>&1; echo $?', 60_000), '0', 'guest pings the host');
    const [cmd, args] = inNs('busybox', 'ping', '-c', '2', '-W', '5', '10.0.2.15');
    execFileSync(cmd, [...args], { stdio: 'ignore' }); // throws unless the guest answered

    // TCP guest -> host: busybox nc on both ends; the host's copy and the guest's md5 must agree.
    const [ncCmd, ncArgs] = inNs('busybox', 'nc', '-l', '-p', '5555');
    // Its stdin stays open: at EOF there busybox nc half-closes, and the guest's nc quits on that EOF
    // before it has sent everything.
    const listener = spawn(ncCmd, [...ncArgs], { stdio: ['pipe', 'pipe', 'ignore'] });
    const chunks: Buffer[] = [];
    listener.stdout!.on('data', (d: Buffer) => chunks.push(d));
    const listenerDone = new Promise((r) => listener.on('exit', r));
    // Listening on port 5555 (0x15B3), over IPv4 or IPv6 (/proc/net/tcp{,6}: local address, remote, state 0A).
    await waitFor('nc listening in the namespace', () => /:15B3 [0-9A-F]+:0000 0A/.test(sh('ip', 'netns', 'exec', ns, 'cat', '/proc/net/tcp', '/proc/net/tcp6')), 10_000);
    const guestMd5 = await guest.ask('TCP', 'dd if=/dev/urandom of=/tmp/blob bs=1024 count=192 2>/dev/null; nc 10.0.2.1 5555 < /tmp/blob; md5sum < /tmp/blob', 180_000);
    await listenerDone;
    const received = Buffer.concat(chunks);
    assert.equal(received.length, 192 * 1024, 'every byte arrived');
    assert.equal(createHash('md5').update(received).digest('hex'), guestMd5.split(/\s/)[0], 'checksums match');

    // The features Linux 6.1's virtio_net negotiated (the virtio device's features file: one character per bit,
    // bit 0 first): the checksum offloads both ways, TSO both ways, mergeable receive buffers; nothing unoffered.
    const bits = await guest.ask('FEATURES', 'cat /sys/class/net/eth0/device/features');
    assert.match(bits, /^[01]{64}$/, `features file: ${bits}`);
    const on = (n: number) => bits[n] === '1';
    for (const [n, name] of [[0, 'CSUM'], [1, 'GUEST_CSUM'], [5, 'MAC'], [7, 'GUEST_TSO4'], [8, 'GUEST_TSO6'], [11, 'HOST_TSO4'],
      [12, 'HOST_TSO6'], [15, 'MRG_RXBUF'], [16, 'STATUS'], [32, 'VERSION_1']] as const) assert.ok(on(n), `${name} (bit ${n}) negotiated: ${bits}`);
    for (const [n, name] of [[9, 'GUEST_ECN'], [10, 'GUEST_UFO'], [13, 'HOST_ECN'], [14, 'HOST_UFO'], [17, 'CTRL_VQ']] as const) assert.ok(!on(n), `${name} (bit ${n}) not negotiated`);

    // Bulk TCP both ways with those offloads on, md5 on both ends, and the device's counters showing frames larger
    // than any Ethernet frame (so segmentation was offloaded): 1 MiB guest -> host served by busybox httpd (sendfile:
    // large writes, sent as TSO segments with partial checksums that the host's kernel completes; busybox nc writes
    // too little at a time for the guest's TCP to build large segments), and 1 MiB host -> guest (TCP segments of up
    // to 64 KiB from the TAP into mergeable buffers).
    const counters = async () => {
      const r = await controlRequest(control, { cmd: 'stats' }, 10_000) as {
        net?: { rxBytes: number; txBytes: number; rxFrames: number; txFrames: number };
        lapic?: { acknowledged: number; eoiWrites: number }; process?: { usedMiB: number; major: number };
      };
      // bench/io's per-test counters: interrupts the guest took (it EOIs each through the xAPIC page) and the VMM's heap
      assert.ok(r.lapic && r.lapic.acknowledged > 0 && r.lapic.eoiWrites > 0, `local APIC counters: ${JSON.stringify(r.lapic)}`);
      assert.ok(r.process && r.process.usedMiB > 0 && Number.isInteger(r.process.major), `process heap figures: ${JSON.stringify(r.process)}`);
      return r.net!;
    };
    const c0 = await counters();
    const outMd5 = await guest.ask('HTTPD', 'mkdir -p /www; dd if=/dev/urandom of=/www/big bs=1024 count=1024 2>/dev/null; httpd -p 8080 -h /www; md5sum < /www/big', 120_000);
    const fetchScript = `const http=require('http'),c=require('crypto');const h=c.createHash('md5');let n=0;`
      + `http.get('http://10.0.2.15:8080/big',(r)=>{r.on('data',(d)=>{n+=d.length;h.update(d);});r.on('end',()=>{console.log(n+' '+h.digest('hex'));});})`
      + `.on('error',(e)=>{console.error(e.message);process.exit(1);});`;
    const fetched = await new Promise<string>((resolve, reject) => execFile('ip', ['netns', 'exec', ns, process.execPath, '-e', fetchScript],
      { timeout: 300_000 }, (error, stdout, stderr) => (error ? reject(new Error(`${error.message}: ${stderr}`)) : resolve(stdout.trim()))));
    assert.equal(fetched, `${1024 * 1024} ${outMd5.split(/\s/)[0]}`, 'guest -> host: every byte, checksums match');
    await guest.ask('HTTPDOFF', 'killall httpd; echo off');
    const c1 = await counters();
    assert.ok((c1.txBytes - c0.txBytes) / (c1.txFrames - c0.txFrames) > 1600,
      `guest -> host went out in TSO segments (frames larger than 1514 bytes on average): ${c1.txBytes - c0.txBytes} bytes in ${c1.txFrames - c0.txFrames} frames`);

    const payload = createHash('sha512').update('ringzero').digest();
    const blob = Buffer.concat(Array.from({ length: 1024 * 1024 / payload.length }, (_, i) => createHash('sha512').update(payload).update(String(i)).digest()));
    const blobFile = path.join(dir, 'blob');
    writeFileSync(blobFile, blob);
    const inMd5 = guest.ask('TCPIN', 'nc -l -p 5557 | md5sum', 300_000);
    // The sender, in the namespace, connects as soon as the guest listens (retrying until then) and sends the file.
    const sendScript = `const net=require('net'),fs=require('fs');const data=fs.readFileSync(${JSON.stringify(blobFile)});const end=Date.now()+120000;`
      + `(function go(){const s=net.connect(5557,'10.0.2.15');s.on('error',()=>{s.destroy();if(Date.now()<end)setTimeout(go,200);else process.exit(1);});`
      + `s.on('connect',()=>s.end(data,()=>process.exit(0)));})();`;
    const sender = spawn(...inNsArgs(process.execPath, '-e', sendScript), { stdio: 'ignore' });
    const senderDone = new Promise<number | null>((r) => sender.on('exit', r));
    assert.equal((await inMd5).split(/\s/)[0], createHash('md5').update(blob).digest('hex'), 'host -> guest: checksums match');
    assert.equal(await senderDone, 0, 'the host sent the file');
    const c2 = await counters();
    assert.ok(c2.rxBytes - c1.rxBytes >= 1024 * 1024, 'host -> guest: every byte through the device');
    assert.ok((c2.rxBytes - c1.rxBytes) / (c2.rxFrames - c1.rxFrames) > 1600,
      `host -> guest came in TSO segments: ${c2.rxBytes - c1.rxBytes} bytes in ${c2.rxFrames - c1.rxFrames} frames`);

    // vsock: the guest's transport is up, and its kernel refuses a connection to a port nobody listens on.
    assert.match(await guest.ask('VSOCK', 'ls /sys/bus/virtio/drivers/vmw_vsock_virtio_transport/ | grep virtio'), /^virtio\d+/);
    const started = Date.now();
    const refused = await new Promise<string>((resolve) => {
      const s = net.createConnection(vsockPath);
      let got = '';
      s.on('connect', () => s.write('CONNECT 1234\n'));
      s.on('data', (d) => { got += d.toString(); });
      s.on('close', () => resolve(got));
      s.on('error', () => {});
    });
    assert.equal(refused, '', 'no OK for a port without a listener');
    assert.ok(Date.now() - started < 1900, `the guest's RST came back (${Date.now() - started} ms), not the device's timeout`);

    // Balloon: take 64 MiB, see MemTotal drop, read the guest's statistics, give it back.
    const memTotal = async () => Number(await guest.ask('MEM', "grep MemTotal /proc/meminfo | awk '{print $2}'"));
    const before = await memTotal();
    const set = await ringzero(['balloon', '--control-socket', control, '64M']);
    assert.equal(set.status, 0, set.stderr);
    let inflated = before;
    await waitFor('MemTotal to drop by 64 MiB', async () => { inflated = await memTotal(); return before - inflated >= 65536; }, 120_000);
    assert.equal(before - inflated, 65536, `MemTotal ${before} kB -> ${inflated} kB`);
    const stats = await ringzero(['balloon', '--control-socket', control]);
    assert.equal(stats.status, 0, stats.stderr);
    const answer = JSON.parse(stats.stdout) as { targetPages: number; actualPages: number; guest: Record<string, number> };
    assert.equal(answer.targetPages, 16384);
    assert.equal(answer.actualPages, 16384);
    assert.ok(answer.guest['total-memory'] > 0 && answer.guest['free-memory'] > 0, `guest statistics: ${stats.stdout}`);
    assert.equal((await ringzero(['balloon', '--control-socket', control, '0'])).status, 0);
    await waitFor('MemTotal to come back', async () => (await memTotal()) === before, 120_000);

    guest.type('poweroff -f');
    assert.equal(await guest.waitForExit(), 0, `exit status 0 after poweroff (stderr: ${guest.stderr.slice(-500)})`);
  } finally {
    guest.close();
  }
});
