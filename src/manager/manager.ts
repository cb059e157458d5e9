// The VM manager behind `ringzero daemon`: VM definitions in the state directory, one VMM process per running VM
// (`ringzero run --console-socket ... --status-file ...`, detached in its own session), supervision of those processes,
// and the lifecycle verbs. The API (src/api) is a thin layer over this class.
//
// Process model (as Firecracker's process per VM): a VMM crashing only changes that VM's state to 'crashed'; the
// daemon exiting or being killed leaves every VMM running; a new daemon re-attaches to the VMMs whose pid and process
// start time still match the runtime record, and learns how a VMM it lost ended from the status file the VMM writes.
//
// Graceful shutdown presses the VM's ACPI power button through the VMM's control socket (run/NAME.ctl); snapshots are
// written by the VMM itself (paused, saved, resumed) into snapshots/NAME/SNAP, and a restore starts a VMM from one.
//
// Every change is made durable before the call returns (StateDir writes atomically), and every check that can fail
// runs before anything is written, so an error leaves the state directory as it was.

import { spawn, type ChildProcess } from 'node:child_process';
import { EventEmitter } from 'node:events';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { ManagerError, SNAPSHOT_NAME_RE, VM_NAME_RE, type SnapshotView, type VmDefinition, type VmResources, type VmState } from './schema.ts';
import { parseCpuList, ResourceController, setThreadAffinity } from './resources.ts';
import { fsyncDir, MAX_SOCKET_PATH, removeFileDurable, StateDir } from './store.ts';
import { isSameProcess, processesWithArgument, processStartTime } from './proc.ts';
import { VolumePool } from './volumes.ts';
import { TemplateStore } from './templates.ts';
import { DiskSnapshots } from './disk-snapshots.ts';
import { BackupStore } from './backups.ts';
import { completeNics, macsOf, netArguments } from './nics.ts';
import { checkDiskFormats, diskArgument } from './disk-format.ts';
import { detectFormat } from '../storage/backend.ts';
import { testOrphanCommand } from './subreaper.ts';
import { Migrations } from './migration.ts';
import { VmmPool, type TakenSpare } from './pool.ts';

/** The launcher of the CLI, run by the VMM processes. */
export const RINGZERO_BIN = fileURLToPath(new URL('../../bin/ringzero', import.meta.url));

/**
 * Node options a VMM process starts with (V8's worker pool size), as bin/ringzero decided them for this host when it
 * started this process; none when it did not (a test's process): a VMM then adds them itself (bin/ringzero re-executes
 * itself once), except a spare, which keeps Node's pool.
 */
export function vmmNodeArgs(): string[] {
  const args = (globalThis as Record<symbol, unknown>)[Symbol.for('ringzero.vmmNodeArgs')];
  return Array.isArray(args) ? args.filter((a): a is string => typeof a === 'string') : [];
}

export interface LastExit {
  exitCode: number | null;
  signal: string | null;
  reason: string;
  at: string;
}

/** DIR/run/NAME.json. */
export interface RuntimeRecord {
  state: VmState;
  pid?: number;
  /** The VMM's start time in clock ticks since boot (/proc/PID/stat), to tell it from a later process with its pid. */
  startTime?: number;
  startedAt?: string;
  /** Set while the daemon itself is stopping the VM: its exit is then not a crash. */
  stopRequested?: 'shutdown' | 'destroy';
  /** The snapshot this run started from (`restore`), if any. */
  restoredFrom?: string;
  /** This run's VMM was a spare of the daemon's pool (src/manager/pool.ts): its pid is the spare's, warmed up or not. */
  spare?: SpareUse;
  lastExit?: LastExit;
  /** Resource control in force for this run (from the definition at start, changed by setResources). */
  resources?: AppliedResources;
}

/** A VMM start that took a spare of the pool: whether it had finished its warm-up, and what that was. */
export interface SpareUse {
  pid: number;
  warmed: boolean;
  /** The warm-up's main-thread CPU (ms) and the scratch guest's instructions (absent: none ran). */
  warmUpMs?: number;
  warmUpInstructions?: number;
}

/** What a running VM's resource control is: the values, the cgroup that holds them, or why there is none. */
export interface AppliedResources extends VmResources {
  cgroup?: string;
  /** Why a limit asked for is not in force (no writable cgroups here, say). */
  note?: string;
}

export interface VmView {
  name: string;
  state: VmState;
  definition: VmDefinition;
  pid?: number;
  startedAt?: string;
  consoleSocket?: string;
  /** The snapshot the running VM was restored from. */
  restoredFrom?: string;
  /** The running VM's VMM was a spare of the daemon's pool (`daemon --vmm-pool`). */
  spare?: SpareUse;
  lastExit?: LastExit;
  /** Resource control in force while running. */
  resources?: AppliedResources;
  /** A live migration in progress or unsettled (src/manager/migration.ts vmAnnotation): its phase and peer. */
  migration?: { id: string; direction: 'outgoing' | 'incoming'; phase: string; peer: string };
}

export interface LifecycleEvent {
  type: 'defined' | 'updated' | 'undefined' | 'starting' | 'started' | 'stopped' | 'crashed' | 'shutting-down'
    | 'snapshot-created' | 'snapshot-deleted' | 'suspended' | 'resumed' | 'rebooted' | 'resources-changed';
  name: string;
  state?: VmState;
  at: string;
  detail?: string;
}

export interface ManagerOptions {
  /** How long `start` waits for the VMM to serve its console (default 30 s: a loaded host takes seconds to load tsx). */
  startTimeoutMs?: number;
  /** How often VMMs that are not our children are checked for their exit (default 500 ms). */
  pollMs?: number;
  log?: (line: string) => void;
  /** Node arguments and script for the VMM process (tests may stand in another). Default: this node and bin/ringzero. */
  vmmCommand?: { file: string; args: string[] };
  /**
   * Spare VMM processes kept warm for incoming migrations and restores (src/manager/pool.ts; `daemon --vmm-pool N
   * --vmm-pool-warm-up-ms MS`). Default: none.
   */
  pool?: { size: number; warmUpMs: number };
}

const ACTIVE_STATES: ReadonlySet<VmState> = new Set(['starting', 'running', 'paused', 'shutting down']);

export class VmManager extends EventEmitter {
  readonly state: StateDir;
  private readonly definitions = new Map<string, VmDefinition>();
  private readonly runtime = new Map<string, RuntimeRecord>();
  /** VMMs started by this daemon: their exit comes as the child's 'exit' event. */
  private readonly children = new Map<string, ChildProcess>();
  /** Waiters for a VM's VMM to end. */
  private readonly exitWaiters = new Map<string, Array<() => void>>();
  private pollTimer: NodeJS.Timeout | undefined;
  private readonly log: (line: string) => void;
  private readonly startTimeoutMs: number;
  private readonly pollMs: number;
  private readonly vmmCommand: { file: string; args: string[] };
  /** VMs with a snapshot being written (one at a time per VM). */
  private readonly snapshotting = new Set<string>();
  /** Per-VM cgroups (CPU quota and weight, memory limit) and CPU pinning. */
  readonly resources: ResourceController;
  /** The storage pool (DIR/volumes) and templates (DIR/templates): src/manager/volumes.ts, templates.ts. */
  readonly volumes: VolumePool;
  readonly templates: TemplateStore;
  /** External qcow2 disk snapshots and consistent backups (src/manager/disk-snapshots.ts, backups.ts). */
  readonly diskSnapshots: DiskSnapshots;
  readonly backups: BackupStore;
  /** Live migration between daemons, both ways (src/manager/migration.ts). */
  readonly migrations: Migrations;
  /** Spare VMMs for incoming migrations and restores (src/manager/pool.ts). */
  readonly pool: VmmPool;

  constructor(stateDir: string, options: ManagerOptions = {}) {
    super();
    this.state = new StateDir(stateDir);
    this.log = options.log ?? (() => {});
    this.startTimeoutMs = options.startTimeoutMs ?? 30_000;
    this.pollMs = options.pollMs ?? 500;
    const nodeArgs = vmmNodeArgs();
    this.vmmCommand = options.vmmCommand ?? testOrphanCommand(RINGZERO_BIN, nodeArgs) ?? { file: process.execPath, args: [...nodeArgs, RINGZERO_BIN] };
    this.resources = new ResourceController(stateDir, this.log);
    this.volumes = new VolumePool(stateDir, this);
    this.templates = new TemplateStore(stateDir, this, this.volumes, this.log);
    this.diskSnapshots = new DiskSnapshots(stateDir, this, this.volumes);
    this.backups = new BackupStore(stateDir, this, this.volumes, this.log);
    this.migrations = new Migrations(stateDir, this, this.log);
    this.pool = new VmmPool(this.vmmCommand, {
      size: options.pool?.size ?? 0, warmUpMs: options.pool?.warmUpMs ?? 0, log: this.log,
      logFile: path.join(stateDir, 'logs', 'vmm-pool.log'),
    });
  }

  /** Load the state directory, re-attach to the VMMs still running, settle the ones that ended, autostart. */
  async open(): Promise<void> {
    this.state.open();
    this.volumes.open();
    this.templates.open(); // rolls back a clone a crash interrupted (before the definitions are read)
    this.diskSnapshots.open();
    this.backups.open();
    for (const name of this.state.definedNames()) {
      let definition: VmDefinition | undefined;
      try {
        definition = this.state.readJson<VmDefinition>(this.state.definitionFile(name));
      } catch (error) {
        this.log(`ignoring ${this.state.definitionFile(name)}: ${(error as Error).message}`);
        continue;
      }
      if (!definition || definition.name !== name || !VM_NAME_RE.test(name)) {
        this.log(`ignoring ${this.state.definitionFile(name)}: not a definition of '${name}'`);
        continue;
      }
      this.definitions.set(name, definition);
      let record: RuntimeRecord | undefined;
      try {
        record = this.state.readJson<RuntimeRecord>(this.state.runtimeFile(name));
      } catch {
        record = undefined;
      }
      record ??= { state: 'shut off' };
      this.runtime.set(name, record);
      if (ACTIVE_STATES.has(record.state)) {
        if (record.pid !== undefined && record.startTime !== undefined && isSameProcess(record.pid, record.startTime)) {
          if (record.state === 'starting') this.setRuntime(name, { ...record, state: 'running' });
          this.log(`re-attached to VM '${name}' (pid ${record.pid})`);
        } else {
          this.settleExit(name, null, null);
        }
      }
    }
    // A VMM that no record names: the daemon was killed in start() after spawning it, before writing its pid.
    for (const name of this.definitions.keys()) {
      if (!ACTIVE_STATES.has(this.stateOf(name))) this.adoptUnrecorded(name);
    }
    // Runtime files of VMs that are no longer defined (a crash between the two removals of undefine).
    for (const entry of fs.readdirSync(this.state.runDir)) {
      const name = entry.replace(/\.(json|status|sock|ctl)$/, '');
      if (!this.definitions.has(name)) fs.rmSync(path.join(this.state.runDir, entry), { force: true });
    }
    this.removeSnapshotLeftovers();
    this.pollTimer = setInterval(() => this.pollAdopted(), this.pollMs);
    this.pollTimer.unref();
    await this.migrations.open(); // settles migrations a daemon crash interrupted (before autostart can start one)
    for (const [name, definition] of this.definitions) {
      if (definition.autostart && !ACTIVE_STATES.has(this.stateOf(name))) {
        this.start(name).catch((error) => this.log(`autostart of '${name}' failed: ${(error as Error).message}`));
      }
    }
    this.pool.open();
  }

  /** Stop supervising (the VMMs keep running; a new daemon re-attaches). */
  close(): void {
    if (this.pollTimer) clearInterval(this.pollTimer);
    this.migrations.close();
    this.pool.close(); // the spares end with the daemon (the VMs' VMMs do not)
    for (const child of this.children.values()) child.removeAllListeners('exit');
    this.children.clear();
  }

  list(): VmView[] {
    return [...this.definitions.keys()].sort().map((name) => this.view(name));
  }

  get(name: string): VmView {
    this.definitionOf(name);
    return this.view(name);
  }

  runningCount(): number {
    return [...this.runtime.values()].filter((r) => ACTIVE_STATES.has(r.state)).length;
  }

  define(input: VmDefinition): VmView {
    if (this.definitions.has(input.name)) throw new ManagerError('conflict', `VM '${input.name}' is already defined`);
    this.checkSocketPath(input.name);
    const definition = completeNics(input, macsOf(this.definitions.values())); // default MACs stored (src/manager/nics.ts)
    this.state.writeJson(this.state.definitionFile(definition.name), definition);
    this.definitions.set(definition.name, definition);
    this.runtime.set(definition.name, { state: 'shut off' });
    this.emitEvent({ type: 'defined', name: definition.name, state: 'shut off' });
    return this.view(definition.name);
  }

  update(name: string, input: VmDefinition): VmView {
    this.definitionOf(name);
    if (input.name !== name) {
      throw new ManagerError('invalid', `the definition's name '${input.name}' differs from '${name}' (renaming is not supported)`);
    }
    if (ACTIVE_STATES.has(this.stateOf(name))) throw new ManagerError('conflict', `VM '${name}' is ${this.stateOf(name)}: edit it when it is shut off`);
    const definition = completeNics(input, macsOf(this.definitions.values(), name));
    this.state.writeJson(this.state.definitionFile(name), definition);
    this.definitions.set(name, definition);
    this.emitEvent({ type: 'updated', name, state: this.stateOf(name) });
    return this.view(name);
  }

  undefine(name: string): void {
    this.definitionOf(name);
    if (ACTIVE_STATES.has(this.stateOf(name))) throw new ManagerError('conflict', `VM '${name}' is ${this.stateOf(name)}: destroy it first`);
    const snapshots = this.snapshotNames(name);
    if (snapshots.length > 0) {
      throw new ManagerError('conflict', `VM '${name}' has ${snapshots.length} snapshot(s) (${snapshots.join(', ')}): delete them first`);
    }
    // The definition file is the VM: once it is gone, the rest is leftovers that open() also cleans up.
    removeFileDurable(this.state.definitionFile(name));
    this.diskSnapshots.forget(name); // its disk snapshot records (the images stay in the pool as volumes)
    this.definitions.delete(name);
    this.runtime.delete(name);
    for (const file of [this.state.runtimeFile(name), this.state.statusFile(name), this.state.consoleSocket(name), this.state.controlSocket(name)]) {
      fs.rmSync(file, { force: true });
    }
    this.emitEvent({ type: 'undefined', name });
  }

  /**
   * Start the VM's VMM process; resolves when it serves its console (the guest is then booting). With `fromSnapshot`
   * (a snapshot directory) the VMM starts the saved machine instead of booting its kernel. With `incoming`
   * (tcp:HOST:PORT) the VMM waits for a live migration instead (src/manager/migration.ts): start resolves once it serves
   * its console, and the VM stays 'starting' until markRunning() says the migrated guest runs; `diskTargets` (a
   * copy-storage migration) are the files its VMM creates and fills: the definition's disks, not there yet.
   */
  async start(name: string, fromSnapshot?: string, incoming?: string, diskTargets?: string[], verifySnapshot = false, resumeBoost?: number): Promise<VmView> {
    const definition = this.definitionOf(name);
    const current = this.stateOf(name);
    if (ACTIVE_STATES.has(current)) throw new ManagerError('conflict', `VM '${name}' is already ${current}`);
    this.checkDisksFree(name, definition);
    this.checkTapsFree(name, definition);
    if (fromSnapshot === undefined && diskTargets === undefined) checkDiskFormats(definition); // a disk defined as qcow2 must be one
    this.checkSocketPath(name);
    const socketPath = this.state.consoleSocket(name);
    const statusFile = this.state.statusFile(name);
    const controlSocket = this.state.controlSocket(name);
    fs.rmSync(socketPath, { force: true });
    fs.rmSync(statusFile, { force: true });
    fs.rmSync(controlSocket, { force: true });
    const args = incoming !== undefined
      ? ['run', '--incoming', incoming, '--console-socket', socketPath, '--status-file', statusFile, '--control-socket', controlSocket, ...(diskTargets ?? []).flatMap((t) => ['--disk-target', t])]
      : fromSnapshot !== undefined
      ? restoreArguments(fromSnapshot, socketPath, statusFile, controlSocket, verifySnapshot)
      : vmmArguments(definition, socketPath, statusFile, controlSocket);
    // (a migration's own resumeBoost, else the definition's: the incoming and restoring VMMs too, whose resume it is for)
    const boost = resumeBoost ?? definition.resumeBoost;
    if (boost !== undefined) args.push('--resume-boost', String(boost));

    const logFd = fs.openSync(this.state.logFile(name), 'a', 0o600);
    fs.writeSync(logFd, `--- ${new Date().toISOString()} start\n`);
    const logStart = fs.fstatSync(logFd).size;
    let child: ChildProcess;
    // An incoming migration or a restore takes a spare of the pool when there is one (src/manager/pool.ts): the same
    // command line, run by a process that is up and warm already, its stderr appended to the VM's log as a new VMM's.
    let spare: TakenSpare | undefined;
    const previous = this.runtime.get(name);
    const spareUseOf = (s: TakenSpare): SpareUse => ({
      pid: s.pid, warmed: s.state === 'ready' && !!s.warmUp,
      ...(s.warmUp ? { warmUpMs: s.warmUp.ms, warmUpInstructions: s.warmUp.instructions } : {}),
    });
    const restoredFrom = fromSnapshot !== undefined ? { restoredFrom: path.basename(fromSnapshot) } : {};
    let claimed = false;
    try {
      // A spare's command line (`vmm-spare ...`) never names the VM it is given, so nothing would lead a daemon killed
      // after the hand-off to it (a new VMM is found by the control socket its command line names: adoptUnrecorded):
      // the record naming it is written before the hand-off. Killed before it, the spare exits with its channel and the
      // next daemon finds the record's process gone.
      spare = incoming !== undefined || fromSnapshot !== undefined
        ? await this.pool.take(args, this.state.logFile(name), (s) => {
          this.setRuntime(name, {
            state: 'starting', pid: s.pid, startTime: processStartTime(s.pid), startedAt: new Date().toISOString(),
            lastExit: previous?.lastExit, ...restoredFrom, spare: spareUseOf(s),
          });
          claimed = true;
        })
        : undefined;
      // (every spare tried failed: the record goes back to what it was until the new VMM below is recorded)
      if (!spare && claimed) this.setRuntime(name, previous ?? { state: 'shut off' });
      child = spare?.child ?? spawn(this.vmmCommand.file, [...this.vmmCommand.args, ...args], {
        detached: true, // its own session: no signal meant for the daemon (Ctrl-C, SIGHUP) reaches the VM
        stdio: ['ignore', 'ignore', logFd],
        cwd: '/',
      });
    } finally {
      fs.closeSync(logFd);
    }
    const spareUse: SpareUse | undefined = spare ? spareUseOf(spare) : undefined;
    const pid = child.pid;
    if (pid === undefined) {
      const error = await new Promise<Error>((resolve) => child.once('error', resolve));
      throw new ManagerError('start_failed', `cannot start the VMM process: ${error.message}`);
    }
    child.unref();
    this.children.set(name, child);
    // (a new VMM runs, no record names it yet: open() finds it, adoptUnrecorded; a spare's record was written before)
    crashPoint('start-spawned');
    const startTime = processStartTime(pid);
    this.setRuntime(name, {
      state: 'starting', pid, startTime, startedAt: new Date().toISOString(), lastExit: previous?.lastExit,
      ...restoredFrom, ...(spareUse ? { spare: spareUse } : {}),
    });
    this.emitEvent({
      type: 'starting', name, state: 'starting',
      ...(spareUse ? { detail: `spare VMM ${spareUse.pid} of the pool${spareUse.warmed ? `, warmed up (${spareUse.warmUpMs} ms of CPU, ${spareUse.warmUpInstructions} scratch instructions)` : ', not warmed up'}` } : {}),
    });
    crashPoint('start-recorded'); // recorded as starting, its console not served yet: open() re-attaches
    this.applyDefinedResources(name, pid, definition);
    let exited = false;
    child.once('exit', (code, signal) => {
      exited = true;
      if (this.children.get(name) === child) this.children.delete(name);
      this.settleExit(name, code, signal);
    });

    const deadline = Date.now() + this.startTimeoutMs;
    // Ready: the console is served and the control socket is there (the VMM makes it when it builds the machine).
    // (An incoming VMM makes its control socket only when the migration stream names the machine.)
    while (!exited && !(fs.existsSync(socketPath) && (incoming !== undefined || fs.existsSync(controlSocket)))) {
      if (Date.now() > deadline) {
        this.killVmm(name, 'destroy');
        throw new ManagerError('start_failed', `VM '${name}': the VMM did not serve its console within ${this.startTimeoutMs / 1000} s`);
      }
      await sleep(25);
    }
    if (exited || this.stateOf(name) !== 'starting') {
      const record = this.runtime.get(name)!;
      // A guest that powered off at once (status 0) did start.
      if (record.lastExit?.exitCode === 0) return this.view(name);
      // A VMM that refused its configuration (a missing kernel, say) is a failed start, not a crash of the VM.
      this.setRuntime(name, { state: 'shut off', lastExit: record.lastExit });
      const said = readLogTail(this.state.logFile(name), logStart);
      throw new ManagerError('start_failed', `VM '${name}' did not start${said ? `: ${said}` : ''}`);
    }
    if (incoming !== undefined) return this.view(name);
    this.setRuntime(name, { ...this.runtime.get(name)!, state: 'running' });
    this.emitEvent({ type: 'started', name, state: 'running' });
    return this.view(name);
  }

  /**
   * An outgoing migration's VMM is paused in an unknown switch-over, or was resumed by its resolution
   * (src/manager/migration.ts): the runtime state follows what the VMM does ('running' <-> 'paused').
   */
  markMigrationPaused(name: string, paused: boolean, detail: string): void {
    const record = this.runtime.get(name);
    if (!record || record.state !== (paused ? 'running' : 'paused')) return;
    this.setRuntime(name, { ...record, state: paused ? 'paused' : 'running' });
    this.emitEvent({ type: paused ? 'suspended' : 'resumed', name, state: paused ? 'paused' : 'running', detail });
  }

  /** An incoming migration's VMM runs the guest now (src/manager/migration.ts): 'starting' becomes 'running'. */
  markRunning(name: string, detail?: string): VmView {
    const record = this.runtime.get(name);
    if (record?.state === 'starting') {
      this.setRuntime(name, { ...record, state: 'running' });
      this.emitEvent({ type: 'started', name, state: 'running', ...(detail !== undefined ? { detail } : {}) });
    }
    return this.view(name);
  }

  /** Stop the VM at once (virsh destroy): SIGKILL to its VMM. Resolves when the process is gone. */
  async destroy(name: string): Promise<VmView> {
    this.definitionOf(name);
    if (!ACTIVE_STATES.has(this.stateOf(name))) throw new ManagerError('conflict', `VM '${name}' is not running`);
    const ended = this.waitForExit(name);
    this.killVmm(name, 'destroy');
    await ended;
    return this.view(name);
  }

  /**
   * Graceful stop with a timeout, then destroy: the VMM presses the guest's ACPI power button (a guest that handles it
   * powers off by itself, as the default image's acpid does), the daemon waits up to `timeoutMs` for the VMM to end,
   * then destroys it. `graceful` says which happened. A VMM without a control socket (started by an older daemon)
   * only gets the wait.
   */
  async shutdown(name: string, timeoutMs: number): Promise<{ vm: VmView; graceful: boolean }> {
    this.definitionOf(name);
    const state = this.stateOf(name);
    if (state !== 'running') throw new ManagerError('conflict', `VM '${name}' is ${state}, not running`);
    const record = this.runtime.get(name)!;
    this.setRuntime(name, { ...record, state: 'shutting down', stopRequested: 'shutdown' });
    this.emitEvent({ type: 'shutting-down', name, state: 'shutting down' });
    const ended = this.waitForExit(name);
    const timeout = sleep(timeoutMs).then(() => true);
    const pressed = await this.control(name, { cmd: 'shutdown' }, Math.min(5000, Math.max(timeoutMs, 100))).catch((error: Error) => error);
    if (pressed instanceof Error) this.log(`VM '${name}': could not press the power button: ${pressed.message}`);
    else if (pressed.listening !== true) this.log(`VM '${name}': the guest has not enabled its power button: waiting for the timeout`);
    const timedOut = await Promise.race([ended.then(() => false), timeout]);
    if (timedOut) {
      this.killVmm(name, 'shutdown');
      await ended;
    }
    return { vm: this.view(name), graceful: !timedOut };
  }

  /**
   * Reboot (virsh reboot). A running VM whose guest reboots in place (onReboot 'restart', the default) gets a graceful
   * reboot in its own VMM process: the VMM presses the power button and turns the guest's poweroff into a reset,
   * which boots the guest again; a guest that does not listen to the button is reset at once (`hard`). A VM with
   * onReboot 'exit' is shut down gracefully (`timeoutMs`, then destroyed) and started again by the daemon; a VM that
   * is not running is started.
   */
  async reboot(name: string, timeoutMs = 60_000): Promise<VmView & { how: 'in-place' | 'reset' | 'restarted' }> {
    const definition = this.definitionOf(name);
    const state = this.stateOf(name);
    if (state === 'paused') throw new ManagerError('conflict', `VM '${name}' is paused: resume it first`);
    if (state === 'starting' || state === 'shutting down') throw new ManagerError('conflict', `VM '${name}' is ${state}`);
    if (state === 'running' && definition.onReboot === 'restart') {
      let how: 'in-place' | 'reset' = 'in-place';
      try {
        const answer = await this.control(name, { cmd: 'reboot' }, 5000);
        if (answer.ok !== true) throw new Error(String(answer.error ?? 'refused'));
        if (answer.listening !== true) {
          // The guest would never see the button: reset it (as a reset line), it boots again all the same.
          const reset = await this.control(name, { cmd: 'reset' }, 5000);
          if (reset.ok !== true) throw new Error(String(reset.error ?? 'reset refused'));
          how = 'reset';
        }
      } catch (error) {
        throw new ManagerError('conflict', `VM '${name}': the VMM did not take the reboot: ${(error as Error).message}`);
      }
      this.emitEvent({ type: 'rebooted', name, state: 'running', detail: how });
      return { ...this.view(name), how };
    }
    if (state === 'running') await this.shutdown(name, timeoutMs);
    const vm = await this.start(name);
    this.emitEvent({ type: 'rebooted', name, state: this.stateOf(name), detail: 'restarted' });
    return { ...vm, how: 'restarted' };
  }

  /**
   * Pause a running VM's vCPUs (virsh suspend): the VMM stops scheduling them (soft engine: its run loop parks and the
   * guest's clocks stand still; KVM: the vCPUs are kicked out of KVM_RUN and wait). The VMM process, its memory,
   * console and control socket stay; resume() continues the guest.
   */
  async suspend(name: string): Promise<VmView> {
    this.definitionOf(name);
    const state = this.stateOf(name);
    if (state === 'paused') return this.view(name);
    if (state !== 'running') throw new ManagerError('conflict', `VM '${name}' is ${state}: only a running VM can be suspended`);
    const answer = await this.control(name, { cmd: 'pause' }, 10_000).catch((error: Error) => ({ ok: false, error: error.message }));
    if (answer.ok !== true) throw new ManagerError('conflict', `VM '${name}': the VMM did not pause: ${String(answer.error)}`);
    if (this.stateOf(name) !== 'running') return this.view(name); // ended meanwhile
    this.setRuntime(name, { ...this.runtime.get(name)!, state: 'paused' });
    this.emitEvent({ type: 'suspended', name, state: 'paused' });
    return this.view(name);
  }

  async resume(name: string): Promise<VmView> {
    this.definitionOf(name);
    const state = this.stateOf(name);
    if (state === 'running') return this.view(name);
    if (state !== 'paused') throw new ManagerError('conflict', `VM '${name}' is ${state}, not paused`);
    const answer = await this.control(name, { cmd: 'resume' }, 10_000).catch((error: Error) => ({ ok: false, error: error.message }));
    if (answer.ok !== true) throw new ManagerError('conflict', `VM '${name}': the VMM did not resume: ${String(answer.error)}`);
    if (this.stateOf(name) !== 'paused') return this.view(name);
    this.setRuntime(name, { ...this.runtime.get(name)!, state: 'running' });
    this.emitEvent({ type: 'resumed', name, state: 'running' });
    return this.view(name);
  }

  /**
   * Change resource control (virsh schedinfo / vcpupin / memtune). `changes` holds the knobs to change: a number or
   * CPU list sets one, null removes the limit. A running VM gets them at once (its cgroup, its threads' affinity);
   * with `config` (or a VM that is not running) they are also saved in the definition, for the next start.
   */
  setResources(name: string, changes: { [K in keyof VmResources]?: VmResources[K] | null }, config: boolean): VmView {
    const definition = this.definitionOf(name);
    if (changes.cpuPinning != null) parseCpuList(changes.cpuPinning);
    const merge = <T extends VmResources>(base: T): T => {
      const out: T = { ...base };
      for (const key of ['cpuQuotaPercent', 'cpuWeight', 'memoryMax', 'cpuPinning'] as const) {
        if (!(key in changes)) continue;
        const value = changes[key];
        if (value === null || value === undefined) delete out[key];
        else (out as Record<string, unknown>)[key] = value;
      }
      return out;
    };
    const state = this.stateOf(name);
    const record = this.runtime.get(name)!;
    const live = ACTIVE_STATES.has(state) && record.pid !== undefined;
    if (live) {
      const { cgroup: _cgroup, note: _note, ...current }: AppliedResources = record.resources ?? definitionResources(definition);
      const wanted = merge(current);
      const applied = this.applyResources(name, record.pid!, wanted, true);
      this.setRuntime(name, { ...this.runtime.get(name)!, resources: applied ?? wanted });
    }
    if (config || !live) {
      const updated = merge(definition);
      this.state.writeJson(this.state.definitionFile(name), updated);
      this.definitions.set(name, updated);
    }
    this.emitEvent({ type: 'resources-changed', name, state: this.stateOf(name) });
    return this.view(name);
  }

  /**
   * The balloon of a running VM (virsh setmem / dommemstat): with `memoryMiB`, set its target so the guest keeps that
   * much of its RAM. Answers the guest's memory left, the balloon's target and actual (inflated) size, in bytes.
   */
  async balloon(name: string, memoryMiB?: number): Promise<{ memoryBytes: number; guestMemoryBytes: number; targetBytes: number; actualBytes: number; guest: unknown }> {
    const definition = this.definitionOf(name);
    const state = this.stateOf(name);
    if (state !== 'running' && state !== 'paused') throw new ManagerError('conflict', `VM '${name}' is ${state}: the balloon works while it runs`);
    if (definition.balloon !== true) throw new ManagerError('conflict', `VM '${name}' has no balloon: set "balloon": true in its definition (then restart it)`);
    if (memoryMiB !== undefined && (memoryMiB > definition.memory || memoryMiB < 16)) {
      throw new ManagerError('invalid', `VM '${name}' has ${definition.memory} MiB: its memory can be set from 16 MiB to ${definition.memory} MiB, not ${memoryMiB}`);
    }
    const PAGE = 4096; // virtio-balloon counts 4 KiB pages (virtio 1.2 §5.5.6)
    const request = memoryMiB === undefined ? { cmd: 'balloon-stats' } : { cmd: 'balloon-set', pages: ((definition.memory - memoryMiB) * 2 ** 20) / PAGE };
    const answer = await this.control(name, request, 5000).catch((error: Error) => ({ ok: false, error: error.message }) as Record<string, unknown>);
    if (answer.ok !== true) throw new ManagerError('conflict', `VM '${name}': ${String(answer.error)}`);
    const memoryBytes = definition.memory * 2 ** 20;
    const actualBytes = Number(answer.actualPages ?? 0) * PAGE;
    return { memoryBytes, guestMemoryBytes: memoryBytes - actualBytes, targetBytes: Number(answer.targetPages ?? 0) * PAGE, actualBytes, guest: answer.guest ?? {} };
  }

  /** Put a new VMM `pid` under the resources of `definition` and record what was applied in its runtime record. */
  private applyDefinedResources(name: string, pid: number, definition: VmDefinition): void {
    const resources = this.applyResources(name, pid, definitionResources(definition));
    if (resources) this.setRuntime(name, { ...this.runtime.get(name)!, resources });
  }

  /**
   * Put the VMM `pid` under the resource control `r`: cgroup knobs (only when some are asked for, or the VM has a
   * cgroup already) and the affinity of its threads. Without usable cgroups a limit asked for is not in force: the
   * returned `note` says so, and `strict` (a run-time change) makes that an error instead.
   */
  private applyResources(name: string, pid: number, r: VmResources, strict = false): AppliedResources | undefined {
    const wantsCgroup = r.cpuQuotaPercent !== undefined || r.cpuWeight !== undefined || r.memoryMax !== undefined;
    if (!wantsCgroup && r.cpuPinning === undefined && !this.resources.has(name)) return undefined;
    const applied: AppliedResources = { ...r };
    if (wantsCgroup || this.resources.has(name)) {
      try {
        applied.cgroup = this.resources.apply(name, pid, r);
      } catch (error) {
        if (strict) throw error;
        applied.note = (error as Error).message;
        this.log(`VM '${name}': ${applied.note}`);
      }
    }
    if (r.cpuPinning !== undefined) {
      // Every thread of the VMM: the soft engine's vCPUs all run on its main thread, the KVM engine's on workers; a
      // thread made later (a KVM vCPU worker) inherits the affinity of the thread that creates it.
      const cpus = parseCpuList(r.cpuPinning);
      let tids: string[] = [];
      try { tids = fs.readdirSync(`/proc/${pid}/task`); } catch { /* gone */ }
      try {
        for (const tid of tids) setThreadAffinity(Number(tid), cpus);
      } catch (error) {
        if (strict) throw error;
        applied.note = (error as Error).message;
      }
    }
    return applied;
  }

  // --- snapshots -------------------------------------------------------------------------------------------------

  /**
   * Snapshot a running VM into snapshots/NAME/SNAP: its VMM pauses the guest, writes the snapshot (to a temporary
   * sibling that is renamed into place) and resumes it. Resolves when the snapshot is complete.
   */
  async createSnapshot(name: string, snapshot?: string): Promise<SnapshotView> {
    this.definitionOf(name);
    const snap = snapshot ?? defaultSnapshotName();
    if (!SNAPSHOT_NAME_RE.test(snap)) throw new ManagerError('invalid', `invalid snapshot name '${snap}': letters, digits, '_' and '-', at most 63, not starting with '_' or '-'`);
    const state = this.stateOf(name);
    if (state !== 'running') throw new ManagerError('conflict', `VM '${name}' is ${state}: only a running VM can be snapshotted`);
    if (this.snapshotting.has(name)) throw new ManagerError('conflict', `a snapshot of VM '${name}' is being written`);
    const dir = this.state.snapshotDir(name, snap);
    if (fs.existsSync(dir)) throw new ManagerError('conflict', `VM '${name}' already has a snapshot '${snap}'`);
    this.snapshotting.add(name);
    try {
      fs.mkdirSync(this.state.vmSnapshotsDir(name), { recursive: true, mode: 0o700 });
      // Writing the memory image takes about a second per GiB of touched guest RAM here; allow for a slow disk.
      const timeoutMs = 60_000 + this.definitionOf(name).memory * 100;
      let answer: Record<string, unknown>;
      try {
        answer = await this.control(name, { cmd: 'snapshot', dir }, timeoutMs);
      } catch (error) {
        throw new ManagerError('snapshot_failed', `VM '${name}': ${(error as Error).message}`);
      }
      if (answer.ok !== true) throw new ManagerError('snapshot_failed', `VM '${name}': ${String(answer.error ?? 'the VMM refused the snapshot')}`);
      if (!fs.existsSync(path.join(dir, 'state.json'))) throw new ManagerError('snapshot_failed', `VM '${name}': the VMM reported a snapshot that is not there`);
    } catch (error) {
      this.removeSnapshotLeftovers(); // what a VMM that died while writing left (a live writer's files stay)
      throw error;
    } finally {
      this.snapshotting.delete(name);
    }
    this.emitEvent({ type: 'snapshot-created', name, state: this.stateOf(name), detail: snap });
    return this.snapshotView(name, snap);
  }

  /**
   * Point a VM's disks at other image files, whatever its state: an external disk snapshot or a backup switched the
   * running VMM to qcow2 overlays of its images (src/manager/disk-snapshots.ts), and the next start must use them.
   */
  setDiskPaths(name: string, paths: string[]): VmView {
    const definition = this.definitionOf(name);
    if (paths.length !== definition.disks.length) throw new ManagerError('internal', `VM '${name}' has ${definition.disks.length} disks, not ${paths.length}`);
    // A stated format follows the new image (which the daemon itself just made: an overlay, a copy), not the old one.
    const updated: VmDefinition = {
      ...definition,
      disks: definition.disks.map((disk, i) => ({ ...disk, path: paths[i], ...(disk.format !== undefined && paths[i] !== disk.path ? { format: detectFormat(paths[i]) } : {}) })),
    };
    this.state.writeJson(this.state.definitionFile(name), updated);
    this.definitions.set(name, updated);
    return this.view(name);
  }

  listSnapshots(name: string): SnapshotView[] {
    this.definitionOf(name);
    return this.snapshotNames(name).map((snap) => this.snapshotView(name, snap))
      .sort((a, b) => a.createdAt.localeCompare(b.createdAt) || a.name.localeCompare(b.name));
  }

  getSnapshot(name: string, snap: string): SnapshotView {
    this.definitionOf(name);
    this.snapshotDirOf(name, snap);
    return this.snapshotView(name, snap);
  }

  /**
   * Start a shut-off VM from one of its snapshots (the guest carries on from the saved instant). With `verify` its VMM
   * first checks the memory image against its SHA-256 (a damaged one: start_failed, the VM stays shut off).
   */
  async restoreSnapshot(name: string, snap: string, verify = false): Promise<VmView> {
    this.definitionOf(name);
    const dir = this.snapshotDirOf(name, snap);
    const state = this.stateOf(name);
    if (ACTIVE_STATES.has(state)) throw new ManagerError('conflict', `VM '${name}' is ${state}: shut it off before restoring a snapshot`);
    return this.start(name, dir, undefined, undefined, verify);
  }

  /** Remove a snapshot (renamed aside first, so a crash never leaves half of one under its name). */
  deleteSnapshot(name: string, snap: string): void {
    this.definitionOf(name);
    const dir = this.snapshotDirOf(name, snap);
    if (this.runtime.get(name)?.restoredFrom === snap && ACTIVE_STATES.has(this.stateOf(name))) {
      // Its memory image is mapped copy-on-write by the running VM: the VMM keeps the inode, but say what happens.
      this.log(`deleting snapshot '${snap}' of VM '${name}', which runs restored from it`);
    }
    const doomed = path.join(path.dirname(dir), `.${snap}.deleting-${process.pid}-${Date.now()}`);
    fs.renameSync(dir, doomed);
    fsyncDirQuiet(path.dirname(dir));
    fs.rmSync(doomed, { recursive: true, force: true });
    this.emitEvent({ type: 'snapshot-deleted', name, state: this.stateOf(name), detail: snap });
  }

  private snapshotNames(name: string): string[] {
    let entries: string[];
    try {
      entries = fs.readdirSync(this.state.vmSnapshotsDir(name));
    } catch {
      return [];
    }
    return entries.filter((entry) => SNAPSHOT_NAME_RE.test(entry) && fs.existsSync(path.join(this.state.snapshotDir(name, entry), 'state.json'))).sort();
  }

  private snapshotDirOf(name: string, snap: string): string {
    if (!SNAPSHOT_NAME_RE.test(snap) || !this.snapshotNames(name).includes(snap)) throw new ManagerError('not_found', `VM '${name}' has no snapshot '${snap}'`);
    return this.state.snapshotDir(name, snap);
  }

  /** What state.json's header says (without checking the whole file: restore does that). */
  private snapshotView(name: string, snap: string): SnapshotView {
    const dir = this.state.snapshotDir(name, snap);
    const view: SnapshotView = { name: snap, vm: name, createdAt: fs.statSync(path.join(dir, 'state.json')).mtime.toISOString() };
    try {
      const header = (JSON.parse(fs.readFileSync(path.join(dir, 'state.json'), 'utf8')) as { body?: { header?: Record<string, unknown> } }).body?.header ?? {};
      if (typeof header.createdAt === 'string') view.createdAt = header.createdAt;
      if (typeof header.cpus === 'number') view.cpus = header.cpus;
      if (typeof header.memorySize === 'number') view.memory = Math.round(header.memorySize / (1024 * 1024));
      if (typeof header.engine === 'string') view.engine = header.engine;
      if (typeof header.ringzeroVersion === 'string') view.ringzeroVersion = header.ringzeroVersion;
    } catch {
      // a damaged state file: restore will say so
    }
    let bytes = 0;
    for (const entry of fs.readdirSync(dir)) {
      try { bytes += fs.statSync(path.join(dir, entry)).blocks * 512; } catch { /* raced with a delete */ }
    }
    view.diskBytes = bytes;
    return view;
  }

  /** Temporary snapshot directories of a VMM or daemon that died mid-write or mid-delete. */
  private removeSnapshotLeftovers(): void {
    for (const vmDir of fs.readdirSync(this.state.snapshotsDir)) {
      const full = path.join(this.state.snapshotsDir, vmDir);
      let entries: string[];
      try { entries = fs.readdirSync(full); } catch { continue; }
      for (const entry of entries) {
        if (/\.(tmp|old)-\d+-\d+$/.test(entry) || /^\..*\.deleting-\d+-\d+$/.test(entry)) {
          const pid = Number(/-(\d+)-\d+$/.exec(entry)![1]);
          if (entry.startsWith('.') || !pidRuns(pid)) fs.rmSync(path.join(full, entry), { recursive: true, force: true });
        }
      }
    }
  }

  /**
   * One request to the VM's VMM over its control socket. The socket is briefly absent while a guest reboot makes a
   * new machine (with --on-reboot restart), so a missing socket is tried again for a moment.
   */
  async control(name: string, request: Record<string, unknown>, timeoutMs: number): Promise<Record<string, unknown>> {
    const { controlRequest } = await import('../vmm/control.ts');
    const retryUntil = Date.now() + 2000;
    for (;;) {
      try {
        return await controlRequest(this.state.controlSocket(name), request, timeoutMs);
      } catch (error) {
        if (!/: (ENOENT|ECONNREFUSED)$/.test((error as Error).message) || Date.now() > retryUntil) throw error;
        await sleep(100);
      }
    }
  }

  // --- internals -------------------------------------------------------------------------------------------------

  private definitionOf(name: string): VmDefinition {
    const definition = this.definitions.get(name);
    if (!definition) throw new ManagerError('not_found', `no VM named '${name}'`);
    return definition;
  }

  private stateOf(name: string): VmState {
    return this.runtime.get(name)?.state ?? 'shut off';
  }

  private view(name: string): VmView {
    const record = this.runtime.get(name) ?? { state: 'shut off' };
    const active = ACTIVE_STATES.has(record.state);
    return {
      name,
      state: record.state,
      definition: this.definitions.get(name)!,
      ...(active && record.pid !== undefined ? { pid: record.pid } : {}),
      ...(active && record.startedAt ? { startedAt: record.startedAt } : {}),
      ...(active ? { consoleSocket: this.state.consoleSocket(name) } : {}),
      ...(active && record.restoredFrom ? { restoredFrom: record.restoredFrom } : {}),
      ...(active && record.spare ? { spare: record.spare } : {}),
      ...(active && record.resources ? { resources: record.resources } : {}),
      ...(record.lastExit ? { lastExit: record.lastExit } : {}),
      ...(active ? this.migrations.vmAnnotation(name) : {}),
    };
  }

  private setRuntime(name: string, record: RuntimeRecord): void {
    this.state.writeJson(this.state.runtimeFile(name), record);
    this.runtime.set(name, record);
  }

  private emitEvent(event: Omit<LifecycleEvent, 'at'>): void {
    this.emit('lifecycle', { ...event, at: new Date().toISOString() } satisfies LifecycleEvent);
  }

  private checkSocketPath(name: string): void {
    const socketPath = this.state.consoleSocket(name);
    if (Buffer.byteLength(socketPath) > MAX_SOCKET_PATH) {
      throw new ManagerError('invalid', `the console socket path '${socketPath}' is longer than ${MAX_SOCKET_PATH} bytes: use a shorter state directory or VM name`);
    }
  }

  /** A disk image is used by one running VM at a time, unless every user opens it read-only. */
  private checkDisksFree(name: string, definition: VmDefinition): void {
    const real = (file: string): string => {
      try {
        return fs.realpathSync(file);
      } catch {
        return path.resolve(file);
      }
    };
    for (const [other, record] of this.runtime) {
      if (other === name || !ACTIVE_STATES.has(record.state)) continue;
      const theirs = this.definitions.get(other)?.disks ?? [];
      for (const disk of definition.disks) {
        for (const used of theirs) {
          if (real(disk.path) === real(used.path) && !(disk.readonly && used.readonly)) {
            throw new ManagerError('conflict', `disk '${disk.path}' is in use by running VM '${other}'`);
          }
        }
      }
    }
  }

  /** A TAP carries one VM's card at a time: the VMM would fail to attach (EBUSY); say which VM has it. */
  private checkTapsFree(name: string, definition: VmDefinition): void {
    for (const nic of definition.nics ?? []) {
      for (const [other, record] of this.runtime) {
        if (other === name || !ACTIVE_STATES.has(record.state)) continue;
        if ((this.definitions.get(other)?.nics ?? []).some((theirs) => theirs.tap === nic.tap)) {
          throw new ManagerError('conflict', `TAP '${nic.tap}' is in use by running VM '${other}'`);
        }
      }
    }
  }

  private killVmm(name: string, why: 'shutdown' | 'destroy'): void {
    const record = this.runtime.get(name);
    if (!record || record.pid === undefined) return;
    this.setRuntime(name, { ...record, stopRequested: why });
    const child = this.children.get(name);
    if (child) {
      child.kill('SIGKILL');
    } else if (record.startTime !== undefined && isSameProcess(record.pid, record.startTime)) {
      try {
        process.kill(record.pid, 'SIGKILL');
      } catch {
        // already gone
      }
    }
  }

  private waitForExit(name: string): Promise<void> {
    if (!ACTIVE_STATES.has(this.stateOf(name))) return Promise.resolve();
    return new Promise((resolve) => {
      const waiters = this.exitWaiters.get(name) ?? [];
      waiters.push(resolve);
      this.exitWaiters.set(name, waiters);
    });
  }

  /**
   * A VMM serving this VM's control socket path that no runtime record names: start() spawned it and its daemon was
   * killed before it wrote the pid down. It is this VM's VMM (the path is the state directory's own), so it is
   * adopted as the daemon would have recorded it, rather than left running unseen beside a second VMM that a later
   * start would spawn on the same disks. An incoming migration's VMM is left to src/manager/migration.ts.
   */
  private adoptUnrecorded(name: string): void {
    const found = processesWithArgument('--control-socket', this.state.controlSocket(name))
      .filter((p) => p.pid !== process.pid && !p.args.includes('--incoming') && p.args.includes('run'));
    if (found.length === 0) return;
    // More than one could only come from a daemon outside this one's lock: keep the newest, end the others.
    found.sort((a, b) => b.startTime - a.startTime);
    for (const extra of found.slice(1)) {
      this.log(`VM '${name}': ending an unrecorded second VMM (pid ${extra.pid})`);
      try { process.kill(extra.pid, 'SIGKILL'); } catch { /* gone */ }
    }
    const { pid, startTime, args } = found[0];
    const restore = args.indexOf('--restore');
    this.setRuntime(name, {
      state: 'running', pid, startTime, startedAt: new Date().toISOString(), lastExit: this.runtime.get(name)?.lastExit,
      ...(restore >= 0 && args[restore + 1] ? { restoredFrom: path.basename(args[restore + 1]) } : {}),
    });
    this.applyDefinedResources(name, pid, this.definitionOf(name));
    this.log(`adopted VM '${name}' (pid ${pid}): its VMM was started by a daemon killed before recording it`);
  }

  /** VMMs re-attached after a daemon restart are not our children: look for their end in /proc. */
  private pollAdopted(): void {
    for (const [name, record] of this.runtime) {
      if (!ACTIVE_STATES.has(record.state) || this.children.has(name)) continue;
      if (record.pid === undefined || record.startTime === undefined || !isSameProcess(record.pid, record.startTime)) {
        this.settleExit(name, null, null);
      }
    }
  }

  /** The VMM ended: record how (its own status file says more than a lost child's missing status), tell the waiters. */
  private settleExit(name: string, code: number | null, signal: NodeJS.Signals | null): void {
    const record = this.runtime.get(name);
    if (!record || !ACTIVE_STATES.has(record.state)) return;
    let exitCode = code;
    try {
      const status = this.state.readJson<{ exitCode: number }>(this.state.statusFile(name));
      if (status && typeof status.exitCode === 'number') exitCode = status.exitCode;
    } catch {
      // a torn or foreign file: go by what we saw
    }
    let state: VmState;
    let reason: string;
    if (record.stopRequested) {
      state = 'shut off';
      reason = record.stopRequested === 'destroy' ? 'destroyed' : exitCode === 0 ? 'guest powered off' : 'shutdown timed out: destroyed';
    } else if (exitCode === 0) {
      state = 'shut off';
      reason = 'guest powered off';
    } else {
      state = 'crashed';
      reason = signal ? `VMM killed by ${signal}` : exitCode === null ? 'VMM ended without a status' : `VMM exited with status ${exitCode}`;
    }
    const lastExit: LastExit = { exitCode, signal: signal ?? null, reason, at: new Date().toISOString() };
    this.setRuntime(name, { state, lastExit });
    this.resources.remove(name);
    fs.rmSync(this.state.consoleSocket(name), { force: true });
    fs.rmSync(this.state.controlSocket(name), { force: true });
    fs.rmSync(this.state.statusFile(name), { force: true });
    this.emitEvent({ type: state === 'crashed' ? 'crashed' : 'stopped', name, state, detail: reason });
    const waiters = this.exitWaiters.get(name) ?? [];
    this.exitWaiters.delete(name);
    for (const resolve of waiters) resolve();
  }
}

/** The resource control a definition asks for. */
export function definitionResources(d: VmDefinition): VmResources {
  return {
    ...(d.cpuQuotaPercent !== undefined ? { cpuQuotaPercent: d.cpuQuotaPercent } : {}),
    ...(d.cpuWeight !== undefined ? { cpuWeight: d.cpuWeight } : {}),
    ...(d.memoryMax !== undefined ? { memoryMax: d.memoryMax } : {}),
    ...(d.cpuPinning !== undefined ? { cpuPinning: d.cpuPinning } : {}),
  };
}

/** `ringzero run` arguments for a definition. */
export function vmmArguments(d: VmDefinition, consoleSocket: string, statusFile: string, controlSocket: string): string[] {
  const args = ['run', '--engine', d.engine, '--cpus', String(d.cpus), '--memory', `${d.memory}M`, '--cmdline', d.cmdline,
    '--on-reboot', d.onReboot, '--console', d.console, '--console-socket', consoleSocket, '--status-file', statusFile,
    '--control-socket', controlSocket];
  if (d.kernel !== undefined) args.push('--kernel', d.kernel);
  if (d.initrd !== undefined) args.push('--initrd', d.initrd);
  for (const disk of d.disks) args.push('--disk', diskArgument(disk));
  args.push(...netArguments(d));
  if (d.rng) args.push('--rng');
  if (d.balloon === true) args.push('--balloon');
  return args;
}

/** `ringzero run` arguments to start a VM from a snapshot directory (the machine is the snapshot's). */
export function restoreArguments(snapshotDir: string, consoleSocket: string, statusFile: string, controlSocket: string, verify = false): string[] {
  return ['run', '--restore', snapshotDir, ...(verify ? ['--verify'] : []), '--console-socket', consoleSocket, '--status-file', statusFile, '--control-socket', controlSocket];
}

/** snap-YYYYMMDD-HHMMSS-mmm (UTC): sorts by time, and two snapshots in one second still differ. */
function defaultSnapshotName(): string {
  const t = new Date().toISOString(); // 2026-01-02T03:04:05.678Z
  return `snap-${t.slice(0, 10).replaceAll('-', '')}-${t.slice(11, 19).replaceAll(':', '')}-${t.slice(20, 23)}`;
}

/** For the crash tests only: RINGZERO_TEST_CRASH_AT=start-spawned|start-recorded kills the daemon in the middle of a start. */
function crashPoint(where: string): void {
  if (process.env.RINGZERO_TEST_CRASH_AT === where) process.kill(process.pid, 'SIGKILL');
}

function pidRuns(pid: number): boolean {
  return processStartTime(pid) !== undefined;
}

function fsyncDirQuiet(dir: string): void {
  try { fsyncDir(dir); } catch { /* best effort: the rename is done */ }
}

function readLogTail(file: string, from: number): string {
  try {
    const text = fs.readFileSync(file).subarray(from).toString('utf8').trim();
    const lines = text.split('\n').filter((line) => line.trim() !== '');
    return lines.slice(-3).join(' / ').replace(/^ringzero: /, '');
  } catch {
    return '';
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
