// Live migration between two daemons (`ringzero migrate NAME --to HOST:PORT`, POST /vms/{name}/migrate): the VMM
// stream itself is src/migration's (pre-copy, stop-and-copy, the state in the snapshot format); this module is what
// the two daemons do around it.
//
// The destination daemon listens for migrations (`ringzero daemon --migration-listen HOST:PORT
// --migration-token-file F`). The source daemon connects there and the two speak over that one TCP connection, the
// "link", in frames of { type u8, length u32 LE, payload }:
//   CHALLENGE (7, JSON) destination, first: {nonce} (32 random bytes, hex)
//   HELLO  (1, JSON)  source: {format, version, auth, definition, disks: [{path, size}], linkTimeoutMs, source[,
//                     copyStorage: true, diskTargets: [TARGET | null per disk]]}, where
//                     auth = HMAC-SHA256(the shared migration token, nonce): proof that the source knows the token
//                     (which never crosses the link), since a VM offered here is started here with its disk paths
//   ACCEPT (2, JSON)  destination: {ok: true} once its VMM waits for the stream, or {ok: false, code, message}
//   DATA   (3)        the VMM-to-VMM migration stream, either way, byte for byte
//   PING   (4)        both ways every linkTimeoutMs/4: a peer silent for linkTimeoutMs is gone (a cut link shows no
//                     error for minutes: TCP keeps retransmitting; the silence is what tells)
//   END    (5)        that side's VMM closed its end of the stream
//   ABORT  (6, JSON)  {message}: that side gives up
//   QUERY  (8, JSON)  source, instead of HELLO, on a fresh link: {format, version, auth, vm}: does VM `vm` run here?
//   ANSWER (9, JSON)  destination: {ok: true, state: 'running' | 'absent' | 'pending'} or {ok: false, message}
// The destination defines the VM from the definition the source sends and starts its VMM with `run --incoming
// tcp:127.0.0.1:0` (its own loopback: only the daemon reaches it); each daemon relays between its VMM and the link.
// Without copyStorage, disks are not copied: they must be on storage both hosts see at the same path (the destination
// checks that each exists with the size the source reports), as for libvirt's migration without --copy-storage. With
// it (libvirt's --copy-storage-all), the source VMM streams every disk along with the memory (src/migration/storage.ts)
// and the destination's VMM writes each into a new file: a TARGET the source names (an absolute path at the
// destination, or a volume name in its pool), by default a volume of the source image's file name in the
// destination's pool; none may exist. The destination defines the VM on those copies, and removes them if the
// migration fails (its marker names them, for a daemon killed meanwhile). The source's disks stay where they were
// (the user's files); only its definition goes after the switch-over. NICs keep their TAP
// name and MAC: the destination host needs a TAP of that name on the same network (checked before accepting).
//
// Who owns the VM when: the destination's VMM answers "resumed" on the stream once it runs the guest; the destination
// daemon reads that answer as it relays it, and from then on its VM is running, whatever happens to the link or the
// source. Before that, any failure (the link cut or silent, either daemon or VMM killed, the destination refusing,
// no convergence) ends the migration: the source VMM resumes its guest (src/migration/source.ts), the destination
// destroys its VMM and forgets the definition. The source daemon removes its own definition once its VMM has ended
// after the switch-over (kept, shut off, if the VM has snapshots). The switch-over is two-phase (src/migration:
// "loaded", then "go"): a link lost after the source VMM sent "go" leaves it paused in 'switch-over-unknown'; the
// source daemon then asks the destination daemon over a fresh link (QUERY) whether the VM is there, and ends the
// source VMM (it is) or resumes it (it is not); unreachable, it leaves the VM paused, phase 'switch-over-unknown', and
// keeps its marker, so that a restarted daemon asks again (settle). Meanwhile the daemon shows the VM 'paused' with
// its migration's phase, and resolve() (POST /vms/{name}/migration/resolve, `ringzero migrate-resolve`) asks again
// on an operator's request, resuming or ending it as the destination answers; it acts without an answer only when
// forced one way, and never against one.
// The destination daemon, when the link fails, only ends its VMM's stream (no kill): the VMM itself then either got
// "go" (it runs, says "resumed", and the VM is kept) or did not (it discards the VM), so the answer is never a guess.
//
// A daemon killed mid-migration leaves a marker (DIR/migrations/{in,out}-NAME.json); the next daemon settles it from
// the VMM's log: an incoming VM whose VMM says "migration received" is kept, any other is destroyed and undefined; an
// outgoing VM whose VMM ended saying "migrated to" is undefined.

import crypto from 'node:crypto';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { FrameReader, T_JSON, parseHostPort } from '../migration/protocol.ts';
import { ByteQueue } from '../sys/byte-queue.ts';
import { ManagerError, VM_NAME_RE, spareUseSchema, type VmDefinition } from './schema.ts';
import { VOLUME_NAME_RE } from './volumes.ts';
import { removeFileDurable, writeFileAtomic } from './store.ts';
import type { SpareUse, VmManager } from './manager.ts';
import { GROUP_BOOST, SWITCHOVER_BOOST, groupBoosted, holdSession, resumeBoostError } from '../vmm/resume-priority.ts';

export const LINK_FORMAT = 'ringzero-daemon-migration';
/** Bump on any change of the link's frames or messages. */
export const LINK_VERSION = 3;
const F_HELLO = 1, F_ACCEPT = 2, F_DATA = 3, F_PING = 4, F_END = 5, F_ABORT = 6, F_CHALLENGE = 7, F_QUERY = 8, F_ANSWER = 9;
const HEADER = 5;
/** Largest link frame accepted (a definition is tiny; DATA frames carry one socket read, at most 64 KiB). */
const MAX_LINK_FRAME = 16 * 1024 * 1024;
export const DEFAULT_LINK_TIMEOUT_MS = 10_000;
/** How long the destination may take to start its VMM and have it listen (a loaded host takes seconds to load tsx). */
const ACCEPT_TIMEOUT_MS = 120_000;
/**
 * After an unknown switch-over, how much longer than 3 link timeouts the source asks a destination daemon that says
 * it is still settling ('pending'): its VMM's stream is destroyed at most 10 s after its link failed (incoming()).
 */
const SETTLE_GRACE_MS = 15_000;
/** What the VMM prints once the guest runs on the destination, and on the source after the switch-over. */
const RECEIVED_LINE = 'migration received: the VM runs here';
const MIGRATED_LINE = /ringzero: migrated to \S+ \(downtime/;
/** Records kept for GET /migrations. */
const KEEP = 50;

export type MigrationPhase = 'connecting' | 'setup' | 'precopy' | 'stop-and-copy' | 'switch-over-unknown' | 'completed' | 'failed';

export interface MigrateRequest {
  to: string;
  downtimeMs?: number;
  maxIterations?: number;
  bandwidth?: number;
  verify?: boolean;
  linkTimeoutMs?: number;
  /** Copy the disks to the destination (libvirt's --copy-storage-all). */
  copyStorage?: boolean;
  /** With copyStorage: where the destination puts disk vdX's copy: an absolute path there, or a volume name in its pool. */
  diskTargets?: Record<string, string>;
  /** Soft engine: at most this many hot blocks listed for the destination (0: none; default the VMM's, 2048). */
  hotBlocks?: number;
  /** The switch-over's priority, both VMMs' and both daemons' (a nice value; 0: none); default the VM definition's, else -10. */
  resumeBoost?: number;
}

/**
 * POST /vms/{name}/migration/resolve (`ringzero migrate-resolve NAME`): settle a migration left in
 * 'switch-over-unknown'. The destination daemon is always asked first. 'ask' (the default) does what its answer says;
 * 'resume' runs the VM here only if the destination says it is not there, 'abandon' ends it here only if the
 * destination says it runs there. `force` acts on 'resume'/'abandon' when the destination cannot be reached; an answer
 * that contradicts the action is refused even then (resuming a VM the destination runs would run it twice).
 */
export interface ResolveRequest {
  action?: 'ask' | 'resume' | 'abandon';
  force?: boolean;
}

export const resolveRequestSchema = {
  $id: 'MigrationResolveRequest',
  type: 'object',
  additionalProperties: false,
  properties: {
    action: { type: 'string', enum: ['ask', 'resume', 'abandon'], default: 'ask', description: 'ask: follow the destination daemon\'s answer; resume: run the VM here (only if the destination does not have it); abandon: end it here (only if the destination runs it)' },
    force: { type: 'boolean', default: false, description: 'with resume or abandon: act even when the destination daemon cannot be reached (never against its answer)' },
  },
} as const;

/** One migration as GET /vms/{name}/migration and GET /migrations show it. */
export interface MigrationView {
  id: string;
  vm: string;
  direction: 'outgoing' | 'incoming';
  /** outgoing: the destination daemon's HOST:PORT; incoming: the source's address. */
  peer: string;
  phase: MigrationPhase;
  startedAt: string;
  endedAt?: string;
  totalMs: number;
  downtimeLimitMs?: number;
  /** From the source VMM (src/migration/source.ts): pre-copy pass, bytes, pages, dirty set and rate, bandwidth. */
  iteration?: number;
  bytesSent?: number;
  pagesSent?: number;
  zeroPagesSent?: number;
  dirtyPages?: number;
  dirtyRate?: number;
  bandwidth?: number;
  expectedDowntimeMs?: number;
  /** copy-storage (src/migration/source.ts): disk bytes the first pass goes through and has gone through, disk bytes sent, dirty, and the disks' dirty rate. */
  diskTotal?: number;
  diskTransferred?: number;
  diskBytesSent?: number;
  diskDirtyBytes?: number;
  diskDirtyRate?: number;
  /** The hot-block list (src/migration/source.ts MigrationProgress): blocks, bytes, pages sent first, ms to list, translated at the destination. */
  hotBlocks?: number;
  hotBytes?: number;
  hotPages?: number;
  hotMs?: number;
  hotTranslated?: number;
  /** incoming, copy-storage: where the copies are made. */
  diskTargets?: string[];
  /** Measured: from the pause of the source to the destination's "resumed". */
  downtimeMs?: number;
  downtimeParts?: Record<string, number>;
  /** incoming: stream bytes relayed to the VMM. */
  bytesReceived?: number;
  /** outgoing, after the switch-over: what became of the source's definition. */
  sourceDefinition?: 'removed' | 'kept';
  /** This daemon's session ran at this nice value through the switch-over's relay, for heldMs (SwitchoverHold). */
  daemonBoost?: { nice: number; heldMs: number };
  /** incoming: the VMM was a spare of this daemon's pool (`daemon --vmm-pool`, src/manager/pool.ts), not a new process. */
  spare?: SpareUse;
  error?: string;
}

export const migrateRequestSchema = {
  $id: 'MigrateRequest',
  type: 'object',
  additionalProperties: false,
  required: ['to'],
  properties: {
    to: { type: 'string', pattern: '^(\\[[0-9A-Fa-f:.]+\\]|[A-Za-z0-9.-]+):[0-9]{1,5}$', description: 'the destination daemon\'s migration listener, HOST:PORT (`ringzero daemon --migration-listen`)' },
    downtimeMs: { type: 'integer', minimum: 1, maximum: 600_000, default: 300, description: 'longest pause of the guest aimed for (ms); the pre-copy goes on until the rest fits' },
    maxIterations: { type: 'integer', minimum: 1, maximum: 10_000, default: 30, description: 'pre-copy rounds after the full pass before giving up (the VM runs on here)' },
    bandwidth: { type: 'integer', minimum: 1, maximum: 2 ** 40, description: 'cap on the transfer rate, bytes per second' },
    verify: { type: 'boolean', default: false, description: 'the destination checks a SHA-256 of all guest RAM before it resumes (longer downtime)' },
    linkTimeoutMs: { type: 'integer', minimum: 500, maximum: 600_000, default: DEFAULT_LINK_TIMEOUT_MS, description: 'the migration fails (the VM runs on here) when the destination daemon is silent this long' },
    copyStorage: { type: 'boolean', default: false, description: 'copy the VM\'s disks to the destination while it runs (virsh migrate --copy-storage-all): no shared storage needed. The copies go into the destination daemon\'s pool under the source images\' file names, unless diskTargets says otherwise' },
    diskTargets: {
      type: 'object', additionalProperties: false, patternProperties: { '^vd[a-z]$': { type: 'string', minLength: 1, maxLength: 4096 } },
      description: 'with copyStorage: where the destination puts each disk\'s copy, {"vda": "/abs/path/at/destination" | "volume-name"}; the file must not exist there',
    },
    // (65536: src/cpu/soft/hot-list.ts MAX_LISTED_LIMIT, which the VMM checks too)
    hotBlocks: { type: 'integer', minimum: 0, maximum: 65536, description: 'soft engine: send the destination at most this many of the guest\'s most recently translated code blocks, which it translates during the pre-copy (0: none; default 2048)' },
    // (-20..0: src/vmm/resume-priority.ts MIN_RESUME_BOOST, MAX_RESUME_BOOST, which the VMM checks too)
    resumeBoost: { type: 'integer', minimum: -20, maximum: 0, description: 'the priority (a nice value; 0: none) both VMMs\' and both daemons\' sessions take while the guest stands still for the switch-over, and the destination VMM\'s for its first 3 s after; needs CAP_SYS_NICE on each host; default the VM definition\'s resumeBoost, else -10' },
  },
} as const;

export const migrationSchema = {
  $id: 'Migration',
  type: 'object',
  required: ['id', 'vm', 'direction', 'peer', 'phase', 'startedAt', 'totalMs'],
  properties: {
    id: { type: 'string' },
    vm: { type: 'string' },
    direction: { type: 'string', enum: ['outgoing', 'incoming'] },
    peer: { type: 'string', description: 'outgoing: the destination daemon; incoming: the source\'s address' },
    phase: { type: 'string', enum: ['connecting', 'setup', 'precopy', 'stop-and-copy', 'switch-over-unknown', 'completed', 'failed'], description: 'switch-over-unknown: the link failed after the source VMM told the destination to run the VM and the destination daemon could not be asked whether it does; the VM stays paused here' },
    startedAt: { type: 'string', format: 'date-time' },
    endedAt: { type: 'string', format: 'date-time' },
    totalMs: { type: 'number' },
    downtimeLimitMs: { type: 'integer' },
    iteration: { type: 'integer', description: 'pre-copy pass: 0 is the full pass, then one per dirty-set round' },
    bytesSent: { type: 'integer' },
    pagesSent: { type: 'integer' },
    zeroPagesSent: { type: 'integer' },
    dirtyPages: { type: 'integer', description: 'pages dirty when last measured' },
    dirtyRate: { type: 'number', description: 'bytes per second the guest dirtied during the last round' },
    bandwidth: { type: 'number', description: 'bytes per second the last round achieved' },
    expectedDowntimeMs: { type: 'number' },
    diskTotal: { type: 'integer', description: 'copy-storage: bytes of disk the first pass goes through (the disks\' data ranges)' },
    diskTransferred: { type: 'integer', description: 'copy-storage: of diskTotal, gone through so far' },
    diskBytesSent: { type: 'integer', description: 'copy-storage: bytes of disk data sent (also in bytesSent)' },
    diskDirtyBytes: { type: 'integer', description: 'copy-storage: bytes of disk written by the guest since last sent' },
    diskDirtyRate: { type: 'number', description: 'copy-storage: bytes per second the guest dirtied its disks during the last round' },
    diskTargets: { type: 'array', items: { type: 'string' }, description: 'incoming, copy-storage: the copies made here' },
    hotBlocks: { type: 'integer', description: 'soft engine: code blocks the source listed for the destination to translate during the pre-copy' },
    hotBytes: { type: 'integer', description: 'the hot-block list\'s bytes on the wire' },
    hotPages: { type: 'integer', description: 'pages sent ahead of the rest: those the listed blocks lie in' },
    hotMs: { type: 'number', description: 'the source\'s time taking the list (ms; its guest stands still meanwhile)' },
    hotTranslated: { type: 'integer', description: 'listed blocks the destination had translated when the state came' },
    downtimeMs: { type: 'number', description: 'measured: from the pause of the source to the destination\'s "resumed"' },
    downtimeParts: { type: 'object', additionalProperties: { type: 'number' } },
    bytesReceived: { type: 'integer' },
    sourceDefinition: { type: 'string', enum: ['removed', 'kept'] },
    daemonBoost: {
      type: 'object', required: ['nice', 'heldMs'], properties: { nice: { type: 'integer' }, heldMs: { type: 'number' } },
      description: 'this daemon\'s session ran at this nice value while it relayed the switch-over (from the destination\'s "synced" to its "resumed"), for heldMs; absent when it was not raised (not the leader of its own session, no CAP_SYS_NICE, or off)',
    },
    spare: spareUseSchema,
    error: { type: 'string' },
  },
} as const;

const ACTIVE = new Set(['starting', 'running', 'paused', 'shutting down']);

interface Marker {
  direction: 'outgoing' | 'incoming';
  vm: string;
  peer: string;
  /** Size of the VM's log when the migration began: only what the VMM wrote after counts. */
  logOffset: number;
  at: string;
  /** incoming, copy-storage: the disk copies made for it (removed when the migration is undone). */
  copies?: string[];
}

export class Migrations {
  private readonly dir: string;
  private readonly views = new Map<string, MigrationView>();
  private readonly started = new Map<string, number>();
  /** VMs with a migration in progress (either way). */
  private readonly busy = new Set<string>();
  private server: net.Server | undefined;
  private readonly links = new Set<net.Socket>();
  /** How to give up each outgoing migration in progress (DELETE /vms/{name}/migration). */
  private readonly cancels = new Map<string, (message: string) => void>();
  /** copy-storage targets of incoming migrations in progress (two at once may not pick one file). */
  private readonly reserved = new Set<string>();
  /** The secret both daemons share (`--migration-token-file`): proves the source to the destination. */
  private token: string | undefined;

  constructor(stateRoot: string, private readonly manager: VmManager, private readonly log: (line: string) => void) {
    this.dir = path.join(stateRoot, 'migrations');
  }

  /** Settle what a daemon killed mid-migration left (called by VmManager.open before autostart). */
  async open(): Promise<void> {
    fs.mkdirSync(this.dir, { recursive: true, mode: 0o700 });
    for (const entry of fs.readdirSync(this.dir)) {
      const file = path.join(this.dir, entry);
      if (!/^(in|out)-.*\.json$/.test(entry)) {
        if (entry.includes('.tmp-')) fs.rmSync(file, { force: true });
        continue;
      }
      let marker: Marker | undefined;
      try { marker = JSON.parse(fs.readFileSync(file, 'utf8')) as Marker; } catch { /* torn: dropped below */ }
      try {
        if (marker && VM_NAME_RE.test(marker.vm)) await this.settle(marker);
      } catch (error) {
        this.log(`settling the interrupted migration of '${marker?.vm}': ${(error as Error).message}`);
      }
      removeFileDurable(file);
    }
  }

  setToken(token: string | undefined): void {
    this.token = token;
  }

  close(): void {
    this.server?.close();
    for (const socket of this.links) socket.destroy();
  }

  private async settle(marker: Marker): Promise<void> {
    const vm = this.manager.list().find((v) => v.name === marker.vm);
    if (!vm) {
      // Undefined before the daemon died (or never defined): its copies, if any were made, belong to nothing.
      if (marker.direction === 'incoming') for (const copy of marker.copies ?? []) fs.rmSync(copy, { force: true });
      return;
    }
    const said = this.logSince(marker.vm, marker.logOffset);
    if (marker.direction === 'incoming') {
      if (ACTIVE.has(vm.state) && said.includes(RECEIVED_LINE)) {
        this.manager.markRunning(marker.vm, `migrated in from ${marker.peer}`);
        this.log(`VM '${marker.vm}': its incoming migration completed while no daemon watched: kept`);
        return;
      }
      if (ACTIVE.has(vm.state)) await this.manager.destroy(marker.vm);
      this.manager.undefine(marker.vm);
      for (const copy of marker.copies ?? []) fs.rmSync(copy, { force: true });
      this.log(`VM '${marker.vm}': an incoming migration a daemon crash interrupted: destroyed and undefined${marker.copies?.length ? `, its disk copies removed` : ''}`);
    } else if (!ACTIVE.has(vm.state) && MIGRATED_LINE.test(said)) {
      this.retireSource(marker.vm);
      this.log(`VM '${marker.vm}': migrated to ${marker.peer} while no daemon watched: its definition is ${this.manager.list().some((v) => v.name === marker.vm) ? 'kept' : 'removed'}`);
    } else if (ACTIVE.has(vm.state)) {
      // Its VMM may be paused in an unknown switch-over: ask the destination again, once this daemon holds the token.
      const status = await this.manager.control(marker.vm, { cmd: 'migrate-status' }, 2000).catch(() => undefined);
      if (status?.phase === 'switch-over-unknown') this.settleLater(marker, String(status.error ?? 'switch-over unknown'));
    }
  }

  /** settleSwitchover for an outgoing migration an earlier daemon left unresolved (in the background). */
  private settleLater(marker: Marker, why: string): void {
    const name = marker.vm;
    const view = this.record({ id: migrationId(), vm: name, direction: 'outgoing', peer: marker.peer, phase: 'switch-over-unknown', startedAt: new Date().toISOString(), totalMs: 0 });
    this.busy.add(name);
    this.manager.markMigrationPaused(name, true, `migration to ${marker.peer}: switch-over unknown`);
    let file: string | undefined;
    const run = async () => {
      // open() removes the marker it settled and the token is set after open(): wait for both.
      for (let i = 0; i < 200 && this.token === undefined; i++) await sleep(50);
      file = this.writeMarker(marker);
      if (this.token === undefined) throw new Error(`${why}; this daemon has no migration token to ask the destination with: the VM stays paused`);
      if (await this.settleSwitchover(view, parseHostPort(marker.peer, 'the destination'), { to: marker.peer }, why)) {
        await this.waitInactive(name, 30_000);
        view.sourceDefinition = this.retireSource(name) ? 'removed' : 'kept';
        this.end(view, 'completed');
      }
    };
    this.log(`VM '${name}': paused in an unknown switch-over to ${marker.peer}: asking the destination daemon`);
    void run()
      .catch((error: Error) => { if (view.endedAt === undefined) this.end(view, 'switch-over-unknown', error.message); })
      .finally(() => {
        this.busy.delete(name);
        if (file && view.phase !== 'switch-over-unknown') removeFileDurable(file);
        this.log(`VM '${name}': migration to ${marker.peer} ${view.phase}${view.error ? `: ${view.error}` : ''}`);
      });
  }

  // --- views -----------------------------------------------------------------------------------------------------

  list(): MigrationView[] {
    return [...this.views.values()].map((v) => this.snapshot(v));
  }

  /** The latest migration of VM `name` (either way), also after the source has forgotten the VM. */
  latest(name: string): MigrationView {
    const all = [...this.views.values()].filter((v) => v.vm === name);
    if (all.length === 0) throw new ManagerError('not_found', `VM '${name}' has no migration`);
    return this.snapshot(all[all.length - 1]);
  }

  private snapshot(v: MigrationView): MigrationView {
    const start = this.started.get(v.id);
    return { ...v, totalMs: v.endedAt === undefined && start !== undefined ? Date.now() - start : v.totalMs };
  }

  private record(view: MigrationView): MigrationView {
    this.views.set(view.id, view);
    this.started.set(view.id, Date.now());
    while (this.views.size > KEEP) {
      const oldest = this.views.keys().next().value as string;
      this.views.delete(oldest);
      this.started.delete(oldest);
    }
    return view;
  }

  private end(view: MigrationView, phase: 'completed' | 'failed' | 'switch-over-unknown', error?: string): void {
    view.phase = phase;
    view.endedAt = new Date().toISOString();
    view.totalMs = Date.now() - (this.started.get(view.id) ?? Date.now());
    if (error !== undefined) view.error = error;
  }

  // --- the source side -------------------------------------------------------------------------------------------

  /** Start migrating VM `name`; resolves at once with the migration (follow it with latest()). */
  start(name: string, request: MigrateRequest): MigrationView {
    const vm = this.manager.get(name);
    if (vm.state !== 'running' && vm.state !== 'paused') throw new ManagerError('conflict', `VM '${name}' is ${vm.state}: only a running or paused VM can be migrated`);
    if (this.busy.has(name)) throw new ManagerError('conflict', `VM '${name}' is already migrating`);
    if (this.token === undefined) throw new ManagerError('conflict', 'this daemon has no migration token: start it with --migration-token-file (the same secret as the destination\'s)');
    let target: { host: string; port: number };
    try {
      target = parseHostPort(request.to, '"to"');
    } catch (error) {
      throw new ManagerError('invalid', (error as Error).message);
    }
    checkDiskTargets(request, vm.definition);
    const view = this.record({
      id: migrationId(), vm: name, direction: 'outgoing', peer: request.to, phase: 'connecting', startedAt: new Date().toISOString(), totalMs: 0,
      downtimeLimitMs: request.downtimeMs ?? 300,
    });
    this.busy.add(name);
    const marker = this.writeMarker({ direction: 'outgoing', vm: name, peer: request.to, logOffset: this.logSize(name), at: view.startedAt });
    void this.runOutgoing(view, vm.definition, target, request)
      .catch((error: Error) => { if (view.endedAt === undefined) this.end(view, 'failed', error.message); })
      .finally(() => {
        this.busy.delete(name);
        // Unresolved, the marker stays: the next daemon asks the destination again (settle).
        if (view.phase !== 'switch-over-unknown') removeFileDurable(marker);
        this.log(`VM '${name}': migration to ${request.to} ${view.phase}${view.error ? `: ${view.error}` : view.downtimeMs !== undefined ? ` (downtime ${view.downtimeMs} ms, ${view.totalMs} ms in all)` : ''}`);
      });
    return this.snapshot(view);
  }

  /**
   * Give up VM `name`'s outgoing migration (virsh domjobabort): the destination is told and forgets the VM, the source
   * VMM resumes the guest. Refused once the switch-over has begun (the guest may already run there). Resolves with the
   * migration once it has ended.
   */
  async cancel(name: string): Promise<MigrationView> {
    const cancel = this.cancels.get(name);
    const current = [...this.views.values()].filter((v) => v.vm === name && v.direction === 'outgoing').pop();
    if (current?.phase === 'switch-over-unknown' && !cancel) {
      throw new ManagerError('conflict', `VM '${name}': its migration to ${current.peer} ended in an unknown switch-over (paused here, it may run there): settle it with \`ringzero migrate-resolve\` (POST /vms/${name}/migration/resolve)`);
    }
    if (!cancel || !current) throw new ManagerError('conflict', `VM '${name}' has no outgoing migration in progress`);
    if (current.phase === 'stop-and-copy' || current.phase === 'switch-over-unknown') throw new ManagerError('conflict', `VM '${name}': the switch-over has begun; it cannot be cancelled any more`);
    cancel('cancelled');
    const deadline = Date.now() + 30_000;
    while (current.endedAt === undefined && Date.now() < deadline) await sleep(20);
    return this.snapshot(current);
  }

  /** What GET /vms shows of VM `name`'s migration: one in progress, or one left in 'switch-over-unknown'. */
  vmAnnotation(name: string): { migration?: { id: string; direction: 'outgoing' | 'incoming'; phase: string; peer: string } } {
    const all = [...this.views.values()].filter((v) => v.vm === name);
    const v = all[all.length - 1];
    if (!v || (v.endedAt !== undefined && v.phase !== 'switch-over-unknown')) return {};
    return { migration: { id: v.id, direction: v.direction, phase: v.phase, peer: v.peer } };
  }

  /**
   * Settle VM `name`'s migration left in 'switch-over-unknown' (paused here, maybe running at the destination), as
   * virsh domjobabort/domjobinfo users expect to from the daemon: ask the destination daemon again, then resume the
   * VM here (it is not there) or end it here (it runs there). See ResolveRequest for `action` and `force`.
   * Resolves with the migration once settled; a ManagerError 'conflict' leaves the VM paused as it was.
   */
  async resolve(name: string, request: ResolveRequest = {}): Promise<MigrationView> {
    const action = request.action ?? 'ask';
    if (!['ask', 'resume', 'abandon'].includes(action)) throw new ManagerError('invalid', `action '${String(action)}' is not ask, resume or abandon`);
    if (request.force && action === 'ask') throw new ManagerError('invalid', 'force needs action resume or abandon: it says which way to settle when the destination cannot be asked');
    const vm = this.manager.get(name);
    if (this.busy.has(name)) throw new ManagerError('conflict', `VM '${name}' is migrating, or its daemon is still asking the destination: wait for GET /vms/${name}/migration to end`);
    if (!ACTIVE.has(vm.state)) throw new ManagerError('conflict', `VM '${name}' is ${vm.state}: no migration of it awaits resolution`);
    const status = await this.manager.control(name, { cmd: 'migrate-status' }, 5000).catch((error: Error) => ({ ok: false, error: error.message }) as Record<string, unknown>);
    if (status.ok !== true) throw new ManagerError('conflict', `VM '${name}': its VMM did not answer: ${String(status.error)}`);
    if (status.phase !== 'switch-over-unknown') throw new ManagerError('conflict', `VM '${name}' has no migration in an unknown switch-over (its VMM's migration phase: ${String(status.phase)})`);
    const previous = [...this.views.values()].filter((v) => v.vm === name && v.direction === 'outgoing').pop();
    const marker = this.readMarker('outgoing', name);
    const peer = previous?.peer ?? marker?.peer;
    if (peer === undefined) throw new ManagerError('conflict', `VM '${name}': this daemon does not know where it was migrating to (no record, no marker): resolve it through the VMM's control socket (migrate-resolve)`);
    if (this.token === undefined) throw new ManagerError('conflict', 'this daemon has no migration token to ask the destination with: start it with --migration-token-file');
    this.busy.add(name);
    const view = previous?.phase === 'switch-over-unknown' ? previous
      : this.record({ id: migrationId(), vm: name, direction: 'outgoing', peer, phase: 'switch-over-unknown', startedAt: new Date().toISOString(), totalMs: 0 });
    const why = view.error ?? String(status.error ?? 'switch-over unknown');
    try {
      this.manager.markMigrationPaused(name, true, `migration to ${peer}: switch-over unknown`);
      let state: string | undefined;
      let unreachable = '';
      try {
        state = await this.query(parseHostPort(peer, 'the destination'), name, 5000);
      } catch (error) {
        unreachable = (error as Error).message;
      }
      const there = state === 'running';
      const resume = resolution(name, peer, action, request.force === true, state, unreachable);
      const how = state === undefined ? `forced (the destination daemon could not be asked: ${unreachable})` : `the destination daemon says the VM ${there ? 'runs there' : 'is not there'}`;
      const answer = await this.manager.control(name, { cmd: 'migrate-resolve', resume }, 5000).catch((error: Error) => ({ ok: false, error: error.message }) as Record<string, unknown>);
      if (answer.ok !== true) throw new ManagerError('conflict', `VM '${name}': ${how}, but its VMM did not settle: ${String(answer.error)}`);
      this.log(`VM '${name}': unknown switch-over to ${peer} resolved (${action}): ${how}: ${resume ? 'resumed here' : 'ended here'}`);
      if (resume) {
        await this.markResumed(name, `migration to ${peer} resolved: resumed here`);
        this.end(view, 'failed', `${why}; resolved: ${how}: resumed here`);
      } else {
        view.error = undefined;
        await this.waitInactive(name, 30_000);
        view.sourceDefinition = this.retireSource(name) ? 'removed' : 'kept';
        this.end(view, 'completed');
      }
      if (marker) removeFileDurable(this.markerFile('outgoing', name));
      return this.snapshot(view);
    } finally {
      this.busy.delete(name);
    }
  }

  private async runOutgoing(view: MigrationView, definition: VmDefinition, target: { host: string; port: number }, request: MigrateRequest): Promise<void> {
    const name = view.vm;
    const linkTimeoutMs = request.linkTimeoutMs ?? DEFAULT_LINK_TIMEOUT_MS;
    const link = new Link(net.createConnection({ host: target.host, port: target.port }), linkTimeoutMs);
    this.links.add(link.socket);
    this.cancels.set(name, (message) => link.cancel(message));
    let relay: net.Server | undefined;
    let local: net.Socket | undefined;
    let statusTimer: NodeJS.Timeout | undefined;
    const boost = request.resumeBoost ?? definition.resumeBoost;
    const hold = new SwitchoverHold(view, boost ?? GROUP_BOOST);
    try {
      await link.connected(10_000, `the destination daemon at ${request.to}`);
      if (link.gone) throw link.gone;
      link.heartbeat();
      view.phase = 'setup';
      const disks = definition.disks.map((d) => ({ path: d.path, size: fileSize(d.path) }));
      const copy = request.copyStorage === true
        ? { copyStorage: true, diskTargets: definition.disks.map((_, i) => request.diskTargets?.[diskName(i)] ?? null) }
        : {};
      let challenged: (nonce: string) => void = () => {};
      const challenge = new Promise<string>((resolve) => { challenged = resolve; });
      const accepted = new Promise<Record<string, unknown>>((resolve, reject) => {
        link.onFrame = (type, payload) => {
          if (type === F_CHALLENGE) challenged(String(parseJson(payload).nonce ?? ''));
          else if (type === F_ACCEPT) resolve(parseJson(payload));
          else if (type === F_ABORT) reject(new Error(`the destination gave up: ${String(parseJson(payload).message)}`));
        };
        link.onFail = reject;
      });
      accepted.catch(() => {});
      const nonce = await withTimeout(Promise.race([challenge, accepted.then(() => '')]), 10_000, `${request.to} sent no challenge: not a ringzero daemon's migration listener?`);
      link.sendJson(F_HELLO, { format: LINK_FORMAT, version: LINK_VERSION, auth: proof(this.token!, nonce), definition, disks, linkTimeoutMs, source: os.hostname(), ...copy, ...(request.resumeBoost !== undefined ? { resumeBoost: request.resumeBoost } : {}) });
      const answer = await withTimeout(accepted, ACCEPT_TIMEOUT_MS, `the destination daemon did not take the VM within ${ACCEPT_TIMEOUT_MS / 1000} s`);
      if (answer.ok !== true) throw new Error(`the destination refused the VM: ${String(answer.message)}${answer.code ? ` [${String(answer.code)}]` : ''}`);

      // The relay: the source VMM migrates to this daemon's loopback port; its stream goes over the link.
      relay = net.createServer();
      await new Promise<void>((resolve, reject) => { relay!.once('error', reject); relay!.listen(0, '127.0.0.1', () => resolve()); });
      const relayPort = (relay.address() as net.AddressInfo).port;
      let linkError: Error | undefined;
      // Whether the VMM ended the stream before the link failed: then its own reason is the cause (no convergence,
      // say), and what the destination said after is only the consequence.
      let vmmEndedFirst = false;
      relay.once('connection', (socket) => {
        relay!.close();
        relay!.on('connection', (s: net.Socket) => s.destroy());
        local = socket;
        socket.setNoDelay(true);
        if (linkError) { socket.destroy(); return; }
        socket.on('data', (chunk: Buffer) => {
          if (!link.sendData(chunk)) {
            socket.pause();
            link.socket.once('drain', () => socket.resume());
          }
        });
        socket.on('end', () => link.send(F_END));
        socket.on('close', () => { if (!linkError) vmmEndedFirst = true; });
        socket.on('error', () => { /* the VMM's side: it reports the failure in its answer */ });
      });
      // (the destination VMM's answers, small frames, read as they pass: its "synced" starts this daemon's boost)
      let answers: FrameReader | undefined = new FrameReader();
      link.onFrame = (type, payload) => {
        if (type === F_DATA) {
          local?.write(payload);
          try {
            if (answers) for (const f of answers.push(payload)) if (f.type === T_JSON) hold.answer(f.message.kind);
          } catch {
            answers = undefined; // (not a stream this daemon can read: the VMM says what is wrong with it)
          }
        } else if (type === F_END) local?.end();
        else if (type === F_ABORT) {
          linkError ??= new Error(`the destination gave up: ${String(parseJson(payload).message)}`);
          local?.destroy();
        }
      };
      link.onFail = (error) => {
        linkError ??= error;
        local?.destroy();
      };
      if (link.gone) linkError ??= link.gone; // failed or cancelled while the handlers were being set
      const poll = () => {
        this.manager.control(name, { cmd: 'migrate-status' }, 2000).then((p) => {
          if (p.ok === true && view.endedAt === undefined && typeof p.phase === 'string' && p.phase !== 'none') copyProgress(view, p);
        }, () => { /* the next poll, or the answer, says more */ });
      };
      statusTimer = setInterval(poll, 200);
      const result = await this.manager.control(name, {
        cmd: 'migrate', to: `127.0.0.1:${relayPort}`, downtimeMs: request.downtimeMs ?? 300, maxIterations: request.maxIterations ?? 30,
        ...(request.bandwidth !== undefined ? { bandwidth: request.bandwidth } : {}), ...(request.verify ? { verify: true } : {}),
        ...(request.copyStorage ? { copyStorage: true } : {}), ...(request.hotBlocks !== undefined ? { hotBlocks: request.hotBlocks } : {}),
        // (the VMM was started with the definition's, which it uses by default)
        ...(request.resumeBoost !== undefined ? { resumeBoost: request.resumeBoost } : {}),
      }, 24 * 3600_000).catch((error: Error) => ({ ok: false, error: `the VMM: ${error.message}` }) as Record<string, unknown>);
      clearInterval(statusTimer);
      if (result.ok !== true && result.phase === 'switch-over-unknown') {
        link.abort(String(result.error));
        local?.destroy();
        if (!await this.settleSwitchover(view, target, request, String(result.error))) return;
      } else if (result.ok !== true) {
        // The VMM's last progress (the round it stopped at) is still there to read.
        const last = await this.manager.control(name, { cmd: 'migrate-status' }, 2000).catch(() => undefined);
        if (last?.ok === true && typeof last.phase === 'string' && last.phase !== 'none') copyProgress(view, last);
        const why = String(result.error ?? 'the VMM refused');
        throw new Error(linkError && !vmmEndedFirst ? `${linkError.message} (the VMM: ${why})` : why);
      }
      else {
        copyProgress(view, result);
        link.close();
      }
    } catch (error) {
      const message = (error as Error).message;
      this.end(view, 'failed', message);
      link.abort(message);
      local?.destroy();
      throw error;
    } finally {
      hold.end();
      clearInterval(statusTimer);
      relay?.close();
      this.links.delete(link.socket);
      this.cancels.delete(name);
    }
    // The source VMM ends by itself after the switch-over; then its definition goes (the VM lives on there).
    try {
      await this.waitInactive(name, 30_000);
      view.sourceDefinition = this.retireSource(name) ? 'removed' : 'kept';
    } catch (error) {
      this.log(`VM '${name}' migrated; retiring it here: ${(error as Error).message}`);
    }
    this.end(view, 'completed');
  }

  /**
   * The VMM took "resume" after an unknown switch-over: the daemon shows the VM running again, unless its VMM is still
   * paused (a VM suspended before it was migrated stays suspended: the migration resumes only what it paused).
   */
  private async markResumed(name: string, detail: string): Promise<void> {
    const status = await this.manager.control(name, { cmd: 'status' }, 5000).catch(() => undefined);
    if (status?.ok === true && status.paused === false) this.manager.markMigrationPaused(name, false, detail);
  }

  /** Forget the source's definition after the switch-over; false when it has to stay (snapshots refer to it). */
  private retireSource(name: string): boolean {
    try {
      this.manager.undefine(name);
      return true;
    } catch (error) {
      this.log(`VM '${name}' runs on at its destination; its definition here stays, shut off: ${(error as Error).message}`);
      return false;
    }
  }

  private async waitInactive(name: string, timeoutMs: number): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (ACTIVE.has(this.manager.get(name).state)) {
      if (Date.now() > deadline) {
        this.log(`VM '${name}': its VMM did not end after the switch-over: destroying it`);
        await this.manager.destroy(name);
        return;
      }
      await sleep(25);
    }
  }

  /**
   * The source VMM is paused in 'switch-over-unknown': ask the destination daemon whether the VM is there, and end the
   * source VMM (true: the caller retires the source) or resume it (false). Unreachable until the deadline: the VM stays
   * paused, the view says 'switch-over-unknown' (false).
   */
  private async settleSwitchover(view: MigrationView, target: { host: string; port: number }, request: MigrateRequest, why: string): Promise<boolean> {
    const name = view.vm;
    view.phase = 'switch-over-unknown';
    view.error = why;
    // The VMM is paused from here on until settled: the daemon says so, not 'running'.
    this.manager.markMigrationPaused(name, true, `migration to ${request.to}: switch-over unknown`);
    const linkTimeoutMs = request.linkTimeoutMs ?? DEFAULT_LINK_TIMEOUT_MS;
    // How long to keep asking. A destination daemon that does not answer at all for 3 link timeouts is taken as gone,
    // as a link silent that long is: the VM stays paused here, settled later by migrate-resolve or the next daemon
    // (giving up never guesses, it only leaves the settling to them). One that answers 'pending' is still settling its
    // side: its link notices the silence after linkTimeoutMs, and ending its VMM takes up to 10 s more (incoming()'s
    // fail), so it is asked SETTLE_GRACE_MS longer. (The grace used to apply to an unreachable destination too: a
    // test that cuts it off waited 3 link timeouts + 15 s for nothing.)
    const started = Date.now();
    let deadline = started + 3 * linkTimeoutMs;
    let last = '';
    for (;;) {
      let state: string | undefined;
      try {
        state = await this.query(target, name, linkTimeoutMs);
      } catch (error) {
        last = (error as Error).message;
      }
      if (state === 'pending') deadline = Math.max(deadline, started + 3 * linkTimeoutMs + SETTLE_GRACE_MS);
      if (state === 'running' || state === 'absent') {
        const resume = state === 'absent';
        const answer = await this.manager.control(name, { cmd: 'migrate-resolve', resume }, 5000).catch((error: Error) => ({ ok: false, error: error.message }) as Record<string, unknown>);
        if (answer.ok !== true) throw new Error(`${why}; the destination says the VM is ${state === 'running' ? 'there' : 'not there'}, but resolving here failed: ${String(answer.error)}`);
        this.log(`VM '${name}': unknown switch-over settled by asking ${request.to}: ${resume ? 'not there, resumed here' : 'it runs there, ended here'}`);
        if (resume) {
          await this.markResumed(name, `migration to ${request.to}: resumed here`);
          this.end(view, 'failed', `${why}; the destination daemon says the VM is not there: resumed here`);
          return false;
        }
        view.error = undefined;
        return true;
      }
      if (Date.now() > deadline) {
        this.end(view, 'switch-over-unknown', `${why}; the destination daemon ${request.to} could not say whether it runs the VM (${last || 'still settling'}): `
          + 'the VM stays paused here; settle it with `ringzero migrate-resolve` (POST /vms/' + name + '/migration/resolve) once the destination answers, or with --force once it is known whether it runs there');
        return false;
      }
      await sleep(Math.min(1000, linkTimeoutMs / 4));
    }
  }

  /** Ask the destination daemon (fresh link, authenticated as HELLO is) whether VM `name` is there. */
  private async query(target: { host: string; port: number }, name: string, timeoutMs: number): Promise<string> {
    const link = new Link(net.createConnection({ host: target.host, port: target.port }), timeoutMs);
    this.links.add(link.socket);
    try {
      await link.connected(Math.min(timeoutMs, 10_000), 'the destination daemon');
      const answer = new Promise<Record<string, unknown>>((resolve, reject) => {
        link.onFrame = (type, payload) => {
          if (type === F_CHALLENGE) {
            const nonce = String(parseJson(payload).nonce ?? '');
            link.sendJson(F_QUERY, { format: LINK_FORMAT, version: LINK_VERSION, auth: proof(this.token!, nonce), vm: name });
          } else if (type === F_ANSWER) resolve(parseJson(payload));
          else if (type === F_ABORT || type === F_ACCEPT) reject(new Error(`the destination daemon refused: ${String(parseJson(payload).message)}`));
        };
        link.onFail = reject;
      });
      const a = await withTimeout(answer, timeoutMs, `no answer within ${timeoutMs} ms`);
      if (a.ok !== true) throw new Error(`the destination daemon refused: ${String(a.message)}`);
      return String(a.state);
    } finally {
      link.close();
      this.links.delete(link.socket);
    }
  }

  /** The answer to a QUERY: whether VM `name` came here (kept: it ran here, even if stopped since). */
  private answerQuery(link: Link, query: Record<string, unknown>, nonce: string): void {
    let answer: Record<string, unknown>;
    try {
      if (query.format !== LINK_FORMAT) throw new Error(`not a ringzero daemon migration (format ${JSON.stringify(query.format)})`);
      if (query.version !== LINK_VERSION) throw new Error(`the source daemon speaks migration link version ${String(query.version)}, this one ${LINK_VERSION}`);
      const expected = Buffer.from(proof(this.token ?? crypto.randomBytes(32).toString('hex'), nonce), 'hex');
      const given = typeof query.auth === 'string' && /^[0-9a-f]{64}$/.test(query.auth) ? Buffer.from(query.auth, 'hex') : Buffer.alloc(32);
      if (this.token === undefined || !crypto.timingSafeEqual(expected, given)) throw new Error('the source daemon does not hold this daemon\'s migration token');
      const name = String(query.vm);
      if (!VM_NAME_RE.test(name)) throw new Error('no VM name');
      const state = this.busy.has(name) ? 'pending' : this.manager.list().some((v) => v.name === name) ? 'running' : 'absent';
      answer = { ok: true, state };
    } catch (error) {
      answer = { ok: false, message: (error as Error).message };
    }
    link.sendJson(F_ANSWER, answer);
    link.close();
  }

  // --- the destination side --------------------------------------------------------------------------------------

  /** Listen for incoming migrations (`ringzero daemon --migration-listen HOST:PORT`). */
  async listen(host: string, port: number): Promise<{ host: string; port: number }> {
    const server = net.createServer((socket) => this.accept(socket));
    await new Promise<void>((resolve, reject) => { server.once('error', reject); server.listen(port, host, () => { server.off('error', reject); resolve(); }); });
    this.server = server;
    const address = server.address() as net.AddressInfo;
    return { host: address.address, port: address.port };
  }

  private accept(socket: net.Socket): void {
    const peer = `${socket.remoteAddress}:${socket.remotePort}`;
    const link = new Link(socket, DEFAULT_LINK_TIMEOUT_MS);
    this.links.add(socket);
    socket.once('close', () => this.links.delete(socket));
    link.heartbeat();
    const nonce = crypto.randomBytes(32).toString('hex');
    link.sendJson(F_CHALLENGE, { nonce });
    // The source has a while to say who it is.
    const helloTimer = setTimeout(() => link.abort('no hello within 10 s'), 10_000);
    link.onFail = () => clearTimeout(helloTimer);
    link.onFrame = (type, payload) => {
      if (type === F_QUERY) {
        clearTimeout(helloTimer);
        link.onFrame = undefined;
        this.answerQuery(link, parseJson(payload), nonce);
        return;
      }
      if (type !== F_HELLO) return;
      clearTimeout(helloTimer);
      link.onFrame = undefined;
      this.incoming(link, parseJson(payload), peer, nonce).catch((error: Error) => this.log(`incoming migration from ${peer}: ${error.message}`));
    };
  }

  /** Check the source's offer; only what cannot work here is refused (the VMM stream checks the machine itself). */
  private checkOffer(hello: Record<string, unknown>, nonce: string): { definition: VmDefinition; linkTimeoutMs: number; copies?: string[]; resumeBoost?: number } {
    if (hello.format !== LINK_FORMAT) throw new ManagerError('invalid', `not a ringzero daemon migration (format ${JSON.stringify(hello.format)})`);
    if (hello.version !== LINK_VERSION) throw new ManagerError('unsupported', `the source daemon speaks migration link version ${String(hello.version)}, this one ${LINK_VERSION}`);
    const expected = Buffer.from(proof(this.token ?? crypto.randomBytes(32).toString('hex'), nonce), 'hex');
    const given = typeof hello.auth === 'string' && /^[0-9a-f]{64}$/.test(hello.auth) ? Buffer.from(hello.auth, 'hex') : Buffer.alloc(32);
    if (this.token === undefined || !crypto.timingSafeEqual(expected, given)) {
      throw new ManagerError('unauthorized', 'the source daemon does not hold this daemon\'s migration token (--migration-token-file)');
    }
    const d = hello.definition as VmDefinition | undefined;
    if (typeof d !== 'object' || d === null || typeof d.name !== 'string' || !VM_NAME_RE.test(d.name)) throw new ManagerError('invalid', 'the source sent no usable VM definition');
    if (!Array.isArray(d.disks) || (d.nics !== undefined && !Array.isArray(d.nics))) throw new ManagerError('invalid', `the definition of '${d.name}' is malformed`);
    if (this.manager.list().some((v) => v.name === d.name)) throw new ManagerError('conflict', `a VM named '${d.name}' is already defined here`);
    if (this.busy.has(d.name)) throw new ManagerError('conflict', `VM '${d.name}' is already migrating here`);
    const sizes = new Map<string, unknown>((Array.isArray(hello.disks) ? hello.disks as Array<{ path: unknown; size: unknown }> : []).map((x) => [String(x.path), x.size]));
    for (const disk of d.disks) {
      if (typeof disk?.path !== 'string' || !path.isAbsolute(disk.path)) throw new ManagerError('invalid', `the definition of '${d.name}' has a disk without an absolute path`);
      if (hello.copyStorage === true) continue;
      const here = fileSize(disk.path);
      if (here === undefined) throw new ManagerError('conflict', `disk '${disk.path}' is not on this host: live migration needs the disks on storage both hosts share, at the same path, or --copy-storage-all (copyStorage) to copy them`);
      if (sizes.get(disk.path) !== here) throw new ManagerError('conflict', `disk '${disk.path}' has ${here} bytes here and ${String(sizes.get(disk.path))} at the source: not the same image`);
    }
    const copies = hello.copyStorage === true ? this.copyTargets(d, hello.diskTargets) : undefined;
    for (const nic of d.nics ?? []) {
      if (typeof nic?.tap !== 'string' || !/^[A-Za-z0-9_.@+-]{1,15}$/.test(nic.tap) || nic.tap === '.' || nic.tap === '..') throw new ManagerError('invalid', `the definition of '${d.name}' has a NIC with an invalid TAP name`);
      // A TAP made by the VMM on the spot would be connected to nothing: the guest would lose its network.
      if (!fs.existsSync(`/sys/class/net/${nic.tap}`)) throw new ManagerError('conflict', `TAP '${nic.tap}' does not exist on this host: create it on the VM's network before migrating`);
    }
    for (const file of [d.kernel, d.initrd]) {
      if (file !== undefined && (typeof file !== 'string' || !fs.existsSync(file))) throw new ManagerError('conflict', `'${String(file)}' (the VM's kernel or initrd, for its next boot) is not on this host`);
    }
    const t = hello.linkTimeoutMs;
    const linkTimeoutMs = Number.isInteger(t) && (t as number) >= 500 && (t as number) <= 600_000 ? t as number : DEFAULT_LINK_TIMEOUT_MS;
    // (both end up on this host's VMM command line and in /proc/self/autogroup: checked as the API checks them)
    if (d.resumeBoost !== undefined && resumeBoostError(d.resumeBoost)) throw new ManagerError('invalid', `the definition of '${d.name}': resumeBoost ${resumeBoostError(d.resumeBoost)}`);
    if (hello.resumeBoost !== undefined && resumeBoostError(hello.resumeBoost)) throw new ManagerError('invalid', `the migration's resumeBoost ${resumeBoostError(hello.resumeBoost)}`);
    const resumeBoost = hello.resumeBoost as number | undefined;
    return { definition: copies ? { ...d, disks: d.disks.map((disk, i) => ({ ...disk, path: copies[i] })) } : d, linkTimeoutMs, ...(copies ? { copies } : {}), ...(resumeBoost !== undefined ? { resumeBoost } : {}) };
  }

  /**
   * copy-storage: where each disk's copy goes here. A target the source names is an absolute path or a volume name of
   * this daemon's pool; by default the source image's file name in the pool. None may exist (a migration never writes
   * over a file), none twice, each in an existing directory.
   */
  private copyTargets(d: VmDefinition, given: unknown): string[] {
    const targets = Array.isArray(given) ? given : [];
    if (targets.length !== d.disks.length) throw new ManagerError('invalid', `the source names ${targets.length} disk target(s) for ${d.disks.length} disk(s)`);
    const out = d.disks.map((disk, i) => {
      const named = targets[i];
      const what = named === null ? `disk ${diskName(i)}'s copy (the pool volume '${path.basename(disk.path)}', named after the source's image)` : `disk ${diskName(i)}'s target '${String(named)}'`;
      let file: string;
      if (named === null) {
        const base = path.basename(disk.path);
        if (!VOLUME_NAME_RE.test(base)) throw new ManagerError('invalid', `disk ${diskName(i)} ('${disk.path}') has no usable volume name for its copy here: name a target (--disk-target ${diskName(i)}=NAME)`);
        file = this.manager.volumes.pathOf(base);
      } else if (typeof named !== 'string') {
        throw new ManagerError('invalid', `disk ${diskName(i)}'s target is not a string`);
      } else if (named.startsWith('/')) {
        if (named.includes('\0') || named.endsWith('/') || path.normalize(named) !== named) throw new ManagerError('invalid', `${what} is not a plain absolute file path`);
        file = named;
      } else {
        if (!VOLUME_NAME_RE.test(named)) throw new ManagerError('invalid', `${what} is neither an absolute path nor a volume name`);
        file = this.manager.volumes.pathOf(named);
      }
      if (fs.existsSync(file) || this.reserved.has(file)) throw new ManagerError('conflict', `${what} already exists here ('${file}'): a migration never writes over a file (name another with --disk-target ${diskName(i)}=...)`);
      if (!fs.existsSync(path.dirname(file))) throw new ManagerError('conflict', `${what}: directory '${path.dirname(file)}' does not exist here`);
      return file;
    });
    if (new Set(out).size !== out.length) throw new ManagerError('invalid', `two disks would be copied to one file here (${out.join(', ')}): name targets with --disk-target`);
    return out;
  }

  private async incoming(link: Link, hello: Record<string, unknown>, peer: string, nonce: string): Promise<void> {
    let offer: { definition: VmDefinition; linkTimeoutMs: number; copies?: string[]; resumeBoost?: number };
    try {
      offer = this.checkOffer(hello, nonce);
    } catch (error) {
      const e = error as ManagerError;
      link.sendJson(F_ACCEPT, { ok: false, code: e.code ?? 'internal', message: e.message });
      link.close();
      throw error;
    }
    const name = offer.definition.name;
    link.timeoutMs = offer.linkTimeoutMs;
    const view = this.record({
      id: migrationId(), vm: name, direction: 'incoming', peer, phase: 'setup', startedAt: new Date().toISOString(), totalMs: 0, bytesReceived: 0,
      ...(offer.copies ? { diskTargets: offer.copies } : {}),
    });
    this.busy.add(name);
    const copies = offer.copies ?? [];
    for (const file of copies) this.reserved.add(file);
    let failure: Error | undefined;
    let committed = false;
    let vmm: net.Socket | undefined;
    let defined = false;
    const hold = new SwitchoverHold(view, offer.resumeBoost ?? offer.definition.resumeBoost ?? GROUP_BOOST);
    const fail = (error: Error) => {
      if (committed) return;
      failure ??= error;
      // End the stream rather than cut it: what was relayed reaches the VMM first, so a "go" already on its way
      // still counts (the VMM runs the guest and answers "resumed"); without one the VMM discards the VM at the end.
      const stream = vmm;
      stream?.end();
      if (stream) setTimeout(() => stream.destroy(), 10_000).unref();
    };
    link.onFail = fail;
    link.onFrame = (type, payload) => {
      if (type === F_ABORT) fail(new Error(`the source gave up: ${String(parseJson(payload).message)}`));
      else if (type === F_END) vmm?.end();
      else if (type === F_DATA && vmm) {
        view.bytesReceived! += payload.length;
        if (view.phase === 'setup') view.phase = 'precopy';
        if (!vmm.write(payload)) {
          // The VMM is behind: stop reading the link (the source's pings wait in the same pipe, so silence is not counted).
          link.hold(true);
          vmm.once('drain', () => link.hold(false));
        }
      }
    };
    const copied = copies.length > 0 ? { copies } : {};
    const marker = this.writeMarker({ direction: 'incoming', vm: name, peer, logOffset: 0, at: view.startedAt, ...copied });
    try {
      this.manager.define({ ...offer.definition, autostart: offer.definition.autostart === true });
      defined = true;
      const logOffset = this.logSize(name);
      writeFileAtomic(marker, `${JSON.stringify({ direction: 'incoming', vm: name, peer, logOffset, at: view.startedAt, ...copied } satisfies Marker)}\n`);
      const started = await this.manager.start(name, undefined, 'tcp:127.0.0.1:0', offer.copies, false, offer.resumeBoost);
      if (started.spare) view.spare = started.spare;
      if (failure) throw failure;
      const port = await this.vmmPort(name, logOffset, () => failure);
      vmm = await connectLocal(port);
      if (failure) throw failure;
      vmm.setNoDelay(true);
      // The VMM's answers go back over the link; its "resumed" hands the VM over to this side.
      const answers = new FrameReader();
      const done = new Promise<void>((resolve, reject) => {
        vmm!.on('data', (chunk: Buffer) => {
          link.sendData(chunk);
          try {
            for (const f of answers.push(chunk)) {
              if (f.type === T_JSON) hold.answer(f.message.kind);
              if (f.type === T_JSON && f.message.kind === 'resumed' && !committed) {
                committed = true;
                this.manager.markRunning(name, `migrated in from ${peer}`);
                resolve();
              } else if (f.type === T_JSON && f.message.kind === 'error') {
                fail(new Error(`the VMM refused the stream: ${String(f.message.message)}`));
              }
            }
          } catch (error) {
            fail(error as Error);
          }
        });
        vmm!.on('end', () => link.send(F_END));
        vmm!.on('error', () => { /* 'close' follows */ });
        vmm!.on('close', () => {
          if (committed) { resolve(); return; }
          // A VMM that took "go" runs the guest even if its "resumed" never came through: its log says so.
          void this.receivedSince(name, logOffset).then((received) => {
            if (received && !committed) {
              committed = true;
              this.manager.markRunning(name, `migrated in from ${peer}`);
            }
            if (committed) resolve();
            else reject(failure ?? new Error('the VMM closed the migration stream before the VM ran here'));
          });
        });
      });
      link.sendJson(F_ACCEPT, { ok: true });
      await done;
      this.end(view, 'completed');
      link.close();
      this.log(`VM '${name}': migrated in from ${peer}: it runs here`);
    } catch (error) {
      const message = (failure ?? error as Error).message;
      this.end(view, 'failed', message);
      link.abort(message);
      vmm?.destroy();
      if (defined) {
        try {
          if (ACTIVE.has(this.manager.get(name).state)) await this.manager.destroy(name);
          this.manager.undefine(name);
        } catch (cleanup) {
          this.log(`VM '${name}': cleaning up the failed incoming migration: ${(cleanup as Error).message}`);
        }
      }
      // The VMM removes its partial copies itself; one killed leaves them: they are this migration's, not the user's.
      for (const file of copies) fs.rmSync(file, { force: true });
      throw new Error(message);
    } finally {
      hold.end();
      for (const file of copies) this.reserved.delete(file);
      this.busy.delete(name);
      removeFileDurable(marker);
    }
  }

  /** Whether the incoming VMM says it runs the guest (waits a moment for the line while the VMM lives). */
  private async receivedSince(name: string, logOffset: number): Promise<boolean> {
    const deadline = Date.now() + 3000;
    for (;;) {
      if (this.logSince(name, logOffset).includes(RECEIVED_LINE)) return true;
      let active = false;
      try { active = ACTIVE.has(this.manager.get(name).state); } catch { /* undefined meanwhile */ }
      if (!active || Date.now() > deadline) return false;
      await sleep(25);
    }
  }

  /** The port the incoming VMM listens on, from its log (`ringzero: waiting for an incoming migration on H:P`). */
  private async vmmPort(name: string, logOffset: number, failed: () => Error | undefined): Promise<number> {
    const deadline = Date.now() + ACCEPT_TIMEOUT_MS;
    for (;;) {
      const m = /waiting for an incoming migration on 127\.0\.0\.1:(\d+)/.exec(this.logSince(name, logOffset));
      if (m) return Number(m[1]);
      const error = failed();
      if (error) throw error;
      if (!ACTIVE.has(this.manager.get(name).state)) throw new Error(`the VMM ended before it listened: ${this.logSince(name, logOffset).trim().split('\n').slice(-2).join(' / ')}`);
      if (Date.now() > deadline) throw new Error('the VMM did not listen for the migration stream');
      await sleep(20);
    }
  }

  // --- files -----------------------------------------------------------------------------------------------------

  private markerFile(direction: 'outgoing' | 'incoming', vm: string): string {
    return path.join(this.dir, `${direction === 'incoming' ? 'in' : 'out'}-${vm}.json`);
  }

  private writeMarker(marker: Marker): string {
    const file = this.markerFile(marker.direction, marker.vm);
    writeFileAtomic(file, `${JSON.stringify(marker)}\n`);
    return file;
  }

  private readMarker(direction: 'outgoing' | 'incoming', vm: string): Marker | undefined {
    try {
      const m = JSON.parse(fs.readFileSync(this.markerFile(direction, vm), 'utf8')) as Marker;
      return m.vm === vm && typeof m.peer === 'string' ? m : undefined;
    } catch {
      return undefined;
    }
  }

  private logFile(name: string): string {
    return this.manager.state.logFile(name);
  }

  private logSize(name: string): number {
    try { return fs.statSync(this.logFile(name)).size; } catch { return 0; }
  }

  private logSince(name: string, offset: number): string {
    try { return fs.readFileSync(this.logFile(name)).subarray(offset).toString('utf8'); } catch { return ''; }
  }
}

/**
 * How an unknown switch-over of VM `name` is settled (Migrations.resolve): true resumes it here, false ends it here;
 * a refusal throws ManagerError 'conflict' (the VM stays paused). `state` is the destination daemon's answer, undefined
 * when it could not be asked (`unreachable` says why). Never against the answer; without one only when forced one way.
 */
export function resolution(name: string, peer: string, action: 'ask' | 'resume' | 'abandon', force: boolean, state: string | undefined, unreachable = ''): boolean {
  const there = state === 'running', absent = state === 'absent';
  if (state === 'pending') throw new ManagerError('conflict', `VM '${name}': the destination daemon ${peer} is still settling its side of the migration: try again in a moment`);
  if (state !== undefined && !there && !absent) throw new ManagerError('conflict', `VM '${name}': the destination daemon ${peer} answered '${state}'`);
  const cannot = `VM '${name}': the destination daemon ${peer} cannot be asked (${unreachable}): the VM stays paused here`;
  if (action === 'ask') {
    if (state === undefined) throw new ManagerError('conflict', `${cannot}. Once you know, migrate-resolve --resume --force (it does not run there) or --abandon --force (it does)`);
    return absent;
  }
  if (action === 'resume') {
    if (there) throw new ManagerError('conflict', `VM '${name}': the destination daemon ${peer} says the VM runs there: resuming it here would run it twice (settle with --abandon)`);
    if (state === undefined && !force) throw new ManagerError('conflict', `${cannot}; --force resumes it here anyway, right only if it does not run there`);
    return true;
  }
  if (absent) throw new ManagerError('conflict', `VM '${name}': the destination daemon ${peer} says the VM is not there: ending it here would lose it (settle with --resume)`);
  if (state === undefined && !force) throw new ManagerError('conflict', `${cannot}; --force ends it here anyway, right only if it runs there`);
  return false;
}

/**
 * RINGZERO_DAEMON_SWITCHOVER_BOOST (default 1; 0: off; also off with RINGZERO_SWITCHOVER_BOOST=0): each daemon raises
 * its own session's autogroup (src/vmm/resume-priority.ts holdSession) while it relays a switch-over, to the
 * migration's resumeBoost, else the VM definition's, else RINGZERO_RESUME_GROUP_BOOST's value (-10). Why: the downtime's destination part is two round trips relayed by both daemons (the state and
 * "loaded", "go" and "resumed"), eight wake-ups of two processes that ran at their own priority while the VMMs at
 * either end ran boosted: on a loaded host that part was 239-336 ms of 249-352 ms downtimes (README "Live migration",
 * session 22). Only a daemon that leads its own session is raised (as systemd starts a service, or `setsid ringzero
 * daemon`); one started from a shell is left alone, as a VMM would be.
 */
const DAEMON_SWITCHOVER_BOOST = SWITCHOVER_BOOST && process.env.RINGZERO_DAEMON_SWITCHOVER_BOOST !== '0';
/** The longest a daemon holds that boost (a switch-over whose "resumed" never comes: the link fails, settled later). */
const DAEMON_BOOST_MAX_MS = 10_000;

/**
 * The daemon's boost through one migration's switch-over: from the destination VMM's "synced" (its source pauses the
 * guest next) to its "resumed", or the migration's end, whichever comes first; at most DAEMON_BOOST_MAX_MS. Recorded in
 * the migration's view (daemonBoost).
 */
class SwitchoverHold {
  private release: (() => void) | undefined;
  private since = 0;
  private done = false;

  constructor(private readonly view: MigrationView, private readonly nice: number) {}

  /** The stream's answers (destination VMM to source VMM), as this daemon relays them. */
  answer(kind: unknown): void {
    if (kind === 'synced') this.start();
    else if (kind === 'resumed' || kind === 'error') this.end();
  }

  private start(): void {
    if (this.done || this.release || !DAEMON_SWITCHOVER_BOOST) return;
    this.done = true;
    const release = holdSession(this.nice);
    if (!release) return;
    this.release = release;
    this.since = performance.now();
    this.view.daemonBoost = { nice: groupBoosted?.now ?? this.nice, heldMs: 0 };
    setTimeout(() => this.end(), DAEMON_BOOST_MAX_MS).unref();
  }

  end(): void {
    this.done = true;
    if (!this.release) return;
    this.release();
    this.release = undefined;
    this.view.daemonBoost!.heldMs = Math.round(performance.now() - this.since);
  }
}

/** One end of the daemon-to-daemon connection: framing, heartbeat, and one failure reported once. */
class Link {
  onFrame: ((type: number, payload: Buffer) => void) | undefined;
  onFail: ((error: Error) => void) | undefined;
  private readonly bytes = new ByteQueue();
  private lastHeard = Date.now();
  private held = false;
  private timer: NodeJS.Timeout | undefined;
  private failed = false;
  private failure: Error | undefined;
  private closing = false;
  private readonly opened: Promise<void>;

  constructor(readonly socket: net.Socket, public timeoutMs: number) {
    socket.setNoDelay(true);
    this.opened = new Promise((resolve, reject) => {
      if (!socket.connecting) resolve();
      socket.once('connect', () => resolve());
      socket.once('error', reject);
    });
    this.opened.catch(() => {});
    socket.on('data', (chunk: Buffer) => {
      this.lastHeard = Date.now();
      try {
        this.push(chunk);
      } catch (error) {
        this.abort((error as Error).message);
        this.fail(error as Error);
      }
    });
    socket.on('error', (error: NodeJS.ErrnoException) => this.fail(new Error(`the migration link failed: ${error.code ?? error.message}`)));
    socket.on('close', () => this.fail(new Error('the peer daemon closed the migration link')));
  }

  async connected(timeoutMs: number, what: string): Promise<void> {
    try {
      await withTimeout(this.opened, timeoutMs, `cannot connect within ${timeoutMs} ms`);
    } catch (error) {
      this.socket.destroy();
      throw new Error(`cannot reach ${what}: ${(error as NodeJS.ErrnoException).code ?? (error as Error).message}`);
    }
  }

  /** Ping the peer, and fail when it has been silent for timeoutMs (unless this side stopped reading). */
  heartbeat(): void {
    const every = () => Math.max(100, Math.min(1000, this.timeoutMs / 4));
    const tick = () => {
      if (this.failed || this.closing) return;
      this.send(F_PING);
      if (this.held) this.lastHeard = Date.now();
      else if (Date.now() - this.lastHeard > this.timeoutMs) {
        this.fail(new Error(`the peer daemon has been silent for ${this.timeoutMs} ms (link cut, or the daemon stopped)`));
        return;
      }
      this.timer = setTimeout(tick, every());
    };
    this.timer = setTimeout(tick, every());
  }

  hold(on: boolean): void {
    this.held = on;
    if (on) this.socket.pause();
    else { this.lastHeard = Date.now(); this.socket.resume(); }
  }

  send(type: number, payload?: Buffer): boolean {
    if (this.failed || this.socket.destroyed || this.socket.writableEnded) return true;
    const h = Buffer.allocUnsafe(HEADER);
    h.writeUInt8(type, 0);
    h.writeUInt32LE(payload ? payload.length : 0, 1);
    if (!payload || payload.length === 0) return this.socket.write(h);
    this.socket.cork();
    this.socket.write(h);
    const ok = this.socket.write(payload);
    this.socket.uncork();
    return ok;
  }

  sendData(chunk: Buffer): boolean {
    return this.send(F_DATA, chunk);
  }

  sendJson(type: number, message: Record<string, unknown>): void {
    this.send(type, Buffer.from(JSON.stringify(message)));
  }

  /** Done: end the connection once what is queued has gone out. */
  close(): void {
    this.closing = true;
    clearTimeout(this.timer);
    if (!this.socket.destroyed) this.socket.end();
    setTimeout(() => this.socket.destroy(), 5000).unref();
  }

  /** The failure this link ended with, if any. */
  get gone(): Error | undefined {
    return this.failure;
  }

  /** This side gives up (a user's cancel): tell the peer, then fail as if the link had (onFail says why). */
  cancel(message: string): void {
    if (this.failed || this.closing) return;
    if (!this.socket.connecting && !this.socket.destroyed) {
      this.sendJson(F_ABORT, { message });
      this.socket.end();
    }
    const error = new Error(message);
    this.failure = error;
    this.failed = true;
    clearTimeout(this.timer);
    setTimeout(() => this.socket.destroy(), 1000).unref();
    this.onFail?.(error);
  }

  /** Give up: tell the peer why (if the link still carries anything) and drop the connection. */
  abort(message: string): void {
    if (!this.failed && !this.closing && !this.socket.destroyed) {
      this.sendJson(F_ABORT, { message });
      this.socket.end();
    }
    this.closing = true;
    clearTimeout(this.timer);
    setTimeout(() => this.socket.destroy(), 1000).unref();
  }

  private fail(error: Error): void {
    if (this.failed) return;
    this.failed = true;
    this.failure = error;
    clearTimeout(this.timer);
    this.socket.destroy();
    if (!this.closing) this.onFail?.(error);
  }

  private push(chunk: Buffer): void {
    this.bytes.push(chunk);
    while (this.bytes.length >= HEADER) {
      const head = this.bytes.peek(HEADER);
      const type = head.readUInt8(0);
      const size = head.readUInt32LE(1);
      if (type < F_HELLO || type > F_ANSWER) throw new Error(`the peer daemon sent an unknown link frame (type ${type})`);
      if (size > MAX_LINK_FRAME) throw new Error(`the peer daemon sent a link frame of ${size} bytes`);
      if (this.bytes.length < HEADER + size) return;
      this.bytes.take(HEADER);
      const payload = this.bytes.take(size);
      if (type !== F_PING) this.onFrame?.(type, payload);
    }
  }
}

const PROGRESS_FIELDS = ['iteration', 'bytesSent', 'pagesSent', 'zeroPagesSent', 'dirtyPages', 'dirtyRate', 'bandwidth', 'expectedDowntimeMs', 'downtimeLimitMs', 'downtimeMs',
  'diskTotal', 'diskTransferred', 'diskBytesSent', 'diskDirtyBytes', 'diskDirtyRate', 'hotBlocks', 'hotBytes', 'hotPages', 'hotMs', 'hotTranslated'] as const;

/** The VMM's progress (src/migration/source.ts MigrationProgress) into the daemon's view. */
function copyProgress(view: MigrationView, p: Record<string, unknown>): void {
  for (const key of PROGRESS_FIELDS) if (typeof p[key] === 'number') (view as unknown as Record<string, number>)[key] = p[key] as number;
  if (p.downtimeParts && typeof p.downtimeParts === 'object') view.downtimeParts = p.downtimeParts as Record<string, number>;
  if (p.phase === 'setup' || p.phase === 'precopy' || p.phase === 'stop-and-copy') view.phase = p.phase;
}

/** The guest's name of disk `index`: vda, vdb, ... (MAX_DISKS is well under 26). */
export function diskName(index: number): string {
  return `vd${String.fromCharCode(97 + index)}`;
}

/** Check a request's copy-storage fields against the VM's disks (before anything starts). */
export function checkDiskTargets(request: MigrateRequest, definition: VmDefinition): void {
  if (request.copyStorage !== undefined && typeof request.copyStorage !== 'boolean') throw new ManagerError('invalid', '"copyStorage" must be true or false');
  if (request.diskTargets === undefined) return;
  if (request.copyStorage !== true) throw new ManagerError('invalid', 'diskTargets (--disk-target) name where disks are copied: they need copyStorage (--copy-storage-all)');
  if (typeof request.diskTargets !== 'object' || request.diskTargets === null || Array.isArray(request.diskTargets)) throw new ManagerError('invalid', 'diskTargets must be an object {"vda": TARGET, ...}');
  const names = definition.disks.map((_, i) => diskName(i));
  const seen = new Set<string>();
  for (const [disk, target] of Object.entries(request.diskTargets)) {
    if (!names.includes(disk)) throw new ManagerError('invalid', `diskTargets names '${disk}', which VM '${definition.name}' does not have (its disks: ${names.join(', ') || 'none'})`);
    if (typeof target !== 'string' || target.length === 0 || target.length > 4096 || target.includes('\0')) throw new ManagerError('invalid', `the target of ${disk} must be an absolute path or a volume name`);
    if (!target.startsWith('/') && !VOLUME_NAME_RE.test(target)) throw new ManagerError('invalid', `the target of ${disk}, '${target}', is neither an absolute path nor a volume name (letters, digits, '.', '_', '-')`);
    if (seen.has(target)) throw new ManagerError('invalid', `two disks are given one target '${target}'`);
    seen.add(target);
  }
}

function connectLocal(port: number): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const socket = net.createConnection({ host: '127.0.0.1', port });
    socket.once('connect', () => { socket.off('error', reject); resolve(socket); });
    socket.once('error', (error) => reject(new Error(`cannot reach the incoming VMM: ${(error as NodeJS.ErrnoException).code ?? error.message}`)));
  });
}

/** The source's answer to the destination's challenge: HMAC-SHA256 keyed with the shared token. */
function proof(token: string, nonce: string): string {
  return crypto.createHmac('sha256', token).update(`${LINK_FORMAT}:${nonce}`).digest('hex');
}

function parseJson(payload: Buffer): Record<string, unknown> {
  try {
    const value = JSON.parse(payload.toString('utf8')) as unknown;
    return typeof value === 'object' && value !== null ? value as Record<string, unknown> : {};
  } catch {
    return {};
  }
}

function fileSize(file: string): number | undefined {
  try { return fs.statSync(file).size; } catch { return undefined; }
}

function migrationId(): string {
  const t = new Date().toISOString();
  return `mig-${t.slice(0, 10).replaceAll('-', '')}-${t.slice(11, 19).replaceAll(':', '')}-${crypto.randomBytes(3).toString('hex')}`;
}

function withTimeout<T>(promise: Promise<T>, ms: number, message: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  return Promise.race([promise, new Promise<T>((_, reject) => { timer = setTimeout(() => reject(new Error(message)), ms); })])
    .finally(() => clearTimeout(timer));
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
