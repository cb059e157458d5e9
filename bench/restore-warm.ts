// bench/restore-warm: how fast a restored guest runs in its first seconds, with and without the snapshot's hot-block
// list (src/cpu/soft/warm.ts; RINGZERO_WARM=0 ignores it), on the software engine (issue 7: a restored or migrated
// VM should run at full speed at once).
//
//   node --import tsx bench/restore-warm.ts [--pairs 3] [--cpu-seconds 3] [--memory 256M] [--bin PATH] [--snapshot DIR | --keep DIR]
//
// The default guest boots to its shell in a ringzero VMM, runs a CPU-bound busybox loop that prints every 100th
// 10th iteration (`i=0; while :; do i=$((i+1)); [ $((i%10)) = 0 ] && echo c$i; done`) for 4 s, so its code is hot, and
// is snapshotted through the control socket. Then, in interleaved pairs (cold, warm, warm, cold, ... on a shared host),
// a fresh VMM restores the snapshot (`ringzero run --restore`) and runs until its main thread has used --cpu-seconds of
// CPU after the restore (or 60 s). The loop's progress (iterations, from the console) is read against that main-thread
// CPU (sampled every 10 ms), which a loaded host stretches much less than wall time: iterations done in the first
// 0.25, 0.5, 1 and 2 CPU-seconds after the end of Machine.restore (the VMM's RINGZERO_RESTORE_TIMING line), the steady
// rate (iterations per CPU-second over the last one), the CPU time until the rate first reaches 90% of it (0.25 s
// windows); and against wall time at 0.5, 1 and 2 s; plus the restore's own time.
// There is no QEMU side: this measures ringzero against itself (QEMU's TCG also starts cold after -incoming).
// Prints the figures per run and the medians, then one JSON line.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { findDefaultImage, GUEST_PROMPT } from '../src/image/build.ts';
import { DEFAULT_CMDLINE } from '../src/vmm/config.ts';
import { controlRequest } from '../src/vmm/control.ts';
import { median } from './support/common.ts';
import { killAllVmms, VmmProcess } from './support/vmm-process.ts';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const { values } = parseArgs({
  options: {
    pairs: { type: 'string', default: '3' },
    'cpu-seconds': { type: 'string', default: '3' },
    memory: { type: 'string', default: '256M' },
    bin: { type: 'string', default: path.join(root, 'bin', 'ringzero') },
    /** Restore this snapshot (taken by an earlier run with --keep) instead of booting and taking one. */
    snapshot: { type: 'string' },
    /** Keep the snapshot taken in this directory. */
    keep: { type: 'string' },
  },
});
const pairs = Number(values.pairs);
const cpuSeconds = Number(values['cpu-seconds']);
const image = findDefaultImage();
if (!image) {
  console.error('bench/restore-warm: no default image; run `bin/ringzero image build` first');
  process.exit(2);
}
const work = fs.mkdtempSync(path.join(os.tmpdir(), 'ringzero-bench-warm-'));
process.on('exit', () => {
  killAllVmms();
  fs.rmSync(work, { recursive: true, force: true });
});
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const vmm = (args: string[], env?: Record<string, string>) => new VmmProcess(values.bin!, args, 600_000, env);
const EVERY = 10;
const LOOP = `i=0; while :; do i=$((i+1)); [ $((i%${EVERY})) = 0 ] && echo c$i; done`;

/** Main-thread CPU of `pid` (ms, its schedstat). */
function mainThreadCpuMs(pid: number): number {
  return Number(fs.readFileSync(`/proc/${pid}/task/${pid}/schedstat`, 'utf8').split(' ')[0]) / 1e6;
}

interface Run {
  warm: boolean;
  restoreMs: number;
  /** Iterations done 0.5, 1 and 2 s (wall) after the restore. */
  at05: number; at1: number; at2: number;
  /** Iterations done in the first 0.25, 0.5, 1 and 2 s of main-thread CPU after the restore. */
  cpu025: number; cpu05: number; cpu1: number; cpu2: number;
  /** Iterations per main-thread CPU-second over the last one, and the CPU-seconds until the rate first reached 90% of it. */
  steady: number;
  toSteady: number;
  /** Wall seconds the run took. */
  wall: number;
}

async function restoreRun(dir: string, warm: boolean): Promise<Run> {
  const lines: { t: number; v: number }[] = [];
  const env: Record<string, string> = { RINGZERO_RESTORE_TIMING: '1', ...(warm ? {} : { RINGZERO_WARM: '0' }) };
  const p = vmm(['run', '--restore', dir], env);
  let buf = '';
  p.child.stdout!.on('data', (s: string) => {
    const t = performance.timeOrigin + performance.now();
    buf += s;
    const parts = buf.split('\n');
    buf = parts.pop()!;
    for (const l of parts) { const m = /^c(\d+)\r?$/.exec(l); if (m) lines.push({ t, v: Number(m[1]) }); }
  });
  await p.waitFor(() => /restore timing \{/.test(p.err), 'the restore timing line');
  const r = JSON.parse(/ringzero: restore timing (\{.*\})/.exec(p.err)![1]) as { timeOrigin: number; startMs: number; restoreMs: number; startCpuMs: number; restoreCpuMs: number };
  const t0 = r.timeOrigin + r.startMs + r.restoreMs;
  const cpu0 = r.startCpuMs + r.restoreCpuMs;
  // (main-thread CPU samples: [CPU ms since the restore, last iteration count printed by then])
  const samples: [number, number][] = [];
  const wall0 = performance.now();
  for (;;) {
    let c: number;
    try { c = mainThreadCpuMs(p.child.pid!) - cpu0; } catch { break; }
    samples.push([c, lines.length > 0 ? lines[lines.length - 1].v : NaN]);
    if (c >= cpuSeconds * 1000 || performance.now() - wall0 > 60_000) break;
    await sleep(10);
  }
  const wall = (performance.now() - wall0) / 1000;
  await p.kill();
  if (lines.length < 2) throw new Error(`no progress printed:\n${p.out.slice(-500)}\n${p.err.slice(-500)}`);
  const v0 = lines[0].v - EVERY; // (the first line after the restore: the loop was at most EVERY iterations before it)
  const at = (s: number) => { let v = v0; for (const l of lines) if (l.t <= t0 + s * 1000) v = l.v; return v - v0; };
  const atCpu = (s: number) => { let v = v0; for (const [c, x] of samples) if (c <= s * 1000 && !Number.isNaN(x)) v = x; return v - v0; };
  const end = Math.min(cpuSeconds, samples[samples.length - 1][0] / 1000);
  const steady = atCpu(end) - atCpu(end - 1);
  let toSteady = NaN;
  for (let s = 0; s + 0.25 <= end; s += 0.25) {
    if ((atCpu(s + 0.25) - atCpu(s)) / 0.25 >= 0.9 * steady) { toSteady = s + 0.25; break; }
  }
  return { warm, restoreMs: r.restoreMs, at05: at(0.5), at1: at(1), at2: at(2), cpu025: atCpu(0.25), cpu05: atCpu(0.5), cpu1: atCpu(1), cpu2: atCpu(2), steady, toSteady, wall };
}

const socket = path.join(work, 'vm.sock');
const dir = values.snapshot ?? values.keep ?? path.join(work, 'snap');
console.log(`bench/restore-warm: ${values.bin}, ${values.memory}, ${pairs} pairs of restores run for ${cpuSeconds} main-thread CPU-seconds`);
if (!values.snapshot) {
  const vm = vmm(['run', '--engine', 'soft', '--memory', values.memory!, '--cmdline', DEFAULT_CMDLINE, '--control-socket', socket]);
  await vm.waitForOutput(GUEST_PROMPT);
  await vm.pingPrompt();
  vm.type(LOOP);
  await vm.waitFor(() => /c\d+00\r?\n/.test(vm.out), 'the loop printing');
  await sleep(4000);
  const answer = await controlRequest(socket, { cmd: 'snapshot', dir }, 600_000);
  if (answer.ok !== true) throw new Error(`snapshot: ${JSON.stringify(answer)}`);
  await vm.kill();
}
{
  const state = JSON.parse(fs.readFileSync(path.join(dir, 'state.json'), 'utf8')) as { body: { warm?: { blocks: number; file: string } } };
  const w = state.body.warm;
  console.log(`snapshot: state.json ${fs.statSync(path.join(dir, 'state.json')).size} bytes, hot-block list ${w ? `${w.blocks} blocks, ${fs.statSync(path.join(dir, path.basename(w.file))).size} bytes` : 'none'}`);
}
const runs: Run[] = [];
for (let i = 0; i < pairs; i++) {
  for (const warm of i % 2 === 0 ? [false, true] : [true, false]) {
    const r = await restoreRun(dir, warm);
    runs.push(r);
    console.log(`  ${warm ? 'warm' : 'cold'}: restore ${r.restoreMs.toFixed(1)} ms; iterations at 0.25/0.5/1/2 CPU-s ${r.cpu025}/${r.cpu05}/${r.cpu1}/${r.cpu2}, ` +
      `steady ${r.steady}/CPU-s, 90% of it after ${r.toSteady} CPU-s; at 0.5/1/2 s wall ${r.at05}/${r.at1}/${r.at2} (run ${r.wall.toFixed(1)} s wall)`);
  }
}
const summary = (warm: boolean) => {
  const rs = runs.filter((r) => r.warm === warm);
  const med = (f: (r: Run) => number) => median(rs.map(f));
  return {
    restoreMs: med((r) => r.restoreMs), cpu025: med((r) => r.cpu025), cpu05: med((r) => r.cpu05), cpu1: med((r) => r.cpu1), cpu2: med((r) => r.cpu2),
    steady: med((r) => r.steady), toSteady: med((r) => r.toSteady), at05: med((r) => r.at05), at1: med((r) => r.at1), at2: med((r) => r.at2),
  };
};
const cold = summary(false), warm = summary(true);
const x = (a: number, b: number) => (b > 0 ? `${(a / b).toFixed(2)}x` : 'n/a');
console.log(`medians cold: ${JSON.stringify(cold)}`);
console.log(`medians warm: ${JSON.stringify(warm)}`);
console.log(`warm/cold: iterations in the first 0.25/0.5/1/2 CPU-s ${x(warm.cpu025, cold.cpu025)}/${x(warm.cpu05, cold.cpu05)}/${x(warm.cpu1, cold.cpu1)}/${x(warm.cpu2, cold.cpu2)}; ` +
  `90% of the steady rate after ${warm.toSteady} vs ${cold.toSteady} CPU-s; restore ${warm.restoreMs} vs ${cold.restoreMs} ms`);
console.log(JSON.stringify({ bench: 'restore-warm', memory: values.memory, pairs, cpuSeconds, cold, warm, runs }));
