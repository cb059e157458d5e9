// The VMM's control channel: a Unix socket (`ringzero run --control-socket PATH`) taking one JSON object per
// line and answering each with one JSON line, for what changes while the VM runs:
//   {"cmd":"balloon-set","pages":N} or {"cmd":"balloon-set","bytes":N}  the balloon's target
//   {"cmd":"balloon-stats"}                                             target, actual, the guest's statistics
//   {"cmd":"shutdown"}                  press the ACPI power button; answers {"ok":true,"listening":B} at once, where
//                                       B says whether the guest has enabled the button (it then powers off by itself)
//   {"cmd":"stats"}                     the machine's counters (src/vmm/machine.ts VmCounters): instructions,
//                                       I/O exits by kind, disk and network bytes; cheap, answered between slices
//   {"cmd":"snapshot","dir":"/ABS"}     pause, write a snapshot to the directory /ABS (replacing it), resume; answers
//                                       when the snapshot is complete
//   {"cmd":"migrate","to":"HOST:PORT",...}  live migration to a VMM run with --incoming (see migrateCommand below);
//   {"cmd":"migrate-status"}            its progress
//   {"cmd":"migrate-resolve","resume":B}  settle a migration left in 'switch-over-unknown' (paused, the destination
//                                       may or may not run the guest): true resumes it here, false ends this VMM
//   {"cmd":"snapshot","dir":"/ABS","diff":true}   a diff snapshot: only the pages written since the last snapshot
//                                       this VMM took (full or diff), which it names as its base (src/vmm/snapshot-diff.ts)
//   {"cmd":"disk-snapshot","disks":[{"index":N,"overlay":"/ABS"}]}   switch disk N (--disk order) to a qcow2 overlay
//                                       of its image, all listed disks at one instant, pausing for it unless paused
//                                       (src/vmm/disk-switch.ts); answers {"ok":true,"pausedMs":T,"disks":[PATH,...]}
//   {"cmd":"pause"}                     stop every vCPU (suspend); answers once none runs: {"ok":true,"paused":true}
//                                       (what the guest's clocks do meanwhile: Machine.pause in src/vmm/machine.ts)
//   {"cmd":"resume"}                    let the vCPUs run again: {"ok":true,"paused":false}
//   {"cmd":"reboot"}                    graceful reboot: press the power button and make the guest's poweroff a reset
//                                       (which `--on-reboot restart` boots again); {"ok":true,"listening":B} as shutdown
//   {"cmd":"reset"}                     hard reset now (as the reset line of a PC)
//   {"cmd":"status"}                    {"ok":true,"paused":B,"engine":E,"vcpuThreads":[TID,...]}: the host threads
//                                       that run the vCPUs, for pinning them (sched_setaffinity)
// Answers are {"ok":true,...} or {"ok":false,"error":"..."}. The socket file is created mode 0600 (only the
// VMM's user may steer it) and removed on close. Deliberately small: a management API proper is the daemon's
// (src/api); this is what the VMM process itself offers it.
import fs from 'node:fs';
import net from 'node:net';
import { PerformanceObserver, constants as perfConstants } from 'node:perf_hooks';
import v8 from 'node:v8';
import type { VirtioBalloon } from '../devices/virtio/balloon.ts';
import { BALLOON_PAGE } from '../devices/virtio/balloon.ts';

/** Longest request line accepted; a client sending more without a newline is disconnected. */
const MAX_LINE = 4096;

/**
 * The VMM process's garbage collections by kind and their pause time (ms), counted from the first `stats` request on
 * (the observer costs nothing until something asks), with the JavaScript heap's size: bench/io reads them around each
 * test (session 24 found a major GC's marking in the TCP pass).
 */
const gcCounts = { minor: 0, major: 0, incremental: 0, weak: 0, pauseMs: 0 };
let gcObserver: PerformanceObserver | undefined;
function processHeap(): Record<string, number> {
  if (!gcObserver) {
    gcObserver = new PerformanceObserver((list) => {
      for (const e of list.getEntries()) {
        const kind = (e as unknown as { detail?: { kind?: number } }).detail?.kind;
        if (kind === perfConstants.NODE_PERFORMANCE_GC_MAJOR) gcCounts.major++;
        else if (kind === perfConstants.NODE_PERFORMANCE_GC_MINOR) gcCounts.minor++;
        else if (kind === perfConstants.NODE_PERFORMANCE_GC_INCREMENTAL) gcCounts.incremental++;
        else gcCounts.weak++;
        gcCounts.pauseMs += e.duration;
      }
    });
    gcObserver.observe({ entryTypes: ['gc'] });
  }
  const h = v8.getHeapStatistics();
  return { ...gcCounts, usedMiB: h.used_heap_size / 1048576, totalMiB: h.total_heap_size / 1048576 };
}

/** What the control socket steers on the machine itself (src/vmm/machine.ts Machine). */
export interface ControlledVm {
  requestShutdown(): boolean;
  snapshot(dir: string): Promise<unknown>;
  /** The machine's counters since it started (monotonic, so a reader computes rates from two samples). */
  stats?(): object;
  pause?(): Promise<void>;
  resume?(): void;
  readonly paused?: boolean;
  requestReboot?(): boolean;
  requestExit?(exit: { kind: 'reset' }): void;
  vcpuThreadIds?(): number[];
  /** The guest profile's samples since the last call (`run --profile-guest`), or undefined without one. */
  takeGuestProfile?(): { samples: number; every: number; addresses: [string, number][] } | undefined;
  readonly config?: { engine: string };
}

export interface ControlTargets {
  balloon?: VirtioBalloon;
  vm?: ControlledVm;
}

export class ControlServer {
  private readonly server: net.Server;
  private readonly clients = new Set<net.Socket>();

  constructor(readonly path: string, private readonly targets: ControlTargets, log: (line: string) => void) {
    try { if (fs.lstatSync(path).isSocket()) fs.unlinkSync(path); } catch { /* not there */ }
    this.server = net.createServer((socket) => this.serve(socket));
    this.server.on('error', (error) => log(`control socket ${path}: ${error.message}`));
    const umask = process.umask(0o177);
    try {
      this.server.listen(path);
    } finally {
      process.umask(umask);
    }
    this.server.unref();
  }

  /** The machine answers shutdown and snapshot (set once the Machine that owns the devices exists). */
  attachVm(vm: ControlledVm): void {
    this.targets.vm = vm;
  }

  listening(): Promise<void> {
    return this.server.listening ? Promise.resolve() : new Promise((resolve, reject) => {
      this.server.once('listening', resolve);
      this.server.once('error', reject);
    });
  }

  close(): void {
    for (const c of this.clients) c.destroy();
    this.server.close();
    try { if (fs.lstatSync(this.path).isSocket()) fs.unlinkSync(this.path); } catch { /* gone */ }
  }

  private serve(socket: net.Socket): void {
    this.clients.add(socket);
    socket.on('close', () => this.clients.delete(socket));
    socket.on('error', () => {});
    let buffered = '';
    let chain = Promise.resolve();
    socket.on('data', (chunk: Buffer) => {
      buffered += chunk.toString('utf8');
      let nl;
      while ((nl = buffered.indexOf('\n')) >= 0) {
        const line = buffered.slice(0, nl);
        buffered = buffered.slice(nl + 1);
        // Answers go out in request order even when one waits for the guest.
        chain = chain.then(async () => {
          const answer = await this.handle(line);
          if (!socket.destroyed) socket.write(`${JSON.stringify(answer)}\n`);
        });
      }
      if (buffered.length > MAX_LINE) socket.destroy();
    });
  }

  private migrate(r: Record<string, unknown>): Promise<Record<string, unknown>> {
    return migrateCommand(this.targets.vm, r);
  }

  async handle(line: string): Promise<Record<string, unknown>> {
    let request: unknown;
    try {
      request = JSON.parse(line);
    } catch {
      return { ok: false, error: 'not JSON' };
    }
    if (typeof request !== 'object' || request === null) return { ok: false, error: 'not a JSON object' };
    const r = request as Record<string, unknown>;
    const balloon = this.targets.balloon;
    switch (r.cmd) {
      case 'balloon-set': {
        if (!balloon) return { ok: false, error: 'this VM has no balloon (run with --balloon)' };
        const pages = typeof r.pages === 'number' ? r.pages : typeof r.bytes === 'number' ? r.bytes / BALLOON_PAGE : NaN;
        if (!Number.isInteger(pages) || pages < 0 || pages > 0xffffffff) return { ok: false, error: 'balloon-set needs "pages" (an integer) or "bytes" (a multiple of 4096)' };
        balloon.setTarget(pages);
        return { ok: true, ...balloon.stats() };
      }
      case 'balloon-stats':
        if (!balloon) return { ok: false, error: 'this VM has no balloon (run with --balloon)' };
        return { ok: true, ...(await balloon.refreshStats()) };
      case 'shutdown':
        if (!this.targets.vm) return { ok: false, error: 'no machine to shut down' };
        return { ok: true, listening: this.targets.vm.requestShutdown() };
      case 'stats': {
        const vm = this.targets.vm;
        if (!vm?.stats) return { ok: false, error: 'no machine to report statistics' };
        return { ok: true, ...vm.stats(), process: processHeap() };
      }
      case 'guest-profile': {
        const profile = this.targets.vm?.takeGuestProfile?.();
        if (!profile) return { ok: false, error: 'no guest profile (run with --profile-guest FILE on the soft engine)' };
        return { ok: true, ...profile };
      }
      case 'pause': {
        const vm = this.targets.vm;
        if (!vm?.pause) return { ok: false, error: 'no machine to pause' };
        try {
          await vm.pause();
        } catch (error) {
          return { ok: false, error: `pause failed: ${(error as Error).message}` };
        }
        return { ok: true, paused: true };
      }
      case 'resume': {
        const vm = this.targets.vm;
        if (!vm?.resume) return { ok: false, error: 'no machine to resume' };
        // A migration whose switch-over is unknown keeps the VM paused: it may run at the destination already.
        const { switchoverUnknown } = await import('../migration/source.ts');
        const { isSnapshotMachine: isMachine } = await import('./snapshot-diff.ts');
        if (isMachine(vm) && switchoverUnknown(vm)) return { ok: false, error: 'the VM\'s migration ended in an unknown switch-over (it may run at the destination): use migrate-resolve' };
        vm.resume();
        return { ok: true, paused: false };
      }
      case 'reboot': {
        const vm = this.targets.vm;
        if (!vm?.requestReboot) return { ok: false, error: 'no machine to reboot' };
        return { ok: true, listening: vm.requestReboot() };
      }
      case 'reset': {
        const vm = this.targets.vm;
        if (!vm?.requestExit) return { ok: false, error: 'no machine to reset' };
        vm.requestExit({ kind: 'reset' });
        return { ok: true };
      }
      case 'status': {
        const vm = this.targets.vm;
        if (!vm) return { ok: false, error: 'no machine yet' };
        return { ok: true, paused: vm.paused === true, engine: vm.config?.engine ?? 'unknown', vcpuThreads: vm.vcpuThreadIds?.() ?? [] };
      }
      case 'snapshot': {
        const vm = this.targets.vm;
        if (!vm) return { ok: false, error: 'no machine to snapshot' };
        if (typeof r.dir !== 'string' || !r.dir.startsWith('/') || r.dir.length > 4096 || r.dir.includes('\0')) {
          return { ok: false, error: 'snapshot needs "dir": an absolute path' };
        }
        // Node's recursive mkdir never returns for a missing directory under /proc (it retries ENOENT forever), and
        // nothing belongs in /proc or /sys anyway.
        if (/^\/+(proc|sys)(\/|$)/.test(r.dir)) return { ok: false, error: 'snapshot "dir" cannot be under /proc or /sys' };
        if (r.diff !== undefined && typeof r.diff !== 'boolean') return { ok: false, error: 'snapshot "diff" must be true or false' };
        try {
          // A Machine goes through snapshot-diff.ts, which also keeps the dirty-page log a later diff needs.
          const { isSnapshotMachine, snapshotMachine } = await import('./snapshot-diff.ts');
          if (isSnapshotMachine(vm)) await snapshotMachine(vm, r.dir, { diff: r.diff === true });
          else if (r.diff === true) return { ok: false, error: 'this VM cannot take diff snapshots' };
          else await vm.snapshot(r.dir);
          return { ok: true, dir: r.dir, ...(r.diff === true ? { diff: true } : {}) };
        } catch (error) {
          return { ok: false, error: `snapshot failed: ${(error as Error).message}` };
        }
      }
      case 'disk-snapshot': {
        // External disk snapshot: switch disks to qcow2 overlays of their images at one instant (src/vmm/disk-switch.ts).
        const { isSwitchableMachine, parseDiskSwitches, switchDisks } = await import('./disk-switch.ts');
        const vm = this.targets.vm;
        if (!isSwitchableMachine(vm)) return { ok: false, error: 'no machine whose disks can be switched' };
        if ((await import('../migration/storage.ts')).diskCopyInProgress(vm)) return { ok: false, error: 'disk-snapshot refused: a live migration is copying this VM\'s disks (copy-storage); try again when it has ended' };
        const switches = parseDiskSwitches(r.disks, vm.config.disks?.length ?? 0);
        if (typeof switches === 'string') return { ok: false, error: switches };
        try {
          return { ok: true, ...(await switchDisks(vm, switches)), disks: (vm.config.disks ?? []).map((d) => d.path) };
        } catch (error) {
          return { ok: false, error: `disk-snapshot failed: ${(error as Error).message}` };
        }
      }
      case 'disk-commit': {
        // Block commit of one disk into its backing image, paused, then the disk switched to it (src/vmm/disk-switch.ts).
        const { commitDisk, isSwitchableMachine } = await import('./disk-switch.ts');
        const vm = this.targets.vm;
        if (!isSwitchableMachine(vm)) return { ok: false, error: 'no machine whose disks can be switched' };
        if ((await import('../migration/storage.ts')).diskCopyInProgress(vm)) return { ok: false, error: 'disk-commit refused: a live migration is copying this VM\'s disks (copy-storage); try again when it has ended' };
        if (!Number.isInteger(r.index) || (r.index as number) < 0 || (r.index as number) >= (vm.config.disks?.length ?? 0)) return { ok: false, error: 'disk-commit needs "index": a disk number' };
        try {
          // "base": commit into that image of the chain (blockcommit --base), not the overlay's backing file.
          return { ok: true, ...(await commitDisk(vm, r.index as number, typeof r.base === 'string' ? { base: r.base } : {})) };
        } catch (error) {
          return { ok: false, error: `disk-commit failed: ${(error as Error).message}` };
        }
      }
      case 'migrate':
        return this.migrate(r);
      case 'migrate-resolve': {
        // src/migration/source.ts resolveSwitchover: the owner of this file left the migration verbs to src/migration.
        const vm = this.targets.vm;
        const { isSnapshotMachine } = await import('./snapshot-diff.ts');
        if (!isSnapshotMachine(vm)) return { ok: false, error: 'no machine to migrate' };
        if (typeof r.resume !== 'boolean') return { ok: false, error: 'migrate-resolve needs "resume": true (run the VM here) or false (it runs at the destination: end here)' };
        const { resolveSwitchover } = await import('../migration/source.ts');
        try {
          const p = resolveSwitchover(vm, r.resume);
          if (!r.resume) {
            setImmediate(() => {
              process.stderr.write(`ringzero: migrated to ${p.to} (downtime unknown: switch-over resolved as done): this VMM ends\n`);
              vm.requestExit({ kind: 'poweroff' });
            });
          }
          return { ok: true, ...p };
        } catch (error) {
          return { ok: false, error: (error as Error).message };
        }
      }
      case 'migrate-status': {
        const vm = this.targets.vm;
        const { isSnapshotMachine } = await import('./snapshot-diff.ts');
        if (!isSnapshotMachine(vm)) return { ok: false, error: 'no machine to migrate' };
        const { migrationProgress } = await import('../migration/source.ts');
        const p = migrationProgress(vm);
        return p ? { ok: true, ...p } : { ok: true, phase: 'none' };
      }
      default:
        return { ok: false, error: `unknown cmd ${JSON.stringify(r.cmd)}: use balloon-set, balloon-stats, disk-snapshot, migrate, migrate-resolve, migrate-status, pause, reboot, reset, resume, shutdown, snapshot, stats or status` };
    }
  }
}

/**
 * {"cmd":"migrate","to":"HOST:PORT"[,"downtimeMs":N][,"maxIterations":N][,"bandwidth":BYTES_PER_S][,"verify":true][,"copyStorage":true][,"hotBlocks":N][,"resumeBoost":NICE]}: live-migrate the
 * VM to a VMM started with `--incoming tcp:HOST:PORT` (src/migration). Answers when it is over: on success with the
 * final progress (this VMM then ends: the VM runs at the destination), on failure with the reason (the VM runs on
 * here). {"cmd":"migrate-status"} reports the progress meanwhile (phase, iteration, bytes sent, dirty rate, expected
 * downtime).
 */
async function migrateCommand(vm: ControlledVm | undefined, r: Record<string, unknown>): Promise<Record<string, unknown>> {
  const { isSnapshotMachine } = await import('./snapshot-diff.ts');
  if (!isSnapshotMachine(vm)) return { ok: false, error: 'no machine to migrate' };
  const { parseHostPort } = await import('../migration/protocol.ts');
  let to: { host: string; port: number };
  try {
    if (typeof r.to !== 'string') throw new Error('migrate needs "to": "HOST:PORT"');
    to = parseHostPort(r.to, '"to"');
  } catch (error) {
    return { ok: false, error: (error as Error).message };
  }
  const positive = (v: unknown, max: number) => v === undefined || (Number.isInteger(v) && (v as number) >= 1 && (v as number) <= max);
  if (!positive(r.downtimeMs, 600_000)) return { ok: false, error: '"downtimeMs" must be an integer from 1 to 600000' };
  if (!positive(r.maxIterations, 10_000)) return { ok: false, error: '"maxIterations" must be an integer from 1 to 10000' };
  if (!positive(r.bandwidth, 2 ** 40)) return { ok: false, error: '"bandwidth" must be a positive integer (bytes per second)' };
  if (r.verify !== undefined && typeof r.verify !== 'boolean') return { ok: false, error: '"verify" must be true or false' };
  if (r.copyStorage !== undefined && typeof r.copyStorage !== 'boolean') return { ok: false, error: '"copyStorage" must be true or false' };
  const { MAX_LISTED_LIMIT } = await import('../cpu/soft/hot-list.ts');
  if (r.hotBlocks !== undefined && !(Number.isInteger(r.hotBlocks) && (r.hotBlocks as number) >= 0 && (r.hotBlocks as number) <= MAX_LISTED_LIMIT)) {
    return { ok: false, error: `"hotBlocks" must be an integer from 0 to ${MAX_LISTED_LIMIT} (0: no hot-block list)` };
  }
  const { resumeBoostError } = await import('./resume-priority.ts');
  if (r.resumeBoost !== undefined && resumeBoostError(r.resumeBoost)) return { ok: false, error: `"resumeBoost" ${resumeBoostError(r.resumeBoost)}` };
  const { migrateMachine } = await import('../migration/source.ts');
  try {
    const result = await migrateMachine(vm, {
      ...to, downtimeMs: r.downtimeMs as number | undefined, maxIterations: r.maxIterations as number | undefined, bandwidth: r.bandwidth as number | undefined,
      verifyMemory: r.verify === true, copyStorage: r.copyStorage === true, ...(r.hotBlocks !== undefined ? { hotBlocks: r.hotBlocks as number } : {}),
      ...(r.resumeBoost !== undefined ? { resumeBoost: r.resumeBoost as number } : {}),
    });
    // The VM runs at the destination now: this VMM ends (after this answer is written).
    setImmediate(() => {
      process.stderr.write(`ringzero: migrated to ${r.to} (downtime ${result.downtimeMs} ms): this VMM ends\n`);
      vm.requestExit({ kind: 'poweroff' });
    });
    return { ok: true, ...result };
  } catch (error) {
    // 'switch-over-unknown' says the VM stays paused here (migrate-resolve settles it); the caller must know.
    const { migrationProgress } = await import('../migration/source.ts');
    const phase = migrationProgress(vm)?.phase;
    return { ok: false, error: (error as Error).message, ...(phase === 'switch-over-unknown' ? { phase } : {}) };
  }
}

/** Send one request to a VMM's control socket and return its answer (the CLI's side). */
export function controlRequest(path: string, request: Record<string, unknown>, timeoutMs = 5000): Promise<Record<string, unknown>> {
  return new Promise((resolve, reject) => {
    const socket = net.createConnection(path);
    let buffered = '';
    const timer = setTimeout(() => { socket.destroy(); reject(new Error(`no answer from ${path} within ${timeoutMs} ms`)); }, timeoutMs);
    socket.on('connect', () => socket.write(`${JSON.stringify(request)}\n`));
    socket.on('data', (d) => {
      buffered += d.toString('utf8');
      const nl = buffered.indexOf('\n');
      if (nl < 0) return;
      clearTimeout(timer);
      socket.end();
      try { resolve(JSON.parse(buffered.slice(0, nl)) as Record<string, unknown>); } catch (e) { reject(e as Error); }
    });
    socket.on('error', (error) => { clearTimeout(timer); reject(new Error(`cannot reach the VM's control socket ${path}: ${(error as NodeJS.ErrnoException).code ?? error.message}`)); });
  });
}
