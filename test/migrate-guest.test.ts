// Live migration of a real guest between two VMM processes (`ringzero run --control-socket` and `ringzero run
// --incoming tcp:...`): the guest prints a counter on its console every 10 ms and keeps a disk; killing the first
// destination mid-transfer leaves the source running; the second migration (checked with a SHA-256 of all RAM) moves
// the guest, the counter continues on the destination with no number missing, the source VMM exits, and the guest
// still reads and writes its disk there.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { findDefaultImage } from '../src/image/build.ts';
import { GuestSession, BOOT_TIMEOUT_MS } from './support/guest.ts';
import { controlRequest } from '../src/vmm/control.ts';

const enabled = process.env.RINGZERO_SKIP_BOOT_TEST !== '1' || process.env.CI === 'true';

/** A `ringzero run --incoming tcp:127.0.0.1:0` and the port it listens on. */
async function destination(): Promise<{ vmm: GuestSession; port: number }> {
  const vmm = new GuestSession(['--incoming', 'tcp:127.0.0.1:0']);
  const end = Date.now() + 30_000;
  for (;;) {
    const m = /waiting for an incoming migration on 127\.0\.0\.1:(\d+)/.exec(vmm.stderr);
    if (m) return { vmm, port: Number(m[1]) };
    if (Date.now() > end || vmm.child.exitCode !== null) throw new Error(`the destination did not listen: ${vmm.stderr}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/**
 * Counter values printed as whole "C<n>" lines in `text`. Kernel log lines ("[   26.594030] hrtimer: interrupt took
 * 30216310 ns", which the destination prints after the switch-over's pause) are taken out first: the kernel's console
 * writes them between the bytes of whatever line the shell's output was in ("C43" + the kernel line + "\r\n"), so
 * otherwise that counter's line would not count (seen with four of these tests at once on this host).
 */
function counters(text: string): number[] {
  const shell = text.replace(/\[\s*\d+\.\d+\][^\n]*\n/g, '');
  return [...shell.matchAll(/\bC(\d+)\r?\n/g)].map((m) => Number(m[1]));
}

test('a real guest migrates live between two VMM processes; a destination killed mid-transfer leaves the source running', {
  skip: !enabled ? 'RINGZERO_SKIP_BOOT_TEST=1' : !findDefaultImage() ? 'no default image: run `bin/ringzero image build`' : false,
  timeout: BOOT_TIMEOUT_MS + 600_000,
}, async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'rz-migrate-'));
  const disk = path.join(dir, 'disk.img');
  fs.writeFileSync(disk, Buffer.alloc(4 * 1024 * 1024));
  const ctl = path.join(dir, 'src.ctl');
  const source = new GuestSession(['--engine', 'soft', '--memory', '256M', '--disk', disk, '--control-socket', ctl]);
  const sessions: GuestSession[] = [source];
  try {
    await source.waitForShell();
    assert.equal(await source.ask('W1', 'echo before-migration | dd of=/dev/vda bs=512 seek=3 conv=sync,fsync 2>/dev/null; echo $?'), '0');
    source.type('i=0; while [ $i -lt 1000000 ]; do i=$((i+1)); echo C$i; usleep 10000; done &');
    // A few values prove the counter runs (on a loaded host it may print one a second: the wait is long, the count short).
    await source.waitFor(/\bC5\r?\n/, 300_000);

    // 1. A destination killed during the full pass (the transfer capped at 4 MiB/s so it lasts).
    const doomed = await destination();
    sessions.push(doomed.vmm);
    const failed = controlRequest(ctl, { cmd: 'migrate', to: `127.0.0.1:${doomed.port}`, bandwidth: 4 * 1024 * 1024 }, 300_000);
    const end = Date.now() + 60_000;
    for (;;) {
      const st = await controlRequest(ctl, { cmd: 'migrate-status' }, 60_000);
      if (st.phase === 'precopy' && Number(st.bytesSent) > 1024 * 1024) break;
      if (Date.now() > end) throw new Error(`the migration did not start: ${JSON.stringify(st)}`);
      await new Promise((r) => setTimeout(r, 50));
    }
    doomed.vmm.child.kill('SIGKILL');
    const answer = await failed;
    assert.equal(answer.ok, false);
    // However the source learns it: the socket's close, a reset, or a write waiting for the link to drain when it
    // closed (src/migration/protocol.ts writeFrame: 'the connection closed', seen on a loaded host), or a write after
    // the socket was already destroyed ('the connection is closed', three tests at once on this host).
    assert.match(String(answer.error), /failed: .*(closed the connection|connection (is )?closed|ECONNRESET|EPIPE)/);
    const mark = source.output.length;
    await source.waitFor(/\bC\d+\r?\n[^]*\bC\d+\r?\n[^]*\bC\d+\r?\n/, 300_000, mark);
    assert.equal((await controlRequest(ctl, { cmd: 'status' }, 60_000)).paused, false, 'the source runs on');

    // 2. The real migration, RAM checked end to end.
    const dest = await destination();
    sessions.push(dest.vmm);
    const result = await controlRequest(ctl, { cmd: 'migrate', to: `127.0.0.1:${dest.port}`, downtimeMs: 50, verify: true }, 300_000);
    assert.equal(result.ok, true, JSON.stringify(result));
    assert.equal(result.phase, 'completed');
    assert.equal(await source.waitForExit(60_000), 0, `the source VMM ends after the switch-over: ${source.stderr}`);
    const onSource = counters(source.output);
    const last = onSource[onSource.length - 1];
    await dest.vmm.waitFor(new RegExp(`\\bC${last + 10}\\r?\\n`), 300_000);
    // The switch-over may fall inside a line the guest was writing ("C5" sent on the source, "6" and the line end on
    // the destination): the source's unfinished last line and the destination's console are one stream.
    const unfinished = source.output.slice(source.output.lastIndexOf('\n') + 1);
    const onDest = counters(unfinished + dest.vmm.output);
    // (the streams' seam in the message: a kernel line written by the console in the middle of a counter's line would
    // split it, and a CI run once saw C51 missing between the two VMMs without saying which it was)
    const seam = () => `; the source's last console bytes ${JSON.stringify(source.output.slice(-200))}, the destination's first ${JSON.stringify(dest.vmm.output.slice(0, 400))}`;
    assert.equal(onDest[0], last + 1, `the counter continues: ...C${last} on the source, then C${onDest[0]} on the destination${onDest[0] === last + 1 ? '' : seam()}`);
    for (let k = 1; k < onDest.length; k++) assert.equal(onDest[k], onDest[k - 1] + 1, 'no number missing');
    process.stderr.write(`# migration: ${JSON.stringify(result)}\n`);

    // The guest goes on using its disk at the destination.
    dest.vmm.type('kill %1');
    assert.equal(await dest.vmm.ask('BACK', 'dd if=/dev/vda bs=512 skip=3 count=1 2>/dev/null | head -c 16'), 'before-migration');
    assert.equal(await dest.vmm.ask('W2', 'echo after-migration | dd of=/dev/vda bs=512 seek=5 conv=sync,fsync 2>/dev/null; echo $?'), '0');
    assert.equal(fs.readFileSync(disk).subarray(5 * 512, 5 * 512 + 15).toString('latin1'), 'after-migration');
    dest.vmm.type('poweroff -f');
    assert.equal(await dest.vmm.waitForExit(60_000), 0, dest.vmm.stderr);
  } finally {
    for (const s of sessions) s.close();
    fs.rmSync(dir, { recursive: true, force: true });
  }
});
