// A live migration between two daemons that never converges (issue 7): the guest dirties memory faster than the link,
// capped, moves it within the downtime limit, so the pre-copy goes round after round and the migration fails after
// --max-iterations, cleanly: the VM runs on at the source, the destination keeps nothing. Meanwhile the progress that
// the CLI prints (`migrate --progress`), the API serves (GET /vms/NAME/migration) and `migrate-info` shows has the
// figures a user steers by: the iteration, bytes sent, the dirty pages and the rate the guest dirties them at, the
// link's rate, and the expected downtime against the limit. Then, with a limit the rest fits, the same migration
// switches over: the limit is what decided.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { Daemon, api, cli, guestConsole, killRecordedVmms, tempDir, waitFor, listenPort, type GuestConsole, migrationPair } from './support/manager-harness.ts';
import { writeTinyKernel } from './support/guest.ts';

/*
 * The guest (GNU as --64, ld -Ttext=0 --oformat binary), entered at payload offset 0x200: it increments a quadword in
 * each of the 1024 pages from 8 MiB to 12 MiB, over and over, and prints a '.' on COM1 every 1024 rounds.
 *         xor %r8d,%r8d
 *  outer: mov $0x800000,%edi; mov $1024,%ecx
 *  1:     incq (%rdi); add $4096,%rdi; dec %ecx; jnz 1b
 *         inc %r8d; test $0x3ff,%r8d; jnz outer
 *         mov $0x3f8,%dx; mov $0x2e,%al; out %al,%dx; jmp outer
 */
const DIRTIER_HEX = '4531c0bf00008000b90004000048ff074881c700100000ffc975f241ffc041f7c0ff03000075dc66baf803b02eeeebd3';
const DIRTY_PAGES = 1024;
/** The link's cap: each dirty round of 4 MiB takes about a second, some thousand times the 1 ms limit. */
const BANDWIDTH = 4 * 2 ** 20;
const MAX_ITERATIONS = 3;

function dirtierKernel(dir: string): string {
  return writeTinyKernel(path.join(dir, 'dirtier.bzImage'), DIRTIER_HEX);
}

test('a migration that never converges fails cleanly after --max-iterations; its progress (CLI, API, migrate-info) shows the iteration, bytes sent, dirty pages and rate, and the expected downtime against the limit; under a limit the rest fits it switches over', { timeout: 300_000 }, async () => {
  const dir = tempDir('mig-progress');
  const { a, b, listen } = migrationPair(dir);
  const A = await Daemon.start(a, listen);
  const B = await Daemon.start(b, listen);
  let con: GuestConsole | undefined;
  try {
    const defined = await api({ socket: A.socket }, 'POST', '/vms', { name: 'dirty', engine: 'soft', memory: 64, kernel: dirtierKernel(dir), cmdline: 'console=ttyS0' });
    assert.equal(defined.status, 201, JSON.stringify(defined.body));
    const started = await api({ socket: A.socket }, 'POST', '/vms/dirty/start');
    assert.equal(started.status, 200, JSON.stringify(started.body));
    con = await guestConsole(started.body.consoleSocket);
    const dots = () => (con!.output().match(/\./g) ?? []).length;
    await waitFor('the guest to dirty its pages (its dots)', () => dots() >= 2, 60_000);

    // The CLI migrates with its progress; meanwhile the API is polled for a dirty round in progress.
    const run = cli(['migrate', 'dirty', '--to', `127.0.0.1:${listenPort(B)}`, '--downtime-ms', '1', '--max-iterations', String(MAX_ITERATIONS),
      '--bandwidth', String(BANDWIDTH), '--progress', '--json'], A.socket, [], 240_000);
    let live: any;
    await waitFor('a dirty round in the API\'s progress', async () => {
      const m = (await api({ socket: A.socket }, 'GET', '/vms/dirty/migration')).body;
      if (m.phase === 'failed' || m.phase === 'completed') throw new Error(`the migration ended before a dirty round was seen: ${JSON.stringify(m)}`);
      if (m.phase === 'precopy' && m.iteration >= 1 && m.dirtyRate > 0) live = m;
      return live !== undefined;
    }, 120_000);
    assert.equal(live.direction, 'outgoing');
    assert.equal(live.downtimeLimitMs, 1);
    assert.ok(live.bytesSent > DIRTY_PAGES * 4096, `bytes sent: ${JSON.stringify(live)}`);
    assert.ok(live.dirtyPages > 64 && live.dirtyPages <= 64 * 256, `dirty pages (the guest writes ${DIRTY_PAGES}): ${JSON.stringify(live)}`);
    assert.ok(live.expectedDowntimeMs > live.downtimeLimitMs, `expected downtime over the limit: ${JSON.stringify(live)}`);
    assert.ok(live.bandwidth > 0 && live.bandwidth < 2 * BANDWIDTH, `the link's rate, under the cap: ${JSON.stringify(live)}`);

    const r = await run;
    assert.notEqual(r.status, 0, 'the CLI says the migration failed');
    assert.match(r.stderr, /migration to 127\.0\.0\.1:\d+ failed, the VM runs on here: no convergence after 3 iterations: the guest dirties [\d.]+ MiB\/s, the link moves [\d.]+ MiB\/s, the rest would take \d+ ms \(limit 1 ms\)/);
    // Its progress lines: a dirty round with its pages, their rate and the expected downtime against the limit.
    const rounds = r.stderr.split('\n').filter((l) => /^precopy, iteration [1-9]\d*, [\d.]+ MiB sent, \d+ pages dirty \([\d.]+ MiB\/s\), [\d.]+ MiB\/s, .*expected downtime \d+ ms \(limit 1 ms\)/.test(l));
    assert.ok(rounds.length > 0, `a progress line of a dirty round: ${r.stderr}`);
    assert.ok(rounds.some((l) => !/ 0 pages dirty /.test(l)), r.stderr);
    const done = JSON.parse(r.stdout);
    assert.equal(done.phase, 'failed');
    assert.equal(done.iteration, MAX_ITERATIONS);
    assert.ok(done.dirtyPages > 64 && done.dirtyRate > 0 && done.expectedDowntimeMs > 1 && done.bytesSent >= live.bytesSent, r.stdout);
    assert.equal(done.downtimeMs, undefined, 'the guest was never stopped');
    process.stderr.write(`# no convergence: ${done.iteration} dirty rounds, ${(done.bytesSent / 2 ** 20).toFixed(1)} MiB sent, ${done.dirtyPages} pages dirty at ${(done.dirtyRate / 2 ** 20).toFixed(1)} MiB/s, link ${(done.bandwidth / 2 ** 20).toFixed(1)} MiB/s, expected downtime ${done.expectedDowntimeMs.toFixed(0)} ms (limit 1 ms); ${rounds.length} dirty-round progress lines\n`);

    // migrate-info (virsh domjobinfo) at the source: the same figures.
    const info = await cli(['migrate-info', 'dirty'], A.socket);
    assert.equal(info.status, 0, info.stderr);
    for (const row of [/^Phase: +failed$/m, /^Iteration: +3$/m, /^Sent: +[\d.]+ MiB$/m, /^Dirty pages: +\d+$/m, /^Dirty rate: +[\d.]+ MiB\/s$/m,
      /^Expected downtime: +\d+ ms$/m, /^Downtime limit: +1 ms$/m, /^Error: +no convergence after 3 iterations/m]) assert.match(info.stdout, row);

    // Cleanly: the VM runs on at A, its guest dirtying on; B keeps nothing.
    assert.equal((await api({ socket: A.socket }, 'GET', '/vms/dirty')).body.state, 'running');
    const n = dots();
    await waitFor('the guest to go on at the source', () => dots() >= n + 2, 60_000);
    assert.equal((await api({ socket: B.socket }, 'GET', '/vms/dirty')).status, 404, 'the destination forgot it');
    assert.deepEqual(fs.readdirSync(path.join(b, 'volumes')).filter((f) => !f.startsWith('.')), [], 'and left no file in its pool');

    // The limit is what decides: the same guest, the same link, a limit of 20 s (room for a link slowed by a loaded
    // host; ~1 s is expected): the first dirty round whose rest fits it switches over (its dirty set far above the few
    // pages below which the pre-copy stops whatever the limit), and the VM moves, its guest going on at B.
    const moved = await cli(['migrate', 'dirty', '--to', `127.0.0.1:${listenPort(B)}`, '--downtime-ms', '20000', '--max-iterations', String(MAX_ITERATIONS),
      '--bandwidth', String(BANDWIDTH), '--json'], A.socket, [], 240_000);
    assert.equal(moved.status, 0, moved.stderr);
    const over = JSON.parse(moved.stdout);
    assert.equal(over.phase, 'completed');
    // (its dirty pages were sent in the stop-and-copy, so the count reads 0 now; the expected downtime it switched on
    // says how many: over 100 ms at ~4 MiB/s is some 100 pages or more, above the 64 that stop the pre-copy anyway. The
    // stop-and-copy itself is not capped: the measured downtime is far below the expected one.)
    assert.ok(over.expectedDowntimeMs > 100 && over.expectedDowntimeMs <= 20_000 && over.downtimeLimitMs === 20_000 && over.dirtyRate > 0, moved.stdout);
    assert.ok(over.iteration >= 1 && over.iteration <= MAX_ITERATIONS, moved.stdout);
    process.stderr.write(`# converged under a 20 s limit: dirty rate ${(over.dirtyRate / 2 ** 20).toFixed(1)} MiB/s, expected downtime ${over.expectedDowntimeMs.toFixed(0)} ms, measured ${over.downtimeMs} ms, ${over.iteration} dirty rounds\n`);
    const atB = (await api({ socket: B.socket }, 'GET', '/vms/dirty')).body;
    assert.equal(atB.state, 'running');
    const onB = await guestConsole(atB.consoleSocket);
    const dotsB = () => (onB.output().match(/\./g) ?? []).length;
    await waitFor('the guest to go on at B', () => dotsB() >= 2, 60_000);
    onB.socket.destroy();
    assert.equal((await api({ socket: B.socket }, 'POST', '/vms/dirty/destroy')).status, 200);
  } finally {
    con?.socket.destroy();
    await A.stop('SIGKILL');
    await B.stop('SIGKILL');
    killRecordedVmms(a);
    killRecordedVmms(b);
    fs.rmSync(dir, { recursive: true, force: true });
  }
});
