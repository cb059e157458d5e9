// bench/engines (issue 4): the software engine with its block cache/translation (ringzero's default), without it
// (`--no-translate`), and QEMU's binary translator (`qemu-system-x86_64 -accel tcg`, q35) on the same kernel,
// initramfs, memory size and command line, in one run. Workloads:
//   boot     boot to the shell + `uname -r` + `poweroff -f` (as bench/boot, from spawn to the VMM's exit; measured
//            in the same session as the others: time to the prompt + the command + poweroff to exit)
//   md5      dd if=/dev/zero bs=1M count=64 | md5sum             (CPU-bound)
//   ash      an ash loop of 200k iterations                     (shell-heavy)
//   syscall  dd if=/dev/zero of=/dev/null bs=1 count=200000     (400k small read/write system calls)
// md5, ash and syscall are timed host-side between console markers printed around each command (see
// bench/support/session.ts), so boot time is excluded; the guest's own /proc/uptime delta is kept as a check.
// Also reported: the CPU seconds the VMM process used (all threads; boot: from spawn to the command's answer,
// poweroff excluded), which a host shared with other work disturbs much less than wall time.
// Each session boots once and runs the workloads in order; runs alternate between the VMMs. Prints medians and
// each ratio against TCG, then one JSON line.
//
// The guest thread's CPU seconds are reported too (ringzero's main thread, which runs vCPU 0; QEMU's "CPU 0/TCG",
// named under `-name ...,debug-threads=on`): the VMM's other threads (V8's compilers) left out.
//
//   node --import tsx bench/engines.ts [--runs 3] [--only md5,ash,qemu,...] [--cpus 1] [--memory 256M] [--timeout 1800]
//                                      [--paired [--host-cpus 0,1]] [--bins A,B] [--help]
//
// --only takes workload names (boot, md5, ash, syscall) and/or VMM names (translate, interp, qemu); each list left
// empty means all of it. The machine is noisy: only the ratios measured in the same run mean anything.
//
// --paired: why. On the shared 2-vCPU host this project is developed on, the two CPUs differ in memory speed by up
// to 2.4x (a JavaScript loop of random reads over 16 MiB pinned to each in turn), which one is slow changes within
// minutes, and other work on the host (load 10-30) slows memory-bound code further: a VMM's time, wall or CPU, moves
// with whichever CPU it ran on and when. The default mode runs the VMMs one after the other, unpinned, so their
// ratio carries both. --paired starts both VMMs at once, every thread of each pinned to a host CPU of its own
// (taskset -a), and runs each workload twice in the same session at the same moment on both, the CPUs swapped
// between the two halves (which assignment goes first alternates between runs and workloads). With s0, s1 the two
// CPUs' slowdowns during the pair, the halves' ratios are (ours*s0)/(ref*s1) and (ours*s1)/(ref*s0): their geometric
// mean is ours/ref, the CPUs' difference cancelled as far as it holds over the pair, and a slowdown of the whole
// host during the pair hits both VMMs at once. Their quotient measures the difference: the "skew" column, cpu c0's
// time over cpu c1's. The halves are one cold (the first time the session runs the workload: translation) and one
// warm run; the boot is one half per run (boot pairs: runs 1+2, 3+4, ...), and with each VMM on one CPU its
// background compilers share the guest thread's CPU, so paired boot figures are not the default mode's. Wall,
// process CPU and guest-thread CPU ratios are each paired; the JSON line also lists every pair's ratio.
// --bins A,B pairs two builds of ringzero the same way (paths of their bin/ringzero, each built: `npm run build`),
// for A/B tests of an engine change; ratios are B/A. --env-a/--env-b K=V,... add environment variables to A's or
// B's VMM only (an env switch against the same build: --bins X,X --env-b RINGZERO_WASM_...=1).
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { CMDLINE, median, nameList, positiveInt, printTable, qemuPresent, qemuTcgArgs, ratioText, requireImage } from './support/common.ts';
import { BenchGuest } from './support/session.ts';

const { values } = parseArgs({
  options: {
    runs: { type: 'string', default: '3' },
    only: { type: 'string', default: '' },
    cpus: { type: 'string', default: '1' },
    memory: { type: 'string', default: '256M' },
    timeout: { type: 'string', default: '1800' },
    paired: { type: 'boolean', default: false },
    bins: { type: 'string', default: '' },
    'env-a': { type: 'string', default: '' },
    'env-b': { type: 'string', default: '' },
    'host-cpus': { type: 'string', default: '0,1' },
    help: { type: 'boolean', short: 'h', default: false },
  },
});
if (values.help) {
  console.log(`usage: node --import tsx bench/engines.ts [--runs N] [--only LIST] [--cpus N] [--memory SIZE] [--timeout SECONDS]

Boots the default image on ringzero's soft engine with translation ('translate'), without it ('interp',
--no-translate) and on QEMU TCG ('qemu'), and times in each session: boot + uname + poweroff ('boot'),
dd 64 MiB | md5sum ('md5'), an ash loop of 200k iterations ('ash'), 200k one-byte dd reads/writes ('syscall').
Prints medians, CPU seconds and each ratio against TCG, then one JSON line.

  --runs N        sessions per VMM, alternating (default 3)
  --only LIST     comma-separated workloads (boot, md5, ash, syscall) and/or VMMs (translate, interp, qemu);
                  an empty list of either kind means all of it. The interpreter is the slow one: --only
                  translate,qemu skips it
  --cpus N        vCPUs (default 1)
  --memory SIZE   guest memory (default 256M)
  --timeout S     per-workload timeout in seconds (default 1800)
  --paired        run the two VMMs (translate or interp, and qemu) at the same time, each pinned to a host CPU of
                  its own, and every workload twice with the CPUs swapped; a pair's ratio is the geometric mean of
                  the two halves, so a difference in speed between the CPUs cancels (see the header comment)
  --bins A,B      --paired with two builds of ringzero instead of ringzero and QEMU: A's and B's bin/ringzero
                  (paths); ratios are B/A
  --env-a K=V,... --env-b K=V,...  with --bins: environment variables for A's or B's VMM only
  --host-cpus C,D the two host CPUs of --paired (default 0,1)`);
  process.exit(0);
}
const runs = positiveInt('runs', values.runs);
const cpus = positiveInt('cpus', values.cpus);
const timeoutMs = positiveInt('timeout', values.timeout) * 1000;
const image = requireImage('engines');

const MD5_ZEROS_64M = createHash('md5').update(Buffer.alloc(64 << 20)).digest('hex');

interface Workload { key: string; what: string; command: string; check(out: string): boolean }
const WORKLOADS: Workload[] = [
  { key: 'md5', what: 'dd 64 MiB | md5sum', command: 'dd if=/dev/zero bs=1M count=64 2>/dev/null | md5sum', check: (o) => o.includes(MD5_ZEROS_64M) },
  { key: 'ash', what: 'ash loop 200k', command: 'i=0; while [ $i -lt 200000 ]; do i=$((i+1)); done; echo $i', check: (o) => /(^|\n)200000\n/.test(o) },
  { key: 'syscall', what: 'dd bs=1 x 200k', command: 'dd if=/dev/zero of=/dev/null bs=1 count=200000', check: (o) => /200000\+0 records out/.test(o) },
];

interface Vmm { key: string; label: string; start(): BenchGuest }
const ringzeroArgs = ['--engine', 'soft', '--cpus', String(cpus), '--memory', values.memory!, '--cmdline', CMDLINE];
const VMMS: Vmm[] = [
  { key: 'translate', label: 'ringzero soft', start: () => BenchGuest.ringzero('ringzero soft', ringzeroArgs) },
  { key: 'interp', label: 'ringzero --no-translate', start: () => BenchGuest.ringzero('ringzero --no-translate', [...ringzeroArgs, '--no-translate']) },
  // -name ...,debug-threads=on names QEMU's threads ("CPU 0/TCG"), so the guest thread's CPU time can be read.
  { key: 'qemu', label: 'qemu -accel tcg', start: () => BenchGuest.qemu('qemu -accel tcg', qemuTcgArgs({ ...image, cmdline: CMDLINE, cpus, memory: values.memory! }, ['-name', 'bench,debug-threads=on'])) },
];

const only = nameList('only', values.only, ['boot', ...WORKLOADS.map((w) => w.key), ...VMMS.map((v) => v.key)]);
const onlyWorkloads = only.filter((o) => o === 'boot' || WORKLOADS.some((w) => w.key === o));
const onlyVmms = only.filter((o) => VMMS.some((v) => v.key === o));
const wantBoot = onlyWorkloads.length === 0 || onlyWorkloads.includes('boot');
const workloads = WORKLOADS.filter((w) => onlyWorkloads.length === 0 || onlyWorkloads.includes(w.key));
let vmms = VMMS.filter((v) => onlyVmms.length === 0 || onlyVmms.includes(v.key));
if (!qemuPresent()) {
  console.error('bench/engines: qemu-system-x86_64 not found (apt-get install qemu-system-x86): no ratios');
  vmms = vmms.filter((v) => v.key !== 'qemu');
}

/** One arm of --paired: a VMM started in its own session each run. */
interface Arm { key: string; label: string; start(): BenchGuest }
/** One timed half of a pair: the two arms' figures with arm x on host CPU `xCpu` and the reference on the other. */
interface Half { xCpu: number; x: Figures; ref: Figures }
/** Wall seconds, VMM process CPU seconds, guest-thread CPU seconds. */
interface Figures { wall: number; cpu: number; thread: number }
const METRICS = ['wall', 'cpu', 'thread'] as const;

const geomean = (xs: readonly number[]): number => Math.exp(xs.reduce((a, b) => a + Math.log(b), 0) / xs.length);

/**
 * --paired: see the header. Each run starts both arms at once, arm x pinned to one host CPU and the reference to the
 * other (every thread of each VMM process: each VMM has one CPU), boots them, then times each workload twice at the
 * same moment on both, the CPUs swapped between the two halves (which assignment goes first alternates). The boot
 * is one half per run: boot pairs are consecutive runs.
 */
async function runPaired(): Promise<void> {
  const hostCpus = values['host-cpus']!.split(',').map(Number);
  if (hostCpus.length !== 2 || hostCpus.some((c) => !Number.isInteger(c) || c < 0) || hostCpus[0] === hostCpus[1]) {
    console.error(`--host-cpus: two different host CPU numbers, not ${JSON.stringify(values['host-cpus'])}`);
    process.exit(2);
  }
  let x: Arm;
  let ref: Arm;
  if (values.bins !== '') {
    const bins = values.bins!.split(',').map((b) => path.resolve(b));
    if (bins.length !== 2) { console.error('--bins: two bin/ringzero paths, A,B'); process.exit(2); }
    for (const b of bins) if (!fs.existsSync(b)) { console.error(`--bins: no ${b}`); process.exit(2); }
    const envOf = (v: string, opt: string): Record<string, string> | undefined => {
      if (v === '') return undefined;
      const out: Record<string, string> = {};
      for (const kv of v.split(',')) {
        const m = /^([A-Za-z_][A-Za-z0-9_]*)=(.*)$/.exec(kv);
        if (m === null) { console.error(`--${opt}: K=V,... not ${JSON.stringify(v)}`); process.exit(2); }
        out[m[1]] = m[2];
      }
      return out;
    };
    const envA = envOf(values['env-a']!, 'env-a'), envB = envOf(values['env-b']!, 'env-b');
    const envText = (e: Record<string, string> | undefined) => e === undefined ? '' : ` (${Object.entries(e).map(([k, v]) => `${k}=${v}`).join(' ')})`;
    ref = { key: 'a', label: `A ${bins[0]}${envText(envA)}`, start: () => BenchGuest.ringzeroAt('A', bins[0], ringzeroArgs, envA) };
    x = { key: 'b', label: `B ${bins[1]}${envText(envB)}`, start: () => BenchGuest.ringzeroAt('B', bins[1], ringzeroArgs, envB) };
  } else {
    // translate unless --only names interp alone.
    const ours = vmms.filter((v) => v.key !== 'qemu' && (onlyVmms.some((o) => o !== 'qemu') || v.key === 'translate'));
    if (!vmms.some((v) => v.key === 'qemu') || ours.length !== 1) {
      console.error('--paired: needs qemu-system-x86_64 and one of translate, interp (translate by default, --only interp for the other)');
      process.exit(2);
    }
    x = ours[0];
    ref = VMMS.find((v) => v.key === 'qemu')!;
  }
  const [c0, c1] = hostCpus;
  const keys = [...(wantBoot ? ['boot'] : []), ...workloads.map((w) => w.key)];
  /** halves[workload][run] */
  const halves: Record<string, Half[][]> = Object.fromEntries(keys.map((k) => [k, []]));
  const fig = (r: { hostMs: number; cpuS: number; threadS: number }): Figures => ({ wall: r.hostMs / 1000, cpu: r.cpuS, thread: r.threadS });
  const ratio = (h: Half, m: typeof METRICS[number]) => h.x[m] / h.ref[m];
  console.log(`bench/engines --paired: ${runs} run(s) of [${keys.join(', ')}], ${x.label} against ${ref.label}, host CPUs ${c0} and ${c1}; ${cpus} vCPU, ${values.memory}`);
  for (let i = 1; i <= runs; i++) {
    const bootXCpu = i % 2 === 1 ? c0 : c1;
    const gx = x.start();
    const gr = ref.start();
    try {
      gx.pin(bootXCpu);
      gr.pin(bootXCpu === c0 ? c1 : c0);
      const [px, pr] = await Promise.all([gx.waitForShell(), gr.waitForShell()]);
      const [ux, ur] = await Promise.all([gx.timed('uname', 'uname -r', 60_000), gr.timed('uname', 'uname -r', 60_000)]);
      for (const [g, u] of [[gx, ux], [gr, ur]] as const) if (!/cloud-amd64/.test(u.output)) throw new Error(`${g.label}: uname -r said ${JSON.stringify(u.output)}`);
      const bootCpu = { x: gx.cpuSeconds(), ref: gr.cpuSeconds() };
      const bootThread = { x: gx.threadCpuSeconds(), ref: gr.threadCpuSeconds() };
      const parts: string[] = [];
      for (const [j, w] of workloads.entries()) {
        const run: Half[] = [];
        const order = (i + j) % 2 === 1 ? [c0, c1] : [c1, c0];
        for (const xCpu of order) {
          gx.pin(xCpu);
          gr.pin(xCpu === c0 ? c1 : c0);
          console.error(`  run ${i}: ${w.key}, ${x.key} on cpu ${xCpu} ...`);
          const [rx, rr] = await Promise.all([gx.timed(w.key, w.command, timeoutMs), gr.timed(w.key, w.command, timeoutMs)]);
          for (const [g, r] of [[gx, rx], [gr, rr]] as const) {
            if (r.status !== 0 || !w.check(r.output)) throw new Error(`${g.label}: ${w.key} failed (status ${r.status}): ${r.output.slice(-500)}`);
          }
          run.push({ xCpu, x: fig(rx), ref: fig(rr) });
        }
        halves[w.key].push(run);
        parts.push(`${w.key} ${run.map((h) => `${x.key}@${h.xCpu} ${h.x.wall.toFixed(2)}/${h.ref.wall.toFixed(2)} s (cpu ${h.x.cpu.toFixed(2)}/${h.ref.cpu.toFixed(2)}, thread ${h.x.thread.toFixed(2)}/${h.ref.thread.toFixed(2)})`).join(' ')}: ${geomean(run.map((h) => ratio(h, 'wall'))).toFixed(2)}x wall, ${geomean(run.map((h) => ratio(h, 'thread'))).toFixed(2)}x thread`);
      }
      const [ox, or] = await Promise.all([gx.poweroff(), gr.poweroff()]);
      if (wantBoot) {
        const h: Half = {
          xCpu: bootXCpu,
          x: { wall: (px + ux.hostMs + ox) / 1000, cpu: bootCpu.x, thread: bootThread.x },
          ref: { wall: (pr + ur.hostMs + or) / 1000, cpu: bootCpu.ref, thread: bootThread.ref },
        };
        halves.boot.push([h]);
        parts.unshift(`boot ${x.key}@${h.xCpu} ${h.x.wall.toFixed(2)}/${h.ref.wall.toFixed(2)} s (cpu ${h.x.cpu.toFixed(2)}/${h.ref.cpu.toFixed(2)}, thread ${h.x.thread.toFixed(2)}/${h.ref.thread.toFixed(2)})`);
      }
      console.log(`run ${i}: ${x.key}/${ref.key}: ${parts.join('; ')}`);
    } finally {
      gx.close();
      gr.close();
    }
  }

  // Pairs: a workload's two halves of one run; the boot's halves are runs 1+2, 3+4, ...
  const pairsOf = (k: string): Half[][] => {
    if (k !== 'boot') return halves[k];
    const out: Half[][] = [];
    for (let r = 0; r + 1 < halves.boot.length; r += 2) out.push([halves.boot[r][0], halves.boot[r + 1][0]]);
    return out;
  };
  const figures: Record<string, number | string | number[]> = { bench: 'engines', mode: 'paired', runs, cpus, memory: values.memory!, x: x.key, ref: ref.key, host_cpus: `${c0},${c1}` };
  const rows: string[][] = [];
  for (const k of keys) {
    const pairs = pairsOf(k);
    if (pairs.length === 0) continue;
    const row = [k];
    for (const m of METRICS) {
      const rs = pairs.map((p) => geomean(p.map((h) => ratio(h, m))));
      const suffix = m === 'wall' ? '' : `_${m}`;
      figures[`${x.key}_${k}${suffix}_ratio`] = Number(median(rs).toFixed(3));
      figures[`${x.key}_${k}${suffix}_ratios`] = rs.map((r) => Number(r.toFixed(3)));
      const all = pairs.flat();
      figures[`${x.key}_${k}${suffix}_s`] = Number(median(all.map((h) => h.x[m])).toFixed(3));
      figures[`${ref.key}_${k}${suffix}_s`] = Number(median(all.map((h) => h.ref[m])).toFixed(3));
      row.push(`${median(rs).toFixed(2)}x`, `${Math.min(...rs).toFixed(2)}-${Math.max(...rs).toFixed(2)}`);
    }
    // How much faster cpu c1 ran this workload than c0 during each pair, from the pair itself: with x on c0 the
    // ratio is (x * s0) / (ref * s1), swapped (x * s1) / (ref * s0); their quotient is (s0 / s1)^2.
    const skews = pairs.map((p) => {
      const on0 = p.find((h) => h.xCpu === c0)!;
      const on1 = p.find((h) => h.xCpu === c1)!;
      return Math.sqrt(ratio(on0, 'thread') / ratio(on1, 'thread'));
    });
    figures[`${k}_cpu_skew`] = skews.map((s) => Number(s.toFixed(3)));
    row.push(skews.map((s) => s.toFixed(2)).join(' '));
    rows.push(row);
  }
  console.log(`\n${x.label} / ${ref.label}, paired (median over pairs, and the range): wall, VMM process CPU, guest thread CPU;`);
  console.log(`skew: cpu ${c0} time / cpu ${c1} time during each pair (guest thread CPU), which the pairing cancels`);
  printTable(['workload', 'wall', 'range', 'process cpu', 'range', 'thread cpu', 'range', 'skew per pair'], rows);
  console.log(JSON.stringify(figures));
}

if (values.paired || values.bins !== '') {
  await runPaired();
  process.exit(0);
}

/** samples[vmm][workload] = seconds */
const samples: Record<string, Record<string, number[]>> = {};
const guestSamples: Record<string, Record<string, number[]>> = {};
const cpuSamples: Record<string, Record<string, number[]>> = {};
const threadSamples: Record<string, Record<string, number[]>> = {};
const add = (table: typeof samples, vmm: string, workload: string, s: number) => {
  ((table[vmm] ??= {})[workload] ??= []).push(s);
};

async function session(vmm: Vmm, run: number): Promise<void> {
  const guest = vmm.start();
  try {
    const promptMs = await guest.waitForShell();
    const promptCpu = guest.cpuSeconds();
    console.error(`  ${vmm.label}: at the prompt after ${(promptMs / 1000).toFixed(1)} s`);
    const uname = await guest.timed('uname', 'uname -r', 60_000);
    if (!/cloud-amd64/.test(uname.output)) throw new Error(`${vmm.label}: uname -r said ${JSON.stringify(uname.output)}`);
    const parts: string[] = [`prompt ${(promptMs / 1000).toFixed(2)} s`];
    for (const w of workloads) {
      console.error(`  ${vmm.label}: ${w.key} ...`);
      const r = await guest.timed(w.key, w.command, timeoutMs);
      if (r.status !== 0 || !w.check(r.output)) throw new Error(`${vmm.label}: ${w.key} failed (status ${r.status}): ${r.output.slice(-500)}`);
      add(samples, vmm.key, w.key, r.hostMs / 1000);
      add(guestSamples, vmm.key, w.key, r.guestS);
      add(cpuSamples, vmm.key, w.key, r.cpuS);
      add(threadSamples, vmm.key, w.key, r.threadS);
      parts.push(`${w.key} ${(r.hostMs / 1000).toFixed(2)} s (guest ${r.guestS.toFixed(2)}, cpu ${r.cpuS.toFixed(2)}, thread ${r.threadS.toFixed(2)})`);
    }
    const offMs = await guest.poweroff();
    if (wantBoot) {
      const total = (promptMs + uname.hostMs + offMs) / 1000;
      add(samples, vmm.key, 'boot', total);
      add(cpuSamples, vmm.key, 'boot', promptCpu + uname.cpuS);
      parts.unshift(`boot ${total.toFixed(2)} s`);
    }
    console.log(`run ${run}: ${vmm.label}: ${parts.join(', ')}`);
  } finally {
    guest.close();
  }
}

console.log(`bench/engines: ${runs} run(s) of [${[...(wantBoot ? ['boot'] : []), ...workloads.map((w) => w.key)].join(', ')}] on ${vmms.map((v) => v.label).join(', ')}; ${cpus} vCPU, ${values.memory}`);
for (let i = 1; i <= runs; i++) {
  for (const v of vmms) await session(v, i);
}

const keys = [...(wantBoot ? [{ key: 'boot', what: 'boot+cmd+poweroff' }] : []), ...workloads];
const figures: Record<string, number | string> = { bench: 'engines', runs, cpus, memory: values.memory! };
const rows: string[][] = [];
const cpuRows: string[][] = [];
for (const w of keys) {
  const cpuQemu = cpuSamples.qemu?.[w.key] ? median(cpuSamples.qemu[w.key]) : undefined;
  const cpuRow = [`${w.key} (${w.what})`];
  for (const v of vmms) {
    const c = cpuSamples[v.key]?.[w.key] ? median(cpuSamples[v.key][w.key]) : undefined;
    if (c !== undefined) figures[`${v.key}_${w.key}_cpu_s`] = Number(c.toFixed(3));
    if (v.key !== 'qemu' && c !== undefined && cpuQemu !== undefined) figures[`${v.key}_${w.key}_cpu_ratio`] = Number((c / cpuQemu).toFixed(3));
    cpuRow.push(c === undefined ? '-' : `${c.toFixed(2)} s`);
  }
  for (const v of vmms.filter((x) => x.key !== 'qemu')) cpuRow.push(ratioText(cpuSamples[v.key]?.[w.key] && median(cpuSamples[v.key][w.key]), cpuQemu));
  cpuRows.push(cpuRow);
  const thQemu = threadSamples.qemu?.[w.key] ? median(threadSamples.qemu[w.key]) : undefined;
  for (const v of vmms) {
    const t = threadSamples[v.key]?.[w.key] ? median(threadSamples[v.key][w.key]) : undefined;
    if (t !== undefined && Number.isFinite(t)) figures[`${v.key}_${w.key}_thread_s`] = Number(t.toFixed(3));
    if (v.key !== 'qemu' && t !== undefined && thQemu !== undefined && Number.isFinite(t / thQemu)) figures[`${v.key}_${w.key}_thread_ratio`] = Number((t / thQemu).toFixed(3));
  }
  const row = [`${w.key} (${w.what})`];
  const qemuS = samples.qemu?.[w.key] ? median(samples.qemu[w.key]) : undefined;
  for (const v of vmms) {
    const xs = samples[v.key]?.[w.key];
    const s = xs ? median(xs) : undefined;
    if (s !== undefined) figures[`${v.key}_${w.key}_s`] = Number(s.toFixed(3));
    const g = guestSamples[v.key]?.[w.key];
    if (g) figures[`${v.key}_${w.key}_guest_s`] = Number(median(g).toFixed(3));
    row.push(s === undefined ? '-' : `${s.toFixed(2)} s`);
    if (v.key !== 'qemu' && s !== undefined && qemuS !== undefined) figures[`${v.key}_${w.key}_ratio`] = Number((s / qemuS).toFixed(3));
  }
  for (const v of vmms.filter((x) => x.key !== 'qemu')) row.push(ratioText(samples[v.key]?.[w.key] && median(samples[v.key][w.key]), qemuS));
  rows.push(row);
}
console.log('\nmedians (host seconds; md5/ash/syscall between console markers) and ratios against QEMU TCG:');
printTable(['workload', ...vmms.map((v) => v.label), ...vmms.filter((v) => v.key !== 'qemu').map((v) => `${v.key}/tcg`)], rows);
console.log('\nCPU seconds of the VMM process (all threads) and ratios against QEMU TCG:');
printTable(['workload', ...vmms.map((v) => v.label), ...vmms.filter((v) => v.key !== 'qemu').map((v) => `${v.key}/tcg`)], cpuRows);
console.log('goal (issue 4): <= 2x TCG on boot, <= 1.5x on the programs; v86 on i386 here: 2.5x boot, 1.7x md5, 1.9x ash');
console.log(JSON.stringify(figures));
