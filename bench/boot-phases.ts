// bench/boot-phases (issue 4): where a soft-engine boot's time goes, phase by phase, against QEMU TCG. Boots the
// default guest to its shell, runs `uname -r` and `poweroff -f`, and splits the boot at the kernel's own lines:
//   early      to `smpboot: Total of N processors` (setup, decompression, early kernel)
//   initcalls  to `Trying to unpack rootfs image`
//   unpack     to `Freeing initrd memory` (the initramfs, beside the initcalls that run meanwhile)
//   to-init    to `Run /init`
//   to-prompt  to the shell's prompt (the init script: modules, busybox)
//   rest       the command and the poweroff
// Wall time per phase is host-side for every VMM (when each line reached this process). For ringzero the VMM also
// records its counters at every console line (RINGZERO_BOOT_PHASES, src/vmm/boot-phases.ts): its main thread's and
// all threads' CPU, guest instructions (interpreted, replayed in JavaScript, in wasm), JavaScript-tier instructions
// by why (warming, queued, in flight; RINGZERO_TIER_STATS=1), entries into wasm, blocks recorded and translated.
// Runs alternate between the VMMs; medians per phase.
//
//   node --import tsx bench/boot-phases.ts [--runs 3] [--bins A,B] [--no-qemu] [--memory 256M] [--guest-profile [--top 15]] [--slices]
//
// --guest-profile: what the guest runs in each phase, instead of the timings: one boot of the (first) ringzero with
// `nokaslr` and --profile-guest (one RIP per 20000 instructions, src/vmm/guest-profile.ts; a profile per phase from
// RINGZERO_BOOT_PHASES), whose shell then prints its /proc/kallsyms text symbols on the console to name them; prints
// the --top functions of each phase with their share of the phase's instructions.
// --slices: how much of the boot runs at which speed, instead of the timings: one boot of the (first) ringzero with
// RINGZERO_SLICE_LOG (src/vmm/machine.ts: each run-loop slice's host ms, instructions and final RIP), up to the
// prompt, as host seconds and instructions per class of guest MIPS, then the guest functions (the guest's kallsyms,
// nokaslr) where the slow slices (under 50 MIPS: code run for its first times, through the interpreter, the
// JavaScript tier and the translator) and the fast ones (200 MIPS or more) ended, weighted by their host time.
// --bins A,B: two builds' bin/ringzero (default: this checkout's alone). The host is noisy: compare counts, or
// ratios of the same run.
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { findDefaultImage, GUEST_PROMPT } from '../src/image/build.ts';
import { benchArgs, CMDLINE, median, qemuPresent, qemuTcgArgs, RINGZERO, QEMU, killGroup, onCleanup, requireFreshBundle } from './support/common.ts';
import { GuestProfile, parseKallsyms, symbolFor } from '../src/vmm/guest-profile.ts';
import { SLICE } from '../src/vmm/machine.ts';

const { values } = benchArgs(import.meta.url, {
  options: {
    runs: { type: 'string', default: '3' },
    bins: { type: 'string', default: '' },
    'no-qemu': { type: 'boolean', default: false },
    memory: { type: 'string', default: '256M' },
    timeout: { type: 'string', default: '900' },
    'guest-profile': { type: 'boolean', default: false },
    slices: { type: 'boolean', default: false },
    top: { type: 'string', default: '15' },
  },
});
const image = findDefaultImage();
if (!image) {
  console.error('bench/boot-phases: no default image; run `bin/ringzero image build` first');
  process.exit(2);
}
const PHASES = ['early', 'initcalls', 'unpack', 'to-init', 'to-prompt', 'rest'] as const;
/** The lines that end each phase but the last (which ends at the VMM's exit). */
const ENDS = [/smpboot: Total of/, /Trying to unpack rootfs/, /Freeing initrd memory/, /Run \/init/, new RegExp(GUEST_PROMPT.replace(/[.*+?^${}()|[\]\\]/g, '\\$&'))];
const COUNTERS = ['main', 'cpu', 'instr', 'interp', 'js', 'warming', 'queued', 'inFlight', 'calls', 'recorded', 'compiled'] as const;
type Counter = typeof COUNTERS[number];

interface Run {
  /** Host ms per phase. */
  wall: number[];
  /** ringzero only: counters per phase. */
  counters?: Record<Counter, number>[];
}

const work = fs.mkdtempSync(path.join(os.tmpdir(), 'rz-boot-phases-'));
onCleanup(() => fs.rmSync(work, { recursive: true, force: true }));

/**
 * Boot one VMM, answer its prompt (with `command`, then `poweroff -f`), return the host time each phase ended (ms
 * since spawn); `onLine` sees every console line after the prompt.
 */
function boot(cmd: string, args: string[], env: NodeJS.ProcessEnv, command = 'uname -r', onLine?: (line: string) => void): Promise<number[]> {
  return new Promise((resolve, reject) => {
    const t0 = performance.now();
    const child = spawn(cmd, args, { stdio: ['pipe', 'pipe', 'pipe'], detached: true, env });
    const unregister = onCleanup(() => killGroup(child.pid));
    const at: number[] = [];
    let out = '';
    let state = 0;
    const timer = setTimeout(() => { killGroup(child.pid); reject(new Error(`${cmd}: timed out:\n${out.slice(-1500)}`)); }, Number(values.timeout) * 1000);
    child.stdout.setEncoding('latin1').on('data', (s: string) => {
      const now = performance.now() - t0;
      out += s;
      while (at.length < ENDS.length && ENDS[at.length].test(out)) {
        at.push(now);
        // (what follows the matched line may end the next phase too: look at the rest only)
        const m = ENDS[at.length - 1].exec(out)!;
        out = out.slice(m.index + m[0].length);
      }
      if (state === 0 && at.length === ENDS.length) { state = 1; out = ''; child.stdin.write(`${command}; echo BENCH-""DONE\n`); }
      else if (state === 1) {
        const end = out.lastIndexOf('\n');
        if (onLine !== undefined && end >= 0) { for (const line of out.slice(0, end).split('\n')) onLine(line.replace(/\r$/, '')); }
        if (/BENCH-DONE/.test(out)) { state = 2; child.stdin.write('poweroff -f\n'); }
        else if (end >= 0) out = out.slice(end + 1);
      }
    });
    child.stderr.resume();
    child.on('exit', (code) => {
      clearTimeout(timer);
      unregister();
      if (state !== 2) return reject(new Error(`${cmd} exited (${code}) before the command ran:\n${out.slice(-1500)}`));
      at.push(performance.now() - t0);
      resolve(at);
    });
  });
}

const diff = (ends: number[]) => ends.map((t, i) => t - (i === 0 ? 0 : ends[i - 1]));

/** The VMM's counter rows (src/vmm/boot-phases.ts) at each phase's end, as per-phase differences. */
function phaseCounters(file: string): Record<Counter, number>[] {
  const rows = fs.readFileSync(file, 'utf8').trim().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>);
  const pick = (r: Record<string, unknown>): Record<Counter, number> => {
    const n = (k: string) => Number(r[k] ?? 0);
    const tier = (r.tier as number[] | undefined) ?? [];
    return {
      main: n('main'), cpu: n('cpu'), instr: n('instr'), interp: n('instr') - n('block'), js: n('block') - n('jit'),
      warming: tier[0] ?? 0, queued: tier[1] ?? 0, inFlight: tier[2] ?? 0, calls: n('calls'), recorded: n('blocks'), compiled: n('compiled'),
    };
  };
  const marks: Record<Counter, number>[] = [];
  let k = 0;
  for (const r of rows) if (k < ENDS.length && ENDS[k].test(String(r.text))) { marks.push(pick(r)); k++; }
  marks.push(pick(rows[rows.length - 1]));
  return marks.map((m, i) => Object.fromEntries(COUNTERS.map((c) => [c, m[c] - (i === 0 ? 0 : marks[i - 1][c])])) as Record<Counter, number>);
}

const bins = values.bins !== '' ? values.bins!.split(',').map((b) => path.resolve(b)) : [RINGZERO];
for (const bin of bins) requireFreshBundle(bin);

if (values['guest-profile']) {
  const file = path.join(work, 'profile-phases.jsonl');
  const env = { ...process.env, RINGZERO_BOOT_PHASES: file };
  const kallsyms: string[] = [];
  await boot(bins[0], ['run', '--engine', 'soft', '--memory', values.memory!, '--cmdline', `${CMDLINE} nokaslr`, '--profile-guest', path.join(work, 'profile.json')],
    env, "grep ' [tT] ' /proc/kallsyms", (line) => { if (/^[0-9a-f]{16} [tT] /.test(line)) kallsyms.push(line); });
  const symbols = parseKallsyms(kallsyms.join('\n'));
  console.log(`guest profile of ${bins[0]} (nokaslr, ${symbols.length} text symbols), one sample per ${SLICE} instructions:`);
  const result: Record<string, { samples: number; top: [string, number][] }> = {};
  PHASES.slice(0, ENDS.length).forEach((phase, k) => {
    const saved = JSON.parse(fs.readFileSync(`${file}.${k}.json`, 'utf8')) as { addresses: [string, number][] };
    const profile = new GuestProfile(SLICE);
    for (const [hex, n] of saved.addresses) { const rip = Number(BigInt.asIntN(64, BigInt(`0x${hex}`))); for (let i = 0; i < n; i++) profile.record(rip); }
    const report = profile.report(symbols, Number(values.top));
    console.log(`\n${phase}: ${report.samples} samples (~${(report.samples * SLICE / 1e6).toFixed(0)}M instructions)`);
    for (const e of report.top) console.log(`  ${e.percent.toFixed(1).padStart(5)}%  ${e.where}`);
    result[phase] = { samples: report.samples, top: report.top.map((e) => [e.where, e.percent]) };
  });
  console.log(JSON.stringify({ bench: 'boot-phases', mode: 'guest-profile', phases: result }));
  process.exit(0);
}
if (values.slices) {
  // One boot with RINGZERO_SLICE_LOG (src/vmm/machine.ts): every run-loop slice's host ms, instructions and final
  // RIP, up to the prompt (the instruction count of RINGZERO_BOOT_PHASES's prompt row), by the slice's speed.
  const log = path.join(work, 'slices.txt'), phases = path.join(work, 'slice-phases.jsonl');
  const env = { ...process.env, RINGZERO_SLICE_LOG: log, RINGZERO_BOOT_PHASES: phases };
  const kallsyms: string[] = [];
  await boot(bins[0], ['run', '--engine', 'soft', '--memory', values.memory!, '--cmdline', `${CMDLINE} nokaslr`], env,
    "grep ' [tT] ' /proc/kallsyms", (line) => { if (/^[0-9a-f]{16} [tT] /.test(line)) kallsyms.push(line); });
  const symbols = parseKallsyms(kallsyms.join('\n'));
  const rows = fs.readFileSync(phases, 'utf8').trim().split('\n').map((l) => JSON.parse(l) as { instr: number; text: string });
  const promptRow = rows.find((r) => ENDS[ENDS.length - 1].test(String(r.text)));
  const atPrompt = promptRow?.instr ?? Infinity;
  const CLASSES = [10, 25, 50, 100, 200, Infinity];
  const label = (c: number) => (c === Infinity ? '>= 200' : `< ${c}`);
  const ms = CLASSES.map(() => 0), instr = CLASSES.map(() => 0);
  const slowBy = new Map<string, number>(), fastBy = new Map<string, number>();
  let done = 0, total = 0;
  for (const line of fs.readFileSync(log, 'utf8').trim().split('\n')) {
    const [t, n, hex] = line.split(' ');
    const w = Number(t), k = Number(n);
    if (done >= atPrompt) break;
    done += k;
    if (!(w > 0)) continue;
    const c = CLASSES.findIndex((lim) => k / w / 1000 < lim);
    ms[c] += w; instr[c] += k; total += w;
    const where = symbolFor(symbols, Number(BigInt.asIntN(64, BigInt(`0x${hex}`))));
    const by = c <= 2 ? slowBy : c === CLASSES.length - 1 ? fastBy : null;
    if (by !== null) by.set(where, (by.get(where) ?? 0) + w);
  }
  console.log(`${bins[0]}: the boot to the prompt (${(done / 1e6).toFixed(0)}M instructions, ${(total / 1000).toFixed(2)} s in the vCPU's slices of ${SLICE} instructions) by each slice's speed:`);
  console.log('guest MIPS   host s   share   M instructions');
  CLASSES.forEach((c, i) => console.log(`${label(c).padEnd(10)} ${(ms[i] / 1000).toFixed(2).padStart(7)} ${(100 * ms[i] / total).toFixed(1).padStart(6)}% ${(instr[i] / 1e6).toFixed(1).padStart(15)}`));
  const slowMs = ms[0] + ms[1] + ms[2];
  for (const [what, by, sum] of [['under 50 MIPS', slowBy, slowMs], ['at 200 MIPS or more', fastBy, ms[CLASSES.length - 1]]] as const) {
    console.log(`\nwhere the slices ${what} ended (share of their host time; nokaslr, ${symbols.length} text symbols):`);
    for (const [where, w] of [...by].sort((a, b) => b[1] - a[1]).slice(0, Number(values.top))) console.log(`  ${(100 * w / sum).toFixed(1).padStart(5)}%  ${where}`);
  }
  console.log(JSON.stringify({ bench: 'boot-phases', mode: 'slices', instructions: done, seconds: Number((total / 1000).toFixed(3)),
    classes: Object.fromEntries(CLASSES.map((c, i) => [label(c), { s: Number((ms[i] / 1000).toFixed(3)), instructions: instr[i] }])) }));
  process.exit(0);
}
const vmms: { label: string; run: (i: number) => Promise<Run> }[] = bins.map((bin, j) => ({
  label: bins.length > 1 ? `${'AB'[j]} ${bin}` : 'ringzero',
  run: async (i: number) => {
    const file = path.join(work, `phases-${j}-${i}.jsonl`);
    const env = { ...process.env, RINGZERO_BOOT_PHASES: file, RINGZERO_TIER_STATS: '1' };
    const wall = diff(await boot(bin, ['run', '--engine', 'soft', '--memory', values.memory!, '--cmdline', CMDLINE], env));
    return { wall, counters: phaseCounters(file) };
  },
}));
if (!values['no-qemu'] && qemuPresent()) {
  vmms.push({
    label: 'qemu-tcg',
    run: async () => ({ wall: diff(await boot(QEMU, qemuTcgArgs({ kernel: image.kernel, initrd: image.initrd, cmdline: CMDLINE, cpus: 1, memory: values.memory! }), process.env)) }),
  });
}

const runs: Run[][] = vmms.map(() => []);
for (let i = 0; i < Number(values.runs); i++) {
  for (const [j, v] of vmms.entries()) {
    const r = await v.run(i);
    runs[j].push(r);
    console.log(`run ${i + 1} ${v.label}: ${r.wall.map((w, p) => `${PHASES[p]} ${(w / 1000).toFixed(2)}`).join(', ')} s`);
  }
}

const med = (j: number, f: (r: Run) => number) => median(runs[j].map(f));
const qemu = vmms.findIndex((v) => v.label === 'qemu-tcg');
const result: Record<string, unknown> = { bench: 'boot-phases', runs: Number(values.runs) };
for (const [j, v] of vmms.entries()) {
  if (j === qemu) continue;
  console.log(`\n${v.label} (medians per phase; M = millions of guest instructions)`);
  console.log('phase      wall s  vs TCG  main s  proc s  M instr  M interp  M JS (warm/queued/flight)  wasm entries  recorded  translated');
  const rows: Record<string, number>[] = [];
  PHASES.forEach((p, k) => {
    const c = (name: Counter) => med(j, (r) => r.counters![k][name]);
    const wall = med(j, (r) => r.wall[k]) / 1000;
    const ref = qemu >= 0 ? med(qemu, (r) => r.wall[k]) / 1000 : NaN;
    const M = (x: number) => (x / 1e6).toFixed(2);
    console.log(`${p.padEnd(10)} ${wall.toFixed(2).padStart(6)}  ${(Number.isNaN(ref) ? '-' : `${(wall / ref).toFixed(2)}x`).padStart(6)}  ${c('main').toFixed(2).padStart(6)}  ${c('cpu').toFixed(2).padStart(6)}  ` +
      `${M(c('instr')).padStart(7)}  ${M(c('interp')).padStart(8)}  ${`${M(c('js'))} (${M(c('warming'))}/${M(c('queued'))}/${M(c('inFlight'))})`.padStart(25)}  ` +
      `${String(c('calls')).padStart(12)}  ${String(c('recorded')).padStart(8)}  ${String(c('compiled')).padStart(10)}`);
    rows.push({ wall, ref, ...Object.fromEntries(COUNTERS.map((n) => [n, c(n)])) });
  });
  result[bins.length > 1 ? 'AB'[j] : 'ringzero'] = Object.fromEntries(PHASES.map((p, k) => [p, rows[k]]));
}
if (qemu >= 0) result.qemu_tcg = Object.fromEntries(PHASES.map((p, k) => [p, med(qemu, (r) => r.wall[k]) / 1000]));
console.log(JSON.stringify(result));
