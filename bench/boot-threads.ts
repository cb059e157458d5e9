// bench/boot-threads (issue 4): a soft-engine boot's CPU by thread. Boots the default image with each build in turn
// (--bins A,B,...: paths of bin/ringzero or of a wrapper script that sets env switches; --runs rounds), runs
// `uname -r`, and prints each thread's CPU seconds (/proc/PID/task/TID/schedstat, polled every 100 ms and read at the
// command's answer), grouped by name: "main" is the guest (vCPU 0) thread; Node's other threads are all named "node"
// (V8's four workers: TurboFan of wasm and of the VMM's JavaScript, GC; the wasm compile thread: Liftoff).
// Thread CPU is a count a loaded host disturbs much less than wall time. Env: RZ_ENV_A / RZ_ENV_B ... (space-separated
// NAME=VALUE for that build), RZ_BY_TID=1 (one column per thread), RZ_PERF=PREFIX (`perf record -a` during each boot,
// to PREFIX.RUN.BUILD), RZ_DUMP=PREFIX (the console output, to PREFIX.RUN.BUILD).
//
//   node --import tsx bench/boot-threads.ts [--bins A,B] [--runs N]
import fs from 'node:fs';
import { spawn } from 'node:child_process';
import { parseArgs } from 'node:util';
import { BenchGuest } from './support/session.ts';
import { CMDLINE, requireImage } from './support/common.ts';
import { threadRunTimes } from '../src/sys/proc-stat.ts';

const { values } = parseArgs({ options: { bins: { type: 'string', default: 'bin/ringzero' }, runs: { type: 'string', default: '1' } } });
const bins = values.bins!.split(',');
requireImage('boot-threads');
function threads(pid: number): Map<string, number> {
  const out = new Map<string, number>();
  for (const { tid, comm, ns } of threadRunTimes(pid)) out.set(`${tid === pid ? 'main' : comm}#${tid}`, ns / 1e9);
  return out;
}
for (let r = 0; r < Number(values.runs); r++) {
  for (let b = 0; b < bins.length; b++) {
    const envText = process.env[`RZ_ENV_${'AB'[b]}`] ?? '';
    const saved = { ...process.env };
    for (const kv of envText.split(/\s+/).filter(Boolean)) { const i = kv.indexOf('='); process.env[kv.slice(0, i)] = kv.slice(i + 1); }
    const g = BenchGuest.ringzeroAt(`b${b}`, bins[b], ['--engine', 'soft', '--cpus', '1', '--memory', '256M', '--cmdline', CMDLINE]);
    process.env = saved;
    const pid = g.session.child.pid!;
    const perf = process.env.RZ_PERF ? spawn('perf', ['record', '-e', 'cpu-clock', '-F', '999', '-g', '-a', '-o', `${process.env.RZ_PERF}.${r}.${b}`], { stdio: 'ignore' }) : undefined;
    const last = new Map<string, number>();
    const poll = setInterval(() => { for (const [k, v] of threads(pid)) last.set(k, v); }, 100);
    const prompt = await g.waitForShell();
    await g.ask('u', 'uname -r');
    for (const [k, v] of threads(pid)) last.set(k, v);
    clearInterval(poll);
    if (perf) { perf.kill('SIGINT'); await new Promise((res) => perf.on('exit', res)); }
    const wall = (performance.now() - g.started) / 1000;
    await g.poweroff();
    g.close();
    if (process.env.RZ_DUMP) fs.writeFileSync(`${process.env.RZ_DUMP}.${r}.${b}`, g.output);
    const groups = new Map<string, number>();
    for (const [k, v] of last) { const n = process.env.RZ_BY_TID === '1' ? k : k.replace(/#\d+$/, ''); groups.set(n, (groups.get(n) ?? 0) + v); }
    const total = [...groups.values()].reduce((a, c) => a + c, 0);
    console.log(`run ${r} ${bins[b]} [${envText}] prompt ${(prompt / 1000).toFixed(2)} s, to uname ${wall.toFixed(2)} s, cpu ${total.toFixed(2)}: ` +
      [...groups].sort((a, c) => c[1] - a[1]).map(([n, v]) => `${n} ${v.toFixed(2)}`).join(', '));
  }
}
