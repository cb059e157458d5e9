// The VM manager behind `ringzero daemon`: VM definitions in the state directory, one VMM process per running VM
// (`ringzero run --console-socket ... --status-file ...`, detached in its own session), supervision of those processes,
// and the lifecycle verbs. The API (src/api) is a thin layer over this class.
//
// Process model (as Firecracker's process per VM): a VMM crashing only changes that VM's state to 'crashed'; the
// daemon exiting or being killed leaves every VMM running; a new daemon re-attaches to the VMMs whose pid and process
// start time still match the runtime record, and learns how a VMM it lost ended from the status file the VMM writes.
//
// Every change is made durable before the call returns (StateDir writes atomically), and every check that can fail
// runs before anything is written, so an error leaves the state directory as it was.

import { spawn, type ChildProcess } from 'node:child_process';
import { EventEmitter } from 'node:events';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { ManagerError, VM_NAME_RE, type VmDefinition, type VmState } from './schema.ts';
import { MAX_SOCKET_PATH, removeFileDurable, StateDir } from './store.ts';
import { isSameProcess, processStartTime } from './proc.ts';

/** The launcher of the CLI, run by the VMM processes. */
export const RINGZERO_BIN = fileURLToPath(new URL('../../bin/ringzero', import.meta.url));

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
  lastExit?: LastExit;
}

export interface VmView {
  name: string;
  state: VmState;
  definition: VmDefinition;
  pid?: number;
  startedAt?: string;
  consoleSocket?: string;
  lastExit?: LastExit;
}

export interface LifecycleEvent {
  type: 'defined' | 'updated' | 'undefined' | 'starting' | 'started' | 'stopped' | 'crashed' | 'shutting-down';
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
}

const ACTIVE_STATES: ReadonlySet<VmState> = new Set(['starting', 'running', 'shutting down']);

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

  constructor(stateDir: string, options: ManagerOptions = {}) {
    super();
    this.state = new StateDir(stateDir);
    this.log = options.log ?? (() => {});
    this.startTimeoutMs = options.startTimeoutMs ?? 30_000;
    this.pollMs = options.pollMs ?? 500;
    this.vmmCommand = options.vmmCommand ?? { file: process.execPath, args: [RINGZERO_BIN] };
  }

  /** Load the state directory, re-attach to the VMMs still running, settle the ones that ended, autostart. */
  async open(): Promise<void> {
    this.state.open();
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
    // Runtime files of VMs that are no longer defined (a crash between the two removals of undefine).
    for (const entry of fs.readdirSync(this.state.runDir)) {
      const name = entry.replace(/\.(json|status|sock)$/, '');
      if (!this.definitions.has(name)) fs.rmSync(path.join(this.state.runDir, entry), { force: true });
    }
    this.pollTimer = setInterval(() => this.pollAdopted(), this.pollMs);
    this.pollTimer.unref();
    for (const [name, definition] of this.definitions) {
      if (definition.autostart && !ACTIVE_STATES.has(this.stateOf(name))) {
        this.start(name).catch((error) => this.log(`autostart of '${name}' failed: ${(error as Error).message}`));
      }
    }
  }

  /** Stop supervising (the VMMs keep running; a new daemon re-attaches). */
  close(): void {
    if (this.pollTimer) clearInterval(this.pollTimer);
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

  define(definition: VmDefinition): VmView {
    if (this.definitions.has(definition.name)) throw new ManagerError('conflict', `VM '${definition.name}' is already defined`);
    this.checkSocketPath(definition.name);
    this.state.writeJson(this.state.definitionFile(definition.name), definition);
    this.definitions.set(definition.name, definition);
    this.runtime.set(definition.name, { state: 'shut off' });
    this.emitEvent({ type: 'defined', name: definition.name, state: 'shut off' });
    return this.view(definition.name);
  }

  update(name: string, definition: VmDefinition): VmView {
    this.definitionOf(name);
    if (definition.name !== name) {
      throw new ManagerError('invalid', `the definition's name '${definition.name}' differs from '${name}' (renaming is not supported)`);
    }
    if (ACTIVE_STATES.has(this.stateOf(name))) throw new ManagerError('conflict', `VM '${name}' is ${this.stateOf(name)}: edit it when it is shut off`);
    this.state.writeJson(this.state.definitionFile(name), definition);
    this.definitions.set(name, definition);
    this.emitEvent({ type: 'updated', name, state: this.stateOf(name) });
    return this.view(name);
  }

  undefine(name: string): void {
    this.definitionOf(name);
    if (ACTIVE_STATES.has(this.stateOf(name))) throw new ManagerError('conflict', `VM '${name}' is ${this.stateOf(name)}: destroy it first`);
    // The definition file is the VM: once it is gone, the rest is leftovers that open() also cleans up.
    removeFileDurable(this.state.definitionFile(name));
    this.definitions.delete(name);
    this.runtime.delete(name);
    for (const file of [this.state.runtimeFile(name), this.state.statusFile(name), this.state.consoleSocket(name)]) {
      fs.rmSync(file, { force: true });
    }
    this.emitEvent({ type: 'undefined', name });
  }

  /** Start the VM's VMM process; resolves when it serves its console (the guest is then booting). */
  async start(name: string): Promise<VmView> {
    const definition = this.definitionOf(name);
    const current = this.stateOf(name);
    if (ACTIVE_STATES.has(current)) throw new ManagerError('conflict', `VM '${name}' is already ${current}`);
    this.checkDisksFree(name, definition);
    this.checkSocketPath(name);
    const socketPath = this.state.consoleSocket(name);
    const statusFile = this.state.statusFile(name);
    fs.rmSync(socketPath, { force: true });
    fs.rmSync(statusFile, { force: true });

    const logFd = fs.openSync(this.state.logFile(name), 'a', 0o600);
    fs.writeSync(logFd, `--- ${new Date().toISOString()} start\n`);
    const logStart = fs.fstatSync(logFd).size;
    let child: ChildProcess;
    try {
      child = spawn(this.vmmCommand.file, [...this.vmmCommand.args, ...vmmArguments(definition, socketPath, statusFile)], {
        detached: true, // its own session: no signal meant for the daemon (Ctrl-C, SIGHUP) reaches the VM
        stdio: ['ignore', 'ignore', logFd],
        cwd: '/',
      });
    } finally {
      fs.closeSync(logFd);
    }
    const pid = child.pid;
    if (pid === undefined) {
      const error = await new Promise<Error>((resolve) => child.once('error', resolve));
      throw new ManagerError('start_failed', `cannot start the VMM process: ${error.message}`);
    }
    child.unref();
    this.children.set(name, child);
    const startTime = processStartTime(pid);
    this.setRuntime(name, { state: 'starting', pid, startTime, startedAt: new Date().toISOString(), lastExit: this.runtime.get(name)?.lastExit });
    this.emitEvent({ type: 'starting', name, state: 'starting' });
    let exited = false;
    child.once('exit', (code, signal) => {
      exited = true;
      if (this.children.get(name) === child) this.children.delete(name);
      this.settleExit(name, code, signal);
    });

    const deadline = Date.now() + this.startTimeoutMs;
    while (!exited && !fs.existsSync(socketPath)) {
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
    this.setRuntime(name, { ...this.runtime.get(name)!, state: 'running' });
    this.emitEvent({ type: 'started', name, state: 'running' });
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
   * Graceful stop with a timeout, then destroy. ringzero's PC does not have an ACPI power button yet (the FADT sets
   * PWR_BUTTON: no fixed-feature button, and the VMM has no way to be asked to press one), so for now the daemon only
   * waits `timeoutMs` for the guest to power off by itself, then destroys it. `graceful` says which happened.
   */
  async shutdown(name: string, timeoutMs: number): Promise<{ vm: VmView; graceful: boolean }> {
    this.definitionOf(name);
    const state = this.stateOf(name);
    if (state !== 'running') throw new ManagerError('conflict', `VM '${name}' is ${state}, not running`);
    const record = this.runtime.get(name)!;
    this.setRuntime(name, { ...record, state: 'shutting down', stopRequested: 'shutdown' });
    this.emitEvent({ type: 'shutting-down', name, state: 'shutting down' });
    const ended = this.waitForExit(name);
    const timedOut = await Promise.race([ended.then(() => false), sleep(timeoutMs).then(() => true)]);
    if (timedOut) {
      this.killVmm(name, 'shutdown');
      await ended;
    }
    return { vm: this.view(name), graceful: !timedOut };
  }

  /** Reboot: for now a hard one (destroy, then start), for the same reason as shutdown. */
  async reboot(name: string): Promise<VmView> {
    if (ACTIVE_STATES.has(this.stateOf(name))) await this.destroy(name);
    return this.start(name);
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
      ...(record.lastExit ? { lastExit: record.lastExit } : {}),
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
    fs.rmSync(this.state.consoleSocket(name), { force: true });
    fs.rmSync(this.state.statusFile(name), { force: true });
    this.emitEvent({ type: state === 'crashed' ? 'crashed' : 'stopped', name, state, detail: reason });
    const waiters = this.exitWaiters.get(name) ?? [];
    this.exitWaiters.delete(name);
    for (const resolve of waiters) resolve();
  }
}

/** `ringzero run` arguments for a definition. */
export function vmmArguments(d: VmDefinition, consoleSocket: string, statusFile: string): string[] {
  const args = ['run', '--engine', d.engine, '--cpus', String(d.cpus), '--memory', `${d.memory}M`, '--cmdline', d.cmdline,
    '--on-reboot', d.onReboot, '--console', d.console, '--console-socket', consoleSocket, '--status-file', statusFile];
  if (d.kernel !== undefined) args.push('--kernel', d.kernel);
  if (d.initrd !== undefined) args.push('--initrd', d.initrd);
  for (const disk of d.disks) args.push('--disk', `${disk.path}${disk.readonly ? ',readonly' : ''}${disk.serial ? `,serial=${disk.serial}` : ''}`);
  if (d.rng) args.push('--rng');
  return args;
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
