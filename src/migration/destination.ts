// Live migration, the receiving side (`ringzero run --incoming tcp:HOST:PORT`): listen, take one source's stream
// (protocol.ts), build the machine it describes, fill its RAM, restore its state and run it.
// Nothing runs here until the state has arrived and restored cleanly ("loaded" to the source) and the source has
// then said "go": a stream that breaks off before "go", or that carries a damaged or foreign state, ends this
// process with an error and leaves the source as the VM of record (protocol.ts: the two-phase switch-over).
import fs from 'node:fs';
import net from 'node:net';
import { Machine, type MachineOptions } from '../vmm/machine.ts';
import type { ConsoleIo, VmConfig } from '../vmm/config.ts';
import { openState, SNAPSHOT_VERSION } from '../vmm/snapshot.ts';
import { checkVcpuState } from '../vmm/snapshot-cpu.ts';
import { HOT_STATS, ramDigest } from './source.ts';
import { FrameReader, MIGRATION_FORMAT, MIGRATION_VERSION, PAGE, T_DISK, T_DISK_ZERO, T_JSON, T_PAGES, T_ZERO, faultPoint, jsonFrame, parseHostPort, type FaultPoint, type Frame } from './protocol.ts';
import { DestinationDisks, blockDevices, parseOffers } from './storage.ts';
import { HOT_FORMAT, type PretranslateReport } from '../cpu/soft/hot-list.ts';
import { WARMUP_MS, warmUp, type WarmUpReport } from './warm-up.ts';
import { profileResume, startResumeProfile } from '../vmm/resume-profile.ts';
import { epochMs, stampsJson, stampsSince } from '../vmm/console-stamps.ts';
import { favourMainThread, favourSession, groupBoosted, holdSession, SWITCHOVER_BOOST, OTHERS_NICE, RESUME_BOOST, RESUME_NICE_S } from '../vmm/resume-priority.ts';

export interface IncomingOptions {
  host: string;
  port: number;
  /** The control socket of this VMM (the source's is its own). */
  controlSocket?: string;
  /** Told the address actually listened on (port 0 picks a free one). */
  onListening?(address: { host: string; port: number }): void;
  /** Give up when the stream stalls this long once it has started (ms). */
  idleTimeoutMs?: number;
  /** The engine to run the VM on here (default: the one the source's VM definition names; the state fits either). */
  engine?: VmConfig['engine'];
  /** Test-only: drop the link at this point (protocol.ts FaultPoint; default RINGZERO_TEST_MIGRATION_FAULT). */
  fault?: FaultPoint;
  /**
   * copy-storage: where this side creates its copy of each disk, in disk order (files that must not exist; removed
   * again if the migration fails before the switch-over). Without it the disks must be shared, at the source's paths.
   */
  diskTargets?: string[];
  /** Told what became of the source's hot-block list once its translation here has ended (tests, --stats). */
  onPretranslated?(report: PretranslateReport): void;
  /**
   * The warm-up before "ready" (./warm-up.ts): its main-thread CPU (default RINGZERO_MIGRATE_WARMUP_MS; 0: none) and
   * wall time (default RINGZERO_MIGRATE_WARMUP_WALL_MS) at most.
   */
  warmUp?: { ms?: number; wallMs?: number };
  /** Told what the warm-up did once it has ended (tests, --stats). */
  onWarmUp?(report: WarmUpReport): void;
}

/** `tcp:HOST:PORT`, the form QEMU's -incoming takes. */
export function parseIncoming(text: string): { host: string; port: number } {
  if (!text.startsWith('tcp:')) throw new Error(`--incoming '${text}' is not tcp:HOST:PORT`);
  const rest = text.slice(4);
  // Port 0 (any free port) is allowed here: the address is printed once listening.
  const m = /^(.*):0$/.exec(rest);
  if (m) return { ...parseHostPort(`${m[1]}:1`, '--incoming'), port: 0 };
  return parseHostPort(rest, '--incoming');
}

/**
 * Wait for one incoming migration and return the restored machine, ready to run(): returned only after the source's
 * "go" (this side's "resumed" is sent just before returning). Throws, with nothing left behind, when the stream fails
 * before "go".
 */
export async function receiveMigration(opts: IncomingOptions, console: ConsoleIo, machineOptions: MachineOptions = {}): Promise<Machine> {
  const { machine, resumed } = await receiveMigrationHeld(opts, console, machineOptions);
  resumed();
  return machine;
}

/** What the destination's side of a migration measured, in epoch ms (console-stamps.ts's clock), for HOT_STATS. */
export interface DestinationTimeline {
  /** The state frame arrived (the source's guest is paused). */
  state?: number;
  /** It was applied (the guest's clock held at the source's pause until run()). */
  applied?: number;
  /** "go" arrived. */
  go?: number;
  /** "resumed" was sent: the guest's clock runs again and its first instruction follows. */
  resumed?: number;
}

/**
 * receiveMigration, but "resumed" goes to the source only when the caller calls resumed(), just before machine.run():
 * the source measures its downtime up to that answer, so the downtime it reports covers this side's way from "go" to
 * the guest's first instruction (the process's priority changes, the profiler) and is never shorter than the pause
 * the guest sees (its clock stands still until run(): Machine.applyState holds it). RINGZERO_MIGRATE_RESUMED_EARLY=1:
 * "resumed" on "go", as before session 24 (the downtime then ends before the guest runs here).
 */
export async function receiveMigrationHeld(opts: IncomingOptions, console: ConsoleIo, machineOptions: MachineOptions = {}): Promise<{ machine: Machine; resumed: () => void; timeline: DestinationTimeline }> {
  const server = net.createServer();
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(opts.port, opts.host, () => { server.off('error', reject); resolve(); });
  });
  const address = server.address() as net.AddressInfo;
  opts.onListening?.({ host: address.address, port: address.port });
  const socket = await new Promise<net.Socket>((resolve) => server.once('connection', resolve));
  // One source per destination: later connections are refused.
  server.close();
  server.on('connection', (s: net.Socket) => s.destroy());
  socket.setNoDelay(true);
  const timeline: DestinationTimeline = {};
  let machine: Machine | undefined;
  try {
    machine = await receive(socket, opts, console, machineOptions, timeline);
  } catch (error) {
    if (!socket.destroyed) socket.end(jsonFrame({ kind: 'error', message: (error as Error).message }));
    socket.destroy();
    throw error;
  }
  let said = false;
  const resumed = () => {
    if (said) return;
    said = true;
    timeline.resumed = epochMs();
    if (!socket.destroyed) socket.end(jsonFrame({ kind: 'resumed' }));
  };
  if (RESUMED_EARLY) resumed();
  return { machine, resumed, timeline };
}

/** RINGZERO_MIGRATE_RESUMED_EARLY=1: "resumed" as soon as "go" arrives (receiveMigrationHeld). */
const RESUMED_EARLY = process.env.RINGZERO_MIGRATE_RESUMED_EARLY === '1';

function receive(socket: net.Socket, opts: IncomingOptions, console: ConsoleIo, machineOptions: MachineOptions, timeline: DestinationTimeline): Promise<Machine> {
  return new Promise<Machine>((resolve, reject) => {
    const reader = new FrameReader({ reusePages: true });
    let machine: Machine | undefined;
    let copies: DestinationDisks | undefined;
    let loaded = false;
    // (the source's hot blocks being translated here meanwhile: src/cpu/soft/hot-list.ts; from then on every page
    // that arrives drops the translations of its page)
    let stopPretranslate: (() => void) | undefined;
    let pretranslating = false;
    // (V8 warmed up on the VMM's JavaScript by a scratch boot of the guest's kernel before "ready": ./warm-up.ts)
    let stopWarmUp: (() => void) | undefined;
    // (the source stops its guest after "sync": this VMM's session first until its first seconds after the resume)
    let releaseBoost: (() => void) | undefined;
    const fault = faultPoint(opts.fault);
    let done = false;
    let timer: NodeJS.Timeout | undefined;
    const idle = opts.idleTimeoutMs ?? 60_000;
    const arm = () => {
      clearTimeout(timer);
      timer = setTimeout(() => finish(new Error(`the migration stream stalled for ${idle} ms`)), idle);
    };
    const finish = (result: Error | Machine) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      socket.off('data', onData);
      stopWarmUp?.();
      if (result instanceof Error) {
        releaseBoost?.();
        stopPretranslate?.();
        machine?.close();
        copies?.remove();
        reject(result);
      } else {
        if (releaseBoost) { favourSession(); releaseBoost(); }
        resolve(result);
      }
    };
    const handle = (f: Frame) => {
      if (f.type === T_JSON) {
        const m = f.message;
        if (m.kind === 'hello') {
          if (machine) throw new Error('a second hello');
          ({ machine, copies } = build(m, opts, console, machineOptions));
          // (hot: this side takes the source's hot-block list, which an older destination would refuse as unknown)
          const ready = jsonFrame({ kind: 'ready', ...(machine.config.engine !== 'kvm' ? { hot: HOT_FORMAT } : {}) });
          const warmMs = opts.warmUp?.ms ?? WARMUP_MS;
          if (machine.config.engine !== 'kvm' && warmMs > 0) {
            // V8 warmed up first (./warm-up.ts), the whole thread while the source waits for "ready": its guest runs
            // on meanwhile and nothing it dirties is waiting yet, so the downtime is not touched, only the total time.
            stopWarmUp = warmUp(machine.config, (r) => {
              opts.onWarmUp?.(r);
              if (!done && !socket.destroyed) socket.write(ready);
            }, { ms: warmMs, wallMs: opts.warmUp?.wallMs }).stop;
          } else {
            socket.write(ready);
          }
        } else if (m.kind === 'hot') {
          if (!machine) throw new Error('the hot-block list came before hello');
          if (loaded || pretranslating) throw new Error('a hot-block list after the state, or a second one');
          // Its pages came before it: translated in the background while the pre-copy goes on.
          pretranslating = true;
          stopPretranslate = machine.pretranslate(m.list, opts.onPretranslated);
        } else if (m.kind === 'sync') {
          // Everything before it has been applied: the source may stop its VM without a backlog in the pipe. The disk
          // copies are flushed now, so that the one before "loaded" has only the last blocks to write.
          copies?.flush();
          // The source pauses its guest next: no more hot blocks are started here, so the last pages and the state
          // do not wait behind a step of them (what compiles still installs, checked against its page's generation).
          stopPretranslate?.();
          if (SWITCHOVER_BOOST && !releaseBoost) releaseBoost = holdSession();
          socket.write(jsonFrame({ kind: 'synced' }));
        } else if (m.kind === 'state') {
          if (!machine) throw new Error('the state came before hello');
          if (m.ramSha256 !== undefined && m.ramSha256 !== ramDigest(machine)) throw new Error('guest RAM differs from the source\'s after the transfer (SHA-256 mismatch)');
          if (loaded) throw new Error('a second state');
          timeline.state = epochMs();
          // Every disk block has arrived (the source sends them before the state): durable before "loaded".
          copies?.finish(blockDevices(machine));
          stopPretranslate?.();
          restore(machine, m.state, pretranslating);
          timeline.applied = epochMs();
          // Ready to run, not running: the source decides (its "go"), so a lost link never leaves two copies running.
          loaded = true;
          // (with what the hot-block list got translated here, for the source's progress)
          const hot = machine.pretranslated;
          socket.write(jsonFrame({ kind: 'loaded', ...(hot !== undefined ? { hotTranslated: Math.max(hot.installed, hot.installedAtStop ?? 0) } : {}) }));
        } else if (m.kind === 'go') {
          if (!machine || !loaded) throw new Error('"go" came before the state was loaded');
          timeline.go = epochMs();
          // ("resumed" follows when the guest is about to run: receiveMigrationHeld)
          if (fault === 'destination:after-go') socket.destroy();
          finish(machine);
        } else {
          throw new Error(`unexpected message '${String(m.kind)}'`);
        }
        return;
      }
      if (!machine) throw new Error('pages came before hello');
      if (f.type === T_DISK || f.type === T_DISK_ZERO) {
        if (!copies) throw new Error('disk data from a source that did not offer to copy its disks');
        if (loaded) throw new Error('disk data after the state');
        if (f.type === T_DISK) copies.write(f.disk, f.offset, f.data);
        else copies.zero(f.disk, f.offset, f.length);
        return;
      }
      const into = imagePages(machine, f.first, f.count);
      if (f.type === T_PAGES) into.set(f.data);
      else if (f.type === T_ZERO) into.fill(0);
      // Pages written again after blocks were built from them: their code is dropped (page generation), as for any
      // write that is not the CPU's. Low RAM (file offset = guest address) is the only RAM code is cached from.
      if (pretranslating && f.first * PAGE < machine.mem.lowSize) machine.mem.noteExternalWrite(f.first * PAGE, Math.min(f.count * PAGE, machine.mem.lowSize - f.first * PAGE));
    };
    const onData = (chunk: Buffer) => {
      arm();
      try {
        // One frame at a time, each applied before the next is parsed: a PAGES frame's data may be the reader's
        // reused buffer.
        reader.add(chunk);
        for (let f = reader.next(); f; f = reader.next()) {
          handle(f);
          if (done) return;
        }
      } catch (error) {
        finish(error as Error);
      }
    };
    socket.on('data', onData);
    socket.on('error', (error) => finish(new Error(`the migration stream failed: ${error.message}`)));
    socket.on('close', () => finish(new Error(loaded
      ? 'the source closed the connection after the state was loaded but before "go": the VM is discarded here (the source resumes it)'
      : 'the source closed the connection before the VM state arrived')));
    arm();
  });
}

/**
 * The destination machine for a source's hello: same definition, this process's control socket, fresh RAM; with
 * copy-storage, its disks are new copies at the targets given here (created empty, filled by DISK frames).
 */
function build(m: Record<string, unknown>, opts: IncomingOptions, console: ConsoleIo, machineOptions: MachineOptions): { machine: Machine; copies?: DestinationDisks } {
  if (m.format !== MIGRATION_FORMAT) throw new Error(`not a ringzero migration stream (format ${JSON.stringify(m.format)})`);
  if (m.version !== MIGRATION_VERSION || m.snapshotVersion !== SNAPSHOT_VERSION) {
    throw new Error(`the source speaks migration version ${String(m.version)} with state version ${String(m.snapshotVersion)} (ringzero ${String(m.ringzeroVersion)}); this side speaks ${MIGRATION_VERSION} with ${SNAPSHOT_VERSION}`);
  }
  const config = m.config as VmConfig;
  if (typeof config !== 'object' || config === null || !Number.isSafeInteger(config.memory) || config.memory !== m.memorySize) throw new Error('the source sent no usable VM definition');
  if (!Number.isInteger(config.cpus) || config.cpus < 1 || config.cpus > 255) throw new Error(`the source's VM has ${String(config.cpus)} vCPUs`);
  const { controlSocket: _theirs, ...rest } = config;
  const engine = opts.engine ?? (rest.engine === 'kvm' ? 'kvm' : 'soft');
  const mine: VmConfig = { ...rest, engine, ...(opts.controlSocket !== undefined ? { controlSocket: opts.controlSocket } : {}) };
  const disks = Array.isArray(config.disks) ? config.disks : [];
  if (m.disks === undefined) {
    if (opts.diskTargets !== undefined) throw new Error('this destination was given disk targets (copy-storage), but the source does not copy its disks');
    return { machine: new Machine(mine, console, machineOptions) };
  }
  const offers = parseOffers(m.disks, disks.length, opts.diskTargets);
  const copies = new DestinationDisks(offers, opts.diskTargets!);
  copies.create();
  try {
    mine.disks = disks.map((d, i) => ({ ...d, path: opts.diskTargets![i] }));
    const machine = new Machine(mine, console, machineOptions);
    try {
      copies.attach(blockDevices(machine));
    } catch (error) {
      machine.close();
      throw error;
    }
    return { machine, copies };
  } catch (error) {
    copies.remove();
    throw error;
  }
}

function imagePages(machine: Machine, first: number, count: number): Uint8Array {
  const offset = first * PAGE, len = count * PAGE;
  for (const r of machine.mem.regions) {
    if (offset >= r.fileOffset && offset + len <= r.fileOffset + r.size) return r.bytes.subarray(offset - r.fileOffset, offset - r.fileOffset + len);
  }
  throw new Error(`pages ${first}+${count} are outside guest RAM`);
}

/**
 * RINGZERO_MIGRATE_HOT_STATS: where the destination's time goes from the resume to the guest's first console output
 * (issue 7): the main thread's CPU, its wait on the run queue and the rest (blocked: futex, poll), from
 * /proc/self/task/PID/schedstat (run ns, run-queue wait ns, timeslices), and the wall time, at the first write.
 */
function firstWriteProbe(io: ConsoleIo): (what: string) => void {
  const stat = mainSchedstat;
  const t0 = performance.now(), s0 = stat();
  const mark = (what: string) => {
    const s1 = stat(), wall = performance.now() - t0, cpu = (s1[0] - s0[0]) / 1e6, queued = (s1[1] - s0[1]) / 1e6;
    process.stderr.write(`ringzero: migration: ${what} ${wall.toFixed(1)} ms after the resume: main thread CPU ${cpu.toFixed(1)} ms, run-queue wait ${queued.toFixed(1)} ms, blocked ${(wall - cpu - queued).toFixed(1)} ms, ${s1[2] - s0[2]} timeslices\n`);
  };
  const write = io.write;
  io.write = function (this: ConsoleIo, data: Uint8Array) {
    io.write = write;
    mark(`first console write at ${Date.now()} (epoch ms),`);
    return write.call(this, data);
  };
  return mark;
}

/** The main thread's /proc/self/task/PID/schedstat: run ns, run-queue wait ns, timeslices (NaNs without it). */
function mainSchedstat(): number[] {
  try { return fs.readFileSync(`/proc/self/task/${process.pid}/schedstat`, 'utf8').split(' ').map(Number); } catch { return [NaN, NaN, NaN]; }
}

/** The main thread's CPU time in ms (schedstat), NaN without it. */
function mainCpuMs(): number {
  return mainSchedstat()[0] / 1e6;
}

function restore(machine: Machine, state: unknown, keepCode: boolean): void {
  const body = openState(state, 'the migrated VM state', 'the migration stream');
  if (body.vcpus.length !== machine.config.cpus) throw new Error(`the state has ${body.vcpus.length} vCPUs for ${machine.config.cpus}`);
  if (body.header.memorySize !== machine.mem.size) throw new Error(`the state is for ${body.header.memorySize} bytes of RAM, not ${machine.mem.size}`);
  body.vcpus.forEach((s, i) => checkVcpuState(s, i));
  machine.applyState(body, { keepCode });
}

/**
 * `ringzero run --incoming tcp:HOST:PORT`: receive the VM, then run it as `ringzero run` does (a guest reset with
 * onReboot 'restart' boots a fresh machine from the same definition). Exit status 0 after the guest powers off or
 * after it migrated away again; 1 when the migration in fails.
 */
export async function runIncoming(uri: string, io: ConsoleIo, options: { controlSocket?: string; engine?: VmConfig['engine']; diskTargets?: string[] } = {}): Promise<number> {
  const { host, port } = parseIncoming(uri);
  let machine: Machine, resumed: () => void, timeline: DestinationTimeline;
  startResumeProfile();
  try {
    ({ machine, resumed, timeline } = await receiveMigrationHeld({
      host, port, controlSocket: options.controlSocket, engine: options.engine, diskTargets: options.diskTargets,
      ...(HOT_STATS ? {
        onPretranslated: (r: PretranslateReport) => process.stderr.write(`ringzero: migration: hot blocks ${JSON.stringify(r)}\n`),
        onWarmUp: (r: WarmUpReport) => process.stderr.write(`ringzero: migration: warm-up ${JSON.stringify({ ...r, ms: Math.round(r.ms), wallMs: Math.round(r.wallMs) })}\n`),
      } : {}),
      onListening: (a) => process.stderr.write(`ringzero: waiting for an incoming migration on ${a.host.includes(':') ? `[${a.host}]` : a.host}:${a.port}\n`),
    }, io));
  } catch (error) {
    process.stderr.write(`ringzero: incoming migration failed: ${(error as Error).message}\n`);
    return 1;
  }
  const returned = epochMs();
  process.stderr.write('ringzero: migration received: the VM runs here\n');
  if (HOT_STATS) process.stderr.write(`ringzero: migration: resumed at ${Date.now()} (epoch ms)\n`);
  const probe = HOT_STATS ? firstWriteProbe(io) : undefined;
  // The guest's thread first while V8 compiles what this new process has not (src/vmm/resume-priority.ts): soft
  // engine only (KVM's vCPUs may run on worker threads)
  if (machine.config.engine !== 'kvm') {
    // (this VMM's own session, as the daemon starts it, first: against other sessions the threads' nice values do not count)
    favourSession();
    const lowered = favourMainThread();
    if (HOT_STATS) process.stderr.write(`ringzero: migration: for ${RESUME_NICE_S} s this thread at nice ${RESUME_BOOST}, ${lowered} others at ${OTHERS_NICE}${groupBoosted ? `, its session's autogroup at nice ${groupBoosted.now} (was ${groupBoosted.was})` : ''}\n`);
  }
  profileResume();
  probe?.('boosted');
  // The source's downtime ends with this answer, and the guest's clock starts again with run(), right after.
  resumed();
  if (HOT_STATS) {
    // (one clock for both VMMs' lines: bench/restore-hot --hops splits the console's gap with them)
    process.stderr.write(`ringzero: migration: destination timeline ${JSON.stringify({ ...timeline, returned, run: epochMs() })}\n`);
    const from = timeline.resumed ?? returned;
    // (what the guest ran in its first moments here: instructions, and how many of them in translated wasm and in
    // the block cache, blocks recorded and translated here since the resume, the main thread's CPU)
    const cpu = machine.vcpus[0]?.cpu;
    if (cpu && machine.config.engine !== 'kvm') {
      const counters = () => ({ ins: cpu.instructions, blk: cpu.blockInstructions, jit: cpu.jitInstructions, rec: cpu.codeCache.stats.blocks, comp: cpu.codeCache.stats.compiled, cpuMs: mainCpuMs() });
      const c0 = counters();
      for (const at of [100, 250, 500, 1000]) {
        setTimeout(() => {
          const c = counters();
          process.stderr.write(`ringzero: migration: ${at} ms after the resume ${JSON.stringify(Object.fromEntries(Object.entries(c).map(([k, v]) => [k, Math.round((v - c0[k as keyof typeof c0]) * 10) / 10])))}\n`);
        }, at).unref();
      }
    }
    setTimeout(() => process.stderr.write(`ringzero: migration: console writes after the resume ${stampsJson(stampsSince(from, 256))}\n`), 1500).unref();
  }
  let exit;
  try {
    exit = await machine.run();
  } finally {
    machine.close();
  }
  if (exit.kind === 'poweroff') return 0;
  if (exit.kind === 'error') {
    process.stderr.write(`ringzero: ${exit.message}\n`);
    return 1;
  }
  if (machine.config.onReboot === 'exit') return 0;
  process.stderr.write('ringzero: guest reset: restarting\n');
  const { runVm } = await import('../vmm/run.ts');
  return runVm(machine.config, io);
}
