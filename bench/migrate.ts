// bench/migrate: live migration on loopback, total time and downtime, for the default guest idle at its shell and for
// the same guest dirtying memory at a set rate, on ringzero's software engine against QEMU's binary translator
// (`qemu-system-x86_64 -accel tcg`) with the same kernel, initramfs, command line and memory size, in the same run
// (issue 7).
//
//   node --import tsx bench/migrate.ts [--runs 3] [--memory 256M] [--downtime-ms 300] [--dirty-mib-s 8] [--timeout 600]
//                                      [--only ringzero|qemu] [--disk-mib 0] [--kinds idle,disk,loaded]
//                                      [--pool abba|on|off] [--pool-warm-up-ms 1500] [--pool-nice N] [--pool-settle-ms 0]
//
// Each VMM boots the guest once; every run then migrates the VM from the process it is in to a fresh process started
// to receive it (ringzero: `run --incoming tcp:127.0.0.1:0`, the control socket's {"cmd":"migrate"}; QEMU: `-incoming
// tcp:127.0.0.1:PORT`, QMP `migrate` and `query-migrate`), so the VM hops from process to process:
//   idle    the guest at its prompt;
//   disk    (with --disk-mib N) the guest idle, its virtio-blk disk of N MiB of random bytes copied along
//           (copy-storage: ringzero `migrate` {"copyStorage":true} into the destination's `--disk-target`; QEMU's
//           block migration, the `block` capability of `migrate -b`, into the destination's own -drive file of the
//           same size). Between the other hops the disk is shared (the same file, the path of the last copy).
//   loaded  the guest dirtying a 32 MiB buffer in its RAM at --dirty-mib-s (bench/support/dirtier.c, built with
//           gcc -static and appended to the initramfs, as bench/io does: one store per 4 KiB page, paced by the guest's
//           monotonic clock; it replaced a shell loop of `dd` + `usleep`, whose forks held the soft CPU's guest far
//           below the rate asked, so the 'loaded' row had measured a nearly idle guest), started once before the
//           loaded runs. After each loaded hop the guest's own rate (the dirtier's last 5 s) is read and printed with
//           the migration's measured dirty rate; a run whose guest fell short of 80% of the rate is flagged.
// Both use the same downtime limit (--downtime-ms; QEMU's default is 300 ms) and no bandwidth cap (QEMU's
// max-bandwidth is raised from its 128 MiB/s default: this is loopback). Downtime: ringzero measures from pausing the
// VM to the destination's "resumed"; QEMU reports `downtime` in query-migrate. After each run the guest must answer
// at its prompt in the destination. Prints the medians and ratios, then one JSON line. The machine is noisy: only the
// ratios of one run mean anything.
// --pool: ringzero's destination is a spare VMM (`ringzero vmm-spare`, src/vmm/spare.ts, as the daemon's `--vmm-pool`
// keeps them) at some hops: abba alternates spare, new, new, spare, ... over all hops, on at every hop. Each spare is
// started after the hop before it, warmed up for --pool-warm-up-ms of CPU (at --pool-nice, default the daemon's 10),
// and handed `run --incoming ...` once ready (--pool-settle-ms later: a daemon's spare has usually waited idle a while,
// V8's background compiles of its warm-up done); the medians are then also given per kind of destination.
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { findDefaultImage, GUEST_PROMPT } from '../src/image/build.ts';
import { DEFAULT_CMDLINE } from '../src/vmm/config.ts';
import { controlRequest } from '../src/vmm/control.ts';
import { median, benchArgs, nameList } from './support/common.ts';
import { initrdWithPrograms } from './support/initramfs.ts';
import { Qmp } from './support/qmp.ts';
import { killAllVmms, spareReady, VmmProcess } from './support/vmm-process.ts';
import { Spare } from '../src/manager/pool.ts';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const { values } = benchArgs(import.meta.url, {
  options: {
    runs: { type: 'string', default: '3' },
    memory: { type: 'string', default: '256M' },
    'downtime-ms': { type: 'string', default: '300' },
    'dirty-mib-s': { type: 'string', default: '8' },
    timeout: { type: 'string', default: '600' },
    only: { type: 'string' },
    'disk-mib': { type: 'string', default: '0' },
    kinds: { type: 'string', default: 'idle,disk,loaded' },
    pool: { type: 'string', default: 'off' },
    'pool-warm-up-ms': { type: 'string', default: '1500' },
    'pool-nice': { type: 'string' },
    'pool-settle-ms': { type: 'string', default: '0' },
  },
});
const diskMiB = Number(values['disk-mib']);
const poolMode = values.pool!;
if (!['abba', 'on', 'off'].includes(poolMode)) throw new Error('--pool is abba, on or off');
const spareHop = (hop: number) => poolMode === 'on' || (poolMode === 'abba' && [true, false, false, true][(hop - 1) % 4]);
const kinds = nameList('kinds', values.kinds, ['idle', 'disk', 'loaded']);
const KINDS = (['idle', 'disk', 'loaded'] as const).filter((k) => kinds.includes(k) && (k !== 'disk' || diskMiB > 0));
const runs = Number(values.runs);
const memory = values.memory!;
const downtimeMs = Number(values['downtime-ms']);
const dirtyMiBs = Number(values['dirty-mib-s']);
const timeoutMs = Number(values.timeout) * 1000;
const image = findDefaultImage();
if (!image) {
  console.error('bench/migrate: no default image; run `bin/ringzero image build` first');
  process.exit(2);
}
const qemuPresent = values.only !== 'ringzero' && spawnSync('qemu-system-x86_64', ['--version']).status === 0;
if (!qemuPresent) console.error('bench/migrate: QEMU left out (not found, or --only ringzero): ringzero alone');

const work = fs.mkdtempSync(path.join(os.tmpdir(), 'ringzero-bench-migrate-'));
process.on('exit', () => {
  killAllVmms();
  fs.rmSync(work, { recursive: true, force: true });
});

const vmm = (cmd: string, args: string[]) => new VmmProcess(cmd, args, timeoutMs);
/** The default initramfs, with the dirtier appended when a loaded run is asked for (both VMMs boot the same one). */
const initrd = KINDS.includes('loaded') ? initrdWithPrograms(image.initrd, ['dirtier']) : image.initrd;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

interface Run { totalMs: number; downtimeMs: number; iterations?: number; mib?: number; dirtyMiBs?: number; guestMiBs?: number; spare?: boolean }
type Kind = 'idle' | 'disk' | 'loaded';
type Results = Record<Kind, Run[]>;

/** Whether two files hold the same bytes (the guest is idle and nothing writes its disk: a copy must equal its source). */
function sameFile(a: string, b: string): boolean {
  return fs.readFileSync(a).equals(fs.readFileSync(b));
}

/** The guest's disk (--disk-mib): random bytes, so every block travels. Each copy-storage hop gets a new file. */
function makeDisk(file: string, mib: number): void {
  const fd = fs.openSync(file, 'w');
  const chunk = Buffer.alloc(1 << 20);
  for (let i = 0; i < mib; i++) { for (let k = 0; k < chunk.length; k += 4) chunk.writeUInt32LE((Math.random() * 2 ** 32) >>> 0, k); fs.writeSync(fd, chunk); }
  fs.closeSync(fd);
}

/** The guest's memory dirtier (bench/support/dirtier.c): 32 MiB of its RAM at `rate` MiB/s; its rate goes to a file. */
function startDirtier(vm: VmmProcess, rate: number): void {
  vm.type(`dirtier 32 ${rate} 2>/tmp/dirtier.log &`);
}

/** The rate the guest's dirtier reached over its last 5 s (MiB/s), asked at its shell; NaN if it has not said yet. */
async function guestDirtyRate(vm: VmmProcess): Promise<number> {
  const from = vm.out.length;
  // The command line's echo holds "DR$(", never "DRdirtier": only the answer matches.
  vm.type('echo DR$(tail -n 1 /tmp/dirtier.log)DR');
  await vm.waitFor(() => /DR(dirtier: [\d.]+ MiB\/s)?DR/.test(vm.out.slice(from).replace(/DR\$\(/g, '')), 'the dirtier\'s rate');
  const m = /DRdirtier: ([\d.]+) MiB\/sDR/.exec(vm.out.slice(from));
  return m ? Number(m[1]) : NaN;
}

/** Print the loaded run's two rates: the guest's own, and what the migration measured; flag a guest short of the rate. */
function noteRates(who: string, run: Run): void {
  const short = !(run.guestMiBs! >= 0.8 * dirtyMiBs);
  console.log(`  ${who} loaded: the guest dirtied ${run.guestMiBs!.toFixed(1)} MiB/s (asked ${dirtyMiBs}), the migration measured ${(run.dirtyMiBs ?? 0).toFixed(1)} MiB/s${short ? ' -- SHORT of the rate asked: this run is not the load it claims' : ''}`);
}

const ringzeroBin = path.join(root, 'bin', 'ringzero');

async function benchRingzero(): Promise<Results> {
  const results: Results = { idle: [], disk: [], loaded: [] };
  let socket = path.join(work, 'rz-0.sock');
  const t0 = performance.now();
  const disk = diskMiB > 0 ? path.join(work, 'rz-disk-0.raw') : undefined;
  if (disk) makeDisk(disk, diskMiB);
  let rzDisk = disk;
  let vm = vmm(ringzeroBin, ['run', '--engine', 'soft', '--memory', memory, '--kernel', image!.kernel, '--initrd', initrd, '--cmdline', DEFAULT_CMDLINE, '--control-socket', socket, ...(disk ? ['--disk', `${disk},format=raw`] : [])]);
  await vm.waitForOutput(GUEST_PROMPT);
  console.log(`  ringzero: at the prompt after ${((performance.now() - t0) / 1000).toFixed(1)} s`);
  await vm.pingPrompt();
  let hop = 0;
  for (const kind of KINDS) {
    if (kind === 'loaded') { startDirtier(vm, dirtyMiBs); await sleep(6000); }
    for (let i = 0; i < runs; i++) {
      hop++;
      const nextSocket = path.join(work, `rz-${hop}.sock`);
      const target = kind === 'disk' ? path.join(work, `rz-disk-${hop}.raw`) : undefined;
      const incoming = ['run', '--incoming', 'tcp:127.0.0.1:0', '--control-socket', nextSocket, ...(target ? ['--disk-target', target] : [])];
      let dest: VmmProcess;
      let spareNote = '';
      if (spareHop(hop)) {
        const spare = Spare.spawn({ file: process.execPath, args: [ringzeroBin] }, {
          warmUpMs: Number(values['pool-warm-up-ms']), ...(values['pool-nice'] !== undefined ? { nice: Number(values['pool-nice']) } : {}), stdio: ['pipe', 'pipe', 'pipe'], env: process.env,
        });
        const d = (dest = new VmmProcess(ringzeroBin, [], timeoutMs, undefined, spare.child));
        spareNote = ` (into a spare: ${await spareReady(spare, () => d.err)})`;
        await sleep(Number(values['pool-settle-ms']));
        await spare.take(incoming);
      } else {
        dest = vmm(ringzeroBin, incoming);
      }
      let port = 0;
      await dest.waitFor(() => { const m = /incoming migration on 127\.0\.0\.1:(\d+)/.exec(dest.err); if (m) port = Number(m[1]); return port > 0; }, 'the destination to listen');
      const answer = await controlRequest(socket, { cmd: 'migrate', to: `127.0.0.1:${port}`, downtimeMs, maxIterations: 100, ...(target ? { copyStorage: true } : {}) }, timeoutMs);
      if (answer.ok !== true) throw new Error(`ringzero migrate: ${JSON.stringify(answer)}`);
      results[kind].push({ totalMs: Number(answer.totalMs), downtimeMs: Number(answer.downtimeMs), iterations: Number(answer.iteration), mib: Number(answer.bytesSent) / 2 ** 20, dirtyMiBs: Number(answer.dirtyRate) / 2 ** 20, ...(poolMode !== 'off' ? { spare: spareHop(hop) } : {}) });
      if (target && !sameFile(rzDisk!, target)) throw new Error(`ringzero copy-storage: ${target} differs from ${rzDisk}`);
      if (target) rzDisk = target;
      await vm.exited;
      vm = dest;
      socket = nextSocket;
      await vm.pingPrompt();
      if (kind === 'loaded') { const run = results[kind][results[kind].length - 1]; run.guestMiBs = await guestDirtyRate(vm); noteRates('ringzero', run); }
      console.log(`  ringzero ${kind} #${i + 1}${spareNote}: total ${Number(answer.totalMs).toFixed(0)} ms, downtime ${answer.downtimeMs} ms ${JSON.stringify(answer.downtimeParts)}, ${answer.iteration} iterations, ${(Number(answer.bytesSent) / 2 ** 20).toFixed(1)} MiB sent; load ${os.loadavg()[0].toFixed(1)}`);
    }
  }
  await vm.kill();
  return results;
}

const qemuArgs = (qmpSocket: string): string[] => [
  '-accel', 'tcg', '-M', 'q35', '-smp', '1', '-m', memory, '-display', 'none', '-serial', 'stdio', '-monitor', 'none',
  '-no-reboot', '-kernel', image!.kernel, '-initrd', initrd, '-append', DEFAULT_CMDLINE,
  '-qmp', `unix:${qmpSocket},server=on,wait=off`,
];

/** How long QEMU's guest has to answer at a hop's destination before the bench gives up on QEMU's remaining hops. */
const QEMU_ANSWER_MS = 60_000;

function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const s = net.createServer();
    s.listen(0, '127.0.0.1', () => { const p = (s.address() as net.AddressInfo).port; s.close(() => resolve(p)); });
  });
}

async function benchQemu(): Promise<Results> {
  const results: Results = { idle: [], disk: [], loaded: [] };
  let socket = path.join(work, 'qemu-0.qmp');
  const t0 = performance.now();
  let disk = diskMiB > 0 ? path.join(work, 'qemu-disk-0.raw') : undefined;
  if (disk) makeDisk(disk, diskMiB);
  const drive = (file: string | undefined) => (file ? ['-drive', `file=${file},format=raw,if=virtio`] : []);
  let vm = vmm('qemu-system-x86_64', [...qemuArgs(socket), ...drive(disk)]);
  await vm.waitForOutput(GUEST_PROMPT);
  console.log(`  qemu-tcg: at the prompt after ${((performance.now() - t0) / 1000).toFixed(1)} s`);
  await vm.pingPrompt();
  let qmp = await Qmp.connect(socket);
  let hop = 0;
  hops: for (const kind of KINDS) {
    if (kind === 'loaded') { startDirtier(vm, dirtyMiBs); await sleep(6000); }
    for (let i = 0; i < runs; i++) {
      hop++;
      const nextSocket = path.join(work, `qemu-${hop}.qmp`);
      const port = await freePort();
      // Block migration writes into the destination's own drive, which must exist with the disk's size.
      const target = kind === 'disk' ? path.join(work, `qemu-disk-${hop}.raw`) : disk;
      if (kind === 'disk') { fs.writeFileSync(target!, ''); fs.truncateSync(target!, diskMiB << 20); }
      const dest = vmm('qemu-system-x86_64', [...qemuArgs(nextSocket), ...drive(target), '-incoming', `tcp:127.0.0.1:${port}`]);
      const destQmp = await Qmp.connect(nextSocket);
      await qmp.execute('migrate-set-parameters', { 'downtime-limit': downtimeMs, 'max-bandwidth': 10 * 2 ** 30 });
      await qmp.execute('migrate-set-capabilities', { capabilities: [{ capability: 'block', state: kind === 'disk' }] });
      const previousDisk = disk;
      disk = target;
      await qmp.execute('migrate', { uri: `tcp:127.0.0.1:${port}` });
      let info: Record<string, unknown>;
      // QEMU shows its block migration's figures only while it runs: the last ones seen are kept.
      let diskSeen: Record<string, number> | undefined;
      for (;;) {
        info = await qmp.execute('query-migrate');
        if (info.disk) diskSeen = info.disk as Record<string, number>;
        if (info.status === 'completed') break;
        if (info.status === 'failed' || info.status === 'cancelled') throw new Error(`QEMU migrate: ${JSON.stringify(info)}`);
        await sleep(5);
      }
      const ram = info.ram as Record<string, number> | undefined;
      const blk = (info.disk as Record<string, number> | undefined)?.transferred ?? diskSeen?.total ?? 0;
      if (kind === 'disk' && sameFile(previousDisk!, target!) !== true) throw new Error(`QEMU's block migration: ${target} differs from ${previousDisk}`);
      results[kind].push({ totalMs: Number(info['total-time']), downtimeMs: Number(info.downtime), iterations: ram?.['dirty-sync-count'], mib: ((ram?.transferred ?? 0) + blk) / 2 ** 20, dirtyMiBs: (ram?.['dirty-pages-rate'] ?? 0) * 4096 / 2 ** 20 });
      console.log(`  qemu-tcg ${kind} #${i + 1}: total ${info['total-time']} ms, downtime ${info.downtime} ms, ${ram?.['dirty-sync-count']} syncs, ${((ram?.transferred ?? 0) / 2 ** 20).toFixed(1)} MiB of RAM${blk ? ` and ${(blk / 2 ** 20).toFixed(1)} MiB of disk` : ''} sent`);
      qmp.close();
      await vm.kill();
      vm = dest;
      qmp = destQmp;
      socket = nextSocket;
      for (;;) {
        const status = String((await qmp.execute('query-status')).status);
        if (status === 'running') break;
        if (status === 'paused' || status === 'postmigrate') await qmp.execute('cont');
        await sleep(2);
      }
      try {
        await vm.pingPrompt(QEMU_ANSWER_MS);
      } catch {
        // (session 24, quiet host: after its first loaded hop QEMU's guest spun at 100% CPU without a prompt, and the
        // bench died at its 600 s timeout without a summary; earlier sessions saw its guest panic there.) The hop's
        // figures stand; the hops after it cannot run, so QEMU's medians are over the hops it made.
        console.log(`  qemu-tcg ${kind} #${i + 1}: its guest did not answer at the destination within ${QEMU_ANSWER_MS / 1000} s of the hop; QEMU's remaining hops skipped`);
        figures.qemu_tcg_failed = `${kind} #${i + 1}: no prompt after the hop`;
        break hops;
      }
      if (kind === 'loaded') { const run = results[kind][results[kind].length - 1]; run.guestMiBs = await guestDirtyRate(vm); noteRates('qemu-tcg', run); }
    }
  }
  qmp.close();
  await vm.kill();
  return results;
}

const figures: Record<string, number | string> = { bench: 'migrate', engine: 'soft', reference: 'qemu-tcg', memory, runs, downtime_limit_ms: downtimeMs, dirty_mib_s: dirtyMiBs, disk_mib: diskMiB, pool: poolMode };
const ratio = (a: number, b: number) => (b > 0 ? a / b : NaN);
console.log(`migrate ${memory}, downtime limit ${downtimeMs} ms, loaded = ${dirtyMiBs} MiB/s dirtied:`);
const withRingzero = values.only !== 'qemu';
const none: Run[] = [{ totalMs: NaN, downtimeMs: NaN }];
const rz = withRingzero ? await benchRingzero() : { idle: none, disk: none, loaded: none };
for (const kind of KINDS) {
  figures[`ringzero_${kind}_total_ms`] = median(rz[kind].map((r) => r.totalMs));
  figures[`ringzero_${kind}_downtime_ms`] = median(rz[kind].map((r) => r.downtimeMs));
  figures[`ringzero_${kind}_mib`] = median(rz[kind].map((r) => r.mib ?? 0));
  figures[`ringzero_${kind}_dirty_mib_s`] = median(rz[kind].map((r) => r.dirtyMiBs ?? 0));
  if (kind === 'loaded') figures.ringzero_loaded_guest_mib_s = median(rz[kind].map((r) => r.guestMiBs ?? NaN));
  if (poolMode === 'abba') {
    for (const [which, v] of [['spare', true], ['new', false]] as const) {
      const rows = rz[kind].filter((r) => r.spare === v);
      figures[`ringzero_${kind}_downtime_ms_${which}`] = median(rows.map((r) => r.downtimeMs));
      figures[`ringzero_${kind}_total_ms_${which}`] = median(rows.map((r) => r.totalMs));
      console.log(`  ringzero ${kind}, ${rows.length} hops into a ${which === 'spare' ? 'spare VMM' : 'new process'}: downtime ${rows.map((r) => r.downtimeMs).join('/')} ms (median ${figures[`ringzero_${kind}_downtime_ms_${which}`]}), total ${rows.map((r) => r.totalMs.toFixed(0)).join('/')} ms`);
    }
  }
}
if (qemuPresent) {
  const q = await benchQemu();
  for (const kind of KINDS) {
    figures[`qemu_tcg_${kind}_total_ms`] = median(q[kind].map((r) => r.totalMs));
    figures[`qemu_tcg_${kind}_downtime_ms`] = median(q[kind].map((r) => r.downtimeMs));
    figures[`qemu_tcg_${kind}_mib`] = median(q[kind].map((r) => r.mib ?? 0));
    figures[`qemu_tcg_${kind}_dirty_mib_s`] = median(q[kind].map((r) => r.dirtyMiBs ?? 0));
    if (kind === 'loaded') figures.qemu_tcg_loaded_guest_mib_s = median(q[kind].map((r) => r.guestMiBs ?? NaN));
    figures[`ratio_${kind}_total`] = ratio(figures[`ringzero_${kind}_total_ms`] as number, figures[`qemu_tcg_${kind}_total_ms`] as number);
    figures[`ratio_${kind}_downtime`] = ratio(figures[`ringzero_${kind}_downtime_ms`] as number, figures[`qemu_tcg_${kind}_downtime_ms`] as number);
  }
}
for (const kind of KINDS) {
  const line = `${kind}: ringzero total ${(figures[`ringzero_${kind}_total_ms`] as number).toFixed(0)} ms, downtime ${(figures[`ringzero_${kind}_downtime_ms`] as number).toFixed(0)} ms`;
  console.log(qemuPresent
    ? `${line}; qemu-tcg total ${(figures[`qemu_tcg_${kind}_total_ms`] as number).toFixed(0)} ms, downtime ${(figures[`qemu_tcg_${kind}_downtime_ms`] as number).toFixed(0)} ms; ratio total ${(figures[`ratio_${kind}_total`] as number).toFixed(2)}x, downtime ${(figures[`ratio_${kind}_downtime`] as number).toFixed(2)}x`
    : line);
}
console.log('goal: downtime at most 50 ms idle, under 300 ms loaded');
console.log(JSON.stringify(figures));
process.exit(0);
