// The daemon's state directory: plain JSON files, each written atomically (write a temporary file, fsync it, rename
// it over the old one, fsync the directory), so a crash at any instant leaves either the old or the new file.
//
//   DIR/vms/NAME.json      the VM's definition: a VM exists exactly when this file does
//   DIR/run/NAME.json      the VM's runtime record: state, VMM pid and start time, last exit
//   DIR/run/NAME.sock      the VM's console socket (served by its VMM process)
//   DIR/run/NAME.status    the VMM's exit status, written by the VMM itself when it ends normally
//   DIR/run/NAME.ctl       the VMM's control socket (JSON lines, src/vmm/control.ts): power button, snapshot
//   DIR/snapshots/NAME/SNAP/  a snapshot of the VM (state.json + memory, src/vmm/snapshot.ts), written by its VMM
//                          into a sibling SNAP.tmp-* directory and renamed into place, so it is complete or absent
//   DIR/logs/NAME.log      the VMM process's stderr
//
// Temporary files are named `.NAME.json.tmp-PID-N`; whatever survived a crash is removed when the daemon starts.

import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { pwriteFully } from '../sys/file-io.ts';

let tmpCounter = 0;

/** Write `data` to `file` so that after a crash the file holds either its old or its new content, never a mix. */
export function writeFileAtomic(file: string, data: string): void {
  const dir = path.dirname(file);
  const tmp = path.join(dir, `.${path.basename(file)}.tmp-${process.pid}-${tmpCounter++}`);
  const fd = fs.openSync(tmp, 'w', 0o600);
  try {
    pwriteFully(fd, Buffer.from(data), 0);
    fs.fsyncSync(fd);
  } catch (error) {
    fs.closeSync(fd);
    fs.rmSync(tmp, { force: true });
    throw error;
  }
  fs.closeSync(fd);
  crashPoint('after-tmp', file);
  fs.renameSync(tmp, file);
  fsyncDir(dir);
}

/** Remove a file and make the removal durable. */
export function removeFileDurable(file: string): void {
  try {
    fs.unlinkSync(file);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return;
    throw error;
  }
  fsyncDir(path.dirname(file));
}

export function fsyncDir(dir: string): void {
  const fd = fs.openSync(dir, 'r');
  try {
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
}

/**
 * For the crash-consistency tests only: RINGZERO_TEST_CRASH_AT=after-tmp makes the daemon kill itself with SIGKILL at
 * that point of an atomic write of a VM definition (the temporary file written, not yet renamed), as `kill -9` would.
 */
function crashPoint(where: string, file: string): void {
  if (process.env.RINGZERO_TEST_CRASH_AT === where && path.basename(path.dirname(file)) === 'vms') process.kill(process.pid, 'SIGKILL');
}

/** The default state directory: /var/lib/ringzero for root, else $XDG_STATE_HOME/ringzero (~/.local/state/ringzero). */
export function defaultStateDir(): string {
  if (process.getuid?.() === 0) return '/var/lib/ringzero';
  const xdg = process.env.XDG_STATE_HOME;
  return path.join(xdg && path.isAbsolute(xdg) ? xdg : path.join(os.homedir(), '.local', 'state'), 'ringzero');
}

/** The default API socket: RINGZERO_SOCKET, else /run/ringzero/ringzero.sock for root, else in the state directory. */
export function defaultSocketPath(stateDir?: string): string {
  const fromEnv = process.env.RINGZERO_SOCKET;
  if (fromEnv) return fromEnv;
  if (process.getuid?.() === 0 && stateDir === undefined) return '/run/ringzero/ringzero.sock';
  return path.join(stateDir ?? defaultStateDir(), 'ringzero.sock');
}

/** sun_path is 108 bytes on Linux, with the terminating NUL. */
export const MAX_SOCKET_PATH = 107;

export class StateDir {
  readonly vmsDir: string;
  readonly runDir: string;
  readonly logsDir: string;
  readonly snapshotsDir: string;

  constructor(readonly root: string) {
    this.vmsDir = path.join(root, 'vms');
    this.runDir = path.join(root, 'run');
    this.logsDir = path.join(root, 'logs');
    this.snapshotsDir = path.join(root, 'snapshots');
  }

  /** Create the directories (owner only) and remove temporary files left by a crash. */
  open(): void {
    for (const dir of [this.root, this.vmsDir, this.runDir, this.logsDir, this.snapshotsDir]) fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
    for (const dir of [this.root, this.vmsDir, this.runDir]) {
      for (const entry of fs.readdirSync(dir)) {
        if (entry.startsWith('.') && entry.includes('.tmp-')) fs.rmSync(path.join(dir, entry), { force: true });
      }
    }
  }

  definitionFile(name: string): string {
    return path.join(this.vmsDir, `${name}.json`);
  }

  runtimeFile(name: string): string {
    return path.join(this.runDir, `${name}.json`);
  }

  consoleSocket(name: string): string {
    return path.join(this.runDir, `${name}.sock`);
  }

  statusFile(name: string): string {
    return path.join(this.runDir, `${name}.status`);
  }

  controlSocket(name: string): string {
    return path.join(this.runDir, `${name}.ctl`);
  }

  /** DIR/snapshots/NAME: the VM's snapshots, one directory each. */
  vmSnapshotsDir(name: string): string {
    return path.join(this.snapshotsDir, name);
  }

  snapshotDir(name: string, snapshot: string): string {
    return path.join(this.snapshotsDir, name, snapshot);
  }

  logFile(name: string): string {
    return path.join(this.logsDir, `${name}.log`);
  }

  /** Names of the defined VMs (files in vms/ that end in .json). */
  definedNames(): string[] {
    return fs.readdirSync(this.vmsDir)
      .filter((entry) => entry.endsWith('.json') && !entry.startsWith('.'))
      .map((entry) => entry.slice(0, -'.json'.length))
      .sort();
  }

  readJson<T>(file: string): T | undefined {
    let text: string;
    try {
      text = fs.readFileSync(file, 'utf8');
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      throw error;
    }
    return JSON.parse(text) as T;
  }

  writeJson(file: string, value: unknown): void {
    writeFileAtomic(file, `${JSON.stringify(value, null, 2)}\n`);
  }
}
