// The guest-visible gap after a snapshot restore, with and without the snapshot's hot-block list (issue 7,
// src/cpu/soft/hot-list.ts): the default guest with test/support/ticker.c (a counter every 10 ms, each value with the
// guest's clock) and a busybox loop beside it (a line every 20 passes), snapshotted once through the control socket,
// then restored into new VMM processes (`bin/ringzero run --restore`) in alternating order, one per mode:
// 0 (the list unused), after (translated beside the guest), before (translated before the guest runs), afterN/beforeN
// (the first N blocks only) (RINGZERO_RESTORE_HOT, RINGZERO_RESTORE_HOT_MAX).
// For each restore: the loop's passes by 0.5/1/2/4 s of the VMM's main-thread CPU after Machine.restore (schedstat
// sampled every 10 ms: a loaded host disturbs CPU time less than wall time); on the guest's clock as
// test/manager-migrate reads it, the interval across the restore (from the source's last value before the snapshot to
// the restored guest's first) and the longest interval in the first 1 s and 3 s after; Machine.restore's time
// (RINGZERO_RESTORE_TIMING), what the list did, and the VMM's process CPU at the end.
//
// --hops N instead: the restored guest migrates N times between VMM processes (`run --incoming`, `migrate
// --control-socket`), the hot-block list on and off in turn (--no-hot-blocks), as issue 7's continuity acceptance reads
// it: values missing across the switch-over, the measured downtime against how long the guest stood still (the step of
// arrival time - guest time, as test/manager-migrate reads it), the interval across on the guest's clock (split, from
// the VMMs' RINGZERO_MIGRATE_HOT_STATS lines, into the part the source ran after its last value before it paused and
// the part the destination ran from its resume to its first value), the gap on the console, the destination's
// longest interval in its first 3 s and its first ten, its main-thread and process CPU in its first second (the rest
// of the process is V8's compiler and GC threads), and the loop's passes by 250/500/1000 ms of its main-thread CPU
// (how fast it runs the guest whatever share of the cores a loaded host leaves it). --bins A,B alternates the
// destination's ringzero between two checkouts (A/B pairs of a change); RINGZERO_RESUME_CPU_PROF=DIR profiles the
// first second after each resume (src/vmm/resume-profile.ts). Each hop's gap on the console is split from both VMMs'
// timelines and console stamps on one clock (test/support/gap-split.ts: the source's tail, the pause to the state at
// the destination, its restore, "loaded" to "go", "go" to the guest's first instruction, that to the UART's first byte
// of the first value, the UART to the console write, the delivery here), with the medians over the hops at the end.
// A --bins entry may be a small .mjs that sets environment variables and imports bin/ringzero (an A/B of a switch).
// --pool [abba|on|off] (with --hops): a hop's destination is a spare VMM (`ringzero vmm-spare`, src/vmm/spare.ts, as
// the daemon's `--vmm-pool` keeps them), started after the previous hop was measured, warmed up for --pool-warm-up-ms
// of CPU (default 1500) at its low priority, and handed the `run --incoming` command line once ready, or a new process
// as without it: abba (the default) alternates spare, new, new, spare, ...; each hop's line says which.
//
//   node --import tsx bench/restore-hot.ts [--pairs 3] [--seconds 6] [--modes 0,after] [--before] [--no-loop] [--warm 20] [--keep DIR]
//     [--hops N [--hot on|off|alt] [--bins A,B] [--hot-blocks N,M] [--pool abba|on|off] [--pool-warm-up-ms MS] [--pool-nice N]] [--sessions]
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { initrdWithPrograms } from './support/initramfs.ts';
import { RINGZERO, ROOT, median, requireImage, positiveInt, checkBenchOptions, requireFreshBundle } from './support/common.ts';
import { gapSplit } from '../test/support/gap-split.ts';
import { Spare } from '../src/manager/pool.ts';
import { spareReady } from './support/vmm-process.ts';

const args = process.argv.slice(2);
checkBenchOptions(import.meta.url, args, ['--pairs', '--seconds', '--warm', '--modes', '--before', '--no-loop', '--keep', '--dump',
  '--hops', '--hot', '--bins', '--hot-blocks', '--sessions', '--pool', '--pool-warm-up-ms', '--pool-nice']);
const opt = (name: string): string | undefined => { const i = args.indexOf(name); return i >= 0 ? args[i + 1] : undefined; };
const pairs = positiveInt('--pairs', opt('--pairs') ?? '3');
const seconds = positiveInt('--seconds', opt('--seconds') ?? '6');
const warm = positiveInt('--warm', opt('--warm') ?? '20');
// --modes 0,after,before,after256,0/nice0 (afterN: beside the guest, the first N blocks of the list only; /niceS, /boostN below)
const modes = (opt('--modes') ?? (args.includes('--before') ? '0,after,before' : '0,after')).split(',');
// (a mode may end in /niceS: RINGZERO_RESUME_NICE_S=S, how long the restored VMM's other threads run at nice 19 and
// its main thread boosted; and/or /boostN: RINGZERO_RESUME_BOOST=N, the main thread's nice value meanwhile)
const envOf = (spec: string): NodeJS.ProcessEnv => {
  const boost = /\/boost(-?\d+)/.exec(spec);
  if (boost) return { ...envOf(spec.replace(boost[0], '')), RINGZERO_RESUME_BOOST: boost[1] };
  const [mode, nice] = spec.split('/nice');
  if (nice !== undefined) return { ...envOf(mode), RINGZERO_RESUME_NICE_S: nice };
  const m = /^(after|before)(\d+)$/.exec(mode);
  return m ? { RINGZERO_RESTORE_HOT: m[1], RINGZERO_RESTORE_HOT_MAX: m[2] } : { RINGZERO_RESTORE_HOT: mode };
};
const loop = !args.includes('--no-loop');
// --hops: --hot on|off|alt (the hot-block list at every hop, none, or on and off in turn: the default); --bins A,B
// (each hop's destination VMM runs these ringzero launchers in turn, e.g. this tree's and another checkout's, for
// A/B pairs of a change: the source of each hop is the previous hop's destination)
const hotMode = opt('--hot') ?? 'alt';
if (!['on', 'off', 'alt'].includes(hotMode)) throw new Error('--hot is on, off or alt');
const bins = (opt('--bins') ?? RINGZERO).split(',').map((b) => path.resolve(b));
for (const bin of bins) requireFreshBundle(bin);
// --hops: --hot-blocks N[,M] (the list's size at each hop, in turn; default the migrate command's)
const hotSizes = opt('--hot-blocks')?.split(',').map((n) => positiveInt('--hot-blocks', n));
// --sessions: each VMM in a session of its own, as the daemon starts them (src/manager/manager.ts): with autogroups on
// (sched(7)) each is then a scheduling group of its own, as under the daemon, instead of sharing the bench's
const sessions = args.includes('--sessions');
// --pool: which hops' destinations are spare VMMs (abba: spare, new, new, spare, ...; on; off), warmed up for
// --pool-warm-up-ms of main-thread CPU
const poolMode = args.includes('--pool') ? (/^(abba|on|off)$/.test(opt('--pool') ?? '') ? opt('--pool')! : 'abba') : 'off';
const poolWarmUpMs = Number(opt('--pool-warm-up-ms') ?? 1500);
// (--pool-nice: the spare's priority while it warms up, default the daemon's (10); the hop waits for its warm-up to end
// before it starts, so this sets only how long the bench waits on a loaded host, not what it measures)
const poolNice = opt('--pool-nice') !== undefined ? Number(opt('--pool-nice')) : undefined;
const spareHop = (h: number) => poolMode === 'on' || (poolMode === 'abba' && [true, false, false, true][(h - 1) % 4]);

interface Tick { n: number; g: number; at: number }
const TICK = /C(\d+) (\d+)\r?$/;

class Vmm {
  readonly child: ChildProcess;
  out = '';
  err = '';
  ticks: Tick[] = [];
  /** The busy loop's lines (one per 20 passes) as they came, with the VMM's main-thread CPU (ms) then. */
  loops: number[] = [];
  /** Main-thread CPU (ms, schedstat) sampled every 10 ms: [cpu, loop lines so far]. */
  samples: [number, number][] = [];
  /** [bench's performance.now(), main-thread CPU ms, process CPU ms] every 10 ms (--hops). */
  cpuAt: [number, number, number][] = [];
  private sampler = setInterval(() => {
    try {
      const main = this.mainCpuMs();
      this.samples.push([main, this.loops.length]);
      this.cpuAt.push([performance.now(), main, this.cpuMs()]);
    } catch { /* gone */ }
  }, 10);
  /** Main-thread and process CPU (ms) used between the bench's times `from` and `to` (performance.now()). */
  cpuBetween(from: number, to: number): { main: number; all: number } {
    const at = (t: number) => this.cpuAt.find((s) => s[0] >= t) ?? this.cpuAt[this.cpuAt.length - 1];
    const a = at(from), b = at(to);
    return { main: b[1] - a[1], all: b[2] - a[2] };
  }
  private partial = '';
  readonly t0 = performance.now();
  readonly exited: Promise<unknown>;
  /** A VMM of `bin run ...argv`, or (`spare`) a spare VMM that becomes one when taken. */
  constructor(argv: string[], env: NodeJS.ProcessEnv = {}, bin = RINGZERO, readonly spare?: Spare) {
    this.child = spare?.child ?? spawn(process.execPath, [bin, 'run', ...argv], { stdio: ['pipe', 'pipe', 'pipe'], env: { ...process.env, ...env }, detached: sessions });
    this.child.stdout!.setEncoding('latin1').on('data', (s: string) => {
      const at = performance.now();
      this.out += s;
      const lines = (this.partial + s).split('\n');
      this.partial = lines.pop()!;
      for (const l of lines) {
        const m = TICK.exec(l);
        if (m) this.ticks.push({ n: Number(m[1]), g: Number(m[2]) / 1000, at });
        else if (/^L\d+\r?$/.test(l)) this.loops.push(at);
      }
    });
    this.child.stderr!.setEncoding('utf8').on('data', (s: string) => { this.err += s; });
    this.exited = new Promise((resolve) => this.child.once('exit', resolve));
  }
  mainCpuMs(): number {
    return Number(fs.readFileSync(`/proc/${this.child.pid}/task/${this.child.pid}/schedstat`, 'utf8').split(' ')[0]) / 1e6;
  }
  /** Loop passes (x20) done by the time the main thread had used `ms` of CPU past `from`. */
  passesAt(from: number, ms: number): number {
    let n = 0;
    for (const [c, k] of this.samples) if (c - from <= ms) n = k;
    return n * 20;
  }
  write(s: string): void { this.child.stdin!.write(s); }
  /** utime + stime of the process (ms). */
  cpuMs(): number {
    const f = fs.readFileSync(`/proc/${this.child.pid}/stat`, 'utf8').split(') ')[1].split(' ');
    return (Number(f[11]) + Number(f[12])) * 1000 / 100;
  }
  async kill(): Promise<void> {
    clearInterval(this.sampler);
    if (this.child.exitCode === null && this.child.signalCode === null) { this.child.kill('SIGKILL'); await this.exited; }
  }
}

async function until(what: string, cond: () => boolean, ms: number): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

function control(socket: string, cmd: unknown): Promise<Record<string, unknown>> {
  return new Promise((resolve, reject) => {
    const c = net.connect(socket);
    let text = '';
    c.on('connect', () => c.write(JSON.stringify(cmd) + '\n'));
    c.setEncoding('utf8').on('data', (s: string) => { text += s; const i = text.indexOf('\n'); if (i >= 0) { c.destroy(); resolve(JSON.parse(text.slice(0, i))); } });
    c.on('error', reject);
  });
}

const image = requireImage('restore-hot');
const initrd = initrdWithPrograms(image.initrd, [path.join(ROOT, 'test', 'support', 'ticker.c')]);
const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'rz-restore-hot-'));
// --keep DIR: the snapshot (and the source's values, DIR/before.json) go to DIR and are reused when DIR holds them
const keep = opt('--keep');
const snap = keep !== undefined ? path.resolve(keep) : path.join(dir, 'snap');
const reuse = keep !== undefined && fs.existsSync(path.join(snap, 'before.json'));
const sock = path.join(dir, 'control.sock');
const src = new Vmm(reuse ? ['--help'] : ['--kernel', image.kernel, '--initrd', initrd, '--memory', '256M', '--control-socket', sock], { RINGZERO_SNAPSHOT_HOT: '1' });
try {
  let before: Map<number, number>;
  if (reuse) before = new Map(JSON.parse(fs.readFileSync(path.join(snap, 'before.json'), 'utf8')) as [number, number][]);
  else {
  await until('the shell', () => src.out.includes('~ # '), 300_000);
  src.write('PS1=\'\'\n');
  if (loop) src.write('(i=0; while :; do i=$((i+1)); [ $((i%20)) = 0 ] && echo L$i; done) &\n');
  src.write('ticker &\n');
  await until('the counter', () => src.ticks.length > 0 && src.ticks[src.ticks.length - 1].g >= warm * 1000, 600_000);
  const t = performance.now();
  const answer = await control(sock, { cmd: 'snapshot', dir: snap });
  if (answer.ok !== true) throw new Error(`snapshot: ${JSON.stringify(answer)}`);
  const snapMs = performance.now() - t;
  await new Promise((r) => setTimeout(r, 300));
  await src.kill();
  before = new Map(src.ticks.map((k) => [k.n, k.g]));
  process.stdout.write(`snapshot ${snapMs.toFixed(0)} ms (control-socket round trip)\n`);
  if (keep !== undefined) fs.writeFileSync(path.join(snap, 'before.json'), JSON.stringify([...before]));
  }
  const state = JSON.parse(fs.readFileSync(path.join(snap, 'state.json'), 'utf8')) as { body: { hot?: { blocks: number; data: string } } };
  process.stdout.write(`hot list ${state.body.hot ? `${state.body.hot.blocks} blocks, ${(state.body.hot.data.length / 1024).toFixed(0)} KiB` : 'none'}; load ${os.loadavg()[0].toFixed(1)}\n`);

  const hops = opt('--hops');
  if (hops !== undefined) {
    await migrations(snap, positiveInt('--hops', hops), dir);
    process.exit(0);
  }
  const results = new Map<string, Record<string, number>[]>(modes.map((m) => [m, []]));
  for (let p = 0; p < pairs; p++) {
    for (const mode of (p % 2 === 0 ? modes : [...modes].reverse())) {
      const r = new Vmm(['--restore', snap], { ...envOf(mode), RINGZERO_RESTORE_TIMING: '1' });
      try {
        await until('the restored counter', () => r.ticks.length > 1 && r.ticks[r.ticks.length - 1].g >= r.ticks[0].g + seconds * 1000 && (r.samples.at(-1)?.[0] ?? 0) > 4500 + (r.samples[0]?.[0] ?? 0), 300_000);
        const cpu = r.cpuMs();
        const c = r.ticks, first = c[0], prevG = before.get(first.n - 1);
        if (prevG === undefined) throw new Error(`C${first.n - 1} not seen before the snapshot`);
        for (let k = 1; k < c.length; k++) if (c[k].n !== c[k - 1].n + 1) throw new Error(`a value missing after C${c[k - 1].n}`);
        const win = (ms: number) => { const w = c.filter((k) => k.g <= first.g + ms); return Math.max(0, ...w.slice(1).map((k, i) => k.g - w[i].g)); };
        const timing = /restore timing (\{.*\})/.exec(r.err);
        const hot = /restore: hot blocks (\{.*\})/.exec(r.err);
        const h = hot ? JSON.parse(hot[1]) as Record<string, number> : undefined;
        const tm = timing ? JSON.parse(timing[1]) as { startCpuMs: number; restoreCpuMs: number } : undefined;
        const from = tm ? tm.startCpuMs + tm.restoreCpuMs : 0;
        const row = {
          p500: r.passesAt(from, 500), p1000: r.passesAt(from, 1000), p2000: r.passesAt(from, 2000), p4000: r.passesAt(from, 4000),
          across: first.g - prevG, max1s: win(1000), max3s: win(3000), values1s: c.filter((k) => k.g < first.g + 1000).length,
          firstWallMs: first.at - r.t0, restoreMs: timing ? JSON.parse(timing[1]).restoreMs : NaN, cpuMs: cpu,
          installed: h?.installed ?? 0, hotMs: h?.ms ?? 0, hotWallMs: h?.wallMs ?? 0,
        };
        results.get(mode)!.push(row);
        process.stdout.write(`${mode.padEnd(6)} passes at 0.5/1/2/4 s of main-thread CPU ${row.p500}/${row.p1000}/${row.p2000}/${row.p4000}; across ${row.across.toFixed(0)} ms, max interval 1 s ${row.max1s.toFixed(0)} / 3 s ${row.max3s.toFixed(0)} ms, ${row.values1s} values in 1 s; first value ${row.firstWallMs.toFixed(0)} ms after spawn; Machine.restore ${row.restoreMs} ms; process CPU ${cpu} ms over ${seconds} s; list: ${hot ? hot[1] : '-'}; load ${os.loadavg()[0].toFixed(1)}\n`);
      } finally {
        await r.kill();
      }
    }
  }
  for (const [mode, rows] of results) {
    const m = (k: string) => median(rows.map((r) => r[k])).toFixed(0);
    process.stdout.write(`median ${mode.padEnd(6)} passes ${m('p500')}/${m('p1000')}/${m('p2000')}/${m('p4000')}, across ${m('across')} ms, max 1 s ${m('max1s')} ms, max 3 s ${m('max3s')} ms, values in 1 s ${m('values1s')}, restore ${median(rows.map((r) => r.restoreMs)).toFixed(1)} ms, CPU ${m('cpuMs')} ms\n`);
  }
} finally {
  await src.kill();
  fs.rmSync(dir, { recursive: true, force: true });
}

/** --hops: the guest restored from `snap` migrates `hops` times between VMM processes, the hot-block list on and off in turn. */
async function migrations(snap: string, hops: number, dir: string): Promise<void> {
  let ctl = path.join(dir, 'c0.sock');
  process.env.RINGZERO_MIGRATE_HOT_STATS = '1';
  let src = new Vmm(['--restore', snap, '--control-socket', ctl]);
  const all = [src];
  // (--pool: the spare for the next hop that takes one, started once the hop before it has been measured)
  const newSpare = (bin: string) => {
    const v = new Vmm([], {}, bin, Spare.spawn({ file: process.execPath, args: [bin] }, { warmUpMs: poolWarmUpMs, ...(poolNice !== undefined ? { nice: poolNice } : {}), stdio: ['pipe', 'pipe', 'pipe'], detached: sessions, env: process.env }));
    all.push(v);
    return v;
  };
  let spare = spareHop(1) ? newSpare(bins[0]) : undefined;
  const splits: Record<string, number | undefined>[] = [];
  try {
    await until('the restored counter', () => src.ticks.length > 0 && src.ticks[src.ticks.length - 1].g > src.ticks[0].g + 10_000, 300_000);
    for (let h = 1; h <= hops; h++) {
      const hot = hotMode === 'alt' ? h % 2 === 1 : hotMode === 'on';
      const hotSize = hot && hotSizes !== undefined ? hotSizes[(h - 1) % hotSizes.length] : undefined;
      const bin = bins[(h - 1) % bins.length];
      const nctl = path.join(dir, `c${h}.sock`);
      let dst: Vmm;
      let spareNote = '';
      if (spareHop(h)) {
        dst = spare ?? newSpare(bin);
        spare = undefined;
        const d = dst;
        spareNote = `; destination a spare VMM (${await spareReady(dst.spare!, () => d.err)})`;
        await dst.spare!.take(['run', '--incoming', 'tcp:127.0.0.1:0', '--control-socket', nctl]);
      } else {
        dst = new Vmm(['--incoming', 'tcp:127.0.0.1:0', '--control-socket', nctl], {}, bin);
        all.push(dst);
        spareNote = '; destination a new process';
      }
      let port = 0;
      await until('the destination to listen', () => { const m = /incoming migration on 127\.0\.0\.1:(\d+)/.exec(dst.err); if (m) port = Number(m[1]); return port > 0; }, 60_000);
      // (a child process, not execFileSync: the VMMs' consoles must be read meanwhile, with their arrival times)
      const answer = await new Promise<string>((resolve, reject) => {
        const c = spawn(process.execPath, [RINGZERO, 'migrate', '--control-socket', ctl, '--to', `127.0.0.1:${port}`, ...(hot ? (hotSize !== undefined ? ['--hot-blocks', String(hotSize)] : []) : ['--no-hot-blocks'])]);
        let o = '', e = '';
        c.stdout.on('data', (d) => { o += d; });
        c.stderr.on('data', (d) => { e += d; });
        c.on('exit', (code) => (code === 0 ? resolve(o) : reject(new Error(`migrate: ${e}`))));
      });
      const res = JSON.parse(answer.trim().split('\n').pop()!) as Record<string, number | undefined>;
      await until('3 s of the destination\'s counter', () => dst.ticks.length > 1 && dst.ticks[dst.ticks.length - 1].g > dst.ticks[0].g + 3000, 300_000);
      // (and its first 1000 ms of main-thread CPU from its first value, for the loop's passes below)
      const t1 = dst.ticks[0].at;
      await until('1 s of the destination\'s main-thread CPU', () => dst.cpuBetween(t1, performance.now()).main >= 1050, 300_000);
      const before = src.ticks, after = dst.ticks, last = before[before.length - 1], first = after[0];
      const bw = before.filter((t) => t.g >= last.g - 3000), aw = after.filter((t) => t.g <= first.g + 3000);
      const floor = (w: Tick[]) => Math.min(...w.map((t) => t.at - t.g));
      const maxIv = (w: Tick[]) => Math.max(...w.slice(1).map((t, k) => t.g - w[k].g));
      const row = { downtime: res.downtimeMs!, stood: floor(aw) - floor(bw), across: first.g - last.g, console: first.at - last.at, destMax: maxIv(aw), total: res.totalMs! };
      // (RINGZERO_MIGRATE_HOT_STATS=1: when the source's guest clock stopped and the destination's started, in epoch
      // ms: how much of the interval across ran at the source after its last value and how much at the destination
      // before its first, both on the guest's clock, the latter with the console's delivery delay)
      const epoch = (v: Vmm, what: string) => Number(new RegExp(`migration: ${what} at ([\\d.]+) \\(epoch ms\\)`).exec(v.err)?.[1]);
      const bench = (t: Tick) => performance.timeOrigin + t.at;
      const atSource = epoch(src, 'paused') - bench(last), atDest = bench(first) - epoch(dst, 'resumed');
      // (the destination's CPU in its first second after the resume: its main thread against the whole process, whose
      // other threads are V8's compilers and GC; 10 ms samples, /proc stat's in 10 ms ticks)
      const resumedAt = epoch(dst, 'resumed') - performance.timeOrigin, cpu1 = dst.cpuBetween(resumedAt, resumedAt + 1000);
      // (the destination's main-thread CPU from the resume to its 1st, 10th and 50th value: what its cold start costs
      // in work, which a loaded host stretches into wall time by its share of the cores)
      const cpuTo = (k: number) => after[k - 1] ? dst.cpuBetween(resumedAt, after[k - 1].at).main : NaN;
      // (the busy loop's passes by 250/500/1000 ms of the destination's main-thread CPU from its first value: how fast
      // it runs the guest, whatever share of the cores the host leaves it; from the first value, which an older
      // destination without "resumed at" has too)
      const firstCpu = dst.cpuBetween(0, first.at).main + (dst.cpuAt[0]?.[1] ?? 0);
      const passes = [250, 500, 1000].map((ms) => dst.passesAt(firstCpu, ms));
      // (the destination's first console output after the resume: where its main thread's time went meanwhile)
      const firstWrite = /first console write at ([\d.]+) \(epoch ms\), ([\d.]+) ms after the resume: main thread CPU ([\d.-]+) ms, run-queue wait ([\d.-]+) ms, blocked ([\d.-]+) ms/.exec(dst.err);
      process.stdout.write(`hop ${h}${bins.length > 1 ? ` into ${bin}` : ''}${spareNote}, hot-block list ${hot ? `on${hotSize !== undefined ? ` at most ${hotSize}` : ''} (${res.hotBlocks} blocks, ${res.hotMs} ms to list, ${res.hotTranslated} translated there)` : 'off'}: C${last.n} -> C${first.n}`
        + ` (${first.n - last.n - 1} missing); downtime ${row.downtime} ms ${JSON.stringify((res as Record<string, unknown>).downtimeParts ?? {})}, the guest stood still ${row.stood.toFixed(0)} ms; across on its clock ${row.across.toFixed(0)} ms`
        + ` (${atSource.toFixed(0)} at the source after its last value, ${atDest.toFixed(0)} at the destination to its first)`
        + ` (the source's longest in its last 10 s ${maxIv(before.filter((t) => t.g >= last.g - 10_000)).toFixed(0)} ms), on the console ${row.console.toFixed(0)} ms;`
        + ` the destination's CPU in its first 1 s: main thread ${cpu1.main.toFixed(0)} ms, process ${cpu1.all.toFixed(0)} ms;`
        + ` its main thread's CPU to its 1st/10th/50th value ${cpuTo(1).toFixed(0)}/${cpuTo(10).toFixed(0)}/${cpuTo(50).toFixed(0)} ms;`
        + ` loop passes by 250/500/1000 ms of its main-thread CPU from its first value ${passes.join('/')};`
        + ` the destination's longest interval in its first 3 s ${row.destMax.toFixed(0)} ms (its first ten: ${after.slice(1, 11).map((t, k) => (t.g - after[k].g).toFixed(0)).join(' ')});`
        + ` migration ${row.total} ms;${firstWrite ? ` resume to its first console output ${firstWrite[2]} ms (main thread CPU ${firstWrite[3]}, run-queue wait ${firstWrite[4]}, blocked ${firstWrite[5]} ms), that output here ${(bench(first) - Number(firstWrite[1])).toFixed(0)} ms later;` : ''} load ${os.loadavg()[0].toFixed(1)}; resumed at ${epoch(dst, 'resumed')} (epoch ms)\n`);
      // (both VMMs' timelines and console stamps, one clock: where the gap on the console goes, src/vmm/console-stamps.ts)
      const split = gapSplit(src.err, dst.err, last.n, first.n, bench(last), bench(first));
      if (split) process.stdout.write(`hop ${h} split (ms): ${JSON.stringify(split)}\n`);
      splits.push({ ...(split ?? {}), downtime: row.downtime, stood: Math.round(row.stood), across: Math.round(row.across), console: Math.round(row.console), cpuTo10: Math.round(cpuTo(10)), spare: poolMode === 'off' ? undefined : spareHop(h) ? 1 : 0 });
      // (the next spare starts warming now, after this hop was measured, as the daemon's pool refills after a take)
      if (h < hops && spareHop(h + 1) && !spare) spare = newSpare(bins[h % bins.length]);
      // (--dump DIR: each hop's destination's console and stderr, for V8 traces given through RINGZERO_V8_FLAGS)
      const dump = opt('--dump');
      if (dump !== undefined) {
        fs.mkdirSync(dump, { recursive: true });
        fs.writeFileSync(path.join(dump, `hop${h}.out`), dst.out);
        fs.writeFileSync(path.join(dump, `hop${h}.err`), dst.err);
      }
      await src.kill();
      src = dst;
      ctl = nctl;
    }
    const keys = [...new Set(splits.flatMap((x) => Object.keys(x)))].filter((k) => k !== 'spare');
    const medians = (rows: typeof splits) => JSON.stringify(Object.fromEntries(keys.map((k) => [k, Math.round(median(rows.map((x) => x[k]).filter((v): v is number => Number.isFinite(v))) * 10) / 10])));
    process.stdout.write(`medians over ${splits.length} hops (ms): ${medians(splits)}; load ${os.loadavg()[0].toFixed(1)}\n`);
    if (poolMode === 'abba') {
      for (const [which, v] of [['a spare', 1], ['a new process', 0]] as const) {
        const rows = splits.filter((x) => x.spare === v);
        process.stdout.write(`medians over the ${rows.length} hops into ${which} (ms): ${medians(rows)}\n`);
      }
    }
    process.stdout.write(`${JSON.stringify({ bench: 'restore-hot', hops: splits })}\n`);
  } finally {
    for (const v of all) await v.kill();
  }
}
