// bench/syscall-counts (issue 4): what one guest system call costs the soft engine, in counts that host load does
// not change. Boots the default guest (bench/engines' command line), runs bench/engines' syscall workload
// (`dd if=/dev/zero of=/dev/null bs=1 count=N`: 2N one-byte read/write calls) and an empty one (count=0), reads the
// machine's counters through the control socket's {"cmd":"stats"} before and after each, and prints the difference
// per system call: guest instructions, returns from wasm to JavaScript (wasm.calls), dispatcher entries by how the
// last block left (x.KIND.direct/lookup: translate.ts X_NAMES; x.KIND.tail: tail calls), replays and helper calls
// (wasm.replays, conds: RDTSC, SYSCALL/SYSRET slow paths), memory-library calls, page walks (soft.tlbWalks) and
// device exits. It also prints the guest's /sys/devices/system/cpu/vulnerabilities (whether the kernel runs with
// page-table isolation or other entry-path mitigations on the CPUID the soft engine presents).
//
//   node --import tsx bench/syscall-counts.ts [--count 100000] [--bin PATH/bin/ringzero] [--exit-stats] [--ash]
//                                            [--perf FILE [--perf-g | --perf-jit]] [--qemu] [--warm 1000]
//
// --perf-g records call chains (frame pointers: V8's JIT code keeps them) and keeps the VMM's perf map as FILE.map
// (its PID in FILE.pid: copy it to /tmp/perf-PID.map, then `perf report -i FILE -g caller --tid PID`).
//
// --warm N: the warm-up run's count before the measured ones (reregion forms the hot pages' regions again over the
// first tens of thousands of calls: a larger N measures the settled path).
//
// --qemu runs the same commands under qemu-system-x86_64 -accel tcg with the instruction-count plugin
// (bench/support/qemu-icount.ts) instead, and prints QEMU's guest instructions and host µs per call (per iteration),
// for the comparison of instructions per call and time per instruction.
//
// --ash runs bench/engines' ash workload instead (`i=0; while [ $i -lt N ]; do i=$((i+1)); done`) and prints the
// counts per loop iteration.
//
// --exit-stats runs the VMM with RINGZERO_WASM_EXIT_STATS=1 (the x.* and write-back counters; slower code, same
// guest path). Wall time is printed too but means little on a loaded host. Ends with one JSON line.
//
// --perf FILE: `perf record -F 999` of the VMM process (its cpu-clock samples: this host's VM has no hardware
// counters) during the measured command, into FILE, and the share of the VMM's main thread's samples by kind of code:
// translated guest code (kernel / user half, by the functions' names: RINGZERO_WASM_NAMES=1), the dispatcher, the
// memory and flag libraries, the helper trampolines, JavaScript, V8's builtins and the rest (the VMM runs with
// NODE_OPTIONS=--perf-basic-prof, whose /tmp/perf-PID.map names the JIT code; `perf report -i FILE --tid PID` then
// reads the same names). Session 29 (dd, main thread): kernel code ~53%, dispatcher ~21%, JavaScript ~9%, user
// code ~7%, the memory library ~2%; per system call one RDTSC (Linux's kernel-stack offset) goes to JavaScript for
// the host clock (~4-5% of the samples with its helper, wrapper and clock read).
// Session 31 (load ~4-15, count 200000): QEMU TCG runs 701-702 guest instructions per system call, ringzero 698; QEMU
// 1.25-1.31 µs wall / 1.24 µs process CPU per call, ringzero 2.10 µs wall and 2.07-2.53 µs main-thread CPU warm
// (--warm 100000). perf (main thread): kernel code 43-49%, dispatcher 20-27%, JavaScript 9-17% (the RDTSC helper
// ~3%: readTsc, sy, wasm-to-js, clock_gettime), user code 6%, memory library 1-2.5%.
// --perf-jit (with --perf FILE): the VMM writes V8's jitdump instead (NODE_OPTIONS=--perf-prof, in FILE.jitdir, which
// the VMM starts in), `perf record -k 1`, and `perf inject --jit` makes FILE.jit, whose translated functions perf
// annotate can disassemble (`perf annotate -i FILE.jit --stdio -s 'JS:rz.g...-turbofan'`). It also prints where
// inside translated functions the samples fall: on their first 32 bytes (landing in the function: the call's
// target fetch) and in their first 160 (the prologue: frame, stack check, parameters, the first register loads).
// Session 36 (Intel host): the syscall loop (200k) dispatcher 22.8%, kernel code 51.4%, and of the translated
// functions' samples 9.3% in their first 32 bytes and 24.4% in their first 160; the ash loop (100k, by hand) dispatcher
// 10.8%, 12.8% of the translated functions' samples in their first 160 bytes.
import { BenchGuest } from './support/session.ts';
import { spawn, spawnSync } from 'node:child_process';
import { controlRequest } from '../src/vmm/control.ts';
import { CMDLINE, benchArgs, positiveInt, qemuTcgArgs, requireImage } from './support/common.ts';
import { QemuInstructionCounter } from './support/qemu-icount.ts';
import { threadRunTimes } from '../src/sys/proc-stat.ts';
import os from 'node:os';
import path from 'node:path';
import fs from 'node:fs';

const { values } = benchArgs(import.meta.url, {
  options: {
    count: { type: 'string', default: '100000' },
    bin: { type: 'string' },
    'exit-stats': { type: 'boolean', default: false },
    ash: { type: 'boolean', default: false },
    perf: { type: 'string' },
    qemu: { type: 'boolean', default: false },
    warm: { type: 'string', default: '1000' },
    'perf-g': { type: 'boolean', default: false },
    'perf-jit': { type: 'boolean', default: false },
  },
});
if (values['perf-jit'] && values.perf === undefined) throw new Error('--perf-jit needs --perf FILE');
const count = positiveInt('count', values.count);
const image = requireImage('syscall-counts');
if (values['exit-stats']) process.env.RINGZERO_WASM_EXIT_STATS = '1'; // (inherited by the VMM)
if (values.perf !== undefined) {
  // (inherited by the VMM: its JIT code named in /tmp/perf-PID.map, translated functions after their guest address;
  // --perf-jit: in a jitdump written to the VMM's working directory, FILE.jitdir)
  values.perf = path.resolve(values.perf);
  process.env.NODE_OPTIONS = `${process.env.NODE_OPTIONS ?? ''} ${values['perf-jit'] ? '--perf-prof' : '--perf-basic-prof'}`.trim();
  process.env.RINGZERO_WASM_NAMES = '1';
  if (values['perf-jit']) {
    fs.rmSync(`${values.perf}.jitdir`, { recursive: true, force: true });
    fs.mkdirSync(`${values.perf}.jitdir`);
    process.chdir(`${values.perf}.jitdir`);
  }
}
const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'rz-syscall-counts-'));
const sock = path.join(dir, 'control.sock');
const args = ['--engine', 'soft', '--cmdline', CMDLINE, '--control-socket', sock];
const qemuCounter = values.qemu ? new QemuInstructionCounter(path.join(dir, 'qemu-icount.bin')) : undefined;
const guest = qemuCounter !== undefined
  ? BenchGuest.qemu('qemu -accel tcg', qemuTcgArgs({ kernel: image.kernel, initrd: image.initrd, cmdline: CMDLINE, cpus: 1, memory: '256M' }, qemuCounter.args))
  : values.bin ? BenchGuest.ringzeroAt('ringzero', values.bin, args) : BenchGuest.ringzero('ringzero', args);
/** The VMM's counters: ringzero's control-socket stats, or QEMU's plugin count as `instructions`. */
async function statsNow(): Promise<Record<string, number>> {
  if (qemuCounter !== undefined) {
    await new Promise((resolve) => setTimeout(resolve, 20)); // (the plugin rewrites its file every ~1 ms)
    return { instructions: qemuCounter.instructions() };
  }
  return flatten(await controlRequest(sock, { cmd: 'stats' }, 30_000));
}

/** Every numeric leaf of a stats answer, by dotted path. */
function flatten(x: unknown, pre = '', out: Record<string, number> = {}): Record<string, number> {
  if (typeof x === 'number') out[pre] = x;
  else if (x && typeof x === 'object') for (const [k, v] of Object.entries(x)) flatten(v, pre ? `${pre}.${k}` : k, out);
  return out;
}

/** --perf: the main thread's samples by kind of code (percent of its samples), from `perf report` of FILE. */
function perfShares(file: string, pid: number): Record<string, number> {
  const r = spawnSync('perf', ['report', '-i', file, '--tid', String(pid), '--no-children', '--sort', 'sym', '-g', 'none', '--stdio'], { encoding: 'utf8', maxBuffer: 64 << 20 });
  const kinds: Record<string, number> = {};
  let all = 0;
  for (const line of r.stdout.split('\n')) {
    const m = /^\s*([\d.]+)%\s+\[(.)\]\s+(.*)$/.exec(line);
    if (m === null) continue;
    const p = Number(m[1]), sym = m[3];
    const kind = /rz\.dispatch/.test(sym) ? 'dispatcher' : /rz\.gffff/.test(sym) ? 'kernel code' : /rz\.[gp][0-9a-f]/.test(sym) ? 'user code'
      : /rz\.mem\./.test(sym) ? 'memory library' : /rz\.flag/.test(sym) ? 'flag library' : /rz\.helper|wasm-to-js/.test(sym) ? 'helpers'
        : /^JS:/.test(sym) || /^[*~]/.test(sym) ? 'JavaScript' : /Builtins_/.test(sym) ? 'V8 builtins' : m[2] === 'k' ? 'host kernel' : 'other';
    kinds[kind] = (kinds[kind] ?? 0) + p;
    all += p;
  }
  for (const k of Object.keys(kinds)) kinds[k] = Number((100 * kinds[k] / (all || 1)).toFixed(1));
  // (the top symbols too, while the VMM's perf map still exists: the finally block removes it)
  fs.writeFileSync(`${file}.top.txt`, r.stdout.split('\n').filter((l) => /^\s*[\d.]+%/.test(l)).slice(0, 200).join('\n') + '\n');
  return kinds;
}

let perfOut: Record<string, number> | undefined;
let perfEntry: Record<string, number> | undefined;

/**
 * --perf-jit: of the main thread's samples in translated functions (rz.g / rz.p, either tier), the percentage at an
 * offset below 32 and below 160 bytes from the function's start.
 */
function entryShares(file: string, pid: number): Record<string, number> {
  const r = spawnSync('perf', ['script', '-i', file, '--tid', String(pid), '-F', 'ip,sym,symoff'], { encoding: 'utf8', maxBuffer: 1 << 30 });
  let all = 0, first32 = 0, first160 = 0;
  for (const line of r.stdout.split('\n')) {
    const m = /JS:rz\.[gp][0-9a-f]+-\d+-(?:turbofan|liftoff)\+0x([0-9a-f]+)/.exec(line);
    if (m === null) continue;
    const off = parseInt(m[1], 16);
    all++;
    if (off < 32) first32++;
    if (off < 160) first160++;
  }
  const pct = (n: number) => Number((100 * n / (all || 1)).toFixed(1));
  return { translatedSamples: all, first32Pct: pct(first32), first160Pct: pct(first160) };
}

/** CPU seconds so far of ringzero's main thread (the guest's vCPU: the process's first thread), or all of QEMU's. */
function mainCpu(): number {
  const pid = guest.session.child.pid!;
  let all = 0;
  for (const { tid, ns } of threadRunTimes(pid)) {
    if (qemuCounter === undefined && tid === pid) return ns / 1e9;
    all += ns / 1e9;
  }
  return all;
}

async function measure(n: number, perf = false): Promise<{ d: Record<string, number>; ms: number; cpu: number }> {
  const a = await statsNow();
  const c0 = mainCpu();
  const ash = values.ash;
  const cmd = ash ? `i=0; while [ $i -lt ${n} ]; do i=$((i+1)); done; echo $i` : `dd if=/dev/zero of=/dev/null bs=1 count=${n}`;
  const pid = guest.session.child.pid!;
  const rec = perf ? spawn('perf', ['record', '-q', '-e', 'cpu-clock', '-F', values['perf-jit'] ? '4999' : '999', ...(values['perf-jit'] ? ['-k', '1'] : []), ...(values['perf-g'] ? ['--call-graph=fp'] : []), '-p', String(pid), '-o', values.perf!], { stdio: 'ignore' }) : null;
  if (rec !== null) await new Promise((resolve) => setTimeout(resolve, 300));
  const r = await guest.timed(`${ash ? 'ash' : 'dd'}${n}`, cmd, 1_800_000);
  if (rec !== null) {
    rec.kill('SIGINT');
    await new Promise((resolve) => rec.once('exit', resolve));
    if (values['perf-jit']) {
      // (the jitdump is complete once the VMM has exited or flushed it: perf inject reads what is there now)
      const inj = spawnSync('perf', ['inject', '--jit', '-i', values.perf!, '-o', `${values.perf}.jit`], { encoding: 'utf8', stdio: ['ignore', 'ignore', 'pipe'] });
      if (inj.status !== 0) throw new Error(`perf inject --jit failed: ${inj.stderr}`);
      perfOut = perfShares(`${values.perf}.jit`, pid);
      perfEntry = entryShares(`${values.perf}.jit`, pid);
    } else {
      perfOut = perfShares(values.perf!, pid);
    }
  }
  if (!new RegExp(ash ? `(^|\\n)${n}\\n` : `${n}\\+0 records out`).test(r.output)) throw new Error(`${cmd} failed: ${r.output}`);
  const cpu = mainCpu() - c0;
  const b = await statsNow();
  const d: Record<string, number> = {};
  for (const k of Object.keys(b)) if (k in a && !k.startsWith('process.')) d[k] = b[k] - a[k];
  return { d, ms: r.hostMs, cpu };
}

try {
  await guest.waitForShell();
  const vuln = await guest.ask('vuln', "grep . /sys/devices/system/cpu/vulnerabilities/* | sed 's,.*/,,' | tr '\\n' ' '");
  console.log(`guest vulnerabilities: ${vuln}`);
  await measure(positiveInt('warm', values.warm)); // (warm: the path translated; larger --warm: its regions formed again too)
  const empty = await measure(1);
  const full = await measure(count + 1, values.perf !== undefined);
  const calls = values.ash ? count : 2 * count;
  const per: Record<string, number> = {};
  for (const k of Object.keys(full.d)) {
    const v = (full.d[k] - (empty.d[k] ?? 0)) / calls;
    if (Math.abs(v) >= 0.001 && !/Ms$|bytes|guestNs|compile|build/i.test(k)) per[k] = Number(v.toFixed(3));
  }
  const unit = values.ash ? 'loop iteration' : 'system call';
  const cpuUs = (full.cpu - empty.cpu) * 1e6 / calls;
  console.log(`${values.ash ? 'ash loop' : 'dd bs=1'} count=${count}: ${calls} ${unit}s, ${(full.ms - empty.ms).toFixed(0)} ms host time (${((full.ms - empty.ms) * 1e3 / calls).toFixed(2)} µs per ${unit}; loaded hosts vary), ${values.qemu ? 'process' : 'main thread'} CPU ${cpuUs.toFixed(2)} µs per ${unit}`);
  console.log(`per ${unit}:`);
  for (const [k, v] of Object.entries(per)) console.log(`  ${k.padEnd(40)} ${v}`);
  if (perfOut !== undefined) {
    console.log(`main thread's perf samples by kind of code (%; ${values.perf}; top symbols in ${values.perf}.top.txt):`);
    for (const [k, v] of Object.entries(perfOut).sort((x, y) => y[1] - x[1])) console.log(`  ${k.padEnd(40)} ${v}`);
  }
  if (perfEntry !== undefined) {
    console.log(`translated functions' samples (${perfEntry.translatedSamples}): ${perfEntry.first32Pct}% in their first 32 bytes, ${perfEntry.first160Pct}% in their first 160 (${values.perf}.jit)`);
  }
  console.log(JSON.stringify({ bench: 'syscall-counts', vmm: values.qemu ? 'qemu' : 'ringzero', workload: values.ash ? 'ash' : 'syscall', count, exitStats: values['exit-stats'], usPerCall: Number(((full.ms - empty.ms) * 1e3 / calls).toFixed(3)), cpuUsPerCall: Number(cpuUs.toFixed(3)), perCall: per, ...(perfOut !== undefined ? { perf: perfOut } : {}), ...(perfEntry !== undefined ? { perfEntry } : {}) }));
} finally {
  const pid = guest.session.child.pid;
  guest.session.close();
  fs.rmSync(dir, { recursive: true, force: true });
  // (the VMM's perf map, which --perf had it write)
  // (--perf-g: kept as FILE.map for `perf report -g` later: copy it back to /tmp/perf-PID.map, PID in FILE.pid)
  if (values.perf !== undefined && pid !== undefined && values['perf-g'] && fs.existsSync(`/tmp/perf-${pid}.map`)) {
    fs.copyFileSync(`/tmp/perf-${pid}.map`, `${values.perf}.map`);
    fs.writeFileSync(`${values.perf}.pid`, `${pid}\n`);
  }
  if (values.perf !== undefined && pid !== undefined) fs.rmSync(`/tmp/perf-${pid}.map`, { force: true });
}
