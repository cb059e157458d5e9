// bench/restore-warm: how fast a restored guest runs in its first seconds, with and without the snapshot's hot-block
// list (src/cpu/soft/warm.ts; RINGZERO_WARM=0 ignores it), on the software engine (issue 7: a restored or migrated
// VM should run at full speed at once).
//
//   node --import tsx bench/restore-warm.ts [--pairs 3] [--seconds 6] [--memory 256M] [--bin PATH]
//
// The default guest boots to its shell in a ringzero VMM, runs a CPU-bound busybox loop that prints every 100th
// 10th iteration (`i=0; while :; do i=$((i+1)); [ $((i%10)) = 0 ] && echo c$i; done`) for 4 s, so its code is hot, and
// is snapshotted through the control socket. Then, in interleaved pairs (cold, warm, cold, warm, ... on a shared host),
// a fresh VMM restores the snapshot (`ringzero run --restore`) and runs for --seconds: the loop's progress (iterations)
// is read from the console, timed from the end of Machine.restore (the VMM's RINGZERO_RESTORE_TIMING line) at 0.5, 1
// and 2 s, its steady rate (iterations per second over the last 2 s), the time until the rate first reaches 90% of the
// steady rate (in 250 ms windows), the restore's own time, and the VMM's main-thread CPU at 2 s.
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
    seconds: { type: 'string', default: '6' },
    memory: { type: 'string', default: '256M' },
    bin: { type: 'string', default: path.join(root, 'bin', 'ringzero') },
    /** Restore this snapshot (taken by an earlier run with --keep) instead of booting and taking one. */
    snapshot: { type: 'string' },
    /** Keep the snapshot taken in this directory. */
    keep: { type: 'string' },
  },
});
const pairs = Number(values.pairs);
const seconds = Number(values.seconds);
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
  /** Iterations done 0.5, 1 and 2 s after the restore. */
  at05: number; at1: number; at2: number;
  /** Iterations per second over the last 2 s, and when the rate first reached 90% of it (s after the restore). */
  steady: number;
  toSteady: number;
  cpu2: number;
  /** Iterations done in the first 0.25, 0.5 and 1 s of main-thread CPU after the restore. */
  cpu025: number; cpu05: number; cpu1: number;
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
  const r = JSON.parse(/ringzero: restore timing (\{.*\})/.exec(p.err)![1]) as { timeOrigin: number; startMs: number; restoreMs: number };
  const t0 = r.timeOrigin + r.startMs + r.restoreMs;
  let cpu2 = 0;
  const cpuAt = setTimeout(() => { try { cpu2 = mainThreadCpuMs(p.child.pid!); } catch { /* gone */ } }, Math.max(0, t0 + 2000 - (performance.timeOrigin + performance.now())));
  // (main-thread CPU samples: [CPU ms since the restore, iterations printed by then])
  const r0 = (r as { startCpuMs?: number; restoreCpuMs?: number });
  const cpu0 = (r0.startCpuMs ?? 0) + (r0.restoreCpuMs ?? 0);
  const cpuSamples: [number, number][] = [];
  const sampler = setInterval(() => {
    try { cpuSamples.push([mainThreadCpuMs(p.child.pid!) - cpu0, lines.length > 0 ? lines[lines.length - 1].v : NaN]); } catch { /* gone */ }
  }, 10);
  await sleep(Math.max(0, t0 + seconds * 1000 - (performance.timeOrigin + performance.now())));
  clearTimeout(cpuAt);
  clearInterval(sampler);
  await p.kill();
  if (lines.length < 2) throw new Error(`no progress printed:\n${p.out.slice(-500)}\n${p.err.slice(-500)}`);
  const v0 = lines[0].v - EVERY; // (the first line after the restore: the loop was at most EVERY iterations before it)
  const at = (s: number) => { let v = v0; for (const l of lines) if (l.t <= t0 + s * 1000) v = l.v; return v - v0; };
  const end = seconds;
  const steady = (at(end) - at(end - 2)) / 2;
  let toSteady = NaN;
  for (let s = 0; s + 0.25 <= end; s += 0.25) {
    if ((at(s + 0.25) - at(s)) / 0.25 >= 0.9 * steady) { toSteady = s + 0.25; break; }
  }
  const atCpu = (ms: number) => { let v = v0; for (const [c, x] of cpuSamples) if (c <= ms && !Number.isNaN(x)) v = x; return v - v0; };
  return { warm, restoreMs: r.restoreMs, at05: at(0.5), at1: at(1), at2: at(2), steady, toSteady, cpu2, cpu025: atCpu(250), cpu05: atCpu(500), cpu1: atCpu(1000) };
}

const socket = path.join(work, 'vm.sock');
const dir = values.snapshot ?? values.keep ?? path.join(work, 'snap');
console.log(`bench/restore-warm: ${values.bin}, ${values.memory}, ${pairs} pairs of ${seconds} s restores`);
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
  const state = JSON.parse(fs.readFileSync(path.join(dir, 'state.json'), 'utf8')) as { body: { warm?: { blocks: number; data: string } } };
  console.log(`snapshot: state.json ${fs.statSync(path.join(dir, 'state.json')).size} bytes, warm section ${state.body.warm ? `${state.body.warm.blocks} blocks, ${state.body.warm.data.length} bytes` : 'none'}`);
}
const runs: Run[] = [];
for (let i = 0; i < pairs; i++) {
  for (const warm of i % 2 === 0 ? [false, true] : [true, false]) {
    const r = await restoreRun(dir, warm);
    runs.push(r);
    console.log(`  ${warm ? 'warm' : 'cold'}: restore ${r.restoreMs.toFixed(1)} ms; iterations at 0.5/1/2 s ${r.at05}/${r.at1}/${r.at2}, at 0.25/0.5/1 CPU-s ${r.cpu025}/${r.cpu05}/${r.cpu1}; steady ${r.steady.toFixed(0)}/s, 90% of it after ${r.toSteady} s; main-thread CPU at 2 s ${r.cpu2.toFixed(0)} ms`);
  }
}
const summary = (warm: boolean) => {
  const rs = runs.filter((r) => r.warm === warm);
  const med = (f: (r: Run) => number) => median(rs.map(f));
  return {
    restoreMs: med((r) => r.restoreMs), at05: med((r) => r.at05), at1: med((r) => r.at1), at2: med((r) => r.at2), steady: med((r) => r.steady),
    toSteady: med((r) => r.toSteady), cpu2: med((r) => r.cpu2), cpu025: med((r) => r.cpu025), cpu05: med((r) => r.cpu05), cpu1: med((r) => r.cpu1),
  };
};
const cold = summary(false), warm = summary(true);
console.log(`medians cold: ${JSON.stringify(cold)}`);
console.log(`medians warm: ${JSON.stringify(warm)}`);
console.log(`warm/cold: iterations in the first 0.25/0.5/1 CPU-s ${(warm.cpu025 / cold.cpu025).toFixed(2)}x/${(warm.cpu05 / cold.cpu05).toFixed(2)}x/${(warm.cpu1 / cold.cpu1).toFixed(2)}x; at 0.5 s ${(warm.at05 / cold.at05).toFixed(2)}x, 1 s ${(warm.at1 / cold.at1).toFixed(2)}x, 2 s ${(warm.at2 / cold.at2).toFixed(2)}x; time to 90% of the steady rate ${warm.toSteady} s vs ${cold.toSteady} s`);
console.log(JSON.stringify({ bench: 'restore-warm', memory: values.memory, pairs, seconds, cold, warm, runs }));
