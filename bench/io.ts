// bench/io (issue 5): paravirtual I/O throughput, ringzero's soft engine against QEMU's binary translator
// (`qemu-system-x86_64 -accel tcg`, q35) with the same devices, kernel, initramfs and command line, in one run:
//   write    dd if=/dev/zero of=/dev/vda bs=1M count=N conv=fsync    (sequential, flushed: MB/s)
//   read     dd if=/dev/vda of=/dev/null bs=1M count=N iflag=direct  (sequential, past the guest's cache: MB/s)
//   randread 4 KiB random reads with O_DIRECT at queue depth 1        (IOPS; bench/support/randread.c, built with
//            gcc -static and appended to the initramfs as a second cpio archive, cached)
//   tcp      host -> guest over virtio-net on a TAP: a sender in a network namespace holding the TAP's host end
//            (bench/support/tcp-send.ts) to bench/support/tcpsink.c in the guest, which reads the connection into a
//            256 KiB buffer and counts the bytes (MB/s). (Busybox `nc -l | wc -c` counted with one getc() per byte:
//            70% of the soft engine's guest time in this test went to wc, which made it a CPU test.)
//   tcpout   guest -> host: bench/support/tcpsource.c in the guest writes from a 256 KiB buffer to a receiver in the
//            namespace (bench/support/tcp-recv.ts), timed there from accept to the sender's half-close (MB/s).
// The disk is a raw file (/dev/vda: ringzero --disk FILE; QEMU -drive if=none,format=raw + virtio-blk-pci, its
// default cache=writeback, so a guest flush is an fdatasync on both). The NIC: ringzero --net tap=...; QEMU
// -netdev tap + virtio-net-pci with the features ringzero's device offers on a TAP (checksum offload and TSO both
// ways, mergeable receive buffers; no ECN, no UFO), so both guests see the same device features. The network tests
// also run both VMMs with only the receive checksum offload (ringzero: RINGZERO_NET_FEATURES=guest_csum; QEMU: the
// same properties off), the device before mergeable buffers and TSO (columns "... csum only"). Disk figures are timed host-side between console markers
// (bench/support/session.ts), TCP from the sender's connection to the guest's report of the byte count. Prints
// medians and ratios ringzero/QEMU (higher is better for ringzero here); the same work per CPU-second of each VMM
// process (stable when the host is shared: wall-clock rates swing with other work); ringzero's guest instructions,
// MMIO/port-I/O traps (the serial console's port I/O, the typed command's echo, apart), the test device's queue
// notifications and interrupts, and halts per MiB or per
// read (its control socket's counters around each test); then one
// JSON line.
//
//   node --import tsx bench/io.ts [--runs 3] [--mb 64] [--reads 3000] [--net-mb 16] [--only write,read,randread,tcp,tcpout,ringzero,qemu] [--no-base] [--warm]
//                      [--host-cache-as-is] [--scheduler NAME]
//
// --only takes test names and/or VMM names (ringzero, qemu); an empty list means all. --no-base skips the
// checksum-only network runs. --warm runs each test once, untimed, before its timed pass, on both VMMs with the same
// sizes (the guest's page cache dropped in between): the steady state, as a time-based fio run measures it, instead
// of a first pass that also pays for translating (and, for ringzero, tiering up) kernel paths the boot never ran.
// Before each VMM's session the disk image is read once on the host (support/common.ts warmHostCache), so each starts
// with it in the host's page cache; --host-cache-as-is leaves the cache as the previous VMM left it (before session 29:
// ringzero, run first, paid the host's zero-filling of the sparse image's holes that QEMU then found cached).
// --scheduler NAME sets the guest's I/O scheduler for /dev/vda on every VMM before the disk tests (Linux's default for
// a single-queue disk, as both VMMs' virtio-blk is here, is mq-deadline: ~7 k of a random read's ~17-20 k guest
// instructions on either VMM, bench/io-passes --cmd randread; `none` leaves them out).
// Each pass's wall time, process CPU and guest-thread CPU (ringzero's main thread, QEMU's "CPU 0/TCG") go to stderr.
// RINGZERO_BENCH_QEMU_COUNT=1: QEMU counts its own guest instructions (a TCG plugin, built with gcc), printed per unit
// beside ringzero's.
// TCP needs root (TAP and netns); without it the TCP figures are skipped and the reason printed.
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { CMDLINE, warmHostCache, schedulerOption, setSchedulerCommand, checkScheduler, median, nameList, onCleanup, positiveInt, printTable, qemuPresent, qemuTcgArgs, requireImage, ROOT, benchArgs } from './support/common.ts';
import { initrdWithPrograms } from './support/initramfs.ts';
import { deleteTap, NetNamespace, tapUnavailable } from './support/netns.ts';
import { QemuInstructionCounter } from './support/qemu-icount.ts';
import { BenchGuest, type TimedResult } from './support/session.ts';
import { controlRequest } from '../src/vmm/control.ts';

const { values } = benchArgs(import.meta.url, {
  options: {
    runs: { type: 'string', default: '3' },
    mb: { type: 'string', default: '64' },
    reads: { type: 'string', default: '3000' },
    'net-mb': { type: 'string', default: '16' },
    only: { type: 'string', default: '' },
    memory: { type: 'string', default: '256M' },
    timeout: { type: 'string', default: '900' },
    'no-base': { type: 'boolean', default: false },
    'host-cache-as-is': { type: 'boolean', default: false },
    warm: { type: 'boolean', default: false },
    scheduler: { type: 'string' },
  },
});
const scheduler = schedulerOption(values.scheduler);
const runs = positiveInt('runs', values.runs);
const mb = positiveInt('mb', values.mb);
const reads = positiveInt('reads', values.reads);
const netMb = positiveInt('net-mb', values['net-mb']);
const timeoutMs = positiveInt('timeout', values.timeout) * 1000;
const warm = values.warm!;
const TESTS = ['write', 'read', 'randread', 'tcp', 'tcpout'] as const;
const NET_TESTS: readonly string[] = ['tcp', 'tcpout'];
type TestKey = typeof TESTS[number];
const VMM_KEYS = ['ringzero', 'qemu'];
const onlyAll = nameList('only', values.only, [...TESTS, ...VMM_KEYS]);
const only = onlyAll.filter((o) => (TESTS as readonly string[]).includes(o));
const onlyVmms = onlyAll.filter((o) => VMM_KEYS.includes(o));
const image = requireImage('io');
let tests = TESTS.filter((t) => only.length === 0 || only.includes(t));
const noTap = tapUnavailable();
if (noTap && tests.some((t) => NET_TESTS.includes(t))) {
  console.error(`bench/io: TCP skipped: ${noTap}`);
  tests = tests.filter((t) => !NET_TESTS.includes(t));
}
const diskTests = tests.filter((t) => !NET_TESTS.includes(t));
const netTests = tests.filter((t) => NET_TESTS.includes(t));
const qemu = qemuPresent();
if (!qemu) console.error('bench/io: qemu-system-x86_64 not found (apt-get install qemu-system-x86): ringzero alone');

const programs = [...(tests.includes('randread') ? ['randread'] : []), ...(tests.includes('tcp') ? ['tcpsink'] : []), ...(tests.includes('tcpout') ? ['tcpsource'] : [])];
const initrd = programs.length > 0 ? initrdWithPrograms(image.initrd, programs) : image.initrd;
const work = fs.mkdtempSync(path.join(os.tmpdir(), 'ringzero-bench-io-'));
onCleanup(() => fs.rmSync(work, { recursive: true, force: true }));
const disk = path.join(work, 'disk.raw');
// Twice what the sequential tests write, so the random reads also touch blocks never written (sparse on the host).
fs.writeFileSync(disk, '');
fs.truncateSync(disk, Math.max(2 * mb, 64) * 1024 * 1024);

const GUEST_IP = '10.0.2.15';
const HOST_IP = '10.0.2.1';
const PORT = 5555;
const MAC = '52:54:00:12:34:56';
const ns = noTap ? undefined : new NetNamespace(`rz-bench-io-${process.pid}`, HOST_IP);
let tapSerial = 0;
const newTap = () => `rzb${process.pid % 100000}t${tapSerial++}`;

/**
 * QEMU's virtio-net with the features ringzero's device offers on a TAP: checksum offload and TSO both ways,
 * mergeable receive buffers; no ECN, no UFO.
 */
const QEMU_NET_MATCHED = 'csum=on,guest_csum=on,gso=on,host_tso4=on,host_tso6=on,host_ecn=off,host_ufo=off,'
  + 'guest_tso4=on,guest_tso6=on,guest_ecn=off,guest_ufo=off,mrg_rxbuf=on';
/** Both VMMs' NICs before mergeable buffers and TSO: the receive checksum offload only. */
const QEMU_NET_BASE = 'csum=off,guest_csum=on,gso=off,host_tso4=off,host_tso6=off,host_ecn=off,host_ufo=off,'
  + 'guest_tso4=off,guest_tso6=off,guest_ecn=off,guest_ufo=off,mrg_rxbuf=off';
const RINGZERO_NET_BASE = 'guest_csum';

/** Start a VMM with RINGZERO_NET_FEATURES set for it alone (the child takes the environment as it is spawned). */
function withNetFeatures(features: string, start: () => BenchGuest): BenchGuest {
  const saved = process.env.RINGZERO_NET_FEATURES;
  process.env.RINGZERO_NET_FEATURES = features;
  try {
    return start();
  } finally {
    if (saved === undefined) delete process.env.RINGZERO_NET_FEATURES;
    else process.env.RINGZERO_NET_FEATURES = saved;
  }
}

interface Vmm {
  key: string;
  /** What --only names it by. */
  group: 'ringzero' | 'qemu';
  label: string;
  disk: boolean;
  /** Network tests only (the checksum-only NIC). */
  base?: boolean;
  /** ringzero's control socket, read for the machine's counters around each test. */
  control?: string;
  /** QEMU with RINGZERO_BENCH_QEMU_TRACE=1: its trace log of virtqueue events (counted per test). */
  trace?: string;
  start(tap: string | undefined): BenchGuest;
}
const controlSocket = path.join(work, 'rz.sock');
/**
 * RINGZERO_BENCH_QEMU_TRACE=1: QEMU logs its virtqueue events (trace events virtio_queue_notify: a driver's
 * notification; virtio_notify: an interrupt the device sent after its EVENT_IDX check; virtqueue_pop: a chain taken),
 * counted per test as ringzero's control socket counts its own, so both VMMs' device paths compare by count.
 * Tracing costs QEMU a log line per event: its rates in such a run are not its best.
 */
const qemuTrace = process.env.RINGZERO_BENCH_QEMU_TRACE === '1' ? path.join(work, 'qemu-trace.log') : undefined;
/**
 * RINGZERO_BENCH_QEMU_COUNT=1: QEMU TCG counts its own guest instructions (./support/qemu-icount.ts, a TCG plugin),
 * read before and after each test as ringzero's control socket counts its own (the typed command included on both),
 * so both VMMs' instructions per unit are printed side by side: the same work, or more of it? (QEMU counts a `rep`
 * string instruction once per iteration, ringzero once: copies and page clears count higher under QEMU.)
 */
const qemuCounter = process.env.RINGZERO_BENCH_QEMU_COUNT === '1' && qemu ? new QemuInstructionCounter(path.join(work, 'qemu-icount.bin')) : undefined;
/** QEMU's guest instructions per unit, per test and run (RINGZERO_BENCH_QEMU_COUNT). */
const qemuInstructions: Partial<Record<TestKey, number[]>> = {};
/** QEMU's count now (its plugin rewrites it every millisecond: wait a little so the guest's last work is in). */
async function qemuCount(vmm: Vmm): Promise<number | undefined> {
  if (vmm.key !== 'qemu' || !qemuCounter) return undefined;
  await new Promise((r) => setTimeout(r, 20));
  return qemuCounter.instructions();
}
const qemuTraceArgs = qemuTrace ? ['-trace', 'enable=virtio_queue_notify', '-trace', 'enable=virtio_notify', '-trace', 'enable=virtio_notify_irqfd', '-trace', 'enable=virtqueue_pop', '-D', qemuTrace] : [];
/** Counts of the traced events, by event, in the trace log between two of its lengths. */
function traceCounts(file: string, from: number, to: number): Record<string, number> {
  const out: Record<string, number> = { virtio_queue_notify: 0, virtio_notify: 0, virtio_notify_irqfd: 0, virtqueue_pop: 0 };
  if (!(to > from)) return out;
  const fd = fs.openSync(file, 'r');
  try {
    const buf = Buffer.alloc(to - from);
    fs.readSync(fd, buf, 0, buf.length, from);
    // (log lines: "[PID@TIME:]EVENT vdev 0x... ..." or "virtqueue_pop vq 0x... elem ...")
    for (const m of buf.toString('latin1').matchAll(/(virtio_queue_notify|virtio_notify_irqfd|virtio_notify|virtqueue_pop) v/g)) out[m[1]]++;
  } finally {
    fs.closeSync(fd);
  }
  return out;
}
const fileLength = (file: string): number => { try { return fs.statSync(file).size; } catch { return 0; } };
/** Extra arguments from environment variable `name`: a JSON array of strings (none when unset or empty). */
function stringArrayEnv(name: string): string[] {
  const text = process.env[name];
  if (!text) return [];
  const v: unknown = JSON.parse(text);
  if (!Array.isArray(v) || !v.every((x) => typeof x === 'string')) throw new Error(`${name}: a JSON array of strings`);
  return v as string[];
}
/**
 * RINGZERO_BENCH_RZ_ARGS: a JSON array of extra `ringzero run` arguments for profiling, e.g.
 * '["--profile-guest","/tmp/gp.json","--kallsyms","/tmp/kallsyms.txt","--cmdline","... nokaslr"]' (a later option
 * wins over the bench's own).
 */
const extraRzArgs = stringArrayEnv('RINGZERO_BENCH_RZ_ARGS');
/**
 * RINGZERO_BENCH_QEMU_ARGS: a JSON array of extra QEMU arguments, e.g. '["-icount","shift=0,sleep=off"]' (guest time
 * counted in instructions, 1 ns each: the guest's busy ticks in the busy/idle table are then its instructions,
 * 10 M per USER_HZ tick).
 */
const extraQemuArgs = stringArrayEnv('RINGZERO_BENCH_QEMU_ARGS');
const VMMS: Vmm[] = [
  {
    key: 'ringzero', group: 'ringzero', label: 'ringzero soft', disk: true, control: controlSocket,
    start: (tap) => BenchGuest.ringzero('ringzero soft', ['--engine', 'soft', '--memory', values.memory!, '--cmdline', CMDLINE,
      '--initrd', initrd, '--disk', disk, '--control-socket', controlSocket, ...(tap ? ['--net', `tap=${tap},mac=${MAC}`] : []), ...extraRzArgs]),
  },
  {
    key: 'ringzero_base', group: 'ringzero', label: 'ringzero csum only', disk: false, base: true, control: controlSocket,
    start: (tap) => withNetFeatures(RINGZERO_NET_BASE, () => BenchGuest.ringzero('ringzero soft (csum only)', ['--engine', 'soft', '--memory', values.memory!,
      '--cmdline', CMDLINE, '--initrd', initrd, '--control-socket', controlSocket, '--net', `tap=${tap},mac=${MAC}`, ...extraRzArgs])),
  },
  ...(qemu ? [{
    key: 'qemu', group: 'qemu' as const, label: 'qemu -accel tcg', disk: true, ...(qemuTrace ? { trace: qemuTrace } : {}),
    start: (tap: string | undefined) => BenchGuest.qemu('qemu -accel tcg', qemuTcgArgs({ kernel: image.kernel, initrd, cmdline: CMDLINE, cpus: 1, memory: values.memory! }, [
      // names QEMU's threads, so the guest thread's CPU ("CPU 0/TCG") can be told from the I/O threads'
      '-name', 'bench-io,debug-threads=on',
      '-drive', `if=none,id=d0,file=${disk},format=raw`, '-device', 'virtio-blk-pci,drive=d0',
      ...(tap ? ['-netdev', `tap,id=n0,ifname=${tap},script=no,downscript=no,vhost=off`, '-device', `virtio-net-pci,netdev=n0,mac=${MAC},${QEMU_NET_MATCHED}`] : []),
      ...qemuTraceArgs, ...extraQemuArgs, ...(qemuCounter?.args ?? []),
    ])),
  }, {
    key: 'qemu_base', group: 'qemu' as const, label: 'qemu csum only', disk: false, base: true,
    start: (tap: string | undefined) => BenchGuest.qemu('qemu -accel tcg (csum only)', qemuTcgArgs({ kernel: image.kernel, initrd, cmdline: CMDLINE, cpus: 1, memory: values.memory! }, [
      '-netdev', `tap,id=n0,ifname=${tap},script=no,downscript=no,vhost=off`, '-device', `virtio-net-pci,netdev=n0,mac=${MAC},${QEMU_NET_BASE}`,
    ])),
  }] : []),
];

/** results[vmm][test] = MB/s or IOPS per run; perCpu[vmm][test] = the same per CPU-second of the VMM process */
const results: Record<string, Partial<Record<TestKey, number[]>>> = {};
const perCpu: Record<string, Partial<Record<TestKey, number[]>>> = {};
/**
 * The same per CPU-second of the guest thread alone (ringzero's main thread, QEMU's "CPU 0/TCG"; schedstat, in ns),
 * and the share of the process's CPU spent off it (ringzero: V8 compiling and tiering up translated code; QEMU: its
 * I/O threads): session 23 found the two apart in the sequential read, where V8's background threads took about
 * half of ringzero's process CPU (README, "Where bench/io's time goes").
 */
const perThread: Record<string, Partial<Record<TestKey, number[]>>> = {};
const offThread: Record<string, Partial<Record<TestKey, number[]>>> = {};
/**
 * Is the guest's vCPU busy or idle during a pass? The guest's own /proc/stat between the markers (busy, idle, iowait
 * ticks: the same kernel's accounting under both VMMs), and the guest thread's CPU against the pass's wall time.
 * Idle means the vCPU waits (for a device's completion, an interrupt, a timer): the device path's latency; busy
 * means the pass is the engine's speed on the guest's work.
 */
interface GuestTime { busy: number; idle: number; iowait: number; wallMs: number; threadS: number; threadWaitS: number; guestS: number }
const guestTime: Record<string, Partial<Record<TestKey, GuestTime[]>>> = {};
const add = (vmm: string, t: TestKey, x: number) => { ((results[vmm] ??= {})[t] ??= []).push(x); };
const MiB = 1024 * 1024;

/**
 * What ringzero's machine did during one test (its control socket's stats, before and after): guest instructions,
 * device traps (MMIO + port I/O: on the soft engine the virtqueue notifies are the MMIO ones), halts (the run loop
 * slept with the vCPU idle), per unit of work (a MiB, or a random read).
 */
interface Work {
  instructions: number; mmio: number; pio: number; consolePio: number; halts: number; units: number; rxFrames: number; rxBytes: number; txFrames: number; txBytes: number;
  /** The test's device (virtio-blk or virtio-net): queue notifications from the guest, interrupts to it. */
  notifies: number; interrupts: number;
  /** The soft engine's counters (Machine.stats().soft), when it reports them. */
  engine?: EngineWork;
  /** The run loop's wall ms asleep with the vCPU halted, and in event-loop turns, during the pass (whose wall is wallMs). */
  haltMs: number; yieldMs: number; wallMs: number;
  /**
   * Guest instructions between the markers (tcp: from the connection) alone: `instructions` above also counts the
   * typed command's echo and the markers' `$(cut ...)` processes (~200 characters echoed through the serial console
   * and two forks: a few million instructions, a large share of a 16 MiB TCP pass's count).
   */
  passInstructions: number;
}
/**
 * Where the soft engine ran the test's instructions: outside translated code (interpreted, replayed from decoded
 * blocks, still warming up), entries into wasm from JavaScript, replayed instructions (no wasm form), blocks
 * translated during the test (new code paths: warm-up), second-level TLB refills.
 */
interface EngineWork { notTranslated: number; wasmCalls: number; replays: number; translated: number; tlbRefills: number }
const workDone: Record<string, Partial<Record<TestKey, Work[]>>> = {};
/**
 * The guest's own count of the disk requests a test issued (Documentation/block/stat.rst: /sys/block/vda/stat's
 * read and write I/Os, completed requests after merging), per unit, on both VMMs: the block layer's view, so QEMU's
 * side needs no tracing. Session 23 found the O_DIRECT read reaching ringzero's device as two requests per MiB in
 * some runs (dd's buffer in 256 single pages: 254 + 2 segments) and one of ~30 segments in others, worth about a
 * fifth of the read's guest instructions; session 24 found the same scatter under QEMU (a buffer faulted in page
 * order comes off the guest's per-CPU free list in descending frames on both), so the mode is the guest page
 * allocator's state when dd faults its buffer in, and this column says which mode each VMM's run was in.
 */
const blockRequests: Record<string, Partial<Record<TestKey, number[]>>> = {};
/** /sys/block/vda/stat's read and write I/Os (fields 1 and 5), read with one `cat` at the guest's prompt. */
async function blockStat(guest: BenchGuest): Promise<{ reads: number; writes: number } | undefined> {
  const f = (await guest.ask('BSTAT', 'cat /sys/block/vda/stat', 60_000)).trim().split(/\s+/).map(Number);
  return f.length >= 5 && f.every(Number.isFinite) ? { reads: f[0], writes: f[4] } : undefined;
}
type Stats = {
  instructions: number; exits: { mmio: number; pio: number; byDevice?: { pio: Record<string, number> } }; halts: number; haltMs?: number; yieldMs?: number;
  net?: { rxBytes: number; txBytes: number; rxFrames: number; txFrames: number };
  codeCache?: { compiled?: number } | null;
  soft?: { jitInstructions: number; tlbL2Hits: number; wasm?: { calls: number; replays: number } };
  virtio?: Record<string, { notifies: number; interrupts: number; chains?: number }>;
};
function engineWork(before: Stats, after: Stats): EngineWork | undefined {
  const a = before.soft, b = after.soft;
  if (!a || !b) return undefined;
  return {
    notTranslated: (after.instructions - before.instructions) - (b.jitInstructions - a.jitInstructions),
    wasmCalls: (b.wasm?.calls ?? 0) - (a.wasm?.calls ?? 0),
    replays: (b.wasm?.replays ?? 0) - (a.wasm?.replays ?? 0),
    translated: (after.codeCache?.compiled ?? 0) - (before.codeCache?.compiled ?? 0),
    tlbRefills: b.tlbL2Hits - a.tlbL2Hits,
  };
}
/**
 * Port I/O to the serial console: the shell echoing the typed command line and the command's output (about six
 * accesses per character: THR, LSR, IIR, IER), the same few hundred whatever the test moves, so not the device's.
 */
const consolePio = (st: Stats): number => Object.entries(st.exits.byDevice?.pio ?? {}).reduce((n, [name, k]) => (name.startsWith('serial@') ? n + k : n), 0);
/** What a timed pass samples at its markers: ringzero's stats, QEMU's trace log length. */
async function probe(vmm: Vmm): Promise<unknown> {
  if (vmm.trace) return fileLength(vmm.trace);
  return stats(vmm);
}
async function stats(vmm: Vmm): Promise<Stats | undefined> {
  if (!vmm.control) return undefined;
  try {
    const r = await controlRequest(vmm.control, { cmd: 'stats' }, 30_000);
    return r.ok ? (r as unknown as Stats) : undefined;
  } catch {
    return undefined;
  }
}
/**
 * RINGZERO_BENCH_WINDOWS=FILE: each test's interval on the host's monotonic clock (microseconds, as V8's CPU
 * profiles time their samples), one JSON line per test, so a VMM run with RINGZERO_VMM_CPU_PROF=DIR can be
 * profiled over the tests alone (the boot left out).
 */
const windowsFile = process.env.RINGZERO_BENCH_WINDOWS;
const monoOffsetUs = Number(process.hrtime.bigint() / 1000n) - performance.now() * 1000;
/** RINGZERO_BENCH_WINDOWS: append a pass's interval (`test` is e.g. 'write', or 'write:warm-up' for --warm's first pass). */
function noteWindow(vmm: Vmm, test: string, r: TimedResult): void {
  if (windowsFile) {
    fs.appendFileSync(windowsFile, JSON.stringify({ vmm: vmm.key, test, from: Math.round(r.beginAt * 1000 + monoOffsetUs), to: Math.round(r.endAt * 1000 + monoOffsetUs) }) + '\n');
  }
}
/**
 * RINGZERO_BENCH_STATS=FILE: every numeric counter of the control socket's `stats` that moved during a test, per unit
 * (MiB or read), one JSON line per test: the counters bench/io's tables leave out (the wasm engine's exit kinds with
 * RINGZERO_WASM_EXIT_STATS=1, slow accesses, per-device notifies and interrupts, the run loop's), for A/B by count.
 */
const statsDumpFile = process.env.RINGZERO_BENCH_STATS;
function flatten(v: unknown, prefix: string, out: Record<string, number>): void {
  if (typeof v === 'number') out[prefix] = v;
  else if (v && typeof v === 'object') for (const [k, x] of Object.entries(v)) flatten(x, prefix ? `${prefix}.${k}` : k, out);
}
function dumpStatsDelta(vmm: Vmm, test: string, units: number, before: Stats, after: Stats): void {
  const a: Record<string, number> = {}, b: Record<string, number> = {};
  flatten(before, '', a);
  flatten(after, '', b);
  const perUnit: Record<string, number> = {};
  for (const [k, v] of Object.entries(b)) {
    const d = v - (a[k] ?? 0);
    if (d !== 0 && Number.isFinite(d)) perUnit[k] = Number((d / units).toPrecision(4));
  }
  // (and the VMM's heap and GC totals after the test, as they are: src/vmm/control.ts processHeap)
  fs.appendFileSync(statsDumpFile!, JSON.stringify({ vmm: vmm.key, test, units, perUnit, processAfter: (after as { process?: unknown }).process }) + '\n');
}
/**
 * RINGZERO_BENCH_STATS also takes the guest's own /proc/interrupts around each test, on both VMMs (one `cat` at the
 * prompt before and after: an extra process in the guest, so only with the dump asked for): interrupts per unit by
 * source, the same kernel's count under each VMM (the device's MSI-X vectors, the local timer, IPIs).
 */
async function guestIrqs(guest: BenchGuest): Promise<Record<string, number> | undefined> {
  if (!statsDumpFile) return undefined;
  const out: Record<string, number> = {};
  // (ask's answer is one line: each row as IRQ:NAME=COUNT, the first CPU's column; NAME the row's last word)
  for (const word of (await guest.ask('IRQS', "awk 'NR>1{print $1 $NF \"=\" $2}' /proc/interrupts", 60_000)).split(/\s+/)) {
    const m = /^(.+)=(\d+)$/.exec(word);
    if (m) out[m[1]] = Number(m[2]);
  }
  return out;
}
function dumpIrqs(vmm: Vmm, test: string, units: number, a: Record<string, number> | undefined, b: Record<string, number> | undefined): void {
  if (!statsDumpFile || !a || !b) return;
  const perUnit: Record<string, number> = {};
  for (const [k, v] of Object.entries(b)) if (v !== (a[k] ?? 0)) perUnit[k] = Number(((v - (a[k] ?? 0)) / units).toPrecision(4));
  fs.appendFileSync(statsDumpFile, JSON.stringify({ vmm: vmm.key, test, units, guestIrqs: perUnit }) + '\n');
}
/** A timed pass's length and where its CPU went, for the log. */
const phase = (r: TimedResult): string => `${(r.hostMs / 1000).toFixed(2)} s wall, ${r.cpuS.toFixed(2)} s process CPU, ${r.threadS.toFixed(2)} s guest thread`;
/** Record a test's rate, its rate per CPU-second, and (ringzero) the machine's counters per unit. */
/**
 * The run loop's wall ms halted and in event-loop turns over the pass (the control socket's stats taken as each marker
 * arrived; tcp: from the sender's connection, so the wait for the sender's start is left out), and that interval.
 */
async function loopShare(r: TimedResult, from?: { at: number; stats: Promise<unknown> }): Promise<{ haltMs: number; yieldMs: number; wallMs: number; passInstructions: number }> {
  const none = { haltMs: NaN, yieldMs: NaN, wallMs: r.hostMs, passInstructions: NaN };
  if (!r.probed) return none;
  const a = (await (from?.stats ?? r.probed.begin)) as Stats | number | undefined;
  const b = (await r.probed.end) as Stats | number | undefined;
  if (typeof a !== 'object' || typeof b !== 'object' || a.haltMs === undefined || b.haltMs === undefined) return none;
  return { haltMs: b.haltMs - a.haltMs, yieldMs: (b.yieldMs ?? 0) - (a.yieldMs ?? 0), wallMs: r.endAt - (from?.at ?? r.beginAt), passInstructions: b.instructions - a.instructions };
}
/**
 * The test device's path on both VMMs, per unit: the driver's notifications, the interrupts sent, the chains taken
 * (ringzero: its control socket's counters around the test; QEMU: its trace log over the pass, with
 * RINGZERO_BENCH_QEMU_TRACE=1).
 */
interface DevicePath { notifies: number; interrupts: number; chains: number; units: number }
const devicePaths: Record<string, Partial<Record<TestKey, DevicePath[]>>> = {};
async function noteDevicePath(vmm: Vmm, t: TestKey, units: number, r: TimedResult, before: Stats | undefined, after: Stats | undefined,
  from?: { stats: Promise<unknown> }): Promise<void> {
  let d: DevicePath | undefined;
  if (vmm.trace && r.probed) {
    const a = await (from?.stats ?? r.probed.begin), b = await r.probed.end;
    if (typeof a === 'number' && typeof b === 'number') {
      const c = traceCounts(vmm.trace, a, b);
      d = { notifies: c.virtio_queue_notify, interrupts: c.virtio_notify + c.virtio_notify_irqfd, chains: c.virtqueue_pop, units };
    }
  } else if (before?.virtio && after?.virtio) {
    const dev = NET_TESTS.includes(t) ? 'virtio-net' : 'virtio-blk';
    const k = (st: Stats, f: 'notifies' | 'interrupts' | 'chains') => st.virtio?.[dev]?.[f] ?? 0;
    d = { notifies: k(after, 'notifies') - k(before, 'notifies'), interrupts: k(after, 'interrupts') - k(before, 'interrupts'), chains: k(after, 'chains') - k(before, 'chains'), units };
  }
  if (d) ((devicePaths[vmm.key] ??= {})[t] ??= []).push(d);
}
function record(vmm: Vmm, t: TestKey, rate: number, units: number, r: TimedResult, before: Stats | undefined, after: Stats | undefined,
  loop: { haltMs: number; yieldMs: number; wallMs: number; passInstructions: number }): void {
  add(vmm.key, t, rate);
  // How long the phase was and where its CPU went: the guest thread (ringzero's main thread, QEMU's "CPU 0/TCG")
  // against the whole process (ringzero's other threads are mostly V8 compiling and tiering up translated code).
  console.error(`  ${vmm.label}: ${t}: ${phase(r)}`);
  noteWindow(vmm, t, r);
  // units per CPU-second of the VMM process (every thread): robust against other work on a shared host
  if (r.cpuS > 0) ((perCpu[vmm.key] ??= {})[t] ??= []).push(units / r.cpuS);
  if (r.threadS > 0) ((perThread[vmm.key] ??= {})[t] ??= []).push(units / r.threadS);
  // (the process figure is in 10 ms clock ticks, the thread's in ns: a short pass can show a little below zero)
  if (r.cpuS > 0 && Number.isFinite(r.threadS)) ((offThread[vmm.key] ??= {})[t] ??= []).push(Math.max(0, 1 - r.threadS / r.cpuS));
  if (r.guestCpu) ((guestTime[vmm.key] ??= {})[t] ??= []).push({ ...r.guestCpu, wallMs: r.hostMs, threadS: r.threadS, threadWaitS: r.threadWaitS, guestS: r.guestS });
  if (before && after) {
    if (statsDumpFile) dumpStatsDelta(vmm, t, units, before, after);
    const dev = NET_TESTS.includes(t) ? 'virtio-net' : 'virtio-blk';
    const vq = (st: Stats, k: 'notifies' | 'interrupts') => st.virtio?.[dev]?.[k] ?? 0;
    ((workDone[vmm.key] ??= {})[t] ??= []).push({
      notifies: vq(after, 'notifies') - vq(before, 'notifies'), interrupts: vq(after, 'interrupts') - vq(before, 'interrupts'),
      instructions: after.instructions - before.instructions, mmio: after.exits.mmio - before.exits.mmio,
      pio: after.exits.pio - before.exits.pio, consolePio: consolePio(after) - consolePio(before), halts: after.halts - before.halts, units,
      engine: engineWork(before, after),
      ...loop,
      rxFrames: (after.net?.rxFrames ?? 0) - (before.net?.rxFrames ?? 0), rxBytes: (after.net?.rxBytes ?? 0) - (before.net?.rxBytes ?? 0),
      txFrames: (after.net?.txFrames ?? 0) - (before.net?.txFrames ?? 0), txBytes: (after.net?.txBytes ?? 0) - (before.net?.txBytes ?? 0),
    });
  }
}

async function tcp(guest: BenchGuest, vmm: Vmm): Promise<{ mbs: number; r: TimedResult; from?: { at: number; stats: Promise<unknown> } }> {
  const bytes = netMb * MiB;
  const [cmd, args] = ns!.exec([process.execPath, '--import', 'tsx', path.join(ROOT, 'bench', 'support', 'tcp-send.ts'), GUEST_IP, String(PORT), String(bytes)]);
  // tcpsink (bench/support/tcpsink.c) reads the connection to its end and prints the byte count.
  const receiving = guest.timed(`tcp${vmm.key}`, `tcpsink ${PORT}`, timeoutMs, { guestCpu: true, probe: () => probe(vmm) });
  let connectedAt = 0;
  let atConnect: Promise<unknown> | undefined;
  let senderErr = '';
  const sender: ChildProcess = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'], cwd: ROOT });
  const senderGone = onCleanup(() => sender.kill('SIGKILL'));
  sender.stdout!.setEncoding('utf8').on('data', (s: string) => { if (!connectedAt && s.includes('connected')) { connectedAt = performance.now(); atConnect = probe(vmm); } });
  sender.stderr!.setEncoding('utf8').on('data', (s: string) => { senderErr += s; });
  const senderExit = new Promise<number | null>((r) => sender.on('exit', r));
  try {
    const r = await Promise.race([receiving, senderExit.then((code) => {
      if (code !== 0) throw new Error(`tcp-send exited ${code}: ${senderErr}`);
      return receiving;
    })]);
    const got = Number(/tcpsink: (\d+) bytes/.exec(r.output)?.[1]);
    if (got !== bytes) throw new Error(`${vmm.label}: the guest received ${got} bytes of ${bytes}: ${r.output}`);
    if (!connectedAt) throw new Error('tcp-send never reported its connection');
    return { mbs: bytes / MiB / ((r.endAt - connectedAt) / 1000), r, from: { at: connectedAt, stats: atConnect! } };
  } finally {
    sender.kill('SIGKILL');
    senderGone();
  }
}

/** Guest -> host: tcpsource in the guest to tcp-recv.ts in the namespace, timed there (accept to half-close). */
async function tcpout(guest: BenchGuest, vmm: Vmm): Promise<{ mbs: number; r: TimedResult }> {
  const bytes = netMb * MiB;
  const [cmd, args] = ns!.exec([process.execPath, '--import', 'tsx', path.join(ROOT, 'bench', 'support', 'tcp-recv.ts'), HOST_IP, String(PORT + 1)]);
  const receiver: ChildProcess = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'], cwd: ROOT });
  const receiverGone = onCleanup(() => receiver.kill('SIGKILL'));
  let out = '';
  let err = '';
  receiver.stdout!.setEncoding('utf8').on('data', (t: string) => { out += t; });
  receiver.stderr!.setEncoding('utf8').on('data', (t: string) => { err += t; });
  const receiverExit = new Promise<number | null>((r) => receiver.on('exit', r));
  try {
    const deadline = Date.now() + 60_000;
    while (!out.includes('listening')) {
      if (Date.now() > deadline || receiver.exitCode !== null) throw new Error(`tcp-recv did not start: ${err}`);
      await new Promise((r) => setTimeout(r, 20));
    }
    const r = await guest.timed(`tcpout${vmm.key}`, `tcpsource ${HOST_IP} ${PORT + 1} ${bytes}`, timeoutMs, { guestCpu: true, probe: () => probe(vmm) });
    if (r.status !== 0 || !r.output.includes(`tcpsource: ${bytes} bytes`)) throw new Error(`${vmm.label}: tcpsource: ${r.output}`);
    if ((await receiverExit) !== 0) throw new Error(`tcp-recv: ${err}`);
    const m = /received (\d+) bytes in ([0-9.]+) ms/.exec(out);
    if (!m || Number(m[1]) !== bytes) throw new Error(`${vmm.label}: the host received ${m?.[1]} bytes of ${bytes}: ${out}`);
    return { mbs: bytes / MiB / (Number(m[2]) / 1000), r };
  } finally {
    receiver.kill('SIGKILL');
    receiverGone();
  }
}

async function session(vmm: Vmm, run: number): Promise<void> {
  const wantNet = netTests.length > 0;
  if (!vmm.disk && !wantNet) return;
  const tap = wantNet ? newTap() : undefined;
  // (the same host page-cache state for every VMM's disk: common.ts warmHostCache)
  if (vmm.disk && diskTests.length > 0 && !values['host-cache-as-is']) warmHostCache(disk);
  const guest = vmm.start(tap);
  const parts: string[] = [];
  try {
    if (tap) await ns!.adopt(tap);
    const promptMs = await guest.waitForShell();
    console.error(`  ${vmm.label}: at the prompt after ${(promptMs / 1000).toFixed(1)} s`);
    if (vmm.disk && !vmm.base && diskTests.length > 0) {
      const size = Number(await guest.ask('VDA', 'cat /sys/block/vda/size'));
      if (!(size * 512 >= 2 * mb * MiB)) throw new Error(`${vmm.label}: /dev/vda has ${size} sectors`);
      if (scheduler !== undefined) checkScheduler(scheduler, await guest.ask('SCHED', setSchedulerCommand(scheduler)), vmm.label);
      // One pass of a disk test: its rate (MB/s or IOPS) and units (MiB or reads).
      const diskPass = async (t: TestKey): Promise<{ rate: number; units: number; r: TimedResult; label: string }> => {
        if (t === 'write') {
          const r = await guest.timed('write', `dd if=/dev/zero of=/dev/vda bs=1M count=${mb} conv=fsync`, timeoutMs, { guestCpu: true, probe: () => probe(vmm) });
          if (r.status !== 0 || !r.output.includes(`${mb}+0 records out`)) throw new Error(`${vmm.label}: write: ${r.output}`);
          return { rate: mb / (r.hostMs / 1000), units: mb, r, label: `write ${(mb / (r.hostMs / 1000)).toFixed(1)} MB/s` };
        }
        if (t === 'read') {
          const r = await guest.timed('read', `dd if=/dev/vda of=/dev/null bs=1M count=${mb} iflag=direct`, timeoutMs, { guestCpu: true, probe: () => probe(vmm) });
          if (r.status !== 0 || !r.output.includes(`${mb}+0 records in`)) throw new Error(`${vmm.label}: read: ${r.output}`);
          return { rate: mb / (r.hostMs / 1000), units: mb, r, label: `read ${(mb / (r.hostMs / 1000)).toFixed(1)} MB/s` };
        }
        const r = await guest.timed('randread', `randread /dev/vda ${reads} ${run * 7919}`, timeoutMs, { guestCpu: true, probe: () => probe(vmm) });
        const m = r.output.match(/randread: (\d+) reads in ([0-9.]+) s, (\d+) iops/);
        if (r.status !== 0 || !m) throw new Error(`${vmm.label}: randread: ${r.output}`);
        const iops = reads / (r.hostMs / 1000);
        return { rate: iops, units: reads, r, label: `randread ${iops.toFixed(0)} IOPS (guest clock ${m[3]})` };
      };
      let bPrev = await blockStat(guest);
      for (const t of diskTests) {
        if (warm) {
          // --warm: the same pass once before the timed one (same sizes on both VMMs), then the guest's page cache
          // dropped (drop_caches, Documentation/admin-guide/sysctl/vm.rst), so the timed write allocates its
          // page-cache pages again as the first did instead of overwriting cached ones.
          const w = await diskPass(t);
          console.error(`  ${vmm.label}: warm-up ${w.label}: ${phase(w.r)}`);
          noteWindow(vmm, `${t}:warm-up`, w.r);
          await guest.ask('DROP', 'sync; echo 3 > /proc/sys/vm/drop_caches; echo dropped', 60_000);
        }
        // (read before the pass only after --warm's drop: otherwise the last pass's reading stands, so no extra
        // process runs in the guest between the tests, whose exits would change what the allocator hands dd next)
        if (warm) bPrev = await blockStat(guest);
        const b0 = bPrev;
        const i0 = await guestIrqs(guest);
        const s0 = await stats(vmm);
        const q0 = await qemuCount(vmm);
        const p = await diskPass(t);
        const s1 = await stats(vmm);
        const q1 = await qemuCount(vmm);
        if (q0 !== undefined && q1 !== undefined) (qemuInstructions[t] ??= []).push((q1 - q0) / p.units);
        record(vmm, t, p.rate, p.units, p.r, s0, s1, await loopShare(p.r));
        await noteDevicePath(vmm, t, p.units, p.r, s0, s1);
        dumpIrqs(vmm, t, p.units, i0, await guestIrqs(guest));
        const b1 = await blockStat(guest);
        bPrev = b1;
        if (b0 && b1) ((blockRequests[vmm.key] ??= {})[t] ??= []).push((t === 'write' ? b1.writes - b0.writes : b1.reads - b0.reads) / p.units);
        parts.push(p.label);
        console.error(`  ${vmm.label}: ${parts.at(-1)}`);
      }
    }
    if (wantNet) {
      // The guest's first outbound connect() fills Linux's 256 KiB table of source-port perturbations with random
      // bytes (__inet_hash_connect: get_random_sleepable_once(table_perturb), 4096 ChaCha20 blocks, ~5 M guest
      // instructions: ftrace of chacha_block_generic with func_stack_trace during tcpout), once per boot. A connect to a
      // closed port here (the namespace answers RST) pays it before the tests, so tcpout measures the stack's per-byte
      // work and not the boot's leftovers (without it, a fifth of tcpout's guest instructions at 16 MiB).
      await guest.ask('NETUP', `ip addr add ${GUEST_IP}/24 dev eth0 && ip link set eth0 up && { nc -w 2 ${HOST_IP} 9 </dev/null >/dev/null 2>&1; echo up; }`, 30_000);
      for (const t of netTests) {
        if (warm) {
          const w = t === 'tcp' ? await tcp(guest, vmm) : await tcpout(guest, vmm);
          console.error(`  ${vmm.label}: warm-up ${t} ${w.mbs.toFixed(1)} MB/s: ${phase(w.r)}`);
          noteWindow(vmm, `${t}:warm-up`, w.r);
        }
        const i0 = await guestIrqs(guest);
        const s0 = await stats(vmm);
        const q0 = await qemuCount(vmm);
        const { mbs, r, from } = t === 'tcp' ? await tcp(guest, vmm) : { ...(await tcpout(guest, vmm)), from: undefined };
        const s1 = await stats(vmm);
        const q1 = await qemuCount(vmm);
        if (q0 !== undefined && q1 !== undefined) (qemuInstructions[t] ??= []).push((q1 - q0) / netMb);
        record(vmm, t, mbs, netMb, r, s0, s1, await loopShare(r, from));
        await noteDevicePath(vmm, t, netMb, r, s0, s1, from);
        dumpIrqs(vmm, t, netMb, i0, await guestIrqs(guest));
        parts.push(`${t} ${mbs.toFixed(1)} MB/s`);
        console.error(`  ${vmm.label}: ${parts.at(-1)}`);
      }
    }
    await guest.poweroff();
    console.log(`run ${run}: ${vmm.label}: ${parts.join(', ')}`);
  } finally {
    guest.close();
    if (tap) deleteTap(tap);
  }
}

console.log(`bench/io: ${runs} run(s) of [${tests.join(', ')}]; disk ${mb} MiB sequential, ${reads} random 4 KiB reads, TCP ${netMb} MiB`);
for (let i = 1; i <= runs; i++) {
  for (const v of VMMS) {
    if (v.base && (values['no-base'] || netTests.length === 0)) continue;
    if (onlyVmms.length === 0 || onlyVmms.includes(v.group)) await session(v, i);
  }
}
ns?.close();

const UNITS: Record<TestKey, string> = { write: 'MB/s', read: 'MB/s', randread: 'IOPS', tcp: 'MB/s', tcpout: 'MB/s' };
const figures: Record<string, number | string> = { bench: 'io', engine: 'soft', runs, mb, reads, net_mb: netMb };
const rows: string[][] = [];
for (const t of tests) {
  const med = (vmm: string) => (results[vmm]?.[t] ? median(results[vmm]![t]!) : undefined);
  const ours = med('ringzero');
  const theirs = med('qemu');
  const ourBase = med('ringzero_base');
  const theirBase = med('qemu_base');
  const unit = UNITS[t] === 'IOPS' ? 'iops' : 'mbs';
  if (ours !== undefined) figures[`ringzero_${t}_${unit}`] = Number(ours.toFixed(2));
  if (theirs !== undefined) figures[`qemu_tcg_${t}_${unit}`] = Number(theirs.toFixed(2));
  if (ourBase !== undefined) figures[`ringzero_base_${t}_${unit}`] = Number(ourBase.toFixed(2));
  if (theirBase !== undefined) figures[`qemu_tcg_base_${t}_${unit}`] = Number(theirBase.toFixed(2));
  if (ours !== undefined && theirs !== undefined) figures[`${t}_ratio`] = Number((ours / theirs).toFixed(3));
  if (ours !== undefined && ourBase !== undefined) figures[`ringzero_${t}_gain`] = Number((ours / ourBase).toFixed(3));
  const f = (x: number | undefined) => (x === undefined ? '-' : x.toFixed(UNITS[t] === 'IOPS' ? 0 : 1));
  const ratio = (a: number | undefined, b: number | undefined) => (a !== undefined && b !== undefined ? `${(a / b).toFixed(2)}x` : 'n/a');
  rows.push([`${t} (${UNITS[t]})`, f(ours), f(theirs), ratio(ours, theirs), f(ourBase), f(theirBase), ratio(ourBase, theirBase), ratio(ours, ourBase)]);
}
console.log('\nmedians and ratios ringzero/QEMU TCG (goal, issue 5: >= 1.0x on each); network tests also with the receive checksum offload only:');
printTable(['test', 'ringzero soft', 'qemu -accel tcg', 'ratio', 'ringzero csum only', 'qemu csum only', 'ratio', 'ringzero gain'], rows);

// The same work per CPU-second of each VMM process (user + system, all threads, between the console markers): on a
// host shared with other work, wall-clock rates swing with the load while this stays put.
const cpuRows: string[][] = [];
for (const t of tests) {
  const med = (vmm: string) => (perCpu[vmm]?.[t] ? median(perCpu[vmm]![t]!) : undefined);
  const ours = med('ringzero');
  const theirs = med('qemu');
  const ourBase = med('ringzero_base');
  const theirBase = med('qemu_base');
  const unit = UNITS[t] === 'IOPS' ? 'reads' : 'MiB';
  if (ours !== undefined) figures[`ringzero_${t}_per_cpu_s`] = Number(ours.toFixed(2));
  if (theirs !== undefined) figures[`qemu_tcg_${t}_per_cpu_s`] = Number(theirs.toFixed(2));
  if (ourBase !== undefined) figures[`ringzero_base_${t}_per_cpu_s`] = Number(ourBase.toFixed(2));
  if (theirBase !== undefined) figures[`qemu_tcg_base_${t}_per_cpu_s`] = Number(theirBase.toFixed(2));
  if (ours !== undefined && theirs !== undefined) figures[`${t}_cpu_ratio`] = Number((ours / theirs).toFixed(3));
  const f = (x: number | undefined) => (x === undefined ? '-' : x.toFixed(UNITS[t] === 'IOPS' ? 0 : 2));
  const ratio = (a: number | undefined, b: number | undefined) => (a !== undefined && b !== undefined ? `${(a / b).toFixed(2)}x` : 'n/a');
  cpuRows.push([`${t} (${unit} per CPU-s)`, f(ours), f(theirs), ratio(ours, theirs), f(ourBase), f(theirBase), ratio(ourBase, theirBase)]);
}
console.log('\nper CPU-second of the VMM process (medians; stable on a busy host):');
printTable(['test', 'ringzero soft', 'qemu -accel tcg', 'ratio', 'ringzero csum only', 'qemu csum only', 'ratio'], cpuRows);

// The guest thread alone, and the process's CPU off it: what the engine's code costs apart from what V8 compiles.
const threadRows: string[][] = [];
for (const t of tests) {
  const med = (table: typeof perThread, vmm: string) => (table[vmm]?.[t] ? median(table[vmm]![t]!) : undefined);
  const ours = med(perThread, 'ringzero');
  const theirs = med(perThread, 'qemu');
  if (ours !== undefined) figures[`ringzero_${t}_per_thread_cpu_s`] = Number(ours.toFixed(2));
  if (theirs !== undefined) figures[`qemu_tcg_${t}_per_thread_cpu_s`] = Number(theirs.toFixed(2));
  if (ours !== undefined && theirs !== undefined) figures[`${t}_thread_ratio`] = Number((ours / theirs).toFixed(3));
  const f = (x: number | undefined) => (x === undefined ? '-' : x.toFixed(UNITS[t] === 'IOPS' ? 0 : 2));
  const pct = (x: number | undefined) => (x === undefined ? '-' : `${(100 * x).toFixed(0)}%`);
  threadRows.push([`${t} (${UNITS[t] === 'IOPS' ? 'reads' : 'MiB'} per CPU-s)`, f(ours), f(theirs), ours !== undefined && theirs !== undefined ? `${(ours / theirs).toFixed(2)}x` : 'n/a',
    pct(med(offThread, 'ringzero')), pct(med(offThread, 'qemu'))]);
}
console.log('\nper CPU-second of the guest thread (ringzero\'s main thread, QEMU\'s "CPU 0/TCG"; medians), and the process CPU spent off it:');
printTable(['test', 'ringzero soft', 'qemu -accel tcg', 'ratio', 'ringzero off-thread', 'qemu off-thread'], threadRows);

const unitsOf = (t: TestKey): number => (t === 'randread' ? reads : NET_TESTS.includes(t) ? netMb : mb);
// Busy or idle: the guest's view (/proc/stat) on both VMMs, the guest thread's CPU per wall second, and ringzero's run
// loop (halted, in event-loop turns) per wall second.
const idleRows: string[][] = [];
for (const t of tests) {
  const cell = (vmm: string): string => {
    const xs = guestTime[vmm]?.[t];
    if (!xs || xs.length === 0) return '-';
    const m = (f: (x: GuestTime) => number) => median(xs.map(f));
    const pct = (f: (x: GuestTime) => number) => `${(100 * m(f)).toFixed(0)}%`;
    const tot = (x: GuestTime) => Math.max(1, x.busy + x.idle + x.iowait);
    return `${pct((x) => x.busy / tot(x))} / ${pct((x) => x.idle / tot(x))} / ${pct((x) => x.iowait / tot(x))}; thread ${pct((x) => x.threadS * 1000 / x.wallMs)} / ${pct((x) => x.threadWaitS * 1000 / x.wallMs)}`;
  };
  const ws = workDone.ringzero?.[t] ?? [];
  const loop = ws.length === 0 || !Number.isFinite(ws[0].haltMs) ? '-' : `${(100 * median(ws.map((w) => w.haltMs / w.wallMs))).toFixed(0)}% / ${(100 * median(ws.map((w) => w.yieldMs / w.wallMs))).toFixed(0)}%`;
  for (const vmm of ['ringzero', 'qemu']) {
    const xs = guestTime[vmm]?.[t];
    if (xs && xs.length > 0) {
      const tot = (x: GuestTime) => Math.max(1, x.busy + x.idle + x.iowait);
      figures[`${vmm === 'qemu' ? 'qemu_tcg' : vmm}_${t}_guest_idle_pct`] = Number((100 * median(xs.map((x) => (x.idle + x.iowait) / tot(x)))).toFixed(1));
      // (the guest's busy USER_HZ ticks per unit: with RINGZERO_BENCH_QEMU_ARGS='["-icount","shift=0,sleep=off"]' QEMU's
      // guest time is its instruction count, 10 M instructions per tick)
      figures[`${vmm === 'qemu' ? 'qemu_tcg' : vmm}_${t}_guest_busy_ticks_per_unit`] = Number(median(xs.map((x) => x.busy / unitsOf(t))).toPrecision(4));
      // The same without the tick's sampling: the guest's uptime between the markers less its idle and iowait, which
      // a tickless idle CPU accounts exactly (get_cpu_idle_time_us), in USER_HZ ticks per unit (10 ms resolution).
      figures[`${vmm === 'qemu' ? 'qemu_tcg' : vmm}_${t}_guest_busy_exact_ticks_per_unit`] = Number(median(xs.map((x) => (x.guestS * 100 - x.idle - x.iowait) / unitsOf(t))).toPrecision(4));
    }
  }
  if (ws.length > 0 && Number.isFinite(ws[0].haltMs)) figures[`ringzero_${t}_halted_pct`] = Number((100 * median(ws.map((w) => w.haltMs / w.wallMs))).toFixed(1));
  idleRows.push([t, cell('ringzero'), cell('qemu'), loop]);
}
if (idleRows.length > 0) {
  console.log('\nbusy or idle during each pass (medians): the guest\'s /proc/stat busy / idle / iowait; its thread on a CPU / waiting for one, per wall second; ringzero\'s run loop halted / in event-loop turns per wall second:');
  printTable(['test', 'ringzero soft', 'qemu -accel tcg', 'ringzero run loop'], idleRows);
}

// The device path on both VMMs: notifications, interrupts and chains per unit.
const pathRows: string[][] = [];
for (const t of tests) {
  const cell = (vmm: string): string => {
    const xs = devicePaths[vmm]?.[t];
    if (!xs || xs.length === 0) return '-';
    const m = (f: (x: DevicePath) => number) => median(xs.map(f));
    const dp = (x: number) => x.toFixed(x < 10 ? 2 : 1);
    return `${dp(m((x) => x.notifies / x.units))} / ${dp(m((x) => x.interrupts / x.units))} / ${dp(m((x) => x.chains / x.units))} (${dp(m((x) => (x.notifies > 0 ? x.chains / x.notifies : NaN)))})`;
  };
  for (const vmm of ['ringzero', 'qemu']) {
    const xs = devicePaths[vmm]?.[t];
    if (!xs || xs.length === 0) continue;
    const key = vmm === 'qemu' ? 'qemu_tcg' : vmm;
    figures[`${key}_${t}_device_notifies_per_unit`] = Number(median(xs.map((x) => x.notifies / x.units)).toFixed(3));
    figures[`${key}_${t}_device_interrupts_per_unit`] = Number(median(xs.map((x) => x.interrupts / x.units)).toFixed(3));
    figures[`${key}_${t}_device_chains_per_unit`] = Number(median(xs.map((x) => x.chains / x.units)).toFixed(3));
  }
  pathRows.push([`${t} (per ${UNITS[t] === 'IOPS' ? 'read' : 'MiB'})`, cell('ringzero'), cell('qemu')]);
}
if (pathRows.some((r) => r[1] !== '-' || r[2] !== '-')) {
  console.log('\nthe test device\'s path (medians): driver notifications / interrupts sent / chains taken per unit (chains per notification); QEMU\'s from its trace log (RINGZERO_BENCH_QEMU_TRACE=1):');
  printTable(['test', 'ringzero soft', 'qemu -accel tcg'], pathRows);
}

// The guest's disk requests per unit on each VMM (its block layer's count): the read's buffer mode, above.
const blockRows: string[][] = [];
for (const t of diskTests) {
  const med = (vmm: string) => (blockRequests[vmm]?.[t] ? median(blockRequests[vmm]![t]!) : undefined);
  const all = (vmm: string) => (blockRequests[vmm]?.[t] ?? []).map((x) => x.toFixed(2)).join(' ') || '-';
  const ours = med('ringzero'), theirs = med('qemu');
  const unit = UNITS[t] === 'IOPS' ? 'read' : 'mib';
  if (ours !== undefined) figures[`ringzero_${t}_guest_requests_per_${unit}`] = Number(ours.toFixed(2));
  if (theirs !== undefined) figures[`qemu_tcg_${t}_guest_requests_per_${unit}`] = Number(theirs.toFixed(2));
  blockRows.push([`${t} (per ${UNITS[t] === 'IOPS' ? 'read' : 'MiB'})`, all('ringzero'), all('qemu')]);
}
if (blockRows.length > 0) {
  console.log('\nthe guest\'s disk requests per unit (/sys/block/vda/stat, each run; a 1 MiB O_DIRECT read is 1 request when dd\'s buffer is in few physical runs, 2 when in single pages):');
  printTable(['test', 'ringzero soft', 'qemu -accel tcg'], blockRows);
}

// Where ringzero's time goes: guest instructions and device traps per unit of work, and the guest CPU rate.
const workRows: string[][] = [];
for (const key of ['ringzero', 'ringzero_base']) {
  for (const t of tests) {
    const ws = workDone[key]?.[t];
    if (!ws || ws.length === 0) continue;
    const m = (f: (w: Work) => number) => median(ws.map(f));
    const unit = UNITS[t] === 'IOPS' ? 'read' : 'MiB';
    const instr = m((w) => w.instructions / w.units);
    const cpuRate = perCpu[key]?.[t] ? median(perCpu[key][t]!) : undefined;
    figures[`${key}_${t}_instructions_per_${unit.toLowerCase()}`] = Math.round(instr);
    // (the serial console's port I/O left out: it is the command line's echo, not the test's work)
    figures[`${key}_${t}_traps_per_${unit.toLowerCase()}`] = Number(m((w) => (w.mmio + w.pio - w.consolePio) / w.units).toFixed(2));
    figures[`${key}_${t}_notifies_per_${unit.toLowerCase()}`] = Number(m((w) => w.notifies / w.units).toFixed(2));
    figures[`${key}_${t}_interrupts_per_${unit.toLowerCase()}`] = Number(m((w) => w.interrupts / w.units).toFixed(2));
    // The data's direction through the NIC (the other way carries the ACKs): its frames' average size shows how much
    // segmentation offload made of it (a plain Ethernet frame holds at most 1514 bytes).
    const frameBytes = t === 'tcp' ? m((w) => (w.rxFrames > 0 ? w.rxBytes / w.rxFrames : 0)) : t === 'tcpout' ? m((w) => (w.txFrames > 0 ? w.txBytes / w.txFrames : 0)) : undefined;
    if (frameBytes !== undefined) figures[`${key}_${t}_bytes_per_frame`] = Math.round(frameBytes);
    const passInstr = m((w) => w.passInstructions / w.units);
    if (Number.isFinite(passInstr)) figures[`${key}_${t}_pass_instructions_per_${unit.toLowerCase()}`] = Math.round(passInstr);
    workRows.push([`${t} (per ${unit})${key === 'ringzero_base' ? ', csum only' : ''}`, `${(instr / 1e3).toFixed(1)} (${Number.isFinite(passInstr) ? (passInstr / 1e3).toFixed(1) : '-'})`, m((w) => w.mmio / w.units).toFixed(2),
      m((w) => (w.pio - w.consolePio) / w.units).toFixed(2), m((w) => w.consolePio / w.units).toFixed(2),
      m((w) => w.notifies / w.units).toFixed(2), m((w) => w.interrupts / w.units).toFixed(2),
      m((w) => w.halts / w.units).toFixed(2), cpuRate !== undefined ? (instr * cpuRate / 1e6).toFixed(1) : '-', frameBytes !== undefined ? frameBytes.toFixed(0) : '-']);
  }
}
if (workRows.length > 0) {
  console.log('\nringzero: guest work per unit (control socket stats; medians):');
  printTable(['test', 'k instructions (within the pass)', 'MMIO traps', 'port I/O', 'console port I/O', 'queue notifies', 'device interrupts', 'halts', 'guest MIPS per CPU-s', 'bytes per data frame'], workRows);
}
// (RINGZERO_BENCH_QEMU_COUNT) QEMU's guest instructions per unit beside ringzero's: the same work, or more of it?
const countRows: string[][] = [];
for (const t of tests) {
  const q = qemuInstructions[t];
  if (!q || q.length === 0) continue;
  const unit = UNITS[t] === 'IOPS' ? 'read' : 'MiB';
  const qi = median(q);
  const rz = workDone.ringzero?.[t];
  const ri = rz && rz.length > 0 ? median(rz.map((w) => w.instructions / w.units)) : NaN;
  figures[`qemu_tcg_${t}_instructions_per_${unit.toLowerCase()}`] = Math.round(qi);
  countRows.push([`${t} (per ${unit})`, (ri / 1e3).toFixed(1), (qi / 1e3).toFixed(1), Number.isFinite(ri) ? (ri / qi).toFixed(2) : '-']);
}
if (countRows.length > 0) {
  console.log('\nguest instructions per unit on both VMMs (ringzero: control socket; QEMU: its TCG plugin; medians):');
  printTable(['test', 'ringzero k', 'QEMU TCG k', 'ringzero / QEMU'], countRows);
}
// The soft engine's side of the same work: what kept instructions out of translated code.
const engineRows: string[][] = [];
for (const key of ['ringzero', 'ringzero_base']) {
  for (const t of tests) {
    const ws = (workDone[key]?.[t] ?? []).filter((w) => w.engine !== undefined);
    if (ws.length === 0) continue;
    const m = (f: (e: EngineWork) => number) => median(ws.map((w) => f(w.engine!) / w.units));
    const unit = UNITS[t] === 'IOPS' ? 'read' : 'MiB';
    engineRows.push([`${t} (per ${unit})${key === 'ringzero_base' ? ', csum only' : ''}`, (m((e) => e.notTranslated) / 1e3).toFixed(1),
      m((e) => e.wasmCalls).toFixed(1), m((e) => e.replays).toFixed(1), m((e) => e.translated).toFixed(1), m((e) => e.tlbRefills).toFixed(1)]);
  }
}
if (engineRows.length > 0) {
  console.log('\nringzero soft engine per unit (medians; blocks translated during the test are new code paths warming up):');
  printTable(['test', 'k instructions not in wasm', 'calls into wasm', 'replays', 'blocks translated', 'TLB refills'], engineRows);
}
console.log(JSON.stringify(figures));
