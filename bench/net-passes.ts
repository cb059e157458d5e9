// bench/net-passes (issue 5): where bench/io's TCP passes spend their wall time, pass after pass in one boot, and
// the same passes on two builds side by side (A/B by count and by each pass's own CPU, on a shared host).
//
// Each VMM (ringzero soft, one per --bins entry) boots once with a TAP in a network namespace of its own, then runs
// PASSES rounds of bench/io's TCP tests (host -> guest: tcp-send.ts to tcpsink; guest -> host: tcpsource to
// tcp-recv.ts), the VMMs taking turns pass by pass. For each pass: the transfer's wall time (tcp: from the sender's
// connection to the guest's report; tcpout: the receiver's accept to half-close) and MB/s; the guest thread's CPU, its
// run-queue wait and its sleep (schedstat, over the console markers: the rest of the wall, the thread blocked:
// halted guest or an idle event loop), the VMM's CPU off that thread (V8's compile and tier-up threads, the
// compile worker, libuv's pool: /proc/PID/task/*/stat); and per MiB the machine's counters (guest instructions,
// the card's notifies and interrupts, frames, halts, the run loop's halted and event-loop ms).
//
//   node --import tsx bench/net-passes.ts [--passes 4] [--net-mb 16] [--only tcp,tcpout] [--bins A/bin/ringzero,B/bin/ringzero]
//
// Needs root (TAP, netns). RINGZERO_NETPASS_ENV_A / _B (JSON objects of strings) add variables to the first / second
// VMM only, e.g. --bins bin/ringzero,bin/ringzero with '{"RINGZERO_NET_TX_THREAD":"0"}' for B: one build with and
// without a switch. RINGZERO_TIER_STATS=1 (inherited by both) fills the JavaScript-tier column;
// RINGZERO_NETPASS_PERF=DIR records each pass with `perf record -g --per-thread` (DIR/VM-TEST-PASS.data: V8's
// compile threads apart from the main thread); RINGZERO_BENCH_WINDOWS=FILE with RINGZERO_VMM_CPU_PROF=DIR cuts a
// `node --cpu-prof` of the VMM to each pass (bench/io's format, test "tcp:PASS").
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { CMDLINE, median, onCleanup, positiveInt, printTable, requireImage, ROOT, RINGZERO, benchArgs } from './support/common.ts';
import { initrdWithPrograms } from './support/initramfs.ts';
import { NetNamespace, deleteTap, tapUnavailable } from './support/netns.ts';
import { BenchGuest, type TimedResult } from './support/session.ts';
import { controlRequest } from '../src/vmm/control.ts';
import { readProcStat, statCpuSeconds } from '../src/sys/proc-stat.ts';

const { values } = benchArgs(import.meta.url, {
  options: {
    passes: { type: 'string', default: '4' },
    'net-mb': { type: 'string', default: '16' },
    only: { type: 'string', default: 'tcp,tcpout' },
    bins: { type: 'string', default: '' },
    memory: { type: 'string', default: '256M' },
  },
});
const passes = positiveInt('passes', values.passes);
const netMb = positiveInt('net-mb', values['net-mb']);
const tests = values.only!.split(',').filter(Boolean);
for (const t of tests) if (t !== 'tcp' && t !== 'tcpout') throw new Error(`--only: tcp, tcpout (not '${t}')`);
const noTap = tapUnavailable();
if (noTap) {
  console.error(`bench/net-passes: ${noTap}`);
  process.exit(2);
}
const bins = values.bins ? values.bins.split(',').filter(Boolean) : [RINGZERO];
const image = requireImage('net-passes');
const initrd = initrdWithPrograms(image.initrd, ['tcpsink', 'tcpsource']);
const work = fs.mkdtempSync(path.join(os.tmpdir(), 'ringzero-bench-net-passes-'));
onCleanup(() => fs.rmSync(work, { recursive: true, force: true }));
const GUEST_IP = '10.0.2.15';
const HOST_IP = '10.0.2.1';
const PORT = 5555;
const MiB = 1024 * 1024;

type Flat = Record<string, number>;
function flatten(v: unknown, prefix: string, out: Flat): Flat {
  if (typeof v === 'number') out[prefix] = v;
  else if (v && typeof v === 'object') for (const [k, x] of Object.entries(v)) flatten(x, prefix ? `${prefix}.${k}` : k, out);
  return out;
}

/** CPU seconds (user + system, proc(5)) of every thread of `pid` but `tid`. */
function otherThreadSeconds(pid: number, tid: number): number {
  let n = 0;
  for (const t of fs.readdirSync(`/proc/${pid}/task`)) {
    if (Number(t) === tid) continue;
    const stat = readProcStat(`/proc/${pid}/task/${t}/stat`);
    if (stat !== undefined) n += statCpuSeconds(stat); // (else gone)
  }
  return n;
}

interface Vm { label: string; guest: BenchGuest; sock: string; ns: NetNamespace; tap: string }
/** RINGZERO_NETPASS_ENV_A / _B: a JSON object of strings, the environment added to that VMM alone. */
function envFor(i: number): Record<string, string> {
  const name = `RINGZERO_NETPASS_ENV_${'AB'[i]}`;
  const text = process.env[name];
  if (!text) return {};
  const v: unknown = JSON.parse(text);
  if (!v || typeof v !== 'object' || Array.isArray(v) || !Object.values(v).every((x) => typeof x === 'string')) throw new Error(`${name}: a JSON object of strings`);
  return v as Record<string, string>;
}
function startVm(bin: string, i: number): Vm {
  const tap = `rzn${process.pid % 10000}v${i}`;
  const sock = path.join(work, `rz${i}.sock`);
  const ns = new NetNamespace(`rz-bench-np-${process.pid}-${i}`, HOST_IP);
  const extra = envFor(i);
  const saved: Record<string, string | undefined> = {};
  for (const [k, v] of Object.entries(extra)) { saved[k] = process.env[k]; process.env[k] = v; }
  try {
    const args = ['--engine', 'soft', '--memory', values.memory!, '--cmdline', CMDLINE, '--initrd', initrd, '--control-socket', sock, '--net', `tap=${tap},mac=52:54:00:12:34:56`];
    const label = `${'AB'[i]}: ${path.relative(ROOT, bin) || bin}${Object.keys(extra).length ? ` ${JSON.stringify(extra)}` : ''}`;
    const guest = bins.length === 1 && bin === RINGZERO ? BenchGuest.ringzero(label, args) : BenchGuest.ringzeroAt(label, bin, args);
    return { label, guest, sock, ns, tap };
  } finally {
    for (const [k, v] of Object.entries(saved)) { if (v === undefined) delete process.env[k]; else process.env[k] = v; }
  }
}

async function stats(vm: Vm): Promise<Flat> {
  return flatten(await controlRequest(vm.sock, { cmd: 'stats' }, 30_000), '', {});
}

interface Pass { wallMs: number; r: TimedResult; otherS: number }
async function tcp(vm: Vm): Promise<Pass> {
  const [cmd, args] = vm.ns.exec([process.execPath, '--import', 'tsx', path.join(ROOT, 'bench', 'support', 'tcp-send.ts'), GUEST_IP, String(PORT), String(netMb * MiB)]);
  const pid = vm.guest.session.child.pid!;
  const o0 = otherThreadSeconds(pid, pid);
  const receiving = vm.guest.timed('tcp', `tcpsink ${PORT}`, 1_800_000, {});
  let connectedAt = 0;
  const sender: ChildProcess = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'], cwd: ROOT });
  const gone = onCleanup(() => sender.kill('SIGKILL'));
  sender.stdout!.setEncoding('utf8').on('data', (s: string) => { if (!connectedAt && s.includes('connected')) connectedAt = performance.now(); });
  try {
    const r = await receiving;
    if (!r.output.includes(`tcpsink: ${netMb * MiB} bytes`)) throw new Error(`tcpsink: ${r.output}`);
    return { wallMs: r.endAt - connectedAt, r, otherS: otherThreadSeconds(pid, pid) - o0 };
  } finally {
    sender.kill('SIGKILL');
    gone();
  }
}
async function tcpout(vm: Vm): Promise<Pass> {
  const [cmd, args] = vm.ns.exec([process.execPath, '--import', 'tsx', path.join(ROOT, 'bench', 'support', 'tcp-recv.ts'), HOST_IP, String(PORT + 1)]);
  const receiver: ChildProcess = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'], cwd: ROOT });
  const gone = onCleanup(() => receiver.kill('SIGKILL'));
  let out = '';
  receiver.stdout!.setEncoding('utf8').on('data', (t: string) => { out += t; });
  const exited = new Promise((r) => receiver.on('exit', r));
  try {
    while (!out.includes('listening')) {
      if (receiver.exitCode !== null) throw new Error('tcp-recv did not start');
      await new Promise((r) => setTimeout(r, 20));
    }
    const pid = vm.guest.session.child.pid!;
    const o0 = otherThreadSeconds(pid, pid);
    const r = await vm.guest.timed('tcpout', `tcpsource ${HOST_IP} ${PORT + 1} ${netMb * MiB}`, 1_800_000, {});
    const otherS = otherThreadSeconds(pid, pid) - o0;
    await exited;
    const m = /received (\d+) bytes in ([0-9.]+) ms/.exec(out);
    if (!m || Number(m[1]) !== netMb * MiB) throw new Error(`tcp-recv: ${out}`);
    return { wallMs: Number(m[2]), r, otherS };
  } finally {
    receiver.kill('SIGKILL');
    gone();
  }
}

interface Row { vm: number; test: string; pass: number; mbs: number; wallMs: number; threadMs: number; waitMs: number; sleepMs: number; otherMs: number; per: Flat }
const rows: Row[] = [];
const vms = bins.map((b, i) => startVm(b, i));
try {
  for (const vm of vms) await vm.ns.adopt(vm.tap);
  for (const vm of vms) {
    await vm.guest.waitForShell();
    await vm.guest.ask('NETUP', `ip addr add ${GUEST_IP}/24 dev eth0 && ip link set eth0 up && { nc -w 2 ${HOST_IP} 9 </dev/null >/dev/null 2>&1; echo up; }`, 60_000);
  }
  for (let p = 1; p <= passes; p++) {
    for (const t of tests) {
      for (let i = 0; i < vms.length; i++) {
        const vm = vms[(i + p) % vms.length]; // (which VMM goes first alternates pass by pass)
        const vi = vms.indexOf(vm);
        const a = await stats(vm);
        // RINGZERO_NETPASS_PERF=DIR: `perf record` of the VMM process (every thread) over each pass, to DIR/VM-TEST-PASS.data
        const perfDir = process.env.RINGZERO_NETPASS_PERF;
        const perf = perfDir ? spawn('perf', ['record', '-q', '-e', 'cpu-clock', '-F', '999', '-g', '--per-thread', '-p', String(vm.guest.session.child.pid), '-o', path.join(perfDir, `${'AB'[vi]}-${t}-${p}.data`)], { stdio: 'ignore' }) : undefined;
        if (perf) await new Promise((r) => setTimeout(r, 300));
        const x = t === 'tcp' ? await tcp(vm) : await tcpout(vm);
        if (perf) { perf.kill('SIGINT'); await new Promise((r) => perf.on('exit', r)); }
        const b = await stats(vm);
        // RINGZERO_BENCH_WINDOWS=FILE: the pass's interval on the monotonic clock (µs, as V8's CPU profiles time their
        // samples; bench/io's format), for a VMM under RINGZERO_VMM_CPU_PROF
        if (process.env.RINGZERO_BENCH_WINDOWS) {
          const mono = Number(process.hrtime.bigint() / 1000n) - performance.now() * 1000;
          fs.appendFileSync(process.env.RINGZERO_BENCH_WINDOWS, JSON.stringify({ vmm: 'AB'[vi], test: `${t}:${p}`, from: Math.round(x.r.beginAt * 1000 + mono), to: Math.round(x.r.endAt * 1000 + mono) }) + '\n');
        }
        const per: Flat = {};
        for (const k of Object.keys(b)) if (typeof b[k] === 'number' && b[k] !== (a[k] ?? 0)) per[k] = (b[k] - (a[k] ?? 0)) / netMb;
        const hostMs = x.r.hostMs;
        rows.push({
          vm: vi, test: t, pass: p, mbs: netMb / (x.wallMs / 1000), wallMs: x.wallMs, threadMs: x.r.threadS * 1000, waitMs: x.r.threadWaitS * 1000,
          sleepMs: hostMs - (x.r.threadS + x.r.threadWaitS) * 1000, otherMs: x.otherS * 1000, per,
        });
        console.error(`${vm.label}: ${t} pass ${p}: ${(netMb / (x.wallMs / 1000)).toFixed(1)} MB/s, ${x.wallMs.toFixed(0)} ms transfer, markers ${hostMs.toFixed(0)} ms, thread ${(x.r.threadS * 1000).toFixed(0)} ms on / ${(x.r.threadWaitS * 1000).toFixed(0)} waiting, other threads ${(x.otherS * 1000).toFixed(0)} ms`);
      }
    }
  }
  for (const vm of vms) await vm.guest.poweroff();
} finally {
  for (const vm of vms) { vm.guest.close(); vm.ns.close(); deleteTap(vm.tap); }
}

const f = (x: number | undefined, d = 0) => (x !== undefined && Number.isFinite(x) ? x.toFixed(d) : '-');
const k = (r: Row, key: string) => r.per[key] ?? 0;
console.log(`\nper pass (${netMb} MiB each); thread = the guest thread over the markers: on a CPU / waiting for one / asleep; other = the VMM's other threads' CPU; per MiB: guest instructions, the card's notifies and interrupts, frames in and out, halts, run loop ms halted / in event-loop turns:`);
printTable(['vmm', 'test', 'pass', 'MB/s', 'transfer ms', 'thread on/wait/sleep ms', 'other ms', 'k instr/MiB', 'notifies', 'interrupts', 'rx/tx frames', 'halts', 'halt/yield ms'],
  rows.map((r) => [String('AB'[r.vm]), r.test, String(r.pass), f(r.mbs, 1), f(r.wallMs), `${f(r.threadMs)}/${f(r.waitMs)}/${f(r.sleepMs)}`, f(r.otherMs),
    f(k(r, 'instructions') / 1000), f(k(r, 'virtio.virtio-net.notifies'), 1), f(k(r, 'virtio.virtio-net.interrupts'), 1),
    `${f(k(r, 'net.rxFrames'), 1)}/${f(k(r, 'net.txFrames'), 1)}`, f(k(r, 'halts'), 1), `${f(k(r, 'haltMs'), 1)}/${f(k(r, 'yieldMs'), 1)}`]));
console.log('\nthe soft engine per MiB: guest instructions outside wasm, those run in JavaScript by why (RINGZERO_TIER_STATS=1: warming/queued/in flight/never/too long), blocks translated, the main thread\'s ms compiling them:');
printTable(['vmm', 'test', 'pass', 'k instr not in wasm', 'JS tier k instr', 'translated', 'compile ms'],
  rows.map((r) => [String('AB'[r.vm]), r.test, String(r.pass), f((k(r, 'instructions') - k(r, 'soft.jitInstructions')) / 1000, 1),
    ['warming', 'queued', 'inFlight', 'never', 'tooLong'].map((n) => f(k(r, `soft.jsTier.${n}`) / 1000, 1)).join('/'),
    f(k(r, 'codeCache.compiled'), 1), f(k(r, 'soft.wasm.compileMs'), 1)]));
if (vms.length > 1) {
  console.log('\nmedians by VMM and test (passes 2 on: the first pass also warms the paths up):');
  const sum: string[][] = [];
  for (const t of tests) {
    for (let i = 0; i < vms.length; i++) {
      const rs = rows.filter((r) => r.vm === i && r.test === t && (passes === 1 || r.pass > 1));
      sum.push([vms[i].label, t, f(median(rs.map((r) => r.mbs)), 1), f(median(rs.map((r) => r.threadMs))), f(median(rs.map((r) => r.otherMs))), f(median(rs.map((r) => k(r, 'instructions'))) / 1000)]);
    }
  }
  printTable(['vmm', 'test', 'MB/s', 'thread ms', 'other ms', 'k instr/MiB'], sum);
}
console.log(JSON.stringify({ bench: 'net-passes', netMb, passes, bins, rows: rows.map(({ per, ...r }) => ({ ...r, instrPerMiB: per.instructions, notifies: per['virtio.virtio-net.notifies'], interrupts: per['virtio.virtio-net.interrupts'] })) }));
