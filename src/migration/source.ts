// Live migration, the sending side: pre-copy over TCP from a running Machine (either engine: on KVM the dirty-page log
// takes KVM's dirty bitmap, and the state is KVM's vCPU and in-kernel device state in the snapshot format).
//
//   1. hello: the VM's definition and memory size; the destination builds the same machine and answers ready.
//   2. Iteration 0 sends every non-zero page of RAM while the guest keeps running (the destination's RAM starts
//      zeroed, so zero pages need not travel); the dirty-page log (GuestMemory) records what the guest and the
//      devices write meanwhile.
//   3. Each further iteration takes the pages written since the previous one and sends them, still running. The
//      measured bandwidth and the dirty set give the expected downtime; once it fits the limit (downtimeMs), or
//      the dirty set is small enough to send at once, the source stops the VM:
//   4. stop-and-copy: pause, send the last dirty pages (and the virtqueues' used rings), then the VM state in the
//      snapshot format (CPUs, interrupt controllers, timers, every device, virtio included) with its CRC. The
//      destination restores it and says "loaded" (ready to run, not running).
//   5. switch-over, two-phase: the source sends "go"; the destination runs the guest and says "resumed"; the source
//      then ends its VM.
// Any failure before "loaded" (the link drops, the destination refuses or dies, no convergence within
// maxIterations) stops the transfer and resumes the source VM where it was: it never stops being the VM of record
// (the destination, never told "go", discards its copy). Once "go" is sent the source never resumes by itself: a link
// lost before "resumed" arrives leaves it paused in 'switch-over-unknown' (the guest may run at the destination, or
// not), and only resolveSwitchover (the control socket's migrate-resolve), called by whoever can ask the destination,
// resumes it or ends it. Without this a lost "resumed" would leave the guest running on both sides, two diverging
// copies on one shared disk; QEMU's return path plus libvirt's confirm step is the same idea.
//
// QEMU's pre-copy (migration/ram.c: bitmap sync per iteration, expected downtime = dirty bytes / bandwidth, the
// 300 ms default downtime limit) is the model; nothing is taken from its code.
import net from 'node:net';
import crypto from 'node:crypto';
import type { Machine } from '../vmm/machine.ts';
import { sealState, ringzeroVersion, dataExtents, SNAPSHOT_VERSION, type SnapshotBody } from '../vmm/snapshot.ts';
import { markDeviceWrittenPages, forgetDiffBase } from '../vmm/snapshot-diff.ts';
import { SourceDisks, type DiskSender } from './storage.ts';
import {
  FrameBuffers, FrameReader, MIGRATION_FORMAT, MIGRATION_VERSION, PAGE, MAX_FRAME_PAGES, T_JSON,
  faultPoint, jsonFrame, pagesFrame, writeFrame, type FaultPoint, type Frame,
} from './protocol.ts';
import { isAllZero } from '../sys/zero.ts';
import { HOT_FORMAT, MAX_LISTED } from '../cpu/soft/hot-list.ts';
import { GROUP_BOOST, holdSession, SWITCHOVER_BOOST } from '../vmm/resume-priority.ts';
import { epochMs, stampsBefore, stampsJson } from '../vmm/console-stamps.ts';

/** RINGZERO_MIGRATE_HOT_STATS=1: both ends say on stderr what the hot-block list cost and did (src/cpu/soft/hot-list.ts). */
export const HOT_STATS = process.env.RINGZERO_MIGRATE_HOT_STATS === '1';

export interface MigrateOptions {
  host: string;
  port: number;
  /** Longest pause of the guest aimed for (QEMU's default: 300 ms). */
  downtimeMs?: number;
  /** Pre-copy iterations after the first full pass before giving up (the source keeps running). */
  maxIterations?: number;
  /** Cap on the send rate, bytes per second (undefined: as fast as the link goes). */
  bandwidth?: number;
  /** How long to wait for the destination to connect/answer (ms). */
  timeoutMs?: number;
  /**
   * Send a SHA-256 of all RAM with the state, which the destination checks before it resumes (a test of the
   * dirty-page tracking end to end; it reads all RAM on both sides while the guest is paused, so downtime grows).
   */
  verifyMemory?: boolean;
  /** Test-only: drop the link at this point (protocol.ts FaultPoint; default RINGZERO_TEST_MIGRATION_FAULT). */
  fault?: FaultPoint;
  /**
   * Copy every disk to the destination (libvirt's --copy-storage-all): storage.ts. Without it the disks must be on
   * storage both sides share.
   */
  copyStorage?: boolean;
  /**
   * Soft engine: list at most this many of the source's translated blocks for the destination to translate during the
   * pre-copy (src/cpu/soft/hot-list.ts); 0: no list. Default RINGZERO_MIGRATE_HOT_MAX, else 2048 (RINGZERO_MIGRATE_HOT=0: 0).
   */
  hotBlocks?: number;
  /**
   * The nice value this VMM's session takes from "sync" to "resumed" (src/vmm/resume-priority.ts holdSession; 0:
   * none). Default the VMM's (`run --resume-boost`, else RINGZERO_RESUME_GROUP_BOOST, else -10).
   */
  resumeBoost?: number;
  /** Test-only: called after each disk frame of the first disk pass (a test writes to the disk meanwhile). */
  onDiskFrame?: () => void | Promise<void>;
}

/**
 * 'switch-over': "go" sent, waiting for "resumed". 'switch-over-unknown': the link failed after "go"; the VM stays
 * paused here until resolveSwitchover. 'completed': the destination runs the VM (or the operator said so).
 */
export type MigrationPhase = 'setup' | 'precopy' | 'stop-and-copy' | 'switch-over' | 'switch-over-unknown' | 'completed' | 'failed';

export interface MigrationProgress {
  phase: MigrationPhase;
  to: string;
  /** Pre-copy pass: 0 is the full pass, then one per dirty-set round. */
  iteration: number;
  bytesSent: number;
  pagesSent: number;
  zeroPagesSent: number;
  /** Pages dirty when last measured (what the next round, or the stop-and-copy, must send). */
  dirtyPages: number;
  /** Bytes the guest dirtied per second during the last round. */
  dirtyRate: number;
  /** Bytes per second the last round achieved. */
  bandwidth: number;
  /** Downtime expected if the VM were stopped now (dirty bytes / bandwidth + fixed cost). */
  expectedDowntimeMs: number;
  /**
   * copy-storage only: bytes of disk the first pass goes through (the disks' data ranges) and has gone through, wire
   * bytes of disk data sent (also counted in bytesSent), bytes of disk dirty when last measured, and the rate the
   * guest dirtied its disks in the last round (bytes per second).
   */
  diskTotal?: number;
  diskTransferred?: number;
  diskBytesSent?: number;
  diskDirtyBytes?: number;
  diskDirtyRate?: number;
  downtimeLimitMs: number;
  /**
   * The hot-block list (soft engine, a destination that takes it): blocks listed, the list's bytes on the wire, the
   * pages sent ahead of the rest for it, the source's time taking it (ms: the guest stands still meanwhile), and the
   * blocks the destination had translated when the state came (its "loaded").
   */
  hotBlocks?: number;
  hotBytes?: number;
  hotPages?: number;
  hotMs?: number;
  hotTranslated?: number;
  /** Measured: from pausing the VM to the destination's "resumed". */
  downtimeMs?: number;
  /** Where the downtime went: stopping the vCPUs, the last pages, capturing and sealing the state, the destination. */
  downtimeParts?: { pauseMs: number; pagesMs: number; stateMs: number; destinationMs: number; stateBytes: number };
  totalMs: number;
  error?: string;
  /** How a 'switch-over-unknown' was settled: the VM resumed here, or ended here (it runs at the destination). */
  resolution?: 'resumed-here' | 'ended-here';
}

export const DEFAULT_DOWNTIME_MS = 300;
export const DEFAULT_MAX_ITERATIONS = 30;
/** Fixed part of the stop-and-copy besides the pages: the state (~100 KiB of JSON) and the destination's restore. */
const STATE_COST_MS = 10;
/**
 * Frames of at least this many pages go through FrameBuffers (protocol.ts); smaller ones are allocated as before: a
 * small allocation is cheap (no mapping of its own), and several small frames are in flight at once (the socket takes
 * 16 KiB before it pushes back, and gives a buffer back only when the event loop turns), each of which would hold a
 * whole pooled buffer.
 */
const POOLED_FRAME_PAGES = 16;
/** Below this many dirty pages, stop at once (sending them takes about as long as measuring another round). */
const SMALL_DIRTY_SET = 64;

const progress = new WeakMap<Machine, MigrationProgress>();
/** Machines paused in 'switch-over-unknown': whether this migration paused them (resolving may resume them). */
const unresolved = new WeakMap<Machine, { pausedHere: boolean }>();

/** The current or last migration of `machine`, for the control socket's migrate-status. */
export function migrationProgress(machine: Machine): MigrationProgress | undefined {
  const p = progress.get(machine);
  return p ? { ...p } : undefined;
}

export class MigrationError extends Error {}

/** The switch-over's outcome is unknown: the VM is paused here and must not run until resolveSwitchover. */
export class SwitchoverUnknownError extends MigrationError {}

/**
 * Settle a 'switch-over-unknown' migration of `machine`: resume true runs the VM here again (only right when the
 * destination is known not to run it), false marks it migrated (the caller then ends this VMM). Throws when there
 * is nothing to settle.
 */
export function resolveSwitchover(machine: Machine, resume: boolean): MigrationProgress {
  const p = progress.get(machine);
  const pending = unresolved.get(machine);
  if (!p || !pending || p.phase !== 'switch-over-unknown') throw new MigrationError(`no migration of this VM awaits resolution (phase ${p?.phase ?? 'none'})`);
  unresolved.delete(machine);
  if (resume) {
    p.phase = 'failed';
    p.resolution = 'resumed-here';
    p.error = `${p.error ?? 'switch-over unknown'}; resolved: the VM resumed here`;
    if (pending.pausedHere) machine.resume();
  } else {
    p.phase = 'completed';
    p.resolution = 'ended-here';
  }
  return { ...p };
}

/** Whether `machine` is paused in 'switch-over-unknown' (a plain resume must be refused then). */
export function switchoverUnknown(machine: Machine): boolean {
  return progress.get(machine)?.phase === 'switch-over-unknown';
}

/**
 * Migrate `machine` (running or paused, either engine) to the destination at host:port. Resolves with the final progress
 * once the destination runs the VM (the caller then ends the source VM); rejects with MigrationError when the
 * migration fails, the source VM running again as before.
 */
export async function migrateMachine(machine: Machine, opts: MigrateOptions, onProgress?: (p: MigrationProgress) => void): Promise<MigrationProgress> {
  const current = progress.get(machine);
  if (current && (current.phase === 'setup' || current.phase === 'precopy' || current.phase === 'stop-and-copy' || current.phase === 'switch-over')) throw new MigrationError('a migration of this VM is already in progress');
  if (current?.phase === 'switch-over-unknown') throw new MigrationError('the last migration of this VM ended in an unknown switch-over: resolve it first (migrate-resolve)');
  const fault = faultPoint(opts.fault);
  const downtimeLimitMs = opts.downtimeMs ?? DEFAULT_DOWNTIME_MS;
  const maxIterations = opts.maxIterations ?? DEFAULT_MAX_ITERATIONS;
  const started = Date.now();
  const p: MigrationProgress = {
    phase: 'setup', to: `${opts.host}:${opts.port}`, iteration: 0, bytesSent: 0, pagesSent: 0, zeroPagesSent: 0,
    dirtyPages: 0, dirtyRate: 0, bandwidth: 0, expectedDowntimeMs: 0, downtimeLimitMs, totalMs: 0,
  };
  progress.set(machine, p);
  const report = () => { p.totalMs = Date.now() - started; onProgress?.({ ...p }); };

  const mem = machine.mem;
  const wasPaused = machine.paused;
  let pausedHere = false;
  let logStartedHere = false;
  const socket = net.createConnection({ host: opts.host, port: opts.port });
  socket.setNoDelay(true);
  const link = new Link(socket, opts.timeoutMs ?? 30_000);
  let disks: SourceDisks | undefined;
  let releaseBoost: (() => void) | undefined;
  try {
    if (opts.copyStorage) disks = new SourceDisks(machine);
    await link.connected();
    // 1. hello
    const { controlSocket: _own, ...config } = machine.config;
    await link.send(jsonFrame({
      kind: 'hello', format: MIGRATION_FORMAT, version: MIGRATION_VERSION, snapshotVersion: SNAPSHOT_VERSION, ringzeroVersion: ringzeroVersion(), config, memorySize: mem.size,
      ...(disks ? { disks: disks.offers() } : {}),
    }));
    const ready = await link.expect('ready');
    alive(machine);

    // 1b. copy-storage: every disk, the guest's writes noted from before the first read (storage.ts).
    let lastDiskHarvest = Date.now();
    if (disks) {
      Object.assign(p, { diskTotal: 0, diskTransferred: 0, diskBytesSent: 0, diskDirtyBytes: 0, diskDirtyRate: 0 });
      disks.track();
      lastDiskHarvest = Date.now();
      p.phase = 'precopy';
      report();
      const sender = pacedSender(link, machine, p, opts.bandwidth, report, opts.onDiskFrame);
      await disks.copyAll(sender, p as Required<MigrationProgress>);
      p.bandwidth = sender.bytes() / Math.max(sender.ms(), 1) * 1000;
      report();
    }

    // 2. the full pass, with the log on from its start
    if (mem.dirtyLog) mem.harvestDirtyLog();
    else { mem.startDirtyLog(); logStartedHere = true; }
    const logSince = Date.now();
    // A diff snapshot taken later would miss what this migration harvests: its base is forgotten.
    forgetDiffBase(machine, 'a live migration used the dirty-page log since the last snapshot');
    p.phase = 'precopy';
    // Only pages that ever held data: a memfd's holes (never written) are skipped without being read.
    const all = new Uint8Array(mem.pageCount);
    for (const r of mem.regions) {
      const extents = mem.privateFile ? [[r.fileOffset, r.fileOffset + r.size] as [number, number]] : dataExtents(mem.fd, r.fileOffset, r.fileOffset + r.size);
      for (const [start, end] of extents) all.fill(1, Math.floor(start / PAGE), Math.ceil(end / PAGE));
    }
    // The soft engine's translated blocks go first, with the pages they lie in, to a destination that takes them
    // (src/cpu/soft/hot-list.ts): it translates them while the rest of the pre-copy arrives, so the guest does not
    // start there on a cold block cache. Pages written later come again in the dirty rounds, as any page does.
    // (RINGZERO_MIGRATE_HOT=0: not sent, to compare)
    const hotAt = performance.now();
    const hotMax = opts.hotBlocks ?? (process.env.RINGZERO_MIGRATE_HOT === '0' ? 0 : MAX_LISTED);
    const hot = ready.hot === HOT_FORMAT && hotMax > 0 ? machine.hotList(hotMax) : undefined;
    if (hot) Object.assign(p, { hotBlocks: hot.list.blocks, hotBytes: hot.list.data.length, hotMs: Math.round((performance.now() - hotAt) * 10) / 10 });
    if (hot && HOT_STATS) process.stderr.write(`ringzero: migration: hot-block list of ${hot.list.blocks} blocks (${(hot.list.data.length / 1024).toFixed(0)} KiB of base64) in ${(performance.now() - hotAt).toFixed(1)} ms\n`);
    let round = { bytes: 0, ms: 0 };
    if (hot) {
      for (let i = 0; i < hot.pages.length; i++) if (all[i] === 0) hot.pages[i] = 0;
      p.hotPages = countPages(hot.pages);
      round = await sendPages(link, machine, hot.pages, p, opts.bandwidth, true);
      await link.send(jsonFrame({ kind: 'hot', list: hot.list }));
      for (let i = 0; i < hot.pages.length; i++) if (hot.pages[i] !== 0) all[i] = 0;
    }
    const rest = await sendPages(link, machine, all, p, opts.bandwidth, true);
    round = { bytes: round.bytes + rest.bytes, ms: round.ms + rest.ms };
    p.bandwidth = round.bytes / Math.max(round.ms, 1) * 1000;
    report();

    // 3. dirty rounds until the rest fits the downtime. The pages harvested were written since the previous harvest
    // (the log's start for the first): that span gives the dirty rate.
    let lastHarvest = logSince;
    let previousBytes = Infinity;
    for (;;) {
      const dirty = mem.harvestDirtyLog();
      const now = Date.now();
      const count = countPages(dirty);
      p.dirtyPages = count;
      p.dirtyRate = count * PAGE / Math.max(now - lastHarvest, 1) * 1000;
      lastHarvest = now;
      // The disks' dirty grains count with the pages: both go in the stop-and-copy.
      const diskBytes = disks ? disks.dirtyBytes() : 0;
      const diskDirty = disks?.harvest();
      if (disks) {
        p.diskDirtyBytes = diskBytes;
        p.diskDirtyRate = diskBytes / Math.max(now - lastDiskHarvest, 1) * 1000;
        lastDiskHarvest = now;
      }
      const dirtyBytes = count * PAGE + diskBytes;
      p.expectedDowntimeMs = dirtyBytes / Math.max(p.bandwidth, 1) * 1000 + STATE_COST_MS;
      report();
      // Stop when the rest is tiny, or fits the limit and another round would not shrink it by half (QEMU stops as
      // soon as it fits; going on while the set still halves buys a shorter pause for a round or two more).
      const fits = p.expectedDowntimeMs <= downtimeLimitMs;
      const shrinking = dirtyBytes < previousBytes / 2 && p.iteration < maxIterations;
      previousBytes = dirtyBytes;
      if (dirtyBytes <= SMALL_DIRTY_SET * PAGE || (fits && !shrinking)) {
        // Back into the log: the stop-and-copy sends them with whatever comes until the pause.
        const log = mem.dirtyLog!;
        for (let i = 0; i < dirty.length; i++) if (dirty[i]) log[i] = 1;
        if (disks && diskDirty) disks.remark(diskDirty);
        break;
      }
      if (p.iteration >= maxIterations) {
        const disk = disks ? `, its disks ${(p.diskDirtyRate! / 2 ** 20).toFixed(1)} MiB/s` : '';
        throw new MigrationError(`no convergence after ${maxIterations} iterations: the guest dirties ${(p.dirtyRate / 2 ** 20).toFixed(1)} MiB/s${disk}, the link moves ${(p.bandwidth / 2 ** 20).toFixed(1)} MiB/s, the rest would take ${p.expectedDowntimeMs.toFixed(0)} ms (limit ${downtimeLimitMs} ms)`);
      }
      p.iteration++;
      round = await sendPages(link, machine, dirty, p, opts.bandwidth, false);
      if (disks && diskDirty) {
        const sender = pacedSender(link, machine, p, opts.bandwidth, report);
        await disks.copyDirty(sender, p as Required<MigrationProgress>, diskDirty);
        round = { bytes: round.bytes + sender.bytes(), ms: round.ms + sender.ms() };
      }
      if (round.bytes > 256 * 1024) p.bandwidth = round.bytes / Math.max(round.ms, 1) * 1000;
    }

    // Drain the pipe first: pages still queued in the socket buffers (up to megabytes on loopback) would otherwise be
    // waited for with the guest stopped. The destination answers "synced" once it has taken everything before it.
    // (from here to "resumed" the guest stops: this VMM's session first on a loaded host, src/vmm/resume-priority.ts)
    if (SWITCHOVER_BOOST) releaseBoost = holdSession(opts.resumeBoost ?? GROUP_BOOST);
    await link.send(jsonFrame({ kind: 'sync' }));
    await link.expect('synced');
    alive(machine);

    // 4. stop-and-copy
    p.phase = 'stop-and-copy';
    const pauseAt = Date.now();
    const tl: Record<string, number> = { pause: epochMs() };
    if (!wasPaused) { await machine.pause(); pausedHere = true; }
    alive(machine);
    const pausedAt = Date.now();
    tl.paused = epochMs();
    machine.serial.flush();
    // The state before the last harvest: on KVM, saving may let the guest run a moment (an event in flight, see
    // KvmCpus.saveState), and whatever it writes then must still be in the last pages.
    const captured = await machine.saveState();
    const capturedAt = Date.now();
    tl.captured = epochMs();
    const last = mem.harvestDirtyLog();
    markDeviceWrittenPages(machine, last);
    p.dirtyPages = countPages(last);
    // The disks' last dirty grains, harvested paused: from here on no guest write may reach them (checked before "go").
    if (disks) p.diskDirtyBytes = disks.dirtyBytes();
    const lastDisk = disks?.harvest();
    const diskWrites = disks?.writes() ?? 0;
    await sendPages(link, machine, last, p, undefined, false);
    if (disks && lastDisk) await disks.copyDirty(pacedSender(link, machine, p, undefined, report), p as Required<MigrationProgress>, lastDisk);
    const pagesAt = Date.now();
    tl.pages = epochMs();
    const body: SnapshotBody = { ...captured, memory: { file: '', size: mem.size, sha256: '' } };
    const stateFrame = jsonFrame({ kind: 'state', state: sealState(body), ...(opts.verifyMemory ? { ramSha256: ramDigest(machine) } : {}) });
    const stateAt = Date.now();
    await link.send(stateFrame);
    tl.stateSent = epochMs();
    if (fault === 'source:after-state') link.cut('test fault: link cut after the state was sent');
    const loaded = await link.expect('loaded');
    tl.loaded = epochMs();
    if (p.hotBlocks !== undefined && Number.isSafeInteger(loaded.hotTranslated)) p.hotTranslated = loaded.hotTranslated as number;
    if (disks && disks.writes() !== diskWrites) throw new MigrationError('a disk was written after its last dirty blocks were harvested (the VM was paused): the destination\'s copy would miss it');

    // 5. The point of no return: once "go" may have left, this side never resumes the VM by itself.
    p.phase = 'switch-over';
    report();
    try {
      if (fault === 'source:before-go') link.cut('test fault: link cut before "go" was sent');
      await link.send(jsonFrame({ kind: 'go' }));
      tl.go = epochMs();
      await link.expect('resumed');
      tl.resumed = epochMs();
    } catch (error) {
      p.phase = 'switch-over-unknown';
      p.error = `switch-over to ${p.to} unknown: the destination had loaded the VM when the link failed (${(error as Error).message}); `
        + 'the VM stays paused here and must not run until it is known whether it runs at the destination (migrate-resolve)';
      unresolved.set(machine, { pausedHere });
      report();
      link.close();
      if (logStartedHere) mem.stopDirtyLog();
      disks?.untrack();
      throw new SwitchoverUnknownError(p.error);
    }
    const end = Date.now();
    p.downtimeMs = end - pauseAt;
    p.downtimeParts = { pauseMs: pausedAt - pauseAt, pagesMs: pagesAt - capturedAt, stateMs: (capturedAt - pausedAt) + (stateAt - pagesAt), destinationMs: end - stateAt, stateBytes: stateFrame.length };
    // (the guest's clock stopped at pausedAt: with the destination's "resumed at", where the ticker's interval across
    // the switch-over went, bench/restore-hot --hops)
    if (HOT_STATS) {
      process.stderr.write(`ringzero: migration: paused at ${pausedAt} (epoch ms)\n`);
      // (one clock for both VMMs' lines, with the console's last writes before the pause: bench/restore-hot --hops)
      process.stderr.write(`ringzero: migration: source timeline ${JSON.stringify(tl)}\n`);
      process.stderr.write(`ringzero: migration: console writes before the pause ${stampsJson(stampsBefore(tl.paused, 256))}\n`);
    }
    p.phase = 'completed';
    p.dirtyPages = 0;
    if (disks) p.diskDirtyBytes = 0;
    report();
    if (logStartedHere) mem.stopDirtyLog();
    disks?.untrack();
    link.close();
    releaseBoost?.();
    return { ...p };
  } catch (error) {
    releaseBoost?.();
    if (error instanceof SwitchoverUnknownError) throw error;
    p.phase = 'failed';
    p.error = error instanceof Error ? error.message : String(error);
    report();
    link.close();
    if (logStartedHere) mem.stopDirtyLog();
    // The guest goes on writing its own disks, untracked: the destination's partial copies are its side's to remove.
    disks?.untrack();
    if (pausedHere) machine.resume();
    throw error instanceof MigrationError ? error : new MigrationError(`migration to ${p.to} failed: ${p.error}`);
  }
}

/** SHA-256 over guest RAM in image order (both sides compute it the same way). */
export function ramDigest(machine: Machine): string {
  const h = crypto.createHash('sha256');
  for (const r of machine.mem.regions) h.update(r.bytes);
  return h.digest('hex');
}

function countPages(pages: Uint8Array): number {
  let n = 0;
  for (let i = 0; i < pages.length; i++) n += pages[i];
  return n;
}

/** The image bytes of pages [first, first+count) (one RAM region). */
function pageBytes(machine: Machine, first: number, count: number): Uint8Array {
  const offset = first * PAGE, len = count * PAGE;
  for (const r of machine.mem.regions) {
    if (offset >= r.fileOffset && offset + len <= r.fileOffset + r.size) return r.bytes.subarray(offset - r.fileOffset, offset - r.fileOffset + len);
  }
  throw new RangeError(`pages ${first}+${count} are not in one RAM region`);
}

/**
 * Send the pages set in `pages` (runs of up to MAX_FRAME_PAGES, never across a RAM region), zero pages as ZERO frames
 * or, on the first pass (the destination's RAM is still all zeros), not at all. Yields to the event loop between
 * batches so the guest keeps running while it is not paused.
 */
async function sendPages(link: Link, machine: Machine, pages: Uint8Array, p: MigrationProgress, bandwidth: number | undefined, firstPass: boolean): Promise<{ bytes: number; ms: number }> {
  // Paced as the disk frames: never more than `bandwidth` bytes per second since the round started (the guest runs
  // meanwhile). Progress is reported by the caller once per round.
  const sender = pacedSender(link, machine, p, bandwidth, () => {});
  const regionEnds = machine.mem.regions.map((r) => (r.fileOffset + r.size) / PAGE);
  const frameBuffers = new FrameBuffers();
  for (let page = 0; page < pages.length;) {
    if (!pages[page]) { page++; continue; }
    const regionEnd = regionEnds.find((e) => e > page)!;
    // A run of set pages, split where zero and non-zero pages alternate.
    let end = page;
    while (end < regionEnd && end - page < MAX_FRAME_PAGES && pages[end]) end++;
    const data = pageBytes(machine, page, end - page);
    for (let at = 0; at < end - page;) {
      const zero = isZero(data, at);
      let k = at + 1;
      while (k < end - page && isZero(data, k) === zero) k++;
      if (!zero || !firstPass) {
        const pooled = zero || k - at < POOLED_FRAME_PAGES ? undefined : frameBuffers.take();
        const frame = pagesFrame(page + at, k - at, zero ? undefined : data.subarray(at * PAGE, k * PAGE), pooled);
        await link.send(frame, pooled && (() => frameBuffers.give(pooled)));
        if (zero) p.zeroPagesSent += k - at;
        else p.pagesSent += k - at;
        await sender.paced(frame.length);
      }
      at = k;
    }
    page = end;
  }
  return { bytes: sender.bytes(), ms: sender.ms() };
}

/**
 * A DiskSender (storage.ts) over the link: each frame counted in bytesSent, the rate capped at `bandwidth` since the
 * sender was made, and the event loop (the guest) given a turn every megabyte or 8 ms while the VM runs.
 */
function pacedSender(link: Link, machine: Machine, p: MigrationProgress, bandwidth: number | undefined, report: () => void, onFrame?: () => void | Promise<void>): DiskSender & { bytes(): number; ms(): number } {
  const start = Date.now();
  let bytes = 0, batchBytes = 0, batchStart = start;
  return {
    send: (frame) => link.send(frame),
    async paced(n: number) {
      bytes += n;
      batchBytes += n;
      p.bytesSent += n;
      alive(machine);
      await onFrame?.();
      const ahead = bandwidth ? bytes / bandwidth * 1000 - (Date.now() - start) : 0;
      if (ahead > 2 || batchBytes >= 1 << 20 || Date.now() - batchStart >= 8) {
        if (ahead > 2) await new Promise((r) => setTimeout(r, ahead));
        else if (!machine.paused) await new Promise<void>((r) => setImmediate(r));
        alive(machine);
        link.check();
        batchBytes = 0;
        batchStart = Date.now();
        report();
      }
    },
    bytes: () => bytes,
    ms: () => Date.now() - start,
  };
}

/**
 * The VM must still exist after every wait: a guest that powers off mid-migration has its RAM unmapped soon after,
 * and views taken before the wait would then point at nothing.
 */
function alive(machine: Machine): void {
  if (machine.exitRequested) throw new MigrationError(`the VM stopped during the migration (${machine.exitRequested.kind})`);
}

function isZero(data: Uint8Array, page: number): boolean {
  return isAllZero(data.subarray(page * PAGE, (page + 1) * PAGE));
}

/** The source's end of the connection: ordered sends, and the destination's answers (or its failure). */
class Link {
  private readonly reader = new FrameReader();
  private readonly answers: Record<string, unknown>[] = [];
  private waiter: ((m: Record<string, unknown> | Error) => void) | undefined;
  private failure: Error | undefined;
  private readonly opened: Promise<void>;

  constructor(private readonly socket: net.Socket, private readonly timeoutMs: number) {
    this.opened = new Promise((resolve, reject) => {
      socket.once('connect', () => resolve());
      socket.once('error', reject);
    });
    this.opened.catch(() => {});
    socket.on('data', (chunk: Buffer) => {
      let frames: Frame[];
      try {
        frames = this.reader.push(chunk);
      } catch (error) {
        this.fail(error as Error);
        return;
      }
      for (const f of frames) {
        if (f.type !== T_JSON) { this.fail(new Error('the destination sent pages')); return; }
        if (f.message.kind === 'error') { this.fail(new Error(`the destination refused: ${String(f.message.message)}`)); return; }
        this.answers.push(f.message);
      }
      this.deliver();
    });
    socket.on('error', (error) => this.fail(error));
    socket.on('close', () => this.fail(new Error('the destination closed the connection')));
  }

  async connected(): Promise<void> {
    let timer: NodeJS.Timeout | undefined;
    try {
      await Promise.race([this.opened, new Promise((_, reject) => { timer = setTimeout(() => reject(new Error(`cannot connect within ${this.timeoutMs} ms`)), this.timeoutMs); })]);
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code;
      throw new MigrationError(`cannot reach the destination: ${code ?? (error as Error).message}`);
    } finally {
      clearTimeout(timer);
    }
  }

  private fail(error: Error): void {
    if (!this.failure) this.failure = error;
    this.deliver();
  }

  private deliver(): void {
    const w = this.waiter;
    if (!w) return;
    if (this.answers.length > 0) { this.waiter = undefined; w(this.answers.shift()!); }
    else if (this.failure) { this.waiter = undefined; w(this.failure); }
  }

  /** Throw if the link has failed (or the destination gave up). */
  check(): void {
    if (this.failure) throw this.failure;
  }

  /** `written`: called once the socket no longer needs `frame`'s bytes (sent to the kernel, or the socket failed). */
  async send(frame: Buffer, written?: () => void): Promise<void> {
    this.check();
    await writeFrame(this.socket, frame, written);
  }

  /** Wait for the destination's next message, which must be `kind`. */
  async expect(kind: string): Promise<Record<string, unknown>> {
    let timer: NodeJS.Timeout | undefined;
    const m = await new Promise<Record<string, unknown> | Error>((resolve) => {
      this.waiter = resolve;
      timer = setTimeout(() => { this.waiter = undefined; resolve(new Error(`no '${kind}' from the destination within ${this.timeoutMs} ms`)); }, this.timeoutMs);
      this.deliver();
    });
    clearTimeout(timer);
    if (m instanceof Error) throw m;
    if (m.kind !== kind) throw new Error(`the destination answered '${String(m.kind)}' instead of '${kind}'`);
    return m;
  }

  close(): void {
    this.socket.destroy();
  }

  /** Test-only fault: drop the connection now, as a cut link would. */
  cut(why: string): void {
    this.fail(new Error(why));
    this.socket.destroy();
  }
}
