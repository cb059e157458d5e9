// bench/io-passes (issue 5): how the soft engine's cost per guest instruction on bench/io's read path falls as that
// path warms up. One boot, then PASSES consecutive `dd if=/dev/vda of=/dev/null bs=1M count=MB iflag=direct`
// (the same O_DIRECT read as bench/io's read test), each timed between console markers, with the guest thread's CPU
// (ringzero's main thread, QEMU's "CPU 0/TCG") and, for ringzero, the control socket's counters around each pass:
// guest instructions, instructions run outside wasm, JavaScript -> wasm calls, blocks translated, V8 compile time,
// memory-library calls (with RINGZERO_WASM_EXIT_STATS=1), replays, instructions run in JavaScript by why their
// block was not in wasm (with RINGZERO_TIER_STATS=1). QEMU TCG runs the same passes for reference.
//
//   node --import tsx bench/io-passes.ts [--passes 8] [--mb 16] [--only ringzero,qemu] [--cmd read|write|buffered|randread]
//                                        [--reads 2000] [--scheduler NAME] [--qemu-count] [--profile-dir DIR [--kallsyms FILE]] [--nokaslr]
//
// --cmd randread: bench/io's 4 KiB O_DIRECT random reads at queue depth 1 (bench/support/randread.c), --reads per
// pass; figures are then per read instead of per MiB. --scheduler NAME: the guest's I/O scheduler for /dev/vda (both
// VMMs; Linux's default for a single-queue device is mq-deadline) before the first pass.
//
// Prints one row per pass and VMM (ns of guest-thread CPU per guest instruction; QEMU's count is ringzero's, as both
// guests run the same kernel path: bench/io's README section, unless --qemu-count counts QEMU's own with a TCG plugin,
// bench/support/qemu-icount-plugin.c, built with gcc and cached), then one JSON line. Per pass and VMM also the
// guest's own block requests per MiB and KiB per request (/sys/block/vda/stat, read before and after the pass), and
// once per VMM the guest's request queue limits and the device's negotiated features (/sys/block/vda/queue/*,
// /sys/block/vda/device/features), so the two VMMs' splitting of a 1 MiB read can be compared.
// --profile-dir DIR: where each VMM's guest ran its instructions in each pass, DIR/VMM-passN.txt (hex guest address,
// instructions): ringzero's from `--profile-guest` (one RIP sampled per run-loop slice, weighted by the slice's
// instructions; the control socket's `guest-profile` between passes), QEMU's exact by translation block start (needs
// --qemu-count). With --kallsyms FILE (the guest's /proc/kallsyms of a `nokaslr` boot; --nokaslr boots both guests so)
// the last pass's top functions are printed side by side, in instructions per MiB. On stderr, per ringzero pass: wall,
// guest-thread CPU and its wait for a CPU, process CPU, modules and blocks translated, the mean wait of a module from
// its flush to its install, and each thread's CPU (RINGZERO_BENCH_TIDS=1: by thread id; V8's workers are all "node").
// RINGZERO_BENCH_WINDOWS=FILE notes each pass's interval for a RINGZERO_VMM_CPU_PROF profile (as bench/io);
// RINGZERO_BENCH_PERF=DIR records `perf` CPU samples of the guest thread per pass (with NODE_OPTIONS=--perf-basic-prof;
// RINGZERO_BENCH_PERF_ALL=1: of all the VMM's threads; RINGZERO_BENCH_PERF_HZ: samples per second, 2000 unless set).
// RINGZERO_BENCH_STATS_DUMP=DIR writes every ringzero counter that moved in a pass, per unit, to DIR/ringzero-passN.json.
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { CMDLINE, warmHostCache, schedulerOption, setSchedulerCommand, checkScheduler, nameList, onCleanup, positiveInt, printTable, qemuPresent, qemuTcgArgs, requireImage, benchArgs } from './support/common.ts';
import { BenchGuest } from './support/session.ts';
import { initrdWithPrograms } from './support/initramfs.ts';
import { QemuInstructionCounter } from './support/qemu-icount.ts';
import { controlRequest } from '../src/vmm/control.ts';
import { threadRunTimes } from '../src/sys/proc-stat.ts';
import { parseKallsyms, symbolFor } from '../src/vmm/guest-profile.ts';

const { values } = benchArgs(import.meta.url, {
  options: {
    passes: { type: 'string', default: '8' },
    mb: { type: 'string', default: '16' },
    only: { type: 'string', default: 'ringzero,qemu' },
    memory: { type: 'string', default: '256M' },
    cmd: { type: 'string', default: 'read' },
    reads: { type: 'string', default: '2000' },
    scheduler: { type: 'string' },
    'qemu-count': { type: 'boolean', default: false },
    'profile-dir': { type: 'string' },
    kallsyms: { type: 'string' },
    nokaslr: { type: 'boolean', default: false },
  },
});
const cmdline = values.nokaslr ? `${CMDLINE} nokaslr` : CMDLINE;
const profileDir = values['profile-dir'];
if (profileDir) fs.mkdirSync(profileDir, { recursive: true });
const symbols = values.kallsyms ? parseKallsyms(fs.readFileSync(values.kallsyms, 'utf8')) : [];
/** Each VMM's last-pass profile: instructions by function. */
const lastProfile = new Map<string, Map<string, number>>();
function profileByFunction(counts: Map<string, number>): Map<string, number> {
  const out = new Map<string, number>();
  for (const [hex, n] of counts) {
    const where = symbolFor(symbols, Number(BigInt.asIntN(64, BigInt(`0x${hex}`))));
    out.set(where, (out.get(where) ?? 0) + n);
  }
  return out;
}
function writeProfile(file: string, counts: Map<string, number>): void {
  fs.writeFileSync(file, [...counts].sort((a, b) => b[1] - a[1]).map(([a, n]) => `${a} ${n}`).join('\n') + '\n');
}
const passes = positiveInt('passes', values.passes);
const mb = positiveInt('mb', values.mb);
const reads = positiveInt('reads', values.reads);
/** The pass's units: MiB, or reads for randread. */
const units = values.cmd === 'randread' ? reads : mb;
const unitName = values.cmd === 'randread' ? 'read' : 'MiB';
const scheduler = schedulerOption(values.scheduler);
const only = nameList('only', values.only, ['ringzero', 'qemu']);
if (profileDir && only.includes('qemu') && !values['qemu-count']) throw new Error('--profile-dir: QEMU\'s profile needs --qemu-count');
const image = requireImage('io-passes');
const work = fs.mkdtempSync(path.join(os.tmpdir(), 'ringzero-bench-io-passes-'));
onCleanup(() => fs.rmSync(work, { recursive: true, force: true }));
const disk = path.join(work, 'disk.raw');
fs.writeFileSync(disk, '');
fs.truncateSync(disk, Math.max(mb, 64) * 1024 * 1024);
const sock = path.join(work, 'rz.sock');
const commands: Record<string, string> = {
  read: `dd if=/dev/vda of=/dev/null bs=1M count=${mb} iflag=direct`,
  write: `dd if=/dev/zero of=/dev/vda bs=1M count=${mb} conv=fsync`,
  buffered: `echo 3 >/proc/sys/vm/drop_caches; dd if=/dev/vda of=/dev/null bs=1M count=${mb}`,
  randread: `randread /dev/vda ${reads} 7919`,
};
const initrd = values.cmd === 'randread' ? initrdWithPrograms(image.initrd, ['randread']) : image.initrd;
const command = commands[values.cmd!];
if (!command) throw new Error(`--cmd: one of ${Object.keys(commands).join(', ')}`);

const qemuCounter = values['qemu-count'] && only.includes('qemu') ? new QemuInstructionCounter(path.join(work, 'qemu-icount.bin')) : undefined;
/** ringzero's guest profile since the last call: hex address -> instructions (samples x slice). */
async function ringzeroProfile(): Promise<Map<string, number>> {
  const r = await controlRequest(sock, { cmd: 'guest-profile' }, 30_000) as { ok: boolean; every?: number; addresses?: [string, number][]; error?: string };
  if (!r.ok) throw new Error(`guest-profile: ${r.error}`);
  return new Map(r.addresses!.map(([a, n]) => [a, n * r.every!]));
}
/** The guest's /sys/block/vda/stat fields (Documentation/block/stat.rst): read I/Os, merges, sectors, ms, write I/Os, ... */
async function blockStat(g: BenchGuest, tag: string): Promise<number[]> {
  const r = await g.timed(tag, 'cat /sys/block/vda/stat', 120_000);
  return r.output.trim().split(/\s+/).map(Number);
}

type Flat = Record<string, number>;
function flatten(v: unknown, prefix: string, out: Flat): Flat {
  if (typeof v === 'number') out[prefix] = v;
  else if (v && typeof v === 'object') for (const [k, x] of Object.entries(v)) flatten(x, prefix ? `${prefix}.${k}` : k, out);
  return out;
}
async function stats(): Promise<Flat> {
  const r = await controlRequest(sock, { cmd: 'stats' }, 30_000);
  return flatten(r, '', {});
}

interface Row { vmm: string; pass: number; threadMs: number; instr: number; requests: number; kibPerRequest: number; nsPerInstr: number; notWasm: number; calls: number; compiled: number; compileMs: number; libCalls: number; replays: number; walks: number; lookups: number; named: number; writeBacks: number; regLoads: number; jsTier: number[] }
const rows: Row[] = [];
const sumOf = (a: Flat, b: Flat, re: RegExp): number => Object.keys(b).filter((k) => re.test(k)).reduce((n, k) => n + b[k] - (a[k] ?? 0), 0);
let ringzeroInstr: number[] = [];
const windowsFile = process.env.RINGZERO_BENCH_WINDOWS;
/** ms of CPU (schedstat) of each of the VMM's threads, summed by thread name. */
function threadCpu(g: BenchGuest): Map<string, number> {
  const out = new Map<string, number>();
  for (const { tid, comm, ns } of threadRunTimes(g.session.child.pid!)) {
    const key = process.env.RINGZERO_BENCH_TIDS ? `${comm}/${tid}` : comm;
    out.set(key, (out.get(key) ?? 0) + ns / 1e6);
  }
  return out;
}
const monoOffsetUs = Number(process.hrtime.bigint() / 1000n) - performance.now() * 1000;
for (const vmm of only) {
  const guest = vmm === 'ringzero'
    ? BenchGuest.ringzero('ringzero soft', ['--engine', 'soft', '--memory', values.memory!, '--cmdline', cmdline, '--initrd', initrd, '--disk', disk, '--control-socket', sock,
      ...(profileDir ? ['--profile-guest', path.join(profileDir, 'ringzero-rest.json')] : [])])
    : qemuPresent() ? BenchGuest.qemu('qemu -accel tcg', qemuTcgArgs({ kernel: image.kernel, initrd, cmdline, cpus: 1, memory: values.memory! },
      ['-name', 'bench-io-passes,debug-threads=on', '-drive', `if=none,id=d0,file=${disk},format=raw`, '-device', 'virtio-blk-pci,drive=d0',
        ...(qemuCounter?.args ?? [])]))
      : undefined;
  if (!guest) continue;
  // (the same host page-cache state for both VMMs' disk: common.ts warmHostCache)
  warmHostCache(disk);
  await guest.waitForShell();
  // (the guest's request queue limits and the device's features, once: what decides how a 1 MiB read is split)
  const limits = await guest.timed('limits', 'cd /sys/block/vda/queue; for f in *; do [ -f $f ] && echo "$f=$(cat $f)"; done; echo features=$(cat /sys/block/vda/device/features); cd /', 120_000);
  console.error(`${vmm}: /sys/block/vda: ${limits.output.trim().split('\n').join(' ')}`);
  if (scheduler !== undefined) checkScheduler(scheduler, (await guest.timed('sched', setSchedulerCommand(scheduler), 120_000)).output, vmm);
  const counter = vmm === 'qemu' ? qemuCounter : undefined;
  for (let p = 1; p <= passes; p++) {
    const st0 = await blockStat(guest, `s${p}a`);
    const blocks0 = counter && profileDir ? await counter.blocks(path.join(work, 'blocks.txt')) : undefined;
    if (vmm === 'ringzero' && profileDir) await ringzeroProfile();
    const q0 = counter?.instructions() ?? 0;
    const a = vmm === 'ringzero' ? await stats() : {};
    const th0 = threadCpu(guest);
    // (RINGZERO_BENCH_PERF=DIR: `perf record -e cpu-clock` of ringzero's guest thread over each pass, DIR/passN.data:
    // CPU-time samples, which a loaded host does not skew as it does a wall-clock profile; the VMM's JavaScript and
    // wasm are named with RINGZERO_V8_FLAGS holding --perf-basic-prof)
    const perfDir = vmm === 'ringzero' ? process.env.RINGZERO_BENCH_PERF : undefined;
    const perf = perfDir ? spawn('perf', ['record', '-q', '-e', 'cpu-clock', '-F', process.env.RINGZERO_BENCH_PERF_HZ ?? '2000', '-g', ...(process.env.RINGZERO_BENCH_PERF_ALL === '1' ? ['-p', String(guest.session.child.pid)] : ['-t', String(guest.guestThread())]), '-o', path.join(perfDir, `pass${p}.data`)], { stdio: 'ignore' }) : undefined;
    if (perf) await new Promise((r) => setTimeout(r, 300));
    const r = await guest.timed(`p${p}`, command, 1_800_000);
    if (perf) { perf.kill('SIGINT'); await new Promise((r) => perf.once('exit', r)); }
    const th1 = threadCpu(guest);
    const b = vmm === 'ringzero' ? await stats() : {};
    // (the plugin writes its counter every 1 ms; the guest is back at its prompt, idle, once the end marker arrived)
    if (counter) await new Promise((r) => setTimeout(r, 20));
    const q1 = counter?.instructions() ?? 0;
    if (profileDir) {
      let counts: Map<string, number>;
      if (vmm === 'ringzero') counts = await ringzeroProfile();
      else {
        counts = await counter!.blocks(path.join(work, 'blocks.txt'));
        for (const [a, n] of blocks0!) { const v = counts.get(a)! - n; if (v > 0) counts.set(a, v); else counts.delete(a); }
      }
      writeProfile(path.join(profileDir, `${vmm}-pass${p}.txt`), counts);
      if (symbols.length > 0) lastProfile.set(vmm, profileByFunction(counts));
    }
    const st1 = await blockStat(guest, `s${p}b`);
    // (RINGZERO_BENCH_STATS_DUMP=DIR: every counter of the control socket's `stats` that moved in the pass, per unit,
    // DIR/ringzero-passN.json: the counts the table leaves out, e.g. each exit kind's dispatcher entries)
    const dumpDir = vmm === 'ringzero' ? process.env.RINGZERO_BENCH_STATS_DUMP : undefined;
    if (dumpDir) {
      fs.mkdirSync(dumpDir, { recursive: true });
      const moved = Object.keys(b).filter((k) => b[k] !== (a[k] ?? 0)).sort().map((k) => [k, (b[k] - (a[k] ?? 0)) / units]);
      fs.writeFileSync(path.join(dumpDir, `ringzero-pass${p}.json`), JSON.stringify(Object.fromEntries(moved), null, 1) + '\n');
    }
    const d = (k: string) => ((b[k] ?? 0) - (a[k] ?? 0)) / units;
    const instr = vmm === 'ringzero' ? d('instructions') : counter ? (q1 - q0) / units : (ringzeroInstr[p - 1] ?? NaN);
    const readIos = st1[0] - st0[0], writeIos = st1[4] - st0[4];
    const requests = (readIos + writeIos) / units, kibPerRequest = ((st1[2] - st0[2] + st1[6] - st0[6]) / 2) / Math.max(1, readIos + writeIos);
    if (vmm === 'ringzero') ringzeroInstr.push(instr);
    const threadMs = (r.threadS * 1000) / units;
    rows.push({
      vmm, pass: p, threadMs, instr, requests, kibPerRequest, nsPerInstr: (threadMs * 1e6) / instr, notWasm: d('instructions') - d('soft.jitInstructions'),
      calls: d('soft.wasm.calls'), compiled: d('soft.wasm.compiled'), compileMs: d('soft.wasm.compileMs'), libCalls: d('soft.wasm.libCalls'),
      replays: d('soft.wasm.replays'), walks: d('soft.tlbWalks'),
      // (with RINGZERO_WASM_EXIT_STATS=1: ways into the dispatcher that looked their target up / named it, register
      // write-backs and loads)
      lookups: sumOf(a, b, /^soft\.wasm\.x\.[^.]+\.lookup$/) / units, named: sumOf(a, b, /^soft\.wasm\.x\.[^.]+\.direct$/) / units,
      jsTier: ['warming', 'queued', 'inFlight', 'never', 'tooLong'].map((n) => d(`soft.jsTier.${n}`)),
      writeBacks: sumOf(a, b, /^soft\.wasm\.wb[A-Z]/) / units, regLoads: sumOf(a, b, /^soft\.wasm\.ld(Cache|Uncached|Entry|Branch)$/) / units,
    });
    console.error(`${vmm} pass ${p}: ${r.hostMs.toFixed(0)} ms wall, ${(r.threadS * 1000).toFixed(0)} ms guest thread, ${(r.threadWaitS * 1000).toFixed(0)} ms of it waiting for a CPU, ${(r.cpuS * 1000).toFixed(0)} ms process CPU`);
    // (RINGZERO_BENCH_WINDOWS=FILE: the pass's interval on the monotonic clock in µs, as V8's CPU profiles time their
    // samples (bench/io.ts), so a VMM run under RINGZERO_VMM_CPU_PROF=DIR can be profiled pass by pass)
    if (vmm === 'ringzero') {
      const D = (k: string) => (b[k] ?? 0) - (a[k] ?? 0);
      const n = D('soft.wasm.installs');
      console.error(`  modules ${D('soft.wasm.modules')}, blocks ${D('soft.wasm.compiled')} (reformed ${D('soft.wasm.reformed')}, reregioned ${D('soft.wasm.reregioned')}), ` +
        `build ${D('soft.wasm.buildMs').toFixed(0)} ms, flush to install ${(D('soft.wasm.installWaitMs') / Math.max(1, n)).toFixed(1)} ms / ${(D('soft.wasm.installWaitInstr') / Math.max(1, n) / 1e3).toFixed(0)}k instructions (mean of ${n})`);
    }
    // (the VMM's threads by name, ms of CPU in the pass: the main thread, V8's compile workers, the I/O threads)
    console.error('  threads: ' + [...th1].map(([n, v]) => `${n} ${(v - (th0.get(n) ?? 0)).toFixed(0)}`).filter((x) => !x.endsWith(' 0')).join(', '));
    if (windowsFile) fs.appendFileSync(windowsFile, JSON.stringify({ vmm, test: `pass${p}`, from: Math.round(r.beginAt * 1000 + monoOffsetUs), to: Math.round(r.endAt * 1000 + monoOffsetUs) }) + '\n');
  }
  // (a clean exit, so that a VMM run under RINGZERO_VMM_CPU_PROF writes its profile)
  if (process.env.RINGZERO_VMM_CPU_PROF) await guest.poweroff().catch(() => undefined);
  guest.close();
}
const f = (x: number, d = 0) => (Number.isFinite(x) ? x.toFixed(d) : '-');
console.log(`\nper ${unitName} of \`${command}\`, pass by pass (guest-thread CPU; QEMU's ns per instruction with ${values['qemu-count'] ? 'its own count' : 'ringzero\'s count'}):`);
printTable(['vmm', 'pass', 'thread ms', 'k instr', 'ns/instr', 'requests', 'KiB/request', 'not in wasm', 'wasm calls', 'translated', 'compile ms', 'lib calls', 'replays', 'walks', 'lookups', 'named exits', 'write-backs', 'reg loads', 'JS tier: warming/queued/in flight/never/too long'],
  rows.map((r) => [r.vmm, String(r.pass), f(r.threadMs, 2), f(r.instr / 1000, 1), f(r.nsPerInstr, 1), f(r.requests, 2), f(r.kibPerRequest, 0), f(r.notWasm), f(r.calls), f(r.compiled, 1), f(r.compileMs, 2), f(r.libCalls), f(r.replays, 1), f(r.walks, 1), f(r.lookups), f(r.named), f(r.writeBacks), f(r.regLoads), r.jsTier.map((x) => f(x)).join('/')]));
if (lastProfile.size > 0) {
  // (the last pass's functions by instructions per MiB, the VMMs side by side: same code, or more of it?)
  const names = new Map<string, number>();
  for (const m of lastProfile.values()) for (const [k, v] of m) names.set(k, Math.max(names.get(k) ?? 0, v));
  const vmms = [...lastProfile.keys()];
  console.log(`\nthe last pass's guest functions, k instructions per ${unitName} (ringzero sampled, QEMU exact):`);
  printTable(['function', ...vmms], [...names].sort((a, b) => b[1] - a[1]).slice(0, 40)
    .map(([k]) => [k, ...vmms.map((v) => f((lastProfile.get(v)!.get(k) ?? 0) / units / 1000, 2))]));
}
console.log(JSON.stringify({ bench: 'io-passes', mb, reads: values.cmd === 'randread' ? reads : undefined, passes, cmd: values.cmd, scheduler, rows }));
