// Consolidation (issue 6's acceptance): 20 VMs of 128 MiB, each the real default guest (Debian's kernel + busybox
// initramfs on the soft CPU), defined and started through the real CLI against a real daemon, all running at once
// on this 2-core host. Each answers on its console (`ringzero console NAME`: `echo hello-N` comes back),
// `ringzero top --once` and GET /metrics report each one, the host CPU the 20 idle VMMs use is measured and printed,
// and all of them shut down gracefully (ACPI power button) through `ringzero shutdown`.
//
// How the 20 get to their shell: RINGZERO_CONSOLIDATION_BOOTED of them (default 2) boot from power-on; the others are
// provisioned the way a fleet is (Firecracker's snapshot-based fast start): a live backup of the first booted VM
// (`ringzero backup`, memory + device state at one instant) restored under new names (`ringzero restore ID --as NAME`),
// each its own VMM process running the same real guest from its shell. Twenty cold boots cost ~10 of the suite's
// minutes on 2 cores; RINGZERO_CONSOLIDATION_BOOTED=20 boots every one of them.
//
// Boots are started a few at a time (RINGZERO_CONSOLIDATION_PARALLEL, default 2: one per core): a booting guest's
// timer interrupts come at guest-time rate however little CPU it gets, so 20 guests booting at once would spend much of
// the two cores on ticks; the booted ones are idle (NOHZ: a halted vCPU sleeps until its next timer). RINGZERO_CONSOLIDATION_VMS
// changes the count (default 20). A boot test: CI always runs it, RINGZERO_SKIP_BOOT_TEST=1 skips it locally.
//
// Measured here, session 11 (2 cores under a load of 8-22 from other engineers' work): 2 boots in 99-100 s, the backup
// and 18 restores to their shell in 47-63 s (median 9.8-12.2 s each, 4 at a time; a restored VMM's console has no
// scrollback, so waitForPrompt presses Enter at once instead of after 5 s, a wait inside each of the 7.8 s (median)
// restores measured before); the whole test took 274 s (341 s with the longer idle measurements below). Idle cost with the default command line's idle options
// (src/vmm/config.ts), 20 VMMs: 1.80% of a CPU each 3 s after the last restore (10 s window), 1.39% after 30 s (booted
// 1.07%, restored 1.42%: a restored VMM starts with no translated code), 0.98% 80 s later with a busy process beside
// them (booted 0.67%, restored 1.02%): a busy neighbour does not raise it, warming does lower it. It was 2.2% each
// before those options (44.5% for 20). RSS 132-142 MiB per VMM (restored RAM is mapped from the backup lazily).
// RINGZERO_CONSOLIDATION_SETTLE_S / _MEASURE_S change the idle measurement's pause and window (default 3 and 10 s),
// RINGZERO_CONSOLIDATION_LOADED=1 repeats it beside a busy process. With every VM cold-booted
// (RINGZERO_CONSOLIDATION_BOOTED=20) it took about 10 minutes in an otherwise idle CI run (earlier measurement).
import test, { after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { findDefaultImage, GUEST_PROMPT } from '../src/image/build.ts';
import { readProcess } from '../src/manager/stats.ts';
import { api, cli, Daemon, killRecordedVmms, tempDir, waitFor } from './support/manager-harness.ts';

const image = findDefaultImage();
const COUNT = Number(process.env.RINGZERO_CONSOLIDATION_VMS ?? 20);
const PARALLEL = Number(process.env.RINGZERO_CONSOLIDATION_PARALLEL ?? 2);
/** Restores in flight at a time: a restore is mostly process start-up (CLI, VMM), no guest boot. */
const RESTORE_PARALLEL = Number(process.env.RINGZERO_CONSOLIDATION_RESTORE_PARALLEL ?? 4);
/** The idle measurement: a settling pause after the last VM reaches its shell, then the interval measured. */
const SETTLE_MS = Number(process.env.RINGZERO_CONSOLIDATION_SETTLE_S ?? 3) * 1000;
const MEASURE_MS = Number(process.env.RINGZERO_CONSOLIDATION_MEASURE_S ?? 10) * 1000;
/** Also measure the idle VMMs while a CPU-bound process runs beside them (by hand: adds a settle and a measure). */
const MEASURE_LOADED = process.env.RINGZERO_CONSOLIDATION_LOADED === '1';
const BOOTED = Math.max(1, Math.min(COUNT, Number(process.env.RINGZERO_CONSOLIDATION_BOOTED ?? 2)));
const BOOT_TIMEOUT_MS = Number(process.env.RINGZERO_BOOT_TIMEOUT_MS ?? 600_000);
/**
 * What one idle VMM may use on average, in percent of one host CPU. Measured here (soft engine, default image, idle
 * shell): the run loop sleeps between the guest's own timer interrupts, and each wakeup runs some 8k guest
 * instructions of kernel code. An idle Linux woke about 7 times a second (2.2% of a CPU per VM); the default command
 * line's idle options (src/vmm/config.ts) remove two sources of wakeups: ~1% per VM once warm (more right after a
 * restore, when no code is translated yet). The budget leaves room for a loaded CI host.
 */
const IDLE_BUDGET_PERCENT_PER_VM = Number(process.env.RINGZERO_CONSOLIDATION_IDLE_BUDGET ?? 5);

/** Run `work` over `items`, at most `limit` at a time. */
async function pool<T, R>(items: readonly T[], limit: number, work: (item: T, index: number) => Promise<R>): Promise<R[]> {
  const results: R[] = new Array(items.length);
  let next = 0;
  const runners = Array.from({ length: Math.min(limit, items.length) }, async () => {
    while (next < items.length) {
      const i = next++;
      results[i] = await work(items[i], i);
    }
  });
  await Promise.all(runners);
  return results;
}

/** Wait on the VM's console socket until the shell prompt shows (pressing Enter now and then to get a fresh one). */
function waitForPrompt(socketPath: string, timeoutMs: number): Promise<void> {
  return new Promise((resolve, reject) => {
    const socket = net.connect(socketPath);
    let tail = '';
    // A restored guest sits at its prompt already but its new VMM's console has no scrollback: Enter at once shows it.
    // (Early newlines during a cold boot are harmless: the shell reads them as empty commands.)
    socket.once('connect', () => socket.write('\n'));
    const nudge = setInterval(() => socket.write('\n'), 2000);
    const timer = setTimeout(() => finish(new Error(`no shell prompt on ${socketPath} within ${timeoutMs / 1000} s: ${JSON.stringify(tail.slice(-300))}`)), timeoutMs);
    const finish = (error?: Error): void => {
      clearInterval(nudge);
      clearTimeout(timer);
      socket.destroy();
      if (error) reject(error);
      else resolve();
    };
    socket.setEncoding('latin1');
    socket.on('data', (d: string) => {
      tail = (tail + d).slice(-4096);
      // The init script's last line comes before the first prompt; any prompt after it means the shell reads.
      if (tail.includes(GUEST_PROMPT)) finish();
    });
    socket.on('error', (error) => finish(error));
  });
}

test(`consolidation: ${COUNT} VMs of 128 MiB at once, each answers on its console; top and /metrics report each`, {
  skip: process.env.RINGZERO_SKIP_BOOT_TEST === '1' && process.env.CI !== 'true' ? 'RINGZERO_SKIP_BOOT_TEST=1' : !image ? 'no default image: run `bin/ringzero image build`' : false,
  timeout: BOOT_TIMEOUT_MS + 600_000,
}, async (t) => {
  const started = Date.now();
  const phase = (what: string): void => t.diagnostic(`${((Date.now() - started) / 1000).toFixed(1)} s: ${what}`);
  const dir = tempDir('cons');
  const stateDir = path.join(dir, 'state');
  const daemon = await Daemon.start(stateDir);
  after(async () => {
    killRecordedVmms(stateDir);
    await daemon.stop();
    fs.rmSync(dir, { recursive: true, force: true });
  });
  const names = Array.from({ length: COUNT }, (_, i) => `c${String(i + 1).padStart(2, '0')}`);

  const booted = names.slice(0, BOOTED);
  const restored = names.slice(BOOTED);
  // Define through the CLI (a few CLI processes at a time: each is a Node start).
  await pool(booted, 4, async (name) => {
    const file = path.join(dir, `${name}.json`);
    fs.writeFileSync(file, JSON.stringify({ name, memory: 128, engine: 'soft' }));
    const r = await cli(['define', file], daemon.socket);
    assert.equal(r.status, 0, `${name}: ${r.stderr}`);
  });
  phase(`${BOOTED} VMs defined`);

  // Start through the CLI, PARALLEL boots in flight at a time; a boot is done at the shell prompt.
  const bootSeconds: number[] = [];
  await pool(booted, PARALLEL, async (name) => {
    const t0 = Date.now();
    const r = await cli(['start', name], daemon.socket, [], 120_000);
    assert.equal(r.status, 0, `${name}: ${r.stderr}`);
    const vm = (await api({ socket: daemon.socket }, 'GET', `/vms/${name}`)).body;
    await waitForPrompt(vm.consoleSocket, BOOT_TIMEOUT_MS);
    bootSeconds.push((Date.now() - t0) / 1000);
  });
  const sorted = [...bootSeconds].sort((a, b) => a - b);
  phase(`${BOOTED} VMs booted to their shell (${PARALLEL} at a time): per boot median ${sorted[Math.floor(sorted.length / 2)].toFixed(1)} s, max ${sorted[sorted.length - 1].toFixed(1)} s`);

  // The rest: a live backup of the first VM at its shell, restored under each new name (a VMM process each).
  if (restored.length > 0) {
    const b = await cli(['backup', names[0]], daemon.socket, [], 300_000);
    assert.equal(b.status, 0, b.stderr);
    const id = /backup '(bk-[0-9a-f-]+)'/.exec(b.stdout)?.[1];
    assert.ok(id, b.stdout);
    const restoreSeconds: number[] = [];
    await pool(restored, RESTORE_PARALLEL, async (name) => {
      const t0 = Date.now();
      const r = await cli(['restore', id, '--as', name], daemon.socket, [], 120_000);
      assert.equal(r.status, 0, `${name}: ${r.stderr}`);
      const vm = (await api({ socket: daemon.socket }, 'GET', `/vms/${name}`)).body;
      assert.equal(vm.state, 'running', name);
      await waitForPrompt(vm.consoleSocket, BOOT_TIMEOUT_MS);
      restoreSeconds.push((Date.now() - t0) / 1000);
    });
    const rs = [...restoreSeconds].sort((a, c) => a - c);
    phase(`${restored.length} VMs restored from backup ${id} to their shell (${RESTORE_PARALLEL} at a time): median ${rs[Math.floor(rs.length / 2)].toFixed(1)} s, max ${rs[rs.length - 1].toFixed(1)} s`);
  }

  const vms = (await api({ socket: daemon.socket }, 'GET', '/vms')).body as Array<{ name: string; state: string; pid: number }>;
  assert.equal(vms.filter((v) => v.state === 'running').length, COUNT, 'every VM runs at once');
  const pids = vms.map((v) => v.pid);

  // Idle cost: the CPU time of all VMM processes over a quiet interval, after the last boot has settled.
  const measureIdle = async (label: string): Promise<number> => {
    await new Promise((resolve) => setTimeout(resolve, SETTLE_MS));
    const cpu0 = pids.map((pid) => readProcess(pid)!.cpuSeconds);
    const rss = pids.map((pid) => readProcess(pid)!.residentBytes);
    const t0 = Date.now();
    await new Promise((resolve) => setTimeout(resolve, MEASURE_MS));
    const elapsed = (Date.now() - t0) / 1000;
    const perVm = pids.map((pid, i) => (100 * (readProcess(pid)!.cpuSeconds - cpu0[i])) / elapsed);
    const total = perVm.reduce((a, b) => a + b, 0);
    const rssTotal = rss.reduce((a, b) => a + b, 0);
    // Booted and restored VMMs apart: a restored one starts with no translated code, so its first wakeups run cold.
    const mean = (names_: string[]) => names_.length === 0 ? 0 : names_.reduce((sum, name) => sum + perVm[vms.findIndex((v) => v.name === name)], 0) / names_.length;
    const line = `${label}: ${COUNT} VMMs use ${total.toFixed(1)}% of one host CPU together (${(total / COUNT).toFixed(2)}% each, max ${Math.max(...perVm).toFixed(2)}%; `
      + `booted ${mean(booted).toFixed(2)}%, restored ${mean(restored).toFixed(2)}% each) over ${elapsed.toFixed(1)} s after ${SETTLE_MS / 1000} s; `
      + `resident ${(rssTotal / 2 ** 20).toFixed(0)} MiB (${(rssTotal / COUNT / 2 ** 20).toFixed(0)} MiB each)`;
    phase(line);
    process.stdout.write(`# ${line}\n`);
    return total;
  };
  const idleTotal = await measureIdle('idle');
  if (MEASURE_LOADED) {
    // One CPU-bound process beside them (a busy loop at normal priority).
    const burner = spawn(process.execPath, ['-e', 'for (;;) {}'], { stdio: 'ignore' });
    try {
      await measureIdle('idle, one busy process beside them');
    } finally {
      burner.kill('SIGKILL');
    }
  }
  assert.ok(idleTotal < IDLE_BUDGET_PERCENT_PER_VM * COUNT, `${COUNT} idle VMs cost ${idleTotal.toFixed(1)}% of a CPU (budget ${IDLE_BUDGET_PERCENT_PER_VM}% each)`);

  // Each answers on its console through `ringzero console` (stdin piped; Ctrl-A x detaches once the answer is there).
  await pool(names, 4, async (name, i) => {
    const word = `hello-${i + 1}`;
    let sent = false;
    let done = false;
    const r = await cli(['console', name], daemon.socket, [], 60_000, (all, child) => {
      if (!sent) {
        sent = true;
        child.stdin!.write(`echo ${word}\n`);
      } else if (!done && all.split(/\r?\n/).some((l) => l.trim() === word)) {
        done = true;
        child.stdin!.write('\x01x');
      }
    });
    // The console prints the scrollback on attach, so `sent` happens at once; the answer is a line of its own.
    assert.ok(done, `${name} did not answer ${word}: ${JSON.stringify(r.stdout.slice(-500))} ${r.stderr}`);
  });
  phase(`all ${COUNT} answered on their consoles`);

  // ringzero top --once and /metrics report each VM.
  const top = await cli(['top', '--once'], daemon.socket, [], 60_000);
  assert.equal(top.status, 0, top.stderr);
  for (const name of names) assert.match(top.stdout, new RegExp(`^${name}\\s+running\\s+1\\s+\\d+\\.\\d\\s+\\d`, 'm'), `top:\n${top.stdout}`);
  assert.match(top.stdout, new RegExp(`VMs: ${COUNT} defined, ${COUNT} running`));
  const metrics = await api({ socket: daemon.socket }, 'GET', '/metrics');
  assert.equal(metrics.status, 200);
  for (const name of names) {
    assert.match(metrics.body, new RegExp(`^ringzero_vm_running\\{vm="${name}"\\} 1$`, 'm'));
    assert.match(metrics.body, new RegExp(`^ringzero_vm_resident_bytes\\{vm="${name}"\\} [1-9]\\d*$`, 'm'));
    assert.match(metrics.body, new RegExp(`^ringzero_vm_instructions_total\\{vm="${name}"\\} [1-9]\\d*$`, 'm'));
  }
  phase('top --once and /metrics list every VM');
  process.stdout.write(`# top --once:\n${top.stdout.split('\n').map((l) => `#   ${l}`).join('\n')}\n`);

  // All shut down gracefully (the guests' acpid powers them off on the button). (All 20 at once was no faster than 5
  // at a time here: 52 s against 51 s on a loaded host; the CLI starts and the guests' poweroff are CPU.)
  await pool(names, 5, async (name) => {
    const r = await cli(['shutdown', name, '--timeout', '60'], daemon.socket, [], 120_000);
    assert.equal(r.status, 0, `${name}: ${r.stderr}`);
    assert.match(r.stdout, new RegExp(`VM '${name}' shut down`));
  });
  const end = (await api({ socket: daemon.socket }, 'GET', '/vms')).body as Array<{ state: string }>;
  assert.ok(end.every((v) => v.state === 'shut off'));
  await waitFor('every VMM gone', () => pids.every((pid) => readProcess(pid) === undefined), 10_000);
  phase(`all ${COUNT} shut down`);
});
